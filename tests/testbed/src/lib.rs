//! A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-scheduler,
//! kube-controller-manager and kwok fake nodes on loopback.
//!
//! The binaries are built by `tests/scripts/controlplane.sh` (pinned in `tests/controlplane`)
//! and found through the `HEXAGONE_CONTROLPLANE_BIN` variable:
//!
//! ```text
//! export HEXAGONE_CONTROLPLANE_BIN="$(tests/scripts/controlplane.sh)"
//! cargo test -p hexagone-testbed
//! ```
//!
//! A test starts a [`ControlPlane`], adds [`FakeNode`]s, and talks to it through
//! [`ControlPlane::client`], or as a person would through [`ControlPlane::kubectl`] (kubectl
//! from the same pin, in the same bin dir); everything stops when the value is dropped.

mod controlplane;
mod error;
pub mod http;
mod kubeconfig;
mod kubectl;
pub mod node;
mod pki;
mod ports;
mod process;
pub mod provisioner;
pub mod sovereign;
pub mod wait;

pub use controlplane::{BIN_ENV, ControlPlane, KEEP_ENV, Ports, TIMEOUT_ENV};
pub use error::Error;
pub use node::{AddressKind, FakeAddress, FakeNode, FakeTaint, TaintEffect};

/// Runs `command` with its standard output a pipe whose reader has gone before it writes (as
/// `… | head` leaves it), its standard error captured; asserts it ended quietly with status 141,
/// as for SIGPIPE, without a panic message, and returns its output.
pub fn assert_quiet_on_a_closed_pipe(command: &mut std::process::Command) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = command
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("the command runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    out
}
