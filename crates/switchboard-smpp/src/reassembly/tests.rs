//! Tests of reading concatenation headers and joining parts.

use super::*;

const TIMEOUT: Duration = Duration::from_secs(30);

fn msisdn(s: &str) -> Msisdn {
    Msisdn::parse(s).unwrap()
}

fn part_from(from: &str, reference: u16, total: u8, seq: u8, data_coding: u8, data: &[u8]) -> Part {
    Part {
        from: msisdn(from),
        to: msisdn("+18005550100"),
        concatenation: Concatenation::new(reference, total, seq).unwrap(),
        data_coding,
        data: data.to_vec(),
    }
}

fn part(reference: u16, total: u8, seq: u8, data_coding: u8, data: &[u8]) -> Part {
    part_from("+447700900123", reference, total, seq, data_coding, data)
}

fn gsm(reference: u16, total: u8, seq: u8, text: &str) -> Part {
    part(reference, total, seq, text::DATA_CODING_GSM7, text.as_bytes())
}

fn ucs2_bytes(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Adds the parts at `now`, each held as its index; returns the body and the held answers of the
/// message the last one completed.
fn complete(r: &mut Reassembler<usize>, parts: Vec<Part>, now: Instant) -> (String, Vec<usize>) {
    let n = parts.len();
    for (i, p) in parts.into_iter().enumerate() {
        let added = r.add(p, i, now);
        assert!(added.released.is_empty(), "part {i} released {:?}", added.released);
        if i + 1 < n {
            assert!(added.complete.is_none(), "complete after part {i}");
        } else {
            let (message, mut held) = added.complete.expect("complete after the last part");
            held.sort_unstable();
            return (message.body.unwrap(), held);
        }
    }
    unreachable!("no parts")
}

#[test]
fn udh_with_8_bit_and_16_bit_references() {
    assert_eq!(udh_concatenation(&[5, 0x00, 3, 0xAB, 3, 2, b'h', b'i']), Concatenation::new(0xAB, 3, 2));
    assert_eq!(udh_concatenation(&[6, 0x08, 4, 0x12, 0x34, 2, 1, b'h']), Concatenation::new(0x1234, 2, 1));
    // Another element first (application port addressing), then the concatenation.
    let udh = [11, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0, 0x00, 3, 7, 2, 2];
    assert_eq!(udh_concatenation(&udh), Some(Concatenation { reference: 7, total: 2, seq: 2 }));
}

#[test]
fn unusable_concatenation_headers_are_ignored() {
    // No concatenation element, a single part, numbers outside the count, a header cut short.
    assert_eq!(udh_concatenation(&[4, 0x05, 2, 0x0B, 0x84]), None);
    assert_eq!(udh_concatenation(&[5, 0x00, 3, 1, 1, 1]), None);
    assert_eq!(udh_concatenation(&[5, 0x00, 3, 1, 3, 0]), None);
    assert_eq!(udh_concatenation(&[5, 0x00, 3, 1, 3, 4]), None);
    assert_eq!(udh_concatenation(&[5, 0x00, 3, 1, 3]), None);
    assert_eq!(udh_concatenation(&[5, 0x00, 4, 1, 3, 1]), None);
    assert_eq!(udh_concatenation(&[]), None);
}

#[test]
fn sar_needs_all_three_tlvs() {
    assert_eq!(sar_concatenation(Some(0xBEEF), Some(4), Some(4)), Concatenation::new(0xBEEF, 4, 4));
    assert_eq!(sar_concatenation(Some(1), None, Some(1)), None);
    assert_eq!(sar_concatenation(Some(1), Some(1), Some(1)), None);
}

#[test]
fn out_of_order_parts_are_joined_in_order() {
    let mut r = Reassembler::new(TIMEOUT, MAX_INCOMPLETE);
    let now = Instant::now();
    let parts = vec![gsm(9, 3, 3, "three"), gsm(9, 3, 1, "one "), gsm(9, 3, 2, "two ")];
    let (body, held) = complete(&mut r, parts, now);
    assert_eq!(body, "one two three");
    assert_eq!(held, [0, 1, 2]);
    assert_eq!((r.incomplete(), r.held(), r.next_deadline()), (0, 0, None));
}

#[test]
fn a_16_bit_reference_and_sar_parts_join_alike() {
    let mut r = Reassembler::new(TIMEOUT, MAX_INCOMPLETE);
    let now = Instant::now();
    let (body, _) = complete(&mut r, vec![gsm(0x1234, 2, 2, "world"), gsm(0x1234, 2, 1, "hello ")], now);
    assert_eq!(body, "hello world");
    // SAR parts read from TLVs give the same concatenation.
    let sar = |seq| Part {
        concatenation: sar_concatenation(Some(0xBEEF), Some(2), Some(seq)).unwrap(),
        ..gsm(0, 2, 1, if seq == 1 { "sar " } else { "parts" })
    };
    let (body, _) = complete(&mut r, vec![sar(1), sar(2)], now);
    assert_eq!(body, "sar parts");
}

#[test]
fn messages_are_told_apart_by_source_destination_reference_and_count() {
    let mut r = Reassembler::new(TIMEOUT, MAX_INCOMPLETE);
    let now = Instant::now();
    let others = [
        part_from("+447700900999", 1, 2, 1, 0, b"other sender "),
        Part { to: msisdn("+18005550199"), ..gsm(1, 2, 1, "other number ") },
        gsm(2, 2, 1, "other reference "),
        gsm(1, 3, 1, "other count "),
    ];
    for (i, p) in others.into_iter().enumerate() {
        assert!(r.add(p, 10 + i, now).complete.is_none());
    }
    assert!(r.add(gsm(1, 2, 2, "end"), 1, now).complete.is_none());
    let added = r.add(gsm(1, 2, 1, "start "), 0, now);
    let (message, held) = added.complete.unwrap();
    assert_eq!(message.body.as_deref(), Some("start end"));
    assert_eq!((message.from.as_str(), message.to.as_str()), ("+447700900123", "+18005550100"));
    assert_eq!(held, [0, 1]);
    assert_eq!(r.incomplete(), 4);
}

#[test]
fn a_ucs2_surrogate_pair_split_across_parts_reads_whole() {
    let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(3));
    let bytes = ucs2_bytes(&text);
    // The first part ends with the emoji's high surrogate; the second starts with its low one.
    let (first, second) = bytes.split_at(134);
    assert_eq!(&first[132..], &[0xD8, 0x3D]);
    let mut r = Reassembler::new(TIMEOUT, MAX_INCOMPLETE);
    let now = Instant::now();
    let parts = vec![part(5, 2, 2, text::DATA_CODING_UCS2, second), part(5, 2, 1, text::DATA_CODING_UCS2, first)];
    let (body, _) = complete(&mut r, parts, now);
    assert_eq!(body, text);
}

#[test]
fn a_gsm7_escape_split_across_parts_reads_whole_and_codings_may_differ() {
    let mut r = Reassembler::new(TIMEOUT, MAX_INCOMPLETE);
    let now = Instant::now();
    let parts = vec![
        part(3, 3, 1, text::DATA_CODING_GSM7, &[b'a', 0x1b]),
        part(3, 3, 2, text::DATA_CODING_GSM7, &[0x65, b'b']),
        part(3, 3, 3, text::DATA_CODING_UCS2, &[0x04, 0x36, 0x00]),
    ];
    let (body, _) = complete(&mut r, parts, now);
    assert_eq!(body, "a€bж");
}

#[test]
fn a_duplicate_part_is_kept_with_the_first_copy_and_answered_with_the_message() {
    let mut r = Reassembler::new(TIMEOUT, MAX_INCOMPLETE);
    let now = Instant::now();
    assert!(r.add(gsm(4, 2, 1, "stale "), 0, now).complete.is_none());
    let again = r.add(gsm(4, 2, 1, "first "), 1, now);
    assert!(again.complete.is_none() && again.released.is_empty() && again.deadline.is_none());
    assert_eq!((r.incomplete(), r.held()), (1, 2));
    let (message, held) = r.add(gsm(4, 2, 2, "second"), 2, now).complete.unwrap();
    // The newest copy's text counts; every copy is answered with the message.
    assert_eq!(message.body.as_deref(), Some("first second"));
    assert_eq!(held, [0, 1, 2]);
}

#[test]
fn past_the_copies_kept_the_oldest_copy_is_released() {
    let mut r = Reassembler::new(TIMEOUT, MAX_INCOMPLETE);
    let now = Instant::now();
    for copy in 0..MAX_COPIES {
        assert!(r.add(gsm(4, 2, 1, "x"), copy, now).released.is_empty());
    }
    assert_eq!(r.add(gsm(4, 2, 1, "x"), MAX_COPIES, now).released, [0]);
    assert_eq!(r.add(gsm(4, 2, 1, "x"), MAX_COPIES + 1, now).released, [1]);
    assert_eq!(r.held(), MAX_COPIES);
}

#[test]
fn an_incomplete_message_expires_at_its_deadline() {
    let mut r = Reassembler::new(TIMEOUT, MAX_INCOMPLETE);
    let start = Instant::now();
    let added = r.add(gsm(1, 3, 1, "a"), 0, start);
    assert_eq!(added.deadline, Some(start + TIMEOUT));
    // A later part does not move the deadline.
    assert_eq!(r.add(gsm(1, 3, 3, "c"), 1, start + Duration::from_secs(10)).deadline, None);
    let later = start + Duration::from_secs(20);
    assert_eq!(r.add(gsm(2, 2, 1, "other"), 2, later).deadline, Some(later + TIMEOUT));
    assert_eq!(r.next_deadline(), Some(start + TIMEOUT));

    assert!(r.expire(start + TIMEOUT - Duration::from_millis(1)).is_empty());
    let mut expired = r.expire(start + TIMEOUT);
    expired.sort_unstable();
    assert_eq!(expired, [0, 1]);
    assert_eq!((r.incomplete(), r.next_deadline()), (1, Some(later + TIMEOUT)));
    // The part that comes after the deadline starts the message again.
    let added = r.add(gsm(1, 3, 2, "b"), 3, start + TIMEOUT);
    assert!(added.complete.is_none() && added.deadline.is_some());
    assert_eq!(r.expire(later + TIMEOUT), [2]);
    assert_eq!(r.expire(start + TIMEOUT * 2), [3]);
    assert_eq!((r.incomplete(), r.held(), r.next_deadline()), (0, 0, None));
}

#[test]
fn past_the_cap_the_oldest_incomplete_message_is_given_up() {
    let mut r = Reassembler::new(TIMEOUT, 2);
    let now = Instant::now();
    assert!(r.add(gsm(1, 3, 1, "a"), 10, now).released.is_empty());
    assert!(r.add(gsm(1, 3, 2, "b"), 11, now).released.is_empty());
    assert!(r.add(gsm(2, 2, 1, "c"), 20, now).released.is_empty());
    // A part of a message already waiting starts nothing new.
    assert!(r.add(gsm(2, 2, 1, "c"), 21, now).released.is_empty());
    let mut released = r.add(gsm(3, 2, 1, "d"), 30, now).released;
    released.sort_unstable();
    assert_eq!(released, [10, 11]);
    assert_eq!(r.incomplete(), 2);
    // The message given up starts again when its parts come again.
    assert_eq!(r.add(gsm(1, 3, 3, "e"), 12, now).released, [20, 21]);
}

#[test]
fn a_message_of_255_parts() {
    let mut r = Reassembler::new(TIMEOUT, MAX_INCOMPLETE);
    let now = Instant::now();
    let parts = (1..=255u8).rev().map(|seq| gsm(77, 255, seq, if seq % 2 == 0 { "b" } else { "a" })).collect();
    let (body, held) = complete(&mut r, parts, now);
    assert_eq!(body.len(), 255);
    assert!(body.starts_with("abab") && body.ends_with("ba"));
    assert_eq!(held.len(), 255);
}
