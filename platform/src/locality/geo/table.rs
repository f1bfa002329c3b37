//! The compact range table: one byte image holding a database's ranges (sorted boundaries,
//! IPv4 indexed by /16) and the values they carry, searched in place. Built from range CSV text
//! or a MaxMind DB, at run time for files on disk and when the program is built for the bundled
//! data, whose tables are then read straight from the program's image: only the pages a lookup
//! touches are ever loaded.
//!
//! This file is also compiled into the platform's build script (`platform/build.rs`), so it
//! uses nothing of the crate: the bundled tables and the ones built at run time come from the
//! same code, and a test checks they are the same bytes.
//!
//! Layout (little-endian): a [`HEADER`]-byte header (magic, counts, flags); the IPv4 index
//! (65,537 `u32`: for each top 16 bits `p`, the first IPv4 boundary at or after `p << 16`); the
//! IPv4 boundaries (`u32` each) then their value numbers (`u32`); the IPv6 boundaries (`u128`)
//! then their value numbers; the values, [`VALUE`] bytes each; the strings they point into. A
//! boundary starts a run of addresses that all carry its value, up to the next boundary; the
//! value [`NONE`] marks addresses no range covers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

/// The first bytes of every table, with the format's version.
const MAGIC: &[u8; 8] = b"HXGEOT\x00\x01";
/// Header size: magic, then six `u32` (IPv4 and IPv6 boundaries, values, string bytes,
/// overlapping ranges, flags).
const HEADER: usize = 32;
/// Size of one value: code offset, organisation offset, AS number (`u32` each), code length
/// (`u8`), which fields are present (`u8`), organisation length (`u16`).
const VALUE: usize = 16;
/// The value number of addresses no range covers.
const NONE: u32 = u32::MAX;
/// Entries of the IPv4 index.
const INDEX: usize = (1 << 16) + 1;

const HAS_CODE: u8 = 1;
const HAS_ASN: u8 = 2;
const HAS_ORGANISATION: u8 = 4;
const FLAG_ASN: u32 = 1;
const FLAG_CODE: u32 = 2;

/// What a range says, as its file wrote it: a country code (checked by the reader, not here),
/// an AS number, an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Value<'a> {
    /// The country code as written (`FR`, `EU`, `ZZ`).
    pub code: Option<&'a str>,
    /// The autonomous system number.
    pub asn: Option<u32>,
    /// The autonomous system's organisation (never empty).
    pub organisation: Option<&'a str>,
}

/// A mistake in a range file: its 1-based line (0 when it is not on one line) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// 1-based line, 0 when the mistake is not on one line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
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

/// Ranges and values gathered from a file, made into a table by [`Builder::finish`].
#[derive(Debug, Default)]
pub struct Builder {
    v4: Vec<(u32, u32, u32)>,
    v6: Vec<(u128, u128, u32)>,
    /// Each distinct value once.
    values: Vec<Owned>,
    seen: HashMap<Owned, u32>,
}

/// A [`Value`] kept by the builder: code, AS number, organisation.
type Owned = (Option<Box<str>>, Option<u32>, Option<Box<str>>);

impl Builder {
    /// The number of `value`, added when it is new (ranges share values).
    pub fn value(&mut self, value: Value<'_>) -> u32 {
        let key = (
            value.code.map(Box::from),
            value.asn,
            value.organisation.filter(|o| !o.is_empty()).map(Box::from),
        );
        if let Some(n) = self.seen.get(&key) {
            return *n;
        }
        let n = self.values.len() as u32;
        self.values.push(key.clone());
        self.seen.insert(key, n);
        n
    }

    /// Adds the inclusive range `start..=end` carrying value `value`; `false` when the range is
    /// empty or mixes IPv4 and IPv6.
    pub fn range(&mut self, start: IpAddr, end: IpAddr, value: u32) -> bool {
        match (start, end) {
            (IpAddr::V4(s), IpAddr::V4(e)) if s <= e => self.v4.push((s.into(), e.into(), value)),
            (IpAddr::V6(s), IpAddr::V6(e)) if s <= e => self.v6.push((s.into(), e.into(), value)),
            _ => return false,
        }
        true
    }

    /// The table: ranges sorted and made disjoint (where ranges overlap, the narrowest range
    /// covering an address wins), neighbours with the same value joined, the index built.
    pub fn finish(self) -> Result<Vec<u8>, Mistake> {
        let (v4, o4) = disjoint(self.v4);
        let (v6, o6) = disjoint(self.v6);
        let v4 = boundaries(&merge_adjacent(v4));
        let v6 = boundaries(&merge_adjacent(v6));
        let mut strings: Vec<u8> = Vec::new();
        let mut values: Vec<u8> = Vec::with_capacity(self.values.len() * VALUE);
        let mut holds = 0u32;
        for (code, asn, organisation) in &self.values {
            let mut present = 0u8;
            let code_at = strings.len() as u32;
            let code_len = match code {
                Some(c) => {
                    present |= HAS_CODE;
                    holds |= FLAG_CODE;
                    strings.extend_from_slice(c.as_bytes());
                    u8::try_from(c.len()).map_err(|_| Mistake {
                        line: 0,
                        message: format!("country code `{c}` is longer than 255 bytes"),
                    })?
                }
                None => 0,
            };
            if asn.is_some() {
                present |= HAS_ASN;
                holds |= FLAG_ASN;
            }
            let organisation_at = strings.len() as u32;
            let organisation_len = match organisation {
                Some(o) => {
                    present |= HAS_ORGANISATION;
                    strings.extend_from_slice(o.as_bytes());
                    u16::try_from(o.len()).map_err(|_| Mistake {
                        line: 0,
                        message: format!(
                            "an organisation name is longer than 65,535 bytes: `{}…`",
                            o.chars().take(40).collect::<String>()
                        ),
                    })?
                }
                None => 0,
            };
            values.extend_from_slice(&code_at.to_le_bytes());
            values.extend_from_slice(&organisation_at.to_le_bytes());
            values.extend_from_slice(&asn.unwrap_or(0).to_le_bytes());
            values.push(code_len);
            values.push(present);
            values.extend_from_slice(&organisation_len.to_le_bytes());
        }
        let too_big = |what: &str| Mistake {
            line: 0,
            message: format!("too many {what} for one table"),
        };
        let count = |n: usize, what: &str| u32::try_from(n).map_err(|_| too_big(what));
        let mut out = Vec::with_capacity(
            HEADER + INDEX * 4 + v4.len() * 8 + v6.len() * 20 + values.len() + strings.len(),
        );
        out.extend_from_slice(MAGIC);
        for n in [
            count(v4.len(), "IPv4 ranges")?,
            count(v6.len(), "IPv6 ranges")?,
            count(self.values.len(), "values")?,
            count(strings.len(), "string bytes")?,
            count(o4 + o6, "overlapping ranges")?,
            holds,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for p in 0..INDEX as u64 {
            let first = v4.partition_point(|b| u64::from(b.0) < p << 16) as u32;
            out.extend_from_slice(&first.to_le_bytes());
        }
        v4.iter()
            .for_each(|b| out.extend_from_slice(&b.0.to_le_bytes()));
        v4.iter()
            .for_each(|b| out.extend_from_slice(&b.1.to_le_bytes()));
        v6.iter()
            .for_each(|b| out.extend_from_slice(&b.0.to_le_bytes()));
        v6.iter()
            .for_each(|b| out.extend_from_slice(&b.1.to_le_bytes()));
        out.extend_from_slice(&values);
        out.extend_from_slice(&strings);
        Ok(out)
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

/// Sorted, disjoint, merged ranges as boundaries: each range's start with its value, and the
/// address after it with [`NONE`] when no range follows at once.
fn boundaries<T: Bound>(ranges: &[(T, T, u32)]) -> Vec<(T, u32)> {
    let mut out = Vec::with_capacity(ranges.len() + ranges.len() / 4);
    for (k, r) in ranges.iter().enumerate() {
        out.push((r.0, r.2));
        if let Some(after) = r.1.next()
            && ranges.get(k + 1).map(|n| n.0) != Some(after)
        {
            out.push((after, NONE));
        }
    }
    out
}

/// Reads ip-location-db range CSV text (`start,end,country_code` or
/// `start,end,asn,organisation`, RFC 4180 quoting) into a table.
pub fn parse_csv(text: &str) -> Result<Vec<u8>, Mistake> {
    let mut builder = Builder::default();
    let err = |line: usize, message: String| Mistake { line, message };
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
        let value = match row.len() {
            3 => Value {
                code: Some(&row[2]),
                ..Value::default()
            },
            4 => Value {
                asn: Some(
                    row[2]
                        .parse::<u32>()
                        .map_err(|_| err(lineno, format!("`{}` is not an AS number", &row[2])))?,
                ),
                organisation: Some(&row[3]).filter(|o| !o.is_empty()),
                ..Value::default()
            },
            _ => {
                return Err(err(
                    lineno,
                    "expected `start,end,country_code` or `start,end,asn,organisation`".into(),
                ));
            }
        };
        let (start, end) = (parse_ip(&row[0])?, parse_ip(&row[1])?);
        let value = builder.value(value);
        if !builder.range(start, end, value) {
            return Err(err(
                lineno,
                format!("range {start}..{end} is empty or mixes IPv4 and IPv6"),
            ));
        }
    }
    builder.finish()
}

#[derive(serde::Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

fn iso<'a>(code: &Option<IsoCode<'a>>) -> Option<&'a str> {
    code.as_ref().and_then(|c| c.iso_code)
}

/// The union of the MaxMind DB layouts read: GeoIP2 Country/City, GeoLite2-ASN and flat
/// ip-location-db (`country_code`).
#[derive(serde::Deserialize)]
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

/// Reads a MaxMind DB into a table: every network, each distinct record decoded once. The
/// country is the record's `country` (GeoIP2) or `country_code` (flat), or, when
/// `registration` is set, its `registered_country` or `country_code`: never the location
/// country for a registration, which would count one fact twice.
pub fn flatten_mmdb<S: AsRef<[u8]>>(
    reader: &maxminddb::Reader<S>,
    registration: bool,
) -> Result<Result<Vec<u8>, Mistake>, maxminddb::MaxMindDbError> {
    let mut builder = Builder::default();
    let mut by_offset: HashMap<usize, u32> = HashMap::new();
    for found in reader.networks(maxminddb::WithinOptions::default())? {
        let found = found?;
        let Some(offset) = found.offset() else {
            continue;
        };
        let value = match by_offset.get(&offset) {
            Some(v) => *v,
            None => {
                let record = found.decode::<MmdbRecord<'_>>()?;
                let value = match &record {
                    Some(r) => {
                        let code = if registration {
                            iso(&r.registered_country).or(r.country_code)
                        } else {
                            iso(&r.country).or(r.country_code)
                        };
                        Value {
                            code,
                            asn: r.autonomous_system_number,
                            organisation: r
                                .autonomous_system_organization
                                .filter(|o| !o.is_empty()),
                        }
                    }
                    None => Value::default(),
                };
                let v = builder.value(value);
                by_offset.insert(offset, v);
                v
            }
        };
        let network = found.network()?;
        let prefix = u32::from(network.prefix());
        let (start, end) = match network.ip() {
            IpAddr::V4(ip) => {
                let start = u32::from(ip);
                let end = start | u32::MAX.checked_shr(prefix).unwrap_or(0);
                (
                    IpAddr::from(start.to_be_bytes()),
                    IpAddr::from(end.to_be_bytes()),
                )
            }
            IpAddr::V6(ip) => {
                let start = u128::from(ip);
                let end = start | u128::MAX.checked_shr(prefix).unwrap_or(0);
                (
                    IpAddr::from(start.to_be_bytes()),
                    IpAddr::from(end.to_be_bytes()),
                )
            }
        };
        builder.range(start, end, value);
    }
    Ok(builder.finish())
}

/// A table, read in place from its bytes (borrowed from the program's image for the bundled
/// data, owned for a file read at run time).
#[derive(Debug)]
pub struct Table {
    bytes: Cow<'static, [u8]>,
    v4: usize,
    v6: usize,
    values: usize,
    overlaps: usize,
    holds: u32,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u128_at(bytes: &[u8], at: usize) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes[at..at + 16]);
    u128::from_le_bytes(b)
}

impl Table {
    /// Reads a table's header and checks that its sections fit its length. Nothing else is
    /// read: a lookup touches only the pages it searches (the rest of a bundled table is never
    /// loaded), and reads out of bounds are refused by [`Table::lookup`] and [`Table::value`],
    /// never a panic. [`Table::check`] reads every entry.
    pub fn new(bytes: Cow<'static, [u8]>) -> Result<Self, String> {
        if bytes.len() < HEADER + INDEX * 4 || &bytes[..8] != MAGIC {
            return Err("not a range table of this version".into());
        }
        let field = |k: usize| u32_at(&bytes, 8 + 4 * k) as usize;
        let table = Table {
            v4: field(0),
            v6: field(1),
            values: field(2),
            overlaps: field(4),
            holds: field(5) as u32,
            bytes: Cow::Borrowed(&[]),
        };
        let expected = table.strings_at() as u128 + field(3) as u128;
        if expected != bytes.len() as u128 {
            return Err(format!(
                "a range table of {} bytes, where its header makes it {expected}",
                bytes.len()
            ));
        }
        Ok(Table { bytes, ..table })
    }

    /// Reads every entry (tests): the index and each range's value point inside the table, every value's
    /// text is UTF-8, boundaries are sorted.
    #[cfg(test)]
    pub fn check(&self) -> Result<(), String> {
        let bytes: &[u8] = &self.bytes;
        let mut previous = 0;
        for p in 0..INDEX {
            let first = u32_at(bytes, HEADER + 4 * p) as usize;
            if first > self.v4 || first < previous {
                return Err(format!(
                    "index entry {p} is out of order or past the IPv4 ranges"
                ));
            }
            previous = first;
        }
        for k in 0..self.values {
            if self.value(k as u32).is_none() {
                return Err(format!("value {k} points past the strings or is not UTF-8"));
            }
        }
        let sorted4 = (1..self.v4).all(|k| {
            u32_at(bytes, self.v4_at() + 4 * (k - 1)) < u32_at(bytes, self.v4_at() + 4 * k)
        });
        let sorted6 = (1..self.v6).all(|k| {
            u128_at(bytes, self.v6_at() + 16 * (k - 1)) < u128_at(bytes, self.v6_at() + 16 * k)
        });
        if !sorted4 || !sorted6 {
            return Err("boundaries out of order".into());
        }
        let numbers = (0..self.v4)
            .map(|k| u32_at(bytes, self.v4_values_at() + 4 * k))
            .chain((0..self.v6).map(|k| u32_at(bytes, self.v6_values_at() + 4 * k)));
        for n in numbers {
            if n != NONE && n as usize >= self.values {
                return Err(format!("a range carries value {n}, past the values"));
            }
        }
        Ok(())
    }

    fn v4_at(&self) -> usize {
        HEADER + INDEX * 4
    }
    fn v4_values_at(&self) -> usize {
        self.v4_at() + self.v4 * 4
    }
    fn v6_at(&self) -> usize {
        self.v4_values_at() + self.v4 * 4
    }
    fn v6_values_at(&self) -> usize {
        self.v6_at() + self.v6 * 16
    }
    fn values_at(&self) -> usize {
        self.v6_values_at() + self.v6 * 4
    }
    fn strings_at(&self) -> usize {
        self.values_at() + self.values * VALUE
    }

    /// How many ranges overlapped another one when built (resolved: the narrower range wins).
    pub fn overlaps(&self) -> usize {
        self.overlaps
    }

    /// Whether any value holds an AS number.
    pub fn holds_asn(&self) -> bool {
        self.holds & FLAG_ASN != 0
    }

    /// Whether any value holds a country code.
    pub fn holds_code(&self) -> bool {
        self.holds & FLAG_CODE != 0
    }

    /// The table's bytes (tests).
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The number of the value covering `addr`, if a range covers it.
    pub fn lookup(&self, addr: IpAddr) -> Option<u32> {
        let bytes: &[u8] = &self.bytes;
        // The last boundary at or before x among boundaries lo..hi: the one covering x.
        fn last_at_or_before<T: Ord>(
            lo: usize,
            hi: usize,
            x: T,
            at: impl Fn(usize) -> T,
        ) -> Option<usize> {
            let (mut lo, mut hi) = (lo, hi);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if at(mid) <= x {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo.checked_sub(1)
        }
        let value = match addr {
            IpAddr::V4(v4) => {
                let x = u32::from(v4);
                let p = (x >> 16) as usize;
                let hi = (u32_at(bytes, HEADER + 4 * (p + 1)) as usize).min(self.v4);
                let lo = (u32_at(bytes, HEADER + 4 * p) as usize).min(hi);
                // The boundary covering x lies in x's /16 block, or is the last one before it.
                let base = self.v4_at();
                let k = last_at_or_before(lo.saturating_sub(1), hi, x, |k| {
                    u32_at(bytes, base + 4 * k)
                })?;
                if u32_at(bytes, base + 4 * k) > x {
                    return None;
                }
                u32_at(bytes, self.v4_values_at() + 4 * k)
            }
            IpAddr::V6(v6) => {
                let x = u128::from(v6);
                let base = self.v6_at();
                let k = last_at_or_before(0, self.v6, x, |k| u128_at(bytes, base + 16 * k))?;
                u32_at(bytes, self.v6_values_at() + 4 * k)
            }
        };
        (value != NONE).then_some(value)
    }

    /// Value number `n`; `None` past the values or when its text is not UTF-8.
    pub fn value(&self, n: u32) -> Option<Value<'_>> {
        let n = n as usize;
        if n >= self.values {
            return None;
        }
        let bytes: &[u8] = &self.bytes;
        let at = self.values_at() + n * VALUE;
        let strings = self.strings_at();
        let present = bytes[at + 13];
        let text = |offset: usize, len: usize| {
            let from = strings.checked_add(offset)?;
            std::str::from_utf8(bytes.get(from..from.checked_add(len)?)?).ok()
        };
        let code = if present & HAS_CODE != 0 {
            Some(text(
                u32_at(bytes, at) as usize,
                usize::from(bytes[at + 12]),
            )?)
        } else {
            None
        };
        let organisation = if present & HAS_ORGANISATION != 0 {
            Some(text(
                u32_at(bytes, at + 4) as usize,
                usize::from(u16::from_le_bytes([bytes[at + 14], bytes[at + 15]])),
            )?)
        } else {
            None
        };
        Some(Value {
            code,
            asn: (present & HAS_ASN != 0).then(|| u32_at(bytes, at + 8)),
            organisation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(csv: &str) -> Table {
        let t = Table::new(Cow::Owned(parse_csv(csv).unwrap())).unwrap();
        t.check().unwrap();
        t
    }

    fn code(t: &Table, addr: &str) -> Option<String> {
        let v = t.value(t.lookup(addr.parse().unwrap())?).unwrap();
        Some(v.code.unwrap_or("-").to_owned())
    }

    /// Every address reads the range covering it, and nothing before, between or after ranges,
    /// at the ends of both address spaces and across /16 blocks.
    #[test]
    fn boundaries_cover_ranges_and_nothing_else() {
        let t = table(
            "0.0.0.0,0.0.0.0,AA\n1.0.0.0,1.0.255.255,FR\n1.1.0.0,1.1.0.9,FR\n\
             1.1.0.10,1.1.0.10,DE\n9.0.0.0,9.255.255.255,US\n255.255.255.255,255.255.255.255,ZZ\n\
             ::1,::2,FR\nffff::,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,DE\n",
        );
        for (addr, expected) in [
            ("0.0.0.0", Some("AA")),
            ("0.0.0.1", None),
            ("0.255.255.255", None),
            ("1.0.0.0", Some("FR")),
            ("1.0.255.255", Some("FR")),
            ("1.1.0.9", Some("FR")),
            ("1.1.0.10", Some("DE")),
            ("1.1.0.11", None),
            ("8.255.255.255", None),
            ("9.128.0.1", Some("US")),
            ("10.0.0.0", None),
            ("255.255.255.254", None),
            ("255.255.255.255", Some("ZZ")),
            ("::", None),
            ("::2", Some("FR")),
            ("::3", None),
            ("fffe::", None),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("DE")),
        ] {
            assert_eq!(code(&t, addr).as_deref(), expected, "{addr}");
        }
        // The two FR ranges touch: one boundary, and the values are shared.
        assert_eq!(t.values, 5);
        assert!(t.holds_code() && !t.holds_asn());
        let empty = table("");
        assert_eq!(code(&empty, "1.2.3.4"), None);
        assert_eq!(code(&empty, "::1"), None);
    }

    /// Bytes that are not a table of this version, or whose header does not match their length,
    /// are refused; a table whose entries are damaged answers wrongly or not at all, never
    /// panics.
    #[test]
    fn damaged_tables_are_refused_or_harmless() {
        let good = parse_csv("1.0.0.0,1.0.0.255,13335,Cloudflare\n::1,::1,1,x\n").unwrap();
        let mut other = good.clone();
        other[7] = 2;
        assert_eq!(
            Table::new(Cow::Owned(other)).unwrap_err(),
            "not a range table of this version"
        );
        let mut short = good.clone();
        short.pop();
        assert!(
            Table::new(Cow::Owned(short))
                .unwrap_err()
                .contains("where its header makes it"),
        );
        // Everything after the header overwritten: index, boundaries, values.
        for fill in [0x00, 0x7f, 0xff] {
            let mut bad = good.clone();
            bad[HEADER..].iter_mut().for_each(|b| *b = fill);
            let t = Table::new(Cow::Owned(bad)).unwrap();
            assert!(fill == 0 || t.check().is_err());
            for addr in ["0.0.0.0", "1.0.0.7", "255.255.255.255", "::1", "ffff::"] {
                if let Some(n) = t.lookup(addr.parse().unwrap()) {
                    let _ = t.value(n);
                }
            }
        }
    }
}
