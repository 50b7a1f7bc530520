-- Switchboard schema, SQLite. Times are UTC milliseconds since the Unix epoch.
-- Migrations are append-only: never edit one that has been released.
-- Tables keyed by UUID are WITHOUT ROWID: each is one B-tree in key order.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE accounts (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    sms_credits INTEGER NOT NULL DEFAULT 0 CHECK (sms_credits >= 0),
    mms_credits INTEGER NOT NULL DEFAULT 0 CHECK (mms_credits >= 0),
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    account_id  BLOB NOT NULL REFERENCES accounts (id),
    name        TEXT,
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_account ON api_keys (account_id, id);

CREATE TABLE senders (
    address    TEXT PRIMARY KEY,
    account_id BLOB NOT NULL REFERENCES accounts (id),
    active     INTEGER NOT NULL,
    sms        INTEGER NOT NULL,
    mms        INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX senders_account ON senders (account_id, address);

CREATE TABLE opt_outs (
    sender     TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    account_id BLOB NOT NULL REFERENCES accounts (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (sender, recipient)
);
CREATE INDEX opt_outs_account ON opt_outs (account_id, sender, recipient);

CREATE TABLE messages (
    id                  BLOB PRIMARY KEY,
    account_id          BLOB NOT NULL REFERENCES accounts (id),
    direction           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    recipient           TEXT NOT NULL,
    sender              TEXT NOT NULL,
    body                TEXT,
    media_url           TEXT,
    encoding            TEXT NOT NULL,
    segments            INTEGER NOT NULL,
    status              TEXT NOT NULL,
    error_type          TEXT,
    error_message       TEXT,
    sms_charged         INTEGER NOT NULL CHECK (sms_charged >= 0),
    mms_charged         INTEGER NOT NULL CHECK (mms_charged >= 0),
    idempotency_key     TEXT,
    request_hash        BLOB,
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    provider_message_id TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    sent_at             INTEGER
) WITHOUT ROWID;
CREATE INDEX messages_account ON messages (account_id, id);
CREATE UNIQUE INDEX messages_idempotency ON messages (account_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 'queued';

-- A message enters each status at most once.
CREATE TABLE message_events (
    message_id BLOB NOT NULL,
    status     TEXT NOT NULL,
    error_type TEXT,
    at         INTEGER NOT NULL,
    PRIMARY KEY (message_id, status)
) WITHOUT ROWID;

CREATE TABLE ledger_entries (
    id          BLOB PRIMARY KEY,
    account_id  BLOB NOT NULL REFERENCES accounts (id),
    kind        TEXT NOT NULL,
    sms_delta   INTEGER NOT NULL,
    mms_delta   INTEGER NOT NULL,
    sms_balance INTEGER NOT NULL,
    mms_balance INTEGER NOT NULL,
    message_id  BLOB,
    reference   TEXT,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX ledger_account ON ledger_entries (account_id, id);
-- A message is charged at most once and refunded at most once.
CREATE UNIQUE INDEX ledger_once_per_message ON ledger_entries (message_id, kind)
    WHERE message_id IS NOT NULL;
