//! The engine's evaluation as the ledger records it: its evidence (each fact whole), verdict,
//! policy and databases. Both speak the platform's vocabulary: nothing is renamed.

use hexagone_platform::Country;

use crate::ledger::entry::{
    Assessment, DatabaseId, EntryError, Evidence, Fact, Locality, PolicyRef, Timestamp, Verdict,
    parse_hash,
};

fn country(c: Country) -> [u8; 2] {
    let b = c.as_str().as_bytes();
    [b[0], b[1]]
}

/// The engine's evidence as the ledger records it: nothing the engine holds is lost (the fact
/// whole, who controls it, the country it names, the AS number, how it weighed, and the
/// sentence). Both speak the platform's vocabulary: nothing is renamed here.
pub fn evidence(e: &hexagone_platform::Evidence) -> Result<Evidence, EntryError> {
    use hexagone_platform::Observation as O;
    let (named, asn) = match &e.observation {
        O::NetworkOperator {
            registered, asn, ..
        } => (*registered, asn.map(|a| a.0)),
        O::UnreadableAddress { .. } => (None, None),
        _ => (e.placed_in, None),
    };
    let fact = serde_json::to_value(&e.observation).map_err(|err| EntryError::Field {
        field: "evidence.fact",
        problem: err.to_string(),
    })?;
    Ok(Evidence {
        source: e.source,
        controller: e.controller,
        country: named.map(country),
        asn,
        assessment: Assessment::new(
            e.assessment.kind(),
            e.assessment.breach().map(|b| b.rule().as_str().to_owned()),
        )?,
        fact: Fact::from_value(&fact)?,
        sentence: e.to_string(),
    })
}

/// An evaluation of the engine as the ledger records it.
pub fn locality(e: &hexagone_platform::Evaluation) -> Result<Locality, EntryError> {
    Ok(Locality {
        subject: e.subject.clone(),
        subject_kind: e.subject_kind,
        observed_at: Timestamp::from_datetime(e.observed_at),
        evidence: e.evidence.iter().map(evidence).collect::<Result<_, _>>()?,
        verdict: Verdict::new(e.verdict.kind(), e.reasons()),
        policy: PolicyRef {
            classification: e.classification.to_string(),
            digest: e.policy_digest.to_string(),
            extra_eu_control: e.extra_eu_control_digest.as_deref().map(str::to_owned),
        },
        databases: e
            .databases
            .iter()
            .map(|d| {
                Ok(DatabaseId {
                    role: d.role.clone(),
                    file: d.file.clone(),
                    format: d.format.clone(),
                    built: d.built.clone(),
                    sha256: parse_hash("databases.sha256", &d.sha256)?,
                })
            })
            .collect::<Result<_, EntryError>>()?,
    })
}
