//! `--since T` of `pons logs`: an ISO 8601 time (local when it has no offset), a time ago
//! (`30s`, `5m`, `2h`, `1d`), `today` or `yesterday` (local midnight), as Unix milliseconds.

use crate::logging::LocalTime;

/// The accepted forms, as an error message lists them.
pub const FORMS: &str = "an ISO 8601 time (2026-01-15T10:30:00, 2026-01-15T10:30:00.250+01:00, \
                         2026-01-15 10:30, 2026-01-15), a time ago (30s, 5m, 2h, 1d), today or \
                         yesterday";

/// The Unix time in milliseconds that `text` names, `now_ms` being now; the error is the sentence
/// to show.
pub fn parse(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    let parsed = match t {
        "today" => midnight(now_ms, 0),
        "yesterday" => midnight(now_ms, 1),
        _ => ago(t).map(|ms| now_ms - ms).or_else(|| iso(t)),
    };
    parsed.ok_or_else(|| format!("--since `{text}` is not a time: use {FORMS}"))
}

/// Local midnight `days_back` days before the day of `now_ms`.
fn midnight(now_ms: i64, days_back: i32) -> Option<i64> {
    let now = LocalTime::from_unix_millis(now_ms);
    let day = i32::from(now.day) - days_back;
    LocalTime::local_to_unix(now.year, now.month.into(), day, 0, 0, 0).map(|s| s * 1000)
}

/// `30s`, `5m`, `2h`, `1d` as milliseconds.
fn ago(t: &str) -> Option<i64> {
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = t.split_at(split);
    let unit_ms: i64 = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    digits.parse::<i64>().ok()?.checked_mul(unit_ms)
}

/// `YYYY-MM-DD`, optionally followed by `T` (or a space) `HH:MM[:SS[.fff…]]` and `Z` or `±HH:MM`.
fn iso(t: &str) -> Option<i64> {
    let date = t.get(..10)?;
    let b = date.as_bytes();
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i32 = digits(&date[..4])?;
    let month: u8 = digits(&date[5..7])?;
    let day: u8 = digits(&date[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let rest = &t[10..];
    if rest.is_empty() {
        return LocalTime::local_to_unix(year, month.into(), day.into(), 0, 0, 0).map(|s| s * 1000);
    }
    let rest = rest.strip_prefix(['T', ' '])?;
    let hour: u8 = digits(rest.get(..2)?)?;
    let minute: u8 = digits(rest.get(3..5)?)?;
    if rest.as_bytes()[2] != b':' || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &rest[5..];
    let mut second = 0u8;
    let mut millis = 0u16;
    if let Some(s) = rest.strip_prefix(':') {
        second = digits(s.get(..2)?)?;
        if second > 59 {
            return None;
        }
        rest = &s[2..];
        if let Some(frac) = rest.strip_prefix(['.', ',']) {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            let ms: String = frac[..n].chars().chain("00".chars()).take(3).collect();
            millis = ms.parse().ok()?;
            rest = &frac[n..];
        }
    }
    let offset_secs = match rest {
        "" => {
            let secs = LocalTime::local_to_unix(
                year,
                month.into(),
                day.into(),
                hour.into(),
                minute.into(),
                second.into(),
            )?;
            return Some(secs * 1000 + i64::from(millis));
        }
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = match rest.len() {
                6 if rest.as_bytes()[3] == b':' => (&rest[1..3], &rest[4..6]),
                5 => (&rest[1..3], &rest[3..5]),
                _ => return None,
            };
            let (h, m): (i32, i32) = (digits(h)?, digits(m)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let t = LocalTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        millis,
        offset_secs,
    };
    Some(t.unix_millis())
}

/// ASCII digits only (no sign, no spaces) as a number.
fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_768_473_000_000; // 2026-01-15T10:30:00Z

    #[test]
    fn durations_ago() {
        assert_eq!(parse("30s", NOW), Ok(NOW - 30_000));
        assert_eq!(parse("5m", NOW), Ok(NOW - 300_000));
        assert_eq!(parse(" 2h ", NOW), Ok(NOW - 7_200_000));
        assert_eq!(parse("1d", NOW), Ok(NOW - 86_400_000));
        assert_eq!(parse("0s", NOW), Ok(NOW));
    }

    #[test]
    fn iso_with_an_offset_is_exact() {
        assert_eq!(parse("2026-01-15T10:30:00Z", NOW), Ok(NOW));
        assert_eq!(parse("2026-01-15T11:30:00+01:00", NOW), Ok(NOW));
        assert_eq!(parse("2026-01-15T11:30:00+0100", NOW), Ok(NOW));
        assert_eq!(parse("2026-01-15 05:00:00-05:30", NOW), Ok(NOW));
        assert_eq!(parse("2026-01-15T10:30:00.25Z", NOW), Ok(NOW + 250));
        assert_eq!(parse("2026-01-15T10:30:00,123456Z", NOW), Ok(NOW + 123));
        assert_eq!(parse("2026-01-15T10:30Z", NOW), Ok(NOW));
    }

    #[test]
    fn iso_without_an_offset_is_local() {
        let local = |s: &str| LocalTime::from_unix_millis(parse(s, NOW).unwrap());
        let t = local("2026-01-15T10:30:05.5");
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis),
            (2026, 1, 15, 10, 30, 5, 500)
        );
        let t = local("2026-02-28");
        assert_eq!((t.month, t.day, t.hour, t.minute), (2, 28, 0, 0));
        assert_eq!(local("2024-02-29").day, 29);
    }

    #[test]
    fn today_and_yesterday_are_local_midnights() {
        let today = parse("today", NOW).unwrap();
        let yesterday = parse("yesterday", NOW).unwrap();
        assert!(today <= NOW && NOW - today < 86_400_000);
        let t = LocalTime::from_unix_millis(today);
        assert_eq!((t.hour, t.minute, t.second, t.millis), (0, 0, 0, 0));
        // 23 to 25 hours apart (daylight saving time).
        assert!((23 * 3_600_000..=25 * 3_600_000).contains(&(today - yesterday)));
        assert_eq!(LocalTime::from_unix_millis(yesterday).hour, 0);
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_forms() {
        for bad in [
            "",
            "yesterdy",
            "5",
            "5x",
            "-5m",
            "m",
            "10:30",
            "2026-13-01",
            "2026-02-29",
            "2026-01-32",
            "2026-1-15",
            "2026-01-15T25:00",
            "2026-01-15T10:60",
            "2026-01-15T10:30:61",
            "2026-01-15T10:30:00.",
            "2026-01-15T10:30:00+1",
            "2026-01-15T10:30:00 UTC",
            "2026-01-15x",
            "99999999999999999999d",
        ] {
            let e = parse(bad, NOW).expect_err(bad);
            assert!(
                e.starts_with(&format!(
                    "--since `{bad}` is not a time: use an ISO 8601 time"
                )),
                "{e}"
            );
            assert!(e.ends_with("today or yesterday"), "{e}");
        }
    }
}
