//! Prometheus metrics of `serve`, in a registry of their own, written by `GET /metrics`.

use prometheus::{
    Encoder as _, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    /// Entries committed under a signed checkpoint.
    pub entries_appended: IntCounter,
    /// Entries recorded by verdict.
    pub verdicts: IntCounterVec,
    /// Violation and unknown reasons recorded, by reason sentence's rule.
    pub violations: IntCounterVec,
    /// Unix time of the last signed checkpoint (its age is `time() - this`).
    pub checkpoint_time: Gauge,
    /// Seconds since the last signed checkpoint, set when scraped.
    pub checkpoint_age: Gauge,
    /// Size of the last signed checkpoint.
    pub checkpoint_size: IntGauge,
    /// Seconds from a request's arrival to its durable acknowledgement.
    pub ingest_latency: Histogram,
    /// Requests waiting for the sequencer.
    pub queue_depth: IntGauge,
    /// HTTP answers by route and status.
    pub requests: IntCounterVec,
    /// Volume placements recorded by the Kubernetes collector (`--kubernetes`).
    pub collected: IntCounter,
    /// Snapshot placements recorded by the Kubernetes collector (`--kubernetes`).
    pub collected_snapshots: IntCounter,
    /// Pod placements the collector recorded.
    pub collected_pods: IntCounter,
    /// Egress destinations of workplace namespaces the collector recorded.
    pub collected_egress: IntCounter,
    /// Container images of workplace pods the collector recorded at their registries.
    pub collected_images: IntCounter,
    /// LocalityPolicies the collector recorded by their digest (new or changed).
    pub collected_policies: IntCounter,
    /// Removals the collector recorded (objects gone from the cluster).
    pub collected_removals: IntCounter,
    /// Changes of LocalityPolicies the collector's watch delivered but skipped, beyond the
    /// bounds of what it keeps between two passes (`collect::policies`).
    pub skipped_policy_changes: IntCounter,
    /// Warning Events raised on claims (or VolumeSnapshots) whose placement was recorded as a
    /// violation.
    pub violation_events: IntCounter,
    /// Events the collector could not raise.
    pub event_errors: IntCounter,
    /// Passes the Kubernetes collector completed (every placement judged, what changed
    /// committed): a monitor sees it is alive, a test waits for it rather than sleeping.
    pub collector_passes: IntCounter,
    /// 1 while this replica runs the sequencer, 0 while it stands by (`--lease`).
    pub leader: IntGauge,
    /// Requests answered 503 because the memory they need was held by others.
    pub refused_busy: IntCounter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Self {
            entries_appended: IntCounter::new(
                "hexagone_auditor_entries_appended_total",
                "Entries committed under a signed checkpoint.",
            )?,
            verdicts: IntCounterVec::new(
                Opts::new(
                    "hexagone_auditor_verdicts_total",
                    "Observations recorded, by the engine's verdict.",
                ),
                &["verdict"],
            )?,
            violations: IntCounterVec::new(
                Opts::new(
                    "hexagone_auditor_violations_total",
                    "Contradicting evidence recorded in violations, by the rule it broke.",
                ),
                &["reason"],
            )?,
            checkpoint_time: Gauge::new(
                "hexagone_auditor_checkpoint_timestamp_seconds",
                "Unix time the last checkpoint was signed; its age is time() minus this.",
            )?,
            checkpoint_age: Gauge::new(
                "hexagone_auditor_checkpoint_age_seconds",
                "Seconds since the last checkpoint was signed (at start: since the last entry's time).",
            )?,
            checkpoint_size: IntGauge::new(
                "hexagone_auditor_checkpoint_size",
                "Tree size of the last signed checkpoint.",
            )?,
            ingest_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "hexagone_auditor_ingest_latency_seconds",
                    "From a request's arrival to its entries being committed under a signed checkpoint.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
            queue_depth: IntGauge::new(
                "hexagone_auditor_queue_depth",
                "Requests waiting for the sequencer.",
            )?,
            requests: IntCounterVec::new(
                Opts::new(
                    "hexagone_auditor_http_requests_total",
                    "HTTP answers, by route and status code.",
                ),
                &["route", "status"],
            )?,
            collected: IntCounter::new(
                "hexagone_auditor_collected_volumes_total",
                "Volume placements the Kubernetes collector recorded (new, moved, or judged differently).",
            )?,
            collected_snapshots: IntCounter::new(
                "hexagone_auditor_collected_snapshots_total",
                "VolumeSnapshot placements the Kubernetes collector recorded (new, moved with their volume, or judged differently).",
            )?,
            collected_pods: IntCounter::new(
                "hexagone_auditor_collected_pods_total",
                "Pod placements of workplace namespaces the Kubernetes collector recorded (new, moved, or judged differently).",
            )?,
            collected_egress: IntCounter::new(
                "hexagone_auditor_collected_egress_total",
                "Egress destinations (address blocks a workplace namespace's NetworkPolicies open) the Kubernetes collector recorded (new, or judged differently).",
            )?,
            collected_images: IntCounter::new(
                "hexagone_auditor_collected_images_total",
                "Container images of workplace pods the Kubernetes collector recorded at the registry they come from (new, another image or digest, or judged differently).",
            )?,
            collected_policies: IntCounter::new(
                "hexagone_auditor_collected_policies_total",
                "LocalityPolicies the Kubernetes collector recorded by their digest (new, or their rules changed).",
            )?,
            skipped_policy_changes: IntCounter::new(
                "hexagone_auditor_skipped_policy_changes_total",
                "Changes of LocalityPolicies the Kubernetes collector's watch delivered but skipped: more changes of one policy (or in all) between two passes than it keeps; each policy's first changes and latest state are recorded.",
            )?,
            collected_removals: IntCounter::new(
                "hexagone_auditor_collected_removals_total",
                "Objects the Kubernetes collector recorded as removed: a pod, claim or snapshot it had recorded is gone from the cluster.",
            )?,
            violation_events: IntCounter::new(
                "hexagone_auditor_violation_events_total",
                "Warning Events raised on claims, VolumeSnapshots or pods whose placement was recorded in violation.",
            )?,
            event_errors: IntCounter::new(
                "hexagone_auditor_event_errors_total",
                "Events the Kubernetes collector could not raise.",
            )?,
            collector_passes: IntCounter::new(
                "hexagone_auditor_collector_passes_total",
                "Passes the Kubernetes collector completed: every placement judged and what changed committed.",
            )?,
            leader: IntGauge::new(
                "hexagone_auditor_leader",
                "1 while this replica runs the sequencer, 0 while it stands by for the Lease.",
            )?,
            refused_busy: IntCounter::new(
                "hexagone_auditor_refused_busy_total",
                "Requests answered 503 because the memory they need (--max-inflight-bytes) was taken.",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.entries_appended.clone()))?;
        m.registry.register(Box::new(m.verdicts.clone()))?;
        m.registry.register(Box::new(m.violations.clone()))?;
        m.registry.register(Box::new(m.checkpoint_time.clone()))?;
        m.registry.register(Box::new(m.checkpoint_age.clone()))?;
        m.registry.register(Box::new(m.checkpoint_size.clone()))?;
        m.registry.register(Box::new(m.ingest_latency.clone()))?;
        m.registry.register(Box::new(m.queue_depth.clone()))?;
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.collected.clone()))?;
        m.registry
            .register(Box::new(m.collected_snapshots.clone()))?;
        m.registry.register(Box::new(m.collected_pods.clone()))?;
        m.registry.register(Box::new(m.collected_egress.clone()))?;
        m.registry.register(Box::new(m.collected_images.clone()))?;
        m.registry
            .register(Box::new(m.collected_policies.clone()))?;
        m.registry
            .register(Box::new(m.collected_removals.clone()))?;
        m.registry
            .register(Box::new(m.skipped_policy_changes.clone()))?;
        m.registry.register(Box::new(m.violation_events.clone()))?;
        m.registry.register(Box::new(m.event_errors.clone()))?;
        m.registry.register(Box::new(m.collector_passes.clone()))?;
        m.registry.register(Box::new(m.refused_busy.clone()))?;
        m.registry.register(Box::new(m.leader.clone()))?;
        Ok(m)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let signed = self.checkpoint_time.get();
        if signed > 0.0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.checkpoint_age.set((now - signed).max(0.0));
        }
        let mut out = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
