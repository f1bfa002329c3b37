//! The `hexagone-auditor` binary end to end: keygen, append, checkpoint, rotate, export,
//! verify and prove, as an operator would run them.

use std::os::unix::fs::PermissionsExt as _;

use hexagone_auditor::keys::VerifierKey;
use hexagone_auditor::ledger::proof::InclusionProof;

use crate::util::{ORIGIN, append_args, keygen, observation_json, run, run_ok};

fn input(from: u64, n: u64) -> String {
    (from..from + n)
        .map(|i| observation_json(i) + "\n")
        .collect()
}

/// `append` (see `append_args`), fed `stdin`.
fn append(db: &str, key: &str, extra: &[&str], stdin: &str) -> std::process::Output {
    run(&append_args(db, key, extra), Some(stdin))
}

/// `append` started with its input and output piped (a stream), jemalloc's options left to
/// the program.
fn spawn_append(db: &str, key: &str, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(crate::util::bin())
        .args(append_args(db, key, extra))
        .env_remove("_RJEM_MALLOC_CONF")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// [`append`], which must succeed; its standard output.
fn append_ok(db: &str, key: &str, extra: &[&str], stdin: &str) -> String {
    run_ok(&append_args(db, key, extra), Some(stdin))
}

#[test]
fn keygen_prints_fingerprint_and_verifier_key_and_writes_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let out = run_ok(
        &["keygen", "--name", ORIGIN, "--out", path.to_str().unwrap()],
        None,
    );
    let vkey = out
        .lines()
        .find_map(|l| l.strip_prefix("verifier key: "))
        .unwrap();
    let key = VerifierKey::parse(vkey).unwrap();
    assert_eq!(key.name(), ORIGIN);
    assert!(out.contains(&format!("fingerprint: SHA256:{}", key.fingerprint())));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("k.pub"))
            .unwrap()
            .trim(),
        vkey
    );
    // Never overwrites a key.
    let again = run(
        &["keygen", "--name", ORIGIN, "--out", path.to_str().unwrap()],
        None,
    );
    assert_eq!(again.status.code(), Some(2));
    // A bad name is refused.
    let bad = run(
        &[
            "keygen",
            "--name",
            "a b",
            "--out",
            dir.path().join("x").to_str().unwrap(),
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("key name"));
}

/// `… | head`: a reader that stops early ends the program quietly, status 141 as for SIGPIPE,
/// no panic message; the work done before the output (here the key written) is whole.
#[test]
fn a_closed_output_pipe_ends_the_program_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    hexagone_testbed::assert_quiet_on_a_closed_pipe(
        std::process::Command::new(crate::util::bin()).args([
            "keygen",
            "--name",
            ORIGIN,
            "--out",
            path.to_str().unwrap(),
        ]),
    );
    assert!(std::fs::read_to_string(dir.path().join("k.pub")).is_ok());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn private_keys_readable_by_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "k");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let db = format!("sqlite:{}", dir.path().join("l.sqlite").display());
    let out = append(&db, key.to_str().unwrap(), &[], &input(0, 3));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
    // A symbolic link to a good key file is refused: the file read must be the file checked.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&key, &link).unwrap();
    let out = append(&db, link.to_str().unwrap(), &[], &input(0, 3));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a symbolic link"), "{err}");
    // Nothing was written by the refused runs.
    assert!(!dir.path().join("l.sqlite").exists());
}

#[test]
fn append_export_verify_prove_and_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (k1, v1) = keygen(dir.path(), "k1");
    let (k2, v2) = keygen(dir.path(), "k2");
    let db = format!("sqlite:{}", p("l.sqlite"));
    let k1s = k1.to_str().unwrap();
    // 250 entries in batches of 100, each committed with its checkpoint.
    let out = append_ok(&db, k1s, &["--batch", "100"], &input(0, 250));
    let acks: Vec<&str> = out.lines().filter(|l| l.starts_with("ack ")).collect();
    assert_eq!(
        acks,
        [
            "ack first=0 last=99 size=100",
            "ack first=100 last=199 size=200",
            "ack first=200 last=249 size=250"
        ]
    );
    // Bad input names its line and stops with exit 2; earlier batches stay acknowledged.
    let mut bad = input(250, 5);
    bad.push_str("{\"store\":\"x\"}\n");
    let out = append(&db, k1s, &["--input", "-"], &bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 6: missing field"));
    // Rotate to k2, then append under k2; k1 can no longer sign.
    let out = run_ok(
        &[
            "rotate",
            "--db",
            &db,
            "--key",
            k1s,
            "--new-key",
            k2.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.contains("rotated to"), "{out}");
    let out = append(&db, k1s, &[], &input(300, 5));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not this ledger's signing key in force")
    );
    append_ok(
        &db,
        k2.to_str().unwrap(),
        &["--input", "-"],
        &input(300, 40),
    );
    let note = run_ok(
        &["checkpoint", "--db", &db, "--key", k2.to_str().unwrap()],
        None,
    );
    assert!(note.starts_with(&format!("{ORIGIN}\n291\n")), "{note}");
    // Export and verify with either key, or either fingerprint.
    run_ok(&["export", "--db", &db, "--out", &p("bundle.jsonl")], None);
    // The head note saved to a file, then copied the way `jq -r` does (one more newline): both
    // hold the bundle to it, and verify says which checkpoint it checked against. A file that
    // is not a note is a usage error (exit 2), not a bad ledger.
    let out = run(
        &[
            "checkpoint",
            "--db",
            &db,
            "--key",
            k2.to_str().unwrap(),
            "--out",
            &p("head.note"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(p("head.note")).unwrap(), note);
    std::fs::write(p("jq.note"), format!("{note}\n")).unwrap();
    for file in ["head.note", "jq.note"] {
        let out = run_ok(
            &[
                "verify",
                &p("bundle.jsonl"),
                "--trust",
                &v2,
                "--checkpoint",
                &p(file),
            ],
            None,
        );
        assert!(
            out.contains(&format!(
                "fresh: the bundle reaches the checkpoint in {} (size 291)",
                p(file)
            )),
            "{out}"
        );
    }
    std::fs::write(p("garbage.note"), "not a note\n").unwrap();
    let out = run(
        &[
            "verify",
            &p("bundle.jsonl"),
            "--trust",
            &v2,
            "--checkpoint",
            &p("garbage.note"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the file is not a signed checkpoint note"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Trust means the key in force: k2 verifies, retired k1 only when accepted explicitly.
    let out = run_ok(&["verify", &p("bundle.jsonl"), "--trust", &v2], None);
    assert!(out.contains("valid: 291 entries"), "{out}");
    assert!(
        out.contains(&format!("last checkpoint signed by key 1: {v2}")),
        "{out}"
    );
    let out = run(&["verify", &p("bundle.jsonl"), "--trust", &v1], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is retired"));
    let out = run_ok(
        &[
            "verify",
            &p("bundle.jsonl"),
            "--trust",
            &v1,
            "--accept-retired-key",
        ],
        None,
    );
    assert!(out.contains("valid: 291 entries"), "{out}");
    assert!(out.contains("the trusted key (key 0) is retired"), "{out}");
    // Prove one object; the proof verifies against the new key.
    let proof = run_ok(
        &["prove", "--db", &db, "--object", "spaces/12/doc-12"],
        None,
    );
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1\nextra "));
    let parsed = InclusionProof::parse(&proof).unwrap();
    let entry = parsed
        .verify(&[VerifierKey::parse(&v2).unwrap()], None)
        .unwrap();
    assert_eq!(entry.seq, 12);
    assert!(
        parsed
            .verify(&[VerifierKey::parse(&v1).unwrap()], None)
            .is_err()
    );
    // Not on a terminal: no progress display on stderr.
    let out = run(&["export", "--db", &db, "--out", &p("b2.jsonl")], None);
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\r'));
}

/// Whoever obtains a retired key can announce a key of their own under it and sign the rest
/// with that. An auditor who still trusts the retired key is told so, and told which key
/// signed the last checkpoint, instead of a plain "valid".
#[test]
fn a_retired_key_does_not_vouch_for_its_successors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (k1, v1) = keygen(dir.path(), "k1");
    let (mallory, vm) = keygen(dir.path(), "mallory");
    let db = format!("sqlite:{}", p("l.sqlite"));
    append_ok(&db, k1.to_str().unwrap(), &[], &input(0, 20));
    // The attacker holds the old key: rotates to their own and signs what they like.
    run_ok(
        &[
            "rotate",
            "--db",
            &db,
            "--key",
            k1.to_str().unwrap(),
            "--new-key",
            mallory.to_str().unwrap(),
        ],
        None,
    );
    append_ok(&db, mallory.to_str().unwrap(), &[], &input(100, 20));
    run_ok(&["export", "--db", &db, "--out", &p("forged.jsonl")], None);
    let out = run(&["verify", &p("forged.jsonl"), "--trust", &v1], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("INVALID") && stdout.contains("is retired") && stdout.contains(&vm),
        "{stdout}"
    );
    let out = run_ok(
        &[
            "verify",
            &p("forged.jsonl"),
            "--trust",
            &v1,
            "--accept-retired-key",
        ],
        None,
    );
    assert!(
        out.contains(&format!("last checkpoint signed by key 1: {vm}")) && out.contains("WARNING"),
        "{out}"
    );
}

/// A slow stream is acknowledged on the timer, without waiting for a full batch or the end of
/// its input; a retried line (same id) is acknowledged with the entry that already holds it.
#[test]
fn a_stream_gets_acks_on_a_timer_and_retries_are_recorded_once() {
    use std::io::{BufRead as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "k");
    let db = format!("sqlite:{}", dir.path().join("l.sqlite").display());
    let mut child = spawn_append(
        &db,
        key.to_str().unwrap(),
        &["--batch", "1000", "--flush-ms", "50"],
    );
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let with_id = |i: u64| observation_json(i).replacen('{', &format!("{{\"id\":\"obs-{i}\","), 1);
    let next = || {
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("no ack within 60 s while the input stays open")
    };
    for i in 0..3 {
        writeln!(stdin, "{}", with_id(i)).unwrap();
    }
    stdin.flush().unwrap();
    assert_eq!(next(), "ack first=0 last=2 size=3");
    // The writer retries line 1 (it never saw the ack), then sends a new one.
    writeln!(stdin, "{}\n{}", with_id(1), with_id(3)).unwrap();
    stdin.flush().unwrap();
    let mut got = vec![next(), next()];
    got.sort();
    assert_eq!(got, ["ack first=3 last=3 size=4", "already id=obs-1 seq=1"]);
    drop(stdin);
    assert!(child.wait().unwrap().success());
    run_ok(
        &[
            "export",
            "--db",
            &db,
            "--out",
            dir.path().join("b").to_str().unwrap(),
        ],
        None,
    );
    let out = run_ok(
        &[
            "verify",
            dir.path().join("b").to_str().unwrap(),
            "--trust",
            &vkey,
        ],
        None,
    );
    assert!(out.contains("valid: 4 entries"), "{out}");
}

/// `command`'s output, for a binary this process has just written: while it was being copied,
/// another test's thread may have forked, and its child holds the copy open for writing until
/// it executes its own program; executing the copy meanwhile fails with `ETXTBSY` ("text file
/// busy", the race golang/go#22315 describes). Tried again for up to 5 s.
fn output_of_fresh_binary(command: &mut std::process::Command) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match command.output() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result.unwrap(),
        }
    }
}

/// An installed binary (copied elsewhere, run from another directory) needs no data file and
/// no source tree: alone it reads the geolocation data built into it; with the data installed
/// next to it in `<prefix>/share/hexagone/ip-location-db`, it reads that copy (a newer one can
/// be dropped in without a rebuild). `--version` names the built-in data's versions.
#[test]
fn an_installed_binary_runs_alone_or_with_its_data_next_to_it_and_names_its_versions() {
    let prefix = tempfile::tempdir().unwrap();
    let bin = prefix.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let installed = bin.join("hexagone-auditor");
    std::fs::copy(crate::util::bin(), &installed).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    // `locate` exits 1 for a violation: the exit code is checked by the caller.
    let run_installed = |args: &[&str], code: i32| {
        let out = output_of_fresh_binary(
            std::process::Command::new(&installed)
                .args(args)
                .current_dir(elsewhere.path())
                .env_remove("HEXAGONE_GEO_DIR"),
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let version = run_installed(&["--version"], 0);
    assert!(
        version.contains("@ip-location-db/asn 2.") && version.contains("extra-EU control list: "),
        "{version}"
    );
    let policy = crate::util::policy("france-diffusion-restreinte");
    // An address alone never meets Diffusion Restreinte (no attestation, no region label).
    let alone = run_installed(&["locate", "51.38.1.1", "--policy", &policy], 1);
    assert!(
        alone.contains(
            "databases: location built-in:ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb; "
        ),
        "{alone}"
    );
    assert!(alone.contains("address 51.38.1.1 is in FR"), "{alone}");
    assert!(alone.contains("IP data: ip-location-db"), "{alone}");

    std::fs::create_dir_all(prefix.path().join("share/hexagone")).unwrap();
    std::os::unix::fs::symlink(
        hexagone_platform::geo::SOURCE_GEO_DIR,
        prefix.path().join("share/hexagone/ip-location-db"),
    )
    .unwrap();
    let located = run_installed(&["locate", "51.38.1.1", "--policy", &policy], 1);
    let expected = format!(
        "databases: location {}/../share/hexagone/ip-location-db/",
        bin.display()
    );
    assert!(located.contains(&expected), "{located}");
    assert!(located.contains("address 51.38.1.1 is in FR"), "{located}");
}

/// An accreditation auditor checks a proof offline with `prove verify`: the entry it carries,
/// its path to the signed root, the key, the witness's cosignature, the object and the
/// verdict's replay. Each part bent by whoever hands the proof over is named.
#[test]
fn an_inclusion_proof_is_checked_offline_and_each_bent_part_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (key, vkey) = keygen(dir.path(), "log");
    let (_, other) = keygen(dir.path(), "other");
    let witness = crate::witness::start_witness(dir.path(), "w1", &key.with_extension("pub"));
    let db = format!("sqlite:{}", p("l.sqlite"));
    append_ok(
        &db,
        key.to_str().unwrap(),
        &["--witness", &format!("{},{}", witness.key, witness.url)],
        &input(0, 20),
    );
    // Entry 10 is in Paris, entry 10 % 7 == 3 is in Germany.
    let proof = run_ok(
        &["prove", "--db", &db, "--object", "spaces/10/doc-10"],
        None,
    );
    std::fs::write(p("doc.proof"), &proof).unwrap();
    let check = |file: &str, trust: &str, extra: &[&str]| {
        let mut args = vec!["prove", "verify", file, "--trust", trust];
        args.extend_from_slice(extra);
        let out = run(&args, None);
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let policy = crate::util::POLICY;
    let (code, out) = check(
        &p("doc.proof"),
        &vkey,
        &[
            "--object",
            "spaces/10/doc-10",
            "--witness",
            &witness.key,
            "--policy",
            policy,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("valid: entry 10 is in the log hexagone.test/ledger of 20 entries"),
        "{out}"
    );
    assert!(
        out.contains("checkpoint cosigned by: witness.test/w1"),
        "{out}"
    );
    assert!(
        out.contains("object spaces/10/doc-10 (store minio/documents, class document)"),
        "{out}"
    );
    assert!(out.contains("violation under"), "{out}");
    assert!(out.contains("the verdict replays"), "{out}");
    // The key file works as well as the key; a fingerprint cannot check a signature.
    let pubfile = key.with_extension("pub");
    assert_eq!(check(&p("doc.proof"), pubfile.to_str().unwrap(), &[]).0, 0);
    let fingerprint = VerifierKey::parse(&vkey).unwrap().fingerprint();
    let (code, out) = check(&p("doc.proof"), &format!("SHA256:{fingerprint}"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("a proof carries no key"), "{out}");

    // Another log's key.
    let (code, out) = check(&p("doc.proof"), &other, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("INVALID: "), "{out}");
    // A proof for another object than the one asked about.
    let (code, out) = check(&p("doc.proof"), &vkey, &["--object", "spaces/11/doc-11"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "the proof is for object \"spaces/10/doc-10\" (entry 10), not \"spaces/11/doc-11\""
        ),
        "{out}"
    );
    // A witness that never saw this checkpoint.
    let stranger = crate::witness::start_witness(dir.path(), "w2", &key.with_extension("pub"));
    let (code, out) = check(&p("doc.proof"), &vkey, &["--witness", &stranger.key]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("missing: witness.test/w2"), "{out}");
    // One hash of the audit path changed.
    let lines: Vec<&str> = proof.split('\n').collect();
    let mut bent = lines.clone();
    bent[3] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    std::fs::write(p("bent.proof"), bent.join("\n")).unwrap();
    let (code, out) = check(&p("bent.proof"), &vkey, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Merkle proof"), "{out}");
    // The entry carried in `extra` swapped for a neighbour's: it is not the proven leaf.
    let neighbour = run_ok(
        &["prove", "--db", &db, "--object", "spaces/11/doc-11"],
        None,
    );
    let mut swapped = lines.clone();
    swapped[1] = neighbour.split('\n').nth(1).unwrap();
    std::fs::write(p("swapped.proof"), swapped.join("\n")).unwrap();
    let (code, out) = check(&p("swapped.proof"), &vkey, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("entry in the proof has seq 11 but the proof is for index 10"),
        "{out}"
    );
    // Not a proof at all.
    std::fs::write(p("junk.proof"), "hello\n").unwrap();
    let (code, out) = check(&p("junk.proof"), &vkey, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("malformed proof file, line 1"), "{out}");

    // The same identifier in another store: `--store` says which object is meant, and
    // without it `prove` does not choose the newest for the reader.
    let elsewhere = observation_json(10).replacen("minio/documents", "seaweedfs/documents", 1);
    append_ok(&db, key.to_str().unwrap(), &[], &format!("{elsewhere}\n"));
    let out = run(
        &["prove", "--db", &db, "--object", "spaces/10/doc-10"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("object \"spaces/10/doc-10\" is recorded in 2 stores (seaweedfs/documents, minio/documents): give its store (`--store`)"),
        "{err}"
    );
    let prove_in = |store: &str| {
        run_ok(
            &[
                "prove",
                "--db",
                &db,
                "--object",
                "spaces/10/doc-10",
                "--store",
                store,
            ],
            None,
        )
    };
    let newest = prove_in("seaweedfs/documents");
    assert_eq!(InclusionProof::parse(&newest).unwrap().index, 20);
    let minio = prove_in("minio/documents");
    assert_eq!(InclusionProof::parse(&minio).unwrap().index, 10);
    std::fs::write(p("newest.proof"), &newest).unwrap();
    let (code, out) = check(&p("newest.proof"), &vkey, &["--store", "minio/documents"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "is for an object of store \"seaweedfs/documents\" (entry 20), not \"minio/documents\""
        ),
        "{out}"
    );
}

/// `append` judges chunks of its input on every core while earlier batches commit: the
/// entries still come out in input order, in exact batches, and `verify --policy` replays
/// every verdict. A bad line far into the input stops it with the line named: the batches
/// before it are acknowledged and recorded, nothing of the batch holding it is.
#[test]
fn append_keeps_input_order_and_exact_batches_while_judging_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "k");
    let db = format!("sqlite:{}", dir.path().join("l.sqlite").display());
    let out = append_ok(
        &db,
        key.to_str().unwrap(),
        &["--batch", "1000"],
        &input(0, 2500),
    );
    let acks: Vec<&str> = out.lines().filter(|l| l.starts_with("ack ")).collect();
    assert_eq!(
        acks,
        [
            "ack first=0 last=999 size=1000",
            "ack first=1000 last=1999 size=2000",
            "ack first=2000 last=2499 size=2500"
        ]
    );
    let bundle = dir.path().join("b.jsonl");
    run_ok(
        &["export", "--db", &db, "--out", bundle.to_str().unwrap()],
        None,
    );
    let objects: Vec<String> = std::fs::read_to_string(&bundle)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("{\"entry\":"))
        .map(|e| {
            let entry =
                hexagone_auditor::ledger::entry::Entry::decode(&e.as_bytes()[..e.len() - 1])
                    .unwrap();
            match entry.body {
                hexagone_auditor::ledger::entry::Body::Observation(o) => o.object.id,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    let expected: Vec<String> = (0..2500)
        .map(|i| format!("spaces/{}/doc-{i}", i % 97))
        .collect();
    assert_eq!(objects, expected);
    let out = run_ok(
        &[
            "verify",
            bundle.to_str().unwrap(),
            "--trust",
            &vkey,
            "--policy",
            crate::util::POLICY,
        ],
        None,
    );
    assert!(out.contains("valid: 2500 entries"), "{out}");

    // Line 2,600 of the next run is bad: two batches of 1,000 are recorded, the 599 lines
    // judged after them are not.
    let mut bad = input(2500, 2599);
    bad.push_str("{\"store\":\"x\"}\n");
    bad.push_str(&input(5099, 500));
    let out = append(&db, key.to_str().unwrap(), &["--batch", "1000"], &bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2600: missing field"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acks: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        acks,
        [
            "ack first=2500 last=3499 size=3500",
            "ack first=3500 last=4499 size=4500"
        ]
    );
    let note = run_ok(
        &["checkpoint", "--db", &db, "--key", key.to_str().unwrap()],
        None,
    );
    assert!(note.starts_with(&format!("{ORIGIN}\n4500\n")), "{note}");
}

/// `append` keeps jemalloc's defaults (freed pages kept a while): giving each back at once, as
/// `serve` does to hold its memory budget, made `append` fault every entry's pages in again.
/// Read from the running process itself (`/proc/PID/environ`, which an `exec` would replace),
/// once it has acknowledged a line.
#[test]
fn append_runs_with_jemalloc_defaults() {
    use std::io::{BufRead as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "k");
    let db = format!("sqlite:{}", dir.path().join("l.sqlite").display());
    let mut child = spawn_append(&db, key.to_str().unwrap(), &["--flush-ms", "50"]);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", observation_json(0)).unwrap();
    stdin.flush().unwrap();
    let mut ack = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ack)
        .unwrap();
    assert_eq!(ack.trim(), "ack first=0 last=0 size=1");
    let conf: Vec<String> = std::fs::read(format!("/proc/{}/environ", child.id()))
        .unwrap()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .filter(|v| v.starts_with("_RJEM_MALLOC_CONF="))
        .collect();
    assert!(conf.is_empty(), "{conf:?}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
