//! A backup that fails is seen on the Workplace: its latest Job's failure (a lost upload fails
//! the rendered upload, `platform/src/workplace/render.rs`, `backup_upload`) sets Degraded with
//! the CronJob, the Job and why, raises a Warning Event, and shows in `status.backups`; the next
//! run's success clears it. kwok runs no containers, so the Jobs' outcomes are written as the
//! Job controller would write them, on Jobs the built-in controller leaves alone
//! (`spec.managedBy`).

use hexagone_platform::workplace::Workplace;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::util::{self, Operator, eventually};
use crate::workplace::{
    NS, cluster, create_workplace, events_about, expect_message, namespace_admin,
};

/// A Job of `cron` named `name`, created as the CronJob controller does (its identity: no one
/// else may, `manifests/admission/backups.yaml`), started at `started`, ended as `condition`
/// (`Complete` or `Failed`, with `reason` and `message`: `ended`), its status written as the Job
/// controller writes it.
async fn run(
    controller: &Api<Job>,
    jobs: &Api<Job>,
    cron: &CronJob,
    name: &str,
    started: &str,
    ended: (&str, &str, &str),
) -> anyhow::Result<()> {
    let (condition, reason, message) = ended;
    let template = cron
        .spec
        .as_ref()
        .unwrap()
        .job_template
        .spec
        .clone()
        .unwrap();
    let mut job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": cron.name_any(),
            "uid": cron.uid().unwrap(), "controller": true, "blockOwnerDeletion": true}]},
    }))?;
    let mut spec = template;
    // Not the built-in controller's: kwok would never end its pods.
    spec.managed_by = Some("hexagone.test/job-outcomes".into());
    job.spec = Some(spec);
    controller.create(&PostParams::default(), &job).await?;
    let mut conditions = vec![
        json!({"type": condition, "status": "True", "reason": reason,
        "message": message, "lastProbeTime": started, "lastTransitionTime": started}),
    ];
    // The controller adds the target condition before the terminal one.
    let target = if condition == "Failed" {
        "FailureTarget"
    } else {
        "SuccessCriteriaMet"
    };
    conditions.insert(
        0,
        json!({"type": target, "status": "True", "reason": reason,
        "message": message, "lastProbeTime": started, "lastTransitionTime": started}),
    );
    let mut status = json!({"startTime": started, "conditions": conditions,
        "active": 0, "ready": 0, "terminating": 0,
        "uncountedTerminatedPods": {}});
    if condition == "Failed" {
        status["failed"] = json!(4);
    } else {
        status["succeeded"] = json!(1);
        status["completionTime"] = json!(started);
    }
    jobs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_degrades_the_workplace_until_one_succeeds() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    let _operator = Operator::start(&bed).await?;
    let workplaces: Api<Workplace> = create_workplace(&admin, "intranet").await?;
    let crons = Api::<CronJob>::namespaced(admin.clone(), NS);
    let cron = eventually("the PostgreSQL backup CronJob", || {
        let crons = crons.clone();
        async move {
            crons
                .get("postgresql-backup")
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await?;
    let jobs = Api::<Job>::namespaced(admin.clone(), NS);
    let controller = Api::<Job>::namespaced(
        bed.client_as("system:serviceaccount:kube-system:cronjob-controller", None)
            .await?,
        NS,
    );
    // The namespace's admin may create Jobs, but not one a backup CronJob owns: a Job that
    // runs `true` would clear a failure and count as the backup's last success.
    let tenant = Api::<Job>::namespaced(namespace_admin(&bed, "carol").await?, NS);
    let mut forged: Job = serde_json::from_value(json!({
        "metadata": {"name": "postgresql-backup-forged", "namespace": NS, "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "postgresql-backup",
            "uid": cron.uid().unwrap(), "controller": true}]},
    }))?;
    forged.spec = cron.spec.as_ref().unwrap().job_template.spec.clone();
    let refused = eventually("the forged backup Job refused", || {
        let (tenant, forged) = (tenant.clone(), forged.clone());
        async move {
            match tenant.create(&PostParams::default(), &forged).await {
                Err(e) => Ok(e.to_string()),
                Ok(_) => {
                    let _ = tenant
                        .delete("postgresql-backup-forged", &Default::default())
                        .await;
                    Err("created".to_owned())
                }
            }
        }
    })
    .await?;
    assert!(
        refused.contains(
            "only the CronJob controller starts Jobs owned by backup CronJob postgresql-backup"
        ),
        "{refused}"
    );
    let why = "Job has reached the specified backoff limit";
    run(
        &controller,
        &jobs,
        &cron,
        "postgresql-backup-29000001",
        "2026-12-08T02:00:00Z",
        ("Failed", "BackoffLimitExceeded", why),
    )
    .await?;
    let degraded = format!(
        "the latest run failed: postgresql-backup: postgresql-backup-29000001 failed \
         (BackoffLimitExceeded: {why}); last success never"
    );
    expect_message(
        &admin,
        "intranet",
        "Degraded",
        "True",
        "BackupFailed",
        &[&degraded],
    )
    .await?;
    eventually("a BackupFailed Warning", || {
        let admin = admin.clone();
        let degraded = degraded.clone();
        async move {
            let events = events_about(&admin, "intranet").await;
            events
                .iter()
                .find(|e| {
                    e.reason.as_deref() == Some("BackupFailed")
                        && e.type_.as_deref() == Some("Warning")
                        && e.note.as_deref() == Some(degraded.as_str())
                })
                .map(|_| ())
                .ok_or_else(|| {
                    format!(
                        "{:?}",
                        events
                            .iter()
                            .map(|e| (&e.reason, &e.note))
                            .collect::<Vec<_>>()
                    )
                })
        }
    })
    .await?;
    let wp = workplaces.get("intranet").await?;
    let backups = serde_json::to_value(&wp.status.unwrap().backups)?;
    assert_eq!(
        backups,
        json!([
            {"name": "mysql-backup", "lastRun": "None"},
            {"name": "postgresql-backup", "lastRun": "Failed", "job": "postgresql-backup-29000001",
             "message": format!("BackoffLimitExceeded: {why}")}
        ])
    );

    // The next run succeeds: Degraded clears; the CronJob's last success shows (written by the
    // CronJob controller, here as it would).
    run(
        &controller,
        &jobs,
        &cron,
        "postgresql-backup-29000002",
        "2026-12-08T03:00:00Z",
        (
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ),
    )
    .await?;
    // What the CronJob controller writes in the CronJob's status.
    let controller_writes = |status: serde_json::Value| {
        let crons = crons.clone();
        async move {
            crons
                .patch_status(
                    "postgresql-backup",
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await
        }
    };
    controller_writes(json!({"lastSuccessfulTime": "2026-12-08T03:00:05Z"})).await?;
    expect_message(
        &admin,
        "intranet",
        "Degraded",
        "False",
        "AsExpected",
        &["nothing is degraded"],
    )
    .await?;
    let wp = workplaces.get("intranet").await?;
    let backups = serde_json::to_value(&wp.status.unwrap().backups)?;
    assert_eq!(
        backups[1],
        json!({"name": "postgresql-backup", "lastRun": "Succeeded",
               "job": "postgresql-backup-29000002", "lastSuccess": "2026-12-08T03:00:05Z"})
    );
    // A later scheduled run whose Job is deleted (by whoever may delete Jobs): its failure
    // does not vanish with it.
    controller_writes(json!({"lastScheduleTime": "2026-12-09T03:00:00Z"})).await?;
    expect_message(
        &admin,
        "intranet",
        "Degraded",
        "True",
        "BackupFailed",
        &[
            "postgresql-backup: a run failed (the run scheduled at 2026-12-09T03:00:00Z did not \
           succeed and its Job is gone); last success 2026-12-08T03:00:05Z",
        ],
    )
    .await?;
    Ok(())
}
