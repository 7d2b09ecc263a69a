//! Kernel → module messages: each function appends exactly one compact JSON
//! object and `\n` to a caller-owned buffer.
//!
//! Strings are escaped by serde_json; raw payloads are copied as received, never re-encoded.
//! An absent optional field means the key is absent on the wire, as with `JSON.stringify` of
//! `undefined`. Writing into a `Vec<u8>` cannot fail, so these functions return nothing.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::PROTOCOL_VERSION;

/// `{"type":"install"}`
pub fn install(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"{\"type\":\"install\"}\n");
}

/// `{"type":"init","protocolVersion":"1.0","config":…,"workspacePath":…,"projectRoot":…}`;
/// `workspacePath` and `projectRoot` are both the home directory.
pub fn init(buf: &mut Vec<u8>, config: &Value, workspace: &str) {
    buf.extend_from_slice(b"{\"type\":\"init\",\"protocolVersion\":");
    json(buf, PROTOCOL_VERSION);
    buf.extend_from_slice(b",\"config\":");
    json(buf, config);
    buf.extend_from_slice(b",\"workspacePath\":");
    string(buf, workspace);
    buf.extend_from_slice(b",\"projectRoot\":");
    string(buf, workspace);
    end(buf);
}

/// `{"type":"deps_ready"}`
pub fn deps_ready(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"{\"type\":\"deps_ready\"}\n");
}

/// `{"type":"service_available","service":…}`
pub fn service_available(buf: &mut Vec<u8>, service: &str) {
    buf.extend_from_slice(b"{\"type\":\"service_available\",\"service\":");
    string(buf, service);
    end(buf);
}

/// `{"type":"shutdown"}`
pub fn shutdown(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"{\"type\":\"shutdown\"}\n");
}

/// `{"type":"ping"}`
pub fn ping(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"{\"type\":\"ping\"}\n");
}

/// `{"type":"deliver","id":…,"topic":…,"payload":…}` (`payload` absent when `None`).
pub fn deliver(buf: &mut Vec<u8>, id: &str, topic: &str, payload: Option<&RawValue>) {
    buf.extend_from_slice(b"{\"type\":\"deliver\",\"id\":");
    string(buf, id);
    buf.extend_from_slice(b",\"topic\":");
    string(buf, topic);
    raw_field(buf, b",\"payload\":", payload);
    end(buf);
}

/// `{"type":"config:update","config":…,"changedSections":[…]}`
pub fn config_update(buf: &mut Vec<u8>, config: &Value, changed: &[String]) {
    buf.extend_from_slice(b"{\"type\":\"config:update\",\"config\":");
    json(buf, config);
    buf.extend_from_slice(b",\"changedSections\":");
    json(buf, changed);
    end(buf);
}

/// `{"type":"call","id":…,"method":…,"params":…}` (kernel calling a module method).
pub fn call(buf: &mut Vec<u8>, id: &str, method: &str, params: Option<&RawValue>) {
    buf.extend_from_slice(b"{\"type\":\"call\",\"id\":");
    string(buf, id);
    buf.extend_from_slice(b",\"method\":");
    string(buf, method);
    raw_field(buf, b",\"params\":", params);
    end(buf);
}

/// `{"type":"call:response","id":…,"result":…}` (`result` absent when `None`).
pub fn call_response_ok(buf: &mut Vec<u8>, id: &str, result: Option<&RawValue>) {
    buf.extend_from_slice(b"{\"type\":\"call:response\",\"id\":");
    string(buf, id);
    raw_field(buf, b",\"result\":", result);
    end(buf);
}

/// `{"type":"call:response","id":…,"error":"<text>"}`
pub fn call_response_err(buf: &mut Vec<u8>, id: &str, error: &str) {
    buf.extend_from_slice(b"{\"type\":\"call:response\",\"id\":");
    string(buf, id);
    buf.extend_from_slice(b",\"error\":");
    string(buf, error);
    end(buf);
}

/// `{"type":"rpc_request","id":…,"from":…,"service":…,"method":…,"params":…}`
pub fn rpc_request(
    buf: &mut Vec<u8>,
    id: &str,
    from: &str,
    service: &str,
    method: &str,
    params: Option<&RawValue>,
) {
    buf.extend_from_slice(b"{\"type\":\"rpc_request\",\"id\":");
    string(buf, id);
    buf.extend_from_slice(b",\"from\":");
    string(buf, from);
    buf.extend_from_slice(b",\"service\":");
    string(buf, service);
    buf.extend_from_slice(b",\"method\":");
    string(buf, method);
    raw_field(buf, b",\"params\":", params);
    end(buf);
}

/// `{"type":"rpc_response","id":…,"result":…,"error":…}`: a provider's reply relayed to the
/// caller with `result` and `error` exactly as the provider sent them.
pub fn rpc_response(
    buf: &mut Vec<u8>,
    id: &str,
    result: Option<&RawValue>,
    error: Option<&RawValue>,
) {
    buf.extend_from_slice(b"{\"type\":\"rpc_response\",\"id\":");
    string(buf, id);
    raw_field(buf, b",\"result\":", result);
    raw_field(buf, b",\"error\":", error);
    end(buf);
}

/// `{"type":"rpc_response","id":…,"error":"<text>"}`: a kernel-generated RPC error.
pub fn rpc_error(buf: &mut Vec<u8>, id: &str, error: &str) {
    buf.extend_from_slice(b"{\"type\":\"rpc_response\",\"id\":");
    string(buf, id);
    buf.extend_from_slice(b",\"error\":");
    string(buf, error);
    end(buf);
}

/// Appends `s` as a JSON string literal. Strings with nothing to escape (ids, topics, service and
/// method names: nearly all of them) are copied as they are, which gives exactly what serde_json
/// writes (it escapes only `"`, `\\` and control characters) at a fraction of its per-byte cost.
#[inline]
fn string(buf: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        json(buf, s);
    } else {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    }
}

/// Whether `b` holds a control character, `"` or `\\`; eight bytes per step.
#[inline]
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero (or, for `x - k*ONES`, below k) exactly where this sets its high bit;
    // bytes ≥ 0x80 (UTF-8 beyond ASCII) never need escaping and are masked out by `!w`.
    let hit = |w: u64| {
        let lt_space = w.wrapping_sub(0x20 * ONES) & !w;
        let q = w ^ (b'"' as u64 * ONES);
        let bs = w ^ (b'\\' as u64 * ONES);
        (lt_space | (q.wrapping_sub(ONES) & !q) | (bs.wrapping_sub(ONES) & !bs)) & HIGH != 0
    };
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if hit(u64::from_le_bytes(w)) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// Appends `value` as compact JSON.
fn json<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    // Serializing strings and `Value`s into a Vec<u8> cannot fail.
    let _ = serde_json::to_writer(&mut *buf, value);
}

fn raw_field(buf: &mut Vec<u8>, key: &[u8], raw: Option<&RawValue>) {
    if let Some(raw) = raw {
        buf.extend_from_slice(key);
        buf.extend_from_slice(raw.get().as_bytes());
    }
}

fn end(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"}\n");
}
