//! The upstream provider trait of Switchboard and its built-in simulator.
//!
//! A [`Provider`] takes one outbound message and either accepts it (returning the upstream's
//! id for it and for each of its parts) or refuses it with a [`ProviderError`] that says which
//! TextingLine error type applies and whether trying again later may succeed. What the
//! upstream reports later (a delivery [`Receipt`] for a part, an [`InboundMessage`] from a
//! handset) it sends as a [`ProviderEvent`] on the [`EventSink`] it was built with. A provider
//! never touches storage or the ledger: the core records what it says.
//!
//! Crates that implement a provider use the re-exported [`async_trait`] so that they agree
//! with this crate on its version.

pub mod router;
pub mod simulator;

use std::fmt;

pub use async_trait::async_trait;
use switchboard_domain::{AccountId, Encoding, ErrorType, MessageId, MessageKind, Msisdn, Timestamp};
use tokio::sync::mpsc;

pub use router::{RouteConfig, Router, RouterError, SharedLimits, UpstreamLimits};
pub use simulator::{Simulator, SimulatorConfig};

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
    pub from: Msisdn,
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
}

/// Where a provider sends its events; the core reads the other end.
pub type EventSink = mpsc::UnboundedSender<ProviderEvent>;

/// A channel for provider events: give the sink to the provider and the receiver to the core.
pub fn event_channel() -> (EventSink, mpsc::UnboundedReceiver<ProviderEvent>) {
    mpsc::unbounded_channel()
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
    /// A description for the message's `errorMessage`.
    pub message: String,
}

impl ProviderError {
    /// A permanent failure with the type's standard description.
    pub fn permanent(error_type: ErrorType) -> Self {
        Self { error_type, retryable: false, unavailable: false, message: error_type.description().to_owned() }
    }
    /// A permanent failure with a description of its own.
    pub fn permanent_with(error_type: ErrorType, message: impl Into<String>) -> Self {
        Self { error_type, retryable: false, unavailable: false, message: message.into() }
    }
    /// A failure that may pass on a later attempt.
    pub fn retryable(error_type: ErrorType, message: impl Into<String>) -> Self {
        Self { error_type, retryable: true, unavailable: false, message: message.into() }
    }
    /// The upstream cannot take messages now; see [`ProviderError::unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { error_type: ErrorType::ProviderError, retryable: true, unavailable: true, message: message.into() }
    }
}

/// How an upstream stands, for the admin API and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

impl fmt::Debug for dyn Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Provider({})", self.name())
    }
}
