//! Identifiers: account ids (UUIDs), message ids (`msg_` + 22 base58 characters), send
//! request ids (`req_` + 22 base58 characters) and webhook event ids (`evt_` + 22).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::Timestamp;

/// Why an identifier did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text is not a UUID.
    #[error("`{0}` is not a valid UUID")]
    NotUuid(String),
    /// The text is not a `msg_` id.
    #[error("`{0}` is not a valid message id")]
    NotMessageId(String),
    /// The text is not a `req_` id.
    #[error("`{0}` is not a valid request id")]
    NotBatchId(String),
    /// The text is not an `evt_` id.
    #[error("`{0}` is not a valid event id")]
    NotEventId(String),
}

/// An account (tenant). Also the Mudbase `projectId` and the Bird `workspaceId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(Uuid);

impl AccountId {
    /// A fresh, time-ordered account id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    /// Wraps an existing UUID.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    /// The UUID inside.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for AccountId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AccountId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| IdError::NotUuid(truncate(s)))
    }
}

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const DIGITS: usize = 22;

/// Writes `prefix` and the 128 bits of `id` in 22 base58 characters.
fn write_base58(f: &mut fmt::Formatter<'_>, prefix: &str, id: Uuid) -> fmt::Result {
    let mut n = id.as_u128();
    let mut digits = [b'1'; DIGITS];
    for slot in digits.iter_mut().rev() {
        *slot = BASE58[(n % 58) as usize];
        n /= 58;
    }
    f.write_str(prefix)?;
    // The digits are all ASCII from BASE58.
    f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

/// Reads what [`write_base58`] wrote.
fn parse_base58(s: &str, prefix: &str) -> Option<Uuid> {
    let digits = s.strip_prefix(prefix)?;
    if digits.len() != DIGITS {
        return None;
    }
    let mut n: u128 = 0;
    for b in digits.bytes() {
        let d = BASE58.iter().position(|&c| c == b)? as u128;
        n = n.checked_mul(58)?.checked_add(d)?;
    }
    Some(Uuid::from_u128(n))
}

/// The millisecond timestamp of a UUIDv7 (its top 48 bits).
fn v7_millis(id: Uuid) -> i64 {
    (id.as_u128() >> 80) as i64
}

/// Declares a time-ordered id shown as a prefix and 22 base58 characters.
macro_rules! base58_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $err:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            /// Wraps an existing UUID.
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// The UUID inside.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
            /// When the id was made: the millisecond time in its UUIDv7.
            pub fn created_at(&self) -> Timestamp {
                Timestamp::from_millis(v7_millis(self.0))
            }
            /// The smallest id made at or after `at`: ids made in `[a, b)` are those in
            /// `[first_at(a), first_at(b))`.
            pub fn first_at(at: Timestamp) -> Self {
                Self(Uuid::from_u128((at.millis().max(0) as u128) << 80))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_base58(f, $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_base58(s, $prefix).map(Self).ok_or_else(|| IdError::$err(truncate(s)))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

base58_id!(
    /// A message id. Stored as a UUID (v7, so ids sort by creation time); shown as `msg_`
    /// followed by the UUID's 128 bits in 22 base58 characters, as TextingLine shows its ids.
    MessageId,
    "msg_",
    NotMessageId
);

base58_id!(
    /// A send request to several recipients (a Mudbase send), whose recipients are each a
    /// message of their own. Shown as `req_` and 22 base58 characters.
    BatchId,
    "req_",
    NotBatchId
);

base58_id!(
    /// A webhook event: one status change of one message, delivered to every endpoint that
    /// subscribes to it under this same id. Shown as `evt_` and 22 base58 characters.
    EventId,
    "evt_",
    NotEventId
);

/// Keeps error messages short when the input is long.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn message_id_has_the_textingline_form() {
        let id = MessageId::new().to_string();
        assert!(id.starts_with("msg_"));
        assert_eq!(id.len(), 26);
    }

    #[test]
    fn bad_message_ids_are_rejected() {
        for bad in
            ["", "msg_", "msg_0000000000000000000000", "xyz_DsAdb4EBYBh3z25sBA1qnv", "msg_zzzzzzzzzzzzzzzzzzzzzz"]
        {
            assert!(bad.parse::<MessageId>().is_err(), "{bad}");
        }
        assert!("msg_DsAdb4EBYBh3z25sBA1qnv".parse::<MessageId>().is_ok());
    }

    #[test]
    fn ids_know_their_time() {
        let id = MessageId::new();
        let now = Timestamp::now().millis();
        assert!((now - id.created_at().millis()).abs() < 5_000);
        assert!(MessageId::first_at(id.created_at()) <= id);
        assert!(MessageId::first_at(id.created_at().plus_millis(1)) > id);
        let b = BatchId::new();
        assert!(b.to_string().starts_with("req_"));
        assert_eq!(b.to_string().parse::<BatchId>().unwrap(), b);
        assert!(b.to_string().parse::<MessageId>().is_err());
    }

    proptest! {
        #[test]
        fn message_id_round_trips(n in any::<u128>()) {
            let id = MessageId::from_uuid(Uuid::from_u128(n));
            prop_assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        }
    }
}
