//! Unit tests of the `deliver_sm` the server writes, read back with the SMPP upstream's own
//! reader.

use switchboard_domain::{AccountId, Direction, MessageId, MessageKind, Msisdn, SenderId};
use switchboard_ledger::Credits;
use switchboard_provider::{ProviderEvent, ReceiptStatus};
use switchboard_smpp::MsgIdFormat;
use switchboard_smpp::pdu::{Delivery, read_deliver_sm};
use uuid::Uuid;

use super::*;

fn message(body: &str) -> MessageRecord {
    let at = Timestamp::from_millis(1_767_268_800_000); // 2026-01-01T12:00:00Z
    MessageRecord {
        id: MessageId::new(),
        account_id: AccountId::new(),
        direction: Direction::Outbound,
        kind: MessageKind::Sms,
        to: Msisdn::parse("+15550002222").unwrap(),
        from: SenderId::parse("Acme").unwrap(),
        body: Some(body.to_owned()),
        media: Vec::new(),
        encoding: Encoding::Gsm7,
        segments: 1,
        status: MessageStatus::Delivered,
        error_type: None,
        error_message: None,
        charged: Credits::ZERO,
        idempotency_key: None,
        request_hash: None,
        attempts: 1,
        unavailable_attempts: 0,
        next_attempt_at: at,
        provider_message_id: None,
        created_at: at,
        updated_at: at,
        sent_at: None,
        batch_id: None,
        channel_id: None,
        expires_at: None,
        details: None,
        notify_url: None,
        destination: None,
        request_id: None,
    }
}

fn delivery(m: &MessageRecord, status: MessageStatus, error_type: Option<ErrorType>) -> SmppDeliveryRecord {
    SmppDeliveryRecord {
        id: Uuid::now_v7(),
        account_id: m.account_id,
        kind: SmppDeliveryKind::Receipt,
        message_id: m.id,
        status,
        error_type,
        occurred_at: m.created_at.plus_millis(60_000),
        attempts: 0,
        next_attempt_at: m.created_at,
    }
}

#[test]
fn receipt_text_has_every_field() {
    let m = message("Hello from Switchboard, a long text");
    let text = receipt_text(&m, MessageStatus::Delivered, None, m.created_at.plus_millis(60_000));
    assert_eq!(
        text,
        format!(
            "id:{} sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:Hello from Switchboa",
            m.id
        )
    );
    let failed = receipt_text(&m, MessageStatus::Failed, Some(ErrorType::OptedOut), m.created_at);
    assert!(failed.contains("dlvrd:000") && failed.contains("stat:REJECTD err:007"), "{failed}");
}

#[test]
fn receipts_read_back_as_receipts() {
    let m = message("hi");
    for (status, error_type, expected) in [
        (MessageStatus::Delivered, None, ReceiptStatus::Delivered),
        (MessageStatus::Undelivered, Some(ErrorType::ProviderError), ReceiptStatus::Undelivered),
        (MessageStatus::Failed, Some(ErrorType::OptedOut), ReceiptStatus::Failed),
    ] {
        let pdu = receipt_pdu(&m, &delivery(&m, status, error_type));
        assert_eq!(pdu.source_addr.as_str(), "15550002222");
        assert_eq!(pdu.destination_addr.as_str(), "Acme");
        match read_deliver_sm(&pdu, MsgIdFormat::default()) {
            Delivery::Event(ProviderEvent::Receipt(r)) => {
                assert_eq!(r.provider_ref, m.id.to_string());
                assert_eq!(r.status, expected);
            }
            _ => panic!("not read as a receipt"),
        }
    }
}

#[test]
fn inbound_messages_read_back_as_inbound() {
    let mut m = message("");
    m.direction = Direction::Inbound;
    m.to = Msisdn::parse("+15550003333").unwrap();
    m.from = SenderId::parse("+15550004444").unwrap();
    for body in ["STOP", "Grüße ☺", &"long ".repeat(80)] {
        m.body = Some(body.to_owned());
        match read_deliver_sm(&inbound_pdu(&m), MsgIdFormat::default()) {
            Delivery::Event(ProviderEvent::Inbound(i)) => {
                assert_eq!(i.body.as_deref(), Some(body));
                assert_eq!((i.from.as_str(), i.to.as_str()), ("+15550004444", "+15550003333"));
            }
            _ => panic!("not read as an inbound message"),
        }
    }
}
