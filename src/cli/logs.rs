//! `pons kernel logs [-f] [-n N] [--module ID]`: the daily JSON log files
//! `.runtime/logs/kernel-YYYY-MM-DD.log` printed human-readably, filtered by module, followed.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value};

use super::args::LogsArgs;
use crate::home::Home;

/// How often `--follow` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub fn run(home: &Home, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let dir = home.logs_dir();
    let files = log_files(&dir);
    if files.is_empty() && !args.follow {
        println!("No log files in {}; start the kernel first.", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let module = args.module.as_deref();
    for line in tail(&files, args.lines, module)? {
        println!("{line}");
    }
    if args.follow {
        follow(&dir, files.last().cloned(), module)?;
    }
    Ok(ExitCode::SUCCESS)
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

/// The last `n` lines (after filtering) over the newest files.
fn tail(files: &[PathBuf], n: usize, module: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut out: VecDeque<String> = VecDeque::new();
    for file in files.iter().rev() {
        if out.len() >= n {
            break;
        }
        let f = std::fs::File::open(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let mut last: VecDeque<String> = VecDeque::with_capacity(n.min(4096));
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            if let Some(text) = format_line(&String::from_utf8_lossy(&line), module) {
                if last.len() == n {
                    last.pop_front();
                }
                if n > 0 {
                    last.push_back(text);
                }
            }
        }
        while let Some(l) = last.pop_back() {
            if out.len() >= n {
                break;
            }
            out.push_front(l);
        }
    }
    Ok(out.into())
}

/// Prints new lines as they are appended, moving on to the next day's file when it appears.
fn follow(dir: &Path, mut current: Option<PathBuf>, module: Option<&str>) -> anyhow::Result<()> {
    let mut offset = current
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let mut partial = Vec::new();
    loop {
        if let Some(path) = &current {
            if let Ok(mut f) = std::fs::File::open(path) {
                let len = f.metadata().map_or(0, |m| m.len());
                if len < offset {
                    offset = 0; // truncated
                }
                f.seek(SeekFrom::Start(offset))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                offset += buf.len() as u64;
                partial.extend_from_slice(&buf);
                while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=pos).collect();
                    if let Some(text) = format_line(&String::from_utf8_lossy(&line), module) {
                        println!("{text}");
                    }
                }
            }
        }
        let newest = log_files(dir).pop();
        if newest.is_some() && newest != current {
            current = newest;
            offset = 0;
            partial.clear();
            continue;
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// One log line made human-readable: `2026-01-15 10:30:00.123 INFO  module  message k=v`.
/// `None` when it is filtered out (or blank).
pub fn format_line(raw: &str, module: Option<&str>) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(raw) else {
        // Not JSON (raw output): shown as is, unless filtering by module.
        return module.is_none().then(|| raw.to_string());
    };
    let empty = Map::new();
    let fields = obj
        .get("fields")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let span = obj.get("span").and_then(Value::as_object).unwrap_or(&empty);
    let lookup = |key: &str| -> Option<String> {
        [&obj, fields, span]
            .into_iter()
            .find_map(|m| m.get(key))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    };
    let module_name = lookup("module");
    if let Some(want) = module {
        let about = lookup("moduleId");
        if module_name.as_deref() != Some(want) && about.as_deref() != Some(want) {
            return None;
        }
    }
    let ts = lookup("timestamp")
        .map(|t| short_timestamp(&t))
        .unwrap_or_default();
    let level = lookup("level").unwrap_or_default().to_ascii_uppercase();
    let message = lookup("message")
        .or_else(|| lookup("msg"))
        .unwrap_or_default();
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
        "threadId",
        "threadName",
        "filename",
        "line_number",
    ];
    let mut extra = Vec::new();
    for (k, v) in obj.iter().chain(fields.iter()) {
        if skip.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        let v = v.as_str().map_or_else(
            || v.to_string(),
            |s| s.lines().next().unwrap_or("").to_string(),
        );
        extra.push(format!("{k}={v}"));
    }
    let mut line = format!(
        "{ts} {level:<5} {:<16} {message}",
        module_name.as_deref().unwrap_or("kernel")
    );
    if !extra.is_empty() {
        line.push(' ');
        line.push_str(&extra.join(" "));
    }
    Some(line)
}

/// `2026-01-15T10:30:00.123456Z` → `2026-01-15 10:30:00.123`.
fn short_timestamp(t: &str) -> String {
    let t = t.replacen('T', " ", 1);
    let t = t.trim_end_matches('Z');
    match t.find('.') {
        Some(dot) => {
            let end = (dot + 4).min(t.len());
            t.get(..end).unwrap_or(t).to_string()
        }
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: &str = r#"{"timestamp":"2026-01-15T10:30:00.123456Z","level":"INFO","fields":{"message":"module.spawn","moduleId":"llm","pid":4242},"target":"pons::supervisor"}"#;
    const MODULE: &str = r#"{"timestamp":"2026-01-15T10:30:01.5Z","level":"WARN","message":"hello\nsecond line","module":"llm","n":1}"#;

    #[test]
    fn formats_kernel_and_module_lines() {
        assert_eq!(
            format_line(KERNEL, None).unwrap(),
            "2026-01-15 10:30:00.123 INFO  kernel           module.spawn moduleId=llm pid=4242"
        );
        assert_eq!(
            format_line(MODULE, None).unwrap(),
            "2026-01-15 10:30:01.5 WARN  llm              hello\nsecond line n=1"
        );
        assert_eq!(format_line("raw text\n", None).unwrap(), "raw text");
        assert_eq!(format_line("   ", None), None);
    }

    #[test]
    fn filters_by_module_or_module_id() {
        assert!(format_line(KERNEL, Some("llm")).is_some());
        assert!(format_line(MODULE, Some("llm")).is_some());
        assert!(format_line(MODULE, Some("other")).is_none());
        assert!(format_line("raw", Some("llm")).is_none());
    }

    #[test]
    fn tail_spans_files_and_names_are_checked() {
        assert!(is_daily_log_name("kernel-2026-01-15.log"));
        assert!(!is_daily_log_name("kernel-stdout.log"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kernel-2026-01-14.log"), "a\nb\n").unwrap();
        std::fs::write(dir.path().join("kernel-2026-01-15.log"), "c\nd\n").unwrap();
        std::fs::write(dir.path().join("kernel-stdout.log"), "x\n").unwrap();
        let files = log_files(dir.path());
        assert_eq!(files.len(), 2);
        assert_eq!(tail(&files, 3, None).unwrap(), vec!["b", "c", "d"]);
        assert_eq!(tail(&files, 1, None).unwrap(), vec!["d"]);
        assert!(tail(&files, 0, None).unwrap().is_empty());
    }
}
