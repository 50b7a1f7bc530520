//! Dispatch: claiming due messages ([`claim_due`], which first queues scheduled messages whose
//! time has come) and storing what sending them did ([`record_results`]).

use std::collections::{BTreeSet, HashMap};

use switchboard_domain::{ErrorType, MessageId, MessageStatus, Timestamp};
use uuid::Uuid;

use super::receipts::settle_message;
use super::{Effects, finish};
use crate::engine::{Param, Tx, Values, chunked, push_row};
use crate::rows::{Changed, Charged, changed_columns, message_columns};
use crate::rules::receipts::NewParts;
use crate::{DispatchOutcome, DispatchResult, MessageRecord, Result};

/// Most scheduled messages moved into the queue by one claim.
const PROMOTE_BATCH: u32 = 1000;

/// Whether a scheduled message's recipient has opted out of its sender, in an `UPDATE messages`.
macro_rules! opted_out {
    () => {
        "EXISTS (SELECT 1 FROM opt_outs o WHERE o.sender = messages.sender AND o.recipient = messages.recipient)"
    };
}

/// See [`crate::Store::claim_due`].
pub(crate) async fn claim_due(
    tx: &mut impl Tx,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
) -> Result<Vec<MessageRecord>> {
    let skip_locked = tx.backend().skip_locked();
    // Scheduled messages whose time has come join the queue first, unless their recipient
    // opted out since they were accepted: those end failed, refunded.
    let promote = format!(
        concat!(
            "UPDATE messages SET status = CASE WHEN ",
            opted_out!(),
            " THEN 'failed' ELSE 'queued' END, error_type = CASE WHEN ",
            opted_out!(),
            " THEN 'opted_out' ELSE error_type END, error_message = CASE WHEN ",
            opted_out!(),
            " THEN $3 ELSE error_message END, updated_at = $1 WHERE status = 'scheduled' AND id IN \
             (SELECT id FROM messages WHERE status = 'scheduled' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2{}) RETURNING status, sms_charged, mms_charged, ",
            changed_columns!()
        ),
        skip_locked
    );
    let params = [now.into(), PROMOTE_BATCH.into(), ErrorType::OptedOut.description().into()];
    let promoted = tx.query(&promote, &params).await?;
    if !promoted.is_empty() {
        let mut fx = Effects::default();
        for mut row in promoted {
            let status: String = row.get()?;
            let Charged(charged, m) = crate::engine::FromRow::from_row(&mut row)?;
            if status == MessageStatus::Failed.as_str() {
                fx.moved(&m, MessageStatus::Scheduled, MessageStatus::Failed, Some(ErrorType::OptedOut), now);
                fx.refund(&m, charged, now);
            } else {
                fx.moved(&m, MessageStatus::Scheduled, MessageStatus::Queued, None, now);
            }
        }
        finish(tx, fx).await?;
    }
    // The running counts are locked above, and the claim comes after them: it cannot wait on
    // another writer (`SKIP LOCKED`), so this order cannot deadlock.
    let claim = format!(
        concat!(
            "UPDATE messages SET attempts = attempts + 1, next_attempt_at = $1, updated_at = $2 \
             WHERE status = 'queued' AND id IN (SELECT id FROM messages WHERE status = 'queued' \
             AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3{}) RETURNING ",
            message_columns!()
        ),
        skip_locked
    );
    tx.fetch_all(&claim, &[lease_until.into(), now.into(), limit.into()]).await
}

/// Marks queued messages sent, several rows a statement: `$1` id, `$2` attempt, `$3` provider
/// id, `$4` time, per row.
static MARK_SENT: Values = Values::new(
    "UPDATE messages SET status = 'sent', sent_at = v.at, updated_at = v.at, provider_message_id = v.pid, \
     error_message = NULL FROM (SELECT column1 AS id, column2 AS attempt, column3 AS pid, column4 AS at FROM (VALUES ",
    4,
    ") AS t) AS v WHERE messages.id = v.id AND messages.attempts = v.attempt AND messages.status = 'queued' \
     RETURNING messages.id, messages.account_id, messages.batch_id, messages.created_at, messages.notify_url",
);

/// See [`crate::Store::record_sent_part`].
pub(crate) async fn record_sent_part(
    tx: &mut impl Tx,
    message: MessageId,
    part: u32,
    provider_ref: &str,
    at: Timestamp,
) -> Result<()> {
    let params = [provider_ref.into(), message.into(), part.into(), MessageStatus::Sent.as_str().into(), at.into()];
    tx.fetch_all::<(Uuid, String)>(INSERT_PARTS.sql(1), &params).await?;
    Ok(())
}

/// See [`crate::Store::sent_parts`].
pub(crate) async fn sent_parts(tx: &mut impl Tx, message: MessageId) -> Result<Vec<(u32, String)>> {
    let rows: Vec<(i64, String)> = tx
        .fetch_all(
            "SELECT part, provider_ref FROM message_parts WHERE message_id = $1 ORDER BY part",
            &[message.into()],
        )
        .await?;
    Ok(rows.into_iter().map(|(part, provider_ref)| (u32::try_from(part).unwrap_or(0), provider_ref)).collect())
}

/// Makes waiting retries due, several rows a statement: `$1` id, `$2` attempt, `$3` the retry
/// time recorded, `$4` now, per row.
static OFFER_AGAIN: Values = Values::new(
    "UPDATE messages SET next_attempt_at = v.now FROM (SELECT column1 AS id, column2 AS attempt, column3 AS due, \
     column4 AS now FROM (VALUES ",
    4,
    ") AS t) AS v WHERE messages.id = v.id AND messages.attempts = v.attempt AND messages.next_attempt_at = v.due \
     AND messages.status = 'queued' AND messages.next_attempt_at > v.now",
);

/// See [`crate::Store::offer_again`].
pub(crate) async fn offer_again(
    tx: &mut impl Tx,
    waiting: &[(MessageId, u32, Timestamp)],
    now: Timestamp,
) -> Result<u64> {
    let mut offered = 0;
    for chunk in chunked(waiting) {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 4);
        for (id, attempt, due) in chunk {
            push_row(&mut params, [(*id).into(), (*attempt).into(), (*due).into(), now.into()]);
        }
        offered += tx.execute(OFFER_AGAIN.sql(chunk.len()), &params).await?;
    }
    Ok(offered)
}

/// Records the parts of sent messages; a part that a receipt reached first keeps the
/// receipt's status. Returns each part's message and status.
static INSERT_PARTS: Values = Values::new(
    "INSERT INTO message_parts (provider_ref, message_id, part, status, at) VALUES ",
    5,
    " ON CONFLICT (provider_ref) DO UPDATE SET message_id = excluded.message_id, part = excluded.part \
     RETURNING message_id, status",
);

/// See [`crate::Store::record_results`].
pub(crate) async fn record_results(tx: &mut impl Tx, results: &[DispatchResult]) -> Result<Vec<MessageId>> {
    let mut changed = Vec::with_capacity(results.len());
    let mut fx = Effects::default();
    let sent: Vec<(&DispatchResult, &str, &[String])> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            DispatchOutcome::Sent { provider_message_id, parts } => {
                Some((r, provider_message_id.as_str(), parts.as_slice()))
            }
            _ => None,
        })
        .collect();
    let mut new_parts = NewParts::default();
    // (reference, message, part number, time) of the parts of the messages sent.
    let mut parts: Vec<(String, Uuid, u32, Timestamp)> = Vec::new();
    let mut sent_at: HashMap<Uuid, Timestamp> = HashMap::new();
    for chunk in chunked(&sent) {
        // One statement per chunk: at full load most results are sends.
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 4);
        for (r, pid, _) in chunk {
            push_row(&mut params, [r.id.into(), r.attempt.into(), (*pid).into(), r.at.into()]);
        }
        let updated: Vec<Changed> = tx.fetch_all(MARK_SENT.sql(chunk.len()), &params).await?;
        let mut updated: HashMap<MessageId, Changed> = updated.into_iter().map(|m| (m.id, m)).collect();
        for (r, pid, message_parts) in chunk {
            // The first result for a message is the one that applied.
            let Some(m) = updated.remove(&r.id) else { continue };
            fx.moved(&m, MessageStatus::Queued, MessageStatus::Sent, None, r.at);
            fx.tally.sent_at(m.batch, r.at);
            changed.push(r.id);
            sent_at.insert(r.id.as_uuid(), r.at);
            for (part_ref, part) in new_parts.of(pid, message_parts) {
                parts.push((part_ref, r.id.as_uuid(), part, r.at));
            }
        }
    }
    let mut early: BTreeSet<Uuid> = BTreeSet::new();
    for chunk in chunked(&parts) {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 5);
        for (part_ref, message, part, at) in chunk {
            let sent = MessageStatus::Sent.as_str();
            push_row(&mut params, [part_ref.into(), (*message).into(), (*part).into(), sent.into(), (*at).into()]);
        }
        let stored: Vec<(Uuid, String)> = tx.fetch_all(INSERT_PARTS.sql(chunk.len()), &params).await?;
        early.extend(stored.into_iter().filter(|(_, s)| s != MessageStatus::Sent.as_str()).map(|(m, _)| m));
    }
    // Messages a receipt reached before their submission was recorded may settle now.
    for id in early {
        let at = sent_at.get(&id).copied().unwrap_or_else(Timestamp::now);
        settle_message(tx, MessageId::from_uuid(id), at, &mut fx).await?;
    }
    for r in results {
        match &r.outcome {
            // Sent results are applied in bulk above.
            DispatchOutcome::Sent { .. } => {}
            DispatchOutcome::Retry { next_attempt_at, error, unavailable } => {
                let done = tx
                    .execute(
                        "UPDATE messages SET next_attempt_at = $1, error_message = $2, updated_at = $3, \
                         unavailable_attempts = unavailable_attempts + $6 \
                         WHERE id = $4 AND status = 'queued' AND attempts = $5",
                        &[
                            (*next_attempt_at).into(),
                            error.as_str().into(),
                            r.at.into(),
                            r.id.into(),
                            r.attempt.into(),
                            u32::from(*unavailable).into(),
                        ],
                    )
                    .await?;
                if done == 1 {
                    changed.push(r.id);
                }
            }
            DispatchOutcome::Failed { .. } | DispatchOutcome::Expired => {
                let Some((status, error_type, message, refund)) = r.outcome.ending() else { continue };
                let ended: Option<Charged> = tx
                    .fetch_optional(
                        concat!(
                            "UPDATE messages SET status = $6, error_type = $1, error_message = $2, updated_at = $3 \
                             WHERE id = $4 AND status = 'queued' AND attempts = $5 RETURNING sms_charged, mms_charged, ",
                            changed_columns!()
                        ),
                        &[
                            error_type.map(|t| t.as_str()).into(),
                            message.into(),
                            r.at.into(),
                            r.id.into(),
                            r.attempt.into(),
                            status.as_str().into(),
                        ],
                    )
                    .await?;
                let Some(Charged(charged, m)) = ended else { continue };
                fx.moved(&m, MessageStatus::Queued, status, error_type, r.at);
                changed.push(r.id);
                if refund {
                    fx.refund(&m, charged, r.at);
                }
            }
        }
    }
    finish(tx, fx).await?;
    Ok(changed)
}
