//! Prometheus metrics of the operator and the HTTP endpoint serving them with health checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Nodes each policy admits.
    pub eligible_nodes: IntGaugeVec,
    /// Nodes per policy and verdict.
    pub node_verdicts: IntGaugeVec,
    /// Qualification passes completed.
    pub passes: IntCounter,
    /// Qualification passes that failed (API errors).
    pub pass_errors: IntCounter,
    /// Workplace reconciles started.
    pub workplace_reconciles: IntCounter,
    /// Workplace reconciles that failed (retried with backoff).
    pub workplace_reconcile_errors: IntCounter,
    /// Workplace reconciles that applied the rendered objects (the others found them applied
    /// and unchanged, and read readiness and placement only).
    pub workplace_applies: IntCounter,
    /// Duration of Workplace reconciles.
    pub workplace_reconcile_seconds: Histogram,
    /// Ready components per Workplace.
    pub components_ready: IntGaugeVec,
    /// Workplace pods evicted from nodes that are not compliant.
    pub evictions: IntCounter,
    /// 1 while this replica holds the Lease and runs the controllers.
    pub leader: prometheus::IntGauge,
    /// Errors of the watches of the API server, per kind watched (each backs off and watches
    /// again: a count that keeps rising is a watch that does not come back).
    pub watch_errors: prometheus::IntCounterVec,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let eligible_nodes = IntGaugeVec::new(
            Opts::new(
                "hexagone_eligible_nodes",
                "Nodes a LocalityPolicy admits (compliant in enforce mode).",
            ),
            &["policy"],
        )
        .expect("valid metric");
        let node_verdicts = IntGaugeVec::new(
            Opts::new(
                "hexagone_node_verdicts",
                "Nodes per LocalityPolicy and verdict (compliant, violation, unknown).",
            ),
            &["policy", "verdict"],
        )
        .expect("valid metric");
        let passes = IntCounter::new(
            "hexagone_qualification_passes_total",
            "Qualification passes over all nodes and policies.",
        )
        .expect("valid metric");
        let pass_errors = IntCounter::new(
            "hexagone_qualification_errors_total",
            "Qualification passes that failed on an API error (retried with backoff).",
        )
        .expect("valid metric");
        let workplace_reconciles = IntCounter::new(
            "hexagone_workplace_reconciles_total",
            "Workplace reconciles started.",
        )
        .expect("valid metric");
        let workplace_reconcile_errors = IntCounter::new(
            "hexagone_workplace_reconcile_errors_total",
            "Workplace reconciles that failed (retried with exponential backoff).",
        )
        .expect("valid metric");
        let workplace_applies = IntCounter::new(
            "hexagone_workplace_applies_total",
            "Workplace reconciles that applied the rendered objects (the others found them applied and unchanged).",
        )
        .expect("valid metric");
        let workplace_reconcile_seconds = Histogram::with_opts(HistogramOpts::new(
            "hexagone_workplace_reconcile_duration_seconds",
            "Duration of Workplace reconciles.",
        ))
        .expect("valid metric");
        let components_ready = IntGaugeVec::new(
            Opts::new(
                "hexagone_workplace_components_ready",
                "Components of a Workplace whose every replica is ready.",
            ),
            &["namespace", "workplace"],
        )
        .expect("valid metric");
        let evictions = IntCounter::new(
            "hexagone_workplace_evictions_total",
            "Workplace pods evicted from nodes their policy does not find compliant.",
        )
        .expect("valid metric");
        let leader = prometheus::IntGauge::new(
            "hexagone_operator_leader",
            "1 while this replica holds the leader Lease and runs the controllers, else 0.",
        )
        .expect("valid metric");
        let watch_errors = prometheus::IntCounterVec::new(
            Opts::new(
                "hexagone_watch_errors_total",
                "Errors of the operator's watches of the API server, per kind watched (each watch backs off and watches again).",
            ),
            &["watch"],
        )
        .expect("valid metric");
        for c in [
            Box::new(leader.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(watch_errors.clone()),
            Box::new(eligible_nodes.clone()),
            Box::new(node_verdicts.clone()),
            Box::new(passes.clone()),
            Box::new(pass_errors.clone()),
            Box::new(workplace_reconciles.clone()),
            Box::new(workplace_reconcile_errors.clone()),
            Box::new(workplace_applies.clone()),
            Box::new(workplace_reconcile_seconds.clone()),
            Box::new(components_ready.clone()),
            Box::new(evictions.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            eligible_nodes,
            node_verdicts,
            passes,
            pass_errors,
            workplace_reconciles,
            workplace_reconcile_errors,
            workplace_applies,
            workplace_reconcile_seconds,
            components_ready,
            evictions,
            leader,
            watch_errors,
            ready: AtomicBool::new(false),
        }
    }

    /// Marks the operator ready (a first qualification pass completed).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).expect("Prometheus text is UTF-8")
    }
}

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (a standby waiting for the
/// Lease, or a leader whose first qualification pass completed).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "no qualification pass yet")
                }
            }),
        )
        .with_state(metrics);
    axum::serve(listener, app).await
}
