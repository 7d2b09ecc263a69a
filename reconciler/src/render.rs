//! Rendering of plans (terraform-style text and the JSON of specs/cli.md).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::desired::Desired;
use crate::plan::{ActionKind, Plan};

fn sign(kind: ActionKind) -> char {
    match kind {
        ActionKind::Spawn => '+',
        ActionKind::Stop => '-',
        ActionKind::Restart | ActionKind::Config | ActionKind::Cluster => '~',
        ActionKind::Blocked => '!',
    }
}

/// `path` relative to `home` when it lies inside it.
fn show_path(path: &Path, home: &Path) -> String {
    match path.strip_prefix(home) {
        Ok(rel) if !home.as_os_str().is_empty() => rel.to_string_lossy().into_owned(),
        _ => path.to_string_lossy().into_owned(),
    }
}

/// The plan as text, in the style of `terraform plan`: one line per action with a sign (`+`
/// spawn, `-` stop, `~` restart/config, `!` blocked), the reason, indented diffs, then input
/// errors, module warnings and a summary line.
pub fn plan_text(plan: &Plan, desired: &Desired, kernel_running: bool) -> String {
    let mut out = String::new();
    if !kernel_running {
        out.push_str("The kernel is not running: this is what `pons kernel start` would do.\n\n");
    }
    let width = plan
        .actions
        .iter()
        .map(|a| a.module.chars().count())
        .max()
        .unwrap_or(0);
    for a in &plan.actions {
        let _ = writeln!(
            out,
            "  {} {:<width$}  {:<7}  {}",
            sign(a.action),
            a.module,
            a.action.as_str(),
            a.reason,
        );
        if let Some(diff) = &a.diff {
            for line in diff.lines() {
                let _ = writeln!(out, "        {line}");
            }
        }
    }
    if !plan.actions.is_empty() {
        out.push('\n');
    }
    if !plan.errors.is_empty() {
        out.push_str("Errors:\n");
        for e in &plan.errors {
            let _ = writeln!(out, "  {}: {}", show_path(&e.file, &desired.home), e.error);
        }
        out.push('\n');
    }
    if !plan.warnings.is_empty() {
        out.push_str("Warnings:\n");
        for w in &plan.warnings {
            let _ = writeln!(out, "  {}: {}", w.module, w.message);
        }
        out.push('\n');
    }
    let s = plan.summary();
    if plan.has_changes() {
        let cluster = if s.cluster > 0 {
            ", 1 cluster link change"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "Plan: {} to spawn, {} to stop, {} to restart, {} to update config, {} blocked{cluster}.",
            s.spawn, s.stop, s.restart, s.config, s.blocked
        );
    } else if s.blocked > 0 {
        let _ = writeln!(
            out,
            "No changes: the running modules match the files ({} blocked).",
            s.blocked
        );
    } else {
        out.push_str("No changes: the running modules match the files.\n");
    }
    out
}

/// The plan as the JSON of specs/cli.md, plus `errors` (`[{file, error}]`, always present) and
/// `warnings` (`[{module, message}]`, present when there are any).
pub fn plan_json(plan: &Plan, kernel_running: bool) -> Value {
    let actions: Vec<Value> = plan
        .actions
        .iter()
        .map(|a| {
            let mut o = serde_json::Map::new();
            o.insert("action".into(), a.action.as_str().into());
            o.insert("module".into(), a.module.clone().into());
            o.insert("reason".into(), a.reason.clone().into());
            if let Some(s) = &a.sections {
                o.insert("sections".into(), json!(s));
            }
            if let Some(d) = &a.diff {
                o.insert("diff".into(), d.clone().into());
            }
            Value::Object(o)
        })
        .collect();
    let s = plan.summary();
    let errors: Vec<Value> = plan
        .errors
        .iter()
        .map(|e| json!({"file": e.file.to_string_lossy(), "error": e.error}))
        .collect();
    let mut out = json!({
        "kernelRunning": kernel_running,
        "actions": actions,
        "summary": {
            "spawn": s.spawn,
            "stop": s.stop,
            "restart": s.restart,
            "config": s.config,
            "blocked": s.blocked,
        },
        "errors": errors,
    });
    if !plan.warnings.is_empty() {
        out["warnings"] = json!(plan.warnings);
    }
    // Additive: present only when the plan has a cluster action.
    if s.cluster > 0 {
        out["summary"]["cluster"] = json!(s.cluster);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;

    #[test]
    fn json_shape() {
        let p = Plan {
            actions: vec![
                Action {
                    action: ActionKind::Config,
                    module: "web".into(),
                    reason: "config section `web` changed".into(),
                    sections: Some(vec!["web".into()]),
                    diff: Some("d".into()),
                    token: "",
                },
                Action {
                    action: ActionKind::Spawn,
                    module: "a".into(),
                    reason: "new module".into(),
                    sections: None,
                    diff: None,
                    token: "",
                },
            ],
            errors: vec![],
            warnings: vec![],
        };
        let v = plan_json(&p, true);
        assert_eq!(
            v,
            json!({
                "kernelRunning": true,
                "actions": [
                    {"action": "config", "module": "web", "reason": "config section `web` changed", "sections": ["web"], "diff": "d"},
                    {"action": "spawn", "module": "a", "reason": "new module"}
                ],
                "summary": {"spawn": 1, "stop": 0, "restart": 0, "config": 1, "blocked": 0},
                "errors": []
            })
        );
        let text = plan_text(&p, &Desired::default(), false);
        assert!(text.starts_with("The kernel is not running"));
        assert!(text.contains("  ~ web  config   config section `web` changed\n        d\n"));
        assert!(text.ends_with(
            "Plan: 1 to spawn, 0 to stop, 0 to restart, 1 to update config, 0 blocked.\n"
        ));
    }

    #[test]
    fn warnings_in_text_and_json() {
        let p = Plan {
            actions: vec![],
            errors: vec![],
            warnings: vec![crate::desired::Warning {
                module: "a".into(),
                message: "module.json: `version` is a number: read as \"1\" (write it as a string)"
                    .into(),
            }],
        };
        let v = plan_json(&p, true);
        assert_eq!(
            v["warnings"],
            json!([{"module": "a", "message": "module.json: `version` is a number: read as \"1\" (write it as a string)"}])
        );
        let text = plan_text(&p, &Desired::default(), true);
        assert!(
            text.contains("Warnings:\n  a: module.json: `version` is a number"),
            "{text}"
        );
        // absent when there are none (additive: older readers see the same document)
        let none = Plan::default();
        assert!(plan_json(&none, true).get("warnings").is_none());
    }
}
