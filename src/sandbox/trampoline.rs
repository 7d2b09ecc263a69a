//! The exec trampoline: `pons __exec`, started by the kernel for every module, confines itself and
//! then `execve`s the module, so no sandboxing code runs in a fork hook of the threaded kernel.
//!
//! Steps, in order (any failure prints one `pons sandbox: …` line on stderr and exits):
//! 1. read the [`ExecSpec`] from the environment (exit 126 when it is missing or invalid);
//! 2. `PR_SET_PDEATHSIG(SIGKILL)`, then check that the parent is still the kernel (`getppid()` ==
//!    `kernel_pid`, else exit 1: the kernel died before the signal was armed). The death signal
//!    fires when the parent *thread* exits; the kernel spawns from long-lived tokio worker threads,
//!    so it must never spawn modules from `spawn_blocking` threads, which exit when idle;
//! 3. `PR_SET_NO_NEW_PRIVS`;
//! 4. `chdir` to the module's working directory;
//! 5. the Landlock ruleset from [`rules::module_rules_unprobed`] (best effort; system paths that
//!    cannot be opened are skipped silently, paths of the policy with a note; with
//!    `"sandbox": "required"` and no Landlock: exit 126),
//!    scoped (ABI 6) so the module can neither signal processes nor connect to abstract Unix
//!    sockets outside its sandbox.
//!    It comes before the rlimits because building it opens one descriptor per path, which a tiny
//!    `openFiles` limit would refuse;
//! 6. rlimits: memoryMb → RLIMIT_AS, openFiles → RLIMIT_NOFILE, processes → RLIMIT_NPROC (per
//!    user, and not enforced for root), cpuSeconds → RLIMIT_CPU (SIGXCPU, then SIGKILL 1 s later);
//!    and the module's tag ([`super::tag`]: RLIMIT_LOCKS, which every descendant inherits, so the
//!    kernel finds them after `setsid` or a double fork; a note when it cannot be set);
//! 7. every capability dropped ([`super::caps`]: bounding, ambient, effective, permitted,
//!    inheritable), last, once nothing left needs one;
//! 8. every descriptor above 2 marked close-on-exec;
//! 9. `execve(program, args, env)` with exactly the spec's environment (exit 127 when the program
//!    does not exist, 126 when it cannot be executed).
//!
//! The trampoline starts no runtime and no thread.

use std::ffi::OsString;
use std::fmt::Display;
use std::os::unix::process::CommandExt;

use landlock::{
    Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};
use pons_reconciler::desired::Limits;
use rustix::process::{Resource, Rlimit, Signal};

use super::rules::{module_rules_unprobed, Grant, Origin};
use super::spec::ExecSpec;

/// Exit code for a failure to set up the sandbox or to execute the program.
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// Exit code when the program does not exist.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code when the kernel died before the module could start.
pub const EXIT_ORPHANED: i32 = 1;

fn fail(code: i32, msg: impl Display) -> ! {
    eprintln!("pons sandbox: {msg}");
    std::process::exit(code)
}

fn note(msg: impl Display) {
    eprintln!("pons sandbox: note: {msg}");
}

/// Entry point of `pons __exec` (`args`: the arguments after `__exec`, which must be none).
pub fn trampoline_main(args: Vec<OsString>) -> ! {
    if let Some(a) = args.first() {
        fail(
            EXIT_CANNOT_EXEC,
            format!(
                "unexpected argument {a:?} to `pons __exec`, an internal mode started only by the kernel"
            ),
        );
    }
    let spec = ExecSpec::from_env(|k| std::env::var_os(k))
        .unwrap_or_else(|e| fail(EXIT_CANNOT_EXEC, format!("cannot read the exec spec: {e}")));
    let program = spec.program.display().to_string();
    if !spec.program.is_absolute() {
        fail(
            EXIT_NOT_FOUND,
            format!("program `{program}` is not an absolute path; the kernel must resolve it"),
        );
    }

    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::KILL)) {
        fail(
            EXIT_CANNOT_EXEC,
            format!("cannot set the parent-death signal for `{program}`: {e}"),
        );
    }
    let ppid = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    if ppid.and_then(|p| u32::try_from(p).ok()) != Some(spec.kernel_pid) {
        fail(
            EXIT_ORPHANED,
            format!(
                "the kernel (pid {}) exited before `{program}` could start; not starting it",
                spec.kernel_pid
            ),
        );
    }

    if let Err(e) = rustix::thread::set_no_new_privs(true) {
        fail(
            EXIT_CANNOT_EXEC,
            format!("cannot set no_new_privs for `{program}`: {e}"),
        );
    }

    if let Err(e) = std::env::set_current_dir(&spec.cwd) {
        fail(
            EXIT_CANNOT_EXEC,
            format!(
                "cannot enter the working directory {} of `{program}`: {e}",
                spec.cwd.display()
            ),
        );
    }

    if spec.landlock || spec.policy.required {
        match apply_landlock(&spec) {
            Ok(RulesetStatus::NotEnforced) if spec.policy.required => fail(
                EXIT_CANNOT_EXEC,
                format!(
                    "`{program}` requires Landlock (\"sandbox\": \"required\") but this kernel does not \
                     enforce it; use Linux ≥ 5.13 with Landlock enabled or drop the requirement"
                ),
            ),
            Ok(RulesetStatus::NotEnforced) => note(format!(
                "Landlock is unavailable on this kernel; `{program}` runs without filesystem confinement"
            )),
            Ok(_) => {}
            Err(e) => fail(
                EXIT_CANNOT_EXEC,
                format!("cannot apply the Landlock ruleset for `{program}`: {e}"),
            ),
        }
    }

    if let Err(e) = apply_limits(&spec.policy.limits, spec.nofile_soft) {
        fail(
            EXIT_CANNOT_EXEC,
            format!("cannot set the limits of `{program}`: {e}"),
        );
    }

    if let Some(tag) = spec.tag {
        if let Err(e) = super::tag::mark_self(tag) {
            note(format!(
                "cannot tag `{program}` (RLIMIT_LOCKS: {e}); descendants that leave its process \
                 group are not found when it stops"
            ));
        }
    }

    if let Err(e) = super::caps::drop_all() {
        fail(
            EXIT_CANNOT_EXEC,
            format!("cannot drop the capabilities of `{program}`: {e}"),
        );
    }

    mark_fds_cloexec();

    let err = std::process::Command::new(&spec.program)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .exec();
    let code = if err.kind() == std::io::ErrorKind::NotFound {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXEC
    };
    fail(code, format!("cannot execute `{program}`: {err}"))
}

/// Filesystem rights pons handles: those of ABI 5 (up to `IOCTL_DEV`).
fn handled_fs() -> BitFlags<AccessFs> {
    AccessFs::from_all(ABI::V5)
}

/// The rights of `grant` on a directory (`dir`) or a file.
pub(crate) fn rights(grant: Grant, dir: bool) -> BitFlags<AccessFs> {
    let all = handled_fs();
    let r = match grant {
        Grant::Read => AccessFs::ReadFile | AccessFs::ReadDir,
        Grant::Exec => AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::Execute,
        // Device nodes are never created: MAKE_CHAR / MAKE_BLOCK are handled and granted nowhere.
        Grant::ReadWrite => all & !(AccessFs::Execute | AccessFs::MakeChar | AccessFs::MakeBlock),
    };
    if dir {
        r
    } else {
        r & AccessFs::from_file(ABI::V5)
    }
}

/// Builds and enforces the module's Landlock ruleset on this process.
fn apply_landlock(spec: &ExecSpec) -> Result<RulesetStatus, landlock::RulesetError> {
    let mut ruleset = Ruleset::default()
        .handle_access(handled_fs())?
        .scope(Scope::from_all(ABI::V6))?
        .create()?;
    for rule in module_rules_unprobed(&spec.policy, Some(&spec.program)) {
        let fd = match PathFd::new(&rule.path) {
            Ok(fd) => fd,
            Err(_) => {
                if rule.origin == Origin::Policy {
                    note(format!(
                        "{} does not exist; its permission is skipped",
                        rule.path.display()
                    ));
                }
                continue;
            }
        };
        let dir = rustix::fs::fstat(&fd)
            .map(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
            })
            .unwrap_or(false);
        ruleset = ruleset.add_rule(PathBeneath::new(fd, rights(rule.grant, dir)))?;
    }
    Ok(ruleset.restrict_self()?.ruleset)
}

/// Sets soft and hard rlimits (never above an existing hard limit, which cannot be raised); without
/// an `openFiles` limit, the soft RLIMIT_NOFILE goes back to `nofile_soft` (the kernel's own before
/// it raised it), the hard one stays.
fn apply_limits(limits: &Limits, nofile_soft: Option<u64>) -> std::io::Result<()> {
    let set = |res: Resource, value: u64, slack: u64| -> std::io::Result<()> {
        let hard_now = rustix::process::getrlimit(res).maximum;
        let clamp = |v: u64| hard_now.map_or(v, |h| v.min(h));
        let new = Rlimit {
            current: Some(clamp(value)),
            maximum: Some(clamp(value.saturating_add(slack))),
        };
        rustix::process::setrlimit(res, new).map_err(std::io::Error::from)
    };
    if let Some(mb) = limits.memory_mb {
        set(Resource::As, mb.saturating_mul(1024 * 1024), 0)?;
    }
    if let Some(n) = limits.open_files {
        set(Resource::Nofile, n, 0)?;
    } else if let Some(soft) = nofile_soft {
        let hard = rustix::process::getrlimit(Resource::Nofile).maximum;
        let new = Rlimit {
            current: Some(hard.map_or(soft, |h| soft.min(h))),
            maximum: hard,
        };
        rustix::process::setrlimit(Resource::Nofile, new).map_err(std::io::Error::from)?;
    }
    if let Some(n) = limits.processes {
        set(Resource::Nproc, n, 0)?;
    }
    if let Some(s) = limits.cpu_seconds {
        set(Resource::Cpu, s, 1)?;
    }
    Ok(())
}

/// Marks every descriptor above stderr close-on-exec, so nothing the kernel leaked reaches the
/// module (best effort: `close_range` needs Linux ≥ 5.11).
fn mark_fds_cloexec() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors; it touches no
    // memory and closes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_rights_are_a_subset_of_dir_rights() {
        for g in [Grant::Read, Grant::ReadWrite, Grant::Exec] {
            assert!(rights(g, true).contains(rights(g, false)));
            assert!(!rights(g, false).contains(AccessFs::ReadDir));
        }
        assert!(!rights(Grant::ReadWrite, true).contains(AccessFs::Execute));
        for g in [Grant::Read, Grant::ReadWrite, Grant::Exec] {
            assert!(!rights(g, true).intersects(AccessFs::MakeChar | AccessFs::MakeBlock));
        }
        assert!(handled_fs().contains(AccessFs::MakeChar | AccessFs::MakeBlock));
        assert!(rights(Grant::ReadWrite, true).contains(AccessFs::MakeFifo));
        assert!(rights(Grant::ReadWrite, false).contains(AccessFs::Truncate));
        assert!(rights(Grant::Exec, false).contains(AccessFs::Execute));
    }
}
