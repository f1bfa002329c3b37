//! The store on real SQLite and PostgreSQL: the same suite runs on both. Every scenario ends
//! by exporting and verifying the whole ledger, then again after reopening the database.

use hexagone_auditor::ingest::Submission;
use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::ledger::entry::{Entry, Timestamp};
use hexagone_auditor::ledger::{Sequencer, SequencerError};
use hexagone_auditor::store::{Ledger, StoreError};

use crate::util::{
    NOW, bodies, export_and_verify, fresh_postgres, fresh_sqlite, observation, signer,
};

/// Exports and verifies, then reopens (restart) and verifies again; returns the entry count.
pub async fn reverify(url: &str, trust: &str) -> u64 {
    let (_, first) = export_and_verify(url, trust).await;
    let first = first.unwrap_or_else(|f| panic!("ledger invalid: {f}"));
    let (_, again) = export_and_verify(url, trust).await;
    assert_eq!(again.unwrap(), first, "same ledger after reopening");
    first.entries
}

async fn append_checkpoint_export(url: String) {
    let key = signer(1);
    let ledger = Ledger::open(&url).await.unwrap();
    let (mut seq, dropped) = ledger.sequencer(key.clone()).await.unwrap();
    assert_eq!(dropped, None);
    let a = ledger.append(&mut seq, NOW, bodies(0, 2500)).await.unwrap();
    assert_eq!((a.first, a.last, a.size), (0, 2499, 2500));
    // Entries and their checkpoint are durable together.
    let head = ledger.head().await.unwrap();
    assert_eq!(
        (head.size, head.note.as_deref()),
        (2500, Some(a.note.as_str()))
    );
    for i in 0..3 {
        let a = ledger
            .append(&mut seq, NOW, bodies(2500 + i * 10, 10))
            .await
            .unwrap();
        assert_eq!((a.first, a.last), (2500 + i * 10, 2509 + i * 10));
    }
    ledger.close().await;
    let fp = key.verifier().fingerprint();
    assert_eq!(reverify(&url, &fp).await, 2530);
    let (_, summary) = export_and_verify(&url, &fp).await;
    assert_eq!(summary.unwrap().checkpoints, 4);
}

async fn restart_resumes_the_signed_head(url: String) {
    let key = signer(2);
    let ledger = Ledger::open(&url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key.clone()).await.unwrap();
    ledger.append(&mut seq, NOW, bodies(0, 100)).await.unwrap();
    ledger.close().await;
    let ledger = Ledger::open(&url).await.unwrap();
    let (mut again, dropped) = ledger.sequencer(key.clone()).await.unwrap();
    assert_eq!((again.size(), dropped), (100, None));
    assert_eq!(again.note(), seq.note());
    let a = ledger
        .append(&mut again, NOW, bodies(100, 50))
        .await
        .unwrap();
    assert_eq!((a.first, a.last, a.size), (100, 149, 150));
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().to_string()).await, 150);
}

async fn concurrent_writers_cannot_fork(url: String) {
    let key = signer(3);
    let first = Ledger::open(&url).await.unwrap();
    first.sequencer(key.clone()).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        // Separate pools and sequencers: as separate processes would.
        let url = url.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let ledger = Ledger::open(&url).await.unwrap();
            let (mut seq, _) = ledger.sequencer(key).await.unwrap();
            let mut acks = Vec::new();
            for b in 0..10 {
                let a = ledger
                    .append(&mut seq, NOW, bodies(w * 1000 + b * 10, 10))
                    .await
                    .unwrap();
                acks.push((a.first, a.last, w * 1000 + b * 10));
            }
            ledger.close().await;
            acks
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    // Each writer is acknowledged for exactly its own entries: 40 disjoint ranges of 10
    // that hold the objects it submitted.
    acks.sort();
    assert_eq!(acks.len(), 40);
    for (i, (f, l, _)) in acks.iter().enumerate() {
        assert_eq!((*f, *l), (i as u64 * 10, i as u64 * 10 + 9));
    }
    for (f, _, object) in &acks {
        let rows = first.db().entries_from(*f, f + 1, 1).await.unwrap();
        let id = format!("\"object\":\"spaces/{}/doc-{object}\"", object % 97);
        assert!(
            rows[0].2.contains(&id),
            "entry {f} is not writer's object {object}"
        );
    }
    first.close().await;
    assert_eq!(reverify(&url, &key.verifier().fingerprint()).await, 400);
}

async fn a_stale_sequencer_catches_up_and_seals_after(url: String) {
    let key = signer(4);
    let ledger = Ledger::open(&url).await.unwrap();
    let (mut a, _) = ledger.sequencer(key.clone()).await.unwrap();
    let (mut b, _) = ledger.sequencer(key.clone()).await.unwrap();
    ledger.append(&mut a, NOW, bodies(0, 5)).await.unwrap();
    // b still believes the head is at 0: it checks a's head, then seals after it.
    let late = ledger.append(&mut b, NOW, bodies(5, 5)).await.unwrap();
    assert_eq!((late.first, late.last, late.size), (5, 9, 10));
    // A key other than the one in force cannot open the log for signing.
    match ledger.sequencer(signer(40)).await {
        Err(StoreError::Sequencer(SequencerError::WrongKey { active, .. })) => {
            assert_eq!(active, key.verifier().to_string())
        }
        other => panic!(
            "another key opened the log: {:?}",
            other.map(|s| s.0.size())
        ),
    }
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().to_string()).await, 10);
}

async fn times_never_decrease_when_the_clock_goes_back(url: String) {
    let key = signer(8);
    let ledger = Ledger::open(&url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key.clone()).await.unwrap();
    ledger.append(&mut seq, NOW, bodies(0, 3)).await.unwrap();
    let back = Timestamp(NOW.0 - 3_600_000);
    ledger.append(&mut seq, back, bodies(3, 3)).await.unwrap();
    // Restarted with the clock still an hour behind.
    let (mut seq, _) = ledger.sequencer(key.clone()).await.unwrap();
    ledger.append(&mut seq, back, bodies(6, 3)).await.unwrap();
    let later = Timestamp(NOW.0 + 1);
    ledger.append(&mut seq, later, bodies(9, 1)).await.unwrap();
    let times: Vec<Timestamp> = ledger
        .db()
        .entries_from(0, 10, 10)
        .await
        .unwrap()
        .iter()
        .map(|(_, _, body)| Entry::decode(body.as_bytes()).unwrap().time)
        .collect();
    let mut want = vec![NOW; 9];
    want.push(later);
    assert_eq!(times, want);
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().to_string()).await, 10);
}

async fn retried_observations_are_recorded_once(url: String) {
    let key = signer(9);
    let ledger = Ledger::open(&url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key.clone()).await.unwrap();
    let sub = |i: u64| Submission::new(Some(format!("req-{i}")), observation(i));
    let first: Vec<Submission> = (0..5).map(sub).collect();
    let done = ledger.submit(&mut seq, NOW, &first).await.unwrap();
    let a = done.appended.unwrap();
    assert_eq!((a.first, a.last, done.already), (0, 4, vec![]));
    // A retry of 3 and 4 with five new ones, one of them twice in the batch, and one
    // observation without a key.
    let mut retry: Vec<Submission> = (3..10).map(sub).collect();
    retry.push(sub(7));
    retry.push(Submission::new(None, observation(10)));
    let done = ledger.submit(&mut seq, NOW, &retry).await.unwrap();
    let a = done.appended.unwrap();
    assert_eq!((a.first, a.last, a.size), (5, 10, 11));
    assert_eq!(
        done.already,
        vec![
            ("req-3".to_string(), 3),
            ("req-4".to_string(), 4),
            ("req-7".to_string(), 7)
        ]
    );
    // All retries: nothing new is recorded or signed.
    let done = ledger.submit(&mut seq, NOW, &first[..2]).await.unwrap();
    assert_eq!(done.appended, None);
    assert_eq!(done.already.len(), 2);
    assert_eq!(ledger.head().await.unwrap().size, 11);
    // A key reused for another observation is refused, in the log or in the batch.
    let reused = Submission::new(Some("req-2".into()), observation(99));
    match ledger.submit(&mut seq, NOW, &[reused]).await {
        Err(e @ StoreError::IdempotencyConflict { seq: Some(2), .. }) => {
            assert!(e.to_string().contains("a different observation"), "{e}")
        }
        other => panic!("a reused key was accepted: {other:?}"),
    }
    let twice = [
        sub(50),
        Submission::new(Some("req-50".into()), observation(51)),
    ];
    assert!(matches!(
        ledger.submit(&mut seq, NOW, &twice).await,
        Err(StoreError::IdempotencyConflict { seq: None, .. })
    ));
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().to_string()).await, 11);
}

async fn rotation_is_verified_across_keys(url: String) {
    let (old, new) = (signer(5), signer(6));
    let ledger = Ledger::open(&url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(old.clone()).await.unwrap();
    ledger.append(&mut seq, NOW, bodies(0, 30)).await.unwrap();
    let r = ledger.rotate(&mut seq, NOW, new.clone()).await.unwrap();
    assert_eq!((r.first, r.last, r.size), (30, 30, 31));
    // The same sequencer now signs with the new key.
    ledger.append(&mut seq, NOW, bodies(30, 10)).await.unwrap();
    // The old key can no longer open the log for signing; the new one can.
    assert!(matches!(
        ledger.sequencer(old.clone()).await,
        Err(StoreError::Sequencer(SequencerError::WrongKey { .. }))
    ));
    let (mut seq, _) = ledger.sequencer(new.clone()).await.unwrap();
    ledger.append(&mut seq, NOW, bodies(40, 10)).await.unwrap();
    // A rotation to a key named for another log is refused before anything is written.
    let foreign = SignerKey::generate("elsewhere/log").unwrap();
    assert!(matches!(
        ledger.rotate(&mut seq, NOW, foreign).await,
        Err(StoreError::Sequencer(SequencerError::Rotation { .. }))
    ));
    ledger.close().await;
    assert_eq!(reverify(&url, &new.verifier().fingerprint()).await, 51);
    let (_, s) = export_and_verify(&url, &new.verifier().to_string()).await;
    assert_eq!(s.unwrap().keys.len(), 2);
}

/// A ledger at `url` holding observations `0..n` in one commit signed by `key`, with the
/// sequencer that wrote them.
pub async fn ledger_of(url: &str, key: &SignerKey, n: u64) -> (Ledger, Sequencer) {
    let ledger = Ledger::open(url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key.clone()).await.unwrap();
    ledger.append(&mut seq, NOW, bodies(0, n)).await.unwrap();
    (ledger, seq)
}

/// A ledger written before entries were stored in chunks (schema 4: one row per entry, with
/// its object key) is moved into chunks when opened: it verifies, proofs by object find its
/// entries, and the next commit is stored compressed after the migrated rows. Its idempotency
/// keys, one namespace for every writer then, are moved out of every writer's reach.
async fn a_ledger_of_one_row_per_entry_is_migrated(url: String) {
    use hexagone_auditor::store::db::body_keys;
    let key = signer(8);
    // The entries, keys, checkpoints and head of a real ledger of 300 entries, written as the
    // ledger wrote them before (schema 4), into a database migrated up to schema 4 only.
    let dir = tempfile::tempdir().unwrap();
    let source_url = fresh_sqlite(dir.path());
    let (source, mut seq) = ledger_of(&source_url, &key, 200).await;
    source
        .append(&mut seq, NOW, bodies(200, 100))
        .await
        .unwrap();
    let entries = source.db().entries_from(0, 300, 1000).await.unwrap();
    let checkpoints = source.db().checkpoints_from(1, 100).await.unwrap();
    let keys = source.db().key_rows().await.unwrap();
    let head = source.head().await.unwrap();
    source.close().await;
    macro_rules! old_ledger {
        ($pool:expr, $migrator:expr) => {{
            let pool = $pool;
            $migrator.run_to(4, &pool).await.unwrap();
            sqlx::query("INSERT INTO ledger_head (id, origin, size, frontier, note, key_index) VALUES (1, $1, $2, $3, $4, $5)")
                .bind(&head.origin).bind(head.size as i64).bind(&head.frontier).bind(&head.note).bind(head.key_index as i64)
                .execute(&pool).await.unwrap();
            for (i, (verifier, announced)) in keys.iter().enumerate() {
                sqlx::query("INSERT INTO ledger_keys (key_index, verifier, announced_in) VALUES ($1, $2, $3)")
                    .bind(i as i64).bind(verifier).bind(announced.map(|a| a as i64))
                    .execute(&pool).await.unwrap();
            }
            for (size, note) in &checkpoints {
                sqlx::query("INSERT INTO ledger_checkpoints (size, note) VALUES ($1, $2)")
                    .bind(*size as i64).bind(note)
                    .execute(&pool).await.unwrap();
            }
            for (seq, leaf, text) in &entries {
                let object = body_keys(&Entry::decode(text.as_bytes()).unwrap().body).map(|k| k[0]);
                sqlx::query("INSERT INTO ledger_entries (seq, leaf, body, object_key) VALUES ($1, $2, $3, $4)")
                    .bind(*seq as i64).bind(leaf.to_vec()).bind(text).bind(object)
                    .execute(&pool).await.unwrap();
            }
            // An idempotency key of the one namespace all writers shared.
            sqlx::query("INSERT INTO ledger_requests (id, seq) VALUES ('backup-2026-11-29', 98)")
                .execute(&pool).await.unwrap();
            pool.close().await;
        }};
    }
    if let Some(path) = url.strip_prefix("sqlite:") {
        use std::str::FromStr as _;
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(path)
            .unwrap()
            .create_if_missing(true);
        old_ledger!(
            sqlx::SqlitePool::connect_with(opts).await.unwrap(),
            sqlx::migrate!("./migrations/sqlite")
        );
    } else {
        old_ledger!(
            sqlx::PgPool::connect(&url).await.unwrap(),
            sqlx::migrate!("./migrations/postgres")
        );
    }

    let ledger = Ledger::open(&url).await.unwrap();
    // The shared key is kept, out of every writer's reach: scoped keys never start with a space.
    let asked = [" backup-2026-11-29".to_string(), "backup-2026-11-29".into()];
    assert_eq!(
        ledger.db().requests(&asked).await.unwrap(),
        [(" backup-2026-11-29".to_string(), 98)]
    );
    let proof = ledger.prove("spaces/1/doc-98").await.unwrap();
    assert_eq!(
        proof.verify(&[key.verifier().clone()], None).unwrap().seq,
        98
    );
    let (mut seq, dropped) = ledger.sequencer(key.clone()).await.unwrap();
    assert_eq!((dropped, seq.size()), (None, 300));
    ledger.append(&mut seq, NOW, bodies(300, 20)).await.unwrap();
    let proof = ledger.prove("spaces/0/doc-291").await.unwrap();
    assert_eq!(
        proof.verify(&[key.verifier().clone()], None).unwrap().seq,
        291
    );
    assert_eq!(ledger.prove("spaces/28/doc-319").await.unwrap().index, 319);
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().fingerprint()).await, 320);
}

async fn proofs_by_object(url: String) {
    let key = signer(7);
    let (ledger, _) = ledger_of(&url, &key, 1234).await;
    let proof = ledger.prove("spaces/1/doc-777").await.unwrap();
    let entry = proof.verify(&[key.verifier().clone()], None).unwrap();
    assert_eq!(entry.seq, 777);
    let reparsed = hexagone_auditor::ledger::proof::InclusionProof::parse(&proof.format()).unwrap();
    assert_eq!(reparsed, proof);
    assert!(matches!(
        ledger.prove("no-such-object").await,
        Err(StoreError::NoSuchObject(_))
    ));
    // By store: that store's rows only.
    let in_store = |store: &'static str| ledger.prove_in("spaces/1/doc-777", Some(store));
    assert_eq!(in_store("minio/documents").await.unwrap().index, 777);
    assert!(matches!(
        in_store("seaweedfs/documents").await,
        Err(StoreError::NoSuchObject(_))
    ));
    // Chunks written by earlier versions keep the first key only (8 bytes an entry): with the
    // index emptied, it is filled again from their texts, both keys.
    for stmt in [
        "UPDATE ledger_chunks SET objects = substr(objects, 1, entry_count * 8)",
        "DELETE FROM ledger_objects",
        "DELETE FROM ledger_objects_indexed",
    ] {
        match ledger.db() {
            hexagone_auditor::store::db::Db::Sqlite(p) => {
                sqlx::query(stmt).execute(p).await.map(drop)
            }
            hexagone_auditor::store::db::Db::Postgres(p) => {
                sqlx::query(stmt).execute(p).await.map(drop)
            }
        }
        .unwrap();
    }
    assert_eq!(in_store("minio/documents").await.unwrap().index, 777);
    assert_eq!(
        ledger.prove("spaces/36/doc-1200").await.unwrap().index,
        1200
    );
    assert!(matches!(
        in_store("seaweedfs/documents").await,
        Err(StoreError::NoSuchObject(_))
    ));
    ledger.close().await;
    reverify(&url, &key.verifier().to_string()).await;
}

/// The objects of a store still standing (newest entry not a removal) are read from every
/// entry under the signed root: a removal ends one, other stores' objects are not counted, and
/// a rewritten entry row (the database owner's) is an error, not a shorter list.
async fn standing_objects_are_read_from_every_entry_under_the_root(url: String) {
    use hexagone_auditor::ledger::checkpoint::{Checkpoint, parse_note};
    use hexagone_auditor::ledger::entry::Body;
    let key = signer(9);
    let (ledger, mut seq) = ledger_of(&url, &key, 600).await;
    let gone = observation(7).object().unwrap().clone();
    ledger
        .append(
            &mut seq,
            NOW,
            vec![Body::Removal {
                object: gone.clone(),
                observed_at: NOW,
                request: None,
            }],
        )
        .await
        .unwrap();
    let signed = || async {
        let head = ledger.head().await.unwrap();
        let cp = Checkpoint::parse_body(&parse_note(head.note.as_deref().unwrap()).unwrap().text)
            .unwrap();
        (cp.size, cp.root)
    };
    let (size, root) = signed().await;
    assert_eq!(size, 601);
    let standing = ledger
        .standing_objects("minio/documents", size, &root)
        .await
        .unwrap();
    assert_eq!(standing.len(), 599);
    assert!(!standing.contains(&gone));
    assert!(standing.contains(observation(8).object().unwrap()));
    assert!(
        ledger
            .standing_objects("kubernetes", size, &root)
            .await
            .unwrap()
            .is_empty()
    );
    // A root that is not the rows': refused, naming the checkpoint.
    let e = ledger
        .standing_objects("minio/documents", size, &[0; 32])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("signed checkpoint of size 601"), "{e}");
    // The owner drops the chunk holding the removal: an error, not the object standing again.
    let stmt =
        "DELETE FROM ledger_chunks WHERE first_seq = (SELECT MAX(first_seq) FROM ledger_chunks)";
    match ledger.db() {
        hexagone_auditor::store::db::Db::Sqlite(p) => sqlx::query(stmt).execute(p).await.map(drop),
        hexagone_auditor::store::db::Db::Postgres(p) => {
            sqlx::query(stmt).execute(p).await.map(drop)
        }
    }
    .unwrap();
    let e = ledger
        .standing_objects("minio/documents", size, &root)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not stored below the signed head (size 601)"),
        "{e}"
    );
    ledger.close().await;
}

/// A policy entry is its policy's latest state as an observation is an object's: the policy
/// stands (of store `kubernetes`, beside no object of another store) until a removal ends it,
/// its latest entry is the latest digest recorded, proven by object, and the ledger verifies.
async fn a_policy_stands_until_its_removal_and_its_latest_entry_is_proven(url: String) {
    use hexagone_auditor::ledger::checkpoint::{Checkpoint, parse_note};
    use hexagone_auditor::ledger::entry::{Body, ObjectId, POLICY_CLASS};
    let key = signer(10);
    let (ledger, mut seq) = ledger_of(&url, &key, 10).await;
    let named =
        |name: &str| ObjectId::new("kubernetes".into(), POLICY_CLASS.into(), name.into()).unwrap();
    let digest = |d: char| format!("sha256:{}", d.to_string().repeat(64));
    let policy = |name: &str, d: char| Body::policy(named(name), digest(d), NOW).unwrap();
    ledger
        .append(
            &mut seq,
            NOW,
            vec![
                policy("standard-fr", 'a'),
                policy("diffusion-restreinte", 'b'),
                policy("standard-fr", 'c'),
                Body::Removal {
                    object: named("diffusion-restreinte"),
                    observed_at: NOW,
                    request: None,
                },
            ],
        )
        .await
        .unwrap();
    let head = ledger.head().await.unwrap();
    let cp =
        Checkpoint::parse_body(&parse_note(head.note.as_deref().unwrap()).unwrap().text).unwrap();
    assert_eq!(cp.size, 14);
    assert_eq!(
        ledger
            .standing_objects("kubernetes", cp.size, &cp.root)
            .await
            .unwrap(),
        [named("standard-fr")]
    );
    assert_eq!(
        ledger
            .standing_objects("minio/documents", cp.size, &cp.root)
            .await
            .unwrap()
            .len(),
        10
    );
    let latest =
        |name: &'static str| ledger.latest_proven(name, Some("kubernetes"), cp.size, &cp.root);
    let (at, _, body) = latest("standard-fr").await.unwrap().unwrap();
    assert_eq!(at, 12);
    assert!(
        matches!(&body, Body::Policy { digest: d, .. } if *d == digest('c')),
        "{body:?}"
    );
    let (at, _, body) = latest("diffusion-restreinte").await.unwrap().unwrap();
    assert_eq!(at, 13);
    assert!(matches!(body, Body::Removal { .. }), "{body:?}");
    let proof = ledger
        .prove_in("standard-fr", Some("kubernetes"))
        .await
        .unwrap();
    let entry = proof.verify(&[key.verifier().clone()], None).unwrap();
    assert_eq!(
        (entry.seq, entry.body.object()),
        (12, Some(&named("standard-fr")))
    );
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().to_string()).await, 14);
}

/// Proofs made from the stored subtree hashes are the proofs computed from every leaf, for
/// every size a checkpoint was signed at; without the hashes (a ledger written before they
/// were kept) proofs are computed from the leaves, and a starting sequencer stores them.
async fn proofs_from_stored_hashes_equal_proofs_from_leaves(url: String) {
    use hexagone_auditor::ledger::tree::{consistency_proof, inclusion_proof, root_of_leaves};
    let key = signer(8);
    let ledger = Ledger::open(&url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key.clone()).await.unwrap();
    let mut sizes = vec![0];
    for n in [300, 700, 1, 555] {
        let a = ledger
            .append(&mut seq, NOW, bodies(sizes[sizes.len() - 1], n))
            .await
            .unwrap();
        sizes.push(a.size);
    }
    let size = *sizes.last().unwrap();
    let leaves = ledger.db().leaves(0, size).await.unwrap();
    let mut mth = |a: u64, b: u64| {
        Ok::<_, std::convert::Infallible>(root_of_leaves(&leaves[a as usize..b as usize]))
    };
    // 1556 entries: the subtrees of 256 leaves and more, 6 + 3 + 1 + 0 of them.
    assert_eq!(
        ledger.db().node_count(8).await.unwrap(),
        6,
        "one hash per 256 entries at level 8"
    );
    assert_eq!(ledger.db().node_count(10).await.unwrap(), 1);
    let check = |got: Vec<_>, want: Vec<_>, what: &str| assert_eq!(got, want, "{what}");
    for &n in &sizes[1..] {
        for i in [0, 1, 255, 256, 299, 300, 777, 1000, n - 1] {
            if i < n {
                check(
                    ledger.inclusion_path(i, n).await.unwrap(),
                    inclusion_proof(i, n, &mut mth).unwrap().unwrap(),
                    &format!("inclusion of {i} in {n}"),
                );
            }
        }
        for &old in &sizes {
            if old <= n {
                check(
                    ledger.consistency_path(old, n).await.unwrap(),
                    consistency_proof(old, n, &mut mth).unwrap().unwrap(),
                    &format!("consistency {old} -> {n}"),
                );
            }
        }
    }
    // A ledger without the stored hashes: the same proofs from the leaves, then the hashes
    // are stored again when a sequencer opens it.
    if let hexagone_auditor::store::db::Db::Sqlite(p) = ledger.db() {
        sqlx::query("DELETE FROM ledger_nodes")
            .execute(p)
            .await
            .unwrap();
    } else if let hexagone_auditor::store::db::Db::Postgres(p) = ledger.db() {
        sqlx::query("DELETE FROM ledger_nodes")
            .execute(p)
            .await
            .unwrap();
    }
    assert_eq!(ledger.db().node_count(8).await.unwrap(), 0);
    check(
        ledger.inclusion_path(777, size).await.unwrap(),
        inclusion_proof(777, size, &mut mth).unwrap().unwrap(),
        "inclusion without stored hashes",
    );
    let (mut seq, dropped) = ledger.sequencer(key.clone()).await.unwrap();
    assert_eq!((seq.size(), dropped), (size, None));
    assert_eq!(ledger.db().node_count(8).await.unwrap(), 6);
    assert_eq!(ledger.db().node_count(10).await.unwrap(), 1);
    ledger
        .append(&mut seq, NOW, bodies(size, 10))
        .await
        .unwrap();
    let proof = ledger.prove("spaces/30/doc-1000").await.unwrap();
    assert_eq!(
        proof.verify(&[key.verifier().clone()], None).unwrap().seq,
        1000
    );
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().to_string()).await, size + 10);
}

on_both!(
    append_checkpoint_export,
    restart_resumes_the_signed_head,
    concurrent_writers_cannot_fork,
    a_stale_sequencer_catches_up_and_seals_after,
    times_never_decrease_when_the_clock_goes_back,
    retried_observations_are_recorded_once,
    rotation_is_verified_across_keys,
    proofs_by_object,
    a_ledger_of_one_row_per_entry_is_migrated,
    proofs_from_stored_hashes_equal_proofs_from_leaves,
    standing_objects_are_read_from_every_entry_under_the_root,
    a_policy_stands_until_its_removal_and_its_latest_entry_is_proven,
);

#[tokio::test]
async fn migrations_define_the_same_schema_on_both() {
    let dir = tempfile::tempdir().unwrap();
    let lite = Ledger::open(&fresh_sqlite(dir.path())).await.unwrap();
    let pg = Ledger::open(&fresh_postgres().await).await.unwrap();
    let (a, b) = (
        lite.db().schema().await.unwrap(),
        pg.db().schema().await.unwrap(),
    );
    assert!(a.len() >= 15, "{a:?}");
    assert_eq!(a, b);
}

/// SQLite's write-ahead log is copied into the database beside the writers, not in their
/// commits (`store::db::checkpoint_wal`): appends spaced by more than a round of it reuse the
/// log from its beginning instead of growing it.
#[tokio::test]
async fn the_sqlite_log_is_checkpointed_beside_the_writers() {
    use hexagone_auditor::store::db::CHECKPOINT_EVERY;
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&fresh_sqlite(dir.path())).await.unwrap();
    let (mut seq, _) = ledger.sequencer(signer(41)).await.unwrap();
    let log = dir.path().join("ledger.sqlite-wal");
    let mut sizes = Vec::new();
    for round in 0..3 {
        ledger
            .append(&mut seq, NOW, bodies(round * 3000, 3000))
            .await
            .unwrap();
        sizes.push(std::fs::metadata(&log).unwrap().len());
        tokio::time::sleep(CHECKPOINT_EVERY + std::time::Duration::from_millis(500)).await;
    }
    // Never checkpointed, the log would grow by each round (about 1.2 MB); checkpointed, each
    // round is written from the log's beginning, over the first round (which also holds the
    // schema).
    assert!(
        sizes.iter().all(|s| *s == sizes[0]),
        "the log grew: {sizes:?}"
    );
    ledger.close().await;
    assert_eq!(
        reverify(
            &fresh_sqlite(dir.path()),
            &signer(41).verifier().to_string()
        )
        .await,
        9000
    );
}
