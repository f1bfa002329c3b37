//! The observation input of `append`: one JSON object per line, validated into an entry body
//! with a message naming the line and field when it is wrong.

use serde::Deserialize;

use crate::ledger::entry::{
    Body, EntryError, Evidence, EvidenceSource, MAX_ITEMS, ObjectId, Observation, PolicyRef,
    Timestamp, check_text, check_verdict, make_verdict, parse_country, parse_hash,
};

/// Why an input line was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Not JSON of the expected shape.
    #[error("line {line}: {why}")]
    Syntax {
        /// 1-based line.
        line: u64,
        /// What is wrong.
        why: String,
    },
    /// A field is invalid.
    #[error("line {line}: {source}")]
    Field {
        /// 1-based line.
        line: u64,
        /// The entry rule broken.
        source: EntryError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputEvidence {
    source: String,
    country: Option<String>,
    #[serde(default)]
    asn: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputObservation {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    time: Option<String>,
    store: String,
    class: String,
    object: String,
    content: String,
    evidence: Vec<InputEvidence>,
    verdict: String,
    #[serde(default)]
    reasons: Vec<String>,
    policy: String,
    policy_version: String,
}

fn source(s: &str) -> Result<EvidenceSource, EntryError> {
    Ok(match s {
        "topology" => EvidenceSource::Topology,
        "attested-label" => EvidenceSource::AttestedLabel,
        "geolocation" => EvidenceSource::Geolocation,
        "network-operator" => EvidenceSource::NetworkOperator,
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

fn time(s: &str) -> Result<Timestamp, EntryError> {
    if let Ok(t) = Timestamp::parse(s) {
        return Ok(t);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| EntryError::Field {
            field: "time",
            problem: format!("{s:?} is not an RFC 3339 time: {e}"),
        })?;
    Ok(Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// One observation submitted for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The writer's idempotency key: a retry with the same id is recorded once.
    pub id: Option<String>,
    /// The entry body.
    pub body: Body,
}

/// Parses one input line (1-based `line` for messages). A `time` given by the caller is
/// checked but not recorded: the sequencer stamps every entry itself.
pub fn parse_line(line: u64, text: &str) -> Result<Submission, IngestError> {
    let input: InputObservation = serde_json::from_str(text).map_err(|e| IngestError::Syntax {
        line,
        why: e.to_string(),
    })?;
    build(input).map_err(|source| IngestError::Field { line, source })
}

fn build(i: InputObservation) -> Result<Submission, EntryError> {
    if let Some(id) = &i.id {
        check_text("id", id)?;
    }
    check_text("store", &i.store)?;
    check_text("class", &i.class)?;
    check_text("object", &i.object)?;
    check_text("policy", &i.policy)?;
    check_text("policy_version", &i.policy_version)?;
    for r in &i.reasons {
        check_text("reasons", r)?;
    }
    if i.evidence.len() > MAX_ITEMS || i.reasons.len() > MAX_ITEMS {
        return Err(EntryError::Field {
            field: "evidence",
            problem: format!("at most {MAX_ITEMS} evidence items and reasons"),
        });
    }
    let content = parse_hash(
        "content",
        i.content.strip_prefix("sha256:").unwrap_or(&i.content),
    )?;
    let evidence = i
        .evidence
        .iter()
        .map(|e| {
            Ok(Evidence {
                source: source(&e.source)?,
                country: e.country.as_deref().map(parse_country).transpose()?,
                asn: e.asn,
            })
        })
        .collect::<Result<Vec<_>, EntryError>>()?;
    if i.verdict == "compliant" && !i.reasons.is_empty() {
        return Err(EntryError::Field {
            field: "reasons",
            problem: "a compliant verdict carries no reasons".into(),
        });
    }
    let verdict = make_verdict(&i.verdict, i.reasons)?;
    check_verdict(&evidence, &verdict)?;
    i.time.as_deref().map(time).transpose()?;
    let body = Body::Observation(Observation {
        object: ObjectId {
            store: i.store,
            class: i.class,
            id: i.object,
        },
        content,
        evidence,
        verdict,
        policy: PolicyRef {
            id: i.policy,
            version: i.policy_version,
        },
    });
    Ok(Submission { id: i.id, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"store":"s3/docs","class":"document","object":"o1","content":"sha256:abababababababababababababababababababababababababababababababab","evidence":[{"source":"geolocation","country":"FR"}],"verdict":"compliant","policy":"p","policy_version":"1"}"#;

    fn check(text: &str, want: Result<(), &str>) {
        match (parse_line(7, text), want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} should mention {w}"),
            (got, want) => panic!("{got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn observations_are_validated_with_line_numbers() {
        check(GOOD, Ok(()));
        check(
            &GOOD.replace("\"FR\"", "\"France\""),
            Err("line 7: field `evidence.country`"),
        );
        check(&GOOD.replace("compliant", "ok"), Err("verdict"));
        check(&GOOD.replace("sha256:ab", "sha256:zz"), Err("content"));
        check(
            &GOOD.replace("\"store\"", "\"secret\":\"x\",\"store\""),
            Err("unknown field"),
        );
        check(&GOOD.replace("\"FR\"", "null"), Err("unknown country"));
        check("not json", Err("line 7"));
        let with_time = GOOD.replace(
            "{\"store\"",
            "{\"time\":\"2026-01-02T03:04:05.5+01:00\",\"store\"",
        );
        check(&with_time, Ok(()));
        let with_id = GOOD.replace("{\"store\"", "{\"id\":\"retry-1\",\"store\"");
        assert_eq!(
            parse_line(1, &with_id).unwrap().id.as_deref(),
            Some("retry-1")
        );
        check(
            &GOOD.replace("{\"store\"", "{\"id\":\"\",\"store\""),
            Err("id"),
        );
        check(
            &GOOD.replace("{\"store\"", "{\"time\":\"yesterday\",\"store\""),
            Err("time"),
        );
    }
}
