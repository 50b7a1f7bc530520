//! The web console's storage: its sessions, and the message counts its charts draw.
//!
//! The counts are read from the running counts that every status change keeps (see
//! `rules::tally`), never from the messages: by the hour from `message_counts`, by the minute
//! from `message_minute_counts` (the last two hours, of which at most one is read).

use switchboard_domain::{AccountId, MessageStatus, Timestamp};

use crate::engine::Tx;
use crate::rows::corrupt;
use crate::rules::tally::{HOUR_MS, MINUTE_MS, RING_MINUTES};
use crate::{ConsolePrincipal, ConsoleSessionRecord, Result, TrafficBucket};

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
    traffic(tx, "message_counts", "hour", "", account, (first, end), HOUR_MS).await
}

/// Most minutes [`minute_traffic`] reads: the minute counts keep more, but only this far back
/// are they sure to be whole.
const MAX_MINUTES: u32 = 60;

/// See [`crate::Store::minute_traffic`].
pub(crate) async fn minute_traffic(
    tx: &mut impl Tx,
    account: Option<AccountId>,
    from: Timestamp,
    minutes: u32,
) -> Result<Vec<TrafficBucket>> {
    let first = from.millis().div_euclid(MINUTE_MS);
    let end = first + i64::from(minutes.min(MAX_MINUTES));
    if end <= first {
        return Ok(Vec::new());
    }
    // The minutes' slots, so that all accounts' rows are found through `message_minute_counts_slot`.
    let slots: Vec<String> = (first..end).map(|m| m.rem_euclid(RING_MINUTES).to_string()).collect();
    let slots = format!("slot IN ({}) AND ", slots.join(", "));
    traffic(tx, "message_minute_counts", "minute", &slots, account, (first, end), MINUTE_MS).await
}

/// The buckets `[first, end)` of a table of running counts, whose bucket column is `bucket`
/// (in units of `size` milliseconds), with `also` (empty, or a condition and `AND`) in its
/// `WHERE`; buckets without messages are left out.
async fn traffic(
    tx: &mut impl Tx,
    table: &str,
    bucket: &str,
    also: &str,
    account: Option<AccountId>,
    (first, end): (i64, i64),
    size: i64,
) -> Result<Vec<TrafficBucket>> {
    let mut params = vec![first.into(), end.into()];
    let scope = match account {
        Some(a) => {
            params.push(a.into());
            "account_id = $3 AND "
        }
        None => "",
    };
    let sql = format!(
        "SELECT {bucket}, status, CAST(SUM(n) AS BIGINT) FROM {table} \
         WHERE {scope}{also}{bucket} >= $1 AND {bucket} < $2 GROUP BY {bucket}, status ORDER BY {bucket}"
    );
    let rows: Vec<(i64, String, i64)> = tx.fetch_all(&sql, &params).await?;
    let mut buckets: Vec<TrafficBucket> = Vec::new();
    for (at, status, n) in rows {
        let status = MessageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?;
        let start = at * size;
        if buckets.last().is_none_or(|b| b.start != start) {
            buckets.push(TrafficBucket { start, ..TrafficBucket::default() });
        }
        if let Some(b) = buckets.last_mut() {
            b.add(status, n);
        }
    }
    Ok(buckets.into_iter().filter(|b| b.accepted != 0).collect())
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
