//! The durable ledger on SQLite or PostgreSQL: batches sealed and signed by the one
//! [`Sequencer`] and committed with the head swap (compare-and-swap) in one transaction,
//! checks of the stored head before anything is signed, key rotation, streamed export and
//! proofs from stored subtree hashes (O(log n) rows, never every leaf).
//!
//! Entries are made and checked by the pure core ([`crate::ledger`]); this module only moves
//! them to and from the database.

pub mod chunk;
pub mod db;
pub mod signed_head;

use std::collections::HashMap;
use std::io::Write;

use chunk::EntryRow;
use db::{Db, HeadRow, RotationRow};
use signed_head::{SignedHeadError, SignedHeadFile};

use crate::bundle::{BundleError, BundleWriter};
use crate::ingest::Submission;
use crate::keys::{SignerKey, VerifierKey};
use crate::ledger::checkpoint::{Checkpoint, open_checkpoint, parse_note};
use crate::ledger::cosignature::WitnessKey;
use crate::ledger::entry::{
    Body, EncodedBody, Entry, Observation, Prepared, Timestamp, request_hash,
};
use crate::ledger::proof::InclusionProof;
use crate::ledger::sequencer::ProvenEntry;
use crate::ledger::tree::{
    Frontier, Hash, Subtree, TreeError, consistency_proof, fold_subtrees, inclusion_proof,
    leaf_hash, verify_consistency, verify_inclusion,
};
use crate::ledger::{Sealed, Sequencer, SequencerError, StoredHead};
use crate::witness::AddCheckpoint;

/// Rows read per page when streaming.
const PAGE: u64 = 10_000;

/// Subtrees of at least `2^NODE_LEVEL` leaves have their hash stored (`ledger_nodes`): about
/// one row per 128 entries, and a proof reads at most `2^NODE_LEVEL` leaves besides them.
pub const NODE_LEVEL: u8 = 8;

/// Entries sealed per piece while the previous piece is being packed and written.
const SEAL_PIECE: usize = chunk::CHUNK;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The lock file that serializes migrations of a SQLite file cannot be used.
    #[error("migration lock {path}: {source}")]
    MigrationLock {
        /// The lock file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The `--db` value is not a supported URL.
    #[error("unsupported database {0:?}: use sqlite:PATH or postgres://…")]
    BadUrl(String),
    /// The log has no head yet.
    #[error("the ledger is empty: append entries first (with a signing key)")]
    NotInitialised,
    /// The sequencer refused the stored head: nothing was signed.
    #[error("refusing to sign: {0}")]
    Sequencer(#[from] SequencerError),
    /// Rows appeared past the signed head while this sequencer was running.
    #[error(
        "refusing to sign: {count} entry rows past the signed head, from entry {first}, were written by someone else; nothing was signed (the next start drops them)"
    )]
    RowsPastHead {
        /// How many.
        count: u64,
        /// First sequence number.
        first: u64,
    },
    /// Stored data contradicts itself.
    #[error("the stored ledger is inconsistent: {0}")]
    Corrupt(String),
    /// An idempotency key already names another observation.
    #[error(
        "idempotency key {:?} is already used for {}: a retry must carry the same observation",
        crate::ingest::writer_id(id),
        seq.map_or("another observation of this batch".to_string(), |s| format!("entry {s}, a different observation"))
    )]
    IdempotencyConflict {
        /// The key.
        id: String,
        /// The entry recorded under it.
        seq: Option<u64>,
    },
    /// A request row names an entry that does not record that request: the row was not
    /// written with the entry (or the entry was sealed before entries recorded their request),
    /// so it proves no duplicate.
    #[error(
        "idempotency key {:?} is recorded (table ledger_requests) for entry {seq}, but {why}: the row was not written with that entry, so the request is not answered as already recorded, and nothing of it was recorded (the row blocks its key: once entry {seq} is checked not to be this request, resubmit under a new key)",
        crate::ingest::writer_id(id)
    )]
    UnprovenRequest {
        /// The key.
        id: String,
        /// The entry the row names.
        seq: u64,
        /// What the entry says instead.
        why: String,
    },
    /// A tree computation failed.
    #[error("tree: {0}")]
    Tree(#[from] TreeError),
    /// Writing the bundle failed.
    #[error("export: {0}")]
    Bundle(#[from] BundleError),
    /// No entry about the object.
    #[error("no entry about object {0:?} is covered by the signed head")]
    NoSuchObject(String),
    /// A witness cosigned a larger tree of this log than the database holds.
    #[error(
        "refusing to sign: witness {witness} has cosigned this log at size {cosigned}, but the database's signed head is size {found}: the database was set back to an older state, and {missing} acknowledged entries are missing. Nothing was dropped or signed. Restore the database from a copy holding them"
    )]
    WitnessedAhead {
        /// The witness's name.
        witness: String,
        /// The size it cosigned last.
        cosigned: u64,
        /// Size of the stored head.
        found: u64,
        /// How many entries are missing.
        missing: u64,
    },
    /// The key holder's record of its last signed head cannot be used.
    #[error("refusing to sign: {0}")]
    SignedHead(#[from] SignedHeadError),
    /// The stored head does not extend the last head the key holder signed: the database was
    /// set back (or forked) behind the sequencer's back.
    #[error(
        "refusing to sign: the database's signed head (size {found}) does not extend the last head this key signed (size {recorded}, recorded in {path}): {why}. Nothing was dropped or signed. Restore the database from a copy holding every acknowledged entry; if this is meant to be a new log, sign it with a new key"
    )]
    NotAnExtension {
        /// The record.
        path: String,
        /// Size of the recorded head.
        recorded: u64,
        /// Size of the stored head.
        found: u64,
        /// What does not match.
        why: String,
    },
    /// The identifier names objects of several stores and no store was given.
    #[error(
        "object {object:?} is recorded in {} stores ({}): give its store (`--store`)",
        stores.len(),
        stores.join(", ")
    )]
    AmbiguousObject {
        /// The object identifier.
        object: String,
        /// The stores holding an object of that identifier, newest entry's first.
        stores: Vec<String>,
    },
}

impl StoreError {
    /// Whether the error refuses a request's idempotency key (a key used for another
    /// observation, or a request row that proves nothing): the request alone is refused, the
    /// ledger is sound.
    pub fn refuses_request(&self) -> bool {
        matches!(
            self,
            Self::IdempotencyConflict { .. } | Self::UnprovenRequest { .. }
        )
    }
}

/// Index rows read per page of a lookup by object.
const LOOKUP_PAGE: u64 = 256;

/// Entries read per query by [`Ledger::standing_objects`].
const SCAN_PAGE: u64 = 16_384;

/// How long `append` waits for each witness's cosignature of a commit (`serve` takes
/// `--witness-timeout`): a witness's own exchange bound is longer, and a log must not wait
/// for it.
pub const WITNESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Rows found past the signed head when the sequencer opened the log, and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// How many rows.
    pub count: u64,
    /// The first one's sequence number (the head size).
    pub first: u64,
}

/// One commit: entries sealed by this sequencer and the signed checkpoint covering them,
/// made durable in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// First sequence number of this commit's entries.
    pub first: u64,
    /// Last sequence number of this commit's entries.
    pub last: u64,
    /// The new head size.
    pub size: u64,
    /// The signed checkpoint note.
    pub note: String,
}

/// What [`Ledger::submit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The commit of the submissions not seen before (none when all were retries).
    pub appended: Option<Appended>,
    /// Retried submissions, recorded once already: (idempotency key, entry).
    pub already: Vec<(String, u64)>,
}

/// A witness the log asks for cosignatures: its key, its URL, the last size it cosigned.
#[derive(Debug, Clone)]
pub struct WitnessEndpoint {
    /// The witness's cosignature key.
    pub key: WitnessKey,
    /// `http://host:port[/prefix]`.
    pub url: String,
    /// Last size it cosigned, when known (learnt from a 409 answer otherwise).
    pub last: Option<u64>,
}

/// Counts of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Entries written.
    pub entries: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

/// A ledger in a database.
#[derive(Debug, Clone)]
pub struct Ledger {
    db: Db,
    /// The key holder's record of its last signed head, when signing ([`open_sequencer`]).
    signed_head: Option<SignedHeadFile>,
}

/// Why the ledger could not be opened for signing.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The signing key file was refused or unreadable.
    #[error(transparent)]
    Key(#[from] crate::keyfile::KeyFileError),
    /// The database could not be opened or its head checked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the ledger at `db` for signing with the key file at `key`: the one way `append`,
/// `serve` and key rotation start a sequencer. Rows found past the signed head are dropped
/// (the sequencer never sealed them, so nobody was told they were recorded), and standard
/// error says how many.
pub async fn open_sequencer(
    db: &str,
    key: &std::path::Path,
    record: SignedHeadFile,
) -> Result<(Ledger, Sequencer), OpenError> {
    let key = crate::keyfile::load(key)?;
    let ledger = Ledger::open(db).await?.recording_in(record);
    let (seq, dropped) = ledger.sequencer(key).await?;
    if let Some(d) = dropped {
        tracing::warn!(
            "dropped {} entry rows found past the signed head (from entry {}): this sequencer did not seal them and they were never acknowledged; resubmit them from their source",
            d.count,
            d.first
        );
    }
    Ok((ledger, seq))
}

impl Ledger {
    /// Opens (and migrates) the database at `url`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::connect(url).await?,
            signed_head: None,
        })
    }

    /// Checks every head it adopts for signing against the key holder's record `file` of the
    /// last head signed, and keeps the record after every commit (see [`signed_head`]).
    pub fn recording_in(mut self, file: SignedHeadFile) -> Self {
        self.signed_head = Some(file);
        self
    }

    /// The same database, for reading only: never opened for signing, so no record of the
    /// signed head is kept (the collector's and the indexer's handle).
    pub fn reader(&self) -> Ledger {
        Ledger {
            db: self.db.clone(),
            signed_head: None,
        }
    }

    /// The underlying pool.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// The head row.
    pub async fn head(&self) -> Result<HeadRow, StoreError> {
        self.db.head().await?.ok_or(StoreError::NotInitialised)
    }

    /// The signing keys, initial first.
    pub async fn keys(&self) -> Result<Vec<VerifierKey>, StoreError> {
        self.db
            .keys()
            .await?
            .iter()
            .map(|k| {
                VerifierKey::parse(k).map_err(|e| StoreError::Corrupt(format!("stored key: {e}")))
            })
            .collect()
    }

    /// Opens the log for signing with `key`, creating it if it is new. The whole stored head
    /// is checked first (see [`Sequencer::adopt`]): the note opens with the key in force, its
    /// root is the root of the stored leaves, the frontier is theirs, no newer checkpoint was
    /// issued, and it extends the last head recorded beside the key ([`Ledger::recording_in`]).
    /// Rows found past the head were never acknowledged: they are deleted, never signed, and
    /// reported.
    pub async fn sequencer(
        &self,
        key: SignerKey,
    ) -> Result<(Sequencer, Option<Dropped>), StoreError> {
        let empty = Frontier::new().to_bytes();
        self.db
            .init(key.name(), &empty, &key.verifier().to_string())
            .await?;
        let keys = self.db.key_rows().await?;
        let first = keys
            .first()
            .ok_or_else(|| StoreError::Corrupt("the key table is empty".into()))?;
        let mut seq = Sequencer::at_genesis(key, &first.0)?;
        self.fill_nodes().await?;
        // Under the head lock, so that other sequencers cannot move the head meanwhile.
        let mut lock = self.db.lock_head().await?;
        self.catch_up(&mut seq).await?;
        self.check_record(&seq).await?;
        let newest = lock.newest_checkpoint().await?;
        if newest > seq.size() {
            return Err(SequencerError::RolledBack {
                ours: newest,
                found: seq.size(),
            }
            .into());
        }
        let dropped = lock.past(seq.size()).await?;
        if dropped.is_some() {
            lock.drop_past(seq.size()).await?;
        }
        if let (Some(file), (size, Some(note))) = (&self.signed_head, seq.head())
            && size > 0
        {
            file.write(note)?;
        }
        Ok((seq, dropped.map(|(count, first)| Dropped { count, first })))
    }

    /// The head `seq` adopted must extend the last head recorded beside the key: the same note
    /// at the same size, or a larger tree proven consistent with the recorded root. A record
    /// missing (a first start, or a ledger signed before records were kept) is not a refusal.
    async fn check_record(&self, seq: &Sequencer) -> Result<(), StoreError> {
        let Some(file) = &self.signed_head else {
            return Ok(());
        };
        let Some(note) = file.read()? else {
            return Ok(());
        };
        let found = seq.size();
        let refuse = |recorded: u64, why: String| StoreError::NotAnExtension {
            path: file.path().display().to_string(),
            recorded,
            found,
            why,
        };
        let (cp, _) = open_checkpoint(&note, seq.keys()).map_err(|e| {
            refuse(
                0,
                format!(
                    "the record is not a checkpoint signed by this log's keys ({e}); if the key file was replaced by a new key, the record belongs to the old one: move it away"
                ),
            )
        })?;
        let root = seq.frontier().root();
        if cp.size > found {
            return Err(refuse(
                cp.size,
                format!(
                    "the database was set back by {} entries, which had been acknowledged",
                    cp.size - found
                ),
            ));
        }
        if cp.size == found {
            if cp.root != root {
                return Err(refuse(cp.size, "the same size holds another tree".into()));
            }
            return Ok(());
        }
        if cp.size > 0 {
            let proof = self.consistency_path(cp.size, found).await?;
            verify_consistency(cp.size, found, &cp.root, &root, &proof).map_err(|e| {
                refuse(
                    cp.size,
                    format!("the stored tree is not an extension of the recorded one ({e})"),
                )
            })?;
        }
        Ok(())
    }

    /// Stores the subtree hashes a ledger written before they were kept lacks (read once from
    /// every leaf, then never again). Subtrees below the head are fixed, so writing one twice
    /// writes the same hash.
    async fn fill_nodes(&self) -> Result<(), StoreError> {
        let Some(head) = self.db.head().await? else {
            return Ok(());
        };
        if self.db.node_count(NODE_LEVEL).await? >= head.size >> NODE_LEVEL {
            return Ok(());
        }
        let mut tree = Frontier::new();
        let mut nodes = Vec::new();
        while tree.size() < head.size {
            let end = (tree.size() + PAGE).min(head.size);
            for leaf in self.db.leaves(tree.size(), end).await? {
                tree.push_completing(leaf, |s, h| {
                    if s.level >= NODE_LEVEL {
                        nodes.push((s, h));
                    }
                });
            }
            self.db.add_nodes(&nodes).await?;
            nodes.clear();
        }
        Ok(())
    }

    /// Brings `seq` to the stored head, checking it: reads the head row, the last entry and the
    /// entries announcing new keys with their audit paths, and a consistency proof from the
    /// sequencer's view (O(log n) stored hashes each), never every leaf.
    async fn catch_up(&self, seq: &mut Sequencer) -> Result<(), StoreError> {
        let head = self.head().await?;
        let keys = self.db.key_rows().await?;
        let needs = seq.needs(head.size, &keys);
        let read = |s: u64| async move {
            let rows = self.db.entries_from(s, s + 1, 1).await?;
            let text = rows
                .into_iter()
                .next()
                .map(|(_, _, body)| body)
                .ok_or_else(|| StoreError::Corrupt(format!("entry {s} is missing")))?;
            Ok::<_, StoreError>(ProvenEntry {
                seq: s,
                text,
                path: self.inclusion_path(s, head.size).await?,
            })
        };
        let last = match needs.last {
            Some(s) => Some(read(s).await?),
            None => None,
        };
        let mut rotations = Vec::new();
        for s in needs.rotations {
            rotations.push(read(s).await?);
        }
        let consistency = match needs.consistency_from {
            Some(old) => self.consistency_path(old, head.size).await?,
            None => Vec::new(),
        };
        let stored = StoredHead {
            origin: head.origin,
            size: head.size,
            note: head.note,
            frontier: head.frontier,
            keys,
            last,
            rotations,
            consistency,
        };
        seq.adopt(&stored)?;
        Ok(())
    }

    /// Seals `items` with `seq`, stamped `now` (or later: times never decrease), signs a
    /// checkpoint over them and commits entries and head in one transaction that holds the
    /// head. When another sequencer moved the head since `seq` last saw it, that head is
    /// checked and adopted first (under the same lock) and the items are sealed after it.
    /// Rows found past the head stop the sequencer.
    pub async fn append(
        &self,
        seq: &mut Sequencer,
        now: Timestamp,
        items: Vec<Body>,
    ) -> Result<Appended, StoreError> {
        let done = self
            .commit(seq, now, &[], |_, _| {
                Some(Work::Entries {
                    items: Items::Bodies(items),
                    requests: Vec::new(),
                })
            })
            .await?;
        Ok(done.expect("append always writes"))
    }

    /// [`Ledger::append`] for submissions that may carry an idempotency key: one whose key is
    /// already recorded is not recorded again (its entry must report the same object, content
    /// and node or endpoint, [`Body::same_report`]);
    /// it is reported with the entry that holds it.
    pub async fn submit(
        &self,
        seq: &mut Sequencer,
        now: Timestamp,
        items: &[Submission],
    ) -> Result<Submitted, StoreError> {
        let ids: Vec<(&str, &Body)> = items
            .iter()
            .filter_map(|s| s.id().map(|id| (id, s.body())))
            .collect();
        let mut in_batch: HashMap<&str, &Body> = HashMap::new();
        for item in items {
            if let Some(id) = item.id()
                && in_batch
                    .insert(id, item.body())
                    .is_some_and(|b| !b.same_report(item.body()))
            {
                return Err(StoreError::IdempotencyConflict {
                    id: id.to_string(),
                    seq: None,
                });
            }
        }
        let mut already = Vec::new();
        let mut repeats: Vec<(String, u64)> = Vec::new();
        let done = self
            .commit(seq, now, &ids, |next, known| {
                let mut sealed_ids: HashMap<&str, u64> = HashMap::new();
                let mut bodies = Vec::new();
                let mut requests = Vec::new();
                for item in items {
                    let id = item.id();
                    if let Some(id) = id {
                        if let Some(&at) = known.get(id) {
                            already.push((id.to_string(), at));
                            continue;
                        }
                        if let Some(&at) = sealed_ids.get(id) {
                            repeats.push((id.to_string(), at));
                            continue;
                        }
                    }
                    // Entries are sealed in this order from the sequencer's size.
                    let at = next.size() + bodies.len() as u64;
                    if let Some(id) = id {
                        sealed_ids.insert(id, at);
                        requests.push((id.to_string(), at));
                    }
                    // The text judging made, shared (not copied): the bodies stay with the caller.
                    bodies.push((item.encoded_body().clone(), item.object_keys()));
                }
                (!bodies.is_empty()).then_some(Work::Entries {
                    items: Items::Encoded(bodies),
                    requests,
                })
            })
            .await?;
        already.extend(repeats);
        Ok(Submitted {
            appended: done,
            already,
        })
    }

    /// A recorded idempotency key must point at an entry under the signed head (proven under
    /// its root, as [`Ledger::proven_entry`] does) that records that very request (its
    /// `request` is [`request_hash`] of the key) and reports the same observation: a key row
    /// written by someone else cannot make a new observation vanish behind "already recorded".
    /// A row naming an entry that records no request or another one is refused
    /// ([`StoreError::UnprovenRequest`]); a rewritten entry is [`StoreError::Corrupt`].
    async fn check_request(
        &self,
        seq: &Sequencer,
        id: &str,
        at: u64,
        body: &Body,
    ) -> Result<(), StoreError> {
        let unproven = |why: String| StoreError::UnprovenRequest {
            id: id.to_string(),
            seq: at,
            why,
        };
        if at >= seq.size() {
            return Err(unproven(format!(
                "that entry is not under the signed head (size {})",
                seq.size()
            )));
        }
        let entry = self.proven_entry(at, seq).await?;
        match entry.body.request() {
            Some(r) if *r == request_hash(id) => {}
            Some(_) => return Err(unproven("that entry records another request".into())),
            None => {
                return Err(unproven(
                    "that entry records no request (entries sealed before entries recorded their request are not proof of one either)".into(),
                ));
            }
        }
        if !entry.body.same_report(body) {
            return Err(StoreError::IdempotencyConflict {
                id: id.to_string(),
                seq: Some(at),
            });
        }
        Ok(())
    }

    /// Rotates from the key `seq` holds to `new`: a rotation entry sealed and signed under the
    /// old key, committed with the key table row in one transaction; `seq` then signs with
    /// `new`.
    pub async fn rotate(
        &self,
        seq: &mut Sequencer,
        now: Timestamp,
        new: SignerKey,
    ) -> Result<Appended, StoreError> {
        let done = self
            .commit(seq, now, &[], |_, _| Some(Work::Rotation(Box::new(new))))
            .await?;
        Ok(done.expect("a rotation always writes"))
    }

    /// Holds the head, brings `seq` to it (checking it) if another sequencer moved it, looks
    /// up the idempotency keys of `ids` (checking each known one holds the same body), asks
    /// `make` what to seal, seals it with a copy of `seq` (stamped `now` or later), signs and
    /// commits. `make` returns `None` when there is nothing to write.
    async fn commit(
        &self,
        seq: &mut Sequencer,
        now: Timestamp,
        ids: &[(&str, &Body)],
        make: impl FnOnce(&Sequencer, &HashMap<String, u64>) -> Option<Work>,
    ) -> Result<Option<Appended>, StoreError> {
        let mut lock = self.db.lock_head().await?;
        let (size, note) = lock.head().await?;
        if (size, note.as_deref()) != seq.head() {
            // Reads through the pool see the committed head, which the lock keeps still.
            self.catch_up(seq).await?;
        }
        if let Some((count, first)) = lock.past(seq.size()).await? {
            return Err(StoreError::RowsPastHead { count, first });
        }
        let known: HashMap<String, u64> = if ids.is_empty() {
            HashMap::new()
        } else {
            let names: Vec<String> = ids.iter().map(|(id, _)| id.to_string()).collect();
            self.db.requests(&names).await?.into_iter().collect()
        };
        for (id, body) in ids {
            if let Some(&at) = known.get(*id) {
                self.check_request(seq, id, at, body).await?;
            }
        }
        let Some(work) = make(seq, &known) else {
            return Ok(None);
        };
        let first = seq.size();
        let (next, nodes, requests, rotation) = match work {
            Work::Entries { items, requests } => {
                let (next, nodes) = seal_and_insert(&mut lock, seq.clone(), now, items).await?;
                (next, nodes, requests, None)
            }
            Work::Rotation(new) => {
                let mut next = seq.clone();
                let (sealed, _) = next.rotate(now, *new)?;
                let rotation = RotationRow {
                    key_index: next.keys().len() as u64 - 1,
                    verifier: next.keys().last().expect("rotated").to_string(),
                    seq: sealed.seq,
                };
                let mut tree = seq.frontier().clone();
                let mut nodes = Vec::new();
                keep_nodes(&mut tree, sealed.leaf, &mut nodes);
                lock.insert(vec![chunk::pack(&[row_of(sealed, None)])])
                    .await?;
                (next, nodes, Vec::new(), Some(rotation))
            }
        };
        let mut next = next;
        let note = match next.note() {
            Some(n) => n.to_string(),
            None => next.sign(),
        };
        let new = HeadRow {
            origin: next.origin().to_string(),
            size: next.size(),
            frontier: next.frontier().to_bytes(),
            note: Some(note.clone()),
            key_index: next.keys().len() as u64 - 1,
        };
        if !lock
            .commit(seq.size(), &requests, &nodes, &new, rotation.as_ref())
            .await?
        {
            return Err(StoreError::Corrupt(
                "the head moved while this sequencer held it".into(),
            ));
        }
        let size = next.size();
        *seq = next;
        // Recorded before anyone is told: an acknowledged head is never behind the record.
        if let Some(file) = &self.signed_head {
            file.write(&note)?;
        }
        Ok(Some(Appended {
            first,
            last: size - 1,
            size,
            note,
        }))
    }

    /// Writes the export bundle: keys, then entries up to the signed head with each
    /// checkpoint after the last entry it covers. Streams page by page.
    pub async fn export(
        &self,
        out: impl Write,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Exported, StoreError> {
        let head = self.head().await?;
        let mut w = BundleWriter::new(out, &head.origin)?;
        for k in self.db.keys().await? {
            w.key(&VerifierKey::parse(&k).map_err(|e| StoreError::Corrupt(e.to_string()))?)?;
        }
        let mut cps = std::collections::VecDeque::new();
        let mut cp_from = 1;
        let mut stats = Exported {
            entries: 0,
            checkpoints: 0,
        };
        let mut next = 0;
        while next < head.size {
            let page = self.db.entries_from(next, head.size, PAGE).await?;
            if page.is_empty() {
                return Err(StoreError::Corrupt(format!("entry {next} is missing")));
            }
            for (seq, _, body) in page {
                if seq != next {
                    return Err(StoreError::Corrupt(format!("entry {next} is missing")));
                }
                w.entry(body.as_bytes())?;
                next += 1;
                stats.entries += 1;
                loop {
                    if cps.is_empty() {
                        cps.extend(self.db.checkpoints_from(cp_from, PAGE).await?);
                        if let Some((s, _)) = cps.back() {
                            cp_from = s + 1;
                        }
                    }
                    match cps.front() {
                        Some((s, _)) if *s == next && *s <= head.size => {
                            let (size, mut note) = cps.pop_front().expect("front exists");
                            for line in self.db.cosignatures(size).await? {
                                note.push_str(&line);
                            }
                            w.checkpoint(&note)?;
                            stats.checkpoints += 1;
                        }
                        Some((s, _)) if *s < next => {
                            cps.pop_front();
                        }
                        _ => break,
                    }
                }
            }
            progress(next, head.size);
        }
        w.finish()?;
        Ok(stats)
    }

    /// An inclusion proof (tlog-proof@v1, entry in `extra`) for the latest entry about
    /// `object_id`, against the current signed head and the witnesses' cosignatures recorded
    /// on it.
    pub async fn prove(&self, object_id: &str) -> Result<InclusionProof, StoreError> {
        self.prove_in(object_id, None).await
    }

    /// [`Ledger::prove`] for the object `object_id` of the data store `store` when given (the
    /// same identifier can name objects of several stores).
    pub async fn prove_in(
        &self,
        object_id: &str,
        store: Option<&str>,
    ) -> Result<InclusionProof, StoreError> {
        let head = self.head().await?;
        let (Some(note), true) = (head.note.clone(), head.size > 0) else {
            return Err(StoreError::NoSuchObject(object_id.to_string()));
        };
        // The signed head's own size and root (the reader of the proof checks its signature):
        // every entry the lookup reads is proven under it before it is used or set aside.
        let cp = parse_note(&note)
            .and_then(|n| Checkpoint::parse_body(&n.text))
            .map_err(|e| StoreError::Corrupt(format!("the head note: {e}")))?;
        let (seq, body, _) = self
            .latest_proven(object_id, store, cp.size, &cp.root)
            .await?
            .ok_or_else(|| StoreError::NoSuchObject(object_id.to_string()))?;
        let path = self.proven_text(seq, cp.size, &cp.root, &body).await?;
        // With the witnesses' cosignatures recorded so far, so that a reader can require them.
        let mut checkpoint = note;
        for line in self.db.cosignatures(cp.size).await? {
            checkpoint.push_str(&line);
        }
        Ok(InclusionProof {
            extra: Some(body.into_bytes()),
            index: seq,
            path,
            checkpoint,
        })
    }

    /// Asks each witness to cosign the checkpoint `appended` (C2SP `tlog-witness`), with a
    /// consistency proof from the last size it cosigned, and records each valid
    /// cosignature. The witnesses are asked at once, each within `limit` (its retries
    /// included): a stalled witness costs `limit`, never more, and does not delay the others.
    /// Returns, per witness, what happened; a witness that refuses, cannot be reached or does
    /// not answer in time does not undo the commit.
    pub async fn collect_cosignatures(
        &self,
        appended: &Appended,
        witnesses: &mut [WitnessEndpoint],
        limit: std::time::Duration,
    ) -> Vec<Result<(), String>> {
        let asks = witnesses.iter_mut().map(|w| async move {
            let name = w.key.name().to_string();
            tokio::time::timeout(limit, self.cosign_with(appended, w))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "witness {name} did not answer within {} ms",
                        limit.as_millis()
                    ))
                })
        });
        futures::future::join_all(asks).await
    }

    /// At start, before anything is sealed: asks each witness to cosign the head `seq` adopted,
    /// which tells what it cosigned last (each within `limit`). A witness that cosigned a larger tree of this log
    /// proves the database was set back, and signing stops. A witness that cannot be reached,
    /// or refuses for another reason, is reported (standard error) and not waited for: the
    /// record beside the key is the check that needs no network.
    pub async fn check_witnessed(
        &self,
        seq: &Sequencer,
        witnesses: &mut [WitnessEndpoint],
        limit: std::time::Duration,
    ) -> Result<(), StoreError> {
        let (size, Some(note)) = seq.head() else {
            return Ok(());
        };
        if size == 0 || witnesses.is_empty() {
            return Ok(());
        }
        let head = Appended {
            first: size,
            last: size - 1,
            size,
            note: note.to_string(),
        };
        for w in witnesses.iter_mut() {
            let answer = tokio::time::timeout(limit, self.cosign_with(&head, w))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} ms", limit.as_millis())));
            if let Some(cosigned) = w.last.filter(|&l| l > size) {
                return Err(StoreError::WitnessedAhead {
                    witness: w.key.name().to_string(),
                    cosigned,
                    found: size,
                    missing: cosigned - size,
                });
            }
            if let Err(e) = answer {
                tracing::warn!("checkpoint {size} at start: {} did not cosign: {e}", w.url);
            }
        }
        Ok(())
    }

    async fn cosign_with(&self, a: &Appended, w: &mut WitnessEndpoint) -> Result<(), String> {
        let name = w.key.name().to_string();
        for _ in 0..3 {
            let old = w.last.unwrap_or(0).min(a.size);
            let proof = if old == 0 || old == a.size {
                Vec::new()
            } else {
                self.consistency_path(old, a.size)
                    .await
                    .map_err(|e| format!("witness {name}: {e}"))?
            };
            let req = AddCheckpoint {
                old,
                proof,
                note: a.note.clone(),
            };
            let (status, body) = crate::witness::serve::add_checkpoint(&w.url, &req)
                .await
                .map_err(|e| e.to_string())?;
            match status {
                200 => {
                    let cosigned = format!("{}{body}", a.note);
                    let note = parse_note(&cosigned).map_err(|e| format!("witness {name}: {e}"))?;
                    if w.key.cosigned(&note).is_none() {
                        return Err(format!("witness {name} answered no valid cosignature"));
                    }
                    let line = body
                        .lines()
                        .find(|l| l.starts_with(&format!("\u{2014} {name} ")))
                        .ok_or_else(|| format!("witness {name}: no signature line"))?;
                    self.db
                        .add_cosignature(a.size, &name, &format!("{line}\n"))
                        .await
                        .map_err(|e| e.to_string())?;
                    w.last = Some(a.size);
                    return Ok(());
                }
                409 => match body.trim().parse::<u64>() {
                    Ok(last) if Some(last) != w.last => w.last = Some(last),
                    _ => return Err(format!("witness {name} refused: {}", body.trim())),
                },
                _ => {
                    return Err(format!(
                        "witness {name} refused ({status}): {}",
                        body.trim()
                    ));
                }
            }
        }
        Err(format!("witness {name}: gave up after repeated conflicts"))
    }

    /// Entry `at` as stored, proven under the root `seq` signed: its text's leaf hash and its
    /// audit path (from stored hashes) must lead to that root. What an answer reads back from
    /// the database (a retried request's verdict) is taken from this, never from a row alone: a
    /// row rewritten by the database's owner, text and leaf together, is an error naming the
    /// entry, not an answer.
    pub async fn proven_entry(&self, at: u64, seq: &Sequencer) -> Result<Entry, StoreError> {
        let size = seq.size();
        let corrupt = |why: String| StoreError::Corrupt(format!("entry {at}: {why}"));
        if at >= size {
            return Err(corrupt(format!("it is past the signed head (size {size})")));
        }
        let text = self
            .db
            .entry(at)
            .await?
            .ok_or_else(|| corrupt("it is missing".into()))?;
        self.proven_text(at, size, &seq.frontier().root(), &text)
            .await?;
        Entry::decode(text.as_bytes()).map_err(|e| corrupt(format!("it does not decode: {e}")))
    }

    /// Checks that `text`, read as entry `at`, is that entry of the signed tree of `size`
    /// entries and root `root`: its leaf hash and the audit path from stored hashes lead to the
    /// root. Returns the path. The one check [`Ledger::proven_entry`], [`Ledger::prove_in`] and
    /// [`Ledger::latest_proven`] make of what they read.
    async fn proven_text(
        &self,
        at: u64,
        size: u64,
        root: &Hash,
        text: &str,
    ) -> Result<Vec<Hash>, StoreError> {
        let path = self.inclusion_path(at, size).await?;
        verify_inclusion(at, size, &leaf_hash(text.as_bytes()), &path, root).map_err(|e| {
            StoreError::Corrupt(format!(
                "entry {at}: the stored rows do not prove it under the checkpoint of size {size} ({e}): stored entries or subtree hashes were rewritten"
            ))
        })?;
        Ok(path)
    }

    /// The newest entry about the object `object_id` of `store` in the signed tree of `size`
    /// entries and root `root`: its sequence number, text and body (an observation, a policy's
    /// digest, or the removal that says the object is gone). With `store` the
    /// index rows of that (store, identifier) pair are read ([`db::store_object_key`]), so
    /// entries about the same identifier in other stores are not even candidates; the rows are
    /// read to their end (never cut at a number of rows). Without `store` the rows of the
    /// identifier are read, and one found in more than one store is an error naming them: the
    /// newest of two writers' objects is not the object asked for.
    ///
    /// The index is the database owner's to write, and so are the entry rows: every entry the
    /// lookup uses is proven under `root` first. The one chosen, one that adds a store, and
    /// one set aside because it does not name the object (an index row pointing elsewhere) are
    /// each proven, so a rewritten row is an error naming the entry, never an answer nor a
    /// reason to answer an older entry. What the index does not name at all (a deleted index
    /// row) no lookup sees: only the whole ledger shows an object's latest entry (`verify`,
    /// `report`).
    pub async fn latest_proven(
        &self,
        object_id: &str,
        store: Option<&str>,
        size: u64,
        root: &Hash,
    ) -> Result<Option<(u64, String, Body)>, StoreError> {
        let key = match store {
            Some(s) => db::store_object_key(s, object_id),
            None => db::object_key(object_id),
        };
        let mut found = None;
        let mut stores: Vec<String> = Vec::new();
        let mut cursor = size;
        loop {
            let page = self.db.find_object(key, cursor, LOOKUP_PAGE).await?;
            for &seq in &page {
                let text = self.db.entry(seq).await?.ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "entry {seq}: the object index names it for {object_id:?}, but it is not stored below the signed head (size {size})"
                    ))
                })?;
                let about = Entry::decode(text.as_bytes()).ok().and_then(|e| {
                    let store = e.body.object()?.store.clone();
                    (e.seq == seq && e.body.object()?.id == object_id).then_some((store, e.body))
                });
                let Some((found_in, body)) = about else {
                    // Another entry (a forged index row, or a key shared by chance): set aside
                    // only once proven genuine.
                    self.proven_text(seq, size, root, &text).await?;
                    continue;
                };
                match store {
                    Some(s) if found_in == s => {
                        self.proven_text(seq, size, root, &text).await?;
                        return Ok(Some((seq, text, body)));
                    }
                    Some(_) => {
                        self.proven_text(seq, size, root, &text).await?;
                    }
                    None => {
                        if !stores.contains(&found_in) {
                            self.proven_text(seq, size, root, &text).await?;
                            stores.push(found_in);
                        }
                        if found.is_none() {
                            found = Some((seq, text, body));
                        }
                    }
                }
            }
            match page.last() {
                Some(&last) if page.len() as u64 == LOOKUP_PAGE => cursor = last,
                _ => break,
            }
        }
        if stores.len() > 1 {
            return Err(StoreError::AmbiguousObject {
                object: object_id.to_string(),
                stores,
            });
        }
        Ok(found)
    }

    /// The objects of `store` whose newest entry in the signed tree of `size` entries and root
    /// `root` is an observation or a policy (a removal ends an object's standing), in
    /// identifier order: of store `kubernetes`, the `LocalityPolicy` objects too.
    /// Every stored entry below `size` is read and hashed and the root computed again, so a
    /// row the database owner hid, added or rewrote is an error naming the checkpoint, never an
    /// object left out or put in. Only entries whose text names `store` are decoded (the
    /// canonical encoding writes `,"store":"…",` once per object entry).
    pub async fn standing_objects(
        &self,
        store: &str,
        size: u64,
        root: &Hash,
    ) -> Result<Vec<crate::ledger::entry::ObjectId>, StoreError> {
        let marker = format!(",\"store\":{},", serde_json::Value::from(store));
        let mut frontier = Frontier::new();
        let mut standing = std::collections::BTreeMap::new();
        let mut scratch = String::new();
        while frontier.size() < size {
            let from = frontier.size();
            let rows = self.db.entries_from(from, size, SCAN_PAGE).await?;
            if rows.is_empty() {
                return Err(StoreError::Corrupt(format!(
                    "entries from {from} are not stored below the signed head (size {size})"
                )));
            }
            for (seq, _, text) in rows {
                if seq != frontier.size() {
                    return Err(StoreError::Corrupt(format!(
                        "entry {} is not stored below the signed head (size {size})",
                        frontier.size()
                    )));
                }
                frontier.push(leaf_hash(text.as_bytes()));
                if !text.contains(&marker) {
                    continue;
                }
                let entry = Entry::decode_with(text.as_bytes(), &mut scratch)
                    .map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
                match entry.body {
                    // A policy entry is its policy's state as an observation is an object's.
                    Body::Observation(Observation { object, .. }) | Body::Policy { object, .. }
                        if object.store == store =>
                    {
                        standing.insert(object.id.clone(), Some(object));
                    }
                    Body::Removal { object, .. } if object.store == store => {
                        standing.insert(object.id.clone(), None);
                    }
                    _ => {}
                }
            }
        }
        if frontier.root() != *root {
            return Err(StoreError::Corrupt(format!(
                "the stored entries do not make the root of the signed checkpoint of size {size}: entry rows were rewritten, added or removed"
            )));
        }
        Ok(standing.into_values().flatten().collect())
    }

    /// The RFC 6962 consistency proof from `old` to `new`, from stored subtree hashes.
    pub async fn consistency_path(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        let mut ranges = Vec::new();
        consistency_proof(old, new, &mut |a, b| {
            ranges.push((a, b));
            Ok::<_, std::convert::Infallible>([0u8; 32])
        })
        .expect("infallible")?;
        let hashes = self.subtree_hashes(ranges).await?;
        Ok(consistency_proof(old, new, &mut |a, b| {
            Ok::<_, std::convert::Infallible>(hashes[&(a, b)])
        })
        .expect("infallible")?)
    }

    /// Merkle tree hashes of the leaf ranges a proof asks for: each range is made of perfect
    /// subtrees ([`Subtree::cover`]); those of at least `2^NODE_LEVEL` leaves are read from the
    /// node table, the smaller ones (and any not stored) hashed from their leaves.
    async fn subtree_hashes(
        &self,
        ranges: Vec<(u64, u64)>,
    ) -> Result<HashMap<(u64, u64), Hash>, StoreError> {
        let covers: Vec<((u64, u64), Vec<Subtree>)> = ranges
            .into_iter()
            .map(|(a, b)| {
                // A range no proof asks for is hashed whole from its leaves.
                let cover = Subtree::cover(a, b).unwrap_or_default();
                ((a, b), cover)
            })
            .collect();
        let mut large: Vec<Subtree> = covers
            .iter()
            .flat_map(|(_, c)| c.iter().copied())
            .filter(|s| s.level >= NODE_LEVEL)
            .collect();
        large.sort_unstable();
        large.dedup();
        let stored = self.db.nodes(&large).await?;
        let mut hashes = HashMap::new();
        for ((a, b), cover) in covers {
            let hash = if cover.is_empty() {
                self.hash_of_leaves(a, b).await?
            } else {
                let mut parts = Vec::with_capacity(cover.len());
                for s in cover {
                    parts.push(match stored.get(&s) {
                        Some(h) => *h,
                        None => {
                            self.hash_of_leaves(s.leaves().start, s.leaves().end)
                                .await?
                        }
                    });
                }
                fold_subtrees(&parts)
            };
            hashes.insert((a, b), hash);
        }
        Ok(hashes)
    }

    /// The Merkle tree hash of leaves `a..b`, from the stored leaves page by page.
    async fn hash_of_leaves(&self, a: u64, b: u64) -> Result<Hash, StoreError> {
        let mut f = Frontier::new();
        let mut at = a;
        while at < b {
            let end = (at + PAGE).min(b);
            for l in self.db.leaves(at, end).await? {
                f.push(l);
            }
            at = end;
        }
        Ok(f.root())
    }

    /// The RFC 6962 audit path of `index` in the tree of `size`, from stored subtree hashes.
    pub async fn inclusion_path(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let mut ranges = Vec::new();
        inclusion_proof(index, size, &mut |a, b| {
            ranges.push((a, b));
            Ok::<_, std::convert::Infallible>([0u8; 32])
        })
        .expect("infallible")?;
        let hashes = self.subtree_hashes(ranges).await?;
        Ok(inclusion_proof(index, size, &mut |a, b| {
            Ok::<_, std::convert::Infallible>(hashes[&(a, b)])
        })
        .expect("infallible")?)
    }
}

/// What one commit seals.
enum Work {
    /// Entries, in this order, with the idempotency keys to record (and the entries they
    /// will name).
    Entries {
        /// The bodies.
        items: Items,
        /// (idempotency key, seq).
        requests: Vec<(String, u64)>,
    },
    /// A rotation to this key.
    Rotation(Box<SignerKey>),
}

/// What a batch seals: bodies to encode, or bodies encoded already (by whoever judged them)
/// with their object index keys.
enum Items {
    Bodies(Vec<Body>),
    Encoded(Vec<(EncodedBody, Option<db::ObjectKeys>)>),
}

impl Items {
    fn len(&self) -> usize {
        match self {
            Items::Bodies(b) => b.len(),
            Items::Encoded(e) => e.len(),
        }
    }
}

/// `items` cut into pieces of [`SEAL_PIECE`], each made an [`Items`] by `wrap`.
fn pieces<T>(items: Vec<T>, wrap: fn(Vec<T>) -> Items) -> Vec<Items> {
    let mut items = items.into_iter().peekable();
    let mut out = Vec::new();
    while items.peek().is_some() {
        out.push(wrap(items.by_ref().take(SEAL_PIECE).collect()));
    }
    out
}

/// Seals `items` with `next` in a pipeline of blocking threads, one chunk at a time: two
/// encode the entries whole ([`Prepared`], their `prev` left blank; encoding and dropping the
/// bodies is the largest step, so chunks alternate between them), one seals them in order
/// (fills `prev`, hashes, chains: the only step that must follow entry order), one packs them
/// into chunks, while the chunks already packed are inserted under `lock`.
/// Returns the sequencer after the last entry and the subtree hashes to store.
async fn seal_and_insert(
    lock: &mut db::HeadLock,
    mut next: Sequencer,
    now: Timestamp,
    items: Items,
) -> Result<(Sequencer, Vec<(Subtree, Hash)>), StoreError> {
    type Keys = Vec<Option<db::ObjectKeys>>;
    let (first, time) = (next.size(), next.stamp(now));
    // Chunk i goes to encoder i % 2; the sealer takes them back in order.
    let cut = match items {
        Items::Bodies(bodies) => pieces(bodies, Items::Bodies),
        Items::Encoded(encoded) => pieces(encoded, Items::Encoded),
    };
    let pieces = cut.len();
    let mut lanes: [Vec<(u64, Items)>; 2] = [Vec::new(), Vec::new()];
    for (i, piece) in cut.into_iter().enumerate() {
        lanes[i % 2].push((first + (i * SEAL_PIECE) as u64, piece));
    }
    let mut encoded = Vec::new();
    let mut encoders = Vec::new();
    for lane in lanes {
        let (encoded_tx, rx) = tokio::sync::mpsc::channel::<(Prepared, Keys)>(2);
        encoded.push(rx);
        encoders.push(tokio::task::spawn_blocking(move || {
            for (at, piece) in lane {
                let mut p = match &piece {
                    Items::Encoded(encoded) => {
                        Prepared::for_encoded(at, time, encoded.iter().map(|(b, _)| b))
                    }
                    Items::Bodies(bodies) => Prepared::new(at, time, bodies.len()),
                };
                let mut keys = Vec::with_capacity(piece.len());
                match piece {
                    Items::Bodies(bodies) => {
                        for b in bodies {
                            keys.push(db::body_keys(&b));
                            p.push(&b);
                        }
                    }
                    Items::Encoded(encoded) => {
                        for (b, key) in encoded {
                            keys.push(key);
                            p.push_encoded(&b);
                        }
                    }
                }
                // A closed channel means a later step failed.
                if encoded_tx.blocking_send((p, keys)).is_err() {
                    break;
                }
            }
        }));
    }
    let (tx, mut sealed) = tokio::sync::mpsc::channel::<(Prepared, Vec<Hash>, Keys)>(2);
    let (packed_tx, mut packed) = tokio::sync::mpsc::channel::<Vec<chunk::ChunkRow>>(2);
    let sealer = tokio::task::spawn_blocking(move || {
        let mut nodes = Vec::new();
        for i in 0..pieces {
            let Some((mut p, keys)) = encoded[i % 2].blocking_recv() else {
                break;
            };
            let leaves = next.seal_prepared(&mut p, |s, h| {
                if s.level >= NODE_LEVEL {
                    nodes.push((s, h));
                }
            });
            if tx.blocking_send((p, leaves, keys)).is_err() {
                break;
            }
        }
        (next, nodes)
    });
    let packer = tokio::task::spawn_blocking(move || {
        while let Some((p, leaves, keys)) = sealed.blocking_recv() {
            if packed_tx
                .blocking_send(vec![chunk::pack_prepared(&p, &leaves, &keys)])
                .is_err()
            {
                break;
            }
        }
    });
    let mut inserted = Ok(());
    while let Some(chunks) = packed.recv().await {
        inserted = lock.insert(chunks).await;
        if inserted.is_err() {
            break;
        }
    }
    drop(packed);
    packer.await.expect("packing does not panic");
    for e in encoders {
        e.await.expect("encoding does not panic");
    }
    let sealed = sealer.await.expect("sealing does not panic");
    inserted?;
    Ok(sealed)
}

/// Pushes `leaf` on `tree`, keeping the hashes of the subtrees it completes that are stored.
fn keep_nodes(tree: &mut Frontier, leaf: Hash, nodes: &mut Vec<(Subtree, Hash)>) {
    tree.push_completing(leaf, |s, h| {
        if s.level >= NODE_LEVEL {
            nodes.push((s, h));
        }
    });
}

fn row_of(sealed: Sealed, object_keys: Option<db::ObjectKeys>) -> EntryRow {
    EntryRow {
        seq: sealed.seq,
        leaf: sealed.leaf,
        body: sealed.text,
        object_keys,
    }
}
