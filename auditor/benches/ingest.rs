//! Benchmark: sustained ingest through `hexagone-auditor serve` over HTTP on loopback (bearer
//! token, JSON arrays, judged, committed under signed checkpoints, answered when durable)
//! against the baseline of direct library appends of the same observations (parse, judge,
//! `Ledger::submit` in batches of 10,000) on SQLite. Prints both rates, their ratio, the
//! issue's target (50,000 events/s over HTTP) and the direct path's time by phase (parsing,
//! judging, committing), and the judging time of the same observations on the places of a
//! 13-node cluster (where the judge's kept evaluations apply). Figures: `docs/auditor-service.md`, *Throughput*.
//!
//! `HEXAGONE_BENCH_INGEST_N` sets the number of observations (default 200,000),
//! `HEXAGONE_BENCH_INGEST_CLIENTS` the concurrent HTTP clients (default 8: each waits until its
//! request is durable before sending the next, so fewer leave the service idle between group
//! commits and measure latency rather than throughput); requests carry 500
//! observations each. Run: `cargo bench -p hexagone-auditor --bench ingest`.

/// The allocator the `hexagone-auditor` binary ships with (`auditor/src/main.rs`), so that the
/// library is measured as it runs there.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "common/knobs.rs"]
mod knobs;
#[path = "common/service.rs"]
mod service;

use knobs::env;
use std::path::Path;
use std::time::{Duration, Instant};

use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::ledger::entry::Timestamp;
use hexagone_auditor::store::Ledger;

const PER_REQUEST: usize = 500;
const BATCH: usize = 10_000;
const TARGET: f64 = 50_000.0;

fn policy() -> String {
    knobs::policy("france-standard")
}

/// Observation `i`: a node in Paris, every 7th in Germany.
fn line(i: usize) -> String {
    let address = line_address(i);
    format!(
        r#"{{"store":"minio/documents","class":"document","object":"spaces/{}/doc-{i}","content":"{}","node":{{"name":"scw-{}","providerID":"scw://fr-par-1/{}","labels":{{"topology.kubernetes.io/region":"fr-par"}},"addresses":[{{"type":"ExternalIP","address":"{address}"}}]}}}}"#,
        i % 97,
        hex::encode(hexagone_auditor::ledger::tree::leaf_hash(&i.to_be_bytes())),
        i % 13,
        i % 13,
    )
}

/// Observation `i` on a cluster of 13 nodes, each with one address (node 3 in Germany): the
/// places repeat, as they do in a cluster, where the per-observation lines above give 18,200
/// distinct (node, address) pairs.
fn cluster_line(i: usize) -> String {
    let node = i % 13;
    let address = if node == 3 {
        "5.9.3.1".to_owned()
    } else {
        format!("51.15.{node}.1")
    };
    line(i).replace(
        &format!("\"address\":\"{}\"", line_address(i)),
        &format!("\"address\":\"{address}\""),
    )
}

fn line_address(i: usize) -> String {
    if i % 7 == 3 {
        format!("5.9.{}.1", i % 200)
    } else {
        format!("51.15.{}.1", i % 200)
    }
}

/// The judge's policy (the shipped Standard (France)) and the bundled geolocation databases.
fn judge_parts() -> (
    hexagone_platform::LocalityPolicy,
    hexagone_platform::GeoDatabases,
) {
    let policy =
        hexagone_platform::LocalityPolicy::from_file(Path::new(&policy())).expect("policy");
    let geo = hexagone_platform::GeoDatabases::open(
        &hexagone_auditor::locate::GeoArgs::default()
            .paths()
            .unwrap(),
    )
    .expect("geolocation databases");
    (policy, geo)
}

/// Judging alone, `lines` in batches as the baseline does: the engine's evaluation of a place
/// is kept between the observations reported there.
fn judging_alone(lines: &[String]) -> Duration {
    let (policy, geo) = judge_parts();
    let judge = hexagone_auditor::judge::ObservationJudge::new(
        &policy,
        &geo,
        Vec::new(),
        Default::default(),
    );
    let mut spent = Duration::ZERO;
    for chunk in lines.chunks(BATCH) {
        let snapshot = judge.snapshot();
        let now = time::OffsetDateTime::now_utc();
        let reports: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(n, l)| hexagone_auditor::ingest::parse_line(n as u64 + 1, l).unwrap())
            .collect();
        let t = Instant::now();
        let judged: Vec<_> = reports
            .into_iter()
            .map(|r| judge.judge(r, &snapshot, now).unwrap())
            .collect();
        spent += t.elapsed();
        assert_eq!(judged.len(), chunk.len());
    }
    spent
}

/// Where the baseline's time went: parsing the JSON lines, judging them (the locality engine
/// and the entry bodies), committing them (`Ledger::submit`: encoding, hashing, signing the
/// checkpoint, the SQLite transaction).
#[derive(Default)]
struct Phases {
    parse: Duration,
    judge: Duration,
    commit: Duration,
}

/// The baseline: the library path `append` takes, without HTTP.
fn direct(dir: &Path, lines: &[String]) -> (Duration, Phases) {
    let (policy, geo) = judge_parts();
    let judge = hexagone_auditor::judge::ObservationJudge::new(
        &policy,
        &geo,
        Vec::new(),
        Default::default(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite:{}", dir.join("direct.sqlite").display());
        let ledger = Ledger::open(&url).await.unwrap();
        let (mut seq, _) = ledger
            .sequencer(SignerKey::generate("bench.hexagone/ingest").unwrap())
            .await
            .unwrap();
        let mut phases = Phases::default();
        let t = Instant::now();
        for chunk in lines.chunks(BATCH) {
            let snapshot = judge.snapshot();
            let now = time::OffsetDateTime::now_utc();
            let p = Instant::now();
            let reports: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(n, l)| hexagone_auditor::ingest::parse_line(n as u64 + 1, l).unwrap())
                .collect();
            let j = Instant::now();
            phases.parse += j - p;
            let items: Vec<_> = reports
                .into_iter()
                .map(|r| judge.judge(r, &snapshot, now).unwrap())
                .collect();
            let c = Instant::now();
            phases.judge += c - j;
            ledger
                .submit(&mut seq, Timestamp::now(), &items)
                .await
                .unwrap();
            phases.commit += c.elapsed();
        }
        let d = t.elapsed();
        assert_eq!(ledger.head().await.unwrap().size, lines.len() as u64);
        ledger.close().await;
        (d, phases)
    })
}

/// The service: `serve` on loopback, `clients` writers posting arrays, retrying when busy.
fn http(dir: &Path, lines: &[String], clients: usize) -> Duration {
    let db = format!("sqlite:{}", dir.join("http.sqlite").display());
    let service = service::start(
        Path::new(env!("CARGO_BIN_EXE_hexagone-auditor")),
        dir,
        "http",
        &db,
        &["--policy".into(), policy().into()],
    );
    let bodies = service::bodies(lines.iter(), PER_REQUEST);
    let (d, retries) = service::post_all(&service, &bodies, clients);
    service::stop(service, lines.len());
    if retries.busy + retries.closed > 0 {
        println!(
            "  the writers retried {} requests answered busy and {} connections closed unanswered",
            retries.busy, retries.closed
        );
    }
    d
}

fn main() {
    let n = env("HEXAGONE_BENCH_INGEST_N", 200_000);
    let clients = env("HEXAGONE_BENCH_INGEST_CLIENTS", 8).max(1);
    let lines: Vec<String> = (0..n).map(line).collect();
    let dir = tempfile::tempdir().unwrap();
    let (d_direct, phases) = direct(dir.path(), &lines);
    let d_http = http(dir.path(), &lines, clients);
    let cluster: Vec<String> = (0..n).map(cluster_line).collect();
    assert!(
        cluster[3].contains("\"address\":\"5.9.3.1\""),
        "{}",
        cluster[3]
    );
    let judged_cluster = judging_alone(&cluster);
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "direct library appends (baseline): {n} observations in {d_direct:.2?} = {:.0}/s",
        rate(d_direct)
    );
    println!(
        "  of which parsing {:.2?}, judging {:.2?}, committing {:.2?}",
        phases.parse, phases.judge, phases.commit
    );
    println!(
        "  judging alone, the same {n} observations on one 13-node cluster's places (each node one address): {judged_cluster:.2?}"
    );
    println!(
        "serve over HTTP, {clients} clients x {PER_REQUEST} per request: {n} observations in {d_http:.2?} = {:.0}/s",
        rate(d_http)
    );
    println!(
        "ratio HTTP / direct: {:.2}; target {TARGET:.0}/s over HTTP: {}",
        rate(d_http) / rate(d_direct),
        if rate(d_http) >= TARGET {
            "met"
        } else {
            "not met"
        }
    );
}
