//! `WorkplaceController`: turns each `Workplace` into the running workplace, on eligible nodes
//! only, and reports it. Each reconcile (`converge.rs`)
//! 1. refuses, in a condition and an Event, what cannot be deployed (paused, invalid spec,
//!    unknown policy or one not allowed for the namespace, a second Workplace in the namespace,
//!    no eligible node), changing nothing
//!    (`refuse.rs`);
//! 2. server-side applies the rendered objects with one field manager, owned by the Workplace
//!    (the StorageClass, cluster-scoped, is deleted by the finalizer, `cleanup.rs`), and creates
//!    the generated credentials once, never reading a Secret back (`apply.rs`,
//!    `credentials.rs`);
//!    then deletes the objects it owns that the rendering no longer holds, and says so in an
//!    Event (`prune.rs`);
//! 3. finds pods of the namespace (the operator's or not) on nodes the policy does not find
//!    compliant: Sovereign=False and an Event; under an enforce-mode policy it evicts them
//!    through the Eviction API (PDBs honoured) so the scheduler moves them to eligible nodes
//!    (`sovereignty.rs`). Paused, it still judges them, and moves nothing;
//! 4. writes status: conditions, per-component readiness, eligible nodes and zones, capacity
//!    (`status.rs`, `readiness.rs`, `capacity.rs`).
//!
//! Drift is corrected because every kind the operator renders and keeps (Deployments,
//! StatefulSets, CronJobs, Services, ConfigMaps, ServiceAccounts, PodDisruptionBudgets,
//! NetworkPolicies, Ingresses) is watched: a change or a deletion re-applies at once. Every pod
//! in a Workplace's namespace is watched too, and every Workplace is reconciled again at least
//! every five minutes.

mod apply;
mod capacity;
mod cleanup;
mod converge;
mod credentials;
mod prune;
mod readiness;
mod refuse;
mod sovereignty;
mod status;
mod supply;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hexagone_platform::GeoDatabases;
use hexagone_platform::k8s::LocalityPolicyResource;
use hexagone_platform::labels::MANAGED_BY_LABEL;
use hexagone_platform::workplace::Workplace;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, ResourceExt};

use crate::metrics::Metrics;

pub use apply::apply_rendered;

/// The one field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "hexagone-operator";
/// The finalizer that removes what the namespace's garbage collector cannot (the StorageClass,
/// and the claims when asked).
pub const FINALIZER: &str = "hexagone.fr/workplace-cleanup";
/// The longest between two reconciles of a Workplace.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon to look again while something is on its way (pods starting, evictions refused).
const SOON: Duration = Duration::from_secs(5);

/// What stops a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API server refused or failed a request (transient: retried with backoff).
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: kube::Error,
    },
    /// Rendering refused the Workplace (checked before, so not expected).
    #[error("rendering: {0}")]
    Render(String),
    /// An object of the name the Workplace needs belongs to someone else (permanent until it
    /// is removed).
    #[error("{0}")]
    Foreign(String),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

fn failed(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let what = what.into();
    move |source| ReconcileError::Api { what, source }
}

/// Shared state of the controller.
pub struct Context {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// Consecutive failures per Workplace, for exponential backoff.
    failures: std::sync::Mutex<BTreeMap<String, u32>>,
    /// Every Node, without managed fields: one cache shared by all reconciles rather than a
    /// list per reconcile (1,000 nodes, 20 Workplaces).
    nodes: Store<Node>,
    node_writer: std::sync::Mutex<Option<Writer<Node>>>,
    /// The geolocation databases the qualifier reloads: egress destinations are judged with them.
    geo: Arc<GeoDatabases>,
}

impl Context {
    /// A context reporting Events as `reporter`.
    pub fn new(
        client: Client,
        geo: Arc<GeoDatabases>,
        metrics: Arc<Metrics>,
        reporter: &str,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: reporter.to_owned(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        let (nodes, writer) = reflector::store();
        Context {
            client,
            recorder,
            metrics,
            failures: Default::default(),
            nodes,
            node_writer: std::sync::Mutex::new(Some(writer)),
            geo,
        }
    }
}

/// Runs the Workplace controller until the watches end.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let cfg = watcher::Config::default;
    let owned =
        || watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}"));
    // Nodes (eligibility, zones) and policies (verdicts, mode) concern every Workplace. Node
    // heartbeats do not: only a change of labels (eligibility, zone) reconciles everything.
    let writer = ctx
        .node_writer
        .lock()
        .expect("not poisoned")
        .take()
        .expect("the Workplace controller runs once per Context");
    let nodes = watcher(Api::<Node>::all(client.clone()), cfg())
        .default_backoff()
        .modify(|n| n.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::labels, Default::default())
        .map(|_| ());
    let policies = watcher(Api::<LocalityPolicyResource>::all(client.clone()), cfg())
        .default_backoff()
        .touched_objects()
        .map(|_| ());
    let everything = futures::stream::select(nodes, policies);
    let controller = Controller::new(Api::<Workplace>::all(client.clone()), cfg());
    // Every pod of a namespace counts (not only those the operator rendered): a pod's change
    // reconciles the namespace's Workplace.
    let workplaces = controller.store();
    controller
        .owns(Api::<Deployment>::all(client.clone()), owned())
        .owns(Api::<StatefulSet>::all(client.clone()), owned())
        .owns(Api::<CronJob>::all(client.clone()), owned())
        .owns(Api::<Service>::all(client.clone()), owned())
        .owns(Api::<ConfigMap>::all(client.clone()), owned())
        .owns(Api::<ServiceAccount>::all(client.clone()), owned())
        .owns(Api::<PodDisruptionBudget>::all(client.clone()), owned())
        .owns(Api::<NetworkPolicy>::all(client.clone()), owned())
        .owns(Api::<Ingress>::all(client.clone()), owned())
        .watches(Api::<Pod>::all(client.clone()), cfg(), move |pod| {
            let ns = pod.namespace();
            workplaces
                .state()
                .into_iter()
                .filter(|wp| wp.namespace() == ns)
                .map(|wp| reflector::ObjectRef::from_obj(&*wp))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(everything)
        .trigger_backoff(TriggerBackoff::default())
        // A few Workplaces at a time: each holds its rendered objects while it applies them.
        .with_config(kube::runtime::controller::Config::default().concurrency(4))
        .graceful_shutdown_on(std::future::pending())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The backoff of the controller's watches, which kube-runtime applies to all of them at once
/// (the Workplaces, every owned kind, the pods). Its default doubles from 0.8 s to 30 s per error
/// and forgets only after 120 s without one: an apiserver restart, which makes each of a dozen
/// watches fail a few times (refused connections, then 403 until RBAC is loaded, then expired
/// resource versions), left the controller deaf to a Workplace change for minutes
/// (`operator/tests/it/leader.rs`). Here: doubling from 0.5 s to at most 5 s, and back to 0.5 s
/// at the next event any watch delivers.
#[derive(Debug, Clone, Copy)]
struct TriggerBackoff {
    next: Duration,
}

impl TriggerBackoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for TriggerBackoff {
    fn default() -> Self {
        TriggerBackoff { next: Self::FIRST }
    }
}

impl Iterator for TriggerBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for TriggerBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

fn key(wp: &Workplace) -> String {
    format!("{}/{}", wp.namespace().unwrap_or_default(), wp.name_any())
}

async fn reconcile(wp: Arc<Workplace>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    ctx.metrics.workplace_reconciles.inc();
    let ns = wp.namespace().unwrap_or_default();
    let api = Api::<Workplace>::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, wp, |event| async {
        match event {
            Finalized::Apply(wp) => converge::converge(&wp, &ctx).await,
            Finalized::Cleanup(wp) => cleanup::cleanup(&wp, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Finalizer(other.to_string()),
    });
    ctx.metrics
        .workplace_reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    result
}

fn error_policy(wp: Arc<Workplace>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics.workplace_reconcile_errors.inc();
    let mut failures = ctx.failures.lock().expect("not poisoned");
    let n = failures.entry(key(&wp)).or_default();
    *n = n.saturating_add(1);
    let wait = Duration::from_millis(500) * 2u32.saturating_pow((*n).min(7));
    tracing::warn!(
        "reconciling Workplace {}: {error}; retrying in {wait:?}",
        key(&wp)
    );
    Action::requeue(wait.min(Duration::from_secs(60)))
}

#[cfg(test)]
mod tests {
    /// The watches' backoff doubles to 5 s at most, never gives up, and starts again at 0.5 s
    /// after an event.
    #[test]
    fn the_watches_backoff_stays_short_and_resets_at_the_next_event() {
        use kube::runtime::utils::Backoff as _;
        let mut b = super::TriggerBackoff::default();
        let waits: Vec<u64> = (0..8)
            .map(|_| b.next().unwrap().as_millis() as u64)
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(std::time::Duration::from_millis(500)));
    }
}
