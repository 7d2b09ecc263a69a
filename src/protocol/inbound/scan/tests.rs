//! The scanner against serde_json: whatever it accepts, serde_json accepts with the same fields;
//! the common shapes never need serde_json.

use proptest::prelude::*;

use super::envelope;
use crate::protocol::inbound::{Envelope, Top};

/// The raw text of every field.
fn fields<'a>(e: &Envelope<'a>) -> [Option<&'a str>; 13] {
    let raw = |f: Option<&'a serde_json::value::RawValue>| f.map(|r| r.get());
    [
        e.ty,
        e.id,
        e.topic,
        e.service,
        e.method,
        e.level,
        e.msg,
        raw(e.params),
        raw(e.payload),
        raw(e.result),
        raw(e.error),
        raw(e.data),
        raw(e.items),
    ]
}

/// Fails if the scanner accepts `text` where serde_json does not, or with other fields.
fn agrees(text: &str) -> Result<(), TestCaseError> {
    if let Some(fast) = envelope(text) {
        match serde_json::from_str::<Top<'_>>(text) {
            Ok(Top::Object(general)) => {
                prop_assert_eq!(fields(&fast), fields(&general), "{}", text)
            }
            Ok(_) => prop_assert!(false, "scanned a non-object: {text}"),
            Err(e) => prop_assert!(false, "scanned what serde_json refuses ({e}): {text}"),
        }
    }
    Ok(())
}

const LINES: &[&str] = &[
    r#"{"type":"publish","topic":"a:b","payload":{"seq":1,"pad":"xxxxxxxx"}}"#,
    r#"{"type":"rpc_request","id":"c-1","service":"svc","method":"echo","params":{"pad":"x"}}"#,
    r#"{"type":"rpc_response","id":"k-12","result":{"echo":[1,-2.5e+3,true,false,null],"s":"q\"\\\/\b\f\n\r\t\u00e9"},"error":null}"#,
    r#"{"type":"ack","id":"6c1f0a52-8f5e-4a57-9d0b-2f1f6e9b3c11","extra":[{},[],""]}"#,
    r#"{ "type" : "log" , "level":"warn","msg":"héllo ✓","data":{"a":{"b":{"c":[0.5,1E9,-0]}}} }"#,
    r#"{"type":"call","id":"1","method":"config.get","params":null,"type":"nack"}"#,
    r#"{}"#,
];

/// Bytes that make or break JSON.
const SPECIAL: &[u8] = b"\"\\{}[],:0-.eE+ \tu1tfnx\x01/";

#[test]
fn every_mutation_of_the_sample_lines_agrees_with_serde_json() {
    let mut scanned = 0;
    let mut variants = 0;
    for line in LINES {
        let b = line.as_bytes();
        let mut check = |v: Vec<u8>| {
            if let Ok(text) = String::from_utf8(v) {
                variants += 1;
                if envelope(&text).is_some() {
                    scanned += 1;
                }
                agrees(&text).unwrap();
            }
        };
        for i in 0..=b.len() {
            check(b[..i].to_vec());
            if i < b.len() {
                check([&b[..i], &b[i + 1..]].concat());
            }
            for &c in SPECIAL {
                check([&b[..i], &[c], &b[i..]].concat());
                if i < b.len() {
                    check([&b[..i], &[c], &b[i + 1..]].concat());
                }
            }
        }
    }
    // Most variants are broken; a fair share must still take the fast path.
    assert!(scanned > variants / 20, "{scanned} of {variants} scanned");
}

#[test]
fn the_common_shapes_are_scanned() {
    for line in LINES {
        assert!(envelope(line).is_some(), "{line}");
    }
    let e = envelope(LINES[0]).expect("publish");
    assert_eq!(
        e.payload.map(|r| r.get()),
        Some(r#"{"seq":1,"pad":"xxxxxxxx"}"#)
    );
    assert_eq!(e.ty, Some(r#""publish""#));
    // Duplicate keys: the last one wins.
    let e = envelope(LINES[5]).expect("call");
    assert_eq!(e.ty, Some(r#""nack""#));
}

#[test]
fn what_the_general_parser_decides() {
    for text in [
        r#"{"typ\u0065":"ready"}"#, // escaped key
        r#"{"a\"b":1}"#,            // escaped key
        r#"[1,2]"#,                 // not an object
        r#""x""#,                   // not an object
        r#"{"type":"ready"} x"#,    // trailing text
        r#"{"type":"ready",}"#,     // trailing comma
        r#"{"n":01}"#,              // leading zero
        r#"{"n":1.}"#,              // no fraction digits
        r#"{"n":-}"#,               // no digits
        r#"{"n":1e}"#,              // no exponent digits
        "{\"s\":\"a\u{1}b\"}",      // control character
        r#"{"s":"\x"}"#,            // bad escape
        r#"{"s":"\u12G4"}"#,        // bad hex
        r#"{"s":"abc"#,             // unterminated
        r#"{"t":tru}"#,             // bad literal
    ] {
        assert!(envelope(text).is_none(), "{text}");
    }
    let deep = format!("{{\"d\":{}{}}}", "[".repeat(64), "]".repeat(64));
    assert!(envelope(&deep).is_none(), "nesting past MAX_DEPTH");
    let ok = format!("{{\"d\":{}{}}}", "[".repeat(63), "]".repeat(63));
    assert!(envelope(&ok).is_some(), "nesting up to MAX_DEPTH");
    // The same for a value the kernel forwards as it is.
    let deep = format!("{{\"payload\":{}{}}}", "[".repeat(64), "]".repeat(64));
    assert!(
        envelope(&deep).is_none(),
        "a forwarded value past MAX_DEPTH"
    );
    let ok = format!("{{\"payload\":{}{}}}", "[".repeat(63), "]".repeat(63));
    let e = envelope(&ok).expect("a forwarded value up to MAX_DEPTH");
    assert_eq!(e.payload.map(|r| r.get().len()), Some(126));
    // Deeper than serde_json takes inside an object (127 levels), though not alone: the
    // general parser refuses the line, and so must the scanner.
    let deep = format!("{{\"result\":{}{}}}", "[".repeat(127), "]".repeat(127));
    assert!(
        serde_json::from_str::<&serde_json::value::RawValue>(&deep[10..deep.len() - 1]).is_ok()
    );
    assert!(
        envelope(&deep).is_none(),
        "what serde_json refuses in a line"
    );
}

/// The serde_json in Cargo.lock still takes its private marker ([`super::marker_raw`]): forwarded
/// values are lent as they were scanned, not read a second time. If this fails after a serde_json
/// update, decoding is still correct (through `serde_json::from_str`), only slower: see
/// `scan::raw`.
#[test]
fn raw_values_are_lent_without_a_second_read() {
    for json in [
        r#"{"seq":1,"pad":"xxxxxxxx"}"#,
        "[1,2]",
        "\"s\"",
        "-0.5e3",
        "null",
        "true",
    ] {
        let raw = super::marker_raw(json).expect("serde_json takes the private RawValue marker");
        assert!(
            std::ptr::eq(raw.get(), json),
            "borrowed, not copied: {json}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Strings over JSON's structural alphabet, mostly invalid, some valid.
    #[test]
    fn arbitrary_json_like_text_agrees(body in r#"[{}\[\]",:0-9.eE+\- \\ntrufalsu"/a-f\x01]{0,40}"#) {
        agrees(&format!("{{{body}"))?;
        agrees(&format!("{{\"type\":{body}}}"))?;
        agrees(&format!("{{\"a\":[{body}]}}"))?;
    }

    /// Valid JSON values (as serde_json writes them) under a known and an unknown key.
    #[test]
    fn valid_values_are_scanned_and_agree(v in json_value()) {
        let text = serde_json::to_string(&v).expect("serialize");
        for line in [format!(r#"{{"type":"publish","payload":{text}}}"#),
                     format!(r#"{{"x":{text},"id":"1"}}"#)] {
            prop_assert!(envelope(&line).is_some(), "{}", line);
            agrees(&line)?;
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
