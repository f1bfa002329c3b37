//! Witnesses watching the key holder, with the real binary: `witness serve` processes on
//! loopback, `append --witness`, and `verify --witness --witness-threshold`. A log that shows
//! two views to two witnesses, or one view after another to the same witness, is caught.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::util::{ORIGIN, bin, keygen, observation_json, run, run_ok};

/// A running witness process, killed on drop.
pub(crate) struct WitnessProcess {
    child: Child,
    pub(crate) url: String,
    pub(crate) key: String,
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_witness(dir: &Path, name: &str, log_pub: &Path) -> WitnessProcess {
    start_witness_of(dir, name, &[log_pub])
}

/// [`start_witness`] for a log known by several keys (before and after a rotation).
fn start_witness_of(dir: &Path, name: &str, log_pubs: &[&Path]) -> WitnessProcess {
    let key = dir.join(name);
    let out = run_ok(
        &[
            "witness",
            "keygen",
            "--name",
            &format!("witness.test/{name}"),
            "--out",
            key.to_str().unwrap(),
        ],
        None,
    );
    let vkey = out
        .lines()
        .find_map(|l| l.strip_prefix("witness key: "))
        .unwrap()
        .to_string();
    let mut child = Command::new(bin())
        .args(["witness", "serve", "--key", key.to_str().unwrap()])
        .args(
            log_pubs
                .iter()
                .flat_map(|p| ["--log-key", p.to_str().unwrap()]),
        )
        .args([
            "--state",
            dir.join(format!("{name}.state")).to_str().unwrap(),
        ])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit_once(" listening on ")
        .unwrap_or_else(|| panic!("witness did not start: {line:?}"))
        .1;
    WitnessProcess {
        child,
        url: format!("http://{addr}"),
        key: vkey,
    }
}

fn input(from: u64, n: u64) -> String {
    (from..from + n)
        .map(|i| observation_json(i) + "\n")
        .collect()
}

/// Appends `n` entries to `db` asking `witnesses`; returns stderr.
fn append(db: &str, key: &Path, witnesses: &[&WitnessProcess], from: u64, n: u64) -> String {
    let mut args = vec![
        "append".to_string(),
        "--policy".into(),
        crate::util::POLICY.into(),
        "--db".into(),
        db.into(),
        "--key".into(),
        key.to_str().unwrap().into(),
        "--batch".into(),
        "10".into(),
    ];
    for w in witnesses {
        args.push("--witness".into());
        args.push(format!("{},{}", w.key, w.url));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, Some(&input(from, n)));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Verifies the export of `db` with the given witnesses and threshold; (exit code, stdout).
fn verify(
    dir: &Path,
    db: &str,
    trust: &str,
    witnesses: &[&str],
    threshold: Option<usize>,
) -> (i32, String) {
    let bundle = dir.join("bundle.jsonl");
    run_ok(
        &["export", "--db", db, "--out", bundle.to_str().unwrap()],
        None,
    );
    let mut args = vec![
        "verify".to_string(),
        bundle.to_str().unwrap().into(),
        "--trust".into(),
        trust.into(),
    ];
    for w in witnesses {
        args.push("--witness".into());
        args.push(w.to_string());
    }
    if let Some(t) = threshold {
        args.push("--witness-threshold".into());
        args.push(t.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, None);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn witnesses_cosign_and_verify_requires_them() {
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "log");
    let log_pub = dir.path().join("log.pub");
    let (w1, w2, w3) = (
        start_witness(dir.path(), "w1", &log_pub),
        start_witness(dir.path(), "w2", &log_pub),
        start_witness(dir.path(), "w3", &log_pub),
    );
    let db = format!("sqlite:{}", dir.path().join("l.sqlite").display());
    // Two runs: the second learns each witness's last size from its 409 answer.
    assert_eq!(
        append(&db, &key, &[&w1, &w2], 0, 25),
        "appended 25 entries\n"
    );
    assert_eq!(
        append(&db, &key, &[&w1, &w2], 100, 12),
        "appended 12 entries\n"
    );
    let (code, out) = verify(dir.path(), &db, &vkey, &[&w1.key, &w2.key], None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("last checkpoint cosigned by: witness.test/w1, witness.test/w2"),
        "{out}"
    );
    // w3 was never asked: requiring it fails and names it; a threshold of 1 of {w1, w3} passes.
    let (code, out) = verify(dir.path(), &db, &vkey, &[&w1.key, &w3.key], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("cosigned by 1 of the required witnesses, 2 needed; missing: witness.test/w3"),
        "{out}"
    );
    let (code, out) = verify(dir.path(), &db, &vkey, &[&w1.key, &w3.key], Some(1));
    assert_eq!(code, 0, "{out}");
    assert_eq!(ORIGIN, vkey.split('+').next().unwrap());
}

/// The key holder keeps two databases, two views of one log under one key, and shows each
/// to a different witness. Neither view gets both cosignatures, and showing one view to the
/// witness that saw the other is refused.
#[test]
fn a_log_showing_two_views_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "log");
    let log_pub = dir.path().join("log.pub");
    let (w1, w2) = (
        start_witness(dir.path(), "w1", &log_pub),
        start_witness(dir.path(), "w2", &log_pub),
    );
    let a = format!("sqlite:{}", dir.path().join("a.sqlite").display());
    let b = format!("sqlite:{}", dir.path().join("b.sqlite").display());
    append(&a, &key, &[&w1], 0, 20);
    // The key holder signs a second view with a copy of the key, away from the record of the
    // last head signed that the first copy keeps (which would refuse it).
    let copy = dir.path().join("elsewhere");
    std::fs::create_dir(&copy).unwrap();
    let copy = copy.join("log");
    std::fs::copy(&key, &copy).unwrap();
    append(&b, &copy, &[&w2], 5000, 20);
    for db in [&a, &b] {
        let (code, out) = verify(dir.path(), db, &vkey, &[&w1.key, &w2.key], None);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("cosigned by 1 of the required witnesses"),
            "{out}"
        );
    }
    // View A shown to w2, which cosigned view B: refused (same size, other root; or an
    // inconsistent proof), and A still lacks w2's cosignature.
    let err = append(&a, &key, &[&w2], 100, 10);
    assert!(
        err.contains("did not cosign") && err.contains("refused"),
        "{err}"
    );
    let (code, out) = verify(dir.path(), &a, &vkey, &[&w1.key, &w2.key], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("missing: witness.test/w1, witness.test/w2"),
        "{out}"
    );
}

/// The database set back to an older copy, its record beside the key lost (a replica's pod
/// restarted): the next start asks the witness, which cosigned more of the log than the
/// database holds, and refuses before anything is dropped or signed. Without the witness the
/// same start goes ahead: the witness is what catches it.
#[test]
fn a_database_set_back_is_caught_by_a_witness_that_cosigned_more() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "log");
    let log_pub = dir.path().join("log.pub");
    let w1 = start_witness(dir.path(), "w1", &log_pub);
    let file = dir.path().join("l.sqlite");
    let db = format!("sqlite:{}", file.display());
    append(&db, &key, &[&w1], 0, 10);
    let copies = |from: &Path, to: &Path| {
        for suffix in ["", "-wal", "-shm"] {
            let (a, b) = (
                format!("{}{suffix}", from.display()),
                format!("{}{suffix}", to.display()),
            );
            let _ = std::fs::remove_file(&b);
            if Path::new(&a).exists() {
                std::fs::copy(&a, &b).unwrap();
            }
        }
    };
    let backup = dir.path().join("backup.sqlite");
    copies(&file, &backup);
    append(&db, &key, &[&w1], 100, 10);
    copies(&backup, &file);
    std::fs::remove_file(dir.path().join("log.signed-head")).unwrap();

    let args = crate::util::append_args(&db, key.to_str().unwrap(), &[]);
    let mut with_witness = args.clone();
    let witness = format!("{},{}", w1.key, w1.url);
    with_witness.extend(["--witness", &witness]);
    let out = run(&with_witness, Some(&input(200, 5)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "witness witness.test/w1 has cosigned this log at size 20, but the database's signed head is size 10"
        ) && err.contains("10 acknowledged entries are missing"),
        "{err}"
    );
    let out = run(&args, Some(&input(200, 5)));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bundle cut back to an older witnessed checkpoint verifies with `--witness` (its last
/// checkpoint is cosigned), hiding what came after. `--fresh-from` asks the witness for the
/// newest checkpoint it cosigned and holds the bundle to it: the cut bundle is refused, the
/// whole one passes and says against what; a witness that cannot be asked stops the check.
#[test]
fn a_bundle_cut_back_to_an_older_witnessed_checkpoint_is_not_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "log");
    let log_pub = dir.path().join("log.pub");
    let w1 = start_witness(dir.path(), "w1", &log_pub);
    let db = format!("sqlite:{}", dir.path().join("l.sqlite").display());
    append(&db, &key, &[&w1], 0, 10);
    let old = dir.path().join("old.jsonl");
    run_ok(
        &["export", "--db", &db, "--out", old.to_str().unwrap()],
        None,
    );
    append(&db, &key, &[&w1], 100, 10);
    let new = dir.path().join("new.jsonl");
    run_ok(
        &["export", "--db", &db, "--out", new.to_str().unwrap()],
        None,
    );
    let fresh = format!("{},{}", w1.key, w1.url);
    let check = |bundle: &Path, extra: &[&str]| {
        let mut args = vec!["verify", bundle.to_str().unwrap(), "--trust", &vkey];
        args.extend_from_slice(extra);
        let out = run(&args, None);
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = check(&old, &["--witness", &w1.key]);
    assert_eq!(code, 0, "the cut bundle passes without freshness: {out}");
    let (code, out) = check(&old, &["--witness", &w1.key, "--fresh-from", &fresh]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID") && out.contains("size 20"), "{out}");
    let (code, out) = check(&new, &["--witness", &w1.key, "--fresh-from", &fresh]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "fresh: the bundle reaches the newest checkpoint witness witness.test/w1 cosigned (size 20)"
        ),
        "{out}"
    );
    let url = w1.url.clone();
    drop(w1);
    let (code, out) = check(&new, &["--fresh-from", &fresh]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "witness witness.test/w1 at {url} could not be asked for its newest checkpoint, so freshness was not checked"
        )),
        "{out}"
    );
}

/// The key holder hands out a bundle whose last checkpoint two witnesses cosigned: one two
/// hours ago (a log cut back to a checkpoint it saw long ago looks like this), one a minute
/// ago. `verify --witness` alone accepts the old cosignature and says freshness was not
/// checked; with `--max-age 1h` the old cosignature does not count, so the bundle is refused
/// as not fresh, naming the witness and when it cosigned; the recent one passes and is shown.
#[test]
fn a_cosignature_older_than_max_age_is_refused() {
    use hexagone_auditor::ledger::checkpoint::parse_note;
    use hexagone_auditor::ledger::cosignature::WitnessSigner;
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "log");
    let db = format!("sqlite:{}", dir.path().join("l.sqlite").display());
    append(&db, &key, &[], 0, 10);
    let old = WitnessSigner::generate("witness.test/old").unwrap();
    let recent = WitnessSigner::generate("witness.test/recent").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ledger = hexagone_auditor::store::Ledger::open(&db).await.unwrap();
        let head = ledger.head().await.unwrap();
        let text = parse_note(head.note.as_deref().unwrap()).unwrap().text;
        for (w, at) in [(&old, now - 7200), (&recent, now - 60)] {
            let line = w.cosign(&text, at);
            ledger
                .db()
                .add_cosignature(10, w.public().name(), &line)
                .await
                .unwrap();
        }
        ledger.close().await;
    });
    let bundle = dir.path().join("bundle.jsonl");
    run_ok(
        &["export", "--db", &db, "--out", bundle.to_str().unwrap()],
        None,
    );
    let (old_key, recent_key) = (old.public().to_string(), recent.public().to_string());
    let check = |extra: &[&str]| {
        let mut args = vec!["verify", bundle.to_str().unwrap(), "--trust", &vkey];
        args.extend_from_slice(extra);
        let out = run(&args, None);
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = check(&["--witness", &old_key]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("freshness NOT checked"), "{out}");
    let (code, out) = check(&["--witness", &old_key, "--max-age", "1h"]);
    assert_eq!(code, 1, "{out}");
    let when = hexagone_auditor::args::unix_time(now - 7200);
    assert!(
        out.contains(&format!(
            "INVALID: the last checkpoint (size 10) is cosigned recently enough by 0 of the required witnesses, 1 needed: witness.test/old cosigned it at {when}; cosignatures before "
        )) && out.contains("are too old (--max-age)"),
        "{out}"
    );
    // Within three hours, the same cosignature is recent enough.
    let (code, out) = check(&["--witness", &old_key, "--max-age", "3h"]);
    assert_eq!(code, 0, "{out}");
    // One of the two, within an hour: the recent witness alone counts, and is shown.
    let (code, out) = check(&[
        "--witness",
        &old_key,
        "--witness",
        &recent_key,
        "--witness-threshold",
        "1",
        "--max-age",
        "1h",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("fresh: the last checkpoint's cosignatures counted were made within --max-age 1h (after ")
            && out.contains(&format!(
                "): witness.test/recent at {}\n",
                hexagone_auditor::args::unix_time(now - 60)
            )),
        "{out}"
    );
    assert!(!out.contains("freshness NOT checked"), "{out}");
    // Nothing to apply it to, or no duration: usage errors.
    let (code, out) = check(&["--max-age", "1h"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("--max-age applies to the cosignatures"),
        "{out}"
    );
    let (code, out) = check(&["--witness", &old_key, "--max-age", "soon"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not a duration such as"), "{out}");
}

/// Keys in force by size, over the network against the real `witness serve` (the library's
/// rule is `hexagone_ledger::witness`'s `a_retired_key_cannot_get_a_branch_cosigned`): the
/// witness knows both of the log's keys; once it cosigned a checkpoint signed by the successor,
/// whoever holds the retired key cannot get a branch cosigned, even one that extends every
/// entry the witness saw, and the genuine log goes on.
#[tokio::test]
async fn a_retired_key_cannot_get_a_branch_cosigned_over_loopback() {
    use ed25519_dalek::SigningKey;
    use hexagone_auditor::keys::SignerKey;
    use hexagone_auditor::ledger::Sequencer;
    use hexagone_auditor::ledger::entry::{Body, Timestamp};
    use hexagone_auditor::ledger::tree::{Hash, consistency_proof, root_of_leaves};
    use hexagone_auditor::ledger::witness::AddCheckpoint;
    use hexagone_auditor::witness::serve::add_checkpoint;

    let dir = tempfile::tempdir().unwrap();
    let key =
        |b: u8| SignerKey::from_signing_key(ORIGIN, SigningKey::from_bytes(&[b; 32])).unwrap();
    let (retired, next) = (key(31), key(32));
    let (old_pub, next_pub) = (dir.path().join("old.pub"), dir.path().join("next.pub"));
    std::fs::write(&old_pub, retired.verifier().to_string()).unwrap();
    std::fs::write(&next_pub, next.verifier().to_string()).unwrap();
    let w = start_witness_of(dir.path(), "w", &[&old_pub, &next_pub]);
    let submit = |old: u64, new: u64, note: String, leaves: Vec<Hash>| {
        let url = w.url.clone();
        async move {
            let proof = if old == 0 {
                Vec::new()
            } else {
                let mut mth =
                    |a: u64, b: u64| Ok::<_, ()>(root_of_leaves(&leaves[a as usize..b as usize]));
                consistency_proof(old, new, &mut mth).unwrap().unwrap()
            };
            add_checkpoint(&url, &AddCheckpoint { old, proof, note })
                .await
                .unwrap()
        }
    };
    let body = |i: u64| Body::KeyRotation {
        new_key: format!("e{i}"),
    };
    // The genuine log: 4 entries, the rotation, 2 more signed by the successor; each
    // checkpoint cosigned.
    let mut genuine = Sequencer::new(retired.clone());
    let mut leaves = Vec::new();
    for i in 0..4 {
        leaves.push(genuine.seal(Timestamp(0), body(i)).leaf);
    }
    assert_eq!(submit(0, 4, genuine.sign(), leaves.clone()).await.0, 200);
    let (rotation, note5) = genuine.rotate(Timestamp(0), next.clone()).unwrap();
    leaves.push(rotation.leaf);
    assert_eq!(submit(4, 5, note5, leaves.clone()).await.0, 200);
    for i in 5..7 {
        leaves.push(genuine.seal(Timestamp(0), body(i)).leaf);
    }
    assert_eq!(submit(5, 7, genuine.sign(), leaves.clone()).await.0, 200);
    // The thief replays the public entries under the retired key, then adds its own.
    let mut thief = Sequencer::new(retired.clone());
    let mut branch = Vec::new();
    for i in 0..4 {
        branch.push(thief.seal(Timestamp(0), body(i)).leaf);
    }
    let announce = Body::KeyRotation {
        new_key: next.verifier().to_string(),
    };
    branch.push(thief.seal(Timestamp(0), announce).leaf);
    for i in [5, 6, 107, 108] {
        branch.push(thief.seal(Timestamp(0), body(i)).leaf);
    }
    assert_eq!(
        branch[..7],
        leaves[..],
        "the branch extends the genuine log"
    );
    let (status, answer) = submit(7, 9, thief.sign(), branch).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("a key this log retired"), "{answer}");
    // The genuine log goes on under its key in force.
    for i in 7..9 {
        leaves.push(genuine.seal(Timestamp(0), body(i)).leaf);
    }
    let (status, answer) = submit(7, 9, genuine.sign(), leaves).await;
    assert_eq!(status, 200, "{answer}");
}
