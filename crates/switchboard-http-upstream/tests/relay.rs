//! The HTTP upstream against a small server that answers as a TextingLine endpoint would, and
//! its webhook callbacks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use switchboard_domain::wire::webhooks::{EventMessage, WebhookEvent};
use switchboard_domain::wire::{TlMessage, TlStatus};
use switchboard_domain::{
    AccountId, Direction, Encoding, ErrorType, EventId, EventType, MessageId, MessageKind, MessageStatus, Msisdn,
    SenderId, Timestamp,
};
use switchboard_http_upstream::{CallbackError, HttpUpstream, HttpUpstreamConfig};
use switchboard_provider::{OutboundMessage, Provider, ProviderEvent, ReceiptStatus, event_channel};
use switchboard_signing::Secret;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

/// Recipients with canned answers.
const SENT: &str = "+15550000001";
const FAILED_OPTED_OUT: &str = "+15550000002";
const SENDER_NOT_ASSIGNED: &str = "+15550000003";
const TOO_MANY: &str = "+15550000004";
const SERVER_ERROR: &str = "+15550000005";
const SLOW: &str = "+15550000006";
const UNAUTHORIZED: &str = "+15550000007";
const NO_CREDITS: &str = "+15550000008";
const QUEUED: &str = "+15550000009";
const COMPLIANCE: &str = "+15550000010";

/// What the fake server saw and how it answers its health check.
#[derive(Default)]
struct Fake {
    /// Each send: its Authorization header and its body.
    requests: Mutex<Vec<(Option<String>, Value)>>,
    /// The ids it gave the messages it took.
    ids: Mutex<Vec<MessageId>>,
    /// Whether `/healthz` answers 200 (else 503).
    sick: AtomicBool,
}

fn tl_message(to: &str, status: TlStatus, error: Option<(ErrorType, &str)>) -> TlMessage {
    TlMessage {
        id: MessageId::new(),
        direction: Direction::Outbound,
        to: to.into(),
        from: "+18005550000".into(),
        body: Some("hi".into()),
        media_url: None,
        status,
        error_type: error.map(|e| e.0),
        error_message: error.map(|e| e.1.to_owned()),
        sent_at: None,
        created_at: Timestamp::now(),
    }
}

fn tl_error(status: StatusCode, code: u32, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "type": kind, "message": message, "status": status.as_u16()}});
    (status, Json(body)).into_response()
}

async fn send(State(fake): State<Arc<Fake>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    fake.requests.lock().unwrap().push((auth, body));
    let taken = |status| {
        let m = tl_message(&to, status, None);
        fake.ids.lock().unwrap().push(m.id);
        (StatusCode::CREATED, Json(m)).into_response()
    };
    match to.as_str() {
        SENT => taken(TlStatus::Sent),
        QUEUED => taken(TlStatus::Queued),
        FAILED_OPTED_OUT => {
            let m = tl_message(&to, TlStatus::Failed, Some((ErrorType::OptedOut, "The recipient opted out.")));
            (StatusCode::CREATED, Json(m)).into_response()
        }
        SENDER_NOT_ASSIGNED => tl_error(
            StatusCode::BAD_REQUEST,
            33004,
            "sender_not_assigned",
            "The from number is not assigned to your account",
        ),
        COMPLIANCE => {
            tl_error(StatusCode::BAD_REQUEST, 33019, "compliance_violation", "Message violates compliance rules")
        }
        TOO_MANY => tl_error(StatusCode::TOO_MANY_REQUESTS, 30429, "too_many_requests", "slow down"),
        SERVER_ERROR => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        SLOW => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            taken(TlStatus::Sent)
        }
        UNAUTHORIZED => tl_error(StatusCode::UNAUTHORIZED, 30401, "unauthorized", "missing or invalid credentials"),
        NO_CREDITS => tl_error(StatusCode::PAYMENT_REQUIRED, 33023, "insufficient_credits", "Insufficient credits"),
        _ => taken(TlStatus::Sent),
    }
}

async fn healthz(State(fake): State<Arc<Fake>>) -> StatusCode {
    if fake.sick.load(Ordering::SeqCst) { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
}

/// Serves the fake on `listener`.
fn serve(listener: TcpListener) -> Arc<Fake> {
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route("/api/v1/messaging/message", post(send))
        .route("/healthz", get(healthz))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    fake
}

async fn start() -> (SocketAddr, Arc<Fake>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve(listener))
}

fn config(addr: SocketAddr, secret: &Secret) -> HttpUpstreamConfig {
    HttpUpstreamConfig {
        timeout_ms: 500,
        health_interval_ms: 50,
        ..HttpUpstreamConfig::new("peer", format!("http://{addr}/"), "key_1", "s3cret-key", secret.expose())
    }
}

/// The upstream, with the events it reports, each acknowledged as stored as it is read (as the
/// core does after its commit).
fn upstream(addr: SocketAddr) -> (Arc<HttpUpstream>, UnboundedReceiver<ProviderEvent>, Secret) {
    let secret = Secret::generate();
    let (sink, mut reports) = event_channel();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(report) = reports.recv().await {
            let _ = tx.send(report.event);
            report.ack.stored();
        }
    });
    (HttpUpstream::new(config(addr, &secret), sink).unwrap(), rx, secret)
}

fn msg(to: &str) -> OutboundMessage {
    OutboundMessage {
        id: MessageId::new(),
        account_id: AccountId::new(),
        to: Msisdn::parse(to).unwrap(),
        from: SenderId::parse("+18005550000").unwrap(),
        kind: MessageKind::Sms,
        body: Some("hello".into()),
        media: Vec::new(),
        encoding: Encoding::Gsm7,
        segments: 1,
        attempt: 1,
        sent_parts: Vec::new(),
    }
}

#[tokio::test]
async fn a_taken_message_keeps_their_id_and_sends_ours_as_the_key() {
    let (addr, fake) = start().await;
    let (up, _rx, _) = upstream(addr);
    let mut m = msg(SENT);
    m.media = vec!["https://example.com/a.png".into(), "https://example.com/b.png".into()];
    let submission = up.send(&m).await.unwrap();
    assert_eq!(submission.provider_message_id, fake.ids.lock().unwrap()[0].to_string());
    assert!(submission.provider_message_id.starts_with("msg_"));
    assert!(submission.parts.is_empty());

    let (auth, body) = fake.requests.lock().unwrap()[0].clone();
    let expected = base64::engine::general_purpose::STANDARD.encode("key_1:s3cret-key");
    assert_eq!(auth.as_deref(), Some(format!("Basic {expected}").as_str()));
    assert_eq!(
        body,
        json!({
            "to": SENT,
            "from": "+18005550000",
            "body": "hello",
            "mediaUrl": "https://example.com/a.png",
            "idempotencyKey": m.id.to_string(),
        })
    );

    let queued = up.send(&msg(QUEUED)).await.unwrap();
    assert_eq!(queued.provider_message_id, fake.ids.lock().unwrap()[1].to_string());

    // An alphanumeric sender goes as it is.
    let named = OutboundMessage { from: SenderId::parse("ACME Bank").unwrap(), ..msg(SENT) };
    up.send(&named).await.unwrap();
    assert_eq!(fake.requests.lock().unwrap()[2].1["from"], json!("ACME Bank"));

    let status = &up.status()[0];
    assert_eq!((status.name.as_str(), status.kind.as_str()), ("peer", "http"));
    assert_eq!((status.connected, status.sent, status.failed, status.in_flight, status.window), (true, 3, 0, 0, 0));
}

#[tokio::test]
async fn answers_map_to_errors() {
    let (addr, _fake) = start().await;
    let (up, _rx, _) = upstream(addr);

    let e = up.send(&msg(FAILED_OPTED_OUT)).await.unwrap_err();
    assert_eq!((e.error_type, e.retryable), (ErrorType::OptedOut, false));
    assert_eq!(e.message, "The recipient opted out.");

    let e = up.send(&msg(SENDER_NOT_ASSIGNED)).await.unwrap_err();
    assert_eq!((e.error_type, e.retryable), (ErrorType::InvalidSender, false));
    assert!(e.message.contains("33004"), "{e}");

    let e = up.send(&msg(COMPLIANCE)).await.unwrap_err();
    assert_eq!((e.error_type, e.retryable), (ErrorType::InvalidContent, false));
    assert!(e.message.contains("33019"), "{e}");

    for to in [TOO_MANY, SERVER_ERROR] {
        let e = up.send(&msg(to)).await.unwrap_err();
        assert!(e.retryable && !e.unavailable, "{to}: {e}");
    }

    let e = up.send(&msg(UNAUTHORIZED)).await.unwrap_err();
    assert!(e.unavailable, "{e}");
    assert!(e.message.contains("key_id and key_secret"), "{e}");

    let e = up.send(&msg(NO_CREDITS)).await.unwrap_err();
    assert!(e.unavailable, "{e}");
    assert!(e.message.contains("33023"), "{e}");

    let status = &up.status()[0];
    assert_eq!((status.sent, status.failed, status.connected), (0, 7, true));
    assert!(status.detail.as_deref().unwrap().contains("33023"));
    // No secret ever shows.
    assert!(!format!("{up:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_slow_answer_is_unavailable_and_counts_toward_unhealthy() {
    let (addr, fake) = start().await;
    let (up, _rx, _) = upstream(addr);
    let started = std::time::Instant::now();
    let e = up.send(&msg(SLOW)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(e.unavailable, "{e}");
    assert!(e.message.contains("did not answer in time"), "{e}");
    // Three in a row (the default) make it unhealthy.
    assert!(up.status()[0].connected);
    up.send(&msg(SLOW)).await.unwrap_err();
    assert!(up.is_healthy());
    fake.sick.store(true, Ordering::SeqCst);
    up.send(&msg(SLOW)).await.unwrap_err();
    assert!(!up.is_healthy());
    assert!(!up.status()[0].connected);
    // While unhealthy, sends are refused without a request.
    let before = fake.requests.lock().unwrap().len();
    let e = up.send(&msg(SENT)).await.unwrap_err();
    assert!(e.unavailable && e.message.contains("health check"), "{e}");
    assert_eq!(fake.requests.lock().unwrap().len(), before);
    // Its health check fails for a while, then passes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!up.is_healthy());
    assert!(up.status()[0].detail.as_deref().unwrap().contains("HTTP 503"), "{:?}", up.status()[0].detail);
    fake.sick.store(false, Ordering::SeqCst);
    wait_healthy(&up).await;
    up.send(&msg(SENT)).await.unwrap();
}

async fn wait_healthy(up: &HttpUpstream) {
    for _ in 0..100 {
        if up.is_healthy() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the upstream did not become healthy again");
}

#[tokio::test]
async fn unhealthy_after_connection_failures_and_back_when_it_answers() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let secret = Secret::generate();
    let (sink, mut reports) = event_channel();
    let config = HttpUpstreamConfig { unhealthy_after: 2, ..config(addr, &secret) };
    let up = HttpUpstream::new(config, sink).unwrap();

    let e = up.send(&msg(SENT)).await.unwrap_err();
    assert!(e.unavailable && e.message.contains("could not be reached"), "{e}");
    assert!(up.status()[0].connected);
    up.send(&msg(SENT)).await.unwrap_err();
    let status = &up.status()[0];
    assert!(!status.connected);
    assert_eq!(status.failed, 2);

    // The server comes up (its health check failing at first).
    let fake = serve(TcpListener::bind(addr).await.unwrap());
    fake.sick.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!up.is_healthy());
    fake.sick.store(false, Ordering::SeqCst);
    wait_healthy(&up).await;
    assert!(up.status()[0].connected);
    // It says so, so that the messages that found it unreachable go now.
    let ready = tokio::time::timeout(Duration::from_secs(5), reports.recv()).await.unwrap().unwrap();
    assert_eq!(ready.event, ProviderEvent::Ready { upstream: "peer".into() });
    up.send(&msg(SENT)).await.unwrap();
    assert_eq!(up.status()[0].sent, 1);
}

#[test]
fn config_reads_with_defaults_and_hides_secrets() {
    let secret = Secret::generate();
    let text = json!({
        "name": "peer",
        "base_url": "https://sms.example.com",
        "key_id": "key_1",
        "key_secret": "s3cret-key",
        "webhook_secret": secret.expose(),
    });
    let config: HttpUpstreamConfig = serde_json::from_value(text).unwrap();
    assert_eq!((config.timeout_ms, config.unhealthy_after, config.health_interval_ms), (10_000, 3, 5_000));
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret") && !shown.contains(&secret.expose()), "{shown}");
    assert!(shown.contains("key_1"));
}

#[tokio::test]
async fn bad_settings_are_refused() {
    let secret = Secret::generate();
    let good = HttpUpstreamConfig::new("peer", "https://sms.example.com", "k", "s", secret.expose());
    let refused = |config: HttpUpstreamConfig| HttpUpstream::new(config, event_channel().0).unwrap_err().to_string();
    assert!(HttpUpstream::new(good.clone(), event_channel().0).is_ok());
    assert!(refused(HttpUpstreamConfig { base_url: "sms.example.com".into(), ..good.clone() }).contains("base_url"));
    assert!(refused(HttpUpstreamConfig { base_url: "ftp://example.com".into(), ..good.clone() }).contains("base_url"));
    assert!(refused(HttpUpstreamConfig { name: " ".into(), ..good.clone() }).contains("name"));
    assert!(refused(HttpUpstreamConfig { timeout_ms: 0, ..good.clone() }).contains("timeout_ms"));
    let e = refused(HttpUpstreamConfig { webhook_secret: "not-a-secret".into(), ..good });
    assert!(e.contains("webhook_secret") && !e.contains("not-a-secret"), "{e}");
}

// Callbacks.

fn event(kind: EventType, status: MessageStatus, error: Option<(ErrorType, &str)>) -> (WebhookEvent, Vec<u8>) {
    let event = WebhookEvent {
        id: EventId::new(),
        kind,
        created_at: Timestamp::from_millis(1_700_000_000_123),
        data: EventMessage {
            id: MessageId::new(),
            account_id: AccountId::new().as_uuid(),
            direction: Direction::Outbound,
            kind: MessageKind::Sms,
            to: "+18005551234".into(),
            from: "+18005550000".into(),
            body: Some("hi".into()),
            media_urls: Vec::new(),
            encoding: Encoding::Gsm7,
            segments: 1,
            status,
            error_type: error.map(|e| e.0),
            error_message: error.map(|e| e.1.to_owned()),
            provider_message_id: Some("sim-1".into()),
            created_at: Timestamp::from_millis(1_700_000_000_000),
            sent_at: None,
        },
    };
    let body = serde_json::to_vec(&event).unwrap();
    (event, body)
}

fn now_secs() -> i64 {
    Timestamp::now().millis() / 1000
}

fn signed(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in switchboard_signing::signing::headers(secret, id, timestamp, body) {
        headers.insert(name, value.parse().unwrap());
    }
    headers
}

/// An upstream that is never sent to, for callbacks.
fn callback_upstream() -> (Arc<HttpUpstream>, UnboundedReceiver<ProviderEvent>, Secret) {
    upstream("127.0.0.1:9".parse().unwrap())
}

#[tokio::test]
async fn each_outcome_becomes_a_receipt() {
    let (up, mut rx, secret) = callback_upstream();
    let cases = [
        (EventType::Delivered, MessageStatus::Delivered, None, ReceiptStatus::Delivered),
        (
            EventType::Undelivered,
            MessageStatus::Undelivered,
            Some((ErrorType::DestinationBlocked, "blocked by the carrier")),
            ReceiptStatus::Undelivered,
        ),
        (
            EventType::Failed,
            MessageStatus::Failed,
            Some((ErrorType::InvalidDestination, "not a mobile number")),
            ReceiptStatus::Failed,
        ),
    ];
    for (kind, status, error, expected) in cases {
        let (event, body) = event(kind, status, error);
        let headers = signed(&secret, &event.id.to_string(), now_secs(), &body);
        assert_eq!(up.handle_callback(&headers, &body).await, Ok(1), "{kind}");
        let Some(ProviderEvent::Receipt(receipt)) = rx.recv().await else { panic!("no receipt for {kind}") };
        assert_eq!(receipt.provider_ref, event.data.id.to_string());
        assert_eq!(receipt.status, expected);
        assert_eq!(receipt.error_type, error.map(|e| e.0));
        assert_eq!(receipt.description.as_deref(), error.map(|e| e.1));
        assert_eq!(receipt.at, event.created_at);
    }
}

#[tokio::test]
async fn other_events_are_accepted_and_ignored() {
    let (up, mut rx, secret) = callback_upstream();
    for (kind, status) in [
        (EventType::Accepted, MessageStatus::Accepted),
        (EventType::Sent, MessageStatus::Sent),
        (EventType::Inbound, MessageStatus::Received),
    ] {
        let (event, body) = event(kind, status, None);
        let headers = signed(&secret, &event.id.to_string(), now_secs(), &body);
        assert_eq!(up.handle_callback(&headers, &body).await, Ok(0), "{kind}");
    }
    // A type this server does not know yet.
    let body = br#"{"id": "evt_x", "type": "message.something_new", "data": {}}"#;
    assert_eq!(up.handle_callback(&signed(&secret, "evt_x", now_secs(), body), body).await, Ok(0));
    assert!(rx.try_recv().is_err());

    // Expired there: never sent within its validity, so it will not be delivered.
    let (event, body) = event(EventType::Expired, MessageStatus::Expired, None);
    let headers = signed(&secret, &event.id.to_string(), now_secs(), &body);
    assert_eq!(up.handle_callback(&headers, &body).await, Ok(1));
    match rx.try_recv() {
        Ok(ProviderEvent::Receipt(r)) => assert_eq!(r.status, ReceiptStatus::Undelivered),
        other => panic!("expected an undelivered receipt, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let (up, mut rx, secret) = callback_upstream();
    let (event, body) = event(EventType::Delivered, MessageStatus::Delivered, None);
    let id = event.id.to_string();

    // Another secret.
    let headers = signed(&Secret::generate(), &id, now_secs(), &body);
    assert_eq!(up.handle_callback(&headers, &body).await, Err(CallbackError::BadSignature));
    // A changed body.
    let headers = signed(&secret, &id, now_secs(), &body);
    let mut changed = body.clone();
    changed.extend_from_slice(b" ");
    assert_eq!(up.handle_callback(&headers, &changed).await, Err(CallbackError::BadSignature));
    // An old timestamp, and one from the future.
    for at in [now_secs() - 600, now_secs() + 600] {
        let headers = signed(&secret, &id, at, &body);
        assert_eq!(up.handle_callback(&headers, &body).await, Err(CallbackError::BadSignature));
    }
    // Missing or unreadable headers.
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut headers = signed(&secret, &id, now_secs(), &body);
        headers.remove(missing);
        assert_eq!(up.handle_callback(&headers, &body).await, Err(CallbackError::BadSignature), "{missing}");
    }
    let mut headers = signed(&secret, &id, now_secs(), &body);
    headers.insert("webhook-timestamp", "soon".parse().unwrap());
    assert_eq!(up.handle_callback(&headers, &body).await, Err(CallbackError::BadSignature));
    assert!(rx.try_recv().is_err());

    // Within five minutes is fine.
    let headers = signed(&secret, &id, now_secs() - 240, &body);
    assert_eq!(up.handle_callback(&headers, &body).await, Ok(1));
}

#[tokio::test]
async fn a_signed_body_that_is_not_an_event_is_refused() {
    let (up, mut rx, secret) = callback_upstream();
    for body in [&b"not json"[..], br#"{"type": "message.delivered"}"#, br#"{"data": {}}"#] {
        let headers = signed(&secret, "evt_1", now_secs(), body);
        let result = up.handle_callback(&headers, body).await;
        assert!(matches!(result, Err(CallbackError::BadBody(_))), "{result:?}");
    }
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn a_receipt_is_acknowledged_only_once_stored() {
    let secret = Secret::generate();
    let (sink, mut reports) = event_channel();
    let up = HttpUpstream::new(config("127.0.0.1:9".parse().unwrap(), &secret), sink).unwrap();
    let (event, body) = event(EventType::Delivered, MessageStatus::Delivered, None);
    let headers = signed(&secret, &event.id.to_string(), now_secs(), &body);

    // No answer before the core says it is stored.
    let waiting = tokio::spawn({
        let (up, headers, body) = (up.clone(), headers.clone(), body.clone());
        async move { up.handle_callback(&headers, &body).await }
    });
    let report = reports.recv().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "answered before the receipt was stored");
    report.ack.stored();
    assert_eq!(waiting.await.unwrap(), Ok(1));

    // Storage failed: not acknowledged, so that the other server sends it again.
    let waiting = tokio::spawn({
        let (up, headers, body) = (up.clone(), headers.clone(), body.clone());
        async move { up.handle_callback(&headers, &body).await }
    });
    reports.recv().await.unwrap().ack.not_stored();
    assert_eq!(waiting.await.unwrap(), Err(CallbackError::NotStored));

    // The server is stopping.
    drop(reports);
    assert_eq!(up.handle_callback(&headers, &body).await, Err(CallbackError::NotStored));
}
