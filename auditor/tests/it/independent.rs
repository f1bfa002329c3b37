//! The auditor guide's independent Go check (`docs/c2spcheck/c2spcheck.go`, standard library
//! only) against bundles made by the ledger core: it accepts a genuine bundle with a key
//! rotation, and refuses each thing the guide says it checks when it is broken (a bundle cut
//! short, an unsigned entry added, an altered entry, a foreign signature, a retired key, a
//! witness that did not cosign or a cosignature moved, a bundle that does not reach a
//! checkpoint obtained elsewhere, a wrong inclusion proof).

use std::path::{Path, PathBuf};
use std::process::Command;

use ed25519_dalek::SigningKey;
use hexagone_auditor::bundle::BundleWriter;
use hexagone_auditor::ledger::Sequencer;
use hexagone_auditor::ledger::cosignature::WitnessSigner;
use hexagone_auditor::ledger::entry::Timestamp;
use hexagone_auditor::ledger::proof::InclusionProof;
use hexagone_auditor::ledger::tree::{inclusion_proof, leaf_hash, root_of_leaves};
use sha2::Digest as _;

use crate::util::{observation, signer};

/// The program, built once per source and Go version under the test cache (as the control
/// plane is): `$HEXAGONE_CACHE/c2spcheck/<key>/c2spcheck`.
fn c2spcheck() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/c2spcheck/c2spcheck.go");
    let go = std::env::var("GO").unwrap_or_else(|_| "go".into());
    let version = Command::new(&go)
        .arg("version")
        .output()
        .unwrap_or_else(|e| panic!("the Go toolchain is required (`{go}`): {e}"));
    let mut h = sha2::Sha256::new();
    h.update(std::fs::read(&src).unwrap());
    h.update(&version.stdout);
    let key = hex::encode(&h.finalize()[..8]);
    let cache = std::env::var_os("HEXAGONE_CACHE").map_or_else(
        || Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/hexagone"),
        PathBuf::from,
    );
    let dir = cache.join("c2spcheck").join(key);
    let bin = dir.join("c2spcheck");
    if !bin.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!("c2spcheck.{}", std::process::id()));
        let out = Command::new(&go)
            .args(["build", "-o"])
            .arg(&tmp)
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "go build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &bin).unwrap();
    }
    bin
}

/// A bundle of 30 entries, checkpoints every 10, a key rotation sealed as entry 20 (so the
/// checkpoint of size 21 is the old key's, the rest the new key's), the last checkpoint
/// cosigned by [`witness`]: its lines, the entries' texts and the notes by size.
struct Made {
    lines: Vec<String>,
    texts: Vec<String>,
    notes: Vec<(u64, String)>,
}

fn made() -> Made {
    let (old, new) = (signer(31), signer(32));
    let mut seq = Sequencer::new(old.clone());
    let mut out = Vec::new();
    let mut w = BundleWriter::new(&mut out, old.name()).unwrap();
    w.key(old.verifier()).unwrap();
    w.key(new.verifier()).unwrap();
    let (mut texts, mut notes) = (Vec::new(), Vec::new());
    for i in 0..30u64 {
        let now = Timestamp(1_764_300_000_000 + i as i64);
        let text = if i == 20 {
            let (sealed, note) = seq.rotate(now, new.clone()).unwrap();
            w.entry(sealed.text.as_bytes()).unwrap();
            w.checkpoint(&note).unwrap();
            notes.push((21, note));
            sealed.text
        } else {
            let sealed = seq.seal(now, observation(i));
            w.entry(sealed.text.as_bytes()).unwrap();
            if (i + 1) % 10 == 0 {
                let mut note = seq.sign();
                if i == 29 {
                    note.push_str(&witness().cosign(body(&note), 1_764_300_100));
                }
                w.checkpoint(&note).unwrap();
                notes.push((i + 1, note));
            }
            sealed.text
        };
        texts.push(text);
    }
    w.finish().unwrap();
    Made {
        lines: String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect(),
        texts,
        notes,
    }
}

/// The witness that cosigned the last checkpoint.
fn witness() -> WitnessSigner {
    WitnessSigner::from_signing_key("witness.test/w1", SigningKey::from_bytes(&[41; 32])).unwrap()
}

/// The checkpoint body of a signed note (its text up to the blank line).
fn body(note: &str) -> &str {
    &note[..=note.rfind("\n\n").unwrap()]
}

/// Runs the program on `lines` (written as a bundle) with `args`; (exit code, stdout+stderr).
fn check(dir: &Path, lines: &[String], args: &[&str]) -> (i32, String) {
    let bundle = dir.join("b.jsonl");
    std::fs::write(&bundle, lines.join("\n") + "\n").unwrap();
    let out = Command::new(c2spcheck())
        .current_dir(dir)
        .arg("-bundle")
        .arg(&bundle)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn refused(dir: &Path, lines: &[String], args: &[&str], why: &str) {
    let (code, text) = check(dir, lines, args);
    assert_eq!(code, 1, "accepted, or not a finding: {text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("FAIL: ") && last.contains(why),
        "{text:?} should end with a FAIL line saying {why:?}"
    );
}

#[test]
fn the_guides_go_check_refuses_what_the_guide_says_it_checks() {
    let m = made();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("new.pub"), signer(32).verifier().to_string()).unwrap();
    std::fs::write(d.join("old.pub"), signer(31).verifier().to_string()).unwrap();
    std::fs::write(d.join("other.pub"), signer(33).verifier().to_string()).unwrap();
    let trust = ["-vkey", "new.pub"];

    // Genuine: accepted under the key in force, across the rotation.
    let (code, text) = check(d, &m.lines, &trust);
    assert_eq!(code, 0, "{text}");
    let root = root_of_leaves(
        &m.texts
            .iter()
            .map(|t| leaf_hash(t.as_bytes()))
            .collect::<Vec<_>>(),
    );
    assert!(
        text.contains(&format!(
            "ok: 30 entries, 4 checkpoints, origin {}, root {}",
            crate::util::ORIGIN,
            hex::encode(root)
        )),
        "{text}"
    );
    // Witnesses: the one that cosigned the last checkpoint, one that did not, and the same
    // cosignature moved onto an earlier checkpoint.
    std::fs::write(d.join("w1.pub"), witness().public().to_string()).unwrap();
    let w2 = WitnessSigner::from_signing_key("witness.test/w2", SigningKey::from_bytes(&[42; 32]))
        .unwrap();
    std::fs::write(d.join("w2.pub"), w2.public().to_string()).unwrap();
    let (code, text) = check(d, &m.lines, &["-vkey", "new.pub", "-witness", "w1.pub"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("ok: the last checkpoint is cosigned by witness.test/w1 (time 1764300100)"),
        "{text}"
    );
    refused(
        d,
        &m.lines,
        &[
            "-vkey", "new.pub", "-witness", "w1.pub", "-witness", "w2.pub",
        ],
        "the last checkpoint (size 30) carries no valid cosignature by the witness witness.test/w2+",
    );

    // The retired key, or a key of no checkpoint, is not the one that signed the last one.
    refused(
        d,
        &m.lines,
        &["-vkey", "old.pub"],
        "the last checkpoint is not signed by",
    );
    refused(d, &m.lines, &["-vkey", "other.pub"], "not signed by");

    let end = m.lines.len() - 1;
    let line_with = |needle: &str| m.lines.iter().position(|l| l.contains(needle)).unwrap();
    // Cut short: no end record, anywhere it is cut.
    refused(
        d,
        &m.lines[..end],
        &trust,
        "the bundle is truncated: no end record after 30 entries",
    );
    let mid = line_with("\"seq\":25,");
    refused(
        d,
        &m.lines[..mid],
        &trust,
        "the bundle is truncated: no end record after 25 entries",
    );

    // Extended: an unsigned entry that chains to the last one, the end record adjusted.
    let last = &m.texts[29];
    let forged = last.replacen("\"seq\":29,", "\"seq\":30,", 1).replacen(
        &format!(
            "\"prev\":\"{}\"",
            &last[last.find("\"prev\":\"").unwrap() + 8..][..64]
        ),
        &format!("\"prev\":\"{}\"", hex::encode(leaf_hash(last.as_bytes()))),
        1,
    );
    let mut extended = m.lines[..end].to_vec();
    extended.push(format!("{{\"entry\":{forged}}}"));
    extended.push(r#"{"end":{"entries":31,"checkpoints":4}}"#.into());
    refused(
        d,
        &extended,
        &trust,
        "entries 30..30 are not covered by any signed checkpoint",
    );
    // Or after the end record.
    let mut after = m.lines.clone();
    after.push(format!("{{\"entry\":{forged}}}"));
    refused(d, &after, &trust, "line 39: a record after the end record");

    // An altered entry: the checkpoint after it no longer signs its root.
    let mut altered = m.lines.clone();
    let i = line_with("\"seq\":29,");
    altered[i] = altered[i].replacen(
        "\"seq\":29,\"time\":\"2025",
        "\"seq\":29,\"time\":\"2024",
        1,
    );
    assert_ne!(altered[i], m.lines[i]);
    refused(d, &altered, &trust, "checkpoint of size 30 signs root");
    // An entry removed: the chain breaks.
    let mut removed = m.lines.clone();
    removed.remove(line_with("\"seq\":3,"));
    refused(d, &removed, &trust, "entry 4 where entry 3 was expected");

    // A checkpoint signed by another key of the same name.
    let mut foreign = m.lines.clone();
    let c10 = line_with("{\"checkpoint\"");
    let mut s2 = Sequencer::new(signer(33));
    for i in 0..10 {
        s2.seal(Timestamp(1_764_300_000_000 + i), observation(i as u64));
    }
    foreign[c10] = serde_json::json!({ "checkpoint": s2.sign() }).to_string();
    refused(d, &foreign, &trust, "line 14: checkpoint: not signed by");

    // Cut back to the checkpoint of size 20 with a forged end record: only a checkpoint
    // obtained elsewhere (here the next one, of size 21 under the same key) shows it, as the
    // guide says.
    let c20 = line_with("\\n20\\n");
    let mut cut = m.lines[..=c20].to_vec();
    cut.push(r#"{"end":{"entries":20,"checkpoints":2}}"#.into());
    let (code, text) = check(d, &cut, &["-vkey", "old.pub"]);
    assert_eq!(code, 0, "{text}");
    // Nor does the witness's cosignature of the last checkpoint, moved onto the cut's.
    let last_note = &m.notes.last().unwrap().1;
    let line = &last_note[last_note.rfind("\u{2014} witness.test/w1 ").unwrap()..];
    let mut moved = cut.clone();
    moved[c20] = serde_json::json!({ "checkpoint": format!("{}{line}", m.notes[1].1) }).to_string();
    refused(
        d,
        &moved,
        &["-vkey", "old.pub", "-witness", "w1.pub"],
        "the last checkpoint (size 20) carries no valid cosignature by the witness witness.test/w1+",
    );
    std::fs::write(d.join("21.note"), &m.notes[2].1).unwrap();
    refused(
        d,
        &cut,
        &["-vkey", "old.pub", "-checkpoint", "21.note"],
        "does not reach the checkpoint given (size 21)",
    );
    std::fs::write(d.join("head.note"), &m.notes.last().unwrap().1).unwrap();
    let (code, text) = check(
        d,
        &m.lines,
        &["-vkey", "new.pub", "-checkpoint", "head.note"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("reaches the checkpoint given (size 30)"),
        "{text}"
    );

    // An inclusion proof: the right entry passes, the next entry under the same path fails.
    let leaves: Vec<_> = m.texts.iter().map(|t| leaf_hash(t.as_bytes())).collect();
    let mut oracle = |a: u64, b: u64| {
        Ok::<_, std::convert::Infallible>(root_of_leaves(&leaves[a as usize..b as usize]))
    };
    let proof = InclusionProof {
        extra: Some(m.texts[7].as_bytes().to_vec()),
        index: 7,
        path: inclusion_proof(7, 30, &mut oracle).unwrap().unwrap(),
        checkpoint: m.notes.last().unwrap().1.clone(),
    };
    std::fs::write(d.join("p.tlog-proof"), proof.format()).unwrap();
    let (code, text) = check(d, &m.lines, &["-vkey", "new.pub", "-proof", "p.tlog-proof"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("ok: entry 7 is in the signed tree of size 30"),
        "{text}"
    );
    let mut wrong = proof.clone();
    wrong.extra = Some(
        m.texts[8]
            .replacen("\"seq\":8,", "\"seq\":7,", 1)
            .into_bytes(),
    );
    std::fs::write(d.join("w.tlog-proof"), wrong.format()).unwrap();
    refused(
        d,
        &m.lines,
        &["-vkey", "new.pub", "-proof", "w.tlog-proof"],
        "entry 7 is not in the signed tree of size 30",
    );
}
