//! Delivery receipts: storing them against the parts of sent messages, and settling a message
//! once its parts say how it ended (the rule is [`crate::rules::receipts::settle`]).

use switchboard_domain::{MessageId, MessageStatus, Timestamp};
use switchboard_ledger::Credits;

use super::{Effects, finish};
use crate::engine::{Param, Tx};
use crate::rows::{Changed, PART_COLUMNS, PENDING_PARTS};
use crate::rules::receipts::{self, PartState};
use crate::{PartRecord, PendingPart, ReceiptOutcome, ReceiptUpdate, Result};

/// Stores a receipt for a part. It changes a part only from `sent`, or stores a part with no
/// message yet; it returns the part's message (NULL for a new, unmatched part), and no row if
/// the part was final already.
const UPSERT_RECEIPT: &str = "INSERT INTO message_parts \
     (provider_ref, message_id, part, status, error_type, description, at) VALUES ($1, NULL, NULL, $2, $3, $4, $5) \
     ON CONFLICT (provider_ref) DO UPDATE SET status = excluded.status, error_type = excluded.error_type, \
     description = excluded.description, at = excluded.at WHERE message_parts.status = 'sent' RETURNING message_id";

/// See [`crate::Store::record_receipts`].
pub(crate) async fn record(tx: &mut impl Tx, receipts: &[ReceiptUpdate]) -> Result<Vec<ReceiptOutcome>> {
    let refs: Vec<&str> =
        receipts.iter().filter(|r| receipts::is_receipt_status(r.status)).map(|r| r.provider_ref.as_str()).collect();
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
    let mut fx = Effects::default();
    let mut out = Vec::with_capacity(receipts.len());
    for r in receipts {
        if !receipts::is_receipt_status(r.status) {
            out.push(ReceiptOutcome::Ignored);
            continue;
        }
        let params = [
            r.provider_ref.as_str().into(),
            r.status.as_str().into(),
            r.error_type.map(|t| t.as_str()).into(),
            (&r.description).into(),
            r.at.into(),
        ];
        let part: Option<(Option<MessageId>,)> = tx.fetch_optional(UPSERT_RECEIPT, &params).await?;
        out.push(match part {
            None => ReceiptOutcome::Ignored,
            Some((None,)) => ReceiptOutcome::Unmatched,
            Some((Some(message),)) => receipts::applied(message, settle_message(tx, message, r.at, &mut fx).await?),
        });
    }
    finish(tx, fx).await?;
    Ok(out)
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
