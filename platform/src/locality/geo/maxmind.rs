//! MaxMind DB files (GeoIP2/GeoLite2 Country, City and ASN, and flat `country_code` layouts):
//! recognised by their metadata marker and flattened into a range table.

use std::borrow::Cow;
use std::path::Path;

use super::GeoError;
use super::range::{RangeTable, mistake};
use super::record::CountryField;
use super::table;

/// The marker that starts the metadata section of every MaxMind DB file.
const MMDB_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

/// Whether `bytes` are a MaxMind DB: its metadata marker lies in the last 128 KiB.
pub(super) fn is_mmdb(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(128 * 1024)..];
    tail.windows(MMDB_MARKER.len()).any(|w| w == MMDB_MARKER)
}

/// Reads a MaxMind DB as a range table ([`table::flatten_mmdb`]). Returns the table and the
/// metadata's [`facts`].
///
/// Flattening costs a walk of the whole tree at load time and makes every lookup a search in
/// a sorted array (IPv4: one index probe and a few comparisons) instead of a tree walk.
pub(super) fn read(
    path: &Path,
    field: CountryField,
    bytes: Cow<'static, [u8]>,
) -> Result<(RangeTable, String, Option<String>, bool), GeoError> {
    let mmdb_err = |source| GeoError::Mmdb {
        path: path.to_owned(),
        source,
    };
    let reader = maxminddb::Reader::from_source(bytes).map_err(mmdb_err)?;
    let (format, built, flat) = facts(
        &reader.metadata().database_type,
        reader.metadata().build_epoch,
    );
    let bytes = table::flatten_mmdb(&reader, field == CountryField::Registration)
        .map_err(mmdb_err)?
        .map_err(|m| mistake(path, m))?;
    let table = RangeTable::from_table(path, Cow::Owned(bytes))?;
    Ok((table, format, built, flat))
}

/// What a MaxMind DB's metadata says: its format (`MaxMind DB <database_type>`), its build date
/// (RFC 3339) and whether its layout is flat (one country per record: not GeoIP2, whose records
/// hold both `country` and `registered_country`).
pub(super) fn facts(database_type: &str, build_epoch: u64) -> (String, Option<String>, bool) {
    let built = i64::try_from(build_epoch)
        .ok()
        .and_then(|epoch| time::OffsetDateTime::from_unix_timestamp(epoch).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    (
        format!("MaxMind DB {database_type}"),
        built,
        !database_type.starts_with("Geo"),
    )
}
