//! Fuzzes the observation input of `append`: any line gives a report or an error naming the
//! line, never a panic; a report never carries a judgement, and reparses to the same report.
#![no_main]

use hexagone_auditor::ingest::{Location, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_line(1, text) {
        Ok(report) => {
            assert_eq!(parse_line(1, text).unwrap(), report);
            if let Location::Node(node) = &report.location {
                let _ = node.describe();
            }
        }
        Err(e) => assert!(e.to_string().starts_with("line 1: "), "{e}"),
    }
});
