//! Kernel calls (module → kernel `call`, the reference kernel's behaviour): answered with `call:response` carrying
//! the caller's id. Config access is scoped to the caller's own section; refusals are
//! `security.violation`s (strict mode: the caller goes through the restart path).
//!
//! `config.set` validates the edited section against the module's JSON Schema before it writes
//! config.yaml (locked read-modify-write, minimal edit); the pass it requests pushes
//! `config:update`. `permissions.*` read permissions.yaml from disk; a new runtime request is
//! recorded with the same locked read-modify-write, logged and announced on
//! `kernel.permissions.pending`. A module only ever sees its own pending requests.

use std::collections::BTreeMap;
use std::sync::Arc;

use pons_reconciler::config::EnforcementMode;
use pons_reconciler::desired::BlockReason;
use pons_reconciler::permissions::{PermissionSet, PermissionsFile, RequestOutcome};
use pons_reconciler::snapshot::FileRead;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::reconcile::{request_pass, PassKind};
use super::Kernel;
use crate::protocol::outbound;

/// The answer to a call: a result (possibly absent), or an error text (`Error: …`).
type CallResult = Result<Option<Value>, String>;

pub async fn handle(
    kernel: Arc<Kernel>,
    module: Arc<str>,
    gen: u64,
    id: String,
    method: String,
    params: Option<Box<RawValue>>,
    // Frees the caller's call slot once answered.
    _slot: super::router::CallSlot,
) {
    let params: Option<Value> = params.and_then(|p| serde_json::from_str(p.get()).ok());
    let result = dispatch(&kernel, &module, &method, params.as_ref()).await;
    let core = kernel.core.lock();
    if core.modules.get(&module).is_none_or(|e| e.gen != gen) {
        return;
    }
    match result {
        Ok(v) => {
            let raw = v.and_then(|v| serde_json::value::to_raw_value(&v).ok());
            core.send(&module, |b| {
                outbound::call_response_ok(b, &id, raw.as_deref())
            });
        }
        Err(e) => {
            core.send(&module, |b| outbound::call_response_err(b, &id, &e));
        }
    }
}

async fn dispatch(
    kernel: &Arc<Kernel>,
    module: &Arc<str>,
    method: &str,
    params: Option<&Value>,
) -> CallResult {
    match method {
        "module.list" => Ok(Some(module_list(kernel))),
        "module.commands" => {
            let core = kernel.core.lock();
            let mut ids: Vec<_> = core.modules.keys().cloned().collect();
            ids.sort();
            let mut out = Vec::new();
            for id in ids {
                if let Some(e) = core.modules.get(&id) {
                    for c in &e.desired.manifest.commands {
                        let mut c = c.clone();
                        if let Some(obj) = c.as_object_mut() {
                            obj.insert("moduleId".into(), json!(&*id));
                        }
                        out.push(c);
                    }
                }
            }
            Ok(Some(Value::Array(out)))
        }
        "service.discover" => Ok(Some(service_list(kernel))),
        "service.resolve" => {
            let svc = params
                .and_then(|p| p.get("service"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let core = kernel.core.lock();
            match core.registered.get(svc).or_else(|| core.declared.get(svc)) {
                Some(m) => Ok(Some(json!(&**m))),
                None => Err(format!("Error: Service not found: {svc}")),
            }
        }
        "monitor.snapshot" => {
            let pending = own_pending(kernel, module).await;
            Ok(Some(json!({
                "modules": module_list(kernel),
                "services": service_list(kernel),
                "pending": pending,
                "uptime": kernel.started.elapsed().as_millis() as u64,
            })))
        }
        "permissions.check" => permissions_check(kernel, module, params).await,
        "permissions.request" => permissions_request(kernel, module, params).await,
        "permissions.pending" => Ok(Some(own_pending(kernel, module).await)),
        "config.get" => config_get(kernel, module, params),
        "config.set" => config_set(kernel, module, params).await,
        "config.sections" => {
            let core = kernel.core.lock();
            let key = core
                .modules
                .get(module)
                .and_then(|e| e.desired.manifest.config_key.clone());
            Ok(Some(match key {
                Some(k) => json!([{"key": k, "moduleId": &**module}]),
                None => json!([]),
            }))
        }
        other => Err(format!("Error: Unknown kernel method: {other}")),
    }
}

fn module_list(kernel: &Kernel) -> Value {
    Value::Array(super::observe::module_list(kernel))
}

fn service_list(kernel: &Kernel) -> Value {
    let core = kernel.core.lock();
    Value::Array(
        core.registered
            .iter()
            .map(|(s, m)| json!({"service": s, "moduleId": &**m}))
            .collect(),
    )
}

/// the reference kernel's behaviour `checkConfig`: returns Err(error text) when access is refused.
fn check_key(
    kernel: &Kernel,
    module: &Arc<str>,
    key: Option<&str>,
    verb: &str,
) -> Result<(), String> {
    let core = kernel.core.lock();
    let config_key = core
        .modules
        .get(module)
        .and_then(|e| e.desired.manifest.config_key.clone());
    let bad = match key {
        None | Some("") | Some(".") | Some("..") => true,
        Some(k) => {
            k.split('.')
                .any(|s| matches!(s, ".." | "__proto__" | "constructor" | "prototype"))
                || k.split('.').next() != config_key.as_deref()
        }
    };
    if !bad {
        return Ok(());
    }
    let target = key.unwrap_or("");
    match core.settings.enforcement {
        EnforcementMode::Strict => {
            tracing::error!(moduleId = %module, action = "deny", target = %target, "security.violation");
            core.fail_violation(module, format!("config:{target}"));
            Err(format!(
                "Error: Security violation: not permitted to {verb} config key \"{target}\""
            ))
        }
        EnforcementMode::Warn => {
            tracing::warn!(moduleId = %module, action = "warn", target = %target, "security.violation");
            Ok(())
        }
        EnforcementMode::Off => Ok(()),
    }
}

fn config_get(kernel: &Kernel, module: &Arc<str>, params: Option<&Value>) -> CallResult {
    let Some(params) = params else {
        return Err("TypeError: Cannot read properties of undefined (reading 'key')".into());
    };
    let key = params.get("key").and_then(Value::as_str);
    check_key(kernel, module, key, "read")?;
    let key = key.unwrap_or_default();
    let st = kernel.state.lock();
    let Some(desired) = st.desired.clone() else {
        return Ok(None);
    };
    drop(st);
    let mut segs = key.split('.');
    let first = segs.next().unwrap_or_default();
    // The caller's own section is the interpolated one it was sent; others as written.
    let own = desired
        .modules
        .get(&**module)
        .filter(|d| d.manifest.config_key.as_deref() == Some(first))
        .and_then(|d| d.config_section.clone());
    let mut cur = match own {
        Some(v) => v,
        None => match desired.config_raw.get(first) {
            Some(v) => v.clone(),
            None => return Ok(None),
        },
    };
    for s in segs {
        match cur.get(s) {
            Some(v) => cur = v.clone(),
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

async fn config_set(kernel: &Arc<Kernel>, module: &Arc<str>, params: Option<&Value>) -> CallResult {
    let Some(params) = params else {
        return Err("TypeError: Cannot read properties of undefined (reading 'key')".into());
    };
    let key = params.get("key").and_then(Value::as_str);
    if let Some(first) = key.and_then(|k| k.split('.').next()) {
        if pons_reconciler::config::is_protected(first) {
            let core = kernel.core.lock();
            tracing::error!(moduleId = %module, action = "deny", target = %key.unwrap_or(""), "security.violation");
            if core.settings.enforcement == EnforcementMode::Strict {
                core.fail_violation(module, format!("config:{}", key.unwrap_or("")));
            }
            return Err(format!(
                "Error: Security violation: section \"{first}\" is protected and cannot be modified by modules"
            ));
        }
    }
    check_key(kernel, module, key, "write")?;
    let key = key.unwrap_or_default().to_string();
    let value = params.get("value").cloned().unwrap_or(Value::Null);
    let coerced = match &value {
        Value::String(s) => pons_reconciler::config::coerce(s),
        other => other.clone(),
    };
    let home = kernel.home.clone();
    let to_write = coerced.clone();
    let k = key.clone();
    let owner = module.to_string();
    let res = tokio::task::spawn_blocking(move || {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let mut snap = crate::snapshot_io::read_snapshot(&home, &env);
        crate::store::update_config_text(&home, |text| {
            let new = crate::store::set_config_key(text, &k, &to_write)?;
            if new != text {
                snap.config_yaml = FileRead::Bytes(new.clone().into_bytes());
                if let Some(msg) = section_invalid(&snap, &owner) {
                    return Err(anyhow::Error::new(Invalid(msg)));
                }
            }
            Ok(new)
        })
    })
    .await;
    match res {
        Ok(Ok(())) => {
            let _ = request_pass(kernel, PassKind::Signal, None).await;
            Ok(Some(json!({"success": true, "coerced": coerced})))
        }
        Ok(Err(e)) => {
            let error = match e.downcast_ref::<Invalid>() {
                Some(Invalid(msg)) => msg.clone(),
                None => format!("{e:#}"),
            };
            Ok(Some(json!({"success": false, "error": error})))
        }
        Err(e) => Ok(Some(json!({"success": false, "error": e.to_string()}))),
    }
}

/// A `config.set` refused by the module's schema (the message is the call's `error`).
#[derive(Debug)]
struct Invalid(String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// Whether `owner`'s config section fails interpolation or its schema in the desired state of
/// `snap` (built as the next pass would): `Validation failed at <section><pointer>: <msg>`.
fn section_invalid(snap: &pons_reconciler::Snapshot, owner: &str) -> Option<String> {
    let desired = pons_reconciler::build_desired(snap, None);
    desired
        .blocked
        .iter()
        .find(|b| b.id == owner)
        .and_then(|b| match &b.reason {
            BlockReason::InvalidConfig { section, errors } => Some(
                errors
                    .iter()
                    .map(|e| match e.strip_prefix("/: ") {
                        Some(rest) => format!("Validation failed at {section}: {rest}"),
                        None => format!("Validation failed at {section}{e}"),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => None,
        })
}

/// The `permissions` of a `permissions.check` / `permissions.request`, checked against the strict
/// schema of the manifest's block.
fn requested_permissions(method: &str, params: Option<&Value>) -> Result<PermissionSet, String> {
    let Some(params) = params else {
        return Err(format!(
            "TypeError: Cannot read properties of undefined (reading 'permissions') in {method}"
        ));
    };
    let Some(p) = params.get("permissions") else {
        return Err(format!(
            "Error: {method} needs `permissions`, an object with the keys net, read, write, env, run, sys"
        ));
    };
    pons_reconciler::manifest::validate_permissions(p)
        .map_err(|e| format!("Error: invalid `permissions` in {method}: {e}"))?;
    serde_json::from_value(p.clone())
        .map_err(|e| format!("Error: invalid `permissions` in {method}: {e}"))
}

/// permissions.yaml as on disk; when it cannot be read, the last good value of the desired state
/// (the file's error is reported by the pass).
async fn current_permissions(kernel: &Kernel) -> PermissionsFile {
    let home = kernel.home.clone();
    let read = tokio::task::spawn_blocking(move || crate::store::read_permissions(&home)).await;
    match read {
        Ok(Ok(p)) => p,
        _ => kernel
            .state
            .lock()
            .desired
            .as_ref()
            .map(|d| d.permissions.clone())
            .unwrap_or_default(),
    }
}

/// `{<caller>: [PendingRequest…]}` with the caller's own pending requests, or `{}`. (The
/// reference answers every module's requests to anyone, the reference kernel's behaviour)
async fn own_pending(kernel: &Kernel, module: &str) -> Value {
    let file = current_permissions(kernel).await;
    match file.modules.get(module).filter(|e| !e.pending.is_empty()) {
        Some(e) => json!({ module: e.pending }),
        None => json!({}),
    }
}

async fn permissions_check(kernel: &Kernel, module: &str, params: Option<&Value>) -> CallResult {
    let perms = requested_permissions("permissions.check", params)?;
    let file = current_permissions(kernel).await;
    if file.effective(module).is_none() {
        // the reference kernel's behaviour: the request as given.
        let given = params
            .and_then(|p| p.get("permissions"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        return Ok(Some(json!({"granted": false, "missing": given})));
    }
    Ok(Some(file.check(module, &perms).to_json()))
}

async fn permissions_request(kernel: &Kernel, module: &str, params: Option<&Value>) -> CallResult {
    let perms = requested_permissions("permissions.request", params)?;
    let reason = params
        .and_then(|p| p.get("reason"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let home = kernel.home.clone();
    let id = module.to_string();
    let new_id = uuid::Uuid::new_v4().to_string();
    let now = now_iso();
    let asked = perms.clone();
    let why = reason.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        crate::store::update_permissions(&home, |file| {
            Ok(file.request(&id, &asked, why.as_deref(), &new_id, &now))
        })
    })
    .await
    .map_err(|e| format!("Error: {e}"))?
    .map_err(|e| {
        tracing::warn!(moduleId = %module, error = %format!("{e:#}"), "permission request not recorded");
        "Error: the permission request could not be recorded because permissions.yaml cannot be read or written; ask the operator to fix it".to_string()
    })?;
    if let RequestOutcome::Pending {
        request_id,
        new: true,
    } = &outcome
    {
        let shown = serde_json::to_string(&perms).unwrap_or_default();
        tracing::warn!(
            moduleId = %module,
            requestId = %request_id,
            permissions = %shown,
            reason = reason.as_deref().unwrap_or(""),
            "Pending permission request"
        );
        let payload = json!({
            "moduleId": module,
            "requestId": request_id,
            "permissions": perms,
            "reason": reason,
        });
        kernel.core.lock().emit(PENDING_TOPIC, &payload);
    }
    Ok(Some(outcome.to_json()))
}

/// Topic announcing new runtime permission requests to operator modules.
pub const PENDING_TOPIC: &str = "kernel.permissions.pending";

/// ISO-8601 UTC with milliseconds, as the reference writes timestamps.
pub fn iso(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let odt = time::OffsetDateTime::from_unix_timestamp_nanos(d.as_nanos() as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    odt.format(&fmt).unwrap_or_default()
}

pub fn now_iso() -> String {
    iso(std::time::SystemTime::now())
}
