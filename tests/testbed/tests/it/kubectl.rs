//! kubectl from the same pin talks to the test bed, as the admin or as another identity whose
//! rights the API server decides.

use std::process::Output;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

use crate::util;

/// stdout of a kubectl run that must succeed; otherwise the failure with what kubectl said.
fn succeeded(what: &str, output: &Output) -> anyhow::Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "{what}: kubectl exited with {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

#[tokio::test]
async fn kubectl_acts_on_this_test_bed_with_the_identity_given() -> anyhow::Result<()> {
    let _serial = util::serial().await;
    let plane = util::start().await?;

    // Client and server come from one pin.
    let version: serde_json::Value = serde_json::from_str(&succeeded(
        "version",
        &plane.kubectl(["version", "-o", "json"]).await?,
    )?)?;
    assert_eq!(
        version["clientVersion"]["gitVersion"], "v1.34.4",
        "{version}"
    );
    assert_eq!(
        version["serverVersion"]["gitVersion"], "v1.34.4",
        "{version}"
    );

    // What kubectl writes lands in this test bed's API server.
    succeeded(
        "create namespace",
        &plane
            .kubectl(["create", "namespace", "made-by-kubectl"])
            .await?,
    )?;
    Api::<Namespace>::all(plane.client())
        .get("made-by-kubectl")
        .await?;

    let whoami = ["auth", "whoami", "-o", "json"];
    let admin: serde_json::Value =
        serde_json::from_str(&succeeded("admin whoami", &plane.kubectl(whoami).await?)?)?;
    assert_eq!(
        admin["status"]["userInfo"]["username"], "hexagone-admin",
        "{admin}"
    );

    let ops: serde_json::Value = serde_json::from_str(&succeeded(
        "ops whoami",
        &plane.kubectl_as("jeanne", Some("ops"), whoami).await?,
    )?)?;
    assert_eq!(ops["status"]["userInfo"]["username"], "jeanne", "{ops}");
    let groups = ops["status"]["userInfo"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(groups.iter().any(|g| g == "ops"), "{ops}");

    // The same command, refused for an identity RBAC grants nothing: the API server, not the
    // helper, decides.
    let listed = succeeded(
        "admin get namespaces",
        &plane.kubectl(["get", "namespaces", "-o", "name"]).await?,
    )?;
    assert!(
        listed.lines().any(|l| l == "namespace/made-by-kubectl"),
        "{listed}"
    );
    let refused = plane
        .kubectl_as("jeanne", Some("ops"), ["get", "namespaces", "-o", "name"])
        .await?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "jeanne listed namespaces: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(
        stderr.contains("Forbidden")
            && stderr.contains(r#"User "jeanne" cannot list resource "namespaces""#),
        "{stderr}"
    );
    Ok(())
}
