//! Scale benchmark of the Workplace operator on the real control plane: 1,000 kwok nodes (all
//! attested, French, in three zones) and 20 Workplaces at the 5,000-user profile. Baseline, in
//! the same run: the same rendered objects server-side applied directly (no operator in the
//! loop), waited for until every Deployment and StatefulSet is ready. Then the operator, as its
//! own process with its ServiceAccount's identity, converges 20 Workplaces; the ratio of the two
//! times is printed (target: at most 1.5), with the operator's peak and current memory (target:
//! under 200 MB).
//!
//! `tests/run bench` runs it; alone: `HEXAGONE_CONTROLPLANE_BIN=… cargo bench -p
//! hexagone-operator --bench converge`. `HEXAGONE_BENCH_NODES` and `HEXAGONE_BENCH_WORKPLACES`
//! scale it down for a quick look.

#[allow(dead_code)]
#[path = "../tests/it/util.rs"]
mod util;

use std::time::{Duration, Instant};

use hexagone_operator::workplace::apply_rendered;
use hexagone_platform::catalog::Catalog;
use hexagone_platform::k8s::LocalityPolicyResource;
use hexagone_platform::render::{INSTANCE_LABEL, RenderInput, render};
use hexagone_platform::workplace::{Workplace, WorkplaceSpec};
use hexagone_testbed::FakeNode;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// Addresses the vendored data places in France on allow-listed operators (OVH, Outscale).
const ADDRESSES: [&str; 5] = [
    "51.38.1.1",
    "51.38.3.3",
    "51.38.4.4",
    "51.38.5.5",
    "46.231.144.1",
];
const ZONES: [&str; 3] = ["fr-par-1", "fr-par-2", "fr-par-3"];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spec() -> WorkplaceSpec {
    serde_json::from_value(json!({
        "policy": "dr",
        "profile": "users5000",
        "domain": "intranet.example.fr",
        "storage": {"provisioner": util::TEST_PROVISIONER}
    }))
    .expect("a valid spec")
}

async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Whether every Deployment and StatefulSet of the namespaces is fully ready.
async fn all_ready(client: &Client, namespaces: &[String]) -> Result<(), String> {
    let mut waiting = 0;
    for ns in namespaces {
        let d = Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if d.items.is_empty() || s.items.is_empty() {
            waiting += 1;
            continue;
        }
        // (ready, desired) replicas of every workload.
        waiting += d
            .items
            .iter()
            .map(|x| {
                let ready = x.status.as_ref().and_then(|s| s.ready_replicas);
                (ready, x.spec.as_ref().and_then(|s| s.replicas))
            })
            .chain(s.items.iter().map(|x| {
                let ready = x.status.as_ref().and_then(|s| s.ready_replicas);
                (ready, x.spec.as_ref().and_then(|s| s.replicas))
            }))
            .filter(|(ready, want)| ready.unwrap_or(0) < want.unwrap_or(1))
            .count();
    }
    if waiting == 0 {
        Ok(())
    } else {
        Err(format!("{waiting} workloads not ready"))
    }
}

async fn wait(
    what: &str,
    limit: Duration,
    check: impl AsyncFn() -> Result<(), String>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => anyhow::bail!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let nodes = env_or("HEXAGONE_BENCH_NODES", 1000);
    let count = env_or("HEXAGONE_BENCH_WORKPLACES", 20);
    let limit = Duration::from_secs(900);
    println!("converge: {nodes} kwok nodes, {count} Workplaces at users5000");
    let bed = util::start().await?;
    let admin = bed.client();
    let officer = bed.client_as("alice", Some(util::OFFICERS)).await?;

    let started = Instant::now();
    let fakes: Vec<FakeNode> = (0..nodes)
        .map(|i| {
            FakeNode::new(format!("fr-{i:04}"))
                .label("topology.kubernetes.io/region", "fr-par")
                .label("topology.kubernetes.io/zone", ZONES[i % ZONES.len()])
                .external_ip(ADDRESSES[i % ADDRESSES.len()].parse().expect("an address"))
                .capacity("cpu", "32")
                .capacity("memory", "128Gi")
                .capacity("pods", "110")
        })
        .collect();
    bed.add_nodes(&fakes).await?;
    for f in &fakes {
        util::create_attestation(
            &officer,
            &util::attestation(&f.name, "FR", "2030-01-01T00:00:00Z"),
        )
        .await?;
    }
    Api::<LocalityPolicyResource>::all(admin.clone())
        .create(
            &PostParams::default(),
            &util::policy("dr", "france-diffusion-restreinte"),
        )
        .await?;
    println!(
        "  cluster ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The operator as its own process, with its ServiceAccount's identity.
    let kubeconfig = bed.kubeconfig_as(util::OPERATOR_USER, None)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_hexagone-operator"))
        .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let pid = operator.id().unwrap_or(0);
    let _provisioner = util::Provisioner::start(admin.clone());
    let started = Instant::now();
    wait("every node eligible", limit, async || {
        let p = Api::<LocalityPolicyResource>::all(admin.clone())
            .get("dr")
            .await
            .map_err(|e| e.to_string())?;
        let eligible = p.status.map(|s| s.eligible_nodes).unwrap_or(0) as usize;
        if eligible == nodes {
            Ok(())
        } else {
            Err(format!("{eligible} eligible"))
        }
    })
    .await?;
    println!(
        "  {nodes} nodes qualified and labelled in {:.1} s (operator memory peak {:.1} MB)",
        started.elapsed().as_secs_f64(),
        memory_kib(pid).0 as f64 / 1024.0
    );

    // Baseline: the same objects, applied directly.
    let spec = spec();
    let catalog = spec
        .resolve(Catalog::shipped())
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let zones: Vec<String> = ZONES.iter().map(|z| z.to_string()).collect();
    let base: Vec<String> = (0..count).map(|i| format!("base-{i:02}")).collect();
    let started = Instant::now();
    for ns in &base {
        namespace(&admin, ns).await?;
        let rendered = render(&RenderInput {
            name: "intranet",
            namespace: ns,
            spec: &spec,
            catalog: &catalog,
            eligible_zones: &zones,
        })
        .map_err(|e| anyhow::anyhow!(e))?;
        apply_rendered(&admin, ns, "intranet", &rendered, None).await?;
    }
    wait("baseline ready", limit, async || {
        all_ready(&admin, &base).await
    })
    .await?;
    let direct = started.elapsed().as_secs_f64();
    println!(
        "  direct server-side apply: {count} workplaces ready in {direct:.1} s (operator idle, memory peak {:.1} MB)",
        memory_kib(pid).0 as f64 / 1024.0
    );
    for ns in &base {
        Api::<Namespace>::all(admin.clone())
            .delete(ns, &DeleteParams::default())
            .await?;
    }
    wait("baseline namespaces deleted", limit, async || {
        let left = Api::<Namespace>::all(admin.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .filter(|n| n.name_any().starts_with("base-"))
            .count();
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} left"))
        }
    })
    .await?;

    // The operator.
    let op: Vec<String> = (0..count).map(|i| format!("op-{i:02}")).collect();
    let started = Instant::now();
    for ns in &op {
        namespace(&admin, ns).await?;
        Api::<Workplace>::namespaced(admin.clone(), ns)
            .create(
                &PostParams::default(),
                &Workplace::new("intranet", spec.clone()),
            )
            .await?;
    }
    wait("every Workplace Ready", limit, async || {
        let mut waiting = 0;
        for ns in &op {
            let wp = Api::<Workplace>::namespaced(admin.clone(), ns)
                .get("intranet")
                .await
                .map_err(|e| e.to_string())?;
            let ready = wp.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            waiting += usize::from(!ready);
        }
        if waiting == 0 {
            Ok(())
        } else {
            Err(format!("{waiting} not Ready"))
        }
    })
    .await?;
    let through = started.elapsed().as_secs_f64();
    all_ready(&admin, &op)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::all(admin.clone())
        .list(&ListParams::default().labels(INSTANCE_LABEL))
        .await?
        .items
        .len();
    let (peak, now) = memory_kib(pid);
    println!("  operator: {count} Workplaces Ready in {through:.1} s ({pods} pods)");
    println!(
        "converge: operator / direct apply = {:.2} (target <= 1.5); operator memory peak {:.1} MB, now {:.1} MB (target < 200 MB)",
        through / direct,
        peak as f64 / 1024.0,
        now as f64 / 1024.0
    );
    operator.kill().await.ok();
    Ok(())
}
