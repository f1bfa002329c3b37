//! Benchmark: `prove` (an inclusion proof for an object, against the signed head) on a large
//! ledger, from the stored subtree hashes, against the same proof computed from every stored
//! leaf (how proofs were made before the hashes were stored) and against the floor of one row
//! read by primary key; then the time a sequencer takes to open the ledger. On SQLite and,
//! when `HEXAGONE_TEST_POSTGRES_URL` is set, PostgreSQL.
//!
//! `HEXAGONE_BENCH_PROVE_N` sets the number of entries (default 1,000,000), appended in
//! batches of 10,000. Run: `cargo bench -p hexagone-auditor --bench prove`.

mod common;

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::ledger::entry::{Body, Timestamp};
use hexagone_auditor::ledger::tree::{Frontier, Hash, inclusion_proof};
use hexagone_auditor::store::Ledger;

use common::fresh_postgres;

const BATCH: u64 = 10_000;
/// Proofs timed from the stored hashes.
const PROOFS: u64 = 200;
/// Proofs timed from every leaf (each reads the whole ledger's leaves).
const SLOW_PROOFS: u64 = 3;

fn body(i: u64) -> Body {
    hexagone_auditor::ledger::entry::fixture::observation(i)
}

/// Spread object numbers over the ledger (deterministic).
fn object(k: u64, n: u64) -> u64 {
    (k * 7_919 + 13) % n
}

/// The audit path computed from every leaf, page by page, as `prove` did before.
async fn path_from_every_leaf(ledger: &Ledger, index: u64, size: u64) -> Vec<Hash> {
    let mut leaves = Vec::with_capacity(size as usize);
    while (leaves.len() as u64) < size {
        let from = leaves.len() as u64;
        leaves.extend(
            ledger
                .db()
                .leaves(from, (from + BATCH).min(size))
                .await
                .unwrap(),
        );
    }
    inclusion_proof(index, size, &mut |a, b| {
        let mut f = Frontier::new();
        for l in &leaves[a as usize..b as usize] {
            f.push(*l);
        }
        Ok::<_, std::convert::Infallible>(f.root())
    })
    .unwrap()
    .unwrap()
}

async fn run(backend: &str, url: &str, n: u64) {
    let key = SignerKey::from_signing_key("bench.hexagone/prove", SigningKey::from_bytes(&[3; 32]))
        .unwrap();
    let ledger = Ledger::open(url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key.clone()).await.unwrap();
    let t = Instant::now();
    let mut at = 0;
    while at < n {
        let items: Vec<Body> = (at..(at + BATCH).min(n)).map(body).collect();
        at += items.len() as u64;
        ledger
            .append(&mut seq, Timestamp(1_764_300_000_000), items)
            .await
            .unwrap();
    }
    let built = t.elapsed();
    println!(
        "{backend}: {n} entries appended in {built:.1?} ({:.0} entries/s)",
        n as f64 / built.as_secs_f64()
    );

    // Floor: one entry read by primary key (the chunk holding it, decompressed).
    let t = Instant::now();
    for k in 0..PROOFS {
        let i = object(k, n);
        assert_eq!(
            ledger.db().entries_from(i, i + 1, 1).await.unwrap().len(),
            1
        );
    }
    let point = t.elapsed() / PROOFS as u32;

    // The first lookup by object brings the object index up to the head (it is filled
    // behind the head, not while appending): timed apart.
    let t = Instant::now();
    let i = object(PROOFS, n);
    ledger
        .prove(&format!("spaces/{}/doc-{i}", i % 97))
        .await
        .unwrap();
    let first = t.elapsed();
    println!(
        "{backend}: the first proof by object, which indexes the {n} entries' object keys, took {first:.2?} ({:.0} entries/s)",
        n as f64 / first.as_secs_f64()
    );

    let t = Instant::now();
    for k in 0..PROOFS {
        let i = object(k, n);
        let p = ledger
            .prove(&format!("spaces/{}/doc-{i}", i % 97))
            .await
            .unwrap();
        assert_eq!(p.verify(&[key.verifier().clone()], None).unwrap().seq, i);
    }
    let prove = t.elapsed() / PROOFS as u32;

    let t = Instant::now();
    for k in 0..SLOW_PROOFS {
        let i = object(k, n);
        let slow = path_from_every_leaf(&ledger, i, n).await;
        assert_eq!(slow, ledger.inclusion_path(i, n).await.unwrap());
    }
    let every_leaf: Duration = t.elapsed() / SLOW_PROOFS as u32;
    println!(
        "{backend}: prove (stored hashes, verified) {prove:.2?} per proof; the same path from every leaf {every_leaf:.2?} (ratio {:.0}x faster); one entry by primary key {point:.2?} (prove / point read {:.1}x)",
        every_leaf.as_secs_f64() / prove.as_secs_f64(),
        prove.as_secs_f64() / point.as_secs_f64()
    );
    ledger.close().await;

    // A sequencer opening the ledger checks the stored head by audit paths, reading no more
    // leaves than a proof does.
    let t = Instant::now();
    let ledger = Ledger::open(url).await.unwrap();
    let (seq, dropped) = ledger.sequencer(key).await.unwrap();
    let start = t.elapsed();
    assert_eq!((seq.size(), dropped), (n, None));
    println!(
        "{backend}: a sequencer opens the ledger (connect, migrations checked, head checked) in {start:.2?}; reading every leaf, as the start did before, takes about as long as the path from every leaf above"
    );
    ledger.close().await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u64 = std::env::var("HEXAGONE_BENCH_PROVE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "prove on a ledger of {n} entries: {PROOFS} proofs from stored hashes, {SLOW_PROOFS} from every leaf"
    );
    let dir = tempfile::tempdir().unwrap();
    run(
        "SQLite",
        &format!("sqlite:{}", dir.path().join("prove.sqlite").display()),
        n,
    )
    .await;
    drop(dir);
    match std::env::var("HEXAGONE_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let url = fresh_postgres(&base, "bench_prove").await;
            run("PostgreSQL", &url, n).await;
        }
        _ => println!("PostgreSQL: not run (HEXAGONE_TEST_POSTGRES_URL is not set)"),
    }
}
