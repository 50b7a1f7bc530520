//! Switchboard's HTTP API on axum: the TextingLine, Mudbase and Bird channels dialects, the
//! admin API, OpenAPI (`/openapi.json`, Swagger UI at `/docs`), Prometheus metrics
//! (`/metrics`) and `/healthz`.
//!
//! This is the only crate that knows HTTP status codes. Handlers extract the request, call
//! `switchboard_core::Core`, and map the result onto their dialect; every error, including a
//! malformed body, an unknown route, a body over the limit or a timeout, is answered in the
//! shape of the dialect whose path was called.

mod admin;
mod bird;
mod extract;
mod lifecycle;
mod mudbase;
mod openapi;
mod operator;
mod problem;
mod textingline;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_core::Core;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::extract::DialectError;

pub use lifecycle::WebhookRender;
pub use openapi::ApiDoc;

/// A secret string that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for comparison.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Limits of the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { max_body_bytes: 64 * 1024, request_timeout: Duration::from_secs(30) }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The use cases.
    pub core: Core,
    /// The operator token of the admin API.
    pub operator_token: Secret,
    /// Renders Prometheus metrics, if a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<Secret>,
    /// Limits.
    pub limits: HttpLimits,
    /// The HTTP upstreams by name, whose delivery outcomes come back to
    /// `POST /upstreams/{name}/events`.
    pub upstream_callbacks: Arc<UpstreamCallbacks>,
    /// The proxies in front of the server (a TLS-terminating proxy, a load balancer): when the
    /// TCP peer is one of them, the client's address for the failure budgets is read from
    /// `X-Forwarded-For` instead. Empty: the header is never believed.
    pub trusted_proxies: Arc<[switchboard_domain::Cidr]>,
}

/// The HTTP upstreams by name.
pub type UpstreamCallbacks = std::collections::HashMap<String, Arc<switchboard_http_upstream::HttpUpstream>>;

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The whole HTTP application with `extra` routes beside the API's (the web console): they
/// are served under the same layers (request timeout, body limit, panic catching, access log
/// and metrics), and each of their requests carries its
/// [`switchboard_core::console::HttpClient`] as an extension. `extra` must not set a fallback; unknown paths under `/console` are answered in
/// plain text.
pub fn router_with(state: AppState, extra: Router) -> Router {
    let limits = state.limits;
    let trusted_proxies = extract::TrustedProxies(state.trusted_proxies.clone());
    let api = Router::new()
        .merge(textingline::routes())
        // A panic in a handler is answered in the shape of the dialect whose route it was.
        .merge(mudbase::routes().layer(CatchPanicLayer::custom(|_| internal_error_on("/api/messaging/"))))
        .merge(bird::routes().layer(CatchPanicLayer::custom(|_| internal_error_on("/workspaces/"))))
        .merge(admin::routes().layer(CatchPanicLayer::custom(|_| internal_error_on("/admin/"))))
        .merge(lifecycle::routes().layer(CatchPanicLayer::custom(|_| internal_error_on("/admin/"))))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/upstreams/{name}/events", axum::routing::post(lifecycle::upstream_callback))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    Router::new()
        .merge(api)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        // Only the extra routes read the client: the API's requests are spared the work.
        .merge(extra.layer(axum::middleware::from_fn(note_client)))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::Extension(trusted_proxies))
        .layer(axum::middleware::from_fn_with_state(limits.request_timeout, timeout))
        .layer(CatchPanicLayer::custom(|_| internal_error_on("/")))
        .layer(axum::middleware::from_fn(access))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request| {
            tracing::debug_span!("request", method = %req.method(), path = %masked_path(req.uri().path()))
        }))
}

/// Sets the request's [`switchboard_core::console::HttpClient`] extension.
async fn note_client(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let client = extract::http_client(&parts);
    parts.extensions.insert(client);
    next.run(Request::from_parts(parts, body)).await
}

/// The header that carries a request's id, both ways.
const REQUEST_ID: &str = "x-request-id";

/// A request's id: the client's `X-Request-Id` when it is sane (1 to 64 letters, digits and
/// `.`, `_`, `:`, `-`), else one made here, unique in the process and unlikely to repeat
/// across processes (a random prefix drawn at start and a counter).
fn request_id(headers: &axum::http::HeaderMap) -> String {
    let given = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| {
        (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    });
    if let Some(id) = given {
        return id.to_owned();
    }
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u128() as u32);
    format!("{prefix:08x}{:012x}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Every request's id, access line and metrics: the request runs in a span that carries its id
/// (and, once its credentials are checked, its account), so every log line of it says which
/// request it belongs to; its answer carries the id in `X-Request-Id`; when it is answered, one
/// line at `info` gives the method, the route (the matched template, never the raw path, which
/// may hold numbers and ids), the status and the latency; and it is counted by route, method and
/// status, with its latency. Nothing of the body, no number and no secret is logged.
async fn access(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let id = request_id(req.headers());
    let route: String = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!("request", id = %id, account = tracing::field::Empty);
    let serve = tracing::Instrument::instrument(next.run(req), span.clone());
    let mut response = switchboard_core::request::scope(std::sync::Arc::from(id.as_str()), serve).await;
    let latency = started.elapsed();
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            target: "switchboard::access",
            method = %method,
            route = %route,
            status,
            latency_ms = latency.as_micros() as f64 / 1000.0,
            "answered"
        );
    });
    let labels = [("route", route), ("method", method), ("status", status.to_string())];
    metrics::counter!("switchboard_http_requests_total", &labels).increment(1);
    metrics::histogram!("switchboard_http_request_seconds", &labels).record(latency.as_secs_f64());
    response
}

/// The path with phone numbers (segments starting `+` or `%2B`) masked, for logs.
fn masked_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let digits = seg.strip_prefix('+').or_else(|| seg.strip_prefix("%2B")).or_else(|| seg.strip_prefix("%2b"));
            match digits {
                Some(d) if d.len() > 4 => format!("+***{}", &d[d.len() - 4..]),
                Some(_) => "+***".to_owned(),
                None => seg.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Which dialect a path belongs to, for errors raised before a handler runs.
fn error_for(path: &str, status: StatusCode, message: &str) -> Response {
    // Upstream callbacks are operator plumbing, answered in the admin shape.
    if path == "/console" || path.starts_with("/console/") {
        // The console's pages are HTML; its errors before a handler are plain text.
        (status, [("content-type", "text/plain; charset=utf-8")], message.to_owned()).into_response()
    } else if path.starts_with("/admin/") || path.starts_with("/upstreams/") {
        operator::ApiError::request(status, message.to_owned()).into_response()
    } else if path.starts_with("/workspaces/") {
        bird::ApiError::request(status, message.to_owned()).into_response()
    } else if path.starts_with("/api/messaging/") || path.starts_with("/api/auth/") {
        mudbase::ApiError::request(status, message.to_owned()).into_response()
    } else {
        textingline::ApiError::request(status, message.to_owned()).into_response()
    }
}

async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error_for(&path, StatusCode::REQUEST_TIMEOUT, "the request took too long"),
    }
}

async fn not_found(req: Request) -> Response {
    error_for(req.uri().path(), StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed(req: Request) -> Response {
    error_for(req.uri().path(), StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}

/// The answer to a panic in a handler, in the shape of the dialect of `path`.
fn internal_error_on(path: &str) -> Response {
    if ["/admin/", "/api/messaging/", "/workspaces/", "/upstreams/", "/console"].iter().any(|p| path.starts_with(p)) {
        error_for(path, StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    } else {
        textingline::ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 30500, "internal_error", "internal error")
            .into_response()
    }
}

/// Liveness: the process answers HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "Operations",
    responses((status = 200, description = "The server is up", body = Object, example = json!({"status": "ok"})))
)]
pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: whether this node can take and send messages now. Each check is named:
/// `database` (it answers within 2 s), `migrations` (its schema is this version's), `writer`
/// (a write is committed and durable within 5 s; on SQLite this passes the writer and sync
/// threads) and, on a node that dispatches, `dispatcher` (its tasks run). 503 names what failed.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "Operations",
    responses(
        (status = 200, description = "Every check passed", body = Object,
            example = json!({"status": "ready", "checks": {"database": "ok", "migrations": "ok", "writer": "ok", "dispatcher": "ok"}})),
        (status = 503, description = "A check failed; its value says what", body = Object,
            example = json!({"status": "not_ready", "checks": {"database": "ok", "migrations": "the schema is at version 8; this version needs 7", "writer": "ok", "dispatcher": "ok"}})),
    )
)]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let checks = state.core.readiness().await;
    let ready = checks.iter().all(|c| c.problem.is_none());
    let named: serde_json::Map<String, serde_json::Value> =
        checks.into_iter().map(|c| (c.name.to_owned(), c.problem.unwrap_or_else(|| "ok".to_owned()).into())).collect();
    let body = serde_json::json!({"status": if ready { "ready" } else { "not_ready" }, "checks": named});
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "Operations",
    responses(
        (status = 200, description = "Every metric, in Prometheus' text format", body = String, content_type = "text/plain"),
        (status = 401, description = "`metrics_token` is set and the request does not carry it", body = String, content_type = "text/plain"),
        (status = 404, description = "Metrics are not enabled in this process", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled").into_response();
    };
    if let Some(token) = &state.metrics_token {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, t)| t.trim());
        if !bool::from(subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), token.expose().as_bytes())) {
            return (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer")], "the metrics need their bearer token")
                .into_response();
        }
    }
    // Upstream state and the backlog are read when they are scraped, not kept up to date on
    // every send.
    for u in state.core.upstreams() {
        let name = u.name.clone();
        metrics::gauge!("switchboard_upstream_connected", "upstream" => name.clone())
            .set(f64::from(u8::from(u.connected)));
        metrics::gauge!("switchboard_upstream_in_flight", "upstream" => name.clone()).set(u.in_flight as f64);
        metrics::gauge!("switchboard_upstream_window", "upstream" => name.clone()).set(u.window as f64);
        metrics::counter!("switchboard_upstream_sent_total", "upstream" => name.clone()).absolute(u.sent);
        metrics::counter!("switchboard_upstream_failed_total", "upstream" => name.clone()).absolute(u.failed);
        metrics::counter!("switchboard_upstream_throttled_total", "upstream" => name.clone()).absolute(u.throttled);
        // 0 when the upstream is not limited.
        metrics::gauge!("switchboard_upstream_rate_per_second", "upstream" => name)
            .set(u.rate_per_second.unwrap_or(0.0));
    }
    // The SMPP server's binds on this node, by mode, and the requests waiting in their windows.
    let binds = state.core.smpp_binds().list();
    use switchboard_core::smpp::BindMode;
    for mode in [BindMode::Transmitter, BindMode::Receiver, BindMode::Transceiver] {
        let n = binds.iter().filter(|b| b.mode == mode).count();
        metrics::gauge!("switchboard_smpp_binds", "mode" => mode.as_str()).set(n as f64);
    }
    let in_window: u64 = binds.iter().map(|b| u64::from(b.in_window.load(std::sync::atomic::Ordering::Relaxed))).sum();
    metrics::gauge!("switchboard_smpp_window_in_use").set(in_window as f64);
    match state.core.smpp_backlog().await {
        Ok(n) => metrics::gauge!("switchboard_smpp_deliveries_waiting").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "reading the SMPP queue for the metrics failed"),
    }
    match state.core.backlog().await {
        Ok(b) => {
            metrics::gauge!("switchboard_messages_queued").set(b.queued as f64);
            metrics::gauge!("switchboard_messages_scheduled").set(b.scheduled as f64);
            metrics::gauge!("switchboard_webhook_deliveries_due").set(b.deliveries_due as f64);
            metrics::gauge!("switchboard_receipts_awaited").set(b.receipts_awaited as f64);
        }
        // The other metrics are still worth serving; the gauges keep their last values.
        Err(e) => tracing::warn!(error = %e, "reading the backlog for the metrics failed"),
    }
    ([("content-type", "text/plain; version=0.0.4")], handle.render()).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        panic!("a handler fault")
    }

    async fn panic_answer(path: &'static str, layer_for: &'static str) -> (StatusCode, serde_json::Value) {
        let app: Router =
            Router::new().route(path, get(boom)).layer(CatchPanicLayer::custom(move |_| internal_error_on(layer_for)));
        let response = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_panic_is_answered_in_the_dialect_of_its_route() {
        let (status, body) = panic_answer("/api/messaging/x", "/api/messaging/").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!((body["success"].clone(), body["error"]["code"].clone()), (false.into(), "INTERNAL_ERROR".into()));
        let (_, body) = panic_answer("/admin/v1/x", "/admin/").await;
        assert!(body["error"]["code"].is_string() && body.get("success").is_none(), "{body}");
        let (_, body) = panic_answer("/api/v1/x", "/").await;
        assert_eq!(body["error"]["code"], 30500);
    }

    #[test]
    fn phone_numbers_are_masked_in_logged_paths() {
        let p = super::masked_path("/admin/v1/accounts/abc/opt-outs/+18005559876/%2B18005551234");
        assert_eq!(p, "/admin/v1/accounts/abc/opt-outs/+***9876/+***1234");
        assert!(!p.contains("800555"));
    }
}
