//! `pons modules approve <id> --watch`, the development loop: while it runs, every edit of the
//! module's module.json is approved again and the running kernel restarts the module with the new
//! manifest; an edit that widens permissions needs `--yes` (stdin is no terminal here); SIGINT and
//! SIGTERM end the loop, after which an edit blocks the module again, as it always does.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// A running `pons modules approve <id> --watch [args]`, its output in a file.
struct Watch {
    child: Option<Child>,
    out: PathBuf,
}

impl Watch {
    fn start(home: &TestHome, id: &str, args: &[&str]) -> Watch {
        let out = home.path().join(format!("watch-{id}.out"));
        let file = std::fs::File::create(&out).expect("output file");
        let err = file.try_clone().expect("clone output file");
        let child = Command::new(pons_bin())
            .args(["modules", "approve", id, "--watch"])
            .args(args)
            .arg("--home")
            .arg(home.path())
            .env_remove("PONS_HOME")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("start pons modules approve --watch");
        Watch {
            child: Some(child),
            out,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until `needle` occurs `n` times in the output.
    fn wait_output(&self, needle: &str, n: usize) {
        wait_for(&format!("{n}× {needle:?} in the watch output"), T, || {
            (self.output().matches(needle).count() >= n).then_some(())
        });
    }

    fn signal(&mut self, sig: i32) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("watch runs");
        unsafe {
            libc::kill(child.id() as i32, sig);
        }
        let status = wait_for("the watch to exit", T, || child.try_wait().ok().flatten());
        self.child = None;
        status
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn manifest_path(home: &TestHome, id: &str) -> PathBuf {
    home.path().join("modules").join(id).join("module.json")
}

fn edit_manifest(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut m: Value = serde_json::from_slice(&std::fs::read(path).expect("manifest")).unwrap();
    f(&mut m);
    write_atomic(path, &serde_json::to_vec_pretty(&m).unwrap());
}

fn start_env(home: &TestHome, id: &str, n: usize) -> Value {
    let starts = wait_for(&format!("start #{n} of {id}"), T, || {
        let s = home.starts(id);
        (s.len() >= n).then_some(s)
    });
    starts[n - 1]["env"].clone()
}

fn approved_env(home: &TestHome, id: &str) -> Value {
    let out = home.pons(&["permissions", "list", id, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "permissions list --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let text = v.to_string();
    assert!(text.contains(id), "{text}");
    v
}

#[test]
fn an_edited_manifest_is_approved_again_and_the_module_restarts_with_it() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("w"));
    let mut kernel = home.start_with(&[], &[("PONS_WATCH_VAR", "on")]);
    home.wait_status("w", "ready", T);
    let first = start_env(&home, "w", 1);
    assert!(first.get("PONS_WATCH_VAR").is_none(), "{first}");

    let mut watch = Watch::start(&home, "w", &["--yes"]);
    watch.wait_output("Module `w` is approved and up to date.", 1);

    // A widening edit: shown, approved (--yes), and the kernel restarts the module with it.
    let manifest = manifest_path(&home, "w");
    edit_manifest(&manifest, |m| {
        m["permissions"]["env"] = json!(["PONS_WATCH_VAR"]);
        m["description"] = json!("v2");
    });
    watch.wait_output("approved again", 1);
    let out = watch.output();
    assert!(out.contains("+ permissions.env"), "{out}");
    assert!(out.contains("PONS_WATCH_VAR"), "{out}");
    let second = start_env(&home, "w", 2);
    assert_eq!(second["PONS_WATCH_VAR"], "on", "{second}");
    home.wait_status("w", "ready", T);
    assert!(approved_env(&home, "w")
        .to_string()
        .contains("PONS_WATCH_VAR"));

    // An edit that only narrows: approved as well, the module restarts without the variable.
    edit_manifest(&manifest, |m| {
        m["permissions"]["env"] = json!([]);
    });
    watch.wait_output("approved again", 2);
    assert!(watch.output().contains("- permissions.env"));
    let third = start_env(&home, "w", 3);
    assert!(third.get("PONS_WATCH_VAR").is_none(), "{third}");
    home.wait_status("w", "ready", T);

    // SIGINT ends the loop (exit 0); an edit after it blocks the module, as without the loop.
    let status = watch.signal(libc::SIGINT);
    assert!(status.success(), "{status:?}: {}", watch.output());
    assert!(watch.output().contains("Stopped watching module `w`."));
    edit_manifest(&manifest, |m| m["description"] = json!("v3"));
    let blocked = home.wait_status("w", "blocked", T);
    let reason = blocked["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("approve"), "{blocked}");
    assert_eq!(home.starts("w").len(), 3);
    kernel.stop();
}

#[test]
fn without_yes_a_widening_edit_is_refused_and_a_narrowing_one_approved() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("n").manifest(json!({"permissions": {"env": ["PONS_A"]}})));
    let mut kernel = home.start();
    home.wait_status("n", "ready", T);
    let mut watch = Watch::start(&home, "n", &[]);
    watch.wait_output("Module `n` is approved and up to date.", 1);

    // Widening without --yes and without a terminal: refused, the kernel keeps it blocked.
    let manifest = manifest_path(&home, "n");
    edit_manifest(&manifest, |m| {
        m["permissions"]["net"] = json!(["example.com"])
    });
    watch.wait_output("Not approved", 1);
    assert!(watch.output().contains("+ permissions.net"));
    home.wait_status("n", "blocked", T);
    assert_eq!(home.starts("n").len(), 1);

    // Narrowing (the net permission gone again, env dropped): approved, the module starts again.
    edit_manifest(&manifest, |m| {
        m["permissions"]["net"] = json!([]);
        m["permissions"]["env"] = json!([]);
    });
    watch.wait_output("approved again", 1);
    start_env(&home, "n", 2);
    home.wait_status("n", "ready", T);

    // An invalid manifest is reported and left alone; SIGTERM ends the loop too.
    write_atomic(&manifest, b"{not json");
    watch.wait_output("is invalid", 1);
    let status = watch.signal(libc::SIGTERM);
    assert!(status.success(), "{status:?}: {}", watch.output());
    kernel.stop();
}

#[test]
fn watch_and_json_do_not_combine() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("j"));
    let out = home.pons(&["modules", "approve", "j", "--watch", "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--json") && err.contains("--watch"), "{err}");
}
