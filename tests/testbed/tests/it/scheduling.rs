//! A Deployment with a required node affinity lands only on the matching fake nodes, and its
//! pods run (kwok plays their kubelet).

use std::collections::BTreeMap;

use hexagone_testbed::FakeNode;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::util;

const ZONE: &str = "test.hexagone.invalid/zone";

#[tokio::test]
async fn required_node_affinity_places_pods_on_matching_fake_nodes_only() -> anyhow::Result<()> {
    let _serial = util::serial().await;
    let bed = util::start().await?;
    let nodes = [
        FakeNode::new("fr-1")
            .label(ZONE, "fr")
            .internal_ip("10.10.0.1".parse()?)
            .external_ip("192.0.2.10".parse()?),
        FakeNode::new("fr-2")
            .label(ZONE, "fr")
            .internal_ip("10.10.0.2".parse()?),
        FakeNode::new("us-1")
            .label(ZONE, "us")
            .internal_ip("10.20.0.1".parse()?)
            .capacity("cpu", "64")
            .capacity("memory", "512Gi")
            .capacity("pods", "200"),
        // No InternalIP: kwok would invent one, the test bed keeps the declared list.
        FakeNode::new("edge-1")
            .label(ZONE, "edge")
            .external_ip("198.51.100.7".parse()?),
    ];
    bed.add_nodes(&nodes).await?;

    // The declared addresses and capacity survive kwok taking the nodes over.
    let node_api: Api<Node> = Api::all(bed.client());
    for fake in &nodes {
        let status = node_api.get(&fake.name).await?.status.unwrap_or_default();
        assert_eq!(
            status.addresses.unwrap_or_default(),
            fake.status_addresses(),
            "addresses of {}",
            fake.name
        );
    }
    let us1 = node_api.get("us-1").await?;
    let capacity = us1.status.and_then(|s| s.capacity).unwrap_or_default();
    assert_eq!(capacity.get("cpu").map(|q| q.0.as_str()), Some("64"));

    let replicas = 6;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "default" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "affinity": { "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{ "matchExpressions": [
                                { "key": ZONE, "operator": "In", "values": ["fr"] }
                            ]}]
                        }
                    }},
                    "containers": [{ "name": "web", "image": "example.invalid/web:1" }]
                }
            }
        }
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(bed.client(), "default");
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;

    let pods: Api<Pod> = Api::namespaced(bed.client(), "default");
    let placed = util::eventually("all web pods Running", || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .map_err(|e| e.to_string())?;
            let mut placed: BTreeMap<String, String> = BTreeMap::new();
            for pod in &list.items {
                let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
                if let (Some("Running"), Some(node)) = (phase.as_deref(), node) {
                    placed.insert(pod.metadata.name.clone().unwrap_or_default(), node);
                }
            }
            if placed.len() == replicas {
                Ok(placed)
            } else {
                Err(format!(
                    "{} of {replicas} Running among {} pods",
                    placed.len(),
                    list.items.len()
                ))
            }
        }
    })
    .await?;

    for (pod, node) in &placed {
        assert!(
            node == "fr-1" || node == "fr-2",
            "pod {pod} was placed on {node}, outside the required zone"
        );
    }
    // The Deployment controller saw them too: the status comes from the real controllers.
    let status = deployments.get("web").await?.status.unwrap_or_default();
    let ready = util::eventually("deployment web reports all replicas ready", || {
        let deployments = deployments.clone();
        async move {
            let status = deployments
                .get("web")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            match status.ready_replicas {
                Some(n) if n == replicas as i32 => Ok(n),
                other => Err(format!("readyReplicas {other:?}")),
            }
        }
    })
    .await?;
    assert_eq!(ready, 6, "initial status was {status:?}");
    Ok(())
}
