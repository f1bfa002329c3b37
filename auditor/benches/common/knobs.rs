//! What the end-to-end benchmarks share: counts set from the environment, and the shipped
//! policies.

/// The count in environment variable `name`, else `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The path of the shipped policy `name` (`policies/NAME.yaml`).
pub fn policy(name: &str) -> String {
    format!("{}/../policies/{name}.yaml", env!("CARGO_MANIFEST_DIR"))
}
