//! What `serve`'s HTTP handlers, the sequencer task and the cluster collector share: the
//! judge, the writers' tokens, the queue to the sequencer and the service's status.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use super::{metrics, tokens};
use crate::judge::ObservationJudge;
use crate::queue::Job;

/// What the HTTP handlers share.
pub struct Service {
    /// The auditor's judge (policy, databases, attestations, inventory).
    pub judge: ObservationJudge<'static>,
    /// Allowed writers.
    pub tokens: tokens::Tokens,
    /// The queue to the sequencer.
    pub queue: mpsc::Sender<Job>,
    /// Shared with the sequencer task.
    pub shared: Arc<Shared>,
    /// `--max-body`.
    pub max_body: usize,
    /// With `--kubernetes`, the cluster's Nodes as the collector watches them, set before the
    /// first observation is judged: a node named in an observation is described by the
    /// cluster, not by the writer.
    pub cluster_nodes:
        std::sync::OnceLock<kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Node>>,
}

/// What the sequencer task and the handlers both see.
pub struct Shared {
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// True while the sequencer runs.
    pub ready: AtomicBool,
    /// True while this replica stands by for the sequencer's Lease (`--lease`).
    pub standby: AtomicBool,
    /// True once the judge holds the attestations it must judge with: at once, but with
    /// `--kubernetes` only after the collector's first complete listing of the cluster (an
    /// observation judged before would lack the nodes' attestations: a false violation).
    pub judging: AtomicBool,
    /// The latest signed checkpoint note.
    pub checkpoint: RwLock<Option<String>>,
}
