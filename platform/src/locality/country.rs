//! Countries (ISO 3166-1 alpha-2, validated) and the groups a policy may name instead (`EU`, `EEA`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::de::{self, Deserializer, Unexpected};
use serde::{Deserialize, Serialize, Serializer};

/// Every officially assigned ISO 3166-1 alpha-2 code, sorted, two bytes each.
///
/// User-assigned codes (`XK`, `ZZ`...) and the exceptionally reserved ones (`EU`, `UK`...) are
/// not countries: geolocation databases that answer with them give *unknown*.
const ASSIGNED: &str = "\
ADAEAFAGAIALAMAOAQARASATAUAWAXAZ\
BABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZ\
CACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZ\
DEDJDKDMDODZ\
ECEEEGEHERESET\
FIFJFKFMFOFR\
GAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGY\
HKHMHNHRHTHU\
IDIEILIMINIOIQIRISIT\
JEJMJOJP\
KEKGKHKIKMKNKPKRKWKYKZ\
LALBLCLILKLRLSLTLULVLY\
MAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZ\
NANCNENFNGNINLNONPNRNUNZ\
OM\
PAPEPFPGPHPKPLPMPNPRPSPTPWPY\
QA\
RERORSRURW\
SASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZ\
TCTDTFTGTHTJTKTLTMTNTOTRTTTVTWTZ\
UAUGUMUSUYUZ\
VAVCVEVGVIVNVU\
WFWS\
YEYT\
ZAZMZW";

/// [`ASSIGNED`] as a bit set: bit `second - 'A'` of entry `first - 'A'`, built at compile time.
const ASSIGNED_BITS: [u32; 26] = {
    let codes = ASSIGNED.as_bytes();
    let mut bits = [0u32; 26];
    let mut i = 0;
    while i < codes.len() {
        bits[(codes[i] - b'A') as usize] |= 1 << (codes[i + 1] - b'A');
        i += 2;
    }
    bits
};

/// The 27 member states of the European Union, plus the territories that are part of the Union
/// but carry their own ISO code (French outermost regions, Saint-Martin, Åland).
const EU: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", // member states
    "GF", "GP", "MQ", "RE", "YT", "MF", "AX", // outermost regions and Åland
];

/// The European Economic Area adds these to the Union.
const EEA_EXTRA: &[&str] = &["IS", "LI", "NO"];

/// A country, as an officially assigned ISO 3166-1 alpha-2 code (`FR`, `DE`, `US`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Country([u8; 2]);

/// Why a string is not a [`Country`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{given}` is not an ISO 3166-1 alpha-2 country code: expected two capital letters of an assigned code, such as FR"
)]
pub struct InvalidCountry {
    /// The rejected text.
    pub given: String,
}

impl Country {
    /// France.
    pub const FR: Country = Country(*b"FR");

    /// Parses an assigned ISO 3166-1 alpha-2 code; exactly two capital ASCII letters.
    pub fn parse(code: &str) -> Result<Self, InvalidCountry> {
        Self::from_bytes(code.as_bytes()).ok_or_else(|| InvalidCountry {
            given: code.to_owned(),
        })
    }

    /// Like [`Country::parse`], on raw bytes, without allocating on failure.
    pub fn from_bytes(code: &[u8]) -> Option<Self> {
        let [a, b] = *code else { return None };
        if !a.is_ascii_uppercase() || !b.is_ascii_uppercase() {
            return None;
        }
        (ASSIGNED_BITS[usize::from(a - b'A')] & (1 << (b - b'A')) != 0).then_some(Country([a, b]))
    }

    /// The two-letter code.
    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII capitals.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Country {
    type Err = InvalidCountry;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Country::parse(s)
    }
}

impl Serialize for Country {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Country {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Checked inside the visitor so the YAML error points at the value itself.
        d.deserialize_str(StrVisitor {
            expected: "an assigned ISO 3166-1 alpha-2 country code in capitals, such as FR",
            parse: |s| Country::from_bytes(s.as_bytes()),
        })
    }
}

/// A named group of countries a policy may use in place of listing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CountryGroup {
    /// The European Union (27 member states and their territories inside the Union).
    #[serde(rename = "EU")]
    Eu,
    /// The European Economic Area: the Union plus Iceland, Liechtenstein and Norway.
    #[serde(rename = "EEA")]
    Eea,
}

impl CountryGroup {
    /// Whether `country` belongs to the group.
    pub fn contains(self, country: Country) -> bool {
        let code = country.as_str();
        match self {
            CountryGroup::Eu => EU.contains(&code),
            CountryGroup::Eea => EU.contains(&code) || EEA_EXTRA.contains(&code),
        }
    }

    /// The group's name as written in a policy.
    pub fn as_str(self) -> &'static str {
        match self {
            CountryGroup::Eu => "EU",
            CountryGroup::Eea => "EEA",
        }
    }
}

/// One entry of a policy's country list: a country or a group of countries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Territory {
    /// A single country.
    Country(Country),
    /// A group such as `EU`.
    Group(CountryGroup),
}

impl Territory {
    /// Whether `country` is this country or belongs to this group.
    pub fn contains(self, country: Country) -> bool {
        match self {
            Territory::Country(c) => c == country,
            Territory::Group(g) => g.contains(country),
        }
    }
}

impl fmt::Display for Territory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Territory::Country(c) => c.fmt(f),
            Territory::Group(g) => f.write_str(g.as_str()),
        }
    }
}

impl Serialize for Territory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Territory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor {
            expected: "an ISO 3166-1 alpha-2 country code in capitals (such as FR) or a group (EU, EEA)",
            parse: |s| match s {
                "EU" => Some(Territory::Group(CountryGroup::Eu)),
                "EEA" => Some(Territory::Group(CountryGroup::Eea)),
                other => Country::from_bytes(other.as_bytes()).map(Territory::Country),
            },
        })
    }
}

/// Parses a string inside the deserializer, so that format errors carry the value's position.
struct StrVisitor<T> {
    expected: &'static str,
    parse: fn(&str) -> Option<T>,
}

impl<T> de::Visitor<'_> for StrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        (self.parse)(s).ok_or_else(|| E::invalid_value(Unexpected::Str(s), &self))
    }
}

/// A list of territories; a country is in the set when any entry contains it.
///
/// Shared, not copied: evidence that cites the set a country is outside of holds a reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountrySet(Arc<[Territory]>);

impl CountrySet {
    /// A set of these territories.
    pub fn new(territories: Vec<Territory>) -> Self {
        CountrySet(territories.into())
    }

    /// Whether any entry contains `country`.
    pub fn contains(&self, country: Country) -> bool {
        self.0.iter().any(|t| t.contains(country))
    }

    /// Whether the set lists nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries.
    pub fn territories(&self) -> &[Territory] {
        &self.0
    }
}

impl Serialize for CountrySet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for CountrySet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Territory>::deserialize(d).map(CountrySet::new)
    }
}

impl fmt::Display for CountrySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            t.fmt(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: &str, expected: Result<&str, &str>) {
        let got = Country::parse(code)
            .map(|c| c.to_string())
            .map_err(|e| e.to_string());
        assert_eq!(got.as_deref().map_err(String::as_str), expected, "{code}");
    }

    #[test]
    fn assigned_codes_are_sorted_and_complete() {
        let codes: Vec<&[u8]> = ASSIGNED.as_bytes().chunks_exact(2).collect();
        assert_eq!(codes.len(), 249, "ISO 3166-1 assigns 249 alpha-2 codes");
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        let mut accepted = 0;
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                let known = codes.contains(&&[a, b][..]);
                assert_eq!(Country::from_bytes(&[a, b]).is_some(), known);
                accepted += usize::from(known);
            }
        }
        assert_eq!(accepted, 249);
    }

    #[test]
    fn parses_and_rejects() {
        check("FR", Ok("FR"));
        check("US", Ok("US"));
        check(
            "fr",
            Err(
                "`fr` is not an ISO 3166-1 alpha-2 country code: expected two capital letters of an assigned code, such as FR",
            ),
        );
        check(
            "EU",
            Err(
                "`EU` is not an ISO 3166-1 alpha-2 country code: expected two capital letters of an assigned code, such as FR",
            ),
        );
        check(
            "FRA",
            Err(
                "`FRA` is not an ISO 3166-1 alpha-2 country code: expected two capital letters of an assigned code, such as FR",
            ),
        );
        check(
            "XK",
            Err(
                "`XK` is not an ISO 3166-1 alpha-2 country code: expected two capital letters of an assigned code, such as FR",
            ),
        );
    }

    #[test]
    fn groups() {
        let fr = Country::FR;
        let ch = Country::parse("CH").unwrap();
        let no = Country::parse("NO").unwrap();
        let re = Country::parse("RE").unwrap();
        assert!(CountryGroup::Eu.contains(fr));
        assert!(CountryGroup::Eu.contains(re));
        assert!(!CountryGroup::Eu.contains(ch));
        assert!(!CountryGroup::Eu.contains(no));
        assert!(CountryGroup::Eea.contains(no));
        assert!(
            EU.iter()
                .chain(EEA_EXTRA)
                .all(|c| Country::parse(c).is_ok())
        );
    }
}
