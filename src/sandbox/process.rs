//! Module processes as the kernel handles them: [`ModuleCommand`] (what to start, and how its
//! standard streams are connected), [`ModuleChild`] (a started process on the tokio runtime: its
//! pid, piped streams, exit, kill) and [`Spawned`] (the same without a runtime, for tests and
//! tools).
//!
//! A `ModuleCommand` prepares everything when it spawns ([`Prepared`], or ahead with
//! [`ModuleCommand::prepare`]) and drops it right after, so the module's Landlock ruleset
//! descriptor lives only until the spawn. The exit of a
//! `ModuleChild` is awaited on its pidfd (Linux ≥ 5.2), else on `SIGCHLD`; the kernel reaps only
//! its own module processes, by pid.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Output};

use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;

use super::clone_vm::{self, Raw, Stdio};
use super::prepared::Prepared;
use super::spec::ExecSpec;

/// A module process to start (see the module docs).
#[derive(Debug, Clone)]
pub struct ModuleCommand {
    spec: ExecSpec,
    stdio: [Stdio; 3],
    kill_on_drop: bool,
}

impl ModuleCommand {
    /// Starts `spec` with its standard streams piped.
    pub fn new(spec: ExecSpec) -> ModuleCommand {
        ModuleCommand {
            spec,
            stdio: [Stdio::Piped; 3],
            kill_on_drop: false,
        }
    }

    pub fn stdin(&mut self, how: Stdio) -> &mut Self {
        self.stdio[0] = how;
        self
    }

    pub fn stdout(&mut self, how: Stdio) -> &mut Self {
        self.stdio[1] = how;
        self
    }

    pub fn stderr(&mut self, how: Stdio) -> &mut Self {
        self.stdio[2] = how;
        self
    }

    /// SIGKILL to the process when its [`ModuleChild`] is dropped before it was reaped.
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Self {
        self.kill_on_drop = kill;
        self
    }

    /// What will be started.
    pub fn spec(&self) -> &ExecSpec {
        &self.spec
    }

    /// Starts the process without a runtime.
    pub fn spawn_raw(&self) -> io::Result<Spawned> {
        let prepared = Prepared::new(&self.spec);
        let raw = clone_vm::spawn(prepared, self.stdio)?;
        Ok(Spawned { raw, status: None })
    }

    /// Starts the process on the current tokio runtime. Call it from a runtime worker thread,
    /// never from a `spawn_blocking` thread: the module's parent-death signal fires when the
    /// spawning thread exits.
    pub fn spawn(&mut self) -> io::Result<ModuleChild> {
        let spawned = self.spawn_raw()?;
        ModuleChild::new(spawned, self.kill_on_drop)
    }

    /// What [`ModuleCommand::spawn_prepared`] needs, computed ahead (the Landlock ruleset, the
    /// program's support, the strings): a spawn that must wait for its turn does this part
    /// first, while the spawns before it run.
    pub fn prepare(&self) -> Prepared {
        Prepared::new(&self.spec)
    }

    /// [`ModuleCommand::spawn`] with what [`ModuleCommand::prepare`] computed.
    pub fn spawn_prepared(&mut self, prepared: Prepared) -> io::Result<ModuleChild> {
        let raw = clone_vm::spawn(prepared, self.stdio)?;
        ModuleChild::new(Spawned { raw, status: None }, self.kill_on_drop)
    }

    /// Starts the process, reads its output to the end and waits for it (no runtime needed).
    pub fn output(&self) -> io::Result<Output> {
        self.spawn_raw()?.wait_with_output()
    }

    /// Starts the process and waits for it (no runtime needed).
    pub fn status(&self) -> io::Result<ExitStatus> {
        self.spawn_raw()?.wait()
    }
}

/// `waitpid(pid)`: the status once it exited (`None` while it runs with `nohang`).
fn reap(pid: u32, nohang: bool) -> io::Result<Option<ExitStatus>> {
    let mut status: libc::c_int = 0;
    loop {
        let flags = if nohang { libc::WNOHANG } else { 0 };
        // SAFETY: waitpid on one of this process's children, writing `status`.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
        if r == pid as libc::pid_t {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// SIGKILL to a process that was not reaped yet (through its pidfd where there is one).
fn kill(raw: &Raw) -> io::Result<()> {
    match &raw.pidfd {
        Some(fd) => rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL)
            .map_err(io::Error::from),
        None => {
            let pid = rustix::process::Pid::from_raw(raw.pid as i32)
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
            rustix::process::kill_process(pid, rustix::process::Signal::KILL)
                .map_err(io::Error::from)
        }
    }
}

/// A started process, without a runtime: blocking waits. Dropping it neither kills nor reaps it.
#[derive(Debug)]
pub struct Spawned {
    raw: Raw,
    status: Option<ExitStatus>,
}

impl Spawned {
    pub fn id(&self) -> u32 {
        self.raw.pid
    }

    /// The kernel's end of the piped stdin, stdout or stderr.
    pub fn take_stdin(&mut self) -> Option<OwnedFd> {
        self.raw.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<OwnedFd> {
        self.raw.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<OwnedFd> {
        self.raw.stderr.take()
    }

    /// Waits for the process to exit (stdin, if piped, is closed first).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.raw.stdin.take());
        if let Some(st) = self.status {
            return Ok(st);
        }
        let st = reap(self.raw.pid, false)?.ok_or_else(|| io::Error::other("still running"))?;
        self.status = Some(st);
        Ok(st)
    }

    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        kill(&self.raw)
    }

    /// Closes stdin, reads stdout and stderr to their end and waits for the process.
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        use std::io::Read;
        drop(self.raw.stdin.take());
        let read_all = |fd: Option<OwnedFd>| -> io::Result<Vec<u8>> {
            let mut out = Vec::new();
            if let Some(fd) = fd {
                std::fs::File::from(fd).read_to_end(&mut out)?;
            }
            Ok(out)
        };
        let stderr = self.raw.stderr.take();
        let reader = std::thread::spawn(move || read_all(stderr));
        let stdout = read_all(self.raw.stdout.take())?;
        let stderr = reader
            .join()
            .map_err(|_| io::Error::other("stderr reader panicked"))??;
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// A started module process on the tokio runtime. Its exit is awaited with [`ModuleChild::wait`]
/// (cancel-safe); dropped before that, it is killed if asked ([`ModuleCommand::kill_on_drop`])
/// and reaped in the background.
#[derive(Debug)]
pub struct ModuleChild {
    raw: Raw,
    /// The pidfd, registered with the runtime (readable once the process exited).
    exit: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
    kill_on_drop: bool,
    pub stdin: Option<tokio::process::ChildStdin>,
    pub stdout: Option<tokio::process::ChildStdout>,
    pub stderr: Option<tokio::process::ChildStderr>,
}

impl ModuleChild {
    fn new(spawned: Spawned, kill_on_drop: bool) -> io::Result<ModuleChild> {
        let mut raw = spawned.raw;
        let mut child = ModuleChild {
            exit: None,
            status: None,
            kill_on_drop,
            stdin: None,
            stdout: None,
            stderr: None,
            raw: Raw {
                pid: raw.pid,
                pidfd: None,
                stdin: None,
                stdout: None,
                stderr: None,
            },
        };
        // From here on `child` owns the process: an error below kills and reaps it (Drop).
        child.kill_on_drop = true;
        if let Some(fd) = raw.pidfd.take() {
            // SAFETY: an `OwnedFd` stays open and names the same descriptor while it is owned.
            let exit =
                unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? };
            child.exit = Some(exit);
        }
        if let Some(fd) = raw.stdin.take() {
            child.stdin = Some(tokio::process::ChildStdin::from_std(fd.into())?);
        }
        if let Some(fd) = raw.stdout.take() {
            child.stdout = Some(tokio::process::ChildStdout::from_std(fd.into())?);
        }
        if let Some(fd) = raw.stderr.take() {
            child.stderr = Some(tokio::process::ChildStderr::from_std(fd.into())?);
        }
        child.kill_on_drop = kill_on_drop;
        Ok(child)
    }

    /// The pid while the process was not reaped (as tokio's `Child::id`).
    pub fn id(&self) -> Option<u32> {
        self.status.is_none().then_some(self.raw.pid)
    }

    /// SIGKILL, unless it was reaped already.
    pub fn start_kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        match &self.exit {
            Some(fd) => {
                rustix::process::pidfd_send_signal(fd.get_ref(), rustix::process::Signal::KILL)
                    .map_err(io::Error::from)
            }
            None => kill(&self.raw),
        }
    }

    /// Waits for the process to exit and reaps it. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(st) = self.status {
            return Ok(st);
        }
        let pid = self.raw.pid;
        let st = match &self.exit {
            Some(fd) => loop {
                let mut ready = fd.readable().await?;
                if let Some(st) = reap(pid, true)? {
                    break st;
                }
                ready.clear_ready();
            },
            None => {
                // Linux < 5.2: every SIGCHLD is a chance that it exited.
                let mut sigchld =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
                loop {
                    if let Some(st) = reap(pid, true)? {
                        break st;
                    }
                    sigchld.recv().await;
                }
            }
        };
        self.status = Some(st);
        Ok(st)
    }

    /// Closes stdin, reads stdout and stderr to their end and waits for the process.
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        let read_out = async {
            if let Some(mut s) = stdout {
                s.read_to_end(&mut out).await?;
            }
            io::Result::Ok(())
        };
        let read_err = async {
            if let Some(mut s) = stderr {
                s.read_to_end(&mut err).await?;
            }
            io::Result::Ok(())
        };
        let (a, b) = tokio::join!(read_out, read_err);
        a?;
        b?;
        let status = self.wait().await?;
        Ok(Output {
            status,
            stdout: out,
            stderr: err,
        })
    }
}

impl Drop for ModuleChild {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if self.kill_on_drop {
            let _ = self.start_kill();
        }
        if let Ok(Some(_)) = reap(self.raw.pid, true) {
            return;
        }
        // Still running (or killed, not yet gone): reap it when it exits, so no zombie is left.
        let pid = self.raw.pid;
        let exit = self.exit.take();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(fd) = exit {
                    let _ = fd.readable().await;
                    let _ = reap(pid, false);
                } else if let Ok(mut sigchld) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
                {
                    while let Ok(None) = reap(pid, true) {
                        sigchld.recv().await;
                    }
                }
            });
        }
    }
}
