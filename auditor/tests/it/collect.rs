//! `serve --kubernetes` on the real control plane test bed: the auditor watches volumes,
//! claims, pods, nodes and NodeAttestations itself, with a read-only identity, and records
//! where each bound volume is — again when a volume moves or an attestation is withdrawn, never
//! twice for the same facts. Ends with `verify --policy` on the export.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hexagone_auditor::ledger::entry::{Body, Entry};
use hexagone_platform::k8s::NodeAttestation;
use hexagone_testbed::{ControlPlane, FakeNode};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::util::{bin, keygen, policy, run_ok};

const DR: &str = "france-diffusion-restreinte";
const NS: &str = "intranet";
const FR: &str = "ovh-gra-1";
const DE: &str = "hetzner-fsn-1";
/// The auditor's ServiceAccount, as the apiserver names it.
const AUDITOR: &str = "system:serviceaccount:hexagone-audit:hexagone-auditor";
/// How long the cluster and the collector get to converge.
const CONVERGE: Duration = Duration::from_secs(60);

/// The `serve` process; killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn apply<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let name = value["metadata"]["name"].as_str().unwrap().to_owned();
    api.patch(
        &name,
        &PatchParams::apply("hexagone-test").force(),
        &Patch::Apply(&value),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    hexagone_testbed::wait::until(what, CONVERGE, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The NodeAttestation CRD from `manifests/crds/`, applied and Established.
async fn install_crd(bed: &ControlPlane) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/crds/nodeattestations.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let value: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let crds = Api::<CustomResourceDefinition>::all(bed.client());
    apply(&crds, value).await;
    eventually("the NodeAttestation CRD is Established", || {
        let crds = crds.clone();
        async move {
            let crd = crds
                .get("nodeattestations.hexagone.fr")
                .await
                .map_err(|e| e.to_string())?;
            let ok = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            ok.then_some(()).ok_or_else(|| "not Established".to_owned())
        }
    })
    .await;
}

/// The auditor's ServiceAccount identity with the shipped RBAC (`manifests/auditor/`): it may
/// only read what the collector watches, and raise Events.
async fn read_only_kubeconfig(bed: &ControlPlane) -> std::path::PathBuf {
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/auditor/auditor.yaml"
    );
    let applied = bed.kubectl(["apply", "-f", manifest]).await.unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let path = bed
        .kubeconfig_as(AUDITOR, Some("system:serviceaccounts"))
        .unwrap();
    // The identity reads, and writes nothing but Events.
    let auditor = bed
        .client_as(AUDITOR, Some("system:serviceaccounts"))
        .await
        .unwrap();
    eventually("the auditor's identity may list PersistentVolumes", || {
        let pvs = Api::<PersistentVolume>::all(auditor.clone());
        async move {
            pvs.list(&Default::default())
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await;
    let refused = Api::<NodeAttestation>::all(auditor)
        .delete("anything", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 403),
        "{refused}"
    );
    path
}

/// A PersistentVolume bound (by the controller-manager) to claim `claim`, which carries
/// `labels`.
async fn volume(bed: &ControlPlane, claim: &str, labels: serde_json::Value) {
    let pv = format!("pv-{claim}");
    apply(
        &Api::<PersistentVolume>::all(bed.client()),
        json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "storageClassName": "", "hostPath": {"path": format!("/srv/{claim}")},
                "claimRef": {"namespace": NS, "name": claim}
            }
        }),
    )
    .await;
    apply(
        &Api::<PersistentVolumeClaim>::namespaced(bed.client(), NS),
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": NS, "labels": labels},
            "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}}
            }
        }),
    )
    .await;
    let pvs = Api::<PersistentVolume>::all(bed.client());
    eventually(&format!("{pv} is Bound"), || {
        let (pvs, pv) = (pvs.clone(), pv.clone());
        async move {
            let phase = pvs
                .get(&pv)
                .await
                .map_err(|e| e.to_string())?
                .status
                .and_then(|s| s.phase);
            (phase.as_deref() == Some("Bound"))
                .then_some(())
                .ok_or_else(|| format!("phase {phase:?}"))
        }
    })
    .await;
}

/// A pod on `node` using claim `claim` (retried while the namespace's default
/// ServiceAccount does not exist yet).
async fn pod(bed: &ControlPlane, name: &str, node: &str, claim: &str) {
    let pods = Api::<Pod>::namespaced(bed.client(), NS);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "app:1",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        }
    }))
    .unwrap();
    eventually(&format!("pod {name} created"), || {
        let (pods, pod) = (pods.clone(), pod.clone());
        async move {
            pods.create(&PostParams::default(), &pod)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
}

async fn delete_pod(bed: &ControlPlane, name: &str) {
    let pods = Api::<Pod>::namespaced(bed.client(), NS);
    pods.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually(&format!("pod {name} gone"), || {
        let pods = pods.clone();
        async move {
            match pods.get_opt(name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(_) => Err("still there".to_owned()),
            }
        }
    })
    .await;
}

/// The body of `GET path` on `addr`.
fn get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// Each recorded observation as `object class node verdict`, in ledger order.
fn recorded(db: &str, out: &std::path::Path) -> Vec<String> {
    run_ok(
        &["export", "--db", db, "--out", out.to_str().unwrap()],
        None,
    );
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("{\"entry\":"))
        .map(|e| Entry::decode(&e.as_bytes()[..e.len() - 1]).unwrap())
        .map(|e| match e.body {
            Body::Observation(o) => format!(
                "{} {} {} {}",
                o.object.id,
                o.object.class,
                o.locality.subject,
                o.locality.verdict.as_str()
            ),
            other => panic!("not an observation: {other:?}"),
        })
        .collect()
}

async fn wait_for(db: &str, dir: &std::path::Path, want: &[&str]) {
    let out = dir.join("poll.jsonl");
    eventually(&format!("the ledger holds {want:?}"), || {
        let got = recorded(db, &out);
        async move {
            if got.len() >= want.len() {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;
    assert_eq!(recorded(db, &out), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_records_where_each_volume_is_and_when_it_changes() {
    let bed = ControlPlane::start().await.unwrap();
    install_crd(&bed).await;
    bed.add_nodes(&[
        FakeNode::new(FR)
            .label("topology.kubernetes.io/region", "fr-par")
            .label("topology.kubernetes.io/zone", "fr-par-1")
            .external_ip("51.38.1.1".parse().unwrap()),
        FakeNode::new(DE)
            .label("topology.kubernetes.io/zone", "eu-central-1a")
            .external_ip("88.198.0.1".parse().unwrap()),
    ])
    .await
    .unwrap();
    let attestations = Api::<NodeAttestation>::all(bed.client());
    apply(
        &attestations,
        json!({
            "apiVersion": "hexagone.fr/v1alpha1", "kind": "NodeAttestation",
            "metadata": {"name": FR},
            "spec": {"nodeName": FR, "providerID": format!("kwok://{FR}"), "country": "FR",
                     "hostingCompany": "OVH SAS", "site": "Gravelines GRA1", "basis": "contract",
                     "attestedBy": "rssi@ministere.example.fr",
                     "validUntil": "2030-01-01T00:00:00Z"}
        }),
    )
    .await;
    apply(
        &Api::<Namespace>::all(bed.client()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await;
    // A claim of the catalog's search component (class search-index), and one no catalog
    // entry describes.
    volume(
        &bed,
        "data-search-0",
        json!({"app.kubernetes.io/name": "search"}),
    )
    .await;
    volume(&bed, "scratch", json!({})).await;
    pod(&bed, "search-0", FR, "data-search-0").await;
    pod(&bed, "batch", DE, "scratch").await;
    let kubeconfig = read_only_kubeconfig(&bed).await;

    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "k");
    let tokens = dir.path().join("tokens");
    crate::util::add_token(&tokens, "collector");
    let db = crate::util::fresh_sqlite(dir.path());
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--kubernetes",
            "--db",
            &db,
            "--key",
            key.to_str().unwrap(),
            "--policy",
            &policy(DR),
            "--tokens",
            tokens.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let serve = Serve(child);
    assert!(line.starts_with("serve listening on "), "{line:?}");

    let fr_ok = "volume/intranet/data-search-0 search-index ovh-gra-1 compliant";
    let de = "volume/intranet/scratch unknown hetzner-fsn-1 violation";
    wait_for(&db, dir.path(), &[fr_ok, de]).await;

    // The volume moves: its pod is deleted and comes back on the French node.
    delete_pod(&bed, "batch").await;
    pod(&bed, "batch-2", FR, "scratch").await;
    let moved = "volume/intranet/scratch unknown ovh-gra-1 compliant";
    wait_for(&db, dir.path(), &[fr_ok, de, moved]).await;

    // The security officer withdraws the attestation: both volumes on that node are now
    // violations under Diffusion Restreinte.
    attestations
        .delete(FR, &DeleteParams::default())
        .await
        .unwrap();
    let fr_gone = "volume/intranet/data-search-0 search-index ovh-gra-1 violation";
    let moved_gone = "volume/intranet/scratch unknown ovh-gra-1 violation";
    wait_for(&db, dir.path(), &[fr_ok, de, moved, fr_gone, moved_gone]).await;

    // The node's labels change: a fact about where both volumes are, recorded again.
    Api::<k8s_openapi::api::core::v1::Node>::all(bed.client())
        .patch(
            FR,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "fr-par-2"}}}),
            ),
        )
        .await
        .unwrap();
    let all = [fr_ok, de, moved, fr_gone, moved_gone, fr_gone, moved_gone];
    wait_for(&db, dir.path(), &all).await;

    // Each violation raised a Warning Event on its claim.
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(bed.client(), NS);
    let notes: Vec<String> = eventually("the violations' Events", || {
        let events = events.clone();
        async move {
            let notes: Vec<String> = events
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("LocalityViolation"))
                .map(|e| {
                    let r = e.regarding.unwrap_or_default();
                    format!(
                        "{} {} {}",
                        r.kind.unwrap_or_default(),
                        r.name.unwrap_or_default(),
                        e.note.unwrap_or_default()
                    )
                })
                .collect();
            if notes.len() >= 3 {
                Ok(notes)
            } else {
                Err(format!("{notes:?}"))
            }
        }
    })
    .await;
    for (claim, node, entry) in [
        ("scratch", DE, 1),
        ("data-search-0", FR, 3),
        ("scratch", FR, 4),
    ] {
        let want = format!(
            "PersistentVolumeClaim {claim} on node {node}: violation first recorded in ledger entry {entry}: "
        );
        assert!(
            notes.iter().any(|n| n.starts_with(&want)),
            "{want} not in {notes:?}"
        );
    }
    // A violation again on the same node is counted in the series of its first Event.
    assert_eq!(notes.len(), 3, "{notes:?}");
    // Events are raised after their entries are committed: wait for the last ones.
    let addr = line.trim().strip_prefix("serve listening on ").unwrap();
    let want = [
        "hexagone_auditor_collected_volumes_total 7",
        "hexagone_auditor_violation_events_total 5",
        "hexagone_auditor_event_errors_total 0",
    ];
    eventually("the collector's metrics", || {
        let metrics = get(addr, "/metrics");
        async move {
            match want.iter().find(|w| !metrics.lines().any(|l| l == **w)) {
                None => Ok(()),
                Some(w) => Err(format!("{w} not in {metrics}")),
            }
        }
    })
    .await;

    // Nothing changes: nothing more is recorded (the pods' status updates are not facts about
    // where the volumes are).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(recorded(&db, &dir.path().join("last.jsonl")), all);
    // SIGTERM stops the collector too: the sequencer drains and signs a final checkpoint.
    let mut serve = serve;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(serve.0.wait().unwrap().code(), Some(0), "{rest}");
    assert!(rest.starts_with("final checkpoint, size 7:"), "{rest}");
    drop(serve);

    let bundle = dir.path().join("bundle.jsonl");
    run_ok(
        &["export", "--db", &db, "--out", bundle.to_str().unwrap()],
        None,
    );
    let verified = run_ok(
        &[
            "verify",
            bundle.to_str().unwrap(),
            "--trust",
            &vkey,
            "--policy",
            &policy(DR),
        ],
        None,
    );
    assert!(verified.contains("valid: 7 entries"), "{verified}");
    assert!(
        verified.contains("verdicts: 2 compliant, 5 violation, 0 unknown"),
        "{verified}"
    );
    assert!(
        verified.contains("every verdict replayed from its evidence"),
        "{verified}"
    );
}
