//! What the operator reads of an account's money and messages, end to end: the low-balance
//! alert and its signed `account.balance_low` event, the ledger filtered by kind, message and
//! time, the message search (by id, whole recipient, status, dialect and time), one message
//! with its history, charge and webhook deliveries, and the resend of a failed delivery.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::cli::{AccountsCmd, AdminArgs, AdminCommand, CreditsCmd, MessagesCmd, WebhooksCmd};
use switchboard_client::{LedgerQuery, MessageQuery};
use switchboard_domain::wire::TlSendRequest;
use switchboard_domain::{Dialect, Msisdn};
use switchboard_signing::Secret;
use switchboard_tests::{
    Backend, OPERATOR_TOKEN, Receiver, Tenant, TestApp, TestDb, admin_call, eventually, on_both_backends,
};
use uuid::Uuid;

on_both_backends!(
    the_low_balance_event_is_posted_once_per_crossing,
    the_threshold_is_checked_and_can_be_removed,
    the_ledger_is_filtered_by_kind_message_and_time,
    messages_are_found_by_id_whole_recipient_status_dialect_and_time,
    a_message_is_read_with_its_history_charge_and_deliveries,
    a_failed_delivery_is_resent_once_with_a_fresh_budget,
);

const HANDSET: &str = "+18005551234";
const OTHER: &str = "+18005554321";
const LONG: Duration = Duration::from_secs(20);

async fn start(
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

async fn ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, v) = admin_call(app, method, path, body).await;
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn webhook(app: &TestApp, account: Uuid, url: &str, events: &[&str]) -> (String, Secret) {
    let hook =
        ok(app, Method::POST, &format!("/accounts/{account}/webhooks"), Some(json!({"url": url, "events": events})))
            .await;
    let secret = Secret::parse(hook["secret"].as_str().expect("secret")).expect("a whsec_ secret");
    (hook["id"].as_str().expect("id").to_owned(), secret)
}

async fn send(t: &Tenant, to: &str, body: &str) -> String {
    let req = TlSendRequest { to: to.into(), from: t.from.clone(), body: Some(body.into()), ..Default::default() };
    let sent = t.client.send(&req).await.expect("send");
    assert_eq!(sent.status, StatusCode::CREATED);
    sent.message.id.to_string()
}

fn verify(secret: &Secret, r: &switchboard_tests::Received) -> bool {
    let ts: i64 = r.timestamp.parse().expect("a numeric webhook-timestamp");
    let now = switchboard_domain::Timestamp::now().millis() / 1000;
    switchboard_signing::verify(secret, &r.id, ts, &r.body, &r.signature, now, 300)
}

/// Runs an admin command line against the server.
async fn cli(app: &TestApp, command: AdminCommand) -> Result<(), String> {
    let args = AdminArgs {
        server: app.url.clone(),
        token: Some(OPERATOR_TOKEN.into()),
        data_dir: std::env::temp_dir(),
        command,
    };
    switchboard::cli::run_admin(args).await.map_err(|e| format!("{e:#}"))
}

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().expect("data").iter().map(|m| m["id"].as_str().expect("id").to_owned()).collect()
}

/// The deliveries the outbox holds for one endpoint: written with the charge, so counting
/// them right after a send is exact.
async fn deliveries_to(app: &TestApp, account: Uuid, hook: &str) -> Vec<Value> {
    let page =
        ok(app, Method::GET, &format!("/accounts/{account}/webhook-deliveries?webhook={hook}&limit=100"), None).await;
    page["data"].as_array().expect("data").clone()
}

async fn the_low_balance_event_is_posted_once_per_crossing(backend: Backend) {
    let Some((db, app)) = start(backend, "balance_low", |_| {}).await else { return };
    // 8 messages' worth; an SMS costs 2 SMS credits.
    let t = app.provision(16, 0).await;
    let account =
        ok(&app, Method::PATCH, &format!("/accounts/{}", t.account), Some(json!({"lowBalanceThreshold": 10}))).await;
    assert_eq!(account["lowBalanceThreshold"], 10);
    assert_eq!(ok(&app, Method::GET, &format!("/accounts/{}", t.account), None).await["lowBalanceThreshold"], 10);
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let (hook, secret) = webhook(&app, t.account, &receiver.url, &["account.balance_low"]).await;
    let other = Receiver::start(0, Duration::ZERO).await;
    let (other_hook, _) = webhook(&app, t.account, &other.url, &["message.accepted"]).await;

    // 16 → 14 → 12 → 10: at the threshold is not below it.
    for n in 0..3 {
        send(&t, HANDSET, &format!("above {n}")).await;
    }
    assert!(deliveries_to(&app, t.account, &hook).await.is_empty());
    // 10 → 8 crosses it.
    let crossing = send(&t, HANDSET, "crossing").await;
    let got = deliveries_to(&app, t.account, &hook).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0]["eventType"].as_str(), got[0]["messageId"].as_str()),
        (Some("account.balance_low"), Some(crossing.as_str()))
    );
    // Below it already: 8 → 6 → 4, no more.
    send(&t, HANDSET, "below 1").await;
    send(&t, HANDSET, "below 2").await;
    assert_eq!(deliveries_to(&app, t.account, &hook).await.len(), 1);

    let posted = eventually("the balance_low event", LONG, || async {
        let got: Vec<_> = receiver.requests().into_iter().filter(|r| r.answered == 204).collect();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(posted.len(), 1);
    let event = &posted[0];
    assert!(verify(&secret, event), "the event's signature verifies");
    assert!(!verify(&Secret::generate(), event));
    assert_eq!(event.json["type"], "account.balance_low");
    assert_eq!(event.json["id"], event.id);
    assert_eq!(event.json["data"]["accountId"], t.account.to_string());
    assert_eq!(event.json["data"]["smsCredits"], 8);
    assert_eq!(event.json["data"]["lowBalanceThreshold"], 10);
    assert_eq!(event.json["data"]["messageId"], crossing);

    // A top-up above the threshold arms it again: 4 + 10 = 14 → 12 → 10 → 8 crosses again.
    ok(&app, Method::POST, &format!("/accounts/{}/credits", t.account), Some(json!({"sms": 10, "mms": 0}))).await;
    send(&t, HANDSET, "again 1").await;
    send(&t, HANDSET, "again 2").await;
    assert_eq!(deliveries_to(&app, t.account, &hook).await.len(), 1);
    let second = send(&t, HANDSET, "again 3").await;
    let got = deliveries_to(&app, t.account, &hook).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["messageId"], second, "newest first");
    let posted = eventually("the second balance_low event", LONG, || async {
        let got: Vec<_> = receiver.requests().into_iter().filter(|r| r.answered == 204).collect();
        (got.len() == 2).then_some(got)
    })
    .await;
    assert!(posted.iter().all(|r| verify(&secret, r)));
    assert_ne!(posted[0].id, posted[1].id);
    assert_eq!(posted[1].json["data"]["smsCredits"], 8);
    assert_eq!(posted[1].json["data"]["messageId"], second);
    // An endpoint that does not take the event never gets it.
    assert!(deliveries_to(&app, t.account, &other_hook).await.iter().all(|d| d["eventType"] == "message.accepted"));
    app.stop().await;
    db.remove().await;
}

async fn the_threshold_is_checked_and_can_be_removed(backend: Backend) {
    let Some((db, app)) = start(backend, "balance_low_checks", |_| {}).await else { return };
    let t = app.provision(10, 0).await;
    let path = format!("/accounts/{}", t.account);
    for bad in [json!(0), json!(-5), json!(1_000_000_000_001_i64), json!("ten"), json!(1.5)] {
        let (status, body) = admin_call(&app, Method::PATCH, &path, Some(json!({"lowBalanceThreshold": bad}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    // A refused change changes nothing, not even the fields beside it.
    let (status, _) =
        admin_call(&app, Method::PATCH, &path, Some(json!({"refundCarrierFailures": true, "lowBalanceThreshold": 0})))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let account = ok(&app, Method::GET, &path, None).await;
    assert_eq!(account["refundCarrierFailures"], false);
    assert!(account.get("lowBalanceThreshold").is_none(), "{account}");

    let set = app.admin.set_low_balance_threshold(t.account, Some(3)).await.expect("set");
    assert_eq!(set.low_balance_threshold, Some(3));
    let credits = Some(4);
    cli(&app, AdminCommand::Accounts(AccountsCmd::SetLowBalanceThreshold { account: t.account, credits, none: false }))
        .await
        .expect("the command line sets it");
    assert_eq!(app.admin.account(t.account).await.unwrap().low_balance_threshold, Some(4));
    let kept = ok(&app, Method::PATCH, &path, Some(json!({"rateLimit": 50}))).await;
    assert_eq!(kept["lowBalanceThreshold"], 4, "absent leaves it");
    let removed = ok(&app, Method::PATCH, &path, Some(json!({"lowBalanceThreshold": null}))).await;
    assert!(removed.get("lowBalanceThreshold").is_none(), "{removed}");
    cli(
        &app,
        AdminCommand::Accounts(AccountsCmd::SetLowBalanceThreshold {
            account: t.account,
            credits: Some(0),
            none: false,
        }),
    )
    .await
    .expect_err("0 is refused");
    // Without a threshold nothing is posted, whatever the balance does.
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let (hook, _) = webhook(&app, t.account, &receiver.url, &[]).await;
    for n in 0..5 {
        send(&t, HANDSET, &format!("no alert {n}")).await;
    }
    assert!(deliveries_to(&app, t.account, &hook).await.iter().all(|d| d["eventType"] != "account.balance_low"));
    app.stop().await;
    db.remove().await;
}

async fn the_ledger_is_filtered_by_kind_message_and_time(backend: Backend) {
    let Some((db, app)) = start(backend, "ledger_filters", |_| {}).await else { return };
    let t = app.provision(100, 0).await;
    let first = send(&t, HANDSET, "first").await;
    let first_id: switchboard_domain::MessageId = first.parse().unwrap();
    let second = send(&t, HANDSET, "second").await;
    let topup = ok(
        &app,
        Method::POST,
        &format!("/accounts/{}/credits", t.account),
        Some(json!({"sms": 7, "mms": 0, "reference": "invoice 42"})),
    )
    .await;
    let base = format!("/accounts/{}/ledger", t.account);

    let all = ok(&app, Method::GET, &base, None).await;
    let kinds: Vec<&str> = all["data"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["topup", "charge", "charge", "topup"], "newest first");
    assert_eq!(all["capped"], false);
    assert!(all.get("nextCursor").is_none());

    let topups = ok(&app, Method::GET, &format!("{base}?kind=topup"), None).await;
    let refs: Vec<&Value> = topups["data"].as_array().unwrap().iter().map(|e| &e["reference"]).collect();
    assert_eq!(refs, [&json!("invoice 42"), &Value::Null]);

    let charges = ok(&app, Method::GET, &format!("{base}?kind=charge&limit=1"), None).await;
    assert_eq!(charges["data"][0]["messageId"], second);
    assert_eq!(charges["data"][0]["smsDelta"], -2);
    let cursor = charges["nextCursor"].as_str().expect("a second page");
    let next = ok(&app, Method::GET, &format!("{base}?kind=charge&limit=1&cursor={cursor}"), None).await;
    assert_eq!(next["data"][0]["messageId"], first);
    assert_eq!(next["data"].as_array().unwrap().len(), 1);

    // The client and the command line ask the same.
    let query = LedgerQuery { kind: Some("charge".into()), message: Some(first_id), ..LedgerQuery::default() };
    let found = app.admin.search_ledger(t.account, &query).await.unwrap();
    assert_eq!((found.data.len(), found.data[0].message_id, found.capped), (1, Some(first_id), false));
    let ledger = CreditsCmd::Ledger {
        account: t.account,
        limit: 10,
        kind: Some("topup".into()),
        message: None,
        from: None,
        to: None,
        cursor: None,
    };
    cli(&app, AdminCommand::Credits(ledger)).await.expect("the command line lists the ledger");
    let of_first = ok(&app, Method::GET, &format!("{base}?message={first}"), None).await;
    assert_eq!(of_first["data"].as_array().unwrap().len(), 1);
    assert_eq!(of_first["data"][0]["kind"], "charge");
    assert!(
        ok(&app, Method::GET, &format!("{base}?message={first}&kind=refund"), None).await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A time range: from the top-up's time on, only the top-up; before it, the rest.
    let at = topup["createdAt"].as_str().unwrap();
    let from = ok(&app, Method::GET, &format!("{base}?from={at}"), None).await;
    assert_eq!(from["data"].as_array().unwrap().len(), 1);
    assert_eq!(from["data"][0]["reference"], "invoice 42");
    let before = ok(&app, Method::GET, &format!("{base}?to={at}"), None).await;
    assert_eq!(before["data"].as_array().unwrap().len(), 3);

    for bad in [
        "kind=gift",
        "from=yesterday",
        "message=nope",
        "limit=0",
        "cursor=zz",
        "from=2026-02-02&to=2026-02-01",
        "colour=red",
    ] {
        let (status, body) = admin_call(&app, Method::GET, &format!("{base}?{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = admin_call(&app, Method::GET, &format!("/accounts/{}/ledger", Uuid::new_v4()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
    db.remove().await;
}

async fn messages_are_found_by_id_whole_recipient_status_dialect_and_time(backend: Backend) {
    let Some((db, app)) = start(backend, "message_search", |_| {}).await else { return };
    let t = app.provision(100, 0).await;
    let u = app.provision(100, 0).await;
    let a = send(&t, HANDSET, "to the handset").await;
    let b = send(&t, OTHER, "to the other").await;
    let c = send(&u, HANDSET, "another account's").await;
    let inbound =
        ok(&app, Method::POST, "/simulator/inbound", Some(json!({"from": OTHER, "to": t.from, "body": "hello"}))).await;
    let inbound_id = inbound["message"]["id"].as_str().expect("the inbound message").to_owned();

    let search = |q: String| {
        let app = &app;
        async move { ok(app, Method::GET, &format!("/messages?{q}"), None).await }
    };
    // Every account's, newest first, for the operator.
    let everything = search(String::new()).await;
    assert_eq!(ids(&everything), [inbound_id.as_str(), c.as_str(), b.as_str(), a.as_str()]);
    assert_eq!(everything["capped"], false);
    assert_eq!(everything["data"][0]["dialect"], "inbound");
    assert_eq!(everything["data"][1]["dialect"], "textingline");

    assert_eq!(ids(&search(format!("id={b}")).await), [b.as_str()]);
    assert!(ids(&search(format!("id={b}&status=delivered")).await).is_empty(), "the id must match the filter too");
    assert_eq!(ids(&search(format!("account={}", t.account)).await), [inbound_id.as_str(), b.as_str(), a.as_str()]);
    assert_eq!(ids(&search("recipient=%2B18005551234".to_owned()).await), [c.as_str(), a.as_str()]);
    assert_eq!(ids(&search(format!("recipient=%2B18005551234&account={}", t.account)).await), [a.as_str()]);
    let query = MessageQuery {
        recipient: Some(Msisdn::parse(HANDSET).unwrap()),
        account: Some(t.account),
        dialect: Some(Dialect::TextingLine),
        ..MessageQuery::default()
    };
    let found = app.admin.search_messages(&query).await.unwrap();
    assert_eq!(found.data.iter().map(|m| m.id.to_string()).collect::<Vec<_>>(), [a.as_str()]);
    let search_cmd = MessagesCmd::Search {
        id: None,
        account: Some(t.account),
        recipient: Some(Msisdn::parse(HANDSET).unwrap()),
        status: None,
        dialect: Some("textingline".into()),
        from: None,
        to: None,
        limit: 10,
        cursor: None,
    };
    cli(&app, AdminCommand::Messages(search_cmd)).await.expect("the command line searches");
    // Whole numbers only: a prefix finds nothing.
    assert!(ids(&search("recipient=%2B1800555123".into()).await).is_empty());
    assert_eq!(ids(&search("dialect=inbound".into()).await), [inbound_id.as_str()]);
    assert_eq!(ids(&search("dialect=textingline".into()).await), [c.as_str(), b.as_str(), a.as_str()]);
    assert!(ids(&search("dialect=smpp".into()).await).is_empty());
    assert_eq!(ids(&search("status=received".into()).await), [inbound_id.as_str()]);

    // A time range is an id range: from b's creation on, and before it.
    let b_at = ok(&app, Method::GET, &format!("/messages/{b}"), None).await["createdAt"].as_str().unwrap().to_owned();
    let a_at = ok(&app, Method::GET, &format!("/messages/{a}"), None).await["createdAt"].as_str().unwrap().to_owned();
    assert!(a_at < b_at, "sent one after the other");
    assert_eq!(ids(&search(format!("account={}&from={b_at}", t.account)).await), [inbound_id.as_str(), b.as_str()]);
    assert_eq!(ids(&search(format!("account={}&to={b_at}", t.account)).await), [a.as_str()]);

    // Pages follow the cursor.
    let first = search("limit=2".into()).await;
    assert_eq!(ids(&first), [inbound_id.as_str(), c.as_str()]);
    let cursor = first["nextCursor"].as_str().expect("more");
    let second = search(format!("limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&second), [b.as_str(), a.as_str()]);
    assert!(second.get("nextCursor").is_none());

    for bad in [
        "recipient=123",
        "status=lost",
        "dialect=fax",
        "id=msg_nope",
        "account=nope",
        "from=never",
        "limit=1001",
        "colour=red",
    ] {
        let (status, body) = admin_call(&app, Method::GET, &format!("/messages?{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    app.stop().await;
    db.remove().await;
}

async fn a_message_is_read_with_its_history_charge_and_deliveries(backend: Backend) {
    let Some((db, app)) = start(backend, "message_detail", |_| {}).await else { return };
    let t = app.provision(100, 0).await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let (hook, _) = webhook(&app, t.account, &receiver.url, &["message.accepted", "message.sent"]).await;
    let id = send(&t, HANDSET, "read me whole").await;
    let m = eventually("the message sent, with both deliveries made", LONG, || async {
        let m = ok(&app, Method::GET, &format!("/messages/{id}"), None).await;
        let delivered = m["webhookDeliveries"]
            .as_array()
            .is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["state"] == "delivered"));
        (m["status"] == "sent" && delivered).then_some(m)
    })
    .await;
    let statuses: Vec<&str> = m["events"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["accepted", "queued", "sent"]);
    assert_eq!(m["parts"].as_array().unwrap().len(), 1);
    assert_eq!(m["dialect"], "textingline");
    let ledger = m["ledger"].as_array().unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0]["kind"].as_str(), ledger[0]["smsDelta"].as_i64()), (Some("charge"), Some(-2)));
    for d in m["webhookDeliveries"].as_array().unwrap() {
        assert_eq!(d["endpointId"], hook);
        assert_eq!(d["messageId"], id);
        let log = d["attemptLog"].as_array().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["statusCode"], 204);
    }
    let (status, _) =
        admin_call(&app, Method::GET, &format!("/messages/{}", switchboard_domain::MessageId::new()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
    db.remove().await;
}

async fn a_failed_delivery_is_resent_once_with_a_fresh_budget(backend: Backend) {
    // Deliveries are given up one second after their event.
    let Some((db, app)) = start(backend, "resend", |s| s.webhook_max_age_secs = 1).await else { return };
    let t = app.provision(100, 0).await;
    let receiver = Receiver::start(usize::MAX, Duration::ZERO).await;
    let (hook, secret) = webhook(&app, t.account, &receiver.url, &["message.accepted"]).await;
    let id = send(&t, HANDSET, "resend me").await;
    let path = format!("/accounts/{}/webhook-deliveries?webhook={hook}&message={id}", t.account);
    let failed = eventually("the delivery given up", LONG, || async {
        let page = ok(&app, Method::GET, &path, None).await;
        (page["data"][0]["state"] == "failed").then(|| page["data"][0].clone())
    })
    .await;
    let event = failed["eventId"].as_str().unwrap().to_owned();
    let tried = failed["attempts"].as_u64().unwrap();
    assert!(tried >= 1);
    assert!(receiver.requests().iter().all(|r| r.answered == 500));

    receiver.set_fail_first(0);
    let event_id: switchboard_domain::EventId = event.parse().unwrap();
    let resent = app.admin.retry_delivery(event_id, Some(hook.parse().unwrap())).await.expect("resent");
    assert_eq!(resent.data.len(), 1);
    assert_eq!(resent.data[0].state, "pending");
    // Once: while it is pending again (or once delivered), another resend is refused.
    let (status, body) = admin_call(&app, Method::POST, &format!("/webhook-deliveries/{event}/retry"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    cli(&app, AdminCommand::Webhooks(WebhooksCmd::Retry { event: event_id, webhook: None }))
        .await
        .expect_err("nor through the command line");

    let delivered = eventually("the resent delivery delivered", LONG, || async {
        let page = ok(&app, Method::GET, &path, None).await;
        (page["data"][0]["state"] == "delivered").then(|| page["data"][0].clone())
    })
    .await;
    // A fresh budget: the first attempt after the resend went out at once and delivered it,
    // though the event is older than the retry period; the earlier attempts stay in the log.
    assert_eq!(delivered["attempts"].as_u64(), Some(tried + 1));
    let log = delivered["attemptLog"].as_array().unwrap();
    assert_eq!(log.len() as u64, tried + 1);
    assert_eq!(log.last().unwrap()["statusCode"], 204);
    let ok_posts: Vec<_> = receiver.requests().into_iter().filter(|r| r.answered == 204).collect();
    assert_eq!(ok_posts.len(), 1);
    assert_eq!(ok_posts[0].id, event);
    assert!(verify(&secret, &ok_posts[0]));
    let (status, _) = admin_call(&app, Method::POST, &format!("/webhook-deliveries/{event}/retry"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a delivered delivery is not resent");

    let (status, _) = admin_call(
        &app,
        Method::POST,
        &format!("/webhook-deliveries/{}/retry", switchboard_domain::EventId::new()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        admin_call(&app, Method::POST, &format!("/webhook-deliveries/{event}/retry?webhook=nope"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = admin_call(&app, Method::POST, "/webhook-deliveries/evt_nope/retry", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
    db.remove().await;
}
