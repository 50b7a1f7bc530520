//! The server's keys, kept outside the database.
//!
//! One key ring per installation (every node on one PostgreSQL database holds the same one):
//!
//! - the **hash key**, which keys the HMAC of every API key's secret. It is never rotated,
//!   since that would void every API key; it opens and signs nothing, and the secrets it
//!   hashes are 256 random bits, so knowing it does not help to recover them;
//! - the **signing keys**, newest first. The primary signs access tokens, seals webhook
//!   endpoints' secrets and derives the accounts' notification secrets. A key staged `next`
//!   already verifies, opens and signs notifications beside it, so that every node can hold it
//!   before any node signs with it. Keys retired by a rotation still verify the tokens they
//!   issued up to a token lifetime after they were retired, still open what they sealed (the
//!   core seals it again under the primary at start), and still sign notifications beside the
//!   primary, so that receivers can move to the new secret.
//!
//! Key 0 is the secret that older versions kept in the database: its tokens carry no key id
//! and its seals no header, exactly as those versions made them, so an upgraded installation
//! keeps working. The database holds only the ring's fingerprint, a one-way hash that lets a
//! node refuse to start with another installation's keys, and one fingerprint per signing key,
//! so that two nodes cannot sign with different keys of the same id.
//!
//! The ring's text form, for the key file and for a `server_keys` setting, is one entry per
//! line (or separated by `;`), `#` starting a comment:
//!
//! ```text
//! hash <base64 of 32 bytes>
//! key 3 <base64 of 32 bytes> next
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
    #[error(
        "entry {0} of the server keys is not `hash <base64>` or `key <id> <base64> [next | retired <unix seconds>]`"
    )]
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
    /// There is not exactly one key that is neither `next` nor retired.
    #[error("the server keys need exactly one key that signs (neither `next` nor retired)")]
    Primary,
    /// More than one key is staged `next`.
    #[error("the server keys have more than one key staged `next`")]
    TwoNext,
}

/// One signing key.
#[derive(Clone, PartialEq, Eq)]
struct SigningKey {
    id: u32,
    secret: Vec<u8>,
    /// When a rotation retired it (seconds since the epoch).
    retired_at: Option<i64>,
    /// Staged: held by every node before it signs.
    next: bool,
}

impl SigningKey {
    fn new(id: u32, secret: Vec<u8>) -> Self {
        Self { id, secret, retired_at: None, next: false }
    }

    fn is_primary(&self) -> bool {
        !self.next && self.retired_at.is_none()
    }
}

/// The server's key ring; its `Debug` form shows key ids only.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerKeys {
    hash: Vec<u8>,
    /// Newest first; exactly one is the primary.
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
        Self { hash: random_key(), keys: vec![SigningKey::new(1, random_key())] }
    }

    /// The ring of an installation upgraded from a version that kept `legacy` in the database:
    /// `legacy` stays the hash key (API keys keep working) and becomes key 0, retired `now`;
    /// a fresh key 1 signs and seals from now on, so nothing new depends on a value that a
    /// copy of the old database holds.
    pub fn upgrade(legacy: Vec<u8>, now: i64) -> Self {
        Self {
            hash: legacy.clone(),
            keys: vec![
                SigningKey::new(1, random_key()),
                SigningKey { retired_at: Some(now), ..SigningKey::new(0, legacy) },
            ],
        }
    }

    /// A ring with one given key as both hash key and key `id`: what older versions used
    /// (`id` 0), for tests that make their artifacts.
    pub fn single(id: u32, secret: &[u8]) -> Self {
        Self { hash: secret.to_vec(), keys: vec![SigningKey::new(id, secret.to_vec())] }
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
                    let (retired_at, next) = match rest {
                        [] => (None, false),
                        ["next"] => (None, true),
                        ["retired", at] => (Some(at.parse().map_err(|_| KeysError::Malformed(n))?), false),
                        _ => return Err(KeysError::Malformed(n)),
                    };
                    if keys.iter().any(|k| k.id == id) {
                        return Err(KeysError::Duplicate(id));
                    }
                    let secret = decode(key)?;
                    if id != 0 && secret.len() != 32 {
                        return Err(KeysError::BadKey(n));
                    }
                    keys.push(SigningKey { id, secret, retired_at, next });
                }
                _ => return Err(KeysError::Malformed(n)),
            }
        }
        let hash = hash.ok_or(KeysError::Hash)?;
        if keys.is_empty() {
            return Err(KeysError::NoKey);
        }
        if keys.iter().filter(|k| k.is_primary()).count() != 1 {
            return Err(KeysError::Primary);
        }
        if keys.iter().filter(|k| k.next).count() > 1 {
            return Err(KeysError::TwoNext);
        }
        Ok(Self { hash, keys })
    }

    /// The text form, with a comment saying what it is.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# Switchboard's server keys. Keep this file secret, apart from the database, and back it up:\n\
             # without it no API key, access token or webhook secret of this installation works.\n\
             # The `key` that is neither `next` nor retired signs; `switchboard keys rotate` adds a new one.\n",
        );
        out.push_str(&format!("hash {}\n", STANDARD.encode(&self.hash)));
        for k in &self.keys {
            out.push_str(&format!("key {} {}", k.id, STANDARD.encode(&k.secret)));
            if let Some(at) = k.retired_at {
                out.push_str(&format!(" retired {at}"));
            }
            if k.next {
                out.push_str(" next");
            }
            out.push('\n');
        }
        out
    }

    /// Stages a new key `next` (or keeps the one staged): every node given this ring verifies
    /// and opens with it, and signs notifications with it too, while the primary still signs
    /// tokens and seals. Returns its id.
    pub fn stage(&mut self) -> u32 {
        if let Some(next) = self.keys.iter().find(|k| k.next) {
            return next.id;
        }
        let id = self.keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
        self.keys.insert(0, SigningKey { next: true, ..SigningKey::new(id, random_key()) });
        id
    }

    /// Makes the staged key (staging one first if there is none) the primary and retires the
    /// current primary at `now` (seconds since the epoch). Removes the keys retired more than
    /// `grace_secs` before `now`, except those in `in_use` (still sealing a stored secret).
    /// Returns the new primary's id.
    pub fn rotate(&mut self, now: i64, grace_secs: i64, in_use: &[u32]) -> u32 {
        let id = self.stage();
        for k in &mut self.keys {
            if k.is_primary() {
                k.retired_at = Some(now);
            }
            if k.id == id {
                k.next = false;
            }
        }
        self.keys.retain(|k| k.retired_at.is_none_or(|at| now - at <= grace_secs) || in_use.contains(&k.id));
        id
    }

    fn primary_key(&self) -> &SigningKey {
        // `parse` and every constructor keep exactly one primary.
        self.keys.iter().find(|k| k.is_primary()).unwrap_or(&self.keys[0])
    }

    /// The keys with the primary first, then the others newest first.
    fn primary_first(&self) -> impl Iterator<Item = &SigningKey> {
        let primary = self.primary_key();
        std::iter::once(primary).chain(self.keys.iter().filter(move |k| k.id != primary.id))
    }

    /// The primary key's id.
    pub fn primary(&self) -> u32 {
        self.primary_key().id
    }

    /// The staged key's id, if one is staged.
    pub fn staged(&self) -> Option<u32> {
        self.keys.iter().find(|k| k.next).map(|k| k.id)
    }

    /// Whether this ring holds `legacy`, the secret an older version kept in the database, as
    /// its hash key and key 0, as [`ServerKeys::upgrade`] makes it.
    pub fn holds_legacy(&self, legacy: &[u8]) -> bool {
        self.hash == legacy && self.keys.iter().any(|k| k.id == 0 && k.secret == legacy)
    }

    /// The signing keys' ids, newest first.
    pub fn ids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// When each key was retired (`None` for the primary), newest first.
    pub fn retirements(&self) -> Vec<(u32, Option<i64>)> {
        self.keys.iter().map(|k| (k.id, k.retired_at)).collect()
    }

    /// One-way fingerprints that the database keeps, by name: `keys_fingerprint` of the hash
    /// key, so that a node refuses to start with another installation's keys, and
    /// `keys_fingerprint_<id>` of each signing key, so that no two nodes sign with different
    /// keys of one id. They reveal nothing of the keys.
    pub fn fingerprints(&self) -> Vec<(String, Vec<u8>)> {
        let digest = |label: &str, key: &[u8]| {
            let mut digest = Sha256::new();
            digest.update(label.as_bytes());
            digest.update(key);
            digest.finalize().to_vec()
        };
        std::iter::once(("keys_fingerprint".to_owned(), digest("switchboard server keys fingerprint v1:", &self.hash)))
            .chain(self.keys.iter().map(|k| {
                let name = format!("keys_fingerprint_{}", k.id);
                let label = format!("switchboard signing key fingerprint v1:{}:", k.id);
                (name, digest(&label, &k.secret))
            }))
            .collect()
    }

    /// The hasher of API keys' secrets.
    pub fn hasher(&self) -> KeyHasher {
        KeyHasher::new(self.hash.clone())
    }

    /// The sealer of webhook secrets and deriver of notification secrets, under every key.
    pub fn sealer(&self) -> Sealer {
        let keys: Vec<(u32, &[u8])> = self.primary_first().map(|k| (k.id, k.secret.as_slice())).collect();
        Sealer::with_keys(&keys)
    }

    /// Access tokens signed by the primary and checked under every key.
    pub fn tokens(&self, ttl: std::time::Duration) -> Tokens {
        let keys: Vec<(u32, &[u8], Option<i64>)> =
            self.primary_first().map(|k| (k.id, k.secret.as_slice(), k.retired_at)).collect();
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

/// The id of the server key a stored webhook secret is sealed under.
pub fn sealed_key_id(sealed: &switchboard_signing::SealedSecret) -> u32 {
    Sealer::key_id(sealed)
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
        assert_eq!(ServerKeys::parse(&format!("hash {k}\nkey 1 {k} retired 5")), Err(KeysError::Primary));
        assert_eq!(ServerKeys::parse(&format!("hash {k}\nkey 1 {k}\nkey 2 {k}")), Err(KeysError::Primary));
        assert_eq!(
            ServerKeys::parse(&format!("hash {k}\nkey 3 {k} next\nkey 2 {k} next\nkey 1 {k}")),
            Err(KeysError::TwoNext)
        );
        assert_eq!(ServerKeys::parse(&format!("hush {k}")), Err(KeysError::Malformed(1)));
        let err = ServerKeys::parse(&format!("hash {k}\nkey 1 {k} extra")).unwrap_err();
        assert!(!err.to_string().contains(&k));
    }

    #[test]
    fn rotation_promotes_the_staged_key_and_drops_unused_keys_past_their_grace() {
        let mut keys = ServerKeys::generate();
        let hash = keys.hasher().hash("s");
        // Staged first: held by every node, signing nothing yet.
        assert_eq!(keys.stage(), 2);
        assert_eq!(keys.stage(), 2, "staging twice keeps the staged key");
        assert_eq!((keys.primary(), keys.staged()), (1, Some(2)));
        let staged = ServerKeys::parse(&keys.to_text()).unwrap();
        assert_eq!(staged, keys);
        assert!(keys.to_text().contains(" next\n"));
        assert_eq!(keys.sealer().notification_secrets(switchboard_domain::AccountId::new()).len(), 2);

        assert_eq!(keys.rotate(1_000, 100, &[]), 2);
        assert_eq!(keys.retirements(), vec![(2, None), (1, Some(1_000))]);
        assert_eq!((keys.primary(), keys.staged()), (2, None));
        // Without a staged key, rotation stages one and promotes it at once.
        assert_eq!(keys.rotate(1_050, 100, &[]), 3);
        assert_eq!(keys.ids(), vec![3, 2, 1]);
        // Key 1 was retired 200 s ago and key 2 150 s ago: past a 100 s grace, but key 1 still
        // seals a stored secret, so it stays.
        assert_eq!(keys.rotate(1_200, 100, &[1]), 4);
        assert_eq!(keys.ids(), vec![4, 3, 1]);
        assert_eq!(keys.rotate(1_201, 100, &[]), 5);
        assert_eq!(keys.ids(), vec![5, 4, 3]);
        // The hash key never changes, so API keys keep working.
        assert_eq!(keys.hasher().hash("s"), hash);
    }

    #[test]
    fn the_legacy_secret_is_recognised_only_as_the_upgrade_keeps_it() {
        let legacy = vec![9; 32];
        assert!(ServerKeys::upgrade(legacy.clone(), 1).holds_legacy(&legacy));
        assert!(ServerKeys::single(0, &legacy).holds_legacy(&legacy));
        assert!(!ServerKeys::generate().holds_legacy(&legacy));
        assert!(!ServerKeys::single(1, &legacy).holds_legacy(&legacy), "not as key 0");
    }

    #[test]
    fn fingerprints_differ_by_ring_and_hold_no_key() {
        let a = ServerKeys::generate();
        let b = ServerKeys::generate();
        assert_ne!(a.fingerprints()[0], b.fingerprints()[0]);
        assert_eq!(
            a.fingerprints().iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["keys_fingerprint", "keys_fingerprint_1"]
        );
        assert_ne!(a.fingerprints()[1], b.fingerprints()[1]);
        for (_, fingerprint) in a.fingerprints() {
            assert!(!a.found_in(&fingerprint));
        }
        assert!(a.found_in(a.to_text().as_bytes()));
        assert_eq!(format!("{a:?}"), "ServerKeys { ids: [1], .. }");
    }
}
