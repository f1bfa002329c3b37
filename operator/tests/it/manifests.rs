//! The shipped manifests as a person uses them, with kubectl from the control plane's pin:
//! `kubectl apply -k manifests/` installs everything, `kubectl explain` documents the Workplace
//! fields, the samples apply, `kubectl get workplaces` shows the printer columns, the API server
//! refuses an unknown component, and the operator's Deployment passes the restricted Pod
//! Security Standard its namespace enforces.

use std::path::{Path, PathBuf};
use std::process::Output;

use hexagone_testbed::ControlPlane;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Deserialize as _;

use crate::util::{self, OFFICERS, eventually};

const NAMESPACE: &str = "hexagone-system";
const DEPLOYMENT: &str = "hexagone-operator";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The stdout of a kubectl run that must succeed; otherwise an error with all it said.
fn succeeded(what: &str, output: &Output) -> anyhow::Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "kubectl {what}: exited with {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Text with every run of whitespace made one space: kubectl wraps descriptions at its own
/// width, which a test should not depend on.
fn squashed(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The cells of a `kubectl get` row, cut where the header's columns start: a blank cell (a
/// printer column whose path is not set yet) would vanish if the row were split on whitespace.
fn cells<'a>(header: &str, row: &'a str) -> Vec<&'a str> {
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts
                .get(n + 1)
                .copied()
                .unwrap_or(row.len())
                .min(row.len());
            row.get(start.min(end)..end).unwrap_or_default().trim()
        })
        .collect()
}

/// Every YAML document of a file, as JSON values.
fn documents(path: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| Ok(serde_json::to_value(yaml_serde::Value::deserialize(doc)?)?))
        .filter(|v: &anyhow::Result<serde_json::Value>| !matches!(v, Ok(serde_json::Value::Null)))
        .collect()
}

/// The operator's test bed installs what the kustomization ships (the guard on the operator's
/// identity included), the auditor's directory aside: the operator's tests run against the
/// shipped admission, not a copy of it.
#[test]
fn the_test_bed_installs_what_the_kustomization_ships() -> anyhow::Result<()> {
    let kustomization = documents(&repo().join("manifests/kustomization.yaml"))?;
    let shipped: Vec<String> = kustomization[0]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .filter(|r| *r != "auditor")
        .map(|r| format!("manifests/{r}"))
        .collect();
    assert_eq!(shipped, util::INSTALLED);
    assert!(shipped.contains(&"manifests/admission/operator.yaml".to_owned()));
    Ok(())
}

/// `(kind, name)` of every object the kustomization lists, read from its files.
fn kustomized_objects() -> anyhow::Result<Vec<(String, String)>> {
    let mut objects = Vec::new();
    kustomized_into(&repo().join("manifests"), &mut objects)?;
    Ok(objects)
}

/// The objects of the kustomization in `dir`, its resource directories included.
fn kustomized_into(dir: &Path, objects: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    let kustomization = documents(&dir.join("kustomization.yaml"))?;
    let resources = kustomization[0]["resources"].as_array().ok_or_else(|| {
        anyhow::anyhow!("{}/kustomization.yaml lists no resources", dir.display())
    })?;
    for file in resources {
        let path = dir.join(file.as_str().unwrap_or_default());
        if path.is_dir() {
            kustomized_into(&path, objects)?;
            continue;
        }
        for doc in documents(&path)? {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            anyhow::ensure!(
                !kind.is_empty() && !name.is_empty(),
                "{}: object without kind or name",
                path.display()
            );
            objects.push((kind, name));
        }
    }
    Ok(())
}

/// The description of `spec.<field>` in the shipped Workplace CRD.
fn crd_description(field: &str) -> anyhow::Result<String> {
    let crd = documents(&repo().join("manifests/crds/workplaces.yaml"))?;
    let description = crd[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"][field]["description"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the Workplace CRD has no description of spec.{field}"))?;
    Ok(squashed(description))
}

/// A path as a kubectl argument (the repository and the temporary directory have UTF-8 paths).
fn utf8(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow::anyhow!("not a UTF-8 path: {}", path.display()))
}

/// Writes `yaml` to `name` under `dir` for `kubectl apply -f`.
fn manifest(dir: &Path, name: &str, yaml: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, yaml)?;
    Ok(path)
}

fn workplace_yaml(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: hexagone.fr/v1alpha1\nkind: Workplace\nmetadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  policy: dr\n  profile: users500\n  domain: intranet.example.fr\n{extra_spec}"
    )
}

#[tokio::test]
async fn kubectl_apply_k_installs_the_manifests_as_documented() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    // Not util::start: installing the manifests is what this test is about. One control plane
    // for every step, each building on what apply -k installed.
    let bed = ControlPlane::start().await?;
    let scratch = tempfile::tempdir()?;
    let scratch = scratch.path();
    apply_kustomization(&bed).await?;
    explain_workplace(&bed).await?;
    let workplaces = apply_samples(&bed).await?;
    printer_columns(&bed, scratch, workplaces).await?;
    unknown_component_refused(&bed, scratch).await?;
    restricted_deployment(&bed, scratch).await
}

/// `kubectl apply -k manifests/` creates every object the kustomization lists, and nothing
/// else, and the CRDs become Established.
async fn apply_kustomization(bed: &ControlPlane) -> anyhow::Result<()> {
    let manifests = repo().join("manifests");
    let applied = bed.kubectl(["apply", "-k", utf8(&manifests)?]).await?;
    let out = succeeded("apply -k manifests/", &applied)?;
    let created: Vec<&str> = out.lines().filter(|l| l.ends_with(" created")).collect();
    let objects = kustomized_objects()?;
    assert_eq!(
        created.len(),
        objects.len(),
        "objects {objects:?}, kubectl said:\n{out}"
    );
    for (kind, name) in &objects {
        assert!(
            created
                .iter()
                .any(|l| l.ends_with(&format!("/{name} created"))),
            "{kind} {name} not created; kubectl said:\n{out}"
        );
    }
    // The Deployment is admitted without a Pod Security warning (restricted_deployment shows
    // it would fire).
    let warnings = stderr(&applied);
    assert!(
        !warnings.contains("would violate PodSecurity"),
        "{warnings}"
    );

    for crd in ["localitypolicies", "nodeattestations", "workplaces"] {
        succeeded(
            "wait for the CRDs",
            &bed.kubectl([
                "wait",
                "--for=condition=Established",
                "--timeout=90s",
                &format!("crd/{crd}.hexagone.fr"),
            ])
            .await?,
        )?;
    }
    Ok(())
}

/// `kubectl explain workplace.spec` reads the published schema: its field descriptions are
/// the CRD's.
async fn explain_workplace(bed: &ControlPlane) -> anyhow::Result<()> {
    let explained = eventually("kubectl explain workplace.spec", || async {
        let output = bed
            .kubectl(["explain", "workplace.spec"])
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && text.contains("FIELDS:") {
            Ok(text)
        } else {
            Err(format!("{text}{}", stderr(&output)))
        }
    })
    .await?;
    let text = squashed(&explained);
    assert!(text.contains("KIND: Workplace"), "{explained}");
    assert!(text.contains("FIELD: spec <Object>"), "{explained}");
    assert!(
        text.contains("enum: users500, users5000, users50000"),
        "spec.profile's enum missing:\n{explained}"
    );
    for field in ["policy", "profile", "domain"] {
        assert!(
            text.contains(&format!("{field} <string> -required-")),
            "spec.{field} not listed as a required string:\n{explained}"
        );
        let description = crd_description(field)?;
        assert!(
            text.contains(&description),
            "description of spec.{field} missing ({description}):\n{explained}"
        );
    }
    Ok(())
}

/// Every sample applies; a NodeAttestation as the security officer it is written by. Returns
/// `(namespace, name, profile)` of the Workplaces among them.
async fn apply_samples(bed: &ControlPlane) -> anyhow::Result<Vec<(String, String, String)>> {
    let manifests = repo().join("manifests");
    let mut samples: Vec<PathBuf> = std::fs::read_dir(manifests.join("samples"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    samples.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    samples.sort();
    assert!(!samples.is_empty(), "no sample in manifests/samples");
    let mut workplace_samples = Vec::new();
    for sample in &samples {
        let docs = documents(sample)?;
        let kinds: Vec<&str> = docs
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or_default())
            .collect();
        let args = ["apply", "-f", utf8(sample)?];
        let output = if kinds.contains(&"NodeAttestation") {
            bed.kubectl_as("rssi@ministere.example.fr", Some(OFFICERS), args)
                .await?
        } else {
            bed.kubectl(args).await?
        };
        let out = succeeded(&format!("apply -f {}", sample.display()), &output)?;
        assert_eq!(
            out.lines().filter(|l| l.ends_with(" created")).count(),
            docs.len(),
            "{}: {out}",
            sample.display()
        );
        for doc in docs.iter().filter(|d| d["kind"] == "Workplace") {
            let ns = doc["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let profile = doc["spec"]["profile"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            workplace_samples.push((ns, name, profile));
        }
    }
    Ok(workplace_samples)
}

/// `kubectl get workplaces` shows the printer columns; without a Workplace sample, for a
/// minimal one.
async fn printer_columns(
    bed: &ControlPlane,
    scratch: &Path,
    mut workplace_samples: Vec<(String, String, String)>,
) -> anyhow::Result<()> {
    if workplace_samples.is_empty() {
        let minimal = manifest(scratch, "minimal.yaml", &workplace_yaml("intranet", ""))?;
        succeeded(
            "apply a minimal Workplace",
            &bed.kubectl(["apply", "-f", utf8(&minimal)?]).await?,
        )?;
        workplace_samples.push(("default".into(), "intranet".into(), "users500".into()));
    }
    let listed = succeeded(
        "get workplaces",
        &bed.kubectl(["get", "workplaces", "-A"]).await?,
    )?;
    let mut lines = listed.lines();
    let header = lines.next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "SOVEREIGN",
            "PROFILE",
            "NODES",
            "AGE"
        ],
        "{listed}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|row| cells(header, row)).collect();
    assert_eq!(rows.len(), workplace_samples.len(), "{listed}");
    for (ns, name, profile) in &workplace_samples {
        let row = rows
            .iter()
            .find(|r| r[0] == ns && r[1] == name)
            .ok_or_else(|| anyhow::anyhow!("{ns}/{name} not listed:\n{listed}"))?;
        // No operator runs here: READY, SOVEREIGN and NODES are blank, PROFILE is the spec's.
        assert_eq!(row[4], profile, "{listed}");
        assert!(
            row[6].starts_with(|c: char| c.is_ascii_digit()),
            "AGE of {ns}/{name}: {listed}"
        );
    }
    Ok(())
}

/// The CEL rule on components refuses an unknown one at apply time, with its message; the same
/// Workplace with a known component passes, so the component is what is refused.
async fn unknown_component_refused(bed: &ControlPlane, scratch: &Path) -> anyhow::Result<()> {
    let known = manifest(
        scratch,
        "known.yaml",
        &workplace_yaml("collab", "  components:\n    jitsi-jvb: {replicas: 2}\n"),
    )?;
    let unknown = manifest(
        scratch,
        "unknown.yaml",
        &workplace_yaml("collab", "  components:\n    sharepoint: {}\n"),
    )?;
    let accepted = succeeded(
        "apply --dry-run=server a known component",
        &bed.kubectl(["apply", "--dry-run=server", "-f", utf8(&known)?])
            .await?,
    )?;
    assert!(accepted.contains("(server dry run)"), "{accepted}");
    let refused = bed
        .kubectl(["apply", "--dry-run=server", "-f", utf8(&unknown)?])
        .await?;
    let why = stderr(&refused);
    assert!(
        !refused.status.success(),
        "sharepoint accepted: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(
        why.contains("spec.components") && why.contains("unknown component"),
        "{why}"
    );
    let absent = bed
        .kubectl(["get", "workplace", "collab", "-n", "default"])
        .await?;
    assert!(
        !absent.status.success() && stderr(&absent).contains("NotFound"),
        "a dry run persisted collab"
    );
    Ok(())
}

/// The operator's Deployment, read back, runs under the restricted Pod Security Standard its
/// namespace enforces: non-root, no capabilities, no privilege escalation, the runtime's seccomp
/// profile.
async fn restricted_deployment(bed: &ControlPlane, scratch: &Path) -> anyhow::Result<()> {
    let deployment = Api::<Deployment>::namespaced(bed.client(), NAMESPACE)
        .get(DEPLOYMENT)
        .await?;
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .ok_or_else(|| anyhow::anyhow!("Deployment {DEPLOYMENT} has no pod template"))?;
    let pod_context = pod.security_context.clone().unwrap_or_default();
    assert!(!pod.containers.is_empty());
    for c in &pod.containers {
        let ctx = c.security_context.clone().unwrap_or_default();
        let non_root = ctx.run_as_non_root.or(pod_context.run_as_non_root);
        assert_eq!(non_root, Some(true), "container {}: runAsNonRoot", c.name);
        let seccomp = ctx
            .seccomp_profile
            .or(pod_context.seccomp_profile.clone())
            .map(|p| p.type_);
        assert_eq!(
            seccomp.as_deref(),
            Some("RuntimeDefault"),
            "container {}: seccompProfile",
            c.name
        );
        let dropped = ctx.capabilities.and_then(|c| c.drop).unwrap_or_default();
        assert_eq!(dropped, ["ALL"], "container {}: capabilities.drop", c.name);
        assert_eq!(
            ctx.allow_privilege_escalation,
            Some(false),
            "container {}: allowPrivilegeEscalation",
            c.name
        );
    }
    // And the namespace's enforce label admits its pod: the ReplicaSet controller made one
    // (no node runs it here, Pending is enough).
    let pods = Api::<Pod>::namespaced(bed.client(), NAMESPACE);
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/name={DEPLOYMENT}"));
    eventually("the operator's pod admitted", || async {
        let list = pods.list(&selector).await.map_err(|e| e.to_string())?;
        if list.items.is_empty() {
            Err("no pod yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await?;
    // The warning checked absent above does fire in that namespace for a bare pod template.
    let bare = manifest(
        scratch,
        "bare.json",
        r#"{"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bare", "namespace": "hexagone-system"},
            "spec": {"selector": {"matchLabels": {"app": "bare"}},
              "template": {"metadata": {"labels": {"app": "bare"}},
                "spec": {"containers": [{"name": "bare", "image": "bare:1"}]}}}}"#,
    )?;
    let bare_run = bed
        .kubectl(["apply", "--dry-run=server", "-f", utf8(&bare)?])
        .await?;
    succeeded("apply --dry-run=server a bare Deployment", &bare_run)?;
    assert!(
        stderr(&bare_run).contains("would violate PodSecurity \"restricted:latest\""),
        "{}",
        stderr(&bare_run)
    );
    Ok(())
}
