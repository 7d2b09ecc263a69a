//! Which lines of the daily log files `pons logs` shows: module ids (`kernel`: the kernel's own
//! lines), a minimum level and a start time; and the module ids a home knows.

use std::collections::BTreeSet;
use std::path::Path;

use memchr::memmem;
use serde_json::Value;
use tracing::Level;

use crate::logging::format::{record_from_json, Record};
use crate::logging::{parse_level, LocalTime};

/// The id that selects the kernel's own lines (those without a `module`).
pub const KERNEL: &str = "kernel";

/// A line chosen for output.
#[derive(Debug, Clone, PartialEq)]
pub enum Selected {
    /// A record of the file, with its line as written (trimmed).
    Record { record: Record, raw: String },
    /// A line that is not a record (shown as is, only when nothing is filtered).
    Text(String),
}

/// What to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Module ids; empty: every line.
    pub ids: Vec<String>,
    /// This level and more severe.
    pub min_level: Option<Level>,
    /// Unix milliseconds; records before are dropped.
    pub since_ms: Option<i64>,
    /// Lines that are not records are kept (when nothing is filtered and the output is not JSON).
    pub keep_text: bool,
}

impl Filter {
    /// Whether anything is filtered.
    pub fn filters(&self) -> bool {
        !self.ids.is_empty() || self.min_level.is_some() || self.since_ms.is_some()
    }

    /// The line, if it is kept.
    pub fn select(&self, raw: &[u8]) -> Option<Selected> {
        if !self.might_match(raw) {
            return None;
        }
        let text = String::from_utf8_lossy(raw);
        let line = text.trim();
        if line.is_empty() {
            return None;
        }
        match record_from_json(line) {
            Some(record) => self.matches(&record).then(|| Selected::Record {
                record,
                raw: line.to_string(),
            }),
            None => (self.keep_text && !self.filters()).then(|| Selected::Text(line.to_string())),
        }
    }

    /// Whether a record passes.
    pub fn matches(&self, r: &Record) -> bool {
        self.min_level.is_none_or(|min| r.level <= min)
            && self.since_ms.is_none_or(|t| r.time.unix_millis() >= t)
            && (self.ids.is_empty() || self.ids.iter().any(|id| about(r, id)))
    }

    /// Cheap tests before parsing (a day of logs is a million lines): a line of a selected module
    /// contains its id as written in JSON (ids with characters JSON escapes, and `kernel`, are not
    /// pre-tested); the kernel writes `{"timestamp":"…","level":"…"` first, so time and level
    /// are read from there when they are.
    fn might_match(&self, raw: &[u8]) -> bool {
        let ids = self.ids.is_empty()
            || self.ids.iter().any(|id| {
                id == KERNEL
                    || id.chars().any(|c| c == '"' || c == '\\' || c.is_control())
                    || memmem::find(raw, id.as_bytes()).is_some()
            });
        if !ids {
            return false;
        }
        if self.since_ms.is_none() && self.min_level.is_none() {
            return true;
        }
        let Some((time, level)) = leading_time_and_level(raw) else {
            return true;
        };
        let early = self
            .since_ms
            .zip(LocalTime::parse_rfc3339(time))
            .is_some_and(|(since, t)| t.unix_millis() < since);
        let quiet = self
            .min_level
            .zip(level.and_then(parse_level))
            .is_some_and(|(min, l)| l > min);
        !early && !quiet
    }
}

/// The `timestamp` and `level` strings of a line that starts as the kernel writes it.
fn leading_time_and_level(raw: &[u8]) -> Option<(&str, Option<&str>)> {
    let rest = raw.strip_prefix(br#"{"timestamp":""#)?;
    let end = memchr::memchr(b'"', rest)?;
    let time = std::str::from_utf8(&rest[..end]).ok()?;
    let level = rest[end..]
        .strip_prefix(br#"","level":""#)
        .and_then(|r| Some(&r[..memchr::memchr(b'"', r)?]))
        .and_then(|l| std::str::from_utf8(l).ok());
    Some((time, level))
}

/// Whether a record is of or about module `id`: its `module`, or its `moduleId` field (a kernel
/// line about the module); `kernel` is every line without a `module`.
pub fn about(r: &Record, id: &str) -> bool {
    r.module.as_deref() == Some(id)
        || module_id(r) == Some(id)
        || (id == KERNEL && r.module.is_none())
}

fn module_id(r: &Record) -> Option<&str> {
    r.fields
        .iter()
        .find(|(k, _)| k == "moduleId")
        .and_then(|(_, v)| v.as_str())
}

/// The module ids a record names (`module`, `moduleId`).
pub fn ids_named(r: &Record) -> impl Iterator<Item = &str> {
    r.module.as_deref().into_iter().chain(module_id(r))
}

/// The ids of the modules in `modules_dir`: each `module.json`'s `id`, or the directory name when
/// it has none that can be read.
pub fn installed_ids(modules_dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(modules_dir) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| {
            std::fs::read(e.path().join("module.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("id")?.as_str().map(str::to_string))
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn line(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    fn kernel_about(id: &str) -> Vec<u8> {
        line(
            json!({"timestamp": "2026-01-15T10:30:00.000Z", "level": "info",
                    "message": "module.spawn", "moduleId": id}),
        )
    }

    fn of_module(id: &str, level: &str, ts: &str) -> Vec<u8> {
        line(json!({"timestamp": ts, "level": level, "message": "hi", "module": id}))
    }

    #[test]
    fn ids_select_their_module_and_kernel_lines_about_it() {
        let f = Filter {
            ids: vec!["a".into()],
            ..Filter::default()
        };
        let ts = "2026-01-15T10:30:00.000Z";
        assert!(f.select(&of_module("a", "info", ts)).is_some());
        assert!(f.select(&kernel_about("a")).is_some());
        assert!(f.select(&of_module("b", "info", ts)).is_none());
        assert!(f.select(&of_module("ab", "info", ts)).is_none());
        assert!(f.select(b"not json a").is_none());
        let k = Filter {
            ids: vec![KERNEL.into()],
            ..Filter::default()
        };
        assert!(k.select(&kernel_about("a")).is_some());
        assert!(k.select(&of_module("a", "info", ts)).is_none());
    }

    #[test]
    fn level_and_since() {
        let f = Filter {
            min_level: Some(Level::WARN),
            since_ms: Some(1_768_473_000_000),
            ..Filter::default()
        };
        assert!(f
            .select(&of_module("a", "warn", "2026-01-15T10:30:00.000Z"))
            .is_some());
        assert!(f
            .select(&of_module("a", "error", "2026-01-15T11:30:00.000+01:00"))
            .is_some());
        assert!(f
            .select(&of_module("a", "info", "2026-01-15T10:30:00.000Z"))
            .is_none());
        assert!(f
            .select(&of_module("a", "error", "2026-01-15T11:29:59.999+01:00"))
            .is_none());
    }

    #[test]
    fn the_quick_tests_agree_with_the_parsed_record() {
        let f = Filter {
            min_level: Some(Level::WARN),
            since_ms: Some(1_768_473_000_000),
            ..Filter::default()
        };
        let early = of_module("a", "error", "2026-01-15T10:29:59.999Z");
        let quiet = of_module("a", "info", "2026-01-15T10:30:00.000Z");
        let kept = of_module("a", "warn", "2026-01-15T10:30:00.000Z");
        assert!(early.starts_with(br#"{"timestamp":"2026-01-15T10:29:59.999Z","level":"error""#));
        assert!(!f.might_match(&early) && !f.might_match(&quiet) && f.might_match(&kept));
        // Another key order is parsed, not guessed.
        let other = br#"{"level":"info","timestamp":"2026-01-15T10:30:00.000Z","message":"m"}"#;
        assert!(f.might_match(other) && f.select(other).is_none());
        assert_eq!(
            leading_time_and_level(br#"{"timestamp":"t","level":"x"}"#),
            Some(("t", Some("x")))
        );
        assert_eq!(
            leading_time_and_level(br#"{"timestamp":"t","message":"x"}"#),
            Some(("t", None))
        );
        assert_eq!(leading_time_and_level(br#"{"timestamp":"t"#), None);
    }

    #[test]
    fn text_lines_only_when_nothing_is_filtered() {
        let keep = Filter {
            keep_text: true,
            ..Filter::default()
        };
        assert_eq!(keep.select(b" raw \n"), Some(Selected::Text("raw".into())));
        assert_eq!(keep.select(b"  \n"), None);
        assert_eq!(Filter::default().select(b"raw"), None);
        let level = Filter {
            keep_text: true,
            min_level: Some(Level::ERROR),
            ..Filter::default()
        };
        assert_eq!(level.select(b"raw"), None);
    }

    #[test]
    fn installed_ids_read_module_json() {
        let dir = tempfile::tempdir().unwrap();
        for (d, body) in [
            ("one", r#"{"id":"first"}"#),
            ("two", "not json"),
            ("three", r#"{"id":""}"#),
        ] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
            std::fs::write(dir.path().join(d).join("module.json"), body).unwrap();
        }
        std::fs::write(dir.path().join("file"), "").unwrap();
        let ids: Vec<String> = installed_ids(dir.path()).into_iter().collect();
        assert_eq!(ids, ["first", "three", "two"]);
        assert!(installed_ids(&dir.path().join("missing")).is_empty());
    }
}
