//! The upstream provider trait of Switchboard and its built-in simulator.
//!
//! A [`Provider`] takes one outbound message and either accepts it (returning the upstream's
//! id for it) or refuses it with a [`ProviderError`] that says which TextingLine error type
//! applies and whether trying again later may succeed. A provider never touches storage or
//! the ledger: the dispatcher records what it says.
//!
//! Crates that implement a provider use the re-exported [`async_trait`] so that they agree
//! with this crate on its version.

pub mod simulator;

use std::fmt;

pub use async_trait::async_trait;
use switchboard_domain::{Encoding, ErrorType, MessageId, MessageKind, Msisdn};

pub use simulator::{Simulator, SimulatorConfig};

/// A message handed to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// Switchboard's id for it.
    pub id: MessageId,
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
}

/// The upstream refused the message, or could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type} ({}): {message}", if *retryable { "retryable" } else { "permanent" })]
pub struct ProviderError {
    /// TextingLine's classification.
    pub error_type: ErrorType,
    /// Whether a later attempt may succeed.
    pub retryable: bool,
    /// A description for the message's `errorMessage`.
    pub message: String,
}

impl ProviderError {
    /// A permanent failure with the type's standard description.
    pub fn permanent(error_type: ErrorType) -> Self {
        Self { error_type, retryable: false, message: error_type.description().to_owned() }
    }
    /// A failure that may pass on a later attempt.
    pub fn retryable(error_type: ErrorType, message: impl Into<String>) -> Self {
        Self { error_type, retryable: true, message: message.into() }
    }
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
}

impl fmt::Debug for dyn Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Provider({})", self.name())
    }
}
