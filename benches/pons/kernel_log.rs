//! Reading the kernel's JSON log (`<home>/.runtime/logs/kernel-*.log`) from outside, as it is
//! written: the `module.ready` lines and their times, which are when the kernel handled each
//! module's `ready` (the end of the start-up figures).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Follows the log files of a home from where they ended when it was created.
pub struct LogWatch {
    dir: PathBuf,
    /// Per file: bytes consumed, and an incomplete last line.
    files: BTreeMap<PathBuf, (u64, Vec<u8>)>,
    /// moduleId → time (Unix ms) of its latest `module.ready` line.
    pub ready: BTreeMap<String, i64>,
}

impl LogWatch {
    /// Starts after what the logs of `home` hold now (older runs of the same home are skipped).
    pub fn new(home: &Path) -> LogWatch {
        let mut w = LogWatch {
            dir: home.join(".runtime/logs"),
            files: BTreeMap::new(),
            ready: BTreeMap::new(),
        };
        for path in w.paths() {
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            w.files.insert(path, (len, Vec::new()));
        }
        w
    }

    fn paths(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("kernel-") && n.ends_with(".log"))
            })
            .collect()
    }

    /// Reads what was appended since the last poll.
    pub fn poll(&mut self) {
        for path in self.paths() {
            let (offset, partial) = self.files.entry(path.clone()).or_default();
            let Ok(mut f) = std::fs::File::open(&path) else {
                continue;
            };
            if f.seek(SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            let mut fresh = Vec::new();
            let Ok(n) = f.read_to_end(&mut fresh) else {
                continue;
            };
            *offset += n as u64;
            partial.extend_from_slice(&fresh);
            let whole = partial
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let lines: Vec<u8> = partial.drain(..whole).collect();
            for line in lines.split(|&b| b == b'\n') {
                let Ok(v) = serde_json::from_slice::<Value>(line) else {
                    continue;
                };
                if v["message"] == "module.ready" {
                    let (Some(id), Some(t)) = (
                        v["moduleId"].as_str(),
                        v["timestamp"].as_str().and_then(unix_ms),
                    ) else {
                        continue;
                    };
                    self.ready.insert(id.to_string(), t);
                }
            }
        }
    }

    /// Waits until `n` modules have a `module.ready` line; returns the latest of their times
    /// (Unix ms), or `None` after `timeout`.
    pub fn wait_ready(&mut self, n: usize, timeout: Duration) -> Option<i64> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if self.ready.len() >= n {
                return self.ready.values().copied().max();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// `2026-01-15T10:30:00.123+01:00` (or `…Z`, with or without a fraction) → Unix milliseconds.
pub fn unix_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b.get(10) != Some(&b'T') {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i)?;
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        millis = digits.parse().ok()?;
    }
    let offset_secs = match b.get(i)? {
        b'Z' => 0,
        sign @ (b'+' | b'-') => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = oh * 3600 + om * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
