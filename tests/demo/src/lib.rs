//! The main job, end to end on a local simulated sovereign cluster: the real control plane test
//! bed with kwok nodes (French nodes of qualified operators in two zones, attested; a German
//! node; a US node; a French-located node of a US operator), `kubectl apply -k manifests/`, the
//! operator and the auditor run here as processes with their ServiceAccounts' identities (the
//! nodes are kwok's: no container runs on them), a 5,000-user Workplace under Diffusion
//! Restreinte, simulated activity (documents stored, volumes bound, a backup sent abroad, an
//! attestation withdrawn), then the signed locality report, the export bundle and its offline
//! verification with a witness.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use hexagone_testbed::ControlPlane;
use hexagone_testbed::provisioner::{Provisioner, TEST_PROVISIONER};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

/// The Workplace's namespace and name (from `manifests/samples/workplace.yaml`).
pub const NAMESPACE: &str = "intranet";
/// The security officers' group (`manifests/rbac/security-officer.yaml`).
const OFFICERS: &str = "hexagone:security-officers";
const OPERATOR: &str = "system:serviceaccount:hexagone-system:hexagone-operator";
const AUDITOR: &str = "system:serviceaccount:hexagone-audit:hexagone-auditor";
/// The site's registry mirror every image of the Workplace is pulled from, in the auditor's
/// inventory.
pub const MIRROR: &str = "registry.ministere.example.fr";
/// The foreign backup target in the auditor's inventory.
pub const FOREIGN_BACKUP: &str = "backup-hetzner-fsn";
/// The database whose backup goes abroad.
pub const FOREIGN_BACKUP_STORE: &str = "mysql/exo";
/// The backup's object name (the French backup of another database has the same name).
pub const FOREIGN_BACKUP_OBJECT: &str = "dump/2026-11-29";
/// How long the cluster gets to converge at each step.
const CONVERGE: Duration = Duration::from_secs(180);
/// Documents stored through the object store's notifications.
pub const DOCUMENTS: usize = 200;

/// What the demo wrote, for the person who ran it and for the test.
#[derive(Debug)]
pub struct Outcome {
    /// The output directory.
    pub out: PathBuf,
    /// The signed report, JSON.
    pub report_json: PathBuf,
    /// The signed report, HTML.
    pub report_html: PathBuf,
    /// The export bundle.
    pub bundle: PathBuf,
    /// `verify`'s exit code and standard output.
    pub verify: (i32, String),
    /// The inclusion proof of the backup sent abroad (`backup.tlog-proof`), and
    /// `prove verify`'s exit code and standard output for it.
    pub proof: (PathBuf, i32, String),
    /// Entries in the ledger.
    pub entries: u64,
    /// The node whose attestation the security officer withdrew: the French node holding the
    /// most of the Workplace's volumes when it became Ready.
    pub withdrawn: String,
    /// The ledger key's fingerprint, as keygen printed it (`SHA256:` and 64 hex digits).
    pub fingerprint: String,
}

/// The repository root (policies, manifests).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Prints one step of progress.
fn step(started: Instant, what: &str) {
    println!("[{:>4}s] {what}", started.elapsed().as_secs());
}

/// Where `hexagone-operator` and `hexagone-auditor` are: `HEXAGONE_BIN_DIR`, else next to this
/// program (or its parent directory, for a test binary in `deps/`).
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("HEXAGONE_BIN_DIR") {
        return Ok(Path::new(&dir).join(name));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{name} not found next to {}: build it (`cargo build -p {name}`) or set HEXAGONE_BIN_DIR",
        exe.display()
    )
}

/// Runs a command to completion; fails with its standard error unless it exits 0.
async fn run_ok(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().await.with_context(|| format!("{cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn kubectl(bed: &ControlPlane, args: &[&str]) -> anyhow::Result<String> {
    let out = bed.kubectl(args).await?;
    ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kubectl ARGS` as the security officer alice (group `hexagone:security-officers`).
async fn kubectl_officer(bed: &ControlPlane, args: &[&str]) -> anyhow::Result<()> {
    let out = bed.kubectl_as("alice", Some(OFFICERS), args).await?;
    ensure!(
        out.status.success(),
        "kubectl {} (as the security officer): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A long-running process of the demo, with its standard output read line by line (and echoed
/// under its name); killed when dropped.
struct Process {
    name: &'static str,
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Process {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> anyhow::Result<Process> {
        let stderr = std::fs::File::create(log)?;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("no standard output")?;
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(l)) = reader.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Process { name, child, lines })
    }

    /// The first line (at most 60 s) that starts with `prefix`.
    async fn expect(&mut self, prefix: &str) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(l)) if l.starts_with(prefix) => return Ok(l),
                Ok(Some(_)) => {}
                Ok(None) => bail!("{} stopped before printing {prefix:?}", self.name),
                Err(_) => bail!("{} did not print {prefix:?} within 60 s", self.name),
            }
        }
    }

    /// SIGTERM, then waits for the exit; returns the rest of its standard output.
    async fn terminate(mut self) -> anyhow::Result<String> {
        if let Some(pid) = self.child.id() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            )?;
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .with_context(|| format!("{} did not stop within 60 s", self.name))??;
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.try_recv() {
            rest.push(l);
        }
        ensure!(status.success(), "{} exited with {status}", self.name);
        Ok(rest.join("\n"))
    }
}

/// A NodeAttestation of `node`, written by a security officer.
fn attestation(node: &str, company: &str, site: &str) -> String {
    // The zone the node is in, as the officer attests it: a kubelet may rewrite its own zone
    // label, so under this policy only an attested zone places volumes.
    let zone = hexagone_testbed::sovereign::zone(node)
        .map(|z| format!("\n  zone: {z}"))
        .unwrap_or_default();
    format!(
        "apiVersion: hexagone.fr/v1alpha1
kind: NodeAttestation
metadata:
  name: {node}
spec:
  nodeName: {node}
  providerID: kwok://{node}
  country: FR
  hostingCompany: {company}
  site: {site}{zone}
  basis: contract
  reference: demo contract 2026-042
  attestedBy: rssi@ministere.example.fr
  validUntil: \"2030-01-01T00:00:00Z\"
---
"
    )
}

/// A condition of the Workplace: `(status, reason, message)`.
async fn condition(bed: &ControlPlane, kind: &str) -> anyhow::Result<(String, String, String)> {
    let text = kubectl(
        bed,
        &["get", "workplace", "-n", NAMESPACE, NAMESPACE, "-o", "json"],
    )
    .await?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let c = v["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or_default();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Ok((s("status"), s("reason"), s("message")))
}

async fn until<F, Fut>(what: &str, check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    hexagone_testbed::wait::until(what, CONVERGE, check)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// `kubectl get ARGS -o json`, parsed.
async fn get_json(bed: &ControlPlane, args: &[&str]) -> Result<serde_json::Value, String> {
    let args: Vec<&str> = ["get"]
        .iter()
        .chain(args)
        .chain(&["-o", "json"])
        .copied()
        .collect();
    let text = kubectl(bed, &args).await.map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// Waits until the Workplace has settled on `eligible` nodes: Ready, with a message counting
/// them (the first Ready can come before the qualifier has labelled every node, or, after an
/// attestation is withdrawn, before the operator has seen its label go), and Sovereign; every
/// pod scheduled (an evicted pod's replacement may not exist yet, or wait for the scheduler)
/// and none left on `away_from`.
async fn ready_and_sovereign(
    bed: &ControlPlane,
    eligible: usize,
    away_from: Option<&str>,
) -> anyhow::Result<()> {
    let counted = format!("ready on {eligible} eligible nodes");
    let what = format!("the Workplace Ready on {eligible} eligible nodes and Sovereign");
    until(&what, || async {
        let ready = condition(bed, "Ready").await.map_err(|e| e.to_string())?;
        let sovereign = condition(bed, "Sovereign")
            .await
            .map_err(|e| e.to_string())?;
        if ready.0 != "True" || !ready.2.contains(&counted) || sovereign.0 != "True" {
            return Err(format!("Ready {ready:?}, Sovereign {sovereign:?}"));
        }
        let wp = get_json(bed, &["workplace", "-n", NAMESPACE, NAMESPACE]).await?;
        let replicas: u64 = wp["status"]["components"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["replicas"].as_u64())
            .sum();
        let pods = get_json(bed, &["pods", "-n", NAMESPACE]).await?;
        let (mut scheduled, mut pending, mut left) = (0u64, 0u64, 0u64);
        for p in pods["items"].as_array().into_iter().flatten() {
            let node = p["spec"]["nodeName"].as_str();
            if node.is_some() && node == away_from {
                left += 1;
            }
            if p["metadata"]["deletionTimestamp"].is_string() {
                continue;
            }
            match node {
                Some(_) => scheduled += 1,
                None => pending += 1,
            }
        }
        if left == 0 && pending == 0 && scheduled >= replicas {
            Ok(())
        } else {
            Err(format!(
                "{scheduled} pods scheduled for {replicas} replicas, {pending} pending, \
                 {left} on {away_from:?}"
            ))
        }
    })
    .await
}

/// Workplace pods per node.
async fn pods_per_node(
    bed: &ControlPlane,
) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let text = kubectl(bed, &["get", "pods", "-n", NAMESPACE, "-o", "json"]).await?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let mut out = std::collections::BTreeMap::new();
    for p in v["items"].as_array().into_iter().flatten() {
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            *out.entry(n.to_owned()).or_default() += 1;
        }
    }
    Ok(out)
}

/// The node running the most Workplace pods that mount a claim (ties: the first by name), so
/// that withdrawing its attestation moves volumes whatever the scheduler chose.
async fn volume_node(bed: &ControlPlane) -> anyhow::Result<String> {
    let text = kubectl(bed, &["get", "pods", "-n", NAMESPACE, "-o", "json"]).await?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let mut per_node: std::collections::BTreeMap<String, usize> = Default::default();
    for p in v["items"].as_array().into_iter().flatten() {
        let claims = p["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|vol| vol["persistentVolumeClaim"].is_object())
            .count();
        if let (Some(n), true) = (p["spec"]["nodeName"].as_str(), claims > 0) {
            *per_node.entry(n.to_owned()).or_default() += claims;
        }
    }
    let most = per_node.values().copied().max().unwrap_or(0);
    per_node
        .into_iter()
        .find(|(_, n)| *n == most && most > 0)
        .map(|(node, _)| node)
        .ok_or_else(|| anyhow::anyhow!("no Workplace pod mounts a volume"))
}

/// One HTTP request to the auditor; `(status, body)`.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let a = hexagone_testbed::http::request_async(
        addr,
        method,
        path,
        Some(token),
        body.as_bytes(),
        hexagone_testbed::http::DEFAULT_TIMEOUT,
    )
    .await?;
    Ok((a.status, a.body))
}

/// The checkpoint size the auditor publishes.
async fn published(addr: &str) -> u64 {
    match http(addr, "GET", "/v1/checkpoint", "", "").await {
        Ok((200, body)) => body
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Waits until the auditor's ledger stops growing for 3 s (the collector has caught up).
async fn settled(addr: &str) -> anyhow::Result<u64> {
    let mut last = published(addr).await;
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + CONVERGE;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = published(addr).await;
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() > Duration::from_secs(3) {
            return Ok(last);
        }
        ensure!(Instant::now() < deadline, "the ledger kept growing");
    }
}

/// A MinIO bucket notification for one stored document (the server's own format).
fn minio_event(i: usize) -> String {
    serde_json::json!({
        "EventName": "s3:ObjectCreated:Put",
        "Key": format!("documents/spaces%2F{}%2Fdoc-{i}.odt", i % 12),
        "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
            "eventTime": "2026-11-29T09:00:00.000Z", "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "exo-platform"},
            "s3": {
                "s3SchemaVersion": "1.0", "configurationId": "Config",
                "bucket": {"name": "documents", "ownerIdentity": {"principalId": "exo-platform"}, "arn": "arn:aws:s3:::documents"},
                "object": {"key": format!("spaces%2F{}%2Fdoc-{i}.odt", i % 12), "size": 20_000 + i, "eTag": format!("{:032x}", i * 7919), "sequencer": format!("{:016X}", i)}
            }
        }]
    })
    .to_string()
}

/// Runs the whole demo, writing into `out`.
pub async fn run(out: &Path) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    std::fs::create_dir_all(out)?;
    let out = out.canonicalize()?;
    let operator_bin = bin("hexagone-operator")?;
    let auditor_bin = bin("hexagone-auditor")?;
    let repo = repo().canonicalize()?;
    let policy = repo.join("policies/france-diffusion-restreinte.yaml");

    step(
        started,
        "starting the control plane (etcd, kube-apiserver, scheduler, controller-manager, kwok)",
    );
    let bed = ControlPlane::start().await?;
    let from = rfc3339(-60)?;

    step(
        started,
        "adding 7 nodes: 4 French (OVH, Outscale; zones fr-par-1, fr-par-2), Hetzner DE, a US node, AWS Paris",
    );
    bed.add_nodes(&hexagone_testbed::sovereign::nodes()).await?;

    step(
        started,
        "kubectl apply -k manifests/ (CRDs, RBAC, operator, auditor)",
    );
    kubectl(
        &bed,
        &[
            "apply",
            "-k",
            repo.join("manifests").to_str().unwrap_or_default(),
        ],
    )
    .await?;
    // The nodes are kwok's: no container runs. The operator and the auditor run here, as
    // processes with their ServiceAccounts' identities; their Deployments are scaled to 0.
    for (ns, name) in [
        ("hexagone-system", "hexagone-operator"),
        ("hexagone-audit", "hexagone-auditor"),
    ] {
        kubectl(
            &bed,
            &["scale", "deployment", "-n", ns, name, "--replicas=0"],
        )
        .await?;
    }
    until("the CRDs are established", || async {
        let out = bed
            .kubectl([
                "wait",
                "--for=condition=Established",
                "--timeout=5s",
                "crd",
                "--all",
            ])
            .await
            .map_err(|e| e.to_string())?;
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await?;

    step(
        started,
        "the security officer attests the French nodes (and AWS Paris, which is in France)",
    );
    let mut attestations = String::new();
    for (node, company, site) in [
        ("ovh-par1-a", "OVH SAS", "Paris PAR1"),
        ("ovh-par1-b", "OVH SAS", "Paris PAR1"),
        ("outscale-par2-a", "Outscale SASU", "Paris PAR2"),
        ("ovh-par2-b", "OVH SAS", "Paris PAR2"),
        (
            "aws-paris",
            "Amazon Web Services EMEA SARL",
            "Paris eu-west-3",
        ),
    ] {
        attestations.push_str(&attestation(node, company, site));
    }
    let file = out.join("attestations.yaml");
    std::fs::write(&file, &attestations)?;
    kubectl_officer(&bed, &["apply", "-f", file.to_str().unwrap_or_default()]).await?;
    kubectl(
        &bed,
        &[
            "apply",
            "-f",
            repo.join("manifests/samples/localitypolicy-diffusion-restreinte.yaml")
                .to_str()
                .unwrap_or_default(),
        ],
    )
    .await?;

    step(
        started,
        "starting the operator (its ServiceAccount's identity) and the stand-in zonal CSI provisioner",
    );
    let operator_kubeconfig = bed.kubeconfig_as(OPERATOR, Some("system:serviceaccounts"))?;
    let _operator = Process::spawn(
        "operator",
        Command::new(&operator_bin)
            .args([
                "run",
                "--metrics-addr",
                "127.0.0.1:0",
                "--identity",
                "demo",
                "--lease-seconds",
                "6",
            ])
            .env("KUBECONFIG", &operator_kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE"),
        &out.join("operator.log"),
    )?;
    let _provisioner = Provisioner::start(bed.client());

    step(
        started,
        "starting the auditor (ledger, witness, `serve --kubernetes` with its read-only identity)",
    );
    let ledger_key = out.join("ledger.key");
    let witness_key = out.join("witness.key");
    for f in [&ledger_key, &witness_key] {
        for g in [
            f.clone(),
            f.with_extension("key.pub"),
            f.with_extension("key.signed-head"),
        ] {
            let _ = std::fs::remove_file(g);
        }
    }
    let _ = std::fs::remove_file(out.join("tokens"));
    for f in [
        "ledger.sqlite",
        "ledger.sqlite-wal",
        "ledger.sqlite-shm",
        "witness.state",
    ] {
        let _ = std::fs::remove_file(out.join(f));
    }
    let keygen = run_ok(
        Command::new(&auditor_bin)
            .args(["keygen", "--name", "demo.hexagone.fr/ledger", "--out"])
            .arg(&ledger_key),
    )
    .await?;
    let fingerprint = keygen
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .context("keygen printed no fingerprint")?
        .to_owned();
    run_ok(
        Command::new(&auditor_bin)
            .args([
                "witness",
                "keygen",
                "--name",
                "witness.demo.hexagone.fr",
                "--out",
            ])
            .arg(&witness_key),
    )
    .await?;
    let ledger_pub = std::fs::read_to_string(out.join("ledger.key.pub"))?
        .trim()
        .to_owned();
    let witness_pub = std::fs::read_to_string(out.join("witness.key.pub"))?
        .trim()
        .to_owned();
    let mut witness = Process::spawn(
        "witness",
        Command::new(&auditor_bin)
            .args(["witness", "serve", "--key"])
            .arg(&witness_key)
            .args(["--log-key", &ledger_pub, "--state"])
            .arg(out.join("witness.state"))
            .args(["--listen", "127.0.0.1:0"]),
        &out.join("witness.log"),
    )?;
    let line = witness.expect("").await?;
    let witness_addr = line.rsplit(' ').next().unwrap_or_default().to_owned();
    let token = run_ok(
        Command::new(&auditor_bin)
            .args(["serve", "token", "add", "demo-writer", "--tokens"])
            .arg(out.join("tokens")),
    )
    .await?
    .trim()
    .to_owned();
    std::fs::write(
        out.join("inventory.yaml"),
        format!(
            "- name: minio-gra
  addresses: [51.38.5.5]
  region: gra
  attestation: {{country: FR, hostingCompany: OVH SAS, site: Gravelines GRA3, basis: contract,
                attestedBy: rssi@ministere.example.fr, validUntil: '2030-01-01T00:00:00Z'}}
- name: backup-outscale
  addresses: [46.231.144.2]
  region: cloudgouv-eu-west-1
  attestation: {{country: FR, hostingCompany: Outscale SASU, site: Paris PAR2, basis: contract,
                attestedBy: rssi@ministere.example.fr, validUntil: '2030-01-01T00:00:00Z'}}
- name: {MIRROR}
  addresses: [51.38.5.6]
  region: gra
  attestation: {{country: FR, hostingCompany: OVH SAS, site: Gravelines GRA3, basis: contract,
                attestedBy: rssi@ministere.example.fr, validUntil: '2030-01-01T00:00:00Z'}}
- name: {FOREIGN_BACKUP}
  addresses: [88.198.0.1]
"
        ),
    )?;
    let auditor_kubeconfig = bed.kubeconfig_as(AUDITOR, Some("system:serviceaccounts"))?;
    let db = format!("sqlite:{}", out.join("ledger.sqlite").display());
    let mut auditor = Process::spawn(
        "auditor",
        Command::new(&auditor_bin)
            .args(["serve", "--kubernetes", "--db", &db, "--key"])
            .arg(&ledger_key)
            .arg("--policy")
            .arg(&policy)
            .arg("--inventory")
            .arg(out.join("inventory.yaml"))
            .arg("--tokens")
            .arg(out.join("tokens"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--witness",
                &format!("{witness_pub},http://{witness_addr}"),
            ])
            .env("KUBECONFIG", &auditor_kubeconfig),
        &out.join("auditor.log"),
    )?;
    let line = auditor.expect("serve listening on ").await?;
    let addr = line.trim_start_matches("serve listening on ").to_owned();

    step(
        started,
        "kubectl apply: a 5,000-user Workplace under Diffusion Restreinte (manifests/samples/workplace.yaml; images from the site's mirror, pinned by stand-in digests as the policy requires: kwok pulls no image)",
    );
    let sample = std::fs::read_to_string(repo.join("manifests/samples/workplace.yaml"))?;
    ensure!(
        sample.contains("provisioner: csi.example.fr"),
        "the sample Workplace changed: update the demo"
    );
    let workplace = out.join("workplace.yaml");
    ensure!(
        sample.contains("  profile: users5000\n"),
        "the sample Workplace changed: update the demo"
    );
    const VIDEO: &str = "  components:\n    jitsi-jvb:\n      replicas: 4\n";
    ensure!(
        sample.contains(VIDEO),
        "the sample Workplace changed: update the demo"
    );
    // Images from the site's mirror, which the auditor's inventory declares (the projects'
    // own registries are placed by nothing: each image would be a violation), each pinned by
    // digest as the policy requires: stand-in digests, since kwok nodes pull no image and no
    // registry is reachable here (a site pins the digests its mirror serves).
    let mirror = format!("{MIRROR}/hexagone");
    let catalog = hexagone_platform::catalog::Catalog::shipped().with_registry(&mirror)?;
    let mut components = String::from("  components:\n");
    for (i, c) in catalog.components.iter().enumerate() {
        let mut image = c.image.clone();
        image.digest = Some(format!("sha256:{:064x}", i + 1));
        components.push_str(&format!("    {}:\n      image: {image}\n", c.name));
        if c.name == "jitsi-jvb" {
            components.push_str("      replicas: 4\n");
        }
    }
    std::fs::write(
        &workplace,
        sample
            .replace(
                "provisioner: csi.example.fr",
                &format!("provisioner: {TEST_PROVISIONER}"),
            )
            .replace(
                "  profile: users5000\n",
                &format!("  profile: users5000\n  registry: {mirror}\n"),
            )
            .replace(VIDEO, &components),
    )?;
    kubectl(
        &bed,
        &["apply", "-f", workplace.to_str().unwrap_or_default()],
    )
    .await?;
    ready_and_sovereign(&bed, hexagone_testbed::sovereign::FRENCH.len(), None).await?;
    let placed = pods_per_node(&bed).await?;
    step(
        started,
        &format!("Ready and Sovereign: pods per node {placed:?}"),
    );
    ensure!(
        placed
            .keys()
            .all(|n| hexagone_testbed::sovereign::FRENCH.contains(&n.as_str())),
        "a pod runs on a node the policy does not admit: {placed:?}"
    );
    let size = settled(&addr).await?;
    step(
        started,
        &format!("the auditor recorded every bound volume ({size} entries)"),
    );
    let withdrawn_node = volume_node(&bed).await?;

    step(
        started,
        &format!(
            "activity: {DOCUMENTS} documents stored in MinIO (bucket notifications), two backups, one of them abroad"
        ),
    );
    for i in 0..DOCUMENTS {
        let (status, body) = http(
            &addr,
            "POST",
            "/v1/events/minio?endpoint=minio-gra&class=document",
            &token,
            &minio_event(i),
        )
        .await?;
        ensure!(status == 200, "document {i}: {status} {body}");
    }
    for (store, target) in [
        ("postgres/keycloak", "backup-outscale"),
        (FOREIGN_BACKUP_STORE, FOREIGN_BACKUP),
    ] {
        let body = serde_json::json!({
            "store": store, "class": "backup", "object": FOREIGN_BACKUP_OBJECT,
            "content": format!("{:064x}", store.len()), "endpoint": target,
        })
        .to_string();
        let (status, answer) = http(&addr, "POST", "/v1/observations", &token, &body).await?;
        ensure!(status == 200, "backup to {target}: {status} {answer}");
        println!(
            "         backup of {store} to {target}: {}",
            serde_json::from_str::<serde_json::Value>(&answer)?["entries"][0]["verdict"]
        );
    }

    step(
        started,
        &format!(
            "the security officer withdraws the attestation of {withdrawn_node} (it holds the most volumes)"
        ),
    );
    kubectl_officer(
        &bed,
        &["delete", "nodeattestation", withdrawn_node.as_str()],
    )
    .await?;
    // No Workplace pod left on it, every pod placed again, the status counting one node less.
    ready_and_sovereign(
        &bed,
        hexagone_testbed::sovereign::FRENCH.len() - 1,
        Some(withdrawn_node.as_str()),
    )
    .await?;
    let placed = pods_per_node(&bed).await?;
    step(
        started,
        &format!("pods moved; Sovereign again: pods per node {placed:?}"),
    );
    let entries = settled(&addr).await?;

    step(
        started,
        "stopping the auditor: it drains, signs and has the witness cosign a final checkpoint",
    );
    let rest = auditor.terminate().await?;
    ensure!(
        rest.contains("final checkpoint"),
        "no final checkpoint: {rest}"
    );
    drop(witness);
    let to = rfc3339(60)?;

    step(
        started,
        "the signed locality report (HTML, JSON), the export bundle, offline verification",
    );
    let report_html = out.join("report.html");
    let report_json = out.join("report.json");
    for r in [&report_html, &report_json] {
        run_ok(
            Command::new(&auditor_bin)
                .args(["report", "--ledger", &db, "--key"])
                .arg(&ledger_key)
                .args(["--from", &from, "--to", &to, "--out"])
                .arg(r),
        )
        .await?;
    }
    let bundle = out.join("ledger.bundle");
    run_ok(
        Command::new(&auditor_bin)
            .args(["export", "--db", &db, "--out"])
            .arg(&bundle),
    )
    .await?;
    for r in [&report_html, &report_json] {
        run_ok(
            Command::new(&auditor_bin)
                .args(["report", "verify", "--report"])
                .arg(r)
                .args(["--key", &ledger_pub, "--witness", &witness_pub, "--ledger"])
                .arg(&bundle),
        )
        .await?;
    }
    let verified = Command::new(&auditor_bin)
        .arg("verify")
        .arg(&bundle)
        .args([
            "--trust",
            &ledger_pub,
            "--witness",
            &witness_pub,
            "--witness-threshold",
            "1",
            "--policy",
        ])
        .arg(&policy)
        .output()
        .await?;
    let verify = (
        verified.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&verified.stdout),
            String::from_utf8_lossy(&verified.stderr)
        ),
    );
    std::fs::write(out.join("verify.txt"), &verify.1)?;
    // The accreditation auditor's sample: the foreign backup's entry, proven in the signed
    // and cosigned log, checked offline.
    let proof_file = out.join("backup.tlog-proof");
    run_ok(
        Command::new(&auditor_bin)
            .args(["prove", "--db", &db, "--object", FOREIGN_BACKUP_OBJECT])
            .args(["--store", FOREIGN_BACKUP_STORE, "--out"])
            .arg(&proof_file),
    )
    .await?;
    let checked = Command::new(&auditor_bin)
        .args(["prove", "verify"])
        .arg(&proof_file)
        .args(["--trust", &ledger_pub, "--witness", &witness_pub])
        .args([
            "--object",
            FOREIGN_BACKUP_OBJECT,
            "--store",
            FOREIGN_BACKUP_STORE,
        ])
        .arg("--policy")
        .arg(&policy)
        .output()
        .await?;
    let proof = (
        proof_file,
        checked.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        ),
    );
    step(
        started,
        &format!("done in {} s", started.elapsed().as_secs()),
    );
    Ok(Outcome {
        out,
        report_json,
        report_html,
        bundle,
        verify,
        proof,
        entries,
        withdrawn: withdrawn_node,
        fingerprint,
    })
}

/// Now plus `offset_s` seconds, RFC 3339 (UTC).
fn rfc3339(offset_s: i64) -> anyhow::Result<String> {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_s);
    Ok(t.replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?)
}

/// The signed report's model (the JSON report holds it under `report`, or is it).
pub fn report_model(outcome: &Outcome) -> anyhow::Result<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&outcome.report_json)?)?;
    Ok(if v.get("report").is_some() {
        v["report"].clone()
    } else {
        v
    })
}

/// What the demo shows, where its files are and what they prove: for the person who ran it.
pub fn summary(outcome: &Outcome) -> String {
    let r = report_model(outcome).unwrap_or_default();
    let t = &r["totals"]["verdicts"];
    let mut s = String::new();
    let p = |s: &mut String, l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    p(&mut s, String::new());
    p(
        &mut s,
        format!("Everything is in {}:", outcome.out.display()),
    );
    p(
        &mut s,
        format!(
            "  {}  the locality report for the security officer (open it in a browser)",
            outcome.report_html.display()
        ),
    );
    p(
        &mut s,
        format!(
            "  {}  the same, signed, as JSON (`hexagone-auditor report verify` checks it)",
            outcome.report_json.display()
        ),
    );
    p(
        &mut s,
        format!(
            "  {}  the ledger export for the accreditation auditor",
            outcome.bundle.display()
        ),
    );
    p(
        &mut s,
        format!(
            "  {}  an inclusion proof of the backup sent abroad, for checking one object offline",
            outcome.proof.0.display()
        ),
    );
    p(
        &mut s,
        "  ledger.key.pub, witness.key.pub  the keys to verify with; verify.txt  what verify said"
            .into(),
    );
    p(
        &mut s,
        format!(
            "  the ledger key's fingerprint: {} (compare it with the one the key holder gives you out of band; `sha256:` or bare hex are the same)",
            outcome.fingerprint
        ),
    );
    p(
        &mut s,
        "  operator.log, auditor.log, witness.log  what each process said".into(),
    );
    p(&mut s, String::new());
    p(
        &mut s,
        format!(
            "The ledger holds {} entries. The report's {} objects, by latest verdict: {} compliant, {} in violation, {} unknown.",
            outcome.entries, r["totals"]["objects"], t["compliant"], t["violation"], t["unknown"]
        ),
    );
    p(
        &mut s,
        "Open violations, then those resolved in the report's period:".into(),
    );
    for (state, key) in [
        ("open", "open_violations"),
        ("resolved", "resolved_violations"),
    ] {
        for v in r[key].as_array().into_iter().flatten() {
            p(
                &mut s,
                format!("  {state}: {}", v["headline"].as_str().unwrap_or_default()),
            );
        }
    }
    p(&mut s, String::new());
    p(&mut s, format!("verify exit {}:", outcome.verify.0));
    for l in outcome.verify.1.lines() {
        p(&mut s, format!("  {l}"));
    }
    p(&mut s, String::new());
    p(
        &mut s,
        format!(
            "prove verify {} exit {}:",
            outcome.proof.0.display(),
            outcome.proof.1
        ),
    );
    for l in outcome.proof.2.lines() {
        p(&mut s, format!("  {l}"));
    }
    p(&mut s, String::new());
    p(&mut s, "What this proves: the workplace ran only on attested French nodes of qualified operators; the German, US and AWS Paris".into());
    p(&mut s, "nodes received nothing; when an attestation was withdrawn, the pods moved and the auditor recorded it; the backup".into());
    p(
        &mut s,
        format!(
            "sent to {FOREIGN_BACKUP} (Germany) is recorded as a violation; and the ledger, signed and cosigned by a witness,"
        ),
    );
    p(
        &mut s,
        "verifies offline, every verdict recomputed from its evidence under the policy.".into(),
    );
    s
}
