//! `serve --kubernetes` on the real control plane test bed: the auditor watches volumes,
//! claims, pods, nodes, NodeAttestations and VolumeSnapshots itself, with a read-only
//! identity, and records where each bound volume and ready snapshot is — again when a volume
//! moves or an attestation is withdrawn, never twice for the same facts. Each test ends with
//! `verify --policy` on the export.

use std::io::BufRead as _;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hexagone_auditor::collect::snapshots::{VolumeSnapshot, VolumeSnapshotContent};
use hexagone_auditor::ledger::entry::{Body, Entry};
use hexagone_platform::k8s::{LocalityPolicyResource, NodeAttestation};
use hexagone_testbed::{ControlPlane, FakeNode};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
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
/// The longest a refused watch waits before it lists again: kube-runtime's default backoff
/// caps at 30 s and adds a jitter of up to as much.
const WATCH_RETRY: Duration = Duration::from_secs(60);

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

/// The CSI snapshot CRDs, vendored from kubernetes-csi/external-snapshotter
/// (`tests/testbed/crds/README.md`).
const SNAPSHOT_CRDS: [&str; 3] = [
    "volumesnapshotclasses",
    "volumesnapshotcontents",
    "volumesnapshots",
];

/// The CRD in `path` (relative to the repository), applied and Established.
async fn install_crd(bed: &ControlPlane, path: &str) {
    let path = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let value: serde_json::Value = yaml_serde::from_str(&text).unwrap();
    let name = value["metadata"]["name"].as_str().unwrap().to_owned();
    let crds = Api::<CustomResourceDefinition>::all(bed.client());
    apply(&crds, value).await;
    bed.crd_established(&name, CONVERGE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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

/// The auditor's identity without the right to list `resource` (the shipped ClusterRole with
/// that resource replaced by one it reads anyway), once the API server refuses it that listing:
/// its kubeconfig. `read_only_kubeconfig` gives the right back.
async fn without_listing<K>(bed: &ControlPlane, resource: &str, what: &str) -> std::path::PathBuf
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let roles = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(bed.client());
    let mut role = roles.get("hexagone-auditor").await.unwrap();
    for rule in role.rules.iter_mut().flatten() {
        rule.resources
            .iter_mut()
            .flatten()
            .for_each(|r| *r = r.replace(resource, "nodeattestations"));
    }
    roles
        .replace("hexagone-auditor", &PostParams::default(), &role)
        .await
        .unwrap();
    let identity = bed
        .client_as(AUDITOR, Some("system:serviceaccounts"))
        .await
        .unwrap();
    eventually(&format!("the auditor may no longer list {what}"), || {
        let api = Api::<K>::all(identity.clone());
        async move {
            match api.list(&Default::default()).await {
                Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
                other => Err(format!("{:?}", other.map(|l| l.items.len()))),
            }
        }
    })
    .await;
    bed.kubeconfig_as(AUDITOR, Some("system:serviceaccounts"))
        .unwrap()
}

/// The auditor restarted on its ledger as an identity that cannot list `resource` (of type
/// `K`, named `kinds` in the log): its first pass (the counts `first_pass` gives) and a later one record nothing (the
/// ledger still holds exactly `ledger_holds`), and the log says the kind is not watched.
async fn unwatched<K>(
    bed: &ControlPlane,
    dir: &std::path::Path,
    (db, key, vkey): (String, std::path::PathBuf, String),
    (resource, kinds): (&str, &str),
    ledger_holds: &[&str],
) -> (Auditor, (usize, usize, usize))
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let kubeconfig = without_listing::<K>(bed, resource, kinds).await;
    let auditor = Auditor::spawn(dir, db, key, vkey, &kubeconfig).await;
    let first = auditor.first_pass().await;
    a_later_pass(bed, &auditor.addr).await;
    assert_eq!(
        recorded(&auditor.db, &dir.join("unwatched.jsonl")).unwrap(),
        ledger_holds
    );
    let said = format!("{kinds} are not watched");
    assert!(auditor.log.lock().unwrap().contains(&said), "{said}");
    (auditor, first)
}

/// Waits until the ledger holds `n` entries, `what` recorded as removed by a pass that watched
/// a kind again: the collector looks for a kind it could not list every RESYNC (60 s), so two
/// of those are allowed.
async fn once_looked_again(db: &str, out: &std::path::Path, n: usize, what: &str) {
    hexagone_testbed::wait::until(
        &format!("{what} recorded as removed"),
        2 * CONVERGE + Duration::from_secs(30),
        || {
            let got = recorded(db, out);
            async move {
                match got? {
                    got if got.len() >= n => Ok(()),
                    got => Err(format!("{got:?}")),
                }
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The CSI driver named by the test's CSI volumes and snapshot contents (none runs).
const DRIVER: &str = "hostpath.csi.k8s.io";

/// A PersistentVolume bound (by the controller-manager) to claim `claim`, which carries
/// `labels`: a CSI volume with handle `csi` if given, else a hostPath volume.
async fn volume(bed: &ControlPlane, claim: &str, labels: serde_json::Value, csi: Option<&str>) {
    let source = match csi {
        Some(handle) => json!({"csi": {"driver": DRIVER, "volumeHandle": handle}}),
        None => json!({"hostPath": {"path": format!("/srv/{claim}")}}),
    };
    volume_from(bed, claim, labels, source).await;
}

/// A PersistentVolume with the volume source `source` (`{"nfs": {...}}`), bound to claim
/// `claim`, which carries `labels`.
async fn volume_from(
    bed: &ControlPlane,
    claim: &str,
    labels: serde_json::Value,
    source: serde_json::Value,
) {
    let pv = format!("pv-{claim}");
    let mut spec = json!({
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
        "storageClassName": "", "claimRef": {"namespace": NS, "name": claim}
    });
    for (k, v) in source.as_object().unwrap() {
        spec[k] = v.clone();
    }
    apply(
        &Api::<PersistentVolume>::all(bed.client()),
        json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": spec
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
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": IMAGE,
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        }
    });
    create_pod(bed, pod).await;
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

/// The body of `GET path` on `addr`, which must answer 200.
fn get(addr: &str, path: &str) -> String {
    let (status, body) = request(addr, "GET", path, "", "");
    assert_eq!(status, 200, "{body}");
    body
}

/// Each recorded observation as `object class node verdict`, in ledger order; `export`'s error
/// while it fails (an empty ledger cannot be exported).
fn recorded(db: &str, out: &std::path::Path) -> Result<Vec<String>, String> {
    let export = crate::util::run(
        &["export", "--db", db, "--out", out.to_str().unwrap()],
        None,
    );
    if !export.status.success() {
        return Err(String::from_utf8_lossy(&export.stderr).into_owned());
    }
    Ok(std::fs::read_to_string(out)
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
            Body::Removal { object, .. } => format!("{} {} removed", object.id, object.class),
            Body::Policy { object, digest, .. } => {
                format!("{} {} {digest}", object.id, object.class)
            }
            other => panic!("not an observation: {other:?}"),
        })
        .collect())
}

/// The images the ledger's entries name, in ledger order: `object reference image-ID` (`-`
/// for none reported).
fn named_images(db: &str, out: &std::path::Path) -> Vec<String> {
    run_ok(
        &["export", "--db", db, "--out", out.to_str().unwrap()],
        None,
    );
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("{\"entry\":"))
        .map(|e| Entry::decode(&e.as_bytes()[..e.len() - 1]).unwrap())
        .filter_map(|e| match e.body {
            Body::Observation(o) => {
                let i = o.image?;
                Some(format!(
                    "{} {} {}",
                    o.object.id,
                    i.reference,
                    i.image_id.as_deref().unwrap_or("-")
                ))
            }
            _ => None,
        })
        .collect()
}

async fn wait_for(db: &str, dir: &std::path::Path, want: &[&str]) {
    let out = dir.join("poll.jsonl");
    eventually(&format!("the ledger holds {want:?}"), || {
        let got = recorded(db, &out);
        async move {
            let got = got?;
            if got.len() >= want.len() {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;
    assert_eq!(recorded(db, &out).unwrap(), want);
}

/// The test bed with the NodeAttestation CRD, a French node the security officer attested and
/// a German one, and the namespace of the test's volumes.
async fn cluster() -> ControlPlane {
    let bed = ControlPlane::start().await.unwrap();
    install_crd(&bed, "manifests/crds/nodeattestations.yaml").await;
    install_crd(&bed, "manifests/crds/localitypolicies.yaml").await;
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
    apply(
        &Api::<NodeAttestation>::all(bed.client()),
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
    bed
}

/// The French node's `topology.kubernetes.io/zone` label set to `zone`.
async fn set_zone(bed: &ControlPlane, zone: &str) {
    Api::<k8s_openapi::api::core::v1::Node>::all(bed.client())
        .patch(
            FR,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}})),
        )
        .await
        .unwrap();
}

/// The collector's completed passes, from `/metrics`.
fn passes(addr: &str) -> u64 {
    get(addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix("hexagone_auditor_collector_passes_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Returns once the collector has completed a pass that started after this call: the French
/// node is annotated (a change that moves nothing) twice, and two more passes are awaited, so
/// the last one began after the first annotation whatever pass was running when it was made.
/// A positive signal that the cluster as it is now has been judged and committed, where a
/// sleep would only hope so.
async fn a_later_pass(bed: &ControlPlane, addr: &str) {
    let before = passes(addr);
    for (i, want) in [before + 1, before + 2].into_iter().enumerate() {
        Api::<k8s_openapi::api::core::v1::Node>::all(bed.client())
            .patch(
                FR,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"hexagone.test/poke": format!("{before}-{i}")}}}),
                ),
            )
            .await
            .unwrap();
        eventually("a later collector pass", || {
            let n = passes(addr);
            async move {
                if n >= want {
                    Ok(())
                } else {
                    Err(format!("{n} passes, waiting for {want}"))
                }
            }
        })
        .await;
    }
}

/// The security officer withdraws the French node's attestation.
async fn withdraw_attestation(bed: &ControlPlane) {
    Api::<NodeAttestation>::all(bed.client())
        .delete(FR, &DeleteParams::default())
        .await
        .unwrap();
}

/// `serve --kubernetes` with the auditor's read-only identity, on a fresh SQLite ledger.
struct Auditor {
    serve: Serve,
    stdout: std::io::BufReader<ChildStdout>,
    addr: String,
    db: String,
    /// The ledger's signing key file.
    key: std::path::PathBuf,
    /// The ledger's verifier key.
    vkey: String,
    /// Its standard error so far (also copied to the test's).
    log: Arc<Mutex<String>>,
}

impl Auditor {
    async fn start(bed: &ControlPlane, dir: &std::path::Path) -> Self {
        let (key, vkey) = keygen(dir, "k");
        let tokens = dir.join("tokens");
        crate::util::add_token(&tokens, "collector");
        let db = crate::util::fresh_sqlite(dir);
        Self::start_on(bed, dir, db, key, vkey).await
    }

    /// `serve --kubernetes` on the ledger `db` signed with `key`.
    async fn start_on(
        bed: &ControlPlane,
        dir: &std::path::Path,
        db: String,
        key: std::path::PathBuf,
        vkey: String,
    ) -> Self {
        let kubeconfig = read_only_kubeconfig(bed).await;
        Self::spawn(dir, db, key, vkey, &kubeconfig).await
    }

    /// `serve --kubernetes` on the ledger `db` signed with `key`, as the identity of
    /// `kubeconfig`.
    async fn spawn(
        dir: &std::path::Path,
        db: String,
        key: std::path::PathBuf,
        vkey: String,
        kubeconfig: &std::path::Path,
    ) -> Self {
        let tokens = dir.join("tokens");
        let inventory = dir.join("inventory.yaml");
        std::fs::write(&inventory, INVENTORY).unwrap();
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
                "--inventory",
                inventory.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let copy = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut log = copy.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let serve = Serve(child);
        let addr = line
            .trim()
            .strip_prefix("serve listening on ")
            .unwrap_or_else(|| panic!("{line:?}"))
            .to_owned();
        Self {
            serve,
            stdout,
            addr,
            db,
            key,
            vkey,
            log,
        }
    }

    /// Once the ledger holds `want`: exactly the violation Events `events` (object, node, entry)
    /// on objects of `kind` (a violation again on the same node is counted in its first Event's
    /// series), the collector's counts `[volumes, snapshots, Events]` in `/metrics` (Events are
    /// raised after their entries are committed), and after a later complete pass nothing more recorded.
    async fn settled(
        &self,
        bed: &ControlPlane,
        dir: &std::path::Path,
        kind: &str,
        events: &[(&str, &str, u64)],
        [volumes, snapshots, raised]: [u64; 3],
        want: &[&str],
    ) {
        let notes = violation_events(bed, kind, events.len()).await;
        for (name, node, entry) in events {
            let want = format!(
                "{name} on node {node}: violation first recorded in ledger entry {entry}: "
            );
            assert!(
                notes.iter().any(|n| n.starts_with(&want)),
                "{want} not in {notes:?}"
            );
        }
        assert_eq!(notes.len(), events.len(), "{notes:?}");
        let want_metrics = [
            format!("hexagone_auditor_collected_volumes_total {volumes}"),
            format!("hexagone_auditor_collected_snapshots_total {snapshots}"),
            format!("hexagone_auditor_violation_events_total {raised}"),
            "hexagone_auditor_event_errors_total 0".to_owned(),
        ];
        eventually("the collector's metrics", || {
            let metrics = get(&self.addr, "/metrics");
            let want = &want_metrics;
            async move {
                match want
                    .iter()
                    .find(|w| !metrics.lines().any(|l| l == w.as_str()))
                {
                    None => Ok(()),
                    Some(w) => Err(format!("{w} not in {metrics}")),
                }
            }
        })
        .await;
        a_later_pass(bed, &self.addr).await;
        assert_eq!(recorded(&self.db, &dir.join("last.jsonl")).unwrap(), want);
    }

    /// SIGTERM stops the collector too: the sequencer drains and signs a final checkpoint of
    /// `size`; then `verify --policy` replays every verdict of the export (`verdicts`: the
    /// expected counts line).
    /// Returns the ledger and its keys, to start again on them.
    fn stop_and_verify(
        mut self,
        dir: &std::path::Path,
        size: usize,
        verdicts: &str,
    ) -> (String, std::path::PathBuf, String) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.serve.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
        assert_eq!(self.serve.0.wait().unwrap().code(), Some(0), "{rest}");
        assert!(
            rest.starts_with(&format!("final checkpoint, size {size}:")),
            "{rest}"
        );
        let bundle = dir.join("bundle.jsonl");
        run_ok(
            &[
                "export",
                "--db",
                &self.db,
                "--out",
                bundle.to_str().unwrap(),
            ],
            None,
        );
        let verified = run_ok(
            &[
                "verify",
                bundle.to_str().unwrap(),
                "--trust",
                &self.vkey,
                "--policy",
                &policy(DR),
            ],
            None,
        );
        for want in [
            &format!("valid: {size} entries"),
            verdicts,
            "every verdict replayed from its evidence",
        ] {
            assert!(verified.contains(want), "{want} not in {verified}");
        }
        (self.db.clone(), self.key.clone(), self.vkey.clone())
    }

    /// Waits for the collector's first pass to report how many placements it found unchanged
    /// in the ledger and how many it records: `(total, unchanged, to record)`.
    async fn first_pass(&self) -> (usize, usize, usize) {
        let log = self.log.clone();
        eventually("the collector's first pass", || {
            let log = log.lock().unwrap().clone();
            async move {
                let line = log
                    .lines()
                    .find_map(|l| {
                        l.split_once("kubernetes: first pass: ")
                            .map(|(_, rest)| rest)
                    })
                    .ok_or_else(|| log.clone())?;
                let n: Vec<usize> = line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|w| w.parse().ok())
                    .collect();
                match n[..] {
                    [total, unchanged, to_record] => Ok((total, unchanged, to_record)),
                    _ => Err(line.to_owned()),
                }
            }
        })
        .await
    }
}

/// The `LocalityViolation` Events about objects of `kind`, as `name note`, once there are at
/// least `n`.
async fn violation_events(bed: &ControlPlane, kind: &str, n: usize) -> Vec<String> {
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(bed.client(), NS);
    eventually(&format!("{n} violation Events on {kind}s"), || {
        let events = events.clone();
        async move {
            let notes: Vec<String> = events
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("LocalityViolation"))
                .filter_map(|e| {
                    let r = e.regarding.unwrap_or_default();
                    (r.kind.as_deref() == Some(kind)).then(|| {
                        format!(
                            "{} {}",
                            r.name.unwrap_or_default(),
                            e.note.unwrap_or_default()
                        )
                    })
                })
                .collect();
            if notes.len() >= n {
                Ok(notes)
            } else {
                Err(format!("{notes:?}"))
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_records_where_each_volume_is_and_when_it_changes() {
    // No snapshot CRDs here: the collector records volumes without them.
    let bed = cluster().await;
    // A claim of the catalog's search component (class search-index), and one no catalog
    // entry describes.
    volume(
        &bed,
        "data-search-0",
        json!({"app.kubernetes.io/name": "search"}),
        None,
    )
    .await;
    volume(&bed, "scratch", json!({}), None).await;
    pod(&bed, "search-0", FR, "data-search-0").await;
    pod(&bed, "batch", DE, "scratch").await;
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(&bed, dir.path()).await;
    let db = auditor.db.clone();

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
    withdraw_attestation(&bed).await;
    let fr_gone = "volume/intranet/data-search-0 search-index ovh-gra-1 violation";
    let moved_gone = "volume/intranet/scratch unknown ovh-gra-1 violation";
    wait_for(&db, dir.path(), &[fr_ok, de, moved, fr_gone, moved_gone]).await;

    // The node's labels change: a fact about where both volumes are, recorded again.
    set_zone(&bed, "fr-par-2").await;
    let all = [fr_ok, de, moved, fr_gone, moved_gone, fr_gone, moved_gone];
    wait_for(&db, dir.path(), &all).await;

    // Each violation raised a Warning Event on its claim; 7 volume placements, 5 Events
    // raised (the pods' status updates are not facts about where the volumes are).
    auditor
        .settled(
            &bed,
            dir.path(),
            "PersistentVolumeClaim",
            &[
                ("scratch", DE, 1),
                ("data-search-0", FR, 3),
                ("scratch", FR, 4),
            ],
            [7, 0, 5],
            &all,
        )
        .await;
    // The missing snapshot kinds were reported once, and did not stop the collector.
    let log = auditor.log.lock().unwrap().clone();
    assert_eq!(
        log.matches("VolumeSnapshots are not watched").count(),
        1,
        "{log}"
    );
    let (db, key, vkey) = auditor.stop_and_verify(
        dir.path(),
        7,
        "verdicts: 2 compliant, 5 violation, 0 unknown",
    );

    // A restart on the same ledger records nothing: every placement is as its latest entry
    // says.
    let auditor = Auditor::start_on(&bed, dir.path(), db, key, vkey).await;
    assert_eq!(auditor.first_pass().await, (2, 2, 0));
    a_later_pass(&bed, &auditor.addr).await;
    assert_eq!(
        recorded(&auditor.db, &dir.path().join("r1.jsonl")).unwrap(),
        all
    );
    let (db, key, vkey) = auditor.stop_and_verify(
        dir.path(),
        7,
        "verdicts: 2 compliant, 5 violation, 0 unknown",
    );

    // What changed while the auditor was stopped is recorded at the next start: the node's zone
    // again (both volumes), and nothing else.
    set_zone(&bed, "fr-par-3").await;
    let auditor = Auditor::start_on(&bed, dir.path(), db, key, vkey).await;
    assert_eq!(auditor.first_pass().await, (2, 0, 2));
    let after: Vec<&str> = all.iter().copied().chain([fr_gone, moved_gone]).collect();
    wait_for(&auditor.db, dir.path(), &after).await;
    auditor.stop_and_verify(
        dir.path(),
        9,
        "verdicts: 2 compliant, 7 violation, 0 unknown",
    );
}

/// A network volume's bytes are on its server, not on the node mounting it: an NFS share the
/// inventory places in France is compliant though a German node mounts it, and an NFS share no
/// inventory entry places is a violation though the French node mounts it, its Event naming the
/// server. A kubelet's node cannot make a share abroad French by mounting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_records_a_network_volume_where_its_server_is() {
    let bed = cluster().await;
    let nfs = |server: &str| json!({"nfs": {"server": server, "path": "/exports/hexagone"}});
    volume_from(
        &bed,
        "data-search-0",
        json!({"app.kubernetes.io/name": "search"}),
        nfs("nfs.gouv.example"),
    )
    .await;
    volume_from(&bed, "scratch", json!({}), nfs("nfs.example.us")).await;
    pod(&bed, "search-0", DE, "data-search-0").await;
    pod(&bed, "batch", FR, "scratch").await;
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(&bed, dir.path()).await;
    let french = "volume/intranet/data-search-0 search-index nfs.gouv.example compliant";
    let abroad = "volume/intranet/scratch unknown nfs.example.us violation";
    wait_for(&auditor.db.clone(), dir.path(), &[french, abroad]).await;
    let notes = violation_events(&bed, "PersistentVolumeClaim", 1).await;
    assert!(
        notes[0].starts_with("scratch on storage server nfs.example.us: violation first recorded"),
        "{notes:?}"
    );
    auditor.stop_and_verify(
        dir.path(),
        2,
        "verdicts: 1 compliant, 1 violation, 0 unknown",
    );
}

/// The auditor's inventory: the site's registry mirror and its NFS server, in France, attested
/// like the French node (the test pods' images come from the mirror).
const INVENTORY: &str = "- name: registry.gouv.example
  addresses: [51.38.7.7]
  region: fr-par
  attestation: {country: FR, hostingCompany: OVH SAS, site: Gravelines GRA1, basis: contract,
                attestedBy: rssi@ministere.example.fr, validUntil: '2030-01-01T00:00:00Z'}
- name: nfs.gouv.example
  addresses: [51.38.7.8]
  region: fr-par
  attestation: {country: FR, hostingCompany: OVH SAS, site: Gravelines GRA1, basis: contract,
                attestedBy: rssi@ministere.example.fr, validUntil: '2030-01-01T00:00:00Z'}
";

/// The image of the test pods, from the site's registry mirror.
const IMAGE: &str = "registry.gouv.example/app:1";

/// Creates the pod `pod` (JSON), once the API server accepts it.
async fn create_pod(bed: &ControlPlane, pod: serde_json::Value) {
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let namespace = pod["metadata"]["namespace"].as_str().unwrap();
    let pods = Api::<Pod>::namespaced(bed.client(), namespace);
    let pod: Pod = serde_json::from_value(pod).unwrap();
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

/// A client of `user`, bound in the workplace namespace to `role` (a `ClusterRole` or a
/// `Role` there, by `kind`).
async fn bound(bed: &ControlPlane, user: &str, kind: &str, role: &str) -> kube::Client {
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": user, "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(bed.client(), NS)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    bed.client_as(user, None).await.unwrap()
}

/// A client of the workplace namespace's admin (user `carol`, the built-in `admin` role bound
/// there): a tenant.
async fn tenant_admin(bed: &ControlPlane) -> kube::Client {
    bound(bed, "carol", "ClusterRole", "admin").await
}

/// A pod without volumes on `node` in `namespace`, labelled part of a workplace or not.
async fn bare_pod(bed: &ControlPlane, namespace: &str, name: &str, node: &str, part_of: bool) {
    let labels = part_of.then(|| json!({"app.kubernetes.io/part-of": "hexagone-workplace"}));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node, "automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": IMAGE}]}
    });
    create_pod(bed, pod).await;
}

/// Class 5 of the operator's hostile review: a pod with no volume processes the workplace's
/// data where it runs. Every pod of a workplace's namespace is recorded where it runs, the
/// one its admin (a tenant) started there without the operator's labels too; pods of other
/// namespaces are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_records_where_every_pod_of_a_workplace_runs_labelled_or_not() {
    let bed = cluster().await;
    // A namespace-wide default deny: no pod of the namespace sends data anywhere, so this test
    // sees placements only (a pod no policy restricts is recorded as open to every address: the
    // next test; the operator's own egress policy selects only its labelled pods).
    network_policy(&bed, NS, "default-deny", json!([])).await;
    bare_pod(&bed, NS, "exo-0", FR, true).await;
    // Started in the workplace's namespace by its admin (a tenant), on the German node, no
    // labels, no volume: the placement the operator never sees.
    let miner_pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "miner", "namespace": NS},
        "spec": {"nodeName": DE, "automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": IMAGE}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(tenant_admin(&bed).await, NS)
        .create(&PostParams::default(), &miner_pod)
        .await
        .unwrap();
    // Outside any workplace: not the auditor's business.
    bare_pod(&bed, "default", "elsewhere", DE, false).await;
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(&bed, dir.path()).await;
    let ok = "pod/intranet/exo-0 pod ovh-gra-1 compliant";
    let miner = "pod/intranet/miner pod hetzner-fsn-1 violation";
    // Their images, from the site's mirror (recorded after the pods in a pass).
    let ok_image = "image/intranet/exo-0/app image registry.gouv.example compliant";
    let miner_image = "image/intranet/miner/app image registry.gouv.example compliant";
    let first = [ok, miner, ok_image, miner_image];
    wait_for(&auditor.db, dir.path(), &first).await;
    let notes = violation_events(&bed, "Pod", 1).await;
    assert!(
        notes.len() == 1
            && notes[0].starts_with(
                "miner on node hetzner-fsn-1: violation first recorded in ledger entry 1"
            ),
        "{notes:?}"
    );
    // The attestation withdrawn: the workplace's own pod on that node becomes a violation.
    withdraw_attestation(&bed).await;
    let ok_gone = "pod/intranet/exo-0 pod ovh-gra-1 violation";
    let withdrawn = [&first[..], &[ok_gone]].concat();
    wait_for(&auditor.db, dir.path(), &withdrawn).await;
    // The intruder deleted: recorded as removed, so its violation is resolved, not left open
    // for a pod that no longer exists.
    Api::<Pod>::namespaced(bed.client(), NS)
        .delete("miner", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let removed = "pod/intranet/miner pod removed";
    let miner_gone = [
        &withdrawn[..],
        &["image/intranet/miner/app image removed", removed],
    ]
    .concat();
    wait_for(&auditor.db, dir.path(), &miner_gone).await;
    let metrics = get(&auditor.addr, "/metrics");
    for want in [
        "hexagone_auditor_collected_pods_total 3",
        "hexagone_auditor_collected_removals_total 2",
    ] {
        assert!(metrics.contains(want), "{want} not in {metrics}");
    }
    let (db, key, vkey) = auditor.stop_and_verify(
        dir.path(),
        miner_gone.len(),
        "verdicts: 3 compliant, 2 violation, 0 unknown",
    );
    // A pod deleted while no auditor ran: the next start finds it standing in the ledger and
    // gone from the cluster, and records its removal; the intruder, removed already, is not
    // removed twice.
    Api::<Pod>::namespaced(bed.client(), NS)
        .delete("exo-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let auditor = Auditor::start_on(&bed, dir.path(), db, key, vkey).await;
    assert_eq!(auditor.first_pass().await, (0, 0, 0));
    let exo_removed = [
        &miner_gone[..],
        &[
            "image/intranet/exo-0/app image removed",
            "pod/intranet/exo-0 pod removed",
        ],
    ]
    .concat();
    wait_for(&auditor.db, dir.path(), &exo_removed).await;
    auditor.stop_and_verify(
        dir.path(),
        exo_removed.len(),
        "verdicts: 3 compliant, 2 violation, 0 unknown",
    );
}

/// Class 5 of the operator's hostile review: the images a workplace runs. Every container of
/// a workplace pod is recorded at the registry its image comes from, judged there: the site's
/// mirror that the inventory declares is compliant; Docker Hub, which nothing places, is a
/// violation with a Warning Event on the pod. The namespace's admin (a tenant) patching a
/// container's image, or adding an ephemeral container as `kubectl debug` does, is recorded as
/// well, each entry naming the image and, once the kubelet reports it for that image, the
/// digest pulled; a pod deleted takes its images with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_records_where_every_image_of_a_workplace_comes_from() {
    let bed = cluster().await;
    network_policy(&bed, NS, "default-deny", json!([])).await;
    create_pod(
        &bed,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "exo-0", "namespace": NS,
                         "labels": {"app.kubernetes.io/part-of": "hexagone-workplace"}},
            "spec": {"nodeName": FR, "automountServiceAccountToken": false,
                     "initContainers": [{"name": "init", "image": "busybox:1.36"}],
                     "containers": [{"name": "app", "image": IMAGE}]}
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(&bed, dir.path()).await;
    let pod = "pod/intranet/exo-0 pod ovh-gra-1 compliant";
    let app = "image/intranet/exo-0/app image registry.gouv.example compliant";
    let init = "image/intranet/exo-0/init image docker.io violation";
    wait_for(&auditor.db, dir.path(), &[pod, app, init]).await;
    let notes = violation_events(&bed, "Pod", 1).await;
    assert!(
        notes.len() == 1
            && notes[0].starts_with(
                "exo-0 image from registry docker.io: violation first recorded in ledger entry 2: "
            ),
        "{notes:?}"
    );
    // The workplace namespace's admin (the built-in `admin` role there) patches the pod, as
    // a tenant would; the kubelet of its node reports its status.
    let pods = Api::<Pod>::namespaced(tenant_admin(&bed).await, NS);
    let kubelet = Api::<Pod>::namespaced(bed.kubelet_client(FR).await.unwrap(), NS);
    // Another image from the same mirror: recorded again (other code), still compliant.
    pods.patch(
        "exo-0",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"containers": [
            {"name": "app", "image": "registry.gouv.example/app:2"}]}})),
    )
    .await
    .unwrap();
    wait_for(&auditor.db, dir.path(), &[pod, app, init, app]).await;
    // A debugging container added to the running pod, from another registry, by someone
    // granted `kubectl debug` there (the built-in `admin` role does not include
    // pods/ephemeralcontainers: the API server refuses the tenant).
    let debug = serde_json::json!({
        "metadata": {"name": "debugger", "namespace": NS},
        "rules": [{"apiGroups": [""], "resources": ["pods/ephemeralcontainers"],
                   "verbs": ["patch", "update"]},
                  {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    });
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(bed.client(), NS)
        .create(
            &PostParams::default(),
            &serde_json::from_value(debug).unwrap(),
        )
        .await
        .unwrap();
    let debugger_client = bound(&bed, "dave", "Role", "debugger").await;
    let refused = pods
        .patch_ephemeral_containers(
            "exo-0",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ephemeralContainers": [
                {"name": "debugger", "image": "ghcr.io/someone/tools:1"}]}})),
        )
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403),
        "{refused:?}"
    );
    Api::<Pod>::namespaced(debugger_client, NS)
        .patch_ephemeral_containers(
            "exo-0",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ephemeralContainers": [
            {"name": "debugger", "image": "ghcr.io/someone/tools:1"}]}})),
        )
        .await
        .unwrap();
    let debugger = "image/intranet/exo-0/debugger image ghcr.io violation";
    wait_for(&auditor.db, dir.path(), &[pod, app, init, app, debugger]).await;
    // The kubelet reports the digest it pulled (kwok's stages report none: the test writes
    // the status as a kubelet would). First the old container's, not yet replaced: recorded
    // again (the stamp changed) but naming no digest, since the status is of `app:1`; then
    // the new container's: recorded naming it.
    let old = format!("registry.gouv.example/app@sha256:{}", "cd".repeat(32));
    let digest = format!("registry.gouv.example/app@sha256:{}", "ab".repeat(32));
    let report = |image: &'static str, id: String| {
        let pods = kubelet.clone();
        async move {
            let mut status = pods.get("exo-0").await.unwrap().status.unwrap();
            for s in status.container_statuses.iter_mut().flatten() {
                if s.name == "app" {
                    s.image = image.to_owned();
                    s.image_id = id.clone();
                }
            }
            pods.patch_status(
                "exo-0",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"containerStatuses": status.container_statuses}})),
            )
            .await
            .unwrap();
        }
    };
    report("registry.gouv.example/app:1", old).await;
    wait_for(
        &auditor.db,
        dir.path(),
        &[pod, app, init, app, debugger, app],
    )
    .await;
    report("registry.gouv.example/app:2", digest.clone()).await;
    wait_for(
        &auditor.db,
        dir.path(),
        &[pod, app, init, app, debugger, app, app],
    )
    .await;
    // Each image entry names the image as the pod spec wrote it, and the digest pulled once
    // the kubelet reported it for that image.
    assert_eq!(
        named_images(&auditor.db, &dir.path().join("images.jsonl")),
        [
            "image/intranet/exo-0/app registry.gouv.example/app:1 -",
            "image/intranet/exo-0/init busybox:1.36 -",
            "image/intranet/exo-0/app registry.gouv.example/app:2 -",
            "image/intranet/exo-0/debugger ghcr.io/someone/tools:1 -",
            "image/intranet/exo-0/app registry.gouv.example/app:2 -",
            &format!("image/intranet/exo-0/app registry.gouv.example/app:2 {digest}"),
        ]
    );
    // An auditor checking the app's entry offline reads which image and digest it was.
    let proof = dir.path().join("app.proof");
    let (db, vkey) = (auditor.db.clone(), auditor.vkey.clone());
    let want = format!("image registry.gouv.example/app:2, pulled as {digest}");
    eventually("a proof of the app's latest image entry", || {
        let made = crate::util::run(
            &[
                "prove",
                "--db",
                &db,
                "--object",
                "image/intranet/exo-0/app",
                "--out",
                proof.to_str().unwrap(),
            ],
            None,
        );
        let checked = crate::util::run(
            &["prove", "verify", proof.to_str().unwrap(), "--trust", &vkey],
            None,
        );
        let out = String::from_utf8_lossy(&checked.stdout).into_owned();
        let ok = made.status.success() && checked.status.success() && out.contains(&want);
        async move { if ok { Ok(()) } else { Err(out) } }
    })
    .await;
    pods.delete("exo-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let all = [
        pod,
        app,
        init,
        app,
        debugger,
        app,
        app,
        "image/intranet/exo-0/app image removed",
        "image/intranet/exo-0/debugger image removed",
        "image/intranet/exo-0/init image removed",
        "pod/intranet/exo-0 pod removed",
    ];
    wait_for(&auditor.db, dir.path(), &all).await;
    let metrics = get(&auditor.addr, "/metrics");
    for want in [
        "hexagone_auditor_collected_images_total 6",
        "hexagone_auditor_collected_removals_total 4",
    ] {
        assert!(metrics.contains(want), "{want} not in {metrics}");
    }
    auditor.stop_and_verify(
        dir.path(),
        all.len(),
        "verdicts: 5 compliant, 2 violation, 0 unknown",
    );
}

/// Class 5 of the operator's hostile review: the policies the operator places workloads by.
/// Each LocalityPolicy is recorded by its digest, again when anyone rewrites its rules (here a
/// cluster-admin allowing the US and putting the policy back at once, within one collector
/// pass: the admission guard that stops ops is not the point), not again when nothing changed
/// (a restart reads the ledger), and as removed when it is deleted
/// (the report lists them: `report.rs::policy_changes_are_in_the_report_and_the_ledger_gives_the_same_report`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_records_each_locality_policy_by_its_digest_and_its_changes() {
    let bed = cluster().await;
    network_policy(&bed, NS, "default-deny", json!([])).await;
    bare_pod(&bed, NS, "exo-0", FR, true).await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/samples/localitypolicy-diffusion-restreinte.yaml"
    );
    let sample: serde_json::Value =
        yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let policies = Api::<LocalityPolicyResource>::all(bed.client());
    let first = apply(&policies, sample.clone()).await.spec.digest();
    // A policy the API server accepts (its pattern lets any two capitals through) but the
    // platform does not read (`XK` is no assigned country code): recorded all the same, by the
    // digest of its spec's JSON, and it stops nothing.
    let mut broken = sample;
    broken["metadata"]["name"] = json!("broken");
    broken["spec"]["allowedCountries"] = json!(["XK"]);
    let plain = Api::<DynamicObject>::all_with(
        bed.client(),
        &ApiResource::erase::<LocalityPolicyResource>(&()),
    );
    apply(&plain, broken).await;
    let spec = plain.get("broken").await.unwrap().data["spec"].clone();
    let broken_digest = hexagone_platform::digest::sha256_tag(&serde_json::to_vec(&spec).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(&bed, dir.path()).await;
    let recorded_broken = format!("broken localitypolicy {broken_digest}");
    let recorded_first = format!("diffusion-restreinte localitypolicy {first}");
    let pod = "pod/intranet/exo-0 pod ovh-gra-1 compliant";
    let image = "image/intranet/exo-0/app image registry.gouv.example compliant";
    // The policies (by name) before the placements of the same pass.
    wait_for(
        &auditor.db,
        dir.path(),
        &[&recorded_broken, &recorded_first, pod, image],
    )
    .await;
    // The pod's workplace label removed: the namespace still holds a workplace, since the
    // officer's policy names it, so nothing is recorded as removed.
    Api::<Pod>::namespaced(bed.client(), NS)
        .patch(
            "exo-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app.kubernetes.io/part-of": null}}})),
        )
        .await
        .unwrap();
    a_later_pass(&bed, &auditor.addr).await;
    assert_eq!(
        recorded(&auditor.db, &dir.path().join("l.jsonl")).unwrap(),
        [&recorded_broken[..], &recorded_first, pod, image]
    );
    // Rewritten to allow the US and put back at once, well within one pass (it settles 200 ms
    // after the first change): both states are recorded, each by its digest.
    let rewrite = |countries: &'static [&'static str]| {
        let policies = policies.clone();
        async move {
            policies
                .patch(
                    "diffusion-restreinte",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"allowedCountries": countries}})),
                )
                .await
                .unwrap()
                .spec
                .digest()
        }
    };
    let rewritten = rewrite(&["FR", "US"]).await;
    assert_eq!(rewrite(&["FR"]).await, first);
    assert_ne!(rewritten, first);
    let recorded_second = format!("diffusion-restreinte localitypolicy {rewritten}");
    let changed = [
        &recorded_broken[..],
        &recorded_first,
        pod,
        image,
        &recorded_second,
        &recorded_first,
    ];
    wait_for(&auditor.db, dir.path(), &changed).await;
    // A change elsewhere in the object (its status, an annotation) is no change of its rules.
    policies
        .patch(
            "diffusion-restreinte",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"note": "reviewed"}}})),
        )
        .await
        .unwrap();
    a_later_pass(&bed, &auditor.addr).await;
    assert_eq!(
        recorded(&auditor.db, &dir.path().join("a.jsonl")).unwrap(),
        changed
    );
    let metrics = get(&auditor.addr, "/metrics");
    assert!(
        metrics.contains("hexagone_auditor_collected_policies_total 4"),
        "{metrics}"
    );
    let (db, key, vkey) = auditor.stop_and_verify(
        dir.path(),
        changed.len(),
        "verdicts: 2 compliant, 0 violation, 0 unknown",
    );
    // Restarted: the policy as the ledger last recorded it is not recorded again; deleted, it
    // is recorded as removed.
    let auditor = Auditor::start_on(&bed, dir.path(), db, key, vkey).await;
    assert_eq!(auditor.first_pass().await, (2, 2, 0));
    a_later_pass(&bed, &auditor.addr).await;
    assert_eq!(
        recorded(&auditor.db, &dir.path().join("b.jsonl")).unwrap(),
        changed
    );
    policies
        .delete("diffusion-restreinte", &DeleteParams::default())
        .await
        .unwrap();
    let removed = [
        &changed[..],
        &["diffusion-restreinte localitypolicy removed"],
    ]
    .concat();
    wait_for(&auditor.db, dir.path(), &removed).await;
    let (db, key, vkey) = auditor.stop_and_verify(
        dir.path(),
        removed.len(),
        "verdicts: 2 compliant, 0 violation, 0 unknown",
    );
    // Restarted without the right to list LocalityPolicies: the cluster's policies are
    // unknown, so the one still standing (`broken`) is not recorded as removed; deleted while
    // unseen, its removal is recorded once the right is granted and the watch starts.
    // The pod labelled part of the workplace again: without the policies, its namespace is a
    // workplace by that label alone.
    Api::<Pod>::namespaced(bed.client(), NS)
        .patch(
            "exo-0",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"app.kubernetes.io/part-of": "hexagone-workplace"}}}),
            ),
        )
        .await
        .unwrap();
    let ledger = (db, key, vkey);
    let (auditor, first) = unwatched::<LocalityPolicyResource>(
        &bed,
        dir.path(),
        ledger,
        ("localitypolicies", "LocalityPolicies"),
        &removed,
    )
    .await;
    assert_eq!(first, (2, 2, 0));
    // Deleted while the auditor cannot see the policies: once it can, the first pass that
    // watches them compares them with the ledger and records the removal.
    policies
        .delete("broken", &DeleteParams::default())
        .await
        .unwrap();
    read_only_kubeconfig(&bed).await;
    let gone = [&removed[..], &["broken localitypolicy removed"]].concat();
    let out = dir.path().join("d.jsonl");
    once_looked_again(
        &auditor.db,
        &out,
        gone.len(),
        "the policy deleted while unseen",
    )
    .await;
    assert_eq!(recorded(&auditor.db, &out).unwrap(), gone);
    auditor.stop_and_verify(
        dir.path(),
        gone.len(),
        "verdicts: 2 compliant, 0 violation, 0 unknown",
    );
}

/// A NetworkPolicy `name` in `namespace` selecting every pod, with the egress rules `egress`.
async fn network_policy(
    bed: &ControlPlane,
    namespace: &str,
    name: &str,
    egress: serde_json::Value,
) {
    network_policy_for(bed, namespace, name, json!({}), egress).await;
}

/// A NetworkPolicy `name` in `namespace` selecting the pods `selector` selects, with the egress
/// rules `egress`.
async fn network_policy_for(
    bed: &ControlPlane,
    namespace: &str,
    name: &str,
    selector: serde_json::Value,
    egress: serde_json::Value,
) {
    let api = Api::<NetworkPolicy>::namespaced(bed.client(), namespace);
    apply(
        &api,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": selector, "policyTypes": ["Egress"], "egress": egress}
        }),
    )
    .await;
}

/// Class 5 of the operator's hostile review: where a workplace's pods may send data. Every
/// address block a NetworkPolicy of the workplace's namespace opens is recorded and judged by
/// the auditor's own policy, whoever wrote it: a policy added beside the operator's that opens
/// every address (a rule naming no destination) is recorded as two ranges that no policy can
/// place, with a Warning Event on that NetworkPolicy; deleted, its destinations are recorded
/// as removed. A pod that no policy then restricts (Kubernetes isolates a pod for egress only
/// when a policy selects it) is recorded as open to every address. Policies of other
/// namespaces are not the auditor's business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_records_where_a_workplaces_network_policies_let_its_pods_send_data() {
    let bed = cluster().await;
    bare_pod(&bed, NS, "exo-0", FR, true).await;
    // Started beside it without the workplace's labels.
    bare_pod(&bed, NS, "miner", FR, false).await;
    network_policy(&bed, NS, "default-deny", json!([])).await;
    // As the operator renders `spec.egress`, for the workplace's pods: the site's mail relay,
    // one address.
    let part_of = json!({"matchLabels": {"app.kubernetes.io/part-of": "hexagone-workplace"}});
    network_policy_for(
        &bed,
        NS,
        "relay",
        part_of,
        json!([{"to": [{"ipBlock": {"cidr": "37.59.0.1/32"}}], "ports": [{"port": 25}]}]),
    )
    .await;
    // Added beside it by a tenant's admin: egress to anywhere on port 443.
    network_policy(&bed, NS, "open", json!([{"ports": [{"port": 443}]}])).await;
    network_policy(&bed, "default", "open", json!([{}])).await;
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(&bed, dir.path()).await;
    let pod = "pod/intranet/exo-0 pod ovh-gra-1 compliant";
    let miner = "pod/intranet/miner pod ovh-gra-1 compliant";
    // Under Diffusion Restreinte an address outside the cluster is never compliant (it has no
    // topology label, and no attestation names it): the relay is judged as its one address.
    let relay = "egress/intranet/relay/37.59.0.1/32 egress 37.59.0.1 violation";
    let v4 = "egress/intranet/open/0.0.0.0/0 egress 0.0.0.0/0 violation";
    let v6 = "egress/intranet/open/::/0 egress ::/0 violation";
    // The pods' images (from the site's mirror) come last in a pass.
    let pod_image = "image/intranet/exo-0/app image registry.gouv.example compliant";
    let miner_image = "image/intranet/miner/app image registry.gouv.example compliant";
    let first = [pod, miner, v4, v6, relay, pod_image, miner_image];
    wait_for(&auditor.db, dir.path(), &first).await;
    let mut notes = violation_events(&bed, "NetworkPolicy", 3).await;
    notes.sort();
    let range = |block: &str, entry: u64| {
        format!(
            "open egress to {block}: violation first recorded in ledger entry {entry}: the \
             destination is the range of addresses {block}, any of which may be anywhere, which \
             no policy can place: a destination must be one address"
        )
    };
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert_eq!(notes[0], range("0.0.0.0/0", 2), "{notes:?}");
    assert_eq!(notes[1], range("::/0", 3), "{notes:?}");
    assert!(
        notes[2].starts_with(
            "relay egress to 37.59.0.1/32: violation first recorded in ledger entry 4: "
        ),
        "{notes:?}"
    );
    // The open policy deleted: its destinations are no longer open.
    let netpols = Api::<NetworkPolicy>::namespaced(bed.client(), NS);
    netpols
        .delete("open", &DeleteParams::default())
        .await
        .unwrap();
    let v4_gone = "egress/intranet/open/0.0.0.0/0 egress removed";
    let v6_gone = "egress/intranet/open/::/0 egress removed";
    let before = [&first[..], &[v4_gone, v6_gone]].concat();
    wait_for(&auditor.db, dir.path(), &before).await;
    // The policy restricting every pod deleted: the unlabelled pod, which the relay's policy
    // does not select, may send data anywhere.
    netpols
        .delete("default-deny", &DeleteParams::default())
        .await
        .unwrap();
    let open4 = "egress-open/intranet/miner/0.0.0.0/0 egress 0.0.0.0/0 violation";
    let open6 = "egress-open/intranet/miner/::/0 egress ::/0 violation";
    let all = [&before[..], &[open4, open6]].concat();
    wait_for(&auditor.db, dir.path(), &all).await;
    let notes = violation_events(&bed, "Pod", 2).await;
    assert!(
        notes.len() == 2 && notes.iter().all(|n| n.starts_with("miner egress to ")),
        "{notes:?}"
    );
    let metrics = get(&auditor.addr, "/metrics");
    for want in [
        "hexagone_auditor_collected_egress_total 5",
        "hexagone_auditor_collected_removals_total 2",
    ] {
        assert!(metrics.contains(want), "{want} not in {metrics}");
    }
    // `verify --policy` replays every entry, the ranges too, and finds the same verdicts.
    auditor.stop_and_verify(
        dir.path(),
        all.len(),
        "verdicts: 4 compliant, 5 violation, 0 unknown",
    );
}

/// A snapshot `name` of claim `claim` in the test's namespace, with its content taken from the
/// CSI volume `handle`. No snapshot controller or CSI snapshotter runs on the test bed: this
/// does their part — it binds the two objects to each other and sets their status
/// (`readyToUse`, `boundVolumeSnapshotContentName`, the content's `snapshotHandle`) through
/// the status subresource.
async fn snapshot(bed: &ControlPlane, name: &str, claim: &str, handle: &str, ready: bool) {
    let snapshots = Api::<VolumeSnapshot>::namespaced(bed.client(), NS);
    let contents = Api::<VolumeSnapshotContent>::all(bed.client());
    let content = format!("snapcontent-{name}");
    let created = apply(
        &snapshots,
        json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"source": {"persistentVolumeClaimName": claim}}
        }),
    )
    .await;
    apply(
        &contents,
        json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
            "metadata": {"name": content},
            "spec": {
                "deletionPolicy": "Delete", "driver": DRIVER,
                "source": {"volumeHandle": handle},
                "volumeSnapshotRef": {"apiVersion": "snapshot.storage.k8s.io/v1",
                                      "kind": "VolumeSnapshot", "namespace": NS, "name": name,
                                      "uid": created.metadata.uid}
            }
        }),
    )
    .await;
    snapshot_ready(bed, name, ready).await;
}

/// The snapshotter's report: snapshot `name` (and its content) ready to use or not.
async fn snapshot_ready(bed: &ControlPlane, name: &str, ready: bool) {
    let status = PatchParams::default();
    Api::<VolumeSnapshotContent>::all(bed.client())
        .patch_status(
            &format!("snapcontent-{name}"),
            &status,
            &Patch::Merge(json!({"status": {
                "snapshotHandle": format!("snap-{name}"), "readyToUse": ready}})),
        )
        .await
        .unwrap();
    let patched = Api::<VolumeSnapshot>::namespaced(bed.client(), NS)
        .patch_status(
            name,
            &status,
            &Patch::Merge(json!({"status": {
                "boundVolumeSnapshotContentName": format!("snapcontent-{name}"),
                "readyToUse": ready}})),
        )
        .await
        .unwrap();
    // The status subresource took it (a CRD without one would drop it silently).
    assert_eq!(patched.status.and_then(|s| s.ready_to_use), Some(ready));
}

/// VolumeSnapshots, with the CSI snapshot CRDs vendored from kubernetes-csi/external-snapshotter
/// (`tests/testbed/crds/`). The test bed runs no snapshot controller and no CSI driver: the
/// test creates each VolumeSnapshotContent and VolumeSnapshot and sets their status itself
/// through the status subresource, as a CSI snapshotter would ([`snapshot`]). Each ready
/// snapshot is recorded with its source volume's class and node: a snapshot of the German
/// volume is a violation, of the French one compliant; it follows its volume when that moves,
/// and turns into a violation when the French attestation is withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_records_where_each_snapshot_is() {
    let bed = cluster().await;
    for kind in SNAPSHOT_CRDS {
        install_crd(
            &bed,
            &format!("tests/testbed/crds/snapshot.storage.k8s.io_{kind}.yaml"),
        )
        .await;
    }
    // A CSI volume on the French node (its snapshot's content names its volume handle) and a
    // hostPath volume on the German one (no CSI handle: its snapshot is found by its claim).
    volume(
        &bed,
        "data-search-0",
        json!({"app.kubernetes.io/name": "search"}),
        Some("vol-search-0"),
    )
    .await;
    volume(&bed, "scratch", json!({}), None).await;
    pod(&bed, "search-0", FR, "data-search-0").await;
    pod(&bed, "batch", DE, "scratch").await;
    snapshot(&bed, "search-daily", "data-search-0", "vol-search-0", true).await;
    snapshot(&bed, "scratch-daily", "scratch", "hostpath-scratch", true).await;
    // Still being cut: not a copy of the data yet.
    snapshot(
        &bed,
        "search-hourly",
        "data-search-0",
        "vol-search-0",
        false,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(&bed, dir.path()).await;
    let db = auditor.db.clone();

    let vol_fr = "volume/intranet/data-search-0 search-index ovh-gra-1 compliant";
    let vol_de = "volume/intranet/scratch unknown hetzner-fsn-1 violation";
    // A snapshot takes its source volume's class and node, and is judged there.
    let snap_de = "snapshot/intranet/scratch-daily unknown hetzner-fsn-1 violation";
    let snap_fr = "snapshot/intranet/search-daily search-index ovh-gra-1 compliant";
    let mut want = vec![vol_fr, vol_de, snap_de, snap_fr];
    wait_for(&db, dir.path(), &want).await;

    // The snapshot is cut: recorded from then on.
    snapshot_ready(&bed, "search-hourly", true).await;
    want.push("snapshot/intranet/search-hourly search-index ovh-gra-1 compliant");
    wait_for(&db, dir.path(), &want).await;

    // The German volume moves to the French node (its pod does): its snapshot is recorded
    // there with it.
    delete_pod(&bed, "batch").await;
    pod(&bed, "batch-2", FR, "scratch").await;
    want.extend([
        "volume/intranet/scratch unknown ovh-gra-1 compliant",
        "snapshot/intranet/scratch-daily unknown ovh-gra-1 compliant",
    ]);
    wait_for(&db, dir.path(), &want).await;

    // The attestation is withdrawn: both volumes and their three snapshots are violations.
    withdraw_attestation(&bed).await;
    want.extend([
        "volume/intranet/data-search-0 search-index ovh-gra-1 violation",
        "volume/intranet/scratch unknown ovh-gra-1 violation",
        "snapshot/intranet/scratch-daily unknown ovh-gra-1 violation",
        "snapshot/intranet/search-daily search-index ovh-gra-1 violation",
        "snapshot/intranet/search-hourly search-index ovh-gra-1 violation",
    ]);
    wait_for(&db, dir.path(), &want).await;

    // Each snapshot in violation raised a Warning Event on the VolumeSnapshot (one per node);
    // 5 volume and 7 snapshot placements, 7 Events raised in all (3 on claims).
    auditor
        .settled(
            &bed,
            dir.path(),
            "VolumeSnapshot",
            &[
                ("scratch-daily", DE, 2),
                ("scratch-daily", FR, 9),
                ("search-daily", FR, 10),
                ("search-hourly", FR, 11),
            ],
            [5, 7, 7],
            &want,
        )
        .await;
    let log = auditor.log.lock().unwrap().clone();
    assert!(!log.contains("not watched"), "{log}");
    let (db, key, vkey) = auditor.stop_and_verify(
        dir.path(),
        12,
        "verdicts: 5 compliant, 7 violation, 0 unknown",
    );

    // Restarted without the right to list VolumeSnapshots: the cluster's snapshots are unknown,
    // so none is recorded as removed (their violations would read as resolved); deleted while
    // unseen, a snapshot's removal is recorded once the right is granted and the watch starts,
    // and the others, unchanged, are not recorded again.
    let ledger = (db, key, vkey);
    let (auditor, _) = unwatched::<VolumeSnapshot>(
        &bed,
        dir.path(),
        ledger,
        ("volumesnapshots", "VolumeSnapshots"),
        &want,
    )
    .await;
    Api::<VolumeSnapshot>::namespaced(bed.client(), NS)
        .delete("scratch-daily", &DeleteParams::default())
        .await
        .unwrap();
    read_only_kubeconfig(&bed).await;
    want.push("snapshot/intranet/scratch-daily unknown removed");
    let out = dir.path().join("c.jsonl");
    once_looked_again(
        &auditor.db,
        &out,
        want.len(),
        "the snapshot deleted while unseen",
    )
    .await;
    a_later_pass(&bed, &auditor.addr).await;
    assert_eq!(recorded(&auditor.db, &out).unwrap(), want);
    auditor.stop_and_verify(
        dir.path(),
        want.len(),
        "verdicts: 5 compliant, 7 violation, 0 unknown",
    );
}

/// One HTTP request with a bearer token: `(status, body)`.
fn request(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let a = hexagone_testbed::http::request(addr, method, path, Some(token), body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"));
    (a.status, a.body)
}

/// With `--kubernetes`, an HTTP observation is judged only once the collector has read the
/// cluster's NodeAttestations: before, an attested node would be judged without its attestation
/// (a false violation under Diffusion Restreinte). Provoked for real: the auditor starts as its
/// ServiceAccount before the shipped RBAC is applied, so it can list nothing; ingest and
/// `/readyz` answer 503 and nothing is recorded; once the RBAC is applied the listing completes
/// and the same observation is recorded compliant, its attestation counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_wait_for_the_first_listing_of_the_cluster() {
    let bed = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "k");
    let token = crate::util::add_token(&dir.path().join("tokens"), "collector");
    let db = crate::util::fresh_sqlite(dir.path());
    let kubeconfig = bed
        .kubeconfig_as(AUDITOR, Some("system:serviceaccounts"))
        .unwrap();
    let auditor = Auditor::spawn(dir.path(), db, key, vkey, &kubeconfig).await;
    let observation = json!({
        "store": "minio/documents", "class": "document", "object": "spaces/1/doc-1",
        "content": "ab".repeat(32),
        "node": {"name": FR, "providerID": format!("kwok://{FR}"),
                 "labels": {"topology.kubernetes.io/region": "fr-par",
                            "topology.kubernetes.io/zone": "fr-par-1"},
                 "addresses": [{"type": "ExternalIP", "address": "51.38.1.1"}]}
    })
    .to_string();
    let post = || {
        request(
            &auditor.addr,
            "POST",
            "/v1/observations",
            &token,
            &observation,
        )
    };
    let (status, body) = post();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("has not yet read the cluster's NodeAttestations"),
        "{body}"
    );
    let (status, body) = request(&auditor.addr, "GET", "/readyz", "", "");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("waiting for the first complete listing"),
        "{body}"
    );
    assert_eq!(
        recorded(&auditor.db, &dir.path().join("none.jsonl")).unwrap_or_default(),
        Vec::<String>::new(),
        "nothing recorded"
    );

    // The shipped RBAC: the watches recover, the first listing completes. A watch refused for a
    // while retries after up to 30 s, plus a jitter of up to as much again (kube-runtime 5.0.0
    // `watcher.rs:1031`, `DefaultBackoff`: 0.8 s doubling to 30 s; backon 1.6.0
    // `backoff/exponential.rs:70`), so the first listing may come a minute after the grant:
    // under load it did, past this wait's former 60 s.
    read_only_kubeconfig(&bed).await;
    let answer = hexagone_testbed::wait::until(
        "the observation accepted after the first listing",
        WATCH_RETRY + CONVERGE,
        || {
            let (status, body) = post();
            async move {
                if status == 200 {
                    Ok(body)
                } else {
                    Err(format!("{status} {body}"))
                }
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(answer.contains("\"verdict\":\"compliant\""), "{answer}");
    let (status, _) = request(&auditor.addr, "GET", "/readyz", "", "");
    assert_eq!(status, 200);
    assert_eq!(
        recorded(&auditor.db, &dir.path().join("one.jsonl")).unwrap(),
        ["spaces/1/doc-1 document ovh-gra-1 compliant"]
    );

    // A writer names a node; it cannot describe one. The German node dressed in the French
    // node's facts, and a node the cluster does not have, are refused whole (422).
    let on = |object: &str, node: serde_json::Value| {
        json!({"store": "minio/documents", "class": "document", "object": object,
               "content": "cd".repeat(32), "node": node})
        .to_string()
    };
    for (node, why) in [
        (
            json!({"name": DE, "labels": {"topology.kubernetes.io/region": "fr-par"}}),
            format!(
                "node \"{DE}\": label topology.kubernetes.io/region is not set on it in the cluster"
            ),
        ),
        (
            json!({"name": DE, "labels": {"topology.kubernetes.io/zone": "fr-par-1"}}),
            format!(
                "node \"{DE}\": label topology.kubernetes.io/zone is \"eu-central-1a\" in the cluster, not \"fr-par-1\""
            ),
        ),
        (
            json!({"name": DE, "addresses": [{"type": "ExternalIP", "address": "51.38.1.1"}]}),
            format!(
                "node \"{DE}\": address ExternalIP 51.38.1.1 is not among the cluster's (ExternalIP 88.198.0.1"
            ),
        ),
        (
            json!({"name": DE, "providerID": format!("kwok://{FR}")}),
            format!("node \"{DE}\": providerID \"kwok://{FR}\" is not the cluster's"),
        ),
        (
            json!({"name": "ghost-1"}),
            "node \"ghost-1\" is not a node of this cluster".to_owned(),
        ),
    ] {
        let batch = format!(
            "[{}, {}]",
            on("spaces/1/doc-3", json!({"name": FR})),
            on("spaces/1/doc-2", node)
        );
        let (status, body) = request(&auditor.addr, "POST", "/v1/observations", &token, &batch);
        assert_eq!(status, 422, "{body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.starts_with(&format!("line 2: {why}")), "{error}");
    }
    // Named only, each node is judged on the cluster's facts: the German one is a violation.
    let batch = format!(
        "[{}, {}]",
        on("spaces/1/doc-2", json!({"name": DE})),
        on("spaces/1/doc-3", json!({"name": FR}))
    );
    let (status, body) = request(&auditor.addr, "POST", "/v1/observations", &token, &batch);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        recorded(&auditor.db, &dir.path().join("three.jsonl")).unwrap(),
        [
            "spaces/1/doc-1 document ovh-gra-1 compliant",
            &format!("spaces/1/doc-2 document {DE} violation"),
            "spaces/1/doc-3 document ovh-gra-1 compliant"
        ]
    );
    // The service's log says which writer posted which entries (written before the answer,
    // copied from its standard error by a thread).
    let logged = "writer collector: recorded entries 1-2 (2 of 2 observations; checkpoint 3)";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !auditor.log.lock().unwrap().contains(logged) {
        assert!(
            std::time::Instant::now() < deadline,
            "{logged:?} not in {}",
            auditor.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
