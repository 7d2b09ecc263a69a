//! The benchmark harness: locating (and building) the release binaries, laying out and approving
//! a temporary pons home with test modules (adapted from tests/common/mod.rs), running the real
//! kernel, its control socket, and the `--bench-out` records the test modules write.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// `target/release/pons` (built by `cargo bench` itself).
pub fn pons_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pons"))
}

/// `target/release/pons-test-module`, (re)built once per run with
/// `cargo build --release -p pons-test-module` (a no-op when it is up to date).
pub fn test_module_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = pons_bin()
            .parent()
            .expect("the pons binary has a directory")
            .to_path_buf();
        let bin = dir.join("pons-test-module");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-q", "-p", "pons-test-module"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
        match status {
            Ok(s) if s.success() => {}
            _ if bin.exists() => eprintln!(
                "warning: building pons-test-module failed; using the existing {}",
                bin.display()
            ),
            _ => panic!(
                "building pons-test-module failed and {} is missing; run `cargo build --release -p pons-test-module`",
                bin.display()
            ),
        }
        bin
    })
    .clone()
}

/// Wall clock in microseconds since the Unix epoch (the test modules stamp records with it).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes (then panics with `what`).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// A module of a benchmark home: id, extra manifest fields, test-module arguments.
#[derive(Clone)]
pub struct Spec {
    pub id: String,
    pub manifest: Value,
    pub args: Vec<String>,
}

impl Spec {
    pub fn new(id: &str, manifest: Value, args: &[&str]) -> Spec {
        Spec {
            id: id.into(),
            manifest,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A temporary pons home (`<dir>/home`) with a `bench/` directory the modules may write to. The
/// kernel's stderr goes to `<dir>/kernel.stderr`, outside the home: the kernel watches the home
/// directory, and a file written there on every log line would make each line a file event and
/// a pass (with 1,000 modules that kept the kernel busy for seconds).
pub struct BenchHome {
    pub dir: tempfile::TempDir,
    home: PathBuf,
    specs: Vec<Spec>,
    /// permissions.yaml records a `firstSpawnAt` for every module, as after their first start:
    /// no start of this home sends `install` or rewrites permissions.yaml.
    installed: bool,
}

impl BenchHome {
    pub fn new() -> BenchHome {
        let dir = tempfile::Builder::new()
            .prefix("pons-bench-")
            .tempdir()
            .expect("create a temporary home");
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join("modules")).expect("modules dir");
        std::fs::create_dir_all(home.join("bench")).expect("bench dir");
        BenchHome {
            dir,
            home,
            specs: Vec::new(),
            installed: false,
        }
    }

    /// A home whose modules count as already started once (its `installed` field).
    pub fn installed() -> BenchHome {
        BenchHome {
            installed: true,
            ..BenchHome::new()
        }
    }

    pub fn path(&self) -> &Path {
        &self.home
    }

    /// Where the kernel's stderr goes (outside the home).
    pub fn kernel_stderr(&self) -> PathBuf {
        self.dir.path().join("kernel.stderr")
    }

    /// `<home>/bench/<name>`: where modules write records and control files live.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join("bench").join(name)
    }

    /// `{bench}` in an argument is replaced by `<home>/bench/`.
    fn expand(&self, arg: &str) -> String {
        arg.replace("{bench}", &self.path().join("bench").to_string_lossy())
    }

    /// Module directory of `id`.
    pub fn module_dir(&self, id: &str) -> PathBuf {
        self.path().join("modules").join(id)
    }

    /// Adds modules (module.json, a copy of the test module, its arguments) and rewrites
    /// permissions.yaml approving all of them.
    pub fn add_all(&mut self, specs: &[Spec]) {
        for spec in specs {
            let mdir = self.module_dir(&spec.id);
            std::fs::create_dir_all(&mdir).expect("module dir");
            let entry = mdir.join("test-module");
            if !entry.exists() && std::fs::hard_link(test_module_bin(), &entry).is_err() {
                std::fs::copy(test_module_bin(), &entry).expect("copy the test module");
            }
            let args: Vec<String> = spec.args.iter().map(|a| self.expand(a)).collect();
            std::fs::write(
                mdir.join("test-module.args"),
                serde_json::to_vec(&args).expect("json"),
            )
            .expect("write test-module.args");
            let bench = self.path().join("bench").to_string_lossy().into_owned();
            let mut manifest = json!({
                "id": spec.id,
                "name": format!("bench module {}", spec.id),
                "version": "0.0.1",
                "runtime": "binary",
                "entrypoint": "test-module",
                "permissions": {"read": [bench], "write": [bench]},
            });
            merge(&mut manifest, spec.manifest.clone());
            std::fs::write(
                mdir.join("module.json"),
                serde_json::to_vec_pretty(&manifest).expect("json"),
            )
            .expect("write module.json");
            self.specs.retain(|s| s.id != spec.id);
            self.specs.push(spec.clone());
        }
        self.write_permissions();
    }

    /// permissions.yaml approving every module (the layout `pons modules approve` writes).
    fn write_permissions(&self) {
        let mut out = String::from("modules:\n");
        for m in &self.specs {
            let bytes =
                std::fs::read(self.module_dir(&m.id).join("module.json")).expect("manifest");
            let manifest: Value = serde_json::from_slice(&bytes).expect("manifest json");
            let hash = pons_reconciler::manifest::hash(&bytes);
            out.push_str(&format!("  {}:\n    base:\n", m.id));
            for key in ["net", "read", "write", "env", "run", "sys"] {
                let vals = manifest["permissions"][key]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                out.push_str(&format!("      {key}: {}\n", Value::Array(vals)));
            }
            out.push_str(&format!("    baseManifestHash: {hash}\n"));
            out.push_str("    baseGrantedAt: 2026-01-01T00:00:00.000Z\n");
            out.push_str("    dynamic: []\n    pending: []\n    denied: []\n");
            let list = |k: &str| manifest[k].as_array().cloned().unwrap_or_default();
            let mut topics = list("subscribes");
            topics.extend(list("publishes"));
            let mut services = list("requires");
            services.extend(list("optionalRequires"));
            let caps = json!({"topics": topics, "services": services});
            out.push_str(&format!("    capabilities: {caps}\n"));
            if self.installed {
                out.push_str("    firstSpawnAt: 2026-01-01T00:00:00.000Z\n");
            }
        }
        std::fs::write(self.path().join("permissions.yaml"), out).expect("write permissions.yaml");
    }

    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.path().join("config.yaml"), yaml).expect("write config.yaml");
    }

    /// Saves config.yaml the way editors do (temp file + rename).
    pub fn save_config_by_rename(&self, yaml: &str) {
        let tmp = self.path().join(".config.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write temp config");
        std::fs::rename(&tmp, self.path().join("config.yaml")).expect("rename config.yaml");
    }

    /// Starts `pons kernel start --home <home> [extra]` in the foreground, as our child (with
    /// the calling thread's CPU placement).
    pub fn start_kernel(&self, extra: &[&str]) -> Kernel {
        let log = std::fs::File::create(self.kernel_stderr()).expect("kernel log file");
        let started_us = now_us();
        let child = Command::new(pons_bin())
            .args(["kernel", "start", "--home"])
            .arg(self.path())
            .args(extra)
            .env_remove("PONS_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the kernel");
        Kernel {
            child: Some(child),
            socket: self.path().join("run/kernel.sock"),
            started_us,
        }
    }

    /// Appends a command line to a module's control file.
    pub fn command(&self, control_file: &str, cmd: Value) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file(control_file))
            .expect("open control file");
        writeln!(f, "{cmd}").expect("write control file");
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

/// A running kernel; SIGTERM (then SIGKILL) when dropped.
pub struct Kernel {
    child: Option<Child>,
    socket: PathBuf,
    /// Wall clock (µs since the epoch) just before `pons kernel start` was spawned.
    pub started_us: u64,
}

impl Kernel {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// One control-socket request; `None` while the socket is not up.
    pub fn request(&self, cmd: &str) -> Option<Value> {
        let mut s = UnixStream::connect(&self.socket).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        writeln!(s, "{}", json!({"cmd": cmd})).ok()?;
        let mut r = BufReader::new(s);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let v: Value = serde_json::from_str(&line).ok()?;
            if v.get("ok").is_some() {
                return v.get("data").cloned();
            }
        }
    }

    /// Waits until every listed module is `ready`.
    pub fn wait_ready(&self, ids: &[&str], timeout: Duration) {
        wait_for(
            "modules to be ready",
            timeout,
            Duration::from_millis(20),
            || {
                let st = self.request("status")?;
                let mods = st["modules"].as_array()?;
                ids.iter()
                    .all(|id| {
                        mods.iter()
                            .any(|m| m["id"] == *id && m["status"] == "ready")
                    })
                    .then_some(())
            },
        )
    }

    /// CPU time the kernel process has used so far (all threads), in nanoseconds.
    pub fn cpu_ns(&self) -> u64 {
        let Ok(rd) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return 0;
        };
        rd.flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// SIGTERM and wait (SIGKILL after 20 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
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

impl Drop for Kernel {
    fn drop(&mut self) {
        self.stop();
    }
}

/// VmRSS and VmHWM of `pid` from /proc, in KiB (0 when unreadable).
pub fn proc_rss_kib(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The records of kind `kind` in a `--bench-out` file.
pub fn records(path: &Path, kind: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["bench"] == kind)
        .collect()
}

/// Waits until `path` holds at least `n` records of kind `kind` (polling every `every`);
/// returns them.
pub fn wait_records(
    path: &Path,
    kind: &str,
    n: usize,
    timeout: Duration,
    every: Duration,
) -> Vec<Value> {
    wait_for(
        &format!("{n} `{kind}` records in {}", path.display()),
        timeout,
        every,
        || {
            let r = records(path, kind);
            (r.len() >= n).then_some(r)
        },
    )
}
