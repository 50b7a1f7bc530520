//! Checking a webhook request where it is received: [`Verifier`].
//!
//! A receiver reads the three headers of the [Standard Webhooks](https://www.standardwebhooks.com/)
//! scheme ([`SignedHeaders`]), and the [`Verifier`] made from the endpoint's secret accepts the
//! request only when one of its signatures is valid over the raw body and its timestamp is
//! within the tolerance of now (five minutes unless set), so that a captured request cannot be
//! replayed later. Every refusal says why ([`VerifyError`]), and none shows the secret.
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//!
//! use switchboard_signing::{SignedHeaders, Verifier, VerifyError};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let body = br#"{"test": 2432232314}"#;
//! let headers = SignedHeaders {
//!     id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
//!     timestamp: "1614265330",
//!     signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
//! };
//! // `verify` checks against the clock; `verify_at` takes the time, here the one it was sent at.
//! let sent_at = UNIX_EPOCH + Duration::from_secs(1_614_265_330);
//! verifier.verify_at(&headers, body, sent_at)?;
//! // Ten minutes later it is refused as a replay.
//! let later = sent_at + Duration::from_secs(600);
//! assert_eq!(verifier.verify_at(&headers, body, later), Err(VerifyError::TooOld));
//! // A changed body is refused.
//! assert_eq!(verifier.verify_at(&headers, b"{}", sent_at), Err(VerifyError::NoMatchingSignature));
//! # let _ = SystemTime::now();
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::signing::{ID_HEADER, SIGNATURE_HEADER, Secret, SecretError, TIMESTAMP_HEADER, matches};

/// How far a request's timestamp may be from now, either way, unless set otherwise: five
/// minutes, as the Standard Webhooks libraries use.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The three signature headers of a received request, as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedHeaders<'a> {
    /// `webhook-id`: the event id, the same on every retry (deduplicate on it).
    pub id: &'a str,
    /// `webhook-timestamp`: when the request was signed, in Unix seconds.
    pub timestamp: &'a str,
    /// `webhook-signature`: one or more space-separated `v1,<base64>` signatures.
    pub signature: &'a str,
}

impl<'a> SignedHeaders<'a> {
    /// Reads the three headers through `header`, which looks one up by its lower-case name
    /// (for an `http::HeaderMap`: `|name| map.get(name)?.to_str().ok()`).
    pub fn from_lookup(header: impl Fn(&str) -> Option<&'a str>) -> Result<Self, VerifyError> {
        let get = |name: &'static str| header(name).ok_or(VerifyError::MissingHeader(name));
        Ok(Self { id: get(ID_HEADER)?, timestamp: get(TIMESTAMP_HEADER)?, signature: get(SIGNATURE_HEADER)? })
    }
}

/// Why a received request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// One of the three headers is missing (or not text).
    #[error("the request has no `{0}` header")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not a whole number of seconds.
    #[error("`webhook-timestamp` is not a Unix time in seconds")]
    InvalidTimestamp,
    /// The timestamp is older than the tolerance allows: a late or replayed request.
    #[error("the request was signed too long ago (a replay, or a clock far behind)")]
    TooOld,
    /// The timestamp is further ahead than the tolerance allows.
    #[error("the request is signed with a time too far ahead (a clock far ahead)")]
    TooNew,
    /// No `v1` signature of the header is valid for this secret, id, timestamp and body.
    #[error("no signature matches: the body, id or timestamp was changed, or the secret is not this endpoint's")]
    NoMatchingSignature,
}

/// Checks received webhook requests against an endpoint's secret.
///
/// It accepts a request when its timestamp is within the tolerance of now and one of the
/// `v1,` entries of its `webhook-signature` is the HMAC-SHA256 of `{id}.{timestamp}.{body}`
/// under the secret, compared in constant time. Entries of other versions are ignored. While
/// a secret is being replaced, give the verifier both ([`Verifier::also`]).
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").field("secrets", &self.secrets.len()).field("tolerance", &self.tolerance).finish()
    }
}

impl Verifier {
    /// A verifier for `secret`, with the default tolerance of five minutes.
    pub fn new(secret: Secret) -> Self {
        Self { secrets: vec![secret], tolerance: DEFAULT_TOLERANCE }
    }

    /// A verifier for the secret's text form (`whsec_…`, as the admin API shows it).
    pub fn parse(secret: &str) -> Result<Self, SecretError> {
        Secret::parse(secret).map(Self::new)
    }

    /// Also accepts signatures under `secret`: for the time an endpoint's secret is replaced.
    #[must_use]
    pub fn also(mut self, secret: Secret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// Accepts timestamps within `tolerance` of now, either way.
    #[must_use]
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Checks a request against the system clock. `body` is the raw body as received, before
    /// any parsing.
    pub fn verify(&self, headers: &SignedHeaders<'_>, body: &[u8]) -> Result<(), VerifyError> {
        self.verify_at(headers, body, SystemTime::now())
    }

    /// Checks a request as if it were received at `now`.
    pub fn verify_at(&self, headers: &SignedHeaders<'_>, body: &[u8], now: SystemTime) -> Result<(), VerifyError> {
        let timestamp: i64 = headers.timestamp.trim().parse().map_err(|_| VerifyError::InvalidTimestamp)?;
        let now = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
        };
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if timestamp < now.saturating_sub(tolerance) {
            return Err(VerifyError::TooOld);
        }
        if timestamp > now.saturating_add(tolerance) {
            return Err(VerifyError::TooNew);
        }
        // Every secret is checked, so the time taken does not tell which one matched.
        let matched = self
            .secrets
            .iter()
            .fold(false, |found, secret| matches(secret, headers.id, timestamp, body, headers.signature) | found);
        if matched { Ok(()) } else { Err(VerifyError::NoMatchingSignature) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::sign;

    const AT: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn signed<'a>(signature: &'a str, timestamp: &'a str) -> SignedHeaders<'a> {
        SignedHeaders { id: "evt_1", timestamp, signature }
    }

    #[test]
    fn accepts_a_valid_recent_request_and_refuses_changes() {
        let secret = Secret::generate();
        let verifier = Verifier::new(secret.clone());
        let signature = sign(&secret, "evt_1", AT as i64, b"{\"a\":1}");
        let headers = signed(&signature, "1700000000");
        assert_eq!(verifier.verify_at(&headers, b"{\"a\":1}", at(AT)), Ok(()));
        assert_eq!(verifier.verify_at(&headers, b"{\"a\":1}", at(AT + 300)), Ok(()));
        assert_eq!(verifier.verify_at(&headers, b"{\"a\":1}", at(AT - 300)), Ok(()));
        assert_eq!(verifier.verify_at(&headers, b"{\"a\":1}", at(AT + 301)), Err(VerifyError::TooOld));
        assert_eq!(verifier.verify_at(&headers, b"{\"a\":1}", at(AT - 301)), Err(VerifyError::TooNew));
        assert_eq!(verifier.verify_at(&headers, b"{\"a\":2}", at(AT)), Err(VerifyError::NoMatchingSignature));
        let other_id = SignedHeaders { id: "evt_2", ..headers };
        assert_eq!(verifier.verify_at(&other_id, b"{\"a\":1}", at(AT)), Err(VerifyError::NoMatchingSignature));
        let bad_time = signed(&signature, "soon");
        assert_eq!(verifier.verify_at(&bad_time, b"{\"a\":1}", at(AT)), Err(VerifyError::InvalidTimestamp));
        let wider = verifier.clone().tolerance(Duration::from_secs(3600));
        assert_eq!(wider.verify_at(&headers, b"{\"a\":1}", at(AT + 3000)), Ok(()));
        assert!(Verifier::new(Secret::generate()).verify_at(&headers, b"{\"a\":1}", at(AT)).is_err());
    }

    #[test]
    fn several_secrets_while_one_is_replaced() {
        let (old, new) = (Secret::generate(), Secret::generate());
        let verifier = Verifier::new(new.clone()).also(old.clone());
        for secret in [&old, &new] {
            let signature = sign(secret, "evt_1", AT as i64, b"x");
            assert_eq!(verifier.verify_at(&signed(&signature, "1700000000"), b"x", at(AT)), Ok(()));
        }
        let stranger = sign(&Secret::generate(), "evt_1", AT as i64, b"x");
        assert_eq!(
            verifier.verify_at(&signed(&stranger, "1700000000"), b"x", at(AT)),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn headers_are_looked_up_by_name() {
        let map = [("webhook-id", "evt_1"), ("webhook-timestamp", "1700000000"), ("webhook-signature", "v1,x")];
        let lookup = |name: &str| map.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let headers = SignedHeaders::from_lookup(lookup).unwrap();
        assert_eq!(headers, SignedHeaders { id: "evt_1", timestamp: "1700000000", signature: "v1,x" });
        let partial = |name: &str| (name != "webhook-signature").then_some("x");
        assert_eq!(SignedHeaders::from_lookup(partial), Err(VerifyError::MissingHeader("webhook-signature")));
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let verifier = Verifier::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let shown = format!("{verifier:?}");
        assert!(!shown.contains("MfKQ9r8"), "{shown}");
        assert_eq!(Verifier::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(), SecretError::MissingPrefix);
    }
}
