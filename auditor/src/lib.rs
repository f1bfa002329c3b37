//! The Hexagone auditor library: ledger, locality lookups and the command-line entry points.

pub mod bundle;
pub mod bundle_verify;
pub mod cli;
pub mod collect;
pub mod ingest;
pub mod judge;
pub mod keyfile;
pub mod keys;
pub mod ledger;
pub mod locate;
pub mod report;
pub mod serve;
pub mod store;
pub mod witness;
