-- Witness cosignatures, postgres flavour (kept equivalent to ../sqlite/0003_cosignatures.sql):
-- one C2SP cosignature line per witness and checkpoint, added to the note on export.
CREATE TABLE ledger_cosignatures (
    size BIGINT NOT NULL,
    witness TEXT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (size, witness)
);
