//! Fuzz target: the locality policy parser never panics, and what it accepts is consistent.
#![no_main]

use hexagone_platform::LocalityPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match LocalityPolicy::from_yaml(text, "fuzz.yaml") {
        Ok(policy) => {
            // An accepted policy upholds the checks the loader promises.
            assert!(!policy.allowed_countries.is_empty());
            assert!(!policy.network_operator.allowed_countries.is_empty());
            assert!((1..=3).contains(&policy.quorum.get()));
        }
        Err(e) => {
            // Every refusal renders to a message naming the origin.
            assert!(e.to_string().starts_with("fuzz.yaml"));
        }
    }
});
