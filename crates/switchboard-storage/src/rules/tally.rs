//! Running counts kept beside the messages: per account, hour and status in `message_counts`
//! (for statistics without scanning messages), and per multi-recipient request in `batches`
//! (its `sent` and `failed` recipients).
//!
//! A write operation notes every status change in a [`Tally`] and, as its last step before
//! committing, applies it. The rows are applied in key order (counts, then batches), and
//! nothing else is locked after them, so two transactions that touch the same counters wait
//! for each other but can never deadlock.

use std::collections::BTreeMap;

use switchboard_domain::{AccountId, BatchId, MessageStatus, StatusGroup, Timestamp};
use uuid::Uuid;

/// Milliseconds in one bucket of `message_counts`.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Changes to apply to the counters.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// (account, hour, status) → change in count.
    pub(crate) counts: BTreeMap<(Uuid, i64, &'static str), i64>,
    /// batch → (change in sent, change in failed, earliest send among the changes).
    pub(crate) batches: BTreeMap<Uuid, (i64, i64, Option<i64>)>,
}

/// Which batch counter a status falls under, if any: 0 = sent, 1 = failed.
fn batch_slot(status: MessageStatus) -> Option<usize> {
    match status.group() {
        StatusGroup::Sent => Some(0),
        StatusGroup::Failed => Some(1),
        StatusGroup::Pending => None,
    }
}

impl Tally {
    /// A new outbound message stored in `status`.
    pub(crate) fn insert(
        &mut self,
        account: AccountId,
        batch: Option<BatchId>,
        created_at: Timestamp,
        status: MessageStatus,
    ) {
        self.count(account, created_at, status, 1);
        if let (Some(b), Some(slot)) = (batch, batch_slot(status)) {
            self.bump(b, slot, 1);
        }
    }

    /// An outbound message moved from `from` to `to`.
    pub(crate) fn change(
        &mut self,
        account: AccountId,
        batch: Option<BatchId>,
        created_at: Timestamp,
        from: MessageStatus,
        to: MessageStatus,
    ) {
        if from == to {
            return;
        }
        self.count(account, created_at, from, -1);
        self.count(account, created_at, to, 1);
        let Some(b) = batch else { return };
        let (old, new) = (batch_slot(from), batch_slot(to));
        if old != new {
            if let Some(slot) = old {
                self.bump(b, slot, -1);
            }
            if let Some(slot) = new {
                self.bump(b, slot, 1);
            }
        }
    }

    /// A message of a batch was sent at `at`.
    pub(crate) fn sent_at(&mut self, batch: Option<BatchId>, at: Timestamp) {
        let Some(b) = batch else { return };
        let first = &mut self.batches.entry(b.as_uuid()).or_default().2;
        *first = Some(first.map_or(at.millis(), |t| t.min(at.millis())));
    }

    fn count(&mut self, account: AccountId, created_at: Timestamp, status: MessageStatus, n: i64) {
        let hour = created_at.millis().div_euclid(HOUR_MS);
        *self.counts.entry((account.as_uuid(), hour, status.as_str())).or_default() += n;
    }

    fn bump(&mut self, batch: BatchId, slot: usize, n: i64) {
        let entry = self.batches.entry(batch.as_uuid()).or_default();
        if slot == 0 {
            entry.0 += n;
        } else {
            entry.1 += n;
        }
    }

    /// The count changes that are not zero, in key order.
    pub(crate) fn count_changes(&self) -> impl Iterator<Item = (Uuid, i64, &'static str, i64)> + '_ {
        self.counts.iter().filter(|(_, n)| **n != 0).map(|((a, h, s), n)| (*a, *h, *s, *n))
    }

    /// The batch changes, in key order.
    pub(crate) fn batch_changes(&self) -> impl Iterator<Item = (Uuid, i64, i64, Option<i64>)> + '_ {
        self.batches
            .iter()
            .filter(|(_, (s, f, at))| *s != 0 || *f != 0 || at.is_some())
            .map(|(b, (s, f, at))| (*b, *s, *f, *at))
    }
}

/// The statement that applies one count change (the same on both backends).
pub(crate) const UPSERT_COUNT: &str = "INSERT INTO message_counts (account_id, hour, status, n) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (account_id, hour, status) DO UPDATE SET n = message_counts.n + excluded.n";

/// The statement that applies one batch change (the same on both backends).
/// `sent_at` keeps the earliest send, whichever result commits first.
pub(crate) const UPDATE_BATCH: &str = "UPDATE batches SET sent = sent + $1, failed = failed + $2, \
     sent_at = CASE WHEN $3 IS NOT NULL AND (sent_at IS NULL OR $3 < sent_at) THEN $3 ELSE sent_at END WHERE id = $4";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_net_out_and_sort() {
        let a = AccountId::new();
        let b = BatchId::new();
        let t = Timestamp::from_millis(HOUR_MS * 5 + 10);
        let mut tally = Tally::default();
        tally.insert(a, Some(b), t, MessageStatus::Queued);
        tally.insert(a, Some(b), t, MessageStatus::Queued);
        tally.change(a, Some(b), t, MessageStatus::Queued, MessageStatus::Sent);
        tally.change(a, Some(b), t, MessageStatus::Sent, MessageStatus::Delivered);
        tally.change(a, Some(b), t, MessageStatus::Queued, MessageStatus::Failed);
        let counts: Vec<_> = tally.count_changes().collect();
        let u = a.as_uuid();
        assert_eq!(counts, vec![(u, 5, "delivered", 1), (u, 5, "failed", 1)]);
        tally.sent_at(Some(b), t.plus_millis(5));
        tally.sent_at(Some(b), t);
        assert_eq!(tally.batch_changes().collect::<Vec<_>>(), vec![(b.as_uuid(), 1, 1, Some(t.millis()))]);
    }
}
