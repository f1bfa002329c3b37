//! The store on real SQLite and PostgreSQL: the same suite runs on both. Every scenario ends
//! by exporting and verifying the whole ledger, then again after reopening the database.

use hexagone_auditor::store::{Ledger, StoreError};

use crate::util::{bodies, export_and_verify, fresh_postgres, fresh_sqlite, signer};

/// Exports and verifies, then reopens (restart) and verifies again; returns the entry count.
async fn reverify(url: &str, trust: &str) -> u64 {
    let (_, first) = export_and_verify(url, trust).await;
    let first = first.unwrap_or_else(|f| panic!("ledger invalid: {f}"));
    let (_, again) = export_and_verify(url, trust).await;
    assert_eq!(again.unwrap(), first, "same ledger after reopening");
    first.entries
}

async fn append_checkpoint_export(url: String) {
    let key = signer(1);
    let ledger = Ledger::open(&url).await.unwrap();
    ledger.ensure_initialised(&key).await.unwrap();
    let s = ledger.append(&bodies(0, 2500)).await.unwrap();
    assert_eq!((s.first, s.last), (0, 2499));
    // Committed but not yet under a checkpoint: not exported, not acknowledged.
    assert_eq!(ledger.head().await.unwrap().size, 0);
    let a = ledger.advance(&key, false).await.unwrap().unwrap();
    assert_eq!((a.from, a.size), (0, 2500));
    assert!(
        ledger.advance(&key, false).await.unwrap().is_none(),
        "nothing new to sign"
    );
    for i in 0..3 {
        ledger.append(&bodies(2500 + i * 10, 10)).await.unwrap();
        ledger.advance(&key, false).await.unwrap().unwrap();
    }
    ledger.close().await;
    let fp = key.verifier().fingerprint();
    assert_eq!(reverify(&url, &fp).await, 2530);
    let (_, summary) = export_and_verify(&url, &fp).await;
    assert_eq!(summary.unwrap().checkpoints, 4);
}

async fn recovery_signs_committed_entries(url: String) {
    let key = signer(2);
    let ledger = Ledger::open(&url).await.unwrap();
    ledger.ensure_initialised(&key).await.unwrap();
    ledger.append(&bodies(0, 100)).await.unwrap();
    ledger.advance(&key, false).await.unwrap();
    // A writer commits entries, then dies before signing.
    ledger.append(&bodies(100, 50)).await.unwrap();
    ledger.close().await;
    let (_, before) = export_and_verify(&url, &key.verifier().to_string()).await;
    assert_eq!(
        before.unwrap().entries,
        100,
        "unsigned entries are not exported"
    );
    let ledger = Ledger::open(&url).await.unwrap();
    let rec = ledger.recover(&key).await.unwrap();
    assert_eq!(rec.len(), 1);
    assert_eq!((rec[0].from, rec[0].size), (100, 150));
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().to_string()).await, 150);
}

async fn concurrent_writers_cannot_fork(url: String) {
    let key = signer(3);
    let first = Ledger::open(&url).await.unwrap();
    first.ensure_initialised(&key).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        // Separate pools: as separate processes would.
        let url = url.clone();
        let key = signer(3);
        tasks.push(tokio::spawn(async move {
            let ledger = Ledger::open(&url).await.unwrap();
            for b in 0..10 {
                ledger.append(&bodies(w * 1000 + b * 10, 10)).await.unwrap();
                ledger.advance(&key, false).await.unwrap();
            }
            ledger.close().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    first.advance(&key, false).await.unwrap();
    first.close().await;
    assert_eq!(reverify(&url, &key.verifier().fingerprint()).await, 400);
}

async fn head_is_compare_and_swap(url: String) {
    let key = signer(4);
    let ledger = Ledger::open(&url).await.unwrap();
    let head = ledger.ensure_initialised(&key).await.unwrap();
    ledger.append(&bodies(0, 5)).await.unwrap();
    ledger.advance(&key, false).await.unwrap().unwrap();
    // A stale writer that still believes the head is at 0 cannot move it.
    let stale = hexagone_auditor::store::db::HeadRow {
        size: 5,
        note: Some("forged".into()),
        ..head
    };
    assert!(!ledger.db().advance(0, &stale, None).await.unwrap());
    // Nor can a stale writer stage entries at a position already taken.
    let rows = vec![hexagone_auditor::store::db::EntryRow {
        seq: 3,
        leaf: [0; 32],
        body: "x".into(),
        object_key: None,
    }];
    assert!(!ledger.db().stage(3, &[0; 32], &rows).await.unwrap());
    // A key other than the one in force cannot sign.
    let other = signer(40);
    assert!(matches!(
        ledger.advance(&other, false).await,
        Err(StoreError::WrongKey { .. })
    ));
    ledger.close().await;
    assert_eq!(reverify(&url, &key.verifier().to_string()).await, 5);
}

async fn rotation_is_verified_across_keys(url: String) {
    let (old, new) = (signer(5), signer(6));
    let ledger = Ledger::open(&url).await.unwrap();
    ledger.ensure_initialised(&old).await.unwrap();
    ledger.append(&bodies(0, 30)).await.unwrap();
    ledger.advance(&old, false).await.unwrap();
    let r = ledger.rotate(&old, new.verifier()).await.unwrap();
    assert!(r.rotated);
    assert_eq!(r.size, 31);
    ledger.append(&bodies(30, 20)).await.unwrap();
    assert!(matches!(
        ledger.advance(&old, false).await,
        Err(StoreError::WrongKey { .. })
    ));
    ledger.advance(&new, false).await.unwrap().unwrap();
    ledger.close().await;
    // Trusting either key verifies the whole ledger, across the rotation.
    assert_eq!(reverify(&url, &old.verifier().fingerprint()).await, 51);
    assert_eq!(reverify(&url, &new.verifier().fingerprint()).await, 51);
    let (_, s) = export_and_verify(&url, &old.verifier().to_string()).await;
    assert_eq!(s.unwrap().keys.len(), 2);
}

async fn proofs_by_object(url: String) {
    let key = signer(7);
    let ledger = Ledger::open(&url).await.unwrap();
    ledger.ensure_initialised(&key).await.unwrap();
    ledger.append(&bodies(0, 1234)).await.unwrap();
    ledger.advance(&key, false).await.unwrap();
    let proof = ledger.prove("spaces/1/doc-777").await.unwrap();
    let entry = proof.verify(&[key.verifier().clone()], None).unwrap();
    assert_eq!(entry.seq, 777);
    let reparsed = hexagone_auditor::ledger::proof::InclusionProof::parse(&proof.format()).unwrap();
    assert_eq!(reparsed, proof);
    assert!(matches!(
        ledger.prove("no-such-object").await,
        Err(StoreError::NoSuchObject(_))
    ));
    ledger.close().await;
    reverify(&url, &key.verifier().to_string()).await;
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(super::fresh_sqlite(dir.path())).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::fresh_postgres().await).await;
                }
            )*
        }
    };
}

on_both!(
    append_checkpoint_export,
    recovery_signs_committed_entries,
    concurrent_writers_cannot_fork,
    head_is_compare_and_swap,
    rotation_is_verified_across_keys,
    proofs_by_object,
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
