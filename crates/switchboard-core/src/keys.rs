//! The server's keys, kept outside the database.
//!
//! One key ring per installation (every node on one PostgreSQL database holds the same one):
//!
//! - the **hash key**, which keys the HMAC of every API key's secret. It is never rotated,
//!   since that would void every API key; it opens and signs nothing, and the secrets it
//!   hashes are 256 random bits, so knowing it does not help to recover them;
//! - the **signing keys**, newest first. The first (the primary) signs access tokens, seals
//!   webhook endpoints' secrets and derives the accounts' notification secrets. The others,
//!   retired by a rotation, still verify the tokens they signed before they were retired,
//!   still open what they sealed (the core re-seals it under the primary at start), and still
//!   sign notifications beside the primary, so that receivers can move to the new secret.
//!
//! Key 0 is the secret that older versions kept in the database: its tokens carry no key id
//! and its seals no header, exactly as those versions made them, so an upgraded installation
//! keeps working. The database holds only the ring's fingerprint, a one-way hash that lets a
//! node refuse to start with another installation's keys.
//!
//! The ring's text form, for the key file and for a `server_keys` setting, is one entry per
//! line (or separated by `;`), `#` starting a comment:
//!
//! ```text
//! hash <base64 of 32 bytes>
//! key 2 <base64 of 32 bytes>
//! key 1 <base64 of 32 bytes> retired <unix seconds>
//! ```

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use sha2::{Digest, Sha256};
use switchboard_signing::Sealer;

use crate::auth::KeyHasher;
use crate::tokens::Tokens;

/// Why a key ring's text was refused. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// A line is not a `hash` or `key` entry.
    #[error("entry {0} of the server keys is not `hash <base64>` or `key <id> <base64> [retired <unix seconds>]`")]
    Malformed(usize),
    /// A key is not base64 of 32 bytes (or more, for key 0).
    #[error("entry {0} of the server keys is not base64 of 32 bytes")]
    BadKey(usize),
    /// There is no `hash` entry, or more than one.
    #[error("the server keys need exactly one `hash` entry")]
    Hash,
    /// There is no `key` entry.
    #[error("the server keys have no `key` entry")]
    NoKey,
    /// Two keys have the same id.
    #[error("the server keys name key {0} twice")]
    Duplicate(u32),
    /// The first key (the primary) is retired.
    #[error("the first key of the server keys (the one that signs) is marked retired")]
    PrimaryRetired,
}

/// One signing key.
#[derive(Clone, PartialEq, Eq)]
struct SigningKey {
    id: u32,
    secret: Vec<u8>,
    /// When a rotation retired it (seconds since the epoch).
    retired_at: Option<i64>,
}

/// The server's key ring; its `Debug` form shows key ids only.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerKeys {
    hash: Vec<u8>,
    /// Newest first; the first is the primary.
    keys: Vec<SigningKey>,
}

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKeys").field("ids", &self.ids()).finish_non_exhaustive()
    }
}

fn random_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

impl ServerKeys {
    /// A new ring for a new installation: a random hash key and a random key 1.
    pub fn generate() -> Self {
        Self { hash: random_key(), keys: vec![SigningKey { id: 1, secret: random_key(), retired_at: None }] }
    }

    /// The ring of an installation upgraded from a version that kept `legacy` in the database:
    /// `legacy` stays the hash key (API keys keep working) and becomes key 0, retired `now`;
    /// a fresh key 1 signs and seals from now on, so nothing new depends on a value that a
    /// copy of the old database holds.
    pub fn upgrade(legacy: Vec<u8>, now: i64) -> Self {
        Self {
            hash: legacy.clone(),
            keys: vec![
                SigningKey { id: 1, secret: random_key(), retired_at: None },
                SigningKey { id: 0, secret: legacy, retired_at: Some(now) },
            ],
        }
    }

    /// A ring with one given key as both hash key and key `id`: what older versions used
    /// (`id` 0), for tests that make their artifacts.
    pub fn single(id: u32, secret: &[u8]) -> Self {
        Self { hash: secret.to_vec(), keys: vec![SigningKey { id, secret: secret.to_vec(), retired_at: None }] }
    }

    /// Reads the text form (see the module's documentation).
    pub fn parse(text: &str) -> Result<Self, KeysError> {
        let mut hash = None;
        let mut keys: Vec<SigningKey> = Vec::new();
        let entries = text
            .lines()
            .flat_map(|line| line.split('#').next().unwrap_or("").split(';'))
            .map(str::trim)
            .filter(|l| !l.is_empty());
        for (n, entry) in entries.enumerate() {
            let n = n + 1;
            let words: Vec<&str> = entry.split_whitespace().collect();
            let decode = |s: &str| {
                STANDARD.decode(s).ok().filter(|k| k.len() >= 32 && k.len() <= 64).ok_or(KeysError::BadKey(n))
            };
            match words.as_slice() {
                ["hash", key] => {
                    if hash.replace(decode(key)?).is_some() {
                        return Err(KeysError::Hash);
                    }
                }
                ["key", id, key, rest @ ..] => {
                    let id: u32 = id.parse().map_err(|_| KeysError::Malformed(n))?;
                    let retired_at = match rest {
                        [] => None,
                        ["retired", at] => Some(at.parse().map_err(|_| KeysError::Malformed(n))?),
                        _ => return Err(KeysError::Malformed(n)),
                    };
                    if keys.iter().any(|k| k.id == id) {
                        return Err(KeysError::Duplicate(id));
                    }
                    let secret = decode(key)?;
                    if id != 0 && secret.len() != 32 {
                        return Err(KeysError::BadKey(n));
                    }
                    keys.push(SigningKey { id, secret, retired_at });
                }
                _ => return Err(KeysError::Malformed(n)),
            }
        }
        let hash = hash.ok_or(KeysError::Hash)?;
        match keys.first() {
            None => return Err(KeysError::NoKey),
            Some(k) if k.retired_at.is_some() => return Err(KeysError::PrimaryRetired),
            Some(_) => {}
        }
        Ok(Self { hash, keys })
    }

    /// The text form, with a comment saying what it is.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# Switchboard's server keys. Keep this file secret, apart from the database, and back it up:\n\
             # without it no API key, access token or webhook secret of this installation works.\n\
             # The first `key` signs; `switchboard keys rotate` adds a new one.\n",
        );
        out.push_str(&format!("hash {}\n", STANDARD.encode(&self.hash)));
        for k in &self.keys {
            out.push_str(&format!("key {} {}", k.id, STANDARD.encode(&k.secret)));
            if let Some(at) = k.retired_at {
                out.push_str(&format!(" retired {at}"));
            }
            out.push('\n');
        }
        out
    }

    /// Adds a new primary key and retires the current one at `now` (seconds since the epoch);
    /// removes the keys retired more than `grace_secs` before `now`. Returns the new key's id.
    pub fn rotate(&mut self, now: i64, grace_secs: i64) -> u32 {
        let id = self.keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
        if let Some(current) = self.keys.first_mut() {
            current.retired_at = Some(now);
        }
        self.keys.retain(|k| k.retired_at.is_none_or(|at| now - at <= grace_secs));
        self.keys.insert(0, SigningKey { id, secret: random_key(), retired_at: None });
        id
    }

    /// The primary key's id.
    pub fn primary(&self) -> u32 {
        self.keys[0].id
    }

    /// The signing keys' ids, newest first.
    pub fn ids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// When each key was retired (`None` for the primary), newest first.
    pub fn retirements(&self) -> Vec<(u32, Option<i64>)> {
        self.keys.iter().map(|k| (k.id, k.retired_at)).collect()
    }

    /// A one-way fingerprint of the ring's hash key, which the database keeps so that a node
    /// refuses to start with another installation's keys. It reveals nothing of the key.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut digest = Sha256::new();
        digest.update(b"switchboard server keys fingerprint v1:");
        digest.update(&self.hash);
        digest.finalize().to_vec()
    }

    /// The hasher of API keys' secrets.
    pub fn hasher(&self) -> KeyHasher {
        KeyHasher::new(self.hash.clone())
    }

    /// The sealer of webhook secrets and deriver of notification secrets, under every key.
    pub fn sealer(&self) -> Sealer {
        let keys: Vec<(u32, &[u8])> = self.keys.iter().map(|k| (k.id, k.secret.as_slice())).collect();
        Sealer::with_keys(&keys)
    }

    /// Access tokens signed by the primary and checked under every key.
    pub fn tokens(&self, ttl: std::time::Duration) -> Tokens {
        let keys: Vec<(u32, &[u8], Option<i64>)> =
            self.keys.iter().map(|k| (k.id, k.secret.as_slice(), k.retired_at)).collect();
        Tokens::with_keys(&keys, ttl)
    }

    /// Whether `bytes` contain any of the ring's keys, raw or in base64: for tests that look
    /// for key material where it must not be.
    pub fn found_in(&self, bytes: &[u8]) -> bool {
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        std::iter::once(&self.hash).chain(self.keys.iter().map(|k| &k.secret)).any(|key| {
            let encoded = STANDARD.encode(key);
            contains(key) || contains(encoded.as_bytes())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        let keys = ServerKeys::generate();
        assert_eq!(ServerKeys::parse(&keys.to_text()).unwrap(), keys);
        let upgraded = ServerKeys::upgrade(vec![9; 32], 1_700_000_000);
        let text = upgraded.to_text();
        assert!(text.contains("retired 1700000000"));
        assert_eq!(ServerKeys::parse(&text).unwrap(), upgraded);
        // One line, as an environment variable holds it.
        assert_eq!(
            ServerKeys::parse(&text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(";")).unwrap(),
            upgraded
        );
        assert_eq!(upgraded.ids(), vec![1, 0]);
        assert_eq!(upgraded.primary(), 1);
    }

    #[test]
    fn bad_text_is_refused_without_echoing_it() {
        let k = STANDARD.encode([7u8; 32]);
        assert_eq!(ServerKeys::parse(""), Err(KeysError::Hash));
        assert_eq!(ServerKeys::parse(&format!("hash {k}")), Err(KeysError::NoKey));
        assert_eq!(ServerKeys::parse(&format!("hash {k}\nhash {k}\nkey 1 {k}")), Err(KeysError::Hash));
        assert_eq!(ServerKeys::parse(&format!("hash {k}\nkey 1 {k}\nkey 1 {k}")), Err(KeysError::Duplicate(1)));
        assert_eq!(ServerKeys::parse(&format!("hash {k}\nkey 1 c2hvcnQ=")), Err(KeysError::BadKey(2)));
        assert_eq!(ServerKeys::parse(&format!("hash {k}\nkey one {k}")), Err(KeysError::Malformed(2)));
        assert_eq!(ServerKeys::parse(&format!("hash {k}\nkey 1 {k} retired 5")), Err(KeysError::PrimaryRetired));
        assert_eq!(ServerKeys::parse(&format!("hush {k}")), Err(KeysError::Malformed(1)));
        let err = ServerKeys::parse(&format!("hash {k}\nkey 1 {k} extra")).unwrap_err();
        assert!(!err.to_string().contains(&k));
    }

    #[test]
    fn rotation_adds_a_primary_and_drops_keys_past_their_grace() {
        let mut keys = ServerKeys::generate();
        let hash = keys.hasher().hash("s");
        assert_eq!(keys.rotate(1_000, 100), 2);
        assert_eq!(keys.retirements(), vec![(2, None), (1, Some(1_000))]);
        assert_eq!(keys.rotate(1_050, 100), 3);
        assert_eq!(keys.ids(), vec![3, 2, 1]);
        assert_eq!(keys.rotate(1_200, 100), 4);
        // Key 1 was retired 200 s ago, key 2 150 s ago: both past a 100 s grace.
        assert_eq!(keys.ids(), vec![4, 3]);
        // The hash key never changes, so API keys keep working.
        assert_eq!(keys.hasher().hash("s"), hash);
    }

    #[test]
    fn fingerprints_differ_by_ring_and_hold_no_key() {
        let a = ServerKeys::generate();
        let b = ServerKeys::generate();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(!a.found_in(&a.fingerprint()));
        assert!(a.found_in(a.to_text().as_bytes()));
        assert_eq!(format!("{a:?}"), "ServerKeys { ids: [1], .. }");
    }
}
