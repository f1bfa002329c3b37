//! Shared model of Hexagone: what the operator and the auditor both reason about.
//!
//! This crate is pure: no async runtime, no network, no Kubernetes client, no database. Its I/O
//! is synchronous file reading (geolocation databases, policies, install folders), all behind
//! the default feature `engine`. Without `engine` the crate is [`vocabulary`] alone, the names
//! and rules the ledger shares with the engine. Feature `k8s` adds the custom resource types and
//! the Node-to-evaluation bridge (types only, no client).
//! See `docs/locality.md` for the locality model and `docs/ARCHITECTURE.md` for the code map.

pub mod vocabulary;

pub mod process;

#[cfg(feature = "engine")]
pub mod digest;
#[cfg(feature = "engine")]
pub mod labels;
#[cfg(feature = "engine")]
pub mod locality;
#[cfg(feature = "engine")]
pub mod workplace;

// Each module keeps its path at the crate root, whichever folder it lives in.
#[cfg(feature = "k8s")]
pub use locality::k8s;
#[cfg(feature = "engine")]
pub use locality::{
    address, attestation, country, evidence, geo, jurisdiction, latency, node, policy, verdict,
};
#[cfg(feature = "engine")]
pub use workplace::{catalog, quantity};
#[cfg(feature = "k8s")]
pub use workplace::{contract, render};

pub use vocabulary::{
    AssessmentKind, Controller, FactKind, Rule, Source, SubjectKind, VerdictKind,
};

#[cfg(feature = "engine")]
pub use attestation::{Attestation, AttestationSpec, AttestationStatus, Basis, attested_zone};
#[cfg(feature = "engine")]
pub use catalog::{Catalog, CatalogError, Component, DataClass, ImageRef, Profile, StoreKind};
#[cfg(feature = "engine")]
pub use country::{Country, CountryGroup, CountrySet, Territory};
#[cfg(feature = "engine")]
pub use evidence::{Assessment, Breach, Evidence, Observation};
#[cfg(feature = "engine")]
pub use geo::{DatabaseIdentity, GeoDatabases, GeoPaths, GeoSnapshot};
#[cfg(feature = "engine")]
pub use jurisdiction::ExtraEuControl;
#[cfg(feature = "engine")]
pub use labels::{ATTESTED_COUNTRY_LABEL, REGION_LABEL, ZONE_LABEL};
#[cfg(feature = "engine")]
pub use latency::RoundTrips;
#[cfg(feature = "engine")]
pub use node::NodeDescription;
#[cfg(feature = "engine")]
pub use policy::{
    Asn, LocalityPolicy, LocationSource, Mode, OnUnknown, PolicyError, QualifiedOperator, Quorum,
    VantagePoint,
};
#[cfg(feature = "engine")]
pub use verdict::{
    Evaluation, Facts, Judge, Reason, Recorded, ReplayError, Verdict, attested_label, evaluate,
    judge, observe, replay, replay_recorded,
};
