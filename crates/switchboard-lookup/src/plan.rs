//! The matcher: the metadata arranged by calling code, each region's descriptors compiled on
//! first use into one [`RegexSet`] (one pass over a number tells which of them match) and
//! their possible lengths into bit masks, and each shared calling code's leading digits
//! into one set too.

use std::fmt;
use std::sync::OnceLock;

use regex::{RegexSet, RegexSetBuilder, SetMatches};
use switchboard_domain::{NumberType, Region};

use crate::metadata::{CODES, CodeData, Desc, RegionData};

/// How a metadata pattern must match a national significant number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchoring {
    /// The whole number (libphonenumber's `matchesEntirely`): what the lookup uses.
    Whole,
    /// Only a prefix of it (`find(..).start() == 0`), as the `phonenumber` crate matches: kept
    /// so that the tests can show that this is the only difference from that crate.
    #[cfg_attr(not(test), allow(dead_code))]
    Prefix,
}

/// A number's region (none for a non-geographic one) and type, or none if it has no type.
pub(crate) type Classified = Option<(Option<Region>, NumberType)>;

/// Every calling code of the metadata, with its regions in the database's order (the main
/// region first), each compiled when a number first needs it.
pub(crate) struct Plan {
    anchoring: Anchoring,
    /// By calling code (1 to 999): 1 + the index in `codes`, or 0 for a code not in use.
    index: Box<[u16]>,
    codes: Vec<CodePlan>,
}

struct CodePlan {
    data: &'static CodeData,
    regions: Vec<RegionPlan>,
    /// The leading digits of its regions that have some, when it has several regions: one
    /// set, so that one pass tells which of them a number starts like.
    leading: Lazy<RegexSet>,
}

struct RegionPlan {
    data: &'static RegionData,
    /// The region, none for the non-geographic entities (`001`: +800, +881, …).
    region: Option<Region>,
    /// Its leading digits' index in its calling code's set, when the code has several regions
    /// and it has leading digits.
    leading: Option<usize>,
    matcher: Lazy<Matcher>,
}

/// A value compiled on first use; `None` inside if it could not be (never with this metadata:
/// the tests compile every region), which then matches nothing.
type Lazy<T> = OnceLock<Option<T>>;

/// A descriptor to check: which pattern of the set, and the lengths it allows.
#[derive(Debug, Clone, Copy)]
struct Check {
    pattern: usize,
    /// Bit `n` set when a national number of `n` digits is possible; 0 when the metadata
    /// gives no lengths (any length).
    lengths: u32,
}

impl Check {
    fn length_ok(self, len: usize) -> bool {
        self.lengths == 0 || (len < 32 && self.lengths & (1 << len) != 0)
    }

    fn hit(self, hits: &SetMatches, len: usize) -> bool {
        self.length_ok(len) && hits.matched(self.pattern)
    }
}

/// One region's descriptors, compiled.
struct Matcher {
    set: RegexSet,
    general: Check,
    /// The types checked after the general descriptor, in libphonenumber's order, before the
    /// fixed-line and mobile ones.
    ordered: Vec<(NumberType, Check)>,
    fixed_line: Option<Check>,
    mobile: Option<Check>,
    /// The fixed-line and mobile patterns are the same text (the North American plan).
    same_fixed_and_mobile: bool,
}

impl Plan {
    /// The plan every `OfflineLookup` shares, set up on first use.
    pub(crate) fn shared() -> &'static Plan {
        static PLAN: OnceLock<Plan> = OnceLock::new();
        PLAN.get_or_init(|| Plan::new(Anchoring::Whole))
    }

    /// Arranges the metadata; compiles nothing.
    pub(crate) fn new(anchoring: Anchoring) -> Self {
        let mut index = vec![0u16; 1000].into_boxed_slice();
        let mut codes = Vec::with_capacity(CODES.len());
        for data in CODES.iter().filter(|c| (1..1000).contains(&c.code) && !c.regions.is_empty()) {
            let shared = data.regions.len() > 1;
            let mut leading = 0..;
            let regions = data
                .regions
                .iter()
                .map(|region| RegionPlan {
                    data: region,
                    region: Region::parse(region.id).ok(),
                    leading: region.leading_digits.filter(|_| shared).and_then(|_| leading.next()),
                    matcher: OnceLock::new(),
                })
                .collect();
            codes.push(CodePlan { data, regions, leading: OnceLock::new() });
            index[usize::from(data.code)] = u16::try_from(codes.len()).unwrap_or(0);
        }
        Self { anchoring, index, codes }
    }

    /// The calling codes in use, in increasing order.
    pub(crate) fn calling_codes(&self) -> impl Iterator<Item = u16> + '_ {
        self.codes.iter().map(|c| c.data.code)
    }

    fn code(&self, code: u16) -> Option<&CodePlan> {
        let i = *self.index.get(usize::from(code))?;
        self.codes.get(usize::from(i).checked_sub(1)?)
    }

    /// Splits E.164 digits (without the `+`) into the calling code the metadata knows and the
    /// national significant number. Calling codes are prefix-free, so at most one of the one-,
    /// two- and three-digit prefixes is in use.
    fn split<'a>(&self, digits: &'a str) -> Option<(&CodePlan, &'a str)> {
        let mut code = 0u16;
        for (len, &b) in digits.as_bytes().iter().enumerate().take(3) {
            if !b.is_ascii_digit() {
                return None;
            }
            code = code * 10 + u16::from(b - b'0');
            if let Some(plan) = self.code(code) {
                return Some((plan, &digits[len + 1..]));
            }
        }
        None
    }

    /// Classifies E.164 digits (without the `+`).
    pub(crate) fn classify_digits(&self, digits: &str) -> Classified {
        let (code, national) = self.split(digits)?;
        if national.is_empty() || !national.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // As libphonenumber's `getRegionCodeForNumberFromRegionList` (the `phonenumber`
        // crate's `source_for`): the only region of a code is its region; among several, the
        // first whose leading digits start the number, or (for one without leading digits)
        // the first in which the number has a type.
        let [only] = code.regions.as_slice() else {
            let mut starts = None;
            for region in &code.regions {
                match region.leading {
                    Some(leading) => {
                        let starts = starts.get_or_insert_with(|| self.leading(code).map(|set| set.matches(national)));
                        if starts.as_ref().is_some_and(|s| s.matched(leading)) {
                            return self.number_type(region, national).map(|t| (region.region, t));
                        }
                    }
                    None => {
                        if let Some(t) = self.number_type(region, national) {
                            return Some((region.region, t));
                        }
                    }
                }
            }
            return None;
        };
        self.number_type(only, national).map(|t| (only.region, t))
    }

    /// The set of the leading digits of a shared code's regions.
    fn leading<'p>(&self, code: &'p CodePlan) -> Option<&'p RegexSet> {
        code.leading
            .get_or_init(|| {
                let patterns = code.regions.iter().filter(|r| r.leading.is_some()).map(|r| {
                    // Leading digits match a prefix (libphonenumber's `lookingAt`).
                    format!("^(?:\n{}\n)", r.data.leading_digits.unwrap_or_default())
                });
                set_builder(patterns).build().ok()
            })
            .as_ref()
    }

    fn matcher<'p>(&self, region: &'p RegionPlan) -> Option<&'p Matcher> {
        region.matcher.get_or_init(|| Matcher::compile(region.data, self.anchoring)).as_ref()
    }

    /// The number's type in a region, as libphonenumber's `getNumberTypeHelper` (the
    /// `phonenumber` crate's `number_type`); none for unknown.
    fn number_type(&self, region: &RegionPlan, national: &str) -> Option<NumberType> {
        let matcher = self.matcher(region)?;
        let len = national.len();
        if !matcher.general.length_ok(len) {
            return None;
        }
        let hits = matcher.set.matches(national);
        if !matcher.general.hit(&hits, len) {
            return None;
        }
        if let Some((t, _)) = matcher.ordered.iter().find(|(_, check)| check.hit(&hits, len)) {
            return Some(*t);
        }
        let mobile = matcher.mobile.is_some_and(|m| m.hit(&hits, len));
        if matcher.fixed_line.is_some_and(|f| f.hit(&hits, len)) {
            return Some(if matcher.same_fixed_and_mobile || mobile {
                NumberType::FixedLineOrMobile
            } else {
                NumberType::FixedLine
            });
        }
        mobile.then_some(NumberType::Mobile)
    }

    /// Compiles everything the given calling codes need (codes not in use are ignored), or
    /// with `None` every calling code.
    pub(crate) fn warm(&self, calling_codes: Option<&[u16]>) {
        let codes: Vec<&CodePlan> = match calling_codes {
            Some(list) => list.iter().filter_map(|c| self.code(*c)).collect(),
            None => self.codes.iter().collect(),
        };
        for code in codes {
            if code.regions.iter().any(|r| r.leading.is_some()) {
                self.leading(code);
            }
            for region in &code.regions {
                self.matcher(region);
            }
        }
    }

    /// What did not compile, after [`Plan::warm`] (for the tests).
    #[cfg(test)]
    pub(crate) fn failed(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for code in &self.codes {
            if matches!(code.leading.get(), Some(None)) {
                failed.push(format!("+{} leading digits", code.data.code));
            }
            for region in &code.regions {
                if matches!(region.matcher.get(), Some(None)) {
                    failed.push(format!("+{} {} descriptors", code.data.code, region.data.id));
                }
            }
        }
        failed
    }
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let regions = self.codes.iter().flat_map(|c| &c.regions);
        f.debug_struct("Plan")
            .field("anchoring", &self.anchoring)
            .field("calling_codes", &self.codes.len())
            .field("regions", &regions.clone().count())
            .field("compiled", &regions.filter(|r| r.matcher.get().is_some()).count())
            .finish()
    }
}

fn set_builder(patterns: impl IntoIterator<Item = String>) -> RegexSetBuilder {
    let mut builder = RegexSetBuilder::new(patterns);
    // The metadata's patterns are written to be read ignoring whitespace (`phonenumber`
    // compiles them so too); numbers are ASCII digits, so `\d` need not be Unicode.
    builder.ignore_whitespace(true).unicode(false);
    builder
}

impl Matcher {
    fn compile(data: &RegionData, anchoring: Anchoring) -> Option<Self> {
        // Each distinct pattern once (the North American fixed-line and mobile ones are one).
        let mut patterns: Vec<&str> = Vec::new();
        let mut check = |desc: Desc| {
            let pattern = patterns.iter().position(|p| *p == desc.pattern).unwrap_or_else(|| {
                patterns.push(desc.pattern);
                patterns.len() - 1
            });
            let lengths = desc.lengths.iter().filter(|&&l| l < 32).fold(0, |mask, &l| mask | (1 << l));
            Check { pattern, lengths }
        };
        let general = check(data.general);
        let ordered = [
            (NumberType::PremiumRate, data.premium_rate),
            (NumberType::TollFree, data.toll_free),
            (NumberType::SharedCost, data.shared_cost),
            (NumberType::Voip, data.voip),
            (NumberType::PersonalNumber, data.personal_number),
            (NumberType::Pager, data.pager),
            (NumberType::Uan, data.uan),
            (NumberType::Voicemail, data.voicemail),
        ]
        .into_iter()
        .filter_map(|(t, desc)| Some((t, check(desc?))))
        .collect();
        let fixed_line = data.fixed_line.map(&mut check);
        let mobile = data.mobile.map(&mut check);
        let anchored = patterns.iter().map(|p| match anchoring {
            Anchoring::Whole => format!("^(?:\n{p}\n)$"),
            Anchoring::Prefix => format!("^(?:\n{p}\n)"),
        });
        let set = set_builder(anchored).build().ok()?;
        Some(Self { set, general, ordered, fixed_line, mobile, same_fixed_and_mobile: data.same_fixed_and_mobile })
    }
}
