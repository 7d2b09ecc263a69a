//! sd_notify: what the kernel tells systemd when it runs as a `Type=notify` service (the design). Everything here is a no-op unless `NOTIFY_SOCKET` is set, and no task or timer exists
//! then.
//!
//! - `READY=1` once the boot pass has converged: every runnable module of that pass is settled
//!   (ready, or crashed / stopped for good — blocked modules are not runnable). A module that
//!   neither settles nor becomes ready within [`READY_BOUND`] does not hold the service in
//!   `activating` for ever: READY=1 is sent then, and the status line says what is still starting.
//! - `STATUS=<n> modules: <a> ready, <b> blocked, …` whenever the counts change, at most once per
//!   [`STATUS_EVERY`].
//! - `RELOADING=1` + `MONOTONIC_USEC=` before a signalled pass (SIGHUP, `systemctl reload`), then
//!   `READY=1` once that pass has converged (the same rule as at boot).
//! - `STOPPING=1` when the ordered shutdown begins.
//! - `WATCHDOG=1` every half `WATCHDOG_USEC` when systemd asked for it (`WatchdogSec=`); each ping
//!   first takes the router lock, so a kernel stuck on it stops pinging and systemd restarts it.
//!
//! The states and the environment are the `sd-notify` crate's; the datagram is sent here, on a
//! non-blocking socket: a manager that does not read (a full queue) loses messages instead of
//! stalling a runtime worker — and with it the kernel's shutdown. An abstract socket
//! (`NOTIFY_SOCKET=@name`) is supported too.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pons_reconciler::{Desired, Status};
use sd_notify::NotifyState;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Kernel;

/// At most one `STATUS=` per this long.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);
/// `READY=1` is sent at the latest this long after the pass it waits for (systemd's default
/// start timeout is 90 s; the unit `pons service install` writes says so explicitly).
pub const READY_BOUND: Duration = Duration::from_secs(60);

/// The kernel's link to the service manager.
pub struct Notifier {
    enabled: bool,
    /// `NOTIFY_SOCKET` and the non-blocking socket messages are sent from.
    target: Option<(OsString, UnixDatagram)>,
    watchdog: Option<Duration>,
    /// The desired state of the last boot or signalled pass, until READY=1 is sent for it.
    settle: Mutex<Option<Arc<Desired>>>,
    wake: Notify,
    ready_sent: AtomicBool,
    /// A send already failed (logged once).
    failed: AtomicBool,
}

impl Notifier {
    /// Enabled when `NOTIFY_SOCKET` is set; the watchdog when `WATCHDOG_USEC` is set too (and
    /// `WATCHDOG_PID`, if set, is this process).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET")
            .filter(|s| !s.is_empty())
            .and_then(|path| match UnixDatagram::unbound().and_then(|s| {
                s.set_nonblocking(true)?;
                Ok(s)
            }) {
                Ok(sock) => Some((path, sock)),
                Err(e) => {
                    tracing::warn!(error = %e, "sd_notify: cannot create a socket; systemd is not notified");
                    None
                }
            });
        let enabled = target.is_some();
        Notifier {
            enabled,
            target,
            watchdog: enabled
                .then(sd_notify::watchdog_enabled)
                .flatten()
                .filter(|d| !d.is_zero()),
            settle: Mutex::new(None),
            wake: Notify::new(),
            ready_sent: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    /// Before a signalled pass: `RELOADING=1` (once the service was ready; a signal during boot
    /// is part of the boot).
    pub fn reloading(&self) {
        if !self.enabled || !self.ready_sent.load(Ordering::Acquire) {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading"),
            ]),
            Err(e) => {
                tracing::warn!(error = %e, "sd_notify: cannot read the monotonic clock; RELOADING=1 not sent")
            }
        }
    }

    /// After a boot or signalled pass: READY=1 once its runnable modules have settled.
    pub fn settle(&self, desired: Arc<Desired>) {
        if !self.enabled {
            return;
        }
        *self.settle.lock() = Some(desired);
        self.wake.notify_one();
    }

    /// The ordered shutdown begins.
    pub fn stopping(&self) {
        if self.enabled {
            self.send(&[
                NotifyState::Stopping,
                NotifyState::Status("stopping modules"),
            ]);
        }
    }

    fn send(&self, states: &[NotifyState]) {
        let Some((path, sock)) = &self.target else {
            return;
        };
        let mut msg = String::new();
        for s in states {
            let _ = writeln!(msg, "{s}");
        }
        if let Err(e) = send_to(sock, path, msg.as_bytes()) {
            if !self.failed.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    socket = %path.to_string_lossy(),
                    error = %e,
                    "sd_notify: cannot notify the service manager (messages are dropped while it does not read)"
                );
            }
        }
    }
}

/// One datagram to `NOTIFY_SOCKET`: a path, or `@name` for an abstract socket.
fn send_to(sock: &UnixDatagram, path: &OsString, msg: &[u8]) -> std::io::Result<()> {
    let n = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg, &addr)?
        }
        None => sock.send_to(msg, path)?,
    };
    if n == msg.len() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "datagram cut short",
        ))
    }
}

/// Starts the notifier's tasks (none when `NOTIFY_SOCKET` is unset).
pub fn start(kernel: &Arc<Kernel>) {
    let n = &kernel.notify;
    if !n.enabled {
        return;
    }
    tracing::info!(
        socket = %n.target.as_ref().map(|t| t.0.to_string_lossy()).unwrap_or_default(),
        watchdogMs = n.watchdog.map(|d| d.as_millis() as u64),
        "sd_notify enabled"
    );
    tokio::spawn(status_task(kernel.clone()));
    if let Some(period) = n.watchdog {
        tokio::spawn(watchdog_task(kernel.clone(), period / 2));
    }
}

/// READY=1 after the passes it waits for, STATUS= when the counts change.
async fn status_task(kernel: Arc<Kernel>) {
    let n = &kernel.notify;
    let mut last_line = String::new();
    let mut last_at: Option<Instant> = None;
    let mut target: Option<(Arc<Desired>, Instant)> = None;
    loop {
        let changed = kernel.changed.notified();
        let woken = n.wake.notified();
        if kernel.is_shutting_down() {
            return;
        }
        if let Some(d) = n.settle.lock().take() {
            target = Some((d, Instant::now() + READY_BOUND));
        }
        let now = Instant::now();
        let line = status_line(&kernel);
        if let Some((d, deadline)) = &target {
            let unsettled = unsettled(&kernel, d);
            if unsettled.is_empty() || now >= *deadline {
                if !unsettled.is_empty() {
                    tracing::warn!(
                        modules = %unsettled.join(", "),
                        "sd_notify: READY=1 although these modules have not settled after {} s",
                        READY_BOUND.as_secs()
                    );
                }
                n.send(&[NotifyState::Ready, NotifyState::Status(&line)]);
                n.ready_sent.store(true, Ordering::Release);
                last_line = line;
                last_at = Some(now);
                target = None;
                continue;
            }
        }
        let mut status_due = None;
        if line != last_line {
            let due = last_at.map_or(now, |t| t + STATUS_EVERY);
            if due <= now {
                n.send(&[NotifyState::Status(&line)]);
                last_line = line;
                last_at = Some(now);
            } else {
                status_due = Some(due);
            }
        }
        let wake_at = [status_due, target.as_ref().map(|t| t.1)]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            _ = changed => {}
            _ = woken => {}
            _ = sleep_until(wake_at) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `WATCHDOG=1` every `every`, after taking the router lock (a stuck kernel stops pinging).
/// Runs through the ordered shutdown, until the runtime ends.
async fn watchdog_task(kernel: Arc<Kernel>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        drop(kernel.core.lock());
        kernel.notify.send(&[NotifyState::Watchdog]);
    }
}

/// Whether a module in this status has settled: it will not change without a new pass or a
/// command (`pons apply`, `pons modules restart`).
fn settled(status: Status) -> bool {
    matches!(
        status,
        Status::Ready | Status::Crashed | Status::Stopped | Status::Blocked
    )
}

/// Runnable modules of `desired` that have not settled.
fn unsettled(kernel: &Kernel, desired: &Desired) -> Vec<String> {
    let core = kernel.core.lock();
    desired
        .modules
        .keys()
        .filter(|id| {
            core.modules
                .get(id.as_str())
                .is_none_or(|e| !settled(e.status))
        })
        .cloned()
        .collect()
}

/// The order statuses appear in the status line.
const ORDER: [Status; 8] = [
    Status::Ready,
    Status::Starting,
    Status::Waiting,
    Status::Restarting,
    Status::Stopping,
    Status::Stopped,
    Status::Crashed,
    Status::Blocked,
];

/// `5 modules: 4 ready, 1 blocked` — the modules the kernel manages and those blocked
/// (`booting` before the first pass has read the home).
pub fn status_line(kernel: &Kernel) -> String {
    let Some(desired) = kernel.state.lock().desired.clone() else {
        return "booting".into();
    };
    let mut counts = [0usize; ORDER.len()];
    let slot = |s: Status| ORDER.iter().position(|o| *o == s).unwrap_or(0);
    let core = kernel.core.lock();
    for e in core.modules.values() {
        counts[slot(e.status)] += 1;
    }
    let blocked = desired
        .blocked
        .iter()
        .filter(|b| !core.modules.contains_key(b.id.as_str()))
        .count();
    counts[slot(Status::Blocked)] += blocked;
    drop(core);
    format_counts(&counts)
}

fn format_counts(counts: &[usize; ORDER.len()]) -> String {
    let total: usize = counts.iter().sum();
    let noun = if total == 1 { "module" } else { "modules" };
    let parts: Vec<String> = ORDER
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    if parts.is_empty() {
        format!("{total} {noun}")
    } else {
        format!("{total} {noun}: {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_counts() {
        assert_eq!(format_counts(&[0; 8]), "0 modules");
        assert_eq!(
            format_counts(&[1, 0, 0, 0, 0, 0, 0, 0]),
            "1 module: 1 ready"
        );
        assert_eq!(
            format_counts(&[4, 0, 0, 0, 0, 0, 0, 1]),
            "5 modules: 4 ready, 1 blocked"
        );
        assert_eq!(
            format_counts(&[0, 1, 0, 2, 0, 0, 1, 0]),
            "4 modules: 1 starting, 2 restarting, 1 crashed"
        );
    }

    #[test]
    fn settled_statuses() {
        for s in ORDER {
            let expected = matches!(
                s,
                Status::Ready | Status::Crashed | Status::Stopped | Status::Blocked
            );
            assert_eq!(settled(s), expected, "{s:?}");
        }
    }
}
