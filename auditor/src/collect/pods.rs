//! Where each pod of a workplace runs, from the cluster's objects: pure functions over
//! `k8s_openapi` values, no client. A pod processes its workplace's data wherever it runs,
//! with a volume or without one, so every pod placed on a node in a workplace's namespace is
//! an object of its own (`pod/<namespace>/<name>`, class [`CLASS`]), judged on that node like
//! a volume.
//!
//! A workplace namespace is one a LocalityPolicy names in `namespaces` (the security officer
//! decides which namespaces a policy protects: removing labels from pods cannot take one out)
//! or where some pod carries the workplace's `part-of` label; in it, every pod counts,
//! labelled or not: a pod an attacker starts there without the
//! operator's labels (or a sidecar patched into one) is seen as well. What identifies a
//! placement is the pod's uid and its node: a pod deleted and created again, or bound to
//! another node, is recorded again.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use sha2::{Digest as _, Sha256};

use hexagone_platform::labels::{PART_OF, PART_OF_LABEL};

use super::volumes::{Held, Placement, STORE, known};
use crate::ledger::entry::{EntryError, ObjectId};

/// The object class of a pod's placement.
pub const CLASS: &str = "pod";

/// The namespaces holding a workplace: those the LocalityPolicies (`policies`, as plain
/// objects) name in `spec.namespaces`, and those with a pod labelled part of a workplace.
pub(super) fn workplace_namespaces<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    policies: impl IntoIterator<Item = &'a serde_json::Value>,
) -> BTreeSet<String> {
    let named = policies.into_iter().flat_map(|spec| {
        spec.get("namespaces")
            .and_then(|n| n.as_array())
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_owned))
    });
    pods.into_iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(PART_OF_LABEL))
                .is_some_and(|v| v == PART_OF)
        })
        .filter_map(|p| p.metadata.namespace.clone())
        .chain(named)
        .collect()
}

/// Whether the pod is placed on a node and not finished: it runs, or is about to.
pub(super) fn placed(pod: &Pod) -> bool {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !finished && pod.spec.as_ref().is_some_and(|s| s.node_name.is_some())
}

/// Every pod of `namespaces` (the workplace namespaces) that is placed on a node and not
/// finished, with that node, sorted by object.
pub fn placements<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    nodes: impl IntoIterator<Item = &'a Node>,
    namespaces: &BTreeSet<String>,
) -> Result<Vec<Placement>, EntryError> {
    let nodes: HashMap<String, &Node> = nodes
        .into_iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, n)))
        .collect();
    let mut out = Vec::new();
    for pod in pods {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        if !namespaces.contains(ns) {
            continue;
        }
        let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|_| placed(pod))
        else {
            continue;
        };
        let uid = pod.metadata.uid.clone();
        let mut h = Sha256::new();
        h.update(uid.as_deref().unwrap_or_default());
        h.update(b"\n");
        h.update(node);
        out.push(Placement {
            object: ObjectId::new(
                STORE.to_owned(),
                CLASS.to_owned(),
                format!("pod/{ns}/{name}"),
            )?,
            content: h.finalize().into(),
            held: Held::Node(known(&nodes, node)),
            regarding: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                namespace: Some(ns.clone()),
                name: Some(name.clone()),
                uid,
                ..ObjectReference::default()
            },
        });
    }
    out.sort_by(|a, b| a.object.id.cmp(&b.object.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, node: Option<&str>, labelled: bool, phase: &str) -> Pod {
        let labels = labelled.then(|| serde_json::json!({PART_OF_LABEL: PART_OF}));
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "labels": labels},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn ids(pods: &[Pod]) -> Vec<String> {
        let nodes: [Node; 1] =
            [serde_json::from_value(serde_json::json!({"metadata": {"name": "a"}})).unwrap()];
        let namespaces = workplace_namespaces(pods, []);
        placements(pods, &nodes, &namespaces)
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{} {} {}",
                    p.object.id,
                    p.held.name(),
                    p.held.node().unwrap().labels.len()
                )
            })
            .collect()
    }

    #[test]
    fn every_placed_pod_of_a_workplace_namespace_counts_labelled_or_not() {
        let pods = [
            pod("wp", "exo-0", Some("a"), true, "Running"),
            // Started by someone else in the workplace's namespace, without the labels.
            pod("wp", "intruder", Some("fsn-1"), false, "Running"),
            pod("wp", "pending", None, true, "Pending"),
            pod("wp", "done", Some("a"), true, "Succeeded"),
            // Another namespace holds no workplace.
            pod("kube-system", "dns", Some("a"), false, "Running"),
        ];
        assert_eq!(
            ids(&pods),
            ["pod/wp/exo-0 a 0", "pod/wp/intruder fsn-1 0"],
            "the unknown node is kept by name (judged on no evidence)"
        );
    }

    #[test]
    fn a_namespace_a_policy_names_holds_a_workplace_whatever_its_pods_labels() {
        let pods = [pod("wp", "exo-0", Some("a"), false, "Running")];
        assert!(workplace_namespaces(&pods, []).is_empty());
        let policy = serde_json::json!({"namespaces": ["wp", "rh"]});
        assert_eq!(
            workplace_namespaces(&pods, [&policy]),
            BTreeSet::from(["rh".to_owned(), "wp".to_owned()])
        );
    }

    #[test]
    fn a_pod_moved_or_recreated_is_a_new_placement() {
        let nodes: [Node; 0] = [];
        let wp = BTreeSet::from(["wp".to_owned()]);
        let at = |p: Pod| placements(&[p], &nodes, &wp).unwrap()[0].content;
        let first = at(pod("wp", "x", Some("a"), true, "Running"));
        assert_ne!(first, at(pod("wp", "x", Some("b"), true, "Running")));
        let mut again = pod("wp", "x", Some("a"), true, "Running");
        again.metadata.uid = Some("another".into());
        assert_ne!(first, at(again));
        assert_eq!(first, at(pod("wp", "x", Some("a"), true, "Running")));
    }
}
