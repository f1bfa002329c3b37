//! Witness cosignatures (C2SP `tlog-cosignature`, `cosignature/v1`, Ed25519): a witness
//! signs `cosignature/v1\ntime <seconds>\n` followed by the checkpoint body, and the note
//! signature is `keyid(4) || timestamp(8, big-endian) || signature(64)` under a key whose ID
//! uses the signature type 0x04. Pure: no clock, no I/O.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};

use super::checkpoint::Note;
use crate::keys::{
    KeyError, PRIVATE_PREFIX, check_id, check_name, key_id_for, public_key, split_encoded,
};

/// Signature type byte of Ed25519 cosignatures in key IDs and verifier keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// A witness's public key: name, key ID and Ed25519 key, written `name+id+base64(0x04||key)`.
#[derive(Clone, PartialEq, Eq)]
pub struct WitnessKey {
    name: String,
    id: [u8; 4],
    public: VerifyingKey,
}

impl fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WitnessKey({self})")
    }
}

impl fmt::Display for WitnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.public.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(raw)
        )
    }
}

impl WitnessKey {
    /// Parses a witness verifier key string.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, id, raw) = split_encoded(s, "witness key", ALG_COSIGNATURE_V1)?;
        let key = Self::new(name, public_key(&raw, "witness key")?)?;
        check_id(id, key.id)?;
        Ok(key)
    }

    fn new(name: &str, public: VerifyingKey) -> Result<Self, KeyError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_string(),
            id: key_id_for(ALG_COSIGNATURE_V1, name, &public),
            public,
        })
    }

    /// The witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time of this witness's valid cosignature on `note`, if it has one. A signature
    /// line with this witness's name and key ID that does not verify counts as none.
    pub fn cosigned(&self, note: &Note) -> Option<u64> {
        note.signatures
            .iter()
            .filter(|s| s.name == self.name && s.key_id == self.id && s.signature.len() == 72)
            .find_map(|s| {
                let time = u64::from_be_bytes(s.signature[..8].try_into().expect("8 bytes"));
                let sig = ed25519_dalek::Signature::from_slice(&s.signature[8..]).ok()?;
                let msg = message(time, &note.text);
                self.public.verify(msg.as_bytes(), &sig).ok().map(|()| time)
            })
    }
}

/// The signed message: header, time, then the checkpoint body.
fn message(time: u64, body: &str) -> String {
    format!("cosignature/v1\ntime {time}\n{body}")
}

/// A witness's private key.
#[derive(Clone)]
pub struct WitnessSigner {
    key: SigningKey,
    public: WitnessKey,
}

impl fmt::Debug for WitnessSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WitnessSigner({})", self.public)
    }
}

impl WitnessSigner {
    /// Wraps an Ed25519 key under the witness name `name`.
    pub fn from_signing_key(name: &str, key: SigningKey) -> Result<Self, KeyError> {
        Ok(Self {
            public: WitnessKey::new(name, key.verifying_key())?,
            key,
        })
    }

    /// A fresh key.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        Self::from_signing_key(name, SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The public key.
    pub fn public(&self) -> &WitnessKey {
        &self.public
    }

    /// The cosignature line (`— name base64(...)\n`) over the checkpoint `body` at `time`.
    pub fn cosign(&self, body: &str, time: u64) -> String {
        let sig = self.key.sign(message(time, body).as_bytes());
        let mut blob = Vec::with_capacity(76);
        blob.extend_from_slice(&self.public.id);
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("\u{2014} {} {}\n", self.public.name, B64.encode(blob))
    }

    /// `PRIVATE+KEY+name+id+base64(0x04||seed)`.
    pub fn to_private_string(&self) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{PRIVATE_PREFIX}{}+{}+{}",
            self.public.name,
            hex::encode(self.public.id),
            B64.encode(raw)
        )
    }

    /// Parses [`WitnessSigner::to_private_string`].
    pub fn parse_private(s: &str) -> Result<Self, KeyError> {
        let rest = s
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or(KeyError::Malformed {
                what: "witness private key",
                why: "does not start with PRIVATE+KEY+".into(),
            })?;
        let (name, id, raw) = split_encoded(rest, "witness private key", ALG_COSIGNATURE_V1)?;
        let seed: [u8; 32] = raw.try_into().map_err(|_| KeyError::Malformed {
            what: "witness private key",
            why: "seed is not 32 bytes".into(),
        })?;
        let signer = Self::from_signing_key(name, SigningKey::from_bytes(&seed))?;
        check_id(id, signer.public.id)?;
        Ok(signer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::parse_note;

    const BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness(seed: u8) -> WitnessSigner {
        WitnessSigner::from_signing_key("witness.test/w1", SigningKey::from_bytes(&[seed; 32]))
            .unwrap()
    }

    /// The cosignature `line` on BODY verifies with `key` at `want` (or not at all).
    fn check(line: &str, key: &WitnessKey, want: Option<u64>) {
        let note = parse_note(&format!("{BODY}\n{line}")).unwrap();
        assert_eq!(key.cosigned(&note), want, "{line}");
    }

    #[test]
    fn cosignatures_round_trip_and_bind_time_and_body() {
        let w = witness(1);
        let key = WitnessKey::parse(&w.public().to_string()).unwrap();
        assert_eq!(&key, w.public());
        let line = w.cosign(BODY, 1_679_315_147);
        check(&line, &key, Some(1_679_315_147));
        // Another witness key of the same name, a changed time, a changed body: no cosignature.
        check(&line, witness(2).public(), None);
        let (prefix, b64) = line.trim_end().rsplit_once(' ').unwrap();
        let mut blob = B64.decode(b64).unwrap();
        blob[11] ^= 1;
        check(&format!("{prefix} {}\n", B64.encode(&blob)), &key, None);
        let note = parse_note(&format!("{}\n{line}", BODY.replace("2085", "2086"))).unwrap();
        assert_eq!(key.cosigned(&note), None);
        let again = WitnessSigner::parse_private(&w.to_private_string()).unwrap();
        assert_eq!(again.public(), w.public());
        // The key ID commits to the cosignature type: the same key as a log key differs.
        let as_log = crate::keys::key_id(key.name(), &key.public);
        assert_ne!(as_log, key.id);
        assert!(WitnessKey::parse("w+00000000+AQID").is_err());
    }
}
