//! The auditor judges observations itself: `append` takes facts (which object, on which node
//! or endpoint), judges them with the platform's locality engine under its policy and records
//! the engine's evidence; `verify --policy` replays every verdict from its recorded evidence.
//! Attacks first: a line bringing its own verdict, and the key holder sealing a verdict its
//! evidence does not give.

use std::path::{Path, PathBuf};

use hexagone_auditor::ledger::entry::{Assessment, Body, Entry, Observation, Verdict};

use crate::util::{keygen, node_line, policy, run, run_ok};

const DR: &str = "france-diffusion-restreinte";

/// A ledger directory with a key and an attestation file for the node `gra-3`.
struct Setup {
    dir: tempfile::TempDir,
    key: PathBuf,
    vkey: String,
    db: String,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, vkey) = keygen(dir.path(), "k");
        std::fs::write(
            dir.path().join("attestations.yaml"),
            "apiVersion: v1
kind: List
items:
- apiVersion: hexagone.fr/v1alpha1
  kind: NodeAttestation
  metadata: {name: gra-3}
  spec: {nodeName: gra-3, providerID: 'ovh://gra/3', country: FR, hostingCompany: OVH SAS,
         site: Gravelines GRA3, basis: contract, attestedBy: rssi@ministere.example.fr,
         validUntil: '2099-01-01T00:00:00Z'}
",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("inventory.yaml"),
            "- name: backup-gra
  addresses: [37.59.0.1]
  attestation: {country: FR, hostingCompany: OVH SAS, site: Gravelines, basis: contract,
                attestedBy: rssi@ministere.example.fr, validUntil: '2099-01-01T00:00:00Z'}
- name: s3-gra
  addresses: [51.38.5.5]
  region: gra
  attestation: {country: FR, hostingCompany: OVH SAS, site: Gravelines, basis: contract,
                attestedBy: rssi@ministere.example.fr, validUntil: '2099-01-01T00:00:00Z'}
- name: s3-gra-unattested
  addresses: [51.38.7.7]
  region: gra
",
        )
        .unwrap();
        let db = format!("sqlite:{}", dir.path().join("l.sqlite").display());
        Setup { dir, key, vkey, db }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// Runs `append` under `policy_name` with the attestations and the inventory.
    fn append(&self, policy_name: &str, input: &str) -> std::process::Output {
        run(
            &[
                "append",
                "--policy",
                &policy(policy_name),
                "--attestations",
                &self.path("attestations.yaml"),
                "--inventory",
                &self.path("inventory.yaml"),
                "--db",
                &self.db,
                "--key",
                self.key.to_str().unwrap(),
            ],
            Some(input),
        )
    }

    /// `append` as above, which must exit 0.
    fn append_ok(&self, policy_name: &str, input: &str) {
        let out = self.append(policy_name, input);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Exports the ledger; returns the bundle path and its entries.
    fn export(&self) -> (String, Vec<Entry>) {
        let out = self.path("bundle.jsonl");
        run_ok(&["export", "--db", &self.db, "--out", &out], None);
        let entries = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("{\"entry\":"))
            .map(|e| Entry::decode(&e.as_bytes()[..e.len() - 1]).unwrap())
            .collect();
        (out, entries)
    }

    /// Appends `forged` with the key, as whoever holds it can: sealed, chained and signed.
    async fn sign_as_key_holder(&self, forged: Observation) {
        let key = hexagone_auditor::keyfile::load(&self.key).unwrap();
        let ledger = hexagone_auditor::store::Ledger::open(&self.db)
            .await
            .unwrap();
        let (mut seq, _) = ledger.sequencer(key).await.unwrap();
        ledger
            .append(&mut seq, crate::util::NOW, vec![Body::Observation(forged)])
            .await
            .unwrap();
        ledger.close().await;
    }

    /// `verify BUNDLE --policy P...`: (exit code, stdout).
    fn verify(&self, bundle: &str, policies: &[&str]) -> (Option<i32>, String) {
        let mut args = vec!["verify", bundle, "--trust", &self.vkey];
        let paths: Vec<String> = policies.iter().map(|p| policy(p)).collect();
        for p in &paths {
            args.extend(["--policy", p]);
        }
        let out = run(&args, None);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

fn node(name: &str, provider: &str, region: &str, address: &str) -> String {
    format!(
        r#"{{"name":"{name}","providerID":"{provider}","labels":{{"topology.kubernetes.io/region":"{region}"}},"addresses":[{{"type":"Hostname","address":"{name}"}},{{"type":"ExternalIP","address":"{address}"}}]}}"#
    )
}

fn observation(e: &Entry) -> &Observation {
    match &e.body {
        Body::Observation(o) => o,
        other => panic!("not an observation: {other:?}"),
    }
}

/// `[verdict] subject: first reason`, for each entry.
fn verdicts(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            let l = &observation(e).locality;
            format!(
                "[{}] {}: {}",
                l.verdict.as_str(),
                l.subject,
                l.verdict.reasons().first().map_or("", String::as_str)
            )
        })
        .collect()
}

#[test]
fn the_auditor_judges_nodes_and_endpoints_under_diffusion_restreinte() {
    let s = Setup::new();
    let input = [
        // Attested, on a qualified French operator, address in France.
        node_line(0, &node("gra-3", "ovh://gra/3", "gra", "51.38.1.1")),
        // The same machine name but another machine: the attestation does not hold.
        node_line(1, &node("gra-3", "ovh://gra/99", "gra", "51.38.1.1")),
        // French labels, an address in France on a qualified operator, no attestation: the
        // node's own claims only.
        node_line(2, &node("gra-5", "ovh://gra/5", "gra", "51.38.1.2")),
        // A node whose address geolocates to Germany, with an attestation saying France.
        node_line(3, &node("gra-3", "ovh://gra/3", "gra", "5.9.0.1")),
        // One in the United States.
        node_line(4, &node("gra-3", "ovh://gra/3", "gra", "3.5.0.1")),
        // A backup target outside the cluster, from the inventory (no topology label, so not
        // enough sources for Diffusion Restreinte's quorum of 3).
        node_line(5, "null").replace(",\"node\":null", ",\"endpoint\":\"backup-gra\""),
        // One whose region is declared in the inventory: three sources, compliant; the same
        // without an attestation: the declared region and the address are the declarant's and
        // the network's word only.
        node_line(6, "null").replace(",\"node\":null", ",\"endpoint\":\"s3-gra\""),
        node_line(7, "null").replace(",\"node\":null", ",\"endpoint\":\"s3-gra-unattested\""),
    ]
    .join("\n");
    s.append_ok(DR, &input);
    let (bundle, entries) = s.export();
    assert_eq!(
        verdicts(&entries),
        [
            "[compliant] gra-3: ",
            "[violation] gra-3: NodeAttestation gra-3 names provider ID ovh://gra/3, but the node's is ovh://gra/99, which proves nothing",
            "[violation] gra-5: no NodeAttestation names the node, which proves nothing",
            "[violation] gra-3: address 5.9.0.1 is in DE, outside the allowed countries (FR)",
            "[violation] gra-3: address 3.5.0.1 is in US, outside the allowed countries (FR)",
            "[violation] backup-gra: the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing",
            "[compliant] s3-gra: ",
            "[violation] s3-gra-unattested: no NodeAttestation names the node, which proves nothing",
        ]
    );
    // The entry records the engine's evidence, the policy's digest and the databases.
    let dr = hexagone_platform::LocalityPolicy::from_file(Path::new(&policy(DR))).unwrap();
    let first = &observation(&entries[0]).locality;
    assert_eq!(first.policy.digest, dr.digest());
    assert_eq!(first.policy.classification, "Diffusion Restreinte");
    assert!(first.policy.extra_eu_control.is_some());
    assert_eq!(
        first
            .evidence
            .iter()
            .map(|e| format!(
                "{} {} {} {}",
                e.source.as_str(),
                e.controller.as_str(),
                e.country
                    .map_or("unknown".into(), |c| String::from_utf8_lossy(&c)
                        .into_owned()),
                e.assessment.as_str()
            ))
            .collect::<Vec<_>>(),
        [
            "topologyLabel node FR supports",
            "attestation securityOfficer FR supports",
            "address node FR supports",
            "networkOperator node FR supports",
        ]
    );
    assert_eq!(first.evidence[3].asn, Some(16276));
    assert_eq!(
        first
            .databases
            .iter()
            .map(|d| d.role.as_str())
            .collect::<Vec<_>>(),
        ["location", "registration", "AS number", "AS number"]
    );
    // Who attested is not in the ledger (personal data), only a pseudonym.
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(!text.contains("rssi@"), "the ledger names a person");
    assert!(text.contains(&hexagone_auditor::judge::pseudonym(
        "rssi@ministere.example.fr"
    )));
    // An honest ledger replays under its policy.
    let (code, out) = s.verify(&bundle, &[DR]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("every verdict replayed from its evidence under \"Diffusion Restreinte\""),
        "{out}"
    );
    assert!(
        out.contains("verdicts: 2 compliant, 6 violation, 0 unknown"),
        "{out}"
    );
}

#[test]
fn the_inventory_and_attestations_make_an_endpoint_compliant_under_the_standard_policy() {
    let s = Setup::new();
    let line = node_line(0, "null");
    let input = [
        line.replace(",\"node\":null", ",\"endpoint\":\"backup-gra\""),
        line.replace(",\"node\":null", ",\"endpoint\":\"37.59.0.1\""),
        line.replace(",\"node\":null", ",\"endpoint\":\"8.8.8.8\""),
    ]
    .join("\n");
    s.append_ok("france-standard", &input);
    let (bundle, entries) = s.export();
    assert_eq!(
        verdicts(&entries),
        [
            "[compliant] backup-gra: ",
            "[compliant] backup-gra: ",
            "[violation] 8.8.8.8: address 8.8.8.8 is in US, outside the allowed countries (FR)",
        ]
    );
    assert!(
        observation(&entries[0])
            .locality
            .evidence
            .iter()
            .filter(|e| e.source.as_str() == "address")
            .all(|e| e.controller.as_str() == "neither")
    );
    let (code, out) = s.verify(&bundle, &["france-standard"]);
    assert_eq!(code, Some(0), "{out}");
    let out = s.append(
        "france-standard",
        &line.replace(",\"node\":null", ",\"endpoint\":\"backup.example.com\""),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "line 1: endpoint \"backup.example.com\" is not in the inventory and is not an IP address"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A collector (or the operator) that sends its own verdict is refused, naming the line and
/// the field, and nothing of its batch is written.
#[test]
fn a_line_carrying_a_verdict_is_refused_and_nothing_is_written() {
    let s = Setup::new();
    let good = node_line(0, &node("gra-3", "ovh://gra/3", "gra", "51.38.1.1"));
    let judged = node_line(1, &node("gra-3", "ovh://gra/3", "gra", "5.9.0.1")).replacen(
        '{',
        "{\"verdict\":\"compliant\",",
        1,
    );
    let out = s.append(DR, &format!("{good}\n{judged}\n"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: field `verdict`: an observation carries facts only"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ack"));
    let out = run(
        &["export", "--db", &s.db, "--out", &s.path("b.jsonl")],
        None,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exported 0 entries")
            || String::from_utf8_lossy(&out.stderr).contains("empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The old input shape (evidence, verdict, policy) is refused the same way.
    let old = r#"{"store":"minio/documents","class":"document","object":"o","content":"abababababababababababababababababababababababababababababababab","evidence":[{"source":"geolocation","country":"FR"}],"verdict":"compliant","policy":"france-only","policy_version":"3"}"#;
    let out = s.append(DR, old);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1: field `verdict`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whoever holds the key (or rewrites the database and re-seals) records "compliant" for a
/// node in Germany, with every evidence marked as supporting so the entry is consistent on its
/// face: the structural verification passes, `verify --policy` judges the recorded facts again
/// and names the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_its_evidence_does_not_give_fails_verify_policy() {
    let s = Setup::new();
    let input = [
        node_line(0, &node("gra-3", "ovh://gra/3", "gra", "51.38.1.1")),
        node_line(1, &node("gra-3", "ovh://gra/3", "gra", "5.9.0.1")),
    ]
    .join("\n");
    assert_eq!(s.append(DR, &input).status.code(), Some(0));
    let (_, entries) = s.export();
    let mut forged = observation(&entries[1]).clone();
    assert_eq!(forged.locality.verdict.as_str(), "violation");
    for e in std::sync::Arc::make_mut(&mut forged.locality.evidence) {
        if matches!(e.assessment, Assessment::Contradicts(_)) {
            e.assessment = Assessment::Supports;
        }
    }
    forged.locality.verdict = Verdict::Compliant;
    let forged = Observation::new(forged.object, forged.content, forged.locality)
        .expect("consistent on its face");
    s.sign_as_key_holder(forged).await;
    let (bundle, entries) = s.export();
    assert_eq!(entries.len(), 3);
    let (code, out) = s.verify(&bundle, &[]);
    assert_eq!(code, Some(0), "the structure is sound: {out}");
    let (code, out) = s.verify(&bundle, &[DR]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "entry 2: the observation does not replay: recorded verdict compliant, but its evidence judged again under \"Diffusion Restreinte\" gives violation"
        ),
        "{out}"
    );
}

/// A policy whose rules differ from the recorded one (another digest) is reported for the
/// first entry judged under the recorded one; both given, each entry finds its own.
#[test]
fn a_policy_with_another_digest_is_reported() {
    let s = Setup::new();
    let line = node_line(0, &node("gra-3", "ovh://gra/3", "gra", "51.38.1.1"));
    assert_eq!(s.append(DR, &line).status.code(), Some(0));
    assert_eq!(
        s.append(
            "france-standard",
            &node_line(1, &node("scw-1", "scw://1", "fr-par", "51.15.0.1"))
        )
        .status
        .code(),
        Some(0)
    );
    let (bundle, _) = s.export();
    let (code, out) = s.verify(&bundle, &["france-standard"]);
    assert_eq!(code, Some(1), "{out}");
    let dr = hexagone_platform::LocalityPolicy::from_file(Path::new(&policy(DR))).unwrap();
    assert!(
        out.contains(&format!(
            "entry 0: the observation does not replay: it was judged under policy \"Diffusion Restreinte\" with digest {}, and no policy given has that digest",
            dr.digest()
        )),
        "{out}"
    );
    // A rule changed in the file (another digest), same classification.
    let edited = s.path("dr-edited.yaml");
    std::fs::write(
        &edited,
        std::fs::read_to_string(policy(DR))
            .unwrap()
            .replace("quorum: 3", "quorum: 2"),
    )
    .unwrap();
    let out = run(
        &[
            "verify",
            &bundle,
            "--trust",
            &s.vkey,
            "--policy",
            &edited,
            "--policy",
            &policy("france-standard"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("entry 0: the observation does not replay: it was judged under policy \"Diffusion Restreinte\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (code, out) = s.verify(&bundle, &[DR, "france-standard"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("(1 observations), \"Standard (France)\""),
        "{out}"
    );
    // A policy no entry used is named as such, not counted among those replayed under.
    let (code, out) = s.verify(&bundle, &[DR, "france-standard", "eu-secnumcloud"]);
    assert_eq!(code, Some(0), "{out}");
    let replayed = out
        .lines()
        .find(|l| l.starts_with("every verdict replayed"))
        .unwrap_or_default();
    let unused = out
        .lines()
        .find(|l| l.ends_with("was given, but no entry was judged under it"))
        .unwrap_or_default();
    assert!(
        replayed.contains("Diffusion Restreinte") && !replayed.contains("SecNumCloud"),
        "{out}"
    );
    assert!(unused.contains("SecNumCloud"), "{out}");
}

/// Whoever holds the key records that a German address is in France, operated by a French
/// network: every fact, sentence and verdict consistent, so the verdict replays. `verify
/// --policy` looks the address facts up again in the databases the entry names (the bundled
/// ones, matched by SHA-256) and names the false fact; the honest entries are counted as checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_address_fact_that_replays_is_caught_against_the_named_databases() {
    let s = Setup::new();
    let line = node_line(0, &node("gra-3", "ovh://gra/3", "gra", "51.38.1.1"));
    assert_eq!(s.append(DR, &line).status.code(), Some(0));
    let (bundle, entries) = s.export();
    let (code, out) = s.verify(&bundle, &[DR]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "address facts: 1 observations looked up again in the databases they name, all the same"
        ),
        "{out}"
    );
    // The same facts, said of the German address.
    let text = entries[0].encode().replace("51.38.1.1", "5.9.0.1");
    let Body::Observation(forged) = Entry::decode(text.as_bytes()).unwrap().body else {
        unreachable!()
    };
    let forged = Observation::new(forged.object, forged.content, forged.locality)
        .expect("consistent on its face");
    s.sign_as_key_holder(forged).await;
    let (bundle, _) = s.export();
    let (code, out) = s.verify(&bundle, &[DR]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("entry 1: the observation does not replay: evidence")
            && out.contains("records address 5.9.0.1 in FR, but the databases it names give address 5.9.0.1 in DE"),
        "{out}"
    );
}

/// `append --latency`: round trips measured from a vantage the policy declares become the
/// node's latency evidence, recorded in the entry (every sample, the bound, the boundary data's
/// digest) and replayed by `verify --policy`; a measurement from a vantage the policy does not
/// declare is recorded too, and counts for nothing.
#[test]
fn append_records_latency_evidence_and_verify_replays_it() {
    let s = Setup::new();
    let policy = std::fs::read_to_string(policy(DR)).unwrap().replace(
        "requiredSources: [attestation, address]",
        "requiredSources: [attestation, address, latency]",
    ) + "vantagePoints:
  - {name: paris-1, site: Ministry data centre Paris, latitude: 48.8566, longitude: 2.3522,
     operatedBy: ministry SOC, attestedBy: RSSI visit report PV-2026-114}
";
    let policy_path = s.path("dr-latency.yaml");
    std::fs::write(&policy_path, policy).unwrap();
    let measurement = |vantage: &str, rtt: u32| {
        let m = hexagone_platform::latency::Measurement {
            address: "51.38.1.1".parse().unwrap(),
            port: 10250,
            measured_at: "2026-12-06T10:00:00.000Z".into(),
            round_trips: hexagone_platform::RoundTrips::new(vantage, 48.8566, 2.3522, vec![rtt])
                .unwrap(),
        };
        serde_json::to_string(&m).unwrap() + "\n"
    };
    std::fs::write(s.path("near.jsonl"), measurement("paris-1", 400)).unwrap();
    std::fs::write(s.path("rogue.jsonl"), measurement("rogue", 100)).unwrap();
    let gra3 = node("gra-3", "ovh://gra/3", "gra", "51.38.1.1");
    for (i, file) in ["near.jsonl", "rogue.jsonl"].into_iter().enumerate() {
        run_ok(
            &[
                "append",
                "--policy",
                &policy_path,
                "--attestations",
                &s.path("attestations.yaml"),
                "--latency",
                &s.path(file),
                "--db",
                &s.db,
                "--key",
                s.key.to_str().unwrap(),
            ],
            Some(&node_line(i as u64, &gra3)),
        );
    }
    let (bundle, entries) = s.export();
    let v = verdicts(&entries);
    assert_eq!(v[0], "[compliant] gra-3: ");
    assert!(v[1].starts_with("[violation] gra-3: "), "{v:?}");
    let latency = |e: &Entry| {
        observation(e)
            .locality
            .evidence
            .iter()
            .find(|x| x.source.as_str() == "latency")
            .cloned()
            .unwrap()
    };
    let near = latency(&entries[0]);
    assert_eq!(near.controller.as_str(), "physics");
    let fact = near.fact.to_value();
    assert_eq!(fact["measurements"][0]["rttUs"], serde_json::json!([400]));
    assert_eq!(fact["measurements"][0]["boundKm"], 60);
    assert_eq!(
        fact["boundaries"],
        hexagone_platform::latency::boundaries_digest()
    );
    assert!(
        near.sentence
            .ends_with("so within 60 km of it: that area lies in FR, an allowed country"),
        "{}",
        near.sentence
    );
    assert!(
        latency(&entries[1])
            .sentence
            .contains("vantage rogue is not declared by the policy"),
        "{}",
        latency(&entries[1]).sentence
    );
    // The report shows the node's bound (its latest latency evidence).
    let report = s.path("report.md");
    run_ok(
        &[
            "report",
            "--ledger",
            &s.db,
            "--key",
            s.key.to_str().unwrap(),
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2100-01-01T00:00:00Z",
            "--format",
            "md",
            "--out",
            &report,
        ],
        None,
    );
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(
        md.contains("## Round-trip bounds (latency evidence)")
            && md.contains("| node gra-3 | 51.38.1.1:10250 | rogue: 0.100 ms, 15 km | 15 km | inconclusive | 1 |"),
        "{md}"
    );
    // verify --policy judges both again from their recorded facts.
    let out = run(
        &[
            "verify",
            &bundle,
            "--trust",
            &s.vkey,
            "--policy",
            &policy_path,
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
