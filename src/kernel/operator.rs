//! The control commands `call` and `publish` (`pons call`, `pons publish`): an RPC or a message
//! from the operator, routed by the router like a module's (see `router/operator.rs`).

use std::time::Duration;

use serde_json::json;
use serde_json::value::RawValue;

use super::Kernel;
use crate::control::api::{Request, Response};

/// Longest `timeoutMs` a `call` may ask for (24 h).
pub const MAX_CALL_TIMEOUT_MS: u64 = 86_400_000;

/// `call`: `{"cmd":"call","service","method","params"?,"timeoutMs"?}` → the provider's result as
/// `data`, or its error / the kernel's (`service_not_found`, `module_not_ready`, `timeout`) as
/// `error`.
pub async fn call(kernel: &Kernel, req: &Request) -> Response {
    let (Some(service), Some(method)) = (req.service.as_deref(), req.method.as_deref()) else {
        return Response::err("call needs \"service\" and \"method\"");
    };
    let timeout = match req.timeout_ms {
        None => None,
        Some(ms @ 1..=MAX_CALL_TIMEOUT_MS) => Some(Duration::from_millis(ms)),
        Some(ms) => {
            return Response::err(format!(
                "timeoutMs {ms} is out of range: give 1 to {MAX_CALL_TIMEOUT_MS} ms"
            ))
        }
    };
    let params = match raw(req.params.as_ref()) {
        Ok(p) => p,
        Err(e) => return Response::err(format!("params: {e}")),
    };
    let rx = {
        let mut core = kernel.core.lock();
        core.operator_rpc(service, method, params.as_deref(), timeout)
    };
    let rx = match rx {
        Ok(rx) => rx,
        Err(error) => return Response::err(error),
    };
    match rx.await {
        Ok(Ok(result)) => {
            let value = match result {
                None => serde_json::Value::Null,
                Some(raw) => match serde_json::from_str(raw.get()) {
                    Ok(v) => v,
                    Err(e) => return Response::err(format!("the provider's result: {e}")),
                },
            };
            Response::ok(value)
        }
        Ok(Err(error)) => Response::err(error),
        Err(_) => Response::err("the kernel is shutting down"),
    }
}

/// `publish`: `{"cmd":"publish","topic","payload"?}` → `{"topic","delivered":n}`.
pub fn publish(kernel: &Kernel, req: &Request) -> Response {
    let Some(topic) = req.topic.as_deref() else {
        return Response::err("publish needs \"topic\"");
    };
    if topic.is_empty() {
        return Response::err("publish needs a non-empty \"topic\"");
    }
    let payload = match raw(req.payload.as_ref()) {
        Ok(p) => p,
        Err(e) => return Response::err(format!("payload: {e}")),
    };
    let delivered = kernel
        .core
        .lock()
        .operator_publish(topic, payload.as_deref());
    match delivered {
        Ok(n) => Response::ok(json!({"topic": topic, "delivered": n})),
        Err(e) => Response::err(e),
    }
}

fn raw(value: Option<&serde_json::Value>) -> Result<Option<Box<RawValue>>, serde_json::Error> {
    value.map(serde_json::value::to_raw_value).transpose()
}
