//! Switchboard's webhook deliveries: the worker that posts events, signed, and retries them.
//!
//! - [`worker`]: the delivery worker, which claims due deliveries from the store's outbox,
//!   posts them signed with the endpoint's secret, and records what came of them, retrying with
//!   backoff for up to a day.
//!
//! Signatures and the sealing of the secrets the store keeps live in `switchboard-signing`,
//! which has no storage, so that an HTTP upstream or a client can check a signature without
//! the SQL drivers this crate brings.
//!
//! The worker does not know what an event's JSON looks like: the HTTP API crate, which knows
//! the dialects, supplies it as a [`Render`].

pub mod worker;

pub use worker::{Worker, WorkerConfig, start};

use switchboard_storage::{DeliveryRecord, MessageRecord};

/// Writes the JSON body of one event, as the receivers of this server expect it.
pub trait Render: Send + Sync + 'static {
    /// The body posted for `delivery`, an event about `message` (as it is now).
    fn render(&self, delivery: &DeliveryRecord, message: &MessageRecord) -> Vec<u8>;
}
