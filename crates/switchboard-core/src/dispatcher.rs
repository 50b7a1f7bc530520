//! The dispatcher: claims queued messages, hands them to the provider, records what happened.
//!
//! Claims are leased in the database, so any number of nodes can run a dispatcher on one
//! PostgreSQL without sending a message twice; a node that dies mid-send leaves its claims to
//! expire and be taken again. Sends run concurrently up to `max_in_flight`; their results are
//! recorded in groups (one transaction each) by a separate task, and waiting requests are told.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use switchboard_domain::{Msisdn, Timestamp};
use switchboard_provider::{OutboundMessage, Provider, ProviderError};
use switchboard_storage::{DispatchOutcome, DispatchResult, MessageRecord, Store};
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
        }
    }
}

/// Starts the dispatcher tasks.
pub fn start(
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    config: DispatcherConfig,
    wake: Arc<Notify>,
    waiters: Arc<Waiters>,
) {
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    tokio::spawn(recorder(store.clone(), results_rx, waiters));
    tokio::spawn(claimer(store, provider, config, wake, results_tx));
}

async fn claimer(
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    config: DispatcherConfig,
    wake: Arc<Notify>,
    results: mpsc::UnboundedSender<DispatchResult>,
) {
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let config = Arc::new(config);
    loop {
        // Wait for room before claiming, so nothing is claimed that cannot be sent at once.
        let room = permits.available_permits();
        if room == 0 {
            let Ok(p) = permits.clone().acquire_owned().await else {
                return;
            };
            drop(p);
            continue;
        }
        let limit = (room as u32).min(config.claim_batch);
        let now = Timestamp::now();
        let lease_until = now.plus_millis(config.lease.as_millis() as i64);
        let claimed = match store.claim_due(now, lease_until, limit).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "claiming due messages failed");
                tokio::time::sleep(config.poll_interval).await;
                continue;
            }
        };
        let full = claimed.len() as u32 == limit;
        for message in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (provider, config, results) = (provider.clone(), config.clone(), results.clone());
            tokio::spawn(async move {
                let result = attempt(provider.as_ref(), &config, message).await;
                let _ = results.send(result);
                drop(permit);
            });
        }
        if !full {
            // Nothing more is due now: sleep until a commit wakes us or the poll interval ends.
            let _ = tokio::time::timeout(config.poll_interval, wake.notified()).await;
        }
    }
}

async fn attempt(provider: &dyn Provider, config: &DispatcherConfig, m: MessageRecord) -> DispatchResult {
    let base = DispatchResult {
        id: m.id,
        account_id: m.account_id,
        attempt: m.attempts,
        at: Timestamp::now(),
        outcome: DispatchOutcome::Retry { next_attempt_at: Timestamp::now(), error: String::new() },
    };
    let outbound = match (Msisdn::parse(&m.to), Msisdn::parse(&m.from)) {
        (Ok(to), Ok(from)) => OutboundMessage {
            id: m.id,
            to,
            from,
            kind: m.kind,
            body: m.body,
            media_url: m.media_url,
            encoding: m.encoding,
            segments: m.segments,
            attempt: m.attempts,
        },
        _ => {
            let err = ProviderError::permanent(switchboard_domain::ErrorType::InvalidDestination);
            return DispatchResult { outcome: failed(err), ..base };
        }
    };
    let sent = tokio::time::timeout(config.send_timeout, provider.send(&outbound)).await;
    let at = Timestamp::now();
    let outcome = match sent {
        Ok(Ok(submission)) => DispatchOutcome::Sent { provider_message_id: submission.provider_message_id },
        Ok(Err(e)) if e.retryable && m.attempts < config.max_attempts => retry(config, m.attempts, at, e.message),
        Ok(Err(e)) => failed(e),
        Err(_) if m.attempts < config.max_attempts => retry(config, m.attempts, at, "provider timed out".into()),
        Err(_) => failed(ProviderError::retryable(switchboard_domain::ErrorType::ProviderError, "provider timed out")),
    };
    DispatchResult { at, outcome, ..base }
}

fn failed(e: ProviderError) -> DispatchOutcome {
    // The upstream never took the message, so its credits go back.
    DispatchOutcome::Failed { error_type: e.error_type, message: e.message, refund: true }
}

fn retry(config: &DispatcherConfig, attempt: u32, now: Timestamp, error: String) -> DispatchOutcome {
    metrics::counter!("switchboard_dispatch_retries_total").increment(1);
    DispatchOutcome::Retry { next_attempt_at: now.plus_millis(backoff(config, attempt).as_millis() as i64), error }
}

/// Exponential backoff with full jitter in the upper half: `base * 2^(attempt-1)`, capped.
pub fn backoff(config: &DispatcherConfig, attempt: u32) -> Duration {
    let exp = config.base_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(config.max_backoff);
    let half = capped / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter_ms)
}

/// How often the recorder tries to store one group of results.
const RECORD_TRIES: u32 = 20;

async fn recorder(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<DispatchResult>, waiters: Arc<Waiters>) {
    let mut batch = Vec::with_capacity(1024);
    loop {
        if rx.recv_many(&mut batch, 1024).await == 0 {
            return;
        }
        let mut tries = 0u32;
        loop {
            tries += 1;
            match store.record_results(&batch).await {
                Ok(changed) => {
                    let changed: std::collections::HashSet<_> = changed.into_iter().collect();
                    for r in batch.drain(..) {
                        if !changed.contains(&r.id) {
                            continue;
                        }
                        match r.outcome {
                            DispatchOutcome::Sent { provider_message_id } => {
                                metrics::counter!("switchboard_messages_sent_total").increment(1);
                                waiters.tell(r.id, DispatchNews::Sent { at: r.at, provider_message_id })
                            }
                            DispatchOutcome::Failed { error_type, message, .. } => {
                                metrics::counter!("switchboard_messages_failed_total", "error_type" => error_type.as_str())
                                    .increment(1);
                                waiters.tell(r.id, DispatchNews::Failed { error_type, message, at: r.at })
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
                    break;
                }
            }
        }
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
