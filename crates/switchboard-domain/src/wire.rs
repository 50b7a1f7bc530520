//! The JSON shapes of Switchboard's HTTP API, shared by the server and `switchboard-client`.
//!
//! Field names follow each dialect's document exactly (camelCase for TextingLine).
//! With the `openapi` feature the types also describe themselves for the OpenAPI document.

pub mod bird;
pub mod mudbase;
pub mod webhooks;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Direction, Encoding, ErrorType, MessageId, MessageKind, MessageStatus, NumberType, Region, Timestamp};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// TextingLine: `POST /api/v1/messaging/message`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlSendRequest {
    /// Recipient phone number in E.164 format (e.g. +18005551234).
    pub to: String,
    /// Sender phone number in E.164 format; an active number assigned to the account.
    pub from: String,
    /// Message text, up to 640 characters. Required for SMS; optional for MMS with `mediaUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Publicly accessible http(s) URL of a media file; when given, the message is an MMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    /// Unique key that makes retries safe: the same key and body return the original message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// TextingLine's TextingLine-facing status words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TlStatus {
    /// Taken by the provider (and anything after it that is not a failure).
    Sent,
    /// Stored and waiting to be sent.
    Queued,
    /// Failed; see `errorType`.
    Failed,
}

impl TlStatus {
    /// Maps the core lifecycle onto TextingLine's three words.
    pub fn from_status(status: MessageStatus) -> Self {
        match status {
            MessageStatus::Accepted | MessageStatus::Scheduled | MessageStatus::Queued => TlStatus::Queued,
            MessageStatus::Sent | MessageStatus::Delivered | MessageStatus::Received => TlStatus::Sent,
            MessageStatus::Failed | MessageStatus::Undelivered | MessageStatus::Expired | MessageStatus::Canceled => {
                TlStatus::Failed
            }
        }
    }
}

/// TextingLine's message object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TlMessage {
    /// Unique message identifier, prefixed with `msg_`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "msg_DsAdb4EBYBh3z25sBA1qnv"))]
    pub id: MessageId,
    /// `outbound` or `inbound`.
    pub direction: Direction,
    /// Recipient, E.164.
    pub to: String,
    /// Sender, E.164.
    pub from: String,
    /// The text, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The media URL of an MMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    /// One of sent, queued, failed.
    pub status: TlStatus,
    /// Present only when status is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
    /// Present only when status is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When the provider took the message; absent unless sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub sent_at: Option<Timestamp>,
    /// When the message was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// TextingLine: a page of messages, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TlMessageList {
    /// The messages on this page.
    pub data: Vec<TlMessage>,
    /// Whether older messages follow.
    pub has_more: bool,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// TextingLine's error body, for every error the dialect returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TlErrorBody {
    /// The error.
    pub error: TlError,
}

/// One TextingLine error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TlError {
    /// Numeric code: 33004, 33009, 33016, 33019, 33023, or a 30xxx request error.
    pub code: u32,
    /// Stable snake_case name of the code.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
    /// The HTTP status, repeated.
    pub status: u16,
}

/// Admin: create an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// A display name, 1 to 200 characters.
    pub name: String,
}

/// Admin: an account and its balances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The account id (also Mudbase's projectId and Bird's workspaceId).
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// SMS credits left.
    pub sms_credits: i64,
    /// MMS credits left.
    pub mms_credits: i64,
    /// Requests per second the account may make to the Mudbase API; absent means the
    /// server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Whether messages the carrier reports undelivered or failed are refunded.
    #[serde(default)]
    pub refund_carrier_failures: bool,
    /// The only countries the account sends to (ISO 3166-1 alpha-2 codes); `null` for every
    /// country. A message to any other is stored failed with `geographic_restriction`.
    #[serde(default)]
    pub allowed_countries: Option<Vec<Region>>,
    /// Whether numbers the plan does not tell apart as fixed or mobile (all of the North
    /// American plan) are accepted; when not, they fail with `invalid_destination`.
    #[serde(default = "yes")]
    pub accept_fixed_or_mobile: bool,
    /// The SMS balance below which a charge posts an `account.balance_low` webhook event
    /// (once each time a charge takes the balance from at or above it to below it); absent
    /// when no alert is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_balance_threshold: Option<i64>,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Admin: change an account's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateAccount {
    /// Requests per second for the Mudbase API (at least 1); `null` restores the default;
    /// absent leaves it as it is.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>, minimum = 1.0, maximum = 4294967295.0))]
    pub rate_limit: Option<Option<u32>>,
    /// Whether messages the carrier reports undelivered or failed are refunded; absent
    /// leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_carrier_failures: Option<bool>,
    /// The only countries the account may send to, as ISO 3166-1 alpha-2 codes (at most
    /// 300); `null` allows every country; absent leaves it as it is.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Region>>, max_items = 300))]
    pub allowed_countries: Option<Option<Vec<Region>>>,
    /// Whether fixed-or-mobile numbers are accepted; absent leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_fixed_or_mobile: Option<bool>,
    /// The SMS balance below which a charge posts an `account.balance_low` webhook event (1 to
    /// 1,000,000,000,000 SMS credits); `null` removes the alert; absent leaves it as it is.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>, minimum = 1.0, maximum = 1000000000000.0))]
    pub low_balance_threshold: Option<Option<i64>>,
}

/// The highest low-balance threshold an account may have, in SMS credits.
pub const MAX_LOW_BALANCE_THRESHOLD: i64 = 1_000_000_000_000;

/// The most countries an account's list holds.
pub const MAX_ALLOWED_COUNTRIES: usize = 300;

/// Admin: what the lookup told of a message's recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DestinationInfo {
    /// Whether the number is valid in its numbering plan.
    pub valid: bool,
    /// Its line type.
    pub number_type: NumberType,
    /// Its country or territory (ISO 3166-1 alpha-2); absent for numbers of no country and
    /// invalid ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Region>,
}

/// Reads a field that is present (a value or `null`) as `Some`, so that an absent field, which
/// `#[serde(default)]` makes `None`, can be told apart from `null`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Admin: create an API key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// A label for the key, up to 200 characters.
    #[serde(default)]
    pub name: Option<String>,
}

/// Admin: an API key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// The key id: the Basic-auth user name.
    pub id: String,
    /// The account the key acts for.
    pub account_id: Uuid,
    /// Label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<Timestamp>,
}

/// Admin: a newly created API key, the only time its secret is shown.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCreated {
    /// The key as listed.
    #[serde(flatten)]
    pub key: ApiKey,
    /// The secret: the Basic-auth password. Shown once; stored only as a keyed hash.
    pub secret: String,
    /// The key as one string, `id:secret`, for `X-API-Key` (Mudbase). Shown once.
    pub api_key: String,
}

impl std::fmt::Debug for ApiKeyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCreated").field("key", &self.key).field("secret", &"<redacted>").finish()
    }
}

/// Admin: create an SMPP credential. The password is made by the server and shown once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSmppCredential {
    /// The `system_id` an ESME binds with: 1 to 15 printable ASCII characters without
    /// spaces, unique on the server.
    pub system_id: String,
    /// Most binds at once with this credential (default: the server's `max_binds_per_account`).
    #[serde(default)]
    pub max_binds: Option<u32>,
    /// Most requests waiting for their answer on one bind, 1 to 1000 (default: the server's
    /// `window`).
    #[serde(default)]
    pub window: Option<u32>,
    /// Most `submit_sm` a second on one bind (default: the server's `max_per_second`).
    #[serde(default)]
    pub max_per_second: Option<u32>,
}

/// Admin: an SMPP credential as listed (never its password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SmppCredential {
    /// The `system_id`.
    pub system_id: String,
    /// The account it binds for.
    pub account_id: Uuid,
    /// Its own limit on binds at once, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_binds: Option<u32>,
    /// Its own window per bind, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u32>,
    /// Its own rate per bind, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_second: Option<u32>,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<Timestamp>,
}

/// Admin: a newly created SMPP credential, the only time its password is shown.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SmppCredentialCreated {
    /// The credential as listed.
    #[serde(flatten)]
    pub credential: SmppCredential,
    /// The bind password (8 characters). Shown once; stored only as a keyed hash.
    pub password: String,
}

impl std::fmt::Debug for SmppCredentialCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppCredentialCreated")
            .field("credential", &self.credential)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Admin: an SMPP bind held on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SmppBind {
    /// The bind's number on this node.
    pub id: u64,
    /// The account.
    pub account_id: Uuid,
    /// The credential it bound with.
    pub system_id: String,
    /// `transmitter`, `receiver` or `transceiver`.
    pub mode: String,
    /// The ESME's address and port.
    pub peer: String,
    /// When it bound.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub bound_at: Timestamp,
    /// Requests from the ESME waiting for their answer now.
    pub window_in_use: u32,
    /// The most that may wait.
    pub window: u32,
    /// `submit_sm` received.
    pub submits: u64,
    /// `submit_sm` accepted (answered `ESME_ROK`).
    pub accepted: u64,
    /// `deliver_sm` sent (receipts and inbound messages).
    pub delivers: u64,
    /// `deliver_sm` the ESME answered `ESME_ROK`.
    pub delivered: u64,
}

/// Admin: assign a sender to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSender {
    /// An E.164 number, or an alphanumeric sender ID: 1 to 11 letters (A-Z, a-z), digits and
    /// spaces, at least one a letter. An alphanumeric sender cannot send MMS or receive messages.
    pub address: String,
    /// Whether it may send now (default true).
    #[serde(default = "yes")]
    pub active: bool,
    /// Whether it sends SMS (default true).
    #[serde(default = "yes")]
    pub sms: bool,
    /// Whether it sends MMS (default false).
    #[serde(default)]
    pub mms: bool,
}

fn yes() -> bool {
    true
}

/// Admin: change a sender.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateSender {
    /// New active state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// New SMS capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<bool>,
    /// New MMS capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mms: Option<bool>,
}

/// Admin: a sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    /// The E.164 number or the alphanumeric sender ID.
    pub address: String,
    /// The owning account.
    pub account_id: Uuid,
    /// Whether it may send.
    pub active: bool,
    /// SMS capable.
    pub sms: bool,
    /// MMS capable.
    pub mms: bool,
    /// When it was assigned.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Admin: create a channel, which sends from one of the account's senders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    /// A display name, 1 to 200 characters.
    pub name: String,
    /// The sender it sends from (an E.164 number or an alphanumeric sender ID); one of the
    /// account's senders.
    pub sender: String,
    /// Whether it may send now (default true).
    #[serde(default = "yes")]
    pub active: bool,
}

/// Admin: change a channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateChannel {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New active state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// Admin: a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    /// The channel id.
    pub id: Uuid,
    /// The owning account.
    pub account_id: Uuid,
    /// Display name.
    pub name: String,
    /// The sender number it sends from.
    pub sender: String,
    /// Whether it may send.
    pub active: bool,
    /// Whether it can send MMS: its sender's MMS capability.
    pub mms: bool,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Admin: create a message template (without versions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    /// A name, 1 to 200 characters, unique in the account.
    pub name: String,
}

/// Admin: add a version to a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTemplateVersion {
    /// The text per locale code (such as `en` or `pt-BR`), 1 to 100 locales; a text may have
    /// `{{name}}` placeholders.
    #[cfg_attr(feature = "openapi", schema(example = json!({"en": "Hi {{name}}", "nl": "Hoi {{name}}"})))]
    pub texts: std::collections::BTreeMap<String, String>,
    /// Whether it may be sent now (default true).
    #[serde(default = "yes")]
    pub active: bool,
}

/// Admin: activate or deactivate a template version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplateVersion {
    /// Whether it may be sent.
    pub active: bool,
}

/// Admin: one immutable version of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TemplateVersion {
    /// The version id.
    pub id: Uuid,
    /// The template.
    pub template_id: Uuid,
    /// The text per locale, ordered by locale.
    pub texts: std::collections::BTreeMap<String, String>,
    /// Whether it may be sent.
    pub active: bool,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Admin: a message template with its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// The template id.
    pub id: Uuid,
    /// The owning account.
    pub account_id: Uuid,
    /// Name, unique in the account.
    pub name: String,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// Its versions, oldest first.
    pub versions: Vec<TemplateVersion>,
}

/// Admin: add credits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    /// SMS credits to add (0 to 1,000,000,000).
    #[serde(default)]
    pub sms: i64,
    /// MMS credits to add (0 to 1,000,000,000).
    #[serde(default)]
    pub mms: i64,
    /// Free text stored on the ledger entry (an invoice number, say), up to 200 characters.
    #[serde(default)]
    pub reference: Option<String>,
}

/// Admin: an account's balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    /// SMS credits left.
    pub sms_credits: i64,
    /// MMS credits left.
    pub mms_credits: i64,
}

/// Admin: one immutable ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// Entry id.
    pub id: Uuid,
    /// `topup`, `charge` or `refund`.
    pub kind: String,
    /// Change to the SMS balance (negative for a charge).
    pub sms_delta: i64,
    /// Change to the MMS balance.
    pub mms_delta: i64,
    /// SMS balance after the entry.
    pub sms_balance: i64,
    /// MMS balance after the entry.
    pub mms_balance: i64,
    /// The message that caused it, for charges and refunds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub message_id: Option<MessageId>,
    /// The top-up's reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When it was written.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Admin: suppress a recipient for a sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OptOutRequest {
    /// The account's sender number.
    pub sender: String,
    /// The recipient who opted out.
    pub recipient: String,
}

/// Admin: an opt-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OptOut {
    /// The sender number.
    pub sender: String,
    /// The suppressed recipient.
    pub recipient: String,
    /// When it was recorded.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Admin: one status change of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatusEvent {
    /// The status entered.
    pub status: MessageStatus,
    /// When.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// The error type, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
}

/// Admin: a message with everything stored about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Message id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: MessageId,
    /// The owning account.
    pub account_id: Uuid,
    /// Direction.
    pub direction: Direction,
    /// SMS or MMS.
    pub kind: MessageKind,
    /// Recipient.
    pub to: String,
    /// Sender.
    pub from: String,
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Media URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    /// GSM-7 or UCS-2.
    pub encoding: Encoding,
    /// SMS parts.
    pub segments: u32,
    /// Lifecycle status.
    pub status: MessageStatus,
    /// Error type, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorType>,
    /// Error message, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// SMS credits charged (net of refunds).
    pub sms_credits: i64,
    /// MMS credits charged (net of refunds).
    pub mms_credits: i64,
    /// The idempotency key the request carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Dispatch attempts so far.
    pub attempts: u32,
    /// The provider's id for the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When the provider took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub sent_at: Option<Timestamp>,
    /// Every status it went through, oldest first (only when one message is read; empty once
    /// retention has pruned the history of a message that ended `retention_days` ago).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<StatusEvent>,
    /// Its parts as the upstream knows them, with their receipts (only when one message is
    /// read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<webhooks::MessagePart>,
    /// What the destination lookup told of the recipient, when it was looked up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationInfo>,
    /// Where it came from: the dialect that sent it, a handset (`inbound`), or a keyword reply
    /// (`reply`). Absent from older servers' answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<crate::Dialect>,
    /// Its charge and refund, oldest first (only when one message is read through the admin
    /// API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ledger: Vec<LedgerEntry>,
    /// Its webhook deliveries with their attempts, by event (only when one message is read
    /// through the admin API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_deliveries: Vec<webhooks::WebhookDelivery>,
}

/// Admin: a page of a search, newest first. A search examines at most 10,000 rows for one
/// page (the ids of its time range, newest first, through no index but the time order's);
/// when it stops there before the page is full, `capped` says so and `nextCursor` goes on
/// from where it stopped, so that a short page is not the end of the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SearchPage<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; absent when the search reached the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Whether the search stopped at its cap of rows examined before the page was full.
    #[serde(default)]
    pub capped: bool,
}

/// Admin: a page of items, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Admin API error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AdminErrorBody {
    /// The error.
    pub error: AdminError,
}

/// One admin API error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AdminError {
    /// Stable snake_case code, e.g. `not_found`, `invalid_request`, `conflict`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}
