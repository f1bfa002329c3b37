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

/// Every network of the DR allow-list is what its comment says, per the vendored data, and none
/// is under extra-EU control.
#[test]
fn the_qualified_operator_allow_list_names_french_networks() {
    let p = policy("france-diffusion-restreinte");
    let text =
        std::fs::read_to_string(policies_dir().join("france-diffusion-restreinte.yaml")).unwrap();
    let asn_csv =
        std::fs::read_to_string(crate::util::vendored_dir().join("asn/asn-ipv4.csv")).unwrap();
    assert!(p.network_operator.allowed_asns.len() >= 4);
    for asn in &p.network_operator.allowed_asns {
        assert!(ExtraEuControl::shipped().get(*asn).is_none(), "{asn}");
        let comment = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("- {asn} ")))
            .and_then(|l| l.split_once('#'))
            .map(|(_, c)| c.trim().to_owned())
            .unwrap_or_else(|| panic!("{asn} has no comment"));
        let name = asn_csv
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(4, ',');
                let (_, _, n, org) = (f.next()?, f.next()?, f.next()?, f.next()?);
                (n == asn.0.to_string()).then(|| org.trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| panic!("{asn} is not in the vendored AS data"));
        assert!(
            comment.starts_with(&name),
            "{asn}: comment {comment:?} does not start with the registry name {name:?}"
        );
    }
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
