//! Image contracts (feature `k8s`): what each catalog image needs from the pod that runs it, and
//! the check of rendered pods against it. The shipped contracts are the data file
//! `platform/data/image-contracts.yaml`, embedded at build time; this module owns its format,
//! loads it, checks it against the catalog, and checks rendered objects. Pure: no I/O.
//!
//! A contract is per catalog component (the three SeaweedFS roles share one image but not one
//! contract) and names the image repository and tag it was read from. A container whose image
//! has no contract is itself a breach, so an image override cannot slip past the check.
//!
//! Containers that run the image's own entrypoint are checked against every fact. Init
//! containers and containers whose `command` is set run a tool of the image (a copy, a dump, a
//! build), not the image's service: they are checked for identity and hardening only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{Catalog, ImageRef};
use crate::render::{COMPONENT_LABEL, Rendered};

/// The contracts as shipped.
const TEXT: &str = include_str!("../../data/image-contracts.yaml");

/// Where a breach of the contract file itself points.
const CONTRACTS_FILE: &str = "platform/data/image-contracts.yaml";

/// Every image contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageContracts {
    /// Date of the last review of the file.
    pub version: String,
    /// One per catalog component.
    pub contracts: Vec<ImageContract>,
}

/// What one image needs from its pod, each fact with its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageContract {
    /// The catalog component running the image.
    pub component: String,
    /// The image the facts were read from (registry, repository and tag).
    pub image: ImageRef,
    /// Who the image runs as.
    pub run_as: RunAs,
    /// Whether and how it runs under the restricted Pod Security Standard.
    pub restricted: Restricted,
    /// Deviations the check accepts, each with why.
    #[serde(default)]
    pub exceptions: Vec<Exception>,
    /// Every path the process writes.
    #[serde(default)]
    pub writable_paths: Vec<WritablePath>,
    /// Files that must exist when the process starts.
    #[serde(default)]
    pub required_files: Vec<RequiredFile>,
    /// Environment variables the image reads.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// What the image listens on.
    #[serde(default)]
    pub ports: Vec<ContractPort>,
    /// How long a first start may take.
    pub first_start: FirstStart,
    /// Capabilities the image's binaries cannot run without (a file capability the kernel
    /// refuses to execute when the bounding set lacks it): the only ones a container may add.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
}

/// A capability an image needs, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capability {
    /// Its name without the `CAP_` prefix, as Kubernetes spells it (`NET_BIND_SERVICE`).
    pub name: String,
    /// What needs it.
    pub why: String,
    /// Where this was read.
    pub source: String,
}

/// The one capability the restricted Pod Security Standard lets a container add
/// (kubernetes.io/docs/concepts/security/pod-security-standards, "Capabilities (v1.22+)").
pub const RESTRICTED_ADDABLE: &str = "NET_BIND_SERVICE";

/// The user and group the image's files and processes belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunAs {
    /// Numeric user id.
    pub uid: i64,
    /// Numeric group id.
    pub gid: i64,
    /// The entrypoint must start as root (to chown, then drop privileges).
    #[serde(default)]
    pub starts_as_root: bool,
    /// Where this was read.
    pub source: String,
}

/// Whether the image runs under the restricted standard with a read-only root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Restricted {
    /// It can.
    pub ok: bool,
    /// How, or the narrowest exception when it cannot.
    pub how: String,
    /// Where this was read.
    pub source: String,
}

/// A deviation from the rules that the check accepts for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exception {
    /// The rule waived.
    pub rule: Rule,
    /// Why the image cannot meet it.
    pub why: String,
    /// Where this was read.
    pub source: String,
}

/// A path the process writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WritablePath {
    /// Absolute path.
    pub path: String,
    /// What is written there.
    pub why: String,
    /// Where this was read.
    pub source: String,
    /// The init container that copies the image's own content of the path into its emptyDir
    /// (the path holds files the image needs, which an empty volume would hide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// A memory-backed emptyDir (`/dev/shm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tmpfs: bool,
    /// The directory must be empty at first start, so a volume is mounted through a subPath
    /// (the root of a filesystem holds `lost+found`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub must_start_empty: bool,
    /// `NAME=value`: the path is not written when the container sets that variable so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless_env: Option<String>,
}

/// A file that must exist at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequiredFile {
    /// Absolute path.
    pub path: String,
    /// Why the image needs it.
    pub why: String,
    /// Where this was read.
    pub source: String,
    /// The image ships it: no mount may hide it, unless `filled_by` copies it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_image: bool,
    /// The init container that puts it in the emptyDir mounted over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filled_by: Option<String>,
}

/// An environment variable the image reads (`PREFIX_*` for a family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Its name, or a prefix followed by `*`.
    pub name: String,
    /// Where the image reads it.
    pub source: String,
}

impl EnvVar {
    fn matches(&self, name: &str) -> bool {
        match self.name.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.name == name,
        }
    }
}

/// A port the image listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContractPort {
    /// Its name.
    pub name: String,
    /// Its number.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// Where this was read.
    pub source: String,
}

/// How long a first start may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirstStart {
    /// Seconds from container start to answering its health check, on an empty volume.
    pub seconds: u32,
    /// Where this was read, or why it is an estimate.
    pub source: String,
}

/// The rule a breach breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The container's image has no contract.
    UnknownImage,
    /// The container does not run as the image's uid/gid.
    Identity,
    /// The root filesystem is writable.
    ReadOnlyRoot,
    /// Privilege escalation, capabilities, seccomp or runAsNonRoot.
    Hardening,
    /// A path the image writes is not on a writable mount.
    WritablePath,
    /// A file the image needs is not provided.
    RequiredFile,
    /// A variable is set that the image does not read.
    Env,
    /// A port is declared that the image does not listen on.
    Port,
    /// A probe would kill the first start.
    FirstStart,
}

impl Rule {
    /// The name used in the contract file and in breaches.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::UnknownImage => "unknown-image",
            Rule::Identity => "identity",
            Rule::ReadOnlyRoot => "read-only-root",
            Rule::Hardening => "hardening",
            Rule::WritablePath => "writable-path",
            Rule::RequiredFile => "required-file",
            Rule::Env => "env",
            Rule::Port => "port",
            Rule::FirstStart => "first-start",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rendered container that does not meet its image's contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractBreach {
    /// The component (the workload's component label).
    pub component: String,
    /// The workload kind and name (`StatefulSet/mysql`).
    pub workload: String,
    /// The container.
    pub container: String,
    /// The rule broken.
    pub rule: Rule,
    /// The fact of the contract and what was rendered instead.
    pub fact: String,
    /// The fact's source.
    pub source: String,
}

impl fmt::Display for ContractBreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "component {} ({}, container {}): {}: {} [source: {}]",
            self.component, self.workload, self.container, self.rule, self.fact, self.source
        )
    }
}

/// Why a contract file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The file is not in the expected layout (serde's path, line and column).
    #[error("image contracts: {0}")]
    Parse(String),
    /// The file parses but breaks a rule; each problem names the component and the field.
    #[error("image contracts: {}", problems.join("; "))]
    Invalid {
        /// Every rule broken, in file order.
        problems: Vec<String>,
    },
}

impl ImageContracts {
    /// The shipped contracts (parsed and validated once).
    pub fn shipped() -> &'static ImageContracts {
        static CONTRACTS: OnceLock<ImageContracts> = OnceLock::new();
        CONTRACTS.get_or_init(|| {
            // The file is part of the source tree and checked by this module's tests.
            ImageContracts::parse(TEXT).expect("platform/data/image-contracts.yaml is valid")
        })
    }

    /// Parses and validates contracts in the shipped layout.
    pub fn parse(text: &str) -> Result<ImageContracts, ContractError> {
        let c: ImageContracts =
            yaml_serde::from_str(text).map_err(|e| ContractError::Parse(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// The contract of a component.
    pub fn for_component(&self, component: &str) -> Option<&ImageContract> {
        self.contracts.iter().find(|c| c.component == component)
    }

    /// Checks every rule of the file and reports every problem, in file order.
    pub fn validate(&self) -> Result<(), ContractError> {
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for c in &self.contracts {
            let mut bad = |field: &str, what: &str| {
                problems.push(format!("component {}: {field}: {what}", c.component))
            };
            if !seen.insert(c.component.as_str()) {
                bad("component", "listed twice");
            }
            if c.run_as.source.trim().is_empty() {
                bad("runAs.source", "empty: every fact carries its source");
            }
            if c.restricted.source.trim().is_empty() {
                bad("restricted.source", "empty");
            }
            if c.first_start.source.trim().is_empty() {
                bad("firstStart.source", "empty");
            }
            let seeds: BTreeSet<&str> = c
                .writable_paths
                .iter()
                .filter_map(|w| w.seed.as_deref())
                .collect();
            for (i, w) in c.writable_paths.iter().enumerate() {
                let field = format!("writablePaths[{i}]");
                if !w.path.starts_with('/') {
                    bad(&field, "path must be absolute");
                }
                if w.source.trim().is_empty() {
                    bad(&format!("{field}.source"), "empty");
                }
                if w.unless_env.as_deref().is_some_and(|u| !u.contains('=')) {
                    bad(&format!("{field}.unlessEnv"), "expected NAME=value");
                }
            }
            for (i, r) in c.required_files.iter().enumerate() {
                let field = format!("requiredFiles[{i}]");
                if !r.path.starts_with('/') {
                    bad(&field, "path must be absolute");
                }
                if r.source.trim().is_empty() {
                    bad(&format!("{field}.source"), "empty");
                }
                if let Some(f) = &r.filled_by
                    && !seeds.contains(f.as_str())
                {
                    bad(
                        &format!("{field}.filledBy"),
                        "names no seed init container of a writable path",
                    );
                }
            }
            for (i, e) in c.env.iter().enumerate() {
                let valid = !e.name.is_empty()
                    && e.name
                        .trim_end_matches('*')
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
                if !valid {
                    bad(&format!("env[{i}].name"), "not a variable name or PREFIX_*");
                }
                if e.source.trim().is_empty() {
                    bad(&format!("env[{i}].source"), "empty");
                }
            }
            for (i, cap) in c.capabilities.iter().enumerate() {
                if cap.name != RESTRICTED_ADDABLE {
                    bad(
                        &format!("capabilities[{i}].name"),
                        "the restricted standard lets a container add NET_BIND_SERVICE only",
                    );
                }
                if cap.source.trim().is_empty() {
                    bad(&format!("capabilities[{i}].source"), "empty");
                }
            }
            for (i, p) in c.ports.iter().enumerate() {
                if p.protocol != "TCP" && p.protocol != "UDP" {
                    bad(&format!("ports[{i}].protocol"), "expected TCP or UDP");
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ContractError::Invalid { problems })
        }
    }

    /// Every mismatch between the contracts and a catalog: a component without a contract, a
    /// contract for no component, or a contract read from another image (repository and tag;
    /// the registry may be a site's mirror).
    pub fn mismatches(&self, catalog: &Catalog) -> Vec<String> {
        let mut out = Vec::new();
        for comp in &catalog.components {
            match self.for_component(&comp.name) {
                None => out.push(format!(
                    "component {}: image {} has no contract in {CONTRACTS_FILE}",
                    comp.name, comp.image
                )),
                Some(c) if !same_image(&c.image, &comp.image) => out.push(format!(
                    "component {}: the catalog runs {} but its contract was read from {}",
                    comp.name, comp.image, c.image
                )),
                Some(_) => {}
            }
        }
        for c in &self.contracts {
            if catalog.component(&c.component).is_none() {
                out.push(format!(
                    "contract {}: no catalog component of that name",
                    c.component
                ));
            }
        }
        out
    }
}

fn same_image(a: &ImageRef, b: &ImageRef) -> bool {
    a.repository == b.repository && a.tag == b.tag
}

/// Checks every container of every rendered pod template (Deployments, StatefulSets, Jobs,
/// CronJobs) against its image's contract; returns every breach, in object order.
pub fn check(
    rendered: &Rendered,
    catalog: &Catalog,
    contracts: &ImageContracts,
) -> Vec<ContractBreach> {
    let config_maps: BTreeMap<&str, &Value> = rendered
        .objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .filter_map(|o| Some((o["metadata"]["name"].as_str()?, &o["data"])))
        .collect();
    let mut out = Vec::new();
    for o in &rendered.objects {
        let (pod, claims) = match o["kind"].as_str() {
            Some("Deployment") => (&o["spec"]["template"]["spec"], &Value::Null),
            Some("StatefulSet") => (
                &o["spec"]["template"]["spec"],
                &o["spec"]["volumeClaimTemplates"],
            ),
            Some("Job") => (&o["spec"]["template"]["spec"], &Value::Null),
            Some("CronJob") => (
                &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                &Value::Null,
            ),
            _ => continue,
        };
        let component = o["metadata"]["labels"][COMPONENT_LABEL]
            .as_str()
            .unwrap_or_default();
        let workload = format!(
            "{}/{}",
            o["kind"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        );
        let pod = Pod {
            spec: pod,
            claims: items(claims)
                .filter_map(|c| c["metadata"]["name"].as_str())
                .collect(),
            config_maps: &config_maps,
        };
        let inits = items(&pod.spec["initContainers"]).map(|c| (c, true));
        let mains = items(&pod.spec["containers"]).map(|c| (c, false));
        for (container, init) in inits.chain(mains) {
            let mut ctx = Ctx {
                component,
                workload: &workload,
                container: container["name"].as_str().unwrap_or_default(),
                out: &mut out,
            };
            let image = container["image"].as_str().unwrap_or_default();
            let Some(contract) = contract_of(contracts, component, image) else {
                let expected = catalog
                    .component(component)
                    .map(|c| format!(" (the catalog's image is {})", c.image))
                    .unwrap_or_default();
                ctx.breach(
                    Rule::UnknownImage,
                    format!("image {image} has no contract{expected}"),
                    CONTRACTS_FILE,
                );
                continue;
            };
            let waived = |r: Rule| contract.exceptions.iter().any(|e| e.rule == r);
            identity(&mut ctx, contract, &pod, container, &waived);
            let helper = init || !container["command"].is_null();
            if !helper {
                service(&mut ctx, contract, &pod, container);
            }
        }
    }
    out
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// The contract of a container: its component's when the image matches, else any contract read
/// from the same image (the backup job runs SeaweedFS's client in a database's CronJob).
fn contract_of<'a>(
    contracts: &'a ImageContracts,
    component: &str,
    image: &str,
) -> Option<&'a ImageContract> {
    let image: ImageRef = image.parse().ok()?;
    let matches = |c: &&ImageContract| same_image(&c.image, &image);
    contracts
        .for_component(component)
        .filter(matches)
        .or_else(|| contracts.contracts.iter().find(matches))
}

struct Pod<'a> {
    spec: &'a Value,
    claims: BTreeSet<&'a str>,
    config_maps: &'a BTreeMap<&'a str, &'a Value>,
}

impl Pod<'_> {
    fn volume(&self, name: &str) -> Option<&Value> {
        items(&self.spec["volumes"]).find(|v| v["name"] == name)
    }

    fn is_writable_volume(&self, name: &str) -> bool {
        self.claims.contains(name)
            || self.volume(name).is_some_and(|v| {
                v.get("emptyDir").is_some() || v.get("persistentVolumeClaim").is_some()
            })
    }

    fn is_claim(&self, name: &str) -> bool {
        self.claims.contains(name)
            || self
                .volume(name)
                .is_some_and(|v| v.get("persistentVolumeClaim").is_some())
    }

    fn is_empty_dir(&self, name: &str) -> bool {
        self.volume(name)
            .is_some_and(|v| v.get("emptyDir").is_some())
    }

    /// An init container of that name mounting that volume.
    fn filled_by(&self, init: &str, volume: &str) -> bool {
        items(&self.spec["initContainers"])
            .any(|c| c["name"] == init && items(&c["volumeMounts"]).any(|m| m["name"] == volume))
    }
}

struct Ctx<'a> {
    component: &'a str,
    workload: &'a str,
    container: &'a str,
    out: &'a mut Vec<ContractBreach>,
}

impl Ctx<'_> {
    fn breach(&mut self, rule: Rule, fact: String, source: &str) {
        self.out.push(ContractBreach {
            component: self.component.to_owned(),
            workload: self.workload.to_owned(),
            container: self.container.to_owned(),
            rule,
            fact,
            source: source.to_owned(),
        });
    }
}

/// The effective value of a security setting: the container's, else the pod's.
fn security<'a>(pod: &'a Pod<'_>, container: &'a Value, key: &str) -> &'a Value {
    let c = &container["securityContext"][key];
    if c.is_null() {
        &pod.spec["securityContext"][key]
    } else {
        c
    }
}

fn identity(
    ctx: &mut Ctx<'_>,
    contract: &ImageContract,
    pod: &Pod<'_>,
    container: &Value,
    waived: &dyn Fn(Rule) -> bool,
) {
    let ra = &contract.run_as;
    if !waived(Rule::Identity) {
        let uid = security(pod, container, "runAsUser").as_i64();
        if uid != Some(ra.uid) {
            ctx.breach(
                Rule::Identity,
                format!(
                    "runs as uid {}; the image runs as uid {}{}",
                    uid.map_or("unset".to_owned(), |u| u.to_string()),
                    ra.uid,
                    if ra.starts_as_root {
                        " (its entrypoint must start as root)"
                    } else {
                        ""
                    }
                ),
                &ra.source,
            );
        }
        // Unset keeps the image's own group, which is the contract's.
        if let Some(gid) = security(pod, container, "runAsGroup").as_i64()
            && gid != ra.gid
        {
            ctx.breach(
                Rule::Identity,
                format!("runs as gid {gid}; the image's group is gid {}", ra.gid),
                &ra.source,
            );
        }
    }
    if !waived(Rule::ReadOnlyRoot) && container["securityContext"]["readOnlyRootFilesystem"] != true
    {
        ctx.breach(
            Rule::ReadOnlyRoot,
            "readOnlyRootFilesystem is not true".to_owned(),
            &contract.restricted.source,
        );
    }
    if !waived(Rule::Hardening) {
        let sc = &container["securityContext"];
        let mut wrong = Vec::new();
        if sc["allowPrivilegeEscalation"] != false {
            wrong.push("allowPrivilegeEscalation is not false".to_owned());
        }
        if !items(&sc["capabilities"]["drop"]).any(|c| c == "ALL") {
            wrong.push("capabilities ALL are not dropped".to_owned());
        }
        let needed = |c: &Value| contract.capabilities.iter().any(|n| *c == n.name.as_str());
        let extra: Vec<&Value> = items(&sc["capabilities"]["add"])
            .filter(|c| !needed(c))
            .collect();
        if !extra.is_empty() {
            wrong.push(format!(
                "capabilities added that the image does not need: {}",
                Value::from(extra.into_iter().cloned().collect::<Vec<_>>())
            ));
        }
        if security(pod, container, "seccompProfile")["type"] != "RuntimeDefault" {
            wrong.push("seccomp profile is not RuntimeDefault".to_owned());
        }
        if security(pod, container, "runAsNonRoot") != true {
            wrong.push("runAsNonRoot is not true".to_owned());
        }
        for w in wrong {
            ctx.breach(Rule::Hardening, w, &contract.restricted.source);
        }
    }
}

/// The deepest mount of the container at or above `path`.
fn mount_of<'a>(container: &'a Value, path: &str) -> Option<&'a Value> {
    items(&container["volumeMounts"])
        .filter(|m| {
            let mp = m["mountPath"]
                .as_str()
                .unwrap_or_default()
                .trim_end_matches('/');
            path == mp || path.starts_with(&format!("{mp}/"))
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or_default().len())
}

/// Variables set on the container: its own and those of the ConfigMaps it takes whole.
fn rendered_env(pod: &Pod<'_>, container: &Value) -> BTreeMap<String, Option<String>> {
    let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
    for from in items(&container["envFrom"]) {
        let name = from["configMapRef"]["name"].as_str().unwrap_or_default();
        let prefix = from["prefix"].as_str().unwrap_or_default();
        if let Some(Value::Object(data)) = pod.config_maps.get(name).copied() {
            for (k, v) in data {
                env.insert(format!("{prefix}{k}"), v.as_str().map(str::to_owned));
            }
        }
    }
    for e in items(&container["env"]) {
        if let Some(name) = e["name"].as_str() {
            env.insert(name.to_owned(), e["value"].as_str().map(str::to_owned));
        }
    }
    env
}

fn service(ctx: &mut Ctx<'_>, contract: &ImageContract, pod: &Pod<'_>, container: &Value) {
    let env = rendered_env(pod, container);
    // Kubernetes substitutes $(NAME) in command, args and later variables' values: such a
    // variable feeds the command line or another variable, not the image.
    let line = format!(
        "{} {} {}",
        container["command"], container["args"], container["env"]
    );
    for name in env.keys() {
        let read = contract.env.iter().any(|e| e.matches(name));
        if !read && !line.contains(&format!("$({name})")) {
            ctx.breach(
                Rule::Env,
                format!("sets {name}, which the image does not read"),
                CONTRACTS_FILE,
            );
        }
    }

    for w in &contract.writable_paths {
        let skipped = w
            .unless_env
            .as_deref()
            .and_then(|u| u.split_once('='))
            .is_some_and(|(k, v)| env.get(k).is_some_and(|x| x.as_deref() == Some(v)));
        if skipped {
            continue;
        }
        let Some(m) = mount_of(container, &w.path) else {
            ctx.breach(
                Rule::WritablePath,
                format!("writes {} ({}): no volume is mounted there", w.path, w.why),
                &w.source,
            );
            continue;
        };
        let volume = m["name"].as_str().unwrap_or_default();
        if m["readOnly"] == true || !pod.is_writable_volume(volume) {
            ctx.breach(
                Rule::WritablePath,
                format!(
                    "writes {} ({}): mounted from {volume}, which is not a writable emptyDir or claim",
                    w.path, w.why
                ),
                &w.source,
            );
            continue;
        }
        if let Some(seed) = &w.seed
            && m["mountPath"] == w.path.as_str()
            && !(pod.is_empty_dir(volume) && pod.filled_by(seed, volume))
        {
            ctx.breach(
                Rule::WritablePath,
                format!(
                    "{} holds the image's own files: its emptyDir must be filled by init container {seed}",
                    w.path
                ),
                &w.source,
            );
        }
        if w.must_start_empty
            && m["mountPath"] == w.path.as_str()
            && pod.is_claim(volume)
            && m["subPath"].as_str().is_none_or(str::is_empty)
        {
            ctx.breach(
                Rule::WritablePath,
                format!(
                    "{} must be empty at first start: mount the volume through a subPath (its root holds lost+found)",
                    w.path
                ),
                &w.source,
            );
        }
    }

    for r in &contract.required_files {
        if let Some(missing) = required_file(pod, container, r) {
            ctx.breach(
                Rule::RequiredFile,
                format!("{} ({}): {missing}", r.path, r.why),
                &r.source,
            );
        }
    }

    for p in items(&container["ports"]) {
        let number = p["containerPort"].as_u64();
        let protocol = p["protocol"].as_str().unwrap_or("TCP");
        let listens = contract
            .ports
            .iter()
            .any(|c| Some(u64::from(c.port)) == number && c.protocol == protocol);
        if !listens {
            ctx.breach(
                Rule::Port,
                format!(
                    "declares port {}/{protocol}, on which the image does not listen",
                    p["containerPort"]
                ),
                CONTRACTS_FILE,
            );
        }
    }

    let budget = |p: &Value| {
        let n = |k: &str, d: u64| p[k].as_u64().unwrap_or(d);
        n("initialDelaySeconds", 0) + n("periodSeconds", 10) * n("failureThreshold", 3)
    };
    let startup = &container["startupProbe"];
    let liveness = &container["livenessProbe"];
    let killing = if !startup.is_null() {
        Some(("startupProbe", budget(startup)))
    } else if !liveness.is_null() {
        Some(("livenessProbe without a startupProbe", budget(liveness)))
    } else {
        None
    };
    if let Some((which, seconds)) = killing
        && seconds < u64::from(contract.first_start.seconds)
    {
        ctx.breach(
            Rule::FirstStart,
            format!(
                "{which} restarts the container after {seconds} s; a first start may take {} s",
                contract.first_start.seconds
            ),
            &contract.first_start.source,
        );
    }
}

/// Why a required file is missing, if it is.
fn required_file(pod: &Pod<'_>, container: &Value, r: &RequiredFile) -> Option<String> {
    let Some(m) = mount_of(container, &r.path) else {
        return (!r.in_image).then(|| "no mounted ConfigMap or Secret provides it".to_owned());
    };
    let name = m["name"].as_str().unwrap_or_default();
    let Some(volume) = pod.volume(name) else {
        // A claim: an empty volume on first start.
        return Some(format!("hidden by volume {name}, which starts empty"));
    };
    if let Some(cm) = volume["configMap"]["name"].as_str() {
        let mount_path = m["mountPath"].as_str().unwrap_or_default();
        let key = match m["subPath"].as_str() {
            Some(sub) if mount_path == r.path => sub.to_owned(),
            _ => r.path[mount_path.len()..]
                .trim_start_matches('/')
                .to_owned(),
        };
        let present = pod
            .config_maps
            .get(cm)
            .is_some_and(|data| data.get(&key).is_some());
        return (!present).then(|| format!("ConfigMap {cm} has no key {key}"));
    }
    if volume.get("secret").is_some() || volume.get("projected").is_some() {
        return None;
    }
    match &r.filled_by {
        Some(init) if pod.filled_by(init, name) => None,
        Some(init) => Some(format!(
            "volume {name} is mounted over it and init container {init} does not fill it"
        )),
        None => Some(format!("hidden by volume {name}, which starts empty")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A contract for a made-up image, with one fact of every kind.
    const CONTRACT: &str = r#"
version: test
contracts:
  - component: app
    image: docker.io/example/app:1.0
    runAs: {uid: 999, gid: 999, source: "example/app@1.0:Dockerfile:3"}
    restricted: {ok: true, how: "as is", source: "example/app@1.0:README.md:9"}
    writablePaths:
      - {path: /data, why: "state", source: "example/app@1.0:Dockerfile:5"}
      - {path: /opt/app, why: "rewrites its config", source: "example/app@1.0:start.sh:7", seed: copy-app}
      - {path: /var/lib/db, why: "datadir", source: "example/app@1.0:start.sh:8", mustStartEmpty: true}
      - {path: /certs, why: "self-signed keys", source: "example/app@1.0:start.sh:9", unlessEnv: "NO_TLS=1"}
    requiredFiles:
      - {path: /conf/app.yaml, why: "refuses to start", source: "example/app@1.0:start.sh:2"}
      - {path: /opt/app/template.xml, why: "shipped", source: "example/app@1.0:start.sh:3", inImage: true, filledBy: copy-app}
    env:
      - {name: APP_CONFIG, source: "example/app@1.0:start.sh:1"}
      - {name: NO_TLS, source: "example/app@1.0:start.sh:9"}
      - {name: APP_OPT_*, source: "example/app@1.0:start.sh:4"}
    ports:
      - {name: http, port: 8080, protocol: TCP, source: "example/app@1.0:Dockerfile:9"}
    firstStart: {seconds: 300, source: "example/app@1.0:README.md:20"}
"#;

    /// A pod that meets every fact of [`CONTRACT`].
    fn good() -> (Value, Value) {
        let sc = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": true});
        let pod = json!({
            "securityContext": {"runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "app-data"}},
                {"name": "app", "emptyDir": {}},
                {"name": "db", "persistentVolumeClaim": {"claimName": "app-db"}},
                {"name": "certs", "emptyDir": {}},
                {"name": "conf", "configMap": {"name": "app-files"}}
            ],
            "initContainers": [{"name": "copy-app", "image": "docker.io/example/app:1.0",
                "command": ["sh", "-c", "cp -a /opt/app/. /seed/"], "securityContext": sc,
                "volumeMounts": [{"name": "app", "mountPath": "/seed"}]}],
            "containers": [{"name": "app", "image": "docker.io/example/app:1.0",
                "envFrom": [{"configMapRef": {"name": "app-config"}}],
                "env": [{"name": "APP_OPT_X", "value": "1"}],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "livenessProbe": {"tcpSocket": {"port": "http"}},
                "startupProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "failureThreshold": 30},
                "securityContext": sc,
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "app", "mountPath": "/opt/app"},
                    {"name": "db", "mountPath": "/var/lib/db", "subPath": "db"},
                    {"name": "certs", "mountPath": "/certs"},
                    {"name": "conf", "mountPath": "/conf"}
                ]}]
        });
        let config = json!({"APP_CONFIG": "/conf/app.yaml"});
        (pod, config)
    }

    /// The pod as the Deployment of component `app`, with its ConfigMaps.
    fn rendered_of(pod: Value, config: Value) -> Rendered {
        let meta = |name: &str| json!({"name": name, "labels": {COMPONENT_LABEL: "app"}});
        Rendered {
            storage_class: None,
            objects: vec![
                json!({"kind": "ConfigMap", "metadata": meta("app-config"), "data": config}),
                json!({"kind": "ConfigMap", "metadata": meta("app-files"), "data": {"app.yaml": "x: 1"}}),
                json!({"kind": "Deployment", "metadata": meta("app"),
                       "spec": {"template": {"spec": pod}}}),
            ],
            secret: crate::render::SecretRequest::default(),
        }
    }

    /// The rules the pod breaks, as `rule: fact [source]` lines.
    fn check(pod: Value, config: Value) -> Vec<String> {
        let contracts = ImageContracts::parse(CONTRACT).unwrap();
        let rendered = rendered_of(pod, config);
        super::check(&rendered, Catalog::shipped(), &contracts)
            .iter()
            .map(|b| format!("{}: {} [{}]", b.rule, b.fact, b.source))
            .collect()
    }

    fn main_container(pod: &mut Value) -> &mut Value {
        &mut pod["containers"][0]
    }

    #[test]
    fn a_pod_meeting_every_fact_passes() {
        let (pod, config) = good();
        assert_eq!(check(pod, config), Vec::<String>::new());
    }

    #[test]
    fn another_uid_or_gid_is_an_identity_breach_naming_the_source() {
        let (mut pod, config) = good();
        pod["securityContext"]["runAsUser"] = json!(10001);
        pod["securityContext"]["runAsGroup"] = json!(10001);
        let b = check(pod, config);
        assert_eq!(
            b,
            [
                "identity: runs as uid 10001; the image runs as uid 999 [example/app@1.0:Dockerfile:3]",
                "identity: runs as gid 10001; the image's group is gid 999 [example/app@1.0:Dockerfile:3]",
                "identity: runs as uid 10001; the image runs as uid 999 [example/app@1.0:Dockerfile:3]",
                "identity: runs as gid 10001; the image's group is gid 999 [example/app@1.0:Dockerfile:3]",
            ],
            "the init container and the main container both"
        );
    }

    #[test]
    fn an_exception_waives_only_its_rule() {
        let (mut pod, config) = good();
        pod["securityContext"]["runAsUser"] = json!(10001);
        main_container(&mut pod)["securityContext"]["readOnlyRootFilesystem"] = json!(false);
        let text = CONTRACT.replace(
            "    writablePaths:",
            "    exceptions:\n      - {rule: identity, why: \"any uid\", source: \"s\"}\n    writablePaths:",
        );
        let contracts = ImageContracts::parse(&text).unwrap();
        let rendered = Rendered {
            storage_class: None,
            objects: vec![
                json!({"kind": "ConfigMap", "metadata": {"name": "app-config"}, "data": config}),
                json!({"kind": "ConfigMap", "metadata": {"name": "app-files"}, "data": {"app.yaml": ""}}),
                json!({"kind": "Deployment", "metadata": {"name": "app", "labels": {COMPONENT_LABEL: "app"}},
                       "spec": {"template": {"spec": pod}}}),
            ],
            secret: crate::render::SecretRequest::default(),
        };
        let rules: Vec<Rule> = super::check(&rendered, Catalog::shipped(), &contracts)
            .iter()
            .map(|b| b.rule)
            .collect();
        assert_eq!(rules, [Rule::ReadOnlyRoot]);
    }

    #[test]
    fn a_writable_root_and_missing_hardening_are_breaches() {
        let (mut pod, config) = good();
        let c = main_container(&mut pod);
        c["securityContext"] = json!({"capabilities": {"add": ["NET_ADMIN"]}});
        pod["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
        let b = check(pod, config);
        assert!(
            b.contains(
                &"read-only-root: readOnlyRootFilesystem is not true [example/app@1.0:README.md:9]"
                    .to_owned()
            ),
            "{b:#?}"
        );
        for w in [
            "allowPrivilegeEscalation is not false",
            "capabilities ALL are not dropped",
            "capabilities added that the image does not need: [\"NET_ADMIN\"]",
            "seccomp profile is not RuntimeDefault",
        ] {
            assert!(
                b.iter()
                    .any(|l| l.starts_with("hardening: ") && l.contains(w)),
                "{w}: {b:#?}"
            );
        }
    }

    /// A capability the contract names (coturn's NET_BIND_SERVICE file capability) may be
    /// added, and only that one; a contract may name no capability the restricted standard
    /// forbids adding.
    #[test]
    fn only_a_capability_the_image_needs_may_be_added() {
        let needs = CONTRACT.replace(
            "    firstStart:",
            "    capabilities:\n      - {name: NET_BIND_SERVICE, why: \"file capability\", source: \"example/app@1.0:Dockerfile:7\"}\n    firstStart:",
        );
        let contracts = ImageContracts::parse(&needs).unwrap();
        let run = |add: Value| {
            let (mut pod, config) = good();
            main_container(&mut pod)["securityContext"]["capabilities"]["add"] = add;
            let rendered = rendered_of(pod, config);
            super::check(&rendered, Catalog::shipped(), &contracts)
                .iter()
                .map(|b| format!("{}: {}", b.rule, b.fact))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(json!(["NET_BIND_SERVICE"])), Vec::<String>::new());
        assert_eq!(
            run(json!(["NET_BIND_SERVICE", "NET_RAW"])),
            ["hardening: capabilities added that the image does not need: [\"NET_RAW\"]"]
        );
        // Without the fact, the same capability is a breach.
        let (mut pod, config) = good();
        main_container(&mut pod)["securityContext"]["capabilities"]["add"] =
            json!(["NET_BIND_SERVICE"]);
        assert_eq!(check(pod, config).len(), 1);
        let bad = needs.replace("name: NET_BIND_SERVICE", "name: NET_ADMIN");
        let err = ImageContracts::parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("component app: capabilities[0].name: the restricted standard lets a container add NET_BIND_SERVICE only"),
            "{err}"
        );
    }

    #[test]
    fn a_written_path_without_a_writable_mount_is_a_breach() {
        let (mut pod, config) = good();
        let c = main_container(&mut pod);
        c["volumeMounts"][0]["readOnly"] = json!(true);
        c["volumeMounts"].as_array_mut().unwrap().remove(3); // /certs
        let b = check(pod, config);
        assert_eq!(
            b,
            [
                "writable-path: writes /data (state): mounted from data, which is not a writable emptyDir or claim [example/app@1.0:Dockerfile:5]",
                "writable-path: writes /certs (self-signed keys): no volume is mounted there [example/app@1.0:start.sh:9]",
            ]
        );
    }

    #[test]
    fn a_path_written_only_without_a_variable_needs_no_mount_when_it_is_set() {
        let (mut pod, mut config) = good();
        main_container(&mut pod)["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .remove(3);
        config["NO_TLS"] = json!("1");
        assert_eq!(check(pod, config), Vec::<String>::new());
    }

    #[test]
    fn an_unseeded_empty_dir_over_image_files_and_a_volume_root_as_datadir_are_breaches() {
        let (mut pod, config) = good();
        pod["initContainers"] = json!([]);
        main_container(&mut pod)["volumeMounts"][2]
            .as_object_mut()
            .unwrap()
            .remove("subPath");
        let b = check(pod, config);
        assert_eq!(
            b,
            [
                "writable-path: /opt/app holds the image's own files: its emptyDir must be filled by init container copy-app [example/app@1.0:start.sh:7]",
                "writable-path: /var/lib/db must be empty at first start: mount the volume through a subPath (its root holds lost+found) [example/app@1.0:start.sh:8]",
                "required-file: /opt/app/template.xml (shipped): volume app is mounted over it and init container copy-app does not fill it [example/app@1.0:start.sh:3]",
            ]
        );
    }

    #[test]
    fn a_required_file_not_in_a_mounted_config_map_is_a_breach() {
        let (mut pod, config) = good();
        main_container(&mut pod)["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .remove(4);
        assert_eq!(
            check(pod, config),
            [
                "required-file: /conf/app.yaml (refuses to start): no mounted ConfigMap or Secret provides it [example/app@1.0:start.sh:2]"
            ]
        );
        let (mut pod, config) = good();
        pod["volumes"][4]["configMap"]["name"] = json!("app-config");
        assert_eq!(
            check(pod, config),
            [
                "required-file: /conf/app.yaml (refuses to start): ConfigMap app-config has no key app.yaml [example/app@1.0:start.sh:2]"
            ]
        );
    }

    #[test]
    fn a_variable_the_image_does_not_read_is_a_breach_unless_the_command_line_uses_it() {
        let (mut pod, mut config) = good();
        config["SERVER_NAME"] = json!("x");
        main_container(&mut pod)["env"] = json!([{"name": "PASSWORD", "valueFrom": {}}]);
        let b = check(pod.clone(), config.clone());
        assert_eq!(
            b,
            [
                format!("env: sets PASSWORD, which the image does not read [{CONTRACTS_FILE}]"),
                format!("env: sets SERVER_NAME, which the image does not read [{CONTRACTS_FILE}]"),
            ]
        );
        main_container(&mut pod)["args"] = json!(["--password", "$(PASSWORD)"]);
        assert_eq!(check(pod.clone(), config.clone()).len(), 1);
        // Or a later variable the image reads, whose value the kubelet expands.
        main_container(&mut pod)["args"] = json!([]);
        main_container(&mut pod)["env"] = json!([{"name": "PASSWORD", "valueFrom": {}},
            {"name": "APP_OPT_JAVA", "value": "-Dapp.password=$(PASSWORD)"}]);
        assert_eq!(check(pod, config).len(), 1);
    }

    #[test]
    fn a_port_the_image_does_not_listen_on_is_a_breach() {
        let (mut pod, config) = good();
        main_container(&mut pod)["ports"][0]["containerPort"] = json!(5347);
        assert_eq!(
            check(pod, config),
            [format!(
                "port: declares port 5347/TCP, on which the image does not listen [{CONTRACTS_FILE}]"
            )]
        );
    }

    #[test]
    fn a_probe_that_would_kill_the_first_start_is_a_breach() {
        let (mut pod, config) = good();
        main_container(&mut pod)
            .as_object_mut()
            .unwrap()
            .remove("startupProbe");
        assert_eq!(
            check(pod, config),
            [
                "first-start: livenessProbe without a startupProbe restarts the container after 30 s; a first start may take 300 s [example/app@1.0:README.md:20]"
            ]
        );
        let (mut pod, config) = good();
        main_container(&mut pod)["startupProbe"]["failureThreshold"] = json!(6);
        assert_eq!(
            check(pod, config),
            [
                "first-start: startupProbe restarts the container after 60 s; a first start may take 300 s [example/app@1.0:README.md:20]"
            ]
        );
    }

    #[test]
    fn an_image_without_a_contract_is_a_breach() {
        let (mut pod, config) = good();
        main_container(&mut pod)["image"] = json!("docker.io/example/app:2.0");
        let b = check(pod, config);
        assert_eq!(
            b,
            [format!(
                "unknown-image: image docker.io/example/app:2.0 has no contract [{CONTRACTS_FILE}]"
            )]
        );
    }

    #[test]
    fn helper_containers_are_checked_for_identity_and_hardening_only() {
        let (mut pod, config) = good();
        pod["initContainers"][0]["env"] = json!([{"name": "ANYTHING", "value": "1"}]);
        assert_eq!(check(pod.clone(), config.clone()), Vec::<String>::new());
        pod["initContainers"][0]["securityContext"]["readOnlyRootFilesystem"] = json!(false);
        assert_eq!(
            check(pod, config),
            ["read-only-root: readOnlyRootFilesystem is not true [example/app@1.0:README.md:9]"]
        );
    }

    #[test]
    fn the_shipped_contracts_cover_the_catalog_exactly() {
        let contracts = ImageContracts::shipped();
        assert_eq!(
            contracts.mismatches(Catalog::shipped()),
            Vec::<String>::new()
        );
        assert_eq!(
            contracts.contracts.len(),
            Catalog::shipped().components.len()
        );
    }

    #[test]
    fn a_contract_for_another_tag_or_no_component_is_named() {
        let mut contracts = ImageContracts::shipped().clone();
        contracts.contracts[0].image.tag = "0.0.1".into();
        contracts.contracts[1].component = "ghost".into();
        let m = contracts.mismatches(Catalog::shipped());
        assert_eq!(m.len(), 3, "{m:#?}");
        assert!(m[0].contains("contract was read from docker.io/exoplatform/exo-community:0.0.1"));
        assert!(m[1].starts_with("component synapse: image"));
        assert_eq!(m[2], "contract ghost: no catalog component of that name");
    }

    #[test]
    fn bad_contract_files_are_refused_naming_component_and_field() {
        let bad = CONTRACT
            .replace("path: /data,", "path: data,")
            .replace("filledBy: copy-app", "filledBy: nobody")
            .replace("source: \"example/app@1.0:start.sh:1\"", "source: \" \"");
        let err = ImageContracts::parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("component app: writablePaths[0]: path must be absolute"),
            "{err}"
        );
        assert!(
            err.contains("component app: requiredFiles[1].filledBy"),
            "{err}"
        );
        assert!(err.contains("component app: env[0].source: empty"), "{err}");
        let err = ImageContracts::parse("version: x\ncontracts: [{component: a}]").unwrap_err();
        assert!(matches!(err, ContractError::Parse(_)), "{err}");
    }

    /// The Matrix admin Job runs Synapse's image and is held to its contract like its server:
    /// the shipped rendering passes, and the same Job under another uid or on a writable root is
    /// named.
    #[test]
    fn the_matrix_admin_job_is_held_to_synapses_contract() {
        let spec: crate::workplace::WorkplaceSpec = yaml_serde::from_str(
            "{policy: p, profile: users500, domain: a.example.fr, storage: {provisioner: csi.example.fr}}",
        )
        .unwrap();
        let catalog = spec.resolve(Catalog::shipped()).unwrap();
        let zones = vec!["fr-par-1".to_owned()];
        let mut rendered = crate::render::render(&crate::render::RenderInput {
            name: "intranet",
            namespace: "ministere",
            spec: &spec,
            catalog: &catalog,
            eligible_zones: &zones,
        })
        .unwrap();
        let breaches = |r: &Rendered| -> Vec<String> {
            super::check(r, Catalog::shipped(), ImageContracts::shipped())
                .into_iter()
                .filter(|b| b.component == "synapse")
                .map(|b| format!("{} {} {}", b.workload, b.container, b.rule))
                .collect()
        };
        assert_eq!(breaches(&rendered), Vec::<String>::new());
        let job = rendered
            .objects
            .iter_mut()
            .find(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("synapse-admin-")
            })
            .unwrap();
        let name = job["metadata"]["name"].as_str().unwrap().to_owned();
        let pod = &mut job["spec"]["template"]["spec"];
        pod["securityContext"]["runAsUser"] = json!(1000);
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = json!(false);
        assert_eq!(
            breaches(&rendered),
            [
                format!("Job/{name} register identity"),
                format!("Job/{name} register read-only-root"),
            ]
        );
    }
}
