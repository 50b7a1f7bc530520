//! Retention: a background task that removes the history of finished messages once they are
//! older than the retention period, in small batches that never hold the database for long.
//!
//! A pass computes the horizon (now less `keep`) and calls [`Store::prune`] batch after batch
//! until a batch finds less than a full batch's work; each batch is one short transaction, and
//! after each the task pauses three times as long as the batch took, so that pruning takes at
//! most about a quarter of the database's time for writes and a send never waits behind more
//! than one batch (on SQLite the batches go through the one writer thread like every other
//! write). Passes repeat every `interval`; the task stops between batches when asked.
//!
//! What is removed and what is kept is the store's rule (see [`Store::prune`]): events, parts,
//! webhook deliveries and attempts of finished messages go; message rows, the ledger, balances,
//! running counts and opt-outs stay. On several PostgreSQL nodes every node that runs it prunes,
//! and their batches take different messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_domain::Timestamp;
use switchboard_storage::{Pruned, StorageError, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How many times as long as a batch took the task pauses after it: pruning takes at most a
/// quarter of the time, and leaves the rest to the writes that serve sends.
const PAUSE_FACTOR: u32 = 3;

/// Retention settings.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// How long after a message ended its history is kept.
    pub keep: Duration,
    /// Most messages one batch (one transaction) prunes; a message has a handful of rows
    /// (about four events, its parts, its webhook deliveries and their attempts).
    pub batch: u32,
    /// Time between the end of one pass and the start of the next.
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { keep: Duration::from_secs(90 * 86_400), batch: 500, interval: Duration::from_secs(3600) }
    }
}

/// The running retention task; [`Retention::stop`] ends it between two batches. Dropping it
/// aborts the task (a batch in flight still commits or rolls back whole).
#[derive(Debug)]
pub struct Retention {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Retention {
    /// Stops the task once the batch in flight, if any, has ended.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Retention {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts the retention task on the current Tokio runtime; its first pass starts at once.
pub fn start(store: Arc<dyn Store>, config: RetentionConfig) -> Retention {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            match pass(store.as_ref(), &config, &mut stopped).await {
                Ok(None) => return,
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "a retention pass failed; the next pass tries again");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(config.interval) => {}
                _ = stopped.changed() => return,
            }
        }
    });
    Retention { stop, task: Some(task) }
}

/// One pass: prunes batch after batch until none is left, pausing after each three times as
/// long as it took. Returns what it pruned, or `None` if it was stopped first. Counts every batch in the
/// metrics as it goes, and the pass once it is done.
pub async fn pass(
    store: &dyn Store,
    config: &RetentionConfig,
    stopped: &mut watch::Receiver<bool>,
) -> Result<Option<Pruned>, StorageError> {
    let keep = i64::try_from(config.keep.as_millis()).unwrap_or(i64::MAX);
    let before = Timestamp::now().plus_millis(keep.saturating_neg());
    let started = Instant::now();
    let mut total = Pruned::default();
    loop {
        if *stopped.borrow() {
            return Ok(None);
        }
        let batch = Instant::now();
        let pruned = store.prune(before, config.batch).await?;
        count(&pruned);
        total.add(&pruned);
        if pruned.drained(config.batch) {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(batch.elapsed() * PAUSE_FACTOR) => {}
            _ = stopped.changed() => return Ok(None),
        }
    }
    let took = started.elapsed();
    metrics::histogram!("switchboard_retention_pass_seconds").record(took.as_secs_f64());
    let now = Timestamp::now().millis() as f64 / 1000.0;
    metrics::gauge!("switchboard_retention_last_pass_timestamp_seconds").set(now);
    if total.messages > 0 || total.receipts > 0 {
        tracing::info!(
            messages = total.messages,
            events = total.events,
            parts = total.parts,
            deliveries = total.deliveries,
            attempts = total.attempts,
            receipts = total.receipts,
            seconds = took.as_secs_f64(),
            "pruned the history of finished messages"
        );
    }
    Ok(Some(total))
}

/// Adds a batch to the metrics.
fn count(p: &Pruned) {
    metrics::counter!("switchboard_retention_pruned_messages_total").increment(p.messages);
    for (table, rows) in [
        ("message_events", p.events),
        ("message_parts", p.parts + p.receipts),
        ("webhook_deliveries", p.deliveries),
        ("webhook_attempts", p.attempts),
    ] {
        metrics::counter!("switchboard_retention_pruned_rows_total", "table" => table).increment(rows);
    }
}
