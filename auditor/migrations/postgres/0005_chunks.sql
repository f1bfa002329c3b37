-- Entries in chunks, postgres flavour (kept equivalent to ../sqlite/0005_chunks.sql): up to 256
-- consecutive entries of one commit per row, their texts compressed together (the layout is
-- described in src/store/chunk.rs). A row per entry cost the database more than the entry.
-- The primary key on first_seq stops two writers from both extending the log at one position
-- (two commits of the same size start their first chunk at the same entry); readers refuse
-- overlapping chunks.
CREATE TABLE ledger_chunks (
    first_seq BIGINT PRIMARY KEY,
    entry_count INTEGER NOT NULL CHECK (entry_count BETWEEN 1 AND 256),
    leaves BYTEA NOT NULL,
    objects BYTEA NOT NULL,
    codec INTEGER NOT NULL,
    bodies BYTEA NOT NULL
);
-- The texts are compressed already: the server stores them as they are.
ALTER TABLE ledger_chunks ALTER COLUMN bodies SET STORAGE EXTERNAL;

-- Proofs by object: (object key, seq) of the entries below the signed head, filled behind the
-- head from the chunks' object keys when an object is looked up (up to `upto`), not while
-- appending. Derived data: a proof made from it is checked against the signed root.
CREATE TABLE ledger_objects (
    object_key BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (object_key, seq)
);
CREATE TABLE ledger_objects_indexed (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    upto BIGINT NOT NULL
);

-- Existing entries become chunks of one, stored plain, already in the object index.
INSERT INTO ledger_chunks (first_seq, entry_count, leaves, objects, codec, bodies)
    SELECT seq, 1, leaf, ''::bytea, 0, convert_to(body || E'\n', 'UTF8') FROM ledger_entries ORDER BY seq;
INSERT INTO ledger_objects (object_key, seq)
    SELECT object_key, seq FROM ledger_entries WHERE object_key IS NOT NULL;
INSERT INTO ledger_objects_indexed (id, upto)
    SELECT 1, COALESCE(MAX(seq) + 1, 0) FROM ledger_entries;
DROP TABLE ledger_entries;
