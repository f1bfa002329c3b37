//! The Hexagone operator: qualifies nodes against locality policies (attestations included),
//! mirrors valid attestations into the `node-restriction.kubernetes.io/` label, and explains each
//! decision in LocalityPolicy status, Events and metrics.
//!
//! The binary parses its command line into [`Config`] and calls [`run`]; tests call
//! [`run_with`] with a client of their own identity.

mod changes;
pub mod crds;
pub mod metrics;
mod patch;
pub mod qualifier;
pub mod render;
mod watches;
pub mod workplace;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hexagone_platform::geo::{GeoDatabases, GeoPaths};

/// The label (key, value) of a namespace onboarded for Workplaces. The admission guard on the
/// operator's identity (`manifests/admission/operator.yaml`) refuses the operator's writes in any
/// namespace without it; the cluster administrator sets it when the security officer lists the
/// namespace in a LocalityPolicy. The operator cannot set it: it may not write Namespaces.
pub const ONBOARDED_NAMESPACE_LABEL: (&str, &str) = ("hexagone.fr/workplaces", "allowed");

/// Command line of `hexagone-operator`.
#[derive(Debug, Parser)]
#[command(name = "hexagone-operator", version, about)]
pub struct Config {
    /// What to do (default: run the controllers).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of the controllers.
    #[command(flatten)]
    pub settings: Settings,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controllers against the cluster of the current kubeconfig (or in-cluster).
    Run,
    /// Print the CustomResourceDefinitions (YAML), as committed under `manifests/crds/`.
    Crds,
    /// Print, offline, every object the Workplaces of a file produce, as one YAML stream
    /// (exit code 2, naming what is unknown, when a Workplace cannot be rendered).
    Render(RenderArgs),
}

/// Arguments of `render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The file holding the Workplace (other documents in it are skipped).
    #[arg(short = 'f', long = "filename", value_name = "WORKPLACE")]
    pub file: PathBuf,
    /// A zone holding eligible nodes (repeat, or separate with commas); without any, no
    /// StorageClass is rendered, as the operator does when no zone is eligible.
    #[arg(long = "zone", value_name = "Z", value_delimiter = ',')]
    pub zones: Vec<String>,
    /// Render into this namespace instead of the Workplace's own.
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
}

/// Settings of the running operator (accepted before or after `run`).
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Directory of the ip-location-db layout (location, registration and AS databases).
    /// Default: the bundled data installed next to the binary
    /// (`<bin>/../share/hexagone/ip-location-db`), else the copy built into the binary.
    #[arg(global = true, long, value_name = "DIR", env = "HEXAGONE_GEO_DIR")]
    pub geo_dir: Option<PathBuf>,
    /// Address of the HTTP endpoint for /metrics, /healthz and /readyz.
    #[arg(
        global = true,
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub metrics_addr: SocketAddr,
    /// Name the operator reports Events under (its Deployment's name).
    #[arg(global = true, long, default_value = "hexagone-operator")]
    pub reporter: String,
    /// Namespace of the Lease that elects the one active replica.
    #[arg(
        global = true,
        long,
        env = "POD_NAMESPACE",
        default_value = "hexagone-system"
    )]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (default: the pod name, else host and process).
    #[arg(global = true, long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader holds the Lease without renewing it; a standby takes over after that.
    #[arg(global = true, long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    pub lease_seconds: u64,
}

/// Name of the Lease the replicas compete for.
pub const LEASE_NAME: &str = "hexagone-operator";

/// Runs the operator with a parsed configuration.
pub fn run(config: Config) -> anyhow::Result<()> {
    match config.command.unwrap_or(Command::Run) {
        Command::Crds => {
            print!("{}", crds::render());
            Ok(())
        }
        Command::Render(args) => {
            let text = std::fs::read_to_string(&args.file)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let request = render::RenderRequest {
                namespace: args.namespace,
                zones: args.zones,
            };
            print!(
                "{}",
                render::render_file(&args.file.display().to_string(), &text, &request)?
            );
            Ok(())
        }
        Command::Run => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async {
                // SIGTERM is how Kubernetes stops a pod: release the Lease then too. The
                // handlers are installed here, before anything runs, so that a signal arriving
                // early is heard rather than ending the process with the Lease still held.
                use tokio::signal::unix::{SignalKind, signal};
                let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
                let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
                let shutdown = async move {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                };
                let client = kube::Client::try_default()
                    .await
                    .context("connecting to the cluster (KUBECONFIG or in-cluster)")?;
                run_with(client, config.settings, shutdown).await
            })
        }
    }
}

/// Runs the controllers with `client` until `shutdown` completes.
pub async fn run_with(
    client: kube::Client,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let geo_dir = match &settings.geo_dir {
        Some(dir) => dir.clone(),
        None => hexagone_platform::geo::bundled_geo_dir(&std::env::current_exe()?),
    };
    let geo = GeoDatabases::open(&GeoPaths::ip_location_db(&geo_dir))
        .with_context(|| format!("opening the geolocation databases in {}", geo_dir.display()))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let listener = tokio::net::TcpListener::bind(settings.metrics_addr)
        .await
        .with_context(|| format!("listening on {}", settings.metrics_addr))?;
    let server = metrics::serve(listener, metrics.clone());
    let identity = settings.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
        .with_namespace(settings.lease_namespace.clone())
        .with_identity(identity.clone())
        .with_duration(settings.lease_seconds)
        .with_grace((settings.lease_seconds / 3).max(1))
        .with_field_manager(workplace::FIELD_MANAGER)
        .build()
        .await
        .with_context(|| {
            format!(
                "opening Lease {}/{LEASE_NAME} for leader election",
                settings.lease_namespace
            )
        })?;
    let (mut leader, lease_task) = lease.watch().await;
    let geo = Arc::new(geo);
    let controllers = {
        let metrics = metrics.clone();
        let reporter = settings.reporter.clone();
        async move {
            loop {
                if !*leader.borrow_and_update() {
                    // A standby is ready: it is up and will take over (a Deployment rollout
                    // must not wait for it to lead).
                    metrics.set_ready();
                }
                while !*leader.borrow_and_update() {
                    leader
                        .changed()
                        .await
                        .context("the leader election stopped")?;
                }
                tracing::info!("{identity} holds Lease {LEASE_NAME}: controllers start");
                metrics.leader.set(1);
                let context = Arc::new(workplace::Context::new(
                    client.clone(),
                    geo.clone(),
                    metrics.clone(),
                    &reporter,
                ));
                let qualifier = qualifier::NodeQualifier::new(
                    client.clone(),
                    geo.clone(),
                    metrics.clone(),
                    &reporter,
                    context.node_feed(),
                );
                let workplaces = workplace::run(context);
                let lost = async {
                    loop {
                        if leader.changed().await.is_err() || !*leader.borrow() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    r = qualifier.run() => return r,
                    () = workplaces => anyhow::bail!("the Workplace controller stopped"),
                    () = lost => {
                        // Another replica may now act: stop everything at once.
                        metrics.leader.set(0);
                        tracing::warn!("{identity} lost Lease {LEASE_NAME}: controllers stopped, standing by");
                    }
                }
            }
        }
    };
    let result = tokio::select! {
        r = controllers => r,
        r = server => r.context("serving metrics"),
        () = shutdown => Ok(()),
    };
    // The receiver is gone with `controllers`: the lease task releases the Lease so a standby
    // takes over at once rather than after it expires.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), lease_task).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments the shipped Deployment passes are ones the binary accepts.
    #[test]
    fn the_deployment_arguments_parse() {
        let text = include_str!("../../manifests/operator.yaml");
        let deployment = yaml_serde::Deserializer::from_str(text)
            .map(|d| yaml_serde::Value::deserialize(d).unwrap())
            .find(|v| v["kind"] == "Deployment")
            .expect("a Deployment in manifests/operator.yaml");
        let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_sequence()
            .expect("container args")
            .iter()
            .map(|a| a.as_str().unwrap().to_owned());
        let config =
            Config::try_parse_from(std::iter::once("hexagone-operator".into()).chain(args))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(config.command, Some(Command::Run)));
        assert_eq!(config.settings.metrics_addr.port(), 8080);
    }

    use serde::Deserialize as _;
}
