//! Range tables as the locality engine reads them: a [`Table`] (the compact byte image, built
//! from a file here or bundled with the program) whose values are read as [`Record`]s.

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::GeoError;
use super::record::Record;
use super::table::{self, Mistake, Table};

/// A database file's ranges and what they say, searched in place.
#[derive(Debug)]
pub(super) struct RangeTable {
    table: Table,
}

impl RangeTable {
    /// Reads range CSV text (`start,end,country_code` or `start,end,asn,organisation`).
    pub(super) fn parse(path: &Path, text: &str) -> Result<Self, GeoError> {
        let bytes = table::parse_csv(text).map_err(|m| mistake(path, m))?;
        Self::from_table(path, Cow::Owned(bytes))
    }

    /// A table built by [`table`] (at run time, or into the program for the bundled data).
    pub(super) fn from_table(path: &Path, bytes: Cow<'static, [u8]>) -> Result<Self, GeoError> {
        let table = Table::new(bytes).map_err(|message| GeoError::Csv {
            path: path.to_owned(),
            line: 0,
            message,
        })?;
        Ok(RangeTable { table })
    }

    /// How many ranges overlapped another one (resolved: the narrower range wins).
    pub(super) fn overlaps(&self) -> usize {
        self.table.overlaps()
    }

    /// Whether any range carries an AS number.
    pub(super) fn holds_asn(&self) -> bool {
        self.table.holds_asn()
    }

    /// Whether any range carries a country code, assigned or not.
    pub(super) fn holds_country(&self) -> bool {
        self.table.holds_code()
    }

    /// The table (to compare a bundled table with one built from the source file).
    #[cfg(test)]
    pub(super) fn table(&self) -> &Table {
        &self.table
    }

    /// What the table says about `addr`.
    pub(super) fn lookup(&self, addr: IpAddr) -> Option<Record> {
        let value = self.table.value(self.table.lookup(addr)?)?;
        let mut record = value.code.map(Record::with_code).unwrap_or_default();
        record.asn = value.asn;
        record.organisation = value.organisation.map(Arc::from);
        Some(record)
    }
}

/// A mistake the table builder found, as the geolocation error naming the file.
pub(super) fn mistake(path: &Path, m: Mistake) -> GeoError {
    GeoError::Csv {
        path: path.to_owned(),
        line: m.line,
        message: m.message,
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
