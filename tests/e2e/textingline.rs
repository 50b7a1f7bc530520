//! The TextingLine dialect as its document describes it.

use std::time::Duration;

use reqwest::StatusCode;
use switchboard_domain::wire::{TlSendRequest, TlStatus, UpdateSender};
use switchboard_domain::{ErrorType, MessageStatus};
use switchboard_tests::{Backend, TestApp, TestDb, eventually, on_both_backends};

on_both_backends!(
    sms_is_sent_charged_and_readable,
    mms_costs_an_mms_credit,
    opted_out_is_201_failed_and_free,
    textingline_error_codes_charge_nothing,
    simulator_failures_are_refunded,
    slow_provider_answers_queued_then_sends,
    retryable_failures_are_retried,
    listing_pages_newest_first,
    idempotency_replays_and_conflicts,
    credentials_and_account_scope,
);

fn sms(from: &str, to: &str, body: &str) -> TlSendRequest {
    TlSendRequest { to: to.into(), from: from.into(), body: Some(body.into()), ..Default::default() }
}

async fn sms_is_sent_charged_and_readable(backend: Backend) {
    let Some(db) = TestDb::new(backend, "sms_is_sent_charged_and_readable").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(10, 0).await;

    let sent = t.client.send(&sms(&t.from, "+18005551234", "Your verification code is 482910")).await.unwrap();
    assert_eq!(sent.status, StatusCode::CREATED);
    let m = sent.message;
    assert!(m.id.to_string().starts_with("msg_"));
    assert_eq!(
        (m.to.as_str(), m.from.as_str(), m.body.as_deref()),
        ("+18005551234", t.from.as_str(), Some("Your verification code is 482910"))
    );
    assert_eq!(m.direction, switchboard_domain::Direction::Outbound);
    assert!(m.error_type.is_none() && m.error_message.is_none());
    // The simulator answers at once, so the message is sent within the short wait or soon after.
    let read = eventually("the message to be sent", Duration::from_secs(10), || async {
        let m = t.client.message(&m.id.to_string()).await.unwrap();
        (m.status == TlStatus::Sent).then_some(m)
    })
    .await;
    assert!(read.sent_at.is_some());
    assert_eq!(read.created_at, m.created_at);

    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 8);
    let ledger = app.admin.ledger(t.account, 10, None).await.unwrap().data;
    assert_eq!(ledger[0].kind, "charge");
    assert_eq!((ledger[0].sms_delta, ledger[0].message_id), (-2, Some(m.id)));

    let full = app.admin.message(m.id).await.unwrap();
    let statuses: Vec<MessageStatus> = full.events.iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![MessageStatus::Accepted, MessageStatus::Queued, MessageStatus::Sent]);
    assert_eq!((full.encoding, full.segments), (switchboard_domain::Encoding::Gsm7, 1));

    // Encoding and segments are stored: a 161-character GSM text takes two parts, Cyrillic UCS-2.
    let long = t.client.send(&sms(&t.from, "+18005551234", &"a".repeat(161))).await.unwrap().message;
    assert_eq!(app.admin.message(long.id).await.unwrap().segments, 2);
    let ucs2 = t.client.send(&sms(&t.from, "+18005551234", "Привет")).await.unwrap().message;
    let ucs2 = app.admin.message(ucs2.id).await.unwrap();
    assert_eq!((ucs2.encoding, ucs2.segments), (switchboard_domain::Encoding::Ucs2, 1));
    app.stop().await;
    db.remove().await;
}

async fn mms_costs_an_mms_credit(backend: Backend) {
    let Some(db) = TestDb::new(backend, "mms_costs_an_mms_credit").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(10, 1).await;
    let req = TlSendRequest {
        to: "+18005551234".into(),
        from: t.from.clone(),
        body: Some("Check out our new collection!".into()),
        media_url: Some("https://example.com/images/promo.jpg".into()),
        ..Default::default()
    };
    let m = t.client.send(&req).await.unwrap().message;
    assert_eq!(m.media_url.as_deref(), Some("https://example.com/images/promo.jpg"));
    let b = app.admin.balance(t.account).await.unwrap();
    assert_eq!((b.sms_credits, b.mms_credits), (8, 0));
    // Media alone is an MMS too; with no MMS credit left it is refused (33023) and costs nothing.
    let media_only = TlSendRequest { body: None, ..req.clone() };
    let err = t.client.send(&media_only).await.unwrap_err();
    assert_eq!((err.status(), err.code().cloned()), (Some(StatusCode::PAYMENT_REQUIRED), Some(33023.into())));
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 8);
    // A sender without MMS capability cannot send one.
    app.admin
        .update_sender(t.account, &t.from, &UpdateSender { mms: Some(false), ..Default::default() })
        .await
        .unwrap();
    app.admin.top_up(t.account, &switchboard_domain::wire::TopUp { sms: 0, mms: 5, reference: None }).await.unwrap();
    let err = t.client.send(&req).await.unwrap_err();
    assert_eq!(err.code(), Some(&30003.into()));
    app.stop().await;
    db.remove().await;
}

async fn opted_out_is_201_failed_and_free(backend: Backend) {
    let Some(db) = TestDb::new(backend, "opted_out_is_201_failed_and_free").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(2, 0).await;
    app.admin.add_opt_out(t.account, &t.from, "+18005551234").await.unwrap();
    let sent = t.client.send(&sms(&t.from, "+18005551234", "Your verification code is 482910")).await.unwrap();
    assert_eq!(sent.status, StatusCode::CREATED);
    let m = sent.message;
    assert_eq!(m.status, TlStatus::Failed);
    assert_eq!(m.error_type, Some(ErrorType::OptedOut));
    assert_eq!(
        m.error_message.as_deref(),
        Some("The recipient has opted out from receiving messages from this sender.")
    );
    assert!(m.sent_at.is_none());
    let json = serde_json::to_value(&m).unwrap();
    assert!(json.get("sentAt").is_none(), "{json}");
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 2);
    // Lifting the opt-out lets the next message through.
    app.admin.remove_opt_out(t.account, &t.from, "+18005551234").await.unwrap();
    let m = t.client.send(&sms(&t.from, "+18005551234", "again")).await.unwrap().message;
    assert_ne!(m.status, TlStatus::Failed);
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 0);
    app.stop().await;
    db.remove().await;
}

async fn textingline_error_codes_charge_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend, "textingline_error_codes_charge_nothing").await else {
        return;
    };
    let mut settings = db.settings();
    settings.blocked_terms = vec!["casino".into()];
    let app = TestApp::start(settings).await;
    let t = app.provision(3, 0).await;
    let other = app.provision(10, 0).await;
    let code =
        |e: switchboard_client::ClientError| (e.status().map(|s| s.as_u16()), e.code().and_then(|c| c.as_number()));

    // 33004: a number of another account, and a number of no account.
    assert_eq!(
        code(t.client.send(&sms(&other.from, "+18005551234", "x")).await.unwrap_err()),
        (Some(400), Some(33004))
    );
    assert_eq!(
        code(t.client.send(&sms("+18009990000", "+18005551234", "x")).await.unwrap_err()),
        (Some(400), Some(33004))
    );
    // 33009: inactive.
    app.admin
        .update_sender(t.account, &t.from, &UpdateSender { active: Some(false), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(code(t.client.send(&sms(&t.from, "+18005551234", "x")).await.unwrap_err()), (Some(400), Some(33009)));
    app.admin
        .update_sender(t.account, &t.from, &UpdateSender { active: Some(true), ..Default::default() })
        .await
        .unwrap();
    // 33016: a character no encoding carries.
    assert_eq!(
        code(t.client.send(&sms(&t.from, "+18005551234", "code\u{0}42")).await.unwrap_err()),
        (Some(400), Some(33016))
    );
    assert_eq!(
        code(t.client.send(&sms(&t.from, "+18005551234", "bell\u{7}")).await.unwrap_err()),
        (Some(400), Some(33016))
    );
    // 33019: compliance rules.
    assert_eq!(
        code(t.client.send(&sms(&t.from, "+18005551234", "Best CASINO in town")).await.unwrap_err()),
        (Some(400), Some(33019))
    );
    // 33023: one SMS fits in 3 credits, the second does not.
    t.client.send(&sms(&t.from, "+18005551234", "ok")).await.unwrap();
    assert_eq!(code(t.client.send(&sms(&t.from, "+18005551234", "x")).await.unwrap_err()), (Some(402), Some(33023)));

    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 1);
    assert_eq!(app.admin.messages(t.account, 100, None).await.unwrap().data.len(), 1, "no error wrote a message");
    assert_eq!(app.admin.ledger(t.account, 100, None).await.unwrap().data.len(), 2, "a top-up and one charge");
    app.stop().await;
    db.remove().await;
}

async fn simulator_failures_are_refunded(backend: Backend) {
    let Some(db) = TestDb::new(backend, "simulator_failures_are_refunded").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(22, 0).await;
    let mut ids = Vec::new();
    for n in 1..=11 {
        let to = format!("+155500010{n:02}");
        let sent = t.client.send(&sms(&t.from, &to, "x")).await.unwrap();
        assert_eq!(sent.status, StatusCode::CREATED);
        ids.push((sent.message.id, to));
    }
    let mut seen = Vec::new();
    for (id, to) in ids {
        let m = eventually("the failure to be recorded", Duration::from_secs(10), || async {
            let m = t.client.message(&id.to_string()).await.unwrap();
            (m.status == TlStatus::Failed).then_some(m)
        })
        .await;
        assert!(m.sent_at.is_none(), "{to}");
        assert!(m.error_message.is_some(), "{to}");
        seen.push(m.error_type.unwrap());
    }
    for e in ErrorType::ALL {
        assert!(seen.contains(e), "no test number produced {e}");
    }
    // Every one was refunded exactly once.
    let b = eventually("refunds", Duration::from_secs(10), || async {
        let b = app.admin.balance(t.account).await.unwrap();
        (b.sms_credits == 22).then_some(b)
    })
    .await;
    assert_eq!(b.sms_credits, 22);
    let ledger = app.admin.ledger(t.account, 100, None).await.unwrap().data;
    assert_eq!(ledger.iter().filter(|e| e.kind == "refund").count(), 11);
    assert_eq!(ledger.iter().filter(|e| e.kind == "charge").count(), 11);
    app.stop().await;
    db.remove().await;
}

async fn slow_provider_answers_queued_then_sends(backend: Backend) {
    let Some(db) = TestDb::new(backend, "slow_provider_answers_queued_then_sends").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(2, 0).await;
    let m = t.client.send(&sms(&t.from, "+15550002001", "slow")).await.unwrap().message;
    assert_eq!(m.status, TlStatus::Queued);
    assert!(m.sent_at.is_none());
    let m = eventually("the slow message to be sent", Duration::from_secs(15), || async {
        let m = t.client.message(&m.id.to_string()).await.unwrap();
        (m.status == TlStatus::Sent).then_some(m)
    })
    .await;
    assert!(m.sent_at.unwrap() > m.created_at);
    app.stop().await;
    db.remove().await;
}

async fn retryable_failures_are_retried(backend: Backend) {
    let Some(db) = TestDb::new(backend, "retryable_failures_are_retried").await else {
        return;
    };
    let mut settings = db.settings();
    settings.dispatch_max_attempts = 3;
    let app = TestApp::start(settings).await;
    let t = app.provision(4, 0).await;
    let flaky = t.client.send(&sms(&t.from, "+15550002002", "flaky")).await.unwrap().message;
    let hopeless = t.client.send(&sms(&t.from, "+15550002003", "hopeless")).await.unwrap().message;
    let flaky = eventually("the flaky message to be sent on its second attempt", Duration::from_secs(15), || async {
        let m = app.admin.message(flaky.id).await.unwrap();
        (m.status == MessageStatus::Sent).then_some(m)
    })
    .await;
    assert_eq!(flaky.attempts, 2);
    let hopeless = eventually("the hopeless message to fail after its attempts", Duration::from_secs(15), || async {
        let m = app.admin.message(hopeless.id).await.unwrap();
        (m.status == MessageStatus::Failed).then_some(m)
    })
    .await;
    assert_eq!((hopeless.attempts, hopeless.error_type), (3, Some(ErrorType::ProviderError)));
    assert_eq!(hopeless.sms_credits, 0);
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 2);
    app.stop().await;
    db.remove().await;
}

async fn listing_pages_newest_first(backend: Backend) {
    let Some(db) = TestDb::new(backend, "listing_pages_newest_first").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(20, 0).await;
    for i in 0..5 {
        t.client.send(&sms(&t.from, "+18005551234", &format!("m{i}"))).await.unwrap();
    }
    let p1 = t.client.messages(Some(2), None).await.unwrap();
    assert!(p1.has_more);
    let p2 = t.client.messages(Some(2), p1.next_cursor.as_deref()).await.unwrap();
    let p3 = t.client.messages(Some(2), p2.next_cursor.as_deref()).await.unwrap();
    assert!(!p3.has_more && p3.next_cursor.is_none());
    let bodies: Vec<String> = [p1.data, p2.data, p3.data].concat().into_iter().filter_map(|m| m.body).collect();
    assert_eq!(bodies, vec!["m4", "m3", "m2", "m1", "m0"]);
    for bad in ["limit=0", "limit=101", "cursor=nope", "limit=abc", "color=red"] {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/messaging/message?{bad}", app.url))
            .basic_auth(&t.key_id, Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "credentials are checked first");
    }
    let err = t.client.messages(Some(101), None).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    let err = t.client.messages(None, Some("nope")).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    app.stop().await;
    db.remove().await;
}

async fn idempotency_replays_and_conflicts(backend: Backend) {
    let Some(db) = TestDb::new(backend, "idempotency_replays_and_conflicts").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(100, 0).await;
    let req = TlSendRequest {
        idempotency_key: Some("order-42".into()),
        ..sms(&t.from, "+18005551234", "Your order shipped")
    };
    let first = t.client.send(&req).await.unwrap();
    assert!(!first.replayed);
    let again = t.client.send(&req).await.unwrap();
    assert_eq!((again.status, again.replayed), (StatusCode::CREATED, true));
    assert_eq!((again.message.id, again.message.created_at), (first.message.id, first.message.created_at));
    let changed = TlSendRequest { body: Some("Something else".into()), ..req.clone() };
    let err = t.client.send(&changed).await.unwrap_err();
    assert_eq!((err.status(), err.code().and_then(|c| c.as_number())), (Some(StatusCode::CONFLICT), Some(30409)));
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 98);

    // Twenty identical requests at once: one message, one charge.
    let req = TlSendRequest { idempotency_key: Some("race".into()), ..sms(&t.from, "+18005551234", "race") };
    let sends = (0..20).map(|_| {
        let (c, r) = (t.client.clone(), req.clone());
        tokio::spawn(async move { c.send(&r).await.unwrap() })
    });
    let mut ids = std::collections::HashSet::new();
    for s in sends {
        let sent = s.await.unwrap();
        assert_eq!(sent.status, StatusCode::CREATED);
        ids.insert(sent.message.id);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 96);
    let charges =
        app.admin.ledger(t.account, 100, None).await.unwrap().data.into_iter().filter(|e| e.kind == "charge").count();
    assert_eq!(charges, 2);
    app.stop().await;
    db.remove().await;
}

async fn credentials_and_account_scope(backend: Backend) {
    let Some(db) = TestDb::new(backend, "credentials_and_account_scope").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let a = app.provision(10, 0).await;
    let b = app.provision(10, 0).await;
    let m = a.client.send(&sms(&a.from, "+18005551234", "mine")).await.unwrap().message;

    // Another account's message is 403, an unknown one 404.
    let err = b.client.message(&m.id.to_string()).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    assert!(!err.to_string().contains("mine"));
    let err = a.client.message("msg_DsAdb4EBYBh3z25sBA1qnv").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(b.client.messages(None, None).await.unwrap().data.len(), 0);

    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/messaging/message", app.url);
    for auth in [None, Some("Basic !!!"), Some("Bearer abc"), Some("Basic a2V5OnNlY3JldA==")] {
        let mut r = http.post(&url).json(&sms(&a.from, "+18005551234", "x"));
        if let Some(v) = auth {
            r = r.header("authorization", v);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], 30401);
    }
    let wrong = switchboard_client::TextingLineClient::new(&app.url, &a.key_id, "sk_wrong").unwrap();
    assert_eq!(
        wrong.send(&sms(&a.from, "+18005551234", "x")).await.unwrap_err().status(),
        Some(StatusCode::UNAUTHORIZED)
    );

    // A revoked key stops working at once.
    app.admin.revoke_key(a.account, &a.key_id).await.unwrap();
    let err = a.client.send(&sms(&a.from, "+18005551234", "x")).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(app.admin.balance(a.account).await.unwrap().sms_credits, 8);
    app.stop().await;
    db.remove().await;
}
