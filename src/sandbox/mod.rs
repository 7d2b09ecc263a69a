//! Exec trampoline and process hygiene: every module starts as `pons __exec <spec>`, which applies
//! `no_new_privs`, `PR_SET_PDEATHSIG`, rlimits, the cleared environment and Landlock rules, then
//! `exec`s the module. A watchdog process (`pons __watchdog`) kills every module process group if
//! the kernel itself dies.

use pons_reconciler::desired::SpawnSpec;

/// Builds the command that starts `spec` through the trampoline: its own process group, piped
/// stdin/stdout/stderr, environment cleared (the trampoline sets the module's).
pub fn command(spec: &SpawnSpec) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    cmd
}
