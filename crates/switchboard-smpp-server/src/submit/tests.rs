//! Unit tests of reading `submit_sm`.

use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, Ton};

use super::*;

fn sm(from: &str, from_ton: Ton, to: &str, data_coding: u8, text: &[u8]) -> SubmitSm {
    SubmitSm::builder()
        .source_addr_ton(from_ton)
        .source_addr_npi(Npi::Isdn)
        .source_addr(COctetString::from_string(from.to_owned()).unwrap())
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(COctetString::from_string(to.to_owned()).unwrap())
        .data_coding(DataCoding::from(data_coding))
        .short_message(OctetString::from_vec(text.to_vec()).unwrap())
        .build()
}

/// 2026-01-01T00:00:00Z.
fn now() -> Timestamp {
    Timestamp::from_millis(1_767_225_600_000)
}

fn time(s: &str) -> EmptyOrFullCOctetString<17> {
    EmptyOrFullCOctetString::from_string(s.to_owned()).unwrap()
}

#[test]
fn reads_numbers_and_sender_ids() {
    let s = read_submit(&sm("15550001111", Ton::International, "15550002222", 0, b"hi"), now()).unwrap();
    assert_eq!((s.from.as_str(), s.alphanumeric_from, s.to.as_str()), ("+15550001111", false, "+15550002222"));
    assert_eq!(s.text(), "hi");
    assert_eq!(s.extra, SmppSend::default());
    let s = read_submit(&sm("Acme", Ton::Alphanumeric, "15550002222", 0, b"hi"), now()).unwrap();
    assert_eq!((s.from.as_str(), s.alphanumeric_from), ("Acme", true));
    let bad_to = sm("15550001111", Ton::International, "abc", 0, b"hi");
    assert_eq!(read_submit(&bad_to, now()), Err(CommandStatus::EsmeRinvdstadr));
    let bad_from = sm("Acme", Ton::International, "15550002222", 0, b"hi");
    assert_eq!(read_submit(&bad_from, now()), Err(CommandStatus::EsmeRinvsrcadr));
    let binary = sm("Acme", Ton::Alphanumeric, "15550002222", 4, b"hi");
    assert_eq!(read_submit(&binary, now()), Err(CommandStatus::EsmeRinvdcs));
}

#[test]
fn decodes_each_data_coding() {
    let ucs2: Vec<u8> = "héllo ☺".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let s = read_submit(&sm("Acme", Ton::Alphanumeric, "15550002222", 8, &ucs2), now()).unwrap();
    assert_eq!(s.text(), "héllo ☺");
    let s = read_submit(&sm("Acme", Ton::Alphanumeric, "15550002222", 3, &[0x63, 0x61, 0x66, 0xE9]), now()).unwrap();
    assert_eq!(s.text(), "café");
    // GSM-7 unpacked: `@` is 0x00, `€` is the escape 0x1B then 0x65.
    let s = read_submit(&sm("Acme", Ton::Alphanumeric, "15550002222", 0, &[0x00, 0x1B, 0x65]), now()).unwrap();
    assert_eq!(s.text(), "@€");
}

#[test]
fn message_payload_and_concatenation() {
    let mut pdu = sm("Acme", Ton::Alphanumeric, "15550002222", 0, b"");
    let long = vec![b'a'; 300];
    pdu.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(AnyOctetString::from_vec(long))));
    let s = read_submit(&pdu, now()).unwrap();
    assert_eq!(s.text().len(), 300);
    assert_eq!(s.concatenation, None);

    let mut udh = vec![0x05, 0x00, 0x03, 0x2A, 0x03, 0x02];
    udh.extend_from_slice(b"part two");
    let mut pdu = sm("Acme", Ton::Alphanumeric, "15550002222", 0, &udh);
    pdu.esm_class = EsmClass::from(0x40);
    let s = read_submit(&pdu, now()).unwrap();
    assert_eq!(s.concatenation, Concatenation::new(0x2A, 3, 2));
    assert_eq!(s.text(), "part two");

    let mut udh16 = vec![0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01];
    udh16.extend_from_slice(b"one");
    let mut pdu = sm("Acme", Ton::Alphanumeric, "15550002222", 0, &udh16);
    pdu.esm_class = EsmClass::from(0x40);
    assert_eq!(read_submit(&pdu, now()).unwrap().concatenation, Concatenation::new(0x1234, 2, 1));

    let mut pdu = sm("Acme", Ton::Alphanumeric, "15550002222", 0, b"sar");
    pdu.push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(7));
    pdu.push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(2));
    pdu.push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(2));
    assert_eq!(read_submit(&pdu, now()).unwrap().concatenation, Concatenation::new(7, 2, 2));
}

#[test]
fn registered_delivery_and_times() {
    let mut pdu = sm("Acme", Ton::Alphanumeric, "15550002222", 0, b"x");
    pdu.registered_delivery = RegisteredDelivery::from(0x01);
    pdu.schedule_delivery_time = time("000000010000000R");
    pdu.validity_period = time("260102000000000+");
    let s = read_submit(&pdu, now()).unwrap();
    assert_eq!(s.extra.receipt, Some(ReceiptRequest::Final));
    assert_eq!(s.extra.scheduled_for, Some(now().plus_millis(3_600_000)));
    assert_eq!(s.extra.expires_at, Some(now().plus_millis(24 * 3_600_000)));
    pdu.registered_delivery = RegisteredDelivery::from(0x02);
    pdu.validity_period = time("251231000000000+");
    assert_eq!(read_submit(&pdu, now()), Err(CommandStatus::EsmeRinvexpiry));
    pdu.validity_period = EmptyOrFullCOctetString::empty();
    assert_eq!(read_submit(&pdu, now()).unwrap().extra.receipt, Some(ReceiptRequest::Failure));
    pdu.schedule_delivery_time = time("nonsense12345678");
    assert_eq!(read_submit(&pdu, now()), Err(CommandStatus::EsmeRinvsched));
    pdu.schedule_delivery_time = time("000200000000000R");
    assert_eq!(read_submit(&pdu, now()), Err(CommandStatus::EsmeRinvsched));
}

#[test]
fn absolute_times_with_offsets() {
    // 12:00:00.4 local, 8 quarter hours (2 h) ahead of UTC: 10:00:00.4 UTC.
    let at = parse_time("260101120000408+", now()).unwrap().unwrap();
    assert_eq!(at, now().plus_millis(10 * 3_600_000 + 400));
    let at = parse_time("260101120000008-", now()).unwrap().unwrap();
    assert_eq!(at, now().plus_millis(14 * 3_600_000));
    assert_eq!(parse_time("", now()), Ok(None));
    assert!(parse_time("261301120000008-", now()).is_err());
    assert!(parse_time("26010112000000+", now()).is_err());
    assert!(parse_time("260101120000049+", now()).is_err());
    assert!(parse_time("260101120000000X", now()).is_err());
}
