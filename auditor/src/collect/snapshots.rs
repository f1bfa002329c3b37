//! Where each ready VolumeSnapshot (`snapshot.storage.k8s.io/v1`) is, from the cluster's
//! objects: pure functions, no client. The kinds are defined here, reduced to the fields the
//! auditor reads (the CSI snapshot CRDs are a cluster add-on, not part of `k8s_openapi`).
//!
//! No field of a VolumeSnapshot or its VolumeSnapshotContent says where the snapshot's data is
//! kept. The auditor assumes the storage that holds a volume keeps its snapshots: a snapshot is
//! recorded on the node its source volume is recorded on ([`super::volumes`]), with that
//! volume's class. The source volume is the bound PersistentVolume whose CSI `volumeHandle` (and
//! driver) the content names, else the claim the snapshot was taken from. A snapshot whose
//! source volume the cluster no longer shows, or was never told (a pre-provisioned content
//! holding only a `snapshotHandle`), is not recorded.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::volumes::{Placement, STORE};
use crate::ledger::entry::{EntryError, ObjectId};

/// The API group of the snapshot kinds.
pub const GROUP: &str = "snapshot.storage.k8s.io";

/// `VolumeSnapshot.spec`: what a user asked to snapshot.
#[derive(kube::CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshot",
    namespaced,
    status = "VolumeSnapshotStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    /// The claim or pre-provisioned content it is taken from.
    #[serde(default)]
    pub source: VolumeSnapshotSource,
}

/// `VolumeSnapshot.spec.source`: exactly one of the two is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    /// The claim, in the snapshot's namespace, of a dynamically taken snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
    /// The content of a pre-provisioned snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_content_name: Option<String>,
}

/// `VolumeSnapshot.status`, as the snapshot controller sets it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// The VolumeSnapshotContent it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_snapshot_content_name: Option<String>,
    /// Whether the snapshot is cut and can be restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
}

/// `VolumeSnapshotContent.spec`: the snapshot on the storage system (cluster-scoped).
#[derive(kube::CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshotContent",
    status = "VolumeSnapshotContentStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSpec {
    /// The CSI driver holding it.
    #[serde(default)]
    pub driver: String,
    /// The volume it was taken from, or the storage system's handle of a pre-provisioned one.
    #[serde(default)]
    pub source: VolumeSnapshotContentSource,
    /// The VolumeSnapshot it is bound to.
    #[serde(default)]
    pub volume_snapshot_ref: ObjectReference,
}

/// `VolumeSnapshotContent.spec.source`: exactly one of the two is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSource {
    /// The CSI volume handle of the source volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_handle: Option<String>,
    /// The storage system's handle of a pre-provisioned snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
}

/// `VolumeSnapshotContent.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentStatus {
    /// The storage system's handle of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
    /// Whether the snapshot is cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
}

/// Whether `content` is bound to `snapshot` (both sides name each other, uid included when
/// the content gives it): a content naming another snapshot says nothing about this one.
fn bound(content: &VolumeSnapshotContent, snapshot: &VolumeSnapshot) -> bool {
    let r = &content.spec.volume_snapshot_ref;
    r.namespace == snapshot.metadata.namespace
        && r.name == snapshot.metadata.name
        && r.uid
            .as_ref()
            .is_none_or(|uid| Some(uid) == snapshot.metadata.uid.as_ref())
}

/// Every ready snapshot whose source volume has a placement in `volumes`, on that volume's
/// node and with its class, sorted by object. A violation's Event is about the snapshot.
pub fn placements<'a>(
    snapshots: impl IntoIterator<Item = &'a VolumeSnapshot>,
    contents: impl IntoIterator<Item = &'a VolumeSnapshotContent>,
    pvs: impl IntoIterator<Item = &'a PersistentVolume>,
    volumes: &[Placement],
) -> Result<Vec<Placement>, EntryError> {
    let contents: HashMap<&str, &VolumeSnapshotContent> = contents
        .into_iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c)))
        .collect();
    // (driver, volume handle) → (namespace, claim) of the bound CSI volume.
    let handles: HashMap<(&str, &str), (&str, &str)> = pvs
        .into_iter()
        .filter_map(|pv| {
            let spec = pv.spec.as_ref()?;
            let csi = spec.csi.as_ref()?;
            let claim = spec.claim_ref.as_ref()?;
            Some((
                (csi.driver.as_str(), csi.volume_handle.as_str()),
                (claim.namespace.as_deref()?, claim.name.as_deref()?),
            ))
        })
        .collect();
    let volumes: HashMap<(&str, &str), &Placement> = volumes
        .iter()
        .filter_map(|p| {
            Some((
                (
                    p.regarding.namespace.as_deref()?,
                    p.regarding.name.as_deref()?,
                ),
                p,
            ))
        })
        .collect();
    let mut out = Vec::new();
    for snapshot in snapshots {
        let (Some(ns), Some(name)) = (&snapshot.metadata.namespace, &snapshot.metadata.name) else {
            continue;
        };
        let Some(status) = snapshot
            .status
            .as_ref()
            .filter(|s| s.ready_to_use == Some(true))
        else {
            continue;
        };
        let content = status
            .bound_volume_snapshot_content_name
            .as_deref()
            .and_then(|c| contents.get(c))
            .filter(|c| bound(c, snapshot));
        let by_handle = content.and_then(|c| {
            let handle = c.spec.source.volume_handle.as_deref()?;
            handles.get(&(c.spec.driver.as_str(), handle)).copied()
        });
        let by_claim = snapshot
            .spec
            .source
            .persistent_volume_claim_name
            .as_deref()
            .map(|c| (ns.as_str(), c));
        let Some(volume) = by_handle.or(by_claim).and_then(|k| volumes.get(&k)) else {
            continue;
        };
        // Which snapshot was seen: identifiers only, stable while the snapshot exists.
        let mut h = Sha256::new();
        match content {
            Some(c) => {
                h.update(c.metadata.uid.as_deref().unwrap_or_default());
                h.update(b"\n");
                h.update(
                    c.status
                        .as_ref()
                        .and_then(|s| s.snapshot_handle.as_deref())
                        .unwrap_or_default(),
                );
            }
            None => h.update(snapshot.metadata.uid.as_deref().unwrap_or_default()),
        }
        out.push(Placement {
            object: ObjectId::new(
                STORE.to_owned(),
                volume.object.class.clone(),
                format!("snapshot/{ns}/{name}"),
            )?,
            content: h.finalize().into(),
            held: volume.held.clone(),
            regarding: ObjectReference {
                api_version: Some(format!("{GROUP}/v1")),
                kind: Some("VolumeSnapshot".to_owned()),
                namespace: Some(ns.clone()),
                name: Some(name.clone()),
                uid: snapshot.metadata.uid.clone(),
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
    use crate::collect::volumes::Held;
    use crate::ingest::ReportedNode;
    use serde_json::{from_value, json};

    fn volume(claim: &str, node: &str, class: &str) -> Placement {
        Placement {
            object: ObjectId::new(STORE.into(), class.into(), format!("volume/ns/{claim}"))
                .unwrap(),
            content: [0; 32],
            held: Held::Node(ReportedNode {
                name: node.into(),
                provider_id: None,
                labels: Default::default(),
                addresses: Vec::new(),
            }),
            regarding: ObjectReference {
                namespace: Some("ns".into()),
                name: Some(claim.into()),
                ..Default::default()
            },
        }
    }

    /// A snapshot of `claim` bound to content `c-<name>`, ready or not.
    fn snapshot(name: &str, claim: Option<&str>, ready: bool) -> VolumeSnapshot {
        from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}")},
            "spec": {"source": {"persistentVolumeClaimName": claim}},
            "status": {"boundVolumeSnapshotContentName": format!("c-{name}"), "readyToUse": ready}
        }))
        .unwrap()
    }

    /// Content `c-<snapshot>` bound to `snapshot` (in namespace `ns`), taken from `handle`.
    fn content(snapshot: &str, ns: &str, handle: Option<&str>) -> VolumeSnapshotContent {
        from_value(json!({
            "metadata": {"name": format!("c-{snapshot}"), "uid": "cu"},
            "spec": {"driver": "d", "deletionPolicy": "Delete",
                     "source": {"volumeHandle": handle},
                     "volumeSnapshotRef": {"namespace": ns, "name": snapshot}},
            "status": {"snapshotHandle": "h", "readyToUse": true}
        }))
        .unwrap()
    }

    fn csi_pv(claim: &str, handle: &str) -> PersistentVolume {
        from_value(json!({
            "metadata": {"name": format!("pv-{claim}")},
            "spec": {"csi": {"driver": "d", "volumeHandle": handle},
                     "claimRef": {"namespace": "ns", "name": claim}}
        }))
        .unwrap()
    }

    fn check(snapshots: &[VolumeSnapshot], contents: &[VolumeSnapshotContent], want: &[&str]) {
        let volumes = [volume("a", "fr", "mail"), volume("b", "de", "unknown")];
        let pvs = [csi_pv("a", "vol-a"), csi_pv("b", "vol-b")];
        let got: Vec<String> = placements(snapshots, contents, &pvs, &volumes)
            .unwrap()
            .iter()
            .map(|p| format!("{} {} {}", p.object.id, p.object.class, p.held.name()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_snapshot_is_where_its_source_volume_is() {
        // Through the claim it was taken from (no content, or a content on no CSI volume).
        check(
            &[snapshot("s", Some("a"), true)],
            &[],
            &["snapshot/ns/s mail fr"],
        );
        check(
            &[snapshot("s", Some("b"), true)],
            &[content("s", "ns", Some("hostpath-b"))],
            &["snapshot/ns/s unknown de"],
        );
        // The content's volume handle names the volume the driver copied, whatever the claim
        // of that name holds now.
        check(
            &[snapshot("s", Some("a"), true)],
            &[content("s", "ns", Some("vol-b"))],
            &["snapshot/ns/s unknown de"],
        );
        // A content bound to another snapshot is not this one's: back to the claim.
        check(
            &[snapshot("s", Some("a"), true)],
            &[content("s", "other", Some("vol-b"))],
            &["snapshot/ns/s mail fr"],
        );
        // Pre-provisioned (no claim) and its content's volume known: located.
        check(
            &[snapshot("s", None, true)],
            &[content("s", "ns", Some("vol-a"))],
            &["snapshot/ns/s mail fr"],
        );
    }

    #[test]
    fn a_snapshot_not_ready_or_from_no_known_volume_is_not_recorded() {
        check(&[snapshot("s", Some("a"), false)], &[], &[]);
        // Its claim has no placement (gone, or a volume on no node).
        check(&[snapshot("s", Some("gone"), true)], &[], &[]);
        // Pre-provisioned from a snapshot handle only: the cluster does not say where.
        check(
            &[snapshot("s", None, true)],
            &[content("s", "ns", None)],
            &[],
        );
    }

    #[test]
    fn the_recorded_content_identifies_the_snapshot_not_its_status_updates() {
        let volumes = [volume("a", "fr", "mail")];
        let digest = |c: &VolumeSnapshotContent| {
            placements(&[snapshot("s", Some("a"), true)], [c], [], &volumes).unwrap()[0].content
        };
        let mut c = content("s", "ns", None);
        let first = digest(&c);
        c.metadata.resource_version = Some("2".into());
        assert_eq!(digest(&c), first);
        c.metadata.uid = Some("other".into());
        assert_ne!(digest(&c), first);
    }
}
