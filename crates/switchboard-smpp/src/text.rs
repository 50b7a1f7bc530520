//! Message text on the SMPP wire: GSM-7 (unpacked septets, `data_coding` 0) and UCS-2
//! (UTF-16 big-endian, `data_coding` 8), split into concatenated parts with an 8-bit reference
//! user data header.
//!
//! A text that fits one SMS (160 septets, or 70 UTF-16 units) goes as one part with no header.
//! A longer one goes in parts of at most 153 septets or 67 units, each starting with the
//! header `05 00 03 <reference> <count> <sequence>`. A part never ends between an escape and
//! the character it announces, nor inside a surrogate pair.
//!
//! rusmpp-extra's multipart builders are not used: its GSM-7 splitter measures parts in
//! octets against 140 (or, raised to 160, fills 154 septets where the header leaves 153), and
//! its UCS-2 encoder refuses characters outside the Basic Multilingual Plane (emoji).

use switchboard_domain::Encoding;

/// `data_coding` of GSM-7 (the SMSC default alphabet).
pub const DATA_CODING_GSM7: u8 = 0x00;
/// `data_coding` of UCS-2.
pub const DATA_CODING_UCS2: u8 = 0x08;
/// The `esm_class` bit saying the short message starts with a user data header.
pub const ESM_CLASS_UDHI: u8 = 0x40;

/// The GSM 03.38 default alphabet, by septet value.
const GSM_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The escape septet that announces a character of the extension table.
const GSM_ESCAPE: u8 = 0x1b;

/// The GSM 03.38 extension table: (septet after the escape, character).
const GSM_EXTENSION: [(u8, char); 10] = [
    (0x0a, '\u{0c}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2f, '\\'),
    (0x3c, '['),
    (0x3d, '~'),
    (0x3e, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Septets per part: one SMS alone, and one part of a concatenated SMS.
const GSM7_SINGLE: usize = 160;
const GSM7_PART: usize = 153;
/// Octets per part in UCS-2 (70 and 67 UTF-16 units).
const UCS2_SINGLE: usize = 140;
const UCS2_PART: usize = 134;
/// Most parts a concatenated message may have (the count is one octet).
const MAX_PARTS: usize = 255;

/// The septet of each ASCII character in the default alphabet, or `NOT_BASIC`; built from
/// `GSM_BASIC` so that the two cannot disagree.
const ASCII_SEPTETS: [u8; 128] = {
    let mut table = [NOT_BASIC; 128];
    let mut septet = 0;
    while septet < GSM_BASIC.len() {
        let c = GSM_BASIC[septet] as u32;
        if c < 128 && c != GSM_ESCAPE as u32 {
            table[c as usize] = septet as u8;
        }
        septet += 1;
    }
    table
};
const NOT_BASIC: u8 = 0xff;

/// The octets of one character on the wire: one or two septets (an escape and one) in GSM-7,
/// two or four octets (a surrogate pair) in UCS-2. A part never splits one.
#[derive(Clone, Copy)]
struct Unit {
    octets: [u8; 4],
    len: u8,
}

impl Unit {
    fn as_slice(&self) -> &[u8] {
        &self.octets[..usize::from(self.len)]
    }
}

/// The septets of one character in GSM-7 (one, or an escape and one), or `None`.
fn gsm7_unit(c: char) -> Option<Unit> {
    let one = |s: u8| Unit { octets: [s, 0, 0, 0], len: 1 };
    if c.is_ascii() {
        let septet = ASCII_SEPTETS[c as usize];
        if septet != NOT_BASIC {
            return Some(one(septet));
        }
    } else if let Some(i) = GSM_BASIC.iter().position(|&g| g == c) {
        return Some(one(i as u8));
    }
    if c == '\u{1b}' {
        return None;
    }
    GSM_EXTENSION.iter().find(|(_, g)| *g == c).map(|&(code, _)| Unit { octets: [GSM_ESCAPE, code, 0, 0], len: 2 })
}

/// The UTF-16 big-endian octets of one character.
fn ucs2_unit(c: char) -> Unit {
    let mut buf = [0u16; 2];
    let units = c.encode_utf16(&mut buf);
    let mut octets = [0u8; 4];
    for (i, u) in units.iter().enumerate() {
        octets[2 * i..2 * i + 2].copy_from_slice(&u.to_be_bytes());
    }
    Unit { octets, len: 2 * units.len() as u8 }
}

/// A text ready for `submit_sm`: its `data_coding`, and the short message of each part (with
/// its user data header when there is more than one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedText {
    /// `data_coding` of every part.
    pub data_coding: u8,
    /// Whether the parts start with a user data header (set `esm_class` UDHI).
    pub udhi: bool,
    /// The `short_message` of each part, in order.
    pub parts: Vec<Vec<u8>>,
    /// Whether the text was asked for in GSM-7 but holds a character GSM-7 lacks, so it is
    /// sent in UCS-2 instead.
    pub fell_back_to_ucs2: bool,
}

/// Why a text cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// It needs more than 255 parts.
    TooLong {
        /// How many it would take.
        parts: usize,
    },
}

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextError::TooLong { parts } => {
                write!(f, "the text needs {parts} SMS parts; at most {MAX_PARTS} can be joined")
            }
        }
    }
}

impl std::error::Error for TextError {}

/// Encodes `text` in `encoding` (falling back to UCS-2 when GSM-7 cannot carry it) and splits it
/// into parts whose headers carry `reference`.
pub fn encode_text(text: &str, encoding: Encoding, reference: u8) -> Result<EncodedText, TextError> {
    let gsm: Option<Vec<Unit>> = match encoding {
        Encoding::Gsm7 => text.chars().map(gsm7_unit).collect(),
        Encoding::Ucs2 => None,
    };
    let (data_coding, units, single, per_part) = match gsm {
        Some(units) => (DATA_CODING_GSM7, units, GSM7_SINGLE, GSM7_PART),
        None => (DATA_CODING_UCS2, text.chars().map(ucs2_unit).collect(), UCS2_SINGLE, UCS2_PART),
    };
    let fell_back_to_ucs2 = encoding == Encoding::Gsm7 && data_coding == DATA_CODING_UCS2;
    let total: usize = units.iter().map(|u| usize::from(u.len)).sum();
    if total <= single {
        let mut part = Vec::with_capacity(total);
        for u in &units {
            part.extend_from_slice(u.as_slice());
        }
        return Ok(EncodedText { data_coding, udhi: false, parts: vec![part], fell_back_to_ucs2 });
    }
    // Where each part ends in `units`: as many whole units as fit.
    let mut ends = Vec::new();
    let mut filled = 0;
    for (i, u) in units.iter().enumerate() {
        if filled + usize::from(u.len) > per_part {
            ends.push(i);
            filled = 0;
        }
        filled += usize::from(u.len);
    }
    ends.push(units.len());
    if ends.len() > MAX_PARTS {
        return Err(TextError::TooLong { parts: ends.len() });
    }
    let count = ends.len() as u8;
    let mut start = 0;
    let parts = ends
        .into_iter()
        .enumerate()
        .map(|(i, end)| {
            let mut part = Vec::with_capacity(6 + per_part);
            part.extend_from_slice(&[0x05, 0x00, 0x03, reference, count, i as u8 + 1]);
            for u in &units[start..end] {
                part.extend_from_slice(u.as_slice());
            }
            start = end;
            part
        })
        .collect();
    Ok(EncodedText { data_coding, udhi: true, parts, fell_back_to_ucs2 })
}

/// Decodes unpacked GSM-7 septets. An escape before a septet the extension table lacks stands
/// for nothing (the septet is read from the default table); octets above 0x7F, which unpacked
/// GSM-7 never holds, are read as Latin-1.
pub fn decode_gsm7(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut escaped = false;
    for &b in bytes {
        if escaped {
            escaped = false;
            match GSM_EXTENSION.iter().find(|(code, _)| *code == b) {
                Some((_, c)) => out.push(*c),
                None => out.push(GSM_BASIC[usize::from(b & 0x7f)]),
            }
        } else if b == GSM_ESCAPE {
            escaped = true;
        } else if b < 0x80 {
            out.push(GSM_BASIC[usize::from(b)]);
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Decodes UTF-16 big-endian (UCS-2 and its surrogate pairs); broken units become U+FFFD and a
/// trailing odd octet is dropped.
pub fn decode_ucs2(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
    String::from_utf16_lossy(&units)
}

/// Decodes a short message by its `data_coding`: 0 GSM-7, 8 UCS-2, 1 (IA5) and 3 (Latin-1) as
/// Latin-1. Other codings (binary, national ones) give `None`.
pub fn decode_text(data_coding: u8, bytes: &[u8]) -> Option<String> {
    match data_coding {
        DATA_CODING_GSM7 => Some(decode_gsm7(bytes)),
        DATA_CODING_UCS2 => Some(decode_ucs2(bytes)),
        0x01 | 0x03 => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

/// The short message without its user data header (when `udhi` says there is one).
pub fn strip_udh(udhi: bool, bytes: &[u8]) -> &[u8] {
    if !udhi {
        return bytes;
    }
    match bytes.first() {
        Some(&len) => bytes.get(1 + usize::from(len)..).unwrap_or(&[]),
        None => bytes,
    }
}

#[cfg(test)]
mod tests;
