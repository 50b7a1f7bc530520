//! Alphanumeric sender IDs end to end: assigned through the admin API, sent from through Mudbase
//! and a Bird channel, refused by TextingLine, submitted over SMPP with TON 5 and NPI 0, and never
//! written to.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use switchboard_domain::wire::{CreateSender, TlSendRequest};
use switchboard_smpp::testing::{FakeSmsc, FakeSmscOptions};
use switchboard_tests::{Backend, TestApp, TestDb, admin_call as admin, call, eventually, on_both_backends};

on_both_backends!(alphanumeric_senders_end_to_end);

const HANDSET: &str = "+447400123456";
const LONG: Duration = Duration::from_secs(20);

async fn alphanumeric_senders_end_to_end(backend: Backend) {
    let Some(db) = TestDb::new(backend, "alphanumeric_senders").await else { return };
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let mut settings = db.settings();
    settings.upstreams = vec![switchboard_tests::smpp_upstream(smsc.port(), json!({}))];
    let app = TestApp::start(settings).await;
    let t = app.provision(100, 0).await;
    let account = t.account;
    eventually("the bind", LONG, || async {
        let (_, ups) = admin(&app, Method::GET, "/upstreams", None).await;
        (ups["data"][0]["connected"] == true).then_some(())
    })
    .await;

    // Assigning: a name of 1 to 11 letters, digits and spaces, never MMS-capable.
    let sender = |address: &str, mms: bool| CreateSender { address: address.into(), active: true, sms: true, mms };
    let acme = app.admin.add_sender(account, &sender("ACME Bank", false)).await.expect("an alphanumeric sender");
    assert_eq!((acme.address.as_str(), acme.mms), ("ACME Bank", false));
    for (bad, mms) in [("ACMEACMEACME", false), ("Café", false), ("12345", false), ("AC-ME", false), ("ACME", true)] {
        let e = app.admin.add_sender(account, &sender(bad, mms)).await.expect_err(bad);
        assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST), "{bad}: {e}");
    }
    let (status, body) =
        admin(&app, Method::PATCH, &format!("/accounts/{account}/senders/ACME%20Bank"), Some(json!({"mms": true})))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Mudbase sends from it; a 12-character name is its validation error.
    let mudbase_path = format!("/api/messaging/projects/{account}/messaging/sms");
    let mudbase = |body: Value| call(&app, Method::POST, &mudbase_path, ("x-api-key", t.api_key.clone()), Some(body));
    let (status, body) = mudbase(json!({"to": HANDSET, "message": "Your code is 1234", "from": "ACME Bank"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let from_mudbase = body["data"]["messageId"].as_str().expect("a message id").to_owned();
    let (status, body) = mudbase(json!({"to": HANDSET, "message": "hi", "from": "ACMEACMEACME"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("alphanumeric sender ID"), "{body}");
    // A name assigned to no one is refused as an unassigned number is.
    let (status, body) = mudbase(json!({"to": HANDSET, "message": "hi", "from": "OTHER"})).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("SENDER_NOT_ASSIGNED")), "{body}");

    // TextingLine is E.164 only, as its document says.
    let send =
        TlSendRequest { to: HANDSET.into(), from: "ACME Bank".into(), body: Some("hi".into()), ..Default::default() };
    let e = t.client.send(&send).await.expect_err("TextingLine takes numbers only");
    assert_eq!((e.status(), e.code()), (Some(StatusCode::BAD_REQUEST), Some(&30002.into())), "{e}");

    // A Bird channel sends from it.
    let (status, channel) = admin(
        &app,
        Method::POST,
        &format!("/accounts/{account}/channels"),
        Some(json!({"name": "brand", "sender": "ACME Bank"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    let bird_path = format!("/workspaces/{account}/channels/{}/messages", channel["id"].as_str().unwrap());
    let bird = json!({
        "receiver": {"contacts": [{"identifierValue": HANDSET}]},
        "body": {"type": "text", "text": {"text": "Your parcel is on its way"}},
    });
    let (status, sent) =
        call(&app, Method::POST, &bird_path, ("authorization", format!("AccessKey {}", t.api_key)), Some(bird)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["sender"]["connector"]["identifierValue"], "ACME Bank", "{sent}");

    // Both reach the SMSC from the name, with TON 5 and NPI 0, and are read back from it.
    let submits = eventually("two submissions", LONG, || async {
        let s = smsc.submits();
        (s.len() == 2).then_some(s)
    })
    .await;
    for s in &submits {
        assert_eq!((s.source.as_str(), s.source_ton, s.source_npi), ("ACME Bank", 5, 0));
    }
    let read = t.client.message(&from_mudbase).await.expect("read back");
    assert_eq!(read.from, "ACME Bank");

    // No one can write to a name: an inbound message to it is refused, and STOP goes to numbers.
    let inbound = json!({"from": HANDSET, "to": "ACME Bank", "body": "STOP"});
    let (status, body) = admin(&app, Method::POST, "/simulator/inbound", Some(inbound)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The operator can record an opt-out for it, and the next message to that handset fails free.
    app.admin.add_opt_out(account, "ACME Bank", HANDSET).await.expect("an opt-out for a name");
    let before = app.admin.balance(account).await.unwrap().sms_credits;
    let (status, body) = mudbase(json!({"to": HANDSET, "message": "again", "from": "ACME Bank"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["failureCount"], json!(1), "{body}");
    assert_eq!(app.admin.balance(account).await.unwrap().sms_credits, before);

    app.stop().await;
    db.remove().await;
}
