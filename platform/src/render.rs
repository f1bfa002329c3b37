//! Rendering (feature `k8s`): a pure function from a Workplace, its resolved catalog and the
//! eligible zones to the Kubernetes objects that run it. No client, no randomness: generated
//! credentials are named here ([`Rendered::secret`]) and filled in by the operator, which never
//! overwrites an existing value.
//!
//! Every pod: required node affinity on the policy's eligibility label, spread across zones, the
//! restricted Pod Security Standard, a service account without an API token, resources from the
//! size profile. Each container follows its image's contract ([`crate::contract`]): the image's
//! own uid and gid, a read-only root with an emptyDir for every other path the image writes
//! (filled from the image by an init container where it holds the image's files), only the
//! variables the image reads, and a startup probe as long as its first start. Volumes come from a
//! StorageClass whose allowedTopologies are the eligible zones and that binds only once the
//! pod's node is chosen. One NetworkPolicy denies all egress but the namespace, DNS and the
//! destinations the spec lists.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::catalog::{Catalog, Component, Probe, Protocol, Workload};
use crate::contract::{ImageContract, ImageContracts};
use crate::node::{ATTESTED_COUNTRY_LABEL, ZONE_LABEL};
use crate::workplace::{WorkplaceSpec, eligible_label};

pub use crate::labels::{COMPONENT_LABEL, INSTANCE_LABEL, PART_OF, PART_OF_LABEL};
/// Prefix of the generated credential Secrets: one Secret per credential
/// (`credential-postgresql-password`), its value under the key [`CREDENTIAL_KEY`], so the operator
/// can create a missing one without ever reading the others.
pub const CREDENTIAL_PREFIX: &str = "credential-";
/// The key holding a credential's value.
pub const CREDENTIAL_KEY: &str = "value";

/// What rendering needs besides the spec.
#[derive(Debug, Clone)]
pub struct RenderInput<'a> {
    /// The Workplace's name.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// Its spec.
    pub spec: &'a WorkplaceSpec,
    /// The catalog it resolved to ([`WorkplaceSpec::resolve`]).
    pub catalog: &'a Catalog,
    /// Zones holding at least one eligible node, sorted.
    pub eligible_zones: &'a [String],
}

/// The generated credentials a workplace needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRequest {
    /// Names of the Secrets to create, with a random value, when absent.
    pub names: Vec<String>,
}

/// The objects of one workplace.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The cluster-scoped StorageClass (None when no zone is eligible: nothing may bind).
    pub storage_class: Option<Value>,
    /// Namespaced objects, in apply order (each component after its dependencies).
    pub objects: Vec<Value>,
    /// Credentials to generate.
    pub secret: SecretRequest,
}

/// Name of the StorageClass of a workplace.
pub fn storage_class_name(namespace: &str, name: &str) -> String {
    format!("hexagone-{namespace}-{name}")
}

/// Renders a workplace. Fails only when the policy name cannot name a label.
pub fn render(input: &RenderInput<'_>) -> Result<Rendered, String> {
    let label = eligible_label(&input.spec.policy)?;
    let order = input
        .catalog
        .dependency_order()
        .map_err(|cycle| format!("dependency cycle: {}", cycle.join(" -> ")))?;
    let mut objects = Vec::new();
    let mut keys = std::collections::BTreeSet::new();
    for name in order {
        let c = input
            .catalog
            .component(name)
            .expect("the order names catalog components");
        let contract = ImageContracts::shipped()
            .for_component(name)
            .ok_or_else(|| {
                format!("component {name}: no image contract in platform/data/image-contracts.yaml")
            })?;
        let wiring = wiring(c, input)?;
        keys.extend(
            wiring
                .secrets
                .iter()
                .map(|(_, k)| format!("{CREDENTIAL_PREFIX}{k}")),
        );
        render_component(c, contract, input, &label, &wiring, &mut objects);
    }
    objects.push(network_policy(input));
    let sc_name = storage_class_name(input.namespace, input.name);
    let storage_class = (!input.eligible_zones.is_empty()).then(|| {
        json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": sc_name, "labels": labels(input, None)},
            "provisioner": input.spec.storage.provisioner,
            "parameters": input.spec.storage.parameters,
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowedTopologies": [{"matchLabelExpressions": [
                {"key": ZONE_LABEL, "values": input.eligible_zones}
            ]}]
        })
    });
    Ok(Rendered {
        storage_class,
        objects,
        secret: SecretRequest {
            names: keys.into_iter().collect(),
        },
    })
}

fn labels(input: &RenderInput<'_>, component: Option<&str>) -> Value {
    let mut l = BTreeMap::from([
        (INSTANCE_LABEL, input.name.to_owned()),
        (PART_OF_LABEL, PART_OF.to_owned()),
        (
            "app.kubernetes.io/managed-by",
            "hexagone-operator".to_owned(),
        ),
    ]);
    if let Some(c) = component {
        l.insert(COMPONENT_LABEL, c.to_owned());
    }
    json!(l)
}

fn selector(input: &RenderInput<'_>, component: &str) -> Value {
    json!({INSTANCE_LABEL: input.name, COMPONENT_LABEL: component})
}

/// Environment, command line and files of a component: plain values (a ConfigMap), secret ones
/// (env var, key of the credentials Secret), values from the pod itself (env var, field path),
/// arguments replacing the catalog's, and files (a ConfigMap `<component>-files`) mounted at a
/// path.
#[derive(Default)]
struct Wiring {
    config: BTreeMap<String, String>,
    secrets: Vec<(String, String)>,
    fields: Vec<(String, String)>,
    args: Option<Vec<String>>,
    files: Vec<MountedFile>,
}

/// A file of the `<component>-files` ConfigMap, mounted at `path` (alone, through a subPath, or
/// as the directory `dir` holding every file that names it).
struct MountedFile {
    key: String,
    content: String,
    path: String,
}

/// A memory quantity (`512Mi`, `4Gi`) in MiB; None when it has another unit.
fn mebibytes(q: &str) -> Option<u64> {
    if let Some(g) = q.strip_suffix("Gi") {
        g.parse::<u64>().ok().map(|g| g * 1024)
    } else {
        q.strip_suffix("Mi").and_then(|m| m.parse().ok())
    }
}

fn memory_limit_mib(c: &Component, input: &RenderInput<'_>) -> Option<u64> {
    let limit = input
        .spec
        .components
        .get(&c.name)
        .and_then(|o| o.limits.clone())
        .unwrap_or_else(|| c.sizing[&input.spec.profile].limits.clone());
    mebibytes(&limit.memory)
}

/// The masters' addresses, one per replica through the headless Service, as raft and the
/// SeaweedFS clients need them (a ClusterIP would reach a random master, not the leader).
fn seaweedfs_masters(input: &RenderInput<'_>) -> Vec<String> {
    let replicas = input
        .catalog
        .component("seaweedfs-master")
        .map_or(1, |m| replicas(m, input));
    (0..replicas)
        .map(|i| format!("seaweedfs-master-{i}.seaweedfs-master-pods:9333"))
        .collect()
}

/// How the components find each other. Services are named after components, one workplace per
/// namespace, so `postgresql:5432` is PostgreSQL. Only variables each image reads are set (its
/// contract in `platform/data/image-contracts.yaml` lists them with their source).
fn wiring(c: &Component, input: &RenderInput<'_>) -> Result<Wiring, String> {
    let domain = &input.spec.domain;
    let enabled = |n: &str| input.catalog.component(n).is_some();
    let mut w = Wiring::default();
    let mut set = |k: &str, v: String| {
        w.config.insert(k.to_owned(), v);
    };
    let mut secrets: Vec<(String, String)> = Vec::new();
    let mut secret = |k: &str, key: &str| secrets.push((k.to_owned(), key.to_owned()));
    // Kubernetes hands an emptyDir /run to s6-overlay root-owned and world-writable, which it
    // refuses unless told (just-containers/s6-overlay preinit; the Jitsi chart sets it too).
    let s6 = "S6_YES_I_WANT_A_WORLD_WRITABLE_RUN_BECAUSE_KUBERNETES";
    match c.name.as_str() {
        // exo-docker/exo-community scripts/setenv-docker-customize.sh. ONLYOFFICE, Matrix and
        // OIDC have no variable in the image (exo.properties, not rendered yet).
        "exo" => {
            set("EXO_PROXY_VHOST", domain.clone());
            set("EXO_PROXY_PORT", "443".into());
            set("EXO_PROXY_SSL", "true".into());
            set("EXO_DB_TYPE", "mysql".into());
            set("EXO_DB_HOST", "mysql".into());
            set("EXO_DB_PORT", "3306".into());
            set("EXO_DB_NAME", "exo".into());
            set("EXO_DB_USER", "exo".into());
            secret("EXO_DB_PASSWORD", "mysql-password");
            // The JMX ports are open without authentication when enabled.
            set("EXO_JMX_ENABLED", "false".into());
            // The heap is 3g whatever the limit unless set: the limit less ~2 GiB of non-heap.
            if let Some(mib) = memory_limit_mib(c, input) {
                let heap = (mib.saturating_sub(2048) / 1024).max(1);
                set("EXO_JVM_SIZE_MAX", format!("{heap}g"));
                set("EXO_JVM_SIZE_MIN", format!("{heap}g"));
            }
            if enabled("search") {
                set("EXO_ES_HOST", "search".into());
                set("EXO_ES_PORT", "9200".into());
                let nodes = input
                    .catalog
                    .component("search")
                    .map_or(1, |s| replicas(s, input));
                set(
                    "EXO_ES_INDEX_REPLICA_NB",
                    if nodes > 1 { "1" } else { "0" }.into(),
                );
            }
            if enabled("postfix") {
                set("EXO_MAIL_SMTP_HOST", "postfix".into());
                set("EXO_MAIL_SMTP_PORT", "587".into());
                // Postfix accepts only senders of the workplace's domain.
                set("EXO_MAIL_FROM", format!("noreply@{domain}"));
            }
        }
        // Official mysql image: MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD, MYSQL_ROOT_PASSWORD.
        "mysql" => {
            set("MYSQL_DATABASE", "exo".into());
            set("MYSQL_USER", "exo".into());
            secret("MYSQL_PASSWORD", "mysql-password");
            secret("MYSQL_ROOT_PASSWORD", "mysql-root-password");
        }
        // Official postgres image. The applications' databases are created on first
        // initialisation; Synapse's needs the C collation.
        "postgresql" => {
            set("PGDATA", "/var/lib/postgresql/data/pgdata".into());
            set("POSTGRES_USER", "workplace".into());
            secret("POSTGRES_PASSWORD", "postgresql-password");
            let mut sql = String::new();
            for (db, app) in [("keycloak", "keycloak"), ("onlyoffice", "onlyoffice")] {
                if enabled(app) {
                    sql.push_str(&format!("CREATE DATABASE {db} ENCODING 'UTF8';\n"));
                }
            }
            if enabled("synapse") {
                sql.push_str(
                    "CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;\n",
                );
            }
            if !sql.is_empty() {
                w.files.push(MountedFile {
                    key: "10-databases.sql".into(),
                    content: sql,
                    path: "/docker-entrypoint-initdb.d/10-databases.sql".into(),
                });
            }
        }
        // Keycloak server configuration (KC_* options). The server is built by the init
        // container `build`, so `start --optimized` writes nothing under /opt/keycloak/lib.
        "keycloak" => {
            set("KC_DB", "postgres".into());
            set(
                "KC_DB_URL",
                "jdbc:postgresql://postgresql:5432/keycloak".into(),
            );
            set("KC_DB_USERNAME", "workplace".into());
            secret("KC_DB_PASSWORD", "postgresql-password");
            // The default pool (100 per replica) exceeds PostgreSQL's default max_connections.
            set("KC_DB_POOL_MAX_SIZE", "20".into());
            set("KC_HOSTNAME", format!("https://auth.{domain}"));
            set("KC_HTTP_ENABLED", "true".into());
            set("KC_PROXY_HEADERS", "xforwarded".into());
            set("KC_BOOTSTRAP_ADMIN_USERNAME", "admin".into());
            secret("KC_BOOTSTRAP_ADMIN_PASSWORD", "keycloak-admin-password");
        }
        // ONLYOFFICE Document Server Docker image variables (run-document-server.sh).
        "onlyoffice" => {
            set("DB_TYPE", "postgres".into());
            set("DB_HOST", "postgresql".into());
            set("DB_PORT", "5432".into());
            set("DB_NAME", "onlyoffice".into());
            set("DB_USER", "workplace".into());
            secret("DB_PWD", "postgresql-password");
            set("JWT_ENABLED", "true".into());
            secret("JWT_SECRET", "onlyoffice-jwt-secret");
        }
        // matrixdotorg/synapse runs the configuration file SYNAPSE_CONFIG_PATH names (its start.py
        // no longer generates one); the database password comes to libpq as PGPASSWORD.
        "synapse" => {
            set("SYNAPSE_CONFIG_PATH", "/conf/homeserver.yaml".into());
            secret("PGPASSWORD", "postgresql-password");
            w.files.push(MountedFile {
                key: "homeserver.yaml".into(),
                content: synapse_config(domain),
                path: "/conf/homeserver.yaml".into(),
            });
        }
        // docker-jitsi-meet stable-11146-2: each image reads its own subset.
        "jitsi-web" => {
            set(s6, "1".into());
            set("PUBLIC_URL", format!("https://meet.{domain}"));
            set("XMPP_DOMAIN", "meet.jitsi".into());
            set("XMPP_MUC_DOMAIN", "muc.meet.jitsi".into());
            // The default is a docker-compose alias (xmpp.meet.jitsi).
            set("XMPP_BOSH_URL_BASE", "http://jitsi-prosody:5280".into());
            // TLS ends at the workplace's ingress: no self-signed keys, no /storage.
            set("DISABLE_HTTPS", "1".into());
            set("ENABLE_HTTP_REDIRECT", "0".into());
            set("TZ", "Europe/Paris".into());
        }
        "jitsi-prosody" => {
            set(s6, "1".into());
            set("XMPP_DOMAIN", "meet.jitsi".into());
            set("XMPP_AUTH_DOMAIN", "auth.meet.jitsi".into());
            set("XMPP_MUC_DOMAIN", "muc.meet.jitsi".into());
            set("XMPP_INTERNAL_MUC_DOMAIN", "internal-muc.meet.jitsi".into());
            set("TZ", "Europe/Paris".into());
            secret("JICOFO_AUTH_PASSWORD", "jitsi-jicofo-password");
            secret("JVB_AUTH_PASSWORD", "jitsi-jvb-password");
        }
        "jitsi-jicofo" => {
            set(s6, "1".into());
            set("XMPP_SERVER", "jitsi-prosody".into());
            set("XMPP_DOMAIN", "meet.jitsi".into());
            set("XMPP_AUTH_DOMAIN", "auth.meet.jitsi".into());
            set("XMPP_MUC_DOMAIN", "muc.meet.jitsi".into());
            set("XMPP_INTERNAL_MUC_DOMAIN", "internal-muc.meet.jitsi".into());
            // The REST port 8888 is what the probe checks.
            set("JICOFO_ENABLE_REST", "1".into());
            set("TZ", "Europe/Paris".into());
            secret("JICOFO_AUTH_PASSWORD", "jitsi-jicofo-password");
        }
        "jitsi-jvb" => {
            set(s6, "1".into());
            set("XMPP_SERVER", "jitsi-prosody".into());
            set("XMPP_AUTH_DOMAIN", "auth.meet.jitsi".into());
            set("XMPP_INTERNAL_MUC_DOMAIN", "internal-muc.meet.jitsi".into());
            // The default STUN server is jitsi.net's: a call to a third party, and blocked by
            // the egress policy anyway.
            set("JVB_DISABLE_STUN", "1".into());
            if let Some(mib) = memory_limit_mib(c, input) {
                set(
                    "VIDEOBRIDGE_MAX_MEMORY",
                    format!("{}m", mib.saturating_sub(1024).max(512)),
                );
            }
            set("TZ", "Europe/Paris".into());
            secret("JVB_AUTH_PASSWORD", "jitsi-jvb-password");
        }
        // boky/postfix: relays only the workplace's own domain.
        "postfix" => {
            set("ALLOWED_SENDER_DOMAINS", domain.clone());
        }
        "search" => {
            set("xpack.security.enabled", "false".into());
            // The vm.max_map_count bootstrap check applies only with mmap, and raising the
            // sysctl needs a privileged container the restricted standard forbids.
            set("node.store.allow_mmap", "false".into());
            let replicas = replicas(c, input);
            if replicas <= 1 {
                set("discovery.type", "single-node".into());
            } else {
                set("discovery.seed_hosts", "search-pods".into());
                let masters: Vec<String> = (0..replicas.min(3))
                    .map(|i| format!("search-{i}"))
                    .collect();
                set("cluster.initial_master_nodes", masters.join(","));
            }
        }
        // Raft needs every master to know its peers by a stable name; without -peers each
        // master is a cluster of its own. Telemetry would call seaweedfs.com.
        "seaweedfs-master" => {
            let masters = seaweedfs_masters(input);
            if masters.len().is_multiple_of(2) {
                return Err(format!(
                    "seaweedfs-master: {} replicas; raft needs an odd number of masters",
                    masters.len()
                ));
            }
            let peers = if masters.len() == 1 {
                "none".to_owned()
            } else {
                masters.join(",")
            };
            w.fields.push(("POD_NAME".into(), "metadata.name".into()));
            w.args = Some(vec![
                "master".into(),
                "-mdir=/data".into(),
                "-ip=$(POD_NAME).seaweedfs-master-pods".into(),
                "-ip.bind=0.0.0.0".into(),
                "-port=9333".into(),
                format!("-peers={peers}"),
                "-telemetry=false".into(),
            ]);
        }
        "seaweedfs-volume" => {
            w.args = Some(vec![
                "volume".into(),
                "-dir=/data".into(),
                format!("-mserver={}", seaweedfs_masters(input).join(",")),
                "-port=8080".into(),
            ]);
        }
        // S3 authentication is on only when both keys are set (one admin identity); the Iceberg
        // and Lance listeners that -s3 also opens are not used.
        "seaweedfs-filer" => {
            secret("AWS_ACCESS_KEY_ID", "seaweedfs-s3-access-key");
            secret("AWS_SECRET_ACCESS_KEY", "seaweedfs-s3-secret-key");
            w.args = Some(vec![
                "filer".into(),
                format!("-master={}", seaweedfs_masters(input).join(",")),
                "-s3".into(),
                "-s3.port=8333".into(),
                "-s3.port.iceberg=0".into(),
                "-s3.port.lance=0".into(),
            ]);
        }
        // Valkey keeps nothing (a cache): no snapshots, a password, memory below the limit.
        // YAML 1.1 readers (kubectl) would take a bare `no` for a boolean: no such value here.
        "valkey" => {
            secret("VALKEY_PASSWORD", "valkey-password");
            secret("VALKEYCLI_AUTH", "valkey-password");
            let mut args: Vec<String> = [
                "valkey-server",
                "--requirepass",
                "$(VALKEY_PASSWORD)",
                // No RDB snapshots; the append-only file is off by default.
                "--save",
                "",
            ]
            .map(String::from)
            .to_vec();
            if let Some(mib) = memory_limit_mib(c, input) {
                args.extend([
                    "--maxmemory".into(),
                    format!("{}mb", mib * 3 / 4),
                    "--maxmemory-policy".into(),
                    "allkeys-lru".into(),
                ]);
            }
            w.args = Some(args);
        }
        _ => {}
    }
    w.secrets = secrets;
    Ok(w)
}

/// Synapse's homeserver.yaml: PostgreSQL (the password from PGPASSWORD), media and signing key
/// on the data volume, not federated, no statistics sent, no open registration.
fn synapse_config(domain: &str) -> String {
    let config = json!({
        "server_name": domain,
        "public_baseurl": format!("https://matrix.{domain}/"),
        "pid_file": "/tmp/homeserver.pid",
        "listeners": [{"port": 8008, "type": "http", "tls": false, "x_forwarded": true,
                       "bind_addresses": ["0.0.0.0"],
                       "resources": [{"names": ["client"], "compress": false}]}],
        "database": {"name": "psycopg2", "args": {
            "user": "workplace", "dbname": "synapse", "host": "postgresql", "port": 5432,
            "cp_min": 5, "cp_max": 10,
            "keepalives_idle": 10, "keepalives_interval": 10, "keepalives_count": 3}},
        "media_store_path": "/data/media_store",
        "signing_key_path": format!("/data/{domain}.signing.key"),
        "report_stats": false,
        "trusted_key_servers": [],
        "federation_domain_whitelist": [],
        "enable_registration": false,
    });
    yaml_serde::to_string(&config).expect("a JSON value is YAML")
}

fn replicas(c: &Component, input: &RenderInput<'_>) -> u32 {
    input
        .spec
        .components
        .get(&c.name)
        .and_then(|o| o.replicas)
        .unwrap_or_else(|| c.sizing[&input.spec.profile].replicas)
}

fn probe_action(p: &Probe) -> Value {
    match p {
        Probe::Http { path, port } => json!({"httpGet": {"path": path, "port": port}}),
        Probe::Tcp { port } => json!({"tcpSocket": {"port": port}}),
    }
}

fn probe(p: &Probe) -> Value {
    let mut v = probe_action(p);
    v["periodSeconds"] = json!(10);
    v["failureThreshold"] = json!(3);
    v
}

/// A volume name for a path (`/var/log/exo` -> `var-log-exo`).
fn volume_name(path: &str) -> String {
    let name: String = path
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() { "root".into() } else { name }
}

/// Whether `path` is `mount` or lies below it.
fn under(path: &str, mount: &str) -> bool {
    path == mount || path.starts_with(&format!("{}/", mount.trim_end_matches('/')))
}

/// The security context every container gets: the restricted standard and a read-only root,
/// unless the image must start as root (then it cannot run in a restricted namespace at all,
/// and is rendered as before: see KNOWN_GAPS in the contract test and docs/operator.md).
fn container_security(contract: &ImageContract) -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": true,
        "readOnlyRootFilesystem": !contract.run_as.starts_as_root,
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

/// The pod's identity: the image's own uid and gid (its files belong to them). An image that
/// must start as root keeps the former unprivileged 10001, which the contract test reports.
fn pod_security(contract: &ImageContract) -> Value {
    let (uid, gid) = if contract.run_as.starts_as_root {
        (10001, 10001)
    } else {
        (contract.run_as.uid, contract.run_as.gid)
    };
    // A volume must be writable by the process: its own group, or its uid's group when the
    // image runs with gid 0 (Keycloak, Elasticsearch).
    let fs_group = if gid == 0 { uid } else { gid };
    json!({
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": fs_group,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

fn render_component(
    c: &Component,
    contract: &ImageContract,
    input: &RenderInput<'_>,
    eligible: &str,
    wiring: &Wiring,
    out: &mut Vec<Value>,
) {
    let n = c.name.as_str();
    let ns = input.namespace;
    let meta =
        |name: &str| json!({"name": name, "namespace": ns, "labels": labels(input, Some(n))});
    let sizing = &c.sizing[&input.spec.profile];
    let o = input.spec.components.get(n);
    let requests = o
        .and_then(|o| o.requests.clone())
        .unwrap_or_else(|| sizing.requests.clone());
    let limits = o
        .and_then(|o| o.limits.clone())
        .unwrap_or_else(|| sizing.limits.clone());
    let replicas = replicas(c, input);
    let sc = storage_class_name(ns, input.name);

    out.push(json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(n),
        "automountServiceAccountToken": false
    }));
    let config_name = format!("{n}-config");
    out.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&config_name),
        "data": wiring.config
    }));
    let files_name = format!("{n}-files");
    if !wiring.files.is_empty() {
        let data: BTreeMap<&str, &str> = wiring
            .files
            .iter()
            .map(|f| (f.key.as_str(), f.content.as_str()))
            .collect();
        out.push(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&files_name),
            "data": data
        }));
    }
    let ports: Vec<Value> = c
        .ports
        .iter()
        .map(|p| {
            json!({"name": p.name, "port": p.port, "targetPort": p.name,
                   "protocol": protocol(p.protocol)})
        })
        .collect();
    out.push(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": meta(n),
        "spec": {"selector": selector(input, n), "ports": ports}
    }));
    if c.workload == Workload::StatefulSet {
        out.push(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": meta(&format!("{n}-pods")),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                     "selector": selector(input, n), "ports": ports}
        }));
    }

    let mut env: Vec<Value> = wiring
        .secrets
        .iter()
        .map(|(var, key)| {
            json!({"name": var, "valueFrom": {"secretKeyRef": {
                "name": format!("{CREDENTIAL_PREFIX}{key}"), "key": CREDENTIAL_KEY}}})
        })
        .collect();
    env.extend(
        wiring.fields.iter().map(
            |(var, path)| json!({"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}}),
        ),
    );
    let container_ports: Vec<Value> = c
        .ports
        .iter()
        .map(|p| json!({"name": p.name, "containerPort": p.port, "protocol": protocol(p.protocol)}))
        .collect();

    // Volumes: the catalog's claims (through a subPath where the image needs an empty
    // directory), the rendered files, and an emptyDir for every other path the image writes.
    let mut mounts: Vec<Value> = Vec::new();
    let mut volumes: Vec<Value> = Vec::new();
    let mut seeds: Vec<Value> = Vec::new();
    for v in &c.volumes {
        let mut m = json!({"name": v.name, "mountPath": v.mount_path});
        let empty_first = contract
            .writable_paths
            .iter()
            .any(|w| w.must_start_empty && w.path == v.mount_path);
        if empty_first {
            // A fresh filesystem's root holds lost+found.
            m["subPath"] = json!(v.mount_path.rsplit('/').next().unwrap_or("data"));
        }
        mounts.push(m);
    }
    if !wiring.files.is_empty() {
        volumes.push(json!({"name": "files", "configMap": {"name": files_name}}));
        for f in &wiring.files {
            mounts.push(
                json!({"name": "files", "mountPath": f.path, "subPath": f.key, "readOnly": true}),
            );
        }
    }
    let security = container_security(contract);
    if !contract.run_as.starts_as_root {
        let skipped = |unless: &Option<String>| {
            unless
                .as_deref()
                .and_then(|u| u.split_once('='))
                .is_some_and(|(k, v)| wiring.config.get(k).is_some_and(|x| x == v))
        };
        for w in &contract.writable_paths {
            let covered = c.volumes.iter().any(|v| under(&w.path, &v.mount_path))
                || mounts.iter().any(|m| {
                    m["readOnly"] != true
                        && under(&w.path, m["mountPath"].as_str().unwrap_or_default())
                });
            if covered || skipped(&w.unless_env) {
                continue;
            }
            let mut name = volume_name(&w.path);
            if c.volumes.iter().any(|v| v.name == name) {
                name = format!("w-{name}");
            }
            let empty_dir = if w.tmpfs {
                json!({"medium": "Memory", "sizeLimit": "1Gi"})
            } else {
                json!({})
            };
            volumes.push(json!({"name": name, "emptyDir": empty_dir}));
            mounts.push(json!({"name": name, "mountPath": w.path}));
            if let Some(seed) = &w.seed {
                seeds.push(json!({
                    "name": seed,
                    "image": c.image.to_string(),
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", format!("cp -a {}/. /seed/", w.path)],
                    "volumeMounts": [{"name": name, "mountPath": "/seed"}],
                    "resources": {
                        "requests": {"cpu": requests.cpu, "memory": requests.memory},
                        "limits": {"cpu": limits.cpu, "memory": limits.memory}
                    },
                    "securityContext": security,
                }));
            }
        }
    }
    // Keycloak builds its optimized server once, into the seeded lib/quarkus, so the server
    // itself starts with --optimized on a read-only root.
    if n == "keycloak" {
        let keep: Vec<Value> = mounts
            .iter()
            .filter(|m| m["readOnly"] != true)
            .cloned()
            .collect();
        seeds.push(json!({
            "name": "build",
            "image": c.image.to_string(),
            "imagePullPolicy": "IfNotPresent",
            "args": ["build", "--db=postgres", "--health-enabled=true"],
            "volumeMounts": keep,
            "resources": {
                "requests": {"cpu": requests.cpu, "memory": requests.memory},
                "limits": {"cpu": limits.cpu, "memory": limits.memory}
            },
            "securityContext": security,
        }));
    }

    let mut container = json!({
        "name": n,
        "image": c.image.to_string(),
        "imagePullPolicy": "IfNotPresent",
        "ports": container_ports,
        "envFrom": [{"configMapRef": {"name": config_name}}],
        "env": env,
        "readinessProbe": probe(&c.readiness),
        "resources": {
            "requests": {"cpu": requests.cpu, "memory": requests.memory},
            "limits": {"cpu": limits.cpu, "memory": limits.memory}
        },
        "volumeMounts": mounts,
        "securityContext": security
    });
    match &wiring.args {
        Some(args) => container["args"] = json!(args),
        None if !c.args.is_empty() => container["args"] = json!(c.args),
        None => {}
    }
    if let Some(l) = &c.liveness {
        container["livenessProbe"] = probe(l);
        // The liveness probe starts only once the first start (migrations, builds) is over.
        let mut startup = probe_action(l);
        startup["periodSeconds"] = json!(10);
        startup["failureThreshold"] = json!(contract.first_start.seconds.div_ceil(10).max(3));
        container["startupProbe"] = startup;
    }
    // Required in both modes: an audit-mode policy admits every node, so the label is then on
    // all of them, and switching modes changes labels, never pod templates (no rollout). Nodes
    // with a valid attestation are preferred either way.
    let affinity = json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": eligible, "operator": "In", "values": ["true"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {"matchExpressions": [
            {"key": ATTESTED_COUNTRY_LABEL, "operator": "Exists"}]}}]
    }});
    let mut pod_spec = json!({
        "serviceAccountName": n,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": pod_security(contract),
        "affinity": affinity,
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": ZONE_LABEL,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(input, n)}
        }],
        "containers": [container]
    });
    if !seeds.is_empty() {
        pod_spec["initContainers"] = json!(seeds);
    }
    let pod_meta = json!({"labels": labels(input, Some(n))});
    let workload = match c.workload {
        Workload::StatefulSet => {
            if !volumes.is_empty() {
                pod_spec["volumes"] = json!(volumes);
            }
            let claims: Vec<Value> = c
                .volumes
                .iter()
                .map(|v| {
                    json!({
                        "metadata": {"name": v.name, "labels": labels(input, Some(n))},
                        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": sc,
                                 "resources": {"requests": {"storage": sizing.storage.get(&v.name)}}}
                    })
                })
                .collect();
            json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(n),
                "spec": {
                    "replicas": replicas,
                    "serviceName": format!("{n}-pods"),
                    "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": selector(input, n)},
                    "template": {"metadata": pod_meta, "spec": pod_spec},
                    "volumeClaimTemplates": claims,
                    "persistentVolumeClaimRetentionPolicy": {
                        "whenDeleted": if input.spec.storage.delete_claims_with_workplace { "Delete" } else { "Retain" },
                        "whenScaled": "Retain"
                    }
                }
            })
        }
        Workload::Deployment => {
            let mut claimed = Vec::new();
            for v in &c.volumes {
                let claim = format!("{n}-{}", v.name);
                out.push(json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(&claim),
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": sc,
                             "resources": {"requests": {"storage": sizing.storage.get(&v.name)}}}
                }));
                claimed
                    .push(json!({"name": v.name, "persistentVolumeClaim": {"claimName": claim}}));
            }
            claimed.extend(volumes);
            if !claimed.is_empty() {
                pod_spec["volumes"] = json!(claimed);
            }
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(n),
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": selector(input, n)},
                    "template": {"metadata": pod_meta, "spec": pod_spec}
                }
            })
        }
    };
    out.push(workload);
    if let Some(cron) = backup_job(c, input, &pod_spec) {
        out.push(cron);
    }
    // One pod at a time may be evicted: with one replica that is the pod itself, so an
    // ineligible node can always be drained (the component is briefly down, and says so).
    out.push(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(n),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(input, n)}}
    }));
}

/// The scheduled backup of a database component to its bucket on the object store: a dump by the
/// component's own image into a scratch volume, then `weed filer.copy` (SeaweedFS's own client,
/// from the filer's image, under the filer image's own uid) to `/buckets/<bucket>/<UTC time>/`.
/// Same placement and security as the component's pods, so the backup job too runs only on
/// eligible nodes.
fn backup_job(c: &Component, input: &RenderInput<'_>, pod_spec: &Value) -> Option<Value> {
    let backup = c.backup.as_ref()?;
    let filer = input.catalog.component("seaweedfs-filer")?;
    let (dump, password) = match c.name.as_str() {
        "postgresql" => (
            "pg_dumpall -h postgresql -U workplace > /dump/dump.sql",
            json!({"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
                "name": format!("{CREDENTIAL_PREFIX}postgresql-password"), "key": CREDENTIAL_KEY}}}),
        ),
        "mysql" => (
            "mysqldump -h mysql -u root --all-databases --single-transaction > /dump/dump.sql",
            json!({"name": "MYSQL_PWD", "valueFrom": {"secretKeyRef": {
                "name": format!("{CREDENTIAL_PREFIX}mysql-root-password"), "key": CREDENTIAL_KEY}}}),
        ),
        _ => return None,
    };
    let security = pod_spec["containers"][0]["securityContext"].clone();
    let mut upload_security = security.clone();
    if let Some(fc) = ImageContracts::shipped().for_component("seaweedfs-filer") {
        upload_security["runAsUser"] = json!(fc.run_as.uid);
        upload_security["runAsGroup"] = json!(fc.run_as.gid);
    }
    let mut spec = pod_spec.clone();
    spec["restartPolicy"] = json!("OnFailure");
    spec["volumes"] = json!([{"name": "dump", "emptyDir": {}}]);
    spec["initContainers"] = json!([{
        "name": "dump",
        "image": c.image.to_string(),
        "command": ["sh", "-c", dump],
        "env": [password],
        "volumeMounts": [{"name": "dump", "mountPath": "/dump"}],
        "securityContext": security,
    }]);
    spec["containers"] = json!([{
        "name": "upload",
        "image": filer.image.to_string(),
        // -logtostderr: glog would otherwise write its files to /tmp, on a read-only root.
        "command": ["sh", "-c", format!(
            "weed -logtostderr=true filer.copy /dump/dump.sql http://seaweedfs-filer:8888/buckets/{}/$(date -u +%Y%m%dT%H%M%SZ)/",
            backup.bucket
        )],
        "volumeMounts": [{"name": "dump", "mountPath": "/dump"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": upload_security,
    }]);
    if let Some(obj) = spec.as_object_mut() {
        obj.remove("topologySpreadConstraints");
    }
    let name = format!("{}-backup", c.name);
    Some(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": input.namespace, "labels": labels(input, Some(&c.name))},
        "spec": {
            "schedule": backup.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 3, "template": {
                "metadata": {"labels": labels(input, Some(&name))},
                "spec": spec
            }}}
        }
    }))
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

fn network_policy(input: &RenderInput<'_>) -> Value {
    let mut egress = vec![
        json!({"to": [{"podSelector": {}}]}),
        json!({
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
        }),
    ];
    for r in &input.spec.egress {
        let mut rule = json!({"to": [{"ipBlock": {"cidr": r.cidr}}]});
        if !r.ports.is_empty() {
            rule["ports"] = json!(
                r.ports
                    .iter()
                    .map(|p| json!({"protocol": "TCP", "port": p}))
                    .collect::<Vec<_>>()
            );
        }
        egress.push(rule);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "workplace-egress", "namespace": input.namespace, "labels": labels(input, None),
                     "annotations": {"hexagone.fr/egress": input.spec.egress.iter()
                         .map(|r| format!("{}: {}", r.name, r.cidr)).collect::<Vec<_>>().join("; ")}},
        "spec": {
            "podSelector": {"matchLabels": {INSTANCE_LABEL: input.name}},
            "policyTypes": ["Egress"],
            "egress": egress
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::contract::{self, ImageContracts, Rule};

    fn rendered(yaml: &str, zones: &[&str]) -> Rendered {
        let spec: WorkplaceSpec = yaml_serde::from_str(yaml).unwrap();
        let catalog = spec.resolve(Catalog::shipped()).unwrap();
        let zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
        render(&RenderInput {
            name: "intranet",
            namespace: "ministere",
            spec: &spec,
            catalog: &catalog,
            eligible_zones: &zones,
        })
        .unwrap()
    }

    const SPEC: &str = "{policy: france-diffusion-restreinte, profile: users5000, domain: intranet.example.gouv.fr, egress: [{name: site mail relay, cidr: 192.0.2.25/32, ports: [25]}]}";

    /// The rendered objects of the sample Workplace, as reviewed. Regenerate with
    /// `HEXAGONE_BLESS=1 cargo test -p hexagone-platform --features k8s --lib render`.
    #[test]
    fn snapshot_of_the_5000_user_workplace() {
        let r = rendered(SPEC, &["fr-par-1", "fr-par-2"]);
        let mut text = String::new();
        for o in r.storage_class.iter().chain(&r.objects) {
            text.push_str("---\n");
            text.push_str(&yaml_serde::to_string(o).unwrap());
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots/workplace-users5000.yaml");
        if std::env::var_os("HEXAGONE_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} differs from the rendering: review the change, then bless it",
            path.display()
        );
    }

    /// What the rendering does not meet yet, per component and rule, with why. The contract test
    /// fails when one of these no longer occurs, so the list only shrinks.
    const KNOWN_GAPS: &[(&str, Rule, &str)] = &[
        (
            "onlyoffice",
            Rule::Identity,
            "the all-in-one image must start as root (chown, service, nginx on 80); the split images that run as uid 101 are not published for the 9.x community edition",
        ),
        (
            "onlyoffice",
            Rule::ReadOnlyRoot,
            "rewrites /etc/onlyoffice, /etc/nginx and supervisor files at each start, as root",
        ),
        (
            "onlyoffice",
            Rule::WritablePath,
            "no volumes while it cannot run in the restricted namespace (see identity)",
        ),
        (
            "postfix",
            Rule::Identity,
            "Postfix's master runs as root; the way out is eXo relaying to the site's relay directly",
        ),
        (
            "postfix",
            Rule::ReadOnlyRoot,
            "edits files directly in /etc (rsyslog.conf, nsswitch.conf) at each start",
        ),
        (
            "postfix",
            Rule::WritablePath,
            "no volumes while it cannot run in the restricted namespace (see identity)",
        ),
    ];

    /// Every container of every component of every profile, checked against its image's
    /// contract (the sample Workplace of `manifests/samples/workplace.yaml`, per profile).
    #[test]
    fn every_pod_of_every_profile_meets_its_image_contract() {
        let mut failures = Vec::new();
        let mut occurred = std::collections::BTreeSet::new();
        for profile in crate::catalog::Profile::ALL {
            let spec = format!(
                "{{policy: diffusion-restreinte, profile: {profile}, domain: intranet.ministere.example.fr, \
                 storage: {{provisioner: csi.example.fr}}, \
                 egress: [{{name: site mail relay, cidr: 192.0.2.25/32, ports: [25]}}], \
                 components: {{jitsi-jvb: {{replicas: 4}}}}}}"
            );
            let r = rendered(&spec, &["fr-par-1", "fr-par-2"]);
            let catalog = Catalog::shipped();
            // What is checked: one pod template per component, plus the backup CronJobs.
            let templates = r
                .objects
                .iter()
                .filter(|o| {
                    ["Deployment", "StatefulSet"].contains(&o["kind"].as_str().unwrap_or_default())
                })
                .count();
            assert_eq!(templates, catalog.components.len(), "{profile}");
            for b in contract::check(&r, catalog, ImageContracts::shipped()) {
                match KNOWN_GAPS
                    .iter()
                    .find(|(c, rule, _)| *c == b.component && *rule == b.rule)
                {
                    Some((c, rule, _)) => {
                        occurred.insert((*c, *rule));
                    }
                    None => failures.push(format!("{profile}: {b}")),
                }
            }
        }
        let stale: Vec<String> = KNOWN_GAPS
            .iter()
            .filter(|(c, rule, _)| !occurred.contains(&(*c, *rule)))
            .map(|(c, rule, why)| format!("{c} {rule} ({why})"))
            .collect();
        assert!(
            failures.is_empty() && stale.is_empty(),
            "breaches of the image contracts:\n{}\n\nKNOWN_GAPS that no longer occur (remove them):\n{}",
            failures.join("\n"),
            stale.join("\n")
        );
    }

    #[test]
    fn an_image_override_without_a_contract_is_reported_and_a_mirror_is_not() {
        let contracts = ImageContracts::shipped();
        let spec = "{policy: p, profile: users500, domain: a.fr, components: {valkey: {image: 'docker.io/valkey/valkey:8.0.0'}}}";
        let r = rendered(spec, &["fr-par-1"]);
        let unknown: Vec<String> = contract::check(&r, Catalog::shipped(), contracts)
            .into_iter()
            .filter(|b| b.rule == Rule::UnknownImage)
            .map(|b| format!("{} {}: {}", b.component, b.container, b.fact))
            .collect();
        assert_eq!(
            unknown,
            [
                "valkey valkey: image docker.io/valkey/valkey:8.0.0 has no contract (the catalog's image is docker.io/valkey/valkey:9.0.7)"
            ]
        );
        let mirrored = rendered(
            "{policy: p, profile: users500, domain: a.fr, registry: registry.site.example}",
            &["fr-par-1"],
        );
        let breaches = contract::check(&mirrored, Catalog::shipped(), contracts);
        assert!(
            !breaches.iter().any(|b| b.rule == Rule::UnknownImage),
            "{breaches:#?}"
        );
    }

    #[test]
    fn seaweedfs_masters_are_peered_by_name_and_an_even_count_is_refused() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let master = r
            .objects
            .iter()
            .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == "seaweedfs-master")
            .unwrap();
        let args = &master["spec"]["template"]["spec"]["containers"][0]["args"];
        assert!(args.as_array().unwrap().contains(&json!(
            "-peers=seaweedfs-master-0.seaweedfs-master-pods:9333,seaweedfs-master-1.seaweedfs-master-pods:9333,seaweedfs-master-2.seaweedfs-master-pods:9333"
        )), "{args}");
        let spec: WorkplaceSpec = yaml_serde::from_str(
            "{policy: p, profile: users5000, domain: a.fr, components: {seaweedfs-master: {replicas: 2}}}",
        )
        .unwrap();
        let catalog = spec.resolve(Catalog::shipped()).unwrap();
        let err = render(&RenderInput {
            name: "intranet",
            namespace: "ministere",
            spec: &spec,
            catalog: &catalog,
            eligible_zones: &["fr-par-1".to_owned()],
        })
        .unwrap_err();
        assert_eq!(
            err,
            "seaweedfs-master: 2 replicas; raft needs an odd number of masters"
        );
    }

    #[test]
    fn every_pod_requires_the_eligibility_label_and_the_restricted_standard() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let workloads: Vec<&Value> = r
            .objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
            .collect();
        assert_eq!(workloads.len(), Catalog::shipped().components.len());
        for w in workloads {
            let pod = &w["spec"]["template"]["spec"];
            let term = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchExpressions"][0];
            assert_eq!(
                term["key"],
                "eligible.hexagone.node-restriction.kubernetes.io/france-diffusion-restreinte",
                "{}",
                w["metadata"]["name"]
            );
            assert_eq!(pod["automountServiceAccountToken"], false);
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
            let c = &pod["containers"][0];
            assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert!(c["resources"]["requests"]["cpu"].is_string());
        }
    }

    #[test]
    fn attested_nodes_are_preferred() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let d = r
            .objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .unwrap();
        let aff = &d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"];
        let pref = &aff["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"];
        assert_eq!(pref["matchExpressions"][0]["key"], ATTESTED_COUNTRY_LABEL);
    }

    #[test]
    fn the_storage_class_allows_only_eligible_zones_and_waits_for_the_pod() {
        let r = rendered(SPEC, &["fr-par-1", "fr-par-2"]);
        let sc = r.storage_class.unwrap();
        assert_eq!(sc["volumeBindingMode"], "WaitForFirstConsumer");
        assert_eq!(
            sc["allowedTopologies"][0]["matchLabelExpressions"][0]["values"],
            json!(["fr-par-1", "fr-par-2"])
        );
        assert!(rendered(SPEC, &[]).storage_class.is_none());
    }

    #[test]
    fn secrets_are_referenced_never_written() {
        let r = rendered(SPEC, &["fr-par-1"]);
        assert!(
            r.secret
                .names
                .contains(&"credential-postgresql-password".to_owned())
        );
        assert!(!r.objects.iter().any(|o| o["kind"] == "Secret"));
        let text = serde_json::to_string(&r.objects).unwrap();
        assert!(
            !text.contains("PASSWORD\":\""),
            "a password value was rendered"
        );
    }

    #[test]
    fn egress_is_denied_but_for_namespace_dns_and_listed_destinations() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let np = r
            .objects
            .iter()
            .find(|o| o["kind"] == "NetworkPolicy")
            .unwrap();
        let egress = np["spec"]["egress"].as_array().unwrap();
        assert_eq!(egress.len(), 3);
        assert_eq!(egress[2]["to"][0]["ipBlock"]["cidr"], "192.0.2.25/32");
        assert_eq!(np["spec"]["policyTypes"], json!(["Egress"]));
    }

    #[test]
    fn databases_are_backed_up_to_their_bucket_on_eligible_nodes() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let crons: Vec<&Value> = r
            .objects
            .iter()
            .filter(|o| o["kind"] == "CronJob")
            .collect();
        let names: Vec<&str> = crons
            .iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["mysql-backup", "postgresql-backup"]);
        let pod = &crons[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        let upload = pod["containers"][0]["command"][2].as_str().unwrap();
        assert!(upload.contains("/buckets/postgresql-backups/"), "{upload}");
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchExpressions"][0]["key"],
            "eligible.hexagone.node-restriction.kubernetes.io/france-diffusion-restreinte"
        );
        assert_eq!(
            pod["initContainers"][0]["securityContext"]["runAsNonRoot"],
            true
        );
    }

    #[test]
    fn components_come_after_their_dependencies() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let order: Vec<&str> = r
            .objects
            .iter()
            .filter(|o| o["kind"] == "StatefulSet" || o["kind"] == "Deployment")
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
        assert!(pos("postgresql") < pos("keycloak"));
        assert!(pos("seaweedfs-filer") < pos("postgresql"));
        assert!(pos("mysql") < pos("exo"));
    }
}
