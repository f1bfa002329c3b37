//! Fuzzes the bundle reader and the streaming verifier: any input gives a verdict, never a
//! panic.
#![no_main]

use hexagone_auditor::bundle_verify::verify_bundle;
use hexagone_auditor::ledger::verify::Verifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let trust = "fuzz+5dd6c9d0+AeqkJG1kGk1pVQAUiLk95cuBXPbXoaWWqV4xNBSGhKSL";
    let _ = verify_bundle(data, Verifier::new(trust), |_| {});
});
