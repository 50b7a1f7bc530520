//! The Bird channels dialect's JSON shapes (`/workspaces/{workspaceId}/channels/{channelId}/messages`).
//!
//! Requests are read as Bird's schema gives them; open-ended objects (`meta`, `replyTo`,
//! metadata, attachments, actions, short links) are kept as JSON and returned as they came.
//! Errors are `{"code": …, "message": …, "details": {"<field>": ["<problem>"]}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::Timestamp;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// `POST …/messages`: send a message to a channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BirdSendRequest {
    /// The sending connector; on an SMS channel its `identifierValue`, if given, must be the
    /// channel's sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Value>,
    /// Who receives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<BirdReceiver>,
    /// The sender's own identifier for the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A template to render instead of a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<BirdTemplate>,
    /// Free-form metadata, kept and returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// The message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Value>,
    /// The content, unless a template is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BirdBody>,
    /// Where this message's status events go (`{"url": …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Value>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_frequency: Option<bool>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_link_tracking: Option<bool>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_quiet_hours: Option<bool>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_global_holdout: Option<bool>,
    /// Labels, kept and returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_links: Option<Value>,
    /// Send at this time (RFC 3339), at most 35 days ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
    /// Seconds the message may wait to be sent before it ends expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<i64>,
}

/// The receivers of a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdReceiver {
    /// The contacts; an SMS message has exactly one.
    #[serde(default)]
    pub contacts: Vec<BirdContact>,
}

/// One receiver.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdContact {
    /// A contact id, kept and returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `phonenumber` (the default on an SMS channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier_key: Option<String>,
    /// The E.164 number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier_value: Option<String>,
    /// Accepted and kept.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifiers: Option<Value>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_address: Option<String>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_address_selector: Option<String>,
}

/// A message body: `text`, `image` or `file` on an SMS channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdBody {
    /// `text`, `image` or `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The content of a `text` body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<BirdTextBody>,
    /// The content of an `image` body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<BirdImageBody>,
    /// The content of a `file` body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<BirdFileBody>,
}

/// A text body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdTextBody {
    /// The text.
    #[serde(default)]
    pub text: String,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Value>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Value>,
    /// `subject` and other metadata, kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// An image body: 1 to 10 images, optional text and `metadata.subject`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdImageBody {
    /// The images.
    #[serde(default)]
    pub images: Vec<BirdMedia>,
    /// Text sent with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `subject` and other metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A file body: 1 to 10 files with their content types, optional text and `metadata.subject`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdFileBody {
    /// The files.
    #[serde(default)]
    pub files: Vec<BirdMedia>,
    /// Text sent with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `subject` and other metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// One image or file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdMedia {
    /// An absolute http(s) URL.
    #[serde(default)]
    pub media_url: String,
    /// The MIME type (required for files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_text: Option<String>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// A template to send.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdTemplate {
    /// The template's id.
    #[serde(default)]
    pub project_id: String,
    /// A version id, or `latest` for the newest active version.
    #[serde(default)]
    pub version: String,
    /// The locale, such as `en` or `en-US`.
    #[serde(default)]
    pub locale: String,
    /// Parameter values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<BirdParameter>,
    /// Values by name, used for placeholders without a parameter of that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<BTreeMap<String, String>>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Value>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_links: Option<Value>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_parameters: Option<Value>,
    /// Accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
}

/// One template parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdParameter {
    /// `string`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The placeholder it fills.
    #[serde(default)]
    pub key: String,
    /// Its value.
    #[serde(default)]
    pub value: String,
}

/// The connector a message was sent from or to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdConnector {
    /// The connector.
    pub connector: BirdIdentifier,
}

/// A connector's address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdIdentifier {
    /// The phone number.
    pub identifier_value: String,
}

/// One part of a sent message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdPart {
    /// The upstream's id for it.
    pub platform_reference: String,
}

/// Why a message failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdFailure {
    /// A numeric code per error type (see the API documentation).
    pub code: u32,
    /// What went wrong.
    pub description: String,
    /// The error type as Switchboard names it.
    pub source: BirdFailureSource,
}

/// The origin of a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdFailureSource {
    /// The error type (`invalid_destination`, `opted_out`, …).
    pub code: String,
    /// `switchboard`.
    pub name: String,
}

/// A message as Bird shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdMessage {
    /// The message id.
    pub id: Uuid,
    /// The channel it was sent on.
    pub channel_id: Uuid,
    /// The channel's sender.
    pub sender: BirdConnector,
    /// The receiver, as given (its number in E.164).
    pub receiver: BirdReceiver,
    /// The metadata given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// The reference given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The parts the upstream took.
    pub parts: Vec<BirdPart>,
    /// `accepted`, `scheduled`, `processing`, `sent`, `delivered`, `sending_failed`,
    /// `delivery_failed`, `expired` or `canceled`.
    pub status: String,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `outgoing` or `incoming`.
    pub direction: String,
    /// The message it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Value>,
    /// When its status last changed.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_status_at: Timestamp,
    /// When it was accepted.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When it last changed.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
    /// The failure, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<BirdFailure>,
    /// The tags given.
    pub tags: Vec<String>,
    /// The short-link settings given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_links: Option<Value>,
    /// When it is or was scheduled to be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub scheduled_for: Option<Timestamp>,
    /// The body given, or for a template the text it rendered to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BirdBody>,
    /// The template given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<BirdTemplate>,
    /// The notification settings given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Value>,
    /// The validity given, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<i64>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_frequency: Option<bool>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_link_tracking: Option<bool>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_quiet_hours: Option<bool>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_global_holdout: Option<bool>,
}

/// A page of a channel's messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BirdMessageList {
    /// The messages, newest first.
    pub results: Vec<BirdMessage>,
    /// Pass as `pageToken` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// An error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BirdError {
    /// `InvalidPayload`, `Unauthorized`, `Forbidden`, `NotFound`, `Conflict`, …
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// Problems by field, for validation errors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, Vec<String>>,
}
