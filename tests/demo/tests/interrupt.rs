//! Ctrl-C in the middle of the main job: the demo program stops every process it started
//! (control plane, operator, auditor, witness) and removes the test bed's directory, and says
//! so. Run as the built program, interrupted with SIGINT once the Workplace is being applied.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Each process's parent and (command name, start time): `/proc/PID/stat` fields 2, 4 and 22.
fn processes() -> BTreeMap<u32, (u32, String, u64)> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The name is in parentheses and may hold spaces: the fields after it are plain.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        let (Some(ppid), Some(start)) = (
            rest.get(1).and_then(|s| s.parse().ok()),
            rest.get(19).and_then(|s| s.parse().ok()),
        ) else {
            continue;
        };
        all.insert(pid, (ppid, name, start));
    }
    all
}

/// Every process below `root`, with its name and start time.
fn descendants(root: u32) -> BTreeMap<u32, (String, u64)> {
    let all = processes();
    let mut found = BTreeMap::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, (ppid, name, start)) in &all {
            if *ppid == parent && found.insert(*pid, (name.clone(), *start)).is_none() {
                frontier.push(*pid);
            }
        }
    }
    found
}

#[test]
fn ctrl_c_stops_everything_the_demo_started() {
    let out = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_hexagone-demo"))
        .arg(out.path())
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = demo.id();
    let mut progress = BufReader::new(demo.stdout.take().unwrap());
    let mut seen = String::new();
    // The operator, the auditor and its witness are running once the Workplace is applied.
    while !seen.contains("kubectl apply: a 5,000-user Workplace") {
        let mut line = String::new();
        let n = progress.read_line(&mut line).unwrap();
        assert!(
            n > 0,
            "the demo ended before the Workplace was applied:\n{seen}"
        );
        seen.push_str(&line);
    }
    let started = descendants(pid);
    let names: Vec<&str> = started.values().map(|(n, _)| n.as_str()).collect();
    for component in [
        "etcd",
        "kube-apiserver",
        "kube-scheduler",
        "kube-controller",
        "kwok",
        "hexagone-operat",
        "hexagone-audito",
    ] {
        assert!(
            names.contains(&component),
            "{component} is not running under the demo: {names:?}"
        );
    }
    let bed: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hexagone-testbed-"))
        .collect();
    assert_eq!(bed.len(), 1, "the test bed's directory: {bed:?}");

    let interrupted = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut demo.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted; everything it started is stopped"),
        "{stderr}"
    );

    // Every process it started is gone (a PID taken again since starts later).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = processes();
        let left: Vec<String> = started
            .iter()
            .filter(|(pid, (_, start))| now.get(pid).is_some_and(|(_, _, s)| s == start))
            .map(|(pid, (name, _))| format!("{name} ({pid})"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after the demo stopped: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let bed_left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        bed_left.is_empty(),
        "left behind in the temporary directory: {bed_left:?}"
    );
}
