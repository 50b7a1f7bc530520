//! Switchboard's value types, shared by every layer and by the client crate.
//!
//! Nothing here does I/O or is async. Every value that comes from outside (a phone number,
//! a message id, a message text) is built through a fallible parser, so a value of one of these
//! types is known to be valid. The [`wire`] module holds the JSON shapes of the HTTP API, so
//! that the server and `switchboard-client` agree on them by construction.

#![deny(missing_docs)]

#[macro_use]
pub mod message;
pub mod destination;
pub mod encoding;
pub mod ids;
pub mod phone;
pub mod sealed;
pub mod timestamp;
pub mod url_policy;
pub mod wire;

pub use destination::{AccountDestinations, Destination, DestinationRules, NumberType, Region, RegionError};
pub use encoding::{Encoding, TextInfo, UnsupportedCharacter};
pub use ids::{AccountId, BatchId, EventId, IdError, MessageId};
pub use message::{Dialect, Direction, ErrorType, EventType, MessageKind, MessageStatus, StatusGroup};
pub use phone::{Alphanumeric, Msisdn, PhoneError, SenderId};
pub use sealed::SealedSecret;
pub use timestamp::Timestamp;
pub use url_policy::{Cidr, UrlError, UrlPolicy};

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
