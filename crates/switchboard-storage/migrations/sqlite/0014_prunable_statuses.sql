-- The finished statuses of `messages_prunable` as a chain of equalities instead of an IN list.
-- Every update that changes a message's status or its `updated_at` checks the index's
-- condition on the row before and after; SQLite builds a temporary table for an IN list of
-- constants at each such check, which cost about as much as the rest of the update. The index
-- holds the same rows as before, and retention's query names the same condition, so that it
-- still uses the index.
DROP INDEX messages_prunable;
CREATE INDEX messages_prunable ON messages (updated_at)
    WHERE pruned_at IS NULL
    AND (status = 'delivered' OR status = 'failed' OR status = 'undelivered' OR status = 'expired'
        OR status = 'canceled' OR status = 'received');
