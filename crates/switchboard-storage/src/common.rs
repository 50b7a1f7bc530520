//! What both backends share: row decoding and, through [`store_impl!`], the `Store`
//! implementation itself. The SQL below runs unchanged on SQLite and PostgreSQL; each backend
//! implements the writes (`crate::writes::Writes`), with the few statements that differ (row
//! locks and `SKIP LOCKED` claims on PostgreSQL, lists bound as arrays or as JSON).

use switchboard_domain::{
    AccountId, BatchId, Direction, Encoding, ErrorType, EventId, EventType, MessageId, MessageKind, MessageStatus,
    Msisdn, Timestamp,
};
use switchboard_ledger::{Credits, EntryKind};
use uuid::Uuid;

use crate::{
    AccountRecord, ApiKeyRecord, AttemptRecord, BatchRecord, ChannelRecord, DeliveryRecord, DeliveryState, EventRecord,
    LedgerRecord, MessageRecord, OptOutRecord, PartRecord, SealedSecret, SenderRecord, StorageError, TemplateRecord,
    TemplateVersionRecord, WebhookRecord,
};

macro_rules! message_columns {
    () => {
        "id, account_id, direction, kind, recipient, sender, body, media_url, encoding, segments, status, \
         error_type, error_message, sms_charged, mms_charged, idempotency_key, request_hash, attempts, \
         next_attempt_at, provider_message_id, created_at, updated_at, sent_at, batch_id, channel_id, media, \
         expires_at, details, notify_url"
    };
}
pub(crate) use message_columns;

/// Most scheduled messages moved into the queue by one claim.
pub(crate) const PROMOTE_BATCH: u32 = 1000;

/// Rows per multi-row INSERT: groups are cut into chunks of these sizes so that only a few
/// statement shapes exist and each stays in the prepared-statement cache.
pub(crate) const CHUNKS: [usize; 8] = [128, 64, 32, 16, 8, 4, 2, 1];

/// Splits `items` into chunks whose sizes come from [`CHUNKS`].
pub(crate) fn chunked<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    while !items.is_empty() {
        let size = CHUNKS.iter().copied().find(|&c| c <= items.len()).unwrap_or(1);
        let (head, tail) = items.split_at(size);
        out.push(head);
        items = tail;
    }
    out
}

pub(crate) fn corrupt(what: &str, value: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {value}"))
}

fn u32_of(what: &str, v: i64) -> Result<u32, StorageError> {
    u32::try_from(v).map_err(|_| corrupt(what, v))
}

/// A stored phone number. Every number is checked before it is written, so one that does not
/// parse is a corrupt row; the value itself is left out of the error, as numbers are personal
/// data.
pub(crate) fn msisdn_of(what: &str, v: &str) -> Result<Msisdn, StorageError> {
    Msisdn::parse(v).map_err(|_| corrupt(what, "not an E.164 number"))
}

#[derive(sqlx::FromRow)]
pub(crate) struct AccountRow {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) sms_credits: i64,
    pub(crate) mms_credits: i64,
    pub(crate) rate_limit: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) refund_carrier_failures: bool,
}

/// The columns of [`AccountRow`].
pub(crate) const ACCOUNT_COLUMNS: &str =
    "id, name, sms_credits, mms_credits, rate_limit, created_at, refund_carrier_failures";

impl From<AccountRow> for AccountRecord {
    fn from(r: AccountRow) -> Self {
        AccountRecord {
            id: AccountId::from_uuid(r.id),
            name: r.name,
            balance: Credits::new(r.sms_credits, r.mms_credits),
            rate_limit: r.rate_limit.and_then(|n| u32::try_from(n).ok()),
            refund_carrier_failures: r.refund_carrier_failures,
            created_at: Timestamp::from_millis(r.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    pub(crate) id: String,
    pub(crate) account_id: Uuid,
    pub(crate) name: Option<String>,
    pub(crate) secret_hash: Vec<u8>,
    pub(crate) created_at: i64,
    pub(crate) revoked_at: Option<i64>,
}

impl From<ApiKeyRow> for ApiKeyRecord {
    fn from(r: ApiKeyRow) -> Self {
        ApiKeyRecord {
            id: r.id,
            account_id: AccountId::from_uuid(r.account_id),
            name: r.name,
            secret_hash: r.secret_hash,
            created_at: Timestamp::from_millis(r.created_at),
            revoked_at: r.revoked_at.map(Timestamp::from_millis),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SenderRow {
    pub(crate) address: String,
    pub(crate) account_id: Uuid,
    pub(crate) active: bool,
    pub(crate) sms: bool,
    pub(crate) mms: bool,
    pub(crate) created_at: i64,
}

impl TryFrom<SenderRow> for SenderRecord {
    type Error = StorageError;
    fn try_from(r: SenderRow) -> Result<Self, StorageError> {
        Ok(SenderRecord {
            address: msisdn_of("sender address", &r.address)?,
            account_id: AccountId::from_uuid(r.account_id),
            active: r.active,
            sms: r.sms,
            mms: r.mms,
            created_at: Timestamp::from_millis(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct LedgerRow {
    pub(crate) id: Uuid,
    pub(crate) account_id: Uuid,
    pub(crate) kind: String,
    pub(crate) sms_delta: i64,
    pub(crate) mms_delta: i64,
    pub(crate) sms_balance: i64,
    pub(crate) mms_balance: i64,
    pub(crate) message_id: Option<Uuid>,
    pub(crate) reference: Option<String>,
    pub(crate) created_at: i64,
}

impl TryFrom<LedgerRow> for LedgerRecord {
    type Error = StorageError;
    fn try_from(r: LedgerRow) -> Result<Self, StorageError> {
        Ok(LedgerRecord {
            id: r.id,
            account_id: AccountId::from_uuid(r.account_id),
            kind: EntryKind::parse(&r.kind).ok_or_else(|| corrupt("ledger kind", &r.kind))?,
            delta: Credits::new(r.sms_delta, r.mms_delta),
            balance_after: Credits::new(r.sms_balance, r.mms_balance),
            message_id: r.message_id.map(MessageId::from_uuid),
            reference: r.reference,
            created_at: Timestamp::from_millis(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OptOutRow {
    pub(crate) sender: String,
    pub(crate) recipient: String,
    pub(crate) account_id: Uuid,
    pub(crate) created_at: i64,
}

impl TryFrom<OptOutRow> for OptOutRecord {
    type Error = StorageError;
    fn try_from(r: OptOutRow) -> Result<Self, StorageError> {
        Ok(OptOutRecord {
            sender: msisdn_of("opt-out sender", &r.sender)?,
            recipient: msisdn_of("opt-out recipient", &r.recipient)?,
            account_id: AccountId::from_uuid(r.account_id),
            created_at: Timestamp::from_millis(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    pub(crate) message_id: Uuid,
    pub(crate) status: String,
    pub(crate) error_type: Option<String>,
    pub(crate) at: i64,
}

impl TryFrom<EventRow> for EventRecord {
    type Error = StorageError;
    fn try_from(r: EventRow) -> Result<Self, StorageError> {
        Ok(EventRecord {
            message_id: MessageId::from_uuid(r.message_id),
            status: MessageStatus::parse(&r.status).ok_or_else(|| corrupt("event status", &r.status))?,
            error_type: r
                .error_type
                .map(|e| ErrorType::parse(&e).ok_or_else(|| corrupt("error type", e)))
                .transpose()?,
            at: Timestamp::from_millis(r.at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub(crate) id: Uuid,
    pub(crate) account_id: Uuid,
    pub(crate) direction: String,
    pub(crate) kind: String,
    pub(crate) recipient: String,
    pub(crate) sender: String,
    pub(crate) body: Option<String>,
    pub(crate) media_url: Option<String>,
    pub(crate) encoding: String,
    pub(crate) segments: i64,
    pub(crate) status: String,
    pub(crate) error_type: Option<String>,
    pub(crate) error_message: Option<String>,
    pub(crate) sms_charged: i64,
    pub(crate) mms_charged: i64,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) request_hash: Option<Vec<u8>>,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: i64,
    pub(crate) provider_message_id: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) sent_at: Option<i64>,
    pub(crate) batch_id: Option<Uuid>,
    pub(crate) channel_id: Option<Uuid>,
    pub(crate) media: Option<String>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) details: Option<String>,
    pub(crate) notify_url: Option<String>,
}

/// The `media_url` and `media` columns of a message's media list: the first URL, and the
/// whole list as JSON when there is more than one.
pub(crate) fn media_columns(media: &[String]) -> (Option<String>, Option<String>) {
    let first = media.first().cloned();
    let all = (media.len() > 1).then(|| serde_json::to_string(media).unwrap_or_default());
    (first, all)
}

impl TryFrom<MessageRow> for MessageRecord {
    type Error = StorageError;
    fn try_from(r: MessageRow) -> Result<Self, StorageError> {
        Ok(MessageRecord {
            id: MessageId::from_uuid(r.id),
            account_id: AccountId::from_uuid(r.account_id),
            direction: Direction::parse(&r.direction).ok_or_else(|| corrupt("direction", &r.direction))?,
            kind: MessageKind::parse(&r.kind).ok_or_else(|| corrupt("kind", &r.kind))?,
            to: msisdn_of("recipient", &r.recipient)?,
            from: msisdn_of("sender", &r.sender)?,
            body: r.body,
            media: match r.media {
                Some(all) => serde_json::from_str(&all).map_err(|e| corrupt("media", e))?,
                None => r.media_url.into_iter().collect(),
            },
            encoding: Encoding::parse(&r.encoding).ok_or_else(|| corrupt("encoding", &r.encoding))?,
            segments: u32_of("segments", r.segments)?,
            status: MessageStatus::parse(&r.status).ok_or_else(|| corrupt("status", &r.status))?,
            error_type: r
                .error_type
                .map(|e| ErrorType::parse(&e).ok_or_else(|| corrupt("error type", e)))
                .transpose()?,
            error_message: r.error_message,
            charged: Credits::new(r.sms_charged, r.mms_charged),
            idempotency_key: r.idempotency_key,
            request_hash: r.request_hash,
            attempts: u32_of("attempts", r.attempts)?,
            next_attempt_at: Timestamp::from_millis(r.next_attempt_at),
            provider_message_id: r.provider_message_id,
            created_at: Timestamp::from_millis(r.created_at),
            updated_at: Timestamp::from_millis(r.updated_at),
            sent_at: r.sent_at.map(Timestamp::from_millis),
            batch_id: r.batch_id.map(BatchId::from_uuid),
            channel_id: r.channel_id,
            expires_at: r.expires_at.map(Timestamp::from_millis),
            details: r.details,
            notify_url: r.notify_url,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct BatchRow {
    pub(crate) id: Uuid,
    pub(crate) account_id: Uuid,
    pub(crate) kind: String,
    pub(crate) sender: String,
    pub(crate) body: Option<String>,
    pub(crate) recipients: i64,
    pub(crate) first_message_id: Uuid,
    pub(crate) sent: i64,
    pub(crate) failed: i64,
    pub(crate) sent_at: Option<i64>,
    pub(crate) created_at: i64,
}

/// The columns of [`BatchRow`].
pub(crate) const BATCH_COLUMNS: &str =
    "id, account_id, kind, sender, body, recipients, first_message_id, sent, failed, sent_at, created_at";

impl TryFrom<BatchRow> for BatchRecord {
    type Error = StorageError;
    fn try_from(r: BatchRow) -> Result<Self, StorageError> {
        Ok(BatchRecord {
            id: BatchId::from_uuid(r.id),
            account_id: AccountId::from_uuid(r.account_id),
            kind: MessageKind::parse(&r.kind).ok_or_else(|| corrupt("kind", &r.kind))?,
            from: msisdn_of("batch sender", &r.sender)?,
            body: r.body,
            recipients: u32_of("recipients", r.recipients)?,
            first_message_id: MessageId::from_uuid(r.first_message_id),
            sent: u32_of("sent", r.sent)?,
            failed: u32_of("failed", r.failed)?,
            sent_at: r.sent_at.map(Timestamp::from_millis),
            created_at: Timestamp::from_millis(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ChannelRow {
    pub(crate) id: Uuid,
    pub(crate) account_id: Uuid,
    pub(crate) name: String,
    pub(crate) sender: String,
    pub(crate) active: bool,
    pub(crate) mms: bool,
    pub(crate) created_at: i64,
}

/// Selects [`ChannelRow`]s: channels joined with their senders.
pub(crate) const CHANNEL_SELECT: &str = "SELECT c.id, c.account_id, c.name, c.sender, c.active, s.mms, c.created_at \
     FROM channels c JOIN senders s ON s.address = c.sender";

impl TryFrom<ChannelRow> for ChannelRecord {
    type Error = StorageError;
    fn try_from(r: ChannelRow) -> Result<Self, StorageError> {
        Ok(ChannelRecord {
            id: r.id,
            account_id: AccountId::from_uuid(r.account_id),
            name: r.name,
            sender: msisdn_of("channel sender", &r.sender)?,
            active: r.active,
            mms: r.mms,
            created_at: Timestamp::from_millis(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TemplateRow {
    pub(crate) id: Uuid,
    pub(crate) account_id: Uuid,
    pub(crate) name: String,
    pub(crate) created_at: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct VersionRow {
    pub(crate) id: Uuid,
    pub(crate) template_id: Uuid,
    pub(crate) texts: String,
    pub(crate) active: bool,
    pub(crate) created_at: i64,
}

impl TryFrom<VersionRow> for TemplateVersionRecord {
    type Error = StorageError;
    fn try_from(r: VersionRow) -> Result<Self, StorageError> {
        Ok(TemplateVersionRecord {
            id: r.id,
            template_id: r.template_id,
            texts: serde_json::from_str(&r.texts).map_err(|e| corrupt("template texts", e))?,
            active: r.active,
            created_at: Timestamp::from_millis(r.created_at),
        })
    }
}

/// Puts templates and their versions together, keeping the templates' order.
pub(crate) fn assemble_templates(
    templates: Vec<TemplateRow>,
    versions: Vec<VersionRow>,
) -> Result<Vec<TemplateRecord>, StorageError> {
    let mut out: Vec<TemplateRecord> = templates
        .into_iter()
        .map(|t| TemplateRecord {
            id: t.id,
            account_id: AccountId::from_uuid(t.account_id),
            name: t.name,
            created_at: Timestamp::from_millis(t.created_at),
            versions: Vec::new(),
        })
        .collect();
    let index: std::collections::HashMap<Uuid, usize> = out.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    for v in versions {
        if let Some(&i) = index.get(&v.template_id) {
            out[i].versions.push(v.try_into()?);
        }
    }
    for t in &mut out {
        t.versions.sort_by_key(|v| v.id);
    }
    Ok(out)
}

/// The SQL condition on `batches` that selects requests in a state.
pub(crate) fn batch_state_condition(state: Option<crate::BatchState>) -> &'static str {
    match state {
        None => "TRUE",
        Some(crate::BatchState::Pending) => "sent + failed < recipients",
        Some(crate::BatchState::Sent) => "sent + failed = recipients AND sent > 0",
        Some(crate::BatchState::Failed) => "failed = recipients",
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PartRow {
    pub(crate) provider_ref: String,
    pub(crate) message_id: Option<Uuid>,
    pub(crate) part: Option<i64>,
    pub(crate) status: String,
    pub(crate) error_type: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) at: i64,
}

/// The columns of [`PartRow`].
pub(crate) const PART_COLUMNS: &str = "provider_ref, message_id, part, status, error_type, description, at";

#[derive(sqlx::FromRow)]
pub(crate) struct PendingPartRow {
    pub(crate) provider_ref: String,
    pub(crate) message_id: Uuid,
    pub(crate) part: Option<i64>,
    pub(crate) parts: i64,
    pub(crate) recipient: String,
    pub(crate) at: i64,
}

/// The query of [`crate::Store::pending_parts`]: `$1` the reference to start after, `$2` the
/// prefix, `$3` the limit. The primary key on `provider_ref` gives the order.
pub(crate) const PENDING_PARTS: &str = "SELECT p.provider_ref, p.message_id, p.part, p.at, m.recipient, \
     (SELECT COUNT(*) FROM message_parts q WHERE q.message_id = p.message_id) AS parts \
     FROM message_parts p JOIN messages m ON m.id = p.message_id \
     WHERE p.provider_ref > $1 AND substr(p.provider_ref, 1, length($2)) = $2 \
     AND p.status = 'sent' AND m.status = 'sent' ORDER BY p.provider_ref LIMIT $3";

impl TryFrom<PendingPartRow> for crate::PendingPart {
    type Error = StorageError;
    fn try_from(r: PendingPartRow) -> Result<Self, StorageError> {
        Ok(crate::PendingPart {
            provider_ref: r.provider_ref,
            message_id: MessageId::from_uuid(r.message_id),
            part: u32_of("part", r.part.ok_or_else(|| corrupt("part number", "NULL"))?)?,
            parts: u32_of("part count", r.parts)?,
            to: msisdn_of("recipient", &r.recipient)?,
            sent_at: Timestamp::from_millis(r.at),
        })
    }
}

impl TryFrom<PartRow> for PartRecord {
    type Error = StorageError;
    fn try_from(r: PartRow) -> Result<Self, StorageError> {
        Ok(PartRecord {
            provider_ref: r.provider_ref,
            message_id: r.message_id.map(MessageId::from_uuid),
            part: r.part.map(|p| u32_of("part", p)).transpose()?,
            status: MessageStatus::parse(&r.status).ok_or_else(|| corrupt("part status", &r.status))?,
            error_type: error_type_of(r.error_type)?,
            description: r.description,
            at: Timestamp::from_millis(r.at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct WebhookRow {
    pub(crate) id: Uuid,
    pub(crate) account_id: Uuid,
    pub(crate) url: String,
    pub(crate) secret: Vec<u8>,
    pub(crate) events: String,
    pub(crate) active: bool,
    pub(crate) created_at: i64,
}

/// The columns of [`WebhookRow`].
/// The `settings` row where older versions kept the server secret; read once to upgrade.
pub(crate) const LEGACY_SECRET: &str = "key_hash_secret";
/// The `settings` row with the fingerprint of the installation's server keys.
pub(crate) const KEYS_FINGERPRINT: &str = "keys_fingerprint";

pub(crate) const WEBHOOK_COLUMNS: &str = "id, account_id, url, secret, events, active, created_at";

/// The stored form of an endpoint's event types: space-separated, empty for all.
pub(crate) fn events_column(events: &[EventType]) -> String {
    events.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(" ")
}

impl TryFrom<WebhookRow> for WebhookRecord {
    type Error = StorageError;
    fn try_from(r: WebhookRow) -> Result<Self, StorageError> {
        Ok(WebhookRecord {
            id: r.id,
            account_id: AccountId::from_uuid(r.account_id),
            url: r.url,
            secret: SealedSecret(r.secret),
            events: r
                .events
                .split_whitespace()
                .map(|e| EventType::parse(e).ok_or_else(|| corrupt("event type", e)))
                .collect::<Result<_, _>>()?,
            active: r.active,
            created_at: Timestamp::from_millis(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub(crate) event_id: Uuid,
    pub(crate) target: String,
    pub(crate) account_id: Uuid,
    pub(crate) endpoint_id: Option<Uuid>,
    pub(crate) url: String,
    pub(crate) event_type: String,
    pub(crate) message_id: Uuid,
    pub(crate) status: String,
    pub(crate) error_type: Option<String>,
    pub(crate) occurred_at: i64,
    pub(crate) state: String,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: i64,
    pub(crate) last_status: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) updated_at: i64,
}

/// The columns of [`DeliveryRow`], in order.
macro_rules! delivery_columns {
    () => {
        "event_id, target, account_id, endpoint_id, url, event_type, message_id, status, error_type, occurred_at, \
         state, attempts, next_attempt_at, last_status, last_error, updated_at"
    };
}
pub(crate) use delivery_columns;

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = StorageError;
    fn try_from(r: DeliveryRow) -> Result<Self, StorageError> {
        Ok(DeliveryRecord {
            event_id: EventId::from_uuid(r.event_id),
            target: r.target,
            account_id: AccountId::from_uuid(r.account_id),
            endpoint_id: r.endpoint_id,
            url: r.url,
            secret: None,
            event_type: EventType::parse(&r.event_type).ok_or_else(|| corrupt("event type", &r.event_type))?,
            message_id: MessageId::from_uuid(r.message_id),
            status: MessageStatus::parse(&r.status).ok_or_else(|| corrupt("event status", &r.status))?,
            error_type: error_type_of(r.error_type)?,
            occurred_at: Timestamp::from_millis(r.occurred_at),
            state: DeliveryState::parse(&r.state).ok_or_else(|| corrupt("delivery state", &r.state))?,
            attempts: u32_of("attempts", r.attempts)?,
            next_attempt_at: Timestamp::from_millis(r.next_attempt_at),
            last_status: r.last_status.map(|s| u16::try_from(s).map_err(|_| corrupt("HTTP status", s))).transpose()?,
            last_error: r.last_error,
            updated_at: Timestamp::from_millis(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub(crate) attempt: i64,
    pub(crate) at: i64,
    pub(crate) status_code: Option<i64>,
    pub(crate) error: Option<String>,
    pub(crate) duration_ms: i64,
}

impl TryFrom<AttemptRow> for AttemptRecord {
    type Error = StorageError;
    fn try_from(r: AttemptRow) -> Result<Self, StorageError> {
        Ok(AttemptRecord {
            attempt: u32_of("attempt", r.attempt)?,
            at: Timestamp::from_millis(r.at),
            status_code: r.status_code.map(|s| u16::try_from(s).map_err(|_| corrupt("HTTP status", s))).transpose()?,
            error: r.error,
            duration_ms: u32_of("duration", r.duration_ms)?,
        })
    }
}

fn error_type_of(stored: Option<String>) -> Result<Option<ErrorType>, StorageError> {
    stored.map(|e| ErrorType::parse(&e).ok_or_else(|| corrupt("error type", e))).transpose()
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Implements [`crate::Store`] for `$store`: the reads with sqlx on its `read` pool,
/// the writes by delegating to the backend's [`crate::writes::Writes`]. Expects `BACKEND`,
/// `Backend` and `message_columns!` in the calling module.
macro_rules! store_impl {
    ($store:ident) => {
        mod store_reads {
        use super::{BACKEND, $store};
        use $crate::Backend;
        use $crate::common::message_columns;
        use switchboard_domain::{AccountId, MessageId, MessageStatus, Timestamp};
        use switchboard_ledger::Credits;
        use uuid::Uuid;

        use $crate::common::{
            ACCOUNT_COLUMNS, AccountRow, ApiKeyRow, BATCH_COLUMNS, BatchRow, EventRow, LedgerRow, MessageRow, OptOutRow,
            SenderRow, batch_state_condition,
        };
        use $crate::tally::HOUR_MS;
        use switchboard_domain::BatchId;
        use $crate::{BatchRecord, BatchState, MessageCounts};
        use $crate::writes::{Param, Writes};
        use $crate::common::{CHANNEL_SELECT, ChannelRow, TemplateRow, VersionRow, assemble_templates};
        use $crate::{ChannelChange, ChannelRecord, TemplateRecord, TemplateVersionRecord};
        use $crate::{
            AcceptOutcome, AccountRecord, ApiKeyRecord, DispatchResult, EventRecord, LedgerRecord, MessageRecord,
            NewMessage, OptOutRecord, PageRequest, Result, SenderChange, SenderRecord, Store,
        };
        use $crate::common::{
            AttemptRow, DeliveryRow, KEYS_FINGERPRINT, LEGACY_SECRET, PART_COLUMNS, PartRow, WEBHOOK_COLUMNS, WebhookRow,
            delivery_columns, events_column,
        };
        use $crate::{
            AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryResult, InboundOutcome, NewInbound, NewReply,
            OptOutChange, PartRecord, ReceiptOutcome, ReceiptUpdate, WebhookChange, WebhookRecord,
        };
        use switchboard_domain::EventId;

        impl $store {
            async fn template_version(&self, id: Uuid) -> Result<TemplateVersionRecord> {
                let row: Option<VersionRow> = sqlx::query_as(
                    "SELECT id, template_id, texts, active, created_at FROM template_versions WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
                row.ok_or($crate::StorageError::NotFound)?.try_into()
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                BACKEND
            }

            async fn get_account(&self, id: AccountId) -> Result<Option<AccountRecord>> {
                let row: Option<AccountRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1")))
                        .bind(id.as_uuid())
                        .fetch_optional(&self.read)
                        .await?;
                Ok(row.map(Into::into))
            }

            async fn list_accounts(&self, page: PageRequest<AccountId>) -> Result<Vec<AccountRecord>> {
                let before = page.before.map_or(Uuid::max(), |a| a.as_uuid());
                let rows: Vec<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id < $1 ORDER BY id DESC LIMIT $2"
                )))
                .bind(before)
                .bind(i64::from(page.limit))
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn find_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
                let row: Option<ApiKeyRow> = sqlx::query_as(
                    "SELECT id, account_id, name, secret_hash, created_at, revoked_at FROM api_keys WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn list_api_keys(&self, account: AccountId) -> Result<Vec<ApiKeyRecord>> {
                let rows: Vec<ApiKeyRow> = sqlx::query_as(
                    "SELECT id, account_id, name, secret_hash, created_at, revoked_at FROM api_keys \
                     WHERE account_id = $1 ORDER BY created_at, id LIMIT 1000",
                )
                .bind(account.as_uuid())
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn list_senders(&self, account: AccountId) -> Result<Vec<SenderRecord>> {
                let rows: Vec<SenderRow> = sqlx::query_as(
                    "SELECT address, account_id, active, sms, mms, created_at FROM senders \
                     WHERE account_id = $1 ORDER BY address LIMIT 1000",
                )
                .bind(account.as_uuid())
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn ledger(&self, account: AccountId, page: PageRequest<Uuid>) -> Result<Vec<LedgerRecord>> {
                let rows: Vec<LedgerRow> = sqlx::query_as(
                    "SELECT id, account_id, kind, sms_delta, mms_delta, sms_balance, mms_balance, message_id, \
                     reference, created_at FROM ledger_entries WHERE account_id = $1 AND id < $2 \
                     ORDER BY id DESC LIMIT $3",
                )
                .bind(account.as_uuid())
                .bind(page.before.unwrap_or(Uuid::max()))
                .bind(i64::from(page.limit))
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn list_opt_outs(&self, account: AccountId, limit: u32) -> Result<Vec<OptOutRecord>> {
                let rows: Vec<OptOutRow> = sqlx::query_as(
                    "SELECT sender, recipient, account_id, created_at FROM opt_outs WHERE account_id = $1 \
                     ORDER BY sender, recipient LIMIT $2",
                )
                .bind(account.as_uuid())
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn get_message(&self, id: MessageId) -> Result<Option<MessageRecord>> {
                let row: Option<MessageRow> =
                    sqlx::query_as(concat!("SELECT ", message_columns!(), " FROM messages WHERE id = $1"))
                        .bind(id.as_uuid())
                        .fetch_optional(&self.read)
                        .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn list_messages(&self, account: AccountId, page: PageRequest<MessageId>) -> Result<Vec<MessageRecord>> {
                let rows: Vec<MessageRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                ))
                .bind(account.as_uuid())
                .bind(page.before.map_or(Uuid::max(), |m| m.as_uuid()))
                .bind(i64::from(page.limit))
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn message_events(&self, id: MessageId) -> Result<Vec<EventRecord>> {
                let rows: Vec<EventRow> = sqlx::query_as(
                    "SELECT message_id, status, error_type, at FROM message_events WHERE message_id = $1 ORDER BY at",
                )
                .bind(id.as_uuid())
                .fetch_all(&self.read)
                .await?;
                let mut events: Vec<EventRecord> = rows.into_iter().map(TryInto::try_into).collect::<Result<_>>()?;
                // Events of one instant keep lifecycle order.
                events.sort_by_key(|e| (e.at, MessageStatus::ALL.iter().position(|s| *s == e.status)));
                Ok(events)
            }

            async fn count_messages(&self, account: AccountId) -> Result<Vec<(String, i64)>> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT status, COUNT(*) FROM messages WHERE account_id = $1 GROUP BY status ORDER BY status",
                )
                .bind(account.as_uuid())
                .fetch_all(&self.read)
                .await?;
                Ok(rows)
            }

            async fn get_batch(&self, id: BatchId) -> Result<Option<BatchRecord>> {
                let row: Option<BatchRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1")))
                        .bind(id.as_uuid())
                        .fetch_optional(&self.read)
                        .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn list_batches(
                &self,
                account: AccountId,
                state: Option<BatchState>,
                offset: u64,
                limit: u32,
            ) -> Result<(Vec<BatchRecord>, u64)> {
                let condition = batch_state_condition(state);
                // `condition` is one of a fixed set of constants.
                let rows: Vec<BatchRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {BATCH_COLUMNS} FROM batches WHERE account_id = $1 AND {condition} \
                     ORDER BY id DESC LIMIT $2 OFFSET $3"
                )))
                .bind(account.as_uuid())
                .bind(i64::from(limit))
                .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                .fetch_all(&self.read)
                .await?;
                let (total,): (i64,) =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT COUNT(*) FROM batches WHERE account_id = $1 AND {condition}"
                    )))
                        .bind(account.as_uuid())
                        .fetch_one(&self.read)
                        .await?;
                let batches = rows.into_iter().map(TryInto::try_into).collect::<Result<Vec<_>>>()?;
                Ok((batches, u64::try_from(total).unwrap_or(0)))
            }

            async fn message_counts(&self, account: AccountId, from: Timestamp, to: Timestamp) -> Result<MessageCounts> {
                let (from, to) = (from.millis().max(0), to.millis().max(0));
                let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
                let mut edges = Vec::new();
                // Whole hours come from the running counts; the ragged ends from the messages.
                let (first_hour, end_hour) = ((from + HOUR_MS - 1).div_euclid(HOUR_MS), to.div_euclid(HOUR_MS));
                if first_hour < end_hour {
                    let rows: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT status, CAST(SUM(n) AS BIGINT) FROM message_counts \
                         WHERE account_id = $1 AND hour >= $2 AND hour < $3 GROUP BY status",
                    )
                    .bind(account.as_uuid())
                    .bind(first_hour)
                    .bind(end_hour)
                    .fetch_all(&self.read)
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
                    // Ids are time-ordered, so the primary-key index bounds the scan; a minute
                    // of slack covers a creation time a little off its id's.
                    let slack = 60_000;
                    let rows: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT status, COUNT(*) FROM messages WHERE account_id = $1 AND id >= $2 AND id < $3 \
                         AND created_at >= $4 AND created_at < $5 AND direction = 'outbound' GROUP BY status",
                    )
                    .bind(account.as_uuid())
                    .bind(MessageId::first_at(Timestamp::from_millis(a - slack)).as_uuid())
                    .bind(MessageId::first_at(Timestamp::from_millis(b + slack)).as_uuid())
                    .bind(a)
                    .bind(b)
                    .fetch_all(&self.read)
                    .await?;
                    for (status, n) in rows {
                        *counts.entry(status).or_default() += n;
                    }
                }
                let by_status = counts
                    .into_iter()
                    .filter(|(_, n)| *n != 0)
                    .map(|(s, n)| {
                        MessageStatus::parse(&s)
                            .map(|s| (s, n))
                            .ok_or_else(|| $crate::common::corrupt("status", &s))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(MessageCounts { by_status })
            }

            async fn set_rate_limit(&self, account: AccountId, limit: Option<u32>) -> Result<AccountRecord> {
                Writes::set_rate_limit(self, account, limit).await
            }

            async fn cancel_scheduled(&self, account: AccountId, id: MessageId, at: Timestamp) -> Result<MessageRecord> {
                Writes::cancel_scheduled(self, account, id, at).await?;
                self.get_message(id).await?.ok_or($crate::StorageError::NotFound)
            }

            async fn list_channel_messages(&self, channel: Uuid, page: PageRequest<MessageId>) -> Result<Vec<MessageRecord>> {
                let rows: Vec<MessageRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE channel_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                ))
                .bind(channel)
                .bind(page.before.map_or(Uuid::max(), |m| m.as_uuid()))
                .bind(i64::from(page.limit))
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn create_channel(&self, c: &ChannelRecord) -> Result<ChannelRecord> {
                Writes::write(self, vec![(
                    "INSERT INTO channels (id, account_id, name, sender, active, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    vec![
                        Param::Uuid(c.id),
                        Param::Uuid(c.account_id.as_uuid()),
                        Param::Text(Some(c.name.clone())),
                        Param::Text(Some(c.sender.as_str().to_owned())),
                        Param::Bool(Some(c.active)),
                        Param::Int(Some(c.created_at.millis())),
                    ],
                )]).await?;
                self.get_channel(c.id).await?.ok_or($crate::StorageError::NotFound)
            }

            async fn get_channel(&self, id: Uuid) -> Result<Option<ChannelRecord>> {
                let row: Option<ChannelRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("{CHANNEL_SELECT} WHERE c.id = $1")))
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn list_channels(&self, account: AccountId) -> Result<Vec<ChannelRecord>> {
                let rows: Vec<ChannelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{CHANNEL_SELECT} WHERE c.account_id = $1 ORDER BY c.id LIMIT 1000"
                )))
                .bind(account.as_uuid())
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn update_channel(&self, account: AccountId, id: Uuid, change: &ChannelChange) -> Result<ChannelRecord> {
                let changed = Writes::write(self, vec![(
                    "UPDATE channels SET name = COALESCE($1, name), active = COALESCE($2, active) \
                     WHERE id = $3 AND account_id = $4",
                    vec![
                        Param::Text(change.name.clone()),
                        Param::Bool(change.active),
                        Param::Uuid(id),
                        Param::Uuid(account.as_uuid()),
                    ],
                )]).await?;
                if changed.first() != Some(&1) {
                    return Err($crate::StorageError::NotFound);
                }
                self.get_channel(id).await?.ok_or($crate::StorageError::NotFound)
            }

            async fn create_template(&self, account: AccountId, name: &str) -> Result<TemplateRecord> {
                let id = Uuid::now_v7();
                Writes::write(self, vec![(
                    "INSERT INTO templates (id, account_id, name, created_at) VALUES ($1, $2, $3, $4)",
                    vec![
                        Param::Uuid(id),
                        Param::Uuid(account.as_uuid()),
                        Param::Text(Some(name.to_owned())),
                        Param::Int(Some(Timestamp::now().millis())),
                    ],
                )]).await?;
                self.get_template(id).await?.ok_or($crate::StorageError::NotFound)
            }

            async fn add_template_version(
                &self,
                account: AccountId,
                template: Uuid,
                texts: &std::collections::BTreeMap<String, String>,
                active: bool,
            ) -> Result<TemplateVersionRecord> {
                let id = Uuid::now_v7();
                let texts = serde_json::to_string(texts).map_err(|e| $crate::common::corrupt("template texts", e))?;
                let added = Writes::write(self, vec![(
                    "INSERT INTO template_versions (id, template_id, account_id, texts, active, created_at) \
                     SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS \
                     (SELECT 1 FROM templates WHERE id = $2 AND account_id = $3)",
                    vec![
                        Param::Uuid(id),
                        Param::Uuid(template),
                        Param::Uuid(account.as_uuid()),
                        Param::Text(Some(texts)),
                        Param::Bool(Some(active)),
                        Param::Int(Some(Timestamp::now().millis())),
                    ],
                )]).await?;
                if added.first() != Some(&1) {
                    return Err($crate::StorageError::NotFound);
                }
                self.template_version(id).await
            }

            async fn set_template_version_active(
                &self,
                account: AccountId,
                template: Uuid,
                version: Uuid,
                active: bool,
            ) -> Result<TemplateVersionRecord> {
                let changed = Writes::write(self, vec![(
                    "UPDATE template_versions SET active = $1 WHERE id = $2 AND template_id = $3 AND account_id = $4",
                    vec![
                        Param::Bool(Some(active)),
                        Param::Uuid(version),
                        Param::Uuid(template),
                        Param::Uuid(account.as_uuid()),
                    ],
                )]).await?;
                if changed.first() != Some(&1) {
                    return Err($crate::StorageError::NotFound);
                }
                self.template_version(version).await
            }

            async fn get_template(&self, id: Uuid) -> Result<Option<TemplateRecord>> {
                let templates: Vec<TemplateRow> =
                    sqlx::query_as("SELECT id, account_id, name, created_at FROM templates WHERE id = $1")
                        .bind(id)
                        .fetch_all(&self.read)
                        .await?;
                let versions: Vec<VersionRow> = sqlx::query_as(
                    "SELECT id, template_id, texts, active, created_at FROM template_versions WHERE template_id = $1",
                )
                .bind(id)
                .fetch_all(&self.read)
                .await?;
                Ok(assemble_templates(templates, versions)?.pop())
            }

            async fn list_templates(&self, account: AccountId) -> Result<Vec<TemplateRecord>> {
                let templates: Vec<TemplateRow> = sqlx::query_as(
                    "SELECT id, account_id, name, created_at FROM templates WHERE account_id = $1 ORDER BY id LIMIT 1000",
                )
                .bind(account.as_uuid())
                .fetch_all(&self.read)
                .await?;
                let versions: Vec<VersionRow> = sqlx::query_as(
                    "SELECT id, template_id, texts, active, created_at FROM template_versions WHERE account_id = $1",
                )
                .bind(account.as_uuid())
                .fetch_all(&self.read)
                .await?;
                assemble_templates(templates, versions)
            }

            async fn legacy_server_secret(&self) -> Result<Option<Vec<u8>>> {
                let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT value FROM settings WHERE name = $1")
                    .bind(LEGACY_SECRET)
                    .fetch_optional(&self.read)
                    .await?;
                Ok(row.map(|(v,)| v))
            }

            async fn key_fingerprints(&self) -> Result<Vec<(String, Vec<u8>)>> {
                let rows: Vec<(String, Vec<u8>)> =
                    sqlx::query_as("SELECT name, value FROM settings WHERE name LIKE 'keys_fingerprint%' ORDER BY name")
                        .fetch_all(&self.read)
                        .await?;
                Ok(rows)
            }

            async fn record_server_keys(
                &self,
                fingerprints: &[(String, Vec<u8>)],
                forget_legacy: bool,
            ) -> Result<Vec<(String, Vec<u8>)>> {
                let mut statements: Vec<$crate::writes::Statement> = fingerprints
                    .iter()
                    .map(|(name, value)| {
                        (
                            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                            vec![Param::Text(Some(name.clone())), Param::Bytes(Some(value.clone()))],
                        )
                    })
                    .collect();
                if let Some((_, hash)) = fingerprints.iter().find(|(n, _)| n == KEYS_FINGERPRINT)
                    && forget_legacy
                {
                    // The secret that older versions kept here goes only once the keys that
                    // replace it are the installation's.
                    statements.push((
                        "DELETE FROM settings WHERE name = $1 AND EXISTS \
                         (SELECT 1 FROM settings WHERE name = $2 AND value = $3)",
                        vec![
                            Param::Text(Some(LEGACY_SECRET.to_owned())),
                            Param::Text(Some(KEYS_FINGERPRINT.to_owned())),
                            Param::Bytes(Some(hash.clone())),
                        ],
                    ));
                }
                Writes::write(self, statements).await?;
                self.key_fingerprints().await
            }

            async fn sealed_webhook_secrets(&self) -> Result<Vec<(Uuid, $crate::SealedSecret)>> {
                let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as("SELECT id, secret FROM webhook_endpoints ORDER BY id")
                    .fetch_all(&self.read)
                    .await?;
                Ok(rows.into_iter().map(|(id, s)| (id, $crate::SealedSecret(s))).collect())
            }

            async fn scrub(&self) -> Result<()> {
                Writes::scrub(self).await
            }

            async fn reseal_webhook_secret(&self, id: Uuid, old: &$crate::SealedSecret, new: &$crate::SealedSecret) -> Result<bool> {
                let changed = Writes::write(self, vec![(
                    "UPDATE webhook_endpoints SET secret = $1 WHERE id = $2 AND secret = $3",
                    vec![Param::Bytes(Some(new.0.clone())), Param::Uuid(id), Param::Bytes(Some(old.0.clone()))],
                )]).await?;
                Ok(changed.first() == Some(&1))
            }

            async fn create_account(&self, name: &str) -> Result<AccountRecord> {
                Writes::create_account(self, name).await
            }

            async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
                Writes::create_api_key(self, key).await
            }

            async fn revoke_api_key(&self, account: AccountId, id: &str, at: Timestamp) -> Result<ApiKeyRecord> {
                Writes::revoke_api_key(self, account, id, at).await
            }

            async fn create_sender(&self, s: &SenderRecord) -> Result<()> {
                Writes::create_sender(self, s).await
            }

            async fn update_sender(&self, account: AccountId, address: &str, c: SenderChange) -> Result<SenderRecord> {
                Writes::update_sender(self, account, address, c).await
            }

            async fn top_up(&self, account: AccountId, amount: Credits, reference: Option<&str>) -> Result<LedgerRecord> {
                Writes::top_up(self, account, amount, reference).await
            }

            async fn add_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<OptOutRecord> {
                Writes::add_opt_out(self, account, sender, recipient).await
            }

            async fn remove_opt_out(&self, account: AccountId, sender: &str, recipient: &str) -> Result<()> {
                Writes::remove_opt_out(self, account, sender, recipient).await
            }

            async fn accept(&self, batch: &[NewMessage]) -> Result<Vec<AcceptOutcome>> {
                Writes::accept(self, batch).await
            }

            async fn claim_due(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<MessageRecord>> {
                Writes::claim_due(self, now, lease_until, limit).await
            }

            async fn record_results(&self, results: &[DispatchResult]) -> Result<Vec<MessageId>> {
                Writes::record_results(self, results).await
            }

            async fn set_refund_carrier_failures(&self, account: AccountId, refund: bool) -> Result<AccountRecord> {
                let changed = Writes::write(self, vec![(
                    "UPDATE accounts SET refund_carrier_failures = $1 WHERE id = $2",
                    vec![Param::Bool(Some(refund)), Param::Uuid(account.as_uuid())],
                )]).await?;
                if changed.first() != Some(&1) {
                    return Err($crate::StorageError::NotFound);
                }
                self.get_account(account).await?.ok_or($crate::StorageError::NotFound)
            }

            async fn record_receipts(&self, receipts: &[ReceiptUpdate]) -> Result<Vec<ReceiptOutcome>> {
                if receipts.is_empty() {
                    return Ok(Vec::new());
                }
                Writes::record_receipts(self, receipts).await
            }

            async fn message_parts(&self, id: MessageId) -> Result<Vec<PartRecord>> {
                let rows: Vec<PartRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {PART_COLUMNS} FROM message_parts WHERE message_id = $1 ORDER BY part"
                )))
                .bind(id.as_uuid())
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn pending_parts(
                &self,
                prefix: &str,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<$crate::PendingPart>> {
                let rows: Vec<$crate::common::PendingPartRow> = sqlx::query_as($crate::common::PENDING_PARTS)
                    .bind(after.unwrap_or(prefix))
                    .bind(prefix)
                    .bind(i64::from(limit.clamp(1, 1000)))
                    .fetch_all(&self.read)
                    .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn receive_inbound(
                &self,
                inbound: &NewInbound,
                change: OptOutChange,
                reply: Option<&NewReply>,
            ) -> Result<InboundOutcome> {
                let opt_out_changed = Writes::receive_inbound(self, inbound, change, reply).await?;
                let message = self.get_message(inbound.id).await?.ok_or($crate::StorageError::NotFound)?;
                let reply = match reply {
                    Some(r) => Some(self.get_message(r.id).await?.ok_or($crate::StorageError::NotFound)?),
                    None => None,
                };
                Ok(InboundOutcome { message, reply, opt_out_changed })
            }

            async fn create_webhook(&self, w: &WebhookRecord) -> Result<()> {
                Writes::write(self, vec![(
                    "INSERT INTO webhook_endpoints (id, account_id, url, secret, events, active, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    vec![
                        Param::Uuid(w.id),
                        Param::Uuid(w.account_id.as_uuid()),
                        Param::Text(Some(w.url.clone())),
                        Param::Bytes(Some(w.secret.0.clone())),
                        Param::Text(Some(events_column(&w.events))),
                        Param::Bool(Some(w.active)),
                        Param::Int(Some(w.created_at.millis())),
                    ],
                )]).await?;
                Ok(())
            }

            async fn get_webhook(&self, id: Uuid) -> Result<Option<WebhookRecord>> {
                let row: Option<WebhookRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn list_webhooks(&self, account: AccountId) -> Result<Vec<WebhookRecord>> {
                let rows: Vec<WebhookRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE account_id = $1 \
                     ORDER BY created_at, id LIMIT 1000"
                )))
                .bind(account.as_uuid())
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn update_webhook(&self, account: AccountId, id: Uuid, change: &WebhookChange) -> Result<WebhookRecord> {
                let changed = Writes::write(self, vec![(
                    "UPDATE webhook_endpoints SET url = COALESCE($1, url), secret = COALESCE($2, secret), \
                     events = COALESCE($3, events), active = COALESCE($4, active) WHERE id = $5 AND account_id = $6",
                    vec![
                        Param::Text(change.url.clone()),
                        Param::Bytes(change.secret.as_ref().map(|s| s.0.clone())),
                        Param::Text(change.events.as_deref().map(events_column)),
                        Param::Bool(change.active),
                        Param::Uuid(id),
                        Param::Uuid(account.as_uuid()),
                    ],
                )]).await?;
                if changed.first() != Some(&1) {
                    return Err($crate::StorageError::NotFound);
                }
                self.get_webhook(id).await?.ok_or($crate::StorageError::NotFound)
            }

            async fn delete_webhook(&self, account: AccountId, id: Uuid) -> Result<()> {
                let ids = vec![Param::Uuid(id), Param::Uuid(account.as_uuid())];
                let mut cancel = ids.clone();
                cancel.push(Param::Int(Some(Timestamp::now().millis())));
                // Deliveries a racing transaction adds for the endpoint after this one commits
                // are canceled when claimed (see `claim_deliveries`).
                let changed = Writes::write(self, vec![
                    ("DELETE FROM webhook_endpoints WHERE id = $1 AND account_id = $2", ids),
                    (
                        "UPDATE webhook_deliveries SET state = 'canceled', updated_at = $3 \
                         WHERE endpoint_id = $1 AND account_id = $2 AND state = 'pending'",
                        cancel,
                    ),
                ]).await?;
                if changed.first() != Some(&1) {
                    return Err($crate::StorageError::NotFound);
                }
                Ok(())
            }

            async fn claim_deliveries(
                &self,
                now: Timestamp,
                lease_until: Timestamp,
                limit: u32,
                busy: &[String],
            ) -> Result<Vec<DeliveryRecord>> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                Writes::claim_deliveries(self, now, lease_until, limit, busy).await
            }

            async fn record_deliveries(&self, results: &[DeliveryResult]) -> Result<()> {
                if results.is_empty() {
                    return Ok(());
                }
                Writes::record_deliveries(self, results).await
            }

            async fn take_rate_tokens(&self, name: &str, per_second: u32, want: u32, now: Timestamp) -> Result<u32> {
                if want == 0 || per_second == 0 || want > per_second {
                    return Ok(0);
                }
                let (rate, want, now) = (i64::from(per_second), i64::from(want), now.millis());
                // The bucket's tokens as of now: what it held, plus what it gained since its
                // last take (never negative, should clocks differ), at most a second's worth.
                macro_rules! refilled {
                    () => {
                        "(CASE WHEN tokens + CAST((CASE WHEN $3 > at_ms THEN $3 - at_ms ELSE 0 END) \
                         AS DOUBLE PRECISION) * $2 / 1000.0 > $2 THEN CAST($2 AS DOUBLE PRECISION) \
                         ELSE tokens + CAST((CASE WHEN $3 > at_ms THEN $3 - at_ms ELSE 0 END) AS DOUBLE PRECISION) \
                         * $2 / 1000.0 END)"
                    };
                }
                const TAKE: &str = concat!(
                    "UPDATE rate_budgets SET tokens = ",
                    refilled!(),
                    " - $4, at_ms = CASE WHEN $3 > at_ms THEN $3 ELSE at_ms END WHERE name = $1 AND ",
                    refilled!(),
                    " >= $4"
                );
                let counts = Writes::write(self, vec![
                    (
                        "INSERT INTO rate_budgets (name, tokens, at_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                        vec![Param::Text(Some(name.to_owned())), Param::Int(Some(rate)), Param::Int(Some(now))],
                    ),
                    (
                        TAKE,
                        vec![
                            Param::Text(Some(name.to_owned())),
                            Param::Int(Some(rate)),
                            Param::Int(Some(now)),
                            Param::Int(Some(want)),
                        ],
                    ),
                ])
                .await?;
                Ok(if counts.get(1) == Some(&1) { want as u32 } else { 0 })
            }

            async fn list_deliveries(
                &self,
                account: AccountId,
                filter: &DeliveryFilter,
                page: PageRequest<EventId>,
            ) -> Result<Vec<DeliveryRecord>> {
                let rows: Vec<DeliveryRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM webhook_deliveries WHERE account_id = $1 AND event_id < $2 \
                     AND ($3 IS NULL OR endpoint_id = $3) AND ($4 IS NULL OR message_id = $4) \
                     AND ($5 IS NULL OR state = $5) ORDER BY event_id DESC, target LIMIT $6"
                ))
                .bind(account.as_uuid())
                .bind(page.before.map_or(Uuid::max(), |e| e.as_uuid()))
                .bind(filter.endpoint)
                .bind(filter.message.map(|m| m.as_uuid()))
                .bind(filter.state.map(|s| s.as_str()))
                .bind(i64::from(page.limit.min(1000)))
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn delivery_attempts(&self, event: EventId, target: &str) -> Result<Vec<AttemptRecord>> {
                let rows: Vec<AttemptRow> = sqlx::query_as(
                    "SELECT attempt, at, status_code, error, duration_ms FROM webhook_attempts \
                     WHERE event_id = $1 AND target = $2 ORDER BY attempt",
                )
                .bind(event.as_uuid())
                .bind(target)
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }
        }
        }
    };
}
pub(crate) use store_impl;
