//! A `deliver_sm` is answered only once the core says it is stored, and the fake SMSC, like a
//! real one, delivers again what was not answered `ESME_ROK`.

use rusmpp::CommandStatus;

use super::*;

fn inbound_body(report: &Report) -> String {
    match &report.event {
        ProviderEvent::Inbound(m) => m.body.clone().unwrap_or_default(),
        other => panic!("expected an inbound message, got {other:?}"),
    }
}

fn statuses(smsc: &FakeSmsc) -> Vec<CommandStatus> {
    smsc.delivery_answers().into_iter().map(|a| a.status).collect()
}

#[tokio::test]
async fn deliver_sm_is_answered_once_stored_in_any_order_and_sends_go_on_meanwhile() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, mut reports) = started_raw(config_for(&smsc)).await;
    assert!(smsc.inject_text("+447700900123", "+18005550100", "first"));
    assert!(smsc.inject_text("+447700900123", "+18005550100", "second"));
    let first = next_report(&mut reports).await;
    let second = next_report(&mut reports).await;
    assert_eq!((inbound_body(&first), inbound_body(&second)), ("first".to_owned(), "second".to_owned()));

    // Nothing is answered while neither is stored, and the session goes on meanwhile.
    upstream.send(&message("meanwhile", Encoding::Gsm7)).await.unwrap();
    assert_eq!(smsc.unanswered_deliveries(), 2);
    assert!(smsc.delivery_answers().is_empty(), "{:?}", smsc.delivery_answers());

    // The second is stored first: its answer goes first.
    second.ack.stored();
    wait_until("the second is answered", || smsc.delivery_answers().len() == 1).await;
    assert_eq!(statuses(&smsc), [CommandStatus::EsmeRok]);
    assert_eq!(smsc.unanswered_deliveries(), 1);

    // The first could not be stored: a temporary error, so the SMSC delivers it again.
    first.ack.not_stored();
    wait_until("the first is answered", || smsc.delivery_answers().len() == 2).await;
    assert_eq!(statuses(&smsc), [CommandStatus::EsmeRok, CommandStatus::EsmeRxTAppn]);
    assert_eq!(smsc.pending_redeliveries(), 1);
    assert_eq!(smsc.redeliver(), 1);
    let again = next_report(&mut reports).await;
    assert_eq!(inbound_body(&again), "first");
    again.ack.stored();
    wait_until("the first is answered again", || smsc.delivery_answers().len() == 3).await;
    assert_eq!(statuses(&smsc)[2], CommandStatus::EsmeRok);
    assert_eq!((smsc.unanswered_deliveries(), smsc.pending_redeliveries()), (0, 0));
    upstream.shutdown().await;
}

#[tokio::test]
async fn an_inbound_message_refused_for_good_is_acknowledged() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, mut reports) = started_raw(config_for(&smsc)).await;
    assert!(smsc.inject_text("+447700900123", "+18005550100", "to nobody"));
    next_report(&mut reports).await.ack.refused();
    wait_until("answered", || !smsc.delivery_answers().is_empty()).await;
    assert_eq!(statuses(&smsc), [CommandStatus::EsmeRok]);
    upstream.shutdown().await;
}

#[tokio::test]
async fn what_was_not_answered_before_a_drop_is_delivered_again_after_the_rebind() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, mut reports) = started_raw(config_for(&smsc)).await;
    assert!(smsc.inject_text("+447700900123", "+18005550100", "STOP"));
    let held = next_report(&mut reports).await;
    assert_eq!(smsc.unanswered_deliveries(), 1);

    // The connection drops before it is stored; its late acknowledgement goes nowhere.
    smsc.drop_connections();
    wait_until("bound again", || smsc.bind_count() == 2 && upstream.is_bound()).await;
    let again = next_report(&mut reports).await;
    assert_eq!(inbound_body(&again), "STOP");
    assert_eq!(smsc.redelivered_count(), 1);
    held.ack.stored();
    again.ack.stored();
    wait_until("answered", || !smsc.delivery_answers().is_empty()).await;
    assert_eq!(statuses(&smsc), [CommandStatus::EsmeRok]);
    assert_eq!((smsc.unanswered_deliveries(), smsc.pending_redeliveries()), (0, 0));
    upstream.shutdown().await;
}

#[tokio::test]
async fn receipts_wait_for_their_storage_too() {
    let receipts = ReceiptOptions::default();
    let smsc = FakeSmsc::start(FakeSmscOptions { receipts: Some(receipts), ..FakeSmscOptions::default() }).await;
    let (upstream, mut reports) = started_raw(config_for(&smsc)).await;
    let submission = upstream.send(&message("hi", Encoding::Gsm7)).await.unwrap();
    let report = next_report(&mut reports).await;
    let ProviderEvent::Receipt(receipt) = &report.event else { panic!("{:?}", report.event) };
    assert_eq!(receipt.provider_ref, submission.provider_message_id);
    assert_eq!(smsc.unanswered_deliveries(), 1);
    // The server stops before storing it: a temporary error.
    drop(reports);
    drop(report);
    wait_until("answered", || !smsc.delivery_answers().is_empty()).await;
    assert_eq!(statuses(&smsc), [CommandStatus::EsmeRxTAppn]);
    assert_eq!(smsc.pending_redeliveries(), 1);
    // The sink closed: what comes next is refused at once.
    assert!(smsc.inject_receipt(&smsc.submits()[0]));
    wait_until("answered", || smsc.delivery_answers().len() == 2).await;
    assert_eq!(statuses(&smsc)[1], CommandStatus::EsmeRxTAppn);
    upstream.shutdown().await;
}

#[tokio::test]
async fn the_receive_window_bounds_what_waits_to_be_stored() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, mut reports) = started_raw(SmppConfig { receive_window: 2, ..config_for(&smsc) }).await;
    for text in ["one", "two", "three"] {
        assert!(smsc.inject_text("+447700900123", "+18005550100", text));
    }
    let one = next_report(&mut reports).await;
    let two = next_report(&mut reports).await;
    // The third is not read while two wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(reports.try_recv().is_err(), "a third was read with the window full");
    one.ack.stored();
    let three = next_report(&mut reports).await;
    assert_eq!(inbound_body(&three), "three");
    two.ack.stored();
    three.ack.stored();
    wait_until("all answered", || smsc.delivery_answers().len() == 3).await;
    assert!(statuses(&smsc).iter().all(|s| *s == CommandStatus::EsmeRok));
    upstream.shutdown().await;
}
