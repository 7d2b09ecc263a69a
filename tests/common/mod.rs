//! Test harness: real `pons` binary, real module processes (the scriptable `pons-test-module`),
//! a temporary home. Every wait is a poll with a deadline.

#![allow(dead_code)]

pub mod nats;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Path of the `pons` binary under test.
pub fn pons_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pons"))
}

/// Path of the test-module binary, built once per test process.
pub fn test_module_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = pons_bin()
            .parent()
            .expect("binary has a directory")
            .to_path_buf();
        let bin = dir.join("pons-test-module");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "pons-test-module"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build of pons-test-module runs");
        assert!(status.success(), "building pons-test-module failed");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// Polls `f` until it returns `Some` or the deadline passes (then panics with `what`).
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One module of a test home.
#[derive(Clone)]
pub struct ModuleSpec {
    pub id: String,
    /// Extra manifest fields merged into the generated module.json.
    pub manifest: Value,
    /// Arguments to the test module.
    pub args: Vec<String>,
    /// Approve it in permissions.yaml.
    pub approve: bool,
}

impl ModuleSpec {
    pub fn new(id: &str) -> ModuleSpec {
        ModuleSpec {
            id: id.into(),
            manifest: json!({}),
            args: vec![],
            approve: true,
        }
    }
    pub fn manifest(mut self, extra: Value) -> ModuleSpec {
        merge(&mut self.manifest, extra);
        self
    }
    pub fn args(mut self, args: &[&str]) -> ModuleSpec {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }
    pub fn unapproved(mut self) -> ModuleSpec {
        self.approve = false;
        self
    }
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// A temporary pons home.
pub struct TestHome {
    pub dir: tempfile::TempDir,
    pub modules: Vec<ModuleSpec>,
}

impl TestHome {
    pub fn new() -> TestHome {
        let dir = tempfile::Builder::new()
            .prefix("pons-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("modules")).expect("modules dir");
        std::fs::create_dir_all(dir.path().join("rec")).expect("rec dir");
        TestHome {
            dir,
            modules: vec![],
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn record_path(&self, id: &str) -> PathBuf {
        self.path().join("rec").join(format!("{id}.jsonl"))
    }

    pub fn control_path(&self, id: &str) -> PathBuf {
        self.path().join("rec").join(format!("{id}.control"))
    }

    /// Writes the module directory (module.json + a copy of the test module + its arguments).
    pub fn add(&mut self, spec: ModuleSpec) -> &mut Self {
        let mdir = self.path().join("modules").join(&spec.id);
        std::fs::create_dir_all(&mdir).expect("module dir");
        let entry = mdir.join("test-module");
        if !entry.exists() && std::fs::hard_link(test_module_bin(), &entry).is_err() {
            std::fs::copy(test_module_bin(), &entry).expect("copy test module");
        }
        let mut args = vec![
            "--record".to_string(),
            self.record_path(&spec.id).to_string_lossy().into_owned(),
            "--control".to_string(),
            self.control_path(&spec.id).to_string_lossy().into_owned(),
        ];
        args.extend(spec.args.iter().cloned());
        write_atomic(
            &mdir.join("test-module.args"),
            &serde_json::to_vec(&args).expect("args json"),
        );
        let mut manifest = json!({
            "id": spec.id,
            "name": format!("test module {}", spec.id),
            "version": "0.0.1",
            "runtime": "binary",
            "entrypoint": "test-module",
            "permissions": {"write": [self.path().join("rec").to_string_lossy()], "read": [self.path().join("rec").to_string_lossy()]},
        });
        merge(&mut manifest, spec.manifest.clone());
        write_atomic(
            &mdir.join("module.json"),
            &serde_json::to_vec_pretty(&manifest).expect("manifest json"),
        );
        self.modules.retain(|m| m.id != spec.id);
        self.modules.push(spec);
        self.write_permissions();
        self
    }

    /// Rewrites permissions.yaml approving every module marked `approve`.
    pub fn write_permissions(&self) {
        let mut out = String::from("modules:\n");
        for m in self.modules.iter().filter(|m| m.approve) {
            let mdir = self.path().join("modules").join(&m.id);
            let bytes = std::fs::read(mdir.join("module.json")).expect("manifest");
            let manifest: Value = serde_json::from_slice(&bytes).expect("manifest json");
            let hash = pons_reconciler::manifest::hash(&bytes);
            out.push_str(&format!("  {}:\n", m.id));
            out.push_str("    base:\n");
            for key in ["net", "read", "write", "env", "run", "sys"] {
                let vals = manifest["permissions"][key]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                out.push_str(&format!(
                    "      {key}: {}\n",
                    serde_json::to_string(&vals).expect("json")
                ));
            }
            out.push_str(&format!("    baseManifestHash: {hash}\n"));
            out.push_str("    baseGrantedAt: 2026-01-01T00:00:00.000Z\n");
            out.push_str("    dynamic: []\n    pending: []\n    denied: []\n");
            let caps = if let Some(c) = manifest.get("capabilities") {
                c.clone()
            } else {
                let list = |k: &str| manifest[k].as_array().cloned().unwrap_or_default();
                let mut topics = list("subscribes");
                topics.extend(list("publishes"));
                let mut services = list("requires");
                services.extend(list("optionalRequires"));
                json!({"topics": topics, "services": services})
            };
            out.push_str(&format!(
                "    capabilities: {}\n",
                serde_json::to_string(&caps).expect("json")
            ));
        }
        write_atomic(&self.path().join("permissions.yaml"), out.as_bytes());
    }

    /// Replaces config.yaml (atomically, as an editor that saves by rename would).
    pub fn write_config(&self, yaml: &str) {
        write_atomic(&self.path().join("config.yaml"), yaml.as_bytes());
    }

    /// Every event the module recorded so far.
    pub fn events(&self, id: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.record_path(id)).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Messages the module received from the kernel, in order.
    pub fn received(&self, id: &str) -> Vec<Value> {
        self.events(id)
            .into_iter()
            .filter(|e| e["event"] == "recv")
            .map(|e| e["msg"].clone())
            .collect()
    }

    /// Payloads of the deliveries module `id` received on `topic`.
    pub fn deliveries(&self, id: &str, topic: &str) -> Vec<Value> {
        self.received(id)
            .into_iter()
            .filter(|m| m["type"] == "deliver" && m["topic"] == topic)
            .map(|m| m["payload"].clone())
            .collect()
    }

    pub fn received_types(&self, id: &str) -> Vec<String> {
        self.received(id)
            .iter()
            .filter_map(|m| m["type"].as_str().map(String::from))
            .collect()
    }

    /// Number of process starts the module recorded.
    pub fn starts(&self, id: &str) -> Vec<Value> {
        self.events(id)
            .into_iter()
            .filter(|e| e["event"] == "start")
            .collect()
    }

    /// Appends a command to the module's control file.
    pub fn command(&self, id: &str, cmd: Value) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.control_path(id))
            .expect("open control file");
        writeln!(f, "{cmd}").expect("write control");
    }

    pub fn wait_event(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for(&format!("{id}: {what}"), timeout, || {
            self.events(id).into_iter().find(|e| pred(e))
        })
    }

    pub fn wait_received(&self, id: &str, ty: &str, timeout: Duration) -> Value {
        wait_for(&format!("{id} to receive {ty}"), timeout, || {
            self.received(id).into_iter().find(|m| m["type"] == ty)
        })
    }

    /// Runs `pons <args> --home <home>`.
    pub fn pons(&self, args: &[&str]) -> std::process::Output {
        Command::new(pons_bin())
            .args(args)
            .arg("--home")
            .arg(self.path())
            .env_remove("PONS_HOME")
            .output()
            .expect("run pons")
    }

    pub fn status(&self) -> Value {
        let out = self.pons(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "pons status --json printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    pub fn module_status(&self, id: &str) -> Option<Value> {
        self.status()["modules"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
    }

    /// Waits until `id` is stopped for a security violation (as the reference does: no restart
    /// loop for a module that broke its grant), having started once.
    pub fn wait_stopped_for_violation(&self, id: &str, timeout: Duration) -> Value {
        let st = self.wait_status(id, "stopped", timeout);
        let reason = st["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("security-violation: "), "{st}");
        assert_eq!(self.starts(id).len(), 1, "{id} was not restarted");
        st
    }

    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        wait_for(&format!("{id} to be {status}"), timeout, || {
            self.module_status(id).filter(|m| m["status"] == status)
        })
    }

    /// Starts the kernel in the foreground (as a child of the test).
    pub fn start(&self) -> KernelProc {
        self.start_with(&[], &[])
    }

    pub fn start_with(&self, extra_args: &[&str], env: &[(&str, &str)]) -> KernelProc {
        let log = std::fs::File::create(self.path().join("kernel.stderr")).expect("log file");
        let child = Command::new(pons_bin())
            .args(["kernel", "start", "--home"])
            .arg(self.path())
            .args(extra_args)
            .env_remove("PONS_HOME")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kernel");
        let k = KernelProc {
            child: Some(child),
            home: self.path().to_path_buf(),
        };
        wait_for("kernel control socket", Duration::from_secs(10), || {
            self.path().join("run/kernel.sock").exists().then_some(())
        });
        k
    }

    /// How often the kernel's stderr (not the JSON log file, which has the same lines) shows
    /// `needle`.
    pub fn stderr_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.path().join("kernel.stderr"))
            .unwrap_or_default()
            .matches(needle)
            .count()
    }

    /// The kernel's stderr so far.
    pub fn kernel_log(&self) -> String {
        let mut s = std::fs::read_to_string(self.path().join("kernel.stderr")).unwrap_or_default();
        if let Ok(rd) = std::fs::read_dir(self.path().join(".runtime/logs")) {
            for e in rd.flatten() {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        wait_for(
            &format!("kernel log to contain {needle:?}"),
            timeout,
            || self.kernel_log().contains(needle).then_some(()),
        )
    }
}

/// A running kernel; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct KernelProc {
    pub child: Option<Child>,
    pub home: PathBuf,
}

impl KernelProc {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// SIGTERM and wait for exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(30))
    }

    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("kernel child");
        let status = wait_for("kernel to exit", timeout, || {
            child.try_wait().ok().flatten()
        });
        self.child = None;
        status
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestHome {
    /// A failing test shows the end of the kernel's log: the home is deleted right after.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.path().join("kernel.stderr")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(100).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- last lines of the kernel log of {} ---\n{}",
                self.path().display(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for KernelProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Writes a file by temp file + rename, so a concurrent reader never sees it half-written.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-test");
    std::fs::write(&tmp, bytes).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename temp file");
}

/// True where Landlock works; prints why the test is skipped otherwise (`.ci/run` lists the
/// tests that call it).
pub fn landlock_or_skip(test: &str) -> bool {
    let s = pons::sandbox::support();
    if s.state == pons::sandbox::SandboxState::Unavailable {
        eprintln!("SKIP {test}: Landlock unavailable here: {}", s.to_json());
        return false;
    }
    true
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Fast lifecycle settings for tests.
pub const FAST_LIFECYCLE: &str = "lifecycle:\n  shutdownGraceMs: 1000\n  readyTimeoutMs: 5000\n";
