//! Delivery receipts: storing them against the parts of sent messages, and settling a message
//! once its parts say how it ended (the rule is [`crate::rules::receipts::settle`]).

use switchboard_domain::{MessageId, MessageStatus, Timestamp};
use switchboard_ledger::Credits;

use std::collections::{HashMap, HashSet};

use super::{Effects, finish};
use crate::engine::{FromRow, Param, Tx, Values, chunked, push_row};
use crate::rows::{Changed, PART_COLUMNS, PENDING_PARTS, corrupt};
use crate::rules::receipts::{self, PartState, Settlement};
use crate::{PartRecord, PendingPart, ReceiptOutcome, ReceiptUpdate, Result};

/// Stores receipts for parts, several rows a statement: `$1` reference, `$2` status, `$3`
/// error type, `$4` description, `$5` time, per row. A receipt changes a part only from
/// `sent`, or stores a part with no message yet (message and part number NULL); each part it
/// changed or stored comes back with its message (NULL for a new, unmatched part), and none
/// for a part that was final already.
static UPSERT_RECEIPTS: Values = Values::new(
    "INSERT INTO message_parts (provider_ref, status, error_type, description, at) VALUES ",
    5,
    " ON CONFLICT (provider_ref) DO UPDATE SET status = excluded.status, error_type = excluded.error_type, \
     description = excluded.description, at = excluded.at WHERE message_parts.status = 'sent' \
     RETURNING provider_ref, message_id, part",
);

/// The messages receipts reached, by id (`$n` each), with what settling needs of them.
static REACHED: Values = Values::new(
    concat!(
        "SELECT m.status, m.sent_at, m.sms_charged, m.mms_charged, a.refund_carrier_failures, ",
        "m.id, m.account_id, m.batch_id, m.created_at, m.notify_url FROM messages m JOIN accounts a ",
        "ON a.id = m.account_id WHERE m.id IN (VALUES "
    ),
    1,
    ")",
);

/// The parts of the messages receipts reached, by message id (`$n` each).
static REACHED_PARTS: Values = Values::new(
    "SELECT message_id, part, status, error_type, description FROM message_parts WHERE message_id IN (VALUES ",
    1,
    ")",
);

/// Settles a message that is still `sent`.
const SETTLE: &str = "UPDATE messages SET status = $1, error_type = $2, error_message = $3, updated_at = $4 \
     WHERE id = $5 AND status = 'sent'";

/// What settling needs to know of a message a receipt reached.
struct Reached {
    status: MessageStatus,
    sent_at: Option<Timestamp>,
    charged: Credits,
    refund_failures: bool,
    changed: Changed,
    parts: Vec<PartState>,
}

/// See [`crate::Store::record_receipts`].
///
/// The receipts are stored together, and the messages they reach are read together; then
/// each receipt is applied in order to its message's parts as they stood before it, and the
/// first that settles a message settles it, exactly as applying them one at a time would.
pub(crate) async fn record(tx: &mut impl Tx, receipts: &[ReceiptUpdate]) -> Result<Vec<ReceiptOutcome>> {
    // A reference named twice in one call: its first receipt makes the part final, so the
    // later ones find it final and change nothing.
    let mut seen: HashSet<&str> = HashSet::new();
    let applies: Vec<bool> = receipts
        .iter()
        .map(|r| receipts::is_receipt_status(r.status) && seen.insert(r.provider_ref.as_str()))
        .collect();
    let first: Vec<&ReceiptUpdate> = receipts.iter().zip(&applies).filter(|(_, a)| **a).map(|(r, _)| r).collect();
    let refs: Vec<&str> = first.iter().map(|r| r.provider_ref.as_str()).collect();
    if !refs.is_empty() && tx.backend().locks_rows() {
        // The messages the receipts are for are locked first, in one order: concurrent calls
        // settle each message in turn (each seeing the parts the other changed), and do not
        // wait on each other's parts while holding a message.
        let sql = format!(
            "SELECT id FROM messages WHERE id IN (SELECT message_id FROM message_parts WHERE provider_ref {}) \
             ORDER BY id{}",
            tx.backend().in_list(1),
            tx.backend().for_update()
        );
        tx.query(&sql, &[Param::Texts(&refs)]).await?;
    }
    // Each reference's part as the receipt left it: (message, part number), or no entry when
    // the receipt changed nothing.
    let mut stored: HashMap<String, (Option<MessageId>, Option<i64>)> = HashMap::with_capacity(first.len());
    for chunk in chunked(&first) {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 5);
        for r in chunk {
            push_row(
                &mut params,
                [
                    r.provider_ref.as_str().into(),
                    r.status.as_str().into(),
                    r.error_type.map(|t| t.as_str()).into(),
                    (&r.description).into(),
                    r.at.into(),
                ],
            );
        }
        let rows: Vec<(String, Option<MessageId>, Option<i64>)> =
            tx.fetch_all(UPSERT_RECEIPTS.sql(chunk.len()), &params).await?;
        stored.extend(rows.into_iter().map(|(r, m, p)| (r, (m, p))));
    }
    let mut reached = reached(tx, &stored).await?;
    let mut fx = Effects::default();
    // Per receipt: its outcome, and the settlement it made, if any.
    let mut outcomes: Vec<(ReceiptOutcome, Option<usize>)> = Vec::with_capacity(receipts.len());
    let mut settled: Vec<(MessageId, Settlement, Timestamp)> = Vec::new();
    for (r, applies) in receipts.iter().zip(applies) {
        let entry = if applies { stored.get(r.provider_ref.as_str()) } else { None };
        let (message, part) = match entry {
            None => {
                outcomes.push((ReceiptOutcome::Ignored, None));
                continue;
            }
            Some((None, _)) => {
                outcomes.push((ReceiptOutcome::Unmatched, None));
                continue;
            }
            Some((Some(message), part)) => (*message, *part),
        };
        let Some(m) = reached.get_mut(&message) else {
            outcomes.push((receipts::applied(message, None), None));
            continue;
        };
        if let Some(p) = m.parts.iter_mut().find(|p| Some(i64::from(p.part)) == part) {
            p.status = r.status;
            p.error_type = r.error_type;
            p.description.clone_from(&r.description);
        }
        let settlement = (m.status == MessageStatus::Sent)
            .then(|| receipts::settle(&m.parts, m.charged, m.refund_failures))
            .flatten();
        match settlement {
            Some(s) => {
                m.status = s.status;
                outcomes.push((receipts::applied(message, None), Some(settled.len())));
                settled.push((message, s, receipts::settled_at(r.at, m.sent_at)));
            }
            None => outcomes.push((receipts::applied(message, None), None)),
        }
    }
    // One statement a settled message: SQLite runs a multi-row `UPDATE … FROM` that changes
    // the status in milliseconds, not microseconds.
    let mut done: HashSet<MessageId> = HashSet::with_capacity(settled.len());
    for (id, s, at) in &settled {
        let params = [
            s.status.as_str().into(),
            s.error_type.map(|t| t.as_str()).into(),
            (&s.error_message).into(),
            (*at).into(),
            (*id).into(),
        ];
        if tx.execute(SETTLE, &params).await? == 1 {
            done.insert(*id);
        }
    }
    for (id, s, at) in &settled {
        if !done.contains(id) {
            continue;
        }
        let Some(m) = reached.get(id) else { continue };
        fx.moved(&m.changed, MessageStatus::Sent, s.status, s.error_type, *at);
        if let Some(amount) = s.refund {
            fx.refund(&m.changed, amount, *at);
        }
    }
    finish(tx, fx).await?;
    Ok(outcomes
        .into_iter()
        .map(|(outcome, settlement)| match (outcome, settlement.map(|i| &settled[i])) {
            (ReceiptOutcome::Applied { message_id, .. }, Some((id, s, _))) if done.contains(id) => {
                receipts::applied(message_id, Some(s.status))
            }
            (outcome, _) => outcome,
        })
        .collect())
}

/// The messages the stored receipts reached, with their parts as they stood before these
/// receipts: a part a receipt changed was `sent` until then.
async fn reached(
    tx: &mut impl Tx,
    stored: &HashMap<String, (Option<MessageId>, Option<i64>)>,
) -> Result<HashMap<MessageId, Reached>> {
    let mut reached: HashMap<MessageId, Reached> = HashMap::new();
    // The messages are those the stored parts name: read by their ids, with no second look
    // at the parts by reference.
    let mut ids: Vec<MessageId> = stored.values().filter_map(|(m, _)| *m).collect();
    ids.sort();
    ids.dedup();
    for chunk in chunked(&ids) {
        let params: Vec<Param<'_>> = chunk.iter().map(|id| (*id).into()).collect();
        for mut row in tx.query(REACHED.sql(chunk.len()), &params).await? {
            let status: String = row.get()?;
            let status = MessageStatus::parse(&status).ok_or_else(|| corrupt("message status", status))?;
            let sent_at: Option<Timestamp> = row.get()?;
            let charged = Credits::new(row.get()?, row.get()?);
            let refund_failures: bool = row.get()?;
            let changed: Changed = FromRow::from_row(&mut row)?;
            reached
                .insert(changed.id, Reached { status, sent_at, charged, refund_failures, changed, parts: Vec::new() });
        }
    }
    let changed: HashSet<(MessageId, Option<i64>)> = stored.values().filter_map(|(m, p)| m.map(|m| (m, *p))).collect();
    for chunk in chunked(&ids) {
        let params: Vec<Param<'_>> = chunk.iter().map(|id| (*id).into()).collect();
        for mut row in tx.query(REACHED_PARTS.sql(chunk.len()), &params).await? {
            let message: MessageId = row.get()?;
            let mut part: PartState = FromRow::from_row(&mut row)?;
            if changed.contains(&(message, Some(i64::from(part.part)))) {
                part.status = MessageStatus::Sent;
                part.error_type = None;
                part.description = None;
            }
            if let Some(m) = reached.get_mut(&message) {
                m.parts.push(part);
            }
        }
    }
    for m in reached.values_mut() {
        m.parts.sort_by_key(|p| p.part);
    }
    Ok(reached)
}

/// Settles message `id` from its parts if it is still `sent` and they settle it (see
/// [`receipts::settle`]), locking it first; returns the status it entered.
pub(crate) async fn settle_message(
    tx: &mut impl Tx,
    id: MessageId,
    trigger: Timestamp,
    fx: &mut Effects,
) -> Result<Option<MessageStatus>> {
    let sql = format!(
        "SELECT m.status, m.sent_at, m.sms_charged, m.mms_charged, a.refund_carrier_failures, m.id, m.account_id, \
         m.batch_id, m.created_at, m.notify_url FROM messages m JOIN accounts a ON a.id = m.account_id \
         WHERE m.id = $1{}",
        tx.backend().for_update_of("m")
    );
    let Some(mut row) = tx.query(&sql, &[id.into()]).await?.into_iter().next() else { return Ok(None) };
    let status: String = row.get()?;
    if status != MessageStatus::Sent.as_str() {
        return Ok(None);
    }
    let sent_at: Option<Timestamp> = row.get()?;
    let charged = Credits::new(row.get()?, row.get()?);
    let refund_failures: bool = row.get()?;
    let m: Changed = crate::engine::FromRow::from_row(&mut row)?;
    let parts: Vec<PartState> = tx
        .fetch_all(
            "SELECT part, status, error_type, description FROM message_parts WHERE message_id = $1 ORDER BY part",
            &[id.into()],
        )
        .await?;
    let Some(s) = receipts::settle(&parts, charged, refund_failures) else { return Ok(None) };
    let at = receipts::settled_at(trigger, sent_at);
    let done = tx
        .execute(
            "UPDATE messages SET status = $1, error_type = $2, error_message = $3, updated_at = $4 \
             WHERE id = $5 AND status = 'sent'",
            &[
                s.status.as_str().into(),
                s.error_type.map(|t| t.as_str()).into(),
                (&s.error_message).into(),
                at.into(),
                id.into(),
            ],
        )
        .await?;
    if done == 0 {
        return Ok(None);
    }
    fx.moved(&m, MessageStatus::Sent, s.status, s.error_type, at);
    if let Some(amount) = s.refund {
        fx.refund(&m, amount, at);
    }
    Ok(Some(s.status))
}

/// See [`crate::Store::message_parts`].
pub(crate) async fn parts(tx: &mut impl Tx, id: MessageId) -> Result<Vec<PartRecord>> {
    let sql = format!("SELECT {PART_COLUMNS} FROM message_parts WHERE message_id = $1 ORDER BY part");
    tx.fetch_all(&sql, &[id.into()]).await
}

/// See [`crate::Store::pending_parts`].
pub(crate) async fn pending(
    tx: &mut impl Tx,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<PendingPart>> {
    tx.fetch_all(PENDING_PARTS, &[after.unwrap_or(prefix).into(), prefix.into(), limit.clamp(1, 1000).into()]).await
}
