//! The streaming ledger verifier: fed bundle records one at a time, it re-hashes every leaf,
//! checks sequence numbers, the hash chain, the canonical encoding and verdict rules, every
//! checkpoint's signature (following key rotations) and root, and that successive
//! checkpoints describe one append-only tree. Memory stays O(log n). Pure: reading a bundle
//! and the worker threads are in the auditor's `bundle_verify`. An [`ObservationCheck`] given to
//! the verifier (replaying each verdict under a policy, the auditor's `judge::Replayer`) runs where
//! entries are decoded.

use std::fmt;
use std::sync::Arc;

use super::checkpoint::{CheckpointError, open_checkpoint, parse_note};
use super::cosignature::WitnessKey;
use super::entry::{Body, Entry, EntryError, GENESIS_PREV, Observation, Verdict};
use super::tree::{Frontier, Hash, leaf_hash};
use crate::bundle::{BUNDLE_FORMAT, Record};
use crate::keys::VerifierKey;

/// What is wrong with a ledger, precisely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The first record is not a bundle header, or the format is unknown.
    #[error("not a {BUNDLE_FORMAT} bundle: {0}")]
    BadHeader(String),
    /// A record appears where it is not allowed.
    #[error("unexpected record: {0}")]
    Unexpected(String),
    /// A key record is unusable.
    #[error("bad key record: {0}")]
    BadKey(String),
    /// None of the bundle's keys is the trusted key.
    #[error(
        "wrong key: the trusted key {trusted} is none of this ledger's keys ({keys}); trust the fingerprint the key holder gave you out of band, never one read from the bundle"
    )]
    WrongKey {
        /// What the verifier was told to trust.
        trusted: String,
        /// The bundle's keys, each by the start of its fingerprint only (a full one invites a
        /// copy into `--trust`).
        keys: String,
    },
    /// The trusted key never signed a checkpoint of this ledger.
    #[error("the trusted key {0} signed no checkpoint of this ledger")]
    TrustedKeyUnused(String),
    /// The trusted key is retired: a later key signed the last checkpoint.
    #[error(
        "the trusted key {trusted} is retired: the last checkpoint (size {size}) is signed by {last}, a key announced after it; trust the key in force, or accept a retired key explicitly (--accept-retired-key)"
    )]
    TrustedKeyRetired {
        /// The trusted key.
        trusted: String,
        /// The key that signed the last checkpoint.
        last: String,
        /// Size of the last checkpoint.
        size: u64,
    },
    /// An entry does not decode.
    #[error("entry is invalid: {0}")]
    BadEntry(EntryError),
    /// Entries are missing before this one.
    #[error("expected entry {expected}, found entry {found}: entries {expected}..{} are missing (deleted or moved)", found - 1)]
    MissingEntries {
        /// Expected seq.
        expected: u64,
        /// Seq found.
        found: u64,
    },
    /// An entry number appears again or out of order.
    #[error(
        "entry {found} appears where entry {expected} was expected: a duplicated, inserted or reordered entry"
    )]
    OutOfOrder {
        /// Expected seq.
        expected: u64,
        /// Seq found.
        found: u64,
    },
    /// An entry's `prev` does not match the previous entry's hash.
    #[error(
        "entry {seq} records prev {recorded} but entry {} (line {prev_line}) hashes to {actual}: entry {} was altered, or an entry was inserted or removed between them",
        seq - 1, seq - 1
    )]
    BrokenChain {
        /// The entry whose prev does not match.
        seq: u64,
        /// Its recorded prev (hex).
        recorded: String,
        /// The previous entry's actual leaf hash (hex).
        actual: String,
        /// Line of the previous entry.
        prev_line: u64,
    },
    /// A key-rotation entry announces an unusable key.
    #[error("key rotation announces an unusable key: {0}")]
    BadRotation(String),
    /// A key rotation was not committed under the previous key before moving on.
    #[error("the key rotation in entry {seq} must be committed by a checkpoint of size {} under the previous key before anything else", seq + 1)]
    RotationNotCommitted {
        /// The rotation entry.
        seq: u64,
    },
    /// A checkpoint's signature or format is wrong.
    #[error("checkpoint is not valid: {0}")]
    BadCheckpoint(CheckpointError),
    /// A valid signature by a key that is not the one in force.
    #[error("checkpoint of size {size} is signed by {signer}, but the key in force is {expected}")]
    WrongSigner {
        /// Size in the checkpoint.
        size: u64,
        /// The key that signed it.
        signer: String,
        /// The key in force for this size.
        expected: String,
    },
    /// An older checkpoint appears again.
    #[error(
        "checkpoint of size {size} replays an earlier checkpoint (the last one had size {last_size}, line {last_line})"
    )]
    Replayed {
        /// Its size.
        size: u64,
        /// The previous checkpoint's size.
        last_size: u64,
        /// Line of the previous checkpoint.
        last_line: u64,
    },
    /// Two signed checkpoints of one size with different roots.
    #[error(
        "fork: two signed checkpoints of size {size} with different roots ({first} at line {first_line}, {second} here); they cannot both be true"
    )]
    Fork {
        /// The size.
        size: u64,
        /// First root (hex).
        first: String,
        /// Line of the first.
        first_line: u64,
        /// Second root (hex).
        second: String,
    },
    /// A checkpoint claims more entries than precede it.
    #[error("checkpoint of size {size} follows only {seen} entries: entries {seen}..{} are missing (deleted or truncated)", size - 1)]
    CheckpointAhead {
        /// Its size.
        size: u64,
        /// Entries seen.
        seen: u64,
    },
    /// A checkpoint placed after entries it does not cover.
    #[error("checkpoint of size {size} appears after entry {}: it must follow entry {} directly", seen - 1, size - 1)]
    CheckpointMisplaced {
        /// Its size.
        size: u64,
        /// Entries seen.
        seen: u64,
    },
    /// The signed root does not match the entries.
    #[error(
        "checkpoint of size {size} signs root {signed} but entries 0..{} hash to {computed}: an entry in {since}..{} was altered, or the checkpoint belongs to a fork of the log",
        size - 1, size - 1
    )]
    RootMismatch {
        /// Its size.
        size: u64,
        /// Root in the checkpoint (hex).
        signed: String,
        /// Root recomputed (hex).
        computed: String,
        /// Size of the previous checkpoint (entries before it were already confirmed).
        since: u64,
    },
    /// Entries after the last checkpoint.
    #[error("entries {covered}..{} are not covered by any signed checkpoint", seen - 1)]
    Uncovered {
        /// Last checkpoint size.
        covered: u64,
        /// Entries seen.
        seen: u64,
    },
    /// The end record does not match what was read.
    #[error(
        "end record says {claimed_entries} entries and {claimed_checkpoints} checkpoints, the bundle holds {entries} and {checkpoints}"
    )]
    CountMismatch {
        /// Claimed entries.
        claimed_entries: u64,
        /// Claimed checkpoints.
        claimed_checkpoints: u64,
        /// Entries read.
        entries: u64,
        /// Checkpoints read.
        checkpoints: u64,
    },
    /// No end record: the bundle stops early.
    #[error("the bundle is truncated: it stops after {entries} entries without its end record")]
    Truncated {
        /// Entries read.
        entries: u64,
    },
    /// The last checkpoint lacks the witness cosignatures required.
    #[error(
        "the last checkpoint (size {size}) is cosigned by {have} of the required witnesses, {need} needed; missing: {missing}"
    )]
    MissingCosignatures {
        /// Size of the last checkpoint.
        size: u64,
        /// Valid cosignatures from the given witnesses.
        have: usize,
        /// The threshold.
        need: usize,
        /// Names of the witnesses without a valid cosignature.
        missing: String,
    },
    /// The last checkpoint's cosignatures are too old: the witnesses have not vouched for the
    /// log recently enough (it may have been cut back to a checkpoint they saw long ago).
    #[error(
        "the last checkpoint (size {size}) is cosigned recently enough by {have} of the required witnesses, {need} needed: {detail}; cosignatures before {oldest} are too old (--max-age)"
    )]
    StaleCosignatures {
        /// Size of the last checkpoint.
        size: u64,
        /// Cosignatures recent enough.
        have: usize,
        /// The threshold.
        need: usize,
        /// Each witness whose cosignature is too old or missing, and when it cosigned.
        detail: String,
        /// The oldest cosignature time accepted (RFC 3339).
        oldest: String,
    },
    /// An observation's recorded verdict does not follow from its recorded evidence.
    #[error("the observation does not replay: {0}")]
    NotReplayed(String),
    /// A trusted checkpoint given out of band is not matched by the bundle.
    #[error("the trusted checkpoint (size {size}) {why}")]
    TrustedCheckpoint {
        /// Its size.
        size: u64,
        /// What does not match.
        why: String,
    },
}

/// A problem located in the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line of the bundle (0 when not tied to a line).
    pub line: u64,
    /// The entry concerned, when there is one.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.seq) {
            (0, _) => write!(f, "{}", self.problem),
            (l, Some(s)) => write!(f, "line {l}, entry {s}: {}", self.problem),
            (l, None) => write!(f, "line {l}: {}", self.problem),
        }
    }
}

impl std::error::Error for Finding {}

/// What a valid ledger contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Log origin.
    pub origin: String,
    /// Entries verified.
    pub entries: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Root of the whole ledger (hex).
    pub root: String,
    /// The signing keys in order (rotations included).
    pub keys: Vec<String>,
    /// Index in `keys` of the key that signed the last checkpoint.
    pub last_signer: usize,
    /// Index in `keys` of the trusted key.
    pub trusted: usize,
    /// The witnesses given to the verifier that cosigned the last checkpoint.
    pub cosigned_by: Vec<String>,
    /// When each of them cosigned it (Unix seconds, from its cosignature/v1 line), in the
    /// order of `cosigned_by`.
    pub cosigned_at: Vec<u64>,
    /// Observations by verdict: compliant, violation, unknown.
    pub verdicts: [u64; 3],
}

/// A cosignature time (Unix seconds) in the ledger's time format.
fn rfc3339(secs: u64) -> String {
    super::entry::Timestamp(
        i64::try_from(secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
    )
    .to_string()
}

/// What the sequential checks need of a decoded entry (the rest was checked by decoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFacts {
    /// Sequence number.
    pub seq: u64,
    /// Recorded previous leaf hash.
    pub prev: Hash,
    /// The announced key, for a key-rotation entry.
    pub new_key: Option<String>,
    /// Verdict class: 0 compliant, 1 violation, 2 unknown (observations).
    pub verdict: Option<u8>,
    /// What the [`ObservationCheck`] found wrong with the observation, if one ran and failed.
    pub refused: Option<String>,
}

/// A check of each observation beyond its encoding (replaying its verdict under a policy):
/// `Err` says what is wrong. It runs where entries are decoded, on any thread.
pub type ObservationCheck = dyn Fn(&Observation) -> Result<(), String> + Send + Sync;

impl From<Entry> for EntryFacts {
    fn from(e: Entry) -> Self {
        let (new_key, verdict) = match e.body {
            Body::KeyRotation { new_key } => (Some(new_key), None),
            // Neither announces a key nor carries a verdict (nor is replayed: no evidence).
            Body::Removal { .. } | Body::Policy { .. } => (None, None),
            Body::Observation(o) => (
                None,
                Some(match o.locality.verdict {
                    Verdict::Compliant => 0,
                    Verdict::Violation(_) => 1,
                    Verdict::Unknown(_) => 2,
                }),
            ),
        };
        Self {
            seq: e.seq,
            prev: e.prev,
            new_key,
            verdict,
            refused: None,
        }
    }
}

impl EntryFacts {
    /// Decodes an entry and runs `check` on it when it is an observation.
    fn decode(
        bytes: &[u8],
        scratch: &mut String,
        check: Option<&ObservationCheck>,
    ) -> Result<Self, EntryError> {
        let entry = Entry::decode_with(bytes, scratch)?;
        let refused = match (&entry.body, check) {
            (Body::Observation(o), Some(check)) => check(o).err(),
            _ => None,
        };
        Ok(Self {
            refused,
            ..Self::from(entry)
        })
    }
}

/// An entry record decoded and leaf-hashed, ready for [`Verifier::feed_prepared`].
#[derive(Debug)]
pub struct Prepared {
    /// The decoded entry's facts, or why it does not decode.
    pub entry: Result<EntryFacts, EntryError>,
    /// RFC 6962 leaf hash of the record's bytes.
    pub leaf: Hash,
}

impl Prepared {
    /// Decodes and hashes one entry's bytes.
    pub fn new(bytes: &[u8]) -> Self {
        Self::checked(bytes, None)
    }

    /// Decodes and hashes one entry's bytes, and runs `check` on an observation.
    pub fn checked(bytes: &[u8], check: Option<&ObservationCheck>) -> Self {
        Self {
            entry: EntryFacts::decode(bytes, &mut String::new(), check),
            leaf: leaf_hash(bytes),
        }
    }
}

/// Streaming verifier state.
pub struct Verifier {
    trust: String,
    trusted_checkpoint: Option<String>,
    trusted_size: Option<u64>,
    trusted_root_at: Option<(u64, Hash)>,
    origin: Option<String>,
    listed: Vec<VerifierKey>,
    chain: Vec<VerifierKey>,
    active: usize,
    pending_rotation: Option<u64>,
    trusted_signed: bool,
    accept_retired: bool,
    witnesses: Vec<WitnessKey>,
    witness_threshold: usize,
    cosigned_after: Option<u64>,
    last_note: Option<String>,
    last_signer: usize,
    frontier: Frontier,
    prev: Hash,
    prev_line: u64,
    last_checkpoint: Option<(u64, Hash, u64)>,
    checkpoints: u64,
    verdicts: [u64; 3],
    ended: bool,
    scratch: String,
    check: Option<Arc<ObservationCheck>>,
}

impl Verifier {
    /// A verifier that trusts `trust`: a verifier key string or its fingerprint.
    pub fn new(trust: &str) -> Self {
        Self {
            trust: trust.trim().to_string(),
            trusted_checkpoint: None,
            trusted_size: None,
            trusted_root_at: None,
            origin: None,
            listed: Vec::new(),
            chain: Vec::new(),
            active: 0,
            pending_rotation: None,
            trusted_signed: false,
            accept_retired: false,
            witnesses: Vec::new(),
            witness_threshold: 0,
            cosigned_after: None,
            last_note: None,
            last_signer: 0,
            frontier: Frontier::new(),
            prev: GENESIS_PREV,
            prev_line: 0,
            last_checkpoint: None,
            checkpoints: 0,
            verdicts: [0; 3],
            ended: false,
            scratch: String::with_capacity(4096),
            check: None,
        }
    }

    /// Runs `check` on every observation entry (see [`ObservationCheck`]); the first
    /// observation it refuses fails verification, naming the entry.
    pub fn with_observation_check(mut self, check: Arc<ObservationCheck>) -> Self {
        self.check = Some(check);
        self
    }

    /// The observation check, for threads that decode entries ahead of [`Verifier::feed_prepared`].
    pub fn observation_check(&self) -> Option<Arc<ObservationCheck>> {
        self.check.clone()
    }

    /// Requires the last checkpoint to carry valid cosignatures from at least `threshold` of
    /// `witnesses`.
    pub fn with_witnesses(mut self, witnesses: Vec<WitnessKey>, threshold: usize) -> Self {
        self.witnesses = witnesses;
        self.witness_threshold = threshold;
        self
    }

    /// Counts toward the witness threshold only cosignatures made at or after `oldest` (Unix
    /// seconds; the caller's clock minus the maximum age): a bundle whose last checkpoint the
    /// witnesses vouched for long ago may have been cut back, and is refused as not fresh.
    pub fn with_cosignatures_since(mut self, oldest: u64) -> Self {
        self.cosigned_after = Some(oldest);
        self
    }

    /// Accepts a trusted key that signed earlier checkpoints but not the last one (a retired
    /// key). Without this, the trusted key must have signed the last checkpoint.
    pub fn accept_retired_key(mut self, accept: bool) -> Self {
        self.accept_retired = accept;
        self
    }

    /// Also requires the bundle to reach a checkpoint obtained out of band (this is what
    /// detects a bundle cut short after a checkpoint, with a forged end record).
    pub fn with_trusted_checkpoint(mut self, note: &str) -> Self {
        self.trusted_size = parse_note(note)
            .ok()
            .and_then(|n| n.text.lines().nth(1)?.parse().ok());
        self.trusted_checkpoint = Some(note.to_string());
        self
    }

    /// Feeds one record found at `line`.
    pub fn feed(&mut self, line: u64, record: Record<'_>) -> Result<(), Finding> {
        let at = |seq: Option<u64>, problem| Finding { line, seq, problem };
        if self.ended {
            return Err(at(
                None,
                Problem::Unexpected("record after the end record".into()),
            ));
        }
        match record {
            Record::Header { format, origin } => {
                if self.origin.is_some() || line != 1 {
                    return Err(at(None, Problem::Unexpected("a second header".into())));
                }
                if format != BUNDLE_FORMAT {
                    return Err(at(None, Problem::BadHeader(format!("format {format:?}"))));
                }
                self.origin = Some(origin);
            }
            _ if self.origin.is_none() => {
                return Err(at(
                    None,
                    Problem::BadHeader("the first line is not the header".into()),
                ));
            }
            Record::Key(k) => {
                if self.frontier.size() > 0 || self.checkpoints > 0 {
                    return Err(at(
                        None,
                        Problem::Unexpected("key record after entries".into()),
                    ));
                }
                let key =
                    VerifierKey::parse(&k).map_err(|e| at(None, Problem::BadKey(e.to_string())))?;
                if Some(key.name()) != self.origin.as_deref() {
                    return Err(at(
                        None,
                        Problem::BadKey(format!("key name {:?} is not the log origin", key.name())),
                    ));
                }
                if self.chain.is_empty() {
                    self.chain.push(key.clone());
                }
                self.listed.push(key);
            }
            Record::Entry(bytes) => self.entry(line, bytes)?,
            Record::Checkpoint(note) => self.checkpoint(line, &note)?,
            Record::End {
                entries,
                checkpoints,
            } => {
                if entries != self.frontier.size() || checkpoints != self.checkpoints {
                    return Err(at(
                        None,
                        Problem::CountMismatch {
                            claimed_entries: entries,
                            claimed_checkpoints: checkpoints,
                            entries: self.frontier.size(),
                            checkpoints: self.checkpoints,
                        },
                    ));
                }
                self.ended = true;
            }
        }
        Ok(())
    }

    fn check_trust_listed(&self, line: u64) -> Result<(), Finding> {
        if self.listed.iter().any(|k| k.matches(&self.trust)) {
            return Ok(());
        }
        Err(Finding {
            line,
            seq: None,
            problem: Problem::WrongKey {
                trusted: self.trust.clone(),
                keys: self
                    .listed
                    .iter()
                    .map(|k| format!("SHA256:{}…", &k.fingerprint()[..8]))
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        })
    }

    fn entry(&mut self, line: u64, bytes: &[u8]) -> Result<(), Finding> {
        let prepared = Prepared {
            entry: EntryFacts::decode(bytes, &mut self.scratch, self.check.as_deref()),
            leaf: leaf_hash(bytes),
        };
        self.feed_prepared(line, prepared)
    }

    /// Feeds an entry record decoded and hashed beforehand (possibly on another thread).
    pub fn feed_prepared(&mut self, line: u64, prepared: Prepared) -> Result<(), Finding> {
        if self.origin.is_none() {
            let why = "the first line is not the header".into();
            return Err(Finding {
                line,
                seq: None,
                problem: Problem::BadHeader(why),
            });
        }
        if self.ended {
            let why = "record after the end record".into();
            return Err(Finding {
                line,
                seq: None,
                problem: Problem::Unexpected(why),
            });
        }
        let expected = self.frontier.size();
        if expected == 0 {
            self.check_trust_listed(line)?;
        }
        let entry = prepared.entry.map_err(|e| Finding {
            line,
            seq: None,
            problem: Problem::BadEntry(e),
        })?;
        let at = |problem| Finding {
            line,
            seq: Some(entry.seq),
            problem,
        };
        if entry.seq != expected {
            return Err(at(if entry.seq > expected {
                Problem::MissingEntries {
                    expected,
                    found: entry.seq,
                }
            } else {
                Problem::OutOfOrder {
                    expected,
                    found: entry.seq,
                }
            }));
        }
        if let Some(seq) = self.pending_rotation {
            return Err(at(Problem::RotationNotCommitted { seq }));
        }
        if entry.prev != self.prev {
            return Err(Finding {
                line: self.prev_line,
                seq: Some(entry.seq.saturating_sub(1)),
                problem: Problem::BrokenChain {
                    seq: entry.seq,
                    recorded: hex::encode(entry.prev),
                    actual: hex::encode(self.prev),
                    prev_line: self.prev_line,
                },
            });
        }
        if let Some(why) = &entry.refused {
            return Err(at(Problem::NotReplayed(why.clone())));
        }
        match (&entry.new_key, entry.verdict) {
            (Some(new_key), _) => {
                let key = VerifierKey::parse(new_key)
                    .map_err(|e| at(Problem::BadRotation(e.to_string())))?;
                if Some(key.name()) != self.origin.as_deref() {
                    return Err(at(Problem::BadRotation(format!(
                        "key name {:?} is not the log origin",
                        key.name()
                    ))));
                }
                if self.chain.contains(&key) {
                    return Err(at(Problem::BadRotation("the key was already used".into())));
                }
                self.chain.push(key);
                self.pending_rotation = Some(entry.seq);
            }
            (None, Some(v)) => self.verdicts[usize::from(v)] += 1,
            (None, None) => {}
        }
        let leaf = prepared.leaf;
        self.frontier.push(leaf);
        self.prev = leaf;
        self.prev_line = line;
        if let Some(size) = self.trusted_size
            && size == self.frontier.size()
        {
            self.trusted_root_at = Some((size, self.frontier.root()));
        }
        Ok(())
    }

    fn checkpoint(&mut self, line: u64, note: &str) -> Result<(), Finding> {
        let at = |problem| Finding {
            line,
            seq: None,
            problem,
        };
        if self.chain.is_empty() {
            return Err(at(Problem::Unexpected(
                "checkpoint before any key record".into(),
            )));
        }
        self.check_trust_listed(line)?;
        let seen = self.frontier.size();
        let active = std::slice::from_ref(&self.chain[self.active]);
        let (cp, _) = match open_checkpoint(note, active) {
            Ok(ok) => ok,
            Err(CheckpointError::UnknownSigner { .. }) => {
                // Name the key that did sign, when the ledger knows it.
                let all: Vec<VerifierKey> =
                    self.chain.iter().chain(&self.listed).cloned().collect();
                return Err(match open_checkpoint(note, &all) {
                    Ok((cp, k)) => at(Problem::WrongSigner {
                        size: cp.size,
                        signer: k.to_string(),
                        expected: self.chain[self.active].to_string(),
                    }),
                    Err(e) => at(Problem::BadCheckpoint(e)),
                });
            }
            Err(e) => return Err(at(Problem::BadCheckpoint(e))),
        };
        if let Some((last_size, last_root, last_line)) = self.last_checkpoint {
            if cp.size == last_size && cp.root != last_root {
                return Err(at(Problem::Fork {
                    size: cp.size,
                    first: hex::encode(last_root),
                    first_line: last_line,
                    second: hex::encode(cp.root),
                }));
            }
            if cp.size <= last_size {
                return Err(at(Problem::Replayed {
                    size: cp.size,
                    last_size,
                    last_line,
                }));
            }
        }
        if cp.size > seen {
            return Err(at(Problem::CheckpointAhead {
                size: cp.size,
                seen,
            }));
        }
        if cp.size < seen {
            return Err(at(Problem::CheckpointMisplaced {
                size: cp.size,
                seen,
            }));
        }
        if let Some(seq) = self.pending_rotation
            && cp.size != seq + 1
        {
            return Err(at(Problem::RotationNotCommitted { seq }));
        }
        let root = self.frontier.root();
        if cp.root != root {
            return Err(at(Problem::RootMismatch {
                size: cp.size,
                signed: hex::encode(cp.root),
                computed: hex::encode(root),
                since: self.last_checkpoint.map_or(0, |c| c.0),
            }));
        }
        if self.chain[self.active].matches(&self.trust) {
            self.trusted_signed = true;
        }
        self.last_signer = self.active;
        if !self.witnesses.is_empty() {
            self.last_note = Some(note.to_string());
        }
        if self.pending_rotation.take().is_some() {
            self.active += 1;
        }
        self.last_checkpoint = Some((cp.size, cp.root, line));
        self.checkpoints += 1;
        Ok(())
    }

    /// Ends verification: every entry covered, the end record present, the trusted key used.
    pub fn finish(self) -> Result<Summary, Finding> {
        let seen = self.frontier.size();
        let at = |problem| Finding {
            line: 0,
            seq: None,
            problem,
        };
        if self.origin.is_none() {
            return Err(at(Problem::BadHeader("the bundle is empty".into())));
        }
        self.check_trust_listed(0)?;
        let covered = self.last_checkpoint.map_or(0, |c| c.0);
        if !self.ended {
            return Err(at(Problem::Truncated { entries: seen }));
        }
        if covered < seen {
            return Err(at(Problem::Uncovered { covered, seen }));
        }
        if let Some(seq) = self.pending_rotation {
            return Err(at(Problem::RotationNotCommitted { seq }));
        }
        if !self.trusted_signed {
            return Err(at(Problem::TrustedKeyUnused(self.trust.clone())));
        }
        let trusted = self
            .chain
            .iter()
            .position(|k| k.matches(&self.trust))
            .expect("the trusted key signed a checkpoint, so it is in the chain");
        if trusted != self.last_signer && !self.accept_retired {
            return Err(at(Problem::TrustedKeyRetired {
                trusted: self.chain[trusted].to_string(),
                last: self.chain[self.last_signer].to_string(),
                size: covered,
            }));
        }
        let note = self.last_note.as_deref().and_then(|n| parse_note(n).ok());
        let times: Vec<Option<u64>> = self
            .witnesses
            .iter()
            .map(|w| note.as_ref().and_then(|n| w.cosigned(n)))
            .collect();
        let recent =
            |t: &Option<u64>| t.is_some_and(|t| self.cosigned_after.is_none_or(|a| t >= a));
        let have: Vec<(&WitnessKey, u64)> = self
            .witnesses
            .iter()
            .zip(&times)
            .filter(|(_, t)| recent(t))
            .map(|(w, t)| (w, t.unwrap_or_default()))
            .collect();
        if have.len() < self.witness_threshold {
            let absent = self
                .witnesses
                .iter()
                .zip(&times)
                .filter(|(_, t)| t.is_none());
            match self.cosigned_after {
                Some(oldest) if times.iter().any(|t| t.is_some() && !recent(t)) => {
                    let detail: Vec<String> = self
                        .witnesses
                        .iter()
                        .zip(&times)
                        .filter(|(_, t)| !recent(t))
                        .map(|(w, t)| match t {
                            Some(t) => format!("{} cosigned it at {}", w.name(), rfc3339(*t)),
                            None => format!("{} did not cosign it", w.name()),
                        })
                        .collect();
                    return Err(at(Problem::StaleCosignatures {
                        size: covered,
                        have: have.len(),
                        need: self.witness_threshold,
                        detail: detail.join(", "),
                        oldest: rfc3339(oldest),
                    }));
                }
                _ => {
                    return Err(at(Problem::MissingCosignatures {
                        size: covered,
                        have: have.len(),
                        need: self.witness_threshold,
                        missing: absent
                            .map(|(w, _)| w.name().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }));
                }
            }
        }
        if let Some(note) = &self.trusted_checkpoint {
            let (cp, _) = open_checkpoint(note, &self.chain).map_err(|e| {
                at(Problem::TrustedCheckpoint {
                    size: 0,
                    why: format!("is not valid: {e}"),
                })
            })?;
            match self.trusted_root_at {
                Some((size, root)) if size == cp.size && root == cp.root => {}
                Some((size, root)) if size == cp.size => {
                    return Err(at(Problem::TrustedCheckpoint {
                        size,
                        why: format!(
                            "signs root {} but the bundle's entries give {}: fork",
                            hex::encode(cp.root),
                            hex::encode(root)
                        ),
                    }));
                }
                _ => {
                    return Err(at(Problem::TrustedCheckpoint {
                        size: cp.size,
                        why: format!(
                            "is beyond the bundle, which holds only {seen} entries: the bundle was truncated"
                        ),
                    }));
                }
            }
        }
        Ok(Summary {
            origin: self.origin.unwrap_or_default(),
            entries: seen,
            checkpoints: self.checkpoints,
            root: hex::encode(self.frontier.root()),
            keys: self.chain.iter().map(ToString::to_string).collect(),
            last_signer: self.last_signer,
            trusted,
            cosigned_by: have.iter().map(|(w, _)| w.name().to_string()).collect(),
            cosigned_at: have.iter().map(|(_, t)| *t).collect(),
            verdicts: self.verdicts,
        })
    }
}
