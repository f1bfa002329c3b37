//! The operator's own token against the cluster, on the real control plane with the shipped RBAC
//! and admission guard (`manifests/admission/operator.yaml`): every step of the escalation the
//! hostile review took (a token for a privileged ServiceAccount of `kube-system`, a workload
//! there, the auditor's Deployment, a pod with host access, a policy rewritten) is refused, by
//! RBAC or by the guard with its own words; and the guard still refuses once someone binds
//! `cluster-admin` to the operator's ServiceAccount.

use hexagone_platform::k8s::{LocalityPolicyResource, NodeAttestation};
use hexagone_platform::workplace::Workplace;
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::util::{self, OPERATOR_USER, attestation, eventually};
use crate::workplace::{NS, cluster, create_workplace};

/// The guard's name, which every refusal of its own carries.
const GUARD: &str = "hexagone-operator-guard";
/// The auditor's namespace (manifests/auditor).
const AUDIT_NS: &str = "hexagone-audit";
/// A namespace nobody onboarded for Workplaces.
const FOREIGN_NS: &str = "paie";
/// The cluster's default StorageClass, the site's (claims without a class follow it, the
/// auditor's ledger claim included).
const SITE_DEFAULT: &str = "site-default";
/// The annotation that makes a StorageClass the cluster's default.
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// A StorageClass named `name` writing to an NFS server abroad, the cluster's default or not.
fn storage_class(name: &str, default: bool) -> StorageClass {
    let annotations = if default {
        json!({DEFAULT_CLASS: "true"})
    } else {
        json!({})
    };
    object(json!({
        "metadata": {"name": name, "annotations": annotations,
                     "labels": {"app.kubernetes.io/managed-by": "hexagone-operator"}},
        "provisioner": "nfs.csi.k8s.io",
        "parameters": {"server": "nfs.abroad.example", "share": "/"}
    }))
}

/// A namespace onboarded for Workplaces that does not enforce Pod Security (whose admission would
/// refuse a pod with host access before the guard sees it).
const LAX_NS: &str = "labo";

/// Refused by the guard, with `words` in its message.
#[track_caller]
fn guarded<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>, words: &str) {
    match result {
        Err(kube::Error::Api(e))
            if e.code == 403
                && e.message.contains(&format!("'{GUARD}'"))
                && e.message.contains("denied request")
                && e.message.contains(words) => {}
        other => panic!("{what}: expected the guard's refusal ({words:?}), got {other:?}"),
    }
}

/// Refused by the guard, or earlier by the API server's own `--allow-privileged=false` (its
/// default, which the test bed keeps): a privileged container never reaches admission here, so
/// the guard's privileged clause is exercised only on clusters that allow privileged pods.
#[track_caller]
fn guarded_or_disallowed<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(e))
            if e.code == 422
                && e.message
                    .contains("privileged: Forbidden: disallowed by cluster policy") => {}
        other => guarded(what, other, "never writes a pod with host access"),
    }
}

/// Refused by RBAC (403, not the guard's).
#[track_caller]
fn unauthorized<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(e))
            if e.code == 403
                && e.message.contains(OPERATOR_USER)
                && e.message.contains("cannot")
                && !e.message.contains("denied request") => {}
        other => panic!("{what}: expected RBAC's refusal, got {other:?}"),
    }
}

fn object<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
}

/// A restricted pod spec, with `extra` merged into it.
fn pod_spec(extra: Value) -> Value {
    let mut spec = json!({
        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": "example.invalid/app:1"}]
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    spec
}

fn deployment(name: &str, spec: Value) -> Deployment {
    object(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}
    }))
}

fn config_map(name: &str) -> ConfigMap {
    object(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
}

/// A Secret holding a token for ServiceAccount `sa`, which the token controller would fill in.
fn token_secret(sa: &str) -> Secret {
    object(json!({
        "metadata": {"name": format!("{sa}-token"),
                     "annotations": {"kubernetes.io/service-account.name": sa}},
        "type": "kubernetes.io/service-account-token"
    }))
}

async fn create<K>(client: &Client, ns: &str, o: &K) -> Result<K, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), o)
        .await
}

/// The escalation path of the review: a ServiceAccount of `kube-system` bound to cluster-admin
/// (as many controllers' are), which a token would turn into every permission.
async fn privileged_target(admin: &Client) -> anyhow::Result<()> {
    create(
        admin,
        "kube-system",
        &object::<ServiceAccount>(json!({"metadata": {"name": "privileged-controller"}})),
    )
    .await?;
    let binding: ClusterRoleBinding = object(json!({
        "metadata": {"name": "privileged-controller"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "privileged-controller",
                      "namespace": "kube-system"}]
    }));
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    for ns in [AUDIT_NS, FOREIGN_NS] {
        let namespace: Namespace = object(json!({"metadata": {"name": ns}}));
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
    }
    let (key, value) = hexagone_operator::ONBOARDED_NAMESPACE_LABEL;
    let lax: Namespace = object(json!({"metadata": {"name": LAX_NS, "labels": {key: value}}}));
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &lax)
        .await?;
    create(
        admin,
        AUDIT_NS,
        &deployment("hexagone-auditor", pod_spec(json!({}))),
    )
    .await?;
    // A tenant's own objects in the workplace namespace, which the operator did not render.
    create(admin, NS, &config_map(TENANT_OBJECT)).await?;
    create(admin, NS, &deployment(TENANT_OBJECT, pod_spec(json!({})))).await?;
    Ok(())
}

/// The name of the tenant's own ConfigMap and Deployment in the workplace namespace.
const TENANT_OBJECT: &str = "tenant-notes";

/// A token for the privileged ServiceAccount of `kube-system`, asked with `op`.
async fn privileged_token(op: &Client) -> Result<TokenRequest, kube::Error> {
    let token: TokenRequest = object(json!({"spec": {"audiences": []}}));
    Api::<ServiceAccount>::namespaced(op.clone(), "kube-system")
        .create_subresource(
            "token",
            "privileged-controller",
            &PostParams::default(),
            &token,
        )
        .await
}

/// Every write the guard refuses, tried with `op`; `wide` when RBAC lets `op` do anything (then
/// RBAC refuses nothing and the guard alone stands).
async fn guard_refuses(op: &Client, wide: bool) -> anyhow::Result<()> {
    // kube-system and the auditor's namespace, even for an object RBAC grants.
    guarded(
        "ConfigMap in kube-system",
        create(op, "kube-system", &config_map("planted")).await,
        "never writes in namespace kube-system",
    );
    let privileged = pod_spec(json!({"serviceAccountName": "privileged-controller"}));
    guarded(
        "Deployment in kube-system running as a cluster-admin ServiceAccount",
        create(op, "kube-system", &deployment("escalate", privileged)).await,
        "never writes in namespace kube-system",
    );
    guarded(
        "token Secret in kube-system",
        create(op, "kube-system", &token_secret("privileged-controller")).await,
        "never writes in namespace kube-system",
    );
    let auditor = Api::<Deployment>::namespaced(op.clone(), AUDIT_NS);
    guarded(
        "the auditor's Deployment patched",
        auditor
            .patch(
                "hexagone-auditor",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 0}})),
            )
            .await,
        "never writes in namespace hexagone-audit",
    );
    // A namespace nobody onboarded, and the operator's own.
    for ns in [FOREIGN_NS, "hexagone-system", "default"] {
        guarded(
            &format!("ConfigMap in {ns}"),
            create(op, ns, &config_map("planted")).await,
            &format!("namespace {ns} is not onboarded"),
        );
    }
    // In the workplace namespace: what it did not render is not its to delete (RBAC grants
    // delete for what a Workplace no longer renders), a token Secret, pods with host access.
    let not_rendered = "deletes only what it rendered";
    guarded(
        "a tenant's ConfigMap deleted",
        Api::<ConfigMap>::namespaced(op.clone(), NS)
            .delete(TENANT_OBJECT, &DeleteParams::default())
            .await,
        not_rendered,
    );
    guarded(
        "a tenant's Deployment deleted",
        Api::<Deployment>::namespaced(op.clone(), NS)
            .delete(TENANT_OBJECT, &DeleteParams::default())
            .await,
        not_rendered,
    );
    guarded(
        "token Secret in the workplace namespace",
        create(op, NS, &token_secret("default")).await,
        "never writes a Secret of type kubernetes.io/service-account-token",
    );
    let host = "never writes a pod with host access";
    for (what, extra) in [
        ("hostNetwork", json!({"hostNetwork": true})),
        ("hostPID", json!({"hostPID": true})),
        ("hostIPC", json!({"hostIPC": true})),
        (
            "hostPath",
            json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
        ),
        (
            "privileged",
            json!({"containers": [{"name": "app", "image": "example.invalid/app:1",
                                   "securityContext": {"privileged": true}}]}),
        ),
        (
            "privileged init container",
            json!({"initContainers": [{"name": "init", "image": "example.invalid/app:1",
                                       "securityContext": {"privileged": true}}]}),
        ),
    ] {
        let refused = |what: &str, result: Result<(), kube::Error>| {
            if what.contains("privileged") {
                guarded_or_disallowed(what, result)
            } else {
                guarded(what, result, host)
            }
        };
        refused(
            &format!("Deployment with {what}"),
            create(op, NS, &deployment("host", pod_spec(extra.clone())))
                .await
                .map(|_| ()),
        );
        let sts: StatefulSet = object(json!({
            "metadata": {"name": "host"},
            "spec": {"selector": {"matchLabels": {"app": "host"}}, "serviceName": "host",
                     "template": {"metadata": {"labels": {"app": "host"}},
                                  "spec": pod_spec(extra.clone())}}
        }));
        refused(
            &format!("StatefulSet with {what}"),
            create(op, NS, &sts).await.map(|_| ()),
        );
        let mut job_pod = pod_spec(extra.clone());
        job_pod["restartPolicy"] = json!("Never");
        let cron: CronJob = object(json!({
            "metadata": {"name": "host"},
            "spec": {"schedule": "0 3 * * *",
                     "jobTemplate": {"spec": {"template": {"spec": job_pod}}}}
        }));
        refused(
            &format!("CronJob with {what}"),
            create(op, NS, &cron).await.map(|_| ()),
        );
        if wide {
            let pod: Pod = object(json!({"metadata": {"name": "host"},
                                         "spec": pod_spec(extra.clone())}));
            refused(
                &format!("Pod with {what}"),
                create(op, LAX_NS, &pod).await.map(|_| ()),
            );
        }
    }
    // StorageClasses are cluster-wide: only its own, never one marked the cluster's default
    // (every claim without a class, the auditor's ledger claim included, would follow it).
    let classes = Api::<StorageClass>::all(op.clone());
    let sc_words = "writes only its own StorageClasses";
    guarded(
        "a StorageClass of another name",
        classes
            .create(&PostParams::default(), &storage_class("abroad", false))
            .await,
        sc_words,
    );
    guarded(
        "a StorageClass of its own name marked the cluster's default",
        classes
            .create(
                &PostParams::default(),
                &storage_class(&format!("hexagone.{NS}.planted"), true),
            )
            .await,
        sc_words,
    );
    guarded(
        "the cluster's default StorageClass unmarked",
        classes
            .patch(
                SITE_DEFAULT,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {DEFAULT_CLASS: "false"}}})),
            )
            .await,
        sc_words,
    );
    // Nodes: only the operator's own labels.
    let nodes = Api::<Node>::all(op.clone());
    let label = |k: &str, v: Value| Patch::Merge(json!({"metadata": {"labels": {k: v}}}));
    let node_words = "changes a Node only by its own labels";
    guarded(
        "a node's zone relabelled",
        nodes
            .patch(
                "hetzner-de",
                &PatchParams::default(),
                &label("topology.kubernetes.io/zone", json!("paris-1")),
            )
            .await,
        node_words,
    );
    guarded(
        "a node's taints removed",
        nodes
            .patch(
                "hetzner-de",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": true}})),
            )
            .await,
        node_words,
    );
    // A Workplace's spec is ops'.
    let workplaces = Api::<Workplace>::namespaced(op.clone(), NS);
    guarded(
        "a Workplace's policy changed",
        workplaces
            .patch(
                "intranet",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"policy": "lax"}})),
            )
            .await,
        "never changes a Workplace's spec",
    );
    // Policies and attestations: RBAC refuses with the shipped grants, the guard when wide.
    let policies = Api::<LocalityPolicyResource>::all(op.clone());
    let weaken = policies
        .patch(
            "dr",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "audit"}})),
        )
        .await;
    let attest = Api::<NodeAttestation>::all(op.clone())
        .create(
            &PostParams::default(),
            &attestation("hetzner-de", "FR", "2030-01-01T00:00:00Z"),
        )
        .await;
    let officer_words = "are the security officer's";
    if wide {
        guarded("the policy weakened", weaken, officer_words);
        guarded("a node attested", attest, officer_words);
    } else {
        unauthorized("the policy weakened", weaken);
        unauthorized("a node attested", attest);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_token_is_no_path_to_the_rest_of_the_cluster() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    privileged_target(&admin).await?;
    let mut site = storage_class(SITE_DEFAULT, true);
    site.metadata.labels = None;
    site.provisioner = "csi.site.example".into();
    site.parameters = None;
    Api::<StorageClass>::all(admin.clone())
        .create(&PostParams::default(), &site)
        .await?;
    create_workplace(&admin, "intranet").await?;
    let op = bed.client_as(OPERATOR_USER, None).await?;
    // The guard is in force before the operator's first write (a policy is admitted at once,
    // but its type checking may lag): wait until it refuses the first attempt.
    eventually("the guard in force", || {
        let op = op.clone();
        async move {
            match create(&op, FOREIGN_NS, &config_map("probe")).await {
                Err(kube::Error::Api(e)) if e.message.contains(GUARD) => Ok(()),
                other => {
                    if let Ok(cm) = other {
                        Api::<ConfigMap>::namespaced(op.clone(), FOREIGN_NS)
                            .delete(&cm.name_any(), &DeleteParams::default())
                            .await
                            .ok();
                    }
                    Err("not yet".to_owned())
                }
            }
        }
    })
    .await?;

    // What RBAC alone refuses: a token for another identity, a binding, the guard itself.
    unauthorized(
        "a token for kube-system's privileged ServiceAccount",
        privileged_token(&op).await,
    );
    let grant: ClusterRoleBinding = object(json!({
        "metadata": {"name": "operator-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "hexagone-operator",
                      "namespace": "hexagone-system"}]
    }));
    let bindings = Api::<ClusterRoleBinding>::all(op.clone());
    unauthorized(
        "cluster-admin granted to itself",
        bindings.create(&PostParams::default(), &grant).await,
    );
    unauthorized(
        "the guard deleted",
        Api::<ValidatingAdmissionPolicy>::all(op.clone())
            .delete(GUARD, &DeleteParams::default())
            .await,
    );
    unauthorized(
        "a Secret read",
        Api::<Secret>::namespaced(op.clone(), "kube-system")
            .list(&Default::default())
            .await,
    );
    unauthorized(
        "a namespace onboarded by the operator",
        Api::<Namespace>::all(op.clone())
            .patch(
                FOREIGN_NS,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"labels": {"hexagone.fr/workplaces": "allowed"}}}),
                ),
            )
            .await,
    );

    // What RBAC grants cluster-wide, the guard refuses.
    guard_refuses(&op, false).await?;

    // The operator's own work is admitted: an object in the workplace namespace, the deletion of
    // one it rendered (its managed-by label), its Lease, an Event about a Node, its label on a
    // Node, a policy's status, the Workplace's finalizer.
    create(&op, NS, &config_map("allowed")).await?;
    let own = format!("hexagone.{NS}.probe");
    let classes = Api::<StorageClass>::all(op.clone());
    classes
        .create(&PostParams::default(), &storage_class(&own, false))
        .await?;
    classes.delete(&own, &DeleteParams::default()).await?;
    let mut rendered = config_map("rendered");
    rendered.metadata.labels = Some(
        [(
            "app.kubernetes.io/managed-by".to_owned(),
            "hexagone-operator".to_owned(),
        )]
        .into(),
    );
    create(&op, NS, &rendered).await?;
    Api::<ConfigMap>::namespaced(op.clone(), NS)
        .delete("rendered", &DeleteParams::default())
        .await?;
    let lease: Lease = object(json!({"metadata": {"name": "probe"},
                                     "spec": {"holderIdentity": "probe"}}));
    create(&op, "hexagone-system", &lease).await?;
    let event: k8s_openapi::api::events::v1::Event = object(json!({
        "metadata": {"name": "probe"}, "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "hexagone-operator", "reportingInstance": "probe",
        "action": "Label", "reason": "Probe", "type": "Normal",
        "regarding": {"kind": "Node", "name": "hetzner-de"}
    }));
    create(&op, "default", &event).await?;
    let eligible = "eligible.hexagone.node-restriction.kubernetes.io/probe";
    let nodes = Api::<Node>::all(op.clone());
    let set = |v: Value| Patch::Merge(json!({"metadata": {"labels": {eligible: v}}}));
    nodes
        .patch("hetzner-de", &PatchParams::default(), &set(json!("true")))
        .await?;
    nodes
        .patch("hetzner-de", &PatchParams::default(), &set(Value::Null))
        .await?;
    Api::<LocalityPolicyResource>::all(op.clone())
        .patch_status(
            "dr",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"eligibleNodes": 0, "evaluatedNodes": 0}})),
        )
        .await?;
    Api::<Workplace>::namespaced(op.clone(), NS)
        .patch(
            "intranet",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["hexagone.fr/probe"]}})),
        )
        .await?;

    // Someone binds cluster-admin to the operator's ServiceAccount: the guard still holds.
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &grant)
        .await?;
    eventually("the operator is cluster-admin", || {
        let op = op.clone();
        async move {
            Api::<Secret>::namespaced(op, "kube-system")
                .list(&Default::default())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await?;
    guard_refuses(&op, true).await?;
    guarded(
        "a token for kube-system's privileged ServiceAccount",
        privileged_token(&op).await,
        "never writes in namespace kube-system",
    );
    Ok(())
}
