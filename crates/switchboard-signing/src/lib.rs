//! Switchboard's webhook signatures and sealed signing secrets, with no storage and no I/O, so
//! that whatever signs or checks a webhook (the delivery worker, the core, an HTTP upstream's
//! callback, a receiver written in Rust) can use them without the SQL drivers.
//!
//! - [`signing`]: the Standard Webhooks scheme (the one Svix uses): [`Secret`], [`sign`],
//!   [`verify`] and the three headers.
//! - [`sealing`]: [`Sealer`], which encrypts endpoints' secrets for storage under a key derived
//!   from the server's keys, and derives the secrets of messages' own notification URLs. What it
//!   seals is a [`SealedSecret`], the domain's opaque value that the store keeps.

pub mod sealing;
pub mod signing;

pub use sealing::{SealError, Sealer};
pub use signing::{Secret, SecretError, sign, verify};
pub use switchboard_domain::SealedSecret;
