//! Where a workplace's pods may send data outside the cluster, from its namespace's
//! NetworkPolicies: pure functions over `k8s_openapi` values, no client. Each address block an
//! egress rule opens (`ipBlock`, or every address when a rule names no destination) is an
//! object of its own (`egress/<namespace>/<policy>/<block>`, class [`CLASS`]), judged where it
//! points as an endpoint is: one address by the locality engine like any endpoint (the
//! auditor's inventory first), a wider block as a range, which no policy can place.
//!
//! Whoever wrote the policy — the operator rendering `spec.egress`, or anyone with write access
//! to NetworkPolicies in the namespace — what it opens is recorded and judged by the auditor's
//! own policy: a destination the operator was tricked into, or one added beside it, shows in
//! the ledger whatever the labels say. Destinations inside the cluster (namespace and pod
//! selectors) are not recorded here: the pods they reach are judged where they run.
//! `except` lists narrow a block without making it one address, so they are not read.
//!
//! A pod that no NetworkPolicy restricting egress selects may send data anywhere (Kubernetes
//! isolates a pod for egress only when some such policy selects it): each placed pod of a
//! workplace namespace in that case opens every address, recorded as
//! `egress-open/<namespace>/<pod>/<block>` (the Event on the pod).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::{Selector, SelectorExt as _};
use sha2::{Digest as _, Sha256};

use super::volumes::STORE;
use crate::ledger::entry::{EntryError, ObjectId};
use crate::ledger::tree::Hash;

/// The object class of an egress destination.
pub const CLASS: &str = "egress";

/// What a rule naming no destination opens: every address, IPv4 and IPv6.
const EVERY_ADDRESS: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// One destination a NetworkPolicy opens to a workplace's pods.
#[derive(Debug, Clone)]
pub struct Destination {
    /// `kubernetes` / [`CLASS`] / `egress/<namespace>/<policy>/<block>`.
    pub object: ObjectId,
    /// SHA-256 of the NetworkPolicy's uid and the block: which policy opened it.
    pub content: Hash,
    /// The block as the policy writes it (`address/prefix`), judged as an endpoint.
    pub block: String,
    /// The NetworkPolicy and the field opening the block, which a violation's Event is about.
    pub regarding: ObjectReference,
}

/// The destination `block` opened by `regarding` (whose uid stamps the content: a policy or pod
/// recreated is a new record), recorded as `id`.
fn destination(
    id: String,
    block: &str,
    regarding: ObjectReference,
) -> Result<Destination, EntryError> {
    let mut h = Sha256::new();
    h.update(regarding.uid.as_deref().unwrap_or_default());
    h.update(b"\n");
    h.update(block);
    Ok(Destination {
        object: ObjectId::new(STORE.to_owned(), CLASS.to_owned(), id)?,
        content: h.finalize().into(),
        block: block.to_owned(),
        regarding,
    })
}

/// Whether the policy restricts egress: `policyTypes` names `Egress`, or, unset, the policy has
/// an `egress` section (the API server's defaulting, `networking.k8s.io/v1`).
fn restricts_egress(p: &NetworkPolicy) -> bool {
    let Some(spec) = &p.spec else { return false };
    match &spec.policy_types {
        Some(types) => types.iter().any(|t| t == "Egress"),
        None => spec.egress.is_some(),
    }
}

/// Whether `policy` restricts the egress of a pod of its namespace labelled `labels`. A
/// selector the API server would not have accepted selects nothing (the pod then counts as
/// unrestricted, the safe side).
fn isolates(policy: &NetworkPolicy, labels: &BTreeMap<String, String>) -> bool {
    restricts_egress(policy)
        && policy
            .spec
            .as_ref()
            .and_then(|s| Selector::try_from(s.pod_selector.clone().unwrap_or_default()).ok())
            .is_some_and(|selector| selector.matches(labels))
}

/// Every destination outside the cluster that a NetworkPolicy of a workplace namespace
/// (`namespaces`) opens, and every address for each placed pod of such a namespace that no
/// policy restricts, sorted by object.
pub fn destinations<'a>(
    policies: impl IntoIterator<Item = &'a NetworkPolicy> + Clone,
    pods: impl IntoIterator<Item = &'a Pod>,
    namespaces: &BTreeSet<String>,
) -> Result<Vec<Destination>, EntryError> {
    let mut out = Vec::new();
    for pod in pods {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        if !namespaces.contains(ns) || !super::pods::placed(pod) {
            continue;
        }
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let restricted = policies
            .clone()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_ref() == Some(ns))
            .any(|p| isolates(p, labels));
        if restricted {
            continue;
        }
        for block in EVERY_ADDRESS {
            out.push(destination(
                format!("egress-open/{ns}/{name}/{block}"),
                block,
                ObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    namespace: Some(ns.clone()),
                    name: Some(name.clone()),
                    uid: pod.metadata.uid.clone(),
                    field_path: Some(format!("no NetworkPolicy restricts its egress ({block})")),
                    ..ObjectReference::default()
                },
            )?);
        }
    }
    for policy in policies {
        let (Some(ns), Some(name)) = (&policy.metadata.namespace, &policy.metadata.name) else {
            continue;
        };
        if !namespaces.contains(ns) || !restricts_egress(policy) {
            continue;
        }
        let rules = policy
            .spec
            .as_ref()
            .and_then(|s| s.egress.as_deref())
            .unwrap_or_default();
        // Each block with the field that opens it.
        let mut blocks: Vec<(&str, String)> = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            match rule.to.as_deref() {
                // A rule naming no destination allows every one.
                None | Some([]) => blocks.extend(
                    EVERY_ADDRESS.map(|b| (b, format!("spec.egress[{i}] (no destination: {b})"))),
                ),
                Some(peers) => blocks.extend(peers.iter().enumerate().filter_map(|(j, p)| {
                    let b = p.ip_block.as_ref()?;
                    Some((b.cidr.as_str(), format!("spec.egress[{i}].to[{j}].ipBlock")))
                })),
            }
        }
        let mut seen = HashSet::new();
        let uid = policy.metadata.uid.clone();
        for (block, field) in blocks.into_iter().filter(|(b, _)| seen.insert(*b)) {
            out.push(destination(
                format!("egress/{ns}/{name}/{block}"),
                block,
                ObjectReference {
                    api_version: Some("networking.k8s.io/v1".to_owned()),
                    kind: Some("NetworkPolicy".to_owned()),
                    namespace: Some(ns.clone()),
                    name: Some(name.clone()),
                    uid: uid.clone(),
                    // Each destination its own Event, not a series of the policy's first.
                    field_path: Some(field),
                    ..ObjectReference::default()
                },
            )?);
        }
    }
    out.sort_by(|a, b| a.object.id.cmp(&b.object.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
            "spec": spec,
        }))
        .unwrap()
    }

    fn ids(policies: &[NetworkPolicy]) -> Vec<String> {
        let namespaces = BTreeSet::from(["wp".to_owned()]);
        destinations(policies, &[] as &[Pod], &namespaces)
            .unwrap()
            .iter()
            .map(|d| {
                let field = d.regarding.field_path.as_deref().unwrap();
                format!("{} {field}", d.object.id)
            })
            .collect()
    }

    #[test]
    fn every_block_a_workplace_namespace_opens_is_a_destination() {
        let policies = [
            // As the operator renders it: the site's relay, one address, beside in-cluster peers.
            policy(
                "wp",
                "exo-egress",
                serde_json::json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                    {"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]},
                    {"to": [{"ipBlock": {"cidr": "192.0.2.25/32"}}], "ports": [{"port": 25}]},
                ]}),
            ),
            // Added beside it by someone with write access to the namespace.
            policy(
                "wp",
                "open",
                serde_json::json!({"podSelector": {}, "egress": [
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}},
                            {"ipBlock": {"cidr": "0.0.0.0/0"}}]},
                    {"ports": [{"port": 443}]},
                ]}),
            ),
            // Egress rules a policy does not enforce (its types leave Egress out).
            policy(
                "wp",
                "ingress-only",
                serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}]}]}),
            ),
            // Another namespace holds no workplace.
            policy(
                "other",
                "open",
                serde_json::json!({"podSelector": {}, "egress": [{}]}),
            ),
        ];
        assert_eq!(
            ids(&policies),
            [
                "egress/wp/exo-egress/192.0.2.25/32 spec.egress[1].to[0].ipBlock",
                "egress/wp/open/0.0.0.0/0 spec.egress[0].to[0].ipBlock",
                "egress/wp/open/::/0 spec.egress[1] (no destination: ::/0)",
            ]
        );
    }

    fn pod(name: &str, labels: serde_json::Value, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "wp", "uid": format!("uid-{name}"), "labels": labels},
            "spec": {"nodeName": "a", "containers": []},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_no_policy_restricts_may_send_data_anywhere() {
        let policies = [
            // Restricts the workplace's labelled pods only.
            policy(
                "wp",
                "labelled",
                serde_json::json!({"podSelector": {"matchExpressions": [
                    {"key": "app.kubernetes.io/part-of", "operator": "In", "values": ["hexagone-workplace"]}]},
                    "policyTypes": ["Egress"]}),
            ),
            // Selects every pod, but for ingress only.
            policy(
                "wp",
                "ingress",
                serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            ),
        ];
        let pods = [
            pod(
                "exo-0",
                serde_json::json!({"app.kubernetes.io/part-of": "hexagone-workplace"}),
                "Running",
            ),
            pod("miner", serde_json::json!({"app": "miner"}), "Running"),
            pod("done", serde_json::Value::Null, "Succeeded"),
        ];
        let namespaces = BTreeSet::from(["wp".to_owned()]);
        let got: Vec<String> = destinations(&policies, &pods, &namespaces)
            .unwrap()
            .iter()
            .map(|d| format!("{} {}", d.object.id, d.regarding.kind.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                "egress-open/wp/miner/0.0.0.0/0 Pod",
                "egress-open/wp/miner/::/0 Pod",
            ]
        );
        // A policy restricting every pod's egress closes it, even with no rule at all.
        let all = policy(
            "wp",
            "deny",
            serde_json::json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        );
        assert!(destinations(&[all], &pods, &namespaces).unwrap().is_empty());
    }

    #[test]
    fn a_policy_recreated_is_a_new_destination_record() {
        let spec = serde_json::json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.25/32"}}]}]});
        let namespaces = BTreeSet::from(["wp".to_owned()]);
        let content =
            |p: NetworkPolicy| destinations(&[p], &[] as &[Pod], &namespaces).unwrap()[0].content;
        let first = content(policy("wp", "relay", spec.clone()));
        let mut again = policy("wp", "relay", spec.clone());
        again.metadata.uid = Some("another".into());
        assert_ne!(first, content(again));
        assert_eq!(first, content(policy("wp", "relay", spec)));
    }
}
