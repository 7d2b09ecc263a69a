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

/// The closing line; each action was already printed as the kernel applied it.
fn render(r: &ApplyReport) -> String {
    let n = r.actions.len();
    match (n, r.converged) {
        (0, true) => "Nothing to do: converged.\n".into(),
        (0, false) => "Nothing to do.\n".into(),
        (n, true) => format!(
            "Converged after {n} action{}.\n",
            if n == 1 { "" } else { "s" }
        ),
        (n, false) => format!("{n} action{} applied.\n", if n == 1 { "" } else { "s" }),
    }
}

fn not_converged_sentence(r: &ApplyReport, timeout: u64) -> String {
    if !r.crashed.is_empty() && r.crashed.len() == r.not_converged.len() {
        let ids = r.crashed.join(", ");
        let logs = r.crashed.join(" ");
        format!(
            "module(s) {ids} crashed again after the retry; their last error is in `pons status`, their log in `pons logs {logs}`"
        )
    } else if r.not_converged.is_empty() {
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
        assert_eq!(render(&r), "2 actions applied.\n");
        let done: ApplyReport = serde_json::from_value(json!({
            "converged": true, "actions": [], "notConverged": []
        }))
        .unwrap();
        assert_eq!(render(&done), "Nothing to do: converged.\n");
        let again: ApplyReport = serde_json::from_value(json!({
            "converged": false, "actions": [], "notConverged": ["db", "api"], "crashed": ["db", "api"]
        }))
        .unwrap();
        assert_eq!(
            not_converged_sentence(&again, 60),
            "module(s) db, api crashed again after the retry; their last error is in `pons status`, their log in `pons logs db api`"
        );
        assert_eq!(
            not_converged_sentence(&r, 5),
            "module(s) gw, db did not converge within 5 s; see `pons status` and `pons kernel logs`"
        );
    }
}
