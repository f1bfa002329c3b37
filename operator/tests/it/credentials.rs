//! The generated credentials on the real control plane: the Secret of the Matrix JWT credential
//! holds, beside its value (which eXo reads), Synapse's `jwt_config` file made from that same
//! value, written once when the operator creates it.

use hexagone_platform::render::{
    CREDENTIAL_KEY, CREDENTIAL_PREFIX, MATRIX_JWT_ALGORITHM, MATRIX_JWT_CREDENTIAL, SYNAPSE_JWT_KEY,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::util::{self, Operator, eventually};
use crate::workplace::{NS, cluster, create_workplace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapses_jwt_file_is_made_from_the_value_exo_reads() -> anyhow::Result<()> {
    let _turn = util::serial().await;
    let bed = util::start().await?;
    let admin = bed.client();
    cluster(&bed).await?;
    let _operator = Operator::start(&bed).await?;
    create_workplace(&admin, "intranet").await?;
    let secrets = Api::<Secret>::namespaced(admin.clone(), NS);
    let name = format!("{CREDENTIAL_PREFIX}{MATRIX_JWT_CREDENTIAL}");
    let secret = eventually(&format!("Secret {name} created"), || {
        let (secrets, name) = (secrets.clone(), name.clone());
        async move {
            secrets
                .get_opt(&name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "not yet".to_owned())
        }
    })
    .await?;
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
    let value = text(CREDENTIAL_KEY);
    assert_eq!(value.len(), 48, "{value}");
    let file: serde_json::Value = yaml_serde::from_str(&text(SYNAPSE_JWT_KEY))?;
    assert_eq!(
        file,
        serde_json::json!({"jwt_config": {"enabled": true, "secret": value,
                                          "algorithm": MATRIX_JWT_ALGORITHM}})
    );
    Ok(())
}
