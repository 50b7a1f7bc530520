//! Identifiers: account ids (UUIDs) and message ids (`msg_` + 22 base58 characters).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why an identifier did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text is not a UUID.
    #[error("`{0}` is not a valid UUID")]
    NotUuid(String),
    /// The text is not a `msg_` id.
    #[error("`{0}` is not a valid message id")]
    NotMessageId(String),
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
const MESSAGE_PREFIX: &str = "msg_";
const MESSAGE_DIGITS: usize = 22;

/// A message id. Stored as a UUID (v7, so ids sort by creation time); shown as `msg_` followed
/// by the UUID's 128 bits in 22 base58 characters, as TextingLine shows its ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(Uuid);

impl MessageId {
    /// A fresh, time-ordered message id.
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

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut n = self.0.as_u128();
        let mut digits = [b'1'; MESSAGE_DIGITS];
        for slot in digits.iter_mut().rev() {
            *slot = BASE58[(n % 58) as usize];
            n /= 58;
        }
        f.write_str(MESSAGE_PREFIX)?;
        // The digits are all ASCII from BASE58.
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for MessageId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IdError::NotMessageId(truncate(s));
        let digits = s.strip_prefix(MESSAGE_PREFIX).ok_or_else(err)?;
        if digits.len() != MESSAGE_DIGITS {
            return Err(err());
        }
        let mut n: u128 = 0;
        for b in digits.bytes() {
            let d = BASE58.iter().position(|&c| c == b).ok_or_else(err)? as u128;
            n = n.checked_mul(58).and_then(|n| n.checked_add(d)).ok_or_else(err)?;
        }
        Ok(Self(Uuid::from_u128(n)))
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

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

    proptest! {
        #[test]
        fn message_id_round_trips(n in any::<u128>()) {
            let id = MessageId::from_uuid(Uuid::from_u128(n));
            prop_assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        }
    }
}
