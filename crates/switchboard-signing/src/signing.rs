//! Webhook signatures in the Standard Webhooks scheme (the one Svix uses).
//!
//! A delivery carries three headers: [`ID_HEADER`] (the event id, the same for every retry),
//! [`TIMESTAMP_HEADER`] (Unix seconds when it was sent) and [`SIGNATURE_HEADER`]
//! (`v1,` and the base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with the
//! secret's bytes). A receiver checks the signature and that the timestamp is recent, so that
//! a captured request cannot be replayed later. The header may hold several signatures,
//! space-separated, while a secret is being rotated.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header with the event id (`evt_...`).
pub const ID_HEADER: &str = "webhook-id";
/// The header with the Unix time, in seconds, when the request was signed.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header with the signatures (`v1,<base64>`, space-separated).
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// What a secret's text form starts with.
const PREFIX: &str = "whsec_";
/// Fewest key bytes a secret may have.
const MIN_KEY: usize = 24;
/// Most key bytes a secret may have.
const MAX_KEY: usize = 64;
/// Key bytes of a generated secret.
const GENERATED_KEY: usize = 32;

/// A webhook signing secret: the raw HMAC key. Shown only by [`Secret::expose`]; its `Debug`
/// form is redacted and it has no `Display`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

/// Why a secret's text is not a valid secret. Never includes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// It does not start with `whsec_`.
    #[error("a webhook secret starts with `whsec_`")]
    MissingPrefix,
    /// What follows `whsec_` is not standard base64.
    #[error("a webhook secret is `whsec_` followed by standard base64")]
    NotBase64,
    /// The key is too short or too long.
    #[error("a webhook secret's key must be 24 to 64 bytes, not {0}")]
    Length(usize),
}

impl Secret {
    /// A fresh random secret of 32 bytes.
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_KEY];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    /// Reads a secret's text form: `whsec_` and the standard base64 of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(MIN_KEY..=MAX_KEY).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self(key))
    }

    /// Wraps raw key bytes as they are (no length rule: the caller chose them).
    pub fn from_bytes(key: Vec<u8>) -> Self {
        Self(key)
    }

    /// The secret's text form, `whsec_` and base64: the only way to see it.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The raw key bytes.
    pub(crate) fn key(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        <Hmac<Sha256> as KeyInit>::new_from_slice(self.key()).unwrap_or_else(|_| unreachable!())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Compares in constant time.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret {}

/// HMAC-SHA256 over `{id}.{timestamp}.{body}`.
fn digest(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = secret.mac();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature of one request: `v1,` and the base64 of HMAC-SHA256(key, `{id}.{timestamp}.{body}`).
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(digest(secret, id, timestamp, body).finalize().into_bytes()))
}

/// Checks a request's signature header: true when `timestamp` is within `tolerance_secs` of
/// `now` (either way) and one of the header's space-separated `v1,` signatures matches.
/// Signatures of other versions are ignored; the comparison takes constant time.
///
/// A receiver may prefer [`Verifier`](crate::Verifier), which reads the headers as text, takes
/// the time from the clock and says why a request is refused.
pub fn verify(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    if now.abs_diff(timestamp) > tolerance_secs.max(0).unsigned_abs() {
        return false;
    }
    matches(secret, id, timestamp, body, header)
}

/// Whether one of the header's `v1,` signatures is the signature of this request, whatever
/// its time; the comparison takes constant time.
pub(crate) fn matches(secret: &Secret, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let expected = digest(secret, id, timestamp, body).finalize().into_bytes();
    let mut matched = subtle::Choice::from(0);
    for entry in header.split(' ').filter(|e| !e.is_empty()) {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(signature) = STANDARD.decode(encoded) else {
            continue;
        };
        // Unequal lengths compare unequal; every entry is checked, so the time taken does not
        // tell which one matched.
        matched |= signature.as_slice().ct_eq(expected.as_slice());
    }
    matched.into()
}

/// The three signature headers of one request, as (name, value): the id, the timestamp and
/// the signature.
pub fn headers(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    [
        (ID_HEADER, id.to_owned()),
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (SIGNATURE_HEADER, sign(secret, id, timestamp, body)),
    ]
}

/// The same headers signed with several secrets: `webhook-signature` holds one `v1,`
/// signature per secret, space-separated, as the scheme allows while a secret is rotated.
pub fn headers_all(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    let signatures: Vec<String> = secrets.iter().map(|s| sign(s, id, timestamp, body)).collect();
    [(ID_HEADER, id.to_owned()), (TIMESTAMP_HEADER, timestamp.to_string()), (SIGNATURE_HEADER, signatures.join(" "))]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference vector (also checked with Python's `hmac`).
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn known_answer() {
        let secret = Secret::parse(VECTOR_SECRET).unwrap();
        assert_eq!(sign(&secret, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY), VECTOR_SIGNATURE);
        assert!(verify(&secret, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY, VECTOR_SIGNATURE, VECTOR_TIMESTAMP, 300));
    }

    #[test]
    fn round_trip() {
        let secret = Secret::generate();
        let now = 1_700_000_000;
        let header = sign(&secret, "evt_1", now, b"{}");
        assert!(header.starts_with("v1,"));
        assert!(verify(&secret, "evt_1", now, b"{}", &header, now, 300));
        assert!(verify(&secret, "evt_1", now, b"{}", &header, now + 300, 300));
        assert!(verify(&secret, "evt_1", now, b"{}", &header, now - 300, 300));
    }

    #[test]
    fn tampering_fails() {
        let secret = Secret::generate();
        let now = 1_700_000_000;
        let header = sign(&secret, "evt_1", now, b"{\"a\":1}");
        assert!(!verify(&secret, "evt_1", now, b"{\"a\":2}", &header, now, 300), "body");
        assert!(!verify(&secret, "evt_2", now, b"{\"a\":1}", &header, now, 300), "id");
        assert!(!verify(&secret, "evt_1", now + 1, b"{\"a\":1}", &header, now, 300), "timestamp");
        assert!(!verify(&Secret::generate(), "evt_1", now, b"{\"a\":1}", &header, now, 300), "secret");
        // A signature under a different version tag, or garbage, is not accepted.
        assert!(!verify(&secret, "evt_1", now, b"{\"a\":1}", &header.replace("v1,", "v2,"), now, 300));
        assert!(!verify(&secret, "evt_1", now, b"{\"a\":1}", "v1,!!!", now, 300));
        assert!(!verify(&secret, "evt_1", now, b"{\"a\":1}", "", now, 300));
        assert!(!verify(&secret, "evt_1", now, b"{\"a\":1}", "v1,", now, 300));
    }

    #[test]
    fn several_signatures() {
        let old = Secret::generate();
        let new = Secret::generate();
        let now = 1_700_000_000;
        let header = format!("{} v1a,xyz {}", sign(&old, "evt_1", now, b"x"), sign(&new, "evt_1", now, b"x"));
        assert!(verify(&old, "evt_1", now, b"x", &header, now, 300));
        assert!(verify(&new, "evt_1", now, b"x", &header, now, 300));
        assert!(!verify(&Secret::generate(), "evt_1", now, b"x", &header, now, 300));
    }

    #[test]
    fn stale_or_future_timestamps_fail() {
        let secret = Secret::generate();
        let at = 1_700_000_000;
        let header = sign(&secret, "evt_1", at, b"x");
        assert!(!verify(&secret, "evt_1", at, b"x", &header, at + 301, 300));
        assert!(!verify(&secret, "evt_1", at, b"x", &header, at - 301, 300));
        assert!(!verify(&secret, "evt_1", at, b"x", &header, i64::MAX, 300));
    }

    #[test]
    fn headers_carry_a_valid_signature() {
        let secret = Secret::generate();
        let [(n1, id), (n2, ts), (n3, sig)] = headers(&secret, "evt_abc", 1_700_000_000, b"body");
        assert_eq!((n1, n2, n3), ("webhook-id", "webhook-timestamp", "webhook-signature"));
        assert_eq!((id.as_str(), ts.as_str()), ("evt_abc", "1700000000"));
        assert!(verify(&secret, "evt_abc", 1_700_000_000, b"body", &sig, 1_700_000_000, 300));
    }

    #[test]
    fn secret_text_form() {
        let secret = Secret::generate();
        let text = secret.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(Secret::parse(&text).unwrap(), secret);
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.key().len(), 32);

        assert_eq!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SecretError::MissingPrefix));
        assert_eq!(Secret::parse("whsec_not base64!"), Err(SecretError::NotBase64));
        assert_eq!(Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 23]))), Err(SecretError::Length(23)));
        assert_eq!(Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 65]))), Err(SecretError::Length(65)));
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 24]))).is_ok());
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 64]))).is_ok());
        // Errors never echo the secret.
        let bad = "whsec_c2VjcmV0LXZhbHVl";
        let err = Secret::parse(bad).unwrap_err().to_string();
        assert!(!err.contains("c2VjcmV0LXZhbHVl"), "{err}");
    }
}
