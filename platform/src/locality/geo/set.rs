//! The three databases the locality engine consults (location, registration, AS numbers): where
//! their files are, opening and refreshing them together, and the consistent snapshot a batch of
//! evaluations reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::GeoError;
use super::database::Database;
use super::identity::DatabaseIdentity;
use super::record::CountryField;
use super::reload::ReloadingDatabase;

/// Where the three databases are: files for each role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoPaths {
    /// Where an address is (geo-whois-asn-country, GeoIP2/GeoLite2-Country or City).
    pub location: Vec<PathBuf>,
    /// Where an address's network is registered (iptoasn-country, or GeoIP2 `registered_country`).
    pub registration: Vec<PathBuf>,
    /// AS number and organisation of an address (ip-location-db asn, GeoLite2-ASN).
    pub asn: Vec<PathBuf>,
}

impl GeoPaths {
    /// The vendored ip-location-db layout under `dir` (`platform/data/ip-location-db`).
    pub fn ip_location_db(dir: &Path) -> Self {
        GeoPaths {
            location: vec![dir.join("geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb")],
            registration: vec![dir.join("iptoasn-country-mmdb/iptoasn-country.mmdb")],
            asn: vec![dir.join("asn/asn-ipv4.csv"), dir.join("asn/asn-ipv6.csv")],
        }
    }
}

/// The three databases the locality engine consults, each reloadable.
#[derive(Debug)]
pub struct GeoDatabases {
    location: ReloadingDatabase,
    registration: ReloadingDatabase,
    asn: ReloadingDatabase,
}

impl GeoDatabases {
    /// Opens every file now.
    pub fn open(paths: &GeoPaths) -> Result<Self, GeoError> {
        Ok(GeoDatabases {
            location: ReloadingDatabase::open(
                "location",
                CountryField::Location,
                paths.location.clone(),
            )?,
            registration: ReloadingDatabase::open(
                "registration",
                CountryField::Registration,
                paths.registration.clone(),
            )?,
            asn: ReloadingDatabase::open("AS number", CountryField::Location, paths.asn.clone())?,
        })
    }

    /// Reloads whichever files were replaced; `Ok(n)` is how many databases were reloaded.
    pub fn refresh(&self) -> Result<usize, GeoError> {
        let mut n = 0;
        for db in [&self.location, &self.registration, &self.asn] {
            n += usize::from(db.refresh()?);
        }
        Ok(n)
    }

    /// The current contents of all three, for a batch of evaluations.
    pub fn snapshot(&self) -> GeoSnapshot {
        GeoSnapshot::new(
            self.location.snapshot(),
            self.registration.snapshot(),
            self.asn.snapshot(),
        )
    }
}

impl GeoSnapshot {
    /// A view of three databases.
    pub fn new(location: Arc<Database>, registration: Arc<Database>, asn: Arc<Database>) -> Self {
        let identities = [&location, &registration, &asn]
            .iter()
            .flat_map(|db| db.identities().iter().cloned())
            .collect();
        GeoSnapshot {
            location,
            registration,
            asn,
            identities,
        }
    }

    /// Every file of the three databases, for an evaluation's provenance (shared, not copied).
    pub fn identities(&self) -> Arc<[DatabaseIdentity]> {
        self.identities.clone()
    }
}

/// A consistent view of the three databases.
#[derive(Debug, Clone)]
pub struct GeoSnapshot {
    /// Where an address is.
    pub location: Arc<Database>,
    /// Where its network is registered.
    pub registration: Arc<Database>,
    /// Its AS number and organisation.
    pub asn: Arc<Database>,
    identities: Arc<[DatabaseIdentity]>,
}

impl GeoSnapshot {
    /// Whether `other` was taken from the same contents (the same files, not reloaded since).
    pub fn same_contents(&self, other: &GeoSnapshot) -> bool {
        Arc::ptr_eq(&self.location, &other.location)
            && Arc::ptr_eq(&self.registration, &other.registration)
            && Arc::ptr_eq(&self.asn, &other.asn)
    }
}
