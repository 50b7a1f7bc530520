//! Known answers of the offline lookup, checked against `phonenumber` too where it agrees.

use phonenumber::Type;
use phonenumber::metadata::DATABASE;
use switchboard_domain::{Destination, Msisdn, NumberType, Region};
use switchboard_lookup::{Lookup, OfflineLookup};

fn n(s: &str) -> Msisdn {
    Msisdn::parse(s).unwrap()
}

fn valid(number_type: NumberType, region: &str) -> Destination {
    Destination { valid: true, number_type, region: Some(Region::parse(region).unwrap()) }
}

fn non_geographic(number_type: NumberType) -> Destination {
    Destination { valid: true, number_type, region: None }
}

/// What `phonenumber` says (`parse` + `is_valid` + `number_type` + `country().id()`).
fn phonenumber_says(number: &str) -> (bool, Type, Option<String>) {
    let Ok(parsed) = phonenumber::parse(None, number) else { return (false, Type::Unknown, None) };
    let region = parsed.country().id().map(|id| id.as_ref().to_owned());
    (phonenumber::is_valid(&parsed), parsed.number_type(&DATABASE), region)
}

/// The answers the gateway was specified with (observed from `phonenumber`).
const SPECIFIED: &[(&str, Option<(NumberType, &str)>)] = &[
    ("+447911123456", Some((NumberType::Mobile, "GG"))),
    ("+447400123456", Some((NumberType::Mobile, "GB"))),
    ("+442071234567", Some((NumberType::FixedLine, "GB"))),
    ("+449090123456", Some((NumberType::PremiumRate, "GB"))),
    ("+447040123456", Some((NumberType::PersonalNumber, "GB"))),
    ("+18005551234", Some((NumberType::TollFree, "US"))),
    ("+19005551234", Some((NumberType::PremiumRate, "US"))),
    ("+14155550100", Some((NumberType::FixedLineOrMobile, "US"))),
    ("+16135550123", Some((NumberType::FixedLineOrMobile, "CA"))),
    ("+31612345678", Some((NumberType::Mobile, "NL"))),
    ("+4915112345678", Some((NumberType::Mobile, "DE"))),
    ("+33612345678", Some((NumberType::Mobile, "FR"))),
    ("+447700900123", None),
    ("+18000000123", None),
    ("+15550001001", None),
    ("+123456789012345", None),
];

/// More answers: shared calling codes (+7, +1 in the Caribbean, +39), the non-geographic
/// codes, a national number with a leading zero.
const MORE: &[(&str, Option<(NumberType, &str)>)] = &[
    // Italy: the fixed lines' leading 0 is part of the national number.
    ("+390212345678", Some((NumberType::FixedLine, "IT"))),
    ("+393123456789", Some((NumberType::Mobile, "IT"))),
    // Vatican City shares +39 (its leading digits 06698).
    ("+390669812345", Some((NumberType::FixedLine, "VA"))),
    // +7: Kazakhstan's national numbers start with 7 (its leading digits), Russia's not.
    ("+77012345678", Some((NumberType::Mobile, "KZ"))),
    ("+77123456789", Some((NumberType::FixedLine, "KZ"))),
    ("+79123456789", Some((NumberType::Mobile, "RU"))),
    ("+73011234567", Some((NumberType::FixedLine, "RU"))),
    ("+78001234567", Some((NumberType::TollFree, "RU"))),
    // The Caribbean on +1, by area code (leading digits).
    ("+18762101234", Some((NumberType::Mobile, "JM"))),
    ("+18765230123", Some((NumberType::FixedLineOrMobile, "JM"))),
    ("+12423591234", Some((NumberType::Mobile, "BS"))),
    ("+17875550123", Some((NumberType::FixedLineOrMobile, "PR"))),
    // Neither a US nor a Caribbean area code.
    ("+12115550123", None),
    // Unknown calling codes.
    ("+99912345678", None),
    ("+28012345678", None),
];

#[test]
fn known_answers() {
    let lookup = OfflineLookup::new();
    for &(number, expected) in SPECIFIED.iter().chain(MORE) {
        let expected = expected.map_or(Destination::INVALID, |(t, r)| valid(t, r));
        assert_eq!(lookup.classify(&n(number)), expected, "{number}");
    }
}

#[test]
fn non_geographic_numbers_have_no_region() {
    let lookup = OfflineLookup::new();
    // +800 freephone, +979 premium rate, +882 and +883 (international networks).
    assert_eq!(lookup.classify(&n("+80012345678")), non_geographic(NumberType::TollFree));
    assert_eq!(lookup.classify(&n("+979123456789")), non_geographic(NumberType::PremiumRate));
    assert_eq!(lookup.classify(&n("+8001234567")), Destination::INVALID);
    for number in ["+80012345678", "+979123456789"] {
        let (valid, _, region) = phonenumber_says(number);
        assert!(valid, "{number}");
        assert_eq!(region, None, "{number}");
    }
}

/// The numbers of [`MORE`] where `phonenumber` is wrong (see
/// `where_phonenumber_differs_documented`).
const PHONENUMBER_WRONG: &[&str] = &["+390212345678", "+390669812345", "+78001234567"];

#[test]
fn phonenumber_gives_the_same_answers() {
    for &(number, expected) in SPECIFIED.iter().chain(MORE).filter(|(n, _)| !PHONENUMBER_WRONG.contains(n)) {
        let (valid, number_type, region) = phonenumber_says(number);
        match expected {
            Some((t, r)) => {
                assert!(valid, "{number}");
                assert_eq!(format!("{number_type:?}"), format!("{t:?}"), "{number}");
                assert_eq!(region.as_deref(), Some(r), "{number}");
            }
            None => assert!(!valid, "{number}"),
        }
    }
}

#[test]
fn where_phonenumber_differs_documented() {
    // `phonenumber`'s `number_type` and `country` drop the national number's leading zero
    // (though `is_valid` keeps it): an Italian fixed line is valid but of no type or region.
    assert_eq!(phonenumber_says("+390212345678"), (true, Type::Unknown, None));
    assert_eq!(phonenumber_says("+390669812345"), (true, Type::Unknown, None));
    // `phonenumber::parse` strips Russia's national prefix 8 from +7 8…, leaving 9 digits.
    assert!(!phonenumber_says("+78001234567").0);
    // Its prefix match takes a too-long number for a fixed line; libphonenumber does not.
    assert_eq!(phonenumber_says("+3532212345448"), (true, Type::FixedLine, Some("IE".into())));
    assert_eq!(OfflineLookup::new().classify(&n("+3532212345448")), Destination::INVALID);
}

#[test]
fn no_panic_on_any_shape() {
    let lookup = OfflineLookup::new();
    let mut codes: Vec<u16> = lookup.calling_codes();
    codes.extend([0, 2, 28, 99, 999]);
    let mut count = 0;
    for code in codes {
        for len in 8..=15usize {
            for fill in ["0", "1", "5", "9", "0123456789", "9876543210"] {
                let mut s = format!("+{code}");
                while s.len() < len + 1 {
                    s.push_str(fill);
                }
                s.truncate(len + 1);
                if let Ok(number) = Msisdn::parse(&s) {
                    let d = lookup.classify(&number);
                    assert_eq!(d.valid, d.number_type != NumberType::Unknown, "{s}");
                    if !d.valid {
                        assert_eq!(d, Destination::INVALID, "{s}");
                    }
                    count += 1;
                }
            }
        }
    }
    assert!(count > 9000, "{count}");
}

#[test]
fn calling_codes_and_warming() {
    let lookup = OfflineLookup::new();
    let codes = lookup.calling_codes();
    for code in [1, 7, 39, 44, 800, 979] {
        assert!(codes.contains(&code), "{code}");
    }
    assert!(!codes.contains(&999));
    lookup.warm(&[1, 44, 999]);
    assert_eq!(lookup.classify(&n("+447400123456")), valid(NumberType::Mobile, "GB"));
}

#[test]
fn debug_is_short() {
    let lookup = OfflineLookup::new();
    lookup.warm(&[1, 44]);
    let shown = format!("{lookup:?}");
    assert!(shown.len() < 100, "{shown}");
}

#[tokio::test]
async fn the_lookup_trait_answers_classify() {
    let lookup: Box<dyn Lookup> = Box::new(OfflineLookup::default());
    for number in ["+447400123456", "+447700900123", "+80012345678"] {
        assert_eq!(lookup.lookup(&n(number)).await, Ok(OfflineLookup::new().classify(&n(number))), "{number}");
    }
}
