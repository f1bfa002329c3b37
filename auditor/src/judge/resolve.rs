//! Which place a report names: a node as the cluster reports it, or a storage endpoint from
//! the auditor's inventory (by name or address) or at the address given.

use std::net::IpAddr;
use std::path::Path;

use hexagone_platform::{
    Attestation, AttestationSpec, Basis, Country, NodeDescription, SubjectKind,
};
use serde::Deserialize;

use super::attestations::pseudonymised;
use super::{JudgeError, parse, read};
use crate::ingest::Location;

/// What a security officer attests about an endpoint of the inventory.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndpointAttestation {
    country: Country,
    hosting_company: String,
    site: String,
    basis: Basis,
    #[serde(default)]
    reference: Option<String>,
    attested_by: String,
    valid_until: String,
}

/// One storage endpoint outside the cluster, as declared in the inventory.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndpointItem {
    name: String,
    addresses: Vec<IpAddr>,
    /// The provider's region and zone names, as a node's topology labels would carry them (the
    /// declarant's word, like a node's own labels).
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    attestation: Option<EndpointAttestation>,
}

/// The storage endpoints outside the cluster (backup targets, object stores) the auditor
/// knows, each with its addresses and, optionally, a security officer's attestation.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    endpoints: Vec<NodeDescription>,
    pub(super) attestations: Vec<Attestation>,
}

impl Inventory {
    /// Reads `--inventory`: a YAML list of `{name, addresses, region, zone, attestation}`.
    pub fn load(path: &Path) -> Result<Self, JudgeError> {
        let text = read(path)?;
        let items: Vec<EndpointItem> = parse(path, &text)?;
        let mut inventory = Inventory::default();
        for item in items {
            if inventory.endpoints.iter().any(|e| e.name == item.name) {
                return Err(JudgeError::Parse {
                    path: path.to_owned(),
                    why: format!("endpoint {:?} is declared twice", item.name),
                });
            }
            // An attestation binds to one machine by provider ID: an inventory endpoint's
            // identity is its inventory entry.
            let provider_id = format!("inventory://{}", item.name);
            let mut endpoint = NodeDescription {
                name: item.name.clone(),
                provider_id: Some(provider_id.clone()),
                ..NodeDescription::default()
            };
            for (label, value) in [
                (hexagone_platform::REGION_LABEL, &item.region),
                (hexagone_platform::ZONE_LABEL, &item.zone),
            ] {
                if let Some(v) = value {
                    endpoint.labels.insert(label.to_owned(), v.clone());
                }
            }
            for address in item.addresses {
                endpoint
                    .addresses
                    .extend(NodeDescription::endpoint(address).addresses);
            }
            if let Some(a) = item.attestation {
                inventory.attestations.push(pseudonymised(
                    format!("inventory/{}", item.name),
                    AttestationSpec {
                        node_name: item.name,
                        provider_id,
                        country: a.country,
                        hosting_company: a.hosting_company,
                        site: a.site,
                        zone: None,
                        basis: a.basis,
                        reference: a.reference,
                        attested_by: a.attested_by,
                        valid_until: a.valid_until,
                    },
                ));
            }
            inventory.endpoints.push(endpoint);
        }
        Ok(inventory)
    }

    /// The endpoint named `name`, or holding the address `name`.
    /// The inventory endpoint holding `address`, as the judge sees it, with the attestations
    /// the inventory gives (`locate ADDRESS --inventory FILE`).
    pub fn endpoint_at(&self, address: IpAddr) -> Option<(NodeDescription, &[Attestation])> {
        let endpoint = self.find(&address.to_string())?.clone();
        Some((endpoint, &self.attestations))
    }

    fn find(&self, name: &str) -> Option<&NodeDescription> {
        let address: Option<IpAddr> = name.parse().ok();
        self.endpoints.iter().find(|e| e.name == name).or_else(|| {
            let address = hexagone_platform::address::canonical(address?);
            self.endpoints.iter().find(|e| {
                e.addresses
                    .iter()
                    .any(|a| hexagone_platform::address::canonical(a.address) == address)
            })
        })
    }

    /// The place `location` names, and whether it is a node or an endpoint: a node as the
    /// cluster reports it; an endpoint of the inventory, named or by one of its addresses;
    /// else an endpoint at the address given (the auditor resolves no names). A registry, or a
    /// network volume's server, is an endpoint of the inventory by name, or else one that no
    /// evidence places.
    pub(super) fn resolve(
        &self,
        location: Location,
    ) -> Result<(NodeDescription, SubjectKind), JudgeError> {
        Ok(match location {
            Location::Node(node) => (node.into_description(), SubjectKind::Node),
            Location::Registry { .. } | Location::Server(_) => {
                let (host, has_port) = match location {
                    Location::Registry { host, .. } => (host, true),
                    Location::Server(host) => (host, false),
                    _ => unreachable!("matched above"),
                };
                // The host without its port: `host:port`, `[v6]` or `[v6]:port` (a server is
                // named without one: `collect::volumes::server`).
                let bare = match host.strip_prefix('[') {
                    Some(rest) => rest.split(']').next().unwrap_or_default(),
                    None if !has_port => host.as_str(),
                    None => match host.rsplit_once(':') {
                        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
                        _ => host.as_str(),
                    },
                };
                let address = bare.parse::<IpAddr>().ok();
                // Declared by address, or by a DNS name: a single label (`backup-gra`) is
                // looked up through the node's search domains, so it could be anywhere, even
                // when an inventory entry bears that name.
                let declared = match address {
                    Some(_) => self.find(bare),
                    None if bare.contains('.') => self.find(&host).or_else(|| self.find(bare)),
                    None => None,
                };
                match (declared, address) {
                    (Some(endpoint), _) => (endpoint.clone(), SubjectKind::Endpoint),
                    (None, Some(address)) => {
                        (NodeDescription::endpoint(address), SubjectKind::Endpoint)
                    }
                    (None, None) => (
                        NodeDescription {
                            name: host,
                            ..NodeDescription::default()
                        },
                        SubjectKind::Endpoint,
                    ),
                }
            }
            Location::Endpoint(name) => match self.find(&name) {
                Some(endpoint) => (endpoint.clone(), SubjectKind::Endpoint),
                None => match name.parse::<IpAddr>() {
                    Ok(address) => (NodeDescription::endpoint(address), SubjectKind::Endpoint),
                    Err(_) => match block(&name) {
                        // One address written as a block is that address, as the inventory
                        // knows it.
                        Some((address, true)) => {
                            return self.resolve(Location::Endpoint(address.to_string()));
                        }
                        Some((_, false)) => (
                            NodeDescription {
                                name: name.clone(),
                                ranges: vec![name],
                                ..NodeDescription::default()
                            },
                            SubjectKind::Endpoint,
                        ),
                        None => return Err(JudgeError::UnknownEndpoint(name)),
                    },
                },
            },
        })
    }
}

/// A block of addresses written `address/prefix` (the platform's one reading of it): its
/// address, and whether the block is that one address. `None` when it is not a block.
fn block(text: &str) -> Option<(IpAddr, bool)> {
    let block: hexagone_platform::locality::address::Block = text.parse().ok()?;
    Some((block.address(), block.is_one_address()))
}

#[cfg(test)]
mod tests {
    use crate::ingest::{Location, Report, parse_line};
    use crate::judge::testing::{check, check_report, endpoint};

    /// What a registry placed by nothing is under `france-standard`.
    const UNPLACED: &str = "[unknown] the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing / no NodeAttestation names the node, which proves nothing / no network operator of the node's addresses is established as accepted / the policy requires the address to place the node in an allowed country, and it does not / only 0 of the 2 location sources the policy requires place the node in an allowed country";

    #[test]
    fn a_registry_is_an_endpoint_of_the_inventory_or_placed_by_nothing() {
        let at = |host: &str| Report {
            location: Location::Registry {
                host: host.into(),
                image: None,
            },
            ..parse_line(1, &endpoint("backup-gra")).unwrap()
        };
        let standard = "france-standard";
        // Declared, by address (with or without the port the image reference gives).
        check_report(standard, at("37.59.0.1:5000"), "[compliant] ");
        check_report(standard, at("37.59.0.1"), "[compliant] ");
        // An IPv6 literal is an address (here one of the documentation range: nowhere).
        check_report(
            standard,
            at("[2001:db8::1]:5000"),
            "[unknown] the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing / no NodeAttestation names the node, which proves nothing / address 2001:db8::1 is in the documentation range 2001:db8::/32 (RFC 3849) and has no location, which proves nothing / the network of address 2001:db8::1 is in the documentation range 2001:db8::/32 (RFC 3849) and has no operator, which does not establish the operator's jurisdiction / the policy requires the address to place the node in an allowed country, and it does not / only 0 of the 2 location sources the policy requires place the node in an allowed country",
        );
        // An inventory name that is no DNS name is not the registry a runtime would reach: a
        // single label is resolved through the node's search domains, anywhere.
        // (The inventory's attestation of that name binds to its entry, which this is not.)
        check_report(standard, at("backup-gra:5000"), UNPLACED);
        check_report(
            standard,
            at("backup-gra"),
            "[unknown] the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing / NodeAttestation inventory/backup-gra names provider ID inventory://backup-gra, but the node reports no provider ID, which proves nothing / no network operator of the node's addresses is established as accepted / the policy requires the address to place the node in an allowed country, and it does not / only 0 of the 2 location sources the policy requires place the node in an allowed country",
        );
        check_report(
            standard,
            at("3.5.0.1:443"),
            "[violation] address 3.5.0.1 is in US, outside the allowed countries (FR) / network AS14618 (Amazon.com, Inc.) of address 3.5.0.1 is registered in US, and it is controlled by Amazon.com, Inc. (US), outside the EU",
        );
        // Not declared: judged, not refused (an HTTP writer naming it would be), on no
        // evidence: each policy's `onUnknown` decides.
        check_report(standard, at("docker.io"), UNPLACED);
        check_report(
            "france-diffusion-restreinte",
            at("docker.io"),
            "[violation] the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing / no NodeAttestation names the node, which proves nothing / no network operator of the node's addresses is established as accepted / the policy requires the attestation to place the node in an allowed country, and it does not / the policy requires the address to place the node in an allowed country, and it does not / only 0 of the 3 location sources the policy requires place the node in an allowed country",
        );
    }

    /// A network volume's server is judged as a registry is, but named without a port: an IPv6
    /// address whose last group is all digits stays the address.
    #[test]
    fn a_volume_server_is_an_endpoint_of_the_inventory_or_placed_by_nothing() {
        let at = |host: &str| Report {
            location: Location::Server(host.into()),
            ..parse_line(1, &endpoint("backup-gra")).unwrap()
        };
        let standard = "france-standard";
        check_report(standard, at("37.59.0.1"), "[compliant] ");
        check_report(
            standard,
            at("2001:db8::7"),
            "[unknown] the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing / no NodeAttestation names the node, which proves nothing / address 2001:db8::7 is in the documentation range 2001:db8::/32 (RFC 3849) and has no location, which proves nothing / the network of address 2001:db8::7 is in the documentation range 2001:db8::/32 (RFC 3849) and has no operator, which does not establish the operator's jurisdiction / the policy requires the address to place the node in an allowed country, and it does not / only 0 of the 2 location sources the policy requires place the node in an allowed country",
        );
        check_report(standard, at("one of 37.59.0.1, 3.5.0.1"), UNPLACED);
        check_report(
            standard,
            at("backup-gra"),
            "[unknown] the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing / NodeAttestation inventory/backup-gra names provider ID inventory://backup-gra, but the node reports no provider ID, which proves nothing / no network operator of the node's addresses is established as accepted / the policy requires the address to place the node in an allowed country, and it does not / only 0 of the 2 location sources the policy requires place the node in an allowed country",
        );
    }

    #[test]
    fn endpoints_come_from_the_inventory_or_an_address() {
        let standard = "france-standard";
        check(standard, &endpoint("backup-gra"), "[compliant] ");
        // The same endpoint named by its address has its attestation too.
        check(standard, &endpoint("37.59.0.1"), "[compliant] ");
        // Diffusion Restreinte counts topology labels among its three sources: an endpoint has
        // none, so it never complies.
        let dr = "france-diffusion-restreinte";
        check(
            dr,
            &endpoint("backup-gra"),
            "[violation] the node has no topology.kubernetes.io/region or topology.kubernetes.io/zone label, which proves nothing / only 2 of the 3 location sources the policy requires place the node in an allowed country",
        );
        check(
            "france-standard",
            &endpoint("3.5.0.1"),
            "[violation] address 3.5.0.1 is in US, outside the allowed countries (FR) / network AS14618 (Amazon.com, Inc.) of address 3.5.0.1 is registered in US, and it is controlled by Amazon.com, Inc. (US), outside the EU",
        );
        // A block of one address is that address; a wider one cannot be located, under
        // every policy (replayed from the entry like any fact: `check` replays it).
        check(standard, &endpoint("37.59.0.1/32"), "[compliant] ");
        for policy in [standard, dr] {
            for range in ["0.0.0.0/0", "2001:db8::/32", "37.59.0.0/24"] {
                check(
                    policy,
                    &endpoint(range),
                    &format!(
                        "[violation] the destination is the range of addresses {range}, any of which may be anywhere, which no policy can place: a destination must be one address"
                    ),
                );
            }
        }
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "::/129", "x/8"] {
            check(
                standard,
                &endpoint(bad),
                &format!(
                    "error: endpoint {bad:?} is not in the inventory and is not an IP address (the auditor resolves no names: declare it in --inventory with its addresses)"
                ),
            );
        }
        check(
            dr,
            &endpoint("backup.example.com"),
            "error: endpoint \"backup.example.com\" is not in the inventory and is not an IP address (the auditor resolves no names: declare it in --inventory with its addresses)",
        );
    }
}
