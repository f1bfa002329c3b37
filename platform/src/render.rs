//! Rendering (feature `k8s`): a pure function from a Workplace, its resolved catalog and the
//! eligible zones to the Kubernetes objects that run it. No client, no randomness: generated
//! credentials are named here ([`Rendered::secret`]) and filled in by the operator, which never
//! overwrites an existing value.
//!
//! Every pod: required node affinity on the policy's eligibility label, spread across zones, the restricted Pod Security Standard, a service
//! account without an API token, resources from the size profile. Volumes come from a
//! StorageClass whose allowedTopologies are the eligible zones and that binds only once the
//! pod's node is chosen. One NetworkPolicy denies all egress but the namespace, DNS and the
//! destinations the spec lists.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::catalog::{Catalog, Component, Probe, Protocol, Workload};
use crate::node::{ATTESTED_COUNTRY_LABEL, ZONE_LABEL};
use crate::workplace::{WorkplaceSpec, eligible_label};

/// Label every rendered object carries with the Workplace's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label carrying the component name.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/name";
/// Label marking objects as part of a Hexagone workplace.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// Value of [`PART_OF_LABEL`].
pub const PART_OF: &str = "hexagone-workplace";
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
        let wiring = wiring(c, input);
        keys.extend(
            wiring
                .secrets
                .iter()
                .map(|(_, k)| format!("{CREDENTIAL_PREFIX}{k}")),
        );
        render_component(c, input, &label, &wiring, &mut objects);
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

/// Environment of a component: plain values (a ConfigMap) and secret ones (env var, key of the
/// credentials Secret).
struct Wiring {
    config: BTreeMap<String, String>,
    secrets: Vec<(String, String)>,
}

/// How the components find each other. Services are named after components, one workplace per
/// namespace, so `postgresql:5432` is PostgreSQL. The variable names are each image's own
/// documented settings.
fn wiring(c: &Component, input: &RenderInput<'_>) -> Wiring {
    let domain = &input.spec.domain;
    let enabled = |n: &str| input.catalog.component(n).is_some();
    let mut config: BTreeMap<String, String> = BTreeMap::new();
    let mut secrets: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| {
        config.insert(k.to_owned(), v);
    };
    let mut secret = |k: &str, key: &str| secrets.push((k.to_owned(), key.to_owned()));
    match c.name.as_str() {
        // exo-docker/exo-community configuration.md.
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
            if enabled("search") {
                set("EXO_ES_HOST", "search".into());
                set("EXO_ES_PORT", "9200".into());
            }
            if enabled("postfix") {
                set("EXO_MAIL_SMTP_HOST", "postfix".into());
                set("EXO_MAIL_SMTP_PORT", "587".into());
            }
            if enabled("onlyoffice") {
                set(
                    "EXO_ONLYOFFICE_DOCUMENTSERVER_URL",
                    "http://onlyoffice/".into(),
                );
                secret(
                    "EXO_ONLYOFFICE_DOCUMENTSERVER_SECRET",
                    "onlyoffice-jwt-secret",
                );
            }
            if enabled("synapse") {
                set("EXO_MATRIX_SERVER_URL", "http://synapse:8008".into());
            }
            if enabled("keycloak") {
                set("EXO_OIDC_ENABLED", "true".into());
                set(
                    "EXO_OIDC_PROVIDER_URL",
                    format!("https://auth.{domain}/realms/workplace"),
                );
            }
        }
        // Official mysql image: MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD, MYSQL_ROOT_PASSWORD.
        "mysql" => {
            set("MYSQL_DATABASE", "exo".into());
            set("MYSQL_USER", "exo".into());
            secret("MYSQL_PASSWORD", "mysql-password");
            secret("MYSQL_ROOT_PASSWORD", "mysql-root-password");
        }
        // Official postgres image.
        "postgresql" => {
            set("PGDATA", "/var/lib/postgresql/data/pgdata".into());
            set("POSTGRES_USER", "workplace".into());
            secret("POSTGRES_PASSWORD", "postgresql-password");
        }
        // Keycloak server configuration (KC_* options).
        "keycloak" => {
            set("KC_DB", "postgres".into());
            set(
                "KC_DB_URL",
                "jdbc:postgresql://postgresql:5432/keycloak".into(),
            );
            set("KC_DB_USERNAME", "workplace".into());
            secret("KC_DB_PASSWORD", "postgresql-password");
            set("KC_HOSTNAME", format!("https://auth.{domain}"));
            set("KC_HTTP_ENABLED", "true".into());
            set("KC_PROXY_HEADERS", "xforwarded".into());
            set("KC_BOOTSTRAP_ADMIN_USERNAME", "admin".into());
            secret("KC_BOOTSTRAP_ADMIN_PASSWORD", "keycloak-admin-password");
        }
        // ONLYOFFICE Document Server Docker image variables.
        "onlyoffice" => {
            set("DB_TYPE", "postgres".into());
            set("DB_HOST", "postgresql".into());
            set("DB_PORT", "5432".into());
            set("DB_NAME", "onlyoffice".into());
            set("DB_USER", "workplace".into());
            secret("DB_PWD", "postgresql-password");
            if enabled("valkey") {
                set("REDIS_SERVER_HOST", "valkey".into());
            }
            set("JWT_ENABLED", "true".into());
            secret("JWT_SECRET", "onlyoffice-jwt-secret");
        }
        // matrixdotorg/synapse: the image generates homeserver.yaml from these on first start.
        "synapse" => {
            set("SYNAPSE_SERVER_NAME", domain.clone());
            set("SYNAPSE_REPORT_STATS", "no".into());
        }
        // docker-jitsi-meet env.example.
        "jitsi-web" | "jitsi-prosody" | "jitsi-jicofo" | "jitsi-jvb" => {
            set("PUBLIC_URL", format!("https://meet.{domain}"));
            set("XMPP_SERVER", "jitsi-prosody".into());
            set("XMPP_DOMAIN", "meet.jitsi".into());
            set("XMPP_AUTH_DOMAIN", "auth.meet.jitsi".into());
            set("XMPP_INTERNAL_MUC_DOMAIN", "internal-muc.meet.jitsi".into());
            set("XMPP_MUC_DOMAIN", "muc.meet.jitsi".into());
            set("TZ", "Europe/Paris".into());
            if c.name != "jitsi-web" {
                secret("JICOFO_AUTH_PASSWORD", "jitsi-jicofo-password");
                secret("JVB_AUTH_PASSWORD", "jitsi-jvb-password");
            }
        }
        // boky/postfix: relays only the workplace's own domain.
        "postfix" => {
            set("ALLOWED_SENDER_DOMAINS", domain.clone());
        }
        "search" => {
            set("xpack.security.enabled", "false".into());
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
        "seaweedfs-filer" => {
            secret("AWS_SECRET_ACCESS_KEY", "seaweedfs-s3-secret-key");
        }
        _ => {}
    }
    Wiring { config, secrets }
}

fn replicas(c: &Component, input: &RenderInput<'_>) -> u32 {
    input
        .spec
        .components
        .get(&c.name)
        .and_then(|o| o.replicas)
        .unwrap_or_else(|| c.sizing[&input.spec.profile].replicas)
}

fn probe(p: &Probe) -> Value {
    let action = match p {
        Probe::Http { path, port } => json!({"httpGet": {"path": path, "port": port}}),
        Probe::Tcp { port } => json!({"tcpSocket": {"port": port}}),
    };
    let mut v = action;
    v["periodSeconds"] = json!(10);
    v["failureThreshold"] = json!(3);
    v
}

fn render_component(
    c: &Component,
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

    let env: Vec<Value> = wiring
        .secrets
        .iter()
        .map(|(var, key)| {
            json!({"name": var, "valueFrom": {"secretKeyRef": {
                "name": format!("{CREDENTIAL_PREFIX}{key}"), "key": CREDENTIAL_KEY}}})
        })
        .collect();
    let container_ports: Vec<Value> = c
        .ports
        .iter()
        .map(|p| json!({"name": p.name, "containerPort": p.port, "protocol": protocol(p.protocol)}))
        .collect();
    let mounts: Vec<Value> = c
        .volumes
        .iter()
        .map(|v| json!({"name": v.name, "mountPath": v.mount_path}))
        .collect();
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
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"}
        }
    });
    if !c.args.is_empty() {
        container["args"] = json!(c.args);
    }
    if let Some(l) = &c.liveness {
        container["livenessProbe"] = probe(l);
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
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "affinity": affinity,
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": ZONE_LABEL,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(input, n)}
        }],
        "containers": [container]
    });
    let pod_meta = json!({"labels": labels(input, Some(n))});
    let workload = match c.workload {
        Workload::StatefulSet => {
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
            let mut volumes = Vec::new();
            for v in &c.volumes {
                let claim = format!("{n}-{}", v.name);
                out.push(json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(&claim),
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": sc,
                             "resources": {"requests": {"storage": sizing.storage.get(&v.name)}}}
                }));
                volumes
                    .push(json!({"name": v.name, "persistentVolumeClaim": {"claimName": claim}}));
            }
            if !volumes.is_empty() {
                pod_spec["volumes"] = json!(volumes);
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
/// from the filer's image) to `/buckets/<bucket>/<UTC time>/`. Same placement and security as the
/// component's pods, so the backup job too runs only on eligible nodes.
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
        "command": ["sh", "-c", format!(
            "weed filer.copy /dump/dump.sql http://seaweedfs-filer:8888/buckets/{}/$(date -u +%Y%m%dT%H%M%SZ)/",
            backup.bucket
        )],
        "volumeMounts": [{"name": "dump", "mountPath": "/dump"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": security,
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
