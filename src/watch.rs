//! Triggers of reconcile passes: the file watcher (inotify, batches of ≈100 ms) on the home
//! directory and the signals SIGHUP, SIGUSR1, SIGUSR2 (plus SIGTERM/SIGINT for shutdown).
//! Triggers only *request* a pass; the reconcile loop coalesces them.

mod files;
mod signals;

pub use files::{spawn_watcher, spawn_watcher_with, WatchGuard, WatchOptions};
pub use signals::spawn_signals;

/// Why a pass was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Something under the home directory changed.
    Files,
    Sighup,
    Sigusr1,
    Sigusr2,
    /// SIGTERM or SIGINT: ordered shutdown.
    Shutdown,
}
