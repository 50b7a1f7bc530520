-- Retention: when a finished message's history (its status events, parts, webhook deliveries
-- and their attempts) was removed, and the indexes that let each pruning batch find its work
-- without scanning the tables.

-- When retention removed this message's history; NULL while the history is kept. The message
-- row itself stays.
ALTER TABLE messages ADD COLUMN pruned_at INTEGER;

-- Messages in a final status whose history is still kept, by the time they ended: the front of
-- this index is what retention prunes next. A message enters it once, when it ends, and leaves
-- it when its history is pruned.
CREATE INDEX messages_prunable ON messages (updated_at)
    WHERE pruned_at IS NULL
    AND status IN ('delivered', 'failed', 'undelivered', 'expired', 'canceled', 'received');

-- A message's webhook deliveries: whether one is still pending, and which to remove with it.
CREATE INDEX webhook_deliveries_message ON webhook_deliveries (message_id);

-- Receipts that no submission has claimed yet, oldest first.
CREATE INDEX message_parts_unmatched ON message_parts (at) WHERE message_id IS NULL;
