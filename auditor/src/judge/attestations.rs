//! Reading attestations: the `--attestations` file and NodeAttestation resources, who attested
//! kept as a pseudonym.

use std::path::Path;

use hexagone_platform::{Attestation, AttestationSpec};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{JudgeError, read};

/// What the ledger keeps of who attested: the first 16 hex digits of the SHA-256 of
/// `attestedBy` (often a person's address, which is personal data the ledger must not hold).
pub fn pseudonym(attested_by: &str) -> String {
    let digest = Sha256::digest(attested_by.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..16])
}

pub(super) fn pseudonymised(name: String, mut spec: AttestationSpec) -> Attestation {
    spec.attested_by = pseudonym(&spec.attested_by);
    Attestation::new(name, spec)
}

/// One attestation record: a NodeAttestation resource (`metadata.name`, `spec`) as kubectl
/// prints it, or the short form `{name, spec}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttestationItem {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    spec: AttestationSpec,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
}

/// Reads `--attestations`: YAML holding NodeAttestations as a list, as a List with `items`
/// (`kubectl get nodeattestations -o yaml`), or as one or more documents separated by `---`
/// (the sample file, `kubectl get nodeattestation NAME -o yaml`). Who attested is kept as a
/// [`pseudonym`]. An item that is not an attestation is named with what is wrong in it.
pub fn load_attestations(path: &Path) -> Result<Vec<Attestation>, JudgeError> {
    let text = read(path)?;
    let bad = |why: String| JudgeError::Parse {
        path: path.to_owned(),
        why,
    };
    let mut values = Vec::new();
    for (d, doc) in yaml_serde::Deserializer::from_str(&text).enumerate() {
        let value = yaml_serde::Value::deserialize(doc)
            .map_err(|e| bad(format!("document {}: {e}", d + 1)))?;
        match value {
            yaml_serde::Value::Null => {}
            yaml_serde::Value::Sequence(items) => values.extend(items),
            yaml_serde::Value::Mapping(m) if m.contains_key("items") => match m.get("items") {
                Some(yaml_serde::Value::Sequence(items)) => values.extend(items.iter().cloned()),
                _ => return Err(bad(format!("document {}: `items` is not a list", d + 1))),
            },
            other => values.push(other),
        }
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let item: AttestationItem = yaml_serde::from_value(value)
                .map_err(|e| bad(format!("attestation {}: {e}", i + 1)))?;
            let name = item.metadata.map(|m| m.name).or(item.name).ok_or_else(|| {
                bad(format!(
                    "attestation {}: no `name` (or `metadata.name`)",
                    i + 1
                ))
            })?;
            Ok(pseudonymised(name, item.spec))
        })
        .collect()
}

/// NodeAttestation resources as the judge reads them: who attested is kept as a [`pseudonym`].
pub fn node_attestations(
    resources: &[hexagone_platform::k8s::NodeAttestation],
) -> Vec<Attestation> {
    use kube::ResourceExt as _;
    resources
        .iter()
        .map(|r| pseudonymised(r.name_any(), r.spec.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestation_files_in_every_form_kubectl_and_people_write() {
        let dir = tempfile::tempdir().unwrap();
        let sample = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/samples/nodeattestation.yaml"
        );
        // One document: the shipped sample.
        let one = load_attestations(Path::new(sample)).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].spec().attested_by,
            pseudonym("rssi@ministere.example.fr")
        );
        // Several documents, and a List.
        let text = std::fs::read_to_string(sample).unwrap();
        let two = dir.path().join("two.yaml");
        std::fs::write(
            &two,
            format!("{text}---\n{}", text.replace("gra-3", "gra-4")),
        )
        .unwrap();
        let names: Vec<String> = load_attestations(&two)
            .unwrap()
            .iter()
            .map(|a| a.name().to_owned())
            .collect();
        assert_eq!(names, ["gra-3", "gra-4"]);
        let list = dir.path().join("list.yaml");
        let indented: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("  {l}\n"))
            .collect();
        std::fs::write(
            &list,
            format!("kind: List\nitems:\n- {}", indented.trim_start()),
        )
        .unwrap();
        assert_eq!(load_attestations(&list).unwrap().len(), 1);
        // A broken second attestation is named, with what is wrong in it.
        let broken = dir.path().join("broken.yaml");
        std::fs::write(
            &broken,
            format!("{text}---\n{}", text.replace("  country: FR\n", "")),
        )
        .unwrap();
        let e = load_attestations(&broken).unwrap_err().to_string();
        assert!(e.contains("attestation 2") && e.contains("country"), "{e}");
    }
}
