//! The store contract: every test runs on SQLite and on PostgreSQL.

use std::future::Future;
use std::sync::Arc;

use switchboard_domain::{
    AccountId, BatchId, Encoding, ErrorType, MessageId, MessageKind, MessageStatus, Msisdn, SenderId, Timestamp,
};
use switchboard_ledger::{Credits, EntryKind};
use switchboard_storage::testing::TestDatabase;
use switchboard_storage::{
    AcceptOutcome, BatchState, ConnectOptions, DispatchOutcome, DispatchResult, NewBatch, NewMessage, PageRequest,
    SenderChange, SenderRecord, Store, connect,
};
use switchboard_storage::{ChannelChange, ChannelRecord, StorageError};

const FROM: &str = "+18005559876";
const TO: &str = "+18005551234";

/// A phone number written out in a test.
fn msisdn(number: &str) -> Msisdn {
    Msisdn::parse(number).expect("a test number is E.164")
}

fn sender(address: &str) -> SenderId {
    SenderId::parse(address).expect("a test sender is a number or a name")
}

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDatabase::sqlite();
    let store = connect(&db.url, &ConnectOptions::default()).await.expect("open SQLite");
    test(store).await;
    db.remove().await;
}

async fn on_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDatabase::postgres(name).await else {
        return;
    };
    let options = ConnectOptions { max_connections: 16, ..ConnectOptions::default() };
    let store = connect(&db.url, &options).await.expect("open PostgreSQL");
    test(store).await;
    db.remove().await;
}

/// Declares one contract test as two tests, one per backend.
macro_rules! contract {
    ($($name:ident),+ $(,)?) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::on_sqlite(super::$name).await } )+ }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::on_postgres(stringify!($name), super::$name).await } )+ }
    };
}

mod connect;
mod console;
mod destinations;
mod numbers;
mod pending_parts;
mod rates;
mod receipts;
mod retention;
mod search;
mod smpp;
mod upgrade;
mod wal;
mod webhooks;

contract!(
    accounts_keys_and_senders,
    top_up_writes_the_ledger,
    accept_charges_and_records_events,
    accept_refuses_without_writing,
    opted_out_is_stored_failed_and_free,
    idempotency_replays_and_conflicts_across_groups,
    concurrent_groups_never_overdraw,
    concurrent_same_key_charges_once,
    claims_are_disjoint_and_leases_expire,
    results_apply_once_and_refund_once,
    waits_for_upstreams_are_counted_apart_and_offered_again,
    admitted_already_claimed,
    paging_is_newest_first,
    requests_are_all_or_nothing_and_tracked,
    concurrent_requests_never_overdraw,
    message_counts_follow_every_change,
    rate_limits_are_stored,
    channels_and_templates,
    scheduled_messages_wait_and_cancel_with_a_refund,
    expiry_ends_expired_with_a_refund,
    media_and_details_round_trip,
    readiness_probes,
);

async fn readiness_probes(store: Arc<dyn Store>) {
    assert_eq!(store.schema_version().await.unwrap(), switchboard_storage::SCHEMA_VERSION);
    store.write_probe().await.unwrap();
    // A probe leaves nothing behind: the store writes and reads as before it.
    let a = funded_account(&store, 2, 0).await;
    assert!(matches!(store.accept(&[message(a, None, "x")]).await.unwrap()[0], AcceptOutcome::Queued(_)));
}

async fn funded_account(store: &Arc<dyn Store>, sms: i64, mms: i64) -> AccountId {
    let account = store.create_account("test").await.unwrap().id;
    if sms > 0 || mms > 0 {
        store.top_up(account, Credits::new(sms, mms), Some("test")).await.unwrap();
    }
    store
        .create_sender(&SenderRecord {
            address: sender(FROM),
            account_id: account,
            active: true,
            sms: true,
            mms: true,
            created_at: Timestamp::now(),
        })
        .await
        .unwrap();
    account
}

fn message(account: AccountId, key: Option<&str>, body: &str) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        account_id: account,
        kind: MessageKind::Sms,
        to: msisdn(TO),
        from: sender(FROM),
        body: Some(body.into()),
        media: Vec::new(),
        encoding: Encoding::Gsm7,
        segments: 1,
        price: Credits::new(2, 0),
        idempotency_key: key.map(str::to_owned),
        request_hash: body.as_bytes().to_vec(),
        created_at: Timestamp::now(),
        claim_until: None,
        batch: None,
        channel_id: None,
        scheduled_for: None,
        expires_at: None,
        details: None,
        notify_url: None,
        destination: None,
        refusal: None,
        request_id: Some("test-request".into()),
    }
}

/// A message whose id and creation time are `at`.
fn message_at(account: AccountId, at: Timestamp, to: &str) -> NewMessage {
    let random = uuid::Uuid::new_v4().as_u128() & ((1u128 << 80) - 1);
    let id = MessageId::from_uuid(uuid::Uuid::from_u128(MessageId::first_at(at).as_uuid().as_u128() | random));
    NewMessage { id, created_at: at, to: msisdn(to), ..message(account, None, "x") }
}

/// The messages of one multi-recipient request, one per recipient.
fn request(account: AccountId, recipients: &[&str]) -> Vec<NewMessage> {
    let ids: Vec<MessageId> = recipients.iter().map(|_| MessageId::new()).collect();
    let batch = Arc::new(NewBatch {
        id: BatchId::new(),
        account_id: account,
        kind: MessageKind::Sms,
        from: sender(FROM),
        body: Some("hello".into()),
        recipients: recipients.len() as u32,
        first_message_id: ids[0],
        created_at: Timestamp::now(),
    });
    recipients
        .iter()
        .zip(ids)
        .map(|(to, id)| NewMessage {
            id,
            to: msisdn(to),
            batch: Some(batch.clone()),
            channel_id: None,
            scheduled_for: None,
            expires_at: None,
            details: None,
            ..message(account, None, "hello")
        })
        .collect()
}

async fn dispatch_all(store: &Arc<dyn Store>, outcome: impl Fn(&str) -> DispatchOutcome) {
    let now = Timestamp::now();
    let claimed = store.claim_due(now, now.plus_millis(60_000), 1000).await.unwrap();
    let results: Vec<DispatchResult> = claimed
        .iter()
        .map(|m| DispatchResult {
            id: m.id,
            account_id: m.account_id,
            attempt: m.attempts,
            at: Timestamp::now(),
            outcome: outcome(m.to.as_str()),
        })
        .collect();
    store.record_results(&results).await.unwrap();
}

/// Assigns an active SMS-only sender to an account, and returns it.
async fn sms_sender(store: &Arc<dyn Store>, account: AccountId, address: &str) -> SenderId {
    let record = SenderRecord {
        address: sender(address),
        account_id: account,
        active: true,
        sms: true,
        mms: false,
        created_at: Timestamp::now(),
    };
    store.create_sender(&record).await.unwrap();
    record.address
}

async fn balance(store: &Arc<dyn Store>, account: AccountId) -> Credits {
    store.get_account(account).await.unwrap().unwrap().balance
}

async fn accounts_keys_and_senders(store: Arc<dyn Store>) {
    let a = store.create_account("Acme").await.unwrap();
    assert_eq!(store.get_account(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_account(AccountId::new()).await.unwrap(), None);

    // The database keeps no key, only the fingerprint of the installation's keys: the first
    // recorded stays, and only a matching one removes the secret that older versions kept.
    assert_eq!(store.legacy_server_secret().await.unwrap(), None);
    assert_eq!(store.key_fingerprints().await.unwrap(), vec![]);
    let fp = |name: &str, value: &[u8]| (name.to_owned(), value.to_vec());
    let one = vec![fp("keys_fingerprint", b"one"), fp("keys_fingerprint_1", b"key one")];
    assert_eq!(store.record_server_keys(&one, true).await.unwrap(), one);
    // Recorded fingerprints stay; a new key's is added beside them.
    let two = vec![fp("keys_fingerprint", b"two"), fp("keys_fingerprint_2", b"key two")];
    let both = vec![one[0].clone(), one[1].clone(), two[1].clone()];
    assert_eq!(store.record_server_keys(&two, true).await.unwrap(), both);
    assert_eq!(store.key_fingerprints().await.unwrap(), both);

    let key = switchboard_storage::ApiKeyRecord {
        id: "key_1".into(),
        account_id: a.id,
        name: Some("ci".into()),
        secret_hash: vec![1; 32],
        created_at: Timestamp::now(),
        revoked_at: None,
    };
    store.create_api_key(&key).await.unwrap();
    assert!(store.create_api_key(&key).await.is_err(), "key ids are unique");
    assert_eq!(store.find_api_key("key_1").await.unwrap(), Some(key.clone()));
    let other = store.create_account("Other").await.unwrap();
    assert!(store.revoke_api_key(other.id, "key_1", Timestamp::now()).await.is_err(), "only the owner revokes");
    let revoked = store.revoke_api_key(a.id, "key_1", Timestamp::now()).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(store.list_api_keys(a.id).await.unwrap().len(), 1);

    let sender = SenderRecord {
        address: sender(FROM),
        account_id: a.id,
        active: true,
        sms: true,
        mms: false,
        created_at: Timestamp::now(),
    };
    store.create_sender(&sender).await.unwrap();
    let taken = SenderRecord { account_id: other.id, ..sender.clone() };
    assert!(matches!(store.create_sender(&taken).await, Err(switchboard_storage::StorageError::Conflict(_))));
    let changed =
        store.update_sender(a.id, FROM, SenderChange { active: Some(false), ..Default::default() }).await.unwrap();
    assert!(!changed.active && changed.sms && !changed.mms);
    assert!(store.update_sender(other.id, FROM, SenderChange::default()).await.is_err());
    assert_eq!(store.list_senders(a.id).await.unwrap(), vec![changed]);
    assert!(store.list_senders(other.id).await.unwrap().is_empty());
}

async fn top_up_writes_the_ledger(store: Arc<dyn Store>) {
    let a = store.create_account("Acme").await.unwrap().id;
    let e1 = store.top_up(a, Credits::new(10, 0), Some("inv-1")).await.unwrap();
    let e2 = store.top_up(a, Credits::new(5, 3), None).await.unwrap();
    assert_eq!(e2.balance_after, Credits::new(15, 3));
    assert!(store.top_up(a, Credits::new(-5, 0), None).await.is_err());
    assert!(store.top_up(AccountId::new(), Credits::new(1, 0), None).await.is_err());
    let entries = store.ledger(a, PageRequest { before: None, limit: 10 }).await.unwrap();
    assert_eq!(entries, vec![e2, e1.clone()]);
    assert_eq!(entries[1].reference.as_deref(), Some("inv-1"));
    assert_eq!(balance(&store, a).await, Credits::new(15, 3));
}

async fn accept_charges_and_records_events(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 1).await;
    let mut mms = message(a, None, "pic");
    mms.kind = MessageKind::Mms;
    mms.price = Credits::new(2, 1);
    mms.media = vec!["https://example.com/a.jpg".into()];
    let out = store.accept(&[message(a, None, "one"), mms]).await.unwrap();
    let AcceptOutcome::Queued(sms) = &out[0] else { panic!("{out:?}") };
    let AcceptOutcome::Queued(mms) = &out[1] else { panic!("{out:?}") };
    assert_eq!(balance(&store, a).await, Credits::new(6, 0));
    assert_eq!(store.get_message(sms.id).await.unwrap().as_ref(), Some(sms));
    assert_eq!(store.get_message(mms.id).await.unwrap().unwrap().charged, Credits::new(2, 1));
    let events: Vec<MessageStatus> = store.message_events(sms.id).await.unwrap().iter().map(|e| e.status).collect();
    assert_eq!(events, vec![MessageStatus::Accepted, MessageStatus::Queued]);
    let ledger = store.ledger(a, PageRequest { before: None, limit: 10 }).await.unwrap();
    let charges: Vec<_> = ledger.iter().filter(|e| e.kind == EntryKind::Charge).collect();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0].message_id, Some(mms.id));
    assert_eq!(charges[0].balance_after, Credits::new(6, 0));
}

async fn accept_refuses_without_writing(store: Arc<dyn Store>) {
    let a = funded_account(&store, 2, 0).await;
    let other = store.create_account("other").await.unwrap().id;
    let mut wrong_sender = message(a, None, "x");
    wrong_sender.from = sender("+18005550000");
    let foreign = message(other, None, "x");
    let mut mms = message(a, None, "x");
    mms.kind = MessageKind::Mms;
    mms.price = Credits::new(2, 1);
    let out = store.accept(&[wrong_sender, foreign, mms]).await.unwrap();
    assert_eq!(
        out,
        vec![AcceptOutcome::SenderNotAssigned, AcceptOutcome::SenderNotAssigned, AcceptOutcome::InsufficientCredits]
    );
    store.update_sender(a, FROM, SenderChange { active: Some(false), ..Default::default() }).await.unwrap();
    assert_eq!(store.accept(&[message(a, None, "x")]).await.unwrap(), vec![AcceptOutcome::SenderInactive]);
    store
        .update_sender(a, FROM, SenderChange { active: Some(true), sms: Some(false), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(store.accept(&[message(a, None, "x")]).await.unwrap(), vec![AcceptOutcome::SenderNotCapable]);
    assert!(store.list_messages(a, PageRequest { before: None, limit: 10 }).await.unwrap().is_empty());
    assert_eq!(balance(&store, a).await, Credits::new(2, 0));
}

async fn opted_out_is_stored_failed_and_free(store: Arc<dyn Store>) {
    let a = funded_account(&store, 2, 0).await;
    store.add_opt_out(a, FROM, TO).await.unwrap();
    store.add_opt_out(a, FROM, TO).await.unwrap();
    assert_eq!(store.list_opt_outs(a, 10).await.unwrap().len(), 1);
    let out = store.accept(&[message(a, None, "x")]).await.unwrap();
    let AcceptOutcome::Failed(m) = &out[0] else { panic!("{out:?}") };
    assert_eq!((m.status, m.error_type, m.charged), (MessageStatus::Failed, Some(ErrorType::OptedOut), Credits::ZERO));
    assert_eq!(balance(&store, a).await, Credits::new(2, 0));
    store.remove_opt_out(a, FROM, TO).await.unwrap();
    assert!(store.remove_opt_out(a, FROM, TO).await.is_err());
    assert!(matches!(store.accept(&[message(a, None, "x")]).await.unwrap()[0], AcceptOutcome::Queued(_)));
    assert_eq!(balance(&store, a).await, Credits::ZERO);
}

async fn idempotency_replays_and_conflicts_across_groups(store: Arc<dyn Store>) {
    let a = funded_account(&store, 100, 0).await;
    let first = store.accept(&[message(a, Some("k1"), "hello")]).await.unwrap().remove(0);
    let AcceptOutcome::Queued(original) = first else { panic!() };
    let again = store.accept(&[message(a, Some("k1"), "hello")]).await.unwrap().remove(0);
    assert_eq!(again, AcceptOutcome::Replayed(original.clone()));
    let changed = store.accept(&[message(a, Some("k1"), "other")]).await.unwrap().remove(0);
    assert_eq!(changed, AcceptOutcome::IdempotencyConflict);
    // Keys belong to an account: another account may use the same key.
    let b = store.create_account("b").await.unwrap().id;
    store.top_up(b, Credits::new(2, 0), None).await.unwrap();
    let mut theirs = message(b, Some("k1"), "hello");
    theirs.from = sms_sender(&store, b, "+18005550001").await;
    assert!(matches!(store.accept(&[theirs]).await.unwrap()[0], AcceptOutcome::Queued(_)));
    assert_eq!(balance(&store, a).await, Credits::new(98, 0));
}

async fn concurrent_groups_never_overdraw(store: Arc<dyn Store>) {
    const N: usize = 40;
    let a = funded_account(&store, 2 * N as i64, 0).await;
    let mut tasks = Vec::new();
    for i in 0..(5 * N / 5) {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let group: Vec<NewMessage> = (0..5).map(|j| message(a, None, &format!("{i}-{j}"))).collect();
            store.accept(&group).await.unwrap()
        }));
    }
    let mut queued = 0;
    for t in tasks {
        for o in t.await.unwrap() {
            match o {
                AcceptOutcome::Queued(_) => queued += 1,
                AcceptOutcome::InsufficientCredits => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(queued, N);
    assert_eq!(balance(&store, a).await, Credits::ZERO);
    let charges = store.ledger(a, PageRequest { before: None, limit: 1000 }).await.unwrap();
    assert_eq!(charges.iter().filter(|e| e.kind == EntryKind::Charge).count(), N);
}

async fn concurrent_same_key_charges_once(store: Arc<dyn Store>) {
    let a = funded_account(&store, 100, 0).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(
            async move { store.accept(&[message(a, Some("same"), "body")]).await.unwrap().remove(0) },
        ));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            AcceptOutcome::Queued(m) | AcceptOutcome::Replayed(m) => ids.insert(m.id),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(balance(&store, a).await, Credits::new(98, 0));
}

async fn claims_are_disjoint_and_leases_expire(store: Arc<dyn Store>) {
    let a = funded_account(&store, 200, 0).await;
    let group: Vec<NewMessage> = (0..60).map(|i| message(a, None, &i.to_string())).collect();
    store.accept(&group).await.unwrap();
    let now = Timestamp::now();
    let lease = now.plus_millis(60_000);
    let (x, y, z) =
        tokio::join!(store.claim_due(now, lease, 25), store.claim_due(now, lease, 25), store.claim_due(now, lease, 25));
    let mut ids: Vec<MessageId> = [x.unwrap(), y.unwrap(), z.unwrap()].concat().iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 60, "all claimed");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60, "nothing claimed twice");
    assert!(store.claim_due(now, lease, 100).await.unwrap().is_empty(), "leased messages are not due");
    let later = lease.plus_millis(1);
    let again = store.claim_due(later, later.plus_millis(60_000), 100).await.unwrap();
    assert_eq!(again.len(), 60, "an expired lease makes a message due again");
    assert!(again.iter().all(|m| m.attempts == 2));
}

async fn results_apply_once_and_refund_once(store: Arc<dyn Store>) {
    let a = funded_account(&store, 6, 0).await;
    store.accept(&[message(a, None, "1"), message(a, None, "2"), message(a, None, "3")]).await.unwrap();
    let now = Timestamp::now();
    let claimed = store.claim_due(now, now.plus_millis(60_000), 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let result = |i: usize, outcome: DispatchOutcome| DispatchResult {
        id: claimed[i].id,
        account_id: a,
        attempt: claimed[i].attempts,
        at: Timestamp::now(),
        outcome,
    };
    let results = vec![
        result(0, DispatchOutcome::Sent { provider_message_id: "p-1".into(), parts: Vec::new() }),
        result(
            1,
            DispatchOutcome::Failed { error_type: ErrorType::InvalidDestination, message: "bad".into(), refund: true },
        ),
        result(2, DispatchOutcome::Retry { next_attempt_at: now, error: "later".into(), unavailable: false }),
    ];
    assert_eq!(store.record_results(&results).await.unwrap().len(), 3);
    // The same results again change nothing: no second refund, no second event.
    assert!(store.record_results(&results[..2]).await.unwrap().is_empty());
    assert_eq!(balance(&store, a).await, Credits::new(2, 0));
    let sent = store.get_message(claimed[0].id).await.unwrap().unwrap();
    assert_eq!((sent.status, sent.provider_message_id.as_deref()), (MessageStatus::Sent, Some("p-1")));
    assert!(sent.sent_at.is_some());
    let failed = store.get_message(claimed[1].id).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error_type, failed.charged),
        (MessageStatus::Failed, Some(ErrorType::InvalidDestination), Credits::ZERO)
    );
    let events: Vec<MessageStatus> = store.message_events(failed.id).await.unwrap().iter().map(|e| e.status).collect();
    assert_eq!(events, vec![MessageStatus::Accepted, MessageStatus::Queued, MessageStatus::Failed]);
    let refunds = store.ledger(a, PageRequest { before: None, limit: 100 }).await.unwrap();
    let refunds: Vec<_> = refunds.iter().filter(|e| e.kind == EntryKind::Refund).collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!((refunds[0].message_id, refunds[0].delta), (Some(failed.id), Credits::new(2, 0)));
    let retried = store.get_message(claimed[2].id).await.unwrap().unwrap();
    assert_eq!((retried.status, retried.error_message.as_deref()), (MessageStatus::Queued, Some("later")));
    // A result from a stale attempt is ignored.
    let again = store.claim_due(Timestamp::now(), Timestamp::now().plus_millis(1000), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    let stale = DispatchResult {
        attempt: 1,
        ..result(2, DispatchOutcome::Sent { provider_message_id: "late".into(), parts: Vec::new() })
    };
    assert!(store.record_results(&[stale]).await.unwrap().is_empty());
}

/// A retry because no upstream could take the message is counted apart from the attempts;
/// `offer_again` makes such a retry due at once, but only while the row is as that retry left
/// it; the parts an attempt got taken are read back in order.
async fn waits_for_upstreams_are_counted_apart_and_offered_again(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    store.accept(&[message(a, None, "1")]).await.unwrap();
    let now = Timestamp::now();
    let claimed = store.claim_due(now, now.plus_millis(60_000), 10).await.unwrap();
    let m = &claimed[0];
    assert_eq!((m.attempts, m.unavailable_attempts), (1, 0));
    let later = now.plus_millis(3_600_000);
    let retry = DispatchResult {
        id: m.id,
        account_id: a,
        attempt: 1,
        at: now,
        outcome: DispatchOutcome::Retry { next_attempt_at: later, error: "not bound".into(), unavailable: true },
    };
    assert_eq!(store.record_results(&[retry]).await.unwrap(), vec![m.id]);
    let stored = store.get_message(m.id).await.unwrap().unwrap();
    assert_eq!((stored.attempts, stored.unavailable_attempts, stored.next_attempt_at), (1, 1, later));
    assert!(store.claim_due(Timestamp::now(), later, 10).await.unwrap().is_empty(), "not due yet");

    // Offered with another attempt or another retry time: left alone.
    assert_eq!(store.offer_again(&[(m.id, 2, later), (m.id, 1, now)], Timestamp::now()).await.unwrap(), 0);
    // As that retry left it: due now, and claimed at once.
    assert_eq!(store.offer_again(&[(m.id, 1, later)], Timestamp::now()).await.unwrap(), 1);
    let again = store.claim_due(Timestamp::now(), Timestamp::now().plus_millis(60_000), 10).await.unwrap();
    assert_eq!(again.iter().map(|m| (m.id, m.attempts, m.unavailable_attempts)).collect::<Vec<_>>(), [(m.id, 2, 1)]);
    // Claimed now: the same offer no longer touches it.
    assert_eq!(store.offer_again(&[(m.id, 1, later)], Timestamp::now()).await.unwrap(), 0);

    // Parts taken while the message is still being sent, read back in order.
    store.record_sent_part(m.id, 2, "p-2", Timestamp::now()).await.unwrap();
    store.record_sent_part(m.id, 1, "p-1", Timestamp::now()).await.unwrap();
    assert_eq!(store.sent_parts(m.id).await.unwrap(), [(1, "p-1".to_owned()), (2, "p-2".to_owned())]);
}

async fn paging_is_newest_first(store: Arc<dyn Store>) {
    let a = funded_account(&store, 100, 0).await;
    for i in 0..7 {
        store.accept(&[message(a, None, &i.to_string())]).await.unwrap();
    }
    let page1 = store.list_messages(a, PageRequest { before: None, limit: 3 }).await.unwrap();
    let page2 = store.list_messages(a, PageRequest { before: Some(page1[2].id), limit: 3 }).await.unwrap();
    let page3 = store.list_messages(a, PageRequest { before: Some(page2[2].id), limit: 3 }).await.unwrap();
    let bodies: Vec<String> = [page1, page2, page3].concat().into_iter().filter_map(|m| m.body).collect();
    assert_eq!(bodies, vec!["6", "5", "4", "3", "2", "1", "0"]);
    let counts = store.count_messages(a).await.unwrap();
    assert_eq!(counts, vec![("queued".to_owned(), 7)]);
}

/// A message admitted by a node that dispatches it itself is stored claimed for attempt 1 and
/// is not due to anyone else until its lease runs out.
async fn admitted_already_claimed(store: Arc<dyn Store>) {
    let a = funded_account(&store, 6, 0).await;
    let now = Timestamp::now();
    let lease_until = now.plus_millis(60_000);
    let mut claimed = message(a, None, "mine");
    claimed.claim_until = Some(lease_until);
    let out = store.accept(&[claimed, message(a, None, "anyone's")]).await.unwrap();
    let AcceptOutcome::Queued(mine) = &out[0] else { panic!("{out:?}") };
    assert_eq!((mine.attempts, mine.next_attempt_at), (1, lease_until));
    // Claimed at a time after both were created (the other is due from its creation).
    let later = Timestamp::now();
    let due = store.claim_due(later, later.plus_millis(1_000), 10).await.unwrap();
    assert_eq!(due.iter().map(|m| m.body.as_deref()).collect::<Vec<_>>(), vec![Some("anyone's")]);
    // Its first attempt's result applies as for any claim.
    let sent = DispatchResult {
        id: mine.id,
        account_id: a,
        attempt: 1,
        at: Timestamp::now(),
        outcome: DispatchOutcome::Sent { provider_message_id: "p".into(), parts: Vec::new() },
    };
    assert_eq!(store.record_results(&[sent]).await.unwrap(), vec![mine.id]);
    // Had the node died, the lease would run out and the message be claimed for attempt 2.
    let mut orphan = message(a, None, "orphan");
    orphan.claim_until = Some(now.plus_millis(10));
    assert!(matches!(store.accept(&[orphan]).await.unwrap()[0], AcceptOutcome::Queued(_)));
    let later = now.plus_millis(61_000);
    let again = store.claim_due(later, later.plus_millis(1_000), 10).await.unwrap();
    let orphan = again.iter().find(|m| m.body.as_deref() == Some("orphan")).expect("the orphan is due again");
    assert_eq!(orphan.attempts, 2);
}

async fn requests_are_all_or_nothing_and_tracked(store: Arc<dyn Store>) {
    let a = funded_account(&store, 5, 0).await;
    let to = ["+18005550001", "+18005550002", "+18005550003"];

    // Three recipients at 2 credits cannot be paid from 5: nothing is stored or charged.
    let refused = request(a, &to);
    let outcomes = store.accept(&refused).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == AcceptOutcome::InsufficientCredits), "{outcomes:?}");
    assert_eq!(balance(&store, a).await, Credits::new(5, 0));
    let batch_id = refused[0].batch.as_ref().unwrap().id;
    assert_eq!(store.get_batch(batch_id).await.unwrap(), None);
    assert!(store.get_message(refused[0].id).await.unwrap().is_none());

    // With one recipient opted out, two charged messages fit.
    store.add_opt_out(a, FROM, to[1]).await.unwrap();
    let admitted = request(a, &to);
    let outcomes = store.accept(&admitted).await.unwrap();
    assert!(matches!(outcomes[0], AcceptOutcome::Queued(_)));
    assert!(matches!(outcomes[1], AcceptOutcome::Failed(_)));
    assert!(matches!(outcomes[2], AcceptOutcome::Queued(_)));
    assert_eq!(balance(&store, a).await, Credits::new(1, 0));
    let id = admitted[0].batch.as_ref().unwrap().id;
    let batch = store.get_batch(id).await.unwrap().unwrap();
    assert_eq!((batch.recipients, batch.sent, batch.failed, batch.state()), (3, 0, 1, BatchState::Pending));
    assert_eq!(batch.sent_at, None);
    assert_eq!(batch.first_message_id, admitted[0].id);
    let stored = store.get_message(admitted[2].id).await.unwrap().unwrap();
    assert_eq!(stored.batch_id, Some(id));

    // One is sent, one fails: the request is settled, and counts as sent.
    dispatch_all(&store, |to| {
        if to == "+18005550001" {
            DispatchOutcome::Sent { provider_message_id: "p".into(), parts: Vec::new() }
        } else {
            DispatchOutcome::Failed { error_type: ErrorType::InvalidDestination, message: "no".into(), refund: true }
        }
    })
    .await;
    let batch = store.get_batch(id).await.unwrap().unwrap();
    assert_eq!((batch.sent, batch.failed, batch.state()), (1, 2, BatchState::Sent));
    let first = store.get_message(admitted[0].id).await.unwrap().unwrap();
    assert_eq!(batch.sent_at, first.sent_at);
    assert!(batch.sent_at.is_some());

    let (page, total) = store.list_batches(a, None, 0, 10).await.unwrap();
    assert_eq!((page.len(), total), (1, 1));
    assert_eq!(store.list_batches(a, Some(BatchState::Sent), 0, 10).await.unwrap().1, 1);
    assert_eq!(store.list_batches(a, Some(BatchState::Pending), 0, 10).await.unwrap().1, 0);
    assert_eq!(store.list_batches(a, Some(BatchState::Failed), 0, 10).await.unwrap().1, 0);
    assert!(store.list_batches(a, None, 1, 10).await.unwrap().0.is_empty(), "past the end");
}

async fn concurrent_requests_never_overdraw(store: Arc<dyn Store>) {
    // Room for four requests of three recipients; twenty race for it.
    let a = funded_account(&store, 24, 0).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store.accept(&request(a, &["+18005550001", "+18005550002", "+18005550003"])).await.unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        let outcomes = t.await.unwrap();
        let queued = outcomes.iter().filter(|o| matches!(o, AcceptOutcome::Queued(_))).count();
        assert!(queued == 0 || queued == 3, "a request is admitted whole or not at all: {outcomes:?}");
        admitted += usize::from(queued == 3);
    }
    assert_eq!(admitted, 4);
    assert_eq!(balance(&store, a).await, Credits::ZERO);
    assert_eq!(store.list_batches(a, None, 0, 100).await.unwrap().1, 4);
}

async fn message_counts_follow_every_change(store: Arc<dyn Store>) {
    const H: i64 = 3_600_000;
    let a = funded_account(&store, 1000, 0).await;
    let base = (Timestamp::now().millis() / H - 10) * H;
    let at = |ms: i64| Timestamp::from_millis(base + ms);
    let min = 60_000;
    // One message at 10 and 50 minutes, 1h30 and 2h05 past the base hour.
    for (i, t) in [10 * min, 50 * min, 90 * min, 125 * min].into_iter().enumerate() {
        let to = format!("+1800555000{i}");
        assert!(matches!(store.accept(&[message_at(a, at(t), &to)]).await.unwrap()[0], AcceptOutcome::Queued(_)));
    }
    let counts = store.message_counts(a, at(20 * min), at(130 * min)).await.unwrap();
    assert_eq!(counts.by_status, vec![(MessageStatus::Queued, 3)]);

    dispatch_all(&store, |to| {
        if to.ends_with('1') {
            DispatchOutcome::Failed { error_type: ErrorType::InvalidDestination, message: "no".into(), refund: true }
        } else {
            DispatchOutcome::Sent { provider_message_id: "p".into(), parts: Vec::new() }
        }
    })
    .await;
    // Whole hours, ragged ends, one partial hour, and an empty range.
    let counts = store.message_counts(a, at(20 * min), at(130 * min)).await.unwrap();
    assert_eq!(counts.by_status, vec![(MessageStatus::Failed, 1), (MessageStatus::Sent, 2)]);
    let counts = store.message_counts(a, at(0), at(4 * H)).await.unwrap();
    assert_eq!((counts.total(), counts.count(&[MessageStatus::Sent])), (4, 3));
    let counts = store.message_counts(a, at(0), at(30 * min)).await.unwrap();
    assert_eq!(counts.by_status, vec![(MessageStatus::Sent, 1)]);
    assert_eq!(store.message_counts(a, at(4 * H), at(5 * H)).await.unwrap().total(), 0);
    let other = store.create_account("other").await.unwrap().id;
    assert_eq!(store.message_counts(other, at(0), at(4 * H)).await.unwrap().total(), 0);
}

async fn rate_limits_are_stored(store: Arc<dyn Store>) {
    let a = store.create_account("limited").await.unwrap();
    assert_eq!(a.rate_limit, None);
    assert_eq!(store.set_rate_limit(a.id, Some(250)).await.unwrap().rate_limit, Some(250));
    assert_eq!(store.get_account(a.id).await.unwrap().unwrap().rate_limit, Some(250));
    assert_eq!(store.set_rate_limit(a.id, None).await.unwrap().rate_limit, None);
    assert!(matches!(
        store.set_rate_limit(AccountId::new(), Some(1)).await,
        Err(switchboard_storage::StorageError::NotFound)
    ));
}

async fn channels_and_templates(store: Arc<dyn Store>) {
    let account = funded_account(&store, 0, 0).await;
    let other = store.create_account("other").await.unwrap().id;
    let channel = ChannelRecord {
        id: uuid::Uuid::new_v4(),
        account_id: account,
        name: "main".into(),
        sender: sender(FROM),
        active: true,
        mms: false,
        created_at: Timestamp::now(),
    };
    let created = store.create_channel(&channel).await.unwrap();
    // MMS capability is the sender's.
    assert!(created.mms);
    assert!(matches!(store.create_channel(&channel).await, Err(StorageError::Conflict(_))));
    let change = ChannelChange { name: Some("renamed".into()), active: Some(false) };
    let changed = store.update_channel(account, channel.id, &change).await.unwrap();
    assert_eq!((changed.name.as_str(), changed.active), ("renamed", false));
    assert!(matches!(store.update_channel(other, channel.id, &change).await, Err(StorageError::NotFound)));
    assert_eq!(store.list_channels(account).await.unwrap(), vec![changed.clone()]);
    assert!(store.list_channels(other).await.unwrap().is_empty());
    assert_eq!(store.get_channel(channel.id).await.unwrap(), Some(changed));

    let template = store.create_template(account, "welcome").await.unwrap();
    assert!(template.versions.is_empty());
    assert!(matches!(store.create_template(account, "welcome").await, Err(StorageError::Conflict(_))));
    store.create_template(other, "welcome").await.unwrap();
    let texts: std::collections::BTreeMap<String, String> =
        [("en".to_owned(), "Hi {{name}}".to_owned()), ("nl".to_owned(), "Hoi {{name}}".to_owned())].into();
    let v1 = store.add_template_version(account, template.id, &texts, true).await.unwrap();
    let v2 = store.add_template_version(account, template.id, &texts, false).await.unwrap();
    assert!(matches!(store.add_template_version(other, template.id, &texts, true).await, Err(StorageError::NotFound)));
    let v2 = store.set_template_version_active(account, template.id, v2.id, true).await.unwrap();
    assert!(v2.active);
    assert!(matches!(
        store.set_template_version_active(other, template.id, v1.id, false).await,
        Err(StorageError::NotFound)
    ));
    let read = store.get_template(template.id).await.unwrap().unwrap();
    assert_eq!(read.versions, vec![v1, v2]);
    assert_eq!(read.versions[0].texts, texts);
    let listed = store.list_templates(account).await.unwrap();
    assert_eq!(listed, vec![read]);
}

async fn scheduled_messages_wait_and_cancel_with_a_refund(store: Arc<dyn Store>) {
    let account = funded_account(&store, 10, 0).await;
    let now = Timestamp::now();
    let later = now.plus_millis(60_000);
    let mut first = message(account, None, "later");
    first.scheduled_for = Some(later);
    first.claim_until = Some(now.plus_millis(30_000));
    let mut second = message(account, None, "later too");
    second.scheduled_for = Some(later);
    let outcomes = store.accept(&[first.clone(), second.clone()]).await.unwrap();
    for o in &outcomes {
        let AcceptOutcome::Queued(m) = o else { panic!("{o:?}") };
        assert_eq!((m.status, m.attempts, m.next_attempt_at), (MessageStatus::Scheduled, 0, later));
    }
    assert_eq!(balance(&store, account).await, Credits::new(6, 0));
    // Not due before its time, even with a claim asked for.
    assert!(store.claim_due(now.plus_millis(59_000), now.plus_millis(90_000), 10).await.unwrap().is_empty());

    // Canceled: refunded once, and never claimed.
    let canceled = store.cancel_scheduled(account, first.id, now).await.unwrap();
    assert_eq!((canceled.status, canceled.charged), (MessageStatus::Canceled, Credits::ZERO));
    assert_eq!(balance(&store, account).await, Credits::new(8, 0));
    assert!(matches!(store.cancel_scheduled(account, first.id, now).await, Err(StorageError::Conflict(_))));
    let stranger = store.create_account("x").await.unwrap().id;
    assert!(matches!(store.cancel_scheduled(stranger, second.id, now).await, Err(StorageError::NotFound)));
    let entries = store.ledger(account, PageRequest { before: None, limit: 10 }).await.unwrap();
    let refunds: Vec<_> = entries.iter().filter(|e| e.kind == EntryKind::Refund).collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!((refunds[0].message_id, refunds[0].delta), (Some(first.id), Credits::new(2, 0)));

    // At its time the other is queued and claimed.
    let claimed = store.claim_due(later, later.plus_millis(30_000), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![second.id]);
    assert_eq!((claimed[0].status, claimed[0].attempts), (MessageStatus::Queued, 1));
    assert!(matches!(store.cancel_scheduled(account, second.id, now).await, Err(StorageError::Conflict(_))));
    let events: Vec<_> = store.message_events(second.id).await.unwrap().into_iter().map(|e| e.status).collect();
    assert_eq!(events, [MessageStatus::Accepted, MessageStatus::Scheduled, MessageStatus::Queued]);
    let counts = store.message_counts(account, now.plus_millis(-3_600_000), later.plus_millis(3_600_000)).await;
    let counts = counts.unwrap();
    assert_eq!(counts.count(&[MessageStatus::Canceled]), 1);
    assert_eq!(counts.count(&[MessageStatus::Queued]), 1);
    assert_eq!(counts.count(&[MessageStatus::Scheduled]), 0);
}

async fn expiry_ends_expired_with_a_refund(store: Arc<dyn Store>) {
    let account = funded_account(&store, 10, 0).await;
    let now = Timestamp::now();
    let mut m = message(account, None, "brief");
    m.expires_at = Some(now.plus_millis(1));
    let AcceptOutcome::Queued(stored) = store.accept(&[m.clone()]).await.unwrap().remove(0) else { panic!() };
    assert_eq!(stored.expires_at, Some(now.plus_millis(1)));
    let claimed = store.claim_due(now.plus_millis(5), now.plus_millis(30_000), 10).await.unwrap();
    let result = DispatchResult {
        id: m.id,
        account_id: account,
        attempt: claimed[0].attempts,
        at: now.plus_millis(6),
        outcome: DispatchOutcome::Expired,
    };
    assert_eq!(store.record_results(&[result.clone(), result]).await.unwrap(), vec![m.id]);
    let read = store.get_message(m.id).await.unwrap().unwrap();
    assert_eq!((read.status, read.charged), (MessageStatus::Expired, Credits::ZERO));
    assert_eq!(balance(&store, account).await, Credits::new(10, 0));
}

async fn media_and_details_round_trip(store: Arc<dyn Store>) {
    let account = funded_account(&store, 10, 10).await;
    let channel = uuid::Uuid::new_v4();
    let mut m = message(account, None, "look");
    m.kind = MessageKind::Mms;
    m.media = vec!["https://example.com/a.jpg".into(), "https://example.com/b.mp4".into()];
    m.channel_id = Some(channel);
    m.details = Some(r#"{"reference":"r-1","tags":["a"]}"#.into());
    store.accept(&[m.clone()]).await.unwrap();
    let read = store.get_message(m.id).await.unwrap().unwrap();
    assert_eq!(read.media, m.media);
    assert_eq!(read.media_url(), Some("https://example.com/a.jpg"));
    assert_eq!((read.channel_id, read.details.as_deref()), (Some(channel), m.details.as_deref()));
    let page = store.list_channel_messages(channel, PageRequest { before: None, limit: 10 }).await.unwrap();
    assert_eq!(page, vec![read]);
    let none = store.list_channel_messages(uuid::Uuid::new_v4(), PageRequest { before: None, limit: 10 }).await;
    assert!(none.unwrap().is_empty());
}
