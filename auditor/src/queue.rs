//! The queue between those who judge observations (`serve`'s HTTP handlers and the cluster
//! collector) and the one sequencer task that seals them: a request's judged submissions, and
//! what became of each once durable. Its own module so `serve` and `collect` share it without
//! importing each other.

use std::time::Instant;

use tokio::sync::oneshot;

use crate::ingest::Submission;

/// One request's judged observations, waiting for the sequencer.
pub struct Job {
    /// The submissions, in request order.
    pub items: Vec<Submission>,
    /// When the request arrived (for the latency histogram).
    pub arrived: Instant,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<Committed, String>>,
}

/// What became of one submission.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// The entry holding it.
    pub seq: u64,
    /// The recorded verdict.
    pub verdict: String,
    /// False when its idempotency key was already recorded: `seq` and `verdict` are then
    /// those of the original entry.
    pub recorded: bool,
}

/// A request's answer once durable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Committed {
    /// One outcome per submission, in request order.
    pub entries: Vec<Outcome>,
    /// The size of the signed checkpoint covering them.
    pub size: u64,
    /// That checkpoint: the C2SP signed note, with the cosignatures the witnesses gave. Kept by
    /// the writer, it holds the log to this size later (`verify --checkpoint`).
    pub checkpoint: String,
    /// The witnesses (`serve --witness`) that cosigned it.
    pub witnessed_by: Vec<String>,
    /// How many of them must cosign (`serve --witness-threshold`; 0 with no witness).
    pub witness_threshold: usize,
    /// True when at least `witness_threshold` witnesses cosigned it (within
    /// `--witness-timeout`). False (or no witness configured): the entries are durable and
    /// signed, but only the key holder vouches for them yet.
    pub witnessed: bool,
    /// When not witnessed, why: which witnesses did not cosign and what they answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_witnessed: Option<String>,
}
