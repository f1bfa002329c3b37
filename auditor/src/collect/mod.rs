//! Collectors: the auditor's own views of where data is stored, turned into facts-only
//! reports judged and recorded like the ingest API's.
//!
//! - [`volumes`]: pure — which node holds each bound PersistentVolume, and its object
//!   identity and class;
//! - [`snapshots`]: pure — the VolumeSnapshot kinds, and which node holds each ready snapshot
//!   (its source volume's);
//! - [`pods`]: pure — every pod of a workplace namespace (labelled or not) and its node;
//! - [`egress`]: pure — every address block a workplace namespace's NetworkPolicies open to
//!   its pods, judged as an endpoint;
//! - [`images`]: pure — every container image of a workplace namespace's pods, judged at the
//!   registry it comes from;
//! - [`policies`]: pure — every spec change of a LocalityPolicy the watch delivers, kept in
//!   order until a pass records it (a rewrite undone before the pass is two entries);
//! - [`kubernetes`]: `serve --kubernetes` — watches the cluster and records each volume's,
//!   snapshot's and pod's placement, each egress destination and each image's registry through the sequencer queue,
//!   again whenever its facts or verdict change.

pub mod egress;
pub mod images;
pub mod kubernetes;
pub mod pods;
pub mod policies;
pub mod snapshots;
pub mod volumes;
