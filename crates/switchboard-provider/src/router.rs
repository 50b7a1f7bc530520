//! A router: a [`Provider`] that chooses among named upstreams by destination prefix, account
//! and sender, fails over between them, and keeps their rate limits.
//!
//! # Choosing a route
//!
//! A [`RouteConfig`] matches a message when the recipient starts with its `prefix` (an E.164
//! prefix such as `+1` or `+4477`; empty or `+` matches every number) and, when it lists
//! accounts or senders, the message's account and sender are among them. Of the routes that
//! match, the one with the longest prefix wins; between routes with equally long prefixes,
//! the one with more filters (account and sender) wins, and then the one declared first.
//! A message no route matches fails for good with `routing_error`.
//!
//! # Failover
//!
//! The route's upstreams are tried in their order. An upstream whose [`Provider::status`]
//! says it is not connected is passed over without being called. An upstream that answers
//! `unavailable` or with a retryable error (or that is over its rate limit) is followed by the
//! next; a permanent error ends the send at once, since another upstream would refuse the
//! message too. When no upstream took the message, the send fails with the last retryable
//! error, or, when every upstream was unavailable, as `unavailable`.
//!
//! # Rate limits
//!
//! Each upstream may have a limit of messages per second ([`UpstreamLimits`]), and the router
//! may limit how many messages per second each sender number sends. The limits hold for all
//! of this node's traffic through the router. A send waits for its turn, evenly spaced at the
//! limit; when its turn would come more than five seconds after the send began, it does not
//! wait but ends with a retryable error (or, for an upstream's limit, tries the next upstream).
//!
//! Several nodes on one database hold the limits across all of them with
//! [`Router::with_shared_limits`]: each send also takes a token from a bucket every node shares
//! ([`SharedLimits`]), leased a twentieth of a second's worth at a time. Tokens a node has
//! leased and not used are at most that much; should the shared buckets fail, each node keeps
//! its own limits alone until they answer again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use switchboard_domain::{AccountId, ErrorType, Timestamp};
use tokio::time::Instant;

use crate::{OutboundMessage, Provider, ProviderError, Submission, UpstreamStatus, async_trait};

/// Longest a send waits for its turn under the rate limits.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// Sender buckets kept before idle ones are dropped.
const SENDER_BUCKETS_KEPT: usize = 4096;

/// One route: which messages it takes and the upstreams that send them, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The E.164 prefix the recipient starts with, such as `+1` or `+4477`; empty or `+` for
    /// every number.
    #[serde(default)]
    pub prefix: String,
    /// The accounts whose messages it takes; empty for every account.
    #[serde(default)]
    pub accounts: Vec<AccountId>,
    /// The sender numbers whose messages it takes, in E.164; empty for every sender.
    #[serde(default)]
    pub senders: Vec<String>,
    /// The names of the upstreams to try, in order.
    pub upstreams: Vec<String>,
}

/// Limits of one upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct UpstreamLimits {
    /// Most messages per second this node sends through it; none for no limit.
    #[serde(default)]
    pub max_per_second: Option<u32>,
}

/// Why a router could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// No routes were given.
    #[error("the router has no routes")]
    NoRoutes,
    /// Two upstreams have one name.
    #[error("two upstreams are named `{0}`")]
    DuplicateUpstream(String),
    /// A route names an upstream that does not exist.
    #[error("route {route} names the unknown upstream `{name}`")]
    UnknownUpstream {
        /// The route's place in the list, from 1.
        route: usize,
        /// The name.
        name: String,
    },
    /// A route lists no upstreams.
    #[error("route {route} lists no upstreams")]
    NoUpstreams {
        /// The route's place in the list, from 1.
        route: usize,
    },
    /// A route's prefix is not `+` followed by up to 15 digits, the first not 0.
    #[error("route {route} has the prefix `{prefix}`; expected + and up to 15 digits (such as +1 or +4477), or empty")]
    BadPrefix {
        /// The route's place in the list, from 1.
        route: usize,
        /// The prefix given.
        prefix: String,
    },
    /// A rate limit of zero messages per second.
    #[error("the rate limit of {0} must be at least 1 message per second")]
    ZeroRate(String),
}

/// A token bucket: holds up to `capacity` tokens, gains `rate` a second, and each message
/// takes one. A message that finds no token reserves the next one to come (the count goes
/// below zero), so waiting messages go in order, evenly spaced, whatever the timer's grain.
#[derive(Debug)]
struct TokenBucket {
    /// Tokens gained per second.
    rate: f64,
    /// Most tokens it holds.
    capacity: f64,
    /// Tokens now (negative: reserved ahead), as of `updated`.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens that gains `per_second` a second.
    fn new(per_second: u32, capacity: u32) -> Self {
        let capacity = f64::from(capacity.max(1));
        Self { rate: f64::from(per_second.max(1)), capacity, state: Mutex::new((capacity, Instant::now())) }
    }

    /// Takes a token at `now`: returns when the message may go, or, when that would be after
    /// `deadline`, how long it would have waited (and takes nothing).
    fn reserve(&self, now: Instant, deadline: Instant) -> Result<Instant, Duration> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, updated) = *state;
        let gained = now.saturating_duration_since(updated).as_secs_f64() * self.rate;
        let tokens = (tokens + gained).min(self.capacity);
        let at = if tokens >= 1.0 { now } else { now + Duration::from_secs_f64((1.0 - tokens) / self.rate) };
        if at > deadline {
            *state = (tokens, now.max(updated));
            return Err(at - now);
        }
        *state = (tokens - 1.0, now.max(updated));
        Ok(at)
    }

    /// Whether it is full at `now`, so that dropping it changes nothing.
    fn is_full(&self, now: Instant) -> bool {
        let (tokens, updated) = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        tokens + now.saturating_duration_since(updated).as_secs_f64() * self.rate >= self.capacity
    }
}

/// Rate-limit buckets every node shares, so that a limit holds across all of them.
#[async_trait]
pub trait SharedLimits: Send + Sync {
    /// Takes `want` tokens from the bucket `name`, which gains `per_second` tokens a second and
    /// holds at most `per_second`, when it holds that many, all or none; returns how many it
    /// took.
    async fn take(&self, name: &str, per_second: u32, want: u32) -> Result<u32, String>;
}

/// Shared tokens this node has leased and not yet used, by bucket.
#[derive(Default)]
struct Leases {
    shared: Option<Arc<dyn SharedLimits>>,
    unused: Mutex<HashMap<String, u32>>,
}

impl Leases {
    /// Takes one token of the shared bucket `{kind}:{id}` (`per_second` a second) by
    /// `deadline`: one this node leased before, or from a new lease. Err when the bucket stays
    /// empty until the deadline. Without shared limits, or when they fail, there is nothing to
    /// take.
    async fn take(&self, kind: &str, id: &str, per_second: u32, deadline: Instant) -> Result<(), ()> {
        let Some(shared) = &self.shared else { return Ok(()) };
        let name = format!("{kind}:{id}");
        let name = name.as_str();
        let lease = (per_second / 20).max(1);
        loop {
            {
                let mut unused = self.unused.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(n) = unused.get_mut(name) {
                    *n -= 1;
                    if *n == 0 {
                        unused.remove(name);
                    }
                    return Ok(());
                }
            }
            match shared.take(name, per_second, lease).await {
                Ok(0) => {}
                Ok(n) => {
                    if n > 1 {
                        let mut unused = self.unused.lock().unwrap_or_else(PoisonError::into_inner);
                        if unused.len() >= SENDER_BUCKETS_KEPT {
                            // Forgetting leased tokens only ever sends less.
                            unused.clear();
                        }
                        *unused.entry(name.to_owned()).or_default() += n - 1;
                    }
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(bucket = name, error = %e, "shared rate limits failed; keeping this node's own");
                    return Ok(());
                }
            }
            // The bucket refills a lease's worth in this long.
            let next = Instant::now() + Duration::from_secs_f64(f64::from(lease) / f64::from(per_second));
            if next > deadline {
                return Err(());
            }
            tokio::time::sleep_until(next).await;
        }
    }
}

/// An upstream as the router holds it.
struct Upstream {
    name: String,
    provider: Arc<dyn Provider>,
    bucket: Option<(u32, TokenBucket)>,
    /// The last error a send to it met, for its status.
    last_error: Mutex<Option<(Timestamp, String)>>,
}

impl Upstream {
    /// False when it reports a status and none of it is connected.
    fn connected(&self) -> bool {
        let status = self.provider.status();
        status.is_empty() || status.iter().any(|s| s.connected)
    }
}

/// A route with its upstreams resolved to their places.
#[derive(Debug)]
struct Route {
    prefix: String,
    accounts: Vec<AccountId>,
    senders: Vec<String>,
    upstreams: Vec<usize>,
}

impl Route {
    /// How many of its filters (account, sender) are set.
    fn specificity(&self) -> u8 {
        u8::from(!self.accounts.is_empty()) + u8::from(!self.senders.is_empty())
    }

    fn matches(&self, message: &OutboundMessage) -> bool {
        message.to.as_str().starts_with(&self.prefix)
            && (self.accounts.is_empty() || self.accounts.contains(&message.account_id))
            && (self.senders.is_empty() || self.senders.iter().any(|s| s == message.from.as_str()))
    }
}

/// A provider that routes each message to one of several upstreams; see the [module
/// documentation](self).
pub struct Router {
    upstreams: Vec<Upstream>,
    routes: Vec<Route>,
    sender_limit: Option<u32>,
    senders: Mutex<HashMap<String, Arc<TokenBucket>>>,
    leases: Leases,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("upstreams", &self.upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>())
            .field("routes", &self.routes)
            .field("sender_limit", &self.sender_limit)
            .finish_non_exhaustive()
    }
}

/// Checks a prefix and gives its stored form (`+` alone becomes empty).
fn normalize_prefix(prefix: &str) -> Option<String> {
    let prefix = prefix.trim();
    if prefix.is_empty() || prefix == "+" {
        return Some(String::new());
    }
    let digits = prefix.strip_prefix('+')?;
    let ok = digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    ok.then(|| prefix.to_owned())
}

impl Router {
    /// A router over `upstreams` (each a name, the provider and its limits) with `routes`,
    /// limiting each sender number to `sender_max_per_second` messages a second if given.
    ///
    /// Refuses an empty route list, two upstreams of one name, a route with no upstreams or
    /// naming an unknown one, a prefix that is not `+` and digits, and a rate of zero.
    pub fn new(
        upstreams: Vec<(String, Arc<dyn Provider>, UpstreamLimits)>,
        routes: Vec<RouteConfig>,
        sender_max_per_second: Option<u32>,
    ) -> Result<Router, RouterError> {
        if routes.is_empty() {
            return Err(RouterError::NoRoutes);
        }
        if sender_max_per_second == Some(0) {
            return Err(RouterError::ZeroRate("each sender".into()));
        }
        let mut places = HashMap::new();
        let mut held = Vec::with_capacity(upstreams.len());
        for (name, provider, limits) in upstreams {
            if places.insert(name.clone(), held.len()).is_some() {
                return Err(RouterError::DuplicateUpstream(name));
            }
            let bucket = match limits.max_per_second {
                Some(0) => return Err(RouterError::ZeroRate(format!("upstream `{name}`"))),
                Some(rate) => Some((rate, TokenBucket::new(rate, 1))),
                None => None,
            };
            held.push(Upstream { name, provider, bucket, last_error: Mutex::new(None) });
        }
        let mut resolved = Vec::with_capacity(routes.len());
        for (i, route) in routes.into_iter().enumerate() {
            let place = i + 1;
            let prefix = normalize_prefix(&route.prefix)
                .ok_or_else(|| RouterError::BadPrefix { route: place, prefix: route.prefix.clone() })?;
            if route.upstreams.is_empty() {
                return Err(RouterError::NoUpstreams { route: place });
            }
            let upstreams = route
                .upstreams
                .iter()
                .map(|name| {
                    places
                        .get(name)
                        .copied()
                        .ok_or_else(|| RouterError::UnknownUpstream { route: place, name: name.clone() })
                })
                .collect::<Result<Vec<_>, _>>()?;
            resolved.push(Route { prefix, accounts: route.accounts, senders: route.senders, upstreams });
        }
        Ok(Router {
            upstreams: held,
            routes: resolved,
            sender_limit: sender_max_per_second,
            senders: Mutex::default(),
            leases: Leases::default(),
        })
    }

    /// Holds the upstream and sender limits across every node that shares `shared`, as well as
    /// on this node; see the [module documentation](self#rate-limits).
    pub fn with_shared_limits(mut self, shared: Arc<dyn SharedLimits>) -> Self {
        self.leases.shared = Some(shared);
        self
    }

    /// The route for `message`: the longest matching prefix, then the most filters, then the
    /// first declared.
    fn choose(&self, message: &OutboundMessage) -> Option<&Route> {
        let mut best: Option<&Route> = None;
        for route in self.routes.iter().filter(|r| r.matches(message)) {
            let better =
                best.is_none_or(|b| (route.prefix.len(), route.specificity()) > (b.prefix.len(), b.specificity()));
            if better {
                best = Some(route);
            }
        }
        best
    }

    /// The bucket of a sender number, when senders are limited.
    fn sender_bucket(&self, sender: &str, now: Instant) -> Option<(u32, Arc<TokenBucket>)> {
        let rate = self.sender_limit?;
        let mut buckets = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= SENDER_BUCKETS_KEPT && !buckets.contains_key(sender) {
            buckets.retain(|_, b| !b.is_full(now));
        }
        let bucket = buckets.entry(sender.to_owned()).or_insert_with(|| Arc::new(TokenBucket::new(rate, 1)));
        Some((rate, bucket.clone()))
    }
}

/// Sleeps until `at`, if it is still to come (a sleep, even to now, takes a timer tick).
async fn wait_until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

/// The start of a number, for a message that must not show all of it.
fn number_prefix(number: &str) -> &str {
    number.get(..5).unwrap_or(number)
}

#[async_trait]
impl Provider for Router {
    fn name(&self) -> &str {
        "router"
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Submission, ProviderError> {
        let to = message.to.as_str();
        let Some(route) = self.choose(message) else {
            return Err(ProviderError::permanent_with(
                ErrorType::RoutingError,
                format!("no route for {}…", number_prefix(to)),
            ));
        };
        let now = Instant::now();
        let deadline = now + MAX_WAIT;
        if let Some((rate, bucket)) = self.sender_bucket(message.from.as_str(), now) {
            let shared = self.leases.take("sender", message.from.as_str(), rate, deadline).await;
            let turn = match shared {
                Ok(()) => bucket.reserve(Instant::now(), deadline),
                Err(()) => Err(deadline.saturating_duration_since(Instant::now())),
            };
            match turn {
                Ok(at) => wait_until(at).await,
                Err(wait) => {
                    return Err(ProviderError::retryable(
                        ErrorType::ProviderError,
                        format!(
                            "the sender {} is over its limit of {rate} messages per second (its turn is {} ms away)",
                            message.from,
                            wait.as_millis()
                        ),
                    ));
                }
            }
        }
        let mut last_retryable: Option<ProviderError> = None;
        let mut unavailable = Vec::new();
        for upstream in route.upstreams.iter().map(|&i| &self.upstreams[i]) {
            if !message.sent_parts.is_empty() && !upstream.provider.sends_parts() {
                unavailable.push(format!("{}: cannot send the rest of a message in parts", upstream.name));
                continue;
            }
            if !upstream.connected() {
                unavailable.push(format!("{}: not connected", upstream.name));
                continue;
            }
            if let Some((rate, bucket)) = &upstream.bucket {
                let shared = self.leases.take("upstream", &upstream.name, *rate, deadline).await;
                let turn = match shared {
                    Ok(()) => bucket.reserve(Instant::now(), deadline),
                    Err(()) => Err(Duration::ZERO),
                };
                match turn {
                    Ok(at) => wait_until(at).await,
                    Err(_) => {
                        tracing::debug!(upstream = %upstream.name, "upstream over its rate limit; trying the next");
                        last_retryable = Some(ProviderError::retryable(
                            ErrorType::ProviderError,
                            format!("the upstream {} is over its limit of {rate} messages per second", upstream.name),
                        ));
                        continue;
                    }
                }
            }
            let sent = upstream.provider.send(message).await;
            if let Err(e) = &sent {
                *upstream.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Timestamp::now(), e.message.clone()));
            }
            match sent {
                Ok(submission) => return Ok(submission),
                // The rest of the message goes through the upstream that took its first parts.
                Err(e) if e.partly_taken => return Err(e),
                Err(e) if e.unavailable => {
                    tracing::debug!(upstream = %upstream.name, error = %e.message, "upstream unavailable; trying the next");
                    unavailable.push(format!("{}: {}", upstream.name, e.message));
                }
                Err(e) if e.retryable => {
                    tracing::debug!(upstream = %upstream.name, error = %e.message, "upstream failed; trying the next");
                    last_retryable = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_retryable.unwrap_or_else(|| {
            ProviderError::unavailable(format!("no upstream can take the message now ({})", unavailable.join("; ")))
        }))
    }

    fn status(&self) -> Vec<UpstreamStatus> {
        self.upstreams
            .iter()
            .flat_map(|u| {
                let last = u.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone();
                u.provider.status().into_iter().map(move |mut status| {
                    if status.last_error.is_none() {
                        status.last_error.clone_from(&last);
                    }
                    status
                })
            })
            .collect()
    }

    fn sends_parts(&self) -> bool {
        self.upstreams.iter().any(|u| u.provider.sends_parts())
    }

    /// Stops every upstream, side by side.
    async fn shutdown(&self) {
        let stops: Vec<_> = self
            .upstreams
            .iter()
            .map(|u| {
                let provider = u.provider.clone();
                tokio::spawn(async move { provider.shutdown().await })
            })
            .collect();
        for stop in stops {
            let _ = stop.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use switchboard_domain::{Encoding, MessageId, MessageKind, Msisdn, SenderId};

    use super::*;

    /// A provider with one fixed answer that records when it was called.
    struct Fake {
        name: String,
        answer: Result<(), ProviderError>,
        connected: Option<bool>,
        calls: Mutex<Vec<Instant>>,
    }

    impl Fake {
        fn new(name: &str, answer: Result<(), ProviderError>) -> Arc<Self> {
            Arc::new(Self { name: name.into(), answer, connected: None, calls: Mutex::default() })
        }
        fn ok(name: &str) -> Arc<Self> {
            Self::new(name, Ok(()))
        }
        fn disconnected(name: &str) -> Arc<Self> {
            Arc::new(Self { name: name.into(), answer: Ok(()), connected: Some(false), calls: Mutex::default() })
        }
        fn calls(&self) -> usize {
            self.calls.lock().unwrap().len()
        }
        fn times(&self) -> Vec<Instant> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Provider for Fake {
        fn name(&self) -> &str {
            &self.name
        }
        async fn send(&self, _message: &OutboundMessage) -> Result<Submission, ProviderError> {
            self.calls.lock().unwrap().push(Instant::now());
            self.answer.clone().map(|()| Submission { provider_message_id: self.name.clone(), parts: Vec::new() })
        }
        fn status(&self) -> Vec<UpstreamStatus> {
            self.connected
                .map(|connected| UpstreamStatus {
                    name: self.name.clone(),
                    kind: "fake".into(),
                    connected,
                    ..Default::default()
                })
                .into_iter()
                .collect()
        }
    }

    fn message(to: &str, from: &str, account: AccountId) -> OutboundMessage {
        OutboundMessage {
            id: MessageId::new(),
            account_id: account,
            to: Msisdn::parse(to).unwrap(),
            from: SenderId::parse(from).unwrap(),
            kind: MessageKind::Sms,
            body: Some("hi".into()),
            media: Vec::new(),
            encoding: Encoding::Gsm7,
            segments: 1,
            attempt: 1,
            sent_parts: Vec::new(),
        }
    }

    fn msg(to: &str) -> OutboundMessage {
        message(to, "+18005550000", AccountId::new())
    }

    fn route(prefix: &str, upstreams: &[&str]) -> RouteConfig {
        RouteConfig {
            prefix: prefix.into(),
            accounts: Vec::new(),
            senders: Vec::new(),
            upstreams: upstreams.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ups(fakes: &[&Arc<Fake>]) -> Vec<(String, Arc<dyn Provider>, UpstreamLimits)> {
        fakes.iter().map(|f| (f.name.clone(), Arc::clone(f) as Arc<dyn Provider>, UpstreamLimits::default())).collect()
    }

    async fn sent_by(router: &Router, m: &OutboundMessage) -> String {
        router.send(m).await.unwrap().provider_message_id
    }

    /// A fake that sends part by part.
    struct Parts(Arc<Fake>);

    #[async_trait]
    impl Provider for Parts {
        fn name(&self) -> &str {
            self.0.name()
        }
        async fn send(&self, message: &OutboundMessage) -> Result<Submission, ProviderError> {
            self.0.send(message).await
        }
        fn sends_parts(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn the_rest_of_a_message_in_parts_stays_with_an_upstream_that_sends_parts() {
        let cut = ProviderError::unavailable("the bind dropped after part 1").after_parts_taken();
        let (a, b) = (Fake::new("a", Err(cut)), Fake::ok("b"));
        let upstreams: Vec<(String, Arc<dyn Provider>, UpstreamLimits)> = vec![
            ("a".into(), Arc::new(Parts(a.clone())), UpstreamLimits::default()),
            ("b".into(), b.clone(), UpstreamLimits::default()),
        ];
        let router = Router::new(upstreams, vec![route("", &["a", "b"])], None).unwrap();
        assert!(router.sends_parts());
        // A failure after parts were taken is not passed on to the next upstream.
        let e = router.send(&msg("+18005550001")).await.unwrap_err();
        assert!(e.partly_taken && e.unavailable, "{e:?}");
        assert_eq!((a.calls(), b.calls()), (1, 0));
        // A message with parts taken never goes to an upstream that sends whole messages.
        let rest = OutboundMessage { sent_parts: vec![(1, "p1".into())], ..msg("+18005550001") };
        let whole = Router::new(ups(&[&b]), vec![route("", &["b"])], None).unwrap();
        let e = whole.send(&rest).await.unwrap_err();
        assert!(e.unavailable && e.message.contains("b: cannot send the rest"), "{e:?}");
        assert_eq!(b.calls(), 0);
    }

    #[tokio::test]
    async fn an_upstreams_last_send_error_is_in_its_status() {
        let failing = ProviderError::retryable(ErrorType::ProviderError, "the SMSC's queue is full");
        let a = Arc::new(Fake { connected: Some(true), ..Arc::into_inner(Fake::new("a", Err(failing))).unwrap() });
        let b = Arc::new(Fake { connected: Some(true), ..Arc::into_inner(Fake::ok("b")).unwrap() });
        let router = Router::new(ups(&[&a, &b]), vec![route("", &["a", "b"])], None).unwrap();
        assert!(router.status().iter().all(|s| s.last_error.is_none()), "no error before a send");
        let before = switchboard_domain::Timestamp::now();
        assert_eq!(sent_by(&router, &msg("+18005550001")).await, "b");
        let status = router.status();
        let (at, message) = status[0].last_error.clone().expect("a's error is kept");
        assert_eq!(message, "the SMSC's queue is full");
        assert!(at >= before);
        assert_eq!(status[1].last_error, None, "b took the message");
    }

    #[tokio::test]
    async fn the_longest_prefix_wins() {
        let (a, b, c) = (Fake::ok("a"), Fake::ok("b"), Fake::ok("c"));
        let routes = vec![route("", &["a"]), route("+1800", &["c"]), route("+1", &["b"])];
        let router = Router::new(ups(&[&a, &b, &c]), routes, None).unwrap();
        assert_eq!(sent_by(&router, &msg("+18005551234")).await, "c");
        assert_eq!(sent_by(&router, &msg("+12125551234")).await, "b");
        assert_eq!(sent_by(&router, &msg("+447700900123")).await, "a");
        // `+` is the same as empty.
        let router = Router::new(ups(&[&a, &b]), vec![route("+", &["a"]), route("+44", &["b"])], None).unwrap();
        assert_eq!(sent_by(&router, &msg("+12125551234")).await, "a");
        assert_eq!(sent_by(&router, &msg("+447700900123")).await, "b");
    }

    #[tokio::test]
    async fn account_and_sender_filters() {
        let fakes: Vec<_> = ["any", "acct", "sender", "both", "long", "dup"].iter().map(|n| Fake::ok(n)).collect();
        let account = AccountId::new();
        let sender = "+18005559999";
        let mut by_account = route("+1", &["acct"]);
        by_account.accounts = vec![account];
        let mut by_sender = route("+1", &["sender"]);
        by_sender.senders = vec![sender.into()];
        let mut by_both = route("+1", &["both"]);
        by_both.accounts = vec![account];
        by_both.senders = vec![sender.into()];
        let mut long = route("+1212", &["long"]);
        long.accounts = vec![AccountId::new()];
        let routes = vec![route("+1", &["any"]), by_account.clone(), by_sender, by_both, long, route("+1", &["dup"])];
        let router = Router::new(ups(&fakes.iter().collect::<Vec<_>>()), routes, None).unwrap();

        let other = AccountId::new();
        assert_eq!(sent_by(&router, &message("+18005551234", sender, account)).await, "both");
        assert_eq!(sent_by(&router, &message("+18005551234", "+18005550000", account)).await, "acct");
        assert_eq!(sent_by(&router, &message("+18005551234", sender, other)).await, "sender");
        // Equal routes: the first declared wins.
        assert_eq!(sent_by(&router, &message("+18005551234", "+18005550000", other)).await, "any");
        // A longer prefix whose account filter does not match is not chosen.
        assert_eq!(sent_by(&router, &message("+12125551234", "+18005550000", other)).await, "any");

        // A longer prefix beats more filters.
        let a = Fake::ok("a");
        let b = Fake::ok("b");
        by_account.upstreams = vec!["a".into()];
        let router = Router::new(ups(&[&a, &b]), vec![by_account, route("+1800", &["b"])], None).unwrap();
        assert_eq!(sent_by(&router, &message("+18005551234", sender, account)).await, "b");
        assert_eq!(sent_by(&router, &message("+12125551234", sender, account)).await, "a");
    }

    #[tokio::test]
    async fn fails_over_from_dead_upstreams() {
        let down = Fake::new("down", Err(ProviderError::unavailable("not bound")));
        let unplugged = Fake::disconnected("unplugged");
        let flaky = Fake::new("flaky", Err(ProviderError::retryable(ErrorType::ProviderError, "busy")));
        let live = Fake::ok("live");
        let router = Router::new(
            ups(&[&down, &unplugged, &flaky, &live]),
            vec![route("", &["unplugged", "down", "flaky", "live"])],
            None,
        )
        .unwrap();
        assert_eq!(sent_by(&router, &msg("+18005551234")).await, "live");
        assert_eq!(unplugged.calls(), 0, "a disconnected upstream is not called");
        assert_eq!((down.calls(), flaky.calls(), live.calls()), (1, 1, 1));
    }

    #[tokio::test]
    async fn when_nothing_takes_it() {
        let down = Fake::new("down", Err(ProviderError::unavailable("not bound")));
        let unplugged = Fake::disconnected("unplugged");
        let flaky = Fake::new("flaky", Err(ProviderError::retryable(ErrorType::ProviderError, "busy")));
        let router = Router::new(
            ups(&[&down, &unplugged, &flaky]),
            vec![route("+1", &["down", "unplugged"]), route("+44", &["down", "flaky", "unplugged"])],
            None,
        )
        .unwrap();
        let e = router.send(&msg("+18005551234")).await.unwrap_err();
        assert!(e.unavailable && e.retryable, "{e}");
        assert!(e.message.contains("down: not bound") && e.message.contains("unplugged: not connected"), "{e}");
        let e = router.send(&msg("+447700900123")).await.unwrap_err();
        assert!(e.retryable && !e.unavailable, "{e}");
        assert_eq!(e.message, "busy");
    }

    #[tokio::test]
    async fn a_permanent_error_is_not_failed_over() {
        let refusing = Fake::new("refusing", Err(ProviderError::permanent(ErrorType::InvalidDestination)));
        let live = Fake::ok("live");
        let router = Router::new(ups(&[&refusing, &live]), vec![route("", &["refusing", "live"])], None).unwrap();
        let e = router.send(&msg("+18005551234")).await.unwrap_err();
        assert_eq!(e, ProviderError::permanent(ErrorType::InvalidDestination));
        assert_eq!(live.calls(), 0);
    }

    #[tokio::test]
    async fn no_route() {
        let a = Fake::ok("a");
        let router = Router::new(ups(&[&a]), vec![route("+44", &["a"])], None).unwrap();
        let e = router.send(&msg("+18005551234")).await.unwrap_err();
        assert_eq!((e.error_type, e.retryable), (ErrorType::RoutingError, false));
        assert_eq!(e.message, "no route for +1800…");
        assert!(!e.message.contains("5551234"));
        assert_eq!(a.calls(), 0);
    }

    #[tokio::test]
    async fn status_is_every_upstreams() {
        let (a, b, c) = (Fake::disconnected("a"), Fake::ok("b"), Fake::disconnected("c"));
        let router = Router::new(ups(&[&a, &b, &c]), vec![route("", &["a", "b", "c"])], None).unwrap();
        let names: Vec<_> = router.status().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(router.name(), "router");
    }

    #[test]
    fn bad_configurations_are_refused() {
        let a = Fake::ok("a");
        let new = |routes, sender| Router::new(ups(&[&a]), routes, sender).map(|_| ());
        assert_eq!(new(vec![], None), Err(RouterError::NoRoutes));
        assert_eq!(
            new(vec![route("", &["a"]), route("+1", &["b"])], None),
            Err(RouterError::UnknownUpstream { route: 2, name: "b".into() })
        );
        assert_eq!(new(vec![route("", &[])], None), Err(RouterError::NoUpstreams { route: 1 }));
        for prefix in ["1", "+01", "+1a", "+1234567890123456", "44"] {
            assert_eq!(
                new(vec![route(prefix, &["a"])], None),
                Err(RouterError::BadPrefix { route: 1, prefix: prefix.into() }),
                "{prefix}"
            );
        }
        assert_eq!(new(vec![route("", &["a"])], Some(0)), Err(RouterError::ZeroRate("each sender".into())));
        let twice = vec![
            ("a".to_owned(), a.clone() as Arc<dyn Provider>, UpstreamLimits::default()),
            ("a".to_owned(), a.clone() as Arc<dyn Provider>, UpstreamLimits::default()),
        ];
        assert_eq!(
            Router::new(twice, vec![route("", &["a"])], None).map(|_| ()),
            Err(RouterError::DuplicateUpstream("a".into()))
        );
        let zero = vec![("a".to_owned(), a.clone() as Arc<dyn Provider>, UpstreamLimits { max_per_second: Some(0) })];
        assert!(matches!(Router::new(zero, vec![route("", &["a"])], None), Err(RouterError::ZeroRate(_))));
        assert!(new(vec![route("+", &["a"]), route("+123456789012345", &["a"])], None).is_ok());
    }

    #[test]
    fn configuration_reads_from_json() {
        let account = AccountId::new();
        let text = format!(r#"{{"prefix": "+44", "accounts": ["{account}"], "upstreams": ["a", "b"]}}"#);
        let config: RouteConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(config.accounts, [account]);
        assert!(config.senders.is_empty());
        assert_eq!(config.upstreams, ["a", "b"]);
        let limits: UpstreamLimits = serde_json::from_str(r#"{"max_per_second": 20}"#).unwrap();
        assert_eq!(limits.max_per_second, Some(20));
        assert_eq!(serde_json::from_str::<UpstreamLimits>("{}").unwrap(), UpstreamLimits::default());
        assert!(serde_json::from_str::<RouteConfig>(r#"{"upstream": ["a"]}"#).is_err());
    }

    #[tokio::test]
    async fn a_bucket_spaces_tokens_and_refills() {
        tokio::time::pause();
        let bucket = TokenBucket::new(10, 2);
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(60);
        // Two at once (the burst), then one each 100 ms, reserved in order.
        assert_eq!(bucket.reserve(t0, far), Ok(t0));
        assert_eq!(bucket.reserve(t0, far), Ok(t0));
        let third = bucket.reserve(t0, far).unwrap();
        let fourth = bucket.reserve(t0, far).unwrap();
        assert!((third - t0).abs_diff(Duration::from_millis(100)) < Duration::from_micros(10));
        assert!((fourth - t0).abs_diff(Duration::from_millis(200)) < Duration::from_micros(10));
        // Past the deadline: refused, and nothing is taken.
        let soon = t0 + Duration::from_millis(250);
        let wait = bucket.reserve(t0, soon).unwrap_err();
        assert!(wait.abs_diff(Duration::from_millis(300)) < Duration::from_micros(10), "{wait:?}");
        assert!(!bucket.is_full(t0));
        // After a long pause it is full again, and no fuller than its capacity.
        tokio::time::advance(Duration::from_secs(10)).await;
        let t1 = Instant::now();
        assert!(bucket.is_full(t1));
        assert_eq!(bucket.reserve(t1, t1), Ok(t1));
        assert_eq!(bucket.reserve(t1, t1), Ok(t1));
        assert!(bucket.reserve(t1, t1).is_err());
    }

    /// The gaps between consecutive instants, in whole milliseconds.
    fn gaps(times: &[Instant]) -> Vec<u128> {
        times.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
    }

    #[tokio::test]
    async fn an_upstream_limit_spaces_sends() {
        tokio::time::pause();
        let a = Fake::ok("a");
        let upstreams =
            vec![("a".to_owned(), a.clone() as Arc<dyn Provider>, UpstreamLimits { max_per_second: Some(10) })];
        let router = Arc::new(Router::new(upstreams, vec![route("", &["a"])], None).unwrap());
        let sends: Vec<_> = (0..5)
            .map(|_| {
                let router = router.clone();
                tokio::spawn(async move { router.send(&msg("+18005551234")).await })
            })
            .collect();
        for s in sends {
            s.await.unwrap().unwrap();
        }
        let gaps = gaps(&a.times());
        assert_eq!(gaps.len(), 4);
        assert!(gaps.iter().all(|g| (99..=101).contains(g)), "{gaps:?}");
    }

    #[tokio::test]
    async fn a_sender_limit_spaces_that_senders_sends() {
        tokio::time::pause();
        let a = Fake::ok("a");
        let router = Arc::new(Router::new(ups(&[&a]), vec![route("", &["a"])], Some(4)).unwrap());
        let start = Instant::now();
        let done = Arc::new(AtomicUsize::new(0));
        let mut sends = Vec::new();
        for i in 0..4 {
            let (router, done) = (router.clone(), done.clone());
            // Three from one sender, one from another.
            let from = if i == 3 { "+18005550001" } else { "+18005550000" };
            sends.push(tokio::spawn(async move {
                router.send(&message("+18005551234", from, AccountId::new())).await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
                Instant::now() - start
            }));
        }
        let mut took = Vec::new();
        for s in sends {
            took.push(s.await.unwrap().as_millis());
        }
        let (mut first, other) = (took[..3].to_vec(), took[3]);
        first.sort();
        assert_eq!(other, 0, "another sender does not wait");
        assert_eq!(first[0], 0);
        assert!((249..=251).contains(&first[1]) && (499..=501).contains(&first[2]), "{first:?}");
        assert_eq!(done.load(Ordering::SeqCst), 4);
    }

    /// Shared buckets in memory, on the (paused) tokio clock; counts the takes.
    #[derive(Default)]
    struct MemoryLimits {
        buckets: Mutex<HashMap<String, (f64, Instant)>>,
        takes: AtomicUsize,
        failing: bool,
    }

    #[async_trait]
    impl SharedLimits for MemoryLimits {
        async fn take(&self, name: &str, per_second: u32, want: u32) -> Result<u32, String> {
            self.takes.fetch_add(1, Ordering::SeqCst);
            if self.failing {
                return Err("database unreachable".into());
            }
            let (rate, now) = (f64::from(per_second), Instant::now());
            let mut buckets = self.buckets.lock().unwrap();
            let (tokens, at) = buckets.entry(name.to_owned()).or_insert((rate, now));
            *tokens = (*tokens + (now - *at).as_secs_f64() * rate).min(rate);
            *at = now;
            if *tokens >= f64::from(want) {
                *tokens -= f64::from(want);
                Ok(want)
            } else {
                Ok(0)
            }
        }
    }

    /// Two nodes, each sending 20 messages at once through its own router to an upstream
    /// limited to 10 a second.
    async fn two_nodes_send(shared: Option<Arc<MemoryLimits>>) -> (Vec<Instant>, Instant) {
        let node = |fake: &Arc<Fake>| {
            let upstreams =
                vec![("a".to_owned(), fake.clone() as Arc<dyn Provider>, UpstreamLimits { max_per_second: Some(10) })];
            let router = Router::new(upstreams, vec![route("", &["a"])], None).unwrap();
            Arc::new(match &shared {
                Some(s) => router.with_shared_limits(s.clone()),
                None => router,
            })
        };
        let (one, two) = (Fake::ok("a"), Fake::ok("a"));
        let routers = [node(&one), node(&two)];
        let start = Instant::now();
        let sends: Vec<_> = (0..40)
            .map(|i| {
                let router = routers[i % 2].clone();
                tokio::spawn(async move { router.send(&msg("+18005551234")).await })
            })
            .collect();
        for s in sends {
            s.await.unwrap().unwrap();
        }
        let mut times = one.times();
        times.extend(two.times());
        times.sort();
        (times, start)
    }

    #[tokio::test]
    async fn shared_limits_hold_across_nodes() {
        tokio::time::pause();
        // Each node alone keeps to 10 a second, so together they send 20 a second.
        let (times, start) = two_nodes_send(None).await;
        assert_eq!(times.len(), 40);
        assert!((times[39] - start).as_millis() <= 1_901, "{:?}", times[39] - start);

        // Sharing the bucket, all 40 take what one node alone may: a second's worth at once,
        // then 10 a second, so the last goes 3 s after the first.
        let shared = Arc::new(MemoryLimits::default());
        let (times, start) = two_nodes_send(Some(shared.clone())).await;
        assert_eq!(times.len(), 40);
        for (i, t) in times.iter().enumerate() {
            let allowed = 10.0 + (*t - start).as_secs_f64() * 10.0 + 1e-6;
            assert!((i + 1) as f64 <= allowed, "send {} at {:?} is over the shared limit", i + 1, *t - start);
        }
        assert!((times[39] - start).as_millis() >= 2_900, "{:?}", times[39] - start);
        // One lease a send at 10 a second (a twentieth of a second's worth rounds up to one).
        assert!(shared.takes.load(Ordering::SeqCst) >= 40);
    }

    #[tokio::test]
    async fn failing_shared_limits_leave_each_node_its_own() {
        tokio::time::pause();
        let failing = Arc::new(MemoryLimits { failing: true, ..MemoryLimits::default() });
        let (times, start) = two_nodes_send(Some(failing.clone())).await;
        assert_eq!(times.len(), 40);
        assert!((times[39] - start).as_millis() <= 1_901, "{:?}", times[39] - start);
        // Each node still spaces its own sends at 10 a second.
        assert!(failing.takes.load(Ordering::SeqCst) >= 40);
    }

    #[tokio::test]
    async fn a_wait_over_five_seconds_is_not_taken() {
        tokio::time::pause();
        // One a second: the sends at 0..=5 s wait, the seventh would wait 6 s and is refused.
        let a = Fake::ok("a");
        let upstreams =
            vec![("a".to_owned(), a.clone() as Arc<dyn Provider>, UpstreamLimits { max_per_second: Some(1) })];
        let router = Arc::new(Router::new(upstreams, vec![route("", &["a"])], None).unwrap());
        let sends: Vec<_> = (0..7)
            .map(|_| {
                let router = router.clone();
                tokio::spawn(async move { router.send(&msg("+18005551234")).await })
            })
            .collect();
        let mut refused = 0;
        for s in sends {
            if let Err(e) = s.await.unwrap() {
                assert!(e.retryable && !e.unavailable, "{e}");
                assert!(e.message.contains("over its limit of 1 messages per second"), "{e}");
                refused += 1;
            }
        }
        assert_eq!((refused, a.calls()), (1, 6));

        // A second upstream takes what the first cannot.
        let (b, c) = (Fake::ok("b"), Fake::ok("c"));
        let upstreams = vec![
            ("b".to_owned(), b.clone() as Arc<dyn Provider>, UpstreamLimits { max_per_second: Some(1) }),
            ("c".to_owned(), c.clone() as Arc<dyn Provider>, UpstreamLimits::default()),
        ];
        let router = Arc::new(Router::new(upstreams, vec![route("", &["b", "c"])], None).unwrap());
        let sends: Vec<_> = (0..8)
            .map(|_| {
                let router = router.clone();
                tokio::spawn(async move { router.send(&msg("+18005551234")).await })
            })
            .collect();
        for s in sends {
            s.await.unwrap().unwrap();
        }
        assert_eq!((b.calls(), c.calls()), (6, 2));

        // The sender limit refuses the same way.
        let d = Fake::ok("d");
        let router = Arc::new(Router::new(ups(&[&d]), vec![route("", &["d"])], Some(1)).unwrap());
        let sends: Vec<_> = (0..7)
            .map(|_| {
                let router = router.clone();
                tokio::spawn(async move { router.send(&msg("+18005551234")).await })
            })
            .collect();
        let mut refused = Vec::new();
        for s in sends {
            if let Err(e) = s.await.unwrap() {
                refused.push(e);
            }
        }
        assert_eq!(refused.len(), 1);
        assert!(refused[0].retryable && refused[0].message.contains("the sender +18005550000"), "{}", refused[0]);
    }
}
