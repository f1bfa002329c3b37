//! The generated credentials: one Secret each, created once with a fresh random value and never
//! read back (the operator's RBAC cannot read Secrets).

use hexagone_platform::labels::{INSTANCE_LABEL, MANAGED_BY_LABEL};
use hexagone_platform::render::{CREDENTIAL_KEY, CREDENTIAL_VALUE, Rendered};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, PostParams};
use rand::RngCore;
use serde_json::json;

use super::{FIELD_MANAGER, ReconcileError, failed};

/// Creates each missing credential with a fresh random value. Never reads a Secret: a create
/// that finds one already there leaves it alone.
pub(super) async fn ensure_credentials(
    client: &Client,
    ns: &str,
    instance: &str,
    rendered: &Rendered,
    owner: Option<&OwnerReference>,
) -> Result<(), ReconcileError> {
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    let owners: Vec<&OwnerReference> = owner.into_iter().collect();
    for name in &rendered.secret.names {
        let value = fresh_value();
        // The files this Secret also holds, made from the same value (Synapse's jwt_config).
        let mut data = serde_json::Map::new();
        for (key, content) in rendered.secret.files.get(name).into_iter().flatten() {
            data.insert(
                key.clone(),
                json!(content.replace(CREDENTIAL_VALUE, &value)),
            );
        }
        data.insert(CREDENTIAL_KEY.to_owned(), json!(value));
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns,
                         "labels": {INSTANCE_LABEL: instance, MANAGED_BY_LABEL: FIELD_MANAGER},
                         "ownerReferences": owners},
            "type": "Opaque",
            "stringData": data
        }))
        .expect("a valid Secret");
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(failed(format!("creating Secret {ns}/{name}"))(e)),
        }
    }
    Ok(())
}

/// A fresh credential: 24 random bytes as 48 hex digits (safe in a shell word, a URL, YAML).
fn fresh_value() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// eXo signs Matrix JWTs with the credential's bytes as the key, and jjwt picks the HMAC by
    /// the key's length (384 to 511 bits: HS384); Synapse is told the same algorithm.
    #[test]
    fn a_credential_as_a_jwt_key_is_the_algorithm_synapse_is_told() {
        let v = fresh_value();
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()), "{v}");
        let bits = v.len() * 8;
        let algorithm = match bits {
            512.. => "HS512",
            384.. => "HS384",
            256.. => "HS256",
            _ => panic!("{bits} bits: too short for any JWT HMAC"),
        };
        assert_eq!(algorithm, hexagone_platform::render::MATRIX_JWT_ALGORITHM);
        assert_ne!(v, fresh_value());
    }
}
