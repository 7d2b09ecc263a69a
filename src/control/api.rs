//! Types shared by the control server, the kernel and the CLI.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

/// One request line. `cmd` is one of [`COMMANDS`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub cmd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink: Option<bool>,
    /// `apply`: how long to wait for convergence. `call`: the RPC timeout (default: the
    /// kernel's `lifecycle.rpcTimeoutMs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// `status`: leave out each module's `sandbox` block (what `pons status` without `--json`,
    /// `pons top` and the commands that wait on a module's status ask for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<bool>,
    /// `call`: the service, method and params of an RPC made as the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// `publish`: the topic and payload of a message published as the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// The final answer to one request. `data` travels as JSON text: the kernel writes it once, and
/// the CLI decodes it straight into the type it needs (or prints it as it came).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<RawJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response::ok_raw(RawJson::from_value(&data))
    }
    /// An answer whose data is JSON text already (see [`RawJson`]).
    pub fn ok_raw(data: RawJson) -> Response {
        Response {
            ok: true,
            data: Some(data),
            error: None,
        }
    }
    /// The data as a JSON value (`null` when there is none).
    pub fn data_value(&self) -> serde_json::Value {
        self.data
            .as_ref()
            .map_or(serde_json::Value::Null, RawJson::to_value)
    }
    pub fn ok_empty() -> Response {
        Response {
            ok: true,
            data: None,
            error: None,
        }
    }
    pub fn err(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            data: None,
            error: Some(msg.into()),
        }
    }
}

/// A JSON value kept as its (compact) text: serialized as is, so a value computed once — a
/// module's sandbox report, a whole `status` answer — is neither rebuilt nor re-encoded on its
/// way out. Decoded only from JSON text (`serde_json::from_str` / `from_slice`), never from a
/// `serde_json::Value`.
#[derive(Debug, Clone)]
pub struct RawJson(Text);

/// Decoded text is owned (taken as it was read); [`RawJson::shared`] text is cloned by reference
/// count (a block handed out with every `status` answer).
#[derive(Debug, Clone)]
enum Text {
    Owned(Box<RawValue>),
    Shared(Arc<RawValue>),
}

impl RawJson {
    /// The compact JSON text of `v`.
    pub fn from_serialize(v: &impl Serialize) -> Result<RawJson, serde_json::Error> {
        serde_json::value::to_raw_value(v).map(|raw| RawJson(Text::Owned(raw)))
    }
    pub fn from_value(v: &serde_json::Value) -> RawJson {
        // A `Value` always serializes (its map keys are strings).
        RawJson::from_serialize(v).unwrap_or_else(|_| RawJson::null())
    }
    pub fn null() -> RawJson {
        RawJson(Text::Owned(RawValue::NULL.to_owned()))
    }
    /// The same text, cloned from now on by reference count.
    pub fn shared(self) -> RawJson {
        match self.0 {
            Text::Owned(b) => RawJson(Text::Shared(b.into())),
            shared => RawJson(shared),
        }
    }
    fn raw(&self) -> &RawValue {
        match &self.0 {
            Text::Owned(b) => b,
            Text::Shared(a) => a,
        }
    }
    pub fn get(&self) -> &str {
        self.raw().get()
    }
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw().serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawJson, D::Error> {
        Box::<RawValue>::deserialize(d).map(|raw| RawJson(Text::Owned(raw)))
    }
}

/// A progress line streamed before the final [`Response`] (used by `apply`):
/// `{"progress":"spawned gateway"}`. Clients print these and keep reading until a line with `ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub progress: String,
}

/// A request handed from the control server to the kernel.
#[derive(Debug)]
pub struct ControlCommand {
    pub request: Request,
    /// Progress lines for the client (may be ignored).
    pub progress: mpsc::UnboundedSender<String>,
    pub reply: oneshot::Sender<Response>,
}

/// `pons status --json`. Also the `data` of the `status` control command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub kernel: KernelStatus,
    pub modules: Vec<ModuleStatus>,
    pub services: Vec<ServiceEntry>,
    pub converged: bool,
    /// The cluster link (absent without a `cluster` section in config.yaml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::status::ClusterStatus>,
    /// pons extension: input errors (file + error) and pending changes in manual mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelStatus {
    pub running: bool,
    pub pid: Option<u32>,
    pub uptime_ms: Option<u64>,
    pub home: String,
    /// pons extension: `auto` or `manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleStatus {
    pub id: String,
    /// starting, waiting, ready, restarting, stopping, stopped, crashed, blocked.
    pub status: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub provides: Vec<String>,
    pub reason: Option<String>,
    /// Listed in `kernel.disabled` of config.yaml (as the kernel last read it).
    #[serde(default)]
    pub disabled: bool,
    /// The cause of the last failure, kept while the module restarts or is crashed; `null` once
    /// it has been ready for the reset period or was restarted on request.
    #[serde(default)]
    pub last_error: Option<String>,
    /// pons extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// Lines read from the module and messages queued for it, since the kernel started (over
    /// all its processes); `pons top` shows their rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgs_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgs_out: Option<u64>,
    /// What the module may touch (`sandbox::module_sandbox_report`), computed once per
    /// spawn; left out of summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<RawJson>,
}

impl ModuleStatus {
    /// A module the desired state does not run: `stopped` with "disabled in config.yaml" when it
    /// is disabled, else `blocked` with its reason.
    pub fn not_running(
        b: &pons_reconciler::desired::BlockedModule,
        disabled: bool,
    ) -> ModuleStatus {
        let status = match b.reason {
            pons_reconciler::desired::BlockReason::Disabled => "stopped",
            _ => "blocked",
        };
        ModuleStatus {
            id: b.id.clone(),
            status: status.into(),
            pid: None,
            restarts: 0,
            provides: Vec::new(),
            reason: Some(b.reason.to_string()),
            disabled,
            last_error: None,
            uptime_ms: None,
            dropped: None,
            msgs_in: None,
            msgs_out: None,
            sandbox: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    pub service: String,
    pub module: String,
    /// The node providing it, for another node's provider (cluster); absent for local ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Every command the control server accepts; anything else is answered
/// `{"ok":false,"error":"Unknown command: <cmd>"}` by the server without bothering the kernel.
pub const COMMANDS: &[&str] = &[
    "status",
    "plan",
    "apply",
    "stop",
    "module.list",
    "module.status",
    "module.restart",
    "module.install",
    "call",
    "publish",
];

/// `data` of the `plan` control command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanReply {
    /// The plan JSON of specs/cli.md (`render::plan_json`).
    pub json: serde_json::Value,
    /// The terraform-style rendering (`render::plan_text`).
    pub text: String,
    /// Whether the plan has anything to do (any action other than `blocked`).
    pub changes: bool,
}

/// `data` of the `apply` control command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    pub converged: bool,
    /// The actions the pass took, each in the plan JSON action shape
    /// (`{"action","module","reason","sections"?,"diff"?}`).
    pub actions: Vec<serde_json::Value>,
    /// Ids of the runnable modules that were not ready (or not in their desired state) when the
    /// pass ended or timed out.
    pub not_converged: Vec<String>,
    /// Those of `not_converged` that crashed again after the pass retried them (the answer then
    /// comes at once instead of at the timeout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crashed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_json_is_written_as_it_is_and_read_back_as_text() {
        let block = RawJson::from_value(&json!({"read": ["/a", "/b"], "abi": 7})).shared();
        let report = ModuleStatus {
            id: "m".into(),
            status: "ready".into(),
            sandbox: Some(block.clone()),
            ..ModuleStatus::default()
        };
        let text = serde_json::to_string(&report).unwrap();
        assert!(
            text.contains(r#""sandbox":{"read":["/a","/b"],"abi":7}"#),
            "{text}"
        );
        let back: ModuleStatus = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report, "owned and shared text compare by content");
        assert_eq!(back.sandbox.unwrap().to_value()["abi"], 7);
        // A summary has no block, and reads back without one.
        let summary: ModuleStatus =
            serde_json::from_str(&serde_json::to_string(&ModuleStatus::default()).unwrap())
                .unwrap();
        assert!(summary.sandbox.is_none());
    }

    #[test]
    fn a_response_keeps_its_data_as_text() {
        let resp = Response::ok(json!({"n": 1, "list": [true, null]}));
        let line = serde_json::to_string(&resp).unwrap();
        assert_eq!(line, r#"{"ok":true,"data":{"n":1,"list":[true,null]}}"#);
        let back: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(back, resp);
        assert_eq!(back.data_value()["list"][0], true);
        assert_eq!(Response::ok_empty().data_value(), serde_json::Value::Null);
    }
}
