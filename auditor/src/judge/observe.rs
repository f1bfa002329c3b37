//! The judge: observes the place a report names with the platform's locality engine
//! (geolocation databases, attestations), judges it under the policy and builds the ledger
//! observation.

use std::sync::Arc;

use hexagone_platform::geo::{GeoDatabases, GeoError, GeoSnapshot};
use hexagone_platform::latency::{self, Measurement};
use hexagone_platform::{
    Attestation, Judge, LocalityPolicy, NodeDescription, SubjectKind, observe,
};
use time::OffsetDateTime;

use super::body::locality;
use super::cache::Evaluations;
use super::{Inventory, JudgeError};
use crate::ingest::{Location, Report, Submission};
use crate::ledger::entry::{Body, Judged, Observation, Timestamp, request_hash};

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
    /// Round trips measured from vantage points, weighed for the places whose addresses they
    /// measured (fixed for the judge's life, so kept evaluations stay right).
    latency: Vec<Measurement>,
    cache: std::sync::Mutex<Evaluations>,
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
            latency: Vec::new(),
            cache: std::sync::Mutex::new(Evaluations::default()),
        }
    }

    /// Weighs these round-trip measurements for the places whose addresses they measured.
    #[must_use]
    pub fn with_latency(mut self, measurements: Vec<Measurement>) -> Self {
        self.latency = measurements;
        self
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
        let image = match &report.location {
            Location::Registry { image, .. } => image.clone(),
            Location::Node(_) | Location::Endpoint(_) | Location::Server(_) => None,
        };
        let (subject, kind) = self.inventory.resolve(report.location)?;
        // The entry keeps milliseconds: judge at a time it can record exactly.
        let now = Timestamp::from_datetime(now).to_datetime().unwrap_or(now);
        let (observation, encoded) = Observation::new_judged(
            report.object,
            report.content,
            image,
            &*self.judged(subject, kind, geo, now)?,
            Timestamp::from_datetime(now),
            report.id.as_deref().map(request_hash),
        )?;
        Ok(Submission::encoded(
            report.id,
            Body::Observation(observation),
            encoded,
        ))
    }

    /// The engine's evaluation of `subject` at `now`, checked and encoded for the ledger, kept
    /// or made (and then kept).
    fn judged(
        &self,
        subject: NodeDescription,
        kind: SubjectKind,
        geo: &GeoSnapshot,
        now: OffsetDateTime,
    ) -> Result<Arc<Judged>, JudgeError> {
        let key = (subject, kind);
        let generation = self.generation();
        let kept = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key, generation, geo, now);
        if let Some(kept) = kept {
            return Ok(kept);
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
            let mut facts = observe(&key.0, kind, &held.1, geo, now);
            if !self.latency.is_empty() {
                facts.observations.extend(
                    key.0
                        .public_addresses()
                        .filter_map(|a| latency::observation(a, &self.latency)),
                );
            }
            let evaluation = self.judge.judge(facts);
            (held.0, evaluation, until)
        };
        let made = Arc::new(Judged::new(locality(&evaluation)?)?);
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keep(key, generation, geo, now, until, made.clone());
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

#[cfg(test)]
mod tests {
    use crate::judge::testing::{check, node};

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
            "[violation] address 5.9.0.1 is in DE, outside the allowed countries (FR) / network AS24940 (Hetzner Online GmbH) of address 5.9.0.1 is registered in DE, and this network is not on the policy's allow list of qualified operators, so it is refused whatever its registration",
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
}
