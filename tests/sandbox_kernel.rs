//! Issue 6 acceptance through the real kernel: real `pons-test-module` processes, started by
//! `pons kernel start` (confined between fork and exec), probe their sandbox (`--try-read`,
//! `--try-write`, `--try-env`, `--try-open-files`, `--try-exec`, `--grandchild`) and record what
//! they could do. Also: `pons status --json` shows each module's sandbox, the spawn log line names
//! the sandbox state, the control socket refuses module processes, the kernel's files are private.
//!
//! Tests of Landlock rules print `SKIP <test>: …` and pass where the running Linux lacks Landlock
//! (`.ci/run` prints which); everything else runs everywhere.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use pons::sandbox::{self, ExecSpec, SandboxState};
use pons_reconciler::desired::SandboxPolicy;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

/// EACCES: what Landlock answers for a refused access.
const EACCES: i64 = 13;
/// EMFILE: the open-files limit.
const EMFILE: i64 = 24;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The first `event` record of module `id` matching `pred`, waited for.
fn probe(home: &TestHome, id: &str, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
    home.wait_event(id, event, T, |e| e["event"] == event && pred(e))
}

/// `permissions` with the record directory readable and writable (the test module writes its
/// record there) plus the given extra paths.
fn perms(home: &TestHome, read: &[&Path], write: &[&Path], extra: Value) -> Value {
    let rec = home.path().join("rec");
    let mut r = vec![s(&rec)];
    r.extend(read.iter().map(|p| s(p)));
    let mut w = vec![s(&rec)];
    w.extend(write.iter().map(|p| s(p)));
    let mut p = json!({"read": r, "write": w});
    if let (Some(p), Value::Object(e)) = (p.as_object_mut(), extra) {
        p.extend(e);
    }
    json!({ "permissions": p })
}

#[test]
fn reads_outside_the_read_permissions_are_refused() {
    if !landlock_or_skip("reads_outside_the_read_permissions_are_refused") {
        return;
    }
    let mut home = TestHome::new();
    let inside = home.path().join("inside");
    let outside = home.path().join("outside");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(inside.join("ok.txt"), "inside\n").unwrap();
    std::fs::write(outside.join("secret.txt"), "secret\n").unwrap();
    let ok = s(&inside.join("ok.txt"));
    let secret = s(&outside.join("secret.txt"));
    let config = s(&home.path().join("config.yaml"));
    home.write_config(FAST_LIFECYCLE);
    home.add(
        ModuleSpec::new("reader")
            .manifest(perms(&home, &[&inside], &[], json!({})))
            .args(&[
                "--try-read",
                &ok,
                "--try-read",
                &secret,
                "--try-read",
                &config,
            ]),
    );
    let _k = home.start();
    let r = probe(&home, "reader", "try_read", |e| e["path"] == ok.as_str());
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["bytes"], 7);
    for denied in [&secret, &config] {
        let r = probe(&home, "reader", "try_read", |e| {
            e["path"] == denied.as_str()
        });
        assert_eq!(r["ok"], false, "read outside `read` allowed: {r}");
        assert_eq!(r["errno"], EACCES, "{r}");
    }
    home.wait_status("reader", "ready", T);
}

#[test]
fn writes_outside_the_write_permissions_are_refused() {
    if !landlock_or_skip("writes_outside_the_write_permissions_are_refused") {
        return;
    }
    let mut home = TestHome::new();
    let data = home.path().join("data");
    let other = home.path().join("other");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("existing.txt"), "keep\n").unwrap();
    let allowed = s(&data.join("new.txt"));
    let created = s(&other.join("new.txt"));
    let existing = s(&other.join("existing.txt"));
    // Readable is not writable: `other` is in `read` only.
    home.add(
        ModuleSpec::new("writer")
            .manifest(perms(&home, &[&other], &[&data], json!({})))
            .args(&[
                "--try-write",
                &allowed,
                "--try-write",
                &created,
                "--try-write",
                &existing,
            ]),
    );
    let _k = home.start();
    let w = probe(&home, "writer", "try_write", |e| {
        e["path"] == allowed.as_str()
    });
    assert_eq!(w["ok"], true, "{w}");
    assert_eq!(
        std::fs::read_to_string(&allowed).unwrap(),
        "pons-test-module\n"
    );
    for denied in [&created, &existing] {
        let w = probe(&home, "writer", "try_write", |e| {
            e["path"] == denied.as_str()
        });
        assert_eq!(w["ok"], false, "write outside `write` allowed: {w}");
        assert_eq!(w["errno"], EACCES, "{w}");
    }
    assert!(!Path::new(&created).exists());
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep\n");
}

#[test]
fn only_approved_executables_run() {
    if !landlock_or_skip("only_approved_executables_run") {
        return;
    }
    let mut home = TestHome::new();
    let (Some(true_bin), Some(id_bin)) = (which("true"), which("id")) else {
        eprintln!("SKIP only_approved_executables_run: `true` or `id` not on PATH");
        return;
    };
    home.add(
        ModuleSpec::new("runner")
            .manifest(perms(&home, &[], &[], json!({"run": ["true"]})))
            .args(&["--try-exec", &s(&true_bin), "--try-exec", &s(&id_bin)]),
    );
    let _k = home.start();
    let ok = probe(&home, "runner", "try_exec", |e| e["path"] == s(&true_bin));
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["code"], 0, "{ok}");
    let denied = probe(&home, "runner", "try_exec", |e| e["path"] == s(&id_bin));
    assert_eq!(denied["ok"], false, "exec outside `run` allowed: {denied}");
    assert_eq!(denied["errno"], EACCES, "{denied}");
}

#[test]
fn only_granted_variables_reach_the_module() {
    let mut home = TestHome::new();
    home.add(
        ModuleSpec::new("envy")
            .manifest(perms(&home, &[], &[], json!({"env": ["GRANTED_VAR"]})))
            .args(&["--try-env", "GRANTED_VAR", "--try-env", "SECRET_TOKEN"]),
    );
    let _k = home.start_with(&[], &[("SECRET_TOKEN", "s3cret"), ("GRANTED_VAR", "yes")]);
    let granted = probe(&home, "envy", "try_env", |e| e["var"] == "GRANTED_VAR");
    assert_eq!(granted["ok"], true, "{granted}");
    assert_eq!(granted["value"], "yes");
    let secret = probe(&home, "envy", "try_env", |e| e["var"] == "SECRET_TOKEN");
    assert_eq!(secret["ok"], false, "ungranted variable present: {secret}");
    assert!(secret["value"].is_null());
}

#[test]
fn open_files_limit_is_enforced() {
    let mut home = TestHome::new();
    home.add(
        ModuleSpec::new("hoarder")
            .manifest(json!({"limits": {"openFiles": 32}}))
            .args(&["--try-open-files", "64"]),
    );
    home.add(ModuleSpec::new("free").args(&["--try-open-files", "64"]));
    let _k = home.start();
    let limited = probe(&home, "hoarder", "try_open_files", |_| true);
    assert_eq!(limited["ok"], false, "limit not enforced: {limited}");
    assert_eq!(limited["errno"], EMFILE, "{limited}");
    assert!(limited["opened"].as_u64().unwrap() < 32, "{limited}");
    let free = probe(&home, "free", "try_open_files", |_| true);
    assert_eq!(free["ok"], true, "without a limit: {free}");
    home.wait_status("hoarder", "ready", T);
}

/// Adds module `id`, which starts `sleep 1000` as a grandchild (`run: ["sleep"]`).
fn add_sleeper(home: &mut TestHome, id: &str) {
    let manifest = perms(home, &[], &[], json!({"run": ["sleep"]}));
    home.add(
        ModuleSpec::new(id)
            .manifest(manifest)
            .args(&["--grandchild"]),
    );
}

/// (module pid, grandchild pid) of the running sleeper `id`.
fn sleeper_pids(home: &TestHome, id: &str) -> (i64, i64) {
    home.wait_status(id, "ready", T);
    let gc = probe(home, id, "grandchild", |_| true);
    let gc_pid = gc["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("grandchild not started: {gc}"));
    let pid = home.starts(id)[0]["pid"].as_i64().unwrap();
    assert!(alive(pid) && alive(gc_pid));
    (pid, gc_pid)
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

#[test]
fn grandchild_is_gone_after_the_module_is_stopped() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("bystander"));
    add_sleeper(&mut home, "parent");
    let _k = home.start();
    let (pid, gc_pid) = sleeper_pids(&home, "parent");
    let bystander = home.wait_status("bystander", "ready", T)["pid"].clone();
    std::fs::remove_dir_all(home.path().join("modules/parent")).unwrap();
    wait_gone(&[pid, gc_pid], "the module directory was removed");
    wait_for("parent to leave the status", T, || {
        home.module_status("parent").is_none().then_some(())
    });
    let after = home.module_status("bystander").unwrap();
    assert_eq!(
        after["pid"], bystander,
        "the other module is untouched: {after}"
    );
}

#[test]
fn grandchild_is_gone_after_the_kernel_is_killed() {
    let mut home = TestHome::new();
    add_sleeper(&mut home, "parent");
    let mut k = home.start();
    let (pid, gc_pid) = sleeper_pids(&home, "parent");
    k.kill9();
    wait_gone(&[pid, gc_pid], "the kernel was SIGKILLed");
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    pons::snapshot_io::which(name, &path)
}

#[test]
fn status_json_shows_each_modules_sandbox() {
    let mut home = TestHome::new();
    let inside = home.path().join("inside");
    let data = home.path().join("data");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    home.add(
        ModuleSpec::new("shown")
            .manifest(perms(
                &home,
                &[&inside],
                &[&data],
                json!({"env": ["GRANTED_VAR"], "run": ["sleep"]}),
            ))
            .manifest(json!({"limits": {"openFiles": 256}})),
    );
    let _k = home.start_with(&[], &[("GRANTED_VAR", "yes"), ("SECRET_TOKEN", "no")]);
    home.wait_status("shown", "ready", T);
    let m = home.module_status("shown").unwrap();
    let sb = &m["sandbox"];
    let support = sandbox::support();
    assert_eq!(sb["landlock"], support.state.as_str(), "{sb}");
    assert_eq!(sb["abi"], json!(support.landlock_abi), "{sb}");
    let list = |k: &str| -> Vec<String> {
        sb[k]
            .as_array()
            .unwrap_or_else(|| panic!("sandbox.{k} is not a list: {sb}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let real = |p: &Path| s(&std::fs::canonicalize(p).unwrap());
    let module_dir = real(&home.path().join("modules/shown"));
    let read = list("read");
    assert!(read.contains(&s(&inside)), "{read:?}");
    assert!(read.contains(&module_dir), "{read:?}");
    assert!(
        !read
            .iter()
            .any(|p| p == "/usr" || p == "/etc" || p == "/dev"),
        "system paths are not the module's own: {read:?}"
    );
    let write = list("write");
    assert!(write.contains(&s(&data)), "{write:?}");
    assert!(!write.contains(&"/dev/null".to_string()), "{write:?}");
    let exec = list("exec");
    assert!(
        exec.contains(&format!("{module_dir}/test-module")),
        "{exec:?}"
    );
    assert!(exec.contains(&s(&which("sleep").unwrap())), "{exec:?}");
    let env = list("env");
    assert!(env.contains(&"GRANTED_VAR".to_string()), "{env:?}");
    assert!(env.contains(&"PONS_HOME".to_string()), "{env:?}");
    assert!(!env.contains(&"SECRET_TOKEN".to_string()), "{env:?}");
    assert!(
        !sb.to_string().contains("yes"),
        "values are never shown: {sb}"
    );
    assert_eq!(sb["limits"]["openFiles"], 256);
    assert_eq!(sb["required"], false);
    assert!(sb["system"]["read"].as_array().is_some(), "{sb}");
}

#[test]
fn spawn_log_names_the_sandbox_state_and_system_paths_are_never_noted() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("logged"));
    let _k = home.start();
    home.wait_status("logged", "ready", T);
    let support = sandbox::support();
    let want = match support.landlock_abi {
        Some(abi) => format!("sandbox={} abi={abi}", support.state.as_str()),
        None => format!("sandbox={}", support.state.as_str()),
    };
    home.wait_log(&want, T);
    let log = home.kernel_log();
    let line = log
        .lines()
        .find(|l| l.contains("module.spawn") && l.contains("logged"))
        .unwrap_or_else(|| panic!("no module.spawn line: {log}"));
    assert!(line.contains(&want), "{line}");
    assert!(!log.contains("does not exist"), "noise in the log: {log}");
}

#[test]
fn sandbox_required_runs_only_with_landlock() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("strict").manifest(json!({"sandbox": "required"})));
    let _k = home.start();
    if sandbox::support().state == SandboxState::Unavailable {
        let m = home.wait_status("strict", "blocked", T);
        let reason = m["reason"].as_str().unwrap();
        assert!(reason.contains("requires a sandbox"), "{reason}");
        eprintln!("landlock unavailable: `strict` is blocked as it must be");
    } else {
        let m = home.wait_status("strict", "ready", T);
        assert_eq!(m["sandbox"]["required"], true, "{m}");
    }
}

/// `pons status` run as a module would be: started as the kernel starts modules (no_new_privs).
#[test]
fn control_socket_refuses_module_processes() {
    let home = TestHome::new();
    let _k = home.start();
    let direct = home.pons(&["status", "--json"]);
    assert!(direct.status.success(), "{direct:?}");
    let spec = ExecSpec {
        program: pons_bin(),
        args: vec![
            "status".into(),
            "--json".into(),
            "--home".into(),
            s(home.path()),
        ],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/".into(),
        policy: SandboxPolicy::default(),
        kernel_pid: std::process::id(),
        landlock: false,
        tag: None,
        nofile_soft: None,
    };
    let out = sandbox::exec_command(&spec)
        .stdin(sandbox::Stdio::Null)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a module process got an answer: {text}"
    );
    assert!(
        text.contains("permission denied: the control socket does not accept module processes"),
        "{text}"
    );
    home.wait_log("control.refused", T);
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn kernel_files_are_private() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    // A runtime directory left too open by someone else is tightened.
    std::fs::create_dir_all(home.path().join(".runtime")).unwrap();
    std::fs::set_permissions(
        home.path().join(".runtime"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    home.add(ModuleSpec::new("first"));
    home.add(ModuleSpec::new("later").unapproved());
    assert_eq!(mode(&home.path().join("permissions.yaml")) & 0o044, 0o044);
    let _k = home.start();
    home.wait_status("first", "ready", T);
    let out = home.pons(&["modules", "approve", "later", "--yes"]);
    assert!(out.status.success(), "{out:?}");
    home.wait_status("later", "ready", T);
    let out = home.pons(&["config", "set", "later.greeting", "hi"]);
    assert!(out.status.success(), "{out:?}");
    let p = home.path();
    for dir in [".runtime", ".runtime/logs", "run"] {
        assert_eq!(mode(&p.join(dir)), 0o700, "{dir}");
    }
    for file in [
        ".runtime/kernel.pid",
        "run/kernel.sock",
        "permissions.yaml",
        "config.yaml",
    ] {
        assert_eq!(mode(&p.join(file)), 0o600, "{file}");
    }
    let logs: Vec<PathBuf> = std::fs::read_dir(p.join(".runtime/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!logs.is_empty());
    for log in logs {
        assert_eq!(mode(&log), 0o600, "{}", log.display());
    }
}
