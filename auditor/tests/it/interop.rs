//! Independent verification with Go: golang.org/x/mod/sumdb/note checks our signed
//! checkpoints, transparency-dev/merkle our inclusion and consistency proofs.

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use hexagone_auditor::ledger::proof::InclusionProof;
use hexagone_auditor::ledger::tree::{consistency_proof, inclusion_proof, root_of_leaves};

use crate::util::{memory_ledger, signer};

fn go_interop(dir: &Path, proof_file: &str, new_note: &str) -> std::process::Output {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let go = std::env::var("GO").unwrap_or_else(|_| "go".into());
    let out = Command::new(&go)
        .current_dir(&src)
        .args(["run", ".", "-vkey"])
        .arg(dir.join("vkey"))
        .arg("-old")
        .arg(dir.join("old.note"))
        .arg("-new")
        .arg(dir.join(new_note))
        .arg("-proof")
        .arg(dir.join(proof_file))
        .arg("-consistency")
        .arg(dir.join("consistency"))
        .output();
    match out {
        Ok(o) => o,
        Err(e) => panic!(
            "the Go toolchain is required for the interop test and `{go}` could not run: {e}"
        ),
    }
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
    let index = 777;
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
