//! Module tags: how pons finds every descendant of a module, wherever it went.
//!
//! A module's process group holds its children only until one calls `setsid()` or double-forks
//! into a daemon; after that neither the group nor the process tree leads back to the module
//! (orphans are re-parented to init, or to the nearest subreaper). So every module process is
//! marked, before its `exec`, with a *tag* that every descendant inherits, and that `fork`,
//! `exec`, `setsid`, new process groups and re-parenting all keep: the value of its `RLIMIT_LOCKS` limit (soft =
//! hard = tag). Linux has not enforced `RLIMIT_LOCKS` since 2.4.25, so the value changes nothing
//! for the module; an unprivileged (or capability-less) process can lower its hard limit but never
//! raise it, so a descendant cannot take another module's tag, and the kernel reads anyone's with
//! `prlimit(pid, RLIMIT_LOCKS, NULL, &old)` — no cgroup, no extra process, no memory per module.
//!
//! When a module's process ends (it exited, or the kernel stopped it), the kernel sweeps its tag:
//! every live process carrying it is sent SIGKILL, again until none is left. When the kernel
//! itself dies, the watchdog sweeps every tag of that kernel. A candidate must also have
//! `no_new_privs` set (every module process has; a daemon started by the system does not) and be
//! younger than the sweep's floor (the module's own start), so a process a module re-tagged with
//! `prlimit` (possible within one uid) is left alone unless it is itself a sandboxed process the
//! module could already reach. A process that deliberately lowers its own `RLIMIT_LOCKS` escapes
//! the sweep; containing a hostile module needs a cgroup.
//!
//! Layout of a tag: [`MAGIC`] in the top 20 bits, the kernel's pid in the next 22 (pids are below
//! 2²² on Linux, and unique among live kernels of one pid namespace), a spawn serial in the low 22.

use std::io;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Top 20 bits of every tag ("pns").
pub const MAGIC: u64 = 0x706E5;
const PID_BITS: u32 = 22;
const SERIAL_BITS: u32 = 22;
const PID_MASK: u64 = (1 << PID_BITS) - 1;
const SERIAL_MASK: u64 = (1 << SERIAL_BITS) - 1;

/// The tag of spawn `serial` of the kernel with pid `kernel_pid`.
pub fn tag(kernel_pid: u32, serial: u32) -> u64 {
    (MAGIC << (PID_BITS + SERIAL_BITS))
        | ((u64::from(kernel_pid) & PID_MASK) << SERIAL_BITS)
        | (u64::from(serial) & SERIAL_MASK)
}

/// The tag of the next process this kernel spawns (a fresh serial each time).
pub fn next() -> u64 {
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    tag(
        std::process::id(),
        SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    )
}

/// Which tags a sweep kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Exactly this tag: one module process and its descendants.
    Module(u64),
    /// Every tag of the kernel with this pid: all of its modules.
    Kernel(u32),
}

impl Scope {
    pub fn matches(self, value: u64) -> bool {
        match self {
            Scope::Module(t) => value == t,
            Scope::Kernel(pid) => {
                value >> (PID_BITS + SERIAL_BITS) == MAGIC
                    && (value >> SERIAL_BITS) & PID_MASK == u64::from(pid) & PID_MASK
            }
        }
    }
}

/// Tags the calling process (for tests; a module process is tagged by [`super::child`]).
pub fn mark_self(tag: u64) -> io::Result<()> {
    let lim = rustix::process::Rlimit {
        current: Some(tag),
        maximum: Some(tag),
    };
    rustix::process::setrlimit(rustix::process::Resource::Locks, lim).map_err(io::Error::from)
}

/// The tag of `pid` (its hard `RLIMIT_LOCKS`), `None` when unreadable (gone, or another uid's
/// process for an unprivileged caller) or unlimited.
pub fn tag_of(pid: i32) -> Option<u64> {
    let mut lim = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a get-only prlimit64 (null new limit) writes one rlimit64 into `lim`.
    let r = unsafe { libc::prlimit64(pid, libc::RLIMIT_LOCKS, std::ptr::null(), &mut lim) };
    (r == 0 && lim.rlim_max != libc::RLIM64_INFINITY).then_some(lim.rlim_max)
}

/// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22).
pub fn start_time(pid: i32) -> Option<u64> {
    stat_after_comm(pid)?
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Now, in the unit of [`start_time`]: a process started from now on has a start time at least
/// this (both count `CLOCK_BOOTTIME` in whole clock ticks, rounded down), without reading `/proc`.
pub fn ticks_now() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    // SAFETY: sysconf only reads a system constant.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|hz| *hz > 0)
        .unwrap_or(100);
    let ns = u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000
        + u64::try_from(now.tv_nsec).unwrap_or(0);
    ns / (1_000_000_000 / hz)
}

/// The fields of `/proc/<pid>/stat` after `(comm)` (which may hold spaces and parentheses).
fn stat_after_comm(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')').map(|(_, rest)| rest.to_string())
}

/// Whether `pid` still runs code (not a zombie or being reaped).
fn is_live(rest: &str) -> bool {
    !matches!(rest.split_whitespace().next(), Some("Z" | "X" | "x") | None)
}

fn has_no_new_privs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            s.lines()
                .any(|l| l.strip_prefix("NoNewPrivs:").map(str::trim) == Some("1"))
        })
        .unwrap_or(false)
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Processes sent SIGKILL (each counted once).
    pub killed: Vec<i32>,
    /// Tagged processes still alive at the deadline (e.g. stuck in uninterruptible sleep).
    pub survivors: Vec<i32>,
}

/// The live processes of `scope` started at or after `floor` (clock ticks since boot), with
/// `no_new_privs`, other than the caller.
pub fn scan(scope: Scope, floor: u64) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid <= 1 || pid == me || !tag_of(pid).is_some_and(|t| scope.matches(t)) {
            continue;
        }
        if is_candidate(pid, floor) {
            found.push(pid);
        }
    }
    found
}

fn is_candidate(pid: i32, floor: u64) -> bool {
    let Some(rest) = stat_after_comm(pid) else {
        return false;
    };
    let started = rest
        .split_whitespace()
        .nth(19)
        .and_then(|s| s.parse::<u64>().ok());
    is_live(&rest) && started.is_some_and(|s| s >= floor) && has_no_new_privs(pid)
}

/// Sends SIGKILL to every process of `scope` (see [`scan`]) until none is left or `deadline`
/// passes. Bounded: a process that forks while the sweep runs is found by the next scan, and a
/// process with SIGKILL pending can no longer fork.
pub fn sweep(scope: Scope, floor: u64, deadline: Duration) -> Sweep {
    let end = Instant::now() + deadline;
    let mut out = Sweep::default();
    let mut pause = Duration::from_millis(1);
    loop {
        let found = scan(scope, floor);
        if found.is_empty() {
            return out;
        }
        if Instant::now() >= end {
            out.survivors = found;
            return out;
        }
        for pid in found {
            if kill_tagged(pid, scope, floor) && !out.killed.contains(&pid) {
                out.killed.push(pid);
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// SIGKILL to `pid` if it still carries a tag of `scope`. Through a pidfd where the kernel has
/// them, so the tag is checked on the very process that is signalled (no pid-reuse race).
fn kill_tagged(pid: i32, scope: Scope, floor: u64) -> bool {
    let Some(p) = Pid::from_raw(pid) else {
        return false;
    };
    let recheck = || tag_of(pid).is_some_and(|t| scope.matches(t)) && is_candidate(pid, floor);
    match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => recheck() && rustix::process::pidfd_send_signal(&fd, Signal::KILL).is_ok(),
        Err(rustix::io::Errno::NOSYS) => {
            recheck() && rustix::process::kill_process(p, Signal::KILL).is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_magic_kernel_and_serial() {
        let t = tag(4_194_303, 7);
        assert!(Scope::Module(t).matches(t));
        assert!(!Scope::Module(t).matches(tag(4_194_303, 8)));
        assert!(Scope::Kernel(4_194_303).matches(t));
        assert!(Scope::Kernel(4_194_303).matches(tag(4_194_303, 1 << 22 | 3)));
        assert!(!Scope::Kernel(12).matches(t));
        assert!(!Scope::Kernel(12).matches(u64::MAX));
        assert!(!Scope::Kernel(0).matches(0));
        assert_eq!(t >> 44, MAGIC);
        assert_ne!(t, u64::MAX);
    }

    #[test]
    fn ticks_now_is_a_floor_of_later_start_times() {
        for _ in 0..20 {
            let floor = ticks_now();
            let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
            let started = start_time(child.id() as i32).unwrap();
            child.wait().unwrap();
            assert!(started >= floor, "{started} < {floor}");
            assert!(started <= ticks_now(), "started after now");
        }
        let me = start_time(std::process::id() as i32).unwrap();
        assert!(me <= ticks_now());
    }

    #[test]
    fn a_tagged_child_is_found_and_killed_and_others_are_not() {
        use std::os::unix::process::CommandExt;
        let t = tag(std::process::id(), 0x3_0000 | (std::process::id() & 0xffff));
        let spawn = |tagged: bool| {
            let mut cmd = std::process::Command::new("/bin/sleep");
            cmd.arg("30");
            // SAFETY: prctl and setrlimit are async-signal-safe system calls.
            unsafe {
                cmd.pre_exec(move || {
                    rustix::thread::set_no_new_privs(true)?;
                    if tagged {
                        mark_self(t)?;
                    }
                    Ok(())
                });
            }
            cmd.spawn().unwrap()
        };
        let mut tagged = spawn(true);
        let mut plain = spawn(false);
        let (tp, pp) = (tagged.id() as i32, plain.id() as i32);
        assert_eq!(tag_of(tp), Some(t));
        assert_eq!(tag_of(pp), None);
        let floor = start_time(std::process::id() as i32).unwrap();
        assert_eq!(scan(Scope::Module(t), floor), vec![tp]);
        // Younger than the floor only.
        assert!(scan(Scope::Module(t), start_time(tp).unwrap() + 1).is_empty());
        let s = sweep(Scope::Module(t), floor, Duration::from_secs(5));
        assert_eq!(s.killed, vec![tp]);
        assert!(s.survivors.is_empty());
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(tagged.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(
            plain.try_wait().unwrap().is_none(),
            "untagged process untouched"
        );
        plain.kill().unwrap();
        plain.wait().unwrap();
    }
}
