//! The auditor as judge. [`ObservationJudge`] resolves where a reported object is stored (a
//! node as the cluster reports it, or a storage endpoint from the auditor's inventory),
//! gathers the facts with the platform's locality engine (geolocation databases,
//! attestations), judges them under the auditor's policy and builds the ledger observation
//! with the engine's own evidence, verdict, policy digest and database identities.
//! [`Replayer`] judges a recorded observation's facts again with `hexagone_platform::replay`
//! and says what differs. Pure but for reading the attestation and inventory files.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use hexagone_platform::geo::{GeoDatabases, GeoError, GeoSnapshot};
use hexagone_platform::verdict::ReplayError;
use hexagone_platform::{
    Attestation, AttestationSpec, Basis, Country, Facts, Judge, LocalityPolicy, NodeDescription,
    Recorded, SubjectKind, observe, replay_recorded,
};

use crate::ingest::{Location, Report, Submission};
use crate::ledger::entry::{
    Assessment, Body, DatabaseId, EntryError, Evidence, Fact, Locality, Observation, PolicyRef,
    Timestamp, Verdict, parse_hash,
};

/// Why an observation could not be judged, or a file of the judge could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{path}: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the YAML location.
        why: String,
    },
    /// An endpoint is neither in the inventory nor an IP address.
    #[error(
        "endpoint {0:?} is not in the inventory and is not an IP address (the auditor resolves no names: declare it in --inventory with its addresses)"
    )]
    UnknownEndpoint(String),
    /// The engine's evaluation does not make a valid entry.
    #[error(transparent)]
    Entry(#[from] EntryError),
}

/// What the ledger keeps of who attested: the first 16 hex digits of the SHA-256 of
/// `attestedBy` (often a person's address, which is personal data the ledger must not hold).
pub fn pseudonym(attested_by: &str) -> String {
    let digest = Sha256::digest(attested_by.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..16])
}

fn pseudonymised(name: String, mut spec: AttestationSpec) -> Attestation {
    spec.attested_by = pseudonym(&spec.attested_by);
    Attestation::new(name, spec)
}

fn read(path: &Path) -> Result<String, JudgeError> {
    std::fs::read_to_string(path).map_err(|source| JudgeError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, JudgeError> {
    yaml_serde::from_str(text).map_err(|e| JudgeError::Parse {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

/// One attestation record: a NodeAttestation resource (`metadata.name`, `spec`) as kubectl
/// prints it, or the short form `{name, spec}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttestationItem {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    spec: AttestationSpec,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
}

/// Reads `--attestations`: YAML holding NodeAttestations as a list, as a List with `items`
/// (`kubectl get nodeattestations -o yaml`), or as one or more documents separated by `---`
/// (the sample file, `kubectl get nodeattestation NAME -o yaml`). Who attested is kept as a
/// [`pseudonym`]. An item that is not an attestation is named with what is wrong in it.
pub fn load_attestations(path: &Path) -> Result<Vec<Attestation>, JudgeError> {
    let text = read(path)?;
    let bad = |why: String| JudgeError::Parse {
        path: path.to_owned(),
        why,
    };
    let mut values = Vec::new();
    for (d, doc) in yaml_serde::Deserializer::from_str(&text).enumerate() {
        let value = yaml_serde::Value::deserialize(doc)
            .map_err(|e| bad(format!("document {}: {e}", d + 1)))?;
        match value {
            yaml_serde::Value::Null => {}
            yaml_serde::Value::Sequence(items) => values.extend(items),
            yaml_serde::Value::Mapping(m) if m.contains_key("items") => match m.get("items") {
                Some(yaml_serde::Value::Sequence(items)) => values.extend(items.iter().cloned()),
                _ => return Err(bad(format!("document {}: `items` is not a list", d + 1))),
            },
            other => values.push(other),
        }
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let item: AttestationItem = yaml_serde::from_value(value)
                .map_err(|e| bad(format!("attestation {}: {e}", i + 1)))?;
            let name = item.metadata.map(|m| m.name).or(item.name).ok_or_else(|| {
                bad(format!(
                    "attestation {}: no `name` (or `metadata.name`)",
                    i + 1
                ))
            })?;
            Ok(pseudonymised(name, item.spec))
        })
        .collect()
}

/// NodeAttestation resources as the judge reads them: who attested is kept as a [`pseudonym`].
pub fn node_attestations(
    resources: &[hexagone_platform::k8s::NodeAttestation],
) -> Vec<Attestation> {
    use kube::ResourceExt as _;
    resources
        .iter()
        .map(|r| pseudonymised(r.name_any(), r.spec.clone()))
        .collect()
}

/// What a security officer attests about an endpoint of the inventory.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndpointAttestation {
    country: Country,
    hosting_company: String,
    site: String,
    basis: Basis,
    #[serde(default)]
    reference: Option<String>,
    attested_by: String,
    valid_until: String,
}

/// One storage endpoint outside the cluster, as declared in the inventory.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndpointItem {
    name: String,
    addresses: Vec<IpAddr>,
    /// The provider's region and zone names, as a node's topology labels would carry them (the
    /// declarant's word, like a node's own labels).
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    attestation: Option<EndpointAttestation>,
}

/// The storage endpoints outside the cluster (backup targets, object stores) the auditor
/// knows, each with its addresses and, optionally, a security officer's attestation.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    endpoints: Vec<NodeDescription>,
    attestations: Vec<Attestation>,
}

impl Inventory {
    /// Reads `--inventory`: a YAML list of `{name, addresses, region, zone, attestation}`.
    pub fn load(path: &Path) -> Result<Self, JudgeError> {
        let text = read(path)?;
        let items: Vec<EndpointItem> = parse(path, &text)?;
        let mut inventory = Inventory::default();
        for item in items {
            if inventory.endpoints.iter().any(|e| e.name == item.name) {
                return Err(JudgeError::Parse {
                    path: path.to_owned(),
                    why: format!("endpoint {:?} is declared twice", item.name),
                });
            }
            // An attestation binds to one machine by provider ID: an inventory endpoint's
            // identity is its inventory entry.
            let provider_id = format!("inventory://{}", item.name);
            let mut endpoint = NodeDescription {
                name: item.name.clone(),
                provider_id: Some(provider_id.clone()),
                ..NodeDescription::default()
            };
            for (label, value) in [
                (hexagone_platform::REGION_LABEL, &item.region),
                (hexagone_platform::ZONE_LABEL, &item.zone),
            ] {
                if let Some(v) = value {
                    endpoint.labels.insert(label.to_owned(), v.clone());
                }
            }
            for address in item.addresses {
                endpoint
                    .addresses
                    .extend(NodeDescription::endpoint(address).addresses);
            }
            if let Some(a) = item.attestation {
                inventory.attestations.push(pseudonymised(
                    format!("inventory/{}", item.name),
                    AttestationSpec {
                        node_name: item.name,
                        provider_id,
                        country: a.country,
                        hosting_company: a.hosting_company,
                        site: a.site,
                        basis: a.basis,
                        reference: a.reference,
                        attested_by: a.attested_by,
                        valid_until: a.valid_until,
                    },
                ));
            }
            inventory.endpoints.push(endpoint);
        }
        Ok(inventory)
    }

    /// The endpoint named `name`, or holding the address `name`.
    fn find(&self, name: &str) -> Option<&NodeDescription> {
        let address: Option<IpAddr> = name.parse().ok();
        self.endpoints.iter().find(|e| e.name == name).or_else(|| {
            let address = hexagone_platform::address::canonical(address?);
            self.endpoints.iter().find(|e| {
                e.addresses
                    .iter()
                    .any(|a| hexagone_platform::address::canonical(a.address) == address)
            })
        })
    }
}

/// The auditor's judge: one policy, the geolocation databases, the attestations and the
/// inventory; turns reports (facts) into ledger observations (facts, evidence, verdict).
///
/// Objects are many and places few: the engine's evaluation of a place is kept and reused for
/// the next object reported there, as long as nothing it rests on can have changed — the same
/// description of the place (name, providerID, labels, addresses), the same attestations (any
/// change of them empties the cache), the same database contents, and a time before the next
/// expiry of an attestation naming the place (and not before the first evaluation). A reused
/// evaluation is the one the engine would give again, but for the time of observation, which
/// is the current one.
pub struct ObservationJudge<'a> {
    judge: Judge<'a>,
    geo: &'a GeoDatabases,
    /// The nodes' attestations followed by the inventory's, with a generation counted up at
    /// each change; the nodes' are replaced whole when a live view of the cluster changes
    /// ([`ObservationJudge::set_node_attestations`]).
    attestations: std::sync::RwLock<(u64, Vec<Attestation>)>,
    inventory: Inventory,
    cache: std::sync::Mutex<Evaluations>,
}

/// The evaluations of places kept by [`ObservationJudge`].
#[derive(Default)]
struct Evaluations {
    /// The attestations' generation the evaluations were made with.
    generation: u64,
    /// The database contents they were read from.
    geo: Option<GeoSnapshot>,
    places: std::collections::HashMap<(NodeDescription, SubjectKind), Kept>,
}

/// One kept evaluation: valid at times in `from..until` (no end when `until` is `None`).
struct Kept {
    from: OffsetDateTime,
    until: Option<OffsetDateTime>,
    locality: std::sync::Arc<Locality>,
}

/// How many places are kept at most; past that the cache starts again empty.
const KEPT_PLACES: usize = 4096;

impl Evaluations {
    /// Empties the cache when the attestations or the databases are not those of its
    /// evaluations; false when `generation` is older than the cache's (nothing is kept).
    fn align(&mut self, generation: u64, geo: &GeoSnapshot) -> bool {
        if generation < self.generation {
            return false;
        }
        let same_geo = self.geo.as_ref().is_some_and(|g| g.same_contents(geo));
        if generation != self.generation || !same_geo {
            self.places.clear();
            self.generation = generation;
            self.geo = Some(geo.clone());
        }
        true
    }
}

impl<'a> ObservationJudge<'a> {
    /// A judge under `policy`; `attestations` speak for nodes, the inventory's for its
    /// endpoints.
    pub fn new(
        policy: &'a LocalityPolicy,
        geo: &'a GeoDatabases,
        mut attestations: Vec<Attestation>,
        inventory: Inventory,
    ) -> Self {
        attestations.extend(inventory.attestations.iter().cloned());
        Self {
            judge: Judge::new(policy),
            geo,
            attestations: std::sync::RwLock::new((0, attestations)),
            inventory,
            cache: std::sync::Mutex::new(Evaluations::default()),
        }
    }

    /// Replaces the nodes' attestations (the inventory's stay): what `serve --kubernetes`
    /// does whenever its own watch of the NodeAttestations changes. Every judgement after
    /// this call uses them.
    pub fn set_node_attestations(&self, mut nodes: Vec<Attestation>) {
        nodes.extend(self.inventory.attestations.iter().cloned());
        let mut held = self
            .attestations
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *held = (held.0 + 1, nodes);
    }

    /// Reloads the geolocation files that changed on disk (see `GeoDatabases::refresh`).
    pub fn refresh(&self) -> Result<usize, GeoError> {
        self.geo.refresh()
    }

    /// The databases' current contents, for a batch of observations.
    pub fn snapshot(&self) -> GeoSnapshot {
        self.geo.snapshot()
    }

    /// Judges one report at `now` against the databases in `geo`.
    pub fn judge(
        &self,
        report: Report,
        geo: &GeoSnapshot,
        now: OffsetDateTime,
    ) -> Result<Submission, JudgeError> {
        let (subject, kind) = match report.location {
            Location::Node(node) => (node.into_description(), SubjectKind::Node),
            Location::Endpoint(name) => match self.inventory.find(&name) {
                Some(endpoint) => (endpoint.clone(), SubjectKind::Endpoint),
                None => match name.parse::<IpAddr>() {
                    Ok(address) => (NodeDescription::endpoint(address), SubjectKind::Endpoint),
                    Err(_) => return Err(JudgeError::UnknownEndpoint(name)),
                },
            },
        };
        // The entry keeps milliseconds: judge at a time it can record exactly.
        let now = Timestamp::from_datetime(now).to_datetime().unwrap_or(now);
        let (observation, encoded) = Observation::new_encoded(
            report.object,
            report.content,
            self.locality(subject, kind, geo, now)?,
        )?;
        Ok(Submission::encoded(
            report.id,
            Body::Observation(observation),
            encoded,
        ))
    }

    /// The engine's evaluation of `subject` at `now`, kept or made (and then kept).
    fn locality(
        &self,
        subject: NodeDescription,
        kind: SubjectKind,
        geo: &GeoSnapshot,
        now: OffsetDateTime,
    ) -> Result<Locality, JudgeError> {
        let key = (subject, kind);
        let generation = self.generation();
        let kept = {
            let cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cache
                .places
                .get(&key)
                .filter(|k| k.from <= now && k.until.is_none_or(|u| now < u))
                .filter(|_| cache.geo.as_ref().is_some_and(|g| g.same_contents(geo)))
                .filter(|_| cache.generation == generation)
                .map(|k| k.locality.clone())
        };
        if let Some(kept) = kept {
            let mut l = Locality::clone(&kept);
            l.observed_at = Timestamp::from_datetime(now);
            return Ok(l);
        }
        let (generation, evaluation, until) = {
            let held = self
                .attestations
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The evaluation can change when an attestation naming the place expires.
            let until = held
                .1
                .iter()
                .filter(|a| a.spec().node_name == key.0.name)
                .filter_map(Attestation::expires)
                .filter(|u| *u > now)
                .min();
            let evaluation = self.judge.judge(observe(&key.0, kind, &held.1, geo, now));
            (held.0, evaluation, until)
        };
        let made = locality(&evaluation)?;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.align(generation, geo) {
            if cache.places.len() >= KEPT_PLACES {
                cache.places.clear();
            }
            cache.places.insert(
                key,
                Kept {
                    from: now,
                    until,
                    locality: std::sync::Arc::new(made.clone()),
                },
            );
        }
        Ok(made)
    }

    /// The attestations' generation.
    fn generation(&self) -> u64 {
        self.attestations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }
}

fn country(c: Country) -> [u8; 2] {
    let b = c.as_str().as_bytes();
    [b[0], b[1]]
}

/// The engine's evidence as the ledger records it: nothing the engine holds is lost (the fact
/// whole, who controls it, the country it names, the AS number, how it weighed, and the
/// sentence). Both speak the platform's vocabulary: nothing is renamed here.
pub fn evidence(e: &hexagone_platform::Evidence) -> Result<Evidence, EntryError> {
    use hexagone_platform::Observation as O;
    let (named, asn) = match &e.observation {
        O::NetworkOperator {
            registered, asn, ..
        } => (*registered, asn.map(|a| a.0)),
        O::UnreadableAddress { .. } => (None, None),
        _ => (e.placed_in, None),
    };
    let fact = serde_json::to_value(&e.observation).map_err(|err| EntryError::Field {
        field: "evidence.fact",
        problem: err.to_string(),
    })?;
    Ok(Evidence {
        source: e.source,
        controller: e.controller,
        country: named.map(country),
        asn,
        assessment: Assessment::new(
            e.assessment.kind(),
            e.assessment.breach().map(|b| b.rule().as_str().to_owned()),
        )?,
        fact: Fact::from_value(&fact)?,
        sentence: e.to_string(),
    })
}

/// An evaluation of the engine as the ledger records it.
pub fn locality(e: &hexagone_platform::Evaluation) -> Result<Locality, EntryError> {
    Ok(Locality {
        subject: e.subject.clone(),
        subject_kind: e.subject_kind,
        observed_at: Timestamp::from_datetime(e.observed_at),
        evidence: e.evidence.iter().map(evidence).collect::<Result<_, _>>()?,
        verdict: Verdict::new(e.verdict.kind(), e.reasons()),
        policy: PolicyRef {
            classification: e.classification.to_string(),
            digest: e.policy_digest.to_string(),
            extra_eu_control: e.extra_eu_control_digest.as_deref().map(str::to_owned),
        },
        databases: e
            .databases
            .iter()
            .map(|d| {
                Ok(DatabaseId {
                    role: d.role.clone(),
                    file: d.file.clone(),
                    format: d.format.clone(),
                    built: d.built.clone(),
                    sha256: parse_hash("databases.sha256", &d.sha256)?,
                })
            })
            .collect::<Result<_, EntryError>>()?,
    })
}

/// Judges recorded observations again under the policies given (each entry under the one
/// whose digest it recorded), with `hexagone_platform::replay`.
pub struct Replayer {
    policies: Vec<(String, LocalityPolicy)>,
}

impl Replayer {
    /// A replayer for entries judged under any of `policies`.
    pub fn new(policies: Vec<LocalityPolicy>) -> Self {
        Self {
            policies: policies.into_iter().map(|p| (p.digest(), p)).collect(),
        }
    }

    /// `Ok` when the recorded verdict, reasons and evidence are what the recorded facts give
    /// under the recorded policy; otherwise what differs, in one sentence.
    pub fn check(&self, o: &Observation) -> Result<(), String> {
        let l = &o.locality;
        let Some((_, policy)) = self.policies.iter().find(|(d, _)| *d == l.policy.digest) else {
            return Err(format!(
                "it was judged under policy {:?} with digest {}, and no policy given has that digest (given: {})",
                l.policy.classification,
                l.policy.digest,
                self.policies
                    .iter()
                    .map(|(d, p)| format!("{:?} {d}", &*p.classification))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let observations = l
            .evidence
            .iter()
            .enumerate()
            .map(|(i, e)| {
                serde_json::from_str(e.fact.as_str()).map_err(|err| {
                    ReplayError::Malformed(format!("evidence {i}: {err}")).to_string()
                })
            })
            .collect::<Result<_, String>>()?;
        let recorded = Recorded {
            facts: Facts {
                subject: l.subject.clone(),
                subject_kind: l.subject_kind,
                observed_at: l
                    .observed_at
                    .to_datetime()
                    .ok_or("its observation time is out of range")?,
                observations,
                databases: l
                    .databases
                    .iter()
                    .map(|d| hexagone_platform::DatabaseIdentity {
                        role: d.role.clone(),
                        file: d.file.clone(),
                        format: d.format.clone(),
                        built: d.built.clone(),
                        sha256: hex::encode(d.sha256),
                    })
                    .collect(),
            },
            verdict: l.verdict.as_str().to_owned(),
            policy_digest: l.policy.digest.clone(),
            extra_eu_control_digest: l.policy.extra_eu_control.clone(),
        };
        let evaluation = match replay_recorded(recorded, policy) {
            Ok(e) => e,
            Err(ReplayError::VerdictDiffers {
                recorded,
                recomputed,
            }) => {
                return Err(format!(
                    "recorded verdict {recorded}, but its evidence judged again under {:?} gives {recomputed}",
                    &*policy.classification
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        let again = locality(&evaluation).map_err(|e| format!("judged again: {e}"))?;
        if let Some((i, (was, is))) = l
            .evidence
            .iter()
            .zip(&again.evidence)
            .enumerate()
            .find(|(_, (a, b))| a != b)
        {
            let field = if was.assessment != is.assessment {
                format!(
                    "assessed {}{}, judged again {}{}",
                    was.assessment.as_str(),
                    was.assessment
                        .rule()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                    is.assessment.as_str(),
                    is.assessment
                        .rule()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )
            } else if was.country != is.country {
                format!(
                    "names country {}, judged again {}",
                    show(was.country),
                    show(is.country)
                )
            } else if was.sentence != is.sentence {
                format!("says {:?}, judged again {:?}", was.sentence, is.sentence)
            } else {
                "differs from its fact judged again".into()
            };
            return Err(format!("evidence {i} ({}) {field}", was.source.as_str()));
        }
        if l.verdict != again.verdict {
            return Err(format!(
                "recorded reasons {:?}, judged again {:?}",
                l.verdict.reasons(),
                again.verdict.reasons()
            ));
        }
        if l.policy != again.policy {
            return Err(format!(
                "recorded policy {:?} (extra-EU list {:?}), judged again {:?} (extra-EU list {:?})",
                l.policy.classification,
                l.policy.extra_eu_control,
                again.policy.classification,
                again.policy.extra_eu_control
            ));
        }
        Ok(())
    }
}

fn show(c: Option<[u8; 2]>) -> String {
    c.map_or_else(
        || "unknown".into(),
        |c| String::from_utf8_lossy(&c).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hexagone_platform::geo::GeoPaths;

    const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
    const GEO: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../platform/data/ip-location-db"
    );

    #[test]
    fn attestation_files_in_every_form_kubectl_and_people_write() {
        let dir = tempfile::tempdir().unwrap();
        let sample = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/samples/nodeattestation.yaml"
        );
        // One document: the shipped sample.
        let one = load_attestations(Path::new(sample)).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].spec().attested_by,
            pseudonym("rssi@ministere.example.fr")
        );
        // Several documents, and a List.
        let text = std::fs::read_to_string(sample).unwrap();
        let two = dir.path().join("two.yaml");
        std::fs::write(
            &two,
            format!("{text}---\n{}", text.replace("gra-3", "gra-4")),
        )
        .unwrap();
        let names: Vec<String> = load_attestations(&two)
            .unwrap()
            .iter()
            .map(|a| a.name().to_owned())
            .collect();
        assert_eq!(names, ["gra-3", "gra-4"]);
        let list = dir.path().join("list.yaml");
        let indented: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("  {l}\n"))
            .collect();
        std::fs::write(
            &list,
            format!("kind: List\nitems:\n- {}", indented.trim_start()),
        )
        .unwrap();
        assert_eq!(load_attestations(&list).unwrap().len(), 1);
        // A broken second attestation is named, with what is wrong in it.
        let broken = dir.path().join("broken.yaml");
        std::fs::write(
            &broken,
            format!("{text}---\n{}", text.replace("  country: FR\n", "")),
        )
        .unwrap();
        let e = load_attestations(&broken).unwrap_err().to_string();
        assert!(e.contains("attestation 2") && e.contains("country"), "{e}");
    }

    /// The vendored databases, read once for all tests.
    fn geo() -> &'static GeoDatabases {
        static GEO_DBS: std::sync::OnceLock<GeoDatabases> = std::sync::OnceLock::new();
        GEO_DBS
            .get_or_init(|| GeoDatabases::open(&GeoPaths::ip_location_db(Path::new(GEO))).unwrap())
    }

    fn policy(name: &str) -> LocalityPolicy {
        LocalityPolicy::from_file(Path::new(&format!("{POLICIES}/{name}.yaml"))).unwrap()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse(
            "2026-11-29T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    }

    /// Judges the input line under `policy` with an attestation for `gra-3` (and an inventory
    /// with an attested `backup-gra`), then replays the entry: `[verdict] reasons`.
    fn check(policy_name: &str, line: &str, expected: &str) {
        let dir = tempfile::tempdir().unwrap();
        let att = dir.path().join("att.yaml");
        std::fs::write(
            &att,
            "- metadata: {name: gra-3}
  spec: {nodeName: gra-3, providerID: 'ovh://gra/3', country: FR, hostingCompany: OVH SAS,
         site: GRA3, basis: contract, attestedBy: rssi@ministere.example.fr, validUntil: '2099-01-01T00:00:00Z'}
",
        )
        .unwrap();
        let inv = dir.path().join("inventory.yaml");
        std::fs::write(
            &inv,
            "- name: backup-gra
  addresses: [37.59.0.1]
  attestation: {country: FR, hostingCompany: OVH SAS, site: GRA, basis: contract, attestedBy: rssi, validUntil: '2099-01-01T00:00:00Z'}
",
        )
        .unwrap();
        let p = policy(policy_name);
        let judge = ObservationJudge::new(
            &p,
            geo(),
            load_attestations(&att).unwrap(),
            Inventory::load(&inv).unwrap(),
        );
        let report = crate::ingest::parse_line(1, line).unwrap();
        let got = judge.judge(report, &judge.snapshot(), now());
        let got = match got.map(Submission::into_body) {
            Ok(Body::Observation(o)) => {
                assert_eq!(Replayer::new(vec![p.clone()]).check(&o), Ok(()));
                let text = crate::ledger::entry::Entry {
                    seq: 0,
                    time: Timestamp(0),
                    prev: [0; 32],
                    body: Body::Observation(o.clone()),
                }
                .encode();
                assert!(
                    !text.contains("rssi"),
                    "who attested is pseudonymised: {text}"
                );
                format!(
                    "[{}] {}",
                    o.locality.verdict.as_str(),
                    o.locality.verdict.reasons().join(" / ")
                )
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected);
    }

    fn node(name: &str, provider: &str, region: &str, address: &str) -> String {
        format!(
            r#"{{"store":"pg","class":"volume","object":"pvc-1","content":"{}","node":{{"name":"{name}","providerID":"{provider}","labels":{{"topology.kubernetes.io/region":"{region}"}},"addresses":[{{"type":"ExternalIP","address":"{address}"}}]}}}}"#,
            "ab".repeat(32)
        )
    }

    fn endpoint(name: &str) -> String {
        format!(
            r#"{{"store":"pg","class":"backup","object":"b-1","content":"{}","endpoint":"{name}"}}"#,
            "ab".repeat(32)
        )
    }

    #[test]
    fn nodes_are_judged_by_the_engine() {
        let dr = "france-diffusion-restreinte";
        check(
            dr,
            &node("gra-3", "ovh://gra/3", "gra", "51.38.1.1"),
            "[compliant] ",
        );
        check(
            dr,
            &node("gra-4", "ovh://gra/4", "gra", "51.38.1.1"),
            "[violation] no NodeAttestation names the node, which proves nothing / the policy requires the attestation to place the node in an allowed country, and it does not / only 2 of the 3 location sources the policy requires place the node in an allowed country",
        );
        check(
            dr,
            &node("gra-3", "ovh://gra/3", "gra", "5.9.0.1"),
            "[violation] address 5.9.0.1 is in DE, outside the allowed countries (FR) / network AS24940 (Hetzner Online GmbH) of address 5.9.0.1 is registered in DE, and this network is not on the policy's allow list",
        );
        // A private address and an unreadable one: every kind of fact replays from the entry.
        let private = node("lab-1", "lab://1", "gra", "10.0.0.9")
            .replace("]}}", r#",{"type":"ExternalIP","address":"not-an-ip"}]}}"#);
        check(
            "france-standard",
            &private,
            "[unknown] no NodeAttestation names the node, which proves nothing / address 10.0.0.9 is in the private network range 10.0.0.0/8 (RFC 1918) and has no location, which proves nothing / the network of address 10.0.0.9 is in the private network range 10.0.0.0/8 (RFC 1918) and has no operator, which does not establish the operator's jurisdiction / the node reports ExternalIP \"not-an-ip\", which is not an IP address, so its network is unknown, which does not establish the operator's jurisdiction / the policy requires the address to place the node in an allowed country, and it does not / only 1 of the 2 location sources the policy requires place the node in an allowed country",
        );
        // Bug (a): a compliant evaluation always carries the attestation evidence, which is
        // inconclusive when no attestation names the node; the entry takes it.
        check(
            "france-standard",
            &node("scw-1", "scw://1", "fr-par", "51.15.0.1"),
            "[compliant] ",
        );
    }

    #[test]
    fn endpoints_come_from_the_inventory_or_an_address() {
        let standard = "france-standard";
        check(standard, &endpoint("backup-gra"), "[compliant] ");
        // The same endpoint named by its address has its attestation too.
        check(standard, &endpoint("37.59.0.1"), "[compliant] ");
        // Diffusion Restreinte counts topology labels among its three sources: an endpoint has
        // none, so it never complies.
        let dr = "france-diffusion-restreinte";
        check(
            dr,
            &endpoint("backup-gra"),
            "[violation] the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing / only 2 of the 3 location sources the policy requires place the node in an allowed country",
        );
        check(
            "france-standard",
            &endpoint("3.5.0.1"),
            "[violation] address 3.5.0.1 is in US, outside the allowed countries (FR) / network AS14618 (Amazon.com, Inc.) of address 3.5.0.1 is registered in US, and it is controlled by Amazon.com, Inc. (US), outside the EU",
        );
        check(
            dr,
            &endpoint("backup.example.com"),
            "error: endpoint \"backup.example.com\" is not in the inventory and is not an IP address (the auditor resolves no names: declare it in --inventory with its addresses)",
        );
    }

    /// A kept evaluation is reused only while nothing it rests on can have changed: each
    /// judgement equals the one a judge without a cache makes at the same time, across an
    /// attestation's expiry, a clock going back, a changed description of the node and a
    /// withdrawn attestation.
    #[test]
    fn a_kept_evaluation_never_outlives_what_it_rests_on() {
        let dir = tempfile::tempdir().unwrap();
        let att = dir.path().join("att.yaml");
        std::fs::write(
            &att,
            "- metadata: {name: gra-3}
  spec: {nodeName: gra-3, providerID: 'ovh://gra/3', country: FR, hostingCompany: OVH SAS,
         site: GRA3, basis: contract, attestedBy: rssi, validUntil: '2026-11-29T13:00:00Z'}
",
        )
        .unwrap();
        let attestations = load_attestations(&att).unwrap();
        let p = policy("france-diffusion-restreinte");
        let judge = ObservationJudge::new(&p, geo(), attestations.clone(), Inventory::default());
        let at = |minutes: i64| now() + time::Duration::minutes(minutes);
        let run = |j: &ObservationJudge, line: &str, t: OffsetDateTime| -> Observation {
            let report = crate::ingest::parse_line(1, line).unwrap();
            match j.judge(report, &j.snapshot(), t).unwrap().into_body() {
                Body::Observation(o) => o,
                other => panic!("{other:?}"),
            }
        };
        let fresh = |attestations: Vec<Attestation>, line: &str, t: OffsetDateTime| {
            let j = ObservationJudge::new(&p, geo(), attestations, Inventory::default());
            run(&j, line, t)
        };
        let good = node("gra-3", "ovh://gra/3", "gra", "51.38.1.1");
        let cases: [(&str, i64, &str); 6] = [
            (&good, 0, "compliant"),
            // Kept: the same verdict, observed now.
            (&good, 10, "compliant"),
            // The attestation expires at 13:00: the kept evaluation ends there.
            (&good, 60, "violation"),
            // The clock went back before the evaluation kept last: judged again.
            (&good, -5, "compliant"),
            // Another description under the same name is another place.
            (
                &node("gra-3", "ovh://gra/3", "gra", "5.9.0.1"),
                1,
                "violation",
            ),
            (&good, 2, "compliant"),
        ];
        for (line, minutes, verdict) in cases {
            let got = run(&judge, line, at(minutes));
            assert_eq!(got, fresh(attestations.clone(), line, at(minutes)));
            assert_eq!(got.locality.verdict.as_str(), verdict, "at +{minutes} min");
            assert_eq!(
                got.locality.observed_at,
                Timestamp::from_datetime(at(minutes))
            );
        }
        // The attestation withdrawn: the next judgement of the node has none.
        judge.set_node_attestations(Vec::new());
        let got = run(&judge, &good, at(3));
        assert_eq!(got, fresh(Vec::new(), &good, at(3)));
        assert_eq!(got.locality.verdict.as_str(), "violation");
    }

    /// A recorded verdict that its facts do not give is named, and so is a policy whose digest
    /// is not the recorded one.
    #[test]
    fn replay_names_what_differs() {
        let p = policy("france-standard");
        let judge = ObservationJudge::new(&p, geo(), vec![], Inventory::default());
        let report =
            crate::ingest::parse_line(1, &node("h-1", "h://1", "fr-par", "5.9.0.1")).unwrap();
        let Body::Observation(honest) = judge
            .judge(report, &judge.snapshot(), now())
            .unwrap()
            .into_body()
        else {
            unreachable!()
        };
        let replayer = Replayer::new(vec![p.clone()]);
        assert_eq!(replayer.check(&honest), Ok(()));
        // Whoever holds the key writes "compliant" over a German address, consistently.
        let mut forged = honest.clone();
        for e in &mut forged.locality.evidence {
            if matches!(e.assessment, Assessment::Contradicts(_)) {
                e.assessment = Assessment::Supports;
            }
        }
        forged.locality.verdict = Verdict::Compliant;
        assert!(forged.check().is_ok(), "consistent on its face");
        assert_eq!(
            replayer.check(&forged),
            Err("recorded verdict compliant, but its evidence judged again under \"Standard (France)\" gives violation".into())
        );
        let dr = policy("france-diffusion-restreinte");
        let err = Replayer::new(vec![dr.clone()]).check(&honest).unwrap_err();
        assert_eq!(
            err,
            format!(
                "it was judged under policy \"Standard (France)\" with digest {}, and no policy given has that digest (given: \"Diffusion Restreinte\" {})",
                p.digest(),
                dr.digest()
            )
        );
        // An edited sentence is named too.
        let mut edited = honest.clone();
        edited.locality.evidence[0].sentence = "the node is in Paris".into();
        assert_eq!(
            replayer.check(&edited),
            Err("evidence 0 (topologyLabel) says \"the node is in Paris\", judged again \"topology label topology.kubernetes.io/region=fr-par (set by the node) is in FR by the policy's region table, an allowed country\"".into())
        );
    }
}
