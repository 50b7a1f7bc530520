//! The SMPP upstream against the fake SMSC, over real loopback TCP.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_domain::{AccountId, Encoding, MessageId, MessageKind, Msisdn, SenderId};
use switchboard_provider::{
    EventReceiver, OutboundMessage, Provider, ProviderError, ProviderEvent, Receipt, ReceiptStatus, Report, Submission,
    event_channel,
};
use switchboard_smpp::testing::{FakeSmsc, FakeSmscOptions, IdFormat, ReceiptOptions, ReceiptTiming};
use switchboard_smpp::{BindMode, MsgIdFormat, SmppConfig, SmppUpstream};
use tokio::sync::mpsc::UnboundedReceiver;

mod acks;
mod inbound;
mod tls;

fn config_for(smsc: &FakeSmsc) -> SmppConfig {
    SmppConfig {
        reconnect_min_ms: 50,
        reconnect_max_ms: 200,
        response_timeout_ms: 3_000,
        ..SmppConfig::new("test-smsc", "127.0.0.1", smsc.port(), "switchboard", "secret")
    }
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

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The upstream, bound, with the events it reports, each acknowledged as stored as it is read
/// (as the core does after its commit).
async fn started(config: SmppConfig) -> (Arc<SmppUpstream>, UnboundedReceiver<ProviderEvent>) {
    let (sink, mut reports) = event_channel();
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(report) = reports.recv().await {
            // Each bind says it is ready, and each part of a long message is reported as it is
            // taken; the tests read what the SMSC sent.
            if !matches!(report.event, ProviderEvent::Ready { .. } | ProviderEvent::PartSent { .. }) {
                let _ = tx.send(report.event);
            }
            report.ack.stored();
        }
    });
    let upstream = SmppUpstream::start(config, sink);
    wait_until("bound", || upstream.is_bound()).await;
    (upstream, events)
}

/// The upstream, bound, with the raw reports, which the test acknowledges itself.
pub(crate) async fn started_raw(config: SmppConfig) -> (Arc<SmppUpstream>, EventReceiver) {
    let (sink, reports) = event_channel();
    let upstream = SmppUpstream::start(config, sink);
    wait_until("bound", || upstream.is_bound()).await;
    (upstream, reports)
}

/// The next report of something the SMSC sent (a bind's readiness is passed over, and the
/// parts of long messages taken are acknowledged as stored).
pub(crate) async fn next_report(reports: &mut EventReceiver) -> Report {
    loop {
        let report = tokio::time::timeout(Duration::from_secs(10), reports.recv())
            .await
            .expect("a report in time")
            .expect("a report");
        match report.event {
            ProviderEvent::Ready { .. } => {}
            ProviderEvent::PartSent { .. } => report.ack.stored(),
            _ => return report,
        }
    }
}

async fn next_receipt(events: &mut UnboundedReceiver<ProviderEvent>) -> Receipt {
    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        Ok(Some(ProviderEvent::Receipt(r))) => r,
        other => panic!("expected a receipt, got {other:?}"),
    }
}

fn detail(upstream: &SmppUpstream) -> String {
    upstream.status()[0].detail.clone().unwrap_or_default()
}

#[tokio::test]
async fn binds_sends_and_reports_status() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, _events) = started(config_for(&smsc)).await;
    let submission = upstream.send(&message("hello", Encoding::Gsm7)).await.unwrap();
    let recorded = smsc.submits();
    assert_eq!(recorded.len(), 1);
    let sent = &recorded[0];
    assert_eq!((sent.destination.as_str(), sent.source.as_str()), ("447700900123", "18005550100"));
    assert_eq!((sent.source_ton, sent.source_npi, sent.esm_class, sent.data_coding), (1, 1, 0, 0));
    assert_eq!(sent.registered_delivery, 1);
    assert_eq!(sent.short_message, b"hello");
    // The fake writes decimal ids; `as_is` keeps them.
    let id = sent.message_id.clone().unwrap();
    assert_eq!(submission, Submission { provider_message_id: id.clone(), parts: vec![id] });

    let status = &upstream.status()[0];
    assert_eq!((status.name.as_str(), status.kind.as_str()), ("test-smsc", "smpp"));
    assert!(status.connected);
    assert_eq!((status.window, status.sent, status.failed, status.in_flight), (10, 1, 0, 0));
    assert_eq!(status.detail.as_deref(), Some(format!("bound to 127.0.0.1:{}", smsc.port()).as_str()));
    assert_eq!(smsc.bind_count(), 1);
    upstream.shutdown().await;
}

#[tokio::test]
async fn rebinds_after_the_smsc_drops_the_connection() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let config = SmppConfig { reconnect_min_ms: 300, reconnect_max_ms: 600, ..config_for(&smsc) };
    let (upstream, _events) = started(config).await;
    upstream.send(&message("before", Encoding::Gsm7)).await.unwrap();

    smsc.drop_connections();
    wait_until("the drop is seen", || !upstream.is_bound()).await;
    let err: ProviderError = upstream.send(&message("meanwhile", Encoding::Gsm7)).await.unwrap_err();
    assert!(err.unavailable && err.retryable, "{err}");
    let status = &upstream.status()[0];
    assert!(!status.connected);
    assert!(status.detail.as_deref().unwrap().contains("dropped"), "{status:?}");

    wait_until("bound again", || upstream.is_bound()).await;
    assert_eq!(smsc.bind_count(), 2);
    upstream.send(&message("after", Encoding::Gsm7)).await.unwrap();
    assert_eq!(upstream.status()[0].failed, 1);
    upstream.shutdown().await;
}

#[tokio::test]
async fn a_connection_lost_before_the_answer_is_unavailable_then_it_recovers() {
    let options = FakeSmscOptions { drop_after_submits: Some(1), ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let (upstream, _events) = started(config_for(&smsc)).await;
    upstream.send(&message("one", Encoding::Gsm7)).await.unwrap();
    let err = upstream.send(&message("two", Encoding::Gsm7)).await.unwrap_err();
    assert!(err.unavailable, "{err}");
    assert!(err.message.contains("may or may not"), "{err}");
    wait_until("bound again", || smsc.bind_count() == 2 && upstream.is_bound()).await;
    upstream.send(&message("three", Encoding::Gsm7)).await.unwrap();
    assert_eq!(smsc.submit_count(), 3);
    upstream.shutdown().await;
}

#[tokio::test]
async fn no_answer_in_time_is_unavailable() {
    let options = FakeSmscOptions { answer_delay: Duration::from_millis(600), ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let config = SmppConfig { response_timeout_ms: 150, ..config_for(&smsc) };
    let (upstream, _events) = started(config).await;
    let err = upstream.send(&message("slow", Encoding::Gsm7)).await.unwrap_err();
    assert!(err.unavailable, "{err}");
    assert!(err.message.contains("within 150 ms") && err.message.contains("may or may not"), "{err}");
    upstream.shutdown().await;
}

#[tokio::test]
async fn the_window_is_never_exceeded() {
    let options = FakeSmscOptions { answer_delay: Duration::from_millis(20), ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let config = SmppConfig { window: 4, ..config_for(&smsc) };
    let (upstream, _events) = started(config).await;
    let sends = (0..50).map(|i| {
        let upstream = upstream.clone();
        tokio::spawn(async move { upstream.send(&message(&format!("message {i}"), Encoding::Gsm7)).await })
    });
    let results = futures_join(sends.collect()).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(smsc.submit_count(), 50);
    let seen = smsc.max_in_flight();
    assert!(seen <= 4, "the SMSC saw {seen} in flight");
    assert!(seen >= 2, "sends did not overlap ({seen})");
    let status = &upstream.status()[0];
    assert_eq!((status.sent, status.in_flight, status.window), (50, 0, 4));
    upstream.shutdown().await;
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_throttled_part_goes_again_at_the_bind_pace() {
    // The second part of a two-part message is throttled twice: it is sent again, alone, after
    // the pause, and the first part is not sent again.
    let options = FakeSmscOptions { quota_per_second: Some(1), ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let config = SmppConfig { throttling_sleep_ms: 300, ..config_for(&smsc) };
    let (upstream, _events) = started(config).await;
    let submission = upstream.send(&message(&"z".repeat(200), Encoding::Gsm7)).await.unwrap();
    assert_eq!(submission.parts.len(), 2);
    let submits = smsc.submits();
    let taken: Vec<_> = submits.iter().filter(|s| s.message_id.is_some()).collect();
    assert_eq!(taken.len(), 2, "each part taken once");
    assert_eq!(submits.iter().filter(|s| s.short_message == taken[0].short_message).count(), 1);
    let status = &upstream.status()[0];
    assert!(status.throttled >= 1, "{status:?}");
    assert!(status.rate_per_second.is_some_and(|r| r < 2.0), "{status:?}");
    assert_eq!((status.sent, status.failed), (1, 0));
    upstream.shutdown().await;
}

#[tokio::test]
async fn throttling_past_its_wait_is_unavailable_and_uses_no_attempt() {
    let options = FakeSmscOptions { throttle_first: 1000, ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let config = SmppConfig { throttling_sleep_ms: 50, throttled_wait_ms: 300, ..config_for(&smsc) };
    let (upstream, _events) = started(config).await;
    let err = upstream.send(&message("first", Encoding::Gsm7)).await.unwrap_err();
    // Either the last answer was a throttling past the wait, or the bind's pace, slowed by
    // the throttling, had no turn for it in time.
    assert!(err.retryable && err.unavailable, "{err}");
    assert!(err.message.contains("ESME_RTHROTTLED (0x00000058)") || err.message.contains("no turn"), "{err}");
    assert!(smsc.submit_count() >= 2, "sent again before giving up");
    upstream.shutdown().await;
}

#[tokio::test]
async fn rate_cap_spaces_sends() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let config = SmppConfig { max_per_second: Some(50), ..config_for(&smsc) };
    let (upstream, _events) = started(config).await;
    let start = Instant::now();
    let sends = (0..11).map(|_| {
        let upstream = upstream.clone();
        tokio::spawn(async move { upstream.send(&message("x", Encoding::Gsm7)).await })
    });
    assert!(futures_join(sends.collect()).await.iter().all(Result::is_ok));
    // 11 sends at 50 a second: the last goes 200 ms after the first.
    assert!(start.elapsed() >= Duration::from_millis(190), "{:?}", start.elapsed());
    upstream.shutdown().await;
}

fn udh(part: &[u8]) -> [u8; 6] {
    part[..6].try_into().unwrap()
}

#[tokio::test]
async fn long_gsm7_text_goes_in_parts_without_splitting_an_escape() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, _events) = started(config_for(&smsc)).await;
    // `€` (escape + 0x65) sits across the 153-septet boundary.
    let text = format!("{}€{}", "a".repeat(152), "{b}".repeat(49));
    assert_eq!(text.chars().count(), 300);
    let submission = upstream.send(&message(&text, Encoding::Gsm7)).await.unwrap();
    let parts = smsc.submits();
    assert_eq!(parts.len(), 3);
    let reference = udh(&parts[0].short_message)[3];
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part.esm_class & 0x40, 0x40, "UDHI");
        assert_eq!(part.data_coding, 0);
        assert_eq!(udh(&part.short_message), [0x05, 0x00, 0x03, reference, 3, i as u8 + 1]);
        assert!(part.short_message.len() - 6 <= 153);
    }
    assert_eq!(parts[0].short_message.len() - 6, 152);
    assert_eq!(&parts[1].short_message[6..8], &[0x1b, 0x65]);
    // Every part's payload, joined, is the text.
    let payload: Vec<u8> = parts.iter().flat_map(|p| p.short_message[6..].to_vec()).collect();
    assert_eq!(switchboard_smpp::text::decode_gsm7(&payload), text);
    let ids: Vec<String> = parts.iter().map(|p| p.message_id.clone().unwrap()).collect();
    assert_eq!(submission.parts, ids);
    assert_eq!(submission.provider_message_id, ids[0]);
    upstream.shutdown().await;
}

#[tokio::test]
async fn long_ucs2_text_goes_in_parts_without_splitting_a_surrogate_pair() {
    let smsc = FakeSmsc::start(FakeSmscOptions { id_format: IdFormat::Hex, ..FakeSmscOptions::default() }).await;
    let config = SmppConfig { msg_id_format: MsgIdFormat::SubmitHexReceiptDecimal, ..config_for(&smsc) };
    let (upstream, _events) = started(config).await;
    // An emoji (a surrogate pair) sits across the 67-unit boundary.
    let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(33));
    assert_eq!(text.chars().count(), 100);
    let submission = upstream.send(&message(&text, Encoding::Ucs2)).await.unwrap();
    let parts = smsc.submits();
    assert_eq!(parts.len(), 2);
    let reference = udh(&parts[0].short_message)[3];
    for (i, part) in parts.iter().enumerate() {
        assert_eq!((part.esm_class & 0x40, part.data_coding), (0x40, 8));
        assert_eq!(udh(&part.short_message), [0x05, 0x00, 0x03, reference, 2, i as u8 + 1]);
    }
    assert_eq!(parts[0].short_message.len() - 6, 132);
    assert_eq!(&parts[1].short_message[6..10], &[0xd8, 0x3d, 0xde, 0x00]);
    // Hex ids from the SMSC come back in the canonical (decimal) form.
    let ids: Vec<String> =
        parts.iter().map(|p| u64::from_str_radix(p.message_id.as_deref().unwrap(), 16).unwrap().to_string()).collect();
    assert_eq!(submission.parts, ids);
    upstream.shutdown().await;
}

#[tokio::test]
async fn the_reference_is_the_same_on_every_attempt() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, _events) = started(config_for(&smsc)).await;
    let first = message(&"x".repeat(200), Encoding::Gsm7);
    let second = OutboundMessage { attempt: 2, ..first.clone() };
    upstream.send(&first).await.unwrap();
    upstream.send(&second).await.unwrap();
    let parts = smsc.submits();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[0].short_message, parts[2].short_message);
    upstream.shutdown().await;
}

async fn receipts_case(
    id_format: IdFormat,
    receipt_ids: IdFormat,
    timing: ReceiptTiming,
    with_tlv: bool,
    msg_id_format: MsgIdFormat,
) {
    let receipts = ReceiptOptions { timing, id_format: receipt_ids, with_tlv };
    let smsc =
        FakeSmsc::start(FakeSmscOptions { id_format, receipts: Some(receipts), ..FakeSmscOptions::default() }).await;
    let (upstream, mut events) = started(SmppConfig { msg_id_format, ..config_for(&smsc) }).await;
    let submission = upstream.send(&message(&"z".repeat(200), Encoding::Gsm7)).await.unwrap();
    assert_eq!(submission.parts.len(), 2);
    let mut refs = HashSet::new();
    for _ in 0..2 {
        let r = next_receipt(&mut events).await;
        assert_eq!((r.status, r.error_type), (ReceiptStatus::Delivered, None));
        refs.insert(r.provider_ref);
    }
    let expected: HashSet<String> = submission.parts.iter().cloned().collect();
    assert_eq!(refs, expected, "{id_format:?} {receipt_ids:?} {timing:?} tlv {with_tlv} {msg_id_format:?}");
    upstream.shutdown().await;
}

#[tokio::test]
async fn receipts_name_the_parts_whatever_the_id_bases_and_order() {
    use IdFormat::{Decimal, Hex};
    use MsgIdFormat::*;
    use ReceiptTiming::{AfterResponse, BeforeResponse};
    receipts_case(Hex, Decimal, BeforeResponse, false, SubmitHexReceiptDecimal).await;
    receipts_case(Hex, Decimal, AfterResponse, false, SubmitHexReceiptDecimal).await;
    receipts_case(Decimal, Hex, BeforeResponse, false, SubmitDecimalReceiptHex).await;
    receipts_case(Decimal, Hex, AfterResponse, false, SubmitDecimalReceiptHex).await;
    receipts_case(Hex, Hex, AfterResponse, false, AsIs).await;
    receipts_case(Decimal, Decimal, BeforeResponse, false, AsIs).await;
    // The TLV holds the id as submitted; the text's `id:` is then not needed.
    receipts_case(Hex, Decimal, AfterResponse, true, SubmitHexReceiptDecimal).await;
}

#[tokio::test]
async fn inbound_deliver_sm_becomes_an_inbound_event() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, mut events) = started(config_for(&smsc)).await;
    assert!(smsc.inject_text("+447700900123", "+18005550100", "Hello € {there}"));
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap();
    let ProviderEvent::Inbound(inbound) = event else { panic!("{event:?}") };
    assert_eq!(inbound.from.as_str(), "+447700900123");
    assert_eq!(inbound.to.as_str(), "+18005550100");
    assert_eq!(inbound.body.as_deref(), Some("Hello € {there}"));
    upstream.shutdown().await;
}

#[tokio::test]
async fn transmitter_and_receiver_sessions() {
    let receipts = ReceiptOptions::default();
    let smsc = FakeSmsc::start(FakeSmscOptions { receipts: Some(receipts), ..FakeSmscOptions::default() }).await;
    let config = SmppConfig { bind: BindMode::TransmitterReceiver, ..config_for(&smsc) };
    let (upstream, mut events) = started(config).await;
    wait_until("both bound", || smsc.bind_count() == 2).await;
    wait_until("status shows both", || detail(&upstream).starts_with("bound to") && !detail(&upstream).contains(';'))
        .await;
    let submission = upstream.send(&message("hi", Encoding::Gsm7)).await.unwrap();
    let receipt = next_receipt(&mut events).await;
    assert_eq!(receipt.provider_ref, submission.provider_message_id);
    assert!(smsc.inject_text("+447700900123", "+18005550100", "reply"));
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap();
    assert!(matches!(event, ProviderEvent::Inbound(_)), "{event:?}");
    upstream.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_keep_it_unbound_with_the_reason() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let config = SmppConfig { password: "wrong".into(), ..config_for(&smsc) };
    let (sink, _events) = event_channel();
    let upstream = SmppUpstream::start(config, sink);
    wait_until("the refusal shows", || detail(&upstream).contains("ESME_RINVPASWD")).await;
    let status = &upstream.status()[0];
    assert!(!status.connected, "{status:?}");
    let err = upstream.send(&message("hi", Encoding::Gsm7)).await.unwrap_err();
    assert!(err.unavailable, "{err}");
    assert!(err.message.contains("ESME_RINVPASWD"), "{err}");
    assert_eq!(smsc.bind_count(), 0);
    assert_eq!(smsc.submit_count(), 0);
    upstream.shutdown().await;
}

#[tokio::test]
async fn invalid_configuration_never_connects() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let config = SmppConfig { password: "far-too-long".into(), ..config_for(&smsc) };
    let (sink, _events) = event_channel();
    let upstream = SmppUpstream::start(config, sink);
    assert!(detail(&upstream).contains("invalid configuration"), "{}", detail(&upstream));
    assert!(upstream.send(&message("hi", Encoding::Gsm7)).await.unwrap_err().unavailable);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(smsc.connection_count(), 0);
}

#[tokio::test]
async fn shutdown_unbinds() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, _events) = started(config_for(&smsc)).await;
    assert_eq!(smsc.connection_count(), 1);
    upstream.shutdown().await;
    assert!(!upstream.is_bound());
    assert_eq!(smsc.unbind_count(), 1);
    wait_until("the SMSC sees the connection close", || smsc.connection_count() == 0).await;
    assert!(upstream.send(&message("late", Encoding::Gsm7)).await.unwrap_err().unavailable);
    // No rebind after shutdown.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smsc.bind_count(), 1);
}

#[tokio::test]
async fn many_sends_in_a_row() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let config = SmppConfig { window: 64, ..config_for(&smsc) };
    let (upstream, _events) = started(config).await;
    let total = 4_000;
    let start = Instant::now();
    let workers = (0..64).map(|_| {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            for _ in 0..total / 64 {
                upstream.send(&message("load", Encoding::Gsm7)).await.unwrap();
            }
        })
    });
    futures_join(workers.collect()).await;
    let elapsed = start.elapsed();
    let sent = (total / 64) * 64;
    assert_eq!(smsc.submit_count(), sent);
    println!("{sent} submissions in {elapsed:?} ({:.0}/s)", sent as f64 / elapsed.as_secs_f64());
    upstream.shutdown().await;
}

#[tokio::test]
async fn an_unanswered_enquire_link_drops_the_session_and_it_rebinds() {
    let options = FakeSmscOptions { answer_enquire_link: false, ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let config = SmppConfig {
        enquire_link_secs: 1,
        response_timeout_ms: 200,
        reconnect_min_ms: 400,
        reconnect_max_ms: 800,
        ..config_for(&smsc)
    };
    let (upstream, _events) = started(config).await;
    wait_until("the keep-alive fails", || detail(&upstream).contains("enquire_link")).await;
    assert!(!upstream.is_bound());
    wait_until("bound again", || upstream.is_bound()).await;
    assert_eq!(smsc.bind_count(), 2);
    upstream.shutdown().await;
}

#[tokio::test]
async fn an_unbind_from_the_smsc_is_answered_and_it_rebinds() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, _events) =
        started(SmppConfig { reconnect_min_ms: 300, reconnect_max_ms: 600, ..config_for(&smsc) }).await;
    assert_eq!(smsc.unbind_sessions(), 1);
    wait_until("the unbind is seen", || detail(&upstream).contains("unbound")).await;
    assert!(upstream.send(&message("meanwhile", Encoding::Gsm7)).await.unwrap_err().unavailable);
    wait_until("bound again", || upstream.is_bound()).await;
    upstream.send(&message("after", Encoding::Gsm7)).await.unwrap();
    upstream.shutdown().await;
}

/// Many callers at once through a small window, with answers as fast as the SMSC can write them:
/// every send goes through without a stall, and the window holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_load_through_a_small_window_never_stalls() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    // The default keep-alive (30 s): a send stuck until the next enquire_link would show.
    let config = SmppConfig { window: 10, ..config_for(&smsc) };
    assert_eq!(config.enquire_link_secs, 30);
    let (upstream, _events) = started(config).await;
    let (total, callers) = (20_000, 512);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most_in_flight = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = tokio::spawn({
        let (upstream, most_in_flight) = (upstream.clone(), most_in_flight.clone());
        async move {
            loop {
                let now = upstream.status()[0].in_flight;
                most_in_flight.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let start = Instant::now();
    let workers = (0..callers).map(|_| {
        let (upstream, next) = (upstream.clone(), next.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                if let Err(e) = upstream.send(&message("load", Encoding::Gsm7)).await {
                    failures.push(e.to_string());
                }
            }
            failures
        })
    });
    let failures: Vec<String> = tokio::time::timeout(Duration::from_secs(120), futures_join(workers.collect()))
        .await
        .expect("20,000 sends within 2 minutes")
        .into_iter()
        .flatten()
        .collect();
    let elapsed = start.elapsed();
    watcher.abort();
    assert!(failures.is_empty(), "{} sends failed, the first: {}", failures.len(), failures[0]);
    assert_eq!(smsc.submit_count(), total);
    let status = &upstream.status()[0];
    assert_eq!((status.sent, status.failed, status.in_flight), (total as u64, 0, 0));
    let seen = smsc.max_in_flight();
    assert!(seen <= 10, "the SMSC saw {seen} in flight");
    let most = most_in_flight.load(std::sync::atomic::Ordering::Relaxed);
    assert!(most <= 10, "{most} submissions were in flight at once");
    println!(
        "{total} sends from {callers} callers through a window of 10 in {elapsed:?} ({:.0}/s)",
        total as f64 / elapsed.as_secs_f64()
    );
    upstream.shutdown().await;
}

#[tokio::test]
async fn parts_taken_at_an_earlier_attempt_are_not_sent_again() {
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let (upstream, _events) = started(config_for(&smsc)).await;
    let long = message(&"w".repeat(300), Encoding::Gsm7);
    let again = OutboundMessage { attempt: 2, sent_parts: vec![(1, "earlier-1".into())], ..long };
    let submission = upstream.send(&again).await.unwrap();
    assert_eq!(submission.parts.len(), 2);
    assert_eq!(submission.parts[0], "earlier-1");
    assert_eq!(submission.provider_message_id, "earlier-1");
    let submits = smsc.submits();
    assert_eq!(submits.len(), 1, "only the second part goes");
    assert_eq!(submits[0].short_message[5], 2, "its header names part 2");
    upstream.shutdown().await;
}

#[tokio::test]
async fn a_send_with_no_turn_in_time_waits_in_the_queue_unsent() {
    // Two a second, and a send may wait 300 ms for its turn: of six sent at once, the first
    // goes and the ones whose turn would come too late go back unsent, as unavailable.
    let smsc = FakeSmsc::start(FakeSmscOptions::default()).await;
    let config = SmppConfig { max_per_second: Some(2), throttled_wait_ms: 300, ..config_for(&smsc) };
    let (upstream, _events) = started(config).await;
    let sends: Vec<_> = (0..6)
        .map(|i| {
            let upstream = upstream.clone();
            tokio::spawn(async move { upstream.send(&message(&format!("m{i}"), Encoding::Gsm7)).await })
        })
        .collect();
    let results = futures_join(sends).await;
    let taken = results.iter().filter(|r| r.is_ok()).count();
    assert!((1..6).contains(&taken), "{results:?}");
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(e.unavailable, "{e}");
    }
    assert_eq!(smsc.submit_count(), taken, "nothing sent for those that went back");
    upstream.shutdown().await;
}
