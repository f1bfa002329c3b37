//! Fuzzes the signed-note, checkpoint and tlog-proof parsers: no panic, and an accepted
//! checkpoint body formats back to the same text.
#![no_main]

use ed25519_dalek::SigningKey;
use hexagone_auditor::keys::SignerKey;
use hexagone_auditor::ledger::checkpoint::{Checkpoint, open_checkpoint, parse_note};
use hexagone_auditor::ledger::proof::InclusionProof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cp) = Checkpoint::parse_body(text) {
        assert_eq!(cp.body(), text);
    }
    let _ = parse_note(text);
    let key = SignerKey::from_signing_key("fuzz", SigningKey::from_bytes(&[7; 32])).unwrap();
    let _ = open_checkpoint(text, std::slice::from_ref(key.verifier()));
    if let Ok(p) = InclusionProof::parse(text) {
        let _ = p.verify(std::slice::from_ref(key.verifier()), None);
    }
});
