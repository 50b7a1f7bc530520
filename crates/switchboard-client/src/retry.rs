//! When a TextingLine send is tried again: [`RetryPolicy`].
//!
//! A send is repeated only under an idempotency key, the caller's or one generated for the
//! call and kept across its attempts, so that a repeat the server already stored is answered
//! with the stored message (`Idempotent-Replayed: true`) and charged once.

use std::time::Duration;

use crate::error::ClientError;

/// How often, and after how long, a TextingLine send is tried again after a failure that may
/// pass: no connection, a timeout, a connection cut before the answer, or an answer of 408,
/// 429, 500, 502, 503 or 504.
///
/// The wait after attempt n is between half and all of `base_delay × 2^(n−1)`, capped at
/// `max_delay`; after a `Retry-After`, the time it names. When that is longer than
/// `max_delay`, the send stops and returns the error, so the caller decides.
///
/// A send without an idempotency key is given one (a random UUID) unless
/// [`generate_keys`](Self::generate_keys) is off; a send that still has none is never
/// repeated, since the server could store it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    generate_keys: bool,
}

impl Default for RetryPolicy {
    /// Three attempts, waits from 0.5 s, at most 10 s, keys generated.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            generate_keys: true,
        }
    }
}

impl RetryPolicy {
    /// One attempt: never tried again, and no key generated.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// At most `attempts` attempts in all, the first included (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The wait after the first attempt, doubled after each next one.
    #[must_use]
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The longest wait between attempts, and the longest `Retry-After` honoured.
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Whether a send without an idempotency key is given one, so that it can be repeated.
    #[must_use]
    pub fn generate_keys(mut self, generate: bool) -> Self {
        self.generate_keys = generate;
        self
    }

    /// The most attempts.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether a send without a key gets one.
    pub(crate) fn generates_keys(&self) -> bool {
        self.generate_keys && self.max_attempts > 1
    }

    /// How long to wait before attempt `attempt + 1` after `error`, or `None` to stop.
    pub(crate) fn delay(&self, attempt: u32, error: &ClientError) -> Option<Duration> {
        if attempt >= self.max_attempts || !error.is_transient() {
            return None;
        }
        if let Some(asked) = error.retry_after() {
            return (asked <= self.max_delay).then_some(asked);
        }
        Some(self.backoff(attempt, random_fraction()))
    }

    /// Between half and all of `base_delay × 2^(attempt−1)`, capped; `fraction` in [0, 1]
    /// picks where.
    fn backoff(&self, attempt: u32, fraction: f64) -> Duration {
        let doubled = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let full = doubled.min(self.max_delay);
        full.mul_f64(0.5 + 0.5 * fraction.clamp(0.0, 1.0))
    }
}

/// A random number in [0, 1], from a random UUID's bits (the crate already makes them for
/// idempotency keys).
fn random_fraction() -> f64 {
    (uuid::Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_half_and_all_and_is_capped() {
        let policy = RetryPolicy::default().base_delay(Duration::from_millis(100)).max_delay(Duration::from_secs(1));
        assert_eq!(policy.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(policy.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(3, 1.0), Duration::from_millis(400));
        assert_eq!(policy.backoff(3, 0.0), Duration::from_millis(200));
        assert_eq!(policy.backoff(10, 1.0), Duration::from_secs(1));
        assert_eq!(policy.backoff(u32::MAX, 1.0), Duration::from_secs(1));
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..=1.0).contains(&f), "{f}");
        }
    }

    #[test]
    fn attempts_and_keys() {
        assert_eq!(RetryPolicy::none().attempts(), 1);
        assert!(!RetryPolicy::none().generates_keys());
        assert!(RetryPolicy::default().generates_keys());
        assert!(!RetryPolicy::default().generate_keys(false).generates_keys());
        assert_eq!(RetryPolicy::default().max_attempts(0).attempts(), 1);
    }

    #[test]
    fn only_transient_failures_are_tried_again() {
        use reqwest::StatusCode;
        use reqwest::header::HeaderMap;

        use crate::error::{ApiError, Dialect};

        let answer = |status: u16, retry_after: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(r) = retry_after {
                headers.insert(reqwest::header::RETRY_AFTER, r.parse().unwrap());
            }
            let status = StatusCode::from_u16(status).unwrap();
            ClientError::Api(Box::new(ApiError::parse(Dialect::TextingLine, status, &headers, b"{}")))
        };
        let policy = RetryPolicy::default().base_delay(Duration::from_millis(100));
        for status in [408, 429, 500, 502, 503, 504] {
            let wait = policy.delay(1, &answer(status, None)).unwrap();
            assert!(wait >= Duration::from_millis(50) && wait <= Duration::from_millis(100), "{status}: {wait:?}");
        }
        for status in [400, 401, 402, 403, 404, 409, 413, 415, 501] {
            assert_eq!(policy.delay(1, &answer(status, None)), None, "{status}");
        }
        assert_eq!(policy.delay(1, &answer(429, Some("3"))), Some(Duration::from_secs(3)));
        assert_eq!(policy.delay(1, &answer(503, Some("60"))), None, "longer than max_delay");
        assert_eq!(policy.delay(3, &answer(503, None)), None, "the third attempt was the last");
    }
}
