-- Interior hashes of the Merkle tree, sqlite flavour (kept equivalent to
-- ../postgres/0004_nodes.sql): the hash of every perfect subtree of at least 256 leaves
-- (`level` >= 8: leaves idx * 2^level up to (idx + 1) * 2^level), written in the transaction
-- that commits the entries completing it. Proofs read O(log n) of these rows and at most a few
-- hundred leaves, never every leaf. Untrusted like every row: a proof made from them is
-- checked against the signed root.
CREATE TABLE ledger_nodes (
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
