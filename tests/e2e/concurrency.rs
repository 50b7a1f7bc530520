//! Money under concurrency: the balance never goes negative and nothing is charged twice.

use reqwest::StatusCode;
use switchboard_domain::wire::TlSendRequest;
use switchboard_tests::{Backend, TestApp, TestDb, on_both_backends};

on_both_backends!(five_n_sends_for_n_credits);

/// Fund an account for exactly N SMS, send 5N at once: exactly N are accepted and the balance
/// ends at exactly 0.
async fn five_n_sends_for_n_credits(backend: Backend) {
    const N: usize = 60;
    let Some(db) = TestDb::new(backend, "five_n_sends_for_n_credits").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(2 * N as i64, 0).await;
    let sends = (0..5 * N).map(|i| {
        let c = t.client.clone();
        let req = TlSendRequest {
            to: "+18005551234".into(),
            from: t.from.clone(),
            body: Some(format!("m{i}")),
            ..Default::default()
        };
        tokio::spawn(async move {
            match c.send(&req).await {
                Ok(sent) => sent.status,
                Err(e) => e.status().expect("an HTTP answer"),
            }
        })
    });
    let mut created = 0;
    let mut refused = 0;
    for s in sends {
        match s.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::PAYMENT_REQUIRED => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, refused), (N, 4 * N));
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 0);
    let ledger = app.admin.ledger(t.account, 1000, None).await.unwrap().data;
    assert_eq!(ledger.iter().filter(|e| e.kind == "charge").count(), N);
    assert!(ledger.iter().all(|e| e.sms_balance >= 0));
    assert_eq!(app.admin.messages(t.account, 1000, None).await.unwrap().data.len(), N);
    app.stop().await;
    db.remove().await;
}
