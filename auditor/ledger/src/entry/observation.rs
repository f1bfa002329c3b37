//! The observation model (object, evidence, verdict, policy, databases, locality) and the
//! rules every observation entry satisfies, whatever the policy.

use std::sync::Arc;

use hexagone_platform::vocabulary::{self, Weighed};

use super::decode::parse_hash_bytes;
use super::encode::{
    OBSERVATION_BODY, encode_locality_tail, encode_observation_body, encode_observation_end,
    encode_observation_head,
};
use super::{
    AssessmentKind, COLLECTOR_STORE, Controller, EncodedBody, EntryError, Fact, IMAGE_CLASS,
    ImageRef, MAX_DATABASES, MAX_ENTRY, MAX_EVIDENCE, MAX_REASONS, MAX_TEXT, Source, SubjectKind,
    Timestamp, VerdictKind,
};
use crate::tree::Hash;

/// Where an object lives, as the auditor names it: data store, object class, identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    /// Data store (e.g. `minio/documents`, `postgres/portal`).
    pub store: String,
    /// Object class inside the store (e.g. `document`, `volume`, `backup`).
    pub class: String,
    /// Identifier of the object in its store (opaque, never contents).
    pub id: String,
}

impl ObjectId {
    /// An object identity whose fields are valid texts (1 to 1024 bytes, no control character).
    pub fn new(store: String, class: String, id: String) -> Result<Self, EntryError> {
        let object = Self { store, class, id };
        object.check()?;
        Ok(object)
    }

    pub(super) fn check(&self) -> Result<(), EntryError> {
        check_text("store", &self.store)?;
        check_text("class", &self.class)?;
        check_text("object", &self.id)
    }
}

/// How an evidence item weighed against the policy (the engine's `Assessment`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Assessment {
    /// It places the subject in an allowed country, or its network under an accepted operator.
    Supports,
    /// It places the subject outside the policy; the rule broken (the engine's `Breach`, e.g.
    /// `countryNotAllowed`, `extraEuControl`).
    Contradicts(String),
    /// It says nothing either way.
    Inconclusive,
    /// The rule does not apply (a private address under a policy that accepts them).
    NotApplicable,
}

impl Assessment {
    /// How a weighing of `kind` is recorded: a contradiction names the rule it breaks (an
    /// engine [`Rule`](super::Rule), by name), nothing else names one.
    pub fn new(kind: AssessmentKind, rule: Option<String>) -> Result<Self, EntryError> {
        let bad = |problem: String| EntryError::Field {
            field: "evidence.rule",
            problem,
        };
        Ok(match (kind, rule) {
            (AssessmentKind::Contradicts, Some(r)) => {
                check_text("evidence.rule", &r)?;
                Self::Contradicts(r)
            }
            (AssessmentKind::Contradicts, None) => {
                return Err(bad("a contradiction names its rule".into()));
            }
            (_, Some(_)) => {
                return Err(bad(format!("{:?} evidence breaks no rule", kind.as_str())));
            }
            (AssessmentKind::Supports, None) => Self::Supports,
            (AssessmentKind::Inconclusive, None) => Self::Inconclusive,
            (AssessmentKind::NotApplicable, None) => Self::NotApplicable,
        })
    }

    /// Its name.
    pub fn kind(&self) -> AssessmentKind {
        match self {
            Self::Supports => AssessmentKind::Supports,
            Self::Contradicts(_) => AssessmentKind::Contradicts,
            Self::Inconclusive => AssessmentKind::Inconclusive,
            Self::NotApplicable => AssessmentKind::NotApplicable,
        }
    }

    /// The canonical name.
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The rule broken, for a contradiction.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Self::Contradicts(r) => Some(r),
            _ => None,
        }
    }
}

/// One piece of evidence as the locality engine weighed it: its source and who controls it,
/// the country it names, the AS number, how it weighed, the fact itself and its sentence.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Evidence {
    /// The source.
    pub source: Source,
    /// Who controls it.
    pub controller: Controller,
    /// The country it names, `None` for *unknown*: where it places the subject under the policy
    /// (a label through the region table, a valid attestation, an address's location), or for
    /// a network operator the country its network is registered in.
    pub country: Option<[u8; 2]>,
    /// The AS number, for network-operator evidence.
    pub asn: Option<u32>,
    /// How it weighed against the policy.
    pub assessment: Assessment,
    /// The fact observed.
    pub fact: Fact,
    /// The engine's sentence for it (fact and weight).
    pub sentence: String,
}

/// The outcome of evaluating the evidence against the policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Enough evidence places the subject within the policy and none outside it.
    Compliant,
    /// The policy is broken, with reasons.
    Violation(Vec<String>),
    /// The evidence does not allow a decision, with reasons.
    Unknown(Vec<String>),
}

impl Verdict {
    /// A verdict of `kind` giving `reasons` (none for a compliant verdict).
    pub fn new(kind: VerdictKind, reasons: Vec<String>) -> Self {
        match kind {
            VerdictKind::Compliant => Self::Compliant,
            VerdictKind::Violation => Self::Violation(reasons),
            VerdictKind::Unknown => Self::Unknown(reasons),
        }
    }

    /// Its name.
    pub fn kind(&self) -> VerdictKind {
        match self {
            Self::Compliant => VerdictKind::Compliant,
            Self::Violation(_) => VerdictKind::Violation,
            Self::Unknown(_) => VerdictKind::Unknown,
        }
    }

    /// The canonical name.
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The reasons (empty when compliant).
    pub fn reasons(&self) -> &[String] {
        match self {
            Self::Compliant => &[],
            Self::Violation(r) | Self::Unknown(r) => r,
        }
    }
}

/// The policy an observation was judged under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyRef {
    /// The policy's classification (`Diffusion Restreinte`).
    pub classification: String,
    /// The policy's digest (`sha256:` and 64 hex digits), which identifies its rules.
    pub digest: String,
    /// The digest of the extra-EU control list, when the policy used it.
    pub extra_eu_control: Option<String>,
}

/// A geolocation database file the evidence was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatabaseId {
    /// `location`, `registration` or `AS number`.
    pub role: String,
    /// The file name.
    pub file: String,
    /// Its format (`MaxMind DB GeoLite2-Country`, `range CSV`).
    pub format: String,
    /// The build date a MaxMind DB records.
    pub built: Option<String>,
    /// SHA-256 of the file.
    pub sha256: Hash,
}

/// Where the object was found and what the locality engine made of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Locality {
    /// The node or endpoint holding the object.
    pub subject: String,
    /// Node or endpoint.
    pub subject_kind: SubjectKind,
    /// When the facts were gathered (which decided attestation expiry).
    pub observed_at: Timestamp,
    /// The engine's evidence, in observation order (shared by the observations judged on the
    /// same evaluation).
    pub evidence: Arc<[Evidence]>,
    /// The engine's verdict.
    pub verdict: Verdict,
    /// The policy judged under.
    pub policy: PolicyRef,
    /// The geolocation databases the facts were read from (shared, as the evidence).
    pub databases: Arc<[DatabaseId]>,
}

/// An observation of where one object is stored, and the verdict on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Observation {
    /// Which object.
    pub object: ObjectId,
    /// SHA-256 of the object's content (as reported by its store), never the content itself.
    pub content: Hash,
    /// For an image the collector observed: which image (reference and image ID).
    pub image: Option<ImageRef>,
    /// Where it is and the verdict.
    pub locality: Locality,
    /// The writer's request it records: [`request_hash`](super::request_hash) of the writer's
    /// scoped idempotency key, when the report carried one (never the key itself). Signed with
    /// the entry, so that a duplicate answer can be proven from the ledger.
    pub request: Option<Hash>,
}

impl Observation {
    /// The one validated constructor: every rule an observation entry must satisfy, whatever
    /// the policy (see [`Observation::check`]), and a canonical encoding that fits a bundle line.
    pub fn new(object: ObjectId, content: Hash, locality: Locality) -> Result<Self, EntryError> {
        Self::new_encoded(object, content, None, locality, None).map(|(o, _)| o)
    }

    /// [`Observation::new`], also returning the canonical encoding of the entry body holding
    /// it ([`Body::encode`](super::Body::encode)), which checking its size takes anyway: a
    /// body judged this way is encoded once, by whoever judged it, not again by the sequencer.
    /// `image` is which image, for the collector's image observations; `request` is the hash
    /// of the writer's scoped idempotency key, if the report had one.
    pub fn new_encoded(
        object: ObjectId,
        content: Hash,
        image: Option<ImageRef>,
        locality: Locality,
        request: Option<Hash>,
    ) -> Result<(Self, EncodedBody), EntryError> {
        let o = Self {
            object,
            content,
            image,
            locality,
            request,
        };
        o.check()?;
        let mut out = String::with_capacity(4096);
        encode_observation_body(&mut out, &o);
        check_size(out.len() - OBSERVATION_BODY.len() - 1)?;
        Ok((o, EncodedBody::whole(out)))
    }

    /// The rules of an observation entry: bounded texts without control characters, each
    /// evidence's source, fact and controller consistent with each other, and the verdict
    /// consistent with the evidence as the locality engine decides it (a contradicting evidence
    /// makes a violation whose reasons are exactly those sentences; compliant needs a supporting
    /// location source and no reason; violation and unknown give reasons). Whether the verdict
    /// follows from the facts under the policy is for `verify --policy`, which replays it.
    ///
    /// An `image` is allowed only in an observation of class [`IMAGE_CLASS`] in store
    /// [`COLLECTOR_STORE`] (which no writer may use) about an endpoint (the registry), and its
    /// texts are an image reference and an image ID ([`ImageRef::new`]).
    pub fn check(&self) -> Result<(), EntryError> {
        self.object.check()?;
        self.check_image()?;
        check_locality(&self.locality)
    }

    fn check_image(&self) -> Result<(), EntryError> {
        let Some(image) = &self.image else {
            return Ok(());
        };
        if self.object.class != IMAGE_CLASS
            || self.object.store != COLLECTOR_STORE
            || self.locality.subject_kind != SubjectKind::Endpoint
        {
            return Err(EntryError::Field {
                field: "image",
                problem: format!(
                    "only an observation of class {IMAGE_CLASS:?} in store {COLLECTOR_STORE:?} \
                     about an endpoint names an image"
                ),
            });
        }
        image.check()
    }

    /// An observation of `object` (content `content`) at the place of `judged`, observed at
    /// `observed_at`, naming `image` if it is one, recording the writer's request `request` if
    /// any, and its body's canonical encoding: [`Observation::new_encoded`] for a locality
    /// checked and encoded once ([`Judged`]), whose text the encoding shares rather than writes
    /// again.
    pub fn new_judged(
        object: ObjectId,
        content: Hash,
        image: Option<ImageRef>,
        judged: &Judged,
        observed_at: Timestamp,
        request: Option<Hash>,
    ) -> Result<(Self, EncodedBody), EntryError> {
        object.check()?;
        let mut locality = judged.locality.clone();
        locality.observed_at = observed_at;
        let o = Self {
            object,
            content,
            image,
            locality,
            request,
        };
        o.check_image()?;
        let mut head = String::with_capacity(512);
        encode_observation_head(&mut head, &o);
        let mut end = String::new();
        encode_observation_end(&mut end, &o);
        let own = head.len() + judged.tail.len() + end.len() - OBSERVATION_BODY.len() - 1;
        check_size(own)?;
        let encoded = EncodedBody::pieces(head, judged.tail.clone(), end);
        debug_assert_eq!(encoded, super::Body::Observation(o.clone()).encode());
        Ok((o, encoded))
    }
}

/// An observation's size past its kind: what must leave room in an entry for its head.
fn check_size(own: usize) -> Result<(), EntryError> {
    if own > MAX_ENTRY - 256 {
        return Err(EntryError::Field {
            field: "evidence",
            problem: format!(
                "the observation takes {own} bytes, more than an entry may hold ({MAX_ENTRY})"
            ),
        });
    }
    Ok(())
}

/// A locality checked once against the rules of an observation entry, and its keys from
/// `"evidence"` to `"databases"` encoded once: the judge keeps one per place it evaluated, and
/// every object reported there while the evaluation holds is recorded with it
/// ([`Observation::new_judged`]) without copying, checking or encoding it again.
#[derive(Debug, Clone)]
pub struct Judged {
    locality: Locality,
    tail: Arc<str>,
}

impl Judged {
    /// `locality`, if it satisfies the rules of an observation entry (those of
    /// [`Observation::check`] that are not about the object).
    pub fn new(locality: Locality) -> Result<Self, EntryError> {
        check_locality(&locality)?;
        let mut tail = String::with_capacity(4096);
        encode_locality_tail(&mut tail, &locality);
        // No observation made with it could fit an entry: refused now, as each would be.
        check_size(tail.len())?;
        Ok(Self {
            locality,
            tail: tail.into(),
        })
    }

    /// The locality.
    pub fn locality(&self) -> &Locality {
        &self.locality
    }

    /// About the memory it takes: its encoded text, and as much again for the locality it
    /// encodes (the same texts, held apart).
    pub fn bytes(&self) -> usize {
        2 * self.tail.len() + self.locality.subject.len()
    }
}

/// The rules of [`Observation::check`] about the locality.
fn check_locality(l: &Locality) -> Result<(), EntryError> {
    check_text("subject", &l.subject)?;
    check_text("policy", &l.policy.classification)?;
    check_digest("policy_digest", &l.policy.digest)?;
    if let Some(d) = &l.policy.extra_eu_control {
        check_digest("extra_eu_control", d)?;
    }
    let count = |field: &'static str, n: usize, max: usize| {
        if n > max {
            Err(EntryError::Field {
                field,
                problem: format!("{n} items, at most {max}"),
            })
        } else {
            Ok(())
        }
    };
    count("evidence", l.evidence.len(), MAX_EVIDENCE)?;
    count("reasons", l.verdict.reasons().len(), MAX_REASONS)?;
    count("databases", l.databases.len(), MAX_DATABASES)?;
    for d in l.databases.iter() {
        check_text("databases.role", &d.role)?;
        check_text("databases.file", &d.file)?;
        check_text("databases.format", &d.format)?;
        if let Some(b) = &d.built {
            check_text("databases.built", b)?;
        }
    }
    for r in l.verdict.reasons() {
        check_text("reasons", r)?;
    }
    for (i, e) in l.evidence.iter().enumerate() {
        let bad = |problem: String| EntryError::Field {
            field: "evidence",
            problem: format!("item {i}: {problem}"),
        };
        check_text("evidence.sentence", &e.sentence)?;
        if e.fact.kind().source() != e.source {
            return Err(bad(format!(
                "a {} fact is not {} evidence",
                e.fact.kind().as_str(),
                e.source.as_str()
            )));
        }
        let controller = e.source.controller(l.subject_kind);
        if e.controller != controller {
            return Err(bad(format!(
                "{} evidence about a {} is controlled by {}, not {}",
                e.source.as_str(),
                l.subject_kind.as_str(),
                controller.as_str(),
                e.controller.as_str()
            )));
        }
        if e.asn.is_some() && e.source != Source::NetworkOperator {
            return Err(bad("only network-operator evidence has an AS number".into()));
        }
    }
    check_verdict(&l.evidence, &l.verdict)
}

/// Checks a policy's or list's digest: `sha256:` and 64 lowercase hex digits.
pub(super) fn check_digest(field: &'static str, s: &str) -> Result<(), EntryError> {
    match s.strip_prefix("sha256:") {
        Some(hex) if parse_hash_bytes(hex.as_bytes()).is_some() => Ok(()),
        _ => Err(EntryError::Field {
            field,
            problem: format!("{s:?} is not `sha256:` and 64 lowercase hex digits"),
        }),
    }
}

/// The verdict as the locality engine makes it from weighed evidence, whatever the policy
/// ([`vocabulary::check_verdict`]): any contradicting evidence makes a violation whose reasons
/// are exactly the sentences of the contradicting evidence; a compliant verdict has a location
/// source supporting it and no reason; violation and unknown verdicts give at least one reason.
pub fn check_verdict(evidence: &[Evidence], verdict: &Verdict) -> Result<(), EntryError> {
    let weighed = evidence.iter().map(|e| Weighed {
        source: e.source,
        assessment: e.assessment.kind(),
        sentence: &e.sentence,
    });
    vocabulary::check_verdict(weighed, verdict.kind(), verdict.reasons()).map_err(|m| {
        EntryError::Field {
            field: "verdict",
            problem: m.to_string(),
        }
    })
}

/// Checks a free-text field: non-empty, bounded, no control characters.
pub fn check_text(field: &'static str, s: &str) -> Result<(), EntryError> {
    let problem = if s.is_empty() {
        "must not be empty".to_string()
    } else if s.len() > MAX_TEXT {
        format!("{} bytes, at most {MAX_TEXT}", s.len())
    } else if if s.is_ascii() {
        s.bytes().any(|b| b < 0x20 || b == 0x7f)
    } else {
        s.chars().any(char::is_control)
    } {
        "contains a control character".to_string()
    } else {
        return Ok(());
    };
    Err(EntryError::Field { field, problem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Body, fixture};

    /// The engine's own rules, whatever the policy: evidence that contradicts makes a
    /// violation with exactly those sentences as reasons; a compliant verdict needs a location
    /// source supporting it, and an inconclusive attestation does not prevent it (the engine
    /// always reports the attestation, found or not).
    #[test]
    fn verdicts_must_follow_the_engine_rules() {
        let Body::Observation(compliant) = fixture::observation(0) else {
            unreachable!()
        };
        let Body::Observation(violation) = fixture::observation(3) else {
            unreachable!()
        };
        assert!(compliant.check().is_ok());
        assert!(violation.check().is_ok());
        let with = |o: &Observation, verdict: Verdict| {
            let mut o = o.clone();
            o.locality.verdict = verdict;
            o.check().map_err(|e| e.to_string())
        };
        assert_eq!(
            with(&violation, Verdict::Compliant),
            Err("field `verdict`: compliant although evidence contradicts the policy (address 5.9.3.1 is in DE, outside the allowed countries (FR))".into())
        );
        assert_eq!(
            with(&violation, Verdict::Violation(vec!["something else".into()])),
            Err("field `verdict`: a violation for contradicting evidence gives exactly those evidence sentences as reasons".into())
        );
        let mut no_location = compliant.clone();
        no_location.locality.evidence = no_location
            .locality
            .evidence
            .iter()
            .filter(|e| e.source == Source::NetworkOperator)
            .cloned()
            .collect();
        assert_eq!(
            no_location.check().map_err(|e| e.to_string()),
            Err("field `verdict`: compliant without any location evidence supporting it".into())
        );
    }

    /// An observation made on a kept locality is the observation `new_encoded` makes, byte for
    /// byte, with or without a request; the kept locality is checked once, when kept, with the
    /// same rules (a bad one is refused then, not recorded later); and an observation it makes
    /// is still refused when its object is bad or it would not fit an entry.
    #[test]
    fn an_observation_on_a_kept_locality_is_the_one_made_whole() {
        for body in [
            fixture::observation(0),
            fixture::observation(3),
            fixture::image_observation(2),
        ] {
            let Body::Observation(o) = body else {
                unreachable!()
            };
            let judged = Judged::new(o.locality.clone()).unwrap();
            for request in [None, Some([9; 32])] {
                let at = Timestamp(o.locality.observed_at.0 + 1234);
                let (made, encoded) = Observation::new_judged(
                    o.object.clone(),
                    o.content,
                    o.image.clone(),
                    &judged,
                    at,
                    request,
                )
                .unwrap();
                let mut whole = o.clone();
                whole.locality.observed_at = at;
                whole.request = request;
                let (same, text) = Observation::new_encoded(
                    whole.object.clone(),
                    whole.content,
                    whole.image.clone(),
                    whole.locality.clone(),
                    request,
                )
                .unwrap();
                assert_eq!(made, same);
                assert_eq!(encoded, text);
                assert_eq!(encoded.len(), text.len());
                let (mut a, mut b) = (String::new(), String::new());
                encoded.write(&mut a);
                text.write(&mut b);
                assert_eq!(a, b);
                assert_eq!(a, {
                    let mut c = String::new();
                    Body::Observation(whole).encode_into(&mut c);
                    c
                });
            }
        }
        let Body::Observation(o) = fixture::observation(3) else {
            unreachable!()
        };
        let mut bad = o.locality.clone();
        bad.subject = "gra\n3".into();
        assert_eq!(
            Judged::new(bad).map(|_| ()).map_err(|e| e.to_string()),
            Err("field `subject`: contains a control character".into())
        );
        let mut lying = o.locality.clone();
        lying.verdict = Verdict::Compliant;
        assert!(Judged::new(lying).is_err());
        let judged = Judged::new(o.locality.clone()).unwrap();
        let mut object = o.object.clone();
        object.id = String::new();
        assert!(
            Observation::new_judged(
                object,
                o.content,
                None,
                &judged,
                o.locality.observed_at,
                None
            )
            .is_err()
        );
        // Sixteen database identities of 4 KB each: the locality's texts are valid, but no
        // observation made with it fits an entry: refused when kept, as when made whole.
        let mut long = o.locality.clone();
        let text = "d".repeat(MAX_TEXT);
        long.databases = (0..MAX_DATABASES)
            .map(|_| DatabaseId {
                role: text.clone(),
                file: text.clone(),
                format: text.clone(),
                built: Some(text.clone()),
                sha256: [1; 32],
            })
            .collect();
        let kept = Judged::new(long.clone())
            .map(|_| ())
            .map_err(|e| e.to_string());
        let whole = Observation::new_encoded(o.object.clone(), o.content, None, long, None)
            .map(|_| ())
            .map_err(|e| e.to_string());
        for refused in [&kept, &whole] {
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.contains("more than an entry may hold")),
                "{refused:?}"
            );
        }
    }

    /// An image is named only where the collector observed an image at a registry, and only in
    /// the characters of an image reference: no writer's object, node or free text carries
    /// one, made on a kept locality or whole.
    #[test]
    fn only_the_collector_s_image_observations_name_an_image() {
        let Body::Observation(image) = fixture::image_observation(1) else {
            unreachable!()
        };
        let named = image.image.clone().unwrap();
        let judged = Judged::new(image.locality.clone()).unwrap();
        let at = image.locality.observed_at;
        let refused = |object: ObjectId, locality: &Judged, i: Option<ImageRef>| {
            Observation::new_judged(object, image.content, i, locality, at, None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            refused(image.object.clone(), &judged, Some(named.clone())),
            Ok(())
        );
        let only = Err(
            "field `image`: only an observation of class \"image\" in store \"kubernetes\" \
             about an endpoint names an image"
                .to_string(),
        );
        for (store, class) in [("minio/documents", "image"), ("kubernetes", "volume")] {
            let object =
                ObjectId::new(store.into(), class.into(), image.object.id.clone()).unwrap();
            assert_eq!(refused(object.clone(), &judged, Some(named.clone())), only);
            assert_eq!(refused(object, &judged, None), Ok(()));
        }
        let Body::Observation(on_node) = fixture::observation(0) else {
            unreachable!()
        };
        let node = Judged::new(on_node.locality.clone()).unwrap();
        assert_eq!(
            refused(image.object.clone(), &node, Some(named.clone())),
            only
        );
        let mut whole = image.clone();
        whole.locality = on_node.locality.clone();
        assert!(whole.check().is_err());
        // The grammar itself is `image.rs`'s to test: here, that a constructor applies it.
        assert_eq!(
            ImageRef::new("exo 7.1".into(), None).map_err(|e| e.to_string()),
            Err(
                "field `image.reference`: \"exo 7.1\" is not an image reference: a path \
                 component \"exo 7.1\" outside lowercase letters and digits joined by . _ __ or -"
                    .into()
            )
        );
        assert!(
            ImageRef::new(named.reference.clone(), Some("sha256:0123".into()))
                .unwrap_err()
                .to_string()
                .starts_with("field `image.image_id`: ")
        );
    }
}
