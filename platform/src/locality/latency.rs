//! Round-trip-time evidence: a physical bound on where a node can be.
//!
//! No signal travels faster than light, so an answer that comes back from a node `t` after the
//! question left a vantage point proves the node lies within `c·t/2` of that vantage, whatever
//! the node or its hosting company declares (constraint-based geolocation: Gueye et al., 2006;
//! Gondree and Peterson, 2013, for cloud storage). A node can add delay to look farther away,
//! never remove it to look closer; a larger round trip only makes the disk larger, so it can
//! make the evidence inconclusive, never place the node somewhere it is not.
//!
//! The bound uses the speed of light in vacuum (149.9 km of distance per millisecond of round
//! trip), not in fibre (about 100 km per ms): a node behind a microwave or hollow-core link can
//! beat fibre, nothing beats `c`. The disk (or, with several vantages, the intersection of
//! their disks) supports a location only when every point of it that the boundary data puts in
//! a country is in an allowed country; points in no country (sea) are not counted. Country
//! boundaries are OpenStreetMap's (the `country-boundaries` crate's data, ODbL, © OpenStreetMap
//! contributors), identified by the SHA-256 every latency fact records.

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

use country_boundaries::{BOUNDARIES_ODBL_360X180, CountryBoundaries, LatLon};
use serde::{Deserialize, Serialize};

use crate::country::{Country, CountrySet};
use crate::evidence::Observation;

/// Kilometres of distance per microsecond of round trip at the speed of light in vacuum
/// (299,792.458 km/s, there and back).
pub const KM_PER_RTT_MICROSECOND: f64 = 299_792.458 / 1_000_000.0 / 2.0;

/// Mean Earth radius (IUGG), for great-circle distances.
pub const EARTH_RADIUS_KM: f64 = 6_371.008_8;

/// At most this many grid steps across the searched area in each direction.
const GRID_STEPS: f64 = 400.0;
/// No finer than this spacing, in kilometres (the boundary data is not more precise).
const MIN_SPACING_KM: f64 = 0.25;

/// The boundary data every latency fact is judged against, loaded once.
fn boundaries() -> &'static CountryBoundaries {
    static DATA: OnceLock<CountryBoundaries> = OnceLock::new();
    DATA.get_or_init(|| {
        CountryBoundaries::from_reader(BOUNDARIES_ODBL_360X180)
            .expect("the boundary data built into the crate reads")
    })
}

/// SHA-256 of the boundary data built into this binary (`sha256:…`), as latency facts record it.
pub fn boundaries_digest() -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| crate::digest::sha256_tag(BOUNDARIES_ODBL_360X180))
}

/// The farthest a node can be, in whole kilometres rounded up, from a vantage whose quickest
/// round trip to it took `min_rtt_us` microseconds.
pub fn bound_km(min_rtt_us: u32) -> u32 {
    (f64::from(min_rtt_us) * KM_PER_RTT_MICROSECOND).ceil() as u32
}

/// Great-circle distance between two points given in degrees, in kilometres (haversine).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Degrees to whole microdegrees, as facts record coordinates (ledger facts hold integers only).
pub fn microdegrees(degrees: f64) -> i32 {
    (degrees * 1_000_000.0).round() as i32
}

/// A disk on the Earth: every point within `radius_km` of a centre given in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disk {
    /// Latitude of the centre, degrees.
    pub latitude: f64,
    /// Longitude of the centre, degrees.
    pub longitude: f64,
    /// Radius, kilometres.
    pub radius_km: f64,
}

impl Disk {
    fn contains(&self, p: (f64, f64)) -> bool {
        distance_km((self.latitude, self.longitude), p) <= self.radius_km
    }
}

/// What the boundary data says about the points common to some disks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Region {
    /// Countries (ISO 3166-1 alpha-2 ids of the boundary data) holding some of its points.
    pub countries: Vec<String>,
    /// Grid points examined that lie in every disk.
    pub points: usize,
    /// The grid spacing used, in metres.
    pub spacing_m: u32,
}

/// The countries in which some point common to every disk lies, searched on a grid over the
/// smallest disk (at most 400 steps across, no finer than 250 m) and along its edge. An empty
/// `points` means the disks do not meet. A country smaller than the grid spacing could be
/// missed; the spacing is recorded so a reader knows the resolution.
pub fn region(disks: &[Disk]) -> Region {
    let Some(smallest) = disks
        .iter()
        .min_by(|a, b| a.radius_km.total_cmp(&b.radius_km))
    else {
        return Region::default();
    };
    let data = boundaries();
    let r = smallest.radius_km.max(0.001);
    let spacing = (2.0 * r / GRID_STEPS).max(MIN_SPACING_KM);
    let km_per_degree = EARTH_RADIUS_KM.to_radians();
    let lat_step = spacing / km_per_degree;
    let lat_half = r / km_per_degree;
    let mut countries = std::collections::BTreeSet::new();
    let mut points = 0usize;
    let mut visit = |lat: f64, lon: f64| {
        if !(-90.0..=90.0).contains(&lat) || !disks.iter().all(|d| d.contains((lat, lon))) {
            return;
        }
        points += 1;
        let lon = (lon + 540.0).rem_euclid(360.0) - 180.0;
        if let Ok(p) = LatLon::new(lat, lon) {
            for id in data.ids(p) {
                if id.len() == 2 {
                    countries.insert(id.to_owned());
                }
            }
        }
    };
    let rows = (2.0 * lat_half / lat_step).ceil() as i64;
    for i in 0..=rows {
        let lat = smallest.latitude - lat_half + i as f64 * lat_step;
        let cos = lat.to_radians().cos().max(1e-6);
        let lon_half = (r / (km_per_degree * cos)).min(180.0);
        let lon_step = spacing / (km_per_degree * cos);
        let cols = (2.0 * lon_half / lon_step).ceil().min(4.0 * GRID_STEPS) as i64;
        let lon_step = if cols > 0 {
            2.0 * lon_half / cols as f64
        } else {
            lon_step
        };
        for j in 0..=cols {
            visit(lat, smallest.longitude - lon_half + j as f64 * lon_step);
        }
    }
    // The edge, where a thin strip of a neighbour would fall between grid rows.
    let edge = (2.0 * std::f64::consts::PI * r / spacing)
        .ceil()
        .clamp(64.0, 20_000.0) as usize;
    for k in 0..edge {
        let bearing = k as f64 / edge as f64 * std::f64::consts::TAU;
        let (lat, lon) = destination((smallest.latitude, smallest.longitude), bearing, r * 0.999);
        visit(lat, lon);
    }
    Region {
        countries: countries.into_iter().collect(),
        points,
        spacing_m: (spacing * 1000.0).round() as u32,
    }
}

/// The point `distance_km` from `from` along the initial `bearing` (radians), in degrees.
fn destination(from: (f64, f64), bearing: f64, distance_km: f64) -> (f64, f64) {
    let (la1, lo1) = (from.0.to_radians(), from.1.to_radians());
    let d = distance_km / EARTH_RADIUS_KM;
    let la2 = (la1.sin() * d.cos() + la1.cos() * d.sin() * bearing.cos()).asin();
    let lo2 = lo1 + (bearing.sin() * d.sin() * la1.cos()).atan2(d.cos() - la1.sin() * la2.sin());
    (la2.to_degrees(), lo2.to_degrees())
}

/// The round trips from one vantage point to an address, as recorded in a latency fact.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoundTrips {
    /// The vantage point's name, as the policy declares it.
    pub vantage: String,
    /// Its latitude as the measurement states it, in microdegrees.
    pub latitude_microdeg: i32,
    /// Its longitude as the measurement states it, in microdegrees.
    pub longitude_microdeg: i32,
    /// Every completed TCP handshake's round trip, in microseconds, in the order measured.
    pub rtt_us: Vec<u32>,
    /// The quickest of them.
    pub min_rtt_us: u32,
    /// The farthest the address can be from the vantage, kilometres ([`bound_km`]).
    pub bound_km: u32,
}

impl RoundTrips {
    /// The round trips `rtt_us` measured from `vantage` at these coordinates (degrees), with their
    /// minimum and bound; `None` if there is no sample.
    pub fn new(vantage: &str, latitude: f64, longitude: f64, rtt_us: Vec<u32>) -> Option<Self> {
        let min = *rtt_us.iter().min()?;
        Some(RoundTrips {
            vantage: vantage.to_owned(),
            latitude_microdeg: microdegrees(latitude),
            longitude_microdeg: microdegrees(longitude),
            rtt_us,
            min_rtt_us: min,
            bound_km: bound_km(min),
        })
    }

    /// Why the recorded minimum or bound does not follow from the samples, if it does not.
    pub fn inconsistency(&self) -> Option<String> {
        match self.rtt_us.iter().min() {
            None => Some(format!(
                "the measurement from {} holds no sample",
                self.vantage
            )),
            Some(m) if *m != self.min_rtt_us => Some(format!(
                "the measurement from {} records a minimum of {} µs, its samples {} µs",
                self.vantage, self.min_rtt_us, m
            )),
            Some(_) if bound_km(self.min_rtt_us) != self.bound_km => Some(format!(
                "the measurement from {} records a bound of {} km, its minimum gives {} km",
                self.vantage,
                self.bound_km,
                bound_km(self.min_rtt_us)
            )),
            Some(_) => None,
        }
    }

    /// The disk this measurement bounds the address to.
    pub fn disk(&self) -> Disk {
        Disk {
            latitude: f64::from(self.latitude_microdeg) / 1e6,
            longitude: f64::from(self.longitude_microdeg) / 1e6,
            radius_km: f64::from(self.bound_km),
        }
    }
}

impl fmt::Display for RoundTrips {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:03} ms at best from vantage {} ({} handshake{}), so within {} km of it",
            self.min_rtt_us / 1000,
            self.min_rtt_us % 1000,
            self.vantage,
            self.rtt_us.len(),
            if self.rtt_us.len() == 1 { "" } else { "s" },
            self.bound_km
        )
    }
}

/// How a latency fact weighs against the allowed countries, given which measurements count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// Every point the counted disks share lies in an allowed country; the countries it touches.
    Inside(Vec<Country>),
    /// It proves nothing, for this reason (a sentence).
    Inconclusive(String),
}

/// Judges measured round trips: `counted` are those from declared vantages at their declared
/// sites (the caller decides which; the others are named in `excluded`).
pub fn judge(counted: &[&RoundTrips], allowed: &CountrySet, recorded_digest: &str) -> Bound {
    if recorded_digest != boundaries_digest() {
        return Bound::Inconclusive(format!(
            "it was measured against boundary data {recorded_digest}, and this build has {}",
            boundaries_digest()
        ));
    }
    if counted.is_empty() {
        return Bound::Inconclusive("no measurement from a declared vantage point counts".into());
    }
    let disks: Vec<Disk> = counted.iter().map(|m| m.disk()).collect();
    let region = region(&disks);
    if region.points == 0 {
        return Bound::Inconclusive(
            "the vantages' disks do not meet, so a vantage's site or a measurement is wrong".into(),
        );
    }
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    for id in &region.countries {
        match Country::parse(id) {
            Ok(c) if allowed.contains(c) => inside.push(c),
            _ => outside.push(id.as_str()),
        }
    }
    if !outside.is_empty() {
        let shown: Vec<&str> = outside.iter().take(8).copied().collect();
        let more = outside.len().saturating_sub(shown.len());
        return Bound::Inconclusive(format!(
            "that area reaches outside the allowed countries ({}{})",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if inside.is_empty() {
        return Bound::Inconclusive("that area holds no land the boundary data knows".into());
    }
    Bound::Inside(inside)
}

/// One vantage's measurement of one address, as `hexagone-auditor measure` writes it (one JSON
/// object per line) and `locate --latency` reads it; in a cluster, the spec of a
/// `LatencyMeasurement`, which only the vantage's measuring component (and security officers)
/// may write (`manifests/rbac/`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "k8s",
    derive(kube::CustomResource),
    kube(
        group = "hexagone.fr",
        version = "v1alpha1",
        kind = "LatencyMeasurement",
        shortname = "lat",
        category = "hexagone",
        doc = "Round trips of TCP handshakes from a vantage point to one node address: a physical bound on where the node is.",
        printcolumn = r#"{"name":"Address","type":"string","jsonPath":".spec.address"}"#,
        printcolumn = r#"{"name":"Vantage","type":"string","jsonPath":".spec.roundTrips.vantage"}"#,
        printcolumn = r#"{"name":"Min µs","type":"integer","jsonPath":".spec.roundTrips.minRttUs"}"#,
        printcolumn = r#"{"name":"Within km","type":"integer","jsonPath":".spec.roundTrips.boundKm"}"#,
        printcolumn = r#"{"name":"Measured","type":"string","jsonPath":".spec.measuredAt"}"#
    )
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Measurement {
    /// The address measured.
    pub address: IpAddr,
    /// The TCP port that answered.
    pub port: u16,
    /// When the measurement ended (RFC 3339).
    pub measured_at: String,
    /// The round trips, from which vantage and where it says it is.
    pub round_trips: RoundTrips,
}

/// The latency fact about `address` from these measurements (those of other addresses are left
/// out; the port is the first measurement's, and measurements on another port are left out), or
/// `None` when none measured it.
pub fn observation(address: IpAddr, measurements: &[Measurement]) -> Option<Observation> {
    let address = crate::address::canonical(address);
    let mine: Vec<&Measurement> = measurements
        .iter()
        .filter(|m| crate::address::canonical(m.address) == address)
        .collect();
    let port = mine.first()?.port;
    Some(Observation::Latency {
        address,
        port,
        measurements: mine
            .into_iter()
            .filter(|m| m.port == port)
            .map(|m| m.round_trips.clone())
            .collect(),
        boundaries: boundaries_digest().to_owned(),
    })
}

/// A latency fact's address and port, for sentences.
pub fn target(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARIS: (f64, f64) = (48.8566, 2.3522);
    const LYON: (f64, f64) = (45.7640, 4.8357);
    const FRANKFURT: (f64, f64) = (50.1109, 8.6821);

    /// Great-circle distances against published figures: Paris–Lyon about 392 km,
    /// Paris–Frankfurt about 479 km.
    #[test]
    fn distances_between_known_cities() {
        let pl = distance_km(PARIS, LYON);
        let pf = distance_km(PARIS, FRANKFURT);
        assert!((pl - 392.0).abs() < 3.0, "{pl}");
        assert!((pf - 479.0).abs() < 3.0, "{pf}");
        assert!(distance_km(PARIS, PARIS) < 1e-9);
    }

    /// 1 ms of round trip is 149.9 km at most; a round trip of 0.4 ms bounds a node to 60 km.
    #[test]
    fn the_bound_follows_the_speed_of_light() {
        assert_eq!(bound_km(1000), 150);
        assert_eq!(bound_km(400), 60);
        assert_eq!(bound_km(0), 0);
        // Lyon, 392 km from Paris, cannot answer a Paris vantage in 2.6 ms; in 2.7 ms it can.
        assert!(f64::from(bound_km(2_600)) < distance_km(PARIS, LYON));
        assert!(f64::from(bound_km(2_700)) > distance_km(PARIS, LYON));
    }

    #[test]
    fn a_disk_around_paris_is_in_france_and_a_wide_one_is_not() {
        let near = region(&[Disk {
            latitude: PARIS.0,
            longitude: PARIS.1,
            radius_km: 60.0,
        }]);
        assert_eq!(near.countries, ["FR"], "{near:?}");
        assert!(near.points > 1000, "{near:?}");
        let wide = region(&[Disk {
            latitude: PARIS.0,
            longitude: PARIS.1,
            radius_km: 4_500.0,
        }]);
        for c in ["FR", "DE", "GB", "ES", "IT"] {
            assert!(wide.countries.iter().any(|x| x == c), "{c}: {wide:?}");
        }
    }

    /// Two vantages narrow the area to where their disks meet: 300 km from Paris reaches
    /// Belgium, within 60 km of Orléans as well is only France, and disks that do not meet give
    /// no point.
    #[test]
    fn several_vantages_intersect() {
        let paris = Disk {
            latitude: PARIS.0,
            longitude: PARIS.1,
            radius_km: 300.0,
        };
        let alone = region(&[paris]);
        assert!(alone.countries.iter().any(|c| c == "BE"), "{alone:?}");
        let orleans = Disk {
            latitude: 47.9030,
            longitude: 1.9093,
            radius_km: 60.0,
        };
        let both = region(&[paris, orleans]);
        assert_eq!(both.countries, ["FR"], "{both:?}");
        let frankfurt = Disk {
            latitude: FRANKFURT.0,
            longitude: FRANKFURT.1,
            radius_km: 50.0,
        };
        assert_eq!(region(&[orleans, frankfurt]).points, 0);
    }

    /// Monaco (about 2 km²) inside a disk around Nice is found: the grid is fine enough.
    #[test]
    fn a_small_neighbour_inside_the_disk_is_found() {
        let nice = region(&[Disk {
            latitude: 43.7102,
            longitude: 7.2620,
            radius_km: 25.0,
        }]);
        assert!(nice.countries.iter().any(|c| c == "MC"), "{nice:?}");
    }

    #[test]
    fn recorded_figures_must_follow_from_the_samples() {
        let m = RoundTrips::new("paris-1", PARIS.0, PARIS.1, vec![420, 400, 455]).unwrap();
        assert_eq!((m.min_rtt_us, m.bound_km), (400, 60));
        assert!(m.inconsistency().is_none());
        let mut forged = m.clone();
        forged.min_rtt_us = 100;
        assert!(
            forged
                .inconsistency()
                .unwrap()
                .contains("records a minimum of 100 µs")
        );
        let mut forged = m.clone();
        forged.bound_km = 10;
        assert!(forged.inconsistency().unwrap().contains("bound of 10 km"));
        assert_eq!(
            m.to_string(),
            "0.400 ms at best from vantage paris-1 (3 handshakes), so within 60 km of it"
        );
    }
}
