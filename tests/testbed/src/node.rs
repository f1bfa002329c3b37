//! Declarative fake nodes, turned into kwok-managed `Node` objects.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The annotation kwok selects its nodes by (see `--manage-nodes-with-annotation-selector`).
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";
/// The value of [`KWOK_NODE_ANNOTATION`] on fake nodes.
pub const KWOK_NODE_VALUE: &str = "fake";
/// The label every fake node carries, as in kwok's examples (`type=kwok`).
pub const KWOK_TYPE_LABEL: (&str, &str) = ("type", "kwok");

/// Kind of a node address, as Kubernetes names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddressKind {
    /// Reachable inside the cluster network.
    InternalIP,
    /// Reachable from outside the cluster.
    ExternalIP,
}

/// A node address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeAddress {
    /// Internal or external.
    pub kind: AddressKind,
    /// The IP.
    pub address: IpAddr,
}

/// Effect of a taint on pods that do not tolerate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaintEffect {
    /// New pods are not scheduled on the node.
    NoSchedule,
    /// The scheduler avoids the node if it can.
    PreferNoSchedule,
    /// Running pods are evicted too.
    NoExecute,
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeTaint {
    /// Taint key.
    pub key: String,
    /// Taint value (may be empty).
    #[serde(default)]
    pub value: String,
    /// What the taint does.
    pub effect: TaintEffect,
}

/// A fake node: what a test says about a node, kwok plays the kubelet for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeNode {
    /// Node name (also its `kubernetes.io/hostname` label).
    pub name: String,
    /// Labels, on top of the ones every fake node gets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints.
    #[serde(default)]
    pub taints: Vec<FakeTaint>,
    /// Addresses reported in the node status.
    #[serde(default)]
    pub addresses: Vec<FakeAddress>,
    /// `spec.providerID`; defaults to `kwok://<name>` (a provider ID is immutable once set).
    #[serde(default)]
    pub provider_id: Option<String>,
    /// Capacity (and allocatable), e.g. `cpu: "8"`, `memory: 32Gi`, `pods: "110"`.
    /// Defaults to [`FakeNode::DEFAULT_CAPACITY`] when empty.
    #[serde(default)]
    pub capacity: BTreeMap<String, String>,
}

impl FakeNode {
    /// Capacity of a node that does not say otherwise.
    pub const DEFAULT_CAPACITY: [(&'static str, &'static str); 3] =
        [("cpu", "16"), ("memory", "64Gi"), ("pods", "110")];

    /// A node with only a name.
    pub fn new(name: impl Into<String>) -> FakeNode {
        FakeNode {
            name: name.into(),
            provider_id: None,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            addresses: Vec::new(),
            capacity: BTreeMap::new(),
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> FakeNode {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a taint.
    pub fn taint(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        effect: TaintEffect,
    ) -> FakeNode {
        self.taints.push(FakeTaint {
            key: key.into(),
            value: value.into(),
            effect,
        });
        self
    }

    /// Adds kwok's conventional `kwok.x-k8s.io/node=fake:NoSchedule` taint, which keeps pods
    /// without the matching toleration off the node.
    pub fn kwok_taint(self) -> FakeNode {
        self.taint(
            KWOK_NODE_ANNOTATION,
            KWOK_NODE_VALUE,
            TaintEffect::NoSchedule,
        )
    }

    /// Adds an `InternalIP` address.
    pub fn internal_ip(mut self, address: IpAddr) -> FakeNode {
        self.addresses.push(FakeAddress {
            kind: AddressKind::InternalIP,
            address,
        });
        self
    }

    /// Adds an `ExternalIP` address.
    pub fn external_ip(mut self, address: IpAddr) -> FakeNode {
        self.addresses.push(FakeAddress {
            kind: AddressKind::ExternalIP,
            address,
        });
        self
    }

    /// Sets one capacity entry (e.g. `cpu`, `4`).
    pub fn capacity(
        mut self,
        resource: impl Into<String>,
        quantity: impl Into<String>,
    ) -> FakeNode {
        self.capacity.insert(resource.into(), quantity.into());
        self
    }

    /// The node's provider ID: the one set, or `kwok://<name>`.
    pub fn provider_id(&self) -> String {
        self.provider_id
            .clone()
            .unwrap_or_else(|| format!("kwok://{}", self.name))
    }

    /// Sets the provider ID.
    pub fn with_provider_id(mut self, id: impl Into<String>) -> FakeNode {
        self.provider_id = Some(id.into());
        self
    }

    /// The addresses the node status should show: the declared ones, then its `Hostname`
    /// (kwok's initial stage rewrites the list when no `Hostname` entry is present).
    pub fn status_addresses(&self) -> Vec<NodeAddress> {
        self.addresses
            .iter()
            .map(|a| NodeAddress {
                type_: format!("{:?}", a.kind),
                address: a.address.to_string(),
            })
            .chain(std::iter::once(NodeAddress {
                type_: "Hostname".to_owned(),
                address: self.name.clone(),
            }))
            .collect()
    }

    /// The `Node` object kwok will take over: kwok's annotation, the usual well-known labels,
    /// and the addresses and capacity in the status (nodes may be created with a status).
    pub fn to_node(&self) -> Node {
        let mut labels: BTreeMap<String, String> = [
            (KWOK_TYPE_LABEL.0, KWOK_TYPE_LABEL.1),
            ("kubernetes.io/hostname", self.name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        labels.extend(self.labels.clone());
        let annotations = BTreeMap::from([
            (KWOK_NODE_ANNOTATION.to_owned(), KWOK_NODE_VALUE.to_owned()),
            ("node.alpha.kubernetes.io/ttl".to_owned(), "0".to_owned()),
        ]);
        let capacity: BTreeMap<String, Quantity> = if self.capacity.is_empty() {
            Self::DEFAULT_CAPACITY
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect()
        } else {
            self.capacity
                .iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        };
        let taints: Vec<Taint> = self
            .taints
            .iter()
            .map(|t| Taint {
                key: t.key.clone(),
                value: (!t.value.is_empty()).then(|| t.value.clone()),
                effect: format!("{:?}", t.effect),
                time_added: None,
            })
            .collect();
        let addresses = self.status_addresses();
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: (!taints.is_empty()).then_some(taints),
                provider_id: Some(self.provider_id()),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(addresses),
                allocatable: Some(capacity.clone()),
                capacity: Some(capacity),
                ..NodeStatus::default()
            }),
        }
    }
}

/// The node's `Ready` condition status (`True`, `False`, `Unknown`), if it has one.
pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(node: &FakeNode, f: impl FnOnce(&Node)) {
        f(&node.to_node());
    }

    #[test]
    fn node_object_carries_kwok_annotation_labels_taints_and_addresses() {
        let fake = FakeNode::new("fr-1")
            .label("topology.kubernetes.io/region", "fr-par")
            .kwok_taint()
            .internal_ip("10.1.0.1".parse().unwrap())
            .external_ip("192.0.2.1".parse().unwrap())
            .capacity("cpu", "4");
        check(&fake, |node| {
            let meta = &node.metadata;
            assert_eq!(
                meta.annotations.as_ref().unwrap()[KWOK_NODE_ANNOTATION],
                "fake"
            );
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels["topology.kubernetes.io/region"], "fr-par");
            assert_eq!(labels["kubernetes.io/hostname"], "fr-1");
            let taints = node.spec.as_ref().unwrap().taints.as_ref().unwrap();
            assert_eq!(taints[0].effect, "NoSchedule");
            assert_eq!(taints[0].value.as_deref(), Some("fake"));
            let status = node.status.as_ref().unwrap();
            let addresses = status.addresses.as_ref().unwrap();
            assert_eq!(addresses[0].type_, "InternalIP");
            assert_eq!(addresses[1].type_, "ExternalIP");
            assert_eq!(addresses[1].address, "192.0.2.1");
            let capacity = status.capacity.as_ref().unwrap();
            assert_eq!(capacity["cpu"].0, "4");
            assert!(!capacity.contains_key("memory"));
        });
    }

    #[test]
    fn default_capacity_applies_when_none_is_given() {
        check(&FakeNode::new("n"), |node| {
            let status = node.status.as_ref().unwrap();
            assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
            assert_eq!(status.allocatable, status.capacity);
            let addresses = status.addresses.as_ref().unwrap();
            assert_eq!(addresses.len(), 1);
            assert_eq!(
                (addresses[0].type_.as_str(), addresses[0].address.as_str()),
                ("Hostname", "n")
            );
        });
    }

    #[test]
    fn description_reads_from_yaml() {
        let fake: FakeNode = yaml_serde::from_str(
            "name: a\nlabels: {zone: z1}\ntaints: [{key: k, effect: NoExecute}]\n\
             addresses: [{kind: InternalIP, address: 10.0.0.7}]\n",
        )
        .unwrap();
        assert_eq!(fake.labels["zone"], "z1");
        assert_eq!(fake.taints[0].effect, TaintEffect::NoExecute);
        assert_eq!(fake.addresses[0].address.to_string(), "10.0.0.7");
    }
}
