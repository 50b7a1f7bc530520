//! One decoder per record, over a driver-neutral [`Row`], and the columns each reads, in
//! order. A stored value that is not what the schema promises is [`StorageError::Corrupt`].

use std::collections::BTreeSet;

use switchboard_domain::{
    AccountDestinations, AccountId, Destination, EventType, MessageId, Msisdn, NumberType, Region, SenderId, Timestamp,
};
use switchboard_ledger::Credits;
use uuid::Uuid;

use crate::engine::{FromRow, Row};
use crate::{
    AccountRecord, ApiKeyRecord, AttemptRecord, BalanceLow, BatchRecord, ChannelRecord, DeliveryRecord, LedgerRecord,
    MessageRecord, OptOutRecord, PartRecord, PendingPart, Result, SealedSecret, SenderRecord, StorageError,
    TemplateVersionRecord, WebhookRecord,
};

pub(crate) fn corrupt(what: &str, value: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {value}"))
}

/// A stored phone number. Every number is checked before it is written, so one that does not
/// parse is a corrupt row; the value itself is left out of the error, as numbers are personal
/// data.
fn msisdn(what: &str, v: &str) -> Result<Msisdn> {
    Msisdn::parse(v).map_err(|_| corrupt(what, "not an E.164 number"))
}

/// A stored sender: a number, or an alphanumeric sender ID.
fn sender(what: &str, v: &str) -> Result<SenderId> {
    SenderId::parse(v).map_err(|_| corrupt(what, "neither an E.164 number nor an alphanumeric sender ID"))
}

pub(crate) const ACCOUNT_COLUMNS: &str = "id, name, sms_credits, mms_credits, rate_limit, created_at, \
     refund_carrier_failures, allowed_regions, accept_fixed_or_mobile, low_balance_threshold";

impl FromRow for AccountRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(AccountRecord {
            id: r.get()?,
            name: r.get()?,
            balance: Credits::new(r.get()?, r.get()?),
            rate_limit: r.get::<Option<i64>>()?.and_then(|n| u32::try_from(n).ok()),
            created_at: r.get()?,
            refund_carrier_failures: r.get()?,
            destinations: account_destinations(r)?,
            low_balance_threshold: r.get()?,
        })
    }
}

/// An account's `allowed_regions` and `accept_fixed_or_mobile` columns.
pub(crate) fn account_destinations(r: &mut Row) -> Result<AccountDestinations> {
    Ok(AccountDestinations { allowed_regions: allowed_regions(r.get()?)?, fixed_or_mobile: r.get()? })
}

/// A stored `allowed_regions` column: `NULL` for every country, else comma-separated codes.
pub(crate) fn allowed_regions(stored: Option<String>) -> Result<Option<BTreeSet<Region>>> {
    stored.map(|s| AccountDestinations::parse_regions(&s).ok_or_else(|| corrupt("allowed regions", &s))).transpose()
}

pub(crate) const API_KEY_COLUMNS: &str = "id, account_id, name, secret_hash, created_at, revoked_at";

impl FromRow for ApiKeyRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(ApiKeyRecord {
            id: r.get()?,
            account_id: r.get()?,
            name: r.get()?,
            secret_hash: r.get()?,
            created_at: r.get()?,
            revoked_at: r.get()?,
        })
    }
}

pub(crate) const SENDER_COLUMNS: &str = "address, account_id, active, sms, mms, created_at";

impl FromRow for SenderRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(SenderRecord {
            address: sender("sender address", &r.get::<String>()?)?,
            account_id: r.get()?,
            active: r.get()?,
            sms: r.get()?,
            mms: r.get()?,
            created_at: r.get()?,
        })
    }
}

pub(crate) const LEDGER_COLUMNS: &str = "id, account_id, kind, sms_delta, mms_delta, sms_balance, mms_balance, \
     message_id, reference, created_at";

impl FromRow for LedgerRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(LedgerRecord {
            id: r.get()?,
            account_id: r.get()?,
            kind: r.get()?,
            delta: Credits::new(r.get()?, r.get()?),
            balance_after: Credits::new(r.get()?, r.get()?),
            message_id: r.get()?,
            reference: r.get()?,
            created_at: r.get()?,
        })
    }
}

pub(crate) const OPT_OUT_COLUMNS: &str = "sender, recipient, account_id, created_at";

impl FromRow for OptOutRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(OptOutRecord {
            sender: sender("opt-out sender", &r.get::<String>()?)?,
            recipient: msisdn("opt-out recipient", &r.get::<String>()?)?,
            account_id: r.get()?,
            created_at: r.get()?,
        })
    }
}

pub(crate) const EVENT_COLUMNS: &str = "message_id, status, error_type, at";

impl FromRow for crate::EventRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(crate::EventRecord { message_id: r.get()?, status: r.get()?, error_type: r.get()?, at: r.get()? })
    }
}

/// The columns of a message, in the order [`MessageRecord`]'s decoder reads them.
macro_rules! message_columns {
    () => {
        "id, account_id, direction, kind, recipient, sender, body, media_url, media, encoding, segments, status, \
         error_type, error_message, sms_charged, mms_charged, idempotency_key, request_hash, attempts, \
         next_attempt_at, provider_message_id, created_at, updated_at, sent_at, batch_id, channel_id, \
         expires_at, details, notify_url, unavailable_attempts, dest_region, dest_type, request_id"
    };
}
pub(crate) use message_columns;

/// The `media_url` and `media` columns of a message's media list: the first URL, and the
/// whole list as JSON when there is more than one.
pub(crate) fn media_columns(media: &[String]) -> (Option<&str>, Option<String>) {
    let first = media.first().map(String::as_str);
    let all = (media.len() > 1).then(|| serde_json::to_string(media).unwrap_or_default());
    (first, all)
}

/// A message's `dest_region` and `dest_type` columns.
fn destination(region: Option<String>, number_type: Option<NumberType>) -> Result<Option<Destination>> {
    let Some(number_type) = number_type else { return Ok(None) };
    let region = region.map(|r| Region::parse(&r).map_err(|_| corrupt("destination region", r))).transpose()?;
    Ok(Some(Destination { valid: number_type != NumberType::Unknown, number_type, region }))
}

impl FromRow for MessageRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(MessageRecord {
            id: r.get()?,
            account_id: r.get()?,
            direction: r.get()?,
            kind: r.get()?,
            to: msisdn("recipient", &r.get::<String>()?)?,
            from: sender("sender", &r.get::<String>()?)?,
            body: r.get()?,
            media: match (r.get::<Option<String>>()?, r.get::<Option<String>>()?) {
                (_, Some(all)) => serde_json::from_str(&all).map_err(|e| corrupt("media", e))?,
                (first, None) => first.into_iter().collect(),
            },
            encoding: r.get()?,
            segments: r.get()?,
            status: r.get()?,
            error_type: r.get()?,
            error_message: r.get()?,
            charged: Credits::new(r.get()?, r.get()?),
            idempotency_key: r.get()?,
            request_hash: r.get()?,
            attempts: r.get()?,
            next_attempt_at: r.get()?,
            provider_message_id: r.get()?,
            created_at: r.get()?,
            updated_at: r.get()?,
            sent_at: r.get()?,
            batch_id: r.get()?,
            channel_id: r.get()?,
            expires_at: r.get()?,
            details: r.get()?,
            notify_url: r.get()?,
            unavailable_attempts: r.get()?,
            destination: destination(r.get()?, r.get()?)?,
            request_id: r.get()?,
        })
    }
}

pub(crate) const BATCH_COLUMNS: &str =
    "id, account_id, kind, sender, body, recipients, first_message_id, sent, failed, sent_at, created_at";

impl FromRow for BatchRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(BatchRecord {
            id: r.get()?,
            account_id: r.get()?,
            kind: r.get()?,
            from: sender("batch sender", &r.get::<String>()?)?,
            body: r.get()?,
            recipients: r.get()?,
            first_message_id: r.get()?,
            sent: r.get()?,
            failed: r.get()?,
            sent_at: r.get()?,
            created_at: r.get()?,
        })
    }
}

/// Selects channels joined with their senders, as [`ChannelRecord`]'s decoder reads them.
pub(crate) const CHANNEL_SELECT: &str = "SELECT c.id, c.account_id, c.name, c.sender, c.active, s.mms, c.created_at \
     FROM channels c JOIN senders s ON s.address = c.sender";

impl FromRow for ChannelRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(ChannelRecord {
            id: r.get()?,
            account_id: r.get()?,
            name: r.get()?,
            sender: sender("channel sender", &r.get::<String>()?)?,
            active: r.get()?,
            mms: r.get()?,
            created_at: r.get()?,
        })
    }
}

pub(crate) const VERSION_COLUMNS: &str = "id, template_id, texts, active, created_at";

impl FromRow for TemplateVersionRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(TemplateVersionRecord {
            id: r.get()?,
            template_id: r.get()?,
            texts: serde_json::from_str(&r.get::<String>()?).map_err(|e| corrupt("template texts", e))?,
            active: r.get()?,
            created_at: r.get()?,
        })
    }
}

pub(crate) const PART_COLUMNS: &str = "provider_ref, message_id, part, status, error_type, description, at";

impl FromRow for PartRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(PartRecord {
            provider_ref: r.get()?,
            message_id: r.get()?,
            part: r.get()?,
            status: r.get()?,
            error_type: r.get()?,
            description: r.get()?,
            at: r.get()?,
        })
    }
}

/// The query of [`crate::Store::pending_parts`]: `$1` the reference to start after, `$2` the
/// prefix, `$3` the limit. The primary key on `provider_ref` gives the order.
pub(crate) const PENDING_PARTS: &str = "SELECT p.provider_ref, p.message_id, p.part, \
     (SELECT COUNT(*) FROM message_parts q WHERE q.message_id = p.message_id) AS parts, m.recipient, p.at \
     FROM message_parts p JOIN messages m ON m.id = p.message_id \
     WHERE p.provider_ref > $1 AND substr(p.provider_ref, 1, length($2)) = $2 \
     AND p.status = 'sent' AND m.status = 'sent' ORDER BY p.provider_ref LIMIT $3";

impl FromRow for PendingPart {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(PendingPart {
            provider_ref: r.get()?,
            message_id: r.get()?,
            part: r.get()?,
            parts: r.get()?,
            to: msisdn("recipient", &r.get::<String>()?)?,
            sent_at: r.get()?,
        })
    }
}

pub(crate) const WEBHOOK_COLUMNS: &str = "id, account_id, url, secret, events, active, created_at";

/// The stored form of an endpoint's event types: space-separated, empty for all.
pub(crate) fn events_column(events: &[EventType]) -> String {
    events.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(" ")
}

impl FromRow for WebhookRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(WebhookRecord {
            id: r.get()?,
            account_id: r.get()?,
            url: r.get()?,
            secret: SealedSecret(r.get()?),
            events: r
                .get::<String>()?
                .split_whitespace()
                .map(|e| EventType::parse(e).ok_or_else(|| corrupt("event type", e)))
                .collect::<Result<_>>()?,
            active: r.get()?,
            created_at: r.get()?,
        })
    }
}

/// The columns a message's webhook delivery is inserted with; the others start `NULL`.
macro_rules! delivery_insert_columns {
    () => {
        "event_id, target, account_id, endpoint_id, url, event_type, message_id, status, error_type, occurred_at, \
         state, attempts, next_attempt_at, last_status, last_error, updated_at"
    };
}
pub(crate) use delivery_insert_columns;

/// The columns of a webhook delivery, in the order [`DeliveryRecord`]'s decoder reads them.
macro_rules! delivery_columns {
    () => {
        concat!(crate::rows::delivery_insert_columns!(), ", sms_balance, sms_threshold, resent_at, resent_after")
    };
}
pub(crate) use delivery_columns;

impl FromRow for DeliveryRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(DeliveryRecord {
            event_id: r.get()?,
            target: r.get()?,
            account_id: r.get()?,
            endpoint_id: r.get()?,
            url: r.get()?,
            secret: None,
            event_type: r.get()?,
            message_id: r.get()?,
            status: r.get()?,
            error_type: r.get()?,
            occurred_at: r.get()?,
            state: r.get()?,
            attempts: r.get()?,
            next_attempt_at: r.get()?,
            last_status: r.get()?,
            last_error: r.get()?,
            updated_at: r.get()?,
            balance_low: match (r.get::<Option<i64>>()?, r.get::<Option<i64>>()?) {
                (Some(sms_credits), Some(threshold)) => Some(BalanceLow { sms_credits, threshold }),
                _ => None,
            },
            resent_at: r.get()?,
            resent_after: r.get::<Option<u32>>()?.unwrap_or(0),
        })
    }
}

pub(crate) const ATTEMPT_COLUMNS: &str = "attempt, at, status_code, error, duration_ms";

impl FromRow for AttemptRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(AttemptRecord {
            attempt: r.get()?,
            at: r.get()?,
            status_code: r.get()?,
            error: r.get()?,
            duration_ms: r.get()?,
        })
    }
}

/// A message whose status a write changes, as the effects of the change need to know it.
#[derive(Debug, Clone)]
pub(crate) struct Changed {
    pub(crate) id: MessageId,
    pub(crate) account: AccountId,
    pub(crate) batch: Option<switchboard_domain::BatchId>,
    pub(crate) created_at: Timestamp,
    pub(crate) notify_url: Option<String>,
}

/// The columns [`Changed`]'s decoder reads, last in every `RETURNING` that changes a status.
macro_rules! changed_columns {
    () => {
        "id, account_id, batch_id, created_at, notify_url"
    };
}
pub(crate) use changed_columns;

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
}

impl FromRow for Changed {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(Changed { id: r.get()?, account: r.get()?, batch: r.get()?, created_at: r.get()?, notify_url: r.get()? })
    }
}

/// A message's charge, then its [`Changed`] columns: what a change that may refund returns.
pub(crate) struct Charged(pub(crate) Credits, pub(crate) Changed);

impl FromRow for Charged {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(Charged(Credits::new(r.get()?, r.get()?), Changed::from_row(r)?))
    }
}

/// A template row, before its versions join it.
pub(crate) struct TemplateRow {
    pub(crate) id: Uuid,
    pub(crate) account_id: AccountId,
    pub(crate) name: String,
    pub(crate) created_at: Timestamp,
}

impl FromRow for TemplateRow {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(TemplateRow { id: r.get()?, account_id: r.get()?, name: r.get()?, created_at: r.get()? })
    }
}

impl FromRow for crate::rules::receipts::PartState {
    fn from_row(r: &mut Row) -> Result<Self> {
        Self::parse(r.get()?, &r.get::<String>()?, r.get()?, r.get()?)
    }
}

pub(crate) const SMPP_CREDENTIAL_COLUMNS: &str =
    "system_id, account_id, password_hash, max_binds, bind_window, max_per_second, created_at, revoked_at";

impl FromRow for crate::SmppCredentialRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        Ok(crate::SmppCredentialRecord {
            system_id: r.get()?,
            account_id: r.get()?,
            password_hash: r.get()?,
            max_binds: r.get()?,
            window: r.get()?,
            max_per_second: r.get()?,
            created_at: r.get()?,
            revoked_at: r.get()?,
        })
    }
}

pub(crate) const SMPP_DELIVERY_COLUMNS: &str =
    "id, account_id, kind, message_id, status, error_type, occurred_at, attempts, next_attempt_at";

impl FromRow for crate::SmppDeliveryRecord {
    fn from_row(r: &mut Row) -> Result<Self> {
        let id = r.get()?;
        let account_id = r.get()?;
        let kind: String = r.get()?;
        let kind = crate::SmppDeliveryKind::parse(&kind).ok_or_else(|| corrupt("smpp delivery kind", &kind))?;
        Ok(crate::SmppDeliveryRecord {
            id,
            account_id,
            kind,
            message_id: r.get()?,
            status: r.get()?,
            error_type: r.get()?,
            occurred_at: r.get()?,
            attempts: r.get()?,
            next_attempt_at: r.get()?,
        })
    }
}
