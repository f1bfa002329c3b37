//! A database replaced on disk is reloaded without restart, and a broken replacement is refused.

use std::net::IpAddr;
use std::path::Path;

use hexagone_platform::geo::{CountryField, ReloadingDatabase};

use crate::util::vendored_dir;

fn replace(path: &Path, bytes: &[u8]) {
    // The way updaters swap files: write beside, then rename over.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn real_mmdb_replaced_on_disk_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("country.mmdb");
    let vendored = vendored_dir();
    let location =
        std::fs::read(vendored.join("geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb"))
            .unwrap();
    let registration =
        std::fs::read(vendored.join("iptoasn-country-mmdb/iptoasn-country.mmdb")).unwrap();
    std::fs::write(&path, &location).unwrap();

    let db =
        ReloadingDatabase::open("location", CountryField::Location, vec![path.clone()]).unwrap();
    let aws_paris: IpAddr = "15.188.0.1".parse().unwrap();
    let before = db.snapshot();
    assert_eq!(before.country(aws_paris).unwrap().as_str(), "FR");
    assert!(!db.refresh().unwrap(), "nothing changed yet");

    // Swap in the registration database: same layout, another answer for this address.
    replace(&path, &registration);
    assert!(db.refresh().unwrap());
    assert_eq!(db.snapshot().country(aws_paris).unwrap().as_str(), "US");
    // A snapshot taken before the swap keeps answering from the old contents.
    assert_eq!(before.country(aws_paris).unwrap().as_str(), "FR");

    // A truncated replacement is refused and the current contents keep serving.
    replace(&path, &location[..location.len() / 2]);
    let err = db.refresh().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "cannot read geolocation database {}",
            path.display()
        )) || err.starts_with(&format!("geolocation database {}", path.display())),
        "{err}"
    );
    assert_eq!(db.snapshot().country(aws_paris).unwrap().as_str(), "US");

    // Fixed again, in place this time (same inode, new length and time).
    std::fs::write(&path, &location).unwrap();
    assert!(db.refresh().unwrap());
    assert_eq!(db.snapshot().country(aws_paris).unwrap().as_str(), "FR");
}

#[test]
fn csv_replaced_on_disk_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("asn.csv");
    std::fs::write(&path, "51.15.0.0,51.15.255.255,12876,Scaleway SAS\n").unwrap();
    let db =
        ReloadingDatabase::open("AS number", CountryField::Location, vec![path.clone()]).unwrap();
    let addr: IpAddr = "51.15.1.1".parse().unwrap();
    assert_eq!(db.snapshot().lookup(addr).unwrap().clone().asn, Some(12876));
    replace(&path, b"51.15.0.0,51.15.255.255,64999,Renumbered\n");
    assert!(db.refresh().unwrap());
    let rec = db.snapshot().lookup(addr).unwrap().clone();
    assert_eq!(
        (rec.asn, rec.organisation.as_deref()),
        (Some(64999), Some("Renumbered"))
    );
    std::fs::remove_file(&path).unwrap();
    let err = db.refresh().unwrap_err().to_string();
    assert!(err.starts_with("cannot read geolocation database"), "{err}");
    assert_eq!(db.snapshot().lookup(addr).unwrap().clone().asn, Some(64999));
}
