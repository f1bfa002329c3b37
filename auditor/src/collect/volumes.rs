//! Where each bound PersistentVolume is, from the cluster's objects: pure functions over
//! `k8s_openapi` values, no client. A volume is on the node of the running pod that uses its
//! claim (`spec.nodeName`), else on the node its node affinity names (a local or zonal volume
//! not mounted yet). Its object identity holds identifiers only: namespace and claim name.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use sha2::{Digest as _, Sha256};

use hexagone_platform::catalog::{Catalog, StoreKind};

use crate::ingest::{ReportedAddress, ReportedNode};
use crate::ledger::entry::{EntryError, ObjectId};
use crate::ledger::tree::Hash;

/// The store every collected volume is recorded under (reserved to the collector).
pub const STORE: &str = crate::names::KUBERNETES_STORE;

/// The class of a volume no catalog entry describes.
pub const UNKNOWN_CLASS: &str = "unknown";

/// The label naming a claim's catalog component (set by the Workplace renderer).
const COMPONENT_LABEL: &str = "app.kubernetes.io/name";

/// The node-affinity key a local volume names its node with.
const HOSTNAME_KEY: &str = "kubernetes.io/hostname";

/// Where a data object's bytes are: on a node of the cluster, or on the server of a network
/// volume, whatever node mounts it.
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    /// On a node (name only when the cluster has no Node of that name).
    Node(ReportedNode),
    /// On a storage server outside the nodes: its host name or address, as the volume names it
    /// (an NFS server, an iSCSI portal's host, an SMB share's host).
    Server(String),
}

impl Held {
    /// Where, in words an Event's note carries: the node's name or the server.
    pub fn name(&self) -> &str {
        match self {
            Self::Node(n) => &n.name,
            Self::Server(s) => s,
        }
    }

    /// The node, when a node holds it.
    pub fn node(&self) -> Option<&ReportedNode> {
        match self {
            Self::Node(n) => Some(n),
            Self::Server(_) => None,
        }
    }
}

/// One data object (a bound volume, or a snapshot of one) and where it is held, as the cluster
/// reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// `kubernetes` / class / `volume/<namespace>/<claim>` (`snapshot/<namespace>/<name>`).
    pub object: ObjectId,
    /// SHA-256 of the PersistentVolume's uid and resourceVersion: which version of which
    /// volume was seen (never its contents, which the auditor does not read).
    pub content: Hash,
    /// Where it is held.
    pub held: Held,
    /// What a violation's Event is about: the volume's claim, or the VolumeSnapshot.
    pub regarding: ObjectReference,
}

/// The node named, as the cluster reports it; its name alone when the cluster has no Node of
/// that name (it is judged on no evidence, so never compliant).
pub fn known(nodes: &HashMap<String, &Node>, name: &str) -> ReportedNode {
    nodes.get(name).map_or_else(
        || ReportedNode {
            name: name.to_owned(),
            provider_id: None,
            labels: BTreeMap::new(),
            addresses: Vec::new(),
        },
        |n| reported(n),
    )
}

/// The node as the cluster reports it, in the ingest vocabulary.
pub fn reported(node: &Node) -> ReportedNode {
    ReportedNode {
        name: node.metadata.name.clone().unwrap_or_default(),
        provider_id: node.spec.as_ref().and_then(|s| s.provider_id.clone()),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        addresses: node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .map(|a| {
                a.iter()
                    .map(|a| ReportedAddress {
                        kind: a.type_.clone(),
                        address: a.address.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The data class of a claim: the catalog component named by its `app.kubernetes.io/name`
/// label, and that component's volume whose StatefulSet claim name (`<volume>-<component>-N`)
/// the claim has; [`UNKNOWN_CLASS`] otherwise.
pub fn class(claim: &PersistentVolumeClaim, catalog: &Catalog) -> String {
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    claim
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(COMPONENT_LABEL))
        .and_then(|c| catalog.component(c))
        .and_then(|c| {
            c.writes.iter().find(|w| {
                w.kind == StoreKind::Volume
                    && name
                        .strip_prefix(&format!("{}-{}-", w.name, c.name))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .and_then(|w| serde_json::to_value(w.class).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| UNKNOWN_CLASS.to_owned())
}

fn affinity_node(pv: &PersistentVolume) -> Option<String> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_expressions.as_ref()?.iter().find_map(|e| {
            (e.key == HOSTNAME_KEY && e.operator == "In")
                .then(|| e.values.as_ref()?.first().cloned())
                .flatten()
        })
    })
}

/// The server holding a network volume's data, as the PersistentVolume names it: in-tree NFS
/// (`spec.nfs.server`), iSCSI (`spec.iscsi.targetPortal` and every `portals` entry, their hosts;
/// the kubelet logs into each), CephFS and RBD (`monitors`), and the CSI drivers whose volume
/// attributes name it: `nfs.csi.k8s.io` (`server`, kubernetes-csi/csi-driver-nfs
/// docs/driver-parameters.md and deploy/example/pv-nfs-csi.yaml), `smb.csi.k8s.io` (`source`,
/// `//host/share`: kubernetes-csi/csi-driver-smb docs/driver-parameters.md), attribute names
/// matched without case, as those drivers do (csi-driver-nfs pkg/nfs/nodeserver.go,
/// `strings.ToLower(k)`). A mount option naming the address connected to (`ip=`, `addr=`,
/// `mountaddr=`) counts too. One host: that host, lower-cased, without a trailing dot. Several
/// different ones: `one of A, B`, which no inventory entry names, so a place nothing locates.
/// Another in-tree network source (GlusterFS, a cloud disk, Fibre Channel, ...): its kind, a
/// place nothing locates. Any other CSI driver, `local` or `hostPath`: `None` (where its node
/// affinity or its pod says).
pub fn server(pv: &PersistentVolume) -> Option<String> {
    let spec = pv.spec.as_ref()?;
    let host = |s: &str| -> Option<String> {
        let s = s.trim();
        let h = match s.strip_prefix('[') {
            // [v6]:port
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None if s.matches(':').count() == 1 => s.split(':').next().unwrap_or_default(),
            None => s,
        };
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        (!h.is_empty()).then_some(h)
    };
    let mut hosts: Vec<String> = Vec::new();
    let mut network = false;
    // Mount options, the PersistentVolume's and those a driver takes from its attributes.
    let mut options: Vec<String> = spec.mount_options.clone().unwrap_or_default();
    if let Some(nfs) = &spec.nfs {
        network = true;
        hosts.extend(host(&nfs.server));
    }
    if let Some(iscsi) = &spec.iscsi {
        network = true;
        hosts.extend(host(&iscsi.target_portal));
        hosts.extend(iscsi.portals.iter().flatten().filter_map(|p| host(p)));
    }
    if let Some(c) = &spec.cephfs {
        network = true;
        hosts.extend(c.monitors.iter().filter_map(|m| host(m)));
    }
    if let Some(r) = &spec.rbd {
        network = true;
        hosts.extend(r.monitors.iter().filter_map(|m| host(m)));
    }
    if let Some(csi) = &spec.csi {
        let attrs = csi.volume_attributes.clone().unwrap_or_default();
        let named = |key: &str| -> Vec<&String> {
            attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
                .collect()
        };
        match csi.driver.as_str() {
            "nfs.csi.k8s.io" => {
                network = true;
                hosts.extend(named("server").into_iter().filter_map(|v| host(v)));
                // The driver appends the `mountOptions` attribute to the mount's options
                // (pkg/nfs/nodeserver.go, `mountOptionsField`).
                options.extend(named("mountoptions").into_iter().cloned());
            }
            "smb.csi.k8s.io" => {
                network = true;
                for source in named("source") {
                    let source = source.trim();
                    if let Some(rest) = source
                        .strip_prefix("//")
                        .or_else(|| source.strip_prefix("\\\\"))
                    {
                        hosts.extend(rest.split(['/', '\\']).next().and_then(host));
                    }
                }
            }
            _ => {}
        }
    }
    if network {
        for o in options.iter().flat_map(|o| o.split(',')) {
            let o = o.trim();
            for key in ["ip=", "addr=", "mountaddr="] {
                if let Some(v) = o.strip_prefix(key) {
                    hosts.extend(host(v));
                }
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    if !network {
        let value = serde_json::to_value(spec).unwrap_or_default();
        let kind = NETWORK_SOURCES
            .iter()
            .find(|k| value.get(**k).is_some_and(|v| !v.is_null()))?;
        return Some(format!("the servers of a {kind} volume (not read)"));
    }
    match hosts.len() {
        0 => Some("no server named".to_owned()),
        1 => hosts.pop(),
        _ => Some(format!("one of {}", hosts.join(", "))),
    }
}

/// The in-tree volume sources whose data is on servers the PersistentVolume does not name in a
/// form read here: placed by nothing.
const NETWORK_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cinder",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// Every bound volume with where it is held, sorted by object: a network volume on its server
/// ([`server`]), any other on the node of the running pod using it, else on the node its node
/// affinity names. Volumes held nowhere the cluster says (no server named, not mounted, no node
/// affinity) are left out.
pub fn placements<'a>(
    pvs: impl IntoIterator<Item = &'a PersistentVolume>,
    claims: impl IntoIterator<Item = &'a PersistentVolumeClaim>,
    pods: impl IntoIterator<Item = &'a Pod>,
    nodes: impl IntoIterator<Item = &'a Node>,
    catalog: &Catalog,
) -> Result<Vec<Placement>, EntryError> {
    let claims: HashMap<(String, String), &PersistentVolumeClaim> = claims
        .into_iter()
        .filter_map(|c| Some(((c.metadata.namespace.clone()?, c.metadata.name.clone()?), c)))
        .collect();
    let nodes: HashMap<String, &Node> = nodes
        .into_iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, n)))
        .collect();
    // (namespace, claim) → node of a pod using it that is not finished.
    let mut mounted: BTreeMap<(String, String), String> = BTreeMap::new();
    for pod in pods {
        let finished = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let (Some(ns), Some(spec)) = (&pod.metadata.namespace, &pod.spec) else {
            continue;
        };
        let Some(node) = spec.node_name.as_ref().filter(|_| !finished) else {
            continue;
        };
        for v in spec.volumes.iter().flatten() {
            if let Some(c) = &v.persistent_volume_claim {
                mounted.insert((ns.clone(), c.claim_name.clone()), node.clone());
            }
        }
    }
    let mut out = Vec::new();
    for pv in pvs {
        let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            continue;
        };
        let (Some(ns), Some(claim)) = (&claim_ref.namespace, &claim_ref.name) else {
            continue;
        };
        if !bound {
            continue;
        }
        let key = (ns.clone(), claim.clone());
        let held = match server(pv) {
            Some(s) => Held::Server(s),
            None => match mounted.get(&key).cloned().or_else(|| affinity_node(pv)) {
                Some(node) => Held::Node(known(&nodes, &node)),
                None => continue,
            },
        };
        let class = claims
            .get(&key)
            .map_or_else(|| UNKNOWN_CLASS.to_owned(), |c| class(c, catalog));
        let claim_ref = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("PersistentVolumeClaim".to_owned()),
            namespace: Some(ns.clone()),
            name: Some(claim.clone()),
            uid: claims
                .get(&key)
                .and_then(|c| c.metadata.uid.clone())
                .or_else(|| claim_ref.uid.clone()),
            ..ObjectReference::default()
        };
        let mut h = Sha256::new();
        h.update(pv.metadata.uid.as_deref().unwrap_or_default());
        h.update(b"\n");
        h.update(pv.metadata.resource_version.as_deref().unwrap_or_default());
        out.push(Placement {
            object: ObjectId::new(STORE.to_owned(), class, format!("volume/{ns}/{claim}"))?,
            content: h.finalize().into(),
            held,
            regarding: claim_ref,
        });
    }
    out.sort_by(|a, b| a.object.id.cmp(&b.object.id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn claim(name: &str, component: Option<&str>) -> PersistentVolumeClaim {
        let labels = component.map(|c| serde_json::json!({"app.kubernetes.io/name": c}));
        object(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "labels": labels}
        }))
    }

    fn pv(claim: &str, affinity: Option<&str>, phase: &str) -> PersistentVolume {
        let affinity = affinity.map(|n| {
            serde_json::json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]}]}})
        });
        object(serde_json::json!({
            "metadata": {"name": format!("pv-{claim}"), "uid": "u", "resourceVersion": "1"},
            "spec": {"claimRef": {"namespace": "ns", "name": claim}, "nodeAffinity": affinity},
            "status": {"phase": phase}
        }))
    }

    fn pod(node: &str, claim: &str, phase: &str) -> Pod {
        object(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": node, "containers": [],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": phase}
        }))
    }

    fn check(pvs: &[PersistentVolume], pods: &[Pod], want: &[&str]) {
        let claims = [
            claim("data-search-0", Some("search")),
            claim("other", Some("search")),
        ];
        let nodes: [Node; 1] = [object(
            serde_json::json!({"metadata": {"name": "a", "labels": {"x": "y"}}}),
        )];
        let got: Vec<String> = placements(pvs, &claims, pods, &nodes, Catalog::shipped())
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{} {} {} {}",
                    p.object.id,
                    p.object.class,
                    p.held.name(),
                    p.held.node().map_or(0, |n| n.labels.len())
                )
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_volume_is_where_its_pod_runs_else_where_its_affinity_says() {
        let search = "volume/ns/data-search-0 search-index";
        // Mounted: the pod's node, with the node's facts.
        check(
            &[pv("data-search-0", Some("b"), "Bound")],
            &[pod("a", "data-search-0", "Running")],
            &[&format!("{search} a 1")],
        );
        // A finished pod holds nothing: the affinity's node, unknown to the cluster (name only).
        check(
            &[pv("data-search-0", Some("b"), "Bound")],
            &[pod("a", "data-search-0", "Succeeded")],
            &[&format!("{search} b 0")],
        );
        // Not bound, or on no node: not recorded.
        check(&[pv("data-search-0", Some("a"), "Released")], &[], &[]);
        check(&[pv("data-search-0", None, "Bound")], &[], &[]);
        // A claim the catalog does not describe (no StatefulSet claim name of the component's
        // volume, or no claim at all) is of unknown class.
        check(
            &[
                pv("other", Some("a"), "Bound"),
                pv("gone", Some("a"), "Bound"),
            ],
            &[],
            &["volume/ns/gone unknown a 1", "volume/ns/other unknown a 1"],
        );
    }

    /// A network volume's bytes are on its server, not on the node mounting it: a French node
    /// mounting an NFS share abroad does not make the share French. Mounted or not, with node
    /// affinity or not.
    #[test]
    fn a_network_volume_is_where_its_server_is() {
        let search = "volume/ns/data-search-0 search-index";
        let with = |source: serde_json::Value| {
            let mut v = pv("data-search-0", Some("b"), "Bound");
            let mut spec = serde_json::to_value(v.spec.take().unwrap()).unwrap();
            for (k, x) in source.as_object().unwrap() {
                spec[k] = x.clone();
            }
            v.spec = Some(object(spec));
            v
        };
        let cases = [
            (
                json!({"nfs": {"server": "nfs.example.us", "path": "/exports"}}),
                "nfs.example.us",
            ),
            (
                json!({"iscsi": {"targetPortal": "198.51.100.7:3260", "iqn": "iqn.2001-04.com.example:storage", "lun": 0}}),
                "198.51.100.7",
            ),
            (
                json!({"iscsi": {"targetPortal": "[2001:db8::7]:3260", "iqn": "iqn.2001-04.com.example:storage", "lun": 0}}),
                "2001:db8::7",
            ),
            (
                json!({"csi": {"driver": "nfs.csi.k8s.io", "volumeHandle": "h",
                            "volumeAttributes": {"server": "nfs.example.us", "share": "/"}}}),
                "nfs.example.us",
            ),
            (
                json!({"csi": {"driver": "smb.csi.k8s.io", "volumeHandle": "h",
                            "volumeAttributes": {"source": "//smb.example.us/share"}}}),
                "smb.example.us",
            ),
        ];
        for (source, server) in cases {
            let v = with(source.clone());
            check(
                std::slice::from_ref(&v),
                &[pod("a", "data-search-0", "Running")],
                &[&format!("{search} {server} 0")],
            );
            // Not mounted, no affinity: still where its server is.
            let mut bare = v.clone();
            bare.spec.as_mut().unwrap().node_affinity = None;
            check(&[bare], &[], &[&format!("{search} {server} 0")]);
        }
        // Attribute names without case, as the drivers read them; portals and mount options
        // that name other hosts; monitors; other in-tree network sources; names normalised.
        let more = [
            (
                json!({"csi": {"driver": "nfs.csi.k8s.io", "volumeHandle": "h",
                            "volumeAttributes": {"Server": "NFS.Example.US.", "share": "/"}}}),
                "nfs.example.us",
            ),
            (
                json!({"csi": {"driver": "nfs.csi.k8s.io", "volumeHandle": "h",
                            "volumeAttributes": {"server": "nfs.gouv.example", "SERVER": "nfs.example.us"}}}),
                "one of nfs.example.us, nfs.gouv.example",
            ),
            (
                json!({"iscsi": {"targetPortal": "192.0.2.7:3260", "portals": ["198.51.100.7:3260"],
                              "iqn": "iqn.2001-04.com.example:storage", "lun": 0}}),
                "one of 192.0.2.7, 198.51.100.7",
            ),
            (
                json!({"csi": {"driver": "smb.csi.k8s.io", "volumeHandle": "h",
                            "volumeAttributes": {"source": "//smb.gouv.example/share"}},
                    "mountOptions": ["vers=3.0,ip=203.0.113.9"]}),
                "one of 203.0.113.9, smb.gouv.example",
            ),
            (
                json!({"rbd": {"monitors": ["192.0.2.10:6789"], "image": "i"}}),
                "192.0.2.10",
            ),
            (
                json!({"glusterfs": {"endpoints": "glusterfs-cluster", "path": "vol"}}),
                "the servers of a glusterfs volume (not read)",
            ),
            (
                json!({"nfs": {"server": "", "path": "/"}}),
                "no server named",
            ),
            (
                json!({"csi": {"driver": "nfs.csi.k8s.io", "volumeHandle": "h",
                               "volumeAttributes": {"server": "nfs.gouv.example",
                                                    "mountOptions": "nfsvers=4.1,addr=203.0.113.9"}}}),
                "one of 203.0.113.9, nfs.gouv.example",
            ),
        ];
        for (source, server) in more {
            let mut bare = with(source.clone());
            bare.spec.as_mut().unwrap().node_affinity = None;
            check(&[bare], &[], &[&format!("{search} {server} 0")]);
        }
        // A CSI driver that names no server: where its pod is, as before.
        check(
            &[with(
                json!({"csi": {"driver": "csi.example.fr", "volumeHandle": "h",
                                  "volumeAttributes": {"server": "x"}}}),
            )],
            &[pod("a", "data-search-0", "Running")],
            &[&format!("{search} a 1")],
        );
    }

    #[test]
    fn the_class_comes_from_the_catalog() {
        let catalog = Catalog::shipped();
        assert_eq!(
            class(&claim("data-search-0", Some("search")), catalog),
            "search-index"
        );
        assert_eq!(
            class(&claim("data-search-x", Some("search")), catalog),
            UNKNOWN_CLASS
        );
        assert_eq!(class(&claim("data-search-0", None), catalog), UNKNOWN_CLASS);
        assert_eq!(
            class(&claim("data-search-0", Some("nope")), catalog),
            UNKNOWN_CLASS
        );
    }
}
