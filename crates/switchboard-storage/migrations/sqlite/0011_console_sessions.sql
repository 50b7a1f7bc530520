-- Sessions of the web console. The session token is only known to the browser that holds it:
-- the table keeps its keyed hash, so a copy of the database gives no usable session. An
-- operator's session has no account; an account holder's names the API key it logged in
-- with, whose revocation ends it.
CREATE TABLE console_sessions (
    token_hash   BLOB PRIMARY KEY,
    account_id   BLOB,
    key_id       TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
