//! Range tables: a database's ranges as sorted, disjoint arrays searched by address (overlaps
//! resolved, neighbours merged, IPv4 indexed by /16), and the reader of ip-location-db range CSV
//! files (RFC 4180, through the `csv` crate).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::GeoError;
use super::record::Record;

/// Ranges read from a CSV file, sorted by start, with values shared between ranges.
#[derive(Debug, Default)]
pub(super) struct RangeTable {
    pub(super) v4: Vec<(u32, u32, u32)>,
    pub(super) v6: Vec<(u128, u128, u32)>,
    pub(super) values: Vec<Record>,
    /// How many ranges overlapped another one (resolved: the narrower range wins).
    pub(super) overlaps: usize,
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
    pub(super) fn parse(path: &Path, text: &str) -> Result<Self, GeoError> {
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

    /// Sorts, makes ranges disjoint, merges neighbours with the same value, builds the index.
    pub(super) fn finish(&mut self) {
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

    pub(super) fn lookup(&self, addr: IpAddr) -> Option<&Record> {
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
