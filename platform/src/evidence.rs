//! Evidence: what one source says about where a node is, judged against a policy, in one sentence.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::country::{Country, CountrySet};
use crate::geo::Gap;
use crate::policy::Asn;

/// An independent source of evidence about a node's location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// `topology.kubernetes.io/region` or `/zone`, mapped by the policy's region table.
    TopologyLabel,
    /// The operator's label under `node-restriction.kubernetes.io/`.
    AttestedLabel,
    /// Where the public address is, according to the location database.
    Geolocation,
    /// The network (AS) of the address and the country its operator is registered in.
    NetworkOperator,
}

impl Source {
    /// All sources, in the order evidence is listed.
    pub const ALL: [Source; 4] = [
        Source::TopologyLabel,
        Source::AttestedLabel,
        Source::Geolocation,
        Source::NetworkOperator,
    ];
}

/// What a source observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Observation {
    /// A topology label and the country the policy's region table gives it.
    TopologyLabel {
        /// The label key.
        key: &'static str,
        /// Its value (a region or zone name); `None` when the node has neither label.
        value: Option<String>,
        /// The country the region table maps the value to.
        country: Option<Country>,
    },
    /// The operator's attested label.
    AttestedLabel {
        /// The label key.
        key: &'static str,
        /// Its value, `None` when absent.
        value: Option<String>,
        /// The value as a country, when it is one.
        country: Option<Country>,
    },
    /// Where an address is.
    Geolocation {
        /// The address, canonical form.
        address: IpAddr,
        /// Its country.
        country: Option<Country>,
        /// Why there is no country, when there is none.
        #[serde(skip_serializing_if = "Option::is_none")]
        missing: Option<Gap>,
    },
    /// Who operates the network of an address.
    NetworkOperator {
        /// The address, canonical form.
        address: IpAddr,
        /// Its autonomous system.
        #[serde(serialize_with = "ser_asn")]
        asn: Option<Asn>,
        /// The AS organisation.
        #[serde(serialize_with = "ser_org")]
        organisation: Option<Arc<str>>,
        /// Where the network is registered.
        registered: Option<Country>,
        /// Why something is missing, when it is.
        #[serde(skip_serializing_if = "Option::is_none")]
        missing: Option<Gap>,
    },
}

fn ser_asn<S: Serializer>(asn: &Option<Asn>, s: S) -> Result<S::Ok, S::Error> {
    match asn {
        Some(a) => s.serialize_some(&a.0),
        None => s.serialize_none(),
    }
}

fn ser_org<S: Serializer>(org: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match org {
        Some(o) => s.serialize_some(&**o),
        None => s.serialize_none(),
    }
}

/// How an observation weighs against the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "assessment", content = "rule")]
pub enum Assessment {
    /// It places the node in an allowed country (or an allowed network).
    Supports,
    /// It places the node outside the policy; the string names the rule broken.
    Contradicts(Breach),
    /// It says nothing either way.
    Inconclusive,
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
}

/// One piece of evidence: a source, what it observed, and how that weighs against the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The source.
    pub source: Source,
    /// What it observed.
    pub observation: Observation,
    /// How it weighs.
    #[serde(flatten)]
    pub assessment: Assessment,
}

impl Evidence {
    /// The country this evidence places the node in, if any.
    pub fn country(&self) -> Option<Country> {
        match &self.observation {
            Observation::TopologyLabel { country, .. }
            | Observation::AttestedLabel { country, .. }
            | Observation::Geolocation { country, .. } => *country,
            Observation::NetworkOperator { registered, .. } => *registered,
        }
    }

    /// The observation alone, without judgement ("address 51.15.0.1 is in FR").
    pub fn fact(&self) -> String {
        Fact(&self.observation).to_string()
    }
}

struct Fact<'a>(&'a Observation);

impl fmt::Display for Fact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Observation::TopologyLabel { value: None, .. } => write!(
                f,
                "the node has no {} or {} label",
                crate::node::REGION_LABEL,
                crate::node::ZONE_LABEL
            ),
            Observation::TopologyLabel {
                key,
                value: Some(v),
                country: Some(c),
            } => write!(
                f,
                "topology label {key}={v} is in {c} by the policy's region table"
            ),
            Observation::TopologyLabel {
                key,
                value: Some(v),
                country: None,
            } => write!(
                f,
                "topology label {key}={v} is not in the policy's region table"
            ),
            Observation::AttestedLabel {
                key, value: None, ..
            } => write!(f, "the node has no attested label {key}"),
            Observation::AttestedLabel {
                key,
                value: Some(_),
                country: Some(c),
            } => write!(f, "attested label {key} says {c}"),
            Observation::AttestedLabel {
                key,
                value: Some(v),
                country: None,
            } => write!(
                f,
                "attested label {key}={v:?} is not an ISO 3166-1 country code"
            ),
            Observation::Geolocation {
                address,
                country: Some(c),
                ..
            } => write!(f, "address {address} is in {c}"),
            Observation::Geolocation {
                address,
                missing: Some(Gap::Reserved { range }),
                ..
            } => write!(f, "address {address} is in {range} and has no location"),
            Observation::Geolocation {
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
        Fact(&self.observation).fmt(f)?;
        match &self.assessment {
            Assessment::Supports => match &self.observation {
                Observation::NetworkOperator { .. } => f.write_str(", an allowed operator country"),
                _ => f.write_str(", an allowed country"),
            },
            Assessment::Inconclusive => f.write_str(", which proves nothing"),
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
                f.write_str(", and this network is not on the policy's allow list")
            }
        }
    }
}
