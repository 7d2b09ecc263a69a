//! Python modules under the real kernel: the demo home (examples/demo) runs with its one shared
//! copy of the SDK (`lib/`, a link to sdk/python/src, approved as a read path), and a module
//! whose import the sandbox refuses gets one hint in the kernel log saying which paths it may
//! read and what to do.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use pons::sandbox::{self, SandboxState};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The interpreter the kernel would run for `runtime: python` (`python`, else `python3`, on PATH
/// without version-manager shims); `None` (and a SKIP line) when there is none.
fn python_or_skip(test: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = pons::snapshot_io::which("python", &path)
        .or_else(|| pons::snapshot_io::which("python3", &path));
    if found.is_none() {
        eprintln!("SKIP {test}: no python or python3 on PATH");
    }
    found
}

fn landlock_or_skip(test: &str) -> bool {
    let s = sandbox::support();
    if s.state == SandboxState::Unavailable {
        eprintln!("SKIP {test}: Landlock unavailable here: {}", s.to_json());
        return false;
    }
    true
}

/// Copies the demo home into `dst`, leaving out runtime state; a symlink is recreated pointing
/// at the absolute path of its target (`lib` → the repository's sdk/python/src).
fn copy_demo(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if [".runtime", "run", "__pycache__"].contains(&name.to_string_lossy().as_ref()) {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let target = std::fs::canonicalize(&from).unwrap();
            std::os::unix::fs::symlink(target, &to).unwrap();
        } else if kind.is_dir() {
            copy_demo(&from, &to);
        } else {
            std::fs::copy(&from, &to).unwrap();
        }
    }
}

#[test]
fn the_demo_modules_become_ready_with_the_one_shared_sdk() {
    if python_or_skip("the_demo_modules_become_ready_with_the_one_shared_sdk").is_none() {
        return;
    }
    let demo = repo().join("examples/demo");
    let sdk = repo().join("sdk/python/src");
    // One copy: the demo has none of its own, lib/ is the SDK's source directory.
    assert_eq!(
        std::fs::canonicalize(demo.join("lib")).unwrap(),
        std::fs::canonicalize(&sdk).unwrap()
    );
    for id in ["clock", "greeter", "hello"] {
        let dir = demo.join("modules").join(id);
        assert!(
            !dir.join("pons_sdk.py").exists(),
            "a copy in {}",
            dir.display()
        );
    }
    let home = TestHome::new();
    copy_demo(&demo, home.path());
    let mut kernel = home.start();
    for id in ["greeter", "clock", "hello"] {
        home.wait_status(id, "ready", T);
    }
    home.wait_log("greeter says: Hello, pons!", T);
    home.wait_log("clock heard: Hello, pons!", T);
    let greeter = home.module_status("greeter").unwrap();
    let read: Vec<String> = greeter["sandbox"]["read"]
        .as_array()
        .unwrap_or_else(|| panic!("no sandbox.read: {greeter}"))
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let lib = home.path().join("lib").display().to_string();
    assert!(read.contains(&lib), "{lib} not in {read:?}");
    let log = home.kernel_log();
    assert!(!log.contains("could not import"), "{log}");
    assert!(kernel.stop().success());
}

/// The python module of the hint test: imports the SDK and `shared_helper` from directories
/// outside its own, then runs.
fn importer_source(sdk: &Path, shared: &Path) -> String {
    format!(
        "import sys\nsys.dont_write_bytecode = True\nsys.path[1:1] = [{sdk:?}, {shared:?}]\n\
         import pons_sdk\nimport shared_helper\n\n\
         if __name__ == \"__main__\":\n    pons_sdk.Module().run()\n",
        sdk = sdk.display().to_string(),
        shared = shared.display().to_string(),
    )
}

#[test]
fn an_import_the_sandbox_refuses_is_explained_once_in_the_log() {
    if !landlock_or_skip("an_import_the_sandbox_refuses_is_explained_once_in_the_log")
        || python_or_skip("an_import_the_sandbox_refuses_is_explained_once_in_the_log").is_none()
    {
        return;
    }
    let home = TestHome::new();
    home.write_config("lifecycle:\n  shutdownGraceMs: 1000\n  maxRestartBackoffMs: 500\n");
    // Outside the home and every path the sandbox grants.
    let outside = tempfile::tempdir().unwrap();
    let shared = outside.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("shared_helper.py"), "VALUE = 1\n").unwrap();
    let sdk = std::fs::canonicalize(repo().join("sdk/python/src")).unwrap();
    let dir = home.path().join("modules/importer");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.py"), importer_source(&sdk, &shared)).unwrap();
    let manifest = |read: Vec<String>| {
        serde_json::to_vec_pretty(&json!({
            "id": "importer", "name": "Importer", "runtime": "python", "entrypoint": "main.py",
            "permissions": {"read": read},
        }))
        .unwrap()
    };
    let sdk_s = sdk.display().to_string();
    write_atomic(
        &dir.join("module.json"),
        &manifest(vec![".".into(), sdk_s.clone()]),
    );
    let approve = home.pons(&["modules", "approve", "importer", "--yes"]);
    assert!(approve.status.success(), "{approve:?}");

    let mut kernel = home.start();
    home.wait_log("module `importer` could not import `shared_helper`", T);
    // It keeps failing (and restarting); the hint is not repeated.
    let stderr_log = || std::fs::read_to_string(home.path().join("kernel.stderr")).unwrap();
    wait_for("a second failed start of importer", T, || {
        (stderr_log().matches("Module exited unexpectedly").count() >= 2).then_some(())
    });
    let log = stderr_log();
    let hints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("could not import"))
        .collect();
    assert_eq!(hints.len(), 1, "{hints:#?}");
    let module_dir = std::fs::canonicalize(&dir).unwrap().display().to_string();
    for needle in [
        "the sandbox lets it read only",
        module_dir.as_str(),
        sdk_s.as_str(),
        "permissions.read in module.json",
        "pons modules approve importer",
    ] {
        assert!(hints[0].contains(needle), "{needle:?} not in {}", hints[0]);
    }
    assert!(
        !hints[0].contains(&shared.display().to_string()),
        "{}",
        hints[0]
    );

    // The fix the hint names: add the directory and approve again; the module becomes ready.
    write_atomic(
        &dir.join("module.json"),
        &manifest(vec![".".into(), sdk_s, shared.display().to_string()]),
    );
    let approve = home.pons(&["modules", "approve", "importer", "--yes"]);
    assert!(approve.status.success(), "{approve:?}");
    home.wait_status("importer", "ready", T);
    assert!(kernel.stop().success());
}
