//! The built-in simulator: a provider with deterministic outcomes for documented test numbers.
//!
//! Every recipient not listed below is accepted at once and, after the configured receipt
//! delay, each of its parts is reported `delivered`. The test numbers are:
//!
//! | recipient      | outcome                                                        |
//! |----------------|----------------------------------------------------------------|
//! | `+15550001001` | refused at submission, `invalid_destination`                   |
//! | `+15550001002` | refused, `destination_blocked`                                 |
//! | `+15550001003` | refused, `provider_error`                                      |
//! | `+15550001004` | refused, `routing_error`                                       |
//! | `+15550001005` | refused, `geographic_restriction`                              |
//! | `+15550001006` | refused, `service_restricted`                                  |
//! | `+15550001007` | refused, `invalid_content`                                     |
//! | `+15550001008` | refused, `invalid_sender`                                      |
//! | `+15550001009` | refused, `platform_error`                                      |
//! | `+15550001010` | refused, `unknown`                                             |
//! | `+15550001011` | refused, `opted_out` (the carrier reports the opt-out)         |
//! | `+15550002001` | accepted after the configured slow delay (2 s by default)     |
//! | `+15550002002` | a retryable `provider_error` on the first attempt, then accepted |
//! | `+15550002003` | a retryable `provider_error` on every attempt                  |
//! | `+155500030NN` | accepted; its last part's receipt is `failed` with error type NN (01–11, in the order above), the other parts `delivered` |
//! | `+155500040NN` | accepted; its last part's receipt is `undelivered` with error type NN, the other parts `delivered` |
//! | `+15550005001` | accepted; no receipt ever comes (the carrier stays silent)     |
//! | `+15550005002` | accepted; every part `delivered`, each receipt sent twice and the parts in reverse order |
//!
//! A submission's id is `sim-<message uuid>` and its parts are `sim-<message uuid>.<n>`, so a
//! message sent twice (a retry after a lost answer) keeps the same ids.
//!
//! The receipts it owes are kept in memory only, so a restart would lose them; instead, at
//! start the server reads back the parts it took that are still `sent` (their ids start with
//! [`ID_PREFIX`]) and hands them to [`Simulator::resume`], which sends their receipts at the
//! time they were due (at once if that has passed), with the same outcomes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_domain::{ErrorType, Msisdn, Timestamp};

use crate::{
    EventSink, OutboundMessage, Provider, ProviderError, ProviderEvent, Receipt, ReceiptStatus, Submission,
    UpstreamStatus, async_trait,
};

/// Test number: fails with `invalid_destination`.
pub const INVALID_DESTINATION: &str = "+15550001001";
/// Test number: accepted after the slow delay.
pub const SLOW: &str = "+15550002001";
/// Test number: retryable failure on the first attempt, then accepted.
pub const FLAKY: &str = "+15550002002";
/// Test number: retryable failure on every attempt.
pub const ALWAYS_RETRYABLE: &str = "+15550002003";
/// Test number: accepted, never a receipt.
pub const SILENT: &str = "+15550005001";
/// Test number: every receipt twice, parts in reverse order.
pub const DUPLICATE_RECEIPTS: &str = "+15550005002";

/// The documented test numbers above, as inclusive ranges of numbers of one length. They lie
/// in the fictional `555` exchange, which no numbering plan calls valid, so a destination
/// lookup must let them through explicitly (and nothing else of that exchange).
pub const TEST_RANGES: &[(&str, &str)] = &[
    ("+15550001001", "+15550001011"),
    ("+15550002001", "+15550002003"),
    ("+15550003001", "+15550003011"),
    ("+15550004001", "+15550004011"),
    ("+15550005001", "+15550005002"),
];

/// How every id the simulator gives (a message's and each part's) begins.
pub const ID_PREFIX: &str = "sim-";

/// A part that the simulator took earlier (before a restart) and that is still waiting for its
/// receipt, as read back from storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentPart {
    /// The part's id, as the simulator gave it (`sim-<message uuid>.<n>`).
    pub provider_ref: String,
    /// The message's recipient, which decides the receipt's outcome.
    pub recipient: Msisdn,
    /// Which part, from 1.
    pub part: u32,
    /// How many parts the message has.
    pub parts: u32,
    /// When the submission was recorded; the receipt is due the receipt delay after it.
    pub sent_at: Timestamp,
}

/// The test number whose last part's receipt is `failed` with `error_type`.
pub fn failed_receipt_number(error_type: ErrorType) -> String {
    format!("+155500030{:02}", code_of(error_type))
}

/// The test number whose last part's receipt is `undelivered` with `error_type`.
pub fn undelivered_receipt_number(error_type: ErrorType) -> String {
    format!("+155500040{:02}", code_of(error_type))
}

/// The two-digit code of an error type in the test numbers (its place in the table, from 1).
fn code_of(error_type: ErrorType) -> usize {
    ERROR_CODES.iter().position(|e| *e == error_type).map_or(10, |i| i + 1)
}

/// Error types by two-digit code, from 01.
const ERROR_CODES: [ErrorType; 11] = [
    ErrorType::InvalidDestination,
    ErrorType::DestinationBlocked,
    ErrorType::ProviderError,
    ErrorType::RoutingError,
    ErrorType::GeographicRestriction,
    ErrorType::ServiceRestricted,
    ErrorType::InvalidContent,
    ErrorType::InvalidSender,
    ErrorType::PlatformError,
    ErrorType::Unknown,
    ErrorType::OptedOut,
];

/// Settings of the simulator.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// How long the slow test number takes to answer.
    pub slow_delay: Duration,
    /// How long after a submission its receipts come.
    pub receipt_delay: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self { slow_delay: Duration::from_secs(2), receipt_delay: Duration::from_secs(1) }
    }
}

/// The simulator provider.
#[derive(Debug, Default)]
pub struct Simulator {
    config: SimulatorConfig,
    events: Option<EventSink>,
    sent: AtomicU64,
    failed: AtomicU64,
    name: Option<String>,
}

/// What the simulator's receipts say of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receipts {
    /// Every part delivered.
    Delivered,
    /// The last part ends this way; the others are delivered.
    LastPart(ReceiptStatus, ErrorType),
    /// None at all.
    Silent,
    /// Every part delivered, each twice, last part first.
    Duplicated,
}

impl Simulator {
    /// A simulator with these settings that sends no receipts.
    pub fn new(config: SimulatorConfig) -> Self {
        Self { config, events: None, sent: AtomicU64::new(0), failed: AtomicU64::new(0), name: None }
    }

    /// A simulator with these settings that sends its receipts to `events`.
    pub fn with_events(config: SimulatorConfig, events: EventSink) -> Self {
        Self { config, events: Some(events), sent: AtomicU64::new(0), failed: AtomicU64::new(0), name: None }
    }

    /// The same simulator under another name (its name in routes and status).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The fixed outcome of a number refused at submission, if the number is one.
    pub fn failure_for(recipient: &str) -> Option<ErrorType> {
        let code = recipient.strip_prefix("+155500010").filter(|c| c.len() == 2)?;
        error_for_code(code)
    }

    fn receipts_for(recipient: &str) -> Receipts {
        let receipt = |prefix: &str, status| {
            let code = recipient.strip_prefix(prefix).filter(|c| c.len() == 2)?;
            Some(Receipts::LastPart(status, error_for_code(code)?))
        };
        if let Some(r) = receipt("+155500030", ReceiptStatus::Failed) {
            return r;
        }
        if let Some(r) = receipt("+155500040", ReceiptStatus::Undelivered) {
            return r;
        }
        match recipient {
            SILENT => Receipts::Silent,
            DUPLICATE_RECEIPTS => Receipts::Duplicated,
            _ => Receipts::Delivered,
        }
    }

    /// What the receipt of part `index` (from 0) of `count` says under `plan`.
    fn receipt_of(plan: Receipts, provider_ref: String, index: usize, count: usize, at: Timestamp) -> Receipt {
        let (status, error_type) = match plan {
            Receipts::LastPart(status, error_type) if index + 1 == count => (status, Some(error_type)),
            _ => (ReceiptStatus::Delivered, None),
        };
        let description = error_type.map(|e| e.description().to_owned());
        Receipt { provider_ref, status, error_type, description, at }
    }

    /// Sends the receipts of a submission after the receipt delay.
    fn report(&self, to: &str, submission: &Submission) {
        let Some(events) = self.events.clone() else { return };
        let plan = Self::receipts_for(to);
        if plan == Receipts::Silent {
            return;
        }
        let parts = submission.parts.clone();
        let delay = self.config.receipt_delay;
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let at = Timestamp::now();
            let count = parts.len();
            let mut receipts: Vec<Receipt> = parts
                .into_iter()
                .enumerate()
                .map(|(i, provider_ref)| Self::receipt_of(plan, provider_ref, i, count, at))
                .collect();
            if plan == Receipts::Duplicated {
                receipts.reverse();
                receipts = receipts.into_iter().flat_map(|r| [r.clone(), r]).collect();
            }
            for r in receipts {
                // A closed channel means the server is stopping: the receipts are not stored
                // now, and the next start derives them again from the parts still `sent`.
                let _ = events.send(ProviderEvent::Receipt(r));
            }
        });
    }

    /// Sends the receipts still owed for parts the simulator took before a restart: each one at
    /// the receipt delay after its `sent_at` (at once if that has passed), with the outcome its
    /// recipient's test number sets (none for the silent number, two for the duplicating one).
    /// Returns how many receipts it will send. A receipt for a part that has meanwhile been
    /// settled changes nothing, so parts handed over twice (by two nodes) do no harm.
    pub fn resume(&self, parts: Vec<SentPart>) -> usize {
        let Some(events) = self.events.clone() else { return 0 };
        let now = Timestamp::now().millis();
        let delay = i64::try_from(self.config.receipt_delay.as_millis()).unwrap_or(i64::MAX);
        let start = tokio::time::Instant::now();
        let mut due: Vec<(tokio::time::Instant, Receipt)> = Vec::with_capacity(parts.len());
        for p in parts {
            if !p.provider_ref.starts_with(ID_PREFIX) {
                continue;
            }
            let plan = Self::receipts_for(p.recipient.as_str());
            if plan == Receipts::Silent {
                continue;
            }
            let wait = p.sent_at.millis().saturating_add(delay).saturating_sub(now).max(0);
            let when = start + Duration::from_millis(u64::try_from(wait).unwrap_or(0));
            let index = usize::try_from(p.part.max(1) - 1).unwrap_or(0);
            let count = usize::try_from(p.parts.max(p.part).max(1)).unwrap_or(1);
            let receipt = Self::receipt_of(plan, p.provider_ref, index, count, Timestamp::now());
            if plan == Receipts::Duplicated {
                due.push((when, receipt.clone()));
            }
            due.push((when, receipt));
        }
        due.sort_by_key(|(when, _)| *when);
        let count = due.len();
        if count > 0 {
            tokio::spawn(async move {
                for (when, mut receipt) in due {
                    tokio::time::sleep_until(when).await;
                    receipt.at = Timestamp::now();
                    if events.send(ProviderEvent::Receipt(receipt)).is_err() {
                        return;
                    }
                }
            });
        }
        count
    }
}

fn error_for_code(code: &str) -> Option<ErrorType> {
    let n: usize = code.parse().ok()?;
    ERROR_CODES.get(n.checked_sub(1)?).copied()
}

#[async_trait]
impl Provider for Simulator {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("simulator")
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Submission, ProviderError> {
        let result = self.submit(message).await;
        let counter = if result.is_ok() { &self.sent } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn status(&self) -> Vec<UpstreamStatus> {
        vec![UpstreamStatus {
            name: self.name().to_owned(),
            kind: "simulator".into(),
            connected: true,
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            ..UpstreamStatus::default()
        }]
    }
}

impl Simulator {
    async fn submit(&self, message: &OutboundMessage) -> Result<Submission, ProviderError> {
        let to = message.to.as_str();
        if let Some(error_type) = Self::failure_for(to) {
            return Err(ProviderError::permanent(error_type));
        }
        match to {
            SLOW => tokio::time::sleep(self.config.slow_delay).await,
            FLAKY if message.attempt <= 1 => {
                return Err(ProviderError::retryable(ErrorType::ProviderError, "simulated transient upstream failure"));
            }
            ALWAYS_RETRYABLE => {
                return Err(ProviderError::retryable(ErrorType::ProviderError, "simulated transient upstream failure"));
            }
            _ => {}
        }
        let id = format!("{ID_PREFIX}{}", message.id.as_uuid().simple());
        let parts = (1..=message.segments.max(1)).map(|n| format!("{id}.{n}")).collect();
        let submission = Submission { provider_message_id: id, parts };
        self.report(to, &submission);
        Ok(submission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Report;
    use switchboard_domain::{Encoding, MessageId, MessageKind, Msisdn, SenderId};

    fn msg(to: &str, attempt: u32) -> OutboundMessage {
        msg_of(to, attempt, 1)
    }

    #[test]
    fn every_test_number_lies_in_the_test_ranges() {
        let within = |n: &str| TEST_RANGES.iter().any(|(a, b)| n.len() == a.len() && *a <= n && n <= *b);
        let mut numbers: Vec<String> =
            [INVALID_DESTINATION, SLOW, FLAKY, ALWAYS_RETRYABLE, SILENT, DUPLICATE_RECEIPTS].map(String::from).into();
        numbers.extend((1..=11).map(|i| format!("+155500010{i:02}")));
        for e in ERROR_CODES {
            numbers.push(failed_receipt_number(e));
            numbers.push(undelivered_receipt_number(e));
        }
        for n in &numbers {
            assert!(within(n), "{n}");
        }
        for outside in ["+15550001000", "+15550001012", "+15550002004", "+15550005003", "+15550000001"] {
            assert!(!within(outside), "{outside}");
        }
    }

    fn msg_of(to: &str, attempt: u32, segments: u32) -> OutboundMessage {
        OutboundMessage {
            id: MessageId::new(),
            account_id: switchboard_domain::AccountId::new(),
            to: Msisdn::parse(to).unwrap(),
            from: SenderId::parse("+18005559876").unwrap(),
            kind: MessageKind::Sms,
            body: Some("hi".into()),
            media: Vec::new(),
            encoding: Encoding::Gsm7,
            segments,
            attempt,
            sent_parts: Vec::new(),
        }
    }

    #[tokio::test]
    async fn every_error_type_has_a_test_number() {
        let sim = Simulator::default();
        let mut seen = Vec::new();
        for n in 1..=11 {
            let to = format!("+155500010{n:02}");
            let err = sim.send(&msg(&to, 1)).await.unwrap_err();
            assert!(!err.retryable);
            seen.push(err.error_type);
        }
        for e in ErrorType::ALL {
            assert!(seen.contains(e), "{e} has no test number");
        }
        assert!(Simulator::failure_for("+15550001012").is_none());
        assert!(Simulator::failure_for("+18005551234").is_none());
    }

    #[tokio::test]
    async fn other_numbers_succeed_and_flaky_recovers() {
        let sim = Simulator::default();
        assert!(sim.send(&msg("+18005551234", 1)).await.is_ok());
        assert!(sim.send(&msg(FLAKY, 1)).await.unwrap_err().retryable);
        assert!(sim.send(&msg(FLAKY, 2)).await.is_ok());
        assert!(sim.send(&msg(ALWAYS_RETRYABLE, 5)).await.unwrap_err().retryable);
    }

    #[tokio::test]
    async fn slow_number_waits() {
        let sim = Simulator::new(SimulatorConfig { slow_delay: Duration::from_millis(50), ..Default::default() });
        let start = std::time::Instant::now();
        assert!(sim.send(&msg(SLOW, 1)).await.is_ok());
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    async fn receipts_of(to: &str, segments: u32) -> (Submission, Vec<Receipt>) {
        let (sink, mut rx) = crate::event_channel();
        let config = SimulatorConfig { receipt_delay: Duration::ZERO, ..Default::default() };
        let sim = Simulator::with_events(config, sink);
        let submission = sim.send(&msg_of(to, 1, segments)).await.unwrap();
        drop(sim);
        let mut out = Vec::new();
        while let Some(Report { event: ProviderEvent::Receipt(r), .. }) = rx.recv().await {
            out.push(r);
        }
        (submission, out)
    }

    fn sent_part(message: &str, to: &str, part: u32, parts: u32, sent_at: Timestamp) -> SentPart {
        SentPart {
            provider_ref: format!("{ID_PREFIX}{message}.{part}"),
            recipient: Msisdn::parse(to).unwrap(),
            part,
            parts,
            sent_at,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn resumed_parts_get_their_receipts_when_due_with_the_same_outcomes() {
        let (sink, mut rx) = crate::event_channel();
        let config = SimulatorConfig { receipt_delay: Duration::from_secs(60), ..Default::default() };
        let sim = Simulator::with_events(config, sink);
        let now = Timestamp::now().millis();
        let long_ago = Timestamp::from_millis(now - 120_000);
        let recently = Timestamp::from_millis(now - 30_000);
        let failed = failed_receipt_number(ErrorType::InvalidDestination);
        let parts = vec![
            // Due a minute ago: at once.
            sent_part("a", "+18005551234", 1, 1, long_ago),
            // Two parts whose last fails, due a minute ago.
            sent_part("b", &failed, 1, 2, long_ago),
            sent_part("b", &failed, 2, 2, long_ago),
            // Due in 30 s.
            sent_part("c", "+18005551234", 1, 1, recently),
            // Never a receipt.
            sent_part("d", SILENT, 1, 1, long_ago),
            // Twice.
            sent_part("e", DUPLICATE_RECEIPTS, 1, 1, long_ago),
            // Not the simulator's.
            SentPart { provider_ref: "4711".into(), ..sent_part("f", "+18005551234", 1, 1, long_ago) },
        ];
        assert_eq!(sim.resume(parts), 6);
        let start = tokio::time::Instant::now();
        let mut seen = Vec::new();
        for _ in 0..6 {
            let Some(Report { event: ProviderEvent::Receipt(r), .. }) = rx.recv().await else { panic!() };
            seen.push((r.provider_ref, r.status, r.error_type, start.elapsed() >= Duration::from_secs(29)));
        }
        let due_now = |r: &str| seen.iter().filter(|s| s.0 == r && !s.3).count();
        assert_eq!(due_now("sim-a.1"), 1);
        assert_eq!(due_now("sim-b.1"), 1);
        assert_eq!(due_now("sim-e.1"), 2);
        let b2 = seen.iter().find(|s| s.0 == "sim-b.2").unwrap();
        assert_eq!((b2.1, b2.2, b2.3), (ReceiptStatus::Failed, Some(ErrorType::InvalidDestination), false));
        let c = seen.iter().find(|s| s.0 == "sim-c.1").unwrap();
        assert_eq!((c.1, c.3), (ReceiptStatus::Delivered, true), "due 30 s later");
        assert!(seen.iter().filter(|s| s.0 != "sim-b.2").all(|s| s.1 == ReceiptStatus::Delivered && s.2.is_none()));
        drop(sim);
        assert!(rx.recv().await.is_none(), "nothing more: {seen:?}");
    }

    #[tokio::test]
    async fn every_part_is_reported_delivered() {
        let (submission, receipts) = receipts_of("+18005551234", 3).await;
        assert_eq!(submission.parts.len(), 3);
        let refs: Vec<_> = receipts.iter().map(|r| r.provider_ref.clone()).collect();
        assert_eq!(refs, submission.parts);
        assert!(receipts.iter().all(|r| r.status == ReceiptStatus::Delivered && r.error_type.is_none()));
    }

    #[tokio::test]
    async fn failure_numbers_fail_the_last_part_with_each_error_type() {
        for e in ErrorType::ALL {
            for (number, status) in [
                (failed_receipt_number(*e), ReceiptStatus::Failed),
                (undelivered_receipt_number(*e), ReceiptStatus::Undelivered),
            ] {
                let (_, receipts) = receipts_of(&number, 2).await;
                assert_eq!(receipts.len(), 2, "{number}");
                assert_eq!(receipts[0].status, ReceiptStatus::Delivered);
                assert_eq!((receipts[1].status, receipts[1].error_type), (status, Some(*e)), "{number}");
            }
        }
    }

    #[tokio::test]
    async fn silent_and_duplicate_numbers() {
        assert!(receipts_of(SILENT, 2).await.1.is_empty());
        let (submission, receipts) = receipts_of(DUPLICATE_RECEIPTS, 2).await;
        let refs: Vec<_> = receipts.iter().map(|r| r.provider_ref.as_str()).collect();
        let p = &submission.parts;
        assert_eq!(refs, [p[1].as_str(), p[1].as_str(), p[0].as_str(), p[0].as_str()]);
    }

    #[tokio::test]
    async fn ids_are_stable_across_attempts() {
        let sim = Simulator::default();
        let m = msg("+18005551234", 1);
        let again = OutboundMessage { attempt: 2, ..m.clone() };
        assert_eq!(sim.send(&m).await.unwrap(), sim.send(&again).await.unwrap());
    }
}
