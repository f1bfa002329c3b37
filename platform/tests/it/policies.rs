//! Every file in `policies/` loads, and each says what its documentation says it does.

use hexagone_platform::{Country, ExtraEuControl, LocalityPolicy, LocationSource, Mode, OnUnknown};

use crate::util::{attestation, evaluate_yaml, geo, policies_dir, policy};

#[test]
fn every_policy_file_loads() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(policies_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            LocalityPolicy::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    assert_eq!(
        names,
        [
            "eu-secnumcloud.yaml",
            "france-diffusion-restreinte.yaml",
            "france-on-premises.yaml",
            "france-standard.yaml"
        ]
    );
}

#[test]
fn diffusion_restreinte_is_strict() {
    let p = policy("france-diffusion-restreinte");
    let de = Country::parse("DE").unwrap();
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.on_unknown, OnUnknown::Violation);
    assert!(p.allowed_countries.contains(Country::FR) && !p.allowed_countries.contains(de));
    assert!(!p.network_operator.allowed_countries.contains(de));
    assert!(p.network_operator.deny_extra_eu_control);
    assert_eq!(
        p.required_sources,
        [LocationSource::Attestation, LocationSource::Address]
    );
    assert_eq!(p.quorum.get(), 3);
}

/// Every network of the strict policies' allow lists is what its entry says, per the vendored
/// data, carries its qualification and reference, and none is under extra-EU control.
#[test]
fn the_qualified_operator_allow_lists_name_their_networks_and_sources() {
    let asn_csv =
        std::fs::read_to_string(crate::util::vendored_dir().join("asn/asn-ipv4.csv")).unwrap();
    for name in ["france-diffusion-restreinte", "eu-secnumcloud"] {
        let p = policy(name);
        let rule = &p.network_operator;
        assert!(rule.deny_extra_eu_control, "{name}");
        assert!(
            rule.allowed_asns.is_empty(),
            "{name}: every allowed network comes with its qualification"
        );
        assert!(rule.qualified_operators.len() >= 4, "{name}");
        for q in &rule.qualified_operators {
            assert!(ExtraEuControl::shipped().get(q.asn).is_none(), "{}", q.asn);
            assert!(q.qualified_by.contains("ANSSI"), "{name}: {q:?}");
            assert!(q.reference.contains("cyber.gouv.fr"), "{name}: {q:?}");
            let registry = asn_csv
                .lines()
                .find_map(|l| {
                    let mut f = l.splitn(4, ',');
                    let (_, _, n, org) = (f.next()?, f.next()?, f.next()?, f.next()?);
                    (n == q.asn.0.to_string()).then(|| org.trim_matches('"').to_owned())
                })
                .unwrap_or_else(|| panic!("{} is not in the vendored AS data", q.asn));
            assert!(
                q.operator.starts_with(&registry),
                "{}: operator {:?} does not start with the registry name {registry:?}",
                q.asn,
                q.operator
            );
        }
    }
}

/// The hole a deny-list leaves, tried with real registry data: Equinix (EMEA) Acquisition
/// Enterprises B.V. (AS15830) is registered in the Netherlands, its group is American, and no
/// list here names it. With an attestation placing the node in the EU, the EU policy refuses it
/// because it is not a qualified operator, and says so.
#[test]
fn an_eu_registered_network_of_a_non_eu_group_that_no_list_names_is_refused() {
    let asn = hexagone_platform::Asn(15830);
    assert!(ExtraEuControl::shipped().get(asn).is_none());
    let e = evaluate_yaml(
        "eu-secnumcloud",
        "name: n\nproviderID: test://n\naddresses: [{type: ExternalIP, address: 5.57.215.1}]\n",
        &[attestation("n", "NL")],
    );
    let operator = e
        .evidence
        .iter()
        .find(|x| x.source == hexagone_platform::Source::NetworkOperator)
        .unwrap();
    assert!(
        operator.fact().contains("AS15830") && operator.fact().contains("is registered in NL"),
        "{e}"
    );
    assert_eq!(e.verdict.name(), "violation", "{e}");
    assert!(
        e.reasons().iter().any(|r| r.ends_with(
            "is registered in NL, and this network is not on the policy's allow list of qualified operators, so it is refused whatever its registration"
        )),
        "{e}"
    );
    // A qualified operator's network, attested in the EU, is accepted: the gate is not closed.
    let e = evaluate_yaml(
        "eu-secnumcloud",
        "name: n\nproviderID: test://n\naddresses: [{type: ExternalIP, address: 51.38.1.1}]\n",
        &[attestation("n", "FR")],
    );
    assert_eq!(e.verdict.name(), "compliant", "{e}");
}

/// A network under extra-EU control is refused by the allow list, and the curated list explains
/// why; a policy cannot qualify such a network.
#[test]
fn the_extra_eu_list_explains_a_refusal_and_cannot_be_qualified() {
    let e = evaluate_yaml(
        "france-diffusion-restreinte",
        "name: n\nproviderID: test://n\naddresses: [{type: ExternalIP, address: 15.188.0.1}]\n",
        &[attestation("n", "FR")],
    );
    let text = e.to_string();
    assert!(
        text.contains("not on the policy's allow list of qualified operators")
            && text.contains(": it is controlled by Amazon.com, Inc. (US), outside the EU"),
        "{text}"
    );
    let yaml = std::fs::read_to_string(policies_dir().join("eu-secnumcloud.yaml"))
        .unwrap()
        .replacen("    - asn: AS16276", "    - asn: AS16509", 1);
    let err = LocalityPolicy::from_yaml(&yaml, "eu.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("networkOperator.qualifiedOperators[0].asn: AS16509 is on the curated list of networks under extra-EU control"),
        "{err}"
    );
    let yaml = std::fs::read_to_string(policies_dir().join("eu-secnumcloud.yaml"))
        .unwrap()
        .replacen(
            "      qualifiedBy: ANSSI, SecNumCloud",
            "      qualifiedBy: \" \"",
            1,
        );
    let err = LocalityPolicy::from_yaml(&yaml, "eu.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "networkOperator.qualifiedOperators[0].qualifiedBy: expected the body and scheme"
        ),
        "{err}"
    );
}

/// The curated list's registration names and countries are what the vendored data says.
#[test]
fn the_extra_eu_control_list_matches_the_vendored_data() {
    let g = geo();
    let asn_csv = [
        std::fs::read_to_string(crate::util::vendored_dir().join("asn/asn-ipv4.csv")).unwrap(),
        std::fs::read_to_string(crate::util::vendored_dir().join("asn/asn-ipv6.csv")).unwrap(),
    ]
    .concat();
    for n in ExtraEuControl::shipped().networks() {
        let (start, org) = asn_csv
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(4, ',');
                let (s, _, a, org) = (f.next()?, f.next()?, f.next()?, f.next()?);
                (a == n.asn.0.to_string()).then(|| (s.to_owned(), org.trim_matches('"').to_owned()))
            })
            .unwrap_or_else(|| panic!("{} is not in the vendored AS data", n.asn));
        assert_eq!(org.replace("\"\"", "\""), n.name, "{}", n.asn);
        let registered = g.registration.country(start.parse().unwrap());
        if let Ok(c) = registered {
            // Registration data may place a range of a multinational elsewhere; US parents'
            // own networks must at least not be registered in the EU.
            if n.registered.as_str() == "US" {
                assert!(
                    !hexagone_platform::CountryGroup::Eu.contains(c),
                    "{}: {c}",
                    n.asn
                );
            }
        }
        assert!(!hexagone_platform::CountryGroup::Eu.contains(n.parent_country));
    }
}

/// Under the strict policies no combination of evidence a node controls (its topology labels,
/// its addresses, even the attested label set without an attestation) is ever compliant.
#[test]
fn no_node_controlled_evidence_is_ever_compliant_under_the_strict_policies() {
    let regions = [
        None,
        Some("fr-par"),
        Some("gra"),
        Some("eu-west-3"),
        Some("nope"),
    ];
    let labels = [None, Some("FR"), Some("DE")];
    let addresses: [&[&str]; 8] = [
        &[],
        &["10.0.0.1"],
        &["51.38.1.1"],
        &["46.231.144.1"],
        &["51.38.1.1", "45.15.212.1"],
        &["15.188.0.1"],
        &["5.9.0.1"],
        &["2001:41d0:8::1"],
    ];
    let mut judged = 0;
    for policy_name in ["france-diffusion-restreinte", "eu-secnumcloud"] {
        for region in regions {
            for zone in regions {
                for label in labels {
                    for addrs in addresses {
                        let mut yaml = String::from("name: n\nproviderID: test://n\nlabels:\n");
                        if let Some(r) = region {
                            yaml += &format!("  topology.kubernetes.io/region: {r}\n");
                        }
                        if let Some(z) = zone {
                            yaml += &format!("  topology.kubernetes.io/zone: {z}\n");
                        }
                        if let Some(l) = label {
                            yaml += &format!(
                                "  node-restriction.kubernetes.io/hexagone-country: {l}\n"
                            );
                        }
                        yaml += "addresses:\n";
                        for a in addrs {
                            yaml += &format!("  - {{type: ExternalIP, address: '{a}'}}\n");
                        }
                        if yaml.ends_with("labels:\naddresses:\n") {
                            yaml = yaml.replace("labels:\n", "");
                        }
                        let e =
                            evaluate_yaml(policy_name, &yaml.replace("addresses:\n\n", ""), &[]);
                        assert!(!e.verdict.is_compliant(), "{policy_name}: {e}");
                        judged += 1;
                    }
                }
            }
        }
    }
    assert_eq!(judged, 2 * 5 * 5 * 3 * 8);
    // And the same nodes with an attestation can be: the test is not vacuous.
    let e = evaluate_yaml(
        "france-diffusion-restreinte",
        "name: n\nproviderID: test://n\nlabels: {topology.kubernetes.io/region: gra}\naddresses: [{type: ExternalIP, address: 51.38.1.1}]\n",
        &[attestation("n", "FR")],
    );
    assert!(e.verdict.is_compliant(), "{e}");
}

#[test]
fn eu_policy_accepts_the_union() {
    let p = policy("eu-secnumcloud");
    let de = Country::parse("DE").unwrap();
    let ch = Country::parse("CH").unwrap();
    assert!(p.allowed_countries.contains(de) && !p.allowed_countries.contains(ch));
    assert!(p.network_operator.allowed_countries.contains(de));
}

#[test]
fn a_broken_policy_file_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(policies_dir().join("france-standard.yaml"))
        .unwrap()
        .replace(
            "  allowedCountries: [EU]",
            "  allowedCountries: [EU]\n  deniedAsns: [AS0]",
        );
    std::fs::write(&path, text).unwrap();
    let err = LocalityPolicy::from_file(&path).unwrap_err().to_string();
    let expected = format!(
        "{}:19:16: networkOperator.deniedAsns[0]: invalid AS number 0: AS0 is reserved (RFC 7607); expected a public AS number such as 16509 or AS16509",
        path.display()
    );
    assert_eq!(err, expected);
}
