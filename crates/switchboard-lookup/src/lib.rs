//! Destination lookup for Switchboard: before a message is sent, what its destination number
//! is — valid or not in its numbering plan, its line type (mobile, fixed line, toll free,
//! premium rate, …) and its country or territory — as a [`Destination`].
//!
//! A [`Lookup`] answers for one number: the offline one here, [`OfflineLookup`], or an
//! operator's own (an HLR or number-portability service).
//!
//! # The offline lookup
//!
//! [`OfflineLookup`] answers from libphonenumber's metadata as the `phonenumber` crate ships
//! it (0.3.10, metadata 9.0.33), read from that crate's database when this one is built, with
//! libphonenumber's rules:
//!
//! - the E.164 digits are split into the calling code the metadata knows (codes are
//!   prefix-free) and the national significant number, taken as it is: its leading zeros
//!   kept (Italy's `+39 02…`), nothing stripped as a national prefix;
//! - a calling code shared by several regions (`+1`, `+7`, `+44`, …) gives, in the metadata's
//!   order, the first region whose leading digits start the number or, for a region without
//!   leading digits, the first in which the number has a type; the non-geographic codes
//!   (`+800`, `+882`, …) give a type but no region;
//! - the type is that of the first descriptor that matches (general, then premium rate, toll
//!   free, shared cost, VoIP, personal number, pager, UAN, voicemail, fixed line — fixed line
//!   or mobile when the mobile one matches too or has the same pattern — and mobile), a
//!   descriptor matching when the number has one of its possible lengths and its pattern
//!   matches the **whole** number; a number of no type is [`Destination::INVALID`].
//!
//! The answers are the `phonenumber` crate's, except where that crate departs from
//! libphonenumber (the tests count and show these): it accepts a pattern matching only the
//! start of a number (so a number too long for its range can pass), its `parse` strips what
//! it takes for a national prefix even from an international number (`+7 800…` becomes
//! invalid), and its `number_type` drops the national number's leading zeros (an Italian
//! fixed line is valid but of no type).
//!
//! It is made for the send path: each region's patterns are compiled on first use (or ahead
//! of time with [`OfflineLookup::warm`]) into one regular-expression set, one pass of which
//! tells every descriptor that matches, so that a lookup takes a fraction of a microsecond.
//! Nothing waits for a lock: the compiled sets are reached through `OnceLock`s, and the
//! `regex` crate hands each thread its scratch space from a pool that never blocks.
//!
//! Ranges of numbers can be answered with a fixed destination instead of the metadata
//! ([`Exempt`], [`OfflineLookup::with_exempt`]), e.g. test ranges such as `+1555…`.
//!
//! Crates that implement a lookup use the re-exported [`macro@async_trait`] so that they agree with
//! this crate on its version.

mod metadata;
mod plan;

use std::fmt;

pub use async_trait::async_trait;
use switchboard_domain::{Destination, Msisdn};

use crate::plan::Plan;

/// A destination lookup: the offline one here, or an operator's own (an HLR or
/// number-portability service over HTTP).
#[async_trait]
pub trait Lookup: Send + Sync + fmt::Debug + 'static {
    /// What the number is. An error means the lookup could not answer now (an online
    /// service down or too slow); the caller then refuses the send as temporarily unavailable.
    async fn lookup(&self, number: &Msisdn) -> Result<Destination, LookupError>;
}

/// Why a lookup could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The lookup could not answer now (a service down or too slow); trying later may succeed.
    #[error("the destination lookup is unavailable: {0}")]
    Unavailable(String),
}

/// An inclusive range of numbers of one length, e.g. (`+15550001001`, `+15550001011`), that
/// the lookup answers with a fixed destination instead of the metadata (test ranges).
///
/// A number is in the range when it has as many digits as `first` and `last` and lies between
/// them; for numbers of one length that is the order of their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exempt {
    /// The first number of the range.
    pub first: Msisdn,
    /// The last number of the range (inclusive), as long as `first`.
    pub last: Msisdn,
    /// What the lookup answers for a number in the range.
    pub destination: Destination,
}

impl Exempt {
    /// Whether the number is in the range.
    pub fn contains(&self, number: &Msisdn) -> bool {
        let n = number.as_str();
        n.len() == self.first.as_str().len() && self.first.as_str() <= n && n <= self.last.as_str()
    }
}

/// The offline lookup, from libphonenumber's metadata (see the crate documentation).
///
/// Cheap to create and to clone: the compiled metadata is shared by every instance in the
/// process and compiled as numbers need it, so [`OfflineLookup::new`] compiles nothing;
/// [`OfflineLookup::warm`] compiles ahead of time what given calling codes need. Its `Debug`
/// shows its exempt ranges only (their numbers masked).
#[derive(Debug, Clone, Default)]
pub struct OfflineLookup {
    exempt: Vec<Exempt>,
}

impl OfflineLookup {
    /// A lookup with no exempt ranges. Compiles nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lookup with these exempt ranges (replacing any given before), answered with their
    /// destination before the metadata is consulted. The first range that holds a number
    /// answers for it.
    ///
    /// # Panics
    ///
    /// If a range's `first` and `last` are not of the same length, or `first` is after `last`:
    /// such a range is a configuration mistake, to be refused when the configuration is read.
    pub fn with_exempt(mut self, ranges: Vec<Exempt>) -> Self {
        for range in &ranges {
            let (first, last) = (range.first.as_str(), range.last.as_str());
            assert_eq!(
                first.len(),
                last.len(),
                "an exempt range's first and last numbers must be of the same length ({first} .. {last})"
            );
            assert!(first <= last, "an exempt range's first number must not be after its last ({first} .. {last})");
        }
        self.exempt = ranges;
        self
    }

    /// What the number is: the destination of the first exempt range holding it, else its
    /// type and region from the metadata, or [`Destination::INVALID`] if it has no type in its
    /// numbering plan (an unknown calling code included).
    ///
    /// Synchronous and never waits for a lock: the send path calls it for every message. The
    /// first number of a calling code compiles what that code needs (a few milliseconds; see
    /// [`OfflineLookup::warm`]).
    pub fn classify(&self, number: &Msisdn) -> Destination {
        if let Some(range) = self.exempt.iter().find(|r| r.contains(number)) {
            return range.destination;
        }
        classify_with(Plan::shared(), number)
    }

    /// Compiles ahead of time (at server start) what numbers of the given calling codes need,
    /// e.g. `&[1, 44]`, so that the first message to each does not pay for it. Codes not in
    /// use are ignored.
    pub fn warm(&self, calling_codes: &[u16]) {
        Plan::shared().warm(Some(calling_codes));
    }

    /// Compiles ahead of time what every calling code needs.
    pub fn warm_all(&self) {
        Plan::shared().warm(None);
    }

    /// The calling codes the metadata knows, in increasing order.
    pub fn calling_codes(&self) -> Vec<u16> {
        Plan::shared().calling_codes().collect()
    }
}

fn classify_with(plan: &Plan, number: &Msisdn) -> Destination {
    let digits = number.as_str().strip_prefix('+').unwrap_or_default();
    match plan.classify_digits(digits) {
        Some((region, number_type)) => Destination { valid: true, number_type, region },
        None => Destination::INVALID,
    }
}

#[async_trait]
impl Lookup for OfflineLookup {
    async fn lookup(&self, number: &Msisdn) -> Result<Destination, LookupError> {
        Ok(self.classify(number))
    }
}

#[cfg(test)]
mod parity;
