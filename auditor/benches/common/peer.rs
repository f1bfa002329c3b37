//! What the benchmarks that run the immudb peer share: the peer's run and the medians of
//! alternating rounds.

use std::path::Path;

/// The median, lowest and highest of `rates`.
pub fn spread(rates: &mut [f64]) -> (f64, f64, f64) {
    rates.sort_by(f64::total_cmp);
    let n = rates.len();
    let median = if n % 2 == 1 {
        rates[n / 2]
    } else {
        (rates[n / 2 - 1] + rates[n / 2]) / 2.0
    };
    (median, rates[0], rates[n - 1])
}

/// Runs the immudb peer (`tests/peers/immudb`) on `entries` (one per line) in batches of
/// `batch` with `args`, in a store of its own under `dir` (removed after); returns its rate.
pub fn immudb_peer(
    program: &str,
    dir: &Path,
    entries: &Path,
    batch: usize,
    args: &[&str],
    name: &str,
) -> f64 {
    let store = dir.join(format!("immudb-{}", name.replace([' ', ','], "-")));
    let out = std::process::Command::new(program)
        .arg("-dir")
        .arg(&store)
        .arg("-input")
        .arg(entries)
        .args(["-batch", &batch.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let _ = std::fs::remove_dir_all(&store);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{program}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("immudb: "))
        .unwrap_or_else(|| panic!("{program} printed no rate: {stdout}"));
    line.rsplit(' ')
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {line:?}"))
}
