//! Kubernetes resource quantities (`500m`, `1.5`, `512Mi`, `4G`), the one parser both the
//! catalog's checks and the operator's capacity report use: CPU as millicores, memory and
//! storage as bytes, with the suffixes the API server accepts (decimal `k M G T P E`, binary
//! `Ki Mi Gi Ti Pi Ei`, and `m` for thousandths). Exponent forms (`1e3`) are refused: nothing
//! here writes them.

/// Thousandths of a unit (`500m` = 500, `1.5` = 1500, `2k` = 2,000,000), or `None` when `s` is
/// not a quantity or overflows.
pub fn milli(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // The number in thousandths, exactly, before the suffix scales it.
    let frac3 = frac.get(..frac.len().min(3)).unwrap_or("");
    let rest = frac.get(3..).unwrap_or("");
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut thousandths = whole
        .checked_mul(1000)?
        .checked_add(format!("{frac3:0<3}").parse::<u64>().ok()?)?;
    let scale: u64 = match suffix {
        "" => 1,
        "m" => return (rest.bytes().all(|b| b == b'0')).then_some(thousandths / 1000),
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    // Digits beyond the thousandths only count once scaled (`1.0005k` = 1000.5).
    if !rest.is_empty() {
        let extra: u64 = rest.parse().ok()?;
        let digits = u32::try_from(rest.len()).ok()?;
        let part = extra.checked_mul(scale)?.checked_mul(1000)? / 10u64.checked_pow(digits + 3)?;
        thousandths = thousandths.checked_mul(scale)?.checked_add(part)?;
        return Some(thousandths);
    }
    thousandths.checked_mul(scale)
}

/// CPU as millicores (`500m` = 500, `2` = 2000).
pub fn millicores(s: &str) -> Option<u64> {
    milli(s)
}

/// Memory or storage as bytes (`512Mi`, `4G`); a fraction of a byte is refused.
pub fn bytes(s: &str) -> Option<u64> {
    let m = milli(s)?;
    (m % 1000 == 0).then_some(m / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_the_api_server_reads_them() {
        assert_eq!(millicores("500m"), Some(500));
        assert_eq!(millicores("1.5"), Some(1500));
        assert_eq!(millicores("2"), Some(2000));
        assert_eq!(millicores(".5"), Some(500));
        assert_eq!(millicores("2k"), Some(2_000_000));
        assert_eq!(millicores("0.1234"), Some(123));
        assert_eq!(millicores("m"), None);
        assert_eq!(millicores("1x"), None);
        assert_eq!(millicores("-1"), None);
        assert_eq!(bytes("512Mi"), Some(512 << 20));
        assert_eq!(bytes("4Gi"), Some(4 << 30));
        assert_eq!(bytes("8150Mi"), Some(8150 << 20));
        assert_eq!(bytes("4G"), Some(4_000_000_000));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("5Ti"), Some(5 << 40));
        assert_eq!(bytes("Gi"), None);
        assert_eq!(bytes("100m"), None);
        assert_eq!(bytes("99999999999Ei"), None);
    }
}
