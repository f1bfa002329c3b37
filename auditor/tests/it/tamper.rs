//! Tampering with an exported ledger: every alteration is caught by `verify` (exit 1) with a
//! diagnosis naming the entry or checkpoint and what is wrong. After every scenario the
//! genuine ledger is re-verified, from the bundle and from the reopened database.

use std::path::Path;

use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::store::Ledger;

use crate::util::{NOW, bodies, export_and_verify, run, signer};

struct Fixture {
    dir: tempfile::TempDir,
    url: String,
    key: SignerKey,
    lines: Vec<String>,
    /// Lines of a fork: same key and origin, other entries.
    fork_lines: Vec<String>,
}

/// 50 entries, a checkpoint every 10, on SQLite; the bundle as lines.
async fn ledger(dir: &Path, name: &str, key: &SignerKey, from: u64) -> (String, Vec<String>) {
    let url = format!("sqlite:{}", dir.join(name).display());
    let ledger = Ledger::open(&url).await.unwrap();
    let (mut seq, _) = ledger.sequencer(key.clone()).await.unwrap();
    for b in 0..5 {
        ledger
            .append(&mut seq, NOW, bodies(from + b * 10, 10))
            .await
            .unwrap();
    }
    ledger.close().await;
    let (bytes, res) = export_and_verify(&url, &key.verifier().to_string()).await;
    res.unwrap();
    let text = String::from_utf8(bytes).unwrap();
    (url, text.lines().map(str::to_string).collect())
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = signer(21);
    let (url, lines) = ledger(dir.path(), "main.sqlite", &key, 0).await;
    let (_, fork_lines) = ledger(dir.path(), "fork.sqlite", &key, 5000).await;
    Fixture {
        dir,
        url,
        key,
        lines,
        fork_lines,
    }
}

/// Line index (0-based) of entry `seq` in a bundle with one key record.
fn entry_line(lines: &[String], seq: u64) -> usize {
    let needle = format!("{{\"entry\":{{\"v\":2,\"seq\":{seq},");
    lines.iter().position(|l| l.starts_with(&needle)).unwrap()
}

/// Line index of the checkpoint of `size`.
fn checkpoint_line(lines: &[String], size: u64) -> usize {
    let needle = format!("\\n{size}\\n");
    lines
        .iter()
        .position(|l| l.starts_with("{\"checkpoint\"") && l.contains(&needle))
        .unwrap()
}

impl Fixture {
    /// Verifies `lines` with the CLI (trusting `trust`, and optionally a checkpoint file):
    /// asserts the exit code and that the output contains every piece of `want`.
    fn check(&self, lines: &[String], trust: &str, extra: &[&str], code: i32, want: &[&str]) {
        let path = self.dir.path().join("tampered.jsonl");
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        self.check_file(&path, trust, extra, code, want);
    }

    fn check_file(&self, path: &Path, trust: &str, extra: &[&str], code: i32, want: &[&str]) {
        let mut args = vec!["verify", path.to_str().unwrap(), "--trust", trust];
        args.extend_from_slice(extra);
        let out = run(&args, None);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(code),
            "verify printed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for w in want {
            assert!(
                stdout.contains(w),
                "diagnosis {stdout:?} should contain {w:?}"
            );
        }
    }

    fn trust(&self) -> String {
        self.key.verifier().fingerprint()
    }

    /// The genuine ledger still verifies: the bundle, and a fresh export after reopening.
    async fn genuine_still_verifies(&self) {
        self.check(
            &self.lines,
            &self.trust(),
            &[],
            0,
            &["valid: 50 entries, 5 checkpoints"],
        );
        let (bytes, res) = export_and_verify(&self.url, &self.trust()).await;
        assert_eq!(res.unwrap().entries, 50);
        assert_eq!(
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .collect::<Vec<_>>(),
            self.lines
        );
    }

    async fn tampered(&self, lines: Vec<String>, want: &[&str]) {
        self.check(&lines, &self.trust(), &[], 1, want);
        self.genuine_still_verifies().await;
    }
}

#[tokio::test]
async fn modified_entries_are_named() {
    let f = fixture().await;
    let i = entry_line(&f.lines, 20);
    let mut l = f.lines.clone();
    l[i] = l[i].replacen("\"minio/documents\"", "\"minio/elsewhere\"", 1);
    f.tampered(
        l,
        &[
            &format!("line {}, entry 20: entry 21 records prev", i + 1),
            "entry 20 was altered",
        ],
    )
    .await;
    // The last entry has no successor: the checkpoint over it catches the change.
    let i = entry_line(&f.lines, 49);
    let mut l = f.lines.clone();
    l[i] = l[i]
        .replacen("\"verdict\":\"compliant\"", "\"verdict\":\"unknown\"", 1)
        .replacen("\"reasons\":[]", "\"reasons\":[\"x\"]", 1);
    f.tampered(
        l,
        &[
            "checkpoint of size 50 signs root",
            "an entry in 40..49 was altered",
        ],
    )
    .await;
    // A change that breaks the canonical encoding is named as such.
    let i = entry_line(&f.lines, 7);
    let mut l = f.lines.clone();
    l[i] = l[i].replacen(",\"time\"", ", \"time\"", 1);
    f.tampered(
        l,
        &[&format!(
            "line {}: entry is invalid: entry is not in canonical encoding",
            i + 1
        )],
    )
    .await;
    // A verdict that contradicts its own evidence is refused: the engine's rules hold on
    // every entry, whatever the policy.
    let i = entry_line(&f.lines, 3);
    let mut l = f.lines.clone();
    let reasons =
        &l[i][l[i].find(",\"reasons\":[").unwrap()..l[i].find("],\"policy\"").unwrap() + 1];
    l[i] = l[i].replacen(reasons, ",\"reasons\":[]", 1).replacen(
        "\"verdict\":\"violation\"",
        "\"verdict\":\"compliant\"",
        1,
    );
    f.tampered(
        l,
        &["compliant although evidence contradicts the policy (address 5.9.3.1 is in DE"],
    )
    .await;
}

#[tokio::test]
async fn deleted_inserted_and_reordered_entries_are_named() {
    let f = fixture().await;
    let i = entry_line(&f.lines, 20);
    let mut l = f.lines.clone();
    l.remove(i);
    f.tampered(
        l,
        &[
            &format!(
                "line {}, entry 21: expected entry 20, found entry 21",
                i + 1
            ),
            "missing",
        ],
    )
    .await;

    let mut l = f.lines.clone();
    l.insert(i, f.lines[i].clone());
    f.tampered(
        l,
        &["entry 20 appears where entry 21 was expected", "inserted"],
    )
    .await;

    let mut l = f.lines.clone();
    l.swap(i, i + 1);
    f.tampered(l, &["expected entry 20, found entry 21"]).await;

    // An entry from another log, renumbered to fit, breaks the chain.
    let j = entry_line(&f.fork_lines, 20);
    let mut l = f.lines.clone();
    l[i] = f.fork_lines[j].clone();
    f.tampered(
        l,
        &[
            "entry 20 records prev",
            "entry 19 was altered, or an entry was inserted or removed",
        ],
    )
    .await;
}

#[tokio::test]
async fn truncation_is_detected() {
    let f = fixture().await;
    // Cut in the middle of a line.
    let path = f.dir.path().join("cut.jsonl");
    let text = f.lines.join("\n");
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    f.check_file(&path, &f.trust(), &[], 1, &["the bundle is truncated"]);
    // Cut after a checkpoint: no end record.
    let c = checkpoint_line(&f.lines, 30);
    f.tampered(
        f.lines[..=c].to_vec(),
        &["truncated: it stops after 30 entries"],
    )
    .await;
    // Cut after a checkpoint with a forged end record: caught against a checkpoint the
    // auditor holds from elsewhere.
    let mut l = f.lines[..=c].to_vec();
    l.push("{\"end\":{\"entries\":30,\"checkpoints\":3}}".into());
    let note: String = serde_json::from_str::<serde_json::Value>(
        f.lines.iter().rev().nth(1).unwrap(),
    )
    .unwrap()["checkpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let cp = f.dir.path().join("latest.note");
    std::fs::write(&cp, note).unwrap();
    f.check(
        &l,
        &f.trust(),
        &["--checkpoint", cp.to_str().unwrap()],
        1,
        &[
            "trusted checkpoint (size 50) is beyond the bundle",
            "truncated",
        ],
    );
    // Entries after the last checkpoint are not covered by a signature.
    let mut l = f.lines[..=c + 3].to_vec();
    l.push("{\"end\":{\"entries\":33,\"checkpoints\":3}}".into());
    f.tampered(
        l,
        &["entries 30..32 are not covered by any signed checkpoint"],
    )
    .await;
    // A lying end record.
    let mut l = f.lines.clone();
    *l.last_mut().unwrap() = "{\"end\":{\"entries\":51,\"checkpoints\":5}}".into();
    f.tampered(l, &["end record says 51 entries"]).await;
}

#[tokio::test]
async fn checkpoints_altered_forged_replayed_or_forked_are_refused() {
    let f = fixture().await;
    let c = checkpoint_line(&f.lines, 30);
    // Altered: the size in the signed body changes.
    let mut l = f.lines.clone();
    l[c] = l[c].replacen("\\n30\\n", "\\n31\\n", 1);
    f.tampered(
        l,
        &[
            &format!("line {}: checkpoint is not valid: signature by", c + 1),
            "does not verify",
        ],
    )
    .await;
    // Forged: a well-formed checkpoint signed by another key under the log's name.
    let other = signer(99);
    let note: String =
        serde_json::from_str::<serde_json::Value>(&f.lines[c]).unwrap()["checkpoint"]
            .as_str()
            .unwrap()
            .to_string();
    let body = hexagone_auditor::ledger::checkpoint::parse_note(&note)
        .unwrap()
        .text;
    let forged = hexagone_auditor::ledger::checkpoint::sign_note(&body, &other);
    let mut l = f.lines.clone();
    l[c] = serde_json::json!({ "checkpoint": forged }).to_string();
    f.tampered(
        l,
        &["checkpoint is not valid: no signature by hexagone.test/ledger/"],
    )
    .await;
    // Replayed: an older genuine checkpoint shown again later.
    let old = checkpoint_line(&f.lines, 20);
    let mut l = f.lines.clone();
    l.insert(c + 1, f.lines[old].clone());
    f.tampered(
        l,
        &["checkpoint of size 20 replays an earlier checkpoint (the last one had size 30"],
    )
    .await;
    // Fork: a genuinely signed checkpoint of another history of the same log.
    let fc = checkpoint_line(&f.fork_lines, 30);
    let mut l = f.lines.clone();
    l[c] = f.fork_lines[fc].clone();
    f.tampered(
        l,
        &["checkpoint of size 30 signs root", "belongs to a fork"],
    )
    .await;
    // Two signed checkpoints of one size that cannot both be true.
    let mut l = f.lines.clone();
    l.insert(c + 1, f.fork_lines[fc].clone());
    f.tampered(
        l,
        &["fork: two signed checkpoints of size 30 with different roots"],
    )
    .await;
}

#[tokio::test]
async fn wrong_key_and_usage_errors() {
    let f = fixture().await;
    let other = signer(77);
    // The message names the fingerprint given and only the start of the bundle's own: a full
    // one would invite a copy into --trust.
    let own = f.key.verifier().fingerprint();
    f.check(
        &f.lines,
        &other.verifier().fingerprint(),
        &[],
        1,
        &[
            "wrong key: the trusted key",
            &format!("(SHA256:{}…)", &own[..8]),
            "never one read from the bundle",
        ],
    );
    let out = run(
        &[
            "verify",
            f.dir.path().join("tampered.jsonl").to_str().unwrap(),
            "--trust",
            &other.verifier().fingerprint(),
        ],
        None,
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&own));
    // A lower-case prefix or bare hex is the same fingerprint.
    for spelled in [format!("sha256:{own}"), own.to_uppercase()] {
        f.check(&f.lines, &spelled, &[], 0, &["valid"]);
    }
    f.check(
        &f.lines,
        &other.verifier().to_string(),
        &[],
        1,
        &["wrong key"],
    );
    // The genuine key, as a verifier key string or a file, verifies.
    let pubfile = f.dir.path().join("k.pub");
    std::fs::write(&pubfile, f.key.verifier().to_string()).unwrap();
    f.check(&f.lines, pubfile.to_str().unwrap(), &[], 0, &["valid"]);
    // Missing bundle: an I/O error, exit 2.
    let out = run(
        &["verify", "/nonexistent/bundle", "--trust", &f.trust()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    // Missing argument: a usage error, exit 2.
    let out = run(&["verify", "/nonexistent/bundle"], None);
    assert_eq!(out.status.code(), Some(2));
    f.genuine_still_verifies().await;
}
