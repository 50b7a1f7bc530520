//! Sealing stored signing secrets, and the secrets of messages' own notification URLs.
//!
//! An endpoint's secret is stored encrypted under a key derived from the server's secret
//! (shared by every node on one database), so a copy of the database alone does not give the
//! secrets away. A sealed secret is a random 12-byte nonce followed by the AES-256-GCM
//! ciphertext and its tag.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use switchboard_domain::AccountId;
use switchboard_storage::SealedSecret;

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

/// Seals and opens webhook secrets with a key derived from the server secret, and derives the
/// secrets of messages' own notification URLs. Its `Debug` form is redacted.
pub struct Sealer {
    key: LessSafeKey,
    /// HMAC-SHA256 keyed with the server secret, cloned for each derivation.
    server: Hmac<Sha256>,
}

impl Sealer {
    /// A sealer for this server secret (see `Store::server_secret`). The AES-256-GCM key is
    /// HMAC-SHA256(server_secret, `switchboard webhook secrets v1`).
    pub fn new(server_secret: &[u8]) -> Self {
        // HMAC takes a key of any length.
        let server = <Hmac<Sha256> as KeyInit>::new_from_slice(server_secret).unwrap_or_else(|_| unreachable!());
        let mut derive = server.clone();
        derive.update(SEALING_LABEL);
        let key_bytes = derive.finalize().into_bytes();
        // A 32-byte key is what AES-256 takes.
        let key = UnboundKey::new(&AES_256_GCM, key_bytes.as_slice()).unwrap_or_else(|_| unreachable!());
        Self { key: LessSafeKey::new(key), server }
    }

    /// Encrypts a secret for storage under a fresh random nonce.
    pub fn seal(&self, secret: &Secret) -> SealedSecret {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut sealed = Vec::with_capacity(NONCE_LEN + secret.key().len() + TAG_LEN);
        sealed.extend_from_slice(&nonce);
        let mut in_out = secret.key().to_vec();
        // AES-GCM fails only on inputs of gigabytes.
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut in_out)
            .unwrap_or_else(|_| unreachable!());
        sealed.extend_from_slice(&in_out);
        SealedSecret(sealed)
    }

    /// Decrypts a stored secret; fails if it was altered or sealed under another server secret.
    pub fn open(&self, sealed: &SealedSecret) -> Result<Secret, SealError> {
        let bytes = &sealed.0;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::TooShort);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::TooShort)?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut in_out)
            .map_err(|_| SealError::Tampered)?;
        Ok(Secret::from_bytes(plain.to_vec()))
    }

    /// The secret that signs deliveries to the notification URL a message names itself:
    /// HMAC-SHA256(server_secret, `switchboard notification secret v1:` + the account id), the
    /// same on every node and for every message of the account.
    pub fn notification_secret(&self, account: AccountId) -> Secret {
        let mut mac = self.server.clone();
        mac.update(NOTIFICATION_LABEL);
        mac.update(account.to_string().as_bytes());
        Secret::from_bytes(mac.finalize().into_bytes().to_vec())
    }
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
}
