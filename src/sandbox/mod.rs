//! Process hygiene and confinement of modules. The kernel starts every module with one `clone` +
//! `exec` ([`clone_vm`]: the child shares the kernel's memory until it execs, so nothing is copied):
//! before, it prepares everything ([`prepared`]: argument and environment strings, the Landlock
//! ruleset from [`rules`] built by [`ruleset`], rlimits, the tag, the capability drop), and the
//! child only makes system calls ([`child`]): `PR_SET_PDEATHSIG`, `no_new_privs`, `chdir`,
//! `landlock_restrict_self`, rlimits, the tag ([`tag`]), the capability drop ([`caps`]), then
//! `execve` with exactly the module's environment. [`process`] holds the started processes.
//! A watchdog process (`pons __watchdog`, [`watchdog`]) kills every module process group and
//! every tagged descendant if the kernel itself dies; [`kill`] signals groups, [`tag`] finds and
//! kills the descendants that left them.
//!
//! The kernel uses [`command`] to build a module's [`ModuleCommand`], [`support`] for
//! the machine's Landlock state and [`module_sandbox_report`] for what each module may touch.

pub mod caps;
pub mod child;
pub mod clone_vm;
pub mod kill;
pub mod prepared;
pub mod process;
pub mod report;
pub mod rules;
pub mod ruleset;
pub mod spec;
pub mod support;
mod sys;
mod system_fds;
pub mod tag;
pub mod watchdog;

use pons_reconciler::desired::SpawnSpec;

pub use clone_vm::Stdio;
pub use prepared::Prepared;
pub use process::{ModuleChild, ModuleCommand, Spawned};
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
        nofile_soft: spec::module_nofile(),
    }
}

/// The command that starts `spec` confined, Landlock on, tagged with `tag` (see [`tag`]): in its
/// own process group, stdin/stdout/stderr piped, with exactly the spec's environment.
///
/// Spawn it from a tokio worker thread, never from a `spawn_blocking` thread: the module's
/// parent-death signal fires when the spawning *thread* exits.
pub fn command(spec: &SpawnSpec, tag: u64) -> ModuleCommand {
    let opts = ExecOptions::default();
    let mut exec = exec_spec(spec, &opts);
    exec.tag = Some(tag);
    ModuleCommand::new(exec)
}

/// [`command`] with explicit options.
pub fn command_with(spec: &SpawnSpec, opts: &ExecOptions) -> ModuleCommand {
    ModuleCommand::new(exec_spec(spec, opts))
}

/// The command that starts a ready [`ExecSpec`] (for tests and tools; it can run without a
/// runtime: [`ModuleCommand::output`], [`ModuleCommand::spawn_raw`]).
pub fn exec_command(spec: &ExecSpec) -> ModuleCommand {
    ModuleCommand::new(spec.clone())
}
