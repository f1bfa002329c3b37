//! `serve --lease` on the real control plane test bed and a real PostgreSQL server: two
//! replicas, one sequencer. The leader is killed (SIGKILL) while writers are submitting; the
//! standby takes over once the Lease expires; every acknowledged observation is in the ledger
//! exactly once (retries carry idempotency keys) and the export verifies; a leader whose Lease
//! is taken stops at once. The replicas run with
//! the auditor's own identity and the shipped RBAC (`manifests/overlays/auditor-postgres-ha/`).

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use hexagone_auditor::ledger::entry::{Body, Entry};
use hexagone_testbed::ControlPlane;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde::Deserialize as _;
use serde_json::json;

use crate::util::{bin, keygen, observation_json, policy};

const NS: &str = "hexagone-audit";
const LEASE: &str = "hexagone-audit/hexagone-auditor";
const AUDITOR: &str = "system:serviceaccount:hexagone-audit:hexagone-auditor";
const ROLE: &str = "hexagone.fr/auditor-role";
/// Observations per request.
const BATCH: u64 = 10;

/// One `serve --lease` replica; killed on drop.
struct Replica {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Waits (at most `within`) for a standard output line starting with `prefix`.
    fn expect(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("{}: no line {prefix:?} ({e})", self.addr),
            }
        }
    }
}

struct Setup {
    dir: tempfile::TempDir,
    db: String,
    key: std::path::PathBuf,
    vkey: String,
    tokens: std::path::PathBuf,
    token: String,
    kubeconfig: std::path::PathBuf,
}

impl Setup {
    fn start(&self, pod: &str) -> Replica {
        let mut child = Command::new(bin())
            .args([
                "serve",
                "--db",
                &self.db,
                "--key",
                self.key.to_str().unwrap(),
                "--policy",
                &policy("france-diffusion-restreinte"),
                "--tokens",
                self.tokens.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--lease",
                LEASE,
                "--lease-seconds",
                "4",
                "--flush-ms",
                "2",
            ])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", NS)
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout).lines() {
                let Ok(l) = l else { return };
                eprintln!("[serve] {l}");
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(60)).unwrap();
        let addr = first
            .strip_prefix("serve listening on ")
            .unwrap_or_else(|| panic!("{first:?}"))
            .to_owned();
        Replica { child, addr, lines }
    }
}

/// One request; `None` when the connection fails (a killed replica).
fn request(addr: &str, method: &str, path: &str, token: &str, body: &str) -> Option<(u16, String)> {
    hexagone_testbed::http::request(addr, method, path, Some(token), body.as_bytes())
        .ok()
        .map(|a| (a.status, a.body))
}

/// Observation `n` with its idempotency key.
fn keyed(n: u64) -> String {
    observation_json(n).replacen('{', &format!("{{\"id\":\"obs-{n}\","), 1)
}

/// Submits batches of observations until `stop`, each retried on the other replica until it
/// is acknowledged; returns the acknowledged observations and the entry each was given.
fn writer(
    base: u64,
    addrs: Arc<Mutex<Vec<String>>>,
    token: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<u64, u64>>>,
) -> u64 {
    let mut retries = 0;
    let mut turn = 0usize;
    for batch in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let ns: Vec<u64> = (base + batch * BATCH..base + (batch + 1) * BATCH).collect();
        let body = format!(
            "[{}]",
            ns.iter().map(|&n| keyed(n)).collect::<Vec<_>>().join(",")
        );
        loop {
            let addr = {
                let a = addrs.lock().unwrap();
                a[turn % a.len()].clone()
            };
            match request(&addr, "POST", "/v1/observations", &token, &body) {
                Some((200, answer)) => {
                    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
                    let mut acked = acked.lock().unwrap();
                    for (n, e) in ns.iter().zip(v["entries"].as_array().unwrap()) {
                        acked.insert(*n, e["seq"].as_u64().unwrap());
                    }
                    break;
                }
                Some((status @ (400 | 401 | 409 | 413), answer)) => {
                    panic!("refused ({status}): {answer}")
                }
                // 503 from a standby, 500 from a leader that lost its Lease, no connection
                // from a killed one: not acknowledged, so the writer retries elsewhere.
                _ => {
                    retries += 1;
                    turn += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    retries
}

async fn label(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default()
        .get(ROLE)
        .cloned()
}

async fn wait_acked(acked: &Mutex<BTreeMap<u64, u64>>, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < at_least {
        assert!(
            Instant::now() < deadline,
            "only {} observations acknowledged, waiting for {at_least}",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shipped Deployment's init container and auditor arguments are accepted by the binary,
/// and the auditor runs elected.
async fn shipped_arguments_parse(bed: &ControlPlane, overlay: &str) {
    use clap::Parser as _;
    let out = bed.kubectl(["kustomize", overlay]).await.unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let deployment = yaml_serde::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .find(|d| d["kind"] == "Deployment")
        .expect("the overlay has a Deployment");
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    for container in [&spec["initContainers"][0], &spec["containers"][0]] {
        let args: Vec<String> = serde_json::from_value(container["args"].clone()).unwrap();
        if let Err(e) = hexagone_auditor::cli::Cli::try_parse_from(
            std::iter::once("hexagone-auditor".to_owned()).chain(args.iter().cloned()),
        ) {
            panic!("{args:?}: {e}");
        }
        if container["name"] == "auditor" {
            assert!(args.contains(&"--lease=hexagone-audit/hexagone-auditor".to_owned()));
        }
    }
}

/// A pod standing in for one of the Deployment's replicas (it is never scheduled: its labels
/// are what the replicas manage). Meets the namespace's restricted Pod Security level.
fn replica_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "auditor", "image": "hexagone-auditor:0.1.0",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_a_killed_leader_and_no_acknowledged_observation_is_lost() {
    let bed = ControlPlane::start().await.unwrap();
    let overlay = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/overlays/auditor-postgres-ha"
    );
    let applied = bed.kubectl(["apply", "-k", overlay]).await.unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    shipped_arguments_parse(&bed, overlay).await;
    let pods = Api::<Pod>::namespaced(bed.client(), NS);
    for name in ["auditor-a", "auditor-b"] {
        pods.create(&PostParams::default(), &replica_pod(name))
            .await
            .unwrap_or_else(|e| panic!("creating pod {name}: {e}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(dir.path(), "k");
    let tokens = dir.path().join("tokens");
    let token = crate::util::add_token(&tokens, "writer");
    let setup = Setup {
        kubeconfig: bed
            .kubeconfig_as(AUDITOR, Some("system:serviceaccounts"))
            .unwrap(),
        db: crate::util::fresh_postgres().await,
        key,
        vkey,
        tokens,
        token,
        dir,
    };

    // A leads; B, started next, stands by: ready (a rollout need not wait for it) but it
    // records nothing.
    let a = setup.start("auditor-a");
    a.expect("auditor-a holds Lease", Duration::from_secs(60));
    let b = setup.start("auditor-b");
    b.expect("standing by: auditor-b", Duration::from_secs(30));
    let (status, body) = request(&b.addr, "GET", "/readyz", "", "").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "standby: waiting for the sequencer's Lease\n")
    );
    let (status, body) = request(
        &b.addr,
        "POST",
        "/v1/observations",
        &setup.token,
        &keyed(1_000_000),
    )
    .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("stands by"), "{body}");
    assert_eq!(label(&pods, "auditor-a").await.as_deref(), Some("leader"));
    assert_eq!(label(&pods, "auditor-b").await, None);
    // The right to label pods stops at the auditor's namespace: with its identity, a workload's
    // pod elsewhere cannot be patched (RBAC refuses before looking for the pod).
    let auditor = bed
        .client_as(AUDITOR, Some("system:serviceaccounts"))
        .await
        .unwrap();
    let refused = Api::<Pod>::namespaced(auditor, "intranet")
        .patch(
            "exo-0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {ROLE: "leader"}}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 403),
        "{refused}"
    );

    // Two writers submit to A, retrying on B whatever A does not acknowledge.
    let addrs = Arc::new(Mutex::new(vec![a.addr.clone(), b.addr.clone()]));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (addrs, token, stop, acked) = (
                addrs.clone(),
                setup.token.clone(),
                stop.clone(),
                acked.clone(),
            );
            // The second writer's observations are numbered from 10 million.
            std::thread::spawn(move || writer(w * 10_000_000, addrs, token, stop, acked))
        })
        .collect();
    wait_acked(&acked, 300).await;

    // The leader dies mid-load, without releasing anything.
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let at_kill = acked.lock().unwrap().len();
    b.expect("auditor-b holds Lease", Duration::from_secs(60));
    wait_acked(&acked, at_kill + 300).await;
    assert_eq!(label(&pods, "auditor-b").await.as_deref(), Some("leader"));

    // A comes back in the same pod (a container restart): it removes its stale label and
    // stands by.
    drop(a);
    let a = setup.start("auditor-a");
    a.expect("standing by: auditor-a", Duration::from_secs(30));
    addrs.lock().unwrap()[0] = a.addr.clone();
    assert_eq!(label(&pods, "auditor-a").await, None);
    wait_acked(&acked, at_kill + 400).await;

    // B stops gracefully: it drains, signs a final checkpoint and releases the Lease, so A
    // takes over without waiting for it to expire.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(b.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    b.expect("final checkpoint", Duration::from_secs(30));
    // Released, not left to expire: once B has exited, the Lease no longer names it. (Timing
    // A's takeover cannot tell: a standby looks again only when the Lease it last read would
    // expire, so even after a release it can take a few seconds, more on a loaded machine.)
    let mut b = b;
    assert_eq!(b.child.wait().unwrap().code(), Some(0));
    let lease = Api::<Lease>::namespaced(bed.client(), NS)
        .get(LEASE.split_once('/').unwrap().1)
        .await
        .unwrap();
    let holder = lease.spec.and_then(|s| s.holder_identity);
    assert_ne!(
        holder.as_deref(),
        Some("auditor-b"),
        "the Lease was left to expire, not released"
    );
    a.expect("auditor-a holds Lease", Duration::from_secs(30));
    let before = acked.lock().unwrap().len();
    wait_acked(&acked, before + 100).await;
    stop.store(true, Ordering::SeqCst);
    let retries: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(
        retries > 0,
        "the writers never had to retry: no failover happened under load"
    );

    // The Lease taken from a live leader (another replica that saw it expire during a pause of
    // A, or an administrator): A stops at its next renewal, before committing anything more,
    // and leaves its pod unlabelled; the Service then routes nowhere until a replica leads.
    let now = time::OffsetDateTime::now_utc();
    // A MicroTime, as the API server writes them.
    let stolen_at = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    );
    Api::<Lease>::namespaced(bed.client(), NS)
        .patch(
            LEASE.split_once('/').unwrap().1,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {
                "holderIdentity": "intruder",
                "acquireTime": stolen_at,
                "renewTime": stolen_at,
                "leaseDurationSeconds": 3600,
            }})),
        )
        .await
        .unwrap();
    let stolen = Instant::now();
    let mut a = a;
    let code = loop {
        if let Some(status) = a.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            stolen.elapsed() < Duration::from_secs(30),
            "auditor-a still runs {:?} after losing its Lease",
            stolen.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, Some(2), "a lost Lease is an error exit");
    assert_eq!(label(&pods, "auditor-a").await, None);
    assert!(
        request(
            &a.addr,
            "POST",
            "/v1/observations",
            &setup.token,
            &keyed(2_000_000)
        )
        .is_none(),
        "a replica that lost its Lease still answers"
    );
    eprintln!(
        "failover: auditor-a stopped {:?} after its Lease was taken",
        stolen.elapsed()
    );
    drop(b);
    drop(a);

    // Every acknowledged observation is in the ledger, exactly once, at the entry it was
    // acknowledged with; the export verifies against the log's key.
    let (bundle, verified) = crate::util::export_and_verify(&setup.db, &setup.vkey).await;
    let summary = verified.unwrap_or_else(|f| panic!("the export does not verify: {f:?}"));
    let mut found: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in String::from_utf8(bundle).unwrap().lines() {
        let Some(e) = line.strip_prefix("{\"entry\":") else {
            continue;
        };
        let entry = Entry::decode(&e.as_bytes()[..e.len() - 1]).unwrap();
        if let Body::Observation(o) = entry.body {
            found.entry(o.object.id).or_default().push(entry.seq);
        }
    }
    let acked = acked.lock().unwrap();
    for (n, seq) in acked.iter() {
        let id = format!("spaces/{}/doc-{n}", n % 97);
        assert_eq!(
            found.get(&id).map(Vec::as_slice),
            Some(&[*seq][..]),
            "observation {n} was acknowledged at entry {seq}"
        );
    }
    assert!(
        found.values().all(|seqs| seqs.len() == 1),
        "an observation was recorded twice"
    );
    eprintln!(
        "failover: {} acknowledged, {} recorded, {retries} retries, {} entries verified",
        acked.len(),
        found.len(),
        summary.entries
    );
}

/// `manifests/auditor/auditor.yaml`: its ConfigMap holds the shipped policy verbatim, and the
/// binary accepts its Deployment's arguments (init container and service).
#[test]
fn the_shipped_auditor_manifest_matches_the_policy_and_the_binary() {
    use clap::Parser as _;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let text = std::fs::read_to_string(format!("{root}/manifests/auditor/auditor.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = yaml_serde::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .collect();
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let policy =
        std::fs::read_to_string(format!("{root}/policies/france-diffusion-restreinte.yaml"))
            .unwrap();
    assert_eq!(
        find("ConfigMap")["data"]["policy.yaml"].as_str().unwrap(),
        policy,
        "the ConfigMap must hold policies/france-diffusion-restreinte.yaml verbatim"
    );
    let spec = &find("Deployment")["spec"]["template"]["spec"];
    for container in [&spec["initContainers"][0], &spec["containers"][0]] {
        let args: Vec<String> = serde_json::from_value(container["args"].clone()).unwrap();
        if let Err(e) = hexagone_auditor::cli::Cli::try_parse_from(
            std::iter::once("hexagone-auditor".to_owned()).chain(args.iter().cloned()),
        ) {
            panic!("{args:?}: {e}");
        }
    }
}
