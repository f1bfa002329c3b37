//! Ed25519 signing keys in the C2SP signed-note encodings: the verifier key string
//! `name+hexkeyid+base64(0x01||pubkey)`, the private key string and fingerprints. Pure: the
//! key files are read and written by the auditor's `keyfile` module.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature algorithm byte for Ed25519 in signed notes.
pub const ALG_ED25519: u8 = 0x01;
pub(crate) const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// Why a key string or key file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Key name not allowed by the signed-note spec.
    #[error("key name {0:?} is not valid: it must be non-empty, without spaces or '+'")]
    BadName(String),
    /// Malformed key string.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// Which kind of key string.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The key ID in the string does not match the key.
    #[error("key ID {given} does not match the key (expected {computed})")]
    WrongKeyId {
        /// Key ID written in the string.
        given: String,
        /// Key ID computed from name and key.
        computed: String,
    },
}

/// Checks a signed-note key name: non-empty, no Unicode whitespace, no `+`.
pub fn check_name(name: &str) -> Result<(), KeyError> {
    if name.is_empty()
        || name.contains('+')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(KeyError::BadName(name.to_string()));
    }
    Ok(())
}

/// Signed-note key ID: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || pubkey).
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    key_id_for(ALG_ED25519, name, public)
}

/// Key ID for the signature type `alg`: the first 4 bytes of
/// SHA-256(name || 0x0A || alg || pubkey).
pub fn key_id_for(alg: u8, name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A public key that verifies checkpoints, with the name it signs under (the log origin).
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    public: VerifyingKey,
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl VerifierKey {
    /// Builds from a name and an Ed25519 public key.
    pub fn new(name: &str, public: VerifyingKey) -> Result<Self, KeyError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_string(),
            id: key_id(name, &public),
            public,
        })
    }

    /// Parses `name+hexkeyid+base64(0x01||pubkey)`.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, id, raw) = split_encoded(s, "verifier key", ALG_ED25519)?;
        let key = Self::new(name, public_key(&raw, "verifier key")?)?;
        check_id(id, key.id)?;
        Ok(key)
    }

    /// The key name (the log origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    /// SHA-256 of `0x01 || pubkey`, 64 hex digits: what a person compares out of band.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update([ALG_ED25519]);
        h.update(self.public.as_bytes());
        hex::encode(h.finalize())
    }

    /// True when `s` is this key's verifier string or fingerprint in any common spelling:
    /// 64 hex digits in either case, bare or after `SHA256:` / `sha256:` (any case).
    pub fn matches(&self, s: &str) -> bool {
        let s = s.trim();
        if let Ok(k) = Self::parse(s) {
            return &k == self;
        }
        bare_fingerprint(s).eq_ignore_ascii_case(&self.fingerprint())
    }

    /// Verifies an Ed25519 signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.public.verify(msg, &sig).is_ok()
    }
}

/// A fingerprint without its `SHA256:` prefix (any case), trimmed.
pub fn bare_fingerprint(s: &str) -> &str {
    let s = s.trim();
    match s.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("sha256:") => s[7..].trim(),
        _ => s,
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 33];
        raw[0] = ALG_ED25519;
        raw[1..].copy_from_slice(self.public.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(raw)
        )
    }
}

/// Splits the signed-note key encoding `name+hexkeyid+base64(alg||key)` shared by verifier,
/// private and witness keys (the name cannot contain '+', the base64 key can: split from the
/// left), checking the key ID's form and the algorithm byte; returns the name, the key ID and
/// the key bytes after the algorithm byte.
pub(crate) fn split_encoded<'a>(
    s: &'a str,
    what: &'static str,
    alg: u8,
) -> Result<(&'a str, [u8; 4], Vec<u8>), KeyError> {
    let bad = |why: &str| KeyError::Malformed {
        what,
        why: format!("{why} (expected name+keyid+base64key)"),
    };
    let mut parts = s.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not three '+'-separated fields"));
    };
    check_name(name)?;
    let id: [u8; 4] = (id.len() == 8 && id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| hex::decode(id).ok()?.try_into().ok())
        .flatten()
        .ok_or_else(|| bad("key ID is not 8 lowercase hex digits"))?;
    let raw = B64
        .decode(key)
        .map_err(|e| bad(&format!("key is not base64: {e}")))?;
    match raw.split_first() {
        Some((&a, rest)) if a == alg => Ok((name, id, rest.to_vec())),
        _ => Err(bad(&format!(
            "not {} (algorithm byte is not 0x{alg:02x})",
            if alg == ALG_ED25519 {
                "an Ed25519 key"
            } else {
                "an Ed25519 cosignature key"
            }
        ))),
    }
}

/// An Ed25519 public key from its 32 bytes.
pub(crate) fn public_key(raw: &[u8], what: &'static str) -> Result<VerifyingKey, KeyError> {
    let bad = |why: String| KeyError::Malformed { what, why };
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| bad("Ed25519 public key is not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| bad(e.to_string()))
}

/// The key ID written in an encoding must be the one computed from the name and key.
pub(crate) fn check_id(given: [u8; 4], computed: [u8; 4]) -> Result<(), KeyError> {
    if given == computed {
        Ok(())
    } else {
        Err(KeyError::WrongKeyId {
            given: hex::encode(given),
            computed: hex::encode(computed),
        })
    }
}

/// A private signing key with its name.
#[derive(Clone)]
pub struct SignerKey {
    verifier: VerifierKey,
    key: SigningKey,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({})", self.verifier)
    }
}

impl SignerKey {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        Self::from_signing_key(name, key)
    }

    /// Wraps an existing Ed25519 key.
    pub fn from_signing_key(name: &str, key: SigningKey) -> Result<Self, KeyError> {
        Ok(Self {
            verifier: VerifierKey::new(name, key.verifying_key())?,
            key,
        })
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// The key name.
    pub fn name(&self) -> &str {
        self.verifier.name()
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// `PRIVATE+KEY+name+hexkeyid+base64(0x01||seed)`, the signed-note signer key format.
    pub fn to_private_string(&self) -> String {
        let mut raw = [0u8; 33];
        raw[0] = ALG_ED25519;
        raw[1..].copy_from_slice(self.key.as_bytes());
        format!(
            "{PRIVATE_PREFIX}{}+{}+{}",
            self.verifier.name,
            hex::encode(self.verifier.id),
            B64.encode(raw)
        )
    }

    /// Parses [`SignerKey::to_private_string`].
    pub fn parse_private(s: &str) -> Result<Self, KeyError> {
        let bad = |why: &str| KeyError::Malformed {
            what: "private key",
            why: why.to_string(),
        };
        let rest = s
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or_else(|| bad("does not start with PRIVATE+KEY+"))?;
        let (name, id, raw) = split_encoded(rest, "private key", ALG_ED25519)?;
        let seed: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| bad("seed is not 32 bytes"))?;
        let signer = Self::from_signing_key(name, SigningKey::from_bytes(&seed))?;
        check_id(id, signer.verifier.id)?;
        Ok(signer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str, want: Result<&str, &str>) {
        match (VerifierKey::parse(s), want) {
            (Ok(k), Ok(name)) => {
                assert_eq!(k.name(), name);
                assert_eq!(k.to_string(), s);
            }
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} should mention {w}"),
            (got, want) => panic!("parse({s}) = {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn key_strings_round_trip() {
        let k = SignerKey::from_signing_key("example.com/log", SigningKey::from_bytes(&[1; 32]))
            .unwrap();
        let v = k.verifier().to_string();
        check(&v, Ok("example.com/log"));
        let again = SignerKey::parse_private(&k.to_private_string()).unwrap();
        assert_eq!(again.verifier(), k.verifier());
        assert!(k.verifier().matches(&v));
        assert!(
            k.verifier()
                .matches(&k.verifier().fingerprint().to_uppercase())
        );
        assert!(
            k.verifier()
                .matches(&format!("SHA256:{}", k.verifier().fingerprint()))
        );
        assert!(!k.verifier().matches("00"));
        // Every common spelling of the fingerprint: sha256:/SHA256:/Sha256: or bare, either case.
        let fp = k.verifier().fingerprint();
        for spelled in [
            format!("sha256:{fp}"),
            format!("Sha256:{}", fp.to_uppercase()),
            format!(" SHA256: {fp}\n"),
            fp.clone(),
        ] {
            assert!(k.verifier().matches(&spelled), "{spelled:?}");
        }
        assert!(!k.verifier().matches(&format!("sha512:{fp}")));
        let sig = k.sign(b"msg");
        assert!(k.verifier().verify(b"msg", &sig));
        assert!(!k.verifier().verify(b"msh", &sig));
    }

    #[test]
    fn key_id_matches_the_spec() {
        // Key ID = SHA-256(name || "\n" || 0x01 || pubkey)[:4], computed here independently.
        let k = SignerKey::from_signing_key("n", SigningKey::from_bytes(&[2; 32])).unwrap();
        let mut msg = b"n\n\x01".to_vec();
        msg.extend_from_slice(k.verifier().public.as_bytes());
        assert_eq!(k.verifier().id(), Sha256::digest(&msg)[..4]);
    }

    #[test]
    fn bad_key_strings_are_rejected() {
        let k = SignerKey::from_signing_key("log", SigningKey::from_bytes(&[3; 32])).unwrap();
        let v = k.verifier().to_string();
        check("log+abc", Err("three"));
        check(&v.replacen("log+", "log+0", 1), Err("8 lowercase hex"));
        let mut id_wrong = v.clone();
        id_wrong.replace_range(4..6, if &v[4..6] == "00" { "11" } else { "00" });
        check(&id_wrong, Err("does not match"));
        check(&v.replace("log+", "lo g+"), Err("not valid"));
        check("log+00000000+AgID", Err("Ed25519"));
        assert!(SignerKey::parse_private(&v).is_err());
    }
}
