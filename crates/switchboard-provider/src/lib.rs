//! The upstream provider trait of Switchboard and its built-in simulator.
//!
//! A [`Provider`] takes one outbound message and either accepts it (returning the upstream's
//! id for it and for each of its parts) or refuses it with a [`ProviderError`] that says which
//! TextingLine error type applies and whether trying again later may succeed. What the
//! upstream reports later (a delivery [`Receipt`] for a part, an [`InboundMessage`] from a
//! handset) it sends as a [`ProviderEvent`] on the [`EventSink`] it was built with. A provider
//! never touches storage or the ledger: the core records what it says.
//!
//! An upstream that must not acknowledge an event to its sender before it is stored (an SMSC's
//! `deliver_sm`, another server's webhook) reports it with [`EventSink::report`] and waits for
//! the [`Stored`] answer, which the core gives only after the transaction that stored the event
//! has committed; an event that could not be stored gets [`NotStored`], so that the sender can be
//! asked to send it again.
//!
//! Crates that implement a provider use the re-exported [`async_trait`] so that they agree
//! with this crate on its version.

pub mod router;
pub mod simulator;

use std::fmt;

pub use async_trait::async_trait;
use switchboard_domain::{AccountId, Encoding, ErrorType, MessageId, MessageKind, Msisdn, SenderId, Timestamp};
use tokio::sync::{mpsc, oneshot};

pub use router::{RouteConfig, Router, RouterError, SharedLimits, UpstreamLimits};
pub use simulator::{SentPart, Simulator, SimulatorConfig};

/// A message handed to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// Switchboard's id for it.
    pub id: MessageId,
    /// The account sending it (routes can be chosen by account).
    pub account_id: AccountId,
    /// Recipient.
    pub to: Msisdn,
    /// Sender.
    pub from: SenderId,
    /// SMS or MMS.
    pub kind: MessageKind,
    /// Text.
    pub body: Option<String>,
    /// Media URLs of an MMS, in order.
    pub media: Vec<String>,
    /// Encoding of the text.
    pub encoding: Encoding,
    /// SMS parts.
    pub segments: u32,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The parts an earlier attempt got the upstream to take: (part from 1, the upstream's id
    /// for it). An upstream that sends parts one by one sends these no more.
    pub sent_parts: Vec<(u32, String)>,
}

/// The upstream took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The upstream's id for the message.
    pub provider_message_id: String,
    /// The upstream's id for each part, in order, when it gives each part its own (receipts
    /// name these); empty means one part known by `provider_message_id`.
    pub parts: Vec<String>,
}

/// What a delivery receipt says of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// It reached the handset.
    Delivered,
    /// The carrier could not deliver it.
    Undelivered,
    /// The carrier refused it.
    Failed,
}

/// A delivery receipt for one part of a sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The upstream's id for the part, as the submission gave it.
    pub provider_ref: String,
    /// What happened.
    pub status: ReceiptStatus,
    /// Why it failed, for a failure.
    pub error_type: Option<ErrorType>,
    /// The upstream's description of a failure.
    pub description: Option<String>,
    /// When it happened, as the upstream says.
    pub at: Timestamp,
}

/// A message from a handset to one of the gateway's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The handset.
    pub from: Msisdn,
    /// The gateway's number it was sent to.
    pub to: Msisdn,
    /// Text.
    pub body: Option<String>,
    /// Media URLs (an MMS).
    pub media: Vec<String>,
    /// The upstream's id for it.
    pub provider_ref: Option<String>,
    /// When it was received.
    pub at: Timestamp,
}

/// Something an upstream reports on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    /// A delivery receipt.
    Receipt(Receipt),
    /// An inbound message.
    Inbound(InboundMessage),
    /// The upstream took one part of a message it is still sending; reported (and waited on)
    /// so that no later attempt sends that part again, whatever becomes of this one.
    PartSent {
        /// The message.
        message: MessageId,
        /// Which part, from 1.
        part: u32,
        /// The upstream's id for the part.
        provider_ref: String,
    },
    /// The upstream can take messages again (an SMPP bind is back), so the messages that
    /// found it unable to may go now.
    Ready {
        /// The upstream's name.
        upstream: String,
    },
}

/// What became of an event reported with [`EventSink::report`], once the core has dealt with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// It is stored: the transaction that holds it has committed.
    Stored,
    /// It can never be stored (an inbound message to a number that is no account's, a message
    /// that fails its checks): asking for it again would bring the same answer.
    Refused,
}

/// An event reported with [`EventSink::report`] was not stored (storage failed, or the server
/// is stopping): the upstream should have it sent again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event was not stored")]
pub struct NotStored;

/// Where the core says what became of one event. Dropping it unanswered means [`NotStored`].
#[derive(Debug, Default)]
pub struct Ack(Option<oneshot::Sender<Stored>>);

impl Ack {
    /// An acknowledgement nobody waits for (an event sent with [`EventSink::send`]).
    pub fn none() -> Self {
        Ack(None)
    }

    /// Whether the upstream waits for this answer.
    pub fn is_awaited(&self) -> bool {
        self.0.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Says that the event is stored, or can never be.
    pub fn done(self, outcome: Stored) {
        if let Some(tx) = self.0 {
            let _ = tx.send(outcome);
        }
    }

    /// Says that the event is stored: its transaction has committed.
    pub fn stored(self) {
        self.done(Stored::Stored);
    }

    /// Says that the event can never be stored.
    pub fn refused(self) {
        self.done(Stored::Refused);
    }

    /// Says that the event was not stored (the same as dropping the acknowledgement).
    pub fn not_stored(self) {
        drop(self);
    }
}

/// The answer an upstream waits for after [`EventSink::report`].
#[derive(Debug)]
pub struct Acknowledgement(oneshot::Receiver<Stored>);

impl Acknowledgement {
    /// Waits until the core has stored the event (or refused it for good), or has given up on
    /// it: [`NotStored`] when storing failed or the server is stopping.
    pub async fn wait(self) -> Result<Stored, NotStored> {
        self.0.await.map_err(|_| NotStored)
    }
}

/// One event on its way to the core, with where to say what became of it.
#[derive(Debug)]
pub struct Report {
    /// The event.
    pub event: ProviderEvent,
    /// Where to say whether it was stored.
    pub ack: Ack,
}

/// The event sink is closed: nobody reads events any more (the server is stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event sink is closed")]
pub struct SinkClosed;

/// Where a provider sends its events; the core reads the other end ([`EventReceiver`]).
#[derive(Debug, Clone)]
pub struct EventSink(mpsc::UnboundedSender<Report>);

impl EventSink {
    /// Sends an event without waiting to hear that it is stored (the simulator's receipts,
    /// which it can always derive again).
    pub fn send(&self, event: ProviderEvent) -> Result<(), SinkClosed> {
        self.0.send(Report { event, ack: Ack::none() }).map_err(|_| SinkClosed)
    }

    /// Sends an event and returns what to wait on to hear that it is stored.
    pub fn report(&self, event: ProviderEvent) -> Result<Acknowledgement, SinkClosed> {
        let (tx, rx) = oneshot::channel();
        self.0.send(Report { event, ack: Ack(Some(tx)) }).map_err(|_| SinkClosed)?;
        Ok(Acknowledgement(rx))
    }

    /// Whether the core has stopped reading events.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// The core's end of the event channel.
pub type EventReceiver = mpsc::UnboundedReceiver<Report>;

/// A channel for provider events: give the sink to the provider and the receiver to the core.
pub fn event_channel() -> (EventSink, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (EventSink(tx), rx)
}

/// The upstream refused the message, or could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type} ({}): {message}", if *unavailable { "unavailable" } else if *retryable { "retryable" } else { "permanent" })]
pub struct ProviderError {
    /// TextingLine's classification.
    pub error_type: ErrorType,
    /// Whether a later attempt may succeed.
    pub retryable: bool,
    /// The upstream could not take any message just now (not bound, not answering): the
    /// message never reached it, and waits for it without using up its attempts, until its
    /// validity ends.
    pub unavailable: bool,
    /// The upstream took some of the message's parts before this error: the rest must go
    /// through it, so a router tries no other upstream for it.
    pub partly_taken: bool,
    /// A description for the message's `errorMessage`.
    pub message: String,
}

impl ProviderError {
    /// A permanent failure with the type's standard description.
    pub fn permanent(error_type: ErrorType) -> Self {
        Self {
            error_type,
            retryable: false,
            unavailable: false,
            partly_taken: false,
            message: error_type.description().to_owned(),
        }
    }
    /// A permanent failure with a description of its own.
    pub fn permanent_with(error_type: ErrorType, message: impl Into<String>) -> Self {
        Self { error_type, retryable: false, unavailable: false, partly_taken: false, message: message.into() }
    }
    /// A failure that may pass on a later attempt.
    pub fn retryable(error_type: ErrorType, message: impl Into<String>) -> Self {
        Self { error_type, retryable: true, unavailable: false, partly_taken: false, message: message.into() }
    }
    /// The upstream cannot take messages now; see [`ProviderError::unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            error_type: ErrorType::ProviderError,
            retryable: true,
            unavailable: true,
            partly_taken: false,
            message: message.into(),
        }
    }

    /// The same error, marked as coming after the upstream took some of the message's parts.
    pub fn after_parts_taken(self) -> Self {
        Self { partly_taken: true, ..self }
    }
}

/// How an upstream stands, for the admin API and the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamStatus {
    /// Its configured name.
    pub name: String,
    /// What it is: `simulator`, `smpp`, `http`.
    pub kind: String,
    /// Whether it can take messages now (bound, or passing its health checks).
    pub connected: bool,
    /// Messages handed to it and not yet answered.
    pub in_flight: u64,
    /// Most messages it may have in flight (its window); 0 when unbounded.
    pub window: u64,
    /// Messages it took.
    pub sent: u64,
    /// Messages it refused or could not be reached for.
    pub failed: u64,
    /// A short description of its state (the last error, the peer), if any.
    pub detail: Option<String>,
    /// The most messages a second it sends now: its cap, or the lower rate it learned from the
    /// upstream's throttling; `None` when not limited.
    pub rate_per_second: Option<f64>,
    /// How often the upstream throttled (asked it to slow down) since the server started.
    pub throttled: u64,
    /// The last error a send to it met, and when (kept by the [`Router`]); `None` when none
    /// did since the server started.
    pub last_error: Option<(Timestamp, String)>,
}

/// An upstream that sends messages: a carrier link, another messaging API, or the simulator.
///
/// `send` may be called concurrently from many tasks. It must return within the timeout the
/// dispatcher gives it, or be cancelled; a cancelled send is retried, so upstreams that can
/// deduplicate should use [`OutboundMessage::id`] as their reference.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// Hands one message to the upstream.
    async fn send(&self, message: &OutboundMessage) -> Result<Submission, ProviderError>;

    /// How its upstreams stand (a router reports each of its upstreams).
    fn status(&self) -> Vec<UpstreamStatus> {
        Vec::new()
    }

    /// Whether it sends a long message part by part and honours
    /// [`OutboundMessage::sent_parts`] (an SMPP upstream). One that does not would send the
    /// parts already taken again, so a router gives it no message that has any.
    fn sends_parts(&self) -> bool {
        false
    }

    /// Stops it cleanly as the server stops: from then on `send` answers `unavailable`, and an
    /// upstream that holds sessions (an SMPP bind) closes them as its protocol asks, once what
    /// is in flight has been answered or has timed out. Does nothing by default.
    async fn shutdown(&self) {}
}

impl fmt::Debug for dyn Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Provider({})", self.name())
    }
}
