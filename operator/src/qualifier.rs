//! `NodeQualifier`: the node controller. Level-triggered: any change to a Node, a NodeAttestation,
//! a LatencyMeasurement or a LocalityPolicy (and the next attestation expiry) starts a pass over
//! all of them, which
//! 1. mirrors each valid attestation into the `node-restriction.kubernetes.io/hexagone-country`
//!    label and removes the label wherever no valid, agreeing attestation stands behind it;
//! 2. judges every node under every policy (with the round trips measured to its addresses, as
//!    latency evidence) and writes the verdicts to the policy's status;
//! 3. raises an Event on a Node whose verdict under a policy changed, and on each label change;
//! 4. sets `eligible.hexagone.node-restriction.kubernetes.io/<policy>=true` on each node a
//!    policy admits and removes it elsewhere (the label Workplace pods require);
//! 5. updates the eligible-node gauges.
//!
//! A pass is idempotent: it writes only what differs, so its own writes settle after one more
//! pass. One pass at a time, so the policy status has a single writer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hexagone_platform::geo::GeoDatabases;
use hexagone_platform::k8s::{
    LatencyMeasurement, LocalityPolicyResource, LocalityPolicyStatus, NodeAttestation, NodeVerdict,
    attestations, describe,
};
use hexagone_platform::labels::{ATTESTED_COUNTRY_LABEL, ELIGIBLE_LABEL_DOMAIN, eligible_label};
use hexagone_platform::latency::{self, Measurement};
use hexagone_platform::{
    Attestation, Facts, Judge, Observation, SubjectKind, attested_label, observe,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// The longest a pass waits for, even without changes (expiries are also scheduled exactly).
const RESYNC: Duration = Duration::from_secs(300);

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
}

fn failed(what: impl Into<String>) -> impl FnOnce(kube::Error) -> QualifyError {
    let what = what.into();
    move |source| QualifyError::Api { what, source }
}

/// The node controller.
pub struct NodeQualifier {
    client: Client,
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
            geo,
            metrics,
            recorder,
        }
    }

    /// Watches Nodes, NodeAttestations and LocalityPolicies and runs a pass after each change,
    /// until the watchers end (never, in practice).
    pub async fn run(self) -> anyhow::Result<()> {
        let changed = Arc::new(Notify::new());
        let watch = |stream: futures::stream::BoxStream<'static, Result<(), watcher::Error>>| {
            let changed = changed.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(()) => changed.notify_one(),
                        Err(e) => tracing::warn!("watch: {e}"),
                    }
                }
            })
        };
        let cfg = watcher::Config::default;
        let _nodes = watch(
            watcher(Api::<Node>::all(self.client.clone()), cfg())
                .default_backoff()
                .map(|r| r.map(|_| ()))
                .boxed(),
        );
        let _attestations = watch(
            watcher(Api::<NodeAttestation>::all(self.client.clone()), cfg())
                .default_backoff()
                .map(|r| r.map(|_| ()))
                .boxed(),
        );
        let _measurements = watch(
            watcher(Api::<LatencyMeasurement>::all(self.client.clone()), cfg())
                .default_backoff()
                .map(|r| r.map(|_| ()))
                .boxed(),
        );
        let _policies = watch(
            watcher(
                Api::<LocalityPolicyResource>::all(self.client.clone()),
                cfg(),
            )
            .default_backoff()
            .map(|r| r.map(|_| ()))
            .boxed(),
        );
        let mut backoff = Duration::from_millis(500);
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = changed.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            // Let a burst of changes (a kubectl apply of many objects) settle into one pass.
            tokio::time::sleep(Duration::from_millis(100)).await;
            match self.pass().await {
                Ok(next) => {
                    self.metrics.passes.inc();
                    self.metrics.set_ready();
                    backoff = Duration::from_millis(500);
                    wait = next;
                }
                Err(e) => {
                    self.metrics.pass_errors.inc();
                    tracing::warn!("qualification pass failed, retrying in {backoff:?}: {e:#}");
                    wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// One pass over every node and policy; returns how long until the next one is due (the
    /// next attestation expiry, at most five minutes).
    pub async fn pass(&self) -> Result<Duration, QualifyError> {
        let nodes_api = Api::<Node>::all(self.client.clone());
        let nodes = nodes_api
            .list(&ListParams::default())
            .await
            .map_err(failed("listing nodes"))?
            .items;
        let attestation_resources = Api::<NodeAttestation>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(failed("listing NodeAttestations"))?
            .items;
        let measurements: Vec<Measurement> = Api::<LatencyMeasurement>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(failed("listing LatencyMeasurements"))?
            .items
            .into_iter()
            .map(|m| m.spec)
            .collect();
        let policies_api = Api::<LocalityPolicyResource>::all(self.client.clone());
        let policies = policies_api
            .list(&ListParams::default())
            .await
            .map_err(failed("listing LocalityPolicies"))?
            .items;
        if let Err(e) = self.geo.refresh() {
            tracing::warn!("geolocation databases not reloaded, the previous ones serve: {e}");
        }
        let geo = self.geo.snapshot();
        let now = OffsetDateTime::now_utc();
        let attestations = attestations(&attestation_resources);

        let mut all_facts: Vec<(Node, Facts)> = Vec::with_capacity(nodes.len());
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
                    "setting the eligibility labels of node {}",
                    node.name_any()
                )))?;
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
        all_facts: &[(Node, Facts)],
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
                &Patch::Merge(&json!({ "status": status })),
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
