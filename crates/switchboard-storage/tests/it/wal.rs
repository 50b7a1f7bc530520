//! The SQLite WAL stays under its bound while writes never stop and readers keep reading: a
//! size check, never a timing check.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// The bound under test, small so that the test writes many times over it.
const LIMIT: u64 = 256 * 1024;
/// What the WAL may pass the bound by: the last commit before the writer empties it. A commit
/// here holds at most two groups of 25 messages, a few KiB of pages each.
const SLACK: u64 = 768 * 1024;

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wal_stays_under_its_bound_while_writes_and_reads_go_on() {
    let db = TestDatabase::sqlite();
    let options = ConnectOptions { wal_limit_bytes: LIMIT, ..ConnectOptions::default() };
    let store = connect(&db.url, &options).await.expect("open SQLite");
    let file = db.url.trim_start_matches("sqlite://").to_owned();
    let wal = format!("{file}-wal");
    let account = funded_account(&store, 10_000_000, 0).await;

    // Readers that never stop while the writes go on, so the WAL always has readers on it.
    let writing = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, writing) = (store.clone(), writing.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while writing.load(Ordering::Relaxed) {
                    store.list_messages(account, PageRequest { before: None, limit: 20 }).await.unwrap();
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    // Two writers, 120 groups of 25 messages each, and the WAL's size after every group.
    let body = "A reminder that your appointment is tomorrow at 10:00. Reply STOP to opt out.";
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (store, wal) = (store.clone(), wal.clone());
            tokio::spawn(async move {
                let mut largest = 0;
                for _ in 0..120 {
                    let group: Vec<NewMessage> = (0..25).map(|_| message(account, None, body)).collect();
                    let outcomes = store.accept(&group).await.unwrap();
                    assert!(outcomes.iter().all(|o| matches!(o, AcceptOutcome::Queued(_))));
                    largest = largest.max(size(Path::new(&wal)));
                }
                largest
            })
        })
        .collect();
    let mut largest = 0;
    for w in writers {
        largest = largest.max(w.await.unwrap());
    }
    writing.store(false, Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0, "every reader read while the writes went on");
    }

    // Everything is there, and it took far more pages than the bound holds.
    assert_eq!(store.count_messages(account).await.unwrap(), vec![("queued".to_owned(), 6_000)]);
    let stored = size(Path::new(&file));
    assert!(stored > 8 * LIMIT, "the writes came to {stored} bytes of database, not far over the bound");
    assert!(largest <= LIMIT + SLACK, "the WAL reached {largest} bytes; its bound is {LIMIT}");
    db.remove().await;
}
