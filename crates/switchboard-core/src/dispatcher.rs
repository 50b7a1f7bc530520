//! The dispatcher: claims queued messages, hands them to the provider, records what happened.
//!
//! Claims are leased in the database, so any number of nodes can run a dispatcher on one
//! PostgreSQL without sending a message twice; a node that dies mid-send leaves its claims to
//! expire and be taken again. Sends run concurrently up to `max_in_flight`; their results are
//! recorded in groups (one transaction each) by a separate task, and waiting requests are told.
//!
//! A message that no upstream could take (`unavailable`) waits for its retry; when an upstream
//! says it can take messages again (an SMPP bind is back), the messages this node saw wait that
//! way are made due at once instead of each waiting out its own backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::RngExt;
use switchboard_domain::{MessageId, Timestamp};
use switchboard_provider::{OutboundMessage, Provider, ProviderError};
use switchboard_records::{DispatchOutcome, DispatchResult, MessageRecord};
use switchboard_storage::Store;
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::waiters::{DispatchNews, Waiters};

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Messages claimed per round.
    pub claim_batch: u32,
    /// Sends in flight at once.
    pub max_in_flight: usize,
    /// How long a claim lasts; must exceed `send_timeout`.
    pub lease: Duration,
    /// How long one provider call may take.
    pub send_timeout: Duration,
    /// How often to look for due work when nothing wakes the dispatcher.
    pub poll_interval: Duration,
    /// Attempts before a retryable failure becomes final.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter, up to `max_backoff`.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How long a message without a validity of its own waits for an unavailable upstream
    /// before it fails.
    pub unavailable_limit: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            claim_batch: 256,
            max_in_flight: 512,
            lease: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(250),
            max_attempts: 5,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            unavailable_limit: Duration::from_secs(24 * 3600),
        }
    }
}

/// Most messages remembered as waiting for an upstream; past it, the others wait out their
/// own backoff.
const MAX_WAITING: usize = 100_000;

/// The messages whose last attempt found no upstream able to take them: by id, the attempt and
/// the retry time recorded, so that they are made due again only if nothing happened to them
/// since.
#[derive(Debug, Default)]
struct Waiting(Mutex<HashMap<MessageId, (u32, Timestamp)>>);

impl Waiting {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<MessageId, (u32, Timestamp)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops a running dispatcher cleanly (see [`Stopper::stop`]).
#[derive(Debug, Clone)]
pub struct Stopper {
    stop: Arc<Notify>,
    /// Tasks of the dispatcher still running: the claimer and the recorder.
    alive: Arc<std::sync::atomic::AtomicUsize>,
    permits: Arc<Semaphore>,
    in_flight_max: u32,
    unrecorded: Arc<std::sync::atomic::AtomicUsize>,
    send_timeout: Duration,
}

/// Counts a dispatcher task as running while it lives; ending, even by a panic, uncounts it.
struct Alive(Arc<std::sync::atomic::AtomicUsize>);

impl Alive {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Stopper {
    /// Whether the dispatcher's tasks (the claimer and the recorder) are both running.
    pub fn running(&self) -> bool {
        self.alive.load(std::sync::atomic::Ordering::Acquire) == 2
    }
    /// Stops claiming, waits for the attempts in flight to end (at most the send timeout and a
    /// second) and for their results to be recorded (at most 10 s more), so that no message an
    /// upstream took is left to its lease and sent again after the next start.
    pub async fn stop(&self) {
        self.stop.notify_one();
        let all = tokio::time::timeout(
            self.send_timeout + Duration::from_secs(1),
            self.permits.acquire_many(self.in_flight_max),
        )
        .await;
        if all.is_err() {
            tracing::warn!("attempts still in flight at the stop; their leases will run out");
        }
        // Nothing claimed before the stop starts after it: it stays leased, and is sent after
        // the lease, by the next start or another node.
        self.permits.close();
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.unrecorded.load(std::sync::atomic::Ordering::Acquire) > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Starts the dispatcher tasks. Returns where to hand messages that this node admitted
/// already claimed for their first attempt, and what stops it. `ready` is notified when an
/// upstream can take messages again.
pub fn start(
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    config: DispatcherConfig,
    waiters: Arc<Waiters>,
    ready: Arc<Notify>,
) -> (mpsc::UnboundedSender<MessageRecord>, Stopper) {
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let (fresh_tx, fresh_rx) = mpsc::unbounded_channel();
    let waiting = Arc::new(Waiting::default());
    let unrecorded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let alive = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let recording = Alive::new(&alive);
    let recorder = recorder(store.clone(), results_rx, waiters, waiting.clone(), unrecorded.clone());
    tokio::spawn(async move {
        let _alive = recording;
        recorder.await
    });
    let in_flight_max = config.max_in_flight.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(in_flight_max));
    let stopper = Stopper {
        stop: Arc::new(Notify::new()),
        alive: alive.clone(),
        permits: permits.clone(),
        in_flight_max: in_flight_max as u32,
        unrecorded: unrecorded.clone(),
        send_timeout: config.send_timeout,
    };
    let sender =
        Sender { permits, store: store.clone(), provider, config: Arc::new(config), results: results_tx, unrecorded };
    let claiming = Alive::new(&alive);
    let claimer = claimer(store, sender, fresh_rx, ready, waiting, stopper.stop.clone());
    tokio::spawn(async move {
        let _alive = claiming;
        claimer.await
    });
    (fresh_tx, stopper)
}

/// Makes the messages remembered as waiting for an upstream due now.
async fn offer_again(store: &dyn Store, waiting: &Waiting) {
    let entries: Vec<(MessageId, u32, Timestamp)> =
        waiting.map().drain().map(|(id, (attempt, due))| (id, attempt, due)).collect();
    if entries.is_empty() {
        return;
    }
    match store.offer_again(&entries, Timestamp::now()).await {
        Ok(n) => tracing::info!(waiting = entries.len(), offered = n, "an upstream is back; offering its backlog"),
        Err(e) => tracing::error!(error = %e, "offering the backlog again failed; it waits for its retries"),
    }
}

/// Runs provider calls, at most `max_in_flight` at once.
struct Sender {
    permits: Arc<Semaphore>,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    config: Arc<DispatcherConfig>,
    results: mpsc::UnboundedSender<(DispatchResult, bool)>,
    /// Results sent to the recorder and not yet recorded (or given up on).
    unrecorded: Arc<std::sync::atomic::AtomicUsize>,
}

impl Sender {
    /// Starts one attempt once there is room; false when the dispatcher is shutting down.
    async fn dispatch(&self, message: MessageRecord) -> bool {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        // A claim that could run out mid-call is left to be claimed again, so that no two
        // nodes ever send one message at once.
        let left = message.next_attempt_at.millis() - Timestamp::now().millis();
        if left <= self.config.send_timeout.as_millis() as i64 {
            return true;
        }
        let (provider, config, results) = (self.provider.clone(), self.config.clone(), self.results.clone());
        let (store, unrecorded) = (self.store.clone(), self.unrecorded.clone());
        // Every line logged while the message is sent, the provider's included, names it and
        // the request that created it.
        let span = tracing::info_span!("message", id = %message.id, request = tracing::field::Empty);
        if let Some(request) = &message.request_id {
            span.record("request", request.as_str());
        }
        let work = async move {
            let result = attempt(provider.as_ref(), store.as_ref(), &config, message).await;
            unrecorded.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            if results.send(result).is_err() {
                unrecorded.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
            drop(permit);
        };
        tokio::spawn(tracing::Instrument::instrument(work, span));
        true
    }
}

async fn claimer(
    store: Arc<dyn Store>,
    sender: Sender,
    mut fresh: mpsc::UnboundedReceiver<MessageRecord>,
    ready: Arc<Notify>,
    waiting: Arc<Waiting>,
    stop: Arc<Notify>,
) {
    let config = sender.config.clone();
    let mut fresh_open = true;
    let mut next_claim = tokio::time::Instant::now();
    loop {
        // Messages this node admitted come first: they are leased to it already.
        while let Ok(m) = fresh.try_recv() {
            if !sender.dispatch(m).await {
                return;
            }
        }
        if tokio::time::Instant::now() >= next_claim {
            // Claim no more than there is room for, so nothing claimed waits for a slot.
            let room = sender.permits.available_permits() as u32;
            let limit = room.min(config.claim_batch);
            let mut full = false;
            if limit > 0 {
                let now = Timestamp::now();
                let lease_until = now.plus_millis(config.lease.as_millis() as i64);
                match store.claim_due(now, lease_until, limit).await {
                    Ok(claimed) => {
                        full = claimed.len() as u32 == limit;
                        for m in claimed {
                            if !sender.dispatch(m).await {
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "claiming due messages failed"),
                }
            }
            // Due work (retries, expired leases, other nodes' messages) is polled; a full
            // claim means more may be due at once.
            next_claim =
                tokio::time::Instant::now() + if full { std::time::Duration::ZERO } else { config.poll_interval };
        }
        tokio::select! {
            m = fresh.recv(), if fresh_open => match m {
                Some(m) => {
                    if !sender.dispatch(m).await {
                        return;
                    }
                }
                None => fresh_open = false,
            },
            _ = tokio::time::sleep_until(next_claim) => {}
            () = ready.notified() => {
                offer_again(store.as_ref(), &waiting).await;
                next_claim = tokio::time::Instant::now();
            }
            // Claims no more; what is in flight finishes (see `Stopper::stop`).
            () = stop.notified() => return,
        }
    }
}

/// One attempt at a message; the flag says whether it found no upstream able to take it.
async fn attempt(
    provider: &dyn Provider,
    store: &dyn Store,
    config: &DispatcherConfig,
    m: MessageRecord,
) -> (DispatchResult, bool) {
    let base = DispatchResult {
        id: m.id,
        account_id: m.account_id,
        attempt: m.attempts,
        at: Timestamp::now(),
        outcome: DispatchOutcome::Retry { next_attempt_at: Timestamp::now(), error: String::new(), unavailable: false },
    };
    // Attempts that found no upstream able to take the message do not count.
    let counted = m.attempts.saturating_sub(m.unavailable_attempts);
    // A message past its validity is not sent at all.
    if m.expires_at.is_some_and(|e| e <= base.at) {
        return (DispatchResult { outcome: DispatchOutcome::Expired, ..base }, false);
    }
    let expires_at = m.expires_at;
    // The parts an earlier attempt got taken are not sent again.
    let sent_parts = if m.segments > 1 && m.attempts > 1 {
        match store.sent_parts(m.id).await {
            Ok(parts) => parts,
            Err(e) => {
                tracing::error!(error = %e, message_id = %m.id, "reading the parts already sent failed");
                let outcome =
                    retry(config, m.attempts.min(12), base.at, expires_at, "storage unavailable".into(), true);
                return (DispatchResult { outcome, ..base }, false);
            }
        }
    } else {
        Vec::new()
    };
    // The numbers were parsed once, where the request was validated, and are stored and read
    // back as `Msisdn`s: nothing here parses them again.
    let outbound = OutboundMessage {
        id: m.id,
        account_id: m.account_id,
        to: m.to,
        from: m.from,
        kind: m.kind,
        body: m.body,
        media: m.media,
        encoding: m.encoding,
        segments: m.segments,
        attempt: m.attempts,
        sent_parts,
    };
    let sent = tokio::time::timeout(config.send_timeout, provider.send(&outbound)).await;
    let at = Timestamp::now();
    let unavailable = matches!(&sent, Ok(Err(e)) if e.unavailable);
    let outcome = match sent {
        Ok(Ok(submission)) => {
            DispatchOutcome::Sent { provider_message_id: submission.provider_message_id, parts: submission.parts }
        }
        // An upstream that cannot take anything now never saw the message: it waits without
        // using up its attempts until its validity ends (it is claimed once more and ends
        // expired), or, without a validity, for the unavailable limit.
        Ok(Err(e))
            if e.unavailable
                && (expires_at.is_some()
                    || at.millis() < m.created_at.millis() + config.unavailable_limit.as_millis() as i64) =>
        {
            retry(config, m.attempts.min(12), at, expires_at, e.message, true)
        }
        Ok(Err(e)) if e.retryable && !e.unavailable && counted < config.max_attempts => {
            retry(config, counted, at, expires_at, e.message, false)
        }
        Ok(Err(e)) => failed(e),
        Err(_) if counted < config.max_attempts => {
            retry(config, counted, at, expires_at, "provider timed out".into(), false)
        }
        Err(_) => failed(ProviderError::retryable(switchboard_domain::ErrorType::ProviderError, "provider timed out")),
    };
    match &outcome {
        DispatchOutcome::Sent { provider_message_id, .. } => tracing::debug!(%provider_message_id, "sent"),
        DispatchOutcome::Retry { next_attempt_at, error, .. } => {
            tracing::debug!(%error, retry_at = %next_attempt_at, "not sent; to be retried")
        }
        DispatchOutcome::Failed { error_type, message, .. } => {
            tracing::debug!(error_type = error_type.as_str(), error = %message, "failed")
        }
        DispatchOutcome::Expired => tracing::debug!("expired"),
    }
    let waits = unavailable && matches!(outcome, DispatchOutcome::Retry { .. });
    (DispatchResult { at, outcome, ..base }, waits)
}

fn failed(e: ProviderError) -> DispatchOutcome {
    // The upstream never took the message, so its credits go back.
    DispatchOutcome::Failed { error_type: e.error_type, message: e.message, refund: true }
}

/// A retry after the backoff, or at the message's expiry if that comes first (when it is
/// claimed again and ends expired).
fn retry(
    config: &DispatcherConfig,
    attempt: u32,
    now: Timestamp,
    expires_at: Option<Timestamp>,
    error: String,
    unavailable: bool,
) -> DispatchOutcome {
    metrics::counter!("switchboard_dispatch_retries_total").increment(1);
    let next = now.plus_millis(backoff(config, attempt).as_millis() as i64);
    DispatchOutcome::Retry { next_attempt_at: expires_at.map_or(next, |e| next.min(e)), error, unavailable }
}

/// Exponential backoff with full jitter in the upper half: `base * 2^(attempt-1)`, capped.
pub fn backoff(config: &DispatcherConfig, attempt: u32) -> Duration {
    let exp = config.base_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(config.max_backoff);
    let half = capped / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter_ms)
}

/// Most results recorded in one transaction.
const RECORD_BATCH: usize = 1024;
/// How long the recorder waits for more results before a small group is committed, on a store
/// that does not group writes itself. SQLite's writer runs the results beside whatever else
/// waits for it, in the same commit, so there the recorder does not wait: a request that
/// waits to answer `sent` (`sent_wait_ms`) would wait this long for nothing.
const RECORD_GATHER: Duration = Duration::from_millis(2);

/// How often the recorder tries to store one group of results.
const RECORD_TRIES: u32 = 20;

async fn recorder(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<(DispatchResult, bool)>,
    waiters: Arc<Waiters>,
    waiting: Arc<Waiting>,
    unrecorded: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut received = Vec::with_capacity(RECORD_BATCH);
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    let mut waits = Vec::with_capacity(RECORD_BATCH);
    let gather = !store.backend().groups_admissions();
    loop {
        if rx.recv_many(&mut received, RECORD_BATCH).await == 0 {
            return;
        }
        // Let a few more results arrive so that one commit (one fsync) records many: this
        // delays only the bookkeeping after a send, never an admission.
        if gather && received.len() < RECORD_BATCH / 4 {
            tokio::time::sleep(RECORD_GATHER).await;
            while received.len() < RECORD_BATCH {
                match rx.try_recv() {
                    Ok(r) => received.push(r),
                    Err(_) => break,
                }
            }
        }
        for (r, w) in received.drain(..) {
            batch.push(r);
            waits.push(w);
        }
        let count = batch.len();
        let mut tries = 0u32;
        loop {
            tries += 1;
            match store.record_results(&batch).await {
                Ok(changed) => {
                    let changed: std::collections::HashSet<_> = changed.into_iter().collect();
                    for (r, waits) in batch.drain(..).zip(waits.drain(..)) {
                        if !changed.contains(&r.id) {
                            continue;
                        }
                        let mut waiting = waiting.map();
                        match &r.outcome {
                            DispatchOutcome::Retry { next_attempt_at, .. }
                                if waits && (waiting.len() < MAX_WAITING || waiting.contains_key(&r.id)) =>
                            {
                                waiting.insert(r.id, (r.attempt, *next_attempt_at));
                            }
                            _ => {
                                waiting.remove(&r.id);
                            }
                        }
                        drop(waiting);
                        match r.outcome {
                            DispatchOutcome::Sent { provider_message_id, .. } => {
                                metrics::counter!("switchboard_messages_sent_total").increment(1);
                                waiters.tell(r.id, DispatchNews::Sent { at: r.at, provider_message_id })
                            }
                            DispatchOutcome::Failed { error_type, message, .. } => {
                                metrics::counter!("switchboard_messages_failed_total", "error_type" => error_type.as_str())
                                    .increment(1);
                                waiters.tell(r.id, DispatchNews::Failed { error_type, message, at: r.at })
                            }
                            DispatchOutcome::Expired => {
                                metrics::counter!("switchboard_messages_expired_total").increment(1);
                            }
                            DispatchOutcome::Retry { .. } => {}
                        }
                    }
                    break;
                }
                Err(e) if tries < RECORD_TRIES => {
                    // Keep the results and try again: the claims stay leased meanwhile.
                    tracing::error!(error = %e, count = batch.len(), "recording dispatch results failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    // The claims' leases run out and the messages are dispatched again.
                    tracing::error!(error = %e, count = batch.len(), "recording dispatch results failed; leaving them to their leases");
                    batch.clear();
                    waits.clear();
                    break;
                }
            }
        }
        unrecorded.fetch_sub(count, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = DispatcherConfig {
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            ..Default::default()
        };
        for _ in 0..50 {
            let b1 = backoff(&c, 1);
            assert!(b1 >= Duration::from_millis(500) && b1 <= Duration::from_secs(1), "{b1:?}");
            let b3 = backoff(&c, 3);
            assert!(b3 >= Duration::from_secs(2) && b3 <= Duration::from_secs(4), "{b3:?}");
            let b30 = backoff(&c, 30);
            assert!(b30 >= Duration::from_secs(30) && b30 <= Duration::from_secs(60), "{b30:?}");
        }
    }
}
