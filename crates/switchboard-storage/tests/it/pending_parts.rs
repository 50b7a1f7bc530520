//! The parts still waiting for their receipt, which an upstream that keeps its receipts in
//! memory reads back after a restart.

use super::receipts::{receipt, send};
use super::*;

contract!(pending_parts_are_the_sent_parts_of_sent_messages_by_prefix);

async fn pending_parts_are_the_sent_parts_of_sent_messages_by_prefix(store: Arc<dyn Store>) {
    let a = funded_account(&store, 100, 0).await;
    let two =
        send(&store, NewMessage { segments: 2, ..message(a, None, "two") }, "sim-b", &["sim-b.1", "sim-b.2"]).await;
    let one = send(&store, message(a, None, "one"), "sim-a", &["sim-a.1"]).await;
    let done = send(&store, message(a, None, "done"), "sim-c", &["sim-c.1"]).await;
    // Another upstream's.
    send(&store, message(a, None, "smpp"), "4711", &["4711"]).await;
    // A receipt that settles one message, and one for a part of the two-part message.
    store.record_receipts(&[receipt("sim-c.1", MessageStatus::Delivered)]).await.unwrap();
    store.record_receipts(&[receipt("sim-b.1", MessageStatus::Delivered)]).await.unwrap();
    // A receipt for a submission not recorded yet: no message, so nothing owed.
    store.record_receipts(&[receipt("sim-z.1", MessageStatus::Delivered)]).await.unwrap();
    assert_eq!(store.get_message(done).await.unwrap().unwrap().status, MessageStatus::Delivered);

    let pending = store.pending_parts("sim-", None, 1000).await.unwrap();
    let got: Vec<(&str, MessageId, u32, u32, &str)> =
        pending.iter().map(|p| (p.provider_ref.as_str(), p.message_id, p.part, p.parts, p.to.as_str())).collect();
    assert_eq!(got, vec![("sim-a.1", one, 1, 1, TO), ("sim-b.2", two, 2, 2, TO)]);
    let sent_at = store.get_message(one).await.unwrap().unwrap().sent_at.unwrap();
    assert_eq!(pending[0].sent_at, sent_at);

    // Page by page.
    let first = store.pending_parts("sim-", None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let second = store.pending_parts("sim-", Some(&first[0].provider_ref), 1).await.unwrap();
    assert_eq!(second.iter().map(|p| p.provider_ref.as_str()).collect::<Vec<_>>(), ["sim-b.2"]);
    assert!(store.pending_parts("sim-", Some("sim-b.2"), 1).await.unwrap().is_empty());
    // Another prefix.
    let other = store.pending_parts("47", None, 10).await.unwrap();
    assert_eq!(other.iter().map(|p| p.provider_ref.as_str()).collect::<Vec<_>>(), ["4711"]);
    assert!(store.pending_parts("nothing-", None, 10).await.unwrap().is_empty());
}
