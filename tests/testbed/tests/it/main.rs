//! Integration tests proving the test bed runs a real control plane: scheduling onto fake
//! nodes, custom resources, API server recovery, isolation between test beds and kubectl.
//!
//! They need `HEXAGONE_CONTROLPLANE_BIN` (see `tests/scripts/controlplane.sh`) and fail
//! without it.

mod crd;
mod failure;
mod isolation;
mod kubectl;
mod recovery;
mod scheduling;
mod util;
