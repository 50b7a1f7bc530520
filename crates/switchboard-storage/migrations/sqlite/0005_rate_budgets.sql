-- Rate-limit buckets shared by every node on the database: each holds up to a second's worth
-- of tokens, refilled from the time of its last take.
CREATE TABLE rate_budgets (
    name   TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at_ms  INTEGER NOT NULL
) WITHOUT ROWID;
