//! API keys: generation, keyed hashing, and verification with a short-lived cache.
//!
//! A key is an id (`key_…`, the Basic-auth user name) and a secret (the password), shown once.
//! Only HMAC-SHA256(server secret, key secret) is stored. Verifying costs one HMAC and, at most
//! once per cache period per key, one indexed read: nothing slow on the request path.
//!
//! An unknown key id costs exactly what a wrong secret does, so that timing cannot tell which
//! key ids exist: its absence is read from the database and cached like a key, and the
//! presented secret is still hashed and compared, in constant time, with a stand-in hash.

use std::fmt;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use switchboard_domain::AccountId;
use switchboard_records::ApiKeyRecord;
use switchboard_storage::Store;

use crate::RetryAfter;
use crate::guard::Generations;

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No such key, a wrong secret, or a revoked key. Deliberately one answer for all three.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The key store could not be read.
    #[error("credentials could not be checked")]
    Unavailable,
    /// Too many failed checks from this client address, or for this key id: try again after
    /// the wait (see [`crate::guard`]).
    #[error("too many failed attempts")]
    Throttled(RetryAfter),
}

/// The server secret that keys the hashes. Never printed.
#[derive(Clone)]
pub struct KeyHasher {
    secret: Vec<u8>,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(<redacted>)")
    }
}

impl KeyHasher {
    /// A hasher keyed by `secret`.
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    /// HMAC-SHA256 of `value`.
    pub fn hash(&self, value: &str) -> Vec<u8> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// A new key's id and secret.
#[derive(Clone)]
pub struct NewKey {
    /// The id.
    pub id: String,
    /// The secret, to show once.
    pub secret: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a fresh key: a 64-bit id and a 256-bit secret from the OS-seeded CSPRNG.
pub fn generate_key() -> NewKey {
    NewKey { id: format!("key_{}", random_hex(8)), secret: format!("sk_{}", random_hex(32)) }
}

/// Whether `key_id` could name a key at all (1 to 64 bytes); others are refused unread.
pub fn plausible_key_id(key_id: &str) -> bool {
    !key_id.is_empty() && key_id.len() <= 64
}

/// What the store said of a key id: its account and hash, or (`account: None`) that it has
/// no such key, with a stand-in hash to compare against all the same.
#[derive(Clone)]
struct Cached {
    account: Option<AccountId>,
    hash: Vec<u8>,
    revoked: bool,
    fetched: Instant,
}

/// Verifies key credentials, caching what the store says of each key id (that it exists or
/// that it does not) for `ttl`. A revocation made through this node applies at once; one made
/// through another node within `ttl`.
pub struct Authenticator {
    hasher: KeyHasher,
    ttl: Duration,
    /// The hash an unknown key id's secret is compared with: of random bytes, so nothing
    /// matches it.
    stand_in: Vec<u8>,
    cache: RwLock<Generations<String, Cached>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// Most key ids cached at once; past it the ones unread longest are forgotten (an attacker
/// cycling ids only costs reads, within the failure budgets).
const CACHE_LIMIT: usize = 100_000;

impl Authenticator {
    /// An authenticator with this hasher and cache period.
    pub fn new(hasher: KeyHasher, ttl: Duration) -> Self {
        let stand_in = hasher.hash(&random_hex(32));
        Self { hasher, ttl, stand_in, cache: RwLock::new(Generations::new(CACHE_LIMIT)) }
    }

    /// The hasher, for storing new keys.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Checks an id and secret; returns the key's account.
    pub async fn verify(&self, store: &dyn Store, key_id: &str, secret: &str) -> Result<AccountId, AuthError> {
        if !plausible_key_id(key_id) || secret.len() > 256 {
            return Err(AuthError::InvalidCredentials);
        }
        let entry = self.entry(store, key_id).await?;
        // The same work whether the key id exists or not: one HMAC, one full comparison.
        let presented = self.hasher.hash(secret);
        let matches = bool::from(presented.ct_eq(&entry.hash));
        match entry.account {
            Some(account) if matches && !entry.revoked => Ok(account),
            _ => Err(AuthError::InvalidCredentials),
        }
    }

    /// Checks that a key exists, is not revoked and belongs to `account` (for a token issued
    /// for it, whose signature is already checked).
    pub async fn check_key(&self, store: &dyn Store, key_id: &str, account: AccountId) -> Result<(), AuthError> {
        if !plausible_key_id(key_id) {
            return Err(AuthError::InvalidCredentials);
        }
        let entry = self.entry(store, key_id).await?;
        if entry.revoked || entry.account != Some(account) {
            return Err(AuthError::InvalidCredentials);
        }
        Ok(())
    }

    async fn entry(&self, store: &dyn Store, key_id: &str) -> Result<Cached, AuthError> {
        let cached =
            self.cache.read().ok().and_then(|c| c.get(key_id).cloned()).filter(|c| c.fetched.elapsed() < self.ttl);
        if let Some(c) = cached {
            return Ok(c);
        }
        let record = store.find_api_key(key_id).await.map_err(|_| AuthError::Unavailable)?;
        let entry = match record {
            Some(record) => Cached {
                account: Some(record.account_id),
                hash: record.secret_hash,
                revoked: record.revoked_at.is_some(),
                fetched: Instant::now(),
            },
            None => Cached { account: None, hash: self.stand_in.clone(), revoked: false, fetched: Instant::now() },
        };
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(key_id.to_owned(), entry.clone());
        }
        Ok(entry)
    }

    /// Forgets a key id, so that a change to it (a revocation, or its creation after it was
    /// looked up in vain) applies at once on this node.
    pub fn forget(&self, key_id: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(key_id);
        }
    }

    /// The record to store for a new key.
    pub fn record(&self, key: &NewKey, account: AccountId, name: Option<String>) -> ApiKeyRecord {
        ApiKeyRecord {
            id: key.id.clone(),
            account_id: account,
            name,
            secret_hash: self.hasher.hash(&key.secret),
            created_at: switchboard_domain::Timestamp::now(),
            revoked_at: None,
        }
    }
}

/// Names the authenticated account on the request's log span (its `account` field), so that
/// the access line and every log line of the request say whose it was.
pub(crate) fn note_account(account: AccountId) {
    tracing::Span::current().record("account", tracing::field::display(account));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashes_keyed() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.id, b.id);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), 3 + 64);
        let h1 = KeyHasher::new(vec![1; 32]);
        let h2 = KeyHasher::new(vec![2; 32]);
        assert_eq!(h1.hash("x"), h1.hash("x"));
        assert_ne!(h1.hash("x"), h2.hash("x"));
        assert!(!format!("{a:?}").contains(&a.secret));
        assert!(!format!("{h1:?}").contains('1'));
    }
}
