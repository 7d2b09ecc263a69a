//! The watchdog: one process per kernel, so that no module — nor any of its descendants, in its
//! process group or not — survives a kernel killed with SIGKILL.
//!
//! The kernel forks it first thing, while it still has a single thread
//! ([`Watchdog::fork_early`]); the copy runs only system calls and a few lines of parsing, so
//! its resident set stays small (measured: 1.x MiB, against 5 MiB for a second start of the
//! pons executable, `pons __watchdog`, which is still the way when the kernel already has
//! threads, and for tests).
//!
//! `PR_SET_PDEATHSIG` kills a module's own process when the kernel dies, but not the processes it
//! started. The watchdog holds the read end of a pipe whose only write end is in the kernel. The
//! kernel writes `+<pgid>\n` when a module's process group starts, `-<pgid>\n` once it is gone,
//! and `bye\n` on a clean shutdown. End of file without `bye` means the kernel died: the watchdog
//! sends SIGKILL to every registered group, then sweeps every process tagged by its kernel (the
//! descendants that left their group with `setsid()` or a double fork, see [`super::tag`]; the
//! kernel is the watchdog's parent, and the sweep's floor is the kernel's start for a forked
//! watchdog, its own for `pons __watchdog`: either precedes every module's), and exits. It runs in its own process group (a Ctrl-C on the
//! kernel's terminal does not reach it) and ignores SIGHUP and SIGINT.
//!
//! Writes never block the kernel: the pipe is non-blocking and every message is far below
//! `PIPE_BUF`, so it is written whole or (with a stuck watchdog and a full pipe) dropped.
//! A pgid should be removed only after its whole group is gone: a process group id cannot be
//! reused while any member lives, so a group the watchdog kills is always the module's.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::kill;

/// The kernel's handle on its watchdog process.
#[derive(Debug)]
pub struct Watchdog {
    /// The write end of the pipe the watchdog reads (non-blocking).
    pipe: Mutex<Option<File>>,
    pid: u32,
}

/// The watchdog [`Watchdog::fork_early`] made, until [`Watchdog::start`] takes it.
static FORKED: Mutex<Option<Watchdog>> = Mutex::new(None);

impl Watchdog {
    /// The watchdog forked at start-up ([`Watchdog::fork_early`]), else `pons __watchdog` started
    /// from the running executable.
    pub fn start() -> io::Result<Watchdog> {
        let forked = match FORKED.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        match forked {
            Some(w) => Ok(w),
            None => Watchdog::start_with(Path::new("/proc/self/exe")),
        }
    }

    /// Forks the watchdog now, for [`Watchdog::start`] to hand out, if this process has a single
    /// thread (the kernel calls it before logging and the runtime start theirs); otherwise does
    /// nothing and `start` runs `pons __watchdog`. The child is what `pons __watchdog` would be:
    /// its own process group, in `/`, the pipe as stdin, stdout on `/dev/null`, stderr shared.
    pub fn fork_early() -> io::Result<()> {
        if std::fs::read_dir("/proc/self/task")?.count() != 1 {
            return Ok(());
        }
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Every module process starts after the kernel: the sweep's floor.
        let floor = super::tag::start_time(std::process::id() as i32).unwrap_or(0);
        // SAFETY: the process has one thread, so the child is a complete copy of it and may run
        // any code (no lock can be held by a thread that does not exist in the child).
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                drop(write);
                forked_main(read, floor)
            }
            pid => {
                drop(read);
                rustix::io::ioctl_fionbio(&write, true)?;
                let w = Watchdog {
                    pipe: Mutex::new(Some(File::from(write))),
                    pid: pid as u32,
                };
                match FORKED.lock() {
                    Ok(mut g) => *g = Some(w),
                    Err(p) => *p.into_inner() = Some(w),
                }
                Ok(())
            }
        }
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
        let pipe = child.stdin.take().map(|s| File::from(OwnedFd::from(s)));
        if let Some(s) = &pipe {
            rustix::io::ioctl_fionbio(s, true)?;
        }
        // Reaped by pid ([`Watchdog::disarm`]); dropping the `Child` leaves the process alone.
        Ok(Watchdog {
            pipe: Mutex::new(pipe),
            pid: child.id(),
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
        let pipe = match self.pipe.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        drop(pipe);
        // The watchdog exits on `bye` or end of file, both of which it has now seen.
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
    }

    /// Writes one message; a dead or stuck watchdog (EPIPE, EAGAIN) is ignored.
    fn send(&self, msg: &str) {
        let mut guard = match self.pipe.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(pipe) = guard.as_mut() {
            let _ = pipe.write(msg.as_bytes());
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
    // Every module process starts after this one.
    let floor = super::tag::start_time(std::process::id() as i32).unwrap_or(0);
    std::process::exit(watch(0, floor))
}

/// The child of [`Watchdog::fork_early`]: set up as `pons __watchdog` would be, then the same
/// loop; never returns (and runs nothing of the kernel's on the way out). It sticks to system
/// calls: every page of code it runs stays in its resident set.
fn forked_main(pipe: OwnedFd, floor: u64) -> ! {
    // SAFETY: plain system calls on this process's own state and descriptors (single-threaded).
    unsafe {
        libc::setpgid(0, 0);
        libc::chdir(c"/".as_ptr());
        libc::dup2(pipe.as_raw_fd(), 0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
    drop(pipe);
    let code = watch(0, floor);
    // SAFETY: `_exit` ends the process at once; nothing of the kernel's must run in this copy.
    unsafe { libc::_exit(code) }
}

/// The watchdog's loop (see the module docs) on the kernel's pipe `fd`; `floor` is the start time
/// no module process precedes (the sweep's floor). Returns the exit code.
fn watch(fd: i32, floor: u64) -> i32 {
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    // Read before the kernel can die (afterwards the parent is init or a subreaper).
    // SAFETY: getppid cannot fail.
    let kernel = unsafe { libc::getppid() };
    let mut groups: Vec<i32> = Vec::new();
    let mut buf = [0u8; 4096];
    // The current line; one longer than any message is skipped up to its end.
    let mut line = [0u8; 32];
    let (mut len, mut skipping) = (0, false);
    loop {
        // SAFETY: reads into a buffer of the length given.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        let Ok(n @ 1..) = usize::try_from(n) else {
            break;
        };
        for &b in &buf[..n] {
            if b != b'\n' {
                match line.get_mut(len) {
                    Some(slot) if !skipping => {
                        *slot = b;
                        len += 1;
                    }
                    _ => skipping = true,
                }
                continue;
            }
            let msg = (!skipping)
                .then(|| std::str::from_utf8(&line[..len]).ok())
                .flatten()
                .and_then(parse);
            (len, skipping) = (0, false);
            match msg {
                Some(Msg::Add(g)) => groups.push(g),
                Some(Msg::Remove(g)) => {
                    if let Some(i) = groups.iter().position(|x| *x == g) {
                        groups.swap_remove(i);
                    }
                }
                Some(Msg::Bye) => return 0,
                None => {}
            }
        }
    }
    for g in &groups {
        if let Err(e) = kill::kill_group(*g) {
            eprintln!("pons watchdog: could not kill module process group {g}: {e}");
        }
    }
    if kernel > 1 {
        let swept = super::tag::sweep(
            super::tag::Scope::Kernel(kernel as u32),
            floor,
            std::time::Duration::from_secs(5),
        );
        if !swept.survivors.is_empty() {
            eprintln!(
                "pons watchdog: module descendants {:?} still alive 5 s after SIGKILL",
                swept.survivors
            );
        }
    }
    0
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
