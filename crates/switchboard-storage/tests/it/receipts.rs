//! Delivery receipts: parts, settling, carrier-failure refunds, and scheduled messages whose
//! recipient opted out before they came due.

use super::*;
use switchboard_storage::{MessageRecord, PartRecord, ReceiptOutcome, ReceiptUpdate};

contract!(
    receipts_settle_a_multipart_message,
    concurrent_receipts_settle_a_message_once,
    one_call_settles_each_message_as_one_receipt_at_a_time_would,
    a_failed_part_fails_the_message_without_refund_by_default,
    carrier_failures_are_refunded_once_when_asked,
    receipts_before_the_submission_apply_when_it_is_recorded,
    a_delivered_message_never_moves_back,
    opted_out_scheduled_messages_fail_when_due,
);

/// Stores `m` claimed for its first attempt and records it sent with these part references.
pub(crate) async fn send(store: &Arc<dyn Store>, mut m: NewMessage, pid: &str, parts: &[&str]) -> MessageId {
    m.claim_until = Some(Timestamp::now().plus_millis(60_000));
    let out = store.accept(std::slice::from_ref(&m)).await.unwrap();
    assert!(matches!(out[0], AcceptOutcome::Queued(_)), "{out:?}");
    let result = DispatchResult {
        id: m.id,
        account_id: m.account_id,
        attempt: 1,
        at: Timestamp::now(),
        outcome: DispatchOutcome::Sent {
            provider_message_id: pid.into(),
            parts: parts.iter().map(|p| (*p).to_owned()).collect(),
        },
    };
    assert_eq!(store.record_results(&[result]).await.unwrap(), vec![m.id]);
    m.id
}

pub(crate) fn receipt(provider_ref: &str, status: MessageStatus) -> ReceiptUpdate {
    ReceiptUpdate {
        provider_ref: provider_ref.into(),
        status,
        error_type: None,
        description: None,
        at: Timestamp::now(),
    }
}

fn applied(m: MessageId, status: Option<MessageStatus>) -> ReceiptOutcome {
    ReceiptOutcome::Applied { message_id: m, message_status: status }
}

pub(crate) async fn statuses(store: &Arc<dyn Store>, id: MessageId) -> Vec<MessageStatus> {
    store.message_events(id).await.unwrap().into_iter().map(|e| e.status).collect()
}

async fn read(store: &Arc<dyn Store>, id: MessageId) -> MessageRecord {
    store.get_message(id).await.unwrap().unwrap()
}

/// The account's outbound messages of the last and next hours, by status.
pub(crate) async fn recent_counts(store: &Arc<dyn Store>, a: AccountId) -> Vec<(MessageStatus, i64)> {
    let now = Timestamp::now();
    store.message_counts(a, now.plus_millis(-7_200_000), now.plus_millis(7_200_000)).await.unwrap().by_status
}

async fn refunds(store: &Arc<dyn Store>, a: AccountId) -> Vec<switchboard_storage::LedgerRecord> {
    let entries = store.ledger(a, PageRequest { before: None, limit: 1000 }).await.unwrap();
    entries.into_iter().filter(|e| e.kind == EntryKind::Refund).collect()
}

async fn receipts_settle_a_multipart_message(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    let id = send(&store, NewMessage { segments: 3, ..message(a, None, "long") }, "m-1", &["r-1", "r-2", "r-3"]).await;
    let parts = store.message_parts(id).await.unwrap();
    let refs: Vec<(&str, Option<u32>, MessageStatus)> =
        parts.iter().map(|p| (p.provider_ref.as_str(), p.part, p.status)).collect();
    assert_eq!(
        refs,
        vec![
            ("r-1", Some(1), MessageStatus::Sent),
            ("r-2", Some(2), MessageStatus::Sent),
            ("r-3", Some(3), MessageStatus::Sent)
        ]
    );
    assert!(parts.iter().all(|p| p.message_id == Some(id)));

    // Parts 3 and 1 (and a status that is no receipt's) leave the message sent.
    let out = store
        .record_receipts(&[
            receipt("r-3", MessageStatus::Delivered),
            receipt("r-1", MessageStatus::Delivered),
            receipt("r-2", MessageStatus::Sent),
        ])
        .await
        .unwrap();
    assert_eq!(out, vec![applied(id, None), applied(id, None), ReceiptOutcome::Ignored]);
    assert_eq!(read(&store, id).await.status, MessageStatus::Sent);
    // A duplicate changes nothing.
    assert_eq!(
        store.record_receipts(&[receipt("r-1", MessageStatus::Delivered)]).await.unwrap(),
        vec![ReceiptOutcome::Ignored]
    );
    // The last part settles it.
    let out = store.record_receipts(&[receipt("r-2", MessageStatus::Delivered)]).await.unwrap();
    assert_eq!(out, vec![applied(id, Some(MessageStatus::Delivered))]);
    let m = read(&store, id).await;
    assert_eq!((m.status, m.error_type, m.error_message), (MessageStatus::Delivered, None, None));
    assert_eq!(
        statuses(&store, id).await,
        [MessageStatus::Accepted, MessageStatus::Queued, MessageStatus::Sent, MessageStatus::Delivered]
    );
    assert!(store.message_parts(id).await.unwrap().iter().all(|p| p.status == MessageStatus::Delivered));
    assert_eq!(store.count_messages(a).await.unwrap(), vec![("delivered".to_owned(), 1)]);
    assert_eq!(recent_counts(&store, a).await, vec![(MessageStatus::Delivered, 1)]);

    // Two receipts for one part in one call apply as if one after the other.
    let id = send(&store, message(a, None, "short"), "m-2", &[]).await;
    let out = store
        .record_receipts(&[receipt("m-2", MessageStatus::Undelivered), receipt("m-2", MessageStatus::Delivered)])
        .await
        .unwrap();
    assert_eq!(out, vec![applied(id, Some(MessageStatus::Undelivered)), ReceiptOutcome::Ignored]);
    let m = read(&store, id).await;
    assert_eq!((m.status, m.error_type), (MessageStatus::Undelivered, Some(ErrorType::Unknown)));
    assert_eq!(m.error_message.as_deref(), Some(ErrorType::Unknown.description()), "one part: not named");
    assert_eq!(recent_counts(&store, a).await, vec![(MessageStatus::Delivered, 1), (MessageStatus::Undelivered, 1)]);
    assert!(store.message_parts(MessageId::new()).await.unwrap().is_empty());
}

/// Receipts for different parts of one message racing in separate calls settle it once, and
/// never leave it sent when every part is delivered.
async fn concurrent_receipts_settle_a_message_once(store: Arc<dyn Store>) {
    let a = funded_account(&store, 100, 0).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let parts = [format!("{i}-a"), format!("{i}-b")];
        let m = NewMessage { segments: 2, to: msisdn(&format!("+1800555{i:04}")), ..message(a, None, "x") };
        ids.push(send(&store, m, &format!("{i}"), &[&parts[0], &parts[1]]).await);
    }
    let tasks: Vec<_> = (0..8)
        .flat_map(|i| ["a", "b"].map(|p| (i, p)))
        .map(|(i, p)| {
            let store = store.clone();
            tokio::spawn(async move {
                store.record_receipts(&[receipt(&format!("{i}-{p}"), MessageStatus::Delivered)]).await.unwrap()
            })
        })
        .collect();
    let mut settled = 0;
    for t in tasks {
        let out = t.await.unwrap();
        match &out[0] {
            ReceiptOutcome::Applied { message_status: Some(MessageStatus::Delivered), .. } => settled += 1,
            ReceiptOutcome::Applied { message_status: None, .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(settled, 8, "each message settled by exactly one of its receipts");
    for id in ids {
        assert_eq!(read(&store, id).await.status, MessageStatus::Delivered);
        assert_eq!(statuses(&store, id).await.last(), Some(&MessageStatus::Delivered));
    }
    assert_eq!(recent_counts(&store, a).await, vec![(MessageStatus::Delivered, 8)]);
}

/// Receipts for several messages in one call, their parts interleaved: each message is settled
/// by the receipt that would settle it if they came one at a time, and only once.
async fn one_call_settles_each_message_as_one_receipt_at_a_time_would(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    let two = |to: &str| NewMessage { segments: 2, to: msisdn(to), ..message(a, None, "two parts") };
    let delivered = send(&store, two("+18005550101"), "d", &["d-1", "d-2"]).await;
    let failed = send(&store, two("+18005550102"), "f", &["f-1", "f-2"]).await;
    let open = send(&store, two("+18005550103"), "o", &["o-1", "o-2"]).await;
    let single = send(&store, message(a, None, "one part"), "s", &[]).await;
    let mut blocked = receipt("f-2", MessageStatus::Undelivered);
    blocked.error_type = Some(ErrorType::DestinationBlocked);
    let out = store
        .record_receipts(&[
            receipt("d-2", MessageStatus::Delivered),
            blocked,
            receipt("o-1", MessageStatus::Delivered),
            receipt("unknown-ref", MessageStatus::Delivered),
            receipt("f-1", MessageStatus::Delivered),
            receipt("d-1", MessageStatus::Delivered),
            receipt("s", MessageStatus::Delivered),
            receipt("d-1", MessageStatus::Failed),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            applied(delivered, None),
            applied(failed, Some(MessageStatus::Undelivered)),
            applied(open, None),
            ReceiptOutcome::Unmatched,
            applied(failed, None),
            applied(delivered, Some(MessageStatus::Delivered)),
            applied(single, Some(MessageStatus::Delivered)),
            ReceiptOutcome::Ignored,
        ]
    );
    assert_eq!(read(&store, delivered).await.status, MessageStatus::Delivered);
    let f = read(&store, failed).await;
    assert_eq!((f.status, f.error_type), (MessageStatus::Undelivered, Some(ErrorType::DestinationBlocked)));
    assert!(f.error_message.unwrap().starts_with("part 2 of 2: "));
    assert_eq!(read(&store, open).await.status, MessageStatus::Sent);
    assert_eq!(read(&store, single).await.status, MessageStatus::Delivered);
    let parts: Vec<MessageStatus> = store.message_parts(delivered).await.unwrap().iter().map(|p| p.status).collect();
    assert_eq!(
        parts,
        [MessageStatus::Delivered, MessageStatus::Delivered],
        "a later receipt for a final part is ignored"
    );
    for id in [delivered, single] {
        assert_eq!(statuses(&store, id).await.last(), Some(&MessageStatus::Delivered));
    }
    assert_eq!(
        recent_counts(&store, a).await,
        vec![(MessageStatus::Delivered, 2), (MessageStatus::Sent, 1), (MessageStatus::Undelivered, 1)]
    );
}

async fn a_failed_part_fails_the_message_without_refund_by_default(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    assert!(!store.get_account(a).await.unwrap().unwrap().refund_carrier_failures);
    let id = send(&store, NewMessage { segments: 2, ..message(a, None, "two") }, "m", &["p-1", "p-2"]).await;
    let mut failure = receipt("p-2", MessageStatus::Undelivered);
    failure.error_type = Some(ErrorType::DestinationBlocked);
    let out = store.record_receipts(&[failure]).await.unwrap();
    assert_eq!(out, vec![applied(id, Some(MessageStatus::Undelivered))]);
    let m = read(&store, id).await;
    assert_eq!((m.status, m.error_type), (MessageStatus::Undelivered, Some(ErrorType::DestinationBlocked)));
    let text = m.error_message.unwrap();
    assert!(text.starts_with("part 2 of 2: "), "{text}");
    assert!(text.ends_with(ErrorType::DestinationBlocked.description()), "{text}");
    assert_eq!(m.charged, Credits::new(2, 0), "kept: the account is not refunded for carrier failures");

    // A later delivered receipt for the other part changes the part, not the message.
    let out = store.record_receipts(&[receipt("p-1", MessageStatus::Delivered)]).await.unwrap();
    assert_eq!(out, vec![applied(id, None)]);
    assert_eq!(read(&store, id).await.status, MessageStatus::Undelivered);
    let parts: Vec<MessageStatus> = store.message_parts(id).await.unwrap().iter().map(|p| p.status).collect();
    assert_eq!(parts, [MessageStatus::Delivered, MessageStatus::Undelivered]);
    assert_eq!(statuses(&store, id).await.last(), Some(&MessageStatus::Undelivered));
    assert!(refunds(&store, a).await.is_empty());
    assert_eq!(balance(&store, a).await, Credits::new(8, 0));
    assert_eq!(recent_counts(&store, a).await, vec![(MessageStatus::Undelivered, 1)]);
}

async fn carrier_failures_are_refunded_once_when_asked(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    let account = store.set_refund_carrier_failures(a, true).await.unwrap();
    assert!(account.refund_carrier_failures);
    assert!(store.get_account(a).await.unwrap().unwrap().refund_carrier_failures);
    assert!(matches!(store.set_refund_carrier_failures(AccountId::new(), true).await, Err(StorageError::NotFound)));

    // Two failure receipts for different parts in one call: the lower part decides, one refund.
    let one = send(&store, NewMessage { segments: 2, ..message(a, None, "one") }, "one", &["1-a", "1-b"]).await;
    let mut second = receipt("1-b", MessageStatus::Failed);
    second.description = Some("handset rejected".into());
    let mut first = receipt("1-a", MessageStatus::Undelivered);
    first.error_type = Some(ErrorType::InvalidDestination);
    let out = store.record_receipts(&[second, first]).await.unwrap();
    assert_eq!(out, vec![applied(one, Some(MessageStatus::Failed)), applied(one, None)]);
    let m = read(&store, one).await;
    assert_eq!((m.status, m.error_type, m.charged), (MessageStatus::Failed, Some(ErrorType::Unknown), Credits::ZERO));
    assert_eq!(m.error_message.as_deref(), Some("part 2 of 2: handset rejected"));

    // The same in two concurrent calls.
    let two = send(&store, NewMessage { segments: 2, ..message(a, None, "two") }, "two", &["2-a", "2-b"]).await;
    let (x, y) = tokio::join!(
        {
            let store = store.clone();
            tokio::spawn(async move { store.record_receipts(&[receipt("2-a", MessageStatus::Undelivered)]).await })
        },
        {
            let store = store.clone();
            tokio::spawn(async move { store.record_receipts(&[receipt("2-b", MessageStatus::Failed)]).await })
        }
    );
    let (x, y) = (x.unwrap().unwrap().remove(0), y.unwrap().unwrap().remove(0));
    let settled =
        [&x, &y].iter().filter(|o| matches!(o, ReceiptOutcome::Applied { message_status: Some(_), .. })).count();
    assert_eq!(settled, 1, "{x:?} {y:?}");
    let m = read(&store, two).await;
    assert!(matches!(m.status, MessageStatus::Undelivered | MessageStatus::Failed), "{m:?}");
    assert_eq!(m.charged, Credits::ZERO);

    let refunds = refunds(&store, a).await;
    assert_eq!(refunds.len(), 2, "one refund per message");
    let mut refunded: Vec<MessageId> = refunds.iter().filter_map(|e| e.message_id).collect();
    refunded.sort();
    assert_eq!(refunded, {
        let mut v = vec![one, two];
        v.sort();
        v
    });
    assert!(refunds.iter().all(|e| e.delta == Credits::new(2, 0)));
    assert_eq!(balance(&store, a).await, Credits::new(10, 0), "both charges back");
    let counts = recent_counts(&store, a).await;
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<i64>(), 2);
    assert!(counts.iter().all(|(s, _)| matches!(s, MessageStatus::Undelivered | MessageStatus::Failed)), "{counts:?}");

    // A delivered message is never refunded.
    let three = send(&store, message(a, None, "three"), "three", &[]).await;
    store.record_receipts(&[receipt("three", MessageStatus::Delivered)]).await.unwrap();
    assert_eq!(read(&store, three).await.charged, Credits::new(2, 0));
    assert_eq!(balance(&store, a).await, Credits::new(8, 0));
}

async fn receipts_before_the_submission_apply_when_it_is_recorded(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    store.set_refund_carrier_failures(a, true).await.unwrap();

    // One part, delivered before its submission was recorded.
    let out = store.record_receipts(&[receipt("early", MessageStatus::Delivered)]).await.unwrap();
    assert_eq!(out, vec![ReceiptOutcome::Unmatched]);
    // An unmatched part is final too.
    let out = store.record_receipts(&[receipt("early", MessageStatus::Undelivered)]).await.unwrap();
    assert_eq!(out, vec![ReceiptOutcome::Ignored]);
    let id = send(&store, message(a, None, "fast"), "early", &[]).await;
    let m = read(&store, id).await;
    assert_eq!(m.status, MessageStatus::Delivered);
    assert_eq!(
        statuses(&store, id).await,
        [MessageStatus::Accepted, MessageStatus::Queued, MessageStatus::Sent, MessageStatus::Delivered]
    );
    let parts = store.message_parts(id).await.unwrap();
    assert_eq!(
        parts.iter().map(|p: &PartRecord| (p.message_id, p.part, p.status)).collect::<Vec<_>>(),
        vec![(Some(id), Some(1), MessageStatus::Delivered)]
    );

    // Two parts, one reported early: the message waits for the other.
    assert_eq!(
        store.record_receipts(&[receipt("e-2", MessageStatus::Delivered)]).await.unwrap(),
        vec![ReceiptOutcome::Unmatched]
    );
    let id = send(&store, NewMessage { segments: 2, ..message(a, None, "half") }, "e", &["e-1", "e-2"]).await;
    assert_eq!(read(&store, id).await.status, MessageStatus::Sent);
    let out = store.record_receipts(&[receipt("e-1", MessageStatus::Delivered)]).await.unwrap();
    assert_eq!(out, vec![applied(id, Some(MessageStatus::Delivered))]);

    // A failure reported early fails (and refunds) the message as its send is recorded.
    let mut failure = receipt("f-1", MessageStatus::Failed);
    failure.error_type = Some(ErrorType::RoutingError);
    assert_eq!(store.record_receipts(&[failure]).await.unwrap(), vec![ReceiptOutcome::Unmatched]);
    let id = send(&store, message(a, None, "doomed"), "f", &["f-1"]).await;
    let m = read(&store, id).await;
    assert_eq!(
        (m.status, m.error_type, m.charged),
        (MessageStatus::Failed, Some(ErrorType::RoutingError), Credits::ZERO)
    );
    assert_eq!(statuses(&store, id).await.last(), Some(&MessageStatus::Failed));
    assert_eq!(refunds(&store, a).await.len(), 1);
    assert_eq!(balance(&store, a).await, Credits::new(6, 0));
    assert_eq!(recent_counts(&store, a).await, vec![(MessageStatus::Delivered, 2), (MessageStatus::Failed, 1)]);
}

async fn a_delivered_message_never_moves_back(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    store.set_refund_carrier_failures(a, true).await.unwrap();
    let id = send(&store, message(a, None, "x"), "d", &[]).await;
    let out = store.record_receipts(&[receipt("d", MessageStatus::Delivered)]).await.unwrap();
    assert_eq!(out, vec![applied(id, Some(MessageStatus::Delivered))]);
    let before = read(&store, id).await;
    for status in [MessageStatus::Undelivered, MessageStatus::Failed, MessageStatus::Delivered] {
        assert_eq!(store.record_receipts(&[receipt("d", status)]).await.unwrap(), vec![ReceiptOutcome::Ignored]);
    }
    assert_eq!(read(&store, id).await, before);
    assert_eq!(statuses(&store, id).await.last(), Some(&MessageStatus::Delivered));
    assert!(refunds(&store, a).await.is_empty());
    // A stale dispatch result cannot move it either.
    let stale = DispatchResult {
        id,
        account_id: a,
        attempt: 1,
        at: Timestamp::now(),
        outcome: DispatchOutcome::Failed { error_type: ErrorType::ProviderError, message: "late".into(), refund: true },
    };
    assert!(store.record_results(&[stale]).await.unwrap().is_empty());
    assert_eq!(read(&store, id).await, before);
}

async fn opted_out_scheduled_messages_fail_when_due(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    let now = Timestamp::now();
    let soon = now.plus_millis(1);
    let doomed = NewMessage { scheduled_for: Some(soon), ..message(a, None, "soon") };
    let fine = NewMessage { scheduled_for: Some(soon), to: msisdn("+18005550999"), ..message(a, None, "soon") };
    store.accept(&[doomed.clone(), fine.clone()]).await.unwrap();
    assert_eq!(balance(&store, a).await, Credits::new(6, 0));
    store.add_opt_out(a, FROM, TO).await.unwrap();

    let later = soon.plus_millis(5);
    let claimed = store.claim_due(later, later.plus_millis(60_000), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![fine.id]);
    let m = read(&store, doomed.id).await;
    assert_eq!(
        (m.status, m.error_type, m.error_message.as_deref(), m.charged),
        (MessageStatus::Failed, Some(ErrorType::OptedOut), Some(ErrorType::OptedOut.description()), Credits::ZERO)
    );
    assert_eq!(
        statuses(&store, doomed.id).await,
        [MessageStatus::Accepted, MessageStatus::Scheduled, MessageStatus::Failed]
    );
    assert_eq!(balance(&store, a).await, Credits::new(8, 0));
    let entries = refunds(&store, a).await;
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].message_id, entries[0].delta), (Some(doomed.id), Credits::new(2, 0)));

    // Nothing more on later claims.
    let again = store.claim_due(later.plus_millis(120_000), later.plus_millis(180_000), 10).await.unwrap();
    assert_eq!(again.iter().map(|m| m.id).collect::<Vec<_>>(), vec![fine.id], "only the lease that ran out");
    assert_eq!(refunds(&store, a).await.len(), 1);
    assert_eq!(read(&store, doomed.id).await.status, MessageStatus::Failed);
    assert_eq!(recent_counts(&store, a).await, vec![(MessageStatus::Failed, 1), (MessageStatus::Queued, 1)]);
}
