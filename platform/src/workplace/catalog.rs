//! The workplace stack catalog: what each component of the workplace runs, exposes, needs and
//! writes, per size profile. The shipped catalog is the data file `platform/data/stack-catalog.yaml`,
//! embedded at build time; this module owns its format, loads it and checks it.
//!
//! The catalog is data the operator renders and the auditor reads: the data stores each component
//! writes, with their data class, are how the auditor knows where workplace data lives.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::sha256_tag;
use crate::quantity::{bytes, millicores};

/// The catalog as shipped.
const TEXT: &str = include_str!("../../data/stack-catalog.yaml");

/// A size profile: the number of users a workplace is sized for.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Profile {
    /// Up to 500 users.
    #[serde(rename = "users500")]
    Users500,
    /// Up to 5,000 users.
    #[serde(rename = "users5000")]
    Users5000,
    /// Up to 50,000 users.
    #[serde(rename = "users50000")]
    Users50000,
}

impl Profile {
    /// Every profile, smallest first.
    pub const ALL: [Profile; 3] = [Profile::Users500, Profile::Users5000, Profile::Users50000];

    /// The name used in the catalog and in a Workplace (`users5000`).
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Users500 => "users500",
            Profile::Users5000 => "users5000",
            Profile::Users50000 => "users50000",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of data a store holds, so a locality report can say what lives where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataClass {
    /// Users' documents, pages, posts, files and their versions.
    Documents,
    /// Chat messages and conversation state.
    Messages,
    /// Accounts, credentials, sessions and group memberships.
    Identities,
    /// A search index derived from other data (holds copies of its text).
    SearchIndex,
    /// A cache of other data (holds copies of it, for a while).
    Cache,
    /// Backups of other stores (hold everything those stores hold).
    Backups,
    /// Uploaded media: images, attachments, avatars.
    Media,
    /// Blobs of an object store, whose classes are those of the buckets they belong to.
    Objects,
    /// File-system metadata of an object store: names, sizes, owners, chunk locations.
    Metadata,
    /// Mail waiting to be relayed.
    MailQueue,
    /// Generated configuration and keys of a component.
    Configuration,
}

/// Where a data store keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StoreKind {
    /// A database on a database server component.
    Database,
    /// One of the component's own volumes.
    Volume,
    /// A bucket on the object store.
    Bucket,
    /// An index on the search component.
    Index,
}

/// How a component runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Workload {
    /// Interchangeable replicas without their own volume.
    Deployment,
    /// Replicas with a stable identity and a volume each.
    StatefulSet,
}

/// A port's transport protocol.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP (media).
    #[serde(rename = "UDP")]
    Udp,
}

/// The catalog: every component of the workplace stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Catalog {
    /// The date the catalog was last reviewed against the projects' documentation.
    pub version: String,
    /// The components, in the order the file lists them.
    pub components: Vec<Component>,
}

/// One component of the stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Component {
    /// The component's name, unique in the catalog (a DNS label: `exo`, `jitsi-jvb`).
    pub name: String,
    /// What it is for, in one sentence.
    pub description: String,
    /// Its container image, by registry, repository and tag (and digest, once pinned).
    pub image: ImageRef,
    /// How it runs.
    pub workload: Workload,
    /// Arguments for the image's entry point, when the image needs them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The ports it listens on.
    pub ports: Vec<Port>,
    /// When it is ready to serve.
    pub readiness: Probe,
    /// When it must be restarted; the readiness probe when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// Its volumes (sized per profile in `sizing`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// The data stores it writes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<DataStore>,
    /// Scheduled backups of the data it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// The components it needs, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Replicas, resources and volume sizes for every profile.
    pub sizing: BTreeMap<Profile, Sizing>,
}

/// A port a component listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Its name (`http`, `media`), referred to by probes.
    pub name: String,
    /// Its number in the container.
    pub port: u16,
    /// Its protocol.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A probe: an HTTP GET on a path, or a TCP connection, to a named port. Written
/// `{http: {path, port}}` or `{tcp: {port}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ProbeRepr", into = "ProbeRepr")]
pub enum Probe {
    /// An HTTP GET answered with a 2xx or 3xx status.
    Http {
        /// The path (`/health/ready`).
        path: String,
        /// The name of the port.
        port: String,
    },
    /// A TCP connection that is accepted.
    Tcp {
        /// The name of the port.
        port: String,
    },
}

/// The YAML layout of a probe: exactly one of the two keys (yaml_serde writes enums as tags).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<HttpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpProbe>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpProbe {
    path: String,
    port: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpProbe {
    port: String,
}

impl TryFrom<ProbeRepr> for Probe {
    type Error = &'static str;

    fn try_from(r: ProbeRepr) -> Result<Self, Self::Error> {
        match (r.http, r.tcp) {
            (Some(HttpProbe { path, port }), None) => Ok(Probe::Http { path, port }),
            (None, Some(TcpProbe { port })) => Ok(Probe::Tcp { port }),
            _ => Err("a probe is exactly one of {http: {path, port}} or {tcp: {port}}"),
        }
    }
}

impl From<Probe> for ProbeRepr {
    fn from(p: Probe) -> Self {
        match p {
            Probe::Http { path, port } => ProbeRepr {
                http: Some(HttpProbe { path, port }),
                tcp: None,
            },
            Probe::Tcp { port } => ProbeRepr {
                http: None,
                tcp: Some(TcpProbe { port }),
            },
        }
    }
}

impl Probe {
    /// The name of the port the probe targets.
    pub fn port(&self) -> &str {
        match self {
            Probe::Http { port, .. } | Probe::Tcp { port } => port,
        }
    }
}

/// A volume a component mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// Its name, referred to by `writes` and `sizing.storage`.
    pub name: String,
    /// Where it is mounted in the container.
    pub mount_path: String,
}

/// A data store a component writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataStore {
    /// Where the data is kept.
    pub kind: StoreKind,
    /// The database, volume, bucket or index name.
    pub name: String,
    /// The component holding it: the database server, object store or search component (the
    /// writer itself for a volume).
    pub on: String,
    /// What kind of data it holds.
    pub class: DataClass,
}

/// Scheduled backups of a component's data to a bucket it writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backup {
    /// When, as a five-field cron schedule.
    pub schedule: String,
    /// The bucket it writes to: one of the component's `writes` of kind `bucket`.
    pub bucket: String,
}

/// Replicas, resources and volume sizes of a component for one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sizing {
    /// How many replicas.
    pub replicas: u32,
    /// What the scheduler reserves.
    pub requests: Resources,
    /// What the container may not exceed.
    pub limits: Resources,
    /// The size of each volume, by volume name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage: BTreeMap<String, String>,
}

/// CPU and memory, as Kubernetes quantities (`500m`, `2`, `512Mi`, `4Gi`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// CPU cores (`2`, `1.5`) or millicores (`500m`).
    pub cpu: String,
    /// Bytes with a binary suffix (`512Mi`, `4Gi`).
    pub memory: String,
}

/// A container image reference: `registry/repository:tag`, optionally `@sha256:<64 hex>`.
///
/// The registry is always explicit (`docker.io/library/postgres:17`), so rewriting it for an
/// air-gapped site is a plain substitution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The registry host, with its port if any (`docker.io`, `registry.local:5000`).
    pub registry: String,
    /// The repository path in the registry (`exoplatform/exo-community`).
    pub repository: String,
    /// The tag the project published.
    pub tag: String,
    /// `sha256:<64 lowercase hex>`, once pinned.
    pub digest: Option<String>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "image reference {reference:?}: {reason}; expected registry/repository:tag[@sha256:<64 hex>]"
)]
pub struct ImageRefError {
    /// The string given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ImageRefError {
            reference: s.to_owned(),
            reason,
        };
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| err("the digest must start with sha256:"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(err("a sha256 digest is 64 lowercase hexadecimal digits"));
                }
                (n, Some(d.to_owned()))
            }
            None => (s, None),
        };
        let (registry, rest) = name_tag.split_once('/').ok_or_else(|| err("no registry"))?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(err(
                "the first part must be a registry host (docker.io, quay.io)",
            ));
        }
        if !registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
        {
            return Err(err("invalid character in the registry"));
        }
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => return Err(err("no tag")),
        };
        let valid_repo = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !valid_repo {
            return Err(err("the repository must be lowercase path components"));
        }
        let valid_tag = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_tag {
            return Err(err(
                "the tag must be 1 to 128 letters, digits, '.', '_' or '-'",
            ));
        }
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)?;
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One thing wrong with a catalog, naming the component and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The component's name.
    pub component: String,
    /// The field, as a path from the component (`sizing.users5000.limits.cpu`).
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "component {}: {}: {}",
            self.component, self.field, self.message
        )
    }
}

/// Why a catalog was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The file is not a catalog in the expected layout (serde's path, line and column).
    #[error("stack catalog: {0}")]
    Parse(String),
    /// The file parses but breaks a rule.
    #[error("stack catalog: {}", list(problems))]
    Invalid {
        /// Every rule broken, in file order.
        problems: Vec<Problem>,
    },
    /// Digests are required and these images have none.
    #[error("stack catalog: images not pinned by digest: {}", list(images))]
    Unpinned {
        /// `component: image` for each image without a digest.
        images: Vec<String>,
    },
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Catalog {
    /// The shipped catalog (parsed and validated once).
    pub fn shipped() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            // The file is part of the source tree and checked by this module's tests.
            Catalog::parse(TEXT).expect("platform/data/stack-catalog.yaml is valid")
        })
    }

    /// `sha256:<hex>` of the shipped catalog's text, for the record of what was deployed.
    pub fn shipped_digest() -> String {
        sha256_tag(TEXT.as_bytes())
    }

    /// Parses and validates a catalog in the shipped layout.
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog =
            yaml_serde::from_str(text).map_err(|e| CatalogError::Parse(name_component(text, e)))?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// The component named `name`.
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Checks every rule and reports every problem found, in file order.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for c in &self.components {
            if !seen.insert(c.name.as_str()) {
                problems.push(problem(c, "name", "listed twice"));
            }
            check_component(self, c, &mut problems);
        }
        if problems.is_empty()
            && let Err(cycle) = self.dependency_order()
        {
            let first = self
                .component(&cycle[0])
                .expect("the cycle names components");
            problems.push(problem(
                first,
                "dependsOn",
                &format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::Invalid { problems })
        }
    }

    /// Component names with every component after the ones it depends on (file order among
    /// independent ones), or the components of a cycle, first one repeated at the end.
    pub fn dependency_order(&self) -> Result<Vec<&str>, Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit<'a>(
            catalog: &'a Catalog,
            name: &'a str,
            marks: &mut BTreeMap<&'a str, Mark>,
            path: &mut Vec<&'a str>,
            order: &mut Vec<&'a str>,
        ) -> Result<(), Vec<String>> {
            match marks.get(name) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|n| *n == name).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(name.to_owned());
                    return Err(cycle);
                }
                None => {}
            }
            marks.insert(name, Mark::Visiting);
            path.push(name);
            if let Some(c) = catalog.component(name) {
                for dep in &c.depends_on {
                    visit(catalog, dep, marks, path, order)?;
                }
            }
            path.pop();
            marks.insert(name, Mark::Done);
            order.push(name);
            Ok(())
        }
        let mut marks = BTreeMap::new();
        let mut order = Vec::new();
        for c in &self.components {
            visit(self, &c.name, &mut marks, &mut Vec::new(), &mut order)?;
        }
        Ok(order)
    }

    /// The same catalog with every image pulled from `registry` instead (an air-gapped site's
    /// mirror), repositories, tags and digests unchanged. `registry` is a host with an optional
    /// port and path prefix (`registry.example.fr/mirror`).
    pub fn with_registry(&self, registry: &str) -> Result<Catalog, ImageRefError> {
        let registry = registry.trim_end_matches('/');
        let mut out = self.clone();
        for c in &mut out.components {
            // Re-parse so a bad override is refused the same way as a bad catalog entry.
            let (host, prefix) = match registry.split_once('/') {
                Some((h, p)) => (h, format!("{p}/")),
                None => (registry, String::new()),
            };
            let mut rewritten: ImageRef =
                format!("{host}/{prefix}{}:{}", c.image.repository, c.image.tag).parse()?;
            rewritten.digest = c.image.digest.clone();
            c.image = rewritten;
        }
        Ok(out)
    }

    /// `component: image` for every image not pinned by digest, in file order.
    pub fn unpinned_images(&self) -> Vec<String> {
        self.components
            .iter()
            .filter(|c| c.image.digest.is_none())
            .map(|c| format!("{}: {}", c.name, c.image))
            .collect()
    }

    /// Refuses the catalog when any image is not pinned by digest (a Workplace may require it).
    pub fn require_digests(&self) -> Result<(), CatalogError> {
        let images = self.unpinned_images();
        if images.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::Unpinned { images })
        }
    }
}

/// serde's message for a parse error, with `components[3]` followed by the component's name when
/// the file names it, so the reader need not count entries.
fn name_component(text: &str, e: yaml_serde::Error) -> String {
    let message = e.to_string();
    let Some(rest) = message.strip_prefix("components[") else {
        return message;
    };
    let Some((index, rest)) = rest.split_once(']') else {
        return message;
    };
    let name = index.parse::<usize>().ok().and_then(|i| {
        let value: yaml_serde::Value = yaml_serde::from_str(text).ok()?;
        value
            .get("components")?
            .get(i)?
            .get("name")?
            .as_str()
            .map(str::to_owned)
    });
    match name {
        Some(name) => format!("component {name} (components[{index}]){rest}"),
        None => message,
    }
}

fn problem(c: &Component, field: &str, message: &str) -> Problem {
    Problem {
        component: c.name.clone(),
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_component(catalog: &Catalog, c: &Component, out: &mut Vec<Problem>) {
    let mut push = |field: String, message: String| {
        out.push(Problem {
            component: c.name.clone(),
            field,
            message,
        })
    };
    if !is_dns_label(&c.name) {
        push(
            "name".into(),
            "must be a DNS label (lowercase letters, digits, '-')".into(),
        );
    }

    // Ports: names and (number, protocol) unique; probes name a declared TCP port.
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, p) in c.ports.iter().enumerate() {
        if !names.insert(p.name.as_str()) {
            push(
                format!("ports[{i}].name"),
                format!("port name {:?} is used twice", p.name),
            );
        }
        if !numbers.insert((p.port, p.protocol)) {
            push(
                format!("ports[{i}].port"),
                format!("port {} is used twice", p.port),
            );
        }
        if p.port == 0 {
            push(format!("ports[{i}].port"), "port 0 is not a port".into());
        }
    }
    let probes = [
        ("readiness", Some(&c.readiness)),
        ("liveness", c.liveness.as_ref()),
    ];
    for (field, probe) in probes {
        let Some(probe) = probe else { continue };
        match c.ports.iter().find(|p| p.name == probe.port()) {
            None => push(
                format!("{field}.port"),
                format!("names no port of the component: {:?}", probe.port()),
            ),
            Some(p) if p.protocol != Protocol::Tcp => push(
                format!("{field}.port"),
                format!("port {:?} is UDP; a probe needs a TCP port", p.name),
            ),
            Some(_) => {}
        }
        if let Probe::Http { path, .. } = probe
            && !path.starts_with('/')
        {
            push(
                format!("{field}.path"),
                format!("{path:?} must start with '/'"),
            );
        }
    }

    // Dependencies.
    for (i, dep) in c.depends_on.iter().enumerate() {
        if dep == &c.name {
            push(
                format!("dependsOn[{i}]"),
                "a component cannot depend on itself".into(),
            );
        } else if catalog.component(dep).is_none() {
            push(
                format!("dependsOn[{i}]"),
                format!("no component named {dep:?} in the catalog"),
            );
        }
    }

    // Volumes and data stores.
    let volumes: BTreeSet<&str> = c.volumes.iter().map(|v| v.name.as_str()).collect();
    if volumes.len() != c.volumes.len() {
        push("volumes".into(), "a volume name is used twice".into());
    }
    for (i, v) in c.volumes.iter().enumerate() {
        if !v.mount_path.starts_with('/') {
            push(
                format!("volumes[{i}].mountPath"),
                format!("{:?} must be absolute", v.mount_path),
            );
        }
    }
    if !c.volumes.is_empty() && c.workload == Workload::Deployment {
        push(
            "workload".into(),
            "a component with volumes runs as a statefulSet (one volume per replica)".into(),
        );
    }
    for (i, w) in c.writes.iter().enumerate() {
        let field = format!("writes[{i}]");
        match w.kind {
            StoreKind::Volume => {
                if w.on != c.name {
                    push(
                        format!("{field}.on"),
                        "a volume store is on the writer itself".into(),
                    );
                }
                if !volumes.contains(w.name.as_str()) {
                    push(
                        format!("{field}.name"),
                        format!("names no volume of the component: {:?}", w.name),
                    );
                }
            }
            _ => {
                if catalog.component(&w.on).is_none() {
                    push(
                        format!("{field}.on"),
                        format!("no component named {:?} in the catalog", w.on),
                    );
                } else if w.on != c.name && !c.depends_on.contains(&w.on) {
                    push(
                        format!("{field}.on"),
                        format!(
                            "the component writes to {:?} but does not depend on it",
                            w.on
                        ),
                    );
                }
            }
        }
    }
    if let Some(b) = &c.backup {
        let fields = b.schedule.split_whitespace().count();
        if fields != 5 {
            push(
                "backup.schedule".into(),
                format!("{:?} is not a five-field cron schedule", b.schedule),
            );
        }
        if !c
            .writes
            .iter()
            .any(|w| w.kind == StoreKind::Bucket && w.name == b.bucket)
        {
            push(
                "backup.bucket".into(),
                format!("{:?} is not a bucket the component writes", b.bucket),
            );
        }
    }

    // Sizing: every profile, resources well-formed, requests within limits, every volume sized.
    for profile in Profile::ALL {
        let Some(s) = c.sizing.get(&profile) else {
            push(
                format!("sizing.{profile}"),
                "missing: every component is sized for every profile".into(),
            );
            continue;
        };
        let at = |f: &str| format!("sizing.{profile}.{f}");
        if s.replicas == 0 {
            push(at("replicas"), "at least one replica".into());
        }
        let cpu = [
            ("requests.cpu", &s.requests.cpu),
            ("limits.cpu", &s.limits.cpu),
        ]
        .map(|(f, v)| (f, millicores(v)));
        let mem = [
            ("requests.memory", &s.requests.memory),
            ("limits.memory", &s.limits.memory),
        ]
        .map(|(f, v)| (f, bytes(v)));
        for (f, v) in cpu.iter().chain(mem.iter()) {
            if v.is_none() {
                let (value, expected) = match *f {
                    "requests.cpu" => (&s.requests.cpu, "cores (2, 1.5) or millicores (500m)"),
                    "limits.cpu" => (&s.limits.cpu, "cores (2, 1.5) or millicores (500m)"),
                    "requests.memory" => (&s.requests.memory, "a size with Ki, Mi, Gi or Ti"),
                    _ => (&s.limits.memory, "a size with Ki, Mi, Gi or Ti"),
                };
                push(at(f), format!("{value:?} is not {expected}"));
            }
        }
        if let (Some(r), Some(l)) = (cpu[0].1, cpu[1].1)
            && r > l
        {
            push(
                at("requests.cpu"),
                format!("{} exceeds the limit {}", s.requests.cpu, s.limits.cpu),
            );
        }
        if let (Some(r), Some(l)) = (mem[0].1, mem[1].1)
            && r > l
        {
            push(
                at("requests.memory"),
                format!(
                    "{} exceeds the limit {}",
                    s.requests.memory, s.limits.memory
                ),
            );
        }
        for v in &c.volumes {
            match s.storage.get(&v.name) {
                None => push(at("storage"), format!("no size for volume {:?}", v.name)),
                Some(size) if bytes(size).is_none() => push(
                    format!("sizing.{profile}.storage.{}", v.name),
                    format!("{size:?} is not a size with Ki, Mi, Gi or Ti"),
                ),
                Some(_) => {}
            }
        }
        for name in s.storage.keys() {
            if !volumes.contains(name.as_str()) {
                push(
                    format!("sizing.{profile}.storage.{name}"),
                    "names no volume of the component".into(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small valid catalog the rule tests break one field at a time.
    const BASE: &str = r#"
version: test
components:
  - name: db
    description: a database
    image: docker.io/library/postgres:17
    workload: statefulSet
    ports: [{name: sql, port: 5432}]
    readiness: {tcp: {port: sql}}
    volumes: [{name: data, mountPath: /var/lib/postgresql/data}]
    writes:
      - {kind: volume, name: data, on: db, class: documents}
      - {kind: bucket, name: db-backups, on: store, class: backups}
    backup: {schedule: "0 2 * * *", bucket: db-backups}
    dependsOn: [store]
    sizing:
      users500: {replicas: 1, requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: "1", memory: 2Gi}, storage: {data: 10Gi}}
      users5000: {replicas: 1, requests: {cpu: "1", memory: 2Gi}, limits: {cpu: "2", memory: 4Gi}, storage: {data: 50Gi}}
      users50000: {replicas: 1, requests: {cpu: "2", memory: 4Gi}, limits: {cpu: "4", memory: 8Gi}, storage: {data: 500Gi}}
  - name: store
    description: an object store
    image: docker.io/chrislusf/seaweedfs:3.65
    workload: deployment
    ports: [{name: s3, port: 8333}, {name: media, port: 10000, protocol: UDP}]
    readiness: {http: {path: /status, port: s3}}
    sizing:
      users500: {replicas: 1, requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: 500m, memory: 256Mi}}
      users5000: {replicas: 1, requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: 500m, memory: 256Mi}}
      users50000: {replicas: 2, requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: 500m, memory: 256Mi}}
"#;

    /// Parses `BASE` with `from` replaced by `to` (once, and it must be there) and returns the
    /// error message, or "ok".
    fn check(from: &str, to: &str, expected: &str) {
        assert!(
            BASE.contains(from),
            "the test edits {from:?}, which BASE lacks"
        );
        let text = BASE.replacen(from, to, 1);
        let got = match Catalog::parse(&text) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected, "after replacing {from:?} with {to:?}");
    }

    #[test]
    fn the_base_catalog_is_valid() {
        check("version: test", "version: test", "ok");
    }

    #[test]
    fn unknown_fields_and_missing_fields_are_refused_with_their_path() {
        let got = Catalog::parse(&BASE.replacen(
            "workload: deployment",
            "workload: deployment\n    replicas: 3",
            1,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            got.starts_with(
                "stack catalog: component store (components[1]): unknown field `replicas`"
            ),
            "{got}"
        );
        let got = Catalog::parse(&BASE.replacen("    description: a database\n", "", 1))
            .unwrap_err()
            .to_string();
        assert!(
            got.starts_with(
                "stack catalog: component db (components[0]): missing field `description`"
            ),
            "{got}"
        );
    }

    #[test]
    fn dependencies_must_name_components() {
        check(
            "dependsOn: [store]",
            "dependsOn: [store, cache]",
            "stack catalog: component db: dependsOn[1]: no component named \"cache\" in the catalog",
        );
        check(
            "dependsOn: [store]",
            "dependsOn: [store, db]",
            "stack catalog: component db: dependsOn[1]: a component cannot depend on itself",
        );
    }

    #[test]
    fn dependency_cycles_are_refused_with_the_cycle() {
        check(
            "    workload: deployment\n",
            "    workload: deployment\n    dependsOn: [db]\n",
            "stack catalog: component db: dependsOn: dependency cycle: db -> store -> db",
        );
    }

    #[test]
    fn ports_are_unique_per_component() {
        check(
            "ports: [{name: sql, port: 5432}]",
            "ports: [{name: sql, port: 5432}, {name: admin, port: 5432}]",
            "stack catalog: component db: ports[1].port: port 5432 is used twice",
        );
        check(
            "ports: [{name: sql, port: 5432}]",
            "ports: [{name: sql, port: 5432}, {name: sql, port: 5433}]",
            "stack catalog: component db: ports[1].name: port name \"sql\" is used twice",
        );
        // The same number over TCP and UDP is two ports.
        check(
            "{name: media, port: 10000, protocol: UDP}",
            "{name: media, port: 8333, protocol: UDP}",
            "ok",
        );
    }

    #[test]
    fn probes_name_a_tcp_port_of_the_component() {
        check(
            "readiness: {tcp: {port: sql}}",
            "readiness: {tcp: {port: http}}",
            "stack catalog: component db: readiness.port: names no port of the component: \"http\"",
        );
        check(
            "readiness: {http: {path: /status, port: s3}}",
            "readiness: {http: {path: /status, port: media}}",
            "stack catalog: component store: readiness.port: port \"media\" is UDP; a probe needs a TCP port",
        );
        check(
            "path: /status",
            "path: status",
            "stack catalog: component store: readiness.path: \"status\" must start with '/'",
        );
    }

    #[test]
    fn every_profile_is_sized() {
        check(
            "      users50000: {replicas: 2,",
            "      users5001: {replicas: 2,",
            "stack catalog: component store (components[1]).sizing: unknown variant `users5001`, expected one of `users500`, `users5000`, `users50000` at line 29 column 7",
        );
        let text = BASE.replacen(
            "      users50000: {replicas: 2, requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: 500m, memory: 256Mi}}\n",
            "",
            1,
        );
        assert_eq!(
            Catalog::parse(&text).unwrap_err().to_string(),
            "stack catalog: component store: sizing.users50000: missing: every component is sized for every profile"
        );
    }

    #[test]
    fn resources_are_quantities_and_requests_fit_in_limits() {
        check(
            "requests: {cpu: \"1\", memory: 2Gi}",
            "requests: {cpu: \"1 core\", memory: 2GB}",
            "stack catalog: component db: sizing.users5000.requests.cpu: \"1 core\" is not cores (2, 1.5) or millicores (500m); component db: sizing.users5000.requests.memory: \"2GB\" is not a size with Ki, Mi, Gi or Ti",
        );
        check(
            "requests: {cpu: \"1\", memory: 2Gi}",
            "requests: {cpu: \"2.5\", memory: 8Gi}",
            "stack catalog: component db: sizing.users5000.requests.cpu: 2.5 exceeds the limit 2; component db: sizing.users5000.requests.memory: 8Gi exceeds the limit 4Gi",
        );
        check(
            "{replicas: 2,",
            "{replicas: 0,",
            "stack catalog: component store: sizing.users50000.replicas: at least one replica",
        );
    }

    #[test]
    fn volumes_are_sized_and_stores_point_at_real_places() {
        check(
            "storage: {data: 50Gi}",
            "storage: {}",
            "stack catalog: component db: sizing.users5000.storage: no size for volume \"data\"",
        );
        check(
            "storage: {data: 50Gi}",
            "storage: {data: 50Gi, logs: 1Gi}",
            "stack catalog: component db: sizing.users5000.storage.logs: names no volume of the component",
        );
        check(
            "{kind: volume, name: data, on: db, class: documents}",
            "{kind: volume, name: pgdata, on: db, class: documents}",
            "stack catalog: component db: writes[0].name: names no volume of the component: \"pgdata\"",
        );
        check(
            "{kind: bucket, name: db-backups, on: store, class: backups}",
            "{kind: bucket, name: db-backups, on: s3, class: backups}",
            "stack catalog: component db: writes[1].on: no component named \"s3\" in the catalog",
        );
        check(
            "class: documents}",
            "class: secrets}",
            "stack catalog: component db (components[0]).writes[0].class: unknown variant `secrets`, expected one of `documents`, `messages`, `identities`, `search-index`, `cache`, `backups`, `media`, `objects`, `metadata`, `mail-queue`, `configuration` at line 12 column 51",
        );
        check(
            "workload: statefulSet",
            "workload: deployment",
            "stack catalog: component db: workload: a component with volumes runs as a statefulSet (one volume per replica)",
        );
    }

    #[test]
    fn a_store_on_another_component_needs_the_dependency() {
        check(
            "    dependsOn: [store]\n",
            "",
            "stack catalog: component db: writes[1].on: the component writes to \"store\" but does not depend on it",
        );
    }

    #[test]
    fn backups_go_to_a_bucket_the_component_writes_on_a_cron_schedule() {
        check(
            "bucket: db-backups}",
            "bucket: dumps}",
            "stack catalog: component db: backup.bucket: \"dumps\" is not a bucket the component writes",
        );
        check(
            "schedule: \"0 2 * * *\"",
            "schedule: daily",
            "stack catalog: component db: backup.schedule: \"daily\" is not a five-field cron schedule",
        );
    }

    #[test]
    fn image_references_are_well_formed() {
        let expected = |reason: &str, image: &str| {
            format!(
                "stack catalog: component db (components[0]): image reference {image:?}: {reason}; expected registry/repository:tag[@sha256:<64 hex>] at line 4 column 5"
            )
        };
        let cases = [
            (
                "library/postgres:17",
                "the first part must be a registry host (docker.io, quay.io)",
            ),
            ("postgres:17", "no registry"),
            ("docker.io/library/postgres", "no tag"),
            (
                "docker.io/library/Postgres:17",
                "the repository must be lowercase path components",
            ),
            (
                "docker.io/library/postgres:17@sha256:abc",
                "a sha256 digest is 64 lowercase hexadecimal digits",
            ),
            (
                "docker.io/library/postgres:17@md5:abc",
                "the digest must start with sha256:",
            ),
        ];
        for (image, reason) in cases {
            check(
                "docker.io/library/postgres:17",
                image,
                &expected(reason, image),
            );
        }
        let pinned = format!("docker.io/library/postgres:17@sha256:{}", "ab".repeat(32));
        check("docker.io/library/postgres:17", &pinned, "ok");
        let image: ImageRef = "localhost:5000/a/b:1.0".parse().unwrap();
        assert_eq!(
            (
                image.registry.as_str(),
                image.repository.as_str(),
                image.tag.as_str()
            ),
            ("localhost:5000", "a/b", "1.0")
        );
    }

    #[test]
    fn digests_can_be_required_and_the_unpinned_images_are_named() {
        let catalog = Catalog::parse(BASE).unwrap();
        assert_eq!(
            catalog.require_digests().unwrap_err().to_string(),
            "stack catalog: images not pinned by digest: db: docker.io/library/postgres:17; store: docker.io/chrislusf/seaweedfs:3.65"
        );
        let pinned = BASE.replacen(
            "postgres:17",
            &format!("postgres:17@sha256:{}", "0".repeat(64)),
            1,
        );
        let catalog = Catalog::parse(&pinned).unwrap();
        assert_eq!(
            catalog.unpinned_images(),
            ["store: docker.io/chrislusf/seaweedfs:3.65"]
        );
        let all = pinned.replacen(
            "seaweedfs:3.65",
            &format!("seaweedfs:3.65@sha256:{}", "1".repeat(64)),
            1,
        );
        assert_eq!(Catalog::parse(&all).unwrap().require_digests(), Ok(()));
    }

    #[test]
    fn the_registry_can_be_rewritten_for_an_air_gapped_site() {
        let pinned = BASE.replacen(
            "postgres:17",
            &format!("postgres:17@sha256:{}", "0".repeat(64)),
            1,
        );
        let catalog = Catalog::parse(&pinned).unwrap();
        let mirrored = catalog
            .with_registry("registry.ministere.fr:5000/hexagone/")
            .unwrap();
        let images: Vec<String> = mirrored
            .components
            .iter()
            .map(|c| c.image.to_string())
            .collect();
        assert_eq!(
            images,
            [
                format!(
                    "registry.ministere.fr:5000/hexagone/library/postgres:17@sha256:{}",
                    "0".repeat(64)
                ),
                "registry.ministere.fr:5000/hexagone/chrislusf/seaweedfs:3.65".to_owned(),
            ]
        );
        // Everything but the images is unchanged.
        let mut back = mirrored.clone();
        for (b, c) in back.components.iter_mut().zip(&catalog.components) {
            b.image = c.image.clone();
        }
        assert_eq!(back, catalog);
        assert_eq!(
            catalog.with_registry("mirror").unwrap_err().reason,
            "the first part must be a registry host (docker.io, quay.io)"
        );
    }

    #[test]
    fn the_shipped_catalog_is_valid_and_complete() {
        let catalog = Catalog::shipped();
        let names: Vec<&str> = catalog.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "exo",
                "synapse",
                "jitsi-web",
                "jitsi-prosody",
                "jitsi-jicofo",
                "jitsi-jvb",
                "coturn",
                "onlyoffice",
                "search",
                "keycloak",
                "postgresql",
                "mysql",
                "valkey",
                "seaweedfs-master",
                "seaweedfs-volume",
                "seaweedfs-filer",
            ]
        );
        // No digest is invented: none can be checked from here.
        assert_eq!(catalog.unpinned_images().len(), catalog.components.len());
        // Both databases back up to the object store.
        for name in ["postgresql", "mysql"] {
            let db = catalog.component(name).unwrap();
            let bucket = &db.backup.as_ref().unwrap().bucket;
            let store = db.writes.iter().find(|w| &w.name == bucket).unwrap();
            assert_eq!(
                (store.on.as_str(), store.class),
                ("seaweedfs-filer", DataClass::Backups),
                "{name}"
            );
        }
        // The stores the issue names: eXo's database, file volume and search index.
        let exo = catalog.component("exo").unwrap();
        let kinds: BTreeSet<StoreKind> = exo.writes.iter().map(|w| w.kind).collect();
        assert_eq!(
            kinds,
            BTreeSet::from([StoreKind::Database, StoreKind::Volume, StoreKind::Index])
        );
        // Every component comes after what it needs.
        let order = catalog.dependency_order().unwrap();
        for c in &catalog.components {
            let at = order.iter().position(|n| *n == c.name).unwrap();
            for dep in &c.depends_on {
                assert!(
                    order.iter().position(|n| n == dep).unwrap() < at,
                    "{} before {dep}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn one_videobridge_per_200_concurrent_participants() {
        // The sizing rule cited in the catalog: 10% of users in calls at peak, 200 per bridge.
        let jvb = Catalog::shipped().component("jitsi-jvb").unwrap();
        for (profile, users) in [
            (Profile::Users500, 500u32),
            (Profile::Users5000, 5_000),
            (Profile::Users50000, 50_000),
        ] {
            let expected = (users / 10).div_ceil(200);
            assert_eq!(jvb.sizing[&profile].replicas, expected, "{profile}");
        }
    }

    #[test]
    fn the_shipped_digest_names_the_text() {
        let digest = Catalog::shipped_digest();
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
    }
}
