//! Bounds on what one module `log` / `log-group` message may cost the kernel.
//!
//! Module log messages are handled on the routing path, under the router lock, so their cost
//! must not grow with what a module sends. The raw JSON of the message is never parsed whole
//! into values nor re-serialised: a group's `items` are scanned once (validated, nothing built)
//! and only the first [`MAX_GROUP_ITEMS`] items within [`MAX_GROUP_BYTES`] are kept, as their
//! original text, followed by a summary `"… N more items"`; a `data` longer than
//! [`MAX_DATA_BYTES`] is replaced by `{"dataOmittedBytes": N}`; a `msg` is cut at
//! [`MAX_MSG_BYTES`].

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Items of one `log-group` that are logged; the rest are counted.
pub const MAX_GROUP_ITEMS: usize = 1000;
/// Bytes of JSON text of the logged items of one `log-group`.
pub const MAX_GROUP_BYTES: usize = 64 << 10;
/// Bytes of a module log `data` logged as is.
pub const MAX_DATA_BYTES: usize = 64 << 10;
/// Bytes of a module log `msg` (and `topic`) logged; the rest is cut.
pub const MAX_MSG_BYTES: usize = 64 << 10;

/// The JSON array text of the items of a `log-group` that are logged: the first ones within the
/// caps, as sent, then `"… N more items"` when some were left out. `None` (no `items`) and
/// `null` give `[]`; a value that is not an array is one item.
pub fn group_items(items: Option<&RawValue>) -> String {
    let Some(raw) = items else {
        return "[]".into();
    };
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'[') => {}
        Some(b'n') => return "[]".into(),
        _ if text.len() <= MAX_GROUP_BYTES => return format!("[{text}]"),
        _ => return summary("", 1),
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match de.deserialize_seq(Scan { base: text }) {
        Ok(kept) => summary(&text[kept.start..kept.end], kept.omitted),
        // Not reached for a line the decoder accepted; said rather than dropped.
        Err(e) => format!(
            "[{}]",
            serde_json::Value::from(format!("… items unreadable: {e}"))
        ),
    }
}

/// `[<kept>,"… N more items"]`.
fn summary(kept: &str, omitted: u64) -> String {
    let mut out = String::with_capacity(kept.len() + 32);
    out.push('[');
    out.push_str(kept);
    if omitted > 0 {
        if !kept.is_empty() {
            out.push(',');
        }
        out.push_str(&format!("\"… {omitted} more items\""));
    }
    out.push(']');
    out
}

/// The byte range of the kept items within the array text, and how many were left out.
struct Kept {
    start: usize,
    end: usize,
    omitted: u64,
}

struct Scan<'de> {
    base: &'de str,
}

impl<'de> Visitor<'de> for Scan<'de> {
    type Value = Kept;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of log items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kept, A::Error> {
        let base = self.base.as_ptr() as usize;
        let mut kept = Kept {
            start: 0,
            end: 0,
            omitted: 0,
        };
        let mut n = 0usize;
        let mut keeping = true;
        while keeping {
            let Some(item) = seq.next_element::<&'de RawValue>()? else {
                return Ok(kept);
            };
            // The item's text is a slice of the array's text: its offset is where it starts.
            let start = item.get().as_ptr() as usize - base;
            let end = start + item.get().len();
            let first = if n == 0 { start } else { kept.start };
            if n < MAX_GROUP_ITEMS && end - first <= MAX_GROUP_BYTES {
                kept.start = first;
                kept.end = end;
                n += 1;
            } else {
                kept.omitted += 1;
                keeping = false;
            }
        }
        // Past the caps items are only skipped: nothing is built for them.
        while seq.next_element::<IgnoredAny>()?.is_some() {
            kept.omitted += 1;
        }
        Ok(kept)
    }
}

/// A module's `data` as JSON text to log: as sent, or `{"dataOmittedBytes":N}` when longer than
/// [`MAX_DATA_BYTES`].
pub fn data_text(data: Option<&RawValue>) -> std::borrow::Cow<'_, str> {
    match data {
        None => "null".into(),
        Some(d) if d.get().len() <= MAX_DATA_BYTES => d.get().into(),
        Some(d) => format!("{{\"dataOmittedBytes\":{}}}", d.get().len()).into(),
    }
}

/// `s` cut to at most `max` bytes (at a character boundary), saying how much was left out.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} more bytes)", &s[..cut], s.len() - cut).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    fn items(s: &str) -> serde_json::Value {
        serde_json::from_str(&group_items(Some(&raw(s)))).unwrap()
    }

    #[test]
    fn small_groups_are_kept_as_sent() {
        assert_eq!(
            group_items(Some(&raw(r#"[ {"msg":"a"} , "b" ]"#))),
            r#"[{"msg":"a"} , "b"]"#
        );
        assert_eq!(group_items(None), "[]");
        assert_eq!(group_items(Some(&raw("null"))), "[]");
        assert_eq!(group_items(Some(&raw("[]"))), "[]");
        assert_eq!(
            group_items(Some(&raw(r#"{"msg":"x"}"#))),
            r#"[{"msg":"x"}]"#
        );
    }

    #[test]
    fn items_are_capped_in_count() {
        let many = format!("[{}]", vec![r#"{"msg":"a"}"#; 5000].join(","));
        let v = items(&many);
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), MAX_GROUP_ITEMS + 1);
        assert_eq!(a[0]["msg"], "a");
        assert_eq!(a[MAX_GROUP_ITEMS], "… 4000 more items");
    }

    #[test]
    fn items_are_capped_in_bytes() {
        let item = format!("\"{}\"", "x".repeat(10_000));
        let many = format!("[{}]", vec![item.as_str(); 20].join(","));
        let a = items(&many);
        let a = a.as_array().unwrap();
        assert_eq!(a.len(), 7, "6 items of 10 KB fit in 64 KiB");
        assert_eq!(a[6], "… 14 more items");
        // One item bigger than the cap: nothing but the summary.
        let huge = format!("[\"{}\",1]", "y".repeat(MAX_GROUP_BYTES));
        assert_eq!(items(&huge), serde_json::json!(["… 2 more items"]));
        let single = format!("\"{}\"", "z".repeat(MAX_GROUP_BYTES));
        assert_eq!(items(&single), serde_json::json!(["… 1 more items"]));
    }

    #[test]
    fn data_and_msg_caps() {
        assert_eq!(data_text(None), "null");
        assert_eq!(data_text(Some(&raw(r#"{"a":1}"#))), r#"{"a":1}"#);
        let big = format!("\"{}\"", "d".repeat(MAX_DATA_BYTES));
        assert_eq!(
            data_text(Some(&raw(&big))),
            format!("{{\"dataOmittedBytes\":{}}}", MAX_DATA_BYTES + 2)
        );
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 3), "é… (4 more bytes)");
    }
}
