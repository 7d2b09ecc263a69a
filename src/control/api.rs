//! Types shared by the control server, the kernel and the CLI.

use serde::{Deserialize, Serialize};
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
    /// `status`: leave out what is costly to compute and only a full report needs (each
    /// module's `sandbox` block); `pons top` asks this way every second.
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

/// The final answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            ok: true,
            data: Some(data),
            error: None,
        }
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<serde_json::Value>,
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
}
