//! Differential fuzzing of the verifier the CLI ships: the parallel verifier (worker threads
//! decoding and hashing) must reach the same verdict as the sequential one on any input.
#![no_main]

use hexagone_auditor::bundle_verify::{verify_bundle, verify_bundle_parallel};
use hexagone_auditor::ledger::verify::Verifier;
use libfuzzer_sys::fuzz_target;

/// valid, invalid (a finding), or unreadable (a bundle error).
fn class<S, F, E>(r: &Result<Result<S, F>, E>) -> &'static str {
    match r {
        Ok(Ok(_)) => "valid",
        Ok(Err(_)) => "invalid",
        Err(_) => "unreadable",
    }
}

fuzz_target!(|data: &[u8]| {
    let trust = "fuzz+5dd6c9d0+AeqkJG1kGk1pVQAUiLk95cuBXPbXoaWWqV4xNBSGhKSL";
    let sequential = verify_bundle(data, Verifier::new(trust), |_| {});
    let parallel = verify_bundle_parallel(data, Verifier::new(trust), 2, |_| {});
    assert_eq!(class(&sequential), class(&parallel));
});
