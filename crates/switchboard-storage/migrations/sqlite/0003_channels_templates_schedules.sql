-- Bird channels and templates, and each message's channel, media list, schedule, validity
-- and dialect details.

-- A named sending channel of an account, sending from one of its senders.
CREATE TABLE channels (
    id         BLOB PRIMARY KEY,
    account_id BLOB NOT NULL REFERENCES accounts (id),
    name       TEXT NOT NULL,
    sender     TEXT NOT NULL REFERENCES senders (address),
    active     BOOLEAN NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX channels_account ON channels (account_id, id);

-- A named message template of an account.
CREATE TABLE templates (
    id         BLOB PRIMARY KEY,
    account_id BLOB NOT NULL REFERENCES accounts (id),
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX templates_name ON templates (account_id, name);

-- An immutable version of a template: its text per locale (a JSON object), active or not.
CREATE TABLE template_versions (
    id          BLOB PRIMARY KEY,
    template_id BLOB NOT NULL REFERENCES templates (id),
    account_id  BLOB NOT NULL REFERENCES accounts (id),
    texts       TEXT NOT NULL,
    active      BOOLEAN NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX template_versions_template ON template_versions (template_id, id);

-- The channel a message was sent on.
ALTER TABLE messages ADD COLUMN channel_id BLOB;
-- Every media URL as a JSON array, when there is more than one (media_url holds the first).
ALTER TABLE messages ADD COLUMN media TEXT;
-- When a message not yet sent ends expired.
ALTER TABLE messages ADD COLUMN expires_at INTEGER;
-- The dialect's own fields of the request (a JSON object), returned when the message is read.
ALTER TABLE messages ADD COLUMN details TEXT;

CREATE INDEX messages_channel ON messages (channel_id, id) WHERE channel_id IS NOT NULL;
CREATE INDEX messages_scheduled ON messages (next_attempt_at) WHERE status = 'scheduled';
