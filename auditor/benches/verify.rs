//! Benchmark: full verification of a large bundle against plain SHA-256 over the same bytes,
//! and the peak memory of verification at two ledger sizes (measured in a child process).
//!
//! `HEXAGONE_BENCH_VERIFY_N` sets the number of entries (default 1,000,000).
//! Run: `cargo bench -p hexagone-auditor --bench verify`.

use std::io::{BufReader, BufWriter, Read as _};
use std::path::Path;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use hexagone_auditor::bundle::BundleWriter;
use hexagone_auditor::bundle_verify::{verify_bundle, verify_bundle_parallel};
use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::ledger::Sequencer;
use hexagone_auditor::ledger::entry::{Body, Timestamp};
use hexagone_auditor::ledger::verify::Verifier;
use sha2::{Digest, Sha256};

const ORIGIN: &str = "bench.hexagone/ledger";

fn key() -> SignerKey {
    SignerKey::from_signing_key(ORIGIN, SigningKey::from_bytes(&[42; 32])).unwrap()
}

/// An observation as the locality engine would record it (made without the engine).
fn body(i: u64) -> Body {
    hexagone_auditor::ledger::entry::fixture::observation(i)
}

/// Writes a bundle of `n` entries with a checkpoint every 10,000.
fn generate(path: &Path, n: u64) {
    let key = key();
    let out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut w = BundleWriter::new(out, ORIGIN).unwrap();
    w.key(key.verifier()).unwrap();
    let mut seq = Sequencer::new(key.clone());
    for i in 0..n {
        let s = seq.seal(Timestamp(1_764_300_000_000 + i as i64), body(i));
        w.entry(s.text.as_bytes()).unwrap();
        if (i + 1).is_multiple_of(10_000) || i + 1 == n {
            w.checkpoint(&seq.sign()).unwrap();
        }
    }
    w.finish().unwrap();
}

fn plain_sha256(path: &Path) -> [u8; 32] {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().into()
}

/// Verifies as `hexagone-auditor verify` does (two worker threads).
fn verify_file(path: &Path) -> u64 {
    let input = std::fs::File::open(path).unwrap();
    let trust = key().verifier().fingerprint();
    verify_bundle_parallel(input, Verifier::new(&trust), 2, |_| {})
        .unwrap()
        .unwrap_or_else(|f| panic!("bench bundle invalid: {f}"))
        .entries
}

/// Verifies on one thread.
fn verify_file_sequential(path: &Path) -> u64 {
    let input = BufReader::with_capacity(1 << 20, std::fs::File::open(path).unwrap());
    let trust = key().verifier().fingerprint();
    verify_bundle(input, Verifier::new(&trust), |_| {})
        .unwrap()
        .unwrap_or_else(|f| panic!("bench bundle invalid: {f}"))
        .entries
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs verification in a fresh child process and returns its peak resident memory (KiB).
fn child_peak(path: &Path) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--child-verify")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-verify") {
        verify_file(Path::new(&args[i + 1]));
        println!("{}", vm_hwm_kib());
        return;
    }
    let n: u64 = std::env::var("HEXAGONE_BENCH_VERIFY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if let Some(i) = args.iter().position(|a| a == "--generate") {
        // For profiling: write the bundle and stop.
        generate(Path::new(&args[i + 1]), n);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.jsonl");
    let small = dir.path().join("small.jsonl");
    let t = Instant::now();
    generate(&big, n);
    generate(&small, (n / 10).max(1000));
    let bytes = std::fs::metadata(&big).unwrap().len();
    println!(
        "generated {n} entries, {:.1} MB, in {:.1?}",
        bytes as f64 / 1e6,
        t.elapsed()
    );

    // Warm the page cache so both measurements read from memory.
    plain_sha256(&big);
    let t = Instant::now();
    let digest = plain_sha256(&big);
    let sha = t.elapsed();
    let t = Instant::now();
    let entries = verify_file(&big);
    let verify = t.elapsed();
    assert_eq!(entries, n);
    println!(
        "baseline: plain SHA-256 over the bundle: {sha:.2?} ({:.0} MB/s, digest {})",
        bytes as f64 / 1e6 / sha.as_secs_f64(),
        hex::encode(&digest[..4])
    );
    println!(
        "verify (2 worker threads): {n} entries in {verify:.2?} ({:.0} entries/s, {:.0} MB/s)",
        n as f64 / verify.as_secs_f64(),
        bytes as f64 / 1e6 / verify.as_secs_f64()
    );
    let t = Instant::now();
    assert_eq!(verify_file_sequential(&big), n);
    let sequential = t.elapsed();
    println!(
        "verify on one thread: {sequential:.2?} (ratio to plain SHA-256 {:.2}x)",
        sequential.as_secs_f64() / sha.as_secs_f64()
    );
    let ratio = verify.as_secs_f64() / sha.as_secs_f64();
    println!(
        "ratio verify / plain SHA-256: {ratio:.2}x (target <= 3x: {})",
        if ratio <= 3.0 { "met" } else { "NOT met" }
    );
    let (peak_small, peak_big) = (child_peak(&small), child_peak(&big));
    println!(
        "peak memory of verify (VmHWM): {:.1} MB for {} entries, {:.1} MB for {n} entries (target < 100 MB and flat: {})",
        peak_small as f64 / 1024.0,
        (n / 10).max(1000),
        peak_big as f64 / 1024.0,
        if peak_big < 100 * 1024 && peak_big < peak_small + 8 * 1024 {
            "met"
        } else {
            "NOT met"
        }
    );
}
