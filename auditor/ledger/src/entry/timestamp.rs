//! The ledger's time: milliseconds since the Unix epoch, written `YYYY-MM-DDTHH:MM:SS.mmmZ`,
//! and the one conversion to and from the `time` crate.

use super::EntryError;
use super::encode::push_digits;

/// Milliseconds since the Unix epoch (UTC), encoded as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time, truncated to milliseconds.
    pub fn now() -> Self {
        Self::from_datetime(time::OffsetDateTime::now_utc())
    }

    /// The instant `t`, truncated to milliseconds (toward the epoch): the one conversion from
    /// the `time` crate.
    pub fn from_datetime(t: time::OffsetDateTime) -> Self {
        Self((t.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// This instant in UTC, or `None` outside what the `time` crate represents: the one
    /// conversion to the `time` crate.
    pub fn to_datetime(self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).ok()
    }

    pub(super) fn write(self, out: &mut String) {
        // Times the sequencer stamps and `parse` accepts are within years 0000..9999; one
        // outside (only a hand-made value can be) is written as its raw number, which no
        // reader accepts as a time.
        let Some(t) = self.to_datetime() else {
            out.push_str(&self.0.to_string());
            return;
        };
        if !(0..=9999).contains(&t.year()) {
            out.push_str(&self.0.to_string());
            return;
        }
        push_digits(out, t.year() as u64, 4);
        out.push('-');
        push_digits(out, u64::from(u8::from(t.month())), 2);
        out.push('-');
        push_digits(out, u64::from(t.day()), 2);
        out.push('T');
        push_digits(out, u64::from(t.hour()), 2);
        out.push(':');
        push_digits(out, u64::from(t.minute()), 2);
        out.push(':');
        push_digits(out, u64::from(t.second()), 2);
        out.push('.');
        push_digits(out, u64::from(t.millisecond()), 3);
        out.push('Z');
    }

    /// Parses the canonical form `YYYY-MM-DDTHH:MM:SS.mmmZ` (years 0000..9999).
    pub fn parse(s: &str) -> Result<Self, EntryError> {
        let bad = |why: &str| EntryError::Field {
            field: "time",
            problem: format!("{s:?}: {why} (expected YYYY-MM-DDTHH:MM:SS.mmmZ)"),
        };
        let b = s.as_bytes();
        if b.len() != 24 {
            return Err(bad("wrong length"));
        }
        let shape_ok = b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
        if !shape_ok {
            return Err(bad("malformed"));
        }
        let num = |r: std::ops::Range<usize>| -> i64 {
            b[r].iter().fold(0i64, |a, c| a * 10 + i64::from(c - b'0'))
        };
        let month = u8::try_from(num(5..7))
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .ok_or_else(|| bad("bad month"))?;
        let date = time::Date::from_calendar_date(num(0..4) as i32, month, num(8..10) as u8)
            .map_err(|_| bad("bad date"))?;
        let (h, mi, sec, ms) = (num(11..13), num(14..16), num(17..19), num(20..23));
        let of_day = time::Time::from_hms_milli(h as u8, mi as u8, sec as u8, ms as u16)
            .map_err(|_| bad("bad time of day"))?;
        Ok(Self::from_datetime(
            time::PrimitiveDateTime::new(date, of_day).assume_utc(),
        ))
    }
}

impl std::fmt::Display for Timestamp {
    /// The canonical form `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::with_capacity(24);
        self.write(&mut s);
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_convert_to_and_from_the_time_crate() {
        for ms in [0i64, -1, 1_764_300_000_123, 253_402_300_799_999] {
            let t = Timestamp(ms).to_datetime().unwrap();
            assert_eq!(Timestamp::from_datetime(t), Timestamp(ms));
        }
        // Below a millisecond is dropped, as an entry records.
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_764_300_000_123_999_999).unwrap();
        assert_eq!(Timestamp::from_datetime(t), Timestamp(1_764_300_000_123));
        assert_eq!(Timestamp(i64::MAX).to_datetime(), None);
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0i64, 1, 999, 1_764_300_000_123, 253_402_300_799_999] {
            let mut s = String::new();
            Timestamp(ms).write(&mut s);
            assert_eq!(Timestamp::parse(&s).unwrap(), Timestamp(ms), "{s}");
        }
        assert!(Timestamp::parse("2025-02-30T00:00:00.000Z").is_err());
        assert!(Timestamp::parse("2025-01-01T24:00:00.000Z").is_err());
        for (ms, text) in [
            (1_764_300_000_123, "2025-11-28T03:20:00.123Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        ] {
            assert_eq!(Timestamp(ms).to_string(), text);
            assert_eq!(Timestamp::parse(text).unwrap(), Timestamp(ms));
        }
        // 2100 is not a leap year; 2000 is; month 13 and minute 60 do not exist.
        for bad in [
            "2100-02-29T00:00:00.000Z",
            "2025-13-01T00:00:00.000Z",
            "2025-01-01T00:60:00.000Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        // Beyond year 9999 (only a hand-made value): no reader accepts what is written.
        let far = Timestamp(253_402_300_800_000).to_string();
        assert!(Timestamp::parse(&far).is_err(), "{far}");
    }
}
