//! Judging a recorded observation's facts again under the policy it names (`verify
//! --policy`), and saying what differs.

use std::sync::atomic::{AtomicU64, Ordering};

use hexagone_platform::Observation as PlatformObservation;
use hexagone_platform::verdict::{ReplayError, recheck_addresses};
use hexagone_platform::{Facts, GeoSnapshot, LocalityPolicy, Recorded, replay_recorded};

use super::body::locality;
use crate::ledger::entry::Observation;

/// Judges recorded observations again under the policies given (each entry under the one
/// whose digest it recorded), with `hexagone_platform::replay`.
pub struct Replayer {
    policies: Vec<(String, LocalityPolicy)>,
    /// Entries judged again under each of `policies`, in order.
    used: Vec<AtomicU64>,
    /// The geolocation databases given, with their SHA-256 digests sorted.
    databases: Option<(GeoSnapshot, Vec<String>)>,
    /// Entries whose address facts were looked up again, and those whose databases were not
    /// given.
    facts_checked: AtomicU64,
    facts_unchecked: AtomicU64,
}

impl Replayer {
    /// A replayer for entries judged under any of `policies`.
    pub fn new(policies: Vec<LocalityPolicy>) -> Self {
        Self {
            used: policies.iter().map(|_| AtomicU64::new(0)).collect(),
            policies: policies.into_iter().map(|p| (p.digest(), p)).collect(),
            databases: None,
            facts_checked: AtomicU64::new(0),
            facts_unchecked: AtomicU64::new(0),
        }
    }

    /// Also looks every address fact up again in `geo`, for the entries that name these very
    /// databases (same SHA-256 for each): a fact they do not give is refused.
    pub fn with_databases(mut self, geo: GeoSnapshot) -> Self {
        let mut digests: Vec<String> = geo.identities().iter().map(|d| d.sha256.clone()).collect();
        digests.sort();
        self.databases = Some((geo, digests));
        self
    }

    /// Each policy given, by its classification and digest, with the number of entries judged
    /// again under it.
    pub fn usage(&self) -> Vec<(String, u64)> {
        self.policies
            .iter()
            .zip(&self.used)
            .map(|((d, p), n)| {
                (
                    format!("{:?} ({d})", &*p.classification),
                    n.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// (entries whose address facts were looked up again, entries whose databases were not
    /// given).
    pub fn facts(&self) -> (u64, u64) {
        (
            self.facts_checked.load(Ordering::Relaxed),
            self.facts_unchecked.load(Ordering::Relaxed),
        )
    }

    /// The recorded address facts against the databases given, when the entry names them.
    fn recheck(&self, o: &Observation, observations: &[PlatformObservation]) -> Result<(), String> {
        let Some((geo, given)) = &self.databases else {
            self.facts_unchecked.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let mut named: Vec<String> = o
            .locality
            .databases
            .iter()
            .map(|d| hex::encode(d.sha256))
            .collect();
        named.sort();
        if &named != given {
            self.facts_unchecked.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.facts_checked.fetch_add(1, Ordering::Relaxed);
        recheck_addresses(observations, geo).map_err(|(i, again)| {
            format!(
                "evidence {i} records {}, but the databases it names give {}",
                describe(&observations[i]),
                describe(&again)
            )
        })
    }

    /// `Ok` when the recorded verdict, reasons and evidence are what the recorded facts give
    /// under the recorded policy; otherwise what differs, in one sentence.
    pub fn check(&self, o: &Observation) -> Result<(), String> {
        let l = &o.locality;
        let Some(at) = self
            .policies
            .iter()
            .position(|(d, _)| *d == l.policy.digest)
        else {
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
        let policy = &self.policies[at].1;
        self.used[at].fetch_add(1, Ordering::Relaxed);
        let observations = l
            .evidence
            .iter()
            .enumerate()
            .map(|(i, e)| {
                serde_json::from_str(e.fact.as_str()).map_err(|err| {
                    ReplayError::Malformed(format!("evidence {i}: {err}")).to_string()
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        self.recheck(o, &observations)?;
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
            .zip(again.evidence.iter())
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

/// An address fact in words, for a difference.
fn describe(o: &PlatformObservation) -> String {
    match o {
        PlatformObservation::Address {
            address, country, ..
        } => format!(
            "address {address} in {}",
            country.map_or_else(|| "no country".to_string(), |c| c.to_string())
        ),
        PlatformObservation::NetworkOperator {
            address,
            asn,
            registered,
            ..
        } => format!(
            "the network of {address} as {} registered in {}",
            asn.map_or_else(|| "no AS".to_string(), |a| format!("AS{}", a.0)),
            registered.map_or_else(|| "no country".to_string(), |c| c.to_string())
        ),
        other => format!("{other:?}"),
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
    use crate::judge::testing::{geo, node, now, policy};
    use crate::judge::{Inventory, ObservationJudge};
    use crate::ledger::entry::{Assessment, Body, Verdict};

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
        for e in std::sync::Arc::make_mut(&mut forged.locality.evidence) {
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
        std::sync::Arc::make_mut(&mut edited.locality.evidence)[0].sentence =
            "the node is in Paris".into();
        assert_eq!(
            replayer.check(&edited),
            Err("evidence 0 (topologyLabel) says \"the node is in Paris\", judged again \"topology label topology.kubernetes.io/region=fr-par (set by the node) is in FR by the policy's region table, an allowed country\"".into())
        );
    }
}
