//! Running pons as a systemd service (DESIGN.md §10): the kernel's sd_notify messages, received
//! on a real `NOTIFY_SOCKET` datagram socket the test binds, and `pons service
//! install|uninstall|status` with the unit it writes (checked by `systemd-analyze verify` where
//! that tool exists).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The service manager's end of `NOTIFY_SOCKET`.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    sock: UnixDatagram,
    /// Every datagram received so far, in order.
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::Builder::new()
            .prefix("pons-notify-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket {
            _dir: dir,
            path,
            sock,
            seen: vec![],
        }
    }

    fn env(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Receives datagrams until one satisfies `pred` (returned) or the deadline passes.
    fn until(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; received: {:?}",
                    self.seen
                );
            }
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.seen.push(msg.clone());
                    if pred(&msg) {
                        return msg;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv on the notify socket: {e}"),
            }
        }
    }

    /// Every datagram that arrives within `window`.
    fn drain(&mut self, window: Duration) -> Vec<String> {
        let start = self.seen.len();
        let deadline = Instant::now() + window;
        let mut buf = vec![0u8; 4096];
        while let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        {
            self.sock
                .set_read_timeout(Some(left))
                .expect("read timeout");
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        self.seen[start..].to_vec()
    }
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

fn status_of(msg: &str) -> Option<&str> {
    msg.lines().find_map(|l| l.strip_prefix("STATUS="))
}

fn statuses(home: &TestHome) -> Vec<(String, String)> {
    home.status()["modules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or("").to_string(),
                m["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn ready_status_reload_and_stopping_over_notify_socket() {
    let mut home = TestHome::new();
    home.write_config(&format!("{FAST_LIFECYCLE}  maxRestarts: 1\n"));
    home.add(ModuleSpec::new("quick").args(&["--ready-delay-ms", "200"]));
    // Ready well after the boot pass has spawned it: a READY=1 sent at the end of the pass
    // (instead of at convergence) finds it still starting.
    home.add(ModuleSpec::new("slow").args(&["--ready-delay-ms", "1500"]));
    // Settles as crashed (maxRestarts 1): READY=1 does not wait for it for ever.
    home.add(ModuleSpec::new("crashy").args(&["--crash-after-ms", "100", "--exit-code", "3"]));
    // Not approved: blocked, not runnable.
    home.add(ModuleSpec::new("unapproved").unapproved());
    let mut sock = NotifySocket::bind();
    let mut kernel = home.start_with(&["--manual"], &[("NOTIFY_SOCKET", &sock.env())]);

    let ready = sock.until("READY=1 after boot", Duration::from_secs(30), |m| {
        has_line(m, "READY=1")
    });
    let at_ready = statuses(&home);
    let status = |id: &str| {
        at_ready
            .iter()
            .find(|(m, _)| m == id)
            .map(|(_, s)| s.as_str())
            .unwrap_or("absent")
    };
    assert_eq!(status("quick"), "ready", "at READY=1: {at_ready:?}");
    assert_eq!(status("slow"), "ready", "at READY=1: {at_ready:?}");
    assert_eq!(status("crashy"), "crashed", "at READY=1: {at_ready:?}");
    assert_eq!(status("unapproved"), "blocked", "at READY=1: {at_ready:?}");
    assert_eq!(
        status_of(&ready),
        Some("4 modules: 2 ready, 1 crashed, 1 blocked"),
        "READY=1 carries the counts: {ready:?}"
    );
    // Before READY=1 the counts were reported as they changed (something was still starting).
    let before: Vec<&String> = sock
        .seen
        .iter()
        .filter(|m| !has_line(m, "READY=1"))
        .collect();
    assert!(
        before
            .iter()
            .filter_map(|m| status_of(m))
            .any(|s| s.contains("starting") || s.contains("waiting")),
        "a STATUS= line while booting: {:?}",
        sock.seen
    );
    assert!(
        !sock.seen.iter().any(|m| m.contains("WATCHDOG=1")),
        "no watchdog pings without WATCHDOG_USEC: {:?}",
        sock.seen
    );

    // A module added while the kernel is manual waits for SIGHUP; the reload is announced and
    // READY=1 follows only once the new module is ready.
    home.add(ModuleSpec::new("late").args(&["--ready-delay-ms", "1000"]));
    // Let the watcher's (unapplied) pass go by: only the signal applies in manual mode.
    std::thread::sleep(Duration::from_millis(300));
    let mark = sock.seen.len();
    kernel.signal(libc::SIGHUP);
    let reloading = sock.until("RELOADING=1", Duration::from_secs(10), |m| {
        has_line(m, "RELOADING=1")
    });
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("MONOTONIC_USEC= with RELOADING=1: {reloading:?}"));
    assert!(
        usec.parse::<u64>().is_ok_and(|u| u > 0),
        "MONOTONIC_USEC={usec}"
    );
    assert!(
        !sock.seen[mark..].iter().any(|m| has_line(m, "READY=1")),
        "READY=1 before RELOADING=1: {:?}",
        &sock.seen[mark..]
    );
    let reloaded = sock.until("READY=1 after the reload", Duration::from_secs(20), |m| {
        has_line(m, "READY=1")
    });
    let late = home.module_status("late").map(|m| m["status"].clone());
    assert_eq!(
        late,
        Some(serde_json::json!("ready")),
        "READY=1 after the reload waits for the module the reload spawned"
    );
    assert_eq!(
        status_of(&reloaded),
        Some("5 modules: 3 ready, 1 crashed, 1 blocked"),
        "{reloaded:?}"
    );

    kernel.signal(libc::SIGTERM);
    let stopping = sock.until("STOPPING=1", Duration::from_secs(10), |m| {
        has_line(m, "STOPPING=1")
    });
    assert!(stopping.contains("STATUS="), "{stopping:?}");
    let exit = kernel.wait(Duration::from_secs(30));
    assert!(exit.success(), "kernel exit: {exit}");
}

#[test]
fn watchdog_pings_at_half_the_interval() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("m"));
    let mut sock = NotifySocket::bind();
    let mut kernel = home.start_with(
        &[],
        &[("NOTIFY_SOCKET", &sock.env()), ("WATCHDOG_USEC", "200000")],
    );
    sock.until("READY=1", Duration::from_secs(20), |m| {
        has_line(m, "READY=1")
    });
    let window = Duration::from_millis(1000);
    let pings = sock
        .drain(window)
        .iter()
        .filter(|m| has_line(m, "WATCHDOG=1"))
        .count();
    // Every 100 ms: about 10 in the window; a busy machine may delay some, never double them.
    assert!(
        (4..=12).contains(&pings),
        "{pings} WATCHDOG=1 in {window:?}; received: {:?}",
        sock.seen
    );
    kernel.stop();

    // WATCHDOG_PID naming another process: not for this kernel, no pings.
    let mut sock = NotifySocket::bind();
    let mut kernel = home.start_with(
        &[],
        &[
            ("NOTIFY_SOCKET", &sock.env()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    sock.until("READY=1", Duration::from_secs(20), |m| {
        has_line(m, "READY=1")
    });
    let late = sock.drain(Duration::from_millis(500));
    assert!(
        !late.iter().any(|m| m.contains("WATCHDOG=1")),
        "pings although WATCHDOG_PID names another process: {late:?}"
    );
    kernel.stop();
}
