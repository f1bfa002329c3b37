//! The witness: its pure decision lives in [`hexagone_ledger::witness`] (re-exported here);
//! [`serve`] is `witness serve`, the HTTP service with its state file, and the client a log
//! uses to ask for cosignatures.

pub use hexagone_ledger::witness::*;

pub mod serve;
