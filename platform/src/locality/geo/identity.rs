//! One database file read in its role: its format recognised (MaxMind DB or range CSV), its
//! contents checked against the role it is given (an AS file is no location data), and its
//! [`DatabaseIdentity`] (role, format, build date, SHA-256) for an evaluation's provenance.

use std::borrow::Cow;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::bundled::BuiltIn;
use super::range::RangeTable;
use super::record::CountryField;
use super::{GeoError, maxmind};

/// What reading a file gave, before its role is checked.
struct Read {
    table: RangeTable,
    /// `MaxMind DB <database_type>` or `range CSV`.
    format: String,
    built: Option<String>,
    /// One country per range (not GeoIP2, which holds `country` and `registered_country`).
    flat: bool,
    sha256: String,
}

/// Reads a file as a range table, in `role`: a MaxMind DB is flattened ([`maxmind::read`]), a CSV
/// file is parsed; a file whose contents or name do not fit the role is refused.
pub(super) fn parse_file(
    role: &'static str,
    path: &Path,
    field: CountryField,
    bytes: Vec<u8>,
) -> Result<(RangeTable, DatabaseIdentity), GeoError> {
    use sha2::Digest;
    let sha256 = hex_lower(&sha2::Sha256::digest(&bytes));
    let (table, format, built, flat) = if maxmind::is_mmdb(&bytes) {
        maxmind::read(path, field, Cow::Owned(bytes))?
    } else {
        let text = std::str::from_utf8(&bytes).map_err(|_| GeoError::Csv {
            path: path.to_owned(),
            line: 0,
            message: "neither a MaxMind DB nor UTF-8 CSV text".into(),
        })?;
        (
            RangeTable::parse(path, text)?,
            "range CSV".to_owned(),
            None,
            true,
        )
    };
    identify(
        role,
        path,
        field,
        Read {
            table,
            format,
            built,
            flat,
            sha256,
        },
    )
}

/// A bundled file, whose table and facts were made when the program was built, in `role`; its
/// role is checked as a file's is. Its table answers for either country field: the build
/// refuses a MaxMind DB whose table would differ between the two (`platform/build.rs`).
pub(super) fn open_built_in(
    role: &'static str,
    path: &Path,
    field: CountryField,
    file: &BuiltIn,
) -> Result<(RangeTable, DatabaseIdentity), GeoError> {
    let (format, built, flat) = match file.mmdb {
        Some((kind, epoch)) => maxmind::facts(kind, epoch),
        None => ("range CSV".to_owned(), None, true),
    };
    let read = Read {
        table: RangeTable::from_table(path, Cow::Borrowed(file.table))?,
        format,
        built,
        flat,
        sha256: file.sha256.to_owned(),
    };
    identify(role, path, field, read)
}

/// Checks that what was read fits `role`, and names it.
fn identify(
    role: &'static str,
    path: &Path,
    field: CountryField,
    read: Read,
) -> Result<(RangeTable, DatabaseIdentity), GeoError> {
    let Read {
        table,
        format,
        built,
        flat,
        sha256,
    } = read;
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let wrong = |why: String| GeoError::WrongRole {
        path: path.to_owned(),
        role,
        why,
    };
    let holds_asn = table.holds_asn();
    let holds_country = table.holds_country();
    let lower = file.to_ascii_lowercase();
    match role {
        "AS number" if !holds_asn => {
            return Err(wrong("it holds no AS numbers (a country file?)".into()));
        }
        "location" | "registration" if !holds_country => {
            return Err(wrong(format!(
                "no record holds a {}{}",
                if field == CountryField::Registration {
                    "registered_country or country_code field"
                } else {
                    "country or country_code field"
                },
                if holds_asn {
                    " (an AS number file?)"
                } else {
                    ""
                }
            )));
        }
        // A flat file holds one country per range and cannot say which kind. ip-location-db
        // names its files by what they hold: iptoasn-country is the registration country of the
        // announcing network, the others (geo-whois-asn-country, dbip-country, geolite2-country)
        // are locations. A flat file named for one role is refused in the other. (GeoIP2 files
        // hold both `country` and `registered_country` and serve either role.)
        "location" if flat && lower.contains("iptoasn") => {
            return Err(wrong(
                "its name says it holds registration countries (iptoasn-country)".into(),
            ));
        }
        "registration"
            if flat
                && [
                    "geo-whois",
                    "dbip-",
                    "geolite2-country",
                    "geolite2-city",
                    "geo-asn",
                ]
                .iter()
                .any(|n| lower.contains(n)) =>
        {
            return Err(wrong(
                "its name says it holds locations, not registrations".into(),
            ));
        }
        _ => {}
    }
    Ok((
        table,
        DatabaseIdentity {
            role: role.to_owned(),
            file,
            format,
            built,
            sha256,
        },
    ))
}

fn hex_lower(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Which database file an evaluation consulted, so it can be replayed against the same data:
/// its role, format (MaxMind `database_type` or range CSV), build date and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseIdentity {
    /// `location`, `registration` or `AS number`.
    pub role: String,
    /// The file name (without directories, which differ between machines).
    pub file: String,
    /// `MaxMind DB GeoLite2-Country`, `MaxMind DB country ipvAll`, `range CSV`.
    pub format: String,
    /// The build date a MaxMind DB records (RFC 3339); CSV files record none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<String>,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
}
