//! Timestamps: UTC milliseconds since the Unix epoch, shown as ISO 8601 with milliseconds.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// A point in time, UTC, to the millisecond. Stored as an integer in both databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Self((OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64)
    }
    /// From milliseconds since the epoch.
    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
    /// This time plus some milliseconds.
    pub fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
    /// Parses the date-time forms clients send in query strings: RFC 3339, an offset without
    /// its colon (`+0000`) or minutes (`+01`), a `+` turned into a space by a client that did
    /// not percent-encode it, no offset at all (UTC), or a bare date (midnight UTC).
    pub fn parse_lenient(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() > 64 || !s.is_ascii() {
            return None;
        }
        let mut text = s.to_owned();
        if text.len() == 10 {
            text.push_str("T00:00:00");
        }
        // The offset starts after the seconds (index 19), at `Z`, `+`, `-`, or a space that
        // stands for a `+` a client did not percent-encode.
        let split = text.get(19..)?.find(['Z', 'z', '+', '-', ' ']).map(|i| i + 19);
        let (main, offset) = match split {
            None => (text.as_str(), "Z".to_owned()),
            Some(i) => {
                let (main, offset) = text.split_at(i);
                let offset = offset.replacen(' ', "+", 1);
                let offset = match offset.len() {
                    // +HHMM
                    5 if !offset.contains(':') => format!("{}:{}", &offset[..3], &offset[3..]),
                    // +HH
                    3 => format!("{offset}:00"),
                    _ => offset,
                };
                (main, offset)
            }
        };
        Self::parse_rfc3339(&format!("{main}{offset}"))
    }

    /// Parses RFC 3339 (`2026-03-15T14:30:05.000Z`, any offset).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        Some(Self((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).map_err(|_| fmt::Error)?;
        let s = t
            .format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"))
            .map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_documents() {
        let t = Timestamp::parse_rfc3339("2026-03-15T14:30:05Z").unwrap();
        assert_eq!(t.to_string(), "2026-03-15T14:30:05.000Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
    }

    #[test]
    fn lenient_forms() {
        let day = Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").unwrap();
        for s in [
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.000000",
            "2024-01-01T00:00:00.000000+0000",
            "2024-01-01T00:00:00.000000 0000",
            "2024-01-01T00:00:00+00:00",
            "2024-01-01T01:00:00+01",
            "2023-12-31T19:00:00.000-0500",
            "2024-01-01T00:00:00.000Z",
        ] {
            assert_eq!(Timestamp::parse_lenient(s), Some(day), "{s}");
        }
        for bad in ["", "yesterday", "2024-13-01", "2024-01-01T25:00:00", "2024-01-01T00:00:00+9999"] {
            assert_eq!(Timestamp::parse_lenient(bad), None, "{bad}");
        }
    }
}
