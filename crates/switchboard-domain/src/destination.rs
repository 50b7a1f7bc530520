//! What a destination number is (valid or not in its numbering plan, its number type, its
//! country), and the rules that decide, from that, whether a message may go to it.
//!
//! A lookup (the `switchboard-lookup` crate) tells a [`Destination`]; the operator's
//! [`DestinationRules`] and each account's [`AccountDestinations`] then decide, with
//! [`DestinationRules::refusal`] and [`AccountDestinations::refusal`], whether the message is
//! refused and with which [`ErrorType`].

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ErrorType, MessageKind, Msisdn};

string_enum! {
    /// What kind of line a number is, as libphonenumber's metadata classifies it.
    NumberType {
        /// A mobile number.
        Mobile = "mobile",
        /// A fixed (landline) number.
        FixedLine = "fixed_line",
        /// A number the plan does not tell apart as fixed or mobile (the North American plan).
        FixedLineOrMobile = "fixed_line_or_mobile",
        /// A freephone number.
        TollFree = "toll_free",
        /// A premium-rate number.
        PremiumRate = "premium_rate",
        /// A shared-cost number.
        SharedCost = "shared_cost",
        /// A voice-over-IP number.
        Voip = "voip",
        /// A personal number, forwarded to another line.
        PersonalNumber = "personal_number",
        /// A pager.
        Pager = "pager",
        /// A universal access number (a company's one number).
        Uan = "uan",
        /// A voicemail access number.
        Voicemail = "voicemail",
        /// Not a number of any known type (so not valid).
        Unknown = "unknown",
    }
}

impl NumberType {
    /// The types refused by default: they cannot receive a text (fixed lines where the plan
    /// tells them apart, voicemail, pagers, company numbers) or would cost the sender a
    /// premium (premium rate, shared cost).
    pub const REFUSED_BY_DEFAULT: &'static [NumberType] = &[
        NumberType::FixedLine,
        NumberType::PremiumRate,
        NumberType::SharedCost,
        NumberType::Uan,
        NumberType::Voicemail,
        NumberType::Pager,
    ];
}

/// Why a country code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a country code (expected two letters A-Z, ISO 3166-1 alpha-2, e.g. US)")]
pub struct RegionError(String);

/// A country or territory, by its ISO 3166-1 alpha-2 code (`US`, `GB`, `GG`), as
/// libphonenumber names the region a number belongs to. Parsed case-insensitively, kept and
/// shown in upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region([u8; 2]);

impl Region {
    /// Parses two ASCII letters.
    pub fn parse(s: &str) -> Result<Self, RegionError> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Ok(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => Err(RegionError(s.chars().take(16).collect())),
        }
    }

    /// The code, in upper case.
    pub fn as_str(&self) -> &str {
        // Built only from ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.as_str())
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Region {
    type Err = RegionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Region {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some("A country or territory: its ISO 3166-1 alpha-2 code."))
            .pattern(Some("^[A-Za-z]{2}$"))
            .examples(["US"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Region {}

/// What a lookup tells of a destination number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Whether the number is valid in its numbering plan.
    pub valid: bool,
    /// Its line type; [`NumberType::Unknown`] when not valid.
    pub number_type: NumberType,
    /// Its country or territory; none for numbers of no country (`+800` freephone, `+881`
    /// satellite) and for invalid ones.
    pub region: Option<Region>,
}

impl Destination {
    /// A number that is not valid in any plan.
    pub const INVALID: Destination = Destination { valid: false, number_type: NumberType::Unknown, region: None };
}

/// The operator's rules for every account: the countries no message goes to, the countries
/// where MMS is offered, and the number types refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRules {
    /// Countries no message goes to (`geographic_restriction`).
    pub blocked_regions: BTreeSet<Region>,
    /// Countries MMS goes to; an MMS to any other is `service_restricted`.
    pub mms_regions: BTreeSet<Region>,
    /// Number types refused (`invalid_destination`).
    pub refused_types: BTreeSet<NumberType>,
    /// Numbers no message goes to (`destination_blocked`): each a whole E.164 number or the
    /// start of one (`+1900`), as `+` and digits.
    pub blocked_numbers: Vec<String>,
}

impl Default for DestinationRules {
    fn default() -> Self {
        let us_ca = ["US", "CA"].map(|r| Region::parse(r).expect("a valid code"));
        Self {
            blocked_regions: BTreeSet::new(),
            mms_regions: us_ca.into_iter().collect(),
            refused_types: NumberType::REFUSED_BY_DEFAULT.iter().copied().collect(),
            blocked_numbers: Vec::new(),
        }
    }
}

impl PartialOrd for NumberType {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NumberType {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

impl DestinationRules {
    /// Whether the number is one the operator blocks, whole or by its start: such a message
    /// is refused `destination_blocked`, looked up or not.
    pub fn blocks(&self, number: &Msisdn) -> bool {
        self.blocked_numbers.iter().any(|prefix| number.as_str().starts_with(prefix.as_str()))
    }

    /// Whether an entry of `blocked_numbers` is `+` and 1 to 15 digits.
    pub fn is_number_prefix(entry: &str) -> bool {
        entry.strip_prefix('+').is_some_and(|d| (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Why a message of this kind may not go to this destination, if it may not: an invalid
    /// number or a refused type is `invalid_destination`, a blocked country
    /// `geographic_restriction`, and an MMS outside the MMS countries `service_restricted`,
    /// checked in that order.
    pub fn refusal(&self, destination: &Destination, kind: MessageKind) -> Option<ErrorType> {
        if !destination.valid || self.refused_types.contains(&destination.number_type) {
            return Some(ErrorType::InvalidDestination);
        }
        if destination.region.is_some_and(|r| self.blocked_regions.contains(&r)) {
            return Some(ErrorType::GeographicRestriction);
        }
        if kind == MessageKind::Mms && !destination.region.is_some_and(|r| self.mms_regions.contains(&r)) {
            return Some(ErrorType::ServiceRestricted);
        }
        None
    }
}

/// An account's own destination settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDestinations {
    /// The only countries the account sends to; `None` for every country.
    pub allowed_regions: Option<BTreeSet<Region>>,
    /// Whether numbers the plan does not tell apart as fixed or mobile are accepted.
    pub fixed_or_mobile: bool,
}

impl Default for AccountDestinations {
    fn default() -> Self {
        Self { allowed_regions: None, fixed_or_mobile: true }
    }
}

impl AccountDestinations {
    /// Why the account may not send to this destination, if it may not: a fixed-or-mobile
    /// number it does not accept is `invalid_destination`, a country outside its list
    /// `geographic_restriction`.
    pub fn refusal(&self, destination: &Destination) -> Option<ErrorType> {
        if !self.fixed_or_mobile && destination.number_type == NumberType::FixedLineOrMobile {
            return Some(ErrorType::InvalidDestination);
        }
        match &self.allowed_regions {
            Some(allowed) if !destination.region.is_some_and(|r| allowed.contains(&r)) => {
                Some(ErrorType::GeographicRestriction)
            }
            _ => None,
        }
    }

    /// The allowed countries as stored: comma-separated codes, `None` for all.
    pub fn stored_regions(&self) -> Option<String> {
        self.allowed_regions.as_ref().map(|set| set.iter().map(Region::as_str).collect::<Vec<_>>().join(","))
    }

    /// Reads the stored form of [`Self::stored_regions`]; `None` if a code does not parse.
    pub fn parse_regions(stored: &str) -> Option<BTreeSet<Region>> {
        stored.split(',').filter(|s| !s.is_empty()).map(|s| Region::parse(s).ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Region {
        Region::parse(s).unwrap()
    }

    fn dest(number_type: NumberType, region: &str) -> Destination {
        Destination { valid: true, number_type, region: Some(r(region)) }
    }

    #[test]
    fn regions_parse_two_letters_only() {
        assert_eq!(r("gb").as_str(), "GB");
        for bad in ["", "G", "GBR", "G1", "É", "1A"] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_value(r("us")).unwrap(), "US");
    }

    #[test]
    fn operator_rules_in_order() {
        let rules =
            DestinationRules { blocked_regions: [r("RU")].into_iter().collect(), ..DestinationRules::default() };
        let sms = MessageKind::Sms;
        assert_eq!(rules.refusal(&Destination::INVALID, sms), Some(ErrorType::InvalidDestination));
        assert_eq!(rules.refusal(&dest(NumberType::FixedLine, "GB"), sms), Some(ErrorType::InvalidDestination));
        assert_eq!(rules.refusal(&dest(NumberType::PremiumRate, "US"), sms), Some(ErrorType::InvalidDestination));
        assert_eq!(rules.refusal(&dest(NumberType::Mobile, "GB"), sms), None);
        assert_eq!(rules.refusal(&dest(NumberType::TollFree, "US"), sms), None);
        assert_eq!(rules.refusal(&dest(NumberType::Mobile, "RU"), sms), Some(ErrorType::GeographicRestriction));
        // An invalid number in a blocked country is invalid first.
        assert_eq!(rules.refusal(&dest(NumberType::Pager, "RU"), sms), Some(ErrorType::InvalidDestination));
        let mms = MessageKind::Mms;
        assert_eq!(rules.refusal(&dest(NumberType::Mobile, "GB"), mms), Some(ErrorType::ServiceRestricted));
        assert_eq!(rules.refusal(&dest(NumberType::FixedLineOrMobile, "CA"), mms), None);
        let nowhere = Destination { valid: true, number_type: NumberType::TollFree, region: None };
        assert_eq!(rules.refusal(&nowhere, mms), Some(ErrorType::ServiceRestricted));
        assert_eq!(rules.refusal(&nowhere, sms), None);
    }

    #[test]
    fn blocked_numbers_whole_or_by_start() {
        let rules = DestinationRules {
            blocked_numbers: vec!["+1900".into(), "+447400123456".into()],
            ..DestinationRules::default()
        };
        let n = |s: &str| Msisdn::parse(s).unwrap();
        assert!(rules.blocks(&n("+19005551234")));
        assert!(rules.blocks(&n("+447400123456")));
        assert!(!rules.blocks(&n("+447400123457")));
        assert!(!rules.blocks(&n("+18005551234")));
        for ok in ["+1", "+1900", "+447400123456"] {
            assert!(DestinationRules::is_number_prefix(ok), "{ok}");
        }
        for bad in ["", "+", "1900", "+1 900", "+1234567890123456", "+19a"] {
            assert!(!DestinationRules::is_number_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn account_rules() {
        let all = AccountDestinations::default();
        assert_eq!(all.refusal(&dest(NumberType::FixedLineOrMobile, "US")), None);
        let strict = AccountDestinations {
            allowed_regions: Some([r("US"), r("CA")].into_iter().collect()),
            fixed_or_mobile: false,
        };
        assert_eq!(strict.refusal(&dest(NumberType::FixedLineOrMobile, "US")), Some(ErrorType::InvalidDestination));
        assert_eq!(strict.refusal(&dest(NumberType::Mobile, "GB")), Some(ErrorType::GeographicRestriction));
        assert_eq!(strict.refusal(&dest(NumberType::Mobile, "CA")), None);
        let nowhere = Destination { valid: true, number_type: NumberType::TollFree, region: None };
        assert_eq!(strict.refusal(&nowhere), Some(ErrorType::GeographicRestriction));
        assert_eq!(strict.stored_regions().as_deref(), Some("CA,US"));
        assert_eq!(AccountDestinations::parse_regions("CA,US"), strict.allowed_regions);
        assert_eq!(AccountDestinations::parse_regions(""), Some(BTreeSet::new()));
        assert_eq!(AccountDestinations::parse_regions("CA,USA"), None);
    }
}
