//! The module side of the wire format: builders for every module → kernel line (public, so
//! tests can write arbitrary messages) and the parser of kernel → module lines (internal).
//!
//! Every builder returns one compact JSON object **without** the trailing `\n`; pass it to
//! [`Ctx::send_line`](crate::Ctx::send_line), which adds the newline.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// Serializes a value as one compact line (no newline).
pub fn line(value: &Value) -> String {
    value.to_string()
}

/// `{"type":"ready","manifest":…}`
pub fn ready(manifest: &Value) -> String {
    line(&json!({"type": "ready", "manifest": manifest}))
}

/// `{"type":"publish","topic":…,"payload":…}` (`payload` absent when `None`).
pub fn publish(topic: &str, payload: Option<&Value>) -> String {
    let mut v = json!({"type": "publish", "topic": topic});
    if let Some(p) = payload {
        v["payload"] = p.clone();
    }
    line(&v)
}

/// `{"type":"rpc_request","id":…,"service":…,"method":…,"params":…}`
pub fn rpc_request(id: &str, service: &str, method: &str, params: Option<&Value>) -> String {
    let mut v = json!({"type": "rpc_request", "id": id, "service": service, "method": method});
    if let Some(p) = params {
        v["params"] = p.clone();
    }
    line(&v)
}

/// `{"type":"rpc_response","id":…,"result":…}`
pub fn rpc_response_ok(id: &str, result: &Value) -> String {
    line(&json!({"type": "rpc_response", "id": id, "result": result}))
}

/// `{"type":"rpc_response","id":…,"error":"…"}`
pub fn rpc_response_err(id: &str, error: &str) -> String {
    line(&json!({"type": "rpc_response", "id": id, "error": error}))
}

/// `{"type":"call","id":…,"method":…,"params":…}` (a call to the kernel API).
pub fn call(id: &str, method: &str, params: Option<&Value>) -> String {
    let mut v = json!({"type": "call", "id": id, "method": method});
    if let Some(p) = params {
        v["params"] = p.clone();
    }
    line(&v)
}

/// `{"type":"call:response","id":…,"result":…}` (reply to a kernel → module call).
pub fn call_response_ok(id: &str, result: &Value) -> String {
    line(&json!({"type": "call:response", "id": id, "result": result}))
}

/// `{"type":"call:response","id":…,"error":"…"}`
pub fn call_response_err(id: &str, error: &str) -> String {
    line(&json!({"type": "call:response", "id": id, "error": error}))
}

/// `{"type":"ack","id":…}`
pub fn ack(id: &str) -> String {
    line(&json!({"type": "ack", "id": id}))
}

/// `{"type":"nack","id":…,"error":"…"}`
pub fn nack(id: &str, error: &str) -> String {
    line(&json!({"type": "nack", "id": id, "error": error}))
}

/// `{"type":"log","level":…,"msg":…,"data":…}` (`data` absent when `None`).
pub fn log(level: &str, msg: &str, data: Option<&Value>) -> String {
    let mut v = json!({"type": "log", "level": level, "msg": msg});
    if let Some(d) = data {
        v["data"] = d.clone();
    }
    line(&v)
}

/// `{"type":"pong"}`
pub fn pong() -> String {
    r#"{"type":"pong"}"#.to_owned()
}

/// A kernel → module message as the reader thread sees it (only the fields the SDK uses).
#[derive(Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    pub ty: Cow<'a, str>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default, borrow)]
    pub payload: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub params: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub error: Option<&'a RawValue>,
    #[serde(default)]
    pub config: Option<Value>,
    #[serde(default, rename = "changedSections")]
    pub changed_sections: Option<Vec<String>>,
    #[serde(default, rename = "workspacePath")]
    pub workspace_path: Option<String>,
    #[serde(default, rename = "projectRoot")]
    pub project_root: Option<String>,
}

/// Turns a reply's `result`/`error` into the outcome a waiting caller gets: a truthy `error`
/// (not `null`, `false`, `0` or `""`) is an error (its text if it is a string, else its JSON);
/// otherwise the `result` (`null` when absent).
pub(crate) fn outcome(
    result: Option<&RawValue>,
    error: Option<&RawValue>,
) -> Result<Value, String> {
    if let Some(e) = error {
        match e.get() {
            "null" | "false" | "0" | "\"\"" => {}
            text => {
                return Err(match serde_json::from_str::<String>(text) {
                    Ok(s) => s,
                    Err(_) => text.to_owned(),
                })
            }
        }
    }
    match result {
        Some(r) => serde_json::from_str(r.get()).map_err(|e| format!("invalid result JSON: {e}")),
        None => Ok(Value::Null),
    }
}
