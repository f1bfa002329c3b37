//! The durable ledger on SQLite or PostgreSQL: batched appends, a signed head that advances
//! by compare-and-swap only over entries already committed, recovery of committed entries
//! left without a checkpoint, key rotation, streamed export and inclusion proofs.
//!
//! Entries are made by the pure core ([`crate::ledger`]); this module only moves them to and
//! from the database.

pub mod db;

use std::collections::HashMap;
use std::io::Write;

use db::{Db, EntryRow, HeadRow, RotationRow};

use crate::bundle::{BundleError, BundleWriter};
use crate::keys::{SignerKey, VerifierKey};
use crate::ledger::entry::{Body, Entry, EntryError, GENESIS_PREV, Timestamp};
use crate::ledger::proof::InclusionProof;
use crate::ledger::tree::{Frontier, Hash, TreeError, inclusion_proof, leaf_hash};

/// Rows read per page when streaming.
const PAGE: u64 = 10_000;
/// How many times an append or head advance is retried when another writer got first.
const RETRIES: usize = 64;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The `--db` value is not a supported URL.
    #[error("unsupported database {0:?}: use sqlite:PATH or postgres://…")]
    BadUrl(String),
    /// The log has no head yet.
    #[error("the ledger is empty: append entries first (with a signing key)")]
    NotInitialised,
    /// The signing key is not the key in force.
    #[error("key {given} is not this ledger's signing key in force ({active})")]
    WrongKey {
        /// The key offered.
        given: String,
        /// The key in force.
        active: String,
    },
    /// Stored data contradicts itself.
    #[error("the stored ledger is inconsistent: {0}")]
    Corrupt(String),
    /// Lost too many races with other writers.
    #[error("gave up after {RETRIES} attempts: other writers kept extending the log")]
    Contended,
    /// A tree computation failed.
    #[error("tree: {0}")]
    Tree(#[from] TreeError),
    /// Writing the bundle failed.
    #[error("export: {0}")]
    Bundle(#[from] BundleError),
    /// No entry about the object.
    #[error("no entry about object {0:?} is covered by the signed head")]
    NoSuchObject(String),
    /// A rotation names a key for another log.
    #[error("the new key is named {given:?}; it must be named after the log origin {origin:?}")]
    RotationName {
        /// New key's name.
        given: String,
        /// Log origin.
        origin: String,
    },
}

/// Entries committed by one append call (not yet under a checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    /// First sequence number.
    pub first: u64,
    /// Last sequence number.
    pub last: u64,
}

/// A head advance: the new signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advanced {
    /// Previous head size.
    pub from: u64,
    /// New head size.
    pub size: u64,
    /// The signed checkpoint note.
    pub note: String,
    /// True when this checkpoint committed a key rotation (later ones need the new key).
    pub rotated: bool,
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
}

impl Ledger {
    /// Opens (and migrates) the database at `url`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::connect(url).await?,
        })
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

    /// Creates the log for `signer` if it is new, then checks `signer` is the key in force.
    pub async fn ensure_initialised(&self, signer: &SignerKey) -> Result<HeadRow, StoreError> {
        let empty = Frontier::new().to_bytes();
        self.db
            .init(signer.name(), &empty, &signer.verifier().to_string())
            .await?;
        let head = self.head().await?;
        self.check_active(&head, signer.verifier()).await?;
        Ok(head)
    }

    async fn check_active(&self, head: &HeadRow, key: &VerifierKey) -> Result<(), StoreError> {
        let keys = self.keys().await?;
        let active = keys
            .get(head.key_index as usize)
            .ok_or_else(|| StoreError::Corrupt(format!("no key number {}", head.key_index)))?;
        if active != key {
            return Err(StoreError::WrongKey {
                given: key.to_string(),
                active: active.to_string(),
            });
        }
        Ok(())
    }

    /// Commits entries at the end of the log in one transaction (retrying when another
    /// writer extended the log meanwhile). They are durable, but not acknowledged until a
    /// checkpoint covers them ([`Ledger::advance`]).
    pub async fn append(&self, items: &[(Timestamp, Body)]) -> Result<Staged, StoreError> {
        for _ in 0..RETRIES {
            let (next, prev) = match self.db.tail().await? {
                None => (0, GENESIS_PREV),
                Some((seq, leaf)) => (seq + 1, leaf),
            };
            let rows = seal(next, prev, items);
            if self.db.stage(next, &prev, &rows).await? {
                return Ok(Staged {
                    first: next,
                    last: next + items.len() as u64 - 1,
                });
            }
        }
        Err(StoreError::Contended)
    }

    /// Signs a checkpoint over every committed entry beyond the head and swaps the head to it.
    /// Stops right after a key-rotation entry: what follows needs the new key. With `check`,
    /// every entry is re-decoded, re-hashed and its chain link checked first (recovery).
    pub async fn advance(
        &self,
        signer: &SignerKey,
        check: bool,
    ) -> Result<Option<Advanced>, StoreError> {
        for _ in 0..RETRIES {
            let head = self.head().await?;
            self.check_active(&head, signer.verifier()).await?;
            let mut frontier = Frontier::from_bytes(&head.frontier)?;
            if frontier.size() != head.size {
                return Err(StoreError::Corrupt(
                    "head frontier and size disagree".into(),
                ));
            }
            let mut prev = if head.size == 0 {
                GENESIS_PREV
            } else {
                self.db.leaves(head.size - 1, head.size).await?[0]
            };
            let mut rotation = None;
            let mut next = head.size;
            'pages: loop {
                let page = self.db.entries_from(next, u64::MAX >> 1, PAGE).await?;
                if page.is_empty() {
                    break;
                }
                for (seq, leaf, body) in page {
                    if seq != next {
                        return Err(StoreError::Corrupt(format!(
                            "entry {next} is missing (found {seq})"
                        )));
                    }
                    if check {
                        check_stored(seq, &leaf, &body, &prev)?;
                    }
                    frontier.push(leaf);
                    prev = leaf;
                    next += 1;
                    if body.contains("\"kind\":\"key-rotation\"") {
                        let entry = Entry::decode(body.as_bytes())
                            .map_err(|e| StoreError::Corrupt(format!("entry {seq}: {e}")))?;
                        if let Body::KeyRotation { new_key } = entry.body {
                            rotation = Some(RotationRow {
                                key_index: head.key_index + 1,
                                verifier: new_key,
                                seq,
                            });
                            break 'pages;
                        }
                    }
                }
            }
            if next == head.size {
                return Ok(None);
            }
            let note = crate::ledger::checkpoint::Checkpoint {
                origin: head.origin.clone(),
                size: next,
                root: frontier.root(),
                extensions: Vec::new(),
            }
            .sign(signer);
            let new = HeadRow {
                origin: head.origin.clone(),
                size: next,
                frontier: frontier.to_bytes(),
                note: Some(note.clone()),
                key_index: head.key_index + u64::from(rotation.is_some()),
            };
            if self.db.advance(head.size, &new, rotation.as_ref()).await? {
                return Ok(Some(Advanced {
                    from: head.size,
                    size: next,
                    note,
                    rotated: rotation.is_some(),
                }));
            }
        }
        Err(StoreError::Contended)
    }

    /// Recovery on start: entries committed by a writer that died before signing are checked
    /// and brought under a checkpoint.
    pub async fn recover(&self, signer: &SignerKey) -> Result<Vec<Advanced>, StoreError> {
        let mut done = Vec::new();
        while let Some(a) = self.advance(signer, true).await? {
            let rotated = a.rotated;
            done.push(a);
            if rotated {
                break;
            }
        }
        Ok(done)
    }

    /// Rotates from `old` to `new`: a rotation entry committed under a checkpoint signed by
    /// `old`; from then on only `new` can advance the head.
    pub async fn rotate(&self, old: &SignerKey, new: &VerifierKey) -> Result<Advanced, StoreError> {
        let head = self.ensure_initialised(old).await?;
        if new.name() != head.origin {
            return Err(StoreError::RotationName {
                given: new.name().to_string(),
                origin: head.origin,
            });
        }
        self.recover(old).await?;
        self.append(&[(
            Timestamp::now(),
            Body::KeyRotation {
                new_key: new.to_string(),
            },
        )])
        .await?;
        loop {
            match self.advance(old, false).await? {
                Some(a) if a.rotated => return Ok(a),
                Some(_) => continue,
                None => {
                    return Err(StoreError::Corrupt(
                        "the rotation entry was not found".into(),
                    ));
                }
            }
        }
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
                            let (_, note) = cps.pop_front().expect("front exists");
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
    /// `object_id`, against the current signed head.
    pub async fn prove(&self, object_id: &str) -> Result<InclusionProof, StoreError> {
        let head = self.head().await?;
        let (Some(note), true) = (head.note.clone(), head.size > 0) else {
            return Err(StoreError::NoSuchObject(object_id.to_string()));
        };
        let candidates = self
            .db
            .find_object(db::object_key(object_id), head.size)
            .await?;
        // The key is a hash prefix: keep the newest entry that really names this object.
        let (seq, body) = candidates
            .into_iter()
            .find(|(_, body)| {
                matches!(Entry::decode(body.as_bytes()),
                    Ok(Entry { body: Body::Observation(o), .. }) if o.object.id == object_id)
            })
            .ok_or_else(|| StoreError::NoSuchObject(object_id.to_string()))?;
        let path = self.inclusion_path(seq, head.size).await?;
        Ok(InclusionProof {
            extra: Some(body.into_bytes()),
            index: seq,
            path,
            checkpoint: note,
        })
    }

    /// The RFC 6962 audit path of `index` in the tree of `size`, computed page by page.
    pub async fn inclusion_path(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let mut ranges = Vec::new();
        inclusion_proof(index, size, &mut |a, b| {
            ranges.push((a, b));
            Ok::<_, std::convert::Infallible>([0u8; 32])
        })
        .expect("infallible")?;
        let mut hashes = HashMap::new();
        for (a, b) in ranges {
            let mut f = Frontier::new();
            let mut at = a;
            while at < b {
                let end = (at + PAGE).min(b);
                for l in self.db.leaves(at, end).await? {
                    f.push(l);
                }
                at = end;
            }
            hashes.insert((a, b), f.root());
        }
        Ok(inclusion_proof(index, size, &mut |a, b| {
            Ok::<_, std::convert::Infallible>(hashes[&(a, b)])
        })
        .expect("infallible")?)
    }
}

/// Seals items as rows starting at `next` after `prev` (the pure core makes the entries).
fn seal(next: u64, prev: Hash, items: &[(Timestamp, Body)]) -> Vec<EntryRow> {
    let mut prev = prev;
    items
        .iter()
        .enumerate()
        .map(|(i, (time, body))| {
            let entry = Entry {
                seq: next + i as u64,
                time: *time,
                prev,
                body: body.clone(),
            };
            let text = entry.encode();
            let leaf = leaf_hash(text.as_bytes());
            prev = leaf;
            EntryRow {
                seq: entry.seq,
                leaf,
                object_key: match body {
                    Body::Observation(o) => Some(db::object_key(&o.object.id)),
                    Body::KeyRotation { .. } => None,
                },
                body: text,
            }
        })
        .collect()
}

fn check_stored(seq: u64, leaf: &Hash, body: &str, prev: &Hash) -> Result<(), StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("entry {seq}: {why}"));
    let entry = Entry::decode(body.as_bytes()).map_err(|e: EntryError| corrupt(e.to_string()))?;
    if entry.seq != seq {
        return Err(corrupt(format!(
            "stored under seq {seq} but says {}",
            entry.seq
        )));
    }
    if &leaf_hash(body.as_bytes()) != leaf {
        return Err(corrupt("stored leaf hash does not match its text".into()));
    }
    if &entry.prev != prev {
        return Err(corrupt("prev does not match the previous entry".into()));
    }
    Ok(())
}
