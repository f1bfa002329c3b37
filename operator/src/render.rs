//! `hexagone-operator render`: every object a Workplace produces, offline, as one YAML stream
//! (as `helm template` and `kustomize build` print theirs), so ops can review and diff a change
//! and keep the output in Git before applying it. The eligible zones, which the running operator
//! learns from the qualified nodes, are options here. Pure: text in, text out; `lib::run` reads
//! the file and prints.

use hexagone_platform::catalog::Catalog;
use hexagone_platform::contract::{self, ImageContracts, Rule};
use hexagone_platform::render::{RenderInput, render};
use hexagone_platform::workplace::WorkplaceSpec;
use serde::Deserialize as _;

/// What to render.
#[derive(Debug, Clone, Default)]
pub struct RenderRequest {
    /// The namespace to render into (default: each Workplace's own, else `default`).
    pub namespace: Option<String>,
    /// The zones holding eligible nodes.
    pub zones: Vec<String>,
}

/// Why a file could not be rendered; each names the document and what is unknown or wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// Not YAML.
    #[error("{file}: not YAML: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// The parser's message (with its line and column).
        message: String,
    },
    /// No document of kind Workplace.
    #[error(
        "{file}: no Workplace in the file (documents of kind Workplace, apiVersion hexagone.fr/v1alpha1)"
    )]
    NoWorkplace {
        /// The file.
        file: String,
    },
    /// A Workplace that cannot be rendered.
    #[error("{file}: Workplace {name}: {}", problems.join("; "))]
    Invalid {
        /// The file.
        file: String,
        /// The Workplace's name.
        name: String,
        /// Every problem, `field: message`.
        problems: Vec<String>,
    },
}

/// Renders every Workplace of `text` (a YAML stream, as `kubectl apply -f` takes it; documents
/// of other kinds are skipped).
pub fn render_file(file: &str, text: &str, request: &RenderRequest) -> Result<String, RenderError> {
    let mut out = String::new();
    let mut found = false;
    for doc in yaml_serde::Deserializer::from_str(text) {
        let doc = serde_json::Value::deserialize(doc).map_err(|e| RenderError::Yaml {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        if doc["kind"] != "Workplace" {
            continue;
        }
        found = true;
        out.push_str(&render_workplace(file, &doc, request)?);
    }
    if !found {
        return Err(RenderError::NoWorkplace {
            file: file.to_owned(),
        });
    }
    Ok(out)
}

fn render_workplace(
    file: &str,
    doc: &serde_json::Value,
    request: &RenderRequest,
) -> Result<String, RenderError> {
    let name = doc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let invalid = |problems: Vec<String>| RenderError::Invalid {
        file: file.to_owned(),
        name: if name.is_empty() {
            "(unnamed)".to_owned()
        } else {
            name.clone()
        },
        problems,
    };
    if name.is_empty() {
        return Err(invalid(vec!["metadata.name: missing".to_owned()]));
    }
    let namespace = request
        .namespace
        .clone()
        .or_else(|| doc["metadata"]["namespace"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "default".to_owned());
    let spec: WorkplaceSpec = serde_json::from_value(doc["spec"].clone())
        .map_err(|e| invalid(vec![format!("spec: {e}")]))?;
    let catalog = spec
        .resolve(Catalog::shipped())
        .map_err(|problems| invalid(problems.iter().map(ToString::to_string).collect()))?;
    let mut zones = request.zones.clone();
    zones.sort();
    zones.dedup();
    let rendered = render(&RenderInput {
        name: &name,
        namespace: &namespace,
        spec: &spec,
        catalog: &catalog,
        eligible_zones: &zones,
    })
    .map_err(|m| invalid(vec![m]))?;
    // An image whose contract is unknown cannot be checked: refuse it, naming it.
    let unknown: Vec<String> = contract::check(&rendered, Catalog::shipped(), ImageContracts::shipped())
        .into_iter()
        .filter(|b| b.rule == Rule::UnknownImage)
        .map(|b| {
            format!(
                "spec.components.{}.image: {} (container {}; add its contract to platform/data/image-contracts.yaml, or use the catalog's image)",
                b.component, b.fact, b.container
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(unknown));
    }
    let zones_line = if zones.is_empty() {
        "none given (--zone): no StorageClass, volumes cannot bind".to_owned()
    } else {
        zones.join(", ")
    };
    let files: Vec<String> = rendered
        .secret
        .files
        .iter()
        .map(|(secret, keys)| {
            let keys: Vec<&str> = keys.keys().map(String::as_str).collect();
            format!("{secret} ({})", keys.join(", "))
        })
        .collect();
    let files_line = if files.is_empty() {
        String::new()
    } else {
        format!(
            "# Files written into them from the same value: {}\n",
            files.join("; ")
        )
    };
    Ok(format!(
        "# hexagone-operator render: Workplace {namespace}/{name} from {file}\n\
         # Eligible zones: {zones_line}\n\
         # Credentials the operator creates when absent (random, never printed): {}\n{files_line}{}",
        rendered.secret.names.join(", "),
        rendered.yaml_stream()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../manifests/samples/workplace.yaml");

    fn check(text: &str, zones: &[&str]) -> Result<String, RenderError> {
        render_file(
            "workplace.yaml",
            text,
            &RenderRequest {
                namespace: None,
                zones: zones.iter().map(|z| z.to_string()).collect(),
            },
        )
    }

    #[test]
    fn the_sample_renders_every_object_with_the_zones_given() {
        let out = check(SAMPLE, &["fr-par-2", "fr-par-1"]).unwrap();
        assert!(
            out.starts_with("# hexagone-operator render: Workplace intranet/intranet"),
            "{out}"
        );
        assert!(out.contains("# Eligible zones: fr-par-1, fr-par-2\n"));
        // Synapse's jwt_config file, which the operator writes into the JWT credential's Secret,
        // is named, not printed.
        assert!(out.contains(
            "# Files written into them from the same value: credential-matrix-jwt-secret (synapse-jwt.yaml)\n"
        ));
        let docs: Vec<serde_json::Value> = yaml_serde::Deserializer::from_str(&out)
            .map(|d| serde_json::Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs[0]["kind"], "StorageClass");
        assert_eq!(
            docs[0]["allowedTopologies"][0]["matchLabelExpressions"][0]["values"],
            serde_json::json!(["fr-par-1", "fr-par-2"])
        );
        let workloads = docs
            .iter()
            .filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
            .count();
        // One per component, but one per videobridge (the sample's four).
        assert_eq!(workloads, Catalog::shipped().components.len() - 1 + 4);
        assert!(
            docs.iter()
                .all(|d| d["kind"] == "StorageClass" || d["metadata"]["namespace"] == "intranet")
        );
        // The namespace option wins over the file's.
        let other = render_file(
            "w.yaml",
            SAMPLE,
            &RenderRequest {
                namespace: Some("essai".into()),
                zones: vec![],
            },
        )
        .unwrap();
        assert!(other.contains("namespace: essai\n") && !other.contains("namespace: intranet\n"));
        assert!(other.contains("# Eligible zones: none given"));
        assert!(!other.contains("kind: StorageClass"));
    }

    #[test]
    fn an_unknown_component_is_named() {
        let text = SAMPLE.replace("    jitsi-jvb:\n", "    nextcloud:\n");
        assert_eq!(
            check(&text, &["fr-par-1"]).unwrap_err().to_string(),
            "workplace.yaml: Workplace intranet: spec.components.nextcloud: no such component in the catalog; \
             spec.video.bridges: 4 addresses for 3 videobridges (spec.components.jitsi-jvb.replicas, or the users5000 profile's): list one per bridge"
        );
    }

    #[test]
    fn an_image_without_a_contract_is_named() {
        let text = SAMPLE.replace(
            "      replicas: 4\n",
            "      replicas: 4\n    valkey:\n      image: docker.io/valkey/valkey:8.0.0\n",
        );
        assert_eq!(
            check(&text, &["fr-par-1"]).unwrap_err().to_string(),
            "workplace.yaml: Workplace intranet: spec.components.valkey.image: image docker.io/valkey/valkey:8.0.0 has no contract (the catalog's image is docker.io/valkey/valkey:9.0.7) (container valkey; add its contract to platform/data/image-contracts.yaml, or use the catalog's image)"
        );
    }

    #[test]
    fn a_file_without_a_workplace_or_not_yaml_is_refused() {
        assert_eq!(
            check(
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
                &[]
            )
            .unwrap_err(),
            RenderError::NoWorkplace {
                file: "workplace.yaml".into()
            }
        );
        assert!(matches!(check("a: [", &[]), Err(RenderError::Yaml { .. })));
        let bad = SAMPLE.replace("profile: users5000", "profile: users7");
        let err = check(&bad, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("workplace.yaml: Workplace intranet: spec: "),
            "{err}"
        );
        assert!(err.contains("users7"), "{err}");
    }
}
