//! Counts and budgets: messages by status from the running counts, multi-recipient requests
//! with their tallies, and the shared rate-limit buckets.

use std::collections::BTreeMap;

use switchboard_domain::{AccountId, BatchId, MessageId, MessageStatus, Timestamp};

use crate::engine::Tx;
use crate::rows::{BATCH_COLUMNS, corrupt};
use crate::rules::tally::HOUR_MS;
use crate::{BatchRecord, BatchState, MessageCounts, Result};

/// See [`crate::Store::count_messages`].
pub(crate) async fn count_messages(tx: &mut impl Tx, account: AccountId) -> Result<Vec<(String, i64)>> {
    tx.fetch_all(
        "SELECT status, COUNT(*) FROM messages WHERE account_id = $1 GROUP BY status ORDER BY status",
        &[account.into()],
    )
    .await
}

/// See [`crate::Store::message_counts`].
pub(crate) async fn message_counts(
    tx: &mut impl Tx,
    account: AccountId,
    from: Timestamp,
    to: Timestamp,
) -> Result<MessageCounts> {
    let (from, to) = (from.millis().max(0), to.millis().max(0));
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut edges = Vec::new();
    // Whole hours come from the running counts; the ragged ends from the messages.
    let (first_hour, end_hour) = ((from + HOUR_MS - 1).div_euclid(HOUR_MS), to.div_euclid(HOUR_MS));
    if first_hour < end_hour {
        let rows: Vec<(String, i64)> = tx
            .fetch_all(
                "SELECT status, CAST(SUM(n) AS BIGINT) FROM message_counts \
                 WHERE account_id = $1 AND hour >= $2 AND hour < $3 GROUP BY status",
                &[account.into(), first_hour.into(), end_hour.into()],
            )
            .await?;
        for (status, n) in rows {
            *counts.entry(status).or_default() += n;
        }
        edges.push((from, first_hour * HOUR_MS));
        edges.push((end_hour * HOUR_MS, to));
    } else {
        edges.push((from, to));
    }
    for (a, b) in edges.into_iter().filter(|(a, b)| a < b) {
        // Ids are time-ordered, so the primary-key index bounds the scan; a minute of slack
        // covers a creation time a little off its id's.
        let slack = 60_000;
        let rows: Vec<(String, i64)> = tx
            .fetch_all(
                "SELECT status, COUNT(*) FROM messages WHERE account_id = $1 AND id >= $2 AND id < $3 \
                 AND created_at >= $4 AND created_at < $5 AND direction = 'outbound' GROUP BY status",
                &[
                    account.into(),
                    MessageId::first_at(Timestamp::from_millis(a - slack)).into(),
                    MessageId::first_at(Timestamp::from_millis(b + slack)).into(),
                    a.into(),
                    b.into(),
                ],
            )
            .await?;
        for (status, n) in rows {
            *counts.entry(status).or_default() += n;
        }
    }
    let by_status = counts
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(s, n)| MessageStatus::parse(&s).map(|s| (s, n)).ok_or_else(|| corrupt("status", &s)))
        .collect::<Result<Vec<_>>>()?;
    Ok(MessageCounts { by_status })
}

/// See [`crate::Store::get_batch`].
pub(crate) async fn get_batch(tx: &mut impl Tx, id: BatchId) -> Result<Option<BatchRecord>> {
    tx.fetch_optional(&format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1"), &[id.into()]).await
}

/// See [`crate::Store::list_batches`].
pub(crate) async fn list_batches(
    tx: &mut impl Tx,
    account: AccountId,
    state: Option<BatchState>,
    offset: u64,
    limit: u32,
) -> Result<(Vec<BatchRecord>, u64)> {
    let condition = match state {
        None => "TRUE",
        Some(BatchState::Pending) => "sent + failed < recipients",
        Some(BatchState::Sent) => "sent + failed = recipients AND sent > 0",
        Some(BatchState::Failed) => "failed = recipients",
    };
    let sql = format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE account_id = $1 AND {condition} ORDER BY id DESC LIMIT $2 OFFSET $3"
    );
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let batches = tx.fetch_all(&sql, &[account.into(), limit.into(), offset.into()]).await?;
    let sql = format!("SELECT COUNT(*) FROM batches WHERE account_id = $1 AND {condition}");
    let total: Option<(i64,)> = tx.fetch_optional(&sql, &[account.into()]).await?;
    Ok((batches, total.map_or(0, |(n,)| u64::try_from(n).unwrap_or(0))))
}

/// The bucket's tokens as of now: what it held, plus what it gained since its last take
/// (never negative, should clocks differ), at most a second's worth.
macro_rules! refilled {
    () => {
        "(CASE WHEN tokens + CAST((CASE WHEN $3 > at_ms THEN $3 - at_ms ELSE 0 END) \
         AS DOUBLE PRECISION) * $2 / 1000.0 > $2 THEN CAST($2 AS DOUBLE PRECISION) \
         ELSE tokens + CAST((CASE WHEN $3 > at_ms THEN $3 - at_ms ELSE 0 END) AS DOUBLE PRECISION) \
         * $2 / 1000.0 END)"
    };
}

/// See [`crate::Store::take_rate_tokens`]: `want` tokens, all or none.
pub(crate) async fn take_rate_tokens(
    tx: &mut impl Tx,
    name: &str,
    per_second: u32,
    want: u32,
    now: Timestamp,
) -> Result<u32> {
    tx.execute(
        "INSERT INTO rate_budgets (name, tokens, at_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        &[name.into(), per_second.into(), now.into()],
    )
    .await?;
    let taken = tx
        .execute(
            concat!(
                "UPDATE rate_budgets SET tokens = ",
                refilled!(),
                " - $4, at_ms = CASE WHEN $3 > at_ms THEN $3 ELSE at_ms END WHERE name = $1 AND ",
                refilled!(),
                " >= $4"
            ),
            &[name.into(), per_second.into(), now.into(), want.into()],
        )
        .await?;
    Ok(if taken == 1 { want } else { 0 })
}

/// See [`crate::Store::backlog`]. The queued, scheduled and due rows are counted through the
/// partial indexes that hold only them; the messages awaiting receipts from the running counts
/// (`message_counts`), never from the messages themselves.
pub(crate) async fn backlog(tx: &mut impl Tx, now: Timestamp) -> Result<crate::Backlog> {
    let count = "SELECT \
        (SELECT COUNT(*) FROM messages WHERE status = 'queued'), \
        (SELECT COUNT(*) FROM messages WHERE status = 'scheduled'), \
        (SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $1), \
        (SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM message_counts WHERE status = 'sent')";
    let (queued, scheduled, deliveries_due, receipts_awaited): (i64, i64, i64, i64) =
        tx.fetch_optional(count, &[now.into()]).await?.unwrap_or_default();
    Ok(crate::Backlog { queued, scheduled, deliveries_due, receipts_awaited })
}

/// See [`crate::Store::schema_version`]: both engines record their migrations in
/// `_sqlx_migrations`.
pub(crate) async fn schema_version(tx: &mut impl Tx) -> Result<i64> {
    let sql = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";
    let row: Option<(Option<i64>,)> = tx.fetch_optional(sql, &[]).await?;
    Ok(row.and_then(|(v,)| v).unwrap_or(0))
}
