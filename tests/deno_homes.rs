//! Deno homes as operators have them (DESIGN.md §3), under real deno 2 and Landlock: TypeScript
//! modules in the style of SDK-based modules — a `deno.json` import map pointing `@pons/sdk` at a
//! local library (`tests/deno/lib/`, speaking the wire protocol) and `ms` at an npm package, no
//! `deno.lock` at first start — one provider (`clock`, formats with `ms`), one consumer calling
//! it and publishing the answer, one subscriber that also probes its sandbox through `sh`, `rm`
//! and `mv`. Shown: all ready, the RPC answered, the publish delivered, `deno.lock` created (and
//! left alone when it exists), and the modules still unable to read or write anything else in the
//! home.
//!
//! deno is `target/deno/node_modules/@deno/<platform>/deno` (installed from the npm registry by
//! `.ci/run`: `npm install --prefix target/deno deno@…`), else `deno` on PATH. Without it these
//! tests fail under `CI` and print `SKIP <test>: …` elsewhere; without Landlock they print
//! `SKIP` (as the other sandbox tests do). deno's cache is `target/deno/dir`, shared by the runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

use serde_json::{json, Value};

/// First start may download the npm package.
const T: Duration = Duration::from_secs(90);
/// The npm package the modules use: tiny, no dependencies; deno fetches it from the npm
/// registry on first use (then it is in deno's cache).
const NPM_PACKAGE: &str = "ms@2.1.3";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The deno binary to test with, or `None` (test skipped) outside CI.
fn deno_or_skip(test: &str) -> Option<PathBuf> {
    let installed = std::fs::read_dir(repo().join("target/deno/node_modules/@deno"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("deno"))
        .find(|p| p.is_file());
    let on_path = || {
        std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .map(|d| Path::new(d).join("deno"))
            .find(|p| p.is_file())
    };
    let found = installed.or_else(on_path).filter(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("deno 2"))
    });
    if found.is_none() {
        let why =
            "no deno 2 in target/deno (`npm install --prefix target/deno deno@2`) nor on PATH";
        assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
        eprintln!("SKIP {test}: {why}");
    }
    found
}

/// A home with the three modules; `home_config`: the home's deno.json (None: none), `own_config`:
/// each module's own deno.json (None: none).
fn deno_home(deno: &Path, home_config: Option<&Value>, own_config: Option<&Value>) -> TestHome {
    let mut home = TestHome::new();
    let manifests = [
        ("provider", json!({"provides": ["clock"]})),
        (
            "consumer",
            json!({"requires": ["clock", "sink"], "publishes": ["demo:formatted"]}),
        ),
        (
            "subscriber",
            json!({"provides": ["sink"], "subscribes": ["demo:formatted"],
                   "permissions": {"run": ["sh", "rm", "mv"]}}),
        ),
    ];
    for (id, extra) in manifests {
        let dir = home.path().join("modules").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let mut manifest = json!({"id": id, "name": id, "version": "0.1.0", "permissions": {}});
        for (k, v) in extra.as_object().unwrap() {
            manifest[k] = v.clone();
        }
        std::fs::write(
            dir.join("module.json"),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
        std::fs::copy(
            repo().join("tests/deno/modules").join(id).join("runner.ts"),
            dir.join("runner.ts"),
        )
        .unwrap();
        if let Some(c) = own_config {
            std::fs::write(dir.join("deno.json"), serde_json::to_vec_pretty(c).unwrap()).unwrap();
        }
        home.modules.push(ModuleSpec::new(id));
    }
    home.write_permissions();
    if let Some(c) = home_config {
        std::fs::write(
            home.path().join("deno.json"),
            serde_json::to_vec_pretty(c).unwrap(),
        )
        .unwrap();
    }
    home.write_config(&format!(
        "lifecycle:\n  shutdownGraceMs: 1000\nkernel:\n  runtimes:\n    deno: {}\n",
        deno.display()
    ));
    home
}

fn start(home: &TestHome) -> KernelProc {
    let cache = repo().join("target/deno/dir");
    std::fs::create_dir_all(&cache).unwrap();
    home.start_with(&[], &[("DENO_DIR", &cache.to_string_lossy())])
}

/// Log lines of module `id` from the kernel's JSON log: (message, the whole entry).
fn module_logs(home: &TestHome, id: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(home.path().join(".runtime/logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                if v["module"] == id {
                    if let Some(m) = v["message"].as_str() {
                        out.push((m.to_string(), v.clone()));
                    }
                }
            }
        }
    }
    out
}

/// Waits until module `id` has logged `message` `n` times in all.
fn wait_message(home: &TestHome, id: &str, message: &str, n: usize) {
    wait_for(&format!("{id} to log {message:?} ({n}×)"), T, || {
        let count = module_logs(home, id)
            .iter()
            .filter(|(m, _)| m == message)
            .count();
        (count >= n).then_some(())
    });
}

/// Every module ready, the RPC answered and the publish delivered (the `n`-th time).
fn wait_working(home: &TestHome, n: usize) {
    for id in ["provider", "subscriber", "consumer"] {
        let status = wait_for(&format!("{id} to be ready"), T, || {
            let s = home.module_status(id)?;
            if s["status"] == "ready" {
                return Some(s);
            }
            // A crash-looping module fails fast with its reason rather than at the deadline.
            let restarts = s["restarts"].as_u64().unwrap_or(0);
            assert!(
                restarts < 2,
                "{id} keeps failing: {s}\n{}",
                home.kernel_log()
            );
            None
        });
        assert_eq!(status["status"], "ready");
    }
    wait_message(home, "consumer", "consumer got 1m", n);
    wait_message(home, "subscriber", "subscriber got 1m", n);
}

/// The subscriber's probes: `probe <name> allowed|denied` → (name, allowed, what `sh` said).
fn probes(home: &TestHome) -> Vec<(String, bool, String)> {
    module_logs(home, "subscriber")
        .into_iter()
        .filter_map(|(m, v)| {
            let rest = m.strip_prefix("probe ")?;
            let (name, verdict) = rest.rsplit_once(' ')?;
            let stderr = v["stderr"].as_str().unwrap_or_default().to_string();
            Some((name.to_string(), verdict == "allowed", stderr))
        })
        .collect()
}

/// Waits for the subscriber's probes of its `start`-th start (1, 2, …) and checks them: those in
/// `allowed` succeeded, every other one was refused by the sandbox (`Permission denied`), except
/// that those in `absent` (whose target may not exist then) may also fail for that reason.
fn check_probes(home: &TestHome, start: usize, allowed: &[&str], absent: &[&str]) {
    const ALL: [&str; 15] = [
        "read-sdk",
        "read-own-entry",
        "read-deno-json",
        "read-config",
        "read-permissions",
        "read-lock",
        "read-other-module",
        "append-config",
        "append-lock",
        "create-in-home",
        "remove-permissions",
        "rename-lock",
        "append-own-lock",
        "rename-own-lock",
        "create-in-own-dir",
    ];
    let got = wait_for("the subscriber's probes", T, || {
        let p = probes(home);
        (p.len() >= start * ALL.len())
            .then(|| p[(start - 1) * ALL.len()..start * ALL.len()].to_vec())
    });
    for name in ALL {
        let (_, ok, stderr) = got
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("probe {name} missing: {got:?}"));
        let why = format!("probe {name}: {got:?}\n{}", home.kernel_log());
        assert_eq!(*ok, allowed.contains(&name), "{why}");
        if !ok {
            let refused = stderr.contains("Permission denied")
                || (absent.contains(&name) && stderr.contains("No such file"));
            assert!(refused, "{why}");
        }
    }
}

/// The home's own files: config.yaml unchanged, permissions.yaml still approving the three
/// modules (the kernel itself records `firstSpawnAt` there), nothing new at the top of the home.
struct HomeFiles {
    config: String,
}

impl HomeFiles {
    fn take(home: &TestHome) -> HomeFiles {
        HomeFiles {
            config: std::fs::read_to_string(home.path().join("config.yaml")).unwrap(),
        }
    }

    fn check(&self, home: &TestHome, expected_top: &[&str]) {
        assert_eq!(
            std::fs::read_to_string(home.path().join("config.yaml")).unwrap(),
            self.config
        );
        let permissions = std::fs::read_to_string(home.path().join("permissions.yaml")).unwrap();
        assert_eq!(
            permissions.matches("baseManifestHash").count(),
            3,
            "{permissions}"
        );
        let mut top: Vec<String> = std::fs::read_dir(home.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        let mut want: Vec<String> = expected_top.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(top, want, "files at the top of the home");
    }
}

/// Probes every start allows: the SDK (through the import map), the module's own entry and its
/// deno configuration.
const ALLOWED: [&str; 3] = ["read-sdk", "read-own-entry", "read-deno-json"];

#[test]
fn home_deno_json_first_start_then_existing_lock() {
    let Some(deno) = deno_or_skip("home_deno_json_first_start_then_existing_lock") else {
        return;
    };
    if !landlock_or_skip("home_deno_json_first_start_then_existing_lock") {
        return;
    }
    let config = json!({
        "imports": {
            "@pons/sdk": "./sdk/mod.ts",
            "ms": format!("npm:{NPM_PACKAGE}"),
        }
    });
    let home = deno_home(&deno, Some(&config), None);
    // The SDK by local path, outside the module directories (here: in the home).
    let sdk = home.path().join("sdk");
    std::fs::create_dir_all(&sdk).unwrap();
    for f in ["mod.ts", "wire.ts"] {
        std::fs::copy(repo().join("tests/deno/lib").join(f), sdk.join(f)).unwrap();
    }
    let lock = home.path().join("deno.lock");
    assert!(!lock.exists());
    let files = HomeFiles::take(&home);

    let mut k = start(&home);
    wait_working(&home, 1);
    // The module's own lock file does not exist (the home's deno.json is the configuration), and
    // the home's may not exist yet: the subscriber imports no npm package, the provider does.
    check_probes(
        &home,
        1,
        &ALLOWED,
        &["read-lock", "rename-lock", "rename-own-lock"],
    );
    let text = std::fs::read_to_string(&lock).expect("deno.lock created beside deno.json");
    assert!(text.contains(&format!("npm:{NPM_PACKAGE}")), "{text}");
    let top = [
        ".runtime",
        "config.yaml",
        "deno.json",
        "deno.lock",
        "kernel.stderr",
        "modules",
        "permissions.yaml",
        "permissions.yaml.lock",
        "rec",
        "run",
        "sdk",
    ];
    files.check(&home, &top);
    let status = home.module_status("subscriber").unwrap();
    let read = status["sandbox"]["read"].to_string();
    assert!(
        read.contains(&sdk.to_string_lossy().into_owned()),
        "{status}"
    );
    k.stop();

    // Again with the lock file in place: nothing to write, the same working modules.
    let before = std::fs::read(&lock).unwrap();
    let modified = std::fs::metadata(&lock).unwrap().modified().unwrap();
    let _k = start(&home);
    wait_working(&home, 2);
    check_probes(&home, 2, &ALLOWED, &["rename-own-lock"]);
    assert_eq!(std::fs::read(&lock).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&lock).unwrap().modified().unwrap(),
        modified,
        "an up-to-date deno.lock is not rewritten"
    );
    files.check(&home, &top);
}

#[test]
fn module_level_deno_json_with_node_modules_dir() {
    let Some(deno) = deno_or_skip("module_level_deno_json_with_node_modules_dir") else {
        return;
    };
    if !landlock_or_skip("module_level_deno_json_with_node_modules_dir") {
        return;
    }
    // Each module's own deno.json: the SDK by absolute path (this repository's copy), npm
    // packages in a node_modules/ beside it. No deno.json in the home.
    let config = json!({
        "imports": {
            "@pons/sdk": repo().join("tests/deno/lib/mod.ts").to_string_lossy(),
            "ms": format!("npm:{NPM_PACKAGE}"),
        },
        "nodeModulesDir": "auto",
    });
    let home = deno_home(&deno, None, Some(&config));
    let files = HomeFiles::take(&home);
    let _k = start(&home);
    wait_working(&home, 1);
    // The lock beside the module's deno.json is readable, never writable.
    check_probes(
        &home,
        1,
        &["read-sdk", "read-own-entry"],
        &["read-deno-json", "read-lock", "rename-lock"],
    );
    for id in ["provider", "consumer", "subscriber"] {
        let dir = home.path().join("modules").join(id);
        let text = std::fs::read_to_string(dir.join("deno.lock"))
            .unwrap_or_else(|e| panic!("{id}: deno.lock beside its deno.json: {e}"));
        assert!(text.contains(&format!("npm:{NPM_PACKAGE}")), "{id}: {text}");
        assert!(dir.join("node_modules").is_dir(), "{id}: node_modules/");
    }
    assert!(home
        .path()
        .join("modules/provider/node_modules/ms/package.json")
        .is_file());
    files.check(
        &home,
        &[
            ".runtime",
            "config.yaml",
            "kernel.stderr",
            "modules",
            "permissions.yaml",
            "permissions.yaml.lock",
            "rec",
            "run",
        ],
    );
}
