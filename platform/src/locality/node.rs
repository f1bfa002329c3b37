//! What the locality engine is told about a node (or any place data lives): plain data, no client.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use crate::labels::{ATTESTED_COUNTRY_LABEL, REGION_LABEL, ZONE_LABEL};

/// One address of a node, as in a Kubernetes `NodeAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAddress {
    /// `ExternalIP`, `InternalIP` (Kubernetes address types); others are ignored.
    #[serde(rename = "type")]
    pub kind: AddressKind,
    /// The address.
    pub address: IpAddr,
}

/// Kubernetes node address types the locality engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AddressKind {
    /// An address reachable from outside the cluster: the one geolocated first.
    #[serde(rename = "ExternalIP")]
    External,
    /// A cluster-internal address: geolocated only when the node has no external address.
    #[serde(rename = "InternalIP")]
    Internal,
}

/// A node, a storage endpoint or any place data may live, described by name, labels and addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeDescription {
    /// The node (or endpoint) name, used in sentences.
    pub name: String,
    /// The node's `spec.providerID`, which binds an attestation to one machine.
    #[serde(
        default,
        rename = "providerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its addresses.
    #[serde(default)]
    pub addresses: Vec<NodeAddress>,
    /// Addresses of type `ExternalIP` or `InternalIP` that are not IP addresses, as
    /// (type, value): reported in the evaluation, never dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable_addresses: Vec<(String, String)>,
    /// Ranges of addresses it stands for (a destination given as a block wider than one
    /// address): each is reported as such, since no single place holds a range.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<String>,
}

impl NodeDescription {
    /// A bare endpoint known only by one address (an S3 endpoint, a backup target).
    pub fn endpoint(address: IpAddr) -> Self {
        NodeDescription {
            name: crate::address::canonical(address).to_string(),
            provider_id: None,
            labels: BTreeMap::new(),
            addresses: vec![NodeAddress {
                kind: AddressKind::External,
                address,
            }],
            unreadable_addresses: Vec::new(),
            ranges: Vec::new(),
        }
    }

    /// The addresses to geolocate: the external ones, or the internal ones when there are none.
    pub fn public_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let has_external = self
            .addresses
            .iter()
            .any(|a| a.kind == AddressKind::External);
        let wanted = if has_external {
            AddressKind::External
        } else {
            AddressKind::Internal
        };
        self.addresses
            .iter()
            .filter(move |a| a.kind == wanted)
            .map(|a| a.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str, expected: &[&str]) {
        let node: NodeDescription = yaml_serde::from_str(yaml).unwrap();
        let got: Vec<String> = node.public_addresses().map(|a| a.to_string()).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn external_addresses_win() {
        check(
            "name: n\naddresses:\n- {type: InternalIP, address: 10.0.0.1}\n- {type: ExternalIP, address: 51.15.0.1}\n",
            &["51.15.0.1"],
        );
        check(
            "name: n\naddresses:\n- {type: InternalIP, address: 10.0.0.1}\n",
            &["10.0.0.1"],
        );
        check("name: n\n", &[]);
    }
}
