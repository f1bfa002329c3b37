//! The ledger entry and its one canonical encoding: a single line of JSON with a fixed key
//! order and no whitespace. The leaf hash of an entry is the RFC 6962 leaf hash of exactly
//! these bytes; nothing else in the crate encodes or decodes entries.
//!
//! An observation entry records what the locality engine (`hexagone_platform`) made of where
//! an object is stored: the engine's evidence (each fact as the engine records it, who
//! controls its source, how it weighed, its sentence), its verdict and reasons, the policy's
//! digest and the geolocation databases' identities, so that `verify --policy` can replay it.
//! Entries hold identifiers and hashes only, never contents or personal data.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use std::str::FromStr;

use hexagone_platform::vocabulary::{self, UnknownName, Weighed};
use serde::Deserialize;

use super::tree::{Hash, leaf_hash};

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

/// Milliseconds since the Unix epoch (UTC), encoded as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time, truncated to milliseconds.
    pub fn now() -> Self {
        Self::from_datetime(time::OffsetDateTime::now_utc())
    }

    /// The instant `t`, truncated to milliseconds (toward the epoch): the one conversion from
    /// the `time` crate.
    pub fn from_datetime(t: time::OffsetDateTime) -> Self {
        Self((t.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// This instant in UTC, or `None` outside what the `time` crate represents: the one
    /// conversion to the `time` crate.
    pub fn to_datetime(self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).ok()
    }

    fn write(self, out: &mut String) {
        // Times the sequencer stamps and `parse` accepts are within years 0000..9999; one
        // outside (only a hand-made value can be) is written as its raw number, which no
        // reader accepts as a time.
        let Some(t) = self.to_datetime() else {
            out.push_str(&self.0.to_string());
            return;
        };
        if !(0..=9999).contains(&t.year()) {
            out.push_str(&self.0.to_string());
            return;
        }
        push_digits(out, t.year() as u64, 4);
        out.push('-');
        push_digits(out, u64::from(u8::from(t.month())), 2);
        out.push('-');
        push_digits(out, u64::from(t.day()), 2);
        out.push('T');
        push_digits(out, u64::from(t.hour()), 2);
        out.push(':');
        push_digits(out, u64::from(t.minute()), 2);
        out.push(':');
        push_digits(out, u64::from(t.second()), 2);
        out.push('.');
        push_digits(out, u64::from(t.millisecond()), 3);
        out.push('Z');
    }

    /// Parses the canonical form `YYYY-MM-DDTHH:MM:SS.mmmZ` (years 0000..9999).
    pub fn parse(s: &str) -> Result<Self, EntryError> {
        let bad = |why: &str| EntryError::Field {
            field: "time",
            problem: format!("{s:?}: {why} (expected YYYY-MM-DDTHH:MM:SS.mmmZ)"),
        };
        let b = s.as_bytes();
        if b.len() != 24 {
            return Err(bad("wrong length"));
        }
        let shape_ok = b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
        if !shape_ok {
            return Err(bad("malformed"));
        }
        let num = |r: std::ops::Range<usize>| -> i64 {
            b[r].iter().fold(0i64, |a, c| a * 10 + i64::from(c - b'0'))
        };
        let month = u8::try_from(num(5..7))
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .ok_or_else(|| bad("bad month"))?;
        let date = time::Date::from_calendar_date(num(0..4) as i32, month, num(8..10) as u8)
            .map_err(|_| bad("bad date"))?;
        let (h, mi, sec, ms) = (num(11..13), num(14..16), num(17..19), num(20..23));
        let of_day = time::Time::from_hms_milli(h as u8, mi as u8, sec as u8, ms as u16)
            .map_err(|_| bad("bad time of day"))?;
        Ok(Self::from_datetime(
            time::PrimitiveDateTime::new(date, of_day).assume_utc(),
        ))
    }
}

impl std::fmt::Display for Timestamp {
    /// The canonical form `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::with_capacity(24);
        self.write(&mut s);
        f.write_str(&s)
    }
}

/// Writes `v` in decimal, zero-padded to `width`.
fn push_digits(out: &mut String, v: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while buf.len() - i < width {
        i -= 1;
        buf[i] = b'0';
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

/// Where an object lives, as the auditor names it: data store, object class, identifier.
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

    fn check(&self) -> Result<(), EntryError> {
        check_text("store", &self.store)?;
        check_text("class", &self.class)?;
        check_text("object", &self.id)
    }
}

/// Parses a name of the locality vocabulary found in `field`.
fn name<T: FromStr<Err = UnknownName>>(field: &'static str, s: &str) -> Result<T, EntryError> {
    s.parse().map_err(|e: UnknownName| EntryError::Field {
        field,
        problem: e.to_string(),
    })
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
    /// engine [`Rule`], by name), nothing else names one.
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

    fn parse(kind: &str, rule: Option<String>) -> Result<Self, EntryError> {
        match kind.parse::<AssessmentKind>() {
            Ok(kind) => Self::new(kind, rule),
            Err(_) if rule.is_some() => Err(EntryError::Field {
                field: "evidence.rule",
                problem: format!("{kind:?} evidence breaks no rule"),
            }),
            Err(e) => Err(EntryError::Field {
                field: "evidence.assessment",
                problem: e.to_string(),
            }),
        }
    }
}

/// What a source observed, exactly as the locality engine records it (an observation of
/// `hexagone_platform`: a JSON object whose `kind` names it), held in canonical JSON: keys
/// sorted by bytes, no whitespace, integers only, strings escaping only `"` and `\`.
/// Replaying an entry judges these facts again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fact {
    kind: FactKind,
    canonical: String,
}

impl Fact {
    /// Checks a JSON object and puts it in canonical form.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, EntryError> {
        let bad = |problem: String| EntryError::Field {
            field: "evidence.fact",
            problem,
        };
        let kind = value
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("not an object with a `kind`".into()))?;
        let kind: FactKind = name("evidence.fact", kind)?;
        let mut canonical = String::with_capacity(128);
        write_canonical(&mut canonical, value, 0).map_err(bad)?;
        if canonical.len() > MAX_FACT {
            return Err(bad(format!(
                "{} bytes in canonical form, at most {MAX_FACT}",
                canonical.len()
            )));
        }
        Ok(Self { kind, canonical })
    }

    /// Which kind of fact this is.
    pub fn kind(&self) -> FactKind {
        self.kind
    }

    /// The canonical JSON text.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The fact as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.canonical).expect("a canonical fact is JSON")
    }
}

/// Writes `v` in canonical JSON; `Err` says why it has none (a fractional number, a control
/// character, nesting deeper than 8).
fn write_canonical(out: &mut String, v: &serde_json::Value, depth: u8) -> Result<(), String> {
    use serde_json::Value;
    if depth > 8 {
        return Err("nested more than 8 levels deep".into());
    }
    let text = |s: &str| {
        if s.len() > MAX_TEXT {
            Err(format!("a string of {} bytes, at most {MAX_TEXT}", s.len()))
        } else if s.chars().any(char::is_control) {
            Err(format!("{s:?} contains a control character"))
        } else {
            Ok(())
        }
    };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => push_digits(out, u, 1),
            (None, Some(i)) => {
                let _ = write!(out, "{i}");
            }
            _ => return Err(format!("{n} is not an integer")),
        },
        Value::String(s) => {
            text(s)?;
            push_str(out, s);
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                text(k)?;
                push_str(out, k);
                out.push(':');
                write_canonical(out, &map[k], depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
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
    /// The engine's evidence, in observation order.
    pub evidence: Vec<Evidence>,
    /// The engine's verdict.
    pub verdict: Verdict,
    /// The policy judged under.
    pub policy: PolicyRef,
    /// The geolocation databases the facts were read from.
    pub databases: Vec<DatabaseId>,
}

/// An observation of where one object is stored, and the verdict on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Observation {
    /// Which object.
    pub object: ObjectId,
    /// SHA-256 of the object's content (as reported by its store), never the content itself.
    pub content: Hash,
    /// Where it is and the verdict.
    pub locality: Locality,
}

impl Observation {
    /// The one validated constructor: every rule an observation entry must satisfy, whatever
    /// the policy (see [`Observation::check`]), and a canonical encoding that fits a bundle line.
    pub fn new(object: ObjectId, content: Hash, locality: Locality) -> Result<Self, EntryError> {
        Self::new_encoded(object, content, locality).map(|(o, _)| o)
    }

    /// [`Observation::new`], also returning the canonical encoding of the entry body holding
    /// it ([`Body::encode`]), which checking its size takes anyway: a body judged this way is
    /// encoded once, by whoever judged it, not again by the sequencer.
    pub fn new_encoded(
        object: ObjectId,
        content: Hash,
        locality: Locality,
    ) -> Result<(Self, EncodedBody), EntryError> {
        let o = Self {
            object,
            content,
            locality,
        };
        o.check()?;
        let mut out = String::with_capacity(4096);
        encode_observation_body(&mut out, &o);
        let own = out.len() - OBSERVATION_BODY.len() - 1;
        if own > MAX_ENTRY - 256 {
            return Err(EntryError::Field {
                field: "evidence",
                problem: format!(
                    "the observation takes {own} bytes, more than an entry may hold ({MAX_ENTRY})"
                ),
            });
        }
        Ok((o, EncodedBody(Arc::new(out))))
    }

    /// The rules of an observation entry: bounded texts without control characters, each
    /// evidence's source, fact and controller consistent with each other, and the verdict
    /// consistent with the evidence as the locality engine decides it (a contradicting evidence
    /// makes a violation whose reasons are exactly those sentences; compliant needs a supporting
    /// location source and no reason; violation and unknown give reasons). Whether the verdict
    /// follows from the facts under the policy is for `verify --policy`, which replays it.
    pub fn check(&self) -> Result<(), EntryError> {
        let l = &self.locality;
        self.object.check()?;
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
        for d in &l.databases {
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
}

fn check_digest(field: &'static str, s: &str) -> Result<(), EntryError> {
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
}

impl Body {
    /// The canonical encoding of this body: the part of an entry's encoding after its `prev`
    /// (see [`Entry::encode_with`]). Bodies are encoded apart, on several threads, while one
    /// sequencer chains them.
    pub fn encode(&self) -> EncodedBody {
        // Observations are about 2 to 3 KB: one allocation, no regrowth.
        let mut out = String::with_capacity(4096);
        self.encode_into(&mut out);
        EncodedBody(Arc::new(out))
    }

    fn encode_into(&self, out: &mut String) {
        match self {
            Body::Observation(o) => encode_observation_body(out, o),
            Body::KeyRotation { new_key } => {
                out.push_str("\",\"kind\":\"key-rotation\",\"new_key\":");
                push_str(out, new_key);
                out.push('}');
            }
        }
    }

    /// Whether `other` reports the same thing: for observations the same object, content and
    /// node or endpoint (a retried report is judged again, at another time, so its evidence
    /// and verdict may differ); for rotations the same key. What an idempotency key must match.
    pub fn same_report(&self, other: &Body) -> bool {
        match (self, other) {
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBody(Arc<String>);

impl EncodedBody {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, for a body).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Entries encoded whole ahead of sealing, one after another in one text, each followed by a
/// newline (the layout entries are stored in), their `prev` left as zeros for the sequencer to
/// fill in order ([`crate::Sequencer::seal_prepared`]). Encoding, the costly part, can
/// thus run on another thread than sealing, and an entry's text is written once.
#[derive(Debug, Clone)]
pub struct Prepared {
    first: u64,
    time: Timestamp,
    text: String,
    /// Per entry: where its text starts, where its `prev` starts, where it ends (before its
    /// newline).
    spans: Vec<(usize, usize, usize)>,
}

impl Prepared {
    /// Entries from sequence number `first`, all stamped `time`, for about `n` bodies.
    pub fn new(first: u64, time: Timestamp, n: usize) -> Self {
        Self {
            first,
            time,
            // Observations are about 2 to 3 KB.
            text: String::with_capacity(n * 2560),
            spans: Vec::with_capacity(n),
        }
    }

    /// Encodes the next entry, about `body`.
    pub fn push(&mut self, body: &Body) {
        self.push_with(|text| body.encode_into(text));
    }

    /// Encodes the next entry, about the body encoded as `body` ([`Body::encode`]).
    pub fn push_encoded(&mut self, body: &EncodedBody) {
        self.push_with(|text| text.push_str(&body.0));
    }

    /// The next entry's head (its `prev` blank), then its body as `body` writes it.
    fn push_with(&mut self, body: impl FnOnce(&mut String)) {
        let start = self.text.len();
        let seq = self.first + self.spans.len() as u64;
        Entry::encode_head(seq, self.time, &[0; 32], &mut self.text);
        let prev_at = self.text.len() - 64;
        body(&mut self.text);
        self.spans.push((start, prev_at, self.text.len()));
        self.text.push('\n');
    }

    /// Sequence number of the first entry.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The time every entry is stamped with.
    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Every entry's text followed by a newline (canonical once sealed).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Writes `prev` into entry `i` and returns its text.
    pub(crate) fn chain(&mut self, i: usize, prev: &Hash) -> &[u8] {
        let (start, prev_at, end) = self.spans[i];
        let mut hex = [0u8; 64];
        hex::encode_to_slice(prev, &mut hex).expect("64 hex digits");
        let hex = std::str::from_utf8(&hex).expect("hex digits are ASCII");
        self.text.replace_range(prev_at..prev_at + 64, hex);
        &self.text.as_bytes()[start..end]
    }
}

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

fn push_opt_country(out: &mut String, c: Option<[u8; 2]>) {
    match c {
        Some([a, b]) => {
            out.push('"');
            out.push(a as char);
            out.push(b as char);
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

fn push_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

/// What an observation body's encoding starts with, after the entry's `prev`.
const OBSERVATION_BODY: &str = "\",\"kind\":\"observation\"";

/// The canonical encoding of `Body::Observation(o)`.
fn encode_observation_body(out: &mut String, o: &Observation) {
    out.push_str(OBSERVATION_BODY);
    encode_observation(out, o);
    out.push('}');
}

/// The observation keys, from `"store"` to the end (without the closing brace).
fn encode_observation(out: &mut String, o: &Observation) {
    let l = &o.locality;
    out.push_str(",\"store\":");
    push_str(out, &o.object.store);
    out.push_str(",\"class\":");
    push_str(out, &o.object.class);
    out.push_str(",\"object\":");
    push_str(out, &o.object.id);
    out.push_str(",\"content\":\"");
    push_hex(out, &o.content);
    out.push_str("\",\"subject\":");
    push_str(out, &l.subject);
    out.push_str(",\"subject_kind\":\"");
    out.push_str(l.subject_kind.as_str());
    out.push_str("\",\"observed_at\":\"");
    l.observed_at.write(out);
    out.push_str("\",\"evidence\":[");
    for (i, e) in l.evidence.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"source\":\"");
        out.push_str(e.source.as_str());
        out.push_str("\",\"controller\":\"");
        out.push_str(e.controller.as_str());
        out.push_str("\",\"country\":");
        push_opt_country(out, e.country);
        out.push_str(",\"asn\":");
        match e.asn {
            Some(n) => push_digits(out, u64::from(n), 1),
            None => out.push_str("null"),
        }
        out.push_str(",\"assessment\":\"");
        out.push_str(e.assessment.as_str());
        out.push_str("\",\"rule\":");
        push_opt_str(out, e.assessment.rule());
        out.push_str(",\"fact\":");
        out.push_str(e.fact.as_str());
        out.push_str(",\"sentence\":");
        push_str(out, &e.sentence);
        out.push('}');
    }
    out.push_str("],\"verdict\":\"");
    out.push_str(l.verdict.as_str());
    out.push_str("\",\"reasons\":[");
    for (i, r) in l.verdict.reasons().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, r);
    }
    out.push_str("],\"policy\":");
    push_str(out, &l.policy.classification);
    out.push_str(",\"policy_digest\":");
    push_str(out, &l.policy.digest);
    out.push_str(",\"extra_eu_control\":");
    push_opt_str(out, l.policy.extra_eu_control.as_deref());
    out.push_str(",\"databases\":[");
    for (i, d) in l.databases.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"role\":");
        push_str(out, &d.role);
        out.push_str(",\"file\":");
        push_str(out, &d.file);
        out.push_str(",\"format\":");
        push_str(out, &d.format);
        out.push_str(",\"built\":");
        push_opt_str(out, d.built.as_deref());
        out.push_str(",\"sha256\":\"");
        push_hex(out, &d.sha256);
        out.push_str("\"}");
    }
    out.push(']');
}

impl Entry {
    /// The canonical encoding (one JSON line, without newline).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(2048);
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut String) {
        Self::encode_head(self.seq, self.time, &self.prev, out);
        self.body.encode_into(out);
    }

    /// Appends the canonical encoding of the entry made of `seq`, `time`, `prev` and a body
    /// encoded already ([`Body::encode`]) to `out`.
    pub fn encode_with(
        seq: u64,
        time: Timestamp,
        prev: &Hash,
        body: &EncodedBody,
        out: &mut String,
    ) {
        Self::encode_head(seq, time, prev, out);
        out.push_str(&body.0);
    }

    fn encode_head(seq: u64, time: Timestamp, prev: &Hash, out: &mut String) {
        let _ = write!(out, "{{\"v\":{ENTRY_VERSION},\"seq\":{seq},\"time\":\"");
        time.write(out);
        out.push_str("\",\"prev\":\"");
        push_hex(out, prev);
    }

    /// RFC 6962 leaf hash of the canonical encoding.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(self.encode().as_bytes())
    }

    /// Parses canonical bytes, rejecting anything that is not exactly the canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        let mut scratch = String::new();
        Self::decode_with(bytes, &mut scratch)
    }

    /// [`Entry::decode`] with a caller-owned buffer for the canonicality check (hot loops):
    /// parses the JSON, checks every rule, and insists on the canonical bytes.
    pub fn decode_with(bytes: &[u8], scratch: &mut String) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY {
            return Err(EntryError::Syntax(format!(
                "{} bytes, at most {MAX_ENTRY}",
                bytes.len()
            )));
        }
        let raw: RawEntry<'_> =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Syntax(e.to_string()))?;
        let entry = raw.into_entry()?;
        scratch.clear();
        entry.encode_into(scratch);
        if scratch.as_bytes() != bytes {
            return Err(EntryError::NotCanonical {
                expected: scratch.clone(),
            });
        }
        Ok(entry)
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    // Through a stack buffer: no allocation per digest, in the hot path of entry encoding.
    for part in bytes.chunks(32) {
        let mut buf = [0u8; 64];
        let hex = &mut buf[..2 * part.len()];
        hex::encode_to_slice(part, hex).expect("the buffer holds two digits per byte");
        out.push_str(std::str::from_utf8(hex).expect("hex digits are ASCII"));
    }
}

/// Writes a JSON string; only `"` and `\` are escaped because control characters are refused.
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    // A byte scan: both characters are ASCII, so every match is at a character boundary.
    while let Some(i) = memchr::memchr2(b'"', b'\\', rest.as_bytes()) {
        out.push_str(&rest[..i]);
        out.push('\\');
        out.push_str(&rest[i..=i]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
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

/// Parses a 64-digit lowercase hex SHA-256.
pub fn parse_hash(field: &'static str, s: &str) -> Result<Hash, EntryError> {
    let bad = || EntryError::Field {
        field,
        problem: format!("{s:?} is not 64 lowercase hex digits"),
    };
    parse_hash_bytes(s.as_bytes()).ok_or_else(bad)
}

/// Lowercase hex digit values; 0xff marks every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

fn parse_hash_bytes(b: &[u8]) -> Option<Hash> {
    let b: &[u8; 64] = b.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (i, o) in out.iter_mut().enumerate() {
        let (hi, lo) = (
            HEX_VALUE[b[2 * i] as usize],
            HEX_VALUE[b[2 * i + 1] as usize],
        );
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    // Valid digits are below 16, so any 0xff leaves high bits set.
    (bad & 0xf0 == 0).then_some(out)
}

/// Parses an ISO 3166-1 alpha-2 code (two uppercase ASCII letters).
pub fn parse_country(s: &str) -> Result<[u8; 2], EntryError> {
    match s.as_bytes() {
        [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok([*a, *b]),
        _ => Err(EntryError::Field {
            field: "evidence.country",
            problem: format!("{s:?} is not an ISO 3166-1 alpha-2 code (two uppercase letters)"),
        }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvidence<'a> {
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    controller: Cow<'a, str>,
    #[serde(borrow)]
    country: Option<Cow<'a, str>>,
    asn: Option<u32>,
    #[serde(borrow)]
    assessment: Cow<'a, str>,
    #[serde(borrow)]
    rule: Option<Cow<'a, str>>,
    fact: serde_json::Value,
    #[serde(borrow)]
    sentence: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    file: Cow<'a, str>,
    #[serde(borrow)]
    format: Cow<'a, str>,
    #[serde(borrow)]
    built: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sha256: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry<'a> {
    v: u8,
    seq: u64,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    store: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    class: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subject_kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    observed_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    evidence: Option<Vec<RawEvidence<'a>>>,
    #[serde(borrow, default)]
    verdict: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasons: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    policy: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    policy_digest: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    extra_eu_control: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    databases: Option<Vec<RawDatabase<'a>>>,
    #[serde(borrow, default)]
    new_key: Option<Cow<'a, str>>,
}

fn required<T>(field: &'static str, v: Option<T>) -> Result<T, EntryError> {
    v.ok_or(EntryError::Field {
        field,
        problem: "missing".into(),
    })
}

fn text(field: &'static str, v: Option<Cow<'_, str>>) -> Result<String, EntryError> {
    let s = required(field, v)?;
    check_text(field, &s)?;
    Ok(s.into_owned())
}

impl RawEvidence<'_> {
    fn into_evidence(self) -> Result<Evidence, EntryError> {
        Ok(Evidence {
            source: name("evidence.source", &self.source)?,
            controller: name("evidence.controller", &self.controller)?,
            country: self.country.as_deref().map(parse_country).transpose()?,
            asn: self.asn,
            assessment: Assessment::parse(&self.assessment, self.rule.map(Cow::into_owned))?,
            fact: Fact::from_value(&self.fact)?,
            sentence: self.sentence.into_owned(),
        })
    }
}

impl RawEntry<'_> {
    fn into_entry(self) -> Result<Entry, EntryError> {
        if self.v != ENTRY_VERSION {
            return Err(EntryError::Field {
                field: "v",
                problem: format!(
                    "version {} is not supported (expected {ENTRY_VERSION})",
                    self.v
                ),
            });
        }
        let time = Timestamp::parse(&self.time)?;
        let prev = parse_hash("prev", &self.prev)?;
        let body = match &*self.kind {
            "observation" => {
                if self.new_key.is_some() {
                    return Err(EntryError::Field {
                        field: "new_key",
                        problem: "not allowed in an observation".into(),
                    });
                }
                let object = ObjectId {
                    store: text("store", self.store)?,
                    class: text("class", self.class)?,
                    id: text("object", self.object)?,
                };
                let content = parse_hash("content", &required("content", self.content)?)?;
                let raw_evidence = required("evidence", self.evidence)?;
                if raw_evidence.len() > MAX_EVIDENCE {
                    return Err(EntryError::Field {
                        field: "evidence",
                        problem: format!("{} items, at most {MAX_EVIDENCE}", raw_evidence.len()),
                    });
                }
                let evidence = raw_evidence
                    .into_iter()
                    .map(RawEvidence::into_evidence)
                    .collect::<Result<Vec<_>, _>>()?;
                let reasons = required("reasons", self.reasons)?;
                if reasons.len() > MAX_REASONS {
                    return Err(EntryError::Field {
                        field: "reasons",
                        problem: format!("{} items, at most {MAX_REASONS}", reasons.len()),
                    });
                }
                let reasons: Vec<String> = reasons.into_iter().map(Cow::into_owned).collect();
                let verdict_name = required("verdict", self.verdict)?;
                if verdict_name == "compliant" && !reasons.is_empty() {
                    return Err(EntryError::Field {
                        field: "reasons",
                        problem: "a compliant verdict carries no reasons".into(),
                    });
                }
                let databases = required("databases", self.databases)?
                    .into_iter()
                    .map(|d| {
                        Ok(DatabaseId {
                            role: d.role.into_owned(),
                            file: d.file.into_owned(),
                            format: d.format.into_owned(),
                            built: d.built.map(Cow::into_owned),
                            sha256: parse_hash("databases.sha256", &d.sha256)?,
                        })
                    })
                    .collect::<Result<Vec<_>, EntryError>>()?;
                let observation = Observation {
                    object,
                    content,
                    locality: Locality {
                        subject: text("subject", self.subject)?,
                        subject_kind: name(
                            "subject_kind",
                            &required("subject_kind", self.subject_kind)?,
                        )?,
                        observed_at: Timestamp::parse(&required("observed_at", self.observed_at)?)
                            .map_err(|_| EntryError::Field {
                                field: "observed_at",
                                problem: "not YYYY-MM-DDTHH:MM:SS.mmmZ".into(),
                            })?,
                        evidence,
                        verdict: make_verdict(&verdict_name, reasons)?,
                        policy: PolicyRef {
                            classification: text("policy", self.policy)?,
                            digest: required("policy_digest", self.policy_digest)?.into_owned(),
                            extra_eu_control: self.extra_eu_control.map(Cow::into_owned),
                        },
                        databases,
                    },
                };
                observation.check()?;
                Body::Observation(observation)
            }
            "key-rotation" => {
                let new_key = text("new_key", self.new_key)?;
                Body::KeyRotation { new_key }
            }
            other => {
                return Err(EntryError::Field {
                    field: "kind",
                    problem: format!("{other:?} is not one of observation, key-rotation"),
                });
            }
        };
        Ok(Entry {
            seq: self.seq,
            time,
            prev,
            body,
        })
    }
}

/// Builds a verdict from its name and reasons.
pub fn make_verdict(kind: &str, reasons: Vec<String>) -> Result<Verdict, EntryError> {
    Ok(Verdict::new(name("verdict", kind)?, reasons))
}

/// Observations for tests and benchmarks: consistent entries made without the locality engine
/// (their facts are the engine's shape, their policy digest names no real policy).
#[doc(hidden)]
pub mod fixture {
    use super::*;

    /// A policy digest no policy has.
    pub const POLICY_DIGEST: &str =
        "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn evidence(
        source: Source,
        controller: Controller,
        country: Option<&[u8; 2]>,
        asn: Option<u32>,
        assessment: Assessment,
        fact: serde_json::Value,
        sentence: String,
    ) -> Evidence {
        Evidence {
            source,
            controller,
            country: country.copied(),
            asn,
            assessment,
            fact: Fact::from_value(&fact).expect("a valid fact"),
            sentence,
        }
    }

    /// A plausible observation of object `i` on node `node-{i % 13}`: compliant, except every
    /// 7th from 3 (its address is in DE: a violation) and every 7th from 5 (no address: unknown).
    pub fn observation(i: u64) -> Body {
        let node = format!("node-{}", i % 13);
        let mut ev = vec![
            evidence(
                Source::TopologyLabel,
                Controller::Node,
                Some(b"FR"),
                None,
                Assessment::Supports,
                serde_json::json!({"kind": "topologyLabel", "key": "topology.kubernetes.io/region", "value": "fr-par"}),
                "topology label topology.kubernetes.io/region=fr-par (set by the node) is in FR by the policy's region table, an allowed country".into(),
            ),
            evidence(
                Source::Attestation,
                Controller::SecurityOfficer,
                None,
                None,
                Assessment::Inconclusive,
                serde_json::json!({"kind": "attestation", "label": null, "status": {"state": "missing"}}),
                "no NodeAttestation names the node, which proves nothing".into(),
            ),
        ];
        let verdict = match i % 7 {
            3 => {
                let sentence = format!(
                    "address 5.9.{}.1 is in DE, outside the allowed countries (FR)",
                    i % 200
                );
                ev.push(evidence(
                    Source::Address,
                    Controller::Node,
                    Some(b"DE"),
                    None,
                    Assessment::Contradicts("countryNotAllowed".into()),
                    serde_json::json!({"kind": "address", "address": format!("5.9.{}.1", i % 200), "country": "DE"}),
                    sentence.clone(),
                ));
                Verdict::Violation(vec![sentence])
            }
            5 => Verdict::Unknown(vec![
                "no network operator of the node's addresses is established as accepted".into(),
            ]),
            _ => {
                let address = format!("51.15.{}.1", i % 200);
                ev.push(evidence(
                    Source::Address,
                    Controller::Node,
                    Some(b"FR"),
                    None,
                    Assessment::Supports,
                    serde_json::json!({"kind": "address", "address": address, "country": "FR"}),
                    format!("address {address} is in FR, an allowed country"),
                ));
                ev.push(evidence(
                    Source::NetworkOperator,
                    Controller::Node,
                    Some(b"FR"),
                    Some(12876),
                    Assessment::Supports,
                    serde_json::json!({"kind": "networkOperator", "address": address, "asn": 12876, "organisation": "Scaleway SAS", "registered": "FR"}),
                    format!("network AS12876 (Scaleway SAS) of address {address} is registered in FR, an accepted network operator"),
                ));
                Verdict::Compliant
            }
        };
        let observation = Observation::new(
            ObjectId {
                store: "minio/documents".into(),
                class: "document".into(),
                id: format!("spaces/{}/doc-{i}", i % 97),
            },
            leaf_hash(&i.to_be_bytes()),
            Locality {
                subject: node,
                subject_kind: SubjectKind::Node,
                observed_at: Timestamp(1_764_300_000_000),
                evidence: ev,
                verdict,
                policy: PolicyRef {
                    classification: "Standard (France)".into(),
                    digest: POLICY_DIGEST.into(),
                    extra_eu_control: None,
                },
                databases: vec![DatabaseId {
                    role: "location".into(),
                    file: "geo-whois-asn-country.mmdb".into(),
                    format: "MaxMind DB geo-whois-asn-country".into(),
                    built: Some("2026-11-01T00:00:00Z".into()),
                    sha256: [0x11; 32],
                }],
            },
        )
        .expect("a valid fixture");
        Body::Observation(observation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> Entry {
        Entry {
            seq,
            time: Timestamp(1_764_300_000_123),
            prev: [7; 32],
            body: fixture::observation(0),
        }
    }

    /// Decoding `text` gives `Ok` with the same canonical bytes, or the error `want_err`
    /// (matched on its message).
    fn check(text: &str, want_err: Option<&str>) {
        match (Entry::decode(text.as_bytes()), want_err) {
            (Ok(e), None) => assert_eq!(e.encode(), text),
            (Err(e), Some(w)) => {
                assert!(e.to_string().contains(w), "error {e} should mention {w:?}")
            }
            (got, want) => panic!("decode({text}) = {got:?}, wanted error {want:?}"),
        }
    }

    #[test]
    fn canonical_encoding_is_stable() {
        let e = sample(5);
        let text = e.encode();
        assert_eq!(
            text,
            concat!(
                r#"{"v":2,"seq":5,"time":"2025-11-28T03:20:00.123Z","prev":"0707070707070707070707070707070707070707070707070707070707070707","#,
                r#""kind":"observation","store":"minio/documents","class":"document","object":"spaces/0/doc-0","#,
                r#""content":"3e7077fd2f66d689e0cee6a7cf5b37bf2dca7c979af356d0a31cbc5c85605c7d","#,
                r#""subject":"node-0","subject_kind":"node","observed_at":"2025-11-28T03:20:00.000Z","evidence":["#,
                r#"{"source":"topologyLabel","controller":"node","country":"FR","asn":null,"assessment":"supports","rule":null,"fact":{"key":"topology.kubernetes.io/region","kind":"topologyLabel","value":"fr-par"},"sentence":"topology label topology.kubernetes.io/region=fr-par (set by the node) is in FR by the policy's region table, an allowed country"},"#,
                r#"{"source":"attestation","controller":"securityOfficer","country":null,"asn":null,"assessment":"inconclusive","rule":null,"fact":{"kind":"attestation","label":null,"status":{"state":"missing"}},"sentence":"no NodeAttestation names the node, which proves nothing"},"#,
                r#"{"source":"address","controller":"node","country":"FR","asn":null,"assessment":"supports","rule":null,"fact":{"address":"51.15.0.1","country":"FR","kind":"address"},"sentence":"address 51.15.0.1 is in FR, an allowed country"},"#,
                r#"{"source":"networkOperator","controller":"node","country":"FR","asn":12876,"assessment":"supports","rule":null,"fact":{"address":"51.15.0.1","asn":12876,"kind":"networkOperator","organisation":"Scaleway SAS","registered":"FR"},"sentence":"network AS12876 (Scaleway SAS) of address 51.15.0.1 is registered in FR, an accepted network operator"}],"#,
                r#""verdict":"compliant","reasons":[],"policy":"Standard (France)","policy_digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","extra_eu_control":null,"#,
                r#""databases":[{"role":"location","file":"geo-whois-asn-country.mmdb","format":"MaxMind DB geo-whois-asn-country","built":"2026-11-01T00:00:00Z","sha256":"1111111111111111111111111111111111111111111111111111111111111111"}]}"#
            )
        );
        assert_eq!(Entry::decode(text.as_bytes()).unwrap(), e);
        check(&text, None);
        let rot = Entry {
            seq: 9,
            time: Timestamp(0),
            prev: GENESIS_PREV,
            body: Body::KeyRotation {
                new_key: "log+01020304+AQID".into(),
            },
        };
        check(&rot.encode(), None);
        for i in 0..14 {
            let e = Entry {
                body: fixture::observation(i),
                ..sample(i)
            };
            check(&e.encode(), None);
        }
        assert_eq!(
            hex::encode(e.leaf_hash()),
            hex::encode(leaf_hash(text.as_bytes()))
        );
    }

    #[test]
    fn non_canonical_and_invalid_entries_are_rejected() {
        let text = sample(1).encode();
        check(&text.replace(",\"seq\"", ", \"seq\""), Some("canonical"));
        check(&text.replace("\"v\":2", "\"v\":1"), Some("version 1"));
        check(
            &text.replace("document\",\"object", "docu\\u006dent\",\"object"),
            Some("canonical"),
        );
        // Facts are canonical too: sorted keys.
        check(
            &text.replace(
                r#"{"key":"topology.kubernetes.io/region","kind":"topologyLabel""#,
                r#"{"kind":"topologyLabel","key":"topology.kubernetes.io/region""#,
            ),
            Some("canonical"),
        );
        check(
            &text.replace("\"asn\":12876,\"kind\"", "\"asn\":12876.5,\"kind\""),
            Some("not an integer"),
        );
        check(
            &text.replace("\"FR\",\"asn\"", "\"fr\",\"asn\""),
            Some("alpha-2"),
        );
        check(&text.replace("\"compliant\"", "\"fine\""), Some("verdict"));
        check(&text.replace(".123Z", "Z"), Some("time"));
        check(
            &text.replace("\"prev\":\"07", "\"prev\":\"0G"),
            Some("prev"),
        );
        check(
            &text.replace("}],\"verdict", "}],\"extra\":1,\"verdict"),
            Some("unknown field"),
        );
        check(
            &text.replace("\"reasons\":[]", "\"reasons\":[\"x\"]"),
            Some("compliant verdict carries no reasons"),
        );
        check(
            &text.replace("\"verdict\":\"compliant\"", "\"verdict\":\"violation\""),
            Some("at least one reason"),
        );
        check(
            &text.replace("\"store\":\"minio/documents\"", "\"store\":\"\""),
            Some("empty"),
        );
        check(&text.replace("minio", "mi\\nnio"), Some("control"));
        check(
            &text.replace(
                "\"controller\":\"securityOfficer\"",
                "\"controller\":\"node\"",
            ),
            Some("controlled by securityOfficer, not node"),
        );
        check(
            &text.replace("\"policy_digest\":\"sha256:", "\"policy_digest\":\"md5:"),
            Some("policy_digest"),
        );
        check("{", Some("not a ledger entry"));
        check("", Some("not a ledger entry"));
    }

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
        no_location
            .locality
            .evidence
            .retain(|e| e.source == Source::NetworkOperator);
        assert_eq!(
            no_location.check().map_err(|e| e.to_string()),
            Err("field `verdict`: compliant without any location evidence supporting it".into())
        );
    }

    #[test]
    fn timestamps_convert_to_and_from_the_time_crate() {
        for ms in [0i64, -1, 1_764_300_000_123, 253_402_300_799_999] {
            let t = Timestamp(ms).to_datetime().unwrap();
            assert_eq!(Timestamp::from_datetime(t), Timestamp(ms));
        }
        // Below a millisecond is dropped, as an entry records.
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_764_300_000_123_999_999).unwrap();
        assert_eq!(Timestamp::from_datetime(t), Timestamp(1_764_300_000_123));
        assert_eq!(Timestamp(i64::MAX).to_datetime(), None);
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0i64, 1, 999, 1_764_300_000_123, 253_402_300_799_999] {
            let mut s = String::new();
            Timestamp(ms).write(&mut s);
            assert_eq!(Timestamp::parse(&s).unwrap(), Timestamp(ms), "{s}");
        }
        assert!(Timestamp::parse("2025-02-30T00:00:00.000Z").is_err());
        assert!(Timestamp::parse("2025-01-01T24:00:00.000Z").is_err());
        for (ms, text) in [
            (1_764_300_000_123, "2025-11-28T03:20:00.123Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        ] {
            assert_eq!(Timestamp(ms).to_string(), text);
            assert_eq!(Timestamp::parse(text).unwrap(), Timestamp(ms));
        }
        // 2100 is not a leap year; 2000 is; month 13 and minute 60 do not exist.
        for bad in [
            "2100-02-29T00:00:00.000Z",
            "2025-13-01T00:00:00.000Z",
            "2025-01-01T00:60:00.000Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        // Beyond year 9999 (only a hand-made value): no reader accepts what is written.
        let far = Timestamp(253_402_300_800_000).to_string();
        assert!(Timestamp::parse(&far).is_err(), "{far}");
    }
}
