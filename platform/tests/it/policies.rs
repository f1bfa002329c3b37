//! Every file in `policies/` loads, and each says what its documentation says it does.

use hexagone_platform::{Asn, Country, LocalityPolicy, Mode, OnUnknown};

use crate::util::{policies_dir, policy};

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
    for asn in [16509, 14618, 8987, 8075, 15169, 396982, 31898] {
        assert!(
            p.network_operator.denied_asns.contains(&Asn(asn)),
            "AS{asn}"
        );
    }
    assert_eq!(p.quorum.get(), 3);
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
        .replace("  - AS8069 ", "  - AS0    ");
    std::fs::write(&path, text).unwrap();
    let err = LocalityPolicy::from_file(&path).unwrap_err().to_string();
    let expected = format!(
        "{}:28:7: networkOperator.deniedAsns[6]: invalid AS number 0: AS0 is reserved (RFC 7607); expected a public AS number such as 16509 or AS16509",
        path.display()
    );
    assert_eq!(err, expected);
}
