//! The Mudbase dialect end to end: recipients in each form, all-or-nothing credits, both auth
//! schemes, projects, history, statistics, rate limits and the error envelope.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_domain::wire::TopUp;
use switchboard_tests::{Backend, Tenant, TestApp, TestDb, eventually, on_both_backends};

on_both_backends!(
    recipients_in_every_form,
    batches_never_overdraw_under_concurrency,
    tokens_and_api_keys,
    other_projects_are_forbidden,
    history_pages_and_filters,
    stats_count_every_status_over_a_range,
    bad_input_gets_the_mudbase_shape,
    rate_limit_answers_429,
    the_rust_client_speaks_mudbase,
);

/// A minimal Mudbase client over raw HTTP.
struct Mb {
    http: reqwest::Client,
    base: String,
    project: String,
    auth: (String, String),
}

impl Mb {
    fn with_key(app: &TestApp, t: &Tenant) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: app.url.clone(),
            project: t.account.to_string(),
            auth: ("x-api-key".into(), t.api_key.clone()),
        }
    }

    fn with_token(app: &TestApp, t: &Tenant, token: &str) -> Self {
        Self { auth: ("authorization".into(), format!("Bearer {token}")), ..Self::with_key(app, t) }
    }

    async fn call(&self, method: Method, tail: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}/api/messaging/projects/{}/messaging/{tail}", self.base, self.project);
        let mut req = self.http.request(method, url).header(&self.auth.0, &self.auth.1);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "sms", Some(body)).await
    }

    async fn get(&self, tail: &str) -> (StatusCode, Value) {
        self.call(Method::GET, tail, None).await
    }
}

async fn start(backend: Backend, test: &str) -> Option<(TestDb, TestApp)> {
    let db = TestDb::new(backend, test).await?;
    let app = TestApp::start(db.settings()).await;
    Some((db, app))
}

async fn sms_balance(app: &TestApp, t: &Tenant) -> i64 {
    app.admin.balance(t.account).await.expect("balance").sms_credits
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

async fn recipients_in_every_form(backend: Backend) {
    let Some((db, app)) = start(backend, "mb_recipients").await else { return };
    let t = app.provision(10_000, 0).await;
    let mb = Mb::with_key(&app, &t);

    let (status, body) = mb.send(json!({"to": "+18005550001", "message": "one", "from": t.from})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let data = &body["data"];
    assert_eq!(body["success"], json!(true));
    assert_eq!((data["type"].clone(), data["recipients"].clone()), (json!("sms"), json!(1)));
    assert_eq!((data["successCount"].clone(), data["failureCount"].clone()), (json!(1), json!(0)));
    assert!(data["_id"].as_str().unwrap().starts_with("req_"));
    assert!(data["messageId"].as_str().unwrap().starts_with("msg_"));
    assert!(data["createdAt"].as_str().is_some());
    assert!(["sent", "pending"].contains(&data["status"].as_str().unwrap()));
    // Each recipient is a message of its own, readable through TextingLine.
    let first = t.client.message(data["messageId"].as_str().unwrap()).await.expect("read the message");
    assert_eq!(first.to, "+18005550001");

    // A comma-joined string with a repeat, and no `from` (the project's sender sends).
    let (status, body) = mb.send(json!({"to": "+18005550001, +18005550002,+18005550001", "message": "two"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["recipients"], json!(2));
    assert_eq!(body["data"]["to"], json!("+18005550001,+18005550002"));

    let (status, body) = mb.send(json!({"to": ["+18005550003", "+18005550004", "+18005550005"], "message": "3"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["recipients"], json!(3));
    assert_eq!(sms_balance(&app, &t).await, 10_000 - 2 * 6);

    // Over the cap of 1,000 distinct recipients: refused, nothing charged.
    let many: Vec<String> = (0..1001).map(|i| format!("+1800556{i:04}")).collect();
    let (status, body) = mb.send(json!({"to": many, "message": "too many"})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert!(body["error"]["message"].as_str().unwrap().contains("1001"), "{body}");
    // Exactly 1,000 is fine (a thousand more distinct numbers, 1,001 entries with a repeat).
    let mut thousand: Vec<String> = (0..1000).map(|i| format!("+1800557{i:04}")).collect();
    thousand.push(thousand[0].clone());
    let (status, body) = mb.send(json!({"to": thousand, "message": "a thousand"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["recipients"], json!(1000));
    assert_eq!(sms_balance(&app, &t).await, 10_000 - 2 * 1006);

    // Opted-out recipients count as failures and cost nothing.
    app.admin.add_opt_out(t.account, &t.from, "+18005550009").await.expect("opt out");
    let (status, body) = mb.send(json!({"to": "+18005550009,+18005550010", "message": "hi", "from": t.from})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((body["data"]["successCount"].clone(), body["data"]["failureCount"].clone()), (json!(1), json!(1)));
    assert_eq!(sms_balance(&app, &t).await, 10_000 - 2 * 1007);

    app.stop().await;
    db.remove().await;
}

async fn batches_never_overdraw_under_concurrency(backend: Backend) {
    let Some((db, app)) = start(backend, "mb_overdraw").await else { return };
    // Room for three batches of four recipients; ten race for it.
    let t = app.provision(24, 0).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mb = Mb::with_key(&app, &t);
        let to: Vec<String> = (0..4).map(|j| format!("+180055{i:02}{j:03}")).collect();
        tasks.push(tokio::spawn(async move { mb.send(json!({"to": to, "message": "race"})).await }));
    }
    let mut admitted = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::CREATED => {
                assert_eq!(body["data"]["recipients"], json!(4));
                admitted += 1;
            }
            _ => assert_error(status, &body, StatusCode::FORBIDDEN, "INSUFFICIENT_CREDITS"),
        }
    }
    assert_eq!(admitted, 3);
    assert_eq!(sms_balance(&app, &t).await, 0);
    let ledger = app.admin.ledger(t.account, 1000, None).await.expect("ledger");
    assert_eq!(ledger.data.iter().filter(|e| e.kind == "charge").count(), 12, "one charge per admitted recipient");
    let (_, history) = Mb::with_key(&app, &t).get("history").await;
    assert_eq!(history["data"]["pagination"]["total"], json!(3));
    app.stop().await;
    db.remove().await;
}

async fn token(app: &TestApp, headers: &[(&str, String)]) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().post(format!("{}/api/auth/token", app.url));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.expect("token request");
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

async fn tokens_and_api_keys(backend: Backend) {
    let Some(db) = TestDb::new(backend, "mb_tokens").await else { return };
    let app = TestApp::start(switchboard::Settings { token_ttl_secs: 2, ..db.settings() }).await;
    let t = app.provision(100, 0).await;

    let (status, body) = token(&app, &[("x-api-key", t.api_key.clone())]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((body["data"]["tokenType"].clone(), body["data"]["expiresIn"].clone()), (json!("Bearer"), json!(2)));
    let jwt = body["data"]["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(jwt.split('.').count(), 3);

    let mb = Mb::with_token(&app, &t, &jwt);
    let (status, body) = mb.send(json!({"to": "+18005550001", "message": "by token"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(mb.get("history").await.0, StatusCode::OK);
    assert_eq!(mb.get("stats").await.0, StatusCode::OK);
    // The API key itself is a bearer token too.
    assert_eq!(Mb::with_token(&app, &t, &t.api_key).get("history").await.0, StatusCode::OK);

    // Wrong secrets, tampered and forged tokens.
    let (status, body) = token(&app, &[("x-api-key", format!("{}:sk_wrong", t.key_id))]).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let sig = parts[2].clone();
    parts[2] = format!("{}{}", if sig.starts_with('A') { "B" } else { "A" }, &sig[1..]);
    let tampered = parts.join(".");
    let other = app.provision(100, 0).await;
    let (_, other_body) = token(&app, &[("x-api-key", other.api_key.clone())]).await;
    let other_jwt = other_body["data"]["accessToken"].as_str().unwrap();
    // Another project's claims under this token's signature.
    let spliced = format!("{}.{}.{}", parts[0], other_jwt.split('.').nth(1).unwrap(), sig);
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    for bad in [tampered.as_str(), spliced.as_str(), unsigned.as_str(), "garbage"] {
        let (status, body) = Mb::with_token(&app, &t, bad).get("history").await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let (status, body) =
        Mb { auth: ("x-api-key".into(), format!("{}:nope", t.key_id)), ..Mb::with_key(&app, &t) }.get("history").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // A token stops working when it expires.
    eventually("the token to expire", Duration::from_secs(10), || async {
        let (status, _) = mb.get("history").await;
        (status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    // And when its key is revoked.
    let (_, fresh) = token(&app, &[("x-api-key", t.api_key.clone())]).await;
    let fresh = Mb::with_token(&app, &t, fresh["data"]["accessToken"].as_str().unwrap());
    assert_eq!(fresh.get("history").await.0, StatusCode::OK);
    app.admin.revoke_key(t.account, &t.key_id).await.expect("revoke");
    let (status, body) = fresh.get("history").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let (status, body) = Mb::with_key(&app, &t).get("history").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    app.stop().await;
    db.remove().await;
}

async fn other_projects_are_forbidden(backend: Backend) {
    let Some((db, app)) = start(backend, "mb_forbidden").await else { return };
    let a = app.provision(100, 0).await;
    let b = app.provision(100, 0).await;
    for project in [b.account.to_string(), "not-a-project".to_owned()] {
        let mb = Mb { project, ..Mb::with_key(&app, &a) };
        let (status, body) = mb.send(json!({"to": "+18005550001", "message": "x"})).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
        for tail in ["history", "stats"] {
            let (status, body) = mb.get(tail).await;
            assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
        }
    }
    assert_eq!(sms_balance(&app, &b).await, 100);
    // The project is checked before the body is read.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/messaging/projects/{}/messaging/sms", app.url, b.account))
        .header("x-api-key", &a.api_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_error(status, &resp.json().await.unwrap(), StatusCode::FORBIDDEN, "FORBIDDEN");
    let anonymous = Mb { auth: ("x-nothing".into(), "1".into()), ..Mb::with_key(&app, &a) };
    let (status, body) = anonymous.get("history").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    app.stop().await;
    db.remove().await;
}

async fn history_pages_and_filters(backend: Backend) {
    let Some((db, app)) = start(backend, "mb_history").await else { return };
    let t = app.provision(1000, 0).await;
    let mb = Mb::with_key(&app, &t);
    app.admin.add_opt_out(t.account, &t.from, "+18005550099").await.expect("opt out");
    let mut ids = Vec::new();
    for i in 0..4 {
        let (status, body) = mb.send(json!({"to": format!("+1800555010{i}"), "message": format!("m{i}")})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["data"]["_id"].as_str().unwrap().to_owned());
    }
    // One request whose only recipient is opted out: failed at once.
    let (_, body) = mb.send(json!({"to": "+18005550099", "message": "blocked"})).await;
    assert_eq!(body["data"]["status"], json!("failed"));
    ids.push(body["data"]["_id"].as_str().unwrap().to_owned());

    // Wait for the dispatcher to settle the others.
    eventually("every request to settle", Duration::from_secs(10), || async {
        let (_, body) = mb.get("history?status=pending").await;
        (body["data"]["pagination"]["total"] == json!(0)).then_some(())
    })
    .await;

    let (status, body) = mb.get("history?page=1&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["pagination"], json!({"page": 1, "limit": 2, "total": 5, "totalPages": 3}));
    let page1: Vec<&str> =
        body["data"]["messages"].as_array().unwrap().iter().map(|m| m["_id"].as_str().unwrap()).collect();
    assert_eq!(page1, vec![ids[4].as_str(), ids[3].as_str()], "newest first");
    let entry = &body["data"]["messages"][1];
    assert_eq!(
        (entry["type"].clone(), entry["body"].clone(), entry["status"].clone()),
        (json!("sms"), json!("m3"), json!("sent"))
    );
    assert!(entry["sentAt"].as_str().is_some());
    // A push notification's title and an email's subject, which the platform's clients read,
    // are there and null.
    let fields = entry.as_object().unwrap();
    assert_eq!((fields.get("title"), fields.get("subject")), (Some(&Value::Null), Some(&Value::Null)), "{entry}");
    let (_, body) = mb.get("history?page=3&limit=2").await;
    assert_eq!(body["data"]["messages"].as_array().unwrap().len(), 1);
    let (_, body) = mb.get("history?page=9&limit=2").await;
    assert!(body["data"]["messages"].as_array().unwrap().is_empty());

    let (_, body) = mb.get("history?status=failed").await;
    assert_eq!(body["data"]["pagination"]["total"], json!(1));
    assert_eq!(body["data"]["messages"][0]["_id"], json!(ids[4]));
    assert_eq!(body["data"]["messages"][0]["failureCount"], json!(1));
    let (_, body) = mb.get("history?status=sent&type=sms").await;
    assert_eq!(body["data"]["pagination"]["total"], json!(4));
    let (_, body) = mb.get("history?type=push").await;
    assert_eq!(body["data"]["pagination"]["total"], json!(0));
    for huge in ["5000", "99999999999", "9223372036854775807"] {
        let (status, body) = mb.get(&format!("history?limit={huge}")).await;
        assert_eq!(status, StatusCode::OK, "{huge}: {body}");
        assert_eq!(body["data"]["pagination"]["limit"], json!(100), "limit {huge} is capped");
    }
    let (status, body) = mb.get("history?page=99999999999&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["messages"].as_array().unwrap().is_empty(), "a page past the last is empty");

    for bad in [
        "history?status=delivered",
        "history?type=fax",
        "history?page=0",
        "history?limit=x",
        "history?page=-1",
        "history?limit=9223372036854775808",
    ] {
        let (status, body) = mb.get(bad).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    }
    app.stop().await;
    db.remove().await;
}

async fn stats_count_every_status_over_a_range(backend: Backend) {
    let Some((db, app)) = start(backend, "mb_stats").await else { return };
    let t = app.provision(1000, 0).await;
    let mb = Mb::with_key(&app, &t);
    let before = switchboard_domain::Timestamp::now().plus_millis(-1000);
    // Sent: two by Mudbase, one by TextingLine. Failed at the provider: one. Opted out: one.
    // Still pending: one to the slow test number.
    mb.send(json!({"to": "+18005550201,+18005550202", "message": "ok"})).await;
    t.client
        .send(&switchboard_domain::wire::TlSendRequest {
            to: "+18005550203".into(),
            from: t.from.clone(),
            body: Some("via textingline".into()),
            ..Default::default()
        })
        .await
        .expect("TextingLine send");
    mb.send(json!({"to": "+15550001004", "message": "fails"})).await;
    app.admin.add_opt_out(t.account, &t.from, "+18005550204").await.expect("opt out");
    mb.send(json!({"to": "+18005550204", "message": "opted out"})).await;
    eventually("the provider failure", Duration::from_secs(10), || async {
        let (_, body) = mb.get("stats").await;
        (body["data"]["byStatus"]["failed"] == json!(2) && body["data"]["byStatus"]["sent"] == json!(3)).then_some(())
    })
    .await;
    mb.send(json!({"to": "+15550002001", "message": "slow"})).await;

    let start = before.to_string();
    let (status, body) = mb.get(&format!("stats?startDate={start}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data = &body["data"];
    assert_eq!(data["totalMessages"], json!(6));
    assert_eq!(data["byType"], json!({"push": 0, "email": 0, "sms": 6}));
    assert_eq!(data["byStatus"], json!({"sent": 3, "failed": 2, "pending": 1}));
    assert_eq!(data["successRate"], json!(50.0));
    assert_eq!(data["period"]["startDate"], json!(start));

    // The forms Mudbase's SDK sends, and a range that holds nothing.
    let day = |d: &str| format!("stats?startDate={d}");
    for form in ["2000-01-01T00:00:00.000000%2B0000", "2000-01-01T00:00:00", "2000-01-01"] {
        let (status, body) = mb.get(&day(form)).await;
        assert_eq!(status, StatusCode::OK, "{form}: {body}");
        assert_eq!(body["data"]["totalMessages"], json!(6), "{form}");
    }
    let (_, body) = mb.get("stats?startDate=2000-01-01&endDate=2000-02-01T00:00:00Z").await;
    assert_eq!((body["data"]["totalMessages"].clone(), body["data"]["successRate"].clone()), (json!(0), json!(0.0)));
    for bad in
        ["stats?startDate=yesterday", "stats?endDate=2024-13-01", "stats?startDate=2024-02-01&endDate=2024-01-01"]
    {
        let (status, body) = mb.get(bad).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    }
    app.stop().await;
    db.remove().await;
}

async fn bad_input_gets_the_mudbase_shape(backend: Backend) {
    let Some((db, app)) = start(backend, "mb_bad_input").await else { return };
    let t = app.provision(100, 0).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/messaging/projects/{}/messaging/sms", app.url, t.account);
    let raw = |body: String, content_type: &'static str| {
        http.post(&url).header("x-api-key", &t.api_key).header("content-type", content_type).body(body).send()
    };
    let cases: Vec<(String, &str, StatusCode, &str)> = vec![
        ("{not json".into(), "application/json", StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
        (r#"{"to":"+18005550001"}"#.into(), "application/json", StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
        (r#"{"to":12,"message":"x"}"#.into(), "application/json", StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
        (
            r#"{"to":"+18005550001","message":"x","cc":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            r#"{"to":"feed generate","message":"x"}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (r#"{"to":"","message":"x"}"#.into(), "application/json", StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
        (r#"{"to":[],"message":"x"}"#.into(), "application/json", StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
        (
            r#"{"to":"+18005550001","message":"   "}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            format!(r#"{{"to":"+18005550001","message":"{}"}}"#, "a".repeat(641)),
            "application/json",
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            r#"{"to":"+18005550001","message":"a\u0000b"}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "INVALID_CONTENT",
        ),
        (
            r#"{"to":"+18005550001","message":"x","from":"protocol connect"}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
        (
            r#"{"to":"+18005550001","message":"x","from":"+18009999999"}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "SENDER_NOT_ASSIGNED",
        ),
        (
            r#"{"to":"+18005550001","message":"x"}"#.into(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            format!(r#"{{"to":"+18005550001","message":"{}"}}"#, "a".repeat(70_000)),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (body, content_type, want, code) in cases {
        let resp = raw(body.clone(), content_type).await.expect("request");
        let status = resp.status();
        let json: Value = resp.json().await.unwrap_or(Value::Null);
        assert_error(status, &json, want, code);
    }
    assert_eq!(sms_balance(&app, &t).await, 100, "nothing was charged");

    let resp =
        http.get(format!("{}/api/messaging/projects/{}/messaging/nope", app.url, t.account)).send().await.unwrap();
    let status = resp.status();
    assert_error(status, &resp.json().await.unwrap(), StatusCode::NOT_FOUND, "NOT_FOUND");
    let resp = http.delete(&url).header("x-api-key", &t.api_key).send().await.unwrap();
    let status = resp.status();
    assert_error(status, &resp.json().await.unwrap(), StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");

    // A project without credits for the request; a sender refusal comes before the balance.
    let poor = app.provision(0, 0).await;
    let (status, body) = Mb::with_key(&app, &poor).send(json!({"to": "+18005550001", "message": "x"})).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "INSUFFICIENT_CREDITS");
    let (status, body) =
        Mb::with_key(&app, &poor).send(json!({"to": "+18005550001", "message": "x", "from": t.from})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "SENDER_NOT_ASSIGNED");
    app.admin.top_up(poor.account, &TopUp { sms: 2, mms: 0, reference: None }).await.unwrap();
    let (status, _) = Mb::with_key(&app, &poor).send(json!({"to": "+18005550001", "message": "x"})).await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
    db.remove().await;
}

async fn rate_limit_answers_429(backend: Backend) {
    let Some((db, app)) = start(backend, "mb_rate").await else { return };
    let t = app.provision(100, 0).await;
    let account = app.admin.set_rate_limit(t.account, Some(1)).await.expect("set the limit");
    assert_eq!(account.rate_limit, Some(1));
    let mb = Mb::with_key(&app, &t);
    // Four requests back to back, at one a second.
    let mut results = Vec::new();
    for _ in 0..4 {
        results.push(mb.get("history").await);
    }
    let limited: Vec<_> = results.iter().filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS).collect();
    assert!(limited.len() >= 2, "a burst of 4 at 1/s: {results:?}");
    assert_error(limited[0].0, &limited[0].1, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let resp = reqwest::Client::new()
        .get(format!("{}/api/messaging/projects/{}/messaging/history", app.url, t.account))
        .header("x-api-key", &t.api_key)
        .send()
        .await
        .unwrap();
    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        let after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=1).contains(&after), "Retry-After {after}");
    }
    // Another project has its own budget, and lifting the limit restores the default.
    let other = app.provision(0, 0).await;
    assert_eq!(Mb::with_key(&app, &other).get("history").await.0, StatusCode::OK);
    // A PATCH without the field changes nothing.
    let unchanged: Value = reqwest::Client::new()
        .patch(format!("{}/admin/v1/accounts/{}", app.url, t.account))
        .bearer_auth(switchboard_tests::OPERATOR_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged["rateLimit"], json!(1));
    app.admin.set_rate_limit(t.account, None).await.expect("lift the limit");
    assert_eq!(mb.get("history").await.0, StatusCode::OK);
    app.stop().await;
    db.remove().await;
}

async fn the_rust_client_speaks_mudbase(backend: Backend) {
    use switchboard_client::{MudbaseAuth, MudbaseClient};
    let Some((db, app)) = start(backend, "mb_rust_client").await else { return };
    let t = app.provision(100, 0).await;
    let by_key = MudbaseClient::new(&app.url, t.account, MudbaseAuth::ApiKey(t.api_key.clone())).unwrap();
    let sent = by_key.send_sms(&["+18005550401", "+18005550402"], "from Rust", None).await.expect("send");
    assert_eq!((sent.recipients, sent.success_count, sent.failure_count), (2, 2, 0));
    let token = by_key.issue_token().await.expect("token");
    let by_token = by_key.with_auth(MudbaseAuth::Bearer(token.access_token.clone()));
    assert!(!format!("{by_token:?} {token:?}").contains(&token.access_token), "tokens stay out of Debug");
    let history = by_token.history(None, 1, 10).await.expect("history");
    assert_eq!(history.messages[0].id, sent.id);
    let stats = by_token.stats(None, None).await.expect("stats");
    assert_eq!(stats.total_messages, 2);
    let other = app.provision(0, 0).await;
    let wrong = MudbaseClient::new(&app.url, other.account, MudbaseAuth::ApiKey(t.api_key.clone())).unwrap();
    let err = wrong.history(None, 1, 10).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(StatusCode::FORBIDDEN), Some(&"FORBIDDEN".into())));
    app.stop().await;
    db.remove().await;
}
