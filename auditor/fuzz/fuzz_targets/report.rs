//! Fuzzes `report verify`'s reading of a report file (JSON, Markdown or HTML): no panic, and a
//! file that opens is exactly the rendering of what it carries.
#![no_main]

use ed25519_dalek::SigningKey;
use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::report::{open, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = SignerKey::from_signing_key("fuzz", SigningKey::from_bytes(&[7; 32])).unwrap();
    if let Ok((format, signed)) = open(text, key.verifier()) {
        assert_eq!(render(&signed, format), text);
    }
});
