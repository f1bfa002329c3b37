//! Fuzz target: the geolocation file reader (MaxMind DB or range CSV) never panics on any bytes,
//! and a database it accepts answers lookups without panicking.
#![no_main]

use std::path::Path;

use hexagone_platform::geo::{CountryField, Database};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(db) = Database::parse(
        "fuzz",
        CountryField::Location,
        Path::new("fuzz.csv"),
        data.to_vec(),
    ) {
        for addr in [
            "0.0.0.0",
            "1.2.3.4",
            "255.255.255.255",
            "::",
            "2001:db8::1",
            "ffff::1",
        ] {
            let _ = db.country(addr.parse().unwrap());
        }
    }
});
