-- Low-balance alerts and the operator's resend of a failed webhook delivery.

-- The SMS balance under which an account's charge posts `account.balance_low`: a charge that
-- takes the balance from at or above it to below it posts the event, once per crossing. NULL
-- for no alert. It is read with the balance that an admission locks, so it costs no query.
ALTER TABLE accounts ADD COLUMN low_balance_threshold BIGINT;

-- What an `account.balance_low` delivery reports (NULL for a message's events): the SMS
-- balance right after the charge of its message, and the threshold it fell below.
ALTER TABLE webhook_deliveries ADD COLUMN sms_balance BIGINT;
ALTER TABLE webhook_deliveries ADD COLUMN sms_threshold BIGINT;

-- When the operator last made a failed delivery due again, and how many attempts it had made
-- by then: its retry period and backoff start over from there.
ALTER TABLE webhook_deliveries ADD COLUMN resent_at BIGINT;
ALTER TABLE webhook_deliveries ADD COLUMN resent_after BIGINT;
