//! E.164 phone numbers, and the sender IDs messages go out from: a number or an alphanumeric name.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not `+` followed by 8 to 15 digits, the first not 0.
    #[error("`{0}` is not an E.164 phone number (expected + and 8 to 15 digits, e.g. +18005551234)")]
    NotE164(String),
    /// Neither an E.164 number nor an alphanumeric sender ID.
    #[error(
        "`{0}` is neither an E.164 phone number (+ and 8 to 15 digits) nor an alphanumeric sender ID \
         (1 to 11 letters A-Z or a-z, digits and spaces, at least one letter)"
    )]
    NotSenderId(String),
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

/// The longest alphanumeric sender ID: 11 characters, what GSM's TP-Originating-Address holds.
pub const MAX_ALPHANUMERIC_SENDER: usize = 11;

/// An alphanumeric sender ID: 1 to 11 characters, each a letter (`A`-`Z`, `a`-`z`), a digit or
/// a space, at least one a letter, not starting or ending with a space. These are the letters of
/// GSM's 7-bit basic set that SMPP's `source_addr` (ASCII) and every carrier carry unchanged;
/// the basic set's accented and Greek letters are refused, since carriers replace or drop them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Alphanumeric(String);

impl Alphanumeric {
    /// Parses an alphanumeric sender ID.
    pub fn parse(s: &str) -> Result<Self, PhoneError> {
        let ok = (1..=MAX_ALPHANUMERIC_SENDER).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
            && s.bytes().any(|b| b.is_ascii_alphabetic())
            && !s.starts_with(' ')
            && !s.ends_with(' ');
        if ok { Ok(Self(s.to_owned())) } else { Err(PhoneError::NotSenderId(short(s))) }
    }

    /// The sender ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who a message is sent from: a phone number, or an alphanumeric sender ID that the handset
/// shows instead of a number. Only a number can be replied to: inbound messages, `STOP` and the
/// opt-outs it records are always per number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SenderId {
    /// An E.164 number.
    Number(Msisdn),
    /// An alphanumeric name.
    Alphanumeric(Alphanumeric),
}

impl SenderId {
    /// Parses a sender: `+` and digits as an E.164 number, anything else as an alphanumeric
    /// sender ID.
    pub fn parse(s: &str) -> Result<Self, PhoneError> {
        if s.starts_with('+') || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) {
            return Msisdn::parse(s).map(Self::Number);
        }
        Alphanumeric::parse(s).map(Self::Alphanumeric)
    }

    /// Parses a sender that must be an E.164 number.
    pub fn parse_number(s: &str) -> Result<Self, PhoneError> {
        Msisdn::parse(s).map(Self::Number)
    }

    /// The sender as text: the number with its `+`, or the name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Number(n) => n.as_str(),
            Self::Alphanumeric(a) => a.as_str(),
        }
    }

    /// The number, if the sender is one.
    pub fn number(&self) -> Option<&Msisdn> {
        match self {
            Self::Number(n) => Some(n),
            Self::Alphanumeric(_) => None,
        }
    }

    /// Whether the sender is an alphanumeric name.
    pub fn is_alphanumeric(&self) -> bool {
        matches!(self, Self::Alphanumeric(_))
    }

    /// The sender for logs: a number masked, a name (a brand, not personal data) as it is.
    pub fn masked(&self) -> String {
        match self {
            Self::Number(n) => n.masked(),
            Self::Alphanumeric(a) => a.0.clone(),
        }
    }
}

impl From<Msisdn> for SenderId {
    fn from(n: Msisdn) -> Self {
        Self::Number(n)
    }
}

impl PartialEq<Msisdn> for SenderId {
    fn eq(&self, other: &Msisdn) -> bool {
        self.number() == Some(other)
    }
}

impl fmt::Debug for SenderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => fmt::Debug::fmt(n, f),
            Self::Alphanumeric(a) => write!(f, "Alphanumeric({})", a.0),
        }
    }
}

impl fmt::Debug for Alphanumeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alphanumeric({})", self.0)
    }
}

impl fmt::Display for SenderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for SenderId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for SenderId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SenderId {
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
    fn senders_are_numbers_or_names() {
        assert_eq!(SenderId::parse("+18005551234").unwrap().number().unwrap().as_str(), "+18005551234");
        for ok in ["ACME", "A", "Acme Bank", "ACME2026", "ABCDEFGHIJK", "9to5"] {
            let s = SenderId::parse(ok).unwrap();
            assert!(s.is_alphanumeric(), "{ok}");
            assert_eq!(s.as_str(), ok);
        }
        for bad in
            ["", "ABCDEFGHIJKL", "12345", " ACME", "ACME ", "AC-ME", "Café", "ACME!", "+ACME", "   ", "18005551234"]
        {
            assert!(SenderId::parse(bad).is_err(), "{bad}");
        }
        assert!(SenderId::parse_number("ACME").is_err());
        assert_eq!(SenderId::parse("+18005551234").unwrap(), Msisdn::parse("+18005551234").unwrap());
    }

    #[test]
    fn debug_masks_the_number() {
        let n = Msisdn::parse("+18005551234").unwrap();
        let shown = format!("{n:?}");
        assert!(!shown.contains("800555"), "{shown}");
        assert!(shown.ends_with("1234)"), "{shown}");
    }
}
