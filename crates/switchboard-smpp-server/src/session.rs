//! One ESME connection: framing, binding, the window and rate of a bind, `submit_sm` through
//! the core, and the answers to `deliver_sm`.
//!
//! A reader task frames PDUs (a command length from 16 to [`MAX_PDU_LEN`] octets; anything
//! else ends the connection after a `generic_nack`, since the stream can no longer be
//! framed) and decodes each with rusmpp; a PDU whose body does not decode is answered
//! `generic_nack` with `ESME_RINVCMDLEN` and the session goes on. A writer task writes every
//! answer and request queued for the connection. The session itself handles one command
//! at a time, in order; each `submit_sm` runs as a task of its own, so answers go out in the
//! order messages become durable, each naming its request's sequence number.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use rusmpp::command::CommandParts;
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, SubmitSm, SubmitSmResp};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::COctetString;
use rusmpp::values::InterfaceVersion;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use switchboard_core::smpp::{BindInfo, BindMode, SmppLogin, SmppSend};
use switchboard_core::{AuthError, Core};
use switchboard_domain::{AccountId, Timestamp};
use switchboard_smpp::reassembly::{Part, Reassembler};
use switchboard_validation::SendFields;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::deliver::{Receiver, next_sequence};
use crate::submit::{self, Submitted};
use crate::{MAX_PDU_LEN, Shared};

/// What the writer is given: a command to write, or `None` to flush and close.
pub(crate) type Outbox = mpsc::Sender<Option<Command>>;

/// Most commands queued for the writer of one connection: room for a full window of answers
/// and of `deliver_sm` (each at most 1,000) and then some. A peer that does not read what it
/// is sent fills it, and its connection is closed rather than queueing without end.
const OUT_QUEUE: usize = 4096;
/// How long the writer gets to flush what is queued once the session ends.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Most incomplete concatenated messages one bind keeps.
const MAX_INCOMPLETE: usize = 100;
/// Most parts of a concatenated message (a text at the longest limit fits well within), and
/// most octets of one part: what a bind holds while parts wait stays small.
const MAX_PARTS: u8 = 32;
const MAX_PART_OCTETS: usize = 255;
/// How long the session waits, as it stops, for the messages it took to be stored.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long the session waits for the ESME's `unbind_resp` when this side unbinds.
const UNBIND_WAIT: Duration = Duration::from_secs(2);

/// What the reader hands the session.
enum Frame {
    /// A decoded PDU.
    Command(Box<Command>),
    /// A PDU whose body did not decode: its command id and sequence number.
    Malformed(u32, u32),
    /// A command length out of bounds (the sequence number, if the header was read).
    BadLength(u32),
}

/// Reads and frames PDUs until the stream ends or cannot be framed.
async fn read_loop<R: AsyncRead + Unpin>(mut read: R, frames: mpsc::Sender<Frame>) {
    let mut header = [0u8; 16];
    loop {
        if read.read_exact(&mut header[..4]).await.is_err() {
            return;
        }
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if !(16..=MAX_PDU_LEN).contains(&length) {
            // Read what header there is, for the sequence number, without waiting long.
            let sequence =
                match tokio::time::timeout(Duration::from_millis(200), read.read_exact(&mut header[4..])).await {
                    Ok(Ok(_)) => u32::from_be_bytes([header[12], header[13], header[14], header[15]]),
                    _ => 0,
                };
            let _ = frames.send(Frame::BadLength(sequence)).await;
            return;
        }
        let mut buf = BytesMut::zeroed(length);
        buf[..4].copy_from_slice(&header[..4]);
        if read.read_exact(&mut buf[4..]).await.is_err() {
            return;
        }
        let id = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let sequence = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
        let frame = match CommandCodec::new().with_max_length(MAX_PDU_LEN).decode(&mut buf) {
            Ok(Some(command)) => Frame::Command(Box::new(command)),
            _ => Frame::Malformed(id, sequence),
        };
        if frames.send(frame).await.is_err() {
            return;
        }
    }
}

/// Writes what the session queues, many commands per write when they queue up, until told to
/// close or every sender is gone.
async fn write_loop<W: AsyncWrite + Unpin>(mut write: W, mut rx: mpsc::Receiver<Option<Command>>) {
    let mut codec = CommandCodec::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut closing = false;
    while !closing {
        match rx.recv().await {
            Some(Some(command)) => {
                if codec.encode(&command, &mut buf).is_err() {
                    break;
                }
            }
            Some(None) | None => closing = true,
        }
        while !closing && buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(Some(command)) => {
                    if codec.encode(&command, &mut buf).is_err() {
                        closing = true;
                    }
                }
                Ok(None) => closing = true,
                Err(_) => break,
            }
        }
        if !buf.is_empty() && write.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
    }
    let _ = write.flush().await;
    let _ = write.shutdown().await;
}

/// Queues a command for the writer; a full queue marks the session `stalled`.
fn queue(out: &Outbox, stalled: &AtomicBool, command: Command) {
    if let Err(mpsc::error::TrySendError::Full(_)) = out.try_send(Some(command)) {
        stalled.store(true, Ordering::Relaxed);
    }
}

/// A response with no body (as SMPP 3.4 sends on errors).
pub(crate) fn bodiless(id: CommandId, status: CommandStatus, sequence: u32) -> Command {
    Command::from_parts(CommandParts::new(id, status, sequence, None))
}

/// The response id of a request id.
fn response_id(id: CommandId) -> CommandId {
    CommandId::from(u32::from(id) | 0x8000_0000)
}

/// A token bucket: `rate` a second, as many at once.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Bucket { rate, tokens: rate, last: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a held part needs to be answered and sent: its sequence number, and its request's
/// source kind and schedule, expiry and receipt.
type Held = (u32, bool, SmppSend);

/// A bound session's state.
struct Bound {
    info: Arc<BindInfo>,
    mode: BindMode,
    window: u32,
    rate: Bucket,
    receiver: Option<Arc<Receiver>>,
    parts: Reassembler<Held, String>,
}

struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    out: Outbox,
    /// Set when the writer's queue was full: the peer reads nothing, and the session ends.
    stalled: Arc<AtomicBool>,
    sequence: Arc<AtomicU32>,
    bound: Option<Bound>,
    sends: JoinSet<()>,
}

/// Serves one connection until it closes, the ESME unbinds, it idles, or the server stops.
pub(crate) async fn run<R, W>(shared: Arc<Shared>, peer: SocketAddr, read: R, write: W)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, rx) = mpsc::channel(OUT_QUEUE);
    let mut writer = tokio::spawn(write_loop(write, rx));
    let (frames_tx, mut frames) = mpsc::channel(64);
    let reader = tokio::spawn(read_loop(read, frames_tx));
    let mut stopping = shared.stopping.clone();
    let mut session = Session {
        shared: shared.clone(),
        peer,
        out,
        stalled: Arc::default(),
        sequence: Arc::default(),
        bound: None,
        sends: JoinSet::new(),
    };
    let idle = shared.config.idle_timeout;
    let mut idle_at = Instant::now() + idle;
    let mut unbind_sent = false;
    loop {
        let deadline = session.bound.as_ref().and_then(|b| b.parts.next_deadline());
        tokio::select! {
            frame = frames.recv() => {
                idle_at = Instant::now() + idle;
                let keep_going = match frame {
                    Some(Frame::Command(command)) => session.command(*command).await,
                    Some(Frame::Malformed(id, sequence)) => {
                        tracing::debug!(peer = %session.peer, command_id = id, "SMPP: a PDU did not decode");
                        metrics::counter!("switchboard_smpp_malformed_total").increment(1);
                        session.send(bodiless(CommandId::GenericNack, CommandStatus::EsmeRinvcmdlen, sequence));
                        true
                    }
                    Some(Frame::BadLength(sequence)) => {
                        tracing::debug!(peer = %session.peer, "SMPP: a command length out of bounds; closing");
                        metrics::counter!("switchboard_smpp_malformed_total").increment(1);
                        session.send(bodiless(CommandId::GenericNack, CommandStatus::EsmeRinvcmdlen, sequence));
                        false
                    }
                    None => false,
                };
                if !keep_going || unbind_sent && session.bound.is_none() {
                    break;
                }
                if session.stalled.load(Ordering::Relaxed) {
                    tracing::info!(peer = %session.peer, "SMPP: the peer reads nothing of what it is sent; closing");
                    break;
                }
            }
            () = tokio::time::sleep_until(idle_at), if !unbind_sent => {
                tracing::debug!(peer = %session.peer, "SMPP: idle; unbinding");
                session.unbind().await;
                unbind_sent = true;
                idle_at = Instant::now() + UNBIND_WAIT;
            }
            () = tokio::time::sleep_until(idle_at), if unbind_sent => break,
            () = sleep_until_some(deadline) => session.expire_parts(),
            _ = crate::stopped(&mut stopping), if !unbind_sent => {
                session.unbind().await;
                unbind_sent = true;
                idle_at = Instant::now() + UNBIND_WAIT;
            }
        }
    }
    session.close().await;
    reader.abort();
    if tokio::time::timeout(FLUSH_WAIT, &mut writer).await.is_err() {
        writer.abort();
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Session {
    fn send(&self, command: Command) {
        queue(&self.out, &self.stalled, command);
    }

    /// Handles one command; false when the connection is to close.
    async fn command(&mut self, command: Command) -> bool {
        let sequence = command.sequence_number();
        let id = command.id();
        match command.pdu() {
            Some(Pdu::BindTransmitter(b)) => {
                return self.bind(sequence, b.system_id.as_str(), b.password.as_str(), BindMode::Transmitter).await;
            }
            Some(Pdu::BindReceiver(b)) => {
                return self.bind(sequence, b.system_id.as_str(), b.password.as_str(), BindMode::Receiver).await;
            }
            Some(Pdu::BindTransceiver(b)) => {
                return self.bind(sequence, b.system_id.as_str(), b.password.as_str(), BindMode::Transceiver).await;
            }
            Some(Pdu::EnquireLink) => {
                self.send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::EnquireLinkResp));
                return true;
            }
            Some(Pdu::Unbind) => {
                self.drain().await;
                self.send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::UnbindResp));
                return false;
            }
            _ => {}
        }
        if id == CommandId::UnbindResp {
            return false;
        }
        if id.is_response() {
            // An answer to a deliver_sm (or a generic_nack for one).
            if let Some(receiver) = self.bound.as_ref().and_then(|b| b.receiver.as_ref()) {
                receiver.answered(sequence, command.status());
            }
            return true;
        }
        let Some(bound) = &self.bound else {
            let answer = match id {
                CommandId::SubmitSm
                | CommandId::SubmitMulti
                | CommandId::QuerySm
                | CommandId::CancelSm
                | CommandId::ReplaceSm
                | CommandId::DataSm => response_id(id),
                _ => CommandId::GenericNack,
            };
            self.send(bodiless(answer, CommandStatus::EsmeRinvbndsts, sequence));
            return true;
        };
        match command.pdu() {
            Some(Pdu::SubmitSm(sm)) if bound.mode.transmits() => self.submit(sequence, sm),
            Some(Pdu::SubmitSm(_)) => {
                self.send(bodiless(CommandId::SubmitSmResp, CommandStatus::EsmeRinvbndsts, sequence));
            }
            _ => {
                // Not supported: submit_multi, data_sm, query_sm, cancel_sm, replace_sm, and
                // anything else.
                let answer = match id {
                    CommandId::SubmitMulti
                    | CommandId::QuerySm
                    | CommandId::CancelSm
                    | CommandId::ReplaceSm
                    | CommandId::DataSm => response_id(id),
                    _ => CommandId::GenericNack,
                };
                self.send(bodiless(answer, CommandStatus::EsmeRinvcmdid, sequence));
            }
        }
        true
    }

    /// Binds, or refuses and closes.
    async fn bind(&mut self, sequence: u32, system_id: &str, password: &str, mode: BindMode) -> bool {
        let resp_id = match mode {
            BindMode::Transmitter => CommandId::BindTransmitterResp,
            BindMode::Receiver => CommandId::BindReceiverResp,
            BindMode::Transceiver => CommandId::BindTransceiverResp,
        };
        if self.bound.is_some() {
            self.send(bodiless(resp_id, CommandStatus::EsmeRalybnd, sequence));
            return true;
        }
        let core: &Core = &self.shared.core;
        let config = &self.shared.config;
        let login: SmppLogin = match core.authenticate_smpp(Some(self.peer.ip()), system_id, password).await {
            Ok(login) => login,
            Err(e) => {
                let status = match e {
                    AuthError::Unavailable => CommandStatus::EsmeRsyserr,
                    _ => CommandStatus::EsmeRbindfail,
                };
                tracing::info!(peer = %self.peer, system_id, "SMPP: bind refused ({e})");
                metrics::counter!("switchboard_smpp_binds_refused_total", "reason" => "credentials").increment(1);
                self.send(bodiless(resp_id, status, sequence));
                return false;
            }
        };
        let window = login.limits.window.unwrap_or(config.window).max(1);
        let rate = login.limits.max_per_second.unwrap_or(config.max_per_second);
        let max_binds = login.limits.max_binds.unwrap_or(config.max_binds_per_account);
        let registered =
            core.smpp_binds().register(&login, mode, self.peer, window, max_binds, config.max_binds_per_account);
        let Some(info) = registered else {
            tracing::info!(peer = %self.peer, system_id, "SMPP: bind refused: too many binds");
            metrics::counter!("switchboard_smpp_binds_refused_total", "reason" => "limit").increment(1);
            self.send(bodiless(resp_id, CommandStatus::EsmeRbindfail, sequence));
            return false;
        };
        let name = COctetString::from_string(config.system_id.clone()).unwrap_or_default();
        // The version this side speaks, as SMPP 3.4 has a server say in its bind answer.
        let version = Some(InterfaceVersion::Smpp3_4);
        let resp: Pdu = match mode {
            BindMode::Transmitter => {
                BindTransmitterResp::builder().system_id(name).sc_interface_version(version).build().into()
            }
            BindMode::Receiver => {
                BindReceiverResp::builder().system_id(name).sc_interface_version(version).build().into()
            }
            BindMode::Transceiver => {
                BindTransceiverResp::builder().system_id(name).sc_interface_version(version).build().into()
            }
        };
        self.send(Command::new(CommandStatus::EsmeRok, sequence, resp));
        let receiver = mode.receives().then(|| {
            let receiver =
                Arc::new(Receiver::new(info.clone(), self.out.clone(), self.sequence.clone(), config.deliver_window));
            self.shared.receivers.add(receiver.clone());
            receiver
        });
        tracing::info!(peer = %self.peer, system_id, account = %login.account, mode = mode.as_str(), "SMPP: bound");
        self.bound = Some(Bound {
            info,
            mode,
            window,
            rate: Bucket::new(rate),
            receiver,
            parts: Reassembler::new(config.reassembly_timeout, MAX_INCOMPLETE),
        });
        true
    }

    /// Takes a `submit_sm`: refuses it at once, keeps it as a part, or sends it.
    fn submit(&mut self, sequence: u32, sm: &SubmitSm) {
        let (out, stalled) = (self.out.clone(), self.stalled.clone());
        let send = |command: Command| queue(&out, &stalled, command);
        let Some(bound) = &mut self.bound else { return };
        bound.info.submits.fetch_add(1, Ordering::Relaxed);
        let refuse = |status: CommandStatus| {
            metrics::counter!("switchboard_smpp_submits_total", "status" => status_name(status)).increment(1);
            bodiless(CommandId::SubmitSmResp, status, sequence)
        };
        if !bound.rate.take() {
            send(refuse(CommandStatus::EsmeRthrottled));
            return;
        }
        if bound.info.in_window.load(Ordering::Relaxed) >= bound.window {
            send(refuse(CommandStatus::EsmeRmsgqful));
            return;
        }
        let submitted = match submit::read_submit(sm, Timestamp::now()) {
            Ok(s) => s,
            Err(status) => {
                send(refuse(status));
                return;
            }
        };
        match submitted.concatenation {
            None => {
                let text = submitted.text();
                let Submitted { from, alphanumeric_from, to, extra, .. } = submitted;
                self.spawn_send(from, alphanumeric_from, to, text, extra, vec![sequence]);
            }
            Some(concatenation) if concatenation.total > MAX_PARTS || submitted.data.len() > MAX_PART_OCTETS => {
                send(refuse(CommandStatus::EsmeRinvmsglen));
            }
            Some(concatenation) => {
                let held = (sequence, submitted.alphanumeric_from, submitted.extra.clone());
                let part = Part {
                    from: submitted.from,
                    to: submitted.to,
                    concatenation,
                    data_coding: submitted.data_coding,
                    data: submitted.data,
                };
                let added = bound.parts.add_part(part, held, Instant::now());
                for (released, _, _) in added.released {
                    metrics::counter!("switchboard_smpp_submits_total", "status" => "ESME_RSUBMITFAIL").increment(1);
                    send(bodiless(CommandId::SubmitSmResp, CommandStatus::EsmeRsubmitfail, released));
                }
                if let Some((joined, held)) = added.complete {
                    let (alphanumeric_from, extra) = held.first().map(|h| (h.1, h.2.clone())).unwrap_or_default();
                    let sequences = held.into_iter().map(|h| h.0).collect();
                    self.spawn_send(joined.from, alphanumeric_from, joined.to, joined.text, extra, sequences);
                }
            }
        }
    }

    /// Refuses the parts of messages not completed in time.
    fn expire_parts(&mut self) {
        let Some(bound) = &mut self.bound else { return };
        let released: Vec<Held> = bound.parts.expire(Instant::now());
        for (sequence, _, _) in released {
            metrics::counter!("switchboard_smpp_submits_total", "status" => "ESME_RSUBMITFAIL").increment(1);
            self.send(bodiless(CommandId::SubmitSmResp, CommandStatus::EsmeRsubmitfail, sequence));
        }
    }

    /// Sends one message through the core and answers each of its requests once it is
    /// stored (or refused).
    fn spawn_send(
        &mut self,
        from: String,
        alphanumeric_from: bool,
        to: String,
        text: String,
        extra: SmppSend,
        sequences: Vec<u32>,
    ) {
        let Some(bound) = &self.bound else { return };
        let info = bound.info.clone();
        let account: AccountId = info.account;
        info.in_window.fetch_add(1, Ordering::Relaxed);
        let core = self.shared.core.clone();
        let (out, stalled) = (self.out.clone(), self.stalled.clone());
        self.sends.spawn(async move {
            let fields = SendFields {
                to: &to,
                from: &from,
                alphanumeric_from,
                body: Some(&text),
                media_url: None,
                idempotency_key: None,
            };
            let (status, id) = match core.policy().check_send(fields) {
                Err(e) => (submit::validation_status(&e), None),
                Ok(cmd) => match core.send_smpp(account, cmd, extra).await {
                    Ok(record) => (CommandStatus::EsmeRok, Some(record.id.to_string())),
                    Err(e) => (submit::send_status(e), None),
                },
            };
            for sequence in sequences {
                let answer = match &id {
                    Some(id) => {
                        let message_id = COctetString::from_string(id.clone()).unwrap_or_default();
                        Command::new(status, sequence, SubmitSmResp::builder().message_id(message_id).build())
                    }
                    None => bodiless(CommandId::SubmitSmResp, status, sequence),
                };
                queue(&out, &stalled, answer);
            }
            if status == CommandStatus::EsmeRok {
                info.accepted.fetch_add(1, Ordering::Relaxed);
            }
            metrics::counter!("switchboard_smpp_submits_total", "status" => status_name(status)).increment(1);
            info.in_window.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Waits (within [`STOP_WAIT`]) for the messages taken to be stored and answered.
    async fn drain(&mut self) {
        let wait = async { while self.sends.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_WAIT, wait).await.is_err() {
            self.sends.abort_all();
        }
    }

    /// Unbinds from this side, once every message taken is answered.
    async fn unbind(&mut self) {
        self.drain().await;
        let sequence = next_sequence(&self.sequence);
        self.send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::Unbind));
    }

    /// Ends the session: answers what it took, refuses held parts, forgets the bind, and
    /// tells the writer to close.
    async fn close(&mut self) {
        self.drain().await;
        if let Some(mut bound) = self.bound.take() {
            for (sequence, _, _) in bound.parts.expire(Instant::now() + Duration::from_secs(86_400 * 365)) {
                self.send(bodiless(CommandId::SubmitSmResp, CommandStatus::EsmeRsubmitfail, sequence));
            }
            if let Some(receiver) = &bound.receiver {
                self.shared.receivers.remove(bound.info.account, bound.info.id);
                receiver.fail_all();
            }
            self.shared.core.smpp_binds().remove(bound.info.id);
            tracing::info!(peer = %self.peer, system_id = %bound.info.system_id, "SMPP: bind ended");
        }
        let _ = self.out.try_send(None);
    }
}

/// A command status's SMPP name, for the metrics.
fn status_name(status: CommandStatus) -> &'static str {
    match status {
        CommandStatus::EsmeRok => "ESME_ROK",
        CommandStatus::EsmeRinvdstadr => "ESME_RINVDSTADR",
        CommandStatus::EsmeRinvsrcadr => "ESME_RINVSRCADR",
        CommandStatus::EsmeRthrottled => "ESME_RTHROTTLED",
        CommandStatus::EsmeRmsgqful => "ESME_RMSGQFUL",
        CommandStatus::EsmeRsubmitfail => "ESME_RSUBMITFAIL",
        CommandStatus::EsmeRinvmsglen => "ESME_RINVMSGLEN",
        CommandStatus::EsmeRinvdcs => "ESME_RINVDCS",
        CommandStatus::EsmeRinvesmclass => "ESME_RINVESMCLASS",
        CommandStatus::EsmeRinvsched => "ESME_RINVSCHED",
        CommandStatus::EsmeRinvexpiry => "ESME_RINVEXPIRY",
        CommandStatus::EsmeRsyserr => "ESME_RSYSERR",
        _ => "other",
    }
}
