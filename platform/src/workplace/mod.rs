//! The workplace stack (feature `engine`; the resource, contracts and rendering with `k8s`):
//! the catalog of components, Kubernetes quantities, the `Workplace` custom resource, each
//! image's contract, and the rendering of a Workplace into the objects that run it. The crate
//! root re-exports `catalog`, `quantity`, `contract` and `render`, and this module re-exports
//! the resource's items (`hexagone_platform::workplace::Workplace`), so paths did not change.

pub mod catalog;
#[cfg(feature = "k8s")]
pub mod contract;
pub mod quantity;
#[cfg(feature = "k8s")]
pub mod render;
#[cfg(feature = "k8s")]
mod resource;

#[cfg(feature = "k8s")]
pub use resource::*;
