//! `hexagone-ledger`, the pure ledger core: the canonical entry encoding, the RFC 6962 Merkle
//! tree, C2SP checkpoints and signed notes, cosignatures and the witness's decision, proofs,
//! the export bundle's records, key encodings, the sequencer and the verification decision.
//!
//! No I/O beyond `std::io` readers and writers handed in, no async runtime, no database, no
//! file access: plain functions over plain data. `tests/deps.rs` fails if a dependency that
//! would bring any of those enters this crate. Stores, the HTTP service, key files and the
//! command line live in `hexagone-auditor`, above it.

pub mod bundle;
pub mod checkpoint;
pub mod cosignature;
pub mod entry;
pub mod keys;
pub mod proof;
pub mod sequencer;
pub mod tree;
pub mod verify;
pub mod witness;

pub use sequencer::{Sealed, Sequencer, SequencerError, StoredHead};
