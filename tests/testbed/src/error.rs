//! Errors of the test bed, each with the component, file or object it concerns.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting, driving or stopping a [`crate::ControlPlane`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `HEXAGONE_CONTROLPLANE_BIN` is not set: the binaries were never built for this run.
    #[error(
        "environment variable {var} is not set: build the control plane binaries with \
         `export {var}=\"$(tests/scripts/controlplane.sh)\"` and run the tests again"
    )]
    BinariesNotConfigured {
        /// The variable that should name the bin dir.
        var: &'static str,
    },
    /// A binary the test bed needs is missing from the bin dir.
    #[error(
        "{path} is missing or not a file: rebuild the control plane with tests/scripts/controlplane.sh \
         and point HEXAGONE_CONTROLPLANE_BIN at the directory it prints"
    )]
    MissingBinary {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// A file or directory operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and on which path.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Generating a key or certificate failed.
    #[error("generating {what}: {source}")]
    Certificate {
        /// Which key or certificate.
        what: &'static str,
        /// The underlying error.
        source: rcgen::Error,
    },
    /// A component process could not be started.
    #[error("starting {component} ({binary}): {source}")]
    Spawn {
        /// The component name (etcd, kube-apiserver, ...).
        component: &'static str,
        /// The binary that was run.
        binary: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A component process exited while it should have been running.
    #[error("{component} exited with {status}; last lines of {log}:\n{tail}")]
    Exited {
        /// The component name.
        component: &'static str,
        /// How it exited.
        status: std::process::ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of its log file.
        tail: String,
    },
    /// A component did not become ready before the deadline.
    #[error(
        "{component} not ready after {waited:?} (last check: {last}); last lines of {log}:\n{tail}"
    )]
    NotReady {
        /// The component name.
        component: &'static str,
        /// How long we waited.
        waited: Duration,
        /// What the last readiness check said.
        last: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log file.
        tail: String,
    },
    /// A component was expected to run but was stopped (e.g. after `stop_apiserver`).
    #[error("{component} is not running")]
    NotRunning {
        /// The component name.
        component: &'static str,
    },
    /// A component was started while it was already running.
    #[error("{component} is already running")]
    AlreadyRunning {
        /// The component name.
        component: &'static str,
    },
    /// A component could not be stopped.
    #[error("stopping {component}: {detail}")]
    Stop {
        /// The component name.
        component: &'static str,
        /// What failed.
        detail: String,
    },
    /// No free loopback port could be reserved.
    #[error("reserving a free loopback port: {0}")]
    Port(std::io::Error),
    /// The admin kubeconfig could not be turned into a client.
    #[error("building a Kubernetes client from {path}: {detail}")]
    Client {
        /// The kubeconfig file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// A request to the API server failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done, and on which object.
        context: String,
        /// The underlying error.
        source: kube::Error,
    },
    /// kubectl did not finish before the deadline.
    #[error("kubectl {args} still running after {waited:?}")]
    KubectlTimedOut {
        /// Its arguments, space-separated.
        args: String,
        /// How long it was given.
        waited: Duration,
    },
    /// A fake node description is invalid.
    #[error("fake node {node}: {detail}")]
    InvalidNode {
        /// The node name.
        node: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A fake node did not turn Ready before the deadline.
    #[error(
        "fake node {node} not Ready after {waited:?} (last seen: {last}); last lines of the kwok log {log}:\n{tail}"
    )]
    NodeNotReady {
        /// The node name.
        node: String,
        /// How long we waited.
        waited: Duration,
        /// The node's last observed Ready condition.
        last: String,
        /// The kwok log file.
        log: PathBuf,
        /// The end of the kwok log.
        tail: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            context: context.into(),
            source,
        }
    }
}
