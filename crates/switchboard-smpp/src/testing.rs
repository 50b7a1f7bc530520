//! A fake SMSC for tests and benchmarks: an SMPP server on `127.0.0.1` built on rusmpp's codec.
//!
//! It accepts binds with one set of credentials, answers every `submit_sm` (at once, or after a
//! delay, or with `ESME_RTHROTTLED` for the first few), can send a `DELIVRD` receipt for each
//! accepted part before or after its answer, and records what it saw: every `submit_sm`, the
//! most submissions waiting for their answer at once on one connection, and the number of
//! binds. A test can also send an inbound `deliver_sm` or a receipt, and drop every connection.
//!
//! Like a real SMSC, it keeps every `deliver_sm` it sends until it is answered `ESME_ROK`: one
//! still unanswered when its connection ends, or answered with an error, is delivered again
//! (with a new sequence number) as soon as a session binds to receive, or when a test calls
//! [`FakeSmsc::redeliver`]. It records each answer to a `deliver_sm` with the time it came.
//!
//! With [`FakeSmscOptions::tls`] set, it serves TLS: each accepted connection goes through a
//! TLS handshake (see [`tls_server_config`]) before its SMPP session, which runs the same way.
//!
//! Without a delay it answers each `submit_sm` as it reads it and writes answers in batches, so
//! it keeps up with tens of thousands of submissions a second on loopback.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rusmpp::command::CommandParts;
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm, SubmitSm, SubmitSmResp};
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use switchboard_domain::Encoding;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Encoder, FramedRead};

use crate::text;

/// How long a client gets to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Server settings for [`FakeSmscOptions::tls`] that present `cert_chain` (the server's
/// certificate first, then any intermediates) with its private `key`, using the aws-lc-rs
/// provider and asking for no client certificate.
pub fn tls_server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    Ok(Arc::new(config))
}

/// How the fake SMSC writes a message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdFormat {
    /// Decimal digits.
    #[default]
    Decimal,
    /// Upper-case hex digits.
    Hex,
}

impl IdFormat {
    /// `n` written in this form.
    pub fn write(self, n: u64) -> String {
        match self {
            IdFormat::Decimal => n.to_string(),
            IdFormat::Hex => format!("{n:X}"),
        }
    }
}

/// When a part's receipt is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReceiptTiming {
    /// Right after the `submit_sm_resp`.
    #[default]
    AfterResponse,
    /// Just before the `submit_sm_resp` (a race some SMSCs show).
    BeforeResponse,
}

/// The receipts the fake SMSC sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiptOptions {
    /// Before or after the answer.
    pub timing: ReceiptTiming,
    /// How the receipt text's `id:` is written.
    pub id_format: IdFormat,
    /// Whether to add the `receipted_message_id` TLV (holding the id as the `submit_sm_resp`
    /// gave it).
    pub with_tlv: bool,
}

/// How the fake SMSC behaves.
#[derive(Debug, Clone)]
pub struct FakeSmscOptions {
    /// The `system_id` it accepts.
    pub system_id: String,
    /// The password it accepts.
    pub password: String,
    /// How `submit_sm_resp` writes message ids.
    pub id_format: IdFormat,
    /// Answer this many first submissions (over all connections) with `ESME_RTHROTTLED`.
    pub throttle_first: usize,
    /// Take at most this many submissions in any second (over all connections) and answer the
    /// rest `ESME_RTHROTTLED`, as a carrier's quota does. `None` (the default): no quota.
    pub quota_per_second: Option<u32>,
    /// Wait this long before answering each submission (submissions wait side by side).
    pub answer_delay: Duration,
    /// Send a `DELIVRD` receipt for each accepted part, to a session bound to receive.
    pub receipts: Option<ReceiptOptions>,
    /// Answer this many submissions (over all connections), then close the connection that
    /// brings the next one, without answering it. Happens once.
    pub drop_after_submits: Option<usize>,
    /// Whether to answer `enquire_link` (on by default; off, the client's keep-alive times out).
    pub answer_enquire_link: bool,
    /// Serve TLS with these settings (see [`tls_server_config`]): every accepted connection
    /// completes a TLS handshake before its SMPP session. `None` (the default): plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for FakeSmscOptions {
    fn default() -> Self {
        Self {
            system_id: "switchboard".to_owned(),
            password: "secret".to_owned(),
            id_format: IdFormat::Decimal,
            throttle_first: 0,
            quota_per_second: None,
            answer_delay: Duration::ZERO,
            receipts: None,
            drop_after_submits: None,
            answer_enquire_link: true,
            tls: None,
        }
    }
}

/// A `submit_sm` the fake SMSC received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSubmit {
    /// `destination_addr`.
    pub destination: String,
    /// `source_addr`.
    pub source: String,
    /// `source_addr_ton`.
    pub source_ton: u8,
    /// `source_addr_npi`.
    pub source_npi: u8,
    /// `esm_class`.
    pub esm_class: u8,
    /// `data_coding`.
    pub data_coding: u8,
    /// `registered_delivery`.
    pub registered_delivery: u8,
    /// `short_message`.
    pub short_message: Vec<u8>,
    /// The id it was given, as written in the answer; `None` if refused or never answered.
    pub message_id: Option<String>,
}

/// An answer the fake SMSC got to one of its `deliver_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAnswer {
    /// The answer's status (`ESME_ROK`, or an error that makes it deliver the message again).
    pub status: CommandStatus,
    /// When it came.
    pub at: Instant,
}

impl DeliveryAnswer {
    /// Whether it is `ESME_ROK` (the message is taken).
    pub fn is_ok(&self) -> bool {
        self.status == CommandStatus::EsmeRok
    }
}

/// The `deliver_sm` sent on one connection and not answered yet, by sequence number.
type Unanswered = Arc<Mutex<HashMap<u32, DeliverSm>>>;

/// One client connection.
struct Conn {
    out: mpsc::UnboundedSender<Command>,
    bound: Arc<AtomicBool>,
    receives: Arc<AtomicBool>,
    sequence: Arc<AtomicU32>,
    unanswered: Unanswered,
    tasks: Vec<AbortHandle>,
}

struct Shared {
    options: FakeSmscOptions,
    submits: Mutex<Vec<RecordedSubmit>>,
    submit_count: AtomicUsize,
    next_id: AtomicU64,
    max_in_flight: AtomicUsize,
    binds: AtomicUsize,
    unbinds: AtomicUsize,
    early_unbinds: AtomicUsize,
    refusing_binds: AtomicBool,
    dropped_once: AtomicBool,
    tls_failures: AtomicUsize,
    connections: Mutex<HashMap<u64, Conn>>,
    /// `deliver_sm` to deliver again at the next bind of a session that receives.
    redeliver: Mutex<VecDeque<DeliverSm>>,
    deliveries: AtomicUsize,
    redeliveries: AtomicUsize,
    answers: Mutex<Vec<DeliveryAnswer>>,
    /// When the submissions taken in the last second were taken (for the quota).
    taken: Mutex<VecDeque<Instant>>,
    /// The `data_sm` sent and not answered yet, by connection and sequence number.
    data_sm_waiting: Mutex<std::collections::HashSet<(u64, u32)>>,
    /// Every answer to a `data_sm`, with the answer's command.
    data_sm_answers: Mutex<Vec<(CommandId, DeliveryAnswer)>>,
}

impl Shared {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Conn>> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn redeliveries(&self) -> std::sync::MutexGuard<'_, VecDeque<DeliverSm>> {
        self.redeliver.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes one connection at once, without flushing what it still had to write.
    fn kill(&self, id: u64) {
        if let Some(tasks) = self.forget(id) {
            for task in tasks {
                task.abort();
            }
        }
    }

    /// Forgets connection `id`, keeping its unanswered `deliver_sm` to deliver again; returns
    /// its tasks if it was still known.
    fn forget(&self, id: u64) -> Option<Vec<AbortHandle>> {
        let conn = self.conns().remove(&id)?;
        let mut unanswered: Vec<(u32, DeliverSm)> =
            conn.unanswered.lock().unwrap_or_else(PoisonError::into_inner).drain().collect();
        unanswered.sort_by_key(|(sequence, _)| *sequence);
        self.redeliveries().extend(unanswered.into_iter().map(|(_, pdu)| pdu));
        Some(conn.tasks)
    }

    /// Sends a `deliver_sm` to connection `prefer` if it receives, else to any connection
    /// that does, and keeps it until it is answered; with none, keeps it to deliver at the
    /// next bind. Returns whether it went out now.
    fn deliver(&self, prefer: u64, pdu: DeliverSm) -> bool {
        let conns = self.conns();
        let receives = |c: &&Conn| c.receives.load(Ordering::Relaxed);
        let Some(conn) = conns.get(&prefer).filter(receives).or_else(|| conns.values().find(receives)) else {
            drop(conns);
            self.redeliveries().push_back(pdu);
            return false;
        };
        let sequence = next_sequence(&conn.sequence);
        conn.unanswered.lock().unwrap_or_else(PoisonError::into_inner).insert(sequence, pdu.clone());
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        let _ = conn.out.send(Command::new(CommandStatus::EsmeRok, sequence, pdu));
        true
    }

    /// Delivers again what is waiting for it, to connection `prefer` if it receives; returns
    /// how many went out.
    fn redeliver_to(&self, prefer: u64) -> usize {
        let waiting: Vec<DeliverSm> = self.redeliveries().drain(..).collect();
        let mut sent = 0;
        for pdu in waiting {
            if self.deliver(prefer, pdu) {
                sent += 1;
            }
        }
        self.redeliveries.fetch_add(sent, Ordering::Relaxed);
        sent
    }
}

/// The fake SMSC. Dropping it closes the listener and every connection.
pub struct FakeSmsc {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for FakeSmsc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSmsc").field("addr", &self.addr).field("options", &self.shared.options).finish()
    }
}

impl FakeSmsc {
    /// Starts listening on `127.0.0.1` on a free port.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(options: FakeSmscOptions) -> FakeSmsc {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            options,
            submits: Mutex::new(Vec::new()),
            submit_count: AtomicUsize::new(0),
            next_id: AtomicU64::new(0xA000_0000),
            max_in_flight: AtomicUsize::new(0),
            binds: AtomicUsize::new(0),
            unbinds: AtomicUsize::new(0),
            early_unbinds: AtomicUsize::new(0),
            refusing_binds: AtomicBool::new(false),
            dropped_once: AtomicBool::new(false),
            tls_failures: AtomicUsize::new(0),
            connections: Mutex::new(HashMap::new()),
            redeliver: Mutex::new(VecDeque::new()),
            deliveries: AtomicUsize::new(0),
            redeliveries: AtomicUsize::new(0),
            answers: Mutex::new(Vec::new()),
            taken: Mutex::new(VecDeque::new()),
            data_sm_waiting: Mutex::new(std::collections::HashSet::new()),
            data_sm_answers: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        FakeSmsc { addr, shared, accept }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every `submit_sm` received so far, in order of arrival.
    pub fn submits(&self) -> Vec<RecordedSubmit> {
        self.shared.submits.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many `submit_sm` it received.
    pub fn submit_count(&self) -> usize {
        self.shared.submit_count.load(Ordering::Relaxed)
    }

    /// The most `submit_sm` it has seen waiting for their answer at once on one connection.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::Relaxed)
    }

    /// How many binds it accepted.
    pub fn bind_count(&self) -> usize {
        self.shared.binds.load(Ordering::Relaxed)
    }

    /// How many `unbind` it received (and answered).
    pub fn unbind_count(&self) -> usize {
        self.shared.unbinds.load(Ordering::Relaxed)
    }

    /// How many `unbind` came while a `submit_sm` of that connection was still unanswered.
    pub fn early_unbind_count(&self) -> usize {
        self.shared.early_unbinds.load(Ordering::Relaxed)
    }

    /// How many TLS handshakes failed or did not complete in time (always 0 without TLS).
    pub fn tls_handshake_failures(&self) -> usize {
        self.shared.tls_failures.load(Ordering::Relaxed)
    }

    /// How many connections are open (with TLS, those whose handshake is done).
    pub fn connection_count(&self) -> usize {
        self.shared.conns().len()
    }

    /// Sends an inbound text message (GSM-7 if it can, else UCS-2; concatenated if long) to a
    /// session bound to receive. Returns whether one was bound.
    pub fn inject_text(&self, from: &str, to: &str, text: &str) -> bool {
        let Ok(encoded) = text::encode_text(text, Encoding::Gsm7, 1) else { return false };
        let parts: Vec<DeliverSm> = encoded
            .parts
            .into_iter()
            .map(|part| {
                DeliverSm::builder()
                    .source_addr_ton(Ton::International)
                    .source_addr_npi(Npi::Isdn)
                    .source_addr(COctetString::from_string(from.trim_start_matches('+').to_owned()).unwrap_or_default())
                    .dest_addr_ton(Ton::International)
                    .dest_addr_npi(Npi::Isdn)
                    .destination_addr(
                        COctetString::from_string(to.trim_start_matches('+').to_owned()).unwrap_or_default(),
                    )
                    .esm_class(EsmClass::from(if encoded.udhi { text::ESM_CLASS_UDHI } else { 0 }))
                    .data_coding(DataCoding::from(encoded.data_coding))
                    .short_message(OctetString::from_vec(part).unwrap_or_default())
                    .build()
            })
            .collect();
        parts.into_iter().all(|pdu| self.inject(pdu))
    }

    /// Sends a `deliver_sm` as is to a session bound to receive. Returns whether one was bound;
    /// if none was, it is delivered when one binds.
    pub fn inject(&self, pdu: DeliverSm) -> bool {
        self.shared.deliver(u64::MAX, pdu)
    }

    /// Sends a `DELIVRD` receipt for a submission it answered (its text's `id:` is the id the
    /// answer gave) to a session bound to receive. Returns whether one was bound; if none was,
    /// it is delivered when one binds. `false` as well for a submission it never answered.
    pub fn inject_receipt(&self, submit: &RecordedSubmit) -> bool {
        let Some(id) = &submit.message_id else { return false };
        self.inject(receipt_pdu(submit, id, None))
    }

    /// How many `deliver_sm` it has sent (each delivery again counts again).
    pub fn deliveries_sent(&self) -> usize {
        self.shared.deliveries.load(Ordering::Relaxed)
    }

    /// How many `deliver_sm` it delivered again, after their connection ended unanswered or an
    /// error answer.
    pub fn redelivered_count(&self) -> usize {
        self.shared.redeliveries.load(Ordering::Relaxed)
    }

    /// How many `deliver_sm` wait for their answer on open connections.
    pub fn unanswered_deliveries(&self) -> usize {
        let conns = self.shared.conns();
        conns.values().map(|c| c.unanswered.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }

    /// How many `deliver_sm` wait to be delivered again (at the next bind that receives).
    pub fn pending_redeliveries(&self) -> usize {
        self.shared.redeliveries().len()
    }

    /// Every answer to a `deliver_sm` so far, in order of arrival.
    pub fn delivery_answers(&self) -> Vec<DeliveryAnswer> {
        self.shared.answers.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Delivers again, now, what waits to be (to a session bound to receive); returns how many
    /// went out.
    pub fn redeliver(&self) -> usize {
        self.shared.redeliver_to(u64::MAX)
    }

    /// Sends `unbind` to every bound session, as an SMSC going down for maintenance does.
    /// Returns how many it was sent to.
    pub fn unbind_sessions(&self) -> usize {
        let conns = self.shared.conns();
        conns
            .values()
            .filter(|c| c.bound.load(Ordering::Relaxed))
            .filter(|c| {
                c.out.send(Command::new(CommandStatus::EsmeRok, next_sequence(&c.sequence), Pdu::Unbind)).is_ok()
            })
            .count()
    }

    /// Closes every connection at once, without an unbind.
    pub fn drop_connections(&self) {
        let ids: Vec<u64> = self.shared.conns().keys().copied().collect();
        for id in ids {
            self.shared.kill(id);
        }
    }

    /// While `refuse` holds, answers every bind `ESME_RBINDFAIL`, as an SMSC down for
    /// maintenance does.
    pub fn refuse_binds(&self, refuse: bool) {
        self.shared.refusing_binds.store(refuse, Ordering::Relaxed);
    }

    /// Sends a concatenated inbound message as `deliver_sm` parts to a session bound to
    /// receive: part `n` (from 1) carries `parts[n - 1]` (octets in `data_coding`) after the
    /// user data header `05 00 03 <reference> <count> <n>`, with `esm_class` UDHI. Only the
    /// parts numbered in `send` go, in that order (so a test can send them out of order, or
    /// leave some out). Returns whether a session was bound for each; the parts are kept until
    /// answered `ESME_ROK`, as [`FakeSmsc::inject`] keeps them.
    pub fn deliver_concatenated(
        &self,
        from: &str,
        to: &str,
        reference: u8,
        data_coding: u8,
        parts: &[Vec<u8>],
        send: &[u8],
    ) -> bool {
        let count = u8::try_from(parts.len()).unwrap_or(u8::MAX);
        send.iter().all(|&n| {
            let Some(payload) = usize::from(n).checked_sub(1).and_then(|i| parts.get(i)) else { return false };
            let mut short_message = vec![0x05, 0x00, 0x03, reference, count, n];
            short_message.extend_from_slice(payload);
            let pdu = DeliverSm::builder()
                .source_addr_ton(Ton::International)
                .source_addr_npi(Npi::Isdn)
                .source_addr(address(from))
                .dest_addr_ton(Ton::International)
                .dest_addr_npi(Npi::Isdn)
                .destination_addr(address(to))
                .esm_class(EsmClass::from(text::ESM_CLASS_UDHI))
                .data_coding(DataCoding::from(data_coding))
                .short_message(OctetString::from_vec(short_message).unwrap_or_default())
                .build();
            self.inject(pdu)
        })
    }

    /// Sends a `data_sm` as is to a session bound to receive. Returns whether one was bound.
    /// Unlike a `deliver_sm`, a `data_sm` is not kept to deliver again: its answers are
    /// recorded (see [`FakeSmsc::data_sm_answers`]) and that is all.
    pub fn inject_data_sm(&self, pdu: rusmpp::pdus::DataSm) -> bool {
        self.shared.deliver_data_sm(pdu)
    }

    /// Sends an inbound text message as one `data_sm` (GSM-7 if it can, else UCS-2, the whole
    /// text in the `message_payload` TLV) to a session bound to receive. Returns whether one
    /// was bound.
    pub fn deliver_data_sm(&self, from: &str, to: &str, text: &str) -> bool {
        let Some((data_coding, payload)) = encode_whole(text) else { return false };
        let mut pdu = data_sm(from, to, 0, data_coding);
        pdu.push_tlv(rusmpp::tlvs::MessageSubmissionRequestTlvValue::MessagePayload(message_payload(payload)));
        self.inject_data_sm(pdu)
    }

    /// Sends a `DELIVRD` receipt as a `data_sm` for a submission it answered (`esm_class`
    /// 0x04, the `receipted_message_id` and `message_state` TLVs, and the receipt text in
    /// `message_payload`) to a session bound to receive. Returns whether one was bound;
    /// `false` as well for a submission it never answered.
    pub fn deliver_data_sm_receipt(&self, submit: &RecordedSubmit) -> bool {
        let Some(id) = &submit.message_id else { return false };
        let text =
            format!("id:{id} sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:");
        let pdu = data_sm(&submit.destination, &submit.source, 0x04, text::DATA_CODING_GSM7);
        let mut parts = pdu.into_parts();
        parts.tlvs.extend([
            rusmpp::tlvs::Tlv::new(rusmpp::tlvs::TlvValue::ReceiptedMessageId(
                COctetString::from_string(id.clone()).unwrap_or_default(),
            )),
            rusmpp::tlvs::Tlv::new(rusmpp::tlvs::TlvValue::MessageState(rusmpp::values::MessageState::Delivered)),
            rusmpp::tlvs::Tlv::new(rusmpp::tlvs::TlvValue::MessagePayload(message_payload(text.into_bytes()))),
        ]);
        self.inject_data_sm(rusmpp::pdus::DataSm::from_parts(parts))
    }

    /// Every answer to a `data_sm` so far, in order of arrival, with the answer's command
    /// (`DataSmResp`, or `GenericNack` from a client that does not take `data_sm`).
    pub fn data_sm_answers(&self) -> Vec<(CommandId, DeliveryAnswer)> {
        self.shared.data_sm_answers.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many `data_sm` wait for their answer.
    pub fn unanswered_data_sm(&self) -> usize {
        self.shared.data_sm_waiting.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for FakeSmsc {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

fn next_sequence(sequence: &AtomicU32) -> u32 {
    sequence.fetch_add(1, Ordering::Relaxed)
}

/// Accepts connections until the listener fails or the task is aborted; with TLS, each
/// handshake runs in its own task (aborted with this one), so a slow client holds up no other.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_conn: u64 = 0;
    let mut handshakes = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while handshakes.try_join_next().is_some() {}
        next_conn += 1;
        let id = next_conn;
        let _ = stream.set_nodelay(true);
        match shared.options.tls.clone() {
            None => {
                let (read, write) = stream.into_split();
                open_connection(&shared, id, read, write);
            }
            Some(config) => {
                handshakes.spawn(serve_tls(shared.clone(), id, stream, config));
            }
        }
    }
}

/// Completes the TLS handshake of connection `id`, then runs its SMPP session.
async fn serve_tls(shared: Arc<Shared>, id: u64, stream: TcpStream, config: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let (read, write) = tokio::io::split(stream);
            open_connection(&shared, id, read, write);
        }
        Ok(Err(e)) => {
            shared.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(connection = id, error = %e, "fake SMSC: TLS handshake failed");
        }
        Err(_) => {
            shared.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(connection = id, "fake SMSC: TLS handshake timed out");
        }
    }
}

/// Registers connection `id` and starts its writer and its SMPP session on the two halves of
/// its stream (plain TCP or TLS).
fn open_connection<R, W>(shared: &Arc<Shared>, id: u64, read: R, write: W)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(write, rx));
    let bound = Arc::new(AtomicBool::new(false));
    let receives = Arc::new(AtomicBool::new(false));
    let sequence = Arc::new(AtomicU32::new(1));
    let unanswered = Unanswered::default();
    let conn = Conn {
        out: out.clone(),
        bound: bound.clone(),
        receives: receives.clone(),
        sequence: sequence.clone(),
        unanswered: unanswered.clone(),
        tasks: vec![writer.abort_handle()],
    };
    shared.conns().insert(id, conn);
    let connection = Connection {
        id,
        shared: shared.clone(),
        out,
        bound,
        receives,
        sequence,
        unanswered,
        in_flight: Arc::default(),
    };
    let reader = tokio::spawn(connection.serve(read));
    if let Some(conn) = shared.conns().get_mut(&id) {
        conn.tasks.push(reader.abort_handle());
    }
}

/// Writes what the connection sends, many commands per write when they queue up.
async fn write_loop<W>(mut write: W, mut rx: mpsc::UnboundedReceiver<Command>)
where
    W: AsyncWrite + Unpin,
{
    let mut codec = CommandCodec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(command) = rx.recv().await {
        if codec.encode(&command, &mut buf).is_err() {
            break;
        }
        while buf.len() < 64 * 1024 {
            let Ok(command) = rx.try_recv() else { break };
            if codec.encode(&command, &mut buf).is_err() {
                break;
            }
        }
        if write.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
    }
    let _ = write.shutdown().await;
}

struct Connection {
    id: u64,
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Command>,
    bound: Arc<AtomicBool>,
    receives: Arc<AtomicBool>,
    sequence: Arc<AtomicU32>,
    unanswered: Unanswered,
    in_flight: Arc<AtomicUsize>,
}

impl Connection {
    async fn serve<R>(self, read: R)
    where
        R: AsyncRead + Unpin,
    {
        let mut frames = FramedRead::new(read, CommandCodec::new());
        while let Some(Ok(command)) = frames.next().await {
            let sequence = command.sequence_number();
            let bound = self.bound.load(Ordering::Relaxed);
            let keep_going = match command.pdu() {
                Some(Pdu::BindTransceiver(b)) => self.bind(sequence, &b.system_id, &b.password, BindKind::Transceiver),
                Some(Pdu::BindTransmitter(b)) => self.bind(sequence, &b.system_id, &b.password, BindKind::Transmitter),
                Some(Pdu::BindReceiver(b)) => self.bind(sequence, &b.system_id, &b.password, BindKind::Receiver),
                Some(Pdu::SubmitSm(sm)) if bound => self.submit(sequence, sm),
                Some(Pdu::EnquireLink) => {
                    if self.shared.options.answer_enquire_link {
                        self.send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::EnquireLinkResp));
                    }
                    true
                }
                Some(Pdu::Unbind) => {
                    self.shared.unbinds.fetch_add(1, Ordering::Relaxed);
                    if self.in_flight.load(Ordering::Relaxed) > 0 {
                        self.shared.early_unbinds.fetch_add(1, Ordering::Relaxed);
                    }
                    self.send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::UnbindResp));
                    false
                }
                // The answer to an unbind this side sent: the session is over.
                _ if command.id() == CommandId::UnbindResp => false,
                // The answer to a `data_sm` (`data_sm_resp`, or any other response to it).
                _ if command.id().is_response()
                    && self.shared.data_sm_answered(self.id, sequence, command.id(), command.status()) =>
                {
                    true
                }
                _ if command.id() == CommandId::DeliverSmResp => {
                    self.delivery_answered(sequence, command.status());
                    true
                }
                _ if command.id().is_response() => true,
                _ => {
                    let status = if bound { CommandStatus::EsmeRinvcmdid } else { CommandStatus::EsmeRinvbndsts };
                    self.send(bodiless(CommandId::GenericNack, status, sequence));
                    true
                }
            };
            if !keep_going {
                break;
            }
        }
        // Let the writer flush what is queued, then close: dropping the last senders ends it.
        // What it did not answer is delivered again at the next bind.
        self.shared.forget(self.id);
    }

    /// Records the answer to a `deliver_sm`; one that is not `ESME_ROK` is delivered again.
    fn delivery_answered(&self, sequence: u32, status: CommandStatus) {
        let pdu = self.unanswered.lock().unwrap_or_else(PoisonError::into_inner).remove(&sequence);
        self.shared
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(DeliveryAnswer { status, at: Instant::now() });
        if let Some(pdu) = pdu
            && status != CommandStatus::EsmeRok
        {
            self.shared.redeliveries().push_back(pdu);
        }
    }

    fn send(&self, command: Command) {
        let _ = self.out.send(command);
    }

    fn bind(
        &self,
        sequence: u32,
        system_id: &COctetString<1, 16>,
        password: &COctetString<1, 9>,
        kind: BindKind,
    ) -> bool {
        let options = &self.shared.options;
        let refusing = self.shared.refusing_binds.load(Ordering::Relaxed);
        let ok = !refusing && system_id.as_str() == options.system_id && password.as_str() == options.password;
        let status = match (ok, refusing) {
            (true, _) => CommandStatus::EsmeRok,
            (false, true) => CommandStatus::EsmeRbindfail,
            (false, false) => CommandStatus::EsmeRinvpaswd,
        };
        if !ok {
            let id = match kind {
                BindKind::Transceiver => CommandId::BindTransceiverResp,
                BindKind::Transmitter => CommandId::BindTransmitterResp,
                BindKind::Receiver => CommandId::BindReceiverResp,
            };
            self.send(bodiless(id, status, sequence));
            return false;
        }
        let name = COctetString::from_string("fakesmsc".to_owned()).unwrap_or_default();
        let resp: Pdu = match kind {
            BindKind::Transceiver => BindTransceiverResp::builder().system_id(name).build().into(),
            BindKind::Transmitter => BindTransmitterResp::builder().system_id(name).build().into(),
            BindKind::Receiver => BindReceiverResp::builder().system_id(name).build().into(),
        };
        self.send(Command::new(status, sequence, resp));
        self.bound.store(true, Ordering::Relaxed);
        self.receives.store(kind != BindKind::Transmitter, Ordering::Relaxed);
        self.shared.binds.fetch_add(1, Ordering::Relaxed);
        if kind != BindKind::Transmitter {
            self.shared.redeliver_to(self.id);
        }
        true
    }

    /// Records and answers a `submit_sm`. Returns false when the connection is to close.
    fn submit(&self, sequence: u32, sm: &SubmitSm) -> bool {
        let shared = &self.shared;
        let options = &shared.options;
        let n = shared.submit_count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut record = RecordedSubmit {
            destination: sm.destination_addr.as_str().to_owned(),
            source: sm.source_addr.as_str().to_owned(),
            source_ton: u8::from(sm.source_addr_ton),
            source_npi: u8::from(sm.source_addr_npi),
            esm_class: u8::from(sm.esm_class),
            data_coding: u8::from(sm.data_coding),
            registered_delivery: u8::from(sm.registered_delivery),
            short_message: sm.short_message().as_ref().to_vec(),
            message_id: None,
        };
        if let Some(limit) = options.drop_after_submits
            && n > limit
            && !shared.dropped_once.swap(true, Ordering::Relaxed)
        {
            shared.submits.lock().unwrap_or_else(PoisonError::into_inner).push(record);
            shared.kill(self.id);
            return false;
        }
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::Relaxed);

        let mut receipt = None;
        let over_quota = options.quota_per_second.is_some_and(|quota| {
            let mut taken = shared.taken.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            while taken.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
                taken.pop_front();
            }
            let over = taken.len() >= quota as usize;
            if !over {
                taken.push_back(now);
            }
            over
        });
        let resp = if n <= options.throttle_first || over_quota {
            bodiless(CommandId::SubmitSmResp, CommandStatus::EsmeRthrottled, sequence)
        } else {
            let number = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let id = options.id_format.write(number);
            record.message_id = Some(id.clone());
            let message_id = COctetString::from_string(id.clone()).unwrap_or_default();
            if let Some(receipts) = options.receipts {
                let text_id = receipts.id_format.write(number);
                let tlv = receipts.with_tlv.then_some(id.as_str());
                receipt = Some((receipt_pdu(&record, &text_id, tlv), receipts.timing));
            }
            Command::new(CommandStatus::EsmeRok, sequence, SubmitSmResp::builder().message_id(message_id).build())
        };
        shared.submits.lock().unwrap_or_else(PoisonError::into_inner).push(record);

        let delay = options.answer_delay;
        if delay.is_zero() {
            self.answer(resp, receipt);
        } else {
            let this = self.handle();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                this.answer(resp, receipt);
            });
        }
        true
    }

    /// Sends the answer and the receipt (to a session that receives, before or after the
    /// answer).
    fn answer(&self, resp: Command, receipt: Option<(DeliverSm, ReceiptTiming)>) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        match receipt {
            Some((receipt, ReceiptTiming::BeforeResponse)) => {
                self.shared.deliver(self.id, receipt);
                self.send(resp);
            }
            Some((receipt, ReceiptTiming::AfterResponse)) => {
                self.send(resp);
                self.shared.deliver(self.id, receipt);
            }
            None => self.send(resp),
        }
    }

    fn handle(&self) -> Connection {
        Connection {
            id: self.id,
            shared: self.shared.clone(),
            out: self.out.clone(),
            bound: self.bound.clone(),
            receives: self.receives.clone(),
            sequence: self.sequence.clone(),
            unanswered: self.unanswered.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BindKind {
    Transceiver,
    Transmitter,
    Receiver,
}

/// A response with no body (as SMPP 3.4 sends on errors).
fn bodiless(id: CommandId, status: CommandStatus, sequence: u32) -> Command {
    Command::from_parts(CommandParts::new(id, status, sequence, None))
}

/// The `DELIVRD` receipt of an accepted part, whose text names it `text_id`, with the
/// `receipted_message_id` TLV holding `tlv_id` if given.
fn receipt_pdu(submit: &RecordedSubmit, text_id: &str, tlv_id: Option<&str>) -> DeliverSm {
    let text = format!(
        "id:{text_id} sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:"
    );
    let mut pdu = DeliverSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(COctetString::from_string(submit.destination.clone()).unwrap_or_default())
        .dest_addr_ton(Ton::from(submit.source_ton))
        .dest_addr_npi(Npi::from(submit.source_npi))
        .destination_addr(COctetString::from_string(submit.source.clone()).unwrap_or_default())
        .esm_class(EsmClass::from(0x04))
        .short_message(OctetString::from_vec(text.into_bytes()).unwrap_or_default())
        .build();
    if let Some(submit_id) = tlv_id {
        let id = COctetString::from_string(submit_id.to_owned()).unwrap_or_default();
        pdu.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(id));
    }
    pdu
}

impl Shared {
    /// Sends a `data_sm` to any connection that receives and waits for its answer; returns
    /// whether one did.
    fn deliver_data_sm(&self, pdu: rusmpp::pdus::DataSm) -> bool {
        let conns = self.conns();
        let Some((&id, conn)) = conns.iter().find(|(_, c)| c.receives.load(Ordering::Relaxed)) else {
            return false;
        };
        let sequence = next_sequence(&conn.sequence);
        self.data_sm_waiting.lock().unwrap_or_else(PoisonError::into_inner).insert((id, sequence));
        conn.out.send(Command::new(CommandStatus::EsmeRok, sequence, pdu)).is_ok()
    }

    /// Records the answer to a `data_sm` sent on connection `conn`; returns whether `sequence`
    /// was one.
    fn data_sm_answered(&self, conn: u64, sequence: u32, id: CommandId, status: CommandStatus) -> bool {
        if !self.data_sm_waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&(conn, sequence)) {
            return false;
        }
        let answer = DeliveryAnswer { status, at: Instant::now() };
        self.data_sm_answers.lock().unwrap_or_else(PoisonError::into_inner).push((id, answer));
        true
    }
}

/// An address without its `+`.
fn address(number: &str) -> COctetString<1, 21> {
    COctetString::from_string(number.trim_start_matches('+').to_owned()).unwrap_or_default()
}

/// A `data_sm` from `from` to `to` (international numbers) with no TLVs.
fn data_sm(from: &str, to: &str, esm_class: u8, data_coding: u8) -> rusmpp::pdus::DataSm {
    rusmpp::pdus::DataSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(address(from))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(address(to))
        .esm_class(EsmClass::from(esm_class))
        .data_coding(DataCoding::from(data_coding))
        .build()
}

fn message_payload(bytes: Vec<u8>) -> rusmpp::values::MessagePayload {
    rusmpp::values::MessagePayload::new(rusmpp::types::AnyOctetString::from_vec(bytes))
}

/// A whole text in GSM-7 if it can, else in UCS-2, unsplit: its `data_coding` and octets.
fn encode_whole(text: &str) -> Option<(u8, Vec<u8>)> {
    let encoded = text::encode_text(text, Encoding::Gsm7, 0).ok()?;
    let header = if encoded.udhi { 6 } else { 0 };
    let octets = encoded.parts.iter().flat_map(|part| part[header..].iter().copied()).collect();
    Some((encoded.data_coding, octets))
}
