//! Building a [`Report`] from ledger entries (pure): the period filter, the latest entry per
//! object, counts by store, country and jurisdiction, and violations with first and last seen.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    CheckpointRef, CountRow, FORMAT, JurisdictionRow, ObjectRow, Period, PolicyRow, Report,
    StoreRow, Totals, Verdicts, ViolationRow,
};
use crate::ledger::entry::{Body, Entry, Observation, Source, Timestamp};

/// Entries with `from <= time < to`, by the sequencer's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant included.
    pub from: Timestamp,
    /// First instant excluded.
    pub to: Timestamp,
}

impl Window {
    /// Whether `t` is in the window.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }
}

type ObjectKey = (String, String, String);

/// A network operator as the evidence records it: (AS number, organisation, registration
/// country, under extra-EU control).
type Jurisdiction = (Option<u32>, Option<String>, Option<String>, bool);

struct Latest {
    row: ObjectRow,
    jurisdictions: BTreeSet<Jurisdiction>,
}

/// Folds entries, in ledger order, into a report.
pub struct Aggregator {
    window: Window,
    observations: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    policies: BTreeMap<(String, String), u64>,
    latest: BTreeMap<ObjectKey, Latest>,
    violations: BTreeMap<(ObjectKey, String, String), ViolationRow>,
}

impl Aggregator {
    /// An empty aggregation over `window`.
    pub fn new(window: Window) -> Self {
        Self {
            window,
            observations: 0,
            first_seq: None,
            last_seq: None,
            policies: BTreeMap::new(),
            latest: BTreeMap::new(),
            violations: BTreeMap::new(),
        }
    }

    /// Counts one entry if it is an observation in the window. Entries come in ledger order,
    /// so a later entry about an object replaces an earlier one as its latest.
    pub fn add(&mut self, entry: &Entry) {
        let Body::Observation(o) = &entry.body else {
            return;
        };
        if !self.window.contains(entry.time) {
            return;
        }
        self.observations += 1;
        self.first_seq.get_or_insert(entry.seq);
        self.last_seq = Some(entry.seq);
        let l = &o.locality;
        *self
            .policies
            .entry((l.policy.classification.clone(), l.policy.digest.clone()))
            .or_default() += 1;
        let key = (
            o.object.store.clone(),
            o.object.class.clone(),
            o.object.id.clone(),
        );
        let time = entry.time.to_string();
        let row = ObjectRow {
            store: key.0.clone(),
            class: key.1.clone(),
            object: key.2.clone(),
            subject: l.subject.clone(),
            subject_kind: l.subject_kind.as_str().into(),
            country: countries(o),
            verdict: l.verdict.as_str().into(),
            seq: entry.seq,
            time: time.clone(),
        };
        if l.verdict.as_str() == "violation" {
            let v = self
                .violations
                .entry((key.clone(), l.subject.clone(), row.subject_kind.clone()))
                .or_insert_with(|| ViolationRow {
                    store: key.0.clone(),
                    class: key.1.clone(),
                    object: key.2.clone(),
                    subject: l.subject.clone(),
                    subject_kind: row.subject_kind.clone(),
                    first_seen: time.clone(),
                    last_seen: time.clone(),
                    first_seq: entry.seq,
                    last_seq: entry.seq,
                    entries: 0,
                    reasons: vec![],
                    evidence: vec![],
                });
            v.last_seen = time;
            v.last_seq = entry.seq;
            v.entries += 1;
            v.reasons = l.verdict.reasons().to_vec();
            v.evidence = l.evidence.iter().map(|e| e.sentence.clone()).collect();
        }
        self.latest.insert(
            key,
            Latest {
                row,
                jurisdictions: jurisdictions(o),
            },
        );
    }

    /// The report over what was added, tied to `checkpoint`.
    pub fn finish(self, checkpoint: CheckpointRef, generated_at: String) -> Report {
        let mut totals = Totals {
            observations: self.observations,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            objects: self.latest.len() as u64,
            verdicts: Verdicts::default(),
        };
        let mut stores: BTreeMap<(String, String), Verdicts> = BTreeMap::new();
        let mut countries: BTreeMap<String, Verdicts> = BTreeMap::new();
        let mut nets: BTreeMap<Jurisdiction, Verdicts> = BTreeMap::new();
        for l in self.latest.values() {
            let v = &l.row.verdict;
            totals.verdicts.count(v);
            stores
                .entry((l.row.store.clone(), l.row.class.clone()))
                .or_default()
                .count(v);
            countries.entry(l.row.country.clone()).or_default().count(v);
            if l.jurisdictions.is_empty() {
                nets.entry((None, None, None, false)).or_default().count(v);
            }
            for j in &l.jurisdictions {
                nets.entry(j.clone()).or_default().count(v);
            }
        }
        Report {
            format: FORMAT.into(),
            period: Period {
                from: self.window.from.to_string(),
                to: self.window.to.to_string(),
            },
            generated_at,
            checkpoint,
            totals,
            policies: self
                .policies
                .into_iter()
                .map(|((classification, digest), observations)| PolicyRow {
                    classification,
                    digest,
                    observations,
                })
                .collect(),
            stores: stores
                .into_iter()
                .map(|((store, class), verdicts)| StoreRow {
                    store,
                    class,
                    verdicts,
                })
                .collect(),
            countries: countries
                .into_iter()
                .map(|(country, verdicts)| CountRow { country, verdicts })
                .collect(),
            jurisdictions: nets
                .into_iter()
                .map(
                    |((asn, organisation, registered, extra_eu_control), verdicts)| {
                        JurisdictionRow {
                            asn,
                            organisation,
                            registered,
                            extra_eu_control,
                            verdicts,
                        }
                    },
                )
                .collect(),
            objects: self.latest.into_values().map(|l| l.row).collect(),
            violations: self.violations.into_values().collect(),
        }
    }
}

/// The countries the location sources (labels, attestation, addresses; not the network
/// operator, which says where a network is registered) name, sorted, comma-separated: several
/// when they disagree, `unknown` when none names one.
fn countries(o: &Observation) -> String {
    let set: BTreeSet<String> = o
        .locality
        .evidence
        .iter()
        .filter(|e| e.source != Source::NetworkOperator)
        .filter_map(|e| e.country)
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .collect();
    if set.is_empty() {
        "unknown".into()
    } else {
        set.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// The network operators the evidence names.
fn jurisdictions(o: &Observation) -> BTreeSet<Jurisdiction> {
    o.locality
        .evidence
        .iter()
        .filter(|e| e.source == Source::NetworkOperator && e.asn.is_some())
        .map(|e| {
            let fact = e.fact.to_value();
            (
                e.asn,
                fact.get("organisation")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string),
                e.country.map(|c| String::from_utf8_lossy(&c).into_owned()),
                e.assessment.rule() == Some("extraEuControl"),
            )
        })
        .collect()
}

/// Observation entries made without the locality engine, for the report's unit tests.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::ledger::entry::{
        Assessment, Body, Controller, Entry, Evidence, Fact, Locality, ObjectId, Observation,
        PolicyRef, Source, SubjectKind, Timestamp, Verdict,
    };

    /// One day in milliseconds.
    pub const DAY: i64 = 86_400_000;

    fn evidence(source: Source, country: &str, asn: Option<u32>, bad: bool) -> Evidence {
        let fact = match source {
            Source::NetworkOperator => serde_json::json!({"kind": "networkOperator",
                "address": "5.9.0.1", "asn": asn, "organisation": "Hetzner Online GmbH",
                "registered": country}),
            _ => serde_json::json!({"kind": "address", "address": "5.9.0.1", "country": country}),
        };
        Evidence {
            source,
            controller: Controller::Node,
            country: Some(country.as_bytes().try_into().unwrap()),
            asn,
            assessment: if bad {
                Assessment::Contradicts("countryNotAllowed".into())
            } else {
                Assessment::Supports
            },
            fact: Fact::from_value(&fact).unwrap(),
            sentence: match asn {
                Some(asn) => {
                    format!("network AS{asn} of address 5.9.0.1 is registered in {country}")
                }
                None => format!("address 5.9.0.1 is in {country}"),
            },
        }
    }

    /// Entry `seq` at day `day`: object `object` on `node`, in `country` (a violation
    /// unless FR).
    pub fn entry(seq: u64, day: i64, object: &str, node: &str, country: &str) -> Entry {
        let bad = country != "FR";
        let verdict = if bad {
            Verdict::Violation(vec![format!("address 5.9.0.1 is in {country}")])
        } else {
            Verdict::Compliant
        };
        Entry {
            seq,
            time: Timestamp(day * DAY),
            prev: [0; 32],
            body: Body::Observation(Observation {
                object: ObjectId::new("minio/documents".into(), "document".into(), object.into())
                    .unwrap(),
                content: [1; 32],
                locality: Locality {
                    subject: node.into(),
                    subject_kind: SubjectKind::Node,
                    observed_at: Timestamp(day * DAY),
                    evidence: vec![
                        evidence(Source::Address, country, None, bad),
                        evidence(Source::NetworkOperator, country, Some(24940), false),
                    ],
                    verdict,
                    policy: PolicyRef {
                        classification: "Standard".into(),
                        digest: "sha256:aa".into(),
                        extra_eu_control: None,
                    },
                    databases: vec![],
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{DAY, entry};
    use super::*;

    fn check(entries: &[Entry], from: i64, to: i64) -> Report {
        let mut a = Aggregator::new(Window {
            from: Timestamp(from * DAY),
            to: Timestamp(to * DAY),
        });
        for e in entries {
            a.add(e);
        }
        let cp = CheckpointRef {
            origin: "o".into(),
            size: entries.len() as u64,
            root: String::new(),
            note: String::new(),
        };
        a.finish(cp, "now".into())
    }

    #[test]
    fn the_period_is_half_open_and_the_latest_entry_wins() {
        let entries = [
            entry(0, 1, "a", "fsn-1", "DE"), // before the period
            entry(1, 2, "a", "gra-3", "FR"), // first instant: included
            entry(2, 3, "b", "fsn-1", "DE"),
            entry(3, 4, "b", "fsn-1", "DE"),
            entry(4, 5, "c", "fsn-1", "DE"), // the end instant: excluded
        ];
        let r = check(&entries, 2, 5);
        assert_eq!(r.period.from, "1970-01-03T00:00:00.000Z");
        assert_eq!(r.period.to, "1970-01-06T00:00:00.000Z");
        assert_eq!(
            (r.totals.observations, r.totals.first_seq, r.totals.last_seq),
            (3, Some(1), Some(3))
        );
        let objects: Vec<_> = r
            .objects
            .iter()
            .map(|o| {
                format!(
                    "{} {} {} {} #{}",
                    o.object, o.subject, o.country, o.verdict, o.seq
                )
            })
            .collect();
        assert_eq!(
            objects,
            ["a gra-3 FR compliant #1", "b fsn-1 DE violation #3"]
        );
        assert_eq!(
            (
                r.totals.objects,
                r.totals.verdicts.compliant,
                r.totals.verdicts.violation
            ),
            (2, 1, 1)
        );
        // The earlier violation of `a` (day 1) is outside the period: not reported.
        assert_eq!(r.violations.len(), 1);
        let v = &r.violations[0];
        assert_eq!(
            (
                v.object.as_str(),
                v.subject.as_str(),
                v.first_seq,
                v.last_seq,
                v.entries
            ),
            ("b", "fsn-1", 2, 3, 2)
        );
        assert_eq!(
            (v.first_seen.as_str(), v.last_seen.as_str()),
            ("1970-01-04T00:00:00.000Z", "1970-01-05T00:00:00.000Z")
        );
        assert_eq!(v.reasons, ["address 5.9.0.1 is in DE"]);
        assert_eq!(v.evidence.len(), 2);
    }

    #[test]
    fn counts_by_store_country_and_jurisdiction_are_by_latest_verdict() {
        let entries = [
            entry(0, 1, "a", "fsn-1", "DE"),
            entry(1, 1, "a", "gra-3", "FR"), // moved: counted once, compliant
            entry(2, 1, "b", "fsn-1", "DE"),
            entry(3, 1, "c", "gra-3", "FR"),
        ];
        let r = check(&entries, 0, 10);
        let s = &r.stores[0];
        assert_eq!(
            (
                r.stores.len(),
                s.store.as_str(),
                s.class.as_str(),
                s.verdicts.compliant,
                s.verdicts.violation
            ),
            (1, "minio/documents", "document", 2, 1)
        );
        let countries: Vec<_> = r
            .countries
            .iter()
            .map(|c| (c.country.as_str(), c.verdicts.total()))
            .collect();
        assert_eq!(countries, [("DE", 1), ("FR", 2)]);
        let nets: Vec<_> = r
            .jurisdictions
            .iter()
            .map(|j| (j.asn, j.registered.as_deref(), j.verdicts.total()))
            .collect();
        assert_eq!(
            nets,
            [(Some(24940), Some("DE"), 1), (Some(24940), Some("FR"), 2)]
        );
        // The violation of `a` stays in the list although `a` is now compliant.
        let v: Vec<_> = r.violations.iter().map(|v| v.object.as_str()).collect();
        assert_eq!(v, ["a", "b"]);
        assert_eq!(r.policies[0].observations, 4);
    }

    #[test]
    fn an_empty_period_is_an_empty_report() {
        let r = check(&[entry(0, 1, "a", "fsn-1", "DE")], 2, 3);
        assert_eq!(r.totals, Totals::default());
        assert!(r.objects.is_empty() && r.violations.is_empty() && r.countries.is_empty());
    }
}
