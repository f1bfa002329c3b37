//! The simulated sovereign cluster the Workplace tests and the demo run on: four French nodes
//! of qualified operators (OVH, Outscale) in two zones of `fr-par`, each sized to hold the whole
//! 5,000-user profile; a node in Germany; one in the United States; and AWS Paris, located in
//! France but operated under US law. Attestations are the caller's to write.

use crate::FakeNode;

/// The French nodes a Diffusion Restreinte policy admits once attested.
pub const FRENCH: [&str; 4] = ["ovh-par1-a", "ovh-par1-b", "outscale-par2-a", "ovh-par2-b"];

fn fr(name: &str, zone: &str, ip: [u8; 4]) -> FakeNode {
    FakeNode::new(name)
        .label("topology.kubernetes.io/region", "fr-par")
        .label("topology.kubernetes.io/zone", zone)
        .external_ip(ip.into())
        // One such node holds the whole 5,000-user profile (42 CPU requested, 46 with the demo's
        // four video bridges): volumes are zonal, so when one node of a zone loses its
        // attestation, the other must take every pod whose volume is in that zone, whatever the
        // scheduler had placed there.
        .capacity("cpu", "48")
        .capacity("memory", "128Gi")
        .capacity("pods", "110")
}

/// The seven nodes, French ones first (in [`FRENCH`] order).
pub fn nodes() -> Vec<FakeNode> {
    vec![
        fr(FRENCH[0], "fr-par-1", [51, 38, 1, 1]),
        fr(FRENCH[1], "fr-par-1", [51, 38, 3, 3]),
        fr(FRENCH[2], "fr-par-2", [46, 231, 144, 1]),
        fr(FRENCH[3], "fr-par-2", [51, 38, 4, 4]),
        FakeNode::new("hetzner-de")
            .label("topology.kubernetes.io/region", "eu-central-1")
            .label("topology.kubernetes.io/zone", "eu-central-1a")
            .external_ip([88, 198, 0, 1].into()),
        FakeNode::new("us-east")
            .label("topology.kubernetes.io/zone", "us-east-1a")
            .external_ip([8, 8, 8, 8].into()),
        FakeNode::new("aws-paris")
            .label("topology.kubernetes.io/region", "eu-west-3")
            .label("topology.kubernetes.io/zone", "eu-west-3a")
            .external_ip([15, 188, 0, 1].into()),
    ]
}

/// The zone [`nodes`] gives the node named `name` (what its NodeAttestation attests), if any.
pub fn zone(name: &str) -> Option<String> {
    nodes()
        .into_iter()
        .find(|n| n.name == name)?
        .labels
        .remove("topology.kubernetes.io/zone")
}
