-- Interior hashes of the Merkle tree, postgres flavour (kept equivalent to
-- ../sqlite/0004_nodes.sql): the hash of every perfect subtree of at least 256 leaves
-- (`level` >= 8: leaves idx * 2^level up to (idx + 1) * 2^level), written in the transaction
-- that commits the entries completing it. Proofs read O(log n) of these rows and at most a few
-- hundred leaves, never every leaf. Untrusted like every row: a proof made from them is
-- checked against the signed root.
CREATE TABLE ledger_nodes (
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Proofs by object take the newest entries of one object: with the sequence number in the
-- index the server finds them in index order whatever its statistics say (right after a bulk
-- load it scanned the primary key backwards instead, reading half the table). SQLite's index
-- on object_key already holds the rowid, which is seq.
CREATE INDEX ledger_entries_object_seq ON ledger_entries (object_key, seq);
DROP INDEX ledger_entries_object;

-- Entry texts (about 3 KB) are compressed when stored: pglz, the default, took a third of the
-- server's time during appends; lz4 is several times faster. Only new rows are affected, and a
-- server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE ledger_entries ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$$;
