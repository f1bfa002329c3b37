//! The pure ledger core: entry encoding, Merkle tree, checkpoints, proofs and verification.
//! No I/O, no async, no database: plain functions over plain data.

pub mod checkpoint;
pub mod cosignature;
pub mod entry;
pub mod proof;
pub mod tree;
pub mod verify;

pub mod sequencer;

pub use sequencer::{Sealed, Sequencer, SequencerError, StoredHead};
