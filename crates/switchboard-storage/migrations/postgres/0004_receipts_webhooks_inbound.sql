-- Delivery receipts per message part, webhook endpoints and their outbox, the URL a message's
-- own notifications go to, and whether an account is refunded for carrier-side failures.

-- Whether a message the carrier reports undelivered or failed is refunded (off by default).
ALTER TABLE accounts ADD COLUMN refund_carrier_failures BOOLEAN NOT NULL DEFAULT FALSE;

-- Where this message's own status notifications go (Bird's `notification.url`).
ALTER TABLE messages ADD COLUMN notify_url TEXT;

-- Each part (SMS segment) of a sent message under the upstream's id for it, with what its
-- receipts said. A receipt that arrives before its submission has been recorded is kept here
-- with no message yet, and matched when the submission is recorded.
CREATE TABLE message_parts (
    provider_ref TEXT PRIMARY KEY,
    message_id   UUID,
    part         BIGINT,
    status       TEXT NOT NULL,
    error_type   TEXT,
    description  TEXT,
    at           BIGINT NOT NULL
);
CREATE INDEX message_parts_message ON message_parts (message_id, part) WHERE message_id IS NOT NULL;

-- An account's webhook endpoint. `secret` is sealed (encrypted) by the core, never clear
-- text; `events` lists the event types it takes, space-separated, or is empty for all.
CREATE TABLE webhook_endpoints (
    id         UUID PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id),
    url        TEXT NOT NULL,
    secret     BYTEA NOT NULL,
    events     TEXT NOT NULL,
    active     BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id, id);

-- The outbox: one row per event and target (an endpoint's id, or the message's own URL),
-- written in the same transaction as the status change it reports. A delivery is leased by
-- pushing `next_attempt_at` past now and counting the attempt, like a message's dispatch.
CREATE TABLE webhook_deliveries (
    event_id        UUID NOT NULL,
    target          TEXT NOT NULL,
    account_id      UUID NOT NULL,
    endpoint_id     UUID,
    url             TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    message_id      UUID NOT NULL,
    status          TEXT NOT NULL,
    error_type      TEXT,
    occurred_at     BIGINT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (event_id, target)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_account ON webhook_deliveries (account_id, event_id);

-- Every attempt to deliver one delivery, with the receiver's answer.
CREATE TABLE webhook_attempts (
    event_id    UUID NOT NULL,
    target      TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    status_code BIGINT,
    error       TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (event_id, target, attempt)
);
