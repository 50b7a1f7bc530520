//! The admin API, the operational endpoints, and the OpenAPI document.

use reqwest::StatusCode;
use serde_json::Value;
use switchboard_domain::wire::{CreateSender, UpdateSender};
use switchboard_tests::{Backend, TestApp, TestDb, on_both_backends};

on_both_backends!(admin_operations, operational_endpoints);

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
    let metrics = http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_messages_accepted_total"), "{metrics}");
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
