//! A Rust client for a [Switchboard](https://github.com/switchboard-sms/switchboard) SMS/MMS
//! gateway: its three messaging dialects, its admin API, and the check of the webhooks it
//! sends.
//!
//! | API | Client | Authenticates with |
//! |---|---|---|
//! | TextingLine, `/api/v1/messaging` | [`TextingLineClient`] | an API key id and secret (HTTP Basic) |
//! | Mudbase, `/api/messaging/projects` | [`MudbaseClient`] | the API key as `X-API-Key`, or an access token |
//! | Bird channels, `/workspaces` | [`BirdClient`] | the API key as `AccessKey`, or an access token |
//! | Admin, `/admin/v1` | [`AdminClient`] | the operator token |
//!
//! The request and answer types are the server's own ([`wire`], from `switchboard-domain`,
//! re-exported here with the values they use), so the client reads exactly the JSON the
//! server writes.
//!
//! # Sending a message
//!
//! ```no_run
//! use switchboard_client::wire::TlSendRequest;
//! use switchboard_client::{ClientError, TextingLineClient};
//!
//! # async fn run() -> Result<(), ClientError> {
//! let client = TextingLineClient::new("https://sms.example.com", "key_…", "sk_…")?;
//! let request = TlSendRequest {
//!     to: "+18005551234".into(),
//!     from: "+18005559876".into(),
//!     body: Some("Your verification code is 482910".into()),
//!     ..Default::default()
//! };
//! match client.send(&request).await {
//!     Ok(sent) => println!("{} is {:?}", sent.message.id, sent.message.status),
//!     // The server's answer, read from the dialect's error shape.
//!     Err(ClientError::Api(e)) if e.code.as_ref().is_some_and(|c| *c == 33023) => {
//!         println!("top up the account: {}", e.message)
//!     }
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # One connection, every dialect
//!
//! A [`Switchboard`] holds the base URL and one `reqwest::Client` (its own, or one given to
//! [`ClientBuilder::http_client`]), with the timeouts and user agent of its
//! [`ClientBuilder`]; the clients it makes share its connections.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use switchboard_client::{BirdAuth, Switchboard, Uuid};
//!
//! # async fn run() -> Result<(), switchboard_client::ClientError> {
//! let switchboard = Switchboard::builder("https://sms.example.com")
//!     .http_client(reqwest::Client::new())
//!     .timeout(Duration::from_secs(20))
//!     .build()?;
//! let account = Uuid::parse_str("0195a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5c").unwrap();
//! let channel = Uuid::parse_str("0195a1b2-8d9e-7f00-9a1b-2c3d4e5f6a7b").unwrap();
//! let bird = switchboard.bird(account, BirdAuth::AccessKey("key_…:sk_…".into()));
//! bird.send_text(channel, "+31612345678", "Your table is ready").await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Every call returns [`ClientError`]: [`ClientError::Api`] when the server answered with an
//! error, as an [`ApiError`] with its status, the [`Dialect`] that answered, its code
//! ([`ErrorCode`]: a number in TextingLine, a name in the others), TextingLine's `type`, the
//! message, Bird's problems by field, the `Retry-After` and the body; [`ClientError::Http`]
//! when the server could not be reached or its answer not read.
//!
//! # Sends that are safe to try again
//!
//! A TextingLine send that fails in a way that may pass (no connection, a timeout, a cut
//! connection, `408`, `429`, `5xx`) is tried again under the same idempotency key, which the
//! client generates for a request without one, so the server stores and charges it once
//! ([`RetryPolicy`]). Mudbase and Bird sends have no idempotency key and are tried once.
//!
//! # Receiving webhooks
//!
//! The server signs its webhooks in the Standard Webhooks scheme; [`webhooks::Verifier`]
//! checks them (it is `switchboard-signing`'s, which a receiver can also use alone, without
//! HTTP client):
//!
//! ```no_run
//! use switchboard_client::webhooks::{SignedHeaders, Verifier, WebhookEvent};
//!
//! # fn run(header: impl Fn(&str) -> Option<&'static str>, body: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! verifier.verify(&SignedHeaders::from_lookup(header)?, body)?;
//! let event: WebhookEvent = serde_json::from_slice(body)?;
//! println!("{:?}: {} is {:?}", event.kind, event.data.id, event.data.status);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod admin;
mod bird;
mod error;
mod http;
mod mudbase;
mod retry;
mod textingline;

pub use admin::{AdminClient, DeliveryQuery, LedgerQuery, MessageQuery};
pub use bird::{BirdAuth, BirdClient};
pub use error::{ApiError, ClientError, Dialect, ErrorCode, Result};
pub use http::{ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Switchboard};
pub use mudbase::{MudbaseAuth, MudbaseClient};
/// The HTTP client this crate sends through, for [`ClientBuilder::http_client`].
pub use reqwest;
pub use retry::RetryPolicy;
/// The server's value types (ids, statuses, phone numbers, timestamps).
pub use switchboard_domain as domain;
/// The request and answer types of every dialect and of the admin API.
pub use switchboard_domain::wire;
pub use switchboard_domain::{ErrorType, EventType, MessageId, MessageStatus, Region, Timestamp};
pub use textingline::{Sent, TextingLineClient};
pub use uuid::Uuid;

/// Checking the webhooks the server sends: [`Verifier`](webhooks::Verifier) from
/// `switchboard-signing`, and the bodies it posts.
pub mod webhooks {
    pub use switchboard_domain::wire::webhooks::{BalanceLowData, BalanceLowEvent, EventMessage, WebhookEvent};
    pub use switchboard_signing::receiving::{DEFAULT_TOLERANCE, SignedHeaders, Verifier, VerifyError};
    pub use switchboard_signing::signing::{ID_HEADER, SIGNATURE_HEADER, Secret, SecretError, TIMESTAMP_HEADER};
}

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
