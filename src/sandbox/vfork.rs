//! Starting a module's process without copying the kernel: `clone(CLONE_VM | CLONE_VFORK)`, as
//! glibc's `posix_spawn` does, then [`Prepared::exec_in_child`].
//!
//! A plain `fork` of the kernel copies its page tables and write-protects every page it wrote, so
//! the kernel then takes a fault on its next write to each; with 100 modules that was most of the
//! kernel's time at boot. Here the child shares the kernel's memory until it `exec`s, and the
//! thread that spawns it is suspended until then (`CLONE_VFORK`), so:
//! - the child runs on a stack of its own ([`Stack`]) and writes nothing but that stack (the
//!   arguments it reads belong to the suspended thread's frame);
//! - every signal is blocked in the spawning thread around the `clone`, and the child sets every
//!   handled signal back to its default before it unblocks them, so no handler of the kernel ever
//!   runs in the child (a handler would share the kernel's memory);
//! - its file descriptor table, working directory, credentials and limits are its own (no
//!   `CLONE_FILES`, `CLONE_FS`, `CLONE_THREAD`);
//! - `CLONE_PIDFD` hands the kernel a descriptor of the child (Linux ≥ 5.2), which it waits on.
//!
//! Steps of the child before [`Prepared::exec_in_child`]: its standard streams (`dup2`), its own
//! process group (`setpgid(0, 0)`), signal handlers reset (and `SIGPIPE`, which the Rust runtime
//! ignores, back to its default), the signal mask emptied.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::prepared::Prepared;

/// What one of the child's standard streams is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// A new pipe; the kernel keeps the other end.
    Piped,
    /// `/dev/null`.
    Null,
    /// The kernel's own.
    Inherit,
}

/// A started process: its pid, a pidfd where Linux has them, and the kernel's ends of the piped
/// standard streams.
#[derive(Debug)]
pub struct Raw {
    pub pid: u32,
    pub pidfd: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// The child's stack: anonymous memory with a guard page below it, unmapped when dropped. Each
/// thread that spawns keeps one for its later spawns (only one child at a time uses it: the
/// thread is suspended while it does).
struct Stack {
    base: *mut c_void,
    len: usize,
}

/// Large enough for the child's few frames (a few hundred bytes each) and libc's wrappers.
const STACK_BYTES: usize = 128 * 1024;

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: sysconf reads a constant of the system.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = STACK_BYTES + page;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // The lowest page is the guard: an overflow faults instead of writing below the stack.
        // SAFETY: `base` is the start of the mapping made above, `page` bytes of it.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer (the stack grows down; 16-byte aligned).
    fn top(&self) -> *mut c_void {
        let end = self.base as usize + self.len;
        (end & !15) as *mut c_void
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, no longer used (the child has
        // exec'd or exited when `clone` returns).
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// What the child reads: the suspended parent's frame holds it.
struct ChildArgs<'a> {
    prepared: &'a Prepared,
    /// The descriptors to install as 0, 1 and 2 (-1: keep the kernel's).
    stdio: [RawFd; 3],
}

/// The child's entry point (on [`Stack`], sharing the kernel's memory). Never returns.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` points to the `ChildArgs` of `spawn`, whose frame is suspended until this
    // process execs or exits.
    let args = unsafe { &*(arg as *const ChildArgs<'_>) };
    let program: &[u8] = &args.prepared.program_text;
    for (target, &fd) in args.stdio.iter().enumerate() {
        if fd < 0 {
            continue;
        }
        let target = target as c_int;
        // SAFETY: descriptor calls on this process's own table.
        let ok = unsafe {
            if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd, target) == target
            }
        };
        if !ok {
            super::child::fail_errno(
                super::child::EXIT_CANNOT_EXEC,
                &[b"cannot set up the standard streams of `", program, b"`"],
            );
        }
    }
    // SAFETY: setpgid on this process.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        super::child::fail_errno(
            super::child::EXIT_CANNOT_EXEC,
            &[b"cannot give `", program, b"` a process group of its own"],
        );
    }
    reset_signals();
    args.prepared.exec_in_child()
}

/// Every signal with a handler back to its default, `SIGPIPE` too, then an empty mask.
fn reset_signals() {
    // SAFETY: sigaction and sigprocmask on this process, with structures on this stack. The
    // signals glibc reserves for itself (32, 33) are refused by its wrapper and only ever sent
    // to the kernel's own threads.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        // 64: the last signal number of Linux (`_NSIG - 1`).
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let handled = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            if handled || sig == libc::SIGPIPE {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// The child's end and the kernel's end of one standard stream.
fn stream(which: usize, how: Stdio) -> io::Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    match how {
        Stdio::Inherit => Ok((None, None)),
        Stdio::Null => {
            let null = rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?;
            Ok((Some(null), None))
        }
        Stdio::Piped => {
            let mut fds = [-1 as c_int; 2];
            // SAFETY: pipe2 writes two new descriptors into `fds`, owned right below.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: both are new descriptors nothing else owns.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            Ok(if which == 0 {
                (Some(read), Some(write))
            } else {
                (Some(write), Some(read))
            })
        }
    }
}

/// Starts a process that runs `prepared` with the given standard streams (see the module docs).
/// Failures of the child's own steps are no error here: the child reports them on its stderr and
/// exits (126, 127, or 1).
pub fn spawn(prepared: &Prepared, stdio: [Stdio; 3]) -> io::Result<Raw> {
    let mut child_ends: [Option<OwnedFd>; 3] = [None, None, None];
    let mut ours: [Option<OwnedFd>; 3] = [None, None, None];
    for (i, how) in stdio.into_iter().enumerate() {
        let (child, kernel) = stream(i, how)?;
        child_ends[i] = child;
        ours[i] = kernel;
    }
    // One stack per spawning thread, kept: the child is done with it when `clone` returns.
    thread_local! {
        static STACK: std::cell::RefCell<Option<Stack>> = const { std::cell::RefCell::new(None) };
    }
    STACK.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Stack::new()?);
        }
        match slot.as_ref() {
            Some(stack) => spawn_on(stack, prepared, child_ends, ours),
            None => Err(io::Error::other("no stack for the child")),
        }
    })
}

fn spawn_on(
    stack: &Stack,
    prepared: &Prepared,
    child_ends: [Option<OwnedFd>; 3],
    ours: [Option<OwnedFd>; 3],
) -> io::Result<Raw> {
    let args = ChildArgs {
        prepared,
        stdio: [0, 1, 2].map(|i: usize| child_ends[i].as_ref().map_or(-1, |fd| fd.as_raw_fd())),
    };

    // SAFETY: sigset and mask calls on this thread, restored below.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let clone = |flags: c_int, pidfd: &mut c_int| {
        // SAFETY: `child_main` runs on `stack` and only reads `args`, which outlive the call:
        // CLONE_VFORK suspends this thread until the child execs or exits.
        unsafe {
            libc::clone(
                child_main,
                stack.top(),
                flags,
                &args as *const ChildArgs<'_> as *mut c_void,
                pidfd as *mut c_int,
                std::ptr::null_mut::<c_void>(),
                std::ptr::null_mut::<c_void>(),
            )
        }
    };
    let base = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    let mut pidfd: c_int = -1;
    let mut pid = clone(base | libc::CLONE_PIDFD, &mut pidfd);
    let mut err = io::Error::last_os_error();
    if pid < 0 && err.raw_os_error() == Some(libc::EINVAL) {
        // Linux < 5.2: no pidfd; the kernel waits for SIGCHLD instead.
        pidfd = -1;
        pid = clone(base, &mut pidfd);
        err = io::Error::last_os_error();
    }
    // SAFETY: restores this thread's mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    drop(child_ends);
    if pid < 0 {
        return Err(err);
    }
    let [stdin, stdout, stderr] = ours;
    Ok(Raw {
        pid: pid as u32,
        // SAFETY: with CLONE_PIDFD, Linux stored a new descriptor (close-on-exec) there.
        pidfd: (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) }),
        stdin,
        stdout,
        stderr,
    })
}
