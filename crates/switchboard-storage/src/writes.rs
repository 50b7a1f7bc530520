//! The write half of a store, implemented per backend: PostgreSQL through sqlx, SQLite on a
//! dedicated writer thread. The read half is shared (see `common`).

use switchboard_domain::{AccountId, BatchId, ErrorType, MessageId, MessageStatus, Timestamp};
use switchboard_ledger::Credits;
use uuid::Uuid;

use crate::outbox::Outbox;
use crate::tally::Tally;

use crate::{
    AcceptOutcome, AccountRecord, ApiKeyRecord, DeliveryOutcome, DeliveryRecord, DeliveryResult, DeliveryState,
    DispatchResult, EventRecord, LedgerRecord, MessageRecord, NewInbound, NewMessage, NewReply, OptOutChange,
    OptOutRecord, ReceiptOutcome, ReceiptUpdate, Result, SenderChange, SenderRecord,
};

/// The store operations that write, each one transaction. Contracts as on [`crate::Store`].
#[async_trait::async_trait]
pub(crate) trait Writes {
    async fn create_account(&self, name: &str) -> Result<AccountRecord>;
    async fn set_rate_limit(&self, account: AccountId, limit: Option<u32>) -> Result<AccountRecord>;
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn revoke_api_key(&self, account: AccountId, id: &str, at: Timestamp) -> Result<ApiKeyRecord>;
    async fn create_sender(&self, s: &SenderRecord) -> Result<()>;
    async fn update_sender(&self, account: AccountId, address: &str, c: SenderChange) -> Result<SenderRecord>;
    async fn top_up(&self, account: AccountId, amount: Credits, reference: Option<&str>) -> Result<LedgerRecord>;
    async fn add_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<OptOutRecord>;
    async fn remove_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<()>;
    async fn accept(&self, batch: &[NewMessage]) -> Result<Vec<AcceptOutcome>>;
    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<MessageRecord>>;
    async fn record_results(&self, results: &[DispatchResult]) -> Result<Vec<MessageId>>;
    async fn cancel_scheduled(&self, account: AccountId, id: MessageId, at: Timestamp) -> Result<()>;
    async fn record_receipts(&self, receipts: &[ReceiptUpdate]) -> Result<Vec<ReceiptOutcome>>;
    /// Stores what [`crate::Store::receive_inbound`] stores; returns whether the opt-out list
    /// changed (the caller reads the messages back).
    async fn receive_inbound(
        &self,
        inbound: &NewInbound,
        change: OptOutChange,
        reply: Option<&NewReply>,
    ) -> Result<bool>;
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        busy: &[String],
    ) -> Result<Vec<DeliveryRecord>>;
    async fn record_deliveries(&self, results: &[DeliveryResult]) -> Result<()>;
    async fn scrub(&self) -> Result<()>;
    /// Runs statements in one transaction; returns the rows each changed. A uniqueness
    /// violation is `Conflict`.
    async fn write(&self, statements: Vec<Statement>) -> Result<Vec<u64>>;
}

/// One SQL statement (`$n` placeholders, valid on both backends) and its parameters.
pub(crate) type Statement = (&'static str, Vec<Param>);

/// A statement parameter.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Uuid(uuid::Uuid),
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

/// A message whose status a write changes, as the effects of the change need to know it.
#[derive(Debug, Clone)]
pub(crate) struct Changed {
    pub(crate) id: MessageId,
    pub(crate) account: AccountId,
    pub(crate) batch: Option<BatchId>,
    pub(crate) created_at: Timestamp,
    pub(crate) notify_url: Option<String>,
}

/// The columns [`Changed::from_row`] reads, first in every `RETURNING` that changes a status.
macro_rules! changed_columns {
    () => {
        "id, account_id, batch_id, created_at, notify_url"
    };
}
pub(crate) use changed_columns;

/// Whether a scheduled message's recipient has opted out of its sender, in an `UPDATE messages`.
macro_rules! opted_out {
    () => {
        "EXISTS (SELECT 1 FROM opt_outs o WHERE o.sender = messages.sender AND o.recipient = messages.recipient)"
    };
}
pub(crate) use opted_out;

impl Changed {
    /// A message about to be stored.
    pub(crate) fn of(m: &MessageRecord) -> Self {
        Changed {
            id: m.id,
            account: m.account_id,
            batch: m.batch_id,
            created_at: m.created_at,
            notify_url: m.notify_url.clone(),
        }
    }

    /// The [`changed_columns!`] of a row.
    pub(crate) fn from_row(
        id: Uuid,
        account: Uuid,
        batch: Option<Uuid>,
        created_at: i64,
        notify_url: Option<String>,
    ) -> Self {
        Changed {
            id: MessageId::from_uuid(id),
            account: AccountId::from_uuid(account),
            batch: batch.map(BatchId::from_uuid),
            created_at: Timestamp::from_millis(created_at),
            notify_url,
        }
    }
}

/// A refund to give: (account, message, amount, when).
pub(crate) type Refund = (AccountId, MessageId, Credits, Timestamp);

/// What a write transaction records beside the rows it changes: status events, running counts,
/// webhook deliveries and refunds. Each backend applies them as the last steps before it
/// commits: events, deliveries, refunds in (account, message) order, and the counts last (see
/// `tally` on why that order cannot deadlock).
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) events: Vec<EventRecord>,
    pub(crate) tally: Tally,
    pub(crate) outbox: Outbox,
    pub(crate) refunds: Vec<Refund>,
}

impl Effects {
    /// `m` entered `status` at `at`: its event and webhook deliveries (counts are the caller's).
    pub(crate) fn event(&mut self, m: &Changed, status: MessageStatus, error_type: Option<ErrorType>, at: Timestamp) {
        self.events.push(EventRecord { message_id: m.id, status, error_type, at });
        self.outbox.note(m.account, m.id, status, error_type, at, m.notify_url.as_deref());
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

    /// Gives `amount` charged for `m` back, if it is not zero.
    pub(crate) fn refund(&mut self, m: &Changed, amount: Credits, at: Timestamp) {
        if !amount.is_zero() {
            self.refunds.push((m.account, m.id, amount, at));
        }
    }

    /// The refunds in the order they are applied (accounts are locked in a fixed order).
    pub(crate) fn sorted_refunds(&mut self) -> Vec<Refund> {
        let mut refunds = std::mem::take(&mut self.refunds);
        refunds.sort_by_key(|(a, m, _, _)| (*a, *m));
        refunds
    }
}

/// The statement that zeroes a refunded message's charge (the same on both backends).
pub(crate) const ZERO_CHARGE: &str = "UPDATE messages SET sms_charged = 0, mms_charged = 0 WHERE id = $1";

/// The statement that stores a receipt for a part (the same on both backends). It changes a
/// part only from `sent`, or stores a part with no message yet; it returns the part's message
/// (NULL for a new, unmatched part), and no row if the part was final already.
pub(crate) const UPSERT_RECEIPT: &str = "INSERT INTO message_parts \
     (provider_ref, message_id, part, status, error_type, description, at) VALUES ($1, NULL, NULL, $2, $3, $4, $5) \
     ON CONFLICT (provider_ref) DO UPDATE SET status = excluded.status, error_type = excluded.error_type, \
     description = excluded.description, at = excluded.at WHERE message_parts.status = 'sent' RETURNING message_id";

/// The statement that lifts a delivery's claim without counting the attempt:
/// `$1` due time, `$2` event, `$3` target, `$4` attempt.
pub(crate) const RELEASE_DELIVERY: &str = "UPDATE webhook_deliveries SET attempts = attempts - 1, \
     next_attempt_at = $1 WHERE event_id = $2 AND target = $3 AND state = 'pending' AND attempts = $4";

/// The statement that stores an attempt's outcome: `$1` state, `$2` next due time (or NULL to
/// keep it), `$3` HTTP status, `$4` error, `$5` time, `$6` event, `$7` target, `$8` attempt.
pub(crate) const FINISH_DELIVERY: &str = "UPDATE webhook_deliveries SET state = $1, \
     next_attempt_at = COALESCE($2, next_attempt_at), last_status = $3, last_error = $4, updated_at = $5 \
     WHERE event_id = $6 AND target = $7 AND state = 'pending' AND attempts = $8";

/// The statement that adds an attempt to a delivery's history.
pub(crate) const INSERT_ATTEMPT: &str = "INSERT INTO webhook_attempts \
     (event_id, target, attempt, at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (event_id, target, attempt) DO NOTHING";

/// For an outcome other than `Release`: the state the delivery enters and its next due time.
pub(crate) fn delivery_change(outcome: &DeliveryOutcome) -> Option<(DeliveryState, Option<Timestamp>)> {
    match outcome {
        DeliveryOutcome::Delivered => Some((DeliveryState::Delivered, None)),
        DeliveryOutcome::Retry { next_attempt_at } => Some((DeliveryState::Pending, Some(*next_attempt_at))),
        DeliveryOutcome::Failed => Some((DeliveryState::Failed, None)),
        DeliveryOutcome::Release => None,
    }
}

/// Delivery results in the order they are applied: by delivery (so that concurrent calls lock
/// rows in one order), keeping the given order of results for one delivery.
pub(crate) fn sorted_results(results: &[DeliveryResult]) -> Vec<&DeliveryResult> {
    let mut sorted: Vec<&DeliveryResult> = results.iter().collect();
    sorted.sort_by(|a, b| (a.event_id, &a.target).cmp(&(b.event_id, &b.target)));
    sorted
}

/// When a finished attempt last changed its delivery: when the attempt ended.
pub(crate) fn finished_at(r: &DeliveryResult) -> Timestamp {
    r.record.at.plus_millis(i64::from(r.record.duration_ms))
}
