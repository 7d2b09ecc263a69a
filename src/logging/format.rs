//! Pure formatting of log records: the human line
//! (`2026-01-15T10:30:00.123+01:00 INFO  <module padded to 20><msg> k=v …`, the line of the
//! original kernel with an ISO 8601 stamp), the tree lines of a group, the inline `k=v` rendering
//! of fields, and the JSON object written to the daily file. The kernel's stderr and `pons logs`
//! both render through [`human_lines`]: what one shows, the other shows.
//!
//! Everything a human line shows besides its own prefix (message, fields, group items, topics)
//! goes through [`terminal_safe`]: a newline, carriage return or escape sequence in text a module
//! wrote can neither forge a line nor reach the terminal. The JSON file keeps the
//! text as written (JSON escapes control characters).

use std::borrow::Cow;

use serde_json::{Map, Value};
use tracing::Level;

use super::clock::LocalTime;
use crate::safe_text::terminal_safe;

/// Width of the module column.
pub const MODULE_WIDTH: usize = 20;
/// Indentation of the tree lines of a group.
pub const GROUP_INDENT: usize = 50;
/// Strings are cut to this many characters in inline fields...
pub const MAX_INLINE: usize = 120;
/// ...except the key `error`.
pub const MAX_INLINE_ERROR: usize = 512;

/// One log record, whatever produced it (a `tracing` event or a line of the JSON file).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: LocalTime,
    pub level: Level,
    pub message: String,
    pub module: Option<String>,
    pub topic: Option<String>,
    /// The other fields, in the order they were given.
    pub fields: Vec<(String, Value)>,
    /// Items of an explicit group (`log-group`): `[{msg, data?}]`.
    pub group: Option<Vec<Value>>,
}

/// The five-character level column.
pub fn level5(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO ",
        Level::WARN => "WARN ",
        Level::ERROR => "ERROR",
    }
}

/// The lowercase level name used in the JSON file.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Parses a level name (`fatal` is `error`); `None` for an unknown name.
pub fn parse_level(s: &str) -> Option<Level> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "info" => Some(Level::INFO),
        "warn" | "warning" => Some(Level::WARN),
        "error" | "fatal" => Some(Level::ERROR),
        _ => None,
    }
}

fn colour(level: Level) -> &'static str {
    match level {
        Level::TRACE => "\x1b[90m",
        Level::DEBUG => "\x1b[36m",
        Level::INFO => "\x1b[32m",
        Level::WARN => "\x1b[33m",
        Level::ERROR => "\x1b[31m",
    }
}

/// The time column: ISO 8601 with milliseconds and the UTC offset,
/// `2026-01-15T10:30:00.123+01:00`.
pub fn stamp(t: &LocalTime) -> String {
    t.rfc3339()
}

/// Cuts a string for inline display: first line only, at most `max` characters plus `...`.
pub fn cut(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    match first.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &first[..i]),
        None => first.to_string(),
    }
}

/// One inline value: strings cut, numbers and booleans as is, other values as compact JSON;
/// `None` for null (dropped).
pub fn inline_value(key: &str, v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(cut(
            s,
            if key == "error" {
                MAX_INLINE_ERROR
            } else {
                MAX_INLINE
            },
        )),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// ` k=v k=v` for the given fields (empty when nothing is shown): every field but null ones and
/// the `log.*` metadata of records forwarded from the `log` crate.
pub fn inline<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Value)>) -> String {
    let mut out = String::new();
    for (k, v) in fields {
        if k.starts_with("log.") {
            continue;
        }
        if let Some(s) = inline_value(k, v) {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            out.push_str(&s);
        }
    }
    out
}

/// Inline text of a module's `data`: an object's entries, or `data=<value>` for anything else.
pub fn inline_data(data: Option<&Value>) -> String {
    match data {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(m)) => inline(m.iter().map(|(k, v)| (k.as_str(), v))),
        Some(other) => inline([("data", other)]),
    }
}

/// The header part of a human line: `stamp LEVEL <module padded>`, coloured if asked.
fn prefix(t: &LocalTime, level: Level, module: &str, color: bool) -> String {
    let module = format!("{:<MODULE_WIDTH$}", terminal_safe(module));
    if color {
        format!(
            "\x1b[2m{}\x1b[0m {}{}\x1b[0m {module}",
            stamp(t),
            colour(level),
            level5(level)
        )
    } else {
        format!("{} {} {module}", stamp(t), level5(level))
    }
}

/// One human line (no trailing newline) for a message with its inline text (both made
/// terminal-safe).
pub fn human_line(
    t: &LocalTime,
    level: Level,
    module: &str,
    msg: &str,
    inline_text: &str,
    color: bool,
) -> String {
    format!(
        "{}{}{}",
        prefix(t, level, module, color),
        terminal_safe(msg),
        terminal_safe(inline_text)
    )
}

/// The text of one entry of a topic group: its message and inline fields, terminal-safe.
pub fn entry_text(r: &Record) -> String {
    let text = format!("{}{}", r.message, record_inline(r, false));
    terminal_safe(&text).into_owned()
}

/// The key a field of a record is shown under: the key it has in the JSON line (a field named
/// like one of the record's own keys gets a leading `_` there, see [`json_object`]).
fn shown_key(k: &str) -> Cow<'_, str> {
    if RESERVED_JSON.contains(&k) {
        format!("_{k}").into()
    } else {
        k.into()
    }
}

/// The inline text of a record: `topic=` first when asked, then every field.
fn record_inline(r: &Record, with_topic: bool) -> String {
    let topic = r
        .topic
        .as_ref()
        .filter(|_| with_topic)
        .map(|t| Value::String(t.clone()));
    let shown: Vec<(Cow<'_, str>, &Value)> = topic
        .iter()
        .map(|t| (Cow::Borrowed("topic"), t))
        .chain(r.fields.iter().map(|(k, v)| (shown_key(k), v)))
        .collect();
    inline(shown.iter().map(|(k, v)| (k.as_ref(), *v)))
}

/// Tree lines of a group: one per item, indented by 50 spaces, `├ ` or `└ ` for the last.
/// An item is `{msg, data?}`; a bare string is its own message; anything else is shown as JSON.
pub fn tree_lines(items: &[Value]) -> Vec<String> {
    let n = items.len();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let branch = if i + 1 == n { "└ " } else { "├ " };
            let text = match item {
                Value::String(s) => s.clone(),
                Value::Object(m) => {
                    let msg = match m.get("msg") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    let data = inline_data(m.get("data"));
                    if msg.is_empty() {
                        data.trim_start().to_string()
                    } else {
                        format!("{msg}{data}")
                    }
                }
                other => other.to_string(),
            };
            format!("{:GROUP_INDENT$}{branch}{}", "", terminal_safe(&text))
        })
        .collect()
}

/// The human rendering of a record: one line, or a header plus tree lines for a group. Each
/// element is a line without its newline. The line shows the record's `topic` (as `topic=`, first)
/// and every field; the console's topic groups clear `topic` in their header.
pub fn human_lines(r: &Record, color: bool) -> Vec<String> {
    let module = r.module.as_deref().unwrap_or("kernel");
    let inline_text = record_inline(r, true);
    let mut lines = vec![human_line(
        &r.time,
        r.level,
        module,
        &r.message,
        &inline_text,
        color,
    )];
    if let Some(items) = &r.group {
        lines.extend(tree_lines(items));
    }
    lines
}

/// Keys of the JSON line that the record itself owns; a field with one of these names is written
/// with a leading `_`.
const RESERVED_JSON: &[&str] = &[
    "timestamp",
    "level",
    "message",
    "module",
    "topic",
    "_groupItems",
];

/// The JSON object written to the daily file: `timestamp`, `level`, `message`, `module` and
/// `topic` when present, then the fields flattened, then `_groupItems` for a group.
pub fn json_object(r: &Record) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("timestamp".into(), Value::String(r.time.rfc3339()));
    m.insert("level".into(), Value::String(level_name(r.level).into()));
    m.insert("message".into(), Value::String(r.message.clone()));
    if let Some(module) = &r.module {
        m.insert("module".into(), Value::String(module.clone()));
    }
    if let Some(topic) = &r.topic {
        m.insert("topic".into(), Value::String(topic.clone()));
    }
    for (k, v) in &r.fields {
        let mut key = k.clone();
        while RESERVED_JSON.contains(&key.as_str()) || (m.contains_key(&key) && key != *k) {
            key.insert(0, '_');
        }
        m.insert(key, v.clone());
    }
    if let Some(items) = &r.group {
        m.insert("_groupItems".into(), Value::Array(items.clone()));
    }
    m
}

/// The JSON line (no trailing newline).
pub fn json_line(r: &Record) -> String {
    Value::Object(json_object(r)).to_string()
}

/// Reads back a line of the daily file into a [`Record`] (for `pons logs`); `None` when the line
/// is not one of ours.
pub fn record_from_json(line: &str) -> Option<Record> {
    let Value::Object(m) = serde_json::from_str::<Value>(line).ok()? else {
        return None;
    };
    let time = LocalTime::parse_rfc3339(m.get("timestamp")?.as_str()?)?;
    let level = parse_level(m.get("level")?.as_str()?)?;
    let message = m.get("message")?.as_str()?.to_string();
    let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    let group = match m.get("_groupItems") {
        Some(Value::Array(a)) => Some(a.clone()),
        _ => None,
    };
    let fields = m
        .iter()
        .filter(|(k, _)| !RESERVED_JSON.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(Record {
        time,
        level,
        message,
        module: text("module"),
        topic: text("topic"),
        fields,
        group,
    })
}

/// Renders one line of the daily file as human lines (what `pons logs` prints). A line that is
/// not a JSON record is passed through trimmed.
pub fn render_json_line(line: &str, color: bool) -> Vec<String> {
    match record_from_json(line) {
        Some(r) => human_lines(&r, color),
        None => vec![terminal_safe(line.trim()).into_owned()],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn t() -> LocalTime {
        LocalTime {
            year: 2026,
            month: 1,
            day: 15,
            hour: 10,
            minute: 30,
            second: 0,
            millis: 123,
            offset_secs: 3600,
        }
    }

    fn rec(module: Option<&str>, msg: &str, fields: Vec<(&str, Value)>) -> Record {
        Record {
            time: t(),
            level: Level::INFO,
            message: msg.into(),
            module: module.map(str::to_string),
            topic: None,
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            group: None,
        }
    }

    #[test]
    fn reference_example_line() {
        let r = rec(
            None,
            "module.spawn",
            vec![
                ("moduleId", json!("llm")),
                ("pid", json!(4242)),
                ("runtime", json!("deno")),
            ],
        );
        assert_eq!(
            human_lines(&r, false),
            vec!["2026-01-15T10:30:00.123+01:00 INFO  kernel              module.spawn moduleId=llm pid=4242 runtime=deno"]
        );
    }

    #[test]
    fn long_module_name_has_no_separator() {
        let r = rec(Some("a-very-long-module-name-x"), "hi", vec![]);
        assert_eq!(
            human_lines(&r, false)[0],
            "2026-01-15T10:30:00.123+01:00 INFO  a-very-long-module-name-xhi"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let r = rec(Some("m"), "hi", vec![]);
        assert!(!human_lines(&r, false)[0].contains('\x1b'));
        let coloured = &human_lines(&r, true)[0];
        assert!(coloured.contains("\x1b[32mINFO \x1b[0m"));
        assert!(coloured.ends_with("m                   hi"));
    }

    #[test]
    fn inline_rules() {
        let long = "x".repeat(130);
        let err = "e".repeat(600);
        let text = inline_data(Some(&json!({
            "a": 1, "b": true, "c": null, "stack": "trace", "topic": "t", "module": "m",
            "d": "first\nsecond", "e": long, "error": err, "f": {"x": [1, 2]}, "g": 1.5
        })));
        let expected = format!(
            " a=1 b=true stack=trace topic=t module=m d=first e={}... error={}... f={{\"x\":[1,2]}} g=1.5",
            "x".repeat(120),
            "e".repeat(512)
        );
        assert_eq!(text, expected);
        assert_eq!(inline_data(Some(&json!([1, 2]))), " data=[1,2]");
        assert_eq!(inline_data(None), "");
        assert_eq!(inline_data(Some(&json!({"s": "short"}))), " s=short");
    }

    /// One formatter, one truth: a record read back from the daily file renders exactly as the
    /// console rendered it, every data key included (`name`, `stack`, `time` and keys named like
    /// the record's own, which the file writes with a leading `_`).
    #[test]
    fn console_and_file_render_the_same_line() {
        let r = rec(
            Some("m"),
            "hi",
            vec![
                ("name", json!("n")),
                ("stack", json!("Error: x\n    at f")),
                ("time", json!(5)),
                ("hostname", json!("h")),
                ("msg", json!("inner")),
                ("level", json!("x")),
                ("module", json!("other")),
            ],
        );
        let console = human_lines(&r, false);
        assert_eq!(
            console,
            vec!["2026-01-15T10:30:00.123+01:00 INFO  m                   hi name=n stack=Error: x time=5 hostname=h msg=inner _level=x _module=other"]
        );
        assert_eq!(render_json_line(&json_line(&r), false), console);
    }

    #[test]
    fn topic_is_shown_inline() {
        let mut r = rec(Some("m"), "step", vec![("n", json!(2))]);
        r.topic = Some("boot".into());
        assert!(human_lines(&r, false)[0].ends_with("m                   step topic=boot n=2"));
        assert_eq!(entry_text(&r), "step n=2");
    }

    #[test]
    fn cut_counts_characters_not_bytes() {
        let s = "é".repeat(121);
        assert_eq!(cut(&s, 120), format!("{}...", "é".repeat(120)));
        assert_eq!(cut("abc", 120), "abc");
        assert_eq!(cut("abc\n", 120), "abc");
        assert_eq!(cut("", 120), "");
    }

    #[test]
    fn group_tree() {
        let mut r = rec(Some("m"), "Loaded", vec![("count", json!(2))]);
        r.group = Some(vec![
            json!({"msg": "one", "data": {"k": "v"}}),
            json!("two"),
            json!({"msg": "three"}),
        ]);
        let lines = human_lines(&r, false);
        let pad = " ".repeat(50);
        assert_eq!(lines.len(), 4);
        assert!(lines[0].ends_with("m                   Loaded count=2"));
        assert_eq!(lines[1], format!("{pad}├ one k=v"));
        assert_eq!(lines[2], format!("{pad}├ two"));
        assert_eq!(lines[3], format!("{pad}└ three"));
    }

    #[test]
    fn module_text_cannot_forge_lines() {
        let forged =
            "ok\n2001-01-01T00:00:00.000+00:00 INFO  kernel              x\r\x1b[2J\x1b[31mred";
        let mut r = rec(Some("m"), forged, vec![("k\nK", json!(forged))]);
        let odd_id = rec(Some("m\x1b[2J\n"), "x", vec![]);
        assert!(human_lines(&odd_id, false)[0].ends_with(" m\\u{1b}[2J\\n        x"));
        r.group = Some(vec![
            json!(forged),
            json!({"msg": forged, "data": {"d": forged}}),
        ]);
        let lines = human_lines(&r, true);
        assert_eq!(lines.len(), 3);
        let safe = "ok\\n2001-01-01T00:00:00.000+00:00 INFO  kernel              x\\r\\u{1b}[2Jred";
        assert!(
            lines[0].ends_with(&format!("m                   {safe} k\\nK=ok")),
            "{lines:?}"
        );
        assert!(lines[1].ends_with(&format!("├ {safe}")), "{lines:?}");
        assert!(lines[2].ends_with(&format!("└ {safe} d=ok")), "{lines:?}");
        // The formatter's own colours stay.
        assert!(lines[0].contains("\x1b[32mINFO \x1b[0m"));
        assert!(lines[1..].iter().all(|l| !l.contains('\x1b')));
        assert_eq!(
            render_json_line("raw\x1b[2J\rx", false),
            vec!["raw\\u{1b}[2J\\rx"]
        );
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("fatal"), Some(Level::ERROR));
        assert_eq!(parse_level("WARN"), Some(Level::WARN));
        assert_eq!(parse_level("verbose"), None);
        assert_eq!(level5(Level::WARN), "WARN ");
        assert_eq!(level5(Level::ERROR), "ERROR");
    }

    #[test]
    fn json_round_trip() {
        let mut r = rec(
            Some("m"),
            "hi",
            vec![("a", json!(1)), ("level", json!("x")), ("s", json!("t"))],
        );
        r.topic = Some("tp".into());
        let line = json_line(&r);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["timestamp"], "2026-01-15T10:30:00.123+01:00");
        assert_eq!(v["level"], "info");
        assert_eq!(v["message"], "hi");
        assert_eq!(v["module"], "m");
        assert_eq!(v["topic"], "tp");
        assert_eq!(v["a"], 1);
        assert_eq!(v["_level"], "x");
        let back = record_from_json(&line).unwrap();
        assert_eq!(back.time, r.time);
        assert_eq!(back.module.as_deref(), Some("m"));
        assert_eq!(
            render_json_line(&line, false),
            vec!["2026-01-15T10:30:00.123+01:00 INFO  m                   hi topic=tp a=1 _level=x s=t"]
        );
        assert_eq!(render_json_line("  not json ", false), vec!["not json"]);
    }
}
