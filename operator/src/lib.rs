//! The Hexagone operator: qualifies nodes against locality policies (attestations included),
//! mirrors valid attestations into the `node-restriction.kubernetes.io/` label, and explains each
//! decision in LocalityPolicy status, Events and metrics.
//!
//! The binary parses its command line into [`Config`] and calls [`run`]; tests call
//! [`run_with`] with a client of their own identity.

pub mod crds;
pub mod metrics;
pub mod qualifier;
pub mod workplace;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hexagone_platform::geo::{GeoDatabases, GeoPaths};

/// Where the vendored databases are when `--geo-dir` does not say.
pub const VENDORED_GEO_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../platform/data/ip-location-db"
);

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
}

/// Settings of the running operator.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Directory of the ip-location-db layout (location, registration and AS databases).
    #[arg(long, value_name = "DIR", env = "HEXAGONE_GEO_DIR", default_value = VENDORED_GEO_DIR)]
    pub geo_dir: PathBuf,
    /// Address of the HTTP endpoint for /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,
    /// Name the operator reports Events under (its Deployment's name).
    #[arg(long, default_value = "hexagone-operator")]
    pub reporter: String,
}

/// Runs the operator with a parsed configuration.
pub fn run(config: Config) -> anyhow::Result<()> {
    match config.command.unwrap_or(Command::Run) {
        Command::Crds => {
            print!("{}", crds::render());
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
                let client = kube::Client::try_default()
                    .await
                    .context("connecting to the cluster (KUBECONFIG or in-cluster)")?;
                let shutdown = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
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
    let geo =
        GeoDatabases::open(&GeoPaths::ip_location_db(&settings.geo_dir)).with_context(|| {
            format!(
                "opening the geolocation databases in {}",
                settings.geo_dir.display()
            )
        })?;
    let metrics = Arc::new(metrics::Metrics::new());
    let listener = tokio::net::TcpListener::bind(settings.metrics_addr)
        .await
        .with_context(|| format!("listening on {}", settings.metrics_addr))?;
    let server = metrics::serve(listener, metrics.clone());
    let qualifier = qualifier::NodeQualifier::new(
        client.clone(),
        Arc::new(geo),
        metrics.clone(),
        &settings.reporter,
    );
    let workplaces = workplace::run(Arc::new(workplace::Context::new(
        client,
        metrics,
        &settings.reporter,
    )));
    tokio::select! {
        r = qualifier.run() => r,
        () = workplaces => Err(anyhow::anyhow!("the Workplace controller stopped")),
        r = server => r.context("serving metrics"),
        () = shutdown => Ok(()),
    }
}
