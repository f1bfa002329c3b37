//! Evaluation in two steps: [`observe`] gathers facts about a node (labels, attestation, where its
//! addresses are and who operates their networks), [`judge`] weighs recorded facts against a
//! policy. A verdict is replayed later by judging the recorded facts again ([`replay`]).
//!
//! How evidence combines:
//! 1. any evidence that contradicts the policy makes a Violation (one source outside is enough);
//! 2. Compliant needs all of: at least `quorum` distinct location sources (topology label,
//!    address, attestation) placing the node in an allowed country, every source the policy
//!    requires among them, and every address's network operator accepted (jurisdiction is a
//!    requirement of its own, never a vote on location);
//! 3. otherwise the policy's `onUnknown` decides: Violation or Unknown.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::address::{canonical, reserved_range};
use crate::attestation::{Attestation, AttestationStatus, select};
use crate::country::Country;
use crate::evidence::{Assessment, Breach, Evidence, Observation, Source};
use crate::geo::{DatabaseIdentity, Gap, GeoSnapshot};
use crate::jurisdiction::ExtraEuControl;
use crate::labels::{ATTESTED_COUNTRY_LABEL, REGION_LABEL, ZONE_LABEL};
use crate::latency::{self, RoundTrips, microdegrees};
use crate::node::NodeDescription;
use crate::policy::{Asn, LocalityPolicy, LocationSource, Mode, OnUnknown};
/// The vocabulary's subject kinds, where the engine has always exported them.
pub use crate::vocabulary::SubjectKind;
use crate::vocabulary::VerdictKind;

/// The verdict on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "verdict", content = "reasons")]
pub enum Verdict {
    /// Enough sources place the node within the policy, none outside it, its network is accepted.
    Compliant,
    /// Some evidence places the node outside the policy (or, per policy, evidence is missing).
    Violation(Vec<Reason>),
    /// Too little evidence to decide.
    Unknown(Vec<Reason>),
}

/// Why a verdict is not Compliant; rendered as a sentence by [`Evaluation::reasons`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// The evidence at this index (contradicting, or inconclusive).
    Evidence(usize),
    /// Fewer distinct location sources than the quorum placed the node in an allowed country.
    QuorumNotMet {
        /// Distinct location sources that did.
        supporting: u8,
        /// Sources the policy requires.
        quorum: u8,
    },
    /// A source the policy requires did not place the node in an allowed country.
    RequiredSourceMissing(LocationSource),
    /// No network operator of the node's addresses was established (no address, or unknown).
    JurisdictionUnproven,
}

impl Verdict {
    /// Its name, without reasons.
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::Compliant => VerdictKind::Compliant,
            Verdict::Violation(_) => VerdictKind::Violation,
            Verdict::Unknown(_) => VerdictKind::Unknown,
        }
    }

    /// `compliant`, `violation` or `unknown`.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Whether this is Compliant.
    pub fn is_compliant(&self) -> bool {
        matches!(self, Verdict::Compliant)
    }
}

/// Everything observed about one subject, before any policy: what an evaluation records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    /// The node or endpoint name.
    pub subject: String,
    /// Node or endpoint.
    #[serde(default)]
    pub subject_kind: SubjectKind,
    /// When the facts were gathered (RFC 3339 in JSON), which decides attestation expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
    /// The observations, in source order.
    pub observations: Vec<Observation>,
    /// The geolocation database files consulted (shared by every evaluation of a snapshot).
    pub databases: Arc<[DatabaseIdentity]>,
}

/// The evidence about one node and the verdict it leads to under one policy, with the digests
/// that let anyone replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The node or endpoint name.
    pub subject: String,
    /// Node or endpoint.
    pub subject_kind: SubjectKind,
    /// When the facts were gathered.
    pub observed_at: OffsetDateTime,
    /// The geolocation database files consulted.
    pub databases: Arc<[DatabaseIdentity]>,
    /// The policy's classification label.
    pub classification: Arc<str>,
    /// The policy's mode.
    pub mode: Mode,
    /// [`LocalityPolicy::digest`] of the policy judged against.
    pub policy_digest: Arc<str>,
    /// Digest of the extra-EU control list, when the policy used it.
    pub extra_eu_control_digest: Option<Arc<str>>,
    /// Every piece of evidence, in observation order.
    pub evidence: Vec<Evidence>,
    /// The distinct location sources that place the node in an allowed country.
    pub supporting: Vec<LocationSource>,
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
            subject_kind: SubjectKind,
            #[serde(with = "time::serde::rfc3339")]
            observed_at: OffsetDateTime,
            classification: &'a str,
            mode: Mode,
            verdict: &'static str,
            admits: bool,
            headline: String,
            reasons: Vec<String>,
            supporting_sources: &'a [LocationSource],
            quorum: u8,
            policy_digest: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            extra_eu_control_digest: Option<&'a str>,
            databases: &'a [DatabaseIdentity],
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
            subject_kind: self.subject_kind,
            observed_at: self.observed_at,
            classification: &self.classification,
            mode: self.mode,
            verdict: self.verdict.name(),
            admits: self.admits(),
            headline: self.headline(),
            reasons: self.reasons(),
            supporting_sources: &self.supporting,
            quorum: self.quorum,
            policy_digest: &self.policy_digest,
            extra_eu_control_digest: self.extra_eu_control_digest.as_deref(),
            databases: &self.databases,
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
    /// The node (or endpoint) name.
    pub fn subject(&self) -> &str {
        &self.subject
    }

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
                    "only {supporting} of the {quorum} location sources the policy requires place the node in an allowed country"
                ),
                Reason::RequiredSourceMissing(source) => format!(
                    "the policy requires the {} to place the node in an allowed country, and it does not",
                    source_name(*source)
                ),
                Reason::JurisdictionUnproven => {
                    "no network operator of the node's addresses is established as accepted".into()
                }
            })
            .collect()
    }

    /// Whether the only location evidence is the attestation because every address is private.
    fn on_attestation_alone(&self) -> bool {
        self.supporting == [LocationSource::Attestation]
            && self
                .evidence
                .iter()
                .any(|e| e.assessment == Assessment::NotApplicable)
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
            (Verdict::Violation(_), Some(s), Some(a)) if s.source != a.source => {
                format!("{who} violates {class}: {}, but {}", s.fact(), a)
            }
            (Verdict::Violation(_), _, Some(a)) => format!("{who} violates {class}: {a}"),
            (Verdict::Compliant, _, _) if self.on_attestation_alone() => format!(
                "{who} complies with {class} on the security officer's attestation alone: its addresses are private, so no database can place it"
            ),
            (Verdict::Compliant, _, _) => format!(
                "{who} complies with {class}: {} ({} of {} required), none disagrees, and its network operator is accepted",
                self.supporting
                    .iter()
                    .map(|s| source_name(*s))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.supporting.len(),
                self.quorum
            ),
            (_, _, _) => format!(
                "{who} is {} under {class}: {}",
                if matches!(self.verdict, Verdict::Violation(_)) {
                    "in violation"
                } else {
                    "of unknown location"
                },
                self.reasons()
                    .into_iter()
                    .rev()
                    .find(|r| !r.ends_with("which proves nothing"))
                    .unwrap_or_default()
            ),
        }
    }
}

fn source_name(s: LocationSource) -> &'static str {
    match s {
        LocationSource::TopologyLabel => "topology label",
        LocationSource::Address => "address",
        LocationSource::Attestation => "attestation",
        LocationSource::Latency => "latency",
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

/// Observes `node` and judges it: [`observe`] then [`judge`].
pub fn evaluate(
    policy: &LocalityPolicy,
    node: &NodeDescription,
    attestations: &[Attestation],
    geo: &GeoSnapshot,
    now: OffsetDateTime,
) -> Evaluation {
    judge(
        policy,
        observe(node, SubjectKind::Node, attestations, geo, now),
    )
}

/// Gathers the facts about a subject: its topology labels, the attestation that names it, and
/// for each address where it is and who operates its network. Pure but for the databases.
pub fn observe(
    node: &NodeDescription,
    kind: SubjectKind,
    attestations: &[Attestation],
    geo: &GeoSnapshot,
    now: OffsetDateTime,
) -> Facts {
    let mut observations = Vec::with_capacity(5);
    let region = node.labels.get(REGION_LABEL);
    let zone = node.labels.get(ZONE_LABEL);
    match (region, zone) {
        (None, None) => observations.push(Observation::TopologyLabel {
            key: Cow::Borrowed(REGION_LABEL),
            value: None,
        }),
        _ => {
            for (key, value) in [(REGION_LABEL, region), (ZONE_LABEL, zone)] {
                if let Some(v) = value {
                    observations.push(Observation::TopologyLabel {
                        key: Cow::Borrowed(key),
                        value: Some(v.clone()),
                    });
                }
            }
        }
    }
    let (attestation, status) = select(node, attestations, now);
    observations.push(Observation::Attestation {
        label: node.labels.get(ATTESTED_COUNTRY_LABEL).cloned(),
        attestation,
        status,
    });
    for addr in node.public_addresses() {
        let address = canonical(addr);
        observations.push(locate(address, geo));
        observations.push(network_operator(address, geo));
    }
    for (address_type, value) in &node.unreadable_addresses {
        observations.push(Observation::UnreadableAddress {
            address_type: address_type.clone(),
            value: value.clone(),
        });
    }
    for range in &node.ranges {
        observations.push(Observation::AddressRange {
            range: range.clone(),
        });
    }
    Facts {
        subject: node.name.clone(),
        subject_kind: kind,
        observed_at: now,
        observations,
        databases: geo.identities(),
    }
}

/// The address facts among `observations` (where an address is, who operates its network)
/// looked up again in `geo`: `Err` gives the first that differs, its index and what `geo` says.
/// For a recorded evaluation, given the databases it names (same SHA-256): a fact that the
/// named database does not give was not observed, whatever the verdict replays to.
pub fn recheck_addresses(
    observations: &[Observation],
    geo: &GeoSnapshot,
) -> Result<(), (usize, Observation)> {
    for (i, o) in observations.iter().enumerate() {
        let again = match o {
            Observation::Address { address, .. } => locate(*address, geo),
            Observation::NetworkOperator { address, .. } => network_operator(*address, geo),
            _ => continue,
        };
        if &again != o {
            return Err((i, again));
        }
    }
    Ok(())
}

fn locate(address: IpAddr, geo: &GeoSnapshot) -> Observation {
    let (country, missing) = match reserved_range(address) {
        Some(range) => (None, Some(Gap::Reserved { range })),
        None => match geo.location.country(address) {
            Ok(c) => (Some(c), None),
            Err(gap) => (None, Some(gap)),
        },
    };
    Observation::Address {
        address,
        country,
        missing,
    }
}

fn network_operator(address: IpAddr, geo: &GeoSnapshot) -> Observation {
    if let Some(range) = reserved_range(address) {
        return Observation::NetworkOperator {
            address,
            asn: None,
            organisation: None,
            registered: None,
            missing: Some(Gap::Reserved { range }),
        };
    }
    let (asn, organisation, asn_missing) = match geo.asn.lookup(address) {
        Some(rec) => (rec.asn.map(Asn), rec.organisation, None),
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
    Observation::NetworkOperator {
        address,
        asn,
        organisation,
        registered,
        missing: reg_missing.or(asn_missing),
    }
}

/// Whether the operator may set the attested label, and to what: only from a valid attestation
/// that the node's other evidence does not contradict (an address located in another country, a
/// network under extra-EU control, an unreadable address). `Err` says why the label must not be
/// there. Policy-independent: each policy still judges the node on its own rules.
pub fn attested_label(facts: &Facts) -> Result<Country, String> {
    let (attestation, status) = facts
        .observations
        .iter()
        .find_map(|o| match o {
            Observation::Attestation {
                attestation,
                status,
                ..
            } => Some((attestation.as_ref(), status)),
            _ => None,
        })
        .unwrap_or((None, &AttestationStatus::Missing));
    let a = match (attestation, status) {
        (Some(a), AttestationStatus::Valid) => a,
        (Some(a), status) => return Err(format!("NodeAttestation {} {status}", a.name)),
        (None, _) => return Err("no NodeAttestation names the node".into()),
    };
    for o in &facts.observations {
        match o {
            Observation::Address {
                address,
                country: Some(c),
                ..
            } if *c != a.country => {
                return Err(format!(
                    "NodeAttestation {} says {}, but address {address} is in {c}",
                    a.name, a.country
                ));
            }
            // The label admits a node to placement: never on a network another jurisdiction
            // controls, whatever an attestation says about the building it is in.
            Observation::NetworkOperator {
                address,
                asn: Some(asn),
                ..
            } => {
                if let Some(n) = ExtraEuControl::shipped().get(*asn) {
                    return Err(format!(
                        "address {address} is on network {asn}, controlled by {} ({})",
                        n.parent, n.parent_country
                    ));
                }
            }
            Observation::UnreadableAddress { value, .. } => {
                return Err(format!("the node reports an unreadable address {value:?}"));
            }
            Observation::AddressRange { range } => {
                return Err(format!("the subject is the range of addresses {range}"));
            }
            _ => {}
        }
    }
    Ok(a.country)
}

/// A policy ready to judge many subjects: its digest is computed once, not per evaluation.
#[derive(Debug, Clone)]
pub struct Judge<'a> {
    policy: &'a LocalityPolicy,
    digest: Arc<str>,
    list_digest: Option<Arc<str>>,
}

impl<'a> Judge<'a> {
    /// Prepares `policy`.
    pub fn new(policy: &'a LocalityPolicy) -> Self {
        Judge {
            policy,
            digest: policy.digest().into(),
            list_digest: policy
                .network_operator
                .deny_extra_eu_control
                .then(|| ExtraEuControl::shipped().digest().into()),
        }
    }

    /// Weighs recorded facts against the policy (see [`judge`]).
    pub fn judge(&self, facts: Facts) -> Evaluation {
        judge_with(self, facts)
    }

    /// Observes a node and judges it (see [`evaluate`]).
    pub fn evaluate(
        &self,
        node: &NodeDescription,
        attestations: &[Attestation],
        geo: &GeoSnapshot,
        now: OffsetDateTime,
    ) -> Evaluation {
        self.judge(observe(node, SubjectKind::Node, attestations, geo, now))
    }
}

/// Weighs recorded facts against a policy. Deterministic: the same facts and policy always give
/// the same evaluation, which is what makes a recorded verdict replayable. To judge many
/// subjects under one policy, prepare a [`Judge`] once.
pub fn judge(policy: &LocalityPolicy, facts: Facts) -> Evaluation {
    Judge::new(policy).judge(facts)
}

fn judge_with(j: &Judge<'_>, facts: Facts) -> Evaluation {
    let policy = j.policy;
    let list = ExtraEuControl::shipped();
    // The observations move into the evidence: an evaluation holds each fact once.
    let evidence: Vec<Evidence> = facts
        .observations
        .into_iter()
        .map(|o| weigh(policy, list, o, facts.subject_kind))
        .collect();

    let mut supporting: Vec<LocationSource> = evidence
        .iter()
        .filter(|e| e.assessment == Assessment::Supports)
        .filter_map(|e| e.source.location())
        .collect();
    supporting.sort();
    supporting.dedup();
    let contradicting: Vec<Reason> = evidence
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.assessment, Assessment::Contradicts(_)))
        .map(|(i, _)| Reason::Evidence(i))
        .collect();
    let quorum = policy.quorum.get();
    let missing_required: Vec<LocationSource> = policy
        .required_sources
        .iter()
        .copied()
        .filter(|s| !supporting.contains(s))
        .collect();
    let operators: Vec<&Evidence> = evidence
        .iter()
        .filter(|e| e.source == Source::NetworkOperator)
        .collect();
    let jurisdiction = operators.iter().all(|e| {
        matches!(
            e.assessment,
            Assessment::Supports | Assessment::NotApplicable
        )
    }) && (!operators.is_empty()
        || policy.network_operator.allow_private_addresses);

    let verdict = if !contradicting.is_empty() {
        Verdict::Violation(contradicting)
    } else if supporting.len() >= usize::from(quorum) && missing_required.is_empty() && jurisdiction
    {
        Verdict::Compliant
    } else {
        let mut reasons: Vec<Reason> = evidence
            .iter()
            .enumerate()
            .filter(|(_, e)| e.assessment == Assessment::Inconclusive)
            .map(|(i, _)| Reason::Evidence(i))
            .collect();
        if !jurisdiction && operators.is_empty() {
            reasons.push(Reason::JurisdictionUnproven);
        }
        reasons.extend(
            missing_required
                .into_iter()
                .map(Reason::RequiredSourceMissing),
        );
        if supporting.len() < usize::from(quorum) {
            reasons.push(Reason::QuorumNotMet {
                supporting: supporting.len() as u8,
                quorum,
            });
        }
        match policy.on_unknown {
            OnUnknown::Violation => Verdict::Violation(reasons),
            OnUnknown::Unknown => Verdict::Unknown(reasons),
        }
    };
    Evaluation {
        classification: policy.classification.clone(),
        mode: policy.mode,
        policy_digest: j.digest.clone(),
        extra_eu_control_digest: j.list_digest.clone(),
        evidence,
        supporting,
        quorum,
        verdict,
        subject: facts.subject,
        subject_kind: facts.subject_kind,
        observed_at: facts.observed_at,
        databases: facts.databases,
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

fn weigh(
    policy: &LocalityPolicy,
    list: &ExtraEuControl,
    observation: Observation,
    kind: SubjectKind,
) -> Evidence {
    let mut detail = None;
    let (placed_in, assessment) = match &observation {
        Observation::TopologyLabel { value, .. } => {
            let country = value.as_ref().and_then(|v| policy.regions.get(v)).copied();
            (country, place(policy, country))
        }
        Observation::Attestation {
            label,
            attestation,
            status,
        } => {
            let valid = (*status == AttestationStatus::Valid)
                .then_some(attestation.as_ref())
                .flatten();
            let assessment = match (valid, label) {
                (Some(a), Some(v)) if v.as_str() != a.country.as_str() => {
                    Assessment::Contradicts(Breach::LabelDisagrees {
                        attested: a.country,
                    })
                }
                (Some(a), _) => place(policy, Some(a.country)),
                (None, Some(_)) => Assessment::Contradicts(Breach::LabelWithoutAttestation),
                (None, None) => Assessment::Inconclusive,
            };
            (valid.map(|a| a.country), assessment)
        }
        Observation::Address { country, .. } => (*country, place(policy, *country)),
        Observation::UnreadableAddress { .. } => (None, Assessment::Inconclusive),
        Observation::AddressRange { .. } => {
            (None, Assessment::Contradicts(Breach::RangeOfAddresses))
        }
        Observation::Latency {
            measurements,
            boundaries,
            ..
        } => {
            let (placed, assessment, why) = weigh_latency(policy, measurements, boundaries);
            detail = Some(why);
            (placed, assessment)
        }
        Observation::NetworkOperator {
            address,
            asn,
            registered,
            ..
        } => (
            None,
            jurisdiction(policy, list, *address, *asn, *registered),
        ),
    };
    let source = observation.source();
    Evidence {
        source,
        controller: source.controller(kind),
        observation,
        placed_in,
        assessment,
        detail,
    }
}

/// Round trips: only measurements from vantages the policy declares, at the coordinates it
/// declares, with figures that follow from their samples, count; the area they bound together
/// supports a location only if all of it is in allowed countries. Never a contradiction: a
/// large round trip is a node that may be far, or slow.
fn weigh_latency(
    policy: &LocalityPolicy,
    measurements: &[RoundTrips],
    boundaries: &str,
) -> (Option<Country>, Assessment, String) {
    let mut excluded = Vec::new();
    let mut counted = Vec::new();
    for m in measurements {
        match policy.vantage_points.iter().find(|v| v.name == m.vantage) {
            None => excluded.push(format!(
                "vantage {} is not declared by the policy, so its site is not attested",
                m.vantage
            )),
            Some(v)
                if microdegrees(v.latitude) != m.latitude_microdeg
                    || microdegrees(v.longitude) != m.longitude_microdeg =>
            {
                excluded.push(format!(
                    "the measurement from {} states other coordinates than the policy declares",
                    m.vantage
                ))
            }
            Some(_) => match m.inconsistency() {
                Some(why) => excluded.push(why),
                None => counted.push(m),
            },
        }
    }
    let (placed, assessment, mut detail) =
        match latency::judge(&counted, &policy.allowed_countries, boundaries) {
            latency::Bound::Inside(countries) => {
                let names: Vec<&str> = countries.iter().map(|c| c.as_str()).collect();
                let detail = if names.len() == 1 {
                    format!("that area lies in {}, an allowed country", names[0])
                } else {
                    format!("that area lies in {}, allowed countries", names.join(", "))
                };
                let placed = (countries.len() == 1).then(|| countries[0]);
                (placed, Assessment::Supports, detail)
            }
            latency::Bound::Inconclusive(why) => (None, Assessment::Inconclusive, why),
        };
    if !excluded.is_empty() {
        detail.push_str(" (not counted: ");
        detail.push_str(&excluded.join("; "));
        detail.push(')');
    }
    (placed, assessment, detail)
}

/// The network operator rule: the deny list first, then the allow list (the gate), then the
/// extra-EU list, then the registration.
/// An unknown AS number under any AS rule, or an unknown registration, proves nothing; nothing
/// falls back to the address's location.
fn jurisdiction(
    policy: &LocalityPolicy,
    list: &ExtraEuControl,
    address: IpAddr,
    asn: Option<Asn>,
    registered: Option<Country>,
) -> Assessment {
    let rule = &policy.network_operator;
    if reserved_range(address).is_some() {
        return if rule.allow_private_addresses {
            Assessment::NotApplicable
        } else {
            Assessment::Inconclusive
        };
    }
    if let Some(a) = asn {
        if rule.denied_asns.contains(&a) {
            return Assessment::Contradicts(Breach::AsnDenied);
        }
        // An allow list is the gate: a network not on it is refused whatever its registration,
        // and the curated extra-EU list, when it names the network, only explains why.
        if rule.has_allow_list() && !rule.allows(a) {
            return Assessment::Contradicts(Breach::AsnNotAllowed);
        }
        if rule.deny_extra_eu_control
            && let Some(n) = list.get(a)
        {
            return Assessment::Contradicts(Breach::ExtraEuControl {
                parent: n.parent.clone(),
                parent_country: n.parent_country,
            });
        }
    } else if rule.has_as_rule() {
        return Assessment::Inconclusive;
    }
    match registered {
        None => Assessment::Inconclusive,
        Some(c) if rule.allowed_countries.contains(c) => Assessment::Supports,
        Some(_) => Assessment::Contradicts(Breach::RegistrationNotAllowed(
            rule.allowed_countries.clone(),
        )),
    }
}

/// What replay needs of a recorded evaluation: the facts, and the verdict and digests recorded
/// with them. [`replay`] reads it from a serialized [`Evaluation`]; a ledger builds it from its
/// entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The facts judged.
    pub facts: Facts,
    /// The recorded verdict's name.
    pub verdict: String,
    /// [`LocalityPolicy::digest`] of the policy judged under.
    pub policy_digest: String,
    /// Digest of the extra-EU control list, when the policy used it.
    pub extra_eu_control_digest: Option<String>,
}

/// The part of a serialized [`Evaluation`] that replay reads back.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Serialized {
    subject: String,
    #[serde(default)]
    subject_kind: SubjectKind,
    #[serde(with = "time::serde::rfc3339")]
    observed_at: OffsetDateTime,
    verdict: String,
    policy_digest: String,
    #[serde(default)]
    extra_eu_control_digest: Option<String>,
    #[serde(default)]
    databases: Arc<[DatabaseIdentity]>,
    evidence: Vec<RecordedEvidence>,
}

#[derive(Debug, Deserialize)]
struct RecordedEvidence {
    #[serde(flatten)]
    observation: Observation,
}

/// Why a recorded evaluation does not replay.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    /// The recorded JSON is not an evaluation.
    #[error("not a recorded evaluation: {0}")]
    Malformed(String),
    /// The policy given is not the one the verdict was judged under.
    #[error("the evaluation was judged under policy {recorded}, not the given policy {given}")]
    PolicyChanged {
        /// The recorded digest.
        recorded: String,
        /// The given policy's digest.
        given: String,
    },
    /// The extra-EU control list differs from the one used.
    #[error("the evaluation used extra-EU control list {recorded}, this build has {shipped}")]
    ListChanged {
        /// The recorded digest.
        recorded: String,
        /// This build's.
        shipped: String,
    },
    /// The facts judged again give another verdict.
    #[error("the recorded verdict is {recorded}, the facts judged again give {recomputed}")]
    VerdictDiffers {
        /// The recorded verdict.
        recorded: String,
        /// The recomputed one.
        recomputed: &'static str,
    },
}

/// Reads a serialized evaluation back and judges its facts again under `policy`: the policy
/// must be the one recorded (same digest), and the verdict must come out the same.
pub fn replay(recorded_json: &str, policy: &LocalityPolicy) -> Result<Evaluation, ReplayError> {
    let r: Serialized =
        serde_json::from_str(recorded_json).map_err(|e| ReplayError::Malformed(e.to_string()))?;
    replay_recorded(
        Recorded {
            facts: Facts {
                subject: r.subject,
                subject_kind: r.subject_kind,
                observed_at: r.observed_at,
                observations: r.evidence.into_iter().map(|e| e.observation).collect(),
                databases: r.databases,
            },
            verdict: r.verdict,
            policy_digest: r.policy_digest,
            extra_eu_control_digest: r.extra_eu_control_digest,
        },
        policy,
    )
}

/// Judges recorded facts again under `policy` (see [`replay`]): the policy must be the one
/// recorded (same digest), and the verdict must come out the same.
pub fn replay_recorded(r: Recorded, policy: &LocalityPolicy) -> Result<Evaluation, ReplayError> {
    let given = policy.digest();
    if *r.policy_digest != *given {
        return Err(ReplayError::PolicyChanged {
            recorded: r.policy_digest,
            given,
        });
    }
    let shipped = ExtraEuControl::shipped().digest();
    if let Some(recorded) = r.extra_eu_control_digest
        && recorded != shipped
    {
        return Err(ReplayError::ListChanged {
            recorded,
            shipped: shipped.to_owned(),
        });
    }
    let evaluation = judge(policy, r.facts);
    if evaluation.verdict.name() != r.verdict {
        return Err(ReplayError::VerdictDiffers {
            recorded: r.verdict,
            recomputed: evaluation.verdict.name(),
        });
    }
    Ok(evaluation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::{AttestationSpec, Basis};
    use crate::geo::{CountryField, Database};
    use std::path::Path;
    use std::sync::Arc;

    const LOCATION: &str = "51.15.0.0,51.15.255.255,FR\n51.38.0.0,51.38.255.255,FR\n15.188.0.0,15.188.255.255,FR\n3.0.0.0,3.0.0.255,US\n5.0.0.0,5.0.0.255,EU\n";
    const REGISTRATION: &str = "51.15.0.0,51.15.255.255,FR\n51.38.0.0,51.38.255.255,FR\n15.188.0.0,15.188.255.255,US\n3.0.0.0,3.0.0.255,US\n";
    const ASN: &str = "51.15.0.0,51.15.255.255,12876,Scaleway S.a.s.\n51.38.0.0,51.38.255.255,16276,OVH SAS\n15.188.0.0,15.188.255.255,16509,\"Amazon.com, Inc.\"\n3.0.0.0,3.0.0.255,14618,\"Amazon.com, Inc.\"\n";

    const POLICY: &str = "\
classification: Diffusion Restreinte
allowedCountries: [FR]
networkOperator:
  allowedCountries: [FR]
  allowedAsns: [16276]
  denyExtraEuControl: true
regions: {fr-par: FR, gra: FR, eu-west-3: FR, us-east-1: US}
quorum: 3
requiredSources: [attestation, address]
onUnknown: violation
";

    fn geo() -> GeoSnapshot {
        let db = |role, field, text: &str| {
            Arc::new(
                Database::parse(role, field, Path::new("mem.csv"), text.as_bytes().to_vec())
                    .unwrap(),
            )
        };
        GeoSnapshot::new(
            db("location", CountryField::Location, LOCATION),
            db("registration", CountryField::Registration, REGISTRATION),
            db("AS number", CountryField::Location, ASN),
        )
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse(
            "2026-11-29T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    }

    fn attestation(node: &str, country: &str, until: &str) -> Attestation {
        Attestation::new(
            format!("{node}-att"),
            AttestationSpec {
                node_name: node.into(),
                provider_id: format!("kwok://{node}"),
                country: country.parse().unwrap(),
                hosting_company: "OVH SAS".into(),
                site: "GRA3".into(),
                zone: None,
                basis: Basis::Contract,
                reference: None,
                attested_by: "rssi".into(),
                valid_until: until.into(),
            },
        )
    }

    fn check(
        policy_edit: (&str, &str),
        node_yaml: &str,
        attestations: &[Attestation],
        expected: &str,
    ) {
        let policy =
            LocalityPolicy::from_yaml(&POLICY.replace(policy_edit.0, policy_edit.1), "p").unwrap();
        let node: NodeDescription = yaml_serde::from_str(node_yaml).unwrap();
        let got = evaluate(&policy, &node, attestations, &geo(), now());
        assert_eq!(format!("[{}] {got}", got.verdict.name()), expected);
    }

    const FR_NODE: &str = "name: gra-1
providerID: kwok://gra-1
labels: {topology.kubernetes.io/region: gra, node-restriction.kubernetes.io/hexagone-country: FR}
addresses: [{type: ExternalIP, address: 51.38.0.1}, {type: InternalIP, address: 10.0.0.1}]
";

    #[test]
    fn attested_french_node_on_a_qualified_operator_is_compliant() {
        check(
            ("", ""),
            FR_NODE,
            &[attestation("gra-1", "FR", "2027-01-01T00:00:00Z")],
            "[compliant] gra-1 complies with Diffusion Restreinte: topology label, address, attestation (3 of 3 required), none disagrees, and its network operator is accepted
  - topology label topology.kubernetes.io/region=gra (set by the node) is in FR by the policy's region table, an allowed country
  - NodeAttestation gra-1-att by rssi (contract, OVH SAS at GRA3) places the node in FR until 2027-01-01T00:00:00Z; the node carries node-restriction.kubernetes.io/hexagone-country=FR, an allowed country
  - address 51.38.0.1 is in FR, an allowed country
  - network AS16276 (OVH SAS) of address 51.38.0.1 is registered in FR, an accepted network operator
",
        );
    }

    #[test]
    fn node_controlled_evidence_alone_is_never_enough() {
        // The case: a French region label and a French address, no attestation.
        check(
            ("", ""),
            "name: scw-1
labels: {topology.kubernetes.io/region: fr-par}
addresses: [{type: ExternalIP, address: 51.38.0.9}]
",
            &[],
            "[violation] scw-1 is in violation under Diffusion Restreinte: only 2 of the 3 location sources the policy requires place the node in an allowed country
  - topology label topology.kubernetes.io/region=fr-par (set by the node) is in FR by the policy's region table, an allowed country
  - no NodeAttestation names the node, which proves nothing
  - address 51.38.0.9 is in FR, an allowed country
  - network AS16276 (OVH SAS) of address 51.38.0.9 is registered in FR, an accepted network operator
",
        );
        // The label a kubelet cannot set, set anyway (by a careless admin): a violation.
        check(
            ("", ""),
            "name: scw-1
labels: {topology.kubernetes.io/region: fr-par, node-restriction.kubernetes.io/hexagone-country: FR}
addresses: [{type: ExternalIP, address: 51.38.0.9}]
",
            &[],
            "[violation] scw-1 violates Diffusion Restreinte: topology label topology.kubernetes.io/region=fr-par (set by the node) is in FR by the policy's region table, but no NodeAttestation names the node; the node carries node-restriction.kubernetes.io/hexagone-country=FR, a label no valid attestation stands behind
  - topology label topology.kubernetes.io/region=fr-par (set by the node) is in FR by the policy's region table, an allowed country
  - no NodeAttestation names the node; the node carries node-restriction.kubernetes.io/hexagone-country=FR, a label no valid attestation stands behind
  - address 51.38.0.9 is in FR, an allowed country
  - network AS16276 (OVH SAS) of address 51.38.0.9 is registered in FR, an accepted network operator
",
        );
    }

    #[test]
    fn hyperscaler_in_paris_is_a_violation_whatever_its_attestation() {
        check(
            ("", ""),
            "name: aws-1
providerID: kwok://aws-1
labels: {topology.kubernetes.io/region: eu-west-3}
addresses: [{type: ExternalIP, address: '::ffff:15.188.0.9'}]
",
            &[attestation("aws-1", "FR", "2027-01-01T00:00:00Z")],
            "[violation] aws-1 violates Diffusion Restreinte: topology label topology.kubernetes.io/region=eu-west-3 (set by the node) is in FR by the policy's region table, but network AS16509 (Amazon.com, Inc.) of address 15.188.0.9 is registered in US, and this network is not on the policy's allow list of qualified operators: it is controlled by Amazon.com, Inc. (US), outside the EU
  - topology label topology.kubernetes.io/region=eu-west-3 (set by the node) is in FR by the policy's region table, an allowed country
  - NodeAttestation aws-1-att by rssi (contract, OVH SAS at GRA3) places the node in FR until 2027-01-01T00:00:00Z, an allowed country
  - address 15.188.0.9 is in FR, an allowed country
  - network AS16509 (Amazon.com, Inc.) of address 15.188.0.9 is registered in US, and this network is not on the policy's allow list of qualified operators: it is controlled by Amazon.com, Inc. (US), outside the EU
",
        );
    }

    #[test]
    fn unknown_as_under_an_as_rule_proves_nothing() {
        // 5.0.0.1 has no AS record; the registration is unknown too: never compliant.
        check(
            ("requiredSources: [attestation, address]", "requiredSources: [attestation]"),
            "name: x
providerID: kwok://x
labels: {topology.kubernetes.io/region: gra}
addresses: [{type: ExternalIP, address: 5.0.0.1}]
",
            &[attestation("x", "FR", "2027-01-01T00:00:00Z")],
            "[violation] x is in violation under Diffusion Restreinte: only 2 of the 3 location sources the policy requires place the node in an allowed country
  - topology label topology.kubernetes.io/region=gra (set by the node) is in FR by the policy's region table, an allowed country
  - NodeAttestation x-att by rssi (contract, OVH SAS at GRA3) places the node in FR until 2027-01-01T00:00:00Z, an allowed country
  - address 5.0.0.1 has the code `EU` in the location database, which is not an ISO 3166-1 country, which proves nothing
  - the network of address 5.0.0.1 is not in the registration database, which does not establish the operator's jurisdiction
",
        );
    }

    #[test]
    fn private_addresses_need_a_policy_of_their_own() {
        let node = "name: lab
providerID: kwok://lab
addresses: [{type: InternalIP, address: 192.168.1.4}]
";
        let att = [attestation("lab", "FR", "2027-01-01T00:00:00Z")];
        check(
            ("quorum: 3", "quorum: 1"),
            node,
            &att,
            "[violation] lab is in violation under Diffusion Restreinte: the policy requires the address to place the node in an allowed country, and it does not
  - the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing
  - NodeAttestation lab-att by rssi (contract, OVH SAS at GRA3) places the node in FR until 2027-01-01T00:00:00Z, an allowed country
  - address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no location, which proves nothing
  - the network of address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no operator, which does not establish the operator's jurisdiction
",
        );
        check(
            (
                "quorum: 3\nrequiredSources: [attestation, address]",
                "quorum: 1\nrequiredSources: [attestation]",
            ),
            node,
            &att,
            "[violation] lab is in violation under Diffusion Restreinte: the network of address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no operator, which does not establish the operator's jurisdiction
  - the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing
  - NodeAttestation lab-att by rssi (contract, OVH SAS at GRA3) places the node in FR until 2027-01-01T00:00:00Z, an allowed country
  - address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no location, which proves nothing
  - the network of address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no operator, which does not establish the operator's jurisdiction
",
        );
        check(
            (
                "denyExtraEuControl: true\nregions",
                "denyExtraEuControl: true\n  allowPrivateAddresses: true\nregions",
            ),
            node,
            &att,
            "[violation] lab is in violation under Diffusion Restreinte: only 1 of the 3 location sources the policy requires place the node in an allowed country
  - the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing
  - NodeAttestation lab-att by rssi (contract, OVH SAS at GRA3) places the node in FR until 2027-01-01T00:00:00Z, an allowed country
  - address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no location, which proves nothing
  - the network of address 192.168.1.4 is in the private network range 192.168.0.0/16 (RFC 1918) and has no operator, which the policy accepts for a private address (the attestation is the evidence)
",
        );
        let on_prem = "classification: On premises
allowedCountries: [FR]
networkOperator: {allowedCountries: [FR], allowPrivateAddresses: true}
quorum: 1
requiredSources: [attestation]
";
        let policy = LocalityPolicy::from_yaml(on_prem, "p").unwrap();
        let n: NodeDescription = yaml_serde::from_str(node).unwrap();
        let e = evaluate(&policy, &n, &att, &geo(), now());
        assert_eq!(
            e.headline(),
            "lab complies with On premises on the security officer's attestation alone: its addresses are private, so no database can place it"
        );
        let e = evaluate(&policy, &n, &[], &geo(), now());
        assert_eq!(e.verdict.name(), "violation", "{e}");
    }

    #[test]
    fn expired_and_foreign_attestations() {
        check(
            ("", ""),
            FR_NODE,
            &[attestation("gra-1", "FR", "2026-01-01T00:00:00Z")],
            "[violation] gra-1 violates Diffusion Restreinte: topology label topology.kubernetes.io/region=gra (set by the node) is in FR by the policy's region table, but NodeAttestation gra-1-att has expired; the node carries node-restriction.kubernetes.io/hexagone-country=FR, a label no valid attestation stands behind
  - topology label topology.kubernetes.io/region=gra (set by the node) is in FR by the policy's region table, an allowed country
  - NodeAttestation gra-1-att has expired; the node carries node-restriction.kubernetes.io/hexagone-country=FR, a label no valid attestation stands behind
  - address 51.38.0.1 is in FR, an allowed country
  - network AS16276 (OVH SAS) of address 51.38.0.1 is registered in FR, an accepted network operator
",
        );
        let policy = LocalityPolicy::from_yaml(POLICY, "p").unwrap();
        let node: NodeDescription = yaml_serde::from_str(FR_NODE).unwrap();
        let e = evaluate(
            &policy,
            &node,
            &[attestation("gra-1", "DE", "2027-01-01T00:00:00Z")],
            &geo(),
            now(),
        );
        assert_eq!(
            e.reasons(),
            [
                "NodeAttestation gra-1-att by rssi (contract, OVH SAS at GRA3) places the node in DE until 2027-01-01T00:00:00Z; the node carries node-restriction.kubernetes.io/hexagone-country=FR, which disagrees with the attested DE"
            ]
        );
    }

    #[test]
    fn replay_recomputes_and_detects_a_changed_policy() {
        let policy = LocalityPolicy::from_yaml(POLICY, "p").unwrap();
        let node: NodeDescription = yaml_serde::from_str(FR_NODE).unwrap();
        let att = [attestation("gra-1", "FR", "2027-01-01T00:00:00Z")];
        let e = evaluate(&policy, &node, &att, &geo(), now());
        let json = serde_json::to_string(&e).unwrap();
        let again = replay(&json, &policy).unwrap();
        assert_eq!(again, e);

        let stricter = LocalityPolicy::from_yaml(&POLICY.replace("[16276]", "[1]"), "p").unwrap();
        assert!(matches!(
            replay(&json, &stricter),
            Err(ReplayError::PolicyChanged { .. })
        ));
        // A record whose verdict was edited does not replay.
        let forged = json.replacen("\"verdict\":\"compliant\"", "\"verdict\":\"violation\"", 1);
        assert_eq!(
            replay(&forged, &policy).map(|_| ()),
            Err(ReplayError::VerdictDiffers {
                recorded: "violation".into(),
                recomputed: "compliant"
            })
        );
        // A record whose facts were edited replays to the verdict the facts give.
        let moved = json.replace(
            "\"country\":\"FR\",\"missing\"",
            "\"country\":\"US\",\"missing\"",
        );
        let moved = moved.replace(
            "\"address\":\"51.38.0.1\",\"country\":\"FR\"",
            "\"address\":\"51.38.0.1\",\"country\":\"US\"",
        );
        assert!(matches!(
            replay(&moved, &policy),
            Err(ReplayError::VerdictDiffers { .. })
        ));
        assert!(matches!(
            replay("{}", &policy),
            Err(ReplayError::Malformed(_))
        ));
    }

    #[test]
    fn policy_digest_ignores_layout_not_rules() {
        let a = LocalityPolicy::from_yaml(POLICY, "p").unwrap();
        let b = LocalityPolicy::from_yaml(&format!("# comment\n{POLICY}"), "p").unwrap();
        let c = LocalityPolicy::from_yaml(&POLICY.replace("quorum: 3", "quorum: 2"), "p").unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);
    }
}
