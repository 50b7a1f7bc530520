//! Switchboard's webhook deliveries: signs events, posts them, retries them, and seals the
//! signing secrets it stores.
//!
//! - [`signing`]: the Standard Webhooks scheme (the one Svix uses): [`Secret`], [`sign`],
//!   [`verify`] and the three headers.
//! - [`sealing`]: [`Sealer`], which encrypts endpoints' secrets for storage under a key derived
//!   from the server secret, and derives the secrets of messages' own notification URLs.
//! - [`worker`]: the delivery worker, which claims due deliveries from the store's outbox,
//!   posts them, and records what came of them, retrying with backoff for up to a day.
//!
//! The worker does not know what an event's JSON looks like: the HTTP API crate, which knows
//! the dialects, supplies it as a [`Render`].

pub mod sealing;
pub mod signing;
pub mod worker;

pub use sealing::{SealError, Sealer};
pub use signing::{Secret, SecretError, sign, verify};
pub use worker::{Worker, WorkerConfig, start};

use switchboard_storage::{DeliveryRecord, MessageRecord};

/// Writes the JSON body of one event, as the receivers of this server expect it.
pub trait Render: Send + Sync + 'static {
    /// The body posted for `delivery`, an event about `message` (as it is now).
    fn render(&self, delivery: &DeliveryRecord, message: &MessageRecord) -> Vec<u8>;
}
