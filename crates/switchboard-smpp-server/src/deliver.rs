//! Receipts and inbound messages to the account's binds as `deliver_sm`.
//!
//! The store keeps them queued (`Store::claim_smpp_deliveries`), written in the transaction of
//! the status change or the inbound message that causes them, so a restart loses none. Every
//! [`SmppServerConfig::deliver_poll`](crate::SmppServerConfig::deliver_poll), for each account
//! with a receiver or transceiver bind on this node, [`run`] looks (with a read) whether any
//! is due and, if so, claims as many as its binds have room for (each leased for the answer
//! timeout and a little more, so that no other node sends it meanwhile). Each goes to one of
//! the account's receiving binds, in turn, within that bind's `deliver_window`:
//!
//! - answered `ESME_ROK`: removed from the queue;
//! - answered otherwise, not answered within `deliver_timeout`, or its bind gone: it stays,
//!   and is sent again once its lease ends (to whichever bind receives then);
//! - waiting longer than `receipt_hold` since its status: given up (each minute).
//!
//! A receipt (`esm_class` 0x04) reads `id:<message id> sub:001 dlvrd:001|000 submit
//! date:YYMMDDhhmm done date:YYMMDDhhmm stat:<STAT> err:<NNN> text:<first 20 characters>` (UTC
//! dates) and carries the `receipted_message_id` and `message_state` TLVs. Its source is the
//! message's recipient and its destination the message's sender.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessagePayload, MessageState, Npi, Ton};
use rusmpp::{Command, CommandStatus};
use switchboard_core::smpp::BindInfo;
use switchboard_domain::{AccountId, Encoding, ErrorType, MessageStatus, Timestamp};
use switchboard_records::{MessageRecord, SmppDeliveryKind, SmppDeliveryRecord};
use switchboard_smpp::receipt::ReceiptText;
use switchboard_smpp::text;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::Shared;
use crate::session::Outbox;

/// How often queued `deliver_sm` past the hold time are given up.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// What a claim's lease adds to the answer timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// A bind that receives, as the deliverer uses it.
pub(crate) struct Receiver {
    pub(crate) info: Arc<BindInfo>,
    out: Outbox,
    sequence: Arc<AtomicU32>,
    waiting: Mutex<HashMap<u32, oneshot::Sender<CommandStatus>>>,
    slots: Semaphore,
}

impl Receiver {
    pub(crate) fn new(info: Arc<BindInfo>, out: Outbox, sequence: Arc<AtomicU32>, window: u32) -> Self {
        Receiver { info, out, sequence, waiting: Mutex::default(), slots: Semaphore::new(window.max(1) as usize) }
    }

    /// The ESME answered the request with this sequence number; whether it was one of ours.
    pub(crate) fn answered(&self, sequence: u32, status: CommandStatus) -> bool {
        let waiter = self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&sequence);
        match waiter {
            Some(w) => {
                let _ = w.send(status);
                true
            }
            None => false,
        }
    }

    /// Sends `pdu` and waits for its answer within `timeout`; `None` without one.
    async fn deliver(&self, pdu: DeliverSm, timeout: Duration) -> Option<CommandStatus> {
        let _slot = self.slots.acquire().await.ok()?;
        let sequence = next_sequence(&self.sequence);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).insert(sequence, tx);
        self.info.delivers.fetch_add(1, Ordering::Relaxed);
        if self.out.try_send(Some(Command::new(CommandStatus::EsmeRok, sequence, pdu))).is_err() {
            self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&sequence);
            return None;
        }
        let answer = tokio::time::timeout(timeout, rx).await.ok().and_then(Result::ok);
        if answer.is_none() {
            self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&sequence);
        }
        if answer == Some(CommandStatus::EsmeRok) {
            self.info.delivered.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    /// Gives up every answer still awaited (the bind ended).
    pub(crate) fn fail_all(&self) {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn room(&self) -> usize {
        self.slots.available_permits()
    }
}

/// The next sequence number of requests this side sends: 1 to 0x7FFFFFFF, then again.
pub(crate) fn next_sequence(sequence: &AtomicU32) -> u32 {
    let n = sequence.fetch_add(1, Ordering::Relaxed);
    (n % 0x7FFF_FFFF) + 1
}

/// The receiving binds of this node, by account.
#[derive(Default)]
pub(crate) struct Receivers {
    by_account: Mutex<HashMap<AccountId, Vec<Arc<Receiver>>>>,
    turn: AtomicUsize,
}

impl Receivers {
    pub(crate) fn add(&self, receiver: Arc<Receiver>) {
        let mut all = self.by_account.lock().unwrap_or_else(PoisonError::into_inner);
        all.entry(receiver.info.account).or_default().push(receiver);
    }

    pub(crate) fn remove(&self, account: AccountId, bind: u64) {
        let mut all = self.by_account.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = all.get_mut(&account) {
            list.retain(|r| r.info.id != bind);
            if list.is_empty() {
                all.remove(&account);
            }
        }
    }

    fn accounts(&self) -> Vec<(AccountId, usize)> {
        let all = self.by_account.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter().map(|(a, list)| (*a, list.iter().map(|r| r.room()).sum())).collect()
    }

    /// One of the account's receiving binds, in turn, preferring one with room.
    fn pick(&self, account: AccountId) -> Option<Arc<Receiver>> {
        let all = self.by_account.lock().unwrap_or_else(PoisonError::into_inner);
        let list = all.get(&account)?;
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        (0..list.len())
            .map(|i| &list[(start + i) % list.len()])
            .find(|r| r.room() > 0)
            .or_else(|| list.get(start % list.len()))
            .cloned()
    }
}

/// Delivers queued receipts and inbound messages until the server stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let config = &shared.config;
    let mut stopping = shared.stopping.clone();
    let mut tick = tokio::time::interval(config.deliver_poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = tokio::time::Instant::now();
    let mut sending = JoinSet::new();
    // Deliveries claimed and not yet settled, by account: a claim takes only what the binds
    // have room for beyond them, so none waits for a slot past its lease.
    let mut unsettled: HashMap<AccountId, usize> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::stopped(&mut stopping) => break,
        }
        while let Some(done) = sending.try_join_next() {
            if let Ok(account) = done
                && let Some(n) = unsettled.get_mut(&account)
            {
                *n = n.saturating_sub(1);
            }
        }
        unsettled.retain(|_, n| *n > 0);
        for (account, room) in shared.receivers.accounts() {
            let room = room.saturating_sub(unsettled.get(&account).copied().unwrap_or(0));
            if room == 0 {
                continue;
            }
            match shared.core.smpp_deliveries_due(account).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "SMPP deliveries could not be read");
                    continue;
                }
            }
            let lease = config.deliver_timeout + LEASE_MARGIN;
            let claimed = match shared.core.claim_smpp_deliveries(account, lease, room as u32).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "SMPP deliveries could not be claimed");
                    continue;
                }
            };
            *unsettled.entry(account).or_default() += claimed.len();
            for delivery in claimed {
                let shared = shared.clone();
                sending.spawn(async move {
                    deliver_one(shared, delivery).await;
                    account
                });
            }
        }
        if last_expiry.elapsed() >= EXPIRE_EVERY {
            last_expiry = tokio::time::Instant::now();
            match shared.core.expire_smpp_deliveries(config.receipt_hold).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(given_up = n, "SMPP deliveries waited past the hold time");
                    metrics::counter!("switchboard_smpp_deliveries_expired_total").increment(n);
                }
                Err(e) => tracing::warn!(error = %e, "SMPP deliveries could not be expired"),
            }
        }
    }
    sending.abort_all();
    while sending.join_next().await.is_some() {}
}

/// Sends one claimed `deliver_sm` and removes it once answered `ESME_ROK`.
async fn deliver_one(shared: Arc<Shared>, d: SmppDeliveryRecord) {
    let message = match shared.core.any_message(d.message_id).await {
        Ok(m) => m,
        Err(switchboard_core::AccessError::NotFound(_)) => {
            let _ = shared.core.remove_smpp_deliveries(&[d.id]).await;
            return;
        }
        Err(_) => return,
    };
    let pdu = match d.kind {
        SmppDeliveryKind::Receipt => receipt_pdu(&message, &d),
        SmppDeliveryKind::Inbound => inbound_pdu(&message),
    };
    let Some(receiver) = shared.receivers.pick(d.account_id) else { return };
    let answer = receiver.deliver(pdu, shared.config.deliver_timeout).await;
    let outcome = match answer {
        Some(CommandStatus::EsmeRok) => match shared.core.remove_smpp_deliveries(&[d.id]).await {
            Ok(_) => "delivered",
            Err(_) => "unrecorded",
        },
        other => {
            // Refused, or its bind ended: again after a pause that grows with the attempts
            // (one second per attempt, at most a minute), to whichever bind receives then.
            let delay = Duration::from_secs(u64::from(d.attempts).clamp(1, 60));
            let _ = shared.core.retry_smpp_delivery(d.id, delay).await;
            if other.is_some() { "refused" } else { "unanswered" }
        }
    };
    metrics::counter!("switchboard_smpp_delivers_total", "kind" => d.kind.as_str(), "outcome" => outcome).increment(1);
}

/// The receipt's `stat:` and `message_state` for a final status.
fn receipt_state(status: MessageStatus, error_type: Option<ErrorType>) -> (&'static str, MessageState) {
    match (status, error_type) {
        (MessageStatus::Delivered, _) => ("DELIVRD", MessageState::Delivered),
        (MessageStatus::Expired, _) => ("EXPIRED", MessageState::Expired),
        (MessageStatus::Canceled, _) => ("DELETED", MessageState::Deleted),
        (
            MessageStatus::Failed,
            Some(
                ErrorType::OptedOut
                | ErrorType::InvalidDestination
                | ErrorType::InvalidSender
                | ErrorType::DestinationBlocked
                | ErrorType::InvalidContent
                | ErrorType::GeographicRestriction
                | ErrorType::ServiceRestricted,
            ),
        ) => ("REJECTD", MessageState::Rejected),
        _ => ("UNDELIV", MessageState::Undeliverable),
    }
}

/// The receipt's `err:` for an error type (documented in docs/API.md).
pub fn err_code(error_type: Option<ErrorType>) -> &'static str {
    match error_type {
        None => "000",
        Some(ErrorType::Unknown) => "001",
        Some(ErrorType::PlatformError) => "002",
        Some(ErrorType::ProviderError) => "003",
        Some(ErrorType::InvalidDestination) => "004",
        Some(ErrorType::InvalidSender) => "005",
        Some(ErrorType::DestinationBlocked) => "006",
        Some(ErrorType::OptedOut) => "007",
        Some(ErrorType::InvalidContent) => "008",
        Some(ErrorType::RoutingError) => "009",
        Some(ErrorType::GeographicRestriction) => "010",
        Some(ErrorType::ServiceRestricted) => "011",
    }
}

/// `YYMMDDhhmm` in UTC.
fn receipt_date(at: Timestamp) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.millis()) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        dt.year().rem_euclid(100),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute()
    )
}

/// The receipt text of a message's final status.
pub fn receipt_text(m: &MessageRecord, status: MessageStatus, error_type: Option<ErrorType>, at: Timestamp) -> String {
    let (stat, _) = receipt_state(status, error_type);
    let start: String = m
        .body
        .as_deref()
        .unwrap_or("")
        .chars()
        .take(20)
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect();
    ReceiptText {
        id: Some(m.id.to_string()),
        sub: Some("001".into()),
        dlvrd: Some(if status == MessageStatus::Delivered { "001" } else { "000" }.into()),
        submit_date: Some(receipt_date(m.created_at)),
        done_date: Some(receipt_date(at)),
        stat: Some(stat.into()),
        err: Some(err_code(error_type).into()),
        text: Some(start),
    }
    .write()
}

/// An address as SMPP writes it: a number without its `+` (TON international, NPI ISDN),
/// or an alphanumeric sender ID (TON alphanumeric, NPI unknown).
fn address(s: &str) -> (Ton, Npi, COctetString<1, 21>) {
    let (ton, npi, value) = match s.strip_prefix('+') {
        Some(digits) => (Ton::International, Npi::Isdn, digits),
        None => (Ton::Alphanumeric, Npi::Unknown, s),
    };
    (ton, npi, COctetString::from_string(value.to_owned()).unwrap_or_default())
}

/// The `deliver_sm` receipt of a queued delivery.
pub fn receipt_pdu(m: &MessageRecord, d: &SmppDeliveryRecord) -> DeliverSm {
    let text = receipt_text(m, d.status, d.error_type, d.occurred_at);
    let (_, state) = receipt_state(d.status, d.error_type);
    let (src_ton, src_npi, src) = address(m.to.as_str());
    let (dst_ton, dst_npi, dst) = address(m.from.as_str());
    let mut pdu = DeliverSm::builder()
        .source_addr_ton(src_ton)
        .source_addr_npi(src_npi)
        .source_addr(src)
        .dest_addr_ton(dst_ton)
        .dest_addr_npi(dst_npi)
        .destination_addr(dst)
        .esm_class(EsmClass::from(0x04))
        .short_message(OctetString::from_vec(text.into_bytes()).unwrap_or_default())
        .build();
    let id = COctetString::from_string(m.id.to_string()).unwrap_or_default();
    pdu.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(id));
    pdu.push_tlv(MessageDeliveryRequestTlvValue::MessageState(state));
    pdu
}

/// The `deliver_sm` of an inbound message: GSM-7 (unpacked) when its text can be, else UCS-2;
/// in `short_message` up to 254 octets, in the `message_payload` TLV beyond.
pub fn inbound_pdu(m: &MessageRecord) -> DeliverSm {
    let body = m.body.as_deref().unwrap_or("");
    let (data_coding, octets) = match text::encode_text(body, Encoding::Gsm7, 0) {
        Ok(encoded) => {
            let header = if encoded.udhi { 6 } else { 0 };
            let octets = encoded.parts.iter().flat_map(|part| part[header..].iter().copied()).collect::<Vec<u8>>();
            (encoded.data_coding, octets)
        }
        Err(_) => (text::DATA_CODING_UCS2, body.encode_utf16().flat_map(u16::to_be_bytes).collect()),
    };
    let (src_ton, src_npi, src) = address(m.from.as_str());
    let (dst_ton, dst_npi, dst) = address(m.to.as_str());
    let builder = DeliverSm::builder()
        .source_addr_ton(src_ton)
        .source_addr_npi(src_npi)
        .source_addr(src)
        .dest_addr_ton(dst_ton)
        .dest_addr_npi(dst_npi)
        .destination_addr(dst)
        .esm_class(EsmClass::from(0))
        .data_coding(DataCoding::from(data_coding));
    if octets.len() <= 254 {
        builder.short_message(OctetString::from_vec(octets).unwrap_or_default()).build()
    } else {
        let mut pdu = builder.build();
        pdu.push_tlv(MessageDeliveryRequestTlvValue::MessagePayload(MessagePayload::new(AnyOctetString::from_vec(
            octets,
        ))));
        pdu
    }
}

#[cfg(test)]
mod tests;
