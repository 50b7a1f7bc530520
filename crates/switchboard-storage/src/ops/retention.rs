//! Retention: removing the history of finished messages in small batches (see
//! [`crate::Store::prune`]).
//!
//! A message is finished when it is in a final status (`delivered`, `failed`, `undelivered`,
//! `expired`, `canceled`, or `received` for an inbound message): nothing moves it any more, and
//! no receipt is awaited for it (a message still `sent` waits for its receipts, and is never
//! finished here however old it is). Its history is its status events, its parts (the upstream's
//! ids for its segments, with what their receipts said), and its webhook deliveries with their
//! attempts. Once the message ended before the horizon and none of its deliveries is still
//! pending, that history is removed and the message is marked `pruned_at`; the message row
//! itself stays, with its status, error, charge and idempotency key, and so do the ledger, the
//! running counts and the batches.
//!
//! A batch takes the messages that ended first from the partial index `messages_prunable`
//! (finished, not yet pruned, by end time), so it never scans what was pruned before. On
//! PostgreSQL the messages are locked with `SKIP LOCKED`, so that nodes pruning at once take
//! different messages; every delete is by key and changes nothing the second time.

use switchboard_domain::{MessageId, Timestamp};

use crate::engine::{CHUNKS, Param, Tx, chunked};
use crate::{Pruned, Result};

/// The statuses a message can no longer leave, as the partial index `messages_prunable` names
/// them (the query must say the same, term for term, for the index to serve it).
macro_rules! finished {
    () => {
        "pruned_at IS NULL AND (status = 'delivered' OR status = 'failed' OR status = 'undelivered' \
         OR status = 'expired' OR status = 'canceled' OR status = 'received')"
    };
}

/// A statement over a list of message ids, `head` then `$from, $from+1, …` then `tail`, its
/// text for each chunk size made once.
struct IdList {
    head: &'static str,
    from: usize,
    tail: &'static str,
    texts: [std::sync::OnceLock<String>; CHUNKS.len()],
}

impl IdList {
    const fn new(head: &'static str, from: usize, tail: &'static str) -> Self {
        IdList { head, from, tail, texts: [const { std::sync::OnceLock::new() }; CHUNKS.len()] }
    }

    /// The statement for `n` ids (one of [`CHUNKS`]).
    fn sql(&self, n: usize) -> &str {
        let slot = CHUNKS.iter().position(|&c| c == n).expect("a chunk size");
        self.texts[slot].get_or_init(|| {
            let list: Vec<String> = (self.from..self.from + n).map(|i| format!("${i}")).collect();
            format!("{}{}{}", self.head, list.join(", "), self.tail)
        })
    }
}

/// The attempts of the messages' finished deliveries.
static DELETE_ATTEMPTS: IdList = IdList::new(
    "DELETE FROM webhook_attempts WHERE (event_id, target) IN (SELECT event_id, target FROM webhook_deliveries \
     WHERE message_id IN (",
    1,
    ") AND state <> 'pending')",
);

/// The messages' finished deliveries (a pending one, which a batch never takes, would stay).
static DELETE_DELIVERIES: IdList =
    IdList::new("DELETE FROM webhook_deliveries WHERE message_id IN (", 1, ") AND state <> 'pending'");

static DELETE_EVENTS: IdList = IdList::new("DELETE FROM message_events WHERE message_id IN (", 1, ")");

static DELETE_PARTS: IdList = IdList::new("DELETE FROM message_parts WHERE message_id IN (", 1, ")");

/// Marks the messages pruned, which takes them out of `messages_prunable`.
static MARK_PRUNED: IdList =
    IdList::new("UPDATE messages SET pruned_at = $1 WHERE id IN (", 2, concat!(") AND ", finished!()));

/// The messages a batch prunes: `$2` of those that ended before `$1`, first ended first, with
/// no webhook delivery pending, from the front of `messages_prunable`.
fn pick(backend: crate::Backend) -> String {
    format!(
        concat!(
            "SELECT id FROM messages WHERE ",
            finished!(),
            " AND updated_at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
             WHERE d.message_id = messages.id AND d.state = 'pending') ORDER BY updated_at LIMIT $2{}"
        ),
        backend.skip_locked()
    )
}

/// See [`crate::Store::prune`].
pub(crate) async fn prune(tx: &mut impl Tx, before: Timestamp, limit: u32, now: Timestamp) -> Result<Pruned> {
    let skip_locked = tx.backend().skip_locked();
    let limit = limit.max(1);
    let picked: Vec<(MessageId,)> = tx.fetch_all(&pick(tx.backend()), &[before.into(), limit.into()]).await?;
    let ids: Vec<MessageId> = picked.into_iter().map(|(id,)| id).collect();
    let mut pruned = Pruned::default();
    for chunk in chunked(&ids) {
        let params: Vec<Param<'_>> = chunk.iter().map(|id| (*id).into()).collect();
        let n = chunk.len();
        // Attempts before their deliveries: they are found through them.
        pruned.attempts += tx.execute(DELETE_ATTEMPTS.sql(n), &params).await?;
        pruned.deliveries += tx.execute(DELETE_DELIVERIES.sql(n), &params).await?;
        pruned.events += tx.execute(DELETE_EVENTS.sql(n), &params).await?;
        pruned.parts += tx.execute(DELETE_PARTS.sql(n), &params).await?;
        let mut marked: Vec<Param<'_>> = Vec::with_capacity(n + 1);
        marked.push(now.into());
        marked.extend(params);
        pruned.messages += tx.execute(MARK_PRUNED.sql(n), &marked).await?;
    }
    // Receipts that no submission claimed since before the horizon: a submission is recorded
    // within seconds of its receipt, or never.
    let unmatched = format!(
        "DELETE FROM message_parts WHERE provider_ref IN (SELECT provider_ref FROM message_parts \
         WHERE message_id IS NULL AND at < $1 ORDER BY at LIMIT $2{skip_locked})"
    );
    pruned.receipts = tx.execute(&unmatched, &[before.into(), limit.into()]).await?;
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use crate::engine::sqlite::SqliteEngine;
    use crate::engine::{Engine, Tx};
    use crate::{Backend, ConnectOptions};

    /// A batch reads the front of `messages_prunable`: the query names the index's condition
    /// term for term, or SQLite would scan every message instead.
    #[tokio::test]
    async fn a_batch_reads_the_prunable_index_on_sqlite() {
        let dir = std::env::temp_dir().join(format!("switchboard-prune-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("p.db").display());
        let engine = SqliteEngine::open(&url, &ConnectOptions::default()).await.unwrap();
        let plan: Vec<String> = engine
            .read(|tx| {
                Box::pin(async move {
                    let sql = format!("EXPLAIN QUERY PLAN {}", super::pick(Backend::Sqlite));
                    let rows: Vec<(i64, i64, i64, String)> = tx.fetch_all(&sql, &[0i64.into(), 1i64.into()]).await?;
                    Ok(rows.into_iter().map(|(_, _, _, detail)| detail).collect())
                })
            })
            .await
            .unwrap();
        assert!(
            plan.iter().any(|d| d.starts_with("SEARCH messages USING INDEX messages_prunable")),
            "the plan does not read messages_prunable: {plan:?}"
        );
        drop(engine);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
