//! The main job as a test: the demo runs end to end on the test bed, and what it leaves is
//! checked as a security officer and an accreditation auditor would read it; then the two
//! guides are walked against it (`guides`).

mod guides;

use hexagone_demo::{DOCUMENTS, FOREIGN_BACKUP, MIRROR, report_model, run};

/// The French nodes the policy admits, and the inventory endpoints in France.
const FRENCH: [&str; 6] = [
    "ovh-par1-a",
    "ovh-par1-b",
    "outscale-par2-a",
    "ovh-par2-b",
    "minio-gra",
    "backup-outscale",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_deploys_audits_reports_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(dir.path()).await.unwrap_or_else(|e| panic!("{e:#}"));
    let withdrawn = outcome.withdrawn.as_str();

    // The accreditation auditor's verdict: the bundle verifies offline, with the witness's
    // cosignature, every verdict recomputed from its evidence.
    let (code, text) = &outcome.verify;
    assert_eq!(*code, 0, "{text}");
    assert!(
        text.contains("every verdict replayed from its evidence under \"Diffusion Restreinte\""),
        "{text}"
    );
    assert!(
        text.contains("last checkpoint cosigned by: witness.demo.hexagone.fr"),
        "{text}"
    );

    // One object checked alone: the foreign backup's entry, in the signed and cosigned log.
    let (_, code, text) = &outcome.proof;
    assert_eq!(*code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "object dump/2026-11-29 (store {}, class backup)",
            hexagone_demo::FOREIGN_BACKUP_STORE
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("on endpoint {FOREIGN_BACKUP}: violation under")),
        "{text}"
    );
    assert!(
        text.contains("checkpoint cosigned by: witness.demo.hexagone.fr"),
        "{text}"
    );

    // The security officer's report.
    let r = report_model(&outcome).unwrap();
    let objects = r["objects"].as_array().unwrap();
    let open = r["open_violations"].as_array().unwrap();
    let resolved = r["resolved_violations"].as_array().unwrap();
    let documents = objects.iter().filter(|o| o["class"] == "document").count();
    assert_eq!(
        documents, DOCUMENTS,
        "every stored document is in the report"
    );
    let volumes: Vec<_> = objects
        .iter()
        .filter(|o| o["store"] == "kubernetes")
        .collect();
    assert!(volumes.len() >= 10, "the Workplace's volumes: {volumes:?}");
    let images = objects.iter().filter(|o| o["class"] == "image").count();
    assert!(
        images >= 16,
        "every component's images are recorded: {images}"
    );
    // Nothing ever lived on the German, US or AWS Paris nodes, and today everything is in
    // France but the foreign backup.
    for o in objects {
        let subject = o["subject"].as_str().unwrap();
        if subject == FOREIGN_BACKUP {
            assert_eq!(o["verdict"], "violation", "{o}");
            assert_eq!(o["country"], "DE", "{o}");
        } else if o["class"] == "image" {
            // Every image is pulled through the site's mirror, declared and attested.
            assert_eq!(subject, MIRROR, "{o}");
            assert_eq!(o["verdict"], "compliant", "{o}");
        } else {
            assert!(FRENCH.contains(&subject), "{o}");
            assert_eq!(o["verdict"], "compliant", "{o}");
            assert_ne!(
                subject, withdrawn,
                "a volume stayed on the withdrawn node: {o}"
            );
        }
    }
    // The withdrawn attestation shows as violations on that node, resolved: the volumes moved
    // to a French node, the pods there were deleted (recorded as removed; their replacements
    // are new pods on French nodes) or came back on one.
    let on_withdrawn: Vec<_> = resolved
        .iter()
        .filter(|v| v["subject"] == withdrawn)
        .collect();
    assert!(!on_withdrawn.is_empty(), "{resolved:?}");
    for v in &on_withdrawn {
        let reasons = v["reasons"].to_string();
        assert!(reasons.contains("no NodeAttestation names the node"), "{v}");
        assert!(v["since"].as_str().unwrap() <= v["last_seen"].as_str().unwrap());
        // A pod of a Deployment is deleted (its replacement is another pod); one of a
        // StatefulSet may come back under its name on a French node.
        let went = v["resolved"]["subject"].as_str().unwrap();
        let removed = v["class"] == "pod" && v["resolved"]["subject_kind"] == "removed";
        assert!(removed || FRENCH.contains(&went), "{v}");
    }
    for pod in [true, false] {
        assert!(
            on_withdrawn.iter().any(|v| (v["class"] == "pod") == pod),
            "a resolved violation of a {} on the withdrawn node: {on_withdrawn:?}",
            if pod { "pod" } else { "volume" }
        );
    }
    assert_eq!(
        resolved.len(),
        on_withdrawn.len(),
        "no other resolved violation: {resolved:?}"
    );
    // The foreign backup is the one open violation; its headline names its decisive reason.
    assert_eq!(open.len(), 1, "{open:?}");
    let backup = &open[0];
    assert_eq!(backup["subject"], FOREIGN_BACKUP, "{backup}");
    assert!(
        backup["reasons"]
            .to_string()
            .contains("address 88.198.0.1 is in DE"),
        "{backup}"
    );
    assert!(
        backup["headline"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{}.", backup["reasons"][0].as_str().unwrap())),
        "{backup}"
    );

    // The page a person opens.
    let html = std::fs::read_to_string(&outcome.report_html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") || html.starts_with("<!doctype html>"));
    assert!(html.contains(FOREIGN_BACKUP));
    let summary = hexagone_demo::summary(&outcome);
    assert!(summary.contains("verify exit 0"), "{summary}");

    // The security officer's and the auditor's guides, every command block they hold that
    // needs no cluster, run against what the main job left.
    guides::walk(&outcome);
}
