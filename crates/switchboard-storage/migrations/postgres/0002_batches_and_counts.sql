-- Multi-recipient send requests, per-account request rate limits, and hourly message counts.

-- Requests per second an account may make to the rate-limited API; NULL means the default.
ALTER TABLE accounts ADD COLUMN rate_limit BIGINT CHECK (rate_limit IS NULL OR rate_limit > 0);

-- The send request a message was one recipient of.
ALTER TABLE messages ADD COLUMN batch_id UUID;

-- One row per multi-recipient send request. `sent` and `failed` count its recipients'
-- messages in those states, and `sent_at` is when the first was sent; they change in the
-- same transaction as the messages.
CREATE TABLE batches (
    id               UUID PRIMARY KEY,
    account_id       UUID NOT NULL REFERENCES accounts (id),
    kind             TEXT NOT NULL,
    sender           TEXT NOT NULL,
    body             TEXT,
    recipients       BIGINT NOT NULL CHECK (recipients > 0),
    first_message_id UUID NOT NULL,
    sent             BIGINT NOT NULL DEFAULT 0 CHECK (sent >= 0),
    failed           BIGINT NOT NULL DEFAULT 0 CHECK (failed >= 0),
    sent_at          BIGINT,
    created_at       BIGINT NOT NULL,
    CHECK (sent + failed <= recipients)
);
CREATE INDEX batches_account ON batches (account_id, id);

-- Outbound messages per account, hour of creation and current status, kept in the same
-- transaction as every status change, so that statistics never scan the messages.
CREATE TABLE message_counts (
    account_id UUID NOT NULL,
    hour       BIGINT NOT NULL,
    status     TEXT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (account_id, hour, status)
);

INSERT INTO message_counts (account_id, hour, status, n)
SELECT account_id, created_at / 3600000, status, COUNT(*) FROM messages
WHERE direction = 'outbound' GROUP BY account_id, created_at / 3600000, status;
