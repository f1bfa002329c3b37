//! Shared model of Hexagone: what the operator and the auditor both reason about.
//!
//! This crate is pure: no async runtime, no network, no Kubernetes client, no database.
//! See `docs/ARCHITECTURE.md` for the code map.
