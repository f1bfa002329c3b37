//! Fuzzes the entry parser: whatever it accepts must be exactly the canonical encoding.
#![no_main]

use hexagone_auditor::ledger::entry::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = Entry::decode(data) {
        assert_eq!(
            entry.encode().as_bytes(),
            data,
            "accepted a non-canonical entry"
        );
    }
});
