//! `hexagone-auditor serve` on loopback, the real binary on a real database: authenticated
//! ingest judged by the auditor and committed under signed checkpoints, refusals that write
//! nothing, idempotent retries, backpressure, the object stores' notifications, graceful
//! shutdown. Every scenario ends with `verify --policy` on the export.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{POLICY, bin, keygen, observation_json, run, run_ok};

/// A running `serve` process; killed on drop unless stopped.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory with a key, a token, an inventory of object stores and a database.
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    key: PathBuf,
    pub(crate) vkey: String,
    pub(crate) token: String,
    pub(crate) db: String,
}

impl Setup {
    fn new() -> Self {
        Self::with_db(None)
    }

    pub(crate) fn with_db(db: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, vkey) = keygen(dir.path(), "k");
        let tokens = dir.path().join("tokens");
        let token = crate::util::add_token(&tokens, "collector");
        assert!(token.starts_with("hxa_") && token.len() == 68, "{token}");
        std::fs::write(
            dir.path().join("inventory.yaml"),
            "- name: minio-gra
  addresses: [51.38.1.1]
  attestation: {country: FR, hostingCompany: OVH SAS, site: Gravelines, basis: contract,
                attestedBy: rssi@ministere.example.fr, validUntil: '2099-01-01T00:00:00Z'}
- name: ceph-par
  addresses: [51.15.1.1]
- name: seaweed-de
  addresses: [5.9.1.1]
",
        )
        .unwrap();
        let db = db.unwrap_or_else(|| crate::util::fresh_sqlite(dir.path()));
        Setup {
            dir,
            key,
            vkey,
            token,
            db,
        }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    pub(crate) fn start(&self, extra: &[&str]) -> Server {
        let mut child = Command::new(bin())
            .args(self.serve_args())
            .args(["--inventory", &self.path("inventory.yaml")])
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("serve listening on ")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_string();
        Server {
            child,
            addr,
            stdout,
        }
    }

    /// `serve` on this setup's database, key, policy and tokens.
    fn serve_args(&self) -> Vec<String> {
        let key = self.key.to_str().unwrap();
        ["serve", "--db", &self.db, "--key", key, "--policy", POLICY]
            .into_iter()
            .map(String::from)
            .chain(["--tokens".to_string(), self.path("tokens")])
            .collect()
    }

    /// Runs `serve` on this setup's database, key, policy and tokens with `extra` to its end
    /// (for what is refused at start).
    pub(crate) fn run_serve(&self, extra: &[&str]) -> std::process::Output {
        let base = self.serve_args();
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        run(&args, None)
    }

    /// Exports the ledger and runs `verify --policy`; returns verify's output.
    pub(crate) fn verify(&self) -> String {
        let bundle = self.path("bundle.jsonl");
        run_ok(&["export", "--db", &self.db, "--out", &bundle], None);
        run_ok(
            &["verify", &bundle, "--trust", &self.vkey, "--policy", POLICY],
            None,
        )
    }
}

use hexagone_testbed::http::Answer;

/// Sends one request (connection closed after it) and reads the whole answer.
fn request(addr: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Answer {
    hexagone_testbed::http::request(addr, method, path, token, body)
        .unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"))
}

pub(crate) fn post(srv: &Server, path: &str, token: &str, body: &str) -> Answer {
    request(&srv.addr, "POST", path, Some(token), body.as_bytes())
}

fn get(srv: &Server, path: &str) -> Answer {
    request(&srv.addr, "GET", path, None, b"")
}

/// The tree size of the published checkpoint (0 when there is none).
fn published_size(srv: &Server) -> u64 {
    let a = get(srv, "/v1/checkpoint");
    if a.status == 404 {
        return 0;
    }
    assert_eq!(a.status, 200, "{a:?}");
    a.body.lines().nth(1).unwrap().parse().unwrap()
}

/// Sends SIGTERM and waits: exit code and the rest of standard output.
fn terminate(mut srv: Server) -> (Option<i32>, String) {
    use nix::sys::signal::{Signal, kill};
    kill(
        nix::unistd::Pid::from_raw(srv.child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    srv.stdout.read_to_string(&mut rest).unwrap();
    let status = srv.child.wait().unwrap();
    (status.code(), rest)
}

pub(crate) fn array(lines: &[String]) -> String {
    format!("[{}]", lines.join(","))
}

#[test]
fn authenticated_ingest_is_judged_committed_and_verifies() {
    let setup = Setup::new();
    let srv = setup.start(&["--max-body", "16384"]);
    assert_eq!(get(&srv, "/healthz").status, 200);
    assert_eq!(get(&srv, "/readyz").status, 200);
    assert_eq!(get(&srv, "/v1/checkpoint").status, 404, "empty ledger");

    let lines: Vec<String> = (0..10).map(observation_json).collect();
    let a = post(&srv, "/v1/observations", &setup.token, &array(&lines));
    assert_eq!(a.status, 200, "{a:?}");
    let v = a.json();
    assert_eq!(v["writer"], "collector");
    assert_eq!(v["size"], 10);
    let mut verdicts: Vec<String> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            assert_eq!(e["seq"], i as u64);
            assert_eq!(e["recorded"], true);
            e["verdict"].as_str().unwrap().to_string()
        })
        .collect();
    // The auditor's own judgement: the address in DE (object 3) is a violation, a node with
    // only a private address (object 5) cannot be placed.
    assert_eq!(verdicts[3], "violation");
    assert_eq!(verdicts[5], "unknown");
    assert_eq!(published_size(&srv), 10);
    let cp = get(&srv, "/v1/checkpoint").body;
    assert!(
        cp.starts_with(crate::util::ORIGIN) && cp.contains("\n\n\u{2014} "),
        "{cp}"
    );
    // The answer carries the checkpoint itself, and says plainly that no witness vouches for it.
    assert_eq!(v["checkpoint"], cp.as_str());
    assert_eq!(v["witnessed"], false);
    assert_eq!(v["witnessed_by"], serde_json::json!([]));

    // One object alone is accepted too.
    let one = post(
        &srv,
        "/v1/observations",
        &setup.token,
        &observation_json(10),
    );
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.json()["entries"][0]["seq"], 10);
    verdicts.push(one.json()["entries"][0]["verdict"].as_str().unwrap().into());

    // Without a token, with a wrong one, with a token cut short: 401, nothing written.
    for token in [None, Some("hxa_wrong"), Some(&setup.token[1..])] {
        let a = request(
            &srv.addr,
            "POST",
            "/v1/observations",
            token,
            observation_json(11).as_bytes(),
        );
        assert_eq!(a.status, 401, "{a:?}");
        assert!(a.json()["error"].as_str().unwrap().contains("token") || token.is_none());
        assert!(a.headers.contains("www-authenticate: bearer"), "{a:?}");
    }
    // Oversized: 413.
    let big: Vec<String> = (100..200).map(observation_json).collect();
    let a = post(&srv, "/v1/observations", &setup.token, &array(&big));
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.json()["error"].as_str().unwrap().contains("--max-body"));
    // Malformed: 400 naming the observation (line) and field; the valid first one of the
    // request is not written either.
    let with_verdict = observation_json(21).replacen('{', "{\"verdict\":\"compliant\",", 1);
    let a = post(
        &srv,
        "/v1/observations",
        &setup.token,
        &array(&[observation_json(20), with_verdict]),
    );
    assert_eq!(a.status, 400, "{a:?}");
    let e = a.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.starts_with("line 2: field `verdict`: an observation carries facts only"),
        "{e}"
    );
    // A writer posing as the Kubernetes collector (its store, a volume's name): 403, and
    // the valid observation beside it is not written either.
    let as_collector = observation_json(22)
        .replacen(
            "\"store\":\"minio/documents\"",
            "\"store\":\"kubernetes\"",
            1,
        )
        .replacen("\"class\":\"document\"", "\"class\":\"volume\"", 1);
    assert!(
        as_collector.contains("\"store\":\"kubernetes\""),
        "{as_collector}"
    );
    let a = post(
        &srv,
        "/v1/observations",
        &setup.token,
        &array(&[observation_json(22), as_collector]),
    );
    assert_eq!(a.status, 403, "{a:?}");
    let e = a.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.starts_with("line 2: field `store`: \"kubernetes\" is reserved for the auditor's own Kubernetes collector"),
        "{e}"
    );
    let a = post(&srv, "/v1/observations", &setup.token, "{\"store\":");
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.json()["error"].as_str().unwrap().contains("not JSON"));
    let a = post(&srv, "/v1/observations", &setup.token, " 42 ");
    assert_eq!(a.status, 400, "{a:?}");
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("expected one observation (a JSON object) or an array of them")
    );
    let a = post(
        &srv,
        "/v1/observations",
        &setup.token,
        &format!("[{}, 42]", observation_json(23)),
    );
    assert_eq!(a.status, 400, "{a:?}");
    let e = a.json()["error"].as_str().unwrap().to_string();
    assert!(e.starts_with("line 2: "), "{e}");
    let unknown =
        observation_json(22).replacen("\"node\":{", "\"endpoint\":\"nowhere\",\"x\":{", 1);
    let a = post(&srv, "/v1/observations", &setup.token, &unknown);
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(
        published_size(&srv),
        11,
        "nothing of a refused request was written"
    );

    // A retried idempotency key is recorded once and answered with the original entry.
    let keyed = observation_json(30).replacen('{', "{\"id\":\"backup-2026-11-29\",", 1);
    let first = post(&srv, "/v1/observations", &setup.token, &keyed).json();
    assert_eq!(first["entries"][0]["recorded"], true);
    verdicts.push(first["entries"][0]["verdict"].as_str().unwrap().into());
    let again = post(&srv, "/v1/observations", &setup.token, &keyed).json();
    assert_eq!(again["entries"][0]["recorded"], false);
    assert_eq!(again["entries"][0]["seq"], first["entries"][0]["seq"]);
    assert_eq!(
        again["entries"][0]["verdict"],
        first["entries"][0]["verdict"]
    );
    assert_eq!(published_size(&srv), 12);
    // The same key for another observation: 409, and nothing of the request is written.
    let other = observation_json(31).replacen('{', "{\"id\":\"backup-2026-11-29\",", 1);
    let a = post(
        &srv,
        "/v1/observations",
        &setup.token,
        &array(&[observation_json(32), other]),
    );
    assert_eq!(a.status, 409, "{a:?}");
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("a different observation"),
        "{a:?}"
    );
    assert_eq!(published_size(&srv), 12);

    let metrics = get(&srv, "/metrics").body;
    for want in [
        "hexagone_auditor_entries_appended_total 12",
        "hexagone_auditor_checkpoint_size 12",
        "hexagone_auditor_violations_total{reason=\"countryNotAllowed\"}",
        "hexagone_auditor_http_requests_total{route=\"/v1/observations\",status=\"401\"} 3",
        "hexagone_auditor_http_requests_total{route=\"/v1/observations\",status=\"413\"} 1",
        "hexagone_auditor_ingest_latency_seconds_count 4",
        "hexagone_auditor_queue_depth 0",
        "hexagone_auditor_checkpoint_age_seconds ",
    ] {
        assert!(metrics.contains(want), "{want} missing from\n{metrics}");
    }

    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
    assert!(rest.contains("final checkpoint, size 12"), "{rest}");
    let out = setup.verify();
    assert!(out.contains("valid: 12 entries"), "{out}");
    let count = |w: &str| verdicts.iter().filter(|v| *v == w).count();
    let recorded = format!(
        "verdicts: {} compliant, {} violation, {} unknown",
        count("compliant"),
        count("violation"),
        count("unknown")
    );
    assert!(out.contains(&recorded), "{recorded} in {out}");
    assert!(out.contains("every verdict replayed"), "{out}");
}

#[test]
fn a_full_queue_answers_503_and_loses_nothing_acknowledged() {
    let setup = Setup::new();
    // One waiting request at most, and a sequencer that waits 1.5 s before each commit.
    let srv = setup.start(&["--queue", "1", "--flush-ms", "1500"]);
    let answers: Vec<(u64, Answer)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6u64)
            .map(|i| {
                let (addr, token) = (srv.addr.clone(), setup.token.clone());
                s.spawn(move || {
                    let body = observation_json(i);
                    (
                        i,
                        request(
                            &addr,
                            "POST",
                            "/v1/observations",
                            Some(&token),
                            body.as_bytes(),
                        ),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut acked = Vec::new();
    let mut refused = 0;
    for (i, a) in &answers {
        match a.status {
            200 => acked.push((*i, a.json()["entries"][0]["seq"].as_u64().unwrap())),
            503 => {
                refused += 1;
                assert!(a.headers.contains("retry-after: 1"), "{a:?}");
                assert!(
                    a.json()["error"]
                        .as_str()
                        .unwrap()
                        .contains("queue is full")
                );
            }
            _ => panic!("{a:?}"),
        }
    }
    // The sequencer holds one request, the queue one more; the others are refused.
    assert!(refused >= 1, "{answers:?}");
    assert!(acked.len() >= 2, "{answers:?}");
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
    // Every acknowledged observation is in the ledger, under the entry it was told.
    let bundle = setup.path("b.jsonl");
    run_ok(&["export", "--db", &setup.db, "--out", &bundle], None);
    let text = std::fs::read_to_string(&bundle).unwrap();
    let entries: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("{\"entry\":"))
        .collect();
    assert_eq!(entries.len(), acked.len(), "only what was acknowledged");
    for (i, seq) in &acked {
        assert!(
            entries[*seq as usize].contains(&format!("\"object\":\"spaces/{}/doc-{i}\"", i % 97)),
            "observation {i} at entry {seq}"
        );
    }
    assert!(
        setup
            .verify()
            .contains(&format!("valid: {} entries", acked.len()))
    );
}

#[test]
fn object_store_notifications_are_recorded_with_hashed_bucket_and_key() {
    let setup = Setup::new();
    let srv = setup.start(&[]);
    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let cases = [
        (
            "/v1/events/minio?endpoint=minio-gra&class=document",
            "minio-put.json",
            1,
            "compliant",
        ),
        (
            "/v1/events/ceph?endpoint=ceph-par&class=backup",
            "ceph-put.json",
            2,
            "unknown",
        ),
        (
            "/v1/events/seaweedfs?endpoint=seaweed-de",
            "seaweedfs-create.json",
            1,
            "violation",
        ),
    ];
    let mut size = 0;
    for (path, name, n, verdict) in cases {
        let a = post(&srv, path, &setup.token, &fixture(name));
        assert_eq!(a.status, 200, "{name}: {a:?}");
        let entries = a.json()["entries"].as_array().unwrap().clone();
        assert_eq!(entries.len(), n, "{name}");
        for e in &entries {
            assert_eq!(e["recorded"], true);
            assert_eq!(e["verdict"], verdict, "{name}: {e}");
        }
        size += n as u64;
        assert_eq!(published_size(&srv), size);
    }
    // A notification delivered again (the store retries) is recorded once.
    let again = post(&srv, cases[0].0, &setup.token, &fixture("minio-put.json")).json();
    assert_eq!(again["entries"][0]["recorded"], false);
    assert_eq!(again["entries"][0]["seq"], 0);
    // MinIO's webhook sends the token as `Authorization: Bearer`: nothing else is accepted.
    let a = request(
        &srv.addr,
        "POST",
        cases[0].0,
        None,
        fixture("minio-put.json").as_bytes(),
    );
    assert_eq!(a.status, 401);
    // The endpoint must be named, and declared.
    let a = post(
        &srv,
        "/v1/events/minio",
        &setup.token,
        &fixture("minio-put.json"),
    );
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("?endpoint=NAME")
    );
    let a = post(
        &srv,
        "/v1/events/minio?endpoint=minio.example.com",
        &setup.token,
        &fixture("minio-put.json"),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("not in the inventory")
    );
    // Not the format of the route: 400 naming the field.
    let a = post(
        &srv,
        "/v1/events/seaweedfs?endpoint=seaweed-de",
        &setup.token,
        &fixture("minio-put.json"),
    );
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("missing field `key`"),
        "{a:?}"
    );
    assert_eq!(published_size(&srv), size);

    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
    assert!(setup.verify().contains("valid: 4 entries"));
    // Neither bucket names nor keys reach the database, in any of its files.
    let mut files = 0;
    for f in std::fs::read_dir(setup.dir.path()).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        if !name.starts_with("ledger.sqlite") {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&f).unwrap();
        for raw in [
            "Rapport",
            "Rapport+annuel",
            "spaces%2F7",
            "portal/base/2026-11-29.tar",
            "000000010000000000000042",
            "compte-rendu",
            "/buckets/",
            "documents/",
            "backups",
        ] {
            assert!(
                !contains(&bytes, raw.as_bytes()),
                "{raw:?} found in {}",
                f.display()
            );
        }
        assert!(contains(&bytes, b"bucket-sha256:") || !name.ends_with("sqlite"));
    }
    assert!(files >= 1);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn graceful_shutdown_commits_what_is_queued_and_signs_a_final_checkpoint() {
    let setup = Setup::new();
    let srv = setup.start(&["--flush-ms", "1500"]);
    // Two requests: the sequencer takes the first and waits 1.5 s for more, the second waits
    // in the queue.
    let pending: Vec<_> = (0..2u64)
        .map(|r| {
            let (addr, token) = (srv.addr.clone(), setup.token.clone());
            std::thread::spawn(move || {
                let lines: Vec<String> = (r * 5..r * 5 + 5).map(observation_json).collect();
                request(
                    &addr,
                    "POST",
                    "/v1/observations",
                    Some(&token),
                    array(&lines).as_bytes(),
                )
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !get(&srv, "/metrics")
        .body
        .contains("hexagone_auditor_queue_depth 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the second request never queued"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, rest) = terminate(srv);
    for p in pending {
        let a = p.join().unwrap();
        assert_eq!(a.status, 200, "a request in flight is answered: {a:?}");
    }
    assert_eq!(code, Some(0), "{rest}");
    assert!(rest.contains("final checkpoint, size 10:"), "{rest}");
    let note = rest.split_once(":\n").unwrap().1;
    assert!(
        note.starts_with(&format!("{}\n10\n", crate::util::ORIGIN)),
        "{note}"
    );
    let out = setup.verify();
    assert!(out.contains("valid: 10 entries"), "{out}");
    // Started again on that ledger, the service brings the object index up to the head by
    // itself, with no proof asked for.
    let srv = setup.start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let indexed = || {
        rt.block_on(async {
            let db = hexagone_auditor::store::db::Db::connect(&setup.db)
                .await
                .unwrap();
            let hexagone_auditor::store::db::Db::Sqlite(pool) = &db else {
                unreachable!("this setup is on SQLite")
            };
            let upto: Option<i64> =
                sqlx::query_scalar("SELECT upto FROM ledger_objects_indexed WHERE id = 1")
                    .fetch_optional(pool)
                    .await
                    .unwrap();
            db.close().await;
            upto
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while indexed() != Some(10) {
        assert!(
            std::time::Instant::now() < deadline,
            "the object index stayed at {:?}",
            indexed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
    // The service refuses a tokens file others can read.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(setup.path("tokens"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = setup.run_serve(&["--listen", "127.0.0.1:0"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0640"),
        "{out:?}"
    );
}

#[test]
fn serve_on_postgresql() {
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::util::fresh_postgres());
    let setup = Setup::with_db(Some(url));
    let srv = setup.start(&[]);
    let lines: Vec<String> = (0..20).map(observation_json).collect();
    let a = post(&srv, "/v1/observations", &setup.token, &array(&lines));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["size"], 20);
    let keyed = observation_json(40).replacen('{', "{\"id\":\"k\",", 1);
    assert_eq!(
        post(&srv, "/v1/observations", &setup.token, &keyed).json()["entries"][0]["seq"],
        20
    );
    assert_eq!(
        post(&srv, "/v1/observations", &setup.token, &keyed).json()["entries"][0]["recorded"],
        false
    );
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
    assert!(setup.verify().contains("valid: 21 entries"));
}

/// Requests committed together: one whose idempotency key conflicts is refused alone, the
/// others are recorded.
#[test]
fn a_conflicting_request_does_not_fail_the_requests_batched_with_it() {
    let setup = Setup::new();
    let srv = setup.start(&["--flush-ms", "800"]);
    let keyed = |i| observation_json(i).replacen('{', "{\"id\":\"k\",", 1);
    assert_eq!(
        post(&srv, "/v1/observations", &setup.token, &keyed(50)).status,
        200
    );
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let bodies = [observation_json(51), keyed(52), observation_json(53)];
        let handles: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let (addr, token) = (srv.addr.clone(), setup.token.clone());
                s.spawn(move || {
                    request(
                        &addr,
                        "POST",
                        "/v1/observations",
                        Some(&token),
                        body.as_bytes(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 409, 200], "{answers:?}");
    assert_eq!(published_size(&srv), 3);
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
    assert!(setup.verify().contains("valid: 3 entries"));
}

/// With `--witness`, every commit's checkpoint is cosigned before the answer, and the export
/// passes `verify --witness`.
#[test]
fn witnesses_cosign_the_service_checkpoints() {
    let setup = Setup::new();
    let public = setup.dir.path().join("k.pub");
    let w = crate::witness::start_witness(setup.dir.path(), "w1", &public);
    let srv = setup.start(&["--witness", &format!("{},{}", w.key, w.url)]);
    for r in 0..2u64 {
        let lines: Vec<String> = (r * 3..r * 3 + 3).map(observation_json).collect();
        let a = post(&srv, "/v1/observations", &setup.token, &array(&lines));
        assert_eq!(a.status, 200, "{a:?}");
        // The published checkpoint is the one acknowledged, with the witness's cosignature,
        // and the answer carries it and says it is witnessed.
        let cp = get(&srv, "/v1/checkpoint").body;
        assert!(cp.contains(&format!("\n{}\n", r * 3 + 3)), "{cp}");
        assert!(
            cp.lines()
                .any(|l| l.starts_with("\u{2014} witness.test/w1 ")),
            "{cp}"
        );
        let v = a.json();
        assert_eq!(v["checkpoint"], cp.as_str());
        assert_eq!(v["witnessed"], true);
        assert_eq!(v["witnessed_by"], serde_json::json!(["witness.test/w1"]));
    }
    // The witness gone: the answer still comes (the entries are durable and signed) and says
    // that they are not witnessed.
    let w_key = w.key.clone();
    drop(w);
    let lines: Vec<String> = (6..7).map(observation_json).collect();
    let a = post(&srv, "/v1/observations", &setup.token, &array(&lines));
    assert_eq!(a.status, 200, "{a:?}");
    let v = a.json();
    assert_eq!(
        (v["size"].as_u64(), &v["witnessed"]),
        (Some(7), &serde_json::json!(false))
    );
    assert_eq!(v["witnessed_by"], serde_json::json!([]));
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
    let bundle = setup.path("bundle.jsonl");
    run_ok(&["export", "--db", &setup.db, "--out", &bundle], None);
    let out = run(
        &[
            "verify",
            &bundle,
            "--trust",
            &setup.vkey,
            "--witness",
            &w_key,
        ],
        None,
    );
    // The last checkpoint (7) was not cosigned: verify says so.
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.contains("cosigned by 0 of the required witnesses"),
        "{out}"
    );
}

/// A witness that accepts connections and never answers (stalled, or a network that drops its
/// answers): its key is a real witness key, its address a listener that holds every connection.
fn stalled_witness() -> (String, String) {
    let key =
        hexagone_auditor::ledger::cosignature::WitnessSigner::generate("witness.test/stalled")
            .unwrap()
            .public()
            .to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    (key, url)
}

/// Witnesses with a threshold: a stalled witness cannot hold acknowledgements. Each commit
/// waits at most `--witness-timeout` for the cosignatures, then answers saying plainly that
/// the entries are not witnessed, which witness did not cosign and why; meanwhile the service
/// keeps answering, and the stalled witness is not waited for again at the next commit. With
/// the threshold met (one of two, or both witnesses up), the answer says witnessed and by whom.
#[test]
fn a_stalled_witness_leaves_acks_unwitnessed_within_the_bound() {
    let setup = Setup::new();
    let public = setup.dir.path().join("k.pub");
    let w1 = crate::witness::start_witness(setup.dir.path(), "w1", &public);
    let (stalled_key, stalled_url) = stalled_witness();
    let w1_arg = format!("{},{}", w1.key, w1.url);
    let stalled_arg = format!("{stalled_key},{stalled_url}");
    let witnesses = |threshold: &str| {
        vec![
            "--witness".to_string(),
            w1_arg.clone(),
            "--witness".to_string(),
            stalled_arg.clone(),
            "--witness-threshold".to_string(),
            threshold.to_string(),
            "--witness-timeout".to_string(),
            "1".to_string(),
        ]
    };
    let args = witnesses("2");
    let srv = setup.start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let started = std::time::Instant::now();
    let a = std::thread::scope(|s| {
        let posting = s.spawn(|| {
            let lines: Vec<String> = (0..3).map(observation_json).collect();
            post(&srv, "/v1/observations", &setup.token, &array(&lines))
        });
        // While the commit waits for the stalled witness, the service answers.
        std::thread::sleep(Duration::from_millis(300));
        let asked = std::time::Instant::now();
        assert_eq!(get(&srv, "/healthz").status, 200);
        assert_eq!(get(&srv, "/readyz").status, 200);
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{:?}",
            asked.elapsed()
        );
        posting.join().unwrap()
    });
    let waited = started.elapsed();
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(4),
        "answered after {waited:?}, the bound is 1 s"
    );
    let v = a.json();
    assert_eq!(v["size"], 3);
    assert_eq!(v["witnessed"], false, "{v}");
    assert_eq!(v["witnessed_by"], serde_json::json!(["witness.test/w1"]));
    assert_eq!(v["witness_threshold"], 2);
    let why = v["not_witnessed"].as_str().unwrap();
    assert!(
        why.starts_with("cosigned by 1 of the 2 witnesses, 2 needed: witness.test/stalled did not cosign (witness witness.test/stalled did not answer within 1000 ms;"),
        "{why}"
    );
    // The checkpoint it carries holds w1's cosignature, not the stalled witness's.
    let cp = v["checkpoint"].as_str().unwrap();
    assert!(
        cp.contains("\u{2014} witness.test/w1 ") && !cp.contains("witness.test/stalled"),
        "{cp}"
    );
    // The next commit does not wait for the stalled witness again, and says so.
    let started = std::time::Instant::now();
    let a = post(&srv, "/v1/observations", &setup.token, &observation_json(3));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let v = a.json();
    assert_eq!(
        (v["size"].as_u64(), &v["witnessed"]),
        (Some(4), &serde_json::json!(false))
    );
    assert!(
        v["not_witnessed"]
            .as_str()
            .unwrap()
            .contains("asked again in"),
        "{v}"
    );
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");

    // A threshold of one: w1's cosignature is enough, and the answer says witnessed.
    let args = witnesses("1");
    let srv = setup.start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let v = post(&srv, "/v1/observations", &setup.token, &observation_json(4)).json();
    assert_eq!(v["witnessed"], true, "{v}");
    assert_eq!(v["witnessed_by"], serde_json::json!(["witness.test/w1"]));
    assert_eq!(v["witness_threshold"], 1);
    assert!(v.get("not_witnessed").is_none(), "{v}");
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");

    // Both witnesses up, both needed: witnessed by both.
    let w2 = crate::witness::start_witness(setup.dir.path(), "w2", &public);
    let w2_arg = format!("{},{}", w2.key, w2.url);
    let srv = setup.start(&[
        "--witness",
        &w1_arg,
        "--witness",
        &w2_arg,
        "--witness-threshold",
        "2",
    ]);
    let v = post(&srv, "/v1/observations", &setup.token, &observation_json(5)).json();
    assert_eq!(v["witnessed"], true, "{v}");
    assert_eq!(
        v["witnessed_by"],
        serde_json::json!(["witness.test/w1", "witness.test/w2"])
    );
    assert_eq!(v["witness_threshold"], 2);
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
    // More than the witnesses given is refused at start.
    let out = setup.run_serve(&["--witness", &w1_arg, "--witness-threshold", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--witness-threshold 2: give 1 to 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(setup.verify().contains("valid: 6 entries"));
}

/// Anyone on the network, without a token: a flood of connections that send nothing or trickle
/// their headers, and requests that declare large bodies and never send them. Honest writers are
/// still answered within a bound; the idle connections are closed after `--header-timeout`;
/// requests that do not fit the memory budget are answered 503 at once, and a body that never
/// comes gets 408 and gives its share back.
#[test]
fn a_slow_connection_flood_and_unsent_bodies_leave_honest_writers_answered() {
    use std::io::Write as _;
    use std::net::TcpStream;
    let setup = Setup::new();
    let srv = setup.start(&[
        "--max-connections",
        "64",
        "--header-timeout",
        "2",
        "--max-body",
        "16384",
        "--max-inflight-bytes",
        "2097152",
    ]);
    // 40 connections that say nothing, 10 that trickle a header line.
    let mut idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&srv.addr).unwrap())
        .collect();
    for _ in 0..10 {
        let mut s = TcpStream::connect(&srv.addr).unwrap();
        s.write_all(b"POST /v1/observations HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        idle.push(s);
    }
    let started = std::time::Instant::now();
    let lines: Vec<String> = (0..3).map(observation_json).collect();
    let a = post(&srv, "/v1/observations", &setup.token, &array(&lines));
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an honest writer waited {:?}",
        started.elapsed()
    );
    // The server closes what sent no complete headers in time.
    std::thread::sleep(Duration::from_secs(3));
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => assert!(
                String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
                "{}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset,
                "an idle connection is still open: {e}"
            ),
        }
    }
    // Each of these holds 16 KiB x 50 = 800 KiB of the 2 MiB budget while its body does not come:
    // two fit, the third is refused at once.
    let head = format!(
        "POST /v1/observations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 16384\r\n\r\n",
        setup.token
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&srv.addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(&srv.addr).unwrap();
    third.write_all(head.as_bytes()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut answer = String::new();
    let _ = third.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 503")
            && answer.contains("busy: the requests in progress hold the memory"),
        "{answer}"
    );
    // The unsent bodies time out (408) and give their share back: an honest writer fits again.
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let lines: Vec<String> = (3..6).map(observation_json).collect();
    let a = post(&srv, "/v1/observations", &setup.token, &array(&lines));
    assert_eq!(a.status, 200, "{a:?}");
    let m = get(&srv, "/metrics").body;
    assert!(m.contains("hexagone_auditor_refused_busy_total 1"), "{m}");
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
}

/// A TCP connection to `addr` from the loopback address `from` (`127.0.0.x` stands for another
/// client).
fn connect_from(from: &str, addr: &str) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(addr.parse().unwrap()).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// Posts `body` to `path` from the loopback address `from`: the answer's status and the time
/// it took.
fn post_from(from: &str, srv: &Server, path: &str, token: &str, body: &str) -> (u16, Duration) {
    use std::io::Write as _;
    let started = std::time::Instant::now();
    let mut s = connect_from(from, &srv.addr);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    (status, started.elapsed())
}

/// Connections in `held` still open: a read that times out rather than finding the end.
fn still_open(held: &mut [std::net::TcpStream]) -> usize {
    let mut open = 0;
    for s in held {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                open += 1
            }
            Err(e) => panic!("{e}"),
        }
    }
    open
}

/// Opens `n` connections from each address of `from`, each sending the first lines of a
/// request's headers and nothing more.
fn trickle(srv: &Server, from: &[&str], n: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write as _;
    from.iter()
        .flat_map(|f| std::iter::repeat_n(*f, n))
        .map(|f| {
            let mut s = connect_from(f, &srv.addr);
            let _ = s.write_all(b"POST /v1/observations HTTP/1.1\r\nHost: x\r\n");
            s
        })
        .collect()
}

/// `serve` with 16 connection slots, `per_client` of them per client, and 30 s to send headers.
fn start_small(setup: &Setup, per_client: &str) -> Server {
    setup.start(&[
        "--max-connections",
        "16",
        "--max-connections-per-client",
        per_client,
        "--header-timeout",
        "30",
    ])
}

/// A writer at `from` posts observations `3i..3i + 3` and is answered `200` within 1 s.
fn answered_at_once(setup: &Setup, srv: &Server, from: &str, i: u64) {
    let lines: Vec<String> = (i * 3..i * 3 + 3).map(observation_json).collect();
    let (status, took) = post_from(from, srv, "/v1/observations", &setup.token, &array(&lines));
    assert_eq!(status, 200, "writer at {from}");
    assert!(
        took < Duration::from_secs(1),
        "writer at {from} waited {took:?}"
    );
}

/// One address opens every connection it can and trickles header bytes on each: it keeps
/// `--max-connections-per-client` of them, the others are closed at once, and writers from
/// other addresses are answered at once. With the cap at `--max-connections` the same address
/// keeps every slot (so the count can fail), and a writer elsewhere is still answered at once:
/// it takes the slot of a connection that never sent its headers.
#[test]
fn one_address_cannot_take_every_connection_slot() {
    let setup = Setup::new();
    let capped = start_small(&setup, "4");
    let mut held = trickle(&capped, &["127.0.0.1"], 40);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        still_open(&mut held),
        4,
        "connections the flooding address kept"
    );
    answered_at_once(&setup, &capped, "127.0.0.2", 0);
    answered_at_once(&setup, &capped, "127.0.0.3", 1);
    drop(held);
    let (code, rest) = terminate(capped);
    assert_eq!(code, Some(0), "{rest}");

    let uncapped = start_small(&setup, "16");
    let mut held = trickle(&uncapped, &["127.0.0.1"], 40);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(still_open(&mut held), 16, "without the cap");
    answered_at_once(&setup, &uncapped, "127.0.0.2", 2);
    assert_eq!(still_open(&mut held), 15, "one gave its slot to the writer");
    drop(held);
    let (code, rest) = terminate(uncapped);
    assert_eq!(code, Some(0), "{rest}");
}

/// Many addresses, each under its cap, together hold every slot with connections that never
/// finish their headers (a botnet, or one host with many IPv6 prefixes), and keep reconnecting
/// when closed: a writer is answered at once, taking the slot of the one waiting the longest.
/// Before, the writer waited for the header timeout (30 s here).
#[test]
fn silent_connections_from_many_addresses_leave_a_writer_answered() {
    let setup = Setup::new();
    let srv = start_small(&setup, "4");
    let from: Vec<String> = (10..18).map(|i| format!("127.0.0.{i}")).collect();
    let from: Vec<&str> = from.iter().map(String::as_str).collect();
    let mut held = trickle(&srv, &from, 4);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(still_open(&mut held), 16, "the flood holds every slot");
    for i in 0..4u64 {
        // The flood takes back the slots it lost.
        held.extend(trickle(&srv, &from[..2], 1));
        answered_at_once(&setup, &srv, "127.0.0.2", i);
    }
    drop(held);
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
}

/// jemalloc's options in force in a running auditor: freed pages go back within 100 ms, purged
/// by jemalloc's background threads (`dirty_decay_ms:100`, `background_thread:true`), unless the
/// operator set `_RJEM_MALLOC_CONF`, whose value then stands alone. Read from the process itself
/// (`/proc/PID/environ`, which an `exec` replaces; its threads' names, jemalloc's
/// `jemalloc_bg_thd`).
#[test]
fn the_service_runs_with_jemalloc_giving_freed_pages_back_at_once() {
    fn malloc_conf(pid: u32) -> Vec<String> {
        std::fs::read(format!("/proc/{pid}/environ"))
            .unwrap()
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .filter(|v| v.starts_with("_RJEM_MALLOC_CONF="))
            .collect()
    }
    let setup = Setup::new();
    let srv = setup.start(&[]);
    assert_eq!(
        malloc_conf(srv.child.id()),
        ["_RJEM_MALLOC_CONF=background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0"]
    );
    let purger = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .any(|name| name.trim() == "jemalloc_bg_thd")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !purger(srv.child.id()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(purger(srv.child.id()), "no jemalloc background thread");
    let (code, rest) = terminate(srv);
    assert_eq!(code, Some(0), "{rest}");
    // The operator's own options win: a `verify` held waiting on a pipe shows them.
    let fifo = setup.path("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut held = Command::new(bin())
        .args(["verify", "--trust", &setup.vkey, &fifo])
        .env("_RJEM_MALLOC_CONF", "narenas:2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(malloc_conf(held.id()), ["_RJEM_MALLOC_CONF=narenas:2"]);
    held.kill().unwrap();
    held.wait().unwrap();
}

/// A memory budget smaller than one largest request is refused at start, saying why.
#[test]
fn a_budget_that_cannot_hold_one_request_is_refused() {
    let setup = Setup::new();
    let out = setup.run_serve(&["--max-body", "1048576", "--max-inflight-bytes", "8388608"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-body 1048576 would need 52428800 bytes of memory at 50 per body byte, more than --max-inflight-bytes 8388608"),
        "{err}"
    );
}
