//! Sealing stored signing secrets, and the secrets of messages' own notification URLs.
//!
//! An endpoint's secret is stored encrypted under a key derived from the server's keys, which
//! live outside the database (and are shared by every node on one database), so a copy of the
//! database alone does not give the secrets away. A sealed secret is `SBK1` and the sealing
//! key's id (4 bytes, big-endian), then a random 12-byte nonce followed by the AES-256-GCM
//! ciphertext and its tag; key 0 (the secret older versions kept) seals without the header.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use switchboard_domain::{AccountId, SealedSecret};

use crate::signing::Secret;

/// What the sealing key is derived with.
const SEALING_LABEL: &[u8] = b"switchboard webhook secrets v1";
/// What a notification secret is derived with, before the account id.
const NOTIFICATION_LABEL: &[u8] = b"switchboard notification secret v1:";
/// The length of AES-GCM's tag.
const TAG_LEN: usize = 16;

/// Why a sealed secret could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// It is too short to be a sealed secret.
    #[error("the sealed secret is too short")]
    TooShort,
    /// It does not open under this server's key: changed, or sealed by another server.
    #[error("the sealed secret does not open (altered, or sealed under another server secret)")]
    Tampered,
}

/// One key of the sealer.
struct SealKey {
    id: u32,
    aead: LessSafeKey,
    /// HMAC-SHA256 keyed with the server key, cloned for each derivation.
    server: Hmac<Sha256>,
}

impl SealKey {
    fn new(id: u32, server_key: &[u8]) -> Self {
        // HMAC takes a key of any length.
        let server = <Hmac<Sha256> as KeyInit>::new_from_slice(server_key).unwrap_or_else(|_| unreachable!());
        let mut derive = server.clone();
        derive.update(SEALING_LABEL);
        let key_bytes = derive.finalize().into_bytes();
        // A 32-byte key is what AES-256 takes.
        let key = UnboundKey::new(&AES_256_GCM, key_bytes.as_slice()).unwrap_or_else(|_| unreachable!());
        Self { id, aead: LessSafeKey::new(key), server }
    }
}

/// What a sealed secret starts with when a key other than key 0 sealed it, before the key id
/// (4 bytes, big-endian). Key 0's seals have no header, as older versions made them.
const HEADER: &[u8; 4] = b"SBK1";

/// Seals and opens webhook secrets with keys derived from the server's keys, and derives the
/// secrets of messages' own notification URLs. Its `Debug` form is redacted.
pub struct Sealer {
    /// The primary first.
    keys: Vec<SealKey>,
}

impl Sealer {
    /// A sealer for one server key, as key 0. The AES-256-GCM key is HMAC-SHA256(server key,
    /// `switchboard webhook secrets v1`).
    pub fn new(server_secret: &[u8]) -> Self {
        Self::with_keys(&[(0, server_secret)])
    }

    /// A sealer over the server's keys (id, key), the primary first: it seals under the
    /// primary and opens under any of them. `keys` must not be empty.
    pub fn with_keys(keys: &[(u32, &[u8])]) -> Self {
        assert!(!keys.is_empty(), "a sealer needs a key");
        Self { keys: keys.iter().map(|&(id, key)| SealKey::new(id, key)).collect() }
    }

    /// Encrypts a secret for storage under the primary key and a fresh random nonce.
    pub fn seal(&self, secret: &Secret) -> SealedSecret {
        let primary = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut sealed = Vec::with_capacity(HEADER.len() + 4 + NONCE_LEN + secret.key().len() + TAG_LEN);
        if primary.id != 0 {
            sealed.extend_from_slice(HEADER);
            sealed.extend_from_slice(&primary.id.to_be_bytes());
        }
        sealed.extend_from_slice(&nonce);
        let mut in_out = secret.key().to_vec();
        // AES-GCM fails only on inputs of gigabytes.
        primary
            .aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut in_out)
            .unwrap_or_else(|_| unreachable!());
        sealed.extend_from_slice(&in_out);
        SealedSecret(sealed)
    }

    /// The id of the key a sealed secret names in its header (0 without one). A blob of key 0
    /// that happens to start with the header is named wrongly here, with odds of 2^-32.
    pub fn key_id(sealed: &SealedSecret) -> u32 {
        sealed
            .0
            .strip_prefix(HEADER.as_slice())
            .and_then(|rest| rest.get(..4))
            .and_then(|id| id.try_into().ok())
            .map_or(0, u32::from_be_bytes)
    }

    /// The key a sealed secret names, and the rest of it.
    fn key_of<'a>(&self, bytes: &'a [u8]) -> Option<(&SealKey, &'a [u8])> {
        if let Some(rest) = bytes.strip_prefix(HEADER.as_slice())
            && rest.len() >= 4
        {
            let (id, rest) = rest.split_at(4);
            let id = u32::from_be_bytes(id.try_into().ok()?);
            if let Some(key) = self.keys.iter().find(|k| k.id == id) {
                return Some((key, rest));
            }
        }
        self.keys.iter().find(|k| k.id == 0).map(|k| (k, bytes))
    }

    /// Decrypts a stored secret; fails if it was altered or sealed under a key this sealer
    /// does not have.
    pub fn open(&self, sealed: &SealedSecret) -> Result<Secret, SealError> {
        if sealed.0.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::TooShort);
        }
        let (key, bytes) = self.key_of(&sealed.0).ok_or(SealError::Tampered)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::TooShort);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::TooShort)?;
        let mut in_out = ciphertext.to_vec();
        let plain = key
            .aead
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut in_out)
            .map_err(|_| SealError::Tampered)?;
        Ok(Secret::from_bytes(plain.to_vec()))
    }

    /// Whether a sealed secret was sealed under another key than the primary, so that it
    /// should be sealed again.
    pub fn needs_reseal(&self, sealed: &SealedSecret) -> bool {
        !matches!(self.key_of(&sealed.0), Some((key, _)) if key.id == self.keys[0].id)
    }

    /// The secret that signs deliveries to the notification URL a message names itself:
    /// HMAC-SHA256(primary key, `switchboard notification secret v1:` + the account id), the
    /// same on every node and for every message of the account.
    pub fn notification_secret(&self, account: AccountId) -> Secret {
        derive_notification(&self.keys[0], account)
    }

    /// The account's notification secrets under every key, the primary's first: a
    /// notification is signed with each, so that a receiver that still checks with the
    /// secret of a retired key keeps working until that key is removed.
    pub fn notification_secrets(&self, account: AccountId) -> Vec<Secret> {
        self.keys.iter().map(|k| derive_notification(k, account)).collect()
    }
}

fn derive_notification(key: &SealKey, account: AccountId) -> Secret {
    let mut mac = key.server.clone();
    mac.update(NOTIFICATION_LABEL);
    mac.update(account.to_string().as_bytes());
    Secret::from_bytes(mac.finalize().into_bytes().to_vec())
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let sealer = Sealer::new(b"server secret one");
        let secret = Secret::generate();
        let sealed = sealer.seal(&secret);
        assert_eq!(sealed.0.len(), NONCE_LEN + 32 + TAG_LEN);
        assert_eq!(sealer.open(&sealed).unwrap(), secret);
        // A fresh nonce each time.
        assert_ne!(sealer.seal(&secret), sealed);
        // Another sealer on the same server secret (another node) opens it too.
        assert_eq!(Sealer::new(b"server secret one").open(&sealed).unwrap(), secret);
    }

    #[test]
    fn tampering_fails() {
        let sealer = Sealer::new(b"server secret one");
        let sealed = sealer.seal(&Secret::generate());
        for i in 0..sealed.0.len() {
            let mut bad = sealed.clone();
            bad.0[i] ^= 0x01;
            assert_eq!(sealer.open(&bad), Err(SealError::Tampered), "byte {i}");
        }
        let mut longer = sealed.clone();
        longer.0.push(0);
        assert_eq!(sealer.open(&longer), Err(SealError::Tampered));
        let mut shorter = sealed.clone();
        shorter.0.pop();
        assert_eq!(sealer.open(&shorter), Err(SealError::Tampered));
        assert_eq!(sealer.open(&SealedSecret(Vec::new())), Err(SealError::TooShort));
        assert_eq!(sealer.open(&SealedSecret(vec![0; NONCE_LEN + TAG_LEN - 1])), Err(SealError::TooShort));
    }

    #[test]
    fn other_servers_cannot_open() {
        let one = Sealer::new(b"server secret one");
        let two = Sealer::new(b"server secret two");
        let secret = Secret::generate();
        assert_eq!(two.open(&one.seal(&secret)), Err(SealError::Tampered));
        assert_eq!(one.open(&two.seal(&secret)), Err(SealError::Tampered));
    }

    #[test]
    fn notification_secrets_are_stable_and_per_account() {
        let sealer = Sealer::new(b"server secret one");
        let a = AccountId::new();
        let b = AccountId::new();
        assert_eq!(sealer.notification_secret(a), sealer.notification_secret(a));
        assert_eq!(sealer.notification_secret(a), Sealer::new(b"server secret one").notification_secret(a));
        assert_ne!(sealer.notification_secret(a), sealer.notification_secret(b));
        assert_ne!(sealer.notification_secret(a), Sealer::new(b"server secret two").notification_secret(a));
        assert_eq!(sealer.notification_secret(a).expose().len(), "whsec_".len() + 44);
    }

    #[test]
    fn notification_secret_known_answer() {
        // python3: hmac.new(b"k", b"switchboard notification secret v1:" +
        //   b"00000000-0000-0000-0000-000000000001", hashlib.sha256).digest()
        let account = AccountId::from_uuid(uuid::Uuid::from_u128(1));
        let expected = Secret::parse(NOTIFICATION_VECTOR).unwrap();
        assert_eq!(Sealer::new(b"k").notification_secret(account), expected);
    }

    const NOTIFICATION_VECTOR: &str = "whsec_5WSO5u/uUuyxtX8PXZhTpp76IP3Fz5ulxtSKQIL6SZk=";

    #[test]
    fn debug_is_redacted() {
        assert_eq!(format!("{:?}", Sealer::new(b"x")), "Sealer(<redacted>)");
    }

    #[test]
    fn a_ring_seals_under_its_primary_and_opens_under_any_key() {
        let legacy = Sealer::new(b"old");
        let ring = Sealer::with_keys(&[(2, b"new".as_slice()), (0, b"old".as_slice())]);
        let secret = Secret::generate();
        let old = legacy.seal(&secret);
        assert_eq!(old.0.len(), NONCE_LEN + 32 + TAG_LEN, "key 0 seals as older versions did");
        assert_eq!(ring.open(&old).unwrap(), secret);
        assert!(ring.needs_reseal(&old));
        let new = ring.seal(&secret);
        assert_eq!(&new.0[..8], b"SBK1\0\0\0\x02");
        assert!(!ring.needs_reseal(&new));
        assert_eq!((Sealer::key_id(&old), Sealer::key_id(&new)), (0, 2));
        assert_eq!(ring.open(&new).unwrap(), secret);
        // Without the key that sealed it, it does not open.
        assert_eq!(legacy.open(&new), Err(SealError::Tampered));
        let only_new = Sealer::with_keys(&[(2, b"new".as_slice())]);
        assert_eq!(only_new.open(&old), Err(SealError::Tampered));
        assert_eq!(only_new.open(&new).unwrap(), secret);
        // Notifications are signed under every key, the primary's first.
        let account = AccountId::new();
        let all = ring.notification_secrets(account);
        assert_eq!(all, vec![only_new.notification_secret(account), legacy.notification_secret(account)]);
        assert_eq!(ring.notification_secret(account), all[0]);
    }
}
