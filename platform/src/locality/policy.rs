//! `LocalityPolicy`: what "in France" (or "in the EU") means for one classification, loaded from YAML.
//!
//! Field names are camelCase so the same type serves as the spec of the `LocalityPolicy` custom
//! resource. Value checks live in the `Deserialize` impls of the newtypes ([`Country`], [`Asn`],
//! [`Quorum`]) so a mistake is reported with its line and column; checks across fields run after
//! parsing and are pointed back at the line of the field they name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::de::{self, Deserializer, Unexpected};
use serde::{Deserialize, Serialize, Serializer};

use crate::country::{Country, CountrySet};

/// How many location sources exist (topology label, address, attestation, latency). The network
/// operator is jurisdiction, a separate requirement, not a vote on location.
pub const SOURCE_COUNT: u8 = 4;

/// A locality policy: allowed countries, allowed network operators, how evidence must agree.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "k8s",
    derive(kube::CustomResource),
    kube(
        group = "hexagone.fr",
        version = "v1alpha1",
        kind = "LocalityPolicy",
        root = "LocalityPolicyResource",
        status = "crate::k8s::LocalityPolicyStatus",
        shortname = "lp",
        category = "hexagone",
        doc = "What \"in France\" (or \"in the EU\") means for one data classification, and which nodes meet it.",
        printcolumn = r#"{"name":"Classification","type":"string","jsonPath":".spec.classification"}"#,
        printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
        printcolumn = r#"{"name":"Eligible","type":"integer","jsonPath":".status.eligibleNodes"}"#,
        printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.evaluatedNodes"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityPolicy {
    /// The data classification this policy protects, shown in reports ("Diffusion Restreinte").
    pub classification: Arc<str>,
    /// `enforce`: only a Compliant verdict admits a node; `audit`: verdicts are only reported.
    #[serde(default)]
    pub mode: Mode,
    /// Where the node must be: countries or groups (`FR`, `EU`).
    pub allowed_countries: CountrySet,
    /// Who may operate the network the node's address belongs to.
    pub network_operator: NetworkOperatorRule,
    /// Region and zone names (values of the topology labels) and the country each lies in.
    #[serde(default)]
    pub regions: BTreeMap<String, Country>,
    /// How many distinct location sources (topology label, address, attestation, latency) must
    /// place the node in an allowed country (1 to 4).
    #[serde(default)]
    pub quorum: Quorum,
    /// Location sources that must each place the node in an allowed country, whatever the
    /// quorum. `[attestation]` makes node-controlled evidence (its labels and addresses) never
    /// enough on its own.
    #[serde(default)]
    pub required_sources: Vec<LocationSource>,
    /// What a verdict is when too few sources could place the node.
    #[serde(default)]
    pub on_unknown: OnUnknown,
    /// The namespaces whose Workplaces may use this policy. Only security officers write
    /// LocalityPolicies, so only they decide which data a policy protects: a Workplace in a
    /// namespace not listed is refused (`PolicyNotAllowed`). Empty: no Workplace may use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The vantage points whose round-trip measurements count as latency evidence: each at a
    /// site the security officer attests, with its coordinates. A measurement from a vantage not
    /// declared here, or declaring other coordinates, counts for nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vantage_points: Vec<VantagePoint>,
    /// Where a Workplace's images may come from, and whether each must be pinned by digest.
    /// Unset: any registry, tags allowed. The operator refuses a Workplace whose resolved images
    /// (catalog, `spec.registry`, per-component overrides) break it, before rendering anything.
    #[serde(default, skip_serializing_if = "ImageRule::is_unrestricted")]
    pub images: ImageRule,
    /// The qualified storage a Workplace's StorageClass may be (`spec.storage`): each a CSI
    /// driver with the exact parameters it is qualified with. Both decide where the volumes'
    /// data is written: an NFS driver writes to the server its `server` parameter names. Empty:
    /// any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioners: Vec<QualifiedStorage>,
}

/// One qualified storage: a CSI driver and the parameters its StorageClass must have, exactly.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QualifiedStorage {
    /// The CSI driver's name (`csi.interieur.gouv.fr`, `nfs.csi.k8s.io`).
    pub driver: String,
    /// The StorageClass parameters, all of them, the storage was qualified with
    /// (`{server: nfs.paris.interieur.gouv.fr, share: /exports/hexagone}`). A Workplace giving
    /// any other set, one more key, one fewer or another value, is refused. Empty: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

/// Where images may come from.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRule {
    /// Registries an image may be pulled from: a host with an optional port and path prefix
    /// (`registry.interieur.gouv.fr/hexagone`); an image is allowed when its reference starts
    /// with one of them followed by `/`. Empty: any registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<String>,
    /// Every image must be pinned by digest (`repo:tag@sha256:…`): a tag can be moved to other
    /// content, a digest cannot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_digest: bool,
}

impl ImageRule {
    /// Whether the rule allows every image.
    pub fn is_unrestricted(&self) -> bool {
        self.registries.is_empty() && !self.require_digest
    }

    /// Why the image `reference` (`registry/repository:tag[@sha256:…]`) may not be used, if it
    /// may not.
    pub fn refuses(&self, reference: &str) -> Option<String> {
        if !self.registries.is_empty()
            && !self.registries.iter().any(|r| {
                reference
                    .strip_prefix(r.trim_end_matches('/'))
                    .is_some_and(|rest| rest.starts_with('/'))
            })
        {
            return Some(format!(
                "image {reference} is not from a registry the policy allows ({})",
                self.registries.join(", ")
            ));
        }
        if self.require_digest && !reference.contains("@sha256:") {
            return Some(format!(
                "image {reference} is not pinned by digest, which the policy requires"
            ));
        }
        None
    }
}

/// The fields of a [`QualifiedStorage`], read from a map.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QualifiedStorageFields {
    driver: String,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for QualifiedStorage {
    /// A map of the fields, or a driver name alone: the former form, which let any parameters
    /// through and now means the driver with none (a policy written before stays readable and
    /// fails closed: a Workplace giving parameters under it is refused, each one named).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> de::Visitor<'de> for Entry {
            type Value = QualifiedStorage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a qualified storage: {driver: csi.example.fr, parameters: {...}}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(QualifiedStorage {
                    driver: v.to_owned(),
                    parameters: BTreeMap::new(),
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let f = QualifiedStorageFields::deserialize(
                    de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(QualifiedStorage {
                    driver: f.driver,
                    parameters: f.parameters,
                })
            }
        }
        d.deserialize_any(Entry)
    }
}

impl LocalityPolicy {
    /// Why a Workplace may not write its volumes through `provisioner` with `parameters`, if it
    /// may not: the pair must be one the policy qualifies, parameters and all.
    pub fn refuses_storage(
        &self,
        provisioner: &str,
        parameters: &BTreeMap<String, String>,
    ) -> Option<String> {
        if self.provisioners.is_empty() {
            return None;
        }
        let same_driver: Vec<&QualifiedStorage> = self
            .provisioners
            .iter()
            .filter(|q| q.driver == provisioner)
            .collect();
        if same_driver.is_empty() {
            let drivers: Vec<&str> = self
                .provisioners
                .iter()
                .map(|q| q.driver.as_str())
                .collect();
            return Some(format!(
                "storage provisioner {provisioner} is not one the policy allows ({})",
                drivers.join(", ")
            ));
        }
        if same_driver.iter().any(|q| &q.parameters == parameters) {
            return None;
        }
        // The differences from the driver's first qualified set, each named.
        let qualified = &same_driver[0].parameters;
        let mut differences = Vec::new();
        for (k, v) in parameters {
            match qualified.get(k) {
                None => differences.push(format!("{k}: {v} is not a qualified parameter")),
                Some(q) if q != v => differences.push(format!("{k}: {v}, qualified as {q}")),
                Some(_) => {}
            }
        }
        for k in qualified.keys().filter(|k| !parameters.contains_key(*k)) {
            differences.push(format!("{k} missing, qualified as {}", qualified[k]));
        }
        let more = match same_driver.len() {
            1 => String::new(),
            n => format!(
                " (and {} other qualified set{})",
                n - 1,
                if n > 2 { "s" } else { "" }
            ),
        };
        Some(format!(
            "storage provisioner {provisioner} is allowed only with the parameters the policy \
             qualifies{more}: {}",
            differences.join("; ")
        ))
    }
}

/// A place round trips are measured from, attested by the security officer.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VantagePoint {
    /// Its name, which measurements carry (a DNS label: `paris-th2`).
    pub name: String,
    /// The site it runs at ("Telehouse 2, 137 boulevard Voltaire, Paris").
    pub site: String,
    /// Latitude of the site, degrees north (-90 to 90).
    pub latitude: f64,
    /// Longitude of the site, degrees east (-180 to 180).
    pub longitude: f64,
    /// Who runs the measuring component there.
    pub operated_by: String,
    /// Who attests the site and coordinates, and on what ("RSSI, visit report PV-2026-114").
    pub attested_by: String,
}

/// Rules on the network operator: the autonomous system of the node's address.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkOperatorRule {
    /// Countries or groups where the network's operator must be registered (its jurisdiction).
    pub allowed_countries: CountrySet,
    /// When not empty (with [`NetworkOperatorRule::qualified_operators`]), only these networks
    /// are accepted; an address whose AS number is unknown is then never accepted.
    #[serde(default)]
    pub allowed_asns: Vec<Asn>,
    /// The qualified operators whose networks are accepted, each with the qualification that
    /// admits it and where that is recorded. When not empty (or `allowedAsns` is not), a network
    /// on neither list is refused whatever its registration: an allow list is the gate, and the
    /// curated list of networks under extra-EU control only explains a refusal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qualified_operators: Vec<QualifiedOperator>,
    /// Networks never accepted, wherever they are registered or located.
    #[serde(default)]
    pub denied_asns: Vec<Asn>,
    /// Deny every network of the curated list of networks under extra-EU control
    /// (`platform/data/extra-eu-control.yaml`): US hyperscalers, their EU subsidiaries and
    /// US-parent national subsidiaries, whatever their registration country.
    #[serde(default)]
    pub deny_extra_eu_control: bool,
    /// Accept addresses in private ranges, which have no network operator, as outside this
    /// rule (on-premises clusters). Only valid when the policy requires an attestation.
    #[serde(default)]
    pub allow_private_addresses: bool,
}

/// One network of a qualified operator, with its source.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QualifiedOperator {
    /// The network, as its registry records it.
    pub asn: Asn,
    /// The company operating it ("OVH SAS").
    pub operator: String,
    /// The body and scheme of the qualification ("ANSSI, SecNumCloud 3.2").
    pub qualified_by: String,
    /// Where the qualification is recorded: the body's list, the offer, its date.
    pub reference: String,
}

/// A source that can place a node in a country.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LocationSource {
    /// `topology.kubernetes.io/region` or `/zone`: set by the node's kubelet or its provider.
    TopologyLabel,
    /// Where the node's own addresses geolocate: reported by the node itself.
    Address,
    /// A NodeAttestation written by a security officer, outside the node's reach.
    Attestation,
    /// Round trips measured from declared vantage points: physics, outside anyone's reach.
    Latency,
}

impl LocationSource {
    /// Whether the node controls this source (a kubelet can set it on its own Node).
    pub fn node_controlled(self) -> bool {
        !matches!(self, LocationSource::Attestation | LocationSource::Latency)
    }
}

impl NetworkOperatorRule {
    /// Whether any rule on AS numbers is in force, under which an unknown AS proves nothing.
    pub fn has_as_rule(&self) -> bool {
        self.has_allow_list() || !self.denied_asns.is_empty() || self.deny_extra_eu_control
    }

    /// Whether only listed networks are accepted (`allowedAsns` or `qualifiedOperators`).
    pub fn has_allow_list(&self) -> bool {
        !self.allowed_asns.is_empty() || !self.qualified_operators.is_empty()
    }

    /// Whether `asn` is on the allow list (either form).
    pub fn allows(&self, asn: Asn) -> bool {
        self.allowed_asns.contains(&asn) || self.qualified_operators.iter().any(|q| q.asn == asn)
    }
}

/// Enforce or audit.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Only a Compliant verdict admits a node; Violation and Unknown refuse it.
    #[default]
    Enforce,
    /// Verdicts are recorded and reported; nothing is refused.
    Audit,
}

/// What happens when fewer sources than the quorum could place a node, and none contradicts.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnUnknown {
    /// Missing evidence is a violation.
    #[default]
    Violation,
    /// The verdict is Unknown (which enforce mode refuses too, but reports tell apart).
    Unknown,
}

/// An autonomous system number, written `16509` or `AS16509`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asn(pub u32);

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AS{}", self.0)
    }
}

impl Serialize for Asn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl Asn {
    /// Why `n` cannot name a public network, if it cannot.
    fn reserved(n: u64) -> Option<&'static str> {
        match n {
            0 => Some("AS0 is reserved (RFC 7607)"),
            23456 => Some("AS23456 is AS_TRANS (RFC 6793)"),
            64496..=64511 | 65536..=65551 => Some("it is reserved for documentation (RFC 5398)"),
            64512..=65534 | 4_200_000_000..=4_294_967_294 => {
                Some("it is reserved for private use (RFC 6996)")
            }
            65535 | 4_294_967_295 => Some("it is reserved (RFC 7300)"),
            n if n > u64::from(u32::MAX) => Some("AS numbers are 32-bit"),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Asn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EXPECTED: &str = "a public AS number such as 16509 or AS16509";
        impl de::Visitor<'_> for V {
            type Value = Asn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Asn, E> {
                match Asn::reserved(n) {
                    None => Ok(Asn(n as u32)),
                    Some(why) => Err(E::custom(format_args!(
                        "invalid AS number {n}: {why}; expected {EXPECTED}"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Asn, E> {
                u64::try_from(n)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(n), &self))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Asn, E> {
                let digits = s
                    .strip_prefix("AS")
                    .or_else(|| s.strip_prefix("as"))
                    .unwrap_or(s);
                match digits.parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// How many distinct sources must agree, between 1 and [`SOURCE_COUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quorum(u8);

impl Quorum {
    /// The number of sources.
    pub fn get(self) -> u8 {
        self.0
    }

    /// A quorum of `n` sources, if `n` is between 1 and [`SOURCE_COUNT`].
    pub fn new(n: u8) -> Option<Self> {
        (1..=SOURCE_COUNT).contains(&n).then_some(Quorum(n))
    }
}

impl Default for Quorum {
    /// Two independent sources: one claim is never enough.
    fn default() -> Self {
        Quorum(2)
    }
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Quorum;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of location sources between 1 and 4 (topology label, address, attestation, latency)")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Quorum, E> {
                u8::try_from(n)
                    .ok()
                    .and_then(Quorum::new)
                    .ok_or_else(|| E::invalid_value(Unexpected::Signed(n), &self))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Quorum, E> {
                u8::try_from(n)
                    .ok()
                    .and_then(Quorum::new)
                    .ok_or_else(|| E::invalid_value(Unexpected::Unsigned(n), &self))
            }
        }
        d.deserialize_u8(V)
    }
}

/// A policy that cannot be used, with where the mistake is.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {origin}")]
    Read {
        /// The file.
        origin: String,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a valid policy.
    #[error("{origin}{}: {field}{message}", location(*.line, *.column))]
    Invalid {
        /// The file (or other origin) of the text.
        origin: String,
        /// 1-based line of the mistake, when known.
        line: Option<usize>,
        /// 1-based column of the mistake, when known.
        column: Option<usize>,
        /// The field path (`networkOperator.deniedAsns[2]: `), or empty.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// One step of a field path.
#[derive(Debug, Clone, Copy)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

impl LocalityPolicy {
    /// Reads and checks a policy file.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_yaml(&text, &origin)
    }

    /// Parses and checks a policy; `origin` names the text in error messages (a file name).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let policy: LocalityPolicy = yaml_serde::from_str(text).map_err(|e| {
            let loc = e.location();
            let full = e.to_string();
            let message = match &loc {
                Some(l) => full
                    .strip_suffix(&format!(" at line {} column {}", l.line(), l.column()))
                    .unwrap_or(&full)
                    .to_owned(),
                None => full,
            };
            PolicyError::Invalid {
                origin: origin.to_owned(),
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                field: String::new(),
                message,
            }
        })?;
        policy.check().map_err(|(path, message)| {
            let at = locate(text, &path);
            PolicyError::Invalid {
                origin: origin.to_owned(),
                line: at.map(|a| a.0),
                column: at.map(|a| a.1),
                field: format!("{}: ", render_path(&path)),
                message,
            }
        })?;
        Ok(policy)
    }

    /// SHA-256 of the policy's canonical JSON form (`sha256:<hex>`): the same for any YAML
    /// layout or comments of the same rules, different as soon as a rule changes. Evaluations
    /// carry it so a verdict can be replayed against exactly this policy.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).expect("a policy always serializes");
        crate::digest::sha256_tag(&json)
    }

    /// Checks the rules that span fields (what [`LocalityPolicy::from_yaml`] checks after
    /// parsing), for a policy read another way, such as a custom resource's spec.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
            .map_err(|(path, message)| format!("{}: {message}", render_path(&path)))
    }

    /// Checks that span fields; the path names the field to point at.
    /// Whether a Workplace in namespace `ns` may use this policy.
    pub fn allows_namespace(&self, ns: &str) -> bool {
        self.namespaces.iter().any(|n| n == ns)
    }

    fn check(&self) -> Result<(), (Vec<Seg>, String)> {
        use Seg::{Index, Key};
        if self.classification.trim().is_empty() {
            return Err((
                vec![Key("classification")],
                "expected a classification label such as \"Diffusion Restreinte\"".into(),
            ));
        }
        if self.allowed_countries.is_empty() {
            return Err((
                vec![Key("allowedCountries")],
                "expected at least one country or group (such as FR or EU)".into(),
            ));
        }
        if self.network_operator.allowed_countries.is_empty() {
            return Err((
                vec![Key("networkOperator"), Key("allowedCountries")],
                "expected at least one country or group where network operators may be registered"
                    .into(),
            ));
        }
        if let Some(i) = self.namespaces.iter().position(|n| !is_dns_label(n)) {
            return Err((
                vec![Key("namespaces"), Index(i)],
                format!(
                    "{:?} is not a namespace name; expected 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit",
                    self.namespaces[i]
                ),
            ));
        }
        let rule = &self.network_operator;
        if let Some(i) = rule.denied_asns.iter().position(|a| rule.allows(*a)) {
            return Err((
                vec![Key("networkOperator"), Key("deniedAsns"), Index(i)],
                format!(
                    "{} is also in networkOperator.allowedAsns or qualifiedOperators; expected each network in at most one list",
                    rule.denied_asns[i]
                ),
            ));
        }
        for (i, q) in rule.qualified_operators.iter().enumerate() {
            let path = |field| {
                vec![
                    Key("networkOperator"),
                    Key("qualifiedOperators"),
                    Index(i),
                    Key(field),
                ]
            };
            for (field, value, example) in [
                ("operator", &q.operator, "the company, \"OVH SAS\""),
                (
                    "qualifiedBy",
                    &q.qualified_by,
                    "the body and scheme, \"ANSSI, SecNumCloud 3.2\"",
                ),
                (
                    "reference",
                    &q.reference,
                    "where the qualification is recorded",
                ),
            ] {
                if value.trim().is_empty() {
                    return Err((path(field), format!("expected {example}")));
                }
            }
            if rule.qualified_operators[..i].iter().any(|p| p.asn == q.asn)
                || rule.allowed_asns.contains(&q.asn)
            {
                return Err((
                    path("asn"),
                    format!("{} is listed twice; expected each network once", q.asn),
                ));
            }
            if rule.deny_extra_eu_control
                && let Some(n) = crate::jurisdiction::ExtraEuControl::shipped().get(q.asn)
            {
                return Err((
                    path("asn"),
                    format!(
                        "{} is on the curated list of networks under extra-EU control ({}, {}), which the policy denies; a qualified operator cannot be under extra-EU control",
                        q.asn, n.parent, n.parent_country
                    ),
                ));
            }
        }
        if rule.allow_private_addresses
            && !self.required_sources.contains(&LocationSource::Attestation)
        {
            return Err((
                vec![Key("networkOperator"), Key("allowPrivateAddresses")],
                "private addresses have no network operator and cannot be located, so the node's attestation must carry the proof; expected requiredSources to include attestation".into(),
            ));
        }
        if let Some(i) = self
            .required_sources
            .iter()
            .enumerate()
            .position(|(i, s)| self.required_sources[..i].contains(s))
        {
            return Err((
                vec![Key("requiredSources"), Index(i)],
                format!(
                    "{:?} is listed twice; expected each source at most once",
                    self.required_sources[i]
                ),
            ));
        }
        for (i, r) in self.images.registries.iter().enumerate() {
            let host = r.split('/').next().unwrap_or_default();
            if host.is_empty()
                || r.contains("://")
                || r.ends_with('/')
                || r.contains(char::is_whitespace)
                || !host.contains(['.', ':'])
            {
                return Err((
                    vec![Key("images"), Key("registries"), Index(i)],
                    format!(
                        "{r:?}: expected a registry host with an optional port and path \
                         (registry.example.fr/mirror), without scheme or trailing slash"
                    ),
                ));
            }
        }
        for (i, p) in self.provisioners.iter().enumerate() {
            if p.driver.trim().is_empty() || p.driver.contains(char::is_whitespace) {
                return Err((
                    vec![Key("provisioners"), Index(i), Key("driver")],
                    format!(
                        "{:?}: expected a CSI driver name such as csi.example.fr",
                        p.driver
                    ),
                ));
            }
        }
        for (i, v) in self.vantage_points.iter().enumerate() {
            let path = |field| vec![Key("vantagePoints"), Index(i), Key(field)];
            if !is_dns_label(&v.name) {
                return Err((
                    path("name"),
                    format!(
                        "{:?} is not a vantage name; expected 1 to 63 lowercase letters, digits or '-'",
                        v.name
                    ),
                ));
            }
            if self.vantage_points[..i].iter().any(|w| w.name == v.name) {
                return Err((
                    path("name"),
                    format!("{} is declared twice; expected each vantage once", v.name),
                ));
            }
            if !(-90.0..=90.0).contains(&v.latitude) {
                return Err((
                    path("latitude"),
                    format!("{} is not a latitude; expected -90 to 90", v.latitude),
                ));
            }
            if !(-180.0..=180.0).contains(&v.longitude) {
                return Err((
                    path("longitude"),
                    format!("{} is not a longitude; expected -180 to 180", v.longitude),
                ));
            }
            for (field, value, example) in [
                ("site", &v.site, "the site's address"),
                (
                    "operatedBy",
                    &v.operated_by,
                    "who runs the measuring component",
                ),
                (
                    "attestedBy",
                    &v.attested_by,
                    "who attests the site, and on what",
                ),
            ] {
                if value.trim().is_empty() {
                    return Err((path(field), format!("expected {example}")));
                }
            }
        }
        if self.vantage_points.is_empty()
            && self.required_sources.contains(&LocationSource::Latency)
        {
            return Err((
                vec![Key("requiredSources")],
                "latency is required but no vantage point is declared, so no measurement can count; expected vantagePoints".into(),
            ));
        }
        let reachable = SOURCE_COUNT
            - u8::from(self.regions.is_empty())
            - u8::from(self.vantage_points.is_empty());
        if self.regions.is_empty()
            && self
                .required_sources
                .contains(&LocationSource::TopologyLabel)
        {
            return Err((
                vec![Key("requiredSources")],
                "topologyLabel is required but the regions table is empty, so no label can place a node; expected a regions table".into(),
            ));
        }
        if self.quorum.get() > reachable {
            return Err((
                vec![Key("quorum")],
                format!(
                    "quorum {} cannot be met: {}, so at most {reachable} sources can agree; expected at most {reachable}{}",
                    self.quorum.get(),
                    [
                        self.regions
                            .is_empty()
                            .then_some("with an empty regions table topology labels place no node"),
                        self.vantage_points
                            .is_empty()
                            .then_some("with no vantagePoints latency places no node"),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" and "),
                    match (self.regions.is_empty(), self.vantage_points.is_empty()) {
                        (true, true) => ", a regions table or vantagePoints",
                        (true, false) => " or a regions table",
                        _ => " or vantagePoints",
                    }
                ),
            ));
        }
        Ok(())
    }
}

fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Finds the 1-based line and column of a field in block-style YAML; `None` when the layout is
/// too unusual to follow (the message still names the field path).
fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let content = |i: usize| -> Option<(usize, &str)> {
        let line = lines[i];
        let trimmed = line.trim_start();
        (!trimmed.is_empty() && !trimmed.starts_with('#'))
            .then(|| (line.len() - trimmed.len(), trimmed))
    };
    // Children of the current node: lines from `from` indented more than `parent`.
    let mut from = 0;
    let mut parent: Option<usize> = None;
    let mut at = None;
    for seg in path {
        let mut child_indent = None;
        let mut found = None;
        let mut item = 0;
        for i in from..lines.len() {
            let Some((indent, t)) = content(i) else {
                continue;
            };
            if parent.is_some_and(|p| indent <= p) {
                break;
            }
            let ci = *child_indent.get_or_insert(indent);
            if indent != ci {
                continue;
            }
            match seg {
                Seg::Key(k) => {
                    if t.strip_prefix(k).is_some_and(|r| r.starts_with(':')) {
                        found = Some((i, indent));
                        break;
                    }
                }
                Seg::Index(n) => {
                    if t.starts_with("- ") || t == "-" {
                        if item == *n {
                            found = Some((i, indent));
                            break;
                        }
                        item += 1;
                    }
                }
            }
        }
        match found {
            Some((i, indent)) => {
                at = Some((i + 1, indent + 1));
                from = i + 1;
                parent = Some(indent);
            }
            // A flow collection (`[1, 2]`) or an unusual layout: point at the enclosing field.
            None => return at,
        }
    }
    at
}

/// A Kubernetes namespace name (an RFC 1123 label).
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
classification: Diffusion Restreinte
mode: enforce
allowedCountries: [FR]
networkOperator:
  allowedCountries: [FR]
  deniedAsns:
    - 16509
    - AS8075
regions:
  fr-par: FR
quorum: 3
onUnknown: violation
";

    fn check(yaml: &str, expected: &str) {
        match LocalityPolicy::from_yaml(yaml, "p.yaml") {
            Ok(p) => assert_eq!(format!("{p:?}"), expected),
            Err(e) => assert_eq!(e.to_string(), expected),
        }
    }

    #[test]
    fn good_policy() {
        let p = LocalityPolicy::from_yaml(GOOD, "p.yaml").unwrap();
        assert_eq!(p.network_operator.denied_asns, vec![Asn(16509), Asn(8075)]);
        assert_eq!(p.quorum.get(), 3);
        assert_eq!(p.regions["fr-par"], Country::FR);
        assert_eq!(p.mode, Mode::Enforce);
    }

    #[test]
    fn value_mistakes_carry_line_and_column() {
        check(
            &GOOD.replace(
                "allowedCountries: [FR]\nnetwork",
                "allowedCountries: [FR, France]\nnetwork",
            ),
            "p.yaml:3:24: allowedCountries[1]: invalid value: string \"France\", expected an ISO 3166-1 alpha-2 country code in capitals (such as FR) or a group (EU, EEA)",
        );
        check(
            &GOOD.replace("fr-par: FR", "fr-par: fr"),
            "p.yaml:10:11: regions.fr-par: invalid value: string \"fr\", expected an assigned ISO 3166-1 alpha-2 country code in capitals, such as FR",
        );
        check(
            &GOOD.replace("- AS8075", "- AS64500"),
            "p.yaml:8:7: networkOperator.deniedAsns[1]: invalid AS number 64500: it is reserved for documentation (RFC 5398); expected a public AS number such as 16509 or AS16509",
        );
        check(
            &GOOD.replace("quorum: 3", "quorum: 5"),
            "p.yaml:11:9: quorum: invalid value: integer `5`, expected a number of location sources between 1 and 4 (topology label, address, attestation, latency)",
        );
        check(
            &GOOD.replace("mode: enforce", "mode: enforced"),
            "p.yaml:2:7: mode: unknown variant `enforced`, expected `enforce` or `audit`",
        );
        check(
            &GOOD.replace("quorum: 3", "quorom: 3"),
            "p.yaml:11:1: unknown field `quorom`, expected one of `classification`, `mode`, `allowedCountries`, `networkOperator`, `regions`, `quorum`, `requiredSources`, `onUnknown`, `namespaces`, `vantagePoints`, `images`, `provisioners`",
        );
        check(
            "mode: audit\n",
            "p.yaml:1:1: missing field `classification`",
        );
    }

    #[test]
    fn cross_field_mistakes_point_at_the_field() {
        check(
            &GOOD.replace("  deniedAsns:", "  allowedAsns: [8075]\n  deniedAsns:"),
            "p.yaml:9:5: networkOperator.deniedAsns[1]: AS8075 is also in networkOperator.allowedAsns or qualifiedOperators; expected each network in at most one list",
        );
        check(
            &GOOD.replace("onUnknown: violation", "onUnknown: allowInAudit"),
            "p.yaml:12:12: onUnknown: unknown variant `allowInAudit`, expected `violation` or `unknown`",
        );
        check(
            &GOOD.replace("regions:\n  fr-par: FR\nquorum: 3", "quorum: 3"),
            "p.yaml:9:1: quorum: quorum 3 cannot be met: with an empty regions table topology labels place no node and with no vantagePoints latency places no node, so at most 2 sources can agree; expected at most 2, a regions table or vantagePoints",
        );
        check(
            &GOOD.replace(
                "  deniedAsns:",
                "  allowPrivateAddresses: true\n  deniedAsns:",
            ),
            "p.yaml:6:3: networkOperator.allowPrivateAddresses: private addresses have no network operator and cannot be located, so the node's attestation must carry the proof; expected requiredSources to include attestation",
        );
        check(
            &GOOD.replace(
                "quorum: 3",
                "quorum: 3\nrequiredSources: [attestation, address, attestation]",
            ),
            "p.yaml:12:1: requiredSources[2]: Attestation is listed twice; expected each source at most once",
        );
        check(
            &GOOD.replace(
                "allowedCountries: [FR]\nnetwork",
                "allowedCountries: []\nnetwork",
            ),
            "p.yaml:3:1: allowedCountries: expected at least one country or group (such as FR or EU)",
        );
        check(
            &GOOD.replace("  allowedCountries: [FR]", "  allowedCountries: []"),
            "p.yaml:5:3: networkOperator.allowedCountries: expected at least one country or group where network operators may be registered",
        );
    }

    #[test]
    fn images_and_provisioners_are_allow_lists() {
        let p = LocalityPolicy::from_yaml(
            &format!(
                "{GOOD}images:\n  registries: [registry.interieur.gouv.fr/hexagone, mirror.local:5000]\n  \
                 requireDigest: true\nprovisioners:\n- driver: csi.interieur.gouv.fr\n\
                 - driver: nfs.csi.k8s.io\n  parameters: {{server: nfs.paris.interieur.gouv.fr, share: /exports}}\n"
            ),
            "p.yaml",
        )
        .unwrap();
        let pinned = "@sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let refused = |image: &str| p.images.refuses(image);
        assert_eq!(
            refused(&format!(
                "registry.interieur.gouv.fr/hexagone/library/postgres:17.9{pinned}"
            )),
            None
        );
        assert_eq!(
            refused(&format!("mirror.local:5000/valkey/valkey:9{pinned}")),
            None
        );
        // A prefix of a host or path is not the registry.
        assert_eq!(
            refused(&format!(
                "registry.interieur.gouv.fr/hexagone-evil/x:1{pinned}"
            )),
            Some(format!(
                "image registry.interieur.gouv.fr/hexagone-evil/x:1{pinned} is not from a registry the policy allows (registry.interieur.gouv.fr/hexagone, mirror.local:5000)"
            ))
        );
        assert!(refused(&format!("mirror.local:50000/x:1{pinned}")).is_some());
        assert_eq!(
            refused("mirror.local:5000/valkey/valkey:9"),
            Some(
                "image mirror.local:5000/valkey/valkey:9 is not pinned by digest, which the policy requires"
                    .into()
            )
        );
        let params = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            p.refuses_storage("csi.interieur.gouv.fr", &params(&[])),
            None
        );
        assert_eq!(
            p.refuses_storage("csi.other.example", &params(&[])),
            Some("storage provisioner csi.other.example is not one the policy allows (csi.interieur.gouv.fr, nfs.csi.k8s.io)".into())
        );
        let qualified = [
            ("server", "nfs.paris.interieur.gouv.fr"),
            ("share", "/exports"),
        ];
        assert_eq!(
            p.refuses_storage("nfs.csi.k8s.io", &params(&qualified)),
            None
        );
        // The allowed driver writing to a server abroad, with a parameter more, or one fewer.
        assert_eq!(
            p.refuses_storage(
                "nfs.csi.k8s.io",
                &params(&[("server", "nfs.example.us"), ("share", "/exports"), ("subDir", "x")])
            ),
            Some(
                "storage provisioner nfs.csi.k8s.io is allowed only with the parameters the policy \
                 qualifies: server: nfs.example.us, qualified as nfs.paris.interieur.gouv.fr; \
                 subDir: x is not a qualified parameter"
                    .into()
            )
        );
        assert_eq!(
            p.refuses_storage("nfs.csi.k8s.io", &params(&qualified[..1])),
            Some(
                "storage provisioner nfs.csi.k8s.io is allowed only with the parameters the policy \
                 qualifies: share missing, qualified as /exports"
                    .into()
            )
        );
        // A driver qualified without parameters is refused with any.
        assert!(
            p.refuses_storage("csi.interieur.gouv.fr", &params(&[("server", "x")]))
                .is_some()
        );
        // Unset: anything goes, and the digest of a policy without them is unchanged.
        let open = LocalityPolicy::from_yaml(GOOD, "p.yaml").unwrap();
        assert_eq!(open.images.refuses("docker.io/library/postgres:17"), None);
        assert_eq!(
            open.refuses_storage("nfs.csi.k8s.io", &params(&qualified)),
            None
        );
        assert!(!serde_json::to_string(&open).unwrap().contains("images"));
        check(
            &format!("{GOOD}images:\n  registries: [https://registry.example.fr]\n"),
            "p.yaml:14:3: images.registries[0]: \"https://registry.example.fr\": expected a registry host with an optional port and path (registry.example.fr/mirror), without scheme or trailing slash",
        );
        check(
            &format!("{GOOD}provisioners: [{{driver: \"\"}}]\n"),
            "p.yaml:13:1: provisioners[0].driver: \"\": expected a CSI driver name such as csi.example.fr",
        );
        // The former form, a driver name alone, still reads (a policy stored before the
        // parameters were judged is not broken by the upgrade), as the driver with no
        // parameters: fails closed.
        let former = LocalityPolicy::from_yaml(
            &format!("{GOOD}provisioners: [csi.interieur.gouv.fr]\n"),
            "p.yaml",
        )
        .unwrap();
        assert_eq!(
            former.refuses_storage("csi.interieur.gouv.fr", &params(&[])),
            None
        );
        assert_eq!(
            former.refuses_storage(
                "csi.interieur.gouv.fr",
                &params(&[("server", "nfs.example.us")])
            ),
            Some(
                "storage provisioner csi.interieur.gouv.fr is allowed only with the parameters \
                 the policy qualifies: server: nfs.example.us is not a qualified parameter"
                    .into()
            )
        );
        let json: LocalityPolicy =
            serde_json::from_value(serde_json::to_value(&former).unwrap()).unwrap();
        assert_eq!(json, former);
    }

    #[test]
    fn asn_forms() {
        let asns: Vec<Asn> = yaml_serde::from_str("[16509, AS8075, as15169]").unwrap();
        assert_eq!(asns, vec![Asn(16509), Asn(8075), Asn(15169)]);
        let err = yaml_serde::from_str::<Vec<Asn>>("[AWS]").unwrap_err();
        assert_eq!(
            err.to_string(),
            ".[0]: invalid value: string \"AWS\", expected a public AS number such as 16509 or AS16509 at line 1 column 2"
        );
    }
}
