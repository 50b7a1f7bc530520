//! The console's storage: sessions kept by the hash of their token, and the traffic counts of
//! its charts, by hour from the running counts and by minute from the messages.

use super::*;
use switchboard_storage::{ConsolePrincipal, ConsoleSessionRecord, ReceiptOutcome, TrafficBucket};

contract!(console_sessions_are_found_touched_and_purged, console_traffic_counts_by_hour_and_minute);

fn session(hash: u8, principal: ConsolePrincipal, at: i64, lifetime: i64) -> ConsoleSessionRecord {
    ConsoleSessionRecord {
        token_hash: vec![hash; 32],
        principal,
        created_at: Timestamp::from_millis(at),
        expires_at: Timestamp::from_millis(at + lifetime),
        last_seen_at: Timestamp::from_millis(at),
    }
}

async fn console_sessions_are_found_touched_and_purged(store: Arc<dyn Store>) {
    let a = funded_account(&store, 0, 0).await;
    let now = Timestamp::now().millis();
    let operator = session(1, ConsolePrincipal::Operator, now, 60_000);
    let holder = session(2, ConsolePrincipal::Account { account: a, key_id: "key_1".into() }, now, 60_000);
    let expired = session(3, ConsolePrincipal::Operator, now - 120_000, 60_000);
    let idle = session(4, ConsolePrincipal::Operator, now - 30_000, 600_000);
    for s in [&operator, &holder, &expired, &idle] {
        store.create_console_session(s).await.unwrap();
    }
    assert_eq!(store.find_console_session(&[1; 32]).await.unwrap(), Some(operator.clone()));
    assert_eq!(store.find_console_session(&[2; 32]).await.unwrap(), Some(holder.clone()));
    assert_eq!(store.find_console_session(&[9; 32]).await.unwrap(), None);

    // A touch moves the last use forward, never back.
    store.touch_console_session(&[2; 32], Timestamp::from_millis(now + 5_000)).await.unwrap();
    store.touch_console_session(&[2; 32], Timestamp::from_millis(now + 1_000)).await.unwrap();
    let touched = store.find_console_session(&[2; 32]).await.unwrap().unwrap();
    assert_eq!(touched.last_seen_at, Timestamp::from_millis(now + 5_000));

    // Purging removes the expired and the idle ones only.
    let purged = store.purge_console_sessions(Timestamp::from_millis(now), Timestamp::from_millis(now - 10_000));
    assert_eq!(purged.await.unwrap(), 2);
    assert_eq!(store.find_console_session(&[3; 32]).await.unwrap(), None);
    assert_eq!(store.find_console_session(&[4; 32]).await.unwrap(), None);
    assert!(store.delete_console_session(&[1; 32]).await.unwrap());
    assert!(!store.delete_console_session(&[1; 32]).await.unwrap(), "already gone");
    assert_eq!(store.find_console_session(&[1; 32]).await.unwrap(), None);
    assert!(store.find_console_session(&[2; 32]).await.unwrap().is_some());
}

async fn console_traffic_counts_by_hour_and_minute(store: Arc<dyn Store>) {
    const H: i64 = 3_600_000;
    const MIN: i64 = 60_000;
    let a = funded_account(&store, 1000, 0).await;
    let b = funded_account_other(&store).await;
    let base = (Timestamp::now().millis() / H - 2) * H;
    let at = |ms: i64| Timestamp::from_millis(base + ms);
    // Account a: three messages in minute 5 and one in minute 7 of the first hour, one in the
    // second hour; account b: one in minute 5.
    for (i, (account, t)) in
        [(a, 5 * MIN + 1), (a, 5 * MIN + 20_000), (a, 6 * MIN - 1), (a, 7 * MIN), (a, H + 30 * MIN), (b, 5 * MIN + 9)]
            .into_iter()
            .enumerate()
    {
        let to = format!("+1800555000{i}");
        let mut m = message_at(account, at(t), &to);
        if account == b {
            m.from = sender(OTHER);
        }
        assert!(matches!(store.accept(&[m]).await.unwrap()[0], AcceptOutcome::Queued(_)));
    }
    // Those to numbers ending 0 and 5 fail; the others are sent, and the one to 1 delivered.
    dispatch_all(&store, |to| {
        if to.ends_with('0') || to.ends_with('5') {
            DispatchOutcome::Failed { error_type: ErrorType::InvalidDestination, message: "no".into(), refund: true }
        } else {
            DispatchOutcome::Sent { provider_message_id: format!("p{to}"), parts: vec![format!("p{to}")] }
        }
    })
    .await;
    let delivered = [super::receipts::receipt("p+18005550001", MessageStatus::Delivered)];
    assert!(matches!(store.record_receipts(&delivered).await.unwrap()[0], ReceiptOutcome::Applied { .. }));

    let bucket = |start, accepted, sent, delivered, failed| TrafficBucket { start, accepted, sent, delivered, failed };
    let minutes = store.minute_traffic(Some(a), at(0), 60).await.unwrap();
    assert_eq!(minutes, vec![bucket(base + 5 * MIN, 3, 2, 1, 1), bucket(base + 7 * MIN, 1, 1, 0, 0)]);
    let everyone = store.minute_traffic(None, at(0), 60).await.unwrap();
    assert_eq!(everyone, vec![bucket(base + 5 * MIN, 4, 2, 1, 2), bucket(base + 7 * MIN, 1, 1, 0, 0)]);
    // At most an hour of minutes, from where asked.
    assert_eq!(
        store.minute_traffic(Some(a), at(6 * MIN), 1000).await.unwrap(),
        vec![bucket(base + 7 * MIN, 1, 1, 0, 0)]
    );

    let hours = store.hourly_traffic(Some(a), at(0), at(3 * H)).await.unwrap();
    assert_eq!(hours, vec![bucket(base, 4, 3, 1, 1), bucket(base + H, 1, 1, 0, 0)]);
    let hours = store.hourly_traffic(None, at(0), at(H)).await.unwrap();
    assert_eq!(hours, vec![bucket(base, 5, 3, 1, 2)]);
    assert!(store.hourly_traffic(Some(a), at(3 * H), at(4 * H)).await.unwrap().is_empty());
}

/// The sender of the second account.
const OTHER: &str = "+18005550002";

/// A second account with a sender of its own.
async fn funded_account_other(store: &Arc<dyn Store>) -> AccountId {
    let account = store.create_account("other").await.unwrap().id;
    store.top_up(account, Credits::new(100, 0), Some("test")).await.unwrap();
    store
        .create_sender(&SenderRecord {
            address: sender(OTHER),
            account_id: account,
            active: true,
            sms: true,
            mms: false,
            created_at: Timestamp::now(),
        })
        .await
        .unwrap();
    account
}
