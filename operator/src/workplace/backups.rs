//! The backups' health: each backup CronJob's latest Job (the one it started last, by its owner
//! reference) and its last success, into the status, and Degraded with a Warning Event while a
//! latest run failed. A backup whose upload is lost fails its Job (the rendered upload reads the
//! dump back, `hexagone_platform::render`); this is where ops see it without listing Jobs.

use hexagone_platform::labels::INSTANCE_LABEL;
use hexagone_platform::workplace::BackupStatus;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::status::Report;
use super::{Context, ReconcileError, failed};

/// Sets each backup's status; returns what failed (`name: why`), for Degraded.
pub(super) async fn backups(
    ctx: &Context,
    ns: &str,
    name: &str,
    report: &mut Report,
) -> Result<Vec<String>, ReconcileError> {
    let crons = Api::<CronJob>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
        .await
        .map_err(failed(format!("listing CronJobs in {ns}")))?;
    if crons.items.is_empty() {
        return Ok(Vec::new());
    }
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(failed(format!("listing Jobs in {ns}")))?;
    let mut failing = Vec::new();
    for cron in &crons.items {
        let status = of(cron, &jobs.items);
        if status.last_run == "Failed" {
            failing.push(format!(
                "{}: {} failed ({}); last success {}",
                status.name,
                status.job.as_deref().unwrap_or("a run"),
                status.message.as_deref().unwrap_or("no reason given"),
                status.last_success.as_deref().unwrap_or("never")
            ));
        }
        report.status.backups.push(status);
    }
    report.status.backups.sort_by(|a, b| a.name.cmp(&b.name));
    failing.sort();
    Ok(failing)
}

/// The CronJob's latest Job among `jobs` (the one it owns, as controller, created last) and how
/// it ended.
fn of(cron: &CronJob, jobs: &[Job]) -> BackupStatus {
    let uid = cron.uid();
    let latest = jobs
        .iter()
        .filter(|j| {
            j.owner_references().iter().any(|r| {
                r.kind == "CronJob" && Some(&r.uid) == uid.as_ref() && r.controller == Some(true)
            })
        })
        .max_by(|a, b| {
            (a.creation_timestamp(), a.name_any()).cmp(&(b.creation_timestamp(), b.name_any()))
        });
    let condition = |j: &Job, type_: &str| {
        j.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == "True"))
            .cloned()
    };
    let status = cron.status.as_ref();
    let scheduled = status
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0);
    let succeeded = status
        .and_then(|s| s.last_successful_time.as_ref())
        .map(|t| t.0);
    let active = status
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| !a.is_empty());
    // A run the controller scheduled after the last success, with no Job of it to be seen (not
    // active, the latest Job older): deleted, so its failure cannot hide.
    let vanished = match (scheduled, latest) {
        (Some(at), _) if active || succeeded.is_some_and(|s| s >= at) => None,
        (Some(at), Some(j)) if j.creation_timestamp().is_some_and(|c| c.0 >= at) => None,
        (Some(at), _) => Some(at),
        (None, _) => None,
    };
    let (last_run, message) = match latest {
        _ if vanished.is_some() => (
            "Failed",
            Some(format!(
                "the run scheduled at {} did not succeed and its Job is gone",
                vanished.expect("some")
            )),
        ),
        None => ("None", None),
        Some(j) => match (condition(j, "Complete"), condition(j, "Failed")) {
            (Some(_), _) => ("Succeeded", None),
            (None, Some(c)) => (
                "Failed",
                Some(format!(
                    "{}: {}",
                    c.reason.as_deref().unwrap_or("Failed"),
                    c.message.as_deref().unwrap_or_default()
                )),
            ),
            (None, None) => ("Running", None),
        },
    };
    BackupStatus {
        name: cron.name_any(),
        last_run: last_run.to_owned(),
        job: latest.filter(|_| vanished.is_none()).map(|j| j.name_any()),
        last_success: cron
            .status
            .as_ref()
            .and_then(|s| s.last_successful_time.as_ref())
            .map(|t| t.0.to_string()),
        message,
    }
}
