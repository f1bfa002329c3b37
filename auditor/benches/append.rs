//! Benchmark: ledger append throughput (each batch sealed, signed and committed with the head
//! swap in one transaction)
//! against raw inserts of the same rows with the same batching, on SQLite and, when
//! `HEXAGONE_TEST_POSTGRES_URL` is set, on PostgreSQL.
//!
//! `HEXAGONE_BENCH_APPEND_N` sets the number of entries (default 500,000), batches of 10,000.
//! Run: `cargo bench -p hexagone-auditor --bench append`.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::ledger::Sequencer;
use hexagone_auditor::ledger::entry::{Body, Timestamp};
use hexagone_auditor::store::Ledger;
use hexagone_auditor::store::db::{Db, EntryRow};
use sqlx::QueryBuilder;

const BATCH: usize = 10_000;

/// An observation as the locality engine would record it (made without the engine).
fn body(i: u64) -> Body {
    hexagone_auditor::ledger::entry::fixture::observation(i)
}

/// The ledger path: hold the head, seal a batch, sign, commit entries and head, per batch.
async fn ledger_append(url: &str, items: &[Body]) -> Duration {
    let key =
        SignerKey::from_signing_key("bench.hexagone/ledger", SigningKey::from_bytes(&[1; 32]))
            .unwrap();
    let ledger = Ledger::open(url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key).await.unwrap();
    let t = Instant::now();
    for chunk in items.chunks(BATCH) {
        ledger
            .append(&mut seq, Timestamp(1_764_300_000_000), chunk)
            .await
            .unwrap();
    }
    let d = t.elapsed();
    assert_eq!(ledger.head().await.unwrap().size, items.len() as u64);
    ledger.close().await;
    d
}

/// The baseline: the same rows (already sealed) inserted into a plain table of the same
/// shape, one transaction per batch, the same statements, no ledger logic.
async fn raw_inserts(url: &str, rows: &[EntryRow]) -> Duration {
    let db = Db::connect(url).await.unwrap();
    let d = match &db {
        Db::Sqlite(p) => {
            sqlx::query("CREATE TABLE raw_entries (seq INTEGER PRIMARY KEY, leaf BLOB NOT NULL, body TEXT NOT NULL, object_key BIGINT)")
                .execute(p)
                .await
                .unwrap();
            sqlx::query("CREATE INDEX raw_entries_object ON raw_entries (object_key)")
                .execute(p)
                .await
                .unwrap();
            let t = Instant::now();
            for batch in rows.chunks(BATCH) {
                let mut tx = p.begin().await.unwrap();
                for chunk in batch.chunks(2000) {
                    let mut qb = QueryBuilder::<sqlx::Sqlite>::new(
                        "INSERT INTO raw_entries (seq, leaf, body, object_key) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.seq as i64)
                            .push_bind(r.leaf.to_vec())
                            .push_bind(r.body.clone())
                            .push_bind(r.object_key);
                    });
                    qb.build().execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
            t.elapsed()
        }
        Db::Postgres(p) => {
            sqlx::query("CREATE TABLE raw_entries (seq BIGINT PRIMARY KEY, leaf BYTEA NOT NULL, body TEXT NOT NULL, object_key BIGINT)")
                .execute(p)
                .await
                .unwrap();
            sqlx::query("CREATE INDEX raw_entries_object ON raw_entries (object_key)")
                .execute(p)
                .await
                .unwrap();
            let t = Instant::now();
            for batch in rows.chunks(BATCH) {
                let mut tx = p.begin().await.unwrap();
                sqlx::query("INSERT INTO raw_entries (seq, leaf, body, object_key) SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::text[], $4::bigint[])")
                    .bind(batch.iter().map(|r| r.seq as i64).collect::<Vec<_>>())
                    .bind(batch.iter().map(|r| r.leaf.to_vec()).collect::<Vec<_>>())
                    .bind(batch.iter().map(|r| r.body.clone()).collect::<Vec<_>>())
                    .bind(batch.iter().map(|r| r.object_key).collect::<Vec<_>>())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            t.elapsed()
        }
    };
    db.close().await;
    d
}

fn report(backend: &str, n: usize, ledger: Duration, raw: Duration) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "{backend}: ledger append {:.0} entries/s ({ledger:.2?}); raw inserts of the same rows {:.0} rows/s ({raw:.2?}); ratio ledger/raw {:.2}",
        rate(ledger),
        rate(raw),
        rate(ledger) / rate(raw)
    );
}

async fn fresh_postgres(base: &str, name: &str) -> String {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    for stmt in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
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
    let rows: Vec<EntryRow> = items
        .iter()
        .map(|b| {
            let s = seq.seal(Timestamp(1_764_300_000_000), b.clone());
            let object_key = match b {
                Body::Observation(o) => Some(hexagone_auditor::store::db::object_key(&o.object.id)),
                Body::KeyRotation { .. } => None,
            };
            EntryRow {
                seq: s.seq,
                leaf: s.leaf,
                body: s.text,
                object_key,
            }
        })
        .collect();
    println!("{n} entries, batches of {BATCH}, one checkpoint per batch");

    let dir = tempfile::tempdir().unwrap();
    let raw = raw_inserts(
        &format!("sqlite:{}", dir.path().join("raw.sqlite").display()),
        &rows,
    )
    .await;
    let ledger = ledger_append(
        &format!("sqlite:{}", dir.path().join("ledger.sqlite").display()),
        &items,
    )
    .await;
    report("SQLite (WAL, synchronous=FULL)", n, ledger, raw);
    let rate = n as f64 / ledger.as_secs_f64();
    println!(
        "SQLite target >= 200,000 entries/s: {}",
        if rate >= 200_000.0 { "met" } else { "NOT met" }
    );

    match std::env::var("HEXAGONE_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let raw = raw_inserts(&fresh_postgres(&base, "bench_raw").await, &rows).await;
            let ledger = ledger_append(&fresh_postgres(&base, "bench_ledger").await, &items).await;
            report("PostgreSQL", n, ledger, raw);
        }
        _ => println!("PostgreSQL: not run (HEXAGONE_TEST_POSTGRES_URL is not set)"),
    }
}
