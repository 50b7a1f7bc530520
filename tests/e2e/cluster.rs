//! Two server nodes on one PostgreSQL database, sending and dispatching at once.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use switchboard_client::TextingLineClient;
use switchboard_domain::MessageStatus;
use switchboard_domain::wire::TlSendRequest;
use switchboard_tests::{Backend, TestApp, TestDb, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_double_charge_or_double_dispatch() {
    const N: usize = 80;
    let Some(db) = TestDb::new(Backend::Postgres, "two_nodes_never_double_charge_or_double_dispatch").await else {
        return;
    };
    let node1 = TestApp::start(db.settings()).await;
    let node2 = TestApp::start(db.settings()).await;
    let t = node1.provision(2 * N as i64, 0).await;
    let key = node1.admin.create_key(t.account, None).await.unwrap();
    let clients = [
        TextingLineClient::new(&node1.url, &key.key.id, &key.secret).unwrap(),
        TextingLineClient::new(&node2.url, &key.key.id, &key.secret).unwrap(),
    ];

    let sends = (0..3 * N).map(|i| {
        let c = clients[i % 2].clone();
        let req = TlSendRequest {
            to: "+18005551234".into(),
            from: t.from.clone(),
            body: Some(format!("m{i}")),
            ..Default::default()
        };
        tokio::spawn(async move {
            match c.send(&req).await {
                Ok(sent) => (sent.status, Some(sent.message.id)),
                Err(e) => (e.status().expect("an HTTP answer"), None),
            }
        })
    });
    let mut accepted = Vec::new();
    for s in sends {
        match s.await.unwrap() {
            (StatusCode::CREATED, Some(id)) => accepted.push(id),
            (StatusCode::PAYMENT_REQUIRED, None) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted.len(), N);
    assert_eq!(node2.admin.balance(t.account).await.unwrap().sms_credits, 0);

    // The same idempotency key sent to both nodes at once makes one message.
    node2.admin.top_up(t.account, &switchboard_domain::wire::TopUp { sms: 2, mms: 0, reference: None }).await.unwrap();
    let req = TlSendRequest {
        to: "+18005551234".into(),
        from: t.from.clone(),
        body: Some("once".into()),
        idempotency_key: Some("cluster-key".into()),
        ..Default::default()
    };
    let racing = (0..10).map(|i| {
        let (c, r) = (clients[i % 2].clone(), req.clone());
        tokio::spawn(async move { c.send(&r).await.unwrap().message.id })
    });
    let mut ids = HashSet::new();
    for r in racing {
        ids.insert(r.await.unwrap());
    }
    assert_eq!(ids.len(), 1);
    accepted.extend(ids);
    assert_eq!(node1.admin.balance(t.account).await.unwrap().sms_credits, 0);

    // Both dispatchers drain the queue; every message is sent exactly once.
    for id in &accepted {
        let m = eventually("every message to be sent", Duration::from_secs(30), || async {
            let m = node1.admin.message(*id).await.unwrap();
            (m.status == MessageStatus::Sent).then_some(m)
        })
        .await;
        assert_eq!(m.attempts, 1, "{id} was claimed more than once");
        let sent_events = m.events.iter().filter(|e| e.status == MessageStatus::Sent).count();
        assert_eq!(sent_events, 1, "{id}");
    }
    let ledger = node1.admin.ledger(t.account, 1000, None).await.unwrap().data;
    assert_eq!(ledger.iter().filter(|e| e.kind == "charge").count(), N + 1);
    node1.stop().await;
    node2.stop().await;
    db.remove().await;
}

/// An upstream's `max_per_second` holds across two nodes sending at once: together they send
/// no faster than one node alone may.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_limit_holds_across_two_nodes() {
    use switchboard::settings::UpstreamSettings;
    use switchboard_provider::UpstreamLimits;

    const N: usize = 16;
    const RATE: f64 = 4.0;
    let Some(db) = TestDb::new(Backend::Postgres, "an_upstream_limit_holds_across_two_nodes").await else {
        return;
    };
    let settings = || {
        let mut s = db.settings();
        s.upstreams = vec![UpstreamSettings::Simulator {
            name: "sim".into(),
            limits: UpstreamLimits { max_per_second: Some(RATE as u32) },
            unknown: Default::default(),
        }];
        s.sent_wait_ms = 0;
        s
    };
    let node1 = TestApp::start(settings()).await;
    let node2 = TestApp::start(settings()).await;
    let t = node1.provision(2 * N as i64, 0).await;
    let key = node1.admin.create_key(t.account, None).await.unwrap();
    let clients = [
        TextingLineClient::new(&node1.url, &key.key.id, &key.secret).unwrap(),
        TextingLineClient::new(&node2.url, &key.key.id, &key.secret).unwrap(),
    ];
    let sends = (0..N).map(|i| {
        let c = clients[i % 2].clone();
        let req = TlSendRequest {
            to: "+18005551234".into(),
            from: t.from.clone(),
            body: Some(format!("m{i}")),
            ..Default::default()
        };
        tokio::spawn(async move { c.send(&req).await.unwrap().message.id })
    });
    let mut ids = Vec::new();
    for s in sends {
        ids.push(s.await.unwrap());
    }

    // When each message was sent, in order.
    let mut sent_at = Vec::new();
    for id in &ids {
        let at = eventually("every message to be sent", Duration::from_secs(30), || async {
            let m = node1.admin.message(*id).await.unwrap();
            m.events.iter().find(|e| e.status == MessageStatus::Sent).map(|e| e.at)
        })
        .await;
        sent_at.push(at.millis());
    }
    sent_at.sort_unstable();
    // The shared bucket starts with a second's worth and gains RATE a second: the k-th send
    // comes no earlier than it allows (one more for the two nodes' clocks and timers). Two
    // nodes each keeping the limit alone would send all 16 within 2 s, which this refuses.
    for (k, at) in sent_at.iter().enumerate() {
        let elapsed = (at - sent_at[0]) as f64 / 1000.0;
        assert!(
            (k + 1) as f64 <= RATE + 1.0 + elapsed * RATE,
            "send {} came {elapsed} s after the first: over {RATE} a second across the nodes ({sent_at:?})",
            k + 1
        );
    }
    node1.stop().await;
    node2.stop().await;
    db.remove().await;
}
