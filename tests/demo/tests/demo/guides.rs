//! The security officer's and the accreditation auditor's guides walked against the main job's
//! output, so that a page cannot drift from the tools: every fenced command block either runs
//! or says it needs a cluster.
//!
//! The marks, in a fence's info string after the language (`docs/ARCHITECTURE.md`, *Guides
//! that run*):
//! - ```` ```sh demo ```` (or `exit=N`): run by bash (`-e -u -o pipefail`, standard error with
//!   standard output) in a copy of the main job's output, with the built binaries first in
//!   `PATH`; it must exit 0 (or N). The blocks of one guide run in order in one directory.
//! - ```` ```text output ````, right after a `demo` block: lines its output must contain, in
//!   this order, each compared without its outer spaces; `…` stands for any text in a line
//!   (a line that is only `…` for any one line).
//! - ```` ```sh cluster ````: needs a running cluster or service (kubectl, a witness's URL):
//!   not run, listed; it must name `kubectl` or a URL, so an offline command cannot hide there.
//! - ```` ```LANG file=NAME ````: the block is written to NAME before the blocks after it run.
//! - ```` ```text synopsis ````: a command's synopsis (`hexagone-auditor verify [OPTIONS] …`,
//!   then one line per option); its first line must be the usage line of the command's
//!   `--help`, and it must list exactly the long options `--help` lists (`--help` aside).
//!
//! A `sh`, `bash`, `shell` or `console` block with neither `demo` nor `cluster`, or an `output`
//! block after anything but a `demo` block, fails the walk.

use std::path::Path;
use std::process::Command;

use hexagone_demo::{Outcome, repo};

/// The guides walked, in order.
const GUIDES: [&str; 2] = ["docs/guide-security-officer.md", "docs/guide-auditor.md"];

/// A fenced block: its first line's number (the fence), info words and text.
struct Block {
    line: usize,
    info: Vec<String>,
    text: String,
}

impl Block {
    fn has(&self, word: &str) -> bool {
        self.info.iter().skip(1).any(|w| w == word)
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.info
            .iter()
            .skip(1)
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    }
}

fn blocks(page: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, l) in page.lines().enumerate() {
        match (&mut open, l.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    line: i + 1,
                    info: info.split_whitespace().map(str::to_string).collect(),
                    text: String::new(),
                });
            }
            (Some(_), Some("")) => out.extend(open.take()),
            (Some(b), _) => {
                b.text.push_str(l);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a fence is not closed");
    out
}

/// Whether `line` matches `pattern`, where `…` stands for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == line;
    };
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The lines of `expected` each found in `output`, in order; the first one missing.
fn missing_line<'a>(expected: &'a str, output: &str) -> Option<&'a str> {
    let mut actual = output.lines().map(str::trim);
    expected
        .lines()
        .map(str::trim)
        .find(|want| !actual.any(|got| matches(want, got)))
}

/// A copy of the main job's output under the names the guides use.
fn workdir(outcome: &Outcome) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&outcome.out).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    let d = dir.path();
    std::fs::copy(&outcome.bundle, d.join("ledger.bundle.jsonl")).unwrap();
    std::fs::copy(d.join("witness.key.pub"), d.join("w1.key.pub")).unwrap();
    std::fs::write(
        d.join("fingerprint.txt"),
        format!("{}\n", outcome.fingerprint),
    )
    .unwrap();
    std::os::unix::fs::symlink(repo().join("policies"), d.join("policies")).unwrap();
    dir
}

/// Runs `script` in `dir`: (exit code, standard output and error).
fn bash(dir: &Path, script: &str) -> (i32, String) {
    let auditor = hexagone_demo::bin("hexagone-auditor").unwrap();
    let path = format!(
        "{}:{}",
        auditor.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-e", "-u", "-o", "pipefail", "-c"])
        .arg(format!("exec 2>&1\n{script}"))
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .expect("bash runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The long options of the option lines of `text` (lines that start, after spaces, with `-`),
/// with the aliases named anywhere (`[alias: --key]`, which long help puts on its own line).
fn long_options(text: &str) -> std::collections::BTreeSet<String> {
    let words = |l: &str| -> Vec<String> {
        l.split([' ', ',', '=', '[', ']', '<'])
            .filter(|w| w.starts_with("--") && w.len() > 2 && *w != "--help")
            .map(str::to_owned)
            .collect()
    };
    let mut out = std::collections::BTreeSet::new();
    for l in text.lines().map(str::trim_start) {
        if l.starts_with('-') {
            out.extend(words(l));
        }
        for (_, alias) in l
            .match_indices("alias: ")
            .map(|(i, m)| l.split_at(i + m.len()))
        {
            out.extend(words(alias).into_iter().take(1));
        }
    }
    out
}

/// Holds a synopsis block to the command's own `--help` (see the marks above).
fn check_synopsis(at: &str, block: &str) {
    let usage = block.lines().next().unwrap_or_default().trim();
    let command: Vec<&str> = usage
        .split_whitespace()
        .take_while(|w| !w.starts_with(['[', '-', '<']))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (code, help) = bash(dir.path(), &format!("{} --help", command.join(" ")));
    assert_eq!(
        code,
        0,
        "{at}: `{} --help` failed:\n{help}",
        command.join(" ")
    );
    let wanted = help
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .unwrap_or_else(|| panic!("{at}: no usage line in the command's --help:\n{help}"));
    assert_eq!(
        usage, wanted,
        "{at}: the synopsis's first line is not the command's usage line"
    );
    let (listed, helped) = (long_options(block), long_options(&help));
    let missing: Vec<&String> = helped.difference(&listed).collect();
    let extra: Vec<&String> = listed.difference(&helped).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{at}: the synopsis does not list the options `--help` lists: missing {missing:?}, not in --help {extra:?}"
    );
}

/// Walks both guides; panics at the first block that fails, naming the page and its line.
pub fn walk(outcome: &Outcome) {
    let started = std::time::Instant::now();
    let mut ran = Vec::new();
    let mut not_run = Vec::new();
    for guide in GUIDES {
        let page = std::fs::read_to_string(repo().join(guide)).unwrap();
        let dir = workdir(outcome);
        let mut last: Option<(usize, String)> = None;
        for b in blocks(&page) {
            let at = format!("{guide}:{}", b.line);
            let lang = b.info.first().map_or("", String::as_str);
            if let Some(name) = b.attr("file") {
                std::fs::write(dir.path().join(name), &b.text).unwrap();
            }
            if b.has("output") {
                let (from, output) = last
                    .take()
                    .unwrap_or_else(|| panic!("{at}: an output block after no `demo` block"));
                if let Some(want) = missing_line(&b.text, &output) {
                    panic!(
                        "{at}: the output the guide quotes differs from what the block at line {from} printed:\nmissing (in order): {want}\nprinted:\n{output}"
                    );
                }
                continue;
            }
            last = None;
            if b.has("synopsis") {
                check_synopsis(&at, &b.text);
                ran.push(format!(
                    "{at}: synopsis of {}",
                    b.text.lines().next().unwrap_or("")
                ));
            } else if b.has("demo") {
                let code = b.attr("exit").map_or(0, |c| c.parse().unwrap());
                let (got, output) = bash(dir.path(), &b.text);
                assert_eq!(
                    got, code,
                    "{at}: the block exited {got}, the guide expects {code}:\n{}\nprinted:\n{output}",
                    b.text
                );
                ran.push(format!("{at}: {}", b.text.lines().next().unwrap_or("")));
                last = Some((b.line, output));
            } else if b.has("cluster") {
                assert!(
                    b.text.contains("kubectl") || b.text.contains("http"),
                    "{at}: a `cluster` block names neither kubectl nor a URL:\n{}",
                    b.text
                );
                not_run.push(format!("{at}: {}", b.text.lines().next().unwrap_or("")));
            } else if matches!(lang, "sh" | "bash" | "shell" | "console") {
                panic!(
                    "{at}: a command block marked neither `demo` (run against the main job's output) nor `cluster` (needs a cluster): see tests/demo/tests/demo/guides.rs"
                );
            }
        }
    }
    println!(
        "guide blocks run against the main job's output ({:.1} s):",
        started.elapsed().as_secs_f64()
    );
    for r in &ran {
        println!("  {r}");
    }
    println!("guide blocks not run (they need a cluster or a service):");
    for r in &not_run {
        println!("  {r}");
    }
    for guide in GUIDES {
        assert!(
            ran.iter().any(|r| r.starts_with(guide)),
            "no block of {guide} ran"
        );
    }
}

#[test]
fn the_marks_read_as_documented() {
    let page = "x\n```sh demo exit=1\nfalse\n```\n\n```text output\na …\n```\n```go file=p.go\npackage main\n```\n";
    let b = blocks(page);
    assert_eq!(b.len(), 3);
    assert!(b[0].has("demo") && b[0].attr("exit") == Some("1") && b[0].line == 2);
    assert_eq!(b[0].text, "false\n");
    assert!(b[1].has("output") && !b[1].has("demo"));
    assert_eq!(b[2].attr("file"), Some("p.go"));
    assert!(matches(
        "valid: … entries, root …",
        "valid: 230 entries, root ff20"
    ));
    assert!(matches("…", "anything"));
    assert!(matches("exact", "exact"));
    assert!(!matches("exact", "exactly"));
    assert!(!matches("valid: … entries", "valid: 230 entries, root"));
    assert!(!matches("a … b … c", "a x c"));
    assert_eq!(missing_line("one\n…\nthree", "one\ntwo\nthree\n"), None);
    assert_eq!(missing_line("three\none", "one\ntwo\nthree\n"), Some("one"));
    let options = long_options(
        "x --not-an-option\n  --trust <T>  key [alias: --key]\n  -h, --help\n      --max-age <D>\n",
    );
    assert_eq!(
        options.into_iter().collect::<Vec<_>>(),
        ["--key", "--max-age", "--trust"]
    );
}
