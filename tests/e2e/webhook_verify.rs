//! Switchboard's webhook signatures against the reference Standard Webhooks library, Python's
//! `standardwebhooks` (pinned in the `TEST_PYTHON` environment that `cargo xtask ci` makes):
//! the library accepts what the server and `switchboard-signing` sign, the client's
//! [`Verifier`] accepts what the library signs, and both refuse a tampered body, a stale or
//! future timestamp and another secret's signature.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchboard_client::webhooks::{SignedHeaders, Verifier, VerifyError, WebhookEvent};
use switchboard_domain::wire::TlSendRequest;
use switchboard_domain::wire::webhooks::CreateWebhook;
use switchboard_signing::Secret;
use switchboard_signing::signing::{headers_all, sign};
use switchboard_tests::{Backend, Receiver, TestApp, TestDb, eventually};

/// The version `cargo xtask ci` pins.
const PINNED: &str = "1.3.0";
/// Ten minutes: outside both sides' tolerance of five.
const FAR: i64 = 600;

/// One request as a receiver gets it.
struct Sample {
    id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
}

impl Sample {
    fn signed(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> Self {
        let [_, _, (_, signature)] = headers_all(secrets, id, timestamp, body);
        Self { id: id.into(), timestamp, signature, body: body.to_vec() }
    }

    fn with_body(&self, body: &[u8]) -> Self {
        Self { id: self.id.clone(), timestamp: self.timestamp, signature: self.signature.clone(), body: body.to_vec() }
    }

    fn to_verify(&self, name: &str, secret: &str) -> Value {
        json!({"name": name, "secret": secret, "id": self.id, "timestamp": self.timestamp.to_string(),
               "signature": self.signature, "body": self.body})
    }

    fn verify_here(&self, verifier: &Verifier) -> Result<(), VerifyError> {
        let timestamp = self.timestamp.to_string();
        let headers = SignedHeaders { id: &self.id, timestamp: &timestamp, signature: &self.signature };
        verifier.verify(&headers, &self.body)
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Runs the library over the cases; returns its version, its verdicts and its signatures.
fn reference(python: &std::path::Path, cases: &Value) -> (String, BTreeMap<String, String>, BTreeMap<String, String>) {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/standard_webhooks.py");
    let mut child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    child.stdin.take().expect("stdin").write_all(cases.to_string().as_bytes()).expect("write the cases");
    let output = child.wait_with_output().expect("the library's answer");
    assert!(output.status.success(), "standard_webhooks.py failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let out: Value = serde_json::from_slice(&output.stdout).expect("JSON from standard_webhooks.py");
    let map = |v: &Value| -> BTreeMap<String, String> { serde_json::from_value(v.clone()).expect("a map of strings") };
    (out["version"].as_str().unwrap_or_default().to_owned(), map(&out["verified"]), map(&out["signed"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signatures_agree_with_the_standard_webhooks_library() {
    let Some(python) = switchboard_tests::test_python() else { return };
    let secret = Secret::generate();
    let text = secret.expose();
    let old = Secret::generate();

    // A delivery as the server signs and posts it.
    let db = TestDb::new(Backend::Sqlite, "webhook_verify").await.expect("a SQLite database");
    let app = TestApp::start(db.settings()).await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let t = app.provision(10, 0).await;
    let endpoint = CreateWebhook { url: receiver.url.clone(), secret: Some(text.clone()), ..Default::default() };
    app.admin.create_webhook(t.account, &endpoint).await.expect("a webhook endpoint");
    let send = TlSendRequest {
        to: "+18005551234".into(),
        from: t.from.clone(),
        body: Some("Grüße, your code is 482910".into()),
        ..Default::default()
    };
    t.client.send(&send).await.expect("a send");
    let delivered =
        eventually("a signed delivery", Duration::from_secs(20), || async { receiver.requests().into_iter().next() })
            .await;
    let event: WebhookEvent = serde_json::from_slice(&delivered.body).expect("a webhook event");
    assert_eq!(event.id.to_string(), delivered.id);
    let server = Sample {
        id: delivered.id.clone(),
        timestamp: delivered.timestamp.parse().expect("a numeric webhook-timestamp"),
        signature: delivered.signature.clone(),
        body: delivered.body.clone(),
    };
    app.stop().await;
    db.remove().await;

    let at = now();
    let json_body: &[u8] = br#"{"type":"message.delivered","data":{"id":"msg_DsAdb4EBYBh3z25sBA1qnv"}}"#;
    let utf8_body = "{\"body\":\"Grüße 👋 Δ\"}".as_bytes();
    let binary_body: &[u8] = &[0, 159, 146, 150, 255, 10];
    let ours = [
        ("server event", server.with_body(&server.body), true),
        ("server event, tampered", server.with_body(&[&server.body[..], b" "].concat()), false),
        ("json", Sample::signed(std::slice::from_ref(&secret), "evt_1", at, json_body), true),
        ("utf-8", Sample::signed(std::slice::from_ref(&secret), "evt_2", at, utf8_body), true),
        ("binary", Sample::signed(std::slice::from_ref(&secret), "evt_3", at, binary_body), true),
        ("rotation, two signatures", Sample::signed(&[old.clone(), secret.clone()], "evt_4", at, json_body), true),
        (
            "tampered",
            Sample::signed(std::slice::from_ref(&secret), "evt_5", at, json_body).with_body(&changed(json_body)),
            false,
        ),
        ("stale", Sample::signed(std::slice::from_ref(&secret), "evt_6", at - FAR, json_body), false),
        ("ahead", Sample::signed(std::slice::from_ref(&secret), "evt_7", at + FAR, json_body), false),
        ("another secret", Sample::signed(std::slice::from_ref(&old), "evt_8", at, json_body), false),
    ];
    let theirs = [
        ("json", at, json_body),
        ("utf-8", at, utf8_body),
        ("binary", at, binary_body),
        ("stale", at - FAR, json_body),
        ("ahead", at + FAR, json_body),
    ];
    let cases = json!({
        "verify": ours.iter().map(|(name, sample, _)| sample.to_verify(name, &text)).collect::<Vec<_>>(),
        "sign": theirs.iter().map(|(name, at, body)| json!({"name": name, "secret": text, "id": format!("msg_{name}"),
                                                           "timestamp": at.to_string(), "body": body})).collect::<Vec<_>>(),
    });
    let (version, verified, signed) = reference(&python, &cases);
    assert_eq!(version, PINNED, "the pinned standardwebhooks");

    // The library on what we signed; our verifier agrees on every one.
    let verifier = Verifier::new(secret.clone());
    for (name, sample, accepted) in &ours {
        let verdict = &verified[*name];
        if *accepted {
            assert_eq!(verdict, "ok", "{name}: the library refused what it should accept");
            assert_eq!(sample.verify_here(&verifier), Ok(()), "{name}");
        } else {
            assert_ne!(verdict, "ok", "{name}: the library accepted what it should refuse");
            assert!(sample.verify_here(&verifier).is_err(), "{name}: our verifier accepted it");
        }
    }
    assert!(verified["tampered"].contains("No matching signature"), "{}", verified["tampered"]);
    assert!(verified["stale"].contains("too old"), "{}", verified["stale"]);
    assert!(verified["ahead"].contains("too new"), "{}", verified["ahead"]);
    assert!(verified["another secret"].contains("No matching signature"), "{}", verified["another secret"]);

    // Ours on what the library signed: the same signatures as ours, accepted when recent.
    for (name, at, body) in &theirs {
        let signature = &signed[*name];
        assert_eq!(signature, &sign(&secret, &format!("msg_{name}"), *at, body), "{name}: the same signature");
        let sample =
            Sample { id: format!("msg_{name}"), timestamp: *at, signature: signature.clone(), body: body.to_vec() };
        let expected = match *name {
            "stale" => Err(VerifyError::TooOld),
            "ahead" => Err(VerifyError::TooNew),
            _ => Ok(()),
        };
        assert_eq!(sample.verify_here(&verifier), expected, "{name}");
        if expected.is_ok() {
            let tampered = sample.with_body(&[body, &b"x"[..]].concat());
            assert_eq!(tampered.verify_here(&verifier), Err(VerifyError::NoMatchingSignature), "{name}, tampered");
        }
    }
}

/// The body with its first digit changed.
fn changed(body: &[u8]) -> Vec<u8> {
    let mut changed = body.to_vec();
    let digit = changed.iter_mut().find(|b| b.is_ascii_digit()).expect("a body with a digit");
    *digit = if *digit == b'9' { b'0' } else { *digit + 1 };
    changed
}
