//! `pons status [--json]`: the kernel and every module, from the running kernel or, without one,
//! from the files (runnable modules "stopped", disabled ones "stopped" with "disabled in
//! config.yaml", blocked ones "blocked" with their reason).

use std::io::Write;
use std::process::ExitCode;

use pons_reconciler::Desired;

use super::{json_text, offline, output, remote};
use crate::control::api::{KernelStatus, ModuleStatus, RawJson, Request, StatusReport};
use crate::home::Home;

pub fn run(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    // The table shows no sandbox: without --json the kernel is asked for the summary.
    match fetch(home, !json)? {
        // Printed as the kernel wrote it, laid out (not decoded and encoded again).
        Some(raw) if json => print_pretty(raw.get())?,
        Some(raw) => print_human(&decode(&raw)?)?,
        None => {
            let report = offline_report(home, &offline::desired(home));
            if json {
                output::print_json(&report)?;
            } else {
                print_human(&report)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(report: &StatusReport) -> std::io::Result<()> {
    let text = render(report);
    let text = if super::colour::enabled() {
        super::colour::status(&text)
    } else {
        text
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Compact JSON text printed as `pons status --json` prints (pretty, a newline at the end).
fn print_pretty(compact: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    json_text::write_pretty(compact, &mut out)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The running kernel's `status` answer as JSON text (`None`: no kernel runs). `summary`: without
/// the modules' `sandbox` blocks.
pub fn fetch(home: &Home, summary: bool) -> anyhow::Result<Option<RawJson>> {
    remote::call_raw(home, &request(summary), |_| {})
}

/// The `status` request; `summary`: without the modules' `sandbox` blocks.
pub fn request(summary: bool) -> Request {
    Request {
        cmd: "status".into(),
        summary: summary.then_some(true),
        ..Request::default()
    }
}

/// A `status` answer decoded (from its text: no `serde_json::Value` in between).
pub fn decode(raw: &RawJson) -> anyhow::Result<StatusReport> {
    serde_json::from_str::<StatusReport>(raw.get()).map_err(|e| {
        anyhow::anyhow!("the kernel's `status` answer does not match this pons version: {e}")
    })
}

/// The running kernel's status without the sandbox blocks (`None`: no kernel runs): for the
/// commands that only look at statuses.
pub fn summary_of(home: &Home) -> anyhow::Result<Option<StatusReport>> {
    fetch(home, true)?.as_ref().map(decode).transpose()
}

/// The status the files describe when no kernel runs.
pub fn offline_report(home: &Home, desired: &Desired) -> StatusReport {
    let mut modules: Vec<ModuleStatus> = desired
        .modules
        .values()
        .map(|m| ModuleStatus {
            id: m.id.clone(),
            status: "stopped".into(),
            pid: None,
            restarts: 0,
            provides: m.manifest.provides.clone(),
            reason: None,
            disabled: false,
            last_error: None,
            uptime_ms: None,
            dropped: None,
            msgs_in: None,
            msgs_out: None,
            sandbox: None,
        })
        .collect();
    let disabled = |id: &str| desired.kernel.disabled.iter().any(|d| d == id);
    modules.extend(
        desired
            .blocked
            .iter()
            .map(|b| ModuleStatus::not_running(b, disabled(&b.id))),
    );
    modules.sort_by(|a, b| a.id.cmp(&b.id));
    StatusReport {
        kernel: KernelStatus {
            running: false,
            pid: None,
            uptime_ms: None,
            home: home.root.display().to_string(),
            mode: None,
        },
        modules,
        services: Vec::new(),
        converged: desired.modules.is_empty(),
        cluster: None,
        errors: desired
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.file.display(), e.error))
            .collect(),
        pending: None,
    }
}

/// The human rendering.
pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let k = &r.kernel;
    if k.running {
        let mut facts = Vec::new();
        if let Some(pid) = k.pid {
            facts.push(format!("PID {pid}"));
        }
        if let Some(ms) = k.uptime_ms {
            facts.push(format!("up {}", output::format_uptime_ms(ms)));
        }
        if let Some(mode) = &k.mode {
            facts.push(format!("mode {mode}"));
        }
        out.push_str(&format!(
            "Kernel: running ({}), home {}\n",
            facts.join(", "),
            k.home
        ));
    } else {
        out.push_str(&format!(
            "Kernel: not running; modules shown as the files in {} describe them.\n",
            k.home
        ));
    }
    out.push('\n');
    if r.modules.is_empty() {
        out.push_str("No modules.\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .modules
            .iter()
            .map(|m| {
                vec![
                    m.id.clone(),
                    m.status.clone(),
                    m.pid.map_or("-".into(), |p| p.to_string()),
                    m.restarts.to_string(),
                    m.uptime_ms.map_or("-".into(), output::format_uptime_ms),
                    output::list_or_dash(&m.provides),
                    reason_cell(m),
                ]
            })
            .collect();
        out.push_str(&output::table(
            &[
                "ID", "STATUS", "PID", "RESTARTS", "UPTIME", "PROVIDES", "REASON",
            ],
            &rows,
        ));
    }
    if !r.services.is_empty() {
        out.push('\n');
        if r.services.iter().any(|s| s.node.is_some()) {
            let rows: Vec<Vec<String>> = r
                .services
                .iter()
                .map(|s| {
                    let node = s.node.clone().unwrap_or_else(|| "(this node)".into());
                    vec![s.service.clone(), s.module.clone(), node]
                })
                .collect();
            out.push_str(&output::table(&["SERVICE", "MODULE", "NODE"], &rows));
        } else {
            let rows: Vec<Vec<String>> = r
                .services
                .iter()
                .map(|s| vec![s.service.clone(), s.module.clone()])
                .collect();
            out.push_str(&output::table(&["SERVICE", "MODULE"], &rows));
        }
    }
    if let Some(c) = &r.cluster {
        out.push('\n');
        out.push_str(&cluster_line(c));
    }
    if !r.errors.is_empty() {
        out.push_str("\nInput errors (the last good value is in use):\n");
        for e in &r.errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out.push('\n');
    out.push_str(&converged_line(r));
    out
}

/// One line about the cluster link: node, server, connected or why not, peers and their
/// services, drops.
fn cluster_line(c: &crate::cluster::status::ClusterStatus) -> String {
    let state = if c.connected {
        "connected".to_string()
    } else {
        match &c.last_error {
            Some(e) => format!("not connected ({e})"),
            None => "not connected".into(),
        }
    };
    let peers: Vec<String> = c
        .peers
        .iter()
        .map(|p| format!("{} ({})", p.node, output::list_or_dash(&p.services)))
        .collect();
    let peers = if peers.is_empty() {
        "no peers".to_string()
    } else {
        format!("peers: {}", peers.join(", "))
    };
    let dropped = if c.dropped > 0 {
        format!("; {} cross-node message(s) dropped", c.dropped)
    } else {
        String::new()
    };
    let tls = if c.tls { " (TLS)" } else { "" };
    format!(
        "Cluster: node {} of `{}` via {}{tls}, {state}; {peers}{dropped}.\n",
        c.node, c.name, c.url
    )
}

/// The REASON column: the reason, and the last failure's cause when the reason does not say it
/// (a crashed module: "crashed after 5 consecutive failures …; last error: …").
fn reason_cell(m: &ModuleStatus) -> String {
    match (&m.reason, &m.last_error) {
        (Some(r), Some(e)) if r != e => format!("{r}; last error: {e}"),
        (Some(r), _) => r.clone(),
        (None, Some(e)) => format!("last error: {e}"),
        (None, None) => "-".into(),
    }
}

fn converged_line(r: &StatusReport) -> String {
    if r.converged {
        let count = |s: &str| r.modules.iter().filter(|m| m.status == s).count();
        let disabled = r.modules.iter().filter(|m| m.disabled).count();
        let mut notes = Vec::new();
        if count("blocked") > 0 {
            notes.push(format!("{} blocked", count("blocked")));
        }
        if disabled > 0 {
            notes.push(format!("{disabled} disabled"));
        }
        return if notes.is_empty() {
            "Converged: yes.\n".into()
        } else {
            format!("Converged: yes ({}; see `pons plan`).\n", notes.join(", "))
        };
    }
    if !r.kernel.running {
        return "Converged: no (the kernel is not running; start it with `pons kernel start`).\n"
            .into();
    }
    match r.pending {
        Some(n) if n > 0 => format!(
            "Converged: no ({n} pending change(s); see `pons plan`, apply with `pons apply`).\n"
        ),
        _ => "Converged: no (see `pons plan`).\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::ServiceEntry;

    fn module(id: &str, status: &str) -> ModuleStatus {
        ModuleStatus {
            id: id.into(),
            status: status.into(),
            ..ModuleStatus::default()
        }
    }

    #[test]
    fn offline_report_of_an_empty_home() {
        let home = Home::new("/h");
        let r = offline_report(&home, &Desired::default());
        assert!(!r.kernel.running && r.converged && r.modules.is_empty());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kernel":{"running":false,"pid":null,"uptimeMs":null,"home":"/h"},
                "modules":[],"services":[],"converged":true})
        );
        assert!(render(&r).contains("Kernel: not running"));
    }

    #[test]
    fn running_report_renders_table_services_and_pending() {
        let mut gw = module("gateway", "ready");
        gw.pid = Some(42);
        gw.uptime_ms = Some(61_000);
        gw.provides = vec!["http-router".into()];
        let mut b = module("bad", "blocked");
        b.reason = Some("not approved: run `pons modules approve bad`".into());
        let r = StatusReport {
            kernel: KernelStatus {
                running: true,
                pid: Some(7),
                uptime_ms: Some(5_000),
                home: "/h".into(),
                mode: Some("manual".into()),
            },
            modules: vec![gw, b],
            services: vec![ServiceEntry {
                service: "http-router".into(),
                module: "gateway".into(),
                node: None,
            }],
            converged: false,
            cluster: None,
            errors: vec!["/h/config.yaml: bad".into()],
            pending: Some(2),
        };
        let text = render(&r);
        assert!(text.starts_with("Kernel: running (PID 7, up 5s, mode manual), home /h\n"));
        assert!(
            text.contains("gateway  ready    42   0         1m 1s   http-router  -\n"),
            "{text}"
        );
        assert!(
            text.contains("SERVICE      MODULE\nhttp-router  gateway\n"),
            "{text}"
        );
        assert!(text.contains("/h/config.yaml: bad"));
        assert!(text.ends_with(
            "Converged: no (2 pending change(s); see `pons plan`, apply with `pons apply`).\n"
        ));
    }

    #[test]
    fn disabled_crashed_and_blocked_modules_in_text() {
        let mut off = module("kv", "stopped");
        off.disabled = true;
        off.reason = Some("disabled in config.yaml".into());
        let mut dead = module("db", "crashed");
        dead.reason = Some("crashed after 5 consecutive failures".into());
        dead.last_error = Some("exited unexpectedly: RuntimeError: database unreachable".into());
        let mut b = module("web", "blocked");
        b.reason = Some("required service `kv` has no provider".into());
        let mut r = StatusReport {
            kernel: KernelStatus {
                running: true,
                pid: Some(7),
                uptime_ms: Some(5_000),
                home: "/h".into(),
                mode: None,
            },
            modules: vec![off, dead, b],
            services: vec![],
            converged: true,
            cluster: None,
            errors: vec![],
            pending: None,
        };
        let text = render(&r);
        assert!(text.contains("kv   stopped"), "{text}");
        assert!(text.contains("disabled in config.yaml\n"), "{text}");
        assert!(
            text.contains("crashed after 5 consecutive failures; last error: exited unexpectedly: RuntimeError: database unreachable\n"),
            "{text}"
        );
        assert!(
            text.ends_with("Converged: yes (1 blocked, 1 disabled; see `pons plan`).\n"),
            "{text}"
        );
        let json = serde_json::to_value(&r.modules[1]).unwrap();
        assert_eq!(json["disabled"], false);
        assert_eq!(
            json["lastError"],
            "exited unexpectedly: RuntimeError: database unreachable"
        );
        r.modules.clear();
        assert!(render(&r).ends_with("Converged: yes.\n"));
    }
}
