//! The engine on real addresses of well-known networks, as the vendored data places them, under
//! every shipped policy.
//!
//! Each expectation is what the vendored ip-location-db data says (version in
//! `platform/data/ip-location-db/VERSIONS.md`); a data refresh that moves one of these networks
//! fails here, on purpose, so the change is looked at.

use hexagone_platform::{Assessment, Breach, Source};

use crate::util::{attestation, evaluate_yaml, geo};

/// A node with a topology label and one external address, provider ID `test://node-1`.
fn node(address: &str, region: &str) -> String {
    format!(
        "name: node-1
providerID: test://node-1
labels:
  topology.kubernetes.io/region: {region}
addresses:
  - {{type: InternalIP, address: 10.1.2.3}}
  - {{type: ExternalIP, address: '{address}'}}
"
    )
}

/// Evaluates the node under `policy` with (or without) a French attestation and checks the
/// verdict and the sentences about the address (location, then network operator).
fn check(policy: &str, address: &str, region: &str, attested: bool, expected: (&str, [&str; 2])) {
    let att = [attestation("node-1", "FR")];
    let e = evaluate_yaml(
        policy,
        &node(address, region),
        if attested { &att[..] } else { &[] },
    );
    let sentences: Vec<String> = e
        .evidence
        .iter()
        .filter(|e| matches!(e.source, Source::Address | Source::NetworkOperator))
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        (e.verdict.name(), sentences),
        (
            expected.0,
            expected.1.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        ),
        "\n{e}"
    );
}

const DR: &str = "france-diffusion-restreinte";
const EU: &str = "eu-secnumcloud";
const STD: &str = "france-standard";

#[test]
fn qualified_french_operators_comply_with_diffusion_restreinte_when_attested() {
    for (address, region, network) in [
        (
            "51.38.1.1",
            "gra",
            "network AS16276 (OVH SAS) of address 51.38.1.1",
        ),
        (
            "2001:41d0:8::1",
            "rbx",
            "network AS16276 (OVH SAS) of address 2001:41d0:8::1",
        ),
        (
            "46.231.144.1",
            "cloudgouv-eu-west-1",
            "network AS50624 (Outscale SASU) of address 46.231.144.1",
        ),
        (
            "45.15.212.1",
            "fr-par",
            "network AS33930 (Cloud Temple SAS) of address 45.15.212.1",
        ),
    ] {
        check(
            DR,
            address,
            region,
            true,
            (
                "compliant",
                [
                    &format!("address {address} is in FR, an allowed country"),
                    &format!("{network} is registered in FR, an accepted network operator"),
                ],
            ),
        );
        // The same node without its attestation: its own claims are never enough.
        let e = evaluate_yaml(DR, &node(address, region), &[]);
        assert_eq!(e.verdict.name(), "violation", "{e}");
    }
}

#[test]
fn french_operators_without_qualification_are_refused_for_diffusion_restreinte() {
    for (address, network) in [
        (
            "51.15.0.1",
            "network AS12876 (Scaleway SAS) of address 51.15.0.1",
        ),
        ("2.3.0.1", "network AS3215 (Orange S.A.) of address 2.3.0.1"),
        (
            "78.192.0.1",
            "network AS12322 (Free SAS) of address 78.192.0.1",
        ),
    ] {
        check(
            DR,
            address,
            "fr-par",
            true,
            (
                "violation",
                [
                    &format!("address {address} is in FR, an allowed country"),
                    &format!(
                        "{network} is registered in FR, and this network is not on the policy's allow list of qualified operators, so it is refused whatever its registration"
                    ),
                ],
            ),
        );
        // ...but they host ordinary French data, without an attestation.
        let e = evaluate_yaml(STD, &node(address, "fr-par"), &[]);
        assert_eq!(e.verdict.name(), "compliant", "{e}");
    }
}

#[test]
fn hyperscaler_regions_in_france_are_never_compliant() {
    // AWS Paris, Google Paris, Azure France Central: located in FR, controlled from the US.
    for (address, region, parent) in [
        ("15.188.0.1", "eu-west-3", "Amazon.com, Inc. (US)"),
        ("35.180.0.1", "eu-west-3", "Amazon.com, Inc. (US)"),
        ("34.155.0.1", "europe-west9", "Alphabet Inc. (US)"),
        ("20.19.0.1", "francecentral", "Microsoft Corporation (US)"),
    ] {
        for policy in [DR, EU, STD] {
            for attested in [false, true] {
                let att = [attestation("node-1", "FR")];
                let e = evaluate_yaml(
                    policy,
                    &node(address, region),
                    if attested { &att[..] } else { &[] },
                );
                assert_eq!(e.verdict.name(), "violation", "{policy} {e}");
                let operator = e
                    .evidence
                    .iter()
                    .find(|e| e.source == Source::NetworkOperator)
                    .unwrap();
                assert!(
                    operator
                        .to_string()
                        .ends_with(&format!("controlled by {parent}, outside the EU")),
                    "{operator}"
                );
            }
        }
    }
}

#[test]
fn us_parent_subsidiaries_registered_in_the_eu_are_refused() {
    // IBM France (registered FR), Akamai International (NL), AWS European Sovereign Cloud (DE).
    for (address, registered, parent) in [
        (
            "64.208.250.1",
            "FR",
            "International Business Machines Corporation",
        ),
        ("2.16.0.1", "NL", "Akamai Technologies, Inc."),
        // Not in the registration data at all: the AS number alone decides.
        ("2001:3fc0::1", "", "Amazon.com, Inc."),
    ] {
        for policy in [DR, EU, STD] {
            let e = evaluate_yaml(
                policy,
                &node(address, "fr-par"),
                &[attestation("node-1", "FR")],
            );
            let operator = e
                .evidence
                .iter()
                .find(|e| e.source == Source::NetworkOperator)
                .unwrap();
            assert_eq!(e.verdict.name(), "violation", "{policy} {e}");
            // Under an allow list (DR, EU) the list refuses it and the curated list explains
            // why; without one (standard) the curated list refuses it.
            if policy == STD {
                assert!(
                    matches!(
                        &operator.assessment,
                        Assessment::Contradicts(Breach::ExtraEuControl { parent: p, .. }) if p == parent
                    ),
                    "{policy}: {operator}"
                );
            } else {
                assert_eq!(
                    operator.assessment,
                    Assessment::Contradicts(Breach::AsnNotAllowed),
                    "{policy}: {operator}"
                );
            }
            assert!(
                operator
                    .to_string()
                    .contains(&format!("controlled by {parent} (US), outside the EU")),
                "{operator}"
            );
            if !registered.is_empty() {
                assert!(
                    operator
                        .to_string()
                        .contains(&format!("is registered in {registered}")),
                    "{operator}"
                );
            }
        }
    }
}

#[test]
fn an_unknown_network_is_never_accepted_under_an_as_rule() {
    // Find a real address the registration data places in FR but the AS data does not know.
    let g = geo();
    let unknown = (0u32..=0xFFFF)
        .map(|i| std::net::IpAddr::from(std::net::Ipv4Addr::from(0x5000_0000 + (i << 12))))
        .find(|a| {
            g.asn.lookup(*a).is_none()
                && g.registration.country(*a).is_ok_and(|c| c.as_str() == "FR")
                && g.location.country(*a).is_ok_and(|c| c.as_str() == "FR")
        })
        .expect("the vendored data has a French-registered address without an AS record");
    for policy in [DR, EU, STD] {
        let e = evaluate_yaml(
            policy,
            &node(&unknown.to_string(), "fr-par"),
            &[attestation("node-1", "FR")],
        );
        assert!(!e.verdict.is_compliant(), "{policy} {e}");
        let operator = e
            .evidence
            .iter()
            .find(|e| e.source == Source::NetworkOperator)
            .unwrap();
        assert_eq!(operator.assessment, Assessment::Inconclusive, "{operator}");
    }
}

#[test]
fn a_french_hoster_address_placed_abroad_is_a_violation() {
    check(
        DR,
        "54.36.0.9",
        "gra",
        true,
        (
            "violation",
            [
                "address 54.36.0.9 is in PL, outside the allowed countries (FR)",
                "network AS16276 (OVH SAS) of address 54.36.0.9 is registered in FR, an accepted network operator",
            ],
        ),
    );
}

#[test]
fn eu_policy_accepts_attested_qualified_operators_only() {
    check(
        EU,
        "51.38.1.1",
        "gra",
        true,
        (
            "compliant",
            [
                "address 51.38.1.1 is in FR, an allowed country",
                "network AS16276 (OVH SAS) of address 51.38.1.1 is registered in FR, an accepted network operator",
            ],
        ),
    );
    let e = evaluate_yaml(EU, &node("51.38.1.1", "gra"), &[]);
    assert_eq!(e.verdict.name(), "violation", "{e}");
    // An EU-registered, EU-owned operator without a qualification is refused: the allow list
    // is the gate, not the registration.
    check(
        EU,
        "5.9.0.1",
        "eu-central-1",
        true,
        (
            "violation",
            [
                "address 5.9.0.1 is in DE, an allowed country",
                "network AS24940 (Hetzner Online GmbH) of address 5.9.0.1 is registered in DE, and this network is not on the policy's allow list of qualified operators, so it is refused whatever its registration",
            ],
        ),
    );
    check(
        EU,
        "3.2.99.1",
        "eu-central-1",
        true,
        (
            "violation",
            [
                "address 3.2.99.1 is in US, outside the allowed countries (EU)",
                "network AS8987 (Amazon Data Services Ireland Ltd) of address 3.2.99.1 is registered in IE, and this network is not on the policy's allow list of qualified operators: it is controlled by Amazon.com, Inc. (US), outside the EU",
            ],
        ),
    );
}

#[test]
fn ipv4_mapped_addresses_are_looked_up_as_ipv4() {
    check(
        DR,
        "::ffff:51.38.1.1",
        "gra",
        true,
        (
            "compliant",
            [
                "address 51.38.1.1 is in FR, an allowed country",
                "network AS16276 (OVH SAS) of address 51.38.1.1 is registered in FR, an accepted network operator",
            ],
        ),
    );
}

#[test]
fn private_and_reserved_addresses_prove_nothing() {
    let e = evaluate_yaml(
        DR,
        "name: lab\nproviderID: test://lab\nlabels: {topology.kubernetes.io/region: gra}\naddresses: [{type: InternalIP, address: 10.1.2.3}]\n",
        &[attestation("lab", "FR")],
    );
    assert_eq!(e.verdict.name(), "violation", "{e}");
    let e = evaluate_yaml(
        "france-on-premises",
        "name: lab\nproviderID: test://lab\naddresses: [{type: InternalIP, address: 10.1.2.3}]\n",
        &[attestation("lab", "FR")],
    );
    assert_eq!(
        e.headline(),
        "lab complies with On premises (France) on the security officer's attestation alone: its addresses are private, so no database can place it"
    );
}

#[test]
fn vendored_asn_data_has_few_overlaps() {
    assert!(geo().asn.overlapping_ranges() < 1000);
}

#[test]
fn evaluations_name_the_databases_they_used() {
    let e = evaluate_yaml(
        DR,
        &node("51.38.1.1", "gra"),
        &[attestation("node-1", "FR")],
    );
    let ids: Vec<(String, String, bool, usize)> = e
        .databases
        .iter()
        .map(|d| {
            (
                d.role.clone(),
                d.file.clone(),
                d.built.is_some(),
                d.sha256.len(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            (
                "location".into(),
                "geo-whois-asn-country.mmdb".into(),
                true,
                64
            ),
            (
                "registration".into(),
                "iptoasn-country.mmdb".into(),
                true,
                64
            ),
            ("AS number".into(), "asn-ipv4.csv".into(), false, 64),
            ("AS number".into(), "asn-ipv6.csv".into(), false, 64),
        ]
    );
    let json = serde_json::to_value(&e).unwrap();
    assert!(
        json["policyDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        json["extraEuControlDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}
