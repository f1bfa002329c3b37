//! The ledger entry and its one canonical encoding: a single line of JSON with a fixed key
//! order and no whitespace. The leaf hash of an entry is the RFC 6962 leaf hash of exactly
//! these bytes; nothing else in the crate encodes or decodes entries.
//!
//! An observation entry records what the locality engine (`hexagone_platform`) made of where
//! an object is stored: the engine's evidence (each fact as the engine records it, who
//! controls its source, how it weighed, its sentence), its verdict and reasons, the policy's
//! digest and the geolocation databases' identities, so that `verify --policy` can replay it.
//! Entries hold identifiers and hashes only, never contents or personal data.
//!
//! The entry itself is here ([`Entry`], [`Body`], [`EncodedBody`], the limits and the error);
//! the rest is one concern a file: `timestamp` (the time format), `fact` (facts in canonical
//! JSON), `observation` (the observation model and its rules), `encode` (the canonical
//! encoding), `decode` (parsing, which insists on it), `prepared` (entries encoded ahead of
//! sealing).

use std::sync::Arc;

use crate::tree::Hash;

mod decode;
mod encode;
mod fact;
#[doc(hidden)]
pub mod fixture;
mod image;
mod observation;
mod prepared;
mod timestamp;

pub use decode::{make_verdict, parse_country, parse_hash};
pub use fact::Fact;
pub use image::{ImageRef, check_image_id, check_reference};
pub use observation::{
    Assessment, DatabaseId, Evidence, Judged, Locality, ObjectId, Observation, PolicyRef, Verdict,
    check_text, check_verdict,
};
pub use prepared::{ENTRY_HEAD_MAX, Prepared};
pub use timestamp::Timestamp;

/// The locality vocabulary, owned by the platform: this module holds only how entries spell it.
pub use hexagone_platform::vocabulary::{
    AssessmentKind, Controller, FactKind, Rule, Source, SubjectKind, VerdictKind,
};

/// Version number written in every entry (`"v"`).
pub const ENTRY_VERSION: u8 = 2;
/// Longest accepted string field, in bytes.
pub const MAX_TEXT: usize = 1024;
/// Most evidence items one observation may carry (two per address, labels, attestation).
pub const MAX_EVIDENCE: usize = 24;
/// Most reasons one verdict may give.
pub const MAX_REASONS: usize = 32;
/// Most geolocation database files one observation may name.
pub const MAX_DATABASES: usize = 16;
/// Longest fact, in bytes of canonical JSON.
pub const MAX_FACT: usize = 2048;
/// The object class of the images the collector records ([`Observation::image`]).
pub const IMAGE_CLASS: &str = "image";
/// The store the auditor's own Kubernetes collector records in, which no writer may use: the
/// only one whose observations may name an image.
pub const COLLECTOR_STORE: &str = "kubernetes";
/// Longest entry, in bytes (a bundle line holds an entry and 10 bytes more).
pub const MAX_ENTRY: usize = 60 * 1024;

/// Why some bytes are not a valid canonical entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Not JSON of the expected shape.
    #[error("not a ledger entry: {0}")]
    Syntax(String),
    /// A field has a value outside its domain.
    #[error("field `{field}`: {problem}")]
    Field {
        /// JSON key.
        field: &'static str,
        /// What is wrong, for a person.
        problem: String,
    },
    /// Valid entry, but not byte-for-byte its canonical encoding.
    #[error("entry is not in canonical encoding (expected {expected})")]
    NotCanonical {
        /// The canonical encoding of the same entry.
        expected: String,
    },
}

/// What an entry records.
// Nearly every entry is an observation: boxing it would only add an allocation per entry.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Body {
    /// A locality observation.
    Observation(Observation),
    /// The signing key changes: checkpoints after the one that commits this entry are
    /// signed by `new_key` (a C2SP signed-note verifier key string).
    KeyRotation {
        /// The verifier key string of the next signing key.
        new_key: String,
    },
    /// An object is gone from where it was observed (a pod or volume deleted, an object
    /// removed from its store): its latest observation no longer describes where it is.
    Removal {
        /// The object, as its observations name it.
        object: ObjectId,
        /// When its absence was seen.
        observed_at: Timestamp,
        /// The writer's request it records, as an observation's
        /// ([`Observation::request`]).
        request: Option<Hash>,
    },
    /// A locality policy (the `LocalityPolicy` custom resource the operator places workloads
    /// by) as the cluster holds it at `observed_at`: which rules it has, by their digest. Its
    /// deletion is a [`Body::Removal`] of the same object.
    Policy {
        /// The policy, as an object: the collector names it store `kubernetes`, class
        /// [`POLICY_CLASS`], identifier the policy's name.
        object: ObjectId,
        /// `LocalityPolicy::digest` of its spec (`sha256:` and 64 lowercase hex digits): the
        /// digest an observation judged under the same rules records as `policy_digest`.
        digest: String,
        /// When the cluster was seen holding it.
        observed_at: Timestamp,
        /// The writer's request it records, as an observation's
        /// ([`Observation::request`]).
        request: Option<Hash>,
    },
}

/// The object class of a `LocalityPolicy` in [`Body::Policy`] entries and their removals: what
/// tells a report a policy's removal from an object's.
pub const POLICY_CLASS: &str = "localitypolicy";

/// What an entry's `request` holds for the writer's scoped idempotency key `key` (`WRITER
/// ROUTE ID`): the SHA-256 of its UTF-8 bytes. Whoever knows the key can check that an entry
/// records that request; the entry does not hold the key.
pub fn request_hash(key: &str) -> Hash {
    use sha2::Digest as _;
    sha2::Sha256::digest(key.as_bytes()).into()
}

impl Body {
    /// A [`Body::Policy`] whose digest is `sha256:` and 64 lowercase hex digits (the form of
    /// `LocalityPolicy::digest`), as decoding requires: a body made otherwise would seal an
    /// entry that does not verify.
    pub fn policy(
        object: ObjectId,
        digest: String,
        observed_at: Timestamp,
    ) -> Result<Self, EntryError> {
        object.check()?;
        observation::check_digest("digest", &digest)?;
        Ok(Body::Policy {
            object,
            digest,
            observed_at,
            request: None,
        })
    }

    /// The object the body is about: an observation's, a removal's or a policy's (none for a
    /// rotation).
    pub fn object(&self) -> Option<&ObjectId> {
        match self {
            Body::Observation(o) => Some(&o.object),
            Body::Removal { object, .. } | Body::Policy { object, .. } => Some(object),
            Body::KeyRotation { .. } => None,
        }
    }

    /// The writer's request the body records ([`request_hash`] of its scoped idempotency key),
    /// if any (never for a rotation).
    pub fn request(&self) -> Option<&Hash> {
        match self {
            Body::Observation(o) => o.request.as_ref(),
            Body::Removal { request, .. } | Body::Policy { request, .. } => request.as_ref(),
            Body::KeyRotation { .. } => None,
        }
    }

    /// The body recording the writer's request `request` (a rotation records none: it is
    /// returned as it is).
    pub fn with_request(mut self, request: Option<Hash>) -> Self {
        match &mut self {
            Body::Observation(o) => o.request = request,
            Body::Removal { request: r, .. } | Body::Policy { request: r, .. } => *r = request,
            Body::KeyRotation { .. } => {}
        }
        self
    }

    /// Whether `other` reports the same thing: for observations the same object, content and
    /// node or endpoint (a retried report is judged again, at another time, so its evidence
    /// and verdict may differ); for policies the same policy with the same digest (seen again
    /// at another time); for rotations the same key. What an idempotency key must match.
    pub fn same_report(&self, other: &Body) -> bool {
        match (self, other) {
            (
                Body::Policy {
                    object: a,
                    digest: da,
                    ..
                },
                Body::Policy {
                    object: b,
                    digest: db,
                    ..
                },
            ) => a == b && da == db,
            (Body::Observation(a), Body::Observation(b)) => {
                a.object == b.object
                    && a.content == b.content
                    && a.locality.subject == b.locality.subject
                    && a.locality.subject_kind == b.locality.subject_kind
            }
            (a, b) => a == b,
        }
    }
}

/// A body in its canonical encoding ([`Body::encode`]), ready to be sealed. Shared, not
/// copied, when cloned (a submission's text goes to the sequencer while the caller keeps it).
/// An observation judged on a kept evaluation ([`Observation::new_judged`]) is held in three
/// pieces, the middle one shared by every observation judged at that place the same way: the
/// text is written out once, into the entry.
#[derive(Debug, Clone)]
pub struct EncodedBody(Arc<Pieces>);

#[derive(Debug)]
struct Pieces {
    head: String,
    shared: Option<Arc<str>>,
    end: String,
}

impl EncodedBody {
    /// A body's text in one piece.
    pub(crate) fn whole(text: String) -> Self {
        Self(Arc::new(Pieces {
            head: text,
            shared: None,
            end: String::new(),
        }))
    }

    /// A body's text as `head`, then the `shared` text, then `end`.
    pub(crate) fn pieces(head: String, shared: Arc<str>, end: String) -> Self {
        Self(Arc::new(Pieces {
            head,
            shared: Some(shared),
            end,
        }))
    }

    /// The pieces, in order.
    fn parts(&self) -> [&str; 3] {
        let p = &*self.0;
        [&p.head, p.shared.as_deref().unwrap_or(""), &p.end]
    }

    /// Appends the text to `out`.
    pub(crate) fn write(&self, out: &mut String) {
        for part in self.parts() {
            out.push_str(part);
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }

    /// Whether it is empty (never, for a body).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Two encodings are equal when their texts are, however they are cut into pieces.
impl PartialEq for EncodedBody {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .parts()
                .iter()
                .flat_map(|p| p.bytes())
                .eq(other.parts().iter().flat_map(|p| p.bytes()))
    }
}

impl Eq for EncodedBody {}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// When the entry was recorded.
    pub time: Timestamp,
    /// Leaf hash of the previous entry (all zeros for entry 0).
    pub prev: Hash,
    /// What is recorded.
    pub body: Body,
}

/// `prev` of the first entry.
pub const GENESIS_PREV: Hash = [0u8; 32];

/// What the tests of the entry's files share: an entry and the decoding check.
#[cfg(test)]
mod testing {
    use super::*;

    pub(super) fn sample(seq: u64) -> Entry {
        Entry {
            seq,
            time: Timestamp(1_764_300_000_123),
            prev: [7; 32],
            body: fixture::observation(0),
        }
    }

    /// Decoding `text` gives `Ok` with the same canonical bytes, or the error `want_err`
    /// (matched on its message).
    pub(super) fn check(text: &str, want_err: Option<&str>) {
        match (Entry::decode(text.as_bytes()), want_err) {
            (Ok(e), None) => assert_eq!(e.encode(), text),
            (Err(e), Some(w)) => {
                assert!(e.to_string().contains(w), "error {e} should mention {w:?}")
            }
            (got, want) => panic!("decode({text}) = {got:?}, wanted error {want:?}"),
        }
    }
}
