//! Delivery receipts: the parts a sent message is recorded with, and the rule by which the
//! receipts of its parts settle it, shared by both backends.
//!
//! A part starts `sent` when its submission is recorded; a receipt moves it once to
//! `delivered`, `undelivered` or `failed`. A receipt that comes before the submission is kept
//! as a part with no message and keeps its status when the submission claims it. After every
//! part change a message still `sent` is settled by [`settle`].

use std::collections::HashSet;

use switchboard_domain::{ErrorType, MessageId, MessageStatus, Timestamp};
use switchboard_ledger::Credits;

use crate::StorageError;
use crate::rows::corrupt;

/// Whether a receipt with this status changes a part (the three final part statuses).
pub(crate) fn is_receipt_status(status: MessageStatus) -> bool {
    matches!(status, MessageStatus::Delivered | MessageStatus::Undelivered | MessageStatus::Failed)
}

/// The parts of sent messages to record in one transaction, each provider reference once: if
/// two results (or two parts) name the same reference, the first keeps it.
#[derive(Debug, Default)]
pub(crate) struct NewParts {
    seen: HashSet<String>,
}

impl NewParts {
    /// The (provider reference, part number) pairs of a message sent with `provider_message_id`
    /// and `parts`: one per part, numbered from 1, or, without parts, the message id as part 1.
    pub(crate) fn of(&mut self, provider_message_id: &str, parts: &[String]) -> Vec<(String, u32)> {
        let refs: Vec<&str> =
            if parts.is_empty() { vec![provider_message_id] } else { parts.iter().map(String::as_str).collect() };
        let mut out = Vec::with_capacity(refs.len());
        for (i, r) in refs.into_iter().enumerate() {
            if self.seen.insert(r.to_owned()) {
                out.push((r.to_owned(), u32::try_from(i + 1).unwrap_or(u32::MAX)));
            }
        }
        out
    }
}

/// One part of a message, as settling it needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartState {
    pub(crate) part: u32,
    pub(crate) status: MessageStatus,
    pub(crate) error_type: Option<ErrorType>,
    pub(crate) description: Option<String>,
}

impl PartState {
    /// Decodes a stored part of a message.
    pub(crate) fn parse(
        part: Option<i64>,
        status: &str,
        error_type: Option<String>,
        description: Option<String>,
    ) -> Result<Self, StorageError> {
        Ok(PartState {
            part: part
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| corrupt("part number", format!("{part:?}")))?,
            status: MessageStatus::parse(status).ok_or_else(|| corrupt("part status", status))?,
            error_type: error_type.map(|e| ErrorType::parse(&e).ok_or_else(|| corrupt("error type", e))).transpose()?,
            description,
        })
    }
}

/// What a message still `sent` becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settlement {
    /// `delivered`, `undelivered` or `failed`.
    pub(crate) status: MessageStatus,
    /// For a failure: the part's error type, or `unknown`.
    pub(crate) error_type: Option<ErrorType>,
    /// For a failure: what went wrong, naming the part when the message has several.
    pub(crate) error_message: Option<String>,
    /// The charge to give back, if any.
    pub(crate) refund: Option<Credits>,
}

/// Settles a message still `sent` from all of its parts, if they settle it: the first part (by
/// number) that is undelivered or failed fails the message; otherwise it is delivered once
/// every part is. A failure refunds `charged` if the account is refunded for carrier failures.
pub(crate) fn settle(parts: &[PartState], charged: Credits, refund_carrier_failures: bool) -> Option<Settlement> {
    let total = parts.len();
    let failed = parts
        .iter()
        .filter(|p| matches!(p.status, MessageStatus::Undelivered | MessageStatus::Failed))
        .min_by_key(|p| p.part);
    if let Some(p) = failed {
        let error_type = p.error_type.unwrap_or(ErrorType::Unknown);
        let what = p.description.clone().unwrap_or_else(|| error_type.description().to_owned());
        let error_message = if total > 1 { format!("part {} of {total}: {what}", p.part) } else { what };
        let refund = (refund_carrier_failures && !charged.is_zero()).then_some(charged);
        return Some(Settlement {
            status: p.status,
            error_type: Some(error_type),
            error_message: Some(error_message),
            refund,
        });
    }
    let delivered = parts.iter().filter(|p| p.status == MessageStatus::Delivered).count();
    (total > 0 && delivered == total).then_some(Settlement {
        status: MessageStatus::Delivered,
        error_type: None,
        error_message: None,
        refund: None,
    })
}

/// When a settlement happens: when the change that settled it happened, but never before the
/// message was sent (a receipt may carry an earlier clock, or come before the submission).
pub(crate) fn settled_at(trigger: Timestamp, sent_at: Option<Timestamp>) -> Timestamp {
    sent_at.map_or(trigger, |s| s.max(trigger))
}

/// What [`crate::Store::record_receipts`] reports for a part change of `message`.
pub(crate) fn applied(message: MessageId, status: Option<MessageStatus>) -> crate::ReceiptOutcome {
    crate::ReceiptOutcome::Applied { message_id: message, message_status: status }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(part: u32, status: MessageStatus) -> PartState {
        PartState { part, status, error_type: None, description: None }
    }

    #[test]
    fn parts_are_numbered_and_each_reference_kept_once() {
        let mut parts = NewParts::default();
        assert_eq!(parts.of("m1", &[]), vec![("m1".to_owned(), 1)]);
        assert_eq!(parts.of("m2", &["a".into(), "b".into()]), vec![("a".to_owned(), 1), ("b".to_owned(), 2)]);
        assert_eq!(parts.of("m3", &["b".into(), "c".into()]), vec![("c".to_owned(), 2)]);
        assert!(parts.of("m1", &[]).is_empty());
    }

    #[test]
    fn delivered_when_every_part_is() {
        use MessageStatus::*;
        assert_eq!(settle(&[part(1, Delivered), part(2, Sent)], Credits::new(2, 0), true), None);
        let done = settle(&[part(2, Delivered), part(1, Delivered)], Credits::new(2, 0), true).unwrap();
        assert_eq!((done.status, done.error_type, done.refund), (Delivered, None, None));
        assert_eq!(settle(&[], Credits::ZERO, false), None);
    }

    #[test]
    fn the_first_failed_part_fails_the_message() {
        use MessageStatus::*;
        let mut second = part(2, Undelivered);
        second.error_type = Some(ErrorType::DestinationBlocked);
        let mut third = part(3, Failed);
        third.description = Some("no route".into());
        let parts = [part(1, Delivered), third.clone(), second];
        let s = settle(&parts, Credits::new(3, 0), false).unwrap();
        assert_eq!((s.status, s.error_type, s.refund), (Undelivered, Some(ErrorType::DestinationBlocked), None));
        assert_eq!(
            s.error_message.as_deref(),
            Some(format!("part 2 of 3: {}", ErrorType::DestinationBlocked.description()).as_str())
        );
        let s = settle(&[PartState { part: 1, ..third }], Credits::new(3, 0), true).unwrap();
        assert_eq!((s.status, s.error_type), (Failed, Some(ErrorType::Unknown)));
        assert_eq!((s.error_message.as_deref(), s.refund), (Some("no route"), Some(Credits::new(3, 0))));
        let free = settle(&[part(1, Failed)], Credits::ZERO, true).unwrap();
        assert_eq!(free.refund, None);
    }

    #[test]
    fn settling_never_precedes_the_send() {
        let (early, sent) = (Timestamp::from_millis(5), Timestamp::from_millis(10));
        assert_eq!(settled_at(early, Some(sent)), sent);
        assert_eq!(settled_at(sent.plus_millis(1), Some(sent)), sent.plus_millis(1));
        assert_eq!(settled_at(early, None), early);
    }
}
