//! The delivery lifecycle end to end: receipts, signed webhooks that survive restarts and
//! slow receivers, inbound messages with STOP/START/HELP, and the refund policy.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_domain::ErrorType;
use switchboard_domain::wire::TlSendRequest;
use switchboard_provider::simulator::{failed_receipt_number, undelivered_receipt_number};
use switchboard_signing::Secret;
use switchboard_tests::{Backend, OPERATOR_TOKEN, Receiver, Tenant, TestApp, TestDb, eventually, on_both_backends};
use uuid::Uuid;

on_both_backends!(
    receipts_drive_messages_to_delivered_with_signed_events,
    carrier_failures_are_refunded_only_when_the_account_says_so,
    a_receiver_failing_three_times_gets_the_fourth_attempt,
    a_restart_mid_backoff_still_delivers,
    a_slow_receiver_slows_neither_sends_nor_other_receivers,
    out_of_order_and_duplicate_receipts_never_move_a_message_back,
    concurrent_failure_receipts_refund_exactly_once,
    stop_then_send_then_start_then_send,
    bird_notification_urls_get_signed_bird_events,
);

/// Never answers with receipts; tests drive them through the simulator endpoint.
const SILENT: &str = "+15550005001";
const HANDSET: &str = "+18005551234";
/// 200 characters of GSM-7: two parts.
const TWO_PARTS: &str = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\
                         0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";
const LONG: Duration = Duration::from_secs(20);

async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req =
        reqwest::Client::new().request(method, format!("{}/admin/v1{path}", app.url)).bearer_auth(OPERATOR_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, v) = admin(app, method, path, body).await;
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// Adds a webhook endpoint for the account; returns its id and secret.
async fn webhook(app: &TestApp, account: Uuid, url: &str, events: &[&str]) -> (String, Secret) {
    let body = json!({"url": url, "events": events});
    let hook = ok(app, Method::POST, &format!("/accounts/{account}/webhooks"), Some(body)).await;
    let secret = Secret::parse(hook["secret"].as_str().expect("secret shown at creation")).expect("a whsec_ secret");
    (hook["id"].as_str().expect("id").to_owned(), secret)
}

async fn send(t: &Tenant, to: &str, body: &str) -> String {
    let req = TlSendRequest { to: to.into(), from: t.from.clone(), body: Some(body.into()), ..Default::default() };
    let sent = t.client.send(&req).await.expect("send");
    assert_eq!(sent.status, StatusCode::CREATED);
    sent.message.id.to_string()
}

async fn message(app: &TestApp, id: &str) -> Value {
    ok(app, Method::GET, &format!("/messages/{id}"), None).await
}

async fn until_status(app: &TestApp, id: &str, status: &str) -> Value {
    eventually(&format!("{id} {status}"), LONG, || async {
        let m = message(app, id).await;
        (m["status"] == status).then_some(m)
    })
    .await
}

fn part_refs(m: &Value) -> Vec<String> {
    m["parts"].as_array().expect("parts").iter().map(|p| p["providerRef"].as_str().unwrap().to_owned()).collect()
}

async fn receipts(app: &TestApp, receipts: Value) -> Vec<String> {
    let v = ok(app, Method::POST, "/simulator/receipts", Some(json!({ "receipts": receipts }))).await;
    v["results"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect()
}

async fn refunds(app: &TestApp, account: Uuid, message: &str) -> usize {
    let id = message.parse::<switchboard_domain::MessageId>().unwrap();
    let ledger = app.admin.ledger(account, 1000, None).await.unwrap();
    ledger.data.iter().filter(|e| e.kind == "refund" && e.message_id == Some(id)).count()
}

async fn start_with(
    backend: Backend,
    test: &str,
    tweak: impl FnOnce(&mut switchboard::Settings),
) -> Option<(TestDb, TestApp)> {
    let db = TestDb::new(backend, test).await?;
    let mut settings = db.settings();
    tweak(&mut settings);
    let app = TestApp::start(settings).await;
    Some((db, app))
}

fn verify(secret: &Secret, r: &switchboard_tests::Received) -> bool {
    let ts: i64 = r.timestamp.parse().expect("a numeric webhook-timestamp");
    let now = switchboard_domain::Timestamp::now().millis() / 1000;
    switchboard_signing::verify(secret, &r.id, ts, &r.body, &r.signature, now, 300)
}

async fn receipts_drive_messages_to_delivered_with_signed_events(backend: Backend) {
    let Some((db, app)) = start_with(backend, "receipts_delivered", |s| s.simulator_receipt_delay_ms = 100).await
    else {
        return;
    };
    let t = app.provision(100, 0).await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let (_, secret) = webhook(&app, t.account, &receiver.url, &[]).await;

    let id = send(&t, HANDSET, TWO_PARTS).await;
    let m = until_status(&app, &id, "delivered").await;
    assert_eq!(m["segments"], 2);
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|p| p["status"] == "delivered"), "{m}");
    let statuses: Vec<&str> = m["events"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["accepted", "queued", "sent", "delivered"]);
    // TextingLine has no `delivered`: a delivered message is `sent`.
    let tl = t.client.message(&id).await.unwrap();
    assert_eq!(serde_json::to_value(tl.status).unwrap(), "sent");

    // One event per status, each signed, with its own stable id.
    let got = eventually("accepted, sent and delivered events", LONG, || async {
        let r = receiver.delivered_for(&id);
        (r.len() >= 3).then_some(r)
    })
    .await;
    let types: HashSet<&str> = got.iter().map(|r| r.json["type"].as_str().unwrap()).collect();
    assert_eq!(types, HashSet::from(["message.accepted", "message.sent", "message.delivered"]));
    for r in &got {
        assert!(verify(&secret, r), "signature of {}", r.id);
        assert_eq!(r.json["id"], r.id, "the body's id is the webhook-id");
        assert!(r.id.starts_with("evt_"));
        assert!(!verify(&Secret::generate(), r), "another secret must not verify");
        let mut tampered = r.clone();
        tampered.body.push(b' ');
        assert!(!verify(&secret, &tampered));
    }
    let delivered = got.iter().find(|r| r.json["type"] == "message.delivered").unwrap();
    assert_eq!(delivered.json["data"]["status"], "delivered");
    let accepted = got.iter().find(|r| r.json["type"] == "message.accepted").unwrap();
    assert_eq!(accepted.json["data"]["status"], "accepted", "an event shows the status it reports");
    assert_eq!(got.iter().map(|r| r.id.clone()).collect::<HashSet<_>>().len(), 3);

    // Every delivery is listed with its attempt.
    let list = ok(&app, Method::GET, &format!("/accounts/{}/webhook-deliveries?message={id}", t.account), None).await;
    let deliveries = list["data"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3, "{list}");
    for d in deliveries {
        assert_eq!(d["state"], "delivered", "{d}");
        assert_eq!(d["attemptLog"][0]["statusCode"], 204, "{d}");
    }
    app.stop().await;
    db.remove().await;
}

async fn carrier_failures_are_refunded_only_when_the_account_says_so(backend: Backend) {
    let Some((db, app)) = start_with(backend, "carrier_refunds", |s| s.simulator_receipt_delay_ms = 50).await else {
        return;
    };
    let t = app.provision(100, 0).await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    webhook(&app, t.account, &receiver.url, &["message.undelivered", "message.failed"]).await;

    // Off by default: the carrier's failure of part 2 of 2 costs the message's credits.
    let undelivered = undelivered_receipt_number(ErrorType::DestinationBlocked);
    let id = send(&t, &undelivered, TWO_PARTS).await;
    let m = until_status(&app, &id, "undelivered").await;
    assert_eq!(m["errorType"], "destination_blocked");
    assert!(m["errorMessage"].as_str().unwrap().starts_with("part 2 of 2"), "{m}");
    let tl = t.client.message(&id).await.unwrap();
    assert_eq!(serde_json::to_value(tl.status).unwrap(), "failed");
    assert_eq!(tl.error_type, Some(ErrorType::DestinationBlocked));
    assert_eq!(refunds(&app, t.account, &id).await, 0);
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 98);

    // On: the next carrier failure is refunded, once.
    let (status, account) =
        admin(&app, Method::PATCH, &format!("/accounts/{}", t.account), Some(json!({"refundCarrierFailures": true})))
            .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["refundCarrierFailures"], true);
    let failed = failed_receipt_number(ErrorType::InvalidDestination);
    let id2 = send(&t, &failed, "hello").await;
    let m2 = until_status(&app, &id2, "failed").await;
    assert_eq!(m2["errorType"], "invalid_destination");
    assert_eq!(m2["smsCredits"], 0);
    assert_eq!(refunds(&app, t.account, &id2).await, 1);
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 98);

    // Only the subscribed event types arrive.
    let events = eventually("both failure events", LONG, || async {
        let r: Vec<_> = receiver.requests().into_iter().filter(|r| r.answered == 204).collect();
        (r.len() >= 2).then_some(r)
    })
    .await;
    let types: HashSet<&str> = events.iter().map(|r| r.json["type"].as_str().unwrap()).collect();
    assert_eq!(types, HashSet::from(["message.undelivered", "message.failed"]));
    app.stop().await;
    db.remove().await;
}

async fn a_receiver_failing_three_times_gets_the_fourth_attempt(backend: Backend) {
    let Some((db, app)) = start_with(backend, "fourth_attempt", |_| {}).await else { return };
    let t = app.provision(10, 0).await;
    let receiver = Receiver::start(3, Duration::ZERO).await;
    let (hook, secret) = webhook(&app, t.account, &receiver.url, &["message.accepted"]).await;
    let id = send(&t, HANDSET, "retry me").await;

    let got = eventually("a delivered attempt", LONG, || async {
        let r = receiver.requests();
        r.iter().any(|r| r.answered == 204).then_some(r)
    })
    .await;
    assert_eq!(got.len(), 4, "three failures, then the fourth attempt");
    assert_eq!(got.iter().map(|r| r.answered).collect::<Vec<_>>(), [500, 500, 500, 204]);
    assert!(got.iter().all(|r| r.id == got[0].id), "the same event id on every attempt");
    assert!(got.iter().all(|r| r.body == got[0].body), "the same body on every attempt");
    assert!(got.iter().all(|r| verify(&secret, r)));

    let list = eventually("the delivery recorded delivered", LONG, || async {
        let l = ok(
            &app,
            Method::GET,
            &format!("/accounts/{}/webhook-deliveries?webhook={hook}&message={id}", t.account),
            None,
        )
        .await;
        (l["data"][0]["state"] == "delivered").then_some(l)
    })
    .await;
    let d = &list["data"][0];
    assert_eq!(d["attempts"], 4);
    let log: Vec<Value> = d["attemptLog"].as_array().unwrap().iter().map(|a| a["statusCode"].clone()).collect();
    assert_eq!(log, [json!(500), json!(500), json!(500), json!(204)]);
    assert_eq!(d["attemptLog"][0]["error"], "HTTP 500", "{d}");
    app.stop().await;
    db.remove().await;
}

async fn a_restart_mid_backoff_still_delivers(backend: Backend) {
    let Some(db) = TestDb::new(backend, "restart_mid_backoff").await else { return };
    let mut settings = db.settings();
    // Long enough that the retry cannot happen before the server stops.
    settings.webhook_base_backoff_ms = 10_000;
    settings.webhook_max_backoff_ms = 10_000;
    let app = TestApp::start(settings.clone()).await;
    let t = app.provision(10, 0).await;
    let receiver = Receiver::start(1, Duration::ZERO).await;
    let (hook, _) = webhook(&app, t.account, &receiver.url, &["message.accepted"]).await;
    let id = send(&t, HANDSET, "survive a restart").await;
    let path = format!("/accounts/{}/webhook-deliveries?webhook={hook}&message={id}", t.account);
    eventually("the first attempt failed and recorded", LONG, || async {
        let l = ok(&app, Method::GET, &path, None).await;
        (l["data"][0]["attempts"] == 1 && l["data"][0]["lastStatus"] == 500).then_some(())
    })
    .await;
    app.stop().await;
    assert_eq!(receiver.requests().len(), 1, "no second attempt before the restart");

    let app = TestApp::start(settings).await;
    let got = eventually("the retry after the restart", LONG, || async {
        let r = receiver.requests();
        (r.len() >= 2).then_some(r)
    })
    .await;
    assert_eq!(got[1].answered, 204);
    assert_eq!(got[0].id, got[1].id);
    let l = eventually("delivered", LONG, || async {
        let l = ok(&app, Method::GET, &path, None).await;
        (l["data"][0]["state"] == "delivered").then_some(l)
    })
    .await;
    assert_eq!(l["data"][0]["attempts"], 2);
    app.stop().await;
    db.remove().await;
}

async fn a_slow_receiver_slows_neither_sends_nor_other_receivers(backend: Backend) {
    const N: usize = 30;
    let Some((db, app)) = start_with(backend, "slow_receiver", |s| {
        s.webhook_per_endpoint = 2;
        s.webhook_timeout_ms = 10_000;
    })
    .await
    else {
        return;
    };
    let slow_tenant = app.provision(1000, 0).await;
    let fast_tenant = app.provision(1000, 0).await;
    // Each answer takes 2 s: N events need N seconds at two at a time.
    let slow = Receiver::start(0, Duration::from_secs(2)).await;
    let fast = Receiver::start(0, Duration::ZERO).await;
    webhook(&app, slow_tenant.account, &slow.url, &["message.accepted"]).await;
    webhook(&app, fast_tenant.account, &fast.url, &["message.accepted"]).await;

    for i in 0..N {
        send(&slow_tenant, HANDSET, &format!("slow {i}")).await;
    }
    let mut fast_ids = Vec::new();
    for i in 0..N {
        fast_ids.push(send(&fast_tenant, HANDSET, &format!("fast {i}")).await);
    }
    // Every send was answered while the slow receiver had taken only a few of its events.
    assert!(slow.requests().len() < N / 2, "sends waited for the slow receiver");
    // The fast receiver gets all its events while the slow one is still working through its.
    eventually("every event at the fast receiver", LONG, || async {
        (fast_ids.iter().all(|id| !fast.delivered_for(id).is_empty())).then_some(())
    })
    .await;
    assert!(slow.requests().len() < N, "the fast receiver waited for the slow one");
    slow.set_delay(Duration::ZERO);
    app.stop().await;
    db.remove().await;
}

async fn out_of_order_and_duplicate_receipts_never_move_a_message_back(backend: Backend) {
    let Some((db, app)) = start_with(backend, "receipt_order", |_| {}).await else { return };
    let t = app.provision(100, 0).await;
    let three = format!("{TWO_PARTS}{}", "x".repeat(150));
    let id = send(&t, SILENT, &three).await;
    let m = until_status(&app, &id, "sent").await;
    let refs = part_refs(&m);
    assert_eq!(refs.len(), 3);
    let receipt = |r: &str, status: &str| json!({"providerRef": r, "status": status});

    // A receipt for an id no submission has yet is kept, not lost.
    assert_eq!(receipts(&app, json!([receipt("no-such-part", "delivered")])).await, ["unmatched"]);
    // Parts out of order and twice: the message waits for every part.
    let r = receipts(
        &app,
        json!([receipt(&refs[2], "delivered"), receipt(&refs[0], "delivered"), receipt(&refs[0], "delivered")]),
    )
    .await;
    assert_eq!(r, ["applied", "applied", "ignored"]);
    assert_eq!(message(&app, &id).await["status"], "sent");
    assert_eq!(receipts(&app, json!([receipt(&refs[1], "delivered")])).await, ["applied"]);
    let m = message(&app, &id).await;
    assert_eq!(m["status"], "delivered");
    // A late failure for a delivered part changes nothing.
    assert_eq!(receipts(&app, json!([receipt(&refs[1], "undelivered")])).await, ["ignored"]);
    let again = message(&app, &id).await;
    assert_eq!(again["status"], "delivered");
    let delivered = again["events"].as_array().unwrap().iter().filter(|e| e["status"] == "delivered").count();
    assert_eq!(delivered, 1);

    // Bad receipts are refused whole, in the admin error shape.
    let (status, err) =
        admin(&app, Method::POST, "/simulator/receipts", Some(json!({"receipts": [receipt(&refs[0], "lost")]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "invalid_request");
    let (status, _) = admin(&app, Method::POST, "/simulator/receipts", Some(json!({"receipts": []}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await;
    db.remove().await;
}

async fn concurrent_failure_receipts_refund_exactly_once(backend: Backend) {
    let Some((db, app)) = start_with(backend, "concurrent_receipts", |_| {}).await else { return };
    let t = app.provision(10, 0).await;
    ok(&app, Method::PATCH, &format!("/accounts/{}", t.account), Some(json!({"refundCarrierFailures": true}))).await;
    let id = send(&t, SILENT, TWO_PARTS).await;
    let refs = part_refs(&until_status(&app, &id, "sent").await);
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 8);

    let tasks = (0..12).map(|i| {
        let (url, refs) = (app.url.clone(), refs.clone());
        tokio::spawn(async move {
            let part = &refs[i % 2];
            let status = if i % 3 == 0 { "failed" } else { "undelivered" };
            reqwest::Client::new()
                .post(format!("{url}/admin/v1/simulator/receipts"))
                .bearer_auth(OPERATOR_TOKEN)
                .json(
                    &json!({"receipts": [{"providerRef": part, "status": status, "errorType": "destination_blocked"}]}),
                )
                .send()
                .await
                .expect("receipt")
                .status()
        })
    });
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let m = message(&app, &id).await;
    assert!(m["status"] == "undelivered" || m["status"] == "failed", "{m}");
    assert_eq!(refunds(&app, t.account, &id).await, 1);
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 10);
    let settled = m["events"].as_array().unwrap().iter().filter(|e| e["status"] == m["status"]).count();
    assert_eq!(settled, 1);
    app.stop().await;
    db.remove().await;
}

async fn stop_then_send_then_start_then_send(backend: Backend) {
    let Some((db, app)) = start_with(backend, "stop_start", |_| {}).await else { return };
    let t = app.provision(100, 0).await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    webhook(&app, t.account, &receiver.url, &["message.inbound"]).await;
    let inbound = |body: &str| json!({"from": HANDSET, "to": t.from, "body": body});

    // STOP (any case, padded) opts the handset out and is answered, free.
    let stop = ok(&app, Method::POST, "/simulator/inbound", Some(inbound("  Stop "))).await;
    assert_eq!(stop["optOutChanged"], true, "{stop}");
    assert_eq!(stop["message"]["direction"], "inbound");
    assert_eq!(stop["message"]["status"], "received");
    let reply = &stop["reply"];
    assert_eq!(reply["to"], HANDSET);
    assert_eq!(reply["from"], t.from);
    assert!(reply["body"].as_str().unwrap().contains("unsubscribed"), "{reply}");
    assert_eq!(reply["smsCredits"], 0);
    until_status(&app, reply["id"].as_str().unwrap(), "sent").await;
    let opt_outs = app.admin.opt_outs(t.account).await.unwrap();
    assert!(opt_outs.data.iter().any(|o| o.recipient == HANDSET && o.sender == t.from));

    // A send to the opted-out handset: 201, failed, opted_out, free; in every dialect.
    let before = app.admin.balance(t.account).await.unwrap().sms_credits;
    let req =
        TlSendRequest { to: HANDSET.into(), from: t.from.clone(), body: Some("promo".into()), ..Default::default() };
    let sent = t.client.send(&req).await.unwrap();
    assert_eq!(sent.status, StatusCode::CREATED);
    assert_eq!(serde_json::to_value(sent.message.status).unwrap(), "failed");
    assert_eq!(sent.message.error_type, Some(ErrorType::OptedOut));
    let mb = switchboard_client::MudbaseClient::new(
        &app.url,
        t.account,
        switchboard_client::MudbaseAuth::ApiKey(t.api_key.clone()),
    )
    .unwrap();
    let mb_sent = mb.send_sms(&[HANDSET], "promo", Some(&t.from)).await.unwrap();
    assert_eq!(mb_sent.failure_count, 1, "{mb_sent:?}");
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, before);

    // HELP is answered and changes nothing.
    let help = ok(&app, Method::POST, "/simulator/inbound", Some(inbound("help"))).await;
    assert_eq!(help["optOutChanged"], false);
    assert!(help["reply"]["body"].as_str().unwrap().contains("STOP"));

    // START lifts it; the next send goes out and is charged.
    let start = ok(&app, Method::POST, "/simulator/inbound", Some(inbound("START"))).await;
    assert_eq!(start["optOutChanged"], true);
    let sent = t.client.send(&req).await.unwrap();
    assert_ne!(serde_json::to_value(sent.message.status).unwrap(), "failed");
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, before - 2);

    // An ordinary inbound message: stored, listed through TextingLine, sent as a webhook.
    let hello = ok(&app, Method::POST, "/simulator/inbound", Some(inbound("Hello there"))).await;
    assert!(hello.get("reply").is_none() || hello["reply"].is_null());
    let hello_id = hello["message"]["id"].as_str().unwrap().to_owned();
    let listed = t.client.messages(Some(20), None).await.unwrap();
    let m = listed.data.iter().find(|m| m.id.to_string() == hello_id).expect("the inbound message is listed");
    assert_eq!(serde_json::to_value(m.direction).unwrap(), "inbound");
    assert_eq!(m.from, HANDSET);
    let events = eventually("message.inbound events", LONG, || async {
        let r = receiver.requests();
        (r.len() >= 4).then_some(r)
    })
    .await;
    assert!(events.iter().all(|r| r.json["type"] == "message.inbound"));
    let bodies: HashMap<String, String> = events
        .iter()
        .map(|r| {
            (r.json["data"]["id"].as_str().unwrap().to_owned(), r.json["data"]["body"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(bodies.get(&hello_id).map(String::as_str), Some("Hello there"));

    // Unknown numbers and bad input are refused in the admin shape.
    let (status, _) = admin(
        &app,
        Method::POST,
        "/simulator/inbound",
        Some(json!({"from": HANDSET, "to": "+18009990000", "body": "hi"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in [
        json!({"from": "nope", "to": t.from, "body": "hi"}),
        json!({"from": HANDSET, "to": t.from}),
        json!({"from": HANDSET, "to": t.from, "body": "x".repeat(1601)}),
        json!({"from": HANDSET, "to": t.from, "body": "a\u{0000}b"}),
        json!({"from": HANDSET, "to": t.from, "body": "hi", "extra": 1}),
    ] {
        let (status, err) = admin(&app, Method::POST, "/simulator/inbound", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
    }
    app.stop().await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_deliver_one_event_twice_at_once() {
    const N: usize = 60;
    let Some(db) = TestDb::new(Backend::Postgres, "two_nodes_webhooks").await else { return };
    let node1 = TestApp::start(db.settings()).await;
    let node2 = TestApp::start(db.settings()).await;
    let t = node1.provision(1000, 0).await;
    // Slow enough that both nodes' workers are busy at once.
    let receiver = Receiver::start(0, Duration::from_millis(30)).await;
    webhook(&node1, t.account, &receiver.url, &["message.accepted"]).await;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(send(&t, HANDSET, &format!("m{i}")).await);
    }
    eventually("every event delivered", Duration::from_secs(60), || async {
        ids.iter().all(|id| !receiver.delivered_for(id).is_empty()).then_some(())
    })
    .await;
    assert!(!receiver.overlapped(), "one event was being delivered twice at once");
    let mut seen = HashSet::new();
    for r in receiver.requests() {
        assert!(seen.insert(r.id.clone()), "event {} delivered twice", r.id);
    }
    assert_eq!(seen.len(), N);
    node1.stop().await;
    node2.stop().await;
    db.remove().await;
}

async fn bird_notification_urls_get_signed_bird_events(backend: Backend) {
    let Some((db, app)) = start_with(backend, "bird_notifications", |s| s.simulator_receipt_delay_ms = 50).await else {
        return;
    };
    let t = app.provision(100, 0).await;
    let channel = ok(
        &app,
        Method::POST,
        &format!("/accounts/{}/channels", t.account),
        Some(json!({"name": "sms", "sender": t.from})),
    )
    .await;
    let messages =
        format!("{}/workspaces/{}/channels/{}/messages", app.url, t.account, channel["id"].as_str().unwrap());
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let bird = |to: &str, text: &str| {
        let body = json!({
            "receiver": {"contacts": [{"identifierValue": to}]},
            "body": {"type": "text", "text": {"text": text}},
            "notification": {"url": receiver.url},
        });
        let (messages, auth) = (messages.clone(), format!("AccessKey {}", t.api_key));
        async move {
            let resp =
                reqwest::Client::new().post(&messages).header("authorization", auth).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
            resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    let read = |id: String| {
        let (url, auth) = (format!("{messages}/{id}"), format!("AccessKey {}", t.api_key));
        async move {
            reqwest::Client::new()
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    // Delivered, in Bird's words, with each part's reference.
    let id = bird(HANDSET, TWO_PARTS).await;
    let m = eventually("delivered", LONG, || async {
        let m = read(id.clone()).await;
        (m["status"] == "delivered").then_some(m)
    })
    .await;
    assert_eq!(m["parts"].as_array().unwrap().len(), 2, "{m}");
    // A carrier failure after sending is a delivery failure.
    let failed_id = bird(&undelivered_receipt_number(ErrorType::Unknown), "hi").await;
    eventually("delivery_failed", LONG, || async {
        (read(failed_id.clone()).await["status"] == "delivery_failed").then_some(())
    })
    .await;

    // The notification URL gets Bird's events, signed with the account's notification secret.
    let secret = ok(&app, Method::GET, &format!("/accounts/{}/notification-secret", t.account), None).await;
    let secret = Secret::parse(secret["secret"].as_str().unwrap()).unwrap();
    let got = eventually("accepted, sent and delivered notifications", LONG, || async {
        let r = receiver.delivered_for(&id);
        (r.len() >= 3).then_some(r)
    })
    .await;
    for r in &got {
        assert!(verify(&secret, r), "signature of {}", r.id);
        assert_eq!(r.json["service"], "channels");
        assert_eq!(r.json["event"], "sms.outbound");
        assert_eq!(r.json["payload"]["channelId"], channel["id"]);
    }
    let statuses: HashSet<&str> = got.iter().map(|r| r.json["payload"]["status"].as_str().unwrap()).collect();
    assert!(statuses.contains("delivered") && statuses.contains("sent"), "{statuses:?}");
    app.stop().await;
    db.remove().await;
}
