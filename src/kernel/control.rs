//! The kernel's side of the control socket: one handler per request.

use std::sync::Arc;
use std::time::Duration;

use pons_reconciler::Status;
use serde_json::json;

use super::reconcile::{request_pass, PassKind};
use super::supervisor::SupCmd;
use super::{Kernel, KernelEvent};
use crate::control::api::{ControlCommand, RawJson, Response};

pub async fn handle(kernel: Arc<Kernel>, cmd: ControlCommand) {
    let ControlCommand {
        request,
        progress,
        reply,
    } = cmd;
    let resp = match request.cmd.as_str() {
        // Written straight to JSON text (the sandbox blocks are text already): no
        // `serde_json::Value` is built for an answer that can hold hundreds of modules.
        "status" => {
            let summary = request.summary == Some(true);
            let report = super::observe::status_report(&kernel, summary);
            match RawJson::from_serialize(&report) {
                Ok(data) => Response::ok_raw(data),
                Err(e) => Response::err(e.to_string()),
            }
        }
        "plan" => plan(&kernel).await,
        "apply" => apply(&kernel, request.timeout_ms, progress).await,
        "stop" => {
            let _ = kernel.events.send(KernelEvent::Shutdown);
            Response::ok(json!({"stopping": true, "pid": std::process::id()}))
        }
        "module.list" => Response::ok(json!({ "modules": super::observe::module_list(&kernel) })),
        "module.status" => module_status(&kernel, request.module_id.as_deref()),
        "module.restart" => {
            module_restart(&kernel, request.module_id.as_deref(), request.timeout_ms).await
        }
        "module.install" => {
            let home = kernel.home.clone();
            let dir = request.module_dir.clone();
            let symlink = request.symlink.unwrap_or(true);
            let res =
                tokio::task::spawn_blocking(move || install(&home, dir.as_deref(), symlink)).await;
            match res {
                Ok(Ok((id, hash))) => {
                    super::reconcile::ask_pass(&kernel, PassKind::Signal);
                    Response::ok(json!({"moduleId": id, "manifestHash": hash}))
                }
                Ok(Err(e)) => Response::err(e),
                Err(e) => Response::err(e.to_string()),
            }
        }
        "call" => super::operator::call(&kernel, &request).await,
        "publish" => super::operator::publish(&kernel, &request),
        other => Response::err(format!("Unknown command: {other}")),
    };
    let _ = reply.send(resp);
}

async fn plan(kernel: &Arc<Kernel>) -> Response {
    let rx = request_pass(kernel, PassKind::PlanOnly, None);
    match rx.await {
        Ok(outcome) => Response::ok(json!({
            "json": pons_reconciler::render::plan_json(&outcome.plan, true),
            "text": pons_reconciler::render::plan_text(&outcome.plan, &outcome.desired, true),
            "changes": outcome.plan.has_changes(),
        })),
        Err(_) => Response::err("the kernel is shutting down"),
    }
}

/// Runs a pass now (crashed modules retried) and waits until every runnable module is ready.
async fn apply(
    kernel: &Arc<Kernel>,
    timeout_ms: Option<u64>,
    progress: tokio::sync::mpsc::UnboundedSender<String>,
) -> Response {
    let timeout = Duration::from_millis(timeout_ms.unwrap_or(60_000));
    let deadline = tokio::time::Instant::now() + timeout;
    let rx = request_pass(kernel, PassKind::Apply, Some(progress.clone()));
    let Ok(outcome) = rx.await else {
        return Response::err("the kernel is shutting down");
    };
    let actions = pons_reconciler::render::plan_json(&outcome.plan, true)["actions"].clone();
    loop {
        let notified = kernel.changed.notified();
        let not_ready = not_converged(kernel, &outcome.desired);
        if not_ready.is_empty() {
            return Response::ok(
                json!({"converged": true, "actions": actions, "notConverged": []}),
            );
        }
        // The pass retried every crashed module; one that is crashed again stays down until it is
        // asked again, so waiting out the timeout for it would tell nothing more.
        let crashed = crashed_of(kernel, &not_ready);
        if crashed.len() == not_ready.len() {
            return Response::ok(json!({"converged": false, "actions": actions,
                "notConverged": not_ready, "crashed": crashed}));
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            let not_ready = not_converged(kernel, &outcome.desired);
            if not_ready.is_empty() {
                return Response::ok(
                    json!({"converged": true, "actions": actions, "notConverged": []}),
                );
            }
            return Response::ok(
                json!({"converged": false, "actions": actions, "notConverged": not_ready}),
            );
        }
    }
}

/// Those of `ids` that are crashed.
fn crashed_of(kernel: &Kernel, ids: &[String]) -> Vec<String> {
    let core = kernel.core.lock();
    ids.iter()
        .filter(|id| {
            core.modules
                .get(id.as_str())
                .is_some_and(|e| e.status == Status::Crashed)
        })
        .cloned()
        .collect()
}

/// Runnable modules that are not ready (with their status).
fn not_converged(kernel: &Kernel, desired: &pons_reconciler::Desired) -> Vec<String> {
    let core = kernel.core.lock();
    desired
        .modules
        .keys()
        .filter(|id| {
            core.modules
                .get(id.as_str())
                .is_none_or(|e| e.status != Status::Ready)
        })
        .cloned()
        .collect()
}

fn module_status(kernel: &Kernel, id: Option<&str>) -> Response {
    let Some(id) = id else {
        return Response::err("moduleId is required");
    };
    let core = kernel.core.lock();
    let Some(e) = core.modules.get(id) else {
        return Response::err(format!("Module \"{id}\" not found"));
    };
    let started_at = e.spawned_at.map(|t| {
        let wall = std::time::SystemTime::now() - t.elapsed();
        super::calls::iso(wall)
    });
    let mut v = json!({
        "id": &*e.id,
        "status": e.status.as_str(),
        "provides": e.desired.manifest.provides,
        "restartCount": e.restarts,
        "startedAt": started_at,
    });
    if let Some(pid) = e.pid {
        v["pid"] = json!(pid);
    }
    Response::ok(v)
}

/// `module.restart`: stops the module's process (if any) and starts a new one with a fresh restart
/// count. Without `timeoutMs` it answers once the restart is under way (as the reference); with
/// it, once the module is ready again, has failed for good (crashed, stopped) or the time is up:
/// `{"moduleId", "ready", "status", "reason", "lastError", "restarts"}`.
async fn module_restart(kernel: &Arc<Kernel>, id: Option<&str>, wait_ms: Option<u64>) -> Response {
    let Some(id) = id else {
        return Response::err("moduleId is required");
    };
    let found = {
        let core = kernel.core.lock();
        core.modules
            .get(id)
            .map(|e| (e.sup.clone(), e.desired.clone()))
    };
    let Some((sup, desired)) = found else {
        return Response::err(format!("Module \"{id}\" not found"));
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if sup
        .send(SupCmd::Restart {
            desired,
            reason: pons_reconciler::reason::Reason::new(
                pons_reconciler::reason::REQUESTED,
                "restart requested",
            ),
            done: Some(tx),
        })
        .is_err()
    {
        return Response::err(format!("Module \"{id}\" is stopped; run `pons apply`"));
    }
    let _ = rx.await;
    match wait_ms {
        None => Response::ok_empty(),
        Some(ms) => wait_ready(kernel, id, Duration::from_millis(ms)).await,
    }
}

/// Waits until module `id` is ready, crashed, stopped or gone, or `timeout` passed.
async fn wait_ready(kernel: &Kernel, id: &str, timeout: Duration) -> Response {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = kernel.changed.notified();
        let (settled, answer) = {
            let core = kernel.core.lock();
            match core.modules.get(id) {
                Some(e) => (
                    matches!(e.status, Status::Ready | Status::Crashed | Status::Stopped),
                    json!({
                        "moduleId": id,
                        "ready": e.status == Status::Ready,
                        "status": e.status.as_str(),
                        "reason": if e.status == Status::Ready { None } else { e.reason.clone() },
                        "lastError": e.last_error,
                        "restarts": e.restarts,
                    }),
                ),
                // A pass stopped it meanwhile (removed, blocked, disabled).
                None => (
                    true,
                    json!({"moduleId": id, "ready": false, "status": "stopped",
                           "reason": "stopped by a reconcile pass while it restarted; see `pons status`",
                           "lastError": null, "restarts": 0}),
                ),
            }
        };
        if settled || tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Response::ok(answer);
        }
    }
}

/// `module.install`: links (or copies) a module directory into `modules/<id>` and approves it
/// (base permissions, capabilities, manifest hash). The next pass spawns it.
fn install(
    home: &crate::home::Home,
    dir: Option<&str>,
    symlink: bool,
) -> Result<(String, String), String> {
    let dir = dir.ok_or("moduleDir is required")?;
    let real =
        std::fs::canonicalize(dir).map_err(|_| format!("Module directory not found: {dir}"))?;
    let manifest_path = real.join("module.json");
    let bytes = std::fs::read(&manifest_path).map_err(|_| {
        format!(
            "Failed to read module.json from {}",
            manifest_path.display()
        )
    })?;
    let manifest = pons_reconciler::manifest::parse(&bytes)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let target = home.modules_dir().join(&manifest.id);
    std::fs::create_dir_all(home.modules_dir()).map_err(|e| e.to_string())?;
    if target.symlink_metadata().is_ok() {
        if std::fs::canonicalize(&target).ok().as_deref() != Some(real.as_path()) {
            return Err(format!(
                "{} already exists; remove it first with `pons modules uninstall {}`",
                target.display(),
                manifest.id
            ));
        }
    } else if symlink {
        std::os::unix::fs::symlink(&real, &target)
            .map_err(|e| format!("Failed to create symlink: {e}"))?;
    } else {
        copy_dir(&real, &target).map_err(|e| format!("Failed to copy {}: {e}", real.display()))?;
    }
    let hash = pons_reconciler::manifest::hash(&bytes);
    let now = super::calls::now_iso();
    let caps = pons_reconciler::manifest::install_capabilities(&manifest);
    let id = manifest.id.clone();
    crate::store::update_permissions(home, |file| {
        file.approve(&id, manifest.permissions.clone(), caps.clone(), &hash, &now);
        for s in &manifest.provides {
            file.register_service_provider(s, &id);
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    tracing::info!(moduleId = %id, manifestHash = %hash, "module.install");
    Ok((id, hash))
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}
