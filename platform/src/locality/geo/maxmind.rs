//! MaxMind DB files (GeoIP2/GeoLite2 Country, City and ASN, and flat `country_code` layouts):
//! recognised by their metadata marker and flattened into a range table.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use super::GeoError;
use super::range::RangeTable;
use super::record::{CountryField, Record};

/// The marker that starts the metadata section of every MaxMind DB file.
const MMDB_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

/// Whether `bytes` are a MaxMind DB: its metadata marker lies in the last 128 KiB.
pub(super) fn is_mmdb(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(128 * 1024)..];
    tail.windows(MMDB_MARKER.len()).any(|w| w == MMDB_MARKER)
}

/// Reads a MaxMind DB as a range table: every network decoded once per distinct record, then
/// merged with its neighbours. Returns the table, the format (`MaxMind DB <database_type>`), the
/// build date (RFC 3339) and whether the layout is flat (one country per record, not GeoIP2).
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
    let kind = reader.metadata().database_type.clone();
    let built = time::OffsetDateTime::from_unix_timestamp(reader.metadata().build_epoch as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    let table = RangeTable::from_mmdb(&reader, field).map_err(mmdb_err)?;
    let flat = !kind.starts_with("Geo");
    Ok((table, format!("MaxMind DB {kind}"), built, flat))
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

/// The union of the layouts read: GeoIP2 Country/City, GeoLite2-ASN and flat ip-location-db.
#[derive(Deserialize)]
struct MmdbRecord<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

fn iso<'a>(code: Option<IsoCode<'a>>) -> Option<&'a str> {
    code.and_then(|c| c.iso_code)
}

impl Record {
    fn from_mmdb(rec: MmdbRecord<'_>, field: CountryField) -> Self {
        let code = match field {
            CountryField::Location => iso(rec.country).or(rec.country_code),
            // Never the location country: a network's registration is a separate datum, and
            // borrowing the location would count one fact twice.
            CountryField::Registration => iso(rec.registered_country).or(rec.country_code),
        };
        let mut record = code.map(Record::with_code).unwrap_or_default();
        record.asn = rec.autonomous_system_number;
        record.organisation = rec.autonomous_system_organization.map(Into::into);
        record
    }
}

impl RangeTable {
    pub(super) fn from_mmdb<S: AsRef<[u8]>>(
        reader: &maxminddb::Reader<S>,
        field: CountryField,
    ) -> Result<Self, maxminddb::MaxMindDbError> {
        let mut table = RangeTable::default();
        let mut by_offset: HashMap<usize, u32> = HashMap::new();
        let mut by_record: HashMap<Record, u32> = HashMap::new();
        for found in reader.networks(maxminddb::WithinOptions::default())? {
            let found = found?;
            let Some(offset) = found.offset() else {
                continue;
            };
            let value = match by_offset.get(&offset) {
                Some(v) => *v,
                None => {
                    let record = found
                        .decode::<MmdbRecord<'_>>()?
                        .map(|r| Record::from_mmdb(r, field))
                        .unwrap_or_default();
                    let next = table.values.len() as u32;
                    let v = *by_record.entry(record.clone()).or_insert_with(|| {
                        table.values.push(record);
                        next
                    });
                    by_offset.insert(offset, v);
                    v
                }
            };
            let network = found.network()?;
            let prefix = u32::from(network.prefix());
            match network.ip() {
                IpAddr::V4(ip) => {
                    let start = u32::from(ip);
                    let end = start | u32::MAX.checked_shr(prefix).unwrap_or(0);
                    table.v4.push((start, end, value));
                }
                IpAddr::V6(ip) => {
                    let start = u128::from(ip);
                    let end = start | u128::MAX.checked_shr(prefix).unwrap_or(0);
                    table.v6.push((start, end, value));
                }
            }
        }
        table.finish();
        Ok(table)
    }
}
