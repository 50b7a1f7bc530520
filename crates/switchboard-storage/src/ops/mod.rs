//! Every store operation, written once over [`Tx`] and grouped by area. A [`crate::Store`]
//! method hands one of these functions to the engine, which runs it in one transaction.
//!
//! What a status change records beside its row (its event, webhook deliveries, running counts
//! and refund) is noted in [`Effects`] as the operation goes and written by [`finish`] as its
//! last step, so no operation can change a status without them.

pub(crate) mod accounts;
pub(crate) mod channels;
pub(crate) mod console;
pub(crate) mod dispatch;
pub(crate) mod ledger;
pub(crate) mod messages;
pub(crate) mod receipts;
pub(crate) mod retention;
pub(crate) mod scan;
pub(crate) mod smpp;
pub(crate) mod stats;
pub(crate) mod webhooks;

use switchboard_domain::{ErrorType, MessageStatus, Region, Timestamp};
use switchboard_ledger::{Credits, EntryKind};

use crate::engine::{Param, Tx, Values, chunked, push_row};
use crate::rows::{Changed, delivery_insert_columns, media_columns, message_columns};
use crate::rules::outbox::Outbox;
use crate::rules::tally::{self, Tally};
use crate::{DeliveryRecord, EventRecord, LedgerRecord, MessageRecord, Result, WebhookRecord};

/// A refund to give: (account, message, amount, when).
type Refund = (switchboard_domain::AccountId, switchboard_domain::MessageId, Credits, Timestamp);

/// What a write records beside the rows it changes: status events, running counts, webhook
/// deliveries and refunds, written by [`finish`].
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) events: Vec<EventRecord>,
    pub(crate) tally: Tally,
    outbox: Outbox,
    refunds: Vec<Refund>,
    /// Receipts for ESMEs that sent over SMPP and asked for them.
    smpp: Vec<crate::SmppDeliveryRecord>,
}

impl Effects {
    /// `m` entered `status` at `at`: its event and webhook deliveries (counts are the caller's).
    pub(crate) fn event(&mut self, m: &Changed, status: MessageStatus, error_type: Option<ErrorType>, at: Timestamp) {
        self.events.push(EventRecord { message_id: m.id, status, error_type, at });
        match m.notify_url.as_deref() {
            // A message sent over SMPP: its ESME hears of it by a receipt, not a webhook.
            Some(target) if target.starts_with("smpp:") => {
                self.outbox.note(m.account, m.id, status, error_type, at, None);
                self.smpp_receipt(m, target, status, error_type, at);
            }
            url => self.outbox.note(m.account, m.id, status, error_type, at, url),
        }
    }

    /// Queues the receipt of a final status for the ESME, as its `registered_delivery` asked
    /// (`target` is [`crate::SMPP_RECEIPT_FINAL`] or [`crate::SMPP_RECEIPT_FAILURE`]).
    fn smpp_receipt(
        &mut self,
        m: &Changed,
        target: &str,
        status: MessageStatus,
        error_type: Option<ErrorType>,
        at: Timestamp,
    ) {
        let wanted = match target {
            crate::SMPP_RECEIPT_FINAL => status.is_final(),
            crate::SMPP_RECEIPT_FAILURE => status.is_final() && status != MessageStatus::Delivered,
            _ => false,
        };
        if wanted && status != MessageStatus::Received {
            self.smpp.push(crate::SmppDeliveryRecord {
                id: uuid::Uuid::now_v7(),
                account_id: m.account,
                kind: crate::SmppDeliveryKind::Receipt,
                message_id: m.id,
                status,
                error_type,
                occurred_at: at,
                attempts: 0,
                next_attempt_at: at,
            });
        }
    }

    /// The outbound message `m` moved from `from` to `to` at `at`: its event, its webhook
    /// deliveries and its counts.
    pub(crate) fn moved(
        &mut self,
        m: &Changed,
        from: MessageStatus,
        to: MessageStatus,
        error_type: Option<ErrorType>,
        at: Timestamp,
    ) {
        self.tally.change(m.account, m.batch, m.created_at, from, to);
        self.event(m, to, error_type, at);
    }

    /// A new message stored: its counts (outbound only) and its first events.
    pub(crate) fn stored(&mut self, record: &MessageRecord, at: Timestamp) {
        self.tally.insert(record.account_id, record.batch_id, record.created_at, record.status);
        let m = Changed::of(record);
        for (status, error_type) in crate::rules::admission::initial_events(record) {
            self.event(&m, status, error_type, at);
        }
    }

    /// The charge of the new message `record` took its account's SMS balance below its
    /// threshold: an `account.balance_low` event.
    pub(crate) fn balance_low(&mut self, record: &MessageRecord, low: crate::BalanceLow) {
        self.outbox.note_balance_low(record.account_id, record.id, record.status, low, record.created_at);
    }

    /// Gives `amount` charged for `m` back, if it is not zero.
    pub(crate) fn refund(&mut self, m: &Changed, amount: Credits, at: Timestamp) {
        if !amount.is_zero() {
            self.refunds.push((m.account, m.id, amount, at));
        }
    }
}

/// The statement that zeroes a refunded message's charge.
const ZERO_CHARGE: &str = "UPDATE messages SET sms_charged = 0, mms_charged = 0 WHERE id = $1";

/// The active endpoints of an account, which an event is delivered to.
const ACTIVE_ENDPOINTS: &str = "SELECT id, account_id, url, secret, events, active, created_at \
     FROM webhook_endpoints WHERE account_id = $1 AND active";

/// Writes what a write noted beside its rows, as its last steps before committing: events,
/// webhook deliveries, refunds in (account, message) order (accounts are locked in a fixed
/// order), and the running counts last (see `tally` on why that order cannot deadlock).
pub(crate) async fn finish(tx: &mut impl Tx, mut fx: Effects) -> Result<()> {
    insert_events(tx, &fx.events).await?;
    smpp::insert_deliveries(tx, &fx.smpp).await?;
    if !fx.outbox.is_empty() {
        let mut endpoints: Vec<WebhookRecord> = Vec::new();
        for account in fx.outbox.accounts() {
            endpoints.extend(tx.fetch_all::<WebhookRecord>(ACTIVE_ENDPOINTS, &[account.into()]).await?);
        }
        insert_deliveries(tx, &fx.outbox.plan(&endpoints, Timestamp::now())).await?;
    }
    fx.refunds.sort_by_key(|(a, m, _, _)| (*a, *m));
    let mut entries = Vec::with_capacity(fx.refunds.len());
    for (account, message, amount, at) in fx.refunds {
        let after = ledger::apply_delta(tx, account, amount).await?;
        tx.execute(ZERO_CHARGE, &[message.into()]).await?;
        entries.push(LedgerRecord::for_message(EntryKind::Refund, account, message, amount, after, at));
    }
    ledger::insert_entries(tx, &entries).await?;
    apply_tally(tx, &fx.tally).await
}

/// Applies the running counts, row by row in key order; the last writes of a transaction.
async fn apply_tally(tx: &mut impl Tx, tally: &Tally) -> Result<()> {
    for (account, hour, status, n) in tally.count_changes() {
        tx.execute(tally::UPSERT_COUNT, &[account.into(), hour.into(), status.into(), n.into()]).await?;
    }
    for (account, slot, status, minute, n) in tally.minute_changes(Timestamp::now()) {
        tx.execute(tally::UPSERT_MINUTE, &[account.into(), slot.into(), status.into(), minute.into(), n.into()])
            .await?;
    }
    for (batch, sent, failed, sent_at) in tally.batch_changes() {
        tx.execute(tally::UPDATE_BATCH, &[sent.into(), failed.into(), sent_at.into(), batch.into()]).await?;
    }
    Ok(())
}

static INSERT_EVENTS: Values =
    Values::new("INSERT INTO message_events (message_id, status, error_type, at) VALUES ", 4, "");

async fn insert_events(tx: &mut impl Tx, events: &[EventRecord]) -> Result<()> {
    for chunk in chunked(events) {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 4);
        for e in chunk {
            push_row(
                &mut params,
                [e.message_id.into(), e.status.as_str().into(), e.error_type.map(|t| t.as_str()).into(), e.at.into()],
            );
        }
        tx.execute(INSERT_EVENTS.sql(chunk.len()), &params).await?;
    }
    Ok(())
}

static INSERT_MESSAGES: Values =
    Values::new(concat!("INSERT INTO messages (", message_columns!(), ") VALUES "), 33, "");

/// Stores new messages, in chunks of several rows.
pub(crate) async fn insert_messages(tx: &mut impl Tx, records: &[&MessageRecord]) -> Result<()> {
    for chunk in chunked(records) {
        let media: Vec<_> = chunk.iter().map(|m| media_columns(&m.media)).collect();
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 33);
        for (m, (media_url, media)) in chunk.iter().zip(&media) {
            push_row(
                &mut params,
                [
                    m.id.into(),
                    m.account_id.into(),
                    m.direction.as_str().into(),
                    m.kind.as_str().into(),
                    (&m.to).into(),
                    (&m.from).into(),
                    (&m.body).into(),
                    (*media_url).into(),
                    media.as_deref().into(),
                    m.encoding.as_str().into(),
                    m.segments.into(),
                    m.status.as_str().into(),
                    m.error_type.map(|t| t.as_str()).into(),
                    (&m.error_message).into(),
                    m.charged.sms.into(),
                    m.charged.mms.into(),
                    (&m.idempotency_key).into(),
                    (&m.request_hash).into(),
                    m.attempts.into(),
                    m.next_attempt_at.into(),
                    (&m.provider_message_id).into(),
                    m.created_at.into(),
                    m.updated_at.into(),
                    m.sent_at.into(),
                    m.batch_id.into(),
                    m.channel_id.into(),
                    m.expires_at.into(),
                    (&m.details).into(),
                    (&m.notify_url).into(),
                    m.unavailable_attempts.into(),
                    m.destination.as_ref().and_then(|d| d.region.as_ref()).map(Region::as_str).into(),
                    m.destination.map(|d| d.number_type.as_str()).into(),
                    m.request_id.as_deref().into(),
                ],
            );
        }
        tx.execute(INSERT_MESSAGES.sql(chunk.len()), &params).await?;
    }
    Ok(())
}

static INSERT_DELIVERIES: Values =
    Values::new(concat!("INSERT INTO webhook_deliveries (", delivery_insert_columns!(), ") VALUES "), 16, "");

/// An `account.balance_low` delivery: the columns of a message's, and what it reports.
const INSERT_BALANCE_DELIVERY: &str = concat!(
    "INSERT INTO webhook_deliveries (",
    delivery_insert_columns!(),
    ", sms_balance, sms_threshold) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
     $17, $18)"
);

/// The values of [`delivery_insert_columns`] for `d`.
fn delivery_row(d: &DeliveryRecord) -> [Param<'_>; 16] {
    [
        d.event_id.into(),
        d.target.as_str().into(),
        d.account_id.into(),
        d.endpoint_id.into(),
        d.url.as_str().into(),
        d.event_type.as_str().into(),
        d.message_id.into(),
        d.status.as_str().into(),
        d.error_type.map(|t| t.as_str()).into(),
        d.occurred_at.into(),
        d.state.as_str().into(),
        d.attempts.into(),
        d.next_attempt_at.into(),
        d.last_status.map(i64::from).into(),
        (&d.last_error).into(),
        d.updated_at.into(),
    ]
}

async fn insert_deliveries(tx: &mut impl Tx, deliveries: &[DeliveryRecord]) -> Result<()> {
    let (balance, messages): (Vec<&DeliveryRecord>, Vec<&DeliveryRecord>) =
        deliveries.iter().partition(|d| d.balance_low.is_some());
    for chunk in chunked(&messages) {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 16);
        for d in chunk {
            push_row(&mut params, delivery_row(d));
        }
        tx.execute(INSERT_DELIVERIES.sql(chunk.len()), &params).await?;
    }
    for d in balance {
        let low = d.balance_low.as_ref();
        let mut params: Vec<Param<'_>> = delivery_row(d).into();
        params.extend::<[Param<'_>; 2]>([low.map(|l| l.sms_credits).into(), low.map(|l| l.threshold).into()]);
        tx.execute(INSERT_BALANCE_DELIVERY, &params).await?;
    }
    Ok(())
}
