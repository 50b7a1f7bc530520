-- Outbound messages per account, minute of creation and current status over the last two
-- hours, kept in the same transaction as every status change like `message_counts`, so that
-- the console's chart of the last hour reads at most two hours of rows per account instead of
-- the hour's messages. A ring: minute m takes slot m % 120, and the first change of a newer
-- minute replaces what an older one left in its slot.
CREATE TABLE message_minute_counts (
    account_id UUID NOT NULL,
    slot       BIGINT NOT NULL,
    status     TEXT NOT NULL,
    minute     BIGINT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (account_id, slot, status)
);

-- The last two hours' messages, found by their time-ordered ids (whose first 48 bits are
-- their creation's milliseconds) rather than by scanning every message.
INSERT INTO message_minute_counts (account_id, slot, status, minute, n)
SELECT account_id, (created_at / 60000) % 120, status, created_at / 60000, COUNT(*) FROM messages
WHERE id >= (lpad(to_hex((floor(extract(epoch FROM now()) / 60)::bigint - 121) * 60000), 12, '0')
             || '00000000000000000000')::uuid
  AND created_at >= (floor(extract(epoch FROM now()) / 60)::bigint - 119) * 60000
  AND created_at < (floor(extract(epoch FROM now()) / 60)::bigint + 1) * 60000
  AND direction = 'outbound'
GROUP BY account_id, created_at / 60000, status;

-- The operator's charts read every account's counts of a time range. A row's slot never
-- changes, and a count's hour neither, so neither index is written again once a row exists.
CREATE INDEX message_minute_counts_slot ON message_minute_counts (slot);
CREATE INDEX message_counts_hour ON message_counts (hour);
