//! The sequencer: the one place where entries are made and checkpoints signed. It holds the
//! signing key and its own view of the signed head, stamps entry times itself (never going
//! back), and adopts a head found in storage only after checking it: the note opens with the
//! key in force, its root is the root of the stored leaves, the stored frontier is that tree's,
//! and every key after the first is announced by a rotation entry under that root. It never
//! signs what it did not seal. Pure: the store reads, the sequencer decides.

use std::sync::Arc;

use super::checkpoint::{Checkpoint, CheckpointError, open_checkpoint};
use super::entry::{Body, Entry, GENESIS_PREV, Timestamp};
use super::tree::{Frontier, Hash, leaf_hash};
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
    /// The stored leaves do not give the signed root.
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
    /// Text of entry `size - 1` (when `size` grew).
    pub last: Option<String>,
    /// Texts of the entries announcing keys the sequencer does not know yet, by seq.
    pub rotations: Vec<(u64, String)>,
}

/// Leaves read from storage on top of the sequencer's view, before [`Sequencer::adopt`].
#[derive(Debug, Clone)]
pub struct CatchUp {
    frontier: Frontier,
    last: Option<Hash>,
    watch: Vec<(u64, Option<Hash>)>,
}

impl CatchUp {
    /// The next sequence number to push.
    pub fn next(&self) -> u64 {
        self.frontier.size()
    }

    /// Pushes the stored leaf of entry [`CatchUp::next`].
    pub fn push(&mut self, leaf: Hash) {
        let seq = self.frontier.size();
        if let Some(w) = self.watch.iter_mut().find(|(s, _)| *s == seq) {
            w.1 = Some(leaf);
        }
        self.frontier.push(leaf);
        self.last = Some(leaf);
    }
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
    /// stored head through [`Sequencer::catch_up`] and [`Sequencer::adopt`].
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
        let time = now.max(self.last_time);
        let entry = Entry {
            seq: self.size(),
            time,
            prev: self.prev,
            body,
        };
        let text = entry.encode();
        let leaf = leaf_hash(text.as_bytes());
        self.prev = leaf;
        self.frontier.push(leaf);
        self.last_time = time;
        self.note = None;
        Sealed {
            seq: entry.seq,
            text,
            leaf,
        }
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

    /// Starts reading a stored head on top of this view. `keys` is the stored key table; the
    /// leaves of the entries announcing keys not known yet are remembered as they are pushed.
    pub fn catch_up(&self, keys: &[(String, Option<u64>)]) -> CatchUp {
        CatchUp {
            frontier: self.frontier.clone(),
            last: None,
            watch: keys
                .iter()
                .skip(self.keys.len())
                .filter_map(|(_, at)| at.map(|s| (s, None)))
                .collect(),
        }
    }

    /// Adopts a stored head after checking it against this view and the leaves read in
    /// `leaves` (see [`Sequencer::catch_up`]). On error the view is unchanged.
    pub fn adopt(&mut self, leaves: CatchUp, head: &StoredHead) -> Result<(), SequencerError> {
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
        if leaves.next() != head.size {
            return Err(SequencerError::Entry {
                seq: leaves.next(),
                why: format!("missing below the head of size {}", head.size),
            });
        }
        let (keys, rotations) = self.check_keys(&leaves, head)?;
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
            let computed = leaves.frontier.root();
            if cp.root != computed {
                return Err(SequencerError::RootMismatch {
                    size: head.size,
                    signed: hex::encode(cp.root),
                    computed: hex::encode(computed),
                });
            }
        } else if head.note.is_some() {
            return Err(SequencerError::HeadSize {
                note: 0,
                row: head.size,
            });
        }
        if head.frontier != leaves.frontier.to_bytes() {
            return Err(SequencerError::FrontierMismatch { size: head.size });
        }
        let (prev, last_time) = match (leaves.last, &head.last) {
            (None, _) => (self.prev, self.last_time),
            (Some(leaf), Some(text)) => {
                let seq = head.size - 1;
                let entry = checked_entry(seq, text, &leaf)?;
                (leaf, entry.time)
            }
            (Some(_), None) => {
                return Err(SequencerError::Entry {
                    seq: head.size - 1,
                    why: "its text was not read".into(),
                });
            }
        };
        self.keys = keys;
        self.rotations = rotations;
        self.prev = prev;
        self.frontier = leaves.frontier;
        self.last_time = last_time;
        self.note = head.note.clone();
        self.head = (head.size, head.note.clone());
        Ok(())
    }

    /// The stored key table must extend the chain this sequencer knows, each new key
    /// announced by a rotation entry below the head whose leaf was pushed.
    fn check_keys(
        &self,
        leaves: &CatchUp,
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
            let leaf = leaves
                .watch
                .iter()
                .find(|(s, _)| *s == seq)
                .and_then(|(_, l)| *l)
                .ok_or_else(|| {
                    refuse(format!(
                        "its rotation entry {seq} is not among the signed entries {}..{}",
                        self.size(),
                        head.size
                    ))
                })?;
            if rotations.last().is_some_and(|&r| seq <= r) {
                return Err(refuse(format!(
                    "entry {seq} is not after the last rotation"
                )));
            }
            let body = head
                .rotations
                .iter()
                .find(|(s, _)| *s == seq)
                .map(|(_, b)| b.as_str())
                .ok_or_else(|| refuse(format!("entry {seq} was not read")))?;
            let entry = checked_entry(seq, body, &leaf)?;
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

/// Decodes a stored entry, checking it hashes to the leaf under the root and sits at `seq`.
fn checked_entry(seq: u64, text: &str, leaf: &Hash) -> Result<Entry, SequencerError> {
    let bad = |why: String| SequencerError::Entry { seq, why };
    if leaf_hash(text.as_bytes()) != *leaf {
        return Err(bad("its text does not hash to its stored leaf".into()));
    }
    let entry = Entry::decode(text.as_bytes()).map_err(|e| bad(e.to_string()))?;
    if entry.seq != seq {
        return Err(bad(format!("it says seq {}", entry.seq)));
    }
    Ok(entry)
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
        crate::ledger::entry::fixture::observation(i)
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
            last: texts.last().cloned(),
            rotations: Vec::new(),
        };
        Stored { texts, head }
    }

    /// Adopts `s` from genesis with `signer`, as a store opening the log would.
    fn adopt(signer: SignerKey, s: &Stored) -> Result<Sequencer, SequencerError> {
        let mut seq = Sequencer::at_genesis(signer, &s.head.keys[0].0)?;
        let mut c = seq.catch_up(&s.head.keys);
        for t in &s.texts[..s.head.size as usize] {
            c.push(leaf_hash(t.as_bytes()));
        }
        let mut head = s.head.clone();
        head.last = head
            .size
            .checked_sub(1)
            .map(|i| s.texts[i as usize].clone());
        head.rotations = head
            .keys
            .iter()
            .filter_map(|(_, at)| at.map(|a| (a, s.texts[a as usize].clone())))
            .collect();
        seq.adopt(c, &head)?;
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
        let c = seq.catch_up(&keys);
        let mut head = old.head.clone();
        head.last = Some(texts[3].clone());
        assert_eq!(
            seq.adopt(c, &head),
            Err(SequencerError::RolledBack { ours: 5, found: 4 })
        );
    }
}
