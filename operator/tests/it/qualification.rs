//! The node controller on the real control plane: attested French nodes on qualified operators
//! become eligible and get the attested label; nodes without an attestation, with an expired one,
//! or whose address moves abroad lose it, get an Event and a violation; hyperscalers' French
//! regions are never eligible, whatever their labels and attestations.

use std::collections::BTreeMap;

use hexagone_platform::ATTESTED_COUNTRY_LABEL;
use hexagone_platform::k8s::{LocalityPolicyResource, NodeAttestation};
use hexagone_testbed::FakeNode;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::util::{self, OFFICERS, Operator, attestation, create_attestation, eventually, policy};

const LATER: &str = "2030-01-01T00:00:00Z";

/// name -> (verdict, eligible) from the policy status.
async fn verdicts(client: &Client, name: &str) -> Result<BTreeMap<String, (String, bool)>, String> {
    let p = Api::<LocalityPolicyResource>::all(client.clone())
        .get(name)
        .await
        .map_err(|e| e.to_string())?;
    let status = p.status.ok_or("no status yet")?;
    Ok(status
        .nodes
        .into_iter()
        .map(|n| (n.name, (n.verdict, n.eligible)))
        .collect())
}

/// A policy as the API server holds it (for `eventually`).
async fn get_policy(client: Client, name: &str) -> Result<LocalityPolicyResource, String> {
    Api::<LocalityPolicyResource>::all(client)
        .get(name)
        .await
        .map_err(|e| e.to_string())
}

async fn label(client: &Client, node: &str) -> Option<String> {
    let n = Api::<Node>::all(client.clone()).get(node).await.ok()?;
    n.labels().get(ATTESTED_COUNTRY_LABEL).cloned()
}

/// `node`'s entry in the status of policy `policy`.
async fn node_status(
    client: &Client,
    policy: &str,
    node: &str,
) -> anyhow::Result<hexagone_platform::k8s::NodeVerdict> {
    let status = Api::<LocalityPolicyResource>::all(client.clone())
        .get(policy)
        .await?
        .status
        .ok_or_else(|| anyhow::anyhow!("no status"))?;
    status
        .nodes
        .into_iter()
        .find(|n| n.name == node)
        .ok_or_else(|| anyhow::anyhow!("{node} not in the status of {policy}"))
}

/// Reasons of the Events about `node`.
async fn events(client: &Client, node: &str) -> Vec<(String, String)> {
    Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(node))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Waits until `node` has `verdict` (and eligibility) under policy `dr` and the attested label
/// `label_value`.
async fn expect_node(
    admin: &Client,
    node: &str,
    verdict: &str,
    label_value: Option<&str>,
) -> anyhow::Result<()> {
    let eligible = verdict == "compliant";
    eventually(&format!("{node} {verdict}, label {label_value:?}"), || {
        let admin = admin.clone();
        async move {
            let got = verdicts(&admin, "dr").await?;
            let l = label(&admin, node).await;
            match got.get(node) {
                Some((v, e)) if v == verdict && *e == eligible && l.as_deref() == label_value => {
                    Ok(())
                }
                other => Err(format!("{other:?} label {l:?}")),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_qualified_labelled_and_explained() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    let officer = bed.client_as("alice", Some(OFFICERS)).await?;

    // A careless admin sets the attested label by hand on a node nobody attested.
    bed.add_nodes(&[
        FakeNode::new("ovh-gra-1")
            .label("topology.kubernetes.io/region", "gra")
            .external_ip("51.38.1.1".parse()?),
        FakeNode::new("outscale-1")
            .label("topology.kubernetes.io/region", "cloudgouv-eu-west-1")
            .external_ip("46.231.144.1".parse()?),
        FakeNode::new("ovh-unattested")
            .label("topology.kubernetes.io/region", "gra")
            .external_ip("51.38.2.2".parse()?),
        FakeNode::new("ovh-expired")
            .label("topology.kubernetes.io/region", "gra")
            .external_ip("51.38.3.3".parse()?),
        FakeNode::new("ovh-rogue-label")
            .label("topology.kubernetes.io/region", "gra")
            .label(ATTESTED_COUNTRY_LABEL, "FR")
            .external_ip("51.38.4.4".parse()?),
        FakeNode::new("aws-paris")
            .label("topology.kubernetes.io/region", "eu-west-3")
            .external_ip("15.188.0.1".parse()?),
        FakeNode::new("azure-france")
            .label("topology.kubernetes.io/region", "francecentral")
            .external_ip("20.19.0.1".parse()?),
        FakeNode::new("gcp-paris")
            .label("topology.kubernetes.io/region", "europe-west9")
            .external_ip("34.155.0.1".parse()?),
    ])
    .await?;
    for node in [
        "ovh-gra-1",
        "outscale-1",
        "aws-paris",
        "azure-france",
        "gcp-paris",
    ] {
        create_attestation(&officer, &attestation(node, "FR", LATER)).await?;
    }
    create_attestation(
        &officer,
        &attestation("ovh-expired", "FR", "2026-01-01T00:00:00Z"),
    )
    .await?;
    Api::<LocalityPolicyResource>::all(admin.clone())
        .create(
            &PostParams::default(),
            &policy("dr", "france-diffusion-restreinte"),
        )
        .await?;

    let operator = Operator::start(&bed).await?;

    let expected: BTreeMap<String, (String, bool)> = [
        ("aws-paris", "violation", false),
        ("azure-france", "violation", false),
        ("gcp-paris", "violation", false),
        ("outscale-1", "compliant", true),
        ("ovh-expired", "violation", false),
        ("ovh-gra-1", "compliant", true),
        ("ovh-rogue-label", "violation", false),
        ("ovh-unattested", "violation", false),
    ]
    .into_iter()
    .map(|(n, v, e)| (n.to_owned(), (v.to_owned(), e)))
    .collect();
    eventually("every node judged under dr", || {
        let admin = admin.clone();
        let expected = expected.clone();
        async move {
            let got = verdicts(&admin, "dr").await?;
            if got == expected {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await?;
    operator.check_running()?;

    // Labels: only the eligible, attested nodes; the rogue label is gone.
    for (node, want) in [
        ("ovh-gra-1", Some("FR")),
        ("outscale-1", Some("FR")),
        ("ovh-unattested", None),
        ("ovh-expired", None),
        ("ovh-rogue-label", None),
        ("aws-paris", None),
        ("azure-france", None),
        ("gcp-paris", None),
    ] {
        let admin = admin.clone();
        eventually(&format!("label of {node}"), || {
            let admin = admin.clone();
            async move {
                let got = label(&admin, node).await;
                if got.as_deref() == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            }
        })
        .await?;
    }
    let status = Api::<LocalityPolicyResource>::all(admin.clone())
        .get("dr")
        .await?
        .status
        .unwrap();
    assert_eq!((status.eligible_nodes, status.evaluated_nodes), (2, 8));
    let aws = status.nodes.iter().find(|n| n.name == "aws-paris").unwrap();
    assert!(
        aws.headline
            .contains("controlled by Amazon.com, Inc. (US), outside the EU"),
        "{aws:?}"
    );
    let rogue = status
        .nodes
        .iter()
        .find(|n| n.name == "ovh-rogue-label")
        .unwrap();
    assert!(
        rogue
            .reasons
            .iter()
            .any(|r| r.starts_with("no NodeAttestation names the node")),
        "{rogue:?}"
    );

    // Events explain the decisions on the nodes.
    eventually("events on the nodes", || {
        let admin = admin.clone();
        async move {
            let rogue = events(&admin, "ovh-rogue-label").await;
            let gra = events(&admin, "ovh-gra-1").await;
            let ok = rogue.iter().any(|(r, n)| {
                r == "AttestedLabelRemoved" && n.contains("no NodeAttestation names the node")
            }) && rogue.iter().any(|(r, _)| r == "LocalityViolation")
                && gra.iter().any(|(r, _)| r == "AttestationMirrored")
                && gra.iter().any(|(r, n)| {
                    r == "LocalityCompliant"
                        && n.starts_with("LocalityPolicy dr: ovh-gra-1 complies")
                });
            if ok {
                Ok(())
            } else {
                Err(format!("rogue {rogue:?} gra {gra:?}"))
            }
        }
    })
    .await?;

    // Metrics.
    let (code, body) = operator.get("/metrics").await?;
    assert_eq!(code, 200);
    assert!(
        body.contains("hexagone_eligible_nodes{policy=\"dr\"} 2"),
        "{body}"
    );
    assert!(
        body.contains("hexagone_node_verdicts{policy=\"dr\",verdict=\"violation\"} 6"),
        "{body}"
    );
    // Ready once a whole pass has completed: the pass that wrote the verdicts and Events above
    // may still be labelling nodes.
    eventually("the operator ready", || async {
        match operator.get("/readyz").await {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;

    // The attestation of outscale-1 is withdrawn: label removed, violation, Event.
    Api::<NodeAttestation>::all(officer.clone())
        .delete("outscale-1-attestation", &DeleteParams::default())
        .await?;
    expect_node(&admin, "outscale-1", "violation", None).await?;
    eventually("an Event says outscale-1 changed verdict", || {
        let admin = admin.clone();
        async move {
            let ev = events(&admin, "outscale-1").await;
            if ev.iter().any(|(r, _)| r == "LocalityViolation")
                && ev.iter().any(|(r, n)| {
                    r == "AttestedLabelRemoved" && n.contains("no NodeAttestation names the node")
                })
            {
                Ok(())
            } else {
                Err(format!("{ev:?}"))
            }
        }
    })
    .await?;

    // ovh-gra-1's kubelet reports an address abroad (54.36.0.9 geolocates to PL): the
    // attestation no longer agrees with the evidence, the label goes, the node is refused.
    let kubelet = bed.kubelet_client("ovh-gra-1").await?;
    Api::<Node>::all(kubelet)
        .patch_status(
            "ovh-gra-1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"addresses": [
                {"type": "ExternalIP", "address": "54.36.0.9"},
                {"type": "Hostname", "address": "ovh-gra-1"}
            ]}})),
        )
        .await?;
    expect_node(&admin, "ovh-gra-1", "violation", None).await?;
    let s = Api::<LocalityPolicyResource>::all(admin.clone())
        .get("dr")
        .await?
        .status
        .unwrap();
    let gra = s.nodes.iter().find(|n| n.name == "ovh-gra-1").unwrap();
    assert!(
        gra.headline.contains("address 54.36.0.9 is in PL"),
        "{gra:?}"
    );
    assert_eq!(s.eligible_nodes, 0);

    // Another attested node's kubelet moves it onto a US-controlled network (AWS Paris, located
    // in FR): the attestation still says FR, the address is still in FR, but the label goes.
    bed.add_nodes(&[FakeNode::new("ovh-to-aws")
        .label("topology.kubernetes.io/region", "gra")
        .external_ip("51.38.1.6".parse()?)])
        .await?;
    create_attestation(&officer, &attestation("ovh-to-aws", "FR", LATER)).await?;
    expect_node(&admin, "ovh-to-aws", "compliant", Some("FR")).await?;
    Api::<Node>::all(bed.kubelet_client("ovh-to-aws").await?)
        .patch_status(
            "ovh-to-aws",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"addresses": [
                {"type": "ExternalIP", "address": "15.188.0.2"},
                {"type": "Hostname", "address": "ovh-to-aws"}
            ]}})),
        )
        .await?;
    eventually("ovh-to-aws refused on a US-controlled network", || {
        let admin = admin.clone();
        async move {
            let got = verdicts(&admin, "dr").await?;
            let l = label(&admin, "ovh-to-aws").await;
            let ev = events(&admin, "ovh-to-aws").await;
            let removed = ev.iter().any(|(r, n)| {
                r == "AttestedLabelRemoved" && n.contains("controlled by Amazon.com, Inc. (US)")
            });
            match got.get("ovh-to-aws") {
                Some((v, false)) if v == "violation" && l.is_none() && removed => Ok(()),
                other => Err(format!("{other:?} label {l:?} events {ev:?}")),
            }
        }
    })
    .await?;

    // An attestation that expires while the operator runs: eligible, then not, without any
    // other change in the cluster (the operator schedules a pass at the expiry). A minute of
    // validity leaves a loaded machine time to see it valid first.
    bed.add_nodes(&[FakeNode::new("ovh-short")
        .label("topology.kubernetes.io/region", "gra")
        .external_ip("51.38.5.5".parse()?)])
        .await?;
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
    let until = until.format(&time::format_description::well_known::Rfc3339)?;
    create_attestation(&officer, &attestation("ovh-short", "FR", &until)).await?;
    expect_node(&admin, "ovh-short", "compliant", Some("FR")).await?;
    expect_node(&admin, "ovh-short", "violation", None).await?;
    operator.check_running()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_is_reported_not_applied() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    // The CRD schema refuses what it can express (an unknown field, a quorum of 5)...
    // (sent untyped: the Rust type cannot even hold a quorum of 5)
    let mut bad = serde_json::to_value(policy("bad", "france-standard"))?;
    bad["spec"]["quorum"] = json!(5);
    let dynamic = Api::<kube::api::DynamicObject>::all_with(
        admin.clone(),
        &kube::api::ApiResource::erase::<LocalityPolicyResource>(&()),
    );
    let err = dynamic
        .create(&PostParams::default(), &serde_json::from_value(bad)?)
        .await
        .expect_err("quorum 5 refused by the schema");
    assert_eq!(util::status_of(&err), 422, "{err}");
    assert!(err.to_string().contains("spec.quorum"), "{err}");

    // ...and the operator reports the cross-field rules the schema cannot.
    let mut spec = policy("odd", "france-on-premises");
    spec.spec.required_sources.clear();
    Api::<LocalityPolicyResource>::all(admin.clone())
        .create(&PostParams::default(), &spec)
        .await?;
    let _operator = Operator::start(&bed).await?;
    eventually("the invalid policy's status says why", || {
        let admin = admin.clone();
        async move {
            let p = get_policy(admin, "odd").await?;
            match p.status.and_then(|s| s.error) {
                Some(e) if e.contains("networkOperator.allowPrivateAddresses") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await?;

    // Its rules fixed, the error goes: a merge patch of the status as it serializes (no
    // `error` field) kept the old one, and every Workplace naming the policy stayed refused.
    let fixed = policy("odd", "france-on-premises");
    Api::<LocalityPolicyResource>::all(admin.clone())
        .patch(
            "odd",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"requiredSources": fixed.spec.required_sources}})),
        )
        .await?;
    eventually("the fixed policy's error gone", || {
        let admin = admin.clone();
        async move {
            let p = get_policy(admin, "odd").await?;
            let generation = p.metadata.generation;
            match p.status {
                Some(s) if s.observed_generation == generation && s.error.is_none() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await?;
    Ok(())
}

/// A policy requiring latency: a node qualifies once a vantage point the policy declares has
/// measured it near Paris (a LatencyMeasurement the vantage's identity writes), and loses it
/// when a new measurement bounds it only to 30 ms; the status says why. Ops cannot write a
/// measurement; one from a vantage the policy does not declare counts for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_measurements_qualify_a_node_when_the_policy_requires_them() -> anyhow::Result<()> {
    use hexagone_platform::RoundTrips;
    use hexagone_platform::k8s::LatencyMeasurement;
    use hexagone_platform::latency::Measurement;

    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    let officer = bed.client_as("alice", Some(OFFICERS)).await?;
    // The vantage's measuring component, bound to the hexagone-vantage role; ops, bound to the
    // viewer role.
    let rbac = |user: &str, role: &str| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{user}-{role}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        })
    };
    let bindings = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(admin.clone());
    for (user, role) in [
        ("vantage-paris", "hexagone-vantage"),
        ("bob-ops", "hexagone-policy-viewer"),
    ] {
        bindings
            .create(
                &PostParams::default(),
                &serde_json::from_value(rbac(user, role))?,
            )
            .await?;
    }
    let vantage = bed.client_as("vantage-paris", None).await?;
    let ops = bed.client_as("bob-ops", None).await?;

    bed.add_nodes(&[FakeNode::new("ovh-gra-1")
        .label("topology.kubernetes.io/region", "gra")
        .external_ip("51.38.1.1".parse()?)])
        .await?;
    create_attestation(&officer, &attestation("ovh-gra-1", "FR", LATER)).await?;
    let mut p = policy("dr", "france-diffusion-restreinte");
    p.spec
        .required_sources
        .push(hexagone_platform::LocationSource::Latency);
    p.spec.quorum = hexagone_platform::Quorum::new(4).unwrap();
    p.spec.vantage_points = vec![hexagone_platform::VantagePoint {
        name: "paris-1".into(),
        site: "Ministry data centre, Paris".into(),
        latitude: 48.8566,
        longitude: 2.3522,
        operated_by: "ministry SOC".into(),
        attested_by: "RSSI, visit report PV-2026-114".into(),
    }];
    Api::<LocalityPolicyResource>::all(officer.clone())
        .create(&PostParams::default(), &p)
        .await?;
    let operator = Operator::start(&bed).await?;
    expect_node(&admin, "ovh-gra-1", "violation", Some("FR")).await?;

    let measurement = |name: &str, vantage: &str, rtt_us: u32| {
        LatencyMeasurement::new(
            name,
            Measurement {
                address: "51.38.1.1".parse().unwrap(),
                port: 10250,
                measured_at: "2026-12-06T10:00:00.000Z".into(),
                round_trips: RoundTrips::new(vantage, 48.8566, 2.3522, vec![rtt_us + 20, rtt_us])
                    .unwrap(),
            },
        )
    };
    // Ops cannot write one (the API server refuses: 403).
    let refused = Api::<LatencyMeasurement>::all(ops.clone())
        .create(
            &PostParams::default(),
            &measurement("forged", "paris-1", 100),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(e) if e.code == 403),
        "{refused}"
    );
    // A vantage the policy does not declare counts for nothing.
    let measurements = Api::<LatencyMeasurement>::all(vantage.clone());
    measurements
        .create(&PostParams::default(), &measurement("rogue", "rogue", 100))
        .await?;
    // The declared vantage measures 0.4 ms: within 60 km of Paris.
    measurements
        .create(
            &PostParams::default(),
            &measurement("paris-gra-1", "paris-1", 400),
        )
        .await?;
    expect_node(&admin, "ovh-gra-1", "compliant", Some("FR")).await?;
    let node = node_status(&admin, "dr", "ovh-gra-1").await?;
    // One latency evidence for the address: the declared vantage's disk lies in France; the
    // undeclared one is named and not counted.
    assert!(
        node.evidence.iter().any(|e| e.contains("in 0.400 ms at best from vantage paris-1")
            && e.contains("within 60 km of it")
            && e.contains(": that area lies in FR, an allowed country (not counted: vantage rogue is not declared by the policy, so its site is not attested)")),
        "{node:?}"
    );
    // A new measurement: 30 ms. Not near Paris any more: the node loses its eligibility.
    measurements
        .patch(
            "paris-gra-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"roundTrips": {"rttUs": [30_000], "minRttUs": 30_000, "boundKm": 4497}}})),
        )
        .await?;
    expect_node(&admin, "ovh-gra-1", "violation", Some("FR")).await?;
    let node = node_status(&admin, "dr", "ovh-gra-1").await?;
    assert!(
        node.reasons.iter().any(|r| r
            == "the policy requires the latency to place the node in an allowed country, and it does not"),
        "{node:?}"
    );
    assert!(
        events(&admin, "ovh-gra-1")
            .await
            .iter()
            .any(|(reason, note)| reason == "LocalityViolation"
                && note.contains("LocalityPolicy dr")),
        "no violation Event"
    );
    operator.check_running()?;
    Ok(())
}
