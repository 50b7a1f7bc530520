//! The console's ledger and message pages over plain HTTP: the ledger filtered by kind,
//! message and time with its low-balance form, the message search and a message's page with
//! its timeline, charges and deliveries, the operator's resend, and what an account holder
//! may not see or do there.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use switchboard_domain::wire::TlSendRequest;
use switchboard_tests::{Backend, OPERATOR_TOKEN, Receiver, Tenant, TestApp, TestDb, eventually, on_both_backends};

use crate::console::Console;

on_both_backends!(
    the_ledger_page_filters_entries_and_sets_the_threshold,
    messages_are_found_and_read_with_their_timeline,
    the_operator_resends_a_failed_delivery_from_the_message_page,
);

const HANDSET: &str = "+18005551234";
const LONG: Duration = Duration::from_secs(20);

async fn send(t: &Tenant, to: &str, body: &str) -> String {
    let req = TlSendRequest { to: to.into(), from: t.from.clone(), body: Some(body.into()), ..Default::default() };
    let sent = t.client.send(&req).await.expect("send");
    assert_eq!(sent.status, StatusCode::CREATED);
    sent.message.id.to_string()
}

fn location(page: &crate::console::Page) -> String {
    page.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

/// Reads `path` every 20 ms until `ready` says the page is as awaited, failing after [`LONG`].
async fn until(
    console: &mut Console,
    path: &str,
    what: &str,
    ready: impl Fn(&crate::console::Page) -> bool,
) -> crate::console::Page {
    let start = std::time::Instant::now();
    loop {
        let page = console.get(path).await;
        if ready(&page) {
            return page;
        }
        assert!(start.elapsed() < LONG, "timed out after {LONG:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn holder_of(app: &TestApp, t: &Tenant) -> Console {
    let mut holder = Console::new(app);
    let (key_id, secret) = t.api_key.split_once(':').unwrap();
    assert_eq!(holder.login(key_id, secret).await.status, StatusCode::SEE_OTHER);
    holder
}

async fn the_ledger_page_filters_entries_and_sets_the_threshold(backend: Backend) {
    let Some(db) = TestDb::new(backend, "console_ledger").await else { return };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(20, 0).await;
    let other = app.provision(20, 0).await;
    app.admin
        .top_up(t.account, &switchboard_domain::wire::TopUp { sms: 5, mms: 0, reference: Some("invoice <7>".into()) })
        .await
        .unwrap();
    let sent = send(&t, HANDSET, "charged").await;

    let mut operator = Console::new(&app);
    operator.login("", OPERATOR_TOKEN).await;
    let path = format!("/console/accounts/{}/ledger", t.account);
    let all = operator.get(&path).await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.body.contains("invoice &lt;7&gt;"), "the top-up's reason, escaped");
    assert!(all.body.contains(&format!("href=\"/console/messages/{sent}\"")), "the charge's cause links its message");
    assert!(all.body.contains("id=\"sms-balance\">23<"), "{}", all.body);
    let account_page = operator.get(&format!("/console/accounts/{}", t.account)).await;
    assert!(account_page.body.contains(&format!("href=\"{path}\"")), "the account page leads here");

    let topups = operator.get(&format!("{path}?kind=topup")).await;
    assert!(topups.body.contains("invoice &lt;7&gt;") && !topups.body.contains(&sent));
    let charges = operator.get(&format!("{path}?kind=charge&message={sent}")).await;
    assert!(charges.body.contains(&sent) && !charges.body.contains("invoice"));
    let none = operator.get(&format!("{path}?from=2000-01-01&to=2000-01-02")).await;
    assert!(none.body.contains("No matching ledger entries"), "{}", none.body);
    for bad in ["kind=gift", "from=soon", "message=nope", "from=2026-02-02&to=2026-01-31"] {
        assert_eq!(operator.get(&format!("{path}?{bad}")).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // The threshold: set with the session's token, refused without it.
    let csrf = Console::csrf(&all);
    let form = format!("/console/accounts/{}/low-balance", t.account);
    let refused = operator.post(&form, &[("threshold", "10")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(app.admin.account(t.account).await.unwrap().low_balance_threshold, None);
    let set = operator.post(&form, &[("csrf", &csrf), ("threshold", "10")]).await;
    assert_eq!((set.status, location(&set)), (StatusCode::SEE_OTHER, format!("{path}?done=threshold-set")));
    assert_eq!(app.admin.account(t.account).await.unwrap().low_balance_threshold, Some(10));
    assert!(operator.get(&path).await.body.contains("id=\"threshold\">10 SMS<"));
    for bad in ["0", "-3", "ten", "1000000000000000"] {
        let answer = operator.post(&form, &[("csrf", &csrf), ("threshold", bad)]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(app.admin.account(t.account).await.unwrap().low_balance_threshold, Some(10));

    // The holder: their own ledger and threshold, nothing of another account's.
    let mut holder = holder_of(&app, &t).await;
    let own = holder.get(&path).await;
    assert_eq!(own.status, StatusCode::OK);
    let csrf = Console::csrf(&own);
    let removed = holder.post(&form, &[("csrf", &csrf), ("threshold", "")]).await;
    assert_eq!(location(&removed), format!("{path}?done=threshold-removed"));
    assert_eq!(app.admin.account(t.account).await.unwrap().low_balance_threshold, None);
    let foreign = format!("/console/accounts/{}/ledger", other.account);
    assert_eq!(holder.get(&foreign).await.status, StatusCode::NOT_FOUND);
    let foreign_form = format!("/console/accounts/{}/low-balance", other.account);
    assert_eq!(holder.post(&foreign_form, &[("csrf", &csrf), ("threshold", "5")]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.admin.account(other.account).await.unwrap().low_balance_threshold, None);
    app.stop().await;
    db.remove().await;
}

async fn messages_are_found_and_read_with_their_timeline(backend: Backend) {
    let Some(db) = TestDb::new(backend, "console_messages").await else { return };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(20, 0).await;
    let other = app.provision(20, 0).await;
    let mine = send(&t, HANDSET, "mine").await;
    let theirs = send(&other, "+18005554321", "theirs").await;

    let mut operator = Console::new(&app);
    operator.login("", OPERATOR_TOKEN).await;
    let everything = operator.get("/console/messages").await;
    assert_eq!(everything.status, StatusCode::OK);
    assert!(everything.body.contains(&mine) && everything.body.contains(&theirs));
    let by_id = operator.get(&format!("/console/messages?id={theirs}")).await;
    assert!(by_id.body.contains(&theirs) && !by_id.body.contains(&mine));
    let whole = operator.get("/console/messages?recipient=%2B18005551234").await;
    assert!(whole.body.contains(&mine) && !whole.body.contains(&theirs));
    let prefix = operator.get("/console/messages?recipient=%2B1800555").await;
    assert!(!prefix.body.contains(&mine), "never a prefix search");
    let smpp = operator.get("/console/messages?dialect=smpp").await;
    assert!(!smpp.body.contains(&mine));
    let texting = operator.get(&format!("/console/messages?dialect=textingline&account={}", t.account)).await;
    assert!(texting.body.contains(&mine) && !texting.body.contains(&theirs));
    assert_eq!(operator.get("/console/messages?recipient=123").await.status, StatusCode::BAD_REQUEST);

    // The timeline grows as the message moves: sent, then delivered by its receipt.
    let page_path = format!("/console/messages/{mine}");
    let sent = until(&mut operator, &page_path, "the message sent", |p| p.body.contains("class=\"step sent\"")).await;
    assert!(sent.body.contains("class=\"step accepted\"") && sent.body.contains("class=\"step queued\""));
    assert!(!sent.body.contains("class=\"step delivered\""));
    assert!(sent.body.contains("id=\"charges\""), "its charge");
    let message = app.admin.message(mine.parse().unwrap()).await.unwrap();
    let part = message.parts[0].provider_ref.clone();
    app.admin
        .inject_receipts(
            &serde_json::from_value(json!({"receipts": [{"providerRef": part, "status": "delivered"}]})).unwrap(),
        )
        .await
        .unwrap();
    let delivered = operator.get(&page_path).await;
    assert!(delivered.body.contains("class=\"step delivered\""), "{}", delivered.body);

    // The holder finds their own messages only; another's is not found, and its number never shown.
    let mut holder = holder_of(&app, &t).await;
    let list = holder.get("/console/messages").await;
    assert!(list.body.contains(&mine) && !list.body.contains(&theirs) && !list.body.contains("+18005554321"));
    let asked = holder.get(&format!("/console/messages?account={}", other.account)).await;
    assert!(!asked.body.contains(&theirs), "the form's account is ignored for a holder");
    let by_id = holder.get(&format!("/console/messages?id={theirs}")).await;
    // The id asked for stays in the form; the message is not listed, nor its number shown.
    assert!(!by_id.body.contains(&format!("/console/messages/{theirs}")) && !by_id.body.contains("+18005554321"));
    assert!(by_id.body.contains("No message matches."));
    assert_eq!(holder.get(&format!("/console/messages/{theirs}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(holder.get(&page_path).await.status, StatusCode::OK);
    app.stop().await;
    db.remove().await;
}

async fn the_operator_resends_a_failed_delivery_from_the_message_page(backend: Backend) {
    let Some(db) = TestDb::new(backend, "console_resend").await else { return };
    let app = TestApp::start(switchboard::Settings { webhook_max_age_secs: 1, ..db.settings() }).await;
    let t = app.provision(20, 0).await;
    let receiver = Receiver::start(usize::MAX, Duration::ZERO).await;
    let hook = app
        .admin
        .create_webhook(
            t.account,
            &serde_json::from_value(json!({"url": receiver.url, "events": ["message.accepted"]})).unwrap(),
        )
        .await
        .unwrap();
    let id = send(&t, HANDSET, "resend me").await;
    let page_path = format!("/console/messages/{id}");
    let mut operator = Console::new(&app);
    operator.login("", OPERATOR_TOKEN).await;
    let failed = until(&mut operator, &page_path, "the delivery failed", |p| p.body.contains(">Resend<")).await;
    assert!(failed.body.contains("HTTP 500"), "its attempts are listed");

    // The holder sees the deliveries but no button, and may not post one.
    let mut holder = holder_of(&app, &t).await;
    let own = holder.get(&page_path).await;
    assert!(own.body.contains("id=\"deliveries\"") && !own.body.contains(">Resend<"));
    assert!(
        !own.body.contains(&receiver.url) && failed.body.contains(&receiver.url),
        "the URL's path for the operator only"
    );
    let event = {
        let at = failed.body.find("name=\"event\" value=\"").unwrap() + "name=\"event\" value=\"".len();
        failed.body[at..].split('"').next().unwrap().to_owned()
    };
    let hook_id = hook.id.to_string();
    let form = format!("{page_path}/resend");
    let holder_csrf = Console::csrf(&own);
    let refused = holder.post(&form, &[("csrf", &holder_csrf), ("event", &event), ("webhook", &hook_id)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Nor without the token.
    assert_eq!(operator.post(&form, &[("event", &event), ("webhook", &hook_id)]).await.status, StatusCode::FORBIDDEN);

    receiver.set_fail_first(0);
    let csrf = Console::csrf(&failed);
    let resent = operator.post(&form, &[("csrf", &csrf), ("event", &event), ("webhook", &hook_id)]).await;
    assert_eq!((resent.status, location(&resent)), (StatusCode::SEE_OTHER, format!("{page_path}?done=resent")));
    eventually("the resent delivery delivered", LONG, || async {
        receiver.requests().iter().any(|r| r.answered == 204 && r.id == event).then_some(())
    })
    .await;
    let again = operator.post(&form, &[("csrf", &csrf), ("event", &event), ("webhook", &hook_id)]).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "once: it is no longer failed");
    app.stop().await;
    db.remove().await;
}
