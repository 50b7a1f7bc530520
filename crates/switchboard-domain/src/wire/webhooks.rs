//! Webhooks and the delivery lifecycle: the admin API's endpoints, deliveries and attempts,
//! the simulator's stand-in-for-a-carrier requests, and the body of an event.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use super::Message;
use crate::{ErrorType, EventId, EventType, MessageId, MessageStatus, Timestamp};

/// Admin: create a webhook endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are posted: an absolute http(s) URL.
    pub url: String,
    /// The signing secret, `whsec_` and base64 of 24 to 64 bytes; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Event types to send, such as `message.delivered`; absent or empty for every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Whether events are delivered to it (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// Admin: change a webhook endpoint; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhook {
    /// New URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// New event types (empty for every type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Active or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// A new signing secret to use from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Generate a new signing secret (returned in the response).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate_secret: bool,
}

/// Admin: a webhook endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Id.
    pub id: Uuid,
    /// The owning account.
    pub account_id: Uuid,
    /// Where events are posted.
    pub url: String,
    /// The event types it takes; empty for every type.
    pub events: Vec<EventType>,
    /// Whether events are delivered to it.
    pub active: bool,
    /// The signing secret: only in the answer that created or changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Admin: the secret that signs deliveries to messages' own notification URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NotificationSecret {
    /// `whsec_…`.
    pub secret: String,
}

/// Admin: one attempt to deliver an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempt {
    /// Which attempt, from 1.
    pub attempt: u32,
    /// When it started.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: u32,
}

/// Admin: one event on its way to one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The event id (the `webhook-id` header).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub event_id: EventId,
    /// The endpoint, or absent for the message's own notification URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<Uuid>,
    /// Where it is posted.
    pub url: String,
    /// The event type.
    pub event_type: EventType,
    /// The message it is about.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub message_id: MessageId,
    /// The status the message entered.
    pub status: MessageStatus,
    /// The error type, for a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
    /// When it happened.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub occurred_at: Timestamp,
    /// `pending`, `delivered`, `failed` (given up) or `canceled` (endpoint deleted).
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When it is next tried, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub next_attempt_at: Option<Timestamp>,
    /// The HTTP status of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// What went wrong with the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<WebhookAttempt>,
}

/// Simulator: a message from a handset to one of the gateway's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectInbound {
    /// The handset, E.164.
    pub from: String,
    /// The number it was sent to: a sender assigned to an account.
    pub to: String,
    /// Text (up to 1600 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Media URLs (up to 10): an MMS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_urls: Vec<String>,
    /// The carrier's id for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
}

/// Simulator: what an inbound message came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct InboundResult {
    /// The stored inbound message.
    pub message: Message,
    /// The automatic answer to a keyword, queued to be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Message>,
    /// Whether the opt-out list changed.
    pub opt_out_changed: bool,
}

/// Simulator: delivery receipts, as a carrier would send them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectReceipts {
    /// 1 to 1000 receipts, applied in order.
    pub receipts: Vec<InjectReceipt>,
}

/// Simulator: one delivery receipt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectReceipt {
    /// The upstream's id for the part (a message's `parts` list it).
    pub provider_ref: String,
    /// `delivered`, `undelivered` or `failed`.
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
    /// The carrier's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Simulator: what each receipt did, in order: `applied`, `ignored` (the part was final
/// already) or `unmatched` (kept until its submission is recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ReceiptResults {
    /// One word per receipt.
    pub results: Vec<String>,
}

/// The body of a webhook event posted to an account's endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    /// The event id, also in the `webhook-id` header; the same on every retry.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: EventId,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When it happened.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// The message as this event left it.
    pub data: EventMessage,
}

/// The message in a webhook event: what does not change once the event has happened, so that
/// every retry of an event carries the same body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventMessage {
    /// Message id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: MessageId,
    /// The owning account.
    pub account_id: Uuid,
    /// Direction.
    pub direction: crate::Direction,
    /// SMS or MMS.
    pub kind: crate::MessageKind,
    /// Recipient (for an inbound message, the gateway's number).
    pub to: String,
    /// Sender (for an inbound message, the handset).
    pub from: String,
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Every media URL, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_urls: Vec<String>,
    /// GSM-7 or UCS-2.
    pub encoding: crate::Encoding,
    /// SMS parts.
    pub segments: u32,
    /// The status this event reports.
    pub status: MessageStatus,
    /// Error type, for a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
    /// Error message, for a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The provider's id, once it took the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When the provider took it, for events from `sent` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub sent_at: Option<Timestamp>,
}

/// The body of an `account.balance_low` event posted to an account's endpoint: a charge took
/// the account's SMS balance from at or above its low-balance threshold to below it. It is
/// posted once per crossing; a top-up or refund that brings the balance back to the threshold
/// or above arms the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BalanceLowEvent {
    /// The event id, also in the `webhook-id` header; the same on every retry.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: EventId,
    /// Always `account.balance_low`.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the charge was made.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// The balance and the threshold.
    pub data: BalanceLowData,
}

/// What an `account.balance_low` event reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BalanceLowData {
    /// The account.
    pub account_id: Uuid,
    /// Its SMS balance right after the charge.
    pub sms_credits: i64,
    /// Its low-balance threshold, in SMS credits, when the charge was made.
    pub low_balance_threshold: i64,
    /// The message whose charge crossed the threshold.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub message_id: MessageId,
}

/// Admin: how one upstream stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Upstream {
    /// Its configured name.
    pub name: String,
    /// `simulator`, `smpp` or `http`.
    pub kind: String,
    /// Whether it can take messages now (bound, or passing its health checks).
    pub connected: bool,
    /// Messages handed to it and not yet answered.
    pub in_flight: u64,
    /// Most messages it may have in flight; 0 when unbounded.
    pub window: u64,
    /// Messages it took since the server started.
    pub sent: u64,
    /// Messages it refused or could not be reached for since the server started.
    pub failed: u64,
    /// Its last error, or its peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The most messages a second it sends now: its `max_per_second`, or the lower rate it
    /// learned from the upstream's throttling; absent when not limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// How often the upstream throttled since the server started.
    #[serde(default)]
    pub throttled: u64,
}

/// One part of a message, as the upstream knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MessagePart {
    /// Which part, from 1.
    pub part: u32,
    /// The upstream's id for it.
    pub provider_ref: String,
    /// `sent`, `delivered`, `undelivered` or `failed`.
    pub status: MessageStatus,
    /// The error type a failure receipt gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
    /// When it last changed.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
}
