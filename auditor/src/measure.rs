//! `hexagone-auditor measure`: run at a vantage point, times TCP handshakes to nodes' addresses
//! and writes one measurement per address (JSON Lines) for `locate --latency`.
//!
//! A handshake completes only when the SYN-ACK carries the acknowledgement of this connection's
//! own random initial sequence number, so an answer from another address, or a forged one from
//! a host that does not see the SYN, is not a completed handshake and never shortens a round
//! trip. The round trip of a connection is the time `connect` takes; only completed handshakes
//! count, and the quickest of them bounds the distance.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hexagone_platform::LocalityPolicy;
use hexagone_platform::latency::{Measurement, RoundTrips};

/// Arguments of `measure`.
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// Addresses and ports to measure (`51.38.1.1:10250`, `[2001:db8::1]:10250`): a port the
    /// node must answer on, such as its kubelet's.
    #[arg(required = true, value_name = "ADDRESS:PORT")]
    pub targets: Vec<SocketAddr>,
    /// This vantage point's name, as the policy declares it.
    #[arg(long, value_name = "NAME")]
    pub vantage: String,
    /// The policy declaring the vantage: its coordinates are taken from there.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "at",
        conflicts_with = "at"
    )]
    pub policy: Option<PathBuf>,
    /// The vantage's coordinates, `LATITUDE,LONGITUDE` in degrees, when no policy declares it
    /// (the measurement then counts for nothing under a policy that does not).
    #[arg(long, value_name = "LAT,LON", value_parser = parse_coordinates)]
    pub at: Option<(f64, f64)>,
    /// Handshakes per address (the quickest counts).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub samples: u32,
    /// Milliseconds before one handshake is given up.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout_ms: u64,
    /// Milliseconds between two handshakes to the same address.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub interval_ms: u64,
    /// Write the measurements here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write `LatencyMeasurement` resources (YAML, for `kubectl apply -f -` under the
    /// `hexagone-vantage` role) instead of JSON Lines: the operator's qualifier reads them.
    #[arg(long)]
    pub resources: bool,
}

/// The `LatencyMeasurement` resource of a measurement: named after the vantage, the address and
/// the port, so a new measurement replaces the last one.
fn resource(m: &Measurement) -> anyhow::Result<String> {
    let address: String = m
        .address
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = format!("{}-{}-{}", m.round_trips.vantage, address, m.port).to_ascii_lowercase();
    let doc = serde_json::json!({
        "apiVersion": "hexagone.fr/v1alpha1",
        "kind": "LatencyMeasurement",
        "metadata": {"name": name},
        "spec": m,
    });
    Ok(format!("---\n{}", yaml_serde::to_string(&doc)?))
}

fn parse_coordinates(s: &str) -> Result<(f64, f64), String> {
    let (lat, lon) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected LATITUDE,LONGITUDE in degrees"))?;
    let lat: f64 = lat
        .trim()
        .parse()
        .map_err(|_| format!("{lat:?} is not a latitude"))?;
    let lon: f64 = lon
        .trim()
        .parse()
        .map_err(|_| format!("{lon:?} is not a longitude"))?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(format!(
            "{s}: expected a latitude from -90 to 90 and a longitude from -180 to 180"
        ));
    }
    Ok((lat, lon))
}

/// Times `samples` TCP handshakes to `target`: the round trips of those that completed, in
/// microseconds, and the errors of those that did not.
pub fn handshakes(
    target: SocketAddr,
    samples: u32,
    timeout: Duration,
    interval: Duration,
) -> (Vec<u32>, Vec<std::io::Error>) {
    let mut rtts = Vec::with_capacity(samples as usize);
    let mut errors = Vec::new();
    for i in 0..samples {
        if i > 0 {
            std::thread::sleep(interval);
        }
        let start = Instant::now();
        match TcpStream::connect_timeout(&target, timeout) {
            Ok(stream) => {
                let us = start.elapsed().as_micros();
                rtts.push(u32::try_from(us).unwrap_or(u32::MAX));
                drop(stream);
            }
            Err(e) => errors.push(e),
        }
    }
    (rtts, errors)
}

/// Runs `measure`: exit 0 when every address answered, 1 when one did not (its line is left
/// out and the reason printed).
pub fn run(args: MeasureArgs) -> anyhow::Result<u8> {
    let (latitude, longitude) = match (&args.policy, args.at) {
        (Some(path), _) => {
            let policy = LocalityPolicy::from_file(path)?;
            let v = policy
                .vantage_points
                .iter()
                .find(|v| v.name == args.vantage)
                .with_context(|| {
                    format!(
                        "vantage {} is not declared in {} (declared: {})",
                        args.vantage,
                        path.display(),
                        policy
                            .vantage_points
                            .iter()
                            .map(|v| v.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            (v.latitude, v.longitude)
        }
        (None, Some(at)) => at,
        (None, None) => bail!("give --policy FILE or --at LAT,LON"),
    };
    let mut lines = String::new();
    let mut failed = 0u32;
    for target in &args.targets {
        let (rtts, errors) = handshakes(
            *target,
            args.samples,
            Duration::from_millis(args.timeout_ms),
            Duration::from_millis(args.interval_ms),
        );
        let Some(round_trips) = RoundTrips::new(&args.vantage, latitude, longitude, rtts) else {
            failed += 1;
            eprintln!(
                "hexagone-auditor: {target}: no handshake completed in {} tries ({})",
                args.samples,
                errors
                    .first()
                    .map_or_else(|| "no error".to_owned(), ToString::to_string)
            );
            continue;
        };
        if !errors.is_empty() {
            eprintln!(
                "hexagone-auditor: {target}: {} of {} handshakes did not complete ({})",
                errors.len(),
                args.samples,
                errors[0]
            );
        }
        let m = Measurement {
            address: target.ip(),
            port: target.port(),
            measured_at: crate::ledger::entry::Timestamp::now().to_string(),
            round_trips,
        };
        if args.resources {
            lines.push_str(&resource(&m)?);
        } else {
            lines.push_str(&serde_json::to_string(&m)?);
            lines.push('\n');
        }
    }
    match &args.out {
        Some(path) => {
            let tmp = path.with_extension("tmp");
            crate::durable::replace(path, &tmp, lines.as_bytes()).map_err(|(step, e)| {
                anyhow::anyhow!("{step} file beside {}: {e}", path.display())
            })?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(lines.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(u8::from(failed > 0))
}

/// Reads measurement files (JSON Lines, as `measure` writes them).
pub fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<Measurement>> {
    let mut all = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read measurements {}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            all.push(serde_json::from_str(line).with_context(|| {
                format!(
                    "{}:{}: not a measurement as `hexagone-auditor measure` writes it",
                    path.display(),
                    i + 1
                )
            })?);
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(targets: Vec<SocketAddr>, out: PathBuf, resources: bool) -> MeasureArgs {
        MeasureArgs {
            targets,
            vantage: "paris-1".into(),
            policy: None,
            at: Some((48.8566, 2.3522)),
            samples: 5,
            timeout_ms: 1000,
            interval_ms: 0,
            out: Some(out),
            resources,
        }
    }

    /// Every completed handshake is a sample; the output is one resource per address that
    /// `kubectl apply` takes and the qualifier reads, named after vantage, address and port.
    #[test]
    fn measurements_become_resources_the_qualifier_reads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.yaml");
        assert_eq!(run(args(vec![target], out.clone(), true)).unwrap(), 0);
        let text = std::fs::read_to_string(&out).unwrap();
        let docs: Vec<hexagone_platform::k8s::LatencyMeasurement> =
            yaml_serde::Deserializer::from_str(&text)
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .collect();
        assert_eq!(docs.len(), 1, "{text}");
        let m = &docs[0];
        assert_eq!(
            m.metadata.name.as_deref(),
            Some(format!("paris-1-127-0-0-1-{}", target.port()).as_str())
        );
        assert_eq!(m.spec.round_trips.rtt_us.len(), 5);
        assert!(m.spec.round_trips.inconsistency().is_none());
        assert_eq!(m.spec.round_trips.latitude_microdeg, 48_856_600);
    }

    /// An address that answers no handshake gets no line and exit 1; the others are written.
    #[test]
    fn an_address_that_never_answers_is_left_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let good = listener.local_addr().unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.jsonl");
        assert_eq!(
            run(args(vec![closed, good], out.clone(), false)).unwrap(),
            1
        );
        let lines = load(&[out]).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].port, good.port());
    }
}
