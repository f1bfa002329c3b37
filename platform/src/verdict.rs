//! Evaluation: gather the evidence about a node, weigh it against a policy, give a verdict that
//! explains itself.
//!
//! How evidence combines:
//! 1. any evidence that contradicts the policy makes a Violation (one source outside is enough);
//! 2. otherwise, when at least `quorum` distinct sources support the policy, Compliant;
//! 3. otherwise the policy's `onUnknown` decides: Violation, Unknown, or (audit mode only) Compliant.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::address::{canonical, reserved_range};
use crate::country::Country;
use crate::evidence::{Assessment, Breach, Evidence, Observation, Source};
use crate::geo::{Gap, GeoSnapshot};
use crate::node::{ATTESTED_COUNTRY_LABEL, NodeDescription, REGION_LABEL, ZONE_LABEL};
use crate::policy::{Asn, LocalityPolicy, Mode, OnUnknown};

/// The verdict on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "verdict", content = "reasons")]
pub enum Verdict {
    /// Enough sources place the node within the policy and none outside it.
    Compliant,
    /// Some evidence places the node outside the policy (or, per policy, evidence is missing).
    Violation(Vec<Reason>),
    /// Too few sources could place the node.
    Unknown(Vec<Reason>),
}

/// Why a verdict is not Compliant; rendered as a sentence by [`Evaluation::reasons`].
///
/// Reasons point into the evaluation's evidence rather than copying sentences, so a verdict
/// costs no text formatting until someone reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// The evidence at this index (contradicting, or inconclusive).
    Evidence(usize),
    /// Fewer distinct sources than the quorum placed the node in an allowed country.
    QuorumNotMet {
        /// Distinct sources that did.
        supporting: u8,
        /// Sources the policy requires.
        quorum: u8,
    },
}

impl Verdict {
    /// `compliant`, `violation` or `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Compliant => "compliant",
            Verdict::Violation(_) => "violation",
            Verdict::Unknown(_) => "unknown",
        }
    }

    /// Whether this is Compliant.
    pub fn is_compliant(&self) -> bool {
        matches!(self, Verdict::Compliant)
    }
}

/// The evidence about one node and the verdict it leads to under one policy.
///
/// Serialized with the verdict's reasons and the headline rendered as sentences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The node (or endpoint) name.
    pub subject: String,
    /// The policy's classification label.
    pub classification: Arc<str>,
    /// The policy's mode.
    pub mode: Mode,
    /// Every piece of evidence, in source order.
    pub evidence: Vec<Evidence>,
    /// How many distinct sources support the policy, and how many it requires.
    pub supporting_sources: u8,
    /// The quorum of the policy.
    pub quorum: u8,
    /// The verdict.
    pub verdict: Verdict,
}

impl Serialize for Evaluation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Shown<'a> {
            subject: &'a str,
            classification: &'a str,
            mode: Mode,
            verdict: &'static str,
            admits: bool,
            headline: String,
            reasons: Vec<String>,
            supporting_sources: u8,
            quorum: u8,
            evidence: Vec<ShownEvidence<'a>>,
        }
        #[derive(Serialize)]
        struct ShownEvidence<'a> {
            #[serde(flatten)]
            evidence: &'a Evidence,
            sentence: String,
        }
        Shown {
            subject: &self.subject,
            classification: &self.classification,
            mode: self.mode,
            verdict: self.verdict.name(),
            admits: self.admits(),
            headline: self.headline(),
            reasons: self.reasons(),
            supporting_sources: self.supporting_sources,
            quorum: self.quorum,
            evidence: self
                .evidence
                .iter()
                .map(|e| ShownEvidence {
                    evidence: e,
                    sentence: e.to_string(),
                })
                .collect(),
        }
        .serialize(s)
    }
}

impl Evaluation {
    /// Whether the node may host data: in enforce mode only when Compliant; audit mode admits all.
    pub fn admits(&self) -> bool {
        match self.mode {
            Mode::Enforce => self.verdict.is_compliant(),
            Mode::Audit => true,
        }
    }

    /// The verdict's reasons, one sentence each (empty when Compliant).
    pub fn reasons(&self) -> Vec<String> {
        let reasons = match &self.verdict {
            Verdict::Compliant => return Vec::new(),
            Verdict::Violation(r) | Verdict::Unknown(r) => r,
        };
        reasons
            .iter()
            .map(|r| match r {
                Reason::Evidence(i) => self
                    .evidence
                    .get(*i)
                    .map_or_else(|| format!("evidence #{i}"), ToString::to_string),
                Reason::QuorumNotMet { supporting, quorum } => format!(
                    "only {supporting} of the {quorum} sources the policy requires place the node in an allowed country"
                ),
            })
            .collect()
    }

    /// One sentence for the whole verdict, naming the decisive evidence.
    pub fn headline(&self) -> String {
        let support = self
            .evidence
            .iter()
            .find(|e| e.assessment == Assessment::Supports);
        let against = self
            .evidence
            .iter()
            .find(|e| matches!(e.assessment, Assessment::Contradicts(_)));
        let who = &self.subject;
        let class = &self.classification;
        match (&self.verdict, support, against) {
            (Verdict::Violation(_), Some(s), Some(a)) => {
                format!("{who} violates {class}: {}, but {}", s.fact(), a)
            }
            (Verdict::Violation(_), None, Some(a)) => format!("{who} violates {class}: {a}"),
            (Verdict::Compliant, _, _) => format!(
                "{who} complies with {class}: {} sources agree (the policy requires {}) and none disagrees",
                self.supporting_sources, self.quorum
            ),
            (_, _, _) => format!(
                "{who} is {} under {class}: only {} of {} required sources place it, and none places it outside",
                if matches!(self.verdict, Verdict::Violation(_)) {
                    "in violation"
                } else {
                    "of unknown location"
                },
                self.supporting_sources,
                self.quorum
            ),
        }
    }
}

impl fmt::Display for Evaluation {
    /// The headline, then one line per evidence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        for e in &self.evidence {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// Evaluates `node` against `policy` with the databases in `geo`.
pub fn evaluate(policy: &LocalityPolicy, node: &NodeDescription, geo: &GeoSnapshot) -> Evaluation {
    let mut evidence = Vec::with_capacity(4);
    topology(policy, node, &mut evidence);
    evidence.push(attested(policy, node));
    for addr in node.public_addresses() {
        let addr = canonical(addr);
        evidence.push(geolocation(policy, addr, geo));
        evidence.push(network_operator(policy, addr, geo));
    }
    combine(policy, node.name.clone(), evidence)
}

/// Weighs evidence already gathered (used by [`evaluate`], and by callers with evidence of
/// their own, such as the auditor's storage events).
pub fn combine(policy: &LocalityPolicy, subject: String, evidence: Vec<Evidence>) -> Evaluation {
    let mut supporting = 0u8;
    let mut contradicted = false;
    for e in &evidence {
        match e.assessment {
            Assessment::Supports => supporting |= 1 << e.source as u8,
            Assessment::Contradicts(_) => contradicted = true,
            Assessment::Inconclusive => {}
        }
    }
    let supporting_sources = supporting.count_ones() as u8;
    let quorum = policy.quorum.get();
    let verdict = if contradicted {
        Verdict::Violation(
            evidence
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(e.assessment, Assessment::Contradicts(_)))
                .map(|(i, _)| Reason::Evidence(i))
                .collect(),
        )
    } else if supporting_sources >= quorum {
        Verdict::Compliant
    } else {
        let mut reasons: Vec<Reason> = evidence
            .iter()
            .enumerate()
            .filter(|(_, e)| e.assessment == Assessment::Inconclusive)
            .map(|(i, _)| Reason::Evidence(i))
            .collect();
        reasons.push(Reason::QuorumNotMet {
            supporting: supporting_sources,
            quorum,
        });
        match (policy.on_unknown, policy.mode) {
            (OnUnknown::Violation, _) => Verdict::Violation(reasons),
            (OnUnknown::AllowInAudit, Mode::Audit) => Verdict::Compliant,
            // Unknown never counts as compliant in enforce mode, whatever the policy says.
            (OnUnknown::Unknown | OnUnknown::AllowInAudit, _) => Verdict::Unknown(reasons),
        }
    };
    Evaluation {
        subject,
        classification: policy.classification.clone(),
        mode: policy.mode,
        evidence,
        supporting_sources,
        quorum,
        verdict,
    }
}

fn place(policy: &LocalityPolicy, country: Option<Country>) -> Assessment {
    match country {
        None => Assessment::Inconclusive,
        Some(c) if policy.allowed_countries.contains(c) => Assessment::Supports,
        Some(_) => {
            Assessment::Contradicts(Breach::CountryNotAllowed(policy.allowed_countries.clone()))
        }
    }
}

/// Topology evidence: the region label decides, the zone label when the region is absent or not
/// in the table; a zone the table places in another country than the region is reported as
/// evidence of its own, so a node claiming region `fr-par` and zone `us-east-1` is caught.
fn topology(policy: &LocalityPolicy, node: &NodeDescription, evidence: &mut Vec<Evidence>) {
    let region = node.labels.get(REGION_LABEL);
    let zone = node.labels.get(ZONE_LABEL);
    let region_country = region.and_then(|v| policy.regions.get(v)).copied();
    let zone_country = zone.and_then(|v| policy.regions.get(v)).copied();
    let label = |key: &'static str, value: Option<&String>, country: Option<Country>| Evidence {
        source: Source::TopologyLabel,
        observation: Observation::TopologyLabel {
            key,
            value: value.cloned(),
            country,
        },
        assessment: place(policy, country),
    };
    match (region_country, zone_country) {
        (Some(r), Some(z)) if r != z => {
            evidence.push(label(REGION_LABEL, region, Some(r)));
            evidence.push(label(ZONE_LABEL, zone, Some(z)));
        }
        (Some(r), _) => evidence.push(label(REGION_LABEL, region, Some(r))),
        (None, Some(z)) => evidence.push(label(ZONE_LABEL, zone, Some(z))),
        (None, None) if region.is_some() => evidence.push(label(REGION_LABEL, region, None)),
        (None, None) => evidence.push(label(ZONE_LABEL, zone, None)),
    }
}

fn attested(policy: &LocalityPolicy, node: &NodeDescription) -> Evidence {
    let value = node.labels.get(ATTESTED_COUNTRY_LABEL);
    let country = value.and_then(|v| Country::from_bytes(v.as_bytes()));
    Evidence {
        source: Source::AttestedLabel,
        observation: Observation::AttestedLabel {
            key: ATTESTED_COUNTRY_LABEL,
            value: value.cloned(),
            country,
        },
        assessment: place(policy, country),
    }
}

fn geolocation(policy: &LocalityPolicy, address: IpAddr, geo: &GeoSnapshot) -> Evidence {
    let (country, missing) = match reserved_range(address) {
        Some(range) => (None, Some(Gap::Reserved { range })),
        None => match geo.location.country(address) {
            Ok(c) => (Some(c), None),
            Err(gap) => (None, Some(gap)),
        },
    };
    Evidence {
        source: Source::Geolocation,
        observation: Observation::Geolocation {
            address,
            country,
            missing,
        },
        assessment: place(policy, country),
    }
}

fn network_operator(policy: &LocalityPolicy, address: IpAddr, geo: &GeoSnapshot) -> Evidence {
    let rule = &policy.network_operator;
    let (asn, organisation, registered, missing) = if let Some(range) = reserved_range(address) {
        (None, None, None, Some(Gap::Reserved { range }))
    } else {
        let (asn, organisation, asn_missing) = match geo.asn.lookup(address) {
            Some(rec) => (rec.asn.map(Asn), rec.organisation.clone(), None),
            None => (
                None,
                None,
                Some(Gap::NotFound {
                    database: "AS number",
                }),
            ),
        };
        let (registered, reg_missing) = match geo.registration.country(address) {
            Ok(c) => (Some(c), None),
            Err(gap) => (None, Some(gap)),
        };
        (asn, organisation, registered, reg_missing.or(asn_missing))
    };
    let assessment = match (asn, registered) {
        (Some(a), _) if rule.denied_asns.contains(&a) => Assessment::Contradicts(Breach::AsnDenied),
        (Some(a), _) if !rule.allowed_asns.is_empty() && !rule.allowed_asns.contains(&a) => {
            Assessment::Contradicts(Breach::AsnNotAllowed)
        }
        (_, Some(c)) if !rule.allowed_countries.contains(c) => Assessment::Contradicts(
            Breach::RegistrationNotAllowed(rule.allowed_countries.clone()),
        ),
        // An allow list can only be honoured when the AS number is known.
        (None, Some(_)) if !rule.allowed_asns.is_empty() => Assessment::Inconclusive,
        (_, Some(_)) => Assessment::Supports,
        (_, None) => Assessment::Inconclusive,
    };
    Evidence {
        source: Source::NetworkOperator,
        observation: Observation::NetworkOperator {
            address,
            asn,
            organisation,
            registered,
            missing,
        },
        assessment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{CountryField, Database};
    use std::path::Path;
    use std::sync::Arc;

    const LOCATION: &str = "51.15.0.0,51.15.255.255,FR\n15.188.0.0,15.188.255.255,FR\n3.0.0.0,3.0.0.255,US\n5.0.0.0,5.0.0.255,EU\n";
    const REGISTRATION: &str =
        "51.15.0.0,51.15.255.255,FR\n15.188.0.0,15.188.255.255,US\n3.0.0.0,3.0.0.255,US\n";
    const ASN: &str = "51.15.0.0,51.15.255.255,12876,Scaleway S.a.s.\n15.188.0.0,15.188.255.255,16509,\"Amazon.com, Inc.\"\n3.0.0.0,3.0.0.255,14618,\"Amazon.com, Inc.\"\n";

    const POLICY: &str = "\
classification: Diffusion Restreinte
allowedCountries: [FR]
networkOperator:
  allowedCountries: [FR]
  deniedAsns: [16509, 14618]
regions: {fr-par: FR, eu-west-3: FR, us-east-1: US}
quorum: 3
onUnknown: violation
";

    fn geo() -> GeoSnapshot {
        let db = |role, field, text: &str| {
            Arc::new(
                Database::parse(role, field, Path::new("mem.csv"), text.as_bytes().to_vec())
                    .unwrap(),
            )
        };
        GeoSnapshot {
            location: db("location", CountryField::Location, LOCATION),
            registration: db("registration", CountryField::Registration, REGISTRATION),
            asn: db("AS number", CountryField::Location, ASN),
        }
    }

    fn check(policy_edit: (&str, &str), node_yaml: &str, expected: &str) {
        let policy =
            LocalityPolicy::from_yaml(&POLICY.replace(policy_edit.0, policy_edit.1), "p").unwrap();
        let node: NodeDescription = serde_yaml::from_str(node_yaml).unwrap();
        let got = evaluate(&policy, &node, &geo());
        assert_eq!(format!("[{}] {got}", got.verdict.name()), expected);
    }

    const FR_NODE: &str = "name: par-1
labels: {topology.kubernetes.io/region: fr-par, node-restriction.kubernetes.io/hexagone-country: FR}
addresses: [{type: ExternalIP, address: 51.15.0.1}, {type: InternalIP, address: 10.0.0.1}]
";

    #[test]
    fn french_node_is_compliant() {
        check(
            ("", ""),
            FR_NODE,
            "[compliant] par-1 complies with Diffusion Restreinte: 4 sources agree (the policy requires 3) and none disagrees
  - topology label topology.kubernetes.io/region=fr-par is in FR by the policy's region table, an allowed country
  - attested label node-restriction.kubernetes.io/hexagone-country says FR, an allowed country
  - address 51.15.0.1 is in FR, an allowed country
  - network AS12876 (Scaleway S.a.s.) of address 51.15.0.1 is registered in FR, an allowed operator country
",
        );
    }

    #[test]
    fn hyperscaler_in_paris_is_a_violation() {
        check(
            ("", ""),
            "name: aws-1
labels: {topology.kubernetes.io/region: eu-west-3}
addresses: [{type: ExternalIP, address: '::ffff:15.188.0.9'}]
",
            "[violation] aws-1 violates Diffusion Restreinte: topology label topology.kubernetes.io/region=eu-west-3 is in FR by the policy's region table, but network AS16509 (Amazon.com, Inc.) of address 15.188.0.9 is registered in US, and the policy denies this network
  - topology label topology.kubernetes.io/region=eu-west-3 is in FR by the policy's region table, an allowed country
  - the node has no attested label node-restriction.kubernetes.io/hexagone-country, which proves nothing
  - address 15.188.0.9 is in FR, an allowed country
  - network AS16509 (Amazon.com, Inc.) of address 15.188.0.9 is registered in US, and the policy denies this network
",
        );
        // Without the deny list, the registration country alone condemns it.
        check(
            ("deniedAsns: [16509, 14618]", "deniedAsns: []"),
            "name: aws-1\naddresses: [{type: ExternalIP, address: 15.188.0.9}]\n",
            "[violation] aws-1 violates Diffusion Restreinte: address 15.188.0.9 is in FR, but network AS16509 (Amazon.com, Inc.) of address 15.188.0.9 is registered in US, outside the allowed operator countries (FR)
  - the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing
  - the node has no attested label node-restriction.kubernetes.io/hexagone-country, which proves nothing
  - address 15.188.0.9 is in FR, an allowed country
  - network AS16509 (Amazon.com, Inc.) of address 15.188.0.9 is registered in US, outside the allowed operator countries (FR)
",
        );
    }

    #[test]
    fn lying_label_is_caught() {
        check(
            ("", ""),
            "name: fake
labels: {topology.kubernetes.io/region: fr-par, node-restriction.kubernetes.io/hexagone-country: FR}
addresses: [{type: ExternalIP, address: 3.0.0.1}]
",
            "[violation] fake violates Diffusion Restreinte: topology label topology.kubernetes.io/region=fr-par is in FR by the policy's region table, but address 3.0.0.1 is in US, outside the allowed countries (FR)
  - topology label topology.kubernetes.io/region=fr-par is in FR by the policy's region table, an allowed country
  - attested label node-restriction.kubernetes.io/hexagone-country says FR, an allowed country
  - address 3.0.0.1 is in US, outside the allowed countries (FR)
  - network AS14618 (Amazon.com, Inc.) of address 3.0.0.1 is registered in US, and the policy denies this network
",
        );
    }

    const PRIVATE_NODE: &str = "name: lab
labels: {topology.kubernetes.io/zone: fr-par, node-restriction.kubernetes.io/hexagone-country: FR}
addresses: [{type: InternalIP, address: 192.168.1.4}]
";

    #[test]
    fn missing_evidence_follows_on_unknown() {
        check(
            ("", ""),
            PRIVATE_NODE,
            "[violation] lab is in violation under Diffusion Restreinte: only 2 of 3 required sources place it, and none places it outside
  - topology label topology.kubernetes.io/zone=fr-par is in FR by the policy's region table, an allowed country
  - attested label node-restriction.kubernetes.io/hexagone-country says FR, an allowed country
  - address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no location, which proves nothing
  - the network of address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no operator, which proves nothing
",
        );
        check(
            ("onUnknown: violation", "onUnknown: unknown"),
            PRIVATE_NODE,
            "[unknown] lab is of unknown location under Diffusion Restreinte: only 2 of 3 required sources place it, and none places it outside
  - topology label topology.kubernetes.io/zone=fr-par is in FR by the policy's region table, an allowed country
  - attested label node-restriction.kubernetes.io/hexagone-country says FR, an allowed country
  - address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no location, which proves nothing
  - the network of address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no operator, which proves nothing
",
        );
    }

    #[test]
    fn unknown_admission_depends_on_mode() {
        let node: NodeDescription = serde_yaml::from_str(PRIVATE_NODE).unwrap();
        let audit = POLICY.replace(
            "onUnknown: violation",
            "onUnknown: allowInAudit\nmode: audit",
        );
        let policy = LocalityPolicy::from_yaml(&audit, "p").unwrap();
        let e = evaluate(&policy, &node, &geo());
        assert_eq!(e.verdict, Verdict::Compliant);
        assert!(e.admits());

        let mut enforce = policy.clone();
        enforce.mode = Mode::Enforce; // bypasses the loader's check on purpose
        let e = evaluate(&enforce, &node, &geo());
        assert_eq!(e.verdict.name(), "unknown");
        assert!(!e.admits());
    }

    #[test]
    fn a_zone_in_another_country_than_its_region_is_caught() {
        check(
            ("", ""),
            "name: odd
labels: {topology.kubernetes.io/region: fr-par, topology.kubernetes.io/zone: us-east-1, node-restriction.kubernetes.io/hexagone-country: FR}
addresses: [{type: ExternalIP, address: 51.15.0.1}]
",
            "[violation] odd violates Diffusion Restreinte: topology label topology.kubernetes.io/region=fr-par is in FR by the policy's region table, but topology label topology.kubernetes.io/zone=us-east-1 is in US by the policy's region table, outside the allowed countries (FR)
  - topology label topology.kubernetes.io/region=fr-par is in FR by the policy's region table, an allowed country
  - topology label topology.kubernetes.io/zone=us-east-1 is in US by the policy's region table, outside the allowed countries (FR)
  - attested label node-restriction.kubernetes.io/hexagone-country says FR, an allowed country
  - address 51.15.0.1 is in FR, an allowed country
  - network AS12876 (Scaleway S.a.s.) of address 51.15.0.1 is registered in FR, an allowed operator country
",
        );
    }

    #[test]
    fn non_iso_codes_from_databases_are_unknown() {
        check(
            ("quorum: 3", "quorum: 1"),
            "name: eu\naddresses: [{type: ExternalIP, address: 5.0.0.1}]\n",
            "[violation] eu is in violation under Diffusion Restreinte: only 0 of 1 required sources place it, and none places it outside
  - the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing
  - the node has no attested label node-restriction.kubernetes.io/hexagone-country, which proves nothing
  - address 5.0.0.1 has the code `EU` in the location database, which is not an ISO 3166-1 country, which proves nothing
  - the network of address 5.0.0.1 is not in the registration database, which proves nothing
",
        );
    }
}
