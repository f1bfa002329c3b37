//! Writers against writers: each holds a real token of the real `serve` on loopback, on SQLite
//! and PostgreSQL, and tries to spoil another writer's records: by taking the idempotency key
//! of a notification the other is about to deliver, by burying the other's object under
//! entries about the same identifier so that `prove` does not find it, or by recording under
//! a store name that reads like the collector's. Each scenario ends with `verify --policy`.

use sha2::{Digest as _, Sha256};

use crate::serve::{Setup, array, post};
use crate::util::{observation_json, run, run_ok};

/// The MinIO notification the webhook writer delivers (`tests/fixtures/minio-put.json`).
fn minio_put() -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/minio-put.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The idempotency key of that notification, computed in advance from its public format as
/// any writer can: the hex SHA-256 of store, endpoint, bucket, key, content tag, version and
/// the store's sequencer, each followed by a zero byte.
fn predicted_key(endpoint: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        "minio",
        endpoint,
        "documents",
        "spaces/7/Rapport annuel \u{e9}.pdf",
        "etag e1b6b5ad0f1f2ec4b1b8d5a4a0e2b4f1",
        "",
        "1805A0B3C3C2D1E7",
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("minio-event:{}", hex::encode(h.finalize()))
}

/// Every idempotency key row, as stored.
async fn request_rows(url: &str) -> Vec<String> {
    use hexagone_auditor::store::db::Db;
    let ledger = hexagone_auditor::store::Ledger::open(url).await.unwrap();
    let q = "SELECT id FROM ledger_requests ORDER BY id";
    let rows: Vec<(String,)> = match ledger.db() {
        Db::Sqlite(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
        Db::Postgres(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
    };
    ledger.close().await;
    rows.into_iter().map(|(id,)| id).collect()
}

/// A service on a fresh database (a SQLite file, or a PostgreSQL database) whose tokens file
/// also holds a token for each of `writers`: the setup and those tokens, in order.
fn with_writers<const N: usize>(postgres: bool, writers: [&str; N]) -> (Setup, [String; N]) {
    let setup = Setup::with_db(postgres.then(|| tokio_block(crate::util::fresh_postgres())));
    let tokens = setup.dir.path().join("tokens");
    let tokens = writers.map(|w| crate::util::add_token(&tokens, w));
    (setup, tokens)
}

/// A squatter, holding its own token, takes the key of a MinIO notification before the
/// store's webhook delivers it: once on the observations route with the key computed from the
/// notification's format, once by posting the same notification under another class on the
/// events route. The webhook's notification is recorded all the same, and its redelivery is
/// still recorded once: keys are the writer's own, per route.
fn a_notification_key_taken_first_by_another_writer_does_not_block_it(postgres: bool) {
    let (setup, [webhook, squatter]) = with_writers(postgres, ["minio-webhook", "squatter"]);
    let srv = setup.start(&[]);
    let key = predicted_key("minio-gra");

    let squat = observation_json(1).replacen('{', &format!("{{\"id\":\"{key}\","), 1);
    let a = post(&srv, "/v1/observations", &squatter, &squat);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["entries"][0]["recorded"], true);
    let a = post(
        &srv,
        "/v1/events/minio?endpoint=minio-gra&class=decoy",
        &squatter,
        &minio_put(),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let squatted = a.json()["entries"][0]["seq"].as_u64().unwrap();

    let real = "/v1/events/minio?endpoint=minio-gra&class=document";
    let a = post(&srv, real, &webhook, &minio_put());
    assert_eq!(a.status, 200, "the real notification is recorded: {a:?}");
    let v = a.json();
    assert_eq!(
        (v["writer"].as_str(), &v["entries"][0]["recorded"]),
        (Some("minio-webhook"), &true.into())
    );
    let seq = v["entries"][0]["seq"].as_u64().unwrap();
    assert!(seq > squatted, "{v}");
    // Redelivered: the webhook's own key still makes it a retry.
    let again = post(&srv, real, &webhook, &minio_put()).json();
    assert_eq!(again["entries"][0]["recorded"], false, "{again}");
    assert_eq!(again["entries"][0]["seq"], seq, "{again}");
    // The same notification from the squatter under the class it chose first is its own retry.
    let own = post(
        &srv,
        "/v1/events/minio?endpoint=minio-gra&class=decoy",
        &squatter,
        &minio_put(),
    )
    .json();
    assert_eq!(
        (
            own["entries"][0]["recorded"].as_bool(),
            own["entries"][0]["seq"].as_u64()
        ),
        (Some(false), Some(squatted))
    );
    drop(srv);

    // The prediction was right: the same key is held three times, under three scopes.
    let rows = tokio_block(request_rows(&setup.db));
    assert_eq!(
        rows,
        [
            format!("minio-webhook events/minio {key}"),
            format!("squatter events/minio {key}"),
            format!("squatter observations {key}"),
        ],
    );
    assert!(setup.verify().contains("valid"));
}

/// Runs `f` to its end on a runtime of its own (the scenarios are plain tests).
fn tokio_block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

/// A writer records its document; another writer, with its own token, then records 300
/// entries about the same identifier in its own store (more than any page of the index).
/// `prove --store` still proves the first writer's entry, and `prove` without a store refuses
/// to choose, naming both stores.
fn another_writers_entries_do_not_hide_an_object_from_prove(postgres: bool) {
    let (setup, [backup, squatter]) = with_writers(postgres, ["backup", "squatter"]);
    let srv = setup.start(&["--max-body", "4000000"]);
    let object = "spaces/1/doc-1";
    let a = post(&srv, "/v1/observations", &backup, &observation_json(1));
    assert_eq!(a.status, 200, "{a:?}");
    let genuine = a.json()["entries"][0]["seq"].as_u64().unwrap();
    let decoys: Vec<String> = (0..300u64)
        .map(|i| {
            observation_json(1)
                .replacen("\"store\":\"minio/documents\"", "\"store\":\"pg\"", 1)
                .replacen(
                    "\"class\":\"document\"",
                    &format!("\"class\":\"decoy-{i}\""),
                    1,
                )
        })
        .collect();
    for part in decoys.chunks(100) {
        let a = post(&srv, "/v1/observations", &squatter, &array(part));
        assert_eq!(a.status, 200, "{a:?}");
    }
    drop(srv);

    let proof = setup.path("doc-1.tlog-proof");
    run_ok(
        &[
            "prove",
            "--db",
            &setup.db,
            "--object",
            object,
            "--store",
            "minio/documents",
            "--out",
            &proof,
        ],
        None,
    );
    let checked = run_ok(
        &[
            "prove",
            "verify",
            &proof,
            "--trust",
            &setup.vkey,
            "--object",
            object,
            "--store",
            "minio/documents",
        ],
        None,
    );
    assert!(checked.contains(&format!("entry {genuine}")), "{checked}");
    let out = run(&["prove", "--db", &setup.db, "--object", object], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "object \"{object}\" is recorded in 2 stores (pg, minio/documents): give its store (`--store`)"
        )),
        "{err}"
    );
    assert!(setup.verify().contains("valid"));
}

/// Store and class names that read like the collector's store, or that are not plain, are
/// refused whole with a message naming the field, on both routes; nothing is written.
#[test]
fn store_and_class_names_that_look_reserved_or_are_not_plain_are_refused() {
    let setup = Setup::with_db(None);
    let srv = setup.start(&[]);
    let with = |store: &str, class: &str| {
        observation_json(5)
            .replacen(
                "\"minio/documents\"",
                &serde_json::to_string(store).unwrap(),
                1,
            )
            .replacen("\"document\"", &serde_json::to_string(class).unwrap(), 1)
    };
    for (store, reads_as) in [
        ("kubernetes", None),
        ("Kubernetes", Some("kubernetes")),
        ("kube-rnetes", Some("kubernetes")),
        ("kubernetes/volumes", None),
        ("KUBERN-E7E5:/volumes", Some("kubernetes")),
        ("k8s", None),
    ] {
        let a = post(
            &srv,
            "/v1/observations",
            &setup.token,
            &array(&[observation_json(4), with(store, "volume")]),
        );
        assert_eq!(a.status, 403, "{store}: {a:?}");
        let e = a.json()["error"].as_str().unwrap().to_owned();
        assert!(
            e.starts_with(&format!(
                "line 2: field `store`: {store:?} is reserved for the auditor's own Kubernetes collector"
            )),
            "{e}"
        );
        if let Some(r) = reads_as {
            assert!(
                e.contains(&format!(
                    "read without case, separators and look-alike digits, it is {r:?}"
                )),
                "{e}"
            );
        }
    }
    for (store, class, field, why) in [
        (
            "kubern\u{0435}tes",
            "volume",
            "store",
            "'\u{0435}' is not one of them",
        ),
        (
            "kubernetes\u{200b}",
            "volume",
            "store",
            "'\\u{200b}' is not one of them",
        ),
        (
            "minio/documents ",
            "document",
            "store",
            "' ' is not one of them",
        ),
        (
            "minio//documents",
            "document",
            "store",
            "it has an empty part between slashes",
        ),
        (
            "minio/documents",
            "Document",
            "class",
            "'D' is not one of them",
        ),
        (
            "minio/documents",
            "-document",
            "class",
            "it starts with \"-\"",
        ),
    ] {
        let a = post(&srv, "/v1/observations", &setup.token, &with(store, class));
        assert_eq!(a.status, 400, "{store} {class}: {a:?}");
        let e = a.json()["error"].as_str().unwrap().to_owned();
        let value = if field == "store" { store } else { class };
        assert!(
            e.starts_with(&format!(
                "line 1: field `{field}`: {value:?} is not a plain name: {why}; use 1 to 256 lowercase ASCII letters"
            )),
            "{e}"
        );
    }
    for (query, field) in [
        ("endpoint=MINIO-GRA&class=document", "endpoint"),
        ("endpoint=minio-gra&class=Volume", "class"),
        ("endpoint=minio-gra&class=kube%20rnetes", "class"),
    ] {
        let a = post(
            &srv,
            &format!("/v1/events/minio?{query}"),
            &setup.token,
            &minio_put(),
        );
        assert_eq!(a.status, 400, "{query}: {a:?}");
        let e = a.json()["error"].as_str().unwrap().to_owned();
        assert!(
            e.starts_with(&format!("object 1: field `{field}`: "))
                && e.contains("is not a plain name"),
            "{e}"
        );
    }
    drop(srv);
    let out = run(
        &["export", "--db", &setup.db, "--out", &setup.path("b.jsonl")],
        None,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exported 0 entries and 0 checkpoints"),
        "nothing was written: {out:?}"
    );
}

/// One test per database for each scenario `fn(postgres: bool)`.
macro_rules! on_each_database {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name(false);
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(true);
            })*
        }
    };
}

on_each_database!(
    a_notification_key_taken_first_by_another_writer_does_not_block_it,
    another_writers_entries_do_not_hide_an_object_from_prove,
);
