//! IP addresses as evidence: canonical form, and the special-purpose ranges that no database can place.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// A special-purpose range (IANA registries, RFC 6890): addresses in it are nowhere in particular.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReservedRange {
    /// The range, in CIDR notation (`10.0.0.0/8`).
    pub cidr: &'static str,
    /// What it is for, in a few words ("private network").
    pub purpose: &'static str,
    /// The document that reserves it.
    pub rfc: &'static str,
}

impl fmt::Display for ReservedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} range {} ({})", self.purpose, self.cidr, self.rfc)
    }
}

const fn r(cidr: &'static str, purpose: &'static str, rfc: &'static str) -> ReservedRange {
    ReservedRange { cidr, purpose, rfc }
}

/// IPv4 special-purpose ranges: (network, prefix length, description).
static V4: &[(u32, u8, ReservedRange)] = &[
    (
        0x0000_0000,
        8,
        r("0.0.0.0/8", "\"this network\"", "RFC 791"),
    ),
    (
        0x0A00_0000,
        8,
        r("10.0.0.0/8", "private network", "RFC 1918"),
    ),
    (
        0x6440_0000,
        10,
        r("100.64.0.0/10", "carrier-grade NAT shared", "RFC 6598"),
    ),
    (0x7F00_0000, 8, r("127.0.0.0/8", "loopback", "RFC 1122")),
    (
        0xA9FE_0000,
        16,
        r("169.254.0.0/16", "link-local", "RFC 3927"),
    ),
    (
        0xAC10_0000,
        12,
        r("172.16.0.0/12", "private network", "RFC 1918"),
    ),
    (
        0xC000_0000,
        24,
        r("192.0.0.0/24", "IETF protocol assignments", "RFC 6890"),
    ),
    (
        0xC000_0200,
        24,
        r("192.0.2.0/24", "documentation (TEST-NET-1)", "RFC 5737"),
    ),
    (
        0xC058_6300,
        24,
        r("192.88.99.0/24", "6to4 relay anycast", "RFC 7526"),
    ),
    (
        0xC0A8_0000,
        16,
        r("192.168.0.0/16", "private network", "RFC 1918"),
    ),
    (
        0xC612_0000,
        15,
        r("198.18.0.0/15", "benchmarking", "RFC 2544"),
    ),
    (
        0xC633_6400,
        24,
        r("198.51.100.0/24", "documentation (TEST-NET-2)", "RFC 5737"),
    ),
    (
        0xCB00_7100,
        24,
        r("203.0.113.0/24", "documentation (TEST-NET-3)", "RFC 5737"),
    ),
    (0xE000_0000, 4, r("224.0.0.0/4", "multicast", "RFC 5771")),
    (
        0xF000_0000,
        4,
        r("240.0.0.0/4", "reserved and broadcast", "RFC 1112"),
    ),
];

/// IPv6 special-purpose ranges, most specific first where they nest.
static V6: &[(u128, u8, ReservedRange)] = &[
    (0, 128, r("::/128", "unspecified", "RFC 4291")),
    (1, 128, r("::1/128", "loopback", "RFC 4291")),
    (
        0x0064_ff9b_0000_0000_0000_0000_0000_0000,
        96,
        r("64:ff9b::/96", "NAT64 well-known prefix", "RFC 6052"),
    ),
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        r("64:ff9b:1::/48", "local-use NAT64", "RFC 8215"),
    ),
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        r("100::/64", "discard-only", "RFC 6666"),
    ),
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        r("2001:db8::/32", "documentation", "RFC 3849"),
    ),
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        23,
        r("2001::/23", "IETF protocol assignments", "RFC 2928"),
    ),
    (
        0x2002_0000_0000_0000_0000_0000_0000_0000,
        16,
        r("2002::/16", "6to4", "RFC 3056"),
    ),
    (
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        20,
        r("3fff::/20", "documentation", "RFC 9637"),
    ),
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        7,
        r("fc00::/7", "unique local", "RFC 4193"),
    ),
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        10,
        r("fe80::/10", "link-local", "RFC 4291"),
    ),
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        8,
        r("ff00::/8", "multicast", "RFC 4291"),
    ),
];

/// Everything outside 2000::/3 that the table above does not name.
static V6_NOT_GLOBAL: ReservedRange = r("outside 2000::/3", "non-global-unicast IPv6", "RFC 4291");

/// The special-purpose range written `cidr` (as in [`ReservedRange::cidr`]), for reading back a
/// recorded evaluation.
pub fn reserved_by_cidr(cidr: &str) -> Option<&'static ReservedRange> {
    V4.iter()
        .map(|(_, _, r)| r)
        .chain(V6.iter().map(|(_, _, r)| r))
        .chain(std::iter::once(&V6_NOT_GLOBAL))
        .find(|r| r.cidr == cidr)
}

/// The form an address is looked up in: IPv4-mapped IPv6 (`::ffff:192.0.2.1`) becomes IPv4.
pub fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

/// A block of addresses written `address/prefix`: a NetworkPolicy `ipBlock`'s `cidr`, a
/// Workplace's egress destination. The one reading of that notation for the operator, the
/// auditor and the Workplace's checks: an IPv4 or IPv6 address, then a prefix length of at most
/// three digits (no sign, no space) and no longer than the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    address: IpAddr,
    prefix: u8,
}

impl Block {
    /// The address as written (not masked: `192.0.2.25/24` keeps `.25`).
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The prefix length, at most [`Block::host_prefix`].
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The prefix length of one address: 32 for IPv4, 128 for IPv6.
    pub fn host_prefix(&self) -> u8 {
        if self.address.is_ipv4() { 32 } else { 128 }
    }

    /// Whether the block is exactly its address (`/32`, `/128`).
    pub fn is_one_address(&self) -> bool {
        self.prefix == self.host_prefix()
    }
}

impl std::str::FromStr for Block {
    type Err = String;

    /// Why `text` is no block, in words a spec's author can act on.
    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or("expected an address and a prefix length")?;
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IP address"))?;
        // Digits, without a leading zero (`/032` would be read as 32 here and perhaps otherwise
        // elsewhere: the NetworkPolicy carries the text as written).
        if prefix.is_empty()
            || prefix.len() > 3
            || !prefix.bytes().all(|b| b.is_ascii_digit())
            || (prefix.len() > 1 && prefix.starts_with('0'))
        {
            return Err(format!("{prefix:?} is not a prefix length"));
        }
        // Three digits at most: it fits, and is compared with the address's bits before it
        // is narrowed.
        let prefix: u16 = prefix
            .parse()
            .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
        let host = if address.is_ipv4() { 32 } else { 128 };
        let prefix = u8::try_from(prefix)
            .ok()
            .filter(|p| *p <= host)
            .ok_or_else(|| format!("/{prefix} is longer than an address of {host} bits"))?;
        let block = Block { address, prefix };
        Ok(block)
    }
}

/// The special-purpose range `addr` falls in, if any (after canonicalisation).
pub fn reserved_range(addr: IpAddr) -> Option<&'static ReservedRange> {
    match canonical(addr) {
        IpAddr::V4(v4) => reserved_v4(v4),
        IpAddr::V6(v6) => reserved_v6(v6),
    }
}

fn reserved_v4(addr: Ipv4Addr) -> Option<&'static ReservedRange> {
    let bits = u32::from(addr);
    V4.iter()
        .find(|(net, len, _)| bits & (u32::MAX << (32 - u32::from(*len))) == *net)
        .map(|(_, _, range)| range)
}

fn reserved_v6(addr: Ipv6Addr) -> Option<&'static ReservedRange> {
    let bits = u128::from(addr);
    let named = V6
        .iter()
        .find(|(net, len, _)| bits & (u128::MAX << (128 - u32::from(*len))) == *net)
        .map(|(_, _, range)| range);
    named.or_else(|| (bits >> 125 != 0b001).then_some(&V6_NOT_GLOBAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_an_address_and_a_prefix_of_digits_no_longer_than_it() {
        let b = |t: &str| t.parse::<Block>();
        let one = b("192.0.2.25/32").unwrap();
        assert_eq!(
            (
                one.address().to_string(),
                one.prefix(),
                one.is_one_address()
            ),
            ("192.0.2.25".into(), 32, true)
        );
        assert!(b("2001:db8::1/128").unwrap().is_one_address());
        assert!(!b("51.68.0.0/16").unwrap().is_one_address());
        assert_eq!(b("0.0.0.0/0").unwrap().prefix(), 0);
        assert_eq!(
            b("192.0.2.25").unwrap_err(),
            "expected an address and a prefix length"
        );
        assert_eq!(b("relay/32").unwrap_err(), "\"relay\" is not an IP address");
        for prefix in ["+8", " 8", "", "0032", "032", "00", "x"] {
            assert_eq!(
                b(&format!("10.0.0.0/{prefix}")).unwrap_err(),
                format!("{prefix:?} is not a prefix length")
            );
        }
        assert_eq!(
            b("10.0.0.0/33").unwrap_err(),
            "/33 is longer than an address of 32 bits"
        );
        assert_eq!(
            b("::/129").unwrap_err(),
            "/129 is longer than an address of 128 bits"
        );
        assert_eq!(
            b("::/999").unwrap_err(),
            "/999 is longer than an address of 128 bits"
        );
    }

    fn check(addr: &str, expected: Option<&str>) {
        let addr: IpAddr = addr.parse().unwrap();
        assert_eq!(reserved_range(addr).map(|r| r.cidr), expected, "{addr}");
    }

    #[test]
    fn ranges() {
        check("10.1.2.3", Some("10.0.0.0/8"));
        check("172.31.255.255", Some("172.16.0.0/12"));
        check("172.32.0.1", None);
        check("100.64.0.1", Some("100.64.0.0/10"));
        check("100.128.0.1", None);
        check("127.0.0.1", Some("127.0.0.0/8"));
        check("169.254.169.254", Some("169.254.0.0/16"));
        check("203.0.113.7", Some("203.0.113.0/24"));
        check("255.255.255.255", Some("240.0.0.0/4"));
        check("51.15.0.1", None);
        check("::1", Some("::1/128"));
        check("fe80::1", Some("fe80::/10"));
        check("fd00::1", Some("fc00::/7"));
        check("2001:db8::1", Some("2001:db8::/32"));
        check("2001:41d0::1", None);
        check("::ffff:10.0.0.1", Some("10.0.0.0/8"));
        check("::ffff:51.15.0.1", None);
        check("::", Some("::/128"));
        check("4000::1", Some("outside 2000::/3"));
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: IpAddr = "::ffff:51.15.0.1".parse().unwrap();
        assert_eq!(canonical(mapped), "51.15.0.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:41d0::1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn sentence() {
        let range = reserved_range("192.168.1.1".parse().unwrap()).unwrap();
        assert_eq!(
            range.to_string(),
            "the private network range 192.168.0.0/16 (RFC 1918)"
        );
    }
}
