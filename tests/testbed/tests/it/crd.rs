//! A CustomResourceDefinition installs and an object of it round-trips through the real API
//! server, with its status subresource.

use hexagone_testbed::ControlPlane;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{CustomResource, CustomResourceExt as _};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::util;

/// A small resource shaped like what the operator will own.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "test.hexagone.invalid",
    version = "v1",
    kind = "Probe",
    namespaced,
    status = "ProbeStatus"
)]
pub struct ProbeSpec {
    /// Where the probe should run.
    pub region: String,
    /// How many copies.
    pub replicas: i32,
    /// Free labels.
    pub tags: Vec<String>,
}

/// What the controller reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ProbeStatus {
    /// Whether the probe holds.
    pub compliant: bool,
}

async fn install_crd(bed: &ControlPlane) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(bed.client());
    crds.create(&PostParams::default(), &Probe::crd()).await?;
    let name = Probe::crd_name();
    bed.crd_established(name, util::CONVERGE).await?;
    Ok(())
}

#[tokio::test]
async fn custom_resource_round_trips_with_status_subresource() -> anyhow::Result<()> {
    let _serial = util::serial().await;
    let bed = util::start().await?;
    install_crd(&bed).await?;

    let probes: Api<Probe> = Api::namespaced(bed.client(), "default");
    let spec = ProbeSpec {
        region: "fr-par".into(),
        replicas: 3,
        tags: vec!["a".into(), "b".into()],
    };
    let mut probe = Probe::new("p1", spec.clone());
    // With a status subresource the API server drops status on create: a real one must.
    probe.status = Some(ProbeStatus { compliant: true });
    // The discovery of a fresh CRD can lag its Established condition by a moment.
    let created = util::eventually("create p1", || {
        let probes = probes.clone();
        let probe = probe.clone();
        async move { probes.create(&PostParams::default(), &probe).await }
    })
    .await?;
    assert_eq!(created.status, None, "status must be ignored on create");

    let fetched = probes.get("p1").await?;
    assert_eq!(fetched.spec, spec);
    assert!(fetched.metadata.uid.is_some() && fetched.metadata.resource_version.is_some());

    let patched = probes
        .patch_status(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "compliant": false } })),
        )
        .await?;
    assert_eq!(patched.status, Some(ProbeStatus { compliant: false }));
    assert_eq!(
        probes.get("p1").await?.spec,
        spec,
        "status patch kept the spec"
    );

    // Schema validation is enforced by the API server.
    let invalid: Result<Probe, kube::Error> = probes
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": "three" } })),
        )
        .await;
    assert!(
        matches!(&invalid, Err(kube::Error::Api(s)) if s.code == 422),
        "wrong type must be rejected, got {invalid:?}"
    );
    Ok(())
}
