//! The sequencer: the one place where entries are made and checkpoints signed. It holds the
//! signing key and its own view of the signed head, stamps entry times itself (never going
//! back), and adopts a head found in storage only after checking it: the note opens with the
//! key in force, its root is the root of the stored frontier, the last entry and every entry
//! announcing a key after the first are proven under that root, and the stored tree extends
//! the sequencer's own view. It never signs what it did not seal. Pure: the store reads, the
//! sequencer decides.

use std::sync::Arc;

use super::checkpoint::{Checkpoint, CheckpointError, open_checkpoint};
use super::entry::{Body, ENTRY_HEAD_MAX, EncodedBody, Entry, GENESIS_PREV, Prepared, Timestamp};
use super::tree::{
    Frontier, Hash, Subtree, TreeError, leaf_hash, verify_consistency, verify_inclusion,
};
use crate::keys::{SignerKey, VerifierKey};

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

/// Why the sequencer refuses a stored head (or a rotation): it stops rather than sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequencerError {
    /// The signing key offered is not the one in force.
    #[error("key {given} is not this ledger's signing key in force ({active})")]
    WrongKey {
        /// The key offered.
        given: String,
        /// The key in force.
        active: String,
    },
    /// The stored head belongs to another log.
    #[error("the stored head is for origin {found:?}, this sequencer signs for {origin:?}")]
    Origin {
        /// Our origin.
        origin: String,
        /// Stored origin.
        found: String,
    },
    /// A stored key row is not the one the sequencer knows, or is not announced by an entry.
    #[error("stored key number {index} ({key}) is not accepted: {why}")]
    Key {
        /// Index in the key table.
        index: usize,
        /// The stored verifier key string.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The stored head note does not open with the key in force.
    #[error(
        "the stored head note (size {size}) does not open with the key in force {key}: {source}"
    )]
    HeadNote {
        /// Head size.
        size: u64,
        /// The key in force for that size.
        key: String,
        /// Why it does not open.
        source: CheckpointError,
    },
    /// The head row has entries but no note.
    #[error("the stored head claims {size} entries but holds no signed note")]
    Unsigned {
        /// Head size.
        size: u64,
    },
    /// The note's size is not the head row's.
    #[error("the stored head note is for size {note} but the head row says {row}")]
    HeadSize {
        /// Size in the note.
        note: u64,
        /// Size in the row.
        row: u64,
    },
    /// The stored entries do not give the signed root.
    #[error(
        "the stored entries 0..{size} hash to root {computed} but the signed head has root {signed}: stored entries were rewritten"
    )]
    RootMismatch {
        /// Head size.
        size: u64,
        /// Root in the note (hex).
        signed: String,
        /// Root of the stored leaves (hex).
        computed: String,
    },
    /// The stored frontier is not the frontier of the stored leaves.
    #[error(
        "the stored frontier at size {size} is not the frontier of the stored entries: the head row was rewritten"
    )]
    FrontierMismatch {
        /// Head size.
        size: u64,
    },
    /// A stored entry the sequencer needs does not match its leaf or does not decode.
    #[error("stored entry {seq}: {why}")]
    Entry {
        /// Sequence number.
        seq: u64,
        /// What is wrong.
        why: String,
    },
    /// The stored tree is not an extension of the tree this sequencer signed.
    #[error(
        "the stored head of size {size} does not extend this sequencer's signed view of size {ours} ({why}): stored entries were rewritten"
    )]
    Diverged {
        /// Size of this sequencer's view.
        ours: u64,
        /// Head size.
        size: u64,
        /// What the consistency proof says.
        why: TreeError,
    },
    /// The head went back.
    #[error(
        "the signed head went back from size {ours} to size {found}: it was restored from an older state"
    )]
    RolledBack {
        /// Size this sequencer (or the checkpoint table) had seen signed.
        ours: u64,
        /// Size found.
        found: u64,
    },
    /// The head of one size was replaced by another note.
    #[error("the signed head of size {size} was replaced by a different note")]
    Replaced {
        /// Head size.
        size: u64,
    },
    /// A rotation to a key that cannot serve this log.
    #[error("cannot rotate to {key}: {why}")]
    Rotation {
        /// The new key.
        key: String,
        /// Why.
        why: String,
    },
}

/// What the store read of a head, for [`Sequencer::adopt`].
#[derive(Debug, Clone)]
pub struct StoredHead {
    /// Log origin in the head row.
    pub origin: String,
    /// Size in the head row.
    pub size: u64,
    /// Signed note in the head row.
    pub note: Option<String>,
    /// Stored frontier bytes.
    pub frontier: Vec<u8>,
    /// The key table: verifier key string and the entry announcing it (none for key 0).
    pub keys: Vec<(String, Option<u64>)>,
    /// Entry `size - 1` (when `size` grew past the sequencer's view), with its audit path.
    pub last: Option<ProvenEntry>,
    /// The entries below `size` announcing keys the sequencer does not know yet
    /// ([`Sequencer::needs`]), each with its audit path.
    pub rotations: Vec<ProvenEntry>,
    /// RFC 6962 consistency proof from the sequencer's size to `size` (empty when the
    /// sequencer is empty or already at `size`).
    pub consistency: Vec<Hash>,
}

/// A stored entry with its RFC 6962 audit path in the tree of the stored head, as the store
/// read it: the sequencer checks the path against the signed root, so nothing read needs to
/// be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenEntry {
    /// Sequence number.
    pub seq: u64,
    /// Canonical text.
    pub text: String,
    /// Audit path of leaf `seq` in the tree of the head's size.
    pub path: Vec<Hash>,
}

/// What [`Sequencer::adopt`] needs read from storage besides the head row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// Entry `size - 1`, when the head grew.
    pub last: Option<u64>,
    /// Entries announcing keys the sequencer does not know yet.
    pub rotations: Vec<u64>,
    /// A consistency proof from this size, when the head grew past a non-empty view.
    pub consistency_from: Option<u64>,
}

/// Seals entries, signs checkpoints, and keeps its own view of the signed head.
#[derive(Debug, Clone)]
pub struct Sequencer {
    key: Arc<SignerKey>,
    origin: String,
    /// The key chain known to be good, initial first; the last is in force.
    keys: Vec<VerifierKey>,
    /// For `keys[i + 1]`, the entry announcing it.
    rotations: Vec<u64>,
    prev: Hash,
    frontier: Frontier,
    last_time: Timestamp,
    /// The signed note at `frontier.size()` (none while sealed entries are unsigned, or when
    /// the log is empty).
    note: Option<String>,
    /// The signed head this view starts from: (size, note), what must still be stored.
    head: (u64, Option<String>),
}

impl Sequencer {
    /// A sequencer for a new, empty log signed by `key` (origin = key name).
    pub fn new(key: SignerKey) -> Self {
        let verifier = key.verifier().clone();
        Self::empty(key, verifier)
    }

    /// A sequencer at size 0 of a stored log whose initial key is `first_key`; it reaches the
    /// stored head through [`Sequencer::needs`] and [`Sequencer::adopt`].
    pub fn at_genesis(key: SignerKey, first_key: &str) -> Result<Self, SequencerError> {
        let first = VerifierKey::parse(first_key).map_err(|e| SequencerError::Key {
            index: 0,
            key: first_key.to_string(),
            why: e.to_string(),
        })?;
        Ok(Self::empty(key, first))
    }

    fn empty(key: SignerKey, first: VerifierKey) -> Self {
        Self {
            origin: first.name().to_string(),
            key: Arc::new(key),
            keys: vec![first],
            rotations: Vec::new(),
            prev: GENESIS_PREV,
            frontier: Frontier::new(),
            last_time: Timestamp(i64::MIN),
            note: None,
            head: (0, None),
        }
    }

    /// The log origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Entries sealed so far (= next sequence number).
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The tree frontier.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Leaf hash of the last entry (zeros when empty).
    pub fn prev(&self) -> Hash {
        self.prev
    }

    /// The time of the last entry sealed.
    pub fn last_time(&self) -> Timestamp {
        self.last_time
    }

    /// The signed head this view was built on: (size, note).
    pub fn head(&self) -> (u64, Option<&str>) {
        (self.head.0, self.head.1.as_deref())
    }

    /// The signed note at the current size, if signed.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The key chain, initial first; the last is in force.
    pub fn keys(&self) -> &[VerifierKey] {
        &self.keys
    }

    /// The signing key.
    pub fn signer(&self) -> &VerifierKey {
        self.key.verifier()
    }

    /// Seals `body` at the end of the log, stamped `now` or, if the clock went back, the time
    /// of the previous entry: entry times never decrease.
    pub fn seal(&mut self, now: Timestamp, body: Body) -> Sealed {
        self.seal_encoded(now, &body.encode())
    }

    /// [`Sequencer::seal`] for a body encoded already ([`Body::encode`]).
    pub fn seal_encoded(&mut self, now: Timestamp, body: &EncodedBody) -> Sealed {
        let time = self.stamp(now);
        let seq = self.size();
        let mut text = String::with_capacity(body.len() + ENTRY_HEAD_MAX);
        Entry::encode_with(seq, time, &self.prev, body, &mut text);
        let leaf = leaf_hash(text.as_bytes());
        self.prev = leaf;
        self.frontier.push(leaf);
        self.last_time = time;
        self.note = None;
        Sealed { seq, text, leaf }
    }

    /// The time entries sealed now get: `now`, or the last entry's time if the clock went
    /// back (entry times never decrease).
    pub fn stamp(&self, now: Timestamp) -> Timestamp {
        now.max(self.last_time)
    }

    /// Seals entries encoded ahead ([`Prepared`], which must start at this log's size and
    /// carry a time no earlier than the last entry's): fills each one's `prev` in order,
    /// hashes and chains it, handing `completed` the perfect subtrees completed
    /// ([`Frontier::push_completing`]). Returns the leaf hashes.
    pub fn seal_prepared(
        &mut self,
        p: &mut Prepared,
        mut completed: impl FnMut(Subtree, Hash),
    ) -> Vec<Hash> {
        assert_eq!(
            p.first(),
            self.size(),
            "entries prepared for another position"
        );
        assert!(
            p.time() >= self.last_time,
            "entries prepared with an earlier time"
        );
        let mut leaves = Vec::with_capacity(p.len());
        for i in 0..p.len() {
            let leaf = leaf_hash(p.chain(i, &self.prev));
            self.prev = leaf;
            self.frontier.push_completing(leaf, &mut completed);
            leaves.push(leaf);
        }
        if !p.is_empty() {
            self.last_time = p.time();
            self.note = None;
        }
        leaves
    }

    /// The checkpoint body of the current tree.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            origin: self.origin.clone(),
            size: self.size(),
            root: self.frontier.root(),
            extensions: Vec::new(),
        }
    }

    /// Signs a checkpoint of everything sealed; it becomes this view's head.
    pub fn sign(&mut self) -> String {
        let note = self.checkpoint().sign(&self.key);
        self.note = Some(note.clone());
        self.head = (self.size(), Some(note.clone()));
        note
    }

    /// Seals a rotation entry announcing `new`, signs its checkpoint with the current key,
    /// then signs with `new` from the next entry on. The new key must be named after the
    /// origin and never have served this log.
    pub fn rotate(
        &mut self,
        now: Timestamp,
        new: SignerKey,
    ) -> Result<(Sealed, String), SequencerError> {
        let announced = new.verifier().clone();
        let refuse = |why: &str| SequencerError::Rotation {
            key: announced.to_string(),
            why: why.to_string(),
        };
        if announced.name() != self.origin {
            return Err(refuse(&format!(
                "it is named {:?}; it must be named after the log origin {:?}",
                announced.name(),
                self.origin
            )));
        }
        if self.keys.contains(&announced) {
            return Err(refuse("the key already signed for this log"));
        }
        let sealed = self.seal(
            now,
            Body::KeyRotation {
                new_key: announced.to_string(),
            },
        );
        let note = self.sign();
        self.keys.push(announced);
        self.rotations.push(sealed.seq);
        self.key = Arc::new(new);
        Ok((sealed, note))
    }

    /// What to read, with proofs, to adopt a stored head of `size` whose key table is
    /// `keys`: O(log n) hashes per entry, never every leaf.
    pub fn needs(&self, size: u64, keys: &[(String, Option<u64>)]) -> Needs {
        let grew = size > self.size();
        Needs {
            last: grew.then(|| size - 1),
            rotations: keys
                .iter()
                .skip(self.keys.len())
                .filter_map(|(_, at)| *at)
                .filter(|s| *s < size)
                .collect(),
            consistency_from: (grew && self.size() > 0).then(|| self.size()),
        }
    }

    /// Adopts a stored head after checking it against this view: the stored frontier's root
    /// must be the signed root, the stored tree must extend this view, and the last entry and
    /// the rotation entries must be proven under that root (see [`Sequencer::needs`]). On
    /// error the view is unchanged.
    pub fn adopt(&mut self, head: &StoredHead) -> Result<(), SequencerError> {
        if head.origin != self.origin {
            return Err(SequencerError::Origin {
                origin: self.origin.clone(),
                found: head.origin.clone(),
            });
        }
        let (ours, our_note) = (self.head.0, self.head.1.as_deref());
        if head.size < ours {
            return Err(SequencerError::RolledBack {
                ours,
                found: head.size,
            });
        }
        if head.size == ours && our_note.is_some() && head.note.as_deref() != our_note {
            return Err(SequencerError::Replaced { size: ours });
        }
        if head.size < self.size() {
            return Err(SequencerError::RolledBack {
                ours: self.size(),
                found: head.size,
            });
        }
        let frontier = Frontier::from_bytes(&head.frontier)
            .ok()
            .filter(|f| f.size() == head.size)
            .ok_or(SequencerError::FrontierMismatch { size: head.size })?;
        if head.size == self.size() && frontier != self.frontier {
            return Err(SequencerError::FrontierMismatch { size: head.size });
        }
        // Every proof is checked against this root, and this root against the signed one.
        let root = frontier.root();
        let (keys, rotations) = self.check_keys(&root, head)?;
        let active = keys.last().expect("key 0 exists");
        if active != self.key.verifier() {
            return Err(SequencerError::WrongKey {
                given: self.key.verifier().to_string(),
                active: active.to_string(),
            });
        }
        if head.size > 0 {
            let note = head
                .note
                .as_deref()
                .ok_or(SequencerError::Unsigned { size: head.size })?;
            // The checkpoint that commits a rotation is signed by the key before it.
            let signer = match rotations.last() {
                Some(&s) if s + 1 == head.size => &keys[keys.len() - 2],
                _ => active,
            };
            let (cp, _) =
                open_checkpoint(note, std::slice::from_ref(signer)).map_err(|source| {
                    SequencerError::HeadNote {
                        size: head.size,
                        key: signer.to_string(),
                        source,
                    }
                })?;
            if cp.size != head.size {
                return Err(SequencerError::HeadSize {
                    note: cp.size,
                    row: head.size,
                });
            }
            if cp.root != root {
                // The stored entries still give the signed root: only the frontier was rewritten.
                let entries_hold = head
                    .last
                    .as_ref()
                    .is_some_and(|l| proven(l, head.size, &cp.root).is_ok());
                return Err(if entries_hold {
                    SequencerError::FrontierMismatch { size: head.size }
                } else {
                    SequencerError::RootMismatch {
                        size: head.size,
                        signed: hex::encode(cp.root),
                        computed: hex::encode(root),
                    }
                });
            }
        } else if head.note.is_some() {
            return Err(SequencerError::HeadSize {
                note: 0,
                row: head.size,
            });
        }
        if self.size() > 0 && self.size() < head.size {
            verify_consistency(
                self.size(),
                head.size,
                &self.frontier.root(),
                &root,
                &head.consistency,
            )
            .map_err(|why| SequencerError::Diverged {
                ours: self.size(),
                size: head.size,
                why,
            })?;
        }
        let (prev, last_time) = if head.size == self.size() {
            (self.prev, self.last_time)
        } else {
            let last = head
                .last
                .as_ref()
                .filter(|l| l.seq + 1 == head.size)
                .ok_or_else(|| SequencerError::Entry {
                    seq: head.size - 1,
                    why: "it was not read".into(),
                })?;
            let (entry, leaf) = proven(last, head.size, &root).map_err(|e| match e {
                ProvenError::Entry(e) => e,
                ProvenError::Path(TreeError::RootMismatch { computed, expected }) => {
                    SequencerError::RootMismatch {
                        size: head.size,
                        signed: expected,
                        computed,
                    }
                }
                ProvenError::Path(e) => SequencerError::Entry {
                    seq: last.seq,
                    why: format!("its audit path does not check: {e}"),
                },
            })?;
            (leaf, entry.time)
        };
        self.keys = keys;
        self.rotations = rotations;
        self.prev = prev;
        self.frontier = frontier;
        self.last_time = last_time;
        self.note = head.note.clone();
        self.head = (head.size, head.note.clone());
        Ok(())
    }

    /// The stored key table must extend the chain this sequencer knows, each new key
    /// announced by a rotation entry below the head, proven under `root`.
    fn check_keys(
        &self,
        root: &Hash,
        head: &StoredHead,
    ) -> Result<(Vec<VerifierKey>, Vec<u64>), SequencerError> {
        let mut keys = self.keys.clone();
        let mut rotations = self.rotations.clone();
        for (index, (text, at)) in head.keys.iter().enumerate() {
            let refuse = |why: String| SequencerError::Key {
                index,
                key: text.clone(),
                why,
            };
            if let Some(known) = self.keys.get(index) {
                if known.to_string() != *text {
                    return Err(refuse(format!("this sequencer knows key {known} there")));
                }
                continue;
            }
            let seq = at.ok_or_else(|| refuse("no rotation entry announces it".into()))?;
            if seq < self.size() || seq >= head.size {
                return Err(refuse(format!(
                    "its rotation entry {seq} is not among the signed entries {}..{}",
                    self.size(),
                    head.size
                )));
            }
            if rotations.last().is_some_and(|&r| seq <= r) {
                return Err(refuse(format!(
                    "entry {seq} is not after the last rotation"
                )));
            }
            let read = head
                .rotations
                .iter()
                .find(|r| r.seq == seq)
                .ok_or_else(|| refuse(format!("entry {seq} was not read")))?;
            let (entry, _) = proven(read, head.size, root).map_err(|e| match e {
                ProvenError::Entry(e) => e,
                ProvenError::Path(e) => refuse(format!(
                    "its rotation entry {seq} is not under the stored root: {e}"
                )),
            })?;
            let Body::KeyRotation { new_key } = entry.body else {
                return Err(refuse(format!("entry {seq} is not a key rotation")));
            };
            if new_key != *text {
                return Err(refuse(format!("entry {seq} announces {new_key}")));
            }
            let key = VerifierKey::parse(text).map_err(|e| refuse(e.to_string()))?;
            if key.name() != self.origin || keys.contains(&key) {
                return Err(refuse("not named after the origin, or already used".into()));
            }
            keys.push(key);
            rotations.push(seq);
        }
        if head.keys.len() < self.keys.len() {
            return Err(SequencerError::Key {
                index: head.keys.len(),
                key: self.keys[head.keys.len()].to_string(),
                why: "was removed from the key table".into(),
            });
        }
        Ok((keys, rotations))
    }
}

/// Why a [`ProvenEntry`] does not check.
enum ProvenError {
    /// The text does not decode or names another seq.
    Entry(SequencerError),
    /// Its audit path does not lead to the root.
    Path(TreeError),
}

/// Decodes a stored entry, checking it sits at its seq and its audit path leads from its leaf
/// to `root` in the tree of `size`; returns it with its leaf hash.
fn proven(p: &ProvenEntry, size: u64, root: &Hash) -> Result<(Entry, Hash), ProvenError> {
    let bad = |why: String| ProvenError::Entry(SequencerError::Entry { seq: p.seq, why });
    let entry = Entry::decode(p.text.as_bytes()).map_err(|e| bad(e.to_string()))?;
    if entry.seq != p.seq {
        return Err(bad(format!("it says seq {}", entry.seq)));
    }
    let leaf = leaf_hash(p.text.as_bytes());
    verify_inclusion(p.seq, size, &leaf, &p.path, root).map_err(ProvenError::Path)?;
    Ok((entry, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "hexagone.test/sequencer";

    fn key(seed: u8) -> SignerKey {
        SignerKey::from_signing_key(ORIGIN, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn body(i: u64) -> Body {
        crate::entry::fixture::observation(i)
    }

    /// A stored log as a store would hold it: texts, leaves, head, key table.
    struct Stored {
        texts: Vec<String>,
        head: StoredHead,
    }

    fn stored(seq: &Sequencer, texts: Vec<String>, keys: Vec<(String, Option<u64>)>) -> Stored {
        let head = StoredHead {
            origin: ORIGIN.into(),
            size: seq.size(),
            note: seq.note().map(str::to_string),
            frontier: seq.frontier().to_bytes(),
            keys,
            last: None,
            rotations: Vec::new(),
            consistency: Vec::new(),
        };
        Stored { texts, head }
    }

    /// The head of `s` with what `seq` needs read, proven from the stored texts as a store
    /// would.
    fn read_for(seq: &Sequencer, s: &Stored) -> StoredHead {
        use crate::tree::{consistency_proof, inclusion_proof, root_of_leaves};
        let size = s.head.size;
        let leaves: Vec<Hash> = s.texts[..size as usize]
            .iter()
            .map(|t| leaf_hash(t.as_bytes()))
            .collect();
        let mut mth = |a: u64, b: u64| {
            Ok::<_, std::convert::Infallible>(root_of_leaves(&leaves[a as usize..b as usize]))
        };
        let mut prove = |i: u64| ProvenEntry {
            seq: i,
            text: s.texts[i as usize].clone(),
            path: inclusion_proof(i, size, &mut mth).unwrap().unwrap(),
        };
        let needs = seq.needs(size, &s.head.keys);
        let mut head = s.head.clone();
        head.last = needs.last.map(&mut prove);
        head.rotations = needs.rotations.into_iter().map(&mut prove).collect();
        head.consistency = needs
            .consistency_from
            .map(|old| consistency_proof(old, size, &mut mth).unwrap().unwrap())
            .unwrap_or_default();
        head
    }

    /// Adopts `s` from genesis with `signer`, as a store opening the log would.
    fn adopt(signer: SignerKey, s: &Stored) -> Result<Sequencer, SequencerError> {
        let mut seq = Sequencer::at_genesis(signer, &s.head.keys[0].0)?;
        let head = read_for(&seq, s);
        seq.adopt(&head)?;
        Ok(seq)
    }

    fn check(s: &Stored, signer: SignerKey, want: Result<u64, &str>) {
        match (adopt(signer, s), want) {
            (Ok(seq), Ok(size)) => assert_eq!(seq.size(), size),
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} should mention {w}"),
            (got, want) => panic!("adopt = {:?}, wanted {want:?}", got.map(|s| s.size())),
        }
    }

    fn log(n: u64) -> (Sequencer, Vec<String>) {
        let mut seq = Sequencer::new(key(1));
        let texts = (0..n)
            .map(|i| seq.seal(Timestamp(1000 + i as i64), body(i)).text)
            .collect();
        seq.sign();
        (seq, texts)
    }

    #[test]
    fn entries_prepared_ahead_seal_as_entries_sealed_one_by_one() {
        let mut one = Sequencer::new(key(1));
        let mut ahead = one.clone();
        one.seal(Timestamp(9000), body(99));
        ahead.seal(Timestamp(9000), body(99));
        let (mut texts, mut leaves, mut kept) = (String::new(), Vec::new(), Vec::new());
        for i in 0..300 {
            // Time 5000 is before the last entry's: stamped 9000, as `seal` does.
            let s = one.seal(Timestamp(5000), body(i));
            texts.push_str(&s.text);
            texts.push('\n');
            leaves.push(s.leaf);
        }
        let mut p = Prepared::new(ahead.size(), ahead.stamp(Timestamp(5000)), 300);
        for i in 0..300 {
            p.push(&body(i));
        }
        let got = ahead.seal_prepared(&mut p, |s, h| kept.push((s, h)));
        assert_eq!((p.text(), &got), (texts.as_str(), &leaves));
        assert_eq!(ahead.frontier().root(), one.frontier().root());
        assert_eq!(ahead.last_time(), one.last_time());
        // The completed subtrees handed over are those of the tree.
        let (level8, hash) = kept.iter().find(|(s, _)| s.level == 8).unwrap();
        assert_eq!(level8.index, 0);
        let mut first256 = Sequencer::new(key(1));
        first256.seal(Timestamp(9000), body(99));
        for i in 0..255 {
            first256.seal(Timestamp(9000), body(i));
        }
        assert_eq!(*hash, first256.frontier().root());
    }

    #[test]
    fn times_never_decrease() {
        let mut seq = Sequencer::new(key(1));
        let a = seq.seal(Timestamp(5000), body(0));
        let b = seq.seal(Timestamp(1000), body(1));
        let c = seq.seal(Timestamp(6000), body(2));
        let time = |s: &Sealed| Entry::decode(s.text.as_bytes()).unwrap().time;
        assert_eq!(
            [time(&a), time(&b), time(&c)],
            [Timestamp(5000), Timestamp(5000), Timestamp(6000)]
        );
    }

    #[test]
    fn adopts_only_a_head_it_can_check() {
        let (seq, texts) = log(5);
        let keys = vec![(key(1).verifier().to_string(), None)];
        let good = stored(&seq, texts.clone(), keys.clone());
        check(&good, key(1), Ok(5));
        check(
            &good,
            key(2),
            Err("is not this ledger's signing key in force"),
        );

        // A rewritten entry with its leaf, chain and frontier recomputed: the note still
        // signs the old root.
        let mut forged = Sequencer::new(key(1));
        let mut rewritten: Vec<String> = Vec::new();
        for i in 0..5 {
            let b = body(if i == 2 { 99 } else { i });
            rewritten.push(forged.seal(Timestamp(1000 + i as i64), b).text);
        }
        let mut s = stored(&forged, rewritten, keys.clone());
        s.head.note = seq.note().map(str::to_string);
        check(&s, key(1), Err("stored entries were rewritten"));

        // The frontier alone rewritten.
        let mut s = stored(&seq, texts.clone(), keys.clone());
        s.head.frontier = forged.frontier().to_bytes();
        check(&s, key(1), Err("the head row was rewritten"));

        // A note by another key, a note for another size, no note.
        let mut s = stored(&seq, texts.clone(), keys.clone());
        s.head.note = Some(forged.clone().checkpoint().sign(&key(2)));
        check(&s, key(1), Err("does not open with the key in force"));
        let mut s = stored(&seq, texts.clone(), keys.clone());
        s.head.note = None;
        check(&s, key(1), Err("holds no signed note"));

        // A key row nobody announced.
        let s = stored(
            &seq,
            texts.clone(),
            vec![keys[0].clone(), (key(3).verifier().to_string(), None)],
        );
        check(&s, key(3), Err("no rotation entry announces it"));
        // A key row pointing at an observation.
        let s = stored(
            &seq,
            texts,
            vec![keys[0].clone(), (key(3).verifier().to_string(), Some(1))],
        );
        check(&s, key(3), Err("entry 1 is not a key rotation"));
    }

    #[test]
    fn rotation_is_followed_and_checked() {
        let (mut seq, mut texts) = log(3);
        assert!(matches!(
            seq.clone()
                .rotate(Timestamp(0), SignerKey::generate("other").unwrap()),
            Err(SequencerError::Rotation { .. })
        ));
        assert!(matches!(
            seq.clone().rotate(Timestamp(0), key(1)),
            Err(SequencerError::Rotation { .. })
        ));
        let (r, _) = seq.rotate(Timestamp(0), key(2)).unwrap();
        texts.push(r.text);
        let keys = vec![
            (key(1).verifier().to_string(), None),
            (key(2).verifier().to_string(), Some(3)),
        ];
        // Right after the rotation the head is signed by the old key.
        check(&stored(&seq, texts.clone(), keys.clone()), key(2), Ok(4));
        check(
            &stored(&seq, texts.clone(), keys.clone()),
            key(1),
            Err("key in force"),
        );
        texts.push(seq.seal(Timestamp(0), body(9)).text);
        seq.sign();
        check(&stored(&seq, texts, keys), key(2), Ok(5));
    }

    #[test]
    fn a_view_never_goes_back() {
        let (mut seq, texts) = log(4);
        let keys = vec![(key(1).verifier().to_string(), None)];
        let old = stored(&seq, texts.clone(), keys.clone());
        seq.seal(Timestamp(0), body(4));
        seq.sign();
        let head = read_for(&seq, &old);
        assert_eq!(
            seq.adopt(&head),
            Err(SequencerError::RolledBack { ours: 5, found: 4 })
        );
    }

    /// A head signed with the key but over another history than the view's (a fork) is not
    /// adopted: the consistency proof from the view fails; the honest extension is adopted.
    #[test]
    fn only_an_extension_of_the_view_is_adopted() {
        let (view, texts) = log(4);
        let keys = vec![(key(1).verifier().to_string(), None)];
        let mut honest = view.clone();
        let mut longer = texts.clone();
        for i in 4..7 {
            longer.push(honest.seal(Timestamp(2000), body(i)).text);
        }
        honest.sign();
        let mut fork = Sequencer::new(key(1));
        let forked: Vec<String> = (0..7)
            .map(|i| {
                fork.seal(Timestamp(1000), body(if i == 1 { 77 } else { i }))
                    .text
            })
            .collect();
        fork.sign();
        let s = stored(&fork, forked, keys.clone());
        let mut seq = view.clone();
        assert!(matches!(
            seq.adopt(&read_for(&view, &s)),
            Err(SequencerError::Diverged {
                ours: 4,
                size: 7,
                ..
            })
        ));
        let s = stored(&honest, longer, keys);
        seq.adopt(&read_for(&view, &s)).unwrap();
        assert_eq!((seq.size(), seq.prev()), (7, honest.prev()));
    }
}
