//! Tests of [`decode`]: every module → kernel type, the validation reasons, odd input.

use std::borrow::Cow;

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::protocol::{decode, utf16_len, DecodeError, Inbound};

fn raw_text(raw: Option<&serde_json::value::RawValue>) -> Option<&str> {
    raw.map(|r| r.get())
}

fn reason(line: &str) -> String {
    match decode(line.as_bytes()) {
        Ok(m) => panic!("expected an error for {line}, got {m:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn ready_and_pong() {
    assert_eq!(
        decode(br#"{"type":"ready","manifest":{"id":"x"}}"#),
        Ok(Inbound::Ready)
    );
    assert_eq!(decode(br#"{"type":"pong"}"#), Ok(Inbound::Pong));
}

#[test]
fn publish_keeps_payload_raw() {
    let line = br#"{"type":"publish","topic":"a.b","payload":{"x": [1, 2.50, "\u00e9"]}}"#;
    match decode(line).unwrap() {
        Inbound::Publish { topic, payload } => {
            assert_eq!(topic, "a.b");
            assert!(matches!(topic, Cow::Borrowed(_)));
            assert_eq!(raw_text(payload), Some(r#"{"x": [1, 2.50, "\u00e9"]}"#));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn absent_and_null_payloads_differ() {
    match decode(br#"{"type":"publish","topic":"t"}"#).unwrap() {
        Inbound::Publish { payload, .. } => assert!(payload.is_none()),
        other => panic!("{other:?}"),
    }
    match decode(br#"{"type":"publish","topic":"t","payload":null}"#).unwrap() {
        Inbound::Publish { payload, .. } => assert_eq!(raw_text(payload), Some("null")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rpc_request_and_response() {
    let line = br#"{"type":"rpc_request","id":"r1","service":"svc","method":"m","params":[1],"from":"spoof"}"#;
    match decode(line).unwrap() {
        Inbound::RpcRequest {
            id,
            service,
            method,
            params,
        } => {
            assert_eq!((id.as_ref(), service.as_ref()), ("r1", "svc"));
            assert_eq!(method, "m");
            assert_eq!(raw_text(params), Some("[1]"));
        }
        other => panic!("{other:?}"),
    }
    match decode(br#"{"type":"rpc_response","id":"r1","result":{"ok":true}}"#).unwrap() {
        Inbound::RpcResponse { id, result, error } => {
            assert_eq!(id, "r1");
            assert_eq!(raw_text(result), Some(r#"{"ok":true}"#));
            assert!(error.is_none());
        }
        other => panic!("{other:?}"),
    }
    match decode(br#"{"type":"rpc_response","id":"r2","error":"boom"}"#).unwrap() {
        Inbound::RpcResponse { result, error, .. } => {
            assert!(result.is_none());
            assert_eq!(raw_text(error), Some(r#""boom""#));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn call_and_call_response() {
    match decode(br#"{"type":"call","id":"c1","method":"config.get","params":{"key":"k"}}"#)
        .unwrap()
    {
        Inbound::Call { id, method, params } => {
            assert_eq!((id.as_ref(), method.as_ref()), ("c1", "config.get"));
            assert_eq!(raw_text(params), Some(r#"{"key":"k"}"#));
        }
        other => panic!("{other:?}"),
    }
    match decode(br#"{"type":"call","id":"c2","method":"module.list"}"#).unwrap() {
        Inbound::Call { params, .. } => assert!(params.is_none()),
        other => panic!("{other:?}"),
    }
    match decode(br#"{"type":"call:response","id":"k1","result":5,"error":null}"#).unwrap() {
        Inbound::CallResponse { id, result, error } => {
            assert_eq!(id, "k1");
            assert_eq!(raw_text(result), Some("5"));
            assert_eq!(raw_text(error), Some("null"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn log_and_log_group() {
    match decode(br#"{"type":"log","level":"info","msg":"hi","data":{"a":1},"topic":"t"}"#).unwrap()
    {
        Inbound::Log {
            level,
            msg,
            data,
            topic,
        } => {
            assert_eq!(level.as_deref(), Some("info"));
            assert_eq!(msg.as_deref(), Some("hi"));
            assert_eq!(raw_text(data), Some(r#"{"a":1}"#));
            assert_eq!(topic.as_deref(), Some("t"));
        }
        other => panic!("{other:?}"),
    }
    // Nothing is validated in a log: odd field types degrade instead of failing.
    match decode(br#"{"type":"log","level":3,"msg":{"x":1}}"#).unwrap() {
        Inbound::Log {
            level, msg, data, ..
        } => {
            assert_eq!(level, None);
            assert_eq!(msg.as_deref(), Some(r#"{"x":1}"#));
            assert!(data.is_none());
        }
        other => panic!("{other:?}"),
    }
    match decode(br#"{"type":"log-group","level":"warn","msg":"h","items":[{"msg":"a"}]}"#).unwrap()
    {
        Inbound::LogGroup {
            level, msg, items, ..
        } => {
            assert_eq!(level.as_deref(), Some("warn"));
            assert_eq!(msg.as_deref(), Some("h"));
            assert_eq!(raw_text(items), Some(r#"[{"msg":"a"}]"#));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ack_and_nack() {
    assert_eq!(
        decode(br#"{"type":"ack","id":"d1"}"#),
        Ok(Inbound::Ack {
            id: Some("d1".into())
        })
    );
    assert_eq!(decode(br#"{"type":"ack"}"#), Ok(Inbound::Ack { id: None }));
    match decode(br#"{"type":"nack","id":"d1","error":"Error: x"}"#).unwrap() {
        Inbound::Nack { id, error } => {
            assert_eq!(id.as_deref(), Some("d1"));
            assert_eq!(raw_text(error), Some(r#""Error: x""#));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn escaped_strings_are_decoded() {
    match decode(br#"{"type":"publish","topic":"a\"b\\c\n\u00e9\ud83d\ude00"}"#).unwrap() {
        Inbound::Publish { topic, .. } => assert_eq!(topic, "a\"b\\c\n\u{e9}\u{1F600}"),
        other => panic!("{other:?}"),
    }
    // A lone surrogate is valid JSON; it becomes U+FFFD.
    match decode(br#"{"type":"publish","topic":"x\ud800y"}"#).unwrap() {
        Inbound::Publish { topic, .. } => assert_eq!(topic, "x\u{FFFD}y"),
        other => panic!("{other:?}"),
    }
    // Escaped keys count as their decoded name.
    assert!(matches!(
        decode(br#"{"typ\u0065":"pong"}"#),
        Ok(Inbound::Pong)
    ));
}

#[test]
fn duplicate_keys_last_wins() {
    match decode(br#"{"type":"bogus","topic":"a","type":"publish","topic":"b"}"#).unwrap() {
        Inbound::Publish { topic, .. } => assert_eq!(topic, "b"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_and_non_objects() {
    let err = decode(b"hello world").unwrap_err();
    assert!(err.is_plain_text());
    assert_eq!(
        err,
        DecodeError::InvalidJson {
            text: "hello world".into()
        }
    );
    assert!(decode(b"{\"type\":\"pong\"} trailing")
        .unwrap_err()
        .is_plain_text());
    assert!(decode(b"\xff\xfe{}").unwrap_err().is_plain_text());
    assert!(decode(b"").unwrap_err().is_plain_text());
    assert_eq!(reason("42"), "not an object");
    assert_eq!(reason("null"), "not an object");
    assert_eq!(reason("\"str\""), "not an object");
    assert_eq!(reason("true"), "not an object");
    assert_eq!(reason("[1,2]"), "unknown type: undefined");
    assert_eq!(reason("{}"), "unknown type: undefined");
}

#[test]
fn unknown_type_reasons() {
    assert_eq!(reason(r#"{"type":"bogus"}"#), "unknown type: bogus");
    assert_eq!(reason(r#"{"type":null}"#), "unknown type: null");
    assert_eq!(reason(r#"{"type":42}"#), "unknown type: 42");
    assert_eq!(
        reason(r#"{"type":{"a":1}}"#),
        "unknown type: [object Object]"
    );
    assert_eq!(reason(r#"{"type":[1,null,"x"]}"#), "unknown type: 1,,x");
    assert_eq!(reason(r#"{"type":"deliver"}"#), "unknown type: deliver");
    let long = "x".repeat(80);
    assert_eq!(
        reason(&format!(r#"{{"type":"{long}"}}"#)),
        format!("unknown type: {}", "x".repeat(50))
    );
}

#[test]
fn required_field_reasons_in_order() {
    assert_eq!(
        reason(r#"{"type":"rpc_request","id":1,"service":2}"#),
        "rpc_request: id is not a string"
    );
    assert_eq!(
        reason(r#"{"type":"rpc_request","id":"a","method":"m"}"#),
        "rpc_request: service is not a string"
    );
    assert_eq!(
        reason(r#"{"type":"rpc_request","id":"a","service":"s","method":null}"#),
        "rpc_request: method is not a string"
    );
    assert_eq!(
        reason(r#"{"type":"rpc_response"}"#),
        "rpc_response: id is not a string"
    );
    assert_eq!(
        reason(r#"{"type":"publish","topic":["t"]}"#),
        "publish: topic is not a string"
    );
    assert_eq!(
        reason(r#"{"type":"call","id":"c"}"#),
        "call: method is not a string"
    );
    assert_eq!(
        reason(r#"{"type":"call:response","id":7}"#),
        "call:response: id is not a string"
    );
}

#[test]
fn field_length_limits() {
    let ok = "t".repeat(256);
    assert!(decode(format!(r#"{{"type":"publish","topic":"{ok}"}}"#).as_bytes()).is_ok());
    let long = "t".repeat(257);
    assert_eq!(
        reason(&format!(r#"{{"type":"publish","topic":"{long}"}}"#)),
        "publish: topic exceeds 256 chars (257)"
    );
    let method = "m".repeat(300);
    assert_eq!(
        reason(&format!(
            r#"{{"type":"call","id":"c","method":"{method}"}}"#
        )),
        "call: method exceeds 256 chars (300)"
    );
    for (ty, extra) in [
        ("rpc_request", r#","service":"s","method":"m""#),
        ("rpc_response", ""),
        ("call", r#","method":"m""#),
        ("call:response", ""),
    ] {
        assert_eq!(
            reason(&format!(r#"{{"type":"{ty}","id":"{long}"{extra}}}"#)),
            format!("{ty}: id exceeds 256 chars (257)")
        );
    }
}

#[test]
fn lengths_count_utf16_units() {
    // 'é' is 2 bytes but 1 unit: 256 of them pass although they are 512 bytes.
    let e256 = "é".repeat(256);
    assert!(decode(format!(r#"{{"type":"publish","topic":"{e256}"}}"#).as_bytes()).is_ok());
    // An emoji is 4 bytes and 2 units: 128 pass, 129 are 258 units.
    let smile128 = "😀".repeat(128);
    assert!(decode(format!(r#"{{"type":"publish","topic":"{smile128}"}}"#).as_bytes()).is_ok());
    let smile129 = "😀".repeat(129);
    assert_eq!(
        reason(&format!(r#"{{"type":"publish","topic":"{smile129}"}}"#)),
        "publish: topic exceeds 256 chars (258)"
    );
    // Escapes count as the decoded character.
    let escaped = r"\u00e9".repeat(256);
    assert!(decode(format!(r#"{{"type":"publish","topic":"{escaped}"}}"#).as_bytes()).is_ok());
    assert_eq!(utf16_len("aé😀"), 4);
    assert_eq!(utf16_len(&"😀é".repeat(100)), 300);
}

#[test]
fn deep_payloads_are_fine() {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let line = format!(r#"{{"type":"publish","topic":"t","payload":{deep},"junk":{deep}}}"#);
    match decode(line.as_bytes()).unwrap() {
        Inbound::Publish { payload, .. } => assert_eq!(raw_text(payload), Some(deep.as_str())),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let line = br#"{"x":{"y":[1,{"z":null}]},"type":"ack","id":"1","extra":"e"}"#;
    assert_eq!(
        decode(line),
        Ok(Inbound::Ack {
            id: Some("1".into())
        })
    );
}

#[test]
fn type_names_round_trip() {
    for line in [
        r#"{"type":"ready"}"#,
        r#"{"type":"log"}"#,
        r#"{"type":"log-group"}"#,
        r#"{"type":"ack"}"#,
        r#"{"type":"nack"}"#,
        r#"{"type":"publish","topic":"t"}"#,
        r#"{"type":"call","id":"i","method":"m"}"#,
        r#"{"type":"call:response","id":"i"}"#,
        r#"{"type":"pong"}"#,
        r#"{"type":"rpc_request","id":"i","service":"s","method":"m"}"#,
        r#"{"type":"rpc_response","id":"i"}"#,
    ] {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(decode(line.as_bytes()).unwrap().type_name(), v["type"]);
    }
}

proptest! {
    #[test]
    fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_json_like(s in r#"[\{\}\[\]":,a-z0-9\\u \-.]{0,200}"#) {
        let _ = decode(s.as_bytes());
        let line = format!(r#"{{"type":"publish","topic":"{s}","payload":{s}}}"#);
        let _ = decode(line.as_bytes());
    }

    #[test]
    fn string_fields_round_trip(topic in ".{0,300}") {
        let line = serde_json::to_string(&json!({"type":"publish","topic":topic})).unwrap();
        match decode(line.as_bytes()) {
            Ok(Inbound::Publish { topic: t, .. }) => {
                prop_assert_eq!(t.as_ref(), topic.as_str());
                prop_assert!(topic.encode_utf16().count() <= 256);
            }
            Err(DecodeError::TooLong { len, .. }) => {
                prop_assert_eq!(len, topic.encode_utf16().count());
                prop_assert!(len > 256);
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

#[test]
fn plain_acks_decode_like_any_other_ack() {
    let ok = |line: &str, id: &str| match decode(line.as_bytes()) {
        Ok(Inbound::Ack { id: Some(got) }) => assert_eq!(got, id, "{line}"),
        other => panic!("{line}: {other:?}"),
    };
    ok(
        r#"{"type":"ack","id":"6c1f0a52-8f5e-4a57-9d0b-2f1f6e9b3c11"}"#,
        "6c1f0a52-8f5e-4a57-9d0b-2f1f6e9b3c11",
    );
    ok(r#"{"type":"ack","id":""}"#, "");
    ok(r#"{"type":"ack","id":"ü ✓"}"#, "ü ✓");
    ok(r#"{"type":"ack","id":"a\"b"}"#, "a\"b");
    ok(r#"{"type":"ack","id":"a\\b"}"#, "a\\b");
    ok(r#"{"type":"ack", "id":"x"}"#, "x");
    for bad in [
        r#"{"type":"ack","id":"a"b"}"#,
        r#"{"type":"ack","id":"x"}}"#,
        "{\"type\":\"ack\",\"id\":\"a\u{1}b\"}",
    ] {
        assert!(decode(bad.as_bytes()).is_err(), "{bad}");
    }
    let mut invalid_utf8 = br#"{"type":"ack","id":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, b'"', b'}']);
    assert!(matches!(
        decode(&invalid_utf8),
        Err(DecodeError::InvalidJson { .. })
    ));
}
