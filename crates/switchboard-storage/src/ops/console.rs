//! The web console's storage: its sessions, and the message counts its charts draw.
//!
//! The counts are bounded reads that add nothing to the message write path: by the hour from
//! the running counts (`message_counts`), by the minute from the messages of a range of ids
//! (ids are time-ordered, so a minute is a range of the primary key, or of `messages_account`
//! for one account), at most an hour of them.

use switchboard_domain::{AccountId, MessageId, MessageStatus, Timestamp};

use crate::engine::Tx;
use crate::rows::corrupt;
use crate::rules::tally::HOUR_MS;
use crate::{Backend, ConsolePrincipal, ConsoleSessionRecord, Result, TrafficBucket};

const SESSION_COLUMNS: &str = "token_hash, account_id, key_id, created_at, expires_at, last_seen_at";

/// See [`crate::Store::create_console_session`].
pub(crate) async fn create_session(tx: &mut impl Tx, s: &ConsoleSessionRecord) -> Result<()> {
    let (account, key_id) = match &s.principal {
        ConsolePrincipal::Operator => (None, None),
        ConsolePrincipal::Account { account, key_id } => (Some(account.as_uuid()), Some(key_id.as_str())),
    };
    tx.execute(
        &format!("INSERT INTO console_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            (&s.token_hash).into(),
            account.into(),
            key_id.into(),
            s.created_at.into(),
            s.expires_at.into(),
            s.last_seen_at.into(),
        ],
    )
    .await?;
    Ok(())
}

/// See [`crate::Store::find_console_session`].
pub(crate) async fn find_session(tx: &mut impl Tx, token_hash: &[u8]) -> Result<Option<ConsoleSessionRecord>> {
    type Row = (Vec<u8>, Option<AccountId>, Option<String>, Timestamp, Timestamp, Timestamp);
    let row: Option<Row> = tx
        .fetch_optional(
            &format!("SELECT {SESSION_COLUMNS} FROM console_sessions WHERE token_hash = $1"),
            &[token_hash.into()],
        )
        .await?;
    let Some((token_hash, account, key_id, created_at, expires_at, last_seen_at)) = row else { return Ok(None) };
    let principal = match (account, key_id) {
        (None, None) => ConsolePrincipal::Operator,
        (Some(account), Some(key_id)) => ConsolePrincipal::Account { account, key_id },
        _ => {
            return Err(corrupt(
                "console session principal",
                "an account without its key, or a key without its account",
            ));
        }
    };
    Ok(Some(ConsoleSessionRecord { token_hash, principal, created_at, expires_at, last_seen_at }))
}

/// See [`crate::Store::touch_console_session`].
pub(crate) async fn touch_session(tx: &mut impl Tx, token_hash: &[u8], at: Timestamp) -> Result<()> {
    tx.execute(
        "UPDATE console_sessions SET last_seen_at = $1 WHERE token_hash = $2 AND last_seen_at < $1",
        &[at.into(), token_hash.into()],
    )
    .await?;
    Ok(())
}

/// See [`crate::Store::delete_console_session`].
pub(crate) async fn delete_session(tx: &mut impl Tx, token_hash: &[u8]) -> Result<bool> {
    Ok(tx.execute("DELETE FROM console_sessions WHERE token_hash = $1", &[token_hash.into()]).await? > 0)
}

/// See [`crate::Store::purge_console_sessions`].
pub(crate) async fn purge_sessions(tx: &mut impl Tx, now: Timestamp, idle_before: Timestamp) -> Result<u64> {
    tx.execute(
        "DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at < $2",
        &[now.into(), idle_before.into()],
    )
    .await
}

/// See [`crate::Store::hourly_traffic`].
pub(crate) async fn hourly_traffic(
    tx: &mut impl Tx,
    account: Option<AccountId>,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<TrafficBucket>> {
    let (first, end) = (from.millis().div_euclid(HOUR_MS), (to.millis() + HOUR_MS - 1).div_euclid(HOUR_MS));
    let rows: Vec<(i64, String, i64)> = match account {
        Some(a) => {
            tx.fetch_all(
                "SELECT hour, status, CAST(SUM(n) AS BIGINT) FROM message_counts \
                 WHERE account_id = $1 AND hour >= $2 AND hour < $3 GROUP BY hour, status ORDER BY hour",
                &[a.into(), first.into(), end.into()],
            )
            .await?
        }
        None => {
            tx.fetch_all(
                "SELECT hour, status, CAST(SUM(n) AS BIGINT) FROM message_counts \
                 WHERE hour >= $1 AND hour < $2 GROUP BY hour, status ORDER BY hour",
                &[first.into(), end.into()],
            )
            .await?
        }
    };
    let mut buckets: Vec<TrafficBucket> = Vec::new();
    for (hour, status, n) in rows {
        let status = MessageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?;
        let start = hour * HOUR_MS;
        if buckets.last().is_none_or(|b| b.start != start) {
            buckets.push(TrafficBucket { start, ..TrafficBucket::default() });
        }
        if let Some(b) = buckets.last_mut() {
            b.add(status, n);
        }
    }
    Ok(buckets.into_iter().filter(|b| b.accepted != 0).collect())
}

/// One minute's counts: all, sent, delivered, failed (the sums are NULL over no rows).
type MinuteRow = (i64, Option<i64>, Option<i64>, Option<i64>);

/// Most minutes [`minute_traffic`] reads.
const MAX_MINUTES: u32 = 60;

/// See [`crate::Store::minute_traffic`]: one aggregate per minute over that minute's range
/// of ids, with no `GROUP BY` (which would sort the rows); a minute's range of ids holds the
/// messages created in it, give or take clocks that disagree by the milliseconds between
/// making an id and its creation time.
pub(crate) async fn minute_traffic(
    tx: &mut impl Tx,
    account: Option<AccountId>,
    from: Timestamp,
    minutes: u32,
) -> Result<Vec<TrafficBucket>> {
    let sums = match tx.backend() {
        // SQLite counts a comparison as 0 or 1, more cheaply than a CASE.
        Backend::Sqlite => {
            "COUNT(*), SUM(status IN ('sent', 'delivered')), SUM(status = 'delivered'), \
             SUM(status IN ('failed', 'undelivered', 'expired', 'canceled'))"
        }
        Backend::Postgres => {
            "COUNT(*), COUNT(*) FILTER (WHERE status IN ('sent', 'delivered')), \
             COUNT(*) FILTER (WHERE status = 'delivered'), \
             COUNT(*) FILTER (WHERE status IN ('failed', 'undelivered', 'expired', 'canceled'))"
        }
    };
    let scope = if account.is_some() { "account_id = $3 AND " } else { "" };
    let sql = format!("SELECT {sums} FROM messages WHERE {scope}id >= $1 AND id < $2 AND direction = 'outbound'");
    let mut buckets = Vec::new();
    for minute in 0..i64::from(minutes.min(MAX_MINUTES)) {
        let start = from.millis() + minute * 60_000;
        let low = MessageId::first_at(Timestamp::from_millis(start));
        let high = MessageId::first_at(Timestamp::from_millis(start + 60_000));
        let mut params = vec![low.into(), high.into()];
        if let Some(a) = account {
            params.push(a.into());
        }
        let row: Option<MinuteRow> = tx.fetch_optional(&sql, &params).await?;
        let (accepted, sent, delivered, failed) = row.unwrap_or_default();
        if accepted != 0 {
            buckets.push(TrafficBucket {
                start,
                accepted,
                sent: sent.unwrap_or(0),
                delivered: delivered.unwrap_or(0),
                failed: failed.unwrap_or(0),
            });
        }
    }
    Ok(buckets)
}

/// See [`crate::Store::account_backlog`]: the account's messages waiting, from its running
/// counts (never from its messages).
pub(crate) async fn account_backlog(tx: &mut impl Tx, account: AccountId) -> Result<(i64, i64)> {
    let rows: Vec<(String, i64)> = tx
        .fetch_all(
            "SELECT status, CAST(SUM(n) AS BIGINT) FROM message_counts WHERE account_id = $1 \
             AND status IN ('accepted', 'queued', 'scheduled') GROUP BY status",
            &[account.into()],
        )
        .await?;
    let scheduled = rows.iter().filter(|(s, _)| s == "scheduled").map(|(_, n)| *n).sum();
    let queued = rows.iter().filter(|(s, _)| s != "scheduled").map(|(_, n)| *n).sum();
    Ok((queued, scheduled))
}
