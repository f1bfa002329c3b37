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
    /// `--max-inflight-bytes`: the memory requests in progress may take.
    pub budget: Budget,
    /// The time a client has to send a request body.
    pub body_timeout: std::time::Duration,
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

/// The memory requests in progress may take, counted in KiB: a request takes its share before
/// its body is read and gives it back when answered.
pub struct Budget {
    kib: Arc<tokio::sync::Semaphore>,
    total: u64,
}

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Self {
        let kib = u32::try_from(bytes >> 10).unwrap_or(u32::MAX);
        Self {
            kib: Arc::new(tokio::sync::Semaphore::new(kib as usize)),
            total: bytes,
        }
    }

    /// Takes `bytes` (rounded up to KiB) if they are free now.
    pub fn try_take(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024)).ok()?;
        self.kib.clone().try_acquire_many_owned(kib).ok()
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }
}
