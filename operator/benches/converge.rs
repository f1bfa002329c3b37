//! Scale benchmark of the Workplace operator on the real control plane: 1,000 kwok nodes (all
//! attested, French, in three zones) and 20 Workplaces at the 5,000-user profile, in onboarded
//! namespaces. The operator runs as its own process with its ServiceAccount's identity from the
//! start (it qualifies the nodes, then idles through the baseline rounds). Two sides, alternated
//! over several rounds (direct, operator; then operator, direct; ...) so that a machine busier
//! in one part of the run weighs on both:
//! - direct: the same rendered objects server-side applied by the benchmark (no operator in the
//!   loop), until every Deployment and StatefulSet is ready;
//! - operator: 20 Workplaces created, until every one is Ready (which needs every workload
//!   ready).
//!
//! Each round's namespaces are deleted before the next side starts. Printed: each round's times,
//! the ratio operator / direct per round with its median and range (target: at most 1.2), the
//! operator's peak resident memory over its whole life (geolocation data, qualification of
//! 1,000 nodes and every round; target: under 100 MB) and its memory now, and the machine's
//! load average at the start and the end.
//!
//! `tests/run bench` runs it; alone: `HEXAGONE_CONTROLPLANE_BIN=… cargo bench -p
//! hexagone-operator --bench converge`. `HEXAGONE_BENCH_NODES` and `HEXAGONE_BENCH_WORKPLACES`
//! scale it down for a quick look, `HEXAGONE_BENCH_ROUNDS` (default 3) sets the rounds.

#[allow(dead_code)]
#[path = "../tests/it/util.rs"]
mod util;

use std::time::{Duration, Instant};

use hexagone_operator::ONBOARDED_NAMESPACE_LABEL;
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
        "storage": {"provisioner": util::TEST_PROVISIONER},
        // The shipped strict policy requires digests.
        "components": util::pinned_components(None)
    }))
    .expect("a valid spec")
}

/// Creates namespace `name` as onboarding does (restricted Pod Security, the label the
/// operator's admission guard requires).
async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let (key, value) = ONBOARDED_NAMESPACE_LABEL;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted", key: value}}}))?;
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

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The median and the range of `xs`.
fn median_range(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

/// Deletes the namespaces and waits until they are gone (the operator's finalizer included).
/// The operator's Workplace reconciles, applies and qualification passes, from its metrics.
async fn metrics(port: u16) -> [f64; 3] {
    let body = hexagone_testbed::http::request_async(
        &format!("127.0.0.1:{port}"),
        "GET",
        "/metrics",
        None,
        b"",
        hexagone_testbed::http::DEFAULT_TIMEOUT,
    )
    .await
    .map(|a| a.body)
    .unwrap_or_default();
    let counter = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    [
        counter("hexagone_workplace_reconciles_total"),
        counter("hexagone_workplace_applies_total"),
        counter("hexagone_qualification_passes_total"),
    ]
}

async fn delete_namespaces(
    admin: &Client,
    names: &[String],
    limit: Duration,
) -> anyhow::Result<()> {
    for ns in names {
        Api::<Namespace>::all(admin.clone())
            .delete(ns, &DeleteParams::default())
            .await?;
    }
    wait("namespaces deleted", limit, async || {
        let left = Api::<Namespace>::all(admin.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .filter(|n| names.contains(&n.name_any()))
            .count();
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} left"))
        }
    })
    .await
}

/// The same objects the operator renders, server-side applied directly; seconds until ready.
async fn direct(admin: &Client, names: &[String], limit: Duration) -> anyhow::Result<f64> {
    let spec = spec();
    let catalog = spec
        .resolve(Catalog::shipped())
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let zones: Vec<String> = ZONES.iter().map(|z| z.to_string()).collect();
    let started = Instant::now();
    for ns in names {
        namespace(admin, ns).await?;
        let rendered = render(&RenderInput {
            name: "intranet",
            namespace: ns,
            spec: &spec,
            catalog: &catalog,
            eligible_zones: &zones,
        })
        .map_err(|e| anyhow::anyhow!(e))?;
        apply_rendered(admin, ns, "intranet", &rendered, None).await?;
    }
    wait("baseline ready", limit, async || {
        all_ready(admin, names).await
    })
    .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Workplaces created for the operator; seconds until every one is Ready.
async fn operated(admin: &Client, names: &[String], limit: Duration) -> anyhow::Result<f64> {
    let spec = spec();
    let started = Instant::now();
    for ns in names {
        namespace(admin, ns).await?;
        Api::<Workplace>::namespaced(admin.clone(), ns)
            .create(
                &PostParams::default(),
                &Workplace::new("intranet", spec.clone()),
            )
            .await?;
    }
    wait("every Workplace Ready", limit, async || {
        let mut waiting = 0;
        let mut why = String::new();
        for ns in names {
            let wp = Api::<Workplace>::namespaced(admin.clone(), ns)
                .get("intranet")
                .await
                .map_err(|e| e.to_string())?;
            let conditions = wp.status.map(|s| s.conditions).unwrap_or_default();
            if !conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            {
                waiting += 1;
                // What the first one waiting says, for the message at the deadline.
                if waiting == 1 {
                    why = conditions
                        .iter()
                        .filter(|c| c.status != "True" || c.type_ == "Degraded")
                        .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                }
            }
        }
        if waiting == 0 {
            Ok(())
        } else {
            Err(format!("{waiting} not Ready (the first: {why})"))
        }
    })
    .await?;
    let through = started.elapsed().as_secs_f64();
    // Ready means every workload is: checked here from the objects themselves.
    all_ready(admin, names)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(through)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let nodes = env_or("HEXAGONE_BENCH_NODES", 1000);
    let count = env_or("HEXAGONE_BENCH_WORKPLACES", 20);
    let rounds = env_or("HEXAGONE_BENCH_ROUNDS", 3).max(1);
    let limit = Duration::from_secs(900);
    println!(
        "converge: {nodes} kwok nodes, {count} Workplaces at users5000, {rounds} alternating rounds (load average {})",
        load()
    );
    let bed = util::start().await?;
    let admin = bed.client();
    let officer = bed.client_as("alice", Some(util::OFFICERS)).await?;
    let names = |side: &str, round: usize| -> Vec<String> {
        (0..count)
            .map(|i| format!("{side}-{round}-{i:02}"))
            .collect()
    };

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
    for (i, f) in fakes.iter().enumerate() {
        let mut a = util::attestation(&f.name, "FR", "2030-01-01T00:00:00Z");
        a.spec.zone = Some(ZONES[i % ZONES.len()].to_owned());
        util::create_attestation(&officer, &a).await?;
    }
    // The security officer lists every namespace the operator's rounds use.
    let mut policy = util::policy("dr", "france-diffusion-restreinte");
    policy.spec.namespaces = (0..rounds).flat_map(|r| names("op", r)).collect();
    Api::<LocalityPolicyResource>::all(officer.clone())
        .create(&PostParams::default(), &policy)
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
    // Idle: node heartbeats and nothing else; a pass over every node is due only when
    // something a pass reads changes.
    let before = metrics(port).await[2];
    tokio::time::sleep(Duration::from_secs(20)).await;
    println!(
        "  idle for 20 s: {} qualification passes",
        metrics(port).await[2] - before
    );

    let mut ratios = Vec::new();
    let (mut directs, mut operators) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut times = [0.0; 2];
        // Even rounds: direct first; odd rounds: the operator first.
        for side in [round % 2, 1 - round % 2] {
            let (label, ns) = if side == 0 {
                ("direct", names("base", round))
            } else {
                ("op", names("op", round))
            };
            times[side] = if side == 0 {
                direct(&admin, &ns, limit).await?
            } else {
                operated(&admin, &ns, limit).await?
            };
            println!(
                "  round {}: {label:>6} {count} workplaces ready in {:.1} s (load average {}, operator memory {:.1} MB)",
                round + 1,
                times[side],
                load(),
                memory_kib(pid).1 as f64 / 1024.0
            );
            delete_namespaces(&admin, &ns, limit).await?;
        }
        directs.push(times[0]);
        operators.push(times[1]);
        ratios.push(times[1] / times[0]);
        println!(
            "  round {}: operator / direct apply = {:.2}",
            round + 1,
            times[1] / times[0]
        );
    }
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::all(admin.clone())
        .list(&ListParams::default().labels(INSTANCE_LABEL))
        .await?
        .items
        .len();
    let counters = metrics(port).await;
    println!(
        "  operator: {} Workplace reconciles, {} of them applying; {} qualification passes",
        counters[0], counters[1], counters[2]
    );
    let (peak, now) = memory_kib(pid);
    let (d, dlo, dhi) = median_range(&directs);
    let (o, olo, ohi) = median_range(&operators);
    let (r, rlo, rhi) = median_range(&ratios);
    println!(
        "  direct apply: median {d:.1} s (range {dlo:.1}-{dhi:.1}); operator: median {o:.1} s (range {olo:.1}-{ohi:.1}); {pods} pods left"
    );
    println!(
        "converge: operator / direct apply = {r:.2} median over {rounds} rounds (range {rlo:.2}-{rhi:.2}; target <= 1.2); operator memory peak {:.1} MB, now {:.1} MB (target < 100 MB); load average {}",
        peak as f64 / 1024.0,
        now as f64 / 1024.0,
        load()
    );
    operator.kill().await.ok();
    Ok(())
}
