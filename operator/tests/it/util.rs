//! Helpers shared by the operator tests: the test bed, the manifests, the operator under test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hexagone_operator::Settings;
use hexagone_platform::k8s::{LocalityPolicyResource, NodeAttestation};
use hexagone_platform::{AttestationSpec, Basis, LocalityPolicy};
use hexagone_testbed::ControlPlane;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::{Mutex, MutexGuard, oneshot};

/// How long a test waits for the cluster and the operator to converge.
pub const CONVERGE: Duration = Duration::from_secs(90);

/// The operator's ServiceAccount as a user name: RBAC binds it by that name.
pub const OPERATOR_USER: &str = "system:serviceaccount:hexagone-system:hexagone-operator";

/// The group the shipped RBAC lets write NodeAttestations.
pub const OFFICERS: &str = "hexagone:security-officers";

/// Control planes are heavy on a small machine: the tests of this binary take turns.
pub async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// Polls `check` until it yields a value, for at most [`CONVERGE`].
pub async fn eventually<T, E, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    Ok(hexagone_testbed::wait::until(what, CONVERGE, check).await?)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The files of `manifests/kustomization.yaml` that [`start`] installs: all but the auditor's
/// directory (`manifests.rs` checks the two lists agree).
pub const INSTALLED: &[&str] = &[
    "manifests/crds/localitypolicies.yaml",
    "manifests/crds/nodeattestations.yaml",
    "manifests/crds/latencymeasurements.yaml",
    "manifests/crds/workplaces.yaml",
    "manifests/operator.yaml",
    "manifests/rbac/operator.yaml",
    "manifests/rbac/security-officer.yaml",
    "manifests/admission/operator.yaml",
    "manifests/admission/backups.yaml",
];

/// Starts a control plane and installs what `kubectl apply -k manifests/` installs, but the
/// operator's Deployment (the operator runs in the test process, with its ServiceAccount's
/// identity) and the auditor: CRDs, namespace, ServiceAccount, ClusterRoles and bindings, the
/// admission guard on the operator's identity. `manifests.rs` checks this list is the
/// kustomization's.
pub async fn start() -> anyhow::Result<ControlPlane> {
    logs();
    let bed = ControlPlane::start().await?;
    let client = bed.client();
    let pp = PatchParams::apply("hexagone-test").force();
    for file in INSTALLED {
        let text = std::fs::read_to_string(repo().join(file))?;
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let value = serde_json::to_value(yaml_serde::Value::deserialize(doc)?)?;
            let kind = value["kind"].as_str().unwrap_or_default().to_owned();
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let ns = value["metadata"]["namespace"].as_str().map(str::to_owned);
            match kind.as_str() {
                "CustomResourceDefinition" => {
                    Api::<CustomResourceDefinition>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&value))
                        .await?;
                }
                "Namespace" => {
                    Api::<Namespace>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&value))
                        .await?;
                }
                "ServiceAccount" => {
                    Api::<ServiceAccount>::namespaced(client.clone(), ns.as_deref().unwrap())
                        .patch(&name, &pp, &Patch::Apply(&value))
                        .await?;
                }
                "ClusterRole" => {
                    Api::<ClusterRole>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&value))
                        .await?;
                }
                "Role" => {
                    Api::<Role>::namespaced(client.clone(), ns.as_deref().unwrap())
                        .patch(&name, &pp, &Patch::Apply(&value))
                        .await?;
                }
                "RoleBinding" => {
                    Api::<RoleBinding>::namespaced(client.clone(), ns.as_deref().unwrap())
                        .patch(&name, &pp, &Patch::Apply(&value))
                        .await?;
                }
                "ClusterRoleBinding" => {
                    Api::<ClusterRoleBinding>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&value))
                        .await?;
                }
                "ValidatingAdmissionPolicy" => {
                    Api::<ValidatingAdmissionPolicy>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&value))
                        .await?;
                }
                "ValidatingAdmissionPolicyBinding" => {
                    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&value))
                        .await?;
                }
                "Deployment" => {} // no image here: the operator runs in-process
                other => anyhow::bail!("{file}: unexpected kind {other}"),
            }
        }
    }
    for name in [
        "localitypolicies.hexagone.fr",
        "nodeattestations.hexagone.fr",
        "workplaces.hexagone.fr",
    ] {
        bed.crd_established(name, CONVERGE).await?;
    }
    Ok(bed)
}

use serde::Deserialize as _;

/// The operator's log in the test's captured output (shown when a test fails): `RUST_LOG`, or
/// the operator's info lines.
fn logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("hexagone_operator=info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The operator running in this process with its ServiceAccount's identity; stopped on drop.
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The metrics endpoint.
    pub metrics_addr: std::net::SocketAddr,
}

impl Operator {
    /// Starts it.
    pub async fn start(bed: &ControlPlane) -> anyhow::Result<Operator> {
        Self::start_as(bed, "replica-a").await
    }

    /// Starts a replica with its own Lease identity.
    pub async fn start_as(bed: &ControlPlane, identity: &str) -> anyhow::Result<Operator> {
        let client = bed.client_as(OPERATOR_USER, None).await?;
        let metrics_addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?
        };
        let settings = Settings {
            geo_dir: Some(PathBuf::from(hexagone_platform::geo::SOURCE_GEO_DIR)),
            metrics_addr,
            reporter: "hexagone-operator".into(),
            lease_namespace: "hexagone-system".into(),
            identity: Some(identity.into()),
            lease_seconds: 6,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(hexagone_operator::run_with(client, settings, async move {
            let _ = stopped.await;
        }));
        Ok(Operator {
            stop: Some(stop),
            task,
            metrics_addr,
        })
    }

    /// Fails if the operator stopped on its own (with its error).
    pub fn check_running(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.task.is_finished(), "the operator stopped");
        Ok(())
    }

    /// GET on the metrics endpoint.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let addr = self.metrics_addr.to_string();
        let a = hexagone_testbed::http::request_async(
            &addr,
            "GET",
            path,
            None,
            b"",
            hexagone_testbed::http::DEFAULT_TIMEOUT,
        )
        .await?;
        Ok((a.status, a.body))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// A shipped policy as a LocalityPolicy resource named `name`.
pub fn policy(name: &str, file: &str) -> LocalityPolicyResource {
    let spec = LocalityPolicy::from_file(&repo().join("policies").join(format!("{file}.yaml")))
        .unwrap_or_else(|e| panic!("{e}"));
    LocalityPolicyResource::new(name, spec)
}

/// A NodeAttestation of `node` (provider ID `kwok://<node>`) in `country`, valid until `until`.
pub fn attestation(node: &str, country: &str, until: &str) -> NodeAttestation {
    NodeAttestation::new(
        &format!("{node}-attestation"),
        AttestationSpec {
            node_name: node.into(),
            provider_id: format!("kwok://{node}"),
            country: country.parse().unwrap(),
            hosting_company: "OVH SAS".into(),
            site: "Gravelines GRA3".into(),
            // The zone the test bed's node is in, as a security officer attests it.
            zone: hexagone_testbed::sovereign::zone(node),
            basis: Basis::Contract,
            reference: Some("contract 2026-042".into()),
            attested_by: "rssi@ministere.example.fr".into(),
            valid_until: until.into(),
        },
    )
}

/// Creates `resource` with `client` (whose identity decides whether it may).
pub async fn create_attestation(
    client: &Client,
    a: &NodeAttestation,
) -> Result<NodeAttestation, kube::Error> {
    Api::<NodeAttestation>::all(client.clone())
        .create(&PostParams::default(), a)
        .await
}

/// The HTTP status of a failed API call, 0 for any other failure.
pub fn status_of(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        _ => 0,
    }
}

pub use hexagone_testbed::provisioner::{Provisioner, TEST_PROVISIONER};

/// Every catalog component's image, from `registry` when given (a mirror, as `spec.registry`
/// rewrites it), pinned by a stand-in digest: `sha256:` and 64 hex digits numbering it. The
/// shipped strict policies require digests, and kwok nodes pull no image, so no registry is
/// asked; a site pins the digests its mirror serves.
pub fn pinned_components(registry: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
    let catalog = hexagone_platform::catalog::Catalog::shipped();
    let catalog = match registry {
        Some(r) => catalog.with_registry(r).expect("a registry"),
        None => catalog.clone(),
    };
    catalog
        .components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut image = c.image.clone();
            image.digest = Some(format!("sha256:{:064x}", i + 1));
            (
                c.name.clone(),
                serde_json::json!({"image": image.to_string()}),
            )
        })
        .collect()
}
