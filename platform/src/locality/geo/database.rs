//! One database role (location, registration or AS numbers) made of one or more files, looked up
//! in order, and the country it gives an address or the [`Gap`] saying why none.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::address::canonical;
use crate::country::Country;

use super::GeoError;
use super::bundled::built_in;
use super::file::{Stamp, read_stable, stamp};
use super::identity::{DatabaseIdentity, open_built_in, parse_file};
use super::range::RangeTable;
use super::record::{CountryField, Gap, Record};

/// One database role (location, registration or AS numbers), made of one or more files looked up
/// in order: the first file with a record for an address answers.
pub struct Database {
    role: &'static str,
    parts: Vec<(PathBuf, RangeTable)>,
    identities: Vec<DatabaseIdentity>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("role", &self.role)
            .field("files", &self.files().collect::<Vec<_>>())
            .finish()
    }
}

impl Database {
    pub(super) fn load(
        role: &'static str,
        field: CountryField,
        paths: &[PathBuf],
    ) -> Result<(Vec<Stamp>, Self), GeoError> {
        if paths.is_empty() {
            return Err(GeoError::NoFile { role });
        }
        let mut stamps = Vec::with_capacity(paths.len());
        let mut parts = Vec::with_capacity(paths.len());
        let mut identities = Vec::with_capacity(paths.len());
        for path in paths {
            let (table, identity) = match built_in(path) {
                // Its table was made when the program was built: read in place.
                Some(file) => {
                    stamps.push(stamp(path)?);
                    open_built_in(role, path, field, file)?
                }
                None => {
                    let (stamp, bytes) = read_stable(path)?;
                    stamps.push(stamp);
                    parse_file(role, path, field, bytes)?
                }
            };
            parts.push((path.clone(), table));
            identities.push(identity);
        }
        Ok((
            stamps,
            Database {
                role,
                parts,
                identities,
            },
        ))
    }

    /// Parses one file's contents (a MaxMind DB, or range CSV text); `path` names it in messages.
    pub fn parse(
        role: &'static str,
        field: CountryField,
        path: &Path,
        bytes: Vec<u8>,
    ) -> Result<Self, GeoError> {
        let (table, identity) = parse_file(role, path, field, bytes)?;
        Ok(Database {
            role,
            parts: vec![(path.to_owned(), table)],
            identities: vec![identity],
        })
    }

    /// How many CSV ranges overlapped another one when loaded (the narrower range wins).
    pub fn overlapping_ranges(&self) -> usize {
        self.parts.iter().map(|(_, t)| t.overlaps()).sum()
    }

    /// What each file is (role, format, build date, digest), in lookup order.
    pub fn identities(&self) -> &[DatabaseIdentity] {
        &self.identities
    }

    /// The files this database was read from.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().map(|(p, _)| p.as_path())
    }

    /// Its files' tables, in lookup order.
    #[cfg(test)]
    pub(super) fn tables(&self) -> impl Iterator<Item = &RangeTable> {
        self.parts.iter().map(|(_, t)| t)
    }

    /// What the database says about `addr` (canonicalised first).
    pub fn lookup(&self, addr: IpAddr) -> Option<Record> {
        let addr = canonical(addr);
        self.parts.iter().find_map(|(_, table)| table.lookup(addr))
    }

    /// The country the database gives `addr`, or why there is none.
    pub fn country(&self, addr: IpAddr) -> Result<Country, Gap> {
        let database = self.role;
        match self.lookup(addr) {
            None => Err(Gap::NotFound { database }),
            Some(Record {
                country: Some(c), ..
            }) => Ok(c),
            Some(Record {
                invalid_code: Some(code),
                ..
            }) => Err(Gap::NotIso { database, code }),
            Some(_) => Err(Gap::NoCountry { database }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASN: &str = "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n\
                       51.15.0.0,51.15.255.255,12876,Scaleway S.a.s.\n\
                       2001:41d0::,2001:41d0:ffff:ffff:ffff:ffff:ffff:ffff,16276,OVH SAS\n";

    #[test]
    fn gaps_say_why_there_is_no_country() {
        let db = |csv: &str| {
            Database::parse(
                "location",
                CountryField::Location,
                Path::new("t.csv"),
                csv.as_bytes().to_vec(),
            )
            .unwrap()
        };
        let gap =
            |db: &Database, addr: &str| db.country(addr.parse().unwrap()).unwrap_err().to_string();
        let countries = db("1.0.0.0,1.0.0.255,ZZ\n");
        assert_eq!(
            gap(&countries, "1.0.0.1"),
            "has the code `ZZ` in the location database, which is not an ISO 3166-1 country"
        );
        assert_eq!(
            gap(&countries, "9.9.9.9"),
            "is not in the location database"
        );
        // An AS number file given as location data is refused, not read as "no country".
        assert_eq!(
            Database::parse(
                "location",
                CountryField::Location,
                Path::new("asn.csv"),
                ASN.as_bytes().to_vec()
            )
            .unwrap_err()
            .to_string(),
            "geolocation database asn.csv cannot serve as location data: no record holds a country or country_code field (an AS number file?)"
        );
        assert_eq!(
            Database::parse(
                "AS number",
                CountryField::Location,
                Path::new("c.csv"),
                b"1.0.0.0,1.0.0.255,FR\n".to_vec()
            )
            .unwrap_err()
            .to_string(),
            "geolocation database c.csv cannot serve as AS number data: it holds no AS numbers (a country file?)"
        );
        assert_eq!(
            Database::parse(
                "registration",
                CountryField::Registration,
                Path::new("geo-whois-asn-country-ipv4.csv"),
                b"1.0.0.0,1.0.0.255,FR\n".to_vec()
            )
            .unwrap_err()
            .to_string(),
            "geolocation database geo-whois-asn-country-ipv4.csv cannot serve as registration data: its name says it holds locations, not registrations"
        );
        assert_eq!(
            Database::parse(
                "x",
                CountryField::Location,
                Path::new("b.bin"),
                vec![0xff, 0xfe]
            )
            .unwrap_err()
            .to_string(),
            "geolocation database b.bin: neither a MaxMind DB nor UTF-8 CSV text"
        );
    }
}
