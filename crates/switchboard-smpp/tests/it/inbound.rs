//! A concatenated inbound message is reported once, whole, and its parts are answered only once
//! it is stored; a `data_sm` is taken as a `deliver_sm` is, and answered with `data_sm_resp`.

use rusmpp::{CommandId, CommandStatus};
use switchboard_provider::InboundMessage;
use switchboard_smpp::text;

use super::*;

const FROM: &str = "+447700900123";
const TO: &str = "+18005550100";

fn inbound(report: &Report) -> &InboundMessage {
    match &report.event {
        ProviderEvent::Inbound(m) => m,
        other => panic!("expected an inbound message, got {other:?}"),
    }
}

fn statuses(smsc: &FakeSmsc) -> Vec<CommandStatus> {
    smsc.delivery_answers().into_iter().map(|a| a.status).collect()
}

fn data_sm_statuses(smsc: &FakeSmsc) -> Vec<(CommandId, CommandStatus)> {
    smsc.data_sm_answers().into_iter().map(|(id, a)| (id, a.status)).collect()
}

/// A text of one part in GSM-7, as octets.
fn gsm7(chunk: &str) -> Vec<u8> {
    let encoded = text::encode_text(chunk, Encoding::Gsm7, 0).unwrap();
    assert_eq!((encoded.data_coding, encoded.parts.len()), (0, 1), "{chunk}");
    encoded.parts.into_iter().next().unwrap()
}

fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

#[tokio::test]
async fn a_concatenated_message_is_one_inbound_event_and_its_parts_are_answered_once_stored() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    // A receive window smaller than the message: parts waiting for the rest take no slot of it.
    let (upstream, mut reports) = started_raw(SmppConfig { receive_window: 1, ..config_for(&smsc) }).await;
    let chunks = [
        "First part of a long text. ".repeat(5),
        "Second part: € and {braces}. ".repeat(4),
        "Third and last.".to_owned(),
    ];
    let parts: Vec<Vec<u8>> = chunks.iter().map(|c| gsm7(c)).collect();
    assert!(parts.iter().all(|p| p.len() <= 153));
    assert!(smsc.deliver_concatenated(FROM, TO, 0x2A, 0, &parts, &[2, 3, 1]));

    let report = next_report(&mut reports).await;
    let message = inbound(&report);
    assert_eq!((message.from.as_str(), message.to.as_str()), (FROM, TO));
    assert_eq!(message.body.as_deref(), Some(chunks.concat().as_str()));
    // Nothing is answered before the core says it is stored.
    assert!(smsc.delivery_answers().is_empty(), "{:?}", smsc.delivery_answers());
    assert_eq!(smsc.unanswered_deliveries(), 3);

    report.ack.stored();
    wait_until("every part is answered", || smsc.delivery_answers().len() == 3).await;
    assert_eq!(statuses(&smsc), [CommandStatus::EsmeRok; 3]);
    assert_eq!((smsc.unanswered_deliveries(), smsc.pending_redeliveries()), (0, 0));
    assert!(reports.try_recv().is_err(), "one message, one event");
    upstream.shutdown().await;
}

#[tokio::test]
async fn parts_whose_siblings_never_come_are_answered_with_a_temporary_error_after_the_timeout() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let config = SmppConfig { reassembly_timeout_ms: 400, ..config_for(&smsc) };
    let (upstream, mut reports) = started_raw(config).await;
    let chunks = ["one, ", "two, ", "three"];
    let parts: Vec<Vec<u8>> = chunks.iter().map(|c| gsm7(c)).collect();
    let sent = Instant::now();
    assert!(smsc.deliver_concatenated(FROM, TO, 7, 0, &parts, &[1, 3]));

    wait_until("both parts are answered", || smsc.delivery_answers().len() == 2).await;
    assert!(sent.elapsed() >= Duration::from_millis(400), "answered after {:?}", sent.elapsed());
    assert_eq!(statuses(&smsc), [CommandStatus::EsmeRxTAppn; 2]);
    while let Ok(r) = reports.try_recv() {
        assert!(matches!(r.event, ProviderEvent::Ready { .. }), "an incomplete message was reported: {:?}", r.event);
    }
    assert_eq!(smsc.pending_redeliveries(), 2);

    // The SMSC delivers them again, and this time the missing part comes too.
    assert!(smsc.deliver_concatenated(FROM, TO, 7, 0, &parts, &[2]));
    assert_eq!(smsc.redeliver(), 2);
    let report = next_report(&mut reports).await;
    assert_eq!(inbound(&report).body.as_deref(), Some("one, two, three"));
    assert_eq!(smsc.delivery_answers().len(), 2);
    report.ack.stored();
    wait_until("the three parts are answered", || smsc.delivery_answers().len() == 5).await;
    assert_eq!(statuses(&smsc)[2..], [CommandStatus::EsmeRok; 3]);
    assert_eq!((smsc.unanswered_deliveries(), smsc.pending_redeliveries()), (0, 0));
    upstream.shutdown().await;
}

#[tokio::test]
async fn a_ucs2_message_with_an_emoji_cut_between_parts_arrives_whole() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, mut reports) = started_raw(config_for(&smsc)).await;
    let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
    let octets = ucs2(&text);
    // The first part ends with the emoji's high surrogate, the second starts with its low one.
    let (first, second) = octets.split_at(134);
    assert_eq!(&first[132..], &[0xD8, 0x3D]);
    let parts = [first.to_vec(), second.to_vec()];
    assert!(smsc.deliver_concatenated(FROM, TO, 0x99, 8, &parts, &[1, 2]));

    let report = next_report(&mut reports).await;
    assert_eq!(inbound(&report).body.as_deref(), Some(text.as_str()));
    assert!(smsc.delivery_answers().is_empty());
    report.ack.stored();
    wait_until("both parts are answered", || smsc.delivery_answers().len() == 2).await;
    assert_eq!(statuses(&smsc), [CommandStatus::EsmeRok; 2]);
    upstream.shutdown().await;
}

#[tokio::test]
async fn a_concatenated_message_not_stored_has_every_part_delivered_again() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, mut reports) = started_raw(config_for(&smsc)).await;
    let parts: Vec<Vec<u8>> = ["STOP ", "all ", "messages"].iter().map(|c| gsm7(c)).collect();
    assert!(smsc.deliver_concatenated(FROM, TO, 3, 0, &parts, &[1, 2, 3]));
    let report = next_report(&mut reports).await;
    report.ack.not_stored();
    wait_until("every part is answered", || smsc.delivery_answers().len() == 3).await;
    assert_eq!(statuses(&smsc), [CommandStatus::EsmeRxTAppn; 3]);

    assert_eq!(smsc.redeliver(), 3);
    let again = next_report(&mut reports).await;
    assert_eq!(inbound(&again).body.as_deref(), Some("STOP all messages"));
    again.ack.stored();
    wait_until("every part is answered again", || smsc.delivery_answers().len() == 6).await;
    assert_eq!(statuses(&smsc)[3..], [CommandStatus::EsmeRok; 3]);
    upstream.shutdown().await;
}

#[tokio::test]
async fn data_sm_inbound_messages_and_receipts_are_answered_data_sm_resp_once_stored() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, mut reports) = started_raw(config_for(&smsc)).await;

    assert!(smsc.deliver_data_sm(FROM, TO, "Hello over data_sm: € {ok}"));
    let report = next_report(&mut reports).await;
    let received = inbound(&report);
    assert_eq!((received.from.as_str(), received.to.as_str()), (FROM, TO));
    assert_eq!(received.body.as_deref(), Some("Hello over data_sm: € {ok}"));
    assert!(smsc.data_sm_answers().is_empty());
    assert_eq!(smsc.unanswered_data_sm(), 1);
    report.ack.stored();
    wait_until("the data_sm is answered", || smsc.data_sm_answers().len() == 1).await;
    assert_eq!(data_sm_statuses(&smsc), [(CommandId::DataSmResp, CommandStatus::EsmeRok)]);

    let submission = upstream.send(&message("hi", Encoding::Gsm7)).await.unwrap();
    assert!(smsc.deliver_data_sm_receipt(&smsc.submits()[0]));
    let report = next_report(&mut reports).await;
    let ProviderEvent::Receipt(receipt) = &report.event else { panic!("{:?}", report.event) };
    assert_eq!(
        (receipt.provider_ref.as_str(), receipt.status),
        (submission.provider_message_id.as_str(), ReceiptStatus::Delivered)
    );
    assert_eq!(smsc.data_sm_answers().len(), 1);
    report.ack.stored();
    wait_until("the receipt is answered", || smsc.data_sm_answers().len() == 2).await;
    assert_eq!(data_sm_statuses(&smsc)[1], (CommandId::DataSmResp, CommandStatus::EsmeRok));

    // One not stored gets a temporary error.
    assert!(smsc.deliver_data_sm(FROM, TO, "again"));
    next_report(&mut reports).await.ack.not_stored();
    wait_until("answered", || smsc.data_sm_answers().len() == 3).await;
    assert_eq!(data_sm_statuses(&smsc)[2], (CommandId::DataSmResp, CommandStatus::EsmeRxTAppn));
    assert_eq!(smsc.unanswered_data_sm(), 0);
    // No deliver_sm went either way.
    assert!(smsc.delivery_answers().is_empty());
    upstream.shutdown().await;
}
