//! Checkpoints: the C2SP `tlog-checkpoint` body (origin, size, base64 root, extension
//! lines) wrapped in a C2SP signed note (`— name base64(keyid||signature)` lines, Ed25519).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::tree::Hash;
use crate::keys::{SignerKey, VerifierKey};

/// Most signature lines a note may carry before it is refused (as Go's `sumdb/note`).
pub const MAX_SIGNATURES: usize = 100;
/// Longest note accepted, in bytes (room for 100 signature lines).
pub const MAX_NOTE: usize = 64 * 1024;

/// Why a note or checkpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note envelope is malformed.
    #[error("malformed signed note: {0}")]
    MalformedNote(String),
    /// The checkpoint body is malformed.
    #[error("malformed checkpoint body: {0}")]
    MalformedBody(String),
    /// No signature from any of the expected keys.
    #[error("no signature by {expected}; the note is signed by {found}")]
    UnknownSigner {
        /// The keys looked for.
        expected: String,
        /// The signatures present (name/keyid).
        found: String,
    },
    /// A signature from an expected key does not verify.
    #[error("signature by {key} does not verify: the note was altered or forged")]
    BadSignature {
        /// The key.
        key: String,
    },
    /// Origin differs from the key name.
    #[error("checkpoint origin {origin:?} does not match the log origin {expected:?}")]
    WrongOrigin {
        /// In the checkpoint.
        origin: String,
        /// Expected.
        expected: String,
    },
}

/// A tree head: what a checkpoint body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log origin (also the signing key name).
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 6962 root hash.
    pub root: Hash,
    /// Optional extension lines (opaque, non-empty each).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The body text, ending in a newline.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let bad = |s: String| CheckpointError::MalformedBody(s);
        let Some(body) = text.strip_suffix('\n') else {
            return Err(bad("does not end with a newline".into()));
        };
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(bad("empty origin line".into()));
        }
        let size_line = lines
            .next()
            .ok_or_else(|| bad("missing size line".into()))?;
        let size_ok = !size_line.is_empty()
            && size_line.bytes().all(|c| c.is_ascii_digit())
            && (size_line == "0" || !size_line.starts_with('0'));
        let size: u64 = size_ok
            .then(|| size_line.parse().ok())
            .flatten()
            .ok_or_else(|| {
                bad(format!(
                    "size {size_line:?} is not a decimal without leading zeros"
                ))
            })?;
        let root_line = lines
            .next()
            .ok_or_else(|| bad("missing root hash line".into()))?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad(format!("root {root_line:?} is not a base64 SHA-256 hash")))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line".into()));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// Signs the body as a C2SP signed note under `key`.
    pub fn sign(&self, key: &SignerKey) -> String {
        sign_note(&self.body(), key)
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (first 4 bytes of the signature blob).
    pub key_id: [u8; 4],
    /// Signature bytes.
    pub signature: Vec<u8>,
}

/// A parsed signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending with a newline.
    pub text: String,
    /// The signature lines.
    pub signatures: Vec<NoteSignature>,
}

/// Signs `text` (which must end with a newline) and returns the complete note.
pub fn sign_note(text: &str, key: &SignerKey) -> String {
    debug_assert!(text.ends_with('\n'));
    let sig = key.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(68);
    blob.extend_from_slice(&key.verifier().id());
    blob.extend_from_slice(&sig);
    format!("{text}\n\u{2014} {} {}\n", key.name(), B64.encode(blob))
}

/// Parses a signed note envelope (no signature checking).
pub fn parse_note(note: &str) -> Result<Note, CheckpointError> {
    let bad = |s: &str| CheckpointError::MalformedNote(s.to_string());
    if note.len() > MAX_NOTE {
        return Err(bad("too long"));
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad("contains a control character"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let text = &note[..=split];
    let sigs = &note[split + 2..];
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(bad("signature block does not end with a newline"));
    };
    let mut signatures = Vec::new();
    for line in sigs.split('\n') {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| bad("signature line does not start with an em dash and a space"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| bad("signature line is not `— name signature`"))?;
        crate::keys::check_name(name).map_err(|_| bad("invalid key name in a signature line"))?;
        let blob = B64
            .decode(b64)
            .map_err(|_| bad("signature is not base64"))?;
        if blob.len() < 5 {
            return Err(bad("signature too short"));
        }
        signatures.push(NoteSignature {
            name: name.to_string(),
            key_id: blob[..4].try_into().expect("4 bytes"),
            signature: blob[4..].to_vec(),
        });
        if signatures.len() > MAX_SIGNATURES {
            return Err(bad("too many signatures"));
        }
    }
    Ok(Note {
        text: text.to_string(),
        signatures,
    })
}

impl Note {
    /// Finds the first key in `keys` that signed this note, checking its signature.
    ///
    /// A signature line naming a key in `keys` (same name and key ID) must verify; other
    /// signature lines are ignored, as the signed-note spec says.
    pub fn verified_by<'k>(
        &self,
        keys: &'k [VerifierKey],
    ) -> Result<&'k VerifierKey, CheckpointError> {
        for sig in &self.signatures {
            if let Some(k) = keys
                .iter()
                .find(|k| k.name() == sig.name && k.id() == sig.key_id)
            {
                if k.verify(self.text.as_bytes(), &sig.signature) {
                    return Ok(k);
                }
                return Err(CheckpointError::BadSignature { key: k.to_string() });
            }
        }
        Err(CheckpointError::UnknownSigner {
            expected: keys
                .iter()
                .map(|k| format!("{}/{}", k.name(), hex::encode(k.id())))
                .collect::<Vec<_>>()
                .join(", "),
            found: self
                .signatures
                .iter()
                .map(|s| format!("{}/{}", s.name, hex::encode(s.key_id)))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Opens a signed checkpoint: parses the note, checks a signature by one of `keys`, parses
/// the body and checks its origin equals the signing key's name.
pub fn open_checkpoint<'k>(
    note: &str,
    keys: &'k [VerifierKey],
) -> Result<(Checkpoint, &'k VerifierKey), CheckpointError> {
    let parsed = parse_note(note)?;
    let key = parsed.verified_by(keys)?;
    let cp = Checkpoint::parse_body(&parsed.text)?;
    if cp.origin != key.name() {
        return Err(CheckpointError::WrongOrigin {
            origin: cp.origin,
            expected: key.name().to_string(),
        });
    }
    Ok((cp, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key(seed: u8, name: &str) -> SignerKey {
        SignerKey::from_signing_key(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            origin: "hexagone.example/ledger".into(),
            size: 20852163,
            root: [9; 32],
            extensions: vec![],
        }
    }

    /// Opening `note` with `keys` yields `want` (Ok size) or an error containing the text.
    fn check(note: &str, keys: &[VerifierKey], want: Result<u64, &str>) {
        match (open_checkpoint(note, keys), want) {
            (Ok((cp, _)), Ok(size)) => assert_eq!(cp.size, size),
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} should mention {w}"),
            (got, want) => panic!("open = {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn sign_and_open() {
        let k = key(1, "hexagone.example/ledger");
        let note = sample().sign(&k);
        assert!(note.starts_with(
            "hexagone.example/ledger\n20852163\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n\n\u{2014} hexagone.example/ledger "
        ));
        check(&note, &[k.verifier().clone()], Ok(20852163));
        let parsed = parse_note(&note).unwrap();
        assert_eq!(parsed.signatures[0].key_id, k.verifier().id());
        assert_eq!(Checkpoint::parse_body(&parsed.text).unwrap(), sample());
    }

    #[test]
    fn tampering_is_detected() {
        let k = key(1, "hexagone.example/ledger");
        let v = [k.verifier().clone()];
        let note = sample().sign(&k);
        check(
            &note.replace("20852163", "20852164"),
            &v,
            Err("does not verify"),
        );
        let other = key(2, "hexagone.example/ledger");
        check(&sample().sign(&other), &v, Err("no signature by"));
        check(&note.replace('\u{2014}', "-"), &v, Err("em dash"));
        check(&note.replace("\n\n", "\n"), &v, Err("blank line"));
        let mut wrong_origin = sample();
        wrong_origin.origin = "elsewhere".into();
        check(&sign_note(&wrong_origin.body(), &k), &v, Err("origin"));
        // Unknown extra signatures are ignored.
        let cosigned = format!("{note}\u{2014} witness AAAA\n");
        check(&cosigned, &v, Err("too short"));
        let cosigned = format!("{}\u{2014} witness AAAAAAAAAAAA\n", note);
        check(&cosigned, &v, Ok(20852163));
    }

    #[test]
    fn bodies_are_strict() {
        for (body, why) in [
            (
                "o\n01\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
                "leading zeros",
            ),
            ("o\n1\nCQkJ\n", "base64 SHA-256"),
            ("o\n1\n", "root"),
            (
                "o\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=",
                "newline",
            ),
            (
                "\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
                "origin",
            ),
        ] {
            let e = Checkpoint::parse_body(body).unwrap_err();
            assert!(e.to_string().contains(why), "{e} should mention {why}");
        }
        let with_ext = Checkpoint::parse_body(
            "o\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\nextension\n",
        )
        .unwrap();
        assert_eq!(with_ext.extensions, vec!["extension".to_string()]);
        assert_eq!(with_ext.body().lines().count(), 4);
    }
}
