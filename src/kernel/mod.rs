//! Kernel daemon: boot, the reconcile loop, the supervisor and the router.

use crate::home::Home;

/// Options of `pons kernel start`.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub home: Home,
    /// `--log-level`; `None` means config.yaml `logging.level`, else `info`.
    pub log_level: Option<String>,
    /// `--manual`: reconcile only on `pons apply` or a signal.
    pub manual: bool,
}

/// Runs the kernel in the foreground until SIGTERM/SIGINT or a `stop` command; builds its own
/// tokio runtime. Returns after an ordered shutdown.
pub fn run(opts: StartOptions) -> anyhow::Result<()> {
    let _ = opts;
    anyhow::bail!("the kernel is not implemented yet")
}
