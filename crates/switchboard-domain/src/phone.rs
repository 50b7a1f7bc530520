//! E.164 phone numbers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not `+` followed by 8 to 15 digits, the first not 0.
    #[error("`{0}` is not an E.164 phone number (expected + and 8 to 15 digits, e.g. +18005551234)")]
    NotE164(String),
}

/// A phone number in E.164 form: `+`, a country code not starting with 0, at most 15 digits in
/// all. The check is structural (ITU-T E.164), so numbers in every numbering plan, including
/// test ranges, are accepted exactly as carriers route them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn(String);

impl Msisdn {
    /// Parses `+` followed by 8 to 15 digits, the first of them not 0. No spaces or punctuation.
    pub fn parse(s: &str) -> Result<Self, PhoneError> {
        let digits = s.strip_prefix('+').ok_or_else(|| PhoneError::NotE164(short(s)))?;
        let ok =
            (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if ok { Ok(Self(s.to_owned())) } else { Err(PhoneError::NotE164(short(s))) }
    }

    /// The number as text, with its `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but its last four digits masked, for logs.
    pub fn masked(&self) -> String {
        let keep = self.0.len().saturating_sub(4);
        format!("+{}{}", "*".repeat(keep.saturating_sub(1)), &self.0[keep..])
    }
}

impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Phone numbers are personal data: Debug output (and so logs) shows them masked.
        write!(f, "Msisdn({})", self.masked())
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Msisdn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Msisdn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Msisdn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn short(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_e164() {
        for ok in ["+18005551234", "+447400123456", "+4915112345678", "+12345678"] {
            assert_eq!(Msisdn::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "+",
            "18005551234",
            "+1 800 555 1234",
            "+0800555123",
            "+1234567",
            "+1234567890123456",
            "+1800555123a",
            "port back up",
            "++18005551234",
        ] {
            assert!(Msisdn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_masks_the_number() {
        let n = Msisdn::parse("+18005551234").unwrap();
        let shown = format!("{n:?}");
        assert!(!shown.contains("800555"), "{shown}");
        assert!(shown.ends_with("1234)"), "{shown}");
    }
}
