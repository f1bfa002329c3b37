//! The finalizer's cleanup: what the namespace's garbage collector cannot delete (the StorageClass,
//! and the volume claims when the spec asks).

use hexagone_platform::labels::INSTANCE_LABEL;
use hexagone_platform::render::storage_class_name;
use hexagone_platform::workplace::Workplace;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::Action;

use super::apply::owned_by;
use super::status::event;
use super::{Context, ReconcileError, failed};

/// Deletes what the Workplace created: the StorageClass (which no namespace owns) and, when the
/// spec asks, the volume claims; the namespaced objects go with their owner.
pub(super) async fn cleanup(wp: &Workplace, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = wp.namespace().unwrap_or_default();
    ctx.applied.lock().expect("not poisoned").forget(&ns);
    ctx.status_written
        .lock()
        .expect("not poisoned")
        .remove(&super::key(wp));
    let name = wp.name_any();
    let sc = storage_class_name(&ns, &name);
    let classes = Api::<StorageClass>::all(ctx.client.clone());
    let current = classes
        .get_opt(&sc)
        .await
        .map_err(failed(format!("reading StorageClass {sc}")))?;
    // Another's class of that name is left alone.
    if current.is_some_and(|c| owned_by(&c, &ns, &name)) {
        match classes.delete(&sc, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(failed(format!("deleting StorageClass {sc}"))(e)),
        }
    }
    if wp.spec.storage.delete_claims_with_workplace {
        let api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns);
        let claims = api
            .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
            .await
            .map_err(failed(format!(
                "listing the claims of Workplace {ns}/{name}"
            )))?;
        for c in claims.items {
            match api.delete(&c.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(failed(format!("deleting claim {ns}/{}", c.name_any()))(e)),
            }
        }
    }
    ctx.metrics
        .components_ready
        .remove_label_values(&[&ns, &name])
        .ok();
    event(
        ctx,
        wp,
        false,
        "CleanedUp",
        format!(
            "deleted StorageClass {sc}{}",
            if wp.spec.storage.delete_claims_with_workplace {
                " and the workplace's volume claims"
            } else {
                "; volume claims are kept (spec.storage.deleteClaimsWithWorkplace is false)"
            }
        ),
    )
    .await;
    Ok(Action::await_change())
}
