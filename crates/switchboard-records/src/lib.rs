//! The records that Switchboard's store reads and writes, as plain data.
//!
//! These are the values that cross the core: the store (`switchboard-storage`) reads and
//! writes them, the core takes and returns them, and the HTTP API turns them into its wire
//! shapes. They live in a crate of their own, free of SQL drivers and I/O, so that the layers
//! above the core can read them without depending on the storage crate, and so that the
//! storage crate's internals can change without touching them. `Store::…` in these docs means
//! the `switchboard_storage::Store` method of that name.

use std::fmt;
use std::sync::Arc;

use switchboard_domain::{
    AccountDestinations, AccountId, BatchId, Destination, Dialect, Direction, Encoding, ErrorType, EventId, EventType,
    MessageId, MessageKind, MessageStatus, Msisdn, SenderId, Timestamp,
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
    /// Whether messages the carrier reports undelivered or failed are refunded.
    pub refund_carrier_failures: bool,
    /// The countries it sends to and whether it accepts fixed-or-mobile numbers.
    pub destinations: AccountDestinations,
    /// The SMS balance below which a charge posts `account.balance_low`; `None` for no alert.
    pub low_balance_threshold: Option<i64>,
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

/// A sender assigned to an account: a number, or an alphanumeric sender ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRecord {
    /// Its number or name.
    pub address: SenderId,
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
    pub sender: SenderId,
    /// Suppressed recipient.
    pub recipient: Msisdn,
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
    pub to: Msisdn,
    /// Sender.
    pub from: SenderId,
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
    /// Of those, the attempts that found no upstream able to take it (not bound, throttling):
    /// they do not count toward the dispatcher's `max_attempts`.
    pub unavailable_attempts: u32,
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
    /// Where this message's own status notifications go.
    pub notify_url: Option<String>,
    /// What the lookup told of the recipient (outbound messages sent through the API).
    pub destination: Option<Destination>,
    /// The id of the HTTP request that created it, for its log lines.
    pub request_id: Option<String>,
}

impl MessageRecord {
    /// The first media URL, if any.
    pub fn media_url(&self) -> Option<&str> {
        self.media.first().map(String::as_str)
    }

    /// Where it came from, by what every message stores: an inbound message by its direction;
    /// a keyword reply, the only outbound message stored without a request hash; a Bird send by
    /// its channel; a Mudbase send by its multi-recipient request; an SMPP send by its empty
    /// request hash (it has no idempotency key to guard); and a TextingLine send otherwise.
    /// The store's search applies the same rule in SQL.
    pub fn dialect(&self) -> Dialect {
        match (&self.direction, &self.request_hash) {
            (Direction::Inbound, _) => Dialect::Inbound,
            (_, None) => Dialect::Reply,
            _ if self.channel_id.is_some() => Dialect::Bird,
            _ if self.batch_id.is_some() => Dialect::Mudbase,
            (_, Some(hash)) if hash.is_empty() => Dialect::Smpp,
            _ => Dialect::TextingLine,
        }
    }
}

/// The most rows a bounded scan ([`Store::ledger_entries`], [`Store::search_messages`])
/// examines for one page; a page that reaches it says so ([`Scanned::capped`]) and gives the
/// cursor to go on from.
pub const SCAN_CAP: u32 = 10_000;

/// One page of a bounded scan, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned<T> {
    /// What matched, newest first.
    pub items: Vec<T>,
    /// Where the next page starts (its items are older than this id), when there may be more.
    pub next: Option<Uuid>,
    /// Whether the scan stopped at [`SCAN_CAP`] rows examined before the page was full: the
    /// range is not searched to its end, and `next` goes on from where it stopped.
    pub capped: bool,
}

/// Which of an account's ledger entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerFilter {
    /// Only entries of this kind.
    pub kind: Option<EntryKind>,
    /// Only the entries of this message (its charge and refund).
    pub message: Option<MessageId>,
    /// Only entries made at or after this time.
    pub from: Option<Timestamp>,
    /// Only entries made before this time.
    pub to: Option<Timestamp>,
}

/// Which messages to find.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Only this account's (`None`: every account's, for the operator).
    pub account: Option<AccountId>,
    /// Only those to this number, matched whole.
    pub recipient: Option<Msisdn>,
    /// Only those in this status.
    pub status: Option<MessageStatus>,
    /// Only those that came this way.
    pub dialect: Option<Dialect>,
    /// Only those created at or after this time.
    pub from: Option<Timestamp>,
    /// Only those created before this time.
    pub to: Option<Timestamp>,
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
    pub to: Msisdn,
    /// Sender.
    pub from: SenderId,
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
    /// are submitted together, in one `Store::accept` call, and admitted all or none.
    pub batch: Option<Arc<NewBatch>>,
    /// The channel it is sent on.
    pub channel_id: Option<Uuid>,
    /// If set, the message is stored `scheduled` and becomes due at this time.
    pub scheduled_for: Option<Timestamp>,
    /// If set, the message ends `expired` (and is refunded) if it has not been sent by then.
    pub expires_at: Option<Timestamp>,
    /// The dialect's own fields of the request, as a JSON object.
    pub details: Option<String>,
    /// Where this message's own status notifications go.
    pub notify_url: Option<String>,
    /// What the lookup told of the recipient, stored with the message.
    pub destination: Option<Destination>,
    /// The id of the HTTP request that created it, for its log lines.
    pub request_id: Option<String>,
    /// The operator's rules refused the destination with this error: the message is stored
    /// `failed` and not charged. The account's own rules are applied where it is stored.
    pub refusal: Option<ErrorType>,
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
    pub from: SenderId,
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
    pub from: SenderId,
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

/// What `Store::accept` did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Stored, charged, and queued (or scheduled, if it has a schedule).
    Queued(MessageRecord),
    /// Stored as failed, and not charged: the recipient opted out, or the destination was
    /// refused (its `error_type` says which).
    Failed(MessageRecord),
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
        /// The provider's id for each part, in order, when it gives each part its own;
        /// empty means one part known by `provider_message_id`.
        parts: Vec<String>,
    },
    /// Try again at this time.
    Retry {
        /// When.
        next_attempt_at: Timestamp,
        /// The error that caused the retry.
        error: String,
        /// Whether no upstream could take it (the attempt does not count toward
        /// `max_attempts`).
        unavailable: bool,
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
    pub sender: SenderId,
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

/// One part (SMS segment) of a sent message, as the upstream knows it, with what its delivery
/// receipts said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    /// The upstream's id for the part.
    pub provider_ref: String,
    /// The message, once its submission is recorded (`None` for a receipt that came first).
    pub message_id: Option<MessageId>,
    /// Which part, from 1.
    pub part: Option<u32>,
    /// `sent` until a receipt says `delivered`, `undelivered` or `failed`.
    pub status: MessageStatus,
    /// The error type a failure receipt gave.
    pub error_type: Option<ErrorType>,
    /// The receipt's description of a failure.
    pub description: Option<String>,
    /// When the part last changed.
    pub at: Timestamp,
}

/// A part still waiting for its delivery receipt, with what its upstream needs to know to
/// report on it (see `Store::pending_parts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPart {
    /// The upstream's id for the part.
    pub provider_ref: String,
    /// The message.
    pub message_id: MessageId,
    /// Which part, from 1.
    pub part: u32,
    /// How many parts the message was recorded with.
    pub parts: u32,
    /// The message's recipient.
    pub to: Msisdn,
    /// When the submission was recorded.
    pub sent_at: Timestamp,
}

/// A delivery receipt for one part of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptUpdate {
    /// The upstream's id for the part (what its submission returned).
    pub provider_ref: String,
    /// `Delivered`, `Undelivered` or `Failed`; any other status is ignored.
    pub status: MessageStatus,
    /// Why it failed, for a failure.
    pub error_type: Option<ErrorType>,
    /// The upstream's description of a failure.
    pub description: Option<String>,
    /// When the upstream says it happened.
    pub at: Timestamp,
}

/// What `Store::record_receipts` did with one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The part changed. If that settled the message, `message_status` is its new status.
    Applied {
        /// The message.
        message_id: MessageId,
        /// The status the message entered, if it changed.
        message_status: Option<MessageStatus>,
    },
    /// The part had a final status already (a duplicate or a late receipt): nothing changed.
    Ignored,
    /// No submission with this id is recorded yet: the receipt is kept and applied when it is.
    Unmatched,
}

/// An inbound message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInbound {
    /// Id to give it.
    pub id: MessageId,
    /// The handset that sent it.
    pub from: Msisdn,
    /// The number it was sent to: a sender assigned to an account.
    pub to: Msisdn,
    /// SMS or MMS.
    pub kind: MessageKind,
    /// Text.
    pub body: Option<String>,
    /// Media URLs of an MMS, in order.
    pub media: Vec<String>,
    /// Encoding of the text.
    pub encoding: Encoding,
    /// Parts.
    pub segments: u32,
    /// The upstream's id for it.
    pub provider_ref: Option<String>,
    /// When it was received.
    pub received_at: Timestamp,
}

/// What an inbound message asks of the opt-out list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOutChange {
    /// Nothing (an ordinary message, or HELP).
    Keep,
    /// Opt the handset out of the number it wrote to (STOP and its synonyms).
    OptOut,
    /// Lift that opt-out (START and its synonyms).
    OptIn,
}

/// An automatic answer to an inbound message, sent back from the number it was sent to, free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReply {
    /// Id to give it.
    pub id: MessageId,
    /// Text.
    pub body: String,
    /// Encoding.
    pub encoding: Encoding,
    /// Parts.
    pub segments: u32,
}

/// What `Store::receive_inbound` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundOutcome {
    /// The inbound message (status `received`).
    pub message: MessageRecord,
    /// The automatic answer, queued.
    pub reply: Option<MessageRecord>,
    /// Whether the opt-out list changed.
    pub opt_out_changed: bool,
}

/// A webhook signing secret as the core sealed (encrypted) it; never clear text. Defined in the
/// domain crate so that `switchboard-signing`'s `Sealer` seals the very type stored here.
pub use switchboard_domain::SealedSecret;

/// A webhook endpoint of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// Id.
    pub id: Uuid,
    /// Owner.
    pub account_id: AccountId,
    /// Where events are posted.
    pub url: String,
    /// The signing secret, sealed.
    pub secret: SealedSecret,
    /// The event types it takes; empty for every type.
    pub events: Vec<EventType>,
    /// Whether events are delivered to it.
    pub active: bool,
    /// Creation time.
    pub created_at: Timestamp,
}

impl WebhookRecord {
    /// Whether it takes events of this type.
    pub fn wants(&self, event: EventType) -> bool {
        self.active && (self.events.is_empty() || self.events.contains(&event))
    }
}

/// A change to a webhook endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookChange {
    /// URL.
    pub url: Option<String>,
    /// A new sealed secret.
    pub secret: Option<SealedSecret>,
    /// Event types (empty for all).
    pub events: Option<Vec<EventType>>,
    /// Active.
    pub active: Option<bool>,
}

/// Where one webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not yet delivered; attempted when due.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Given up after the longest retry period.
    Failed,
    /// Its endpoint was deleted before it was delivered.
    Canceled,
}

impl DeliveryState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Canceled => "canceled",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            "canceled" => DeliveryState::Canceled,
            _ => return None,
        })
    }
}

/// One event on its way to one target: a row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The event (shared by every target of the event).
    pub event_id: EventId,
    /// The target: the endpoint's id as text, or, for the message's own URL, the URL.
    pub target: String,
    /// Owner.
    pub account_id: AccountId,
    /// The endpoint, or `None` for the message's own URL (`notify_url`).
    pub endpoint_id: Option<Uuid>,
    /// Where it is posted.
    pub url: String,
    /// The endpoint's sealed secret (filled by `claim_deliveries`; `None` in lists and for a
    /// message's own URL).
    pub secret: Option<SealedSecret>,
    /// What happened.
    pub event_type: EventType,
    /// The message it is about.
    pub message_id: MessageId,
    /// The status the message entered.
    pub status: MessageStatus,
    /// The error type, for a failure.
    pub error_type: Option<ErrorType>,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// Where the delivery stands.
    pub state: DeliveryState,
    /// Attempts made (counting a claimed one).
    pub attempts: u32,
    /// When it is next due (while pending), or how long the current claim lasts.
    pub next_attempt_at: Timestamp,
    /// The HTTP status of the last attempt, if one answered.
    pub last_status: Option<u16>,
    /// What went wrong with the last attempt.
    pub last_error: Option<String>,
    /// Last change.
    pub updated_at: Timestamp,
    /// For an `account.balance_low` event: the balance and threshold it reports (`None` for a
    /// message's events).
    pub balance_low: Option<BalanceLow>,
    /// When the operator last made it due again after it failed, if ever: its retry period
    /// runs from then.
    pub resent_at: Option<Timestamp>,
    /// The attempts it had made when the operator last made it due again (0 if never): its
    /// backoff counts only the attempts since.
    pub resent_after: u32,
}

/// What an `account.balance_low` event reports: the charge of `message_id` (the delivery's
/// message) took the account's SMS balance to `sms_credits`, below `threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceLow {
    /// The SMS balance right after the charge.
    pub sms_credits: i64,
    /// The account's low-balance threshold then.
    pub threshold: i64,
}

/// One attempt to deliver a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Which attempt, from 1.
    pub attempt: u32,
    /// When it started.
    pub at: Timestamp,
    /// The HTTP status, if the receiver answered.
    pub status_code: Option<u16>,
    /// What went wrong (a non-2xx answer, a timeout, a connection error).
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u32,
}

/// What came of a claimed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx: done.
    Delivered,
    /// It failed; try again at this time.
    Retry {
        /// When.
        next_attempt_at: Timestamp,
    },
    /// It failed and the retry period is over: give up.
    Failed,
    /// It was not attempted (the claim could not be served in time): hand it back, due now,
    /// without counting the attempt.
    Release,
}

/// The result of one claimed delivery, for `Store::record_deliveries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryResult {
    /// The event.
    pub event_id: EventId,
    /// The target.
    pub target: String,
    /// The attempt number the claim gave.
    pub attempt: u32,
    /// The attempt as made (ignored for `Release`).
    pub record: AttemptRecord,
    /// What it came to.
    pub outcome: DeliveryOutcome,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only those to this endpoint.
    pub endpoint: Option<Uuid>,
    /// Only those about this message.
    pub message: Option<MessageId>,
    /// Only those in this state.
    pub state: Option<DeliveryState>,
}

/// An SMPP credential of an account: the `system_id` an ESME binds with and the keyed hash
/// of its password, with limits that override the server's defaults when set.
#[derive(Clone, PartialEq, Eq)]
pub struct SmppCredentialRecord {
    /// The `system_id` (1 to 15 characters), unique across accounts.
    pub system_id: String,
    /// Owner.
    pub account_id: AccountId,
    /// HMAC-SHA256 of the password under the server secret.
    pub password_hash: Vec<u8>,
    /// Most binds the account may hold at once with this credential; `None`: the server's.
    pub max_binds: Option<u32>,
    /// Most requests waiting for their answer on one bind; `None`: the server's.
    pub window: Option<u32>,
    /// Most `submit_sm` a second on one bind; `None`: the server's.
    pub max_per_second: Option<u32>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Revocation time.
    pub revoked_at: Option<Timestamp>,
}

impl fmt::Debug for SmppCredentialRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmppCredentialRecord")
            .field("system_id", &self.system_id)
            .field("account_id", &self.account_id)
            .field("password_hash", &"<redacted>")
            .field("max_binds", &self.max_binds)
            .field("window", &self.window)
            .field("max_per_second", &self.max_per_second)
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// What a queued `deliver_sm` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmppDeliveryKind {
    /// A delivery receipt for an outbound message's final status.
    Receipt,
    /// An inbound message from a handset.
    Inbound,
}

impl SmppDeliveryKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SmppDeliveryKind::Receipt => "receipt",
            SmppDeliveryKind::Inbound => "inbound",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "receipt" => Some(SmppDeliveryKind::Receipt),
            "inbound" => Some(SmppDeliveryKind::Inbound),
            _ => None,
        }
    }
}

/// The `notify_url` of a message sent over SMPP whose ESME asked for a receipt of every
/// final status (`registered_delivery` 1). Such a message's final status queues a
/// `deliver_sm` receipt (an [`SmppDeliveryRecord`]) instead of a webhook delivery.
pub const SMPP_RECEIPT_FINAL: &str = "smpp:final";
/// The `notify_url` of a message sent over SMPP whose ESME asked for a receipt of a failure
/// only (`registered_delivery` 2).
pub const SMPP_RECEIPT_FAILURE: &str = "smpp:failure";

/// A `deliver_sm` waiting for one of the account's binds that receive (see
/// `Store::claim_smpp_deliveries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmppDeliveryRecord {
    /// Id (time-ordered).
    pub id: Uuid,
    /// The account whose binds receive it.
    pub account_id: AccountId,
    /// Receipt or inbound message.
    pub kind: SmppDeliveryKind,
    /// The message it is about (the outbound one for a receipt, the inbound one otherwise).
    pub message_id: MessageId,
    /// The status it reports.
    pub status: MessageStatus,
    /// The error type of a failure.
    pub error_type: Option<ErrorType>,
    /// When the status was reached.
    pub occurred_at: Timestamp,
    /// Attempts so far.
    pub attempts: u32,
    /// When it may be claimed (again).
    pub next_attempt_at: Timestamp,
}

/// Who a console session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsolePrincipal {
    /// The operator, who logged in with the operator token.
    Operator,
    /// An account holder, who logged in with one of the account's API keys.
    Account {
        /// The account.
        account: AccountId,
        /// The key id logged in with: its revocation ends the session.
        key_id: String,
    },
}

/// A session of the web console. The session token itself is never stored, only its keyed
/// hash, so a copy of the database holds no usable session.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleSessionRecord {
    /// HMAC-SHA256 of the session token under the server secret.
    pub token_hash: Vec<u8>,
    /// Whose session it is.
    pub principal: ConsolePrincipal,
    /// When it began.
    pub created_at: Timestamp,
    /// When it ends, however much it is used.
    pub expires_at: Timestamp,
    /// When it was last used (kept to within a minute, so a page view rarely writes).
    pub last_seen_at: Timestamp,
}

impl fmt::Debug for ConsoleSessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleSessionRecord")
            .field("token_hash", &"<redacted>")
            .field("principal", &self.principal)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_seen_at", &self.last_seen_at)
            .finish()
    }
}

/// Outbound messages created in one time bucket (a minute or an hour), by where they stand
/// now, for the console's charts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficBucket {
    /// The bucket's start, in milliseconds since the epoch.
    pub start: i64,
    /// Every message created in it.
    pub accepted: i64,
    /// Those taken by an upstream: sent or delivered.
    pub sent: i64,
    /// Those delivered.
    pub delivered: i64,
    /// Those failed for good: failed, undelivered, expired or canceled.
    pub failed: i64,
}

impl TrafficBucket {
    /// Adds `n` messages in `status`.
    pub fn add(&mut self, status: MessageStatus, n: i64) {
        use switchboard_domain::StatusGroup;
        self.accepted += n;
        match status.group() {
            StatusGroup::Sent => self.sent += n,
            StatusGroup::Failed => self.failed += n,
            StatusGroup::Pending => {}
        }
        if status == MessageStatus::Delivered {
            self.delivered += n;
        }
    }
}
