//! Shared helpers for the integration tests: temporary ledgers built with the pure core, the
//! real binary, and the PostgreSQL URL from the environment.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::ledger::Sequencer;
use hexagone_auditor::ledger::entry::{Body, Timestamp};

/// The log origin used by tests.
pub const ORIGIN: &str = "hexagone.test/ledger";

/// A deterministic signing key.
pub fn signer(seed: u8) -> SignerKey {
    SignerKey::from_signing_key(ORIGIN, SigningKey::from_bytes(&[seed; 32])).unwrap()
}

/// The policy `append` judges test observations under.
pub const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/france-standard.yaml"
);

/// A policy file shipped in `policies/`.
pub fn policy(name: &str) -> String {
    format!("{}/../policies/{name}.yaml", env!("CARGO_MANIFEST_DIR"))
}

/// A plausible observation body for object `i`, made without the locality engine (see
/// [`hexagone_auditor::ledger::entry::fixture::observation`]).
pub fn observation(i: u64) -> Body {
    hexagone_auditor::ledger::entry::fixture::observation(i)
}

/// An `append` input line for object `i` on `node` (JSON of name, providerID, labels and
/// addresses as the cluster reports them).
pub fn node_line(i: u64, node: &str) -> String {
    format!(
        r#"{{"store":"minio/documents","class":"document","object":"spaces/{}/doc-{i}","content":"{}","node":{node}}}"#,
        i % 97,
        hex::encode(hexagone_auditor::ledger::tree::leaf_hash(&i.to_be_bytes()))
    )
}

/// The `append` input line for observation `i` (facts only): a node in Paris, except every
/// 7th from 3 (its address is in DE: a violation under the French policies) and every 7th
/// from 5 (only a private address: never compliant).
pub fn observation_json(i: u64) -> String {
    let address = match i % 7 {
        3 => format!("5.9.{}.1", i % 200),
        5 => format!("10.0.{}.1", i % 200),
        _ => format!("51.15.{}.1", i % 200),
    };
    node_line(
        i,
        &format!(
            r#"{{"name":"scw-{}","providerID":"scw://fr-par-1/{}","labels":{{"topology.kubernetes.io/region":"fr-par"}},"addresses":[{{"type":"InternalIP","address":"10.1.0.{}"}},{{"type":"ExternalIP","address":"{address}"}}]}}"#,
            i % 13,
            i % 13,
            i % 13
        ),
    )
}

/// Entries made by the pure core: canonical texts and leaf hashes, with a checkpoint note
/// after every `every` entries (and at the end).
pub struct MemoryLedger {
    pub texts: Vec<String>,
    pub leaves: Vec<[u8; 32]>,
    /// (size, note)
    pub checkpoints: Vec<(u64, String)>,
}

pub fn memory_ledger(key: &SignerKey, n: u64, every: u64) -> MemoryLedger {
    let mut seq = Sequencer::new(key.clone());
    let mut out = MemoryLedger {
        texts: Vec::new(),
        leaves: Vec::new(),
        checkpoints: Vec::new(),
    };
    for i in 0..n {
        // Odd entries record a writer's request, as entries submitted with a key do.
        let request = (i % 2 == 1)
            .then(|| hexagone_auditor::ledger::entry::request_hash(&format!("local append r-{i}")));
        let body = observation(i).with_request(request);
        let s = seq.seal(Timestamp(1_764_300_000_000 + i as i64), body);
        out.texts.push(s.text);
        out.leaves.push(s.leaf);
        if (i + 1) % every == 0 || i + 1 == n {
            out.checkpoints.push((i + 1, seq.sign()));
        }
    }
    out
}

/// Path of the built `hexagone-auditor` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hexagone-auditor"))
}

/// `append --policy POLICY --db DB --key KEY` and `extra`.
pub fn append_args<'a>(db: &'a str, key: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["append", "--policy", POLICY, "--db", db, "--key", key];
    args.extend_from_slice(extra);
    args
}

/// Runs the binary with `args` and optional stdin.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn hexagone-auditor");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        // A command that stops early (a refused key) closes its input: not an error here.
        if let Err(e) = input.write_all(s.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs and asserts the exit code, returning stdout.
pub fn run_ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = run(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(0),
        "hexagone-auditor {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Generates a key with the CLI into `dir`; returns (private key path, verifier key string).
pub fn keygen(dir: &Path, file: &str) -> (PathBuf, String) {
    let path = dir.join(file);
    let out = run_ok(
        &["keygen", "--name", ORIGIN, "--out", path.to_str().unwrap()],
        None,
    );
    let vkey = out
        .lines()
        .find_map(|l| l.strip_prefix("verifier key: "))
        .expect("keygen prints the verifier key")
        .to_string();
    (path, vkey)
}

/// `serve token add NAME --tokens TOKENS`: the token it prints once.
pub fn add_token(tokens: &Path, name: &str) -> String {
    run_ok(
        &[
            "serve",
            "token",
            "add",
            name,
            "--tokens",
            tokens.to_str().unwrap(),
        ],
        None,
    )
    .trim()
    .to_string()
}

/// The PostgreSQL URL the test script exported; a test that needs it fails without it.
pub fn postgres_url() -> String {
    match std::env::var("HEXAGONE_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "HEXAGONE_TEST_POSTGRES_URL is not set: start a server with \
             `eval \"$(tests/scripts/postgres.sh start)\"` before running the PostgreSQL tests"
        ),
    }
}

/// A fresh, empty PostgreSQL database on the test server; returns its URL.
pub async fn fresh_postgres() -> String {
    use sqlx::Connection as _;
    let base = postgres_url();
    let name = format!("ledger_{}_{}", std::process::id(), rand::random::<u32>());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

/// A fresh SQLite database file in `dir`.
pub fn fresh_sqlite(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("ledger.sqlite").display())
}

/// Exports the ledger at `url` and verifies the bundle against `trust`.
pub async fn export_and_verify(
    url: &str,
    trust: &str,
) -> (
    Vec<u8>,
    Result<hexagone_auditor::ledger::verify::Summary, hexagone_auditor::ledger::verify::Finding>,
) {
    let ledger = hexagone_auditor::store::Ledger::open(url).await.unwrap();
    let mut bundle = Vec::new();
    ledger.export(&mut bundle, |_, _| {}).await.unwrap();
    ledger.close().await;
    let result = verify_bytes(&bundle, trust);
    (bundle, result)
}

/// Verifies bundle bytes against `trust`.
pub fn verify_bytes(
    bundle: &[u8],
    trust: &str,
) -> Result<hexagone_auditor::ledger::verify::Summary, hexagone_auditor::ledger::verify::Finding> {
    hexagone_auditor::bundle_verify::verify_bundle(
        bundle,
        hexagone_auditor::ledger::verify::Verifier::new(trust),
        |_| {},
    )
    .unwrap()
}

/// A fixed clock reading for store tests: 2025-11-28T03:20:00Z.
pub const NOW: Timestamp = Timestamp(1_764_300_000_000);

/// `n` observation bodies starting at object `from`.
pub fn bodies(from: u64, n: u64) -> Vec<Body> {
    (from..from + n).map(observation).collect()
}

/// Runs each named `async fn(url: String)` scenario as two tests: on a fresh SQLite file and
/// on a fresh PostgreSQL database.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(crate::util::fresh_sqlite(dir.path())).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::util::fresh_postgres().await).await;
                }
            )*
        }
    };
}
