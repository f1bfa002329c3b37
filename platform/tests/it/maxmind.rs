//! The MaxMind layouts used in production (GeoIP2-Country, GeoLite2-ASN), on MaxMind's public
//! test databases (`platform/tests/data/maxmind/`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hexagone_platform::geo::{CountryField, Database, GeoDatabases, GeoPaths, ReloadingDatabase};
use hexagone_platform::{LocalityPolicy, NodeDescription, evaluate};

fn file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/maxmind")
        .join(name)
}

fn open(name: &str, field: CountryField) -> std::sync::Arc<Database> {
    ReloadingDatabase::open("test", field, vec![file(name)])
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
fn geoip2_country_location_and_registration() {
    let location = open("GeoIP2-Country-Test.mmdb", CountryField::Location);
    let registration = open("GeoIP2-Country-Test.mmdb", CountryField::Registration);
    // In the test data this network is in GB but registered in the US.
    check(&location, "81.2.69.142", Ok("GB"));
    check(&registration, "81.2.69.142", Ok("US"));
    check(&location, "::ffff:81.2.69.142", Ok("GB"));
    check(&location, "89.160.20.128", Ok("SE"));
    check(&registration, "89.160.20.128", Ok("DE"));
    check(&location, "2001:218::1", Ok("JP"));
    check(&location, "8.8.8.8", Err("is not in the test database"));
}

#[test]
fn geolite2_asn() {
    let asn = open("GeoLite2-ASN-Test.mmdb", CountryField::Location);
    let rec = asn.lookup("1.0.0.1".parse().unwrap()).unwrap();
    assert_eq!(
        (rec.asn, rec.organisation.as_deref(), rec.country),
        (Some(15169), Some("Google Inc."), None)
    );
    let rec = asn.lookup("12.81.96.1".parse().unwrap()).unwrap();
    assert_eq!((rec.asn, rec.organisation.as_deref()), (Some(7018), None));
    assert!(asn.lookup("10.0.0.1".parse().unwrap()).is_none());
}

#[test]
fn evaluation_on_maxmind_layouts() {
    let geo = GeoDatabases::open(&GeoPaths {
        location: vec![file("GeoIP2-Country-Test.mmdb")],
        registration: vec![file("GeoIP2-Country-Test.mmdb")],
        asn: vec![file("GeoLite2-ASN-Test.mmdb")],
    })
    .unwrap();
    let policy = LocalityPolicy::from_yaml(
        "classification: test\nallowedCountries: [GB]\nnetworkOperator: {allowedCountries: [GB]}\n",
        "test.yaml",
    )
    .unwrap();
    let node = NodeDescription::endpoint("81.2.69.142".parse().unwrap());
    let e = evaluate(&policy, &node, &geo.snapshot());
    assert_eq!(
        e.headline(),
        "81.2.69.142 violates test: address 81.2.69.142 is in GB, but the network of address 81.2.69.142 is registered in US, outside the allowed operator countries (GB)"
    );
}
