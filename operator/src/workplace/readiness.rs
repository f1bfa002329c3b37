//! Readiness of a workplace's components, read from their Deployments and StatefulSets into the
//! status and the gauge, with the scheduler's reason for pods it cannot place.

use std::collections::BTreeMap;
use std::sync::Arc;

use hexagone_platform::catalog::Catalog;
use hexagone_platform::labels::{COMPONENT_LABEL, INSTANCE_LABEL};
use hexagone_platform::workplace::ComponentStatus;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::status::Report;
use super::{Context, ReconcileError, failed};

/// Sets each component's readiness in the status and the gauge, then Ready and Progressing (naming
/// the pods the scheduler cannot place while some are not ready). True when all are ready.
pub(super) async fn readiness(
    ctx: &Context,
    ns: &str,
    name: &str,
    catalog: &Catalog,
    eligible: &[Arc<Node>],
    zones: &[String],
    report: &mut Report,
) -> Result<bool, ReconcileError> {
    let mut all_ready = true;
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
        .await
        .map_err(failed(format!("listing Deployments in {ns}")))?;
    let statefulsets = Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
        .await
        .map_err(failed(format!("listing StatefulSets in {ns}")))?;
    // (ready, desired) replicas by component, summed over its workloads: the videobridges are
    // one Deployment each (hexagone_platform::render, `videobridges`).
    let mut readiness: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let workloads = deployments
        .items
        .iter()
        .map(|d| {
            let want = d.spec.as_ref().and_then(|s| s.replicas);
            let ready = d.status.as_ref().and_then(|s| s.ready_replicas);
            (component_of(d), replicas(ready, want))
        })
        .chain(statefulsets.items.iter().map(|s| {
            let want = s.spec.as_ref().and_then(|s| s.replicas);
            let ready = s.status.as_ref().and_then(|s| s.ready_replicas);
            (component_of(s), replicas(ready, want))
        }));
    for (component, (ready, want)) in workloads {
        let sum = readiness.entry(component).or_default();
        sum.0 += ready;
        sum.1 += want;
    }
    let mut not_ready = Vec::new();
    let mut ready_count = 0;
    for c in &catalog.components {
        let (ready, replicas) = readiness.get(&c.name).copied().unwrap_or((0, 1));
        let ok = ready >= replicas;
        all_ready &= ok;
        if ok {
            ready_count += 1;
        } else {
            not_ready.push(format!("{} {ready}/{replicas}", c.name));
        }
        report.status.components.push(ComponentStatus {
            name: c.name.clone(),
            ready_replicas: ready,
            replicas,
            ready: ok,
        });
    }
    ctx.metrics
        .components_ready
        .with_label_values(&[ns, name])
        .set(ready_count);
    if all_ready {
        report.set(
            "Ready",
            true,
            "AllComponentsReady",
            format!(
                "all {} components are ready on {} eligible nodes in {}",
                catalog.components.len(),
                eligible.len(),
                zones.join(", ")
            ),
        );
        report.set(
            "Progressing",
            false,
            "Converged",
            "every object is applied and ready",
        );
    } else {
        let pending = unschedulable(ctx, ns, name).await?;
        report.set(
            "Ready",
            false,
            "ComponentsNotReady",
            format!("waiting for {}{pending}", not_ready.join(", ")),
        );
        report.set(
            "Progressing",
            true,
            "Rolling",
            format!(
                "{} of {} components ready",
                ready_count,
                catalog.components.len()
            ),
        );
    }
    Ok(all_ready)
}

/// (ready, desired) as reported by a workload (a missing desired count means 1).
/// The component a workload runs (its component label; its name when unlabelled).
fn component_of(workload: &impl ResourceExt) -> String {
    workload
        .labels()
        .get(COMPONENT_LABEL)
        .cloned()
        .unwrap_or_else(|| workload.name_any())
}

fn replicas(ready: Option<i32>, desired: Option<i32>) -> (u32, u32) {
    let count = |n: i32| u32::try_from(n).unwrap_or(0);
    (count(ready.unwrap_or(0)), count(desired.unwrap_or(1)))
}

/// Pods named in the Ready message when the scheduler cannot place them; the rest are counted.
const SHOWN_UNSCHEDULABLE: usize = 3;

/// Why the scheduler leaves the workplace's pods unplaced, as a sentence for the Ready message
/// (`"; pod postgresql-0 unschedulable: 0/7 nodes are available: …"`), or empty when none is. A
/// pod whose zonal volume sits in a zone with no eligible room, or a cluster out of CPU, then
/// shows in `kubectl get workplace` instead of only as a replica count.
async fn unschedulable(ctx: &Context, ns: &str, name: &str) -> Result<String, ReconcileError> {
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
        .await
        .map_err(failed(format!("listing the workplace's pods in {ns}")))?;
    let mut out = String::new();
    let (mut shown, mut more) = (0, 0);
    for pod in &pods.items {
        let scheduled = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
        let Some(c) = scheduled
            .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        else {
            continue;
        };
        if shown == SHOWN_UNSCHEDULABLE {
            more += 1;
            continue;
        }
        shown += 1;
        out.push_str(&format!(
            "; pod {} unschedulable: {}",
            pod.name_any(),
            c.message.as_deref().unwrap_or("no reason given").trim()
        ));
    }
    if more > 0 {
        out.push_str(&format!("; {more} more pods unschedulable"));
    }
    Ok(out)
}
