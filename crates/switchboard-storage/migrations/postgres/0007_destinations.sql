-- What the lookup told of an outbound message's recipient: its country (ISO 3166-1 alpha-2)
-- and its number type; NULL for inbound messages and replies, and for messages stored before.
ALTER TABLE messages ADD COLUMN dest_region TEXT;
ALTER TABLE messages ADD COLUMN dest_type TEXT;
-- The only countries an account sends to, comma-separated codes (NULL: every country), and
-- whether it accepts numbers its plan does not tell apart as fixed or mobile.
ALTER TABLE accounts ADD COLUMN allowed_regions TEXT;
ALTER TABLE accounts ADD COLUMN accept_fixed_or_mobile BOOLEAN NOT NULL DEFAULT TRUE;
