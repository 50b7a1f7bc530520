//! The destination check every send goes through before it is stored: the operator's blocked
//! numbers are refused, the lookup tells what the recipient's number is, and the operator's
//! [`DestinationRules`](switchboard_domain::DestinationRules) refuse what no account may send
//! to. The account's own settings (its countries, fixed-or-mobile numbers) are applied where
//! the message is stored, in the admission's transaction, so that a change to them holds from
//! the next send on.
//!
//! A refused message is stored `failed` with its error type and is not charged, as an
//! opted-out recipient's is.

use std::sync::Arc;

use switchboard_domain::{Destination, ErrorType, MessageKind, Msisdn, Region};
use switchboard_lookup::{Exempt, Lookup, OfflineLookup};
use switchboard_provider::simulator;
use switchboard_records::MessageRecord;

use crate::{Core, SendError};

/// The default lookup: libphonenumber's metadata, offline, with the simulator's documented
/// test numbers (which no plan calls valid) let through as US mobile numbers.
pub fn default_lookup() -> Arc<dyn Lookup> {
    let us_mobile = Destination {
        valid: true,
        number_type: switchboard_domain::NumberType::Mobile,
        region: Region::parse("US").ok(),
    };
    let exempt = simulator::TEST_RANGES
        .iter()
        .filter_map(|(first, last)| {
            Some(Exempt { first: Msisdn::parse(first).ok()?, last: Msisdn::parse(last).ok()?, destination: us_mobile })
        })
        .collect();
    let lookup = OfflineLookup::new().with_exempt(exempt);
    // The North American plan's patterns are compiled now (a few milliseconds), not by the
    // first send; the others on their first use.
    lookup.warm(&[1]);
    Arc::new(lookup)
}

/// What the check found: the destination to store with the message, and the operator's
/// refusal, if any.
pub(crate) type Checked = (Option<Destination>, Option<ErrorType>);

impl Core {
    /// Looks up a recipient and applies the operator's rules. A lookup that cannot answer
    /// (an online one down) refuses the send as unavailable: nothing is sent unchecked.
    pub(crate) async fn check_destination(&self, to: &Msisdn, kind: MessageKind) -> Result<Checked, SendError> {
        let rules = &self.inner.config.destinations;
        let blocked = rules.blocks(to).then_some(ErrorType::DestinationBlocked);
        let Some(lookup) = &self.inner.config.lookup else { return Ok((None, blocked)) };
        match lookup.lookup(to).await {
            Ok(destination) => Ok((Some(destination), blocked.or_else(|| rules.refusal(&destination, kind)))),
            Err(error) => {
                tracing::warn!(%error, "destination lookup failed");
                metrics::counter!("switchboard_destination_lookups_total", "number_type" => "none", "outcome" => "lookup_failed")
                    .increment(1);
                Err(SendError::Unavailable)
            }
        }
    }
}

/// Counts a stored message's lookup by number type and outcome: `allowed`, or the error type
/// that refused its destination.
pub(crate) fn count(record: &MessageRecord) {
    let Some(destination) = &record.destination else { return };
    let outcome = match record.error_type {
        Some(
            e @ (ErrorType::InvalidDestination
            | ErrorType::GeographicRestriction
            | ErrorType::ServiceRestricted
            | ErrorType::DestinationBlocked),
        ) => e.as_str(),
        _ => "allowed",
    };
    metrics::counter!(
        "switchboard_destination_lookups_total",
        "number_type" => destination.number_type.as_str(),
        "outcome" => outcome
    )
    .increment(1);
}
