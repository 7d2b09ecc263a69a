//! The watchdog: one `pons __watchdog` process per kernel, so that no module — nor any of its
//! descendants, in its process group or not — survives a kernel killed with SIGKILL.
//!
//! `PR_SET_PDEATHSIG` kills a module's own process when the kernel dies, but not the processes it
//! started. The watchdog holds the read end of a pipe whose only write end is in the kernel. The
//! kernel writes `+<pgid>\n` when a module's process group starts, `-<pgid>\n` once it is gone,
//! and `bye\n` on a clean shutdown. End of file without `bye` means the kernel died: the watchdog
//! sends SIGKILL to every registered group, then sweeps every process tagged by its kernel (the
//! descendants that left their group with `setsid()` or a double fork, see [`super::tag`]; the
//! kernel is the watchdog's parent, and the sweep's floor is the watchdog's own start, which
//! precedes every module's), and exits. It runs in its own process group (a Ctrl-C on the
//! kernel's terminal does not reach it) and ignores SIGHUP and SIGINT.
//!
//! Writes never block the kernel: the pipe is non-blocking and every message is far below
//! `PIPE_BUF`, so it is written whole or (with a stuck watchdog and a full pipe) dropped.
//! A pgid should be removed only after its whole group is gone: a process group id cannot be
//! reused while any member lives, so a group the watchdog kills is always the module's.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use super::kill;

/// The kernel's handle on its watchdog process.
#[derive(Debug)]
pub struct Watchdog {
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    pid: u32,
}

impl Watchdog {
    /// Starts `pons __watchdog` from the running executable.
    pub fn start() -> io::Result<Watchdog> {
        Watchdog::start_with(Path::new("/proc/self/exe"))
    }

    /// Starts `<exe> __watchdog` (`exe` is the `pons` binary; tests pass its path).
    pub fn start_with(exe: &Path) -> io::Result<Watchdog> {
        let mut child = Command::new(exe)
            .arg0("pons")
            .arg("__watchdog")
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        if let Some(s) = &stdin {
            rustix::io::ioctl_fionbio(s, true)?;
        }
        let pid = child.id();
        Ok(Watchdog {
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            pid,
        })
    }

    /// The watchdog's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Registers a module process group (call right after spawning it).
    pub fn add(&self, pgid: i32) {
        self.send(&format!("+{pgid}\n"));
    }

    /// Unregisters a process group once every process in it is gone.
    pub fn remove(&self, pgid: i32) {
        self.send(&format!("-{pgid}\n"));
    }

    /// Clean shutdown: tells the watchdog to exit without killing anything, and reaps it.
    pub fn disarm(self) {
        self.send("bye\n");
        self.close_and_reap();
    }

    /// Closes the pipe without `bye`, as the kernel's death does (the watchdog then kills every
    /// registered group), and reaps the watchdog. For tests.
    #[doc(hidden)]
    pub fn abandon(self) {
        self.close_and_reap();
    }

    fn close_and_reap(self) {
        let stdin = match self.stdin.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        drop(stdin);
        let mut child = match self.child.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // The watchdog exits on `bye` or end of file, both of which it has now seen.
        let _ = child.wait();
    }

    /// Writes one message; a dead or stuck watchdog (EPIPE, EAGAIN) is ignored.
    fn send(&self, msg: &str) {
        let mut guard = match self.stdin.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(stdin) = guard.as_mut() {
            let _ = stdin.write(msg.as_bytes());
        }
    }
}

/// One parsed line of the kernel → watchdog protocol.
#[derive(Debug, PartialEq, Eq)]
enum Msg {
    Add(i32),
    Remove(i32),
    Bye,
}

fn parse(line: &str) -> Option<Msg> {
    let line = line.trim();
    if line == "bye" {
        return Some(Msg::Bye);
    }
    let (sign, num) = line.split_at_checked(1)?;
    let pgid: i32 = num.parse().ok().filter(|n| *n > 1)?;
    match sign {
        "+" => Some(Msg::Add(pgid)),
        "-" => Some(Msg::Remove(pgid)),
        _ => None,
    }
}

/// Entry point of `pons __watchdog` (see the module docs); never returns.
pub fn watchdog_main() -> ! {
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    // Read before the kernel can die (afterwards the parent is init or a subreaper).
    let kernel = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    let started = super::tag::start_time(std::process::id() as i32).unwrap_or(0);
    let mut groups = BTreeSet::new();
    let stdin = io::stdin();
    let mut lines = stdin.lock();
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => match parse(&line) {
                Some(Msg::Add(g)) => {
                    groups.insert(g);
                }
                Some(Msg::Remove(g)) => {
                    groups.remove(&g);
                }
                Some(Msg::Bye) => std::process::exit(0),
                None => {}
            },
        }
    }
    for g in &groups {
        if let Err(e) = kill::kill_group(*g) {
            eprintln!("pons watchdog: could not kill module process group {g}: {e}");
        }
    }
    if kernel > 1 {
        let swept = super::tag::sweep(
            super::tag::Scope::Kernel(kernel),
            started,
            std::time::Duration::from_secs(5),
        );
        if !swept.survivors.is_empty() {
            eprintln!(
                "pons watchdog: module descendants {:?} still alive 5 s after SIGKILL",
                swept.survivors
            );
        }
    }
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_protocol() {
        assert_eq!(parse("+123\n"), Some(Msg::Add(123)));
        assert_eq!(parse("-45"), Some(Msg::Remove(45)));
        assert_eq!(parse("bye\n"), Some(Msg::Bye));
        for bad in [
            "",
            "+",
            "+1",
            "+0",
            "+-5",
            "*5",
            "+x",
            "byebye",
            "+99999999999",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
