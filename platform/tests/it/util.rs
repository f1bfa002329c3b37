//! Shared helpers: the vendored databases (opened once) and the shipped policies.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hexagone_platform::geo::{GeoDatabases, GeoPaths, GeoSnapshot};
use hexagone_platform::{
    Attestation, AttestationSpec, Basis, Evaluation, LocalityPolicy, NodeDescription, evaluate,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `platform/data/ip-location-db`.
pub fn vendored_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ip-location-db")
}

/// The repository's `policies/` directory.
pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// The vendored databases; a missing or broken file fails every test that uses them.
pub fn geo() -> &'static GeoSnapshot {
    static GEO: OnceLock<GeoSnapshot> = OnceLock::new();
    GEO.get_or_init(|| {
        GeoDatabases::open(&GeoPaths::ip_location_db(&vendored_dir()))
            .unwrap_or_else(|e| panic!("vendored databases must load: {e}"))
            .snapshot()
    })
}

/// A shipped policy by file stem.
pub fn policy(name: &str) -> LocalityPolicy {
    let path = policies_dir().join(format!("{name}.yaml"));
    LocalityPolicy::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The fixed "now" of these tests.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::parse("2026-11-29T12:00:00Z", &Rfc3339).unwrap()
}

/// A valid attestation of `node` (provider ID `test://<node>`) in `country`, until 2027.
pub fn attestation(node: &str, country: &str) -> Attestation {
    Attestation::new(
        format!("{node}-attestation"),
        AttestationSpec {
            node_name: node.into(),
            provider_id: format!("test://{node}"),
            country: country.parse().unwrap(),
            hosting_company: "Hoster SAS".into(),
            site: "Site 1".into(),
            zone: None,
            basis: Basis::Contract,
            reference: Some("contract 2026-042".into()),
            attested_by: "security officer".into(),
            valid_until: "2027-06-30T00:00:00Z".into(),
        },
    )
}

/// Evaluates a node given as YAML under a shipped policy, with these attestations.
pub fn evaluate_yaml(
    policy_name: &str,
    node_yaml: &str,
    attestations: &[Attestation],
) -> Evaluation {
    let node: NodeDescription = yaml_serde::from_str(node_yaml).unwrap();
    evaluate(&policy(policy_name), &node, attestations, geo(), now())
}
