//! Evidence: what one source observed about where a node is, who controls that source, and how it
//! weighs against a policy, in one sentence.
//!
//! Observations are facts, recorded as they were seen (a label's value, where an address
//! geolocates, which attestation names the node); they never depend on a policy, so a recorded
//! evaluation can be judged again later ([`crate::verdict::judge`]).

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::attestation::{AttestationRecord, AttestationStatus};
use crate::country::{Country, CountrySet};
use crate::geo::Gap;
use crate::labels::ATTESTED_COUNTRY_LABEL;
use crate::latency::RoundTrips;
use crate::policy::{Asn, LocationSource};
use crate::vocabulary::{AssessmentKind, FactKind, Rule};
/// The vocabulary's names, where the engine has always exported them.
pub use crate::vocabulary::{Controller, Source};

impl Source {
    /// The location source this is (in a policy's terms), or `None` for the network operator (jurisdiction).
    pub fn location(self) -> Option<LocationSource> {
        match self {
            Source::TopologyLabel => Some(LocationSource::TopologyLabel),
            Source::Attestation => Some(LocationSource::Attestation),
            Source::Address => Some(LocationSource::Address),
            Source::Latency => Some(LocationSource::Latency),
            Source::NetworkOperator => None,
        }
    }
}

/// What a source observed: facts only, never a judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Observation {
    /// A topology label (`key` is the label key; `value` is `None` when the node has none).
    TopologyLabel {
        /// The label key.
        key: Cow<'static, str>,
        /// Its value, a region or zone name.
        value: Option<String>,
    },
    /// The attestation that names the node, if any, and the attested label the node carries.
    Attestation {
        /// The value of the `node-restriction.kubernetes.io/hexagone-country` label, if set.
        label: Option<String>,
        /// The attestation considered (the valid one, or the latest invalid one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attestation: Option<Arc<AttestationRecord>>,
        /// Whether it holds for this node now.
        status: AttestationStatus,
    },
    /// Where an address is.
    Address {
        /// The address, canonical form.
        address: IpAddr,
        /// Its country.
        country: Option<Country>,
        /// Why there is no country, when there is none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        missing: Option<Gap>,
    },
    /// Who operates the network of an address.
    NetworkOperator {
        /// The address, canonical form.
        address: IpAddr,
        /// Its autonomous system.
        asn: Option<Asn>,
        /// The AS organisation (shared with the database's record).
        organisation: Option<Arc<str>>,
        /// Where the network is registered.
        registered: Option<Country>,
        /// Why something is missing, when it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        missing: Option<Gap>,
    },
    /// An address the node reports that is not an IP address: its network cannot be known,
    /// so it blocks compliance rather than being silently dropped.
    UnreadableAddress {
        /// The Kubernetes address type (`ExternalIP`, `InternalIP`).
        address_type: String,
        /// The value as reported.
        value: String,
    },
    /// A destination given as a range of addresses (a NetworkPolicy's `ipBlock` wider than one
    /// address): each of its addresses may be anywhere, so no single place can be judged.
    AddressRange {
        /// The range as given (`address/prefix`).
        range: String,
    },
    /// Round trips of TCP handshakes from vantage points to one of the subject's addresses.
    Latency {
        /// The address measured, canonical form.
        address: IpAddr,
        /// The TCP port that answered.
        port: u16,
        /// The measurements, one per vantage point.
        measurements: Vec<RoundTrips>,
        /// SHA-256 of the country boundary data the area is judged against
        /// ([`crate::latency::boundaries_digest`]).
        boundaries: String,
    },
}

impl Observation {
    /// The kind of fact this is (its `kind` when serialized).
    pub fn kind(&self) -> FactKind {
        match self {
            Observation::TopologyLabel { .. } => FactKind::TopologyLabel,
            Observation::Attestation { .. } => FactKind::Attestation,
            Observation::Address { .. } => FactKind::Address,
            Observation::NetworkOperator { .. } => FactKind::NetworkOperator,
            Observation::UnreadableAddress { .. } => FactKind::UnreadableAddress,
            Observation::AddressRange { .. } => FactKind::AddressRange,
            Observation::Latency { .. } => FactKind::Latency,
        }
    }

    /// The source that made this observation.
    pub fn source(&self) -> Source {
        self.kind().source()
    }
}

/// How an observation weighs against the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "assessment", content = "rule")]
pub enum Assessment {
    /// It places the node in an allowed country (or its network under an accepted operator).
    Supports,
    /// It places the node outside the policy; the breach names the rule broken.
    Contradicts(Breach),
    /// It says nothing either way.
    Inconclusive,
    /// The rule does not apply (a private address under a policy that accepts them).
    NotApplicable,
}

impl Assessment {
    /// Its name (its `assessment` when serialized).
    pub fn kind(&self) -> AssessmentKind {
        match self {
            Assessment::Supports => AssessmentKind::Supports,
            Assessment::Contradicts(_) => AssessmentKind::Contradicts,
            Assessment::Inconclusive => AssessmentKind::Inconclusive,
            Assessment::NotApplicable => AssessmentKind::NotApplicable,
        }
    }

    /// The rule broken, for a contradiction.
    pub fn breach(&self) -> Option<&Breach> {
        match self {
            Assessment::Contradicts(b) => Some(b),
            Assessment::Supports | Assessment::Inconclusive | Assessment::NotApplicable => None,
        }
    }
}

/// Which rule an observation breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Breach {
    /// The country is not among the allowed countries.
    CountryNotAllowed(CountrySet),
    /// The network is registered outside the allowed operator countries.
    RegistrationNotAllowed(CountrySet),
    /// The network is on the policy's deny list.
    AsnDenied,
    /// The policy lists allowed networks and this is not one.
    AsnNotAllowed,
    /// The network is controlled from outside the EU (curated list).
    ExtraEuControl {
        /// The controlling parent company.
        parent: String,
        /// Its country.
        parent_country: Country,
    },
    /// The node carries the attested label without a valid attestation behind it.
    LabelWithoutAttestation,
    /// The attested label says another country than the attestation.
    LabelDisagrees {
        /// The attestation's country.
        attested: Country,
    },
    /// The subject is a range of addresses: some of them may be anywhere, so no policy can
    /// place it.
    RangeOfAddresses,
}

impl Breach {
    /// The name of the rule broken (its `rule` when serialized).
    pub fn rule(&self) -> Rule {
        match self {
            Breach::CountryNotAllowed(_) => Rule::CountryNotAllowed,
            Breach::RegistrationNotAllowed(_) => Rule::RegistrationNotAllowed,
            Breach::AsnDenied => Rule::AsnDenied,
            Breach::AsnNotAllowed => Rule::AsnNotAllowed,
            Breach::ExtraEuControl { .. } => Rule::ExtraEuControl,
            Breach::LabelWithoutAttestation => Rule::LabelWithoutAttestation,
            Breach::LabelDisagrees { .. } => Rule::LabelDisagrees,
            Breach::RangeOfAddresses => Rule::RangeOfAddresses,
        }
    }
}

/// One piece of evidence: what was observed, who controls it, and how it weighs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The source.
    pub source: Source,
    /// Who controls it.
    pub controller: Controller,
    /// What it observed.
    #[serde(flatten)]
    pub observation: Observation,
    /// The country it places the node in, under the policy (a label through the region table).
    pub placed_in: Option<Country>,
    /// How it weighs.
    #[serde(flatten)]
    pub assessment: Assessment,
    /// What decided the weight, when the fact alone does not say (latency: which measurements
    /// counted, and what the area they bound holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Evidence {
    /// The observation alone, without judgement ("address 51.15.0.1 is in FR").
    pub fn fact(&self) -> String {
        Fact(self).to_string()
    }
}

struct Fact<'a>(&'a Evidence);

impl fmt::Display for Fact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let placed = self.0.placed_in;
        match &self.0.observation {
            Observation::TopologyLabel { value: None, .. } => write!(
                f,
                "the node has no {} or {} label",
                crate::labels::REGION_LABEL,
                crate::labels::ZONE_LABEL
            ),
            Observation::TopologyLabel {
                key,
                value: Some(v),
            } => match placed {
                Some(c) => write!(
                    f,
                    "topology label {key}={v} (set by the node) is in {c} by the policy's region table"
                ),
                None => write!(
                    f,
                    "topology label {key}={v} (set by the node) is not in the policy's region table"
                ),
            },
            Observation::Attestation {
                label,
                attestation,
                status,
            } => {
                match (attestation, status) {
                    (Some(a), AttestationStatus::Valid) => write!(
                        f,
                        "NodeAttestation {} by {} ({}, {} at {}) places the node in {} until {}",
                        a.name,
                        a.attested_by,
                        a.basis,
                        a.hosting_company,
                        a.site,
                        a.country,
                        a.valid_until
                    )?,
                    (Some(a), status) => write!(f, "NodeAttestation {} {status}", a.name)?,
                    (None, _) => f.write_str("no NodeAttestation names the node")?,
                }
                match label {
                    Some(v) => write!(f, "; the node carries {ATTESTED_COUNTRY_LABEL}={v}"),
                    None => Ok(()),
                }
            }
            Observation::UnreadableAddress {
                address_type,
                value,
            } => write!(
                f,
                "the node reports {address_type} {value:?}, which is not an IP address, so its network is unknown"
            ),
            Observation::AddressRange { range } => write!(
                f,
                "the destination is the range of addresses {range}, any of which may be anywhere"
            ),
            Observation::Latency {
                address,
                port,
                measurements,
                ..
            } => {
                write!(
                    f,
                    "address {} answered TCP handshakes",
                    crate::latency::target(*address, *port)
                )?;
                if measurements.is_empty() {
                    return f.write_str(" from no vantage point");
                }
                for (i, m) in measurements.iter().enumerate() {
                    f.write_str(if i == 0 { " in " } else { "; and in " })?;
                    write!(f, "{m}")?;
                }
                Ok(())
            }
            Observation::Address {
                address,
                country: Some(c),
                ..
            } => write!(f, "address {address} is in {c}"),
            Observation::Address {
                address,
                missing: Some(Gap::Reserved { range }),
                ..
            } => write!(f, "address {address} is in {range} and has no location"),
            Observation::Address {
                address, missing, ..
            } => match missing {
                Some(gap) => write!(f, "address {address} {gap}"),
                None => write!(f, "address {address} has no location"),
            },
            Observation::NetworkOperator {
                address,
                asn,
                organisation,
                registered,
                missing,
            } => {
                if let Some(Gap::Reserved { range }) = missing {
                    return write!(
                        f,
                        "the network of address {address} is in {range} and has no operator"
                    );
                }
                match asn {
                    Some(a) => write!(f, "network {a}")?,
                    None => f.write_str("the network")?,
                }
                if let Some(o) = organisation {
                    write!(f, " ({o})")?;
                }
                write!(f, " of address {address}")?;
                match (registered, missing) {
                    (Some(c), _) => write!(f, " is registered in {c}"),
                    (None, Some(why)) => write!(f, " {why}"),
                    (None, None) => f.write_str(" has no known registration country"),
                }
            }
        }
    }
}

impl fmt::Display for Evidence {
    /// One plain sentence: the fact, then how it weighs against the policy.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Fact(self).fmt(f)?;
        let network = self.source == Source::NetworkOperator;
        if self.source == Source::Latency {
            return match (&self.assessment, &self.detail) {
                (Assessment::Supports, Some(d)) => write!(f, ": {d}"),
                (Assessment::Supports, None) => f.write_str(", inside the allowed countries"),
                (_, Some(d)) => write!(f, ", which proves nothing: {d}"),
                (_, None) => f.write_str(", which proves nothing"),
            };
        }
        match &self.assessment {
            Assessment::Supports if network => f.write_str(", an accepted network operator"),
            Assessment::Supports => f.write_str(", an allowed country"),
            Assessment::Inconclusive if network => {
                f.write_str(", which does not establish the operator's jurisdiction")
            }
            Assessment::Inconclusive => f.write_str(", which proves nothing"),
            Assessment::NotApplicable => f.write_str(
                ", which the policy accepts for a private address (the attestation is the evidence)",
            ),
            Assessment::Contradicts(Breach::CountryNotAllowed(set)) => {
                write!(f, ", outside the allowed countries ({set})")
            }
            Assessment::Contradicts(Breach::RegistrationNotAllowed(set)) => {
                write!(f, ", outside the allowed operator countries ({set})")
            }
            Assessment::Contradicts(Breach::AsnDenied) => {
                f.write_str(", and the policy denies this network")
            }
            Assessment::Contradicts(Breach::AsnNotAllowed) => {
                f.write_str(", and this network is not on the policy's allow list of qualified operators")?;
                let controlled = match &self.observation {
                    Observation::NetworkOperator { asn: Some(a), .. } => {
                        crate::jurisdiction::ExtraEuControl::shipped().get(*a)
                    }
                    _ => None,
                };
                match controlled {
                    Some(n) => write!(
                        f,
                        ": it is controlled by {} ({}), outside the EU",
                        n.parent, n.parent_country
                    ),
                    None => f.write_str(", so it is refused whatever its registration"),
                }
            }
            Assessment::Contradicts(Breach::ExtraEuControl {
                parent,
                parent_country,
            }) => write!(
                f,
                ", and it is controlled by {parent} ({parent_country}), outside the EU"
            ),
            Assessment::Contradicts(Breach::LabelWithoutAttestation) => {
                f.write_str(", a label no valid attestation stands behind")
            }
            Assessment::Contradicts(Breach::LabelDisagrees { attested }) => {
                write!(f, ", which disagrees with the attested {attested}")
            }
            Assessment::Contradicts(Breach::RangeOfAddresses) => {
                f.write_str(", which no policy can place: a destination must be one address")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::country::CountrySet;

    /// The engine's serde spellings are the vocabulary's: a fact's `kind`, an assessment and
    /// its rule serialize as the names the ledger records.
    #[test]
    fn serialized_names_are_the_vocabularys() {
        let address = "51.15.0.1".parse().unwrap();
        let observations = [
            Observation::TopologyLabel {
                key: Cow::Borrowed("k"),
                value: None,
            },
            Observation::Attestation {
                label: None,
                attestation: None,
                status: AttestationStatus::Missing,
            },
            Observation::Address {
                address,
                country: None,
                missing: None,
            },
            Observation::NetworkOperator {
                address,
                asn: None,
                organisation: None,
                registered: None,
                missing: None,
            },
            Observation::UnreadableAddress {
                address_type: "ExternalIP".into(),
                value: "x".into(),
            },
        ];
        for o in &observations {
            let json = serde_json::to_value(o).unwrap();
            assert_eq!(json["kind"], o.kind().as_str(), "{o:?}");
        }
        let fr: CountrySet = serde_json::from_str("[\"FR\"]").unwrap();
        let breaches = [
            Breach::CountryNotAllowed(fr.clone()),
            Breach::RegistrationNotAllowed(fr),
            Breach::AsnDenied,
            Breach::AsnNotAllowed,
            Breach::ExtraEuControl {
                parent: "p".into(),
                parent_country: "US".parse().unwrap(),
            },
            Breach::LabelWithoutAttestation,
            Breach::LabelDisagrees {
                attested: "FR".parse().unwrap(),
            },
            Breach::RangeOfAddresses,
        ];
        for b in breaches {
            let a = Assessment::Contradicts(b);
            let json = serde_json::to_value(&a).unwrap();
            assert_eq!(json["assessment"], a.kind().as_str());
            let rule = a.breach().unwrap().rule().as_str();
            let named = match &json["rule"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(m) => m.keys().next().unwrap().clone(),
                other => panic!("rule {other}"),
            };
            assert_eq!(named, rule);
        }
        for a in [
            Assessment::Supports,
            Assessment::Inconclusive,
            Assessment::NotApplicable,
        ] {
            assert_eq!(
                serde_json::to_value(&a).unwrap()["assessment"],
                a.kind().as_str()
            );
        }
    }
}
