//! Issue 12: a pass reads the files at once, never waiting for a quiet window. An edit followed
//! at once by SIGUSR1 reaches the module with the new values; an in-place save written in two
//! chunks, with the kernel asked to reconcile between them, disturbs nothing that runs and is
//! applied once it is complete (specs/files.md "When the kernel reads the files").

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

fn config(v: &str, name: &str) -> String {
    format!("lifecycle:\n  shutdownGraceMs: 1000\nk:\n  v: {v}\n  name: {name}\no:\n  keep: 1\n")
}

fn updates(home: &TestHome, id: &str) -> Vec<Value> {
    home.received(id)
        .into_iter()
        .filter(|m| m["type"] == "config:update")
        .collect()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `m` reads section `k`, `other` section `o`.
fn home_with_modules() -> TestHome {
    let mut home = TestHome::new();
    home.write_config(&config("1", "one"));
    home.add(ModuleSpec::new("m").manifest(json!({"configKey": "k"})));
    home.add(ModuleSpec::new("other").manifest(json!({"configKey": "o"})));
    home
}

/// True where the kernel can tell that a file is open for writing (file leases: the file's owner
/// or `CAP_LEASE`, and a file system with leases); prints why the test is skipped otherwise.
fn leases_or_skip(dir: &Path, test: &str) -> bool {
    let probe = dir.join("lease-probe");
    std::fs::write(&probe, "x").expect("write the lease probe");
    let f = std::fs::File::open(&probe).expect("open the lease probe");
    // SAFETY: fcntl on a descriptor `f` owns, integer arguments only.
    let ok = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) } == 0;
    if !ok {
        eprintln!(
            "SKIP {test}: no file leases in {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    ok
}

/// Opens config.yaml for an in-place save (truncated, as editors that save in place do).
fn truncate_config(home: &TestHome) -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(home.path().join("config.yaml"))
        .expect("open config.yaml for writing")
}

#[test]
fn an_edit_then_sigusr1_pushes_the_new_values() {
    // Manual mode: the watcher's own pass only detects a change, so each update is the signal's.
    let home = home_with_modules();
    let k = home.start_with(&["--manual"], &[]);
    home.wait_status("m", "ready", T);
    home.wait_status("other", "ready", T);
    for v in 2..=6u64 {
        // In place (truncate, write, close), then the signal at once: no settle time.
        std::fs::write(
            home.path().join("config.yaml"),
            config(&v.to_string(), &format!("n{v}")),
        )
        .unwrap();
        k.signal(libc::SIGUSR1);
        let upd = wait_for(&format!("m to get v = {v}"), T, || {
            updates(&home, "m")
                .into_iter()
                .find(|u| u["config"]["k"]["v"] == v)
        });
        assert_eq!(upd["config"]["k"]["name"], format!("n{v}"), "{upd}");
    }
    assert_eq!(updates(&home, "m").len(), 5, "one update per edit");
    assert!(
        updates(&home, "other").is_empty(),
        "section o never changed"
    );
    assert_eq!(home.starts("m").len(), 1);
}

#[test]
fn a_save_in_two_chunks_disturbs_nothing_and_is_applied_once_complete() {
    let home = home_with_modules();
    if !leases_or_skip(home.path(), "a_save_in_two_chunks_disturbs_nothing") {
        return;
    }
    let k = home.start();
    home.wait_status("m", "ready", T);
    home.wait_status("other", "ready", T);
    let (m_pid, other_pid) = (
        home.module_status("m").unwrap()["pid"].clone(),
        home.module_status("other").unwrap()["pid"].clone(),
    );
    // The first chunk is valid YAML on its own: read now, it would push v = 2 without `name` and
    // drop section `o`. The save will say v = 25.
    let mut w = truncate_config(&home);
    w.write_all(b"lifecycle:\n  shutdownGraceMs: 1000\nk:\n  v: 2")
        .unwrap();
    k.signal(libc::SIGUSR1);
    home.wait_log("signal received", T);
    // And an applying pass asked for by `pons apply`, after the signal's (it returns once its
    // pass ran): both meet the file half-written.
    let out = home.pons(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        updates(&home, "m").is_empty(),
        "nothing pushed from half a file: {:?}",
        updates(&home, "m")
    );
    assert!(updates(&home, "other").is_empty());
    assert!(
        text(&out).contains("being written"),
        "apply says why the edit waits: {}",
        text(&out)
    );
    home.wait_log("input being written", T);
    let status = home.status();
    assert!(
        status["errors"].to_string().contains("being written"),
        "{status}"
    );
    for (id, pid) in [("m", &m_pid), ("other", &other_pid)] {
        let st = home.module_status(id).unwrap();
        assert_eq!((&st["status"], &st["pid"]), (&json!("ready"), pid), "{st}");
    }

    // The rest of the save, then close: the watcher's pass applies the whole file.
    w.write_all(b"5\n  name: twenty-five\no:\n  keep: 1\n")
        .unwrap();
    drop(w);
    let upd = wait_for("m to get the saved values", T, || {
        updates(&home, "m").into_iter().next()
    });
    assert_eq!(upd["config"]["k"], json!({"v": 25, "name": "twenty-five"}));
    wait_for("the input error to clear", T, || {
        let s = home.status();
        s["errors"]
            .as_array()
            .is_none_or(|e| e.is_empty())
            .then_some(())
    });
    assert_eq!(updates(&home, "m").len(), 1, "{:?}", updates(&home, "m"));
    assert!(updates(&home, "other").is_empty(), "section o is the same");
    assert_eq!(home.starts("m").len(), 1);
    assert_eq!(home.starts("other").len(), 1);
    assert!(!home.kernel_log().contains("invalid input"));
}

#[test]
fn a_signal_during_a_save_takes_effect_once_it_is_done_in_manual_mode() {
    let home = home_with_modules();
    if !leases_or_skip(home.path(), "a_signal_during_a_save_takes_effect") {
        return;
    }
    let k = home.start_with(&["--manual"], &[]);
    home.wait_status("m", "ready", T);
    // Half a flow sequence: not YAML at all yet.
    let mut w = truncate_config(&home);
    w.write_all(b"lifecycle:\n  shutdownGraceMs: 1000\nk:\n  v: [3")
        .unwrap();
    k.signal(libc::SIGUSR1);
    home.wait_log("input being written", T);
    assert!(updates(&home, "m").is_empty());
    // In manual mode the watcher's pass only detects changes; this one applies, because the
    // signalled pass could not.
    w.write_all(b", 4]\n  name: list\no:\n  keep: 1\n").unwrap();
    drop(w);
    let upd = wait_for("m to get the saved values", T, || {
        updates(&home, "m").into_iter().next()
    });
    assert_eq!(upd["config"]["k"], json!({"v": [3, 4], "name": "list"}));
    assert_eq!(home.starts("m").len(), 1);
    assert!(
        !home.kernel_log().contains("invalid input"),
        "half a file is no invalid input"
    );
}

#[test]
fn an_edit_made_while_the_boot_pass_spawns_is_not_missed() {
    // The watcher is set up once the boot pass has spawned everything; an edit made before that
    // is caught by the pass that follows the watcher's set-up. Nothing else may trigger a pass
    // here: the kernel's stderr goes outside the home, and `firstSpawnAt` is recorded already
    // (the kernel writes nothing into the home).
    let mut home = TestHome::new();
    home.write_config(&config("1", "one"));
    home.add(ModuleSpec::new("a").manifest(json!({"configKey": "k"})));
    for i in 0..20 {
        home.add(ModuleSpec::new(&format!("z{i:02}")));
    }
    let perms = home.path().join("permissions.yaml");
    let text = std::fs::read_to_string(&perms).unwrap().replace(
        "    baseGrantedAt: 2026-01-01T00:00:00.000Z\n",
        "    baseGrantedAt: 2026-01-01T00:00:00.000Z\n    firstSpawnAt: 2026-01-01T00:00:00.000Z\n",
    );
    write_atomic(&perms, text.as_bytes());
    let logs = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(pons_bin())
        .args(["kernel", "start", "--home"])
        .arg(home.path())
        .env_remove("PONS_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(logs.path().join("kernel.stderr")).unwrap())
        .spawn()
        .expect("start the kernel");
    let _k = KernelProc {
        child: Some(child),
        home: home.path().to_path_buf(),
    };
    // `a` spawns first: the boot pass has read the files, the other modules are still spawning.
    home.wait_event("a", "its start", T, |e| e["event"] == "start");
    std::fs::write(home.path().join("config.yaml"), config("2", "two")).unwrap();
    let upd = wait_for("a to get the edit made during boot", T, || {
        updates(&home, "a").into_iter().next()
    });
    assert_eq!(upd["config"]["k"], json!({"v": 2, "name": "two"}));
}
