//! Retention: `Store::prune` removes the history (events, parts, webhook deliveries and their
//! attempts) of finished messages that ended before the horizon, in batches of the size asked,
//! and nothing else: recent and unfinished messages keep everything, message rows stay readable,
//! the ledger is untouched, and concurrent prunes take each message once.
//!
//! Messages are made old the way time would: their end time is moved back with SQL beside the
//! store, as an outside edit of the database.

use sqlx::Connection;
use switchboard_domain::Direction;
use switchboard_storage::{
    AttemptRecord, DeliveryFilter, DeliveryOutcome, DeliveryRecord, DeliveryResult, EventRecord, LedgerRecord,
    NewInbound, OptOutChange, PartRecord, Pruned, ReceiptOutcome, SealedSecret, WebhookRecord,
};

use super::receipts::{receipt, send};
use super::*;

const DAY_MS: i64 = 86_400_000;

/// Declares a test as two, one per backend; each gets its database's URL and the store.
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let db = super::TestDatabase::sqlite();
                let store = super::connect(&db.url, &super::ConnectOptions::default()).await.expect("open SQLite");
                super::$name(&db.url, store).await;
                db.remove().await;
            })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(db) = super::TestDatabase::postgres(stringify!($name)).await else { return };
                let options = super::ConnectOptions { max_connections: 16, ..super::ConnectOptions::default() };
                let store = super::connect(&db.url, &options).await.expect("open PostgreSQL");
                super::$name(&db.url, store).await;
                db.remove().await;
            })+
        }
    };
}

on_both!(
    old_finished_messages_lose_their_history_and_nothing_else,
    batches_take_the_oldest_first_and_respect_their_size,
    concurrent_prunes_take_each_message_once,
);

/// Runs statements on the test's database beside the store, as an outside edit would.
async fn edit(url: &str, sql: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let c = rusqlite::Connection::open(path).expect("open the SQLite file");
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c.execute_batch(sql).expect("edit the SQLite file");
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut c).await.expect("edit the PostgreSQL database");
        c.close().await.ok();
    }
}

/// A message id as an SQL literal of the database's type.
fn id_sql(url: &str, id: MessageId) -> String {
    if url.starts_with("sqlite:") { format!("x'{}'", id.as_uuid().simple()) } else { format!("'{}'", id.as_uuid()) }
}

/// The statement that moves the time the messages ended back by `days`.
fn aging(url: &str, ids: &[MessageId], days: i64) -> String {
    let list: Vec<String> = ids.iter().map(|id| id_sql(url, *id)).collect();
    format!("UPDATE messages SET updated_at = updated_at - {} WHERE id IN ({});", days * DAY_MS, list.join(", "))
}

/// Moves the time the messages ended back by `days`.
async fn age(url: &str, ids: &[MessageId], days: i64) {
    edit(url, &aging(url, ids, days)).await;
}

/// The horizon of a 90-day retention.
fn horizon() -> Timestamp {
    Timestamp::now().plus_millis(-90 * DAY_MS)
}

async fn endpoint(store: &Arc<dyn Store>, a: AccountId) -> WebhookRecord {
    let id = uuid::Uuid::now_v7();
    let w = WebhookRecord {
        id,
        account_id: a,
        url: format!("https://hooks.example/{id}"),
        secret: SealedSecret(id.as_bytes().to_vec()),
        events: Vec::new(),
        active: true,
        created_at: Timestamp::now(),
    };
    store.create_webhook(&w).await.unwrap();
    w
}

/// Everything a message's history holds: events, parts, webhook deliveries with their
/// attempts.
#[derive(Debug, PartialEq)]
struct History {
    events: Vec<EventRecord>,
    parts: Vec<PartRecord>,
    deliveries: Vec<(DeliveryRecord, Vec<AttemptRecord>)>,
}

impl History {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.parts.is_empty() && self.deliveries.is_empty()
    }
}

async fn history(store: &Arc<dyn Store>, a: AccountId, id: MessageId) -> History {
    let filter = DeliveryFilter { message: Some(id), ..Default::default() };
    let mut deliveries = Vec::new();
    for d in store.list_deliveries(a, &filter, PageRequest { before: None, limit: 1000 }).await.unwrap() {
        let attempts = store.delivery_attempts(d.event_id, &d.target).await.unwrap();
        deliveries.push((d, attempts));
    }
    History {
        events: store.message_events(id).await.unwrap(),
        parts: store.message_parts(id).await.unwrap(),
        deliveries,
    }
}

/// Claims every due delivery and records each as `outcome`, except those of the messages in
/// `leave`, whose claim is released: they stay pending and due. Returns how many were made.
async fn finish_deliveries(store: &Arc<dyn Store>, outcome: DeliveryOutcome, leave: &[MessageId]) -> usize {
    let now = Timestamp::now();
    let claimed = store.claim_deliveries(now, now.plus_millis(60_000), 1000, &[]).await.unwrap();
    let made = claimed.iter().filter(|d| !leave.contains(&d.message_id)).count();
    let results: Vec<DeliveryResult> = claimed
        .iter()
        .map(|d| DeliveryResult {
            event_id: d.event_id,
            target: d.target.clone(),
            attempt: d.attempts,
            record: AttemptRecord {
                attempt: d.attempts,
                at: now,
                status_code: Some(if outcome == DeliveryOutcome::Delivered { 204 } else { 500 }),
                error: None,
                duration_ms: 3,
            },
            outcome: if leave.contains(&d.message_id) { DeliveryOutcome::Release } else { outcome.clone() },
        })
        .collect();
    store.record_deliveries(&results).await.unwrap();
    made
}

/// The account's ledger, oldest first, and whether its deltas add up to the balance.
async fn ledger_adds_up(store: &Arc<dyn Store>, a: AccountId) -> Vec<LedgerRecord> {
    let mut entries = store.ledger(a, PageRequest { before: None, limit: 1000 }).await.unwrap();
    entries.reverse();
    let sum = entries.iter().fold(Credits::ZERO, |sum, e| sum.checked_add(e.delta).unwrap());
    assert_eq!(sum, balance(store, a).await, "the balance is the sum of the ledger");
    entries
}

async fn old_finished_messages_lose_their_history_and_nothing_else(url: &str, store: Arc<dyn Store>) {
    let a = funded_account(&store, 1000, 0).await;
    let hook = endpoint(&store, a).await;
    let notify = NewMessage { notify_url: Some("https://app.example/status".into()), ..message(a, None, "x") };

    // Old and finished: delivered in two parts (with its own notification URL too), failed with
    // a refund, inbound.
    let delivered = send(&store, NewMessage { segments: 2, ..notify.clone() }, "d-1", &["d-1a", "d-1b"]).await;
    store.record_receipts(&[receipt("d-1a", MessageStatus::Delivered)]).await.unwrap();
    store.record_receipts(&[receipt("d-1b", MessageStatus::Delivered)]).await.unwrap();
    let failed = message(a, Some("failed-key"), "failed");
    store.accept(std::slice::from_ref(&failed)).await.unwrap();
    dispatch_all(&store, |_| DispatchOutcome::Failed {
        error_type: ErrorType::ProviderError,
        message: "refused".into(),
        refund: true,
    })
    .await;
    let inbound = store
        .receive_inbound(
            &NewInbound {
                id: MessageId::new(),
                from: msisdn(TO),
                to: msisdn(FROM),
                kind: MessageKind::Sms,
                body: Some("hello".into()),
                media: Vec::new(),
                encoding: Encoding::Gsm7,
                segments: 1,
                provider_ref: Some("in-1".into()),
                received_at: Timestamp::now(),
            },
            OptOutChange::Keep,
            None,
        )
        .await
        .unwrap()
        .message
        .id;
    // Old and finished, but a webhook delivery of it is still pending.
    let undelivered_hook = send(&store, message(a, None, "y"), "h-1", &[]).await;
    store.record_receipts(&[receipt("h-1", MessageStatus::Delivered)]).await.unwrap();
    // Old but not finished: queued, and sent with its receipt awaited.
    let queued = message(a, None, "queued");
    store.accept(std::slice::from_ref(&queued)).await.unwrap();
    let awaiting = send(&store, message(a, None, "z"), "s-1", &[]).await;
    // Finished, but recent.
    let recent = send(&store, message(a, None, "recent"), "r-1", &[]).await;
    store.record_receipts(&[receipt("r-1", MessageStatus::Delivered)]).await.unwrap();
    // A receipt no submission claimed, old and recent.
    let mut stray = receipt("stray-old", MessageStatus::Delivered);
    stray.at = Timestamp::now().plus_millis(-100 * DAY_MS);
    let out = store.record_receipts(&[stray, receipt("stray-new", MessageStatus::Delivered)]).await.unwrap();
    assert_eq!(out, vec![ReceiptOutcome::Unmatched, ReceiptOutcome::Unmatched]);

    // Every delivery is made once, some failing for good, except the pending one's.
    // Accepted, sent and delivered to the endpoint and the message's URL; accepted and failed;
    // inbound; accepted (queued); accepted and sent (awaiting); accepted, sent and delivered
    // (recent).
    let made = finish_deliveries(&store, DeliveryOutcome::Delivered, &[undelivered_hook]).await;
    assert_eq!(made, 6 + 2 + 1 + 1 + 2 + 3);
    age(url, &[delivered, failed.id, inbound, undelivered_hook, queued.id, awaiting], 100).await;
    let old_ended = [delivered, failed.id, inbound];
    let kept = [undelivered_hook, queued.id, awaiting, recent];
    let mut before = Vec::new();
    for id in old_ended.iter().chain(&kept) {
        let h = history(&store, a, *id).await;
        assert!(!h.events.is_empty(), "{id} has events");
        before.push(h);
    }
    assert_eq!(before[0].parts.len(), 2);
    assert_eq!(before[0].deliveries.len(), 6, "3 events to the endpoint and to the message's URL");
    assert!(before[0].deliveries.iter().any(|(d, _)| d.target == hook.id.hyphenated().to_string()));
    assert!(before[0].deliveries.iter().all(|(_, attempts)| attempts.len() == 1));
    let messages_before = read_all(&store, old_ended.iter().chain(&kept)).await;
    let ledger_before = ledger_adds_up(&store, a).await;
    assert!(ledger_before.iter().any(|e| e.kind == EntryKind::Refund), "the failed message was refunded");
    let pending_before = store.pending_parts("", None, 1000).await.unwrap();
    assert_eq!(pending_before.len(), 1, "the message awaiting its receipt");

    let pruned = store.prune(horizon(), 1000).await.unwrap();
    let old_deliveries: usize = before[..3].iter().map(|h| h.deliveries.len()).sum();
    let old_attempts: usize = before[..3].iter().flat_map(|h| &h.deliveries).map(|(_, a)| a.len()).sum();
    assert_eq!(
        pruned,
        Pruned {
            messages: 3,
            events: before[..3].iter().map(|h| h.events.len() as u64).sum(),
            parts: before[..3].iter().map(|h| h.parts.len() as u64).sum(),
            deliveries: old_deliveries as u64,
            attempts: old_attempts as u64,
            receipts: 1,
        }
    );
    assert!(pruned.drained(1000));
    for id in old_ended {
        let h = history(&store, a, id).await;
        assert!(h.is_empty(), "{id} kept {h:?}");
    }
    for (id, h) in kept.iter().zip(&before[3..]) {
        assert_eq!(&history(&store, a, *id).await, h, "{id} changed");
    }
    // The message rows read as before, status, charge and all; the ledger is untouched.
    let messages_after = read_all(&store, old_ended.iter().chain(&kept)).await;
    assert_eq!(messages_after, messages_before);
    let read = store.get_message(delivered).await.unwrap().unwrap();
    assert_eq!((read.status, read.charged), (MessageStatus::Delivered, Credits::new(2, 0)));
    assert_eq!(store.get_message(inbound).await.unwrap().unwrap().direction, Direction::Inbound);
    assert_eq!(ledger_adds_up(&store, a).await, ledger_before);
    assert_eq!(store.pending_parts("", None, 1000).await.unwrap(), pending_before);
    // The idempotency key still replays the stored message.
    let again = store.accept(std::slice::from_ref(&failed)).await.unwrap();
    assert!(matches!(&again[0], AcceptOutcome::Replayed(m) if m.id == failed.id), "{again:?}");
    // A receipt for a part of a pruned message no longer reaches it.
    assert_eq!(
        store.record_receipts(&[receipt("d-1a", MessageStatus::Delivered)]).await.unwrap(),
        vec![ReceiptOutcome::Unmatched]
    );
    // The recent stray receipt stays, to be matched.
    let late = send(&store, message(a, None, "late"), "stray-new", &[]).await;
    assert_eq!(store.get_message(late).await.unwrap().unwrap().status, MessageStatus::Delivered);

    // A second pass finds nothing more.
    assert_eq!(store.prune(horizon(), 1000).await.unwrap(), Pruned::default());

    // Once its last deliveries are made (here given up), the message that waited for them is
    // pruned too; the late message's own deliveries go with them, but it is recent.
    assert_eq!(finish_deliveries(&store, DeliveryOutcome::Failed, &[]).await, 3 + 3);
    let pruned = store.prune(horizon(), 1000).await.unwrap();
    assert_eq!((pruned.messages, pruned.events), (1, 4));
    assert!(history(&store, a, undelivered_hook).await.is_empty());
    assert_eq!(store.get_message(undelivered_hook).await.unwrap().unwrap().status, MessageStatus::Delivered);
    assert_eq!(ledger_adds_up(&store, a).await.len(), ledger_before.len() + 1, "the late message's charge only");
    assert!(!history(&store, a, late).await.is_empty());
}

/// The messages, read back.
async fn read_all(
    store: &Arc<dyn Store>,
    ids: impl Iterator<Item = &MessageId>,
) -> Vec<switchboard_storage::MessageRecord> {
    let mut out = Vec::new();
    for id in ids {
        out.push(store.get_message(*id).await.unwrap().expect("the message row stays"));
    }
    out
}

/// Which of the messages have no events left.
async fn without_events(store: &Arc<dyn Store>, ids: &[MessageId]) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        out.push(store.message_events(*id).await.unwrap().is_empty());
    }
    out
}

/// `n` messages that failed at once, the i-th ending `300 - i` days ago.
async fn old_failed(url: &str, store: &Arc<dyn Store>, a: AccountId, n: usize) -> Vec<MessageId> {
    let batch: Vec<NewMessage> = (0..n).map(|i| message(a, None, &format!("m{i}"))).collect();
    store.accept(&batch).await.unwrap();
    dispatch_all(store, |_| DispatchOutcome::Failed {
        error_type: ErrorType::InvalidDestination,
        message: "no".into(),
        refund: false,
    })
    .await;
    let sql: String = batch.iter().enumerate().map(|(i, m)| aging(url, &[m.id], 300 - i as i64)).collect();
    edit(url, &sql).await;
    batch.iter().map(|m| m.id).collect()
}

async fn batches_take_the_oldest_first_and_respect_their_size(url: &str, store: Arc<dyn Store>) {
    let a = funded_account(&store, 1000, 0).await;
    let ids = old_failed(url, &store, a, 25).await;
    let ledger_before = ledger_adds_up(&store, a).await;

    let first = store.prune(horizon(), 10).await.unwrap();
    // accepted, queued, failed
    assert_eq!((first.messages, first.events, first.rows()), (10, 30, 30));
    assert!(!first.drained(10));
    let gone = without_events(&store, &ids).await;
    assert_eq!(gone, (0..25).map(|i| i < 10).collect::<Vec<_>>(), "the ten that ended first");
    let second = store.prune(horizon(), 10).await.unwrap();
    assert_eq!(second.messages, 10);
    let third = store.prune(horizon(), 10).await.unwrap();
    assert_eq!(third.messages, 5);
    assert!(third.drained(10));
    assert_eq!(store.prune(horizon(), 10).await.unwrap(), Pruned::default());
    assert!(without_events(&store, &ids).await.iter().all(|g| *g));
    assert_eq!(ledger_adds_up(&store, a).await, ledger_before);
}

async fn concurrent_prunes_take_each_message_once(url: &str, store: Arc<dyn Store>) {
    let a = funded_account(&store, 1000, 0).await;
    let ids = old_failed(url, &store, a, 120).await;
    let ledger_before = ledger_adds_up(&store, a).await;
    let mut pruners = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        pruners.push(tokio::spawn(async move {
            let mut total = Pruned::default();
            loop {
                let p = store.prune(horizon(), 7).await.unwrap();
                total.add(&p);
                if p.drained(7) {
                    return total;
                }
            }
        }));
    }
    let mut total = Pruned::default();
    for p in pruners {
        total.add(&p.await.unwrap());
    }
    assert_eq!((total.messages, total.events), (120, 360), "each message once");
    for id in ids {
        assert!(store.message_events(id).await.unwrap().is_empty());
    }
    assert_eq!(ledger_adds_up(&store, a).await, ledger_before);
}
