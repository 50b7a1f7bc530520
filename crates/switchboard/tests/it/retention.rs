//! Retention in the running server: a delivered message whose end lies past `retention_days`
//! loses its history in the background, shows in the metrics, and still reads back with its
//! final status; a recent one keeps everything, and the balance and the ledger do not move.
//!
//! Nothing in the API makes a message old, so the test moves its end time back in the database
//! file beside the server, as the passing days would.

use super::*;

/// The value of a metric line (`name` with its labels, as `/metrics` writes it), if present.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Kills the server when the test ends, passed or failed.
struct Stopped(Option<Server>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(server) = self.0.take() {
            server.kill();
        }
    }
}

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_messages_past_retention_lose_their_history_in_the_background() {
    let dir = temp_dir("retention");
    let env = [
        ("SWITCHBOARD_RETENTION_DAYS", "1"),
        ("SWITCHBOARD_RETENTION_INTERVAL_SECS", "1"),
        ("SWITCHBOARD_SIMULATOR_RECEIPT_DELAY_MS", "10"),
    ];
    let running = Stopped(Some(Server::start_with(&dir, free_port(), &env)));
    let server = running.0.as_ref().expect("just started");
    server.ready().await;
    let (account, key) = funded_account(&server.url, "retention", "+18005559876", 100).await;
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let client = TextingLineClient::new(&server.url, &key.key.id, &key.secret).unwrap();
    let send = |body: &str| TlSendRequest {
        to: "+18005551234".into(),
        from: "+18005559876".into(),
        body: Some(body.into()),
        ..Default::default()
    };
    let old = client.send(&send("old")).await.unwrap().message.id;
    let recent = client.send(&send("recent")).await.unwrap().message.id;
    for id in [old, recent] {
        let start = Instant::now();
        while admin.message(id).await.unwrap().status != MessageStatus::Delivered {
            assert!(start.elapsed() < Duration::from_secs(20), "{id} was not delivered");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let before = admin.message(old).await.unwrap();
    assert_eq!(before.events.len(), 4, "accepted, queued, sent, delivered: {before:?}");
    assert!(!before.parts.is_empty());
    let ledger = admin.ledger(account.id, 100, None).await.unwrap().data;
    assert_eq!(admin.balance(account.id).await.unwrap().sms_credits, 96);
    // Passes have run, and found nothing to prune.
    assert_eq!(metric(&metrics(&server.url).await, "switchboard_retention_pruned_messages_total").unwrap_or(0.0), 0.0);

    // Two days pass for the first message.
    let db = rusqlite::Connection::open(dir.join("sb.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let changed = db
        .execute(
            "UPDATE messages SET updated_at = updated_at - 2 * 86400000 WHERE id = ?1",
            [old.as_uuid().as_bytes().as_slice()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let start = Instant::now();
    let text = loop {
        let text = metrics(&server.url).await;
        if metric(&text, "switchboard_retention_pruned_messages_total") == Some(1.0) {
            break text;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "nothing was pruned:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(metric(&text, "switchboard_retention_pruned_rows_total{table=\"message_events\"}"), Some(4.0));
    assert_eq!(metric(&text, "switchboard_retention_pruned_rows_total{table=\"message_parts\"}"), Some(1.0));
    assert!(text.contains("# TYPE switchboard_retention_pruned_rows_total counter"));
    // The pass that pruned it ends and is recorded.
    let start = Instant::now();
    while metric(&metrics(&server.url).await, "switchboard_retention_last_pass_timestamp_seconds").is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "no pass ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The message reads back whole but for its history, in the admin API and in its dialect.
    let after = admin.message(old).await.unwrap();
    assert!(after.events.is_empty() && after.parts.is_empty(), "{after:?}");
    assert_eq!(
        (after.status, after.sms_credits, &after.body, after.sent_at),
        (MessageStatus::Delivered, 2, &before.body, before.sent_at)
    );
    let read = client.message(&old.to_string()).await.unwrap();
    assert_eq!((read.id, read.status), (old, switchboard_domain::wire::TlStatus::Sent));
    assert_eq!(admin.message(recent).await.unwrap().events.len(), 4, "the recent message keeps its history");
    // Nothing moved on the ledger.
    assert_eq!(admin.balance(account.id).await.unwrap().sms_credits, 96);
    assert_eq!(admin.ledger(account.id, 100, None).await.unwrap().data, ledger);
    drop(running);
    std::fs::remove_dir_all(dir).ok();
}
