//! Fuzz target: reading back a recorded evaluation (and the NodeAttestation and Node JSON an
//! auditor reads from a cluster) never panics; a replayed evaluation judges the same again.
#![no_main]

use std::sync::OnceLock;

use hexagone_platform::{LocalityPolicy, replay};
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static LocalityPolicy {
    static P: OnceLock<LocalityPolicy> = OnceLock::new();
    P.get_or_init(|| {
        LocalityPolicy::from_yaml(
            include_str!("../../../policies/france-diffusion-restreinte.yaml"),
            "dr",
        )
        .expect("shipped policy")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(evaluation) = replay(text, policy()) {
        let again = serde_json::to_string(&evaluation).expect("serializes");
        let twice = replay(&again, policy()).expect("a replayed evaluation replays");
        assert_eq!(twice.verdict, evaluation.verdict);
    }
    let _ = serde_json::from_str::<hexagone_platform::k8s::NodeAttestation>(text);
    if let Ok(node) = serde_json::from_str::<k8s_openapi::api::core::v1::Node>(text) {
        let _ = hexagone_platform::k8s::describe(&node);
    }
});
