//! Server-side apply of a rendered workplace with the operator's one field manager: the
//! StorageClass (replaced when its zones change), the credentials, then every namespaced object.

use hexagone_platform::labels::{INSTANCE_LABEL, WORKPLACE_NAMESPACE_LABEL};
use hexagone_platform::render::{Rendered, storage_class_name};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::credentials::ensure_credentials;
use super::{FIELD_MANAGER, ReconcileError, failed};

/// Applies a rendered workplace: the StorageClass, the missing credentials, then every object in
/// order, server-side with [`FIELD_MANAGER`], owned by `owner` when given (the controller passes
/// the Workplace; the scale benchmark applies the same objects without one, as its baseline).
/// Returns what was put back in the pod templates and isolation rules (see
/// `foreign_in_template`, `foreign_rules`).
pub async fn apply_rendered(
    client: &Client,
    ns: &str,
    instance: &str,
    rendered: &Rendered,
    owner: Option<&OwnerReference>,
) -> Result<Vec<String>, ReconcileError> {
    apply_rendered_telling(client, ns, instance, rendered, owner, &|_, _, _| {}).await
}

/// [`apply_rendered`], calling `wrote(kind, name, resource version)` as each write returns: a
/// watch event carrying that version is the operator's own write, not a change by someone else.
pub(super) async fn apply_rendered_telling(
    client: &Client,
    ns: &str,
    instance: &str,
    rendered: &Rendered,
    owner: Option<&OwnerReference>,
    wrote: &(dyn Fn(&str, &str, String) + Sync),
) -> Result<Vec<String>, ReconcileError> {
    apply_storage_class(client, ns, instance, rendered).await?;
    ensure_credentials(client, ns, instance, rendered, owner).await?;
    let mut reverted = Vec::new();
    for object in &rendered.objects {
        reverted.extend(apply_object(client, ns, object, owner, wrote).await?);
    }
    Ok(reverted)
}

/// Whether StorageClass `sc` is Workplace `ns`/`name`'s (its labels say so: a cluster-scoped
/// object cannot carry an owner reference to a namespaced one).
pub(super) fn owned_by(sc: &StorageClass, ns: &str, name: &str) -> bool {
    let labels = sc.labels();
    labels.get(INSTANCE_LABEL).map(String::as_str) == Some(name)
        && labels.get(WORKPLACE_NAMESPACE_LABEL).map(String::as_str) == Some(ns)
}

/// Why Workplace `ns`/`name` cannot have its StorageClass: a class of that name exists and is
/// not the Workplace's. `None` when the name is free or the class is its own.
pub(super) async fn storage_class_taken(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<String>, ReconcileError> {
    let sc = storage_class_name(ns, name);
    let current = Api::<StorageClass>::all(client.clone())
        .get_opt(&sc)
        .await
        .map_err(failed(format!("reading StorageClass {sc}")))?;
    Ok(current.filter(|c| !owned_by(c, ns, name)).map(|_| {
        format!(
            "StorageClass {sc} exists and is not this Workplace's (its labels {INSTANCE_LABEL} and {WORKPLACE_NAMESPACE_LABEL} do not name {ns}/{name}): it is neither used nor replaced; remove it or rename the Workplace"
        )
    }))
}

/// Applies the StorageClass; its allowedTopologies cannot change in place, so a class for other
/// zones is replaced (claims already bound keep their volumes). A class of that name that is not
/// the Workplace's is never replaced.
async fn apply_storage_class(
    client: &Client,
    ns: &str,
    instance: &str,
    rendered: &Rendered,
) -> Result<(), ReconcileError> {
    let Some(sc) = &rendered.storage_class else {
        return Ok(());
    };
    let api = Api::<StorageClass>::all(client.clone());
    let name = sc["metadata"]["name"]
        .as_str()
        .expect("rendered with a name");
    if let Some(current) = api
        .get_opt(name)
        .await
        .map_err(failed(format!("reading StorageClass {name}")))?
    {
        if !owned_by(&current, ns, instance) {
            return Err(ReconcileError::Foreign(format!(
                "StorageClass {name} is not Workplace {ns}/{instance}'s: not replaced"
            )));
        }
        // The whole class, not only where it provisions: a class made beforehand under the
        // Workplace's name and labels (whoever may create StorageClasses) with `Delete`, `Immediate`
        // binding or mount options of its own would otherwise be adopted as it is.
        let current = serde_json::to_value(&current).unwrap_or_default();
        let field = |v: &Value, k: &str| match v.get(k) {
            None | Some(Value::Null) => json!(null),
            Some(Value::Object(o)) if o.is_empty() => json!(null),
            Some(Value::Array(a)) if a.is_empty() => json!(null),
            Some(x) => x.clone(),
        };
        let same = [
            "allowedTopologies",
            "provisioner",
            "parameters",
            "reclaimPolicy",
            "volumeBindingMode",
            "allowVolumeExpansion",
            "mountOptions",
        ]
        .iter()
        .all(|k| field(&current, k) == field(sc, k));
        if same {
            return Ok(());
        }
        api.delete(name, &DeleteParams::default())
            .await
            .map_err(failed(format!("replacing StorageClass {name}")))?;
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(sc),
    )
    .await
    .map_err(failed(format!("applying StorageClass {name}")))?;
    Ok(())
}

/// Server-side applies one namespaced object, owned by the Workplace. The operator owns whole pod
/// templates: server-side apply only takes back the fields it manages, so a container, init
/// container or volume another field manager added to a workload's template stays; it is
/// removed here (the lists are replaced by the rendered ones), and named in the result.
async fn apply_object(
    client: &Client,
    ns: &str,
    object: &Value,
    owner: Option<&OwnerReference>,
    told: &(dyn Fn(&str, &str, String) + Sync),
) -> Result<Vec<String>, ReconcileError> {
    let mut object = object.clone();
    if let Some(owner) = owner {
        object["metadata"]["ownerReferences"] = json!([owner]);
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let c = client.clone();
    let patch = Patch::Apply(&object);
    let what = || format!("applying {kind} {ns}/{name}");
    let wrote = |version: Option<String>| told(&kind, &name, version.unwrap_or_default());
    macro_rules! apply_as {
        ($t:ty) => {
            Api::<$t>::namespaced(c, ns)
                .patch(&name, &pp, &patch)
                .await
                .map(|o| wrote(o.resource_version()))
                .map_err(failed(what()))
        };
    }
    macro_rules! apply_workload {
        ($t:ty, $template:expr) => {{
            let api = Api::<$t>::namespaced(c, ns);
            let put_back = |foreign: Vec<String>, fix: Value| {
                let (api, name, kind) = (api.clone(), name.as_str(), kind.as_str());
                async move {
                    let fixed = api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&fix))
                        .await
                        .map_err(failed(format!(
                            "putting back the pod template of {kind} {ns}/{name}"
                        )))?;
                    Ok::<_, ReconcileError>((
                        format!("{kind} {name}: removed {}", foreign.join(", ")),
                        fixed.resource_version(),
                    ))
                }
            };
            // What another manager added is removed before applying too: applied over it, a
            // host volume or flag would make the admission guard refuse the operator's apply.
            let mut removed = Vec::new();
            if let Some(live) = api.get_opt(&name).await.map_err(failed(what()))? {
                let live = serde_json::to_value(&live).unwrap_or_default();
                if let Some((foreign, fix)) = foreign_in_template(&object, &live, $template) {
                    let (line, version) = put_back(foreign, fix).await?;
                    removed.push(line);
                    wrote(version);
                }
            }
            let live = api
                .patch(&name, &pp, &patch)
                .await
                .map_err(failed(what()))?;
            wrote(live.resource_version());
            let live = serde_json::to_value(&live).unwrap_or_default();
            if let Some((foreign, fix)) = foreign_in_template(&object, &live, $template) {
                let (line, version) = put_back(foreign, fix).await?;
                removed.push(line);
                wrote(version);
            }
            return Ok(removed);
        }};
    }
    const POD: &[&str] = &["spec", "template", "spec"];
    const CRON_POD: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];
    match kind.as_str() {
        "ServiceAccount" => apply_as!(ServiceAccount),
        "ConfigMap" => apply_as!(ConfigMap),
        "Service" => apply_as!(Service),
        "PersistentVolumeClaim" => apply_as!(PersistentVolumeClaim),
        "Deployment" => apply_workload!(Deployment, POD),
        "StatefulSet" => apply_workload!(StatefulSet, POD),
        "PodDisruptionBudget" => apply_as!(PodDisruptionBudget),
        "NetworkPolicy" => {
            let api = Api::<NetworkPolicy>::namespaced(c, ns);
            let live = api
                .patch(&name, &pp, &patch)
                .await
                .map_err(failed(what()))?;
            wrote(live.resource_version());
            let live = serde_json::to_value(&live).unwrap_or_default();
            if let Some((foreign, fix)) = foreign_rules(&object, &live) {
                let fixed = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&fix))
                    .await
                    .map_err(failed(format!(
                        "putting back the rules of NetworkPolicy {ns}/{name}"
                    )))?;
                wrote(fixed.resource_version());
                return Ok(vec![format!(
                    "NetworkPolicy {name}: removed {}",
                    foreign.join(", ")
                )]);
            }
            return Ok(Vec::new());
        }
        "CronJob" => apply_workload!(k8s_openapi::api::batch::v1::CronJob, CRON_POD),
        "Job" => apply_as!(k8s_openapi::api::batch::v1::Job),
        "Ingress" => apply_as!(k8s_openapi::api::networking::v1::Ingress),
        other => unreachable!("render produced an unexpected kind {other}"),
    }
    .map(|()| Vec::new())
}

/// The rules (`ingress`, `egress`) a live NetworkPolicy holds where the rendered one has none,
/// and the merge patch removing them. A policy rendered without rules (isolation: nothing
/// allowed) leaves the field unset, since the API server stores no empty list; server-side
/// apply then owns no rule there, so a rule someone else added would stay through every apply.
/// (Where rules are rendered, the apply owns the list, which is atomic, and puts it back whole.)
fn foreign_rules(rendered: &Value, live: &Value) -> Option<(Vec<String>, Value)> {
    let mut foreign = Vec::new();
    let mut fix = serde_json::Map::new();
    for field in ["ingress", "egress"] {
        let rules = |o: &Value| {
            o["spec"]
                .get(field)
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        if rules(rendered) == 0 && rules(live) > 0 {
            foreign.push(format!(
                "{} {field} rules added by someone else",
                rules(live)
            ));
            fix.insert(field.to_owned(), Value::Null);
        }
    }
    (!foreign.is_empty()).then(|| (foreign, json!({"spec": fix})))
}

/// What a live workload's pod spec (at `path`) holds beyond the rendered one: containers, init
/// containers and volumes by name, described, and the merge patch putting the rendered lists
/// back (a JSON merge patch replaces a list whole). `None` when there is nothing foreign.
fn foreign_in_template(
    rendered: &Value,
    live: &Value,
    path: &[&str],
) -> Option<(Vec<String>, Value)> {
    let at = |v: &Value| path.iter().fold(v.clone(), |v, k| v[*k].clone());
    let (want, have) = (at(rendered), at(live));
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["name"].as_str().map(str::to_owned))
            .collect()
    };
    let mut foreign = Vec::new();
    let mut lists = serde_json::Map::new();
    for (list, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
        ("volumes", "volume"),
    ] {
        let wanted = names(&want[list]);
        let extra: Vec<String> = names(&have[list])
            .into_iter()
            .filter(|n| !wanted.contains(n))
            .collect();
        if !extra.is_empty() {
            foreign.extend(extra.iter().map(|n| format!("{what} {n}")));
            lists.insert(list.to_owned(), want[list].clone());
        }
    }
    // Host access another manager added (a flag, or a privileged container among the rendered
    // ones): the admission guard refuses the operator's own apply of such a template, so it is
    // put back first, whole.
    for flag in ["hostNetwork", "hostPID", "hostIPC"] {
        if have[flag].as_bool() == Some(true) && want[flag].as_bool() != Some(true) {
            foreign.push(flag.to_owned());
            lists.insert(flag.to_owned(), Value::Null);
        }
    }
    let privileged = |v: &Value| {
        ["containers", "initContainers"].iter().any(|l| {
            v[*l]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["securityContext"]["privileged"].as_bool() == Some(true))
        })
    };
    if privileged(&have) && !privileged(&want) {
        foreign.push("privileged container".to_owned());
        for list in ["containers", "initContainers"] {
            lists.insert(list.to_owned(), want[list].clone());
        }
    }
    // Inside a rendered container, what another manager's apply adds and the operator's apply
    // would leave (it owns only what it renders): an environment variable (a Java agent in
    // JAVA_TOOL_OPTIONS), variables from a whole ConfigMap or Secret, a command or arguments
    // where the image's own run, a mount, an added capability. And host aliases, which send a
    // Service's name elsewhere.
    for list in ["containers", "initContainers"] {
        let mut changed = false;
        for live_c in have[list].as_array().into_iter().flatten() {
            let Some(name) = live_c["name"].as_str() else {
                continue;
            };
            let Some(want_c) = want[list]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"].as_str() == Some(name))
            else {
                continue;
            };
            for found in foreign_in_container(want_c, live_c) {
                foreign.push(format!("{found} in container {name}"));
                changed = true;
            }
        }
        if changed {
            lists.insert(list.to_owned(), want[list].clone());
        }
    }
    if have["hostAliases"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
        && want["hostAliases"].as_array().is_none_or(Vec::is_empty)
    {
        foreign.push("host aliases".to_owned());
        lists.insert("hostAliases".to_owned(), Value::Null);
    }
    if foreign.is_empty() {
        return None;
    }
    let fix = path
        .iter()
        .rev()
        .fold(Value::Object(lists), |inner, k| json!({ *k: inner }));
    Some((foreign, fix))
}

/// What a live container holds that the rendered one of the same name does not: environment
/// variables by name; `envFrom`, `command`, `args`, a probe or lifecycle hooks where none is
/// rendered; mounts by path; added capabilities. (What the API server defaults, such as the termination message path or
/// the pull policy, is not compared.)
fn foreign_in_container(want: &Value, have: &Value) -> Vec<String> {
    let keyed = |v: &Value, list: &str, key: &str| -> Vec<String> {
        v[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i[key].as_str().map(str::to_owned))
            .collect()
    };
    let mut found = Vec::new();
    let wanted_env = keyed(want, "env", "name");
    for n in keyed(have, "env", "name") {
        if !wanted_env.contains(&n) {
            found.push(format!("variable {n}"));
        }
    }
    // Each of these runs code or reads data when set (a probe or a hook runs a command).
    for field in [
        "envFrom",
        "command",
        "args",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
    ] {
        let some = |v: &Value| match &v[field] {
            Value::Array(a) => !a.is_empty(),
            Value::Null => false,
            _ => true,
        };
        if some(have) && !some(want) {
            found.push(field.to_owned());
        }
    }
    let wanted_mounts = keyed(want, "volumeMounts", "mountPath");
    for m in keyed(have, "volumeMounts", "mountPath") {
        if !wanted_mounts.contains(&m) {
            found.push(format!("mount {m}"));
        }
    }
    let added = |v: &Value| -> Vec<String> {
        v["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect()
    };
    let wanted_caps = added(want);
    for c in added(have) {
        if !wanted_caps.contains(&c) {
            found.push(format!("capability {c}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    /// Rules someone added to a policy rendered without any are removed; a policy whose rules
    /// are rendered is left to the apply, which owns its (atomic) lists.
    #[test]
    fn rules_added_to_an_isolating_policy_are_removed() {
        let rendered = json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}});
        let live = json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                                   "egress": [{}]}});
        let (foreign, fix) = foreign_rules(&rendered, &live).expect("an added rule");
        assert_eq!(foreign, ["1 egress rules added by someone else"]);
        assert_eq!(fix, json!({"spec": {"egress": null}}));
        assert_eq!(foreign_rules(&rendered, &rendered), None);
        let opened = json!({"spec": {"ingress": [{"from": [{"podSelector": {}}]}]}});
        let widened = json!({"spec": {"ingress": [{}]}});
        assert_eq!(foreign_rules(&opened, &widened), None);
    }

    use super::*;

    #[test]
    fn a_foreign_sidecar_and_its_volume_are_named_and_the_rendered_lists_put_back() {
        let rendered = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "app", "image": "a"}],
            "volumes": [{"name": "data"}]}}}});
        let mut live = rendered.clone();
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "exfil", "image": "x"}));
        live["spec"]["template"]["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "host", "hostPath": {"path": "/"}}));
        let path = ["spec", "template", "spec"];
        let (foreign, fix) = foreign_in_template(&rendered, &live, &path).unwrap();
        assert_eq!(foreign, ["container exfil", "volume host"]);
        assert_eq!(
            fix,
            json!({"spec": {"template": {"spec": {
                "containers": [{"name": "app", "image": "a"}],
                "volumes": [{"name": "data"}]}}}})
        );
        assert!(foreign_in_template(&rendered, &rendered, &path).is_none());
    }

    /// What another manager slips into a rendered container (a variable, a mount, a command,
    /// a capability) or the pod (host aliases) is named and the rendered lists put back; what
    /// the rendering itself holds is not foreign.
    #[test]
    fn what_is_slipped_into_a_rendered_container_is_named_and_put_back() {
        let rendered = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "app", "image": "a",
                            "env": [{"name": "DB", "value": "x"}],
                            "args": ["--serve"],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}}});
        let path = ["spec", "template", "spec"];
        assert!(foreign_in_template(&rendered, &rendered, &path).is_none());
        let mut live = rendered.clone();
        let pod = &mut live["spec"]["template"]["spec"];
        let app = &mut pod["containers"][0];
        app["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:/x.jar"}));
        app["envFrom"] = json!([{"secretRef": {"name": "stolen"}}]);
        app["command"] = json!(["/bin/sh"]);
        app["args"] = json!(["-c", "exfil"]);
        app["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "data", "mountPath": "/export"}));
        app["securityContext"] = json!({"capabilities": {"add": ["NET_ADMIN"]}});
        app["lifecycle"] = json!({"postStart": {"exec": {"command": ["/bin/sh", "-c", "x"]}}});
        app["terminationMessagePath"] = json!("/dev/termination-log");
        pod["hostAliases"] = json!([{"ip": "203.0.113.9", "hostnames": ["postgres"]}]);
        let (foreign, fix) = foreign_in_template(&rendered, &live, &path).unwrap();
        assert_eq!(
            foreign,
            [
                "variable JAVA_TOOL_OPTIONS in container app",
                "envFrom in container app",
                "command in container app",
                "lifecycle in container app",
                "mount /export in container app",
                "capability NET_ADMIN in container app",
                "host aliases",
            ]
        );
        assert_eq!(
            fix,
            json!({"spec": {"template": {"spec": {
                "containers": rendered["spec"]["template"]["spec"]["containers"].clone(),
                "hostAliases": null}}}})
        );
    }

    #[test]
    fn host_access_added_to_rendered_containers_is_put_back_whole() {
        let rendered = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "app", "image": "a"}]}}}});
        let mut live = rendered.clone();
        live["spec"]["template"]["spec"]["hostPID"] = json!(true);
        live["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
            json!({"privileged": true});
        let path = ["spec", "template", "spec"];
        let (foreign, fix) = foreign_in_template(&rendered, &live, &path).unwrap();
        assert_eq!(foreign, ["hostPID", "privileged container"]);
        assert_eq!(
            fix,
            json!({"spec": {"template": {"spec": {
                "hostPID": null,
                "containers": [{"name": "app", "image": "a"}],
                "initContainers": null}}}})
        );
    }
}
