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
