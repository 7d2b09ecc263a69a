//! Logging with `tracing`: human-readable lines on stderr (the original kernel's line with an ISO
//! 8601 stamp, `format.rs`; colour only when stderr is a TTY and `NO_COLOR` is unset or empty) and
//! JSON lines in a daily file `<home>/.runtime/logs/kernel-YYYY-MM-DD.log` (directory 0700, files
//! 0600), which `pons logs` reads back and renders with the same formatter.
//!
//! Kernel code logs with plain `tracing` macros; a `module` field puts that id in the module column
//! and selects the per-module level (`logging.levels`), e.g.
//! `tracing::info!(module = %id, "module.spawn")`. Module `log` / `log-group` messages go through
//! [`log_module_line`] and [`log_module_group`], within the bounds of [`caps`].

pub mod caps;
mod clock;
mod file;
pub mod format;
mod layer;

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::Arc;

use serde_json::value::RawValue;
use tracing::Level;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::home::Home;

pub use clock::LocalTime;
pub use file::DailyFile;
pub use format::parse_level;
use layer::{HumanSink, Levels, PonsLayer};

/// Handle kept by the kernel: keeps the file writer alive and allows changing levels live.
/// Dropping it flushes the file and any pending topic group.
pub struct LogGuard {
    levels: Arc<Levels>,
    human: Option<Arc<HumanSink>>,
    _file: Option<WorkerGuard>,
}

impl LogGuard {
    /// Changes the global level and the per-module levels (`logging.levels`) live. An unknown level
    /// name is logged as a warning and replaced by `info`.
    pub fn set_levels(&self, level: &str, per_module: &BTreeMap<String, String>) {
        let global = level_filter_or_info(level, "logging.level");
        let per: HashMap<String, LevelFilter> = per_module
            .iter()
            .map(|(m, l)| {
                (
                    m.clone(),
                    level_filter_or_info(l, &format!("logging.levels.{m}")),
                )
            })
            .collect();
        self.levels.set(global, per);
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(h) = &self.human {
            h.flush();
        }
    }
}

/// Parses a level name: trace, debug, info, warn, error, fatal (= error), off/silent.
pub fn parse_level_filter(s: &str) -> Option<LevelFilter> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" | "silent" => Some(LevelFilter::OFF),
        other => parse_level(other).map(LevelFilter::from_level),
    }
}

fn level_filter_or_info(s: &str, key: &str) -> LevelFilter {
    parse_level_filter(s).unwrap_or_else(|| {
        tracing::warn!(
            key,
            value = s,
            "unknown log level in config.yaml, using info (use trace, debug, info, warn or error)"
        );
        LevelFilter::INFO
    })
}

/// Installs the global subscriber: stderr always, the daily JSON file when `home` is given (the
/// CLI passes `None`). An unknown `level` is an error. If a global subscriber is already installed
/// (a second kernel in the same process, as in tests), the existing one stays and the returned
/// guard only controls the levels it was created with.
pub fn init(home: Option<&Home>, level: &str) -> anyhow::Result<LogGuard> {
    let Some(global) = parse_level_filter(level) else {
        anyhow::bail!("unknown log level `{level}`: use trace, debug, info, warn, error or fatal");
    };
    let levels = Arc::new(Levels::new(global));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let color = std::io::stderr().is_terminal() && !no_color;
    let human = HumanSink::new(Box::new(std::io::stderr()), color);
    let (json, worker): (Option<Box<dyn std::io::Write + Send>>, _) = match home {
        Some(home) => {
            let dir = home.logs_dir();
            let daily = DailyFile::new(&dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the log directory {}: {e}; check its permissions",
                    dir.display()
                )
            })?;
            // The line queue is preallocated (and touched) in full: the default 128,000 slots are
            // 4 MiB of resident memory (8,192: 256 KiB); the writer thread keeps up with far
            // fewer, and a full queue only makes a logging thread wait for it (lossless).
            let (nb, guard) = NonBlockingBuilder::default()
                .buffered_lines_limit(1024)
                .lossy(false)
                .thread_name("pons-log-file")
                .finish(daily);
            (Some(Box::new(nb)), Some(guard))
        }
        None => (None, None),
    };
    let layer = PonsLayer::new(levels.clone(), Some(human.clone()), json);
    // `try_init` also forwards the `log` crate (used by notify) into tracing.
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(LogGuard {
        levels,
        human: Some(human),
        _file: worker,
    })
}

/// Maps a module's level name to a `tracing` level; unknown names are `info`.
fn module_level(level: &str) -> Level {
    parse_level(level).unwrap_or(Level::INFO)
}

macro_rules! event_at {
    ($level:expr, $($rest:tt)*) => {
        match $level {
            Level::TRACE => tracing::trace!($($rest)*),
            Level::DEBUG => tracing::debug!($($rest)*),
            Level::INFO => tracing::info!($($rest)*),
            Level::WARN => tracing::warn!($($rest)*),
            Level::ERROR => tracing::error!($($rest)*),
        }
    };
}

/// Logs a module's `log` message at its level (unknown → info, fatal → error) with `module` set,
/// `data` (raw JSON, passed on as text) rendered inline as `k=v` and flattened
/// into the JSON line, and the optional `topic` (consecutive entries with the same topic are
/// grouped on stderr). `msg`, `data` and `topic` are bounded by [`caps`].
pub fn log_module_line(
    module: &str,
    level: &str,
    msg: &str,
    data: Option<&RawValue>,
    topic: Option<&str>,
) {
    let data = caps::data_text(data);
    let data: &str = &data;
    let msg = caps::clip(msg, caps::MAX_MSG_BYTES);
    let level = module_level(level);
    match topic {
        Some(topic) => {
            let topic = caps::clip(topic, caps::MAX_MSG_BYTES);
            let topic: &str = &topic;
            event_at!(
                level,
                module = module,
                topic = topic,
                _data = data,
                "{}",
                msg
            )
        }
        None => event_at!(level, module = module, _data = data, "{}", msg),
    }
}

/// Logs a module's `log-group` message: a header line, then one tree line per item
/// (`├ ` / `└ `, indented by 50 columns). `items` is the raw `[{msg, data?}]`, of which at most
/// [`caps::MAX_GROUP_ITEMS`] items / [`caps::MAX_GROUP_BYTES`] are logged, then a summary item
/// `… N more items`.
pub fn log_module_group(module: &str, level: &str, msg: &str, items: Option<&RawValue>) {
    let items = caps::group_items(items);
    let items: &str = &items;
    let msg = caps::clip(msg, caps::MAX_MSG_BYTES);
    event_at!(
        module_level(level),
        module = module,
        _groupItems = items,
        "{}",
        msg
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::{json, Value};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn raw(v: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    fn capture(f: impl FnOnce()) -> (String, Vec<Value>) {
        let levels = Arc::new(Levels::new(LevelFilter::INFO));
        let h = Buf::default();
        let j = Buf::default();
        let sink = HumanSink::new(Box::new(h.clone()), false);
        let layer = PonsLayer::new(levels, Some(sink.clone()), Some(Box::new(j.clone())));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        sink.flush();
        let human = String::from_utf8(h.0.lock().unwrap().clone()).unwrap();
        let json = String::from_utf8(j.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (human, json)
    }

    #[test]
    fn module_log_line() {
        let (human, json) = capture(|| {
            log_module_line("m", "info", "hi", Some(&raw(json!({"a": 1}))), None);
            log_module_line("m", "verbose", "unknown level", None, None);
            let error = raw(json!({"error": "x\ny"}));
            log_module_line("m", "fatal", "boom", Some(&error), None);
            log_module_line("m", "debug", "hidden", None, None);
        });
        let lines: Vec<&str> = human.lines().collect();
        assert_eq!(lines.len(), 3, "{human}");
        assert!(lines[0].ends_with(" INFO  m                   hi a=1"));
        assert!(lines[1].ends_with(" INFO  m                   unknown level"));
        assert!(lines[2].ends_with(" ERROR m                   boom error=x"));
        assert_eq!(json[0]["module"], "m");
        assert_eq!(json[0]["a"], 1);
        assert_eq!(json[0]["message"], "hi");
        assert_eq!(json[2]["level"], "error");
        assert_eq!(json[2]["error"], "x\ny");
    }

    #[test]
    fn module_log_group() {
        let (human, json) = capture(|| {
            let items = raw(json!([{"msg": "a", "data": {"n": 1}}, {"msg": "b"}]));
            log_module_group("m", "warn", "Loaded", Some(&items));
        });
        let pad = " ".repeat(50);
        let lines: Vec<&str> = human.lines().collect();
        assert_eq!(lines.len(), 3, "{human}");
        assert!(lines[0].ends_with(" WARN  m                   Loaded"));
        assert_eq!(lines[1], format!("{pad}├ a n=1"));
        assert_eq!(lines[2], format!("{pad}└ b"));
        assert_eq!(json[0]["_groupItems"][0]["msg"], "a");
    }

    #[test]
    fn module_log_with_topic() {
        let (human, json) = capture(|| {
            log_module_line("m", "info", "x", None, Some("sync"));
            log_module_line(
                "m",
                "info",
                "y",
                Some(&raw(json!({"k": "v"}))),
                Some("sync"),
            );
        });
        let pad = " ".repeat(50);
        let lines: Vec<&str> = human.lines().collect();
        assert_eq!(lines.len(), 3, "{human}");
        assert!(lines[0].ends_with("m                   sync"));
        assert_eq!(lines[2], format!("{pad}└ y k=v"));
        assert_eq!(json[1]["topic"], "sync");
        assert_eq!(json[1]["k"], "v");
    }

    /// The only test that installs the global subscriber (once per test process).
    #[test]
    fn init_writes_the_daily_json_file_and_levels_change_live() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        let guard = init(Some(&home), "info").unwrap();
        tracing::info!(module = "initmod", n = 1, "init.one");
        tracing::debug!(module = "initmod", "init.hidden");
        guard.set_levels(
            "warn",
            &BTreeMap::from([("initmod".to_string(), "debug".to_string())]),
        );
        tracing::debug!(module = "initmod", "init.two");
        tracing::info!(module = "othermod", "init.hidden2");
        drop(guard); // flushes the file writer
        let file = DailyFile::path_for(&home.logs_dir(), &LocalTime::now().date());
        let text = std::fs::read_to_string(&file).unwrap();
        let mine: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("init."))
            })
            .collect();
        let msgs: Vec<&str> = mine
            .iter()
            .map(|v| v["message"].as_str().unwrap())
            .collect();
        assert_eq!(msgs, ["init.one", "init.two"], "{text}");
        assert_eq!(mine[0]["n"], 1);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn level_names() {
        assert_eq!(parse_level_filter("fatal"), Some(LevelFilter::ERROR));
        assert_eq!(parse_level_filter("silent"), Some(LevelFilter::OFF));
        assert_eq!(parse_level_filter("loud"), None);
        assert!(init(None, "loud").is_err());
    }
}
