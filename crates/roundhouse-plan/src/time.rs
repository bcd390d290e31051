//! Wall-clock instants as plain data. The planner never reads a clock: callers pass `now` in,
//! which keeps planning deterministic and lets tests pin time.

use std::fmt;

/// Milliseconds since the Unix epoch (UTC). Serialised as RFC 3339 (`2026-11-25T10:03:00Z`,
/// with `.mmm` when the milliseconds are not zero) so JSON output and the event history are
/// readable without tooling.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

/// Text that is not an RFC 3339 UTC timestamp of the form this crate writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.mmm]Z): {0:?}")]
pub struct TimestampParseError(pub String);

impl Timestamp {
    /// The instant `millis` milliseconds after the epoch.
    pub const fn from_unix_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// This instant plus `millis` (saturating, so arithmetic on untrusted values cannot panic).
    pub fn plus_millis(self, millis: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(millis))
    }

    /// Milliseconds from `earlier` to `self`; negative if `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.f]Z`. Offsets other than `Z` are rejected: everything this
    /// project writes is UTC, and accepting offsets would invite ambiguity in stored history.
    pub fn parse(s: &str) -> Result<Timestamp, TimestampParseError> {
        parse_rfc3339(s).ok_or_else(|| TimestampParseError(s.to_string()))
    }
}

fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || !matches!(*b.last()?, b'Z' | b'z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = &s[19..s.len() - 1];
    let millis = if frac.is_empty() {
        0
    } else {
        let digits = frac.strip_prefix('.')?;
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // Only milliseconds are kept; finer digits are truncated.
        let mut ms = 0i64;
        for (i, c) in digits.bytes().take(3).enumerate() {
            ms += i64::from(c - b'0') * [100, 10, 1][i];
        }
        ms
    };
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(Timestamp(
        ((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + millis,
    ))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's proleptic-Gregorian day arithmetic ("chrono-Compatible Low-Level Date
// Algorithms"); exact for every i64 day count we can meet.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400_000);
        let rem = self.0.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let (h, mi, s, ms) = (
            rem / 3_600_000,
            rem / 60_000 % 60,
            rem / 1000 % 60,
            rem % 1000,
        );
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}")?;
        if ms != 0 {
            write!(f, ".{ms:03}")?;
        }
        f.write_str("Z")
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A duration in milliseconds as people read it in a table: `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
pub fn human_duration(millis: i64) -> String {
    let secs = millis.max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        s => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        // `date -u -d @0` and `date -u -d @1764064980` (GNU coreutils) give these.
        assert_eq!(
            Timestamp::from_unix_millis(0).to_string(),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(1_764_064_980_000).to_string(),
            "2025-11-25T10:03:00Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(951_782_400_123).to_string(),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(-1000).to_string(),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2025-11-25 10:03:00Z",
            "2025-11-25T10:03:00+01:00",
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-11-25T24:00:00Z",
            "2025-11-25T10:03:00.Z",
            "２０２5-11-25T10:03:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            Timestamp::parse("2025-11-25T10:03:00.5Z")
                .unwrap()
                .unix_millis(),
            1_764_064_980_500
        );
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(-5), "0s");
        assert_eq!(human_duration(59_999), "59s");
        assert_eq!(human_duration(725_000), "12m 5s");
        assert_eq!(human_duration(12_000_000), "3h 20m");
        assert_eq!(human_duration(187_200_000), "2d 4h");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(ms in -62_135_596_800_000i64..253_402_300_799_999i64) {
            let t = Timestamp::from_unix_millis(ms);
            prop_assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        }
    }
}
