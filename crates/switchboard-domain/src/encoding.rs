//! SMS text encoding: GSM-7 or UCS-2 detection and segment counting.
//!
//! GSM 03.38: the basic table costs one septet a character, the extension table
//! (`^ { } \ [ ~ ] | €`) two (an escape and the character). A single SMS carries 160 septets;
//! a concatenated one 153 per part (the user data header takes the rest). UCS-2 counts UTF-16
//! code units: 70 in a single SMS, 67 per part; a character outside the BMP takes two units.
//! Parts never split an escape pair or a surrogate pair.

use serde::{Deserialize, Serialize};

/// The alphabet a text is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet with its extension table.
    Gsm7,
    /// UCS-2 (UTF-16 code units).
    Ucs2,
}

impl Encoding {
    /// The name stored and shown: `gsm7` or `ucs2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gsm7" => Some(Encoding::Gsm7),
            "ucs2" => Some(Encoding::Ucs2),
            _ => None,
        }
    }
}

/// What a text costs on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextInfo {
    /// The alphabet it needs.
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// How many SMS parts it takes (0 for an empty text).
    pub segments: u32,
}

/// A character that no SMS encoding can carry (NUL, other control characters, non-characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the character U+{:04X} at position {position} cannot be sent in an SMS", *character as u32)]
pub struct UnsupportedCharacter {
    /// The character.
    pub character: char,
    /// Its index, counted in characters from 0.
    pub position: usize,
}

const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENSION: &str = "^{}\\[~]|€";

/// The septets a character costs in GSM-7, or `None` if GSM-7 cannot carry it.
pub fn gsm7_cost(c: char) -> Option<usize> {
    if c == '\u{1b}' {
        // ESC is the table switch itself, not text.
        return None;
    }
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Whether any SMS encoding can carry the character.
pub fn is_sendable(c: char) -> bool {
    match c {
        '\t' | '\n' | '\r' => true,
        c if c.is_control() => false,
        // Unicode non-characters: U+FDD0..U+FDEF and the last two code points of every plane.
        '\u{FDD0}'..='\u{FDEF}' => false,
        c => (c as u32) & 0xFFFE != 0xFFFE,
    }
}

/// Checks that every character can be sent.
pub fn check_sendable(text: &str) -> Result<(), UnsupportedCharacter> {
    match text.chars().enumerate().find(|(_, c)| !is_sendable(*c)) {
        Some((position, character)) => Err(UnsupportedCharacter { character, position }),
        None => Ok(()),
    }
}

/// Detects the encoding a text needs and counts its units and segments.
pub fn analyze(text: &str) -> TextInfo {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm7_cost).collect();
    match gsm {
        Some(costs) => {
            let units = costs.iter().sum();
            TextInfo { encoding: Encoding::Gsm7, units, segments: count_parts(&costs, units, 160, 153) }
        }
        None => {
            let costs: Vec<usize> = text.chars().map(char::len_utf16).collect();
            let units = costs.iter().sum();
            TextInfo { encoding: Encoding::Ucs2, units, segments: count_parts(&costs, units, 70, 67) }
        }
    }
}

/// Counts parts: one if everything fits in `single`, else parts of `per_part` units filled
/// greedily without splitting a character (an escape or surrogate pair).
fn count_parts(costs: &[usize], total: usize, single: usize, per_part: usize) -> u32 {
    if total == 0 {
        return 0;
    }
    if total <= single {
        return 1;
    }
    let mut parts = 1u32;
    let mut used = 0usize;
    for &cost in costs {
        if used + cost > per_part {
            parts += 1;
            used = 0;
        }
        used += cost;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_ascii_is_gsm7() {
        let info = analyze("Your verification code is 482910");
        assert_eq!(info.encoding, Encoding::Gsm7);
        assert_eq!(info.units, 32);
        assert_eq!(info.segments, 1);
    }

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(analyze(&"a".repeat(160)).segments, 1);
        assert_eq!(analyze(&"a".repeat(161)).segments, 2);
        assert_eq!(analyze(&"a".repeat(306)).segments, 2);
        assert_eq!(analyze(&"a".repeat(307)).segments, 3);
    }

    #[test]
    fn extension_characters_cost_two() {
        let info = analyze("€");
        assert_eq!((info.encoding, info.units), (Encoding::Gsm7, 2));
        assert_eq!(analyze(&"€".repeat(80)).segments, 1);
        assert_eq!(analyze(&"€".repeat(81)).segments, 2);
        // 152 plain septets then an escape pair: the pair may not straddle parts.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        let info = analyze(&text);
        assert_eq!(info.units, 164);
        assert_eq!(info.segments, 2);
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(analyze(&text).segments, 3);
    }

    #[test]
    fn ucs2_boundaries() {
        assert_eq!(analyze(&"ж".repeat(70)), TextInfo { encoding: Encoding::Ucs2, units: 70, segments: 1 });
        assert_eq!(analyze(&"ж".repeat(71)).segments, 2);
        assert_eq!(analyze(&"ж".repeat(134)).segments, 2);
        assert_eq!(analyze(&"ж".repeat(135)).segments, 3);
    }

    #[test]
    fn emoji_take_two_units_and_are_never_split() {
        assert_eq!(analyze("😀").units, 2);
        assert_eq!(analyze(&"😀".repeat(35)).segments, 1);
        // 66 units, a surrogate pair, 66 units: 134 units would fill two parts of 67 exactly,
        // but the pair may not straddle them, so it takes three.
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(66));
        assert_eq!(analyze(&text).units, 134);
        assert_eq!(analyze(&text).segments, 3);
    }

    #[test]
    fn one_non_gsm_character_switches_the_whole_text() {
        assert_eq!(analyze("hello ç").encoding, Encoding::Ucs2);
        assert_eq!(analyze("hello Ç").encoding, Encoding::Gsm7);
    }

    #[test]
    fn control_characters_are_unsendable() {
        assert!(check_sendable("line\nbreak\r\tok").is_ok());
        let err = check_sendable("ab\u{0}c").unwrap_err();
        assert_eq!((err.character, err.position), ('\u{0}', 2));
        assert!(check_sendable("\u{7}").is_err());
        assert!(check_sendable("\u{1b}").is_err());
        assert!(check_sendable("\u{9f}").is_err());
        assert!(check_sendable("\u{FFFF}").is_err());
        assert!(check_sendable("\u{FDD0}").is_err());
        assert!(check_sendable("\u{1FFFE}").is_err());
        assert!(check_sendable("\u{FFFD}").is_ok());
    }

    proptest! {
        #[test]
        fn segments_hold_every_unit(text in "\\PC{0,400}") {
            let info = analyze(&text);
            let (single, per) = match info.encoding { Encoding::Gsm7 => (160, 153), Encoding::Ucs2 => (70, 67) };
            if info.units == 0 {
                prop_assert_eq!(info.segments, 0);
            } else if info.units <= single {
                prop_assert_eq!(info.segments, 1);
            } else {
                let s = info.segments as usize;
                prop_assert!(s * per >= info.units);
                // Greedy packing wastes at most one unit per part boundary.
                prop_assert!((s - 1) * (per - 1) < info.units);
            }
        }
    }
}
