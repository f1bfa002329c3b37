//! The MaxMind layouts used in production (GeoIP2-Country, GeoLite2-ASN) and the flat
//! `country_code` layout, on databases the tests write themselves: IPv6 trees with 28-bit
//! records holding IPv4 under `::/96` (and the IPv4-mapped alias), as MaxMind ships them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use hexagone_platform::geo::{CountryField, Database, GeoDatabases, GeoPaths, ReloadingDatabase};
use hexagone_platform::{LocalityPolicy, NodeDescription, evaluate};
use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, RecordSize, Value, Writer};

/// A GeoIP2 country entry (`country`, `registered_country`).
fn country(iso: &str, name: &str) -> Value {
    Value::map([
        ("iso_code", Value::from(iso)),
        ("names", Value::map([("en", name)])),
    ])
}

/// A GeoIP2 `continent` entry.
fn continent(code: &str, name: &str) -> Value {
    Value::map([
        ("code", Value::from(code)),
        ("names", Value::map([("en", name)])),
    ])
}

/// Writes `records` as a MaxMind DB of type `database_type` into `dir`; returns its path.
fn write_mmdb(dir: &Path, database_type: &str, records: Vec<(&str, Value)>) -> PathBuf {
    let mut writer = Writer::builder(database_type)
        .ip_version(IpVersion::V6)
        .record_size(RecordSize::Bits28)
        .build_epoch(UNIX_EPOCH + Duration::from_secs(1_764_288_000))
        .build();
    // In order: a later, narrower network overrides the one it sits in.
    for (network, value) in records {
        let network: IpNet = network.parse().unwrap();
        writer.insert_value(network, value).unwrap();
    }
    let path = dir.join(format!("{database_type}.mmdb"));
    std::fs::write(&path, writer.to_bytes().unwrap()).unwrap();
    path
}

/// GeoIP2-Country layout: `country`, `registered_country` and `continent` maps.
fn write_geoip2_country(dir: &Path) -> PathBuf {
    let gb = || country("GB", "United Kingdom");
    let europe = || continent("EU", "Europe");
    write_mmdb(
        dir,
        "GeoIP2-Country",
        vec![
            // Located in GB, registered in the US.
            (
                "81.2.69.128/26",
                Value::map([
                    ("continent", europe()),
                    ("country", gb()),
                    ("registered_country", country("US", "United States")),
                ]),
            ),
            // Located and registered in GB.
            (
                "81.2.69.64/26",
                Value::map([
                    ("continent", europe()),
                    ("country", gb()),
                    ("registered_country", gb()),
                ]),
            ),
            (
                "192.0.2.0/24",
                Value::map([
                    ("continent", europe()),
                    ("country", country("FR", "France")),
                    ("registered_country", country("FR", "France")),
                ]),
            ),
            // Nested in the one above: located in SE, registered in DE.
            (
                "192.0.2.128/25",
                Value::map([
                    ("continent", europe()),
                    ("country", country("SE", "Sweden")),
                    ("registered_country", country("DE", "Germany")),
                ]),
            ),
            // No `registered_country`: the registration reading falls back to `country`.
            (
                "198.51.100.0/24",
                Value::map([
                    ("continent", europe()),
                    ("country", country("BE", "Belgium")),
                ]),
            ),
            // Only `registered_country`, as for some anycast and satellite networks.
            (
                "203.0.113.0/24",
                Value::map([("registered_country", country("IT", "Italy"))]),
            ),
            (
                "2001:db8::/32",
                Value::map([
                    ("continent", continent("AS", "Asia")),
                    ("country", country("JP", "Japan")),
                    ("registered_country", country("JP", "Japan")),
                ]),
            ),
            // A code that is not an ISO 3166-1 country.
            (
                "2001:db8:ee00::/40",
                Value::map([
                    ("continent", europe()),
                    ("country", country("EU", "Europe")),
                ]),
            ),
        ],
    )
}

/// GeoLite2-ASN layout: `autonomous_system_number` and `autonomous_system_organization`.
fn write_geolite2_asn(dir: &Path) -> PathBuf {
    let asn = |number: u32, organisation: Option<&str>| {
        let mut entries = vec![("autonomous_system_number", Value::from(number))];
        entries.extend(organisation.map(|o| ("autonomous_system_organization", Value::from(o))));
        Value::map(entries)
    };
    write_mmdb(
        dir,
        "GeoLite2-ASN",
        vec![
            ("81.2.69.0/24", asn(64501, Some("Example Metro Ltd"))),
            ("192.0.2.0/24", asn(64496, Some("Example Transit"))),
            ("198.51.100.0/24", asn(65551, None)),
            ("2001:db8::/32", asn(64511, Some("Example Six"))),
        ],
    )
}

/// The flat layout of ip-location-db: a single `country_code` string.
fn write_flat_country(dir: &Path) -> PathBuf {
    let code = |c: &str| Value::map([("country_code", c)]);
    write_mmdb(
        dir,
        "flat-country",
        vec![
            ("192.0.2.0/24", code("FR")),
            ("198.51.100.0/25", code("NL")),
            ("2001:db8::/32", code("ES")),
        ],
    )
}

fn open(path: &Path, field: CountryField) -> Arc<Database> {
    ReloadingDatabase::open("test", field, vec![path.to_owned()])
        .unwrap_or_else(|e| panic!("{e}"))
        .snapshot()
}

fn check(db: &Database, addr: &str, expected: Result<&str, &str>) {
    let addr: IpAddr = addr.parse().unwrap();
    let got = db
        .country(addr)
        .map(|c| c.to_string())
        .map_err(|g| g.to_string());
    assert_eq!(got.as_deref().map_err(String::as_str), expected, "{addr}");
}

#[test]
fn written_files_have_the_maxmind_layout() {
    // Read back with the maxminddb crate alone, into its own GeoIP2 models.
    let dir = tempfile::tempdir().unwrap();
    let reader = maxminddb::Reader::open_readfile(write_geoip2_country(dir.path())).unwrap();
    let meta = reader.metadata();
    assert_eq!(
        (
            meta.database_type.as_str(),
            meta.ip_version,
            meta.record_size
        ),
        ("GeoIP2-Country", 6, 28)
    );
    // The IPv4 address, its `::/96` form, its IPv4-mapped form and its 6to4 form.
    for addr in [
        "192.0.2.200",
        "::192.0.2.200",
        "::ffff:192.0.2.200",
        "2002:c000:2c8::1",
    ] {
        let rec: maxminddb::geoip2::Country = reader
            .lookup(addr.parse().unwrap())
            .unwrap()
            .decode()
            .unwrap()
            .unwrap_or_else(|| panic!("{addr} not found"));
        assert_eq!(
            (
                rec.continent.code,
                rec.country.iso_code,
                rec.registered_country.iso_code
            ),
            (Some("EU"), Some("SE"), Some("DE")),
            "{addr}"
        );
    }
    let found = reader.lookup("8.8.8.8".parse().unwrap()).unwrap();
    assert!(!found.has_data());

    let reader = maxminddb::Reader::open_readfile(write_geolite2_asn(dir.path())).unwrap();
    assert_eq!(reader.metadata().database_type, "GeoLite2-ASN");
    let rec: maxminddb::geoip2::Asn = reader
        .lookup("::ffff:192.0.2.7".parse().unwrap())
        .unwrap()
        .decode()
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            rec.autonomous_system_number,
            rec.autonomous_system_organization
        ),
        (Some(64496), Some("Example Transit"))
    );
}

#[test]
fn geoip2_country_location_and_registration() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_geoip2_country(dir.path());
    let location = open(&path, CountryField::Location);
    let registration = open(&path, CountryField::Registration);
    check(&location, "81.2.69.142", Ok("GB"));
    check(&registration, "81.2.69.142", Ok("US"));
    check(&location, "::ffff:81.2.69.142", Ok("GB"));
    check(&registration, "::ffff:81.2.69.142", Ok("US"));
    check(&location, "192.0.2.1", Ok("FR"));
    check(&location, "192.0.2.200", Ok("SE"));
    check(&registration, "192.0.2.200", Ok("DE"));
    // This record has a `country` and no `registered_country`: the registration is unknown, never
    // borrowed from the location (that would count one datum twice).
    check(&location, "198.51.100.9", Ok("BE"));
    check(
        &registration,
        "198.51.100.9",
        Err("has no country in the test database"),
    );
    check(
        &location,
        "203.0.113.5",
        Err("has no country in the test database"),
    );
    check(&registration, "203.0.113.5", Ok("IT"));
    check(&location, "2001:db8:1::1", Ok("JP"));
    check(&registration, "2001:db8:1::1", Ok("JP"));
    check(
        &location,
        "2001:db8:ee01::1",
        Err("has the code `EU` in the test database, which is not an ISO 3166-1 country"),
    );
    check(&location, "8.8.8.8", Err("is not in the test database"));
    check(&location, "2001:db9::1", Err("is not in the test database"));
}

#[test]
fn geolite2_asn() {
    let dir = tempfile::tempdir().unwrap();
    let asn = open(&write_geolite2_asn(dir.path()), CountryField::Location);
    let rec = asn.lookup("192.0.2.1".parse().unwrap()).unwrap();
    assert_eq!(
        (rec.asn, rec.organisation.as_deref(), rec.country),
        (Some(64496), Some("Example Transit"), None)
    );
    let rec = asn.lookup("198.51.100.1".parse().unwrap()).unwrap();
    assert_eq!((rec.asn, rec.organisation.as_deref()), (Some(65551), None));
    let rec = asn.lookup("2001:db8::1".parse().unwrap()).unwrap();
    assert_eq!(
        (rec.asn, rec.organisation.as_deref()),
        (Some(64511), Some("Example Six"))
    );
    assert!(asn.lookup("10.0.0.1".parse().unwrap()).is_none());
    assert!(asn.lookup("2001:db9::1".parse().unwrap()).is_none());
}

#[test]
fn flat_country_code_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_flat_country(dir.path());
    let location = open(&path, CountryField::Location);
    let registration = open(&path, CountryField::Registration);
    for db in [&location, &registration] {
        check(db, "192.0.2.200", Ok("FR"));
        check(db, "::ffff:198.51.100.1", Ok("NL"));
        check(db, "198.51.100.200", Err("is not in the test database"));
        check(db, "2001:db8::1", Ok("ES"));
    }
}

#[test]
fn geoip2_file_replaced_by_a_flat_one_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let geoip2 = std::fs::read(write_geoip2_country(dir.path())).unwrap();
    let flat = std::fs::read(write_flat_country(dir.path())).unwrap();
    let path = dir.path().join("location.mmdb");
    std::fs::write(&path, &geoip2).unwrap();
    let db = ReloadingDatabase::open("test", CountryField::Location, vec![path.clone()]).unwrap();
    check(&db.snapshot(), "192.0.2.200", Ok("SE"));
    // Swapped the way updaters do: written beside, renamed over.
    let beside = dir.path().join("location.tmp");
    std::fs::write(&beside, &flat).unwrap();
    std::fs::rename(&beside, &path).unwrap();
    assert!(db.refresh().unwrap());
    check(&db.snapshot(), "192.0.2.200", Ok("FR"));
}

#[test]
fn evaluation_on_maxmind_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let country = write_geoip2_country(dir.path());
    let geo = GeoDatabases::open(&GeoPaths {
        location: vec![country.clone()],
        registration: vec![country],
        asn: vec![write_geolite2_asn(dir.path())],
    })
    .unwrap();
    let policy = LocalityPolicy::from_yaml(
        "classification: test\nallowedCountries: [GB]\nnetworkOperator: {allowedCountries: [GB]}\nquorum: 1\n",
        "test.yaml",
    )
    .unwrap();
    let headline = |addr: &str| {
        let node = NodeDescription::endpoint(addr.parse().unwrap());
        evaluate(&policy, &node, &[], &geo.snapshot(), crate::util::now()).headline()
    };
    assert_eq!(
        headline("81.2.69.142"),
        "81.2.69.142 violates test: address 81.2.69.142 is in GB, but network AS64501 (Example Metro Ltd) of address 81.2.69.142 is registered in US, outside the allowed operator countries (GB)"
    );
    assert_eq!(
        headline("81.2.69.70"),
        "81.2.69.70 complies with test: address (1 of 1 required), none disagrees, and its network operator is accepted"
    );
}
