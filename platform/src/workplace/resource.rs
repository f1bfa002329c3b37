//! The `Workplace` custom resource (feature `k8s`): what an ops engineer asks for (a locality
//! policy, a size profile, a domain, per-component switches and overrides) and what the operator
//! reports back (conditions, per-component readiness, eligible nodes). Types and pure checks only.
//!
//! What a Kubernetes schema can say is said there (patterns, bounds, CEL rules generated from the
//! shipped catalog), so a bad spec is refused at `kubectl apply`; [`WorkplaceSpec::resolve`]
//! checks the rest (dependencies of disabled components, image overrides) and the operator
//! reports what it finds in one sentence per problem.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, ImageRef, Profile, Resources};

pub use crate::labels::{ELIGIBLE_LABEL_DOMAIN, eligible_label};

/// What an ops engineer asks for: the spec of the namespaced `Workplace` resource.
#[derive(kube::CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hexagone.fr",
    version = "v1alpha1",
    kind = "Workplace",
    namespaced,
    status = "WorkplaceStatus",
    shortname = "wp",
    category = "hexagone",
    doc = "A complete collaborative digital workplace (portal, chat, video, co-editing, search, identity, storage, mail), deployed on the nodes a locality policy admits.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Sovereign","type":"string","jsonPath":".status.conditions[?(@.type==\"Sovereign\")].status"}"#,
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".spec.profile"}"#,
    printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.eligibleNodes"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkplaceSpec {
    /// Name of the cluster-scoped LocalityPolicy that decides which nodes may host this
    /// workplace and its data (`france-diffusion-restreinte`). Its mode decides what a violation
    /// does: enforce evicts, audit only reports.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub policy: String,
    /// Size profile: users500, users5000 or users50000 (replicas, resources and storage of every
    /// component follow it).
    pub profile: Profile,
    /// DNS domain the workplace is served under (`intranet.example.gouv.fr`).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$")
    )]
    pub domain: String,
    /// Per-component switches and overrides, by catalog component name (`jitsi-jvb`). Components
    /// not listed run with the catalog's defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "components_schema")]
    pub components: BTreeMap<String, ComponentOverride>,
    /// Registry every image is pulled from instead of the projects' own (an air-gapped site's
    /// mirror: `registry.example.fr/mirror`); repositories, tags and digests are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?$"))]
    pub registry: Option<String>,
    /// Refuse to deploy any image not pinned by digest (`repo:tag@sha256:…`).
    #[serde(default)]
    pub require_digests: bool,
    /// Persistent storage of the workplace's volumes.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Extra egress destinations outside the namespace (a site's mail relay, an outside backup
    /// target). Everything else but DNS and the namespace itself is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub egress: Vec<EgressRule>,
    /// Stop reconciling (nothing is created, changed or evicted) until set back to false; a
    /// condition says so.
    #[serde(default)]
    pub paused: bool,
    /// Where video clients send their media: the address each videobridge advertises. Without
    /// it, the bridges advertise only their
    /// pod addresses and clients outside the cluster reach them through the TURN relay alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoSpec>,
    /// Where the workplace's mail leaves: the site's relay, which eXo submits its notifications
    /// to directly (no relay of the workplace's own runs). Without it, eXo sends no mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailSpec>,
}

/// The site's mail relay, reached by eXo through an egress destination of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailSpec {
    /// The relay's IPv4 or IPv6 address (`192.0.2.25`): egress is allowed to addresses only,
    /// so `spec.egress` must list it, as one address, with this port.
    #[schemars(length(min = 2, max = 45), regex(pattern = r"^[0-9a-fA-F:.]+$"))]
    pub relay: String,
    /// The relay's SMTP port (default 25).
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Upgrade each connection with STARTTLS when the relay offers it (default true).
    #[serde(default = "default_true")]
    pub start_tls: bool,
    /// The sender address of the workplace's mail (default `noreply@<domain>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 254),
        regex(pattern = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$")
    )]
    pub from: Option<String>,
    /// A Secret of the namespace, created by ops, with the keys `username` and `password` the
    /// relay authenticates eXo with; without it eXo does not authenticate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub credentials_secret: Option<String>,
}

fn default_smtp_port() -> u16 {
    25
}

fn default_true() -> bool {
    true
}

/// The catalog component that sends the workplace's mail.
pub const MAIL_SENDER: &str = "exo";

/// Components the catalog no longer has, with why and what replaces them: a Workplace written
/// for an older catalog is told what to change rather than "no such component".
const REMOVED_COMPONENTS: &[(&str, &str)] = &[(
    "postfix",
    "removed from the catalog (its image runs as root, which the restricted standard forbids): \
     eXo submits mail to the site's relay itself (spec.mail); remove this entry",
)];

/// Whether a sender address is made of the characters an address needs and nothing eXo's
/// image would misread when it writes the address into its properties file (`\`, spaces,
/// line breaks): `local@domain`, letters, digits and `._%+-`.
fn plain_address(a: &str) -> bool {
    let plain = |s: &str, extra: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    a.split_once('@')
        .is_some_and(|(local, domain)| plain(local, "._%+-") && plain(domain, ".-"))
}

/// How video clients reach the media of the workplace's videobridges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VideoSpec {
    /// One entry per videobridge, bridge 0 first (as many as `jitsi-jvb` has replicas): the
    /// address and UDP port clients send that bridge's media to. Each bridge gets a
    /// LoadBalancer Service of its own on that port; ops make the address reach it (the address
    /// their load balancer gives it, pinned through its annotations, or a NAT rule of the site's
    /// firewall to that address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub bridges: Vec<BridgeAddress>,
}

/// The address clients reach one videobridge at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BridgeAddress {
    /// An IPv4 or IPv6 address (ICE candidates carry addresses, not names): `203.0.113.10`.
    #[schemars(length(min = 2, max = 45), regex(pattern = r"^[0-9a-fA-F:.]+$"))]
    pub address: String,
    /// The UDP port on that address (default 10000, the bridge's own).
    #[serde(default = "default_media_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

fn default_media_port() -> u16 {
    MEDIA_PORT
}

/// The videobridge's own UDP media port (JVB_PORT's default,
/// jitsi/docker-jitsi-meet@stable-11146-2 jvb/rootfs/defaults/jvb.conf:38).
pub const MEDIA_PORT: u16 = 10000;

/// The catalog component of the videobridges.
pub const VIDEOBRIDGE: &str = "jitsi-jvb";

/// Switches and overrides of one component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentOverride {
    /// Deploy this component (default true). A component others depend on cannot be disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Replicas instead of the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<u32>,
    /// Full image reference instead of the catalog's (`registry/repo:tag@sha256:…`), for
    /// example to pin a digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Requests instead of the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Resources>,
    /// Limits instead of the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resources>,
}

impl ComponentOverride {
    /// Whether the component runs.
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

/// Persistent storage of the workplace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageSpec {
    /// CSI provisioner of the StorageClass the operator creates for this workplace (its
    /// allowedTopologies are the eligible zones; binding waits for the pod's node).
    #[serde(default = "default_provisioner")]
    #[schemars(length(min = 1, max = 253))]
    pub provisioner: String,
    /// Parameters passed to the provisioner.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// Delete the workplace's volume claims (and so, with a Delete reclaim policy, its data) when
    /// the Workplace is deleted. Default false: the data outlives the Workplace.
    #[serde(default)]
    pub delete_claims_with_workplace: bool,
}

fn default_provisioner() -> String {
    "kubernetes.io/no-provisioner".to_owned()
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            provisioner: default_provisioner(),
            parameters: BTreeMap::new(),
            delete_claims_with_workplace: false,
        }
    }
}

/// One allowed egress destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRule {
    /// What it is for (`site mail relay`), shown in the NetworkPolicy.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Destination network, CIDR notation (`192.0.2.10/32`).
    #[schemars(regex(pattern = r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"))]
    pub cidr: String,
    /// TCP ports (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

/// The schema of `spec.components`: a map whose keys are the shipped catalog's component names
/// (checked by a CEL rule generated from the catalog, so an unknown name is refused at apply).
fn components_schema(generator: &mut SchemaGenerator) -> Schema {
    let value = generator.subschema_for::<ComponentOverride>();
    let names: Vec<String> = Catalog::shipped()
        .components
        .iter()
        .map(|c| format!("'{}'", c.name))
        .collect();
    let list = names.join(", ");
    json_schema!({
        "type": "object",
        "maxProperties": names.len(),
        "additionalProperties": value,
        "x-kubernetes-validations": [{
            "rule": format!("self.all(k, k in [{list}])"),
            "message": format!("unknown component: components are {}", list.replace('\'', "")),
        }]
    })
}

/// A condition, per the Kubernetes API conventions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Sovereign, Progressing, Degraded or Paused.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// One CamelCase word saying why.
    pub reason: String,
    /// One sentence a person can act on.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What the operator reports on a Workplace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkplaceStatus {
    /// The generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Sovereign, Progressing, Degraded (and Paused while paused).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// How many nodes the policy admits.
    #[serde(default)]
    pub eligible_nodes: u32,
    /// The zones of the eligible nodes (where volumes may be provisioned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eligible_zones: Vec<String>,
    /// Readiness of each enabled component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
    /// Workplace pods on a node the policy does not find compliant, `pod on node: why`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<String>,
    /// Each backup CronJob's last run and last success.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupStatus>,
}

/// One backup CronJob: how its latest run ended, and when it last succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The CronJob (`postgresql-backup`).
    pub name: String,
    /// Its latest run: `Succeeded`, `Failed`, `Running`, or `None` before the first.
    pub last_run: String,
    /// The latest run's Job, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// When a run last succeeded (the CronJob's `lastSuccessfulTime`), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// Why the latest run failed (its Job's Failed condition: reason and message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Readiness of one component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// The catalog name.
    pub name: String,
    /// Ready replicas.
    pub ready_replicas: u32,
    /// Desired replicas.
    pub replicas: u32,
    /// Whether every desired replica is ready.
    pub ready: bool,
}

/// A problem with a spec that its schema could not catch: `field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// The field (`spec.components.postgresql.enabled`).
    pub field: String,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl WorkplaceSpec {
    /// The catalog this spec deploys: the shipped one with the registry override and the image
    /// overrides applied, or every problem found (unknown components, disabled dependencies,
    /// bad images, unpinned images when digests are required).
    pub fn resolve(&self, shipped: &Catalog) -> Result<Catalog, Vec<SpecProblem>> {
        let mut problems = Vec::new();
        let mut catalog = match &self.registry {
            Some(r) => match shipped.with_registry(r) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(SpecProblem {
                        field: "spec.registry".into(),
                        message: e.to_string(),
                    });
                    shipped.clone()
                }
            },
            None => shipped.clone(),
        };
        for (name, o) in &self.components {
            let Some(c) = catalog.components.iter_mut().find(|c| &c.name == name) else {
                let removed = REMOVED_COMPONENTS.iter().find(|(n, _)| n == name);
                problems.push(SpecProblem {
                    field: format!("spec.components.{name}"),
                    message: removed
                        .map_or("no such component in the catalog", |(_, why)| why)
                        .into(),
                });
                continue;
            };
            if let Some(image) = &o.image {
                match image.parse::<ImageRef>() {
                    Ok(i) => c.image = i,
                    Err(e) => problems.push(SpecProblem {
                        field: format!("spec.components.{name}.image"),
                        message: e.to_string(),
                    }),
                }
            }
        }
        for c in &catalog.components {
            if self.enabled(&c.name) {
                continue;
            }
            let users: Vec<&str> = catalog
                .components
                .iter()
                .filter(|u| self.enabled(&u.name) && u.depends_on.contains(&c.name))
                .map(|u| u.name.as_str())
                .collect();
            if !users.is_empty() {
                problems.push(SpecProblem {
                    field: format!("spec.components.{}.enabled", c.name),
                    message: format!(
                        "cannot be false while {} depend on it (disable them too)",
                        users.join(", ")
                    ),
                });
            }
        }
        catalog.components.retain(|c| self.enabled(&c.name));
        problems.extend(self.video_problems(&catalog));
        problems.extend(self.mail_problems(&catalog));
        if self.require_digests {
            let images = catalog.unpinned_images();
            if !images.is_empty() {
                problems.push(SpecProblem {
                    field: "spec.requireDigests".into(),
                    message: format!(
                        "these images are not pinned by digest (set spec.components.<name>.image to repo:tag@sha256:…): {}",
                        images.join("; ")
                    ),
                });
            }
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(problems)
        }
    }

    /// How many videobridges run: `jitsi-jvb`'s replicas (0 when it is disabled).
    pub fn videobridges(&self, catalog: &Catalog) -> u32 {
        catalog.component(VIDEOBRIDGE).map_or(0, |c| {
            self.components
                .get(VIDEOBRIDGE)
                .and_then(|o| o.replicas)
                .unwrap_or_else(|| c.sizing[&self.profile].replicas)
        })
    }

    /// The problems of `spec.mail`: a relay that is not an address, one no egress destination of
    /// the spec lets eXo reach on its port, or a relay while nothing sends mail.
    fn mail_problems(&self, catalog: &Catalog) -> Vec<SpecProblem> {
        let Some(mail) = &self.mail else {
            return Vec::new();
        };
        if catalog.component(MAIL_SENDER).is_none() {
            return vec![SpecProblem {
                field: "spec.mail".into(),
                message: format!(
                    "no component sends mail ({MAIL_SENDER} is disabled): remove spec.mail"
                ),
            }];
        }
        let mut problems = Vec::new();
        if mail.port == 0 {
            problems.push(SpecProblem {
                field: "spec.mail.port".into(),
                message: "0 is no port: the relay's SMTP port is 1 to 65535 (25 by default)".into(),
            });
        }
        if let Some(from) = mail.from.as_deref().filter(|f| !plain_address(f)) {
            problems.push(SpecProblem {
                field: "spec.mail.from".into(),
                message: format!(
                    "{from:?} is not an address of letters, digits and ._%+- (local@domain): eXo's image writes it into a properties file as is"
                ),
            });
        }
        let relay = match mail.relay.parse::<std::net::IpAddr>() {
            Err(_) => {
                problems.push(SpecProblem {
                    field: "spec.mail.relay".into(),
                    message: format!(
                        "{:?} is not an IPv4 or IPv6 address (egress is allowed to addresses, not names)",
                        mail.relay
                    ),
                });
                return problems;
            }
            Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => {
                problems.push(SpecProblem {
                    field: "spec.mail.relay".into(),
                    message: format!(
                        "{v6} is an IPv4 address written as IPv6: eXo would reach it over IPv4, which an IPv6 egress block does not match; write {}",
                        v6.to_canonical()
                    ),
                });
                return problems;
            }
            Ok(relay) => relay,
        };
        let host = if relay.is_ipv4() { 32 } else { 128 };
        let listed = self.egress.iter().any(|r| {
            r.cidr
                .parse::<crate::locality::address::Block>()
                .is_ok_and(|b| b.is_one_address() && b.address() == relay)
                && (r.ports.is_empty() || r.ports.contains(&mail.port))
        });
        if !listed {
            problems.push(SpecProblem {
                field: "spec.mail.relay".into(),
                message: format!(
                    "{} is not an egress destination of this workplace: add {{name: site mail relay, cidr: {relay}/{host}, ports: [{}]}} to spec.egress",
                    std::net::SocketAddr::new(relay, mail.port),
                    mail.port
                ),
            });
        }
        problems
    }

    /// The problems of `spec.video`: an address that is not an IP, two bridges on one address
    /// and port, or not one address per bridge.
    fn video_problems(&self, catalog: &Catalog) -> Vec<SpecProblem> {
        let Some(video) = &self.video else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        let mut seen: BTreeMap<(std::net::IpAddr, u16), usize> = BTreeMap::new();
        for (i, b) in video.bridges.iter().enumerate() {
            match b.address.parse::<std::net::IpAddr>() {
                Err(_) => problems.push(SpecProblem {
                    field: format!("spec.video.bridges[{i}].address"),
                    message: format!(
                        "{:?} is not an IPv4 or IPv6 address (clients are given addresses, not names)",
                        b.address
                    ),
                }),
                Ok(ip) => {
                    if let Some(first) = seen.insert((ip, b.port), i) {
                        problems.push(SpecProblem {
                            field: format!("spec.video.bridges[{i}]"),
                            message: format!(
                                "advertises {}, as bridge {first} does: each bridge needs an address and port of its own",
                                std::net::SocketAddr::new(ip, b.port)
                            ),
                        });
                    }
                }
            }
        }
        let bridges = self.videobridges(catalog);
        if !video.bridges.is_empty() && video.bridges.len() != bridges as usize {
            problems.push(SpecProblem {
                field: "spec.video.bridges".into(),
                message: format!(
                    "{} addresses for {bridges} videobridges (spec.components.{VIDEOBRIDGE}.replicas, or the {} profile's): list one per bridge",
                    video.bridges.len(),
                    self.profile
                ),
            });
        }
        problems
    }

    /// Whether the component runs.
    pub fn enabled(&self, component: &str) -> bool {
        self.components
            .get(component)
            .is_none_or(ComponentOverride::enabled)
    }
}

impl JsonSchema for Resources {
    fn schema_name() -> Cow<'static, str> {
        "Resources".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "required": ["cpu", "memory"],
            "properties": {
                "cpu": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?m?$", "description": "CPU quantity (500m, 2)."},
                "memory": {"type": "string", "pattern": r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$", "description": "Memory quantity (512Mi, 4Gi)."}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn spec(yaml: &str) -> WorkplaceSpec {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn crd_is_namespaced_with_columns_and_a_catalog_rule() {
        let crd = Workplace::crd();
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        let cols: Vec<&str> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["Ready", "Sovereign", "Profile", "Nodes", "Age"]);
        let json = serde_json::to_string(&crd).unwrap();
        assert!(
            json.contains("self.all(k, k in ['exo', 'synapse'"),
            "{json}"
        );
    }

    #[test]
    fn a_disabled_dependency_is_refused_naming_its_users() {
        let s = spec(
            "{policy: p, profile: users500, domain: a.fr, components: {postgresql: {enabled: false}}}",
        );
        let problems = s.resolve(Catalog::shipped()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "spec.components.postgresql.enabled");
        assert!(
            problems[0]
                .message
                .contains("synapse, onlyoffice, keycloak"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn disabling_a_leaf_with_its_users_is_accepted() {
        let s = spec(
            "{policy: p, profile: users500, domain: a.fr, components: {onlyoffice: {enabled: false}, exo: {enabled: false}}}",
        );
        let c = s.resolve(Catalog::shipped()).unwrap();
        assert!(c.component("onlyoffice").is_none() && c.component("exo").is_none());
        assert!(c.component("synapse").is_some());
    }

    #[test]
    fn a_removed_component_is_named_with_what_replaced_it() {
        let problems = spec(
            "{policy: p, profile: users500, domain: a.fr, components: {postfix: {enabled: false}}}",
        )
        .resolve(Catalog::shipped())
        .unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "spec.components.postfix");
        assert!(problems[0].message.contains("spec.mail"), "{}", problems[0]);
        let problems =
            spec("{policy: p, profile: users500, domain: a.fr, components: {sharepoint: {}}}")
                .resolve(Catalog::shipped())
                .unwrap_err();
        assert_eq!(problems[0].message, "no such component in the catalog");
    }

    #[test]
    fn the_mail_relay_must_be_an_egress_destination_on_its_port() {
        let problems = |yaml: &str| -> Vec<String> {
            match spec(yaml).resolve(Catalog::shipped()) {
                Ok(_) => Vec::new(),
                Err(p) => p.iter().map(ToString::to_string).collect(),
            }
        };
        let base = "policy: p, profile: users500, domain: a.fr";
        // Listed, as one address, with the port (or every port): accepted; the defaults.
        let ok = spec(&format!(
            "{{{base}, mail: {{relay: 192.0.2.25}}, egress: [{{name: relay, cidr: 192.0.2.25/32, ports: [25]}}]}}"
        ));
        ok.resolve(Catalog::shipped()).unwrap();
        let mail = ok.mail.unwrap();
        assert_eq!(
            (
                mail.port,
                mail.start_tls,
                mail.from,
                mail.credentials_secret
            ),
            (25, true, None, None)
        );
        assert!(problems(&format!(
            "{{{base}, mail: {{relay: '2001:db8::25', port: 587}}, egress: [{{name: relay, cidr: '2001:0db8:0:0::25/128'}}]}}"
        ))
        .is_empty());
        // Not listed, listed on another port, or inside a range: refused, naming what to add.
        let add = "spec.mail.relay: 192.0.2.25:25 is not an egress destination of this workplace: \
                   add {name: site mail relay, cidr: 192.0.2.25/32, ports: [25]} to spec.egress";
        assert_eq!(
            problems(&format!("{{{base}, mail: {{relay: 192.0.2.25}}}}")),
            [add]
        );
        assert_eq!(
            problems(&format!(
                "{{{base}, mail: {{relay: 192.0.2.25}}, egress: [{{name: r, cidr: 192.0.2.25/32, ports: [587]}}]}}"
            )),
            [add]
        );
        assert_eq!(
            problems(&format!(
                "{{{base}, mail: {{relay: 192.0.2.25}}, egress: [{{name: r, cidr: 192.0.2.0/24, ports: [25]}}]}}"
            )),
            [add]
        );
        // A name: egress cannot name one.
        assert_eq!(
            problems(&format!("{{{base}, mail: {{relay: smtp.a.fr}}}}")),
            [
                "spec.mail.relay: \"smtp.a.fr\" is not an IPv4 or IPv6 address (egress is allowed to addresses, not names)"
            ]
        );
        // An IPv4 address spelled as IPv6, port 0, a sender eXo's image would misread.
        assert_eq!(
            problems(&format!(
                "{{{base}, mail: {{relay: '::ffff:192.0.2.25'}}, egress: [{{name: r, cidr: '::ffff:192.0.2.25/128'}}]}}"
            )),
            [
                "spec.mail.relay: ::ffff:192.0.2.25 is an IPv4 address written as IPv6: eXo would reach it over IPv4, \
              which an IPv6 egress block does not match; write 192.0.2.25"
            ]
        );
        assert_eq!(
            problems(&format!(
                "{{{base}, mail: {{relay: 192.0.2.25, port: 0, from: 'a\\@b.fr'}}, egress: [{{name: r, cidr: 192.0.2.25/32}}]}}"
            )),
            [
                "spec.mail.port: 0 is no port: the relay's SMTP port is 1 to 65535 (25 by default)",
                "spec.mail.from: \"a\\\\@b.fr\" is not an address of letters, digits and ._%+- (local@domain): \
                 eXo's image writes it into a properties file as is"
            ]
        );
        assert!(problems(&format!(
            "{{{base}, mail: {{relay: 192.0.2.25, from: no-reply+wp@mail.ministere.fr}}, egress: [{{name: r, cidr: 192.0.2.25/32}}]}}"
        ))
        .is_empty());
        // Nothing sends mail without eXo.
        assert_eq!(
            problems(&format!(
                "{{{base}, components: {{exo: {{enabled: false}}}}, mail: {{relay: 192.0.2.25}}, \
                 egress: [{{name: r, cidr: 192.0.2.25/32}}]}}"
            )),
            ["spec.mail: no component sends mail (exo is disabled): remove spec.mail"]
        );
    }

    #[test]
    fn required_digests_name_every_unpinned_image_and_overrides_pin_them() {
        let s = spec("{policy: p, profile: users500, domain: a.fr, requireDigests: true}");
        let problems = s.resolve(Catalog::shipped()).unwrap_err();
        assert_eq!(problems[0].field, "spec.requireDigests");
        assert!(
            problems[0]
                .message
                .contains("exo: docker.io/exoplatform/exo-community:7.1.0")
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let mut s = s.clone();
        for c in &Catalog::shipped().components {
            s.components.insert(
                c.name.clone(),
                ComponentOverride {
                    image: Some(format!("{}@{digest}", c.image)),
                    ..Default::default()
                },
            );
        }
        let c = s.resolve(Catalog::shipped()).unwrap();
        assert!(c.unpinned_images().is_empty());
    }

    #[test]
    fn bad_images_and_registries_are_named() {
        let s = spec(
            "{policy: p, profile: users500, domain: a.fr, registry: 'bad registry', components: {valkey: {image: 'UPPER CASE'}}}",
        );
        let fields: Vec<String> = s
            .resolve(Catalog::shipped())
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["spec.registry", "spec.components.valkey.image"]);
    }
}
