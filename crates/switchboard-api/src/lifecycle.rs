//! The admin API's delivery-lifecycle endpoints: webhook endpoints, their deliveries and
//! attempts, the notification secret, and the simulator's stand-ins for a carrier (inbound
//! messages and delivery receipts). Also [`WebhookRender`], the body of each webhook event.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use switchboard_core::{Inbound, NewWebhook, WebhookUpdate};
use switchboard_domain::wire::webhooks::{
    BalanceLowData, BalanceLowEvent, CreateWebhook, EventMessage, InboundResult, InjectInbound, InjectReceipts,
    NotificationSecret, ReceiptResults, UpdateWebhook, Upstream, Webhook, WebhookAttempt, WebhookDelivery,
    WebhookEvent,
};
use switchboard_domain::wire::{AdminErrorBody, Page};
use switchboard_domain::{EventId, EventType, MessageId, MessageStatus, Timestamp};
use switchboard_http_upstream::CallbackError;
use switchboard_provider::{Receipt, ReceiptStatus};
use switchboard_records::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryState, MessageRecord, ReceiptOutcome, WebhookRecord,
};
use switchboard_webhooks::Render;

use crate::AppState;
use crate::extract::{Body, Path, Query};
use crate::operator::{AdminResult, ApiError, Operator, account_id, message_wire, uuid_param};

/// The routes of the admin API's delivery lifecycle (under `/admin/v1`, like those of `admin`).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/accounts/{account}/webhooks", post(create_webhook).get(list_webhooks))
        .route(
            "/admin/v1/accounts/{account}/webhooks/{webhook}",
            get(get_webhook).patch(update_webhook).delete(delete_webhook),
        )
        .route("/admin/v1/accounts/{account}/notification-secret", get(notification_secret))
        .route("/admin/v1/accounts/{account}/webhook-deliveries", get(list_deliveries))
        .route("/admin/v1/webhook-deliveries/{event}/retry", post(retry_delivery))
        .route("/admin/v1/upstreams", get(list_upstreams))
        .route("/admin/v1/simulator/inbound", post(inject_inbound))
        .route("/admin/v1/simulator/receipts", post(inject_receipts))
}

/// An endpoint's URL, checked with the server's URL policy (the one Bird's
/// `notification.url` and the webhook worker are held to): a refusal is a 422 naming `url`.
fn check_url(s: &AppState, url: &str) -> Result<(), ApiError> {
    s.core
        .policy()
        .urls
        .check_url(url)
        .map(drop)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", format!("url: {e}")))
}

fn webhook_wire(w: &WebhookRecord, secret: Option<String>) -> Webhook {
    Webhook {
        id: w.id,
        account_id: w.account_id.as_uuid(),
        url: w.url.clone(),
        events: w.events.clone(),
        active: w.active,
        secret,
        created_at: w.created_at,
    }
}

/// Create a webhook endpoint. The signing secret is in this response and in the response
/// that rotates it, nowhere else.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/webhooks", tag = "Admin", params(("account" = Uuid, Path)), request_body(content = CreateWebhook, example = json!({"url": "https://hooks.example.com/switchboard", "events": ["message.delivered", "message.failed"]})),
    security(("operator" = [])), responses((status = 201, body = Webhook), (status = 400, body = AdminErrorBody), (status = 404, body = AdminErrorBody),
    (status = 422, description = "The URL is not one the server may call: not http(s), with a user name, or naming a local host or a loopback, private, link-local or other special address", body = AdminErrorBody),
    (status = 409, description = "The account has the most endpoints it may", body = AdminErrorBody)))]
pub(crate) async fn create_webhook(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Body(req, ..): Body<CreateWebhook, ApiError>,
) -> AdminResult<(StatusCode, Json<Webhook>)> {
    let account = account_id(&account)?;
    check_url(&s, &req.url)?;
    let new = NewWebhook {
        url: req.url,
        secret: req.secret,
        events: req.events.unwrap_or_default(),
        active: req.active.unwrap_or(true),
    };
    let (record, secret) = s.core.create_webhook(account, new).await?;
    Ok((StatusCode::CREATED, Json(webhook_wire(&record, Some(secret.expose())))))
}

/// List an account's webhook endpoints.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/webhooks", tag = "Admin", params(("account" = Uuid, Path)),
    security(("operator" = [])), responses((status = 200, body = Page<Webhook>), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn list_webhooks(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
) -> AdminResult<Json<Page<Webhook>>> {
    let hooks = s.core.webhooks(account_id(&account)?).await?;
    Ok(Json(Page { data: hooks.iter().map(|w| webhook_wire(w, None)).collect(), next_cursor: None }))
}

/// Read a webhook endpoint.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/webhooks/{webhook}", tag = "Admin", params(("account" = Uuid, Path), ("webhook" = Uuid, Path)),
    security(("operator" = [])), responses((status = 200, body = Webhook), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn get_webhook(
    State(s): State<AppState>,
    _: Operator,
    Path((account, webhook), ..): Path<(String, String), ApiError>,
) -> AdminResult<Json<Webhook>> {
    let record = s.core.webhook(account_id(&account)?, uuid_param("webhook", &webhook)?).await?;
    Ok(Json(webhook_wire(&record, None)))
}

/// Change a webhook endpoint: URL, event types, active, or its secret (given, or rotated).
#[utoipa::path(patch, path = "/admin/v1/accounts/{account}/webhooks/{webhook}", tag = "Admin", params(("account" = Uuid, Path), ("webhook" = Uuid, Path)),
    request_body(content = UpdateWebhook, example = json!({"active": false})), security(("operator" = [])),
    responses((status = 200, body = Webhook), (status = 400, body = AdminErrorBody), (status = 404, body = AdminErrorBody),
    (status = 422, description = "The URL is not one the server may call", body = AdminErrorBody)))]
pub(crate) async fn update_webhook(
    State(s): State<AppState>,
    _: Operator,
    Path((account, webhook), ..): Path<(String, String), ApiError>,
    Body(req, ..): Body<UpdateWebhook, ApiError>,
) -> AdminResult<Json<Webhook>> {
    if req.rotate_secret && req.secret.is_some() {
        return Err(ApiError::invalid("give either secret or rotateSecret, not both"));
    }
    if let Some(url) = &req.url {
        check_url(&s, url)?;
    }
    let secret = match (req.secret, req.rotate_secret) {
        (Some(s), _) => Some(Some(s)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let update = WebhookUpdate { url: req.url, secret, events: req.events, active: req.active };
    let (record, secret) =
        s.core.update_webhook(account_id(&account)?, uuid_param("webhook", &webhook)?, update).await?;
    Ok(Json(webhook_wire(&record, secret.map(|s| s.expose()))))
}

/// Delete a webhook endpoint; its pending deliveries are canceled.
#[utoipa::path(delete, path = "/admin/v1/accounts/{account}/webhooks/{webhook}", tag = "Admin", params(("account" = Uuid, Path), ("webhook" = Uuid, Path)),
    security(("operator" = [])), responses((status = 204, description = "Deleted"), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn delete_webhook(
    State(s): State<AppState>,
    _: Operator,
    Path((account, webhook), ..): Path<(String, String), ApiError>,
) -> AdminResult<StatusCode> {
    s.core.delete_webhook(account_id(&account)?, uuid_param("webhook", &webhook)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The secret that signs deliveries to the account's messages' own notification URLs (Bird's
/// `notification.url`).
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/notification-secret", tag = "Admin", params(("account" = Uuid, Path)),
    security(("operator" = [])), responses((status = 200, body = NotificationSecret), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn notification_secret(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
) -> AdminResult<Json<NotificationSecret>> {
    let secret = s.core.notification_secret(account_id(&account)?).await?;
    Ok(Json(NotificationSecret { secret: secret.expose() }))
}

/// Filters of the delivery list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DeliveryParams {
    /// Items per page, 1 to 100 (default 50).
    limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
    /// Only deliveries to this endpoint.
    webhook: Option<String>,
    /// Only deliveries about this message (`msg_…`).
    message: Option<String>,
    /// Only deliveries in this state: pending, delivered, failed, canceled.
    state: Option<String>,
}

/// Most deliveries on one page (each carries its attempts).
const MAX_DELIVERY_PAGE: u32 = 100;

/// List an account's webhook deliveries with their attempts, newest event first.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/webhook-deliveries", tag = "Admin", params(("account" = Uuid, Path), DeliveryParams),
    security(("operator" = [])), responses((status = 200, body = Page<WebhookDelivery>), (status = 400, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn list_deliveries(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Query(p, ..): Query<DeliveryParams, ApiError>,
) -> AdminResult<Json<Page<WebhookDelivery>>> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=MAX_DELIVERY_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!("limit: must be 1 to {MAX_DELIVERY_PAGE}")));
    }
    let before = p
        .cursor
        .as_deref()
        .map(|c| c.parse::<EventId>().map_err(|_| ApiError::invalid("cursor: not a cursor from this API")))
        .transpose()?;
    let filter = DeliveryFilter {
        endpoint: p.webhook.as_deref().map(|w| uuid_param("webhook", w)).transpose()?,
        message: p
            .message
            .as_deref()
            .map(|m| m.parse::<MessageId>().map_err(|_| ApiError::invalid("message: not a message id")))
            .transpose()?,
        state: p
            .state
            .as_deref()
            .map(|st| {
                DeliveryState::parse(st)
                    .ok_or_else(|| ApiError::invalid("state: one of pending, delivered, failed, canceled"))
            })
            .transpose()?,
    };
    let mut items = s.core.deliveries(account_id(&account)?, filter, before, limit + 1).await?;
    // A page ends at an event boundary, so that the cursor (an event id) loses nothing.
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    if more
        && let Some(last) = items.last().map(|d| d.event_id)
        && items.iter().any(|d| d.event_id != last)
    {
        items.retain(|d| d.event_id != last);
    }
    let next_cursor = if more { items.last().map(|d| d.event_id.to_string()) } else { None };
    let mut data = Vec::with_capacity(items.len());
    for d in &items {
        let attempts = s.core.delivery_attempts(d.event_id, &d.target).await?;
        data.push(delivery_wire(d, attempts.iter().map(attempt_wire).collect()));
    }
    Ok(Json(Page { data, next_cursor }))
}

/// Which of an event's deliveries to resend.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryParams {
    /// Only the delivery to this endpoint; absent: every failed delivery of the event
    /// (including one to the message's own notification URL).
    webhook: Option<String>,
}

/// Resend a failed webhook delivery: make it due at once with a fresh budget (its retry period
/// and backoff start over; its attempts so far stay in its log). Only a failed delivery can be
/// resent, once: while it is pending again, another resend is refused with 409.
#[utoipa::path(post, path = "/admin/v1/webhook-deliveries/{event}/retry", tag = "Admin", params(("event" = String, Path, description = "The event id (evt_…)"), RetryParams),
    security(("operator" = [])), responses((status = 200, description = "The deliveries made due", body = Page<WebhookDelivery>),
    (status = 404, body = AdminErrorBody), (status = 409, description = "None of the deliveries is failed", body = AdminErrorBody)))]
pub(crate) async fn retry_delivery(
    State(s): State<AppState>,
    _: Operator,
    Path(event, ..): Path<String, ApiError>,
    Query(p, ..): Query<RetryParams, ApiError>,
) -> AdminResult<Json<Page<WebhookDelivery>>> {
    let event: EventId =
        event.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "delivery not found"))?;
    let endpoint = p.webhook.as_deref().map(|w| uuid_param("webhook", w)).transpose()?;
    let resent = s.core.resend_deliveries(event, endpoint).await?;
    let mut data = Vec::with_capacity(resent.len());
    for d in &resent {
        let attempts = s.core.delivery_attempts(d.event_id, &d.target).await?;
        data.push(delivery_wire(d, attempts.iter().map(attempt_wire).collect()));
    }
    Ok(Json(Page { data, next_cursor: None }))
}

pub(crate) fn attempt_wire(a: &AttemptRecord) -> WebhookAttempt {
    WebhookAttempt {
        attempt: a.attempt,
        at: a.at,
        status_code: a.status_code,
        error: a.error.clone(),
        duration_ms: a.duration_ms,
    }
}

pub(crate) fn delivery_wire(d: &DeliveryRecord, attempt_log: Vec<WebhookAttempt>) -> WebhookDelivery {
    WebhookDelivery {
        event_id: d.event_id,
        endpoint_id: d.endpoint_id,
        url: d.url.clone(),
        event_type: d.event_type,
        message_id: d.message_id,
        status: d.status,
        error_type: d.error_type,
        occurred_at: d.occurred_at,
        state: d.state.as_str().to_owned(),
        attempts: d.attempts,
        next_attempt_at: (d.state == DeliveryState::Pending).then_some(d.next_attempt_at),
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        attempt_log,
    }
}

/// List the upstreams and how each stands: connected (bound, or passing its health checks),
/// messages in flight against its window, and what it took and failed since the server started.
#[utoipa::path(get, path = "/admin/v1/upstreams", tag = "Admin", security(("operator" = [])),
    responses((status = 200, body = Page<Upstream>), (status = 401, body = AdminErrorBody)))]
pub(crate) async fn list_upstreams(State(s): State<AppState>, _: Operator) -> AdminResult<Json<Page<Upstream>>> {
    let data = s
        .core
        .upstreams()
        .into_iter()
        .map(|u| Upstream {
            name: u.name,
            kind: u.kind,
            connected: u.connected,
            in_flight: u.in_flight,
            window: u.window,
            sent: u.sent,
            failed: u.failed,
            detail: u.detail,
            rate_per_second: u.rate_per_second,
            throttled: u.throttled,
        })
        .collect();
    Ok(Json(Page { data, next_cursor: None }))
}

/// An HTTP upstream's delivery outcomes: the other server's webhooks, signed with the secret of
/// the endpoint registered there. Answers 204 once the receipt is stored, 401 for a bad
/// signature, 400 for a body that is not an event, 404 for an unknown upstream, and 503 when
/// the receipt could not be stored (so that the other server sends it again).
#[utoipa::path(post, path = "/upstreams/{name}/events", tag = "Upstreams", params(("name" = String, Path, description = "The HTTP upstream's name")),
    request_body(content = WebhookEvent, description = "The other server's webhook event, with its Standard Webhooks signature headers",
        example = json!({"id": "evt_DsAdb4EBYBh3z25sBA1qpX", "type": "message.delivered", "createdAt": "2026-03-15T14:30:06.021Z",
            "data": {"id": "msg_DsAdb4EBYBh3z25sBA1qnv", "accountId": "0195a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b", "direction": "outbound",
                "kind": "sms", "to": "+18005551234", "from": "+18005559876", "body": "Your verification code is 482910",
                "encoding": "gsm7", "segments": 1, "status": "delivered", "providerMessageId": "sim-0195a1b27c3d7e4f8a9b0c1d2e3f4a5c",
                "createdAt": "2026-03-15T14:30:05.004Z", "sentAt": "2026-03-15T14:30:05.012Z"}})),
    responses((status = 204, description = "Taken"), (status = 400, body = AdminErrorBody), (status = 401, description = "The signature does not verify", body = AdminErrorBody),
    (status = 404, description = "No HTTP upstream of that name", body = AdminErrorBody),
    (status = 503, description = "The receipt could not be stored; send it again later", body = AdminErrorBody)))]
pub(crate) async fn upstream_callback(
    State(s): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let Some(upstream) = s.upstream_callbacks.get(&name) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such upstream"));
    };
    match upstream.handle_callback(&headers, &body).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(CallbackError::BadSignature) => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the webhook signature does not verify"))
        }
        Err(CallbackError::BadBody(e)) => Err(ApiError::invalid(format!("not a webhook event: {e}"))),
        Err(CallbackError::NotStored) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "the receipt could not be stored; send it again later",
        )),
    }
}

/// Simulator: receive a message from a handset, as a carrier would deliver it. STOP, START and
/// HELP (and their synonyms) change the opt-out list and are answered.
#[utoipa::path(post, path = "/admin/v1/simulator/inbound", tag = "Simulator", request_body(content = InjectInbound, example = json!({"from": "+18005551234", "to": "+18005559876", "body": "STOP"})), security(("operator" = [])),
    responses((status = 201, body = InboundResult), (status = 400, body = AdminErrorBody), (status = 404, description = "The number is no account's sender", body = AdminErrorBody)))]
pub(crate) async fn inject_inbound(
    State(s): State<AppState>,
    _: Operator,
    Body(req, ..): Body<InjectInbound, ApiError>,
) -> AdminResult<(StatusCode, Json<InboundResult>)> {
    let inbound =
        Inbound { from: req.from, to: req.to, body: req.body, media: req.media_urls, provider_ref: req.provider_ref };
    let outcome = s.core.receive(inbound).await?;
    Ok((
        StatusCode::CREATED,
        Json(InboundResult {
            message: message_wire(&outcome.message),
            reply: outcome.reply.as_ref().map(message_wire),
            opt_out_changed: outcome.opt_out_changed,
        }),
    ))
}

/// Simulator: deliver receipts for message parts, as a carrier would send them. Each part's
/// id is in the message's `parts` (`GET /admin/v1/messages/{id}`).
#[utoipa::path(post, path = "/admin/v1/simulator/receipts", tag = "Simulator", request_body(content = InjectReceipts, example = json!({"receipts": [{"providerRef": "sim-0193e4a1b2c34d5e8f9a0b1c2d3e4f50.1", "status": "delivered"}]})), security(("operator" = [])),
    responses((status = 200, body = ReceiptResults), (status = 400, body = AdminErrorBody)))]
pub(crate) async fn inject_receipts(
    State(s): State<AppState>,
    _: Operator,
    Body(req, ..): Body<InjectReceipts, ApiError>,
) -> AdminResult<Json<ReceiptResults>> {
    let mut receipts = Vec::with_capacity(req.receipts.len());
    for (i, r) in req.receipts.into_iter().enumerate() {
        let status = match r.status.as_str() {
            "delivered" => ReceiptStatus::Delivered,
            "undelivered" => ReceiptStatus::Undelivered,
            "failed" => ReceiptStatus::Failed,
            _ => return Err(ApiError::invalid(format!("receipts[{i}].status: one of delivered, undelivered, failed"))),
        };
        receipts.push(Receipt {
            provider_ref: r.provider_ref,
            status,
            error_type: r.error_type,
            description: r.description,
            at: Timestamp::now(),
        });
    }
    let outcomes = s.core.record_receipts(receipts).await?;
    let results = outcomes
        .iter()
        .map(|o| match o {
            ReceiptOutcome::Applied { .. } => "applied",
            ReceiptOutcome::Ignored => "ignored",
            ReceiptOutcome::Unmatched => "unmatched",
        })
        .map(str::to_owned)
        .collect();
    Ok(Json(ReceiptResults { results }))
}

/// The bodies of webhook events: Switchboard's own event for an account's endpoints (a
/// [`WebhookEvent`] about a message, or a [`BalanceLowEvent`]), and Bird's
/// `{service, event, payload}` for a message's own notification URL (Bird's
/// `notification.url`), whose payload is the Bird message object.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookRender;

impl Render for WebhookRender {
    fn render(&self, d: &DeliveryRecord, m: &MessageRecord) -> Vec<u8> {
        // The message as this event left it, from what cannot have changed since, so that
        // every retry carries the same body.
        let failure = matches!(d.status, MessageStatus::Failed | MessageStatus::Undelivered | MessageStatus::Expired);
        let taken = matches!(d.status, MessageStatus::Sent | MessageStatus::Delivered | MessageStatus::Undelivered)
            || (d.status == MessageStatus::Failed && m.sent_at.is_some());
        let body = if let Some(low) = d.balance_low {
            serde_json::to_vec(&BalanceLowEvent {
                id: d.event_id,
                kind: d.event_type,
                created_at: d.occurred_at,
                data: BalanceLowData {
                    account_id: d.account_id.as_uuid(),
                    sms_credits: low.sms_credits,
                    low_balance_threshold: low.threshold,
                    message_id: d.message_id,
                },
            })
        } else if d.endpoint_id.is_some() {
            serde_json::to_vec(&WebhookEvent {
                id: d.event_id,
                kind: d.event_type,
                created_at: d.occurred_at,
                data: EventMessage {
                    id: m.id,
                    account_id: m.account_id.as_uuid(),
                    direction: m.direction,
                    kind: m.kind,
                    to: m.to.as_str().to_owned(),
                    from: m.from.as_str().to_owned(),
                    body: m.body.clone(),
                    media_urls: m.media.clone(),
                    encoding: m.encoding,
                    segments: m.segments,
                    status: d.status,
                    error_type: if failure { d.error_type.or(m.error_type) } else { None },
                    error_message: if failure { m.error_message.clone() } else { None },
                    provider_message_id: if taken { m.provider_message_id.clone() } else { None },
                    created_at: m.created_at,
                    sent_at: if taken { m.sent_at } else { None },
                },
            })
        } else {
            let mut at_event = m.clone();
            at_event.status = d.status;
            at_event.error_type = if failure { d.error_type.or(m.error_type) } else { None };
            if !failure {
                at_event.error_message = None;
            }
            if !taken {
                at_event.sent_at = None;
                at_event.provider_message_id = None;
            }
            at_event.attempts = u32::from(taken);
            at_event.updated_at = d.occurred_at;
            let event = if d.event_type == EventType::Inbound { "sms.inbound" } else { "sms.outbound" };
            serde_json::to_vec(&serde_json::json!({
                "service": "channels",
                "event": event,
                "eventId": d.event_id.to_string(),
                "payload": crate::bird::message_wire(&at_event, None),
            }))
        };
        body.unwrap_or_else(|e| {
            tracing::error!(error = %e, "rendering a webhook event failed");
            b"{}".to_vec()
        })
    }
}
