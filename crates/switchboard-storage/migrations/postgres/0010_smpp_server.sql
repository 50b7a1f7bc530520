-- The SMPP server: the credentials customers' systems bind with, and the durable queue of
-- deliver_sm (receipts and inbound messages) waiting for a bind that receives.

-- One SMPP credential of an account: its system_id and the keyed hash of its password, with
-- limits that override the server's defaults when set.
CREATE TABLE smpp_credentials (
    system_id      TEXT PRIMARY KEY,
    account_id     UUID NOT NULL REFERENCES accounts (id),
    password_hash  BYTEA NOT NULL,
    max_binds      BIGINT,
    bind_window    BIGINT,
    max_per_second BIGINT,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);
CREATE INDEX smpp_credentials_account ON smpp_credentials (account_id, system_id);

-- A deliver_sm to send to one of the account's receiving binds: a receipt for a message's
-- final status, or an inbound message. It is written in the transaction of the change that
-- causes it, and removed once an ESME answered it, or given up when it waited too long.
CREATE TABLE smpp_deliveries (
    id              UUID PRIMARY KEY,
    account_id      UUID NOT NULL,
    kind            TEXT NOT NULL,
    message_id      UUID NOT NULL,
    status          TEXT NOT NULL,
    error_type      TEXT,
    occurred_at     BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL
);
CREATE INDEX smpp_deliveries_due ON smpp_deliveries (account_id, next_attempt_at);
CREATE INDEX smpp_deliveries_age ON smpp_deliveries (occurred_at);
