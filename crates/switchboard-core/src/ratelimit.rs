//! Per-account request rate limits: a token bucket per account, refilled at the account's
//! rate with a burst of one second's worth. Limits apply per node; each account's configured
//! rate is read at most once per cache period.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use switchboard_domain::AccountId;

/// A refused request: how long until one more would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds to wait, at least one (for a `Retry-After` header).
    pub fn seconds(&self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0).max(u64::from(self.0.is_zero()))
    }
}

#[derive(Debug)]
struct Bucket {
    rate: u32,
    tokens: f64,
    refilled: Instant,
    configured: Instant,
}

const SHARDS: usize = 16;
/// Most accounts tracked per shard before idle ones are dropped.
const SHARD_LIMIT: usize = 10_000;

/// The buckets.
#[derive(Debug)]
pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<AccountId, Bucket>>>,
    config_ttl: Duration,
}

impl RateLimiter {
    /// A limiter that re-reads an account's rate every `config_ttl`.
    pub fn new(config_ttl: Duration) -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), config_ttl }
    }

    fn shard(&self, account: AccountId) -> &Mutex<HashMap<AccountId, Bucket>> {
        &self.shards[(account.as_uuid().as_u128() as usize) % SHARDS]
    }

    /// The rate known for an account, if it is fresh.
    pub fn known_rate(&self, account: AccountId) -> Option<u32> {
        let shard = self.shard(account).lock().ok()?;
        shard.get(&account).filter(|b| b.configured.elapsed() < self.config_ttl).map(|b| b.rate)
    }

    /// Forgets an account's bucket, so that a changed rate applies at once on this node.
    pub fn forget(&self, account: AccountId) {
        if let Ok(mut shard) = self.shard(account).lock() {
            shard.remove(&account);
        }
    }

    /// Takes one request from the account's bucket at `rate` per second.
    pub fn take(&self, account: AccountId, rate: u32, now: Instant) -> Result<(), RetryAfter> {
        let rate = rate.max(1);
        let Ok(mut shard) = self.shard(account).lock() else { return Ok(()) };
        if shard.len() >= SHARD_LIMIT && !shard.contains_key(&account) {
            // Buckets idle for a second are full again; forgetting them changes nothing.
            shard.retain(|_, b| now.duration_since(b.refilled) < Duration::from_secs(1));
        }
        let bucket =
            shard.entry(account).or_insert(Bucket { rate, tokens: f64::from(rate), refilled: now, configured: now });
        if bucket.rate != rate || bucket.configured.elapsed() >= self.config_ttl {
            bucket.tokens = bucket.tokens.min(f64::from(rate));
            bucket.rate = rate;
            bucket.configured = now;
        }
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(RetryAfter(Duration::from_secs_f64((1.0 - bucket.tokens) / f64::from(rate))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = RateLimiter::new(Duration::from_secs(5));
        let a = AccountId::new();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(limiter.take(a, 10, t0).is_ok());
        }
        let refused = limiter.take(a, 10, t0).unwrap_err();
        assert_eq!(refused.seconds(), 1);
        assert!(limiter.take(AccountId::new(), 10, t0).is_ok(), "accounts do not share a bucket");
        // A tenth of a second later there is room for one more.
        assert!(limiter.take(a, 10, t0 + Duration::from_millis(101)).is_ok());
        assert!(limiter.take(a, 10, t0 + Duration::from_millis(101)).is_err());
    }
}

/// The router's shared rate-limit buckets ([`switchboard_provider::SharedLimits`]) kept in the
/// store, so that upstream and sender limits hold across every node on one database.
#[derive(Clone)]
pub struct StoreLimits {
    store: std::sync::Arc<dyn switchboard_storage::Store>,
}

impl StoreLimits {
    /// Buckets in `store`.
    pub fn new(store: std::sync::Arc<dyn switchboard_storage::Store>) -> Self {
        Self { store }
    }
}

impl std::fmt::Debug for StoreLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLimits").field("backend", &self.store.backend()).finish()
    }
}

#[switchboard_provider::async_trait]
impl switchboard_provider::SharedLimits for StoreLimits {
    async fn take(&self, name: &str, per_second: u32, want: u32) -> Result<u32, String> {
        self.store
            .take_rate_tokens(name, per_second, want, switchboard_domain::Timestamp::now())
            .await
            .map_err(|e| e.to_string())
    }
}
