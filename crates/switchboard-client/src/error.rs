//! What a call can fail with: [`ClientError`], and [`ApiError`] for an error answer in the
//! dialect's own shape, read into its status, code, type, message and `Retry-After`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

/// Which of the server's APIs answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// The TextingLine dialect, under `/api/v1/messaging`.
    TextingLine,
    /// The Mudbase dialect, under `/api/messaging/projects` and `/api/auth`.
    Mudbase,
    /// The Bird channels dialect, under `/workspaces`.
    Bird,
    /// The admin API, under `/admin/v1`.
    Admin,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::TextingLine => "TextingLine",
            Dialect::Mudbase => "Mudbase",
            Dialect::Bird => "Bird",
            Dialect::Admin => "the admin API",
        })
    }
}

/// An error's code as the dialect gives it: a number in TextingLine (`33023`), a name in the
/// others (`INSUFFICIENT_CREDITS` in Mudbase, `InsufficientCredits` in Bird, `not_found` in
/// the admin API). docs/API.md lists each dialect's codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A numeric code (TextingLine).
    Number(u32),
    /// A named code (Mudbase, Bird, the admin API).
    Name(String),
}

impl ErrorCode {
    /// The number, for a numeric code.
    pub fn as_number(&self) -> Option<u32> {
        match self {
            ErrorCode::Number(n) => Some(*n),
            ErrorCode::Name(_) => None,
        }
    }

    /// The name, for a named code.
    pub fn as_name(&self) -> Option<&str> {
        match self {
            ErrorCode::Number(_) => None,
            ErrorCode::Name(name) => Some(name),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Number(n) => write!(f, "{n}"),
            ErrorCode::Name(name) => f.write_str(name),
        }
    }
}

impl From<u32> for ErrorCode {
    fn from(code: u32) -> Self {
        ErrorCode::Number(code)
    }
}

impl From<&str> for ErrorCode {
    fn from(code: &str) -> Self {
        ErrorCode::Name(code.to_owned())
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> Self {
        ErrorCode::Name(code)
    }
}

impl PartialEq<u32> for ErrorCode {
    fn eq(&self, other: &u32) -> bool {
        self.as_number() == Some(*other)
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_name() == Some(other)
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_name() == Some(*other)
    }
}

/// An error answer from the server, in the shape of the dialect that answered.
///
/// TextingLine answers `{"error": {"code": 33023, "type": "insufficient_credits", "message": …,
/// "status": 402}}`, Mudbase `{"success": false, "error": {"code": "INSUFFICIENT_CREDITS",
/// "message": …}}`, Bird `{"code": "InvalidPayload", "message": …, "details": {field: [problem]}}`
/// and the admin API `{"error": {"code": "not_found", "message": …}}`. Whatever the shape,
/// its parts land in the same fields; the body is kept as it came in [`ApiError::body`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The API that was called.
    pub dialect: Dialect,
    /// The error's code, when the body has one.
    pub code: Option<ErrorCode>,
    /// TextingLine's stable name of the code (its `type`, such as `insufficient_credits`).
    pub kind: Option<String>,
    /// What went wrong, as the server says it (or the body's text, when it is not the
    /// dialect's shape).
    pub message: String,
    /// Bird's problems by field (`details`), for a validation error; empty otherwise.
    pub details: BTreeMap<String, Vec<String>>,
    /// How long the server asked to wait before trying again (`Retry-After`, in seconds).
    pub retry_after: Option<Duration>,
    /// The body as it came: JSON, or a JSON string of the text when it was not JSON.
    pub body: Value,
}

/// The longest text of a body that is not JSON kept as an error's message.
const MAX_MESSAGE_CHARS: usize = 500;

impl ApiError {
    /// Reads an error answer.
    pub(crate) fn parse(dialect: Dialect, status: StatusCode, headers: &HeaderMap, bytes: &[u8]) -> Self {
        let body: Value = serde_json::from_slice(bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(bytes).chars().take(MAX_MESSAGE_CHARS).collect())
        });
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // TextingLine, Mudbase and the admin API nest the error under `error`; Bird does not.
        let error = body.get("error").filter(|e| e.is_object()).unwrap_or(&body);
        let code = match error.get("code") {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).map(ErrorCode::Number),
            Some(Value::String(s)) => Some(ErrorCode::Name(s.clone())),
            _ => None,
        };
        let kind = error.get("type").and_then(Value::as_str).map(str::to_owned);
        let message = match (error.get("message").and_then(Value::as_str), &body) {
            (Some(m), _) => m.to_owned(),
            (None, Value::String(text)) if !text.trim().is_empty() => text.trim().to_owned(),
            (None, _) => status.canonical_reason().unwrap_or("error").to_owned(),
        };
        let details = error
            .get("details")
            .and_then(|d| serde_json::from_value::<BTreeMap<String, Vec<String>>>(d.clone()).ok())
            .unwrap_or_default();
        Self { status, dialect, code, kind, message, details, retry_after, body }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered {}", self.dialect, self.status)?;
        match (&self.code, &self.kind) {
            (Some(code), Some(kind)) => write!(f, " ({code} {kind})")?,
            (Some(code), None) => write!(f, " ({code})")?,
            (None, Some(kind)) => write!(f, " ({kind})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)?;
        for (field, problems) in &self.details {
            write!(f, "; {field}: {}", problems.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error status, in its dialect's error shape.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The request could not be sent or its answer not read: no connection, a timeout, a
    /// connection closed halfway.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with success, but not with the JSON expected.
    #[error("unexpected answer ({status}): {reason}")]
    Decode {
        /// The answer's status.
        status: StatusCode,
        /// Why it could not be read, with the start of the body.
        reason: String,
    },
    /// The base URL is not an absolute `http` or `https` URL without credentials, query or
    /// fragment.
    #[error("invalid base URL `{url}`: {reason}")]
    InvalidBaseUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The builder's settings do not go together (see the message).
    #[error("invalid client settings: {0}")]
    Config(String),
}

impl ClientError {
    /// The error answer, when the server gave one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<StatusCode> {
        self.api().map(|e| e.status)
    }

    /// The dialect's error code of an error answer, if it has one.
    pub fn code(&self) -> Option<&ErrorCode> {
        self.api().and_then(|e| e.code.as_ref())
    }

    /// How long the server asked to wait before trying again, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.api().and_then(|e| e.retry_after)
    }

    /// Whether trying the same request again may succeed: a connection failure or timeout, or
    /// an answer of 408, 429, 500, 502, 503 or 504. Only a request that cannot take effect
    /// twice (a TextingLine send with an idempotency key, a read) is safe to repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Api(e) => is_transient_status(e.status),
            ClientError::Http(e) => !e.is_builder() && !e.is_redirect(),
            _ => false,
        }
    }
}

/// The statuses after which the same request may succeed later.
pub(crate) fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Result with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(dialect: Dialect, status: u16, retry_after: Option<&str>, body: &str) -> ApiError {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry_after {
            headers.insert(RETRY_AFTER, r.parse().unwrap());
        }
        ApiError::parse(dialect, StatusCode::from_u16(status).unwrap(), &headers, body.as_bytes())
    }

    #[test]
    fn textingline_errors() {
        let e = parse(
            Dialect::TextingLine,
            402,
            None,
            r#"{"error":{"code":33023,"type":"insufficient_credits","message":"Insufficient credits","status":402}}"#,
        );
        assert_eq!(e.code, Some(ErrorCode::Number(33023)));
        assert_eq!(e.kind.as_deref(), Some("insufficient_credits"));
        assert_eq!(e.message, "Insufficient credits");
        assert_eq!(
            e.to_string(),
            "TextingLine answered 402 Payment Required (33023 insufficient_credits): Insufficient credits"
        );
        let throttled = parse(
            Dialect::TextingLine,
            429,
            Some("7"),
            r#"{"error":{"code":30429,"type":"too_many_requests","message":"slow down","status":429}}"#,
        );
        assert_eq!(throttled.retry_after, Some(Duration::from_secs(7)));
        assert!(ClientError::Api(Box::new(throttled)).is_transient());
    }

    #[test]
    fn mudbase_bird_and_admin_errors() {
        let mb = parse(
            Dialect::Mudbase,
            403,
            None,
            r#"{"success":false,"error":{"code":"INSUFFICIENT_CREDITS","message":"not enough"}}"#,
        );
        assert_eq!((mb.code.as_ref().unwrap() == "INSUFFICIENT_CREDITS", mb.kind.as_deref()), (true, None));
        let bird = parse(
            Dialect::Bird,
            422,
            None,
            r#"{"code":"InvalidPayload","message":"The request did not pass validation","details":{"receiver":["not E.164"]}}"#,
        );
        assert_eq!(bird.code, Some(ErrorCode::Name("InvalidPayload".into())));
        assert_eq!(bird.details["receiver"], vec!["not E.164".to_owned()]);
        assert_eq!(
            bird.to_string(),
            "Bird answered 422 Unprocessable Entity (InvalidPayload): The request did not pass validation; receiver: not E.164"
        );
        let admin = parse(Dialect::Admin, 404, None, r#"{"error":{"code":"not_found","message":"account not found"}}"#);
        assert_eq!(admin.to_string(), "the admin API answered 404 Not Found (not_found): account not found");
        assert!(!ClientError::Api(Box::new(admin)).is_transient());
    }

    #[test]
    fn bodies_that_are_not_the_shape() {
        let text = parse(Dialect::Admin, 502, Some("soon"), "Bad Gateway from the proxy");
        assert_eq!((text.code, text.message.as_str(), text.retry_after), (None, "Bad Gateway from the proxy", None));
        let empty = parse(Dialect::Bird, 503, None, "");
        assert_eq!(empty.message, "Service Unavailable");
        let long = parse(Dialect::Bird, 500, None, &"x".repeat(10_000));
        assert_eq!(long.message.len(), MAX_MESSAGE_CHARS);
    }
}
