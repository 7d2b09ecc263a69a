//! The log pane's reader: the lines of one module in the kernel's daily JSON log files
//! (`.runtime/logs/kernel-YYYY-MM-DD.log`) — its own lines and the kernel's lines about it — as
//! short human lines (`time LEVEL source message k=v…`). Opening reads only the end of the newest
//! file; each poll reads what was appended since, and moves on to the next day's file when it
//! appears.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// How much of the newest file opening reads (enough for the pane, cheap on a large log).
const OPEN_TAIL_BYTES: u64 = 256 << 10;
/// At most this much is read per poll (a burst is caught up over a few polls).
const POLL_MAX_BYTES: u64 = 4 << 20;

pub struct LogTail {
    dir: PathBuf,
    module: String,
    file: Option<PathBuf>,
    offset: u64,
    partial: Vec<u8>,
    /// Reading starts in the middle of a line: drop bytes up to the first newline.
    mid_line: bool,
}

impl LogTail {
    /// Follows `module` in the logs of `dir`; returns the reader and the last lines already there.
    pub fn open(dir: &Path, module: &str) -> (LogTail, Vec<String>) {
        let mut t = LogTail {
            dir: dir.to_path_buf(),
            module: module.to_string(),
            file: log_files(dir).pop(),
            offset: 0,
            partial: Vec::new(),
            mid_line: false,
        };
        let len = t
            .file
            .as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len());
        t.offset = len.saturating_sub(OPEN_TAIL_BYTES);
        t.mid_line = t.offset > 0;
        let lines = t.poll();
        (t, lines)
    }

    /// New formatted lines of the module since the last poll (one entry per screen line).
    pub fn poll(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(path) = self.file.clone() {
            self.read_new(&path, &mut out);
        }
        let newest = log_files(&self.dir).pop();
        if newest.is_some() && newest != self.file {
            if let Some(path) = &self.file {
                // What the old day's file got before the switch.
                self.read_new(&path.clone(), &mut out);
            }
            self.file = newest;
            self.offset = 0;
            self.partial.clear();
            self.mid_line = false;
            if let Some(path) = self.file.clone() {
                self.read_new(&path, &mut out);
            }
        }
        out
    }

    fn read_new(&mut self, path: &Path, out: &mut Vec<String>) {
        let Ok(mut f) = std::fs::File::open(path) else {
            return;
        };
        let len = f.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            // Truncated (or replaced): start over.
            self.offset = 0;
            self.partial.clear();
            self.mid_line = false;
        }
        if len == self.offset || f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        let Ok(n) = f.take(POLL_MAX_BYTES).read_to_end(&mut buf) else {
            return;
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        if self.mid_line {
            let Some(nl) = self.partial.iter().position(|b| *b == b'\n') else {
                self.partial.clear();
                return;
            };
            self.partial.drain(..=nl);
            self.mid_line = false;
        }
        let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=last_nl).collect();
        for raw in complete.split(|b| *b == b'\n') {
            if let Some(text) = format_line(&String::from_utf8_lossy(raw), &self.module) {
                out.push(text);
            }
        }
    }
}

/// `kernel-YYYY-MM-DD.log` files of `dir`, oldest first.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| is_daily_log_name(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn is_daily_log_name(name: &str) -> bool {
    let Some(date) = name
        .strip_prefix("kernel-")
        .and_then(|n| n.strip_suffix(".log"))
    else {
        return false;
    };
    date.len() == 10
        && date.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        })
}

/// One JSON log line of (or about) `module` as `10:30:00.123 WARN  source  message k=v …` (the
/// first line of each text); `None` for other modules' lines, the kernel's other lines and text
/// that is not a JSON object.
fn format_line(raw: &str, module: &str) -> Option<String> {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(raw.trim()) else {
        return None;
    };
    let empty = Map::new();
    let nested = |key: &str| obj.get(key).and_then(Value::as_object).unwrap_or(&empty);
    let (fields, span) = (nested("fields"), nested("span"));
    let lookup = |key: &str| -> Option<String> {
        [&obj, fields, span]
            .into_iter()
            .find_map(|m| m.get(key))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    };
    let source = lookup("module");
    if source.as_deref() != Some(module) && lookup("moduleId").as_deref() != Some(module) {
        return None;
    }
    let first = |s: String| s.lines().next().unwrap_or("").to_string();
    // `2026-01-15T10:30:00.123456Z` (or with an offset): the time of day to the millisecond.
    let time: String = lookup("timestamp")
        .and_then(|t| {
            let (_, t) = t.split_once('T')?;
            Some(
                t.chars()
                    .take_while(|c| c.is_ascii_digit() || *c == ':' || *c == '.')
                    .take(12)
                    .collect(),
            )
        })
        .unwrap_or_default();
    let level = lookup("level").unwrap_or_default().to_ascii_uppercase();
    let message = first(
        lookup("message")
            .or_else(|| lookup("msg"))
            .unwrap_or_default(),
    );
    let skip = [
        "timestamp",
        "level",
        "fields",
        "span",
        "spans",
        "target",
        "message",
        "msg",
        "module",
        "moduleId",
        "threadId",
        "threadName",
        "filename",
        "line_number",
    ];
    let mut line = format!(
        "{time} {level:<5} {:<8} {message}",
        source.as_deref().unwrap_or("kernel")
    );
    for (k, v) in obj.iter().chain(fields.iter()) {
        if skip.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        let v = v
            .as_str()
            .map_or_else(|| v.to_string(), |s| first(s.to_string()));
        line.push_str(&format!(" {k}={v}"));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn line(module: &str, msg: &str) -> String {
        format!(
            "{{\"timestamp\":\"2026-01-15T10:30:00.000Z\",\"level\":\"INFO\",\"message\":\"{msg}\",\"module\":\"{module}\"}}\n"
        )
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn follows_one_module_across_appends_partial_lines_and_days() {
        let dir = tempfile::tempdir().unwrap();
        let day1 = dir.path().join("kernel-2026-01-15.log");
        append(&day1, &(line("a", "old a") + &line("b", "old b")));
        let (mut t, first) = LogTail::open(dir.path(), "a");
        assert_eq!(first.len(), 1);
        assert_eq!(first, ["10:30:00.000 INFO  a        old a"]);
        assert!(t.poll().is_empty());
        // A line written in two parts is read once whole.
        let l = line("a", "new a");
        let (head, tail) = l.split_at(20);
        append(&day1, &(line("b", "new b") + head));
        assert!(t.poll().is_empty());
        append(&day1, tail);
        let got = t.poll();
        assert_eq!(got.len(), 1);
        assert!(got[0].ends_with("new a"));
        // The next day's file: the rest of the old one first, then the new one.
        append(&day1, &line("a", "late a"));
        let day2 = dir.path().join("kernel-2026-01-16.log");
        append(&day2, &line("a", "day two"));
        let got = t.poll();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].ends_with("late a") && got[1].ends_with("day two"));
    }

    #[test]
    fn opening_a_large_log_reads_only_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel-2026-01-15.log");
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&line("a", &format!("n{i}")));
        }
        append(&path, &text);
        assert!(text.len() as u64 > OPEN_TAIL_BYTES);
        let (_, first) = LogTail::open(dir.path(), "a");
        assert!(first.len() < 20_000 && first.len() > 100);
        assert!(first.last().unwrap().ends_with("n19999"));
        // Every line shown is whole.
        assert!(
            first
                .iter()
                .all(|l| l.starts_with("10:30:00.000 INFO  a        n")),
            "{:?}",
            &first[..2]
        );
    }

    #[test]
    fn kernel_lines_about_the_module_count_and_others_do_not() {
        let kernel = r#"{"timestamp":"2026-01-15T10:30:00.123456Z","level":"WARN","fields":{"message":"Module exited unexpectedly\nsecond","moduleId":"a","exitCode":1},"target":"pons"}"#;
        assert_eq!(
            format_line(kernel, "a").unwrap(),
            "10:30:00.123 WARN  kernel   Module exited unexpectedly exitCode=1"
        );
        assert_eq!(format_line(kernel, "b"), None);
        assert_eq!(format_line("plain text", "a"), None);
        let other =
            r#"{"timestamp":"2026-01-15T10:30:00.5+01:00","level":"info","msg":"hi","module":"a"}"#;
        assert_eq!(
            format_line(other, "a").unwrap(),
            "10:30:00.5 INFO  a        hi"
        );
        assert!(is_daily_log_name("kernel-2026-01-15.log"));
        assert!(!is_daily_log_name("kernel-stdout.log"));
    }

    #[test]
    fn no_log_directory_is_no_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (mut t, first) = LogTail::open(&dir.path().join("missing"), "a");
        assert!(first.is_empty() && t.poll().is_empty());
    }
}
