//! Webhook endpoints, the outbox every status change writes to, delivery claims and results,
//! and inbound messages.

use std::collections::{BTreeMap, HashSet};

use super::receipts::{receipt, recent_counts, send, statuses};
use super::*;
use switchboard_domain::{Direction, EventId, EventType};
use switchboard_storage::{
    AttemptRecord, DeliveryFilter, DeliveryOutcome, DeliveryRecord, DeliveryResult, DeliveryState, NewInbound,
    NewReply, OptOutChange, SealedSecret, WebhookChange, WebhookRecord,
};

contract!(
    webhook_endpoints_are_managed_per_account,
    the_outbox_fans_out_to_endpoints_and_the_message_url,
    every_status_change_reaches_the_outbox,
    deliveries_are_leased_retried_and_recorded,
    concurrent_delivery_claims_are_disjoint,
    deleting_an_endpoint_cancels_its_deliveries,
    inbound_messages_opt_outs_and_replies,
    sealed_secrets_are_resealed_only_if_unchanged,
);

async fn endpoint(store: &Arc<dyn Store>, a: AccountId, events: &[EventType], active: bool) -> WebhookRecord {
    let id = uuid::Uuid::now_v7();
    let w = WebhookRecord {
        id,
        account_id: a,
        url: format!("https://hooks.example/{id}"),
        secret: SealedSecret(id.as_bytes().to_vec()),
        events: events.to_vec(),
        active,
        created_at: Timestamp::now(),
    };
    store.create_webhook(&w).await.unwrap();
    w
}

async fn deliveries(store: &Arc<dyn Store>, a: AccountId, filter: DeliveryFilter) -> Vec<DeliveryRecord> {
    store.list_deliveries(a, &filter, PageRequest { before: None, limit: 1000 }).await.unwrap()
}

/// The (event type, target) pairs of a message's deliveries, sorted.
async fn pairs(store: &Arc<dyn Store>, a: AccountId, m: MessageId) -> Vec<(EventType, String)> {
    let filter = DeliveryFilter { message: Some(m), ..Default::default() };
    let mut out: Vec<_> = deliveries(store, a, filter).await.into_iter().map(|d| (d.event_type, d.target)).collect();
    out.sort_by(|x, y| (x.0.as_str(), &x.1).cmp(&(y.0.as_str(), &y.1)));
    out
}

fn sorted(mut v: Vec<(EventType, String)>) -> Vec<(EventType, String)> {
    v.sort_by(|x, y| (x.0.as_str(), &x.1).cmp(&(y.0.as_str(), &y.1)));
    v
}

fn target(w: &WebhookRecord) -> String {
    w.id.hyphenated().to_string()
}

async fn webhook_endpoints_are_managed_per_account(store: Arc<dyn Store>) {
    let a = funded_account(&store, 0, 0).await;
    let other = store.create_account("other").await.unwrap().id;
    let first = endpoint(&store, a, &[EventType::Delivered, EventType::Inbound], true).await;
    let second = endpoint(&store, a, &[], false).await;
    endpoint(&store, other, &[], true).await;
    assert!(matches!(store.create_webhook(&first).await, Err(StorageError::Conflict(_))));
    assert_eq!(store.get_webhook(first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.get_webhook(uuid::Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(store.list_webhooks(a).await.unwrap(), vec![first.clone(), second.clone()], "oldest first");

    let change = WebhookChange {
        url: Some("https://hooks.example/new".into()),
        secret: Some(SealedSecret(vec![9; 40])),
        events: Some(Vec::new()),
        active: Some(true),
    };
    let changed = store.update_webhook(a, second.id, &change).await.unwrap();
    assert_eq!(
        changed,
        WebhookRecord {
            url: "https://hooks.example/new".into(),
            secret: SealedSecret(vec![9; 40]),
            events: Vec::new(),
            active: true,
            ..second.clone()
        }
    );
    // Unchanged fields stay.
    let only_events = WebhookChange { events: Some(vec![EventType::Sent]), ..Default::default() };
    let changed = store.update_webhook(a, first.id, &only_events).await.unwrap();
    assert_eq!(changed, WebhookRecord { events: vec![EventType::Sent], ..first.clone() });
    assert!(matches!(store.update_webhook(other, first.id, &change).await, Err(StorageError::NotFound)));
    assert!(matches!(store.delete_webhook(other, first.id).await, Err(StorageError::NotFound)));
    store.delete_webhook(a, first.id).await.unwrap();
    assert!(matches!(store.delete_webhook(a, first.id).await, Err(StorageError::NotFound)));
    assert_eq!(store.list_webhooks(a).await.unwrap().len(), 1);
    assert_eq!(store.list_webhooks(other).await.unwrap().len(), 1);
}

async fn the_outbox_fans_out_to_endpoints_and_the_message_url(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    let delivered_only = endpoint(&store, a, &[EventType::Delivered], true).await;
    let all = endpoint(&store, a, &[], true).await;
    let inactive = endpoint(&store, a, &[], false).await;
    let url = "https://app.example/status?m=1";
    let m = NewMessage { notify_url: Some(url.into()), ..message(a, None, "hi") };
    let id = send(&store, m, "p-1", &[]).await;
    assert_eq!(store.get_message(id).await.unwrap().unwrap().notify_url.as_deref(), Some(url));
    store.record_receipts(&[receipt("p-1", MessageStatus::Delivered)]).await.unwrap();

    let expected = sorted(vec![
        (EventType::Accepted, target(&all)),
        (EventType::Accepted, url.to_owned()),
        (EventType::Sent, target(&all)),
        (EventType::Sent, url.to_owned()),
        (EventType::Delivered, target(&delivered_only)),
        (EventType::Delivered, target(&all)),
        (EventType::Delivered, url.to_owned()),
    ]);
    assert_eq!(pairs(&store, a, id).await, expected);
    let listed = deliveries(&store, a, DeliveryFilter::default()).await;
    assert_eq!(listed.len(), 7);
    assert!(!listed.iter().any(|d| d.target == target(&inactive)));
    for d in &listed {
        assert_eq!((d.state, d.attempts, d.secret.as_ref()), (DeliveryState::Pending, 0, None));
        assert_eq!((d.account_id, d.message_id, d.next_attempt_at), (a, id, d.occurred_at));
        assert_eq!(d.endpoint_id.is_none(), d.target == url);
        assert_eq!(d.url, if d.target == url { url.to_owned() } else { format!("https://hooks.example/{}", d.target) });
        assert_eq!(EventType::for_status(d.status), Some(d.event_type));
    }
    // One event id per event, shared by its targets; newest event first.
    let mut by_type: BTreeMap<&str, HashSet<EventId>> = BTreeMap::new();
    for d in &listed {
        by_type.entry(d.event_type.as_str()).or_default().insert(d.event_id);
    }
    assert!(by_type.values().all(|ids| ids.len() == 1), "{by_type:?}");
    let ids: HashSet<EventId> = by_type.values().flatten().copied().collect();
    assert_eq!(ids.len(), 3);
    let types: Vec<EventType> = listed.iter().map(|d| d.event_type).collect();
    assert_eq!(&types[..3], [EventType::Delivered; 3]);
    assert_eq!(&types[5..], [EventType::Accepted; 2]);
    assert!(listed.windows(2).all(|w| (w[0].event_id, &w[1].target) >= (w[1].event_id, &w[0].target)));

    // Filters and paging.
    let only = DeliveryFilter { endpoint: Some(delivered_only.id), ..Default::default() };
    assert_eq!(deliveries(&store, a, only).await.len(), 1);
    let pending = DeliveryFilter { state: Some(DeliveryState::Pending), ..Default::default() };
    assert_eq!(deliveries(&store, a, pending).await.len(), 7);
    let done = DeliveryFilter { state: Some(DeliveryState::Delivered), ..Default::default() };
    assert!(deliveries(&store, a, done).await.is_empty());
    let elsewhere = DeliveryFilter { message: Some(MessageId::new()), ..Default::default() };
    assert!(deliveries(&store, a, elsewhere).await.is_empty());
    let page = store.list_deliveries(a, &DeliveryFilter::default(), PageRequest { before: None, limit: 3 }).await;
    let page = page.unwrap();
    assert_eq!(page, listed[..3]);
    let rest = PageRequest { before: Some(page[2].event_id), limit: 10 };
    assert_eq!(store.list_deliveries(a, &DeliveryFilter::default(), rest).await.unwrap(), listed[3..]);

    // An account without endpoints, sending without a URL, gets no deliveries.
    let quiet = store.create_account("quiet").await.unwrap().id;
    store.top_up(quiet, Credits::new(10, 0), None).await.unwrap();
    let m = NewMessage { from: sms_sender(&store, quiet, "+18005550042").await, ..message(quiet, None, "shh") };
    let id = send(&store, m, "q-1", &[]).await;
    store.record_receipts(&[receipt("q-1", MessageStatus::Delivered)]).await.unwrap();
    assert_eq!(store.get_message(id).await.unwrap().unwrap().status, MessageStatus::Delivered);
    assert!(deliveries(&store, quiet, DeliveryFilter::default()).await.is_empty());
    assert_eq!(deliveries(&store, a, DeliveryFilter::default()).await.len(), 7, "other accounts' events stay theirs");
}

/// Every place that records a status event writes its deliveries.
async fn every_status_change_reaches_the_outbox(store: Arc<dyn Store>) {
    let a = funded_account(&store, 20, 0).await;
    let all = endpoint(&store, a, &[], true).await;
    let t = target(&all);
    let now = Timestamp::now();

    // Opted out at admission: accepted, then failed.
    store.add_opt_out(a, FROM, "+18005550101").await.unwrap();
    let opted = NewMessage { to: msisdn("+18005550101"), ..message(a, None, "x") };
    // Scheduled, then canceled.
    let canceled = NewMessage { scheduled_for: Some(now.plus_millis(60_000)), ..message(a, None, "x") };
    // Scheduled, then failed when due because its recipient opted out meanwhile.
    let promoted =
        NewMessage { scheduled_for: Some(now.plus_millis(1)), to: msisdn("+18005550102"), ..message(a, None, "x") };
    // Failed, and expired, by the dispatcher.
    let failed = NewMessage { to: msisdn("+18005550103"), ..message(a, None, "x") };
    let expired = NewMessage { to: msisdn("+18005550104"), ..message(a, None, "x") };
    let all_new = [opted.clone(), canceled.clone(), promoted.clone(), failed.clone(), expired.clone()];
    store.accept(&all_new).await.unwrap();
    store.cancel_scheduled(a, canceled.id, Timestamp::now()).await.unwrap();
    store.add_opt_out(a, FROM, "+18005550102").await.unwrap();
    // Later than every message's creation, which the round trips above may have put more than
    // a few milliseconds after `now`.
    let later = Timestamp::now().plus_millis(10);
    let claimed = store.claim_due(later, later.plus_millis(60_000), 10).await.unwrap();
    let result = |m: &NewMessage, outcome: DispatchOutcome| {
        let claim = claimed.iter().find(|c| c.id == m.id).unwrap();
        DispatchResult { id: m.id, account_id: a, attempt: claim.attempts, at: Timestamp::now(), outcome }
    };
    let failure = DispatchOutcome::Failed { error_type: ErrorType::InvalidSender, message: "no".into(), refund: false };
    store.record_results(&[result(&failed, failure), result(&expired, DispatchOutcome::Expired)]).await.unwrap();

    let expect = |types: &[EventType]| sorted(types.iter().map(|e| (*e, t.clone())).collect());
    use EventType::*;
    assert_eq!(pairs(&store, a, opted.id).await, expect(&[Accepted, Failed]));
    assert_eq!(pairs(&store, a, canceled.id).await, expect(&[Accepted, Scheduled, Canceled]));
    assert_eq!(pairs(&store, a, promoted.id).await, expect(&[Accepted, Scheduled, Failed]));
    assert_eq!(pairs(&store, a, failed.id).await, expect(&[Accepted, Failed]));
    assert_eq!(pairs(&store, a, expired.id).await, expect(&[Accepted, Expired]));
    let promoted_failure = deliveries(&store, a, DeliveryFilter { message: Some(promoted.id), ..Default::default() })
        .await
        .into_iter()
        .find(|d| d.event_type == Failed)
        .unwrap();
    assert_eq!(
        (promoted_failure.status, promoted_failure.error_type),
        (MessageStatus::Failed, Some(ErrorType::OptedOut))
    );
    assert_eq!(statuses(&store, promoted.id).await.last(), Some(&MessageStatus::Failed));
}

async fn deliveries_are_leased_retried_and_recorded(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    let hook = endpoint(&store, a, &[EventType::Accepted], true).await;
    let url = "https://app.example/m1";
    let m1 = NewMessage { notify_url: Some(url.into()), ..message(a, None, "1") };
    let m2 = message(a, None, "2");
    store.accept(&[m1.clone(), m2.clone()]).await.unwrap();
    let listed = deliveries(&store, a, DeliveryFilter::default()).await;
    assert_eq!(listed.len(), 3);
    let key = |m: &NewMessage, target: &str| {
        let d = listed.iter().find(|d| d.message_id == m.id && d.target == target).unwrap();
        (d.event_id, d.target.clone())
    };
    let (to_url, hook1, hook2) = (key(&m1, url), key(&m1, &target(&hook)), key(&m2, &target(&hook)));

    let now = Timestamp::now();
    let lease = now.plus_millis(30_000);
    // The endpoint is busy: only the message's own URL is claimed.
    let claimed = store.claim_deliveries(now, lease, 10, &[target(&hook)]).await.unwrap();
    assert_eq!(claimed.iter().map(|d| (d.event_id, d.target.clone())).collect::<Vec<_>>(), vec![to_url.clone()]);
    assert_eq!((claimed[0].attempts, claimed[0].next_attempt_at, claimed[0].secret.as_ref()), (1, lease, None));
    let claimed = store.claim_deliveries(now, lease, 10, &[]).await.unwrap();
    let mut keys: Vec<_> = claimed.iter().map(|d| (d.event_id, d.target.clone())).collect();
    keys.sort();
    let mut both = vec![hook1.clone(), hook2.clone()];
    both.sort();
    assert_eq!(keys, both);
    assert!(claimed.iter().all(|d| d.secret == Some(hook.secret.clone()) && d.attempts == 1));
    assert!(store.claim_deliveries(now, lease, 10, &[]).await.unwrap().is_empty(), "leased");
    assert!(store.claim_deliveries(now, lease, 0, &[]).await.unwrap().is_empty());

    let record = |at: Timestamp, status_code: Option<u16>, error: Option<&str>| AttemptRecord {
        attempt: 0,
        at,
        status_code,
        error: error.map(str::to_owned),
        duration_ms: 25,
    };
    let result =
        |(event_id, target): &(EventId, String), attempt: u32, record: AttemptRecord, outcome| DeliveryResult {
            event_id: *event_id,
            target: target.clone(),
            attempt,
            record: AttemptRecord { attempt, ..record },
            outcome,
        };
    let retry_at = now.plus_millis(1_000);
    store
        .record_deliveries(&[
            result(
                &to_url,
                1,
                record(now, Some(503), Some("HTTP 503")),
                DeliveryOutcome::Retry { next_attempt_at: retry_at },
            ),
            result(&hook1, 1, record(now, Some(200), None), DeliveryOutcome::Delivered),
            result(&hook2, 1, record(now, None, None), DeliveryOutcome::Release),
        ])
        .await
        .unwrap();
    let find = |all: &[DeliveryRecord], (e, t): &(EventId, String)| {
        all.iter().find(|d| d.event_id == *e && &d.target == t).unwrap().clone()
    };
    let all = deliveries(&store, a, DeliveryFilter::default()).await;
    let d = find(&all, &to_url);
    assert_eq!((d.state, d.attempts, d.next_attempt_at), (DeliveryState::Pending, 1, retry_at));
    assert_eq!((d.last_status, d.last_error.as_deref()), (Some(503), Some("HTTP 503")));
    let d = find(&all, &hook1);
    assert_eq!((d.state, d.attempts, d.last_status, d.last_error), (DeliveryState::Delivered, 1, Some(200), None));
    let d = find(&all, &hook2);
    assert_eq!((d.state, d.attempts, d.next_attempt_at, d.last_status), (DeliveryState::Pending, 0, now, None));
    assert!(store.delivery_attempts(hook2.0, &hook2.1).await.unwrap().is_empty(), "a release is no attempt");
    let attempts = store.delivery_attempts(hook1.0, &hook1.1).await.unwrap();
    assert_eq!(attempts, vec![AttemptRecord { attempt: 1, ..record(now, Some(200), None) }]);

    // Stale results change nothing: a wrong attempt, or a delivery no longer pending.
    let before = deliveries(&store, a, DeliveryFilter::default()).await;
    store
        .record_deliveries(&[
            result(&to_url, 2, record(now, Some(200), None), DeliveryOutcome::Delivered),
            result(&hook1, 1, record(now, Some(500), None), DeliveryOutcome::Failed),
            result(&hook2, 1, record(now, None, None), DeliveryOutcome::Release),
        ])
        .await
        .unwrap();
    assert_eq!(deliveries(&store, a, DeliveryFilter::default()).await, before);
    assert_eq!(store.delivery_attempts(to_url.0, &to_url.1).await.unwrap().len(), 1);

    // The released delivery is due again at once; the retried one at its time.
    let claimed = store.claim_deliveries(now, lease, 10, &[]).await.unwrap();
    assert_eq!(
        claimed.iter().map(|d| (d.event_id, d.target.clone(), d.attempts)).collect::<Vec<_>>(),
        vec![(hook2.0, hook2.1.clone(), 1)]
    );
    let claimed = store.claim_deliveries(retry_at, retry_at.plus_millis(30_000), 10, &[]).await.unwrap();
    assert_eq!(claimed.iter().map(|d| (d.target.clone(), d.attempts)).collect::<Vec<_>>(), vec![(url.to_owned(), 2)]);
    store
        .record_deliveries(&[result(
            &to_url,
            2,
            record(retry_at, Some(500), Some("HTTP 500")),
            DeliveryOutcome::Failed,
        )])
        .await
        .unwrap();
    let d = find(&deliveries(&store, a, DeliveryFilter::default()).await, &to_url);
    assert_eq!((d.state, d.attempts, d.last_status), (DeliveryState::Failed, 2, Some(500)));
    let history = store.delivery_attempts(to_url.0, &to_url.1).await.unwrap();
    assert_eq!(
        history.iter().map(|h| (h.attempt, h.status_code)).collect::<Vec<_>>(),
        vec![(1, Some(503)), (2, Some(500))]
    );
    assert_eq!((history[1].at, history[1].duration_ms, history[1].error.as_deref()), (retry_at, 25, Some("HTTP 500")));

    // A lease that runs out makes the delivery due again, counting a new attempt.
    let late = lease.plus_millis(1);
    let claimed = store.claim_deliveries(late, late.plus_millis(30_000), 10, &[]).await.unwrap();
    assert_eq!(claimed.iter().map(|d| (d.event_id, d.attempts)).collect::<Vec<_>>(), vec![(hook2.0, 2)]);
    assert!(
        store
            .claim_deliveries(late.plus_millis(60_000), late.plus_millis(90_000), 10, &[target(&hook)])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_delivery_claims_are_disjoint(store: Arc<dyn Store>) {
    let a = funded_account(&store, 200, 0).await;
    endpoint(&store, a, &[], true).await;
    let group: Vec<NewMessage> = (0..100)
        .map(|i| NewMessage {
            notify_url: Some(format!("https://app.example/{i}")),
            ..message(a, None, &i.to_string())
        })
        .collect();
    store.accept(&group).await.unwrap();
    let now = Timestamp::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim_deliveries(now, now.plus_millis(60_000), 7, &[]).await.unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|d| (d.event_id, d.target)));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 200, "every delivery claimed once");
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(unique.len(), 200, "no delivery claimed twice");
    let listed = deliveries(&store, a, DeliveryFilter::default()).await;
    assert!(listed.iter().all(|d| d.attempts == 1 && unique.contains(&(d.event_id, d.target.clone()))));
}

async fn deleting_an_endpoint_cancels_its_deliveries(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    let doomed = endpoint(&store, a, &[], true).await;
    let kept = endpoint(&store, a, &[], true).await;
    let m = message(a, None, "x");
    store.accept(std::slice::from_ref(&m)).await.unwrap();
    // One of the doomed endpoint's deliveries is delivered first; it stays delivered.
    let now = Timestamp::now();
    let claimed = store.claim_deliveries(now, now.plus_millis(30_000), 10, &[target(&kept)]).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let first = &claimed[0];
    store
        .record_deliveries(&[DeliveryResult {
            event_id: first.event_id,
            target: first.target.clone(),
            attempt: 1,
            record: AttemptRecord { attempt: 1, at: now, status_code: Some(204), error: None, duration_ms: 3 },
            outcome: DeliveryOutcome::Delivered,
        }])
        .await
        .unwrap();
    // A later event is still pending when the endpoint goes.
    let id = send(&store, message(a, None, "y"), "p", &[]).await;
    let other = store.create_account("other").await.unwrap().id;
    assert!(matches!(store.delete_webhook(other, doomed.id).await, Err(StorageError::NotFound)));
    store.delete_webhook(a, doomed.id).await.unwrap();
    assert_eq!(store.get_webhook(doomed.id).await.unwrap(), None);

    let to_doomed = DeliveryFilter { endpoint: Some(doomed.id), ..Default::default() };
    let states: Vec<(MessageId, EventType, DeliveryState)> =
        deliveries(&store, a, to_doomed).await.into_iter().map(|d| (d.message_id, d.event_type, d.state)).collect();
    assert_eq!(states.len(), 3);
    assert!(states.contains(&(m.id, EventType::Accepted, DeliveryState::Delivered)));
    assert!(states.contains(&(id, EventType::Accepted, DeliveryState::Canceled)));
    assert!(states.contains(&(id, EventType::Sent, DeliveryState::Canceled)));
    let kept_filter =
        DeliveryFilter { endpoint: Some(kept.id), state: Some(DeliveryState::Pending), ..Default::default() };
    assert_eq!(deliveries(&store, a, kept_filter).await.len(), 3);
    // Only the kept endpoint's deliveries are claimed from now on.
    let claimed =
        store.claim_deliveries(Timestamp::now(), Timestamp::now().plus_millis(30_000), 10, &[]).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|d| d.endpoint_id == Some(kept.id)));
    // New events go to the kept endpoint only.
    store.record_receipts(&[receipt("p", MessageStatus::Delivered)]).await.unwrap();
    let after: Vec<String> = deliveries(&store, a, DeliveryFilter { message: Some(id), ..Default::default() })
        .await
        .into_iter()
        .filter(|d| d.event_type == EventType::Delivered)
        .map(|d| d.target)
        .collect();
    assert_eq!(after, vec![target(&kept)]);
}

async fn inbound_messages_opt_outs_and_replies(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    let hook = endpoint(&store, a, &[EventType::Inbound, EventType::Accepted], true).await;
    let now = Timestamp::now();
    let channel = |name: &str, active: bool, age: i64| ChannelRecord {
        id: uuid::Uuid::new_v4(),
        account_id: a,
        name: name.into(),
        sender: sender(FROM),
        active,
        mms: true,
        created_at: now.plus_millis(-age),
    };
    let oldest_inactive = channel("old", false, 3_000);
    let oldest_active = channel("main", true, 2_000);
    let newer = channel("new", true, 1_000);
    for c in [&newer, &oldest_inactive, &oldest_active] {
        store.create_channel(c).await.unwrap();
    }
    let inbound = |body: &str| NewInbound {
        id: MessageId::new(),
        from: msisdn(TO),
        to: msisdn(FROM),
        kind: MessageKind::Sms,
        body: Some(body.into()),
        media: Vec::new(),
        encoding: Encoding::Gsm7,
        segments: 1,
        provider_ref: Some(format!("in-{body}")),
        received_at: now,
    };

    let stranger = NewInbound { to: msisdn("+18005550000"), ..inbound("lost") };
    assert!(matches!(store.receive_inbound(&stranger, OptOutChange::Keep, None).await, Err(StorageError::NotFound)));

    // An ordinary message.
    let hello = inbound("hello");
    let out = store.receive_inbound(&hello, OptOutChange::Keep, None).await.unwrap();
    assert_eq!((out.reply, out.opt_out_changed), (None, false));
    let m = &out.message;
    assert_eq!(store.get_message(hello.id).await.unwrap().as_ref(), Some(m));
    assert_eq!(
        (m.direction, m.status, m.from.as_str(), m.to.as_str()),
        (Direction::Inbound, MessageStatus::Received, TO, FROM)
    );
    assert_eq!((m.account_id, m.channel_id, m.charged, m.attempts), (a, Some(oldest_active.id), Credits::ZERO, 0));
    assert_eq!(
        (m.provider_message_id.as_deref(), m.created_at, m.body.as_deref()),
        (Some("in-hello"), now, Some("hello"))
    );
    assert_eq!(statuses(&store, hello.id).await, [MessageStatus::Received]);
    let sent = deliveries(&store, a, DeliveryFilter { message: Some(hello.id), ..Default::default() }).await;
    assert_eq!(
        sent.iter().map(|d| (d.event_type, d.target.clone(), d.status)).collect::<Vec<_>>(),
        vec![(EventType::Inbound, target(&hook), MessageStatus::Received)]
    );
    assert!(recent_counts(&store, a).await.is_empty(), "inbound messages are not counted as outbound");
    let page = store.list_channel_messages(oldest_active.id, PageRequest { before: None, limit: 10 }).await.unwrap();
    assert_eq!(page, vec![m.clone()]);
    assert!(matches!(store.receive_inbound(&hello, OptOutChange::OptOut, None).await, Err(StorageError::Conflict(_))));
    assert!(store.list_opt_outs(a, 10).await.unwrap().is_empty(), "a refused inbound message changes nothing");

    // STOP, answered.
    let stop = inbound("STOP");
    let reply =
        NewReply { id: MessageId::new(), body: "You are unsubscribed.".into(), encoding: Encoding::Gsm7, segments: 1 };
    let out = store.receive_inbound(&stop, OptOutChange::OptOut, Some(&reply)).await.unwrap();
    assert!(out.opt_out_changed);
    let answer = out.reply.unwrap();
    assert_eq!(store.get_message(reply.id).await.unwrap().as_ref(), Some(&answer));
    assert_eq!(
        (answer.direction, answer.kind, answer.status, answer.from.as_str(), answer.to.as_str()),
        (Direction::Outbound, MessageKind::Sms, MessageStatus::Queued, FROM, TO)
    );
    assert_eq!((answer.charged, answer.attempts, answer.channel_id), (Credits::ZERO, 0, Some(oldest_active.id)));
    assert_eq!(answer.body.as_deref(), Some("You are unsubscribed."));
    assert_eq!(statuses(&store, reply.id).await, [MessageStatus::Accepted, MessageStatus::Queued]);
    let opt_outs = store.list_opt_outs(a, 10).await.unwrap();
    assert_eq!(
        opt_outs.iter().map(|o| (o.sender.as_str(), o.recipient.as_str())).collect::<Vec<_>>(),
        vec![(FROM, TO)]
    );
    assert_eq!(balance(&store, a).await, Credits::new(10, 0), "the reply is free");
    let entries = store.ledger(a, PageRequest { before: None, limit: 100 }).await.unwrap();
    assert!(entries.iter().all(|e| e.kind == EntryKind::Topup));
    assert_eq!(pairs(&store, a, reply.id).await, vec![(EventType::Accepted, target(&hook))]);
    assert_eq!(pairs(&store, a, stop.id).await, vec![(EventType::Inbound, target(&hook))]);
    assert_eq!(recent_counts(&store, a).await, vec![(MessageStatus::Queued, 1)]);
    assert!(matches!(store.accept(&[message(a, None, "promo")]).await.unwrap()[0], AcceptOutcome::Failed(_)));
    let again = store.receive_inbound(&inbound("STOP again"), OptOutChange::OptOut, None).await.unwrap();
    assert!(!again.opt_out_changed);
    // The reply is sent like any queued message.
    let later = Timestamp::now();
    let claimed = store.claim_due(later, later.plus_millis(30_000), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![reply.id]);

    // START lifts the opt-out.
    let start = store.receive_inbound(&inbound("START"), OptOutChange::OptIn, None).await.unwrap();
    assert!(start.opt_out_changed);
    assert!(store.list_opt_outs(a, 10).await.unwrap().is_empty());
    assert!(matches!(store.accept(&[message(a, None, "welcome back")]).await.unwrap()[0], AcceptOutcome::Queued(_)));
    assert!(!store.receive_inbound(&inbound("START again"), OptOutChange::OptIn, None).await.unwrap().opt_out_changed);

    // An MMS keeps its media; without an active channel on the number it has none.
    store.update_channel(a, oldest_active.id, &ChannelChange { name: None, active: Some(false) }).await.unwrap();
    store.update_channel(a, newer.id, &ChannelChange { name: None, active: Some(false) }).await.unwrap();
    let media = vec!["https://media.example/a.jpg".to_owned(), "https://media.example/b.png".to_owned()];
    let picture = NewInbound { kind: MessageKind::Mms, media: media.clone(), body: None, ..inbound("pic") };
    let out = store.receive_inbound(&picture, OptOutChange::Keep, None).await.unwrap();
    assert_eq!((out.message.kind, &out.message.media, out.message.channel_id), (MessageKind::Mms, &media, None));
    let counts = store.count_messages(a).await.unwrap();
    assert!(counts.contains(&("received".to_owned(), 6)), "{counts:?}");
}

async fn sealed_secrets_are_resealed_only_if_unchanged(store: Arc<dyn Store>) {
    let a = store.create_account("Acme").await.unwrap();
    let one = endpoint(&store, a.id, &[], true).await;
    let two = endpoint(&store, a.id, &[], false).await;
    let mut all = store.sealed_webhook_secrets().await.unwrap();
    all.retain(|(id, _)| *id == one.id || *id == two.id);
    let mut expected = vec![(one.id, one.secret.clone()), (two.id, two.secret.clone())];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(all, expected);

    let resealed = SealedSecret(b"resealed".to_vec());
    assert!(store.reseal_webhook_secret(one.id, &one.secret, &resealed).await.unwrap());
    assert_eq!(store.get_webhook(one.id).await.unwrap().unwrap().secret, resealed);
    // The operator rotated the secret meanwhile: the stale value is not written over it.
    assert!(!store.reseal_webhook_secret(one.id, &one.secret, &SealedSecret(b"stale".to_vec())).await.unwrap());
    assert_eq!(store.get_webhook(one.id).await.unwrap().unwrap().secret, resealed);
    assert!(!store.reseal_webhook_secret(uuid::Uuid::new_v4(), &one.secret, &resealed).await.unwrap());
}
