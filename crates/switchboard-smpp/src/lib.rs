//! An SMPP 3.4 upstream for Switchboard: a [`Provider`](switchboard_provider::Provider) that
//! sends through an SMSC.
//!
//! [`SmppUpstream::start`] spawns tasks that connect (TCP or TLS), bind (one transceiver
//! session, or a transmitter and a receiver), keep each bind alive with `enquire_link`, and
//! after any drop (the SMSC closing or unbinding, no answer to `enquire_link`, a bind refused)
//! bind again, waiting `reconnect_min_ms` doubled per failed attempt up to `reconnect_max_ms`,
//! with some randomness. While the session that sends is not bound, `send` answers
//! [`ProviderError::unavailable`](switchboard_provider::ProviderError::unavailable) at once, so
//! the core keeps the message queued.
//!
//! Each session's connection is driven by two tasks built on rusmpp's codec: one writes (all
//! the commands queued at that moment go out in one write) and one reads (each answer goes to
//! the request waiting for it, found by sequence number; an `enquire_link` or `unbind` from the
//! SMSC is answered at once). An `enquire_link` goes out every `enquire_link_secs` and must be
//! answered within `response_timeout_ms`. When a connection ends, every `submit_sm` still
//! waiting for its answer fails at once, and the session binds again.
//!
//! Sending:
//! - at most `window` `submit_sm` wait for their answer at once on a bind, and with
//!   `max_per_second` set, sends are spaced evenly over all sends of the upstream;
//! - a text longer than one SMS goes in concatenated parts with an 8-bit reference header,
//!   GSM-7 (`data_coding` 0) or UCS-2 (`data_coding` 8) as the message's encoding says (see
//!   [`text`]); the reference comes from the message id, so a retry reuses it;
//! - an alphanumeric sender (one with letters) uses the alphanumeric TON/NPI;
//! - the [`Submission`](switchboard_provider::Submission) names the first part's id and every
//!   part's id, in the canonical form of [`MsgIdFormat`].
//!
//! Every `deliver_sm` is answered. A delivery receipt becomes a
//! [`ProviderEvent::Receipt`](switchboard_provider::ProviderEvent::Receipt) naming the part by
//! the same canonical id; other `deliver_sm` become
//! [`ProviderEvent::Inbound`](switchboard_provider::ProviderEvent::Inbound) (see
//! [`pdu::read_deliver_sm`]). A receipt may come before the answer to its `submit_sm`; it is sent
//! on as it comes, and the core keeps it until the submission is recorded. A `data_sm` from the
//! SMSC is read the same way, its text in the `message_payload` TLV (see [`pdu::read_data_sm`]),
//! and answered with `data_sm_resp`.
//!
//! The parts of a concatenated inbound message (a user data header with an 8-bit or 16-bit
//! reference, or the SAR TLVs) become one inbound message, their texts joined in order (see
//! [`reassembly`]). Each part stays unanswered until the whole message is stored; parts whose
//! message is not complete within `reassembly_timeout_ms` of its first part are answered
//! `ESME_RX_T_APPN`, as are those of the oldest incomplete message when more than 1,000 wait.
//!
//! A `deliver_sm` or `data_sm` that reports something is answered `ESME_ROK` only once the core
//! says it is stored (its transaction has committed), and `ESME_RX_T_APPN` when it could not be stored or
//! the server is stopping, so that the SMSC delivers it again; one that the server drops before
//! answering is delivered again by the SMSC after the next bind. Answers may go out in another
//! order than the requests came (each names its request's sequence number), and the session
//! keeps reading meanwhile, with at most `receive_window` waiting to be stored at once (a part
//! waiting for the rest of its message does not count; the whole message counts as one).
//!
//! With the `testing` feature, `testing::FakeSmsc` is an in-process SMSC (over TCP or TLS) for
//! tests and benchmarks.

mod client;
pub mod config;
mod pace;
pub mod pdu;
pub mod reassembly;
pub mod receipt;
pub mod text;
mod upstream;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::{BindMode, ConfigError, MsgIdFormat, SmppConfig};
pub use receipt::{ReceiptText, parse_receipt_text};
pub use upstream::SmppUpstream;
