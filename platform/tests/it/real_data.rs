//! The engine on real addresses of well-known networks, as the vendored data places them.
//!
//! Each expectation is what the vendored ip-location-db data says (version in
//! `platform/data/ip-location-db/VERSIONS.md`); a data refresh that moves one of these networks
//! fails here, on purpose, so the change is looked at.

use hexagone_platform::Verdict;

use crate::util::{evaluate_yaml, geo};

/// A node with French topology and attested labels and one external address.
fn labelled(address: &str, region: &str) -> String {
    format!(
        "name: node-1
labels:
  topology.kubernetes.io/region: {region}
  node-restriction.kubernetes.io/hexagone-country: FR
addresses:
  - {{type: InternalIP, address: 10.1.2.3}}
  - {{type: ExternalIP, address: '{address}'}}
"
    )
}

/// Evaluates under a policy and checks the verdict and the two address sentences.
fn check(policy: &str, node_yaml: &str, verdict: &str, address_sentences: &[&str]) {
    let e = evaluate_yaml(policy, node_yaml);
    let sentences: Vec<String> = e.evidence[2..].iter().map(ToString::to_string).collect();
    assert_eq!(
        (
            e.verdict.name(),
            sentences.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        (verdict, address_sentences.to_vec()),
        "\n{e}"
    );
}

#[test]
fn french_hosters_are_compliant_for_diffusion_restreinte() {
    let dr = "france-diffusion-restreinte";
    check(
        dr,
        &labelled("51.15.0.1", "fr-par"),
        "compliant",
        &[
            "address 51.15.0.1 is in FR, an allowed country",
            "network AS12876 (Scaleway SAS) of address 51.15.0.1 is registered in FR, an allowed operator country",
        ],
    );
    check(
        dr,
        &labelled("51.38.1.1", "gra"),
        "compliant",
        &[
            "address 51.38.1.1 is in FR, an allowed country",
            "network AS16276 (OVH SAS) of address 51.38.1.1 is registered in FR, an allowed operator country",
        ],
    );
    check(
        dr,
        &labelled("2.3.0.1", "fr-par"),
        "compliant",
        &[
            "address 2.3.0.1 is in FR, an allowed country",
            "network AS3215 (Orange S.A.) of address 2.3.0.1 is registered in FR, an allowed operator country",
        ],
    );
    check(
        dr,
        &labelled("78.192.0.1", "fr-par"),
        "compliant",
        &[
            "address 78.192.0.1 is in FR, an allowed country",
            "network AS12322 (Free SAS) of address 78.192.0.1 is registered in FR, an allowed operator country",
        ],
    );
    check(
        dr,
        &labelled("46.231.144.1", "cloudgouv-eu-west-1"),
        "compliant",
        &[
            "address 46.231.144.1 is in FR, an allowed country",
            "network AS50624 (Outscale SASU) of address 46.231.144.1 is registered in FR, an allowed operator country",
        ],
    );
    check(
        dr,
        &labelled("45.15.212.1", "fr-par"),
        "compliant",
        &[
            "address 45.15.212.1 is in FR, an allowed country",
            "network AS33930 (Cloud Temple SAS) of address 45.15.212.1 is registered in FR, an allowed operator country",
        ],
    );
}

#[test]
fn ipv6_addresses() {
    let dr = "france-diffusion-restreinte";
    check(
        dr,
        &labelled("2001:bc8::1", "fr-par"),
        "compliant",
        &[
            "address 2001:bc8::1 is in FR, an allowed country",
            "network AS12876 (Scaleway SAS) of address 2001:bc8::1 is registered in FR, an allowed operator country",
        ],
    );
    check(
        dr,
        &labelled("2001:41d0:8::1", "rbx"),
        "compliant",
        &[
            "address 2001:41d0:8::1 is in FR, an allowed country",
            "network AS16276 (OVH SAS) of address 2001:41d0:8::1 is registered in FR, an allowed operator country",
        ],
    );
    check(
        dr,
        &labelled("2a01:e0a::1", "fr-par"),
        "compliant",
        &[
            "address 2a01:e0a::1 is in FR, an allowed country",
            "network AS12322 (Free SAS) of address 2a01:e0a::1 is registered in FR, an allowed operator country",
        ],
    );
    // Google's public DNS over IPv6: in the US, US network.
    check(
        dr,
        &labelled("2001:4860:4860::8888", "fr-par"),
        "violation",
        &[
            "address 2001:4860:4860::8888 is in US, outside the allowed countries (FR)",
            "network AS15169 (Google LLC) of address 2001:4860:4860::8888 is registered in US, and the policy denies this network",
        ],
    );
}

#[test]
fn ipv4_mapped_addresses_are_looked_up_as_ipv4() {
    check(
        "france-diffusion-restreinte",
        &labelled("::ffff:51.15.0.1", "fr-par"),
        "compliant",
        &[
            "address 51.15.0.1 is in FR, an allowed country",
            "network AS12876 (Scaleway SAS) of address 51.15.0.1 is registered in FR, an allowed operator country",
        ],
    );
}

#[test]
fn hyperscaler_regions_in_france_are_located_in_france_but_operated_from_the_us() {
    let dr = "france-diffusion-restreinte";
    // AWS eu-west-3 (Paris).
    let e = evaluate_yaml(dr, &labelled("15.188.0.1", "eu-west-3"));
    assert_eq!(
        e.headline(),
        "node-1 violates Diffusion Restreinte: topology label topology.kubernetes.io/region=eu-west-3 is in FR by the policy's region table, \
         but network AS16509 (Amazon.com, Inc.) of address 15.188.0.1 is registered in US, and the policy denies this network"
    );
    check(
        dr,
        &labelled("15.188.0.1", "eu-west-3"),
        "violation",
        &[
            "address 15.188.0.1 is in FR, an allowed country",
            "network AS16509 (Amazon.com, Inc.) of address 15.188.0.1 is registered in US, and the policy denies this network",
        ],
    );
    // Google Cloud europe-west9 (Paris).
    check(
        dr,
        &labelled("34.155.0.1", "europe-west9"),
        "violation",
        &[
            "address 34.155.0.1 is in FR, an allowed country",
            "network AS396982 (Google LLC) of address 34.155.0.1 is registered in US, and the policy denies this network",
        ],
    );
    // Azure France Central.
    check(
        dr,
        &labelled("20.19.0.1", "francecentral"),
        "violation",
        &[
            "address 20.19.0.1 is in FR, an allowed country",
            "network AS8075 (Microsoft Corporation) of address 20.19.0.1 is registered in US, and the policy denies this network",
        ],
    );
    // Even with the deny list emptied, the registration country condemns it.
    let mut p = crate::util::policy(dr);
    p.network_operator.denied_asns.clear();
    let node = serde_yaml::from_str(&labelled("35.180.0.1", "eu-west-3")).unwrap();
    let e = hexagone_platform::evaluate(&p, &node, geo());
    assert_eq!(
        e.evidence[3].to_string(),
        "network AS16509 (Amazon.com, Inc.) of address 35.180.0.1 is registered in US, outside the allowed operator countries (FR)"
    );
    assert!(matches!(e.verdict, Verdict::Violation(_)));
}

#[test]
fn a_french_hoster_address_placed_abroad_is_a_violation() {
    // The example of the design brief: an OVHcloud address the data places in Poland.
    check(
        "france-diffusion-restreinte",
        &labelled("54.36.0.9", "gra"),
        "violation",
        &[
            "address 54.36.0.9 is in PL, outside the allowed countries (FR)",
            "network AS16276 (OVH SAS) of address 54.36.0.9 is registered in FR, an allowed operator country",
        ],
    );
}

#[test]
fn foreign_networks() {
    let node = |a: &str| format!("name: n\naddresses: [{{type: ExternalIP, address: '{a}'}}]\n");
    // Hetzner in Germany: outside France, but fine for the EU policy.
    check(
        "france-standard",
        &node("5.9.0.1"),
        "violation",
        &[
            "address 5.9.0.1 is in DE, outside the allowed countries (FR)",
            "network AS24940 (Hetzner Online GmbH) of address 5.9.0.1 is registered in DE, an allowed operator country",
        ],
    );
    check(
        "eu-secnumcloud",
        &node("5.9.0.1"),
        "compliant",
        &[
            "address 5.9.0.1 is in DE, an allowed country",
            "network AS24940 (Hetzner Online GmbH) of address 5.9.0.1 is registered in DE, an allowed operator country",
        ],
    );
    // Amazon's Irish subsidiary: registered in the EU, still denied.
    check(
        "eu-secnumcloud",
        &node("3.2.99.1"),
        "violation",
        &[
            "address 3.2.99.1 is in US, outside the allowed countries (EU)",
            "network AS8987 (Amazon Data Services Ireland Ltd) of address 3.2.99.1 is registered in IE, and the policy denies this network",
        ],
    );
    // Outscale's US subsidiary: a French brand, a US network.
    check(
        "eu-secnumcloud",
        &node("68.169.224.1"),
        "violation",
        &[
            "address 68.169.224.1 is in US, outside the allowed countries (EU)",
            "network AS53306 (OUTSCALE INC) of address 68.169.224.1 is registered in US, outside the allowed operator countries (EU)",
        ],
    );
    check(
        "eu-secnumcloud",
        &node("8.8.8.8"),
        "violation",
        &[
            "address 8.8.8.8 is in US, outside the allowed countries (EU)",
            "network AS15169 (Google LLC) of address 8.8.8.8 is registered in US, and the policy denies this network",
        ],
    );
}

#[test]
fn private_and_reserved_addresses_prove_nothing() {
    let node = "name: lab
labels: {topology.kubernetes.io/region: fr-par, node-restriction.kubernetes.io/hexagone-country: FR}
addresses: [{type: InternalIP, address: 10.1.2.3}, {type: InternalIP, address: 'fd00::7'}]
";
    let private = [
        "address 10.1.2.3 is in the private network range 10.0.0.0/8 (RFC 1918) and has no location, which proves nothing",
        "the network of address 10.1.2.3 is in the private network range 10.0.0.0/8 (RFC 1918) and has no operator, which proves nothing",
        "address fd00::7 is in the unique local range fc00::/7 (RFC 4193) and has no location, which proves nothing",
        "the network of address fd00::7 is in the unique local range fc00::/7 (RFC 4193) and has no operator, which proves nothing",
    ];
    // Two label sources are below the quorum of 3: a violation under Diffusion Restreinte...
    check("france-diffusion-restreinte", node, "violation", &private);
    // ...and enough for France standard (quorum 2).
    check("france-standard", node, "compliant", &private);
    // Without labels, France standard cannot tell: Unknown, which enforce mode refuses.
    let bare = "name: lab\naddresses: [{type: ExternalIP, address: '::ffff:100.64.1.1'}]\n";
    let e = evaluate_yaml("france-standard", bare);
    assert_eq!(e.verdict.name(), "unknown");
    assert!(!e.admits());
    assert_eq!(
        e.evidence[2].to_string(),
        "address 100.64.1.1 is in the carrier-grade NAT shared range 100.64.0.0/10 (RFC 6598) and has no location, which proves nothing"
    );
}

#[test]
fn vendored_asn_data_has_few_overlaps() {
    let n = geo().asn.overlapping_ranges();
    assert!(n < 1000, "{n} overlapping ranges in the asn CSV");
}
