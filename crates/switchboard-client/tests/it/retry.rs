//! When a send is tried again, under which key, after how long, and when it stops.

use std::time::Duration;

use switchboard_client::wire::TlSendRequest;
use switchboard_client::{
    BirdAuth, ClientError, Dialect, ErrorCode, MudbaseAuth, RetryPolicy, Switchboard, TextingLineClient, Uuid,
};

use crate::{MESSAGE, Scripted, Step, tl_error};

fn request(key: Option<&str>) -> TlSendRequest {
    TlSendRequest {
        to: "+18005551234".into(),
        from: "+18005559876".into(),
        body: Some("hi".into()),
        idempotency_key: key.map(str::to_owned),
        ..Default::default()
    }
}

/// A client whose waits are short.
fn client(url: &str, policy: RetryPolicy) -> TextingLineClient {
    TextingLineClient::new(url, "key_a", "sk_a").unwrap().with_retry(policy.base_delay(Duration::from_millis(10)))
}

fn created(replayed: bool) -> Step {
    let headers = if replayed { vec![("idempotent-replayed", "true".to_owned())] } else { vec![] };
    Step::Answer(201, headers, MESSAGE.into())
}

#[tokio::test]
async fn a_send_is_tried_again_under_one_generated_key() {
    let server = Scripted::start(vec![
        Step::Cut,
        Step::Answer(503, vec![], tl_error(30503, "service_unavailable", 503)),
        created(true),
    ])
    .await;
    let sent = client(&server.url, RetryPolicy::default()).send(&request(None)).await.unwrap();
    assert_eq!((sent.attempts, sent.replayed, sent.status.as_u16()), (3, true, 201));
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    let key = sent.idempotency_key.clone().expect("a generated key");
    assert!(Uuid::parse_str(&key).is_ok(), "{key}");
    for s in &seen {
        assert_eq!(s.line, "POST /api/v1/messaging/message HTTP/1.1");
        assert_eq!(s.json["idempotencyKey"], key.as_str(), "every attempt carries the same key");
        assert_eq!(s.json["to"], "+18005551234");
    }
    // Another call is another key.
    let again = client(&server.url, RetryPolicy::default()).send(&request(None)).await.unwrap();
    assert_ne!(again.idempotency_key, Some(key));
}

#[tokio::test]
async fn the_callers_key_is_kept_and_replays_are_reported() {
    let server = Scripted::start(vec![Step::Cut, created(true)]).await;
    let sent = client(&server.url, RetryPolicy::default()).send(&request(Some("order-42"))).await.unwrap();
    assert_eq!((sent.attempts, sent.replayed, sent.idempotency_key.as_deref()), (2, true, Some("order-42")));
    assert!(server.seen().iter().all(|s| s.json["idempotencyKey"] == "order-42"));
    // A first answer is not a replay.
    let fresh = Scripted::start(vec![created(false)]).await;
    let sent = client(&fresh.url, RetryPolicy::default()).send(&request(Some("order-43"))).await.unwrap();
    assert_eq!((sent.attempts, sent.replayed), (1, false));
}

#[tokio::test]
async fn retry_after_is_honoured_or_ends_the_send() {
    let throttled =
        || Step::Answer(429, vec![("retry-after", "1".to_owned())], tl_error(30429, "too_many_requests", 429));
    let server = Scripted::start(vec![throttled(), created(false)]).await;
    let sent = client(&server.url, RetryPolicy::default()).send(&request(None)).await.unwrap();
    assert_eq!(sent.attempts, 2);
    let seen = server.seen();
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}, not the second Retry-After asked for");

    // A wait longer than the policy's longest ends the send with the answer.
    let long = Step::Answer(503, vec![("retry-after", "120".to_owned())], tl_error(30503, "service_unavailable", 503));
    let server = Scripted::start(vec![long, created(false)]).await;
    let err = client(&server.url, RetryPolicy::default()).send(&request(None)).await.unwrap_err();
    assert_eq!((err.status().map(|s| s.as_u16()), err.retry_after()), (Some(503), Some(Duration::from_secs(120))));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_timeout_is_tried_again() {
    let server = Scripted::start(vec![Step::Stall(Duration::from_secs(3)), created(true)]).await;
    let policy = RetryPolicy::default().base_delay(Duration::from_millis(10));
    let client = Switchboard::builder(&server.url)
        .timeout(Duration::from_millis(300))
        .retry(policy)
        .build()
        .unwrap()
        .textingline("key_a", "sk_a");
    let sent = client.send(&request(None)).await.unwrap();
    assert_eq!((sent.attempts, sent.replayed), (2, true));
}

#[tokio::test]
async fn attempts_are_bounded_and_the_last_error_returned() {
    let unavailable = Step::Answer(503, vec![], tl_error(30503, "service_unavailable", 503));
    let server = Scripted::start(vec![unavailable]).await;
    let err = client(&server.url, RetryPolicy::default().max_attempts(4)).send(&request(None)).await.unwrap_err();
    assert_eq!(server.seen().len(), 4);
    let api = err.api().expect("an answer");
    assert_eq!(
        (api.status.as_u16(), api.code.clone(), api.kind.as_deref()),
        (503, Some(ErrorCode::Number(30503)), Some("service_unavailable"))
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn nothing_is_tried_again_without_a_key_or_after_a_final_answer() {
    // Key generation off and no key: one attempt, even after a cut connection.
    let server = Scripted::start(vec![Step::Cut, created(false)]).await;
    let err = client(&server.url, RetryPolicy::default().generate_keys(false)).send(&request(None)).await.unwrap_err();
    assert!(matches!(err, ClientError::Http(_)), "{err:?}");
    assert_eq!(server.seen().len(), 1);
    assert!(server.seen()[0].json.get("idempotencyKey").is_none());

    // No retries at all: no key is made up either.
    let server = Scripted::start(vec![created(false)]).await;
    let sent = client(&server.url, RetryPolicy::none()).send(&request(None)).await.unwrap();
    assert_eq!(sent.idempotency_key, None);

    // An answer that will not change is returned at once, typed.
    let server = Scripted::start(vec![Step::Answer(402, vec![], tl_error(33023, "insufficient_credits", 402))]).await;
    let err = client(&server.url, RetryPolicy::default()).send(&request(None)).await.unwrap_err();
    assert_eq!(server.seen().len(), 1);
    let ClientError::Api(api) = &err else { panic!("{err:?}") };
    assert_eq!((api.dialect, api.code.as_ref().and_then(ErrorCode::as_number)), (Dialect::TextingLine, Some(33023)));
    assert_eq!(api.kind.as_deref(), Some("insufficient_credits"));
    assert_eq!(
        err.to_string(),
        "TextingLine answered 402 Payment Required (33023 insufficient_credits): insufficient_credits"
    );
}

#[tokio::test]
async fn mudbase_and_bird_sends_are_tried_once() {
    let unavailable = r#"{"success":false,"error":{"code":"SERVICE_UNAVAILABLE","message":"try again"}}"#;
    let server = Scripted::start(vec![Step::Answer(503, vec![], unavailable.into()), created(false)]).await;
    let switchboard = Switchboard::new(&server.url).unwrap();
    let project = Uuid::from_u128(7);
    let mudbase = switchboard.mudbase(project, MudbaseAuth::ApiKey("key_a:sk_a".into()));
    let err = mudbase.send_sms(&["+18005551234"], "hi", None).await.unwrap_err();
    let api = err.api().unwrap();
    assert_eq!(
        (api.dialect, api.code.clone()),
        (Dialect::Mudbase, Some(ErrorCode::Name("SERVICE_UNAVAILABLE".into())))
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line, format!("POST /api/messaging/projects/{project}/messaging/sms HTTP/1.1"));
    assert_eq!(seen[0].header("x-api-key"), Some("key_a:sk_a"));

    let unavailable = r#"{"code":"ServiceUnavailable","message":"temporarily unavailable; try again"}"#;
    let server = Scripted::start(vec![Step::Answer(503, vec![], unavailable.into()), created(false)]).await;
    let bird = Switchboard::new(&server.url).unwrap().bird(project, BirdAuth::AccessKey("key_a:sk_a".into()));
    let channel = Uuid::from_u128(9);
    let err = bird.send_text(channel, "+31612345678", "hi").await.unwrap_err();
    assert_eq!(err.code().and_then(ErrorCode::as_name), Some("ServiceUnavailable"));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line, format!("POST /workspaces/{project}/channels/{channel}/messages HTTP/1.1"));
    assert_eq!(seen[0].header("authorization"), Some("AccessKey key_a:sk_a"));
    assert_eq!(seen[0].json["receiver"]["contacts"][0]["identifierValue"], "+31612345678");
    assert_eq!(seen[0].json["body"], serde_json::json!({"type": "text", "text": {"text": "hi"}}));
}
