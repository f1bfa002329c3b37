//! The volumes a Workplace's data is on, judged against the storage its policy qualifies: under
//! a policy that lists `provisioners`, every bound claim of the namespace (the operator's or
//! not) must be on a volume of a qualified storage. The StorageClass the operator renders is
//! judged before anything is applied (`supply.rs`); this catches what binds without it: a
//! PersistentVolume made by hand for a claim (it binds before any provisioning), and volumes
//! provisioned before the security officer narrowed the qualified storage.

use std::collections::BTreeMap;

use hexagone_platform::LocalityPolicy;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::{Context, ReconcileError, failed};

/// Every bound claim of `ns` whose volume is not of a storage `policy` qualifies, as
/// `claim NAME: volume PV why`. Nothing under a policy that lists no `provisioners` (any
/// storage).
pub(super) async fn unqualified(
    ctx: &Context,
    ns: &str,
    policy: &LocalityPolicy,
) -> Result<Vec<String>, ReconcileError> {
    if policy.provisioners.is_empty() {
        return Ok(Vec::new());
    }
    let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(failed(format!("listing the claims in {ns}")))?;
    let pvs = Api::<PersistentVolume>::all(ctx.client.clone());
    let mut out = Vec::new();
    for claim in &claims.items {
        let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) else {
            continue;
        };
        let pv = pvs
            .get_opt(volume)
            .await
            .map_err(failed(format!("reading PersistentVolume {volume}")))?;
        // Bound to this claim: its claimRef names it (a volume named by a claim it is not bound
        // to holds none of the claim's data).
        let Some(pv) = pv.filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .is_some_and(|r| {
                    r.namespace.as_deref() == Some(ns)
                        && r.name.as_deref() == Some(&claim.name_any())
                })
        }) else {
            continue;
        };
        if let Some(why) = judge(&pv, policy) {
            out.push(format!("claim {}: volume {volume} {why}", claim.name_any()));
        }
    }
    out.sort();
    Ok(out)
}

/// Why `pv` is not of a storage `policy` qualifies, if it is not. A node's own disk (`local`,
/// `hostPath`) holds the data where the node is, which the node's eligibility judges: allowed.
/// A CSI volume must be of a qualified driver, and its volume attributes must agree with the
/// qualified parameters on every key both name (drivers copy the parameters that locate the
/// volume, an NFS driver its `server` and `share`: kubernetes-csi/csi-driver-nfs
/// deploy/example/pv-nfs-csi.yaml). Any other source (in-tree NFS, iSCSI, Ceph, a cloud disk)
/// is no qualified storage.
pub(super) fn judge(pv: &PersistentVolume, policy: &LocalityPolicy) -> Option<String> {
    let spec = pv.spec.as_ref()?;
    if spec.local.is_some() || spec.host_path.is_some() {
        return None;
    }
    let Some(csi) = &spec.csi else {
        let value = serde_json::to_value(spec).unwrap_or_default();
        let source = value
            .as_object()
            .and_then(|o| {
                o.keys()
                    .find(|k| !NOT_SOURCES.contains(&k.as_str()))
                    .cloned()
            })
            .unwrap_or_else(|| "no".to_owned());
        return Some(format!(
            "is a {source} volume, not of a storage the policy qualifies (a CSI driver it lists)"
        ));
    };
    let empty = BTreeMap::new();
    let attributes = csi.volume_attributes.as_ref().unwrap_or(&empty);
    let same_driver: Vec<_> = policy
        .provisioners
        .iter()
        .filter(|q| q.driver == csi.driver)
        .collect();
    if same_driver.is_empty() {
        return Some(format!(
            "is of CSI driver {}, which the policy does not qualify",
            csi.driver
        ));
    }
    let agrees = |q: &&hexagone_platform::locality::policy::QualifiedStorage| {
        q.parameters
            .iter()
            .all(|(k, v)| attributes.get(k).is_none_or(|a| a == v))
    };
    if same_driver.iter().any(agrees) {
        return None;
    }
    let q = &same_driver[0].parameters;
    let differs: Vec<String> = q
        .iter()
        .filter_map(|(k, v)| {
            let a = attributes.get(k)?;
            (a != v).then(|| format!("{k} {a}, qualified as {v}"))
        })
        .collect();
    Some(format!(
        "of CSI driver {} has attributes the policy does not qualify: {}",
        csi.driver,
        differs.join("; ")
    ))
}

/// The fields of a PersistentVolume's spec that are not its volume source.
const NOT_SOURCES: &[&str] = &[
    "accessModes",
    "capacity",
    "claimRef",
    "mountOptions",
    "nodeAffinity",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeAttributesClassName",
    "volumeMode",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> LocalityPolicy {
        let mut p: LocalityPolicy = serde_json::from_value(json!({
            "classification": "x", "allowedCountries": ["FR"], "networkOperator": {"allowedCountries": ["FR"]},
            "provisioners": [
                {"driver": "csi.interieur.gouv.fr"},
                {"driver": "nfs.csi.k8s.io", "parameters": {"server": "nfs.paris.interieur.gouv.fr", "share": "/exports"}}
            ]
        }))
        .unwrap();
        p.namespaces.clear();
        p
    }

    fn pv(source: serde_json::Value) -> PersistentVolume {
        let mut spec = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                              "storageClassName": "hexagone.ns.wp"});
        for (k, v) in source.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({"metadata": {"name": "pv"}, "spec": spec})).unwrap()
    }

    #[test]
    fn a_volume_is_qualified_by_its_driver_and_the_attributes_that_locate_it() {
        let p = policy();
        let judged = |source| judge(&pv(source), &p);
        assert_eq!(judged(json!({"hostPath": {"path": "/srv/x"}})), None);
        assert_eq!(judged(json!({"local": {"path": "/mnt/x"}})), None);
        assert_eq!(
            judged(json!({"csi": {"driver": "csi.interieur.gouv.fr", "volumeHandle": "h"}})),
            None
        );
        let nfs = |server: &str| {
            json!({"csi": {"driver": "nfs.csi.k8s.io", "volumeHandle": "h",
                           "volumeAttributes": {"server": server, "share": "/exports", "subDir": "pvc-1"}}})
        };
        assert_eq!(judged(nfs("nfs.paris.interieur.gouv.fr")), None);
        assert_eq!(
            judged(nfs("nfs.example.us")).as_deref(),
            Some(
                "of CSI driver nfs.csi.k8s.io has attributes the policy does not qualify: server nfs.example.us, qualified as nfs.paris.interieur.gouv.fr"
            )
        );
        assert_eq!(
            judged(json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "h"}})).as_deref(),
            Some("is of CSI driver ebs.csi.aws.com, which the policy does not qualify")
        );
        assert_eq!(
            judged(json!({"nfs": {"server": "nfs.example.us", "path": "/"}})).as_deref(),
            Some("is a nfs volume, not of a storage the policy qualifies (a CSI driver it lists)")
        );
    }
}
