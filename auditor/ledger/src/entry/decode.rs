//! Parsing entries: JSON into an [`Entry`], every rule checked, and only the canonical bytes
//! accepted; the field parsers (hashes, countries, the vocabulary's names) it uses.

use std::borrow::Cow;
use std::str::FromStr;

use hexagone_platform::vocabulary::UnknownName;
use serde::Deserialize;

use super::observation::check_digest;
use super::{
    Assessment, AssessmentKind, Body, DatabaseId, ENTRY_VERSION, Entry, EntryError, Evidence, Fact,
    ImageRef, Locality, MAX_ENTRY, MAX_EVIDENCE, MAX_REASONS, ObjectId, Observation, PolicyRef,
    Timestamp, Verdict, check_text,
};
use crate::tree::Hash;

impl Entry {
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

/// Parses a name of the locality vocabulary found in `field`.
pub(super) fn name<T: FromStr<Err = UnknownName>>(
    field: &'static str,
    s: &str,
) -> Result<T, EntryError> {
    s.parse().map_err(|e: UnknownName| EntryError::Field {
        field,
        problem: e.to_string(),
    })
}

/// Builds a verdict from its name and reasons.
pub fn make_verdict(kind: &str, reasons: Vec<String>) -> Result<Verdict, EntryError> {
    Ok(Verdict::new(name("verdict", kind)?, reasons))
}

impl Assessment {
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

pub(super) fn parse_hash_bytes(b: &[u8]) -> Option<Hash> {
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
struct RawImage<'a> {
    #[serde(borrow)]
    reference: Cow<'a, str>,
    #[serde(borrow)]
    image_id: Option<Cow<'a, str>>,
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
    image: Option<RawImage<'a>>,
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
    digest: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    new_key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<Cow<'a, str>>,
}

fn required<T>(field: &'static str, v: Option<T>) -> Result<T, EntryError> {
    v.ok_or(EntryError::Field {
        field,
        problem: "missing".into(),
    })
}

/// The `request` of an observation, removal or policy: 64 lowercase hex digits when present (`null` is
/// not canonical: an entry without a request has no such key).
fn request(v: Option<Cow<'_, str>>) -> Result<Option<Hash>, EntryError> {
    v.map(|r| parse_hash("request", &r)).transpose()
}

/// The `observed_at` of a removal or policy.
fn observed_at(v: Option<Cow<'_, str>>) -> Result<Timestamp, EntryError> {
    Timestamp::parse(&required("observed_at", v)?).map_err(|_| EntryError::Field {
        field: "observed_at",
        problem: "not YYYY-MM-DDTHH:MM:SS.mmmZ".into(),
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
                    image: self.image.map(|i| ImageRef {
                        reference: i.reference.into_owned(),
                        image_id: i.image_id.map(Cow::into_owned),
                    }),
                    locality: Locality {
                        subject: text("subject", self.subject)?,
                        subject_kind: name(
                            "subject_kind",
                            &required("subject_kind", self.subject_kind)?,
                        )?,
                        observed_at: observed_at(self.observed_at)?,
                        evidence: evidence.into(),
                        verdict: make_verdict(&verdict_name, reasons)?,
                        policy: PolicyRef {
                            classification: text("policy", self.policy)?,
                            digest: required("policy_digest", self.policy_digest)?.into_owned(),
                            extra_eu_control: self.extra_eu_control.map(Cow::into_owned),
                        },
                        databases: databases.into(),
                    },
                    request: request(self.request)?,
                };
                observation.check()?;
                Body::Observation(observation)
            }
            "key-rotation" => {
                if self.request.is_some() {
                    return Err(EntryError::Field {
                        field: "request",
                        problem: "not allowed in a key rotation: it records no writer's request"
                            .into(),
                    });
                }
                let new_key = text("new_key", self.new_key)?;
                Body::KeyRotation { new_key }
            }
            "removal" => Body::Removal {
                object: ObjectId {
                    store: text("store", self.store)?,
                    class: text("class", self.class)?,
                    id: text("object", self.object)?,
                },
                observed_at: observed_at(self.observed_at)?,
                request: request(self.request)?,
            },
            "policy" => {
                let digest = required("digest", self.digest)?;
                check_digest("digest", &digest)?;
                Body::Policy {
                    object: ObjectId {
                        store: text("store", self.store)?,
                        class: text("class", self.class)?,
                        id: text("object", self.object)?,
                    },
                    digest: digest.into_owned(),
                    observed_at: observed_at(self.observed_at)?,
                    request: request(self.request)?,
                }
            }
            other => {
                return Err(EntryError::Field {
                    field: "kind",
                    problem: format!(
                        "{other:?} is not one of observation, key-rotation, removal, policy"
                    ),
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

#[cfg(test)]
mod tests {
    use crate::entry::testing::{check, sample};

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
}
