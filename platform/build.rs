//! Build script: the bundled geolocation data (`data/ip-location-db`) made into the compact range
//! tables the programs read in place (`src/locality/geo/table.rs`, compiled here too), with each
//! file's length, SHA-256 and MaxMind DB metadata for its identity. The files themselves are not
//! built into the programs: loading them meant parsing 45 MB at every start and keeping about
//! 100 MB resident.

#[cfg(feature = "engine")]
#[allow(dead_code)]
#[path = "src/locality/geo/table.rs"]
mod table;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/locality/geo/table.rs");
    #[cfg(feature = "engine")]
    bundle();
}

/// Writes each bundled file's table and `geo_built_in.rs`, the list `bundled.rs` includes.
#[cfg(feature = "engine")]
fn bundle() {
    use sha2::Digest;
    use std::fmt::Write;
    use std::path::PathBuf;

    // Places in the ip-location-db layout.
    const FILES: [&str; 4] = [
        "geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb",
        "iptoasn-country-mmdb/iptoasn-country.mmdb",
        "asn/asn-ipv4.csv",
        "asn/asn-ipv6.csv",
    ];
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let mut list = String::from("&[\n");
    for (k, name) in FILES.iter().enumerate() {
        let path = manifest.join("data/ip-location-db").join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read bundled data {}: {e}", path.display()));
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        let len = bytes.len();
        let (table, mmdb) = if name.ends_with(".mmdb") {
            let reader = maxminddb::Reader::from_source(bytes.as_slice())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let kind = reader.metadata().database_type.clone();
            // A GeoIP2 record holds both countries: its table would answer for one role only.
            assert!(
                !kind.starts_with("Geo"),
                "{}: bundled MaxMind DBs must be flat (one country per record), not {kind}",
                path.display()
            );
            // The program reads a bundled table in either role: the table must not depend on
            // which country field is read (a record holding `country` and `registered_country`
            // would give another table for each).
            let flatten = |registration| {
                table::flatten_mmdb(&reader, registration)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                    .unwrap_or_else(|m| panic!("{}: {}", path.display(), m.message))
            };
            let table = flatten(false);
            assert!(
                table == flatten(true),
                "{}: its records give other countries as locations and as registrations; \
                 bundled MaxMind DBs must hold one country per record",
                path.display()
            );
            let epoch = reader.metadata().build_epoch;
            (table, Some((kind, epoch)))
        } else {
            let text =
                std::str::from_utf8(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let table = table::parse_csv(text)
                .unwrap_or_else(|m| panic!("{}:{}: {}", path.display(), m.line, m.message));
            (table, None)
        };
        let file = format!("geo-table-{k}.bin");
        std::fs::write(out.join(&file), &table).unwrap();
        let mmdb = match mmdb {
            Some((kind, epoch)) => format!("Some(({kind:?}, {epoch}))"),
            None => "None".into(),
        };
        writeln!(
            list,
            "    BuiltIn {{ name: {name:?}, len: {len}, sha256: {sha256:?}, mmdb: {mmdb}, \
             table: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\")) }},"
        )
        .unwrap();
    }
    list.push(']');
    std::fs::write(out.join("geo_built_in.rs"), list).unwrap();
}
