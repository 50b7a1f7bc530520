//! The records the store reads and writes.

use std::fmt;
use std::sync::Arc;

use switchboard_domain::{
    AccountId, BatchId, Direction, Encoding, ErrorType, MessageId, MessageKind, MessageStatus, Timestamp,
};
use switchboard_ledger::{Credits, EntryKind};
use uuid::Uuid;

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Id.
    pub id: AccountId,
    /// Display name.
    pub name: String,
    /// Balances.
    pub balance: Credits,
    /// Requests per second it may make to the rate-limited API; `None` means the default.
    pub rate_limit: Option<u32>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// An API key; the secret only as its keyed hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Key id.
    pub id: String,
    /// Owner.
    pub account_id: AccountId,
    /// Label.
    pub name: Option<String>,
    /// HMAC-SHA256 of the secret under the server secret.
    pub secret_hash: Vec<u8>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Revocation time.
    pub revoked_at: Option<Timestamp>,
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("name", &self.name)
            .field("secret_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// A sender number assigned to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRecord {
    /// E.164 address.
    pub address: String,
    /// Owner.
    pub account_id: AccountId,
    /// Whether it may send.
    pub active: bool,
    /// SMS capable.
    pub sms: bool,
    /// MMS capable.
    pub mms: bool,
    /// When it was assigned.
    pub created_at: Timestamp,
}

impl SenderRecord {
    /// Whether it can send this kind of message.
    pub fn can_send(&self, kind: MessageKind) -> bool {
        match kind {
            MessageKind::Sms => self.sms,
            MessageKind::Mms => self.mms,
        }
    }
}

/// A change to a sender; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderChange {
    /// Active.
    pub active: Option<bool>,
    /// SMS capable.
    pub sms: Option<bool>,
    /// MMS capable.
    pub mms: Option<bool>,
}

/// An immutable ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    /// Id (UUIDv7, so entries sort by time).
    pub id: Uuid,
    /// Account.
    pub account_id: AccountId,
    /// Top-up, charge or refund.
    pub kind: EntryKind,
    /// Signed change.
    pub delta: Credits,
    /// Balances right after.
    pub balance_after: Credits,
    /// The message it is for.
    pub message_id: Option<MessageId>,
    /// A top-up's reference.
    pub reference: Option<String>,
    /// When.
    pub created_at: Timestamp,
}

impl LedgerRecord {
    /// The entry for a charge or a refund of one message, written at `at`.
    pub fn for_message(
        kind: EntryKind,
        account_id: AccountId,
        message: MessageId,
        delta: Credits,
        balance_after: Credits,
        at: Timestamp,
    ) -> Self {
        LedgerRecord {
            id: Uuid::now_v7(),
            account_id,
            kind,
            delta,
            balance_after,
            message_id: Some(message),
            reference: None,
            created_at: at,
        }
    }
}

/// An opt-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutRecord {
    /// Sender number.
    pub sender: String,
    /// Suppressed recipient.
    pub recipient: String,
    /// Account of the sender.
    pub account_id: AccountId,
    /// When.
    pub created_at: Timestamp,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Id.
    pub id: MessageId,
    /// Owner.
    pub account_id: AccountId,
    /// Direction.
    pub direction: Direction,
    /// SMS or MMS.
    pub kind: MessageKind,
    /// Recipient.
    pub to: String,
    /// Sender.
    pub from: String,
    /// Text.
    pub body: Option<String>,
    /// Media URLs of an MMS, in order.
    pub media: Vec<String>,
    /// Encoding of the text.
    pub encoding: Encoding,
    /// Parts.
    pub segments: u32,
    /// Status.
    pub status: MessageStatus,
    /// Error type of a failure.
    pub error_type: Option<ErrorType>,
    /// Error message of a failure or of the last retryable error.
    pub error_message: Option<String>,
    /// Credits charged and not refunded.
    pub charged: Credits,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the request's content, to tell a replay from a conflicting reuse of a key.
    pub request_hash: Option<Vec<u8>>,
    /// Dispatch attempts.
    pub attempts: u32,
    /// When the dispatcher may next take it (while queued).
    pub next_attempt_at: Timestamp,
    /// The upstream's id.
    pub provider_message_id: Option<String>,
    /// Creation.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// When the provider took it.
    pub sent_at: Option<Timestamp>,
    /// The multi-recipient send request it belongs to.
    pub batch_id: Option<BatchId>,
    /// The channel it was sent on.
    pub channel_id: Option<Uuid>,
    /// When it ends expired if it has not been sent by then.
    pub expires_at: Option<Timestamp>,
    /// The dialect's own fields of the request, as a JSON object.
    pub details: Option<String>,
}

impl MessageRecord {
    /// The first media URL, if any.
    pub fn media_url(&self) -> Option<&str> {
        self.media.first().map(String::as_str)
    }
}

/// One status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Message.
    pub message_id: MessageId,
    /// Status entered.
    pub status: MessageStatus,
    /// Error type, for failures.
    pub error_type: Option<ErrorType>,
    /// When.
    pub at: Timestamp,
}

/// A message to admit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Id to give it.
    pub id: MessageId,
    /// Owner.
    pub account_id: AccountId,
    /// SMS or MMS.
    pub kind: MessageKind,
    /// Recipient.
    pub to: String,
    /// Sender.
    pub from: String,
    /// Text.
    pub body: Option<String>,
    /// Media URLs of an MMS, in order.
    pub media: Vec<String>,
    /// Encoding.
    pub encoding: Encoding,
    /// Parts.
    pub segments: u32,
    /// What it costs.
    pub price: Credits,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the request's content.
    pub request_hash: Vec<u8>,
    /// Creation time.
    pub created_at: Timestamp,
    /// If set, the message is stored already claimed for its first attempt, leased until this
    /// time, because the admitting node dispatches it itself; if that node dies, the lease runs
    /// out and any dispatcher claims it. If unset, it is stored due at once.
    pub claim_until: Option<Timestamp>,
    /// The multi-recipient send request it is one recipient of. The messages of one request
    /// are submitted together, in one [`crate::Store::accept`] call, and admitted all or none.
    pub batch: Option<Arc<NewBatch>>,
    /// The channel it is sent on.
    pub channel_id: Option<Uuid>,
    /// If set, the message is stored `scheduled` and becomes due at this time.
    pub scheduled_for: Option<Timestamp>,
    /// If set, the message ends `expired` (and is refunded) if it has not been sent by then.
    pub expires_at: Option<Timestamp>,
    /// The dialect's own fields of the request, as a JSON object.
    pub details: Option<String>,
}

/// A multi-recipient send request to store with its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    /// Id.
    pub id: BatchId,
    /// Owner.
    pub account_id: AccountId,
    /// SMS or MMS.
    pub kind: MessageKind,
    /// Sender.
    pub from: String,
    /// Text.
    pub body: Option<String>,
    /// How many recipients (messages) it has.
    pub recipients: u32,
    /// The first recipient's message.
    pub first_message_id: MessageId,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A stored multi-recipient send request, with how its recipients' messages stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// Id.
    pub id: BatchId,
    /// Owner.
    pub account_id: AccountId,
    /// SMS or MMS.
    pub kind: MessageKind,
    /// Sender.
    pub from: String,
    /// Text.
    pub body: Option<String>,
    /// Recipients.
    pub recipients: u32,
    /// The first recipient's message.
    pub first_message_id: MessageId,
    /// Recipients whose message the provider took (sent or delivered).
    pub sent: u32,
    /// Recipients whose message failed (opted out, refused, undelivered, expired).
    pub failed: u32,
    /// When the provider took the first recipient's message.
    pub sent_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
}

impl BatchRecord {
    /// Recipients whose message has not reached sent or failed yet.
    pub fn pending(&self) -> u32 {
        self.recipients.saturating_sub(self.sent + self.failed)
    }

    /// Where the request stands as a whole.
    pub fn state(&self) -> BatchState {
        if self.pending() > 0 {
            BatchState::Pending
        } else if self.sent == 0 {
            BatchState::Failed
        } else {
            BatchState::Sent
        }
    }
}

/// Where a multi-recipient send request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// Some recipients are still on their way to the provider.
    Pending,
    /// Every recipient is settled and at least one was sent.
    Sent,
    /// Every recipient failed.
    Failed,
}

/// Outbound messages created in a time range, by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// (status, count), each status at most once.
    pub by_status: Vec<(MessageStatus, i64)>,
}

impl MessageCounts {
    /// All messages.
    pub fn total(&self) -> i64 {
        self.by_status.iter().map(|(_, n)| n).sum()
    }

    /// Messages in any of `statuses`.
    pub fn count(&self, statuses: &[MessageStatus]) -> i64 {
        self.by_status.iter().filter(|(s, _)| statuses.contains(s)).map(|(_, n)| n).sum()
    }

    /// Messages whose status falls in `group`.
    pub fn in_group(&self, group: switchboard_domain::StatusGroup) -> i64 {
        self.by_status.iter().filter(|(s, _)| s.group() == group).map(|(_, n)| n).sum()
    }
}

/// What [`crate::Store::accept`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Stored, charged, and queued (or scheduled, if it has a schedule).
    Queued(MessageRecord),
    /// Stored as failed because the recipient opted out; nothing charged.
    OptedOut(MessageRecord),
    /// The idempotency key was used before with the same content: the earlier message.
    Replayed(MessageRecord),
    /// The idempotency key was used before with different content. Nothing stored.
    IdempotencyConflict,
    /// The sender is not assigned to the account. Nothing stored.
    SenderNotAssigned,
    /// The sender is not active. Nothing stored.
    SenderInactive,
    /// The sender cannot send this kind of message. Nothing stored.
    SenderNotCapable,
    /// The balance cannot pay. Nothing stored or charged.
    InsufficientCredits,
}

/// What a dispatch attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// The provider took it.
    Sent {
        /// The provider's id.
        provider_message_id: String,
    },
    /// Try again at this time.
    Retry {
        /// When.
        next_attempt_at: Timestamp,
        /// The error that caused the retry.
        error: String,
    },
    /// Not sent within its validity: ends `expired`, refunded.
    Expired,
    /// Failed for good.
    Failed {
        /// Classification.
        error_type: ErrorType,
        /// Description.
        message: String,
        /// Whether to refund the charge (with a ledger entry).
        refund: bool,
    },
}

impl DispatchOutcome {
    /// For an outcome that ends the message unsent: the status it ends in, its error type,
    /// the error message, and whether its charge is refunded.
    pub fn ending(&self) -> Option<(MessageStatus, Option<ErrorType>, &str, bool)> {
        match self {
            DispatchOutcome::Failed { error_type, message, refund } => {
                Some((MessageStatus::Failed, Some(*error_type), message, *refund))
            }
            DispatchOutcome::Expired => Some((MessageStatus::Expired, None, EXPIRED_MESSAGE, true)),
            _ => None,
        }
    }
}

/// The error message of a message that ended expired.
pub const EXPIRED_MESSAGE: &str = "not sent within its validity period";

/// One dispatch attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchResult {
    /// Message.
    pub id: MessageId,
    /// Owner (for the refund).
    pub account_id: AccountId,
    /// The attempt number the claim gave.
    pub attempt: u32,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub outcome: DispatchOutcome,
}

/// A sending channel of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    /// Id.
    pub id: Uuid,
    /// Owner.
    pub account_id: AccountId,
    /// Display name.
    pub name: String,
    /// The sender number it sends from.
    pub sender: String,
    /// Whether it may send.
    pub active: bool,
    /// Whether its sender can send MMS.
    pub mms: bool,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A change to a channel; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelChange {
    /// Display name.
    pub name: Option<String>,
    /// Active.
    pub active: Option<bool>,
}

/// A message template with its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// Id (Bird's template `projectId`).
    pub id: Uuid,
    /// Owner.
    pub account_id: AccountId,
    /// Name, unique in the account.
    pub name: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Its versions, oldest first.
    pub versions: Vec<TemplateVersionRecord>,
}

/// One immutable version of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVersionRecord {
    /// Id (Bird's template `version`).
    pub id: Uuid,
    /// The template.
    pub template_id: Uuid,
    /// Its text per locale, ordered by locale.
    pub texts: std::collections::BTreeMap<String, String>,
    /// Whether it may be sent.
    pub active: bool,
    /// Creation time.
    pub created_at: Timestamp,
}
