//! A small ESME for tests of the SMPP server, on rusmpp's codec: it binds, sends requests and
//! raw bytes, waits for the answer to each request, and keeps the `deliver_sm` that come
//! meanwhile for the test to read and answer.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rusmpp::command::CommandParts;
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSm, SubmitSm};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// How long a test waits for anything from the server.
pub const WAIT: Duration = Duration::from_secs(20);

/// How an ESME binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sends only.
    Transmitter,
    /// Receives only.
    Receiver,
    /// Both.
    Transceiver,
}

/// The connection an [`Esme`] speaks over: TCP, or TLS over TCP.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// One ESME connection.
pub struct Esme {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    sequence: u32,
    /// Requests from the server (`deliver_sm`, `unbind`) read while waiting for an answer.
    pub requests: VecDeque<Command>,
    /// Answers read while waiting for another, by sequence number.
    answers: HashMap<u32, Command>,
}

impl std::fmt::Debug for Esme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Esme").field("sequence", &self.sequence).finish_non_exhaustive()
    }
}

impl Esme {
    /// Connects over TCP.
    pub async fn connect(addr: SocketAddr) -> Esme {
        let stream = TcpStream::connect(addr).await.expect("connect to the SMPP server");
        Esme::over(Box::new(stream))
    }

    /// Speaks over a connection made by the caller (TLS, say).
    pub fn over(stream: Box<dyn Stream>) -> Esme {
        Esme { stream, buf: BytesMut::new(), sequence: 0, requests: VecDeque::new(), answers: HashMap::new() }
    }

    /// Connects and binds; panics unless the bind succeeds.
    pub async fn bound(addr: SocketAddr, mode: Mode, system_id: &str, password: &str) -> Esme {
        let mut esme = Esme::connect(addr).await;
        let status = esme.bind(mode, system_id, password).await;
        assert_eq!(status, CommandStatus::EsmeRok, "bind as {mode:?}");
        esme
    }

    /// Sends a request; its sequence number.
    pub async fn send(&mut self, pdu: impl Into<Pdu>) -> u32 {
        self.sequence += 1;
        let sequence = self.sequence;
        self.write(Command::new(CommandStatus::EsmeRok, sequence, pdu)).await;
        sequence
    }

    /// Writes a command.
    pub async fn write(&mut self, command: Command) {
        let mut out = BytesMut::new();
        CommandCodec::new().encode(&command, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    /// Writes bytes as they are.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next command from the server, or `None` when the connection closed.
    pub async fn read(&mut self) -> Option<Command> {
        let read = async {
            loop {
                match CommandCodec::new().without_max_length().decode(&mut self.buf) {
                    Ok(Some(command)) => return Some(command),
                    Ok(None) => {}
                    Err(e) => panic!("the server sent a PDU that does not decode: {e}"),
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(WAIT, read).await.expect("the server answered in time")
    }

    /// Whether the server closes the connection (within [`WAIT`]), reading past anything
    /// it still sends.
    pub async fn closed(&mut self) -> bool {
        loop {
            match self.read().await {
                None => return true,
                Some(c) if c.id() == CommandId::Unbind => {
                    let answer = Command::from_parts(CommandParts::new(
                        CommandId::UnbindResp,
                        CommandStatus::EsmeRok,
                        c.sequence_number(),
                        None,
                    ));
                    self.write(answer).await;
                }
                Some(_) => {}
            }
        }
    }

    /// The answer to the request `sequence`, keeping the server's requests read meanwhile.
    pub async fn answer_to(&mut self, sequence: u32) -> Command {
        if let Some(answer) = self.answers.remove(&sequence) {
            return answer;
        }
        loop {
            let command = self.read().await.expect("an answer before the connection closed");
            if !command.id().is_response() {
                self.requests.push_back(command);
            } else if command.sequence_number() == sequence {
                return command;
            } else {
                self.answers.insert(command.sequence_number(), command);
            }
        }
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&mut self, pdu: impl Into<Pdu>) -> Command {
        let sequence = self.send(pdu).await;
        self.answer_to(sequence).await
    }

    /// Binds; the answer's status.
    pub async fn bind(&mut self, mode: Mode, system_id: &str, password: &str) -> CommandStatus {
        let id = COctetString::from_string(system_id.to_owned()).expect("a system_id of at most 15 characters");
        let pw = COctetString::from_string(password.to_owned()).expect("a password of at most 8 characters");
        let version = InterfaceVersion::Smpp3_4;
        let pdu: Pdu = match mode {
            Mode::Transmitter => {
                BindTransmitter::builder().system_id(id).password(pw).interface_version(version).build().into()
            }
            Mode::Receiver => {
                BindReceiver::builder().system_id(id).password(pw).interface_version(version).build().into()
            }
            Mode::Transceiver => {
                BindTransceiver::builder().system_id(id).password(pw).interface_version(version).build().into()
            }
        };
        self.request(pdu).await.status()
    }

    /// Submits; the answer's status and message id.
    pub async fn submit(&mut self, sm: SubmitSm) -> (CommandStatus, Option<String>) {
        let answer = self.request(sm).await;
        (answer.status(), message_id(&answer))
    }

    /// The next `deliver_sm` from the server (answered by the caller with [`Esme::answer`]).
    pub async fn next_deliver(&mut self) -> (u32, DeliverSm) {
        loop {
            let command = match self.requests.pop_front() {
                Some(c) => c,
                None => self.read().await.expect("a deliver_sm before the connection closed"),
            };
            if let Some(Pdu::DeliverSm(d)) = command.pdu() {
                return (command.sequence_number(), d.clone());
            }
        }
    }

    /// Answers the server's request `sequence` (a `deliver_sm`) with `status`.
    pub async fn answer(&mut self, sequence: u32, status: CommandStatus) {
        let answer = match status {
            CommandStatus::EsmeRok => Command::new(
                status,
                sequence,
                rusmpp::pdus::DeliverSmResp::builder().message_id(COctetString::empty()).build(),
            ),
            _ => Command::from_parts(CommandParts::new(CommandId::DeliverSmResp, status, sequence, None)),
        };
        self.write(answer).await;
    }
}

/// The message id of a `submit_sm_resp`.
pub fn message_id(answer: &Command) -> Option<String> {
    match answer.pdu() {
        Some(Pdu::SubmitSmResp(r)) => Some(r.message_id().as_str().to_owned()),
        _ => None,
    }
}

/// A `submit_sm` from `from` (a number with `+`, or an alphanumeric sender ID) to `to` (with
/// `+`), with `octets` in `data_coding`, asking for receipts of every final status.
pub fn submit_sm(from: &str, to: &str, data_coding: u8, octets: &[u8]) -> SubmitSm {
    let (ton, npi, from) = match from.strip_prefix('+') {
        Some(digits) => (Ton::International, Npi::Isdn, digits),
        None => (Ton::Alphanumeric, Npi::Unknown, from),
    };
    SubmitSm::builder()
        .source_addr_ton(ton)
        .source_addr_npi(npi)
        .source_addr(COctetString::from_string(from.to_owned()).expect("a source"))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(COctetString::from_string(to.trim_start_matches('+').to_owned()).expect("a destination"))
        .esm_class(EsmClass::from(0))
        .registered_delivery(RegisteredDelivery::from(1))
        .data_coding(DataCoding::from(data_coding))
        .short_message(OctetString::from_vec(octets.to_vec()).expect("at most 255 octets"))
        .build()
}

/// A GSM-7 `submit_sm` of ASCII text (ASCII letters, digits and spaces are the same septets).
pub fn text_sm(from: &str, to: &str, text: &str) -> SubmitSm {
    submit_sm(from, to, 0, text.as_bytes())
}

/// The receipt text of a `deliver_sm`.
pub fn short_text(d: &DeliverSm) -> String {
    String::from_utf8_lossy(d.short_message().as_ref()).into_owned()
}
