//! The Hexagone auditor library: ledger, locality lookups and the command-line entry points.

pub mod cli;
pub mod locate;
