//! The Bird channels dialect: `/workspaces/{workspaceId}/channels/{channelId}/messages` with
//! `Authorization: AccessKey <key id>:<secret>` (or `Bearer` with a token from
//! `/api/auth/token`, or with the key itself).
//!
//! A send names one receiver and either a `body` (`text`; `image` or `file` with 1 to 10
//! media, which makes an MMS) or a `template` rendered from the workspace's templates. It
//! may be scheduled up to 35 days ahead and given a validity. The answer is 202 with the
//! whole message object. Every error is `{"code", "message", "details": {field: [problem]}}`:
//! 400 for a body that is not the schema's JSON, 422 for values that do not pass validation,
//! 401, 403 for another workspace, 404 for an unknown channel or message, 409 when the
//! channel, its sender or the balance cannot take the message.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use switchboard_core::{AccessError, ChannelMessage, MAX_SCHEDULE_AHEAD_MS, SendError, TemplateError, TemplateRef};
use switchboard_domain::wire::bird::{
    BirdBody, BirdConnector, BirdError, BirdFailure, BirdFailureSource, BirdIdentifier, BirdMedia, BirdMessage,
    BirdMessageList, BirdPart, BirdReceiver, BirdSendRequest, BirdTextBody,
};
use switchboard_domain::{
    AccountId, Direction, ErrorType, MessageId, MessageKind, MessageStatus, Msisdn, SenderId, Timestamp, UrlError,
    UrlPolicy,
};
use switchboard_records::{ChannelRecord, MessageRecord};
use switchboard_validation::ValidationError;
use uuid::Uuid;

use crate::AppState;
use crate::extract::{Body, DialectError, Path, Query, client_ip};
use crate::problem::{Problem, THROTTLED, answers_problems, with_retry_after};

/// Most media in one message.
const MAX_MEDIA: usize = 10;
/// Longest `reference`.
const MAX_REFERENCE_CHARS: usize = 256;
/// Most tags, and the longest tag.
const MAX_TAGS: usize = 20;
const MAX_TAG_CHARS: usize = 100;
/// Longest MMS subject.
const MAX_SUBJECT_CHARS: usize = 64;
/// Most template parameters.
const MAX_PARAMETERS: usize = 100;
/// Default and largest page of a message list.
const DEFAULT_PAGE: u32 = 10;
const MAX_PAGE: u32 = 100;

/// The routes of the dialect.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{workspace}/channels/{channel}/messages", post(send).get(list))
        .route("/workspaces/{workspace}/channels/{channel}/messages/{message}", get(read).delete(cancel))
}

/// A Bird error.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: BTreeMap<String, Vec<String>>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: BTreeMap::new(), retry_after: None }
    }

    fn invalid(problems: BTreeMap<String, Vec<String>>) -> Self {
        Self {
            details: problems,
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "InvalidPayload", "The request did not pass validation")
        }
    }

    fn field(field: &str, problem: impl Into<String>) -> Self {
        Self::invalid(BTreeMap::from([(field.to_owned(), vec![problem.into()])]))
    }

    fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", format!("{what} not found"))
    }

    fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", "these credentials are not for this workspace")
    }
}

/// Bird's table: each problem's status, code and message (and, for a 422, its fields).
impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        match problem {
            Problem::Request { status, message } => {
                let code = match status {
                    StatusCode::UNAUTHORIZED => "Unauthorized",
                    StatusCode::FORBIDDEN => "Forbidden",
                    StatusCode::NOT_FOUND => "NotFound",
                    StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
                    StatusCode::REQUEST_TIMEOUT => "RequestTimeout",
                    StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLarge",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
                    StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
                    StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
                    s if s.is_server_error() => "InternalError",
                    _ => "InvalidPayload",
                };
                Self::new(status, code, message)
            }
            Problem::Validation(e) => {
                let text = e.to_string();
                let field = text.split_once(": ").map_or("body", |(field, _)| field);
                Self::field(field, text_problem(&e))
            }
            Problem::Invalid(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "InvalidPayload", m),
            Problem::Unauthorized => Self::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "authentication required: send Authorization: AccessKey <key id>:<secret>",
            ),
            Problem::Throttled(wait) => Self {
                retry_after: Some(wait.seconds()),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", THROTTLED)
            },
            // Another workspace's channel or message is not found here: ids do not leak.
            Problem::NotFound(what) | Problem::Forbidden(what) => Self::not_found(what),
            Problem::Conflict(m) => Self::conflict("Conflict", m),
            Problem::SenderNotAssigned => {
                Self::conflict("SenderNotAssigned", "the channel's sender is no longer assigned to this workspace")
            }
            Problem::SenderInactive => Self::conflict("SenderInactive", "the channel's sender is not active"),
            Problem::SenderNotCapable => {
                Self::conflict("ChannelNotMmsCapable", "the channel cannot send media (MMS); send a text body")
            }
            Problem::InsufficientCredits => {
                Self::conflict("InsufficientCredits", "the balance cannot pay for this message; nothing was charged")
            }
            Problem::IdempotencyConflict => {
                Self::conflict("Conflict", "the idempotency key was already used with a different request")
            }
            Problem::NoDefaultSender => {
                Self::conflict("Conflict", "no from number given, and the account has no active SMS sender")
            }
            Problem::Unavailable => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "temporarily unavailable; try again")
            }
        }
    }
}

answers_problems!(ApiError);

impl DialectError for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = BirdError { code: self.code.into(), message: self.message, details: self.details };
        with_retry_after((self.status, Json(body)).into_response(), self.retry_after)
    }
}

/// `AccessKey <id>:<secret>` or `Bearer <token or id:secret>`, if present.
fn credentials(headers: &HeaderMap) -> Option<(&'static str, &str)> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("accesskey") {
        Some(("key", rest.trim()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(("bearer", rest.trim()))
    } else {
        None
    }
}

/// The path of every route of the dialect.
#[derive(Debug, Deserialize)]
struct WorkspacePath {
    workspace: String,
    channel: String,
    message: Option<String>,
}

/// The workspace and channel of the path, checked against the credentials (and their rate
/// limit) before anything else of the request is read: a workspace that is not the
/// credentials' is 403; a channel the workspace does not have is 404.
pub(crate) struct BirdChannel {
    channel: ChannelRecord,
    message: Option<String>,
}

impl FromRequestParts<AppState> for BirdChannel {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let account = match credentials(&parts.headers) {
            Some((_, token)) if token.contains(':') => {
                let (id, secret) = token.split_once(':').unwrap_or_default();
                state.core.authenticate(client_ip(parts), id, secret).await?
            }
            Some(("bearer", token)) => state.core.authenticate_token(client_ip(parts), token).await?,
            _ => return Err(Problem::Unauthorized.into()),
        };
        state.core.check_rate(account).await.map_err(|wait| {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "too many requests for this workspace; retry after the time in Retry-After",
            );
            e.retry_after = Some(wait.seconds());
            e
        })?;
        let Path(path, ..) = Path::<WorkspacePath, ApiError>::from_request_parts(parts, state).await?;
        match path.workspace.parse::<AccountId>() {
            Ok(w) if w == account => {}
            _ => return Err(ApiError::forbidden()),
        }
        let Ok(channel_id) = Uuid::parse_str(&path.channel) else {
            return Err(ApiError::not_found("channel"));
        };
        let channel = state.core.sending_channel(account, channel_id).await?;
        Ok(BirdChannel { channel, message: path.message })
    }
}

/// Problems found in a request, by field.
#[derive(Default)]
struct Problems(BTreeMap<String, Vec<String>>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(problem.into());
    }

    fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::invalid(self.0)) }
    }
}

/// The text problem of a validation error, without the field name the core gives it.
fn text_problem(e: &ValidationError) -> String {
    let s = e.to_string();
    match s.split_once(": ") {
        Some((_, problem)) => problem.to_owned(),
        None => s,
    }
}

/// What a body or template comes to, before the template is rendered.
enum Content {
    Text(String),
    Media { text: Option<String>, media: Vec<String> },
    Template(TemplateRef),
}

fn check_media(
    state: &AppState,
    problems: &mut Problems,
    field: &str,
    items: &[BirdMedia],
    what: &str,
    content_type_required: bool,
) -> Vec<String> {
    if items.is_empty() || items.len() > MAX_MEDIA {
        problems.add(field, format!("1 to {MAX_MEDIA} {what} are required, not {}", items.len()));
    }
    let mut urls = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match state.core.policy().check_media_url(&item.media_url) {
            Ok(url) => urls.push(url.to_owned()),
            Err(e) => problems.add(format!("{field}[{i}].mediaUrl"), text_problem(&e)),
        }
        match item.content_type.as_deref() {
            Some(ct) if !valid_content_type(ct) => {
                problems.add(format!("{field}[{i}].contentType"), format!("`{ct}` is not a MIME type"))
            }
            None if content_type_required => problems.add(format!("{field}[{i}].contentType"), "required"),
            _ => {}
        }
    }
    urls
}

fn valid_content_type(ct: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty() && s.len() <= 127 && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    essence.split_once('/').is_some_and(|(t, sub)| token(t) && token(sub))
}

fn check_subject(problems: &mut Problems, field: &str, metadata: Option<&serde_json::Value>) {
    let Some(subject) = metadata.and_then(|m| m.get("subject")) else { return };
    match subject.as_str() {
        Some(s) if s.chars().count() <= MAX_SUBJECT_CHARS => {}
        Some(_) => problems.add(field, format!("at most {MAX_SUBJECT_CHARS} characters")),
        None => problems.add(field, "must be a string"),
    }
}

fn optional_text(state: &AppState, problems: &mut Problems, field: &str, text: Option<&str>) -> Option<String> {
    let text = text.filter(|t| !t.trim().is_empty())?;
    match state.core.policy().check_text(text) {
        Ok(_) => Some(text.to_owned()),
        Err(e) => {
            problems.add(field, text_problem(&e));
            None
        }
    }
}

fn check_content(state: &AppState, problems: &mut Problems, req: &BirdSendRequest) -> Option<Content> {
    match (&req.body, &req.template) {
        (Some(_), Some(_)) => {
            problems.add("body", "give either a body or a template, not both");
            None
        }
        (None, None) => {
            problems.add("body", "required, unless a template is given");
            None
        }
        (Some(body), None) => match body.kind.as_str() {
            "text" => {
                let Some(text) = &body.text else {
                    problems.add("body.text", "required for a body of type text");
                    return None;
                };
                if text.text.trim().is_empty() {
                    problems.add("body.text.text", "required, and not only spaces");
                    return None;
                }
                optional_text(state, problems, "body.text.text", Some(&text.text)).map(Content::Text)
            }
            "image" => {
                let Some(image) = &body.image else {
                    problems.add("body.image", "required for a body of type image");
                    return None;
                };
                let media = check_media(state, problems, "body.image.images", &image.images, "images", false);
                let text = optional_text(state, problems, "body.image.text", image.text.as_deref());
                check_subject(problems, "body.image.metadata.subject", image.metadata.as_ref());
                Some(Content::Media { text, media })
            }
            "file" => {
                let Some(file) = &body.file else {
                    problems.add("body.file", "required for a body of type file");
                    return None;
                };
                let media = check_media(state, problems, "body.file.files", &file.files, "files", true);
                let text = optional_text(state, problems, "body.file.text", file.text.as_deref());
                check_subject(problems, "body.file.metadata.subject", file.metadata.as_ref());
                Some(Content::Media { text, media })
            }
            other => {
                problems
                    .add("body.type", format!("`{other}` is not supported on an SMS channel: use text, image or file"));
                None
            }
        },
        (None, Some(t)) => {
            let template = Uuid::parse_str(&t.project_id);
            if template.is_err() {
                problems.add("template.projectId", "must be the template's id (a UUID)");
            }
            let version = match t.version.as_str() {
                "latest" => Ok(None),
                v => Uuid::parse_str(v).map(Some),
            };
            if version.is_err() {
                problems.add("template.version", "must be `latest` or a version id (a UUID)");
            }
            if t.locale.trim().is_empty() {
                problems.add("template.locale", "required");
            }
            if t.parameters.len() > MAX_PARAMETERS {
                problems.add("template.parameters", format!("at most {MAX_PARAMETERS} parameters"));
            }
            let mut parameters: HashMap<String, String> = HashMap::new();
            for (i, p) in t.parameters.iter().enumerate() {
                if p.key.trim().is_empty() {
                    problems.add(format!("template.parameters[{i}].key"), "required");
                }
                parameters.entry(p.key.trim().to_owned()).or_insert_with(|| p.value.clone());
            }
            if t.variables.as_ref().is_some_and(|v| v.len() > MAX_PARAMETERS) {
                problems.add("template.variables", format!("at most {MAX_PARAMETERS} variables"));
            }
            for (k, v) in t.variables.iter().flatten() {
                parameters.entry(k.clone()).or_insert_with(|| v.clone());
            }
            match (template, version) {
                (Ok(template), Ok(version)) => Some(Content::Template(TemplateRef {
                    template,
                    version,
                    locale: t.locale.trim().to_owned(),
                    parameters,
                })),
                _ => None,
            }
        }
    }
}

/// Checks the rest of the request; returns the receiver, the schedule and the expiry.
fn check_envelope(
    problems: &mut Problems,
    req: &BirdSendRequest,
    channel: &ChannelRecord,
    urls: &UrlPolicy,
    now: Timestamp,
) -> (Option<Msisdn>, Option<Timestamp>, Option<Timestamp>) {
    let contacts = req.receiver.as_ref().map(|r| r.contacts.as_slice()).unwrap_or_default();
    let to = match contacts {
        [] => {
            problems.add("receiver.contacts", "one contact is required");
            None
        }
        [contact] => {
            let key_ok = contact.identifier_key.as_deref().is_none_or(|k| k.eq_ignore_ascii_case("phonenumber"));
            if !key_ok {
                problems.add("receiver.contacts[0].identifierKey", "an SMS channel sends to `phonenumber` only");
            }
            match contact.identifier_value.as_deref().map(Msisdn::parse) {
                None => {
                    problems.add("receiver.contacts[0].identifierValue", "required");
                    None
                }
                Some(Err(e)) => {
                    problems.add("receiver.contacts[0].identifierValue", e.to_string());
                    None
                }
                Some(Ok(n)) => Some(n),
            }
        }
        more => {
            problems.add(
                "receiver.contacts",
                format!("an SMS message has one receiver, not {}: send one request per contact", more.len()),
            );
            None
        }
    };
    let given_sender = req.sender.as_ref().and_then(|s| s.pointer("/connector/identifierValue"));
    if let Some(given) = given_sender {
        let same = given.as_str().and_then(|s| SenderId::parse(s).ok()).is_some_and(|s| s == channel.sender);
        if !same {
            problems
                .add("sender.connector.identifierValue", format!("must be the channel's sender, {}", channel.sender));
        }
    }
    if req.reference.as_ref().is_some_and(|r| r.chars().count() > MAX_REFERENCE_CHARS) {
        problems.add("reference", format!("at most {MAX_REFERENCE_CHARS} characters"));
    }
    let tags = req.tags.as_deref().unwrap_or_default();
    if tags.len() > MAX_TAGS {
        problems.add("tags", format!("at most {MAX_TAGS} tags"));
    }
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS {
            problems.add(format!("tags[{i}]"), format!("1 to {MAX_TAG_CHARS} characters"));
        }
    }
    if req.meta.as_ref().is_some_and(|m| !m.is_object()) {
        problems.add("meta", "must be an object");
    }
    if let Some(notification) = &req.notification {
        match notification.get("url") {
            None | Some(serde_json::Value::Null) => {}
            // The server posts to it: held to the server's URL policy, as webhook endpoints are.
            Some(url) => match url.as_str().map(|u| urls.check_url(u)) {
                None => problems.add("notification.url", UrlError::Malformed.to_string()),
                Some(Err(e)) => problems.add("notification.url", e.to_string()),
                Some(Ok(_)) => {}
            },
        }
    }
    let scheduled_for = req.scheduled_for.as_deref().and_then(|s| match Timestamp::parse_rfc3339(s) {
        None => {
            problems.add("scheduledFor", "must be an RFC 3339 date-time, such as 2025-07-10T02:12:14.957Z");
            None
        }
        Some(at) if at.millis() > now.millis() + MAX_SCHEDULE_AHEAD_MS => {
            problems.add("scheduledFor", "at most 35 days ahead");
            None
        }
        Some(at) => Some(at),
    });
    let expires_at = req.validity.and_then(|v| {
        if !(1..=MAX_SCHEDULE_AHEAD_MS / 1000).contains(&v) {
            problems.add("validity", format!("seconds, from 1 to {}", MAX_SCHEDULE_AHEAD_MS / 1000));
            return None;
        }
        let start = scheduled_for.map_or(now, |s| s.max(now));
        Some(start.plus_millis(v * 1000))
    });
    (to, scheduled_for, expires_at)
}

fn template_problem(e: TemplateError) -> ApiError {
    match e {
        TemplateError::NotFound => ApiError::field("template.projectId", "the workspace has no such template"),
        TemplateError::VersionNotFound => ApiError::field("template.version", "the template has no such version"),
        TemplateError::VersionInactive => ApiError::field("template.version", "the template version is not active"),
        TemplateError::NoActiveVersion => ApiError::field("template.version", "the template has no active version"),
        e @ TemplateError::UnknownLocale { .. } => ApiError::field("template.locale", e.to_string()),
        TemplateError::MissingParameter(p) => ApiError::field("template.parameters", p.to_string()),
        TemplateError::Unavailable => Problem::Unavailable.into(),
    }
}

/// Send a message to a channel.
#[utoipa::path(
    post,
    path = "/workspaces/{workspaceId}/channels/{channelId}/messages",
    tag = "Bird channels",
    params(
        ("workspaceId" = String, Path, description = "The workspace (account) id"),
        ("channelId" = String, Path, description = "The channel id"),
    ),
    request_body(content = BirdSendRequest, example = json!({"receiver": {"contacts": [{"identifierKey": "phonenumber", "identifierValue": "+31612345678"}]}, "body": {"type": "text", "text": {"text": "Single text message"}}, "reference": "order-1234", "tags": ["orders"]})),
    security(("accessKey" = []), ("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: stored and charged (or failed at once, opted out)", body = BirdMessage),
        (status = 400, description = "The body is not the schema's JSON", body = BirdError),
        (status = 401, description = "Missing or invalid credentials", body = BirdError),
        (status = 403, description = "The credentials are for another workspace", body = BirdError),
        (status = 404, description = "The workspace has no such channel", body = BirdError),
        (status = 409, description = "The channel is inactive or cannot send MMS, or the balance cannot pay", body = BirdError),
        (status = 422, description = "The request did not pass validation; `details` names each field", body = BirdError),
        (status = 429, description = "Over the workspace's request rate; see Retry-After", body = BirdError),
    )
)]
pub(crate) async fn send(
    State(state): State<AppState>,
    BirdChannel { channel, .. }: BirdChannel,
    Body(raw, ..): Body<serde_json::Value, ApiError>,
) -> Result<Response, ApiError> {
    let req = parse_request(raw)?;
    let now = Timestamp::now();
    let mut problems = Problems::default();
    let content = check_content(&state, &mut problems, &req);
    let (to, scheduled_for, expires_at) = check_envelope(&mut problems, &req, &channel, &state.core.policy().urls, now);
    problems.into_result()?;
    let (Some(content), Some(to)) = (content, to) else {
        return Err(ApiError::field("body", "required"));
    };
    if !channel.active {
        return Err(ApiError::conflict("ChannelInactive", "the channel is not active"));
    }
    let (kind, body, media) = match content {
        Content::Text(text) => (MessageKind::Sms, Some(text), Vec::new()),
        Content::Media { text, media } => (MessageKind::Mms, text, media),
        Content::Template(template) => {
            let text = state.core.render_template(channel.account_id, &template).await.map_err(template_problem)?;
            if text.trim().is_empty() {
                return Err(ApiError::field("template", "the template rendered to an empty text"));
            }
            (MessageKind::Sms, Some(text), Vec::new())
        }
    };
    if kind == MessageKind::Mms && !channel.mms {
        return Err(SendError::SenderNotCapable.into());
    }
    let text = match &body {
        Some(b) => state.core.policy().check_text(b).map_err(|e| ApiError::field("template", text_problem(&e)))?,
        None => switchboard_domain::encoding::analyze(""),
    };
    let mut details = req;
    if let Some(contact) = details.receiver.as_mut().and_then(|r| r.contacts.first_mut()) {
        contact.identifier_value = Some(to.as_str().to_owned());
    }
    let details_json = serde_json::to_string(&details).map_err(|_| ApiError::from(Problem::Unavailable))?;
    let notify_url =
        details.notification.as_ref().and_then(|n| n.get("url")).and_then(|u| u.as_str()).map(str::to_owned);
    let message = ChannelMessage {
        to,
        kind,
        body,
        text,
        media,
        scheduled_for,
        expires_at,
        details: Some(details_json),
        notify_url,
    };
    let record = state.core.send_on_channel(&channel, message).await?;
    let mut wire = message_wire(&record, Some(details));
    // As Bird documents it, the answer to a send is `accepted`; reading the message back shows
    // where it is now (scheduled, or failed at once for an opted-out recipient).
    wire.status = "accepted".into();
    Ok((StatusCode::ACCEPTED, Json(wire)).into_response())
}

/// The request as the schema has it: a JSON object of known fields with the right types.
fn parse_request(raw: serde_json::Value) -> Result<BirdSendRequest, ApiError> {
    if !raw.is_object() {
        return Err(ApiError::request(StatusCode::BAD_REQUEST, "the request body must be a JSON object".into()));
    }
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let message = match e.path().to_string().as_str() {
            "." => format!("invalid request body: {}", e.inner()),
            path => format!("invalid request body: {path}: {}", e.inner()),
        };
        ApiError::request(StatusCode::BAD_REQUEST, message)
    })
}

/// Bird's word for a message's status.
fn status_word(m: &MessageRecord) -> &'static str {
    status_word_of(m.status, m.attempts, m.sent_at.is_some())
}

/// Bird's word for a status: a failure after the upstream took the message is a delivery
/// failure, one before it a sending failure.
pub(crate) fn status_word_of(status: MessageStatus, attempts: u32, was_sent: bool) -> &'static str {
    match status {
        MessageStatus::Accepted => "accepted",
        MessageStatus::Queued if attempts == 0 => "accepted",
        MessageStatus::Queued => "processing",
        MessageStatus::Scheduled => "scheduled",
        MessageStatus::Sent => "sent",
        MessageStatus::Delivered => "delivered",
        MessageStatus::Failed if was_sent => "delivery_failed",
        MessageStatus::Failed => "sending_failed",
        MessageStatus::Undelivered => "delivery_failed",
        MessageStatus::Expired => "expired",
        MessageStatus::Canceled => "canceled",
        MessageStatus::Received => "delivered",
    }
}

/// A stable number per error type, for `failure.code`.
fn failure_code(t: ErrorType) -> u32 {
    ErrorType::ALL.iter().position(|x| *x == t).map_or(0, |i| i as u32 + 1)
}

pub(crate) fn message_wire(m: &MessageRecord, details: Option<BirdSendRequest>) -> BirdMessage {
    let d = details
        .or_else(|| m.details.as_deref().and_then(|d| serde_json::from_str::<BirdSendRequest>(d).ok()))
        .unwrap_or_default();
    let failed = matches!(m.status, MessageStatus::Failed | MessageStatus::Undelivered | MessageStatus::Expired);
    let failure = failed.then(|| {
        let error_type = m.error_type.unwrap_or(ErrorType::Unknown);
        BirdFailure {
            code: if m.status == MessageStatus::Expired { 0 } else { failure_code(error_type) },
            description: m.error_message.clone().unwrap_or_else(|| error_type.description().to_owned()),
            source: BirdFailureSource {
                code: if m.status == MessageStatus::Expired { "expired".into() } else { error_type.as_str().into() },
                name: "switchboard".into(),
            },
        }
    });
    // A template message shows the text it rendered to; an incoming message, its text.
    let body = d.body.clone().or_else(|| {
        (d.template.is_some() || m.direction == Direction::Inbound).then(|| BirdBody {
            kind: "text".into(),
            text: Some(BirdTextBody { text: m.body.clone().unwrap_or_default(), ..Default::default() }),
            ..Default::default()
        })
    });
    let receiver = d.receiver.clone().unwrap_or_else(|| BirdReceiver {
        contacts: vec![switchboard_domain::wire::bird::BirdContact {
            identifier_key: Some("phonenumber".into()),
            identifier_value: Some(m.to.as_str().to_owned()),
            ..Default::default()
        }],
    });
    BirdMessage {
        id: m.id.as_uuid(),
        channel_id: m.channel_id.unwrap_or_default(),
        sender: BirdConnector { connector: BirdIdentifier { identifier_value: m.from.as_str().to_owned() } },
        receiver,
        meta: d.meta,
        reference: d.reference,
        parts: m.provider_message_id.iter().map(|p| BirdPart { platform_reference: p.clone() }).collect(),
        status: status_word(m).into(),
        reason: failure.as_ref().map(|f| f.description.clone()),
        direction: match m.direction {
            Direction::Outbound => "outgoing".into(),
            Direction::Inbound => "incoming".into(),
        },
        reply_to: d.reply_to,
        last_status_at: m.updated_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
        failure,
        tags: d.tags.unwrap_or_default(),
        short_links: d.short_links,
        scheduled_for: d.scheduled_for.as_deref().and_then(Timestamp::parse_rfc3339),
        body,
        template: d.template,
        notification: d.notification,
        validity: d.validity,
        cap_frequency: d.cap_frequency,
        enable_link_tracking: d.enable_link_tracking,
        ignore_quiet_hours: d.ignore_quiet_hours,
        ignore_global_holdout: d.ignore_global_holdout,
    }
}

/// A message id as Bird gives it (a UUID), or as Switchboard's other dialects do (`msg_…`).
fn parse_message_id(s: &str) -> Option<MessageId> {
    Uuid::parse_str(s).map(MessageId::from_uuid).ok().or_else(|| s.parse().ok())
}

/// The channel's message the path names.
async fn channel_message(
    state: &AppState,
    channel: &ChannelRecord,
    id: Option<&str>,
) -> Result<MessageRecord, ApiError> {
    let id = id.and_then(parse_message_id).ok_or_else(|| ApiError::not_found("message"))?;
    let m = state.core.message(channel.account_id, id).await?;
    if m.channel_id != Some(channel.id) {
        return Err(ApiError::not_found("message"));
    }
    Ok(m)
}

/// Read one message of a channel.
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/channels/{channelId}/messages/{messageId}",
    tag = "Bird channels",
    params(
        ("workspaceId" = String, Path, description = "The workspace (account) id"),
        ("channelId" = String, Path, description = "The channel id"),
        ("messageId" = String, Path, description = "The message id"),
    ),
    security(("accessKey" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The message", body = BirdMessage),
        (status = 401, description = "Missing or invalid credentials", body = BirdError),
        (status = 403, description = "The credentials are for another workspace", body = BirdError),
        (status = 404, description = "No such channel, or no such message on it", body = BirdError),
    )
)]
pub(crate) async fn read(
    State(state): State<AppState>,
    BirdChannel { channel, message }: BirdChannel,
) -> Result<Json<BirdMessage>, ApiError> {
    let m = channel_message(&state, &channel, message.as_deref()).await?;
    let mut wire = message_wire(&m, None);
    // Each SMS part under the upstream's own id for it, when the upstream gave each its own.
    let parts = state.core.message_parts(m.id).await?;
    if !parts.is_empty() {
        wire.parts = parts.into_iter().map(|p| BirdPart { platform_reference: p.provider_ref }).collect();
    }
    Ok(Json(wire))
}

/// Cancel a scheduled message; its credits are refunded.
#[utoipa::path(
    delete,
    path = "/workspaces/{workspaceId}/channels/{channelId}/messages/{messageId}",
    tag = "Bird channels",
    params(
        ("workspaceId" = String, Path, description = "The workspace (account) id"),
        ("channelId" = String, Path, description = "The channel id"),
        ("messageId" = String, Path, description = "The message id"),
    ),
    security(("accessKey" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Canceled and refunded; the message", body = BirdMessage),
        (status = 404, description = "No such channel, or no such message on it", body = BirdError),
        (status = 409, description = "The message is not scheduled (any more)", body = BirdError),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    BirdChannel { channel, message }: BirdChannel,
) -> Result<Json<BirdMessage>, ApiError> {
    let m = channel_message(&state, &channel, message.as_deref()).await?;
    let canceled = state.core.cancel_message(channel.account_id, m.id).await.map_err(|e| match e {
        AccessError::Conflict(m) => ApiError::conflict("NotScheduled", m),
        other => other.into(),
    })?;
    Ok(Json(message_wire(&canceled, None)))
}

/// Paging of a channel's messages.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListParams {
    /// Messages per page, 1 to 100 (default 10).
    limit: Option<u32>,
    /// The `nextPageToken` of the previous page.
    page_token: Option<String>,
}

/// List a channel's messages, newest first.
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/channels/{channelId}/messages",
    tag = "Bird channels",
    params(
        ("workspaceId" = String, Path, description = "The workspace (account) id"),
        ("channelId" = String, Path, description = "The channel id"),
        ListParams,
    ),
    security(("accessKey" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of messages", body = BirdMessageList),
        (status = 404, description = "No such channel", body = BirdError),
        (status = 422, description = "A bad limit or page token", body = BirdError),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    BirdChannel { channel, .. }: BirdChannel,
    Query(params, ..): Query<ListParams, ApiError>,
) -> Result<Json<BirdMessageList>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::field("limit", format!("1 to {MAX_PAGE}")));
    }
    let before = match params.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(parse_message_id(t).ok_or_else(|| ApiError::field("pageToken", "not a page token"))?),
    };
    let messages = state.core.channel_messages(channel.id, before, limit).await?;
    let next_page_token =
        (messages.len() as u32 == limit).then(|| messages.last().map(|m| m.id.as_uuid().to_string())).flatten();
    Ok(Json(BirdMessageList { results: messages.iter().map(|m| message_wire(m, None)).collect(), next_page_token }))
}
