//! The terminal's side of `pons top` that crossterm leaves to us: the signals that end the view,
//! a hung-up terminal, and restoring the terminal on the way out.
//!
//! crossterm 0.29 busy-loops inside `event::poll` once its tty is gone (reads return 0 or EIO and
//! it reads again, forever, whatever the timeout): a `pons top` left in a closed terminal would
//! burn a core and never see SIGTERM. So the loop asks crossterm for events only after `poll(2)`
//! on stdin says there is input, and treats `POLLHUP`/`POLLERR` as the end; a watchdog thread
//! ends the process if the loop stops beating while the terminal is gone or a signal asked it to
//! stop (the short race between our `poll(2)` and crossterm's read).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGTERM / SIGHUP / SIGINT.
static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// Milliseconds since [`EPOCH`] of the loop's last beat.
static BEAT_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// How long the loop may stay silent, once it should have ended, before the watchdog ends it.
const STALL: Duration = Duration::from_secs(2);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}

/// Catches SIGTERM, SIGHUP and SIGINT (the loop ends and restores the terminal) and starts the
/// watchdog.
pub fn install() -> std::io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    beat();
    std::thread::Builder::new()
        .name("top-watchdog".into())
        .spawn(|| loop {
            std::thread::sleep(Duration::from_millis(500));
            let silent = now_ms().saturating_sub(BEAT_MS.load(Ordering::Relaxed));
            if silent > STALL.as_millis() as u64 && (signalled() || gone()) {
                // The loop is stuck (in crossterm): nothing left to restore on a dead terminal,
                // and a signal asked us to go.
                // SAFETY: `_exit` ends the process without running anything else.
                unsafe { libc::_exit(1) };
            }
        })?;
    Ok(())
}

pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}

/// The loop is alive.
pub fn beat() {
    BEAT_MS.store(now_ms(), Ordering::Relaxed);
}

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What stdin has for the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Bytes to read: crossterm may read them.
    Ready,
    /// Nothing within the timeout (or a signal interrupted the wait).
    Idle,
    /// The terminal hung up (closed window, killed tmux session, lost ssh connection).
    Gone,
}

/// Waits up to `timeout` for input on stdin.
pub fn wait(timeout: Duration) -> Input {
    wait_fd(libc::STDIN_FILENO, timeout)
}

fn wait_fd(fd: libc::c_int, timeout: Duration) -> Input {
    let mut fds = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    if n < 0 {
        return if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            Input::Idle
        } else {
            Input::Gone
        };
    }
    let r = fds[0].revents;
    if r & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        Input::Gone
    } else if r & libc::POLLIN != 0 {
        Input::Ready
    } else {
        Input::Idle
    }
}

/// Whether the terminal hung up.
pub fn gone() -> bool {
    wait(Duration::ZERO) == Input::Gone
}

/// Restores the terminal when dropped, however the loop ends (ratatui's panic hook covers
/// panics), unless it hung up: writing to it would only fail.
pub struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        if !gone() {
            ratatui::restore();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_ready_idle_and_hung_up() {
        let mut p = [0 as libc::c_int; 2];
        // SAFETY: `p` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        let (r, w) = (p[0], p[1]);
        let t = Duration::from_millis(10);
        assert_eq!(wait_fd(r, t), Input::Idle);
        // SAFETY: writing one byte from a valid buffer to our pipe.
        assert_eq!(unsafe { libc::write(w, b"q".as_ptr().cast(), 1) }, 1);
        assert_eq!(wait_fd(r, t), Input::Ready);
        // SAFETY: closing our own descriptors (the read end after its last use).
        unsafe { libc::close(w) };
        // The writer is gone: the hang-up wins over the byte still there.
        assert_eq!(wait_fd(r, t), Input::Gone);
        unsafe { libc::close(r) };
        assert_eq!(wait_fd(r, t), Input::Gone, "a closed descriptor");
    }
}
