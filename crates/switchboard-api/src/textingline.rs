//! The TextingLine dialect: `/api/v1/messaging/message`, HTTP Basic `key_id:key_secret`.
//!
//! Every error, whatever its cause, has one shape:
//! `{"error": {"code": 33023, "type": "insufficient_credits", "message": "…", "status": 402}}`.
//! The codes 33004, 33009, 33016, 33019 and 33023 are TextingLine's; the 30xxx codes name
//! request-level errors (see `docs/API.md`).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use switchboard_core::{AccessError, SendOutcome};
use switchboard_domain::wire::{Balance, TlError, TlErrorBody, TlMessage, TlMessageList, TlSendRequest, TlStatus};
use switchboard_domain::{AccountId, MessageId, MessageStatus};
use switchboard_records::MessageRecord;
use switchboard_validation::{SendFields, ValidationError};

use crate::AppState;
use crate::extract::{Body, DialectError, Path, Query, client_ip};
use crate::problem::{Problem, THROTTLED, answers_problems, with_retry_after};

/// The routes of the dialect.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/messaging/message", post(send_message).get(list_messages))
        .route("/api/v1/messaging/message/{id}", get(get_message))
        .route("/api/v1/account/balance", get(balance))
}

/// A TextingLine error.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: u32,
    kind: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: u32, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, kind, message: message.into(), retry_after: None }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 30002, "invalid_parameter", message)
    }

    fn sender_not_assigned() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            33004,
            "sender_not_assigned",
            "The from number is not assigned to your account",
        )
    }
}

/// TextingLine's table: each problem's status, numeric code, kind and message.
impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        match problem {
            Problem::Request { status, message } => {
                let (code, kind) = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => (30413, "payload_too_large"),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => (30415, "unsupported_media_type"),
                    StatusCode::NOT_FOUND => (30404, "not_found"),
                    StatusCode::METHOD_NOT_ALLOWED => (30405, "method_not_allowed"),
                    StatusCode::REQUEST_TIMEOUT => (30408, "request_timeout"),
                    StatusCode::TOO_MANY_REQUESTS => (30429, "too_many_requests"),
                    s if s.is_server_error() => (30503, "service_unavailable"),
                    _ => (30001, "invalid_request"),
                };
                Self::new(status, code, kind, message)
            }
            Problem::Validation(e @ ValidationError::UnsupportedCharacter(_)) => Self::new(
                StatusCode::BAD_REQUEST,
                33016,
                "unsupported_characters",
                format!("Message body contains unsupported characters: {e}"),
            ),
            Problem::Validation(ValidationError::Compliance) => {
                Self::new(StatusCode::BAD_REQUEST, 33019, "compliance_violation", "Message violates compliance rules")
            }
            Problem::Validation(e) => Self::invalid(e.to_string()),
            Problem::Invalid(m) | Problem::Conflict(m) => Self::invalid(m),
            Problem::Unauthorized => Self::new(
                StatusCode::UNAUTHORIZED,
                30401,
                "unauthorized",
                "missing or invalid credentials: use HTTP Basic with your key id and key secret",
            ),
            Problem::Throttled(wait) => Self {
                retry_after: Some(wait.seconds()),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, 30429, "too_many_requests", THROTTLED)
            },
            Problem::Forbidden(what) => {
                Self::new(StatusCode::FORBIDDEN, 30403, "forbidden", format!("this {what} belongs to another account"))
            }
            Problem::NotFound(what) => {
                Self::new(StatusCode::NOT_FOUND, 30404, "not_found", format!("{what} not found"))
            }
            // TextingLine requires `from`, so a send never needs a default sender.
            Problem::SenderNotAssigned | Problem::NoDefaultSender => Self::sender_not_assigned(),
            Problem::SenderInactive => Self::new(
                StatusCode::BAD_REQUEST,
                33009,
                "sender_inactive",
                "The from number is not in an active state",
            ),
            Problem::SenderNotCapable => Self::new(
                StatusCode::BAD_REQUEST,
                30003,
                "sender_not_capable",
                "The from number is not enabled for this message type (SMS or MMS)",
            ),
            Problem::InsufficientCredits => {
                Self::new(StatusCode::PAYMENT_REQUIRED, 33023, "insufficient_credits", "Insufficient credits")
            }
            Problem::IdempotencyConflict => Self::new(
                StatusCode::CONFLICT,
                30409,
                "idempotency_conflict",
                "This idempotencyKey was already used with a different request",
            ),
            Problem::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                30503,
                "service_unavailable",
                "temporarily unavailable; retry with the same idempotencyKey",
            ),
        }
    }
}

answers_problems!(ApiError);

impl DialectError for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = TlErrorBody {
            error: TlError {
                code: self.code,
                kind: self.kind.to_owned(),
                message: self.message,
                status: self.status.as_u16(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Basic realm=\"switchboard\""));
        }
        with_retry_after(response, self.retry_after)
    }
}

/// The account of the request's Basic credentials, checked within the failure budgets of the
/// client's address and the key id (429 with `Retry-After` past them).
pub(crate) struct BasicAccount(pub(crate) AccountId);

impl FromRequestParts<AppState> for BasicAccount {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (id, secret) = basic_credentials(&parts.headers).ok_or_else(|| ApiError::from(Problem::Unauthorized))?;
        Ok(BasicAccount(state.core.authenticate(client_ip(parts), &id, &secret).await?))
    }
}

/// `Authorization: Basic base64(id:secret)`, if present and well formed.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || encoded.len() > 1024 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The TextingLine view of a message.
pub(crate) fn to_wire(m: &MessageRecord) -> TlMessage {
    let status = TlStatus::from_status(m.status);
    let failed = status == TlStatus::Failed;
    TlMessage {
        id: m.id,
        direction: m.direction,
        to: m.to.as_str().to_owned(),
        from: m.from.as_str().to_owned(),
        body: m.body.clone(),
        media_url: m.media_url().map(str::to_owned),
        status,
        error_type: if failed { Some(m.error_type.unwrap_or(switchboard_domain::ErrorType::Unknown)) } else { None },
        error_message: if failed {
            Some(m.error_message.clone().unwrap_or_else(|| failure_text(m.status)))
        } else {
            None
        },
        sent_at: if failed { None } else { m.sent_at },
        created_at: m.created_at,
    }
}

fn failure_text(status: MessageStatus) -> String {
    format!("The message ended {status}.")
}

/// Send an SMS or MMS to a single recipient.
#[utoipa::path(
    post,
    path = "/api/v1/messaging/message",
    tag = "TextingLine",
    request_body(content = TlSendRequest, example = json!({"to": "+18005551234", "from": "+18005559876", "body": "Your verification code is 482910"})),
    security(("basic" = [])),
    responses(
        (status = 201, description = "Accepted: status sent, queued, or failed (e.g. opted_out) with errorType", body = TlMessage),
        (status = 400, description = "Invalid request, or 33004 / 33009 / 33016 / 33019", body = TlErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = TlErrorBody),
        (status = 402, description = "33023: insufficient credits", body = TlErrorBody),
        (status = 409, description = "idempotencyKey reused with a different request", body = TlErrorBody),
        (status = 413, description = "Body over the size limit", body = TlErrorBody),
        (status = 415, description = "Not application/json", body = TlErrorBody),
        (status = 429, description = "Too many failed authentication attempts; see Retry-After", body = TlErrorBody),
    )
)]
pub(crate) async fn send_message(
    State(state): State<AppState>,
    BasicAccount(account): BasicAccount,
    Body(req, ..): Body<TlSendRequest, ApiError>,
) -> Result<Response, ApiError> {
    let cmd = state.core.policy().check_send(SendFields {
        alphanumeric_from: false,
        to: &req.to,
        from: &req.from,
        body: req.body.as_deref(),
        media_url: req.media_url.as_deref(),
        idempotency_key: req.idempotency_key.as_deref(),
    })?;
    let (record, replayed) = match state.core.send(account, cmd).await? {
        SendOutcome::Created(m) => (m, false),
        SendOutcome::Replayed(m) => (m, true),
    };
    let mut response = (StatusCode::CREATED, Json(to_wire(&record))).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The account's balances, SMS and MMS credits: what a client checks before a large send.
/// Switchboard's own addition to the dialect, with its authentication and error shape.
#[utoipa::path(
    get,
    path = "/api/v1/account/balance",
    tag = "TextingLine",
    security(("basic" = [])),
    responses((status = 200, body = Balance), (status = 401, body = TlErrorBody))
)]
pub(crate) async fn balance(
    State(state): State<AppState>,
    BasicAccount(account): BasicAccount,
) -> Result<Json<Balance>, ApiError> {
    let a = state.core.account(account).await?;
    Ok(Json(Balance { sms_credits: a.balance.sms, mms_credits: a.balance.mms }))
}

/// Read a message by id.
#[utoipa::path(
    get,
    path = "/api/v1/messaging/message/{id}",
    tag = "TextingLine",
    params(("id" = String, Path, description = "The msg_ id")),
    security(("basic" = [])),
    responses(
        (status = 200, body = TlMessage),
        (status = 401, body = TlErrorBody),
        (status = 403, description = "The message belongs to another account", body = TlErrorBody),
        (status = 404, body = TlErrorBody),
    )
)]
pub(crate) async fn get_message(
    State(state): State<AppState>,
    BasicAccount(account): BasicAccount,
    Path(id, ..): Path<String, ApiError>,
) -> Result<Json<TlMessage>, ApiError> {
    let id: MessageId = id.parse().map_err(|_| ApiError::from(AccessError::NotFound("message")))?;
    let record = state.core.message(account, id).await?;
    Ok(Json(to_wire(&record)))
}

/// Paging of the message list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Messages per page, 1 to 100 (default 20).
    limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// List the account's messages, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/messaging/message",
    tag = "TextingLine",
    params(ListParams),
    security(("basic" = [])),
    responses((status = 200, body = TlMessageList), (status = 400, body = TlErrorBody), (status = 401, body = TlErrorBody))
)]
pub(crate) async fn list_messages(
    State(state): State<AppState>,
    BasicAccount(account): BasicAccount,
    Query(params, ..): Query<ListParams, ApiError>,
) -> Result<Json<TlMessageList>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit: must be 1 to 100"));
    }
    let before = match params.cursor.as_deref() {
        None => None,
        Some(c) => Some(c.parse::<MessageId>().map_err(|_| ApiError::invalid("cursor: not a cursor from this API"))?),
    };
    // One more than asked tells whether another page follows.
    let mut page = state.core.messages(account, before, limit + 1).await?;
    let has_more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_cursor = if has_more { page.last().map(|m| m.id.to_string()) } else { None };
    Ok(Json(TlMessageList { data: page.iter().map(to_wire).collect(), has_more, next_cursor }))
}
