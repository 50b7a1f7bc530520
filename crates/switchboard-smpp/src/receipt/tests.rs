//! Tests of the receipt-text parser on the vendor variants seen in the field.

use super::*;

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[test]
fn standard_form() {
    let r = parse_receipt_text(
        "id:0123456789 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 \
         text:Hello there",
    );
    assert_eq!(
        r,
        ReceiptText {
            id: s("0123456789"),
            sub: s("001"),
            dlvrd: s("001"),
            submit_date: s("2401011200"),
            done_date: s("2401011201"),
            stat: s("DELIVRD"),
            err: s("000"),
            text: s("Hello there"),
        }
    );
    assert!(r.is_receipt());
}

#[test]
fn keys_in_any_case_with_underscores_and_spaces() {
    let r = parse_receipt_text(
        "ID : 1A2B3C  SUB:1 DLVRD:0 Submit_Date:240101120000 DONE_DATE : 240101120100 Stat : UNDELIV Err:  034 Text:",
    );
    assert_eq!(r.id, s("1A2B3C"));
    assert_eq!(r.sub, s("1"));
    assert_eq!(r.submit_date, s("240101120000"));
    assert_eq!(r.done_date, s("240101120100"));
    assert_eq!(r.stat, s("UNDELIV"));
    assert_eq!(r.err, s("034"));
    assert_eq!(r.text, s(""));
}

#[test]
fn joined_date_keys_and_fields_in_another_order() {
    let r = parse_receipt_text("stat:EXPIRED submitdate:2401011200 donedate:2401021200 id:42 err:001");
    assert_eq!((r.id, r.stat, r.err), (s("42"), s("EXPIRED"), s("001")));
    assert_eq!((r.submit_date, r.done_date), (s("2401011200"), s("2401021200")));
    assert_eq!(r.text, None);
}

#[test]
fn missing_fields() {
    let r = parse_receipt_text("id:77 stat:DELIVRD");
    assert!(r.is_receipt());
    assert_eq!((r.sub, r.dlvrd, r.err, r.text), (None, None, None, None));
    assert!(!parse_receipt_text("stat:DELIVRD err:000").is_receipt());
    assert!(!parse_receipt_text("id:42 hello").is_receipt());
    assert!(!parse_receipt_text("id: stat:DELIVRD").is_receipt());
}

#[test]
fn text_runs_to_the_end_even_with_keys_inside() {
    let r = parse_receipt_text("id:5 stat:REJECTD err:0 text:your id: 9 stat: fine, ok");
    assert_eq!(r.id, s("5"));
    assert_eq!(r.stat, s("REJECTD"));
    assert_eq!(r.text, s("your id: 9 stat: fine, ok"));
}

#[test]
fn ordinary_messages_are_not_receipts() {
    for text in ["Hello, see you at 5:30", "My ID is 42", "stats: 3", "", "valid:1 status:ok", "rid:1 stat:DELIVRD"] {
        assert!(!parse_receipt_text(text).is_receipt(), "{text}");
    }
}

#[test]
fn non_ascii_text_is_kept_whole() {
    let r = parse_receipt_text("id:9 stat:DELIVRD err:000 text:Grüße €");
    assert_eq!(r.text, s("Grüße €"));
}

#[test]
fn stat_values() {
    use ReceiptStatus::*;
    for (stat, state) in [
        ("DELIVRD", ReceiptState::Final(Delivered)),
        ("delivered", ReceiptState::Final(Delivered)),
        ("UNDELIV", ReceiptState::Final(Undelivered)),
        ("UNDELIVERABLE", ReceiptState::Final(Undelivered)),
        ("EXPIRED", ReceiptState::Final(Undelivered)),
        ("DELETED", ReceiptState::Final(Undelivered)),
        ("UNKNOWN", ReceiptState::Final(Undelivered)),
        ("REJECTD", ReceiptState::Final(Failed)),
        ("REJECTED", ReceiptState::Final(Failed)),
        ("ENROUTE", ReceiptState::Pending),
        ("ACCEPTD", ReceiptState::Pending),
        ("WHATEVER", ReceiptState::Unknown),
    ] {
        assert_eq!(stat_state(stat), state, "{stat}");
    }
}

#[test]
fn message_state_values() {
    assert_eq!(message_state(2), ReceiptState::Final(ReceiptStatus::Delivered));
    assert_eq!(message_state(5), ReceiptState::Final(ReceiptStatus::Undelivered));
    assert_eq!(message_state(8), ReceiptState::Final(ReceiptStatus::Failed));
    assert_eq!(message_state(1), ReceiptState::Pending);
    assert_eq!(message_state(9), ReceiptState::Unknown);
    assert_eq!(message_state_name(2), "DELIVRD");
}

#[test]
fn err_codes() {
    assert_eq!(err_type(None), None);
    assert_eq!(err_type(Some("000")), None);
    assert_eq!(err_type(Some("0")), None);
    assert_eq!(err_type(Some("")), None);
    assert_eq!(err_type(Some("001")), Some(ErrorType::Unknown));
    assert_eq!(err_type(Some("0x0B")), Some(ErrorType::Unknown));
}

#[test]
fn written_receipts_read_back() {
    let written = ReceiptText {
        id: Some("msg_abc".into()),
        sub: Some("001".into()),
        dlvrd: Some("001".into()),
        submit_date: Some("2601011200".into()),
        done_date: Some("2601011201".into()),
        stat: Some("DELIVRD".into()),
        err: Some("000".into()),
        text: Some("Hello: world".into()),
    };
    let text = written.write();
    assert_eq!(
        text,
        "id:msg_abc sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:Hello: world"
    );
    assert_eq!(parse_receipt_text(&text), written);
}
