//! The SMPP server's storage: credentials, and the `deliver_sm` queue that receipts and
//! inbound messages are written to in the transaction of the change that causes them.

use super::receipts::{receipt, send};
use super::*;
use switchboard_storage::{
    NewInbound, OptOutChange, SMPP_RECEIPT_FAILURE, SMPP_RECEIPT_FINAL, SmppCredentialRecord, SmppDeliveryKind,
};

contract!(
    smpp_credentials_are_unique_and_revocable,
    smpp_receipts_are_queued_with_final_statuses,
    smpp_inbound_messages_are_queued_for_accounts_with_credentials,
    smpp_deliveries_are_leased_removed_and_expired,
);

fn credential(system_id: &str, account: AccountId) -> SmppCredentialRecord {
    SmppCredentialRecord {
        system_id: system_id.into(),
        account_id: account,
        password_hash: vec![7; 32],
        max_binds: Some(2),
        window: None,
        max_per_second: Some(50),
        created_at: Timestamp::now(),
        revoked_at: None,
    }
}

async fn smpp_credentials_are_unique_and_revocable(store: Arc<dyn Store>) {
    let a = funded_account(&store, 0, 0).await;
    let b = funded_account_with_sender(&store, "+18005550001").await;
    let c = credential("esme-a", a);
    store.create_smpp_credential(&c).await.unwrap();
    store.create_smpp_credential(&credential("esme-a2", a)).await.unwrap();
    assert!(matches!(store.create_smpp_credential(&credential("esme-a", b)).await, Err(StorageError::Conflict(_))));
    assert_eq!(store.find_smpp_credential("esme-a").await.unwrap(), Some(c.clone()));
    assert_eq!(store.find_smpp_credential("nobody").await.unwrap(), None);
    let listed = store.list_smpp_credentials(a).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.system_id.as_str()).collect::<Vec<_>>(), ["esme-a", "esme-a2"]);
    assert!(store.list_smpp_credentials(b).await.unwrap().is_empty());

    assert!(matches!(store.revoke_smpp_credential(b, "esme-a", Timestamp::now()).await, Err(StorageError::NotFound)));
    let at = Timestamp::from_millis(Timestamp::now().millis());
    let revoked = store.revoke_smpp_credential(a, "esme-a", at).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    let again = store.revoke_smpp_credential(a, "esme-a", at.plus_millis(5)).await.unwrap();
    assert_eq!(again.revoked_at, Some(at), "the first revocation stays");
}

async fn funded_account_with_sender(store: &Arc<dyn Store>, address: &str) -> AccountId {
    let account = store.create_account("other").await.unwrap().id;
    store
        .create_sender(&SenderRecord {
            address: sender(address),
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

async fn due(store: &Arc<dyn Store>, a: AccountId) -> Vec<(SmppDeliveryKind, MessageId, MessageStatus)> {
    let now = Timestamp::now();
    let claimed = store.claim_smpp_deliveries(a, now, now.plus_millis(60_000), 100).await.unwrap();
    claimed.into_iter().map(|d| (d.kind, d.message_id, d.status)).collect()
}

async fn smpp_receipts_are_queued_with_final_statuses(store: Arc<dyn Store>) {
    let a = funded_account(&store, 100, 0).await;
    let all = NewMessage { notify_url: Some(SMPP_RECEIPT_FINAL.into()), ..message(a, None, "all") };
    let failures = NewMessage { notify_url: Some(SMPP_RECEIPT_FAILURE.into()), ..message(a, None, "failures") };
    let none = message(a, None, "none");
    // Only the first asks for a receipt of a delivery.
    let delivered = send(&store, all, "p-1", &["p-1"]).await;
    send(&store, failures, "p-2", &["p-2"]).await;
    send(&store, none, "p-3", &["p-3"]).await;
    assert!(!store.due_smpp_deliveries(a, Timestamp::now()).await.unwrap(), "nothing final yet");
    store
        .record_receipts(&[
            receipt("p-1", MessageStatus::Delivered),
            receipt("p-2", MessageStatus::Delivered),
            receipt("p-3", MessageStatus::Delivered),
        ])
        .await
        .unwrap();
    assert!(store.due_smpp_deliveries(a, Timestamp::now()).await.unwrap());
    assert_eq!(due(&store, a).await, [(SmppDeliveryKind::Receipt, delivered, MessageStatus::Delivered)]);

    // A failure reaches both kinds of request; no webhook delivery goes to an `smpp:` URL.
    let all = NewMessage { notify_url: Some(SMPP_RECEIPT_FINAL.into()), ..message(a, None, "all 2") };
    let failures = NewMessage { notify_url: Some(SMPP_RECEIPT_FAILURE.into()), ..message(a, None, "failures 2") };
    let one = send(&store, all, "p-4", &["p-4"]).await;
    let two = send(&store, failures, "p-5", &["p-5"]).await;
    store
        .record_receipts(&[receipt("p-4", MessageStatus::Undelivered), receipt("p-5", MessageStatus::Undelivered)])
        .await
        .unwrap();
    let mut got = due(&store, a).await;
    got.sort_by_key(|(_, m, _)| *m);
    let mut want = vec![
        (SmppDeliveryKind::Receipt, one, MessageStatus::Undelivered),
        (SmppDeliveryKind::Receipt, two, MessageStatus::Undelivered),
    ];
    want.sort_by_key(|(_, m, _)| *m);
    assert_eq!(got, want);
    let hooks = store
        .list_deliveries(a, &switchboard_storage::DeliveryFilter::default(), PageRequest { before: None, limit: 100 })
        .await
        .unwrap();
    assert!(hooks.iter().all(|d| !d.url.starts_with("smpp:")), "{hooks:?}");

    // A message stored failed at once (its recipient opted out) queues its receipt with it.
    store.add_opt_out(a, FROM, TO).await.unwrap();
    let opted = NewMessage { notify_url: Some(SMPP_RECEIPT_FAILURE.into()), ..message(a, None, "opted") };
    let out = store.accept(std::slice::from_ref(&opted)).await.unwrap();
    assert!(matches!(out[0], AcceptOutcome::Failed(_)), "{out:?}");
    assert_eq!(due(&store, a).await, [(SmppDeliveryKind::Receipt, opted.id, MessageStatus::Failed)]);
}

async fn smpp_inbound_messages_are_queued_for_accounts_with_credentials(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    let inbound = |body: &str| NewInbound {
        id: MessageId::new(),
        from: msisdn(TO),
        to: msisdn(FROM),
        kind: MessageKind::Sms,
        body: Some(body.into()),
        media: Vec::new(),
        encoding: Encoding::Gsm7,
        segments: 1,
        provider_ref: None,
        received_at: Timestamp::now(),
    };
    store.receive_inbound(&inbound("before"), OptOutChange::Keep, None).await.unwrap();
    assert!(due(&store, a).await.is_empty(), "an account without SMPP credentials queues nothing");
    store.create_smpp_credential(&credential("esme-in", a)).await.unwrap();
    let hello = inbound("hello");
    store.receive_inbound(&hello, OptOutChange::Keep, None).await.unwrap();
    assert_eq!(due(&store, a).await, [(SmppDeliveryKind::Inbound, hello.id, MessageStatus::Received)]);
    store.revoke_smpp_credential(a, "esme-in", Timestamp::now()).await.unwrap();
    store.receive_inbound(&inbound("after"), OptOutChange::Keep, None).await.unwrap();
    assert!(due(&store, a).await.is_empty(), "nor one whose credentials are all revoked");
}

async fn smpp_deliveries_are_leased_removed_and_expired(store: Arc<dyn Store>) {
    let a = funded_account(&store, 100, 0).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = NewMessage { notify_url: Some(SMPP_RECEIPT_FINAL.into()), ..message(a, None, &format!("m{i}")) };
        ids.push(send(&store, m, &format!("q-{i}"), &[&format!("q-{i}")]).await);
        store.record_receipts(&[receipt(&format!("q-{i}"), MessageStatus::Delivered)]).await.unwrap();
    }
    assert_eq!(store.count_smpp_deliveries().await.unwrap(), 3);
    let now = Timestamp::now();
    let first = store.claim_smpp_deliveries(a, now, now.plus_millis(60_000), 2).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|d| d.attempts == 1));
    let rest = store.claim_smpp_deliveries(a, now, now.plus_millis(60_000), 10).await.unwrap();
    assert_eq!(rest.len(), 1, "leased rows are not claimed again");
    let later = now.plus_millis(61_000);
    let again = store.claim_smpp_deliveries(a, later, later.plus_millis(60_000), 10).await.unwrap();
    assert_eq!(again.len(), 3, "a lease that ended makes the row due again");
    assert!(again.iter().all(|d| d.attempts == 2));
    assert_eq!(store.remove_smpp_deliveries(&[first[0].id]).await.unwrap(), 1);
    assert_eq!(store.remove_smpp_deliveries(&[first[0].id]).await.unwrap(), 0);
    assert_eq!(store.count_smpp_deliveries().await.unwrap(), 2);
    assert_eq!(store.expire_smpp_deliveries(now.plus_millis(-60_000), 100).await.unwrap(), 0);
    assert_eq!(store.expire_smpp_deliveries(Timestamp::now().plus_millis(1), 100).await.unwrap(), 2);
    assert_eq!(store.count_smpp_deliveries().await.unwrap(), 0);
}
