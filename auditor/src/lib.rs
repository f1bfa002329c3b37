//! The Hexagone auditor library: ledger, locality lookups and the command-line entry points.

/// The export bundle's records, owned by the pure ledger crate.
pub use hexagone_ledger::bundle;
pub mod append;
pub mod args;
pub mod bundle_verify;
pub mod cli;
pub mod collect;
pub mod durable;
pub mod ingest;
pub mod judge;
pub mod keyfile;
pub mod listen;
/// The pure ledger core (crate `hexagone-ledger`).
pub use hexagone_ledger as ledger;
/// Key encodings and fingerprints, owned by the pure ledger crate.
pub use hexagone_ledger::keys;
pub mod locate;
pub mod measure;
pub mod names;
pub mod queue;
pub mod report;
pub mod serve;
pub mod store;
pub mod witness;
