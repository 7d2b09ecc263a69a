//! Talking to the running kernel from a command: one control request, kernel errors turned into
//! CLI errors, "not running" as `None`.

use crate::control::api::{RawJson, Request};
use crate::control::client::{self, ClientError};
use crate::home::Home;

/// A request with only `cmd` set.
pub fn cmd(name: &str) -> Request {
    Request {
        cmd: name.to_string(),
        ..Request::default()
    }
}

/// Sends `req` to the kernel of `home`. `Ok(None)`: no kernel runs. `Ok(Some(data))`: the answer's
/// data (`null` when it had none). A refusal by the kernel is an error carrying its message.
pub fn call(
    home: &Home,
    req: &Request,
    on_progress: impl FnMut(&str),
) -> anyhow::Result<Option<serde_json::Value>> {
    Ok(call_raw(home, req, on_progress)?.map(|raw| raw.to_value()))
}

/// Like [`call`], the answer's data kept as the JSON text the kernel sent (`null` when it had
/// none): for answers decoded into a type or printed as they are.
pub fn call_raw(
    home: &Home,
    req: &Request,
    on_progress: impl FnMut(&str),
) -> anyhow::Result<Option<RawJson>> {
    match client::request(&home.socket(), req, on_progress) {
        Ok(resp) if resp.ok => Ok(Some(resp.data.unwrap_or_else(RawJson::null))),
        Ok(resp) => Err(anyhow::anyhow!(
            "the kernel refused `{}`: {}",
            req.cmd,
            resp.error.unwrap_or_else(|| "no reason given".into())
        )),
        Err(ClientError::NotRunning(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Like [`call`], but a missing kernel is an error telling how to start it.
pub fn call_running(
    home: &Home,
    req: &Request,
    on_progress: impl FnMut(&str),
) -> anyhow::Result<serde_json::Value> {
    call(home, req, on_progress)?.ok_or_else(not_running)
}

/// The error for commands that need a running kernel.
pub fn not_running() -> anyhow::Error {
    anyhow::anyhow!("the kernel is not running; start it with `pons kernel start`")
}
