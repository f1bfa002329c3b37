//! `WorkplaceController`: turns each `Workplace` into the running workplace, on eligible nodes
//! only, and reports it. Each reconcile
//! 1. refuses, in a condition and an Event, what cannot be deployed (paused, invalid spec,
//!    unknown policy, a second Workplace in the namespace, no eligible node), changing nothing;
//! 2. server-side applies the rendered objects with one field manager, owned by the Workplace
//!    (the StorageClass, cluster-scoped, is deleted by the finalizer), and creates the generated
//!    credentials once, never reading a Secret back;
//! 3. finds workplace pods on nodes the policy does not find compliant: Sovereign=False and an
//!    Event; under an enforce-mode policy it evicts them through the Eviction API (PDBs
//!    honoured) so the scheduler moves them to eligible nodes;
//! 4. writes status: conditions, per-component readiness, eligible nodes and zones.
//!
//! Drift is corrected because Deployments and StatefulSets are watched (a change re-applies)
//! and every Workplace is reconciled again at least every five minutes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hexagone_platform::catalog::{Catalog, Resources};
use hexagone_platform::k8s::LocalityPolicyResource;
use hexagone_platform::render::{
    CREDENTIAL_KEY, INSTANCE_LABEL, RenderInput, Rendered, render, storage_class_name,
};
use hexagone_platform::workplace::{
    ComponentStatus, Condition, Workplace, WorkplaceStatus, eligible_label,
};
use hexagone_platform::{Mode, ZONE_LABEL};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use rand::RngCore;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::metrics::Metrics;

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
}

impl Context {
    /// A context reporting Events as `reporter`.
    pub fn new(client: Client, metrics: Arc<Metrics>, reporter: &str) -> Self {
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
        }
    }
}

/// Runs the Workplace controller until the watches end.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let cfg = watcher::Config::default;
    let owned =
        || watcher::Config::default().labels("app.kubernetes.io/managed-by=hexagone-operator");
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
    Controller::new(Api::<Workplace>::all(client.clone()), cfg())
        .owns(Api::<Deployment>::all(client.clone()), owned())
        .owns(Api::<StatefulSet>::all(client.clone()), owned())
        .watches(Api::<Pod>::all(client.clone()), owned(), |pod| {
            let name = pod.labels().get(INSTANCE_LABEL)?.clone();
            Some(reflector::ObjectRef::new(&name).within(&pod.namespace()?))
        })
        .reconcile_all_on(everything)
        // A few Workplaces at a time: each holds its rendered objects while it applies them.
        .with_config(kube::runtime::controller::Config::default().concurrency(4))
        .graceful_shutdown_on(std::future::pending())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
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
            Finalized::Apply(wp) => apply(&wp, &ctx).await,
            Finalized::Cleanup(wp) => cleanup(&wp, &ctx).await,
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

/// The status being built, and the sentence of each refusal.
struct Report {
    generation: Option<i64>,
    previous: Vec<Condition>,
    status: WorkplaceStatus,
}

impl Report {
    fn new(wp: &Workplace) -> Self {
        let previous = wp
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        Report {
            generation: wp.metadata.generation,
            previous,
            status: WorkplaceStatus {
                observed_generation: wp.metadata.generation,
                ..Default::default()
            },
        }
    }

    fn set(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        let status = if status { "True" } else { "False" };
        let now = OffsetDateTime::now_utc().format(&Rfc3339).expect("formats");
        let last = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(now);
        self.status.conditions.retain(|c| c.type_ != type_);
        self.status.conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: last,
            observed_generation: self.generation,
        });
    }
}

/// Writes the status when it changed.
async fn publish_status(
    wp: &Workplace,
    ctx: &Context,
    report: Report,
) -> Result<(), ReconcileError> {
    let mut status = report.status;
    status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    if wp.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api = Api::<Workplace>::namespaced(ctx.client.clone(), &wp.namespace().unwrap_or_default());
    api.patch_status(
        &wp.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .map_err(failed(format!(
        "writing the status of Workplace {}",
        key(wp)
    )))?;
    Ok(())
}

async fn event(ctx: &Context, wp: &Workplace, warning: bool, reason: &str, note: String) {
    let e = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(crate::qualifier::truncate(note)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&e, &wp.object_ref(&())).await {
        tracing::warn!("event on Workplace {}: {err}", key(wp));
    }
}

/// Refuses the Workplace: Ready=False with `reason`, an Event when the refusal is new; nothing
/// else changes.
async fn refuse(
    wp: &Workplace,
    ctx: &Context,
    mut report: Report,
    reason: &str,
    message: String,
) -> Result<Action, ReconcileError> {
    let was = report
        .previous
        .iter()
        .any(|c| c.type_ == "Ready" && c.reason == reason && c.message == message);
    if !was {
        event(ctx, wp, true, reason, message.clone()).await;
    }
    report.set("Ready", false, reason, message.clone());
    report.set(
        "Progressing",
        false,
        reason,
        "nothing is changed until this is fixed",
    );
    report.set("Degraded", true, reason, message);
    // Keep the last known sovereignty when this pass did not judge it: a refusal does not
    // move pods. (Conditions are a list keyed by type: a second Sovereign would make every
    // later status write fail, and the status would stay the first one for ever.)
    let judged = report
        .status
        .conditions
        .iter()
        .any(|c| c.type_ == "Sovereign");
    if let Some(s) = report
        .previous
        .iter()
        .find(|c| c.type_ == "Sovereign")
        .filter(|_| !judged)
        .cloned()
    {
        report.status.conditions.push(s);
    }
    publish_status(wp, ctx, report).await?;
    Ok(Action::requeue(RESYNC))
}

async fn apply(wp: &Workplace, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = wp.namespace().unwrap_or_default();
    let name = wp.name_any();
    let mut report = Report::new(wp);
    if wp.spec.paused {
        report.set(
            "Progressing",
            false,
            "Paused",
            "spec.paused is true: nothing is created, changed or evicted until it is false",
        );
        for c in &report.previous {
            if c.type_ != "Progressing" {
                report.status.conditions.push(c.clone());
            }
        }
        if let Some(s) = &wp.status {
            report.status.eligible_nodes = s.eligible_nodes;
            report.status.eligible_zones = s.eligible_zones.clone();
            report.status.components = s.components.clone();
            report.status.violations = s.violations.clone();
        }
        publish_status(wp, ctx, report).await?;
        return Ok(Action::requeue(RESYNC));
    }

    // One workplace per namespace: its Services are named after the components.
    let others = Api::<Workplace>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map_err(failed(format!("listing Workplaces in {ns}")))?;
    if let Some(first) = others
        .items
        .iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .min_by_key(|o| (o.creation_timestamp().map(|t| t.0), o.name_any()))
        && first.name_any() != name
    {
        let m = format!(
            "namespace {ns} already holds Workplace {}: one workplace per namespace (its services are named after the components)",
            first.name_any()
        );
        return refuse(wp, ctx, report, "NamespaceTaken", m).await;
    }

    let catalog = match wp.spec.resolve(Catalog::shipped()) {
        Ok(c) => c,
        Err(problems) => {
            let m = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return refuse(wp, ctx, report, "InvalidSpec", m).await;
        }
    };
    let label = match eligible_label(&wp.spec.policy) {
        Ok(l) => l,
        Err(m) => return refuse(wp, ctx, report, "InvalidSpec", format!("spec.policy: {m}")).await,
    };
    let policy = match Api::<LocalityPolicyResource>::all(ctx.client.clone())
        .get_opt(&wp.spec.policy)
        .await
        .map_err(failed(format!("reading LocalityPolicy {}", wp.spec.policy)))?
    {
        Some(p) => p,
        None => {
            let m = format!(
                "LocalityPolicy {} does not exist: create it (see manifests/samples/) or name another",
                wp.spec.policy
            );
            return refuse(wp, ctx, report, "PolicyNotFound", m).await;
        }
    };
    if let Some(e) = policy.status.as_ref().and_then(|s| s.error.clone()) {
        let m = format!("LocalityPolicy {}: {e}", wp.spec.policy);
        return refuse(wp, ctx, report, "PolicyInvalid", m).await;
    }
    let enforce = policy.spec.mode == Mode::Enforce;

    // Eligible nodes, as the qualifier labelled them.
    let _ = ctx.nodes.wait_until_ready().await;
    let eligible: Vec<Arc<Node>> = ctx
        .nodes
        .state()
        .into_iter()
        .filter(|n| n.labels().get(&label).map(String::as_str) == Some("true"))
        .collect();
    let zones: Vec<String> = eligible
        .iter()
        .filter_map(|n| n.labels().get(ZONE_LABEL).cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    report.status.eligible_nodes = u32::try_from(eligible.len()).unwrap_or(u32::MAX);
    report.status.eligible_zones = zones.clone();
    if eligible.is_empty() {
        let why = refusals(&policy, 3);
        let m = format!(
            "no node is eligible under LocalityPolicy {}, so nothing runs anywhere{}",
            wp.spec.policy,
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        );
        let mut report = report;
        sovereignty(wp, ctx, &policy, enforce, &mut report).await?;
        return refuse(wp, ctx, report, "NoEligibleNode", m).await;
    }
    if zones.is_empty() {
        let m = format!(
            "the {} eligible nodes carry no {ZONE_LABEL} label, so no volume can be placed",
            eligible.len()
        );
        return refuse(wp, ctx, report, "NoEligibleZone", m).await;
    }

    let rendered = render(&RenderInput {
        name: &name,
        namespace: &ns,
        spec: &wp.spec,
        catalog: &catalog,
        eligible_zones: &zones,
    })
    .map_err(ReconcileError::Render)?;
    let capacity = capacity_shortfall(&catalog, wp, &eligible);

    let owner = wp
        .controller_owner_ref(&())
        .expect("a Workplace has a name and uid");
    apply_rendered(&ctx.client, &ns, &name, &rendered, Some(&owner)).await?;

    // Readiness per component.
    let mut all_ready = true;
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
        .await
        .map_err(failed(format!("listing Deployments in {ns}")))?;
    let statefulsets = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
        .await
        .map_err(failed(format!("listing StatefulSets in {ns}")))?;
    // (ready, desired) replicas by workload name.
    let readiness: BTreeMap<String, (u32, u32)> = deployments
        .items
        .iter()
        .map(|d| {
            let want = d.spec.as_ref().and_then(|s| s.replicas);
            let ready = d.status.as_ref().and_then(|s| s.ready_replicas);
            (d.name_any(), replicas(ready, want))
        })
        .chain(statefulsets.items.iter().map(|s| {
            let want = s.spec.as_ref().and_then(|s| s.replicas);
            let ready = s.status.as_ref().and_then(|s| s.ready_replicas);
            (s.name_any(), replicas(ready, want))
        }))
        .collect();
    let mut not_ready = Vec::new();
    let mut ready_count = 0;
    for c in &catalog.components {
        let (ready, replicas) = readiness.get(&c.name).copied().unwrap_or((0, 1));
        let ok = ready >= replicas;
        all_ready &= ok;
        if ok {
            ready_count += 1;
        } else {
            not_ready.push(format!("{} {ready}/{replicas}", c.name));
        }
        report.status.components.push(ComponentStatus {
            name: c.name.clone(),
            ready_replicas: ready,
            replicas,
            ready: ok,
        });
    }
    ctx.metrics
        .components_ready
        .with_label_values(&[&ns, &name])
        .set(ready_count);
    if all_ready {
        report.set(
            "Ready",
            true,
            "AllComponentsReady",
            format!(
                "all {} components are ready on {} eligible nodes in {}",
                catalog.components.len(),
                eligible.len(),
                zones.join(", ")
            ),
        );
        report.set(
            "Progressing",
            false,
            "Converged",
            "every object is applied and ready",
        );
    } else {
        let pending = unschedulable(ctx, &ns, &name).await?;
        report.set(
            "Ready",
            false,
            "ComponentsNotReady",
            format!("waiting for {}{pending}", not_ready.join(", ")),
        );
        report.set(
            "Progressing",
            true,
            "Rolling",
            format!(
                "{} of {} components ready",
                ready_count,
                catalog.components.len()
            ),
        );
    }
    match capacity {
        Some(m) => report.set("Degraded", true, "InsufficientCapacity", m),
        None => report.set("Degraded", false, "AsExpected", "nothing is degraded"),
    }
    let moving = sovereignty(wp, ctx, &policy, enforce, &mut report).await?;
    publish_status(wp, ctx, report).await?;
    ctx.failures.lock().expect("not poisoned").remove(&key(wp));
    Ok(Action::requeue(if all_ready && !moving {
        RESYNC
    } else {
        SOON
    }))
}

/// (ready, desired) as reported by a workload (a missing desired count means 1).
fn replicas(ready: Option<i32>, desired: Option<i32>) -> (u32, u32) {
    let count = |n: i32| u32::try_from(n).unwrap_or(0);
    (count(ready.unwrap_or(0)), count(desired.unwrap_or(1)))
}

/// Up to `max` ineligible nodes of a policy with their verdicts, `node: headline`.
fn refusals(policy: &LocalityPolicyResource, max: usize) -> String {
    let Some(s) = &policy.status else {
        return "the policy has not been evaluated yet".into();
    };
    let refused: Vec<String> = s
        .nodes
        .iter()
        .filter(|n| !n.eligible)
        .map(|n| format!("node {}: {}", n.name, n.headline))
        .collect();
    let mut out = refused
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if refused.len() > max {
        out.push_str(&format!("; and {} more", refused.len() - max));
    }
    out
}

/// Pods named in the Ready message when the scheduler cannot place them; the rest are counted.
const SHOWN_UNSCHEDULABLE: usize = 3;

/// Why the scheduler leaves the workplace's pods unplaced, as a sentence for the Ready message
/// (`"; pod postgresql-0 unschedulable: 0/7 nodes are available: …"`), or empty when none is. A
/// pod whose zonal volume sits in a zone with no eligible room, or a cluster out of CPU, then
/// shows in `kubectl get workplace` instead of only as a replica count.
async fn unschedulable(ctx: &Context, ns: &str, name: &str) -> Result<String, ReconcileError> {
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
        .await
        .map_err(failed(format!("listing the workplace's pods in {ns}")))?;
    let mut out = String::new();
    let (mut shown, mut more) = (0, 0);
    for pod in &pods.items {
        let scheduled = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
        let Some(c) = scheduled
            .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        else {
            continue;
        };
        if shown == SHOWN_UNSCHEDULABLE {
            more += 1;
            continue;
        }
        shown += 1;
        out.push_str(&format!(
            "; pod {} unschedulable: {}",
            pod.name_any(),
            c.message.as_deref().unwrap_or("no reason given").trim()
        ));
    }
    if more > 0 {
        out.push_str(&format!("; {more} more pods unschedulable"));
    }
    Ok(out)
}

/// Sets Sovereign from where the workplace's pods run; evicts the misplaced ones under an
/// enforce-mode policy. True when pods are being moved.
async fn sovereignty(
    wp: &Workplace,
    ctx: &Context,
    policy: &LocalityPolicyResource,
    enforce: bool,
    report: &mut Report,
) -> Result<bool, ReconcileError> {
    let ns = wp.namespace().unwrap_or_default();
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let pods = pods_api
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={}", wp.name_any())))
        .await
        .map_err(failed(format!("listing the workplace's pods in {ns}")))?;
    let verdicts: BTreeMap<&str, (&str, &str)> = policy
        .status
        .as_ref()
        .map(|s| {
            s.nodes
                .iter()
                .map(|n| (n.name.as_str(), (n.verdict.as_str(), n.headline.as_str())))
                .collect()
        })
        .unwrap_or_default();
    let mut violations = Vec::new();
    let mut misplaced = Vec::new();
    let mut placed = 0;
    for pod in &pods.items {
        if pod.meta().deletion_timestamp.is_some() {
            continue;
        }
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        placed += 1;
        match verdicts.get(node) {
            Some(("compliant", _)) => {}
            Some((_, headline)) => {
                violations.push(format!("pod {} on node {node}: {headline}", pod.name_any()));
                misplaced.push(pod.name_any());
            }
            None => {
                violations.push(format!(
                    "pod {} on node {node}: the node has no verdict under LocalityPolicy {}",
                    pod.name_any(),
                    wp.spec.policy
                ));
                misplaced.push(pod.name_any());
            }
        }
    }
    let was_sovereign = report
        .previous
        .iter()
        .any(|c| c.type_ == "Sovereign" && c.status == "True");
    let was_violating = report.previous.iter().any(|c| {
        c.type_ == "Sovereign" && c.status == "False" && c.reason == "PodsOnIneligibleNodes"
    });
    if violations.is_empty() {
        report.set(
            "Sovereign",
            true,
            "AllPodsOnCompliantNodes",
            format!(
                "all {placed} scheduled pods run on nodes compliant with LocalityPolicy {}",
                wp.spec.policy
            ),
        );
        if !was_sovereign && was_violating {
            event(
                ctx,
                wp,
                false,
                "SovereigntyRestored",
                "every pod runs on a compliant node again".into(),
            )
            .await;
        }
        report.status.violations.clear();
        return Ok(false);
    }
    let action = if enforce {
        "evicting them so the scheduler moves them to eligible nodes"
    } else {
        "LocalityPolicy is in audit mode: reported only, nothing is moved"
    };
    let message = format!(
        "{} pods run on nodes LocalityPolicy {} does not find compliant ({action}): {}",
        violations.len(),
        wp.spec.policy,
        violations
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    if !was_violating || report.status.violations != violations {
        event(ctx, wp, true, "SovereigntyViolation", message.clone()).await;
    }
    report.set("Sovereign", false, "PodsOnIneligibleNodes", message);
    report.status.violations = violations;
    if enforce {
        for pod in misplaced {
            match pods_api.evict(&pod, &EvictParams::default()).await {
                Ok(_) => {
                    ctx.metrics.evictions.inc();
                    event(
                        ctx,
                        wp,
                        true,
                        "Evicted",
                        format!("evicted pod {pod} from a node that is not compliant"),
                    )
                    .await;
                }
                // A PodDisruptionBudget refuses for now (429): try again shortly.
                Err(kube::Error::Api(e)) if e.code == 429 || e.code == 404 => {
                    tracing::info!("eviction of {ns}/{pod} deferred: {}", e.message);
                }
                Err(e) => return Err(failed(format!("evicting pod {ns}/{pod}"))(e)),
            }
        }
    }
    Ok(true)
}

/// Why the eligible nodes cannot hold the profile, if they cannot: total requests against
/// total allocatable.
fn capacity_shortfall(catalog: &Catalog, wp: &Workplace, eligible: &[Arc<Node>]) -> Option<String> {
    let mut cpu = 0.0;
    let mut mem = 0.0;
    for c in &catalog.components {
        let o = wp.spec.components.get(&c.name);
        let sizing = &c.sizing[&wp.spec.profile];
        let replicas = f64::from(o.and_then(|o| o.replicas).unwrap_or(sizing.replicas));
        let r: &Resources = o
            .and_then(|o| o.requests.as_ref())
            .unwrap_or(&sizing.requests);
        cpu += replicas * cores(&r.cpu)?;
        mem += replicas * memory(&r.memory)?;
    }
    let (mut have_cpu, mut have_mem) = (0.0, 0.0);
    for n in eligible {
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        have_cpu += alloc
            .and_then(|a| a.get("cpu"))
            .and_then(|q| cores(&q.0))
            .unwrap_or(0.0);
        have_mem += alloc
            .and_then(|a| a.get("memory"))
            .and_then(|q| memory(&q.0))
            .unwrap_or(0.0);
    }
    let gib = 1024.0 * 1024.0 * 1024.0;
    (cpu > have_cpu || mem > have_mem).then(|| {
        format!(
            "the {} profile requests {cpu:.1} CPU and {:.1} GiB but the {} eligible nodes offer {have_cpu:.1} CPU and {:.1} GiB: pods will stay Pending until nodes are added",
            wp.spec.profile,
            mem / gib,
            eligible.len(),
            have_mem / gib
        )
    })
}

/// A CPU quantity in cores (the platform's one quantity parser).
fn cores(q: &str) -> Option<f64> {
    hexagone_platform::quantity::millicores(q).map(|m| m as f64 / 1000.0)
}

/// A memory quantity in bytes (the platform's one quantity parser).
fn memory(q: &str) -> Option<f64> {
    hexagone_platform::quantity::bytes(q).map(|b| b as f64)
}

/// Applies the StorageClass; its allowedTopologies cannot change in place, so a class for other
/// zones is replaced (claims already bound keep their volumes).
/// Applies a rendered workplace: the StorageClass, the missing credentials, then every object in
/// order, server-side with [`FIELD_MANAGER`], owned by `owner` when given (the controller passes
/// the Workplace; the scale benchmark applies the same objects without one, as its baseline).
pub async fn apply_rendered(
    client: &Client,
    ns: &str,
    instance: &str,
    rendered: &Rendered,
    owner: Option<&OwnerReference>,
) -> Result<(), ReconcileError> {
    apply_storage_class(client, rendered).await?;
    ensure_credentials(client, ns, instance, rendered, owner).await?;
    for object in &rendered.objects {
        apply_object(client, ns, object, owner).await?;
    }
    Ok(())
}

async fn apply_storage_class(client: &Client, rendered: &Rendered) -> Result<(), ReconcileError> {
    let Some(sc) = &rendered.storage_class else {
        return Ok(());
    };
    let api = Api::<StorageClass>::all(client.clone());
    let name = sc["metadata"]["name"]
        .as_str()
        .expect("rendered with a name");
    if let Some(current) = api
        .get_opt(name)
        .await
        .map_err(failed(format!("reading StorageClass {name}")))?
    {
        let current = serde_json::to_value(&current).unwrap_or_default();
        let same = current["allowedTopologies"] == sc["allowedTopologies"]
            && current["provisioner"] == sc["provisioner"]
            && current.get("parameters").cloned().unwrap_or(json!({})) == sc["parameters"];
        if same {
            return Ok(());
        }
        api.delete(name, &DeleteParams::default())
            .await
            .map_err(failed(format!("replacing StorageClass {name}")))?;
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(sc),
    )
    .await
    .map_err(failed(format!("applying StorageClass {name}")))?;
    Ok(())
}

/// Creates each missing credential with a fresh random value. Never reads a Secret: a create
/// that finds one already there leaves it alone.
async fn ensure_credentials(
    client: &Client,
    ns: &str,
    instance: &str,
    rendered: &Rendered,
    owner: Option<&OwnerReference>,
) -> Result<(), ReconcileError> {
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    let owners: Vec<&OwnerReference> = owner.into_iter().collect();
    for name in &rendered.secret.names {
        let mut bytes = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns,
                         "labels": {INSTANCE_LABEL: instance, "app.kubernetes.io/managed-by": FIELD_MANAGER},
                         "ownerReferences": owners},
            "type": "Opaque",
            "stringData": {CREDENTIAL_KEY: value}
        }))
        .expect("a valid Secret");
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(failed(format!("creating Secret {ns}/{name}"))(e)),
        }
    }
    Ok(())
}

/// Server-side applies one namespaced object, owned by the Workplace.
async fn apply_object(
    client: &Client,
    ns: &str,
    object: &Value,
    owner: Option<&OwnerReference>,
) -> Result<(), ReconcileError> {
    let mut object = object.clone();
    if let Some(owner) = owner {
        object["metadata"]["ownerReferences"] = json!([owner]);
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let c = client.clone();
    let patch = Patch::Apply(&object);
    let what = || format!("applying {kind} {ns}/{name}");
    macro_rules! apply_as {
        ($t:ty) => {
            Api::<$t>::namespaced(c, ns)
                .patch(&name, &pp, &patch)
                .await
                .map(|_| ())
                .map_err(failed(what()))
        };
    }
    match kind.as_str() {
        "ServiceAccount" => apply_as!(ServiceAccount),
        "ConfigMap" => apply_as!(ConfigMap),
        "Service" => apply_as!(Service),
        "PersistentVolumeClaim" => apply_as!(PersistentVolumeClaim),
        "Deployment" => apply_as!(Deployment),
        "StatefulSet" => apply_as!(StatefulSet),
        "PodDisruptionBudget" => apply_as!(PodDisruptionBudget),
        "NetworkPolicy" => apply_as!(NetworkPolicy),
        "CronJob" => apply_as!(k8s_openapi::api::batch::v1::CronJob),
        other => unreachable!("render produced an unexpected kind {other}"),
    }
}

/// Deletes what the Workplace created: the StorageClass (which no namespace owns) and, when the
/// spec asks, the volume claims; the namespaced objects go with their owner.
async fn cleanup(wp: &Workplace, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = wp.namespace().unwrap_or_default();
    let name = wp.name_any();
    let sc = storage_class_name(&ns, &name);
    match Api::<StorageClass>::all(ctx.client.clone())
        .delete(&sc, &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(failed(format!("deleting StorageClass {sc}"))(e)),
    }
    if wp.spec.storage.delete_claims_with_workplace {
        let api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns);
        let claims = api
            .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
            .await
            .map_err(failed(format!(
                "listing the claims of Workplace {ns}/{name}"
            )))?;
        for c in claims.items {
            match api.delete(&c.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(failed(format!("deleting claim {ns}/{}", c.name_any()))(e)),
            }
        }
    }
    ctx.metrics
        .components_ready
        .remove_label_values(&[&ns, &name])
        .ok();
    event(
        ctx,
        wp,
        false,
        "CleanedUp",
        format!(
            "deleted StorageClass {sc}{}",
            if wp.spec.storage.delete_claims_with_workplace {
                " and the workplace's volume claims"
            } else {
                "; volume claims are kept (spec.storage.deleteClaimsWithWorkplace is false)"
            }
        ),
    )
    .await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_cores_and_bytes() {
        assert_eq!(cores("500m"), Some(0.5));
        assert_eq!(cores("2"), Some(2.0));
        assert_eq!(memory("1Gi"), Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(memory("8150Mi"), Some(8150.0 * 1024.0 * 1024.0));
        assert_eq!(cores("2k"), Some(2000.0));
        assert_eq!(cores("1x"), None);
    }
}
