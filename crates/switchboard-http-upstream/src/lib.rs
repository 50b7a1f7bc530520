//! An upstream that relays messages to another Switchboard server.
//!
//! [`HttpUpstream`] is a [`Provider`] that hands each message to another Switchboard (or any
//! server speaking the TextingLine dialect) with `POST {base_url}/api/v1/messaging/message`,
//! authenticated with HTTP Basic. The message's own id goes along as the `idempotencyKey`, so
//! a relay that is tried again (after a timeout, say) never makes two messages there. The
//! other server's id for the message (`msg_…`) becomes this server's provider message id.
//!
//! The outcome comes back later through the other server's webhooks: the operator registers a
//! webhook endpoint there that points at this server's callback URL, and gives its `whsec_…`
//! secret here. [`HttpUpstream::handle_callback`] checks each request's Standard Webhooks
//! signature and turns `message.delivered`, `message.undelivered`, `message.failed` and `message.expired` into
//! delivery [`Receipt`]s on the [`EventSink`], and answers only once they are stored (so that
//! the other server's webhook worker sends again what could not be); other event types are
//! accepted and ignored.
//!
//! # How answers map
//!
//! | answer                                   | result                                          |
//! |------------------------------------------|-------------------------------------------------|
//! | 201, status `sent` or `queued`           | taken; the provider message id is their `id`    |
//! | 201, status `failed`                     | permanent, with their `errorType` and `errorMessage` |
//! | 400 / 403 / 409 with 33004 or 33009      | permanent `invalid_sender`                      |
//! | 400 / 403 / 409 with 33016 or 33019      | permanent `invalid_content`                     |
//! | 400 / 403 / 409 with another code, other 4xx | permanent `provider_error`                  |
//! | 401 (credentials refused)                | unavailable: the configuration must be fixed    |
//! | 402 (33023, no credits left there)       | unavailable until credits are added             |
//! | 3xx, 404, 405 (not a TextingLine API)    | unavailable: `base_url` must be fixed           |
//! | 408, 429, 5xx                            | retryable                                       |
//! | no connection, or no answer in time      | unavailable, and counts toward unhealthy        |
//!
//! The codes of refusals are kept in the error message.
//!
//! # Health
//!
//! After `unhealthy_after` connection failures in a row the upstream reports itself not
//! connected (so a router passes it over) and refuses sends at once as unavailable. Meanwhile
//! it probes `GET {base_url}/healthz` every `health_interval_ms`, and is healthy again (and says
//! so with `ProviderEvent::Ready`, so that the messages waiting for it go) as soon
//! as that answers 200. Any answer to a send, whatever its status, resets the count.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use switchboard_domain::wire::webhooks::WebhookEvent;
use switchboard_domain::wire::{TlErrorBody, TlMessage, TlSendRequest, TlStatus};
use switchboard_domain::{ErrorType, Timestamp};
use switchboard_provider::{
    EventSink, NotStored, OutboundMessage, Provider, ProviderError, ProviderEvent, Receipt, ReceiptStatus, Stored,
    Submission, UpstreamStatus, async_trait,
};
use switchboard_signing::signing::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use switchboard_signing::{Secret, SecretError};

/// How far a callback's signature timestamp may be from now, in seconds.
pub const CALLBACK_TOLERANCE_SECS: i64 = 300;

/// The path of the send endpoint, after `base_url`.
const SEND_PATH: &str = "/api/v1/messaging/message";
/// The path of the health check, after `base_url`.
const HEALTH_PATH: &str = "/healthz";
/// The shortest pause between health probes.
const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(10);

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_unhealthy_after() -> u32 {
    3
}

fn default_health_interval_ms() -> u64 {
    5_000
}

/// Settings of one HTTP upstream. Its `Debug` form hides both secrets.
#[derive(Clone, Deserialize)]
pub struct HttpUpstreamConfig {
    /// Its name, for the router, logs and status.
    pub name: String,
    /// The other server's base URL, such as `https://sms.example.com`.
    pub base_url: String,
    /// The API key id there (the Basic user name).
    pub key_id: String,
    /// The API key secret there (the Basic password).
    pub key_secret: String,
    /// How long one request may take, in milliseconds (default 10000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The `whsec_…` secret of the webhook endpoint registered on the other server that points
    /// at this server's callback URL.
    pub webhook_secret: String,
    /// Connection failures in a row after which it reports itself not connected (default 3).
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
    /// While unhealthy, how often `GET {base_url}/healthz` is tried, in milliseconds (default
    /// 5000).
    #[serde(default = "default_health_interval_ms")]
    pub health_interval_ms: u64,
}

impl HttpUpstreamConfig {
    /// Settings with the default timeout, threshold and probe interval.
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        key_id: impl Into<String>,
        key_secret: impl Into<String>,
        webhook_secret: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            key_id: key_id.into(),
            key_secret: key_secret.into(),
            timeout_ms: default_timeout_ms(),
            webhook_secret: webhook_secret.into(),
            unhealthy_after: default_unhealthy_after(),
            health_interval_ms: default_health_interval_ms(),
        }
    }
}

impl fmt::Debug for HttpUpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpUpstreamConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("key_id", &self.key_id)
            .field("key_secret", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .field("webhook_secret", &"<redacted>")
            .field("unhealthy_after", &self.unhealthy_after)
            .field("health_interval_ms", &self.health_interval_ms)
            .finish()
    }
}

/// Why an HTTP upstream could not be set up. Never includes a secret.
#[derive(Debug, thiserror::Error)]
pub enum HttpUpstreamError {
    /// A setting is out of bounds.
    #[error("HTTP upstream `{name}`: {message}")]
    Config {
        /// The upstream's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// `webhook_secret` is not a `whsec_…` secret.
    #[error("HTTP upstream `{name}`: webhook_secret: {source}")]
    WebhookSecret {
        /// The upstream's name.
        name: String,
        /// Why it is not a secret.
        source: SecretError,
    },
    /// The HTTP client could not be built (its TLS backend, for one).
    #[error("HTTP upstream `{name}`: cannot set up the HTTP client: {message}")]
    Client {
        /// The upstream's name.
        name: String,
        /// The client's error.
        message: String,
    },
}

/// Why a webhook callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The signature headers are missing or wrong, or the timestamp is not within five
    /// minutes of now (answer 401).
    #[error("missing or invalid webhook signature")]
    BadSignature,
    /// The signed body is not a webhook event (answer 400).
    #[error("not a webhook event: {0}")]
    BadBody(String),
    /// The receipt could not be stored now (storage failed, or the server is stopping): answer
    /// 503, so that the other server sends the event again.
    #[error("the receipt could not be stored")]
    NotStored,
}

/// How the upstream stands.
#[derive(Debug, Default)]
struct Health {
    /// Connection failures in a row.
    failures: u32,
    /// Reports not connected; a probe is running.
    unhealthy: bool,
    /// The last error, for the status.
    last_error: Option<String>,
}

/// A provider that relays messages to another Switchboard server; see the [crate
/// documentation](crate).
pub struct HttpUpstream {
    name: String,
    send_url: String,
    health_url: String,
    key_id: String,
    key_secret: String,
    webhook_secret: Secret,
    unhealthy_after: u32,
    health_interval: Duration,
    client: reqwest::Client,
    events: EventSink,
    health: Mutex<Health>,
    in_flight: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    this: Weak<HttpUpstream>,
}

impl fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("name", &self.name)
            .field("send_url", &self.send_url)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Counts a send as in flight while it lives.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HttpUpstream {
    /// An upstream with these settings that sends its receipts to `events`.
    pub fn new(config: HttpUpstreamConfig, events: EventSink) -> Result<Arc<Self>, HttpUpstreamError> {
        let name = config.name.trim().to_owned();
        let bad = |message: String| HttpUpstreamError::Config { name: name.clone(), message };
        if name.is_empty() {
            return Err(bad("name must not be empty".into()));
        }
        let url = reqwest::Url::parse(config.base_url.trim())
            .map_err(|e| bad(format!("base_url `{}` is not a URL: {e}", config.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || url.query().is_some() {
            return Err(bad(format!("base_url `{}` must be an http(s) URL without a query", config.base_url)));
        }
        if config.timeout_ms == 0 {
            return Err(bad("timeout_ms must be at least 1".into()));
        }
        let webhook_secret = Secret::parse(config.webhook_secret.trim())
            .map_err(|source| HttpUpstreamError::WebhookSecret { name: name.clone(), source })?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpUpstreamError::Client { name: name.clone(), message: e.to_string() })?;
        let base = url.as_str().trim_end_matches('/').to_owned();
        Ok(Arc::new_cyclic(|this| HttpUpstream {
            send_url: format!("{base}{SEND_PATH}"),
            health_url: format!("{base}{HEALTH_PATH}"),
            name,
            key_id: config.key_id,
            key_secret: config.key_secret,
            webhook_secret,
            unhealthy_after: config.unhealthy_after.max(1),
            health_interval: Duration::from_millis(config.health_interval_ms).max(MIN_HEALTH_INTERVAL),
            client,
            events,
            health: Mutex::default(),
            in_flight: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            this: this.clone(),
        }))
    }

    /// Whether it passes its health checks (it has not failed to connect `unhealthy_after`
    /// times in a row, or has answered its health check since).
    pub fn is_healthy(&self) -> bool {
        !self.health().unhealthy
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes an answer: the other server is reachable.
    fn reachable(&self) {
        self.health().failures = 0;
    }

    /// Notes a connection failure, and turns unhealthy (starting the probe) after enough.
    fn unreachable(&self, error: &str) {
        let mut health = self.health();
        health.failures = health.failures.saturating_add(1);
        health.last_error = Some(error.to_owned());
        if health.unhealthy || health.failures < self.unhealthy_after {
            return;
        }
        health.unhealthy = true;
        drop(health);
        tracing::warn!(upstream = %self.name, error, "HTTP upstream is unreachable; probing its health check");
        tokio::spawn(probe(self.this.clone(), self.health_interval));
    }

    /// One relay of a message, and what its answer means.
    async fn relay(&self, message: &OutboundMessage) -> Result<Submission, ProviderError> {
        if message.media.len() > 1 {
            tracing::warn!(
                upstream = %self.name,
                message_id = %message.id,
                media = message.media.len(),
                "TextingLine takes one media URL; relaying the first only"
            );
        }
        let request = TlSendRequest {
            to: message.to.as_str().to_owned(),
            from: message.from.as_str().to_owned(),
            body: message.body.clone(),
            media_url: message.media.first().cloned(),
            idempotency_key: Some(message.id.to_string()),
        };
        let sent = self
            .client
            .post(&self.send_url)
            .basic_auth(&self.key_id, Some(&self.key_secret))
            .json(&request)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                let what = if e.is_timeout() { "did not answer in time" } else { "could not be reached" };
                let text = format!("{} {what}: {}", self.name, error_chain(&e));
                self.unreachable(&text);
                return Err(ProviderError::unavailable(text));
            }
        };
        self.reachable();
        let status = response.status();
        match response.bytes().await {
            Ok(body) => answer(&self.name, status, &body),
            Err(e) => Err(ProviderError::retryable(
                ErrorType::ProviderError,
                format!(
                    "{} answered HTTP {} but its body could not be read: {}",
                    self.name,
                    status.as_u16(),
                    error_chain(&e)
                ),
            )),
        }
    }

    /// Checks a webhook callback's signature and reports a delivery receipt for each delivery
    /// outcome it reports, waiting until it is stored; returns how many receipts were stored.
    ///
    /// The signature must be a Standard Webhooks signature with `webhook_secret`, made within
    /// five minutes of now. `message.delivered`, `message.undelivered`, `message.failed` and
    /// `message.expired` become receipts for the part known by the event's message id (the
    /// other server's `msg_…` id, which is this server's provider message id); other event
    /// types are accepted and ignored. A receipt that could not be stored (storage failed, or
    /// the event sink is closed because the server is stopping) is [`CallbackError::NotStored`],
    /// so that the callback is not acknowledged and the other server sends it again.
    pub async fn handle_callback(&self, headers: &HeaderMap, body: &[u8]) -> Result<usize, CallbackError> {
        self.check_signature(headers, body, Timestamp::now().millis().div_euclid(1000))?;
        let Some(receipt) = receipt_of(body)? else {
            return Ok(0);
        };
        let Ok(acknowledgement) = self.events.report(ProviderEvent::Receipt(receipt)) else {
            tracing::warn!(upstream = %self.name, "the event sink is closed; a delivery receipt is not acknowledged");
            return Err(CallbackError::NotStored);
        };
        match acknowledgement.wait().await {
            Ok(Stored::Stored) => Ok(1),
            Ok(Stored::Refused) => Ok(0),
            Err(NotStored) => Err(CallbackError::NotStored),
        }
    }

    fn check_signature(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), CallbackError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let (Some(id), Some(timestamp), Some(signature)) =
            (header(ID_HEADER), header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER))
        else {
            return Err(CallbackError::BadSignature);
        };
        let timestamp: i64 = timestamp.parse().map_err(|_| CallbackError::BadSignature)?;
        let valid = switchboard_signing::verify(
            &self.webhook_secret,
            id,
            timestamp,
            body,
            signature,
            now,
            CALLBACK_TOLERANCE_SECS,
        );
        if valid { Ok(()) } else { Err(CallbackError::BadSignature) }
    }
}

/// Probes the health check until it answers 200 or the upstream is dropped.
async fn probe(upstream: Weak<HttpUpstream>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(upstream) = upstream.upgrade() else { return };
        let error = match upstream.client.get(&upstream.health_url).send().await {
            Ok(response) if response.status() == StatusCode::OK => {
                let mut health = upstream.health();
                health.failures = 0;
                health.unhealthy = false;
                drop(health);
                tracing::info!(upstream = %upstream.name, "HTTP upstream answers its health check again");
                // Messages that found it unreachable may go now.
                let _ = upstream.events.send(ProviderEvent::Ready { upstream: upstream.name.clone() });
                return;
            }
            Ok(response) => format!("its health check answered HTTP {}", response.status().as_u16()),
            Err(e) => format!("its health check failed: {}", error_chain(&e)),
        };
        upstream.health().last_error = Some(format!("{} is unhealthy: {error}", upstream.name));
    }
}

/// An error and its sources, joined with `: ` (reqwest's own text leaves out the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

/// What an answer of the send endpoint means.
fn answer(name: &str, status: StatusCode, body: &[u8]) -> Result<Submission, ProviderError> {
    let code = status.as_u16();
    if status.is_success() {
        let Ok(message) = serde_json::from_slice::<TlMessage>(body) else {
            // It may have taken the message: a retry with the same idempotency key tells.
            return Err(ProviderError::retryable(
                ErrorType::ProviderError,
                format!("{name} answered HTTP {code} with a body that is not a TextingLine message"),
            ));
        };
        return match message.status {
            TlStatus::Sent | TlStatus::Queued => {
                Ok(Submission { provider_message_id: message.id.to_string(), parts: Vec::new() })
            }
            TlStatus::Failed => {
                let error_type = message.error_type.unwrap_or(ErrorType::Unknown);
                let text = message.error_message.unwrap_or_else(|| error_type.description().to_owned());
                Err(ProviderError::permanent_with(error_type, text))
            }
        };
    }
    let error = serde_json::from_slice::<TlErrorBody>(body).ok().map(|b| b.error);
    let detail = error.as_ref().map_or_else(String::new, |e| format!(": {} {}: {}", e.code, e.kind, e.message));
    match status {
        StatusCode::UNAUTHORIZED => Err(ProviderError::unavailable(format!(
            "{name} refused the credentials (HTTP 401{detail}); check its key_id and key_secret"
        ))),
        StatusCode::PAYMENT_REQUIRED => {
            Err(ProviderError::unavailable(format!("{name}: the account there is out of credits (HTTP 402{detail})")))
        }
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Err(ProviderError::unavailable(format!(
            "{name} has no TextingLine send endpoint (HTTP {code}{detail}); check its base_url"
        ))),
        s if s.is_redirection() => Err(ProviderError::unavailable(format!(
            "{name} redirects the send endpoint (HTTP {code}); check its base_url"
        ))),
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => Err(ProviderError::retryable(
            ErrorType::ProviderError,
            format!("{name} asks to try again later (HTTP {code}{detail})"),
        )),
        s if s.is_server_error() => {
            Err(ProviderError::retryable(ErrorType::ProviderError, format!("{name} failed (HTTP {code}{detail})")))
        }
        _ => {
            let error_type = match error.as_ref().map(|e| e.code) {
                Some(33004 | 33009) => ErrorType::InvalidSender,
                Some(33016 | 33019) => ErrorType::InvalidContent,
                _ => ErrorType::ProviderError,
            };
            Err(ProviderError::permanent_with(error_type, format!("{name} refused the message (HTTP {code}{detail})")))
        }
    }
}

/// The event type, read before the rest so that unknown types can be ignored.
#[derive(Deserialize)]
struct EventKind {
    #[serde(rename = "type")]
    kind: String,
}

/// The receipt a callback body reports, if it reports a delivery outcome.
fn receipt_of(body: &[u8]) -> Result<Option<Receipt>, CallbackError> {
    let bad = |e: serde_json::Error| CallbackError::BadBody(e.to_string());
    let kind: EventKind = serde_json::from_slice(body).map_err(bad)?;
    let status = match kind.kind.as_str() {
        "message.delivered" => ReceiptStatus::Delivered,
        "message.undelivered" => ReceiptStatus::Undelivered,
        "message.failed" => ReceiptStatus::Failed,
        // Accepted there but never sent within its validity: it will not be delivered.
        "message.expired" => ReceiptStatus::Undelivered,
        _ => return Ok(None),
    };
    let event: WebhookEvent = serde_json::from_slice(body).map_err(bad)?;
    let failed = status != ReceiptStatus::Delivered;
    Ok(Some(Receipt {
        provider_ref: event.data.id.to_string(),
        status,
        error_type: if failed { event.data.error_type } else { None },
        description: if failed { event.data.error_message } else { None },
        at: event.created_at,
    }))
}

#[async_trait]
impl Provider for HttpUpstream {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Submission, ProviderError> {
        if !self.is_healthy() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let last = self.health().last_error.clone().unwrap_or_default();
            return Err(ProviderError::unavailable(format!(
                "{} is unhealthy; waiting for its health check to pass ({last})",
                self.name
            )));
        }
        let in_flight = InFlight::enter(&self.in_flight);
        let result = self.relay(message).await;
        drop(in_flight);
        match &result {
            Ok(_) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.health().last_error = Some(e.message.clone());
            }
        }
        result
    }

    fn status(&self) -> Vec<UpstreamStatus> {
        let health = self.health();
        vec![UpstreamStatus {
            name: self.name.clone(),
            kind: "http".into(),
            connected: !health.unhealthy,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            window: 0,
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            detail: health.last_error.clone(),
            ..UpstreamStatus::default()
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_body(status: u16, code: u32, kind: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "error": {"code": code, "type": kind, "message": "because", "status": status}
        }))
        .unwrap()
    }

    #[test]
    fn refusals_map_by_code() {
        for (status, code, error_type) in [
            (400, 33004, ErrorType::InvalidSender),
            (400, 33009, ErrorType::InvalidSender),
            (400, 33016, ErrorType::InvalidContent),
            (400, 33019, ErrorType::InvalidContent),
            (400, 30002, ErrorType::ProviderError),
            (403, 30403, ErrorType::ProviderError),
            (409, 30409, ErrorType::ProviderError),
            (413, 30413, ErrorType::ProviderError),
        ] {
            let e = answer("up", StatusCode::from_u16(status).unwrap(), &error_body(status, code, "x")).unwrap_err();
            assert_eq!((e.error_type, e.retryable), (error_type, false), "{status} {code}");
            assert!(e.message.contains(&code.to_string()), "{e}");
        }
        let e = answer("up", StatusCode::BAD_REQUEST, b"<html>").unwrap_err();
        assert_eq!((e.error_type, e.retryable), (ErrorType::ProviderError, false));
    }

    #[test]
    fn other_answers_map_by_status() {
        for (status, unavailable) in [(401, true), (402, true), (404, true), (405, true), (302, true)] {
            let e = answer("up", StatusCode::from_u16(status).unwrap(), b"").unwrap_err();
            assert_eq!((e.retryable, e.unavailable), (true, unavailable), "{status}");
        }
        for status in [408, 429, 500, 502, 503] {
            let e = answer("up", StatusCode::from_u16(status).unwrap(), b"").unwrap_err();
            assert!(e.retryable && !e.unavailable, "{status}");
        }
        let e = answer("up", StatusCode::CREATED, b"{}").unwrap_err();
        assert!(e.retryable && !e.unavailable);
    }

    #[test]
    fn error_chains_keep_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&e), "outer: inner");
    }
}
