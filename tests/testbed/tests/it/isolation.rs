//! Two test beds run at once without sharing ports, directories or state.

use hexagone_testbed::FakeNode;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::util;

#[tokio::test]
async fn two_test_beds_do_not_collide() -> anyhow::Result<()> {
    let _serial = util::serial().await;
    let (a, b) = tokio::join!(util::start(), util::start());
    let (a, b) = (a?, b?);

    let (pa, pb) = (a.ports(), b.ports());
    let all_a = [
        pa.etcd_client,
        pa.etcd_peer,
        pa.apiserver,
        pa.scheduler,
        pa.controller_manager,
        pa.kwok,
    ];
    let all_b = [
        pb.etcd_client,
        pb.etcd_peer,
        pb.apiserver,
        pb.scheduler,
        pb.controller_manager,
        pb.kwok,
    ];
    assert!(
        all_a.iter().all(|p| !all_b.contains(p)),
        "ports shared: {pa:?} / {pb:?}"
    );
    assert_ne!(a.dir(), b.dir());
    assert_ne!(a.kubeconfig_path(), b.kubeconfig_path());

    // State is separate: a namespace made in one is absent from the other.
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": "only-in-a" } }))?;
    Api::<Namespace>::all(a.client())
        .create(&PostParams::default(), &ns)
        .await?;
    assert!(
        Api::<Namespace>::all(a.client())
            .get_opt("only-in-a")
            .await?
            .is_some()
    );
    assert!(
        Api::<Namespace>::all(b.client())
            .get_opt("only-in-a")
            .await?
            .is_none()
    );

    // The same node name in both clusters, each with its own kwok.
    let node = FakeNode::new("same-name").label("bed", "x");
    a.add_nodes(std::slice::from_ref(&node)).await?;
    b.add_nodes(std::slice::from_ref(&node)).await?;

    // Stopping one leaves the other working.
    let b_client = b.client();
    let b_dir = b.dir().to_owned();
    drop(b);
    if std::env::var(hexagone_testbed::KEEP_ENV).as_deref() != Ok("1") {
        assert!(!b_dir.exists(), "a dropped test bed removes its directory");
    }
    Api::<Namespace>::all(a.client()).get("only-in-a").await?;
    let gone = Api::<Namespace>::all(b_client).get("default").await;
    assert!(
        gone.is_err(),
        "the dropped test bed still answers: {gone:?}"
    );
    Ok(())
}
