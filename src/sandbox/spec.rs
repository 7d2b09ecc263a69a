//! [`ExecSpec`]: everything needed to start one module process (see [`super::prepared`] for what
//! is made of it before the start).

use std::path::PathBuf;

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
}
