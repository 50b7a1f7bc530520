//! Destinations: what the lookup told of a recipient is stored with the message and read
//! back, and an account's own destination settings refuse, failed and free, what they do not
//! allow, in the admission's transaction, while another account sends there and pays.

use std::collections::BTreeSet;

use switchboard_domain::{AccountDestinations, Destination, NumberType, Region};

use super::*;

fn region(code: &str) -> Region {
    Region::parse(code).expect("a country code")
}

async fn destinations_are_stored_and_held_to_the_account(store: Arc<dyn Store>) {
    let a = funded_account(&store, 10, 0).await;
    let gb = Destination { valid: true, number_type: NumberType::Mobile, region: Some(region("GB")) };
    let us = Destination { valid: true, number_type: NumberType::FixedLineOrMobile, region: Some(region("US")) };
    let account = store.get_account(a).await.unwrap().unwrap();
    assert_eq!(account.destinations, AccountDestinations::default());

    // Every country by default: stored with its destination, charged.
    let to_gb = NewMessage { to: msisdn("+447400123456"), destination: Some(gb), ..message(a, None, "hi") };
    let AcceptOutcome::Queued(m) = store.accept(std::slice::from_ref(&to_gb)).await.unwrap().remove(0) else {
        panic!("queued")
    };
    assert_eq!(m.destination, Some(gb));
    assert_eq!(store.get_message(m.id).await.unwrap().unwrap().destination, Some(gb));

    // US only, no fixed-or-mobile numbers.
    let only_us = AccountDestinations { allowed_regions: Some(BTreeSet::from([region("US")])), fixed_or_mobile: false };
    let changed = store.set_destinations(a, only_us.clone()).await.unwrap();
    assert_eq!(changed.destinations, only_us);
    assert_eq!(store.get_account(a).await.unwrap().unwrap().destinations, only_us);
    let to_us = NewMessage { to: msisdn("+14155550100"), destination: Some(us), ..message(a, None, "hi") };
    let refused_by_operator =
        NewMessage { refusal: Some(ErrorType::ServiceRestricted), destination: Some(us), ..message(a, None, "mms") };
    let to_gb = NewMessage { id: MessageId::new(), ..to_gb };
    let out = store.accept(&[to_gb.clone(), to_us.clone(), refused_by_operator]).await.unwrap();
    let errors: Vec<_> = out
        .iter()
        .map(|o| match o {
            AcceptOutcome::Failed(m) => {
                assert_eq!((m.status, m.charged), (MessageStatus::Failed, Credits::ZERO));
                m.error_type
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        errors,
        [
            Some(ErrorType::GeographicRestriction),
            Some(ErrorType::InvalidDestination),
            Some(ErrorType::ServiceRestricted)
        ]
    );
    let failed = store.get_message(to_us.id).await.unwrap().unwrap();
    assert_eq!((failed.error_type, failed.destination), (Some(ErrorType::InvalidDestination), Some(us)));
    // Only the first message was charged, and the ledger says exactly that.
    assert_eq!(balance(&store, a).await, Credits::new(8, 0));
    let entries = store.ledger(a, PageRequest { before: None, limit: 100 }).await.unwrap();
    let charges: Vec<_> = entries.iter().filter(|e| e.kind == EntryKind::Charge).collect();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].message_id, Some(m.id));

    // Another account sends to the same country at the same time, and pays.
    let b = store.create_account("b").await.unwrap().id;
    store.top_up(b, Credits::new(2, 0), None).await.unwrap();
    let from = sms_sender(&store, b, "+18005550001").await;
    let theirs = NewMessage { account_id: b, from, ..NewMessage { id: MessageId::new(), ..to_gb } };
    let again = NewMessage { id: MessageId::new(), ..to_us };
    let out = store.accept(&[theirs, again]).await.unwrap();
    assert!(matches!(&out[0], AcceptOutcome::Queued(m) if m.charged == Credits::new(2, 0)), "{out:?}");
    assert!(matches!(&out[1], AcceptOutcome::Failed(_)), "{out:?}");
    assert_eq!(balance(&store, b).await, Credits::ZERO);

    // Back to every country and fixed-or-mobile numbers.
    let all = store.set_destinations(a, AccountDestinations::default()).await.unwrap();
    assert_eq!(all.destinations, AccountDestinations::default());
    let to_us =
        NewMessage { id: MessageId::new(), to: msisdn("+14155550100"), destination: Some(us), ..message(a, None, "x") };
    assert!(matches!(store.accept(&[to_us]).await.unwrap()[0], AcceptOutcome::Queued(_)));
    assert!(matches!(
        store.set_destinations(AccountId::new(), AccountDestinations::default()).await,
        Err(StorageError::NotFound)
    ));
}

contract!(destinations_are_stored_and_held_to_the_account);
