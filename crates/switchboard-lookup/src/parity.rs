//! Parity with the `phonenumber` crate: every example number of the metadata and a
//! deterministic sample of 20,000 numbers are classified here and by `phonenumber`
//! (`parse` + `is_valid` + `number_type` + `country().id()`), and every difference must be
//! one of the documented ones:
//!
//! - **whole match**: libphonenumber requires a pattern to match the whole national number,
//!   `phonenumber` only a prefix of it. Proved by classifying the number again with this
//!   crate's own matcher in prefix mode, which must then give exactly `phonenumber`'s answer.
//!   This is the only difference where `phonenumber` sees the same national number as we do.
//! - **parse**: `phonenumber::parse` strips what it takes for a national prefix (or carrier
//!   code) even from a number in international form, so it classifies another national
//!   number than the E.164 one.
//! - **leading zeros**: `phonenumber`'s `number_type` and `country` drop the leading zeros of
//!   the national number (Italy's `0…` fixed lines), though `is_valid` keeps them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Once;

use phonenumber::Type;
use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use switchboard_domain::{Destination, Msisdn, NumberType, Region};

use crate::classify_with;
use crate::metadata::CODES;
use crate::plan::{Anchoring, Plan};

fn number_type(t: Type) -> NumberType {
    match t {
        Type::FixedLine => NumberType::FixedLine,
        Type::Mobile => NumberType::Mobile,
        Type::FixedLineOrMobile => NumberType::FixedLineOrMobile,
        Type::TollFree => NumberType::TollFree,
        Type::PremiumRate => NumberType::PremiumRate,
        Type::SharedCost => NumberType::SharedCost,
        Type::PersonalNumber => NumberType::PersonalNumber,
        Type::Voip => NumberType::Voip,
        Type::Pager => NumberType::Pager,
        Type::Uan => NumberType::Uan,
        Type::Voicemail => NumberType::Voicemail,
        // `number_type` never answers these (they are not checked), nor do we.
        Type::Emergency
        | Type::ShortCode
        | Type::StandardRate
        | Type::Carrier
        | Type::NoInternational
        | Type::Unknown => NumberType::Unknown,
    }
}

/// What `phonenumber` says, and the calling code and national number it parsed.
struct Reference {
    destination: Destination,
    parsed: Option<(u16, String)>,
}

fn reference(number: &Msisdn) -> Reference {
    // `phonenumber` keeps its compiled patterns in an LRU cache of 100, fewer than a sample
    // over every region uses: recompiling them again and again makes a debug test take
    // minutes. A larger cache changes nothing of the answers.
    static CACHE: Once = Once::new();
    CACHE.call_once(|| DATABASE.cache().lock().expect("not poisoned").set_capacity(100_000));
    let Ok(parsed) = phonenumber::parse(None, number.as_str()) else {
        return Reference { destination: Destination::INVALID, parsed: None };
    };
    let code_and_national = Some((parsed.code().value(), parsed.national().to_string()));
    if !phonenumber::is_valid(&parsed) {
        return Reference { destination: Destination::INVALID, parsed: code_and_national };
    }
    let region = parsed.country().id().map(|id| Region::parse(id.as_ref()).expect("a two-letter region"));
    let destination = Destination { valid: true, number_type: number_type(parsed.number_type(&DATABASE)), region };
    Reference { destination, parsed: code_and_national }
}

fn descriptors(meta: &Metadata) -> Vec<&Descriptor> {
    let d = meta.descriptors();
    let mut all = vec![d.general()];
    all.extend(
        [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.emergency(),
            d.voicemail(),
            d.short_code(),
            d.standard_rate(),
            d.carrier(),
            d.no_international(),
        ]
        .into_iter()
        .flatten(),
    );
    all
}

/// The metadata's regions by calling code (not `DATABASE.iter()`, which yields one only of
/// the non-geographic entities, all `001`).
fn regions() -> Vec<&'static Metadata> {
    (1..1000u16).filter_map(|code| DATABASE.by_code(&code)).flatten().collect()
}

/// Every example number of every descriptor of every region, in E.164 form when it is one.
fn examples() -> (Vec<Msisdn>, usize) {
    let mut numbers = Vec::new();
    let mut skipped = 0;
    for meta in regions() {
        for descriptor in descriptors(meta) {
            let Some(example) = descriptor.example() else { continue };
            match Msisdn::parse(&format!("+{}{example}", meta.country_code())) {
                Ok(n) => numbers.push(n),
                Err(_) => skipped += 1,
            }
        }
    }
    numbers.sort();
    numbers.dedup();
    (numbers, skipped)
}

/// A linear congruential generator (Knuth's MMIX constants): deterministic, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `count` numbers over the calling codes in use: a region, one of its lengths (now and then
/// one more or one less), the start of one of its example numbers (so that many are valid,
/// of every type) and random digits after it.
fn sample(count: usize) -> Vec<Msisdn> {
    let regions = regions();
    let mut rng = Lcg(0x5eed_1234_abcd_0042);
    let mut numbers = Vec::with_capacity(count);
    while numbers.len() < count {
        let meta = regions[rng.below(regions.len())];
        let descriptors = descriptors(meta);
        let mut lengths: Vec<u16> = descriptors.iter().flat_map(|d| d.possible_length().iter().copied()).collect();
        if lengths.is_empty() {
            lengths = vec![6, 7, 8, 9, 10];
        }
        let mut length = usize::from(lengths[rng.below(lengths.len())]);
        match rng.below(10) {
            0 => length += 1,
            1 => length = length.saturating_sub(1),
            _ => {}
        }
        let examples: Vec<&str> = descriptors.iter().filter_map(|d| d.example()).collect();
        let mut national = String::with_capacity(length);
        if !examples.is_empty() && rng.below(8) != 0 {
            let example = examples[rng.below(examples.len())];
            let keep = rng.below(example.len().min(length).max(1) + 1).min(length);
            national.push_str(&example[..keep.min(example.len())]);
        }
        while national.len() < length {
            national.push(char::from(b'0' + rng.below(10) as u8));
        }
        if let Ok(n) = Msisdn::parse(&format!("+{}{national}", meta.country_code())) {
            numbers.push(n);
        }
    }
    numbers
}

/// What a plan says of E.164 digits (without the `+`).
fn on_digits(plan: &Plan, digits: &str) -> Destination {
    match plan.classify_digits(digits) {
        Some((region, number_type)) => Destination { valid: true, number_type, region },
        None => Destination::INVALID,
    }
}

/// Why ours and `phonenumber`'s answers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Why {
    /// `phonenumber` says valid, we (whole match) say not.
    WholeMatchInvalid,
    /// Both valid, but whole matching gives another type or region.
    WholeMatchOther,
    /// `phonenumber::parse` stripped a national prefix or carrier code.
    Parse,
    /// `phonenumber` dropped the national number's leading zeros.
    LeadingZeros,
    /// None of the above: a bug here.
    Unexplained,
}

fn show(d: &Destination) -> String {
    if !d.valid {
        return "invalid".into();
    }
    format!("{}/{}", d.number_type.as_str(), d.region.map_or("-".to_owned(), |r| r.to_string()))
}

/// Counts of a comparison.
#[derive(Debug, Default)]
struct Counts {
    /// Numbers we take for valid.
    valid: usize,
    /// Numbers whole matching classifies otherwise than prefix matching (whatever
    /// `phonenumber` says).
    whole_not_prefix: usize,
    /// Of those, numbers whole matching takes for valid (so prefix matching gives another
    /// type or region): there are none, whole matching only ever refuses more.
    whole_valid_not_prefix: Vec<String>,
}

/// Compares every number and returns the differences by kind, with all the lines to print.
fn compare(numbers: &[Msisdn]) -> (BTreeMap<Why, Vec<String>>, Counts) {
    let prefix = Plan::new(Anchoring::Prefix);
    let whole = Plan::shared();
    let mut differences: BTreeMap<Why, Vec<String>> = BTreeMap::new();
    let mut counts = Counts::default();
    for number in numbers {
        let ours = classify_with(whole, number);
        let as_prefix = classify_with(&prefix, number);
        counts.valid += usize::from(ours.valid);
        if ours != as_prefix {
            counts.whole_not_prefix += 1;
            if ours.valid {
                counts.whole_valid_not_prefix.push(format!("{number}: {} / {}", show(&ours), show(&as_prefix)));
            }
        }
        let theirs = reference(number);
        if ours == theirs.destination {
            continue;
        }
        let digits = &number.as_str()[1..];
        let why = match &theirs.parsed {
            // `parse` refused it (a national number too short once a prefix is stripped).
            None => Why::Parse,
            Some((code, national)) if format!("{code}{national}") != digits => {
                // What `phonenumber` classified is another number; ours in prefix mode gives
                // its answer for that one (its validity only, if that has leading zeros).
                let other = on_digits(&prefix, &format!("{code}{national}"));
                let same = if national.starts_with('0') {
                    other.valid == theirs.destination.valid
                } else {
                    other == theirs.destination
                };
                if same { Why::Parse } else { Why::Unexplained }
            }
            Some((_, national)) if national.starts_with('0') => {
                if as_prefix.valid == theirs.destination.valid {
                    Why::LeadingZeros
                } else {
                    Why::Unexplained
                }
            }
            Some(_) if as_prefix != theirs.destination => Why::Unexplained,
            Some(_) if !ours.valid => Why::WholeMatchInvalid,
            Some(_) => Why::WholeMatchOther,
        };
        let parsed = theirs.parsed.map_or("-".into(), |(c, n)| format!("+{c} {n}"));
        differences.entry(why).or_default().push(format!(
            "{number}: ours {}, phonenumber {} (parsed as {parsed}), ours in prefix mode {}",
            show(&ours),
            show(&theirs.destination),
            show(&as_prefix),
        ));
    }
    (differences, counts)
}

fn report(name: &str, total: usize, counts: &Counts, differences: &BTreeMap<Why, Vec<String>>) -> String {
    let differing: usize = differences.values().map(Vec::len).sum();
    let mut out = format!(
        "{name}: {total} numbers compared ({} valid by us), {} agree with phonenumber, {differing} differ; \
         {} classified otherwise by whole than by prefix matching, all invalid by whole matching: {}\n",
        counts.valid,
        total - differing,
        counts.whole_not_prefix,
        counts.whole_valid_not_prefix.is_empty(),
    );
    for (why, lines) in differences {
        let ours_invalid = lines.iter().filter(|l| l.contains(": ours invalid,")).count();
        let theirs_invalid = lines.iter().filter(|l| l.contains(", phonenumber invalid ")).count();
        let _ = writeln!(
            out,
            "  {why:?}: {} (invalid by us only: {ours_invalid}, by phonenumber only: {theirs_invalid})",
            lines.len()
        );
        for line in lines.iter().take(6) {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

/// Compares the numbers and allows the documented differences only. The whole-match ones
/// must all be numbers `phonenumber` takes for valid and we do not: wherever we say valid and
/// `phonenumber` classifies the same national number, it agrees on the type and region.
fn check(name: &str, numbers: &[Msisdn]) {
    let (differences, counts) = compare(numbers);
    println!("{}", report(name, numbers.len(), &counts, &differences));
    assert_eq!(counts.whole_valid_not_prefix, Vec::<String>::new());
    for why in [Why::Unexplained, Why::WholeMatchOther] {
        assert!(!differences.contains_key(&why), "{why:?}:\n{}", differences[&why].join("\n"));
    }
}

#[test]
fn the_built_metadata_is_the_database() {
    let squeeze = |p: &str| p.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let desc = |ours: Option<crate::metadata::Desc>, theirs: Option<&Descriptor>| match (ours, theirs) {
        (None, None) => true,
        (Some(o), Some(t)) => {
            squeeze(o.pattern) == squeeze(t.national_number().as_str()) && o.lengths == t.possible_length()
        }
        _ => false,
    };
    let codes: Vec<u16> = (1..1000u16).filter(|c| DATABASE.by_code(c).is_some()).collect();
    assert_eq!(CODES.iter().map(|c| c.code).collect::<Vec<_>>(), codes);
    for code in CODES {
        let theirs = DATABASE.by_code(&code.code).unwrap();
        assert_eq!(code.regions.len(), theirs.len(), "+{}", code.code);
        for (o, t) in code.regions.iter().zip(theirs) {
            let at = format!("+{} {}", code.code, o.id);
            assert_eq!(o.id, t.id(), "{at}");
            assert_eq!(o.leading_digits.map(squeeze), t.leading_digits().map(|l| squeeze(l.as_str())), "{at}");
            let d = t.descriptors();
            assert!(desc(Some(o.general), Some(d.general())), "{at}");
            for (ours, theirs) in [
                (o.premium_rate, d.premium_rate()),
                (o.toll_free, d.toll_free()),
                (o.shared_cost, d.shared_cost()),
                (o.voip, d.voip()),
                (o.personal_number, d.personal_number()),
                (o.pager, d.pager()),
                (o.uan, d.uan()),
                (o.voicemail, d.voicemail()),
                (o.fixed_line, d.fixed_line()),
                (o.mobile, d.mobile()),
            ] {
                assert!(desc(ours, theirs), "{at}");
            }
            let same = d
                .fixed_line()
                .zip(d.mobile())
                .is_some_and(|(f, m)| f.national_number().as_str() == m.national_number().as_str());
            assert_eq!(o.same_fixed_and_mobile, same, "{at}");
        }
    }
}

#[test]
fn every_pattern_compiles() {
    let plan = Plan::new(Anchoring::Whole);
    plan.warm(None);
    assert_eq!(plan.failed(), Vec::<String>::new());
    let prefix = Plan::new(Anchoring::Prefix);
    prefix.warm(None);
    assert_eq!(prefix.failed(), Vec::<String>::new());
}

#[test]
fn calling_codes_are_prefix_free() {
    let codes: Vec<String> = Plan::shared().calling_codes().map(|c| c.to_string()).collect();
    for a in &codes {
        for b in &codes {
            assert!(a == b || !b.starts_with(a.as_str()), "{a} is a prefix of {b}");
        }
    }
}

#[test]
fn parity_on_example_numbers() {
    let (numbers, skipped) = examples();
    println!("{skipped} example numbers are not E.164 (too short) and were skipped");
    assert!(numbers.len() > 900, "{}", numbers.len());
    check("example numbers", &numbers);
}

#[test]
fn parity_on_a_sample() {
    let numbers = sample(20_000);
    check("sample", &numbers);
}
