//! Benchmark: ledger append throughput (each batch sealed, signed and committed with the head
//! swap in one transaction) against two baselines with the same batching, on SQLite and, when
//! `HEXAGONE_TEST_POSTGRES_URL` is set, on PostgreSQL:
//! - raw inserts of the same entries, one row each (sequence number, leaf hash, text, object
//!   key: the ledger's table before entries were stored in chunks, and the baseline the
//!   ledger issue set; PostgreSQL compresses the text with lz4);
//! - raw inserts of the same entries packed in chunks beforehand (`store::chunk`: the
//!   ledger's table now), which leaves only the ledger's own work in the ratio.
//!
//! The three alternate batch by batch, so that other work on the machine slows all alike. The
//! bodies handed to the ledger are owned (as the CLI and the service hand them over): copying
//! the fixture is done before the clock starts.
//!
//! The peer: when `HEXAGONE_IMMUDB_APPEND` names the `tests/peers/immudb` program (`tests/run
//! bench` builds it), the same entries, in the same batches, are appended to immudb's embedded
//! store (v1.11.1, synced commits) three ways: keyed by object (store and identifier, as a user
//! keys objects) waiting for indexing, the same without waiting (`AsyncCommit`), and keyed by
//! position (the key only increases, immudb's slow path). SQLite rounds and peer rounds
//! alternate, `HEXAGONE_BENCH_APPEND_ROUNDS` times (default 3); medians and ranges are printed,
//! and our median as a ratio to each peer's. What each side includes is printed with it.
//!
//! `HEXAGONE_BENCH_APPEND_N` sets the number of entries (default 500,000), batches of 10,000.
//! Run: `cargo bench -p hexagone-auditor --bench append`.

/// The allocator the `hexagone-auditor` binary ships with (`auditor/src/main.rs`), so that the
/// library is measured as it runs there.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod common;
#[path = "common/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::ledger::Sequencer;
use hexagone_auditor::ledger::entry::{Body, Timestamp};
use hexagone_auditor::store::Ledger;
use hexagone_auditor::store::chunk::EntryRow;
use hexagone_auditor::store::chunk::{self, ChunkRow};
use hexagone_auditor::store::db::Db;
use sqlx::QueryBuilder;

use common::fresh_postgres;
use peer::{immudb_peer, spread};

const BATCH: usize = 10_000;

/// An observation as the locality engine would record it (made without the engine).
fn body(i: u64) -> Body {
    hexagone_auditor::ledger::entry::fixture::observation(i)
}

/// The baselines' tables: one row per entry (the ledger's former `ledger_entries`), and the
/// same shape and storage as `ledger_chunks`; no ledger logic.
async fn raw_table(db: &Db) {
    let chunks = match db {
        Db::Sqlite(_) => {
            "CREATE TABLE raw_chunks (first_seq INTEGER PRIMARY KEY, entry_count INTEGER NOT NULL, leaves BLOB NOT NULL, objects BLOB NOT NULL, codec INTEGER NOT NULL, bodies BLOB NOT NULL)"
        }
        Db::Postgres(_) => {
            "CREATE TABLE raw_chunks (first_seq BIGINT PRIMARY KEY, entry_count INTEGER NOT NULL, leaves BYTEA NOT NULL, objects BYTEA NOT NULL, codec INTEGER NOT NULL, bodies BYTEA NOT NULL)"
        }
    };
    match db {
        Db::Sqlite(p) => {
            sqlx::query(chunks).execute(p).await.unwrap();
            sqlx::query("CREATE TABLE raw_entries (seq INTEGER PRIMARY KEY, leaf BLOB NOT NULL, body TEXT NOT NULL, object_key BIGINT)")
                .execute(p)
                .await
                .unwrap();
            sqlx::query("CREATE INDEX raw_entries_object ON raw_entries (object_key)")
                .execute(p)
                .await
                .unwrap();
        }
        Db::Postgres(p) => {
            sqlx::query(chunks).execute(p).await.unwrap();
            sqlx::query("ALTER TABLE raw_chunks ALTER COLUMN bodies SET STORAGE EXTERNAL")
                .execute(p)
                .await
                .unwrap();
            sqlx::query("CREATE TABLE raw_entries (seq BIGINT PRIMARY KEY, leaf BYTEA NOT NULL, body TEXT NOT NULL, object_key BIGINT)")
                .execute(p)
                .await
                .unwrap();
            sqlx::query("CREATE INDEX raw_entries_object ON raw_entries (object_key, seq)")
                .execute(p)
                .await
                .unwrap();
            sqlx::raw_sql(
                "DO $$ BEGIN ALTER TABLE raw_entries ALTER COLUMN body SET COMPRESSION lz4; \
                 EXCEPTION WHEN feature_not_supported THEN NULL; END $$",
            )
            .execute(p)
            .await
            .unwrap();
        }
    }
}

/// The baseline for one batch: the same rows (already sealed) inserted in one transaction,
/// with the statements the ledger uses.
async fn raw_batch(db: &Db, batch: &[EntryRow]) {
    match db {
        Db::Sqlite(p) => {
            let mut tx = p.begin().await.unwrap();
            for chunk in batch.chunks(2000) {
                let mut qb = QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO raw_entries (seq, leaf, body, object_key) ",
                );
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(r.seq as i64)
                        .push_bind(r.leaf.to_vec())
                        .push_bind(r.body.clone())
                        .push_bind(r.object_keys.map(|k| k[0]));
                });
                qb.build().execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        Db::Postgres(p) => {
            let mut tx = p.begin().await.unwrap();
            for chunk in batch.chunks(2000) {
                sqlx::query("INSERT INTO raw_entries (seq, leaf, body, object_key) SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::text[], $4::bigint[])")
                    .bind(chunk.iter().map(|r| r.seq as i64).collect::<Vec<_>>())
                    .bind(chunk.iter().map(|r| &r.leaf[..]).collect::<Vec<_>>())
                    .bind(chunk.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
                    .bind(chunk.iter().map(|r| r.object_keys.map(|k| k[0])).collect::<Vec<_>>())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
    }
}

/// The second baseline for one batch: the same entries, packed in chunks beforehand,
/// inserted in one transaction with the statements the ledger uses.
async fn raw_chunks(db: &Db, batch: &[ChunkRow]) {
    match db {
        Db::Sqlite(p) => {
            let mut tx = p.begin().await.unwrap();
            for part in batch.chunks(1000) {
                let mut qb = QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO raw_chunks (first_seq, entry_count, leaves, objects, codec, bodies) ",
                );
                qb.push_values(part, |mut b, c| {
                    b.push_bind(c.first as i64)
                        .push_bind(i64::from(c.count))
                        .push_bind(c.leaves.clone())
                        .push_bind(c.objects.clone())
                        .push_bind(c.codec)
                        .push_bind(c.bodies.clone());
                });
                qb.build().execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        Db::Postgres(p) => {
            let mut tx = p.begin().await.unwrap();
            sqlx::query("INSERT INTO raw_chunks (first_seq, entry_count, leaves, objects, codec, bodies) SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::bytea[], $4::bytea[], $5::int[], $6::bytea[])")
                .bind(batch.iter().map(|c| c.first as i64).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.count as i32).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| &c.leaves[..]).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| &c.objects[..]).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.codec).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| &c.bodies[..]).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    }
}

/// Times of one run.
struct Times {
    ledger: Duration,
    /// Processor time (all threads) spent in the ledger's appends.
    ledger_cpu: Duration,
    rows: Duration,
    chunks: Duration,
}

/// The ledger path (hold the head, seal a batch, sign, commit entries, subtree hashes, head
/// and checkpoint) and the baselines, batch by batch in turn on two databases, so that the
/// load other processes put on the machine weighs on all alike.
async fn interleaved(
    ledger_url: &str,
    raw_url: &str,
    items: &[Body],
    rows: &[EntryRow],
    packed: &[Vec<ChunkRow>],
) -> Times {
    let key =
        SignerKey::from_signing_key("bench.hexagone/ledger", SigningKey::from_bytes(&[1; 32]))
            .unwrap();
    let ledger = Ledger::open(ledger_url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key).await.unwrap();
    let raw = Db::connect(raw_url).await.unwrap();
    raw_table(&raw).await;
    let mut times = Times {
        ledger: Duration::ZERO,
        ledger_cpu: Duration::ZERO,
        rows: Duration::ZERO,
        chunks: Duration::ZERO,
    };
    for ((chunk, batch), packed) in items.chunks(BATCH).zip(rows.chunks(BATCH)).zip(packed) {
        let owned = chunk.to_vec();
        let (t, cpu) = (Instant::now(), cpu_time());
        ledger
            .append(&mut seq, Timestamp(1_764_300_000_000), owned)
            .await
            .unwrap();
        times.ledger += t.elapsed();
        times.ledger_cpu += cpu_time() - cpu;
        let t = Instant::now();
        raw_batch(&raw, batch).await;
        times.rows += t.elapsed();
        let t = Instant::now();
        raw_chunks(&raw, packed).await;
        times.chunks += t.elapsed();
    }
    assert_eq!(ledger.head().await.unwrap().size, items.len() as u64);
    ledger.close().await;
    raw.close().await;
    times
}

/// Processor time used by this process so far, all threads.
fn cpu_time() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .expect("the process clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn report(backend: &str, n: usize, t: &Times) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "{backend}: ledger append {:.0} entries/s ({:.2?}); raw inserts of the same entries one row each {:.0} rows/s ({:.2?}), ratio ledger/raw rows {:.2}; raw inserts of the same entries packed in chunks beforehand {:.0} entries/s ({:.2?}), ratio ledger/raw chunks {:.2}",
        rate(t.ledger),
        t.ledger,
        rate(t.rows),
        t.rows,
        rate(t.ledger) / rate(t.rows),
        rate(t.chunks),
        t.chunks,
        rate(t.ledger) / rate(t.chunks),
    );
    println!(
        "{backend}: the ledger's appends used {:.2?} of processor time, all threads ({:.2} µs per entry, {:.2} cores busy on average)",
        t.ledger_cpu,
        t.ledger_cpu.as_secs_f64() * 1e6 / n as f64,
        t.ledger_cpu.as_secs_f64() / t.ledger.as_secs_f64()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::var("HEXAGONE_BENCH_APPEND_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let items: Vec<Body> = (0..n as u64).map(body).collect();
    let mut seq = Sequencer::new(
        SignerKey::from_signing_key("bench.hexagone/ledger", SigningKey::from_bytes(&[1; 32]))
            .unwrap(),
    );
    let t = Instant::now();
    let rows: Vec<EntryRow> = items
        .iter()
        .map(|b| {
            let s = seq.seal_encoded(Timestamp(1_764_300_000_000), &b.encode());
            let object_keys = hexagone_auditor::store::db::body_keys(b);
            EntryRow {
                seq: s.seq,
                leaf: s.leaf,
                body: s.text,
                object_keys,
            }
        })
        .collect();
    let sealing = t.elapsed();
    let t = Instant::now();
    let packed: Vec<Vec<ChunkRow>> = rows
        .chunks(BATCH)
        .map(|batch| batch.chunks(chunk::CHUNK).map(chunk::pack).collect())
        .collect();
    let packing = t.elapsed();
    let plain: usize = rows.iter().map(|r| r.body.len() + 1).sum();
    let stored: usize = packed.iter().flatten().map(|c| c.bodies.len()).sum();
    println!("{n} entries, batches of {BATCH}, one checkpoint per batch");
    println!(
        "sealing alone (encode, hash, chain; one thread, no database): {:.0} entries/s ({sealing:.2?})",
        n as f64 / sealing.as_secs_f64()
    );
    println!(
        "packing alone (chunks of {}, LZ4; one thread): {:.0} entries/s ({packing:.2?}); texts {} bytes per entry, stored {} (ratio {:.1})",
        chunk::CHUNK,
        n as f64 / packing.as_secs_f64(),
        plain / n,
        stored / n,
        plain as f64 / stored as f64
    );

    let rounds: usize = std::env::var("HEXAGONE_BENCH_APPEND_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = tempfile::tempdir().unwrap();
    let peer = std::env::var("HEXAGONE_IMMUDB_APPEND").ok();
    if let Some(program) = &peer {
        write_entries(&dir.path().join("entries.txt"), &rows);
        println!("immudb peer: {program}");
    }
    let mut ours = Vec::new();
    let mut peers: Vec<(&str, Vec<f64>)> = PEER_MODES.iter().map(|m| (m.0, Vec::new())).collect();
    for round in 0..rounds {
        let times = interleaved(
            &format!(
                "sqlite:{}",
                dir.path().join(format!("ledger-{round}.sqlite")).display()
            ),
            &format!(
                "sqlite:{}",
                dir.path().join(format!("raw-{round}.sqlite")).display()
            ),
            &items,
            &rows,
            &packed,
        )
        .await;
        println!("round {}", round + 1);
        report("SQLite (WAL, synchronous=FULL)", n, &times);
        ours.push(n as f64 / times.ledger.as_secs_f64());
        // This round's databases go before the peer writes about as much.
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("ledger-{round}."))
                || name.starts_with(&format!("raw-{round}."))
            {
                let _ = std::fs::remove_file(f.path());
            }
        }
        if let Some(program) = &peer {
            for ((label, args), (_, rates)) in PEER_MODES.iter().zip(&mut peers) {
                let rate = immudb_peer(
                    program,
                    dir.path(),
                    &dir.path().join("entries.txt"),
                    BATCH,
                    args,
                    &format!("{round}-{label}"),
                );
                println!("immudb ({label}): {rate:.0} entries/s");
                rates.push(rate);
            }
        }
    }
    let (median, low, high) = spread(&mut ours);
    println!(
        "SQLite ledger append over {rounds} rounds: median {median:.0} entries/s (range {low:.0}..{high:.0})"
    );
    println!(
        "SQLite target >= 200,000 entries/s: {}",
        if median >= 200_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    if peer.is_none() {
        println!(
            "immudb peer: not run (HEXAGONE_IMMUDB_APPEND is not set; `tests/run bench` builds and sets it)"
        );
    }
    for (label, rates) in &mut peers {
        if rates.is_empty() {
            continue;
        }
        let (m, lo, hi) = spread(rates);
        println!(
            "immudb ({label}) over {rounds} rounds: median {m:.0} entries/s (range {lo:.0}..{hi:.0}); ratio of medians SQLite ledger / immudb: {:.2}",
            median / m
        );
    }
    if peer.is_some() {
        println!(
            "what each side does: the ledger seals each entry (canonical encoding, SHA-256 leaf, chain), adds it to the Merkle tree, stores the subtree hashes, packs and LZ4-compresses the texts, writes the object index keys with the chunk, signs a checkpoint per batch and commits it with the head, synced (SQLite WAL, synchronous=FULL); it does not judge (the entries are judged already) nor build the object index (built at the first proof by object). immudb stores each entry as a value under its key in its own hash tree and commit log, synced, one transaction per batch; keyed by object it indexes the keys in its B-tree before Commit returns, and after AsyncCommit returns; it neither compresses nor signs."
        );
    }
    drop(dir);

    match std::env::var("HEXAGONE_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let times = interleaved(
                &fresh_postgres(&base, "bench_ledger").await,
                &fresh_postgres(&base, "bench_raw").await,
                &items,
                &rows,
                &packed,
            )
            .await;
            report("PostgreSQL", n, &times);
            let rate = n as f64 / times.ledger.as_secs_f64();
            println!(
                "PostgreSQL target >= 100,000 entries/s: {}",
                if rate >= 100_000.0 { "met" } else { "NOT met" }
            );
        }
        _ => println!("PostgreSQL: not run (HEXAGONE_TEST_POSTGRES_URL is not set)"),
    }
}

/// The peer's three ways: a label and the program's arguments.
const PEER_MODES: [(&str, &[&str]); 3] = [
    (
        "keyed by object, Commit waits for indexing",
        &["-key", "object"],
    ),
    (
        "keyed by object, AsyncCommit",
        &["-key", "object", "-async"],
    ),
    ("keyed by position", &["-key", "position"]),
];

/// The entries' texts, one per line: the peer's input.
fn write_entries(path: &std::path::Path, rows: &[EntryRow]) {
    let mut text = String::with_capacity(rows.iter().map(|r| r.body.len() + 1).sum());
    for r in rows {
        text.push_str(&r.body);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}
