//! What ops write into a Workplace that only the security officer's policy may allow, from ops'
//! side on the real control plane: images from a registry the policy does not list or not
//! pinned by digest, a storage provisioner off the policy's list, egress to the whole Internet,
//! to a range, or to an address the locality engine does not find in France. Each is refused
//! before anything is rendered, with a condition and an Event naming what and why. And what a
//! node writes itself: an eligible node's kubelet relabelling its zone does not move the
//! StorageClass's topology there.

use hexagone_platform::k8s::{LocalityPolicyResource, NodeAttestation};
use hexagone_platform::labels::ATTESTED_ZONE_LABEL;
use hexagone_platform::render::storage_class_name;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::util::{self, OFFICERS, Operator, TEST_PROVISIONER, eventually};
use crate::workplace::{NS, cluster, create_workplace, events_about, expect_message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_storage_and_egress_are_the_policys_to_allow() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    let officer = Api::<LocalityPolicyResource>::all(bed.client_as("alice", Some(OFFICERS)).await?);
    let set_policy = |spec: serde_json::Value| {
        let officer = officer.clone();
        async move {
            officer
                .patch(
                    "dr",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": spec})),
                )
                .await
        }
    };
    set_policy(
        json!({"images": {"registries": ["registry.interieur.gouv.fr/hexagone"],
                                  "requireDigest": true}}),
    )
    .await?;
    let _operator = Operator::start(&bed).await?;
    let workplaces = create_workplace(&admin, "intranet").await?;
    let ops_edit = |spec: serde_json::Value| {
        let workplaces = workplaces.clone();
        async move {
            workplaces
                .patch(
                    "intranet",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": spec})),
                )
                .await
        }
    };
    let refused = |reason: &'static str, parts: Vec<String>| {
        let admin = admin.clone();
        async move {
            let p: Vec<&str> = parts.iter().map(String::as_str).collect();
            expect_message(&admin, "intranet", "Ready", "False", reason, &p).await?;
            eventually(&format!("an Event {reason}"), || {
                let admin = admin.clone();
                let parts = parts.clone();
                async move {
                    let events = events_about(&admin, "intranet").await;
                    events
                        .iter()
                        .find(|e| {
                            e.reason.as_deref() == Some(reason)
                                && e.type_.as_deref() == Some("Warning")
                                && parts.iter().all(|p| {
                                    e.note.as_deref().is_some_and(|n| n.contains(p.as_str()))
                                })
                        })
                        .map(|_| ())
                        .ok_or_else(|| {
                            let seen: Vec<_> = events
                                .iter()
                                .map(|e| (&e.type_, &e.reason, &e.note))
                                .collect();
                            format!("{seen:?}")
                        })
                }
            })
            .await
        }
    };

    // Images from the projects' registries, which the policy does not list.
    refused(
        "ImageNotAllowed",
        vec![
            "LocalityPolicy dr: ".into(),
            "image docker.io/exoplatform/exo-community:7.1.0@sha256:".into(),
            " is not from a registry the policy allows (registry.interieur.gouv.fr/hexagone)"
                .into(),
        ],
    )
    .await?;
    let rendered = Api::<StatefulSet>::namespaced(admin.clone(), NS)
        .list(&ListParams::default())
        .await?;
    assert!(rendered.items.is_empty(), "rendered with refused images");
    // The site's mirror, but tags, not digests: the refusal says how to pin them.
    ops_edit(json!({"registry": "registry.interieur.gouv.fr/hexagone", "components": null}))
        .await?;
    refused(
        "ImageNotAllowed",
        vec![
            "LocalityPolicy dr: pin each image as spec.components.<name>.image: repo:tag@sha256:<digest>, the digest your registry serves; exo: image registry.interieur.gouv.fr/hexagone/exoplatform/exo-community:7.1.0 is not pinned by digest, which the policy requires".into(),
        ],
    )
    .await?;

    // A provisioner the policy does not list.
    set_policy(json!({"images": null, "provisioners": [{"driver": "csi.interieur.gouv.fr"}]}))
        .await?;
    refused(
        "ProvisionerNotAllowed",
        vec![format!(
            "storage provisioner {TEST_PROVISIONER} is not one the policy allows (csi.interieur.gouv.fr)"
        )],
    )
    .await?;
    // The driver the policy qualifies, with a server of ops' choosing: the parameters decide
    // where the data is written as much as the driver does.
    let qualified = json!({"server": "nfs.paris.interieur.gouv.fr", "share": "/exports"});
    set_policy(json!({"provisioners": [{"driver": TEST_PROVISIONER, "parameters": qualified}]}))
        .await?;
    refused(
        "ProvisionerNotAllowed",
        vec![format!(
            "storage provisioner {TEST_PROVISIONER} is allowed only with the parameters the \
             policy qualifies: server missing, qualified as nfs.paris.interieur.gouv.fr; share \
             missing, qualified as /exports"
        )],
    )
    .await?;
    ops_edit(json!({"storage": {"provisioner": TEST_PROVISIONER,
                                "parameters": {"server": "nfs.example.us", "share": "/exports"}}}))
    .await?;
    refused(
        "ProvisionerNotAllowed",
        vec!["server: nfs.example.us, qualified as nfs.paris.interieur.gouv.fr".into()],
    )
    .await?;
    ops_edit(json!({"storage": {"provisioner": TEST_PROVISIONER, "parameters": qualified}}))
        .await?;
    // The refusal lifts (the next one is the egress below): the StorageClass carries exactly
    // the qualified parameters.
    let classes = Api::<StorageClass>::all(admin.clone());
    eventually("the StorageClass with the qualified parameters", || {
        let classes = classes.clone();
        let qualified = qualified.clone();
        async move {
            let sc = classes
                .get(&storage_class_name(NS, "intranet"))
                .await
                .map_err(|e| e.to_string())?;
            let p = serde_json::to_value(&sc.parameters).map_err(|e| e.to_string())?;
            (p == qualified).then_some(()).ok_or_else(|| format!("{p}"))
        }
    })
    .await?;

    // Egress: everywhere, a range, an address abroad.
    ops_edit(json!({"egress": [{"name": "anywhere", "cidr": "0.0.0.0/0"}]})).await?;
    refused(
        "EgressNotAllowed",
        vec!["egress \"anywhere\" (0.0.0.0/0) is every address there is".into()],
    )
    .await?;
    ops_edit(json!({"egress": [{"name": "backups", "cidr": "51.68.0.0/16", "ports": [443]}]}))
        .await?;
    refused(
        "EgressNotAllowed",
        vec!["egress \"backups\" (51.68.0.0/16) is a range".into()],
    )
    .await?;
    ops_edit(json!({"egress": [{"name": "resolver", "cidr": "8.8.8.8/32", "ports": [53]}]}))
        .await?;
    refused(
        "EgressNotAllowed",
        vec!["egress \"resolver\" (8.8.8.8/32): ".into(), "US".into()],
    )
    .await?;

    // Without them, the Workplace goes on.
    ops_edit(json!({"egress": null})).await?;
    eventually("intranet no longer refused", || {
        let workplaces = workplaces.clone();
        async move {
            let wp = workplaces
                .get("intranet")
                .await
                .map_err(|e| e.to_string())?;
            match crate::workplace::condition(&wp, "Ready") {
                Some((_, r, _)) if !r.ends_with("NotAllowed") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await?;

    // An eligible node's kubelet may set its own zone label (NodeRestriction allows it): a
    // zone the officer's regions table does not place in France stays out of the
    // StorageClass's topology, and a Warning says which and why. The node stays eligible (its
    // region label and the other sources still place it in France).
    let topology = || {
        let classes = classes.clone();
        async move {
            let sc = classes
                .get(&storage_class_name(NS, "intranet"))
                .await
                .map_err(|e| e.to_string())?;
            let t = serde_json::to_value(&sc.allowed_topologies).map_err(|e| e.to_string())?;
            Ok::<_, String>(t[0]["matchLabelExpressions"][0]["values"].clone())
        }
    };
    eventually("the StorageClass in both French zones", || async {
        match topology().await? {
            v if v == json!(["fr-par-1", "fr-par-2"]) => Ok(()),
            other => Err(format!("{other}")),
        }
    })
    .await?;
    // The kubelet relabels its node; the zone stays out, a Warning says why.
    let relabelled = |zone: &'static str, reason: &'static str, note: &'static str| {
        let bed = &bed;
        let admin = admin.clone();
        let workplaces = workplaces.clone();
        let topology = &topology;
        async move {
            Api::<Node>::all(bed.kubelet_client("ovh-par1-b").await?)
                .patch(
                    "ovh-par1-b",
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}}),
                    ),
                )
                .await?;
            eventually(&format!("a {reason} warning"), || async {
                let events = events_about(&admin, "intranet").await;
                events
                    .iter()
                    .find(|e| {
                        e.reason.as_deref() == Some(reason)
                            && e.note.as_deref().is_some_and(|n| n.contains(note))
                    })
                    .map(|_| ())
                    .ok_or_else(|| {
                        let seen: Vec<_> = events.iter().map(|e| (&e.reason, &e.note)).collect();
                        format!("{seen:?}")
                    })
            })
            .await?;
            assert_eq!(
                topology().await.map_err(anyhow::Error::msg)?,
                json!(["fr-par-1", "fr-par-2"])
            );
            let wp = workplaces.get("intranet").await?;
            assert_eq!(wp.status.unwrap().eligible_zones, ["fr-par-1", "fr-par-2"]);
            anyhow::Ok(())
        }
    };
    relabelled(
        "us-east-1a",
        "ZoneNotInPolicy",
        "volumes are not placed in us-east-1a (ovh-par1-b): this zone is not in LocalityPolicy dr's regions table",
    )
    .await?;

    // The operator mirrored the zone the officer attests where no kubelet can write.
    let attested = Api::<Node>::all(admin.clone()).get("ovh-par1-b").await?;
    assert_eq!(
        attested
            .labels()
            .get(ATTESTED_ZONE_LABEL)
            .map(String::as_str),
        Some("fr-par-1")
    );
    // The same kubelet names a zone the table does place in France, another provider's (AWS
    // Paris, under US law): its attestation names fr-par-1, so the label places nothing.
    relabelled(
        "eu-west-3",
        "ZoneNotAttested",
        "do not place volumes: eu-west-3 (ovh-par1-b: its NodeAttestation names zone fr-par-1)",
    )
    .await?;

    // The officer rewrites the attestation of both fr-par-2 nodes without a zone: the mirrored
    // label goes, with an Event on each node, and under this policy fr-par-2 places no volume.
    let attestations = Api::<NodeAttestation>::all(bed.client_as("alice", Some(OFFICERS)).await?);
    for node in ["outscale-par2-a", "ovh-par2-b"] {
        attestations
            .patch(
                &format!("{node}-attestation"),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"zone": null}})),
            )
            .await?;
    }
    eventually("fr-par-2 out of the StorageClass", || async {
        match topology().await? {
            v if v == json!(["fr-par-1"]) => Ok(()),
            other => Err(format!("{other}")),
        }
    })
    .await?;
    let nodes = Api::<Node>::all(admin.clone());
    let node = nodes.get("ovh-par2-b").await?;
    assert_eq!(node.labels().get(ATTESTED_ZONE_LABEL), None);
    eventually("an AttestedZoneRemoved Event on ovh-par2-b", || async {
        let events = Api::<k8s_openapi::api::events::v1::Event>::all(admin.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        events
            .iter()
            .any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("ovh-par2-b")
                    && e.reason.as_deref() == Some("AttestedZoneRemoved")
            })
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    })
    .await?;
    Ok(())
}

/// What binds without the StorageClass the operator judged: a PersistentVolume made by hand for
/// a Workplace's claim (it binds before any provisioning), here an in-tree NFS share abroad.
/// Under a policy that qualifies its storage, the Workplace is not Sovereign while a claim of
/// its namespace is on it, the condition and a Warning Event naming the claim, the volume and
/// why; nothing is evicted (moving a pod does not move its volume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_made_by_hand_outside_the_qualified_storage_is_not_sovereign() -> anyhow::Result<()>
{
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    officer_sets(
        &bed,
        json!({"images": null, "provisioners": [{"driver": TEST_PROVISIONER}]}),
    )
    .await?;
    // Before the Workplace: ready for the claim its PostgreSQL StatefulSet will make.
    let pv: k8s_openapi::api::core::v1::PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pv-abroad"},
        "spec": {
            "capacity": {"storage": "100Ti"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class_name(NS, "intranet"),
            "persistentVolumeReclaimPolicy": "Retain",
            "nfs": {"server": "nfs.example.us", "path": "/exports"},
            "claimRef": {"namespace": NS, "name": "data-postgresql-0"}
        }
    }))?;
    Api::all(admin.clone())
        .create(&kube::api::PostParams::default(), &pv)
        .await?;
    let _operator = Operator::start(&bed).await?;
    create_workplace(&admin, "intranet").await?;
    let claims =
        Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(admin.clone(), NS);
    eventually("data-postgresql-0 bound to pv-abroad", || {
        let claims = claims.clone();
        async move {
            let c = claims
                .get("data-postgresql-0")
                .await
                .map_err(|e| e.to_string())?;
            let name = c.spec.as_ref().and_then(|s| s.volume_name.clone());
            (name.as_deref() == Some("pv-abroad"))
                .then_some(())
                .ok_or_else(|| format!("{:?} {:?}", name, c.status))
        }
    })
    .await?;
    let why = "claim data-postgresql-0: volume pv-abroad is a nfs volume, not of a storage the \
               policy qualifies (a CSI driver it lists)";
    expect_message(
        &admin,
        "intranet",
        "Sovereign",
        "False",
        "VolumesOnUnqualifiedStorage",
        &[
            "1 claims are on volumes of a storage LocalityPolicy dr does not qualify",
            why,
        ],
    )
    .await?;
    eventually("a SovereigntyViolation Warning naming the volume", || {
        let admin = admin.clone();
        async move {
            let events = events_about(&admin, "intranet").await;
            events
                .iter()
                .find(|e| {
                    e.reason.as_deref() == Some("SovereigntyViolation")
                        && e.note.as_deref().is_some_and(|n| n.contains(why))
                })
                .map(|_| ())
                .ok_or_else(|| {
                    let seen: Vec<_> = events.iter().map(|e| (&e.reason, &e.note)).collect();
                    format!("{seen:?}")
                })
        }
    })
    .await?;
    Ok(())
}

/// A StorageClass made beforehand under the Workplace's name and labels (by whoever may create
/// StorageClasses), provisioning where the policy allows but deleting volumes with their claims,
/// binding them at once and mounting them its own way: the operator does not adopt it as it is,
/// it replaces it with the rendered class, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_class_made_beforehand_under_the_workplaces_name_is_replaced_whole()
-> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    officer_sets(&bed, json!({"images": null})).await?;
    let name = storage_class_name(NS, "intranet");
    let planted: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": name,
                     "labels": hexagone_platform::render::storage_class_labels(NS, "intranet")},
        "provisioner": TEST_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "mountOptions": ["soft"],
        "allowedTopologies": [{"matchLabelExpressions": [
            {"key": "topology.kubernetes.io/zone", "values": ["fr-par-1", "fr-par-2"]}]}]
    }))?;
    let classes = Api::<StorageClass>::all(admin.clone());
    classes
        .create(&kube::api::PostParams::default(), &planted)
        .await?;
    let _operator = Operator::start(&bed).await?;
    create_workplace(&admin, "intranet").await?;
    eventually("the rendered StorageClass in its place", || {
        let (classes, name) = (classes.clone(), name.clone());
        async move {
            let sc = classes.get(&name).await.map_err(|e| e.to_string())?;
            let seen = (
                sc.reclaim_policy.clone(),
                sc.volume_binding_mode.clone(),
                sc.mount_options.clone(),
            );
            (seen
                == (
                    Some("Retain".to_owned()),
                    Some("WaitForFirstConsumer".to_owned()),
                    None,
                ))
                .then_some(())
                .ok_or_else(|| format!("{seen:?}"))
        }
    })
    .await?;
    Ok(())
}

/// The security officer merges `spec` into LocalityPolicy `dr`.
async fn officer_sets(
    bed: &hexagone_testbed::ControlPlane,
    spec: serde_json::Value,
) -> anyhow::Result<()> {
    Api::<LocalityPolicyResource>::all(bed.client_as("alice", Some(OFFICERS)).await?)
        .patch(
            "dr",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await?;
    Ok(())
}
