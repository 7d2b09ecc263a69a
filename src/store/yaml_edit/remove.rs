//! Minimal-edit removal of a dotted key from a YAML text (`pons config reset <key>`): the lines of
//! that entry are removed and every other line stays byte for byte; a mapping the removal leaves
//! empty is written `parent: {}` (so a section stays a mapping). Where the key cannot be located
//! in block style (inside a flow mapping, …), its parent is rewritten as `set_config_key` would,
//! and as a last resort the whole document. Every result is checked by parsing it back: it must
//! equal the original document without the key.

use serde_json::{Map, Value};

use super::{
    edit, entry_end, first_content, indent_unit, is_block_mapping, parse_key_line, parse_yaml,
    render_document, splice, split_lines, Kind, Line, ValueKind,
};

/// Removes the dotted `key_path` from `text` (config.yaml). Returns the text unchanged when the
/// key is not there. Errors: `text` is not valid YAML or not a mapping, or a segment is unsafe.
pub fn remove_config_key(text: &str, key_path: &str) -> anyhow::Result<String> {
    let (segs, doc) = super::key_and_document(text, key_path)?;
    let mut new_doc = doc;
    if !remove_at(&mut new_doc, &segs) {
        return Ok(text.to_string());
    }
    let empty = Value::Object(Map::new());
    let verified = |candidate: String| match parse_yaml(&candidate) {
        Ok(Value::Null) if new_doc == empty => Some(candidate),
        Ok(v) if v == new_doc => Some(candidate),
        _ => None,
    };
    let lines = split_lines(text);
    if let Some(lines) = &lines {
        if let Some(out) = remove_lines(lines, &segs).and_then(verified) {
            return Ok(out);
        }
        if let Some((_, parents)) = segs.split_last().filter(|(_, p)| !p.is_empty()) {
            let unit = indent_unit(lines);
            for max_depth in [usize::MAX, 0] {
                if let Some(out) =
                    edit(lines, parents, &new_doc, unit, max_depth).and_then(verified)
                {
                    return Ok(out);
                }
            }
        }
    }
    let header: String = lines
        .iter()
        .flatten()
        .take_while(|l| l.kind != Kind::Content)
        .map(|l| l.raw)
        .collect();
    let whole = format!("{header}{}", render_document(&new_doc, 2));
    verified(whole).ok_or_else(|| {
        anyhow::anyhow!("cannot remove `{key_path}` from config.yaml: the rendered file does not read back the same; edit the file by hand")
    })
}

/// Removes the value at `segs` from a JSON document; false when there was none.
fn remove_at(doc: &mut Value, segs: &[&str]) -> bool {
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut cur = doc;
    for seg in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(*seg)) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    cur.as_object_mut()
        .is_some_and(|m| m.shift_remove(*last).is_some())
}

/// The in-place removal: descends through block mappings to the entry and drops its lines. `None`
/// when the path leaves block style (the caller falls back).
fn remove_lines(lines: &[Line], segs: &[&str]) -> Option<String> {
    let (mut start, mut end) = (0usize, lines.len());
    let mut parent: Option<(usize, usize)> = None; // (line, colon) of the enclosing key
    for (depth, seg) in segs.iter().enumerate() {
        let fc = first_content(lines, start, end)?;
        let child_indent = lines[fc].indent;
        let mut found = None;
        let mut siblings = 0usize;
        for (j, l) in lines.iter().enumerate().take(end).skip(fc) {
            if l.kind != Kind::Content || l.indent != child_indent {
                continue;
            }
            let k = parse_key_line(l.text, l.indent)?;
            siblings += 1;
            if k.key == *seg && found.is_none() {
                found = Some((j, k));
            }
        }
        let (line, key) = found?;
        let e_end = entry_end(lines, line, key.value == ValueKind::Empty);
        if depth + 1 < segs.len() {
            if key.value != ValueKind::Empty
                || !is_block_mapping(lines, line + 1, e_end, Some(lines[line].indent))
            {
                return None;
            }
            parent = Some((line, key.colon));
            (start, end) = (line + 1, e_end);
            continue;
        }
        return Some(match parent {
            // The only key of a nested mapping: the parent becomes `key: {}` (its comment kept).
            Some((pl, colon)) if siblings == 1 => {
                let p = &lines[pl];
                let nl = &p.raw[p.text.len()..];
                let mut out: String = lines[..pl].iter().map(|l| l.raw).collect();
                out.push_str(&format!(
                    "{} {{}}{}{nl}",
                    &p.text[..=colon],
                    &p.text[colon + 1..]
                ));
                out.extend(lines[pl + 1..line].iter().map(|l| l.raw));
                out.extend(lines[e_end..].iter().map(|l| l.raw));
                out
            }
            _ => splice(lines, line, e_end, &[]),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Removes and checks that the result reads back as the original without the key.
    fn remove(text: &str, key: &str) -> String {
        let out = remove_config_key(text, key).unwrap();
        let mut expect = match parse_yaml(text).unwrap() {
            Value::Null => json!({}),
            d => d,
        };
        let segs: Vec<&str> = key.split('.').collect();
        remove_at(&mut expect, &segs);
        let got = match parse_yaml(&out).unwrap() {
            Value::Null => json!({}),
            d => d,
        };
        assert_eq!(got, expect, "result:\n{out}");
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
  auth:
    enabled: false # off for now
    tokens:
      - a
      - b
  port: 80

lifecycle:
  maxRestarts: 5 # only key
";

    #[test]
    fn removes_a_scalar_and_nothing_else() {
        assert_eq!(
            remove(BASE, "logging.level"),
            BASE.replace("  level: info   # default level\n", "")
        );
        assert_eq!(
            remove(BASE, "gateway.port"),
            BASE.replace("  port: 80\n", "")
        );
    }

    #[test]
    fn removes_a_nested_block_with_its_lines() {
        assert_eq!(
            remove(BASE, "gateway.auth"),
            BASE.replace(
                "  auth:\n    enabled: false # off for now\n    tokens:\n      - a\n      - b\n",
                ""
            )
        );
        assert_eq!(
            remove(BASE, "gateway.auth.tokens"),
            BASE.replace("    tokens:\n      - a\n      - b\n", "")
        );
    }

    #[test]
    fn a_mapping_left_empty_stays_a_mapping() {
        let out = remove(BASE, "lifecycle.maxRestarts");
        assert_eq!(
            out,
            BASE.replace(
                "lifecycle:\n  maxRestarts: 5 # only key\n",
                "lifecycle: {}\n"
            )
        );
        assert_eq!(parse_yaml(&out).unwrap()["lifecycle"], json!({}));
        let out = remove("k: # section\n  a: 1\n", "k.a");
        assert_eq!(out, "k: {} # section\n");
    }

    #[test]
    fn removes_a_whole_section() {
        let out = remove(BASE, "gateway");
        assert!(out.contains("# the gateway module\n\nlifecycle:"), "{out}");
        assert!(!out.contains("host:"), "{out}");
        // The last section of a file: comments before it stay, the document may become empty.
        assert_eq!(remove("# top\na: 1\n", "a"), "# top\n");
    }

    #[test]
    fn missing_keys_change_nothing() {
        for key in [
            "nope",
            "gateway.nope",
            "gateway.host.deeper",
            "logging.levels.x",
        ] {
            assert_eq!(remove_config_key(BASE, key).unwrap(), BASE, "{key}");
        }
        assert_eq!(remove_config_key("", "a").unwrap(), "");
    }

    #[test]
    fn flow_mappings_and_odd_layouts_fall_back() {
        let out = remove("# c\nk: {a: 1, b: 2}\nz: 1\n", "k.a");
        assert!(out.starts_with("# c\n") && out.ends_with("z: 1\n"), "{out}");
        let out = remove("k: {a: 1}\n", "k.a");
        assert_eq!(parse_yaml(&out).unwrap(), json!({"k": {}}));
        remove("a: &x {b: 1}\nc: *x\n", "a.b");
        remove("list:\n- a: 1\n  b: 2\nk: 1\n", "list");
    }

    #[test]
    fn refuses_unsafe_keys_and_bad_files() {
        assert!(remove_config_key(BASE, "gateway.__proto__").is_err());
        assert!(remove_config_key("- 1\n", "a").is_err());
        assert!(remove_config_key("a: [\n", "a").is_err());
    }

    #[test]
    fn crlf_files_keep_their_line_endings() {
        let text = "k:\r\n  a: 1\r\n  b: 2\r\n";
        assert_eq!(remove(text, "k.a"), "k:\r\n  b: 2\r\n");
        assert_eq!(remove("k:\r\n  a: 1\r\n", "k.a"), "k: {}\r\n");
    }
}
