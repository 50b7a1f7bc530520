//! The Mudbase dialect's JSON shapes (`/api/messaging/projects/{projectId}/messaging/…`).
//! Every response is an envelope: `{"success": true, "data": …}` or
//! `{"success": false, "error": {"code": …, "message": …}}`.

use serde::{Deserialize, Serialize};

use crate::{BatchId, MessageId, Timestamp};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// Recipients as Mudbase takes them: one number, a comma-separated string, or an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(untagged)]
pub enum MbRecipients {
    /// `"+1…"` or `"+1…,+44…"`.
    Text(String),
    /// `["+1…", "+44…"]`.
    List(Vec<String>),
}

impl MbRecipients {
    /// Each recipient as given, trimmed; empty entries (as in `"a,,b"`) dropped.
    pub fn entries(&self) -> Vec<&str> {
        match self {
            MbRecipients::Text(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
            MbRecipients::List(v) => v.iter().map(|s| s.trim()).collect(),
        }
    }
}

/// `POST …/messaging/sms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MbSmsRequest {
    /// One E.164 number, several joined by commas, or an array of them (up to 1,000 distinct).
    pub to: MbRecipients,
    /// The text, up to 640 characters.
    pub message: String,
    /// A sender assigned to the project: an E.164 number or an alphanumeric sender ID (1 to 11
    /// letters, digits and spaces, at least one letter). Without it the project's first active
    /// SMS sender sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// Mudbase's words for where a send stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MbStatus {
    /// Every recipient is settled and at least one message was sent.
    Sent,
    /// Every recipient failed.
    Failed,
    /// Some recipients are still on their way.
    Pending,
}

/// Mudbase's message types. Switchboard sends SMS only; the others exist in history filters
/// and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MbType {
    /// Push notification.
    Push,
    /// Email.
    Email,
    /// SMS.
    Sms,
}

/// The `data` of a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MbSmsSent {
    /// The send request's id (each recipient's message also has its own).
    #[serde(rename = "_id")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: BatchId,
    /// Always `sms`.
    #[serde(rename = "type")]
    pub kind: MbType,
    /// The distinct recipients, joined by commas.
    pub to: String,
    /// Where the request stands.
    pub status: MbStatus,
    /// How many distinct recipients.
    pub recipients: u32,
    /// Recipients not failed (sent, or on their way).
    pub success_count: u32,
    /// Recipients failed (opted out or refused).
    pub failure_count: u32,
    /// The first recipient's message id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub message_id: MessageId,
    /// When the provider took the first message, if it has.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub sent_at: Option<Timestamp>,
    /// When the request was accepted.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// One send request in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MbHistoryEntry {
    /// The id the send returned.
    #[serde(rename = "_id")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: BatchId,
    /// Always `sms`.
    #[serde(rename = "type")]
    pub kind: MbType,
    /// A push notification's title: always `null` for SMS, present because the platform's
    /// clients read it.
    pub title: Option<String>,
    /// The text.
    pub body: Option<String>,
    /// An email's subject: always `null` for SMS, present because the platform's clients read
    /// it.
    pub subject: Option<String>,
    /// How many distinct recipients.
    pub recipients: u32,
    /// Recipients not failed.
    pub success_count: u32,
    /// Recipients failed.
    pub failure_count: u32,
    /// Where the request stands.
    pub status: MbStatus,
    /// When the provider took the first message, if it has.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub sent_at: Option<Timestamp>,
    /// When the request was accepted.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// Paging of a history page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MbPagination {
    /// This page, from 1.
    pub page: u32,
    /// Entries per page.
    pub limit: u32,
    /// Entries in all.
    pub total: u64,
    /// Pages in all.
    pub total_pages: u64,
}

/// The `data` of a history page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MbHistory {
    /// Newest first.
    pub messages: Vec<MbHistoryEntry>,
    /// Paging.
    pub pagination: MbPagination,
}

/// Messages by type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MbByType {
    /// Always 0 here.
    pub push: i64,
    /// Always 0 here.
    pub email: i64,
    /// SMS and MMS messages.
    pub sms: i64,
}

/// Messages by Mudbase status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MbByStatus {
    /// Sent or delivered.
    pub sent: i64,
    /// Failed, undelivered, expired or canceled.
    pub failed: i64,
    /// Not there yet (accepted, scheduled, queued).
    pub pending: i64,
}

/// The period statistics cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MbPeriod {
    /// Start (inclusive).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub start_date: Timestamp,
    /// End (exclusive).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub end_date: Timestamp,
}

/// The `data` of statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MbStats {
    /// Outbound messages (one per recipient) created in the period.
    pub total_messages: i64,
    /// By type.
    pub by_type: MbByType,
    /// By status.
    pub by_status: MbByStatus,
    /// Sent as a percentage of all, to two decimals (0 when there are none).
    pub success_rate: f64,
    /// The period.
    pub period: MbPeriod,
}

/// `POST /api/auth/token`: the `data` of a new access token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MbToken {
    /// The JWT, for `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// When it expires.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for MbToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MbToken").field("access_token", &"<redacted>").field("expires_at", &self.expires_at).finish()
    }
}

/// A success envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MbOk<T> {
    /// Always true.
    pub success: bool,
    /// The payload.
    pub data: T,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MbErrorDetail {
    /// A stable code, e.g. `VALIDATION_ERROR` (see docs/API.md).
    pub code: String,
    /// A human-readable explanation naming the field at fault.
    pub message: String,
}

/// An error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MbErrorBody {
    /// Always false.
    pub success: bool,
    /// The error.
    pub error: MbErrorDetail,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_in_each_form() {
        let one: MbSmsRequest = serde_json::from_str(r#"{"to":"+18005550001","message":"hi"}"#).unwrap();
        assert_eq!(one.to.entries(), vec!["+18005550001"]);
        let text: MbSmsRequest =
            serde_json::from_str(r#"{"to":"+18005550001, +18005550002,","message":"hi","from":"+18005559876"}"#)
                .unwrap();
        assert_eq!(text.to.entries(), vec!["+18005550001", "+18005550002"]);
        let list: MbSmsRequest =
            serde_json::from_str(r#"{"to":["+18005550001","+18005550002"],"message":"hi"}"#).unwrap();
        assert_eq!(list.to.entries().len(), 2);
        assert!(serde_json::from_str::<MbSmsRequest>(r#"{"to":1,"message":"hi"}"#).is_err());
        assert!(serde_json::from_str::<MbSmsRequest>(r#"{"to":"+1","message":"hi","cc":"x"}"#).is_err());
    }
}
