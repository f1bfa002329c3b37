//! `serve --kubernetes`: the auditor's own watch of the cluster (PersistentVolumes, their
//! claims, Pods, Nodes, NodeAttestations, NetworkPolicies, LocalityPolicies, VolumeSnapshots and
//! their contents — never the operator's conclusions). After every change (and every [`RESYNC`], for attestations that
//! expire) it swaps the judge's node attestations for the ones it sees, works out where each
//! bound volume is ([`super::volumes`]), each ready snapshot ([`super::snapshots`]) and each
//! pod of a workplace namespace ([`super::pods`]) and where the namespace's NetworkPolicies let
//! its pods send data ([`super::egress`]) and the registry each of their images comes from
//! ([`super::images`]), judges each placement and queues the ones whose facts or verdict changed to the sequencer, exactly
//! as an HTTP request's observations are queued.
//!
//! Each violation recorded also raises a Warning Event (`events.k8s.io`) on the volume's
//! claim (or the VolumeSnapshot, the pod — its container for an image —, the NetworkPolicy), related to the node, so whoever runs the workload sees it
//! with `kubectl describe`.
//!
//! Each LocalityPolicy is recorded by its digest (a [`Body::Policy`] entry) when it appears or
//! its rules change, and as removed when it is deleted: the policies the operator places
//! workloads by, rewritten by whoever could, show in the ledger beside the placements they led
//! to. Every change the watch delivers counts, not only the state a pass ends on
//! ([`super::policies`]): a rewrite undone before the pass is recorded, and so is its undoing.
//!
//! A placement is recorded when its class, place, facts (the evidence as judged: labels,
//! addresses, attestation) or verdict differ from the last one recorded for that object: an
//! unchanged cluster writes nothing. After a restart, the first pass compares each placement
//! with the object's latest entry in the ledger (below the signed head) and records only what
//! changed while the auditor was away.
//!
//! The snapshot kinds are a cluster add-on: when the cluster does not serve them to the
//! auditor (CRDs not installed, or RBAC without them), volumes are recorded without snapshots,
//! the reason is logged once, and the collector looks again every [`RESYNC`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::{Notify, oneshot};

use hexagone_platform::k8s::{LocalityPolicyResource, NodeAttestation};
use kube::api::{ApiResource, DynamicObject};

use super::policies::{PolicyChange, PolicyLog, PolicyRecord, policy_digest};
use super::snapshots::{VolumeSnapshot, VolumeSnapshotContent};
use super::volumes::{Held, Placement, STORE};
use crate::ingest::{Location, Report};
use crate::ledger::checkpoint::{Checkpoint, parse_note};
use crate::ledger::entry::{Body, Observation};
use crate::queue::Job;
use crate::serve::state::Service;
use crate::store::Ledger;

/// How often the volumes are judged again without any change in the cluster (attestations
/// expire without an event).
pub const RESYNC: Duration = Duration::from_secs(60);

/// How long a burst of changes is gathered before one pass.
const SETTLE: Duration = Duration::from_millis(200);

/// Why the collector stopped.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A watch never completed its first listing (the stream ended).
    #[error("the watch of {0} stopped before its first listing")]
    NotReady(&'static str),
    /// The sequencer is gone: the service is stopping.
    #[error("the sequencer stopped")]
    SequencerGone,
}

/// The Event reason of a recorded violation.
pub const VIOLATION_REASON: &str = "LocalityViolation";

/// The collector's view of the cluster.
struct View {
    pvs: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    attestations: Store<NodeAttestation>,
    netpols: Store<NetworkPolicy>,
    /// Read as plain objects, each parsed on its own: a policy the platform's type refuses (a
    /// country code the CRD's pattern lets through, a field from a newer version) is recorded
    /// all the same, never a reason to stop watching. `None` while the cluster does not serve
    /// the kind to the auditor.
    policies: Option<PolicyWatch>,
    /// `None` while the cluster does not serve the snapshot kinds to the auditor.
    snapshots: Option<SnapshotView>,
}

/// The LocalityPolicies as the cluster holds them, and every spec change the watch delivered
/// since the last pass ([`PolicyLog`]): a rewrite undone before the pass is recorded too.
struct PolicyWatch {
    store: Store<DynamicObject>,
    log: Arc<Mutex<PolicyLog>>,
}

struct SnapshotView {
    snapshots: Store<VolumeSnapshot>,
    contents: Store<VolumeSnapshotContent>,
}

/// Watches the snapshot kinds once the cluster lists them to this identity, after their first
/// listing; the cluster's answer otherwise (a watch of a kind not served would retry forever
/// and never let the first pass start).
async fn watch_snapshots(
    client: &Client,
    changed: &Arc<Notify>,
) -> Result<Result<SnapshotView, kube::Error>, CollectError> {
    let probe = ListParams::default().limit(1);
    let snapshots = Api::<VolumeSnapshot>::all(client.clone());
    let contents = Api::<VolumeSnapshotContent>::all(client.clone());
    if let Err(e) = snapshots.list_metadata(&probe).await {
        return Ok(Err(e));
    }
    if let Err(e) = contents.list_metadata(&probe).await {
        return Ok(Err(e));
    }
    let view = SnapshotView {
        snapshots: watch(snapshots, "volumesnapshots", changed.clone()),
        contents: watch(contents, "volumesnapshotcontents", changed.clone()),
    };
    for (store, what) in [
        (view.snapshots.wait_until_ready().await, "volumesnapshots"),
        (
            view.contents.wait_until_ready().await,
            "volumesnapshotcontents",
        ),
    ] {
        store.map_err(|_| CollectError::NotReady(what))?;
    }
    Ok(Ok(view))
}

/// Watches LocalityPolicies once the cluster lists them to this identity, after their first
/// listing; the cluster's answer otherwise (the CRD absent, or RBAC without it).
async fn watch_policies(
    client: &Client,
    changed: &Arc<Notify>,
) -> Result<Result<PolicyWatch, kube::Error>, CollectError> {
    let kind = ApiResource::erase::<LocalityPolicyResource>(&());
    let api = Api::<DynamicObject>::all_with(client.clone(), &kind);
    if let Err(e) = api.list_metadata(&ListParams::default().limit(1)).await {
        return Ok(Err(e));
    }
    let writer = reflector::store::Writer::new(kind);
    let store = writer.as_reader();
    let log = Arc::new(Mutex::new(PolicyLog::default()));
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let (kept, changed) = (log.clone(), changed.clone());
    // The reflector has applied each event to the store before it comes here: a pass never
    // reads a change in the log that its store does not hold yet.
    tokio::spawn(stream.for_each(move |event| {
        match event {
            Ok(event) => {
                lock(&kept).observe(&event, time::OffsetDateTime::now_utc());
                changed.notify_one();
            }
            Err(e) => tracing::warn!("kubernetes: watching localitypolicies: {e} (retrying)"),
        }
        std::future::ready(())
    }));
    store
        .wait_until_ready()
        .await
        .map_err(|_| CollectError::NotReady("localitypolicies"))?;
    Ok(Ok(PolicyWatch { store, log }))
}

/// The policy log, even if a holder panicked (it holds plain data, never half-written).
fn lock(log: &Mutex<PolicyLog>) -> std::sync::MutexGuard<'_, PolicyLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

fn watch<K>(api: Api<K>, what: &'static str, changed: Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    watch_with(api, K::DynamicType::default(), what, changed)
}

fn watch_with<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    what: &'static str,
    changed: Arc<Notify>,
) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let writer = reflector::store::Writer::new(dyntype);
    let reader = writer.as_reader();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(stream.for_each(move |event| {
        match event {
            Ok(_) => changed.notify_one(),
            Err(e) => tracing::warn!("kubernetes: watching {what}: {e} (retrying)"),
        }
        std::future::ready(())
    }));
    reader
}

/// Watches the cluster with `client` and records volume placements through `service`'s
/// sequencer queue until the queue closes.
pub async fn run(
    client: Client,
    service: Arc<Service>,
    ledger: Ledger,
) -> Result<(), CollectError> {
    let changed = Arc::new(Notify::new());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "hexagone-auditor".to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let mut view = View {
        pvs: watch(
            Api::all(client.clone()),
            "persistentvolumes",
            changed.clone(),
        ),
        claims: watch(
            Api::all(client.clone()),
            "persistentvolumeclaims",
            changed.clone(),
        ),
        pods: watch(Api::all(client.clone()), "pods", changed.clone()),
        nodes: watch(Api::all(client.clone()), "nodes", changed.clone()),
        attestations: watch(
            Api::all(client.clone()),
            "nodeattestations",
            changed.clone(),
        ),
        netpols: watch(Api::all(client.clone()), "networkpolicies", changed.clone()),
        policies: None,
        snapshots: None,
    };
    // Judge nothing before every list is complete: a volume judged before the attestations
    // arrive would be recorded as a violation it is not.
    for (store, what) in [
        (view.pvs.wait_until_ready().await, "persistentvolumes"),
        (
            view.claims.wait_until_ready().await,
            "persistentvolumeclaims",
        ),
        (view.pods.wait_until_ready().await, "pods"),
        (view.nodes.wait_until_ready().await, "nodes"),
        (
            view.attestations.wait_until_ready().await,
            "nodeattestations",
        ),
        (view.netpols.wait_until_ready().await, "networkpolicies"),
    ] {
        store.map_err(|_| CollectError::NotReady(what))?;
    }
    tracing::info!(
        "kubernetes: watching volumes, claims, pods, nodes, attestations and network policies"
    );
    let mut recorded: HashMap<String, Recorded> = HashMap::new();
    // The first pass compares with the ledger; later ones with what this process recorded.
    // Kept until a pass has recorded what it found (one that stopped short, or whose commit
    // failed, leaves it for the next), so that what was removed while no collector watched is
    // recorded as removed once. The policies and the snapshots have their own: they may be
    // watched only later (the CRD installed, the right granted), and their first pass with the
    // watch is theirs.
    let mut seed = Some(ledger.clone());
    let mut policy_seed = Some(ledger.clone());
    let mut snapshot_seed = Some(ledger);
    // When the snapshot kinds (and the policies) were last looked for, and whether their
    // absence was logged.
    let (mut looked, mut logged) = (None::<Instant>, false);
    let (mut looked_policies, mut logged_policies) = (None::<Instant>, false);
    loop {
        if view.policies.is_none() && looked_policies.is_none_or(|t| t.elapsed() >= RESYNC) {
            looked_policies = Some(Instant::now());
            match watch_policies(&client, &changed).await? {
                Ok(policies) => {
                    view.policies = Some(policies);
                    tracing::info!("kubernetes: watching LocalityPolicies");
                }
                Err(e) if !logged_policies => {
                    logged_policies = true;
                    tracing::warn!(
                        "kubernetes: LocalityPolicies are not watched: the cluster does not list \
                         them to the auditor ({e}); looking again every {}s",
                        RESYNC.as_secs()
                    );
                }
                Err(_) => {}
            }
        }
        if view.snapshots.is_none() && looked.is_none_or(|t| t.elapsed() >= RESYNC) {
            looked = Some(Instant::now());
            match watch_snapshots(&client, &changed).await? {
                Ok(snapshots) => {
                    view.snapshots = Some(snapshots);
                    tracing::info!(
                        "kubernetes: watching VolumeSnapshots and VolumeSnapshotContents"
                    );
                }
                Err(e) if !logged => {
                    logged = true;
                    tracing::warn!(
                        "kubernetes: VolumeSnapshots are not watched: the cluster does not list \
                         {}/v1 to the auditor ({e}); looking again every {}s",
                        super::snapshots::GROUP,
                        RESYNC.as_secs()
                    );
                }
                Err(_) => {}
            }
        }
        let seeds = Seeds {
            objects: seed.as_ref(),
            policies: policy_seed.as_ref(),
            snapshots: snapshot_seed.as_ref(),
        };
        if pass(&view, &service, &recorder, &mut recorded, seeds).await? {
            seed = None;
            if view.policies.is_some() {
                policy_seed = None;
            }
            if view.snapshots.is_some() {
                snapshot_seed = None;
            }
        }
        service.shared.metrics.collector_passes.inc();
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        tokio::time::sleep(SETTLE).await;
    }
}

/// What decides whether a placement is recorded again: the object's class, the place, the
/// facts as judged and the verdict (not the time, the content stamp or the database versions),
/// and for an image its content stamp (which image, which digest).
fn placement_key(o: &Observation, kind: Kind) -> String {
    let mut key = format!("{}\n{}\n", o.object.class, o.locality.subject);
    if matches!(kind, Kind::Image) {
        // One registry serves other code too: the image itself (as written, and the digest
        // pulled) decides as well, and whether the entry names it (entries written before
        // they did are written again, once, naming it).
        key.push_str(&format!("{:?}\n{:?}\n", o.content, o.image));
    }
    for e in o.locality.evidence.iter() {
        key.push_str(&format!("{:?} {:?} {:?}\n", e.source, e.assessment, e.fact));
    }
    key.push_str(&format!("{:?}", o.locality.verdict));
    key
}

/// Whether `o` differs from the placement recorded under `previous` only by naming its image
/// (an entry written before entries named images, recorded again once after the upgrade).
fn only_naming(previous: &str, o: &Observation, kind: Kind) -> bool {
    o.image.is_some() && {
        let mut unnamed = o.clone();
        unnamed.image = None;
        placement_key(&unnamed, kind) == previous
    }
}

/// The latest entry about the collector's `object_id` (in its own store) in the ledger
/// under the signed head the service's own sequencer published, if any: an entry about the
/// same identifier in another store is not the volume's, and an entry row the database's owner
/// rewrote is an error (the placement is then recorded again), never a reason to skip it.
async fn latest(
    ledger: &Ledger,
    service: &Service,
    object_id: &str,
) -> Result<Option<Body>, String> {
    let Some(cp) = published(service)? else {
        return Ok(None);
    };
    ledger
        .latest_proven(object_id, Some(STORE), cp.size, &cp.root)
        .await
        .map(|found| found.map(|(_, _, body)| body))
        .map_err(|e| e.to_string())
}

/// On the first pass (`seed`), an object this process has not recorded yet counts as recorded
/// when its latest entry in the ledger gives the same `key` (by `key_of`): whether it did.
/// An entry that cannot be read is not a match (the object is recorded again rather than
/// missed).
async fn seeded(
    seed: Option<&Ledger>,
    service: &Service,
    recorded: &mut HashMap<String, Recorded>,
    object: &crate::ledger::entry::ObjectId,
    key: &str,
    key_of: impl FnOnce(&Body) -> Option<String>,
) -> bool {
    let Some(ledger) = seed.filter(|_| !recorded.contains_key(&object.id)) else {
        return false;
    };
    match latest(ledger, service, &object.id).await {
        Ok(Some(body)) if key_of(&body).as_deref() == Some(key) => {
            recorded.insert(
                object.id.clone(),
                Recorded {
                    object: object.clone(),
                    key: key.to_owned(),
                },
            );
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!("kubernetes: {}: its latest entry: {e}", object.id);
            false
        }
    }
}

/// The digest a policy stands at before this pass: what this process recorded of it, or on
/// the first pass (`seed`) the digest its latest entry in the ledger records (then counted as
/// recorded, so that its deletion is recorded as a removal); `None` when no policy entry
/// stands for it. An entry that cannot be read stands for nothing (the policy is recorded
/// again rather than missed).
async fn standing_policy(
    seed: Option<&Ledger>,
    service: &Service,
    recorded: &mut HashMap<String, Recorded>,
    object: &crate::ledger::entry::ObjectId,
) -> Option<String> {
    if let Some(r) = recorded.get(&object.id) {
        return Some(r.key.clone());
    }
    match latest(seed?, service, &object.id).await {
        Ok(Some(Body::Policy { digest, .. })) => {
            recorded.insert(
                object.id.clone(),
                Recorded {
                    object: object.clone(),
                    key: digest.clone(),
                },
            );
            Some(digest)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("kubernetes: {}: its latest entry: {e}", object.id);
            None
        }
    }
}

/// The collector's objects standing in the ledger under the published checkpoint
/// ([`Ledger::standing_objects`]; none before the first checkpoint).
async fn standing(
    ledger: &Ledger,
    service: &Service,
) -> Result<Vec<crate::ledger::entry::ObjectId>, String> {
    let Some(cp) = published(service)? else {
        return Ok(Vec::new());
    };
    ledger
        .standing_objects(STORE, cp.size, &cp.root)
        .await
        .map_err(|e| e.to_string())
}

/// The checkpoint the service last published (none before its first).
fn published(service: &Service) -> Result<Option<Checkpoint>, String> {
    let published = service
        .shared
        .checkpoint
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    published
        .map(|note| {
            parse_note(&note)
                .and_then(|n| Checkpoint::parse_body(&n.text))
                .map_err(|e| format!("the published checkpoint: {e}"))
        })
        .transpose()
}

/// What the collector last recorded of an object: its identity and what decides whether a
/// placement of it is recorded again ([`placement_key`]).
#[derive(Debug, Clone)]
struct Recorded {
    object: crate::ledger::entry::ObjectId,
    key: String,
}

/// An item of a pass waiting for its commit.
enum Pending {
    /// A placement judged, to raise an Event for when it is a violation.
    Placed {
        recorded: Recorded,
        regarding: Box<k8s_openapi::api::core::v1::ObjectReference>,
        place: Place,
        reason: Option<String>,
        kind: Kind,
        /// The entry only names the image its latest entry did not (the first pass after an
        /// upgrade): its violation, if any, was raised when first recorded.
        named_only: bool,
    },
    /// An object gone from the cluster (its identifier).
    Removed(String),
    /// A LocalityPolicy recorded by its digest (the digest is the key).
    Policy(Recorded),
}

/// What a placement is of.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Volume,
    Snapshot,
    Pod,
    Egress,
    Image,
}

/// Where a placement is: on a node, or a destination outside the cluster.
#[derive(Debug, Clone)]
enum Place {
    Node(String),
    /// A network volume's server.
    Server(String),
    Destination(String),
    Registry(String),
}

/// The ledger a pass compares with, until a pass has recorded what it found: `objects` for the
/// placements and every object but the policies and the snapshots, `policies` for the
/// LocalityPolicies and `snapshots` for the VolumeSnapshots (each kept until a pass that
/// watched its kind has).
#[derive(Clone, Copy)]
struct Seeds<'a> {
    objects: Option<&'a Ledger>,
    policies: Option<&'a Ledger>,
    snapshots: Option<&'a Ledger>,
}

/// Whether an object is a VolumeSnapshot's record: the collector's (`kubernetes`),
/// `snapshot/<namespace>/<name>`.
fn is_snapshot(o: &crate::ledger::entry::ObjectId) -> bool {
    o.store == STORE && o.id.starts_with("snapshot/")
}

/// One pass: judge every placement with the current attestations, queue the changed ones,
/// wait for their commit. With a seed (the first passes), an object this process has not
/// recorded is compared with its latest entry in that ledger, and one standing there that the
/// cluster no longer holds is recorded as removed — a policy only while the policies are
/// watched, a snapshot only while the snapshots are: unwatched, they are unknown, never gone.
/// Whether the pass recorded what it found (committed, or nothing to record) and, with a seed,
/// could read the ledger to compare with.
async fn pass(
    view: &View,
    service: &Service,
    recorder: &Recorder,
    recorded: &mut HashMap<String, Recorded>,
    seeds: Seeds<'_>,
) -> Result<bool, CollectError> {
    let seed = seeds.objects;
    let attestations: Vec<NodeAttestation> = view
        .attestations
        .state()
        .iter()
        .map(|a| (**a).clone())
        .collect();
    service
        .judge
        .set_node_attestations(crate::judge::node_attestations(&attestations));
    // From now on HTTP observations are judged with the cluster's attestations, and the nodes
    // they name are described by the cluster (set once: the store follows the watch).
    let _ = service.cluster_nodes.set(view.nodes.clone());
    service
        .shared
        .judging
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (pvs, claims, pods, nodes) = (
        view.pvs.state(),
        view.claims.state(),
        view.pods.state(),
        view.nodes.state(),
    );
    let volumes = match super::volumes::placements(
        pvs.iter().map(|a| &**a),
        claims.iter().map(|a| &**a),
        pods.iter().map(|a| &**a),
        nodes.iter().map(|a| &**a),
        hexagone_platform::Catalog::shipped(),
    ) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("kubernetes: a volume cannot be recorded: {e}");
            return Ok(false);
        }
    };
    let snapshots = match &view.snapshots {
        None => Vec::new(),
        Some(s) => super::snapshots::placements(
            s.snapshots.state().iter().map(|a| &**a),
            s.contents.state().iter().map(|a| &**a),
            pvs.iter().map(|a| &**a),
            &volumes,
        )
        .unwrap_or_else(|e| {
            tracing::warn!("kubernetes: a snapshot cannot be recorded: {e}");
            Vec::new()
        }),
    };
    // The changes the watch delivered are taken before the store is read: the store then holds
    // the last of them or a later state, never an earlier one. The store's states are observed
    // at `held_at`, taken before it is read: a change the watch delivers after that time is
    // either in the store read (then the same state, recorded once) or recorded by a later
    // pass at its own, later, time; observation times never go backwards.
    let mut held_at = time::OffsetDateTime::now_utc();
    let (policy_changes, policy_states): (Vec<PolicyChange>, Vec<Arc<DynamicObject>>) =
        match &view.policies {
            Some(p) => {
                let (changes, skipped) = lock(&p.log).take();
                if skipped > 0 {
                    tracing::warn!(
                        "kubernetes: {skipped} changes of LocalityPolicies skipped since the last \
                         pass (a policy changed more than {} times, or more than {} changes in \
                         all): each policy's first changes and latest state are recorded",
                        super::policies::MAX_PER_POLICY,
                        super::policies::MAX_CHANGES
                    );
                    service
                        .shared
                        .metrics
                        .skipped_policy_changes
                        .inc_by(skipped);
                }
                held_at = time::OffsetDateTime::now_utc();
                (changes, p.store.state())
            }
            None => (Vec::new(), Vec::new()),
        };
    // The officer's policies name the namespaces they protect; pods labelled part of a
    // workplace add theirs.
    let namespaces = super::pods::workplace_namespaces(
        pods.iter().map(|a| &**a),
        policy_states.iter().filter_map(|p| p.data.get("spec")),
    );
    let on_nodes = super::pods::placements(
        pods.iter().map(|a| &**a),
        nodes.iter().map(|a| &**a),
        &namespaces,
    )
    .unwrap_or_else(|e| {
        tracing::warn!("kubernetes: a pod cannot be recorded: {e}");
        Vec::new()
    });
    let netpols = view.netpols.state();
    let egress = super::egress::destinations(
        netpols.iter().map(|a| &**a),
        pods.iter().map(|a| &**a),
        &namespaces,
    )
    .unwrap_or_else(|e| {
        tracing::warn!("kubernetes: an egress destination cannot be recorded: {e}");
        Vec::new()
    });
    let images = super::images::images(pods.iter().map(|a| &**a), &namespaces);
    let placements: Vec<(Item, Kind)> = volumes
        .into_iter()
        .map(|p| (Item::held(p), Kind::Volume))
        .chain(
            snapshots
                .into_iter()
                .map(|p| (Item::held(p), Kind::Snapshot)),
        )
        .chain(on_nodes.into_iter().map(|p| (Item::held(p), Kind::Pod)))
        .chain(egress.into_iter().map(|d| {
            (
                Item {
                    place: Place::Destination(d.block.clone()),
                    object: d.object,
                    content: d.content,
                    location: Location::Endpoint(d.block),
                    regarding: d.regarding,
                },
                Kind::Egress,
            )
        }))
        .chain(images.into_iter().map(|i| {
            (
                Item {
                    place: Place::Registry(i.registry.clone()),
                    object: i.object,
                    content: i.content,
                    location: Location::Registry {
                        host: i.registry,
                        image: i.image,
                    },
                    regarding: i.regarding,
                },
                Kind::Image,
            )
        }))
        .collect();
    let geo = service.judge.snapshot();
    let now = time::OffsetDateTime::now_utc();
    let mut items = Vec::new();
    let mut keys = Vec::new();
    // What this process recorded and the cluster no longer holds (a pod deleted, a claim's
    // volume released, a snapshot deleted): recorded as removed, so its last placement stops
    // standing for where it is; back later, it is recorded again. A volume that still exists
    // but is on no node for a while (its pod moving) is not removed: only its next placement
    // is recorded.
    let mut present: std::collections::HashSet<String> = placements
        .iter()
        .map(|(p, _)| p.object.id.clone())
        .collect();
    for pv in pvs.iter() {
        let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if let (true, Some(c)) = (bound, pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()))
            && let (Some(ns), Some(name)) = (&c.namespace, &c.name)
        {
            present.insert(format!("volume/{ns}/{name}"));
        }
    }
    if let Some(view) = &view.snapshots {
        for s in view.snapshots.state() {
            if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                present.insert(format!("snapshot/{ns}/{name}"));
            }
        }
    }
    // Every state of a policy the watch delivered since the last pass, in order, then the
    // state the store holds (the last of them, unless a relisting skipped some): a rewrite
    // undone before this pass is recorded, and so is its undoing.
    let mut held: Vec<PolicyChange> = policy_states
        .iter()
        .filter_map(|lp| {
            Some(PolicyChange {
                name: lp.metadata.name.clone()?,
                digest: Some(policy_digest(lp)),
                at: held_at,
            })
        })
        .collect();
    held.sort_by(|a, b| a.name.cmp(&b.name));
    let mut sequence = policy_changes;
    sequence.extend(held);
    let mut policy_objects: HashMap<String, crate::ledger::entry::ObjectId> = HashMap::new();
    let mut policy_standing: HashMap<String, Option<String>> = HashMap::new();
    for change in &sequence {
        if policy_objects.contains_key(&change.name) {
            continue;
        }
        match crate::ledger::entry::ObjectId::new(
            STORE.to_owned(),
            crate::ledger::entry::POLICY_CLASS.to_owned(),
            change.name.clone(),
        ) {
            Ok(object) => {
                let digest = standing_policy(seeds.policies, service, recorded, &object).await;
                policy_standing.insert(change.name.clone(), digest);
                policy_objects.insert(change.name.clone(), object);
            }
            Err(e) => tracing::warn!("kubernetes: a locality policy cannot be recorded: {e}"),
        }
    }
    sequence.retain(|c| policy_objects.contains_key(&c.name));
    let policy_records = super::policies::records(&sequence, |name| {
        policy_standing.get(name).cloned().flatten()
    });
    // Each policy the pass saw is recorded (or removed) from its changes, not again below.
    present.extend(policy_objects.values().map(|o| o.id.clone()));
    // While the policies or the snapshots are not watched (the kind not served to the
    // auditor, its watch not started yet), the cluster's policies or snapshots are unknown:
    // none is gone.
    let unknown = |o: &crate::ledger::entry::ObjectId| {
        (o.class == crate::ledger::entry::POLICY_CLASS && view.policies.is_none())
            || (is_snapshot(o) && view.snapshots.is_none())
    };
    let mut gone: Vec<crate::ledger::entry::ObjectId> = recorded
        .values()
        .filter(|r| !present.contains(&r.object.id) && !unknown(&r.object))
        .map(|r| r.object.clone())
        .collect();
    // On the first pass (and the first with the policies watched), what an earlier run
    // recorded and the cluster lost while no collector watched: the objects of the ledger
    // still standing (their newest entry is no removal), read from every entry under the
    // published checkpoint.
    let seeded_policies = seeds.policies.filter(|_| view.policies.is_some());
    let seeded_snapshots = seeds.snapshots.filter(|_| view.snapshots.is_some());
    // Whether the ledger could be read for the comparison (when a seed asks for one).
    let mut compared = true;
    if let Some(ledger) = seed.or(seeded_policies).or(seeded_snapshots) {
        let of_seed = |o: &crate::ledger::entry::ObjectId| {
            if o.class == crate::ledger::entry::POLICY_CLASS {
                seeded_policies.is_some()
            } else if is_snapshot(o) {
                seeded_snapshots.is_some()
            } else {
                seed.is_some()
            }
        };
        match standing(ledger, service).await {
            Ok(objects) => gone.extend(objects.into_iter().filter(|o| {
                of_seed(o) && !present.contains(&o.id) && !recorded.contains_key(&o.id)
            })),
            // The comparison is not done: the seeds are kept, and the next pass reads again.
            Err(e) => {
                compared = false;
                tracing::warn!(
                    "kubernetes: what earlier runs recorded cannot be read, so nothing removed \
                     while no collector watched is recorded yet (read again next pass): {e}"
                )
            }
        }
    }
    gone.sort_by(|a, b| a.id.cmp(&b.id));
    for object in gone {
        keys.push(Pending::Removed(object.id.clone()));
        items.push(crate::ingest::Submission::new(
            None,
            Body::Removal {
                object,
                observed_at: crate::ledger::entry::Timestamp::from_datetime(now),
                request: None,
            },
        ));
    }
    // The policies whose rules are new or changed, before the placements judged this pass.
    for (name, record, at) in policy_records {
        let object = policy_objects[&name].clone();
        let observed_at = crate::ledger::entry::Timestamp::from_datetime(at);
        match record {
            PolicyRecord::Removed => {
                keys.push(Pending::Removed(object.id.clone()));
                items.push(crate::ingest::Submission::new(
                    None,
                    Body::Removal {
                        object,
                        observed_at,
                        request: None,
                    },
                ));
            }
            PolicyRecord::Digest(digest) => {
                match Body::policy(object.clone(), digest.clone(), observed_at) {
                    Ok(body) => {
                        items.push(crate::ingest::Submission::new(None, body));
                        keys.push(Pending::Policy(Recorded {
                            object,
                            key: digest,
                        }));
                    }
                    Err(e) => {
                        tracing::warn!("kubernetes: locality policy {name}: not recorded: {e}")
                    }
                }
            }
        }
    }
    let not_placements = keys.len();
    let (total, mut in_ledger) = (placements.len(), 0usize);
    for (p, kind) in placements {
        let id = p.object.id.clone();
        let object = p.object.clone();
        let (regarding, place) = (Box::new(p.regarding), p.place);
        let report = Report {
            id: None,
            object: p.object,
            content: p.content,
            location: p.location,
        };
        match service.judge.judge(report, &geo, now) {
            Ok(submission) => {
                let Body::Observation(o) = submission.body() else {
                    continue;
                };
                let key = placement_key(o, kind);
                // A snapshot is compared with the ledger by the first pass that watches the
                // snapshots, which may come after the first pass.
                let compare = if is_snapshot(&object) {
                    seeded_snapshots
                } else {
                    seed
                };
                if seeded(compare, service, recorded, &object, &key, |b| match b {
                    Body::Observation(last) => Some(placement_key(last, kind)),
                    _ => None,
                })
                .await
                {
                    in_ledger += 1;
                }
                if recorded.get(&id).map(|r| &r.key) != Some(&key) {
                    let reason = o.locality.verdict.reasons().first().cloned();
                    let named_only = recorded
                        .get(&id)
                        .is_some_and(|r| only_naming(&r.key, o, kind));
                    items.push(submission);
                    keys.push(Pending::Placed {
                        recorded: Recorded { object, key },
                        regarding,
                        place,
                        reason,
                        kind,
                        named_only,
                    });
                }
            }
            Err(e) => tracing::warn!("kubernetes: {id}: not judged: {e}"),
        }
    }
    if seed.is_some() {
        tracing::info!(
            "kubernetes: first pass: {total} placements, {in_ledger} unchanged since their latest \
             entry in the ledger, {} to record",
            items.len() - not_placements
        );
    }
    if items.is_empty() {
        return Ok(compared);
    }
    // A pass can find more than one transaction commits (a first pass over a large cluster,
    // policies changed many times): jobs of at most MAX_BATCH, queued in order, each answered
    // in turn (the sequencer commits them in that order, another writer's between them).
    let mut answers = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let items: Vec<_> = items.by_ref().take(crate::serve::MAX_BATCH).collect();
        let (reply, answer) = oneshot::channel();
        answers.push((items.len(), answer));
        let job = Job {
            items,
            arrived: Instant::now(),
            reply,
        };
        // Unlike an HTTP writer, the collector waits for room in the queue.
        service
            .queue
            .send(job)
            .await
            .map_err(|_| CollectError::SequencerGone)?;
    }
    let mut keys = keys.into_iter();
    for (n, answer) in answers {
        match answer.await {
            Ok(Ok(committed)) => {
                for (pending, outcome) in keys.by_ref().take(n).zip(&committed.entries) {
                    let (recorded_now, regarding, place, reason, kind, named_only) = match pending {
                        Pending::Removed(id) => {
                            tracing::info!("kubernetes: {id}: removed (entry {})", outcome.seq);
                            recorded.remove(&id);
                            service.shared.metrics.collected_removals.inc();
                            continue;
                        }
                        Pending::Policy(policy) => {
                            tracing::info!(
                                "kubernetes: locality policy {}: {} (entry {})",
                                policy.object.id,
                                policy.key,
                                outcome.seq
                            );
                            recorded.insert(policy.object.id.clone(), policy);
                            service.shared.metrics.collected_policies.inc();
                            continue;
                        }
                        Pending::Placed {
                            recorded,
                            regarding,
                            place,
                            reason,
                            kind,
                            named_only,
                        } => (recorded, regarding, place, reason, kind, named_only),
                    };
                    let id = recorded_now.object.id.clone();
                    tracing::info!(
                        "kubernetes: {id}: {} (entry {})",
                        outcome.verdict,
                        outcome.seq
                    );
                    if outcome.verdict == "violation" && !named_only {
                        let (at, node) = match &place {
                            Place::Node(node) => (format!("on node {node}"), Some(node)),
                            Place::Server(host) => (format!("on storage server {host}"), None),
                            Place::Destination(block) => (format!("egress to {block}"), None),
                            Place::Registry(host) => (format!("image from registry {host}"), None),
                        };
                        let note = format!(
                            "{at}: violation first recorded in ledger entry {}: {}",
                            outcome.seq,
                            reason.as_deref().unwrap_or("no reason given")
                        );
                        let event = Event {
                            type_: EventType::Warning,
                            reason: VIOLATION_REASON.to_owned(),
                            // Without a node to tell two violations apart, the note's digest
                            // does: the recorder counts an Event with the same reason and
                            // action as a repeat and keeps the first one's note, which would
                            // name the former server or destination.
                            action: match node {
                                Some(_) => "Recorded".to_owned(),
                                None => {
                                    let tag =
                                        hexagone_platform::digest::sha256_tag(note.as_bytes());
                                    format!("Recorded {}", &tag[tag.len() - 12..])
                                }
                            },
                            note: Some(truncated(note, 1024)),
                            // The node makes the Event's identity: the same violation on the same
                            // node again is a series of the first Event (whose note stays), a
                            // violation on another node a new Event.
                            secondary: node.map(|node| {
                                k8s_openapi::api::core::v1::ObjectReference {
                                    api_version: Some("v1".to_owned()),
                                    kind: Some("Node".to_owned()),
                                    name: Some(node.clone()),
                                    ..Default::default()
                                }
                            }),
                        };
                        match recorder.publish(&event, &regarding).await {
                            Ok(()) => service.shared.metrics.violation_events.inc(),
                            Err(e) => {
                                service.shared.metrics.event_errors.inc();
                                tracing::warn!("kubernetes: {id}: no Event raised: {e}");
                            }
                        }
                    }
                    recorded.insert(id, recorded_now);
                    let metrics = &service.shared.metrics;
                    match kind {
                        Kind::Volume => metrics.collected.inc(),
                        Kind::Snapshot => metrics.collected_snapshots.inc(),
                        Kind::Pod => metrics.collected_pods.inc(),
                        Kind::Egress => metrics.collected_egress.inc(),
                        Kind::Image => metrics.collected_images.inc(),
                    }
                }
            }
            // Not recorded: the sequencer answers so only when a store error stops it, and the
            // service with it (the collector's submissions carry no idempotency key, so none is
            // refused alone); the changes taken for this pass are lost with the process.
            Ok(Err(e)) => {
                tracing::warn!("kubernetes: {n} placements not recorded: {e}");
                return Ok(false);
            }
            Err(_) => return Err(CollectError::SequencerGone),
        }
    }
    Ok(compared)
}

/// One thing a pass judges: a placement on a node, or an egress destination.
struct Item {
    object: crate::ledger::entry::ObjectId,
    content: crate::ledger::tree::Hash,
    location: Location,
    place: Place,
    regarding: k8s_openapi::api::core::v1::ObjectReference,
}

impl Item {
    /// A placement where it is held: on a node, judged as the node; on a network volume's
    /// server, judged as that endpoint (a name of the inventory, or an address; else placed by
    /// nothing, so not compliant).
    fn held(p: Placement) -> Self {
        let (place, location) = match p.held {
            Held::Node(n) => (Place::Node(n.name.clone()), Location::Node(n)),
            Held::Server(s) => (Place::Server(s.clone()), Location::Server(s)),
        };
        Item {
            place,
            object: p.object,
            content: p.content,
            location,
            regarding: p.regarding,
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary (an Event note is limited to 1 KiB).
fn truncated(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::{Timestamp, fixture};

    /// An image entry written before entries named their image is written again once, naming
    /// it (the first pass after the upgrade); then only a change records it again.
    #[test]
    fn an_image_entry_that_does_not_name_its_image_is_written_again_once() {
        let Body::Observation(named) = fixture::image_observation(0) else {
            unreachable!()
        };
        let mut older = named.clone();
        older.image = None;
        let key = |o: &Observation| placement_key(o, Kind::Image);
        assert_ne!(key(&older), key(&named));
        let mut later = named.clone();
        later.locality.observed_at = Timestamp(named.locality.observed_at.0 + 60_000);
        assert_eq!(key(&later), key(&named));
        let mut pulled = named.clone();
        pulled.image.as_mut().unwrap().image_id = None;
        assert_ne!(key(&pulled), key(&named));
        // Naming the image is all that changed: no Event is raised again for it.
        assert!(only_naming(&key(&older), &named, Kind::Image));
        assert!(!only_naming(&key(&named), &named, Kind::Image));
        let mut moved = named.clone();
        moved.content = [0; 32];
        assert!(!only_naming(&key(&older), &moved, Kind::Image));
    }
}
