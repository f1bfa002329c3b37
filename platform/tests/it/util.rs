//! Shared helpers: the vendored databases (opened once) and the shipped policies.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hexagone_platform::geo::{GeoDatabases, GeoPaths, GeoSnapshot};
use hexagone_platform::{Evaluation, LocalityPolicy, NodeDescription, evaluate};

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

/// Evaluates a node given as YAML under a shipped policy.
pub fn evaluate_yaml(policy_name: &str, node_yaml: &str) -> Evaluation {
    let node: NodeDescription = serde_yaml::from_str(node_yaml).unwrap();
    evaluate(&policy(policy_name), &node, geo())
}
