//! Black-box tests of how modules are started confined (`pons::sandbox::exec_command`: prepared
//! in the parent, confined by the child before it execs) and of the watchdog (`pons __watchdog`),
//! with `/bin/sh -c` modules.
//!
//! Tests that need Landlock print `SKIP: …` with the probe result and pass where the running
//! kernel lacks it. The spawn-cost benchmark is `#[ignore]`d: run it with
//! `cargo test -p pons --test sandbox -- --ignored --nocapture spawn_overhead`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pons::sandbox::{self, ExecOptions, ExecSpec, SandboxState, Watchdog};
use pons_reconciler::desired::{Limits, SandboxPolicy, SpawnSpec};

mod common;

use common::landlock_or_skip;

fn pons_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pons"))
}

fn opts(landlock: bool) -> ExecOptions {
    ExecOptions {
        landlock,
        kernel_pid: None,
    }
}

fn base_env() -> Vec<(String, String)> {
    vec![
        ("HOME".into(), "/nonexistent-home".into()),
        ("LANG".into(), "C".into()),
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("PONS_TEST_VAR".into(), "value with spaces = ok".into()),
    ]
}

fn sh_spec(script: &str, cwd: &Path, policy: SandboxPolicy, landlock: bool) -> ExecSpec {
    ExecSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: base_env(),
        cwd: cwd.to_path_buf(),
        policy,
        kernel_pid: std::process::id(),
        landlock,
        tag: None,
        nofile_soft: None,
    }
}

/// Runs `spec` as the kernel starts a module, and returns its output.
fn run(spec: &ExecSpec) -> Output {
    sandbox::exec_command(spec)
        .stdin(sandbox::Stdio::Null)
        .output()
        .expect("spawn the module")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Gone or a zombie (killed, waiting for a reaper that is not us).
fn pid_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

fn wait_child(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < end, "child {} did not exit", child.id());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn landlock_support_is_reported() {
    let s = sandbox::support();
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm")
        .unwrap_or_else(|e| format!("(unreadable: {e})"));
    eprintln!(
        "landlock support: {} ; /sys/kernel/security/lsm: {}",
        s.to_json(),
        lsm.trim()
    );
    assert_eq!(s.to_json()["landlock"], s.state.as_str());
}

#[test]
fn environment_is_exactly_the_spec() {
    for landlock in [false, true] {
        // The program itself is executable without being listed in `exec`.
        let mut spec = sh_spec("", Path::new("/"), SandboxPolicy::default(), landlock);
        spec.program = "/usr/bin/env".into();
        spec.args.clear();
        let out = run(&spec);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let got: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
        let want: Vec<String> = base_env().iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(got, want, "landlock={landlock}");
    }
}

#[test]
fn large_environments_reach_the_module() {
    let mut spec = sh_spec(
        "printf %s \"$BIG1$BIG2$BIG3\" | /usr/bin/wc -c",
        Path::new("/"),
        SandboxPolicy {
            exec: vec!["/usr/bin/wc".into()],
            ..SandboxPolicy::default()
        },
        false,
    );
    for i in 1..=3 {
        spec.env.push((format!("BIG{i}"), "x".repeat(100_000)));
    }
    let out = run(&spec);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "300000");
}

#[test]
fn no_new_privs_is_set() {
    let script =
        "while read -r l; do case $l in NoNewPrivs*) echo \"$l\";; esac; done < /proc/self/status";
    let out = run(&sh_spec(
        script,
        Path::new("/"),
        SandboxPolicy::default(),
        false,
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    assert!(
        line.contains("NoNewPrivs:") && line.trim().ends_with('1'),
        "{line:?}"
    );
}

#[test]
fn open_files_limit_is_enforced() {
    let policy = SandboxPolicy {
        limits: Limits {
            open_files: Some(5),
            ..Limits::default()
        },
        ..SandboxPolicy::default()
    };
    // fds 0-2 are stdio: 3 and 4 fit under a limit of 5, 5 does not.
    let script = "exec 3</dev/null 4</dev/null && echo fit; exec 5</dev/null; echo after";
    let out = run(&sh_spec(script, Path::new("/"), policy, false));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("fit"),
        "stdout {stdout:?} stderr {stderr:?}"
    );
    assert!(!stdout.contains("after"), "fd 5 opened: {stdout:?}");
    assert!(!out.status.success());
}

#[test]
fn reads_are_confined_to_the_read_paths() {
    if !landlock_or_skip("reads_are_confined_to_the_read_paths") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("allowed")).unwrap();
    std::fs::create_dir(dir.path().join("denied")).unwrap();
    std::fs::write(dir.path().join("allowed/a.txt"), "inside\n").unwrap();
    std::fs::write(dir.path().join("denied/b.txt"), "outside\n").unwrap();
    let policy = SandboxPolicy {
        read: vec![dir.path().join("allowed")],
        exec: vec!["/usr/bin/cat".into()],
        ..SandboxPolicy::default()
    };
    let script = "/usr/bin/cat allowed/a.txt; /usr/bin/cat denied/b.txt; echo rc=$?";
    let out = run(&sh_spec(script, dir.path(), policy, true));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("inside"), "{stdout:?} {stderr:?}");
    assert!(!stdout.contains("outside"), "{stdout:?}");
    assert!(stdout.contains("rc=1"), "{stdout:?}");
    assert!(stderr.contains("Permission denied"), "{stderr:?}");
    // Without Landlock the same read works: the refusal above is the sandbox's.
    let policy = SandboxPolicy {
        exec: vec!["/usr/bin/cat".into()],
        ..SandboxPolicy::default()
    };
    let out = run(&sh_spec(
        "/usr/bin/cat denied/b.txt",
        dir.path(),
        policy,
        false,
    ));
    assert_eq!(text(&out.stdout), "outside\n");
}

#[test]
fn writes_are_confined_to_the_write_paths() {
    if !landlock_or_skip("writes_are_confined_to_the_write_paths") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("w")).unwrap();
    std::fs::write(dir.path().join("ro.txt"), "keep\n").unwrap();
    let policy = SandboxPolicy {
        read: vec![dir.path().to_path_buf()],
        write: vec![dir.path().join("w")],
        ..SandboxPolicy::default()
    };
    let script = "echo new > w/ok.txt && echo wrote-ok; \
                  echo bad > outside.txt || echo refused-create; \
                  echo bad > ro.txt || echo refused-overwrite; \
                  while read -r l; do echo \"read:$l\"; done < ro.txt";
    let out = run(&sh_spec(script, dir.path(), policy, true));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("wrote-ok"), "{stdout:?} {stderr:?}");
    assert!(stdout.contains("refused-create"), "{stdout:?}");
    assert!(stdout.contains("refused-overwrite"), "{stdout:?}");
    assert!(stdout.contains("read:keep"), "{stdout:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("w/ok.txt")).unwrap(),
        "new\n"
    );
    assert!(!dir.path().join("outside.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ro.txt")).unwrap(),
        "keep\n"
    );
}

#[test]
fn only_listed_executables_run() {
    if !landlock_or_skip("only_listed_executables_run") {
        return;
    }
    let script = "/usr/bin/id -u >/dev/null; echo id=$?; /usr/bin/true; echo true=$?";
    let policy = SandboxPolicy {
        exec: vec!["/usr/bin/true".into()],
        ..SandboxPolicy::default()
    };
    let out = run(&sh_spec(script, Path::new("/"), policy, true));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("id=126"),
        "{stdout:?} {}",
        text(&out.stderr)
    );
    assert!(stdout.contains("true=0"), "{stdout:?}");
}

#[test]
fn missing_policy_paths_are_noted_and_skipped() {
    let policy = SandboxPolicy {
        read: vec!["/nonexistent/pons-read".into()],
        ..SandboxPolicy::default()
    };
    let out = run(&sh_spec("echo ran", Path::new("/"), policy, true));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ran\n");
    if sandbox::support().state != SandboxState::Unavailable {
        assert!(
            text(&out.stderr).contains("/nonexistent/pons-read does not exist"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn setup_failures_are_one_clear_line() {
    let spec = sh_spec(
        "true",
        Path::new("/nonexistent/cwd"),
        SandboxPolicy::default(),
        false,
    );
    let out = run(&spec);
    assert_eq!(out.status.code(), Some(126));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("pons sandbox: cannot enter the working directory /nonexistent/cwd"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);

    let mut spec = sh_spec("true", Path::new("/"), SandboxPolicy::default(), false);
    spec.program = "/nonexistent/prog".into();
    let out = run(&spec);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("pons sandbox: cannot execute `/nonexistent/prog`"));
}

#[test]
fn refuses_to_start_when_the_parent_is_not_the_kernel() {
    let mut spec = sh_spec(
        "echo started",
        Path::new("/"),
        SandboxPolicy::default(),
        false,
    );
    spec.kernel_pid = 1;
    let out = run(&spec);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).is_empty());
    assert!(
        text(&out.stderr).contains("the kernel (pid 1) exited before"),
        "{}",
        text(&out.stderr)
    );
}

/// Set in the environment of [`helper_plays_the_kernel`]'s process.
const HELPER_VAR: &str = "PONS_SANDBOX_TEST_HELPER";

/// Not a test: the intermediate "kernel" of [`module_dies_with_its_parent`] (this test binary run
/// again with only this function selected). It starts a module that prints its pid, then waits to
/// be killed.
#[test]
#[ignore = "helper process of module_dies_with_its_parent"]
fn helper_plays_the_kernel() {
    if std::env::var_os(HELPER_VAR).is_none() {
        return;
    }
    let spec = sh_spec(
        "echo module-pid $$; exec /bin/sleep 300",
        Path::new("/"),
        SandboxPolicy::default(),
        false,
    );
    let _module = sandbox::exec_command(&spec)
        .stdin(sandbox::Stdio::Null)
        .stdout(sandbox::Stdio::Inherit)
        .spawn_raw()
        .expect("spawn the module");
    std::thread::sleep(Duration::from_secs(300));
}

#[test]
fn module_dies_with_its_parent() {
    // A process of its own plays the kernel: it starts the module, and is then killed with
    // SIGKILL.
    let mut kernel = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_plays_the_kernel",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_VAR, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(kernel.stdout.take().unwrap());
    let mut line = String::new();
    let module_pid: i32 = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the helper ended early"
        );
        if let Some(pid) = line.trim().strip_prefix("module-pid ") {
            break pid.parse().expect("module printed its pid");
        }
    };
    assert!(!pid_dead(module_pid));
    kernel.kill().unwrap();
    kernel.wait().unwrap();
    wait_until(
        Duration::from_secs(10),
        "the module to die with its parent",
        || pid_dead(module_pid),
    );
}

#[tokio::test]
async fn command_spawns_a_confined_module() {
    let spawn = SpawnSpec {
        program: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            "echo \"$PONS_TEST_VAR\"; read -r line; echo \"got $line\"".into(),
        ],
        env: base_env(),
        cwd: "/".into(),
        sandbox: SandboxPolicy::default(),
        runtime: "binary".into(),
        entry: "/bin/sh".into(),
        deno_config: None,
        prepare: None,
    };
    let mut child = sandbox::command_with(&spawn, &opts(true)).spawn().unwrap();
    let pid = child.id().unwrap();
    // Its own process group.
    let pgid = rustix::process::getpgid(rustix::process::Pid::from_raw(pid as i32)).unwrap();
    assert_eq!(pgid.as_raw_nonzero().get() as u32, pid);
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"ping\n").await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "value with spaces = ok\ngot ping\n");
}

/// A process group of `sh` plus a background grandchild; returns (group leader, grandchild pid).
fn spawn_group() -> (Child, i32) {
    let mut child = Command::new("/bin/sh")
        .args(["-c", "/bin/sleep 300 & echo $!; wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    (child, line.trim().parse().unwrap())
}

#[test]
fn watchdog_kills_registered_groups_when_the_kernel_dies() {
    let wd = Watchdog::start_with(&pons_bin()).unwrap();
    let (mut leader, grandchild) = spawn_group();
    let (mut other, other_grandchild) = spawn_group();
    wd.add(leader.id() as i32);
    wd.add(other.id() as i32);
    wd.remove(other.id() as i32);
    wd.abandon();
    let st = wait_child(&mut leader, Duration::from_secs(10));
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    wait_until(
        Duration::from_secs(10),
        "the grandchild to be killed",
        || pid_dead(grandchild),
    );
    // The unregistered group survives.
    assert!(other.try_wait().unwrap().is_none());
    assert!(!pid_dead(other_grandchild));
    pons::sandbox::kill::kill_group(other.id() as i32).unwrap();
    other.wait().unwrap();
}

#[test]
fn watchdog_leaves_groups_alone_after_bye() {
    let wd = Watchdog::start_with(&pons_bin()).unwrap();
    let (mut leader, grandchild) = spawn_group();
    wd.add(leader.id() as i32);
    wd.disarm();
    assert!(leader.try_wait().unwrap().is_none());
    assert!(!pid_dead(grandchild));
    pons::sandbox::kill::kill_group(leader.id() as i32).unwrap();
    let st = leader.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    wait_until(
        Duration::from_secs(10),
        "the grandchild to be killed",
        || pid_dead(grandchild),
    );
}

fn median_micros(mut samples: Vec<Duration>) -> u128 {
    samples.sort();
    samples[samples.len() / 2].as_micros()
}

fn time_spawns(n: usize, mut run: impl FnMut() -> std::process::ExitStatus) -> u128 {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let st = run();
        samples.push(t.elapsed());
        assert!(st.success());
    }
    median_micros(samples)
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn spawn_overhead() {
    const N: usize = 200;
    let direct = time_spawns(N, || {
        Command::new("/bin/true")
            .env_clear()
            .envs(base_env())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    });
    let spec_for = |landlock: bool| ExecSpec {
        program: "/bin/true".into(),
        args: vec![],
        env: base_env(),
        cwd: "/".into(),
        policy: SandboxPolicy {
            read: vec!["/tmp".into()],
            ..SandboxPolicy::default()
        },
        kernel_pid: std::process::id(),
        landlock,
        tag: None,
        nofile_soft: None,
    };
    println!(
        "spawn+wait median over {N}: /bin/true direct {direct} µs; landlock {}",
        sandbox::support().to_json()
    );
    // Timed from before the command is built: spawning it prepares the sandbox.
    let confined_run = |landlock: bool| {
        sandbox::exec_command(&spec_for(landlock))
            .stdin(sandbox::Stdio::Null)
            .stdout(sandbox::Stdio::Null)
            .stderr(sandbox::Stdio::Null)
            .status()
            .unwrap()
    };
    let plain = time_spawns(N, || confined_run(false));
    let confined = time_spawns(N, || confined_run(true));
    println!(
        "  prepared + confined without Landlock {plain} µs (+{} µs); with Landlock {confined} µs \
         (+{} µs)",
        plain.saturating_sub(direct),
        confined.saturating_sub(direct),
    );
}

#[test]
fn abstract_unix_sockets_outside_the_sandbox_are_out_of_reach() {
    if !landlock_or_skip("abstract_unix_sockets_outside_the_sandbox_are_out_of_reach") {
        return;
    }
    let python = ["/usr/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(python) = python else {
        eprintln!("SKIP abstract_unix_sockets_outside_the_sandbox_are_out_of_reach: no python3");
        return;
    };
    use std::os::linux::net::SocketAddrExt;
    let name = format!("pons-sandbox-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n  s.connect('\\0'+sys.argv[1]); print('connected')\nexcept OSError as e:\n  print('errno', e.errno)";
    for landlock in [true, false] {
        let mut spec = sh_spec("", Path::new("/"), SandboxPolicy::default(), landlock);
        spec.program = python.into();
        spec.args = vec!["-c".into(), script.into(), name.clone()];
        let out = run(&spec);
        let stdout = text(&out.stdout);
        if landlock {
            assert_eq!(stdout.trim(), "errno 1", "{stdout} {}", text(&out.stderr));
        } else {
            assert_eq!(stdout.trim(), "connected", "{stdout} {}", text(&out.stderr));
        }
    }
}
