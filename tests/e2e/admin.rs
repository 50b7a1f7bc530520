//! The admin API, the operational endpoints, and the OpenAPI document.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::cli::{AdminArgs, AdminCommand, ChannelsCmd, TemplatesCmd};
use switchboard_client::ClientError;
use switchboard_domain::wire::{CreateChannel, CreateSender, CreateTemplateVersion, UpdateChannel, UpdateSender};
use switchboard_tests::{
    Backend, INTERNAL_URLS, OPERATOR_TOKEN, Receiver, TestApp, TestDb, eventually, on_both_backends,
};
use uuid::Uuid;

on_both_backends!(
    admin_operations,
    operational_endpoints,
    admin_channels,
    admin_templates,
    admin_channels_and_templates_bad_input,
    admin_cli_channels_and_templates,
    webhook_endpoint_urls_are_held_to_the_url_policy,
    refused_targets_are_never_called,
    metrics_can_require_a_token,
    a_full_page_says_another_follows,
);

/// A page of the most items a page holds still tells whether another follows: the lists read
/// one more item than the page shows.
async fn a_full_page_says_another_follows(backend: Backend) {
    let Some(db) = TestDb::new(backend, "full_page").await else { return };
    let app = TestApp::start(db.settings()).await;
    let account = app.admin.create_account("Full pages").await.unwrap();
    let top_up = switchboard_domain::wire::TopUp { sms: 1, mms: 0, reference: None };
    // In rounds of 50 at a time: all at once, on a loaded machine, some wait longer for a
    // database connection than the pool allows, and that is not what this test is about.
    for round in 0..21 {
        let tasks: Vec<_> = (0..if round < 20 { 50 } else { 1 })
            .map(|_| {
                let (admin, top_up) = (app.admin.clone(), top_up.clone());
                tokio::spawn(async move { admin.top_up(account.id, &top_up).await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }
    let first = app.admin.ledger(account.id, 1000, None).await.unwrap();
    assert_eq!(first.data.len(), 1000);
    let next = first.next_cursor.as_deref().expect("a full page of a longer list has a next cursor");
    let second = app.admin.ledger(account.id, 1000, Some(next)).await.unwrap();
    assert_eq!((second.data.len(), second.next_cursor), (1, None));
    assert_eq!(app.admin.balance(account.id).await.unwrap().sms_credits, 1001);
    app.stop().await;
    db.remove().await;
}

async fn metrics_can_require_a_token(backend: Backend) {
    let Some(db) = TestDb::new(backend, "metrics_token").await else { return };
    let token = "metrics-token-0123456789";
    let app = TestApp::start(switchboard::Settings { metrics_token: Some(token.into()), ..db.settings() }).await;
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", app.url);
    for wrong in [None, Some("Bearer metrics-token-012345678"), Some("Basic bWV0cmljczp4")] {
        let mut req = http.get(&url);
        if let Some(w) = wrong {
            req = req.header("authorization", w);
        }
        assert_eq!(req.send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
    let ok = http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.text().await.unwrap().contains("# TYPE switchboard_http_requests_total counter"));
    app.stop().await;
    db.remove().await;
}

async fn admin_operations(backend: Backend) {
    let Some(db) = TestDb::new(backend, "admin_operations").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let a = app.admin.create_account("Acme").await.unwrap();
    let b = app.admin.create_account("Globex").await.unwrap();
    assert_eq!((a.sms_credits, a.mms_credits), (0, 0));
    let p1 = app.admin.accounts(1, None).await.unwrap();
    assert_eq!(p1.data[0].id, b.id);
    let p2 = app.admin.accounts(1, p1.next_cursor.as_deref()).await.unwrap();
    assert_eq!(p2.data[0].id, a.id);
    assert_eq!(app.admin.account(a.id).await.unwrap().name, "Acme");

    let k1 = app.admin.create_key(a.id, Some("ci")).await.unwrap();
    assert!(k1.secret.starts_with("sk_") && k1.key.id.starts_with("key_"));
    assert!(!format!("{k1:?}").contains(&k1.secret), "secrets stay out of Debug");
    let keys = app.admin.keys(a.id).await.unwrap().data;
    assert_eq!(keys.len(), 1);
    let listed = serde_json::to_string(&keys).unwrap();
    assert!(!listed.contains(&k1.secret), "a key's secret is shown once");
    let revoked = app.admin.revoke_key(a.id, &k1.key.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(app.admin.revoke_key(b.id, &k1.key.id).await.unwrap_err().status(), Some(StatusCode::NOT_FOUND));

    let s = app
        .admin
        .add_sender(a.id, &CreateSender { address: "+14155550100".into(), active: false, sms: true, mms: false })
        .await
        .unwrap();
    assert!(!s.active);
    let s = app
        .admin
        .update_sender(
            a.id,
            "+14155550100",
            &UpdateSender { active: Some(true), mms: Some(true), ..Default::default() },
        )
        .await
        .unwrap();
    assert!(s.active && s.mms && s.sms);
    assert_eq!(app.admin.senders(a.id).await.unwrap().data, vec![s]);
    assert_eq!(app.admin.senders(b.id).await.unwrap().data, vec![]);

    let e = app
        .admin
        .top_up(a.id, &switchboard_domain::wire::TopUp { sms: 50, mms: 5, reference: Some("inv-7".into()) })
        .await
        .unwrap();
    assert_eq!(
        (e.kind.as_str(), e.sms_balance, e.mms_balance, e.reference.as_deref()),
        ("topup", 50, 5, Some("inv-7"))
    );
    let bal = app.admin.balance(a.id).await.unwrap();
    assert_eq!((bal.sms_credits, bal.mms_credits), (50, 5));

    app.admin.add_opt_out(a.id, "+14155550100", "+18005551234").await.unwrap();
    assert_eq!(app.admin.opt_outs(a.id).await.unwrap().data.len(), 1);
    app.admin.remove_opt_out(a.id, "+14155550100", "+18005551234").await.unwrap();
    assert!(app.admin.opt_outs(a.id).await.unwrap().data.is_empty());
    let err = app.admin.remove_opt_out(a.id, "+14155550100", "+18005551234").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    app.stop().await;
    db.remove().await;
}

async fn operational_endpoints(backend: Backend) {
    let Some(db) = TestDb::new(backend, "operational_endpoints").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(10, 0).await;
    let req = switchboard_domain::wire::TlSendRequest {
        to: "+18005551234".into(),
        from: t.from.clone(),
        body: Some("hi".into()),
        ..Default::default()
    };
    t.client.send(&req).await.unwrap();
    let http = reqwest::Client::new();
    let health: Value = http.get(format!("{}/healthz", app.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    // Ready, check by check; a database migrated by a newer version is named as the problem.
    let ready = http.get(format!("{}/readyz", app.url)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready", "checks": {"database": "ok", "migrations": "ok", "writer": "ok", "dispatcher": "ok"}})
    );
    let bytes = if db.url().starts_with("sqlite:") { "x'00'" } else { "'\\x00'::bytea" };
    let newer = format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from a newer version', TRUE, {bytes}, 0)"
    );
    execute(&db, &newer).await;
    let not_ready = http.get(format!("{}/readyz", app.url)).send().await.unwrap();
    assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let not_ready: Value = not_ready.json().await.unwrap();
    assert_eq!(not_ready["status"], "not_ready", "{not_ready}");
    assert_eq!(
        not_ready["checks"]["migrations"],
        json!(format!("the schema is at version 99; this version needs {}", switchboard_storage::SCHEMA_VERSION))
    );
    assert_eq!((&not_ready["checks"]["database"], &not_ready["checks"]["writer"]), (&json!("ok"), &json!("ok")));
    execute(&db, "DELETE FROM _sqlx_migrations WHERE version = 99").await;
    let sent = t.client.send(&req).await.unwrap().message;
    t.client.message(&sent.id.to_string()).await.unwrap();
    let nowhere = http.get(format!("{}/no/such/path/+18005551234", app.url)).send().await.unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    let metrics = http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_messages_accepted_total"), "{metrics}");
    // Every family says what it is and what it means.
    let families: Vec<&str> = metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
    assert!(families.len() >= 10, "{metrics}");
    for family in &families {
        let name = family.split(' ').next().unwrap();
        assert!(metrics.lines().any(|l| l.starts_with(&format!("# HELP {name} "))), "no HELP for {name}");
    }
    for line in metrics.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(families.iter().any(|f| f.split(' ').next() == Some(family)), "no TYPE for {line}");
    }
    // Requests by route template (never the raw path), method and status, with latency buckets.
    for expected in [
        r#"switchboard_http_requests_total{route="/api/v1/messaging/message",method="POST",status="201"}"#,
        r#"switchboard_http_requests_total{route="/api/v1/messaging/message/{id}",method="GET",status="200"}"#,
        r#"switchboard_http_requests_total{route="unmatched",method="GET",status="404"}"#,
        r#"switchboard_http_request_seconds_bucket{route="/api/v1/messaging/message",method="POST",status="201",le="0.005"}"#,
        "# TYPE switchboard_http_request_seconds histogram",
        "# TYPE switchboard_commit_seconds histogram",
        "# TYPE switchboard_upstream_sent_total counter",
        "# TYPE switchboard_messages_queued gauge",
        "# TYPE switchboard_receipts_awaited gauge",
        "# TYPE switchboard_webhook_deliveries_due gauge",
        "# TYPE switchboard_messages_scheduled gauge",
    ] {
        assert!(metrics.lines().any(|l| l.starts_with(expected)), "{expected} missing from:\n{metrics}");
    }
    assert!(!metrics.contains("18005551234"), "no number in the metrics");
    let doc: Value = http.get(format!("{}/openapi.json", app.url)).send().await.unwrap().json().await.unwrap();
    for path in [
        "/api/v1/messaging/message",
        "/api/v1/messaging/message/{id}",
        "/admin/v1/accounts",
        "/admin/v1/accounts/{account}/credits",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    let docs = http.get(format!("{}/docs/", app.url)).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
    app.stop().await;
    db.remove().await;
}

/// Asserts an admin error's status and code, and returns its message.
fn admin_error(e: ClientError, status: StatusCode, code: &str) -> String {
    assert_eq!(e.status(), Some(status), "{e}");
    assert_eq!(e.code(), Some(&code.into()), "{e}");
    match e {
        ClientError::Api(api) => {
            assert_eq!(api.dialect, switchboard_client::Dialect::Admin);
            assert_eq!(api.body["error"]["message"], api.message.as_str(), "{api}");
            api.message
        }
        other => panic!("not an API error: {other}"),
    }
}

fn sender(address: &str, mms: bool) -> CreateSender {
    CreateSender { address: address.into(), active: true, sms: true, mms }
}

fn channel(name: &str, sender: &str, active: bool) -> CreateChannel {
    CreateChannel { name: name.into(), sender: sender.into(), active }
}

fn texts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(l, t)| ((*l).to_owned(), (*t).to_owned())).collect()
}

async fn admin_channels(backend: Backend) {
    let Some(db) = TestDb::new(backend, "admin_channels").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let a = app.admin.create_account("Acme").await.unwrap().id;
    let b = app.admin.create_account("Globex").await.unwrap().id;
    app.admin.add_sender(a, &sender("+14155550110", false)).await.unwrap();
    app.admin.add_sender(a, &sender("+14155550111", true)).await.unwrap();
    app.admin.add_sender(b, &sender("+14155550120", true)).await.unwrap();

    let sms = app.admin.create_channel(a, &channel("Support", "+14155550110", true)).await.unwrap();
    assert_eq!(
        (sms.account_id, sms.name.as_str(), sms.sender.as_str(), sms.active, sms.mms),
        (a, "Support", "+14155550110", true, false)
    );
    let mms = app.admin.create_channel(a, &channel("  Promotions ", "+14155550111", false)).await.unwrap();
    assert_eq!((mms.name.as_str(), mms.active, mms.mms), ("Promotions", false, true), "mms follows the sender");

    // A sender of another account, or one that is no account's, is refused.
    let e = app.admin.create_channel(a, &channel("Theirs", "+14155550120", true)).await.unwrap_err();
    assert!(admin_error(e, StatusCode::BAD_REQUEST, "invalid_request").contains("sender"));
    let e = app.admin.create_channel(a, &channel("Nobody's", "+14155550199", true)).await.unwrap_err();
    admin_error(e, StatusCode::BAD_REQUEST, "invalid_request");
    let e = app.admin.create_channel(a, &channel(" ", "+14155550110", true)).await.unwrap_err();
    assert!(admin_error(e, StatusCode::BAD_REQUEST, "invalid_request").contains("name"));
    let e = app.admin.create_channel(Uuid::now_v7(), &channel("Ghost", "+14155550110", true)).await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");

    let mut listed = app.admin.channels(a).await.unwrap();
    listed.data.sort_by_key(|c| c.name.clone());
    assert_eq!(listed.data, vec![mms.clone(), sms.clone()]);
    assert_eq!(listed.next_cursor, None);
    assert!(app.admin.channels(b).await.unwrap().data.is_empty());
    admin_error(app.admin.channels(Uuid::now_v7()).await.unwrap_err(), StatusCode::NOT_FOUND, "not_found");

    assert_eq!(app.admin.channel(a, sms.id).await.unwrap(), sms);
    let e = app.admin.channel(b, sms.id).await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");
    let e = app.admin.channel(a, Uuid::new_v4()).await.unwrap_err();
    assert_eq!(admin_error(e, StatusCode::NOT_FOUND, "not_found"), "channel not found");

    // PATCH changes what is given and leaves the rest.
    let renamed = app
        .admin
        .update_channel(a, sms.id, &UpdateChannel { name: Some("Help desk".into()), active: None })
        .await
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.active), ("Help desk", true));
    let off = app.admin.update_channel(a, sms.id, &UpdateChannel { name: None, active: Some(false) }).await.unwrap();
    assert_eq!((off.name.as_str(), off.active), ("Help desk", false));
    let same = app.admin.update_channel(a, sms.id, &UpdateChannel::default()).await.unwrap();
    assert_eq!(same, off);
    let on = app.admin.update_channel(a, mms.id, &UpdateChannel { name: None, active: Some(true) }).await.unwrap();
    assert!(on.active && on.mms);
    let e = app.admin.update_channel(b, sms.id, &UpdateChannel { name: None, active: Some(true) }).await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");
    let e = app.admin.update_channel(a, Uuid::new_v4(), &UpdateChannel::default()).await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");
    let e = app.admin.update_channel(a, sms.id, &UpdateChannel { name: Some("".into()), active: None }).await;
    admin_error(e.unwrap_err(), StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(app.admin.channel(a, sms.id).await.unwrap(), off, "a refused change changes nothing");

    // The channel's MMS capability is its sender's, now.
    app.admin.update_sender(a, "+14155550110", &UpdateSender { mms: Some(true), ..Default::default() }).await.unwrap();
    assert!(app.admin.channel(a, sms.id).await.unwrap().mms);
    app.stop().await;
    db.remove().await;
}

async fn admin_templates(backend: Backend) {
    let Some(db) = TestDb::new(backend, "admin_templates").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let a = app.admin.create_account("Acme").await.unwrap().id;
    let b = app.admin.create_account("Globex").await.unwrap().id;

    let welcome = app.admin.create_template(a, "welcome").await.unwrap();
    assert_eq!((welcome.account_id, welcome.name.as_str()), (a, "welcome"));
    assert!(welcome.versions.is_empty());
    let e = app.admin.create_template(a, "welcome").await.unwrap_err();
    assert!(admin_error(e, StatusCode::CONFLICT, "conflict").contains("welcome"));
    let elsewhere = app.admin.create_template(b, "welcome").await.unwrap();
    assert_ne!(elsewhere.id, welcome.id, "names are unique per account");
    let e = app.admin.create_template(a, "").await.unwrap_err();
    admin_error(e, StatusCode::BAD_REQUEST, "invalid_request");
    let e = app.admin.create_template(Uuid::now_v7(), "welcome").await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");

    let v1 = CreateTemplateVersion { texts: texts(&[("en", "Hi {{name}}"), ("nl", "Hoi {{name}}")]), active: true };
    let v1 = app.admin.add_template_version(a, welcome.id, &v1).await.unwrap();
    assert_eq!((v1.template_id, v1.active), (welcome.id, true));
    assert_eq!(v1.texts, texts(&[("en", "Hi {{name}}"), ("nl", "Hoi {{name}}")]));
    let v2 = CreateTemplateVersion { texts: texts(&[("en", "Hello {{name}}, code {{code}}")]), active: false };
    let v2 = app.admin.add_template_version(a, welcome.id, &v2).await.unwrap();
    assert!(!v2.active);

    // Malformed placeholders are refused, naming the locale.
    let bad = CreateTemplateVersion { texts: texts(&[("en", "Hi {{name}}"), ("nl", "Hi {{name")]), active: true };
    let e = app.admin.add_template_version(a, welcome.id, &bad).await.unwrap_err();
    let message = admin_error(e, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(message.contains("texts.nl"), "{message}");
    let none = CreateTemplateVersion { texts: BTreeMap::new(), active: true };
    let e = app.admin.add_template_version(a, welcome.id, &none).await.unwrap_err();
    admin_error(e, StatusCode::BAD_REQUEST, "invalid_request");
    let bad_locale = CreateTemplateVersion { texts: texts(&[("e n", "Hi")]), active: true };
    let e = app.admin.add_template_version(a, welcome.id, &bad_locale).await.unwrap_err();
    admin_error(e, StatusCode::BAD_REQUEST, "invalid_request");
    let ok = CreateTemplateVersion { texts: texts(&[("en", "Hi")]), active: true };
    let e = app.admin.add_template_version(a, Uuid::new_v4(), &ok).await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");
    let e = app.admin.add_template_version(b, welcome.id, &ok).await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");

    // Activate and deactivate.
    let on = app.admin.set_template_version_active(a, welcome.id, v2.id, true).await.unwrap();
    assert_eq!((on.id, on.active), (v2.id, true));
    let off = app.admin.set_template_version_active(a, welcome.id, v1.id, false).await.unwrap();
    assert_eq!((off.id, off.active, &off.texts), (v1.id, false, &v1.texts));
    let e = app.admin.set_template_version_active(a, welcome.id, Uuid::new_v4(), true).await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");
    let e = app.admin.set_template_version_active(a, elsewhere.id, v1.id, true).await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");
    let e = app.admin.set_template_version_active(b, welcome.id, v1.id, true).await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");

    // Reading shows the versions oldest first, with their current state.
    let read = app.admin.template(a, welcome.id).await.unwrap();
    assert_eq!((read.id, read.name.as_str(), read.created_at), (welcome.id, "welcome", welcome.created_at));
    assert_eq!(read.versions, vec![off.clone(), on.clone()]);
    let e = app.admin.template(b, welcome.id).await.unwrap_err();
    admin_error(e, StatusCode::NOT_FOUND, "not_found");
    let e = app.admin.template(a, Uuid::new_v4()).await.unwrap_err();
    assert_eq!(admin_error(e, StatusCode::NOT_FOUND, "not_found"), "template not found");

    let listed = app.admin.templates(a).await.unwrap();
    assert_eq!(listed.data, vec![read]);
    assert_eq!(app.admin.templates(b).await.unwrap().data.len(), 1);
    admin_error(app.admin.templates(Uuid::now_v7()).await.unwrap_err(), StatusCode::NOT_FOUND, "not_found");
    app.stop().await;
    db.remove().await;
}

/// What, method, path, body, status, error code.
type Case = (&'static str, reqwest::Method, String, Option<Value>, u16, &'static str);

/// The status codes and JSON field names as sent over the wire, and bad input.
async fn admin_channels_and_templates_bad_input(backend: Backend) {
    let Some(db) = TestDb::new(backend, "admin_channels_bad_input").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let a = app.admin.create_account("Acme").await.unwrap().id;
    app.admin.add_sender(a, &sender("+14155550130", true)).await.unwrap();
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut r = http.request(method, format!("{}{}", app.url, path)).bearer_auth(OPERATOR_TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    use reqwest::Method as M;

    let r = call(
        M::POST,
        format!("/admin/v1/accounts/{a}/channels"),
        Some(json!({"name": "Support", "sender": "+14155550130"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let c: Value = r.json().await.unwrap();
    let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 7, "{c}");
    for k in ["id", "accountId", "name", "sender", "active", "mms", "createdAt"] {
        assert!(c.get(k).is_some(), "{k} missing from {c}");
    }
    assert_eq!((&c["active"], &c["mms"]), (&json!(true), &json!(true)));
    let channel = c["id"].as_str().unwrap().to_owned();

    let r = call(M::POST, format!("/admin/v1/accounts/{a}/templates"), Some(json!({"name": "welcome"}))).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["versions"], json!([]), "{t}");
    assert!(t.get("accountId").is_some() && t.get("createdAt").is_some(), "{t}");
    let template = t["id"].as_str().unwrap().to_owned();
    let r = call(
        M::POST,
        format!("/admin/v1/accounts/{a}/templates/{template}/versions"),
        Some(json!({"texts": {"en": "Hi {{name}}"}})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (&v["templateId"], &v["active"], &v["texts"]),
        (&json!(template), &json!(true), &json!({"en": "Hi {{name}}"}))
    );
    assert!(v.get("createdAt").is_some(), "{v}");
    let version = v["id"].as_str().unwrap().to_owned();

    let channels = format!("/admin/v1/accounts/{a}/channels");
    let templates = format!("/admin/v1/accounts/{a}/templates");
    let versions = format!("{templates}/{template}/versions");
    let cases: Vec<Case> = vec![
        ("channel without sender", M::POST, channels.clone(), Some(json!({"name": "x"})), 400, "invalid_request"),
        (
            "channel unknown field",
            M::POST,
            channels.clone(),
            Some(json!({"name": "x", "sender": "+14155550130", "mms": true})),
            400,
            "invalid_request",
        ),
        (
            "channel active not a bool",
            M::POST,
            channels.clone(),
            Some(json!({"name": "x", "sender": "+14155550130", "active": "yes"})),
            400,
            "invalid_request",
        ),
        ("channel bad id", M::GET, format!("{channels}/not-a-uuid"), None, 400, "invalid_request"),
        ("channel patch bad id", M::PATCH, format!("{channels}/42"), Some(json!({})), 400, "invalid_request"),
        (
            "channel patch unknown field",
            M::PATCH,
            format!("{channels}/{channel}"),
            Some(json!({"sender": "+14155550130"})),
            400,
            "invalid_request",
        ),
        ("channel patch not JSON", M::PATCH, format!("{channels}/{channel}"), None, 415, "unsupported_media_type"),
        ("channel delete", M::DELETE, format!("{channels}/{channel}"), None, 405, "method_not_allowed"),
        ("channels of bad account", M::GET, "/admin/v1/accounts/nope/channels".into(), None, 404, "not_found"),
        (
            "template unknown field",
            M::POST,
            templates.clone(),
            Some(json!({"name": "x", "text": "y"})),
            400,
            "invalid_request",
        ),
        ("template bad id", M::GET, format!("{templates}/not-a-uuid"), None, 400, "invalid_request"),
        ("template conflict", M::POST, templates.clone(), Some(json!({"name": "welcome"})), 409, "conflict"),
        ("version texts not a map", M::POST, versions.clone(), Some(json!({"texts": ["Hi"]})), 400, "invalid_request"),
        (
            "version text not a string",
            M::POST,
            versions.clone(),
            Some(json!({"texts": {"en": 5}})),
            400,
            "invalid_request",
        ),
        ("version without texts", M::POST, versions.clone(), Some(json!({"active": true})), 400, "invalid_request"),
        (
            "version bad template id",
            M::POST,
            format!("{templates}/x/versions"),
            Some(json!({"texts": {"en": "Hi"}})),
            400,
            "invalid_request",
        ),
        (
            "version patch without active",
            M::PATCH,
            format!("{versions}/{version}"),
            Some(json!({})),
            400,
            "invalid_request",
        ),
        (
            "version patch texts",
            M::PATCH,
            format!("{versions}/{version}"),
            Some(json!({"active": true, "texts": {"en": "x"}})),
            400,
            "invalid_request",
        ),
        (
            "version patch bad id",
            M::PATCH,
            format!("{versions}/zzz"),
            Some(json!({"active": true})),
            400,
            "invalid_request",
        ),
        (
            "version patch unknown",
            M::PATCH,
            format!("{versions}/{}", Uuid::new_v4()),
            Some(json!({"active": true})),
            404,
            "not_found",
        ),
    ];
    for (what, method, path, body, status, code) in cases {
        let r = call(method, path, body).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let body: Value = r.json().await.unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
    }
    let r = http.get(format!("{}{channels}", app.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the operator token is required");
    app.stop().await;
    db.remove().await;
}

/// The `switchboard admin channels …` and `templates …` commands, run in process.
async fn admin_cli_channels_and_templates(backend: Backend) {
    let Some(db) = TestDb::new(backend, "admin_cli_channels").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let a = app.admin.create_account("Acme").await.unwrap().id;
    app.admin.add_sender(a, &sender("+14155550140", false)).await.unwrap();
    let run = |command: AdminCommand| {
        let args = AdminArgs {
            server: app.url.clone(),
            token: Some(OPERATOR_TOKEN.into()),
            data_dir: std::env::temp_dir(),
            command,
        };
        switchboard::cli::run_admin(args)
    };

    run(AdminCommand::Channels(ChannelsCmd::Create {
        account: a,
        name: "Support".into(),
        sender: "+14155550140".into(),
        inactive: true,
    }))
    .await
    .unwrap();
    let [c] = app.admin.channels(a).await.unwrap().data.try_into().unwrap();
    assert_eq!((c.name.as_str(), c.sender.as_str(), c.active), ("Support", "+14155550140", false));
    run(AdminCommand::Channels(ChannelsCmd::List { account: a })).await.unwrap();
    run(AdminCommand::Channels(ChannelsCmd::Update {
        account: a,
        channel: c.id,
        name: Some("Help".into()),
        active: true,
        inactive: false,
    }))
    .await
    .unwrap();
    let c = app.admin.channel(a, c.id).await.unwrap();
    assert_eq!((c.name.as_str(), c.active), ("Help", true));
    let e = run(AdminCommand::Channels(ChannelsCmd::Update {
        account: a,
        channel: Uuid::new_v4(),
        name: None,
        active: false,
        inactive: true,
    }))
    .await
    .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");

    run(AdminCommand::Templates(TemplatesCmd::Create { account: a, name: "welcome".into() })).await.unwrap();
    let [t] = app.admin.templates(a).await.unwrap().data.try_into().unwrap();
    let add = |texts: &[(&str, &str)], inactive: bool| {
        let texts = texts.iter().map(|(l, t)| ((*l).to_owned(), (*t).to_owned())).collect();
        run(AdminCommand::Templates(TemplatesCmd::AddVersion { account: a, template: t.id, texts, inactive }))
    };
    add(&[("en", "Hi {{name}}"), ("nl", "Hoi {{name}}")], false).await.unwrap();
    add(&[("en", "Hello {{name}}")], false).await.unwrap();
    let e = add(&[("en", "Hi {{name")], false).await.unwrap_err();
    assert!(e.to_string().contains("texts.en"), "{e}");
    let e = add(&[("en", "a"), ("en", "b")], false).await.unwrap_err();
    assert!(e.to_string().contains("more than once"), "{e}");
    let versions = app.admin.template(a, t.id).await.unwrap().versions;
    assert_eq!(versions.iter().map(|v| v.active).collect::<Vec<_>>(), [true, true]);
    assert_eq!(versions[0].texts, texts(&[("en", "Hi {{name}}"), ("nl", "Hoi {{name}}")]));
    run(AdminCommand::Templates(TemplatesCmd::Deactivate { account: a, template: t.id, version: versions[0].id }))
        .await
        .unwrap();
    let read = app.admin.template(a, t.id).await.unwrap();
    assert_eq!(read.versions.iter().map(|v| v.active).collect::<Vec<_>>(), [false, true]);
    run(AdminCommand::Templates(TemplatesCmd::Activate { account: a, template: t.id, version: versions[0].id }))
        .await
        .unwrap();
    assert!(app.admin.template(a, t.id).await.unwrap().versions[0].active);
    run(AdminCommand::Templates(TemplatesCmd::Show { account: a, template: t.id })).await.unwrap();
    run(AdminCommand::Templates(TemplatesCmd::List { account: a })).await.unwrap();
    app.stop().await;
    db.remove().await;
}

/// Calls the admin API over raw HTTP.
async fn call(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req =
        reqwest::Client::new().request(method, format!("{}/admin/v1{path}", app.url)).bearer_auth(OPERATOR_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A 422 in the admin shape whose message names the field `url` and does not repeat it.
fn assert_url_refused(status: StatusCode, body: &Value, url: &str, why: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
    assert_eq!(body["error"]["code"], "invalid_request", "{url}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("url: ") && message.contains(why), "{url}: {body}");
    assert!(!message.contains(url), "the URL is not repeated: {body}");
}

async fn webhook_endpoint_urls_are_held_to_the_url_policy(backend: Backend) {
    use reqwest::Method;
    let Some(db) = TestDb::new(backend, "admin_webhook_url_policy").await else { return };
    // No ranges allowed: the operator's default.
    let app = TestApp::start(switchboard::Settings { tenant_url_allow_cidrs: Vec::new(), ..db.settings() }).await;
    let account = app.admin.create_account("Acme").await.unwrap().id;
    let hooks = format!("/accounts/{account}/webhooks");
    let others = [
        ("https://user:pass@example.com/hook", "user name or password"),
        ("ftp://example.com/hook", "http or https"),
        ("file:///etc/passwd", "http or https"),
    ];
    let cases: Vec<(&str, &str)> = INTERNAL_URLS.iter().map(|u| (*u, "must not name")).chain(others).collect();
    for (url, why) in &cases {
        let (status, body) = call(&app, Method::POST, &hooks, Some(json!({"url": url}))).await;
        assert_url_refused(status, &body, url, why);
    }
    let (_, listed) = call(&app, Method::GET, &hooks, None).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(0), "nothing was stored: {listed}");

    // A public URL is taken; changing it to a refused one is refused too, and changes nothing.
    let (status, hook) = call(&app, Method::POST, &hooks, Some(json!({"url": "https://example.com/hook"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let path = format!("{hooks}/{}", hook["id"].as_str().unwrap());
    for (url, why) in &cases {
        let (status, body) = call(&app, Method::PATCH, &path, Some(json!({"url": url, "active": false}))).await;
        assert_url_refused(status, &body, url, why);
    }
    let (_, read) = call(&app, Method::GET, &path, None).await;
    assert_eq!((read["url"].as_str(), read["active"].as_bool()), (Some("https://example.com/hook"), Some(true)));
    let (status, changed) = call(&app, Method::PATCH, &path, Some(json!({"url": "https://example.org/h"}))).await;
    assert_eq!((status, changed["url"].as_str()), (StatusCode::OK, Some("https://example.org/h")), "{changed}");
    app.stop().await;
    db.remove().await;
}

/// Deliveries stored while the operator allowed 127.0.0.1 are refused when they are posted
/// after the allowance is gone: checked at connect time, failed at once, and never sent.
async fn refused_targets_are_never_called(backend: Backend) {
    use reqwest::Method;
    let Some(db) = TestDb::new(backend, "refused_targets_never_called").await else { return };
    let receiver = Receiver::start(0, std::time::Duration::ZERO).await;
    let port = receiver.url.rsplit_once(':').unwrap().1.split('/').next().unwrap().to_owned();
    let settings = db.settings();
    assert_eq!(settings.tenant_url_allow_cidrs, ["127.0.0.1/32"], "the harness allows its receivers");

    // A node that allows 127.0.0.1 but delivers no webhooks stores the events.
    let app = TestApp::start(switchboard::Settings { webhooks: false, ..settings.clone() }).await;
    let t = app.provision(100, 0).await;
    let hooks = format!("/accounts/{}/webhooks", t.account);
    let (status, hook) = call(&app, Method::POST, &hooks, Some(json!({"url": receiver.url}))).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let (status, channel) = call(
        &app,
        Method::POST,
        &format!("/accounts/{}/channels", t.account),
        Some(json!({"name": "sms", "sender": t.from})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    let messages =
        format!("{}/workspaces/{}/channels/{}/messages", app.url, t.account, channel["id"].as_str().unwrap());
    let bird = |method: Method, url: String| {
        reqwest::Client::new().request(method, url).header("authorization", format!("AccessKey {}", t.api_key))
    };
    let send = json!({
        "receiver": {"contacts": [{"identifierValue": "+31612345678"}]},
        "body": {"type": "text", "text": {"text": "hi"}},
        "notification": {"url": receiver.url},
    });
    let sent = bird(Method::POST, messages.clone()).json(&send).send().await.unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let id = sent.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    eventually("the message sent", std::time::Duration::from_secs(10), || async {
        let m: Value = bird(Method::GET, format!("{messages}/{id}")).send().await.unwrap().json().await.unwrap();
        (m["status"] == "sent").then_some(())
    })
    .await;
    app.stop().await;

    // The same database, served by a node that no longer allows it.
    let app = TestApp::start(switchboard::Settings { tenant_url_allow_cidrs: Vec::new(), ..settings }).await;
    let deliveries = format!("/accounts/{}/webhook-deliveries", t.account);
    let done = eventually("every delivery given up", std::time::Duration::from_secs(20), || async {
        let (_, page) = call(&app, Method::GET, &deliveries, None).await;
        let items = page["data"].as_array().cloned().unwrap_or_default();
        (!items.is_empty() && items.iter().all(|d| d["state"] != "pending")).then_some(items)
    })
    .await;
    // Its events, to the endpoint and to the message's own notification URL.
    assert!(done.iter().any(|d| d["endpointId"].is_string()) && done.iter().any(|d| d["endpointId"].is_null()));
    for d in &done {
        assert_eq!((d["state"].as_str(), d["attempts"].as_u64()), (Some("failed"), Some(1)), "failed at once: {d}");
        assert!(d["nextAttemptAt"].is_null(), "not retried: {d}");
        let error = d["lastError"].as_str().unwrap_or_default();
        assert!(error.starts_with("refused by the URL policy") && error.contains("loopback"), "{d}");
        assert!(!error.contains(&port) && !error.contains("/hook"), "the URL stays out of the error: {d}");
        assert_eq!(d["attemptLog"].as_array().map(Vec::len), Some(1), "{d}");
    }
    assert!(receiver.requests().is_empty(), "the receiver was called: {:?}", receiver.requests());
    app.stop().await;
    db.remove().await;
}

/// Runs one statement on the test's database beside the server, as an outside change would.
async fn execute(db: &TestDb, sql: &str) {
    if let Some(path) = db.url().strip_prefix("sqlite://") {
        let c = rusqlite::Connection::open(path).expect("open the SQLite file");
        c.busy_timeout(std::time::Duration::from_secs(5)).expect("busy timeout");
        c.execute_batch(sql).expect("change the SQLite file");
    } else {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(db.url()).await.expect("connect to PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .expect("change the PostgreSQL database");
    }
}
