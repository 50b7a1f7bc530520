//! Exempt ranges: answered with their destination, before the metadata.

use switchboard_domain::{Destination, Msisdn, NumberType, Region};
use switchboard_lookup::{Exempt, OfflineLookup};

fn n(s: &str) -> Msisdn {
    Msisdn::parse(s).unwrap()
}

fn mobile(region: &str) -> Destination {
    Destination { valid: true, number_type: NumberType::Mobile, region: Some(Region::parse(region).unwrap()) }
}

fn range(first: &str, last: &str, destination: Destination) -> Exempt {
    Exempt { first: n(first), last: n(last), destination }
}

fn test_range() -> OfflineLookup {
    OfflineLookup::new().with_exempt(vec![range("+15550001001", "+15550001011", mobile("US"))])
}

#[test]
fn inside_the_range() {
    let lookup = test_range();
    for number in ["+15550001001", "+15550001005", "+15550001010", "+15550001011"] {
        assert_eq!(lookup.classify(&n(number)), mobile("US"), "{number}");
    }
}

#[test]
fn outside_the_range_is_the_metadata() {
    let lookup = test_range();
    let plain = OfflineLookup::new();
    // One past either end, and numbers of other lengths that sort between the ends.
    for number in ["+15550001000", "+15550001012", "+155500010055", "+1555000101", "+447400123456"] {
        let number = n(number);
        assert_eq!(lookup.classify(&number), plain.classify(&number), "{number}");
    }
    assert_eq!(lookup.classify(&n("+15550001000")), Destination::INVALID);
    assert_eq!(lookup.classify(&n("+447400123456")), mobile("GB"));
}

#[test]
fn ranges_come_before_the_metadata_and_the_first_one_wins() {
    let lookup = OfflineLookup::new().with_exempt(vec![
        range("+447400123450", "+447400123459", Destination::INVALID),
        range("+447400123400", "+447400123499", mobile("GG")),
    ]);
    assert_eq!(lookup.classify(&n("+447400123456")), Destination::INVALID);
    assert_eq!(lookup.classify(&n("+447400123460")), mobile("GG"));
    assert_eq!(lookup.classify(&n("+447400123500")), mobile("GB"));
    // A one-number range.
    let single = OfflineLookup::new().with_exempt(vec![range("+18005551234", "+18005551234", mobile("US"))]);
    assert_eq!(single.classify(&n("+18005551234")), mobile("US"));
    assert_eq!(single.classify(&n("+18005551235")).number_type, NumberType::TollFree);
}

#[test]
fn exempt_contains() {
    let r = range("+15550001001", "+15550001011", mobile("US"));
    assert!(r.contains(&n("+15550001001")));
    assert!(!r.contains(&n("+155500010010")));
}

#[test]
#[should_panic(expected = "same length")]
fn ranges_of_unequal_length_are_refused() {
    let _ = OfflineLookup::new().with_exempt(vec![range("+15550001001", "+155500010110", mobile("US"))]);
}

#[test]
#[should_panic(expected = "after its last")]
fn reversed_ranges_are_refused() {
    let _ = OfflineLookup::new().with_exempt(vec![range("+15550001011", "+15550001001", mobile("US"))]);
}
