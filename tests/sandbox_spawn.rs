//! How a module process is started (`pons::sandbox::clone_vm`, `child`): the child, which shares the
//! kernel's memory until it execs, never allocates (every path, failures included); the Landlock
//! ruleset the kernel builds for a spawn is closed once the module started, and no descriptor of
//! the kernel reaches a module — neither in-process with spawns racing on several threads, nor
//! through the real kernel.
//!
//! This test binary's allocator ends any process that allocates while it is not the test process
//! itself (exit 99, after a marker on stderr): a child that allocated between its start and its
//! `exec` shows up as that exit.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use pons::sandbox::{self, ExecSpec, Stdio};
use pons_reconciler::desired::{Limits, SandboxPolicy};

mod common;

/// The pid allocations are allowed in (0: not armed yet).
static ALLOWED_PID: AtomicI32 = AtomicI32::new(0);
const MARKER: &[u8] = b"ALLOCATION BETWEEN START AND EXEC\n";
const EXIT_ALLOCATED: i32 = 99;

struct Guard;

impl Guard {
    fn check() {
        let allowed = ALLOWED_PID.load(Ordering::Relaxed);
        if allowed == 0 {
            return;
        }
        // SAFETY: getpid and, in a child that allocated, write and _exit.
        unsafe {
            if libc::syscall(libc::SYS_getpid) as i32 != allowed {
                libc::write(2, MARKER.as_ptr().cast(), MARKER.len());
                libc::_exit(EXIT_ALLOCATED);
            }
        }
    }
}

// SAFETY: forwards to the system allocator after the check.
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Guard::check();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Guard::check();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Guard::check();
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Guard::check();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GUARD: Guard = Guard;

fn arm() {
    ALLOWED_PID.store(std::process::id() as i32, Ordering::Relaxed);
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn spec(program: &str, args: &[&str], landlock: bool) -> ExecSpec {
    ExecSpec {
        program: program.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/".into(),
        policy: SandboxPolicy::default(),
        kernel_pid: std::process::id(),
        landlock,
        tag: None,
        nofile_soft: None,
    }
}

/// Runs `spec` and checks its exit code and that its stderr contains `stderr`.
fn expect(what: &str, spec: &ExecSpec, code: i32, stderr: &str) {
    let out = sandbox::exec_command(spec)
        .stdin(Stdio::Null)
        .output()
        .expect("spawn");
    let err = text(&out.stderr);
    assert!(
        !err.contains(text(MARKER).trim()),
        "{what}: the child allocated: {err}"
    );
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(err.contains(stderr), "{what}: {err:?} lacks {stderr:?}");
}

#[test]
fn nothing_allocates_between_start_and_exec() {
    arm();
    let landlock = sandbox::support().state != sandbox::SandboxState::Unavailable;

    // Confined, limited, tagged, with a note about a missing path: runs.
    let mut ok = spec("/bin/sh", &["-c", "exit 7"], true);
    ok.policy = SandboxPolicy {
        read: vec!["/nonexistent/pons-spawn-test".into()],
        limits: Limits {
            memory_mb: Some(4096),
            open_files: Some(64),
            processes: Some(4096),
            cpu_seconds: Some(60),
        },
        ..SandboxPolicy::default()
    };
    ok.tag = Some(sandbox::tag::tag(std::process::id(), 0x3_fff0));
    let note = if landlock { "does not exist" } else { "" };
    expect("a confined module", &ok, 7, note);

    let mut orphan = spec("/bin/sh", &["-c", "exit 0"], false);
    orphan.kernel_pid = 1;
    expect(
        "parent is not the kernel",
        &orphan,
        1,
        "the kernel (pid 1) exited before",
    );

    let mut nodir = spec("/bin/sh", &["-c", "exit 0"], true);
    nodir.cwd = "/nonexistent/cwd".into();
    expect(
        "missing working directory",
        &nodir,
        126,
        "cannot enter the working directory /nonexistent/cwd of `/bin/sh`: No such file or directory (os error 2)",
    );

    expect(
        "missing program",
        &spec("/nonexistent/prog", &[], true),
        127,
        "cannot execute `/nonexistent/prog`: No such file or directory (os error 2)",
    );

    let mut nul = spec("/bin/sh", &["-c", "exit 0"], false);
    nul.env.push(("BAD".into(), "a\0b".into()));
    expect(
        "NUL in the environment",
        &nul,
        126,
        "nul byte found in provided data",
    );

    expect(
        "relative program",
        &spec("sh", &["-c", "exit 0"], false),
        127,
        "is not an absolute path",
    );

    // A directory is no program: execve fails with EACCES.
    expect(
        "not executable",
        &spec("/tmp", &[], false),
        126,
        "cannot execute `/tmp`: Permission denied (os error 13)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_path_allocates_nothing_in_the_child_either() {
    arm();
    let mut cmd = sandbox::exec_command(&spec("/bin/sh", &["-c", "echo hi >&2; exit 3"], true));
    let child = cmd.spawn().expect("spawn");
    let out = child.wait_with_output().await.expect("wait");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "hi\n");
}

/// The descriptors of `pid`, with their targets.
fn fds(pid: u32) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n: u32 = e.file_name().to_str()?.parse().ok()?;
                    Some((n, std::fs::read_link(e.path()).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The descriptors of `pid` above 2.
fn fds_above_stdio(pid: u32) -> Vec<(u32, PathBuf)> {
    fds(pid).into_iter().filter(|(n, _)| *n > 2).collect()
}

fn is_ruleset(target: &Path) -> bool {
    target.to_string_lossy().contains("landlock")
}

#[test]
fn rulesets_are_closed_after_the_spawn_and_reach_no_module() {
    // Modules started from several threads at once: a ruleset of one spawn is open in this
    // process while another spawns.
    let children: Vec<sandbox::Spawned> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..10)
                        .map(|_| {
                            sandbox::exec_command(&spec("/bin/sleep", &["30"], true))
                                .stdin(Stdio::Null)
                                .stdout(Stdio::Null)
                                .stderr(Stdio::Null)
                                .spawn_raw()
                                .expect("spawn")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("spawning thread"))
            .collect()
    });
    // The other tests of this binary spawn in parallel threads, so one of their rulesets may be
    // open for the moment of its spawn: a leaked ruleset is one that stays open.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ours = fds_above_stdio(std::process::id());
        if !ours.iter().any(|(_, t)| is_ruleset(t)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rulesets left open in the parent: {ours:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut c in children {
        let leaked = fds_above_stdio(c.id());
        assert!(
            leaked.is_empty(),
            "module {} inherited descriptors: {leaked:?}",
            c.id()
        );
        c.kill().expect("kill");
        let st = c.wait().expect("wait");
        assert!(!st.success());
    }
}

#[test]
fn the_kernel_keeps_no_ruleset_and_its_modules_inherit_no_descriptor() {
    let mut home = common::TestHome::new();
    for id in ["a", "b", "c"] {
        home.add(common::ModuleSpec::new(id));
    }
    let mut kernel = home.start();
    let pids: Vec<u32> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            let m = home.wait_status(id, "ready", Duration::from_secs(20));
            m["pid"].as_u64().expect("a ready module has a pid") as u32
        })
        .collect();
    let kernel_fds = fds_above_stdio(kernel.pid() as u32);
    assert!(
        !kernel_fds.iter().any(|(_, t)| is_ruleset(t)),
        "the kernel holds a ruleset: {kernel_fds:?}"
    );
    for pid in pids {
        // The module's own pipes to the kernel (0-2, and what the SDK dups of them) are the
        // kernel's too; anything else the kernel holds must not be there.
        let all = fds(pid);
        let stdio: Vec<&PathBuf> = all
            .iter()
            .filter(|(n, _)| *n <= 2)
            .map(|(_, t)| t)
            .collect();
        let fds = fds_above_stdio(pid);
        let from_kernel: Vec<_> = fds
            .iter()
            .filter(|(_, t)| {
                is_ruleset(t) || (!stdio.contains(&t) && kernel_fds.iter().any(|(_, k)| k == t))
            })
            .collect();
        assert!(
            from_kernel.is_empty(),
            "module {pid} holds descriptors of the kernel: {from_kernel:?} (all: {fds:?})"
        );
    }
    assert!(kernel.stop().success());
}

#[test]
fn a_module_has_its_own_process_group_when_its_spawn_returns() {
    // The spawning thread does not wait for the child's `exec` (nor for its `setpgid(0, 0)`):
    // the kernel makes the group itself, so stopping the group right after a spawn finds it.
    for _ in 0..50 {
        let mut child = sandbox::exec_command(&spec("/bin/sleep", &["30"], true))
            .stdin(Stdio::Null)
            .stdout(Stdio::Null)
            .stderr(Stdio::Null)
            .spawn_raw()
            .expect("spawn");
        let pid = child.id() as libc::pid_t;
        // SAFETY: getpgid and killpg on our own child and its group.
        let (pgid, killed) = unsafe { (libc::getpgid(pid), libc::killpg(pid, libc::SIGKILL)) };
        let st = child.wait().expect("wait");
        assert_eq!(pgid, pid, "the child is not yet in a group of its own");
        assert_eq!(killed, 0, "no process group {pid} to signal");
        assert!(!st.success());
    }
}
