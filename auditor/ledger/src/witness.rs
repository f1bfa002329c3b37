//! A transparency-log witness (C2SP `tlog-witness`): it cosigns a log's checkpoint only if it
//! is consistent with the last checkpoint it cosigned for that log, so a log cannot show two
//! views (a fork) or go back (a rollback) to the witnesses that watch it. This module is the
//! pure decision; the auditor's `witness::serve` is the HTTP service and its state file.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::{CheckpointError, open_checkpoint};
use crate::cosignature::WitnessSigner;
use crate::keys::VerifierKey;
use crate::tree::{Hash, verify_consistency};

/// Most consistency proof lines a request may carry.
pub const MAX_PROOF: usize = 63;

/// Why a checkpoint was not cosigned, with the HTTP status the protocol gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The request is malformed (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The origin is not a log this witness watches (404).
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// No signature by the log's key verifies (403).
    #[error("the checkpoint is not signed by the log's key: {0}")]
    Forbidden(CheckpointError),
    /// The old size is not the last size this witness cosigned (409).
    #[error("old size {old} is not the last size cosigned for this log, {last}")]
    Conflict {
        /// The old size in the request.
        old: u64,
        /// The last size cosigned.
        last: u64,
    },
    /// Same size as the last cosigned checkpoint, another root: a fork (409).
    #[error(
        "fork: size {size} was cosigned with root {cosigned}, this checkpoint has root {offered}"
    )]
    Fork {
        /// The size.
        size: u64,
        /// Root cosigned before (base64).
        cosigned: String,
        /// Root offered (base64).
        offered: String,
    },
    /// Signed by a key the log has retired: a later key already signed a checkpoint this
    /// witness cosigned (403).
    #[error(
        "the checkpoint is signed by {key}, a key this log retired: its successor {successor} already signed the checkpoint of size {size} cosigned here"
    )]
    Retired {
        /// The key that signed the offered checkpoint.
        key: String,
        /// The later key that signed the last cosigned checkpoint.
        successor: String,
        /// Size of the last cosigned checkpoint.
        size: u64,
    },
    /// The consistency proof does not verify (422).
    #[error("the consistency proof from size {old} to {new} does not verify: {why}")]
    Inconsistent {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
        /// Why.
        why: String,
    },
}

impl WitnessError {
    /// The HTTP status code `tlog-witness` assigns.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::UnknownLog(_) => 404,
            Self::Forbidden(_) | Self::Retired { .. } => 403,
            Self::Conflict { .. } | Self::Fork { .. } => 409,
            Self::Inconsistent { .. } => 422,
        }
    }
}

/// What the witness remembers: per log origin, the last cosigned (size, root), and that
/// checkpoint as cosigned (the log's note with the witness's line), which anyone may ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessState {
    /// origin → (size, root).
    pub logs: BTreeMap<String, (u64, Hash)>,
    /// origin → the last checkpoint cosigned, with the cosignature (kept since this field
    /// exists: a state written before has none until the next cosignature).
    pub cosigned: BTreeMap<String, String>,
}

impl WitnessState {
    /// One line per log: `origin size base64root [base64(cosigned note)]`.
    pub fn to_text(&self) -> String {
        self.logs
            .iter()
            .map(|(o, (s, r))| match self.cosigned.get(o) {
                Some(note) => format!(
                    "{o} {s} {} {}\n",
                    B64.encode(r),
                    B64.encode(note.as_bytes())
                ),
                None => format!("{o} {s} {}\n", B64.encode(r)),
            })
            .collect()
    }

    /// Parses [`WitnessState::to_text`].
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut logs = BTreeMap::new();
        let mut cosigned = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let bad = || {
                format!(
                    "line {}: expected `origin size base64root [base64note]`",
                    i + 1
                )
            };
            let mut f = line.split(' ');
            let (Some(o), Some(s), Some(r), note, None) =
                (f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                return Err(bad());
            };
            if let Some(n) = note {
                let n = B64
                    .decode(n)
                    .ok()
                    .and_then(|n| String::from_utf8(n).ok())
                    .ok_or_else(bad)?;
                cosigned.insert(o.to_string(), n);
            }
            let size = s.parse().map_err(|_| bad())?;
            let root: Hash = B64
                .decode(r)
                .ok()
                .and_then(|r| r.try_into().ok())
                .ok_or_else(bad)?;
            logs.insert(o.to_string(), (size, root));
        }
        Ok(Self { logs, cosigned })
    }
}

/// A request body: old size, consistency proof, checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the previous checkpoint the client believes the witness cosigned.
    pub old: u64,
    /// RFC 6962 consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub note: String,
}

impl AddCheckpoint {
    /// The request body text.
    pub fn to_text(&self) -> String {
        let mut s = format!("old {}\n", self.old);
        for h in &self.proof {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.note);
        s
    }

    /// Parses a request body.
    pub fn parse(text: &str) -> Result<Self, WitnessError> {
        let bad = |s: &str| WitnessError::BadRequest(s.to_string());
        let (head, note) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old_line = lines.next().unwrap_or_default();
        let old = old_line
            .strip_prefix("old ")
            .filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
            .filter(|d| *d == "0" || !d.starts_with('0'))
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| bad("the first line is not `old <size>`"))?;
        let proof = lines
            .map(|l| {
                B64.decode(l)
                    .ok()
                    .and_then(|h| h.try_into().ok())
                    .ok_or_else(|| bad("a proof line is not a base64 hash"))
            })
            .collect::<Result<Vec<Hash>, _>>()?;
        if proof.len() > MAX_PROOF {
            return Err(bad("more than 63 proof lines"));
        }
        Ok(Self {
            old,
            proof,
            note: note.to_string(),
        })
    }
}

/// A witness: its key and the log keys it trusts.
#[derive(Debug, Clone)]
pub struct Witness {
    signer: WitnessSigner,
    logs: Vec<VerifierKey>,
}

impl Witness {
    /// A witness signing with `signer`, watching the logs whose keys are `logs` (several keys
    /// of one origin are all accepted: a rotated log).
    pub fn new(signer: WitnessSigner, logs: Vec<VerifierKey>) -> Self {
        Self { signer, logs }
    }

    /// Checks `req` against `state` and, when it is consistent, records the checkpoint in
    /// `state` and returns the cosignature line. `state` is unchanged on error.
    pub fn add_checkpoint(
        &self,
        state: &mut WitnessState,
        req: &AddCheckpoint,
        now: u64,
    ) -> Result<String, WitnessError> {
        let parsed = crate::checkpoint::parse_note(&req.note)
            .map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let origin = parsed.text.lines().next().unwrap_or_default().to_string();
        let keys: Vec<VerifierKey> = self
            .logs
            .iter()
            .filter(|k| k.name() == origin)
            .cloned()
            .collect();
        if keys.is_empty() {
            return Err(WitnessError::UnknownLog(origin));
        }
        let (cp, signer) = open_checkpoint(&req.note, &keys).map_err(|e| match e {
            CheckpointError::MalformedBody(_) | CheckpointError::MalformedNote(_) => {
                WitnessError::BadRequest(e.to_string())
            }
            other => WitnessError::Forbidden(other),
        })?;
        // Keys in force by size: the log's keys are given in the order it used them, and once a
        // later key signed a checkpoint cosigned here, an earlier one is retired for good (the
        // thief of a retired key cannot get a branch cosigned and lock the real log out).
        let position = |k: &VerifierKey| keys.iter().position(|c| c == k);
        if let Some(last) = state.cosigned.get(&origin)
            && let Ok((last_cp, last_signer)) = open_checkpoint(last, &keys)
            && position(signer) < position(last_signer)
        {
            return Err(WitnessError::Retired {
                key: signer.to_string(),
                successor: last_signer.to_string(),
                size: last_cp.size,
            });
        }
        if req.old > cp.size {
            return Err(WitnessError::BadRequest(format!(
                "old size {} is larger than the checkpoint size {}",
                req.old, cp.size
            )));
        }
        let (last, last_root) = state.logs.get(&origin).copied().unwrap_or((0, [0; 32]));
        if req.old != last {
            return Err(WitnessError::Conflict { old: req.old, last });
        }
        if last == cp.size && last > 0 {
            if last_root != cp.root {
                return Err(WitnessError::Fork {
                    size: last,
                    cosigned: B64.encode(last_root),
                    offered: B64.encode(cp.root),
                });
            }
        } else if last > 0 {
            verify_consistency(last, cp.size, &last_root, &cp.root, &req.proof).map_err(|e| {
                WitnessError::Inconsistent {
                    old: last,
                    new: cp.size,
                    why: e.to_string(),
                }
            })?;
        } else if !req.proof.is_empty() {
            return Err(WitnessError::BadRequest(
                "the proof must be empty when the old size is 0".into(),
            ));
        }
        let line = self.signer.cosign(&parsed.text, now);
        let mut note = req.note.clone();
        if !note.ends_with('\n') {
            note.push('\n');
        }
        note.push_str(&line);
        state.cosigned.insert(origin.clone(), note);
        state.logs.insert(origin, (cp.size, cp.root));
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sequencer;
    use crate::checkpoint::parse_note;
    use crate::entry::{Body, Timestamp};
    use crate::keys::SignerKey;
    use crate::tree::consistency_proof;
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "hexagone.test/witnessed";

    fn log_key() -> SignerKey {
        SignerKey::from_signing_key(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap()
    }

    fn witness() -> Witness {
        let w = WitnessSigner::from_signing_key("witness.test/w", SigningKey::from_bytes(&[9; 32]))
            .unwrap();
        Witness::new(w, vec![log_key().verifier().clone()])
    }

    /// A log of `n` rotation-free entries named by `tag`; returns its leaves and signed note.
    fn log(n: u64, tag: &str) -> (Vec<Hash>, String) {
        let mut seq = Sequencer::new(log_key());
        let leaves = (0..n)
            .map(|i| {
                let body = Body::KeyRotation {
                    new_key: format!("{tag}{i}"),
                };
                seq.seal(Timestamp(0), body).leaf
            })
            .collect();
        (leaves, seq.sign())
    }

    fn proof(leaves: &[Hash], old: u64, new: u64) -> Vec<Hash> {
        let mut mth = |a: u64, b: u64| {
            Ok::<_, ()>(crate::tree::root_of_leaves(&leaves[a as usize..b as usize]))
        };
        consistency_proof(old, new, &mut mth).unwrap().unwrap()
    }

    /// Submits to `w` with `state`, expecting a cosignature or an error with this status.
    fn check(state: &mut WitnessState, req: AddCheckpoint, want: Result<(), u16>) {
        let before = state.clone();
        match (witness().add_checkpoint(state, &req, 1_700_000_000), want) {
            (Ok(line), Ok(())) => {
                let note = parse_note(&format!("{}{line}", req.note)).unwrap();
                let key = witness().signer.public().clone();
                assert_eq!(key.cosigned(&note), Some(1_700_000_000));
            }
            (Err(e), Err(status)) => {
                assert_eq!(e.status(), status, "{e}");
                assert_eq!(*state, before, "state changed on refusal");
            }
            (got, want) => panic!("add_checkpoint = {got:?}, wanted {want:?}"),
        }
    }

    /// The thief of a retired key extends the genuine log with entries of its own and signs the
    /// branch with the retired key: once the successor signed a checkpoint cosigned here, the
    /// branch is refused (403), and the genuine log goes on.
    #[test]
    fn a_retired_key_cannot_get_a_branch_cosigned() {
        let next = SignerKey::from_signing_key(ORIGIN, SigningKey::from_bytes(&[2; 32])).unwrap();
        let w = WitnessSigner::from_signing_key("witness.test/w", SigningKey::from_bytes(&[9; 32]))
            .unwrap();
        let w = Witness::new(
            w,
            vec![log_key().verifier().clone(), next.verifier().clone()],
        );
        let body = |i: u64| Body::KeyRotation {
            new_key: format!("e{i}"),
        };
        let mut genuine = Sequencer::new(log_key());
        let mut leaves = Vec::new();
        for i in 0..4 {
            leaves.push(genuine.seal(Timestamp(0), body(i)).leaf);
        }
        let note4 = genuine.sign();
        let (rotation, note5) = genuine.rotate(Timestamp(0), next.clone()).unwrap();
        leaves.push(rotation.leaf);
        for i in 5..7 {
            leaves.push(genuine.seal(Timestamp(0), body(i)).leaf);
        }
        let note7 = genuine.sign();
        let mut state = WitnessState::default();
        let add = |state: &mut WitnessState, old, new, note: &str, leaves: &[Hash]| {
            let proof = if old == 0 {
                Vec::new()
            } else {
                proof(leaves, old, new)
            };
            let req = AddCheckpoint {
                old,
                proof,
                note: note.to_string(),
            };
            w.add_checkpoint(state, &req, 1_700_000_000)
        };
        add(&mut state, 0, 4, &note4, &leaves).unwrap();
        add(&mut state, 4, 5, &note5, &leaves).unwrap();
        add(&mut state, 5, 7, &note7, &leaves).unwrap();
        // The thief replays the public entries under the retired key, then adds its own.
        let mut thief = Sequencer::new(log_key());
        let mut branch = Vec::new();
        for i in 0..4 {
            branch.push(thief.seal(Timestamp(0), body(i)).leaf);
        }
        branch.push(
            thief
                .seal(
                    Timestamp(0),
                    Body::KeyRotation {
                        new_key: next.verifier().to_string(),
                    },
                )
                .leaf,
        );
        for i in 5..9 {
            branch.push(
                thief
                    .seal(Timestamp(0), body(i + 100 * u64::from(i > 6)))
                    .leaf,
            );
        }
        assert_eq!(
            branch[..7],
            leaves[..],
            "the branch extends the genuine log"
        );
        let forged = thief.sign();
        match add(&mut state, 7, 9, &forged, &branch) {
            Err(e @ WitnessError::Retired { size: 7, .. }) => {
                assert_eq!(e.status(), 403);
                assert!(e.to_string().contains("a key this log retired"), "{e}");
            }
            other => panic!("a branch signed by a retired key: {other:?}"),
        }
        assert_eq!(state.logs[ORIGIN].0, 7);
        // The genuine log goes on under its key in force.
        for i in 7..9 {
            leaves.push(genuine.seal(Timestamp(0), body(i)).leaf);
        }
        let note9 = genuine.sign();
        add(&mut state, 7, 9, &note9, &leaves).unwrap();
    }

    #[test]
    fn cosigns_only_consistent_growth() {
        let mut state = WitnessState::default();
        let (leaves, note10) = log(10, "a");
        let (_, note4) = log(4, "a");
        let req = |old, proof, note: &str| AddCheckpoint {
            old,
            proof,
            note: note.to_string(),
        };
        check(&mut state, req(0, vec![], &note4), Ok(()));
        assert_eq!(state.logs[ORIGIN].0, 4);
        // A stale old size: 409 with the last size.
        check(&mut state, req(0, vec![], &note10), Err(409));
        // A wrong proof: 422. The right one: cosigned.
        check(&mut state, req(4, proof(&leaves, 3, 10), &note10), Err(422));
        check(&mut state, req(4, proof(&leaves, 4, 10), &note10), Ok(()));
        // Rollback to the older checkpoint: 409.
        check(&mut state, req(10, vec![], &note4), Err(400));
        check(&mut state, req(4, vec![], &note4), Err(409));
        // A fork: another log of the same size under the same key.
        let (_, fork10) = log(10, "b");
        check(&mut state, req(10, vec![], &fork10), Err(409));
        let (b12, fork12) = log(12, "b");
        check(&mut state, req(10, proof(&b12, 10, 12), &fork12), Err(422));
        // The same checkpoint again is cosigned again (idempotent).
        check(&mut state, req(10, vec![], &note10), Ok(()));
        // Not signed by the log key, unknown origin, malformed.
        let other = SignerKey::from_signing_key(ORIGIN, SigningKey::from_bytes(&[2; 32])).unwrap();
        let forged = Sequencer::new(other).sign();
        check(&mut state, req(10, vec![], &forged), Err(403));
        let stranger = SignerKey::generate("elsewhere/log").unwrap();
        check(
            &mut state,
            req(0, vec![], &Sequencer::new(stranger).sign()),
            Err(404),
        );
        assert!(AddCheckpoint::parse("old 01\n\nx").is_err());
        let text = req(4, proof(&leaves, 4, 10), &note10).to_text();
        assert_eq!(
            AddCheckpoint::parse(&text).unwrap().proof.len(),
            proof(&leaves, 4, 10).len()
        );
        assert_eq!(WitnessState::parse(&state.to_text()).unwrap(), state);
        // The last checkpoint cosigned is kept with the witness's own line, and a state written
        // before notes were kept (three fields) still reads.
        let kept = &state.cosigned[ORIGIN];
        assert!(kept.starts_with(&note10), "{kept}");
        let note = parse_note(kept).unwrap();
        assert_eq!(note.text, parse_note(&note10).unwrap().text);
        assert_eq!(note.signatures.len(), 2, "{kept}");
        let old = WitnessState::parse(&format!("{ORIGIN} 10 {}\n", B64.encode([7u8; 32]))).unwrap();
        assert!(old.cosigned.is_empty() && old.logs[ORIGIN].0 == 10);
    }
}
