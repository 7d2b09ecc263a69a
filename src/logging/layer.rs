//! The `tracing` layer of the kernel: live-changeable levels (global and per module, keyed by the
//! event's `module` field), and the two sinks — human lines (with topic grouping, the reference kernel's behaviour)
//! and JSON lines.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};

use super::clock::LocalTime;
use super::format::{self, Record};

/// Field carrying a module's `data` (JSON text, expanded by the layer).
const DATA_FIELD: &str = "_data";
/// Field carrying a `log-group`'s items (JSON text).
const GROUP_FIELD: &str = "_groupItems";
/// A topic group is flushed after this long without a new entry.
const GROUP_IDLE: Duration = Duration::from_millis(100);

fn encode(l: LevelFilter) -> u8 {
    match l.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

fn decode(v: u8) -> LevelFilter {
    match v {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The current levels, shared by the layer and the [`super::LogGuard`].
#[derive(Debug)]
pub struct Levels {
    global: AtomicU8,
    max: AtomicU8,
    per_module: RwLock<HashMap<String, LevelFilter>>,
}

impl Levels {
    pub fn new(global: LevelFilter) -> Levels {
        Levels {
            global: AtomicU8::new(encode(global)),
            max: AtomicU8::new(encode(global)),
            per_module: RwLock::new(HashMap::new()),
        }
    }

    /// Replaces all levels and rebuilds `tracing`'s callsite cache so newly enabled levels show.
    pub fn set(&self, global: LevelFilter, per_module: HashMap<String, LevelFilter>) {
        let max = per_module.values().copied().fold(global, std::cmp::max);
        *self.per_module.write() = per_module;
        self.global.store(encode(global), Ordering::Relaxed);
        self.max.store(encode(max), Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
    }

    pub fn global(&self) -> LevelFilter {
        decode(self.global.load(Ordering::Relaxed))
    }

    fn max(&self) -> LevelFilter {
        decode(self.max.load(Ordering::Relaxed))
    }

    /// Whether an event at `level` from `module` passes.
    pub fn allows(&self, level: Level, module: Option<&str>) -> bool {
        if let Some(m) = module {
            if let Some(l) = self.per_module.read().get(m) {
                return level <= *l;
            }
        }
        level <= self.global()
    }

    fn has_per_module(&self) -> bool {
        !self.per_module.read().is_empty()
    }
}

/// Human output: a writer plus the pending topic group.
struct HumanState {
    out: Box<dyn Write + Send>,
    color: bool,
    group: Option<TopicGroup>,
    flusher_started: bool,
}

struct TopicGroup {
    key: String,
    header: Record,
    items: Vec<String>,
    last: Instant,
}

impl HumanState {
    fn write_lines(&mut self, lines: &[String]) {
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        let _ = self.out.write_all(buf.as_bytes());
        let _ = self.out.flush();
    }

    fn flush_group(&mut self) {
        if let Some(g) = self.group.take() {
            let mut lines = format::human_lines(&g.header, self.color);
            let n = g.items.len();
            for (i, item) in g.items.into_iter().enumerate() {
                let branch = if i + 1 == n { "└ " } else { "├ " };
                lines.push(format!("{:w$}{branch}{item}", "", w = format::GROUP_INDENT));
            }
            self.write_lines(&lines);
        }
    }
}

/// The human sink, shared with the thread that flushes idle topic groups.
pub struct HumanSink {
    state: Mutex<HumanState>,
    wake: Condvar,
}

impl HumanSink {
    pub fn new(out: Box<dyn Write + Send>, color: bool) -> Arc<HumanSink> {
        Arc::new(HumanSink {
            state: Mutex::new(HumanState {
                out,
                color,
                group: None,
                flusher_started: false,
            }),
            wake: Condvar::new(),
        })
    }

    /// Writes a record: entries with a topic are grouped by `module:topic`.
    fn write(self: &Arc<Self>, r: Record) {
        let mut st = self.state.lock();
        let key = match (&r.module, &r.topic) {
            (Some(m), Some(t)) if r.group.is_none() => Some(format!("{m}:{t}")),
            _ => None,
        };
        let Some(key) = key else {
            st.flush_group();
            let lines = format::human_lines(&r, st.color);
            st.write_lines(&lines);
            return;
        };
        if st.group.as_ref().is_some_and(|g| g.key != key) {
            st.flush_group();
        }
        let item = format::entry_text(&r);
        match &mut st.group {
            Some(g) => {
                g.items.push(item);
                g.last = Instant::now();
            }
            None => {
                let mut header = r.clone();
                header.message = header.topic.take().unwrap_or_default();
                header.fields.clear();
                st.group = Some(TopicGroup {
                    key,
                    header,
                    items: vec![item],
                    last: Instant::now(),
                });
            }
        }
        if !st.flusher_started {
            st.flusher_started = true;
            let weak = Arc::downgrade(self);
            let _ = std::thread::Builder::new()
                .name("pons-log-groups".into())
                .spawn(move || flusher(weak));
        }
        self.wake.notify_one();
    }

    /// Writes out a pending topic group now.
    pub fn flush(&self) {
        self.state.lock().flush_group();
    }
}

/// Flushes a topic group once it has been idle for [`GROUP_IDLE`]; exits once no group is
/// pending (the next group starts another) or with the sink, so nothing wakes while logs are quiet.
fn flusher(sink: Weak<HumanSink>) {
    loop {
        let Some(sink) = sink.upgrade() else { return };
        let mut st = sink.state.lock();
        match st.group.as_ref().map(|g| g.last + GROUP_IDLE) {
            Some(due) if due <= Instant::now() => st.flush_group(),
            Some(due) => {
                sink.wake.wait_until(&mut st, due);
            }
            None => {
                st.flusher_started = false;
                return;
            }
        }
    }
}

/// The layer: filters by level and module, then writes to the sinks.
pub struct PonsLayer {
    levels: Arc<Levels>,
    human: Option<Arc<HumanSink>>,
    json: Option<Mutex<Box<dyn Write + Send>>>,
}

impl PonsLayer {
    pub fn new(
        levels: Arc<Levels>,
        human: Option<Arc<HumanSink>>,
        json: Option<Box<dyn Write + Send>>,
    ) -> PonsLayer {
        PonsLayer {
            levels,
            human,
            json: json.map(Mutex::new),
        }
    }
}

/// Finds the `module` field only (cheap: other values are not formatted).
struct ModuleVisitor(Option<String>);

impl Visit for ModuleVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "module" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "module" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// Collects every field of an event.
#[derive(Default)]
struct FieldVisitor {
    message: String,
    module: Option<String>,
    topic: Option<String>,
    fields: Vec<(String, Value)>,
    group: Option<Vec<Value>>,
}

impl FieldVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            "module" => self.module = value.as_str().map(str::to_string),
            "topic" => self.topic = value.as_str().map(str::to_string),
            DATA_FIELD => {
                let text = value.as_str().unwrap_or_default();
                match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(m)) => self.fields.extend(m),
                    Ok(Value::Null) | Err(_) => {}
                    Ok(other) => self.fields.push(("data".into(), other)),
                }
            }
            GROUP_FIELD => {
                let text = value.as_str().unwrap_or_default();
                self.group = Some(match serde_json::from_str::<Value>(text) {
                    Ok(Value::Array(a)) => a,
                    Ok(Value::Null) | Err(_) => Vec::new(),
                    Ok(other) => vec![other],
                });
            }
            name if name.starts_with("log.") => {}
            name => self.fields.push((name.to_string(), value)),
        }
    }
}

impl Visit for FieldVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(value.to_string())),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// Other crates' own records below a warning (the NATS client's "connected"/"reconnecting"
/// lines, the runtime's debug output) are noise to an operator: pons reports what matters in
/// its own words (the cluster link, the watcher). Their warnings and errors still show.
fn is_foreign_chatter(metadata: &Metadata<'_>) -> bool {
    *metadata.level() > Level::WARN && !metadata.target().starts_with("pons")
}

impl<S: Subscriber> Layer<S> for PonsLayer {
    fn register_callsite(&self, _metadata: &'static Metadata<'static>) -> Interest {
        // Levels change at run time: decide per event (cheap atomic compare in `enabled`).
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.is_event()
            && *metadata.level() <= self.levels.max()
            && !is_foreign_chatter(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.levels.max())
    }

    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let level = *event.metadata().level();
        if !self.levels.has_per_module() {
            return level <= self.levels.global();
        }
        let mut v = ModuleVisitor(None);
        event.record(&mut v);
        self.levels.allows(level, v.0.as_deref())
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut v = FieldVisitor::default();
        event.record(&mut v);
        let record = Record {
            time: LocalTime::now(),
            level: *event.metadata().level(),
            message: v.message,
            module: v.module,
            topic: v.topic,
            fields: v.fields,
            group: v.group,
        };
        if let Some(json) = &self.json {
            let mut line = format::json_line(&record);
            line.push('\n');
            // One write per line: the non-blocking writer ships each write whole.
            let _ = json.lock().write_all(line.as_bytes());
        }
        if let Some(human) = &self.human {
            human.write(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().clone()).unwrap()
        }
    }

    fn setup(level: LevelFilter) -> (Arc<Levels>, Arc<HumanSink>, Buf, Buf, impl Subscriber) {
        let levels = Arc::new(Levels::new(level));
        let human_buf = Buf::default();
        let json_buf = Buf::default();
        let human = HumanSink::new(Box::new(human_buf.clone()), false);
        let layer = PonsLayer::new(
            levels.clone(),
            Some(human.clone()),
            Some(Box::new(json_buf.clone())),
        );
        let sub = tracing_subscriber::registry().with(layer);
        (levels, human, human_buf, json_buf, sub)
    }

    #[test]
    fn kernel_event_in_both_sinks() {
        let (_l, _h, human, json, sub) = setup(LevelFilter::INFO);
        tracing::subscriber::with_default(sub, || {
            let id = "llm";
            tracing::info!(moduleId = %id, pid = 4242, runtime = "deno", "module.spawn");
            tracing::debug!("hidden");
            tracing::warn!(module = "gw", action = "deny", "security.violation");
        });
        let h = human.text();
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines.len(), 2, "{h}");
        // `2026-01-15T10:30:00.123+01:00 INFO  …`: the ISO 8601 stamp of the line's own time.
        let (stamp, rest) = lines[0].split_once(' ').unwrap();
        assert_eq!(stamp.len(), 29, "{stamp}");
        assert!(LocalTime::parse_rfc3339(stamp).is_some(), "{stamp}");
        assert_eq!(
            rest,
            "INFO  kernel              module.spawn moduleId=llm pid=4242 runtime=deno"
        );
        assert!(lines[1].ends_with(" WARN  gw                  security.violation action=deny"));
        let j: Vec<Value> = json
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(j.len(), 2);
        assert_eq!(j[0]["message"], "module.spawn");
        assert_eq!(j[0]["level"], "info");
        assert_eq!(j[0]["pid"], 4242);
        assert_eq!(j[0]["moduleId"], "llm");
        assert!(j[0].get("module").is_none());
        assert_eq!(j[1]["module"], "gw");
        assert_eq!(j[1]["level"], "warn");
    }

    #[test]
    fn other_crates_show_only_their_warnings_and_errors() {
        let (_l, _h, human, json, sub) = setup(LevelFilter::INFO);
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: "async_nats", "event: connected");
            tracing::warn!(target: "async_nats", "connection lost");
            tracing::info!("cluster.connected");
        });
        let h = human.text();
        assert!(!h.contains("event: connected"), "{h}");
        assert!(h.contains("connection lost"), "{h}");
        assert!(h.contains("cluster.connected"), "{h}");
        assert_eq!(json.text().lines().count(), 2);
    }

    #[test]
    fn per_module_levels_change_live() {
        let (levels, _h, human, _json, sub) = setup(LevelFilter::INFO);
        tracing::subscriber::with_default(sub, || {
            tracing::debug!(module = "a", "one");
            levels.set(
                LevelFilter::WARN,
                HashMap::from([("a".to_string(), LevelFilter::DEBUG)]),
            );
            tracing::debug!(module = "a", "two");
            tracing::debug!(module = "b", "three");
            tracing::info!("four");
            tracing::warn!("five");
            tracing::info!(module = "a", "six");
        });
        let h = human.text();
        assert!(
            !h.contains("one") && !h.contains("three") && !h.contains("four"),
            "{h}"
        );
        assert!(
            h.contains("two") && h.contains("five") && h.contains("six"),
            "{h}"
        );
    }

    #[test]
    fn topic_entries_are_grouped_and_flushed() {
        let (_l, human_sink, human, json, sub) = setup(LevelFilter::INFO);
        tracing::subscriber::with_default(sub, || {
            tracing::info!(module = "m", topic = "boot", "step one");
            tracing::info!(module = "m", topic = "boot", n = 2, "step two");
            tracing::info!(module = "m", "plain");
            tracing::info!(module = "m", topic = "late", "alone");
        });
        let h = human.text();
        let lines: Vec<&str> = h.lines().collect();
        let pad = " ".repeat(50);
        assert_eq!(lines.len(), 4, "{h}");
        assert!(lines[0].ends_with("m                   boot"));
        assert_eq!(lines[1], format!("{pad}├ step one"));
        assert_eq!(lines[2], format!("{pad}└ step two n=2"));
        assert!(lines[3].ends_with("m                   plain"));
        // The last group is flushed by the idle timer.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !human.text().contains("alone") {
            assert!(Instant::now() < deadline, "idle topic group never flushed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(human.text().ends_with(&format!("{pad}└ alone\n")));
        human_sink.flush();
        // JSON lines are never grouped.
        assert_eq!(json.text().lines().count(), 4);
    }
}
