//! JSON text laid out as `serde_json::to_string_pretty` lays it out, straight from compact JSON
//! text: `pons status --json` prints the kernel's answer this way instead of building a
//! `serde_json::Value` of hundreds of modules only to print it again.

use std::io::{self, Write};

/// Writes `compact` (valid JSON, as serde_json writes it) re-indented to `sink`, in chunks of
/// about 64 KiB: two spaces per level, `"key": ` with one space, empty arrays and objects as
/// `[]` and `{}`. Whitespace outside strings is dropped; strings are copied as they are
/// (escapes included).
pub fn write_pretty(compact: &str, sink: &mut impl Write) -> io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let b = compact.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        if out.len() >= CHUNK {
            sink.write_all(&out)?;
            out.clear();
        }
        let c = b[i];
        match c {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                out.extend_from_slice(&b[start..i.min(b.len())]);
                continue;
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                out.push(c);
                if b.get(j) == Some(&close) {
                    out.push(close);
                    i = j + 1;
                    continue;
                }
                depth += 1;
                newline(&mut out, depth);
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            b',' => {
                out.push(b',');
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            c if c.is_ascii_whitespace() => {}
            _ => out.push(c),
        }
        i += 1;
    }
    sink.write_all(&out)
}

fn newline(out: &mut Vec<u8>, depth: usize) {
    out.push(b'\n');
    for _ in 0..depth {
        out.extend_from_slice(b"  ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn pretty(compact: &str) -> String {
        let mut out = Vec::new();
        write_pretty(compact, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn same_as_serde(v: &Value) {
        let compact = serde_json::to_string(v).unwrap();
        assert_eq!(pretty(&compact), serde_json::to_string_pretty(v).unwrap());
    }

    #[test]
    fn lays_out_like_serde_json() {
        same_as_serde(
            &json!({"kernel": {"running": true, "pid": 7, "uptimeMs": null},
            "modules": [{"id": "a", "provides": [], "sandbox": {"read": ["/x", "/y"], "limits": {}}},
                        {"id": "b\"[{,:}]\\", "provides": ["s"], "n": -1.5e-7}],
            "services": [], "converged": false, "empty": {}, "nested": [[], [{}], [[1, 2]]]}),
        );
        same_as_serde(&json!([]));
        same_as_serde(&json!("a \u{1b} é 😀 \\\" ,"));
        same_as_serde(&json!(null));
    }

    #[test]
    fn whitespace_outside_strings_is_dropped() {
        assert_eq!(
            pretty("{ \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : \"x y\" }"),
            serde_json::to_string_pretty(&json!({"a": [1, 2], "b": {}, "c": "x y"})).unwrap()
        );
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((".*", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_lays_out_like_serde_json(v in any_json()) {
            let compact = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(pretty(&compact), serde_json::to_string_pretty(&v).unwrap());
        }
    }
}
