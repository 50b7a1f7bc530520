//! The bounded searches of messages and of the ledger on a large table: a page examines at
//! most `SCAN_CAP` rows, says so when it stops there, and goes on from where it stopped.
//!
//! The rows are written straight into a SQLite file (as many as a busy installation holds)
//! rather than through admissions, which would take minutes for a million messages; what is
//! searched is then read only through the store.

use std::time::Instant;

use switchboard_domain::{AccountId, Dialect, MessageId, MessageStatus, Msisdn, Timestamp};
use switchboard_ledger::EntryKind;
use switchboard_storage::testing::TestDatabase;
use switchboard_storage::{ConnectOptions, LedgerFilter, MessageFilter, PageRequest, SCAN_CAP, Scanned, connect};
use uuid::Uuid;

/// The number only the oldest message goes to.
const RARE: &str = "+18005550001";

/// A UUIDv7 made at `ms`, the `n`th of its millisecond.
fn v7(ms: i64, n: u64) -> Uuid {
    Uuid::from_u128(((ms as u128) << 80) | (0x7u128 << 76) | (1u128 << 63) | u128::from(n))
}

/// Writes `n` TextingLine messages, each with its charge, into the SQLite file of `url`: one
/// every `step_ms` from `start_ms`, spread over `accounts` in turn; with `rare`, the first goes
/// to [`RARE`]; the others go to 10,000 other numbers; every 100th failed, the rest delivered.
fn seed(url: &str, accounts: &[AccountId], n: u64, start_ms: i64, step_ms: i64, rare: bool) {
    let path = url.strip_prefix("sqlite://").expect("a SQLite URL");
    let mut conn = rusqlite::Connection::open(path).expect("open the database file");
    conn.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut message = tx
            .prepare(
                "INSERT INTO messages (id, account_id, direction, kind, recipient, sender, body, encoding, segments, \
                 status, sms_charged, mms_charged, request_hash, attempts, next_attempt_at, created_at, updated_at) \
                 VALUES (?1, ?2, 'outbound', 'sms', ?3, '+18005559876', 'hello', 'gsm7', 1, ?4, 2, 0, ?5, 1, ?6, ?6, ?6)",
            )
            .unwrap();
        let mut charge = tx
            .prepare(
                "INSERT INTO ledger_entries (id, account_id, kind, sms_delta, mms_delta, sms_balance, mms_balance, \
                 message_id, created_at) VALUES (?1, ?2, 'charge', -2, 0, 0, 0, ?3, ?4)",
            )
            .unwrap();
        let hash = [7u8; 32];
        for i in 0..n {
            let at = start_ms + i as i64 * step_ms;
            let id = v7(at, i);
            let account = accounts[i as usize % accounts.len()].as_uuid();
            let to = if rare && i == 0 { RARE.to_owned() } else { format!("+1800556{:04}", i % 10_000) };
            let status = if i % 100 == 99 { "failed" } else { "delivered" };
            message
                .execute(rusqlite::params![id.as_bytes(), account.as_bytes(), to, status, hash.as_slice(), at])
                .unwrap();
            charge.execute(rusqlite::params![v7(at, i + n).as_bytes(), account.as_bytes(), id.as_bytes(), at]).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn page<C>(limit: u32, before: Option<C>) -> PageRequest<C> {
    PageRequest { before, limit }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_stops_at_its_cap_and_goes_on_from_there() {
    let db = TestDatabase::sqlite();
    let store = connect(&db.url, &ConnectOptions::default()).await.expect("open SQLite");
    let account = store.create_account("many").await.unwrap().id;
    let other = store.create_account("other").await.unwrap().id;
    // One account's messages fill more than a cap; the other's are few, and newer.
    let n = u64::from(SCAN_CAP) + 5_000;
    let start = Timestamp::now().millis() - 10_000_000;
    seed(&db.url, &[account], n, start, 10, true);
    seed(&db.url, &[other], 3, start + 9_000_000, 10, false);

    // The one message to RARE is the oldest: the first page stops at the cap without it.
    let rare = MessageFilter { recipient: Some(Msisdn::parse(RARE).unwrap()), ..MessageFilter::default() };
    let scoped = MessageFilter { account: Some(account), ..rare.clone() };
    for filter in [&rare, &scoped] {
        let first = store.search_messages(filter, page(10, None)).await.unwrap();
        assert!(first.items.is_empty());
        assert!(first.capped, "{filter:?}");
        let cursor = first.next.expect("a capped page says where it stopped");
        let second = store.search_messages(filter, page(10, Some(MessageId::from_uuid(cursor)))).await.unwrap();
        assert_eq!(second.items.len(), 1, "{filter:?}");
        assert_eq!(second.items[0].to.as_str(), RARE);
        assert!(!second.capped);
        assert_eq!(second.next, None);
    }
    // A time range that holds the message finds it at once: the range is an id range.
    let oldest = Timestamp::from_millis(start);
    let narrow = MessageFilter { from: Some(oldest), to: Some(oldest.plus_millis(1_000)), ..rare.clone() };
    let found = store.search_messages(&narrow, page(10, None)).await.unwrap();
    assert_eq!((found.items.len(), found.capped, found.next), (1, false, None));
    // A page that fills is not capped, and its cursor is its last item.
    let failed = MessageFilter { status: Some(MessageStatus::Failed), ..MessageFilter::default() };
    let full = store.search_messages(&failed, page(5, None)).await.unwrap();
    assert_eq!(full.items.len(), 5);
    assert!(!full.capped);
    assert_eq!(full.next, Some(full.items[4].id.as_uuid()));
    assert!(full.items.iter().all(|m| m.status == MessageStatus::Failed));
    assert!(full.items.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    // No SMPP message at all: the search says it stopped, rather than that there are none.
    let smpp = MessageFilter { dialect: Some(Dialect::Smpp), ..MessageFilter::default() };
    let none = store.search_messages(&smpp, page(10, None)).await.unwrap();
    assert!(none.items.is_empty() && none.capped);
    let texting = MessageFilter { dialect: Some(Dialect::TextingLine), ..MessageFilter::default() };
    assert_eq!(store.search_messages(&texting, page(3, None)).await.unwrap().items.len(), 3);
    // The other account's few messages are searched whole.
    let theirs = MessageFilter { account: Some(other), ..MessageFilter::default() };
    let found = store.search_messages(&theirs, page(10, None)).await.unwrap();
    assert_eq!((found.items.len(), found.capped, found.next), (3, false, None));

    // The ledger: refunds there are none of; the scan stops at the cap and says so.
    let refunds = LedgerFilter { kind: Some(EntryKind::Refund), ..LedgerFilter::default() };
    let first = store.ledger_entries(account, &refunds, page(10, None)).await.unwrap();
    assert!(first.items.is_empty() && first.capped);
    let second = store.ledger_entries(account, &refunds, page(10, first.next)).await.unwrap();
    assert!(second.items.is_empty() && !second.capped && second.next.is_none());
    // By message, by its index, never capped.
    let oldest_message = MessageId::from_uuid(v7(start, 0));
    let by_message = LedgerFilter { message: Some(oldest_message), ..LedgerFilter::default() };
    let found = store.ledger_entries(account, &by_message, page(10, None)).await.unwrap();
    assert_eq!((found.items.len(), found.capped), (1, false));
    assert_eq!(found.items[0].message_id, Some(oldest_message));
    assert_eq!(store.message_ledger(oldest_message).await.unwrap().len(), 1);
    let theirs = MessageId::from_uuid(v7(start + 9_000_000 + 2 * 10, 2));
    let by_theirs = LedgerFilter { message: Some(theirs), ..LedgerFilter::default() };
    assert_eq!(store.ledger_entries(other, &by_theirs, page(10, None)).await.unwrap().items.len(), 1);
    assert!(store.ledger_entries(account, &by_theirs, page(10, None)).await.unwrap().items.is_empty());
    db.remove().await;
}

/// Times the searches on a million messages. Run by hand, on an optimised build:
/// `cargo test --release -p switchboard-storage --test it -- --ignored a_million --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a million messages and prints timings; run by hand"]
async fn a_million_messages() {
    let db = TestDatabase::sqlite();
    let store = connect(&db.url, &ConnectOptions::default()).await.expect("open SQLite");
    let mut accounts = Vec::new();
    for n in 0..10 {
        accounts.push(store.create_account(&format!("account {n}")).await.unwrap().id);
    }
    let start = Timestamp::now().millis() - 30 * 86_400_000;
    let seeding = Instant::now();
    // A million messages over 30 days, one every 2.6 s, spread over 10 accounts.
    seed(&db.url, &accounts, 1_000_000, start, 2_592, true);
    eprintln!("seeded 1,000,000 messages and charges in {:?}", seeding.elapsed());
    let account = accounts[3];
    let day = |d: i64| Timestamp::from_millis(start + d * 86_400_000);
    let rare = Msisdn::parse(RARE).unwrap();
    let common = Msisdn::parse("+18005561234").unwrap();
    let searches: Vec<(&str, MessageFilter)> = vec![
        ("operator, newest page, no filter", MessageFilter::default()),
        (
            "operator, recipient (one message, the oldest)",
            MessageFilter { recipient: Some(rare.clone()), ..Default::default() },
        ),
        ("operator, recipient (100 messages)", MessageFilter { recipient: Some(common.clone()), ..Default::default() }),
        ("operator, status failed", MessageFilter { status: Some(MessageStatus::Failed), ..Default::default() }),
        ("operator, dialect smpp (none)", MessageFilter { dialect: Some(Dialect::Smpp), ..Default::default() }),
        ("account, newest page", MessageFilter { account: Some(account), ..Default::default() }),
        (
            "account, recipient (100 messages)",
            MessageFilter { account: Some(account), recipient: Some(common), ..Default::default() },
        ),
        (
            "account, status failed",
            MessageFilter { account: Some(account), status: Some(MessageStatus::Failed), ..Default::default() },
        ),
        (
            "account, dialect smpp (none)",
            MessageFilter { account: Some(account), dialect: Some(Dialect::Smpp), ..Default::default() },
        ),
        (
            "account, one day 10 days back",
            MessageFilter { account: Some(account), from: Some(day(20)), to: Some(day(21)), ..Default::default() },
        ),
        (
            "operator, recipient in the first day",
            MessageFilter { recipient: Some(rare), from: Some(day(0)), to: Some(day(1)), ..Default::default() },
        ),
    ];
    for (name, filter) in &searches {
        // The first run warms the cache, as a page read twice would be.
        let _ = store.search_messages(filter, page(100, None)).await.unwrap();
        let t = Instant::now();
        let found: Scanned<_> = store.search_messages(filter, page(100, None)).await.unwrap();
        eprintln!("{name}: {:?}, {} found, capped {}", t.elapsed(), found.items.len(), found.capped);
    }
    let ledgers: Vec<(&str, LedgerFilter)> = vec![
        ("ledger, newest page", LedgerFilter::default()),
        ("ledger, refunds (none)", LedgerFilter { kind: Some(EntryKind::Refund), ..Default::default() }),
        ("ledger, one day", LedgerFilter { from: Some(day(20)), to: Some(day(21)), ..Default::default() }),
        (
            "ledger, by message",
            LedgerFilter { message: Some(MessageId::from_uuid(v7(start + 3 * 2_592, 3))), ..Default::default() },
        ),
    ];
    for (name, filter) in &ledgers {
        let _ = store.ledger_entries(account, filter, page(100, None)).await.unwrap();
        let t = Instant::now();
        let found = store.ledger_entries(account, filter, page(100, None)).await.unwrap();
        eprintln!("{name}: {:?}, {} found, capped {}", t.elapsed(), found.items.len(), found.capped);
    }
    let one = MessageId::from_uuid(v7(start + 500_000 * 2_592, 500_000));
    let t = Instant::now();
    let _ = store.get_message(one).await.unwrap().expect("the message");
    let _ = store.message_events(one).await.unwrap();
    let _ = store.message_parts(one).await.unwrap();
    let _ = store.message_ledger(one).await.unwrap();
    let _ = store.message_deliveries(one).await.unwrap();
    eprintln!("one message's detail: {:?}", t.elapsed());
    db.remove().await;
}
