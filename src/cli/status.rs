//! `pons status [--json]`: the kernel and every module, from the running kernel or, without one,
//! from the files (runnable modules "stopped", blocked ones "blocked" with their reason).

use std::process::ExitCode;

use pons_reconciler::Desired;

use super::{offline, output, remote};
use crate::control::api::{KernelStatus, ModuleStatus, StatusReport};
use crate::home::Home;

pub fn run(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    let report = match remote::call(home, &remote::cmd("status"), |_| {})? {
        Some(data) => serde_json::from_value::<StatusReport>(data).map_err(|e| {
            anyhow::anyhow!("the kernel's `status` answer does not match this pons version: {e}")
        })?,
        None => offline_report(home, &offline::desired(home)),
    };
    if json {
        output::print_json(&report)?;
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
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
            uptime_ms: None,
            dropped: None,
            msgs_in: None,
            msgs_out: None,
            sandbox: None,
        })
        .collect();
    modules.extend(desired.blocked.iter().map(|b| ModuleStatus {
        id: b.id.clone(),
        status: "blocked".into(),
        pid: None,
        restarts: 0,
        provides: Vec::new(),
        reason: Some(offline::block_reason(&b.reason)),
        uptime_ms: None,
        dropped: None,
        msgs_in: None,
        msgs_out: None,
        sandbox: None,
    }));
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
                    m.reason.clone().unwrap_or_else(|| "-".into()),
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
        let rows: Vec<Vec<String>> = r
            .services
            .iter()
            .map(|s| vec![s.service.clone(), s.module.clone()])
            .collect();
        out.push_str(&output::table(&["SERVICE", "MODULE"], &rows));
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

fn converged_line(r: &StatusReport) -> String {
    if r.converged {
        return "Converged: yes.\n".into();
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
            pid: None,
            restarts: 0,
            provides: vec![],
            reason: None,
            uptime_ms: None,
            dropped: None,
            msgs_in: None,
            msgs_out: None,
            sandbox: None,
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
            }],
            converged: false,
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
}
