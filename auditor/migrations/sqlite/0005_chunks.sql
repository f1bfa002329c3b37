-- Entries in chunks, sqlite flavour (kept equivalent to ../postgres/0005_chunks.sql): up to 256
-- consecutive entries of one commit per row, their texts compressed together (the layout is
-- described in src/store/chunk.rs). A row per entry cost the database more than the entry.
-- The primary key on first_seq stops two writers from both extending the log at one position
-- (two commits of the same size start their first chunk at the same entry); readers refuse
-- overlapping chunks.
CREATE TABLE ledger_chunks (
    first_seq INTEGER PRIMARY KEY,
    entry_count INTEGER NOT NULL CHECK (entry_count BETWEEN 1 AND 256),
    leaves BLOB NOT NULL,
    objects BLOB NOT NULL,
    codec INTEGER NOT NULL,
    bodies BLOB NOT NULL
);

-- Proofs by object: (object key, seq) of the entries below the signed head, filled behind the
-- head from the chunks' object keys when an object is looked up (up to `upto`), not while
-- appending. Derived data: a proof made from it is checked against the signed root.
CREATE TABLE ledger_objects (
    object_key BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (object_key, seq)
) WITHOUT ROWID;
CREATE TABLE ledger_objects_indexed (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    upto BIGINT NOT NULL
);

-- Existing entries become chunks of one, stored plain, already in the object index.
INSERT INTO ledger_chunks (first_seq, entry_count, leaves, objects, codec, bodies)
    SELECT seq, 1, leaf, x'', 0, CAST(body || char(10) AS BLOB) FROM ledger_entries ORDER BY seq;
INSERT INTO ledger_objects (object_key, seq)
    SELECT object_key, seq FROM ledger_entries WHERE object_key IS NOT NULL;
INSERT INTO ledger_objects_indexed (id, upto)
    SELECT 1, COALESCE(MAX(seq) + 1, 0) FROM ledger_entries;
DROP TABLE ledger_entries;
