//! One reconcile of a live Workplace, in the order of its conditions: the refusals (paused, a
//! second Workplace in the namespace, invalid spec, unknown or invalid policy, no eligible node
//! or zone), then rendering and applying, readiness, capacity and sovereignty, then the status.

use std::collections::BTreeSet;
use std::sync::Arc;

use hexagone_platform::Mode;
use hexagone_platform::catalog::Catalog;
use hexagone_platform::k8s::LocalityPolicyResource;
use hexagone_platform::labels::{ATTESTED_ZONE_LABEL, ZONE_LABEL, eligible_label};
use hexagone_platform::render::{RenderInput, render};
use hexagone_platform::workplace::Workplace;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::apply::{apply_rendered_telling, storage_class_taken};
use super::capacity::capacity_shortfall;
use super::prune::prune;
use super::readiness::readiness;
use super::refuse::{refusals, refuse};
use super::sovereignty::{Response, sovereignty};
use super::status::{Report, event, publish_status};
use super::supply::{judge_egress, judge_images_and_storage};
use super::{Context, RESYNC, ReconcileError, SOON, failed, key};
use crate::changes::hash_of;

/// How long a reconcile waits for the Nodes' cache to be filled (the first listing after the
/// operator starts, or takes the Lease) before it fails and is tried again.
const NODES_LISTED: std::time::Duration = std::time::Duration::from_secs(10);

/// Deploys a live Workplace: refuses what cannot be deployed, else applies the rendered objects
/// and reports readiness, capacity and sovereignty (evicting misplaced pods under enforce).
pub(super) async fn converge(wp: &Workplace, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = wp.namespace().unwrap_or_default();
    let name = wp.name_any();
    let mut report = Report::new(wp);
    if wp.spec.paused {
        return paused(wp, ctx, report).await;
    }

    // One workplace per namespace: its Services are named after the components.
    let others = Api::<Workplace>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map_err(failed(format!("listing Workplaces in {ns}")))?;
    if let Some(first) = others
        .items
        .iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .min_by_key(|o| (o.creation_timestamp().map(|t| t.0), o.name_any()))
        && first.name_any() != name
    {
        let m = format!(
            "namespace {ns} already holds Workplace {}: one workplace per namespace (its services are named after the components)",
            first.name_any()
        );
        return refuse(wp, ctx, report, "NamespaceTaken", m).await;
    }

    let catalog = match wp.spec.resolve(Catalog::shipped()) {
        Ok(c) => c,
        Err(problems) => {
            let m = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return refuse(wp, ctx, report, "InvalidSpec", m).await;
        }
    };
    let label = match eligible_label(&wp.spec.policy) {
        Ok(l) => l,
        Err(m) => return refuse(wp, ctx, report, "InvalidSpec", format!("spec.policy: {m}")).await,
    };
    let policy = match Api::<LocalityPolicyResource>::all(ctx.client.clone())
        .get_opt(&wp.spec.policy)
        .await
        .map_err(failed(format!("reading LocalityPolicy {}", wp.spec.policy)))?
    {
        Some(p) => p,
        None => {
            let m = format!(
                "LocalityPolicy {} does not exist: create it (see manifests/samples/) or name another",
                wp.spec.policy
            );
            return refuse(wp, ctx, report, "PolicyNotFound", m).await;
        }
    };
    if !policy.spec.allows_namespace(&ns) {
        let m = not_allowed(&wp.spec.policy, &ns);
        report.set("Sovereign", false, "PolicyNotAllowed", m.clone());
        return refuse(wp, ctx, report, "PolicyNotAllowed", m).await;
    }
    if let Some(e) = policy.status.as_ref().and_then(|s| s.error.clone()) {
        let m = format!("LocalityPolicy {}: {e}", wp.spec.policy);
        return refuse(wp, ctx, report, "PolicyInvalid", m).await;
    }
    // What ops wrote that the policy alone may allow: images, storage, egress.
    let judged = match judge_images_and_storage(&catalog, &wp.spec.storage, &policy.spec) {
        Some(r) => Some(r),
        None => judge_egress(&wp.spec.egress, &policy.spec, ctx).await?,
    };
    if let Some((reason, m)) = judged {
        let m = format!("LocalityPolicy {}: {m}", wp.spec.policy);
        return refuse(wp, ctx, report, reason, m).await;
    }
    let response = if policy.spec.mode == Mode::Enforce {
        Response::Evict
    } else {
        Response::Audit
    };

    // Eligible nodes, as the qualifier labelled them. Waited for a while only: a reconcile
    // waiting holds its Workplace, whose later changes wait behind it.
    if !crate::watches::listed(&ctx.nodes, NODES_LISTED).await {
        return Err(ReconcileError::NotListed(format!(
            "the Nodes were not listed within {NODES_LISTED:?}: eligibility unknown, nothing applied"
        )));
    }
    let eligible: Vec<Arc<Node>> = ctx
        .nodes
        .state()
        .into_iter()
        .filter(|n| n.labels().get(&label).map(String::as_str) == Some("true"))
        .collect();
    let Zones {
        counted: zones,
        unlisted,
        unattested,
    } = attested_zones(&eligible, &policy.spec);
    if !unlisted.is_empty() {
        let m = format!(
            "volumes are not placed in {}: {} not in LocalityPolicy {}'s regions table as a country it allows, and a node's kubelet may set its own zone label",
            unlisted.join(", "),
            if unlisted.len() == 1 {
                "this zone is"
            } else {
                "these zones are"
            },
            wp.spec.policy
        );
        event(ctx, wp, true, "ZoneNotInPolicy", m).await;
    }
    if !unattested.is_empty() {
        let m = format!(
            "these nodes' zone labels do not place volumes: {}; a node's kubelet may set its own zone label, so a zone counts only when it is the one the node's NodeAttestation names (spec.zone), and under LocalityPolicy {}, which requires attestations, only when one does",
            unattested.join(", "),
            wp.spec.policy
        );
        event(ctx, wp, true, "ZoneNotAttested", m).await;
    }
    report.status.eligible_nodes = u32::try_from(eligible.len()).unwrap_or(u32::MAX);
    report.status.eligible_zones = zones.clone();
    if eligible.is_empty() {
        let why = refusals(&policy, 3);
        let m = format!(
            "no node is eligible under LocalityPolicy {}, so nothing runs anywhere{}",
            wp.spec.policy,
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        );
        let mut report = report;
        sovereignty(wp, ctx, &policy, response, &mut report).await?;
        return refuse(wp, ctx, report, "NoEligibleNode", m).await;
    }
    if zones.is_empty() {
        let m = format!(
            "the {} eligible nodes carry no {ZONE_LABEL} label that LocalityPolicy {}'s regions table places in a country it allows and, where required, their NodeAttestation names, so no volume can be placed",
            eligible.len(),
            wp.spec.policy
        );
        // Nothing new is placed, but pods already running are still judged (and, under
        // enforce, evicted from nodes no longer eligible), as when no node is eligible.
        let mut report = report;
        sovereignty(wp, ctx, &policy, response, &mut report).await?;
        return refuse(wp, ctx, report, "NoEligibleZone", m).await;
    }

    let rendered = render(&RenderInput {
        name: &name,
        namespace: &ns,
        spec: &wp.spec,
        catalog: &catalog,
        eligible_zones: &zones,
    })
    .map_err(ReconcileError::Render)?;
    let capacity = capacity_shortfall(&catalog, wp, &eligible);

    let owner = wp
        .controller_owner_ref(&())
        .expect("a Workplace has a name and uid");
    // Applied already, and nothing of it changed since: readiness and placement only.
    let print = fingerprint(&owner.uid, &rendered);
    let (fresh, counted) = {
        let applied = ctx.applied.lock().expect("not poisoned");
        (applied.fresh(&ns, print), applied.counted(&ns))
    };
    if fresh.is_none() {
        if ctx.applied.lock().expect("not poisoned").terminating(&ns) {
            return Ok(Action::requeue(SOON));
        }
        let why = ctx.applied.lock().expect("not poisoned").why(&ns, print);
        tracing::info!("applying Workplace {}: {why}", key(wp));
        if let Some(m) = storage_class_taken(&ctx.client, &ns, &name).await? {
            return refuse(wp, ctx, report, "StorageClassTaken", m).await;
        }
        ctx.applied.lock().expect("not poisoned").starting(&ns);
        let wrote = |kind: &str, object: &str, version: String| {
            let mut applied = ctx.applied.lock().expect("not poisoned");
            let own = applied.own.entry(ns.clone()).or_default();
            own.insert((kind.to_owned(), object.to_owned(), version));
        };
        let applying =
            apply_rendered_telling(&ctx.client, &ns, &name, &rendered, Some(&owner), &wrote);
        let reverted = match applying.await {
            // Its namespace is being deleted, and the Workplace with it: every pod event of
            // the deletion would try again, each refused (a warning and a request each).
            Err(e) if e.namespace_terminating() => {
                tracing::info!(
                    "namespace {ns} is being deleted: Workplace {} applies nothing until it is gone",
                    key(wp)
                );
                let mut applied = ctx.applied.lock().expect("not poisoned");
                applied
                    .terminating
                    .insert(ns.clone(), std::time::Instant::now());
                return Ok(Action::requeue(SOON));
            }
            r => r?,
        };
        if !reverted.is_empty() {
            let m = format!(
                "put back the pod templates and isolation rules the operator renders, changed by someone else: {}",
                reverted.join("; ")
            );
            event(ctx, wp, true, "TemplateRestored", m).await;
        }
        let removed = prune(&ctx.client, &ns, &name, &owner.uid, &rendered).await?;
        if !removed.is_empty() {
            let m = format!(
                "removed what the Workplace no longer renders: {}",
                removed.join(", ")
            );
            event(ctx, wp, false, "Pruned", m).await;
        }
        ctx.metrics.workplace_applies.inc();
        let mut applied = ctx.applied.lock().expect("not poisoned");
        applied
            .done
            .insert(ns.clone(), (print, counted, std::time::Instant::now()));
    }

    let all_ready = readiness(ctx, &ns, &name, &catalog, &eligible, &zones, &mut report).await?;
    let failing = super::backups::backups(ctx, &ns, &name, &mut report).await?;
    let backups =
        (!failing.is_empty()).then(|| format!("the latest run failed: {}", failing.join("; ")));
    if let Some(m) = &backups {
        // A Warning when it starts or says something new, not at every reconcile.
        let said = report
            .previous
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "True" && c.message.contains(m.as_str()));
        if !said {
            event(ctx, wp, true, "BackupFailed", m.clone()).await;
        }
    }
    match (capacity, backups) {
        (Some(m), None) => report.set("Degraded", true, "InsufficientCapacity", m),
        (Some(m), Some(b)) => report.set(
            "Degraded",
            true,
            "InsufficientCapacity",
            format!("{m}; backups: {b}"),
        ),
        (None, Some(b)) => report.set("Degraded", true, "BackupFailed", b),
        (None, None) => report.set("Degraded", false, "AsExpected", "nothing is degraded"),
    }
    let moving = sovereignty(wp, ctx, &policy, response, &mut report).await?;
    publish_status(wp, ctx, report).await?;
    ctx.failures.lock().expect("not poisoned").remove(&key(wp));
    let next = if all_ready && !moving { RESYNC } else { SOON };
    // A trusted apply expires: what no watch announces is put back then, not a resync later.
    Ok(Action::requeue(fresh.map_or(next, |left| next.min(left))))
}

/// A paused Workplace: nothing is created, changed or evicted, but Sovereign still says where
/// the namespace's pods run now (a pause must not hide a node that lost its attestation).
async fn paused(
    wp: &Workplace,
    ctx: &Context,
    mut report: Report,
) -> Result<Action, ReconcileError> {
    report.set(
        "Progressing",
        false,
        "Paused",
        "spec.paused is true: nothing is created, changed or evicted until it is false",
    );
    let policy = Api::<LocalityPolicyResource>::all(ctx.client.clone())
        .get_opt(&wp.spec.policy)
        .await
        .map_err(failed(format!("reading LocalityPolicy {}", wp.spec.policy)))?
        .filter(|p| p.status.as_ref().is_some_and(|s| s.error.is_none()));
    let ns = wp.namespace().unwrap_or_default();
    match &policy {
        Some(policy) if !policy.spec.allows_namespace(&ns) => report.set(
            "Sovereign",
            false,
            "PolicyNotAllowed",
            not_allowed(&wp.spec.policy, &ns),
        ),
        Some(policy) => {
            sovereignty(wp, ctx, policy, Response::Paused, &mut report).await?;
        }
        None => report.set(
            "Sovereign",
            false,
            "PolicyUnavailable",
            format!(
                "LocalityPolicy {} is missing or invalid: where the pods run cannot be judged",
                wp.spec.policy
            ),
        ),
    }
    for c in &report.previous {
        if !report.status.conditions.iter().any(|n| n.type_ == c.type_) {
            report.status.conditions.push(c.clone());
        }
    }
    if let Some(s) = &wp.status {
        report.status.eligible_nodes = s.eligible_nodes;
        report.status.eligible_zones = s.eligible_zones.clone();
        report.status.components = s.components.clone();
        report.status.backups = s.backups.clone();
    }
    publish_status(wp, ctx, report).await?;
    Ok(Action::requeue(RESYNC))
}

/// What an apply of `rendered` for the Workplace of uid `owner` puts in the cluster, as a hash:
/// the objects, the StorageClass and the credentials asked for.
fn fingerprint(owner: &str, rendered: &hexagone_platform::render::Rendered) -> u64 {
    let text = |v: &serde_json::Value| serde_json::to_string(v).expect("a JSON value prints");
    hash_of(&(
        owner,
        rendered.storage_class.as_ref().map(text),
        rendered.objects.iter().map(text).collect::<Vec<_>>(),
        &rendered.secret.names,
        &rendered.secret.files,
    ))
}

/// Why a Workplace may not use a policy: only a security officer lists the namespaces a policy
/// protects.
fn not_allowed(policy: &str, ns: &str) -> String {
    format!(
        "LocalityPolicy {policy} does not list namespace {ns} in spec.namespaces: only a security officer decides which namespaces a policy protects; ask one to add {ns}, or name a policy that lists it"
    )
}

/// Which eligible nodes' zones volumes may be placed in, and which are left out.
#[derive(Debug, Default, PartialEq)]
struct Zones {
    /// The zones that count, in order.
    counted: Vec<String>,
    /// Zones the policy's regions table does not place in a country it allows, each as
    /// `zone (node, …)`.
    unlisted: Vec<String>,
    /// Zones no valid attestation names, each as `zone (node: why)`.
    unattested: Vec<String>,
}

/// The zones volumes may be placed in: the [`ZONE_LABEL`] values of eligible nodes that the
/// policy's regions table (the security officer's) places in a country it allows and, where an
/// attestation names the node's zone ([`ATTESTED_ZONE_LABEL`], the operator's mirror of it) or
/// the policy requires attestations, that the attestation names. The zone label is the node's
/// own (NodeRestriction lets a kubelet set it), so it counts only where the officer vouches for
/// it: an eligible node cannot steer the StorageClass's topology to a zone abroad, nor to another
/// provider's zone the table places in France, by relabelling itself.
fn attested_zones(eligible: &[Arc<Node>], policy: &hexagone_platform::LocalityPolicy) -> Zones {
    let must_attest = policy
        .required_sources
        .contains(&hexagone_platform::LocationSource::Attestation);
    let mut zones = BTreeSet::new();
    let mut unlisted = std::collections::BTreeMap::<&str, Vec<String>>::new();
    let mut unattested = std::collections::BTreeMap::<&str, Vec<String>>::new();
    for n in eligible {
        let Some(z) = n.labels().get(ZONE_LABEL) else {
            continue;
        };
        match policy.regions.get(z.as_str()) {
            Some(c) if policy.allowed_countries.contains(*c) => {}
            _ => {
                unlisted.entry(z).or_default().push(n.name_any());
                continue;
            }
        }
        match n.labels().get(ATTESTED_ZONE_LABEL) {
            Some(a) if a != z => unattested.entry(z).or_default().push(format!(
                "{}: its NodeAttestation names zone {a}",
                n.name_any()
            )),
            None if must_attest => unattested.entry(z).or_default().push(format!(
                "{}: its NodeAttestation names no zone",
                n.name_any()
            )),
            _ => {
                zones.insert(z.clone());
            }
        }
    }
    let list = |m: std::collections::BTreeMap<&str, Vec<String>>| {
        m.into_iter()
            .map(|(z, nodes)| format!("{z} ({})", nodes.join(", ")))
            .collect()
    };
    Zones {
        counted: zones.into_iter().collect(),
        unlisted: list(unlisted),
        unattested: list(unattested),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hexagone_platform::LocalityPolicy;

    fn node(name: &str, zone: &str, attested: Option<&str>) -> Arc<Node> {
        let mut labels = serde_json::json!({ZONE_LABEL: zone});
        if let Some(a) = attested {
            labels[ATTESTED_ZONE_LABEL] = a.into();
        }
        Arc::new(
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": name, "labels": labels}}),
            )
            .unwrap(),
        )
    }

    fn policy(required: &str) -> LocalityPolicy {
        LocalityPolicy::from_yaml(&format!(
            "classification: test\nmode: enforce\nallowedCountries: [FR]\nnetworkOperator: {{allowedCountries: [FR]}}\nregions: {{fr-par-1: FR, fr-par-2: FR, eu-west-3: FR, eu-central-1: DE}}\nquorum: 1\nrequiredSources: [{required}]\nonUnknown: violation\n"
        ), "test")
        .unwrap()
    }

    #[test]
    fn a_zone_counts_only_where_the_table_and_the_attestation_vouch_for_it() {
        let nodes = [
            node("a", "fr-par-1", Some("fr-par-1")),
            // Its kubelet relabelled it into a zone the table places in France (AWS Paris).
            node("b", "eu-west-3", Some("fr-par-1")),
            // Attested, but the attestation names no zone.
            node("c", "fr-par-2", None),
            node("d", "eu-central-1", Some("eu-central-1")),
        ];
        let strict = attested_zones(&nodes, &policy("attestation"));
        assert_eq!(
            strict,
            Zones {
                counted: vec!["fr-par-1".into()],
                unlisted: vec!["eu-central-1 (d)".into()],
                unattested: vec![
                    "eu-west-3 (b: its NodeAttestation names zone fr-par-1)".into(),
                    "fr-par-2 (c: its NodeAttestation names no zone)".into(),
                ],
            }
        );
        // A policy that does not require attestations still holds a node to the zone its
        // attestation names, and takes the table's word where none does.
        let lax = attested_zones(&nodes, &policy("address"));
        assert_eq!(lax.counted, ["fr-par-1", "fr-par-2"]);
        assert_eq!(
            lax.unattested,
            ["eu-west-3 (b: its NodeAttestation names zone fr-par-1)"]
        );
    }
}
