//! Switchboard's webhook signatures, with no storage and no I/O, so that whatever signs or
//! checks a webhook (the delivery worker, an HTTP upstream's callback, an application that
//! receives Switchboard's webhooks) can use them without database drivers.
//!
//! Switchboard signs every webhook request in the [Standard Webhooks](https://www.standardwebhooks.com/)
//! scheme (the one Svix uses): the headers `webhook-id`, `webhook-timestamp` and
//! `webhook-signature`, the last holding `v1,` and the base64 of HMAC-SHA256 over
//! `{id}.{timestamp}.{body}` keyed with the endpoint's secret (`whsec_…`). Any Standard
//! Webhooks library accepts its requests, and this crate accepts theirs.
//!
//! # Receiving webhooks
//!
//! Make a [`Verifier`] from the endpoint's secret and check each request's headers against
//! its raw body, before parsing it:
//!
//! ```no_run
//! use switchboard_signing::{SignedHeaders, Verifier, VerifyError};
//!
//! /// Checks one request; `header` looks a header up by its lower-case name.
//! fn check<'a>(
//!     verifier: &Verifier,
//!     header: impl Fn(&str) -> Option<&'a str>,
//!     body: &[u8],
//! ) -> Result<(), VerifyError> {
//!     let headers = SignedHeaders::from_lookup(header)?;
//!     verifier.verify(&headers, body)
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let received = [("webhook-id", "evt_…"), ("webhook-timestamp", "1700000000"), ("webhook-signature", "v1,…")];
//! let lookup = |name: &str| received.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
//! match check(&verifier, lookup, br#"{"type":"message.delivered"}"#) {
//!     Ok(()) => println!("authentic"),
//!     Err(why) => println!("refused: {why}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The [`Verifier`] refuses a request whose timestamp is more than five minutes from now
//! ([`Verifier::tolerance`] changes that), so a captured request cannot be replayed later.
//! Requests can come more than once: deduplicate on `webhook-id`.
//!
//! # Modules
//!
//! - [`receiving`]: [`Verifier`], [`SignedHeaders`] and [`VerifyError`], for receivers.
//! - [`signing`]: [`Secret`], [`sign`], [`verify`] and the header names, for senders.
//! - `sealing` (with the default `sealing` feature): `Sealer`, which encrypts endpoints'
//!   secrets for storage under a key derived from the server's keys, and derives the secrets
//!   of messages' own notification URLs. A receiver turns the feature off
//!   (`default-features = false`) and leaves out its AES implementation.

#![deny(missing_docs)]

pub mod receiving;
#[cfg(feature = "sealing")]
pub mod sealing;
pub mod signing;

pub use receiving::{DEFAULT_TOLERANCE, SignedHeaders, Verifier, VerifyError};
#[cfg(feature = "sealing")]
pub use sealing::{SealError, Sealer};
pub use signing::{Secret, SecretError, sign, verify};
#[cfg(feature = "sealing")]
pub use switchboard_domain::SealedSecret;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
