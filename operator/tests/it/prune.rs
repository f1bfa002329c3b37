//! What the operator stopped rendering goes, and only that, on the real control plane: a
//! Workplace rendered by an earlier version keeps a component-wide `Deployment/jitsi-jvb` and
//! `Service/jitsi-jvb` (the bridges are now `jitsi-jvb-<i>`); the operator deletes them and says
//! so in an Event, while a tenant's own objects of the same kinds, and an object labelled like the
//! operator's without the Workplace's owner reference, stay. Disabling a component removes its
//! objects. (A deleted rendered object coming back is
//! `authority.rs::every_pod_counts_paused_or_not_and_a_deleted_object_comes_back`.)

use hexagone_platform::workplace::Workplace;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::{Value, json};

use crate::util::{self, Operator, eventually};
use crate::workplace::{NS, cluster, create_workplace, events_about};

/// The labels the operator puts on what it renders for Workplace `intranet`.
fn rendered_labels(component: &str) -> Value {
    json!({"app.kubernetes.io/instance": "intranet", "app.kubernetes.io/name": component,
           "app.kubernetes.io/part-of": "hexagone-workplace",
           "app.kubernetes.io/managed-by": "hexagone-operator"})
}

/// A restricted single-container Deployment `name` with `metadata` merged in.
fn deployment(name: &str, metadata: Value) -> anyhow::Result<Deployment> {
    let mut meta = json!({"name": name});
    for (k, v) in metadata.as_object().cloned().unwrap_or_default() {
        meta[k] = v;
    }
    Ok(serde_json::from_value(json!({
        "metadata": meta,
        "spec": {"replicas": 0, "selector": {"matchLabels": {"stale": name}},
                 "template": {"metadata": {"labels": {"stale": name}}, "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "example.invalid/app:1",
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}}}]}}}
    }))?)
}

fn service(name: &str, metadata: Value) -> anyhow::Result<Service> {
    let mut meta = json!({"name": name});
    for (k, v) in metadata.as_object().cloned().unwrap_or_default() {
        meta[k] = v;
    }
    Ok(serde_json::from_value(json!({
        "metadata": meta,
        "spec": {"selector": {"stale": name}, "ports": [{"name": "media", "port": 10000,
                                                         "protocol": "UDP"}]}
    }))?)
}

/// Whether each `(kind, name)` exists in [`NS`].
async fn present(client: &Client, kind: &str, name: &str) -> Result<bool, String> {
    macro_rules! get {
        ($t:ty) => {
            Api::<$t>::namespaced(client.clone(), NS)
                .get_opt(name)
                .await
                .map(|o| o.is_some())
                .map_err(|e| e.to_string())
        };
    }
    match kind {
        "Deployment" => get!(Deployment),
        "Service" => get!(Service),
        "ConfigMap" => get!(ConfigMap),
        "PodDisruptionBudget" => get!(PodDisruptionBudget),
        "NetworkPolicy" => get!(NetworkPolicy),
        other => Err(format!("kind {other} not checked here")),
    }
}

/// Waits until each of `gone` is absent and a `Pruned` Event about `intranet` names each.
async fn pruned(client: &Client, gone: &[(&str, &str)]) -> anyhow::Result<()> {
    eventually(&format!("{gone:?} removed and reported"), || async move {
        let mut left = Vec::new();
        for (kind, name) in gone {
            if present(client, kind, name).await? {
                left.push(format!("{kind} {name}"));
            }
        }
        let notes: Vec<String> = events_about(client, "intranet")
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Pruned"))
            .filter_map(|e| e.note)
            .collect();
        let unreported: Vec<String> = gone
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .filter(|o| {
                !notes.iter().any(|n| {
                    n.starts_with("removed what the Workplace no longer renders: ")
                        && n.split(": ")
                            .nth(1)
                            .is_some_and(|l| l.split(", ").any(|x| x == o))
                })
            })
            .collect();
        if left.is_empty() && unreported.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "still there: {left:?}; not in a Pruned Event: {unreported:?} (Events {notes:?})"
            ))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_workplace_no_longer_renders_is_removed_and_nothing_else() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    let workplaces = create_workplace(&admin, "intranet").await?;
    let wp: Workplace = workplaces.get("intranet").await?;
    let owner = wp.controller_owner_ref(&()).expect("a named Workplace");

    // What the earlier version rendered: one Deployment and one Service for every videobridge,
    // labelled and owned as the operator does.
    let stale = json!({"labels": rendered_labels("jitsi-jvb"), "ownerReferences": [owner]});
    let deployments = Api::<Deployment>::namespaced(admin.clone(), NS);
    let services = Api::<Service>::namespaced(admin.clone(), NS);
    let pp = PostParams::default();
    deployments
        .create(&pp, &deployment("jitsi-jvb", stale.clone())?)
        .await?;
    services.create(&pp, &service("jitsi-jvb", stale)?).await?;
    // A tenant's own objects of the same kinds (no labels), and a ConfigMap labelled like the
    // operator's without the Workplace's owner reference: not the operator's to remove.
    deployments
        .create(&pp, &deployment("notes", json!({}))?)
        .await?;
    services.create(&pp, &service("notes", json!({}))?).await?;
    let lookalike: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "jitsi-jvb-files", "labels": rendered_labels("jitsi-jvb")},
        "data": {"k": "v"}
    }))?;
    Api::<ConfigMap>::namespaced(admin.clone(), NS)
        .create(&pp, &lookalike)
        .await?;

    let _operator = Operator::start(&bed).await?;
    pruned(
        &admin,
        &[("Deployment", "jitsi-jvb"), ("Service", "jitsi-jvb")],
    )
    .await?;
    // What the operator renders now is there, and no component-wide videobridge Service.
    assert!(present(&admin, "Deployment", "jitsi-jvb-0").await.unwrap());
    assert!(!present(&admin, "Service", "jitsi-jvb").await.unwrap());
    for (kind, name) in [
        ("Deployment", "notes"),
        ("Service", "notes"),
        ("ConfigMap", "jitsi-jvb-files"),
    ] {
        assert!(
            present(&admin, kind, name).await.unwrap(),
            "{kind} {name}, not the operator's, was removed"
        );
    }

    // Disabling a component removes its objects (its credential Secret stays: the operator
    // cannot list Secrets).
    let coturn = [
        ("Deployment", "coturn"),
        ("Service", "coturn"),
        ("PodDisruptionBudget", "coturn"),
        ("NetworkPolicy", "coturn-ingress"),
    ];
    for (kind, name) in coturn {
        assert!(present(&admin, kind, name).await.unwrap(), "{kind} {name}");
    }
    workplaces
        .patch(
            "intranet",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"components": {"coturn": {"enabled": false}}}})),
        )
        .await?;
    pruned(&admin, &coturn).await?;
    for (kind, name) in [("Deployment", "notes"), ("Service", "notes")] {
        assert!(present(&admin, kind, name).await.unwrap(), "{kind} {name}");
    }
    assert!(present(&admin, "Deployment", "jitsi-jvb-0").await.unwrap());
    Ok(())
}
