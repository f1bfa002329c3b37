//! The auditor as judge. [`ObservationJudge`] resolves where a reported object is stored (a
//! node as the cluster reports it, or a storage endpoint from the auditor's inventory),
//! gathers the facts with the platform's locality engine (geolocation databases,
//! attestations), judges them under the auditor's policy and builds the ledger observation
//! with the engine's own evidence, verdict, policy digest and database identities.
//! [`Replayer`] judges a recorded observation's facts again with `hexagone_platform::replay`
//! and says what differs. Pure but for reading the attestation and inventory files.
//!
//! One concern a file: `resolve` (the inventory of endpoints, and which place a report
//! names), `attestations` (reading them, who attested pseudonymised), `observe` (the judge:
//! observing and judging a place with the engine), `cache` (evaluations kept per place),
//! `body` (an evaluation as the ledger records it), `replay` (judging recorded facts again).

use std::path::{Path, PathBuf};

use crate::ledger::entry::EntryError;

mod attestations;
mod body;
mod cache;
mod observe;
mod replay;
mod resolve;

pub use attestations::{load_attestations, node_attestations, pseudonym};
pub use body::{evidence, locality};
pub use observe::ObservationJudge;
pub use replay::Replayer;
pub use resolve::Inventory;

/// Why an observation could not be judged, or a file of the judge could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{path}: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the YAML location.
        why: String,
    },
    /// An endpoint is neither in the inventory nor an IP address.
    #[error(
        "endpoint {0:?} is not in the inventory and is not an IP address (the auditor resolves no names: declare it in --inventory with its addresses)"
    )]
    UnknownEndpoint(String),
    /// The engine's evaluation does not make a valid entry.
    #[error(transparent)]
    Entry(#[from] EntryError),
}

fn read(path: &Path) -> Result<String, JudgeError> {
    std::fs::read_to_string(path).map_err(|source| JudgeError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, JudgeError> {
    yaml_serde::from_str(text).map_err(|e| JudgeError::Parse {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

/// What the tests of the judge's files share: the shipped policies and databases, reports, and
/// the judge-then-replay check.
#[cfg(test)]
mod testing {
    use super::*;
    use hexagone_platform::LocalityPolicy;
    use hexagone_platform::geo::{GeoDatabases, GeoPaths};
    use time::OffsetDateTime;

    use crate::ingest::Submission;
    use crate::ledger::entry::{Body, Timestamp};

    const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
    const GEO: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../platform/data/ip-location-db"
    );

    /// The vendored databases, read once for all tests.
    pub(super) fn geo() -> &'static GeoDatabases {
        static GEO_DBS: std::sync::OnceLock<GeoDatabases> = std::sync::OnceLock::new();
        GEO_DBS
            .get_or_init(|| GeoDatabases::open(&GeoPaths::ip_location_db(Path::new(GEO))).unwrap())
    }

    pub(super) fn policy(name: &str) -> LocalityPolicy {
        LocalityPolicy::from_file(Path::new(&format!("{POLICIES}/{name}.yaml"))).unwrap()
    }

    pub(super) fn now() -> OffsetDateTime {
        OffsetDateTime::parse(
            "2026-11-29T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    }

    /// Judges the input line under `policy` with an attestation for `gra-3` (and an inventory
    /// with an attested `backup-gra`), then replays the entry: `[verdict] reasons`.
    pub(super) fn check(policy_name: &str, line: &str, expected: &str) {
        check_report(
            policy_name,
            crate::ingest::parse_line(1, line).unwrap(),
            expected,
        );
    }

    /// [`check`] for a report no HTTP line can give (the collector's).
    pub(super) fn check_report(policy_name: &str, report: crate::ingest::Report, expected: &str) {
        let dir = tempfile::tempdir().unwrap();
        let att = dir.path().join("att.yaml");
        std::fs::write(
            &att,
            "- metadata: {name: gra-3}
  spec: {nodeName: gra-3, providerID: 'ovh://gra/3', country: FR, hostingCompany: OVH SAS,
         site: GRA3, basis: contract, attestedBy: rssi@ministere.example.fr, validUntil: '2099-01-01T00:00:00Z'}
",
        )
        .unwrap();
        let inv = dir.path().join("inventory.yaml");
        std::fs::write(
            &inv,
            "- name: backup-gra
  addresses: [37.59.0.1]
  attestation: {country: FR, hostingCompany: OVH SAS, site: GRA, basis: contract, attestedBy: rssi, validUntil: '2099-01-01T00:00:00Z'}
",
        )
        .unwrap();
        let p = policy(policy_name);
        let judge = ObservationJudge::new(
            &p,
            geo(),
            load_attestations(&att).unwrap(),
            Inventory::load(&inv).unwrap(),
        );
        let got = judge.judge(report, &judge.snapshot(), now());
        let got = match got.map(Submission::into_body) {
            Ok(Body::Observation(o)) => {
                assert_eq!(Replayer::new(vec![p.clone()]).check(&o), Ok(()));
                let text = crate::ledger::entry::Entry {
                    seq: 0,
                    time: Timestamp(0),
                    prev: [0; 32],
                    body: Body::Observation(o.clone()),
                }
                .encode();
                assert!(
                    !text.contains("rssi"),
                    "who attested is pseudonymised: {text}"
                );
                format!(
                    "[{}] {}",
                    o.locality.verdict.as_str(),
                    o.locality.verdict.reasons().join(" / ")
                )
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected);
    }

    pub(super) fn node(name: &str, provider: &str, region: &str, address: &str) -> String {
        format!(
            r#"{{"store":"pg","class":"volume","object":"pvc-1","content":"{}","node":{{"name":"{name}","providerID":"{provider}","labels":{{"topology.kubernetes.io/region":"{region}"}},"addresses":[{{"type":"ExternalIP","address":"{address}"}}]}}}}"#,
            "ab".repeat(32)
        )
    }

    pub(super) fn endpoint(name: &str) -> String {
        format!(
            r#"{{"store":"pg","class":"backup","object":"b-1","content":"{}","endpoint":"{name}"}}"#,
            "ab".repeat(32)
        )
    }
}
