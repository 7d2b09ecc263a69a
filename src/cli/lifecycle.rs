//! `pons restart | stop | start <ID…>` and `pons modules restart | disable | enable`: the operator's
//! lifecycle verbs, and how they wait for the kernel.
//!
//! - `restart` asks the running kernel (`module.restart`) for one module after the other and, unless
//!   `--no-wait`, waits until each is ready again (the kernel answers once it is ready, crashed,
//!   stopped or the time is up); the first that does not get ready ends the command (exit 1).
//! - `stop` / `start` are declarative: they add the ids to (or remove them from) `kernel.disabled`
//!   in config.yaml (`modules::set_disabled`), which a running kernel in auto mode applies in its
//!   next pass; then, unless `--no-wait`, they poll `status` until every module is stopped / ready.
//!   In manual mode nothing is waited for (`pons apply` applies the change); without a kernel the
//!   file is all there is.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::args::{LifecycleArgs, WaitArgs};
use super::{modules, offline, output, remote};
use crate::control::api::{ModuleStatus, Request, StatusReport};
use crate::home::Home;

/// How often `stop` / `start` ask the kernel for its status while they wait.
const POLL: Duration = Duration::from_millis(100);

/// Statuses of a module with a process (or about to have one).
const LIVE: [&str; 5] = ["starting", "waiting", "ready", "restarting", "stopping"];

// ---------------------------------------------------------------------------------------------
// restart

/// `pons restart <ID…>`: JSON `{"modules": [<restart outcome>]}`.
pub fn restart(home: &Home, args: &LifecycleArgs) -> anyhow::Result<ExitCode> {
    let ids = restartable(home, &args.ids)?;
    let mut done = Vec::new();
    let mut failure = None;
    for (i, id) in ids.iter().enumerate() {
        let outcome = restart_one(home, id, args.wait)?;
        if !args.json {
            println!("{}", outcome.line());
        }
        let failed = outcome.failure(args.wait.timeout);
        done.push(outcome.json());
        if let Some(e) = failed {
            let rest = &ids[i + 1..];
            failure = Some(if rest.is_empty() {
                e
            } else {
                format!("{e}; not restarted: {}", rest.join(", "))
            });
            break;
        }
    }
    if args.json {
        output::print_json(&json!({ "modules": done }))?;
    }
    finish(failure)
}

/// `pons modules restart <id>`: JSON `{"module", "restarted": true, …}` (the outcome).
pub fn restart_module(
    home: &Home,
    id: &str,
    wait: WaitArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let ids = restartable(home, &[id.to_string()])?;
    let outcome = restart_one(home, &ids[0], wait)?;
    if json {
        output::print_json(&outcome.json())?;
    } else {
        println!("{}", outcome.line());
    }
    finish(outcome.failure(wait.timeout))
}

/// The kernel's module ids for `args` (ids or directory names), refusing modules it cannot
/// restart: unknown ones (naming those it knows), disabled and blocked ones.
fn restartable(home: &Home, args: &[String]) -> anyhow::Result<Vec<String>> {
    let report = status_of(home)?.ok_or_else(remote::not_running)?;
    let mut ids = Vec::new();
    for arg in args {
        let id = resolve(home, arg, |id| report.modules.iter().any(|m| m.id == id))?;
        let Some(m) = id.as_deref().and_then(|id| find(&report, id)) else {
            let known: Vec<String> = report.modules.iter().map(|m| m.id.clone()).collect();
            anyhow::bail!(
                "the kernel has no module `{arg}` (known: {}); nothing was restarted",
                list_or_none(&known)
            );
        };
        if m.disabled {
            anyhow::bail!(
                "module `{}` is disabled in config.yaml; start it with `pons start {}`; nothing was restarted",
                m.id,
                m.id
            );
        }
        if m.status == "blocked" {
            anyhow::bail!(
                "module `{}` is blocked ({}) and has no process to restart; see `pons plan`; nothing was restarted",
                m.id,
                m.reason.as_deref().unwrap_or("no reason given")
            );
        }
        if !ids.contains(&m.id) {
            ids.push(m.id.clone());
        }
    }
    Ok(ids)
}

/// What `module.restart` answered for one module.
struct Restarted {
    id: String,
    /// `None` with `--no-wait`.
    state: Option<Value>,
}

impl Restarted {
    fn ready(&self) -> Option<bool> {
        self.state.as_ref().map(|s| s["ready"] == true)
    }

    fn field(&self, key: &str) -> Option<&str> {
        self.state.as_ref().and_then(|s| s[key].as_str())
    }

    fn json(&self) -> Value {
        json!({
            "module": self.id,
            "restarted": true,
            "ready": self.ready(),
            "status": self.field("status"),
            "reason": self.field("reason"),
            "lastError": self.field("lastError"),
        })
    }

    fn line(&self) -> String {
        match self.ready() {
            None => format!("Module `{}` is restarting.", self.id),
            Some(true) => format!("Module `{}` restarted and ready.", self.id),
            Some(false) => format!(
                "Module `{}` restarted but is {}.",
                self.id,
                self.field("status").unwrap_or("not ready")
            ),
        }
    }

    /// The error when it did not become ready.
    fn failure(&self, timeout: u64) -> Option<String> {
        if self.ready() != Some(false) {
            return None;
        }
        let status = self.field("status").unwrap_or("unknown");
        let why = explain(self.field("reason"), self.field("lastError"));
        let when = if matches!(status, "crashed" | "stopped") {
            String::new()
        } else {
            format!(" within {timeout} s")
        };
        Some(format!(
            "module `{}` did not become ready{when}: it is {status}{why}",
            self.id
        ))
    }
}

fn restart_one(home: &Home, id: &str, wait: WaitArgs) -> anyhow::Result<Restarted> {
    let req = Request {
        cmd: "module.restart".into(),
        module_id: Some(id.to_string()),
        timeout_ms: (!wait.no_wait).then(|| wait.timeout.saturating_mul(1000)),
        ..Request::default()
    };
    let data = remote::call_running(home, &req, |p| eprintln!("{p}"))?;
    Ok(Restarted {
        id: id.to_string(),
        state: (!wait.no_wait).then_some(data),
    })
}

// ---------------------------------------------------------------------------------------------
// stop / start

/// `pons stop <ID…>` = `pons modules disable <ID…>`.
pub fn stop(home: &Home, args: &LifecycleArgs) -> anyhow::Result<ExitCode> {
    change(home, args, true)
}

/// `pons start <ID…>` = `pons modules enable <ID…>`.
pub fn start(home: &Home, args: &LifecycleArgs) -> anyhow::Result<ExitCode> {
    change(home, args, false)
}

fn change(home: &Home, args: &LifecycleArgs, disable: bool) -> anyhow::Result<ExitCode> {
    let listed = modules::disabled_ids(home, &offline::read_config(home)?)?;
    let found = modules::scan(home)?;
    let known: Vec<String> = found.iter().map(modules::Found::id).collect();
    let mut ids: Vec<String> = Vec::new();
    for arg in &args.ids {
        // `start` also takes an id that is listed but whose module is gone.
        let id = resolve(home, arg, |id| {
            known.iter().any(|k| k == id) || (!disable && listed.iter().any(|l| l == id))
        })?;
        let Some(id) = id else {
            anyhow::bail!(
                "no module `{arg}` in {} (known: {}); nothing was changed",
                home.modules_dir().display(),
                list_or_none(&known)
            );
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let before = status_of(home)?;
    let changed = modules::set_disabled(home, &ids, disable)?;
    let file = home.config_yaml();
    let (verb, done) = if disable {
        ("disabled", "stopped")
    } else {
        ("enabled", "ready")
    };
    if !args.json {
        for id in &ids {
            if changed.contains(id) {
                println!("Module `{id}` {verb} in {}.", file.display());
            } else {
                println!("Module `{id}` is already {verb} in {}.", file.display());
            }
        }
    }
    let manual = before
        .as_ref()
        .is_some_and(|r| r.kernel.mode.as_deref() == Some("manual"));
    let wait = before.is_some() && !manual && !args.wait.no_wait;
    let mut failure = None;
    let mut after = None;
    if wait {
        match wait_until(home, &ids, disable, args.wait.timeout)? {
            Ok(r) => after = Some(r),
            Err((r, e)) => {
                after = Some(r);
                failure = Some(e);
            }
        }
    }
    let others = after
        .as_ref()
        .zip(before.as_ref())
        .map(|(a, b)| knock_on(b, a, &ids, disable))
        .unwrap_or_default();
    if args.json {
        let rows: Vec<Value> = ids
            .iter()
            .map(|id| {
                let m = after.as_ref().and_then(|r| find(r, id));
                json!({
                    "module": id,
                    "disabled": disable,
                    "changed": changed.contains(id),
                    "status": m.map(|m| m.status.clone()),
                    "reason": m.and_then(|m| m.reason.clone()),
                })
            })
            .collect();
        let key = if disable { "blocked" } else { "unblocked" };
        output::print_json(&json!({
            "file": file.display().to_string(),
            "modules": rows,
            "kernelRunning": before.is_some(),
            "waited": wait,
            key: others,
        }))?;
    } else {
        let them = if ids.len() == 1 { "it" } else { "them" };
        let action = if disable { "stops" } else { "starts" };
        if before.is_none() {
            let what = if disable { "leaves" } else { "starts" };
            let tail = if disable { " stopped" } else { "" };
            println!("The kernel is not running; `pons kernel start` {what} {them}{tail}.");
        } else if manual {
            println!("The kernel runs in manual mode: `pons apply` {action} {them}.");
        } else if !wait {
            println!("The running kernel {action} {them} in its next pass.");
        } else if failure.is_none() {
            for id in &ids {
                println!("Module `{id}` {done}.");
            }
        }
        if !others.is_empty() {
            let list = others.join(", ");
            if disable {
                println!(
                    "Blocked until it starts again (a required service has no provider): {list}."
                );
            } else {
                println!("No longer blocked, starting again: {list}.");
            }
        }
    }
    finish(failure)
}

/// Polls `status` until every module of `ids` is stopped (`disable`) or ready, or one of them
/// cannot get there, or `timeout` seconds passed. Err: the last report and the error sentence.
#[allow(clippy::type_complexity)]
fn wait_until(
    home: &Home,
    ids: &[String],
    disable: bool,
    timeout: u64,
) -> anyhow::Result<Result<StatusReport, (StatusReport, String)>> {
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let report = status_of(home)?.ok_or_else(|| {
            anyhow::anyhow!("the kernel stopped while waiting; config.yaml keeps the change")
        })?;
        let mut pending = Vec::new();
        for id in ids {
            match find(&report, id) {
                // The kernel has seen the change and there is no process left.
                Some(m) if disable && m.disabled && !LIVE.contains(&m.status.as_str()) => {}
                Some(m) if !disable && !m.disabled && m.status == "ready" => {}
                Some(m)
                    if !disable
                        && !m.disabled
                        && matches!(m.status.as_str(), "crashed" | "stopped" | "blocked") =>
                {
                    let why = explain(m.reason.as_deref(), m.last_error.as_deref());
                    let hint = match m.status.as_str() {
                        "blocked" => "see `pons plan`".to_string(),
                        _ => format!("`pons restart {id}` retries it"),
                    };
                    let e = format!(
                        "module `{id}` is enabled but did not start: it is {}{why}; {hint}",
                        m.status
                    );
                    return Ok(Err((report, e)));
                }
                m => pending.push((id, m.map(|m| (m.status.clone(), m.reason.clone())))),
            }
        }
        if pending.is_empty() {
            return Ok(Ok(report));
        }
        if Instant::now() >= deadline {
            let what: Vec<String> = pending
                .iter()
                .map(|(id, m)| match m {
                    Some((status, reason)) => {
                        format!("`{id}` is {status}{}", explain(reason.as_deref(), None))
                    }
                    None => format!("`{id}` is not listed yet"),
                })
                .collect();
            let goal = if disable { "stopped" } else { "ready" };
            let e = format!(
                "not {goal} within {timeout} s: {} (config.yaml keeps the change; see `pons status` and `pons kernel logs`)",
                what.join(", ")
            );
            return Ok(Err((report, e)));
        }
        std::thread::sleep(POLL);
    }
}

/// Other modules the change moved: those that run no more and are blocked now (`disable`), or
/// those that were blocked and are not any more.
fn knock_on(
    before: &StatusReport,
    after: &StatusReport,
    ids: &[String],
    disable: bool,
) -> Vec<String> {
    let blocked = |r: &StatusReport, id: &str| find(r, id).is_some_and(|m| m.status == "blocked");
    after
        .modules
        .iter()
        .map(|m| m.id.as_str())
        .chain(before.modules.iter().map(|m| m.id.as_str()))
        .filter(|id| !ids.iter().any(|i| i == id))
        .filter(|id| {
            let (was, is) = (blocked(before, id), blocked(after, id));
            if disable {
                is && !was
            } else {
                was && !is
            }
        })
        .fold(Vec::new(), |mut acc, id| {
            if !acc.iter().any(|a| a == id) {
                acc.push(id.to_string());
            }
            acc
        })
}

// ---------------------------------------------------------------------------------------------
// shared

/// The running kernel's status (`None`: no kernel runs).
fn status_of(home: &Home) -> anyhow::Result<Option<StatusReport>> {
    super::status::summary_of(home)
}

fn find<'a>(report: &'a StatusReport, id: &str) -> Option<&'a ModuleStatus> {
    report.modules.iter().find(|m| m.id == id)
}

/// The module id `arg` names: itself when `is_id` accepts it, else the id of the module in the
/// directory of that name. `None`: neither.
fn resolve(home: &Home, arg: &str, is_id: impl Fn(&str) -> bool) -> anyhow::Result<Option<String>> {
    if is_id(arg) {
        return Ok(Some(arg.to_string()));
    }
    Ok(modules::scan(home)?
        .iter()
        .find(|f| f.dir_name == arg)
        .map(modules::Found::id)
        .filter(|id| is_id(id)))
}

/// ` (reason; last error: …)`, or nothing.
fn explain(reason: Option<&str>, last_error: Option<&str>) -> String {
    match (reason, last_error) {
        (Some(r), Some(e)) if r != e => format!(" ({r}; last error: {e})"),
        (Some(r), _) => format!(" ({r})"),
        (None, Some(e)) => format!(" (last error: {e})"),
        (None, None) => String::new(),
    }
}

fn list_or_none(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}

fn finish(failure: Option<String>) -> anyhow::Result<ExitCode> {
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(id: &str, status: &str, disabled: bool) -> ModuleStatus {
        ModuleStatus {
            id: id.into(),
            status: status.into(),
            disabled,
            ..ModuleStatus::default()
        }
    }

    fn report(modules: Vec<ModuleStatus>) -> StatusReport {
        StatusReport {
            kernel: crate::control::api::KernelStatus {
                running: true,
                pid: Some(1),
                uptime_ms: Some(1),
                home: "/h".into(),
                mode: Some("auto".into()),
            },
            modules,
            services: vec![],
            converged: true,
            cluster: None,
            errors: vec![],
            pending: None,
        }
    }

    #[test]
    fn knock_on_lists_the_dependents_that_moved() {
        let before = report(vec![
            module("kv", "ready", false),
            module("web", "ready", false),
            module("old", "blocked", false),
        ]);
        let after = report(vec![
            module("kv", "stopped", true),
            module("web", "blocked", false),
            module("old", "blocked", false),
        ]);
        let ids = vec!["kv".to_string()];
        assert_eq!(knock_on(&before, &after, &ids, true), vec!["web"]);
        assert_eq!(knock_on(&after, &before, &ids, false), vec!["web"]);
    }

    #[test]
    fn restart_failures_name_status_reason_and_last_error() {
        let r = Restarted {
            id: "db".into(),
            state: Some(json!({"ready": false, "status": "crashed",
                "reason": "crashed after 2 consecutive failures",
                "lastError": "exited unexpectedly: boom"})),
        };
        assert_eq!(
            r.failure(30).unwrap(),
            "module `db` did not become ready: it is crashed (crashed after 2 consecutive failures; last error: exited unexpectedly: boom)"
        );
        let r = Restarted {
            id: "db".into(),
            state: Some(
                json!({"ready": false, "status": "starting", "reason": null, "lastError": null}),
            ),
        };
        assert_eq!(
            r.failure(5).unwrap(),
            "module `db` did not become ready within 5 s: it is starting"
        );
        let r = Restarted {
            id: "db".into(),
            state: None,
        };
        assert!(r.failure(5).is_none());
        assert_eq!(r.json()["ready"], Value::Null);
        assert_eq!(r.line(), "Module `db` is restarting.");
    }
}
