//! The locality vocabulary and its rules, owned here once: the names of sources, controllers,
//! subject kinds, fact kinds, assessments, breached rules and verdicts with their canonical
//! spellings, which source records which fact, who controls a source, and how a verdict must
//! follow from weighed evidence whatever the policy.
//!
//! The locality engine (`evidence`, `verdict`) and the ledger's entry format
//! (`hexagone_ledger::entry`) both use these types; neither declares its own. This module is
//! pure and has no feature: the ledger builds the platform without its engine (no geolocation
//! databases, no YAML, no files) to get it. The canonical strings are the ones every ledger
//! entry and every serialized evaluation holds: changing one breaks old ledgers.
//!
//! Adding a source, a fact kind or a rule is one edit of a `vocabulary!` block below; the
//! exhaustive matches in this module and in the engine then say what else must decide about it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name outside its closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not one of {}", .expected.join(", "))]
pub struct UnknownName {
    /// What was given.
    pub given: String,
    /// The canonical names of the set.
    pub expected: &'static [&'static str],
}

/// Declares a closed set of names: the enum, its canonical spellings (`as_str`, `FromStr`,
/// `Display`) and serde through those same spellings, so that no second spelling can exist.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every name, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// Every canonical spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The canonical name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            /// Parses the canonical name (exactly; no other case or spelling).
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownName {
                        given: other.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "one of {}", $name::NAMES.join(", "))
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        s.parse()
                            .map_err(|_| E::unknown_variant(s, $name::NAMES))
                    }
                }
                d.deserialize_str(Visitor)
            }
        }
    };
}

vocabulary! {
    /// A source of evidence about a subject.
    Source {
        /// `topology.kubernetes.io/region` or `/zone`, mapped by the policy's region table.
        TopologyLabel = "topologyLabel",
        /// A NodeAttestation (and its mirror, the `node-restriction.kubernetes.io/` label).
        Attestation = "attestation",
        /// Where one of the subject's addresses geolocates.
        Address = "address",
        /// Who operates the network of an address: jurisdiction, not location.
        NetworkOperator = "networkOperator",
        /// Round trips measured from declared vantage points: a physical bound on distance.
        Latency = "latency",
    }
}

vocabulary! {
    /// Who controls a source, and so who could lie through it.
    Controller {
        /// The node itself: a kubelet sets its topology labels and reports its own addresses,
        /// and everything derived from an address (location, AS number, registration) follows.
        Node = "node",
        /// The cluster's security officer, through a NodeAttestation a kubelet cannot write.
        SecurityOfficer = "securityOfficer",
        /// Neither: an endpoint declared in the auditor's own inventory.
        Neither = "neither",
        /// Physics: a round trip the subject can lengthen but never shorten.
        Physics = "physics",
    }
}

vocabulary! {
    /// What a subject is, which decides who controls its addresses.
    SubjectKind {
        /// A Kubernetes node: its labels and addresses are its own claims.
        Node = "node",
        /// A storage endpoint outside the cluster (declared in the inventory, or a bare address).
        Endpoint = "endpoint",
    }
}

vocabulary! {
    /// The kind of fact a source observed (the `kind` of an engine observation).
    FactKind {
        /// A topology label and its value.
        TopologyLabel = "topologyLabel",
        /// The attestation naming the subject, its status and the attested label.
        Attestation = "attestation",
        /// Where an address geolocates.
        Address = "address",
        /// An address's AS number, organisation and registration country.
        NetworkOperator = "networkOperator",
        /// An address the node reports that is not an IP address.
        UnreadableAddress = "unreadableAddress",
        /// A destination given as a range of addresses, which no single place holds.
        AddressRange = "addressRange",
        /// Round trips from vantage points to one of the subject's addresses.
        Latency = "latency",
    }
}

vocabulary! {
    /// How a piece of evidence weighs against a policy.
    AssessmentKind {
        /// It places the subject in an allowed country, or its network under an accepted operator.
        Supports = "supports",
        /// It places the subject outside the policy, breaking a [`Rule`].
        Contradicts = "contradicts",
        /// It says nothing either way.
        Inconclusive = "inconclusive",
        /// The rule does not apply (a private address under a policy that accepts them).
        NotApplicable = "notApplicable",
    }
}

vocabulary! {
    /// The policy rule a contradicting evidence breaks (the name of an engine `Breach`).
    Rule {
        /// The country is not among the allowed countries.
        CountryNotAllowed = "countryNotAllowed",
        /// The network is registered outside the allowed operator countries.
        RegistrationNotAllowed = "registrationNotAllowed",
        /// The network is on the policy's deny list.
        AsnDenied = "asnDenied",
        /// The policy lists allowed networks and this is not one.
        AsnNotAllowed = "asnNotAllowed",
        /// The network is controlled from outside the EU (curated list).
        ExtraEuControl = "extraEuControl",
        /// The node carries the attested label without a valid attestation behind it.
        LabelWithoutAttestation = "labelWithoutAttestation",
        /// The attested label says another country than the attestation.
        LabelDisagrees = "labelDisagrees",
        /// The subject is a range of addresses, which no policy can place.
        RangeOfAddresses = "rangeOfAddresses",
    }
}

vocabulary! {
    /// The verdict on a subject.
    VerdictKind {
        /// Enough evidence places the subject within the policy and none outside it.
        Compliant = "compliant",
        /// The policy is broken (or, per policy, evidence is missing).
        Violation = "violation",
        /// The evidence does not allow a decision.
        Unknown = "unknown",
    }
}

impl Default for SubjectKind {
    /// A node: what a subject is unless it is said to be an endpoint.
    fn default() -> Self {
        SubjectKind::Node
    }
}

impl FactKind {
    /// The source that records this kind of fact (an unreadable address is the network
    /// operator's: its network cannot be known).
    pub fn source(self) -> Source {
        match self {
            FactKind::TopologyLabel => Source::TopologyLabel,
            FactKind::Attestation => Source::Attestation,
            FactKind::Address | FactKind::AddressRange => Source::Address,
            FactKind::NetworkOperator | FactKind::UnreadableAddress => Source::NetworkOperator,
            FactKind::Latency => Source::Latency,
        }
    }
}

impl Source {
    /// Who controls this source for a subject of `kind`: the node sets its own topology labels,
    /// the security officer writes attestations, and an address (with all derived from it) is
    /// the node's claim for a node and nobody's for an inventory endpoint.
    pub fn controller(self, kind: SubjectKind) -> Controller {
        match (self, kind) {
            (Source::TopologyLabel, _) => Controller::Node,
            (Source::Attestation, _) => Controller::SecurityOfficer,
            (Source::Address | Source::NetworkOperator, SubjectKind::Node) => Controller::Node,
            (Source::Address | Source::NetworkOperator, SubjectKind::Endpoint) => {
                Controller::Neither
            }
            (Source::Latency, _) => Controller::Physics,
        }
    }

    /// Whether this source says where a subject is (a topology label, an attestation, an
    /// address); the network operator says under which jurisdiction it is, never where.
    pub fn locates(self) -> bool {
        match self {
            Source::TopologyLabel | Source::Attestation | Source::Address | Source::Latency => true,
            Source::NetworkOperator => false,
        }
    }
}

/// One weighed evidence as the verdict rule sees it: its source, how it weighed, its sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weighed<'a> {
    /// The source.
    pub source: Source,
    /// How it weighed.
    pub assessment: AssessmentKind,
    /// Its sentence (fact and weight), which a contradiction gives as a reason.
    pub sentence: &'a str,
}

/// Why a verdict does not follow from its evidence ([`check_verdict`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerdictMismatch {
    /// A violation for contradicting evidence whose reasons are not those evidence sentences.
    #[error(
        "a violation for contradicting evidence gives exactly those evidence sentences as reasons"
    )]
    ReasonsNotContradictions,
    /// Not a violation although some evidence contradicts the policy.
    #[error("{verdict} although evidence contradicts the policy ({sentence})")]
    DespiteContradiction {
        /// The verdict given.
        verdict: VerdictKind,
        /// The first contradicting evidence's sentence.
        sentence: String,
    },
    /// Compliant, and no location source supports it.
    #[error("compliant without any location evidence supporting it")]
    CompliantUnsupported,
    /// A violation or unknown verdict without a reason.
    #[error("a violation or unknown verdict must give at least one reason")]
    NoReason,
}

/// How a verdict follows from weighed evidence, whatever the policy: any contradicting evidence
/// makes a violation whose reasons are exactly the sentences of the contradicting evidence, in
/// order; a compliant verdict has a location source supporting it; violation and unknown
/// verdicts give at least one reason. (Whether the verdict follows from the facts under a given
/// policy is for a replay, which judges them again.)
pub fn check_verdict<'a>(
    evidence: impl IntoIterator<Item = Weighed<'a>>,
    verdict: VerdictKind,
    reasons: &[String],
) -> Result<(), VerdictMismatch> {
    let evidence: Vec<Weighed<'a>> = evidence.into_iter().collect();
    let mut contradicting = evidence
        .iter()
        .filter(|e| e.assessment == AssessmentKind::Contradicts)
        .map(|e| e.sentence)
        .peekable();
    if let Some(first) = contradicting.peek().copied() {
        return match verdict {
            VerdictKind::Violation if reasons.iter().map(String::as_str).eq(contradicting) => {
                Ok(())
            }
            VerdictKind::Violation => Err(VerdictMismatch::ReasonsNotContradictions),
            VerdictKind::Compliant | VerdictKind::Unknown => {
                Err(VerdictMismatch::DespiteContradiction {
                    verdict,
                    sentence: first.to_owned(),
                })
            }
        };
    }
    match verdict {
        VerdictKind::Compliant
            if !evidence
                .iter()
                .any(|e| e.assessment == AssessmentKind::Supports && e.source.locates()) =>
        {
            Err(VerdictMismatch::CompliantUnsupported)
        }
        VerdictKind::Violation | VerdictKind::Unknown if reasons.is_empty() => {
            Err(VerdictMismatch::NoReason)
        }
        VerdictKind::Compliant | VerdictKind::Violation | VerdictKind::Unknown => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T>(names: &[T], spell: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
    where
        T: Copy + PartialEq + fmt::Debug,
    {
        for n in names {
            assert_eq!(parse(spell(*n)), Some(*n), "{n:?} round-trips");
        }
    }

    #[test]
    fn every_name_round_trips_through_its_spelling_and_serde() {
        check(Source::ALL, Source::as_str, |s| s.parse().ok());
        check(Controller::ALL, Controller::as_str, |s| s.parse().ok());
        check(SubjectKind::ALL, SubjectKind::as_str, |s| s.parse().ok());
        check(FactKind::ALL, FactKind::as_str, |s| s.parse().ok());
        check(AssessmentKind::ALL, AssessmentKind::as_str, |s| {
            s.parse().ok()
        });
        check(Rule::ALL, Rule::as_str, |s| s.parse().ok());
        check(VerdictKind::ALL, VerdictKind::as_str, |s| s.parse().ok());
        for s in Source::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Source>(&json).unwrap(), *s);
        }
    }

    #[test]
    fn the_spellings_are_those_old_ledgers_hold() {
        assert_eq!(
            Source::NAMES,
            [
                "topologyLabel",
                "attestation",
                "address",
                "networkOperator",
                "latency"
            ]
        );
        assert_eq!(
            Controller::NAMES,
            ["node", "securityOfficer", "neither", "physics"]
        );
        assert_eq!(SubjectKind::NAMES, ["node", "endpoint"]);
        assert_eq!(
            AssessmentKind::NAMES,
            ["supports", "contradicts", "inconclusive", "notApplicable"]
        );
        assert_eq!(VerdictKind::NAMES, ["compliant", "violation", "unknown"]);
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_names_it_could_be() {
        let err = "Node".parse::<SubjectKind>().unwrap_err();
        assert_eq!(err.to_string(), "\"Node\" is not one of node, endpoint");
        let err = serde_json::from_str::<Controller>("\"kubelet\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `kubelet`"),
            "{err}"
        );
    }

    #[test]
    fn an_address_is_the_nodes_claim_for_a_node_and_nobodys_for_an_endpoint() {
        for kind in SubjectKind::ALL {
            assert_eq!(Source::TopologyLabel.controller(*kind), Controller::Node);
            assert_eq!(
                Source::Attestation.controller(*kind),
                Controller::SecurityOfficer
            );
        }
        for s in [Source::Address, Source::NetworkOperator] {
            assert_eq!(s.controller(SubjectKind::Node), Controller::Node);
            assert_eq!(s.controller(SubjectKind::Endpoint), Controller::Neither);
        }
        assert_eq!(
            FactKind::UnreadableAddress.source(),
            Source::NetworkOperator
        );
    }

    fn weighed(source: Source, assessment: AssessmentKind, sentence: &str) -> Weighed<'_> {
        Weighed {
            source,
            assessment,
            sentence,
        }
    }

    #[test]
    fn a_verdict_follows_from_its_evidence() {
        use AssessmentKind::*;
        let supported = [
            weighed(Source::Address, Supports, "in FR"),
            weighed(Source::NetworkOperator, Supports, "registered in FR"),
        ];
        assert_eq!(
            check_verdict(supported, VerdictKind::Compliant, &[]),
            Ok(())
        );
        // A network operator alone places nothing.
        let operator_only = [weighed(
            Source::NetworkOperator,
            Supports,
            "registered in FR",
        )];
        assert_eq!(
            check_verdict(operator_only, VerdictKind::Compliant, &[]),
            Err(VerdictMismatch::CompliantUnsupported)
        );
        let against = [
            weighed(Source::Address, Supports, "in FR"),
            weighed(Source::NetworkOperator, Contradicts, "denied network"),
        ];
        assert_eq!(
            check_verdict(against, VerdictKind::Violation, &["denied network".into()]),
            Ok(())
        );
        assert_eq!(
            check_verdict(against, VerdictKind::Violation, &["in FR".into()]),
            Err(VerdictMismatch::ReasonsNotContradictions)
        );
        let err = check_verdict(against, VerdictKind::Compliant, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "compliant although evidence contradicts the policy (denied network)"
        );
        assert_eq!(
            check_verdict([], VerdictKind::Unknown, &[]),
            Err(VerdictMismatch::NoReason)
        );
    }
}
