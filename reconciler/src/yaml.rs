//! YAML in and out: strict parsing (duplicate keys are errors, strict booleans, leading-zero and
//! underscored numbers kept as strings) into `serde_json::Value`, and stable block-style rendering.

use serde_json::Value;

/// A YAML syntax or structure error, as one line: "line 3, column 5: duplicate mapping key `a`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for YamlError {}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        with_snippet: false,
    }
}

/// Turns serde-saphyr's "msg at line 4, column 3" into "line 4, column 3: msg" without the hint
/// about `DuplicateKeyPolicy`, which means nothing to an operator.
fn tidy(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw.strip_prefix("error: ").unwrap_or(raw);
    let first = raw.lines().next().unwrap_or(raw);
    let (msg, loc) = match first.rfind(" at line ") {
        Some(i) => (&first[..i], Some(&first[i + 4..])),
        None => (first, None),
    };
    let msg = msg
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .replace(
            "; use from_str_multiple or from_str_multiple_with_options",
            " (only one is allowed)",
        );
    match loc {
        Some(loc) => format!("{loc}: {msg}"),
        None => msg,
    }
}

/// Parses one YAML document into a JSON value. An empty document is `Value::Null`.
pub fn parse_value(bytes: &[u8]) -> Result<Value, YamlError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Err(YamlError {
                message: format!("the file is not valid UTF-8 (byte {})", e.valid_up_to()),
            })
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    // A panic inside the parser must never take the kernel down: the crate claims to be
    // panic-free, this is a second line of defence.
    let parsed =
        std::panic::catch_unwind(|| serde_saphyr::from_str_with_options::<Value>(text, options()));
    match parsed {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(YamlError {
            message: tidy(&e.to_string()),
        }),
        Err(_) => Err(YamlError {
            message: "the YAML parser failed on this input".into(),
        }),
    }
}

/// Renders a value as block-style YAML (empty collections as `{}` / `[]`). `Null` renders as
/// an empty string.
pub fn render(value: &Value) -> String {
    if value.is_null() {
        return String::new();
    }
    match serde_saphyr::to_string(value) {
        Ok(s) => s,
        // Unreachable for JSON values; fall back to JSON, which is valid YAML.
        Err(_) => serde_json::to_string_pretty(value).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_errors_with_position() {
        let e = parse_value(b"a: 1\nb:\n  c: 2\n  c: 3\n").unwrap_err();
        assert_eq!(e.message, "line 4, column 3: duplicate mapping key: c");
    }

    #[test]
    fn strict_scalars() {
        let v = parse_value(b"x: yes\ny: 007\nz: 1_000\nw: ~\nt: true\n").unwrap();
        assert_eq!(
            v,
            json!({"x": "yes", "y": "007", "z": "1_000", "w": null, "t": true})
        );
    }

    #[test]
    fn empty_and_bom() {
        assert_eq!(parse_value(b"").unwrap(), Value::Null);
        assert_eq!(parse_value(b"  \n# c\n").unwrap(), Value::Null);
        assert_eq!(
            parse_value("\u{feff}a: 1".as_bytes()).unwrap(),
            json!({"a": 1})
        );
    }

    #[test]
    fn syntax_error_is_one_line() {
        let e = parse_value(b"a: [1, 2\n").unwrap_err();
        assert!(e.message.starts_with("line 1, column 4: "), "{}", e.message);
        assert!(!e.message.contains('\n'));
        let e = parse_value(b"a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.message.contains("only one is allowed"), "{}", e.message);
    }

    #[test]
    fn render_roundtrip() {
        let v = json!({"b": [1, "x"], "a": {}, "s": "true"});
        let text = render(&v);
        assert_eq!(parse_value(text.as_bytes()).unwrap(), v);
    }
}
