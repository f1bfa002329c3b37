//! Observations for tests and benchmarks: consistent entries made without the locality engine
//! (their facts are the engine's shape, their policy digest names no real policy).

use super::*;
use crate::tree::leaf_hash;

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

/// The security officer's attestation, missing: it says nothing (`sentence`).
fn no_attestation(sentence: &str) -> Evidence {
    evidence(
        Source::Attestation,
        Controller::SecurityOfficer,
        None,
        None,
        Assessment::Inconclusive,
        serde_json::json!({"kind": "attestation", "label": null, "status": {"state": "missing"}}),
        sentence.into(),
    )
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
        no_attestation("no NodeAttestation names the node, which proves nothing"),
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
            evidence: ev.into(),
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
            }]
            .into(),
        },
    )
    .expect("a valid fixture");
    Body::Observation(observation)
}

/// A plausible image the collector observed, object `i`: container `app` of pod `exo-{i}` runs
/// `registry.example.fr/hexagone/exo:7.1`, pulled as the digest of `i`, from a registry no
/// evidence places (verdict unknown).
pub fn image_observation(i: u64) -> Body {
    let digest = hex::encode(leaf_hash(&i.to_le_bytes()));
    let observation = Observation::new_encoded(
        ObjectId {
            store: COLLECTOR_STORE.into(),
            class: IMAGE_CLASS.into(),
            id: format!("image/workplace/exo-{i}/app"),
        },
        leaf_hash(&i.to_be_bytes()),
        Some(
            ImageRef::new(
                "registry.example.fr/hexagone/exo:7.1".into(),
                Some(format!("registry.example.fr/hexagone/exo@sha256:{digest}")),
            )
            .expect("a valid image"),
        ),
        Locality {
            subject: "registry.example.fr".into(),
            subject_kind: SubjectKind::Endpoint,
            observed_at: Timestamp(1_764_300_000_000),
            evidence: vec![no_attestation(
                "no attestation names the endpoint, which proves nothing",
            )]
            .into(),
            verdict: Verdict::Unknown(vec!["no location evidence places the endpoint".into()]),
            policy: PolicyRef {
                classification: "Standard (France)".into(),
                digest: POLICY_DIGEST.into(),
                extra_eu_control: None,
            },
            databases: Vec::new().into(),
        },
        None,
    )
    .expect("a valid fixture")
    .0;
    Body::Observation(observation)
}
