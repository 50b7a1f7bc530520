//! Routing and upstreams end to end: one Switchboard relaying to another through its
//! TextingLine dialect with the receipt flowing back, failover from a dead upstream, and a
//! message with no route.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::settings::{HttpUpstreamSettings, UpstreamSettings};
use switchboard_domain::ErrorType;
use switchboard_domain::wire::TlSendRequest;
use switchboard_http_upstream::HttpUpstreamConfig;
use switchboard_provider::{RouteConfig, UpstreamLimits};
use switchboard_signing::Secret;
use switchboard_tests::{Backend, OPERATOR_TOKEN, TestApp, TestDb, eventually, on_both_backends};

on_both_backends!(
    one_switchboard_relays_to_another_and_hears_back,
    failover_and_no_route,
    smpp_upstream_end_to_end,
    smpp_throttling_slows_the_bind_and_loses_nothing,
    smpp_backlog_goes_at_once_when_the_bind_is_back,
);

const HANDSET: &str = "+18005551234";
const LONG: Duration = Duration::from_secs(20);

async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut req =
        reqwest::Client::new().request(method, format!("{}/admin/v1{path}", app.url)).bearer_auth(OPERATOR_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin request");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

fn http_upstream(name: &str, base_url: &str, key_id: &str, key_secret: &str, secret: &Secret) -> UpstreamSettings {
    UpstreamSettings::Http(HttpUpstreamSettings {
        config: HttpUpstreamConfig::new(name, base_url, key_id, key_secret, secret.expose()),
        limits: UpstreamLimits::default(),
        unknown: Default::default(),
    })
}

async fn one_switchboard_relays_to_another_and_hears_back(backend: Backend) {
    let Some(db_b) = TestDb::new(backend, "relay_upstream").await else { return };
    let Some(db_a) = TestDb::new(backend, "relay_front").await else { return };
    // B is the upstream: its simulator reports delivery.
    let mut settings_b = db_b.settings();
    settings_b.simulator_receipt_delay_ms = 100;
    let b = TestApp::start(settings_b).await;
    let on_b = b.provision(100, 0).await;
    let key_b = b.admin.create_key(on_b.account, Some("relay")).await.unwrap();

    // A relays everything to B; B's webhooks come back to A's callback URL.
    let secret = Secret::generate();
    let mut settings_a = db_a.settings();
    settings_a.upstreams = vec![http_upstream("relay", &b.url, &key_b.key.id, &key_b.secret, &secret)];
    let a = TestApp::start(settings_a).await;
    admin(
        &b,
        Method::POST,
        &format!("/accounts/{}/webhooks", on_b.account),
        Some(json!({"url": format!("{}/upstreams/relay/events", a.url), "secret": secret.expose()})),
    )
    .await;
    // A's tenant sends from B's sender number, which B's account owns.
    let on_a = a.provision(100, 0).await;
    let sent = on_a
        .client
        .send(&TlSendRequest {
            to: HANDSET.into(),
            from: on_a.from.clone(),
            body: Some("relayed".into()),
            ..Default::default()
        })
        .await;
    // The sender is A's own number, which B does not know: B refuses it and A fails it.
    let refused = sent.expect("send");
    let refused_id = refused.message.id.to_string();
    let m = eventually("the refusal", LONG, || async {
        let m = admin(&a, Method::GET, &format!("/messages/{refused_id}"), None).await;
        (m["status"] == "failed").then_some(m)
    })
    .await;
    assert_eq!(m["errorType"], "invalid_sender", "{m}");
    assert!(m["errorMessage"].as_str().unwrap().contains("33004"), "{m}");
    assert_eq!(m["smsCredits"], 0, "refused before any upstream took it: refunded");

    // With B's number assigned on A too (a number each server knows), the relay goes through.
    let relay_sender = on_b.from.clone();
    a.admin
        .add_sender(
            on_a.account,
            &switchboard_domain::wire::CreateSender {
                address: relay_sender.clone(),
                active: true,
                sms: true,
                mms: false,
            },
        )
        .await
        .unwrap();
    let sent = on_a
        .client
        .send(&TlSendRequest {
            to: HANDSET.into(),
            from: relay_sender,
            body: Some("relayed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = sent.message.id.to_string();
    let m = eventually("delivered on A through B", LONG, || async {
        let m = admin(&a, Method::GET, &format!("/messages/{id}"), None).await;
        (m["status"] == "delivered").then_some(m)
    })
    .await;
    let on_b_id = m["providerMessageId"].as_str().expect("B's message id").to_owned();
    let there = admin(&b, Method::GET, &format!("/messages/{on_b_id}"), None).await;
    assert_eq!(there["status"], "delivered");
    assert_eq!(there["idempotencyKey"], id, "A's id keeps a retried relay from making two messages");
    assert_eq!(there["body"], "relayed");

    // The upstream's state is shown.
    let ups = admin(&a, Method::GET, "/upstreams", None).await;
    let relay = &ups["data"][0];
    assert_eq!(relay["name"], "relay");
    assert_eq!(relay["kind"], "http");
    assert_eq!(relay["connected"], true);
    assert!(relay["sent"].as_u64().unwrap() >= 1);

    // A forged callback is refused.
    let forged = reqwest::Client::new()
        .post(format!("{}/upstreams/relay/events", a.url))
        .header("webhook-id", "evt_x")
        .header("webhook-timestamp", "0")
        .header("webhook-signature", "v1,AAAA")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    a.stop().await;
    b.stop().await;
    db_a.remove().await;
    db_b.remove().await;
}

async fn failover_and_no_route(backend: Backend) {
    let Some(db) = TestDb::new(backend, "failover").await else { return };
    let mut settings = db.settings();
    // Nothing listens on the dead upstream's port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    settings.upstreams = vec![
        http_upstream("dead", &format!("http://{dead}"), "k", "s", &Secret::generate()),
        UpstreamSettings::Simulator {
            name: "sim".into(),
            limits: UpstreamLimits::default(),
            unknown: Default::default(),
        },
    ];
    settings.routes = vec![RouteConfig {
        prefix: "+1".into(),
        accounts: Vec::new(),
        senders: Vec::new(),
        upstreams: vec!["dead".into(), "sim".into()],
    }];
    let app = TestApp::start(settings).await;
    let t = app.provision(100, 0).await;

    // The dead upstream cannot be reached, so the message goes to the next one.
    let sent = t
        .client
        .send(&TlSendRequest {
            to: HANDSET.into(),
            from: t.from.clone(),
            body: Some("failover".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = sent.message.id.to_string();
    let m = eventually("sent through the simulator", LONG, || async {
        let m = admin(&app, Method::GET, &format!("/messages/{id}"), None).await;
        (m["status"] == "sent").then_some(m)
    })
    .await;
    assert!(m["providerMessageId"].as_str().unwrap().starts_with("sim-"), "{m}");

    // No route for +44: failed routing_error, refunded.
    let before = app.admin.balance(t.account).await.unwrap().sms_credits;
    let sent = t
        .client
        .send(&TlSendRequest {
            to: "+447400123456".into(),
            from: t.from.clone(),
            body: Some("x".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = sent.message.id.to_string();
    let m = eventually("the routing failure", LONG, || async {
        let m = admin(&app, Method::GET, &format!("/messages/{id}"), None).await;
        (m["status"] == "failed").then_some(m)
    })
    .await;
    assert_eq!(m["errorType"], ErrorType::RoutingError.as_str());
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, before);
    let ups = admin(&app, Method::GET, "/upstreams", None).await;
    let names: Vec<&str> = ups["data"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dead", "sim"]);
    app.stop().await;
    db.remove().await;
}

async fn smpp_upstream_end_to_end(backend: Backend) {
    use switchboard_smpp::testing::{FakeSmsc, FakeSmscOptions, ReceiptOptions};
    let Some(db) = TestDb::new(backend, "smpp_upstream").await else { return };
    let smsc =
        FakeSmsc::start(FakeSmscOptions { receipts: Some(ReceiptOptions::default()), ..Default::default() }).await;
    let mut settings = db.settings();
    settings.upstreams = vec![switchboard_tests::smpp_upstream(
        smsc.port(),
        json!({
            "window": 4,
        }),
    )];
    let app = TestApp::start(settings).await;
    let t = app.provision(100, 0).await;
    eventually("the bind", LONG, || async {
        let ups = admin(&app, Method::GET, "/upstreams", None).await;
        (ups["data"][0]["connected"] == true).then_some(())
    })
    .await;

    // A two-part text goes out as two submit_sm, and both parts' receipts deliver it.
    let text = "x".repeat(200);
    let sent = t
        .client
        .send(&TlSendRequest { to: HANDSET.into(), from: t.from.clone(), body: Some(text), ..Default::default() })
        .await
        .unwrap();
    let id = sent.message.id.to_string();
    let m = eventually("delivered over SMPP", LONG, || async {
        let m = admin(&app, Method::GET, &format!("/messages/{id}"), None).await;
        (m["status"] == "delivered").then_some(m)
    })
    .await;
    assert_eq!(m["parts"].as_array().unwrap().len(), 2, "{m}");
    let submits = smsc.submits();
    assert_eq!(submits.len(), 2);
    assert!(submits.iter().all(|s| s.destination.trim_start_matches('+') == HANDSET.trim_start_matches('+')));
    let ups = admin(&app, Method::GET, "/upstreams", None).await;
    let u = &ups["data"][0];
    assert_eq!((u["name"].as_str(), u["kind"].as_str(), u["window"].as_u64()), (Some("smsc"), Some("smpp"), Some(4)));
    assert!(u["sent"].as_u64().unwrap() >= 1, "{u}");
    let metrics = reqwest::get(format!("{}/metrics", app.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_upstream_connected{upstream=\"smsc\"} 1"), "{metrics}");
    app.stop().await;
    db.remove().await;
}

/// 20 messages, 5 of them in two parts, through an SMSC that takes 2 submissions a second and
/// throttles the rest, with no `max_per_second`: the bind learns the pace, every message is
/// delivered, none fails, and no part is taken twice.
async fn smpp_throttling_slows_the_bind_and_loses_nothing(backend: Backend) {
    use std::collections::HashSet;
    use switchboard_smpp::testing::{FakeSmsc, FakeSmscOptions, ReceiptOptions};
    let Some(db) = TestDb::new(backend, "smpp_throttled").await else { return };
    let quota =
        FakeSmscOptions { receipts: Some(ReceiptOptions::default()), quota_per_second: Some(2), ..Default::default() };
    let smsc = FakeSmsc::start(quota).await;
    let mut settings = db.settings();
    settings.upstreams = vec![switchboard_tests::smpp_upstream(
        smsc.port(),
        json!({
            "throttling_sleep_ms": 500,
        }),
    )];
    settings.provider_timeout_ms = 30_000;
    let app = TestApp::start(settings).await;
    let t = app.provision(1000, 0).await;
    eventually("the bind", LONG, || async {
        let ups = admin(&app, Method::GET, "/upstreams", None).await;
        (ups["data"][0]["connected"] == true).then_some(())
    })
    .await;

    let mut ids = Vec::new();
    for i in 0..20 {
        let body = if i % 4 == 0 { format!("{i} {}", "y".repeat(200)) } else { format!("message {i}") };
        let to = format!("+1800555{:04}", 2000 + i);
        let req = TlSendRequest { to, from: t.from.clone(), body: Some(body), ..Default::default() };
        ids.push(t.client.send(&req).await.unwrap().message.id.to_string());
    }
    for id in &ids {
        let m = eventually("delivered through throttling", Duration::from_secs(90), || async {
            let m = admin(&app, Method::GET, &format!("/messages/{id}"), None).await;
            assert_ne!(m["status"], "failed", "{m}");
            (m["status"] == "delivered").then_some(m)
        })
        .await;
        assert!(m["parts"].as_array().unwrap().len() <= 2, "{m}");
    }
    let submits = smsc.submits();
    let taken: Vec<_> = submits.iter().filter(|s| s.message_id.is_some()).collect();
    assert_eq!(taken.len(), 25, "15 one-part and 5 two-part messages");
    let distinct: HashSet<_> = taken.iter().map(|s| (s.destination.clone(), s.short_message.clone())).collect();
    assert_eq!(distinct.len(), 25, "no part was taken twice");
    let ups = admin(&app, Method::GET, "/upstreams", None).await;
    let u = &ups["data"][0];
    assert!(u["throttled"].as_u64().unwrap() > 0, "{u}");
    app.stop().await;
    db.remove().await;
}

/// Messages sent while the SMSC refuses binds wait for their retry, 30 to 60 s away; when the
/// bind is back, they are all offered at once instead of each waiting out its timer (the test
/// gives up long before any timer would come).
async fn smpp_backlog_goes_at_once_when_the_bind_is_back(backend: Backend) {
    use switchboard_smpp::testing::{FakeSmsc, FakeSmscOptions};
    let Some(db) = TestDb::new(backend, "smpp_backlog").await else { return };
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let mut settings = db.settings();
    settings.upstreams = vec![switchboard_tests::smpp_upstream(
        smsc.port(),
        json!({
            "reconnect_min_ms": 100,
            "reconnect_max_ms": 200,
        }),
    )];
    // The first retry of a message no upstream could take waits 30 to 60 s.
    settings.dispatch_base_backoff_ms = 60_000;
    let app = TestApp::start(settings).await;
    let t = app.provision(100, 0).await;
    let connected = |want: bool| {
        let app = &app;
        async move {
            let ups = admin(app, Method::GET, "/upstreams", None).await;
            (ups["data"][0]["connected"] == want).then_some(())
        }
    };
    eventually("the bind", LONG, || connected(true)).await;

    // The SMSC goes down for maintenance.
    smsc.refuse_binds(true);
    smsc.drop_connections();
    eventually("the bind lost", LONG, || connected(false)).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let to = format!("+1800555{:04}", 3000 + i);
        let req = TlSendRequest { to, from: t.from.clone(), body: Some(format!("backlog {i}")), ..Default::default() };
        ids.push(t.client.send(&req).await.unwrap().message.id.to_string());
    }
    // Every message has been tried once and waits for its retry.
    for id in &ids {
        eventually("a first attempt", LONG, || async {
            let m = admin(&app, Method::GET, &format!("/messages/{id}"), None).await;
            assert_eq!(m["status"], "queued", "{m}");
            (m["attempts"] == 1 && m["errorMessage"].is_string()).then_some(())
        })
        .await;
    }
    assert_eq!(smsc.submit_count(), 0);

    // Back: the whole backlog goes with the bind, not with its timers.
    smsc.refuse_binds(false);
    eventually("the backlog submitted", LONG, || async { (smsc.submit_count() == 10).then_some(()) }).await;
    for id in &ids {
        let m = eventually("the message sent", LONG, || async {
            let m = admin(&app, Method::GET, &format!("/messages/{id}"), None).await;
            (m["status"] == "sent").then_some(m)
        })
        .await;
        assert_eq!(m["attempts"], json!(2), "{m}");
    }
    app.stop().await;
    db.remove().await;
}
