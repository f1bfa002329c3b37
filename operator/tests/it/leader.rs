//! Two operator replicas, one active: a standby does nothing while another holds the Lease,
//! takes over when the holder stops renewing it (a crash leaves exactly that behind) or
//! releases it (graceful shutdown), and a reconcile cut by an apiserver killed mid-way
//! converges once the apiserver is back.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::util::{self, Operator, Provisioner, eventually};
use crate::workplace::{NS, cluster, expect_condition, workplace};
use hexagone_platform::workplace::Workplace;

async fn holder(leases: &Api<Lease>) -> Result<String, String> {
    let l = leases
        .get(hexagone_operator::LEASE_NAME)
        .await
        .map_err(|e| e.to_string())?;
    l.spec
        .and_then(|s| s.holder_identity)
        .ok_or_else(|| "no holder".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_and_a_cut_reconcile_converges() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    let mut bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    let _provisioner = Provisioner::start(admin.clone());
    let leases = Api::<Lease>::namespaced(admin.clone(), "hexagone-system");

    // What a replica that crashed while leading leaves: a Lease it no longer renews. It runs
    // 15 s from now: the checks below that the standby leaves it alone come after creating the
    // Workplace, starting the standby and 2 s of waiting, which a loaded machine can stretch.
    let now = k8s_openapi::jiff::Timestamp::now();
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": hexagone_operator::LEASE_NAME, "namespace": "hexagone-system"},
        "spec": {"holderIdentity": "crashed-replica", "leaseDurationSeconds": 15,
                 "acquireTime": now.to_string(), "renewTime": now.to_string(), "leaseTransitions": 0}
    }))?;
    leases.create(&PostParams::default(), &lease).await?;
    let workplaces = Api::<Workplace>::namespaced(admin.clone(), NS);
    workplaces
        .create(&PostParams::default(), &workplace("intranet", json!({}))?)
        .await?;
    let b = Operator::start_as(&bed, "replica-b").await?;
    // While the crashed replica's Lease runs, the standby leaves the Workplace alone.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(holder(&leases).await.as_deref(), Ok("crashed-replica"));
    assert!(
        workplaces.get("intranet").await?.status.is_none(),
        "a standby reconciled while another replica held the Lease"
    );
    eventually("replica-b takes the expired Lease", || {
        let leases = leases.clone();
        async move {
            match holder(&leases).await? {
                h if h == "replica-b" => Ok(()),
                h => Err(h),
            }
        }
    })
    .await?;
    expect_condition(&admin, "intranet", "Ready", "True", None).await?;
    let (status, body) = b.get("/metrics").await?;
    assert_eq!(status, 200);
    assert!(body.contains("hexagone_operator_leader 1"), "{body}");

    // A second replica stands by; the leader stops gracefully and hands over at once.
    let c = Operator::start_as(&bed, "replica-c").await?;
    eventually("replica-c serves its metrics as a standby", || {
        let c = &c;
        async move {
            let (_, body) = c.get("/metrics").await.map_err(|e| e.to_string())?;
            if body.contains("hexagone_operator_leader 0") {
                Ok(())
            } else {
                Err(body)
            }
        }
    })
    .await?;
    drop(b);
    eventually("replica-c takes over", || {
        let leases = leases.clone();
        async move {
            match holder(&leases).await? {
                h if h == "replica-c" => Ok(()),
                h => Err(h),
            }
        }
    })
    .await?;

    // A change, and the apiserver killed while the new leader reconciles it.
    workplaces
        .patch(
            "intranet",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"components": {"jitsi-web": {"replicas": 3}}}})),
        )
        .await?;
    bed.kill_apiserver().await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    bed.start_apiserver().await?;
    // After an outage the operator's own backoffs bound how soon it comes back: a reconcile
    // that failed while the apiserver was down is retried after up to 60 s (`error_policy`),
    // and a watch that failed reconnects after up to 30 s (kube's default backoff). So the
    // bound here is those 90 s plus the usual convergence time, not the usual time alone
    // (which failed once under load, at 90 s, with the status one step behind).
    let after_outage = std::time::Duration::from_secs(60 + 30) + util::CONVERGE;
    hexagone_testbed::wait::until("jitsi-web scaled to 3 and ready", after_outage, || {
        let workplaces = workplaces.clone();
        async move {
            let wp = workplaces
                .get("intranet")
                .await
                .map_err(|e| e.to_string())?;
            let s = wp.status.ok_or("no status")?;
            let web = s
                .components
                .iter()
                .find(|c| c.name == "jitsi-web")
                .ok_or("no jitsi-web")?;
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if web.replicas == 3 && web.ready && ready {
                Ok(())
            } else {
                Err(format!("{web:?} ready={ready}"))
            }
        }
    })
    .await?;
    c.check_running()?;
    Ok(())
}
