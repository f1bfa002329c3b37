//! The evaluations the judge keeps: a place's evaluation by the engine, reused for the next
//! object reported there while nothing it rests on can have changed.

use std::collections::HashMap;
use std::sync::Arc;

use hexagone_platform::geo::GeoSnapshot;
use hexagone_platform::{NodeDescription, SubjectKind};
use time::OffsetDateTime;

use crate::ledger::entry::Judged;

/// A place as the engine evaluates it: its description, and whether it is a node or an
/// endpoint.
pub(super) type Place = (NodeDescription, SubjectKind);

/// The evaluations of places kept by [`ObservationJudge`](super::ObservationJudge).
#[derive(Default)]
pub(super) struct Evaluations {
    /// The attestations' generation the evaluations were made with.
    generation: u64,
    /// The database contents they were read from.
    geo: Option<GeoSnapshot>,
    places: HashMap<Place, Kept>,
    /// What the kept evaluations take ([`Judged::bytes`]).
    bytes: usize,
}

/// One kept evaluation: valid at times in `from..until` (no end when `until` is `None`).
struct Kept {
    from: OffsetDateTime,
    until: Option<OffsetDateTime>,
    judged: Arc<Judged>,
}

/// How many places are kept at most; past that the cache starts again empty.
const KEPT_PLACES: usize = 4096;

/// How many bytes of kept evaluations at most ([`Judged::bytes`]); past that the cache starts
/// again empty. A writer reporting places of its own making (without `serve --kubernetes`)
/// decides how large their evaluations are (up to the size of an entry): the places alone do
/// not bound the memory.
const KEPT_BYTES: usize = 64 << 20;

impl Evaluations {
    /// The evaluation kept for `place`, if it holds at `now` and was made with the
    /// attestations' `generation` and the database contents of `geo`.
    pub(super) fn get(
        &self,
        place: &Place,
        generation: u64,
        geo: &GeoSnapshot,
        now: OffsetDateTime,
    ) -> Option<Arc<Judged>> {
        self.places
            .get(place)
            .filter(|k| k.from <= now && k.until.is_none_or(|u| now < u))
            .filter(|_| self.geo.as_ref().is_some_and(|g| g.same_contents(geo)))
            .filter(|_| self.generation == generation)
            .map(|k| k.judged.clone())
    }

    /// Keeps `judged`, made at `from` with the attestations' `generation` and the database
    /// contents of `geo`, for `place` until `until`; nothing when `generation` is older than
    /// the cache's.
    pub(super) fn keep(
        &mut self,
        place: Place,
        generation: u64,
        geo: &GeoSnapshot,
        from: OffsetDateTime,
        until: Option<OffsetDateTime>,
        judged: Arc<Judged>,
    ) {
        if self.align(generation, geo) {
            let bytes = judged.bytes();
            if self.places.len() >= KEPT_PLACES || self.bytes + bytes > KEPT_BYTES {
                self.places.clear();
                self.bytes = 0;
            }
            self.bytes += bytes;
            let replaced = self.places.insert(
                place,
                Kept {
                    from,
                    until,
                    judged,
                },
            );
            if let Some(old) = replaced {
                self.bytes -= old.judged.bytes();
            }
        }
    }

    /// Empties the cache when the attestations or the databases are not those of its
    /// evaluations; false when `generation` is older than the cache's (nothing is kept).
    fn align(&mut self, generation: u64, geo: &GeoSnapshot) -> bool {
        if generation < self.generation {
            return false;
        }
        let same_geo = self.geo.as_ref().is_some_and(|g| g.same_contents(geo));
        if generation != self.generation || !same_geo {
            self.places.clear();
            self.bytes = 0;
            self.generation = generation;
            self.geo = Some(geo.clone());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use hexagone_platform::Attestation;
    use time::OffsetDateTime;

    use crate::judge::testing::{geo, node, now, policy};
    use crate::judge::{Inventory, ObservationJudge, load_attestations};
    use crate::ledger::entry::{Body, Observation, Timestamp};

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

    /// The memory kept is bounded in bytes as well as in places: evaluations as large as an
    /// entry allows, for as many places as the cache keeps, would take hundreds of megabytes;
    /// the cache starts again empty before it holds more than its budget, and what it counts
    /// is what it holds.
    #[test]
    fn kept_evaluations_are_bounded_in_bytes() {
        use crate::ledger::entry::{DatabaseId, Judged, fixture};
        use std::sync::Arc;

        let Body::Observation(o) = fixture::observation(0) else {
            unreachable!()
        };
        let mut large = o.locality.clone();
        let text = "d".repeat(900);
        large.databases = (0..16)
            .map(|_| DatabaseId {
                role: text.clone(),
                file: text.clone(),
                format: text.clone(),
                built: None,
                sha256: [1; 32],
            })
            .collect();
        let judged = Arc::new(Judged::new(large).unwrap());
        let each = judged.bytes();
        assert!(each > 80_000, "{each}");
        assert!(
            super::KEPT_PLACES * each > 4 * super::KEPT_BYTES,
            "the places alone would not bound it"
        );
        let geo = geo().snapshot();
        let mut kept = super::Evaluations::default();
        let mut most = 0;
        for i in 0..super::KEPT_PLACES {
            let place = (
                hexagone_platform::NodeDescription {
                    name: format!("node-{i}"),
                    ..Default::default()
                },
                hexagone_platform::SubjectKind::Node,
            );
            kept.keep(place, 0, &geo, now(), None, judged.clone());
            assert!(kept.bytes <= super::KEPT_BYTES, "{} after {i}", kept.bytes);
            assert_eq!(kept.bytes, kept.places.len() * each);
            most = most.max(kept.places.len());
        }
        assert_eq!(most, super::KEPT_BYTES / each);
        // The same place kept again counts once.
        let n = kept.places.len();
        let place = (
            hexagone_platform::NodeDescription {
                name: format!("node-{}", super::KEPT_PLACES - 1),
                ..Default::default()
            },
            hexagone_platform::SubjectKind::Node,
        );
        kept.keep(place, 0, &geo, now(), None, judged.clone());
        assert_eq!((kept.places.len(), kept.bytes), (n, n * each));
    }
}
