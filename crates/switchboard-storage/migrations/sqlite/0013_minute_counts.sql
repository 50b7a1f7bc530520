-- Outbound messages per account, minute of creation and current status over the last two
-- hours, kept in the same transaction as every status change like `message_counts`, so that
-- the console's chart of the last hour reads at most two hours of rows per account instead of
-- the hour's messages. A ring: minute m takes slot m % 120, and the first change of a newer
-- minute replaces what an older one left in its slot.
CREATE TABLE message_minute_counts (
    account_id BLOB NOT NULL,
    slot       INTEGER NOT NULL,
    status     TEXT NOT NULL,
    minute     INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (account_id, slot, status)
) WITHOUT ROWID;

-- The last two hours' messages, found by their time-ordered ids (whose first six bytes are
-- their creation's milliseconds) rather than by scanning every message.
INSERT INTO message_minute_counts (account_id, slot, status, minute, n)
SELECT account_id, (created_at / 60000) % 120, status, created_at / 60000, COUNT(*) FROM messages
WHERE id >= unhex(printf('%012X', (unixepoch() / 60 - 121) * 60000) || '00000000000000000000')
  AND created_at >= (unixepoch() / 60 - 119) * 60000
  AND created_at < (unixepoch() / 60 + 1) * 60000
  AND direction = 'outbound'
GROUP BY account_id, created_at / 60000, status;

-- The operator's charts read every account's counts of a time range. A row's slot never
-- changes, and a count's hour neither, so neither index is written again once a row exists.
CREATE INDEX message_minute_counts_slot ON message_minute_counts (slot);
CREATE INDEX message_counts_hour ON message_counts (hour);
