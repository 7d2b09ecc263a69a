//! `pons apply [--json] [--timeout S]`: asks the running kernel for a pass now (crashed modules
//! retried), prints its progress and reports whether everything converged.

use std::process::ExitCode;

use super::args::ApplyArgs;
use super::{output, remote};
use crate::control::api::{ApplyReport, Request};
use crate::home::Home;

pub fn run(home: &Home, args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let req = Request {
        cmd: "apply".into(),
        timeout_ms: Some(args.timeout.saturating_mul(1000)),
        ..Request::default()
    };
    let data = remote::call_running(home, &req, |line| {
        // Progress goes to stderr in JSON mode so that stdout stays one JSON document.
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    })?;
    let report: ApplyReport = serde_json::from_value(data.clone()).map_err(|e| {
        anyhow::anyhow!("the kernel's `apply` answer does not match this pons version: {e}")
    })?;
    if args.json {
        output::print_json(&data)?;
    } else {
        print!("{}", render(&report));
    }
    if report.converged {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {}", not_converged_sentence(&report, args.timeout));
        Ok(ExitCode::FAILURE)
    }
}

fn render(r: &ApplyReport) -> String {
    let mut out = String::new();
    if r.actions.is_empty() {
        out.push_str("Nothing to do.\n");
    } else {
        for a in &r.actions {
            out.push_str(&format!("  {}\n", action_line(a)));
        }
    }
    if r.converged {
        out.push_str("Converged.\n");
    }
    out
}

/// `spawn gateway: reason`, or the value as given when it is not an action object.
fn action_line(a: &serde_json::Value) -> String {
    let field = |k: &str| a.get(k).and_then(|v| v.as_str());
    match (field("action"), field("module")) {
        (Some(action), Some(module)) => match field("reason") {
            Some(reason) => format!("{action} {module}: {reason}"),
            None => format!("{action} {module}"),
        },
        _ => a.as_str().map_or_else(|| a.to_string(), str::to_string),
    }
}

fn not_converged_sentence(r: &ApplyReport, timeout: u64) -> String {
    if r.not_converged.is_empty() {
        format!("the kernel did not converge within {timeout} s; see `pons status`")
    } else {
        format!(
            "module(s) {} did not converge within {timeout} s; see `pons status` and `pons kernel logs`",
            r.not_converged.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn report_rendering() {
        let r: ApplyReport = serde_json::from_value(json!({
            "converged": false,
            "actions": [{"action":"spawn","module":"gw","reason":"new module"}, "config db"],
            "notConverged": ["gw", "db"]
        }))
        .unwrap();
        assert_eq!(render(&r), "  spawn gw: new module\n  config db\n");
        assert_eq!(
            not_converged_sentence(&r, 5),
            "module(s) gw, db did not converge within 5 s; see `pons status` and `pons kernel logs`"
        );
    }
}
