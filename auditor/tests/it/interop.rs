//! Independent verification with Go: golang.org/x/mod/sumdb/note checks our signed
//! checkpoints, transparency-dev/merkle our inclusion and consistency proofs,
//! transparency-dev/formats/note our witnesses' cosignatures (and makes some for us to check).

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use hexagone_auditor::ledger::proof::InclusionProof;
use hexagone_auditor::ledger::tree::{consistency_proof, inclusion_proof, root_of_leaves};

use crate::util::{memory_ledger, signer};

fn go_interop(dir: &Path, proof_file: &str, new_note: &str) -> std::process::Output {
    go_run(
        dir,
        &[],
        &[
            ("-vkey", "vkey"),
            ("-old", "old.note"),
            ("-new", new_note),
            ("-proof", proof_file),
            ("-consistency", "consistency"),
        ],
    )
}

#[test]
fn go_verifies_checkpoints_inclusion_and_consistency() {
    let key = signer(11);
    let ledger = memory_ledger(&key, 1000, 100);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    let mut oracle = |a: u64, b: u64| {
        Ok::<_, Infallible>(root_of_leaves(&ledger.leaves[a as usize..b as usize]))
    };
    let (old_size, old_note) = &ledger.checkpoints[2];
    let (new_size, new_note) = ledger.checkpoints.last().unwrap();
    write("vkey", &key.verifier().to_string());
    write("old.note", old_note);
    write("new.note", new_note);
    // An entry recording a writer's request (`"request"`, signed with it).
    let index = 777;
    assert!(
        ledger.texts[index].contains(",\"request\":\""),
        "{}",
        ledger.texts[index]
    );
    let proof = InclusionProof {
        extra: Some(ledger.texts[index].as_bytes().to_vec()),
        index: index as u64,
        path: inclusion_proof(index as u64, *new_size, &mut oracle)
            .unwrap()
            .unwrap(),
        checkpoint: new_note.clone(),
    };
    write("entry.tlog-proof", &proof.format());
    let cons = consistency_proof(*old_size, *new_size, &mut oracle)
        .unwrap()
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    write(
        "consistency",
        &cons
            .iter()
            .map(|h| b64.encode(h) + "\n")
            .collect::<String>(),
    );

    let out = go_interop(dir.path(), "entry.tlog-proof", "new.note");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Go rejected our artefacts:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok signatures on checkpoints of size 300 and 1000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok inclusion of entry 777 in tree of size 1000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok consistency from size 300 to 1000"),
        "{stdout}"
    );

    // The Go side is not a rubber stamp: an altered checkpoint and a wrong entry are refused.
    write("forged.note", &new_note.replacen("\n1000\n", "\n1001\n", 1));
    let out = go_interop(dir.path(), "entry.tlog-proof", "forged.note");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("note.Open"));
    let mut wrong = proof.clone();
    wrong.extra = Some(ledger.texts[index + 1].as_bytes().to_vec());
    write("wrong.tlog-proof", &wrong.format());
    let out = go_interop(dir.path(), "wrong.tlog-proof", "new.note");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("inclusion of entry 777"));
}

/// Runs the Go program in signing mode: Go signs `text` with our key and `extra` keys of its own.
fn go_sign(dir: &Path, extra: usize) -> (String, Vec<String>) {
    let out = go_run(
        dir,
        &["-sign", "-extra", &extra.to_string()],
        &[
            ("-skey", "skey"),
            ("-text", "text"),
            ("-out", "go.note"),
            ("-out-vkeys", "go.vkeys"),
        ],
    );
    assert!(
        out.status.success(),
        "go signing failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let note = std::fs::read_to_string(dir.join("go.note")).unwrap();
    let vkeys = std::fs::read_to_string(dir.join("go.vkeys"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    (note, vkeys)
}

/// The other direction: a checkpoint signed by Go's `sumdb/note` with our key (its signer
/// format) and with 99 more Ed25519 signers of Go's own opens in Rust, and each of Go's
/// signatures verifies under its verifier key as Go wrote it; a 101st signature is refused, as
/// the signed-note limit says.
#[test]
fn rust_verifies_notes_signed_and_cosigned_by_go() {
    use hexagone_auditor::keys::VerifierKey;
    use hexagone_auditor::ledger::checkpoint::{open_checkpoint, parse_note};
    let key = signer(12);
    let ledger = memory_ledger(&key, 300, 100);
    let (size, ours) = ledger.checkpoints.last().unwrap();
    let (cp, _) = open_checkpoint(ours, std::slice::from_ref(key.verifier())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("skey"), key.to_private_string()).unwrap();
    std::fs::write(dir.path().join("text"), cp.body()).unwrap();

    let (note, vkeys) = go_sign(dir.path(), 99);
    assert_eq!(vkeys.len(), 99);
    let (opened, by) = open_checkpoint(&note, std::slice::from_ref(key.verifier())).unwrap();
    assert_eq!((opened.size, opened.root), (*size, cp.root));
    assert_eq!(by.name(), key.name());
    let parsed = parse_note(&note).unwrap();
    assert_eq!(parsed.signatures.len(), 100);
    for vkey in &vkeys {
        let vk = VerifierKey::parse(vkey).unwrap();
        assert_eq!(
            parsed
                .verified_by(std::slice::from_ref(&vk))
                .unwrap()
                .name(),
            vk.name()
        );
    }
    // Go's signature over a changed text does not verify.
    let tampered = note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
    assert!(open_checkpoint(&tampered, std::slice::from_ref(key.verifier())).is_err());

    let (too_many, _) = go_sign(dir.path(), 100);
    let err = parse_note(&too_many).unwrap_err().to_string();
    assert!(err.contains("too many signatures"), "{err}");
}

/// Runs the Go program (`tests/interop`) with the arguments `switches`, then each flag of
/// `files` followed by its file in `dir`; its output, whatever the status.
fn go_run(dir: &Path, switches: &[&str], files: &[(&str, &str)]) -> std::process::Output {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let go = std::env::var("GO").unwrap_or_else(|_| "go".into());
    let mut cmd = Command::new(&go);
    cmd.current_dir(&src).args(["run", "."]).args(switches);
    for (flag, name) in files {
        cmd.arg(flag).arg(dir.join(name));
    }
    cmd.output().unwrap_or_else(|e| {
        panic!("the Go toolchain is required for the interop test and `{go}` could not run: {e}")
    })
}

/// Witness cosignatures (C2SP tlog-cosignature, Ed25519 `cosignature/v1`) both ways with
/// github.com/transparency-dev/formats/note: a cosignature made by our witness key opens in Go
/// (and not over another checkpoint, nor under another witness's key); one made by a witness
/// key Go generated verifies in Rust, with its time.
#[test]
fn witness_cosignatures_interoperate_with_go() {
    use hexagone_auditor::ledger::checkpoint::{open_checkpoint, parse_note};
    use hexagone_auditor::ledger::cosignature::{WitnessKey, WitnessSigner};
    let key = signer(13);
    let ledger = memory_ledger(&key, 200, 50);
    let (size, note) = ledger.checkpoints.last().unwrap();
    let (cp, _) = open_checkpoint(note, std::slice::from_ref(key.verifier())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("vkey", &key.verifier().to_string());

    // Ours, checked by Go.
    let witness = WitnessSigner::generate("witness.rust.example").unwrap();
    write("wkey", &witness.public().to_string());
    write(
        "ours.note",
        &format!("{note}{}", witness.cosign(&cp.body(), 1_764_300_000)),
    );
    let out = go_run(
        dir.path(),
        &["-check-cosig"],
        &[("-vkey", "vkey"), ("-wkey", "wkey"), ("-in", "ours.note")],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("ok cosignature by witness.rust.example at 1764300000"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The same cosignature moved onto another checkpoint of the log does not verify in Go.
    let (_, older) = &ledger.checkpoints[1];
    let (older_cp, _) = open_checkpoint(older, std::slice::from_ref(key.verifier())).unwrap();
    let line = witness.cosign(&cp.body(), 1_764_300_000);
    write("moved.note", &format!("{older}{line}"));
    let out = go_run(
        dir.path(),
        &["-check-cosig"],
        &[("-vkey", "vkey"), ("-wkey", "wkey"), ("-in", "moved.note")],
    );
    assert!(
        !out.status.success(),
        "a cosignature of size {size} accepted on size {}",
        older_cp.size
    );
    // Nor under another witness's key of the same name.
    let other = WitnessSigner::generate("witness.rust.example").unwrap();
    write("other.wkey", &other.public().to_string());
    let out = go_run(
        dir.path(),
        &["-check-cosig"],
        &[
            ("-vkey", "vkey"),
            ("-wkey", "other.wkey"),
            ("-in", "ours.note"),
        ],
    );
    assert!(!out.status.success());

    // Go's, checked by Rust.
    write("log.note", note);
    let out = go_run(
        dir.path(),
        &["-cosign"],
        &[
            ("-vkey", "vkey"),
            ("-in", "log.note"),
            ("-out", "go.note"),
            ("-out-vkeys", "go.wkey"),
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let go_note = std::fs::read_to_string(dir.path().join("go.note")).unwrap();
    let go_key = WitnessKey::parse(
        std::fs::read_to_string(dir.path().join("go.wkey"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(go_key.name(), "witness.go.example");
    let (opened, _) = open_checkpoint(&go_note, std::slice::from_ref(key.verifier())).unwrap();
    assert_eq!((opened.size, opened.root), (*size, cp.root));
    let parsed = parse_note(&go_note).unwrap();
    let time = go_key.cosigned(&parsed).expect("Go's cosignature verifies");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        time <= now && now - time < 600,
        "cosigned at {time}, now {now}"
    );
    // Go's cosignature on another checkpoint's text does not verify in Rust.
    let mut moved = parse_note(&format!(
        "{older}{}",
        go_note
            .lines()
            .filter(|l| l.starts_with("\u{2014} witness.go.example "))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    ))
    .unwrap();
    assert_eq!(go_key.cosigned(&moved), None);
    moved.text = parsed.text.clone();
    assert_eq!(go_key.cosigned(&moved), Some(time));
}
