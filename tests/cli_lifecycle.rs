//! The operator's lifecycle verbs against a real kernel: `pons stop | start` (declarative:
//! `kernel.disabled` in config.yaml, waited for), `pons restart` (waits until ready again, or
//! not with `--no-wait`), unknown ids, and `lastError` of a module that crashed (and `pons apply`
//! answering at once when its retry crashes again).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn module(home: &TestHome, id: &str) -> Value {
    home.module_status(id)
        .unwrap_or_else(|| panic!("`{id}` is not in pons status: {}", home.status()))
}

fn config(home: &TestHome) -> String {
    std::fs::read_to_string(home.path().join("config.yaml")).unwrap_or_default()
}

#[test]
fn stop_disables_a_provider_and_blocks_its_dependent_start_brings_both_back() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("kv").manifest(json!({"provides": ["kv"]})));
    home.add(ModuleSpec::new("web").manifest(json!({"requires": ["kv"]})));
    let _k = home.start();
    home.wait_status("web", "ready", T);

    let out = ok(&home.pons(&["stop", "kv"]));
    assert!(out.contains("Module `kv` stopped."), "{out}");
    assert!(out.contains("web"), "the blocked dependent is named: {out}");
    // When the command returns the module is stopped, with the reason, and its dependent waits.
    let kv = module(&home, "kv");
    assert_eq!(kv["status"], "stopped", "{kv}");
    assert_eq!(kv["reason"], "disabled in config.yaml", "{kv}");
    assert_eq!(kv["disabled"], true, "{kv}");
    assert_eq!(kv["pid"], Value::Null, "{kv}");
    let web = home.wait_status("web", "blocked", T);
    assert!(
        web["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("`kv` has no provider"),
        "{web}"
    );
    assert_eq!(web["disabled"], false, "{web}");
    // What the operator asked for is logged, but not as a warning.
    let line = common::wait_for("the kernel's line about the disabled kv", T, || {
        let out = home.pons(&["logs", "kv", "--json"]).stdout;
        String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "module not started: disabled in config.yaml")
    });
    assert_eq!(line["level"], "info", "{line}");
    let text = config(&home);
    assert!(
        text.starts_with(FAST_LIFECYCLE) && text.contains("kernel:\n  disabled:"),
        "the operator's lines stay, the list is added:\n{text}"
    );
    let cfg: Value = serde_json::from_slice(
        &home
            .pons(&["config", "get", "kernel.disabled", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(cfg, json!(["kv"]));
    // Converged, and nothing more to do: the disabled module is not stopped again.
    let plan = home.pons(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", ok(&plan));
    let status = ok(&home.pons(&["status"]));
    assert!(
        status.contains("Converged: yes (1 blocked, 1 disabled; see `pons plan`)."),
        "{status}"
    );
    assert_eq!(home.starts("kv").len(), 1);

    // Stopping it again changes nothing.
    let out = ok(&home.pons(&["modules", "disable", "kv"]));
    assert!(out.contains("already disabled"), "{out}");
    // Starting the dependent alone cannot work while its provider is disabled: said at once.
    let t0 = Instant::now();
    let err = failed(&home.pons(&["start", "web"]));
    assert!(
        err.contains("module `web` is enabled but did not start: it is blocked (required service `kv` has no provider"),
        "{err}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "not a timeout: {err}"
    );

    let out = ok(&home.pons(&["start", "kv", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["modules"][0]["status"], "ready", "{v}");
    assert_eq!(v["modules"][0]["changed"], true, "{v}");
    assert_eq!(v["waited"], true, "{v}");
    let kv = module(&home, "kv");
    assert_eq!(
        (kv["status"].clone(), kv["disabled"].clone()),
        (json!("ready"), json!(false)),
        "{kv}"
    );
    home.wait_status("web", "ready", T);
    assert_eq!(home.starts("kv").len(), 2);
    assert_eq!(home.starts("web").len(), 2);
    assert!(!config(&home).contains("disabled"), "{}", config(&home));
}

#[test]
fn restart_waits_until_ready_and_no_wait_returns_at_once() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("slow").args(&["--ready-delay-ms", "2500"]));
    home.add(ModuleSpec::new("other"));
    let _k = home.start();
    home.wait_status("slow", "ready", T);
    home.wait_status("other", "ready", T);

    let t0 = Instant::now();
    let out = ok(&home.pons(&["restart", "slow"]));
    let took = t0.elapsed();
    assert!(out.contains("Module `slow` restarted and ready."), "{out}");
    assert_eq!(
        home.starts("slow").len(),
        2,
        "a new process when it returns"
    );
    assert_eq!(module(&home, "slow")["status"], "ready");
    assert!(
        took >= Duration::from_millis(2500),
        "returned after {took:?}"
    );

    let t0 = Instant::now();
    let out = ok(&home.pons(&["restart", "slow", "--no-wait"]));
    let took = t0.elapsed();
    assert!(out.contains("Module `slow` is restarting."), "{out}");
    assert!(
        took < Duration::from_millis(2500),
        "--no-wait took {took:?}"
    );
    assert_ne!(module(&home, "slow")["status"], "ready");
    home.wait_status("slow", "ready", T);
    assert_eq!(home.starts("slow").len(), 3);

    // `pons modules restart` waits the same way.
    let out = ok(&home.pons(&["modules", "restart", "slow", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            v["module"].clone(),
            v["restarted"].clone(),
            v["ready"].clone()
        ),
        (json!("slow"), json!(true), json!(true)),
        "{v}"
    );
    assert_eq!(home.starts("slow").len(), 4);

    // Unknown ids: exit 1 naming the id and the known ones; nothing changes.
    for verb in ["restart", "stop", "start"] {
        let err = failed(&home.pons(&[verb, "other", "nope"]));
        assert!(
            err.contains("`nope`") && err.contains("other") && err.contains("slow"),
            "{verb}: {err}"
        );
    }
    assert!(!config(&home).contains("disabled"), "{}", config(&home));
    assert_eq!(home.starts("other").len(), 1);
    // A disabled module cannot be restarted.
    ok(&home.pons(&["stop", "other"]));
    let err = failed(&home.pons(&["restart", "other"]));
    assert!(err.contains("pons start other"), "{err}");
}

#[test]
fn a_crashed_module_shows_its_last_error() {
    let mut home = TestHome::new();
    home.write_config(&format!(
        "{FAST_LIFECYCLE}  maxRestarts: 2\n  maxRestartBackoffMs: 1000\n"
    ));
    // It dies before it is ready: a restart cannot get it ready.
    home.add(ModuleSpec::new("db").args(&[
        "--never-ready",
        "--crash-after-ms",
        "300",
        "--stderr",
        "RuntimeError: database unreachable",
    ]));
    let _k = home.start();
    let db = home.wait_status("db", "crashed", T);
    let cause = "exited unexpectedly: RuntimeError: database unreachable";
    assert_eq!(db["lastError"], cause, "{db}");
    assert!(
        db["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("crashed after 2 consecutive failures"),
        "{db}"
    );
    assert_eq!(db["disabled"], false, "{db}");
    let text = ok(&home.pons(&["status"]));
    assert!(text.contains(&format!("; last error: {cause}")), "{text}");

    // A restart that does not get ready exits 1 naming the module, its status and the cause.
    let err = failed(&home.pons(&["restart", "db"]));
    assert!(
        err.contains("module `db` did not become ready: it is crashed") && err.contains(cause),
        "{err}"
    );
    assert_eq!(home.starts("db").len(), 4);

    // `pons apply` retries it; crashed again, it answers at once, not at its timeout.
    let begun = Instant::now();
    let out = home.pons(&["apply", "--json", "--timeout", "40"]);
    let err = failed(&out);
    assert!(
        begun.elapsed() < Duration::from_secs(30),
        "apply waited {:?} for a module that crashed again",
        begun.elapsed()
    );
    assert!(
        err.contains("module(s) db crashed again after the retry")
            && err.contains("`pons logs db`"),
        "{err}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(report["converged"], false, "{report}");
    assert_eq!(report["notConverged"], json!(["db"]), "{report}");
    assert_eq!(report["crashed"], json!(["db"]), "{report}");
    assert_eq!(home.wait_status("db", "crashed", T)["lastError"], cause);
}
