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
use crate::workplace::{VIDEOBRIDGE, WorkplaceSpec, eligible_label};

pub use crate::labels::{COMPONENT_LABEL, INSTANCE_LABEL, PART_OF, PART_OF_LABEL};
use crate::labels::{JOB_NAME_LABEL, MANAGED_BY_LABEL, WORKPLACE_NAMESPACE_LABEL};
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretRequest {
    /// Names of the Secrets to create, with a random value, when absent.
    pub names: Vec<String>,
    /// Files some of those Secrets also hold, made from the same value when the Secret is
    /// created: Secret name -> key -> content, where [`CREDENTIAL_VALUE`] stands for the value
    /// (a program that takes a secret only inside its configuration file reads it from there).
    pub files: BTreeMap<String, BTreeMap<String, String>>,
}

/// What stands for a credential's value in [`SecretRequest::files`].
pub const CREDENTIAL_VALUE: &str = "{value}";

/// The objects of one workplace.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The cluster-scoped StorageClass (None when no zone is eligible: nothing may bind).
    pub storage_class: Option<Value>,
    /// Namespaced objects, in apply order (the NetworkPolicies first, then each component after
    /// its dependencies, then the Ingresses).
    pub objects: Vec<Value>,
    /// Credentials to generate.
    pub secret: SecretRequest,
}

impl Rendered {
    /// Every object as one YAML stream, the StorageClass first, each document opened by `---`:
    /// what `hexagone-operator render` prints and the reviewed snapshot holds.
    pub fn yaml_stream(&self) -> String {
        let mut text = String::new();
        for o in self.storage_class.iter().chain(&self.objects) {
            text.push_str("---\n");
            text.push_str(&yaml_serde::to_string(o).expect("a JSON value is YAML"));
        }
        text
    }
}

/// Name of the StorageClass of a workplace: `hexagone.<namespace>.<name>`. A namespace holds no
/// dot, so two Workplaces never share a name (with dashes, `paris`/`rh-wp` and `paris-rh`/`wp`
/// did). A name past the 253 characters Kubernetes allows ends in a digest of the Workplace's
/// name instead.
pub fn storage_class_name(namespace: &str, name: &str) -> String {
    let full = format!("hexagone.{namespace}.{name}");
    if full.len() <= 253 {
        return full;
    }
    use sha2::Digest as _;
    let digest = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..16]);
    format!("hexagone.{namespace}.{digest}")
}

/// The labels naming the Workplace a StorageClass belongs to (a cluster-scoped object has no
/// owner reference to a namespaced one): checked before the class is replaced or deleted.
pub fn storage_class_labels(namespace: &str, name: &str) -> Value {
    json!({
        INSTANCE_LABEL: name,
        WORKPLACE_NAMESPACE_LABEL: namespace,
        PART_OF_LABEL: PART_OF,
        MANAGED_BY_LABEL: "hexagone-operator",
    })
}

/// Renders a workplace. Fails only when the policy name cannot name a label.
pub fn render(input: &RenderInput<'_>) -> Result<Rendered, String> {
    let label = eligible_label(&input.spec.policy)?;
    let order = input
        .catalog
        .dependency_order()
        .map_err(|cycle| format!("dependency cycle: {}", cycle.join(" -> ")))?;
    // Isolation before workloads: the NetworkPolicies are applied first, so no pod of the
    // workplace ever runs a moment with its egress (or ingress) open.
    let mut objects = vec![isolate_namespace(input), network_policy(input)];
    objects.extend(ingress_policies(input));
    let mut keys = std::collections::BTreeSet::new();
    let mut files = BTreeMap::new();
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
                .map(|(_, k)| k)
                .chain(wiring.secret_files.iter().map(|(k, _)| k))
                .map(|k| format!("{CREDENTIAL_PREFIX}{k}")),
        );
        render_component(c, contract, input, &label, &wiring, &mut objects);
        if name == "synapse" {
            keys.extend(
                matrix_admin_job(input, &label, &mut objects)
                    .into_iter()
                    .map(|k| format!("{CREDENTIAL_PREFIX}{k}")),
            );
            if input.catalog.component("exo").is_some() {
                files.insert(
                    format!("{CREDENTIAL_PREFIX}{MATRIX_JWT_CREDENTIAL}"),
                    BTreeMap::from([(SYNAPSE_JWT_KEY.to_owned(), synapse_jwt_config())]),
                );
            }
        }
        if name == "postgresql" {
            keys.extend(
                databases_job(input, contract, &label, &mut objects)
                    .into_iter()
                    .map(|k| format!("{CREDENTIAL_PREFIX}{k}")),
            );
        }
    }
    objects.extend(ingresses(input));
    let sc_name = storage_class_name(input.namespace, input.name);
    let storage_class = (!input.eligible_zones.is_empty()).then(|| {
        json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": sc_name, "labels": storage_class_labels(input.namespace, input.name)},
            "provisioner": input.spec.storage.provisioner,
            "parameters": input.spec.storage.parameters,
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowedTopologies": [{"matchLabelExpressions": [
                {"key": ZONE_LABEL, "values": input.eligible_zones}
            ]}]
        })
    });
    for o in &mut objects {
        drop_empty_lists(o);
    }
    Ok(Rendered {
        storage_class,
        objects,
        secret: SecretRequest {
            names: keys.into_iter().collect(),
            files,
        },
    })
}

/// Removes every field holding an empty list (a container without variables, say). The API
/// server stores none (Kubernetes' list fields are `omitempty`) but compares the decoded spec
/// with the stored one: applying `env: []` made a new generation of its workload at every
/// server-side apply, each one a watch event that started another apply.
fn drop_empty_lists(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !matches!(x, Value::Array(a) if a.is_empty()));
            m.values_mut().for_each(drop_empty_lists);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_empty_lists),
        _ => {}
    }
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
/// values built from those (env var, a value with `$(NAME)` references, which the kubelet
/// expands from the variables listed before it), arguments replacing the catalog's, files (a
/// ConfigMap `<component>-files`) mounted at a path, credentials mounted as files (key of the
/// credentials Secret, path), and values from Secrets that ops create, which the pod starts
/// without (env var, Secret, key).
#[derive(Default)]
struct Wiring {
    config: BTreeMap<String, String>,
    secrets: Vec<(String, String)>,
    fields: Vec<(String, String)>,
    composed: Vec<(String, String)>,
    args: Option<Vec<String>>,
    files: Vec<MountedFile>,
    secret_files: Vec<(String, String)>,
    optional_secrets: Vec<(String, String, String)>,
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
            // Mail goes to the site's relay directly (`spec.mail`, whose address `spec.egress`
            // lists). The script writes these into its properties file (exo-docker/exo-community@7.1.0
            // scripts/setenv-docker-customize.sh:104-109,360-373); `exo.email.smtp.starttls.enable`
            // is JavaMail's `mail.smtp.starttls.enable`, used when the relay offers STARTTLS.
            // Without `spec.mail` nothing is set and eXo sends nothing.
            if let Some(mail) = &input.spec.mail {
                set("EXO_MAIL_SMTP_HOST", mail.relay.clone());
                set("EXO_MAIL_SMTP_PORT", mail.port.to_string());
                set("EXO_MAIL_SMTP_STARTTLS", mail.start_tls.to_string());
                set(
                    "EXO_MAIL_FROM",
                    mail.from
                        .clone()
                        .unwrap_or_else(|| format!("noreply@{domain}")),
                );
                if let Some(login) = &mail.credentials_secret {
                    for (var, key) in [
                        ("EXO_MAIL_SMTP_USERNAME", "username"),
                        ("EXO_MAIL_SMTP_PASSWORD", "password"),
                    ] {
                        w.optional_secrets
                            .push((var.into(), login.clone(), key.into()));
                    }
                }
            }
            // eXo reads its other settings as properties, from exo.properties or as JVM system
            // properties (docs.exoplatform.org/administration/configuration.html); the image has
            // no variable for them, and Tomcat passes JAVA_OPTS to the JVM (eXo's own compose
            // file configures ONLYOFFICE this way, exo-docker/exo-community@0d05c38
            // docker-compose.yml:67-72). Secrets enter through the kubelet's $(NAME) expansion of
            // variables from the credential Secrets, so no rendered object holds one.
            let mut opts = vec![format!("-Dexo.base.url=https://{domain}")];
            if enabled("keycloak") {
                // docs.exoplatform.org/administration/oauth-integration.html (OpenId).
                secret(EXO_OIDC_SECRET_VAR, &client_credential("exo"));
                opts.extend([
                    "-Dexo.oauth.openid.enabled=true".to_owned(),
                    "-Dexo.oauth.openid.clientId=exo".to_owned(),
                    format!("-Dexo.oauth.openid.clientSecret=$({EXO_OIDC_SECRET_VAR})"),
                    format!("-Dexo.oauth.openid.redirectURL={}", exo_redirect_uri(domain)),
                    format!(
                        "-Dexo.oauth.openid.wellKnownConfigurationUrl={}/.well-known/openid-configuration",
                        realm_issuer(domain)
                    ),
                ]);
            }
            if enabled("onlyoffice") {
                // The browser reaches ONLYOFFICE on its own host; both sign with the same JWT
                // secret (exo-docker/exo-community@0d05c38 docker-compose.yml:67-72).
                secret(EXO_ONLYOFFICE_SECRET_VAR, "onlyoffice-jwt-secret");
                let docs = public_host("onlyoffice", domain).unwrap_or_default();
                opts.extend([
                    format!("-Donlyoffice.documentserver.host={docs}"),
                    "-Donlyoffice.documentserver.schema=https".to_owned(),
                    format!("-Donlyoffice.documentserver.allowedhosts=localhost,{domain},{docs}"),
                    "-Donlyoffice.documentserver.accessOnly=false".to_owned(),
                    format!("-Donlyoffice.documentserver.secret=$({EXO_ONLYOFFICE_SECRET_VAR})"),
                ]);
            }
            if enabled("synapse") {
                // The chat add-on (Meeds-io/matrix@00f0661 services/src/main/java/io/meeds/chat/
                // service/utils/MatrixConstants.java): Synapse's client API in the namespace, its
                // server_name, the admin account the Job creates, the secret it signs every
                // login JWT with, and Synapse's registration secret for creating accounts.
                secret(EXO_MATRIX_JWT_VAR, MATRIX_JWT_CREDENTIAL);
                secret(EXO_MATRIX_REGISTRATION_VAR, SYNAPSE_REGISTRATION_CREDENTIAL);
                opts.extend([
                    "-Dmeeds.matrix.server.url=http://synapse:8008".to_owned(),
                    format!("-Dmeeds.matrix.server.name={domain}"),
                    format!("-Dmeeds.matrix.user.name={MATRIX_ADMIN}"),
                    format!("-Dmeeds.matrix.jwt.secret=$({EXO_MATRIX_JWT_VAR})"),
                    format!(
                        "-Dmeeds.matrix.shared_secret_registration=$({EXO_MATRIX_REGISTRATION_VAR})"
                    ),
                ]);
            }
            w.composed.push(("JAVA_OPTS".into(), opts.join(" ")));
        }
        // Official mysql image: MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD, MYSQL_ROOT_PASSWORD.
        "mysql" => {
            set("MYSQL_DATABASE", "exo".into());
            set("MYSQL_USER", "exo".into());
            secret("MYSQL_PASSWORD", "mysql-password");
            secret("MYSQL_ROOT_PASSWORD", "mysql-root-password");
        }
        // Official postgres image. Its one role is the superuser, used only by the databases Job
        // and the backups; each application gets a role and a database of its own from the Job
        // (`postgresql-databases-*`), whose SQL runs at every apply, not only on an empty volume.
        "postgresql" => {
            set("PGDATA", "/var/lib/postgresql/data/pgdata".into());
            set("POSTGRES_USER", POSTGRES_SUPERUSER.into());
            secret("POSTGRES_PASSWORD", "postgresql-password");
            // Server settings on the command line (docker-library/docs@c4a9ba4
            // postgres/content.md:140-160, "Set options directly on the run line").
            w.args = Some(vec![
                "postgres".into(),
                "-c".into(),
                format!("max_connections={}", postgres_max_connections(input)),
            ]);
        }
        // Keycloak server configuration (KC_* options). The server is built by the init
        // container `build`, so `start --optimized` writes nothing under /opt/keycloak/lib.
        "keycloak" => {
            set("KC_DB", "postgres".into());
            set(
                "KC_DB_URL",
                "jdbc:postgresql://postgresql:5432/keycloak".into(),
            );
            set("KC_DB_USERNAME", "keycloak".into());
            secret("KC_DB_PASSWORD", &db_credential("keycloak"));
            // The default pool (100 per replica) exceeds PostgreSQL's default max_connections;
            // max_connections is sized from this (postgres_max_connections).
            set("KC_DB_POOL_MAX_SIZE", KEYCLOAK_DB_POOL.to_string());
            set("KC_HOSTNAME", format!("https://auth.{domain}"));
            set("KC_HTTP_ENABLED", "true".into());
            set("KC_PROXY_HEADERS", "xforwarded".into());
            // One-time: the temporary admin is created "only during the initial start of the
            // Keycloak server when the master realm doesn't exist yet"
            // (keycloak.org/server/bootstrap-admin-recovery); later starts ignore both, so
            // removing them would only restart Keycloak. Ops replace that admin by their own.
            set("KC_BOOTSTRAP_ADMIN_USERNAME", "admin".into());
            secret("KC_BOOTSTRAP_ADMIN_PASSWORD", "keycloak-admin-password");
            // The workplace's realm, imported at start (`--import-realm`, the catalog's args)
            // from data/import; its client secrets are ${NAME} placeholders Keycloak resolves
            // from these variables (keycloak.org/server/importExport).
            for client in realm_clients(input) {
                if let Some(var) = &client.secret_var {
                    secret(var, &client_credential(client.id));
                }
            }
            w.files.push(MountedFile {
                key: format!("{REALM}-realm.json"),
                content: keycloak_realm(input),
                path: format!("{KEYCLOAK_IMPORT_DIR}/{REALM}-realm.json"),
            });
        }
        // ONLYOFFICE Document Server Docker image variables (run-document-server.sh).
        "onlyoffice" => {
            set("DB_TYPE", "postgres".into());
            set("DB_HOST", "postgresql".into());
            set("DB_PORT", "5432".into());
            set("DB_NAME", "onlyoffice".into());
            set("DB_USER", "onlyoffice".into());
            secret("DB_PWD", &db_credential("onlyoffice"));
            set("JWT_ENABLED", "true".into());
            secret("JWT_SECRET", "onlyoffice-jwt-secret");
        }
        // matrixdotorg/synapse runs the configuration file SYNAPSE_CONFIG_PATH names (its start.py
        // no longer generates one); the database password comes to libpq as PGPASSWORD.
        "synapse" => {
            set("SYNAPSE_CONFIG_PATH", "/conf/homeserver.yaml".into());
            secret("PGPASSWORD", &db_credential("synapse"));
            let oidc = enabled("keycloak");
            if oidc {
                w.secret_files.push((
                    client_credential("synapse"),
                    SYNAPSE_OIDC_SECRET_PATH.into(),
                ));
            }
            w.secret_files.push((
                SYNAPSE_REGISTRATION_CREDENTIAL.into(),
                SYNAPSE_REGISTRATION_PATH.into(),
            ));
            if enabled("exo") {
                // jwt_config has no path option: its secret comes in a second configuration
                // file, from the credential's Secret (`synapse_jwt_config`).
                w.args = Some(
                    [
                        "run",
                        "--config-path",
                        "/conf/homeserver.yaml",
                        "--config-path",
                        SYNAPSE_JWT_CONFIG,
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                );
            }
            w.files.push(MountedFile {
                key: "homeserver.yaml".into(),
                content: synapse_config(domain, oidc),
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
            if enabled("coturn") {
                // Without it the browsers ask jitsi.net's STUN server in peer-to-peer calls
                // (djm@stable-11146-2 web/rootfs/defaults/settings-config.js:145-146; the
                // default is jitsi-meet's own config.js).
                set(
                    "P2P_STUN_SERVERS",
                    format!(
                        "{}:{TURN_PORT}",
                        public_host("coturn", domain).unwrap_or_default()
                    ),
                );
            }
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
            if enabled("coturn") {
                // Prosody hands each client STUN and TURN servers with credentials derived from
                // the secret it shares with coturn (XEP-0215 through mod_external_services:
                // djm@stable-11146-2 prosody/rootfs/defaults/prosody.cfg.lua:138-140,352-387).
                // TURN over TCP is what a firewall that drops UDP still lets through.
                let host = public_host("coturn", domain).unwrap_or_default();
                set("STUN_HOST", host.clone());
                set("STUN_PORT", TURN_PORT.to_string());
                set("TURN_HOST", host);
                set("TURN_PORT", TURN_PORT.to_string());
                set("TURN_TRANSPORT", "udp,tcp".into());
                secret("TURN_CREDENTIALS", TURN_SECRET);
            }
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
        // coturn, configured on its command line (the entrypoint runs `turnserver` with the
        // arguments when the first starts with `-`: coturn/coturn@docker/4.17.0-r0
        // docker/coturn/rootfs/usr/local/bin/docker-entrypoint.sh:3-14). The entrypoint `eval`s
        // each argument: the secret is the kubelet's $(NAME) expansion of a generated
        // credential, hex digits only, so it holds nothing a shell would interpret.
        "coturn" => {
            secret(TURN_SECRET_VAR, TURN_SECRET);
            w.args = Some(coturn_args(domain));
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
        // -master: 4.53 keeps -mserver only as a deprecated alias
        // (sw@7506e5f91cd6:weed/command/volume.go:223-224,305-307).
        "seaweedfs-volume" => {
            w.args = Some(vec![
                "volume".into(),
                "-dir=/data".into(),
                format!("-master={}", seaweedfs_masters(input).join(",")),
                "-port=8080".into(),
            ]);
        }
        // S3 authentication is on only when both keys are set (one admin identity); the Iceberg
        // and Lance listeners that -s3 also opens are not used.
        "seaweedfs-filer" => {
            secret("AWS_ACCESS_KEY_ID", "seaweedfs-s3-access-key");
            secret("AWS_SECRET_ACCESS_KEY", "seaweedfs-s3-secret-key");
            // The change events of the buckets go to the auditor through the filer's webhook
            // notification, the one notifier that POSTs to an HTTP endpoint (sw@7506e5f91cd6
            // weed/notification/webhook/http.go), configured by notification.toml, which
            // the filer looks for in /etc/seaweedfs (weed/server/filer_server.go:298,
            // weed/util/config.go:42-55). The token, which only the auditor can issue, comes
            // from viper's WEED_ override (weed/util/config.go:208-213).
            w.files.push(MountedFile {
                key: "notification.toml".into(),
                content: filer_notification(input),
                path: "/etc/seaweedfs/notification.toml".into(),
            });
            w.optional_secrets.push((
                "WEED_NOTIFICATION_WEBHOOK_BEARER_TOKEN".into(),
                AUDITOR_TOKEN_SECRET.into(),
                "token".into(),
            ));
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

/// The port coturn listens on for STUN and TURN, over UDP and TCP (its default, and what the
/// image EXPOSEs: coturn/coturn@docker/4.17.0-r0 docker/coturn/debian/Dockerfile:139).
pub const TURN_PORT: u16 = 3478;
/// The range coturn allocates relayed addresses in: its defaults, written out so the
/// NetworkPolicy admitting the videobridges to it names the same range (`--min-port`,
/// `--max-port`, coturn/coturn@4.17.0 src/apps/relay/mainrelay.c:1707-1708).
pub const TURN_RELAY_PORTS: (u16, u16) = (49152, 65535);
/// The credential Prosody and coturn share (TURN REST API credentials: coturn's
/// `static-auth-secret`, Prosody's `external_service_secret`).
const TURN_SECRET: &str = "coturn-secret";
/// The variable carrying it into coturn's command line.
const TURN_SECRET_VAR: &str = "TURN_STATIC_AUTH_SECRET";

/// coturn's command line: TURN REST API credentials from the shared secret, no TLS listener
/// (media is DTLS-SRTP end to end; TURN over TCP 3478 serves firewalls that drop UDP), no admin
/// CLI, relaying UDP only, and no relaying to loopback (coturn's default), multicast or
/// link-local peers (a cloud's metadata address): an authenticated client could otherwise
/// reach them through the relay. What else it may reach is the NetworkPolicy's call: only the
/// videobridges admit it. Options: coturn/coturn@4.17.0 src/apps/relay/mainrelay.c:1697-1803.
fn coturn_args(domain: &str) -> Vec<String> {
    let (min, max) = TURN_RELAY_PORTS;
    vec![
        "--log-file=stdout".into(),
        format!("--listening-port={TURN_PORT}"),
        format!(
            "--realm={}",
            public_host("coturn", domain).unwrap_or_default()
        ),
        "--fingerprint".into(),
        "--use-auth-secret".into(),
        format!("--static-auth-secret=$({TURN_SECRET_VAR})"),
        "--no-tls".into(),
        "--no-cli".into(),
        "--no-tcp-relay".into(),
        "--no-multicast-peers".into(),
        "--denied-peer-ip=0.0.0.0-0.255.255.255".into(),
        "--denied-peer-ip=169.254.0.0-169.254.255.255".into(),
        "--denied-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff".into(),
        format!("--min-port={min}"),
        format!("--max-port={max}"),
        "--pidfile=/var/lib/coturn/turnserver.pid".into(),
    ]
}

/// The label telling a workplace's videobridges apart (`0`, `1`, ...).
pub const VIDEO_BRIDGE_LABEL: &str = "hexagone.fr/video-bridge";

/// One single-pod Deployment per videobridge (`jitsi-jvb-0`, `jitsi-jvb-1`, ...), from the
/// component's rendered Deployment: the bridge learns the address it advertises from
/// JVB_ADVERTISE_IPS alone (djm@stable-11146-2 jvb/rootfs/defaults/jvb.conf:13-14,134-153, the
/// ice4j static mapping of the pod's address to `address#port`), an environment variable the
/// pods of one workload cannot each set differently. The Jitsi chart runs one Deployment per
/// bridge for the same reason (jitsi-contrib/jitsi-helm@v3.4.0 templates/jvb/deployment.yaml:
/// 19-41,156-167). Recreate, so a bridge's address never reaches two pods during a rollout.
/// A bridge with an address in `spec.video` also gets a Service of its own, on that address's
/// port, selecting its pod alone.
fn videobridges(input: &RenderInput<'_>, template: &Value) -> Vec<Value> {
    let video = input.spec.video.clone().unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..input.spec.videobridges(input.catalog) {
        let name = format!("{VIDEOBRIDGE}-{i}");
        let index = i.to_string();
        let mut d = template.clone();
        d["metadata"]["name"] = json!(name);
        d["metadata"]["labels"][VIDEO_BRIDGE_LABEL] = json!(index);
        d["spec"]["replicas"] = json!(1);
        d["spec"]["strategy"] = json!({"type": "Recreate"});
        d["spec"]["selector"]["matchLabels"][VIDEO_BRIDGE_LABEL] = json!(index);
        d["spec"]["template"]["metadata"]["labels"][VIDEO_BRIDGE_LABEL] = json!(index);
        if let Some(b) = video.bridges.get(i as usize) {
            if let Some(env) = d["spec"]["template"]["spec"]["containers"][0]["env"].as_array_mut()
            {
                env.push(json!({"name": "JVB_ADVERTISE_IPS",
                                "value": format!("{}#{}", b.address, b.port)}));
            }
            let port = json!({"name": "media", "port": b.port, "targetPort": "media",
                              "protocol": "UDP"});
            let mut selector = selector(input, VIDEOBRIDGE);
            selector[VIDEO_BRIDGE_LABEL] = json!(index);
            out.push(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": input.namespace,
                             "labels": d["metadata"]["labels"].clone()},
                "spec": {"type": "LoadBalancer", "selector": selector,
                         "ports": [port]}
            }));
        }
        out.push(d);
    }
    out
}

/// PostgreSQL's superuser: created by the image on the first initialisation (POSTGRES_USER,
/// docker-library/postgres@9451a9a 17/trixie/docker-entrypoint.sh:92,217-230), used only by the
/// databases Job and the backups. No application connects as it.
pub const POSTGRES_SUPERUSER: &str = "workplace";
/// MySQL's superuser (the image's `root`, MYSQL_ROOT_PASSWORD): the backups only.
pub const MYSQL_SUPERUSER: &str = "root";
/// Keycloak's pool per replica (KC_DB_POOL_MAX_SIZE; default 100, Keycloak's "db-pool-max-size",
/// docs.redhat.com red_hat_build_of_keycloak 26.2 server_configuration_guide db-relevant-options).
pub const KEYCLOAK_DB_POOL: u32 = 20;
/// Synapse's pool per process (`database.args.cp_max`, element-hq/synapse@v1.141.0
/// docs/usage/configuration/config_documentation.md:1461-1500; Element's chart uses 10).
pub const SYNAPSE_DB_POOL: u32 = 10;
/// ONLYOFFICE's connections per replica, which no variable of the image sets: each process's
/// pool is `sql.connectionlimit`, 10 (ONLYOFFICE/server@037498cf Common/config/default.json;
/// `max: connectionlimit`, DocService/sources/databaseConnectors/postgreConnector.js@4ef123c),
/// and the docservice and the converter each open one (UNCONFIRMED: two processes).
pub const ONLYOFFICE_DB_CONNECTIONS: u32 = 20;
/// Connections kept besides the applications' pools: PostgreSQL's superuser_reserved_connections
/// (3 by default, postgresql.org/docs/17/runtime-config-connection.html), the databases Job and
/// the backup's dump, and margin.
pub const POSTGRES_SPARE_CONNECTIONS: u32 = 10;

/// The credential of an application's database role.
fn db_credential(app: &str) -> String {
    format!("{app}-db-password")
}

/// An application's database on PostgreSQL: its own role (named after the component) and
/// database, how it is created, and the connections the application may open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDatabase {
    /// The component, which is also its role's name.
    pub role: String,
    /// The database (from the catalog's `writes`).
    pub database: String,
    /// Options of CREATE DATABASE.
    pub options: &'static str,
    /// Connections per replica times replicas.
    pub connections: u32,
}

/// Every enabled component's database on PostgreSQL (the catalog's `writes` of kind database on
/// `postgresql`), in catalog order.
pub fn postgres_databases(input: &RenderInput<'_>) -> Vec<AppDatabase> {
    let mut out = Vec::new();
    for c in &input.catalog.components {
        for w in &c.writes {
            if w.kind != crate::catalog::StoreKind::Database || w.on != "postgresql" {
                continue;
            }
            let (options, per_replica) = match c.name.as_str() {
                // element-hq/synapse@v1.141.0 docs/postgres.md:39-52: C collation and ctype, from
                // template0 (the image's template1 is en_US.utf8, 17/trixie/Dockerfile:64).
                "synapse" => (
                    "ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
                    SYNAPSE_DB_POOL,
                ),
                // keycloak/keycloak@3ba2f511 docs/guides/server/db.adoc ("Configuring Unicode
                // support for a PostgreSQL database").
                "keycloak" => ("ENCODING 'UTF8'", KEYCLOAK_DB_POOL),
                "onlyoffice" => ("ENCODING 'UTF8'", ONLYOFFICE_DB_CONNECTIONS),
                // A new client of PostgreSQL gets the default pool of 10 until it is sized.
                _ => ("ENCODING 'UTF8'", 10),
            };
            out.push(AppDatabase {
                role: c.name.clone(),
                database: w.name.clone(),
                options,
                connections: per_replica * replicas(c, input),
            });
        }
    }
    out
}

/// PostgreSQL's max_connections: every application's pools plus the spare connections, and
/// never below PostgreSQL's default of 100.
pub fn postgres_max_connections(input: &RenderInput<'_>) -> u32 {
    let pools: u32 = postgres_databases(input)
        .iter()
        .map(|d| d.connections)
        .sum();
    (pools + POSTGRES_SPARE_CONNECTIONS).max(100)
}

/// The idempotent SQL of the databases Job: for each application, its role (password from its own
/// credential, reset on each run, so the Secret stays the truth) and its database owned by that
/// role, which no other role may connect to. CREATE DATABASE cannot run in a transaction or a DO
/// block, hence psql's `SELECT ... WHERE NOT EXISTS \gexec`; the password comes from the
/// environment through `\getenv` (psql 15 and later, PostgreSQL 17 psql reference) and is quoted
/// by psql's `:'variable'`, so it is never on a command line.
fn databases_sql(dbs: &[AppDatabase]) -> String {
    let mut sql = String::from("\\set ON_ERROR_STOP on\n");
    for d in dbs {
        let (role, db) = (&d.role, &d.database);
        let var = password_var(role);
        let create_db =
            format!("CREATE DATABASE {db} OWNER {role} {}", d.options).replace('\'', "''");
        sql.push_str(&format!(
            "-- {role}\n\
             \\unset app_password\n\
             \\getenv app_password {var}\n\
             SELECT 'CREATE ROLE {role} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}')\\gexec\n\
             ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'app_password';\n\
             SELECT '{create_db}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{db}')\\gexec\n\
             ALTER DATABASE {db} OWNER TO {role};\n\
             REVOKE ALL ON DATABASE {db} FROM PUBLIC;\n"
        ));
    }
    sql
}

/// The variable carrying an application role's password into the databases Job.
fn password_var(role: &str) -> String {
    format!(
        "{}_DB_PASSWORD",
        role.to_ascii_uppercase().replace('-', "_")
    )
}

/// The Job creating the applications' roles and databases: psql, from PostgreSQL's own image and
/// under its uid, against the `postgresql` Service as the superuser, once the server answers.
/// Its name carries a digest of what it runs (a Job's template cannot change), and it is deleted
/// ten minutes after it finishes, so the next apply runs it again: the step converges on every
/// apply, whatever the volume already holds.
fn databases_job(
    input: &RenderInput<'_>,
    contract: &ImageContract,
    eligible: &str,
    out: &mut Vec<Value>,
) -> Vec<String> {
    let Some(pg) = input.catalog.component("postgresql") else {
        return Vec::new();
    };
    let dbs = postgres_databases(input);
    if dbs.is_empty() {
        return Vec::new();
    }
    let sql = databases_sql(&dbs);
    let mut env = vec![json!({"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
        "name": format!("{CREDENTIAL_PREFIX}postgresql-password"), "key": CREDENTIAL_KEY}}})];
    let mut credentials = vec![];
    for d in &dbs {
        let key = db_credential(&d.role);
        env.push(
            json!({"name": password_var(&d.role), "valueFrom": {"secretKeyRef": {
            "name": format!("{CREDENTIAL_PREFIX}{key}"), "key": CREDENTIAL_KEY}}}),
        );
        credentials.push(key);
    }
    let config = "postgresql-databases";
    let labels = labels(input, Some("postgresql"));
    out.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": config, "namespace": input.namespace, "labels": labels},
        "data": {"databases.sql": sql}
    }));
    let script = format!(
        "until pg_isready -q -h postgresql -p 5432; do sleep 2; done; \
         exec psql -X -q -h postgresql -p 5432 -U {POSTGRES_SUPERUSER} -d postgres -f /sql/databases.sql"
    );
    let security = container_security(contract);
    let spec = json!({
        "restartPolicy": "OnFailure",
        "serviceAccountName": "postgresql",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": pod_security(contract),
        "affinity": affinity(eligible),
        "volumes": [{"name": "sql", "configMap": {"name": config}}],
        "containers": [{
            "name": "databases",
            "image": pg.image.to_string(),
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", script],
            "env": env,
            "volumeMounts": [{"name": "sql", "mountPath": "/sql", "readOnly": true}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
            "securityContext": security,
        }]
    });
    let digest = {
        use sha2::Digest as _;
        let text = serde_json::to_string(&json!([sql, spec])).expect("JSON");
        hex::encode(&sha2::Sha256::digest(text.as_bytes())[..4])
    };
    out.push(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": format!("{config}-{digest}"), "namespace": input.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 20,
            "ttlSecondsAfterFinished": 600,
            "template": {"metadata": {"labels": labels}, "spec": spec}
        }
    }));
    credentials
}

/// Synapse's login by JWT for eXo, as a configuration file of its own: `jwt_config` takes its
/// secret inline only (no path option: element-hq/synapse@v1.141.0 synapse/config/jwt.py:33-45,
/// docs/usage/configuration/config_documentation.md:3767-3800), so the operator writes this file
/// into the credential's Secret when it creates it, from the same value eXo reads, and Synapse
/// reads it as a second configuration file (`--config-path` twice: synapse/config/_base.py:
/// 933-956 merges them). The JWT module needs Authlib, which the image ships (docs/jwt.md:38-47;
/// the Docker image installs the `all` extras, docker/Dockerfile:60).
fn synapse_jwt_config() -> String {
    // A generated value is hex digits only: nothing in it is special to YAML.
    format!(
        "jwt_config:\n  enabled: true\n  secret: \"{CREDENTIAL_VALUE}\"\n  algorithm: {MATRIX_JWT_ALGORITHM}\n"
    )
}

/// The Job creating the Matrix admin account eXo acts as (Meeds-io/matrix@467f9c5 README.md,
/// "Create a user on Matrix server": `register_new_matrix_user -a`), from Synapse's image and
/// under its uid, against the `synapse` Service: the shared secret from the same configuration
/// file Synapse reads (`-c`, registration_shared_secret_path), `--exists-ok` so it converges
/// (element-hq/synapse@v1.141.0 synapse/_scripts/register_new_matrix_user.py:193-300). Its
/// pods carry Synapse's labels, so Synapse's ingress policy admits them. Named with a digest of
/// its template, retried until Synapse answers, deleted ten minutes after it finishes. Returns
/// the credentials it needs.
fn matrix_admin_job(input: &RenderInput<'_>, eligible: &str, out: &mut Vec<Value>) -> Vec<String> {
    let (Some(synapse), Some(_)) = (
        input.catalog.component("synapse"),
        input.catalog.component("exo"),
    ) else {
        return Vec::new();
    };
    let Some(contract) = ImageContracts::shipped().for_component("synapse") else {
        return Vec::new();
    };
    let labels = labels(input, Some("synapse"));
    let secret_volume = |name: &str, key: &str, file: &str| {
        json!({"name": name, "secret": {
            "secretName": format!("{CREDENTIAL_PREFIX}{key}"),
            "items": [{"key": CREDENTIAL_KEY, "path": file}],
            "defaultMode": 0o440
        }})
    };
    let registration_file = SYNAPSE_REGISTRATION_PATH
        .rsplit('/')
        .next()
        .unwrap_or(CREDENTIAL_KEY);
    let spec = json!({
        "restartPolicy": "OnFailure",
        "serviceAccountName": "synapse",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": pod_security(contract),
        "affinity": affinity(eligible),
        "volumes": [
            {"name": "files", "configMap": {"name": "synapse-files"}},
            secret_volume("registration", SYNAPSE_REGISTRATION_CREDENTIAL, registration_file),
            secret_volume("password", MATRIX_ADMIN_PASSWORD_CREDENTIAL, "password"),
        ],
        "containers": [{
            "name": "register",
            "image": synapse.image.to_string(),
            "imagePullPolicy": "IfNotPresent",
            "command": ["register_new_matrix_user", "--exists-ok", "-a", "-u", MATRIX_ADMIN,
                        "--password-file", "/password/password",
                        "-c", "/conf/homeserver.yaml", "http://synapse:8008"],
            "volumeMounts": [
                {"name": "files", "mountPath": "/conf/homeserver.yaml",
                 "subPath": "homeserver.yaml", "readOnly": true},
                {"name": "registration", "mountPath": SYNAPSE_REGISTRATION_PATH,
                 "subPath": registration_file, "readOnly": true},
                {"name": "password", "mountPath": "/password", "readOnly": true},
            ],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "securityContext": container_security(contract),
        }]
    });
    let digest = {
        use sha2::Digest as _;
        let text = serde_json::to_string(&spec).expect("JSON");
        hex::encode(&sha2::Sha256::digest(text.as_bytes())[..4])
    };
    out.push(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": format!("synapse-admin-{digest}"), "namespace": input.namespace,
                     "labels": labels},
        "spec": {
            "backoffLimit": 20,
            "ttlSecondsAfterFinished": 600,
            "template": {"metadata": {"labels": labels}, "spec": spec}
        }
    }));
    vec![
        SYNAPSE_REGISTRATION_CREDENTIAL.to_owned(),
        MATRIX_ADMIN_PASSWORD_CREDENTIAL.to_owned(),
    ]
}

/// Synapse's homeserver.yaml: PostgreSQL (the password from PGPASSWORD), media and signing key
/// on the data volume, not federated, no statistics sent, no open registration; with Keycloak,
/// login through the workplace's realm (`oidc_providers`, the client secret read from a mounted
/// credential: element-hq/synapse@v1.141.0 docs/openid.md "Keycloak", and `client_secret_path`,
/// docs/usage/configuration/config_documentation.md, oidc_providers).
fn synapse_config(domain: &str, oidc: bool) -> String {
    let mut config = json!({
        "server_name": domain,
        "public_baseurl": format!("https://matrix.{domain}/"),
        "pid_file": "/tmp/homeserver.pid",
        "listeners": [{"port": 8008, "type": "http", "tls": false, "x_forwarded": true,
                       "bind_addresses": ["0.0.0.0"],
                       "resources": [{"names": ["client"], "compress": false}]}],
        "database": {"name": "psycopg2", "args": {
            "user": "synapse", "dbname": "synapse", "host": "postgresql", "port": 5432,
            "cp_min": 5, "cp_max": SYNAPSE_DB_POOL,
            "keepalives_idle": 10, "keepalives_interval": 10, "keepalives_count": 3}},
        "media_store_path": "/data/media_store",
        "signing_key_path": format!("/data/{domain}.signing.key"),
        "report_stats": false,
        "trusted_key_servers": [],
        "federation_domain_whitelist": [],
        "enable_registration": false,
        // Accounts are created only with this secret (eXo's, and the admin Job's):
        // element-hq/synapse@v1.141.0 docs/usage/configuration/config_documentation.md:2704-2738.
        "registration_shared_secret_path": SYNAPSE_REGISTRATION_PATH,
    });
    if oidc {
        config["oidc_providers"] = json!([{
            "idp_id": "keycloak",
            "idp_name": "Keycloak",
            "issuer": realm_issuer(domain),
            "client_id": "synapse",
            "client_secret_path": SYNAPSE_OIDC_SECRET_PATH,
            "scopes": ["openid", "profile"],
            "user_mapping_provider": {"config": {
                "localpart_template": "{{ user.preferred_username }}",
                "display_name_template": "{{ user.name }}"
            }},
            "backchannel_logout_enabled": true
        }]);
    }
    yaml_serde::to_string(&config).expect("a JSON value is YAML")
}

/// The workplace's Keycloak realm.
pub const REALM: &str = "workplace";
/// Where the Keycloak image imports realm files from at start with `--import-realm`
/// (keycloak.org/server/importExport, "Importing a Realm during Startup": the container's
/// data/import).
pub const KEYCLOAK_IMPORT_DIR: &str = "/opt/keycloak/data/import";
/// Where Synapse reads its OpenID Connect client secret (`client_secret_path`).
const SYNAPSE_OIDC_SECRET_PATH: &str = "/secrets/oidc-client-secret";
/// Where Synapse reads its registration shared secret (`registration_shared_secret_path`).
const SYNAPSE_REGISTRATION_PATH: &str = "/secrets/registration-shared-secret";
/// Synapse's registration shared secret: shared with eXo's chat add-on, which creates its users'
/// accounts with it, and with the Job creating the admin account.
pub const SYNAPSE_REGISTRATION_CREDENTIAL: &str = "synapse-registration-secret";
/// The secret eXo signs Matrix login JWTs with, and Synapse checks them with (`jwt_config`).
pub const MATRIX_JWT_CREDENTIAL: &str = "matrix-jwt-secret";
/// The password of the Matrix admin account (eXo logs it in with a JWT: never used to log in,
/// but `register_new_matrix_user` needs one).
const MATRIX_ADMIN_PASSWORD_CREDENTIAL: &str = "matrix-admin-password";
/// The Matrix account eXo acts as (`meeds.matrix.user.name`), a Synapse admin.
pub const MATRIX_ADMIN: &str = "exo-admin";
/// The JWT algorithm: eXo signs with `Keys.hmacShaKeyFor(secret.getBytes())` and `signWith(key)`
/// (Meeds-io/matrix@0010a35 services/src/main/java/io/meeds/chat/service/MatrixService.java,
/// getJWTSessionToken), and jjwt picks HMAC-SHA384 for a key of 384 to 511 bits
/// (jwtk/jjwt@04f642c api/src/main/java/io/jsonwebtoken/security/Keys.java, hmacShaKeyFor;
/// `signWith(Key)` signs with the key's algorithm): a generated credential is 48 characters.
pub const MATRIX_JWT_ALGORITHM: &str = "HS384";
/// The second configuration file of Synapse, holding `jwt_config`, from the JWT credential's
/// Secret (key [`SYNAPSE_JWT_KEY`]).
const SYNAPSE_JWT_CONFIG: &str = "/secrets/jwt.yaml";
/// The key of the JWT credential's Secret holding Synapse's `jwt_config` file.
pub const SYNAPSE_JWT_KEY: &str = "synapse-jwt.yaml";
/// eXo's variables carrying the Matrix secrets into JAVA_OPTS.
const EXO_MATRIX_JWT_VAR: &str = "HEXAGONE_MATRIX_JWT_SECRET";
const EXO_MATRIX_REGISTRATION_VAR: &str = "HEXAGONE_MATRIX_REGISTRATION_SECRET";
/// eXo's variables carrying its secrets into JAVA_OPTS (through `$(NAME)`): not read by the
/// image itself.
const EXO_OIDC_SECRET_VAR: &str = "HEXAGONE_OIDC_CLIENT_SECRET";
const EXO_ONLYOFFICE_SECRET_VAR: &str = "HEXAGONE_ONLYOFFICE_JWT_SECRET";

/// The realm's issuer, as the applications see it (on the public host Keycloak's KC_HOSTNAME
/// names, which is also the token's `iss`).
pub fn realm_issuer(domain: &str) -> String {
    format!("https://auth.{domain}/realms/{REALM}")
}

/// The credential holding an OpenID Connect client's secret: Keycloak's realm and the
/// application read the same Secret.
fn client_credential(client: &str) -> String {
    format!("keycloak-client-{client}")
}

/// eXo's OpenID Connect callback (docs.exoplatform.org/administration/oauth-integration.html).
fn exo_redirect_uri(domain: &str) -> String {
    format!("https://{domain}/portal/openidAuth")
}

/// A client of the workplace's realm.
pub struct RealmClient {
    /// Its client id (the application's name).
    pub id: &'static str,
    /// The variable that carries its secret to Keycloak; None for a public client.
    pub secret_var: Option<String>,
    /// Where Keycloak may send the browser back to.
    pub redirect_uris: Vec<String>,
}

/// The clients of the enabled applications: eXo and Synapse are confidential (their secrets are
/// generated credentials), Jitsi's is public: the Keycloak adapter for Jitsi exchanges the code
/// without a secret, with `https://<meet host>/static/oidc-adapter.html?...` as redirect
/// (nordeck/jitsi-keycloak-adapter adapter.ts, getToken).
pub fn realm_clients(input: &RenderInput<'_>) -> Vec<RealmClient> {
    let domain = &input.spec.domain;
    let enabled = |n: &str| input.catalog.component(n).is_some();
    let mut out = Vec::new();
    if enabled("exo") {
        out.push(RealmClient {
            id: "exo",
            secret_var: Some("REALM_CLIENT_SECRET_EXO".into()),
            redirect_uris: vec![exo_redirect_uri(domain)],
        });
    }
    if enabled("synapse") {
        // element-hq/synapse@v1.141.0 docs/openid.md (Keycloak): the callback under
        // public_baseurl.
        out.push(RealmClient {
            id: "synapse",
            secret_var: Some("REALM_CLIENT_SECRET_SYNAPSE".into()),
            redirect_uris: vec![format!(
                "https://{}/_synapse/client/oidc/callback",
                public_host("synapse", domain).unwrap_or_default()
            )],
        });
    }
    if enabled("jitsi-web") {
        out.push(RealmClient {
            id: "jitsi",
            secret_var: None,
            redirect_uris: vec![format!(
                "https://{}/static/oidc-adapter.html*",
                public_host("jitsi-web", domain).unwrap_or_default()
            )],
        });
    }
    out
}

/// The realm file Keycloak imports at its first start (a realm that exists is skipped,
/// keycloak.org/server/importExport): the realm, no self-registration, TLS required from outside,
/// and the applications' clients (authorization code flow only; secrets as `${NAME}`
/// placeholders, never values).
fn keycloak_realm(input: &RenderInput<'_>) -> String {
    let domain = &input.spec.domain;
    let clients: Vec<Value> = realm_clients(input)
        .iter()
        .map(|c| {
            let host = c
                .redirect_uris
                .first()
                .and_then(|u| u.strip_prefix("https://"))
                .and_then(|u| u.split('/').next())
                .unwrap_or(domain);
            let mut client = json!({
                "clientId": c.id,
                "name": c.id,
                "enabled": true,
                "protocol": "openid-connect",
                "publicClient": c.secret_var.is_none(),
                "standardFlowEnabled": true,
                "implicitFlowEnabled": false,
                "directAccessGrantsEnabled": false,
                "serviceAccountsEnabled": false,
                "redirectUris": c.redirect_uris,
                "webOrigins": [format!("https://{host}")],
            });
            if let Some(var) = &c.secret_var {
                client["clientAuthenticatorType"] = json!("client-secret");
                client["secret"] = json!(format!("${{{var}}}"));
            }
            client
        })
        .collect();
    let realm = json!({
        "realm": REALM,
        "enabled": true,
        "sslRequired": "external",
        "registrationAllowed": false,
        "loginWithEmailAllowed": true,
        "bruteForceProtected": true,
        "clients": clients,
    });
    serde_json::to_string_pretty(&realm).expect("JSON")
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
    let mut capabilities = json!({"drop": ["ALL"]});
    // Only what the image's binaries cannot be executed without (coturn's file capability).
    if !contract.capabilities.is_empty() {
        capabilities["add"] = json!(
            contract
                .capabilities
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
        );
    }
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": capabilities,
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

/// Required in both modes: an audit-mode policy admits every node, so the label is then on all of
/// them, and switching modes changes labels, never pod templates (no rollout). Nodes with a valid
/// attestation are preferred either way.
fn affinity(eligible: &str) -> Value {
    json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": eligible, "operator": "In", "values": ["true"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {"matchExpressions": [
            {"key": ATTESTED_COUNTRY_LABEL, "operator": "Exists"}]}}]
    }})
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
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": meta(n),
        "spec": {"selector": selector(input, n), "ports": ports}
    });
    if n == "coturn" {
        // Clients reach the relay from outside, on TCP and UDP 3478 of one address (a Service
        // of mixed protocols: Kubernetes 1.26 and later, where the load balancer supports it).
        service["spec"]["type"] = json!("LoadBalancer");
    }
    // The videobridges get no component-wide Service: nothing reaches them through one. Each
    // bridge joins the brewery room on Prosody, where Jicofo finds it (JVB_BREWERY_MUC,
    // djm@stable-11146-2 jvb/rootfs/defaults/jvb.conf:9,69 and jicofo/rootfs/defaults/
    // jicofo.conf:20); participants send media to its advertised address, through its own
    // Service when it has one (`videobridges`); a ClusterIP on 10000/UDP reaches no participant.
    if n != VIDEOBRIDGE {
        out.push(service);
    }
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
    env.extend(wiring.optional_secrets.iter().map(|(var, secret, key)| {
        json!({"name": var, "valueFrom": {"secretKeyRef": {
            "name": secret, "key": key, "optional": true}}})
    }));
    // After the variables they refer to: the kubelet expands $(NAME) only from earlier ones.
    env.extend(
        wiring
            .composed
            .iter()
            .map(|(var, value)| json!({"name": var, "value": value})),
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
    for (key, path) in &wiring.secret_files {
        let name = format!("secret-{}", volume_name(path));
        let file = path.rsplit('/').next().unwrap_or(CREDENTIAL_KEY);
        // Readable by the pod's group only (fsGroup).
        volumes.push(json!({"name": name, "secret": {
            "secretName": format!("{CREDENTIAL_PREFIX}{key}"),
            "items": [{"key": CREDENTIAL_KEY, "path": file}],
            "defaultMode": 0o440
        }}));
        mounts.push(json!({"name": name, "mountPath": path, "subPath": file, "readOnly": true}));
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
    if n == "synapse" && input.catalog.component("exo").is_some() {
        let file = SYNAPSE_JWT_CONFIG
            .rsplit('/')
            .next()
            .unwrap_or(SYNAPSE_JWT_KEY);
        volumes.push(json!({"name": "jwt-config", "secret": {
            "secretName": format!("{CREDENTIAL_PREFIX}{MATRIX_JWT_CREDENTIAL}"),
            "items": [{"key": SYNAPSE_JWT_KEY, "path": file}],
            "defaultMode": 0o440
        }}));
        mounts.push(
            json!({"name": "jwt-config", "mountPath": SYNAPSE_JWT_CONFIG,
                           "subPath": file, "readOnly": true}),
        );
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
    let mut pod_spec = json!({
        "serviceAccountName": n,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": pod_security(contract),
        "affinity": affinity(eligible),
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
    if n == VIDEOBRIDGE {
        out.extend(videobridges(input, &workload));
    } else {
        out.push(workload);
    }
    if let Some(cron) = backup_job(c, input, &pod_spec) {
        out.push(cron);
    }
    // One pod at a time may be evicted: with one replica that is the pod itself, so an
    // ineligible node can always be drained (the component is briefly down, and says so). The
    // component's Job pods (databases, backups) carry its labels but are left out: the
    // disruption controller finds no scale for a Job's pod, fails safe and then allows no
    // eviction at all for as long as that pod exists.
    out.push(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(n),
        "spec": {"maxUnavailable": 1, "selector": {
            "matchLabels": selector(input, n),
            "matchExpressions": [{"key": JOB_NAME_LABEL, "operator": "DoesNotExist"}]
        }}
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
            format!("pg_dumpall -h postgresql -U {POSTGRES_SUPERUSER} > /dump/dump.sql"),
            json!({"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
                "name": format!("{CREDENTIAL_PREFIX}postgresql-password"), "key": CREDENTIAL_KEY}}}),
        ),
        "mysql" => (
            format!(
                "mysqldump -h mysql -u {MYSQL_SUPERUSER} --all-databases --single-transaction > /dump/dump.sql"
            ),
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
    // Never: a failed run's pod stays, with its log, and the Job starts another.
    spec["restartPolicy"] = json!("Never");
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
        "command": ["sh", "-c", backup_upload(&backup.bucket)],
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
            // A run that hangs (a dump waiting on a lock, an upload on a dead connection)
            // fails after BACKUP_DEADLINE_SECONDS instead of holding the schedule for ever
            // (`concurrencyPolicy: Forbid` starts no run while one is active), and so shows as
            // a failed backup on the Workplace.
            "jobTemplate": {"spec": {"backoffLimit": 3,
                                     "activeDeadlineSeconds": BACKUP_DEADLINE_SECONDS,
                                     "template": {
                "metadata": {"labels": labels(input, Some(&name))},
                "spec": spec
            }}}
        }
    }))
}

/// How long one backup run (every attempt of its Job) may take: six hours, for the largest
/// profile's dump and upload with margin. Past it the Job fails (`DeadlineExceeded`).
const BACKUP_DEADLINE_SECONDS: u64 = 6 * 3600;

/// The backup's upload: `weed filer.copy` to `/buckets/<bucket>/<UTC time>/`, then the file read
/// back from the filer and compared with the dump, byte for byte. `filer.copy` exits 0 when its
/// upload fails (it prints "copy file error" and still returns true:
/// sw@7506e5f91cd6:weed/command/filer_copy.go:170-179, and `weed` exits with what the command
/// returns, weed/weed.go:97-106), so without the check a failed upload is a successful Job and a
/// missing backup nobody sees. It writes the file as `<dir>` + the local file's base name
/// (filer_copy.go:339, 392); the filer answers a GET of a missing file with 404
/// (weed/server/filer_server_handlers_read.go:150-153), which `curl -f` turns into no output,
/// so `cmp` finds a difference. `curl` is in the image (docker/Dockerfile.go_build:100-101), `cmp`
/// in its Alpine base's BusyBox (alpinelinux/aports main/busybox/busyboxconfig, CONFIG_CMP=y).
/// Reading the data back, not the entry's size (which `filer.copy` sets from its own `stat`,
/// filer_copy.go:392), shows the volume servers hold it. A failed check fails the pod, and the
/// Job starts another (`restartPolicy: Never`, up to `backoffLimit`), keeping each failed pod and
/// its log, where the reason is read: a filer without writable volumes yet, right after the
/// workplace starts, is tried again. `-logtostderr`: glog would otherwise write its files to /tmp,
/// on a read-only root.
fn backup_upload(bucket: &str) -> String {
    format!(
        "set -eu; dir=/buckets/{bucket}/$(date -u +%Y%m%dT%H%M%SZ)/; \
         weed -logtostderr=true filer.copy /dump/dump.sql http://seaweedfs-filer:8888$dir; \
         if ! curl -fsS http://seaweedfs-filer:8888${{dir}}dump.sql | cmp -s - /dump/dump.sql; then \
         echo \"upload failed: the filer does not give back the dump ($(wc -c < /dump/dump.sql) bytes) \
         at ${{dir}}dump.sql\" >&2; exit 1; fi"
    )
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// Every pod of the namespace isolated both ways (`workplace-isolate-namespace`: it selects
/// all pods and allows nothing): the policies below open only the workplace's own flows, to
/// pods carrying the instance's labels, so a pod started in the namespace without them
/// receives and sends nothing (Kubernetes isolates a pod only when some policy selects it).
/// No rule lists: a policy type without rules allows nothing (k8s.io/api `networking/v1/types.go`,
/// `NetworkPolicySpec.Ingress` and `.Egress`: "If this field is empty then this NetworkPolicy
/// does not allow any traffic"), and an empty list is never stored (the fields are `omitempty`),
/// so applying one would change the object at every apply ([`tests::no_object_holds_an_empty_list`]).
fn isolate_namespace(input: &RenderInput<'_>) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "workplace-isolate-namespace", "namespace": input.namespace,
                     "labels": labels(input, None)},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    })
}

fn network_policy(input: &RenderInput<'_>) -> Value {
    let mut egress = vec![
        json!({"to": [{"podSelector": {}}]}),
        json!({
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
        }),
        // The workplace's own public hosts, through the ingress controller: OpenID Connect
        // discovery, token and key calls go to the issuer, https://auth.<domain>, which is also
        // the `iss` the applications check.
        json!({"to": [{"namespaceSelector": {"matchLabels": {INGRESS_CONTROLLER_LABEL: "true"}}}]}),
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

/// The Secret holding the workplace's TLS certificate and key (`kubernetes.io/tls`), for every
/// host of [`public_host`]: created by ops, or by cert-manager from a Certificate they declare.
pub const TLS_SECRET: &str = "workplace-tls";

/// The public host of an exposed component, as its own settings name it (EXO_PROXY_VHOST,
/// KC_HOSTNAME, PUBLIC_URL, public_baseurl); None for a component not exposed.
pub fn public_host(component: &str, domain: &str) -> Option<String> {
    Some(match component {
        "exo" => domain.to_owned(),
        "keycloak" => format!("auth.{domain}"),
        "jitsi-web" => format!("meet.{domain}"),
        "onlyoffice" => format!("docs.{domain}"),
        "synapse" => format!("matrix.{domain}"),
        // The TURN relay's Service (a load balancer or node port, not the ingress): ops point
        // this name at it, as they point the others at the ingress controller.
        "coturn" => format!("turn.{domain}"),
        _ => return None,
    })
}

/// One Ingress (networking.k8s.io/v1) per exposed component, TLS from [`TLS_SECRET`], on the
/// cluster's default IngressClass. Ingress rather than Gateway API routes: every conformant
/// cluster serves Ingress with the controller it already has, where Gateway API needs its CRDs
/// and a Gateway installed first.
fn ingresses(input: &RenderInput<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    for c in &input.catalog.components {
        let Some(host) = public_host(&c.name, &input.spec.domain) else {
            continue;
        };
        let Some(http) = c.ports.iter().find(|p| p.name == "http") else {
            continue;
        };
        out.push(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": c.name, "namespace": input.namespace, "labels": labels(input, Some(&c.name))},
            "spec": {
                "tls": [{"hosts": [host], "secretName": TLS_SECRET}],
                "rules": [{"host": host, "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": c.name, "port": {"number": http.port}}}
                }]}}]
            }
        }));
    }
    out
}

/// The namespace label that marks the cluster's ingress controller: the only way in from outside
/// the workplace for the exposed components. Ops label the controller's namespace with it
/// (`kubectl label namespace ingress-nginx hexagone.fr/ingress-controller=true`).
pub const INGRESS_CONTROLLER_LABEL: &str = "hexagone.fr/ingress-controller";

/// The components reached from outside through the ingress controller, on their `http` port.
pub const EXPOSED: &[&str] = &["exo", "keycloak", "jitsi-web", "onlyoffice", "synapse"];

/// The auditor, which receives the filer's change events (manifests/auditor/auditor.yaml:
/// namespace `hexagone-audit`, Service and pods `hexagone-auditor`, port 7381).
const AUDITOR_NAMESPACE: &str = "hexagone-audit";
const AUDITOR_NAME: &str = "hexagone-auditor";
const AUDITOR_PORT: u16 = 7381;
/// The Secret (key `token`) ops create in the workplace's namespace with the token
/// `hexagone-auditor serve token add` printed for this filer.
pub const AUDITOR_TOKEN_SECRET: &str = "hexagone-auditor-token";

/// The name the auditor's inventory knows this workplace's object store by:
/// `<namespace>.<workplace>` (a plain name of the auditor's alphabet).
pub fn auditor_endpoint_name(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

/// The filer's notification.toml: the auditor's object-store route for SeaweedFS
/// (`POST /v1/events/seaweedfs?endpoint=NAME&class=CLASS`, docs/auditor-service.md "SeaweedFS"),
/// for what is written under /buckets/ (the class of the catalog's buckets). Keys:
/// sw@7506e5f91cd6 weed/notification/webhook/types.go:74-104, weed/command/scaffold/notification.toml.
fn filer_notification(input: &RenderInput<'_>) -> String {
    let classes: std::collections::BTreeSet<String> = input
        .catalog
        .components
        .iter()
        .flat_map(|c| &c.writes)
        .filter(|w| w.kind == crate::catalog::StoreKind::Bucket)
        .filter_map(|w| {
            serde_json::to_value(w.class)
                .ok()?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    // One endpoint per filer: one class, or the auditor's default.
    let class = match classes.len() {
        1 => classes.first().cloned().unwrap_or_default(),
        _ => "object".to_owned(),
    };
    format!(
        "[notification.webhook]\n\
         enabled = true\n\
         endpoint = \"http://{AUDITOR_NAME}.{AUDITOR_NAMESPACE}.svc:{AUDITOR_PORT}/v1/events/seaweedfs?endpoint={}&class={class}\"\n\
         event_types = [\"create\", \"update\", \"rename\"]\n\
         path_prefixes = [\"/buckets/\"]\n\
         timeout_seconds = 10\n\
         max_retries = 5\n",
        auditor_endpoint_name(input.namespace, input.name)
    )
}

/// Flows that the catalog's `dependsOn` does not carry, each with why: (client, server).
const EXTRA_FLOWS: &[(&str, &str, &str)] = &[
    (
        "seaweedfs-master",
        "seaweedfs-volume",
        "the master grows and vacuums volumes on the volume servers (gRPC 18080)",
    ),
    (
        "seaweedfs-filer",
        "seaweedfs-volume",
        "the filer reads and writes chunks on the volume servers (it also dependsOn them)",
    ),
];

/// Which pods may connect to `server`, as component labels: the components that depend on it
/// (a database's dependency on the filer is its backup's: only the backup pods upload), the
/// backup pods of its own data, and the extra flows. Its own pods (cluster peers) are allowed
/// apart, on every port.
pub fn clients_of(input: &RenderInput<'_>, server: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let backup_target = |c: &Component| c.backup.is_some() && server.starts_with("seaweedfs-");
    for c in &input.catalog.components {
        if c.name == server {
            if c.backup.is_some() {
                out.insert(format!("{}-backup", c.name));
            }
            continue;
        }
        if c.depends_on.iter().any(|d| d == server) {
            out.insert(if backup_target(c) {
                format!("{}-backup", c.name)
            } else {
                c.name.clone()
            });
        }
        // `weed filer.copy` uploads straight to the volume servers
        // (sw@7506e5f91cd6:weed/command/filer_copy.go:352-379).
        if server == "seaweedfs-volume" && backup_target(c) {
            out.insert(format!("{}-backup", c.name));
        }
    }
    for (client, srv, _) in EXTRA_FLOWS {
        if *srv == server && input.catalog.component(client).is_some() {
            out.insert((*client).to_owned());
        }
    }
    out
}

/// Ingress isolation: every workplace pod denies all ingress (`workplace-deny-ingress`), then one
/// policy per component admits its clients on its declared ports, its own pods (cluster peers:
/// raft, Elasticsearch transport, Keycloak's cache) on every port, the ingress controller on the
/// `http` port of an exposed component, and the clients of video calls on the videobridge's UDP
/// port. The filer may also send its change events to the auditor's namespace.
fn ingress_policies(input: &RenderInput<'_>) -> Vec<Value> {
    let ns = input.namespace;
    let peer = |component: &str| json!({"podSelector": {"matchLabels": {INSTANCE_LABEL: input.name, COMPONENT_LABEL: component}}});
    let mut out = vec![json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "workplace-deny-ingress", "namespace": ns, "labels": labels(input, None)},
        "spec": {
            "podSelector": {"matchLabels": {INSTANCE_LABEL: input.name}},
            "policyTypes": ["Ingress"]
        }
    })];
    for c in &input.catalog.components {
        let ports: Vec<Value> = c
            .ports
            .iter()
            .map(|p| json!({"protocol": protocol(p.protocol), "port": p.port}))
            .collect();
        let mut rules = vec![json!({"from": [peer(&c.name)]})];
        let clients: Vec<Value> = clients_of(input, &c.name).iter().map(|n| peer(n)).collect();
        if !clients.is_empty() {
            rules.push(json!({"from": clients, "ports": ports}));
        }
        if EXPOSED.contains(&c.name.as_str())
            && let Some(http) = c.ports.iter().find(|p| p.name == "http")
        {
            rules.push(json!({
                "from": [{"namespaceSelector": {"matchLabels": {INGRESS_CONTROLLER_LABEL: "true"}}}],
                "ports": [{"protocol": "TCP", "port": http.port}]
            }));
        }
        if c.name == "jitsi-jvb" {
            // Participants send media from wherever they are (JVB_PORT, 10000/UDP).
            let media: Vec<Value> = c
                .ports
                .iter()
                .filter(|p| p.protocol == Protocol::Udp)
                .map(|p| json!({"protocol": "UDP", "port": p.port}))
                .collect();
            rules.push(json!({
                "from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}],
                "ports": media
            }));
            // The TURN relay forwards the media of clients that cannot reach a bridge, from
            // inside the cluster (an ipBlock need not match pod addresses).
            if input.catalog.component("coturn").is_some() {
                rules.push(json!({"from": [peer("coturn")], "ports": media}));
            }
        }
        if c.name == "coturn" {
            // Clients everywhere reach the relay on its listening ports; only the videobridges
            // answer on its relayed addresses (the one peer it should relay to).
            let listening: Vec<Value> = c
                .ports
                .iter()
                .map(|p| json!({"protocol": protocol(p.protocol), "port": p.port}))
                .collect();
            rules.push(json!({
                "from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}],
                "ports": listening
            }));
            let (min, max) = TURN_RELAY_PORTS;
            rules.push(json!({
                "from": [peer(VIDEOBRIDGE)],
                "ports": [{"protocol": "UDP", "port": min, "endPort": max}]
            }));
        }
        out.push(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("{}-ingress", c.name), "namespace": ns,
                         "labels": labels(input, Some(&c.name))},
            "spec": {
                "podSelector": {"matchLabels": selector(input, &c.name)},
                "policyTypes": ["Ingress"],
                "ingress": rules
            }
        }));
    }
    if input.catalog.component("seaweedfs-filer").is_some() {
        out.push(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "seaweedfs-filer-egress-auditor", "namespace": ns,
                         "labels": labels(input, Some("seaweedfs-filer"))},
            "spec": {
                "podSelector": {"matchLabels": selector(input, "seaweedfs-filer")},
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": AUDITOR_NAMESPACE}},
                        "podSelector": {"matchLabels": {COMPONENT_LABEL: AUDITOR_NAME}}
                    }],
                    "ports": [{"protocol": "TCP", "port": AUDITOR_PORT}]
                }]
            }
        }));
    }
    out
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

    const SPEC: &str = "{policy: france-diffusion-restreinte, profile: users5000, domain: intranet.example.gouv.fr, mail: {relay: 192.0.2.25}, egress: [{name: site mail relay, cidr: 192.0.2.25/32, ports: [25]}]}";

    /// The API server stores no empty list (Kubernetes' list fields are `omitempty`) and no
    /// null: an object rendered with one differs from the stored one at every server-side
    /// apply, which then changes it again (a new generation, a watch event), and the operator,
    /// watching its objects for drift, applied again without end (two NetworkPolicies did,
    /// with `ingress: []`).
    #[test]
    fn no_object_holds_an_empty_list() {
        fn walk(v: &Value, path: &str, found: &mut Vec<String>) {
            match v {
                Value::Array(a) if a.is_empty() => found.push(path.to_owned()),
                Value::Null => found.push(format!("{path} (null)")),
                Value::Array(a) => {
                    for (i, x) in a.iter().enumerate() {
                        walk(x, &format!("{path}[{i}]"), found);
                    }
                }
                Value::Object(m) => {
                    for (k, x) in m {
                        walk(x, &format!("{path}.{k}"), found);
                    }
                }
                _ => {}
            }
        }
        for spec in [
            SPEC,
            "{policy: dr, profile: users500, domain: intranet.example.fr}",
            "{policy: dr, profile: users50000, domain: intranet.example.fr, mail: {relay: 192.0.2.25, credentialsSecret: login}, egress: [{name: relay, cidr: 192.0.2.25/32, ports: [25]}]}",
        ] {
            let r = rendered(spec, &["fr-par-1", "fr-par-2"]);
            let mut found = Vec::new();
            for o in r.storage_class.iter().chain(&r.objects) {
                let name = format!("{} {}", o["kind"], o["metadata"]["name"]);
                walk(o, &name, &mut found);
            }
            assert!(found.is_empty(), "{spec}: {found:?}");
        }
    }

    #[test]
    fn exo_submits_mail_to_the_sites_relay_and_no_relay_of_its_own_runs() {
        let spec = SPEC.replace(
            "mail: {relay: 192.0.2.25}",
            "mail: {relay: 192.0.2.25, startTls: false, from: intranet@ministere.example.fr, credentialsSecret: relay-login}",
        );
        let r = rendered(&spec, &["fr-par-1"]);
        let config = &object(&r, "ConfigMap", "exo-config")["data"];
        for (k, v) in [
            ("EXO_MAIL_SMTP_HOST", "192.0.2.25"),
            ("EXO_MAIL_SMTP_PORT", "25"),
            ("EXO_MAIL_SMTP_STARTTLS", "false"),
            ("EXO_MAIL_FROM", "intranet@ministere.example.fr"),
        ] {
            assert_eq!(config[k], v, "{k}");
        }
        // The login comes from ops' Secret, never from a rendered object.
        for (var, key) in [
            ("EXO_MAIL_SMTP_USERNAME", "username"),
            ("EXO_MAIL_SMTP_PASSWORD", "password"),
        ] {
            assert_eq!(
                env_of(&r, "exo", var).unwrap()["valueFrom"]["secretKeyRef"],
                json!({"name": "relay-login", "key": key, "optional": true}),
                "{var}"
            );
            assert!(config.get(var).is_none(), "{var}");
        }
        // eXo's pods may reach the relay: the egress policy selects every labelled pod and
        // opens the relay's address on its port.
        let egress = object(&r, "NetworkPolicy", "workplace-egress");
        let exo_labels =
            &object(&r, "StatefulSet", "exo")["spec"]["template"]["metadata"]["labels"];
        for (k, v) in egress["spec"]["podSelector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(&exo_labels[k], v, "{k}");
        }
        assert!(
            egress["spec"]["egress"]
                .as_array()
                .unwrap()
                .contains(&json!({
                    "to": [{"ipBlock": {"cidr": "192.0.2.25/32"}}],
                    "ports": [{"protocol": "TCP", "port": 25}]
                })),
            "{egress}"
        );
        // The defaults: STARTTLS when offered, the workplace's own sender, no login.
        let r = rendered(SPEC, &["fr-par-1"]);
        let config = &object(&r, "ConfigMap", "exo-config")["data"];
        assert_eq!(config["EXO_MAIL_SMTP_STARTTLS"], "true");
        assert_eq!(config["EXO_MAIL_FROM"], "noreply@intranet.example.gouv.fr");
        assert!(env_of(&r, "exo", "EXO_MAIL_SMTP_USERNAME").is_none());
        // No relay of the workplace's own: no Postfix anywhere, no container listening on an
        // SMTP port (25, 465, 587).
        for o in &r.objects {
            let text = o.to_string();
            assert!(!text.contains("postfix"), "{}", o["metadata"]["name"]);
            for c in o["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for p in c["ports"].as_array().into_iter().flatten() {
                    assert!(
                        ![25, 465, 587].contains(&p["containerPort"].as_u64().unwrap_or(0)),
                        "{}: {p}",
                        o["metadata"]["name"]
                    );
                }
            }
        }
        // Without spec.mail eXo is told nothing (its default, localhost:25, reaches nothing).
        let r = rendered(
            &SPEC.replace("mail: {relay: 192.0.2.25}, ", ""),
            &["fr-par-1"],
        );
        let config = object(&r, "ConfigMap", "exo-config")["data"]
            .as_object()
            .unwrap();
        assert!(
            config.keys().all(|k| !k.starts_with("EXO_MAIL_")),
            "{config:?}"
        );
    }

    #[test]
    fn storage_class_names_never_collide_across_namespaces() {
        assert_ne!(
            storage_class_name("paris", "rh-wp"),
            storage_class_name("paris-rh", "wp")
        );
        assert_eq!(storage_class_name("paris", "rh-wp"), "hexagone.paris.rh-wp");
        let long = "w".repeat(250);
        let name = storage_class_name("paris", &long);
        assert!(
            name.len() <= 253 && name.starts_with("hexagone.paris."),
            "{name}"
        );
        assert_ne!(name, storage_class_name("paris", &"v".repeat(250)));
    }

    /// The rendered objects of the sample Workplace, as reviewed (an `insta` snapshot).
    /// Regenerate with `INSTA_UPDATE=always cargo test -p hexagone-platform --features k8s --lib
    /// render` (or `cargo insta review`) and read the diff before committing.
    #[test]
    fn snapshot_of_the_5000_user_workplace() {
        let text = rendered(SPEC, &["fr-par-1", "fr-par-2"]).yaml_stream();
        insta::with_settings!({
            snapshot_path => "../../tests/snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!("workplace-users5000", text);
        });
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
                 mail: {{relay: 192.0.2.25, credentialsSecret: relay-login}}, \
                 egress: [{{name: site mail relay, cidr: 192.0.2.25/32, ports: [25]}}], \
                 components: {{jitsi-jvb: {{replicas: 4}}}}, \
                 video: {{bridges: [{{address: 203.0.113.10}}, {{address: 203.0.113.10, port: 10001}}, \
                                    {{address: 203.0.113.11}}, {{address: '2001:db8::1'}}]}}}}"
            );
            let r = rendered(&spec, &["fr-par-1", "fr-par-2"]);
            let catalog = Catalog::shipped();
            // What is checked: one pod template per component but the videobridges, which have
            // one each (four), plus the backup CronJobs.
            let templates = r
                .objects
                .iter()
                .filter(|o| {
                    ["Deployment", "StatefulSet"].contains(&o["kind"].as_str().unwrap_or_default())
                })
                .count();
            assert_eq!(templates, catalog.components.len() - 1 + 4, "{profile}");
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
        // One per component, the three videobridges of the profile one each.
        assert_eq!(workloads.len(), Catalog::shipped().components.len() - 1 + 3);
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
        let policy = |name: &str| {
            r.objects
                .iter()
                .find(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("no NetworkPolicy {name}"))
        };
        // Every pod of the namespace, labelled or not, is isolated both ways before anything
        // runs: it is the first object applied.
        let isolate = policy("workplace-isolate-namespace");
        assert_eq!(r.objects[0], *isolate);
        assert_eq!(isolate["spec"]["podSelector"], json!({}));
        assert_eq!(isolate["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(
            isolate["spec"].get("egress"),
            None,
            "no rule: nothing allowed"
        );
        assert_eq!(
            isolate["spec"].get("ingress"),
            None,
            "no rule: nothing allowed"
        );
        let np = policy("workplace-egress");
        let egress = np["spec"]["egress"].as_array().unwrap();
        assert_eq!(egress.len(), 4);
        assert_eq!(
            egress[2]["to"][0]["namespaceSelector"]["matchLabels"][INGRESS_CONTROLLER_LABEL],
            "true"
        );
        assert_eq!(egress[3]["to"][0]["ipBlock"]["cidr"], "192.0.2.25/32");
        assert_eq!(np["spec"]["policyTypes"], json!(["Egress"]));
    }

    /// The components whose pods an ingress policy admits on `server`, besides its own pods
    /// (which every policy admits as cluster peers), and whether anything outside the namespace
    /// is admitted.
    fn admitted(r: &Rendered, server: &str) -> (Vec<String>, Vec<String>) {
        let np = r
            .objects
            .iter()
            .find(|o| {
                o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == format!("{server}-ingress")
            })
            .unwrap_or_else(|| panic!("no ingress policy for {server}"));
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"][COMPONENT_LABEL],
            server
        );
        let mut pods = Vec::new();
        let mut outside = Vec::new();
        for rule in np["spec"]["ingress"].as_array().unwrap() {
            for from in rule["from"].as_array().unwrap() {
                if let Some(ns) = from.get("namespaceSelector") {
                    outside.push(format!("namespaces {ns}"));
                } else if let Some(ip) = from.get("ipBlock") {
                    outside.push(format!("addresses {}", ip["cidr"]));
                } else {
                    let labels = &from["podSelector"]["matchLabels"];
                    assert_eq!(labels[INSTANCE_LABEL], "intranet", "{server}: {from}");
                    let c = labels[COMPONENT_LABEL]
                        .as_str()
                        .expect("a component")
                        .to_owned();
                    if c != server {
                        pods.push(c);
                    }
                }
            }
        }
        (pods, outside)
    }

    #[test]
    fn stores_admit_only_their_clients() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let none: Vec<String> = vec![];
        // Search (security disabled) only from eXo; Valkey (a cache) only from ONLYOFFICE.
        assert_eq!(
            admitted(&r, "search"),
            (vec!["exo".to_owned()], none.clone())
        );
        assert_eq!(
            admitted(&r, "valkey"),
            (vec!["onlyoffice".to_owned()], none.clone())
        );
        // The filer and its S3 gateway only from the backup uploads, the volume servers from
        // the master, the filer and the uploads (filer.copy writes to them directly).
        assert_eq!(
            admitted(&r, "seaweedfs-filer"),
            (
                vec!["mysql-backup".to_owned(), "postgresql-backup".to_owned()],
                none.clone()
            )
        );
        assert_eq!(
            admitted(&r, "seaweedfs-volume").0,
            [
                "mysql-backup",
                "postgresql-backup",
                "seaweedfs-filer",
                "seaweedfs-master"
            ]
        );
        // The databases from their applications and their own backup only.
        assert_eq!(
            admitted(&r, "postgresql").0,
            ["keycloak", "onlyoffice", "postgresql-backup", "synapse"]
        );
        assert_eq!(admitted(&r, "mysql").0, ["exo", "mysql-backup"]);
        // Exposed components from the ingress controller's namespace, on their http port only.
        let (_, outside) = admitted(&r, "keycloak");
        assert_eq!(
            outside,
            [format!(
                "namespaces {}",
                json!({"matchLabels": {INGRESS_CONTROLLER_LABEL: "true"}})
            )]
        );
        let kc = r
            .objects
            .iter()
            .find(|o| o["metadata"]["name"] == "keycloak-ingress")
            .unwrap();
        assert_eq!(
            kc["spec"]["ingress"][2]["ports"],
            json!([{"protocol": "TCP", "port": 8080}])
        );
        // Every workplace pod, jobs included, denies what no policy admits.
        let deny = r
            .objects
            .iter()
            .find(|o| o["metadata"]["name"] == "workplace-deny-ingress")
            .unwrap();
        assert_eq!(
            deny["spec"]["podSelector"]["matchLabels"],
            json!({INSTANCE_LABEL: "intranet"})
        );
        assert_eq!(
            deny["spec"].get("ingress"),
            None,
            "no rule: nothing allowed"
        );
        // One ingress policy per component, and each pod of the rendering is selected by its own.
        let policies = r
            .objects
            .iter()
            .filter(|o| {
                o["kind"] == "NetworkPolicy"
                    && o["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .ends_with("-ingress")
                    && o["metadata"]["name"] != "workplace-deny-ingress"
            })
            .count();
        assert_eq!(policies, Catalog::shipped().components.len());
    }

    #[test]
    fn exposed_components_are_served_on_the_hosts_their_settings_name() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let d = "intranet.example.gouv.fr";
        let find = |kind: &str, name: &str| {
            r.objects
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("no {kind} {name}"))
        };
        let config =
            |c: &str, k: &str| find("ConfigMap", &format!("{c}-config"))["data"][k].clone();
        let homeserver: Value = yaml_serde::from_str(
            find("ConfigMap", "synapse-files")["data"]["homeserver.yaml"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        // What each application believes its public address is.
        let believed = BTreeMap::from([
            (
                "exo",
                config("exo", "EXO_PROXY_VHOST")
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            (
                "keycloak",
                config("keycloak", "KC_HOSTNAME")
                    .as_str()
                    .unwrap()
                    .replace("https://", ""),
            ),
            (
                "jitsi-web",
                config("jitsi-web", "PUBLIC_URL")
                    .as_str()
                    .unwrap()
                    .replace("https://", ""),
            ),
            ("onlyoffice", format!("docs.{d}")),
            (
                "synapse",
                homeserver["public_baseurl"]
                    .as_str()
                    .unwrap()
                    .replace("https://", "")
                    .trim_end_matches('/')
                    .to_owned(),
            ),
        ]);
        let ingresses: Vec<&Value> = r
            .objects
            .iter()
            .filter(|o| o["kind"] == "Ingress")
            .collect();
        assert_eq!(ingresses.len(), believed.len());
        for (component, host) in believed {
            let ing = find("Ingress", component);
            assert_eq!(
                ing["spec"]["rules"][0]["host"],
                host.as_str(),
                "{component}"
            );
            assert_eq!(
                ing["spec"]["tls"][0]["hosts"][0],
                host.as_str(),
                "{component}"
            );
            assert_eq!(ing["spec"]["tls"][0]["secretName"], TLS_SECRET);
            // The backend is the component's http port, which its ingress policy admits from
            // the ingress controller.
            let backend = &ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
            assert_eq!(backend["name"], component);
            let policy = find("NetworkPolicy", &format!("{component}-ingress"));
            let admitted = policy["spec"]["ingress"]
                .as_array()
                .unwrap()
                .iter()
                .any(|rule| {
                    rule["from"][0]["namespaceSelector"]["matchLabels"][INGRESS_CONTROLLER_LABEL]
                        == "true"
                        && rule["ports"][0]["port"] == backend["port"]["number"]
                });
            assert!(
                admitted,
                "{component}: the controller may not reach {backend}"
            );
        }
    }

    /// The rendered object of that kind and name.
    fn object<'a>(r: &'a Rendered, kind: &str, name: &str) -> &'a Value {
        r.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    /// The container of a workload, and its variable `name` (a value or a secret reference).
    fn env_of<'a>(r: &'a Rendered, workload: &str, name: &str) -> Option<&'a Value> {
        r.objects.iter().find(|o| {
            ["Deployment", "StatefulSet"].contains(&o["kind"].as_str().unwrap_or_default())
                && o["metadata"]["name"] == workload
        })?["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == name)
    }

    fn ingress_host(r: &Rendered, component: &str) -> String {
        object(r, "Ingress", component)["spec"]["rules"][0]["host"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn keycloak_imports_a_realm_whose_clients_are_the_applications_on_their_public_hosts() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let find = |kind: &str, name: &str| object(&r, kind, name);
        let kc = &find("Deployment", "keycloak")["spec"]["template"]["spec"];
        let container = &kc["containers"][0];
        assert_eq!(
            container["args"],
            json!(["start", "--optimized", "--import-realm"])
        );
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/opt/keycloak/data/import/workplace-realm.json")
            .expect("the realm file is mounted where --import-realm reads");
        assert_eq!(mount["readOnly"], true);
        let text = find("ConfigMap", "keycloak-files")["data"]["workplace-realm.json"]
            .as_str()
            .unwrap();
        let realm: Value = serde_json::from_str(text).unwrap();
        assert_eq!(realm["realm"], "workplace");
        assert_eq!(realm["registrationAllowed"], false);
        let clients: BTreeMap<&str, &Value> = realm["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["clientId"].as_str().unwrap(), c))
            .collect();
        assert_eq!(
            clients.keys().copied().collect::<Vec<_>>(),
            ["exo", "jitsi", "synapse"]
        );
        // Redirects only to the hosts the Ingress serves each application on.
        let redirect_host = |c: &str| {
            let uris = clients[c]["redirectUris"].as_array().unwrap();
            assert_eq!(uris.len(), 1, "{c}");
            let uri = uris[0].as_str().unwrap();
            uri.strip_prefix("https://")
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(redirect_host("exo"), ingress_host(&r, "exo"));
        assert_eq!(redirect_host("synapse"), ingress_host(&r, "synapse"));
        assert_eq!(redirect_host("jitsi"), ingress_host(&r, "jitsi-web"));
        assert_eq!(
            clients["synapse"]["redirectUris"][0],
            format!(
                "https://{}/_synapse/client/oidc/callback",
                ingress_host(&r, "synapse")
            )
        );
        for c in clients.values() {
            assert_eq!(c["directAccessGrantsEnabled"], false);
            assert_eq!(c["implicitFlowEnabled"], false);
        }
        // The confidential clients' secrets: placeholders, each resolved by a variable of the
        // Keycloak container from the credential the application reads too. An unresolved
        // placeholder would leave the secret the literal text of this file.
        let mut placeholders = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            let end = rest[i..].find('}').unwrap();
            placeholders.push(&rest[i + 2..i + end]);
            rest = &rest[i + end..];
        }
        assert_eq!(
            placeholders,
            ["REALM_CLIENT_SECRET_EXO", "REALM_CLIENT_SECRET_SYNAPSE"]
        );
        for var in placeholders {
            let from = &env_of(&r, "keycloak", var).unwrap_or_else(|| panic!("{var} unset"))["valueFrom"]
                ["secretKeyRef"]["name"];
            assert!(
                r.secret.names.contains(&from.as_str().unwrap().to_owned()),
                "{from}"
            );
        }
        assert_eq!(clients["jitsi"]["publicClient"], true);
        assert!(clients["jitsi"].get("secret").is_none());
        let kc_secret = |var: &str| {
            env_of(&r, "keycloak", var).unwrap()["valueFrom"]["secretKeyRef"]["name"].clone()
        };

        // Synapse: its provider is the realm, on the host Keycloak's KC_HOSTNAME names, with
        // the secret Keycloak holds, read from a file of that same Secret.
        let homeserver: Value = yaml_serde::from_str(
            find("ConfigMap", "synapse-files")["data"]["homeserver.yaml"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let provider = &homeserver["oidc_providers"][0];
        let kc_hostname = find("ConfigMap", "keycloak-config")["data"]["KC_HOSTNAME"]
            .as_str()
            .unwrap();
        assert_eq!(
            provider["issuer"],
            format!("{kc_hostname}/realms/workplace")
        );
        assert_eq!(
            kc_hostname,
            format!("https://{}", ingress_host(&r, "keycloak"))
        );
        assert_eq!(provider["client_id"], "synapse");
        assert!(provider.get("client_secret").is_none());
        let path = provider["client_secret_path"].as_str().unwrap();
        let sy = &find("StatefulSet", "synapse")["spec"]["template"]["spec"];
        let m = sy["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .expect("the client secret file is mounted");
        let volume = sy["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        assert_eq!(
            volume["secret"]["secretName"],
            kc_secret("REALM_CLIENT_SECRET_SYNAPSE")
        );

        // eXo: its OpenID properties through JAVA_OPTS, the secret expanded by the kubelet
        // from a variable listed before it, from the same Secret as Keycloak's.
        assert_exo_java_opts(
            &r,
            &[
                "-Dexo.oauth.openid.enabled=true".to_owned(),
                "-Dexo.oauth.openid.clientId=exo".to_owned(),
                format!(
                    "-Dexo.oauth.openid.redirectURL={}",
                    clients["exo"]["redirectUris"][0].as_str().unwrap()
                ),
                format!(
                    "-Dexo.oauth.openid.wellKnownConfigurationUrl={kc_hostname}/realms/workplace/.well-known/openid-configuration"
                ),
                "-Dexo.oauth.openid.clientSecret=$(HEXAGONE_OIDC_CLIENT_SECRET)".to_owned(),
                format!(
                    "-Donlyoffice.documentserver.host={}",
                    ingress_host(&r, "onlyoffice")
                ),
                "-Donlyoffice.documentserver.secret=$(HEXAGONE_ONLYOFFICE_JWT_SECRET)".to_owned(),
            ],
            &[
                (
                    "HEXAGONE_OIDC_CLIENT_SECRET",
                    kc_secret("REALM_CLIENT_SECRET_EXO"),
                ),
                (
                    "HEXAGONE_ONLYOFFICE_JWT_SECRET",
                    env_of(&r, "onlyoffice", "JWT_SECRET").unwrap()["valueFrom"]["secretKeyRef"]
                        ["name"]
                        .clone(),
                ),
            ],
        );
    }

    #[test]
    fn the_filer_notifies_the_auditor_where_its_policy_lets_it_and_holds_no_token() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let files = object(&r, "ConfigMap", "seaweedfs-filer-files");
        let toml = files["data"]["notification.toml"].as_str().unwrap();
        let endpoint = toml
            .lines()
            .find_map(|l| l.strip_prefix("endpoint = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap();
        assert_eq!(
            endpoint,
            "http://hexagone-auditor.hexagone-audit.svc:7381/v1/events/seaweedfs?endpoint=ministere.intranet&class=backups"
        );
        assert!(
            toml.starts_with("[notification.webhook]\nenabled = true\n"),
            "{toml}"
        );
        assert!(toml.contains("path_prefixes = [\"/buckets/\"]"), "{toml}");
        assert!(!toml.contains("bearer_token"), "a token in a ConfigMap");
        // The egress policy opens exactly that namespace and port.
        let egress = object(&r, "NetworkPolicy", "seaweedfs-filer-egress-auditor");
        let rule = &egress["spec"]["egress"][0];
        let host = endpoint
            .strip_prefix("http://")
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let (name, port) = host.split_once(':').unwrap();
        let mut parts = name.split('.');
        let (service, namespace) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(
            rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            namespace
        );
        assert_eq!(
            rule["to"][0]["podSelector"]["matchLabels"][COMPONENT_LABEL],
            service
        );
        assert_eq!(rule["ports"][0]["port"].to_string(), port);
        // The file is where the filer looks, and the token comes from the Secret ops create
        // from the auditor's `serve token add`; the filer starts without it.
        let filer = &object(&r, "StatefulSet", "seaweedfs-filer")["spec"]["template"]["spec"]["containers"]
            [0];
        assert!(
            filer["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == "/etc/seaweedfs/notification.toml"
                    && m["subPath"] == "notification.toml")
        );
        let token = env_of(
            &r,
            "seaweedfs-filer",
            "WEED_NOTIFICATION_WEBHOOK_BEARER_TOKEN",
        )
        .unwrap();
        assert_eq!(
            token["valueFrom"]["secretKeyRef"],
            json!({"name": AUDITOR_TOKEN_SECRET, "key": "token", "optional": true})
        );
        assert!(!r.secret.names.iter().any(|n| n.contains("auditor")));
    }

    /// Prosody opens no external component port (`component_ports = { }` in the image's
    /// global configuration; Jicofo and the bridges log in as clients): nothing renders one,
    /// and its c2s and BOSH ports admit only the other Jitsi parts.
    #[test]
    fn prosody_exposes_no_component_port_and_only_to_jitsi() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let service = object(&r, "Service", "jitsi-prosody");
        let ports: Vec<u64> = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect();
        assert_eq!(ports, [5222, 5280]);
        let (clients, outside) = admitted(&r, "jitsi-prosody");
        assert_eq!(clients, ["jitsi-jicofo", "jitsi-jvb", "jitsi-web"]);
        assert!(outside.is_empty(), "{outside:?}");
    }

    #[test]
    fn only_the_filer_may_reach_the_auditor_and_by_namespace() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let egress: Vec<&Value> = r
            .objects
            .iter()
            .filter(|o| {
                o["kind"] == "NetworkPolicy"
                    && o["metadata"]["name"] != "workplace-isolate-namespace"
                    && o["spec"]["policyTypes"]
                        .as_array()
                        .unwrap()
                        .contains(&json!("Egress"))
            })
            .collect();
        // Besides the namespace's isolation, which allows nothing.
        assert_eq!(egress.len(), 2);
        let auditor = egress[1];
        assert_eq!(
            auditor["spec"]["podSelector"]["matchLabels"][COMPONENT_LABEL],
            "seaweedfs-filer"
        );
        let to = &auditor["spec"]["egress"][0]["to"][0];
        assert_eq!(
            to["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "hexagone-audit"
        );
        assert!(to.get("ipBlock").is_none());
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
        assert_eq!(
            crons[1]["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"],
            6 * 3600
        );
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

    /// The backup's upload as rendered, run by `sh` with stand-ins for `weed` and `curl` (its
    /// dump in a scratch directory instead of `/dump`): `weed filer.copy` exits 0 after a failed
    /// upload, as upstream's does, so the Job succeeds only when the filer then gives back the
    /// dump's bytes at the path `filer.copy` was given: not when it gives nothing, another
    /// content of the same size, or part of it.
    #[test]
    fn a_backup_upload_the_filer_does_not_give_back_fails_its_job() {
        use std::os::unix::fs::PermissionsExt;
        let r = rendered(SPEC, &["fr-par-1"]);
        let cron = r
            .objects
            .iter()
            .find(|o| o["metadata"]["name"] == "postgresql-backup")
            .unwrap();
        let command =
            cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][2]
                .as_str()
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("dump.sql"), "-- PostgreSQL database dump\n").unwrap();
        assert_eq!(std::fs::metadata(root.join("dump.sql")).unwrap().len(), 28);
        let bin = root.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let stand_ins = [
            // filer.copy's failure: an error on stderr, exit status 0.
            (
                "weed",
                "echo \"$@\" >> \"$LOG\"; echo 'copy file error: upload data: no writable volumes' >&2; exit 0",
            ),
            // The filer's answer to a GET: 404 (curl -f: 22, no output) or the bytes it holds.
            (
                "curl",
                "echo \"$@\" >> \"$LOG\"; [ \"$HELD\" = missing ] && exit 22; cat \"$HELD\"",
            ),
        ];
        for (name, body) in stand_ins {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = command.replace("/dump/", &format!("{}/", root.display()));
        let run = |held: &str| {
            let log = root.join(format!("log-{}", held.replace('/', "_")));
            let out = std::process::Command::new("sh")
                .args(["-c", &script])
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .env("LOG", &log)
                .env("HELD", held)
                .output()
                .unwrap();
            let calls = std::fs::read_to_string(&log).unwrap_or_default();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
                calls,
            )
        };
        // What the filer gives back: the dump, another dump of the same size, a truncated one.
        std::fs::write(root.join("other.sql"), "-- PostgreSQL database dumq\n").unwrap();
        std::fs::write(root.join("short.sql"), "-- PostgreSQL").unwrap();
        let held = |name: &str| root.join(name).display().to_string();
        let (code, stderr, calls) = run(&held("dump.sql"));
        assert_eq!(code, Some(0), "{stderr}");
        // The file asked for is the one filer.copy was told to write.
        let lines: Vec<&str> = calls.lines().collect();
        let copied_to = lines[0].split_whitespace().last().unwrap();
        assert!(
            copied_to.starts_with("http://seaweedfs-filer:8888/buckets/postgresql-backups/"),
            "{calls}"
        );
        assert!(
            lines[1].ends_with(&format!("{copied_to}dump.sql")),
            "{calls}"
        );
        for bad in ["missing".to_owned(), held("other.sql"), held("short.sql")] {
            let (code, stderr, _) = run(&bad);
            assert_eq!(code, Some(1), "{bad}: {stderr}");
            assert!(
                stderr.contains("upload failed: the filer does not give back the dump (28 bytes) at /buckets/postgresql-backups/"),
                "{stderr}"
            );
        }
    }

    /// The superusers' credentials, each with the only component whose pods may use it.
    const SUPERUSERS: &[(&str, &str, &str)] = &[
        (
            "credential-postgresql-password",
            POSTGRES_SUPERUSER,
            "postgresql",
        ),
        ("credential-mysql-root-password", MYSQL_SUPERUSER, "mysql"),
    ];

    /// Every way a pod of another component could connect to a database as its superuser: the
    /// superuser's credential in its environment, or the superuser named as its database user
    /// (a `*USER*` setting, or `user:` in a rendered file).
    fn superuser_connections(r: &Rendered) -> Vec<String> {
        let mut found = Vec::new();
        for o in &r.objects {
            let component = o["metadata"]["labels"][COMPONENT_LABEL]
                .as_str()
                .unwrap_or_default();
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let text = serde_json::to_string(o).unwrap();
            for (secret, user, owner) in SUPERUSERS {
                if component == *owner {
                    continue;
                }
                if text.contains(&format!("\"{secret}\"")) {
                    found.push(format!("{component}: {} {name} uses {secret}", o["kind"]));
                }
                if o["kind"] != "ConfigMap" {
                    continue;
                }
                for (k, v) in o["data"].as_object().into_iter().flatten() {
                    let v = v.as_str().unwrap_or_default();
                    let names_user = (k.to_ascii_uppercase().contains("USER") && v == *user)
                        || v.lines().any(|l| l.trim() == format!("user: {user}"));
                    if names_user {
                        found.push(format!("{component}: {name} {k} connects as {user}"));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn no_application_connects_as_a_database_superuser() {
        for profile in crate::catalog::Profile::ALL {
            let r = rendered(
                &format!("{{policy: p, profile: {profile}, domain: a.fr}}"),
                &["fr-par-1"],
            );
            assert_eq!(superuser_connections(&r), Vec::<String>::new(), "{profile}");
        }
        // The check sees both ways in: a credential, and a user name.
        let mut r = rendered(SPEC, &["fr-par-1"]);
        for o in &mut r.objects {
            if o["kind"] == "ConfigMap" && o["metadata"]["name"] == "keycloak-config" {
                o["data"]["KC_DB_USERNAME"] = json!(POSTGRES_SUPERUSER);
            }
            if o["kind"] == "Deployment" && o["metadata"]["name"] == "keycloak" {
                let env = &mut o["spec"]["template"]["spec"]["containers"][0]["env"];
                env.as_array_mut()
                    .unwrap()
                    .push(json!({"name": "KC_DB_PASSWORD", "valueFrom": {
                    "secretKeyRef": {"name": "credential-postgresql-password", "key": "value"}}}));
            }
        }
        assert_eq!(
            superuser_connections(&r),
            [
                "keycloak: keycloak-config KC_DB_USERNAME connects as workplace",
                "keycloak: \"Deployment\" keycloak uses credential-postgresql-password",
            ]
        );
    }

    /// Each application's database user, the credential its password comes from, and its pods'
    /// replicas, read from the rendering.
    fn postgres_clients(r: &Rendered) -> BTreeMap<String, (String, String, u32)> {
        let find = |kind: &str, name: &str| {
            r.objects
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("no {kind} {name}"))
        };
        let secret_of = |workload: &Value, var: &str| {
            workload["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == var)
                .map(|e| {
                    e["valueFrom"]["secretKeyRef"]["name"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .unwrap_or_else(|| panic!("no {var}"))
        };
        let replicas = |w: &Value| w["spec"]["replicas"].as_u64().unwrap() as u32;
        let kc = find("Deployment", "keycloak");
        let oo = find("StatefulSet", "onlyoffice");
        let sy = find("StatefulSet", "synapse");
        let homeserver: Value = yaml_serde::from_str(
            find("ConfigMap", "synapse-files")["data"]["homeserver.yaml"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        BTreeMap::from([
            (
                "keycloak".to_owned(),
                (
                    find("ConfigMap", "keycloak-config")["data"]["KC_DB_USERNAME"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    secret_of(kc, "KC_DB_PASSWORD"),
                    replicas(kc),
                ),
            ),
            (
                "onlyoffice".to_owned(),
                (
                    find("ConfigMap", "onlyoffice-config")["data"]["DB_USER"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    secret_of(oo, "DB_PWD"),
                    replicas(oo),
                ),
            ),
            (
                "synapse".to_owned(),
                (
                    homeserver["database"]["args"]["user"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    secret_of(sy, "PGPASSWORD"),
                    replicas(sy),
                ),
            ),
        ])
    }

    #[test]
    fn each_application_has_its_own_role_database_and_credential_set_at_every_apply() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let clients = postgres_clients(&r);
        let jobs = jobs_named(&r, "postgresql-databases-");
        assert_eq!(jobs.len(), 1);
        let job = jobs[0];
        // Deleted after it finishes, so the next apply runs it again.
        assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 600);
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert!(
            container["command"][2]
                .as_str()
                .unwrap()
                .contains("-U workplace")
        );
        let sql = r
            .objects
            .iter()
            .find(|o| o["metadata"]["name"] == "postgresql-databases")
            .unwrap()["data"]["databases.sql"]
            .as_str()
            .unwrap();
        let job_env: BTreeMap<&str, &str> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap(),
                    e["valueFrom"]["secretKeyRef"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        let mut credentials = std::collections::BTreeSet::new();
        for (app, (user, secret, _)) in &clients {
            assert_eq!(user, app, "{app} connects as its own role");
            assert!(credentials.insert(secret.clone()), "{app} shares {secret}");
            assert!(r.secret.names.contains(secret), "{secret} is not generated");
            // The Job sets that role's password from that same credential, every run.
            let var = password_var(app);
            assert_eq!(job_env.get(var.as_str()), Some(&secret.as_str()), "{app}");
            let block = sql.split(&format!("-- {app}\n")).nth(1).unwrap();
            let block = block.split("\n-- ").next().unwrap();
            assert!(
                block.contains(&format!("\\getenv app_password {var}\n")),
                "{block}"
            );
            assert!(
                block.contains(&format!("ALTER ROLE {app} WITH LOGIN NOSUPERUSER")),
                "{block}"
            );
            assert!(
                block.contains(&format!("ALTER DATABASE {app} OWNER TO {app};")),
                "{block}"
            );
            assert!(
                block.contains(&format!("REVOKE ALL ON DATABASE {app} FROM PUBLIC;")),
                "{block}"
            );
        }
        assert!(sql.contains(
            "SELECT 'CREATE DATABASE synapse OWNER synapse ENCODING ''UTF8'' LC_COLLATE ''C'' LC_CTYPE ''C'' TEMPLATE template0' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'synapse')\\gexec"
        ), "{sql}");
        // Nothing left for the image's first-initialisation scripts only.
        assert!(
            !serde_json::to_string(&r.objects)
                .unwrap()
                .contains("docker-entrypoint-initdb.d")
        );
    }

    #[test]
    fn the_pools_fit_in_max_connections_at_every_profile() {
        let spare = POSTGRES_SPARE_CONNECTIONS;
        let mut seen = Vec::new();
        for (profile, extra) in crate::catalog::Profile::ALL
            .iter()
            .map(|p| (p.as_str(), ""))
            .chain([("users5000", ", components: {keycloak: {replicas: 12}}")])
        {
            let r = rendered(
                &format!("{{policy: p, profile: {profile}, domain: a.fr{extra}}}"),
                &["fr-par-1"],
            );
            let pg = r
                .objects
                .iter()
                .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == "postgresql")
                .unwrap();
            let args = &pg["spec"]["template"]["spec"]["containers"][0]["args"];
            let max: u32 = args
                .as_array()
                .unwrap()
                .iter()
                .find_map(|a| a.as_str()?.strip_prefix("max_connections="))
                .unwrap_or_else(|| panic!("{profile}: no max_connections in {args}"))
                .parse()
                .unwrap();
            let clients = postgres_clients(&r);
            let kc_pool: u32 = r
                .objects
                .iter()
                .find(|o| o["metadata"]["name"] == "keycloak-config")
                .unwrap()["data"]["KC_DB_POOL_MAX_SIZE"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let homeserver: Value = yaml_serde::from_str(
                r.objects
                    .iter()
                    .find(|o| o["metadata"]["name"] == "synapse-files")
                    .unwrap()["data"]["homeserver.yaml"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            let cp_max = homeserver["database"]["args"]["cp_max"].as_u64().unwrap() as u32;
            let pools = kc_pool * clients["keycloak"].2
                + cp_max * clients["synapse"].2
                + ONLYOFFICE_DB_CONNECTIONS * clients["onlyoffice"].2;
            assert!(
                pools + spare <= max,
                "{profile}{extra}: pools {pools} + {spare} spare > max_connections {max}"
            );
            seen.push(max);
        }
        // Twelve Keycloak replicas need more than the default.
        assert_eq!(seen, [100, 100, 100, 280]);
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

    /// The sample's spec with three bridges (the 5,000-user profile's) and their addresses.
    const VIDEO_SPEC: &str = "{policy: france-diffusion-restreinte, profile: users5000, domain: intranet.example.gouv.fr, \
        video: {bridges: [{address: 203.0.113.10}, {address: 203.0.113.10, port: 10001}, {address: '2001:db8::7', port: 10002}]}}";

    /// A plain value of a component's ConfigMap.
    fn config_value(r: &Rendered, component: &str, key: &str) -> Option<String> {
        object(r, "ConfigMap", &format!("{component}-config"))["data"][key]
            .as_str()
            .map(str::to_owned)
    }

    /// Each videobridge is a workload of its own with one pod, which advertises the address the
    /// spec gives it (with its port, through the image's `address#port` mapping), behind a
    /// LoadBalancer Service selecting that pod alone on that port.
    #[test]
    fn each_videobridge_advertises_its_own_address_behind_a_service_of_its_own() {
        let r = rendered(VIDEO_SPEC, &["fr-par-1"]);
        assert!(
            !r.objects
                .iter()
                .any(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == VIDEOBRIDGE),
            "one workload for all bridges"
        );
        let expected = [
            ("203.0.113.10#10000", 10000),
            ("203.0.113.10#10001", 10001),
            ("2001:db8::7#10002", 10002),
        ];
        for (i, (advertised, port)) in expected.iter().enumerate() {
            let name = format!("jitsi-jvb-{i}");
            let d = object(&r, "Deployment", &name);
            assert_eq!(d["spec"]["replicas"], 1, "{name}");
            assert_eq!(d["spec"]["strategy"]["type"], "Recreate", "{name}");
            let index = i.to_string();
            assert_eq!(
                d["spec"]["selector"]["matchLabels"][VIDEO_BRIDGE_LABEL], index,
                "{name}: its selector would take the other bridges' pods"
            );
            assert_eq!(
                d["spec"]["template"]["metadata"]["labels"][VIDEO_BRIDGE_LABEL],
                index
            );
            assert_eq!(
                env_of(&r, &name, "JVB_ADVERTISE_IPS").unwrap()["value"],
                *advertised
            );
            let svc = object(&r, "Service", &name);
            assert_eq!(svc["spec"]["type"], "LoadBalancer");
            assert_eq!(
                svc["spec"]["selector"],
                json!({INSTANCE_LABEL: "intranet", COMPONENT_LABEL: VIDEOBRIDGE, VIDEO_BRIDGE_LABEL: index})
            );
            assert_eq!(
                svc["spec"]["ports"],
                json!([{"name": "media", "port": port, "targetPort": "media", "protocol": "UDP"}])
            );
        }
        assert!(
            r.objects
                .iter()
                .all(|o| o["metadata"]["name"] != "jitsi-jvb-3"),
            "a fourth bridge"
        );
        // The bridges do not ask an outside STUN server for their address.
        assert_eq!(
            config_value(&r, VIDEOBRIDGE, "JVB_DISABLE_STUN").as_deref(),
            Some("1")
        );
        // Without addresses the bridges still run, one workload each, advertising nothing and
        // exposed by no Service of their own: their clients go through the TURN relay.
        let bare = rendered(SPEC, &["fr-par-1"]);
        for i in 0..3 {
            let name = format!("jitsi-jvb-{i}");
            assert!(env_of(&bare, &name, "JVB_ADVERTISE_IPS").is_none());
            assert!(
                !bare
                    .objects
                    .iter()
                    .any(|o| o["kind"] == "Service" && o["metadata"]["name"] == name)
            );
        }
    }

    /// A spec whose bridge addresses are wrong is refused before anything renders, naming the
    /// field.
    #[test]
    fn bad_bridge_addresses_are_refused_naming_the_field() {
        let problems = |video: &str| {
            let spec: WorkplaceSpec = yaml_serde::from_str(&format!(
                "{{policy: p, profile: users5000, domain: a.fr, video: {video}}}"
            ))
            .unwrap();
            spec.resolve(Catalog::shipped())
                .err()
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            problems("{bridges: [{address: 203.0.113.10}]}"),
            [
                "spec.video.bridges: 1 addresses for 3 videobridges (spec.components.jitsi-jvb.replicas, or the users5000 profile's): list one per bridge"
            ]
        );
        assert_eq!(
            problems(
                "{bridges: [{address: meet.example.fr}, {address: 203.0.113.10}, {address: 203.0.113.10, port: 10000}]}"
            ),
            [
                "spec.video.bridges[0].address: \"meet.example.fr\" is not an IPv4 or IPv6 address (clients are given addresses, not names)",
                "spec.video.bridges[2]: advertises 203.0.113.10:10000, as bridge 1 does: each bridge needs an address and port of its own",
            ]
        );
        assert!(
            problems("{bridges: [{address: 203.0.113.10}, {address: 203.0.113.11}, {address: 203.0.113.12}]}")
                .is_empty()
        );
    }

    /// coturn and Prosody share one generated secret, which no rendered object holds; clients
    /// learn the relay's public name, which is also its realm.
    #[test]
    fn prosody_hands_out_turn_credentials_from_the_secret_coturn_checks() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let d = "intranet.example.gouv.fr";
        let credential = format!("{CREDENTIAL_PREFIX}{TURN_SECRET}");
        assert!(r.secret.names.contains(&credential));
        let prosody_secret = env_of(&r, "jitsi-prosody", "TURN_CREDENTIALS").unwrap();
        assert_eq!(
            prosody_secret["valueFrom"]["secretKeyRef"]["name"],
            credential
        );
        let coturn_secret = env_of(&r, "coturn", TURN_SECRET_VAR).unwrap();
        assert_eq!(
            coturn_secret["valueFrom"]["secretKeyRef"]["name"],
            credential
        );
        let coturn = object(&r, "Deployment", "coturn");
        let container = &coturn["spec"]["template"]["spec"]["containers"][0];
        assert!(container["command"].is_null(), "the image's entrypoint");
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for needed in [
            "--use-auth-secret",
            "--static-auth-secret=$(TURN_STATIC_AUTH_SECRET)",
            "--no-cli",
            "--no-tcp-relay",
            "--denied-peer-ip=169.254.0.0-169.254.255.255",
            "--min-port=49152",
            "--max-port=65535",
            "--listening-port=3478",
        ] {
            assert!(args.contains(&needed), "{needed}: {args:?}");
        }
        let host = format!("turn.{d}");
        assert!(args.contains(&format!("--realm={host}").as_str()));
        assert_eq!(
            config_value(&r, "jitsi-prosody", "TURN_HOST"),
            Some(host.clone())
        );
        assert_eq!(
            config_value(&r, "jitsi-prosody", "TURN_PORT").as_deref(),
            Some("3478")
        );
        assert_eq!(
            config_value(&r, "jitsi-prosody", "TURN_TRANSPORT").as_deref(),
            Some("udp,tcp")
        );
        assert_eq!(
            config_value(&r, "jitsi-web", "P2P_STUN_SERVERS"),
            Some(format!("{host}:3478"))
        );
        // Only NET_BIND_SERVICE is added back, which the restricted standard allows.
        assert_eq!(
            container["securityContext"]["capabilities"],
            json!({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})
        );
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        let svc = object(&r, "Service", "coturn");
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        let ports: Vec<(u64, &str)> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["port"].as_u64().unwrap(), p["protocol"].as_str().unwrap()))
            .collect();
        assert_eq!(ports, [(3478, "TCP"), (3478, "UDP")]);
        let text = serde_json::to_string(&r.objects).unwrap();
        assert!(!text.contains("static-auth-secret=0"), "a secret value");

        // Without the relay, Prosody offers no TURN server and no secret is asked for.
        let without = rendered(
            "{policy: france-diffusion-restreinte, profile: users5000, domain: intranet.example.gouv.fr, components: {coturn: {enabled: false}}}",
            &["fr-par-1"],
        );
        assert_eq!(config_value(&without, "jitsi-prosody", "TURN_HOST"), None);
        assert!(env_of(&without, "jitsi-prosody", "TURN_CREDENTIALS").is_none());
        assert!(!without.secret.names.contains(&credential));
    }

    /// From the attacker's side: whoever joins a call gets TURN credentials, so the relay is a
    /// way into the cluster. Its relayed addresses answer only the videobridges, the bridges'
    /// media port is the only one that admits it, and no other component lets it in.
    #[test]
    fn the_relay_reaches_the_videobridges_and_nothing_else() {
        let r = rendered(VIDEO_SPEC, &["fr-par-1"]);
        let (clients, outside) = admitted(&r, "coturn");
        assert_eq!(clients, [VIDEOBRIDGE]);
        assert_eq!(outside, ["addresses \"0.0.0.0/0\"", "addresses \"::/0\""]);
        let policy = object(&r, "NetworkPolicy", "coturn-ingress");
        let rules = policy["spec"]["ingress"].as_array().unwrap();
        let from_bridges = rules
            .iter()
            .find(|r| r["from"][0]["podSelector"]["matchLabels"][COMPONENT_LABEL] == VIDEOBRIDGE)
            .unwrap();
        assert_eq!(
            from_bridges["ports"],
            json!([{"protocol": "UDP", "port": 49152, "endPort": 65535}])
        );
        let from_anywhere = rules
            .iter()
            .find(|r| r["from"][0]["ipBlock"].is_object())
            .unwrap();
        assert_eq!(
            from_anywhere["ports"],
            json!([{"protocol": "TCP", "port": 3478}, {"protocol": "UDP", "port": 3478}])
        );
        let jvb = object(&r, "NetworkPolicy", "jitsi-jvb-ingress");
        let from_relay = jvb["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["from"][0]["podSelector"]["matchLabels"][COMPONENT_LABEL] == "coturn")
            .expect("the bridges admit the relay");
        assert_eq!(
            from_relay["ports"],
            json!([{"protocol": "UDP", "port": 10000}])
        );
        for c in &Catalog::shipped().components {
            if c.name == VIDEOBRIDGE || c.name == "coturn" {
                continue;
            }
            let (clients, outside) = admitted(&r, &c.name);
            assert!(
                !clients.contains(&"coturn".to_owned()),
                "{} admits coturn",
                c.name
            );
            assert!(
                !outside.iter().any(|o| o.starts_with("addresses")),
                "{} admits addresses: {outside:?}",
                c.name
            );
        }
    }

    /// The pod spec of workload or Job `name`.
    fn pod_of<'a>(r: &'a Rendered, name: &str) -> &'a Value {
        let o = r
            .objects
            .iter()
            .find(|o| {
                ["Deployment", "StatefulSet", "Job"].contains(&o["kind"].as_str().unwrap())
                    && o["metadata"]["name"].as_str().unwrap().starts_with(name)
            })
            .unwrap_or_else(|| panic!("no workload {name}"));
        &o["spec"]["template"]["spec"]
    }

    /// Asserts that eXo's JAVA_OPTS holds each of `properties`, and that each variable of
    /// `secrets` comes from the Secret named with it and is listed before JAVA_OPTS (the kubelet
    /// expands `$(NAME)` only from earlier variables).
    fn assert_exo_java_opts(r: &Rendered, properties: &[String], secrets: &[(&str, Value)]) {
        let opts = env_of(r, "exo", "JAVA_OPTS").unwrap()["value"]
            .as_str()
            .unwrap();
        for p in properties {
            assert!(opts.split(' ').any(|o| o == p), "{p} not in {opts}");
        }
        let names: Vec<&str> = pod_of(r, "exo")["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        for (var, secret) in secrets {
            assert!(pos(var) < pos("JAVA_OPTS"), "{var}");
            assert_eq!(
                &env_of(r, "exo", var).unwrap()["valueFrom"]["secretKeyRef"]["name"],
                secret,
                "{var}"
            );
        }
    }

    /// The Jobs whose name starts with `prefix` (a Job's name ends in a digest).
    fn jobs_named<'a>(r: &'a Rendered, prefix: &str) -> Vec<&'a Value> {
        r.objects
            .iter()
            .filter(|o| {
                o["kind"] == "Job" && o["metadata"]["name"].as_str().unwrap().starts_with(prefix)
            })
            .collect()
    }

    /// The mount at `path` in `container`, and the pod's volume it mounts.
    fn mounted_at<'a>(
        pod: &'a Value,
        container: &'a Value,
        path: &str,
    ) -> Option<(&'a Value, &'a Value)> {
        let m = container["volumeMounts"]
            .as_array()?
            .iter()
            .find(|m| m["mountPath"] == path)?;
        let v = pod["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == m["name"])?;
        Some((m, v))
    }

    /// The credential Secret a volume mounted at `path` in `container` reads.
    fn secret_at(pod: &Value, container: &Value, path: &str) -> Option<String> {
        let (_, v) = mounted_at(pod, container, path)?;
        v["secret"]["secretName"].as_str().map(str::to_owned)
    }

    #[test]
    fn exo_and_synapse_share_the_matrix_secrets_and_no_object_holds_one() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let registration = format!("{CREDENTIAL_PREFIX}{SYNAPSE_REGISTRATION_CREDENTIAL}");
        let jwt = format!("{CREDENTIAL_PREFIX}{MATRIX_JWT_CREDENTIAL}");
        for k in [&registration, &jwt] {
            assert!(r.secret.names.contains(k), "{k} is not generated");
        }

        // eXo: the add-on's five properties in JAVA_OPTS, the secrets expanded by the kubelet
        // from variables listed before it.
        assert_exo_java_opts(
            &r,
            &[
                "-Dmeeds.matrix.server.url=http://synapse:8008".to_owned(),
                "-Dmeeds.matrix.server.name=intranet.example.gouv.fr".to_owned(),
                format!("-Dmeeds.matrix.user.name={MATRIX_ADMIN}"),
                format!("-Dmeeds.matrix.jwt.secret=$({EXO_MATRIX_JWT_VAR})"),
                format!(
                    "-Dmeeds.matrix.shared_secret_registration=$({EXO_MATRIX_REGISTRATION_VAR})"
                ),
            ],
            &[
                (EXO_MATRIX_JWT_VAR, json!(jwt)),
                (EXO_MATRIX_REGISTRATION_VAR, json!(registration)),
            ],
        );

        // Synapse: the registration secret from a file of the same credential, the JWT secret
        // in a second configuration file of the same credential's Secret as eXo's.
        let homeserver: Value = yaml_serde::from_str(
            object(&r, "ConfigMap", "synapse-files")["data"]["homeserver.yaml"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!(homeserver.get("registration_shared_secret").is_none());
        assert!(homeserver.get("jwt_config").is_none());
        let path = homeserver["registration_shared_secret_path"]
            .as_str()
            .unwrap();
        let pod = pod_of(&r, "synapse");
        let server = &pod["containers"][0];
        assert_eq!(secret_at(pod, server, path), Some(registration.clone()));
        let args: Vec<&str> = server["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "run",
                "--config-path",
                "/conf/homeserver.yaml",
                "--config-path",
                SYNAPSE_JWT_CONFIG
            ]
        );
        // The file Synapse reads is the JWT credential's Secret's, made from the same value
        // eXo reads (the operator writes it when it creates the Secret).
        let file = secret_at(pod, server, SYNAPSE_JWT_CONFIG);
        assert_eq!(file, Some(jwt.clone()));
        let (m, v) = mounted_at(pod, server, SYNAPSE_JWT_CONFIG).unwrap();
        assert_eq!(v["secret"]["items"][0]["key"], SYNAPSE_JWT_KEY);
        assert_eq!(v["secret"]["items"][0]["path"], m["subPath"]);
        let template = &r.secret.files[&jwt][SYNAPSE_JWT_KEY];
        let written: Value =
            yaml_serde::from_str(&template.replace(CREDENTIAL_VALUE, "0123abcd")).unwrap();
        assert_eq!(
            written,
            json!({"jwt_config": {"enabled": true, "secret": "0123abcd",
                                  "algorithm": MATRIX_JWT_ALGORITHM}})
        );
        assert_eq!(r.secret.files.len(), 1, "{:?}", r.secret.files);
        // No rendered object holds a secret value: every one is a reference.
        let text = r.yaml_stream();
        assert!(!text.contains("registration_shared_secret:"), "{text}");
    }

    #[test]
    fn a_job_creates_the_matrix_admin_with_synapses_own_secret_and_converges() {
        let r = rendered(SPEC, &["fr-par-1"]);
        let admin = jobs_named(&r, "synapse-admin-");
        assert_eq!(admin.len(), 1);
        let job = admin[0];
        assert_eq!(job["metadata"]["labels"][COMPONENT_LABEL], "synapse");
        assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 600);
        let pod = pod_of(&r, "synapse-admin-");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], pod_of(&r, "synapse")["containers"][0]["image"]);
        let command: Vec<&str> = c["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(command[0], "register_new_matrix_user");
        for flag in ["--exists-ok", "-a"] {
            assert!(command.contains(&flag), "{command:?}");
        }
        let after = |f: &str| command[command.iter().position(|x| *x == f).unwrap() + 1];
        assert_eq!(after("-u"), MATRIX_ADMIN);
        assert_eq!(after("-c"), "/conf/homeserver.yaml");
        assert_eq!(*command.last().unwrap(), "http://synapse:8008");
        // The configuration it reads is Synapse's, and the secret file it names is mounted
        // from the credential Synapse reads.
        let (_, files) = mounted_at(pod, c, "/conf/homeserver.yaml").unwrap();
        assert_eq!(files["configMap"]["name"], "synapse-files");
        assert_eq!(
            secret_at(pod, c, SYNAPSE_REGISTRATION_PATH),
            secret_at(
                pod_of(&r, "synapse"),
                &pod_of(&r, "synapse")["containers"][0],
                SYNAPSE_REGISTRATION_PATH
            )
        );
        let password = after("--password-file");
        let dir = password.rsplit_once('/').unwrap().0;
        assert_eq!(
            secret_at(pod, c, dir),
            Some(format!(
                "{CREDENTIAL_PREFIX}{MATRIX_ADMIN_PASSWORD_CREDENTIAL}"
            ))
        );
        assert!(r.secret.names.contains(&format!(
            "{CREDENTIAL_PREFIX}{MATRIX_ADMIN_PASSWORD_CREDENTIAL}"
        )));
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    }

    #[test]
    fn without_exo_synapse_accepts_no_jwt_and_no_admin_job_is_rendered() {
        let r = rendered(
            "{policy: france-diffusion-restreinte, profile: users500, domain: a.example.fr, components: {exo: {enabled: false}}}",
            &["fr-par-1"],
        );
        let pod = pod_of(&r, "synapse");
        let server = &pod["containers"][0];
        assert!(server.get("args").is_none());
        assert_eq!(secret_at(pod, server, SYNAPSE_JWT_CONFIG), None);
        assert!(r.secret.files.is_empty());
        assert!(jobs_named(&r, "synapse-admin-").is_empty());
        assert!(
            !r.secret
                .names
                .contains(&format!("{CREDENTIAL_PREFIX}{MATRIX_JWT_CREDENTIAL}"))
        );
    }
}
