//! The console's storage: sessions kept by the hash of their token, and the traffic counts of
//! its charts, from the running counts by hour and by minute.

use super::*;
use switchboard_storage::{ConsolePrincipal, ConsoleSessionRecord, ReceiptOutcome, TrafficBucket};

contract!(
    console_sessions_are_found_touched_and_purged,
    console_traffic_counts_by_hour,
    console_traffic_counts_by_minute,
    minute_counts_are_a_ring_of_two_hours,
);

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

/// Accepts, for each (account, creation time), a message to `+1800555000{i}`; then fails
/// those to numbers ending 0 and 5, sends the others, and delivers the one to 1.
async fn traffic(store: &Arc<dyn Store>, messages: &[(AccountId, Timestamp)], other: AccountId) {
    for (i, (account, t)) in messages.iter().enumerate() {
        let to = format!("+1800555000{i}");
        let mut m = message_at(*account, *t, &to);
        if *account == other {
            m.from = sender(OTHER);
        }
        assert!(matches!(store.accept(&[m]).await.unwrap()[0], AcceptOutcome::Queued(_)));
    }
    dispatch_all(store, |to| {
        if to.ends_with('0') || to.ends_with('5') {
            DispatchOutcome::Failed { error_type: ErrorType::InvalidDestination, message: "no".into(), refund: true }
        } else {
            DispatchOutcome::Sent { provider_message_id: format!("p{to}"), parts: vec![format!("p{to}")] }
        }
    })
    .await;
    let delivered = [super::receipts::receipt("p+18005550001", MessageStatus::Delivered)];
    assert!(matches!(store.record_receipts(&delivered).await.unwrap()[0], ReceiptOutcome::Applied { .. }));
}

fn bucket(start: i64, accepted: i64, sent: i64, delivered: i64, failed: i64) -> TrafficBucket {
    TrafficBucket { start, accepted, sent, delivered, failed }
}

const H: i64 = 3_600_000;
const MIN: i64 = 60_000;

async fn console_traffic_counts_by_hour(store: Arc<dyn Store>) {
    let a = funded_account(&store, 1000, 0).await;
    let b = funded_account_other(&store).await;
    let base = (Timestamp::now().millis() / H - 2) * H;
    let at = |ms: i64| Timestamp::from_millis(base + ms);
    // Account a: four messages in the first hour, one in the second; account b: one.
    let messages =
        [(a, 5 * MIN + 1), (a, 5 * MIN + 20_000), (a, 6 * MIN - 1), (a, 7 * MIN), (a, H + 30 * MIN), (b, 5 * MIN)];
    traffic(&store, &messages.map(|(account, t)| (account, at(t))), b).await;

    let hours = store.hourly_traffic(Some(a), at(0), at(3 * H)).await.unwrap();
    assert_eq!(hours, vec![bucket(base, 4, 3, 1, 1), bucket(base + H, 1, 1, 0, 0)]);
    let hours = store.hourly_traffic(None, at(0), at(H)).await.unwrap();
    assert_eq!(hours, vec![bucket(base, 5, 3, 1, 2)]);
    assert!(store.hourly_traffic(Some(a), at(3 * H), at(4 * H)).await.unwrap().is_empty());
}

async fn console_traffic_counts_by_minute(store: Arc<dyn Store>) {
    let a = funded_account(&store, 1000, 0).await;
    let b = funded_account_other(&store).await;
    let base = (Timestamp::now().millis() / MIN - 50) * MIN;
    let at = |ms: i64| Timestamp::from_millis(base + ms);
    // Account a: three messages in minute 5 and one in minute 7; one 100 minutes back (older
    // than any chart shows, so not counted by the minute); account b: one in minute 5.
    let messages =
        [(a, 5 * MIN + 1), (a, 5 * MIN + 20_000), (a, 6 * MIN - 1), (a, 7 * MIN), (a, -50 * MIN), (b, 5 * MIN)];
    traffic(&store, &messages.map(|(account, t)| (account, at(t))), b).await;

    let minutes = store.minute_traffic(Some(a), at(0), 60).await.unwrap();
    assert_eq!(minutes, vec![bucket(base + 5 * MIN, 3, 2, 1, 1), bucket(base + 7 * MIN, 1, 1, 0, 0)]);
    let everyone = store.minute_traffic(None, at(0), 60).await.unwrap();
    assert_eq!(everyone, vec![bucket(base + 5 * MIN, 4, 2, 1, 2), bucket(base + 7 * MIN, 1, 1, 0, 0)]);
    // At most an hour of minutes, from where asked.
    assert_eq!(
        store.minute_traffic(Some(a), at(6 * MIN), 1000).await.unwrap(),
        vec![bucket(base + 7 * MIN, 1, 1, 0, 0)]
    );
    assert!(store.minute_traffic(Some(a), at(-60 * MIN), 60).await.unwrap().is_empty());
    // The hourly counts have them all.
    let hours = store.hourly_traffic(Some(a), at(-H), at(H)).await.unwrap();
    assert_eq!(hours.iter().map(|b| b.accepted).sum::<i64>(), 5);
}

/// Minute `m` and minute `m + 120` share a slot: the newer replaces the older there, and the
/// older's changes never land on the newer's counts. (Both are shown here by a clock two hours
/// ahead; on one clock a minute's changes stop 90 minutes on, before its slot is taken.)
async fn minute_counts_are_a_ring_of_two_hours(store: Arc<dyn Store>) {
    let a = funded_account(&store, 1000, 0).await;
    let b = funded_account_other(&store).await;
    let base = (Timestamp::now().millis() / MIN - 30) * MIN;
    let at = |ms: i64| Timestamp::from_millis(base + ms);
    let accept = |t: i64, to: &str| {
        let (store, m) = (store.clone(), message_at(a, at(t), to));
        async move { assert!(matches!(store.accept(&[m]).await.unwrap()[0], AcceptOutcome::Queued(_))) }
    };
    // The older first: the newer takes its slot.
    accept(MIN, "+18005550001").await;
    assert_eq!(store.minute_traffic(Some(a), at(0), 60).await.unwrap(), vec![bucket(base + MIN, 1, 0, 0, 0)]);
    accept(121 * MIN, "+18005550003").await;
    assert!(store.minute_traffic(Some(a), at(0), 60).await.unwrap().is_empty());
    assert_eq!(
        store.minute_traffic(Some(a), at(120 * MIN), 60).await.unwrap(),
        vec![bucket(base + 121 * MIN, 1, 0, 0, 0)]
    );
    // The newer first: the older's message is not added to it.
    accept(122 * MIN, "+18005550004").await;
    accept(2 * MIN, "+18005550006").await;
    assert!(store.minute_traffic(Some(a), at(0), 60).await.unwrap().is_empty());
    assert_eq!(
        store.minute_traffic(Some(a), at(120 * MIN), 60).await.unwrap(),
        vec![bucket(base + 121 * MIN, 1, 0, 0, 0), bucket(base + 122 * MIN, 1, 0, 0, 0)]
    );
    assert!(store.minute_traffic(Some(b), at(0), 60).await.unwrap().is_empty());
    // The hourly counts have all four.
    let hours = store.hourly_traffic(Some(a), at(-H), at(4 * H)).await.unwrap();
    assert_eq!(hours.iter().map(|b| b.accepted).sum::<i64>(), 4);
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

/// The migration that made `message_minute_counts` filled it from the last two hours'
/// messages: run again on a table emptied, its fill gives back what the writes kept.
async fn the_minute_counts_migration_fills_what_writes_keep(store: &Arc<dyn Store>) {
    let a = funded_account(store, 1000, 0).await;
    let b = funded_account_other(store).await;
    let now = Timestamp::now().millis();
    // Within the hour and a half that writes keep, and one three hours back, which neither has.
    let messages = [(a, now - 80 * MIN), (a, now - 30 * MIN), (a, now - 30 * MIN), (b, now - MIN), (a, now - 3 * H)];
    traffic(store, &messages.map(|(account, t)| (account, Timestamp::from_millis(t))), b).await;
}

/// The statement of the 0013 migration that fills the table.
fn minute_fill(sql: &str) -> &str {
    let start = sql.find("INSERT INTO message_minute_counts").expect("the migration fills the table");
    let end = start + sql[start..].find(';').expect("the statement ends");
    &sql[start..end]
}

type MinuteRow = (Vec<u8>, i64, String, i64, i64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minute_counts_migration_fills_what_writes_keep_on_sqlite() {
    let db = TestDatabase::sqlite();
    let store = connect(&db.url, &ConnectOptions::default()).await.expect("open SQLite");
    the_minute_counts_migration_fills_what_writes_keep(&store).await;
    let path = db.url.strip_prefix("sqlite://").expect("a SQLite URL").to_owned();
    let rows = |conn: &rusqlite::Connection| -> Vec<MinuteRow> {
        let mut q = conn
            .prepare("SELECT account_id, slot, status, minute, n FROM message_minute_counts ORDER BY 1, 2, 3")
            .unwrap();
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
    let kept = rows(&conn);
    assert_eq!(kept.iter().map(|r| r.4).filter(|n| *n > 0).sum::<i64>(), 4, "{kept:?}");
    conn.execute("DELETE FROM message_minute_counts", []).unwrap();
    let sql = include_str!("../../migrations/sqlite/0013_minute_counts.sql");
    conn.execute(minute_fill(sql), []).unwrap();
    let filled: Vec<MinuteRow> = rows(&conn).into_iter().filter(|r| r.4 != 0).collect();
    assert_eq!(filled, kept.into_iter().filter(|r| r.4 != 0).collect::<Vec<_>>());
    drop(conn);
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minute_counts_migration_fills_what_writes_keep_on_postgres() {
    let Some(db) = TestDatabase::postgres("minute_counts_fill").await else { return };
    let store = connect(&db.url, &ConnectOptions::default()).await.expect("open PostgreSQL");
    the_minute_counts_migration_fills_what_writes_keep(&store).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows = || async {
        sqlx::query_as::<_, (uuid::Uuid, i64, String, i64, i64)>(
            "SELECT account_id, slot, status, minute, n FROM message_minute_counts WHERE n <> 0 ORDER BY 1, 2, 3",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let kept = rows().await;
    assert_eq!(kept.iter().map(|r| r.4).filter(|n| *n > 0).sum::<i64>(), 4, "{kept:?}");
    sqlx::query("DELETE FROM message_minute_counts").execute(&pool).await.unwrap();
    let sql = include_str!("../../migrations/postgres/0013_minute_counts.sql");
    sqlx::query(minute_fill(sql)).execute(&pool).await.unwrap();
    assert_eq!(rows().await, kept);
    pool.close().await;
    drop(store);
    db.remove().await;
}
