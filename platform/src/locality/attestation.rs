//! Node attestations: a security officer's signed-off statement of where a node is and who hosts
//! it, made outside the node's reach (the `NodeAttestation` custom resource), and whether one
//! holds for a given node at a given time.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::country::Country;
use crate::node::NodeDescription;

/// On what an attestation rests.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Basis {
    /// A hosting contract naming the machine and its site.
    Contract,
    /// An on-site inspection.
    Inspection,
    /// The hosting provider's inventory, matched by provider ID.
    ProviderInventory,
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Basis::Contract => "contract",
            Basis::Inspection => "inspection",
            Basis::ProviderInventory => "provider inventory",
        })
    }
}

/// What a security officer attests about one node: the spec of the `NodeAttestation` resource.
///
/// Only a security-officer role may create it (see `manifests/rbac/`); a kubelet cannot.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "k8s",
    derive(kube::CustomResource),
    kube(
        group = "hexagone.fr",
        version = "v1alpha1",
        kind = "NodeAttestation",
        shortname = "nat",
        category = "hexagone",
        doc = "A security officer's attestation of where a node is and who hosts it, made outside the node's reach.",
        printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName"}"#,
        printcolumn = r#"{"name":"Country","type":"string","jsonPath":".spec.country"}"#,
        printcolumn = r#"{"name":"Company","type":"string","jsonPath":".spec.hostingCompany"}"#,
        printcolumn = r#"{"name":"Basis","type":"string","jsonPath":".spec.basis"}"#,
        printcolumn = r#"{"name":"Until","type":"string","jsonPath":".spec.validUntil"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttestationSpec {
    /// Name of the Node this attestation is about.
    pub node_name: String,
    /// The node's `spec.providerID` (which a node cannot change once set), binding the
    /// attestation to one machine rather than to a name any new node could take.
    #[serde(rename = "providerID")]
    pub provider_id: String,
    /// The country the node is in, as an ISO 3166-1 alpha-2 code (FR).
    pub country: Country,
    /// The company hosting the machine (a legal entity, as on the contract).
    pub hosting_company: String,
    /// The site (data centre) the machine is in.
    pub site: String,
    /// The zone the machine is in, as its provider names it in `topology.kubernetes.io/zone`
    /// (`fr-par-1`). The operator mirrors it into a label a kubelet cannot set, and a node's
    /// zone counts for volume placement only when it matches; a policy that requires
    /// attestations counts no zone that an attestation does not name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(
            length(min = 1, max = 63),
            regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
        )
    )]
    pub zone: Option<String>,
    /// What the attestation rests on.
    pub basis: Basis,
    /// A reference to the contract, inspection report or inventory extract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The person or office attesting (shown in reports).
    pub attested_by: String,
    /// End of validity, RFC 3339 (`2027-06-30T00:00:00Z`); an expired attestation attests nothing.
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub valid_until: String,
}

/// An attestation as recorded in an evaluation: the resource's name and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationRecord {
    /// The resource name.
    pub name: String,
    /// Its country.
    pub country: Country,
    /// The hosting company.
    pub hosting_company: String,
    /// The site.
    pub site: String,
    /// Its basis.
    pub basis: Basis,
    /// Who attested.
    pub attested_by: String,
    /// End of validity, as written.
    pub valid_until: String,
}

/// Whether an attestation holds for a node at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum AttestationStatus {
    /// No attestation names the node.
    Missing,
    /// It names the node, matches its provider ID and has not expired.
    Valid,
    /// It expired.
    Expired,
    /// It names another machine under the same node name.
    ProviderIdMismatch {
        /// The provider ID attested.
        attested: String,
        /// The node's, empty when it has none.
        actual: String,
    },
    /// It cannot be used (an unreadable date, two valid attestations that disagree).
    Invalid {
        /// Why.
        why: String,
    },
}

impl fmt::Display for AttestationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttestationStatus::Missing => f.write_str("is missing"),
            AttestationStatus::Valid => f.write_str("is valid"),
            AttestationStatus::Expired => f.write_str("has expired"),
            AttestationStatus::ProviderIdMismatch { attested, actual } if actual.is_empty() => {
                write!(
                    f,
                    "names provider ID {attested}, but the node reports no provider ID"
                )
            }
            AttestationStatus::ProviderIdMismatch { attested, actual } => write!(
                f,
                "names provider ID {attested}, but the node's is {actual}"
            ),
            AttestationStatus::Invalid { why } => write!(f, "cannot be used: {why}"),
        }
    }
}

/// A named attestation, as read from the cluster, with what every evaluation needs from it
/// (its record and its parsed expiry) prepared once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    name: String,
    spec: AttestationSpec,
    record: Arc<AttestationRecord>,
    until: Result<OffsetDateTime, String>,
}

impl Attestation {
    /// The attestation named `name` (the resource's name).
    pub fn new(name: impl Into<String>, spec: AttestationSpec) -> Self {
        let name = name.into();
        let until = OffsetDateTime::parse(&spec.valid_until, &Rfc3339).map_err(|e| {
            format!(
                "validUntil {:?} is not an RFC 3339 time ({e})",
                spec.valid_until
            )
        });
        let record = Arc::new(AttestationRecord {
            name: name.clone(),
            country: spec.country,
            hosting_company: spec.hosting_company.clone(),
            site: spec.site.clone(),
            basis: spec.basis,
            attested_by: spec.attested_by.clone(),
            valid_until: spec.valid_until.clone(),
        });
        Attestation {
            name,
            spec,
            record,
            until,
        }
    }

    /// The resource name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it attests.
    pub fn spec(&self) -> &AttestationSpec {
        &self.spec
    }

    /// When it expires, if its `validUntil` is a time (an unreadable one never holds).
    pub fn expires(&self) -> Option<OffsetDateTime> {
        self.until.as_ref().ok().copied()
    }

    /// Whether this attestation holds for `node` at `now`.
    pub fn status(&self, node: &NodeDescription, now: OffsetDateTime) -> AttestationStatus {
        let actual = node.provider_id.as_deref().unwrap_or_default();
        if self.spec.provider_id != actual {
            return AttestationStatus::ProviderIdMismatch {
                attested: self.spec.provider_id.clone(),
                actual: actual.to_owned(),
            };
        }
        match &self.until {
            Err(why) => AttestationStatus::Invalid { why: why.clone() },
            Ok(until) if *until <= now => AttestationStatus::Expired,
            Ok(_) => AttestationStatus::Valid,
        }
    }

    /// The record an evaluation keeps (shared, not copied).
    pub fn record(&self) -> Arc<AttestationRecord> {
        self.record.clone()
    }
}

/// The zone the node's valid attestations name (`spec.zone`), when they all name the same one
/// and it is a label value (at most 63 characters: letters, digits, `-`, `_`, `.`, alphanumeric
/// at both ends); `None` when none is valid, one names no zone, or two disagree: a zone places
/// volumes only when every standing attestation vouches for it.
pub fn attested_zone(
    node: &NodeDescription,
    attestations: &[Attestation],
    now: OffsetDateTime,
) -> Option<String> {
    let mut zones = attestations
        .iter()
        .filter(|a| {
            a.spec.node_name == node.name && a.status(node, now) == AttestationStatus::Valid
        })
        .map(|a| a.spec.zone.as_deref());
    let first = zones.next()??;
    if zones.any(|z| z != Some(first)) {
        return None;
    }
    let label_value = first.len() <= 63
        && first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && first.starts_with(|c: char| c.is_ascii_alphanumeric())
        && first.ends_with(|c: char| c.is_ascii_alphanumeric());
    label_value.then(|| first.to_owned())
}

/// Picks, among `attestations`, the one that speaks for `node` at `now`: the valid one (the
/// longest-lived when several agree), otherwise the latest-expiring invalid one, so the
/// evaluation can say why it does not hold. Valid attestations that disagree on the country
/// make the status Invalid: a security officer must settle it.
pub fn select(
    node: &NodeDescription,
    attestations: &[Attestation],
    now: OffsetDateTime,
) -> (Option<Arc<AttestationRecord>>, AttestationStatus) {
    let mine: Vec<(&Attestation, AttestationStatus)> = attestations
        .iter()
        .filter(|a| a.spec.node_name == node.name)
        .map(|a| (a, a.status(node, now)))
        .collect();
    let mut valid: Vec<&Attestation> = mine
        .iter()
        .filter(|(_, s)| *s == AttestationStatus::Valid)
        .map(|(a, _)| *a)
        .collect();
    // By instant, not by text: `2027-01-01T01:00:00+02:00` is before `2027-01-01T00:00:00Z`.
    valid.sort_by_key(|a| a.until.as_ref().ok().copied());
    if let Some(last) = valid.last() {
        if let Some(other) = valid.iter().find(|a| a.spec.country != last.spec.country) {
            return (
                Some(last.record()),
                AttestationStatus::Invalid {
                    why: format!(
                        "NodeAttestations {} ({}) and {} ({}) disagree",
                        other.name, other.spec.country, last.name, last.spec.country
                    ),
                },
            );
        }
        return (Some(last.record()), AttestationStatus::Valid);
    }
    match mine
        .into_iter()
        .max_by_key(|(a, _)| a.until.as_ref().ok().copied())
    {
        Some((a, status)) => (Some(a.record()), status),
        None => (None, AttestationStatus::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attestation(name: &str, country: &str, provider: &str, until: &str) -> Attestation {
        Attestation::new(
            name,
            AttestationSpec {
                node_name: "gra-1".into(),
                provider_id: provider.into(),
                country: country.parse().unwrap(),
                hosting_company: "OVH SAS".into(),
                site: "Gravelines GRA3".into(),
                zone: None,
                basis: Basis::Contract,
                reference: None,
                attested_by: "rssi@example.fr".into(),
                valid_until: until.into(),
            },
        )
    }

    fn check(attestations: &[Attestation], expected: &str) {
        let node = NodeDescription {
            name: "gra-1".into(),
            provider_id: Some("ovh://gra/1".into()),
            ..NodeDescription::default()
        };
        let now = OffsetDateTime::parse("2026-11-29T12:00:00Z", &Rfc3339).unwrap();
        let (record, status) = select(&node, attestations, now);
        let got = format!("{:?} {status}", record.map(|r| r.name.clone()));
        assert_eq!(got, expected);
    }

    #[test]
    fn a_zone_is_attested_only_when_every_valid_attestation_names_it() {
        let node = NodeDescription {
            name: "gra-1".into(),
            provider_id: Some("ovh://gra/1".into()),
            ..NodeDescription::default()
        };
        let now = OffsetDateTime::parse("2026-11-29T12:00:00Z", &Rfc3339).unwrap();
        let zoned = |name: &str, zone: Option<&str>, until: &str| {
            let mut a = attestation(name, "FR", "ovh://gra/1", until);
            a.spec.zone = zone.map(Into::into);
            a
        };
        let later = "2027-01-01T00:00:00Z";
        let zone = |all: &[Attestation]| attested_zone(&node, all, now);
        assert_eq!(
            zone(&[zoned("a", Some("fr-par-1"), later)]),
            Some("fr-par-1".into())
        );
        assert_eq!(zone(&[zoned("a", None, later)]), None);
        assert_eq!(zone(&[]), None);
        // Expired, or another machine's: it vouches for nothing.
        assert_eq!(
            zone(&[zoned("a", Some("fr-par-1"), "2026-01-01T00:00:00Z")]),
            None
        );
        let mut other = zoned("a", Some("fr-par-1"), later);
        other.spec.provider_id = "ovh://gra/9".into();
        assert_eq!(zone(&[other]), None);
        // Two standing attestations: the same zone, or none at all.
        let two = |z: Option<&str>| [zoned("a", Some("fr-par-1"), later), zoned("b", z, later)];
        assert_eq!(zone(&two(Some("fr-par-1"))), Some("fr-par-1".into()));
        assert_eq!(zone(&two(Some("fr-par-2"))), None);
        assert_eq!(zone(&two(None)), None);
        // An expired one does not count against the standing one.
        assert_eq!(
            zone(&[
                zoned("a", Some("fr-par-1"), later),
                zoned("old", Some("gra"), "2026-01-01T00:00:00Z")
            ]),
            Some("fr-par-1".into())
        );
        // Not a label value (a CRD relaxed, a resource written around it): no zone.
        for bad in ["", "-fr", "fr par", &"z".repeat(64)] {
            assert_eq!(zone(&[zoned("a", Some(bad), later)]), None, "{bad:?}");
        }
    }

    #[test]
    fn the_valid_attestation_speaks() {
        check(&[], "None is missing");
        check(
            &[attestation(
                "a",
                "FR",
                "ovh://gra/1",
                "2027-01-01T00:00:00Z",
            )],
            "Some(\"a\") is valid",
        );
        check(
            &[attestation(
                "a",
                "FR",
                "ovh://gra/1",
                "2026-11-29T12:00:00Z",
            )],
            "Some(\"a\") has expired",
        );
        check(
            &[attestation(
                "a",
                "FR",
                "ovh://gra/9",
                "2027-01-01T00:00:00Z",
            )],
            "Some(\"a\") names provider ID ovh://gra/9, but the node's is ovh://gra/1",
        );
        check(
            &[attestation("a", "FR", "ovh://gra/1", "next year")],
            "Some(\"a\") cannot be used: validUntil \"next year\" is not an RFC 3339 time (the 'year' component could not be parsed)",
        );
        check(
            &[
                attestation("old", "FR", "ovh://gra/1", "2025-01-01T00:00:00Z"),
                attestation("new", "FR", "ovh://gra/1", "2027-01-01T00:00:00Z"),
            ],
            "Some(\"new\") is valid",
        );
        check(
            &[
                attestation("later", "FR", "ovh://gra/1", "2027-01-01T00:00:00Z"),
                attestation("sooner", "FR", "ovh://gra/1", "2027-01-01T01:00:00+02:00"),
            ],
            "Some(\"later\") is valid",
        );
        check(
            &[
                attestation("fr", "FR", "ovh://gra/1", "2027-01-01T00:00:00Z"),
                attestation("de", "DE", "ovh://gra/1", "2028-01-01T00:00:00Z"),
            ],
            "Some(\"de\") cannot be used: NodeAttestations fr (FR) and de (DE) disagree",
        );
    }
}
