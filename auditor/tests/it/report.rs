//! `hexagone-auditor report`: a signed locality report for a period, built from a ledger made
//! by `append` (facts judged under a shipped policy with the vendored geolocation data), in
//! JSON, Markdown and HTML; each object's state at the period's end, a violation open in every
//! later report until an entry resolves it; `report verify` refuses a changed report, another
//! key and a report the ledger does not give; the HTML page is opened in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use hexagone_auditor::ledger::entry::{Entry, Timestamp};
use hexagone_auditor::report::SignedReport;

use crate::util::{keygen, node_line, policy, run, run_ok};

/// An object identifier carrying markup: every rendering must show it as text.
const SCRIPT_OBJECT: &str = "spaces/9/<script>alert(1)</script>";

/// A ledger of three entries: an early violation (before the report's period, recorded once),
/// then an attested French node (compliant) and a node in Germany (violation) holding an object
/// whose identifier carries markup.
struct Fixture {
    dir: tempfile::TempDir,
    key: PathBuf,
    vkey: String,
    db: String,
    /// The period's start: one millisecond after the early entry.
    from: String,
}

const TO: &str = "2099-01-01T00:00:00Z";

fn node(name: &str, provider: &str, region: &str, address: &str) -> String {
    format!(
        r#"{{"name":"{name}","providerID":"{provider}","labels":{{"topology.kubernetes.io/region":"{region}"}},"addresses":[{{"type":"ExternalIP","address":"{address}"}}]}}"#
    )
}

fn line(object: &str, node: &str) -> String {
    node_line(0, node).replace("spaces/0/doc-0", object)
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, vkey) = keygen(dir.path(), "k");
        std::fs::write(
            dir.path().join("attestations.yaml"),
            "- metadata: {name: gra-3}
  spec: {nodeName: gra-3, providerID: 'ovh://gra/3', country: FR, hostingCompany: OVH SAS,
         site: Gravelines GRA3, basis: contract, attestedBy: rssi@ministere.example.fr,
         validUntil: '2099-01-01T00:00:00Z'}
",
        )
        .unwrap();
        let db = format!("sqlite:{}", dir.path().join("l.sqlite").display());
        let mut f = Fixture {
            dir,
            key,
            vkey,
            db,
            from: String::new(),
        };
        let fsn = node("fsn-1", "hetzner://fsn1/1", "fsn1", "5.9.0.1");
        f.append(&line("spaces/3/doc-early", &fsn));
        let early = f.entries()[0].time;
        // The next entries must be stamped after the early one: wait for the clock to pass it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Timestamp::now() <= early {
            assert!(std::time::Instant::now() < deadline, "the clock is stuck");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        f.from = Timestamp(early.0 + 1).to_string();
        let gra = node("gra-3", "ovh://gra/3", "gra", "51.38.1.1");
        f.append(&[line("spaces/7/doc-42", &gra), line(SCRIPT_OBJECT, &fsn)].join("\n"));
        f
    }

    /// The early object moves to the attested French node: one more entry, compliant, which
    /// resolves its violation. Returns that entry's time.
    fn resolve_early(&self) -> Timestamp {
        // Two milliseconds after the last entry at least, so that a period can end between.
        let last = self.entries().last().unwrap().time;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Timestamp::now().0 <= last.0 + 1 {
            assert!(std::time::Instant::now() < deadline, "the clock is stuck");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let gra = node("gra-3", "ovh://gra/3", "gra", "51.38.1.1");
        self.append(&line("spaces/3/doc-early", &gra));
        let entries = self.entries();
        assert_eq!(entries.len(), 4);
        entries[3].time
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn append(&self, input: &str) {
        self.append_with(input, &[]);
    }

    /// `append` with `extra` arguments (`--witness KEY,URL`).
    fn append_with(&self, input: &str, extra: &[&str]) {
        let (policy, attestations) = (
            policy("france-diffusion-restreinte"),
            self.path("attestations.yaml"),
        );
        let mut args = vec![
            "append",
            "--policy",
            &policy,
            "--attestations",
            &attestations,
        ];
        args.extend(["--db", &self.db, "--key", self.key.to_str().unwrap()]);
        args.extend_from_slice(extra);
        run_ok(&args, Some(input));
    }

    /// Exports the ledger to `bundle.jsonl`; returns its path.
    fn export(&self) -> String {
        let out = self.path("bundle.jsonl");
        run_ok(&["export", "--db", &self.db, "--out", &out], None);
        out
    }

    fn entries(&self) -> Vec<Entry> {
        std::fs::read_to_string(self.export())
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("{\"entry\":"))
            .map(|e| Entry::decode(&e.as_bytes()[..e.len() - 1]).unwrap())
            .collect()
    }

    /// `report --ledger LEDGER --format FORMAT --out FILE` over the fixture's period.
    fn report(&self, ledger: &str, format: &str, file: &str) -> String {
        self.report_over(ledger, &self.from, TO, format, file).0
    }

    /// `report` over `from` to `to`: the file's path and what the command printed.
    fn report_over(
        &self,
        ledger: &str,
        from: &str,
        to: &str,
        format: &str,
        file: &str,
    ) -> (String, String) {
        let out = self.path(file);
        let printed = run_ok(
            &[
                "report",
                "--ledger",
                ledger,
                "--key",
                self.key.to_str().unwrap(),
                "--from",
                from,
                "--to",
                to,
                "--format",
                format,
                "--out",
                &out,
            ],
            None,
        );
        (out, printed)
    }

    /// `report verify`: (exit code, stdout and stderr).
    fn verify(&self, report: &str, key: &str, ledger: Option<&str>) -> (Option<i32>, String) {
        let mut extra = vec![];
        if let Some(l) = ledger {
            extra.extend(["--ledger", l]);
        }
        self.verify_with(report, key, &extra)
    }

    /// `report verify --report REPORT --key KEY` and `extra` arguments: (exit code, stdout and
    /// stderr).
    fn verify_with(&self, report: &str, key: &str, extra: &[&str]) -> (Option<i32>, String) {
        let mut args = vec!["report", "verify", "--report", report, "--key", key];
        args.extend(extra);
        let out = run(&args, None);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

fn signed(path: &str) -> SignedReport {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_json_report_counts_the_period_and_names_its_checkpoint() {
    let f = Fixture::new();
    let bundle = f.export();
    let verified = run_ok(&["verify", &bundle, "--trust", &f.vkey], None);
    let root = verified
        .split_whitespace()
        .skip_while(|w| *w != "root")
        .nth(1)
        .unwrap()
        .to_string();
    let entries = f.entries();
    let path = f.report(&f.db, "json", "r.json");
    let s = signed(&path);
    let r = &s.report;
    assert_eq!(r.format, "hexagone.report@v3");
    assert_eq!(
        (r.period.from.as_str(), r.period.to.as_str()),
        (f.from.as_str(), "2099-01-01T00:00:00.000Z")
    );
    // Tied to the last checkpoint: all three entries, the root `verify` computes.
    assert_eq!(
        (
            r.checkpoint.origin.as_str(),
            r.checkpoint.size,
            r.checkpoint.root.as_str()
        ),
        (crate::util::ORIGIN, 3, root.as_str())
    );
    // The early entry (seq 0) is before the period: not one of its observations, but its
    // object is still where that entry put it, in violation.
    let t = &r.totals;
    assert_eq!(
        (t.observations, t.first_seq, t.last_seq, t.objects),
        (2, Some(1), Some(2), 3)
    );
    assert_eq!(
        (
            t.verdicts.compliant,
            t.verdicts.violation,
            t.verdicts.unknown
        ),
        (1, 2, 0)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    // Nothing personal is added: who attested stays a pseudonym.
    assert!(!text.contains("rssi@"), "the report names a person");
    let objects: Vec<_> = r
        .objects
        .iter()
        .map(|o| {
            format!(
                "{} {} {} {} {}",
                o.object, o.subject, o.country, o.verdict, o.seq
            )
        })
        .collect();
    assert_eq!(
        objects,
        [
            "spaces/3/doc-early fsn-1 DE violation 0",
            "spaces/7/doc-42 gra-3 FR compliant 1",
            &format!("{SCRIPT_OBJECT} fsn-1 DE violation 2"),
        ]
    );
    let stores: Vec<_> = r
        .stores
        .iter()
        .map(|s| format!("{}/{} {}", s.store, s.class, s.verdicts.total()))
        .collect();
    assert_eq!(stores, ["minio/documents/document 3"]);
    let countries: Vec<_> = r
        .countries
        .iter()
        .map(|c| {
            format!(
                "{} {}+{}",
                c.country, c.verdicts.compliant, c.verdicts.violation
            )
        })
        .collect();
    assert_eq!(countries, ["DE 0+2", "FR 1+0"]);
    let nets: Vec<_> = r
        .jurisdictions
        .iter()
        .map(|j| {
            format!(
                "AS{} {} {} extra-EU:{} {}",
                j.asn.unwrap(),
                j.organisation.as_deref().unwrap_or("?"),
                j.registered.as_deref().unwrap_or("?"),
                j.extra_eu_control,
                j.verdicts.total()
            )
        })
        .collect();
    assert_eq!(nets.len(), 2, "{nets:?}");
    assert!(
        nets[0].starts_with("AS16276 ") && nets[0].ends_with(" FR extra-EU:false 1"),
        "{nets:?}"
    );
    assert!(
        nets[1].starts_with("AS24940 ") && nets[1].ends_with(" DE extra-EU:false 2"),
        "{nets:?}"
    );
    // Both violations are open, the longer open first, with evidence and since when.
    assert!(r.resolved_violations.is_empty());
    let open: Vec<_> = r
        .open_violations
        .iter()
        .map(|v| {
            (
                v.object.as_str(),
                v.subject.as_str(),
                v.since_seq,
                v.last_seq,
                v.entries,
            )
        })
        .collect();
    assert_eq!(
        open,
        [
            ("spaces/3/doc-early", "fsn-1", 0, 0, 1),
            (SCRIPT_OBJECT, "fsn-1", 2, 2, 1)
        ]
    );
    let v = &r.open_violations[1];
    let at = entries[2].time.to_string();
    assert_eq!(
        (v.since.as_str(), v.last_seen.as_str()),
        (at.as_str(), at.as_str())
    );
    // The decisive reason leads, and the headline says it in one sentence.
    let decisive = "address 5.9.0.1 is in DE, outside the allowed countries (FR)";
    assert_eq!(v.reasons[0], decisive, "{:?}", v.reasons);
    assert_eq!(
        v.headline,
        format!(
            "{SCRIPT_OBJECT} (minio/documents / document) on node fsn-1 (DE) has violated \
             Diffusion Restreinte since {at}: {decisive}."
        )
    );
    assert!(
        v.evidence.iter().any(|e| e.contains("AS24940")),
        "{:?}",
        v.evidence
    );
    assert_eq!(r.policies.len(), 1);
    assert_eq!(r.policies[0].classification, "Diffusion Restreinte");

    // The same report from the exported bundle.
    let from_bundle = signed(&f.report(&bundle, "json", "b.json")).report;
    assert_eq!(
        hexagone_auditor::report::Report {
            generated_at: r.generated_at.clone(),
            ..from_bundle
        },
        *r
    );

    // It verifies, alone and against the ledger; its checkpoint verifies with `verify`.
    let (code, out) = f.verify(&path, &f.vkey, None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("size 3 root {root}")), "{out}");
    let pubfile = format!("{}.pub", f.key.display());
    let (code, out) = f.verify(&path, &pubfile, Some(&bundle));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("gives the same report"), "{out}");
    let note = f.path("checkpoint.note");
    std::fs::write(&note, &r.checkpoint.note).unwrap();
    run_ok(
        &["verify", &bundle, "--trust", &f.vkey, "--checkpoint", &note],
        None,
    );
}

/// `report verify --witness`: the report's checkpoint, as exported, carries the witnesses'
/// cosignatures; a report verifies with the witness that cosigned it, and is refused when a
/// required witness did not (a threshold of one of two passes).
#[test]
fn report_verify_checks_the_witnesses_cosignatures() {
    let f = Fixture::new();
    let w1 = crate::witness::start_witness(f.dir.path(), "w1", &f.dir.path().join("k.pub"));
    let w2 = crate::witness::start_witness(f.dir.path(), "w2", &f.dir.path().join("k.pub"));
    // One more entry, its checkpoint cosigned by w1 only.
    let gra = node("gra-3", "ovh://gra/3", "gra", "51.38.1.1");
    f.append_with(
        &line("spaces/9/doc-cosigned", &gra),
        &["--witness", &format!("{},{}", w1.key, w1.url)],
    );
    let report = f.report(&f.db, "json", "cosigned.json");
    let check = |witnesses: &[&str], threshold: Option<&str>| {
        let mut extra = vec![];
        for w in witnesses {
            extra.extend(["--witness", w]);
        }
        if let Some(t) = threshold {
            extra.extend(["--witness-threshold", t]);
        }
        f.verify_with(&report, &f.vkey, &extra)
    };
    let (code, out) = check(&[&w1.key], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("checkpoint cosigned by: witness.test/w1 (1 of 1 witnesses given, 1 needed)"),
        "{out}"
    );
    assert!(!out.contains("NOT CHECKED"), "w1's line is checked: {out}");
    let (code, out) = check(&[], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("NOT CHECKED") && out.contains("\u{2014} witness.test/w1 "),
        "without --witness, w1's line is not a checked cosignature: {out}"
    );
    let (code, out) = check(&[&w1.key, &w2.key], None);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "is cosigned by 1 of the 2 witnesses given, 2 needed; missing: witness.test/w2"
        ),
        "{out}"
    );
    let (code, out) = check(&[&w1.key, &w2.key], Some("1"));
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = check(&[&w2.key], None);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = check(&[&w1.key], Some("3"));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("more than the 1 witnesses given"), "{out}");

    // The key holder's forgery: a later checkpoint no witness saw, with w1's cosignature line
    // copied from the cosigned one, in a report signed again with the log's key. The report's
    // signature holds; the cosignature does not, being over another checkpoint.
    f.append(&line("spaces/9/doc-unwitnessed", &gra));
    let later = signed(&f.report(&f.db, "json", "later.json"));
    let cosigned = signed(&report);
    assert!(later.report.checkpoint.size > cosigned.report.checkpoint.size);
    let w1_line = cosigned
        .report
        .checkpoint
        .note
        .lines()
        .find(|l| l.starts_with("\u{2014} witness.test/w1 "))
        .expect("the exported checkpoint carries w1's cosignature")
        .to_owned();
    let mut forged = later.report.clone();
    forged.checkpoint.note.push_str(&format!("{w1_line}\n"));
    let key = hexagone_auditor::keyfile::load(&f.key).unwrap();
    let forged = forged.sign(&key);
    let forged_path = f.path("forged.json");
    std::fs::write(
        &forged_path,
        hexagone_auditor::report::render(&forged, hexagone_auditor::report::Format::Json),
    )
    .unwrap();
    let (code, text) = f.verify(&forged_path, &f.vkey, None);
    assert_eq!(
        code,
        Some(0),
        "the forged report is signed by the log's key: {text}"
    );
    // ... but the copied line is shown for what it is: nothing checked it.
    assert!(
        text.contains(&format!(
            "NOT CHECKED: the report's checkpoint note carries 1 line(s) that are neither the log key's signature nor a valid cosignature by a --witness key given: `{w1_line}`"
        )),
        "{text}"
    );
    let (code, text) = f.verify_with(&forged_path, &f.vkey, &["--witness", &w1.key]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "is cosigned by 0 of the 1 witnesses given, 1 needed; missing: witness.test/w1"
        ),
        "{text}"
    );
    drop((w1, w2));
}

/// Whoever holds a report file adds a signature line naming an authority (and, another time,
/// a second line under the log's own name) to a real signed report, and renders the page
/// again around it: `report verify` refuses every rendering, naming the line, so no page
/// showing such a line passes for verified.
#[test]
fn a_signature_line_the_log_key_did_not_make_is_refused() {
    use base64::Engine as _;
    use hexagone_auditor::report::{Format, render};
    let f = Fixture::new();
    let path = f.report(&f.db, "json", "genuine.json");
    let genuine = signed(&path);
    let (code, out) = f.verify(&path, &f.vkey, None);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("NOT CHECKED"), "{out}");
    let blob = base64::engine::general_purpose::STANDARD.encode([7u8; 68]);
    let log_name = genuine
        .signature
        .rsplit_once("\n\n")
        .unwrap()
        .1
        .split(' ')
        .nth(1)
        .unwrap()
        .to_owned();
    for forged_line in [
        format!("\u{2014} anssi.gouv.fr/accreditation {blob}"),
        format!("\u{2014} {log_name} {blob}"),
    ] {
        let mut forged = genuine.clone();
        forged.signature.push_str(&format!("{forged_line}\n"));
        for (format, file) in [
            (Format::Json, "forged.json"),
            (Format::Md, "forged.md"),
            (Format::Html, "forged.html"),
        ] {
            let page = render(&forged, format);
            assert!(page.contains(&forged_line) || format == Format::Json);
            let file = f.path(file);
            std::fs::write(&file, page).unwrap();
            let (code, out) = f.verify(&file, &f.vkey, None);
            assert_eq!(code, Some(1), "{format:?}: {out}");
            assert!(
                out.contains(&format!(
                    "the report's signature note carries a line that is not the log key's signature: `{forged_line}`"
                )),
                "{format:?}: {out}"
            );
        }
    }
}

#[test]
fn markdown_and_html_escape_ledger_values_and_verify() {
    let f = Fixture::new();
    for (format, file) in [("md", "r.md"), ("html", "r.html")] {
        let path = f.report(&f.db, format, file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("<script>alert"),
            "{format}: markup from the ledger is not escaped"
        );
        assert!(
            text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{format}"
        );
        assert!(
            text.contains("fsn-1") && text.contains("5.9.0.1 is in DE"),
            "{format}"
        );
        assert!(!text.contains("rssi@"), "{format}");
        let (code, out) = f.verify(&path, &f.vkey, None);
        assert_eq!(code, Some(0), "{format}: {out}");
        assert!(out.contains(&format!("valid: {format} report")), "{out}");
    }
    let html = std::fs::read_to_string(f.path("r.html")).unwrap();
    // Self-contained: nothing is fetched (the only URL is the SVG namespace).
    for fetch in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(fetch), "the page fetches something: {fetch}");
    }
    assert!(html.contains("@media print") && html.contains("<svg"));
}

#[test]
fn a_changed_report_another_key_and_a_report_the_ledger_does_not_give_are_refused() {
    let f = Fixture::new();
    let bundle = f.export();
    let path = f.report(&f.db, "json", "r.json");
    let text = std::fs::read_to_string(&path).unwrap();

    // A count lowered in the JSON: the signature no longer covers the content.
    let lowered = f.path("lowered.json");
    let changed = text.replacen("\"violation\": 2", "\"violation\": 1", 1);
    assert_ne!(changed, text);
    std::fs::write(&lowered, changed).unwrap();
    let (code, out) = f.verify(&lowered, &f.vkey, None);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("INVALID") && out.contains("changed after it was signed"),
        "{out}"
    );

    // The visible text of the HTML page changed, its signed data left alone: the line is named.
    let html = f.report(&f.db, "html", "r.html");
    let page = std::fs::read_to_string(&html).unwrap();
    let edited = f.path("edited.html");
    std::fs::write(&edited, page.replacen("fsn-1", "gra-7", 1)).unwrap();
    let (code, out) = f.verify(&edited, &f.vkey, None);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("differs from the rendering of its signed content"),
        "{out}"
    );

    // Another key.
    let (_, other) = keygen(f.dir.path(), "other");
    let (code, out) = f.verify(&path, &other, None);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("signature"), "{out}");

    // The key holder signs a report that hides the violation: the signature is good, but the
    // ledger does not give it.
    let key = hexagone_auditor::keyfile::load(&f.key).unwrap();
    let mut forged = signed(&path).report;
    forged.open_violations.retain(|v| v.object != SCRIPT_OBJECT);
    forged.totals.verdicts.violation = 1;
    let forged_path = f.path("forged.json");
    std::fs::write(
        &forged_path,
        hexagone_auditor::report::render(
            &forged.sign(&key),
            hexagone_auditor::report::Format::Json,
        ),
    )
    .unwrap();
    let (code, out) = f.verify(&forged_path, &f.vkey, None);
    assert_eq!(code, Some(0), "a well-signed report verifies alone: {out}");
    let (code, out) = f.verify(&forged_path, &f.vkey, Some(&bundle));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the report's open_violations, totals differ from what the ledger gives"),
        "{out}"
    );

    // A ledger that does not verify gives no report: the node's name rewritten in the bundle.
    let rewritten = f.path("rewritten.jsonl");
    let text = std::fs::read_to_string(&bundle).unwrap();
    std::fs::write(&rewritten, text.replacen("\"fsn-1\"", "\"gra-3\"", 1)).unwrap();
    let out = run(
        &[
            "report",
            "--ledger",
            &rewritten,
            "--key",
            f.key.to_str().unwrap(),
            "--from",
            &f.from,
            "--to",
            TO,
            "--out",
            &f.path("y.json"),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the ledger does not verify, no report made: line 4: checkpoint of size 1 signs root"
        ),
        "{stderr}"
    );
    assert!(!Path::new(&f.path("y.json")).exists());

    // A private key readable by others is refused.
    let mut perms = std::fs::metadata(&f.key).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&f.key, perms).unwrap();
    let out = run(
        &[
            "report",
            "--ledger",
            &f.db,
            "--key",
            f.key.to_str().unwrap(),
            "--from",
            &f.from,
            "--to",
            TO,
            "--out",
            &f.path("x.json"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    assert!(!Path::new(&f.path("x.json")).exists());
}

/// The Chromium binary the test script found (`tests/scripts/chromium.sh`).
fn chromium() -> String {
    match std::env::var("HEXAGONE_CHROMIUM") {
        Ok(c) if !c.is_empty() => c,
        _ => panic!(
            "HEXAGONE_CHROMIUM is not set: run `export HEXAGONE_CHROMIUM=$(tests/scripts/chromium.sh)` \
             (tests/run test does) before running the report tests"
        ),
    }
}

/// Runs headless Chromium on `page` with `args`; returns its standard output.
fn chromium_run(dir: &Path, page: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1600",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium-profile").display()
        ))
        .args(args)
        .arg(format!("file://{page}"))
        .output()
        .expect("starting chromium");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Width, height and size of a PNG file.
fn png(path: &str) -> (u32, u32, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot {path}: {e}"));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{path} is not a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20), bytes.len())
}

/// The number a card of the page shows: `<b id="ID">N</b>`.
fn card(page: &str, id: &str) -> u64 {
    let open = format!("<b id=\"{id}\">");
    let at = page.find(&open).unwrap_or_else(|| panic!("no card {id}")) + open.len();
    let len = page[at..].find('<').unwrap();
    page[at..at + len]
        .parse()
        .unwrap_or_else(|e| panic!("card {id}: {e}"))
}

#[test]
fn the_html_report_opens_in_headless_chromium() {
    let f = Fixture::new();
    f.resolve_early();
    let html = f.report(&f.db, "html", "r.html");
    let r = signed(&f.report(&f.db, "json", "r.json")).report;
    let dir = f.dir.path();

    let dom = String::from_utf8(chromium_run(dir, &html, &["--dump-dom"])).unwrap();
    assert!(
        dom.contains("fsn-1"),
        "the violation's node is not in the DOM"
    );
    assert!(
        dom.contains(&r.checkpoint.root),
        "the checkpoint root is not in the DOM"
    );
    let cards: Vec<u64> = [
        "objects",
        "compliant",
        "violation",
        "unknown",
        "open-violations",
        "resolved-violations",
        "tree-size",
    ]
    .iter()
    .map(|id| card(&dom, id))
    .collect();
    assert_eq!(cards, [3, 2, 1, 0, 1, 1, 4]);
    // The identifier carrying markup stayed text: no script element was made of it.
    assert!(
        !dom.contains("<script>alert"),
        "markup from the ledger became an element"
    );
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    // Open violations come first, before the checkpoint, marked, with their decisive reason;
    // the resolved one (opened earlier) after them, with where it went.
    let open = dom.find(r#"data-state="open""#).expect("no open violation");
    let resolved = dom
        .find(r#"data-state="resolved""#)
        .expect("no resolved violation");
    let checkpoint = dom.find("<h2>Checkpoint</h2>").unwrap();
    assert!(
        open < resolved && resolved < checkpoint,
        "{open} {resolved} {checkpoint}"
    );
    let open_box = &dom[open..resolved];
    assert!(
        open_box.contains(r#"<b class="badge open">OPEN</b>"#)
            && open_box.contains(SCRIPT_OBJECT.replace('<', "&lt;").replace('>', "&gt;").as_str())
            && open_box.contains(
                "Decisive reason: <b>address 5.9.0.1 is in DE, outside the allowed countries (FR)</b>"
            ),
        "{open_box}"
    );
    let resolved_box = &dom[resolved..checkpoint];
    assert!(
        resolved_box.contains(r#"<b class="badge resolved">RESOLVED</b>"#)
            && resolved_box.contains("spaces/3/doc-early")
            && resolved_box.contains(r#"compliant on node <b class="mono">gra-3</b> (FR)"#),
        "{resolved_box}"
    );

    // As laid out and styled by the browser: a probe added to a copy of the page reads each
    // violation box's position and its badge's text, colour and size.
    let probe = f.path("probe.html");
    let page = std::fs::read_to_string(&html).unwrap();
    std::fs::write(
        &probe,
        page.replace(
            "</body>",
            "<script>document.body.setAttribute('data-probe', [...document.querySelectorAll('.violation-box')]\
             .map(b => { const badge = b.querySelector('.badge'); const r = badge.getBoundingClientRect(); \
             return [b.dataset.state, Math.round(b.getBoundingClientRect().top), badge.textContent, \
             getComputedStyle(badge).backgroundColor, r.width > 20 && r.height > 10].join('|'); }).join(';'));</script></body>",
        ),
    )
    .unwrap();
    let dom = String::from_utf8(chromium_run(dir, &probe, &["--dump-dom"])).unwrap();
    let at = dom.find("data-probe=\"").expect("the probe did not run") + "data-probe=\"".len();
    let boxes: Vec<Vec<&str>> = dom[at..at + dom[at..].find('"').unwrap()]
        .split(';')
        .map(|b| b.split('|').collect())
        .collect();
    assert_eq!(boxes.len(), 2, "{boxes:?}");
    let (o, res) = (&boxes[0], &boxes[1]);
    assert_eq!(
        (o[0], o[2], o[3], o[4]),
        ("open", "OPEN", "rgb(179, 38, 30)", "true"),
        "{boxes:?}"
    );
    assert_eq!(
        (res[0], res[2], res[4]),
        ("resolved", "RESOLVED", "true"),
        "{boxes:?}"
    );
    assert_ne!(res[3], o[3], "open and resolved look the same: {boxes:?}");
    let top = |b: &Vec<&str>| b[1].parse::<i64>().unwrap();
    assert!(
        top(o) < top(res),
        "the open violation is not above: {boxes:?}"
    );

    // A screenshot of the report, and one of an empty page of the same size to compare with:
    // a blank rendering compresses to almost nothing.
    let shot = f.path("report.png");
    chromium_run(dir, &html, &[&format!("--screenshot={shot}")]);
    let blank_page = f.path("blank.html");
    std::fs::write(&blank_page, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank = f.path("blank.png");
    chromium_run(dir, &blank_page, &[&format!("--screenshot={blank}")]);
    let (w, h, size) = png(&shot);
    let (_, _, blank_size) = png(&blank);
    assert_eq!((w, h), (1200, 1600));
    assert!(
        size > 20 * 1024 && size > 8 * blank_size,
        "the screenshot looks blank: {size} bytes, an empty page gives {blank_size}"
    );
}

/// The early object is recorded once, in violation, before the period: every later report
/// shows it open, since that entry, until an entry resolves it; the report of the resolving
/// entry's period shows it resolved with where it went, and later reports no longer list it.
/// Each report verifies against the ledger, including the one whose period ends before the
/// resolving entry.
#[test]
fn a_violation_recorded_once_stays_open_in_later_reports_until_resolved() {
    let f = Fixture::new();
    let entries = f.entries();
    let early = entries[0].time.to_string();
    let after = Timestamp(entries[2].time.0 + 1).to_string();
    let open_of = |r: &hexagone_auditor::report::Report| -> Vec<(String, String, u64)> {
        r.open_violations
            .iter()
            .map(|v| (v.object.clone(), v.since.clone(), v.since_seq))
            .collect()
    };
    let both_open = vec![
        ("spaces/3/doc-early".to_string(), early.clone(), 0),
        (SCRIPT_OBJECT.to_string(), entries[2].time.to_string(), 2),
    ];

    // A period after every entry: nothing observed in it, both violations still open.
    let (path, printed) = f.report_over(&f.db, &after, TO, "json", "a.json");
    let r = signed(&path).report;
    assert_eq!((r.totals.observations, r.totals.objects), (0, 3));
    assert_eq!(open_of(&r), both_open);
    assert!(r.resolved_violations.is_empty());
    assert!(
        r.open_violations[0].headline.contains(&format!(
            "has violated Diffusion Restreinte since {early} (before this period): "
        )),
        "{}",
        r.open_violations[0].headline
    );
    assert!(
        printed.contains("3 objects (1 compliant, 2 violation, 0 unknown), 2 open violations, 0 resolved in the period"),
        "{printed}"
    );

    let resolved_at = f.resolve_early();
    let bundle = f.export();
    // Up to the resolving entry (excluded): still open, though the ledger goes further.
    let (path, _) = f.report_over(&f.db, &after, &resolved_at.to_string(), "json", "b.json");
    let r = signed(&path).report;
    assert_eq!(r.checkpoint.size, 4);
    assert_eq!(open_of(&r), both_open);
    let (code, out) = f.verify(&path, &f.vkey, Some(&bundle));
    assert_eq!(code, Some(0), "{out}");

    // The resolving entry's period: resolved, where it went and when.
    let (path, printed) = f.report_over(&f.db, &resolved_at.to_string(), TO, "json", "c.json");
    let r = signed(&path).report;
    assert_eq!(open_of(&r), both_open[1..]);
    let resolved: Vec<_> = r
        .resolved_violations
        .iter()
        .map(|v| {
            let to = v.resolved.as_ref().unwrap();
            (
                v.object.as_str(),
                v.subject.as_str(),
                v.since.as_str(),
                to.subject.as_str(),
                to.country.as_str(),
                to.seq,
                to.time.clone(),
            )
        })
        .collect();
    assert_eq!(
        resolved,
        [(
            "spaces/3/doc-early",
            "fsn-1",
            early.as_str(),
            "gra-3",
            "FR",
            3,
            resolved_at.to_string()
        )]
    );
    assert!(
        r.resolved_violations[0]
            .headline
            .contains("left node fsn-1 (DE) for node gra-3 (FR), where it is compliant"),
        "{}",
        r.resolved_violations[0].headline
    );
    assert!(
        printed.contains("3 objects (2 compliant, 1 violation, 0 unknown), 1 open violations, 1 resolved in the period"),
        "{printed}"
    );
    let (code, out) = f.verify(&path, &f.vkey, Some(&bundle));
    assert_eq!(code, Some(0), "{out}");

    // Later: resolved before the period, so listed neither way; the object is compliant.
    let later = Timestamp(resolved_at.0 + 1).to_string();
    let (path, _) = f.report_over(&f.db, &later, TO, "json", "d.json");
    let r = signed(&path).report;
    assert_eq!(open_of(&r), both_open[1..]);
    assert!(r.resolved_violations.is_empty());
    let early_now = r
        .objects
        .iter()
        .find(|o| o.object == "spaces/3/doc-early")
        .unwrap();
    assert_eq!(
        (
            early_now.subject.as_str(),
            early_now.verdict.as_str(),
            early_now.seq
        ),
        ("gra-3", "compliant", 3)
    );
}

/// A LocalityPolicy rewritten in the cluster shows in the report whatever anyone says: its
/// policy entries, carrying the real digests of shipped policy files, are listed with the
/// digest before and whether the period's observations were judged under each (the fixture's
/// were judged under Diffusion Restreinte: yes; Standard: no), its removal as such, apart from
/// the objects; the policy still standing at the period's end (another one, under Diffusion
/// Restreinte) is listed as in force since its entry, the removed one is not; the whole ledger
/// verifies and gives the same report.
#[test]
fn policy_changes_are_in_the_report_and_the_ledger_gives_the_same_report() {
    use hexagone_auditor::ledger::entry::{Body, ObjectId, POLICY_CLASS};
    use hexagone_auditor::store::Ledger;
    let f = Fixture::new();
    let digest = |name: &str| {
        hexagone_platform::LocalityPolicy::from_file(Path::new(&policy(name)))
            .unwrap()
            .digest()
    };
    let (dr, standard) = (
        digest("france-diffusion-restreinte"),
        digest("france-standard"),
    );
    let named = ObjectId::new("kubernetes".into(), POLICY_CLASS.into(), "dr".into()).unwrap();
    let standing =
        ObjectId::new("kubernetes".into(), POLICY_CLASS.into(), "intranet".into()).unwrap();
    let key = hexagone_auditor::keyfile::load(&f.key).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let ledger = Ledger::open(&f.db).await.unwrap();
            let (mut seq, _) = ledger.sequencer(key).await.unwrap();
            let now = Timestamp::now();
            ledger
                .append(
                    &mut seq,
                    now,
                    vec![
                        Body::policy(named.clone(), dr.clone(), now).unwrap(),
                        Body::policy(named.clone(), standard.clone(), now).unwrap(),
                        Body::Removal {
                            object: named.clone(),
                            observed_at: now,
                            request: None,
                        },
                        Body::policy(standing, dr.clone(), now).unwrap(),
                    ],
                )
                .await
                .unwrap();
            ledger.close().await;
        });
    let bundle = f.export();
    // Replay judges the observations again and passes over the policy entries, as removals.
    let replayed = run_ok(
        &[
            "verify",
            &bundle,
            "--trust",
            &f.vkey,
            "--policy",
            &policy("france-diffusion-restreinte"),
        ],
        None,
    );
    assert!(
        replayed.contains("valid: 7 entries")
            && replayed.contains(&format!(
                "every verdict replayed from its evidence under \"Diffusion Restreinte\" ({dr}) (3 observations)"
            )),
        "{replayed}"
    );
    let path = f.report(&f.db, "json", "policies.json");
    let r = signed(&path).report;
    let rows: Vec<_> = r
        .policy_changes
        .iter()
        .map(|c| {
            (
                c.policy.as_str(),
                c.seq,
                c.digest.clone(),
                c.previous.clone(),
                c.previous_seq,
                c.judged_under,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("dr", 3, Some(dr.clone()), None, None, Some(true)),
            (
                "dr",
                4,
                Some(standard.clone()),
                Some(dr.clone()),
                Some(3),
                Some(false)
            ),
            ("dr", 5, None, Some(standard), Some(4), None),
            ("intranet", 6, Some(dr.clone()), None, None, Some(true)),
        ]
    );
    let in_force: Vec<_> = r
        .policies_in_force
        .iter()
        .map(|p| {
            (
                p.store.as_str(),
                p.policy.as_str(),
                p.digest.as_str(),
                p.since_seq,
                p.judged_under,
            )
        })
        .collect();
    assert_eq!(
        in_force,
        [("kubernetes", "intranet", dr.as_str(), 6, Some(true))]
    );
    assert_eq!(r.policies_in_force[0].since, r.policy_changes[3].time);
    assert_eq!((r.totals.objects, r.objects.len()), (3, 3));
    assert!(r.objects.iter().all(|o| o.class != POLICY_CLASS));
    assert_eq!(r.open_violations.len(), 2);
    assert!(r.resolved_violations.is_empty());
    let (code, out) = f.verify(&path, &f.vkey, Some(&bundle));
    assert_eq!(code, Some(0), "{out}");
    // The rendering names the change that matters: the policy no longer judged under.
    let page = f.report(&f.db, "md", "policies.md");
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(text.contains("## Policy changes"), "{text}");
    assert!(text.contains("| dr | 5 | "), "{text}");
    assert!(text.contains("## Policies in force"), "{text}");
    assert!(
        text.contains(&format!("| intranet | {dr} | 6 | ")),
        "{text}"
    );
    let (code, out) = f.verify(&page, &f.vkey, Some(&bundle));
    assert_eq!(code, Some(0), "{out}");

    // The same report as the previous version made it (hexagone.report@v2, before the policies
    // in force: the same model without that key, its note's first line v2), signed by the key
    // holder: the ledger, where a policy stands at the period's end, still gives it.
    let key = hexagone_auditor::keyfile::load(&f.key).unwrap();
    let write = |name: &str, r: hexagone_auditor::report::Report| {
        let path = f.path(name);
        std::fs::write(
            &path,
            hexagone_auditor::report::render(&r.sign(&key), hexagone_auditor::report::Format::Json),
        )
        .unwrap();
        path
    };
    let mut v2 = r.clone();
    v2.format = "hexagone.report@v2".into();
    v2.policies_in_force.clear();
    let v2_path = write("v2.json", v2.clone());
    let text = std::fs::read_to_string(&v2_path).unwrap();
    assert!(!text.contains("policies_in_force"), "{text}");
    assert!(
        text.contains("\"signature\": \"hexagone.report@v2\\n"),
        "{text}"
    );
    let (code, out) = f.verify(&v2_path, &f.vkey, Some(&bundle));
    assert_eq!(code, Some(0), "{out}");
    // A v2 report that hides a policy change: refused, the key named.
    let mut hidden = v2;
    hidden.policy_changes.pop();
    let (code, out) = f.verify(&write("v2-hidden.json", hidden), &f.vkey, Some(&bundle));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the report's policy_changes differ from what the ledger gives"),
        "{out}"
    );
    // A v3 report without the policy in force (the key left out, as when empty): the key the
    // ledger gives and the report lacks is named.
    let mut dropped = r.clone();
    dropped.policies_in_force.clear();
    let (code, out) = f.verify(&write("v3-dropped.json", dropped), &f.vkey, Some(&bundle));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the report's policies_in_force differ from what the ledger gives"),
        "{out}"
    );
}

/// What `report` prints, what `report verify` prints and what the HTML page and the Markdown
/// document show at their top are the same counts, of the same violations.
#[test]
fn the_commands_summary_and_the_page_agree() {
    let f = Fixture::new();
    f.resolve_early();
    let expected = "3 objects (2 compliant, 1 violation, 0 unknown), 1 open violations, 1 resolved in the period";
    let (html, printed) = f.report_over(&f.db, &f.from, TO, "html", "r.html");
    assert!(
        printed.contains(&format!("(html): {expected}; checkpoint size 4 root ")),
        "{printed}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    let cards: Vec<u64> = [
        "objects",
        "compliant",
        "violation",
        "unknown",
        "open-violations",
        "resolved-violations",
    ]
    .iter()
    .map(|id| card(&page, id))
    .collect();
    assert_eq!(cards, [3, 2, 1, 0, 1, 1]);
    // The cards count the boxes below them.
    assert_eq!(page.matches(r#"data-state="open""#).count(), 1);
    assert_eq!(page.matches(r#"data-state="resolved""#).count(), 1);
    assert!(page.contains(r#"<h2 id="open">Open violations (1)</h2>"#));
    assert!(page.contains(r#"<h2 id="resolved">Resolved in the period (1)</h2>"#));

    let (md, printed) = f.report_over(&f.db, &f.from, TO, "md", "r.md");
    assert!(printed.contains(&format!("(md): {expected};")), "{printed}");
    let doc = std::fs::read_to_string(&md).unwrap();
    assert!(doc.contains("| 3 | 2 | 1 | 0 | 3 | **1** | 1 |"), "{doc}");
    assert_eq!(doc.matches("\n### OPEN · ").count(), 1, "{doc}");
    assert_eq!(doc.matches("\n### RESOLVED · ").count(), 1, "{doc}");

    for report in [&html, &md] {
        let (code, out) = f.verify(report, &f.vkey, None);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains(&format!("\n{expected}\n")), "{out}");
    }
}

/// The same command on a PostgreSQL ledger (exported through the same store code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_from_a_postgresql_ledger_verifies() {
    let url = crate::util::fresh_postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "k");
    let fsn = node("fsn-1", "hetzner://fsn1/1", "fsn1", "5.9.0.1");
    let key = key.to_str().unwrap().to_string();
    let out = dir.path().join("r.md").to_str().unwrap().to_string();
    let (url2, key2, out2) = (url.clone(), key.clone(), out.clone());
    let printed = tokio::task::spawn_blocking(move || {
        run_ok(
            &[
                "append",
                "--policy",
                &policy("france-standard"),
                "--db",
                &url2,
                "--key",
                &key2,
            ],
            Some(&line("spaces/3/doc-3", &fsn)),
        );
        run_ok(
            &[
                "report",
                "--ledger",
                &url2,
                "--key",
                &key2,
                "--from",
                "2000-01-01T00:00:00Z",
                "--to",
                TO,
                "--out",
                &out2,
            ],
            None,
        )
    })
    .await
    .unwrap();
    assert!(
        printed.contains(
            "(md): 1 objects (0 compliant, 1 violation, 0 unknown), 1 open violations, 0 resolved \
             in the period; checkpoint size 1"
        ),
        "{printed}"
    );
    let out = run(
        &["report", "verify", "--report", &out, "--key", &vkey],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The key holder hands the officer a report made at an older witnessed checkpoint, before a
/// violation was recorded: it verifies, witnesses included, but says freshness was not
/// checked. Held to a newer checkpoint (the one a writer's acknowledgement carried, or the
/// newest the witness cosigned), it is refused as not fresh, naming both sizes; the report made
/// again at the newest checkpoint passes.
#[test]
fn a_report_made_at_an_older_checkpoint_is_not_fresh() {
    let f = Fixture::new();
    let w1 = crate::witness::start_witness(f.dir.path(), "w1", &f.dir.path().join("k.pub"));
    let witness = format!("{},{}", w1.key, w1.url);
    let append_witnessed =
        |object: &str, node: &str| f.append_with(&line(object, node), &["--witness", &witness]);
    let gra = node("gra-3", "ovh://gra/3", "gra", "51.38.1.1");
    let fsn = node("fsn-9", "hetzner://fsn1/9", "fsn1", "5.9.0.9");
    append_witnessed("spaces/9/doc-before", &gra);
    let old = f.report(&f.db, "json", "old.json");
    // A later violation, witnessed too; its checkpoint is what a writer kept.
    append_witnessed("spaces/9/doc-moved-to-germany", &fsn);
    let newer = f.path("newer.checkpoint");
    run_ok(
        &[
            "checkpoint",
            "--db",
            &f.db,
            "--key",
            f.key.to_str().unwrap(),
            "--out",
            &newer,
        ],
        None,
    );
    let fresh_from = format!("{},{}", w1.key, w1.url);
    let (code, out) = f.verify_with(&old, &f.vkey, &["--witness", &w1.key]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("freshness NOT checked"), "{out}");
    for extra in [
        vec!["--witness", &w1.key, "--checkpoint", &newer],
        vec!["--witness", &w1.key, "--fresh-from", &fresh_from],
    ] {
        let (code, out) = f.verify_with(&old, &f.vkey, &extra);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains("NOT FRESH: the report is made at the checkpoint of size 4, but ")
                && out.contains(" is of size 5: the 1 entries recorded since are not in it"),
            "{out}"
        );
    }
    let new = f.report(&f.db, "json", "new.json");
    let (code, out) = f.verify_with(
        &new,
        &f.vkey,
        &[
            "--witness",
            &w1.key,
            "--fresh-from",
            &fresh_from,
            "--max-age",
            "1h",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "fresh: the report's checkpoint (size 5) reaches the newest checkpoint witness witness.test/w1 cosigned (size 5)"
        ) && out.contains("fresh: the cosignatures counted were made within --max-age 1h"),
        "{out}"
    );
    assert!(!out.contains("freshness NOT checked"), "{out}");
}
