//! Manifests are lenient where the reference is: a field it accepts with another JSON type
//! (`"version": 1`, `"priority": "5"`, `"provides": null`) does not block the module; `pons plan`
//! shows a warning per field (text and `--json`), and the kernel logs each once per manifest.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

fn lenient_fields() -> Value {
    json!({"version": 1, "priority": "5", "provides": null})
}

fn plan_json(home: &TestHome) -> Value {
    let out = home.pons(&["plan", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pons plan --json printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The warnings of `module` in a plan JSON.
fn warnings_of(plan: &Value, module: &str) -> Vec<String> {
    plan["warnings"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter(|w| w["module"] == module)
                .filter_map(|w| w["message"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_three_warnings(plan: &Value) {
    let ws = warnings_of(plan, "lenient");
    assert_eq!(ws.len(), 3, "{plan:#}");
    for field in [
        "`version` is a number",
        "`priority` is a string",
        "`provides` is null",
    ] {
        assert!(ws.iter().any(|w| w.contains(field)), "{field} in {ws:?}");
    }
}

#[test]
fn lenient_manifest_runs_and_plan_warns() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("lenient").manifest(lenient_fields()));

    // Without a kernel: the module would spawn, the warnings are shown.
    let offline = plan_json(&home);
    assert_eq!(offline["kernelRunning"], false);
    assert_eq!(offline["actions"][0]["action"], "spawn", "{offline:#}");
    assert_three_warnings(&offline);

    let _k = home.start();
    let ready = home.wait_status("lenient", "ready", T);
    let pid = ready["pid"].as_u64().expect("pid");

    let plan = plan_json(&home);
    assert_eq!(plan["kernelRunning"], true);
    assert_eq!(plan["actions"], json!([]), "converged: {plan:#}");
    assert_three_warnings(&plan);
    let text = home.pons(&["plan"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Warnings:\n")
            && text.contains("lenient: module.json: `priority` is a string: read as 5"),
        "{text}"
    );

    // Logged once per manifest, not once per pass: two more passes add nothing.
    let needle = "`version` is a number";
    home.wait_log(needle, T);
    let out = home.pons(&["apply"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = plan_json(&home);
    assert_eq!(home.stderr_count(needle), 1, "{}", home.kernel_log());
    assert_eq!(
        home.module_status("lenient")
            .and_then(|m| m["pid"].as_u64()),
        Some(pid),
        "the warnings restart nothing"
    );

    // A changed manifest (approved again) is logged again.
    let changed = ModuleSpec::new("lenient")
        .manifest(lenient_fields())
        .manifest(json!({"description": "changed"}));
    home.add(changed);
    wait_for("the changed manifest's warnings in the log", T, || {
        (home.stderr_count(needle) == 2).then_some(())
    });
    home.wait_status("lenient", "ready", T);
    assert_eq!(home.stderr_count(needle), 2);
}
