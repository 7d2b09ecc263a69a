//! Lifecycle semantics modules written for the reference kernel rely on: stopping modules stay
//! heard, `system:module:stopped` carries the reference's reason tokens, a security violation
//! stops (not restarts), the service directory follows the processes, `module.list` keeps
//! stopped modules, spawns follow priority order, and refusals are logged once.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

fn event(home: &TestHome, id: &str, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(&format!("{id}: {event}"), T, || {
        home.events(id)
            .into_iter()
            .find(|e| e["event"] == event && pred(e))
    })
}

fn wait_delivery(home: &TestHome, id: &str, topic: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(&format!("{id}: deliver {topic}"), T, || {
        home.deliveries(id, topic).into_iter().find(|p| pred(p))
    })
}

/// A module that records `system:module:stopped`.
fn watcher() -> ModuleSpec {
    ModuleSpec::new("watch").manifest(json!({"subscribes": ["system:module:stopped"]}))
}

#[test]
fn a_provider_answers_from_its_shutdown_handler_and_its_last_logs_are_kept() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  rpcTimeoutMs: 10000\n");
    home.add(
        ModuleSpec::new("prov")
            .manifest(json!({"provides": ["p"]}))
            .args(&[
                "--answer-on-shutdown",
                "--shutdown-log",
                "prov-says-goodbye",
            ]),
    );
    home.add(ModuleSpec::new("caller").manifest(json!({"requires": ["p"]})));
    let _k = home.start();
    home.wait_status("caller", "ready", T);
    home.command(
        "caller",
        json!({"rpc": {"service": "p", "method": "m", "params": {"n": 7}}}),
    );
    wait_for("request held by the provider", T, || {
        home.received("prov")
            .into_iter()
            .find(|m| m["type"] == "rpc_request")
    });
    let out = home.pons(&["modules", "restart", "prov"]);
    assert!(out.status.success(), "{out:?}");
    let r = event(&home, "caller", "rpc_result", |_| true);
    assert_eq!(r["result"]["echo"], json!({"n": 7}), "{r}");
    assert!(r.get("error").is_none_or(Value::is_null), "{r}");
    home.wait_log("prov-says-goodbye", T);
}

#[test]
fn stop_events_carry_the_reference_tokens_with_a_detail() {
    let mut home = TestHome::new();
    home.add(watcher());
    home.add(ModuleSpec::new("gone"));
    home.add(ModuleSpec::new("revoked"));
    let _k = home.start();
    home.wait_status("gone", "ready", T);
    home.wait_status("revoked", "ready", T);
    home.wait_status("watch", "ready", T);

    std::fs::remove_dir_all(home.path().join("modules/gone")).unwrap();
    let p = wait_delivery(&home, "watch", "system:module:stopped", |p| {
        p["moduleId"] == "gone"
    });
    assert_eq!(p["reason"], "uninstalled", "{p}");
    assert_eq!(p["detail"], "module directory removed", "{p}");

    let out = home.pons(&["permissions", "revoke", "revoked"]);
    assert!(out.status.success(), "{out:?}");
    let p = wait_delivery(&home, "watch", "system:module:stopped", |p| {
        p["moduleId"] == "revoked"
    });
    assert_eq!(p["reason"], "permissions-revoked", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not approved"),
        "{p}"
    );
}

#[test]
fn a_security_violation_stops_the_module_until_it_is_restarted() {
    let mut home = TestHome::new();
    home.add(watcher());
    home.add(ModuleSpec::new("rogue").manifest(json!({"publishes": ["allowed"]})));
    let _k = home.start();
    home.wait_status("watch", "ready", T);
    home.wait_status("rogue", "ready", T);
    home.command(
        "rogue",
        json!({"publish": {"topic": "forbidden", "payload": 1}}),
    );
    let p = wait_delivery(&home, "watch", "system:module:stopped", |p| {
        p["moduleId"] == "rogue"
    });
    assert_eq!(p["reason"], "security-violation", "{p}");
    assert_eq!(p["detail"], "publish:forbidden", "{p}");
    let st = home.wait_status("rogue", "stopped", T);
    assert_eq!(
        st["reason"], "security-violation: publish:forbidden",
        "{st}"
    );
    // Not restarted: the plan (a preview of `pons apply`, which would retry it) shows it stopped
    // with its cause, and it spawned once.
    let plan = home.pons(&["plan", "--json"]);
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let action = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["module"] == "rogue")
        .cloned()
        .unwrap_or_default();
    assert_eq!(action["action"], "restart", "{plan}");
    assert!(
        action["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("security-violation: publish:forbidden"),
        "{plan}"
    );
    assert_eq!(home.starts("rogue").len(), 1);
    // `pons modules restart` revives it.
    let out = home.pons(&["modules", "restart", "rogue"]);
    assert!(out.status.success(), "{out:?}");
    home.wait_status("rogue", "ready", T);
    assert_eq!(home.starts("rogue").len(), 2);
}

#[test]
fn system_topics_belong_to_the_kernel_whatever_the_capabilities() {
    let mut home = TestHome::new();
    home.add(watcher().manifest(json!({"subscribes": ["system:module:crashed"]})));
    home.add(ModuleSpec::new("forger").manifest(json!({
        "publishes": ["system:module:crashed"],
        "capabilities": {"topics": ["system:module:*"], "services": []}
    })));
    let _k = home.start();
    home.wait_status("watch", "ready", T);
    home.wait_status("forger", "ready", T);
    home.command(
        "forger",
        json!({"publish": {"topic": "system:module:crashed", "payload": {"moduleId": "watch"}}}),
    );
    let st = home.wait_status("forger", "stopped", T);
    assert_eq!(
        st["reason"], "security-violation: publish:system:module:crashed",
        "{st}"
    );
    assert!(
        home.deliveries("watch", "system:module:crashed").is_empty(),
        "the forged event reached a watcher"
    );
}

/// `warn` mode lets a refused publish through, but never one on a `system:` topic: the forger
/// keeps running and its fake event reaches nobody.
#[test]
fn system_topics_stay_the_kernels_in_warn_mode_too() {
    let mut home = TestHome::new();
    home.write_config("security:\n  enforcementMode: warn\n");
    home.add(
        ModuleSpec::new("watch")
            .manifest(json!({"subscribes": ["system:module:crashed", "after"]})),
    );
    home.add(ModuleSpec::new("forger").manifest(json!({
        "publishes": ["system:module:crashed", "after"],
        "capabilities": {"topics": ["system:module:*", "after"], "services": []}
    })));
    let _k = home.start();
    home.wait_status("watch", "ready", T);
    home.wait_status("forger", "ready", T);
    home.command(
        "forger",
        json!({"publish": {"topic": "system:module:crashed", "payload": {"moduleId": "watch"}}}),
    );
    // The next message of the forger travels the same way: once it arrived, the forged one
    // would have arrived before it.
    home.command(
        "forger",
        json!({"publish": {"topic": "after", "payload": 1}}),
    );
    wait_delivery(&home, "watch", "after", |_| true);
    assert!(
        home.deliveries("watch", "system:module:crashed").is_empty(),
        "the forged event reached a watcher in warn mode"
    );
    home.wait_log("publish:system:module:crashed", T);
    home.wait_status("forger", "ready", T);
    assert_eq!(home.starts("forger").len(), 1, "warn mode stops nobody");
}

#[test]
fn a_crashed_provider_hands_its_service_to_another_provider() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  maxRestarts: 1\n");
    home.add(
        ModuleSpec::new("store")
            .manifest(json!({"provides": ["kv"], "priority": 1}))
            .args(&["--echo", "--crash-after-ms", "1500"]),
    );
    home.add(
        ModuleSpec::new("fastkv")
            .manifest(json!({"provides": ["kv"], "priority": 10}))
            .args(&["--echo"]),
    );
    home.add(ModuleSpec::new("caller").manifest(json!({"requires": ["kv"]})));
    let _k = home.start();
    home.wait_status("caller", "ready", T);
    let st = home.wait_status("fastkv", "blocked", T);
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("already provided by module `store`"),
        "{st}"
    );
    // Crashed, it gives the service up: fastkv takes it over, store waits as the duplicate.
    let st = home.wait_status("store", "blocked", T);
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("already provided by module `fastkv`"),
        "{st}"
    );
    home.wait_status("fastkv", "ready", T);
    home.command(
        "caller",
        json!({"rpc": {"service": "kv", "method": "get", "params": 1}}),
    );
    let r = event(&home, "caller", "rpc_result", |_| true);
    assert_eq!(r["result"]["from"], "caller", "{r}");
    assert_eq!(r["result"]["method"], "get", "{r}");
    let status = home.status();
    let kv = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "kv")
        .cloned()
        .unwrap_or_default();
    assert_eq!(kv["module"], "fastkv", "{status}");
}

#[test]
fn module_list_keeps_stopped_modules() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("asker").manifest(json!({"provides": ["a"]})));
    home.add(ModuleSpec::new("leaver").manifest(json!({"provides": ["l"]})));
    let _k = home.start();
    home.wait_status("asker", "ready", T);
    home.wait_status("leaver", "ready", T);
    std::fs::remove_dir_all(home.path().join("modules/leaver")).unwrap();
    wait_for("leaver gone from status", T, || {
        home.module_status("leaver").is_none().then_some(())
    });
    home.command("asker", json!({"call": {"method": "module.list"}}));
    let r = event(&home, "asker", "call_result", |_| true);
    let list = r["result"].as_array().cloned().unwrap_or_default();
    let leaver = list.iter().find(|m| m["id"] == "leaver").cloned();
    assert_eq!(
        leaver,
        Some(json!({"id": "leaver", "status": "stopped", "provides": ["l"]})),
        "{r}"
    );
    // Removing a watched directory is no reason for inotify noise in the operator's log.
    let log = std::fs::read_to_string(home.path().join("kernel.stderr")).unwrap();
    assert!(
        !log.contains("watch descriptor") && !log.contains("WatchNotFound"),
        "{log}"
    );
}

#[test]
fn spawns_follow_priority_order() {
    let mut home = TestHome::new();
    for (id, prio) in [("a", 50), ("b", 5), ("c", 20), ("d", 5)] {
        home.add(ModuleSpec::new(id).manifest(json!({"priority": prio})));
    }
    let _k = home.start();
    for id in ["a", "b", "c", "d"] {
        home.wait_status(id, "ready", T);
    }
    let log = std::fs::read_to_string(home.path().join("kernel.stderr")).unwrap();
    let order: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("module.spawn"))
        .filter_map(|l| {
            ["a", "b", "c", "d"]
                .into_iter()
                .find(|id| l.contains(&format!("moduleId={id} ")))
        })
        .collect();
    assert_eq!(order, ["b", "d", "c", "a"], "{log}");
}

#[test]
fn refusals_and_fallbacks_are_logged_once_at_warn() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("fine"));
    home.add(ModuleSpec::new("stranger").unapproved());
    home.add(ModuleSpec::new("tampered"));
    // The stored hash edited by hand: the kernel names that side.
    let perms = std::fs::read_to_string(home.path().join("permissions.yaml")).unwrap();
    let start = perms.find("  tampered:").unwrap();
    let at =
        start + perms[start..].find("baseManifestHash: ").unwrap() + "baseManifestHash: ".len();
    let mut edited = perms.clone();
    edited.replace_range(at..at + 64, "not-a-sha256");
    write_atomic(&home.path().join("permissions.yaml"), edited.as_bytes());
    let k = home.start();
    home.wait_status("fine", "ready", T);
    home.wait_log("config.yaml not found — using defaults", T);
    home.wait_log("module not started: not approved", T);
    home.wait_log("baseManifestHash in permissions.yaml is not", T);
    // A signal with nothing changed says so; nothing is logged twice.
    k.signal(libc::SIGUSR1);
    home.wait_log("config unchanged", T);
    let out = home.pons(&["apply"]);
    assert!(out.status.success(), "{out:?}");
    let log = std::fs::read_to_string(home.path().join("kernel.stderr")).unwrap();
    assert_eq!(
        home.stderr_count("module not started: not approved"),
        1,
        "{log}"
    );
    assert_eq!(home.stderr_count("config.yaml not found"), 1, "{log}");
    let warn_line = log
        .lines()
        .find(|l| l.contains("module not started: not approved"))
        .unwrap();
    assert!(warn_line.contains("WARN"), "{warn_line}");
    assert!(warn_line.contains("stranger"), "{warn_line}");
}

#[test]
fn a_crashed_provider_owns_no_service() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  maxRestarts: 1\n");
    home.add(
        ModuleSpec::new("store")
            .manifest(json!({"provides": ["kv"]}))
            .args(&["--echo", "--crash-after-ms", "800"]),
    );
    home.add(ModuleSpec::new("caller").manifest(json!({"requires": ["kv"]})));
    let _k = home.start();
    home.wait_status("caller", "ready", T);
    home.wait_status("store", "crashed", T);
    home.command(
        "caller",
        json!({"rpc": {"service": "kv", "method": "get", "params": 1}}),
    );
    let r = event(&home, "caller", "rpc_result", |_| true);
    assert_eq!(r["error"], "service_not_found", "{r}");
}

#[test]
fn restart_base_ms_is_honoured_down_to_zero() {
    let mut home = TestHome::new();
    home.write_config(
        "lifecycle:\n  maxRestarts: 100\n  restartBaseMs: 0\n  maxRestartBackoffMs: 0\n",
    );
    home.add(ModuleSpec::new("flaky").args(&["--crash-after-ms", "20"]));
    let _k = home.start();
    // With the default 1 s base, ten restarts take 1+2+4+…+60 s; with 0 they follow each other.
    wait_for("ten restarts", T, || {
        (home.starts("flaky").len() >= 10).then_some(())
    });
}
