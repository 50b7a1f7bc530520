-- Of a message's dispatch attempts, those that found no upstream able to take it (not bound,
-- throttling): they do not count toward the dispatcher's limit of attempts.
ALTER TABLE messages ADD COLUMN unavailable_attempts BIGINT NOT NULL DEFAULT 0;
