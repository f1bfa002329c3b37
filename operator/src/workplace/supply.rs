//! What a Workplace pulls in and sends out, judged under its LocalityPolicy before anything is
//! rendered: its images (registries the policy allows, pinned by digest when it says so), its
//! storage (a driver and parameters the policy qualifies) and its egress destinations (each one address,
//! judged by the locality engine as an endpoint, like a node). Ops write these fields; only the
//! policy, which only the security officer writes, decides whether they may be used.

use std::net::IpAddr;

use hexagone_platform::catalog::Catalog;
use hexagone_platform::k8s::{NodeAttestation, attestations};
use hexagone_platform::locality::address::Block;
use hexagone_platform::workplace::{EgressRule, StorageSpec};
use hexagone_platform::{Judge, LocalityPolicy, NodeDescription, SubjectKind, observe};
use kube::api::{Api, ListParams};
use time::OffsetDateTime;

use super::{Context, ReconcileError, failed};

/// Why the Workplace may not be deployed under its policy: `(reason, message)`.
pub(super) type Refusal = (&'static str, String);

/// Judges images and the storage, its driver and parameters (no I/O).
pub(super) fn judge_images_and_storage(
    catalog: &Catalog,
    storage: &StorageSpec,
    policy: &LocalityPolicy,
) -> Option<Refusal> {
    let images: Vec<String> = catalog
        .components
        .iter()
        .filter_map(|c| {
            policy
                .images
                .refuses(&c.image.to_string())
                .map(|why| format!("{}: {why}", c.name))
        })
        .collect();
    if !images.is_empty() {
        // First, so that an Event's note, which the API server cuts at 1 KiB, keeps it.
        let unpinned = catalog.components.iter().any(|c| c.image.digest.is_none());
        let hint = if policy.images.require_digest && unpinned {
            "pin each image as spec.components.<name>.image: repo:tag@sha256:<digest>, the digest your registry serves; "
        } else {
            ""
        };
        return Some(("ImageNotAllowed", format!("{hint}{}", images.join("; "))));
    }
    policy
        .refuses_storage(&storage.provisioner, &storage.parameters)
        .map(|m| ("ProvisionerNotAllowed", m))
}

/// The one address an egress rule names, or why it names none that can be judged.
pub(super) fn egress_address(rule: &EgressRule) -> Result<IpAddr, String> {
    let what = format!("egress {:?} ({})", rule.name, rule.cidr);
    let block: Block = rule.cidr.parse().map_err(|e| format!("{what}: {e}"))?;
    let (addr, prefix, host) = (block.address(), block.prefix(), block.host_prefix());
    if prefix == 0 {
        return Err(format!(
            "{what} is every address there is: no destination outside the namespace is allowed \
             but one the policy judges; name each as one address (/{host})"
        ));
    }
    if prefix != host {
        return Err(format!(
            "{what} is a range: its addresses cannot be judged one by one; name each destination \
             as one address (/{host})"
        ));
    }
    Ok(addr)
}

/// Judges each egress destination under the policy as an endpoint: its geolocated address, its
/// network operator, and a NodeAttestation naming it (`nodeName` the address, `providerID` "").
/// A destination the engine does not find Compliant is refused under an enforce policy.
pub(super) async fn judge_egress(
    rules: &[EgressRule],
    policy: &LocalityPolicy,
    ctx: &Context,
) -> Result<Option<Refusal>, ReconcileError> {
    if rules.is_empty() {
        return Ok(None);
    }
    let mut refused = Vec::new();
    let mut addresses = Vec::new();
    for rule in rules {
        match egress_address(rule) {
            Ok(a) => addresses.push((rule, a)),
            Err(m) => refused.push(m),
        }
    }
    if !refused.is_empty() {
        return Ok(Some(("EgressNotAllowed", refused.join("; "))));
    }
    let resources = Api::<NodeAttestation>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(failed("listing NodeAttestations"))?
        .items;
    let attested = attestations(&resources);
    let geo = ctx.geo.snapshot();
    let now = OffsetDateTime::now_utc();
    let judge = Judge::new(policy);
    for (rule, addr) in addresses {
        let endpoint = NodeDescription::endpoint(addr);
        let facts = observe(&endpoint, SubjectKind::Endpoint, &attested, &geo, now);
        let evaluation = judge.judge(facts);
        // Under an audit policy a destination is admitted whatever its verdict, as nodes are.
        if !evaluation.admits() {
            refused.push(format!(
                "egress {:?} ({}): {}",
                rule.name,
                rule.cidr,
                evaluation.headline()
            ));
        }
    }
    Ok((!refused.is_empty()).then(|| ("EgressNotAllowed", refused.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cidr: &str) -> EgressRule {
        EgressRule {
            name: "relay".into(),
            cidr: cidr.into(),
            ports: vec![25],
        }
    }

    #[test]
    fn only_single_addresses_can_be_judged() {
        assert_eq!(
            egress_address(&rule("0.0.0.0/0")).unwrap_err(),
            "egress \"relay\" (0.0.0.0/0) is every address there is: no destination outside the \
             namespace is allowed but one the policy judges; name each as one address (/32)"
        );
        assert!(
            egress_address(&rule("::/0"))
                .unwrap_err()
                .contains("(/128)")
        );
        assert_eq!(
            egress_address(&rule("51.68.0.0/16")).unwrap_err(),
            "egress \"relay\" (51.68.0.0/16) is a range: its addresses cannot be judged one by \
             one; name each destination as one address (/32)"
        );
        assert_eq!(
            egress_address(&rule("51.68.10.25/32")),
            Ok("51.68.10.25".parse().unwrap())
        );
        assert!(egress_address(&rule("2001:db8::1/128")).is_ok());
        assert!(egress_address(&rule("relay/32")).is_err());
        // The platform's one reading of a block: no prefix longer than the address, no sign,
        // no leading zero (a NetworkPolicy carries the text as written).
        assert_eq!(
            egress_address(&rule("51.68.10.25/33")).unwrap_err(),
            "egress \"relay\" (51.68.10.25/33): /33 is longer than an address of 32 bits"
        );
        assert_eq!(
            egress_address(&rule("51.68.10.25/032")).unwrap_err(),
            "egress \"relay\" (51.68.10.25/032): \"032\" is not a prefix length"
        );
    }
}
