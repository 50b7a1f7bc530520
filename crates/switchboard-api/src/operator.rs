//! What every route of the operator's API shares, whichever module serves it (`admin` for
//! accounts, keys, senders, credits, opt-outs, messages, channels and templates; `lifecycle`
//! for webhooks, deliveries, upstreams and the simulator): the error type and its JSON body,
//! the operator-token extractor, the parsing of path parameters, and the wire shapes of a
//! message and its parts.
//!
//! Errors: `{"error": {"code": "not_found", "message": "…"}}` with codes `invalid_request`,
//! `unauthorized`, `not_found`, `conflict`, `payload_too_large`, `unsupported_media_type`,
//! `too_many_requests` (with `Retry-After`), `service_unavailable`.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use switchboard_domain::AccountId;
use switchboard_domain::wire::webhooks::MessagePart;
use switchboard_domain::wire::{AdminError, AdminErrorBody, DestinationInfo, Message};
use switchboard_records::{MessageRecord, PartRecord};
use uuid::Uuid;

use crate::AppState;
use crate::extract::{DialectError, client_ip};
use crate::problem::{Problem, THROTTLED, answers_problems, with_retry_after};

/// An admin API error.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

/// The admin API's table: each problem's status, code and message.
impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        match problem {
            Problem::Request { status, message } => {
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    StatusCode::NOT_FOUND => "not_found",
                    StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                    StatusCode::REQUEST_TIMEOUT => "request_timeout",
                    StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
                    s if s.is_server_error() => "service_unavailable",
                    _ => "invalid_request",
                };
                Self::new(status, code, message)
            }
            Problem::Validation(e) => Self::invalid(e.to_string()),
            Problem::Invalid(m) => Self::invalid(m),
            Problem::Unauthorized => Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid operator token (Authorization: Bearer …)",
            ),
            Problem::Throttled(wait) => Self {
                retry_after: Some(wait.seconds()),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", THROTTLED)
            },
            Problem::Forbidden(what) => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", format!("{what} belongs to another account"))
            }
            Problem::NotFound(what) => Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found")),
            Problem::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            Problem::SenderNotAssigned => Self::invalid("sender: not assigned to the account"),
            Problem::SenderInactive => Self::invalid("sender: not active"),
            Problem::SenderNotCapable => Self::invalid("sender: not enabled for this kind of message"),
            Problem::NoDefaultSender => Self::invalid("sender: the account has no active SMS sender"),
            Problem::InsufficientCredits => {
                Self::new(StatusCode::PAYMENT_REQUIRED, "insufficient_credits", "the balance cannot pay")
            }
            Problem::IdempotencyConflict => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the idempotency key was already used with a different request",
            ),
            Problem::Unavailable => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", "temporarily unavailable")
            }
        }
    }
}

answers_problems!(ApiError);

impl DialectError for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = AdminErrorBody { error: AdminError { code: self.code.to_owned(), message: self.message } };
        with_retry_after((self.status, Json(body)).into_response(), self.retry_after)
    }
}

/// Proof that the request carries the operator token. Wrong tokens count against the client
/// address's failure budget; an address over it is answered 429 with `Retry-After` before its
/// token is compared.
pub(crate) struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = presented else { return Err(Problem::Unauthorized.into()) };
        let guard = state.core.operator_guard();
        let client = client_ip(parts);
        guard.admit(client).map_err(Problem::Throttled)?;
        if bool::from(token.as_bytes().ct_eq(state.operator_token.expose().as_bytes())) {
            return Ok(Operator);
        }
        guard.failed(client, None).map_err(Problem::Throttled)?;
        Err(Problem::Unauthorized.into())
    }
}

/// The account of a path; one that is not an account id is not found, like an unknown one.
pub(crate) fn account_id(s: &str) -> Result<AccountId, ApiError> {
    s.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "account not found"))
}

/// The result of an operator route.
pub(crate) type AdminResult<T> = Result<T, ApiError>;

/// A UUID path parameter other than the account; one that is not a UUID is a bad request.
pub(crate) fn uuid_param(name: &str, value: &str) -> Result<Uuid, ApiError> {
    value.parse().map_err(|_| ApiError::invalid(format!("{name}: not a UUID")))
}

/// A message as the admin API shows it, without its events and parts (the caller adds them
/// where it shows them).
pub(crate) fn message_wire(m: &MessageRecord) -> Message {
    Message {
        id: m.id,
        account_id: m.account_id.as_uuid(),
        direction: m.direction,
        kind: m.kind,
        to: m.to.as_str().to_owned(),
        from: m.from.as_str().to_owned(),
        body: m.body.clone(),
        media_url: m.media_url().map(str::to_owned),
        encoding: m.encoding,
        segments: m.segments,
        status: m.status,
        error_type: m.error_type,
        error_message: m.error_message.clone(),
        sms_credits: m.charged.sms,
        mms_credits: m.charged.mms,
        idempotency_key: m.idempotency_key.clone(),
        attempts: m.attempts,
        provider_message_id: m.provider_message_id.clone(),
        created_at: m.created_at,
        sent_at: m.sent_at,
        events: Vec::new(),
        parts: Vec::new(),
        destination: m.destination.map(|d| DestinationInfo {
            valid: d.valid,
            number_type: d.number_type,
            country: d.region,
        }),
        dialect: Some(m.dialect()),
        ledger: Vec::new(),
        webhook_deliveries: Vec::new(),
    }
}

/// One part of a message as the admin API shows it.
pub(crate) fn part_wire(p: &PartRecord) -> MessagePart {
    MessagePart {
        part: p.part.unwrap_or(0),
        provider_ref: p.provider_ref.clone(),
        status: p.status,
        error_type: p.error_type,
        at: p.at,
    }
}
