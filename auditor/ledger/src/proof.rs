//! Proof files: `c2sp.org/tlog-proof@v1` inclusion proofs (the entry's canonical bytes ride in
//! the `extra` line so the proof is self-contained) and a small text format for consistency
//! proofs between two checkpoints.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::checkpoint::{CheckpointError, open_checkpoint};
use super::entry::{Entry, EntryError};
use super::tree::{Hash, TreeError, leaf_hash, verify_consistency, verify_inclusion};
use crate::keys::VerifierKey;

/// First line of an inclusion proof file.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// First line of a consistency proof file.
pub const CONSISTENCY_HEADER: &str = "hexagone.ledger/consistency-proof@v1";

/// Why a proof file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The file does not follow the format.
    #[error("malformed proof file, line {line}: {why}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The embedded checkpoint is not acceptable.
    #[error("checkpoint in the proof: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The Merkle proof does not check out.
    #[error("Merkle proof: {0}")]
    Tree(#[from] TreeError),
    /// The entry carried in `extra` is not a valid entry.
    #[error("entry in the proof: {0}")]
    Entry(#[from] EntryError),
    /// The entry carried in `extra` is not at the proven index.
    #[error("entry in the proof has seq {seq} but the proof is for index {index}")]
    WrongIndex {
        /// The entry's seq.
        seq: u64,
        /// The proven index.
        index: u64,
    },
}

/// An inclusion proof: an index, the audit path and the signed checkpoint it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Optional opaque data (here: the entry's canonical encoding).
    pub extra: Option<Vec<u8>>,
    /// Leaf index.
    pub index: u64,
    /// Audit path, from the leaf's sibling up.
    pub path: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

fn malformed(line: usize, why: impl Into<String>) -> ProofError {
    ProofError::Malformed {
        line,
        why: why.into(),
    }
}

fn parse_hash_line(line_no: usize, line: &str) -> Result<Hash, ProofError> {
    B64.decode(line)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| malformed(line_no, format!("{line:?} is not a base64 SHA-256 hash")))
}

fn parse_decimal(line_no: usize, s: &str) -> Result<u64, ProofError> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(malformed(
            line_no,
            format!("{s:?} is not a decimal without leading zeros"),
        ));
    }
    s.parse()
        .map_err(|_| malformed(line_no, "number too large"))
}

impl InclusionProof {
    /// Formats as a `c2sp.org/tlog-proof@v1` file.
    pub fn format(&self) -> String {
        let mut s = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.path {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses a `c2sp.org/tlog-proof@v1` file.
    pub fn parse(text: &str) -> Result<Self, ProofError> {
        let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        let mut next = |what: &str| {
            lines
                .next()
                .ok_or_else(|| malformed(0, format!("file ends before the {what}")))
        };
        let (n, first) = next("header")?;
        if first != TLOG_PROOF_HEADER {
            return Err(malformed(n, format!("expected {TLOG_PROOF_HEADER}")));
        }
        let (mut n, mut line) = next("index line")?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                B64.decode(b64)
                    .map_err(|_| malformed(n, "extra is not base64"))?,
            );
            (n, line) = next("index line")?;
        }
        let index_text = line
            .strip_prefix("index ")
            .ok_or_else(|| malformed(n, "expected `index N`"))?;
        let index = parse_decimal(n, index_text)?;
        let mut path = Vec::new();
        loop {
            let (n, line) = next("blank line before the checkpoint")?;
            if line.is_empty() {
                break;
            }
            if path.len() >= 64 {
                return Err(malformed(n, "more than 64 proof hashes"));
            }
            path.push(parse_hash_line(n, line)?);
        }
        let consumed: usize = text
            .split_inclusive('\n')
            .take(path.len() + 3 + usize::from(extra.is_some()))
            .map(str::len)
            .sum();
        Ok(Self {
            extra,
            index,
            path,
            checkpoint: text[consumed..].to_string(),
        })
    }

    /// Verifies the proof for the leaf `entry_bytes` (or, when `None`, the entry carried in
    /// `extra`) against `keys`; returns the decoded entry.
    pub fn verify(
        &self,
        keys: &[VerifierKey],
        entry_bytes: Option<&[u8]>,
    ) -> Result<Entry, ProofError> {
        let (cp, _) = open_checkpoint(&self.checkpoint, keys)?;
        let bytes = entry_bytes
            .or(self.extra.as_deref())
            .ok_or_else(|| malformed(2, "no entry given and no extra line"))?;
        let entry = Entry::decode(bytes)?;
        if entry.seq != self.index {
            return Err(ProofError::WrongIndex {
                seq: entry.seq,
                index: self.index,
            });
        }
        verify_inclusion(self.index, cp.size, &leaf_hash(bytes), &self.path, &cp.root)?;
        Ok(entry)
    }
}

/// A consistency proof between two signed checkpoints of the same log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older checkpoint note.
    pub old: String,
    /// The newer checkpoint note.
    pub new: String,
    /// The RFC 6962 consistency proof hashes.
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    /// Formats: header, `old N`, `new M`, one base64 hash per line, a blank line, then the
    /// two notes each preceded by its length in bytes on its own line.
    pub fn format(&self) -> String {
        let (old, new) = (
            crate::checkpoint::parse_note(&self.old).map(|n| n.text),
            crate::checkpoint::parse_note(&self.new).map(|n| n.text),
        );
        let size = |t: Result<String, _>| {
            t.ok()
                .and_then(|t| t.lines().nth(1).map(str::to_string))
                .unwrap_or_default()
        };
        let mut s = format!(
            "{CONSISTENCY_HEADER}\nold {}\nnew {}\n",
            size(old),
            size(new)
        );
        for h in &self.path {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push_str(&format!(
            "\n{}\n{}{}\n{}",
            self.old.len(),
            self.old,
            self.new.len(),
            self.new
        ));
        s
    }

    /// Verifies the proof and both signatures.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<(u64, u64), ProofError> {
        let (a, _) = open_checkpoint(&self.old, keys)?;
        let (b, _) = open_checkpoint(&self.new, keys)?;
        verify_consistency(a.size, b.size, &a.root, &b.root, &self.path)?;
        Ok((a.size, b.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::entry::{Body, GENESIS_PREV, Timestamp};
    use crate::keys::SignerKey;
    use crate::tree::{Frontier, consistency_proof, inclusion_proof, root_of_leaves};
    use ed25519_dalek::SigningKey;
    use std::convert::Infallible;

    fn log(n: u64) -> (SignerKey, Vec<String>, Vec<Hash>) {
        let key =
            SignerKey::from_signing_key("test/log", SigningKey::from_bytes(&[5; 32])).unwrap();
        let mut prev = GENESIS_PREV;
        let mut texts = Vec::new();
        let mut leaves = Vec::new();
        for seq in 0..n {
            let e = Entry {
                seq,
                time: Timestamp(1000 * seq as i64),
                prev,
                body: Body::KeyRotation {
                    new_key: format!("k{seq}"),
                },
            };
            let t = e.encode();
            prev = leaf_hash(t.as_bytes());
            leaves.push(prev);
            texts.push(t);
        }
        (key, texts, leaves)
    }

    fn signed(key: &SignerKey, leaves: &[Hash]) -> String {
        let mut f = Frontier::new();
        leaves.iter().for_each(|l| f.push(*l));
        Checkpoint {
            origin: "test/log".into(),
            size: leaves.len() as u64,
            root: f.root(),
            extensions: vec![],
        }
        .sign(key)
    }

    /// Proves `index` in a log of `n`, round-trips the file and verifies it.
    fn check(n: u64, index: u64) {
        let (key, texts, leaves) = log(n);
        let mut oracle =
            |a: u64, b: u64| Ok::<_, Infallible>(root_of_leaves(&leaves[a as usize..b as usize]));
        let proof = InclusionProof {
            extra: Some(texts[index as usize].as_bytes().to_vec()),
            index,
            path: inclusion_proof(index, n, &mut oracle).unwrap().unwrap(),
            checkpoint: signed(&key, &leaves),
        };
        let text = proof.format();
        let parsed = InclusionProof::parse(&text).unwrap();
        assert_eq!(parsed, proof);
        let e = parsed.verify(&[key.verifier().clone()], None).unwrap();
        assert_eq!(e.seq, index);
        let other = texts[(index as usize + 1) % n as usize].as_bytes();
        if n > 1 {
            assert!(
                parsed
                    .verify(&[key.verifier().clone()], Some(other))
                    .is_err()
            );
        }
    }

    #[test]
    fn inclusion_proofs_round_trip() {
        for (n, i) in [(1, 0), (2, 1), (7, 3), (8, 0), (13, 12)] {
            check(n, i);
        }
    }

    #[test]
    fn malformed_proofs_are_rejected() {
        for (text, why) in [
            ("c2sp.org/tlog-proof@v2\n", "expected"),
            ("c2sp.org/tlog-proof@v1\nindex 01\n\n", "leading zeros"),
            ("c2sp.org/tlog-proof@v1\nindex 1\nnot-a-hash\n\n", "base64"),
            ("c2sp.org/tlog-proof@v1\nindex 1", "blank line"),
        ] {
            let e = InclusionProof::parse(text).unwrap_err();
            assert!(e.to_string().contains(why), "{e} should mention {why}");
        }
    }

    #[test]
    fn consistency_proof_files_verify() {
        let (key, _, leaves) = log(11);
        let mut oracle =
            |a: u64, b: u64| Ok::<_, Infallible>(root_of_leaves(&leaves[a as usize..b as usize]));
        let p = ConsistencyProof {
            old: signed(&key, &leaves[..5]),
            new: signed(&key, &leaves),
            path: consistency_proof(5, 11, &mut oracle).unwrap().unwrap(),
        };
        assert_eq!(p.verify(&[key.verifier().clone()]).unwrap(), (5, 11));
        assert!(
            p.format()
                .starts_with("hexagone.ledger/consistency-proof@v1\nold 5\nnew 11\n")
        );
        let mut bad = p.clone();
        bad.path[0][0] ^= 1;
        assert!(bad.verify(&[key.verifier().clone()]).is_err());
    }
}
