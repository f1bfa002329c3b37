//! Shared model of Hexagone: what the operator and the auditor both reason about.
//!
//! This crate is pure: no async runtime, no network, no Kubernetes client, no database. Its only
//! I/O is reading geolocation database files, synchronously, in [`geo`].
//! See `docs/locality.md` for the locality model and `docs/ARCHITECTURE.md` for the code map.

pub mod address;
pub mod country;
pub mod evidence;
pub mod geo;
pub mod node;
pub mod policy;
#[cfg(feature = "schema")]
mod schema;
pub mod verdict;

pub use country::{Country, CountryGroup, CountrySet, Territory};
pub use evidence::{Assessment, Breach, Evidence, Observation, Source};
pub use geo::{GeoDatabases, GeoPaths, GeoSnapshot};
pub use node::{ATTESTED_COUNTRY_LABEL, NodeDescription, REGION_LABEL, ZONE_LABEL};
pub use policy::{Asn, LocalityPolicy, Mode, OnUnknown, PolicyError, Quorum};
pub use verdict::{Evaluation, Reason, Verdict, evaluate};
