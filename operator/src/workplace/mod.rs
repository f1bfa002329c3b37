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
//! in a Workplace's namespace is watched too (its node, labels, deletion and scheduling; not
//! the kubelet's status writes), and every Workplace is reconciled again at least every five
//! minutes.
//!
//! A reconcile applies only when something may differ from what it applied last (`Applied`):
//! the rendering changed, one of the Workplace's objects was changed by anyone else (its
//! generation, labels or owners; or its resource version, for kinds without a generation) or
//! deleted, a watch of them started again, or four minutes passed (the Secrets, claims and the
//! StorageClass, which are not watched, are put back then). The pods' comings and goings and
//! the workloads' status changes, most of a large workplace's events, then cost a reading of
//! readiness and placement, not an apply of every object. The Workplace's own status writes
//! start no reconcile: only a change of its generation (its spec), labels, annotations,
//! finalizers or deletion does.

mod apply;
mod backups;
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
mod volumes;

use std::collections::{BTreeMap, HashMap};
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
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::changes::{Changes, hash_of};
use crate::metrics::Metrics;
use crate::watches::{WatchBackoff, logged};

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
/// The longest a reconcile trusts the last apply: past it, everything is applied again, so that
/// what no watch announces (a Secret, a claim or the StorageClass deleted or changed) is put back
/// at the latest at the next [`RESYNC`].
const REAPPLY: Duration = Duration::from_secs(240);

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
    /// A cache of the cluster's objects is not filled yet (transient: retried with backoff).
    #[error("{0}")]
    NotListed(String),
}

impl ReconcileError {
    /// Whether the API server refused to create something because the namespace is being
    /// deleted (a 403 with the cause `NamespaceTerminating`).
    fn namespace_terminating(&self) -> bool {
        matches!(self, ReconcileError::Api { source: kube::Error::Api(s), .. }
        if s.code == 403 && s.details.as_ref().is_some_and(|d| {
            d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
        }))
    }
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
    /// Notified when a Node changes in what the qualifier reads, once the store holds it.
    node_changed: Arc<tokio::sync::Notify>,
    /// The geolocation databases the qualifier reloads: egress destinations are judged with them.
    geo: Arc<GeoDatabases>,
    /// What each Workplace's last apply applied, and the changes of its objects seen since.
    applied: std::sync::Mutex<Applied>,
    /// Per Workplace (`namespace/name`): a fingerprint of the status it last wrote (or found
    /// already written). A status read back otherwise was written by someone else: it starts a
    /// reconcile, which writes the operator's again.
    status_written: std::sync::Mutex<HashMap<String, u64>>,
}

/// What the last apply in each namespace applied, and which of the operator's objects there
/// changed since, so a reconcile started by a pod or a workload's status applies nothing when
/// nothing can differ. Keyed by namespace (one Workplace per namespace is deployed, the others
/// refused; the fingerprint holds the Workplace's uid): an object whose instance label someone
/// removed or changed still counts for the namespace's Workplace.
#[derive(Debug, Default)]
struct Applied {
    /// Per namespace: the fingerprint of what was applied, the count of changes seen before
    /// that apply started, and when it ended.
    done: HashMap<String, (u64, Changed, Instant)>,
    /// Per namespace: how many deletions of the operator's objects (or writes past
    /// [`SEEN_AT_MOST`]) the watches delivered.
    changes: HashMap<String, u64>,
    /// Per namespace: the writes of the operator's objects the watches delivered since the last
    /// apply started, as (kind, name, resource version); those not in [`Applied::own`] are
    /// someone else's.
    seen: HashMap<String, Vec<(String, String, String)>>,
    /// How many times a watch of the objects started listing again (a deletion while it was
    /// down is never announced): every Workplace applies again.
    relists: u64,
    /// Per namespace: the versions the last apply's writes made, as (kind, name, resource
    /// version), recorded as each write returns. Its own writes come back through the watches:
    /// those are not changes (else every apply was followed by a second, changing nothing; an
    /// event may still beat its write's answer, and count).
    own: HashMap<String, std::collections::HashSet<(String, String, String)>>,
    /// Namespaces found being deleted, and when: nothing can be created there, so their
    /// Workplaces apply nothing for [`TERMINATING`] (then try once more: a namespace of the
    /// same name may have been made since).
    terminating: HashMap<String, Instant>,
}

/// The most writes kept per namespace between two applies; past it, a write counts as a change.
const SEEN_AT_MOST: usize = 4096;

/// How long a namespace found being deleted is left alone.
const TERMINATING: Duration = Duration::from_secs(30);

/// The changes counted for one namespace: its own and the relists.
type Changed = (u64, u64);

impl Applied {
    /// The changes counted for namespace `ns` now; an apply that starts now records it.
    fn counted(&self, ns: &str) -> Changed {
        (self.changes.get(ns).copied().unwrap_or(0), self.relists)
    }

    /// When what `print` stands for was applied in `ns` recently, with nothing there changed
    /// since that apply started: how long the apply is still trusted.
    fn fresh(&self, ns: &str, print: u64) -> Option<Duration> {
        let (p, counted, at) = self.done.get(ns)?;
        let left = REAPPLY.checked_sub(at.elapsed())?;
        (*p == print && *counted == self.counted(ns) && self.others(ns) == 0).then_some(left)
    }

    /// How many of the writes seen in `ns` since the last apply started were not its own.
    fn others(&self, ns: &str) -> usize {
        let own = self.own.get(ns);
        self.seen.get(ns).map_or(0, |seen| {
            seen.iter()
                .filter(|w| !own.is_some_and(|o| o.contains(*w)))
                .count()
        })
    }

    /// A write of one of the operator's objects in `ns`, as (kind, name, resource version).
    fn wrote(&mut self, ns: String, write: (String, String, String)) {
        let seen = self.seen.entry(ns.clone()).or_default();
        if seen.len() < SEEN_AT_MOST {
            seen.push(write);
        } else {
            self.changed(Some(ns));
        }
    }

    /// An apply starts in `ns`: what it writes is its own, what was seen before it is applied
    /// over.
    fn starting(&mut self, ns: &str) {
        self.own.insert(ns.to_owned(), Default::default());
        self.seen.insert(ns.to_owned(), Vec::new());
    }

    /// Why what `print` stands for must be applied in `ns` (when [`Applied::fresh`] is `None`).
    fn why(&self, ns: &str, print: u64) -> String {
        let Some((p, (changes, relists), at)) = self.done.get(ns) else {
            return "not applied since the operator started".into();
        };
        let (changes_now, relists_now) = self.counted(ns);
        if *p != print {
            "its rendering changed".into()
        } else if changes_now != *changes || self.others(ns) > 0 {
            format!(
                "{} change(s) of its objects by someone else since the last apply",
                changes_now - changes + self.others(ns) as u64
            )
        } else if relists_now != *relists {
            "a watch of its objects listed them again".into()
        } else {
            format!("the last apply is {} s old", at.elapsed().as_secs())
        }
    }

    /// An object in namespace `ns` changed (or was deleted) or, with `None`, a watch of them
    /// started listing everything again.
    fn changed(&mut self, ns: Option<String>) {
        match ns {
            Some(k) => *self.changes.entry(k).or_default() += 1,
            None => self.relists += 1,
        }
    }

    /// Whether namespace `ns` was found being deleted lately.
    fn terminating(&mut self, ns: &str) -> bool {
        self.terminating.retain(|_, at| at.elapsed() < TERMINATING);
        self.terminating.contains_key(ns)
    }

    /// Nothing is known applied in `ns` (a Workplace refused or removed there).
    fn forget(&mut self, ns: &str) {
        self.done.remove(ns);
        self.own.remove(ns);
        self.seen.remove(ns);
    }
}

/// What a change of an owned object is judged by: whatever ops or a controller changes that
/// the operator applies (its generation counts spec changes; labels and owners are applied
/// too). Kinds without a generation (ConfigMaps, Services, ServiceAccounts) count every write.
/// Status writes (replicas becoming ready, a PDB's healthy count) are not changes, nor are
/// annotations: the controllers annotate their objects (a Deployment's revision), and the
/// operator renders none it relies on outside the specs.
fn owned_print<K: Resource>(o: &K) -> u64 {
    let m = o.meta();
    let version = match m.generation {
        Some(g) => (g, None),
        None => (0, m.resource_version.as_deref()),
    };
    hash_of(&(
        version,
        &m.labels,
        m.owner_references
            .iter()
            .flatten()
            .map(|r| (&r.uid, r.controller))
            .collect::<Vec<_>>(),
        m.deletion_timestamp.is_some(),
    ))
}

/// The operator's objects of kind `K`, for the controller (every event: a workload's readiness
/// is in its status), counting their changes in `ctx`'s [`Applied`] on the way.
fn owned<K>(
    ctx: &Arc<Context>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}"));
    let mut changes = Changes::new(owned_print::<K>);
    let ctx = ctx.clone();
    let events =
        watcher(Api::<K>::all(ctx.client.clone()), config).backoff(WatchBackoff::default());
    let kind = K::kind(&()).into_owned();
    let errors = ctx.metrics.watch_errors.with_label_values(&[kind.as_str()]);
    logged(kind, errors, events).filter_map(move |event| {
        // A relist counts when it starts: the objects it lists next start
        // reconciles, which must apply.
        let relist = matches!(event, watcher::Event::Init);
        let deleted = matches!(event, watcher::Event::Delete(_));
        let changed = changes.judge(&event) && !matches!(event, watcher::Event::InitDone);
        let object = match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
                Some(o)
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        };
        if relist {
            ctx.applied.lock().expect("not poisoned").changed(None);
        } else if changed && let Some(o) = &object {
            let ns = o.namespace().unwrap_or_default();
            let mut applied = ctx.applied.lock().expect("not poisoned");
            let version = o.resource_version().unwrap_or_default();
            let kind = K::kind(&());
            // Deleted: a change. Written: a change unless the write was the
            // operator's own (its answer may come after this event: judged when
            // the next reconcile asks, `Applied::fresh`).
            if deleted {
                applied.changed(Some(ns));
            } else {
                applied.wrote(ns, (kind.into_owned(), o.name_any(), version));
            }
        }
        std::future::ready(object.map(Ok))
    })
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
            node_changed: Default::default(),
            geo,
            applied: Default::default(),
            status_written: Default::default(),
        }
    }
}

impl Context {
    /// The Nodes this controller's watch caches, for the qualifier: one watch and one copy of
    /// every Node for both.
    pub fn node_feed(&self) -> crate::qualifier::NodeFeed {
        crate::qualifier::NodeFeed {
            store: self.nodes.clone(),
            changed: self.node_changed.clone(),
        }
    }
}

/// Runs the Workplace controller until the watches end.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let cfg = watcher::Config::default;
    // Nodes (eligibility, zones) and policies (verdicts, mode) concern every Workplace. Node
    // heartbeats do not: only a change of labels (eligibility, zone) reconciles everything.
    let writer = ctx
        .node_writer
        .lock()
        .expect("not poisoned")
        .take()
        .expect("the Workplace controller runs once per Context");
    // The qualifier reads the same cache: it is told of a change (not of a heartbeat: a
    // kubelet rewrites its Node's status every few seconds) once the store holds it.
    let mut changes = Changes::new(|n: &Node| hash_of(&hexagone_platform::k8s::describe(n)));
    let node_changed = ctx.node_changed.clone();
    let nodes = watcher(Api::<Node>::all(client.clone()), cfg())
        .backoff(WatchBackoff::default())
        .modify(|n| n.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(event) = event
                && changes.judge(event)
            {
                node_changed.notify_one();
            }
        })
        .applied_objects()
        .predicate_filter(predicates::labels, Default::default());
    let errors = |what: &str| ctx.metrics.watch_errors.with_label_values(&[what]);
    let nodes = logged("Nodes", errors("Node"), nodes).map(|_| ());
    let policies = watcher(Api::<LocalityPolicyResource>::all(client.clone()), cfg())
        .backoff(WatchBackoff::default())
        .touched_objects();
    let policies = logged("LocalityPolicies", errors("LocalityPolicy"), policies).map(|_| ());
    let everything = futures::stream::select(nodes, policies);
    // The Workplaces, without the operator's own status writes: a reconcile writes status, and
    // reading it back would start another.
    let (workplaces, writer) = reflector::store();
    let written = ctx.clone();
    let wanted = watcher(Api::<Workplace>::all(client.clone()), cfg())
        .backoff(WatchBackoff::default())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            move |wp: &Workplace| {
                let ours = written
                    .status_written
                    .lock()
                    .expect("not poisoned")
                    .get(&key(wp))
                    .copied();
                workplace_print(wp, ours)
            },
            Default::default(),
        );
    // No watch hands its errors to the controller (`watches.rs`): its trigger backoff would
    // pause them all, the Nodes' with them.
    let wanted = logged("Workplaces", errors("Workplace"), wanted).map(Ok);
    let controller = Controller::for_stream(wanted, workplaces.clone());
    // Every pod of a namespace counts (not only those the operator rendered): a pod's change
    // reconciles the namespace's Workplace.
    controller
        .owns_stream(owned::<Deployment>(&ctx))
        .owns_stream(owned::<StatefulSet>(&ctx))
        .owns_stream(owned::<CronJob>(&ctx))
        .owns_stream(owned::<Service>(&ctx))
        .owns_stream(owned::<ConfigMap>(&ctx))
        .owns_stream(owned::<ServiceAccount>(&ctx))
        .owns_stream(owned::<PodDisruptionBudget>(&ctx))
        .owns_stream(owned::<NetworkPolicy>(&ctx))
        .owns_stream(owned::<Ingress>(&ctx))
        .watches_stream(pods(client.clone(), errors("Pod")), move |pod| {
            let ns = pod.namespace();
            workplaces
                .state()
                .into_iter()
                .filter(|wp| wp.namespace() == ns)
                .map(|wp| reflector::ObjectRef::from_obj(&*wp))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(everything)
        // A few Workplaces at a time: each holds its rendered objects while it applies them.
        .with_config(kube::runtime::controller::Config::default().concurrency(4))
        .graceful_shutdown_on(std::future::pending())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// Every pod of the cluster, as a change of what a reconcile reads of it: its node, its labels,
/// its deletion and why the scheduler cannot place it (`readiness.rs`, `sovereignty.rs`). The
/// kubelet's status writes (containers started, ready), most of a pod's events, are not: a
/// component's readiness is read from its workloads, whose status changes reconcile.
fn pods(
    client: Client,
    errors: prometheus::IntCounter,
) -> impl futures::Stream<Item = Result<Pod, watcher::Error>> + Send + 'static {
    let mut changes = Changes::new(pod_print);
    let events = watcher(Api::<Pod>::all(client), watcher::Config::default())
        .backoff(WatchBackoff::default());
    logged("Pods", errors, events).filter_map(move |event| {
        let changed = changes.judge(&event);
        std::future::ready(match event {
            watcher::Event::Apply(p) | watcher::Event::Delete(p) | watcher::Event::InitApply(p)
                if changed =>
            {
                Some(Ok(p))
            }
            _ => None,
        })
    })
}

/// What a reconcile reads of a pod: its node, labels, deletion and the scheduler's verdict.
fn pod_print(p: &Pod) -> u64 {
    let scheduled = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .map(|c| (&c.status, &c.reason, &c.message));
    hash_of(&(
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        &p.metadata.labels,
        p.metadata.deletion_timestamp.is_some(),
        scheduled,
    ))
}

/// What of a Workplace starts a reconcile: its spec (generation), labels, annotations,
/// finalizers and deletion, and a status other than the one the operator last wrote (`ours`,
/// [`status_print`]); not the operator's own status writes.
fn workplace_print(wp: &Workplace, ours: Option<u64>) -> Option<u64> {
    let m = wp.meta();
    let theirs = wp.status.as_ref().map(status_print);
    Some(hash_of(&(
        m.uid.as_deref(),
        m.generation,
        &m.labels,
        &m.annotations,
        &m.finalizers,
        m.deletion_timestamp.is_some(),
        theirs.is_some() && theirs != ours,
    )))
}

/// A fingerprint of a Workplace status.
fn status_print(status: &hexagone_platform::workplace::WorkplaceStatus) -> u64 {
    hash_of(&serde_json::to_string(status).unwrap_or_default())
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
    use super::Applied;

    /// An apply is trusted only for what it applied, while nothing in its namespace changed and
    /// no watch listed again, and for [`super::REAPPLY`] at most; a change seen during the
    /// apply counts after it.
    #[test]
    fn an_apply_is_trusted_until_anything_of_it_changes() {
        let mut a = Applied::default();
        let (ns, other) = ("ministere", "rh");
        let done = |a: &mut Applied, at: std::time::Instant| {
            let counted = a.counted(ns);
            a.done.insert(ns.to_owned(), (1, counted, at));
        };
        assert_eq!(a.fresh(ns, 1), None, "never applied");
        let counted = a.counted(ns);
        // A change of its objects lands while the apply runs (its own writes, or someone's).
        a.changed(Some(ns.to_owned()));
        a.done
            .insert(ns.to_owned(), (1, counted, std::time::Instant::now()));
        assert_eq!(
            a.fresh(ns, 1),
            None,
            "a change during the apply is not covered by it"
        );
        done(&mut a, std::time::Instant::now());
        let left = a.fresh(ns, 1).expect("fresh");
        assert!(
            left <= super::REAPPLY && left > super::REAPPLY / 2,
            "{left:?}"
        );
        assert_eq!(a.fresh(ns, 2), None, "another rendering");
        a.changed(Some(other.to_owned()));
        assert!(a.fresh(ns, 1).is_some(), "another namespace's change");
        a.changed(Some(ns.to_owned()));
        assert_eq!(a.fresh(ns, 1), None, "one of its objects changed");
        done(&mut a, std::time::Instant::now());
        a.changed(None);
        assert_eq!(a.fresh(ns, 1), None, "a watch listed again");
        done(&mut a, std::time::Instant::now());
        // Its own writes, seen before or after their answers, are no change; another's is.
        let write = |v: &str| {
            (
                "ConfigMap".to_owned(),
                "exo-config".to_owned(),
                v.to_owned(),
            )
        };
        a.starting(ns);
        a.wrote(ns.to_owned(), write("42"));
        a.wrote(other.to_owned(), write("41"));
        done(&mut a, std::time::Instant::now());
        assert_eq!(a.fresh(ns, 1), None, "an answer not received yet");
        a.own.entry(ns.to_owned()).or_default().insert(write("42"));
        assert!(a.fresh(ns, 1).is_some(), "its own write");
        a.wrote(ns.to_owned(), write("43"));
        assert_eq!(a.fresh(ns, 1), None, "a later write, someone else's");
        assert!(a.why(ns, 1).contains("1 change(s)"), "{}", a.why(ns, 1));
        a.starting(ns);
        done(&mut a, std::time::Instant::now());
        assert!(a.fresh(ns, 1).is_some(), "applied over");
        a.forget(ns);
        assert_eq!(a.fresh(ns, 1), None, "refused or removed in between");
        if let Some(old) = std::time::Instant::now().checked_sub(super::REAPPLY) {
            done(&mut a, old);
            assert_eq!(a.fresh(ns, 1), None, "applied too long ago");
        }
    }

    /// A pod's change counts when it moves (scheduled, deleted, relabelled) or the scheduler
    /// says why it cannot place it; the kubelet's reports of its containers do not.
    #[test]
    fn a_pod_counts_when_it_moves_not_when_its_containers_start() {
        use k8s_openapi::api::core::v1::Pod;
        let pod = |node: Option<&str>, conditions: serde_json::Value, ready: bool| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "exo-0", "namespace": "ns", "labels": {"app": "exo"}},
                "spec": {"nodeName": node, "containers": [{"name": "exo"}]},
                "status": {"phase": if ready { "Running" } else { "Pending" }, "conditions": conditions,
                           "containerStatuses": [{"name": "exo", "ready": ready, "restartCount": 0,
                                                  "image": "exo", "imageID": ""}]}
            }))
            .expect("a Pod")
        };
        let print = super::pod_print;
        let unplaced = pod(None, serde_json::json!([]), false);
        let refused = pod(
            None,
            serde_json::json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                "message": "0/7 nodes are available"}]),
            false,
        );
        let placed = pod(
            Some("ovh-par1-a"),
            serde_json::json!([{"type": "PodScheduled", "status": "True"}]),
            false,
        );
        let mut running = pod(
            Some("ovh-par1-a"),
            serde_json::json!([{"type": "PodScheduled", "status": "True"},
                               {"type": "Ready", "status": "True"}]),
            true,
        );
        assert_ne!(print(&unplaced), print(&refused), "the scheduler's refusal");
        assert_ne!(print(&refused), print(&placed), "placed on a node");
        assert_eq!(print(&placed), print(&running), "its containers started");
        // Evicted (a pod on a node the policy refuses): deleted, still listed until it is gone.
        let mut evicted = placed.clone();
        evicted.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        assert_ne!(print(&placed), print(&evicted), "evicted");
        running.metadata.labels = Some([("app".into(), "other".into())].into());
        assert_ne!(print(&placed), print(&running), "relabelled");
    }

    /// A creation refused in a namespace being deleted is told from other refusals, and the
    /// namespace is left alone for a while only.
    #[test]
    fn a_namespace_being_deleted_is_recognised_and_left_alone_for_a_while() {
        let refused = |reason: &str| {
            let status: kube::core::Status = serde_json::from_value(serde_json::json!({
                "status": "Failure", "code": 403, "reason": "Forbidden",
                "message": "secrets \"x\" is forbidden: unable to create new content in namespace ns because it is being terminated",
                "details": {"name": "x", "kind": "secrets",
                            "causes": [{"reason": reason, "message": "namespace ns is being terminated", "field": "metadata.namespace"}]}
            }))
            .expect("a Status");
            super::ReconcileError::Api {
                what: "creating Secret ns/x".into(),
                source: kube::Error::Api(Box::new(status)),
            }
        };
        assert!(refused("NamespaceTerminating").namespace_terminating());
        assert!(!refused("FieldValueForbidden").namespace_terminating());
        let mut a = Applied::default();
        assert!(!a.terminating("ns"));
        a.terminating.insert("ns".into(), std::time::Instant::now());
        assert!(a.terminating("ns"));
        assert!(!a.terminating("other"));
        a.terminating
            .insert("ns".into(), std::time::Instant::now() - super::TERMINATING);
        assert!(!a.terminating("ns"), "tried again after a while");
    }

    /// Status writes do not start a reconcile; spec, labels, annotations, finalizers and
    /// deletion do.
    #[test]
    fn only_what_ops_change_starts_a_reconcile() {
        use hexagone_platform::workplace::Workplace;
        let wp: Workplace = serde_json::from_value(serde_json::json!({
            "apiVersion": "hexagone.fr/v1alpha1", "kind": "Workplace",
            "metadata": {"name": "w", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"policy": "dr", "profile": "users500", "domain": "intranet.example.fr",
                     "storage": {"provisioner": "csi.example"}}
        }))
        .expect("a Workplace");
        let print = |w: &Workplace| super::workplace_print(w, None);
        let mut status = wp.clone();
        status.status = Some(Default::default());
        status.metadata.resource_version = Some("7".into());
        let ours = super::status_print(status.status.as_ref().unwrap());
        assert_eq!(
            super::workplace_print(&status, Some(ours)),
            print(&wp),
            "its own status write"
        );
        assert_ne!(
            super::workplace_print(&status, Some(ours ^ 1)),
            print(&wp),
            "a status someone else wrote"
        );
        let changed = |f: &dyn Fn(&mut Workplace)| {
            let mut w = wp.clone();
            f(&mut w);
            print(&w) != print(&wp)
        };
        assert!(changed(&|w| w.metadata.generation = Some(2)));
        assert!(changed(&|w| w.metadata.finalizers = Some(vec!["f".into()])));
        assert!(changed(
            &|w| w.metadata.labels = Some([("a".into(), "b".into())].into())
        ));
        assert!(changed(
            &|w| w.metadata.annotations = Some([("a".into(), "b".into())].into())
        ));
        assert!(changed(&|w| {
            w.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
            );
        }));
    }
}
