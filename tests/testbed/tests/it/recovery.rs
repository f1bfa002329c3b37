//! The API server is killed and restarted mid-test; the same client recovers and the data,
//! kept in etcd, is still there.

use hexagone_testbed::Error;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::util;

fn config_map(name: &str) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name },
        "data": { "k": "v" }
    }))?)
}

#[tokio::test]
async fn same_client_recovers_after_apiserver_restart() -> anyhow::Result<()> {
    let _serial = util::serial().await;
    let mut bed = util::start().await?;
    let maps: Api<ConfigMap> = Api::namespaced(bed.client(), "default");
    maps.create(&PostParams::default(), &config_map("before")?)
        .await?;

    let twice = bed.start_apiserver().await;
    assert!(
        matches!(
            twice,
            Err(Error::AlreadyRunning {
                component: "kube-apiserver"
            })
        ),
        "starting a running API server must be refused: {twice:?}"
    );

    bed.kill_apiserver().await?;
    let down = maps.get("before").await;
    assert!(
        down.is_err(),
        "the API server is down, yet a request succeeded: {down:?}"
    );

    bed.start_apiserver().await?;
    let kept = util::eventually("the same client reads again", || {
        let maps = maps.clone();
        async move { maps.get("before").await }
    })
    .await?;
    assert_eq!(
        kept.data.unwrap_or_default().get("k").map(String::as_str),
        Some("v")
    );
    maps.create(&PostParams::default(), &config_map("after")?)
        .await?;

    // A graceful stop and start works the same way.
    bed.restart_apiserver().await?;
    util::eventually("both objects readable after a graceful restart", || {
        let maps = maps.clone();
        async move {
            maps.get("before").await?;
            maps.get("after").await
        }
    })
    .await?;
    Ok(())
}
