//! Removing what the Workplace no longer renders: an object of a kind the operator renders, that
//! carries the Workplace's labels and its owner reference, and that the current rendering does
//! not produce (a component disabled, a videobridge Deployment renamed, a Job superseded). What
//! the operator did not render stays, whatever its name. Volume claims and credentials are kept:
//! claims hold data (they go with the Workplace only when `spec.storage` says so), and the
//! operator cannot list Secrets.

use std::collections::BTreeSet;
use std::fmt::Debug;

use hexagone_platform::labels::{INSTANCE_LABEL, MANAGED_BY_LABEL};
use hexagone_platform::render::Rendered;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{FIELD_MANAGER, ReconcileError, failed};

/// Deletes, in namespace `ns`, the objects Workplace `instance` (uid `uid`) owns and `rendered`
/// no longer holds; returns them as `Kind name`, in the order deleted. Workloads go before their
/// Services and budgets, and the garbage collector removes their pods (background propagation:
/// a Job's default would orphan them).
pub(super) async fn prune(
    client: &Client,
    ns: &str,
    instance: &str,
    uid: &str,
    rendered: &Rendered,
) -> Result<Vec<String>, ReconcileError> {
    let keep: BTreeSet<(String, String)> = rendered
        .objects
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let p = Pruner {
        client,
        ns,
        instance,
        uid,
        keep: &keep,
    };
    let mut removed = Vec::new();
    p.kind::<Deployment>(&mut removed).await?;
    p.kind::<StatefulSet>(&mut removed).await?;
    p.kind::<CronJob>(&mut removed).await?;
    p.kind::<Job>(&mut removed).await?;
    p.kind::<Service>(&mut removed).await?;
    p.kind::<PodDisruptionBudget>(&mut removed).await?;
    p.kind::<ConfigMap>(&mut removed).await?;
    p.kind::<ServiceAccount>(&mut removed).await?;
    p.kind::<Ingress>(&mut removed).await?;
    p.kind::<NetworkPolicy>(&mut removed).await?;
    Ok(removed)
}

struct Pruner<'a> {
    client: &'a Client,
    ns: &'a str,
    instance: &'a str,
    uid: &'a str,
    keep: &'a BTreeSet<(String, String)>,
}

impl Pruner<'_> {
    async fn kind<K>(&self, removed: &mut Vec<String>) -> Result<(), ReconcileError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let api = Api::<K>::namespaced(self.client.clone(), self.ns);
        let selector = format!(
            "{INSTANCE_LABEL}={},{MANAGED_BY_LABEL}={FIELD_MANAGER}",
            self.instance
        );
        let listed = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(failed(format!(
                "listing the {kind}s of Workplace {}/{}",
                self.ns, self.instance
            )))?;
        for o in listed.items {
            let name = o.name_any();
            if self.keep.contains(&(kind.clone(), name.clone()))
                || !owned(&o.metadata, self.instance, self.uid)
            {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => removed.push(format!("{kind} {name}")),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(failed(format!("deleting {kind} {}/{name}", self.ns))(e)),
            }
        }
        Ok(())
    }
}

/// Whether an object is Workplace `instance`'s (uid `uid`) to remove: it carries the Workplace's
/// instance label, the operator's managed-by label, and an owner reference to that very
/// Workplace. An object someone else labelled like the operator's, without the owner reference,
/// is not.
fn owned(meta: &ObjectMeta, instance: &str, uid: &str) -> bool {
    let labels = meta.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(INSTANCE_LABEL) == Some(instance)
        && label(MANAGED_BY_LABEL) == Some(FIELD_MANAGER)
        && meta
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid && r.kind == "Workplace" && r.controller == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(labels: serde_json::Value, owners: serde_json::Value) -> ObjectMeta {
        serde_json::from_value(json!({"name": "x", "labels": labels, "ownerReferences": owners}))
            .unwrap()
    }

    #[test]
    fn only_an_object_with_the_labels_and_the_workplaces_owner_reference_is_the_operators() {
        let labels = json!({INSTANCE_LABEL: "intranet", MANAGED_BY_LABEL: FIELD_MANAGER});
        let owner = json!([{"apiVersion": "hexagone.fr/v1alpha1", "kind": "Workplace",
                            "name": "intranet", "uid": "u1", "controller": true}]);
        assert!(owned(
            &meta(labels.clone(), owner.clone()),
            "intranet",
            "u1"
        ));
        // Another Workplace's uid (one deleted and created again under the name), no owner, a
        // reference that is not the controller, other labels: not the operator's to remove.
        assert!(!owned(
            &meta(labels.clone(), owner.clone()),
            "intranet",
            "u2"
        ));
        assert!(!owned(&meta(labels.clone(), json!([])), "intranet", "u1"));
        let mut weak = owner.clone();
        weak[0]["controller"] = json!(false);
        assert!(!owned(&meta(labels.clone(), weak), "intranet", "u1"));
        assert!(!owned(&meta(labels, owner.clone()), "extranet", "u1"));
        let foreign = json!({INSTANCE_LABEL: "intranet", MANAGED_BY_LABEL: "helm"});
        assert!(!owned(&meta(foreign, owner), "intranet", "u1"));
    }
}
