//! Tidy checks of the repository against `docs/ARCHITECTURE.md`: every file or folder its code
//! map names exists; the pure crates pull no async runtime, database driver or HTTP stack; the
//! operator's shipped RBAC never lets it read a Secret; the auditor guide quotes its Go program
//! verbatim. Each check fails naming what broke.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository this test runs in: cargo's `CARGO_MANIFEST_DIR` when it runs the test (a
/// compiled binary reused from another checkout of the same sources still reads this one),
/// else the one it was compiled in.
fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("Cargo.toml").is_file())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// Backticked tokens of a line that name a file or a folder (`entry.rs`, `tests/it/`,
/// `data/stack-catalog.yaml`), not code (`Observation::new`) or commands.
fn path_tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 || part.contains(' ') || part.contains("::") || part.contains('<') {
            continue;
        }
        let file = [".rs", ".md", ".yaml", ".toml", ".sh", ".go", ".mod"]
            .iter()
            .any(|ext| part.ends_with(ext));
        let folder = part.ends_with('/') && part.len() > 1;
        if (file || folder)
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        {
            out.push(part.to_owned());
        }
    }
    out
}

/// Whether `token` names something under `base` (the section's folder), its `src/`, the
/// repository root, or (for a bare file name) some file below `base`.
fn exists(root: &Path, base: &Path, token: &str) -> bool {
    let token = token.trim_end_matches('/');
    let direct = [
        base.join(token),
        base.join("src").join(token),
        root.join(token),
    ];
    if direct.iter().any(|p| p.exists()) {
        return true;
    }
    // A name given inside a folder's entry (`mod.rs` of `serve/`): look below the section.
    fn walk(dir: &Path, token: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name == "target" || name.starts_with('.') {
                return false;
            }
            p.ends_with(token) || (p.is_dir() && walk(&p, token))
        })
    }
    walk(base, token)
}

#[test]
fn every_path_the_code_map_names_exists() {
    let root = root();
    let map = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("the map");
    // The folders the entries below a heading are in ("### `policies/`, `manifests/`, `docs/`").
    let mut bases = vec![root.clone()];
    let mut checked = 0;
    let mut missing = Vec::new();
    for (n, line) in map.lines().enumerate() {
        if let Some(heading) = line.strip_prefix("### ") {
            bases = path_tokens(heading)
                .iter()
                .map(|folder| root.join(folder.trim_end_matches('/')))
                .collect();
            if bases.is_empty() {
                bases.push(root.clone());
            }
            continue;
        }
        if line.starts_with("## ") {
            bases = vec![root.clone()];
        }
        for token in path_tokens(line) {
            checked += 1;
            if !bases.iter().any(|base| exists(&root, base, &token)) {
                let under: Vec<String> = bases.iter().map(|b| b.display().to_string()).collect();
                missing.push(format!(
                    "line {}: `{token}` (under {})",
                    n + 1,
                    under.join(" or ")
                ));
            }
        }
    }
    assert!(
        checked > 60,
        "only {checked} paths found in the map: is the parser broken?"
    );
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names paths that do not exist:\n{}",
        missing.join("\n")
    );
}

/// The repository paths a page names in backticks (`platform/src/locality/verdict.rs`, also as
/// `platform/src/locality/verdict.rs::a_test`): those under a top-level folder of the project.
fn repository_paths(page: &str) -> Vec<(usize, String)> {
    const TOP: [&str; 7] = [
        "platform/",
        "operator/",
        "auditor/",
        "manifests/",
        "policies/",
        "tests/",
        "docs/",
    ];
    let mut out = Vec::new();
    for (n, line) in page.lines().enumerate() {
        for (i, part) in line.split('`').enumerate() {
            let path = part.split("::").next().unwrap_or_default();
            if i % 2 == 1
                && TOP.iter().any(|t| path.starts_with(t))
                && !path.contains(['*', '<', '{', '$'])
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
            {
                out.push((n + 1, path.trim_end_matches('/').to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_repository_path_the_pages_name_exists() {
    let root = root();
    let mut pages = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
    {
        // The code map names paths relative to its sections: the test above reads it.
        if e.path().extension().is_some_and(|x| x == "md") && !e.path().ends_with("ARCHITECTURE.md")
        {
            pages.push(e.path());
        }
    }
    let mut checked = 0;
    let mut missing = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("a page");
        for (line, path) in repository_paths(&text) {
            checked += 1;
            if !root.join(&path).exists() {
                let name = page
                    .strip_prefix(&root)
                    .unwrap_or(page)
                    .display()
                    .to_string();
                missing.push(format!("{name}:{line}: `{path}`"));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} repository paths found in the pages: is the reader broken?"
    );
    assert!(
        missing.is_empty(),
        "pages name repository paths that do not exist (moved or renamed?):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_path_reader_sees_files_and_skips_code() {
    assert_eq!(
        path_tokens("- `entry.rs` (the `Observation::new` and `tests/it/`), `cargo test -p x`"),
        vec!["entry.rs".to_owned(), "tests/it/".to_owned()]
    );
    let root = root();
    assert!(!exists(&root, &root.join("platform"), "no-such-file.rs"));
    assert!(exists(&root, &root.join("platform"), "verdict.rs"));
}

/// Crates whose presence in a pure crate's tree means async, network, database or HTTP code.
const IMPURE: &[&str] = &[
    "tokio",
    "mio",
    "hyper",
    "reqwest",
    "axum",
    "tower",
    "sqlx",
    "rusqlite",
    "postgres",
    "kube-client",
    "kube-runtime",
    "async-std",
    "smol",
];

/// The crates `cargo tree` resolves for `package` with the feature options `features` (e.g.
/// `["--features", "k8s"]` or `["--no-default-features"]`), normal and build edges only
/// (resolved for this package alone, as building it alone would).
fn tree(package: &str, features: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "--locked",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .args(features)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_pure_crates_pull_no_async_network_or_database_crate() {
    for (package, features, must_have) in [
        ("hexagone-platform", &["--features", "k8s"][..], "maxminddb"),
        ("hexagone-ledger", &[][..], "ed25519-dalek"),
    ] {
        let deps = tree(package, features);
        assert!(
            deps.contains(must_have),
            "{package}: {must_have} missing from {deps:?}"
        );
        let bad: Vec<&String> = deps
            .iter()
            .filter(|d| {
                IMPURE
                    .iter()
                    .any(|f| d.as_str() == *f || d.starts_with(&format!("{f}-")))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{package} (features {features:?}) pulls {bad:?}"
        );
        // Library errors are thiserror enums with context; anyhow stays in the programs.
        assert!(!deps.contains("anyhow"), "{package} depends on anyhow");
    }
}

/// What the ledger takes of the platform, its vocabulary, brings none of the engine's readers.
#[test]
fn the_platform_vocabulary_alone_pulls_no_engine() {
    let deps = tree("hexagone-platform", &["--no-default-features"]);
    assert!(
        deps.contains("serde"),
        "the tree is read for real: {deps:?}"
    );
    for engine in ["maxminddb", "yaml_serde", "time"] {
        assert!(
            !deps.contains(engine),
            "hexagone-platform without `engine` pulls {engine}: {deps:?}"
        );
    }
}

#[derive(serde::Deserialize)]
struct Object {
    kind: String,
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default, rename = "roleRef")]
    role_ref: Option<RoleRef>,
    #[serde(default)]
    subjects: Vec<Subject>,
}

/// The metadata fields read.
#[derive(serde::Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
}

#[derive(serde::Deserialize)]
struct Rule {
    #[serde(default, rename = "apiGroups")]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
}

#[derive(serde::Deserialize)]
struct RoleRef {
    name: String,
}

#[derive(serde::Deserialize)]
struct Subject {
    kind: String,
    name: String,
}

#[test]
fn the_operator_rbac_can_create_secrets_but_never_read_them() {
    let root = root();
    let mut objects = Vec::new();
    for file in ["manifests/rbac/operator.yaml", "manifests/operator.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let value: yaml_serde::Value = serde::Deserialize::deserialize(doc).expect(file);
            if value.get("kind").is_some()
                && let Ok(o) = yaml_serde::from_value::<Object>(value)
            {
                objects.push(o);
            }
        }
    }
    // The roles bound to the operator's ServiceAccount.
    let roles: BTreeSet<String> = objects
        .iter()
        .filter(|o| o.kind.ends_with("Binding"))
        .filter(|o| {
            o.subjects
                .iter()
                .any(|s| s.kind == "ServiceAccount" && s.name == "hexagone-operator")
        })
        .filter_map(|o| o.role_ref.as_ref().map(|r| r.name.clone()))
        .collect();
    assert!(
        !roles.is_empty(),
        "no role is bound to the operator's ServiceAccount"
    );
    let mut secret_rules = 0;
    for o in objects
        .iter()
        .filter(|o| o.kind.ends_with("Role") && roles.contains(&o.metadata.name))
    {
        for r in &o.rules {
            let core = r.api_groups.iter().any(|g| g.is_empty() || g == "*");
            let secrets = r.resources.iter().any(|x| x == "secrets" || x == "*");
            if core && secrets {
                secret_rules += 1;
                assert!(
                    r.verbs.iter().all(|v| v == "create"),
                    "role {} lets the operator {:?} Secrets: it may only create them",
                    o.metadata.name,
                    r.verbs
                );
            }
        }
    }
    assert!(
        secret_rules > 0,
        "no rule about Secrets found: the operator creates credentials"
    );
}

#[test]
fn the_operator_cannot_reach_the_ledger() {
    // The operator never writes the ledger: it does not even link the code that could.
    let deps = tree("hexagone-operator", &[]);
    assert!(deps.contains("hexagone-platform"), "{deps:?}");
    for forbidden in ["hexagone-ledger", "hexagone-auditor", "sqlx"] {
        assert!(
            !deps.contains(forbidden),
            "hexagone-operator depends on {forbidden}"
        );
    }
}

/// The auditor guide's Go program (the block marked `file=c2spcheck.go`) is
/// `docs/c2spcheck/c2spcheck.go` verbatim: the program an auditor builds from the page is the one the tests run.
#[test]
fn the_guides_quote_their_programs_verbatim() {
    let root = root();
    let page = std::fs::read_to_string(root.join("docs/guide-auditor.md")).expect("the guide");
    let fence = "```go file=c2spcheck.go\n";
    let start = page.find(fence).expect("the guide's Go program block") + fence.len();
    let quoted = &page[start..start + page[start..].find("\n```\n").expect("its end") + 1];
    let kept = std::fs::read_to_string(root.join("docs/c2spcheck/c2spcheck.go")).expect("the file");
    if quoted != kept {
        let line = quoted
            .lines()
            .zip(kept.lines())
            .position(|(a, b)| a != b)
            .map_or(quoted.lines().count().min(kept.lines().count()), |i| i);
        panic!(
            "docs/guide-auditor.md's copy of docs/c2spcheck/c2spcheck.go differs from the file at its line {}: paste the file into the block",
            line + 1
        );
    }
}
