-- Idempotency keys, sqlite flavour (kept equivalent to ../postgres/0002_requests.sql): the id a
-- writer gave an observation and the entry that recorded it, committed with that entry, so a
-- retried observation is recorded once.
CREATE TABLE ledger_requests (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);
