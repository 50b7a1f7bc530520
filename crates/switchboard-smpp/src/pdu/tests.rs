//! Tests of `submit_sm` building, status mapping and `deliver_sm` and `data_sm` reading.

use super::*;
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::values::MessageState;
use switchboard_domain::{AccountId, Encoding, MessageId, SenderId};

fn config() -> SmppConfig {
    SmppConfig::new("test", "127.0.0.1", 2775, "sys", "pw")
}

fn message(body: &str, encoding: Encoding) -> OutboundMessage {
    OutboundMessage {
        id: MessageId::new(),
        account_id: AccountId::new(),
        to: Msisdn::parse("+447700900123").unwrap(),
        from: SenderId::parse("+18005550100").unwrap(),
        kind: MessageKind::Sms,
        body: Some(body.to_owned()),
        media: Vec::new(),
        encoding,
        segments: 1,
        attempt: 1,
        sent_parts: Vec::new(),
    }
}

#[test]
fn single_part_submit() {
    let parts = build_submits(&message("hello", Encoding::Gsm7), &config()).unwrap();
    assert_eq!(parts.len(), 1);
    let sm = &parts[0];
    assert_eq!(sm.source_addr.as_str(), "18005550100");
    assert_eq!(sm.destination_addr.as_str(), "447700900123");
    assert_eq!((u8::from(sm.source_addr_ton), u8::from(sm.source_addr_npi)), (1, 1));
    assert_eq!((u8::from(sm.dest_addr_ton), u8::from(sm.dest_addr_npi)), (1, 1));
    assert_eq!(u8::from(sm.esm_class), 0);
    assert_eq!(u8::from(sm.data_coding), 0);
    assert_eq!(u8::from(sm.registered_delivery), 1);
    assert_eq!(sm.short_message().as_ref(), b"hello");
}

#[test]
fn multipart_submit_has_udhi_and_a_stable_reference() {
    let m = message(&"ж".repeat(100), Encoding::Ucs2);
    let parts = build_submits(&m, &SmppConfig { registered_delivery: false, ..config() }).unwrap();
    assert_eq!(parts.len(), 2);
    let reference = reference_of(&m);
    for (i, sm) in parts.iter().enumerate() {
        assert_eq!(u8::from(sm.esm_class), 0x40);
        assert_eq!(u8::from(sm.data_coding), 8);
        assert_eq!(u8::from(sm.registered_delivery), 0);
        assert_eq!(&sm.short_message().as_ref()[..6], &[5, 0, 3, reference, 2, i as u8 + 1]);
    }
    let again = OutboundMessage { attempt: 2, ..m.clone() };
    assert_eq!(build_submits(&again, &config()).unwrap()[0].short_message(), parts[0].short_message());
}

#[test]
fn mms_and_empty_messages_are_refused() {
    let mut m = message("x", Encoding::Gsm7);
    m.media = vec!["https://example.com/a.png".into()];
    assert_eq!(build_submits(&m, &config()).unwrap_err().error_type, ErrorType::InvalidContent);
    let m = OutboundMessage { body: None, ..message("x", Encoding::Gsm7) };
    let e = build_submits(&m, &config()).unwrap_err();
    assert!(!e.retryable);
    assert_eq!(e.error_type, ErrorType::InvalidContent);
}

#[test]
fn alphanumeric_senders_go_as_they_are_with_their_own_ton_and_npi() {
    let numbered = &build_submits(&message("hi", Encoding::Gsm7), &config()).unwrap()[0];
    let m = OutboundMessage { from: SenderId::parse("My Shop").unwrap(), ..message("hi", Encoding::Gsm7) };
    let named = &build_submits(&m, &config()).unwrap()[0];
    let source = |s: &SubmitSm| (s.source_addr.to_string(), u8::from(s.source_addr_ton), u8::from(s.source_addr_npi));
    assert_eq!(source(numbered), ("18005550100".to_owned(), 1, 1));
    assert_eq!(source(named), ("My Shop".to_owned(), 5, 0));
}

#[test]
fn statuses() {
    let e = submit_status_error(CommandStatus::EsmeRthrottled);
    assert!(e.retryable && !e.unavailable);
    assert_eq!(e.error_type, ErrorType::ProviderError);
    assert!(e.message.contains("ESME_RTHROTTLED (0x00000058)"), "{}", e.message);
    let e = submit_status_error(CommandStatus::EsmeRmsgqful);
    assert!(e.retryable && e.message.contains("ESME_RMSGQFUL"));
    assert!(submit_status_error(CommandStatus::EsmeRsyserr).retryable);
    let e = submit_status_error(CommandStatus::EsmeRinvdstadr);
    assert_eq!((e.error_type, e.retryable), (ErrorType::InvalidDestination, false));
    let e = submit_status_error(CommandStatus::EsmeRinvsrcadr);
    assert_eq!((e.error_type, e.retryable), (ErrorType::InvalidSender, false));
    let e = submit_status_error(CommandStatus::Other(0x0400));
    assert_eq!((e.error_type, e.retryable), (ErrorType::ProviderError, false));
    assert!(e.message.contains("0x00000400"), "{}", e.message);
    assert_eq!(status_text(CommandStatus::EsmeRinvpaswd), "ESME_RINVPASWD (0x0000000E)");
}

fn deliver(esm: u8, dc: u8, source: &str, dest: &str, short: &[u8]) -> DeliverSm {
    DeliverSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr(COctetString::from_string(source.to_owned()).unwrap())
        .dest_addr_ton(Ton::International)
        .destination_addr(COctetString::from_string(dest.to_owned()).unwrap())
        .esm_class(EsmClass::from(esm))
        .data_coding(DataCoding::from(dc))
        .short_message(OctetString::from_vec(short.to_vec()).unwrap())
        .build()
}

fn receipt_of(d: Delivery) -> Receipt {
    match d {
        Delivery::Event(ProviderEvent::Receipt(r)) => r,
        other => panic!("not a receipt: {other:?}"),
    }
}

#[test]
fn receipts_from_text() {
    let text = b"id:0001A2B sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:hi";
    let r = receipt_of(read_deliver_sm(&deliver(0x04, 0, "447700900123", "18005550100", text), MsgIdFormat::AsIs));
    assert_eq!(
        (r.provider_ref.as_str(), r.status, r.error_type, r.description),
        ("1a2b", ReceiptStatus::Delivered, None, None)
    );

    let text = b"id:6699 sub:001 dlvrd:000 submit_date:2401011200 done_date:2401011201 stat:UNDELIV err:034 text:";
    let format = MsgIdFormat::SubmitHexReceiptDecimal;
    let r = receipt_of(read_deliver_sm(&deliver(0x04, 0, "447700900123", "18005550100", text), format));
    assert_eq!(r.provider_ref, format.submit_id("1A2B"));
    assert_eq!((r.status, r.error_type), (ReceiptStatus::Undelivered, Some(ErrorType::Unknown)));
    assert_eq!(r.description.as_deref(), Some("stat:UNDELIV err:034"));

    let text = b"id:5 stat:REJECTD err:000";
    let r = receipt_of(read_deliver_sm(&deliver(0x04, 0, "447700900123", "18005550100", text), MsgIdFormat::AsIs));
    assert_eq!((r.status, r.error_type), (ReceiptStatus::Failed, None));
}

#[test]
fn receipt_without_the_esm_flag_is_recognised_by_its_text() {
    let text = b"id:77 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:EXPIRED err:000 text:";
    let r = receipt_of(read_deliver_sm(&deliver(0, 0, "447700900123", "18005550100", text), MsgIdFormat::AsIs));
    assert_eq!((r.provider_ref.as_str(), r.status), ("77", ReceiptStatus::Undelivered));
}

#[test]
fn receipted_message_id_tlv_wins_and_message_state_fills_in() {
    let mut d = deliver(0x04, 0, "447700900123", "18005550100", b"");
    d.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(COctetString::from_string("00FF".into()).unwrap()));
    d.push_tlv(MessageDeliveryRequestTlvValue::MessageState(MessageState::Delivered));
    let r = receipt_of(read_deliver_sm(&d, MsgIdFormat::SubmitHexReceiptDecimal));
    assert_eq!((r.provider_ref.as_str(), r.status), ("255", ReceiptStatus::Delivered));

    let mut d = deliver(0x04, 0, "447700900123", "18005550100", b"id:999 stat:DELIVRD err:000");
    d.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(COctetString::from_string("abc".into()).unwrap()));
    assert_eq!(receipt_of(read_deliver_sm(&d, MsgIdFormat::AsIs)).provider_ref, "abc");
}

#[test]
fn pending_and_odd_receipts_give_no_event() {
    let d = deliver(0x04, 0, "1", "2", b"id:1 stat:ENROUTE err:000");
    assert_eq!(
        read_deliver_sm(&d, MsgIdFormat::AsIs),
        Delivery::Pending { provider_ref: "1".into(), stat: "ENROUTE".into() }
    );
    assert!(matches!(
        read_deliver_sm(&deliver(0x04, 0, "1", "2", b"id:1 stat:ACCEPTD"), MsgIdFormat::AsIs),
        Delivery::Pending { .. }
    ));
    assert!(matches!(
        read_deliver_sm(&deliver(0x04, 0, "1", "2", b"stat:DELIVRD"), MsgIdFormat::AsIs),
        Delivery::Skipped(_)
    ));
    assert!(matches!(
        read_deliver_sm(&deliver(0x04, 0, "1", "2", b"id:1 stat:WEIRD"), MsgIdFormat::AsIs),
        Delivery::Skipped(_)
    ));
}

#[test]
fn inbound_messages() {
    let d = deliver(0, 0, "447700900123", "18005550100", &[0x48, 0x69, 0x20, 0x1b, 0x65]);
    let Delivery::Event(ProviderEvent::Inbound(m)) = read_deliver_sm(&d, MsgIdFormat::AsIs) else { panic!() };
    assert_eq!((m.from.as_str(), m.to.as_str(), m.body.as_deref()), ("+447700900123", "+18005550100", Some("Hi €")));

    let mut d = deliver(0, 8, "+447700900123", "0018005550100", &[0x04, 0x36]);
    d.dest_addr_ton = Ton::Unknown;
    let Delivery::Event(ProviderEvent::Inbound(m)) = read_deliver_sm(&d, MsgIdFormat::AsIs) else { panic!() };
    assert_eq!((m.from.as_str(), m.to.as_str(), m.body.as_deref()), ("+447700900123", "+18005550100", Some("ж")));
}

fn part_of(d: Delivery) -> Part {
    match d {
        Delivery::Part(p) => p,
        other => panic!("not a part: {other:?}"),
    }
}

#[test]
fn parts_of_concatenated_inbound_messages() {
    // A user data header with an 8-bit reference: the part's octets come without it.
    let d = deliver(0x40, 8, "+447700900123", "18005550100", &[5, 0, 3, 0xAB, 2, 1, 0x04, 0x36]);
    let p = part_of(read_deliver_sm(&d, MsgIdFormat::AsIs));
    assert_eq!((p.from.as_str(), p.to.as_str()), ("+447700900123", "+18005550100"));
    assert_eq!(p.concatenation, reassembly::Concatenation { reference: 0xAB, total: 2, seq: 1 });
    assert_eq!((p.data_coding, p.data), (8, vec![0x04, 0x36]));

    // A 16-bit reference.
    let d = deliver(0x40, 0, "447700900123", "18005550100", &[6, 8, 4, 0x12, 0x34, 3, 3, b'h', b'i']);
    let p = part_of(read_deliver_sm(&d, MsgIdFormat::AsIs));
    assert_eq!(p.concatenation, reassembly::Concatenation { reference: 0x1234, total: 3, seq: 3 });
    assert_eq!(p.data, b"hi");

    // The SAR TLVs.
    let mut d = deliver(0, 0, "447700900123", "18005550100", b"part two");
    d.push_tlv(MessageDeliveryRequestTlvValue::SarMsgRefNum(0xBEEF));
    d.push_tlv(MessageDeliveryRequestTlvValue::SarTotalSegments(2));
    d.push_tlv(MessageDeliveryRequestTlvValue::SarSegmentSeqnum(2));
    let p = part_of(read_deliver_sm(&d, MsgIdFormat::AsIs));
    assert_eq!(p.concatenation, reassembly::Concatenation { reference: 0xBEEF, total: 2, seq: 2 });
    assert_eq!(p.data, b"part two");

    // A header of one part, or with no concatenation element, makes a message of its own.
    let d = deliver(0x40, 0, "447700900123", "18005550100", &[5, 0, 3, 1, 1, 1, b'o', b'k']);
    let Delivery::Event(ProviderEvent::Inbound(m)) = read_deliver_sm(&d, MsgIdFormat::AsIs) else { panic!() };
    assert_eq!(m.body.as_deref(), Some("ok"));
    let d = deliver(0x40, 0, "447700900123", "18005550100", &[4, 5, 2, 0x0B, 0x84, b'o', b'k']);
    let Delivery::Event(ProviderEvent::Inbound(m)) = read_deliver_sm(&d, MsgIdFormat::AsIs) else { panic!() };
    assert_eq!(m.body.as_deref(), Some("ok"));

    // A binary part, or one from an address that is not E.164, is skipped like a whole message.
    let d = deliver(0x40, 4, "447700900123", "18005550100", &[5, 0, 3, 1, 2, 1, 0xff]);
    assert!(matches!(read_deliver_sm(&d, MsgIdFormat::AsIs), Delivery::Skipped(_)));
    let d = deliver(0x40, 0, "447700900123", "12345", &[5, 0, 3, 1, 2, 1, b'x']);
    assert!(matches!(read_deliver_sm(&d, MsgIdFormat::AsIs), Delivery::Skipped(_)));
}

fn data_sm(esm: u8, dc: u8, source: &str, dest: &str, tlvs: Vec<TlvValue>) -> DataSm {
    let d = DataSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr(COctetString::from_string(source.to_owned()).unwrap())
        .dest_addr_ton(Ton::International)
        .destination_addr(COctetString::from_string(dest.to_owned()).unwrap())
        .esm_class(EsmClass::from(esm))
        .data_coding(DataCoding::from(dc))
        .build();
    let mut parts = d.into_parts();
    parts.tlvs.extend(tlvs.into_iter().map(Tlv::new));
    DataSm::from_parts(parts)
}

fn payload(bytes: &[u8]) -> TlvValue {
    TlvValue::MessagePayload(rusmpp::values::MessagePayload::new(rusmpp::types::AnyOctetString::from_vec(
        bytes.to_vec(),
    )))
}

#[test]
fn data_sm_inbound_messages() {
    let d = data_sm(0, 0, "447700900123", "18005550100", vec![payload(&[0x48, 0x69, 0x20, 0x1b, 0x65])]);
    let Delivery::Event(ProviderEvent::Inbound(m)) = read_data_sm(&d, MsgIdFormat::AsIs) else { panic!() };
    assert_eq!((m.from.as_str(), m.to.as_str(), m.body.as_deref()), ("+447700900123", "+18005550100", Some("Hi €")));

    let d = data_sm(0, 8, "447700900123", "18005550100", vec![payload(&[0xD8, 0x3D, 0xDE, 0x00])]);
    let Delivery::Event(ProviderEvent::Inbound(m)) = read_data_sm(&d, MsgIdFormat::AsIs) else { panic!() };
    assert_eq!(m.body.as_deref(), Some("😀"));

    // Parts, by a user data header at the start of the payload or by the SAR TLVs.
    let d = data_sm(0x40, 0, "447700900123", "18005550100", vec![payload(&[5, 0, 3, 9, 2, 2, b'y', b'o'])]);
    let p = part_of(read_data_sm(&d, MsgIdFormat::AsIs));
    assert_eq!(
        (p.concatenation, p.data),
        (reassembly::Concatenation { reference: 9, total: 2, seq: 2 }, b"yo".to_vec())
    );
    let sar =
        vec![payload(b"one"), TlvValue::SarMsgRefNum(7), TlvValue::SarTotalSegments(3), TlvValue::SarSegmentSeqnum(1)];
    let p = part_of(read_data_sm(&data_sm(0, 0, "447700900123", "18005550100", sar), MsgIdFormat::AsIs));
    assert_eq!(
        (p.concatenation, p.data),
        (reassembly::Concatenation { reference: 7, total: 3, seq: 1 }, b"one".to_vec())
    );

    // Not E.164, or not text.
    let d = data_sm(0, 0, "447700900123", "12345", vec![payload(b"hi")]);
    assert!(matches!(read_data_sm(&d, MsgIdFormat::AsIs), Delivery::Skipped(_)));
    let d = data_sm(0, 4, "447700900123", "18005550100", vec![payload(b"\x01")]);
    assert!(matches!(read_data_sm(&d, MsgIdFormat::AsIs), Delivery::Skipped(_)));
}

#[test]
fn data_sm_receipts() {
    // By the TLVs alone.
    let tlvs = vec![
        TlvValue::ReceiptedMessageId(COctetString::from_string("00FF".into()).unwrap()),
        TlvValue::MessageState(MessageState::Delivered),
    ];
    let d = data_sm(0x04, 0, "447700900123", "18005550100", tlvs);
    let r = receipt_of(read_data_sm(&d, MsgIdFormat::SubmitHexReceiptDecimal));
    assert_eq!((r.provider_ref.as_str(), r.status), ("255", ReceiptStatus::Delivered));

    // By the text in the payload, even without the esm_class flag.
    let text = b"id:77 sub:001 dlvrd:000 submit date:2401011200 done date:2401011201 stat:UNDELIV err:001 text:";
    let d = data_sm(0, 0, "447700900123", "18005550100", vec![payload(text)]);
    let r = receipt_of(read_data_sm(&d, MsgIdFormat::AsIs));
    assert_eq!((r.provider_ref.as_str(), r.status), ("77", ReceiptStatus::Undelivered));
    assert_eq!(r.description.as_deref(), Some("stat:UNDELIV err:001"));

    // A state that is not final.
    let tlvs = vec![
        TlvValue::ReceiptedMessageId(COctetString::from_string("12".into()).unwrap()),
        TlvValue::MessageState(MessageState::Enroute),
    ];
    let d = data_sm(0x04, 0, "447700900123", "18005550100", tlvs);
    assert_eq!(
        read_data_sm(&d, MsgIdFormat::AsIs),
        Delivery::Pending { provider_ref: "12".into(), stat: "ENROUTE".into() }
    );
}

#[test]
fn inbound_messages_that_cannot_be_reported() {
    // A short code as destination, a national number as source, a binary payload.
    assert!(matches!(
        read_deliver_sm(&deliver(0, 0, "447700900123", "12345", b"hi"), MsgIdFormat::AsIs),
        Delivery::Skipped(_)
    ));
    let mut d = deliver(0, 0, "7700900123", "18005550100", b"hi");
    d.source_addr_ton = Ton::National;
    assert!(matches!(read_deliver_sm(&d, MsgIdFormat::AsIs), Delivery::Skipped(_)));
    assert!(matches!(
        read_deliver_sm(&deliver(0, 4, "447700900123", "18005550100", b"\x01"), MsgIdFormat::AsIs),
        Delivery::Skipped(_)
    ));
}
