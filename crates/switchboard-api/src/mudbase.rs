//! The Mudbase dialect: `/api/messaging/projects/{projectId}/messaging/{sms,history,stats}`
//! with `X-API-Key: <key id>:<secret>` or `Authorization: Bearer <JWT>` from `/api/auth/token`
//! (or `Bearer <key id>:<secret>`, the API key itself).
//!
//! Responses are envelopes: `{"success": true, "data": …}`, and for every error, whatever its
//! cause, `{"success": false, "error": {"code": "VALIDATION_ERROR", "message": "…"}}`. Each
//! project (account) is held to a request rate (100/s unless its own limit says otherwise);
//! past it the answer is 429 with `Retry-After`.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use switchboard_core::{BatchSent, MAX_HISTORY_PAGE};
use switchboard_domain::wire::mudbase::{
    MbByStatus, MbByType, MbErrorBody, MbErrorDetail, MbHistory, MbHistoryEntry, MbOk, MbPagination, MbPeriod,
    MbSmsRequest, MbSmsSent, MbStats, MbStatus, MbToken, MbType,
};
use switchboard_domain::{AccountId, StatusGroup, Timestamp};
use switchboard_records::{BatchRecord, BatchState};
use switchboard_validation::{BatchFields, ValidationError};

use crate::AppState;
use crate::extract::{Body, ClientIp, DialectError, Path, Query, client_ip};
use crate::problem::{Problem, THROTTLED, answers_problems, with_retry_after};
use crate::textingline::basic_credentials;

/// The routes of the dialect.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/messaging/projects/{project}/messaging/sms", post(send_sms))
        .route("/api/messaging/projects/{project}/messaging/history", get(history))
        .route("/api/messaging/projects/{project}/messaging/stats", get(stats))
        .route("/api/auth/token", post(issue_token))
}

/// A Mudbase error.
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

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }
}

/// Mudbase's table: each problem's status, code and message.
impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        match problem {
            Problem::Request { status, message } => {
                let code = match status {
                    StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
                    StatusCode::FORBIDDEN => "FORBIDDEN",
                    StatusCode::NOT_FOUND => "NOT_FOUND",
                    StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
                    StatusCode::REQUEST_TIMEOUT => "REQUEST_TIMEOUT",
                    StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
                    StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
                    s if s.is_server_error() => "INTERNAL_ERROR",
                    _ => "VALIDATION_ERROR",
                };
                Self::new(status, code, message)
            }
            Problem::Validation(ValidationError::Compliance) => {
                Self::new(StatusCode::BAD_REQUEST, "COMPLIANCE_VIOLATION", "message: violates compliance rules")
            }
            Problem::Validation(ValidationError::UnsupportedCharacter(c)) => {
                Self::new(StatusCode::BAD_REQUEST, "INVALID_CONTENT", format!("message: {c}"))
            }
            // The core names the fields as TextingLine does; Mudbase calls the text `message`.
            Problem::Validation(ValidationError::MissingBody) => {
                Self::invalid("message: required, and not only spaces")
            }
            Problem::Validation(ValidationError::BodyTooLong { chars, max }) => {
                Self::invalid(format!("message: {chars} characters is over the limit of {max}"))
            }
            Problem::Validation(other) => Self::invalid(other.to_string()),
            Problem::Invalid(m) | Problem::Conflict(m) => Self::invalid(m),
            Problem::Unauthorized => Self::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required: send X-API-Key: <key id>:<secret>, or Authorization: Bearer <token> \
                 from POST /api/auth/token",
            ),
            Problem::Throttled(wait) => Self {
                retry_after: Some(wait.seconds()),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", THROTTLED)
            },
            Problem::Forbidden(_) => Self::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "access denied: these credentials are not for this project",
            ),
            Problem::NotFound(what) => Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("{what} not found")),
            Problem::SenderNotAssigned => Self::new(
                StatusCode::BAD_REQUEST,
                "SENDER_NOT_ASSIGNED",
                "from: the sender is not assigned to this project",
            ),
            Problem::SenderInactive => {
                Self::new(StatusCode::BAD_REQUEST, "SENDER_INACTIVE", "from: the sender is not in an active state")
            }
            Problem::SenderNotCapable => {
                Self::new(StatusCode::BAD_REQUEST, "SENDER_NOT_CAPABLE", "from: the sender is not enabled for SMS")
            }
            Problem::NoDefaultSender => Self::new(
                StatusCode::BAD_REQUEST,
                "NO_SENDER",
                "from: required, since the project has no active SMS sender to send from",
            ),
            // 403, not 402: the platform documents 400, 401 and 403 only, and its SDK raises
            // its matching exception for those alone.
            Problem::InsufficientCredits => Self::new(
                StatusCode::FORBIDDEN,
                "INSUFFICIENT_CREDITS",
                "insufficient credits for every recipient; nothing was sent or charged",
            ),
            // Mudbase sends carry no idempotency key, so this cannot happen; answer honestly.
            Problem::IdempotencyConflict => Self::new(
                StatusCode::CONFLICT,
                "CONFLICT",
                "the idempotency key was already used with a different request",
            ),
            Problem::Unavailable => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", "temporarily unavailable; try again")
            }
        }
    }
}

answers_problems!(ApiError);

impl DialectError for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            MbErrorBody { success: false, error: MbErrorDetail { code: self.code.into(), message: self.message } };
        with_retry_after((self.status, Json(body)).into_response(), self.retry_after)
    }
}

/// `X-API-Key: <id>:<secret>`, if present and well formed.
fn api_key(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("x-api-key")?.to_str().ok()?.trim();
    let (id, secret) = value.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `Authorization: Bearer <token>`, if present.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The account of the request's credentials (a bearer token, else an API key), checked within
/// the failure budgets of the client's address and the key id, and counted against its rate
/// limit.
pub(crate) struct MbAccount(AccountId);

impl FromRequestParts<AppState> for MbAccount {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let client = client_ip(parts);
        let account = if let Some(token) = bearer(&parts.headers) {
            // A JWT never holds a `:`; an API key (`id:secret`) is accepted as a bearer too,
            // since Mudbase's SDK sends only its bearer token on some calls.
            match token.split_once(':') {
                Some((id, secret)) => state.core.authenticate(client, id, secret).await?,
                None => state.core.authenticate_token(client, token).await?,
            }
        } else if let Some((id, secret)) = api_key(&parts.headers) {
            state.core.authenticate(client, &id, &secret).await?
        } else {
            return Err(Problem::Unauthorized.into());
        };
        rate_limit(state, account).await?;
        Ok(MbAccount(account))
    }
}

/// Counts one request against the project's rate limit.
async fn rate_limit(state: &AppState, account: AccountId) -> Result<(), ApiError> {
    state.core.check_rate(account).await.map_err(|wait| {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many requests for this project; retry after the time in Retry-After",
        );
        e.retry_after = Some(wait.seconds());
        e
    })
}

/// The project in the path, checked against the credentials (and their rate limit) before
/// anything else of the request is read: another project's id, or one that is not a project,
/// is 403.
pub(crate) struct MbProject(AccountId);

impl FromRequestParts<AppState> for MbProject {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let MbAccount(account) = MbAccount::from_request_parts(parts, state).await?;
        let Path(project, ..) = Path::<String, ApiError>::from_request_parts(parts, state).await?;
        match project.parse::<AccountId>() {
            Ok(p) if p == account => Ok(MbProject(p)),
            _ => Err(Problem::Forbidden("project").into()),
        }
    }
}

fn state_word(b: &BatchRecord) -> MbStatus {
    match b.state() {
        BatchState::Pending => MbStatus::Pending,
        BatchState::Sent => MbStatus::Sent,
        BatchState::Failed => MbStatus::Failed,
    }
}

fn sent_wire(sent: &BatchSent) -> MbSmsSent {
    let b = &sent.batch;
    MbSmsSent {
        id: b.id,
        kind: MbType::Sms,
        to: sent.messages.iter().map(|m| m.to.as_str()).collect::<Vec<_>>().join(","),
        status: state_word(b),
        recipients: b.recipients,
        success_count: b.recipients - b.failed,
        failure_count: b.failed,
        message_id: b.first_message_id,
        sent_at: b.sent_at,
        created_at: b.created_at,
    }
}

fn history_wire(b: &BatchRecord) -> MbHistoryEntry {
    MbHistoryEntry {
        id: b.id,
        kind: MbType::Sms,
        title: None,
        body: b.body.clone(),
        subject: None,
        recipients: b.recipients,
        success_count: b.recipients - b.failed,
        failure_count: b.failed,
        status: state_word(b),
        sent_at: b.sent_at,
        created_at: b.created_at,
    }
}

/// Send an SMS to one or more recipients. `client.messaging.sendSms({projectId, to, message,
/// from})` in Mudbase's JavaScript SDK.
#[utoipa::path(
    post,
    path = "/api/messaging/projects/{projectId}/messaging/sms",
    tag = "Mudbase",
    params(("projectId" = String, Path, description = "The project (account) id")),
    request_body(content = MbSmsRequest, example = json!({"to": "+18005551234,+18005551235", "message": "Your order has shipped", "from": "+18005559876"})),
    security(("apiKey" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Admitted: every recipient stored and charged, or opted out", body = MbOk<MbSmsSent>),
        (status = 400, description = "Validation error naming the field", body = MbErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = MbErrorBody),
        (status = 403, description = "The credentials are for another project (`FORBIDDEN`), or the balance cannot pay for every recipient (`INSUFFICIENT_CREDITS`; nothing sent)", body = MbErrorBody),
        (status = 413, description = "Body over the size limit", body = MbErrorBody),
        (status = 429, description = "Over the project's request rate, or too many failed authentication attempts; see Retry-After", body = MbErrorBody),
    )
)]
pub(crate) async fn send_sms(
    State(state): State<AppState>,
    MbProject(account): MbProject,
    Body(req, ..): Body<MbSmsRequest, ApiError>,
) -> Result<Response, ApiError> {
    let cmd = state.core.policy().check_batch(BatchFields {
        alphanumeric_from: true,
        to: req.to.entries(),
        from: req.from.as_deref(),
        body: Some(&req.message),
    })?;
    let sent = state.core.send_batch(account, cmd).await?;
    Ok((StatusCode::CREATED, Json(MbOk { success: true, data: sent_wire(&sent) })).into_response())
}

/// History filters and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    /// `push`, `email` or `sms`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// `sent`, `failed` or `pending`.
    status: Option<String>,
    /// Page, from 1 (default 1).
    #[serde(default, deserialize_with = "saturating")]
    #[param(value_type = Option<i64>, minimum = 1)]
    page: Option<u32>,
    /// Entries per page, 1 to 100 (default 20; larger values, however large, are capped at 100).
    #[serde(default, deserialize_with = "saturating")]
    #[param(value_type = Option<i64>, minimum = 1)]
    limit: Option<u32>,
}

/// A whole number of the query (a 64-bit one, as documented): one beyond `u32` saturates (a
/// page past the last is empty, a limit is capped anyway). An empty value is no value.
fn saturating<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let text = String::deserialize(d)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let n: u64 = text
        .parse()
        .ok()
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a whole number of at most 19 digits")))?;
    Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
}

/// The project's send requests, newest first.
#[utoipa::path(
    get,
    path = "/api/messaging/projects/{projectId}/messaging/history",
    tag = "Mudbase",
    params(("projectId" = String, Path, description = "The project (account) id"), HistoryParams),
    security(("apiKey" = []), ("bearer" = [])),
    responses(
        (status = 200, body = MbOk<MbHistory>),
        (status = 400, body = MbErrorBody),
        (status = 401, body = MbErrorBody),
        (status = 403, body = MbErrorBody),
        (status = 429, body = MbErrorBody),
    )
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    MbProject(account): MbProject,
    Query(params, ..): Query<HistoryParams, ApiError>,
) -> Result<Json<MbOk<MbHistory>>, ApiError> {
    let only_sms = match params.kind.as_deref() {
        None | Some("") | Some("sms") => true,
        Some("push" | "email") => false,
        Some(other) => return Err(ApiError::invalid(format!("type: `{other}` is not push, email or sms"))),
    };
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some("sent") => Some(BatchState::Sent),
        Some("failed") => Some(BatchState::Failed),
        Some("pending") => Some(BatchState::Pending),
        Some(other) => return Err(ApiError::invalid(format!("status: `{other}` is not sent, failed or pending"))),
    };
    let page = params.page.unwrap_or(1);
    if page == 0 {
        return Err(ApiError::invalid("page: must be 1 or more"));
    }
    let limit = params.limit.unwrap_or(20);
    if limit == 0 {
        return Err(ApiError::invalid("limit: must be 1 or more"));
    }
    let limit = limit.min(MAX_HISTORY_PAGE);
    let (messages, total) = if only_sms {
        let found = state.core.history(account, status, page, limit).await?;
        (found.items.iter().map(history_wire).collect(), found.total)
    } else {
        // Switchboard sends no push notifications or email.
        (Vec::new(), 0)
    };
    let pagination = MbPagination { page, limit, total, total_pages: total.div_ceil(u64::from(limit)) };
    Ok(Json(MbOk { success: true, data: MbHistory { messages, pagination } }))
}

/// Statistics period.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatsParams {
    /// Start (inclusive): ISO 8601, with or without an offset (UTC if none), or a date.
    /// Default: 30 days before the end.
    start_date: Option<String>,
    /// End (exclusive), in the same forms. Default: now.
    end_date: Option<String>,
}

const THIRTY_DAYS_MS: i64 = 30 * 24 * 3_600_000;

fn date_param(name: &str, value: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => Timestamp::parse_lenient(v)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{name}: `{}` is not an ISO 8601 date-time", short(v)))),
    }
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Message counts of the project over a period, from the stored messages of every dialect.
#[utoipa::path(
    get,
    path = "/api/messaging/projects/{projectId}/messaging/stats",
    tag = "Mudbase",
    params(("projectId" = String, Path, description = "The project (account) id"), StatsParams),
    security(("apiKey" = []), ("bearer" = [])),
    responses(
        (status = 200, body = MbOk<MbStats>),
        (status = 400, body = MbErrorBody),
        (status = 401, body = MbErrorBody),
        (status = 403, body = MbErrorBody),
        (status = 429, body = MbErrorBody),
    )
)]
pub(crate) async fn stats(
    State(state): State<AppState>,
    MbProject(account): MbProject,
    Query(params, ..): Query<StatsParams, ApiError>,
) -> Result<Json<MbOk<MbStats>>, ApiError> {
    let end = date_param("endDate", params.end_date.as_deref())?.unwrap_or_else(Timestamp::now);
    let start = date_param("startDate", params.start_date.as_deref())?.unwrap_or(end.plus_millis(-THIRTY_DAYS_MS));
    let found = state.core.message_stats(account, start, end).await?;
    let c = &found.counts;
    let (sent, failed) = (c.in_group(StatusGroup::Sent), c.in_group(StatusGroup::Failed));
    let total = c.total();
    let success_rate = if total == 0 { 0.0 } else { (sent as f64 * 10_000.0 / total as f64).round() / 100.0 };
    Ok(Json(MbOk {
        success: true,
        data: MbStats {
            total_messages: total,
            by_type: MbByType { push: 0, email: 0, sms: total },
            by_status: MbByStatus { sent, failed, pending: total - sent - failed },
            success_rate,
            period: MbPeriod { start_date: found.from, end_date: found.to },
        },
    }))
}

/// Exchange an API key (`X-API-Key: <id>:<secret>`, or HTTP Basic) for a short-lived access
/// token for `Authorization: Bearer …`.
#[utoipa::path(
    post,
    path = "/api/auth/token",
    tag = "Mudbase",
    security(("apiKey" = []), ("basic" = [])),
    responses(
        (status = 201, body = MbOk<MbToken>),
        (status = 401, body = MbErrorBody),
        (status = 429, body = MbErrorBody),
    )
)]
pub(crate) async fn issue_token(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (id, secret) = api_key(&headers).or_else(|| basic_credentials(&headers)).ok_or(Problem::Unauthorized)?;
    let account = state.core.authenticate(client, &id, &secret).await?;
    rate_limit(&state, account).await?;
    let token = state.core.issue_token(&id, account);
    let data = MbToken {
        access_token: token.token,
        token_type: "Bearer".into(),
        expires_in: token.expires_in.as_secs(),
        expires_at: token.expires_at,
    };
    Ok((StatusCode::CREATED, Json(MbOk { success: true, data })).into_response())
}
