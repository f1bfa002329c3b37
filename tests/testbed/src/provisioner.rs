//! A stand-in for a site's zonal block-storage CSI driver (the test bed has none).

use std::time::Duration;

use kube::Client;
use kube::api::{Api, PostParams};

/// Stands in for a site's zonal block-storage CSI driver, which the test bed has not: every
/// claim the scheduler has placed (annotation `volume.kubernetes.io/selected-node`) on a
/// StorageClass with provisioner [`TEST_PROVISIONER`] gets a volume in the selected node's zone,
/// pre-bound to the claim; the real PV controller binds them and the real scheduler then binds
/// the pod. Stops when dropped.
pub struct Provisioner(tokio::task::JoinHandle<()>);

/// The provisioner name Workplaces on the test bed ask for.
pub const TEST_PROVISIONER: &str = "zonal.csi.test.hexagone.fr";

impl Provisioner {
    /// Starts provisioning with `client` (admin).
    pub fn start(client: Client) -> Provisioner {
        use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
        use k8s_openapi::api::storage::v1::StorageClass;
        Provisioner(tokio::spawn(async move {
            let claims = Api::<PersistentVolumeClaim>::all(client.clone());
            let pvs = Api::<PersistentVolume>::all(client.clone());
            let nodes = Api::<Node>::all(client.clone());
            let classes = Api::<StorageClass>::all(client.clone());
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let Ok(list) = claims.list(&Default::default()).await else {
                    continue;
                };
                for c in list.items {
                    let meta = &c.metadata;
                    let Some(node) = meta
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("volume.kubernetes.io/selected-node"))
                    else {
                        continue;
                    };
                    let spec = c.spec.clone().unwrap_or_default();
                    if spec.volume_name.is_some() {
                        continue;
                    }
                    let Some(class) = spec.storage_class_name.clone() else {
                        continue;
                    };
                    match classes.get(&class).await {
                        Ok(sc) if sc.provisioner == TEST_PROVISIONER => {}
                        _ => continue,
                    }
                    let Ok(node) = nodes.get(node).await else {
                        continue;
                    };
                    let Some(zone) = node
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("topology.kubernetes.io/zone"))
                        .cloned()
                    else {
                        continue;
                    };
                    let ns = meta.namespace.clone().unwrap_or_default();
                    let name = meta.name.clone().unwrap_or_default();
                    let size = spec
                        .resources
                        .and_then(|r| r.requests)
                        .and_then(|r| r.get("storage").cloned())
                        .map(|q| q.0)
                        .unwrap_or_else(|| "1Gi".into());
                    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("pv-{ns}-{name}")},
                        "spec": {
                            "capacity": {"storage": size},
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": class,
                            "persistentVolumeReclaimPolicy": "Retain",
                            "hostPath": {"path": format!("/srv/{ns}/{name}")},
                            "claimRef": {"namespace": ns, "name": name, "uid": meta.uid},
                            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}
                            ]}]}}
                        }
                    }))
                    .expect("a valid PersistentVolume");
                    let _ = pvs.create(&PostParams::default(), &pv).await;
                }
            }
        }))
    }
}

impl Drop for Provisioner {
    fn drop(&mut self) {
        self.0.abort();
    }
}
