-- Proofs by (store, object), postgres flavour (kept equivalent to ../sqlite/0007_object_store_keys.sql):
-- the object index now holds two rows per observation, under the key of its identifier and
-- under the key of its store and identifier (src/store/db.rs, `entry_keys`), filled from the
-- entries themselves. The rows made before hold the first key only: the index is derived data,
-- so it is emptied and filled again behind the head on the next lookup.
DELETE FROM ledger_objects;
DELETE FROM ledger_objects_indexed;
