//! What the kernel reports about itself: the observed state handed to the planner, and the
//! status report of `pons status` (each module's sandbox block computed once per spawn, see
//! [`SandboxReports`]).

use std::sync::Arc;

use pons_reconciler::{DesiredModule, Observed, ObservedModule, Status};

use super::router::{Entry, FastMap, FastSet};
use super::Kernel;
use crate::control::api::{KernelStatus, ModuleStatus, RawJson, ServiceEntry, StatusReport};

/// The supervisor's view, as the planner's input: the modules it manages, and those the last
/// pass blocked (status `blocked`, their token as reason), so that a module blocked or disabled
/// before is spawned as "no longer blocked" / "enabled in config.yaml".
pub fn observed(kernel: &Kernel) -> Observed {
    let last = kernel.state.lock().desired.clone();
    let core = kernel.core.lock();
    let mut modules: std::collections::BTreeMap<String, ObservedModule> = core
        .modules
        .values()
        .map(|e| {
            let d = &e.desired;
            (
                e.id.to_string(),
                ObservedModule {
                    status: Some(e.status),
                    spawn_fingerprint: d.spawn_fingerprint.clone(),
                    config_fingerprint: d.config_fingerprint.clone(),
                    config_text: d.config_text.clone(),
                    capabilities_fingerprint: d.capabilities_fingerprint.clone(),
                    pid: e.pid,
                    restarts: e.restarts,
                    reason: e.reason.clone(),
                    applied: Some((**d).clone()),
                },
            )
        })
        .collect();
    for b in last.iter().flat_map(|d| &d.blocked) {
        if !modules.contains_key(&b.id) {
            modules.insert(b.id.clone(), ObservedModule::blocked(&b.reason));
        }
    }
    Observed {
        kernel_running: true,
        modules,
        cluster: crate::cluster::observed(&core),
    }
}

/// `module.list`: `{id, status, provides}` of every module the kernel manages and of those a
/// pass stopped (status `stopped`), by id.
pub fn module_list(kernel: &Kernel) -> Vec<serde_json::Value> {
    let core = kernel.core.lock();
    let mut list: Vec<(&str, serde_json::Value)> = core
        .modules
        .values()
        .map(|e| {
            let v = serde_json::json!({"id": &*e.id, "status": e.status.as_str(), "provides": e.desired.manifest.provides});
            (&*e.id, v)
        })
        .chain(core.departed.iter().map(|(id, d)| {
            let v = serde_json::json!({"id": &**id, "status": "stopped", "provides": d.provides});
            (&**id, v)
        }))
        .collect();
    list.sort_by(|a, b| a.0.cmp(b.0));
    list.into_iter().map(|(_, v)| v).collect()
}

/// Modules whose process is down for good (crashed, stopped): they hold no services.
pub fn down(kernel: &Kernel) -> std::collections::BTreeSet<String> {
    kernel
        .core
        .lock()
        .modules
        .values()
        .filter(|e| matches!(e.status, Status::Crashed | Status::Stopped))
        .map(|e| e.id.to_string())
        .collect()
}

/// Each module's `sandbox` block of `pons status --json`, as JSON text, computed once per spawn:
/// building it probes the file system (the system paths that exist, each program's loader and
/// libraries), which cost about 75 µs per module and was redone for every module on every
/// request. An entry holds while the module keeps the desired state and the process it was made
/// for; it is made again after a respawn or a new desired state, and dropped with the module.
#[derive(Default)]
pub struct SandboxReports(parking_lot::Mutex<FastMap<Arc<str>, CachedReport>>);

struct CachedReport {
    /// Held (not only its address) so that a new desired state can never be taken for it.
    desired: Arc<DesiredModule>,
    pid: Option<u32>,
    json: RawJson,
}

impl SandboxReports {
    /// Makes the block of every module the kernel manages whose spawn has none yet (and drops
    /// those of modules that are gone), probing the file system outside the router lock; then
    /// hands out the blocks, by id. A module respawned since is served the block of its
    /// previous spawn by this request, and gets its own with the next.
    fn refreshed(
        &self,
        kernel: &Kernel,
    ) -> parking_lot::MutexGuard<'_, FastMap<Arc<str>, CachedReport>> {
        let running: Vec<(Arc<str>, Arc<DesiredModule>, Option<u32>)> = {
            let core = kernel.core.lock();
            core.modules
                .values()
                .map(|e| (e.id.clone(), e.desired.clone(), e.pid))
                .collect()
        };
        let missing: Vec<&(Arc<str>, Arc<DesiredModule>, Option<u32>)> = {
            let ids: FastSet<&str> = running.iter().map(|(id, _, _)| &**id).collect();
            let mut cache = self.0.lock();
            cache.retain(|id, _| ids.contains(&**id));
            running
                .iter()
                .filter(|(id, d, pid)| {
                    !cache
                        .get(id)
                        .is_some_and(|c| Arc::ptr_eq(&c.desired, d) && c.pid == *pid)
                })
                .collect()
        };
        let made: Vec<(Arc<str>, CachedReport)> = missing
            .into_iter()
            .map(|(id, d, pid)| {
                let report = crate::sandbox::module_sandbox_report(&d.spawn.sandbox, &d.spawn.env);
                let entry = CachedReport {
                    desired: d.clone(),
                    pid: *pid,
                    json: RawJson::from_value(&report).shared(),
                };
                (id.clone(), entry)
            })
            .collect();
        let mut cache = self.0.lock();
        cache.extend(made);
        cache
    }
}

/// `pons status --json` of a running kernel; `summary` leaves out each module's `sandbox` block
/// (the `status` request of `pons top` and of `pons status` without `--json`).
pub fn status_report(kernel: &Kernel, summary: bool) -> StatusReport {
    // Lock order: the sandbox blocks, then the router.
    let sandboxes = (!summary).then(|| kernel.sandbox_reports.refreshed(kernel));
    let st = kernel.state.lock();
    let desired = st.desired.clone();
    let pending = st.pending;
    // An applied plan is done; only a plan waiting for `pons apply` is outstanding.
    let plan_changes = st.pending;
    let mode = st.mode;
    drop(st);
    // Position of each id in the dependency order; modules outside it (being stopped) come
    // last, by id. Each position is looked up once, not in every comparison of the sort.
    let order: FastMap<&str, usize> = desired
        .as_ref()
        .map(|d| {
            d.order
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect()
        })
        .unwrap_or_default();
    let core = kernel.core.lock();
    let mut entries: Vec<(usize, &Entry)> = core
        .modules
        .values()
        .map(|e| (order.get(&*e.id).copied().unwrap_or(usize::MAX), e))
        .collect();
    entries.sort_unstable_by(|(pa, a), (pb, b)| pa.cmp(pb).then_with(|| a.id.cmp(&b.id)));
    let disabled = |id: &str| {
        desired.as_ref().is_some_and(|d| {
            d.kernel
                .disabled
                .binary_search_by(|x| x.as_str().cmp(id))
                .is_ok()
        })
    };
    let mut modules: Vec<ModuleStatus> = entries
        .iter()
        .map(|&(_, e)| ModuleStatus {
            id: e.id.to_string(),
            status: e.status.as_str().to_string(),
            pid: e.pid,
            restarts: e.restarts,
            provides: e.desired.manifest.provides.clone(),
            // Reasons can quote module text (a stderr line, a topic): terminal-safe.
            reason: if e.status == Status::Ready {
                None
            } else {
                e.reason
                    .as_deref()
                    .map(|r| crate::safe_text::terminal_safe(r).into_owned())
            },
            uptime_ms: e.ready_at.map(|t| t.elapsed().as_millis() as u64),
            dropped: Some(e.dropped()),
            msgs_in: Some(e.msgs_in),
            msgs_out: Some(e.msgs_out()),
            sandbox: sandboxes
                .as_ref()
                .and_then(|c| Some(c.get(&e.id)?.json.clone())),
            disabled: disabled(&e.id),
            last_error: e
                .last_error
                .as_deref()
                .map(|r| crate::safe_text::terminal_safe(r).into_owned()),
        })
        .collect();
    let mut all_ready = core.modules.values().all(|e| e.status == Status::Ready);
    let mut errors = Vec::new();
    if let Some(d) = &desired {
        for b in &d.blocked {
            if core.modules.contains_key(b.id.as_str()) {
                continue;
            }
            modules.push(ModuleStatus::not_running(b, disabled(&b.id)));
        }
        errors = d
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.file.display(), e.error))
            .collect();
        if d.modules
            .keys()
            .any(|id| !core.modules.contains_key(id.as_str()))
        {
            all_ready = false;
        }
    }
    let mut services: Vec<ServiceEntry> = core
        .registered
        .iter()
        .map(|(s, m)| ServiceEntry {
            service: s.clone(),
            module: m.to_string(),
            node: None,
        })
        .collect();
    // Other nodes' providers of imported services, with their node.
    let cluster = core.cluster.as_ref().map(crate::cluster::status::report);
    if let Some(a) = &core.cluster {
        services.extend(crate::cluster::status::remote_services(a).into_iter().map(
            |(service, module, node)| ServiceEntry {
                service,
                module,
                node: Some(node),
            },
        ));
    }
    StatusReport {
        kernel: KernelStatus {
            running: true,
            pid: Some(std::process::id()),
            uptime_ms: Some(kernel.started.elapsed().as_millis() as u64),
            home: kernel.home.root.to_string_lossy().into_owned(),
            mode: Some(
                match mode {
                    pons_reconciler::config::ReconcileMode::Auto => "auto",
                    pons_reconciler::config::ReconcileMode::Manual => "manual",
                }
                .into(),
            ),
        },
        modules,
        services,
        converged: all_ready && !plan_changes,
        cluster,
        errors,
        pending: if pending {
            kernel.state.lock().plan.as_ref().map(|p| {
                p.actions
                    .iter()
                    .filter(|a| a.action != pons_reconciler::ActionKind::Blocked)
                    .count()
            })
        } else {
            None
        },
    }
}
