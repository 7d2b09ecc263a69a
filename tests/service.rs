//! Running pons as a systemd service (DESIGN.md §10): the kernel's sd_notify messages, received
//! on a real `NOTIFY_SOCKET` datagram socket the test binds, and `pons service
//! install|uninstall|status` with the unit it writes (checked by `systemd-analyze verify` where
//! that tool exists).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::{Duration, Instant};

use common::*;

/// The service manager's end of `NOTIFY_SOCKET`.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    sock: UnixDatagram,
    /// Every datagram received so far, in order.
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::Builder::new()
            .prefix("pons-notify-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket {
            _dir: dir,
            path,
            sock,
            seen: vec![],
        }
    }

    fn env(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Receives datagrams until one satisfies `pred` (returned) or the deadline passes.
    fn until(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; received: {:?}",
                    self.seen
                );
            }
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.seen.push(msg.clone());
                    if pred(&msg) {
                        return msg;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv on the notify socket: {e}"),
            }
        }
    }

    /// Every datagram that arrives within `window`.
    fn drain(&mut self, window: Duration) -> Vec<String> {
        let start = self.seen.len();
        let deadline = Instant::now() + window;
        let mut buf = vec![0u8; 4096];
        while let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        {
            self.sock
                .set_read_timeout(Some(left))
                .expect("read timeout");
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        self.seen[start..].to_vec()
    }
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

fn status_of(msg: &str) -> Option<&str> {
    msg.lines().find_map(|l| l.strip_prefix("STATUS="))
}

fn statuses(home: &TestHome) -> Vec<(String, String)> {
    home.status()["modules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or("").to_string(),
                m["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn ready_status_reload_and_stopping_over_notify_socket() {
    let mut home = TestHome::new();
    home.write_config(&format!("{FAST_LIFECYCLE}  maxRestarts: 1\n"));
    home.add(ModuleSpec::new("quick").args(&["--ready-delay-ms", "200"]));
    // Ready well after the boot pass has spawned it: a READY=1 sent at the end of the pass
    // (instead of at convergence) finds it still starting.
    home.add(ModuleSpec::new("slow").args(&["--ready-delay-ms", "1500"]));
    // Settles as crashed (maxRestarts 1): READY=1 does not wait for it for ever.
    home.add(ModuleSpec::new("crashy").args(&["--crash-after-ms", "100", "--exit-code", "3"]));
    // Not approved: blocked, not runnable.
    home.add(ModuleSpec::new("unapproved").unapproved());
    let mut sock = NotifySocket::bind();
    let mut kernel = home.start_with(&["--manual"], &[("NOTIFY_SOCKET", &sock.env())]);

    let ready = sock.until("READY=1 after boot", Duration::from_secs(30), |m| {
        has_line(m, "READY=1")
    });
    let at_ready = statuses(&home);
    let status = |id: &str| {
        at_ready
            .iter()
            .find(|(m, _)| m == id)
            .map(|(_, s)| s.as_str())
            .unwrap_or("absent")
    };
    assert_eq!(status("quick"), "ready", "at READY=1: {at_ready:?}");
    assert_eq!(status("slow"), "ready", "at READY=1: {at_ready:?}");
    assert_eq!(status("crashy"), "crashed", "at READY=1: {at_ready:?}");
    assert_eq!(status("unapproved"), "blocked", "at READY=1: {at_ready:?}");
    assert_eq!(
        status_of(&ready),
        Some("4 modules: 2 ready, 1 crashed, 1 blocked"),
        "READY=1 carries the counts: {ready:?}"
    );
    // Before READY=1 the counts were reported as they changed (something was still starting).
    let before: Vec<&String> = sock
        .seen
        .iter()
        .filter(|m| !has_line(m, "READY=1"))
        .collect();
    assert!(
        before
            .iter()
            .filter_map(|m| status_of(m))
            .any(|s| s.contains("starting") || s.contains("waiting")),
        "a STATUS= line while booting: {:?}",
        sock.seen
    );
    assert!(
        !sock.seen.iter().any(|m| m.contains("WATCHDOG=1")),
        "no watchdog pings without WATCHDOG_USEC: {:?}",
        sock.seen
    );

    // A module added while the kernel is manual waits for SIGHUP; the reload is announced and
    // READY=1 follows only once the new module is ready.
    // (The watcher's pass only detects it in manual mode; the signal's pass applies it.)
    home.add(ModuleSpec::new("late").args(&["--ready-delay-ms", "1000"]));
    let mark = sock.seen.len();
    kernel.signal(libc::SIGHUP);
    let reloading = sock.until("RELOADING=1", Duration::from_secs(10), |m| {
        has_line(m, "RELOADING=1")
    });
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("MONOTONIC_USEC= with RELOADING=1: {reloading:?}"));
    assert!(
        usec.parse::<u64>().is_ok_and(|u| u > 0),
        "MONOTONIC_USEC={usec}"
    );
    assert!(
        !sock.seen[mark..].iter().any(|m| has_line(m, "READY=1")),
        "READY=1 before RELOADING=1: {:?}",
        &sock.seen[mark..]
    );
    let reloaded = sock.until("READY=1 after the reload", Duration::from_secs(20), |m| {
        has_line(m, "READY=1")
    });
    let late = home.module_status("late").map(|m| m["status"].clone());
    assert_eq!(
        late,
        Some(serde_json::json!("ready")),
        "READY=1 after the reload waits for the module the reload spawned"
    );
    assert_eq!(
        status_of(&reloaded),
        Some("5 modules: 3 ready, 1 crashed, 1 blocked"),
        "{reloaded:?}"
    );

    kernel.signal(libc::SIGTERM);
    let stopping = sock.until("STOPPING=1", Duration::from_secs(10), |m| {
        has_line(m, "STOPPING=1")
    });
    assert!(stopping.contains("STATUS="), "{stopping:?}");
    let exit = kernel.wait(Duration::from_secs(30));
    assert!(exit.success(), "kernel exit: {exit}");
}

#[test]
fn watchdog_pings_at_half_the_interval() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("m"));
    let mut sock = NotifySocket::bind();
    let mut kernel = home.start_with(
        &[],
        &[("NOTIFY_SOCKET", &sock.env()), ("WATCHDOG_USEC", "200000")],
    );
    sock.until("READY=1", Duration::from_secs(20), |m| {
        has_line(m, "READY=1")
    });
    let window = Duration::from_millis(1000);
    let pings = sock
        .drain(window)
        .iter()
        .filter(|m| has_line(m, "WATCHDOG=1"))
        .count();
    // Every 100 ms: about 10 in the window; a busy machine may delay some, never double them.
    assert!(
        (4..=12).contains(&pings),
        "{pings} WATCHDOG=1 in {window:?}; received: {:?}",
        sock.seen
    );
    kernel.stop();

    // WATCHDOG_PID naming another process: not for this kernel, no pings.
    let mut sock = NotifySocket::bind();
    let mut kernel = home.start_with(
        &[],
        &[
            ("NOTIFY_SOCKET", &sock.env()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    sock.until("READY=1", Duration::from_secs(20), |m| {
        has_line(m, "READY=1")
    });
    let late = sock.drain(Duration::from_millis(500));
    assert!(
        !late.iter().any(|m| m.contains("WATCHDOG=1")),
        "pings although WATCHDOG_PID names another process: {late:?}"
    );
    kernel.stop();
}

/// Whether systemd is the init system of this machine (then `service install` without a
/// stand-in systemctl would talk to the real one).
fn systemd_is_init() -> bool {
    Path::new("/run/systemd/system").is_dir()
        || std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
}

/// `pons --home <home> service <args>` with HOME / XDG_CONFIG_HOME in `env_dir` and extra env.
fn service(home: &Path, env_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(pons_bin())
        .arg("--home")
        .arg(home)
        .arg("service")
        .args(args)
        .env_remove("PONS_HOME")
        .env_remove("PONS_SYSTEMCTL")
        .env("HOME", env_dir)
        .env("XDG_CONFIG_HOME", env_dir.join("xdg"))
        .envs(env.iter().copied())
        .output()
        .expect("run pons service")
        .into()
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(o: std::process::Output) -> Output {
        Output {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

fn lines_of(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// `systemd-analyze verify` of a unit file: no complaint about it (SKIP where the tool is missing).
fn verify_unit(path: &Path) {
    let Ok(out) = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(path)
        .current_dir(path.parent().expect("unit dir"))
        .output()
        .map(Output::from)
    else {
        println!(
            "SKIP systemd-analyze verify {}: systemd-analyze is not installed (apt package systemd)",
            path.display()
        );
        return;
    };
    let name = path.file_name().expect("unit name").to_string_lossy();
    // verify exits 0 on settings it ignores, but names the file in the complaint.
    let complaints: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(name.as_ref()))
        .collect();
    assert!(
        out.code == 0 && complaints.is_empty(),
        "systemd-analyze verify {} (exit {}): {}\n{}",
        path.display(),
        out.code,
        out.stderr,
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

#[test]
fn install_print_has_the_required_keys_and_verifies() {
    let home = TestHome::new();
    let env_dir = tempfile::tempdir().expect("tempdir");
    let real_home = std::fs::canonicalize(home.path()).expect("home path");
    let out = service(
        home.path(),
        env_dir.path(),
        &["install", "--user", "--print"],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let unit = lines_of(&out.stdout);
    let exe = std::fs::canonicalize(pons_bin()).expect("pons path");
    for key in [
        "Type=notify".to_string(),
        "NotifyAccess=main".to_string(),
        format!("ExecStart={} kernel start", exe.display()),
        "ExecReload=/bin/kill -HUP $MAINPID".to_string(),
        format!("Environment=\"PONS_HOME={}\"", real_home.display()),
        "KillMode=mixed".to_string(),
        "TimeoutStopSec=90".to_string(),
        "Restart=on-failure".to_string(),
        "WantedBy=default.target".to_string(),
    ] {
        assert!(
            unit.contains(&key.as_str()),
            "{key:?} missing in\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("WatchdogSec="), "{}", out.stdout);
    assert!(
        !env_dir.path().join("xdg").exists(),
        "--print writes nothing"
    );

    // System scope; the watchdog on request; a long shutdown grace lengthens TimeoutStopSec.
    home.write_config("lifecycle:\n  shutdownGraceMs: 100000\n");
    let out = service(
        home.path(),
        env_dir.path(),
        &["install", "--system", "--print", "--watchdog-sec", "30"],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let unit = lines_of(&out.stdout);
    for key in [
        "WatchdogSec=30",
        "WantedBy=multi-user.target",
        "TimeoutStopSec=112",
    ] {
        assert!(unit.contains(&key), "{key:?} missing in\n{}", out.stdout);
    }
    let file = env_dir.path().join("pons-test.service");
    std::fs::write(&file, &out.stdout).expect("write unit");
    verify_unit(&file);
}

#[test]
fn install_without_systemd_prints_the_unit_and_says_so() {
    if systemd_is_init() {
        println!("SKIP install_without_systemd_prints_the_unit_and_says_so: systemd is PID 1 here");
        return;
    }
    let home = TestHome::new();
    let env_dir = tempfile::tempdir().expect("tempdir");
    let out = service(home.path(), env_dir.path(), &["install", "--user"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("systemd is not the init system here")
            && out.stderr.contains("nothing installed"),
        "{}",
        out.stderr
    );
    let name = home
        .path()
        .file_name()
        .expect("home name")
        .to_string_lossy()
        .into_owned();
    let would_be = env_dir
        .path()
        .join("xdg/systemd/user")
        .join(format!("pons-{name}.service"));
    assert!(
        out.stderr.contains(&would_be.display().to_string()),
        "names where the unit would go: {}",
        out.stderr
    );
    assert!(
        out.stdout.lines().any(|l| l == "Type=notify"),
        "{}",
        out.stdout
    );
    assert!(!would_be.exists(), "nothing written");
    let out = service(home.path(), env_dir.path(), &["uninstall", "--user"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("No unit installed")
            && out.stdout.contains(&would_be.display().to_string()),
        "{}",
        out.stdout
    );
}

/// A stand-in `systemctl` that records its arguments and answers `show`.
fn fake_systemctl(dir: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("systemctl.log");
    let bin = dir.join("systemctl");
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\ncase \"$*\" in *\" show \"*) printf 'LoadState=loaded\\nUnitFileState=enabled\\nActiveState=active\\nSubState=running\\nMainPID=4242\\nStatusText=1 module: 1 ready\\n';; esac\nexit 0\n",
            log.display()
        ),
    )
    .expect("write fake systemctl");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (bin, log)
}

#[test]
fn install_status_uninstall_with_systemctl() {
    let home = TestHome::new();
    let env_dir = tempfile::tempdir().expect("tempdir");
    let (bin, log) = fake_systemctl(env_dir.path());
    let bin = bin.to_string_lossy().into_owned();
    let env = [("PONS_SYSTEMCTL", bin.as_str())];
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();

    let out = service(home.path(), env_dir.path(), &["install", "--user"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let name = format!(
        "pons-{}.service",
        home.path().file_name().expect("name").to_string_lossy()
    );
    let unit = env_dir.path().join("xdg/systemd/user").join(&name);
    let text = std::fs::read_to_string(&unit).expect("unit written");
    assert!(text.lines().any(|l| l == "Type=notify"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&unit).expect("unit").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let c = calls();
    let daemon_reload = c.find("--user daemon-reload").expect("daemon-reload");
    let enable = c
        .find(&format!("--user enable --now {name}"))
        .unwrap_or_else(|| panic!("enable --now: {c}"));
    assert!(daemon_reload < enable, "{c}");
    assert!(
        out.stdout.contains(&format!("Enabled and started {name}")),
        "{}",
        out.stdout
    );
    verify_unit(&unit);

    let out = service(
        home.path(),
        env_dir.path(),
        &["status", "--user", "--json"],
        &env,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let st: serde_json::Value = serde_json::from_str(&out.stdout).expect("status json");
    assert_eq!(st["installed"], true);
    assert_eq!(st["unit"], name.as_str());
    assert_eq!(st["systemd"]["enabled"], "enabled");
    assert_eq!(st["systemd"]["active"], "active");
    assert_eq!(st["systemd"]["mainPid"], 4242);
    assert_eq!(st["systemd"]["statusText"], "1 module: 1 ready");
    assert_eq!(st["kernel"]["running"], false);
    let out = service(home.path(), env_dir.path(), &["status", "--user"], &env);
    assert!(
        out.stdout.contains(&unit.display().to_string())
            && out
                .stdout
                .contains("enabled, active (running), main PID 4242")
            && out.stdout.contains("Kernel:   not running"),
        "{}",
        out.stdout
    );

    // Another home of the same directory name: refused, the fix named.
    let parent = tempfile::tempdir().expect("tempdir");
    let other = parent.path().join(home.path().file_name().expect("name"));
    std::fs::create_dir_all(other.join("modules")).expect("other home");
    let out = service(&other, env_dir.path(), &["install", "--user"], &env);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("already runs the kernel of the home") && out.stderr.contains("--name"),
        "{}",
        out.stderr
    );
    let out = service(
        &other,
        env_dir.path(),
        &["install", "--user", "--name", "pons-other"],
        &env,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(env_dir
        .path()
        .join("xdg/systemd/user/pons-other.service")
        .exists());

    // A kernel already running outside systemd: refused (systemd would start a second one).
    let kernel = home.start();
    let out = service(home.path(), env_dir.path(), &["install", "--user"], &env);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("pons kernel stop"), "{}", out.stderr);
    drop(kernel);

    let before = calls().len();
    let out = service(home.path(), env_dir.path(), &["uninstall", "--user"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!unit.exists(), "unit removed");
    let c = calls()[before..].to_string();
    assert!(c.contains(&format!("--user disable --now {name}")), "{c}");
    assert!(c.contains("--user daemon-reload"), "{c}");
    // The other home's unit stays, found by its home.
    let out = service(&other, env_dir.path(), &["uninstall", "--user"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!env_dir
        .path()
        .join("xdg/systemd/user/pons-other.service")
        .exists());
}

#[test]
fn a_manager_that_does_not_read_never_stalls_the_kernel() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("m"));
    // Bound, never read: its queue fills with pings (every 10 ms) within a fraction of a second.
    let sock = NotifySocket::bind();
    let mut kernel = home.start_with(
        &[],
        &[("NOTIFY_SOCKET", &sock.env()), ("WATCHDOG_USEC", "20000")],
    );
    home.wait_status("m", "ready", Duration::from_secs(20));
    home.wait_log("cannot notify the service manager", Duration::from_secs(10));
    // The kernel still answers and shuts down in order (sends would block on the full queue).
    assert_eq!(
        home.module_status("m").map(|m| m["status"].clone()),
        Some(serde_json::json!("ready"))
    );
    let exit = kernel.stop();
    assert!(exit.success(), "kernel exit: {exit}");
    drop(sock);
}

#[test]
fn abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("m"));
    let name = format!("pons-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut kernel = home.start_with(&[], &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = sock
            .recv(&mut buf)
            .expect("a datagram on the abstract socket");
        if has_line(&String::from_utf8_lossy(&buf[..n]), "READY=1") {
            break;
        }
        assert!(Instant::now() < deadline, "no READY=1 on @{name}");
    }
    kernel.stop();
}
