//! Kubernetes types (feature `k8s`): the `LocalityPolicy` and `NodeAttestation` custom resources
//! and the bridge from a `k8s_openapi` Node plus attestations to an evaluation. Types and pure
//! functions only: no client, no network.

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::attestation::Attestation;
pub use crate::attestation::NodeAttestation;
use crate::country::Country;
use crate::geo::GeoSnapshot;
pub use crate::latency::LatencyMeasurement;
use crate::node::{AddressKind, NodeAddress, NodeDescription};
use crate::policy::LocalityPolicy;
pub use crate::policy::LocalityPolicyResource;
use crate::verdict::{Evaluation, SubjectKind, attested_label, judge, observe};

/// Status of a `LocalityPolicy`: which nodes meet it, each with its verdict in one sentence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalityPolicyStatus {
    /// The policy generation these verdicts were made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many nodes this policy admits.
    pub eligible_nodes: u32,
    /// How many nodes were evaluated.
    pub evaluated_nodes: u32,
    /// The policy's digest, which every recorded verdict carries.
    #[serde(default)]
    pub policy_digest: String,
    /// Why the policy cannot be used, when it cannot (its rules contradict each other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One entry per node, by name.
    #[serde(default)]
    pub nodes: Vec<NodeVerdict>,
}

/// One node's verdict under a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeVerdict {
    /// The node.
    pub name: String,
    /// `compliant`, `violation` or `unknown`.
    pub verdict: String,
    /// Whether the policy admits the node (enforce: only when compliant).
    pub eligible: bool,
    /// The verdict in one sentence.
    pub headline: String,
    /// One sentence per reason (empty when compliant).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// One sentence per piece of evidence, each saying what it weighs.
    #[serde(default)]
    pub evidence: Vec<String>,
}

impl NodeVerdict {
    /// The status entry of an evaluation.
    pub fn of(e: &Evaluation) -> Self {
        NodeVerdict {
            name: e.subject().to_owned(),
            verdict: e.verdict.name().to_owned(),
            eligible: e.admits(),
            headline: e.headline(),
            reasons: e.reasons(),
            evidence: e.evidence.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A Node as the locality engine sees it: name, provider ID, labels and addresses. Address
/// entries of type `ExternalIP` or `InternalIP` that are not IP addresses are kept as unreadable
/// (they block compliance); `Hostname` and DNS entries are not addresses and are left out.
pub fn describe(node: &Node) -> NodeDescription {
    let mut addresses = Vec::new();
    let mut unreadable_addresses = Vec::new();
    let reported = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    for a in reported {
        let kind = match a.type_.as_str() {
            "ExternalIP" => AddressKind::External,
            "InternalIP" => AddressKind::Internal,
            _ => continue,
        };
        match a.address.trim().parse() {
            Ok(address) => addresses.push(NodeAddress { kind, address }),
            Err(_) => unreadable_addresses.push((a.type_.clone(), a.address.clone())),
        }
    }
    NodeDescription {
        name: node.name_any(),
        provider_id: node.spec.as_ref().and_then(|s| s.provider_id.clone()),
        labels: node.labels().clone(),
        addresses,
        unreadable_addresses,
        ranges: Vec::new(),
    }
}

/// The attestations as the engine reads them.
pub fn attestations(resources: &[NodeAttestation]) -> Vec<Attestation> {
    resources
        .iter()
        .map(|r| Attestation::new(r.name_any(), r.spec.clone()))
        .collect()
}

/// A node judged under a policy, and what the attested label on it should be.
#[derive(Debug, Clone)]
pub struct Qualification {
    /// The evaluation.
    pub evaluation: Evaluation,
    /// The value the `node-restriction.kubernetes.io/hexagone-country` label must have, or why
    /// it must be absent.
    pub label: Result<Country, String>,
}

/// Qualifies a Node: observes it (attestations included) and judges it under `policy`.
pub fn qualify(
    node: &Node,
    attestations: &[Attestation],
    policy: &LocalityPolicy,
    geo: &GeoSnapshot,
    now: OffsetDateTime,
) -> Qualification {
    let facts = observe(&describe(node), SubjectKind::Node, attestations, geo, now);
    let label = attested_label(&facts);
    Qualification {
        evaluation: judge(policy, facts),
        label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_addresses_are_kept_and_hostnames_left_out() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n", "labels": {"a": "b"}},
            "spec": {"providerID": "kwok://n"},
            "status": {"addresses": [
                {"type": "Hostname", "address": "n"},
                {"type": "ExternalIP", "address": "51.38.1.1"},
                {"type": "InternalIP", "address": "not-an-ip"}
            ]}
        }))
        .unwrap();
        let d = describe(&node);
        assert_eq!(d.provider_id.as_deref(), Some("kwok://n"));
        assert_eq!(d.addresses.len(), 1);
        assert_eq!(
            d.unreadable_addresses,
            [("InternalIP".to_owned(), "not-an-ip".to_owned())]
        );
    }

    #[test]
    fn crds_are_cluster_scoped_with_printer_columns() {
        use kube::CustomResourceExt;
        let att = NodeAttestation::crd();
        assert_eq!(att.spec.scope, "Cluster");
        assert_eq!(att.spec.names.kind, "NodeAttestation");
        let lp = LocalityPolicyResource::crd();
        assert_eq!(lp.spec.scope, "Cluster");
        assert_eq!(lp.spec.names.kind, "LocalityPolicy");
        assert!(lp.spec.versions[0].subresources.is_some());
    }
}
