//! Issue 3 acceptance: edits to the home converge with the minimal set of actions; `plan`
//! previews, `apply` forces, manual mode waits.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(15);

fn pid_of(home: &TestHome, id: &str) -> u64 {
    home.module_status(id)
        .and_then(|m| m["pid"].as_u64())
        .unwrap_or_else(|| panic!("{id} has a pid"))
}

fn config_updates(home: &TestHome, id: &str) -> Vec<serde_json::Value> {
    home.received(id)
        .into_iter()
        .filter(|m| m["type"] == "config:update")
        .collect()
}

/// Starts the kernel (with `args`) on a two-module home and waits until both are ready.
fn start_two(home: &mut TestHome, args: &[&str]) -> KernelProc {
    two_modules(home);
    let k = home.start_with(args, &[]);
    home.wait_status("alpha", "ready", T);
    home.wait_status("beta", "ready", T);
    // The kernel sends `deps_ready` right after it took `ready`: wait until each module read it,
    // so a test's "what did it receive since" starts after the start-up messages.
    for id in ["alpha", "beta"] {
        wait_for(&format!("{id} received deps_ready"), T, || {
            home.received_types(id)
                .iter()
                .any(|t| t == "deps_ready")
                .then_some(())
        });
    }
    k
}

fn two_modules(home: &mut TestHome) {
    home.write_config("lifecycle:\n  shutdownGraceMs: 1000\nalpha:\n  port: 1\nbeta:\n  port: 2\n");
    home.add(ModuleSpec::new("alpha").manifest(json!({"configKey": "alpha"})));
    home.add(ModuleSpec::new("beta").manifest(json!({"configKey": "beta"})));
}

#[test]
fn config_edit_pushes_config_update_only_to_the_owner() {
    let mut home = TestHome::new();
    let _k = start_two(&mut home, &[]);
    let (pa, pb) = (pid_of(&home, "alpha"), pid_of(&home, "beta"));
    home.write_config(
        "lifecycle:\n  shutdownGraceMs: 1000\nalpha:\n  port: 10\nbeta:\n  port: 2\n",
    );
    let upd = wait_for("alpha config:update", T, || {
        config_updates(&home, "alpha").pop()
    });
    assert_eq!(upd["config"], json!({"alpha": {"port": 10}}));
    assert_eq!(upd["changedSections"], json!(["alpha"]));
    assert!(config_updates(&home, "beta").is_empty(), "beta untouched");
    assert_eq!(
        (pid_of(&home, "alpha"), pid_of(&home, "beta")),
        (pa, pb),
        "no restart"
    );
}

#[test]
fn config_saved_by_rename_is_seen() {
    let mut home = TestHome::new();
    two_modules(&mut home);
    let _k = home.start();
    home.wait_status("alpha", "ready", T);
    let tmp = home.path().join(".config.yaml.swp");
    std::fs::write(
        &tmp,
        "lifecycle:\n  shutdownGraceMs: 1000\nalpha:\n  port: 11\nbeta:\n  port: 2\n",
    )
    .unwrap();
    std::fs::rename(&tmp, home.path().join("config.yaml")).unwrap();
    let upd = wait_for("alpha config:update", T, || {
        config_updates(&home, "alpha").pop()
    });
    assert_eq!(upd["config"]["alpha"]["port"], 11);
}

#[test]
fn manual_mode_waits_for_apply() {
    let mut home = TestHome::new();
    let _k = start_two(&mut home, &["--manual"]);
    let out = home.pons(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "converged: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    home.write_config(
        "lifecycle:\n  shutdownGraceMs: 1000\nalpha:\n  port: 12\nbeta:\n  port: 2\n",
    );
    let out = wait_for("plan to show the pending change", T, || {
        let out = home.pons(&["plan", "--detailed-exitcode"]);
        (out.status.code() == Some(2)).then_some(out)
    });
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("alpha"), "{text}");
    assert!(
        text.contains("-  port: 1") || text.contains("- port: 1") || text.contains("-port: 1"),
        "diff shown: {text}"
    );
    let json_out = home.pons(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(plan["kernelRunning"], true);
    assert_eq!(plan["summary"]["config"], 1, "{plan}");
    wait_for("status to say pending", T, || {
        let s = home.status();
        (s["pending"].as_u64().unwrap_or(0) > 0 && s["converged"] == false).then_some(())
    });
    assert!(
        config_updates(&home, "alpha").is_empty(),
        "nothing applied in manual mode"
    );
    let out = home.pons(&["apply"]);
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let upd = wait_for("alpha config:update", T, || {
        config_updates(&home, "alpha").pop()
    });
    assert_eq!(upd["config"]["alpha"]["port"], 12);
    let out = home.pons(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "converged after apply");
}

#[test]
fn added_module_is_spawned_and_removed_one_stopped() {
    let mut home = TestHome::new();
    let _k = start_two(&mut home, &[]);
    let pa = pid_of(&home, "alpha");
    home.add(ModuleSpec::new("gamma"));
    home.wait_status("gamma", "ready", T);
    assert_eq!(pid_of(&home, "alpha"), pa, "others untouched");
    let pb = pid_of(&home, "beta") as i64;
    std::fs::remove_dir_all(home.path().join("modules/beta")).unwrap();
    wait_for("beta gone from status", T, || {
        home.module_status("beta").is_none().then_some(())
    });
    wait_for("beta process gone", T, || (!alive(pb)).then_some(()));
    assert_eq!(pid_of(&home, "alpha"), pa, "others untouched");
}

#[test]
fn permission_change_restarts_only_that_module() {
    let mut home = TestHome::new();
    let _k = start_two(&mut home, &[]);
    let (pa, pb) = (pid_of(&home, "alpha"), pid_of(&home, "beta"));
    let p = home.path().join("permissions.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    // Grant alpha `sys: [hostname]` in its approved base permissions.
    let edited = text.replacen(
        "  alpha:\n    base:\n",
        "  alpha:\n    base:\n      sys: [hostname]\n",
        1,
    );
    let edited = edited.replacen(
        "      sys: []\n    baseManifestHash",
        "    baseManifestHash",
        1,
    );
    assert_ne!(edited, text);
    write_atomic(&p, edited.as_bytes());
    wait_for("alpha restarted", T, || {
        home.module_status("alpha")
            .filter(|m| m["status"] == "ready" && m["pid"].as_u64() != Some(pa))
    });
    assert_eq!(pid_of(&home, "beta"), pb, "beta untouched");
}

#[test]
fn invalid_yaml_changes_nothing_and_is_reported() {
    let mut home = TestHome::new();
    two_modules(&mut home);
    let _k = home.start();
    home.wait_status("alpha", "ready", T);
    let pa = pid_of(&home, "alpha");
    home.write_config("alpha: [unclosed\n");
    wait_for("status to report the config error", T, || {
        let s = home.status();
        s["errors"]
            .to_string()
            .contains("config.yaml")
            .then_some(())
    });
    let out = home.pons(&["plan"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("config.yaml"), "plan names the file: {text}");
    assert_eq!(pid_of(&home, "alpha"), pa);
    assert!(config_updates(&home, "alpha").is_empty());
}

#[test]
fn sighup_with_nothing_changed_does_nothing() {
    let mut home = TestHome::new();
    let k = start_two(&mut home, &[]);
    let before = (home.received("alpha").len(), home.received("beta").len());
    let pids = (pid_of(&home, "alpha"), pid_of(&home, "beta"));
    k.signal(libc::SIGHUP);
    // The pass is observable: apply after it reports converged with no actions.
    let out = home.pons(&["apply", "--json"]);
    let res: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(res["converged"], true, "{res}");
    assert_eq!(
        res["actions"]
            .as_array()
            .map(|a| a.iter().filter(|x| x["action"] != "blocked").count()),
        Some(0),
        "{res}"
    );
    let after = (home.received("alpha").len(), home.received("beta").len());
    let only_pings =
        |id: &str, n: usize| home.received(id)[n..].iter().all(|m| m["type"] == "ping");
    assert!(
        only_pings("alpha", before.0) && only_pings("beta", before.1),
        "no messages: {before:?} -> {after:?}"
    );
    assert_eq!((pid_of(&home, "alpha"), pid_of(&home, "beta")), pids);
}

#[test]
fn crashed_module_is_retried_only_by_apply() {
    let mut home = TestHome::new();
    let lifecycle =
        "lifecycle:\n  maxRestarts: 1\n  readyTimeoutMs: 1000\n  shutdownGraceMs: 1000\n";
    home.write_config(&format!("{lifecycle}cfg:\n  n: 1\n"));
    home.add(ModuleSpec::new("crashy").args(&["--never-ready"]));
    // A bystander whose config:update shows that a pass ran.
    home.add(ModuleSpec::new("cfg").manifest(json!({"configKey": "cfg"})));
    let k = home.start();
    home.wait_status("crashy", "crashed", T);
    home.wait_status("cfg", "ready", T);
    assert_eq!(home.starts("crashy").len(), 1);
    // An automatic pass leaves it alone.
    k.signal(libc::SIGHUP);
    let out = home.pons(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["summary"]["restart"], 1,
        "plan previews what apply would do: {plan}"
    );
    // The signal's pass, then the pass of an edit after it (passes run one at a time): once
    // the edit reached `cfg`, the signalled pass is over.
    home.wait_log("signal received", T);
    home.write_config(&format!("{lifecycle}cfg:\n  n: 2\n"));
    wait_for("cfg's config:update", T, || {
        config_updates(&home, "cfg").pop()
    });
    assert_eq!(home.starts("crashy").len(), 1, "not retried without apply");
    let out = home.pons(&["apply", "--timeout", "2"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "apply reports the module that did not converge"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("crashy"), "names it: {text}");
    assert!(home.starts("crashy").len() >= 2, "apply retried it");
}
