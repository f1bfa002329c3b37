//! The pure ledger core: entry encoding, Merkle tree, checkpoints, proofs and verification.
//! No I/O, no async, no database: plain functions over plain data.

pub mod checkpoint;
pub mod entry;
pub mod proof;
pub mod tree;
pub mod verify;

use entry::{Body, Entry, GENESIS_PREV, Timestamp};
use tree::{Frontier, Hash, leaf_hash};

/// An entry sealed into the log: its number, canonical text and leaf hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Sequence number.
    pub seq: u64,
    /// Canonical encoding.
    pub text: String,
    /// RFC 6962 leaf hash of `text`.
    pub leaf: Hash,
}

/// Assigns sequence numbers and chains entries, keeping the tree frontier: the one place
/// where entries are made. Stores resume it from their durable state.
#[derive(Debug, Clone, Default)]
pub struct Sequencer {
    prev: Hash,
    frontier: Frontier,
}

impl Sequencer {
    /// A sequencer for an empty log.
    pub fn new() -> Self {
        Self {
            prev: GENESIS_PREV,
            frontier: Frontier::new(),
        }
    }

    /// Resumes after the last entry: its leaf hash and the tree frontier (size = next seq).
    pub fn resume(prev: Hash, frontier: Frontier) -> Self {
        Self { prev, frontier }
    }

    /// Next sequence number.
    pub fn next_seq(&self) -> u64 {
        self.frontier.size()
    }

    /// Leaf hash of the last entry (zeros when empty).
    pub fn prev(&self) -> Hash {
        self.prev
    }

    /// The tree frontier.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Seals a new entry at the end of the log.
    pub fn seal(&mut self, time: Timestamp, body: Body) -> Sealed {
        let entry = Entry {
            seq: self.next_seq(),
            time,
            prev: self.prev,
            body,
        };
        let text = entry.encode();
        let leaf = leaf_hash(text.as_bytes());
        self.prev = leaf;
        self.frontier.push(leaf);
        Sealed {
            seq: entry.seq,
            text,
            leaf,
        }
    }

    /// The checkpoint body for the current tree.
    pub fn checkpoint(&self, origin: &str) -> checkpoint::Checkpoint {
        checkpoint::Checkpoint {
            origin: origin.to_string(),
            size: self.frontier.size(),
            root: self.frontier.root(),
            extensions: Vec::new(),
        }
    }
}
