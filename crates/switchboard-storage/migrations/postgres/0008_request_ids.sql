-- The id of the HTTP request that created an outbound message (the client's X-Request-Id, or
-- the one the server made), so the dispatcher's log lines of the message carry it too; NULL
-- for inbound messages, replies, and messages stored before.
ALTER TABLE messages ADD COLUMN request_id TEXT;
