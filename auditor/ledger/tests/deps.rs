//! The ledger core stays pure: no async runtime, database driver, HTTP stack or file-system
//! helper anywhere in its dependency tree, and no file, network, process or environment access
//! in its own sources. `docs/ARCHITECTURE.md` names this test beside the invariant.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Crates whose presence means the core can block on I/O, reach a database or the network, or
/// touch files. A name matches exactly or as a `name-` prefix (`sqlx-core`, `hyper-util`).
const FORBIDDEN: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "futures",
    "mio",
    "sqlx",
    "rusqlite",
    "libsqlite3-sys",
    "postgres",
    "tokio-postgres",
    "hyper",
    "reqwest",
    "axum",
    "tower",
    "kube",
    "k8s-openapi",
    "tempfile",
    "walkdir",
    "notify",
    "memmap2",
    "fs-err",
    "nix",
    // The locality engine's file readers: the ledger takes the platform's vocabulary only.
    "maxminddb",
    "yaml_serde",
];

/// What the core's own sources may not name.
const FORBIDDEN_PATHS: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::thread",
];

fn forbidden(name: &str) -> bool {
    FORBIDDEN.iter().any(|f| {
        name == *f || name.starts_with(&format!("{f}-")) || name.starts_with(&format!("{f}_"))
    })
}

/// Every crate the ledger depends on at run time (normal and build dependencies, transitively),
/// as `cargo tree` resolves them for this package alone: features are those building the ledger
/// turns on (the platform without its engine), not the whole workspace's union, which
/// `cargo metadata`'s graph would give.
fn runtime_dependencies() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "-p",
            "hexagone-ledger",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "hexagone-ledger")
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_async_runtime_database_network_or_file_crate_in_the_dependency_tree() {
    let deps = runtime_dependencies();
    // The graph is read for real: the core's own crypto must be in it.
    assert!(
        deps.contains("sha2")
            && deps.contains("ed25519-dalek")
            && deps.contains("hexagone-platform"),
        "{deps:?}"
    );
    let bad: Vec<&String> = deps.iter().filter(|d| forbidden(d)).collect();
    assert!(
        bad.is_empty(),
        "hexagone-ledger must stay pure, but its dependency tree holds {bad:?} \
         (move the code that needs them to hexagone-auditor)"
    );
}

#[test]
fn the_core_sources_name_no_file_network_process_or_environment_access() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).expect("src is readable") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source is readable");
            for needle in FORBIDDEN_PATHS {
                assert!(
                    !text.contains(needle),
                    "{} names {needle}: the ledger core does no I/O",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} source files found under {}",
        src.display()
    );
}

#[test]
fn the_rule_catches_what_it_names() {
    assert!(forbidden("tokio") && forbidden("sqlx-core") && forbidden("hyper-util"));
    assert!(!forbidden("sha2") && !forbidden("serde_json") && !forbidden("tokenizers"));
}
