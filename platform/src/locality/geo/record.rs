//! What a database says about an address: a [`Record`] (country, AS number, organisation) or the
//! [`Gap`] saying why there is no country; and which country field a database is read for.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::address::ReservedRange;
use crate::country::Country;

/// Why a source has no answer for an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "why")]
pub enum Gap {
    /// The address is in a special-purpose range: no database can place it.
    Reserved {
        /// The range.
        range: &'static ReservedRange,
    },
    /// No database record covers the address.
    NotFound {
        /// Which database.
        database: &'static str,
    },
    /// The record's country code is not an assigned ISO 3166-1 code (`EU`, `ZZ`).
    NotIso {
        /// Which database.
        database: &'static str,
        /// The code found.
        code: Box<str>,
    },
    /// The record has no country field.
    NoCountry {
        /// Which database.
        database: &'static str,
    },
}

/// The database roles a [`Gap`] can name, so a recorded gap reads back into the same `'static` text.
const ROLES: [&str; 3] = ["location", "registration", "AS number"];

impl<'de> Deserialize<'de> for Gap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", tag = "why")]
        enum Shown {
            Reserved { range: ShownRange },
            NotFound { database: String },
            NotIso { database: String, code: String },
            NoCountry { database: String },
        }
        #[derive(Deserialize)]
        struct ShownRange {
            cidr: String,
        }
        let role = |name: String| {
            ROLES
                .iter()
                .copied()
                .find(|r| *r == name)
                .ok_or_else(|| D::Error::custom(format!("unknown database role {name:?}")))
        };
        Ok(match Shown::deserialize(d)? {
            Shown::Reserved { range } => Gap::Reserved {
                range: crate::address::reserved_by_cidr(&range.cidr).ok_or_else(|| {
                    D::Error::custom(format!("{:?} is not a special-purpose range", range.cidr))
                })?,
            },
            Shown::NotFound { database } => Gap::NotFound {
                database: role(database)?,
            },
            Shown::NotIso { database, code } => Gap::NotIso {
                database: role(database)?,
                code: code.into(),
            },
            Shown::NoCountry { database } => Gap::NoCountry {
                database: role(database)?,
            },
        })
    }
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gap::Reserved { range } => write!(f, "is in {range}"),
            Gap::NotFound { database } => write!(f, "is not in the {database} database"),
            Gap::NotIso { database, code } => write!(
                f,
                "has the code `{code}` in the {database} database, which is not an ISO 3166-1 country"
            ),
            Gap::NoCountry { database } => write!(f, "has no country in the {database} database"),
        }
    }
}

/// What a database says about one address: any of a country, an AS number and its organisation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Record {
    /// The record's country, when it holds an assigned ISO 3166-1 code.
    pub country: Option<Country>,
    /// A country code the record holds that is not an assigned ISO 3166-1 code (`EU`, `ZZ`).
    pub invalid_code: Option<Box<str>>,
    /// The autonomous system number.
    pub asn: Option<u32>,
    /// The autonomous system's organisation.
    pub organisation: Option<Arc<str>>,
}

impl Record {
    pub(super) fn with_code(code: &str) -> Self {
        match Country::from_bytes(code.as_bytes()) {
            Some(c) => Record {
                country: Some(c),
                ..Record::default()
            },
            None => Record {
                invalid_code: Some(code.into()),
                ..Record::default()
            },
        }
    }
}

/// Which country field of a GeoIP2 record a database is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountryField {
    /// Where the address is: `country.iso_code` (GeoIP2) or `country_code` (flat).
    Location,
    /// Where the network is registered: `registered_country.iso_code` (GeoIP2) or `country_code`
    /// (flat layouts such as iptoasn-country, which store exactly that); never `country`.
    Registration,
}
