//! The delivery worker: claims due webhook deliveries, posts them, records what happened.
//!
//! Claims are leased in the database (see `Store::claim_deliveries`), so any number of nodes
//! can run a worker on one PostgreSQL without posting one delivery twice at once; a node that
//! dies mid-post leaves its claims to expire and be taken again.
//!
//! Every claimed delivery runs as a task that first takes one of its target's `per_target`
//! permits and then one of the `max_in_flight` global ones, so a slow or dead receiver only
//! ever holds its own permits. The claimer passes the store the targets that already have
//! `per_target` deliveries on this node, so it is not handed more of theirs. A delivery that
//! cannot start while its claim still has room for a whole attempt is handed back unattempted
//! (`Release`). Results are recorded in groups (one transaction each) by a separate task.
//!
//! A 2xx answer delivers an event; anything else (another status, a connection error, a
//! timeout) is retried after an exponential backoff with jitter until the event is
//! `max_age` old, and then the delivery fails. An operator's resend of a failed delivery
//! (`Store::resend_deliveries`) makes it due again with a fresh budget: its retry period and
//! backoff count from the resend.
//!
//! Every target is held to the server's URL policy (`WorkerConfig::urls`, the one that
//! checked the URL when it was given) at the moment of the request: a URL that names a refused
//! host or address is not called, and a host name is resolved by [`CheckedResolver`], which
//! hands the connector only the addresses the policy allows, so what was checked is what is
//! connected to (no window for DNS rebinding). Proxies from the environment are not used, since
//! a proxy would resolve the name itself. A refused target is a failed attempt whose error
//! says why, and the delivery fails at once: no retry would change the answer.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use switchboard_domain::url_policy::Refusal;
use switchboard_domain::{Timestamp, UrlError, UrlPolicy};
use switchboard_signing::{Sealer, Secret, signing};
use switchboard_storage::{AttemptRecord, DeliveryOutcome, DeliveryRecord, DeliveryResult, Store};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::Render;

/// The `User-Agent` of every delivery.
const USER_AGENT: &str = concat!("Switchboard-Webhooks/", env!("CARGO_PKG_VERSION"));

/// Time a claim must have left beyond the request timeout for an attempt to start: enough to
/// read the message, render it and record the result before the claim runs out.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// Most results recorded in one transaction.
const RECORD_BATCH: usize = 512;
/// How long the recorder waits for more results before a small group is stored.
const RECORD_GATHER: Duration = Duration::from_millis(2);
/// How often the recorder tries to store one group of results.
const RECORD_TRIES: u32 = 5;
/// The pause between those tries.
const RECORD_PAUSE: Duration = Duration::from_millis(500);

/// Longest error text kept for an attempt.
const MAX_ERROR_LEN: usize = 500;

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Most deliveries claimed per round.
    pub claim_batch: u32,
    /// Most deliveries in flight on this node at once.
    pub max_in_flight: usize,
    /// Most deliveries in flight to one target on this node at once.
    pub per_target: usize,
    /// How long one POST may take, connecting included.
    pub timeout: Duration,
    /// How long a claim lasts. It must exceed `timeout`: a lease shorter than twice `timeout`
    /// plus 2 s is raised to that.
    pub lease: Duration,
    /// How often to look for due work when nothing wakes the worker.
    pub poll_interval: Duration,
    /// First retry delay; doubles each attempt, with jitter, up to `max_backoff`.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How long after its event a delivery is retried before it fails.
    pub max_age: Duration,
    /// Which URLs and addresses may be called: every target is checked again, and every
    /// address its host resolves to, when it is called.
    pub urls: UrlPolicy,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            claim_batch: 256,
            max_in_flight: 256,
            per_target: 16,
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(250),
            base_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            max_age: Duration::from_secs(24 * 3600),
            urls: UrlPolicy::default(),
        }
    }
}

/// A running worker. Dropping it stops its tasks at once (deliveries being posted are
/// abandoned, and their claims run out and are taken again); [`Worker::shutdown`] stops it
/// gracefully.
pub struct Worker {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    claimer: Option<JoinHandle<()>>,
    recorder: Option<JoinHandle<()>>,
}

impl Worker {
    /// Asks the worker to look for due deliveries now (say, after new events were stored).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the worker: claims nothing more, hands back the deliveries still waiting for a
    /// slot, lets those being posted finish (each within `timeout`), records every result,
    /// and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(claimer) = self.claimer.take() {
            let _ = claimer.await;
        }
        if let Some(recorder) = self.recorder.take() {
            let _ = recorder.await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Aborting the claimer drops its set of delivery tasks, which aborts them too.
        for task in [self.claimer.take(), self.recorder.take()].into_iter().flatten() {
            task.abort();
        }
    }
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker").field("running", &self.claimer.is_some()).finish_non_exhaustive()
    }
}

/// Starts the worker's tasks on the current tokio runtime.
///
/// # Panics
///
/// Outside a tokio runtime, or if the HTTP client's TLS backend cannot be set up (as
/// `reqwest::Client::new` would).
pub fn start(store: Arc<dyn Store>, sealer: Arc<Sealer>, render: Arc<dyn Render>, config: WorkerConfig) -> Worker {
    let config = WorkerConfig {
        lease: effective_lease(&config),
        max_in_flight: config.max_in_flight.max(1),
        per_target: config.per_target.max(1),
        ..config
    };
    let client = http_client(&config, Arc::new(SystemLookup))
        .unwrap_or_else(|e| panic!("cannot set up the webhook HTTP client: {e}"));
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let recorder = tokio::spawn(recorder(store.clone(), results_rx));
    let shared = Arc::new(Shared {
        store,
        sealer,
        render,
        client,
        global: Arc::new(Semaphore::new(config.max_in_flight)),
        targets: Mutex::new(Targets::default()),
        config,
        results: results_tx,
        stop: stop_rx.clone(),
    });
    let claimer = tokio::spawn(claimer(shared, wake.clone(), stop_rx));
    Worker { wake, stop: stop_tx, claimer: Some(claimer), recorder: Some(recorder) }
}

/// The worker's HTTP client: no redirects, no proxies, and only the addresses that `config.urls`
/// allows among those `lookup` finds for a host name.
fn http_client(config: &WorkerConfig, lookup: Arc<dyn Lookup>) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve and connect to the target itself, past the resolver's check.
        .no_proxy()
        .dns_resolver(CheckedResolver { policy: Arc::new(config.urls.clone()), lookup })
        .user_agent(USER_AGENT)
        .connect_timeout(config.timeout)
        .pool_max_idle_per_host(config.per_target)
        .build()
}

/// The future of a host name's lookup.
type LookupFuture = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Finds the addresses of a host name.
trait Lookup: Send + Sync {
    /// The addresses of `host`.
    fn lookup(&self, host: String) -> LookupFuture;
}

/// The system's resolver (`getaddrinfo`, on a blocking thread).
struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> LookupFuture {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// A resolver that hands the connector only the addresses its policy allows, and fails when
/// there are none. The connector connects to exactly what it is handed, so no later lookup
/// can swap in another address. (An address written in the URL is not resolved at all: it is
/// checked with the URL, in [`checked_post`].)
struct CheckedResolver {
    policy: Arc<UrlPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (policy, lookup, host) = (self.policy.clone(), self.lookup.clone(), name.as_str().to_owned());
        Box::pin(async move {
            let found = lookup.lookup(host).await?;
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| match policy.check_address(*ip) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            match (allowed.is_empty(), refused) {
                (false, _) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                (true, Some(why)) => Err(Box::new(Refused::Resolved(why)) as Box<dyn std::error::Error + Send + Sync>),
                (true, None) => Err("the host name has no addresses".into()),
            }
        })
    }
}

/// Why a target was not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Refused {
    /// The URL itself is refused.
    #[error("refused by the URL policy: the URL {0}")]
    Url(UrlError),
    /// Its host resolves only to refused addresses (the first one's reason).
    #[error("refused by the URL policy: the host resolves only to addresses this server does not call ({0})")]
    Resolved(Refusal),
}

/// The lease the worker uses: the configured one, raised if it leaves no room for an attempt.
fn effective_lease(config: &WorkerConfig) -> Duration {
    config.lease.max(config.timeout.saturating_mul(2) + LEASE_MARGIN)
}

/// What the delivery tasks share.
struct Shared {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    render: Arc<dyn Render>,
    client: reqwest::Client,
    config: WorkerConfig,
    global: Arc<Semaphore>,
    targets: Mutex<Targets>,
    results: mpsc::UnboundedSender<DeliveryResult>,
    stop: watch::Receiver<bool>,
}

impl Shared {
    fn targets(&self) -> std::sync::MutexGuard<'_, Targets> {
        // The map stays consistent even if a holder panicked: every change is one statement.
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The deliveries this node holds, by target: claimed and not yet finished.
#[derive(Default)]
struct Targets {
    by_target: HashMap<String, TargetSlot>,
    total: usize,
}

/// One target's deliveries on this node.
struct TargetSlot {
    /// Its `per_target` permits.
    permits: Arc<Semaphore>,
    /// Deliveries to it held (waiting or being posted).
    held: usize,
}

impl Targets {
    /// Counts one more delivery to `target`; returns the target's permits.
    fn enter(&mut self, target: &str, per_target: usize) -> Arc<Semaphore> {
        self.total += 1;
        let slot = self
            .by_target
            .entry(target.to_owned())
            .or_insert_with(|| TargetSlot { permits: Arc::new(Semaphore::new(per_target)), held: 0 });
        slot.held += 1;
        slot.permits.clone()
    }

    /// Counts one delivery to `target` less, forgetting the target when it has none left.
    /// True if that made room the claimer was waiting for: the target was busy, or this node
    /// was full.
    fn leave(&mut self, target: &str, per_target: usize, max_in_flight: usize) -> bool {
        let Some(slot) = self.by_target.get_mut(target) else {
            return false;
        };
        let was_busy = slot.held >= per_target;
        let was_full = self.total >= max_in_flight;
        slot.held -= 1;
        self.total -= 1;
        if slot.held == 0 {
            self.by_target.remove(target);
        }
        was_busy || was_full
    }

    /// The targets that have `per_target` deliveries or more on this node.
    fn busy(&self, per_target: usize) -> Vec<String> {
        let mut busy: Vec<String> =
            self.by_target.iter().filter(|(_, s)| s.held >= per_target).map(|(t, _)| t.clone()).collect();
        busy.sort_unstable();
        busy
    }
}

/// How many deliveries to claim: a batch, but no more than there is room for on this node.
fn claim_limit(config: &WorkerConfig, held: usize) -> u32 {
    let room = config.max_in_flight.saturating_sub(held);
    u32::try_from(room).unwrap_or(u32::MAX).min(config.claim_batch)
}

/// A delivery counted in [`Targets`]; uncounts it when dropped (finished or aborted).
struct Held {
    shared: Arc<Shared>,
    target: String,
    counted: bool,
}

impl Held {
    fn enter(shared: &Arc<Shared>, target: &str) -> (Self, Arc<Semaphore>) {
        let permits = shared.targets().enter(target, shared.config.per_target);
        (Self { shared: shared.clone(), target: target.to_owned(), counted: true }, permits)
    }

    /// Uncounts the delivery; true if that made room the claimer was waiting for.
    fn leave(mut self) -> bool {
        self.counted = false;
        let config = &self.shared.config;
        self.shared.targets().leave(&self.target, config.per_target, config.max_in_flight)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.counted {
            let config = &self.shared.config;
            self.shared.targets().leave(&self.target, config.per_target, config.max_in_flight);
        }
    }
}

async fn claimer(shared: Arc<Shared>, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut tasks = JoinSet::new();
    'run: loop {
        while let Some(done) = tasks.try_join_next() {
            note_finished(done);
        }
        if *stop.borrow() {
            break;
        }
        // A full batch means more may be due at once.
        if claim_round(&shared, &mut tasks).await {
            continue;
        }
        let next_round = tokio::time::Instant::now() + shared.config.poll_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_round) => break,
                _ = wake.notified() => break,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break 'run;
                    }
                }
                Some(done) = tasks.join_next() => {
                    // Claim again as soon as a busy target (or a full node) has room.
                    if note_finished(done) {
                        break;
                    }
                }
            }
        }
    }
    // Stopping: deliveries waiting for a slot hand themselves back, those being posted finish.
    while let Some(done) = tasks.join_next().await {
        note_finished(done);
    }
}

/// Whether a finished delivery task made room the claimer was waiting for.
fn note_finished(done: Result<bool, tokio::task::JoinError>) -> bool {
    match done {
        Ok(freed) => freed,
        Err(e) => {
            if e.is_panic() {
                tracing::error!("a webhook delivery task panicked");
            }
            true
        }
    }
}

/// Claims one round of due deliveries and starts them; true if the round was full.
async fn claim_round(shared: &Arc<Shared>, tasks: &mut JoinSet<bool>) -> bool {
    let config = &shared.config;
    let (limit, busy) = {
        let targets = shared.targets();
        (claim_limit(config, targets.total), targets.busy(config.per_target))
    };
    if limit == 0 {
        return false;
    }
    let now = Timestamp::now();
    let lease_until = now.plus_millis(millis(config.lease));
    match shared.store.claim_deliveries(now, lease_until, limit, &busy).await {
        Ok(claimed) => {
            let full = claimed.len() >= limit as usize;
            for delivery in claimed {
                let (held, permits) = Held::enter(shared, &delivery.target);
                tasks.spawn(run(shared.clone(), held, permits, delivery));
            }
            full
        }
        Err(e) => {
            tracing::error!(error = %e, "claiming webhook deliveries failed");
            false
        }
    }
}

/// Serves one claimed delivery and hands its result to the recorder; true if finishing it
/// made room the claimer was waiting for.
async fn run(shared: Arc<Shared>, held: Held, target_permits: Arc<Semaphore>, delivery: DeliveryRecord) -> bool {
    let result = serve(&shared, target_permits, delivery).await;
    let _ = shared.results.send(result);
    held.leave()
}

async fn serve(shared: &Shared, target_permits: Arc<Semaphore>, delivery: DeliveryRecord) -> DeliveryResult {
    let timeout = shared.config.timeout;
    // Wait for a slot no longer than the claim leaves room for a whole attempt.
    let room = Duration::from_millis(
        u64::try_from(start_deadline(delivery.next_attempt_at, timeout).millis() - Timestamp::now().millis())
            .unwrap_or(0),
    );
    let permits = async {
        let target = target_permits.acquire_owned().await.ok()?;
        let global = shared.global.clone().acquire_owned().await.ok()?;
        Some::<(OwnedSemaphorePermit, OwnedSemaphorePermit)>((target, global))
    };
    let mut stop = shared.stop.clone();
    let permits = tokio::select! {
        permits = tokio::time::timeout(room, permits) => permits.ok().flatten(),
        _ = stop.wait_for(|stopping| *stopping) => None,
    };
    let now = Timestamp::now();
    let Some(_permits) = permits else {
        return release(&delivery, now);
    };
    if should_release(delivery.next_attempt_at, now, timeout) {
        return release(&delivery, now);
    }
    attempt(shared, delivery).await
}

/// The last moment an attempt may start under a claim lasting until `lease_until`.
fn start_deadline(lease_until: Timestamp, timeout: Duration) -> Timestamp {
    lease_until.plus_millis(-millis(timeout + LEASE_MARGIN))
}

/// Whether a claim lasting until `lease_until` is too short, at `now`, for an attempt that may
/// take `timeout`: then the delivery is handed back unattempted.
fn should_release(lease_until: Timestamp, now: Timestamp, timeout: Duration) -> bool {
    now > start_deadline(lease_until, timeout)
}

/// The result that hands a claimed delivery back, due now, without counting the attempt.
fn release(delivery: &DeliveryRecord, now: Timestamp) -> DeliveryResult {
    tracing::debug!(event = %delivery.event_id, target = %delivery.target, "webhook delivery released unattempted");
    DeliveryResult {
        event_id: delivery.event_id,
        target: delivery.target.clone(),
        attempt: delivery.attempts,
        record: AttemptRecord { attempt: delivery.attempts, at: now, status_code: None, error: None, duration_ms: 0 },
        outcome: DeliveryOutcome::Release,
    }
}

/// One attempt: reads the message, renders and signs the body, posts it.
async fn attempt(shared: &Shared, delivery: DeliveryRecord) -> DeliveryResult {
    let started = Timestamp::now();
    let clock = tokio::time::Instant::now();
    let answer = match shared.store.get_message(delivery.message_id).await {
        Ok(Some(message)) => match secret_for(&shared.sealer, &delivery) {
            Ok(secrets) => {
                let body = shared.render.render(&delivery, &message);
                tracing::debug!(event = %delivery.event_id, target = %delivery.target, url = %delivery.url, "posting webhook");
                checked_post(
                    &shared.client,
                    &shared.config.urls,
                    &delivery.url,
                    &delivery.event_id.to_string(),
                    &secrets,
                    body,
                    shared.config.timeout,
                )
                .await
            }
            Err(problem) => Answer::Error(problem),
        },
        Ok(None) => {
            let result = gone(&delivery, started, clock.elapsed());
            note_result(&delivery, &result, None);
            return result;
        }
        Err(e) => {
            tracing::error!(error = %e, message = %delivery.message_id, "reading a webhook's message failed");
            Answer::Error("internal error reading the message".to_owned())
        }
    };
    let elapsed = clock.elapsed();
    let now = Timestamp::now();
    // An operator's resend starts the retry period and the backoff over.
    let since = delivery.resent_at.unwrap_or_else(|| delivery.event_id.created_at());
    let attempt = delivery.attempts.saturating_sub(delivery.resent_after).max(1);
    let outcome = outcome(&shared.config, &answer, attempt, since, now);
    let result = finish(&delivery, started, elapsed, &answer, outcome);
    note_result(&delivery, &result, Some(elapsed));
    result
}

/// Metrics and a log line for one attempt's result.
fn note_result(delivery: &DeliveryRecord, result: &DeliveryResult, elapsed: Option<Duration>) {
    let outcome = match result.outcome {
        DeliveryOutcome::Delivered => "delivered",
        DeliveryOutcome::Retry { .. } => "retry",
        DeliveryOutcome::Failed => "failed",
        DeliveryOutcome::Release => return,
    };
    metrics::counter!("switchboard_webhook_deliveries_total", "outcome" => outcome).increment(1);
    if let Some(elapsed) = elapsed {
        metrics::histogram!("switchboard_webhook_seconds").record(elapsed.as_secs_f64());
    }
    tracing::debug!(
        event = %delivery.event_id,
        target = %delivery.target,
        attempt = delivery.attempts,
        status = result.record.status_code,
        error = result.record.error.as_deref(),
        outcome,
        "webhook attempt"
    );
}

/// The secrets that sign a delivery: its endpoint's, or for a message's own notification URL
/// (no endpoint) the account's notification secrets, one under each server key. The error says what is wrong, for the
/// attempt's record.
fn secret_for(sealer: &Sealer, delivery: &DeliveryRecord) -> Result<Vec<Secret>, String> {
    if delivery.endpoint_id.is_none() {
        return Ok(sealer.notification_secrets(delivery.account_id));
    }
    let sealed =
        delivery.secret.as_ref().ok_or_else(|| "internal error: the endpoint's secret is missing".to_owned())?;
    let secret =
        sealer.open(sealed).map_err(|_| "internal error: the endpoint's secret cannot be opened".to_owned())?;
    Ok(vec![secret])
}

/// What a receiver made of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// It answered with this status.
    Status(u16),
    /// It did not answer within this time.
    TimedOut(Duration),
    /// The request failed (or could not be made): why, without the URL or any header.
    Error(String),
    /// The URL policy refused the target, so no request was made: why, without the URL.
    Refused(String),
}

impl Answer {
    /// Whether this delivers the event: a 2xx status.
    fn delivered(&self) -> bool {
        matches!(self, Answer::Status(s) if (200..300).contains(s))
    }

    /// The status, if the receiver answered.
    fn status_code(&self) -> Option<u16> {
        match self {
            Answer::Status(s) => Some(*s),
            _ => None,
        }
    }

    /// What went wrong, if anything.
    fn error(&self) -> Option<String> {
        match self {
            _ if self.delivered() => None,
            Answer::Status(s) => Some(format!("HTTP {s}")),
            Answer::TimedOut(d) => Some(format!("timed out after {}", duration_text(*d))),
            Answer::Error(e) | Answer::Refused(e) => Some(truncate(e, MAX_ERROR_LEN)),
        }
    }
}

/// `10s`, or `1500ms` for a time that is not whole seconds.
fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Posts one signed body if `policy` allows the URL (the client's resolver checks the
/// addresses of a host name); the response's body is not read.
async fn checked_post(
    client: &reqwest::Client,
    policy: &UrlPolicy,
    url: &str,
    id: &str,
    secrets: &[Secret],
    body: Vec<u8>,
    timeout: Duration,
) -> Answer {
    match policy.check_url(url) {
        Ok(_) => post(client, url, id, secrets, body, timeout).await,
        Err(e) => Answer::Refused(Refused::Url(e).to_string()),
    }
}

/// Posts one signed body; the response's body is not read.
async fn post(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    secrets: &[Secret],
    body: Vec<u8>,
    timeout: Duration,
) -> Answer {
    let timestamp = Timestamp::now().millis().div_euclid(1000);
    let mut request = client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json");
    for (name, value) in signing::headers_all(secrets, id, timestamp, &body) {
        request = request.header(name, value);
    }
    match tokio::time::timeout(timeout, request.body(body).send()).await {
        Err(_) => Answer::TimedOut(timeout),
        Ok(Ok(response)) => Answer::Status(response.status().as_u16()),
        Ok(Err(e)) => match refusal(&e) {
            Some(refused) => Answer::Refused(refused.to_string()),
            None if e.is_timeout() => Answer::TimedOut(timeout),
            None => Answer::Error(error_text(e)),
        },
    }
}

/// The resolver's refusal, if that is what failed the request.
fn refusal(e: &reqwest::Error) -> Option<Refused> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(*refused);
        }
        source = cause.source();
    }
    None
}

/// A request error's text and causes, without the URL (which may hold a token).
fn error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    truncate(&text, MAX_ERROR_LEN)
}

/// What comes of an attempt that got `answer` at `now`: a refused target fails at once, since
/// it stays refused however often it is tried; anything else is as [`decide`] says.
fn outcome(
    config: &WorkerConfig,
    answer: &Answer,
    attempt: u32,
    created: Timestamp,
    now: Timestamp,
) -> DeliveryOutcome {
    match answer {
        Answer::Refused(_) => DeliveryOutcome::Failed,
        _ => decide(config, answer.delivered(), attempt, created, now),
    }
}

/// What comes of an attempt made at `now`: delivered, or retried after the backoff unless
/// that would pass the event's `max_age`.
fn decide(config: &WorkerConfig, delivered: bool, attempt: u32, created: Timestamp, now: Timestamp) -> DeliveryOutcome {
    if delivered {
        return DeliveryOutcome::Delivered;
    }
    retry_or_give_up(config, created, now, backoff(config, attempt))
}

/// A retry after `delay`, or `Failed` if that would come after the event is `max_age` old.
fn retry_or_give_up(config: &WorkerConfig, created: Timestamp, now: Timestamp, delay: Duration) -> DeliveryOutcome {
    let next_attempt_at = now.plus_millis(millis(delay));
    if next_attempt_at > created.plus_millis(millis(config.max_age)) {
        DeliveryOutcome::Failed
    } else {
        DeliveryOutcome::Retry { next_attempt_at }
    }
}

/// The result of an attempt that was made.
fn finish(
    delivery: &DeliveryRecord,
    started: Timestamp,
    elapsed: Duration,
    answer: &Answer,
    outcome: DeliveryOutcome,
) -> DeliveryResult {
    DeliveryResult {
        event_id: delivery.event_id,
        target: delivery.target.clone(),
        attempt: delivery.attempts,
        record: AttemptRecord {
            attempt: delivery.attempts,
            at: started,
            status_code: answer.status_code(),
            error: answer.error(),
            duration_ms: duration_ms(elapsed),
        },
        outcome,
    }
}

/// The result of a delivery whose message no longer exists: it fails.
fn gone(delivery: &DeliveryRecord, started: Timestamp, elapsed: Duration) -> DeliveryResult {
    let answer = Answer::Error("the message no longer exists".to_owned());
    finish(delivery, started, elapsed, &answer, DeliveryOutcome::Failed)
}

/// Exponential backoff with full jitter in the upper half: `base * 2^(attempt-1)`, capped at
/// `max_backoff`, then a random time between half that and all of it.
pub fn backoff(config: &WorkerConfig, attempt: u32) -> Duration {
    let exp = config.base_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(config.max_backoff);
    let half = capped / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter_ms)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

async fn recorder(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<DeliveryResult>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    loop {
        if rx.recv_many(&mut batch, RECORD_BATCH).await == 0 {
            return;
        }
        // Let a few more results arrive so that one commit records many.
        if batch.len() < RECORD_BATCH / 4 {
            tokio::time::sleep(RECORD_GATHER).await;
            while batch.len() < RECORD_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
        }
        let mut tries = 0u32;
        loop {
            tries += 1;
            match store.record_deliveries(&batch).await {
                Ok(()) => break,
                Err(e) if tries < RECORD_TRIES => {
                    // Keep the results and try again: the claims stay leased meanwhile.
                    tracing::error!(error = %e, count = batch.len(), "recording webhook deliveries failed; retrying");
                    tokio::time::sleep(RECORD_PAUSE).await;
                }
                Err(e) => {
                    // The claims' leases run out and the deliveries are attempted again.
                    tracing::error!(error = %e, count = batch.len(), "recording webhook deliveries failed; leaving them to their leases");
                    break;
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use switchboard_domain::{AccountId, EventId, EventType, MessageId, MessageStatus};
    use switchboard_storage::DeliveryState;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn delivery(endpoint: bool) -> DeliveryRecord {
        let now = Timestamp::now();
        DeliveryRecord {
            event_id: EventId::new(),
            target: "https://example.test/hook".to_owned(),
            account_id: AccountId::new(),
            endpoint_id: endpoint.then(uuid::Uuid::now_v7),
            url: "https://example.test/hook".to_owned(),
            secret: None,
            event_type: EventType::Sent,
            message_id: MessageId::new(),
            status: MessageStatus::Sent,
            error_type: None,
            occurred_at: now,
            state: DeliveryState::Pending,
            attempts: 3,
            next_attempt_at: now.plus_millis(60_000),
            last_status: None,
            last_error: None,
            updated_at: now,
            balance_low: None,
            resent_at: None,
            resent_after: 0,
        }
    }

    #[test]
    fn answers() {
        for s in [200, 201, 204, 299] {
            let a = Answer::Status(s);
            assert!(a.delivered(), "{s}");
            assert_eq!((a.status_code(), a.error()), (Some(s), None));
        }
        for s in [100, 199, 300, 302, 400, 404, 410, 429, 500, 503] {
            let a = Answer::Status(s);
            assert!(!a.delivered(), "{s}");
            assert_eq!((a.status_code(), a.error()), (Some(s), Some(format!("HTTP {s}"))));
        }
        let t = Answer::TimedOut(Duration::from_secs(10));
        assert!(!t.delivered());
        assert_eq!((t.status_code(), t.error().as_deref()), (None, Some("timed out after 10s")));
        assert_eq!(Answer::TimedOut(Duration::from_millis(1500)).error().as_deref(), Some("timed out after 1500ms"));
        let e = Answer::Error("connection refused".into());
        assert!(!e.delivered());
        assert_eq!((e.status_code(), e.error().as_deref()), (None, Some("connection refused")));
        assert_eq!(Answer::Error("é".repeat(400)).error().unwrap().len(), MAX_ERROR_LEN);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = WorkerConfig::default();
        for _ in 0..50 {
            let b1 = backoff(&c, 1);
            assert!(b1 >= Duration::from_millis(2500) && b1 <= Duration::from_secs(5), "{b1:?}");
            let b3 = backoff(&c, 3);
            assert!(b3 >= Duration::from_secs(10) && b3 <= Duration::from_secs(20), "{b3:?}");
            let b40 = backoff(&c, 40);
            assert!(b40 >= Duration::from_secs(1800) && b40 <= Duration::from_secs(3600), "{b40:?}");
            let b0 = backoff(&c, 0);
            assert!(b0 <= Duration::from_secs(5), "{b0:?}");
        }
    }

    #[test]
    fn outcomes() {
        let c = WorkerConfig::default();
        let created = Timestamp::from_millis(1_700_000_000_000);
        let day = 24 * 3600 * 1000;
        // A 2xx delivers, however old the event.
        assert_eq!(decide(&c, true, 1, created, created.plus_millis(2 * day)), DeliveryOutcome::Delivered);
        // A failure is retried after the backoff, within the bounds of its attempt.
        let now = created.plus_millis(1000);
        match decide(&c, false, 1, created, now) {
            DeliveryOutcome::Retry { next_attempt_at } => {
                let wait = next_attempt_at.millis() - now.millis();
                assert!((2500..=5000).contains(&wait), "{wait}");
            }
            other => panic!("{other:?}"),
        }
        // A failure late in the event's life gives up.
        assert_eq!(decide(&c, false, 30, created, created.plus_millis(day - 1000)), DeliveryOutcome::Failed);
        assert_eq!(decide(&c, false, 1, created, created.plus_millis(day)), DeliveryOutcome::Failed);
    }

    #[test]
    fn refused_targets_fail_at_once() {
        let c = WorkerConfig::default();
        let created = Timestamp::from_millis(1_700_000_000_000);
        let refused = Answer::Refused("refused by the URL policy".into());
        assert!(!refused.delivered());
        assert_eq!((refused.status_code(), refused.error().as_deref()), (None, Some("refused by the URL policy")));
        assert_eq!(outcome(&c, &refused, 1, created, created.plus_millis(1000)), DeliveryOutcome::Failed);
        let error = Answer::Error("connection refused".into());
        assert!(matches!(outcome(&c, &error, 1, created, created.plus_millis(1000)), DeliveryOutcome::Retry { .. }));
        assert_eq!(outcome(&c, &Answer::Status(204), 1, created, created), DeliveryOutcome::Delivered);
    }

    #[test]
    fn gives_up_at_max_age() {
        let c = WorkerConfig { max_age: Duration::from_secs(100), ..Default::default() };
        let created = Timestamp::from_millis(1_000_000);
        let delay = Duration::from_secs(10);
        // Due exactly at the end of the period: still retried.
        assert_eq!(
            retry_or_give_up(&c, created, created.plus_millis(90_000), delay),
            DeliveryOutcome::Retry { next_attempt_at: created.plus_millis(100_000) }
        );
        assert_eq!(retry_or_give_up(&c, created, created.plus_millis(90_001), delay), DeliveryOutcome::Failed);
        assert_eq!(
            retry_or_give_up(&c, created, created, delay),
            DeliveryOutcome::Retry { next_attempt_at: created.plus_millis(10_000) }
        );
    }

    #[test]
    fn short_claims_are_released() {
        let timeout = Duration::from_secs(10);
        let now = Timestamp::from_millis(1_000_000);
        assert!(!should_release(now.plus_millis(60_000), now, timeout));
        assert!(!should_release(now.plus_millis(12_000), now, timeout));
        assert!(should_release(now.plus_millis(11_999), now, timeout));
        assert!(should_release(now.plus_millis(5_000), now, timeout));
        assert!(should_release(now, now, timeout));
        assert!(should_release(now.plus_millis(-1), now, timeout));

        let d = delivery(true);
        let r = release(&d, now);
        assert_eq!(r.outcome, DeliveryOutcome::Release);
        assert_eq!((r.event_id, r.target.as_str(), r.attempt), (d.event_id, d.target.as_str(), 3));
    }

    #[test]
    fn lease_leaves_room_for_an_attempt() {
        assert_eq!(effective_lease(&WorkerConfig::default()), Duration::from_secs(60));
        let short = WorkerConfig { lease: Duration::from_secs(5), ..Default::default() };
        let lease = effective_lease(&short);
        assert_eq!(lease, Duration::from_secs(22));
        // A fresh claim is never released at once.
        let now = Timestamp::from_millis(1_000_000);
        assert!(!should_release(now.plus_millis(millis(lease)), now.plus_millis(9_000), short.timeout));
    }

    #[test]
    fn targets_track_busy_and_room() {
        let mut t = Targets::default();
        let a1 = t.enter("a", 2);
        let a2 = t.enter("a", 2);
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_eq!(a1.available_permits(), 2);
        t.enter("b", 2);
        assert_eq!(t.total, 3);
        assert_eq!(t.busy(2), vec!["a".to_owned()]);
        assert_eq!(t.busy(1), vec!["a".to_owned(), "b".to_owned()]);
        // More than per_target may be held (one claim may bring several); busy until below.
        t.enter("a", 2);
        assert!(t.leave("a", 2, 100));
        assert!(t.leave("a", 2, 100), "a was at its limit");
        assert!(t.busy(2).is_empty());
        assert!(!t.leave("a", 2, 100), "a was not busy and the node not full");
        assert!(!t.by_target.contains_key("a"), "idle targets are forgotten");
        assert!(t.leave("b", 2, 1), "the node was full");
        assert_eq!(t.total, 0);
        assert!(t.by_target.is_empty());
        assert!(!t.leave("c", 2, 1), "unknown targets are ignored");
        assert_eq!(t.total, 0);
    }

    #[test]
    fn claims_fit_the_room() {
        let c = WorkerConfig { claim_batch: 100, max_in_flight: 256, ..Default::default() };
        assert_eq!(claim_limit(&c, 0), 100);
        assert_eq!(claim_limit(&c, 200), 56);
        assert_eq!(claim_limit(&c, 256), 0);
        assert_eq!(claim_limit(&c, 300), 0);
    }

    #[test]
    fn secrets_for_deliveries() {
        let sealer = Sealer::new(b"server");
        let own = delivery(false);
        assert_eq!(secret_for(&sealer, &own).unwrap(), vec![sealer.notification_secret(own.account_id)]);
        let ring = Sealer::with_keys(&[(1, b"new".as_slice()), (0, b"server".as_slice())]);
        assert_eq!(secret_for(&ring, &own).unwrap(), ring.notification_secrets(own.account_id));
        assert_eq!(secret_for(&ring, &own).unwrap()[1], sealer.notification_secret(own.account_id));

        let secret = Secret::generate();
        let mut endpoint = delivery(true);
        endpoint.secret = Some(sealer.seal(&secret));
        assert_eq!(secret_for(&sealer, &endpoint).unwrap(), vec![secret.clone()]);
        let err = secret_for(&Sealer::new(b"other"), &endpoint).unwrap_err();
        assert!(err.contains("cannot be opened"), "{err}");
        endpoint.secret = None;
        assert!(secret_for(&sealer, &endpoint).unwrap_err().contains("missing"));
    }

    #[test]
    fn results_record_the_attempt() {
        let d = delivery(true);
        let at = Timestamp::from_millis(1_000_000);
        let ok = finish(&d, at, Duration::from_millis(42), &Answer::Status(204), DeliveryOutcome::Delivered);
        assert_eq!(ok.attempt, 3);
        assert_eq!(ok.record, AttemptRecord { attempt: 3, at, status_code: Some(204), error: None, duration_ms: 42 });
        let next = at.plus_millis(5000);
        let bad = finish(
            &d,
            at,
            Duration::from_secs(10),
            &Answer::TimedOut(Duration::from_secs(10)),
            DeliveryOutcome::Retry { next_attempt_at: next },
        );
        assert_eq!(bad.outcome, DeliveryOutcome::Retry { next_attempt_at: next });
        assert_eq!(bad.record.status_code, None);
        assert_eq!(bad.record.error.as_deref(), Some("timed out after 10s"));
        assert_eq!(bad.record.duration_ms, 10_000);
        let gone = gone(&d, at, Duration::ZERO);
        assert_eq!(gone.outcome, DeliveryOutcome::Failed);
        assert_eq!(gone.record.error.as_deref(), Some("the message no longer exists"));
    }

    /// Knows the addresses of a few names, and no others.
    struct FixedLookup(Vec<(&'static str, Vec<IpAddr>)>);

    impl Lookup for FixedLookup {
        fn lookup(&self, host: String) -> LookupFuture {
            let found = self.0.iter().find(|(name, _)| *name == host).map(|(_, addrs)| addrs.clone());
            Box::pin(
                async move { found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host")) },
            )
        }
    }

    /// The worker's client with `allow` as its allowed ranges and `names` as its DNS.
    fn checked_client(allow: &[&str], names: Vec<(&'static str, Vec<IpAddr>)>) -> (reqwest::Client, UrlPolicy) {
        let urls = UrlPolicy::parse(allow).unwrap();
        let config = WorkerConfig { urls: urls.clone(), ..Default::default() };
        (http_client(&config, Arc::new(FixedLookup(names))).unwrap(), urls)
    }

    /// A listener that nothing may connect to; see [`assert_untouched`].
    fn untouched(addr: &str) -> std::net::TcpListener {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        listener
    }

    /// Nothing connected to `listener`: a connection would be waiting in its backlog.
    fn assert_untouched(listener: &std::net::TcpListener) {
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the receiver was connected to: {other:?}"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn refused_targets_are_never_connected_to() {
        let receiver = untouched("127.0.0.1:0");
        let port = receiver.local_addr().unwrap().port();
        let (client, urls) = checked_client(
            &[],
            vec![
                // Public-looking names whose DNS answers with the receiver's address.
                ("hooks.example.com", vec![ip("127.0.0.1")]),
                ("rebind.example.com", vec![ip("10.0.0.1"), ip("127.0.0.1"), ip("::1")]),
                ("metadata.example.com", vec![ip("169.254.169.254")]),
                ("mapped.example.com", vec![ip("::ffff:127.0.0.1")]),
            ],
        );
        let cases = [
            (format!("http://127.0.0.1:{port}/hook?token=s3cr3t"), "loopback"),
            (format!("http://[::ffff:127.0.0.1]:{port}/hook?token=s3cr3t"), "loopback"),
            (format!("http://0x7f000001:{port}/hook?token=s3cr3t"), "loopback"),
            (format!("http://2130706433:{port}/hook?token=s3cr3t"), "loopback"),
            (format!("http://[::1]:{port}/hook?token=s3cr3t"), "loopback"),
            (format!("http://10.0.0.1:{port}/hook?token=s3cr3t"), "private"),
            (format!("http://169.254.169.254:{port}/hook?token=s3cr3t"), "link-local"),
            (format!("http://localhost:{port}/hook?token=s3cr3t"), "local host"),
            (format!("http://hooks.example.com:{port}/hook?token=s3cr3t"), "loopback"),
            (format!("http://rebind.example.com:{port}/hook?token=s3cr3t"), "private"),
            (format!("http://metadata.example.com:{port}/hook?token=s3cr3t"), "link-local"),
            (format!("http://mapped.example.com:{port}/hook?token=s3cr3t"), "loopback"),
        ];
        for (url, why) in &cases {
            let secrets = [Secret::generate()];
            let answer =
                checked_post(&client, &urls, url, "evt_abc", &secrets, b"{}".to_vec(), Duration::from_secs(2)).await;
            let Answer::Refused(text) = &answer else { panic!("{url}: {answer:?}") };
            assert!(text.starts_with("refused by the URL policy") && text.contains(why), "{url}: {text}");
            for leak in ["s3cr3t", "/hook", "example.com", &port.to_string()] {
                assert!(!text.contains(leak), "{url}: {text}");
            }
            assert_eq!(answer.status_code(), None);
        }
        assert_untouched(&receiver);
    }

    #[tokio::test]
    async fn only_allowed_addresses_of_a_name_are_connected_to() {
        // The same port on two loopback addresses; the policy allows only the first.
        let (allowed_url, server) = serve_once("HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
        let port = allowed_url.rsplit_once(':').unwrap().1.split('/').next().unwrap().to_owned();
        let other = untouched(&format!("127.0.0.2:{port}"));
        let (client, urls) = checked_client(
            &["127.0.0.1/32"],
            vec![
                ("mixed.example.com", vec![ip("127.0.0.2"), ip("127.0.0.1")]),
                ("only.example.com", vec![ip("127.0.0.2")]),
            ],
        );
        let secrets = [Secret::generate()];
        let url = format!("http://mixed.example.com:{port}/hook");
        let answer =
            checked_post(&client, &urls, &url, "evt_abc", &secrets, b"{}".to_vec(), Duration::from_secs(5)).await;
        assert_eq!(answer, Answer::Status(204));
        server.await.unwrap();
        let url = format!("http://only.example.com:{port}/hook");
        let answer =
            checked_post(&client, &urls, &url, "evt_abc", &secrets, b"{}".to_vec(), Duration::from_secs(5)).await;
        assert_eq!(answer, Answer::Refused(Refused::Resolved(Refusal::Loopback).to_string()));
        assert_untouched(&other);
        // An allowed address written in the URL is called.
        let (url, server) = serve_once("HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
        let answer =
            checked_post(&client, &urls, &url, "evt_abc", &secrets, b"{}".to_vec(), Duration::from_secs(5)).await;
        assert_eq!(answer, Answer::Status(204));
        server.await.unwrap();
        // A name that does not resolve is an ordinary error, tried again later.
        let url = format!("http://unknown.example.com:{port}/hook");
        let answer =
            checked_post(&client, &urls, &url, "evt_abc", &secrets, b"{}".to_vec(), Duration::from_secs(5)).await;
        assert!(matches!(&answer, Answer::Error(e) if !e.contains("unknown.example.com")), "{answer:?}");
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).user_agent(USER_AGENT).build().unwrap()
    }

    /// Reads one HTTP/1.1 request (head and `Content-Length` body), lowercasing the head.
    async fn read_request(socket: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-request");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        (head, buf[head_end..head_end + length].to_vec())
    }

    /// Serves one connection with a canned response; returns the request it read.
    async fn serve_once(response: &'static str) -> (String, tokio::task::JoinHandle<(String, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook?token=s3cr3t", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let request = read_request(&mut socket).await;
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            request
        });
        (url, server)
    }

    #[tokio::test]
    async fn posts_a_signed_request() {
        let (url, server) = serve_once("HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
        let secret = Secret::generate();
        let before = Timestamp::now().millis() / 1000;
        let answer = post(
            &client(),
            &url,
            "evt_abc",
            std::slice::from_ref(&secret),
            b"{\"a\":1}".to_vec(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(answer, Answer::Status(204));
        let (head, body) = server.await.unwrap();
        assert_eq!(body, b"{\"a\":1}");
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
                .unwrap_or_else(|| panic!("no {name} in {head}"))
        };
        assert!(head.starts_with("POST /hook?token=s3cr3t HTTP/1.1\r\n"), "{head}");
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("user-agent"), format!("Switchboard-Webhooks/{}", env!("CARGO_PKG_VERSION")));
        assert_eq!(header("webhook-id"), "evt_abc");
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
        assert!(timestamp >= before && timestamp <= before + 5);
        assert!(signing::verify(&secret, "evt_abc", timestamp, &body, &header("webhook-signature"), timestamp, 300));
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (url, server) =
            serve_once("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\n\r\n")
                .await;
        let answer =
            post(&client(), &url, "evt_abc", &[Secret::generate()], b"{}".to_vec(), Duration::from_secs(5)).await;
        assert_eq!(answer, Answer::Status(302));
        assert_eq!(answer.error().as_deref(), Some("HTTP 302"));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn server_errors_are_failures() {
        let (url, server) = serve_once("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\noops!").await;
        let answer =
            post(&client(), &url, "evt_abc", &[Secret::generate()], b"{}".to_vec(), Duration::from_secs(5)).await;
        assert_eq!(answer, Answer::Status(500));
        assert!(!answer.delivered());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn silent_receivers_time_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = read_request(&mut socket).await;
            // Never answers.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let timeout = Duration::from_millis(300);
        let answer = post(&client(), &url, "evt_abc", &[Secret::generate()], b"{}".to_vec(), timeout).await;
        assert_eq!(answer, Answer::TimedOut(timeout));
        assert_eq!(answer.error().as_deref(), Some("timed out after 300ms"));
        server.abort();
    }

    #[tokio::test]
    async fn connection_errors_do_not_show_the_url() {
        // A port nothing listens on.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://user:pa55word@{addr}/hook?token=s3cr3t");
        let answer =
            post(&client(), &url, "evt_abc", &[Secret::generate()], b"{}".to_vec(), Duration::from_secs(5)).await;
        let Answer::Error(text) = &answer else { panic!("{answer:?}") };
        assert!(text.to_ascii_lowercase().contains("connect"), "{text}");
        for secret in ["s3cr3t", "pa55word", "/hook", "webhook-signature", "v1,"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(answer.status_code(), None);

        let answer =
            post(&client(), "not a url", "evt_abc", &[Secret::generate()], b"{}".to_vec(), Duration::from_secs(5))
                .await;
        assert!(matches!(answer, Answer::Error(_)), "{answer:?}");
    }
}
