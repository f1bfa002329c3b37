//! Benchmark: full locality evaluations per second (node with labels and an address, under the
//! Diffusion Restreinte policy, on the vendored databases) against raw maxminddb lookups of the
//! same addresses in the same run, on one thread. Run with `cargo bench -p hexagone-platform`.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hexagone_platform::geo::{GeoDatabases, GeoPaths};
use hexagone_platform::{
    Attestation, AttestationSpec, Basis, LocalityPolicy, NodeDescription, evaluate,
};

/// Real addresses of French and foreign networks, IPv4 and IPv6, and a few private ones.
const ADDRESSES: &[&str] = &[
    "51.15.0.1",
    "163.172.0.1",
    "2001:bc8::1",
    "51.38.1.1",
    "54.36.0.9",
    "2001:41d0:8::1",
    "2.3.0.1",
    "90.0.0.1",
    "78.192.0.1",
    "2a01:e0a::1",
    "46.231.144.1",
    "45.15.212.1",
    "15.188.0.1",
    "35.180.0.1",
    "13.36.0.1",
    "34.155.0.1",
    "20.19.0.1",
    "8.8.8.8",
    "2001:4860:4860::8888",
    "5.9.0.1",
    "1.1.1.1",
    "3.2.99.1",
    "68.169.224.1",
    "10.1.2.3",
];

/// Runs `f` over the inputs repeatedly for about `budget`; returns operations per second.
fn rate<T>(inputs: &[T], budget: Duration, mut f: impl FnMut(&T)) -> f64 {
    // Warm up caches and branch predictors.
    for x in inputs {
        f(x);
    }
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            for x in inputs {
                f(x);
            }
        }
        ops += 100 * inputs.len() as u64;
    }
    ops as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("data/ip-location-db");
    let paths = GeoPaths::ip_location_db(&dir);
    let load = Instant::now();
    let geo = GeoDatabases::open(&paths).expect("vendored databases");
    let load = load.elapsed();
    let snapshot = geo.snapshot();
    let policy =
        LocalityPolicy::from_file(&root.join("../policies/france-diffusion-restreinte.yaml"))
            .expect("policy");

    let addresses: Vec<IpAddr> = ADDRESSES.iter().map(|a| a.parse().unwrap()).collect();
    let nodes: Vec<NodeDescription> = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            yaml_serde::from_str(&format!(
                "name: node-{i}
providerID: bench://node-{i}
labels:
  topology.kubernetes.io/region: fr-par
  topology.kubernetes.io/zone: fr-par-1
  node-restriction.kubernetes.io/hexagone-country: FR
  kubernetes.io/hostname: node-{i}
addresses: [{{type: InternalIP, address: 10.0.0.{i}}}, {{type: ExternalIP, address: '{a}'}}]
"
            ))
            .unwrap()
        })
        .collect();

    let raw_location = maxminddb::Reader::open_readfile(&paths.location[0]).unwrap();
    let raw_registration = maxminddb::Reader::open_readfile(&paths.registration[0]).unwrap();
    #[derive(serde::Deserialize)]
    struct Flat<'a> {
        #[serde(borrow)]
        country_code: Option<&'a str>,
    }
    let raw = |reader: &maxminddb::Reader<Vec<u8>>, a: IpAddr| -> Option<usize> {
        let found = reader.lookup(a).ok()?;
        found
            .decode::<Flat<'_>>()
            .ok()
            .flatten()
            .and_then(|f| f.country_code)
            .map(str::len)
    };

    // Every node attested in FR, so the evaluation does its full work (attestation included).
    let attestations: Vec<Attestation> = nodes
        .iter()
        .map(|n| {
            Attestation::new(
                format!("{}-attestation", n.name),
                AttestationSpec {
                    node_name: n.name.clone(),
                    provider_id: format!("bench://{}", n.name),
                    country: "FR".parse().unwrap(),
                    hosting_company: "Hoster SAS".into(),
                    site: "Site".into(),
                    zone: None,
                    basis: Basis::Contract,
                    reference: None,
                    attested_by: "bench".into(),
                    valid_until: "2099-01-01T00:00:00Z".into(),
                },
            )
        })
        .collect();
    let now = time::OffsetDateTime::now_utc();
    // One policy judges many nodes: its digest is computed once.
    let judge = hexagone_platform::Judge::new(&policy);
    let budget = Duration::from_secs(3);
    if std::env::var_os("LOCALITY_BENCH_ONLY_EVALUATION").is_some() {
        // For profiling the evaluation alone.
        let full = rate(&nodes, budget, |n| {
            black_box(judge.evaluate(black_box(n), &attestations, &snapshot, now));
        });
        println!("full evaluation: {full:.0} /s");
        return;
    }
    let raw_one = rate(&addresses, budget, |a| {
        black_box(raw(&raw_location, black_box(*a)));
    });
    let raw_two = rate(&addresses, budget, |a| {
        black_box(raw(&raw_location, black_box(*a)));
        black_box(raw(&raw_registration, black_box(*a)));
    });
    let engine_two = rate(&addresses, budget, |a| {
        black_box(snapshot.location.country(black_box(*a)).ok());
        black_box(snapshot.registration.country(black_box(*a)).ok());
    });
    let asn_csv = rate(&addresses, budget, |a| {
        black_box(snapshot.asn.lookup(black_box(*a)));
    });
    let full = rate(&nodes, budget, |n| {
        black_box(judge.evaluate(black_box(n), &attestations, &snapshot, now));
    });

    let compliant: Vec<NodeDescription> = nodes
        .iter()
        .filter(|n| {
            evaluate(&policy, n, &attestations, &snapshot, now)
                .verdict
                .is_compliant()
        })
        .cloned()
        .collect();
    let full_compliant = rate(&compliant, budget, |n| {
        black_box(judge.evaluate(black_box(n), &attestations, &snapshot, now));
    });
    println!(
        "note: every node is attested and judged with the evidence's provenance (policy and database digests)"
    );
    println!(
        "databases loaded (2 MMDB flattened, 2 CSV) in {:.2} s",
        load.as_secs_f64()
    );
    println!("addresses: {} (IPv4, IPv6, private)", addresses.len());
    println!("raw maxminddb lookup+decode, location db:          {raw_one:>12.0} /s");
    println!("raw maxminddb lookups, location + registration db: {raw_two:>12.0} /s");
    println!("engine lookups, same two databases (flattened):    {engine_two:>12.0} /s");
    println!("AS number lookup (engine range table, CSV):        {asn_csv:>12.0} /s");
    println!("full evaluation (4 sources, verdict):              {full:>12.0} /s");
    println!(
        "full evaluation, the {} compliant nodes only:      {full_compliant:>12.0} /s",
        compliant.len()
    );
    println!(
        "ratio full evaluation / raw single lookup: {:.3}; / raw two lookups: {:.3}",
        full / raw_one,
        full / raw_two
    );
    println!(
        "target 1,000,000 evaluations/s per core: {}",
        if full >= 1_000_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
