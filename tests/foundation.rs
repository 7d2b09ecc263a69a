//! Issue 2 acceptance: a real kernel with real module processes boots to ready in dependency
//! order, blocks what must not run with a reason, restarts what fails, and stops in order.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(15);

#[test]
fn module_gets_install_init_and_becomes_ready() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("alpha").manifest(json!({"configKey": "alpha"})));
    home.write_config("alpha:\n  greeting: hi\n");
    let _k = home.start();
    let st = home.wait_status("alpha", "ready", T);
    assert!(st["pid"].as_u64().is_some(), "ready module has a pid: {st}");
    let types = home.received_types("alpha");
    assert_eq!(
        &types[..2],
        ["install", "init"],
        "first spawn gets install then init: {types:?}"
    );
    let init = &home.received("alpha")[1];
    assert_eq!(init["protocolVersion"], "1.0");
    let hp = home.path().to_string_lossy().to_string();
    assert_eq!(init["workspacePath"], hp.as_str());
    assert_eq!(init["projectRoot"], hp.as_str());
    assert_eq!(init["config"], json!({"alpha": {"greeting": "hi"}}));
    home.wait_received("alpha", "deps_ready", T);
    // firstSpawnAt is persisted, so a later spawn gets no install.
    wait_for("firstSpawnAt in permissions.yaml", T, || {
        std::fs::read_to_string(home.path().join("permissions.yaml"))
            .ok()
            .filter(|t| t.contains("firstSpawnAt"))
    });
    let status = home.status();
    assert_eq!(status["kernel"]["running"], true);
    assert_eq!(status["converged"], true, "{status}");
}

#[test]
fn consumer_waits_until_provider_is_ready() {
    let mut home = TestHome::new();
    home.add(
        ModuleSpec::new("provider")
            .manifest(json!({"provides": ["svc"]}))
            .args(&["--ready-delay-ms", "1500"]),
    );
    home.add(ModuleSpec::new("consumer").manifest(json!({"requires": ["svc"]})));
    let _k = home.start();
    home.wait_status("consumer", "waiting", T);
    assert!(
        !home
            .received_types("consumer")
            .contains(&"deps_ready".to_string()),
        "no deps_ready before the provider is ready"
    );
    home.wait_received("consumer", "deps_ready", T);
    let provider = home.wait_status("provider", "ready", T);
    assert_eq!(provider["provides"], json!(["svc"]));
    let status = home.status();
    assert!(status["services"]
        .as_array()
        .unwrap()
        .contains(&json!({"service": "svc", "module": "provider"})));
}

#[test]
fn duplicate_provider_is_blocked_whole() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("a-first").manifest(json!({"provides": ["svc", "other"]})));
    home.add(ModuleSpec::new("b-second").manifest(json!({"provides": ["svc", "mine"]})));
    let _k = home.start();
    home.wait_status("a-first", "ready", T);
    let b = home.wait_status("b-second", "blocked", T);
    let reason = b["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("svc"), "reason names the service: {reason}");
    let services = home.status()["services"].clone();
    assert!(
        !services.to_string().contains("mine"),
        "no partial registration of the rejected module: {services}"
    );
}

#[test]
fn dependency_cycle_blocks_every_module_on_it() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("ca").manifest(json!({"provides": ["a"], "requires": ["b"]})));
    home.add(ModuleSpec::new("cb").manifest(json!({"provides": ["b"], "requires": ["a"]})));
    home.add(ModuleSpec::new("free"));
    let _k = home.start();
    home.wait_status("free", "ready", T);
    for id in ["ca", "cb"] {
        let m = home.wait_status(id, "blocked", T);
        let reason = m["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("ca") && reason.contains("cb"),
            "the cycle path is named: {reason}"
        );
    }
}

#[test]
fn unapproved_and_tampered_modules_are_blocked_with_reasons() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("stranger").unapproved());
    home.add(ModuleSpec::new("tampered"));
    home.add(ModuleSpec::new("fine"));
    // Edit the approved manifest after approval.
    let p = home.path().join("modules/tampered/module.json");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push(' ');
    std::fs::write(&p, text).unwrap();
    let _k = home.start();
    home.wait_status("fine", "ready", T);
    let s = home.wait_status("stranger", "blocked", T);
    assert!(
        s["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("pons modules approve"),
        "names the approve command: {s}"
    );
    let t = home.wait_status("tampered", "blocked", T);
    assert!(
        t["reason"].as_str().unwrap_or_default().contains("hash"),
        "names the hash mismatch: {t}"
    );
    assert!(home.starts("stranger").is_empty() && home.starts("tampered").is_empty());
}

#[test]
fn ready_timeout_goes_to_the_restart_path() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  readyTimeoutMs: 1000\n  shutdownGraceMs: 1000\n");
    home.add(ModuleSpec::new("sleepy").args(&["--never-ready"]));
    let _k = home.start();
    wait_for("a second start after the ready timeout", T, || {
        (home.starts("sleepy").len() >= 2).then_some(())
    });
    assert!(home
        .received_types("sleepy")
        .contains(&"shutdown".to_string()));
}

#[test]
fn crash_backoff_grows_then_crashed() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  maxRestarts: 3\n");
    home.add(ModuleSpec::new("crashy").args(&["--crash-after-ms", "100", "--stderr", "boom"]));
    let k = home.start();
    let m = home.wait_status("crashy", "crashed", Duration::from_secs(20));
    assert!(
        m["reason"].as_str().unwrap_or_default().contains("crashed"),
        "{m}"
    );
    let starts = home.starts("crashy");
    assert_eq!(starts.len(), 3, "maxRestarts 3: three processes in all");
    let times: Vec<u64> = home
        .events("crashy")
        .iter()
        .filter(|e| e["event"] == "start")
        .filter_map(|e| e["t"].as_u64())
        .collect();
    if times.len() == 3 {
        let gap1 = times[1] - times[0];
        let gap2 = times[2] - times[1];
        assert!(gap2 > gap1, "backoff grows: {gap1} ms then {gap2} ms");
    }
    assert!(
        home.kernel_log().contains("boom"),
        "last stderr line is reported"
    );
    drop(k);
}

#[test]
fn ignored_pings_restart_the_module() {
    let mut home = TestHome::new();
    home.write_config(
        "lifecycle:\n  healthIntervalMs: 1000\n  pingTimeoutMs: 1000\n  healthMaxFailures: 2\n  shutdownGraceMs: 1000\n",
    );
    home.add(ModuleSpec::new("deaf").args(&["--ignore-ping"]));
    home.add(ModuleSpec::new("hearing"));
    let _k = home.start();
    wait_for("deaf restarted after failed health checks", T, || {
        (home.starts("deaf").len() >= 2).then_some(())
    });
    assert_eq!(
        home.starts("hearing").len(),
        1,
        "a module that answers pings is left alone"
    );
    assert!(home.received_types("hearing").contains(&"ping".to_string()));
}

#[test]
fn ordered_shutdown_stops_dependents_first_and_leaves_nothing() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("base").manifest(json!({"provides": ["db"]})));
    home.add(ModuleSpec::new("app").manifest(json!({"requires": ["db"]})));
    home.add(
        ModuleSpec::new("stubborn")
            .manifest(json!({"permissions": {"run": ["sleep"]}}))
            .args(&["--ignore-shutdown", "--grandchild"]),
    );
    let mut k = home.start();
    home.wait_status("app", "ready", T);
    home.wait_status("stubborn", "ready", T);
    let gc = home.wait_event("stubborn", "grandchild", T, |e| e["event"] == "grandchild");
    let gc_pid = gc["pid"].as_i64().unwrap();
    let pids: Vec<i64> = ["base", "app", "stubborn"]
        .iter()
        .map(|id| home.starts(id)[0]["pid"].as_i64().unwrap())
        .collect();
    let status = k.stop();
    assert!(status.success(), "kernel exits 0 on SIGTERM: {status:?}");
    let app_shutdown = home
        .events("app")
        .iter()
        .find(|e| e["event"] == "recv" && e["msg"]["type"] == "shutdown")
        .and_then(|e| e["t"].as_u64());
    let base_shutdown = home
        .events("base")
        .iter()
        .find(|e| e["event"] == "recv" && e["msg"]["type"] == "shutdown")
        .and_then(|e| e["t"].as_u64());
    let (a, b) = (
        app_shutdown.expect("app got shutdown"),
        base_shutdown.expect("base got shutdown"),
    );
    assert!(a <= b, "the dependent is told first ({a} <= {b})");
    for pid in pids.iter().chain([gc_pid].iter()) {
        wait_for(
            &format!("process {pid} gone"),
            Duration::from_secs(5),
            || (!alive(*pid)).then_some(()),
        );
    }
    assert!(!home.path().join(".runtime/kernel.pid").exists());
    assert!(!home.path().join("run/kernel.sock").exists());
}

#[test]
fn no_orphans_after_kernel_sigkill() {
    let mut home = TestHome::new();
    home.add(
        ModuleSpec::new("parent")
            .manifest(json!({"permissions": {"run": ["sleep"]}}))
            .args(&["--grandchild"]),
    );
    let mut k = home.start();
    home.wait_status("parent", "ready", T);
    let gc = home.wait_event("parent", "grandchild", T, |e| e["event"] == "grandchild");
    let gc_pid = gc["pid"].as_i64().unwrap();
    let pid = home.starts("parent")[0]["pid"].as_i64().unwrap();
    assert!(alive(pid) && alive(gc_pid));
    k.kill9();
    for p in [pid, gc_pid] {
        wait_for(
            &format!("process {p} gone after kernel SIGKILL"),
            Duration::from_secs(5),
            || (!alive(p)).then_some(()),
        );
    }
}

#[test]
fn garbage_output_never_kills_a_module() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("noisy").args(&["--garbage"]));
    let _k = home.start();
    let started = Instant::now();
    home.wait_status("noisy", "ready", Duration::from_secs(30));
    home.wait_log("Invalid IPC message", T);
    assert_eq!(home.starts("noisy").len(), 1, "never restarted");
    let log = home.kernel_log();
    assert!(log.contains("unknown type"), "unknown type logged");
    assert!(log.contains("oversize"), "oversize line logged");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn environment_is_scrubbed_to_the_allowlist_and_approved_env() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("envy").manifest(json!({"permissions": {"env": ["GRANTED_VAR"]}})));
    let _k = home.start_with(&[], &[("SECRET_TOKEN", "s3cret"), ("GRANTED_VAR", "yes")]);
    home.wait_status("envy", "ready", T);
    let env = home.starts("envy")[0]["env"].clone();
    assert!(
        env.get("SECRET_TOKEN").is_none(),
        "unapproved variable leaked: {env}"
    );
    assert_eq!(env["GRANTED_VAR"], "yes");
    assert_eq!(env["PONS_HOME"], home.path().to_string_lossy().as_ref());
    assert!(env.get("PATH").is_some());
}
