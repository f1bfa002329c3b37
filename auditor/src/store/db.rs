//! The SQL of the ledger store, once for SQLite and once for PostgreSQL: the same statements
//! (`$n` placeholders work on both) expanded by one macro per backend, plus the batched inserts,
//! which differ (multi-row `VALUES` on SQLite, `UNNEST` arrays on PostgreSQL).

use std::collections::HashMap;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row as _};

use super::StoreError;
use super::chunk::{self, CHUNK, ChunkRow};
use crate::ledger::tree::{Hash, Subtree};

/// A connection pool to one of the supported databases.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite file in WAL mode.
    Sqlite(SqlitePool),
    /// PostgreSQL server.
    Postgres(PgPool),
}

/// The head row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadRow {
    /// Log origin.
    pub origin: String,
    /// Entries covered by the signed head.
    pub size: u64,
    /// Serialized tree frontier at `size`.
    pub frontier: Vec<u8>,
    /// Signed checkpoint note at `size` (none before the first checkpoint).
    pub note: Option<String>,
    /// Index of the key in force.
    pub key_index: u64,
}

/// A key rotation to record with a head advance.
#[derive(Debug, Clone)]
pub struct RotationRow {
    /// Index of the new key.
    pub key_index: u64,
    /// Its verifier string.
    pub verifier: String,
    /// The rotation entry.
    pub seq: u64,
}

/// A transaction holding the head row (SQLite: the write lock; PostgreSQL: the row lock):
/// the sequencer reads the head, checks nothing lies past it, writes a batch and swaps the
/// head, and no other sequencer commits in between. Dropped without commit, it rolls back.
pub enum HeadLock {
    /// On SQLite.
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    /// On PostgreSQL.
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl HeadLock {
    /// The head (size, note).
    pub async fn head(&mut self) -> Result<(u64, Option<String>), StoreError> {
        let head = match self {
            HeadLock::Sqlite(tx) => lite::head_in(tx).await?,
            HeadLock::Postgres(tx) => pg::head_in(tx).await?,
        };
        head.ok_or(StoreError::NotInitialised)
    }

    /// (count, first) of the rows at or past `size`.
    pub async fn past(&mut self, size: u64) -> Result<Option<(u64, u64)>, StoreError> {
        match self {
            HeadLock::Sqlite(tx) => lite::past_head(tx, size).await,
            HeadLock::Postgres(tx) => pg::past_head(tx, size).await,
        }
    }

    /// Size of the largest checkpoint ever recorded.
    pub async fn newest_checkpoint(&mut self) -> Result<u64, StoreError> {
        match self {
            HeadLock::Sqlite(tx) => lite::newest_checkpoint(tx).await,
            HeadLock::Postgres(tx) => pg::newest_checkpoint(tx).await,
        }
    }

    /// Deletes the rows at or past `size` and commits.
    pub async fn drop_past(self, size: u64) -> Result<(), StoreError> {
        match self {
            HeadLock::Sqlite(mut tx) => {
                lite::delete_past(&mut tx, size).await?;
                tx.commit().await?;
            }
            HeadLock::Postgres(mut tx) => {
                pg::delete_past(&mut tx, size).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Inserts chunks of entries (the batch is written in pieces while the rest is being
    /// sealed; nothing is visible before [`HeadLock::commit`]).
    pub async fn insert(&mut self, chunks: Vec<ChunkRow>) -> Result<(), StoreError> {
        match self {
            HeadLock::Sqlite(tx) => {
                // The bytes move into the statement's arguments (SQLite binds owned values).
                let mut chunks = chunks.into_iter().peekable();
                while chunks.peek().is_some() {
                    let mut qb = QueryBuilder::<sqlx::Sqlite>::new(
                        "INSERT INTO ledger_chunks (first_seq, entry_count, leaves, objects, codec, bodies) ",
                    );
                    qb.push_values(chunks.by_ref().take(SQLITE_CHUNK / 2), |mut b, c| {
                        b.push_bind(to_i64(c.first))
                            .push_bind(i64::from(c.count))
                            .push_bind(c.leaves)
                            .push_bind(c.objects)
                            .push_bind(c.codec)
                            .push_bind(c.bodies);
                    });
                    qb.build().execute(&mut **tx).await?;
                }
            }
            HeadLock::Postgres(tx) => {
                let firsts: Vec<i64> = chunks.iter().map(|c| to_i64(c.first)).collect();
                let counts: Vec<i32> = chunks.iter().map(|c| c.count as i32).collect();
                let leaves: Vec<&[u8]> = chunks.iter().map(|c| &c.leaves[..]).collect();
                let objects: Vec<&[u8]> = chunks.iter().map(|c| &c.objects[..]).collect();
                let codecs: Vec<i32> = chunks.iter().map(|c| c.codec).collect();
                let bodies: Vec<&[u8]> = chunks.iter().map(|c| &c.bodies[..]).collect();
                sqlx::query(
                    "INSERT INTO ledger_chunks (first_seq, entry_count, leaves, objects, codec, bodies) \
                     SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::bytea[], $4::bytea[], $5::int[], $6::bytea[])",
                )
                .bind(firsts)
                .bind(counts)
                .bind(leaves)
                .bind(objects)
                .bind(codecs)
                .bind(bodies)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }

    /// Inserts `requests` and the subtree hashes `nodes`, swaps the head from `old_size` to
    /// `new` with its checkpoint (and rotation), and commits with the rows inserted before.
    /// False (and nothing written) when the head was not at `old_size`.
    pub async fn commit(
        self,
        old_size: u64,
        requests: &[(String, u64)],
        nodes: &[(Subtree, Hash)],
        new: &HeadRow,
        rotation: Option<&RotationRow>,
    ) -> Result<bool, StoreError> {
        match self {
            HeadLock::Sqlite(mut tx) => {
                lite::put_nodes(&mut tx, nodes).await?;
                for chunk in requests.chunks(SQLITE_CHUNK) {
                    let mut qb =
                        QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO ledger_requests (id, seq) ");
                    qb.push_values(chunk, |mut b, (id, seq)| {
                        b.push_bind(id.clone()).push_bind(to_i64(*seq));
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                if !lite::swap_head(&mut tx, old_size, new, rotation).await? {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }
            HeadLock::Postgres(mut tx) => {
                pg::put_nodes(&mut tx, nodes).await?;
                if !requests.is_empty() {
                    let ids: Vec<String> = requests.iter().map(|r| r.0.clone()).collect();
                    let seqs: Vec<i64> = requests.iter().map(|r| to_i64(r.1)).collect();
                    sqlx::query(
                        "INSERT INTO ledger_requests (id, seq) SELECT * FROM UNNEST($1::text[], $2::bigint[])",
                    )
                    .bind(ids)
                    .bind(seqs)
                    .execute(&mut *tx)
                    .await?;
                }
                if !pg::swap_head(&mut tx, old_size, new, rotation).await? {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    }
}

/// Checks the chunks a reader meets, in order: each holds 1 to [`CHUNK`] entries and none
/// overlaps the one before (two rows holding the same entry: someone else wrote one).
#[derive(Default)]
struct Spans {
    end: Option<u64>,
}

impl Spans {
    /// (first, count) of the next chunk.
    fn next(&mut self, first: i64, count: i32) -> Result<(u64, usize), StoreError> {
        let first = u64::try_from(first)
            .map_err(|_| StoreError::Corrupt(format!("a chunk starts at entry {first}")))?;
        let n = chunk::check_count(first, i64::from(count))?;
        if let Some(end) = self.end
            && first < end
        {
            return Err(StoreError::Corrupt(format!(
                "entries {first}..{} are stored twice (two chunks hold them)",
                end.min(first + n as u64)
            )));
        }
        self.end = Some(first + n as u64);
        Ok((first, n))
    }
}

/// The chunks that may hold entries `$1 + CHUNK..$2`, with their texts.
const CHUNK_TEXTS: &str = "SELECT first_seq, entry_count, leaves, codec, bodies FROM ledger_chunks \
     WHERE first_seq > $1 AND first_seq < $2 ORDER BY first_seq";
/// The same, leaf hashes only.
const CHUNK_LEAVES: &str = "SELECT first_seq, entry_count, leaves FROM ledger_chunks \
     WHERE first_seq > $1 AND first_seq < $2 ORDER BY first_seq";

/// Most chunks (of up to 256 entries) indexed in one transaction.
const INDEX_CHUNKS: i64 = 4096;

/// Rows per multi-row insert statement on SQLite (4 parameters each, under its variable limit).
const SQLITE_CHUNK: usize = 2000;

fn hash(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| StoreError::Corrupt(format!("a stored hash has {} bytes", b.len())))
}

/// Index key of an object identifier: the first 8 bytes of its SHA-256, as a signed integer.
pub fn object_key(object_id: &str) -> i64 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(object_id.as_bytes());
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Index key of the object `object_id` of `store`: the first 8 bytes of the SHA-256 of the
/// store, a zero byte and the identifier (neither holds a zero byte, so no two pairs and no
/// [`object_key`] input share it). A lookup by store reads only that store's rows: entries
/// about the same identifier in other stores, however many, cost it nothing.
pub fn store_object_key(store: &str, object_id: &str) -> i64 {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(store.as_bytes());
    h.update([0]);
    h.update(object_id.as_bytes());
    i64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// The two object index keys of an entry: its object's [`object_key`], then its
/// [`store_object_key`].
pub type ObjectKeys = [i64; 2];

/// The object index rows of an entry text (none for a key rotation or a text that does not
/// decode: the index is derived, and every reader checks the entry a row points to). Read only
/// for chunks written before their rows kept both keys ([`chunk::object_keys`]).
fn entry_keys(text: &str, scratch: &mut String) -> Option<ObjectKeys> {
    let entry = crate::ledger::entry::Entry::decode_with(text.as_bytes(), scratch).ok()?;
    body_keys(&entry.body)
}

/// How often a SQLite pool's checkpoint task copies the write-ahead log into the database file
/// (see `checkpoint_wal`).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies SQLite's write-ahead log into the database file every [`CHECKPOINT_EVERY`] until
/// `pool` closes. SQLite's own checkpoints run inside the commit that crosses 1,000 pages (64 MB
/// with 64 KiB pages): one append in about thirty paid for copying the others, a tenth of the
/// append time. A passive checkpoint never blocks a writer (it copies what is committed and
/// stops at what a reader still needs); the writer after a complete one starts the log again
/// from its beginning; the last connection to close checkpoints what is left. Durability does
/// not depend on it: a commit is durable once its frames are synced in the log.
async fn checkpoint_wal(pool: SqlitePool) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if pool.is_closed() {
            break;
        }
        // Busy (another checkpoint running) or closed meanwhile: the next round retries.
        let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await;
    }
}

/// The [`ObjectKeys`] of the object an entry body is about (none for a key rotation).
pub fn body_keys(body: &crate::ledger::entry::Body) -> Option<ObjectKeys> {
    body.object()
        .map(|o| [object_key(&o.id), store_object_key(&o.store, &o.id)])
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).expect("ledger sizes stay below 2^63")
}

/// Expands the shared statements for one backend.
macro_rules! shared_ops {
    ($name:ident, $pool:ty, $begin:literal, $lock:literal) => {
        pub(super) mod $name {
            use super::*;

            pub async fn begin(pool: &$pool) -> Result<sqlx::Transaction<'static, <$pool as PoolDb>::Db>, sqlx::Error> {
                let mut tx = pool.begin_with($begin).await?;
                if !$lock.is_empty() {
                    sqlx::query($lock).execute(&mut *tx).await?;
                }
                Ok(tx)
            }

            pub async fn head(pool: &$pool) -> Result<Option<HeadRow>, StoreError> {
                let row = sqlx::query(
                    "SELECT origin, size, frontier, note, key_index FROM ledger_head WHERE id = 1",
                )
                .fetch_optional(pool)
                .await?;
                row.map(|r| {
                    Ok(HeadRow {
                        origin: r.try_get("origin")?,
                        size: r.try_get::<i64, _>("size")? as u64,
                        frontier: r.try_get("frontier")?,
                        note: r.try_get("note")?,
                        key_index: r.try_get::<i64, _>("key_index")? as u64,
                    })
                })
                .transpose()
            }

            pub async fn keys(pool: &$pool) -> Result<Vec<String>, StoreError> {
                let rows = sqlx::query("SELECT verifier FROM ledger_keys ORDER BY key_index")
                    .fetch_all(pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| r.try_get::<String, _>("verifier"))
                    .collect::<Result<_, _>>()?)
            }

            pub async fn init(pool: &$pool, origin: &str, frontier: &[u8], verifier: &str) -> Result<(), StoreError> {
                // SQLite: take the write lock first (a read upgraded to a write fails at once when
                // another writer got in between). PostgreSQL: ON CONFLICT lets the loser of a race
                // between two first starts find the winner's rows.
                let mut tx = begin(pool).await?;
                let exists = sqlx::query("SELECT 1 AS one FROM ledger_head WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    sqlx::query(
                        "INSERT INTO ledger_head (id, origin, size, frontier, note, key_index) VALUES (1, $1, 0, $2, NULL, 0) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(origin)
                    .bind(frontier)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("INSERT INTO ledger_keys (key_index, verifier, announced_in) VALUES (0, $1, NULL) ON CONFLICT (key_index) DO NOTHING")
                        .bind(verifier)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            pub async fn key_rows(pool: &$pool) -> Result<Vec<(String, Option<u64>)>, StoreError> {
                let rows = sqlx::query("SELECT verifier, announced_in FROM ledger_keys ORDER BY key_index")
                    .fetch_all(pool)
                    .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok((
                            r.try_get::<String, _>("verifier")?,
                            r.try_get::<Option<i64>, _>("announced_in")?.map(|s| s as u64),
                        ))
                    })
                    .collect()
            }

            /// (count, first) of the entries at or past `size`, inside a transaction. A chunk
            /// that starts below `size` and reaches past it was written by someone else (the
            /// sequencer's chunks end where a commit ends): refused.
            pub async fn past_head(
                tx: &mut sqlx::Transaction<'static, <$pool as PoolDb>::Db>,
                size: u64,
            ) -> Result<Option<(u64, u64)>, StoreError> {
                // Runs before every commit: each query reads a few rows in the primary key's
                // order whatever the statistics say; entries are counted only when there are some.
                let straddles = sqlx::query(
                    "SELECT first_seq FROM ledger_chunks WHERE first_seq < $1 AND first_seq > $2 AND first_seq + entry_count > $1 LIMIT 1",
                )
                .bind(to_i64(size))
                .bind(to_i64(size) - CHUNK as i64)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(r) = straddles {
                    return Err(StoreError::Corrupt(format!(
                        "the chunk of entries from {} reaches past the signed head ({size} entries): written by someone else",
                        r.try_get::<i64, _>("first_seq")?
                    )));
                }
                let Some(first) = sqlx::query("SELECT first_seq FROM ledger_chunks WHERE first_seq >= $1 ORDER BY first_seq LIMIT 1")
                    .bind(to_i64(size))
                    .fetch_optional(&mut **tx)
                    .await?
                else {
                    return Ok(None);
                };
                let n = sqlx::query("SELECT CAST(SUM(entry_count) AS BIGINT) AS n FROM ledger_chunks WHERE first_seq >= $1")
                    .bind(to_i64(size))
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get::<i64, _>("n")? as u64;
                Ok(Some((n, first.try_get::<i64, _>("first_seq")? as u64)))
            }

            /// The head (size, note) inside a transaction.
            pub async fn head_in(
                tx: &mut sqlx::Transaction<'static, <$pool as PoolDb>::Db>,
            ) -> Result<Option<(u64, Option<String>)>, StoreError> {
                let row = sqlx::query("SELECT size, note FROM ledger_head WHERE id = 1")
                    .fetch_optional(&mut **tx)
                    .await?;
                row.map(|r| Ok((r.try_get::<i64, _>("size")? as u64, r.try_get("note")?)))
                    .transpose()
            }

            /// Size of the largest checkpoint recorded, inside a transaction.
            pub async fn newest_checkpoint(
                tx: &mut sqlx::Transaction<'static, <$pool as PoolDb>::Db>,
            ) -> Result<u64, StoreError> {
                Ok(sqlx::query("SELECT MAX(size) AS size FROM ledger_checkpoints")
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get::<Option<i64>, _>("size")?
                    .map_or(0, |s| s as u64))
            }

            /// Deletes the rows at or past `size`, inside a transaction.
            pub async fn delete_past(
                tx: &mut sqlx::Transaction<'static, <$pool as PoolDb>::Db>,
                size: u64,
            ) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM ledger_chunks WHERE first_seq >= $1")
                    .bind(to_i64(size))
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM ledger_objects WHERE seq >= $1")
                    .bind(to_i64(size))
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE ledger_objects_indexed SET upto = $1 WHERE upto > $1")
                    .bind(to_i64(size))
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM ledger_nodes WHERE (idx + 1) << level > $1")
                    .bind(to_i64(size))
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Writes subtree hashes (replacing any row of the same subtree: rows past the
            /// head were never signed), inside a transaction.
            pub async fn put_nodes(
                tx: &mut sqlx::Transaction<'static, <$pool as PoolDb>::Db>,
                nodes: &[(Subtree, Hash)],
            ) -> Result<(), StoreError> {
                for chunk in nodes.chunks(SQLITE_CHUNK) {
                    let mut qb = QueryBuilder::<<$pool as PoolDb>::Db>::new(
                        "INSERT INTO ledger_nodes (level, idx, hash) ",
                    );
                    qb.push_values(chunk, |mut b, (s, h)| {
                        b.push_bind(i32::from(s.level))
                            .push_bind(to_i64(s.index))
                            .push_bind(h.to_vec());
                    });
                    qb.push(" ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash");
                    qb.build().execute(&mut **tx).await?;
                }
                Ok(())
            }

            pub async fn nodes(
                pool: &$pool,
                wanted: &[Subtree],
            ) -> Result<HashMap<Subtree, Hash>, StoreError> {
                let mut out = HashMap::new();
                // Short OR chains: SQLite limits the depth of an expression.
                for chunk in wanted.chunks(64) {
                    let mut qb = QueryBuilder::<<$pool as PoolDb>::Db>::new(
                        "SELECT level, idx, hash FROM ledger_nodes WHERE ",
                    );
                    let mut or = qb.separated(" OR ");
                    for s in chunk {
                        or.push("(level = ")
                            .push_bind_unseparated(i32::from(s.level))
                            .push_unseparated(" AND idx = ")
                            .push_bind_unseparated(to_i64(s.index))
                            .push_unseparated(")");
                    }
                    for r in qb.build().fetch_all(pool).await? {
                        let level = r.try_get::<i32, _>("level")?;
                        let s = Subtree {
                            level: u8::try_from(level).map_err(|_| {
                                StoreError::Corrupt(format!("a stored node has level {level}"))
                            })?,
                            index: r.try_get::<i64, _>("idx")? as u64,
                        };
                        out.insert(s, hash(r.try_get("hash")?)?);
                    }
                }
                Ok(out)
            }

            pub async fn node_count(pool: &$pool, level: u8) -> Result<u64, StoreError> {
                Ok(sqlx::query("SELECT COUNT(*) AS n FROM ledger_nodes WHERE level = $1")
                    .bind(i32::from(level))
                    .fetch_one(pool)
                    .await?
                    .try_get::<i64, _>("n")? as u64)
            }

            pub async fn add_nodes(pool: &$pool, nodes: &[(Subtree, Hash)]) -> Result<(), StoreError> {
                let mut tx = pool.begin().await?;
                put_nodes(&mut tx, nodes).await?;
                tx.commit().await?;
                Ok(())
            }

            /// Moves the head from `old_size` to `new`, records its checkpoint and rotation.
            pub async fn swap_head(
                tx: &mut sqlx::Transaction<'static, <$pool as PoolDb>::Db>,
                old_size: u64,
                new: &HeadRow,
                rotation: Option<&RotationRow>,
            ) -> Result<bool, StoreError> {
                let updated = sqlx::query(
                    "UPDATE ledger_head SET size = $1, frontier = $2, note = $3, key_index = $4 WHERE id = 1 AND size = $5",
                )
                .bind(to_i64(new.size))
                .bind(&new.frontier)
                .bind(&new.note)
                .bind(to_i64(new.key_index))
                .bind(to_i64(old_size))
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if updated != 1 {
                    return Ok(false);
                }
                if let Some(note) = &new.note {
                    sqlx::query("INSERT INTO ledger_checkpoints (size, note) VALUES ($1, $2)")
                        .bind(to_i64(new.size))
                        .bind(note)
                        .execute(&mut **tx)
                        .await?;
                }
                if let Some(r) = rotation {
                    sqlx::query("INSERT INTO ledger_keys (key_index, verifier, announced_in) VALUES ($1, $2, $3)")
                        .bind(to_i64(r.key_index))
                        .bind(&r.verifier)
                        .bind(to_i64(r.seq))
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(true)
            }

            /// The chunks holding entries `from..to`, in order (a chunk holds at most
            /// [`CHUNK`] entries, so the one holding `from` starts after `from - CHUNK`).
            /// `select` is one of [`CHUNK_TEXTS`] and [`CHUNK_LEAVES`].
            async fn chunks(
                pool: &$pool,
                select: &'static str,
                from: u64,
                to: u64,
            ) -> Result<Vec<<<$pool as PoolDb>::Db as sqlx::Database>::Row>, StoreError> {
                Ok(sqlx::query(select)
                .bind(to_i64(from) - CHUNK as i64)
                .bind(to_i64(to))
                .fetch_all(pool)
                .await?)
            }

            pub async fn entries_from(
                pool: &$pool,
                from: u64,
                to: u64,
                limit: u64,
            ) -> Result<Vec<(u64, Hash, String)>, StoreError> {
                let to = to.min(from.saturating_add(limit));
                let mut out = Vec::new();
                let mut spans = Spans::default();
                for r in chunks(pool, CHUNK_TEXTS, from, to).await? {
                    let (first, n) = spans.next(r.try_get("first_seq")?, r.try_get("entry_count")?)?;
                    if first + n as u64 <= from {
                        continue;
                    }
                    let leaves = chunk::leaves(first, n, &r.try_get::<Vec<u8>, _>("leaves")?)?;
                    let texts = chunk::texts(
                        first,
                        n,
                        r.try_get("codec")?,
                        &r.try_get::<Vec<u8>, _>("bodies")?,
                    )?;
                    for (i, (leaf, text)) in leaves.into_iter().zip(texts).enumerate() {
                        let seq = first + i as u64;
                        if (from..to).contains(&seq) {
                            out.push((seq, leaf, text));
                        }
                    }
                }
                Ok(out)
            }

            pub async fn leaves(pool: &$pool, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
                let mut out = Vec::new();
                let mut spans = Spans::default();
                for r in chunks(pool, CHUNK_LEAVES, from, to).await? {
                    let (first, n) = spans.next(r.try_get("first_seq")?, r.try_get("entry_count")?)?;
                    let leaves = chunk::leaves(first, n, &r.try_get::<Vec<u8>, _>("leaves")?)?;
                    for (i, leaf) in leaves.into_iter().enumerate() {
                        if (from..to).contains(&(first + i as u64)) {
                            out.push(leaf);
                        }
                    }
                }
                if out.len() as u64 != to - from {
                    return Err(StoreError::Corrupt(format!(
                        "entries {from}..{to} should be {} rows, found {}",
                        to - from,
                        out.len()
                    )));
                }
                Ok(out)
            }

            /// Brings the object index up to `upto` (the signed head), from the keys the chunks
            /// keep ([`chunk::object_keys`]; from their texts for chunks written before they
            /// kept both, [`entry_keys`]), up to [`INDEX_CHUNKS`] chunks per transaction:
            /// two rows per observation, under [`object_key`] and [`store_object_key`], inserted
            /// in key order:
            /// keys are random, so every transaction rewrites the index pages they fall in, and
            /// few large transactions rewrite each page few times.
            pub async fn index_objects(pool: &$pool, upto: u64) -> Result<(), StoreError> {
                loop {
                    let mut tx = pool.begin_with($begin).await?;
                    let done = sqlx::query("SELECT upto FROM ledger_objects_indexed WHERE id = 1")
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| r.try_get::<i64, _>("upto"))
                        .transpose()?
                        .map_or(0, |u| u as u64);
                    if done >= upto {
                        return Ok(());
                    }
                    let rows = sqlx::query(
                        "SELECT first_seq, entry_count, objects FROM ledger_chunks WHERE first_seq >= $1 AND first_seq < $2 ORDER BY first_seq LIMIT $3",
                    )
                    .bind(to_i64(done))
                    .bind(to_i64(upto))
                    .bind(INDEX_CHUNKS)
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut keys = Vec::new();
                    let mut scratch = String::new();
                    let mut end = done;
                    for r in &rows {
                        let first = r.try_get::<i64, _>("first_seq")? as u64;
                        let n = chunk::check_count(first, i64::from(r.try_get::<i32, _>("entry_count")?))?;
                        match chunk::object_keys(first, n, &r.try_get::<Vec<u8>, _>("objects")?)? {
                            Some(kept) => keys.extend(kept),
                            None => {
                                // A chunk written before rows kept both keys: from its texts.
                                let t = sqlx::query("SELECT codec, bodies FROM ledger_chunks WHERE first_seq = $1")
                                    .bind(to_i64(first))
                                    .fetch_one(&mut *tx)
                                    .await?;
                                let texts = chunk::texts(first, n, t.try_get("codec")?, &t.try_get::<Vec<u8>, _>("bodies")?)?;
                                for (i, text) in texts.iter().enumerate() {
                                    keys.extend(entry_keys(text, &mut scratch).into_iter().flatten().map(|k| (first + i as u64, k)));
                                }
                            }
                        }
                        end = first + n as u64;
                    }
                    if rows.is_empty() {
                        // Nothing stored up to the head: a gap a reader reports.
                        end = upto;
                    }
                    keys.sort_unstable_by_key(|(seq, key)| (*key, *seq));
                    for part in keys.chunks(SQLITE_CHUNK) {
                        let mut qb = QueryBuilder::<<$pool as PoolDb>::Db>::new(
                            "INSERT INTO ledger_objects (object_key, seq) ",
                        );
                        qb.push_values(part, |mut b, (seq, key)| {
                            b.push_bind(*key).push_bind(to_i64(*seq));
                        });
                        qb.push(" ON CONFLICT (object_key, seq) DO NOTHING");
                        qb.build().execute(&mut *tx).await?;
                    }
                    sqlx::query(
                        "INSERT INTO ledger_objects_indexed (id, upto) VALUES (1, $1) \
                         ON CONFLICT (id) DO UPDATE SET upto = CASE WHEN ledger_objects_indexed.upto < $1 THEN $1 ELSE ledger_objects_indexed.upto END",
                    )
                    .bind(to_i64(end))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                }
            }

            pub async fn checkpoints_from(
                pool: &$pool,
                from_size: u64,
                limit: u64,
            ) -> Result<Vec<(u64, String)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT size, note FROM ledger_checkpoints WHERE size >= $1 ORDER BY size LIMIT $2",
                )
                .bind(to_i64(from_size))
                .bind(to_i64(limit))
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|r| Ok((r.try_get::<i64, _>("size")? as u64, r.try_get("note")?)))
                    .collect()
            }

            pub async fn cosignatures(pool: &$pool, size: u64) -> Result<Vec<String>, StoreError> {
                let rows = sqlx::query("SELECT line FROM ledger_cosignatures WHERE size = $1 ORDER BY witness")
                    .bind(to_i64(size))
                    .fetch_all(pool)
                    .await?;
                Ok(rows.into_iter().map(|r| r.try_get("line")).collect::<Result<_, _>>()?)
            }

            pub async fn add_cosignature(pool: &$pool, size: u64, witness: &str, line: &str) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO ledger_cosignatures (size, witness, line) VALUES ($1, $2, $3) ON CONFLICT (size, witness) DO UPDATE SET line = $3")
                    .bind(to_i64(size))
                    .bind(witness)
                    .bind(line)
                    .execute(pool)
                    .await?;
                Ok(())
            }

            pub async fn find_object(
                pool: &$pool,
                key: i64,
                below: u64,
                limit: u64,
            ) -> Result<Vec<u64>, StoreError> {
                index_objects(pool, below).await?;
                let rows = sqlx::query(
                    "SELECT seq FROM ledger_objects WHERE object_key = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                )
                .bind(key)
                .bind(to_i64(below))
                .bind(to_i64(limit))
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|r| Ok(r.try_get::<i64, _>("seq")? as u64))
                    .collect()
            }
        }
    };
}

/// Maps a pool type to its database type, for the macro.
pub trait PoolDb {
    /// The sqlx database.
    type Db: sqlx::Database;
}
impl PoolDb for SqlitePool {
    type Db = sqlx::Sqlite;
}
impl PoolDb for PgPool {
    type Db = sqlx::Postgres;
}

// SQLite: BEGIN IMMEDIATE takes the write lock up front, so two writers serialize instead of
// failing at commit. PostgreSQL: a row lock on the head serializes writers.
shared_ops!(lite, SqlitePool, "BEGIN IMMEDIATE", "");
shared_ops!(
    pg,
    PgPool,
    "BEGIN",
    "SELECT size FROM ledger_head WHERE id = 1 FOR UPDATE"
);

macro_rules! dispatch {
    ($self:expr, $f:ident ( $($arg:expr),* )) => {
        match $self {
            Db::Sqlite(p) => lite::$f(p $(, $arg)*).await,
            Db::Postgres(p) => pg::$f(p $(, $arg)*).await,
        }
    };
}

/// Which database a `--db` URL names: recognised here only, for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:PATH`: one file, one process.
    Sqlite,
    /// `postgres://…` or `postgresql://…`: shared by replicas.
    Postgres,
}

impl Backend {
    /// The backend `url` names, or `None` when it names none.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

impl Db {
    /// Connects (`sqlite:PATH` or `postgres://…`) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let backend = Backend::of(url).ok_or_else(|| StoreError::BadUrl(url.to_string()))?;
        if backend == Backend::Postgres {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Ok(Self::Postgres(pool))
        } else {
            let opts = SqliteConnectOptions::from_str(url)?;
            // Two processes opening a new file at once would both apply the migrations: the
            // second fails. A lock file beside the database serializes migrating (SQLite's own
            // locks are POSIX locks, which another descriptor on the database file would drop).
            let lock_path = format!("{}-migrate.lock", opts.get_filename().display());
            let lock_err = |source| StoreError::MigrationLock {
                path: lock_path.clone(),
                source,
            };
            // Opened without following a symbolic link and without truncating: a link planted
            // beside the database must not make the auditor write through it (to its own key).
            let lock = {
                use std::os::unix::fs::OpenOptionsExt as _;
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&lock_path)
                    .map_err(lock_err)?
            };
            let opts = opts
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(60))
                // Entries are about 3 KB: with 4 KiB pages each takes a page of its own and a
                // batch writes a third more than its bytes; 64 KiB pages hold twenty. Only a new
                // file takes it (an existing WAL file keeps its page size).
                .page_size(65536)
                // 64 MiB of page cache per connection keeps the index pages hot during appends.
                .pragma("cache_size", "-65536")
                // Checkpoints run beside the writers ([`checkpoint_wal`]), not in a commit; a
                // checkpointed log is cut back to 64 MiB.
                .pragma("wal_autocheckpoint", "0")
                .pragma("journal_size_limit", "67108864");
            // Waiting for another process (or task) migrating must not hold an async worker.
            // Taken before the first connection: opening a new file sets its page size and
            // turns it to WAL, which takes locks SQLite does not wait for (its busy timeout
            // does not cover them), so two processes opening one new ledger at once made one
            // fail with `database is locked`.
            let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
                .await
                .expect("the lock task does not panic")
                .map_err(lock_err)?;
            let migrated = async {
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_with(opts)
                    .await?;
                sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
                Ok::<_, StoreError>(pool)
            }
            .await;
            drop(lock);
            let pool = migrated?;
            tokio::spawn(checkpoint_wal(pool.clone()));
            Ok(Self::Sqlite(pool))
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }

    /// The head row, if the log was initialised.
    pub async fn head(&self) -> Result<Option<HeadRow>, StoreError> {
        dispatch!(self, head())
    }

    /// Signing keys in order.
    pub async fn keys(&self) -> Result<Vec<String>, StoreError> {
        dispatch!(self, keys())
    }

    /// Creates the head row and key 0 unless they exist.
    pub async fn init(
        &self,
        origin: &str,
        frontier: &[u8],
        verifier: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, init(origin, frontier, verifier))
    }

    /// The key table: verifier key strings in order, with the entry announcing each.
    pub async fn key_rows(&self) -> Result<Vec<(String, Option<u64>)>, StoreError> {
        dispatch!(self, key_rows())
    }

    /// Up to `limit` entries from `from` (inclusive) below `to`.
    pub async fn entries_from(
        &self,
        from: u64,
        to: u64,
        limit: u64,
    ) -> Result<Vec<(u64, Hash, String)>, StoreError> {
        dispatch!(self, entries_from(from, to, limit))
    }

    /// Leaf hashes of entries `from..to`; all must exist.
    pub async fn leaves(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        dispatch!(self, leaves(from, to))
    }

    /// Up to `limit` checkpoints of size >= `from_size`.
    pub async fn checkpoints_from(
        &self,
        from_size: u64,
        limit: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        dispatch!(self, checkpoints_from(from_size, limit))
    }

    /// The witness cosignature lines recorded for the checkpoint of `size`.
    pub async fn cosignatures(&self, size: u64) -> Result<Vec<String>, StoreError> {
        dispatch!(self, cosignatures(size))
    }

    /// Records (or replaces) `witness`'s cosignature line on the checkpoint of `size`.
    pub async fn add_cosignature(
        &self,
        size: u64,
        witness: &str,
        line: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, add_cosignature(size, witness, line))
    }

    /// Brings the object index up to `upto` (the signed head), from the chunks' object keys.
    pub async fn index_objects(&self, upto: u64) -> Result<(), StoreError> {
        dispatch!(self, index_objects(upto))
    }

    /// The sequence numbers of the latest entries (newest first, at most `limit`) whose object
    /// key is `key`, below `below`, after bringing the object index up to `below`. One page of
    /// a lookup: [`super::Ledger::latest_proven`] reads them all.
    pub async fn find_object(
        &self,
        key: i64,
        below: u64,
        limit: u64,
    ) -> Result<Vec<u64>, StoreError> {
        dispatch!(self, find_object(key, below, limit))
    }

    /// The text of entry `seq`, if stored.
    pub async fn entry(&self, seq: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .entries_from(seq, seq + 1, 1)
            .await?
            .into_iter()
            .next()
            .map(|(_, _, text)| text))
    }

    /// The stored hashes of the subtrees among `wanted` (absent ones are left out).
    pub async fn nodes(&self, wanted: &[Subtree]) -> Result<HashMap<Subtree, Hash>, StoreError> {
        dispatch!(self, nodes(wanted))
    }

    /// How many subtree hashes of `level` are stored.
    pub async fn node_count(&self, level: u8) -> Result<u64, StoreError> {
        dispatch!(self, node_count(level))
    }

    /// Stores subtree hashes (replacing rows of the same subtrees), in one transaction.
    pub async fn add_nodes(&self, nodes: &[(Subtree, Hash)]) -> Result<(), StoreError> {
        dispatch!(self, add_nodes(nodes))
    }

    /// The entries that recorded the idempotency keys among `ids` that are already known.
    pub async fn requests(&self, ids: &[String]) -> Result<Vec<(String, u64)>, StoreError> {
        let parse = |r: sqlx::Result<(String, i64)>| r.map(|(id, s)| (id, s as u64));
        let mut out = Vec::new();
        match self {
            Db::Sqlite(p) => {
                for chunk in ids.chunks(SQLITE_CHUNK) {
                    let mut qb = QueryBuilder::<sqlx::Sqlite>::new(
                        "SELECT id, seq FROM ledger_requests WHERE id IN (",
                    );
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(id.clone());
                    }
                    qb.push(")");
                    for r in qb.build_query_as::<(String, i64)>().fetch_all(p).await? {
                        out.push(parse(Ok(r))?);
                    }
                }
            }
            Db::Postgres(p) => {
                let rows = sqlx::query_as::<_, (String, i64)>(
                    "SELECT id, seq FROM ledger_requests WHERE id = ANY($1)",
                )
                .bind(ids.to_vec())
                .fetch_all(p)
                .await?;
                for r in rows {
                    out.push(parse(Ok(r))?);
                }
            }
        }
        Ok(out)
    }

    /// Begins the transaction that holds the head: other sequencers wait until it ends.
    pub async fn lock_head(&self) -> Result<HeadLock, StoreError> {
        Ok(match self {
            Db::Sqlite(p) => HeadLock::Sqlite(lite::begin(p).await?),
            Db::Postgres(p) => HeadLock::Postgres(pg::begin(p).await?),
        })
    }

    /// The names of the ledger tables and their columns, as the database reports them
    /// (for the schema equivalence test).
    pub async fn schema(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = match self {
            Db::Sqlite(p) => {
                sqlx::query(
                    "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name LIKE 'ledger_%' ORDER BY 1, 2",
                )
                .fetch_all(p)
                .await?
                .into_iter()
                .map(|r| Ok((r.try_get("t")?, r.try_get("c")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?
            }
            Db::Postgres(p) => sqlx::query(
                "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name LIKE 'ledger_%' ORDER BY 1, 2",
            )
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get("t")?, r.try_get("c")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?,
        };
        Ok(rows)
    }
}
