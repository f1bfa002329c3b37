//! `hexagone-auditor locate`: gathers the evidence about an address or a node, weighs it against
//! a locality policy and prints one sentence per evidence and the verdict.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hexagone_platform::geo::{GeoDatabases, GeoPaths};
use hexagone_platform::{LocalityPolicy, NodeDescription, SubjectKind, judge, observe};

/// Which geolocation databases to read (shared by `locate` and `append`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GeoArgs {
    /// Directory holding the ip-location-db layout; the other database options override its
    /// files. Default: the bundled data installed next to the binary
    /// (`<bin>/../share/hexagone/ip-location-db`), else the copy built into the binary.
    #[arg(long, value_name = "DIR", env = "HEXAGONE_GEO_DIR")]
    pub geo_dir: Option<PathBuf>,
    /// Where-is database: MaxMind GeoIP2/GeoLite2 Country or City, flat `country_code` MMDB, or
    /// range CSV. Repeat to look up several files in order.
    #[arg(long = "geo-db", value_name = "FILE")]
    pub geo_db: Vec<PathBuf>,
    /// Registration-country database (iptoasn-country, or GeoIP2 `registered_country`). Repeatable.
    #[arg(long = "registration-db", value_name = "FILE")]
    pub registration_db: Vec<PathBuf>,
    /// AS number database (GeoLite2-ASN MMDB or ip-location-db asn CSV). Repeatable.
    #[arg(long = "asn-db", value_name = "FILE")]
    pub asn_db: Vec<PathBuf>,
}

impl GeoArgs {
    /// The files to open: the directory's (or the vendored) layout, with the files named
    /// one by one in place of its own.
    pub fn paths(&self) -> anyhow::Result<GeoPaths> {
        let all_named =
            !(self.geo_db.is_empty() || self.registration_db.is_empty() || self.asn_db.is_empty());
        // Every file named one by one: no directory is looked for.
        let mut paths = if all_named && self.geo_dir.is_none() {
            GeoPaths::ip_location_db(Path::new(hexagone_platform::geo::BUILT_IN_GEO_DIR))
        } else {
            geo_paths(self.geo_dir.as_deref())?
        };
        for (given, slot) in [
            (&self.geo_db, &mut paths.location),
            (&self.registration_db, &mut paths.registration),
            (&self.asn_db, &mut paths.asn),
        ] {
            if !given.is_empty() {
                slot.clone_from(given);
            }
        }
        Ok(paths)
    }

    /// Whether these are the vendored databases (whose licences ask for attribution).
    pub fn vendored(&self) -> bool {
        self.geo_dir.is_none()
            && self.geo_db.is_empty()
            && self.registration_db.is_empty()
            && self.asn_db.is_empty()
    }
}

/// Arguments of `locate`.
#[derive(Debug, clap::Args)]
pub struct LocateArgs {
    /// An IP address to locate (a storage endpoint, a backup target...).
    #[arg(required_unless_present = "node", conflicts_with = "node")]
    pub address: Option<IpAddr>,
    /// A node to locate: YAML with `name`, `labels` and `addresses`, or a Kubernetes Node
    /// object as printed by `kubectl get node NAME -o yaml`.
    #[arg(long, value_name = "FILE")]
    pub node: Option<PathBuf>,
    /// NodeAttestations to weigh with the node, read as `append --attestations` reads them
    /// (one resource, several YAML documents, a list, or `kubectl get nodeattestations -o
    /// yaml`). Repeatable.
    #[arg(long = "attestation", value_name = "FILE")]
    pub attestations: Vec<PathBuf>,
    /// Storage endpoints outside the cluster (YAML list of `name`, `addresses` and an optional
    /// `attestation`, as for `append --inventory`): an address one of them holds is judged as
    /// that endpoint, with its attestation.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Round-trip measurements from vantage points (JSON Lines, as `measure` writes them):
    /// those of the subject's addresses become its latency evidence. Repeatable.
    #[arg(long = "latency", value_name = "FILE")]
    pub latency: Vec<PathBuf>,
    /// The locality policy (YAML), for example `policies/france-diffusion-restreinte.yaml`.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The geolocation databases.
    #[command(flatten)]
    pub geo: GeoArgs,
    /// Print the evaluation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `locate`: exit code 0 when compliant, 1 on violation or unknown (errors give 2 in `main`).
pub fn run(args: LocateArgs) -> anyhow::Result<u8> {
    let policy = LocalityPolicy::from_file(&args.policy)?;
    let inventory = match &args.inventory {
        Some(p) => crate::judge::Inventory::load(p)?,
        None => crate::judge::Inventory::default(),
    };
    let mut attestations = Vec::new();
    let node = match (&args.address, &args.node) {
        (Some(addr), None) => match inventory.endpoint_at(*addr) {
            Some((endpoint, attested)) => {
                attestations.extend_from_slice(attested);
                endpoint
            }
            None => NodeDescription::endpoint(*addr),
        },
        (None, Some(path)) => read_node(path)?,
        _ => bail!("give either an address or --node FILE"),
    };
    let paths = args.geo.paths()?;
    // Read as `append --attestations` reads them: one resource, several documents, a list, or
    // `kubectl get nodeattestations -o yaml`.
    for p in &args.attestations {
        attestations.extend(crate::judge::load_attestations(p)?);
    }
    let geo = GeoDatabases::open(&paths).context("opening the geolocation databases")?;
    // An address alone is an endpoint the caller names, not a node's claim about itself.
    let kind = if args.address.is_some() {
        SubjectKind::Endpoint
    } else {
        SubjectKind::Node
    };
    let mut facts = observe(
        &node,
        kind,
        &attestations,
        &geo.snapshot(),
        time::OffsetDateTime::now_utc(),
    );
    let measurements = crate::measure::load(&args.latency)?;
    let addresses: Vec<IpAddr> = match args.address {
        Some(a) => vec![a],
        None => node.public_addresses().collect(),
    };
    facts.observations.extend(
        addresses
            .into_iter()
            .filter_map(|a| hexagone_platform::latency::observation(a, &measurements)),
    );
    let evaluation = judge(&policy, facts);
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&evaluation)?)
    } else {
        let files = |files: &[PathBuf]| {
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{evaluation}verdict: {}{}\ndatabases: location {}; registration {}; AS numbers {}\n{}",
            evaluation.verdict.name(),
            if evaluation.admits() {
                ""
            } else {
                " (refused in enforce mode)"
            },
            files(&paths.location),
            files(&paths.registration),
            files(&paths.asn),
            if args.geo.vendored() {
                // The vendored data's licences ask for attribution where it is used.
                "IP data: ip-location-db (CC BY 4.0: NRO, RouteViews, DB-IP; PDDL 1.0: IPtoASN)\n"
            } else {
                ""
            }
        ) + if evaluation
            .evidence
            .iter()
            .any(|e| e.source == hexagone_platform::Source::Latency)
        {
            // ODbL asks for attribution where the boundary data is used.
            "Country boundaries: © OpenStreetMap contributors (ODbL), through country-boundaries\n"
        } else {
            ""
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A reader that stopped early (`| head`) is not an error of ours.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(e).context("writing the evaluation");
        }
        _ => {}
    }
    Ok(if evaluation.verdict.is_compliant() {
        0
    } else {
        1
    })
}

/// The database files of an ip-location-db directory (`dir`, or the bundled one).
fn geo_paths(dir: Option<&Path>) -> anyhow::Result<GeoPaths> {
    Ok(match dir {
        Some(dir) => GeoPaths::ip_location_db(dir),
        None => GeoPaths::ip_location_db(&hexagone_platform::geo::bundled_geo_dir(
            &std::env::current_exe()?,
        )),
    })
}

/// Reads a node description, or a Kubernetes Node object (through the platform's Node bridge,
/// which keeps unreadable addresses as evidence instead of dropping them).
fn read_node(path: &Path) -> anyhow::Result<NodeDescription> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read node file {}", path.display()))?;
    let value: yaml_serde::Value = yaml_serde::from_str(&text)
        .with_context(|| format!("node file {} is not YAML", path.display()))?;
    if value.get("kind").and_then(|k| k.as_str()) == Some("Node") {
        let node: k8s_openapi::api::core::v1::Node = yaml_serde::from_value(value)
            .with_context(|| format!("node file {} is not a valid Node", path.display()))?;
        return Ok(hexagone_platform::k8s::describe(&node));
    }
    yaml_serde::from_value(value)
        .with_context(|| format!("node file {} is not a node description", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");

    fn check(
        address: Option<&str>,
        node_yaml: Option<&str>,
        policy: &str,
        expected: Result<u8, &str>,
    ) {
        let node = node_yaml.map(|yaml| {
            let path = std::env::temp_dir().join(format!(
                "hexagone-locate-{}-{policy}.yaml",
                std::process::id()
            ));
            std::fs::write(&path, yaml).unwrap();
            path
        });
        let args = LocateArgs {
            latency: Vec::new(),
            address: address.map(|a| a.parse().unwrap()),
            node: node.clone(),
            attestations: vec![],
            inventory: None,
            policy: PathBuf::from(format!("{POLICIES}/{policy}.yaml")),
            geo: GeoArgs::default(),
            json: true,
        };
        let got = run(args).map_err(|e| format!("{e:#}"));
        if let Some(path) = node {
            std::fs::remove_file(path).unwrap();
        }
        assert_eq!(
            got.as_ref().map_err(String::as_str),
            expected.as_ref().map_err(|e| *e)
        );
    }

    #[test]
    fn exit_codes() {
        check(
            Some("15.188.0.1"),
            None,
            "france-diffusion-restreinte",
            Ok(1),
        );
        check(Some("5.9.0.1"), None, "eu-secnumcloud", Ok(1));
        check(
            None,
            Some(
                "kind: Node
metadata:
  name: scw-par-1
  labels: {topology.kubernetes.io/region: fr-par, node-restriction.kubernetes.io/hexagone-country: FR}
status:
  addresses: [{type: Hostname, address: scw-par-1}, {type: ExternalIP, address: 51.15.0.1}]
",
            ),
            // The attested label without an attestation behind it is a violation.
            "france-standard",
            Ok(1),
        );
        let plain = "kind: Node
metadata:
  name: scw-par-1
  labels: {topology.kubernetes.io/region: fr-par}
status:
  addresses: [{type: ExternalIP, address: 51.15.0.1}]
";
        check(None, Some(plain), "france-standard", Ok(0));
        // The case: French label and address, no attestation: refused for DR.
        check(
            None,
            Some(
                "kind: Node
metadata:
  name: scw-par-1
  labels: {topology.kubernetes.io/region: fr-par}
status:
  addresses: [{type: ExternalIP, address: 51.15.0.1}]
",
            ),
            "france-diffusion-restreinte",
            Ok(1),
        );
        check(
            Some("51.15.0.1"),
            None,
            "missing",
            Err(&format!(
                "cannot read policy {POLICIES}/missing.yaml: No such file or directory (os error 2)"
            )),
        );
    }

    /// A Kubernetes Node and a NodeAttestation file, as kubectl prints them: with the
    /// attestation the node complies with Diffusion Restreinte, without it not; a malformed
    /// attestation file is a usage error naming the file.
    #[test]
    fn attestation_files() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node.yaml");
        std::fs::write(
            &node,
            "kind: Node
metadata:
  name: gra-3
  labels: {topology.kubernetes.io/region: gra}
spec: {providerID: 'ovh://gra/3'}
status:
  addresses: [{type: ExternalIP, address: 51.38.1.1}]
",
        )
        .unwrap();
        let attestation = dir.path().join("gra-3.yaml");
        std::fs::write(
            &attestation,
            "apiVersion: hexagone.fr/v1alpha1
kind: NodeAttestation
metadata: {name: gra-3}
spec: {nodeName: gra-3, providerID: 'ovh://gra/3', country: FR, hostingCompany: OVH SAS,
       site: GRA3, basis: contract, attestedBy: rssi, validUntil: '2099-01-01T00:00:00Z'}
",
        )
        .unwrap();
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, "kind: NodeAttestation\nspec: {country: France}\n").unwrap();
        let locate = |attestations: Vec<PathBuf>| {
            run(LocateArgs {
                latency: Vec::new(),
                address: None,
                node: Some(node.clone()),
                attestations,
                inventory: None,
                policy: PathBuf::from(format!("{POLICIES}/france-diffusion-restreinte.yaml")),
                geo: GeoArgs::default(),
                json: true,
            })
            .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(locate(vec![attestation.clone()]), Ok(0));
        assert_eq!(locate(vec![]), Ok(1));
        let err = locate(vec![broken.clone()]).unwrap_err();
        assert!(
            err.starts_with(&format!("{}: attestation 1", broken.display())),
            "{err}"
        );
        // The multi-document file `append --attestations` accepts: the same here.
        let both = dir.path().join("both.yaml");
        std::fs::write(
            &both,
            format!(
                "{}---\n{}",
                std::fs::read_to_string(dir.path().join("gra-3.yaml")).unwrap(),
                std::fs::read_to_string(dir.path().join("gra-3.yaml"))
                    .unwrap()
                    .replace("gra-3", "gra-4")
            ),
        )
        .unwrap();
        assert_eq!(locate(vec![both]), Ok(0));
    }

    /// An address an inventory endpoint holds is judged as that endpoint, with the attestation
    /// the inventory gives: the attested French object store complies with Diffusion
    /// Restreinte; the same address without the inventory does not.
    #[test]
    fn an_inventory_endpoint_is_judged_with_its_attestation() {
        let dir = tempfile::tempdir().unwrap();
        let inventory = dir.path().join("inventory.yaml");
        std::fs::write(
            &inventory,
            "- name: minio-gra
  addresses: [51.38.1.1]
  region: gra
  attestation: {country: FR, hostingCompany: OVH SAS, site: Gravelines, basis: contract,
                attestedBy: rssi@ministere.example.fr, validUntil: '2099-01-01T00:00:00Z'}
",
        )
        .unwrap();
        let locate = |inventory: Option<PathBuf>| {
            run(LocateArgs {
                latency: Vec::new(),
                address: Some("51.38.1.1".parse().unwrap()),
                node: None,
                attestations: vec![],
                inventory,
                policy: PathBuf::from(format!("{POLICIES}/france-diffusion-restreinte.yaml")),
                geo: GeoArgs::default(),
                json: true,
            })
            .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(locate(Some(inventory)), Ok(0));
        assert_eq!(locate(None), Ok(1));
    }
}
