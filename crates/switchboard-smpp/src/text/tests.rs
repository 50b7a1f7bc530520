//! Tests of the SMPP text encoding and splitting.

use super::*;
use switchboard_domain::encoding::analyze;

fn chunks(encoded: &EncodedText) -> Vec<&[u8]> {
    encoded.parts.iter().map(|p| if encoded.udhi { &p[6..] } else { &p[..] }).collect()
}

#[test]
fn short_gsm7_text_is_one_part_without_header() {
    let e = encode_text("Hi @ {x}", Encoding::Gsm7, 7).unwrap();
    assert_eq!(e.data_coding, DATA_CODING_GSM7);
    assert!(!e.udhi && !e.fell_back_to_ucs2);
    assert_eq!(e.parts, vec![vec![0x48, 0x69, 0x20, 0x00, 0x20, 0x1b, 0x28, 0x78, 0x1b, 0x29]]);
}

#[test]
fn gsm7_single_and_concatenated_sizes() {
    let e = encode_text(&"a".repeat(160), Encoding::Gsm7, 1).unwrap();
    assert_eq!((e.parts.len(), e.udhi), (1, false));
    let e = encode_text(&"a".repeat(161), Encoding::Gsm7, 1).unwrap();
    assert_eq!(chunks(&e).iter().map(|c| c.len()).collect::<Vec<_>>(), [153, 8]);
    assert_eq!(&e.parts[0][..6], &[0x05, 0x00, 0x03, 1, 2, 1]);
    assert_eq!(&e.parts[1][..6], &[0x05, 0x00, 0x03, 1, 2, 2]);
}

#[test]
fn gsm7_escape_pair_is_never_split() {
    // 152 septets, then `€` (escape + 0x65) would straddle the 153-septet boundary.
    let text = format!("{}€{}", "a".repeat(152), "b".repeat(147));
    assert_eq!(text.chars().count(), 300);
    let e = encode_text(&text, Encoding::Gsm7, 9).unwrap();
    let c = chunks(&e);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].len(), 152);
    assert_eq!(&c[1][..2], &[0x1b, 0x65]);
    assert_eq!(decode_gsm7(&[c[0], c[1]].concat()), text);
}

#[test]
fn ucs2_sizes_and_surrogate_pairs() {
    let e = encode_text(&"ж".repeat(70), Encoding::Ucs2, 3).unwrap();
    assert_eq!((e.parts.len(), e.udhi, e.data_coding), (1, false, DATA_CODING_UCS2));
    assert_eq!(e.parts[0].len(), 140);
    // 66 units, then an emoji (a surrogate pair) that would straddle the 67-unit boundary.
    let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(32));
    let e = encode_text(&text, Encoding::Ucs2, 3).unwrap();
    let c = chunks(&e);
    assert_eq!(c.iter().map(|c| c.len()).collect::<Vec<_>>(), [132, 68]);
    assert_eq!(&c[1][..4], &[0xd8, 0x3d, 0xde, 0x00]);
    assert_eq!(decode_ucs2(&[c[0], c[1]].concat()), text);
}

#[test]
fn gsm7_request_with_other_characters_falls_back_to_ucs2() {
    let e = encode_text("ça va", Encoding::Gsm7, 0).unwrap();
    assert!(e.fell_back_to_ucs2);
    assert_eq!(e.data_coding, DATA_CODING_UCS2);
    assert_eq!(decode_ucs2(&e.parts[0]), "ça va");
}

#[test]
fn too_many_parts_are_refused() {
    assert!(encode_text(&"a".repeat(153 * 255), Encoding::Gsm7, 0).is_ok());
    assert_eq!(encode_text(&"a".repeat(153 * 255 + 1), Encoding::Gsm7, 0), Err(TextError::TooLong { parts: 256 }));
}

#[test]
fn part_counts_agree_with_the_domain_counter() {
    let texts = [
        String::new(),
        "hello".into(),
        "€".repeat(80),
        "€".repeat(81),
        format!("{}€{}", "a".repeat(152), "a".repeat(152)),
        "ж".repeat(134),
        "ж".repeat(135),
        format!("{}😀{}", "ж".repeat(66), "ж".repeat(66)),
        "😀".repeat(200),
        "{[x]}".repeat(100),
    ];
    for text in texts {
        let info = analyze(&text);
        let e = encode_text(&text, info.encoding, 0).unwrap();
        assert_eq!(e.parts.len() as u32, info.segments.max(1), "{text}");
    }
}

#[test]
fn every_gsm7_character_round_trips() {
    let all: String =
        GSM_BASIC.iter().filter(|c| **c != '\u{1b}').chain(GSM_EXTENSION.iter().map(|(_, c)| c)).collect();
    let e = encode_text(&all, Encoding::Gsm7, 0).unwrap();
    assert!(!e.fell_back_to_ucs2);
    let bytes: Vec<u8> = chunks(&e).concat();
    assert_eq!(decode_gsm7(&bytes), all);
}

#[test]
fn decoding_by_data_coding() {
    assert_eq!(decode_text(0, &[0x00, 0x02, 0x1b, 0x65]).as_deref(), Some("@$€"));
    assert_eq!(decode_text(8, &[0x04, 0x36, 0xd8, 0x3d, 0xde, 0x00]).as_deref(), Some("ж😀"));
    assert_eq!(decode_text(3, &[0xe9]).as_deref(), Some("é"));
    assert_eq!(decode_text(4, &[1, 2]), None);
    // An escape before a septet outside the extension table reads the default table.
    assert_eq!(decode_gsm7(&[0x1b, 0x41]), "A");
}

#[test]
fn user_data_header_is_stripped() {
    let part = [0x05, 0x00, 0x03, 1, 2, 1, b'h', b'i'];
    assert_eq!(strip_udh(true, &part), b"hi");
    assert_eq!(strip_udh(false, &part), &part);
    assert_eq!(strip_udh(true, &[9, 1]), b"");
}
