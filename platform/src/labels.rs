//! Every label and annotation key the platform defines, in one place: the node labels the engine
//! reads and the operator writes, and the labels of rendered workplace objects. The modules that
//! defined them before re-export them (`node::ZONE_LABEL`, `render::INSTANCE_LABEL`,
//! `workplace::eligible_label`), so those paths still work.

/// Kubernetes well-known label naming a node's region (set by the cloud provider or the kubelet).
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// Kubernetes well-known label naming a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The attested country of a node, as an ISO 3166-1 alpha-2 code (`FR`): the operator's mirror
/// of a valid NodeAttestation, which pods select through required node affinity.
///
/// The `node-restriction.kubernetes.io/` prefix matters: with the NodeRestriction admission
/// plugin a kubelet may not set or change labels under it on its own Node object, while it may
/// set topology labels. Only a cluster principal (the operator) can write this one, and the
/// locality engine counts it only when an attestation stands behind it.
pub const ATTESTED_COUNTRY_LABEL: &str = "node-restriction.kubernetes.io/hexagone-country";

/// The zone a valid NodeAttestation names for a node (its `zone`), mirrored by the operator
/// under the same protected prefix as [`ATTESTED_COUNTRY_LABEL`]: a kubelet may rewrite its own
/// [`ZONE_LABEL`], never this one, so a node's zone label counts only when it matches.
pub const ATTESTED_ZONE_LABEL: &str = "node-restriction.kubernetes.io/hexagone-zone";

/// Prefix of the label the operator sets on each node a policy admits: the key is
/// `eligible.hexagone.node-restriction.kubernetes.io/<policy name>`. It lies under the
/// `node-restriction.kubernetes.io` domain, which the NodeRestriction admission plugin forbids a
/// kubelet to set on its own Node, so a node cannot make itself eligible.
pub const ELIGIBLE_LABEL_DOMAIN: &str = "eligible.hexagone.node-restriction.kubernetes.io";

/// The eligibility label key of `policy`, or why there cannot be one (a label name is at most 63
/// characters, so a policy a Workplace uses must have a name that short).
pub fn eligible_label(policy: &str) -> Result<String, String> {
    if policy.is_empty() || policy.len() > 63 {
        return Err(format!(
            "policy name {policy:?} must be 1 to 63 characters to name a node label"
        ));
    }
    Ok(format!("{ELIGIBLE_LABEL_DOMAIN}/{policy}"))
}

/// Label every rendered object carries with the Workplace's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label carrying the component name.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/name";
/// Label marking objects as part of a Hexagone workplace.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// Value of [`PART_OF_LABEL`].
pub const PART_OF: &str = "hexagone-workplace";
/// Label of a Workplace's StorageClass naming the Workplace's namespace (with
/// [`INSTANCE_LABEL`], its name): the class is replaced or deleted only when both match.
pub const WORKPLACE_NAMESPACE_LABEL: &str = "hexagone.fr/workplace-namespace";
/// The label the API server gives every pod of a Job (Kubernetes' own key): the workplace's
/// PodDisruptionBudgets leave those pods out.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Label naming who manages an object: the operator's field manager on everything it applies,
/// which its watches select.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Annotation of the workplace's NetworkPolicy listing the egress destinations the spec allows.
pub const EGRESS_ANNOTATION: &str = "hexagone.fr/egress";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_key_is_valid() {
        for label in [ATTESTED_COUNTRY_LABEL, ATTESTED_ZONE_LABEL] {
            let (prefix, name) = label.split_once('/').unwrap();
            assert_eq!(prefix, "node-restriction.kubernetes.io");
            assert!(name.len() <= 63);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            );
        }
    }

    #[test]
    fn eligibility_labels_fit_a_label_name() {
        assert_eq!(
            eligible_label("dr").unwrap(),
            "eligible.hexagone.node-restriction.kubernetes.io/dr"
        );
        assert!(eligible_label(&"x".repeat(64)).is_err());
    }
}
