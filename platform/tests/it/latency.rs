//! Latency evidence in the verdict: a node bound near a declared Paris vantage is placed in
//! France; one that answers slowly is not, and nothing it does to its round trips makes it look
//! closer; measurements from vantages the policy does not attest count for nothing.

use hexagone_platform::latency::boundaries_digest;
use hexagone_platform::{
    Evaluation, LocalityPolicy, NodeDescription, Observation, RoundTrips, Source, judge, observe,
    replay,
};

use crate::util::{attestation, geo, now, policies_dir};

const PARIS: (f64, f64) = (48.8566, 2.3522);

/// The Diffusion Restreinte policy, requiring latency too, with one vantage in Paris (and one in
/// Lyon, for the two-vantage case).
fn policy() -> LocalityPolicy {
    let text = std::fs::read_to_string(policies_dir().join("france-diffusion-restreinte.yaml"))
        .unwrap()
        .replace(
            "requiredSources: [attestation, address]",
            "requiredSources: [attestation, address, latency]",
        )
        .replace("quorum: 3", "quorum: 4")
        + "vantagePoints:
  - name: paris-1
    site: Ministry data centre, Paris
    latitude: 48.8566
    longitude: 2.3522
    operatedBy: ministry SOC
    attestedBy: RSSI, visit report PV-2026-114
  - name: lyon-1
    site: Ministry data centre, Lyon
    latitude: 45.7640
    longitude: 4.8357
    operatedBy: ministry SOC
    attestedBy: RSSI, visit report PV-2026-115
";
    LocalityPolicy::from_yaml(&text, "dr-latency.yaml").unwrap()
}

const NODE: &str = "name: gra-1\nproviderID: test://gra-1\nlabels: {topology.kubernetes.io/region: gra}\naddresses: [{type: ExternalIP, address: 51.38.1.1}]\n";

fn evaluate_with(policy: &LocalityPolicy, measurements: Vec<RoundTrips>) -> Evaluation {
    evaluate_against(policy, measurements, boundaries_digest())
}

/// The node judged with its latency fact measured against the boundary data `boundaries`.
fn evaluate_against(
    policy: &LocalityPolicy,
    measurements: Vec<RoundTrips>,
    boundaries: &str,
) -> Evaluation {
    let node: NodeDescription = yaml_serde::from_str(NODE).unwrap();
    let mut facts = observe(
        &node,
        hexagone_platform::SubjectKind::Node,
        &[attestation("gra-1", "FR")],
        geo(),
        now(),
    );
    facts.observations.push(Observation::Latency {
        address: "51.38.1.1".parse().unwrap(),
        port: 10250,
        measurements,
        boundaries: boundaries.to_owned(),
    });
    judge(policy, facts)
}

fn from_paris(rtt_us: Vec<u32>) -> RoundTrips {
    RoundTrips::new("paris-1", PARIS.0, PARIS.1, rtt_us).unwrap()
}

fn latency_sentence(e: &Evaluation) -> String {
    e.evidence
        .iter()
        .find(|x| x.source == Source::Latency)
        .unwrap()
        .to_string()
}

#[test]
fn a_node_near_a_paris_vantage_is_placed_in_france_and_replays() {
    let p = policy();
    let e = evaluate_with(&p, vec![from_paris(vec![455, 400, 420])]);
    assert_eq!(e.verdict.name(), "compliant", "{e}");
    assert_eq!(
        latency_sentence(&e),
        "address 51.38.1.1:10250 answered TCP handshakes in 0.400 ms at best from vantage paris-1 (3 handshakes), so within 60 km of it: that area lies in FR, an allowed country"
    );
    assert!(e.headline().contains("latency"), "{}", e.headline());
    // The recorded evaluation replays under the same policy, facts included.
    let json = serde_json::to_string(&e).unwrap();
    let again = replay(&json, &p).unwrap();
    assert_eq!(again.verdict.name(), "compliant");
}

#[test]
fn a_node_claiming_paris_that_answers_in_30_ms_is_not_supported() {
    let e = evaluate_with(&policy(), vec![from_paris(vec![30_000, 30_400])]);
    assert_eq!(e.verdict.name(), "violation", "{e}");
    let s = latency_sentence(&e);
    assert!(
        s.contains("so within 4497 km of it, which proves nothing: that area reaches outside the allowed countries ("),
        "{s}"
    );
    assert!(
        e.reasons().iter().any(|r| r
            == "the policy requires the latency to place the node in an allowed country, and it does not"),
        "{e}"
    );
    // Inconclusive, never a contradiction: a slow answer is not a location.
    assert!(e.evidence.iter().all(|x| x.source != Source::Latency
        || x.assessment == hexagone_platform::Assessment::Inconclusive));
}

/// Whatever delay a node adds to its answers, the bound only grows: it can turn support into
/// nothing, never nothing into support, and never move the area closer.
#[test]
fn no_delay_a_node_adds_makes_it_look_closer() {
    let p = policy();
    let honest = 400u32;
    let mut last_bound = 0;
    let mut supported_before = true;
    for added in [0u32, 50, 200, 1_000, 5_000, 40_000] {
        let m = from_paris(vec![honest + added, honest + added + 30]);
        assert!(m.bound_km >= last_bound);
        last_bound = m.bound_km;
        let supported = evaluate_with(&p, vec![m])
            .evidence
            .iter()
            .any(|x| x.source == Source::Latency && x.assessment.kind().as_str() == "supports");
        assert!(
            supported_before || !supported,
            "support came back at +{added} µs"
        );
        supported_before = supported;
    }
    assert!(!supported_before, "a 40 ms answer must not be supported");
}

#[test]
fn a_vantage_the_policy_does_not_attest_counts_for_nothing() {
    let p = policy();
    // A vantage nobody declared, however close its claim.
    let rogue = RoundTrips::new("rogue", PARIS.0, PARIS.1, vec![100]).unwrap();
    let e = evaluate_with(&p, vec![rogue]);
    assert_ne!(e.verdict.name(), "compliant", "{e}");
    assert!(
        latency_sentence(&e).ends_with("which proves nothing: no measurement from a declared vantage point counts (not counted: vantage rogue is not declared by the policy, so its site is not attested)"),
        "{}",
        latency_sentence(&e)
    );
    // A declared vantage's name on a measurement stating other coordinates (a vantage moved,
    // or a forged measurement placing it nearer the node).
    let moved = RoundTrips::new("paris-1", 43.2965, 5.3698, vec![100]).unwrap();
    let e = evaluate_with(&p, vec![moved]);
    assert!(
        latency_sentence(&e).contains(
            "the measurement from paris-1 states other coordinates than the policy declares"
        ),
        "{e}"
    );
    // Figures that do not follow from the samples: a minimum below every sample.
    let mut forged = from_paris(vec![30_000]);
    forged.min_rtt_us = 300;
    forged.bound_km = hexagone_platform::latency::bound_km(300);
    let e = evaluate_with(&p, vec![forged]);
    assert_ne!(e.verdict.name(), "compliant", "{e}");
    assert!(
        latency_sentence(&e).contains("records a minimum of 300 µs, its samples 30000 µs"),
        "{e}"
    );
}

#[test]
fn two_vantages_bound_the_node_to_where_their_disks_meet() {
    let p = policy();
    // 3 ms from Paris (450 km) reaches Belgium, Germany, Switzerland...; 0.6 ms from Lyon
    // (90 km; Geneva is 112 km away) as well cuts the area down to France.
    let paris = from_paris(vec![3_000]);
    let alone = evaluate_with(&p, vec![paris.clone()]);
    assert!(
        latency_sentence(&alone).contains("reaches outside"),
        "{}",
        latency_sentence(&alone)
    );
    let lyon = RoundTrips::new("lyon-1", 45.7640, 4.8357, vec![600]).unwrap();
    let both = evaluate_with(&p, vec![paris, lyon]);
    assert_eq!(both.verdict.name(), "compliant", "{both}");
    // Disks that cannot meet: someone lied about a site or a measurement.
    let near_lyon = RoundTrips::new("lyon-1", 45.7640, 4.8357, vec![100]).unwrap();
    let e = evaluate_with(&p, vec![from_paris(vec![100]), near_lyon]);
    assert!(
        latency_sentence(&e).contains("the vantages' disks do not meet"),
        "{e}"
    );
}

#[test]
fn a_fact_measured_against_other_boundary_data_proves_nothing() {
    let e = evaluate_against(&policy(), vec![from_paris(vec![400])], "sha256:00");
    assert!(
        latency_sentence(&e).contains("measured against boundary data sha256:00"),
        "{e}"
    );
}

#[test]
fn a_policy_requiring_latency_declares_its_vantages() {
    let text = std::fs::read_to_string(policies_dir().join("france-diffusion-restreinte.yaml"))
        .unwrap()
        .replace(
            "requiredSources: [attestation, address]",
            "requiredSources: [attestation, address, latency]",
        );
    let err = LocalityPolicy::from_yaml(&text, "p.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("requiredSources: latency is required but no vantage point is declared"),
        "{err}"
    );
    let bad = format!(
        "{text}vantagePoints:\n  - {{name: paris-1, site: s, latitude: 98.0, longitude: 2.0, operatedBy: o, attestedBy: a}}\n"
    );
    let err = LocalityPolicy::from_yaml(&bad, "p.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("vantagePoints[0].latitude: 98 is not a latitude"),
        "{err}"
    );
}
