//! The control plane itself: starts etcd, kube-apiserver, kube-scheduler,
//! kube-controller-manager and kwok on loopback, waits for each, and stops them all on drop.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::Error;
use crate::node::{FakeNode, KWOK_NODE_ANNOTATION, KWOK_NODE_VALUE, ready_status};
use crate::pki::{Authority, Pair, ServiceAccountKeys};
use crate::process::Process;
use crate::wait::{self, http_get};
use crate::{kubeconfig, kubectl, ports};

/// The variable naming the directory that `tests/scripts/controlplane.sh` printed.
pub const BIN_ENV: &str = "HEXAGONE_CONTROLPLANE_BIN";
/// Set to `1` to keep every test bed's directory (logs, certificates, kubeconfigs) after it
/// stops; a test bed that failed to start, or was dropped during a panic, keeps it anyway.
pub const KEEP_ENV: &str = "HEXAGONE_TESTBED_KEEP";
/// Overrides how long (in seconds) each component gets to become ready.
pub const TIMEOUT_ENV: &str = "HEXAGONE_TESTBED_TIMEOUT_SECS";

const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(15);
const BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
    "kwok",
];
const KWOK_STAGES: &str = "kwok-stages.yaml";
const SERVICE_CIDR: &str = "10.96.0.0/16";
const POD_CIDR: &str = "10.244.0.0/16";

/// The loopback ports of one test bed.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// etcd client port (plain HTTP).
    pub etcd_client: u16,
    /// etcd peer port.
    pub etcd_peer: u16,
    /// kube-apiserver secure port.
    pub apiserver: u16,
    /// kube-scheduler secure (health) port.
    pub scheduler: u16,
    /// kube-controller-manager secure (health) port.
    pub controller_manager: u16,
    /// kwok's HTTP server (health, metrics).
    pub kwok: u16,
}

/// A running Kubernetes control plane with kwok fake nodes, all on 127.0.0.1.
///
/// Every component runs from its own directory under one temporary directory, on ports no other
/// test bed of this process uses. Dropping the value kills every process (and its process
/// group), also while a test panics.
pub struct ControlPlane {
    // Declared in stop order: fields drop top to bottom.
    kwok: Process,
    controller_manager: Process,
    scheduler: Process,
    apiserver: Process,
    etcd: Process,
    client: Client,
    ports: Ports,
    kubeconfig: PathBuf,
    bin: PathBuf,
    ready_timeout: Duration,
    ca: Authority,
    pki: PathBuf,
    dir: tempfile::TempDir,
}

struct Layout {
    root: PathBuf,
}

impl Layout {
    fn component(&self, name: &str) -> Result<PathBuf, Error> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(dir)
    }
}

fn args<const N: usize>(list: [String; N]) -> Vec<OsString> {
    list.into_iter().map(OsString::from).collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

impl ControlPlane {
    /// Starts a whole control plane and waits until every component is ready and the
    /// controllers work (the `default` service account exists).
    ///
    /// Binaries come from the directory named by [`BIN_ENV`]; without it this fails with the
    /// command to run.
    pub async fn start() -> Result<ControlPlane, Error> {
        Self::start_from(&bin_dir()?).await
    }

    /// Like [`ControlPlane::start`], with the binaries taken from `bin` (a directory laid out
    /// as `tests/scripts/controlplane.sh` builds it).
    pub async fn start_from(bin: &Path) -> Result<ControlPlane, Error> {
        let bin = bin_dir_from(Some(bin.as_os_str().to_owned()))?;
        let ready_timeout = std::env::var(TIMEOUT_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_READY_TIMEOUT);

        let mut dir = tempfile::Builder::new()
            .prefix("hexagone-testbed-")
            .tempdir()
            .map_err(|e| Error::io("creating the test bed directory", e))?;
        // Kept until the start succeeds, so the logs named in a start error still exist.
        dir.disable_cleanup(true);
        let keep = std::env::var(KEEP_ENV).is_ok_and(|v| v == "1");
        let layout = Layout {
            root: dir.path().to_owned(),
        };

        let p = ports::reserve(6)?;
        let ports = Ports {
            etcd_client: p[0],
            etcd_peer: p[1],
            apiserver: p[2],
            scheduler: p[3],
            controller_manager: p[4],
            kwok: p[5],
        };
        let server = format!("https://127.0.0.1:{}", ports.apiserver);

        let pki = layout.component("pki")?;
        let ca = Authority::create(&pki)?;
        let ca_pem = ca.cert_pem();
        let sa = ServiceAccountKeys::create(&pki)?;
        let apiserver_serving = ca.serving(&pki, "kube-apiserver")?;
        let scheduler_serving = ca.serving(&pki, "kube-scheduler-serving")?;
        let cm_serving = ca.serving(&pki, "kube-controller-manager-serving")?;
        let admin = ca.client(&pki, "admin", "hexagone-admin", Some("system:masters"))?;
        let scheduler_client = ca.client(&pki, "kube-scheduler", "system:kube-scheduler", None)?;
        let cm_client = ca.client(
            &pki,
            "kube-controller-manager",
            "system:kube-controller-manager",
            None,
        )?;
        let kwok_client = ca.client(&pki, "kwok", "kwok-controller", Some("system:masters"))?;
        let front_proxy = ca.client(&pki, "front-proxy-client", "front-proxy-client", None)?;

        let kubeconfig = layout.root.join("admin.kubeconfig");
        kubeconfig::write(&kubeconfig, &server, &ca_pem, "admin", &admin)?;

        // etcd
        let etcd_dir = layout.component("etcd")?;
        let etcd_url = format!("http://127.0.0.1:{}", ports.etcd_client);
        let peer_url = format!("http://127.0.0.1:{}", ports.etcd_peer);
        let mut etcd = Process::new(
            "etcd",
            bin.join("etcd"),
            args([
                "--name=testbed".to_owned(),
                format!("--data-dir={}", path(&etcd_dir.join("data"))),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=testbed={peer_url}"),
                "--initial-cluster-state=new".to_owned(),
                // Test data: durability across a machine crash is not needed, speed is.
                "--unsafe-no-fsync=true".to_owned(),
                "--log-level=warn".to_owned(),
            ]),
            &etcd_dir,
        );
        etcd.start()?;
        let etcd_port = ports.etcd_client;
        wait_process(&mut etcd, ready_timeout, || async move {
            match http_get(etcd_port, "/health").await? {
                (200, body) if body.contains("\"true\"") => Ok(()),
                (status, body) => Err(format!("HTTP {status}: {body}")),
            }
        })
        .await?;

        // kube-apiserver
        let apiserver_dir = layout.component("kube-apiserver")?;
        let mut apiserver = Process::new(
            "kube-apiserver",
            bin.join("kube-apiserver"),
            apiserver_args(
                &ports,
                &etcd_url,
                &ca.cert_file,
                &apiserver_serving,
                &front_proxy,
                &sa,
            ),
            &apiserver_dir,
        );
        apiserver.start()?;
        let client = client_from(&kubeconfig, None).await?;
        wait_healthz(&mut apiserver, &client, "/readyz", ready_timeout).await?;

        // kube-scheduler, kube-controller-manager and kwok, started together.
        let scheduler_dir = layout.component("kube-scheduler")?;
        let scheduler_kubeconfig = scheduler_dir.join("kubeconfig");
        kubeconfig::write(
            &scheduler_kubeconfig,
            &server,
            &ca_pem,
            "system:kube-scheduler",
            &scheduler_client,
        )?;
        let mut scheduler = Process::new(
            "kube-scheduler",
            bin.join("kube-scheduler"),
            args([
                format!("--kubeconfig={}", path(&scheduler_kubeconfig)),
                format!(
                    "--authentication-kubeconfig={}",
                    path(&scheduler_kubeconfig)
                ),
                format!("--authorization-kubeconfig={}", path(&scheduler_kubeconfig)),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", ports.scheduler),
                format!("--tls-cert-file={}", path(&scheduler_serving.cert_file)),
                format!(
                    "--tls-private-key-file={}",
                    path(&scheduler_serving.key_file)
                ),
                "--leader-elect=false".to_owned(),
            ]),
            &scheduler_dir,
        );

        let cm_dir = layout.component("kube-controller-manager")?;
        let cm_kubeconfig = cm_dir.join("kubeconfig");
        kubeconfig::write(
            &cm_kubeconfig,
            &server,
            &ca_pem,
            "system:kube-controller-manager",
            &cm_client,
        )?;
        let mut controller_manager = Process::new(
            "kube-controller-manager",
            bin.join("kube-controller-manager"),
            args([
                format!("--kubeconfig={}", path(&cm_kubeconfig)),
                format!("--authentication-kubeconfig={}", path(&cm_kubeconfig)),
                format!("--authorization-kubeconfig={}", path(&cm_kubeconfig)),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", ports.controller_manager),
                format!("--tls-cert-file={}", path(&cm_serving.cert_file)),
                format!("--tls-private-key-file={}", path(&cm_serving.key_file)),
                format!("--root-ca-file={}", path(&ca.cert_file)),
                format!(
                    "--service-account-private-key-file={}",
                    path(&sa.private_file)
                ),
                "--use-service-account-credentials=true".to_owned(),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                format!("--cluster-cidr={POD_CIDR}"),
                "--leader-elect=false".to_owned(),
            ]),
            &cm_dir,
        );

        let kwok_dir = layout.component("kwok")?;
        let kwok_kubeconfig = kwok_dir.join("kubeconfig");
        kubeconfig::write(&kwok_kubeconfig, &server, &ca_pem, "kwok", &kwok_client)?;
        let mut kwok = Process::new(
            "kwok",
            bin.join("kwok"),
            args([
                format!("--kubeconfig={}", path(&kwok_kubeconfig)),
                format!("--config={}", path(&bin.join(KWOK_STAGES))),
                "--manage-all-nodes=false".to_owned(),
                format!(
                    "--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_VALUE}"
                ),
                "--node-lease-duration-seconds=40".to_owned(),
                format!("--server-address=127.0.0.1:{}", ports.kwok),
                "--cidr=10.244.0.0/16".to_owned(),
            ]),
            &kwok_dir,
        )
        // kwok also loads ~/.kwok/kwok.yaml when it exists: keep a person's file out.
        .env("HOME", &kwok_dir);

        scheduler.start()?;
        controller_manager.start()?;
        kwok.start()?;
        let mut plane = ControlPlane {
            kwok,
            controller_manager,
            scheduler,
            apiserver,
            etcd,
            client,
            ports,
            kubeconfig,
            bin,
            ready_timeout,
            ca,
            pki,
            dir,
        };
        plane.wait_components().await?;
        plane.dir.disable_cleanup(keep);
        Ok(plane)
    }

    async fn wait_components(&mut self) -> Result<(), Error> {
        let timeout = self.ready_timeout;
        let scheduler = client_from(&self.kubeconfig, Some(self.ports.scheduler)).await?;
        wait_healthz(&mut self.scheduler, &scheduler, "/healthz", timeout).await?;
        let cm = client_from(&self.kubeconfig, Some(self.ports.controller_manager)).await?;
        wait_healthz(&mut self.controller_manager, &cm, "/healthz", timeout).await?;
        let kwok_port = self.ports.kwok;
        wait_process(&mut self.kwok, timeout, || async move {
            match http_get(kwok_port, "/healthz").await? {
                (200, _) => Ok(()),
                (status, body) => Err(format!("HTTP {status}: {body}")),
            }
        })
        .await?;
        // The controllers really work once the service-account controller made `default`.
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), "default");
        wait_process(&mut self.controller_manager, timeout, || {
            let accounts = accounts.clone();
            async move {
                match accounts.get_opt("default").await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("no service account default/default yet".to_owned()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    }

    /// Waits, at most `timeout`, until the CustomResourceDefinition `name` is Established (its
    /// kind can be served).
    pub async fn crd_established(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<(), wait::Timeout> {
        let crds = Api::<CustomResourceDefinition>::all(self.client());
        wait::until(format!("CRD {name} established"), timeout, || {
            let crds = crds.clone();
            async move {
                let crd = crds.get(name).await.map_err(|e| e.to_string())?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established
                    .then_some(())
                    .ok_or_else(|| "not Established".to_owned())
            }
        })
        .await
    }

    /// A client authenticated as a cluster admin (group `system:masters`).
    ///
    /// It keeps working across [`ControlPlane::restart_apiserver`].
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client authenticated by a client certificate as `user` in `group` (if any): a kubelet
    /// (`system:node:NAME` in `system:nodes`), a security officer, an operator's account. What
    /// it may do is decided by the apiserver (Node and RBAC authorizers, admission plugins).
    pub async fn client_as(&self, user: &str, group: Option<&str>) -> Result<Client, Error> {
        client_from(&self.kubeconfig_as(user, group)?, None).await
    }

    /// A client with the identity the kubelet of node `name` has: user `system:node:<name>` in
    /// group `system:nodes`.
    pub async fn kubelet_client(&self, name: &str) -> Result<Client, Error> {
        self.client_as(&format!("system:node:{name}"), Some("system:nodes"))
            .await
    }

    /// Writes a kubeconfig for `user` in `group` and returns its path, for a process under test
    /// that should run with that identity (an operator, kubectl as a security officer).
    pub fn kubeconfig_as(&self, user: &str, group: Option<&str>) -> Result<PathBuf, Error> {
        let name = format!(
            "user-{}",
            user.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        let pair = self.ca.client(&self.pki, &name, user, group)?;
        let path = self.pki.join(format!("{name}.kubeconfig"));
        kubeconfig::write(&path, &self.server_url(), &self.ca.cert_pem(), user, &pair)?;
        Ok(path)
    }

    /// The admin kubeconfig file, for tools such as kubectl or a process under test.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Runs kubectl (from the bin dir, same Kubernetes pin) with `args` as the cluster admin and
    /// returns its exit status and output, whether it succeeded or not: a test may expect a
    /// refusal. Fails with [`Error::MissingBinary`] when the bin dir has no kubectl (built
    /// before kubectl joined the test bed: rebuild it), with [`Error::KubectlTimedOut`] when it
    /// runs longer than a component may take to become ready.
    ///
    /// Relative paths in `args` are taken from the test's working directory (its crate's root
    /// under `cargo test`); nothing of the person's own kubeconfig or `~/.kube` is used.
    pub async fn kubectl<I, S>(&self, args: I) -> Result<Output, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_with(&self.kubeconfig, args).await
    }

    /// Like [`ControlPlane::kubectl`], authenticated by a client certificate as `user` in
    /// `group` (see [`ControlPlane::kubeconfig_as`]): what a security officer, an ops engineer or
    /// an operator's account sees and may do with the tool people use.
    pub async fn kubectl_as<I, S>(
        &self,
        user: &str,
        group: Option<&str>,
        args: I,
    ) -> Result<Output, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let kubeconfig = self.kubeconfig_as(user, group)?;
        self.kubectl_with(&kubeconfig, args).await
    }

    async fn kubectl_with<I, S>(&self, kubeconfig: &Path, args: I) -> Result<Output, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let binary = kubectl::binary(&self.bin)?;
        let home = self.dir.path().join("kubectl");
        kubectl::run(&binary, kubeconfig, &home, args, self.ready_timeout).await
    }

    /// The API server URL (`https://127.0.0.1:<port>`).
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver)
    }

    /// The ports this test bed listens on.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The directory holding every component's files and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log file of a component (`etcd`, `kube-apiserver`, `kube-scheduler`,
    /// `kube-controller-manager`, `kwok`).
    pub fn log_path(&self, component: &str) -> Option<&Path> {
        [
            &self.etcd,
            &self.apiserver,
            &self.scheduler,
            &self.controller_manager,
            &self.kwok,
        ]
        .into_iter()
        .find(|p| p.component == component)
        .map(|p| p.log.as_path())
    }

    /// Stops the API server (SIGTERM, then SIGKILL after a grace period). etcd and the other
    /// components keep running; clients see connection errors until [`Self::start_apiserver`].
    pub async fn stop_apiserver(&mut self) -> Result<(), Error> {
        self.apiserver.stop(STOP_GRACE).await
    }

    /// Kills the API server at once (SIGKILL), as a crash would.
    pub async fn kill_apiserver(&mut self) -> Result<(), Error> {
        self.apiserver.kill().await
    }

    /// Starts the API server again with the same ports, certificates and etcd, and waits for
    /// `/readyz`.
    pub async fn start_apiserver(&mut self) -> Result<(), Error> {
        self.apiserver.start()?;
        wait_healthz(
            &mut self.apiserver,
            &self.client,
            "/readyz",
            self.ready_timeout,
        )
        .await
    }

    /// Stops then starts the API server.
    pub async fn restart_apiserver(&mut self) -> Result<(), Error> {
        self.stop_apiserver().await?;
        self.start_apiserver().await
    }

    /// Creates kwok-managed nodes from their descriptions and waits until each is `Ready`.
    pub async fn add_nodes(&self, nodes: &[FakeNode]) -> Result<Vec<Node>, Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        for fake in nodes {
            if fake.name.is_empty() {
                return Err(Error::InvalidNode {
                    node: String::new(),
                    detail: "empty name".to_owned(),
                });
            }
            api.create(&PostParams::default(), &fake.to_node())
                .await
                .map_err(|e| Error::kube(format!("creating fake node {}", fake.name), e))?;
        }
        let mut ready = Vec::with_capacity(nodes.len());
        for fake in nodes {
            let start = Instant::now();
            let result = wait::until(
                format!("fake node {} Ready", fake.name),
                self.ready_timeout,
                || {
                    let api = api.clone();
                    let name = fake.name.clone();
                    async move {
                        let node = api.get(&name).await.map_err(|e| e.to_string())?;
                        match ready_status(&node) {
                            Some("True") => Ok(node),
                            other => Err(format!("Ready condition {other:?}")),
                        }
                    }
                },
            )
            .await;
            match result {
                Ok(node) => ready.push(self.settle_addresses(&api, fake, node).await?),
                Err(timeout) => {
                    return Err(Error::NodeNotReady {
                        node: fake.name.clone(),
                        waited: start.elapsed(),
                        last: timeout.last,
                        log: self.kwok.log.clone(),
                        tail: self.kwok.tail(),
                    });
                }
            }
        }
        Ok(ready)
    }
}

impl ControlPlane {
    /// kwok's initial stage writes its own address list when the declared one lacks an
    /// `InternalIP`; put the declared list back (the heartbeat stage keeps whatever is there).
    async fn settle_addresses(
        &self,
        api: &Api<Node>,
        fake: &FakeNode,
        node: Node,
    ) -> Result<Node, Error> {
        // kwok may apply its initial stage once more right after the node turns Ready (its
        // cache still shows it not Ready: two status patches 16 ms apart were seen), writing its
        // own list over the declared one: put it back until it stays, read again after a pause.
        let wanted = fake.status_addresses();
        let addresses = |n: &Node| {
            n.status
                .as_ref()
                .and_then(|s| s.addresses.clone())
                .unwrap_or_default()
        };
        let mut node = node;
        for _ in 0..20 {
            if addresses(&node) != wanted {
                let patch = serde_json::json!({ "status": { "addresses": wanted } });
                api.patch_status(&fake.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| {
                        Error::kube(
                            format!("setting the addresses of fake node {}", fake.name),
                            e,
                        )
                    })?;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let again = api
                .get(&fake.name)
                .await
                .map_err(|e| Error::kube(format!("reading fake node {}", fake.name), e))?;
            if addresses(&again) == wanted {
                return Ok(again);
            }
            node = again;
        }
        Err(Error::InvalidNode {
            node: fake.name.clone(),
            detail: format!(
                "its addresses did not stay as declared: {:?}",
                addresses(&node)
            ),
        })
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server_url())
            .field("ports", &self.ports)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "hexagone-testbed: test panicked, control plane files and logs kept in {}",
                self.dir.path().display()
            );
        }
        // The processes are killed by their own Drop, in field order.
    }
}

fn bin_dir() -> Result<PathBuf, Error> {
    bin_dir_from(std::env::var_os(BIN_ENV))
}

fn bin_dir_from(var: Option<OsString>) -> Result<PathBuf, Error> {
    let bin = var
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or(Error::BinariesNotConfigured { var: BIN_ENV })?;
    for name in BINARIES.iter().chain([&KWOK_STAGES]) {
        let path = bin.join(name);
        if !path.is_file() {
            return Err(Error::MissingBinary { path });
        }
    }
    Ok(bin)
}

fn apiserver_args(
    ports: &Ports,
    etcd_url: &str,
    ca_file: &Path,
    serving: &Pair,
    front_proxy: &Pair,
    sa: &ServiceAccountKeys,
) -> Vec<OsString> {
    args([
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        format!("--secure-port={}", ports.apiserver),
        format!("--tls-cert-file={}", path(&serving.cert_file)),
        format!("--tls-private-key-file={}", path(&serving.key_file)),
        format!("--client-ca-file={}", path(ca_file)),
        "--authorization-mode=Node,RBAC".to_owned(),
        // NodeRestriction: a kubelet may modify only its own Node and pods bound to it, and may
        // not set labels under node-restriction.kubernetes.io/. Hexagone's attested label relies
        // on it; tests prove it with a kubelet's identity.
        "--enable-admission-plugins=NodeRestriction".to_owned(),
        // Front-proxy (aggregation) settings, as kubeadm sets them: the scheduler and the
        // controller-manager read this CA for delegated authentication, and aggregated API
        // servers need the proxy client certificate.
        format!("--requestheader-client-ca-file={}", path(ca_file)),
        "--requestheader-allowed-names=front-proxy-client".to_owned(),
        "--requestheader-username-headers=X-Remote-User".to_owned(),
        "--requestheader-group-headers=X-Remote-Group".to_owned(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_owned(),
        format!("--proxy-client-cert-file={}", path(&front_proxy.cert_file)),
        format!("--proxy-client-key-file={}", path(&front_proxy.key_file)),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
        format!("--service-account-key-file={}", path(&sa.public_file)),
        format!(
            "--service-account-signing-key-file={}",
            path(&sa.private_file)
        ),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        // A loopback address may not appear in the `kubernetes` Endpoints; nothing in the test
        // bed routes to it anyway.
        "--endpoint-reconciler-type=none".to_owned(),
        "--profiling=false".to_owned(),
    ])
}

/// A client from the admin kubeconfig; with `port`, aimed at another component's secure port
/// (their serving certificates come from the same CA).
async fn client_from(kubeconfig: &Path, port: Option<u16>) -> Result<Client, Error> {
    let err = |detail: String| Error::Client {
        path: kubeconfig.to_owned(),
        detail,
    };
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.to_string()))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    if let Some(port) = port {
        config.cluster_url = format!("https://127.0.0.1:{port}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| err(e.to_string()))?;
    }
    config.connect_timeout = Some(Duration::from_secs(5));
    // Longer than a watch may stay idle (the API server ends a watch after 290 s, and kube's
    // watcher has its own idle timeout): a shorter read timeout cut every quiet watch, and the
    // watchers' backoff, reset only after two minutes without an error, then grew to 30 s, so
    // the controllers under test saw a change up to 30 s late per watch.
    config.read_timeout = Some(Duration::from_secs(300));
    Client::try_from(config).map_err(|e| err(e.to_string()))
}

async fn wait_healthz(
    process: &mut Process,
    client: &Client,
    endpoint: &'static str,
    timeout: Duration,
) -> Result<(), Error> {
    wait_process(process, timeout, || {
        let client = client.clone();
        async move {
            let request = http::Request::get(endpoint)
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => Ok(()),
                Ok(body) => Err(format!("{endpoint}: {body}")),
                Err(e) => Err(format!("{endpoint}: {e}")),
            }
        }
    })
    .await
}

/// Polls `check` until it passes, failing early (with the log tail) if the process exits.
async fn wait_process<F, Fut>(
    process: &mut Process,
    timeout: Duration,
    mut check: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        process.check_running()?;
        let last = match check().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if start.elapsed() >= timeout {
            return Err(Error::NotReady {
                component: process.component,
                waited: start.elapsed(),
                last,
                log: process.log.clone(),
                tail: process.tail(),
            });
        }
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_bin_variable_says_how_to_build() {
        let err = bin_dir_from(None).unwrap_err();
        assert!(matches!(err, Error::BinariesNotConfigured { .. }));
        assert!(
            err.to_string().contains("tests/scripts/controlplane.sh"),
            "{err}"
        );
        let empty = bin_dir_from(Some(OsString::new())).unwrap_err();
        assert!(matches!(empty, Error::BinariesNotConfigured { .. }));
    }

    #[test]
    fn incomplete_bin_dir_names_the_missing_binary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd"), "").unwrap();
        let err = bin_dir_from(Some(dir.path().as_os_str().to_owned())).unwrap_err();
        match err {
            Error::MissingBinary { path } => assert_eq!(path, dir.path().join("kube-apiserver")),
            other => panic!("expected MissingBinary, got {other}"),
        }
    }
}
