//! `NodeQualifier`: the node controller. Level-triggered: any change to a NodeAttestation, a
//! LatencyMeasurement or a LocalityPolicy, any change of a Node's name, labels, provider ID or
//! addresses (not its heartbeats), and the next attestation expiry start a pass over all of
//! them, which
//! 1. mirrors each valid attestation into the `node-restriction.kubernetes.io/hexagone-country`
//!    label and removes the label wherever no valid, agreeing attestation stands behind it;
//! 2. judges every node under every policy (with the round trips measured to its addresses, as
//!    latency evidence) and writes the verdicts to the policy's status;
//! 3. raises an Event on a Node whose verdict under a policy changed, and on each label change;
//! 4. sets `eligible.hexagone.node-restriction.kubernetes.io/<policy>=true` on each node a
//!    policy admits and removes it elsewhere (the label Workplace pods require), and with it
//!    `node-restriction.kubernetes.io/hexagone-zone`, the zone a valid attestation names (the
//!    only zone label a Workplace's volumes trust);
//! 5. updates the eligible-node gauges.
//!
//! A pass is idempotent: it writes only what differs, so its own writes settle after one more
//! pass. One pass at a time, so the policy status has a single writer. A pass reads caches that
//! watches keep (the Nodes' is the Workplace controller's), never a list of every object: at a
//! thousand nodes and attestations, lists on every pass were most of the API server's work.
//! Changes arriving in a burst (nodes labelled one after another) settle into one pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hexagone_platform::geo::GeoDatabases;
use hexagone_platform::k8s::{
    LatencyMeasurement, LocalityPolicyResource, LocalityPolicyStatus, NodeAttestation, NodeVerdict,
    attestations, describe,
};
use hexagone_platform::labels::{
    ATTESTED_COUNTRY_LABEL, ATTESTED_ZONE_LABEL, ELIGIBLE_LABEL_DOMAIN, eligible_label,
};
use hexagone_platform::latency::{self, Measurement};
use hexagone_platform::{
    Attestation, Facts, Judge, Observation, SubjectKind, attested_label, attested_zone, observe,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// The longest a pass waits for, even without changes (expiries are also scheduled exactly).
const RESYNC: Duration = Duration::from_secs(300);
/// A pass starts once no change came for this long...
const QUIET: Duration = Duration::from_millis(250);
/// ... or this long after the first change, whichever comes first.
const SETTLE: Duration = Duration::from_secs(2);
/// How often the geolocation databases on disk are looked at between passes (a pass no
/// longer follows every Node heartbeat, which used to reload them in passing).
const GEO_CHECK: Duration = Duration::from_secs(30);
/// How long a pass waits for a cache's first listing before it fails (and is retried).
const CACHE_READY: Duration = Duration::from_secs(30);

/// The Nodes as the Workplace controller's watch caches them, and the signal it gives when one
/// changes in what a pass reads (name, labels, provider ID, addresses; not a heartbeat).
#[derive(Clone)]
pub struct NodeFeed {
    /// Every Node, without managed fields.
    pub store: Store<Node>,
    /// Notified after the store holds a change.
    pub changed: Arc<Notify>,
}

/// A spawned watch, stopped with the qualifier (a replica that loses the Lease stops watching).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The qualifier's own caches.
struct Caches {
    attestations: Store<NodeAttestation>,
    measurements: Store<LatencyMeasurement>,
    policies: Store<LocalityPolicyResource>,
}

/// A cache's objects, once it has listed them.
async fn ready<K>(store: &Store<K>, what: &str) -> Result<Vec<Arc<K>>, QualifyError>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    if crate::watches::listed(store, CACHE_READY).await {
        Ok(store.state())
    } else {
        Err(QualifyError::Cache(format!(
            "the {what} were not listed within {CACHE_READY:?} (is the watch allowed?)"
        )))
    }
}

/// What can stop a pass.
#[derive(Debug, thiserror::Error)]
pub enum QualifyError {
    /// The API server refused or failed a request (transient: retried with backoff).
    #[error("{what}")]
    Api {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: kube::Error,
    },
    /// A cache of the cluster's objects is not filled yet.
    #[error("{0}")]
    Cache(String),
}

fn failed(what: impl Into<String>) -> impl FnOnce(kube::Error) -> QualifyError {
    let what = what.into();
    move |source| QualifyError::Api { what, source }
}

/// The node controller.
pub struct NodeQualifier {
    client: Client,
    nodes: NodeFeed,
    geo: Arc<GeoDatabases>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
}

impl NodeQualifier {
    /// A qualifier that reports Events as `reporter`.
    pub fn new(
        client: Client,
        geo: Arc<GeoDatabases>,
        metrics: Arc<Metrics>,
        reporter: &str,
        nodes: NodeFeed,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: reporter.to_owned(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        NodeQualifier {
            client,
            nodes,
            geo,
            metrics,
            recorder,
        }
    }

    /// Watches NodeAttestations, LatencyMeasurements and LocalityPolicies (into caches of its
    /// own) and the Nodes (through the cache it shares with the Workplace controller), and runs
    /// a pass after each change, until the watchers end (never, in practice).
    pub async fn run(self) -> anyhow::Result<()> {
        let changed = self.nodes.changed.clone();
        // Each cache is filled before its event goes on: a pass it starts reads the change.
        fn watch<K>(api: Api<K>, changed: Arc<Notify>, metrics: &Metrics) -> (Store<K>, AbortOnDrop)
        where
            K: Resource<DynamicType = ()>
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + Sync
                + 'static,
        {
            let (store, writer) = reflector::store();
            let kind = K::kind(&()).into_owned();
            let errors = metrics.watch_errors.with_label_values(&[kind.as_str()]);
            let mut stream = watcher(api, watcher::Config::default())
                .backoff(crate::watches::WatchBackoff::default())
                .modify(|o| o.managed_fields_mut().clear())
                .reflect(writer)
                .boxed();
            let task = tokio::spawn(async move {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                        Ok(_) => changed.notify_one(),
                        Err(e) => {
                            errors.inc();
                            tracing::warn!("watching {kind}: {e} (trying again)");
                        }
                    }
                }
            });
            (store, AbortOnDrop(task))
        }
        let (attestations, _a) = watch(
            Api::<NodeAttestation>::all(self.client.clone()),
            changed.clone(),
            &self.metrics,
        );
        let (measurements, _m) = watch(
            Api::<LatencyMeasurement>::all(self.client.clone()),
            changed.clone(),
            &self.metrics,
        );
        let (policies, _p) = watch(
            Api::<LocalityPolicyResource>::all(self.client.clone()),
            changed.clone(),
            &self.metrics,
        );
        let caches = Caches {
            attestations,
            measurements,
            policies,
        };
        let mut backoff = Duration::from_millis(500);
        let mut due = tokio::time::Instant::now();
        loop {
            let left = due.saturating_duration_since(tokio::time::Instant::now());
            let notified = tokio::select! {
                () = changed.notified() => true,
                () = tokio::time::sleep(left.min(GEO_CHECK)) => false,
            };
            // Between passes, a look at the geolocation databases on disk every GEO_CHECK: a
            // file replaced there is a change (a range now placed abroad).
            if !notified && tokio::time::Instant::now() < due {
                match self.geo.refresh() {
                    Ok(0) => continue,
                    Ok(n) => tracing::info!("{n} geolocation database(s) reloaded: a pass starts"),
                    Err(e) => {
                        tracing::warn!(
                            "geolocation databases not reloaded, the previous ones serve: {e}"
                        );
                        continue;
                    }
                }
            }
            // Let a burst of changes (a kubectl apply of many objects, nodes labelled one
            // after another) settle into one pass: until none came for QUIET, at most SETTLE.
            let first = tokio::time::Instant::now();
            while first.elapsed() < SETTLE {
                tokio::select! {
                    () = changed.notified() => {}
                    () = tokio::time::sleep(QUIET) => break,
                }
            }
            match self.pass(&caches).await {
                Ok(next) => {
                    self.metrics.passes.inc();
                    self.metrics.set_ready();
                    backoff = Duration::from_millis(500);
                    due = tokio::time::Instant::now() + next;
                }
                Err(e) => {
                    self.metrics.pass_errors.inc();
                    tracing::warn!("qualification pass failed, retrying in {backoff:?}: {e:#}");
                    due = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// One pass over every node and policy, as the caches hold them; returns how long until
    /// the next one is due (the next attestation expiry, at most five minutes).
    async fn pass(&self, caches: &Caches) -> Result<Duration, QualifyError> {
        let nodes_api = Api::<Node>::all(self.client.clone());
        let nodes = ready(&self.nodes.store, "Nodes").await?;
        let attestation_resources: Vec<NodeAttestation> =
            ready(&caches.attestations, "NodeAttestations")
                .await?
                .iter()
                .map(|a| (**a).clone())
                .collect();
        let measurements: Vec<Measurement> = ready(&caches.measurements, "LatencyMeasurements")
            .await?
            .iter()
            .map(|m| m.spec.clone())
            .collect();
        let policies_api = Api::<LocalityPolicyResource>::all(self.client.clone());
        let policies = ready(&caches.policies, "LocalityPolicies").await?;
        if let Err(e) = self.geo.refresh() {
            tracing::warn!("geolocation databases not reloaded, the previous ones serve: {e}");
        }
        let geo = self.geo.snapshot();
        let now = OffsetDateTime::now_utc();
        let attestations = attestations(&attestation_resources);

        let mut all_facts: Vec<(Arc<Node>, Facts)> = Vec::with_capacity(nodes.len());
        // Per node, the zone its attestations name, where the attested country label stands.
        let mut zones: BTreeMap<String, Option<String>> = BTreeMap::new();
        for node in nodes {
            let described = describe(&node);
            let mut facts = observe(&described, SubjectKind::Node, &attestations, &geo, now);
            // Round trips measured from vantage points to the node's own addresses: the
            // policy decides which vantages count.
            facts.observations.extend(
                described
                    .public_addresses()
                    .filter_map(|a| latency::observation(a, &measurements)),
            );
            if let Some(label) = self.mirror_label(&nodes_api, &node, &facts).await? {
                // Judge the node as it now is.
                for o in &mut facts.observations {
                    if let Observation::Attestation { label: l, .. } = o {
                        *l = label.clone();
                    }
                }
            }
            let zone = attested_label(&facts)
                .ok()
                .and_then(|_| attested_zone(&described, &attestations, now));
            zones.insert(node.name_any(), zone);
            all_facts.push((node, facts));
        }

        // Per node, the eligibility labels it must carry: one per policy that admits it.
        let mut eligible: BTreeMap<String, BTreeMap<String, serde_json::Value>> = all_facts
            .iter()
            .map(|(n, _)| (n.name_any(), BTreeMap::new()))
            .collect();
        for policy in &policies {
            let admitted = self.judge_policy(&policies_api, policy, &all_facts).await?;
            // A policy whose name cannot name a label has no eligible node (the Workplace using
            // it says why).
            if let Ok(key) = eligible_label(&policy.name_any()) {
                for node in admitted {
                    if let Some(labels) = eligible.get_mut(&node) {
                        labels.insert(key.clone(), json!("true"));
                    }
                }
            }
        }
        for (node, _) in &all_facts {
            let mut wanted = eligible.remove(&node.name_any()).unwrap_or_default();
            let stale: Vec<String> = node
                .labels()
                .iter()
                .filter(|(k, v)| {
                    k.starts_with(ELIGIBLE_LABEL_DOMAIN)
                        && wanted.get(*k).and_then(|w| w.as_str()) != Some(v.as_str())
                })
                .map(|(k, _)| k.clone())
                .collect();
            wanted.retain(|k, _| node.labels().get(k).map(String::as_str) != Some("true"));
            for k in stale {
                wanted.entry(k).or_insert(serde_json::Value::Null);
            }
            // The zone the attestations name, where a kubelet cannot write it.
            let zone = zones.remove(&node.name_any()).flatten();
            let current = node.labels().get(ATTESTED_ZONE_LABEL);
            let zone_event = (current != zone.as_ref()).then(|| {
                wanted.insert(ATTESTED_ZONE_LABEL.to_owned(), json!(zone));
                zone_event(current, zone.as_deref())
            });
            if wanted.is_empty() {
                continue;
            }
            let patch = json!({"metadata": {"labels": wanted}});
            nodes_api
                .patch(
                    &node.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(failed(format!(
                    "setting the eligibility and attested zone labels of node {}",
                    node.name_any()
                )))?;
            if let Some(event) = zone_event {
                self.publish(&event, node).await;
            }
        }
        Ok(next_expiry(&attestations, now)
            .unwrap_or(RESYNC)
            .min(RESYNC))
    }

    /// Sets or removes the attested label as the facts require. `Some(new value)` when it
    /// changed the label.
    async fn mirror_label(
        &self,
        api: &Api<Node>,
        node: &Node,
        facts: &Facts,
    ) -> Result<Option<Option<String>>, QualifyError> {
        let current = node.labels().get(ATTESTED_COUNTRY_LABEL).cloned();
        let decision = attested_label(facts);
        let (wanted, event) = match (&decision, &current) {
            (Ok(c), Some(v)) if v == c.as_str() => return Ok(None),
            (Err(_), None) => return Ok(None),
            (Ok(c), _) => (
                Some(c.as_str().to_owned()),
                Event {
                    type_: EventType::Normal,
                    reason: "AttestationMirrored".into(),
                    note: Some(format!(
                        "set {ATTESTED_COUNTRY_LABEL}={c} from a valid NodeAttestation"
                    )),
                    action: "Label".into(),
                    secondary: None,
                },
            ),
            (Err(why), Some(v)) => (
                None,
                Event {
                    type_: EventType::Warning,
                    reason: "AttestedLabelRemoved".into(),
                    note: Some(truncate(format!(
                        "removed {ATTESTED_COUNTRY_LABEL}={v}: {why}"
                    ))),
                    action: "Label".into(),
                    secondary: None,
                },
            ),
        };
        let patch = json!({"metadata": {"labels": {ATTESTED_COUNTRY_LABEL: wanted}}});
        api.patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(failed(format!("labelling node {}", node.name_any())))?;
        self.publish(&event, node).await;
        Ok(Some(wanted))
    }

    async fn judge_policy(
        &self,
        api: &Api<LocalityPolicyResource>,
        policy: &LocalityPolicyResource,
        all_facts: &[(Arc<Node>, Facts)],
    ) -> Result<Vec<String>, QualifyError> {
        let name = policy.name_any();
        let mut admitted = Vec::new();
        let previous: BTreeMap<String, String> = policy
            .status
            .as_ref()
            .map(|s| {
                s.nodes
                    .iter()
                    .map(|n| (n.name.clone(), n.verdict.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut status = LocalityPolicyStatus {
            observed_generation: policy.metadata.generation,
            policy_digest: policy.spec.digest(),
            ..LocalityPolicyStatus::default()
        };
        let mut counts: BTreeMap<&'static str, i64> =
            [("compliant", 0), ("violation", 0), ("unknown", 0)].into();
        if let Err(e) = policy.spec.validate() {
            status.error = Some(format!("the policy cannot be used: {e}"));
        } else {
            let judge = Judge::new(&policy.spec);
            for (node, facts) in all_facts {
                let evaluation = judge.judge(facts.clone());
                let entry = NodeVerdict::of(&evaluation);
                *counts.entry(evaluation.verdict.name()).or_default() += 1;
                if previous.get(&entry.name) != Some(&entry.verdict) {
                    let event = Event {
                        type_: if evaluation.verdict.is_compliant() {
                            EventType::Normal
                        } else {
                            EventType::Warning
                        },
                        reason: match evaluation.verdict.name() {
                            "compliant" => "LocalityCompliant",
                            "violation" => "LocalityViolation",
                            _ => "LocalityUnknown",
                        }
                        .into(),
                        note: Some(truncate(format!(
                            "LocalityPolicy {name}: {}",
                            entry.headline
                        ))),
                        action: "Qualify".into(),
                        secondary: Some(policy.object_ref(&())),
                    };
                    self.publish(&event, node).await;
                }
                if entry.eligible {
                    admitted.push(entry.name.clone());
                }
                status.eligible_nodes += u32::from(entry.eligible);
                status.evaluated_nodes += 1;
                status.nodes.push(entry);
            }
        }
        status.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.metrics
            .eligible_nodes
            .with_label_values(&[&name])
            .set(i64::from(status.eligible_nodes));
        for (verdict, n) in counts {
            self.metrics
                .node_verdicts
                .with_label_values(&[&name, verdict])
                .set(n);
        }
        if policy.status.as_ref() != Some(&status) {
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&crate::patch::whole_status(&status)),
            )
            .await
            .map_err(failed(format!(
                "writing the status of LocalityPolicy {name}"
            )))?;
        }
        Ok(admitted)
    }

    /// Publishes an Event; a failure is logged, not fatal (the status carries the same facts).
    async fn publish(&self, event: &Event, node: &Node) {
        if let Err(e) = self.recorder.publish(event, &node.object_ref(&())).await {
            tracing::warn!("event on node {}: {e}", node.name_any());
        }
    }
}

/// Events notes are limited to 1 KiB.
pub(crate) fn truncate(mut s: String) -> String {
    if s.len() > 1024 {
        let mut cut = 1021;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Time until the earliest attestation that is still valid expires.
fn next_expiry(attestations: &[Attestation], now: OffsetDateTime) -> Option<Duration> {
    attestations
        .iter()
        .filter_map(Attestation::expires)
        .filter(|t| *t > now)
        .min()
        .map(|t| Duration::try_from(t - now).unwrap_or(RESYNC) + Duration::from_millis(50))
}

/// The Event explaining a change of [`ATTESTED_ZONE_LABEL`] from `from` to `to`.
fn zone_event(from: Option<&String>, to: Option<&str>) -> Event {
    let (type_, reason, note) = match (from, to) {
        (_, Some(z)) => (
            EventType::Normal,
            "AttestedZoneMirrored",
            format!("set {ATTESTED_ZONE_LABEL}={z}: the zone its valid NodeAttestations name"),
        ),
        (z, None) => (
            EventType::Warning,
            "AttestedZoneRemoved",
            format!(
                "removed {ATTESTED_ZONE_LABEL}={}: no valid NodeAttestation with an agreeing country names one zone for the node, so its zone label places no volume under a policy that requires attestations",
                z.map_or("", String::as_str)
            ),
        ),
    };
    Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Label".into(),
        secondary: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        let s = truncate("é".repeat(600));
        assert!(s.len() <= 1024 && s.ends_with("..."));
        assert_eq!(truncate("short".into()), "short");
    }
}
