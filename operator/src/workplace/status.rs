//! What the controller reports: the status being built (conditions keep their transition time
//! while unchanged), its publication when it changed, and Events on the Workplace.

use hexagone_platform::workplace::{Condition, Workplace, WorkplaceStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Context, ReconcileError, failed, key};

/// The status being built, and the sentence of each refusal.
pub(super) struct Report {
    generation: Option<i64>,
    pub(super) previous: Vec<Condition>,
    pub(super) status: WorkplaceStatus,
}

impl Report {
    pub(super) fn new(wp: &Workplace) -> Self {
        let previous = wp
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        Report {
            generation: wp.metadata.generation,
            previous,
            status: WorkplaceStatus {
                observed_generation: wp.metadata.generation,
                ..Default::default()
            },
        }
    }

    pub(super) fn set(
        &mut self,
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) {
        let status = if status { "True" } else { "False" };
        let now = OffsetDateTime::now_utc().format(&Rfc3339).expect("formats");
        let last = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(now);
        self.status.conditions.retain(|c| c.type_ != type_);
        self.status.conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: last,
            observed_generation: self.generation,
        });
    }
}

/// Writes the status when it changed.
pub(super) async fn publish_status(
    wp: &Workplace,
    ctx: &Context,
    report: Report,
) -> Result<(), ReconcileError> {
    let mut status = report.status;
    status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    // Recorded before it is written, so its own watch event reads as the operator's.
    ctx.status_written
        .lock()
        .expect("not poisoned")
        .insert(key(wp), super::status_print(&status));
    if wp.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api = Api::<Workplace>::namespaced(ctx.client.clone(), &wp.namespace().unwrap_or_default());
    api.patch_status(
        &wp.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .map_err(failed(format!(
        "writing the status of Workplace {}",
        key(wp)
    )))?;
    Ok(())
}

pub(super) async fn event(
    ctx: &Context,
    wp: &Workplace,
    warning: bool,
    reason: &str,
    note: String,
) {
    // The recorder counts an Event as a repeat of the last one with the same type, reason and
    // action, and keeps the first one's note (kube-runtime 5.0.0 src/events.rs:245-255): a
    // second refusal of the same reason naming another image or destination would show the
    // first's words. The action carries a digest of the note, so only the same words repeat.
    let tag = hexagone_platform::digest::sha256_tag(note.as_bytes());
    let action = format!("Reconcile {}", &tag[tag.len() - 12..]);
    let e = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(crate::qualifier::truncate(note)),
        action,
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&e, &wp.object_ref(&())).await {
        tracing::warn!("event on Workplace {}: {err}", key(wp));
    }
}
