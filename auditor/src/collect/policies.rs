//! Every spec change of a LocalityPolicy the auditor's watch delivers, kept in order until a
//! collector pass records it: pure (no client; the watch hands its events to `PolicyLog`).
//!
//! A pass judges the cluster as it stands after a burst of changes settles, so a policy
//! rewritten and put back within one pass would leave its store state unchanged and no trace.
//! The log keeps each digest the watch saw, in order, and `records` turns them into the
//! policy entries (and removals) a pass writes: a rewrite and its undoing are two entries,
//! however quickly the second follows the first. What the watch never delivers escapes: the
//! changes made while no auditor watches, and those a reconnecting watch skips (its relisting
//! shows where each policy stands, not how it got there).
//!
//! The log is bounded while no pass takes it (a pass stalled on its commit, a policy rewritten
//! in a loop): at most [`MAX_PER_POLICY`] changes of one policy, its first ones and its latest,
//! and beyond [`MAX_CHANGES`] in all at most its first and its latest; the changes between are
//! skipped and counted (`PolicyLog::take`), as changes a relisting skips would be.

use std::collections::HashMap;

use kube::api::DynamicObject;
use kube::runtime::watcher;
use time::OffsetDateTime;

/// The most changes of one policy the log keeps until a pass takes them: its first ones and
/// its latest (each later change replaces the latest).
pub const MAX_PER_POLICY: usize = 16;

/// Beyond this many changes in all, the log keeps at most the first and the latest change of
/// each policy: a new policy still counts (its first change), so the log holds at most this
/// many or two per policy changed since the last pass, whichever is more.
pub const MAX_CHANGES: usize = 1024;

/// One state of a policy the watch delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PolicyChange {
    /// The policy's name.
    pub name: String,
    /// Its spec's digest ([`policy_digest`]); `None` when it was deleted.
    pub digest: Option<String>,
    /// When the auditor received it.
    pub at: OffsetDateTime,
}

/// The changes the watch delivered since the last pass took them, in the order delivered.
#[derive(Debug, Default)]
pub(super) struct PolicyLog {
    changes: Vec<PolicyChange>,
    /// The latest state of each policy in `changes`: an event that repeats it (a write of the
    /// status or the metadata only) adds nothing.
    latest: HashMap<String, Option<String>>,
    /// A relisting's objects, kept until it completes (as the reflector's store does): a pass
    /// that took them earlier would read them newer than the store it compares them with.
    listing: Vec<PolicyChange>,
    /// How many changes of each policy `changes` holds.
    kept: HashMap<String, usize>,
    /// The changes skipped since the last pass took the log (beyond the bounds).
    skipped: u64,
}

impl PolicyLog {
    /// Keeps what `event`, received at `at`, says of a policy's spec.
    pub fn observe(&mut self, event: &watcher::Event<DynamicObject>, at: OffsetDateTime) {
        let change = |lp: &DynamicObject, deleted: bool| {
            Some(PolicyChange {
                name: lp.metadata.name.clone()?,
                digest: (!deleted).then(|| policy_digest(lp)),
                at,
            })
        };
        match event {
            watcher::Event::Apply(lp) => self.extend(change(lp, false)),
            watcher::Event::Delete(lp) => self.extend(change(lp, true)),
            watcher::Event::Init => self.listing.clear(),
            watcher::Event::InitApply(lp) => self.listing.extend(change(lp, false)),
            watcher::Event::InitDone => {
                // One listing, one moment: its objects in name order, at the time it completed
                // (in name order, their own arrival times would not be in order).
                let mut listing = std::mem::take(&mut self.listing);
                listing.sort_by(|a, b| a.name.cmp(&b.name));
                for change in &mut listing {
                    change.at = at;
                }
                self.extend(listing);
            }
        }
    }

    fn extend(&mut self, changes: impl IntoIterator<Item = PolicyChange>) {
        for change in changes {
            if self.latest.get(&change.name) == Some(&change.digest) {
                continue;
            }
            self.latest
                .insert(change.name.clone(), change.digest.clone());
            let kept = self.kept.entry(change.name.clone()).or_default();
            if *kept >= MAX_PER_POLICY || (*kept >= 2 && self.changes.len() >= MAX_CHANGES) {
                // The policy's latest change kept so far gives way to this one: its first
                // changes and its latest state stay.
                let at = self
                    .changes
                    .iter()
                    .rposition(|c| c.name == change.name)
                    .expect("a policy with changes kept has a latest one");
                self.changes.remove(at);
                self.skipped += 1;
            } else {
                *kept += 1;
            }
            self.changes.push(change);
        }
    }

    /// The changes kept so far, oldest first, and how many were skipped between them (beyond
    /// the bounds); forgotten here.
    pub fn take(&mut self) -> (Vec<PolicyChange>, u64) {
        self.latest.clear();
        self.kept.clear();
        (
            std::mem::take(&mut self.changes),
            std::mem::take(&mut self.skipped),
        )
    }
}

/// What a pass records of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PolicyRecord {
    /// A policy entry: its spec has this digest.
    Digest(String),
    /// A removal: it was deleted.
    Removed,
}

/// The entries `changes` call for, in order, as `(name, record, when)`: a policy's digest
/// whenever it differs from the policy's previous state — `standing(name)` before the first
/// change of it, the digest its latest entry records or `None` when none stands —, its removal
/// when it is deleted while one stands.
pub(super) fn records(
    changes: &[PolicyChange],
    mut standing: impl FnMut(&str) -> Option<String>,
) -> Vec<(String, PolicyRecord, OffsetDateTime)> {
    let mut state: HashMap<&str, Option<String>> = HashMap::new();
    let mut out = Vec::new();
    for change in changes {
        let now = state
            .entry(&change.name)
            .or_insert_with(|| standing(&change.name));
        let record = match &change.digest {
            Some(digest) if now.as_ref() != Some(digest) => PolicyRecord::Digest(digest.clone()),
            None if now.is_some() => PolicyRecord::Removed,
            _ => continue,
        };
        *now = change.digest.clone();
        out.push((change.name.clone(), record, change.at));
    }
    out
}

/// A LocalityPolicy's digest: `LocalityPolicy::digest` of its spec (the digest its status
/// shows and observations judged under the same rules carry) when the platform's type reads
/// it; otherwise the SHA-256 of the spec's JSON with sorted keys (a policy the operator cannot
/// use either, recorded all the same: its rules changed).
pub(super) fn policy_digest(lp: &DynamicObject) -> String {
    let spec = lp.data.get("spec").cloned().unwrap_or_default();
    match serde_json::from_value::<hexagone_platform::LocalityPolicy>(spec.clone()) {
        Ok(policy) => policy.digest(),
        Err(e) => {
            tracing::warn!(
                "kubernetes: locality policy {}: its spec is not one the platform reads ({e}): recorded by the digest of its JSON",
                lp.metadata.name.as_deref().unwrap_or_default()
            );
            hexagone_platform::digest::sha256_tag(
                &serde_json::to_vec(&spec).expect("a JSON value serializes"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use kube::api::ApiResource;
    use serde_json::json;

    use hexagone_platform::k8s::LocalityPolicyResource;

    fn policy(name: &str, countries: &[&str]) -> DynamicObject {
        let kind = ApiResource::erase::<LocalityPolicyResource>(&());
        DynamicObject::new(name, &kind).data(json!({"spec": {
            "allowedCountries": countries, "namespaces": ["intranet"]
        }}))
    }

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap()
    }

    /// The log's changes and the records they call for, as `name digest-or-removed second`,
    /// with `standing` the digests the ledger holds.
    fn check(events: Vec<watcher::Event<DynamicObject>>, standing: &[(&str, &str)], want: &[&str]) {
        let mut log = PolicyLog::default();
        for (i, e) in events.iter().enumerate() {
            log.observe(e, at(i as i64));
        }
        let (changes, skipped) = log.take();
        assert_eq!(skipped, 0);
        assert!(log.take().0.is_empty(), "taken once");
        let standing: HashMap<&str, &str> = standing.iter().copied().collect();
        let got: Vec<String> = records(&changes, |name| standing.get(name).map(|d| d.to_string()))
            .into_iter()
            .map(|(name, record, when)| {
                let what = match record {
                    PolicyRecord::Digest(d) => d,
                    PolicyRecord::Removed => "removed".to_owned(),
                };
                format!("{name} {what} {}", (when - at(0)).whole_seconds())
            })
            .collect();
        assert_eq!(got, want);
    }

    fn digest(countries: &[&str]) -> String {
        policy_digest(&policy("p", countries))
    }

    #[test]
    fn a_rewrite_undone_before_the_pass_is_two_entries() {
        let (fr, us) = (digest(&["FR"]), digest(&["FR", "US"]));
        check(
            vec![
                watcher::Event::Apply(policy("p", &["FR", "US"])),
                watcher::Event::Apply(policy("p", &["FR"])),
            ],
            &[("p", &fr)],
            &[&format!("p {us} 0"), &format!("p {fr} 1")],
        );
    }

    #[test]
    fn a_repeated_state_or_the_standing_one_adds_nothing() {
        let fr = digest(&["FR"]);
        let mut annotated = policy("p", &["FR"]);
        annotated.metadata.annotations = Some([("note".into(), "reviewed".into())].into());
        check(
            vec![
                watcher::Event::Apply(policy("p", &["FR"])),
                watcher::Event::Apply(annotated),
            ],
            &[("p", &fr)],
            &[],
        );
    }

    #[test]
    fn a_policy_created_and_deleted_before_the_pass_is_recorded_and_removed() {
        let de = digest(&["DE"]);
        check(
            vec![
                watcher::Event::Apply(policy("q", &["DE"])),
                watcher::Event::Delete(policy("q", &["DE"])),
                watcher::Event::Apply(policy("q", &["DE"])),
            ],
            &[],
            &[&format!("q {de} 0"), "q removed 1", &format!("q {de} 2")],
        );
        // Deleted when nothing stands for it: nothing to remove.
        check(vec![watcher::Event::Delete(policy("q", &["DE"]))], &[], &[]);
    }

    #[test]
    fn a_relisting_counts_once_complete_in_name_order() {
        let (fr, de) = (digest(&["FR"]), digest(&["DE"]));
        let mut log = PolicyLog::default();
        log.observe(&watcher::Event::Init, at(0));
        log.observe(&watcher::Event::InitApply(policy("z", &["FR"])), at(1));
        log.observe(&watcher::Event::InitApply(policy("a", &["DE"])), at(2));
        assert!(log.take().0.is_empty(), "the listing is incomplete");
        log.observe(&watcher::Event::InitDone, at(3));
        let names: Vec<_> = log
            .take()
            .0
            .into_iter()
            .map(|c| (c.name, c.digest.unwrap(), c.at))
            .collect();
        // One time for the whole listing: the one it completed at.
        assert_eq!(names, [("a".into(), de, at(3)), ("z".into(), fr, at(3))]);
    }

    /// A policy rewritten again and again while no pass takes the log: its first changes and
    /// its latest state are kept, the ones between skipped and counted; another policy's are
    /// not touched. Beyond the bound in all, each policy keeps its first and latest change,
    /// and a new policy still its first.
    #[test]
    fn the_log_keeps_the_first_and_latest_changes_beyond_its_bounds() {
        let mut log = PolicyLog::default();
        let flip = |i: usize| {
            policy(
                "p",
                if i.is_multiple_of(2) {
                    &["FR", "US"]
                } else {
                    &["FR"]
                },
            )
        };
        log.observe(&watcher::Event::Apply(policy("q", &["DE"])), at(0));
        for i in 0..100 {
            log.observe(&watcher::Event::Apply(flip(i)), at(1 + i as i64));
        }
        let (changes, skipped) = log.take();
        assert_eq!(changes.len(), 1 + MAX_PER_POLICY);
        assert_eq!(skipped, 100 - MAX_PER_POLICY as u64);
        let p: Vec<_> = changes.iter().filter(|c| c.name == "p").collect();
        let times: Vec<i64> = p.iter().map(|c| (c.at - at(0)).whole_seconds()).collect();
        let mut want: Vec<i64> = (1..MAX_PER_POLICY as i64).collect();
        want.push(100);
        assert_eq!(times, want, "the first ones and the latest");
        assert_eq!(
            p.last().unwrap().digest,
            Some(digest(&["FR"])),
            "its latest state"
        );
        assert_eq!(changes[0].name, "q");
        assert_eq!(log.take(), (vec![], 0), "the count starts again");

        // Beyond MAX_CHANGES in all: the first and latest of each, a new policy's first.
        let mut log = PolicyLog::default();
        let names: Vec<String> = (0..MAX_CHANGES / 2).map(|i| format!("p{i}")).collect();
        for round in 0..4 {
            for name in &names {
                let countries: &[&str] = if round % 2 == 0 { &["FR"] } else { &["DE"] };
                log.observe(&watcher::Event::Apply(policy(name, countries)), at(round));
            }
        }
        log.observe(&watcher::Event::Apply(policy("new", &["FR"])), at(9));
        let (changes, skipped) = log.take();
        assert_eq!(changes.len(), MAX_CHANGES + 1);
        assert_eq!(skipped, 2 * (MAX_CHANGES / 2) as u64);
        let p0: Vec<i64> = changes
            .iter()
            .filter(|c| c.name == "p0")
            .map(|c| (c.at - at(0)).whole_seconds())
            .collect();
        assert_eq!(p0, [0, 3]);
        assert_eq!(changes.last().unwrap().name, "new");
    }
}
