//! Process hygiene and confinement of modules. The kernel starts every module with one
//! `fork` + `exec`: before the fork it prepares everything ([`prepared`]: argument and environment
//! strings, the Landlock ruleset from [`rules`] built by [`ruleset`], rlimits, the tag, the
//! capability drop), and between fork and exec the child only makes system calls ([`child`]):
//! `PR_SET_PDEATHSIG`, `no_new_privs`, `chdir`, `landlock_restrict_self`, rlimits, the tag
//! ([`tag`]), the capability drop ([`caps`]), then `execve` with exactly the module's environment.
//! A watchdog process (`pons __watchdog`, [`watchdog`]) kills every module process group and
//! every tagged descendant if the kernel itself dies; [`kill`] signals groups, [`tag`] finds and
//! kills the descendants that left them.
//!
//! The kernel uses [`command`] to build a module's [`tokio::process::Command`], [`support`] for
//! the machine's Landlock state and [`module_sandbox_report`] for what each module may touch.

pub mod caps;
pub mod child;
pub mod kill;
pub mod prepared;
pub mod report;
pub mod rules;
pub mod ruleset;
pub mod spec;
pub mod support;
pub mod tag;
pub mod watchdog;

use std::os::unix::process::CommandExt;
use std::process::Stdio;

use pons_reconciler::desired::SpawnSpec;

pub use prepared::Prepared;
pub use report::module_sandbox_report;
pub use spec::ExecSpec;
pub use support::{support, SandboxState, SandboxSupport};
pub use watchdog::{watchdog_main, Watchdog};

/// How [`command_with`] prepares a module's start.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Apply Landlock (false e.g. with `security.enforcementMode: off`; a module whose manifest
    /// says `"sandbox": "required"` is confined or refused regardless).
    pub landlock: bool,
    /// The pid the child expects as its parent; `None`: this process.
    pub kernel_pid: Option<u32>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            landlock: true,
            kernel_pid: None,
        }
    }
}

/// The [`ExecSpec`] of `spec`.
pub fn exec_spec(spec: &SpawnSpec, opts: &ExecOptions) -> ExecSpec {
    ExecSpec {
        program: spec.program.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        policy: spec.sandbox.clone(),
        kernel_pid: opts.kernel_pid.unwrap_or_else(std::process::id),
        landlock: opts.landlock,
        tag: None,
    }
}

/// The command that starts `spec` confined, Landlock on, tagged with `tag` (see [`tag`]): in its
/// own process group, stdin/stdout/stderr piped, with exactly the spec's environment.
///
/// Spawn it from a tokio worker thread, never from a `spawn_blocking` thread: the module's
/// parent-death signal fires when the spawning *thread* exits. Drop it once spawned: it holds the
/// module's Landlock ruleset descriptor (close-on-exec) until then.
pub fn command(spec: &SpawnSpec, tag: u64) -> tokio::process::Command {
    let opts = ExecOptions::default();
    let mut exec = exec_spec(spec, &opts);
    exec.tag = Some(tag);
    tokio::process::Command::from(std_command(&exec, &opts))
}

/// [`command`] with explicit options.
pub fn command_with(spec: &SpawnSpec, opts: &ExecOptions) -> tokio::process::Command {
    tokio::process::Command::from(std_command(&exec_spec(spec, opts), opts))
}

/// The same command as a `std::process::Command` (for tests, benchmarks and non-tokio callers),
/// built from a ready [`ExecSpec`] (`opts` is already applied to it): everything is prepared now
/// ([`Prepared`]), and the `pre_exec` hook runs [`child`]'s steps and `execve`s the program.
pub fn std_command(spec: &ExecSpec, _opts: &ExecOptions) -> std::process::Command {
    let prepared = Prepared::new(spec);
    // The hook never returns (it `execve`s or exits), so std's own exec, environment and
    // working directory are never used; an empty environment keeps std from copying the kernel's.
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the hook makes async-signal-safe system calls only, on data prepared before the
    // fork (see `child`): no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || prepared.exec_in_child());
    }
    cmd
}
