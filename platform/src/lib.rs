//! Shared model of Hexagone: what the operator and the auditor both reason about.
//!
//! This crate is pure: no async runtime, no network, no Kubernetes client, no database. Its only
//! I/O is reading geolocation database files, synchronously, in [`geo`]. Feature `k8s` adds the
//! custom resource types and the Node-to-evaluation bridge (types only, no client).
//! See `docs/locality.md` for the locality model and `docs/ARCHITECTURE.md` for the code map.

pub mod address;
pub mod attestation;
pub mod catalog;
#[cfg(feature = "k8s")]
pub mod contract;
pub mod country;
pub mod digest;
pub mod evidence;
pub mod geo;
pub mod jurisdiction;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod node;
pub mod policy;
#[cfg(feature = "k8s")]
pub mod render;
#[cfg(feature = "schema")]
mod schema;
pub mod verdict;
#[cfg(feature = "k8s")]
pub mod workplace;

pub use attestation::{Attestation, AttestationSpec, AttestationStatus, Basis};
pub use catalog::{Catalog, CatalogError, Component, DataClass, ImageRef, Profile, StoreKind};
pub use country::{Country, CountryGroup, CountrySet, Territory};
pub use evidence::{Assessment, Breach, Controller, Evidence, Observation, Source};
pub use geo::{DatabaseIdentity, GeoDatabases, GeoPaths, GeoSnapshot};
pub use jurisdiction::ExtraEuControl;
pub use node::{ATTESTED_COUNTRY_LABEL, NodeDescription, REGION_LABEL, ZONE_LABEL};
pub use policy::{Asn, LocalityPolicy, LocationSource, Mode, OnUnknown, PolicyError, Quorum};
pub use verdict::{
    Evaluation, Facts, Judge, Reason, ReplayError, SubjectKind, Verdict, attested_label, evaluate,
    judge, observe, replay,
};
