-- Idempotency keys per writer and route, postgres flavour (kept equivalent to
-- ../sqlite/0006_request_scopes.sql). A key is now recorded as `WRITER ROUTE ID` (see
-- src/ingest.rs, `request_key`): the writer named by its token, on one route, so no writer can
-- take another's key first. Keys recorded before were one namespace for every writer, and some
-- may have been taken that way: they are moved out of every writer's reach (a scoped key never
-- starts with a space). A retry of a request made before the upgrade is recorded again, once.
UPDATE ledger_requests SET id = ' ' || id;
