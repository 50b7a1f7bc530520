//! Bounded scans over time-ordered ids: the searches of the ledger and of messages read a
//! range of ids newest first and examine at most [`SCAN_CAP`] rows for one page, so that a
//! filter no index serves costs a bounded read whatever the table holds. Ids are UUIDv7, so a
//! time range is an id range.

use switchboard_domain::{MessageId, Timestamp};
use uuid::Uuid;

use crate::engine::{Param, Tx};
use crate::{Result, SCAN_CAP, Scanned};

/// The ids `[lo, hi)` a scan reads: before the cursor (exclusive), and made in `[from, to)`.
pub(crate) fn id_bounds(before: Option<Uuid>, from: Option<Timestamp>, to: Option<Timestamp>) -> (Uuid, Uuid) {
    let first_at = |at: Timestamp| MessageId::first_at(at).as_uuid();
    let mut hi = before.unwrap_or(Uuid::max());
    if let Some(to) = to {
        hi = hi.min(first_at(to));
    }
    (from.map_or(Uuid::nil(), first_at), hi)
}

/// Makes a page of `rows` (up to `limit + 1` matches, newest first): a full page goes on after
/// its last item; a page that is not full asks `nth` (the range's ids newest first, `LIMIT 1
/// OFFSET` the next parameter, which is set here to [`SCAN_CAP`] - 1) whether the scan stopped
/// at its cap, and if so goes on after the last row it examined.
pub(crate) async fn page<T>(
    tx: &mut impl Tx,
    mut rows: Vec<T>,
    limit: u32,
    id: impl Fn(&T) -> Uuid,
    nth: &str,
    range: &[Param<'_>],
) -> Result<Scanned<T>> {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        let next = rows.last().map(&id);
        return Ok(Scanned { items: rows, next, capped: false });
    }
    let mut params = range.to_vec();
    params.push((SCAN_CAP - 1).into());
    let last: Option<(Uuid,)> = tx.fetch_optional(nth, &params).await?;
    Ok(match last {
        Some((last,)) => Scanned { items: rows, next: Some(last), capped: true },
        None => Scanned { items: rows, next: None, capped: false },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_range_is_an_id_range() {
        let (a, b) = (Timestamp::from_millis(1_000), Timestamp::from_millis(2_000));
        let (lo, hi) = id_bounds(None, Some(a), Some(b));
        assert_eq!((lo, hi), (MessageId::first_at(a).as_uuid(), MessageId::first_at(b).as_uuid()));
        let inside = MessageId::first_at(Timestamp::from_millis(1_999)).as_uuid();
        assert!(lo <= inside && inside < hi);
        assert_eq!(id_bounds(None, None, None), (Uuid::nil(), Uuid::max()));
        // The cursor narrows the top of the range, never widens it.
        let cursor = MessageId::first_at(Timestamp::from_millis(1_500)).as_uuid();
        assert_eq!(id_bounds(Some(cursor), Some(a), Some(b)).1, cursor);
        assert_eq!(id_bounds(Some(Uuid::max()), Some(a), Some(b)).1, hi);
    }
}
