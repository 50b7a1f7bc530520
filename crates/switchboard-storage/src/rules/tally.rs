//! Running counts kept beside the messages: per account, hour and status in `message_counts`
//! (for statistics without scanning messages), per account, minute and status over the last
//! two hours in `message_minute_counts` (for the console's chart of the last hour), and per
//! multi-recipient request in `batches` (its `sent` and `failed` recipients).
//!
//! `message_minute_counts` is a ring: a minute's row takes slot `minute % RING_MINUTES`, and
//! the first change of a newer minute replaces what an older one left there, so the table never
//! grows past `RING_MINUTES` rows per account and status and nothing has to prune it. Changes
//! to minutes that have left the ring (a late receipt for an old message) are not written.
//!
//! A write operation notes every status change in a [`Tally`] and, as its last step before
//! committing, applies it. The rows are applied in key order (hourly counts, then minute
//! counts, then batches), and nothing else is locked after them, so two transactions that touch
//! the same counters wait for each other but can never deadlock.

use std::collections::BTreeMap;

use switchboard_domain::{AccountId, BatchId, MessageStatus, StatusGroup, Timestamp};
use uuid::Uuid;

/// Milliseconds in one bucket of `message_counts`.
pub(crate) const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in one bucket of `message_minute_counts`.
pub(crate) const MINUTE_MS: i64 = 60_000;
/// Slots in `message_minute_counts`: two hours of minutes (the migration that made the table
/// filled it with the same).
pub(crate) const RING_MINUTES: i64 = 120;
/// How many minutes back a change still reaches `message_minute_counts`: an hour and a half,
/// well inside the ring, so that a row is never replaced while a chart can still show it.
const MINUTES_KEPT: i64 = 90;

/// Changes to apply to the counters.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// (account, hour, status) → change in count.
    pub(crate) counts: BTreeMap<(Uuid, i64, &'static str), i64>,
    /// (account, minute, status) → change in count.
    pub(crate) minutes: BTreeMap<(Uuid, i64, &'static str), i64>,
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
        let minute = created_at.millis().div_euclid(MINUTE_MS);
        *self.minutes.entry((account.as_uuid(), minute, status.as_str())).or_default() += n;
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

    /// The minute count changes that are not zero and whose minute is still kept at `now`, in
    /// key order: (account, slot, status, minute, change).
    pub(crate) fn minute_changes(
        &self,
        now: Timestamp,
    ) -> impl Iterator<Item = (Uuid, i64, &'static str, i64, i64)> + '_ {
        let oldest = now.millis().div_euclid(MINUTE_MS) - MINUTES_KEPT;
        let mut changes: Vec<_> = self
            .minutes
            .iter()
            .filter(move |((_, m, _), n)| **n != 0 && *m > oldest)
            .map(|((a, m, s), n)| (*a, m.rem_euclid(RING_MINUTES), *s, *m, *n))
            .collect();
        // In the table's key order (by slot, not by minute), which all writers share.
        changes.sort_unstable_by_key(|(a, slot, s, _, _)| (*a, *slot, *s));
        changes.into_iter()
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

/// The statement that applies one minute count change (the same on both backends): added to
/// the slot's row when it holds the same minute, replacing it when it holds an older one, and
/// dropped when it holds a newer one.
pub(crate) const UPSERT_MINUTE: &str = "INSERT INTO message_minute_counts (account_id, slot, status, minute, n) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, slot, status) DO UPDATE SET \
     n = CASE WHEN message_minute_counts.minute = excluded.minute THEN message_minute_counts.n + excluded.n \
     WHEN message_minute_counts.minute < excluded.minute THEN excluded.n ELSE message_minute_counts.n END, \
     minute = CASE WHEN message_minute_counts.minute < excluded.minute THEN excluded.minute \
     ELSE message_minute_counts.minute END";

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
        let minute = 5 * 60;
        let minutes: Vec<_> = tally.minute_changes(t.plus_millis(MINUTE_MS * 30)).collect();
        assert_eq!(minutes, vec![(u, 60, "delivered", minute, 1), (u, 60, "failed", minute, 1)]);
        // Minutes that have left the ring are not written.
        assert_eq!(tally.minute_changes(t.plus_millis(MINUTE_MS * MINUTES_KEPT)).count(), 0);
        tally.sent_at(Some(b), t.plus_millis(5));
        tally.sent_at(Some(b), t);
        assert_eq!(tally.batch_changes().collect::<Vec<_>>(), vec![(b.as_uuid(), 1, 1, Some(t.millis()))]);
    }
}
