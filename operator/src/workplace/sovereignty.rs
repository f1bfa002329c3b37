//! Sovereignty: where every pod of the Workplace's namespace runs against the policy's verdicts
//! (Sovereign, Events), and under an enforce-mode policy the eviction of misplaced pods through
//! the Eviction API. Judged on every reconcile, paused or not: only the eviction waits.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;

use hexagone_platform::k8s::LocalityPolicyResource;
use hexagone_platform::labels::INSTANCE_LABEL;
use hexagone_platform::workplace::Workplace;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams, ListParams};
use kube::{Resource, ResourceExt};

use super::status::{Report, event};
use super::{Context, ReconcileError, SOON, failed};

/// The longest one eviction may hold the reconcile. The client retries an eviction a
/// PodDisruptionBudget refuses (429) by itself, with a backoff growing to minutes; meanwhile no
/// other reconcile of the Workplace runs, so its status freezes and the other misplaced pods
/// wait. Past this, the eviction is given up and tried again at the next reconcile, `SOON`.
const EVICTION_WAIT: Duration = Duration::from_secs(3);
/// Evictions in flight at once.
const EVICTIONS_AT_ONCE: usize = 8;

/// What is done about misplaced pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Response {
    /// Evict them (an enforce-mode policy, the Workplace not paused).
    Evict,
    /// Report only: the policy is in audit mode.
    Audit,
    /// Report only: the Workplace is paused.
    Paused,
}

impl Response {
    fn says(self) -> &'static str {
        match self {
            Response::Evict => "evicting them so the scheduler moves them to eligible nodes",
            Response::Audit => "LocalityPolicy is in audit mode: reported only, nothing is moved",
            Response::Paused => "the Workplace is paused: reported only, nothing is moved",
        }
    }
}

/// Sets Sovereign from where every pod of the namespace runs (the operator's or not: a pod
/// someone else started there is the workplace's data as much); evicts the misplaced ones when
/// `response` says so. True when pods are being moved.
pub(super) async fn sovereignty(
    wp: &Workplace,
    ctx: &Context,
    policy: &LocalityPolicyResource,
    response: Response,
    report: &mut Report,
) -> Result<bool, ReconcileError> {
    let ns = wp.namespace().unwrap_or_default();
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let pods = pods_api
        .list(&ListParams::default())
        .await
        .map_err(failed(format!("listing the pods in {ns}")))?;
    let verdicts: BTreeMap<&str, (&str, &str)> = policy
        .status
        .as_ref()
        .map(|s| {
            s.nodes
                .iter()
                .map(|n| (n.name.as_str(), (n.verdict.as_str(), n.headline.as_str())))
                .collect()
        })
        .unwrap_or_default();
    let mut violations = Vec::new();
    let mut misplaced = Vec::new();
    let mut placed = 0;
    for pod in &pods.items {
        if pod.meta().deletion_timestamp.is_some() {
            continue;
        }
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        placed += 1;
        let ours = pod.labels().get(INSTANCE_LABEL) == Some(&wp.name_any());
        let who = if ours {
            format!("pod {}", pod.name_any())
        } else {
            format!("pod {} (not rendered by the operator)", pod.name_any())
        };
        match verdicts.get(node) {
            Some(("compliant", _)) => {}
            Some((_, headline)) => {
                violations.push(format!("{who} on node {node}: {headline}"));
                misplaced.push(pod.name_any());
            }
            None => {
                violations.push(format!(
                    "{who} on node {node}: the node has no verdict under LocalityPolicy {}",
                    wp.spec.policy
                ));
                misplaced.push(pod.name_any());
            }
        }
    }
    let pods_misplaced = violations.len();
    // The volumes the namespace's claims are bound to, against the policy's qualified storage:
    // reported with the pods; nothing to evict (moving a pod does not move its volume).
    violations.extend(super::volumes::unqualified(ctx, &ns, &policy.spec).await?);
    let reason = if pods_misplaced > 0 {
        "PodsOnIneligibleNodes"
    } else {
        "VolumesOnUnqualifiedStorage"
    };
    let was_sovereign = report
        .previous
        .iter()
        .any(|c| c.type_ == "Sovereign" && c.status == "True");
    let was_violating = report.previous.iter().any(|c| {
        c.type_ == "Sovereign"
            && c.status == "False"
            && ["PodsOnIneligibleNodes", "VolumesOnUnqualifiedStorage"].contains(&c.reason.as_str())
    });
    if violations.is_empty() {
        report.set(
            "Sovereign",
            true,
            "AllPodsOnCompliantNodes",
            format!(
                "all {placed} scheduled pods run on nodes compliant with LocalityPolicy {}",
                wp.spec.policy
            ),
        );
        if !was_sovereign && was_violating {
            event(
                ctx,
                wp,
                false,
                "SovereigntyRestored",
                "every pod runs on a compliant node again".into(),
            )
            .await;
        }
        report.status.violations.clear();
        return Ok(false);
    }
    let action = response.says();
    let volumes = violations.len() - pods_misplaced;
    let what = match (pods_misplaced, volumes) {
        (p, 0) => format!(
            "{p} pods run on nodes LocalityPolicy {} does not find compliant ({action})",
            wp.spec.policy
        ),
        (0, v) => format!(
            "{v} claims are on volumes of a storage LocalityPolicy {} does not qualify (the data \
             stays there: move it to a qualified storage)",
            wp.spec.policy
        ),
        (p, v) => format!(
            "{p} pods run on nodes LocalityPolicy {} does not find compliant ({action}), and {v} \
             claims are on volumes of a storage it does not qualify",
            wp.spec.policy
        ),
    };
    let message = format!(
        "{what}: {}",
        violations
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    if !was_violating || report.status.violations != violations {
        event(ctx, wp, true, "SovereigntyViolation", message.clone()).await;
    }
    report.set("Sovereign", false, reason, message);
    report.status.violations = violations;
    if response == Response::Evict {
        evict(wp, ctx, &pods_api, &misplaced).await?;
    }
    Ok(response == Response::Evict && !misplaced.is_empty())
}

/// Evicts the misplaced pods, several at a time: a budget that refuses one pod (for now) does not hold
/// back the others. A refusal or an eviction still pending after `EVICTION_WAIT` is left for the
/// next reconcile.
async fn evict(
    wp: &Workplace,
    ctx: &Context,
    pods_api: &Api<Pod>,
    misplaced: &[String],
) -> Result<(), ReconcileError> {
    let ns = wp.namespace().unwrap_or_default();
    // Owned futures: a stream over closures borrowing `misplaced` is not `Send` for every
    // lifetime, which the controller requires of the reconcile.
    let evictions: Vec<_> = misplaced
        .iter()
        .map(|pod| {
            let (api, pod) = (pods_api.clone(), pod.clone());
            async move {
                let evicted =
                    tokio::time::timeout(EVICTION_WAIT, api.evict(&pod, &EvictParams::default()))
                        .await;
                (pod, evicted)
            }
        })
        .collect();
    let outcomes: Vec<_> = futures::stream::iter(evictions)
        .buffer_unordered(EVICTIONS_AT_ONCE)
        .collect()
        .await;
    let mut first_error = None;
    for (pod, evicted) in outcomes {
        match evicted {
            Ok(Ok(_)) => {
                ctx.metrics.evictions.inc();
                event(
                    ctx,
                    wp,
                    true,
                    "Evicted",
                    format!("evicted pod {pod} from a node that is not compliant"),
                )
                .await;
            }
            // A PodDisruptionBudget refuses for now (429), or the pod is gone (404).
            Ok(Err(kube::Error::Api(e))) if e.code == 429 || e.code == 404 => {
                tracing::info!("eviction of {ns}/{pod} deferred: {}", e.message);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(failed(format!("evicting pod {ns}/{pod}"))(e));
            }
            Err(_) => tracing::info!(
                "eviction of {ns}/{pod} not granted within {EVICTION_WAIT:?} (a PodDisruptionBudget refuses it for now): tried again in {SOON:?}"
            ),
        }
    }
    first_error.map_or(Ok(()), Err)
}
