//! Issue 10 (points 5 and 6) through the real kernel and real `pons-test-module` processes:
//!
//! - descendants that leave their module's process group — a `setsid()` grandchild and a
//!   double-forked daemon — die when the module exits, when pons stops it (its directory removed,
//!   `pons kernel stop`) and when the kernel is SIGKILLed; those of other modules live on;
//! - under a root kernel a module holds no capabilities, cannot create device nodes, cannot read
//!   the kernel's or another module's `/proc/<pid>/environ` or `fd`, and still reads what runtimes
//!   need (`/proc/cpuinfo`, `/proc/self/status`). These print `SKIP <test>: not root` and pass
//!   where the tests do not run as root.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn root_or_skip(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIP {test}: not root");
        return false;
    }
    true
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A module that starts a `setsid()` grandchild and a double-forked daemon (both `sleep 1000`).
fn add_escaper(home: &mut TestHome, id: &str) {
    home.add(
        ModuleSpec::new(id)
            .manifest(json!({"permissions": {"run": ["sleep"]}}))
            .args(&["--setsid-grandchild", "--daemon-grandchild"]),
    );
}

/// `/proc/<pid>/stat` fields after `(comm)`: state, ppid, pgrp, session, …
fn stat(pid: i64) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    text.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// (module pid, [setsid grandchild, daemon]) of the running module `id`, once both escaped its
/// process group.
fn escaped_pids(home: &TestHome, id: &str) -> (i64, Vec<i64>) {
    let m = home.wait_status(id, "ready", T);
    let module = m["pid"].as_i64().unwrap();
    let mut out = Vec::new();
    for event in ["setsid_grandchild", "daemon_grandchild"] {
        let e = home.wait_event(id, event, T, |e| e["event"] == event);
        let pid = e["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("{id}: {event} not started: {e}"));
        assert!(alive(pid), "{id}: {event} {pid} is not running");
        let st = stat(pid);
        assert_ne!(
            st[2],
            module.to_string(),
            "{event} must have left the module's process group: {st:?}"
        );
        assert_ne!(st[3], stat(module)[3], "{event} must be in another session");
        out.push(pid);
    }
    (module, out)
}

fn wait_gone(pids: &[i64], after: &str) {
    for p in pids {
        wait_for(
            &format!("process {p} gone after {after}"),
            Duration::from_secs(10),
            || (!alive(*p)).then_some(()),
        );
    }
}

fn kill_now(pids: &[i64]) {
    for p in pids {
        // SAFETY: SIGKILL to a test's own leftover process.
        unsafe {
            libc::kill(*p as i32, libc::SIGKILL);
        }
    }
}

#[test]
fn escaped_descendants_die_when_their_module_exits_and_others_live_on() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    add_escaper(&mut home, "leaver");
    add_escaper(&mut home, "stayer");
    let _k = home.start();
    let (_, leaver) = escaped_pids(&home, "leaver");
    let (_, stayer) = escaped_pids(&home, "stayer");
    home.command("leaver", json!({"exit": 0}));
    wait_gone(&leaver, "their module exited");
    // The sweep is over once the kernel logged it; the other module's daemons are untouched.
    home.wait_log("module.descendants.killed", T);
    assert!(
        stayer.iter().all(|p| alive(*p)),
        "another module's descendants were killed"
    );
    let log = home.kernel_log();
    let line = log
        .lines()
        .find(|l| l.contains("module.descendants.killed"))
        .unwrap();
    assert!(line.contains("leaver"), "{line}");
    kill_now(&stayer);
}

#[test]
fn escaped_descendants_die_when_their_module_is_removed() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    add_escaper(&mut home, "removed");
    let _k = home.start();
    let (module, pids) = escaped_pids(&home, "removed");
    std::fs::remove_dir_all(home.path().join("modules/removed")).unwrap();
    wait_gone(&[module], "the module directory was removed");
    wait_gone(&pids, "the module directory was removed");
}

#[test]
fn escaped_descendants_die_with_a_kernel_stop() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    add_escaper(&mut home, "stopped");
    let mut k = home.start();
    let (module, pids) = escaped_pids(&home, "stopped");
    let out = home.pons(&["kernel", "stop"]);
    assert!(out.status.success(), "{out:?}");
    k.wait(Duration::from_secs(30));
    wait_gone(&[module], "pons kernel stop");
    wait_gone(&pids, "pons kernel stop");
}

#[test]
fn escaped_descendants_die_when_the_kernel_is_killed() {
    let mut home = TestHome::new();
    add_escaper(&mut home, "orphaned");
    add_escaper(&mut home, "second");
    let mut k = home.start();
    let (m1, mut pids) = escaped_pids(&home, "orphaned");
    let (m2, more) = escaped_pids(&home, "second");
    pids.extend(more);
    k.kill9();
    wait_gone(&[m1, m2], "the kernel was SIGKILLed");
    wait_gone(&pids, "the kernel was SIGKILLed");
}

/// Hex capability set from a `caps` event, as a number.
fn capset(e: &Value, key: &str) -> u64 {
    let hex = e[key].as_str().unwrap_or_else(|| panic!("no {key} in {e}"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|err| panic!("{key}={hex}: {err}"))
}

#[test]
fn a_root_kernels_modules_hold_no_capabilities() {
    if !root_or_skip("a_root_kernels_modules_hold_no_capabilities") {
        return;
    }
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("capless").args(&["--report-caps"]));
    let _k = home.start();
    let e = home.wait_event("capless", "caps", T, |e| e["event"] == "caps");
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(capset(&e, key), 0, "{key} of a module: {e}");
    }
    assert_eq!(e["NoNewPrivs"], "1", "{e}");
    assert!(e["Uid"].as_str().unwrap().starts_with('0'), "{e}");
    let m = home.wait_status("capless", "ready", T);
    assert_eq!(m["sandbox"]["capabilities"], "dropped", "{m}");
}

#[test]
fn a_root_kernels_modules_cannot_create_device_nodes() {
    if !root_or_skip("a_root_kernels_modules_cannot_create_device_nodes") {
        return;
    }
    let mut home = TestHome::new();
    // The module may write its own directory: still no device node there.
    let dir = home.path().join("modules/nodes");
    let node = dir.join("null");
    home.add(
        ModuleSpec::new("nodes")
            .manifest(json!({"permissions": {"write": [s(&home.path().join("rec")), s(&dir)]}}))
            .args(&[
                "--try-mknod",
                &s(&node),
                "--try-write",
                &s(&dir.join("plain")),
            ]),
    );
    let _k = home.start();
    let w = home.wait_event("nodes", "try_write", T, |e| e["event"] == "try_write");
    assert_eq!(w["ok"], true, "the directory is writable: {w}");
    let e = home.wait_event("nodes", "try_mknod", T, |e| e["event"] == "try_mknod");
    assert_eq!(e["ok"], false, "a module created a device node: {e}");
    assert!(
        [libc::EPERM as i64, libc::EACCES as i64].contains(&e["errno"].as_i64().unwrap()),
        "{e}"
    );
    assert!(std::fs::symlink_metadata(&node).is_err());
}

#[test]
fn a_root_kernels_modules_cannot_read_other_processes_secrets() {
    if !root_or_skip("a_root_kernels_modules_cannot_read_other_processes_secrets") {
        return;
    }
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(
        ModuleSpec::new("holder").manifest(json!({"permissions": {"env": ["HOLDER_SECRET"]}})),
    );
    let k = home.start_with(&[], &[("HOLDER_SECRET", "s3cret")]);
    let holder = home.wait_status("holder", "ready", T)["pid"]
        .as_i64()
        .unwrap();
    let kernel = k.pid();
    // Environments are read; descriptors only opened (`fd/2` of the kernel is its log file, of
    // the module a pipe to the kernel). The fd *numbers* of a same-uid process stay listable.
    let targets = [
        ("try_read", format!("/proc/{kernel}/environ")),
        ("try_open", format!("/proc/{kernel}/fd/2")),
        ("try_open", format!("/proc/{kernel}/mem")),
        ("try_read", format!("/proc/{holder}/environ")),
        ("try_open", format!("/proc/{holder}/fd/2")),
        ("try_open", format!("/proc/{holder}/mem")),
    ];
    let mut args: Vec<&str> = Vec::new();
    for (probe, t) in &targets {
        args.extend([
            if *probe == "try_read" {
                "--try-read"
            } else {
                "--try-open"
            },
            t,
        ]);
    }
    args.extend([
        "--try-read",
        "/proc/self/status",
        "--try-read",
        "/proc/cpuinfo",
    ]);
    args.extend([
        "--try-read",
        "/proc/self/environ",
        "--try-read",
        "/proc/meminfo",
    ]);
    // The kernel records the holder's first spawn in permissions.yaml; adding the prober (which
    // rewrites that file) only afterwards keeps the two writes apart.
    wait_for("firstSpawnAt in permissions.yaml", T, || {
        std::fs::read_to_string(home.path().join("permissions.yaml"))
            .ok()?
            .contains("firstSpawnAt")
            .then_some(())
    });
    home.add(ModuleSpec::new("prober").args(&args));
    // The watcher sees the new module too; `apply` makes the pass certain.
    let out = home.pons(&["apply"]);
    assert!(out.status.success(), "{out:?}");
    let landlock = pons::sandbox::support().state != pons::sandbox::SandboxState::Unavailable;
    for (probe, t) in &targets {
        let r = home.wait_event("prober", t, T, |e| {
            e["event"] == *probe && e["path"] == t.as_str()
        });
        if !landlock && t.contains(&format!("/{holder}/")) {
            eprintln!(
                "note: without Landlock another capability-less module's {t} is readable: {r}"
            );
            continue;
        }
        assert_eq!(r["ok"], false, "a module read {t}: {r}");
    }
    for own in [
        "/proc/self/status",
        "/proc/cpuinfo",
        "/proc/self/environ",
        "/proc/meminfo",
    ] {
        let r = home.wait_event("prober", own, T, |e| {
            e["event"] == "try_read" && e["path"] == own
        });
        assert_eq!(r["ok"], true, "{own} must stay readable: {r}");
    }
    let m = home.wait_status("prober", "ready", T);
    let want = if landlock { "landlock" } else { "none" };
    assert_eq!(m["sandbox"]["procIsolation"], want, "{m}");
}
