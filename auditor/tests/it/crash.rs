//! Crash safety of the real binary: `append` is killed with SIGKILL at random points, then
//! restarted, many times. No acknowledged entry is ever lost, the ledger verifies after every
//! kill, and a kill never leaves rows past the signed head (entries and their checkpoint are
//! committed in one transaction).

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng as _;

use crate::util::{bin, export_and_verify, keygen, observation_json, run_ok};

#[tokio::test]
async fn sigkill_at_random_points_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "k");
    let db = format!("sqlite:{}", dir.path().join("crash.sqlite").display());
    let mut rng = rand::thread_rng();
    let mut acked: u64 = 0;
    let mut next_object: u64 = 0;
    let rounds = 40;
    let mut kills_after_an_ack = 0;
    for round in 0..rounds {
        let batch = [7u64, 50, 200][rng.gen_range(0..3)];
        let mut child = Command::new(bin())
            .args(["append", "--db", &db, "--key", key.to_str().unwrap()])
            .args(["--batch", &batch.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let start = next_object;
        let feeder = std::thread::spawn(move || {
            // Writes until the process dies (broken pipe).
            for i in start.. {
                if stdin
                    .write_all((observation_json(i) + "\n").as_bytes())
                    .is_err()
                {
                    return;
                }
            }
        });
        next_object += 1_000_000;
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let target_acks = rng.gen_range(0..4);
        let mut line = String::new();
        for _ in 0..target_acks {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let size: u64 = line
                .trim()
                .rsplit_once("size=")
                .and_then(|(_, s)| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected output {line:?}"));
            acked = acked.max(size);
        }
        // Kill at a random point inside the next batch or checkpoint.
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..20_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        // Acks already written to the pipe before the kill count too.
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
        for l in rest.lines() {
            if let Some((_, s)) = l.rsplit_once("size=") {
                acked = acked.max(s.parse().unwrap());
            }
        }
        feeder.join().unwrap();

        // Killed before the first checkpoint: nothing can have been acknowledged, and an
        // empty ledger proves nothing to verify.
        let probe = hexagone_auditor::store::Ledger::open(&db).await.unwrap();
        let head = probe.head().await;
        probe.close().await;
        match head {
            Err(hexagone_auditor::store::StoreError::NotInitialised) => {
                assert_eq!(acked, 0, "round {round}: acknowledged entries but no log");
                continue;
            }
            Ok(h) if h.size == 0 => {
                assert_eq!(
                    acked, 0,
                    "round {round}: acknowledged entries but no checkpoint"
                );
                run_ok(
                    &["checkpoint", "--db", &db, "--key", key.to_str().unwrap()],
                    None,
                );
                continue;
            }
            other => {
                other.unwrap();
            }
        }
        // After every kill: the signed ledger verifies and holds every acknowledged entry.
        let (_, res) = export_and_verify(&db, &vkey).await;
        let s = res.unwrap_or_else(|f| panic!("round {round}: ledger invalid after SIGKILL: {f}"));
        assert!(
            s.entries >= acked,
            "round {round}: acknowledged {acked} entries, ledger holds {}",
            s.entries
        );
        // The next start finds the head it signed and nothing past it.
        let out = crate::util::run(
            &["checkpoint", "--db", &db, "--key", key.to_str().unwrap()],
            None,
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "round {round}: {stderr}");
        assert!(!stderr.contains("dropped"), "round {round}: {stderr}");
        let size: u64 = stdout.lines().nth(1).unwrap().parse().unwrap();
        assert_eq!(size, s.entries, "round {round}");
        if target_acks > 0 && acked > 0 {
            kills_after_an_ack += 1;
        }
        acked = acked.max(size);
    }
    eprintln!("{rounds} kills, {kills_after_an_ack} after at least one ack, {acked} entries");
    assert!(acked > 0, "the writer never acknowledged anything");
}
