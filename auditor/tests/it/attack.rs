//! Whoever can write the ledger's database, without the key: every attack is made with SQL on
//! real SQLite and PostgreSQL, against a sequencer already running and against one starting.
//! Nothing forged is ever signed, the signer stops with an error naming what is wrong, and the
//! whole ledger is verified after each scenario.

use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::ledger::entry::{Body, Entry};
use hexagone_auditor::ledger::tree::{Frontier, Hash, leaf_hash};
use hexagone_auditor::ledger::{Sequencer, SequencerError};
use hexagone_auditor::store::db::Db;
use hexagone_auditor::store::signed_head::SignedHeadFile;
use hexagone_auditor::store::{Dropped, Ledger, OpenError, StoreError, open_sequencer};

use crate::store::reverify;
use crate::util::{NOW, bodies, export_and_verify, observation, signer};

/// A value bound into the attacker's SQL.
enum Arg {
    Int(i64),
    Bytes(Vec<u8>),
    Text(String),
}

/// Runs one statement as the attacker, on whichever database.
async fn sql(db: &Db, stmt: &str, args: Vec<Arg>) {
    macro_rules! run {
        ($pool:expr) => {{
            let mut q = sqlx::query(sqlx::AssertSqlSafe(stmt.to_string()));
            for a in args {
                q = match a {
                    Arg::Int(i) => q.bind(i),
                    Arg::Bytes(b) => q.bind(b),
                    Arg::Text(t) => q.bind(t),
                };
            }
            q.execute($pool).await.unwrap();
        }};
    }
    match db {
        Db::Sqlite(p) => run!(p),
        Db::Postgres(p) => run!(p),
    }
}

/// Every stored entry: (seq, leaf, text).
async fn rows(db: &Db) -> Vec<(u64, Hash, String)> {
    db.entries_from(0, i64::MAX as u64, 1_000_000)
        .await
        .unwrap()
}

/// A chain-valid entry at the end of the stored rows, as the attacker would make it.
async fn forge_next(db: &Db, body: Body) -> (u64, Hash, String) {
    let last = rows(db).await.pop().unwrap();
    let entry = Entry {
        seq: last.0 + 1,
        time: NOW,
        prev: last.1,
        body,
    };
    let text = entry.encode();
    (entry.seq, leaf_hash(text.as_bytes()), text)
}

/// Stores one entry as a chunk of its own, plain (the layout a reader accepts; see
/// `store::chunk`).
async fn insert(db: &Db, (seq, leaf, text): (u64, Hash, String)) {
    insert_chunk(db, seq, &[(leaf, text)]).await;
}

/// Stores entries from `first` as one plain chunk, without object keys.
async fn insert_chunk(db: &Db, first: u64, entries: &[(Hash, String)]) {
    let leaves: Vec<u8> = entries.iter().flat_map(|(l, _)| l.to_vec()).collect();
    let texts: String = entries.iter().map(|(_, t)| format!("{t}\n")).collect();
    sql(
        db,
        "INSERT INTO ledger_chunks (first_seq, entry_count, leaves, objects, codec, bodies) VALUES ($1, $2, $3, $4, 0, $5)",
        vec![
            Arg::Int(first as i64),
            Arg::Int(entries.len() as i64),
            Arg::Bytes(leaves),
            Arg::Bytes(Vec::new()),
            Arg::Bytes(texts.into_bytes()),
        ],
    )
    .await;
}

/// The chunk of entries from 0 replaced by one plain chunk of `entries`, as the owner would.
async fn replace_first_chunk(db: &Db, entries: &[(Hash, String)]) {
    sql(db, "DELETE FROM ledger_chunks WHERE first_seq = 0", vec![]).await;
    insert_chunk(db, 0, entries).await;
}

/// A log of 30 entries in three checkpoints (10, 20, 30) signed by `key`, and a sequencer
/// still running on it.
async fn log(url: &str, key: &SignerKey) -> (Ledger, Sequencer) {
    let ledger = Ledger::open(url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key.clone()).await.unwrap();
    for b in 0..3 {
        ledger
            .append(&mut seq, NOW, bodies(b * 10, 10))
            .await
            .unwrap();
    }
    (ledger, seq)
}

async fn head_size(ledger: &Ledger) -> u64 {
    ledger.head().await.unwrap().size
}

/// The attack of issue 10: one INSERT of a chain-valid key-rotation row past the head,
/// announcing the attacker's key. It is never signed, and the attacker's key never enters
/// the ledger.
async fn injected_rotation_is_never_signed(url: String) {
    let key = signer(31);
    let mallory = SignerKey::generate(crate::util::ORIGIN).unwrap();
    let (ledger, mut running) = log(&url, &key).await;
    let rotation = Body::KeyRotation {
        new_key: mallory.verifier().to_string(),
    };
    insert(ledger.db(), forge_next(ledger.db(), rotation).await).await;

    // The running sequencer refuses to commit over it, and writes nothing.
    match ledger.append(&mut running, NOW, bodies(30, 5)).await {
        Err(
            e @ StoreError::RowsPastHead {
                count: 1,
                first: 30,
            },
        ) => {
            assert!(e.to_string().contains("nothing was signed"), "{e}")
        }
        other => panic!("appended over an injected row: {other:?}"),
    }
    assert_eq!(head_size(&ledger).await, 30);

    // A starting sequencer drops the row, says so, and goes on with the real key only.
    let (mut seq, dropped) = ledger.sequencer(key.clone()).await.unwrap();
    assert_eq!(
        dropped,
        Some(Dropped {
            count: 1,
            first: 30
        })
    );
    assert!(
        rows(ledger.db())
            .await
            .iter()
            .all(|r| !r.2.contains("key-rotation"))
    );
    let a = ledger.append(&mut seq, NOW, bodies(30, 5)).await.unwrap();
    assert_eq!((a.first, a.last), (30, 34));
    assert_eq!(ledger.keys().await.unwrap(), vec![key.verifier().clone()]);

    // The same row with its key-table row: the key is not announced under the signed root.
    insert(
        ledger.db(),
        forge_next(
            ledger.db(),
            Body::KeyRotation {
                new_key: mallory.verifier().to_string(),
            },
        )
        .await,
    )
    .await;
    sql(
        ledger.db(),
        "INSERT INTO ledger_keys (key_index, verifier, announced_in) VALUES (1, $1, 35)",
        vec![Arg::Text(mallory.verifier().to_string())],
    )
    .await;
    sql(ledger.db(), "UPDATE ledger_head SET key_index = 1", vec![]).await;
    for signing in [key.clone(), mallory.clone()] {
        match ledger.sequencer(signing).await {
            Err(StoreError::Sequencer(SequencerError::Key { index: 1, why, .. })) => {
                assert!(
                    why.contains("rotation entry 35 is not among the signed entries"),
                    "{why}"
                )
            }
            other => panic!(
                "a key injected in the key table was accepted: {:?}",
                other.map(|s| s.1)
            ),
        }
    }
    assert_eq!(head_size(&ledger).await, 35);
    ledger.close().await;
    // What was signed is exactly what the real key sealed.
    let (_, res) = export_and_verify(&url, &key.verifier().fingerprint()).await;
    let s = res.unwrap();
    assert_eq!(s.entries, 35);
    assert_eq!(s.keys, vec![key.verifier().to_string()]);
}

/// History rewritten from entry 12 on, with leaves, chain and frontier recomputed: the head
/// note still signs the true root. A starting sequencer refuses; a running one signs only
/// its own view; the exported ledger names the rewritten range.
async fn rewritten_history_is_refused(url: String) {
    let key = signer(32);
    let (ledger, mut running) = log(&url, &key).await;
    let stored = rows(ledger.db()).await;
    let mut forger = Sequencer::new(SignerKey::generate(crate::util::ORIGIN).unwrap());
    let mut frontier = Frontier::new();
    let mut forged = Vec::new();
    for (seq, _, text) in &stored {
        let entry = Entry::decode(text.as_bytes()).unwrap();
        let body = if *seq == 12 {
            observation(9_999)
        } else {
            entry.body
        };
        let s = forger.seal(entry.time, body);
        frontier.push(s.leaf);
        forged.push((s.leaf, s.text));
    }
    // Every entry rewritten, each stored in a chunk of its own.
    sql(ledger.db(), "DELETE FROM ledger_chunks", Vec::new()).await;
    for (seq, entry) in forged.into_iter().enumerate() {
        insert_chunk(ledger.db(), seq as u64, &[entry]).await;
    }
    sql(
        ledger.db(),
        "UPDATE ledger_head SET frontier = $1",
        vec![Arg::Bytes(frontier.to_bytes())],
    )
    .await;

    match ledger.sequencer(key.clone()).await {
        Err(e @ StoreError::Sequencer(SequencerError::RootMismatch { size: 30, .. })) => {
            assert!(
                e.to_string().contains("stored entries were rewritten"),
                "{e}"
            )
        }
        other => panic!("rewritten history accepted: {:?}", other.map(|s| s.1)),
    }
    // The head swapped back to the true frontier alone is not enough either.
    let running_before = running.clone();
    sql(
        ledger.db(),
        "UPDATE ledger_head SET frontier = $1",
        vec![Arg::Bytes(running_before.frontier().to_bytes())],
    )
    .await;
    assert!(matches!(
        ledger.sequencer(key.clone()).await,
        Err(StoreError::Sequencer(SequencerError::RootMismatch { .. }))
    ));
    // A sequencer that was running signs its own view: the true root, never the forged one.
    let a = ledger
        .append(&mut running, NOW, bodies(30, 5))
        .await
        .unwrap();
    let mut truth = running_before;
    for b in bodies(30, 5) {
        truth.seal(NOW, b);
    }
    assert!(a.note.contains(&base64_root(truth.frontier())));
    ledger.close().await;
    let (_, res) = export_and_verify(&url, &key.verifier().fingerprint()).await;
    let f = res.unwrap_err();
    assert!(
        f.to_string().contains("checkpoint of size 20 signs root")
            && f.to_string().contains("an entry in 10..19 was altered"),
        "{f}"
    );
}

fn base64_root(f: &Frontier) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(f.root())
}

/// The head row restored to an older signed checkpoint (a genuine note and frontier): both
/// a running and a starting sequencer refuse, naming the rollback.
async fn restored_older_head_is_refused(url: String) {
    let key = signer(33);
    let (ledger, mut running) = log(&url, &key).await;
    let old_note = ledger.db().checkpoints_from(20, 1).await.unwrap()[0]
        .1
        .clone();
    let mut old = Frontier::new();
    for (_, leaf, _) in &rows(ledger.db()).await[..20] {
        old.push(*leaf);
    }
    sql(
        ledger.db(),
        "UPDATE ledger_head SET size = 20, frontier = $1, note = $2",
        vec![Arg::Bytes(old.to_bytes()), Arg::Text(old_note)],
    )
    .await;
    match ledger.append(&mut running, NOW, bodies(30, 5)).await {
        Err(
            e @ StoreError::Sequencer(SequencerError::RolledBack {
                ours: 30,
                found: 20,
            }),
        ) => {
            assert!(
                e.to_string().contains("restored from an older state"),
                "{e}"
            )
        }
        other => panic!("appended on a restored head: {other:?}"),
    }
    assert!(matches!(
        ledger.sequencer(key.clone()).await,
        Err(StoreError::Sequencer(SequencerError::RolledBack {
            ours: 30,
            found: 20
        }))
    ));
    // Nothing was dropped or signed: the 30 entries are all still there.
    assert_eq!(rows(ledger.db()).await.len(), 30);
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().fingerprint()).await, 20);
}

/// Observation rows injected past the head, chain-valid: never signed; dropped at start.
async fn rows_injected_past_the_head_are_dropped(url: String) {
    let key = signer(34);
    let (ledger, mut running) = log(&url, &key).await;
    for i in 0..3 {
        insert(
            ledger.db(),
            forge_next(ledger.db(), observation(500 + i)).await,
        )
        .await;
    }
    assert!(matches!(
        ledger.append(&mut running, NOW, bodies(30, 5)).await,
        Err(StoreError::RowsPastHead {
            count: 3,
            first: 30
        })
    ));
    let (mut seq, dropped) = ledger.sequencer(key.clone()).await.unwrap();
    assert_eq!(
        dropped,
        Some(Dropped {
            count: 3,
            first: 30
        })
    );
    ledger.append(&mut seq, NOW, bodies(30, 5)).await.unwrap();
    let texts = rows(ledger.db()).await;
    assert_eq!(texts.len(), 35);
    assert!(texts.iter().all(|r| !r.2.contains("doc-500\"")));
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().fingerprint()).await, 35);
}

/// A stored subtree hash rewritten: proofs are made from those rows, so none is handed out
/// that does not lead to the signed root, and a starting sequencer that reads it refuses to
/// sign; the ledger itself still verifies.
async fn a_rewritten_subtree_hash_is_caught(url: String) {
    use hexagone_auditor::ledger::checkpoint::{Checkpoint, parse_note};
    use hexagone_auditor::ledger::tree::verify_inclusion;
    let key = signer(35);
    let (ledger, _) = crate::store::ledger_of(&url, &key, 1234).await;
    let head = ledger.head().await.unwrap();
    let root = Checkpoint::parse_body(&parse_note(head.note.as_deref().unwrap()).unwrap().text)
        .unwrap()
        .root;
    // Entry 777 lies in leaves 768..1024; its path holds the hash of leaves 512..768.
    sql(
        ledger.db(),
        "UPDATE ledger_nodes SET hash = $1 WHERE level = 8 AND idx = 2",
        vec![Arg::Bytes(vec![7; 32])],
    )
    .await;
    let text = &rows(ledger.db()).await[777].2;
    let path = ledger.inclusion_path(777, 1234).await.unwrap();
    assert!(verify_inclusion(777, 1234, &leaf_hash(text.as_bytes()), &path, &root).is_err());
    match ledger.prove("spaces/1/doc-777").await {
        Err(e @ StoreError::Corrupt(_)) => assert!(
            e.to_string().contains(
                "entry 777: the stored rows do not prove it under the checkpoint of size 1234"
            ),
            "{e}"
        ),
        other => panic!("a proof from a rewritten hash was handed out: {other:?}"),
    }
    // The last entry's path holds the hash of leaves 0..1024: a starting sequencer refuses.
    sql(
        ledger.db(),
        "UPDATE ledger_nodes SET hash = $1 WHERE level = 10 AND idx = 0",
        vec![Arg::Bytes(vec![9; 32])],
    )
    .await;
    assert!(matches!(
        ledger.sequencer(key.clone()).await,
        Err(StoreError::Sequencer(SequencerError::RootMismatch {
            size: 1234,
            ..
        }))
    ));
    assert_eq!(head_size(&ledger).await, 1234);
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().fingerprint()).await, 1234);
}

/// A second chunk holding entries another chunk holds, one of them forged: readers refuse
/// to pick either and name the entries; the running sequencer signs only its own view.
async fn a_chunk_overlapping_another_is_refused(url: String) {
    let key = signer(36);
    let (ledger, mut running) = log(&url, &key).await;
    let mut forger = Sequencer::new(SignerKey::generate(crate::util::ORIGIN).unwrap());
    let forged = forger.seal(NOW, observation(6_666));
    insert_chunk(ledger.db(), 15, &[(forged.leaf, forged.text)]).await;
    match ledger.db().entries_from(0, 30, 100).await {
        Err(e @ StoreError::Corrupt(_)) => assert!(
            e.to_string().contains("entries 15..16 are stored twice"),
            "{e}"
        ),
        other => panic!("overlapping chunks read: {other:?}"),
    }
    let mut bundle = Vec::new();
    assert!(ledger.export(&mut bundle, |_, _| {}).await.is_err());
    // The running sequencer still signs its own view only.
    let mut truth = running.clone();
    let a = ledger
        .append(&mut running, NOW, bodies(30, 5))
        .await
        .unwrap();
    for b in bodies(30, 5) {
        truth.seal(NOW, b);
    }
    assert!(a.note.contains(&base64_root(truth.frontier())));
    // Once the forged row is gone, everything verifies.
    sql(
        ledger.db(),
        "DELETE FROM ledger_chunks WHERE first_seq = 15",
        Vec::new(),
    )
    .await;
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().fingerprint()).await, 35);
}

/// The chunk of the last commit replaced by one holding the same entries and three forged
/// ones after them: a chunk that starts below the head and reaches past it is never the
/// sequencer's own, so nothing is signed, running or starting.
async fn a_chunk_reaching_past_the_head_is_refused(url: String) {
    let key = signer(37);
    let (ledger, mut running) = log(&url, &key).await;
    let mut entries: Vec<(Hash, String)> = rows(ledger.db())
        .await
        .into_iter()
        .skip(20)
        .map(|(_, leaf, text)| (leaf, text))
        .collect();
    for i in 0..3 {
        let (_, leaf, text) = forge_next(ledger.db(), observation(700 + i)).await;
        entries.push((leaf, text.clone()));
        insert(ledger.db(), (30 + i, leaf, text)).await;
    }
    sql(
        ledger.db(),
        "DELETE FROM ledger_chunks WHERE first_seq >= 20",
        Vec::new(),
    )
    .await;
    insert_chunk(ledger.db(), 20, &entries).await;
    let refused = |r: Result<(), StoreError>| match r {
        Err(e @ StoreError::Corrupt(_)) => assert!(
            e.to_string()
                .contains("the chunk of entries from 20 reaches past the signed head (30 entries)"),
            "{e}"
        ),
        other => panic!("a chunk past the head was accepted: {other:?}"),
    };
    refused(
        ledger
            .append(&mut running, NOW, bodies(30, 5))
            .await
            .map(|_| ()),
    );
    refused(ledger.sequencer(key.clone()).await.map(|_| ()));
    assert_eq!(head_size(&ledger).await, 30);
    ledger.close().await;
}

/// The object index rewritten: rows naming an object's key for entries about other objects,
/// and for an entry past the head. `prove` reads the entries themselves, so it still proves
/// the object's own entry, and an index row for an object never recorded proves nothing.
async fn a_forged_object_index_proves_nothing_false(url: String) {
    use hexagone_auditor::store::db::object_key;
    let key = signer(38);
    let (ledger, _) = crate::store::ledger_of(&url, &key, 300).await;
    // The first proof brings the index up to the head.
    assert_eq!(ledger.prove("spaces/1/doc-98").await.unwrap().index, 98);
    for (object, seq) in [
        ("spaces/1/doc-98", 250),
        ("spaces/1/doc-98", 5_000),
        ("never-recorded", 7),
    ] {
        sql(
            ledger.db(),
            "INSERT INTO ledger_objects (object_key, seq) VALUES ($1, $2)",
            vec![Arg::Int(object_key(object)), Arg::Int(seq)],
        )
        .await;
    }
    let proof = ledger.prove("spaces/1/doc-98").await.unwrap();
    assert_eq!(proof.index, 98);
    assert_eq!(
        proof.verify(&[key.verifier().clone()], None).unwrap().seq,
        98
    );
    assert!(matches!(
        ledger.prove("never-recorded").await,
        Err(StoreError::NoSuchObject(_))
    ));
    ledger.close().await;
}

/// The rollback of issue 21: the database owner sets the whole ledger back to an earlier genuine
/// state (the head row, the checkpoints and their cosignatures as they were at size 20), leaving
/// the ten acknowledged entries past it as rows past the head. The key holder's next start
/// refuses, naming the record kept beside the key, and drops nothing. Without the record the same
/// start takes those entries for rows it never sealed and deletes them: the record is what stops
/// the attack.
async fn a_ledger_set_back_is_refused_by_the_record_beside_the_key(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let key = signer(37);
    let key_path = dir.path().join("ledger.key");
    hexagone_auditor::keyfile::save(&key, &key_path).unwrap();
    let (ledger, mut seq) = open_sequencer(&url, &key_path, SignedHeadFile::beside(&key_path))
        .await
        .unwrap();
    for b in 0..3 {
        ledger
            .append(&mut seq, NOW, bodies(b * 10, 10))
            .await
            .unwrap();
    }
    let old_note = ledger.db().checkpoints_from(20, 1).await.unwrap()[0]
        .1
        .clone();
    let mut old = Frontier::new();
    for (_, leaf, _) in &rows(ledger.db()).await[..20] {
        old.push(*leaf);
    }
    ledger.close().await;

    // The owner, with SQL only: no key, no access to the key's folder.
    let db = Ledger::open(&url).await.unwrap();
    for stmt in [
        "DELETE FROM ledger_checkpoints WHERE size > 20",
        "DELETE FROM ledger_cosignatures WHERE size > 20",
    ] {
        sql(db.db(), stmt, vec![]).await;
    }
    sql(
        db.db(),
        "UPDATE ledger_head SET size = 20, frontier = $1, note = $2",
        vec![Arg::Bytes(old.to_bytes()), Arg::Text(old_note)],
    )
    .await;
    db.close().await;

    let err = match open_sequencer(&url, &key_path, SignedHeadFile::beside(&key_path)).await {
        Err(OpenError::Store(e @ StoreError::NotAnExtension { .. })) => e,
        other => panic!("a set-back ledger was opened for signing: {other:?}"),
    };
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::NotAnExtension {
                recorded: 30,
                found: 20,
                ..
            }
        ),
        "{msg}"
    );
    for part in [
        "set back by 10 entries, which had been acknowledged",
        "ledger.key.signed-head",
        "Nothing was dropped or signed",
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg}");
    }
    let db = Ledger::open(&url).await.unwrap();
    assert_eq!(
        rows(db.db()).await.len(),
        30,
        "acknowledged entries dropped"
    );
    // The same start without the record: the acknowledged entries would be deleted.
    let (_, dropped) = db.sequencer(key.clone()).await.unwrap();
    assert_eq!(
        dropped,
        Some(Dropped {
            count: 10,
            first: 20
        })
    );
    db.close().await;
}

/// A database that moved on past the record (another replica signing with the same key, recording
/// elsewhere) extends it and is accepted: the record refuses only what does not extend it, and is
/// brought to the newest head at the next commit.
async fn a_ledger_that_moved_on_extends_the_record(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let key = signer(38);
    let key_path = dir.path().join("ledger.key");
    hexagone_auditor::keyfile::save(&key, &key_path).unwrap();
    let (ledger, mut seq) = open_sequencer(&url, &key_path, SignedHeadFile::beside(&key_path))
        .await
        .unwrap();
    ledger.append(&mut seq, NOW, bodies(0, 10)).await.unwrap();
    ledger.close().await;
    // Another replica, recording elsewhere, moves the head on.
    let other = Ledger::open(&url).await.unwrap();
    let (mut seq, _) = other.sequencer(key.clone()).await.unwrap();
    other.append(&mut seq, NOW, bodies(10, 10)).await.unwrap();
    other.close().await;
    let (ledger, mut seq) = open_sequencer(&url, &key_path, SignedHeadFile::beside(&key_path))
        .await
        .unwrap();
    assert_eq!(seq.size(), 20);
    ledger.append(&mut seq, NOW, bodies(20, 5)).await.unwrap();
    let record = std::fs::read_to_string(dir.path().join("ledger.key.signed-head")).unwrap();
    assert_eq!(Some(record.as_str()), seq.note());
    ledger.close().await;
}

/// The owner rewrites an entry in the database, its text and its stored leaf together (the
/// chunk holding entries 0..10 replaced by one where entry 5 says something else): what an
/// answer reads back from the database is proven under the signed root first, so the rewritten
/// entry is an error naming it, never an answer (nor is any entry whose proof passes through
/// it); with the genuine chunk back, every entry proves again.
async fn a_rewritten_row_is_never_an_answer(url: String) {
    let key = signer(39);
    let (ledger, seq) = log(&url, &key).await;
    let genuine: Vec<(Hash, String)> = rows(ledger.db())
        .await
        .into_iter()
        .take(10)
        .map(|(_, leaf, text)| (leaf, text))
        .collect();
    let mut first = genuine.clone();
    let forged = first[5].1.replace("doc-5\"", "doc-500\"");
    assert_ne!(forged, first[5].1);
    first[5] = (leaf_hash(forged.as_bytes()), forged);
    replace_first_chunk(ledger.db(), &first).await;
    for at in [5, 15] {
        let err = ledger.proven_entry(at, &seq).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "entry {at}: the stored rows do not prove it under the checkpoint of size 30"
            )),
            "{err}"
        );
    }
    assert!(
        ledger.proven_entry(30, &seq).await.is_err(),
        "past the head"
    );
    replace_first_chunk(ledger.db(), &genuine).await;
    for at in [4, 5, 6, 15, 29] {
        assert_eq!(ledger.proven_entry(at, &seq).await.unwrap().seq, at);
    }
    ledger.close().await;
}

/// The owner rewrites the entry the object index names for an object, its text and stored leaf
/// together (the chunk holding it replaced): once so that the object's violation reads
/// compliant, once so that the entry is about another object and the lookup would pass it by
/// and answer "never recorded". `prove`, through the library and the command, refuses both,
/// naming the entry; with the genuine chunk back, it proves the entry again.
async fn a_rewritten_indexed_entry_is_never_proven(url: String) {
    let key = signer(41);
    let (ledger, _) = crate::store::ledger_of(&url, &key, 300).await;
    // Object 94's observation is a violation; the first proof brings the index up to the head.
    let object = "spaces/94/doc-94";
    let proof = ledger.prove(object).await.unwrap();
    assert_eq!(proof.index, 94);
    let genuine: Vec<(Hash, String)> = rows(ledger.db())
        .await
        .into_iter()
        .take(256)
        .map(|(_, leaf, text)| (leaf, text))
        .collect();
    let original = Entry::decode(genuine[94].1.as_bytes()).unwrap();
    let Body::Observation(violation) = &original.body else {
        panic!("entry 94 is an observation");
    };
    assert_eq!(violation.locality.verdict.as_str(), "violation");
    // The same object, judged compliant (object 91's evidence and verdict).
    let Body::Observation(mut compliant) = observation(91) else {
        panic!("an observation");
    };
    compliant.object = violation.object.clone();
    for body in [Body::Observation(compliant), observation(9_400)] {
        let forged = Entry {
            body,
            ..original.clone()
        }
        .encode();
        let mut chunk = genuine.clone();
        chunk[94] = (leaf_hash(forged.as_bytes()), forged);
        replace_first_chunk(ledger.db(), &chunk).await;
        assert_eq!(
            rows(ledger.db()).await[94].2,
            chunk[94].1,
            "the row is rewritten"
        );
        match ledger.prove(object).await {
            Err(e @ StoreError::Corrupt(_)) => assert!(
                e.to_string().contains(
                    "entry 94: the stored rows do not prove it under the checkpoint of size 300"
                ) && e.to_string().contains("were rewritten"),
                "{e}"
            ),
            other => panic!("a rewritten entry was answered: {other:?}"),
        }
        let out = crate::util::run(&["prove", "--db", &url, "--object", object], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(
                "entry 94: the stored rows do not prove it under the checkpoint of size 300"
            ),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "a proof was written");
    }
    replace_first_chunk(ledger.db(), &genuine).await;
    let again = ledger.prove(object).await.unwrap();
    assert_eq!((again.index, &again.path), (94, &proof.path));
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().fingerprint()).await, 300);
}

/// The owner inserts idempotency rows for a key the writer is about to use (its scoped key,
/// `WRITER ROUTE ID`, is no secret), pointing at a genuine entry that reports the same object,
/// content and node: one recorded before entries carried their request (by `append` without a
/// key), one the writer recorded under another key, and one past the head. Before entries
/// carried their request, the first two made the new observation vanish behind "already
/// recorded". Now each is refused with an error naming the entry and what it records instead,
/// nothing is recorded twice, and the writer records the observation under a new key; a genuine
/// retry is still answered "already" with the entry that records its request, proven under
/// the signed head, and the exported ledger, requests included, verifies.
async fn an_inserted_request_row_hides_no_observation(url: String) {
    use hexagone_auditor::ingest::{Submission, request_key};
    use hexagone_auditor::ledger::entry::request_hash;
    let key = signer(43);
    let ledger = Ledger::open(&url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key.clone()).await.unwrap();
    // Entries 0..10 recorded without a key, as every entry was before `request` existed.
    ledger.append(&mut seq, NOW, bodies(0, 10)).await.unwrap();
    let scoped = |id: &str| request_key("backup.pg", "observations", id);
    // The writer records object 3 again under its key `first`: entry 10.
    let first = Submission::new(Some(scoped("first")), observation(3));
    let done = ledger
        .submit(&mut seq, NOW, std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!(done.appended.as_ref().map(|a| a.first), Some(10));
    let recorded = ledger.proven_entry(10, &seq).await.unwrap();
    assert_eq!(
        recorded.body.request(),
        Some(&request_hash(&scoped("first")))
    );
    assert!(
        rows(ledger.db()).await[10].2.ends_with(&format!(
            "\"request\":\"{}\"}}",
            hex::encode(request_hash(&scoped("first")))
        )),
        "the entry carries the hash of the scoped key, never the key"
    );
    for (id, at, says) in [
        ("second", 3, "but that entry records no request"),
        ("third", 10, "but that entry records another request"),
        (
            "fourth",
            500,
            "but that entry is not under the signed head (size 13)",
        ),
    ] {
        sql(
            ledger.db(),
            "INSERT INTO ledger_requests (id, seq) VALUES ($1, $2)",
            vec![Arg::Text(scoped(id)), Arg::Int(at)],
        )
        .await;
        let size = head_size(&ledger).await;
        let fresh = Submission::new(Some(scoped(id)), observation(3));
        match ledger.submit(&mut seq, NOW, &[fresh]).await {
            Err(e @ StoreError::UnprovenRequest { .. }) => {
                let e = e.to_string();
                assert!(
                    e.contains(&format!(
                        "idempotency key \"{id}\" is recorded (table ledger_requests) for entry {at}, {says}"
                    )) && e.contains("is not answered as already recorded, and nothing of it was recorded"),
                    "{e}"
                );
            }
            other => panic!("a planted request row was answered: {other:?}"),
        }
        assert_eq!(head_size(&ledger).await, size, "nothing recorded twice");
        // The same observation, resubmitted under a new key, is recorded.
        let again = Submission::new(Some(scoped(&format!("{id}-new"))), observation(3));
        let done = ledger.submit(&mut seq, NOW, &[again]).await.unwrap();
        assert_eq!(done.already, vec![]);
        assert_eq!(done.appended.map(|a| a.first), Some(size));
    }
    // A genuine retry is answered with the entry that records it, proven under the head.
    let done = ledger.submit(&mut seq, NOW, &[first]).await.unwrap();
    assert_eq!(
        (done.appended, done.already),
        (None, vec![(scoped("first"), 10)])
    );
    // A genuine row rewritten to name another entry of the same object is refused too.
    sql(
        ledger.db(),
        "UPDATE ledger_requests SET seq = 11 WHERE id = $1",
        vec![Arg::Text(scoped("first"))],
    )
    .await;
    let retry = Submission::new(Some(scoped("first")), observation(3));
    assert!(
        matches!(
            ledger.submit(&mut seq, NOW, &[retry]).await,
            Err(StoreError::UnprovenRequest { seq: 11, .. })
        ),
        "a moved row is refused"
    );
    assert_eq!(head_size(&ledger).await, 14);
    ledger.close().await;
    let (_, summary) = export_and_verify(&url, &key.verifier().to_string()).await;
    assert_eq!(summary.unwrap().entries, 14);
}

/// The same attack on the running service, through its HTTP API: a writer's observation is
/// recorded and its retry answered with the same entry; the owner then inserts a row for the
/// writer's next key naming that entry. The next observation is refused `409` naming the row,
/// the entry and what it records (never "recorded": false), the service keeps serving, and the
/// observation is recorded under a new key; the exported ledger verifies.
async fn an_inserted_request_row_is_refused_by_serve(url: String) {
    let setup = crate::serve::Setup::with_db(Some(url.clone()));
    let srv = setup.start(&[]);
    let line = |id: &str| {
        crate::util::observation_json(1).replacen('{', &format!("{{\"id\":\"{id}\","), 1)
    };
    let post = |id: &str| crate::serve::post(&srv, "/v1/observations", &setup.token, &line(id));
    let a = post("r-1");
    assert_eq!(a.status, 200, "{a:?}");
    let recorded = a.json()["entries"][0]["seq"].as_u64().unwrap();
    let again = post("r-1").json();
    assert_eq!(
        (
            &again["entries"][0]["recorded"],
            again["entries"][0]["seq"].as_u64()
        ),
        (&false.into(), Some(recorded)),
        "{again}"
    );
    let ledger = Ledger::open(&url).await.unwrap();
    sql(
        ledger.db(),
        "INSERT INTO ledger_requests (id, seq) VALUES ($1, $2)",
        vec![
            Arg::Text("collector observations r-2".into()),
            Arg::Int(recorded as i64),
        ],
    )
    .await;
    let a = post("r-2");
    assert_eq!(a.status, 409, "{a:?}");
    let err = a.json()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains(&format!(
            "idempotency key \"r-2\" is recorded (table ledger_requests) for entry {recorded}, but that entry records another request"
        )),
        "{err}"
    );
    let a = post("r-3");
    assert_eq!(a.status, 200, "the service still serves: {a:?}");
    assert_eq!(a.json()["entries"][0]["recorded"], true, "{a:?}");
    assert_eq!(
        ledger.head().await.unwrap().size,
        2,
        "nothing recorded twice"
    );
    ledger.close().await;
    drop(srv);
    assert!(setup.verify().contains("valid"));
}

on_both!(
    an_inserted_request_row_hides_no_observation,
    an_inserted_request_row_is_refused_by_serve,
    a_rewritten_indexed_entry_is_never_proven,
    a_rewritten_row_is_never_an_answer,
    a_ledger_set_back_is_refused_by_the_record_beside_the_key,
    a_ledger_that_moved_on_extends_the_record,
    a_forged_object_index_proves_nothing_false,
    a_chunk_overlapping_another_is_refused,
    a_chunk_reaching_past_the_head_is_refused,
    injected_rotation_is_never_signed,
    rewritten_history_is_refused,
    restored_older_head_is_refused,
    rows_injected_past_the_head_are_dropped,
    a_rewritten_subtree_hash_is_caught,
);

/// Whoever can write the folder beside a SQLite ledger plants a symbolic link where the
/// migration lock goes, pointing at the signing key: opening the ledger is refused with the
/// lock's path, and the key is neither truncated nor written.
#[tokio::test]
async fn a_link_planted_as_the_migration_lock_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ledger.key");
    std::fs::write(&key, "PRIVATE KEY+example\n").unwrap();
    let db = dir.path().join("ledger.sqlite");
    let lock = dir.path().join("ledger.sqlite-migrate.lock");
    std::os::unix::fs::symlink(&key, &lock).unwrap();
    let Err(err) = Ledger::open(&format!("sqlite:{}", db.display())).await else {
        panic!("a linked lock file was followed");
    };
    assert!(
        matches!(&err, StoreError::MigrationLock { path, .. } if path.ends_with("ledger.sqlite-migrate.lock")),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        "PRIVATE KEY+example\n"
    );
}
