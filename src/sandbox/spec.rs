//! [`ExecSpec`]: everything needed to start one module process (see [`super::prepared`] for what
//! is made of it before the start).

use std::path::PathBuf;
use std::sync::OnceLock;

use pons_reconciler::desired::SandboxPolicy;

/// What to start, and how to confine it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// Absolute path of the program to `execve`.
    pub program: PathBuf,
    /// Arguments after `argv[0]` (which is `program`).
    pub args: Vec<String>,
    /// The complete environment of the module: exactly these pairs, nothing inherited.
    pub env: Vec<(String, String)>,
    /// Working directory of the module.
    pub cwd: PathBuf,
    /// Filesystem and resource policy.
    pub policy: SandboxPolicy,
    /// The pid the new process's parent must have after `PR_SET_PDEATHSIG` (the kernel's).
    pub kernel_pid: u32,
    /// Apply the Landlock ruleset (false: rlimits and hygiene only).
    pub landlock: bool,
    /// The module's tag ([`super::tag`]), so the kernel finds its descendants; `None`: untagged.
    pub tag: Option<u64>,
    /// The soft RLIMIT_NOFILE of a module whose policy sets no `openFiles`: the kernel's own
    /// before it raised it ([`set_module_nofile`]); `None`: inherited as it is.
    pub nofile_soft: Option<u64>,
}

/// The soft RLIMIT_NOFILE modules start with, recorded by the kernel before it raises its own.
static MODULE_NOFILE: OnceLock<u64> = OnceLock::new();

/// Records the soft RLIMIT_NOFILE modules start with (the first value recorded stays).
pub fn set_module_nofile(soft: u64) {
    let _ = MODULE_NOFILE.set(soft);
}

/// The soft RLIMIT_NOFILE modules start with, if the kernel recorded one.
pub fn module_nofile() -> Option<u64> {
    MODULE_NOFILE.get().copied()
}
