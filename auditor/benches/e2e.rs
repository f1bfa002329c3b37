//! Benchmark: `hexagone-auditor append` end to end, as users run it: the release binary reads
//! a JSON Lines file of observations (facts only), judges each under the shipped Diffusion
//! Restreinte policy with the bundled geolocation databases, seals, signs and commits them in
//! batches of 10,000 to SQLite (WAL, synchronous=FULL), each batch acknowledged once durable.
//! The places are a real cluster's: hundreds of nodes and storage endpoints, each at its own
//! address, in French ranges of the qualified operators (most attested, a few not) and in
//! foreign ones (OVH outside France, Hetzner, AWS), observed in a scattered order.
//!
//! The peer: when `HEXAGONE_IMMUDB_APPEND` names the `tests/peers/immudb` program (`tests/run
//! bench` builds it), the entries the CLI wrote (read back from its ledger) are stored in
//! immudb's embedded store in the same batches, keyed by object, synced, waiting for indexing
//! and not (`AsyncCommit`). `append` rounds and peer rounds alternate,
//! `HEXAGONE_BENCH_E2E_ROUNDS` times (default 3); medians and ranges are printed, the ratio of
//! medians and the issue's target (`append` ≥ 120,000 observations/s). When
//! `HEXAGONE_BENCH_E2E_BEFORE` names another build of `hexagone-auditor` (an earlier commit's),
//! it runs on the same input in the same rounds, `append` and `serve`, for before/after ratios
//! measured together.
//!
//! Each round also runs `hexagone-auditor serve` with the same policy and places on a fresh
//! ledger: `HEXAGONE_BENCH_E2E_CLIENTS` writers (default 32) post the same observations over
//! loopback in arrays of 500, each waiting for its request's acknowledgement (durable under a
//! signed checkpoint) before the next; timed from the first request to the last
//! acknowledgement, against the issue's target (≥ 150,000 observations/s) and immudb.
//!
//! After the first round the ledgers of `append` and of `serve` are exported and `verify
//! --policy` replays every verdict (not timed): the fast paths record what the engine decides.
//!
//! `HEXAGONE_BENCH_E2E_N` sets the number of observations (default 300,000). With
//! `HEXAGONE_BENCH_E2E_FIXTURE=DIR` the benchmark only writes its input, attestations and
//! inventory into DIR (to profile `append` on them, `docs/ledger.md`).
//! Run: `cargo bench -p hexagone-auditor --bench e2e`. Figures: `docs/ledger.md`, *End to end*.

#[path = "common/knobs.rs"]
mod knobs;
#[path = "common/peer.rs"]
mod peer;
#[path = "common/service.rs"]
mod service;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::store::Ledger;
use knobs::env;
use peer::{immudb_peer, spread};

const BATCH: usize = 10_000;
const TARGET: f64 = 120_000.0;
/// Issue 26's target for `serve` over HTTP: observations judged, durable and acknowledged.
const SERVE_TARGET: f64 = 150_000.0;
/// Observations per request to `serve`.
const PER_REQUEST: usize = 500;
const NODES: usize = 400;
const ENDPOINTS: usize = 120;

fn policy() -> String {
    knobs::policy("france-diffusion-restreinte")
}

/// /16 networks of the qualified French operators that the bundled databases place in France
/// (OVH SAS, AS16276), checked with `hexagone-auditor locate`.
const FRENCH: [&str; 20] = [
    "5.135", "5.196", "37.59", "37.187", "46.105", "51.38", "51.75", "51.91", "51.210", "54.36",
    "54.37", "54.38", "91.121", "92.222", "94.23", "151.80", "164.132", "176.31", "178.33",
    "188.165",
];

/// /16 networks outside France or outside the qualified operators: OVH in Germany, Poland,
/// Italy and Canada, Hetzner in Germany, AWS in the United States and in Paris (located in
/// France, operated under US law).
const FOREIGN: [&str; 12] = [
    "51.77", "137.74", "145.239", "146.59", "178.32", "51.161", "51.79", "5.9", "88.198", "3.5",
    "52.47", "35.180",
];

/// Node `k`: most in France (OVH regions), every fifth abroad; its own address in its /16.
fn node_address(k: usize) -> String {
    let net = if k % 5 == 4 {
        FOREIGN[k % FOREIGN.len()]
    } else {
        FRENCH[k % FRENCH.len()]
    };
    format!("{net}.{}.{}", 1 + k / 250, 1 + k % 250)
}

const REGIONS: [&str; 3] = ["gra", "sbg", "rbx"];

fn node_json(k: usize) -> String {
    let region = REGIONS[k % 3];
    format!(
        r#"{{"name":"{region}-node-{k}","providerID":"ovh://{region}/{k}","labels":{{"topology.kubernetes.io/region":"{region}","topology.kubernetes.io/zone":"{region}{}","kubernetes.io/hostname":"{region}-node-{k}","node.kubernetes.io/instance-type":"b3-32"}},"addresses":[{{"type":"Hostname","address":"{region}-node-{k}"}},{{"type":"ExternalIP","address":"{}"}}]}}"#,
        1 + k % 4,
        node_address(k)
    )
}

/// Endpoint `e` of the inventory (backup targets, object stores): in France but every
/// fourth abroad, at an address of its own.
fn endpoint_address(e: usize) -> String {
    let net = if e % 4 == 3 {
        FOREIGN[e % FOREIGN.len()]
    } else {
        FRENCH[(e * 7) % FRENCH.len()]
    };
    format!("{net}.{}.{}", 200 + e / 250, 1 + e % 250)
}

/// The security officers' attestations: every node but every tenth (an unattested node is a
/// violation), each in France as the officer says (a foreign node's address contradicts it).
fn attestations() -> String {
    let mut out = String::new();
    for k in (0..NODES).filter(|k| k % 10 != 7) {
        let region = REGIONS[k % 3];
        writeln!(
            out,
            "- metadata: {{name: {region}-node-{k}}}\n  spec: {{nodeName: {region}-node-{k}, providerID: 'ovh://{region}/{k}', country: FR, hostingCompany: OVH SAS, site: {}, basis: contract, attestedBy: rssi@ministere.example.fr, validUntil: '2099-01-01T00:00:00Z'}}",
            region.to_uppercase()
        )
        .unwrap();
    }
    out
}

fn inventory() -> String {
    let mut out = String::new();
    for e in 0..ENDPOINTS {
        writeln!(
            out,
            "- name: backup-{e}\n  addresses: [{}]\n  region: gra\n  attestation: {{country: FR, hostingCompany: OVH SAS, site: GRA, basis: contract, attestedBy: rssi@ministere.example.fr, validUntil: '2099-01-01T00:00:00Z'}}",
            endpoint_address(e)
        )
        .unwrap();
    }
    out
}

/// Observation `i`: one object, on a place drawn in a scattered order (as objects of many
/// writers arrive): a node (three in four), an inventory endpoint by name, or an address
/// outside the inventory.
fn line(i: usize, nodes: &[String]) -> String {
    let content = hex::encode(hexagone_auditor::ledger::tree::leaf_hash(&i.to_be_bytes()));
    let pick = (i.wrapping_mul(2_654_435_761) >> 7) % (NODES + ENDPOINTS + 20);
    if pick < NODES {
        format!(
            r#"{{"store":"minio/documents","class":"document","object":"spaces/{}/doc-{i}","content":"sha256:{content}","node":{}}}"#,
            i % 997,
            nodes[pick]
        )
    } else if pick < NODES + ENDPOINTS {
        format!(
            r#"{{"store":"pg/main","class":"backup","object":"wal/{i:016x}","content":"sha256:{content}","endpoint":"backup-{}"}}"#,
            pick - NODES
        )
    } else {
        format!(
            r#"{{"store":"pg/main","class":"backup","object":"wal/{i:016x}","content":"sha256:{content}","endpoint":"{}"}}"#,
            endpoint_address(pick)
        )
    }
}

/// The input, the places and a key, written once for every round.
struct Fixture {
    dir: tempfile::TempDir,
    input: PathBuf,
    attestations: PathBuf,
    inventory: PathBuf,
    empty: PathBuf,
}

fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<String> = (0..NODES).map(node_json).collect();
    let mut text = String::with_capacity(n * 560);
    for i in 0..n {
        text.push_str(&line(i, &nodes));
        text.push('\n');
    }
    let input = dir.path().join("observations.jsonl");
    std::fs::write(&input, text).unwrap();
    let attestations = dir.path().join("attestations.yaml");
    std::fs::write(&attestations, self::attestations()).unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, self::inventory()).unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    Fixture {
        dir,
        input,
        attestations,
        inventory,
        empty,
    }
}

/// One `append` run of `program` on `input` into a fresh ledger `name`; its wall time (process
/// start to exit) and the database's URL. Every batch must be acknowledged.
fn append(program: &Path, f: &Fixture, input: &Path, name: &str, n: usize) -> (Duration, String) {
    let key = f.dir.path().join(format!("{name}.key"));
    let signer = SignerKey::generate("bench.hexagone/e2e").unwrap();
    hexagone_auditor::keyfile::save(&signer, &key).unwrap();
    std::fs::write(
        f.dir.path().join(format!("{name}.key.pub")),
        signer.verifier().to_string(),
    )
    .unwrap();
    let db = format!(
        "sqlite:{}",
        f.dir.path().join(format!("{name}.sqlite")).display()
    );
    let t = Instant::now();
    let out = Command::new(program)
        .args(["append", "--db", &db, "--key"])
        .arg(&key)
        .arg("--input")
        .arg(input)
        .args(["--policy", &policy()])
        .arg("--attestations")
        .arg(&f.attestations)
        .arg("--inventory")
        .arg(&f.inventory)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let d = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {stdout}{}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    if n > 0 {
        let last = stdout.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("ack ") && last.ends_with(&format!(" last={} size={n}", n - 1)),
            "{stdout}"
        );
    }
    (d, db)
}

/// The entries of the ledger at `db`, one per line (the peer's input), and how many carry each
/// verdict.
fn entries(db: &str, out: &Path) -> (usize, [usize; 3]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ledger = Ledger::open(db).await.unwrap();
        let size = ledger.head().await.unwrap().size;
        let mut text = String::new();
        let mut verdicts = [0; 3];
        let mut next = 0;
        while next < size {
            let page = ledger.db().entries_from(next, size, 10_000).await.unwrap();
            for (seq, _, body) in page {
                assert_eq!(seq, next);
                for (v, name) in ["compliant", "violation", "unknown"].iter().enumerate() {
                    if body.contains(&format!("\"verdict\":\"{name}\"")) {
                        verdicts[v] += 1;
                    }
                }
                text.push_str(&body);
                text.push('\n');
                next += 1;
            }
        }
        ledger.close().await;
        std::fs::write(out, text).unwrap();
        (size as usize, verdicts)
    })
}

/// Exports the ledger at `db` and replays it with `verify --policy`; its time.
fn verify(program: &Path, f: &Fixture, db: &str, name: &str, key: &Path) -> Duration {
    let bundle = f.dir.path().join(format!("{name}.bundle"));
    let t = Instant::now();
    let run = |args: &mut Command| {
        let out = args.output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new(program)
        .args(["export", "--db", db, "--out"])
        .arg(&bundle));
    run(Command::new(program)
        .arg("verify")
        .arg(&bundle)
        .arg("--trust")
        .arg(key)
        .args(["--policy", &policy()]));
    let d = t.elapsed();
    let _ = std::fs::remove_file(&bundle);
    d
}

/// One `serve` run of `program` on a fresh ledger `name`, with the same policy and places as
/// `append`: `clients` writers post `bodies` over loopback until every request is
/// acknowledged. Its time from the first request to the last acknowledgement, the time the
/// service took to start listening, and what the writers were told to retry. In round 0 the
/// ledger is exported and every verdict replayed (not timed): the service's parallel judging
/// records what the engine decides.
fn serve(
    program: &Path,
    f: &Fixture,
    bodies: &[String],
    clients: usize,
    name: &str,
    n: usize,
    replay: bool,
) -> (Duration, Duration, service::Retries) {
    let db = format!(
        "sqlite:{}",
        f.dir.path().join(format!("{name}.sqlite")).display()
    );
    let args: Vec<OsString> = vec![
        "--policy".into(),
        policy().into(),
        "--attestations".into(),
        f.attestations.clone().into(),
        "--inventory".into(),
        f.inventory.clone().into(),
    ];
    let t = Instant::now();
    let service = service::start(program, f.dir.path(), name, &db, &args);
    let started = t.elapsed();
    let (d, retries) = service::post_all(&service, bodies, clients);
    let key_pub = service.key_pub.clone();
    service::stop(service, n);
    if replay {
        let v = verify(program, f, &db, name, &key_pub);
        println!(
            "  serve's ledger exported and verify --policy (every verdict replayed): passed in {v:.2?}"
        );
    }
    for ext in ["sqlite", "sqlite-wal", "sqlite-shm"] {
        let _ = std::fs::remove_file(f.dir.path().join(format!("{name}.{ext}")));
    }
    (d, started, retries)
}

const PEER_MODES: [(&str, &[&str]); 2] = [
    (
        "keyed by object, Commit waits for indexing",
        &["-key", "object"],
    ),
    (
        "keyed by object, AsyncCommit",
        &["-key", "object", "-async"],
    ),
];

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let n = env("HEXAGONE_BENCH_E2E_N", 300_000).max(1);
    let rounds = env("HEXAGONE_BENCH_E2E_ROUNDS", 3).max(1);
    let clients = env("HEXAGONE_BENCH_E2E_CLIENTS", 32).max(1);
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_hexagone-auditor"));
    let before = std::env::var("HEXAGONE_BENCH_E2E_BEFORE")
        .ok()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let peer = std::env::var("HEXAGONE_IMMUDB_APPEND")
        .ok()
        .filter(|p| !p.is_empty());
    let f = fixture(n);
    if let Ok(out) = std::env::var("HEXAGONE_BENCH_E2E_FIXTURE") {
        std::fs::create_dir_all(&out).unwrap();
        for p in [&f.input, &f.attestations, &f.inventory] {
            std::fs::copy(p, Path::new(&out).join(p.file_name().unwrap())).unwrap();
        }
        println!("fixture written to {out}");
        return;
    }
    let input_bytes = std::fs::metadata(&f.input).unwrap().len();
    println!(
        "append end to end: {n} observations ({} bytes per line) on {NODES} nodes and {ENDPOINTS} inventory endpoints plus 20 addresses outside the inventory, each place at its own address; policy Diffusion Restreinte; SQLite (WAL, synchronous=FULL), batches of {BATCH}; load average at start {}",
        input_bytes / n as u64,
        load()
    );
    let bodies = service::bodies(
        std::fs::read_to_string(&f.input).unwrap().lines(),
        PER_REQUEST,
    );
    let entries_file = f.dir.path().join("entries.txt");
    let mut serve_rates: Vec<f64> = Vec::new();
    let mut rates: Vec<f64> = Vec::new();
    let mut startups: Vec<f64> = Vec::new();
    let mut steady: Vec<f64> = Vec::new();
    let mut before_rates: Vec<f64> = Vec::new();
    let mut before_serve: Vec<f64> = Vec::new();
    let mut peers: Vec<Vec<f64>> = vec![Vec::new(); PEER_MODES.len()];
    for round in 0..rounds {
        let (startup, _) = append(&ours, &f, &f.empty, &format!("empty-{round}"), 0);
        startups.push(startup.as_secs_f64());
        let name = format!("ours-{round}");
        let (d, db) = append(&ours, &f, &f.input, &name, n);
        let rate = n as f64 / d.as_secs_f64();
        rates.push(rate);
        let past_start = n as f64 / d.saturating_sub(startup).as_secs_f64();
        steady.push(past_start);
        println!(
            "round {}: append {rate:.0} observations/s ({d:.2?}; start with empty input {startup:.2?}, {past_start:.0}/s past it); load {}",
            round + 1,
            load()
        );
        if round == 0 {
            let (size, verdicts) = entries(&db, &entries_file);
            assert_eq!(size, n);
            assert!(
                verdicts[0] > 0 && verdicts[1] > 0 && verdicts[0] + verdicts[1] + verdicts[2] == n,
                "{verdicts:?}"
            );
            println!(
                "  verdicts: {} compliant, {} violation, {} unknown; entries {} bytes on average",
                verdicts[0],
                verdicts[1],
                verdicts[2],
                std::fs::metadata(&entries_file).unwrap().len() / n as u64
            );
            let v = verify(
                &ours,
                &f,
                &db,
                &name,
                &f.dir.path().join(format!("{name}.key.pub")),
            );
            println!("  export and verify --policy (every verdict replayed): passed in {v:.2?}");
        }
        for ext in ["sqlite", "sqlite-wal", "sqlite-shm"] {
            let _ = std::fs::remove_file(f.dir.path().join(format!("{name}.{ext}")));
        }
        let (d, started, retries) = serve(
            &ours,
            &f,
            &bodies,
            clients,
            &format!("serve-{round}"),
            n,
            round == 0,
        );
        let rate = n as f64 / d.as_secs_f64();
        serve_rates.push(rate);
        println!(
            "  serve over HTTP, {clients} writers x {PER_REQUEST} per request: {rate:.0} observations/s ({d:.2?} from the first request to the last acknowledgement; listening after {started:.2?}; retried {} busy, {} connections closed); load {}",
            retries.busy,
            retries.closed,
            load()
        );
        if let Some(program) = &before {
            let name = format!("before-{round}");
            let (d, _) = append(program, &f, &f.input, &name, n);
            let rate = n as f64 / d.as_secs_f64();
            before_rates.push(rate);
            println!(
                "  before ({}): {rate:.0} observations/s ({d:.2?})",
                program.display()
            );
            let (d, _, _) = serve(
                program,
                &f,
                &bodies,
                clients,
                &format!("before-serve-{round}"),
                n,
                false,
            );
            let rate = n as f64 / d.as_secs_f64();
            before_serve.push(rate);
            println!("  before, serve over HTTP: {rate:.0} observations/s ({d:.2?})");
            for ext in ["sqlite", "sqlite-wal", "sqlite-shm"] {
                let _ = std::fs::remove_file(f.dir.path().join(format!("{name}.{ext}")));
            }
        }
        if let Some(program) = &peer {
            for (mode, ((label, args), rates)) in PEER_MODES.iter().zip(&mut peers).enumerate() {
                let rate = immudb_peer(
                    program,
                    f.dir.path(),
                    &entries_file,
                    BATCH,
                    args,
                    &format!("{round}-{mode}"),
                );
                println!("  immudb ({label}): {rate:.0} entries/s");
                rates.push(rate);
            }
        }
    }
    let (median, low, high) = spread(&mut rates);
    let (startup, _, _) = spread(&mut startups);
    let (past, past_low, past_high) = spread(&mut steady);
    println!(
        "append over {rounds} rounds: median {median:.0} observations/s (range {low:.0}..{high:.0}), process start to exit; start with empty input (opening the geolocation databases, policy, places and ledger) median {startup:.2} s; past the start median {past:.0}/s (range {past_low:.0}..{past_high:.0})"
    );
    println!(
        "append target >= {TARGET:.0} observations/s: {}",
        if median >= TARGET { "met" } else { "NOT met" }
    );
    let (serve_median, serve_low, serve_high) = spread(&mut serve_rates);
    println!(
        "serve over {rounds} rounds, {clients} writers: median {serve_median:.0} observations/s (range {serve_low:.0}..{serve_high:.0}), first request to last acknowledgement"
    );
    println!(
        "serve target >= {SERVE_TARGET:.0} observations/s over HTTP: {}",
        if serve_median >= SERVE_TARGET {
            "met"
        } else {
            "NOT met"
        }
    );
    if !before_rates.is_empty() {
        let (b, lo, hi) = spread(&mut before_rates);
        println!(
            "before over {rounds} rounds: median {b:.0} observations/s (range {lo:.0}..{hi:.0}); ratio of medians append / before: {:.2}",
            median / b
        );
        let (b, lo, hi) = spread(&mut before_serve);
        println!(
            "before, serve over {rounds} rounds: median {b:.0} observations/s (range {lo:.0}..{hi:.0}); ratio of medians serve / before: {:.2}",
            serve_median / b
        );
    }
    match &peer {
        None => println!(
            "immudb peer: not run (HEXAGONE_IMMUDB_APPEND is not set; `tests/run bench` builds and sets it)"
        ),
        Some(program) => {
            println!("immudb peer: {program}");
            for ((label, _), rates) in PEER_MODES.iter().zip(&mut peers) {
                let (m, lo, hi) = spread(rates);
                println!(
                    "immudb ({label}) over {rounds} rounds: median {m:.0} entries/s (range {lo:.0}..{hi:.0}); ratio of medians append / immudb: {:.2}, serve / immudb: {:.2}",
                    median / m,
                    serve_median / m
                );
            }
            println!(
                "what each side does: append starts the process, opens the databases, reads and parses each line, judges it (the engine's evaluation of its place, kept per place; evidence, verdict, policy and database identities in the entry), seals it (canonical encoding, SHA-256 leaf, chain, Merkle tree), packs and LZ4-compresses the texts, signs a checkpoint per batch and commits it with the head, synced, and prints each acknowledgement; serve does the same per request, judging requests on every core while the sequencer commits (the process and its start not timed), each request acknowledged once durable; immudb, in a process of its own with the entries already in memory and keyed, stores the same entry texts under their object in its hash tree and commit log, synced, one transaction per batch (indexed before Commit returns, or after AsyncCommit returns), and neither judges, compresses nor signs."
            );
        }
    }
}
