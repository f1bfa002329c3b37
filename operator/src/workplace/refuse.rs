//! Refusing a Workplace that cannot be deployed: Ready=False with the reason and an Event when
//! the refusal is new, nothing else changed; and the sentence naming the nodes a policy refused.

use hexagone_platform::k8s::LocalityPolicyResource;
use hexagone_platform::workplace::Workplace;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::status::{Report, event, publish_status};
use super::{Context, RESYNC, ReconcileError};

/// Refuses the Workplace: Ready=False with `reason`, an Event when the refusal is new; nothing
/// else changes.
pub(super) async fn refuse(
    wp: &Workplace,
    ctx: &Context,
    mut report: Report,
    reason: &str,
    message: String,
) -> Result<Action, ReconcileError> {
    // Whatever was applied before, the next apply is a whole one.
    ctx.applied
        .lock()
        .expect("not poisoned")
        .forget(&wp.namespace().unwrap_or_default());
    let was = report
        .previous
        .iter()
        .any(|c| c.type_ == "Ready" && c.reason == reason && c.message == message);
    if !was {
        event(ctx, wp, true, reason, message.clone()).await;
    }
    report.set("Ready", false, reason, message.clone());
    report.set(
        "Progressing",
        false,
        reason,
        "nothing is changed until this is fixed",
    );
    report.set("Degraded", true, reason, message);
    // Keep the last known sovereignty when this pass did not judge it: a refusal does not
    // move pods. (Conditions are a list keyed by type: a second Sovereign would make every
    // later status write fail, and the status would stay the first one for ever.)
    let judged = report
        .status
        .conditions
        .iter()
        .any(|c| c.type_ == "Sovereign");
    if let Some(s) = report
        .previous
        .iter()
        .find(|c| c.type_ == "Sovereign")
        .filter(|_| !judged)
        .cloned()
    {
        report.status.conditions.push(s);
    }
    publish_status(wp, ctx, report).await?;
    Ok(Action::requeue(RESYNC))
}

/// Up to `max` ineligible nodes of a policy with their verdicts, `node: headline`.
pub(super) fn refusals(policy: &LocalityPolicyResource, max: usize) -> String {
    let Some(s) = &policy.status else {
        return "the policy has not been evaluated yet".into();
    };
    let refused: Vec<String> = s
        .nodes
        .iter()
        .filter(|n| !n.eligible)
        .map(|n| format!("node {}: {}", n.name, n.headline))
        .collect();
    let mut out = refused
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if refused.len() > max {
        out.push_str(&format!("; and {} more", refused.len() - max));
    }
    out
}
