//! Lenient reading of `module.json`: fields the reference kernel accepts with another JSON type
//! than the documented one are read the way it reads them, with one warning each (shown by
//! `pons plan`, logged once by the kernel). What the reference refuses, or cannot run with (a
//! truthy non-string `entrypoint` makes its discovery throw, a string in a list field is split
//! into characters), is left as written for the typed parse to refuse.
//!
//! The reference reads list fields with `?? []`, `priority` with `?? 100` and arithmetic (so
//! `"5"` sorts as 5), `runtime` with `?? 'deno'` and a fallback to deno for any unknown value,
//! `entrypoint`/`entry`/`configKey`/`minProtocolVersion` by JavaScript truthiness, `version` and
//! `description` only for display, and never reads `configDependencies` or `commands` itself.

use serde_json::{Map, Value};

/// The JSON type of a value, for warnings ("a number", "null", …).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// JavaScript falsiness of a JSON value: `null`, `false`, `0` and `""`.
fn falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// `"1"` for the number 1, `"true"` for true.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn warn(key: &str, v: &Value, reading: &str, advice: &str) -> String {
    format!("`{key}` is {}: {reading} ({advice})", kind(v))
}

/// The fields with list type (`?? []` in the reference).
const LISTS: [&str; 5] = [
    "provides",
    "requires",
    "optionalRequires",
    "subscribes",
    "publishes",
];

/// `minProtocolVersion` as the reference reads it (`value || "1.0"`): `Ok(None)` for the
/// default. A number is read as its text (the reference throws on it; the version rule then
/// decides). `true`, a list or an object cannot be read: `Err` with the sentence.
pub(super) fn min_protocol_version(
    obj: &mut Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, String> {
    const KEY: &str = "minProtocolVersion";
    let Some(v) = obj.get(KEY) else {
        return Ok(None);
    };
    let version = match v {
        Value::String(s) if !s.is_empty() => return Ok(Some(s.clone())),
        v if falsy(v) => {
            let reading = "read as \"1.0\"";
            let w = match v {
                Value::String(_) => {
                    format!("`{KEY}` is empty: {reading} (write \"1.0\" or leave the field out)")
                }
                _ => warn(KEY, v, reading, "write \"1.0\" or leave the field out"),
            };
            warnings.push(w);
            None
        }
        Value::Number(_) => {
            let t = text(v);
            warnings.push(warn(
                KEY,
                v,
                &format!("read as \"{t}\""),
                "write it as a string",
            ));
            Some(t)
        }
        other => {
            return Err(format!(
                "`{KEY}` is {}: write a version string such as \"1.0\"",
                kind(other)
            ))
        }
    };
    match &version {
        Some(t) => obj.insert(KEY.into(), Value::String(t.clone())),
        None => obj.remove(KEY),
    };
    Ok(version)
}

/// Rewrites the other fields of `obj` the way the reference reads them and returns one warning
/// per rewritten field, in field order. Values it leaves alone are refused (or accepted) by the
/// typed parse as before.
pub(super) fn normalize(obj: &mut Map<String, Value>) -> Vec<String> {
    let mut warnings = Vec::new();
    let keys: Vec<String> = obj.keys().cloned().collect();
    let entrypoint_set = matches!(obj.get("entrypoint"), Some(Value::String(s)) if !s.is_empty());
    for key in keys {
        let Some(v) = obj.get(&key).cloned() else {
            continue;
        };
        // A string is the documented type of every field but these three.
        let string_wrong = ["priority", "configDependencies", "commands"].contains(&key.as_str());
        if v.is_string() && !string_wrong {
            continue;
        }
        let k = key.as_str();
        let out = match k {
            "version" | "description" => display_text(k, &v),
            "runtime" => runtime(&v),
            "entrypoint" => path(k, &v, false),
            "entry" => path(k, &v, entrypoint_set),
            "configKey" => config_key(&v),
            "configSchema" => null_absent(k, &v),
            "priority" => priority(&v),
            "configDependencies" => config_dependencies(&v),
            "commands" => commands(&v),
            "capabilities" => capabilities(&v),
            _ if LISTS.contains(&k) => null_list(k, &v),
            _ => None,
        };
        if let Some((new, warning)) = out {
            match new {
                Some(n) => obj.insert(key.clone(), n),
                None => obj.remove(&key),
            };
            warnings.push(warning);
        }
    }
    warnings
}

/// A rewrite: the new value (`None`: the field is dropped) and its warning.
type Rewrite = Option<(Option<Value>, String)>;

/// `version`, `description`: display only. A number or boolean is read as its text, null as
/// absent; a list or object is ignored.
fn display_text(key: &str, v: &Value) -> Rewrite {
    let advice = "write it as a string";
    Some(match v {
        Value::Null => (None, warn(key, v, "ignored", "leave the field out")),
        Value::Bool(_) | Value::Number(_) => {
            let t = text(v);
            let reading = format!("read as \"{t}\"");
            (Some(Value::String(t)), warn(key, v, &reading, advice))
        }
        _ => (None, warn(key, v, "ignored", advice)),
    })
}

/// `runtime ?? 'deno'`, and any value that is not a known runtime falls back to deno (the
/// spawn step adds the unknown-runtime note).
fn runtime(v: &Value) -> Rewrite {
    Some(match v {
        Value::Null => (
            None,
            warn("runtime", v, "read as deno", "leave the field out"),
        ),
        _ => {
            let t = text(v);
            let reading = format!("read as \"{t}\"");
            let w = warn("runtime", v, &reading, "write the runtime name as a string");
            (Some(Value::String(t)), w)
        }
    })
}

/// `entrypoint || 'runner.ts'` (and `entry` copied when `entrypoint` is missing): a falsy value
/// is absent; `entry` is never read when `entrypoint` is set. A truthy non-string is refused.
fn path(key: &str, v: &Value, ignored: bool) -> Rewrite {
    if ignored {
        return Some((
            None,
            warn(key, v, "ignored, `entrypoint` is set", "leave it out"),
        ));
    }
    falsy(v).then(|| {
        let w = warn(
            key,
            v,
            "read as absent",
            "write a path or leave the field out",
        );
        (None, w)
    })
}

/// `configKey`: falsy means no config section; a number is read as its text (the key of the
/// section). `true`, a list or an object is refused.
fn config_key(v: &Value) -> Rewrite {
    const KEY: &str = "configKey";
    if falsy(v) {
        let w = warn(
            KEY,
            v,
            "read as absent, no config section",
            "leave the field out",
        );
        return Some((None, w));
    }
    matches!(v, Value::Number(_)).then(|| {
        let t = text(v);
        let w = warn(KEY, v, &format!("read as \"{t}\""), "write it as a string");
        (Some(Value::String(t)), w)
    })
}

fn null_absent(key: &str, v: &Value) -> Rewrite {
    v.is_null()
        .then(|| (None, warn(key, v, "read as absent", "leave the field out")))
}

/// `priority ?? 100`, compared by subtraction: a numeric string is read as its number, a
/// boolean as 1 or 0; what is not a number gets the default.
fn priority(v: &Value) -> Rewrite {
    const KEY: &str = "priority";
    let default = crate::manifest::DEFAULT_PRIORITY;
    let number = |n: f64| serde_json::Number::from_f64(n).map(Value::Number);
    let (new, reading) = match v {
        Value::Number(_) => return None,
        Value::Null => (None, format!("read as the default {default}")),
        Value::Bool(b) => {
            let n = if *b { 1.0 } else { 0.0 };
            (number(n), format!("read as {n}"))
        }
        Value::String(s) => {
            let t = s.trim();
            let parsed = if t.is_empty() {
                Some(0.0)
            } else {
                t.parse::<f64>().ok().filter(|n| n.is_finite())
            };
            match parsed {
                Some(n) => (number(n), format!("read as {n}")),
                None => (None, format!("not a number, the default {default} is used")),
            }
        }
        _ => (None, format!("not a number, the default {default} is used")),
    };
    Some((new, warn(KEY, v, &reading, "write a number")))
}

/// A list field (`?? []`): null is the empty list. Anything else that is not a list is refused.
fn null_list(key: &str, v: &Value) -> Rewrite {
    v.is_null().then(|| {
        let w = warn(key, v, "read as []", "write a list or leave the field out");
        (Some(Value::Array(Vec::new())), w)
    })
}

/// `configDependencies`: the reference never reads it; pons restarts on changes of the sections
/// it names. Null is the empty list; a value that is not a list of strings is ignored.
fn config_dependencies(v: &Value) -> Rewrite {
    const KEY: &str = "configDependencies";
    match v {
        Value::Array(items) if items.iter().all(Value::is_string) => None,
        Value::Null => null_list(KEY, v),
        Value::Array(_) => Some((
            Some(Value::Array(Vec::new())),
            format!("`{KEY}` holds values that are not strings: ignored (write a list of config section names)"),
        )),
        _ => Some((
            Some(Value::Array(Vec::new())),
            warn(KEY, v, "ignored", "write a list of config section names"),
        )),
    }
}

/// `commands`: passed through by the reference. Null or a value that is not a list reads as
/// the empty list.
fn commands(v: &Value) -> Rewrite {
    match v {
        Value::Array(_) => None,
        Value::Null => null_list("commands", v),
        _ => Some((
            Some(Value::Array(Vec::new())),
            warn("commands", v, "ignored", "write a list of commands"),
        )),
    }
}

/// `capabilities ?? derived`, and `topics`/`services` inside it `?? []`.
fn capabilities(v: &Value) -> Rewrite {
    const KEY: &str = "capabilities";
    match v {
        Value::Null => Some((
            None,
            warn(
                KEY,
                v,
                "read as absent, derived from the manifest",
                "leave the field out",
            ),
        )),
        Value::Object(o) => {
            let nulls: Vec<&str> = ["topics", "services"]
                .into_iter()
                .filter(|k| o.get(*k).is_some_and(Value::is_null))
                .collect();
            if nulls.is_empty() {
                return None;
            }
            let mut o = o.clone();
            for k in &nulls {
                o.insert((*k).into(), Value::Array(Vec::new()));
            }
            let names: Vec<String> = nulls.iter().map(|k| format!("`{KEY}.{k}`")).collect();
            let w = format!(
                "{} null: read as [] (write a list or leave the field out)",
                names.join(" and ") + if nulls.len() > 1 { " are" } else { " is" }
            );
            Some((Some(Value::Object(o)), w))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(v: Value) -> (Value, Vec<String>) {
        let Value::Object(mut o) = v else {
            panic!("object")
        };
        let w = normalize(&mut o);
        (Value::Object(o), w)
    }

    #[test]
    fn strings_and_lists_untouched() {
        let v = json!({"version":"1.2","priority":5,"provides":["a"],"configDependencies":["x"],"commands":[{}],"capabilities":{"topics":["t"]}});
        assert_eq!(norm(v.clone()), (v, vec![]));
    }

    #[test]
    fn readings() {
        let (v, w) = norm(json!({
            "version": 1, "description": ["x"], "runtime": 7, "priority": " 5 ",
            "provides": null, "configDependencies": "gw", "commands": null,
            "capabilities": {"topics": null, "services": null}, "configKey": 0, "configSchema": null,
        }));
        assert_eq!(
            v,
            json!({"version": "1", "runtime": "7", "priority": 5.0, "provides": [],
                   "configDependencies": [], "commands": [], "capabilities": {"topics": [], "services": []}})
        );
        assert_eq!(w.len(), 10, "{w:#?}");
        assert!(
            w.contains(&"`version` is a number: read as \"1\" (write it as a string)".to_string())
        );
        assert!(w.contains(&"`priority` is a string: read as 5 (write a number)".to_string()));
        assert!(w.contains(
            &"`provides` is null: read as [] (write a list or leave the field out)".to_string()
        ));
        assert!(w
            .iter()
            .any(|s| s.starts_with("`capabilities.topics` and `capabilities.services` are null")));
    }

    #[test]
    fn priority_readings() {
        for (given, want) in [
            (json!("abc"), json!(null)),
            (json!(""), json!(0.0)),
            (json!("inf"), json!(null)),
            (json!(true), json!(1.0)),
            (json!(null), json!(null)),
            (json!({}), json!(null)),
            (json!("-2.5"), json!(-2.5)),
        ] {
            let (v, w) = norm(json!({ "priority": given }));
            assert_eq!(
                v.get("priority").cloned().unwrap_or(Value::Null),
                want,
                "{given}"
            );
            assert_eq!(w.len(), 1);
        }
    }

    #[test]
    fn entry_readings() {
        // falsy: absent; truthy non-string: left for the typed parse to refuse
        let (v, w) = norm(json!({"entrypoint": false, "entry": 0}));
        assert_eq!(v, json!({}));
        assert_eq!(w.len(), 2);
        let (v, w) = norm(json!({"entrypoint": 5}));
        assert_eq!(v, json!({"entrypoint": 5}));
        assert!(w.is_empty());
        // `entry` is never read when `entrypoint` is set
        let (v, w) = norm(json!({"entrypoint": "main.ts", "entry": 5}));
        assert_eq!(v, json!({"entrypoint": "main.ts"}));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn refused_stay_as_written() {
        let v = json!({"provides": "x", "requires": [1], "configKey": true, "configSchema": 3, "capabilities": "x"});
        assert_eq!(norm(v.clone()), (v, vec![]));
    }

    #[test]
    fn protocol_version() {
        let run = |v: Value| {
            let mut o = Map::new();
            o.insert("minProtocolVersion".into(), v);
            let mut w = Vec::new();
            let r = min_protocol_version(&mut o, &mut w);
            (r, o, w.len())
        };
        assert_eq!(run(json!("1.0")).0, Ok(Some("1.0".into())));
        for falsy in [json!(null), json!(""), json!(0), json!(false)] {
            let (r, o, n) = run(falsy);
            assert_eq!((r, o.len(), n), (Ok(None), 0, 1));
        }
        let (r, o, n) = run(json!(1));
        assert_eq!((r, n), (Ok(Some("1".into())), 1));
        assert_eq!(o["minProtocolVersion"], json!("1"));
        assert!(run(json!(true)).0.is_err());
        assert!(run(json!([1])).0.is_err());
    }
}
