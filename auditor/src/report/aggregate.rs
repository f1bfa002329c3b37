//! Building a [`Report`] from ledger entries (pure): each object's state as of the period's end
//! (its latest entry before the end, wherever that entry falls), violations followed from the
//! entry that opened them to the compliant entry that resolved them, counts by store, country
//! and jurisdiction, and what the period's own entries were.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    BoundRow, CheckpointRef, CountRow, FORMAT, ImageRow, JurisdictionRow, ObjectRow, Period,
    PolicyChangeRow, PolicyInForceRow, PolicyRow, REMOVED, Report, Resolution, StoreRow, Totals,
    Verdicts, ViolationRow,
};
use crate::ledger::entry::{
    Assessment, Body, Entry, ObjectId, Observation, POLICY_CLASS, Source, Timestamp, Verdict,
};

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

/// What is known of one object at a point of the ledger: its latest entry, and the violation
/// it is in, if no compliant entry has followed it.
struct ObjectState {
    row: ObjectRow,
    jurisdictions: BTreeSet<Jurisdiction>,
    open: Option<ViolationRow>,
}

/// Folds entries, in ledger order, into a report.
pub struct Aggregator {
    window: Window,
    observations: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    policies: BTreeMap<(String, String), u64>,
    objects: BTreeMap<ObjectKey, ObjectState>,
    resolved: Vec<ViolationRow>,
    /// The latest latency evidence per (place, address).
    bounds: BTreeMap<(String, String), BoundRow>,
    /// Each policy's latest entry before the period's end: its digest (`None` once removed),
    /// position and time.
    policy_state: BTreeMap<ObjectKey, (Option<String>, u64, Timestamp)>,
    /// The period's policy entries, in ledger order.
    policy_changes: Vec<PolicyChangeRow>,
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
            objects: BTreeMap::new(),
            resolved: Vec::new(),
            bounds: BTreeMap::new(),
            policy_state: BTreeMap::new(),
            policy_changes: Vec::new(),
        }
    }

    /// Takes one entry into account. Entries come in ledger order, so a later entry about an
    /// object replaces an earlier one as its state. Every observation before the period's end
    /// counts for the state (an object recorded once, such as a backup, stays in every later
    /// report); only the period's own entries count as its observations and policies. A
    /// policy entry, and the removal of a policy (of class [`POLICY_CLASS`], or named by a
    /// policy entry), is a policy change: it touches no object.
    pub fn add(&mut self, entry: &Entry) {
        if entry.time >= self.window.to {
            return;
        }
        let o = match &entry.body {
            Body::Observation(o) => o,
            Body::Policy { object, digest, .. } => {
                return self.policy_change(entry, object, Some(digest));
            }
            Body::Removal { object, .. } if self.is_policy(object) => {
                return self.policy_change(entry, object, None);
            }
            Body::Removal { object, .. } => return self.remove(entry, object),
            Body::KeyRotation { .. } => return,
        };
        let in_period = self.window.contains(entry.time);
        let l = &o.locality;
        if in_period {
            self.observations += 1;
            self.first_seq.get_or_insert(entry.seq);
            self.last_seq = Some(entry.seq);
            *self
                .policies
                .entry((l.policy.classification.clone(), l.policy.digest.clone()))
                .or_default() += 1;
        }
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
            image: o.image.as_ref().map(ImageRow::from),
            subject: l.subject.clone(),
            subject_kind: l.subject_kind.as_str().into(),
            country: countries(o),
            verdict: l.verdict.as_str().into(),
            seq: entry.seq,
            time: time.clone(),
        };
        for b in bounds(o, entry.seq, &time) {
            self.bounds
                .insert((b.subject.clone(), b.address.clone()), b);
        }
        let mut open = self.objects.remove(&key).and_then(|s| s.open);
        match &l.verdict {
            Verdict::Violation(_) => {
                let v = open.get_or_insert_with(|| ViolationRow {
                    store: key.0.clone(),
                    class: key.1.clone(),
                    object: key.2.clone(),
                    image: None,
                    subject: String::new(),
                    subject_kind: String::new(),
                    country: String::new(),
                    classification: String::new(),
                    since: time.clone(),
                    since_seq: entry.seq,
                    last_seen: String::new(),
                    last_seq: 0,
                    entries: 0,
                    headline: String::new(),
                    reasons: vec![],
                    evidence: vec![],
                    resolved: None,
                });
                v.image = row.image.clone();
                v.subject = row.subject.clone();
                v.subject_kind = row.subject_kind.clone();
                v.country = row.country.clone();
                v.classification = l.policy.classification.clone();
                v.last_seen = time;
                v.last_seq = entry.seq;
                v.entries += 1;
                v.reasons = decisive_first(o);
                v.evidence = l.evidence.iter().map(|e| e.sentence.clone()).collect();
            }
            Verdict::Compliant => {
                // A compliant entry resolves the violation; one resolved before the period was
                // in an earlier report and is not repeated.
                if let Some(mut v) = open.take()
                    && in_period
                {
                    v.resolved = Some(Resolution {
                        subject: row.subject.clone(),
                        subject_kind: row.subject_kind.clone(),
                        country: row.country.clone(),
                        seq: entry.seq,
                        time: time.clone(),
                    });
                    v.headline = resolved_headline(&v);
                    self.resolved.push(v);
                }
            }
            // Unknown resolves nothing: the object was not shown compliant.
            Verdict::Unknown(_) => {}
        }
        self.objects.insert(
            key,
            ObjectState {
                row,
                jurisdictions: jurisdictions(o),
                open,
            },
        );
    }

    /// A removal: the object is no longer anywhere, so it leaves the state at the period's end;
    /// a violation it still had is resolved by the removal when that falls in the period.
    fn remove(&mut self, entry: &Entry, object: &ObjectId) {
        let key = (
            object.store.clone(),
            object.class.clone(),
            object.id.clone(),
        );
        let Some(state) = self.objects.remove(&key) else {
            return;
        };
        if !self.window.contains(entry.time) {
            return;
        }
        self.first_seq.get_or_insert(entry.seq);
        self.last_seq = Some(entry.seq);
        if let Some(mut v) = state.open {
            v.resolved = Some(Resolution {
                subject: String::new(),
                subject_kind: REMOVED.into(),
                country: String::new(),
                seq: entry.seq,
                time: entry.time.to_string(),
            });
            v.headline = resolved_headline(&v);
            self.resolved.push(v);
        }
    }

    /// Whether `object` is a policy: of the policies' class, or named by a policy entry.
    fn is_policy(&self, object: &ObjectId) -> bool {
        object.class == POLICY_CLASS || self.policy_state.contains_key(&key_of(object))
    }

    /// A policy entry (`digest`) or a policy's removal (`None`): the policy's new state, and a
    /// row of the period's changes, with its state before, when it falls in the period.
    fn policy_change(&mut self, entry: &Entry, object: &ObjectId, digest: Option<&String>) {
        let before = self
            .policy_state
            .insert(key_of(object), (digest.cloned(), entry.seq, entry.time));
        if !self.window.contains(entry.time) {
            return;
        }
        self.first_seq.get_or_insert(entry.seq);
        self.last_seq = Some(entry.seq);
        let (previous, previous_seq) = match before {
            Some((d, seq, _)) => (d, Some(seq)),
            None => (None, None),
        };
        self.policy_changes.push(PolicyChangeRow {
            store: object.store.clone(),
            policy: object.id.clone(),
            seq: entry.seq,
            time: entry.time.to_string(),
            digest: digest.cloned(),
            previous,
            previous_seq,
            // Known once the period's observations are all counted (`finish`).
            judged_under: None,
        });
    }

    /// The report over what was added, tied to `checkpoint`.
    pub fn finish(self, checkpoint: CheckpointRef, generated_at: String) -> Report {
        let from = self.window.from.to_string();
        let mut totals = Totals {
            observations: self.observations,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            objects: self.objects.len() as u64,
            verdicts: Verdicts::default(),
        };
        let mut stores: BTreeMap<(String, String), Verdicts> = BTreeMap::new();
        let mut countries: BTreeMap<String, Verdicts> = BTreeMap::new();
        let mut nets: BTreeMap<Jurisdiction, Verdicts> = BTreeMap::new();
        let mut objects = Vec::with_capacity(self.objects.len());
        let mut open = Vec::new();
        for s in self.objects.into_values() {
            let v = &s.row.verdict;
            totals.verdicts.count(v);
            stores
                .entry((s.row.store.clone(), s.row.class.clone()))
                .or_default()
                .count(v);
            countries.entry(s.row.country.clone()).or_default().count(v);
            if s.jurisdictions.is_empty() {
                nets.entry((None, None, None, false)).or_default().count(v);
            }
            for j in s.jurisdictions {
                nets.entry(j).or_default().count(v);
            }
            if let Some(mut o) = s.open {
                o.headline = open_headline(&o, &s.row, &from);
                open.push(o);
            }
            objects.push(s.row);
        }
        // The longest open first: it has waited longest for someone to act.
        open.sort_by_key(|v| v.since_seq);
        let judged: BTreeSet<&str> = self.policies.keys().map(|(_, d)| d.as_str()).collect();
        // Whether the period's observations were judged under a policy with digest `d`; not
        // known when none was judged (or for a removal).
        let judged_under = |d: Option<&String>| match d {
            Some(d) if !judged.is_empty() => Some(judged.contains(d.as_str())),
            _ => None,
        };
        let mut policy_changes = self.policy_changes;
        for c in &mut policy_changes {
            c.judged_under = judged_under(c.digest.as_ref());
        }
        // A policy stands at the period's end when its latest entry before the end is a policy
        // entry, made in the period or before it.
        let policies_in_force: Vec<PolicyInForceRow> = self
            .policy_state
            .iter()
            .filter_map(|((store, _, policy), (digest, seq, time))| {
                Some(PolicyInForceRow {
                    store: store.clone(),
                    policy: policy.clone(),
                    judged_under: judged_under(Some(digest.as_ref()?)),
                    digest: digest.clone()?,
                    since_seq: *seq,
                    since: time.to_string(),
                })
            })
            .collect();
        Report {
            format: FORMAT.into(),
            period: Period {
                from,
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
            objects,
            open_violations: open,
            resolved_violations: self.resolved,
            bounds: self.bounds.into_values().collect(),
            policy_changes,
            policies_in_force,
        }
    }
}

/// The key of `object` in the aggregation's maps.
fn key_of(object: &ObjectId) -> ObjectKey {
    (
        object.store.clone(),
        object.class.clone(),
        object.id.clone(),
    )
}

/// The latency evidence of an observation as report rows (one per measured address).
fn bounds(o: &Observation, seq: u64, time: &str) -> Vec<BoundRow> {
    let l = &o.locality;
    l.evidence
        .iter()
        .filter(|e| e.source == Source::Latency)
        .map(|e| {
            let fact = e.fact.to_value();
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let measurements = fact["measurements"].as_array().cloned().unwrap_or_default();
            BoundRow {
                subject: l.subject.clone(),
                subject_kind: l.subject_kind.as_str().into(),
                address: format!("{}:{}", text(&fact["address"]), text(&fact["port"])),
                measured_from: measurements
                    .iter()
                    .map(|m| {
                        let us = m["minRttUs"].as_u64().unwrap_or(0);
                        format!(
                            "{}: {}.{:03} ms, {} km",
                            text(&m["vantage"]),
                            us / 1000,
                            us % 1000,
                            text(&m["boundKm"])
                        )
                    })
                    .collect(),
                bound_km: measurements
                    .iter()
                    .filter_map(|m| m["boundKm"].as_u64())
                    .min()
                    .unwrap_or(0),
                assessment: e.assessment.kind().as_str().into(),
                sentence: e.sentence.clone(),
                seq,
                time: time.to_owned(),
            }
        })
        .collect()
}

/// The verdict's reasons with the decisive one first, the others in the engine's order. The
/// decisive reason is the first contradicting evidence (one source outside the policy is
/// enough); without one (a strict policy's `onUnknown: violation`), the engine's last reason
/// that is not merely evidence "which proves nothing" (the unmet requirement), as the locality
/// engine's own headline picks it.
fn decisive_first(o: &Observation) -> Vec<String> {
    let l = &o.locality;
    let mut reasons = l.verdict.reasons().to_vec();
    let contradicting = l
        .evidence
        .iter()
        .find(|e| matches!(e.assessment, Assessment::Contradicts(_)))
        .map(|e| e.sentence.as_str());
    let at = match contradicting {
        Some(s) => reasons.iter().position(|r| r == s),
        None => reasons
            .iter()
            .rposition(|r| !r.ends_with("which proves nothing")),
    };
    if let Some(at) = at {
        let decisive = reasons.remove(at);
        reasons.insert(0, decisive);
    }
    reasons
}

/// One sentence for an open violation: what, where, under which policy, since when, and its
/// decisive reason.
fn open_headline(v: &ViolationRow, now: &ObjectRow, period_from: &str) -> String {
    let before = if v.since.as_str() < period_from {
        " (before this period)"
    } else {
        ""
    };
    let decisive = v
        .reasons
        .first()
        .map(String::as_str)
        .unwrap_or("no reason recorded");
    let mut s = format!(
        "{} ({} / {}) on {} {} ({}) has violated {} since {}{before}: {decisive}.",
        v.object, v.store, v.class, v.subject_kind, v.subject, v.country, v.classification, v.since,
    );
    if now.seq != v.last_seq {
        // Later entries were not compliant either (unknown): the violation is not resolved.
        s.pop();
        s.push_str(&format!(
            "; its latest entry ({}) is {} on {} {}, not shown compliant.",
            now.seq, now.verdict, now.subject_kind, now.subject
        ));
    }
    s
}

/// One sentence for a resolved violation: where it was, where it went and when.
fn resolved_headline(v: &ViolationRow) -> String {
    let r = v.resolved.as_ref().expect("a resolved violation");
    if r.subject_kind == REMOVED {
        return format!(
            "{} ({} / {}) was removed at {}, from {} {} ({}); it had violated {} since {}.",
            v.object,
            v.store,
            v.class,
            r.time,
            v.subject_kind,
            v.subject,
            v.country,
            v.classification,
            v.since
        );
    }
    if (r.subject.as_str(), r.subject_kind.as_str())
        == (v.subject.as_str(), v.subject_kind.as_str())
    {
        return format!(
            "{} ({} / {}) is compliant again on {} {} ({}) since {}; it had violated {} since {}.",
            v.object,
            v.store,
            v.class,
            r.subject_kind,
            r.subject,
            r.country,
            r.time,
            v.classification,
            v.since
        );
    }
    format!(
        "{} ({} / {}) left {} {} ({}) for {} {} ({}), where it is compliant, at {}; it had violated {} since {}.",
        v.object,
        v.store,
        v.class,
        v.subject_kind,
        v.subject,
        v.country,
        r.subject_kind,
        r.subject,
        r.country,
        r.time,
        v.classification,
        v.since
    )
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
                // Refused by the curated list, or by an allow list while the curated list
                // names the network (it then explains the refusal).
                e.assessment.rule() == Some("extraEuControl")
                    || (e.assessment.rule() == Some("asnNotAllowed")
                        && e.asn.is_some_and(|a| {
                            hexagone_platform::ExtraEuControl::shipped()
                                .get(hexagone_platform::Asn(a))
                                .is_some()
                        })),
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

    /// Entry `seq` at day `day`: the collector's image `object`, `reference` pulled as
    /// `image_id`, from `registry` in `country` (a violation unless FR).
    pub fn image_entry(
        seq: u64,
        day: i64,
        object: &str,
        registry: &str,
        country: &str,
        (reference, image_id): (&str, Option<&str>),
    ) -> Entry {
        let mut e = entry(seq, day, object, registry, country);
        let Body::Observation(o) = &mut e.body else {
            unreachable!()
        };
        o.object = ObjectId::new("kubernetes".into(), "image".into(), object.into()).unwrap();
        o.locality.subject_kind = SubjectKind::Endpoint;
        o.image = Some(
            crate::ledger::entry::ImageRef::new(reference.into(), image_id.map(Into::into))
                .unwrap(),
        );
        e
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
                image: None,
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
                    ]
                    .into(),
                    verdict,
                    policy: PolicyRef {
                        classification: "Standard".into(),
                        digest: "sha256:aa".into(),
                        extra_eu_control: None,
                    },
                    databases: vec![].into(),
                },
                request: None,
            }),
        }
    }

    /// The cluster's LocalityPolicy `name` with `digest`, recorded as entry `seq` at day `day`.
    pub fn policy(seq: u64, day: i64, name: &str, digest: &str) -> Entry {
        Entry {
            seq,
            time: Timestamp(day * DAY),
            prev: [0; 32],
            body: Body::Policy {
                object: policy_object(name),
                digest: digest.into(),
                observed_at: Timestamp(day * DAY),
                request: None,
            },
        }
    }

    /// The removal of the cluster's LocalityPolicy `name`, recorded as entry `seq` at day `day`.
    pub fn policy_removal(seq: u64, day: i64, name: &str) -> Entry {
        Entry {
            seq,
            time: Timestamp(day * DAY),
            prev: [0; 32],
            body: Body::Removal {
                object: policy_object(name),
                observed_at: Timestamp(day * DAY),
                request: None,
            },
        }
    }

    fn policy_object(name: &str) -> ObjectId {
        ObjectId::new(
            "kubernetes".into(),
            crate::ledger::entry::POLICY_CLASS.into(),
            name.into(),
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{DAY, entry, policy, policy_removal};
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

    /// `object@subject since #seq … resolved #seq at subject (country)`, one per violation.
    fn violations(rows: &[ViolationRow]) -> Vec<String> {
        rows.iter()
            .map(|v| {
                let mut s = format!(
                    "{}@{} since #{} last #{} x{}",
                    v.object, v.subject, v.since_seq, v.last_seq, v.entries
                );
                if let Some(r) = &v.resolved {
                    s += &format!(" resolved #{} at {} ({})", r.seq, r.subject, r.country);
                }
                s
            })
            .collect()
    }

    fn objects(r: &Report) -> Vec<String> {
        r.objects
            .iter()
            .map(|o| {
                format!(
                    "{} {} {} {} #{}",
                    o.object, o.subject, o.country, o.verdict, o.seq
                )
            })
            .collect()
    }

    #[test]
    fn the_period_is_half_open_and_the_state_is_the_latest_entry_before_its_end() {
        let entries = [
            entry(0, 1, "a", "fsn-1", "DE"), // before the period: opens a violation
            entry(1, 2, "a", "gra-3", "FR"), // first instant: included, resolves it
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
        assert_eq!(
            objects(&r),
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
        assert_eq!(
            violations(&r.open_violations),
            ["b@fsn-1 since #2 last #3 x2"]
        );
        let v = &r.open_violations[0];
        assert_eq!(
            (v.since.as_str(), v.last_seen.as_str(), v.country.as_str()),
            ("1970-01-04T00:00:00.000Z", "1970-01-05T00:00:00.000Z", "DE")
        );
        assert_eq!(v.reasons, ["address 5.9.0.1 is in DE"]);
        assert_eq!(v.evidence.len(), 2);
        assert_eq!(
            v.headline,
            "b (minio/documents / document) on node fsn-1 (DE) has violated Standard since \
             1970-01-04T00:00:00.000Z: address 5.9.0.1 is in DE."
        );
        // The violation of `a` opened before the period, resolved in it: where it went, when.
        assert_eq!(
            violations(&r.resolved_violations),
            ["a@fsn-1 since #0 last #0 x1 resolved #1 at gra-3 (FR)"]
        );
        assert_eq!(
            r.resolved_violations[0].headline,
            "a (minio/documents / document) left node fsn-1 (DE) for node gra-3 (FR), where it is \
             compliant, at 1970-01-03T00:00:00.000Z; it had violated Standard since \
             1970-01-02T00:00:00.000Z."
        );
    }

    /// A removal: the object leaves the state; a violation it still had is resolved by it, in
    /// the removal's period only; a removal before the period closes it silently.
    #[test]
    fn a_removed_object_leaves_the_state_and_its_violation_is_resolved_by_the_removal() {
        let removal = |seq: u64, day: i64, object: &str| Entry {
            seq,
            time: Timestamp(day * DAY),
            prev: [0; 32],
            body: Body::Removal {
                object: ObjectId::new("minio/documents".into(), "document".into(), object.into())
                    .unwrap(),
                observed_at: Timestamp(day * DAY),
                request: None,
            },
        };
        let entries = [
            entry(0, 1, "pod-a", "fsn-1", "DE"),
            entry(1, 1, "pod-b", "gra-3", "FR"),
            removal(2, 3, "pod-a"),
            removal(3, 3, "pod-b"),
            // Another removal of an object no longer there changes nothing.
            removal(4, 4, "pod-a"),
        ];
        let r = check(&entries, 2, 5);
        assert!(objects(&r).is_empty(), "{:?}", objects(&r));
        assert_eq!(r.totals.objects, 0);
        assert!(r.open_violations.is_empty());
        assert_eq!(
            violations(&r.resolved_violations),
            ["pod-a@fsn-1 since #0 last #0 x1 resolved #2 at  ()"]
        );
        assert_eq!(
            r.resolved_violations[0]
                .resolved
                .as_ref()
                .unwrap()
                .subject_kind,
            REMOVED
        );
        assert_eq!(
            r.resolved_violations[0].headline,
            "pod-a (minio/documents / document) was removed at 1970-01-04T00:00:00.000Z, from node \
             fsn-1 (DE); it had violated Standard since 1970-01-02T00:00:00.000Z."
        );
        assert_eq!((r.totals.first_seq, r.totals.last_seq), (Some(2), Some(3)));
        // Before the removal, the violation is open; after the removal's period, it is gone.
        let before = check(&entries, 2, 3);
        assert_eq!(
            violations(&before.open_violations),
            ["pod-a@fsn-1 since #0 last #0 x1"]
        );
        let after = check(&entries, 4, 6);
        assert!(after.open_violations.is_empty() && after.resolved_violations.is_empty());
        assert!(objects(&after).is_empty());
    }

    /// `policy #seq digest (before) judged`, one per policy change.
    fn changes(r: &Report) -> Vec<String> {
        r.policy_changes
            .iter()
            .map(|c| {
                format!(
                    "{} #{} {} ({}) {}",
                    c.policy,
                    c.seq,
                    c.digest.as_deref().unwrap_or("removed"),
                    match (&c.previous, c.previous_seq) {
                        (Some(d), Some(s)) => format!("{d} #{s}"),
                        (None, Some(s)) => format!("removed #{s}"),
                        (_, None) => "first seen".into(),
                    },
                    judged(c.judged_under)
                )
            })
            .collect()
    }

    /// Whether the period's observations were judged under a digest, as the tests print it.
    fn judged(under: Option<bool>) -> &'static str {
        match under {
            Some(true) => "judged",
            Some(false) => "not judged",
            None => "-",
        }
    }

    /// The ledger of the policy tests, over days 2 to 5: `standard-fr` recorded before the
    /// period (sha256:a1), changed in it, removed, recorded again; `dr` recorded under the
    /// digest the observations are judged under (sha256:aa), then changed after the period; a
    /// removal of a policy never recorded.
    fn policy_ledger() -> Vec<Entry> {
        let (a, b) = ("sha256:a1", "sha256:b2");
        // The digest the fixture's observations are judged under.
        let judged = "sha256:aa";
        vec![
            policy(0, 1, "standard-fr", a), // before the period: the digest before
            entry(1, 1, "doc", "fsn-1", "DE"),
            policy(2, 2, "standard-fr", b),
            policy(3, 2, "dr", judged),
            entry(4, 2, "doc-2", "gra-3", "FR"),
            policy_removal(5, 3, "standard-fr"),
            policy_removal(6, 3, "never-seen"),
            policy(7, 4, "standard-fr", a), // again, after its removal
            policy(8, 6, "dr", a),          // after the period: not read
        ]
    }

    /// Policy entries are listed in ledger order with the digest the policy had before, known
    /// from an entry before the period too; a removal of a policy is listed as such; whether
    /// the period's observations were judged under each new digest is said when they were
    /// judged at all. Policies are never objects: they are in no count, and removing one
    /// resolves nothing.
    #[test]
    fn policy_changes_are_listed_with_the_digest_before_and_touch_no_object() {
        let entries = policy_ledger();
        let r = check(&entries, 2, 5);
        assert_eq!(
            changes(&r),
            [
                "standard-fr #2 sha256:b2 (sha256:a1 #0) not judged",
                "dr #3 sha256:aa (first seen) judged",
                "standard-fr #5 removed (sha256:b2 #2) -",
                "never-seen #6 removed (first seen) -",
                "standard-fr #7 sha256:a1 (removed #5) not judged",
            ]
        );
        let c = &r.policy_changes[0];
        assert_eq!(
            (c.store.as_str(), c.time.as_str()),
            ("kubernetes", "1970-01-03T00:00:00.000Z")
        );
        // No policy among the objects, the counts or the violations; the removals resolved
        // nothing, and the violation of `doc` is still open.
        assert_eq!(
            objects(&r),
            ["doc fsn-1 DE violation #1", "doc-2 gra-3 FR compliant #4"]
        );
        assert_eq!(r.totals.objects, 2);
        assert_eq!(r.stores.len(), 1);
        assert_eq!(r.totals.observations, 1);
        assert_eq!(
            violations(&r.open_violations),
            ["doc@fsn-1 since #1 last #1 x1"]
        );
        assert!(r.resolved_violations.is_empty());
        // The period's entries run from the first policy entry to the last.
        assert_eq!((r.totals.first_seq, r.totals.last_seq), (Some(2), Some(7)));
        // A period without observations: nothing says which policy they would be judged under.
        let r = check(&entries, 4, 5);
        assert_eq!(changes(&r), ["standard-fr #7 sha256:a1 (removed #5) -"]);
        assert_eq!(objects(&r).len(), 2);
        // A period without policy entries has no such section (the JSON has no key).
        let r = check(&entries, 5, 6);
        assert!(r.policy_changes.is_empty());
        let json = String::from_utf8(r.canonical()).unwrap();
        assert!(!json.contains("policy_changes"), "{json}");
    }

    /// `policy digest #since time judged`, one per policy in force.
    fn in_force(r: &Report) -> Vec<String> {
        r.policies_in_force
            .iter()
            .map(|p| {
                format!(
                    "{} {} #{} {} {}",
                    p.policy,
                    p.digest,
                    p.since_seq,
                    p.since,
                    judged(p.judged_under)
                )
            })
            .collect()
    }

    /// The policies in force at the period's end are those whose latest entry before the end
    /// (in the period or before it) is a policy entry: a policy removed is not, one recorded
    /// again after its removal is, from that entry on; an entry after the end is not read.
    /// Whether the period's observations were judged under each digest is said as for the
    /// policy changes, and a report over a ledger without policy entries has no such key.
    #[test]
    fn the_policies_in_force_are_those_whose_latest_entry_is_a_policy_entry() {
        let entries = policy_ledger();
        let r = check(&entries, 2, 5);
        assert_eq!(
            in_force(&r),
            [
                "dr sha256:aa #3 1970-01-03T00:00:00.000Z judged",
                "standard-fr sha256:a1 #7 1970-01-05T00:00:00.000Z not judged",
            ]
        );
        assert_eq!(r.policies_in_force[0].store, "kubernetes");
        // Removed at the period's end: not in force; its removal is a change of the period.
        let r = check(&entries, 3, 4);
        assert_eq!(in_force(&r), ["dr sha256:aa #3 1970-01-03T00:00:00.000Z -"]);
        // Judged under another digest than the one in force.
        let r = check(&entries, 1, 2);
        assert_eq!(
            in_force(&r),
            ["standard-fr sha256:a1 #0 1970-01-02T00:00:00.000Z not judged"]
        );
        // In force since before a period with no entry in it.
        let r = check(&entries, 5, 6);
        assert!(r.policy_changes.is_empty());
        assert_eq!(
            in_force(&r),
            [
                "dr sha256:aa #3 1970-01-03T00:00:00.000Z -",
                "standard-fr sha256:a1 #7 1970-01-05T00:00:00.000Z -",
            ]
        );
        let r = check(&entries, 4, 7);
        assert_eq!(
            in_force(&r),
            [
                "dr sha256:a1 #8 1970-01-07T00:00:00.000Z -",
                "standard-fr sha256:a1 #7 1970-01-05T00:00:00.000Z -",
            ]
        );
        // No policy entry before the period's end: no such key in the JSON.
        let r = check(&entries, 0, 1);
        assert!(r.policies_in_force.is_empty());
        let json = String::from_utf8(r.canonical()).unwrap();
        assert!(!json.contains("policies_in_force"), "{json}");
    }

    /// A backup is recorded once: it stays in every later report, its violation open (and
    /// saying since when) until an entry resolves it, then resolved in that entry's period only.
    #[test]
    fn a_violation_recorded_once_stays_open_in_later_periods_until_resolved() {
        let entries = [
            entry(0, 1, "backup", "fsn-1", "DE"),
            entry(1, 5, "doc", "gra-3", "FR"),
            entry(2, 8, "backup", "gra-3", "FR"),
        ];
        // A period without any entry: the state before it.
        let r = check(&entries, 3, 4);
        assert_eq!((r.totals.observations, r.totals.first_seq), (0, None));
        assert_eq!(objects(&r), ["backup fsn-1 DE violation #0"]);
        assert_eq!(r.totals.verdicts.violation, 1);
        assert_eq!(
            violations(&r.open_violations),
            ["backup@fsn-1 since #0 last #0 x1"]
        );
        assert!(
            r.open_violations[0].headline.contains(
                "has violated Standard since 1970-01-02T00:00:00.000Z (before this period): "
            ),
            "{}",
            r.open_violations[0].headline
        );
        assert!(r.resolved_violations.is_empty());
        // Up to the resolving entry's instant (excluded): still open.
        let r = check(&entries, 4, 8);
        assert_eq!(
            objects(&r),
            ["backup fsn-1 DE violation #0", "doc gra-3 FR compliant #1"]
        );
        assert_eq!(
            violations(&r.open_violations),
            ["backup@fsn-1 since #0 last #0 x1"]
        );
        assert!(r.resolved_violations.is_empty());
        // The period of the resolving entry: resolved, with where it went.
        let r = check(&entries, 8, 9);
        assert!(r.open_violations.is_empty());
        assert_eq!(
            violations(&r.resolved_violations),
            ["backup@fsn-1 since #0 last #0 x1 resolved #2 at gra-3 (FR)"]
        );
        // Later: neither open nor repeated as resolved; the object is compliant.
        let r = check(&entries, 9, 10);
        assert!(r.open_violations.is_empty() && r.resolved_violations.is_empty());
        assert_eq!(
            objects(&r),
            ["backup gra-3 FR compliant #2", "doc gra-3 FR compliant #1"]
        );
    }

    #[test]
    fn an_unknown_entry_does_not_resolve_a_violation_and_a_new_one_reopens() {
        let mut unknown = entry(1, 2, "a", "scw-1", "FR");
        let Body::Observation(o) = &mut unknown.body else {
            unreachable!()
        };
        o.locality.verdict = Verdict::Unknown(vec!["no address places the node".into()]);
        let entries = [
            entry(0, 1, "a", "fsn-1", "DE"),
            unknown,
            entry(2, 3, "a", "gra-3", "FR"),
            entry(3, 4, "a", "fsn-2", "DE"),
        ];
        let r = check(&entries, 0, 3);
        assert_eq!(objects(&r), ["a scw-1 FR unknown #1"]);
        assert_eq!(
            violations(&r.open_violations),
            ["a@fsn-1 since #0 last #0 x1"]
        );
        assert!(
            r.open_violations[0]
                .headline
                .ends_with("; its latest entry (1) is unknown on node scw-1, not shown compliant."),
            "{}",
            r.open_violations[0].headline
        );
        // Resolved by the compliant entry, then a new violation opens: two rows.
        let r = check(&entries, 0, 10);
        assert_eq!(
            violations(&r.resolved_violations),
            ["a@fsn-1 since #0 last #0 x1 resolved #2 at gra-3 (FR)"]
        );
        assert_eq!(
            violations(&r.open_violations),
            ["a@fsn-2 since #3 last #3 x1"]
        );
    }

    /// Under a strict policy a violation can have no contradicting evidence: the reason that
    /// decides is the unmet requirement, not the evidence "which proves nothing".
    #[test]
    fn the_decisive_reason_comes_first() {
        let mut e = entry(0, 1, "a", "scw-1", "FR");
        let Body::Observation(o) = &mut e.body else {
            unreachable!()
        };
        o.locality.verdict = Verdict::Violation(vec![
            "no NodeAttestation names the node, which proves nothing".into(),
            "the policy requires the attestation to place the node in an allowed country, and it does not".into(),
            "topology label x=y is not in the policy's region table, which proves nothing".into(),
        ]);
        let r = check(&[e], 0, 2);
        let v = &r.open_violations[0];
        assert_eq!(
            v.reasons[0],
            "the policy requires the attestation to place the node in an allowed country, and it does not"
        );
        assert_eq!(v.reasons.len(), 3);
        assert!(
            v.headline.contains("has violated Standard since ")
                && v.headline.ends_with(
                    ": the policy requires the attestation to place the node in an allowed country, and it does not."
                ),
            "{}",
            v.headline
        );
        // With contradicting evidence, the first contradiction decides.
        let mut e = entry(0, 1, "a", "fsn-1", "DE");
        let Body::Observation(o) = &mut e.body else {
            unreachable!()
        };
        o.locality.verdict = Verdict::Violation(vec![
            "something else, which proves nothing".into(),
            "address 5.9.0.1 is in DE".into(),
        ]);
        let r = check(&[e], 0, 2);
        assert_eq!(r.open_violations[0].reasons[0], "address 5.9.0.1 is in DE");
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
        // `a` moved to a compliant node: resolved; `b` is still open.
        assert_eq!(
            violations(&r.resolved_violations),
            ["a@fsn-1 since #0 last #0 x1 resolved #1 at gra-3 (FR)"]
        );
        assert_eq!(
            violations(&r.open_violations),
            ["b@fsn-1 since #2 last #2 x1"]
        );
        assert_eq!(r.policies[0].observations, 4);
    }

    #[test]
    fn nothing_recorded_before_the_end_is_an_empty_report() {
        let r = check(&[entry(0, 3, "a", "fsn-1", "DE")], 1, 2);
        assert_eq!(r.totals, Totals::default());
        assert!(
            r.objects.is_empty()
                && r.open_violations.is_empty()
                && r.resolved_violations.is_empty()
                && r.countries.is_empty()
        );
    }
}
