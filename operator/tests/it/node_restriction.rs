//! The attested label holds against the node itself: with a kubelet's identity
//! (`system:node:NAME` in `system:nodes`) against the real apiserver running NodeRestriction and
//! RBAC, a node may change its own topology labels and addresses but not the attested label, may
//! not write attestations, and no change it can make turns it compliant. Only the security
//! officer role writes attestations; the operator cannot.

use hexagone_platform::ATTESTED_COUNTRY_LABEL;
use hexagone_platform::k8s::LocalityPolicyResource;
use hexagone_testbed::FakeNode;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::util::{
    self, OFFICERS, OPERATOR_USER, Operator, attestation, create_attestation, eventually, policy,
    status_of,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_make_itself_compliant() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    // A node in Amsterdam on a network the policy does not accept, and its neighbour.
    bed.add_nodes(&[
        FakeNode::new("hostile").external_ip("5.9.0.1".parse()?),
        FakeNode::new("neighbour").external_ip("51.38.1.1".parse()?),
    ])
    .await?;
    Api::<LocalityPolicyResource>::all(admin.clone())
        .create(
            &PostParams::default(),
            &policy("dr", "france-diffusion-restreinte"),
        )
        .await?;
    let _operator = Operator::start(&bed).await?;

    let kubelet = bed.kubelet_client("hostile").await?;
    let nodes = Api::<Node>::all(kubelet.clone());
    let pp = PatchParams::default();

    // Allowed: its own topology labels (the kubelet sets them) and its own addresses.
    nodes
        .patch(
            "hostile",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {
                "topology.kubernetes.io/region": "gra",
                "topology.kubernetes.io/zone": "gra"
            }}})),
        )
        .await?;
    nodes
        .patch_status(
            "hostile",
            &pp,
            &Patch::Strategic(json!({"status": {"addresses": [
                {"type": "ExternalIP", "address": "51.38.9.9"},
                {"type": "Hostname", "address": "hostile"}
            ]}})),
        )
        .await?;
    let n = Api::<Node>::all(admin.clone()).get("hostile").await?;
    assert_eq!(
        n.labels()
            .get("topology.kubernetes.io/region")
            .map(String::as_str),
        Some("gra")
    );

    // Refused by NodeRestriction: the attested label, on itself.
    let err = nodes
        .patch(
            "hostile",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {ATTESTED_COUNTRY_LABEL: "FR"}}})),
        )
        .await
        .expect_err("a kubelet may not set a node-restriction.kubernetes.io/ label");
    assert_eq!(status_of(&err), 403, "{err}");
    assert!(
        err.to_string().contains("node-restriction.kubernetes.io"),
        "{err}"
    );
    // Refused likewise: the eligibility label Workplace pods require.
    let eligible = hexagone_platform::workplace::eligible_label("dr").unwrap();
    let err = nodes
        .patch(
            "hostile",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {eligible.as_str(): "true"}}})),
        )
        .await
        .expect_err("a kubelet may not make itself eligible");
    assert_eq!(status_of(&err), 403, "{err}");
    assert!(
        err.to_string().contains("node-restriction.kubernetes.io"),
        "{err}"
    );
    // Refused likewise: the attested zone, which alone lets its zone label place volumes.
    let err = nodes
        .patch(
            "hostile",
            &pp,
            &Patch::Merge(
                json!({"metadata": {"labels": {hexagone_platform::labels::ATTESTED_ZONE_LABEL: "fr-par-1"}}}),
            ),
        )
        .await
        .expect_err("a kubelet may not attest its own zone");
    assert_eq!(status_of(&err), 403, "{err}");
    // Refused: another node's labels (Node authorizer / NodeRestriction).
    let err = nodes
        .patch(
            "neighbour",
            &pp,
            &Patch::Merge(
                json!({"metadata": {"labels": {"topology.kubernetes.io/region": "us-east-1"}}}),
            ),
        )
        .await
        .expect_err("a kubelet may not modify another node");
    assert_eq!(status_of(&err), 403, "{err}");
    // Refused by RBAC: attesting itself.
    let err = create_attestation(
        &kubelet,
        &attestation("hostile", "FR", "2030-01-01T00:00:00Z"),
    )
    .await
    .expect_err("a kubelet may not write attestations");
    assert_eq!(status_of(&err), 403, "{err}");

    // With everything it may change set to French values, it is still not compliant, and the
    // operator does not give it the label.
    let admin2 = admin.clone();
    eventually("hostile judged on its new claims", || {
        let admin = admin2.clone();
        async move {
            let p = Api::<LocalityPolicyResource>::all(admin)
                .get("dr")
                .await
                .map_err(|e| e.to_string())?;
            let s = p.status.ok_or("no status")?;
            let h = s
                .nodes
                .iter()
                .find(|n| n.name == "hostile")
                .ok_or("not judged")?;
            if h.evidence
                .iter()
                .any(|e| e.contains("address 51.38.9.9 is in FR"))
            {
                Ok(h.clone())
            } else {
                Err(format!("{:?}", h.evidence))
            }
        }
    })
    .await
    .map(|h| {
        assert_eq!(
            (h.verdict.as_str(), h.eligible),
            ("violation", false),
            "{h:?}"
        );
        assert!(
            h.reasons
                .iter()
                .any(|r| r.contains("the policy requires the attestation")),
            "{h:?}"
        );
    })?;
    let n = Api::<Node>::all(admin.clone()).get("hostile").await?;
    assert_eq!(n.labels().get(ATTESTED_COUNTRY_LABEL), None);
    assert_eq!(n.labels().get(&eligible), None);
    // A careless admin makes it eligible by hand: the operator takes the label back.
    Api::<Node>::all(admin.clone())
        .patch(
            "hostile",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {eligible.as_str(): "true"}}})),
        )
        .await?;
    eventually("the hand-set eligibility label removed", || {
        let admin = admin.clone();
        let eligible = eligible.clone();
        async move {
            let n = Api::<Node>::all(admin)
                .get("hostile")
                .await
                .map_err(|e| e.to_string())?;
            match n.labels().get(&eligible) {
                None => Ok(()),
                Some(v) => Err(format!("still {v}")),
            }
        }
    })
    .await?;

    // Only the security officer role writes attestations: not the operator, not a policy admin.
    let operator_identity = bed.client_as(OPERATOR_USER, None).await?;
    let err = create_attestation(
        &operator_identity,
        &attestation("hostile", "FR", "2030-01-01T00:00:00Z"),
    )
    .await
    .expect_err("the operator may not write attestations");
    assert_eq!(status_of(&err), 403, "{err}");
    // The operator may create credentials but never read a Secret, anywhere.
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::all(operator_identity.clone());
    let err = secrets
        .list(&Default::default())
        .await
        .expect_err("the operator may not list Secrets");
    assert_eq!(status_of(&err), 403, "{err}");
    let err = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        operator_identity.clone(),
        "kube-system",
    )
    .get("any")
    .await
    .expect_err("the operator may not read a Secret");
    assert_eq!(status_of(&err), 403, "{err}");
    let ops = bed.client_as("bob", Some("ops")).await?;
    let err = create_attestation(&ops, &attestation("hostile", "FR", "2030-01-01T00:00:00Z"))
        .await
        .expect_err("an unbound user may not write attestations");
    assert_eq!(status_of(&err), 403, "{err}");
    let officer = bed.client_as("alice", Some(OFFICERS)).await?;
    create_attestation(
        &officer,
        &attestation("neighbour", "FR", "2030-01-01T00:00:00Z"),
    )
    .await?;
    // The operator's own identity may label nodes (its ClusterRole), so it mirrors it.
    eventually("neighbour labelled from its attestation", || {
        let admin = admin.clone();
        async move {
            let n = Api::<Node>::all(admin)
                .get("neighbour")
                .await
                .map_err(|e| e.to_string())?;
            match n.labels().get(ATTESTED_COUNTRY_LABEL) {
                Some(v) if v == "FR" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await?;
    Ok(())
}
