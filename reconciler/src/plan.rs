//! The plan: the ordered, minimal list of actions that takes observed to desired.
//!
//! CONTRACT: `plan(desired, observed, opts)` is a pure, deterministic function. `pons plan` and a
//! reconcile pass call the same function, so plan == apply.
//!
//! Decisions:
//! - A module observed live (starting, waiting, ready, restarting) whose spawn fingerprint
//!   changed is restarted; else, when only its config fingerprint changed, it gets `config`
//!   (`config:update` with its section). `configDependencies` sections are part of the spawn
//!   fingerprint, so their changes restart.
//! - Capabilities never cause an action: the shell re-registers the capabilities of every running
//!   module on every pass (when `capabilities_fingerprint` differs), in place.
//! - A module observed `crashed` or `stopped` (ready timeout, failed health checks, …) stays down:
//!   it is shown as a `blocked` action ("crashed after N restarts; run `pons apply` to retry it")
//!   unless its spawn fingerprint changed (→ `restart`) or [`PlanOptions::retry_crashed`] is set
//!   (→ `restart`, "retried by apply"). Its config changes wait for its next spawn.
//! - An observed module that is no longer runnable (directory removed, manifest tampered, approval
//!   revoked, a required provider gone, …) is stopped; when it is blocked the `blocked` action
//!   follows with the reason. A crashed or stopped module that is no longer desired gets a `stop`
//!   too, which makes the supervisor forget it.
//! - A module listed in `kernel.disabled` is not runnable ([`BlockReason::Disabled`]): running,
//!   it is stopped ("disabled in config.yaml", token `disabled`); down, it is only listed (as a
//!   `blocked` entry with that reason). Its dependents are blocked as missing a provider, like
//!   those of a removed provider. An observed `blocked` module (the kernel reports the modules its
//!   last pass blocked, with their token as `reason`) that is runnable again is spawned, "enabled
//!   in config.yaml" when it was disabled.
//! - Dependents of a provider: when the provider is *restarted*, dependents are untouched (the
//!   runtime service directory covers the gap: they see the service go and come back). When the
//!   provider is *removed or blocked*, the desired state blocks its dependents as
//!   `MissingProvider` (blocked until a provider appears), so they are stopped in the same plan,
//!   dependents first, and spawned again once a provider is back.
//! - Blocked modules are listed on every plan (`blocked` actions) but are not changes:
//!   [`Plan::has_changes`] is true only for spawn, stop, restart and config.
//! - The `cluster` section: a link to connect (section added), reconnect (its fingerprint —
//!   secrets included — changed) or disconnect (section removed) is one `cluster` action
//!   (module [`CLUSTER_ACTION_MODULE`]); it restarts no module. Its diff shows the section as
//!   written with secrets redacted; its reason names the changed keys.
//! - Order: stops (reverse dependency order of what runs), the cluster link, restarts, spawns
//!   (dependency order: providers first, then priority, then id), config pushes, blocked
//!   entries (by id).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::cluster::DesiredCluster;
use crate::desired::{BlockReason, Desired, DesiredModule, InputError, Warning};
use crate::graph::{self, Node};
use crate::observed::{Observed, ObservedCluster, ObservedModule, Status};
use crate::reason::{self, Reason};

/// What to do to one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Spawn,
    Stop,
    Restart,
    Config,
    Blocked,
    /// Connect, reconnect or disconnect the cluster link (module [`CLUSTER_ACTION_MODULE`]);
    /// restarts nothing.
    Cluster,
}

/// The `module` of a [`ActionKind::Cluster`] action (no module id has parentheses).
pub const CLUSTER_ACTION_MODULE: &str = "(cluster)";

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Spawn => "spawn",
            ActionKind::Stop => "stop",
            ActionKind::Restart => "restart",
            ActionKind::Config => "config",
            ActionKind::Blocked => "blocked",
            ActionKind::Cluster => "cluster",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub action: ActionKind,
    pub module: String,
    /// One plain sentence, e.g. "config section `gateway` changed".
    pub reason: String,
    /// The lifecycle token a stop or restart is announced with (`system:module:stopped`'s
    /// `reason`, see [`crate::reason`]); the token a blocked module would be stopped with.
    #[serde(skip)]
    pub token: &'static str,
    /// Config actions: the changed section names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sections: Option<Vec<String>>,
    /// Config actions: unified diff of each changed section (as written, never interpolated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

impl Action {
    fn new(
        action: ActionKind,
        module: &str,
        token: &'static str,
        reason: impl Into<String>,
    ) -> Action {
        Action {
            action,
            module: module.to_string(),
            reason: reason.into(),
            token,
            sections: None,
            diff: None,
        }
    }
}

/// Ordered actions. Stops first (reverse dependency order), then restarts, spawns (dependency
/// order), config pushes; blocked entries last.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Input errors of the desired state (the last good value of each was kept).
    pub errors: Vec<InputError>,
    /// Warnings of the desired state ([`Desired::warnings`]): they block nothing.
    pub warnings: Vec<Warning>,
}

/// Counts per action kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Summary {
    pub spawn: usize,
    pub stop: usize,
    pub restart: usize,
    pub config: usize,
    pub blocked: usize,
    /// Cluster (re)connections: 0 or 1.
    pub cluster: usize,
}

impl Plan {
    /// Any spawn, stop, restart or config action (blocked entries are not changes): the
    /// `--detailed-exitcode` answer.
    pub fn has_changes(&self) -> bool {
        self.actions.iter().any(|a| a.action != ActionKind::Blocked)
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for a in &self.actions {
            match a.action {
                ActionKind::Spawn => s.spawn += 1,
                ActionKind::Stop => s.stop += 1,
                ActionKind::Restart => s.restart += 1,
                ActionKind::Config => s.config += 1,
                ActionKind::Blocked => s.blocked += 1,
                ActionKind::Cluster => s.cluster += 1,
            }
        }
        s
    }
}

/// Options of one planning call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanOptions {
    /// Crashed modules get a `restart` action (an explicit `pons apply`; `pons plan` previews
    /// that). Automatic passes leave crashed modules alone until their spawn fingerprint changes.
    pub retry_crashed: bool,
}

/// Computes the plan that takes `observed` to `desired`.
pub fn plan(desired: &Desired, observed: &Observed, opts: PlanOptions) -> Plan {
    let mut stops: Vec<Action> = Vec::new();
    let mut restarts = Vec::new();
    let mut spawns = Vec::new();
    let mut configs = Vec::new();
    let mut blocked: Vec<Action> = desired
        .blocked
        .iter()
        .map(|b| {
            Action::new(
                ActionKind::Blocked,
                &b.id,
                b.reason.token(),
                b.reason.to_string(),
            )
        })
        .collect();

    // Observed modules that are no longer runnable.
    let mut stop_nodes: Vec<Node> = Vec::new();
    let mut stop_reasons: BTreeMap<String, Reason> = BTreeMap::new();
    for (id, obs) in &observed.modules {
        if desired.modules.contains_key(id) {
            continue;
        }
        let status = match obs.status {
            None | Some(Status::Blocked) | Some(Status::Stopping) => continue,
            Some(s) => s,
        };
        let mut reason = stop_reason(desired, id, obs);
        if matches!(status, Status::Crashed | Status::Stopped) {
            reason.detail = format!("{} (it was {})", reason.detail, status.as_str());
        }
        stop_reasons.insert(id.clone(), reason);
        stop_nodes.push(match &obs.applied {
            Some(a) => Node::from_manifest(&a.manifest),
            None => Node {
                id: id.clone(),
                priority: crate::manifest::DEFAULT_PRIORITY,
                provides: Vec::new(),
                requires: Vec::new(),
            },
        });
    }
    for tier in graph::tiers(&graph::dependencies(&stop_nodes)) {
        for id in tier {
            if let Some(r) = stop_reasons.remove(&id) {
                stops.push(Action::new(ActionKind::Stop, &id, r.token, r.detail));
            }
        }
    }

    // Runnable modules, in dependency order.
    for id in &desired.order {
        let Some(m) = desired.modules.get(id) else {
            continue;
        };
        let obs = observed.modules.get(id);
        let status = obs.and_then(|o| o.status);
        let Some(obs) = obs.filter(|_| !matches!(status, None | Some(Status::Blocked))) else {
            let reason = if !observed.kernel_running {
                "kernel not running"
            } else if status == Some(Status::Blocked) {
                match obs.and_then(|o| o.reason.as_deref()) {
                    Some(reason::DISABLED) => "enabled in config.yaml",
                    _ => "no longer blocked",
                }
            } else {
                "new module"
            };
            spawns.push(Action::new(ActionKind::Spawn, id, "", reason));
            continue;
        };
        let spawn_changed = obs.spawn_fingerprint != m.spawn_fingerprint;
        match status {
            Some(Status::Stopping) => {}
            Some(s @ (Status::Crashed | Status::Stopped)) => {
                let what = match (&obs.reason, s) {
                    (Some(r), Status::Stopped) => format!("stopped ({r})"),
                    (_, Status::Crashed) => format!("crashed after {} restarts", obs.restarts),
                    _ => format!("stopped after {} restarts", obs.restarts),
                };
                if spawn_changed {
                    let why = explain_restart(obs.applied.as_ref(), m);
                    restarts.push(Action::new(
                        ActionKind::Restart,
                        id,
                        restart_token(obs.applied.as_ref(), m),
                        format!("{why} (it was {})", s.as_str()),
                    ));
                } else if obs.capabilities_fingerprint != m.capabilities_fingerprint {
                    // A changed approval revives a module stopped for a violation.
                    restarts.push(Action::new(
                        ActionKind::Restart,
                        id,
                        reason::PERMISSION_UPDATE,
                        format!("approved capabilities changed (it was {})", s.as_str()),
                    ));
                } else if opts.retry_crashed {
                    restarts.push(Action::new(
                        ActionKind::Restart,
                        id,
                        reason::REQUESTED,
                        format!("{what}; retried by apply"),
                    ));
                } else {
                    blocked.push(Action::new(
                        ActionKind::Blocked,
                        id,
                        "",
                        format!("{what}; run `pons apply` to retry it"),
                    ));
                }
            }
            _ => {
                if spawn_changed {
                    restarts.push(Action::new(
                        ActionKind::Restart,
                        id,
                        restart_token(obs.applied.as_ref(), m),
                        explain_restart(obs.applied.as_ref(), m),
                    ));
                } else if obs.config_fingerprint != m.config_fingerprint {
                    configs.push(config_action(obs, m));
                }
            }
        }
    }

    blocked.sort_by(|a, b| a.module.cmp(&b.module));
    let mut actions = stops;
    // The link first: modules spawned next may need a remote provider.
    actions.extend(cluster_action(
        desired.cluster.as_ref(),
        observed.cluster.as_ref(),
        observed.kernel_running,
    ));
    actions.extend(restarts);
    actions.extend(spawns);
    actions.extend(configs);
    actions.extend(blocked);
    Plan {
        actions,
        errors: desired.errors.clone(),
        warnings: desired.warnings(),
    }
}

/// The cluster link's action: connect (a section appeared), reconnect (its fingerprint
/// changed), disconnect (it went). The diff shows the section as written, secrets redacted.
fn cluster_action(
    desired: Option<&DesiredCluster>,
    observed: Option<&ObservedCluster>,
    kernel_running: bool,
) -> Option<Action> {
    let target = |c: &crate::cluster::ClusterConfig| {
        format!(
            "{} as node `{}` (cluster `{}`)",
            c.urls.join(", "),
            c.node,
            c.name
        )
    };
    let module = CLUSTER_ACTION_MODULE;
    let mut a = match (desired, observed) {
        (Some(d), None) => {
            let why = if kernel_running {
                "cluster section added"
            } else {
                "kernel not running"
            };
            let mut a = Action::new(
                ActionKind::Cluster,
                module,
                "",
                format!("{why}: connect to {}", target(&d.config)),
            );
            a.diff = Some(section_diff("cluster", "", &d.text));
            a
        }
        (Some(d), Some(o)) if d.fingerprint != o.fingerprint => {
            let keys = o.config.changed_keys(&d.config);
            let what = if keys.is_empty() {
                "a `${VAR}` value".to_string()
            } else {
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut a = Action::new(
                ActionKind::Cluster,
                module,
                "",
                format!(
                    "cluster section changed ({what}): reconnect to {}; no module restarts",
                    target(&d.config)
                ),
            );
            if o.text != d.text {
                a.diff = Some(section_diff("cluster", &o.text, &d.text));
            }
            a
        }
        (None, Some(o)) => {
            let mut a = Action::new(
                ActionKind::Cluster,
                module,
                "",
                format!(
                    "cluster section removed: disconnect from {}",
                    o.config.urls.join(", ")
                ),
            );
            a.diff = Some(section_diff("cluster", &o.text, ""));
            a
        }
        _ => return None,
    };
    a.sections = Some(vec!["cluster".into()]);
    Some(a)
}

fn stop_reason(desired: &Desired, id: &str, obs: &ObservedModule) -> Reason {
    if let Some(b) = desired
        .blocked
        .iter()
        .find(|b| b.id == id && !matches!(b.reason, BlockReason::DuplicateId { .. }))
    {
        if b.reason == BlockReason::Disabled {
            return Reason::new(reason::DISABLED, b.reason.to_string());
        }
        return Reason::new(b.reason.token(), format!("blocked: {}", b.reason));
    }
    if let Some(a) = &obs.applied {
        let now = desired
            .modules
            .values()
            .find(|m| m.dir_name == a.dir_name)
            .map(|m| m.id.clone())
            .or_else(|| {
                desired
                    .blocked
                    .iter()
                    .find(|b| b.dir_name == a.dir_name)
                    .map(|b| b.id.clone())
            });
        if let Some(new_id) = now {
            return Reason::new(
                reason::UNINSTALLED,
                format!("the manifest in `{}` now has id `{new_id}`", a.dir_name),
            );
        }
    }
    Reason::new(reason::UNINSTALLED, "module directory removed")
}

/// The token of a restart: `permission-update` when the effective permissions changed, else
/// `hot-swap` (manifest, command line, environment, `configDependencies`).
fn restart_token(applied: Option<&DesiredModule>, d: &DesiredModule) -> &'static str {
    match applied {
        Some(a) if a.effective_permissions != d.effective_permissions => reason::PERMISSION_UPDATE,
        _ => reason::HOT_SWAP,
    }
}

/// Why the spawn fingerprint changed, comparing what was applied with what is desired.
pub fn explain_restart(applied: Option<&DesiredModule>, d: &DesiredModule) -> String {
    let Some(a) = applied else {
        return "spawn fingerprint changed".into();
    };
    let mut reasons = Vec::new();
    if a.manifest_hash != d.manifest_hash {
        let fields = changed_fields(
            &serde_json::to_value(&a.manifest).unwrap_or_default(),
            &serde_json::to_value(&d.manifest).unwrap_or_default(),
        );
        if fields.is_empty() {
            reasons.push("manifest changed".to_string());
        } else {
            let list: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
            reasons.push(format!("manifest changed ({})", list.join(", ")));
        }
    }
    for ((name, old), (_, new)) in a
        .effective_permissions
        .fields()
        .into_iter()
        .zip(d.effective_permissions.fields())
    {
        let added: Vec<&str> = new
            .iter()
            .filter(|v| !old.contains(v))
            .map(String::as_str)
            .collect();
        let removed: Vec<&str> = old
            .iter()
            .filter(|v| !new.contains(v))
            .map(String::as_str)
            .collect();
        if !added.is_empty() {
            reasons.push(format!("permissions.{name} added {}", added.join(", ")));
        }
        if !removed.is_empty() {
            reasons.push(format!("permissions.{name} removed {}", removed.join(", ")));
        }
    }
    for dep in &d.manifest.config_dependencies {
        if a.config_text.get(dep) != d.config_text.get(dep) {
            reasons.push(format!(
                "config section `{dep}` changed and is listed in configDependencies"
            ));
        }
    }
    if a.deno_json_hash != d.deno_json_hash {
        reasons.push("deno.json changed".into());
    }
    if reasons.is_empty() {
        if a.spawn.program != d.spawn.program || a.spawn.args != d.spawn.args {
            reasons.push("command line changed".into());
        }
        if a.spawn.env != d.spawn.env {
            let old: BTreeMap<&String, &String> = a.spawn.env.iter().map(|(k, v)| (k, v)).collect();
            let new: BTreeMap<&String, &String> = d.spawn.env.iter().map(|(k, v)| (k, v)).collect();
            let names: BTreeSet<&String> = old
                .keys()
                .chain(new.keys())
                .filter(|k| old.get(*k) != new.get(*k))
                .copied()
                .collect();
            let names: Vec<&str> = names.into_iter().map(String::as_str).collect();
            reasons.push(format!("environment changed ({})", names.join(", ")));
        }
        if a.spawn.cwd != d.spawn.cwd {
            reasons.push("working directory changed".into());
        }
        let (sa, sd) = (&a.spawn.sandbox, &d.spawn.sandbox);
        let runtime_paths =
            sa.runtime_read != sd.runtime_read || sa.runtime_write != sd.runtime_write;
        if runtime_paths {
            match &d.spawn.deno_config {
                Some(c) => reasons.push(format!(
                    "{} changed the paths deno may reach (import map, lock file, node_modules)",
                    c.display()
                )),
                None => reasons.push("deno configuration file removed".into()),
            }
        }
        let without_runtime = |p: &crate::desired::SandboxPolicy| crate::desired::SandboxPolicy {
            runtime_read: Vec::new(),
            runtime_write: Vec::new(),
            ..p.clone()
        };
        if without_runtime(sa) != without_runtime(sd) {
            reasons.push("sandbox policy changed".into());
        }
        if reasons.is_empty() {
            if a.config_text != d.config_text {
                reasons.push("a config section listed in configDependencies changed".into());
            } else {
                reasons.push("spawn fingerprint changed".into());
            }
        }
    }
    reasons.join("; ")
}

fn changed_fields(a: &Value, b: &Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Vec::new();
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn config_action(obs: &ObservedModule, m: &DesiredModule) -> Action {
    let key = m.manifest.config_key.clone().unwrap_or_default();
    let old_text = obs
        .config_text
        .get(&key)
        .or_else(|| obs.applied.as_ref().and_then(|a| a.config_text.get(&key)));
    let new_text = m.config_text.get(&key);
    let mut a = Action::new(ActionKind::Config, &m.id, "", String::new());
    a.sections = Some(vec![key.clone()]);
    match (old_text, new_text) {
        (Some(old), Some(new)) if old != new => {
            a.reason = format!("config section `{key}` changed");
            a.diff = Some(section_diff(&key, old, new));
        }
        _ => {
            a.reason =
                format!("config section `{key}` changed (a `${{VAR}}` value or a schema default)");
        }
    }
    a
}

/// Unified diff of one section's canonical text.
pub fn section_diff(section: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{section} (running)"),
            &format!("{section} (desired)"),
        )
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_entries_are_not_changes() {
        let mut p = Plan::default();
        assert!(!p.has_changes());
        p.actions
            .push(Action::new(ActionKind::Blocked, "a", "", "x"));
        assert!(!p.has_changes());
        assert_eq!(p.summary().blocked, 1);
        p.actions
            .push(Action::new(ActionKind::Config, "b", "", "y"));
        assert!(p.has_changes());
    }

    #[test]
    fn empty_observed_spawns_everything_with_kernel_not_running() {
        let d = Desired::default();
        let p = plan(&d, &Observed::default(), PlanOptions::default());
        assert!(p.actions.is_empty());
    }

    #[test]
    fn diff_has_headers() {
        let d = section_diff("web", "port: 1\n", "port: 2\n");
        assert!(
            d.starts_with("--- web (running)\n+++ web (desired)\n"),
            "{d}"
        );
        assert!(d.contains("-port: 1\n+port: 2\n"));
    }
}
