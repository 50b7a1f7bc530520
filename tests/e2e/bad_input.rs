//! Bad input gets a clear 4xx in the dialect's own shape: never a 500, never a partial write.

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard_tests::{Backend, OPERATOR_TOKEN, TestApp, TestDb, on_both_backends};

on_both_backends!(textingline_bad_input, admin_bad_input, other_charsets_are_refused_in_every_dialect);

async fn textingline_bad_input(backend: Backend) {
    let Some(db) = TestDb::new(backend, "textingline_bad_input").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(100, 10).await;
    let key = app.admin.create_key(t.account, None).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/messaging/message", app.url);
    let post = |body: String, content_type: &'static str| {
        http.post(&url)
            .basic_auth(&key.key.id, Some(&key.secret))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let ok = json!({"to": "+18005551234", "from": t.from, "body": "hi"});
    let with = |k: &str, v: Value| {
        let mut o = ok.clone();
        o[k] = v;
        o.to_string()
    };
    let without = |k: &str| {
        let mut o = ok.clone();
        o.as_object_mut().unwrap().remove(k);
        o.to_string()
    };
    let cases: Vec<(&str, String, &'static str, u16, u64)> = vec![
        ("malformed JSON", "{\"to\": ".into(), "application/json", 400, 30001),
        ("not an object", "[1,2]".into(), "application/json", 400, 30001),
        ("empty body", String::new(), "application/json", 400, 30001),
        ("wrong type", with("to", json!(18005551234u64)), "application/json", 400, 30001),
        ("null body field type", with("body", json!(42)), "application/json", 400, 30001),
        ("missing to", without("to"), "application/json", 400, 30001),
        ("missing from", without("from"), "application/json", 400, 30001),
        ("unknown field", with("priority", json!("high")), "application/json", 400, 30001),
        ("missing body on SMS", without("body"), "application/json", 400, 30002),
        ("blank body", with("body", json!("   ")), "application/json", 400, 30002),
        ("641 characters", with("body", json!("a".repeat(641))), "application/json", 400, 30002),
        ("invalid E.164 to", with("to", json!("port back up")), "application/json", 400, 30002),
        ("national number", with("to", json!("8005551234")), "application/json", 400, 30002),
        ("too many digits", with("to", json!("+1234567890123456")), "application/json", 400, 30002),
        ("invalid E.164 from", with("from", json!("+0")), "application/json", 400, 30002),
        ("ftp media", with("mediaUrl", json!("ftp://example.com/a.jpg")), "application/json", 400, 30002),
        ("relative media", with("mediaUrl", json!("/a.jpg")), "application/json", 400, 30002),
        ("empty idempotency key", with("idempotencyKey", json!("")), "application/json", 400, 30002),
        ("overlong idempotency key", with("idempotencyKey", json!("k".repeat(256))), "application/json", 400, 30002),
        ("control character", with("body", json!("a\u{1b}b")), "application/json", 400, 33016),
        ("wrong content type", ok.to_string(), "text/plain", 415, 30415),
        ("form content type", "to=%2B18005551234".into(), "application/x-www-form-urlencoded", 415, 30415),
        ("65 KiB body", with("body", json!("a".repeat(65 * 1024))), "application/json", 413, 30413),
    ];
    for (what, body, content_type, status, code) in cases {
        let r = post(body, content_type).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let body: Value = r.json().await.unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert_eq!(body["error"]["status"], status, "{what}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
        assert!(body["error"]["type"].is_string(), "{what}");
    }
    // Unknown routes and methods answer in the same shape.
    let r = http.get(format!("{}/api/v1/messaging/nothing", app.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], 30404);
    let r = http.put(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], 30405);
    // Nothing was written or charged by any of it.
    assert!(app.admin.messages(t.account, 10, None).await.unwrap().data.is_empty());
    let b = app.admin.balance(t.account).await.unwrap();
    assert_eq!((b.sms_credits, b.mms_credits), (100, 10));
    app.stop().await;
    db.remove().await;
}

/// What, method, path, body, token, status, error code.
type AdminCase = (&'static str, reqwest::Method, String, Option<Value>, Option<&'static str>, u16, &'static str);

async fn admin_bad_input(backend: Backend) {
    let Some(db) = TestDb::new(backend, "admin_bad_input").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(0, 0).await;
    let http = reqwest::Client::new();
    let a = t.account;
    let call = |method: reqwest::Method, path: String, body: Option<Value>, token: Option<&'static str>| {
        let mut r = http.request(method, format!("{}{}", app.url, path));
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    use reqwest::Method as M;
    let tok = Some(OPERATOR_TOKEN);
    let cases: Vec<AdminCase> = vec![
        ("no token", M::GET, "/admin/v1/accounts".into(), None, None, 401, "unauthorized"),
        ("wrong token", M::GET, "/admin/v1/accounts".into(), None, Some("nope-nope-nope-nope"), 401, "unauthorized"),
        ("empty name", M::POST, "/admin/v1/accounts".into(), Some(json!({"name": ""})), tok, 400, "invalid_request"),
        (
            "long name",
            M::POST,
            "/admin/v1/accounts".into(),
            Some(json!({"name": "x".repeat(201)})),
            tok,
            400,
            "invalid_request",
        ),
        (
            "unknown field",
            M::POST,
            "/admin/v1/accounts".into(),
            Some(json!({"name": "a", "x": 1})),
            tok,
            400,
            "invalid_request",
        ),
        ("bad account id", M::GET, "/admin/v1/accounts/not-a-uuid".into(), None, tok, 404, "not_found"),
        (
            "unknown account",
            M::GET,
            format!("/admin/v1/accounts/{}", uuid::Uuid::now_v7()),
            None,
            tok,
            404,
            "not_found",
        ),
        (
            "bad sender",
            M::POST,
            format!("/admin/v1/accounts/{a}/senders"),
            Some(json!({"address": "12345"})),
            tok,
            400,
            "invalid_request",
        ),
        (
            "taken sender",
            M::POST,
            format!("/admin/v1/accounts/{a}/senders"),
            Some(json!({"address": t.from})),
            tok,
            409,
            "conflict",
        ),
        (
            "negative top-up",
            M::POST,
            format!("/admin/v1/accounts/{a}/credits"),
            Some(json!({"sms": -5})),
            tok,
            400,
            "invalid_request",
        ),
        (
            "zero top-up",
            M::POST,
            format!("/admin/v1/accounts/{a}/credits"),
            Some(json!({"sms": 0, "mms": 0})),
            tok,
            400,
            "invalid_request",
        ),
        (
            "huge top-up",
            M::POST,
            format!("/admin/v1/accounts/{a}/credits"),
            Some(json!({"sms": 1_000_000_001i64})),
            tok,
            400,
            "invalid_request",
        ),
        (
            "string top-up",
            M::POST,
            format!("/admin/v1/accounts/{a}/credits"),
            Some(json!({"sms": "5"})),
            tok,
            400,
            "invalid_request",
        ),
        (
            "overflowing top-up",
            M::POST,
            format!("/admin/v1/accounts/{a}/credits"),
            Some(json!({"sms": 1e30})),
            tok,
            400,
            "invalid_request",
        ),
        (
            "opt-out foreign sender",
            M::POST,
            format!("/admin/v1/accounts/{a}/opt-outs"),
            Some(json!({"sender": "+18009990000", "recipient": "+18005551234"})),
            tok,
            400,
            "invalid_request",
        ),
        (
            "limit too big",
            M::GET,
            format!("/admin/v1/accounts/{a}/messages?limit=5000"),
            None,
            tok,
            400,
            "invalid_request",
        ),
        ("bad cursor", M::GET, format!("/admin/v1/accounts/{a}/ledger?cursor=zzz"), None, tok, 400, "invalid_request"),
        ("unknown key", M::DELETE, format!("/admin/v1/accounts/{a}/keys/key_nope"), None, tok, 404, "not_found"),
        ("unknown route", M::GET, "/admin/v1/nothing".into(), None, tok, 404, "not_found"),
        ("bad message id", M::GET, "/admin/v1/messages/123".into(), None, tok, 404, "not_found"),
    ];
    for (what, method, path, body, token, status, code) in cases {
        let r = call(method, path, body, token).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let body: Value = r.json().await.unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
    }
    assert!(app.admin.ledger(a, 10, None).await.unwrap().data.is_empty());
    app.stop().await;
    db.remove().await;
}

/// A JSON body is read as UTF-8 whatever its `Content-Type` says, so a body that declares any
/// other charset is refused with 415 in the dialect's own shape, and nothing is written.
async fn other_charsets_are_refused_in_every_dialect(backend: Backend) {
    let Some(db) = TestDb::new(backend, "charsets").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(100, 0).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/admin/v1/accounts/{}/channels", app.url, t.account))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"name": "sms", "sender": t.from}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let channel = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let (id, secret) = t.api_key.split_once(':').unwrap();
    let basic = http.get(&app.url).basic_auth(id, Some(secret)).build().unwrap().headers()["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    /// Dialect, URL, credentials header, body, and where its error code is.
    type Call = (&'static str, String, (&'static str, String), Value, fn(&Value) -> &Value, &'static str);
    let calls: Vec<Call> = vec![
        (
            "TextingLine",
            format!("{}/api/v1/messaging/message", app.url),
            ("authorization", basic),
            json!({"to": "+18005551234", "from": t.from, "body": "hi"}),
            |b| &b["error"]["code"],
            "30415",
        ),
        (
            "Mudbase",
            format!("{}/api/messaging/projects/{}/messaging/sms", app.url, t.account),
            ("x-api-key", t.api_key.clone()),
            json!({"to": "+18005551234", "from": t.from, "message": "hi"}),
            |b| &b["error"]["code"],
            "\"UNSUPPORTED_MEDIA_TYPE\"",
        ),
        (
            "Bird",
            format!("{}/workspaces/{}/channels/{channel}/messages", app.url, t.account),
            ("authorization", format!("AccessKey {}", t.api_key)),
            json!({"receiver": {"contacts": [{"identifierValue": "+31612345678"}]},
                   "body": {"type": "text", "text": {"text": "hi"}}}),
            |b| &b["code"],
            "\"UnsupportedMediaType\"",
        ),
        (
            "admin",
            format!("{}/admin/v1/accounts", app.url),
            ("authorization", format!("Bearer {OPERATOR_TOKEN}")),
            json!({"name": "other"}),
            |b| &b["error"]["code"],
            "\"unsupported_media_type\"",
        ),
    ];
    for (dialect, url, auth, body, code_of, code) in &calls {
        let text = body.to_string();
        let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        for (charset, bytes) in [
            ("utf-16", utf16.clone()),
            ("\"UTF-16LE\"", utf16),
            // Declared wrongly but UTF-8 in fact: still not what the client said it sent.
            ("utf-16", text.clone().into_bytes()),
            ("ISO-8859-1", text.clone().into_bytes()),
            ("us-ascii", text.clone().into_bytes()),
        ] {
            let r = http
                .post(url)
                .header(auth.0, &auth.1)
                .header("content-type", format!("application/json; charset={charset}"))
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{dialect}, charset={charset}");
            let answer: Value = r.json().await.unwrap_or_else(|e| panic!("{dialect}: not JSON: {e}"));
            assert_eq!(code_of(&answer).to_string(), *code, "{dialect}, charset={charset}: {answer}");
        }
    }
    // Nothing was written or charged by any of it.
    assert!(app.admin.messages(t.account, 10, None).await.unwrap().data.is_empty());
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 100);
    assert_eq!(app.admin.accounts(10, None).await.unwrap().data.len(), 1);

    // UTF-8, however it is spelt, is read as before.
    for ((dialect, url, auth, body, ..), charset) in calls.iter().zip(["utf-8", "\"UTF-8\"", "Utf-8", "utf8"]) {
        let r = http
            .post(url)
            .header(auth.0, &auth.1)
            .header("content-type", format!("application/json;charset={charset}"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{dialect}, charset={charset}: {}", r.status());
    }
    assert_eq!(app.admin.messages(t.account, 10, None).await.unwrap().data.len(), 3);
    app.stop().await;
    db.remove().await;
}
