-- Ledger schema, PostgreSQL flavour. Kept equivalent to ../sqlite/0001_ledger.sql (same tables,
-- columns and constraints; only type names differ). A test compares the two.

-- One row: the signed head. Advanced by compare-and-swap on `size`.
CREATE TABLE ledger_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    origin TEXT NOT NULL,
    size BIGINT NOT NULL,
    frontier BYTEA NOT NULL,
    note TEXT,
    key_index BIGINT NOT NULL
);

-- Signing keys in order; key 0 is the initial key, each later one announced by a rotation entry.
CREATE TABLE ledger_keys (
    key_index BIGINT PRIMARY KEY,
    verifier TEXT NOT NULL UNIQUE,
    announced_in BIGINT
);

-- Entries: canonical encoding and its RFC 6962 leaf hash. The primary key on seq is what stops
-- two writers from both extending the log at the same position.
CREATE TABLE ledger_entries (
    seq BIGINT PRIMARY KEY,
    leaf BYTEA NOT NULL,
    body TEXT NOT NULL,
    object_key BIGINT
);
-- First 8 bytes of SHA-256(object identifier): a small index key for proofs by object.
CREATE INDEX ledger_entries_object ON ledger_entries (object_key);

-- Every signed checkpoint ever issued.
CREATE TABLE ledger_checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT NOT NULL
);
