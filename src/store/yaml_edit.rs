//! Minimal-edit update of a YAML text at a dotted key path (`pons config set`, `config.set`): only
//! the lines of the changed value are rewritten; every other line (comments, order, blank lines,
//! quoting, indentation) stays byte for byte.
//!
//! The edit works on block mappings indented with spaces. Where the path meets something it does
//! not edit in place (a flow mapping `{…}`, a flow or block sequence, a block scalar, an anchor,
//! alias or tag), the deepest key it *can* locate is rewritten as a whole, in block style. Every
//! result is checked by parsing it back: it must equal the original document with the one value
//! set. When that check fails (anchors used elsewhere, merge keys, unusual layouts), the edit falls
//! back to re-rendering the one top-level section that contains the key, and as a last resort the
//! whole document (keeping only the comment lines before the first key). Removing a key
//! (`pons config reset <key>`) is in [`remove`], finding where a key is written in [`locate`].

use serde_json::{Map, Value};

mod locate;
mod remove;

pub use locate::locate_key;
pub use remove::remove_config_key;

/// Path segments refused.
const UNSAFE_SEGMENTS: &[&str] = &["__proto__", "constructor", "prototype"];

/// Parses YAML text with the reconciler's strict reader (duplicate keys are errors with line and
/// column, booleans are only `true`/`false`, leading-zero and underscored numbers stay strings)
/// into JSON; an empty document is `null`.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    pons_reconciler::yaml::parse_value(text.as_bytes()).map_err(|e| e.message)
}

/// Sets `value` at the dotted `key_path` of `text` (config.yaml), changing as few lines as
/// possible (see the module documentation for the fallbacks). Intermediate values that are missing
/// or not mappings become mappings. Returns the text unchanged when the value is
/// already there. Errors: `text` is not valid YAML or not a mapping, or a segment is unsafe.
pub fn set_config_key(text: &str, key_path: &str, value: &Value) -> anyhow::Result<String> {
    let segs: Vec<&str> = key_path.split('.').collect();
    if let Some(bad) = segs.iter().find(|s| UNSAFE_SEGMENTS.contains(s)) {
        anyhow::bail!(
            "config key `{key_path}` contains the unsafe segment `{bad}`; use another key"
        );
    }
    let doc = match parse_yaml(text) {
        Ok(Value::Null) => Value::Object(Map::new()),
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => anyhow::bail!(
            "config.yaml is not a mapping of sections at its top level; fix the file first"
        ),
        Err(e) => anyhow::bail!("config.yaml is not valid YAML ({e}); fix the file first"),
    };
    let mut new_doc = doc.clone();
    set_path(&mut new_doc, &segs, value.clone());
    if new_doc == doc {
        return Ok(text.to_string());
    }
    let verified = |candidate: String| match parse_yaml(&candidate) {
        Ok(v) if v == new_doc => Some(candidate),
        _ => None,
    };
    if let Some(lines) = split_lines(text) {
        let unit = indent_unit(&lines);
        for max_depth in [usize::MAX, 0] {
            if let Some(out) = edit(&lines, &segs, &new_doc, unit, max_depth).and_then(verified) {
                return Ok(out);
            }
        }
    }
    let header = split_lines(text)
        .map(|lines| {
            lines
                .iter()
                .take_while(|l| l.kind != Kind::Content)
                .map(|l| l.raw)
                .collect::<String>()
        })
        .unwrap_or_default();
    let whole = format!("{header}{}", render_document(&new_doc, 2));
    verified(whole).ok_or_else(|| {
        anyhow::anyhow!("cannot write `{key_path}` into config.yaml: the rendered file does not read back the same; edit the file by hand")
    })
}

/// Sets a value at a path in a JSON document, replacing missing or non-object intermediates.
pub fn set_path(doc: &mut Value, segs: &[&str], value: Value) {
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut cur = doc;
    for seg in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        let next = m
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next;
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Value::Object(m) = cur {
        m.insert(last.to_string(), value);
    }
}

fn lookup<'a>(doc: &'a Value, segs: &[&str]) -> Option<&'a Value> {
    segs.iter().try_fold(doc, |v, s| v.as_object()?.get(*s))
}

// ---------------------------------------------------------------------------------------------
// Lines

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Comment,
    Content,
    /// `---`, `...`, `%YAML` directives.
    Marker,
}

#[derive(Debug)]
struct Line<'a> {
    /// With its line ending.
    raw: &'a str,
    /// Without its line ending.
    text: &'a str,
    indent: usize,
    kind: Kind,
}

/// Splits into lines; `None` when content is indented with tabs (not handled in place).
fn split_lines(text: &str) -> Option<Vec<Line<'_>>> {
    let mut out = Vec::new();
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\n', '\r']);
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        let kind = if rest.trim().is_empty() {
            Kind::Blank
        } else if rest.starts_with('#') {
            Kind::Comment
        } else if indent == 0
            && (rest == "---" || rest.starts_with("--- ") || rest == "..." || rest.starts_with('%'))
        {
            Kind::Marker
        } else if rest.starts_with('\t') {
            return None;
        } else {
            Kind::Content
        };
        out.push(Line {
            raw,
            text: line,
            indent,
            kind,
        });
    }
    Some(out)
}

/// What follows `key:` on its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    /// Nothing (or a comment): a block follows, or the value is null.
    Empty,
    /// A plain or quoted scalar.
    Scalar,
    /// Flow collection, anchor, alias, tag or block scalar.
    Other,
}

#[derive(Debug)]
struct KeyLine {
    key: String,
    /// Byte index of the `:` in the line's text.
    colon: usize,
    value: ValueKind,
}

fn closing_double(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn closing_single(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

fn is_seq_item(text: &str, indent: usize) -> bool {
    let s = &text[indent..];
    s == "-" || s.starts_with("- ")
}

/// Parses `key: …` at the line's indentation; `None` if the line is not a simple mapping entry.
fn parse_key_line(text: &str, indent: usize) -> Option<KeyLine> {
    let s = &text[indent..];
    if is_seq_item(text, indent)
        || s.starts_with(['?', '[', '{', '&', '!', '*', '|', '>', '%', '@', '`', ':'])
    {
        return None;
    }
    let (key, after_key) = if s.starts_with('"') {
        let end = closing_double(s)?;
        (serde_saphyr::from_str::<String>(&s[..=end]).ok()?, end + 1)
    } else if s.starts_with('\'') {
        let end = closing_single(s)?;
        (s[1..end].replace("''", "'"), end + 1)
    } else {
        let b = s.as_bytes();
        let mut found = None;
        for i in 0..b.len() {
            if b[i] == b'#' && i > 0 && (b[i - 1] == b' ' || b[i - 1] == b'\t') {
                return None;
            }
            if b[i] == b':' && (i + 1 == b.len() || b[i + 1] == b' ' || b[i + 1] == b'\t') {
                found = Some(i);
                break;
            }
        }
        let i = found?;
        (s[..i].trim_end().to_string(), i)
    };
    let rest = &s[after_key..];
    let trimmed = rest.trim_start_matches([' ', '\t']);
    let after_colon = trimmed.strip_prefix(':')?;
    if !(after_colon.is_empty() || after_colon.starts_with([' ', '\t'])) {
        return None;
    }
    let colon = indent + after_key + (rest.len() - trimmed.len());
    let v = after_colon.trim_start_matches([' ', '\t']);
    let value = if v.is_empty() || v.starts_with('#') {
        ValueKind::Empty
    } else if v.starts_with(['{', '[', '&', '!', '*', '|', '>']) {
        ValueKind::Other
    } else {
        ValueKind::Scalar
    };
    Some(KeyLine { key, colon, value })
}

/// Splits what follows a `:` into (leading whitespace, scalar, trailing comment with its
/// whitespace); `None` if the scalar does not end on this line.
fn split_value_comment(after_colon: &str) -> Option<(&str, &str, &str)> {
    let v = after_colon.trim_start_matches([' ', '\t']);
    let lead = &after_colon[..after_colon.len() - v.len()];
    let end = if v.starts_with('"') {
        closing_double(v)? + 1
    } else if v.starts_with('\'') {
        closing_single(v)? + 1
    } else {
        let b = v.as_bytes();
        let hash = (1..b.len()).find(|&i| b[i] == b'#' && (b[i - 1] == b' ' || b[i - 1] == b'\t'));
        v[..hash.unwrap_or(b.len())].trim_end().len()
    };
    let tail = &v[end..];
    let t = tail.trim_start_matches([' ', '\t']);
    if !(t.is_empty() || t.starts_with('#')) {
        return None;
    }
    Some((lead, &v[..end], if t.is_empty() { "" } else { tail }))
}

fn first_content(lines: &[Line], start: usize, end: usize) -> Option<usize> {
    (start..end).find(|&j| lines[j].kind == Kind::Content)
}

fn last_content(lines: &[Line], start: usize, end: usize) -> Option<usize> {
    (start..end).rev().find(|&j| lines[j].kind == Kind::Content)
}

/// One past the last content line that belongs to the entry at line `i`.
fn entry_end(lines: &[Line], i: usize, value_empty: bool) -> usize {
    let indent = lines[i].indent;
    let mut last = i;
    for (j, l) in lines.iter().enumerate().skip(i + 1) {
        match l.kind {
            Kind::Content => {
                if l.indent > indent
                    || (value_empty && l.indent == indent && is_seq_item(l.text, indent))
                {
                    last = j;
                } else {
                    break;
                }
            }
            Kind::Marker => break,
            Kind::Blank | Kind::Comment => {}
        }
    }
    last + 1
}

/// The indentation step used by the file (2 if it cannot tell).
fn indent_unit(lines: &[Line]) -> usize {
    for (i, l) in lines.iter().enumerate() {
        if l.kind != Kind::Content {
            continue;
        }
        if !matches!(parse_key_line(l.text, l.indent), Some(k) if k.value == ValueKind::Empty) {
            continue;
        }
        if let Some(j) = first_content(lines, i + 1, lines.len()) {
            if lines[j].indent > l.indent {
                return lines[j].indent - l.indent;
            }
        }
    }
    2
}

/// Whether lines `start..end` form a block mapping indented deeper than `parent`.
fn is_block_mapping(lines: &[Line], start: usize, end: usize, parent: Option<usize>) -> bool {
    let Some(fc) = first_content(lines, start, end) else {
        return false;
    };
    let l = &lines[fc];
    parent.is_none_or(|p| l.indent > p) && parse_key_line(l.text, l.indent).is_some()
}

/// The edit itself: descends through block mappings (at most `max_depth` levels) and rewrites the
/// deepest entry it reaches, or inserts the missing key at the end of its parent block.
fn edit(
    lines: &[Line],
    segs: &[&str],
    new_doc: &Value,
    unit: usize,
    max_depth: usize,
) -> Option<String> {
    let (mut start, mut end) = (0usize, lines.len());
    for (depth, seg) in segs.iter().enumerate() {
        let value = lookup(new_doc, &segs[..=depth])?;
        let Some(fc) = first_content(lines, start, end) else {
            // Only possible at the top: a file without content.
            let new = emit_entry(0, &render_key(seg), value, unit);
            return Some(splice(lines, lines.len(), lines.len(), &new));
        };
        let child_indent = lines[fc].indent;
        let mut found = None;
        for (j, l) in lines.iter().enumerate().take(end).skip(fc) {
            if l.kind != Kind::Content || l.indent != child_indent {
                continue;
            }
            let k = parse_key_line(l.text, l.indent)?;
            if k.key == *seg && found.is_none() {
                found = Some((j, k));
            }
        }
        let Some((line, key)) = found else {
            let at = last_content(lines, start, end).map_or(end, |j| j + 1);
            let new = emit_entry(child_indent, &render_key(seg), value, unit);
            return Some(splice(lines, at, at, &new));
        };
        let e_end = entry_end(lines, line, key.value == ValueKind::Empty);
        let l = &lines[line];
        let is_last = depth + 1 == segs.len();
        if !is_last
            && depth < max_depth
            && key.value == ValueKind::Empty
            && is_block_mapping(lines, line + 1, e_end, Some(l.indent))
        {
            (start, end) = (line + 1, e_end);
            continue;
        }
        if is_last && key.value == ValueKind::Scalar && e_end == line + 1 && is_single_line(value) {
            if let Some((lead, _old, tail)) = split_value_comment(&l.text[key.colon + 1..]) {
                let lead = if lead.is_empty() { " " } else { lead };
                let new = format!(
                    "{}{lead}{}{tail}",
                    &l.text[..=key.colon],
                    render_scalar(value)
                );
                return Some(splice(lines, line, line + 1, &[new]));
            }
        }
        let key_text = l.text[l.indent..key.colon].trim_end();
        let new = emit_entry(l.indent, key_text, value, unit);
        return Some(splice(lines, line, e_end, &new));
    }
    None
}

/// Replaces lines `a..b` with `new` (each given a line ending like the file's).
fn splice(lines: &[Line], a: usize, b: usize, new: &[String]) -> String {
    let nl = if lines.first().is_some_and(|l| l.raw.ends_with("\r\n")) {
        "\r\n"
    } else {
        "\n"
    };
    let mut out: String = lines[..a].iter().map(|l| l.raw).collect();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(nl);
    }
    for l in new {
        out.push_str(l);
        out.push_str(nl);
    }
    out.extend(lines[b..].iter().map(|l| l.raw));
    out
}

// ---------------------------------------------------------------------------------------------
// Rendering (block style)

fn is_single_line(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => true,
    }
}

/// Words some YAML readers take for booleans or null.
const AMBIGUOUS_WORDS: &[&str] = &[
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
];

/// Whether `s` can be written as a plain scalar (key or value) and read back as the same string
/// by any common YAML reader.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s
        || s.chars().any(|c| c.is_control() || c == '\u{feff}')
        || "-?:,[]{}#&*!|>'\"%@`+.".contains(first)
        || first.is_ascii_digit()
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || AMBIGUOUS_WORDS.contains(&s.to_ascii_lowercase().as_str())
    {
        return false;
    }
    let as_value = parse_yaml(&format!("k: {s}\n"));
    let as_key = parse_yaml(&format!("{s}: 1\n"));
    let expect_value = serde_json::json!({ "k": s });
    let mut expect_key = Map::new();
    expect_key.insert(s.to_string(), Value::from(1));
    as_value.ok() == Some(expect_value) && as_key.ok() == Some(Value::Object(expect_key))
}

fn render_string(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        // JSON string escapes are valid in YAML double-quoted scalars.
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

fn render_key(k: &str) -> String {
    render_string(k)
}

/// A scalar (or an empty collection) on one line.
fn render_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => render_string(s),
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

/// `key: value` at `indent`, nested collections in block style.
fn emit_entry(indent: usize, key: &str, v: &Value, unit: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    let mut out = Vec::new();
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push(format!("{pad}{key}:"));
            for (k, v) in m {
                out.extend(emit_entry(indent + unit, &render_key(k), v, unit));
            }
        }
        Value::Array(a) if !a.is_empty() => {
            out.push(format!("{pad}{key}:"));
            for x in a {
                out.extend(emit_item(indent + unit, x, unit));
            }
        }
        scalar => out.push(format!("{pad}{key}: {}", render_scalar(scalar))),
    }
    out
}

/// `- item` at `indent`.
fn emit_item(indent: usize, v: &Value, unit: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut inner: Vec<String> = m
                .iter()
                .flat_map(|(k, v)| emit_entry(indent + 2, &render_key(k), v, unit))
                .collect();
            if let Some(first) = inner.first_mut() {
                *first = format!("{pad}- {}", &first[indent + 2..]);
            }
            inner
        }
        Value::Array(a) if !a.is_empty() => {
            let mut out = vec![format!("{pad}-")];
            for x in a {
                out.extend(emit_item(indent + unit, x, unit));
            }
            out
        }
        scalar => vec![format!("{pad}- {}", render_scalar(scalar))],
    }
}

/// A whole document (a mapping) in block style.
pub fn render_document(doc: &Value, unit: usize) -> String {
    let mut out = String::new();
    match doc {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                for l in emit_entry(0, &render_key(k), v, unit) {
                    out.push_str(&l);
                    out.push('\n');
                }
            }
        }
        other => {
            out.push_str(&render_scalar(other));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(text: &str, key: &str, v: Value) -> String {
        let out = set_config_key(text, key, &v).unwrap();
        // Whatever path was taken, the result reads back as the original plus the change.
        let mut expect = match parse_yaml(text).unwrap() {
            Value::Null => json!({}),
            d => d,
        };
        let segs: Vec<&str> = key.split('.').collect();
        set_path(&mut expect, &segs, v);
        assert_eq!(parse_yaml(&out).unwrap(), expect, "result:\n{out}");
        out
    }

    const BASE: &str = "\
# pons configuration
logging:
  level: info   # default level
  levels: {}

# the gateway module
gateway:
  host: 0.0.0.0
  httpPort: 18790
  auth:
    enabled: false # off for now
    tokens: []

lifecycle:
  maxRestarts: 5
";

    #[test]
    fn replaces_a_scalar_keeping_its_comment() {
        let out = set(BASE, "logging.level", json!("debug"));
        assert_eq!(
            out,
            BASE.replace("level: info   # default", "level: debug   # default")
        );
        let out = set(BASE, "gateway.auth.enabled", json!(true));
        assert_eq!(
            out,
            BASE.replace("enabled: false # off", "enabled: true # off")
        );
    }

    #[test]
    fn inserts_a_key_at_the_end_of_its_section() {
        let out = set(BASE, "gateway.tls", json!(true));
        assert_eq!(
            out,
            BASE.replace("    tokens: []\n", "    tokens: []\n  tls: true\n")
        );
    }

    #[test]
    fn inserts_into_a_nested_section() {
        let out = set(BASE, "gateway.auth.realm", json!("pons"));
        assert_eq!(
            out,
            BASE.replace("    tokens: []\n", "    tokens: []\n    realm: pons\n")
        );
    }

    #[test]
    fn inserts_a_new_section_at_the_end() {
        let out = set(BASE, "llm.provider.model", json!("gpt-4o"));
        assert_eq!(out, format!("{BASE}llm:\n  provider:\n    model: gpt-4o\n"));
        // A file without a final newline gets one before the new section.
        let out = set("a: 1", "b", json!(2));
        assert_eq!(out, "a: 1\nb: 2\n");
    }

    #[test]
    fn empty_or_comment_only_file() {
        assert_eq!(set("", "a.b", json!(1)), "a:\n  b: 1\n");
        assert_eq!(set("# hello\n", "a", json!("x")), "# hello\na: x\n");
    }

    #[test]
    fn replaces_a_block_value_with_a_collection() {
        let out = set(
            BASE,
            "gateway.auth",
            json!({"enabled": true, "tokens": ["a", "b"]}),
        );
        assert_eq!(
            out,
            BASE.replace(
                "  auth:\n    enabled: false # off for now\n    tokens: []\n",
                "  auth:\n    enabled: true\n    tokens:\n      - a\n      - b\n"
            )
        );
    }

    #[test]
    fn flow_mapping_on_the_path_is_rewritten_as_a_block() {
        let out = set(BASE, "logging.levels.gateway", json!("debug"));
        assert_eq!(
            out,
            BASE.replace("  levels: {}\n", "  levels:\n    gateway: debug\n")
        );
        let text = "a: {b: 1, c: 2}  # flow\nd: 3\n";
        let out = set(text, "a.b", json!(5));
        assert_eq!(out, "a:\n  b: 5\n  c: 2\nd: 3\n");
    }

    #[test]
    fn scalar_in_the_way_becomes_a_mapping() {
        let out = set("a: 1\nb: 2\n", "a.x", json!(true));
        assert_eq!(out, "a:\n  x: true\nb: 2\n");
        let out = set("a:\nb: 2\n", "a.x", json!(1));
        assert_eq!(out, "a:\n  x: 1\nb: 2\n");
    }

    #[test]
    fn sequences_are_replaced_whole() {
        let text = "list:\n- 1\n- 2\nnext: x\n";
        assert_eq!(set(text, "list", json!([3])), "list:\n  - 3\nnext: x\n");
        let text = "list:\n  - a: 1\n    b: 2\nnext: x\n";
        assert_eq!(
            set(text, "list", json!([{"a": 1}, {"c": [1, 2]}])),
            "list:\n  - a: 1\n  - c:\n      - 1\n      - 2\nnext: x\n"
        );
    }

    #[test]
    fn strings_are_quoted_when_needed() {
        for (s, rendered) in [
            ("plain text", "plain text"),
            ("yes", "\"yes\""),
            ("012", "\"012\""),
            ("1.5", "\"1.5\""),
            ("a: b", "\"a: b\""),
            ("#x", "\"#x\""),
            ("", "\"\""),
            ("two\nlines", "\"two\\nlines\""),
            ("${HOME}/x", "${HOME}/x"),
            ("http://h:1/p", "http://h:1/p"),
        ] {
            assert_eq!(render_string(s), rendered, "{s:?}");
            set("k: 1\n", "k", json!(s));
        }
    }

    #[test]
    fn four_space_files_keep_their_indent() {
        let text = "a:\n    b: 1\n";
        assert_eq!(
            set(text, "a.c.d", json!(2)),
            "a:\n    b: 1\n    c:\n        d: 2\n"
        );
    }

    #[test]
    fn quoted_keys_and_values_are_found() {
        let text = "\"gate way\":\n  'port': \"80\" # quoted\n";
        assert_eq!(
            set(text, "gate way.port", json!(81)),
            "\"gate way\":\n  'port': 81 # quoted\n"
        );
    }

    #[test]
    fn anchors_fall_back_to_the_section_then_the_document() {
        // The alias lives in the same section: only that section is re-rendered.
        let text = "# top\ngateway:\n  a: &p 1\n  b: *p\nother: 1 # c\n";
        assert_eq!(
            set(text, "gateway.a", json!(2)),
            "# top\ngateway:\n  a: 2\n  b: 1\nother: 1 # c\n"
        );
        // The alias is in another section: the whole document is rendered, header kept.
        let text = "# top\nbase: &b\n  x: 1\nother: *b\nkeep: 1 # c\n";
        assert_eq!(
            set(text, "base.x", json!(2)),
            "# top\nbase:\n  x: 2\nother:\n  x: 1\nkeep: 1\n"
        );
    }

    #[test]
    fn unchanged_value_returns_the_same_text() {
        assert_eq!(
            set_config_key(BASE, "lifecycle.maxRestarts", &json!(5)).unwrap(),
            BASE
        );
    }

    #[test]
    fn refusals() {
        assert!(set_config_key(BASE, "a.__proto__.b", &json!(1)).is_err());
        let e = set_config_key("a: [\n", "a", &json!(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid YAML"), "{e}");
        assert!(set_config_key("- 1\n", "a", &json!(1)).is_err());
        let e = parse_yaml("a: 1\na: 2\n").unwrap_err();
        assert!(e.contains("duplicate") && e.contains("line 2"), "{e}");
        assert!(!e.contains("DuplicateKeyPolicy"), "{e}");
    }

    #[test]
    fn crlf_files_stay_crlf() {
        let text = "a:\r\n  b: 1\r\n";
        assert_eq!(set(text, "a.c", json!(2)), "a:\r\n  b: 1\r\n  c: 2\r\n");
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<i32>().prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
                "[a-z :#'\"-]{0,8}".prop_map(Value::from),
            ]
        }

        fn tree() -> impl Strategy<Value = Value> {
            scalar().prop_recursive(3, 24, 4, |inner| {
                prop::collection::btree_map("[a-c]", inner, 1..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect()))
            })
        }

        proptest! {
            #[test]
            fn edits_keep_every_comment_outside_the_changed_value(
                doc in prop::collection::btree_map("[a-c]", tree(), 1..4),
                path in prop::collection::vec("[a-d]", 1..4),
                value in scalar(),
                comment_every in 1usize..4,
            ) {
                let doc = Value::Object(doc.into_iter().collect());
                let rendered = render_document(&doc, 2);
                let mut text = String::new();
                for (i, line) in rendered.lines().enumerate() {
                    text.push_str(line);
                    text.push('\n');
                    if i % comment_every == 0 {
                        text.push_str(&format!("# c{i}\n"));
                    }
                }
                let segs: Vec<&str> = path.iter().map(String::as_str).collect();
                let out = set_config_key(&text, &path.join("."), &value).unwrap();
                let mut expect = doc.clone();
                set_path(&mut expect, &segs, value.clone());
                prop_assert_eq!(parse_yaml(&out).unwrap(), expect);
                // Unless the key held a collection (whose inner comments go with it), every
                // comment line survives.
                let old = lookup(&doc, &segs);
                if !matches!(old, Some(Value::Object(_))) {
                    for c in text.lines().filter(|l| l.starts_with('#')) {
                        prop_assert!(out.lines().any(|l| l == c), "lost {c}:\n{text}\n=>\n{out}");
                    }
                }
            }
        }
    }
}
