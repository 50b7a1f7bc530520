//! Failure budgets against credential guessing.
//!
//! Every failed credential check spends one failure from two token buckets: its client
//! address's (an IPv4 address, or the /64 of an IPv6 one) and the key id's it named. Each
//! bucket holds `per_minute` failures and refills at `per_minute` a minute.
//!
//! The two budgets refuse differently, so that guessing is slowed without locking out the
//! rightful key holder:
//!
//! - An address that has spent its budget is refused everything, before any credential is
//!   checked ([`AuthGuard::admit`]): it is the guesser's own address.
//! - A key id that has spent its budget refuses only *failed* checks: the secret is verified
//!   first, a right one passes, and a wrong one is answered "too many" instead of "invalid"
//!   ([`AuthGuard::failed`]). Guesses spread over many addresses are refused as such, while the
//!   key's holder, from any address, still gets in. Key ids that do not exist are counted
//!   exactly like those that do, so the answers never tell them apart.
//!
//! A request whose address is not known (no connection info) skips the address budget: one
//! shared bucket would let anyone lock everyone out. Both tables are bounded (`max_entries`
//! each): an entry that went longest untouched is forgotten first, so random key ids or
//! addresses cannot exhaust memory.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::RetryAfter;

/// Settings of the failure budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Failed credential checks one client address may make per minute (also the burst); past
    /// it, the address is refused until its budget refills. Zero turns the budget off.
    pub address_failures_per_minute: u32,
    /// Failed checks of one key id per minute, from every address together; past it, wrong
    /// secrets for that key id are answered "too many", right ones still pass. Zero turns the
    /// budget off.
    pub key_failures_per_minute: u32,
    /// Most addresses, and most key ids, tracked at once.
    pub max_entries: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self { address_failures_per_minute: 20, key_failures_per_minute: 20, max_entries: 100_000 }
    }
}

/// A map of at most `limit` entries, in two generations: new entries go into the young one;
/// when it holds half the limit, the old generation is dropped and the young one becomes old.
/// An entry touched while old moves back into the young generation, so what is dropped is what
/// went longest untouched. Every operation is O(1) amortised.
#[derive(Debug)]
pub(crate) struct Generations<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    half: usize,
}

impl<K: Hash + Eq, V> Generations<K, V> {
    /// An empty map holding at most `limit` entries (at least 2).
    pub(crate) fn new(limit: usize) -> Self {
        Self { young: HashMap::new(), old: HashMap::new(), half: (limit / 2).max(1) }
    }

    /// The value of `key`, if held.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.young.get(key).or_else(|| self.old.get(key))
    }

    /// The value of `key`, moved into the young generation, or `default()` put there.
    pub(crate) fn touch(&mut self, key: K, default: impl FnOnce() -> V) -> &mut V {
        if !self.young.contains_key(&key) {
            let value = self.old.remove(&key).unwrap_or_else(default);
            if self.young.len() >= self.half {
                self.old = std::mem::take(&mut self.young);
            }
            return self.young.entry(key).or_insert(value);
        }
        self.young.entry(key).or_insert_with(default)
    }

    /// Puts `value` for `key`, replacing what was held.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if !self.young.contains_key(&key) {
            self.old.remove(&key);
            if self.young.len() >= self.half {
                self.old = std::mem::take(&mut self.young);
            }
        }
        self.young.insert(key, value);
    }

    /// Forgets `key`.
    pub(crate) fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.young.remove(key);
        self.old.remove(key);
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// A client address as the budget counts it: an IPv4 address (IPv4-mapped IPv6 included), or
/// the /64 network of an IPv6 address, since one IPv6 host commonly holds a whole /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientAddr(IpAddr);

impl From<IpAddr> for ClientAddr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientAddr(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientAddr(IpAddr::V4(v4)),
                None => ClientAddr(IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())),
            },
        }
    }
}

/// A failure budget: `per_minute` failures, refilled evenly over a minute.
#[derive(Debug, Clone, Copy)]
struct Budget {
    per_minute: u32,
}

impl Budget {
    fn capacity(self) -> f64 {
        f64::from(self.per_minute)
    }

    /// Failures refilled per second.
    fn rate(self) -> f64 {
        self.capacity() / 60.0
    }
}

/// One bucket of failures left.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, budget: Budget, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * budget.rate()).min(budget.capacity());
        self.at = self.at.max(now);
    }

    /// How long until one more failure may be spent, if none is left.
    fn wait(&self, budget: Budget) -> Option<RetryAfter> {
        (self.tokens < 1.0).then(|| RetryAfter(Duration::from_secs_f64((1.0 - self.tokens) / budget.rate())))
    }
}

/// Sharded so that requests from different clients rarely wait for one lock.
const SHARDS: usize = 16;

/// One bounded table of buckets.
#[derive(Debug)]
struct Table<K> {
    budget: Option<Budget>,
    hasher: RandomState,
    shards: Vec<Mutex<Generations<K, Bucket>>>,
}

impl<K: Hash + Eq> Table<K> {
    fn new(per_minute: u32, max_entries: usize) -> Self {
        let per_shard = (max_entries / SHARDS).max(2);
        Self {
            budget: (per_minute > 0).then_some(Budget { per_minute }),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Generations::new(per_shard))).collect(),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Mutex<Generations<K, Bucket>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// How long `key` must wait, if it has spent its budget. Changes nothing.
    fn exhausted<Q>(&self, key: &Q, now: Instant) -> Option<RetryAfter>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let budget = self.budget?;
        let shard = self.shard(key).lock().ok()?;
        let mut bucket = *shard.get(key)?;
        bucket.refill(budget, now);
        bucket.wait(budget)
    }

    /// Spends one failure of `key`'s budget; if none was left, how long to wait.
    fn spend(&self, key: K, now: Instant) -> Option<RetryAfter> {
        let budget = self.budget?;
        let mut shard = self.shard(&key).lock().ok()?;
        let bucket = shard.touch(key, || Bucket { tokens: budget.capacity(), at: now });
        bucket.refill(budget, now);
        match bucket.wait(budget) {
            Some(wait) => Some(wait),
            None => {
                bucket.tokens -= 1.0;
                None
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|s| s.len()).unwrap_or(0)).sum()
    }
}

/// The failure budgets of one kind of credential: per client address and per key id.
#[derive(Debug)]
pub struct AuthGuard {
    addresses: Table<ClientAddr>,
    keys: Table<String>,
}

impl AuthGuard {
    /// Budgets with these settings.
    pub fn new(config: GuardConfig) -> Self {
        Self {
            addresses: Table::new(config.address_failures_per_minute, config.max_entries),
            keys: Table::new(config.key_failures_per_minute, config.max_entries),
        }
    }

    /// Before any credential is checked: refuses a client address that has spent its budget,
    /// saying how long until it may try again. An unknown address is never refused.
    pub fn admit(&self, client: Option<IpAddr>) -> Result<(), RetryAfter> {
        self.admit_at(client, Instant::now())
    }

    fn admit_at(&self, client: Option<IpAddr>, now: Instant) -> Result<(), RetryAfter> {
        let Some(client) = client else { return Ok(()) };
        match self.addresses.exhausted(&ClientAddr::from(client), now) {
            Some(wait) => {
                metrics::counter!("switchboard_auth_throttled_total", "budget" => "address").increment(1);
                Err(wait)
            }
            None => Ok(()),
        }
    }

    /// After a failed check: spends one failure of the address's budget (if the address is
    /// known) and of the key id's (if one was named). `Err` when either had none left: the
    /// failure is then answered "too many" rather than "invalid".
    pub fn failed(&self, client: Option<IpAddr>, key_id: Option<&str>) -> Result<(), RetryAfter> {
        self.failed_at(client, key_id, Instant::now())
    }

    fn failed_at(&self, client: Option<IpAddr>, key_id: Option<&str>, now: Instant) -> Result<(), RetryAfter> {
        let by_address = client.and_then(|c| self.addresses.spend(ClientAddr::from(c), now));
        let by_key = key_id.and_then(|k| self.keys.spend(k.to_owned(), now));
        let budget = match (by_address, by_key) {
            (None, None) => return Ok(()),
            (Some(_), None) => "address",
            (_, Some(_)) => "key",
        };
        metrics::counter!("switchboard_auth_throttled_total", "budget" => budget).increment(1);
        Err(by_address.into_iter().chain(by_key).max_by_key(|w| w.0).unwrap_or(RetryAfter(Duration::ZERO)))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn guard(address: u32, key: u32) -> AuthGuard {
        AuthGuard::new(GuardConfig {
            address_failures_per_minute: address,
            key_failures_per_minute: key,
            max_entries: 1000,
        })
    }

    #[test]
    fn an_address_fails_its_budget_then_waits_for_the_refill() {
        let g = guard(20, 0);
        let t0 = Instant::now();
        let a = ip("192.0.2.7");
        for i in 0..20 {
            assert!(g.admit_at(a, t0).is_ok(), "failure {i} is within the budget");
            assert!(g.failed_at(a, Some("key_x"), t0).is_ok());
        }
        // Twenty a minute is one every three seconds.
        let refused = g.admit_at(a, t0).unwrap_err();
        assert_eq!(refused.seconds(), 3);
        assert_eq!(g.admit_at(a, t0 + Duration::from_secs(2)).unwrap_err().seconds(), 1);
        assert!(g.admit_at(a, t0 + Duration::from_secs(3)).is_ok());
        assert!(g.failed_at(a, None, t0 + Duration::from_secs(3)).is_ok());
        assert!(g.admit_at(a, t0 + Duration::from_secs(3)).is_err());
        // A minute idle refills the whole budget, and no more.
        let later = t0 + Duration::from_secs(600);
        for _ in 0..20 {
            assert!(g.failed_at(a, None, later).is_ok());
        }
        assert!(g.admit_at(a, later).is_err());
        // Other addresses, and requests of unknown address, are not held to it.
        assert!(g.admit_at(ip("192.0.2.8"), t0).is_ok());
        assert!(g.admit_at(None, t0).is_ok());
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let g = guard(2, 0);
        let t0 = Instant::now();
        g.failed_at(ip("2001:db8:1:2::1"), None, t0).unwrap();
        g.failed_at(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), None, t0).unwrap();
        assert!(g.admit_at(ip("2001:db8:1:2::abcd"), t0).is_err(), "the same /64");
        assert!(g.admit_at(ip("2001:db8:1:3::1"), t0).is_ok(), "the next /64");
        g.failed_at(Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))), None, t0).unwrap();
        g.failed_at(Some(IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped())), None, t0).unwrap();
        assert!(g.admit_at(ip("198.51.100.1"), t0).is_err());
        assert!(g.admit_at(Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), t0).is_ok());
    }

    #[test]
    fn a_key_id_over_budget_refuses_failures_but_admits_every_address() {
        let g = guard(20, 20);
        let t0 = Instant::now();
        for i in 0..20u8 {
            let a = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, i)));
            assert!(g.failed_at(a, Some("key_abc"), t0).is_ok(), "failure {i}");
        }
        // One more failure, from a fresh address, is refused by the key id's budget...
        let fresh = ip("203.0.113.200");
        assert!(g.admit_at(fresh, t0).is_ok(), "a fresh address is admitted: a right secret would pass");
        assert_eq!(g.failed_at(fresh, Some("key_abc"), t0).unwrap_err().seconds(), 3);
        // ...while other key ids, known or not, keep their own.
        assert!(g.failed_at(fresh, Some("key_def"), t0).is_ok());
        assert!(g.failed_at(None, Some("key_abc"), t0 + Duration::from_secs(3)).is_ok());
    }

    #[test]
    fn a_zero_budget_is_off() {
        let g = guard(0, 0);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(g.failed_at(ip("192.0.2.1"), Some("key_a"), t0).is_ok());
        }
        assert!(g.admit_at(ip("192.0.2.1"), t0).is_ok());
        assert_eq!(g.addresses.len() + g.keys.len(), 0);
    }

    #[test]
    fn the_tables_stay_within_their_bound() {
        let g = guard(20, 20);
        let t0 = Instant::now();
        for i in 0..50_000u32 {
            let a = Some(IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64)));
            let _ = g.failed_at(a, Some(&format!("key_{i:08x}")), t0);
        }
        assert!(g.addresses.len() <= 1000, "{} addresses", g.addresses.len());
        assert!(g.keys.len() <= 1000, "{} key ids", g.keys.len());
        assert!(g.keys.len() >= 500, "the bound is used, not cleared: {}", g.keys.len());
    }

    #[test]
    fn generations_forget_what_went_longest_untouched() {
        let mut m = Generations::new(4);
        m.insert(1, 'a');
        m.insert(2, 'b');
        // The young generation is full: 1 and 2 become old as 3 comes in.
        m.insert(3, 'c');
        // Touching 1 brings it back; 2 stays old and untouched.
        *m.touch(1, || 'z') = 'A';
        assert_eq!((m.len(), m.get(&1), m.get(&2)), (3, Some(&'A'), Some(&'b')));
        // The next turn drops the old generation: 2 goes, 1 and 3 stay.
        m.insert(4, 'd');
        assert_eq!((m.get(&1), m.get(&2), m.get(&3), m.get(&4)), (Some(&'A'), None, Some(&'c'), Some(&'d')));
        for k in 5..100 {
            m.insert(k, 'x');
            assert!(m.len() <= 4);
        }
        m.remove(&99);
        assert_eq!(m.get(&99), None);
    }
}
