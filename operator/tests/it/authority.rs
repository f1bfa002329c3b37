//! Who decides sovereignty, from the attacker's side on the real control plane: ops with exactly
//! the documented grant cannot write a LocalityPolicy, and a Workplace may use only a policy a
//! security officer allowed for its namespace; a tenant's own pod abroad, a paused Workplace, a
//! deleted NetworkPolicy and a sidecar patched into a workload hide nothing: the status says
//! where pods run, the deleted object comes back, the sidecar is removed; a StorageClass planted
//! under a Workplace's name is neither replaced nor deleted.

use hexagone_platform::k8s::LocalityPolicyResource;
use hexagone_platform::render::storage_class_name;
use hexagone_platform::workplace::Workplace;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::util::{self, OFFICERS, Operator, Provisioner, eventually, policy};
use crate::workplace::{
    NS, cluster, condition, create_workplace, delete_and_wait, events_about, expect_condition,
    onboard_namespace, placement, withdrawn_and_only_reported, workplace as workplace_spec,
};

/// A namespace the `dr` policy does not protect.
const OTHER_NS: &str = "rh";
/// The group ops are in, bound to `hexagone-policy-viewer` as the operations guide says.
const OPS: &str = "ops";

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(e)) if e.code == 403 => e.message,
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_security_officers_write_policies_and_choose_the_namespaces_they_protect()
-> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    let officer = bed.client_as("alice", Some(OFFICERS)).await?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "ops-policy-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "hexagone-policy-viewer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": OPS}]
    }))?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await?;

    // Ops read the policy, and can neither weaken it, nor copy it for their own namespace.
    let ops = Api::<LocalityPolicyResource>::all(bed.client_as("bob", Some(OPS)).await?);
    let dr = ops.get("dr").await?;
    assert_eq!(dr.spec.namespaces, [NS]);
    let m = forbidden(
        ops.patch(
            "dr",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "audit", "namespaces": [NS, OTHER_NS]}})),
        )
        .await,
    );
    assert!(m.contains("bob"), "{m}");
    let mut copy = policy("dr-copy", "france-diffusion-restreinte");
    copy.spec.namespaces = vec![OTHER_NS.into()];
    forbidden(ops.create(&PostParams::default(), &copy).await);
    forbidden(ops.delete("dr", &DeleteParams::default()).await);
    let dr = ops.get("dr").await?;
    assert_eq!(
        (dr.spec.mode, dr.spec.namespaces.clone()),
        (hexagone_platform::Mode::Enforce, vec![NS.to_owned()])
    );

    // A Workplace in a namespace the policy does not list is refused, and nothing is rendered.
    onboard_namespace(&admin, OTHER_NS).await?;
    let _operator = Operator::start(&bed).await?;
    let others = Api::<Workplace>::namespaced(admin.clone(), OTHER_NS);
    others
        .create(&PostParams::default(), &workplace_spec("paie", json!({}))?)
        .await?;
    let refused = |want_refused: bool| {
        let others = others.clone();
        async move {
            let wp = others.get("paie").await.map_err(|e| e.to_string())?;
            let ready = condition(&wp, "Ready");
            let sovereign = condition(&wp, "Sovereign");
            let is_refused = ready.as_ref().is_some_and(|r| r.1 == "PolicyNotAllowed");
            match (want_refused, is_refused) {
                (true, true) => Ok((ready, sovereign)),
                (false, false) if ready.is_some() => Ok((ready, sovereign)),
                _ => Err(format!("Ready {ready:?}, Sovereign {sovereign:?}")),
            }
        }
    };
    let (ready, sovereign) = eventually("paie refused: PolicyNotAllowed", || refused(true)).await?;
    let (status, _, m) = ready.unwrap();
    assert_eq!(status, "False");
    assert!(
        m.contains("does not list namespace rh") && m.contains("security officer"),
        "{m}"
    );
    assert_eq!(
        sovereign.map(|s| (s.0, s.1)),
        Some(("False".into(), "PolicyNotAllowed".into()))
    );
    let rendered = Api::<StatefulSet>::namespaced(admin.clone(), OTHER_NS)
        .list(&ListParams::default())
        .await?;
    assert!(rendered.items.is_empty(), "rendered in {OTHER_NS}");

    // The officer allows the namespace: the refusal goes.
    Api::<LocalityPolicyResource>::all(officer)
        .patch(
            "dr",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"namespaces": [NS, OTHER_NS]}})),
        )
        .await?;
    eventually("paie no longer refused", || refused(false)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pod_counts_paused_or_not_and_a_deleted_object_comes_back() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    let _operator = Operator::start(&bed).await?;
    let _provisioner = Provisioner::start(admin.clone());
    let workplaces = create_workplace(&admin, "intranet").await?;
    expect_condition(&admin, "intranet", "Ready", "True", None).await?;
    expect_condition(&admin, "intranet", "Sovereign", "True", None).await?;

    // A deleted NetworkPolicy is recreated at once, not at the next resync (five minutes).
    let policies = Api::<NetworkPolicy>::namespaced(admin.clone(), NS);
    let victim = policies
        .list(&ListParams::default().labels("app.kubernetes.io/instance=intranet"))
        .await?
        .items
        .into_iter()
        .next()
        .expect("the workplace renders NetworkPolicies");
    let (name, uid) = (victim.name_any(), victim.uid());
    policies.delete(&name, &DeleteParams::default()).await?;
    let deleted = std::time::Instant::now();
    eventually(&format!("NetworkPolicy {name} recreated"), || {
        let policies = policies.clone();
        let (name, uid) = (name.clone(), uid.clone());
        async move {
            match policies.get_opt(&name).await.map_err(|e| e.to_string())? {
                Some(p) if p.uid() != uid => Ok(()),
                other => Err(format!("{:?}", other.map(|p| p.uid()))),
            }
        }
    })
    .await?;
    assert!(deleted.elapsed() < std::time::Duration::from_secs(60));

    // A namespace admin's own pod, which the operator did not render, placed on the German node.
    let tenant = crate::workplace::namespace_admin(&bed, "carol").await?;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "side-job"},
        "spec": {
            "nodeName": "hetzner-de",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "copy", "image": "example.invalid/copy:1",
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}}}]
        }
    }))?;
    Api::<Pod>::namespaced(tenant.clone(), NS)
        .create(&PostParams::default(), &pod)
        .await?;
    eventually("the tenant's pod reported and evicted", || {
        let admin = admin.clone();
        async move {
            let events = events_about(&admin, "intranet").await;
            let n: Vec<String> = events.into_iter().filter_map(|e| e.note).collect();
            let reported = n.iter().any(|n| {
                n.contains("pod side-job (not rendered by the operator) on node hetzner-de")
            });
            let evicted = n.iter().any(|n| n.contains("evicted pod side-job"));
            if reported && evicted {
                Ok(())
            } else {
                Err(format!("{n:?}"))
            }
        }
    })
    .await?;
    expect_condition(&admin, "intranet", "Sovereign", "True", None).await?;

    // A sidecar (and a host volume) the tenant applies into one of the operator's Deployments
    // under a field manager of its own, and a Java agent slipped into its container's
    // environment: server-side apply would leave them; they are removed.
    let deployments = Api::<Deployment>::namespaced(tenant, NS);
    let sidecar = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "keycloak"},
        "spec": {"template": {"spec": {
            "containers": [{"name": "exfil", "image": "example.invalid/exfil:1"},
                           {"name": "keycloak", "env": [{"name": "JAVA_TOOL_OPTIONS",
                                                         "value": "-javaagent:/tmp/x.jar"}]}],
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}}}
    });
    deployments
        .patch(
            "keycloak",
            &PatchParams::apply("tenant-tooling"),
            &Patch::Apply(&sidecar),
        )
        .await?;
    eventually("the sidecar removed and reported", || {
        let (admin, deployments) = (admin.clone(), deployments.clone());
        async move {
            let d = deployments
                .get("keycloak")
                .await
                .map_err(|e| e.to_string())?;
            let pod = d.spec.and_then(|s| s.template.spec).unwrap_or_default();
            let containers: Vec<String> = pod.containers.iter().map(|c| c.name.clone()).collect();
            let agent = pod.containers.iter().any(|c| {
                c.env
                    .iter()
                    .flatten()
                    .any(|e| e.name == "JAVA_TOOL_OPTIONS")
            });
            let volumes: Vec<String> = pod
                .volumes
                .unwrap_or_default()
                .iter()
                .map(|v| v.name.clone())
                .collect();
            let events = events_about(&admin, "intranet").await;
            let reported = events
                .iter()
                .filter_map(|e| e.note.as_deref())
                .any(|n| {
                    n.contains(
                        "Deployment keycloak: removed container exfil, volume host, \
                         variable JAVA_TOOL_OPTIONS in container keycloak",
                    )
                });
            if !containers.contains(&"exfil".to_owned())
                && !volumes.contains(&"host".to_owned())
                && !agent
                && reported
            {
                Ok(())
            } else {
                Err(format!(
                    "containers {containers:?}, volumes {volumes:?}, agent {agent}, reported {reported}"
                ))
            }
        }
    })
    .await?;

    // Paused: nothing moves, but Sovereign still says where the pods run now.
    workplaces
        .patch(
            "intranet",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await?;
    expect_condition(&admin, "intranet", "Progressing", "False", Some("Paused")).await?;
    let placed = placement(&admin).await?;
    let lapsed = ["ovh-par1-a", "ovh-par1-b", "outscale-par2-a", "ovh-par2-b"]
        .into_iter()
        .max_by_key(|n| placed.get(*n).map_or(0, Vec::len))
        .unwrap();
    let officer = bed.client_as("alice", Some(OFFICERS)).await?;
    withdrawn_and_only_reported(&admin, &officer, lapsed, "paused: reported only").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_storage_class_of_the_same_name_is_never_replaced_nor_deleted() -> anyhow::Result<()>
{
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    // Planted before the Workplace exists, under the name it will need, pointing at a foreign
    // NFS server: whoever may create StorageClasses (another Workplace's author, ops).
    let name = storage_class_name(NS, "intranet");
    let planted: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": "intranet"}},
        "provisioner": "nfs.csi.k8s.io",
        "parameters": {"server": "nfs.example.com", "share": "/exports"},
        "volumeBindingMode": "WaitForFirstConsumer"
    }))?;
    let classes = Api::<StorageClass>::all(admin.clone());
    classes.create(&PostParams::default(), &planted).await?;
    let _operator = Operator::start(&bed).await?;
    let workplaces = create_workplace(&admin, "intranet").await?;
    let (_, _, m) = expect_condition(
        &admin,
        "intranet",
        "Ready",
        "False",
        Some("StorageClassTaken"),
    )
    .await?;
    assert!(
        m.contains(&name) && m.contains("not this Workplace's"),
        "{m}"
    );
    let rendered = Api::<StatefulSet>::namespaced(admin.clone(), NS)
        .list(&ListParams::default())
        .await?;
    assert!(rendered.items.is_empty(), "rendered beside a foreign class");
    // Deleting the Workplace leaves the class as it was.
    delete_and_wait(&workplaces, "intranet").await?;
    let after = classes.get(&name).await?;
    assert_eq!(after.provisioner, "nfs.csi.k8s.io");
    assert_eq!(after.uid(), classes.get(&name).await?.uid());
    assert_eq!(
        after
            .parameters
            .unwrap_or_default()
            .get("server")
            .map(String::as_str),
        Some("nfs.example.com")
    );
    Ok(())
}
