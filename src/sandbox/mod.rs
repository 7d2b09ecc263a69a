//! Exec trampoline and process hygiene: every module starts as `pons-exec __exec` (or, without a
//! usable `pons-exec` next to the kernel, `pons __exec`; see [`locate`]), which applies
//! `PR_SET_PDEATHSIG`, `no_new_privs`, the Landlock ruleset, rlimits and the cleared environment,
//! drops every capability ([`caps`]) and tags the process ([`tag`]), then `exec`s the module
//! ([`trampoline`]). A watchdog process (`pons __watchdog`, [`watchdog`]) kills every module
//! process group and every tagged descendant if the kernel itself dies; [`kill`] signals groups,
//! [`tag`] finds and kills the descendants that left them.
//!
//! The kernel uses [`command`] to build a module's [`tokio::process::Command`], [`support`] for
//! the machine's Landlock state and [`module_sandbox_report`] for what each module may touch.

pub mod caps;
pub mod kill;
pub mod locate;
pub mod report;
pub mod rules;
pub mod spec;
pub mod support;
pub mod tag;
pub mod trampoline;
pub mod watchdog;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use pons_reconciler::desired::SpawnSpec;

pub use report::module_sandbox_report;
pub use spec::ExecSpec;
pub use support::{support, SandboxState, SandboxSupport};
pub use watchdog::{watchdog_main, Watchdog};

/// How [`command_with`] builds the trampoline command.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The binary to run as `<binary> __exec` (`pons` or `pons-exec`); `None`:
    /// [`locate::default_trampoline`] — the `pons-exec` next to the running executable, opened once
    /// and checked, else `/proc/self/exe` (either way the file the kernel chose when it started,
    /// even if the one on disk was replaced since).
    pub trampoline: Option<PathBuf>,
    /// Apply Landlock (false e.g. with `security.enforcementMode: off`; a module whose manifest
    /// says `"sandbox": "required"` is confined or refused regardless).
    pub landlock: bool,
    /// The pid the trampoline expects as its parent; `None`: this process.
    pub kernel_pid: Option<u32>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            trampoline: None,
            landlock: true,
            kernel_pid: None,
        }
    }
}

/// The [`ExecSpec`] the trampoline receives for `spec`.
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

/// The command that starts `spec` through the trampoline, Landlock on, tagged with `tag` (see
/// [`tag`]): `pons __exec` in its own process group, stdin/stdout/stderr piped, the spec in an
/// otherwise empty environment.
///
/// Spawn it from a tokio worker thread, never from a `spawn_blocking` thread: the module's
/// parent-death signal fires when the spawning *thread* exits.
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
/// built from a ready [`ExecSpec`]. No `pre_exec` hook: the trampoline does all the work.
pub fn std_command(spec: &ExecSpec, opts: &ExecOptions) -> std::process::Command {
    let exe: &Path = match &opts.trampoline {
        Some(path) => path,
        None => locate::default_trampoline(),
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0("pons")
        .arg("__exec")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // Serializing paths and strings cannot fail; should it, the trampoline reports the missing
    // spec as one clear line and exits 126.
    if let Ok(vars) = spec.to_env() {
        cmd.envs(vars);
    }
    // The trampoline enters `spec.cwd` itself, with a clear error when it is missing; start it in
    // `/` so it holds no directory of the kernel.
    cmd.current_dir("/");
    cmd
}
