//! Tests of the kernel → module encoders: exact shapes, escaping, absent keys, and that a
//! message the kernel relays decodes back to what the module sent.

use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::protocol::outbound as out;
use crate::protocol::{decode, Inbound};

/// Runs one encoder and checks it wrote exactly one compact line; returns it parsed.
fn one(f: impl FnOnce(&mut Vec<u8>)) -> Value {
    let mut buf = b"previous\n".to_vec();
    f(&mut buf);
    let text = std::str::from_utf8(&buf[b"previous\n".len()..]).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    let body = &text[..text.len() - 1];
    assert!(!body.contains('\n'), "{text:?}");
    let v: Value = serde_json::from_str(body).unwrap();
    // Compact: re-serializing (key order preserved) gives the same text.
    assert_eq!(serde_json::to_string(&v).unwrap(), body);
    v
}

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap()
}

#[test]
fn fixed_messages() {
    assert_eq!(one(out::install), json!({"type":"install"}));
    assert_eq!(one(out::deps_ready), json!({"type":"deps_ready"}));
    assert_eq!(one(out::shutdown), json!({"type":"shutdown"}));
    assert_eq!(one(out::ping), json!({"type":"ping"}));
}

#[test]
fn init_shape() {
    let config = json!({"models":{"a":[1,2],"b":"x\"y"}});
    let v = one(|b| out::init(b, &config, "/home/u/.pons"));
    assert_eq!(
        v,
        json!({"type":"init","protocolVersion":"1.0","config":config,
               "workspacePath":"/home/u/.pons","projectRoot":"/home/u/.pons"})
    );
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "type",
            "protocolVersion",
            "config",
            "workspacePath",
            "projectRoot"
        ]
    );
}

#[test]
fn service_available_and_config_update() {
    assert_eq!(
        one(|b| out::service_available(b, "http-router")),
        json!({"type":"service_available","service":"http-router"})
    );
    let cfg = json!({"k":{"port":8080}});
    assert_eq!(
        one(|b| out::config_update(b, &cfg, &["k".to_owned()])),
        json!({"type":"config:update","config":{"k":{"port":8080}},"changedSections":["k"]})
    );
}

#[test]
fn deliver_forwards_payload_bytes() {
    let payload = raw(r#"{"b":1,"a":[1.50,"\u00e9"]}"#);
    let mut buf = Vec::new();
    out::deliver(&mut buf, "u-1", "news", Some(&payload));
    assert_eq!(
        std::str::from_utf8(&buf).unwrap(),
        "{\"type\":\"deliver\",\"id\":\"u-1\",\"topic\":\"news\",\"payload\":{\"b\":1,\"a\":[1.50,\"\\u00e9\"]}}\n"
    );
    assert_eq!(
        one(|b| out::deliver(b, "u-2", "t", None)),
        json!({"type":"deliver","id":"u-2","topic":"t"})
    );
    assert_eq!(
        one(|b| out::deliver(b, "u-3", "t", Some(&raw("null")))),
        json!({"type":"deliver","id":"u-3","topic":"t","payload":null})
    );
}

#[test]
fn calls() {
    assert_eq!(
        one(|b| out::call(b, "k1", "health", Some(&raw("{\"x\":1}")))),
        json!({"type":"call","id":"k1","method":"health","params":{"x":1}})
    );
    assert_eq!(
        one(|b| out::call(b, "k1", "health", None)),
        json!({"type":"call","id":"k1","method":"health"})
    );
    assert_eq!(
        one(|b| out::call_response_ok(b, "c1", Some(&raw("[true]")))),
        json!({"type":"call:response","id":"c1","result":[true]})
    );
    assert_eq!(
        one(|b| out::call_response_ok(b, "c1", None)),
        json!({"type":"call:response","id":"c1"})
    );
    assert_eq!(
        one(|b| out::call_response_err(b, "c1", "Error: Unknown kernel method: foo")),
        json!({"type":"call:response","id":"c1","error":"Error: Unknown kernel method: foo"})
    );
}

#[test]
fn rpc_messages() {
    assert_eq!(
        one(|b| out::rpc_request(b, "uuid", "llm", "svc", "m", Some(&raw("{}")))),
        json!({"type":"rpc_request","id":"uuid","from":"llm","service":"svc","method":"m","params":{}})
    );
    assert_eq!(
        one(|b| out::rpc_request(b, "uuid", "llm", "svc", "m", None)),
        json!({"type":"rpc_request","id":"uuid","from":"llm","service":"svc","method":"m"})
    );
    assert_eq!(
        one(|b| out::rpc_response(b, "r1", Some(&raw("{\"ok\":true}")), None)),
        json!({"type":"rpc_response","id":"r1","result":{"ok":true}})
    );
    assert_eq!(
        one(|b| out::rpc_response(b, "r1", None, Some(&raw("{\"code\":5}")))),
        json!({"type":"rpc_response","id":"r1","error":{"code":5}})
    );
    assert_eq!(
        one(|b| out::rpc_response(b, "r1", None, None)),
        json!({"type":"rpc_response","id":"r1"})
    );
    assert_eq!(
        one(|b| out::rpc_error(b, "r1", "timeout")),
        json!({"type":"rpc_response","id":"r1","error":"timeout"})
    );
}

#[test]
fn strings_are_escaped() {
    let nasty = "q\"b\\s\n\r\t\u{1}\u{2028}é😀";
    let v = one(|b| out::rpc_request(b, nasty, nasty, nasty, nasty, None));
    for k in ["id", "from", "service", "method"] {
        assert_eq!(v[k], nasty);
    }
}

#[test]
fn relayed_rpc_round_trips() {
    // A provider's reply is decoded and relayed: result and error reach the caller unchanged.
    let line = br#"{"type":"rpc_response","id":"internal","result":{"n": 1.0e3},"error":null}"#;
    let Ok(Inbound::RpcResponse { result, error, .. }) = decode(line) else {
        panic!("decode failed")
    };
    let mut buf = Vec::new();
    out::rpc_response(&mut buf, "r1", result, error);
    assert_eq!(
        std::str::from_utf8(&buf).unwrap(),
        "{\"type\":\"rpc_response\",\"id\":\"r1\",\"result\":{\"n\": 1.0e3},\"error\":null}\n"
    );
    // A publish becomes a deliver with the same payload bytes.
    let line = br#"{"type":"publish","topic":"t","payload":[1, {"a":"\n"}]}"#;
    let Ok(Inbound::Publish { topic, payload }) = decode(line) else {
        panic!("decode failed")
    };
    buf.clear();
    out::deliver(&mut buf, "d", &topic, payload);
    assert!(buf.ends_with(b"\"payload\":[1, {\"a\":\"\\n\"}]}\n"));
}

#[test]
fn many_messages_append() {
    let mut buf = Vec::new();
    out::ping(&mut buf);
    out::deps_ready(&mut buf);
    out::rpc_error(&mut buf, "x", "forbidden");
    let lines: Vec<Value> = buf
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["error"], "forbidden");
}

#[test]
fn strings_are_written_exactly_as_serde_json_writes_them() {
    // Every ASCII byte at every position of an 8-byte word and in the tail, plus non-ASCII.
    let mut cases: Vec<String> = vec![String::new(), "héllo wörld ✓ 𝄞".into(), "\u{7f}".into()];
    for c in 0u8..128 {
        for pos in 0..11 {
            let mut s = "abcdefghijk"[..pos].to_string();
            s.push(c as char);
            s.push_str("xyz0123456789");
            cases.push(s);
        }
    }
    for s in &cases {
        let mut buf = Vec::new();
        out::rpc_error(&mut buf, s, s);
        let expected = format!(
            "{{\"type\":\"rpc_response\",\"id\":{0},\"error\":{0}}}\n",
            serde_json::to_string(s).unwrap()
        );
        assert_eq!(String::from_utf8(buf).unwrap(), expected, "{s:?}");
    }
}
