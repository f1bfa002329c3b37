//! The ledger entry and its one canonical encoding: a single line of JSON with a fixed key
//! order and no whitespace. The leaf hash of an entry is the RFC 6962 leaf hash of exactly
//! these bytes; nothing else in the crate encodes or decodes entries.
//!
//! Entries hold identifiers and hashes only (object identity, content hash, evidence
//! summary, verdict, policy), never contents or personal data.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Deserialize;

use super::tree::{Hash, leaf_hash};

/// Version number written in every entry (`"v"`).
pub const ENTRY_VERSION: u8 = 1;
/// Longest accepted string field, in bytes.
pub const MAX_TEXT: usize = 1024;
/// Most evidence items or reasons one entry may carry.
pub const MAX_ITEMS: usize = 64;

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
        let now = time::OffsetDateTime::now_utc();
        Self((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    fn write(self, out: &mut String) {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let secs = ms_of_day / 1000;
        push_digits(out, y as u64, 4);
        out.push('-');
        push_digits(out, m as u64, 2);
        out.push('-');
        push_digits(out, d as u64, 2);
        out.push('T');
        push_digits(out, (secs / 3600) as u64, 2);
        out.push(':');
        push_digits(out, (secs / 60 % 60) as u64, 2);
        out.push(':');
        push_digits(out, (secs % 60) as u64, 2);
        out.push('.');
        push_digits(out, (ms_of_day % 1000) as u64, 3);
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
        let (y, mo, d) = (num(0..4), num(5..7), num(8..10));
        if !(1..=12).contains(&mo) {
            return Err(bad("bad month"));
        }
        if d < 1 || d > days_in_month(y, mo) {
            return Err(bad("bad date"));
        }
        let (h, mi, sec) = (num(11..13), num(14..16), num(17..19));
        if h > 23 || mi > 59 || sec > 59 {
            return Err(bad("bad time of day"));
        }
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
        Ok(Self(secs * 1000 + num(20..23)))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    /// Data store (e.g. `minio/documents`, `postgres/portal`).
    pub store: String,
    /// Object class inside the store (e.g. `document`, `volume`, `backup`).
    pub class: String,
    /// Identifier of the object in its store (opaque, never contents).
    pub id: String,
}

/// Which kind of evidence gave a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvidenceSource {
    /// Node topology labels mapped to a country by the policy.
    Topology,
    /// The operator's attested node label.
    AttestedLabel,
    /// Geolocation of the public address.
    Geolocation,
    /// The network operator (ASN) and its country of registration.
    NetworkOperator,
}

impl EvidenceSource {
    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Topology => "topology",
            Self::AttestedLabel => "attested-label",
            Self::Geolocation => "geolocation",
            Self::NetworkOperator => "network-operator",
        }
    }

    fn parse(s: &str) -> Result<Self, EntryError> {
        Ok(match s {
            "topology" => Self::Topology,
            "attested-label" => Self::AttestedLabel,
            "geolocation" => Self::Geolocation,
            "network-operator" => Self::NetworkOperator,
            other => {
                return Err(EntryError::Field {
                    field: "evidence.source",
                    problem: format!(
                        "{other:?} is not one of topology, attested-label, geolocation, network-operator"
                    ),
                });
            }
        })
    }
}

/// One piece of location evidence, summarised: source, country (or unknown), network operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Evidence {
    /// Which evidence this is.
    pub source: EvidenceSource,
    /// ISO 3166-1 alpha-2 country, `None` when the evidence says *unknown*.
    pub country: Option<[u8; 2]>,
    /// Autonomous system number, for network-operator evidence.
    pub asn: Option<u32>,
}

/// The outcome of evaluating the evidence against the policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Every piece of evidence satisfies the policy.
    Compliant,
    /// The policy is broken, with reasons.
    Violation(Vec<String>),
    /// The evidence does not allow a decision, with reasons.
    Unknown(Vec<String>),
}

impl Verdict {
    /// The canonical name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Compliant => "compliant",
            Self::Violation(_) => "violation",
            Self::Unknown(_) => "unknown",
        }
    }

    /// The reasons (empty when compliant).
    pub fn reasons(&self) -> &[String] {
        match self {
            Self::Compliant => &[],
            Self::Violation(r) | Self::Unknown(r) => r,
        }
    }
}

/// The policy an observation was judged against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyRef {
    /// Policy identifier.
    pub id: String,
    /// Policy version (opaque string, e.g. a generation or a digest).
    pub version: String,
}

/// An observation of where one object is stored, and the verdict on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Observation {
    /// Which object.
    pub object: ObjectId,
    /// SHA-256 of the object's content (as reported by its store), never the content itself.
    pub content: Hash,
    /// The location evidence summary.
    pub evidence: Vec<Evidence>,
    /// The verdict.
    pub verdict: Verdict,
    /// The policy applied.
    pub policy: PolicyRef,
}

/// What an entry records.
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

impl Entry {
    /// The canonical encoding (one JSON line, without newline).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(384);
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut String) {
        let _ = write!(
            out,
            "{{\"v\":{ENTRY_VERSION},\"seq\":{},\"time\":\"",
            self.seq
        );
        self.time.write(out);
        out.push_str("\",\"prev\":\"");
        push_hex(out, &self.prev);
        match &self.body {
            Body::Observation(o) => {
                out.push_str("\",\"kind\":\"observation\",\"store\":");
                push_str(out, &o.object.store);
                out.push_str(",\"class\":");
                push_str(out, &o.object.class);
                out.push_str(",\"object\":");
                push_str(out, &o.object.id);
                out.push_str(",\"content\":\"");
                push_hex(out, &o.content);
                out.push_str("\",\"evidence\":[");
                for (i, e) in o.evidence.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str("{\"source\":\"");
                    out.push_str(e.source.as_str());
                    out.push_str("\",\"country\":");
                    match e.country {
                        Some([a, b]) => {
                            out.push('"');
                            out.push(a as char);
                            out.push(b as char);
                            out.push('"');
                        }
                        None => out.push_str("null"),
                    }
                    out.push_str(",\"asn\":");
                    match e.asn {
                        Some(n) => push_digits(out, u64::from(n), 1),
                        None => out.push_str("null"),
                    }
                    out.push('}');
                }
                out.push_str("],\"verdict\":\"");
                out.push_str(o.verdict.as_str());
                out.push_str("\",\"reasons\":[");
                for (i, r) in o.verdict.reasons().iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_str(out, r);
                }
                out.push_str("],\"policy\":");
                push_str(out, &o.policy.id);
                out.push_str(",\"policy_version\":");
                push_str(out, &o.policy.version);
                out.push('}');
            }
            Body::KeyRotation { new_key } => {
                out.push_str("\",\"kind\":\"key-rotation\",\"new_key\":");
                push_str(out, new_key);
                out.push('}');
            }
        }
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

    /// [`Entry::decode`] with a caller-owned buffer for the canonicality check (hot loops).
    pub fn decode_with(bytes: &[u8], scratch: &mut String) -> Result<Self, EntryError> {
        match strict_decode(bytes) {
            Ok(entry) => Ok(entry),
            Err(Some(invalid)) => Err(invalid),
            // Not in the exact canonical shape: the general parser says precisely why.
            Err(None) => Self::diagnose(bytes, scratch),
        }
    }

    /// Parses any JSON spelling of an entry, then insists on the canonical bytes.
    fn diagnose(bytes: &[u8], scratch: &mut String) -> Result<Self, EntryError> {
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

/// A cursor that accepts exactly the canonical encoding, nothing else.
struct Strict<'a> {
    b: &'a [u8],
    i: usize,
}

/// `Err(None)`: not the canonical shape; `Err(Some(e))`: canonical shape, invalid value.
type StrictResult<T> = Result<T, Option<EntryError>>;

impl<'a> Strict<'a> {
    fn lit(&mut self, s: &[u8]) -> StrictResult<()> {
        if self.b[self.i..].starts_with(s) {
            self.i += s.len();
            Ok(())
        } else {
            Err(None)
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn uint(&mut self) -> StrictResult<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.b.get(self.i).copied() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
                .ok_or(None)?;
            self.i += 1;
        }
        let len = self.i - start;
        if len == 0 || (len > 1 && self.b[start] == b'0') {
            return Err(None);
        }
        Ok(v)
    }

    /// A JSON string whose only escapes are `\"` and `\\`, without control bytes.
    fn string(&mut self) -> StrictResult<Cow<'a, str>> {
        if !self.eat(b'"') {
            return Err(None);
        }
        let start = self.i;
        let mut owned: Option<Vec<u8>> = None;
        let mut seg = start;
        loop {
            let c = *self.b.get(self.i).ok_or(None)?;
            match c {
                b'"' => break,
                b'\\' => {
                    let next = *self.b.get(self.i + 1).ok_or(None)?;
                    if next != b'"' && next != b'\\' {
                        return Err(None);
                    }
                    let o = owned.get_or_insert_with(Vec::new);
                    o.extend_from_slice(&self.b[seg..self.i]);
                    o.push(next);
                    self.i += 2;
                    seg = self.i;
                }
                0..=0x1f => return Err(None),
                _ => self.i += 1,
            }
        }
        let end = self.i;
        self.i += 1;
        match owned {
            None => std::str::from_utf8(&self.b[start..end])
                .map(Cow::Borrowed)
                .map_err(|_| None),
            Some(mut o) => {
                o.extend_from_slice(&self.b[seg..end]);
                String::from_utf8(o).map(Cow::Owned).map_err(|_| None)
            }
        }
    }

    fn text(&mut self, field: &'static str) -> StrictResult<String> {
        let s = self.string()?;
        check_text(field, &s).map_err(Some)?;
        Ok(s.into_owned())
    }

    fn hash(&mut self, field: &'static str) -> StrictResult<Hash> {
        if !self.eat(b'"') || self.b.len() < self.i + 65 || self.b[self.i + 64] != b'"' {
            return Err(None);
        }
        let h = parse_hash_bytes(&self.b[self.i..self.i + 64]).ok_or_else(|| {
            Some(EntryError::Field {
                field,
                problem: "not 64 lowercase hex digits".into(),
            })
        })?;
        self.i += 65;
        Ok(h)
    }
}

fn strict_decode(bytes: &[u8]) -> StrictResult<Entry> {
    let mut p = Strict { b: bytes, i: 0 };
    p.lit(b"{\"v\":1,\"seq\":")?;
    let seq = p.uint()?;
    p.lit(b",\"time\":\"")?;
    let time_bytes = bytes.get(p.i..p.i + 24).ok_or(None)?;
    let time =
        Timestamp::parse(std::str::from_utf8(time_bytes).map_err(|_| None)?).map_err(Some)?;
    p.i += 24;
    p.lit(b"\",\"prev\":")?;
    let prev = p.hash("prev")?;
    p.lit(b",\"kind\":\"")?;
    let body = if p.lit(b"observation\",\"store\":").is_ok() {
        let store = p.text("store")?;
        p.lit(b",\"class\":")?;
        let class = p.text("class")?;
        p.lit(b",\"object\":")?;
        let id = p.text("object")?;
        p.lit(b",\"content\":")?;
        let content = p.hash("content")?;
        p.lit(b",\"evidence\":[")?;
        let mut evidence = Vec::with_capacity(4);
        if !p.eat(b']') {
            loop {
                p.lit(b"{\"source\":")?;
                let source = EvidenceSource::parse(&p.string()?).map_err(Some)?;
                p.lit(b",\"country\":")?;
                let country = if p.lit(b"null").is_ok() {
                    None
                } else {
                    Some(parse_country(&p.string()?).map_err(Some)?)
                };
                p.lit(b",\"asn\":")?;
                let asn = if p.lit(b"null").is_ok() {
                    None
                } else {
                    Some(u32::try_from(p.uint()?).map_err(|_| None)?)
                };
                p.lit(b"}")?;
                evidence.push(Evidence {
                    source,
                    country,
                    asn,
                });
                if evidence.len() > MAX_ITEMS {
                    return Err(None);
                }
                if p.eat(b']') {
                    break;
                }
                p.lit(b",")?;
            }
        }
        p.lit(b",\"verdict\":\"")?;
        let verdict_name = if p.lit(b"compliant\"").is_ok() {
            "compliant"
        } else if p.lit(b"violation\"").is_ok() {
            "violation"
        } else if p.lit(b"unknown\"").is_ok() {
            "unknown"
        } else {
            return Err(None);
        };
        p.lit(b",\"reasons\":[")?;
        let mut reasons = Vec::new();
        if !p.eat(b']') {
            loop {
                reasons.push(p.text("reasons")?);
                if reasons.len() > MAX_ITEMS {
                    return Err(None);
                }
                if p.eat(b']') {
                    break;
                }
                p.lit(b",")?;
            }
        }
        if verdict_name == "compliant" && !reasons.is_empty() {
            return Err(None);
        }
        let verdict = make_verdict(verdict_name, reasons).map_err(Some)?;
        check_verdict(&evidence, &verdict).map_err(Some)?;
        p.lit(b",\"policy\":")?;
        let policy = p.text("policy")?;
        p.lit(b",\"policy_version\":")?;
        let version = p.text("policy_version")?;
        Body::Observation(Observation {
            object: ObjectId { store, class, id },
            content,
            evidence,
            verdict,
            policy: PolicyRef {
                id: policy,
                version,
            },
        })
    } else {
        p.lit(b"key-rotation\",\"new_key\":")?;
        Body::KeyRotation {
            new_key: p.text("new_key")?,
        }
    };
    p.lit(b"}")?;
    if p.i != bytes.len() {
        return Err(None);
    }
    Ok(Entry {
        seq,
        time,
        prev,
        body,
    })
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// Writes a JSON string; only `"` and `\` are escaped because control characters are refused.
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    while let Some(i) = rest.find(['"', '\\']) {
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
    country: Option<Cow<'a, str>>,
    asn: Option<u32>,
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
    evidence: Option<Vec<RawEvidence<'a>>>,
    #[serde(borrow, default)]
    verdict: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasons: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    policy: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    policy_version: Option<Cow<'a, str>>,
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
                let object = ObjectId {
                    store: text("store", self.store)?,
                    class: text("class", self.class)?,
                    id: text("object", self.object)?,
                };
                let content = parse_hash("content", &required("content", self.content)?)?;
                let raw_evidence = required("evidence", self.evidence)?;
                if raw_evidence.len() > MAX_ITEMS {
                    return Err(EntryError::Field {
                        field: "evidence",
                        problem: format!("{} items, at most {MAX_ITEMS}", raw_evidence.len()),
                    });
                }
                let evidence = raw_evidence
                    .into_iter()
                    .map(|e| {
                        Ok(Evidence {
                            source: EvidenceSource::parse(&e.source)?,
                            country: e.country.as_deref().map(parse_country).transpose()?,
                            asn: e.asn,
                        })
                    })
                    .collect::<Result<Vec<_>, EntryError>>()?;
                let reasons = required("reasons", self.reasons)?;
                if reasons.len() > MAX_ITEMS {
                    return Err(EntryError::Field {
                        field: "reasons",
                        problem: format!("{} items, at most {MAX_ITEMS}", reasons.len()),
                    });
                }
                let reasons = reasons
                    .into_iter()
                    .map(|r| text("reasons", Some(r)))
                    .collect::<Result<Vec<_>, _>>()?;
                let verdict = make_verdict(&required("verdict", self.verdict)?, reasons)?;
                check_verdict(&evidence, &verdict)?;
                if self.new_key.is_some() {
                    return Err(EntryError::Field {
                        field: "new_key",
                        problem: "not allowed in an observation".into(),
                    });
                }
                Body::Observation(Observation {
                    object,
                    content,
                    evidence,
                    verdict,
                    policy: PolicyRef {
                        id: text("policy", self.policy)?,
                        version: text("policy_version", self.policy_version)?,
                    },
                })
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
pub fn make_verdict(name: &str, reasons: Vec<String>) -> Result<Verdict, EntryError> {
    Ok(match name {
        "compliant" => Verdict::Compliant,
        "violation" => Verdict::Violation(reasons),
        "unknown" => Verdict::Unknown(reasons),
        other => {
            return Err(EntryError::Field {
                field: "verdict",
                problem: format!("{other:?} is not one of compliant, violation, unknown"),
            });
        }
    })
}

/// The verdict rules every entry must satisfy, whatever the policy: a compliant verdict has
/// evidence, no reasons and no *unknown* country; a violation or unknown verdict says why.
pub fn check_verdict(evidence: &[Evidence], verdict: &Verdict) -> Result<(), EntryError> {
    let problem = match verdict {
        Verdict::Compliant if evidence.is_empty() => "compliant without any evidence",
        Verdict::Compliant if evidence.iter().any(|e| e.country.is_none()) => {
            "compliant although some evidence gives an unknown country"
        }
        Verdict::Violation(r) | Verdict::Unknown(r) if r.is_empty() => {
            "a violation or unknown verdict must give at least one reason"
        }
        Verdict::Compliant => return Ok(()),
        Verdict::Violation(_) | Verdict::Unknown(_) => return Ok(()),
    };
    Err(EntryError::Field {
        field: "verdict",
        problem: problem.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> Entry {
        Entry {
            seq,
            time: Timestamp(1_764_300_000_123),
            prev: [7; 32],
            body: Body::Observation(Observation {
                object: ObjectId {
                    store: "minio/documents".into(),
                    class: "document".into(),
                    id: "spaces/42/\"quoted\"\\x".into(),
                },
                content: [0xab; 32],
                evidence: vec![
                    Evidence {
                        source: EvidenceSource::Topology,
                        country: Some(*b"FR"),
                        asn: None,
                    },
                    Evidence {
                        source: EvidenceSource::NetworkOperator,
                        country: Some(*b"FR"),
                        asn: Some(16276),
                    },
                ],
                verdict: Verdict::Compliant,
                policy: PolicyRef {
                    id: "france-only".into(),
                    version: "3".into(),
                },
            }),
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
                r#"{"v":1,"seq":5,"time":"2025-11-28T03:20:00.123Z","prev":"0707070707070707070707070707070707070707070707070707070707070707","#,
                r#""kind":"observation","store":"minio/documents","class":"document","object":"spaces/42/\"quoted\"\\x","#,
                r#""content":"abababababababababababababababababababababababababababababababab","#,
                r#""evidence":[{"source":"topology","country":"FR","asn":null},{"source":"network-operator","country":"FR","asn":16276}],"#,
                r#""verdict":"compliant","reasons":[],"policy":"france-only","policy_version":"3"}"#
            )
        );
        assert_eq!(Entry::decode(text.as_bytes()).unwrap(), e);
        // The fast strict parser takes canonical input itself; the general one agrees.
        assert_eq!(strict_decode(text.as_bytes()).unwrap(), e);
        assert_eq!(
            Entry::diagnose(text.as_bytes(), &mut String::new()).unwrap(),
            e
        );
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
        assert_eq!(
            hex::encode(e.leaf_hash()),
            hex::encode(leaf_hash(text.as_bytes()))
        );
    }

    #[test]
    fn non_canonical_and_invalid_entries_are_rejected() {
        let text = sample(1).encode();
        check(&text.replace(",\"seq\"", ", \"seq\""), Some("canonical"));
        check(&text.replace("\"v\":1", "\"v\":2"), Some("version 2"));
        check(
            &text.replace("document\",\"object", "docu\\u006dent\",\"object"),
            Some("canonical"),
        );
        check(&text.replace("\"FR\"", "\"fr\""), Some("alpha-2"));
        check(&text.replace("compliant", "fine"), Some("verdict"));
        check(&text.replace(".123Z", "Z"), Some("time"));
        check(
            &text.replace("\"prev\":\"07", "\"prev\":\"0G"),
            Some("prev"),
        );
        check(&text.replace("}]", "}],\"extra\":1"), Some("unknown field"));
        check(
            &text.replace("\"reasons\":[]", "\"reasons\":[\"x\"]"),
            Some("canonical"),
        );
        check(
            &text.replace("\"verdict\":\"compliant\"", "\"verdict\":\"violation\""),
            Some("at least one reason"),
        );
        check(
            &text.replace(
                "\"country\":\"FR\",\"asn\":null",
                "\"country\":null,\"asn\":null",
            ),
            Some("unknown country"),
        );
        check(
            &text.replace("\"store\":\"minio/documents\"", "\"store\":\"\""),
            Some("empty"),
        );
        check(&text.replace("minio", "mi\\nnio"), Some("control"));
        check("{", Some("not a ledger entry"));
        check("", Some("not a ledger entry"));
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
    }
}
