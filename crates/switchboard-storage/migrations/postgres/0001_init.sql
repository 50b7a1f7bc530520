-- Switchboard schema, PostgreSQL. Times are UTC milliseconds since the Unix epoch.
-- Migrations are append-only: never edit one that has been released.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE accounts (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    sms_credits BIGINT NOT NULL DEFAULT 0 CHECK (sms_credits >= 0),
    mms_credits BIGINT NOT NULL DEFAULT 0 CHECK (mms_credits >= 0),
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES accounts (id),
    name        TEXT,
    secret_hash BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_account ON api_keys (account_id, id);

CREATE TABLE senders (
    address    TEXT PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id),
    active     BOOLEAN NOT NULL,
    sms        BOOLEAN NOT NULL,
    mms        BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX senders_account ON senders (account_id, address);

CREATE TABLE opt_outs (
    sender     TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    account_id UUID NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sender, recipient)
);
CREATE INDEX opt_outs_account ON opt_outs (account_id, sender, recipient);

CREATE TABLE messages (
    id                  UUID PRIMARY KEY,
    account_id          UUID NOT NULL REFERENCES accounts (id),
    direction           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    recipient           TEXT NOT NULL,
    sender              TEXT NOT NULL,
    body                TEXT,
    media_url           TEXT,
    encoding            TEXT NOT NULL,
    segments            BIGINT NOT NULL,
    status              TEXT NOT NULL,
    error_type          TEXT,
    error_message       TEXT,
    sms_charged         BIGINT NOT NULL CHECK (sms_charged >= 0),
    mms_charged         BIGINT NOT NULL CHECK (mms_charged >= 0),
    idempotency_key     TEXT,
    request_hash        BYTEA,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT NOT NULL,
    provider_message_id TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    sent_at             BIGINT
);
CREATE INDEX messages_account ON messages (account_id, id);
CREATE UNIQUE INDEX messages_idempotency ON messages (account_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 'queued';

-- A message enters each status at most once.
CREATE TABLE message_events (
    message_id UUID NOT NULL,
    status     TEXT NOT NULL,
    error_type TEXT,
    at         BIGINT NOT NULL,
    PRIMARY KEY (message_id, status)
);

CREATE TABLE ledger_entries (
    id          UUID PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES accounts (id),
    kind        TEXT NOT NULL,
    sms_delta   BIGINT NOT NULL,
    mms_delta   BIGINT NOT NULL,
    sms_balance BIGINT NOT NULL,
    mms_balance BIGINT NOT NULL,
    message_id  UUID,
    reference   TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX ledger_account ON ledger_entries (account_id, id);
-- A message is charged at most once and refunded at most once.
CREATE UNIQUE INDEX ledger_once_per_message ON ledger_entries (message_id, kind)
    WHERE message_id IS NOT NULL;
