//! The Workplace controller on the real control plane: a 5,000-user workplace under Diffusion
//! Restreinte runs only on attested French nodes of qualified operators, in two zones; a node
//! that loses its attestation has its pods evicted and moved (enforce) or only reported (audit);
//! deletion cleans up; bad specs are refused at apply or explained in a condition.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hexagone_platform::k8s::{LocalityPolicyResource, NodeAttestation};
use hexagone_platform::render::storage_class_name;
use hexagone_platform::workplace::{Workplace, WorkplaceSpec};
use hexagone_testbed::ControlPlane;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::util::{
    self, OFFICERS, Operator, Provisioner, TEST_PROVISIONER, attestation, create_attestation,
    eventually, pinned_components, policy,
};

const LATER: &str = "2030-01-01T00:00:00Z";
/// How long a PodDisruptionBudget may remember an eviction. The disruption controller keys the
/// pods an eviction disrupted by name and forgets one when no pod of that name is left, or two
/// minutes after the eviction (`DeletionTimeout` in kube-controller-manager's disruption
/// controller). A StatefulSet pod recreated under the same name before the controller saw the
/// old one go stays "about to be deleted" for those two minutes: its budget allows no disruption
/// until then, and the next eviction in that component is refused, rightly.
const DISRUPTION_REMEMBERED: Duration = Duration::from_secs(120);
pub const NS: &str = "ministere";
const ELIGIBLE: [&str; 4] = hexagone_testbed::sovereign::FRENCH;

/// French nodes in two zones (attested), a German one, a US one, and AWS Paris (attested FR,
/// under US control); the `dr` policy; a namespace enforcing the restricted Pod Security
/// Standard.
pub async fn cluster(bed: &ControlPlane) -> anyhow::Result<()> {
    let admin = bed.client();
    let officer = bed.client_as("alice", Some(OFFICERS)).await?;
    bed.add_nodes(&hexagone_testbed::sovereign::nodes()).await?;
    for node in ELIGIBLE.iter().chain(&["aws-paris"]) {
        create_attestation(&officer, &attestation(node, "FR", LATER)).await?;
    }
    create_attestation(&officer, &attestation("hetzner-de", "DE", LATER)).await?;
    let mut dr = policy("dr", "france-diffusion-restreinte");
    dr.spec.namespaces = vec![NS.into()];
    Api::<LocalityPolicyResource>::all(officer.clone())
        .create(&PostParams::default(), &dr)
        .await?;
    onboard_namespace(&admin, NS).await
}

/// Creates namespace `name` as onboarding does: restricted Pod Security, and the label the
/// operator's admission guard requires before the operator may write there.
pub async fn onboard_namespace(admin: &Client, name: &str) -> anyhow::Result<()> {
    let (key, value) = hexagone_operator::ONBOARDED_NAMESPACE_LABEL;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted", key: value}}}))?;
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Creates Workplace `name` in [`NS`] with the default spec; its API.
/// A client for `user`, the admin of the workplace's namespace (the built-in `admin` role bound
/// there): a tenant who may create pods, Jobs and most else in it.
pub async fn namespace_admin(bed: &ControlPlane, user: &str) -> anyhow::Result<Client> {
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{user}-admin"), "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))?;
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(bed.client(), NS)
        .create(&PostParams::default(), &binding)
        .await?;
    Ok(bed.client_as(user, None).await?)
}

pub async fn create_workplace(admin: &Client, name: &str) -> anyhow::Result<Api<Workplace>> {
    let workplaces = Api::<Workplace>::namespaced(admin.clone(), NS);
    workplaces
        .create(&PostParams::default(), &workplace(name, json!({}))?)
        .await?;
    Ok(workplaces)
}

/// A Workplace `name` with the default spec, every image pinned (the shipped strict policies
/// require it: `util::pinned_components`), and `extra`'s keys over it. `extra`'s `components`
/// are merged into the pins, component by component; `"components": null` leaves every image
/// as the catalog has it, unpinned.
pub fn workplace(name: &str, extra: serde_json::Value) -> anyhow::Result<Workplace> {
    let mut spec = json!({
        "policy": "dr",
        "profile": "users5000",
        "domain": "intranet.ministere.example.fr",
        "storage": {"provisioner": TEST_PROVISIONER},
        "components": pinned_components(None)
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        match (k.as_str(), v) {
            ("components", serde_json::Value::Null) => {
                spec.as_object_mut().map(|s| s.remove("components"));
            }
            ("components", serde_json::Value::Object(overrides)) => {
                for (c, o) in overrides {
                    let slot = &mut spec["components"][&c];
                    if slot.is_null() {
                        *slot = json!({});
                    }
                    for (field, value) in o.as_object().cloned().unwrap_or_default() {
                        slot[field] = value;
                    }
                }
            }
            (_, v) => spec[k] = v,
        }
    }
    let spec: WorkplaceSpec = serde_json::from_value(spec)?;
    Ok(Workplace::new(name, spec))
}

pub fn condition(wp: &Workplace, type_: &str) -> Option<(String, String, String)> {
    wp.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    })
}

/// Waits until condition `type_` of the Workplace has `status` (and `reason`, when given).
pub async fn expect_condition(
    client: &Client,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> anyhow::Result<(String, String, String)> {
    eventually(&format!("{name}: {type_}={status} {reason:?}"), || {
        let api = Api::<Workplace>::namespaced(client.clone(), NS);
        async move {
            let wp = api.get(name).await.map_err(|e| e.to_string())?;
            match condition(&wp, type_) {
                Some(c) if c.0 == status && reason.is_none_or(|r| r == c.1) => Ok(c),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
}

/// Waits until condition `type_` of the Workplace has `status` and `reason` and a message that
/// contains each of `parts`: a message can change while status and reason stay (a policy judged
/// or a node qualified after the first write).
pub async fn expect_message(
    client: &Client,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
    parts: &[&str],
) -> anyhow::Result<()> {
    eventually(
        &format!("{name}: {type_}={status} {reason} saying {parts:?}"),
        || {
            let api = Api::<Workplace>::namespaced(client.clone(), NS);
            async move {
                let wp = api.get(name).await.map_err(|e| e.to_string())?;
                match condition(&wp, type_) {
                    Some((s, r, m))
                        if s == status && r == reason && parts.iter().all(|p| m.contains(p)) =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await
}

/// Deletes a Workplace and waits until it is gone (its finalizer has run).
pub async fn delete_and_wait(workplaces: &Api<Workplace>, name: &str) -> anyhow::Result<()> {
    workplaces.delete(name, &DeleteParams::default()).await?;
    eventually(&format!("{name} gone"), || async move {
        match workplaces.get_opt(name).await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|o| o.is_some()))),
        }
    })
    .await
}

/// node -> pods of the workplace placed there.
pub async fn placement(client: &Client) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("app.kubernetes.io/instance=intranet"))
        .await?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in pods.items {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| "<pending>".into());
        out.entry(node).or_default().push(p.name_any());
    }
    Ok(out)
}

/// The value of counter `name` on the operator's metrics endpoint.
pub async fn counter(operator: &Operator, name: &str) -> anyhow::Result<f64> {
    let (_, body) = operator.get("/metrics").await?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {name} in the metrics: {body}"))
}

/// The Events in [`NS`] about object `regarding`.
pub async fn events_about(client: &Client, regarding: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
        .collect()
}

async fn event_reasons(client: &Client, regarding: &str) -> BTreeSet<String> {
    let events = events_about(client, regarding).await;
    events.into_iter().filter_map(|e| e.reason).collect()
}

/// Withdraws `node`'s attestation while nothing may move (audit mode, a paused Workplace):
/// Sovereign=False names the node and says `why` nothing moves, and its pods stay.
pub async fn withdrawn_and_only_reported(
    admin: &Client,
    officer: &Client,
    node: &str,
    why: &str,
) -> anyhow::Result<()> {
    let before = placement(admin).await?.get(node).cloned();
    assert!(before.is_some(), "no workplace pod on {node}");
    Api::<NodeAttestation>::all(officer.clone())
        .delete(&format!("{node}-attestation"), &DeleteParams::default())
        .await?;
    let (_, _, m) = expect_condition(
        admin,
        "intranet",
        "Sovereign",
        "False",
        Some("PodsOnIneligibleNodes"),
    )
    .await?;
    assert!(m.contains(why), "{m}");
    assert!(m.contains(&format!("on node {node}")), "{m}");
    assert_eq!(
        placement(admin).await?.get(node),
        before.as_ref(),
        "pods moved ({why})"
    );
    Ok(())
}

/// `Ok` when every PodDisruptionBudget of the workplace is up to date and allows one disruption;
/// else which budgets do not, and the evictions each still remembers.
async fn budgets_at_rest(client: &Client) -> Result<(), String> {
    let budgets = Api::<PodDisruptionBudget>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("app.kubernetes.io/instance=intranet"))
        .await
        .map_err(|e| e.to_string())?;
    if budgets.items.is_empty() {
        return Err("no PodDisruptionBudget".into());
    }
    let busy: Vec<String> = budgets
        .items
        .iter()
        .filter_map(|b| {
            let s = b.status.clone().unwrap_or_default();
            let at_rest =
                s.observed_generation == b.metadata.generation && s.disruptions_allowed >= 1;
            (!at_rest).then(|| {
                format!(
                    "{}: allows {}, remembers {:?}",
                    b.name_any(),
                    s.disruptions_allowed,
                    s.disrupted_pods
                        .unwrap_or_default()
                        .keys()
                        .collect::<Vec<_>>()
                )
            })
        })
        .collect();
    if busy.is_empty() {
        Ok(())
    } else {
        Err(busy.join("; "))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workplace_runs_on_eligible_french_nodes_and_is_moved_when_one_lapses()
-> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    let operator = Operator::start(&bed).await?;
    let _provisioner = Provisioner::start(admin.clone());
    let workplaces = Api::<Workplace>::namespaced(admin.clone(), NS);
    workplaces
        .create(&PostParams::default(), &workplace("intranet", json!({}))?)
        .await?;

    // Ready and Sovereign, every pod on one of the four eligible nodes, in both zones. The
    // Workplace may be Ready before the qualifier has labelled the last French node; a node
    // qualified later updates the message, so the test waits for the final one.
    eventually("Ready on the four eligible nodes", || async {
        let wp = workplaces
            .get("intranet")
            .await
            .map_err(|e| e.to_string())?;
        match condition(&wp, "Ready") {
            Some((s, r, m))
                if s == "True"
                    && r == "AllComponentsReady"
                    && m.contains(
                        "all 16 components are ready on 4 eligible nodes in fr-par-1, fr-par-2",
                    ) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    expect_condition(&admin, "intranet", "Sovereign", "True", None).await?;
    operator.check_running()?;
    let wp = workplaces.get("intranet").await?;
    let status = wp.status.clone().unwrap();
    assert_eq!(status.eligible_nodes, 4);
    assert_eq!(status.eligible_zones, ["fr-par-1", "fr-par-2"]);
    assert_eq!(status.components.len(), 16);
    assert!(status.components.iter().all(|c| c.ready));
    assert_eq!(
        condition(&wp, "Degraded").map(|c| c.0).as_deref(),
        Some("False")
    );
    let placed = placement(&admin).await?;
    let pods: usize = placed.values().map(Vec::len).sum();
    assert!(pods >= 15, "{placed:?}");
    for node in placed.keys() {
        assert!(
            ELIGIBLE.contains(&node.as_str()),
            "pod on {node}: {placed:?}"
        );
    }
    // The StorageClass is limited to the eligible zones, and every claim is bound there.
    let sc = Api::<StorageClass>::all(admin.clone())
        .get(&storage_class_name(NS, "intranet"))
        .await?;
    assert_eq!(
        sc.volume_binding_mode.as_deref(),
        Some("WaitForFirstConsumer")
    );
    let topo = serde_json::to_value(&sc.allowed_topologies)?;
    assert_eq!(
        topo[0]["matchLabelExpressions"][0]["values"],
        json!(["fr-par-1", "fr-par-2"])
    );
    // A pod replaced (a node drained, a crash) reconciles the Workplace, which reads readiness
    // and placement again but applies nothing: nothing it applied changed. Before, every
    // reconcile applied every object, and a large workplace's pods kept the API server busy.
    let before = (
        counter(&operator, "hexagone_workplace_reconciles_total").await?,
        counter(&operator, "hexagone_workplace_applies_total").await?,
    );
    let pods = Api::<Pod>::namespaced(admin.clone(), NS);
    let replaced = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=intranet"))
        .await?
        .items
        .into_iter()
        .find(|p| p.owner_references().iter().any(|o| o.kind == "ReplicaSet"))
        .expect("a Deployment's pod");
    let set = replaced.owner_references()[0].uid.clone();
    let siblings = |pods: Vec<Pod>| {
        pods.into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.owner_references().iter().any(|o| o.uid == set))
            .collect::<Vec<_>>()
    };
    let replicas = siblings(pods.list(&ListParams::default()).await?.items).len();
    pods.delete(&replaced.name_any(), &DeleteParams::default())
        .await?;
    eventually("the pod replaced, and seen by the operator", || {
        let (pods, operator) = (pods.clone(), &operator);
        let (gone, siblings) = (replaced.name_any(), &siblings);
        async move {
            let now = siblings(
                pods.list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .items,
            );
            let reconciles = counter(operator, "hexagone_workplace_reconciles_total")
                .await
                .map_err(|e| e.to_string())?;
            let placed = now
                .iter()
                .all(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()));
            let back = now.len() == replicas && placed && now.iter().all(|p| p.name_any() != gone);
            if back && reconciles >= before.0 + 2.0 {
                Ok(())
            } else {
                Err(format!(
                    "{} of {replicas} pods placed: {placed}; {reconciles} reconciles",
                    now.len()
                ))
            }
        }
    })
    .await?;
    let applies = counter(&operator, "hexagone_workplace_applies_total").await?;
    // One apply may fall in: every four minutes everything is applied again.
    assert!(
        applies <= before.1 + 1.0,
        "a replaced pod applied everything again: {applies} applies, {} before",
        before.1
    );

    // Drift of a kind without a generation, its instance label removed in the same edit (the
    // operator's bookkeeping must not lose it): the ConfigMap's value and label are put back.
    let maps = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), NS);
    let map = maps
        .list(&ListParams::default().labels("app.kubernetes.io/instance=intranet"))
        .await?
        .items
        .into_iter()
        .find(|m| m.data.as_ref().is_some_and(|d| !d.is_empty()))
        .expect("a ConfigMap with data");
    let (k, v) = map.data.as_ref().unwrap().iter().next().unwrap();
    maps.patch(
        &map.name_any(),
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"metadata": {"labels": {"app.kubernetes.io/instance": null}},
                              "data": {k: "edited by hand"}}),
        ),
    )
    .await?;
    eventually("the ConfigMap's value and label put back", || {
        let (maps, name) = (maps.clone(), map.name_any());
        async move {
            let m = maps.get(&name).await.map_err(|e| e.to_string())?;
            let label = m.labels().get("app.kubernetes.io/instance").cloned();
            match m.data.as_ref().and_then(|d| d.get(k)) {
                Some(now) if now == v && label.as_deref() == Some("intranet") => Ok(()),
                other => Err(format!("{other:?}, label {label:?}")),
            }
        }
    })
    .await?;

    // An isolating NetworkPolicy opened by hand (a rule allowing everything added to one
    // rendered without rules, which server-side apply alone would keep): the rule is removed.
    let policies_np =
        Api::<k8s_openapi::api::networking::v1::NetworkPolicy>::namespaced(admin.clone(), NS);
    policies_np
        .patch(
            "workplace-isolate-namespace",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"egress": [{}]}})),
        )
        .await?;
    eventually("the isolating policy closed again", || {
        let policies_np = policies_np.clone();
        async move {
            let np = policies_np
                .get("workplace-isolate-namespace")
                .await
                .map_err(|e| e.to_string())?;
            match np.spec.and_then(|s| s.egress) {
                None => Ok(()),
                Some(rules) if rules.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await?;

    // A status written by someone else (a Workplace said Ready that is not, or the reverse) is
    // written over: the operator's own status writes start no reconcile, others' do.
    workplaces
        .patch_status(
            "intranet",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"eligibleNodes": 99}})),
        )
        .await?;
    eventually("the status written by the operator again", || {
        let workplaces = workplaces.clone();
        async move {
            let wp = workplaces
                .get("intranet")
                .await
                .map_err(|e| e.to_string())?;
            match wp.status.map(|s| s.eligible_nodes) {
                Some(4) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await?;

    // Drift: a hand edit of a StatefulSet's replicas is put back.
    let sts = Api::<StatefulSet>::namespaced(admin.clone(), NS);
    sts.patch(
        "postgresql",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 0}})),
    )
    .await?;
    eventually("postgresql replicas restored to 1", || {
        let sts = sts.clone();
        async move {
            let s = sts.get("postgresql").await.map_err(|e| e.to_string())?;
            match s.spec.and_then(|s| s.replicas) {
                Some(1) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await?;

    // An attestation withdrawn: the node loses eligibility, its pods are evicted and move to
    // the other node of the same zone (the volumes are zonal).
    let victim = ["ovh-par1-a", "ovh-par1-b"]
        .into_iter()
        .max_by_key(|n| placed.get(*n).map_or(0, Vec::len))
        .unwrap();
    assert!(
        placed.contains_key(victim),
        "no pod in fr-par-1: {placed:?}"
    );
    let officer = bed.client_as("alice", Some(OFFICERS)).await?;
    Api::<NodeAttestation>::all(officer.clone())
        .delete(&format!("{victim}-attestation"), &DeleteParams::default())
        .await?;
    eventually("the violation, then the evictions, are reported", || {
        let admin = admin.clone();
        async move {
            let r = event_reasons(&admin, "intranet").await;
            if r.contains("SovereigntyViolation") && r.contains("Evicted") {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        }
    })
    .await?;
    // Settled: every pod back on a node (an evicted pod's replacement may not exist yet, or
    // wait for the scheduler) and none on the victim, in a status written after the qualifier
    // removed the victim's eligibility label. The Workplace may stay Ready throughout, so its
    // first Ready=True can predate the withdrawal and still count 4 eligible nodes. When two
    // pods of one StatefulSet ran on the victim, the second's eviction waits until the
    // disruption controller forgets the first, recreated under its name (in one CI rehearsal
    // search-1's eviction was refused for the whole 90 s this wait used to allow).
    hexagone_testbed::wait::until(
        &format!("no workplace pod left on {victim}, Ready on 3 eligible nodes"),
        DISRUPTION_REMEMBERED + util::CONVERGE,
        || {
            let admin = admin.clone();
            let workplaces = workplaces.clone();
            async move {
                let p = placement(&admin).await.map_err(|e| e.to_string())?;
                let wp = workplaces
                    .get("intranet")
                    .await
                    .map_err(|e| e.to_string())?;
                let (ready, sovereign) = (condition(&wp, "Ready"), condition(&wp, "Sovereign"));
                let status = wp.status.unwrap_or_default();
                let replicas: u32 = status.components.iter().map(|c| c.replicas).sum();
                let placed = p.values().map(Vec::len).sum::<usize>();
                let settled = !p.contains_key(victim)
                    && !p.contains_key("<pending>")
                    && placed >= replicas as usize
                    && status.eligible_nodes == 3
                    && sovereign.as_ref().is_some_and(|s| s.0 == "True")
                    && ready.as_ref().is_some_and(|r| {
                        r.0 == "True" && r.2.contains("ready on 3 eligible nodes")
                    });
                if settled {
                    Ok(())
                } else {
                    Err(format!(
                        "pods {p:?} ({placed} of {replicas}), {} eligible, Ready {ready:?}, Sovereign {sovereign:?}",
                        status.eligible_nodes
                    ))
                }
            }
        },
    )
    .await?;

    // Every budget allows an eviction again before the next ones are asked for, so that what
    // follows measures the operator, not the disruption controller's memory of the evictions
    // above (up to two minutes for a StatefulSet pod recreated under its name).
    hexagone_testbed::wait::until(
        "every PodDisruptionBudget at rest",
        DISRUPTION_REMEMBERED + util::CONVERGE,
        || budgets_at_rest(&admin),
    )
    .await?;

    // Audit mode: a lapse is reported, nothing moves. Back to enforce: the pods move.
    let policies = Api::<LocalityPolicyResource>::all(officer.clone());
    policies
        .patch(
            "dr",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"mode": "audit"}})),
        )
        .await?;
    let placed = placement(&admin).await?;
    let second = placed
        .keys()
        .find(|n| *n == "outscale-par2-a" || *n == "ovh-par2-b")
        .cloned()
        .expect("pods in fr-par-2");
    withdrawn_and_only_reported(&admin, &officer, &second, "audit mode: reported only").await?;
    policies
        .patch(
            "dr",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"mode": "enforce"}})),
        )
        .await?;
    // Two pods of one budget may sit on that node (seaweedfs-master-0 and -2 did, once coturn
    // and the per-bridge workloads changed the spread): the second eviction waits until the
    // disruption controller forgets the first pod, recreated under its name, as above.
    hexagone_testbed::wait::until(
        &format!("pods moved off {second}"),
        DISRUPTION_REMEMBERED + util::CONVERGE,
        || {
            let admin = admin.clone();
            let second = second.clone();
            async move {
                let p = placement(&admin).await.map_err(|e| e.to_string())?;
                if p.contains_key(&second) || p.contains_key("<pending>") {
                    let budgets = budgets_at_rest(&admin).await.err().unwrap_or_default();
                    Err(format!("{p:?}; budgets: {budgets}"))
                } else {
                    Ok(())
                }
            }
        },
    )
    .await?;
    expect_condition(&admin, "intranet", "Sovereign", "True", None).await?;

    // Deletion: the finalizer removes the StorageClass; the namespaced objects follow.
    workplaces
        .delete("intranet", &DeleteParams::default())
        .await?;
    eventually("Workplace and StorageClass gone", || {
        let admin = admin.clone();
        async move {
            let wp = Api::<Workplace>::namespaced(admin.clone(), NS)
                .get_opt("intranet")
                .await
                .map_err(|e| e.to_string())?;
            let sc = Api::<StorageClass>::all(admin)
                .get_opt(&storage_class_name(NS, "intranet"))
                .await
                .map_err(|e| e.to_string())?;
            if wp.is_none() && sc.is_none() {
                Ok(())
            } else {
                Err(format!("workplace {} sc {}", wp.is_some(), sc.is_some()))
            }
        }
    })
    .await?;
    operator.check_running()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_workplaces_are_refused_with_a_clear_message_and_nothing_applied() -> anyhow::Result<()>
{
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    let raw = Api::<kube::api::DynamicObject>::namespaced_with(
        admin.clone(),
        NS,
        &kube::api::ApiResource::erase::<Workplace>(&()),
    );
    // Refused by the schema at apply time, with the field and the rule.
    for (spec, expected) in [
        (
            json!({"policy": "dr", "profile": "users5000", "domain": "intranet.example.fr",
                   "components": {"sharepoint": {"enabled": true}}}),
            "unknown component",
        ),
        (
            json!({"policy": "dr", "profile": "users7", "domain": "intranet.example.fr"}),
            "spec.profile",
        ),
        (
            json!({"policy": "dr", "profile": "users500", "domain": "not a domain"}),
            "spec.domain",
        ),
        // Egress is allowed to addresses: the relay is one.
        (
            json!({"policy": "dr", "profile": "users500", "domain": "intranet.example.fr",
                   "mail": {"relay": "smtp.example.fr"}}),
            "spec.mail.relay",
        ),
    ] {
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "hexagone.fr/v1alpha1", "kind": "Workplace",
            "metadata": {"name": "bad", "namespace": NS}, "spec": spec
        }))?;
        let err = raw
            .create(&PostParams::default(), &obj)
            .await
            .expect_err("a bad spec is refused");
        assert!(err.to_string().contains(expected), "{err}");
    }

    let operator = Operator::start(&bed).await?;
    let workplaces = Api::<Workplace>::namespaced(admin.clone(), NS);
    // An unknown policy.
    workplaces
        .create(
            &PostParams::default(),
            &workplace("nopolicy", json!({"policy": "nowhere"}))?,
        )
        .await?;
    let (_, _, m) =
        expect_condition(&admin, "nopolicy", "Ready", "False", Some("PolicyNotFound")).await?;
    assert!(m.contains("LocalityPolicy nowhere does not exist"), "{m}");
    delete_and_wait(&workplaces, "nopolicy").await?;
    // Digests required: every unpinned image named; a mail relay no egress destination lists:
    // the entry to add named; nothing applied.
    workplaces
        .create(
            &PostParams::default(),
            &workplace(
                "pinned",
                json!({"requireDigests": true, "components": null,
                       "mail": {"relay": "192.0.2.25", "port": 587}}),
            )?,
        )
        .await?;
    let (_, _, m) =
        expect_condition(&admin, "pinned", "Ready", "False", Some("InvalidSpec")).await?;
    assert!(m.contains("not pinned by digest"), "{m}");
    assert!(
        m.contains(
            "spec.mail.relay: 192.0.2.25:587 is not an egress destination of this workplace: \
             add {name: site mail relay, cidr: 192.0.2.25/32, ports: [587]} to spec.egress"
        ),
        "{m}"
    );
    assert!(
        m.contains("exo: docker.io/exoplatform/exo-community:7.1.0"),
        "{m}"
    );
    eventually("an InvalidSpec Event on the Workplace", || {
        let admin = admin.clone();
        async move {
            let r = event_reasons(&admin, "pinned").await;
            if r.contains("InvalidSpec") {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        }
    })
    .await?;
    let sts = Api::<StatefulSet>::namespaced(admin.clone(), NS)
        .list(&ListParams::default())
        .await?;
    assert!(sts.items.is_empty(), "a refused Workplace applied objects");
    // A second Workplace in the namespace is refused while the first stands.
    workplaces
        .create(&PostParams::default(), &workplace("second", json!({}))?)
        .await?;
    let (_, _, m) =
        expect_condition(&admin, "second", "Ready", "False", Some("NamespaceTaken")).await?;
    assert!(m.contains("already holds Workplace pinned"), "{m}");
    workplaces
        .delete("second", &DeleteParams::default())
        .await?;
    workplaces
        .delete("pinned", &DeleteParams::default())
        .await?;
    eventually("namespace empty", || {
        let w = workplaces.clone();
        async move {
            let l = w
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            if l.items.is_empty() {
                Ok(())
            } else {
                Err(format!("{}", l.items.len()))
            }
        }
    })
    .await?;
    // A policy no node meets (Poland only): the condition says so and names refused nodes;
    // nothing is applied, so nothing runs anywhere else.
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policies/france-diffusion-restreinte.yaml"),
    )?
    .replace(
        "allowedCountries: [FR]\nnetworkOperator",
        "allowedCountries: [PL]\nnetworkOperator",
    );
    let mut pl = hexagone_platform::LocalityPolicy::from_yaml(&text, "pl.yaml")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    pl.namespaces = vec![NS.into()];
    Api::<LocalityPolicyResource>::all(admin.clone())
        .create(
            &PostParams::default(),
            &LocalityPolicyResource::new("pl", pl),
        )
        .await?;
    workplaces
        .create(
            &PostParams::default(),
            &workplace("nowhere", json!({"policy": "pl"}))?,
        )
        .await?;
    let (_, _, m) =
        expect_condition(&admin, "nowhere", "Ready", "False", Some("NoEligibleNode")).await?;
    assert!(
        m.contains("no node is eligible under LocalityPolicy pl, so nothing runs anywhere"),
        "{m}"
    );
    // Once the policy has verdicts, the refusal names the nodes and why (the status keeps
    // following the policy after the first refusal).
    expect_message(
        &admin,
        "nowhere",
        "Ready",
        "False",
        "NoEligibleNode",
        &["so nothing runs anywhere: node "],
    )
    .await?;
    let sts = Api::<StatefulSet>::namespaced(admin.clone(), NS)
        .list(&ListParams::default())
        .await?;
    assert!(
        sts.items.is_empty(),
        "objects applied without an eligible node"
    );
    delete_and_wait(&workplaces, "nowhere").await?;

    // Beyond capacity (the 50,000-user profile, 172 CPU, with 40 video bridges instead of 25:
    // 232 CPU on four 48-CPU nodes): reported as Degraded.
    workplaces
        .create(
            &PostParams::default(),
            &workplace(
                "huge",
                json!({"profile": "users50000", "components": {"jitsi-jvb": {"replicas": 40}}}),
            )?,
        )
        .await?;
    expect_message(
        &admin,
        "huge",
        "Degraded",
        "True",
        "InsufficientCapacity",
        &["requests 231.5 CPU", "the 4 eligible nodes offer 192.0 CPU"],
    )
    .await?;
    // The pods left Pending, and why, in the Ready message.
    expect_message(
        &admin,
        "huge",
        "Ready",
        "False",
        "ComponentsNotReady",
        &[
            "waiting for ",
            "unschedulable: 0/",
            "Insufficient cpu",
            "more pods unschedulable",
        ],
    )
    .await?;
    // Paused: says so, and changes nothing.
    workplaces
        .patch(
            "huge",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"paused": true}})),
        )
        .await?;
    let (_, _, m) =
        expect_condition(&admin, "huge", "Progressing", "False", Some("Paused")).await?;
    assert!(m.contains("spec.paused is true"), "{m}");
    operator.check_running()?;
    Ok(())
}
