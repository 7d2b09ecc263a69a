//! Local wall-clock time for log lines. `localtime_r` (and `mktime`, for `pons logs --since`) are
//! used directly because `time`'s local offset lookup refuses to work once the process has several
//! threads (the kernel always has).

use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down local time with its UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millis: u16,
    /// Offset from UTC in seconds (east positive).
    pub offset_secs: i32,
}

impl LocalTime {
    /// The current local time (UTC if the C library cannot tell).
    pub fn now() -> LocalTime {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix(d.as_secs() as i64, d.subsec_millis() as u16)
    }

    /// The local time of a Unix timestamp.
    pub fn from_unix(secs: i64, millis: u16) -> LocalTime {
        let t: libc::time_t = secs as libc::time_t;
        // SAFETY: `tm` is plain old data, fully written by `localtime_r` on success; both pointers
        // are valid for the duration of the call. `localtime_r` is thread-safe.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
        if !ok {
            return Self::utc(secs, millis);
        }
        LocalTime {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u8,
            day: tm.tm_mday as u8,
            hour: tm.tm_hour as u8,
            minute: tm.tm_min as u8,
            second: tm.tm_sec.min(59) as u8,
            millis,
            offset_secs: tm.tm_gmtoff as i32,
        }
    }

    /// The local time of a Unix time in milliseconds.
    pub fn from_unix_millis(ms: i64) -> LocalTime {
        Self::from_unix(ms.div_euclid(1000), ms.rem_euclid(1000) as u16)
    }

    /// Milliseconds since the Unix epoch of this time (its offset applied).
    pub fn unix_millis(&self) -> i64 {
        let days = days_from_civil(self.year.into(), self.month.into(), self.day.into());
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_secs);
        secs * 1000 + i64::from(self.millis)
    }

    /// The Unix time in seconds of a local wall-clock time (the C library's `mktime`: the zone's
    /// rules decide the offset; out-of-range fields are carried, so day 0 is the previous month's
    /// last day). `None` if the C library cannot represent it (or for 1969-12-31T23:59:59 UTC,
    /// which `mktime` cannot tell from an error).
    pub fn local_to_unix(
        year: i32,
        month: i32,
        day: i32,
        hour: i32,
        minute: i32,
        second: i32,
    ) -> Option<i64> {
        // SAFETY: `tm` is plain old data; `mktime` reads and normalises it in place.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        tm.tm_year = year - 1900;
        tm.tm_mon = month - 1;
        tm.tm_mday = day;
        tm.tm_hour = hour;
        tm.tm_min = minute;
        tm.tm_sec = second;
        tm.tm_isdst = -1;
        let t = unsafe { libc::mktime(&mut tm) };
        (t != -1).then_some(t as i64)
    }

    fn utc(secs: i64, millis: u16) -> LocalTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil-from-days (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        LocalTime {
            year: year as i32,
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
            millis,
            offset_secs: 0,
        }
    }

    /// `YYYY-MM-DD` (the date in the daily file name).
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `2026-01-15T10:30:00.123+01:00`.
    pub fn rfc3339(&self) -> String {
        let sign = if self.offset_secs < 0 { '-' } else { '+' };
        let off = self.offset_secs.unsigned_abs();
        format!(
            "{}T{:02}:{:02}:{:02}.{:03}{sign}{:02}:{:02}",
            self.date(),
            self.hour,
            self.minute,
            self.second,
            self.millis,
            off / 3600,
            off % 3600 / 60
        )
    }

    /// Parses what [`LocalTime::rfc3339`] writes (also `Z` and no fraction); `None` otherwise.
    pub fn parse_rfc3339(s: &str) -> Option<LocalTime> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
        let mut rest = &s[19..];
        let mut millis = 0u16;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            let ms: String = frac[..digits]
                .chars()
                .chain("000".chars())
                .take(3)
                .collect();
            millis = ms.parse().ok()?;
            rest = &frac[digits..];
        }
        let offset_secs = if rest == "Z" {
            0
        } else {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h: i32 = rest.get(1..3)?.parse().ok()?;
            let m: i32 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        };
        Some(LocalTime {
            year: num(0..4)? as i32,
            month: num(5..7)? as u8,
            day: num(8..10)? as u8,
            hour: num(11..13)? as u8,
            minute: num(14..16)? as u8,
            second: num(17..19)? as u8,
            millis,
            offset_secs,
        })
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_fallback_matches_known_dates() {
        let t = LocalTime::utc(1_768_473_000, 5); // 2026-01-15T10:30:00Z
        assert_eq!(t.rfc3339(), "2026-01-15T10:30:00.005+00:00");
        assert_eq!(LocalTime::utc(0, 0).date(), "1970-01-01");
        assert_eq!(LocalTime::utc(951_782_400, 0).date(), "2000-02-29");
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = LocalTime {
            year: 2026,
            month: 3,
            day: 9,
            hour: 7,
            minute: 5,
            second: 59,
            millis: 42,
            offset_secs: -(5 * 3600 + 30 * 60),
        };
        let s = t.rfc3339();
        assert_eq!(s, "2026-03-09T07:05:59.042-05:30");
        assert_eq!(LocalTime::parse_rfc3339(&s), Some(t));
        let z = LocalTime::parse_rfc3339("2026-03-09T07:05:59Z").unwrap();
        assert_eq!((z.millis, z.offset_secs), (0, 0));
        assert_eq!(LocalTime::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn now_is_consistent_with_its_offset() {
        let t = LocalTime::now();
        assert!(t.year >= 2024 && (1..=12).contains(&t.month) && (1..=31).contains(&t.day));
        let ms = t.unix_millis();
        assert_eq!(LocalTime::from_unix_millis(ms), t);
        let wall = LocalTime::local_to_unix(
            t.year,
            t.month.into(),
            t.day.into(),
            t.hour.into(),
            t.minute.into(),
            t.second.into(),
        );
        assert_eq!(wall, Some(ms.div_euclid(1000)));
    }

    #[test]
    fn unix_millis_of_known_times() {
        let t = LocalTime::parse_rfc3339("2026-01-15T10:30:00.005Z").unwrap();
        assert_eq!(t.unix_millis(), 1_768_473_000_005);
        let t = LocalTime::parse_rfc3339("2026-01-15T11:30:00.005+01:00").unwrap();
        assert_eq!(t.unix_millis(), 1_768_473_000_005);
        let t = LocalTime::parse_rfc3339("2000-02-29T00:00:00Z").unwrap();
        assert_eq!(t.unix_millis(), 951_782_400_000);
        assert_eq!(LocalTime::utc(-1, 999).unix_millis(), -1);
    }
}
