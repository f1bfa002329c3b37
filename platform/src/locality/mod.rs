//! The locality model (feature `engine`): countries and addresses, what is observed about a
//! node or endpoint (labels, attestations, geolocated addresses, network operators), policies,
//! and the verdict that judges the one against the other. The crate root re-exports each module
//! (`hexagone_platform::policy`, `::verdict`, ...), so paths do not name this folder.

pub mod address;
pub mod attestation;
pub mod country;
pub mod evidence;
pub mod geo;
pub mod jurisdiction;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod latency;
pub mod node;
pub mod policy;
#[cfg(feature = "schema")]
pub(crate) mod schema;
pub mod verdict;
