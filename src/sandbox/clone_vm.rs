//! Starting a module's process without copying the kernel: `clone(CLONE_VM)`, then
//! [`Prepared::exec_in_child`].
//!
//! A plain `fork` of the kernel copies its page tables and write-protects every page it wrote, so
//! the kernel then takes a fault on its next write to each; with 100 modules that was most of the
//! kernel's time at boot. Here the child shares the kernel's memory until it `exec`s. Unlike
//! `posix_spawn`'s `CLONE_VFORK`, the thread that starts it does not wait for that: it goes on to
//! the next module while this one confines itself and `exec`s (with 100 modules, the child's
//! steps and the `exec` — which closes each of the kernel's descriptors in the child's copy of
//! the table — were most of the time a spawning thread was stopped). So:
//! - the child runs on a stack of its own and reads only what its [`Slot`] owns (the
//!   [`Prepared`], the descriptors to install); it writes nothing but that stack;
//! - a slot is reused only once Linux has cleared its `busy` word: with `CLONE_CHILD_CLEARTID` it
//!   writes 0 there (and wakes futex waiters) when the child execs or exits, the instant the
//!   child stops using the kernel's memory; at most [`SLOTS`] children are in that state at once;
//! - the child makes its system calls without libc ([`super::sys`]): libc's wrappers write
//!   `errno`, which belongs to the thread that started the child and is in use again;
//! - every signal is blocked in the spawning thread around the `clone`, and the child sets every
//!   handled signal back to its default before it unblocks them, so no handler of the kernel ever
//!   runs in the child (a handler would share the kernel's memory);
//! - its file descriptor table, working directory, credentials, signal handlers and limits are its
//!   own (no `CLONE_FILES`, `CLONE_FS`, `CLONE_SIGHAND`, `CLONE_THREAD`);
//! - `CLONE_PIDFD` hands the kernel a descriptor of the child (Linux ≥ 5.2), which it waits on;
//! - the kernel also puts the child in its own process group (`setpgid(pid, pid)`, as the child
//!   does itself), so the group exists when [`spawn`] returns.
//!
//! Where the child's calls cannot avoid libc ([`super::sys::ERRNO_FREE`]), the spawning thread
//! waits for the `exec` as `posix_spawn` does (`CLONE_VFORK`).
//!
//! Steps of the child before [`Prepared::exec_in_child`]: its standard streams (`dup3`), its own
//! process group (`setpgid(0, 0)`), signal handlers reset (and `SIGPIPE`, which the Rust runtime
//! ignores, back to its default), the signal mask emptied.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use super::prepared::Prepared;
use super::sys;

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

/// The child's stack: anonymous memory with a guard page below it, unmapped when dropped (never,
/// in practice: slots are kept for later spawns).
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

/// What the child reads.
struct ChildArgs {
    prepared: *const Prepared,
    /// The descriptors to install as 0, 1 and 2 (-1: keep the kernel's).
    stdio: [RawFd; 3],
}

/// Where one child lives until it execs: its stack, what it reads, and the word that says
/// whether it still does.
struct Slot {
    stack: Stack,
    /// Non-zero from just before `clone` until Linux clears it (`CLONE_CHILD_CLEARTID`): the
    /// child exec'd or exited and uses nothing of the slot any more.
    busy: AtomicU32,
    /// The last child's [`Prepared`], kept while it may read it, dropped when the slot is
    /// taken again.
    prepared: Option<Prepared>,
    args: ChildArgs,
}

// SAFETY: the raw pointers point into the same slot (its `prepared`) or are null; the pool's
// mutex orders every access by the kernel, and a child only reads while `busy`.
unsafe impl Send for Slot {}

/// The most children preparing their `exec` at once; one more spawn waits for a slot.
const SLOTS: usize = 4;

/// The slots, in place for the life of the process (a child sees its slot where it was).
static POOL: Mutex<[Option<Slot>; SLOTS]> = Mutex::new([const { None }; SLOTS]);

/// A slot no child uses: a free one, a new one, or the first to be freed.
fn free_slot(pool: &mut [Option<Slot>; SLOTS]) -> io::Result<&mut Slot> {
    loop {
        let free = pool.iter().position(|s| match s {
            Some(s) => s.busy.load(Ordering::Acquire) == 0,
            None => true,
        });
        if let Some(i) = free {
            if pool[i].is_none() {
                pool[i] = Some(Slot {
                    stack: Stack::new()?,
                    busy: AtomicU32::new(0),
                    prepared: None,
                    args: ChildArgs {
                        prepared: std::ptr::null(),
                        stdio: [-1; 3],
                    },
                });
            }
            return pool[i]
                .as_mut()
                .ok_or_else(|| io::Error::other("no slot for the child"));
        }
        // Every slot's child is between its start and its exec (well under a millisecond):
        // wait for the first, briefly, and look again.
        let tick = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        if let Some(first) = &pool[0] {
            let _ = rustix::thread::futex::wait(
                &first.busy,
                rustix::thread::futex::Flags::empty(),
                1,
                Some(&tick),
            );
        }
    }
}

/// The child's entry point (on its slot's stack, sharing the kernel's memory). Never returns.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` points to the `ChildArgs` of a slot that stays as it is while `busy`, which
    // Linux clears only once this process execs or exits; `prepared` points into the same slot.
    let (args, prepared) = unsafe {
        let args = &*(arg as *const ChildArgs);
        (args, &*args.prepared)
    };
    let program: &[u8] = &prepared.program_text;
    for (target, &fd) in args.stdio.iter().enumerate() {
        if fd < 0 {
            continue;
        }
        let target = target as c_int;
        let done = if fd == target {
            sys::keep_on_exec(fd)
        } else {
            sys::dup_to(fd, target)
        };
        if let Err(e) = done {
            super::child::fail(
                super::child::EXIT_CANNOT_EXEC,
                &[b"cannot set up the standard streams of `", program, b"`"],
                e,
            );
        }
    }
    if let Err(e) = sys::own_process_group() {
        super::child::fail(
            super::child::EXIT_CANNOT_EXEC,
            &[b"cannot give `", program, b"` a process group of its own"],
            e,
        );
    }
    reset_signals();
    prepared.exec_in_child()
}

/// Every signal with a handler back to its default, `SIGPIPE` too, then an empty mask.
fn reset_signals() {
    // 64: the last signal number of Linux (`_NSIG - 1`).
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let Ok(handler) = sys::handler_of(sig) else {
            continue;
        };
        let handled = handler != libc::SIG_DFL && handler != libc::SIG_IGN;
        if handled || sig == libc::SIGPIPE {
            let _ = sys::default_action(sig);
        }
    }
    let _ = sys::unblock_all_signals();
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
pub fn spawn(prepared: Prepared, stdio: [Stdio; 3]) -> io::Result<Raw> {
    let mut child_ends: [Option<OwnedFd>; 3] = [None, None, None];
    let mut ours: [Option<OwnedFd>; 3] = [None, None, None];
    for (i, how) in stdio.into_iter().enumerate() {
        let (child, kernel) = stream(i, how)?;
        child_ends[i] = child;
        ours[i] = kernel;
    }
    let stdio = [0, 1, 2].map(|i: usize| child_ends[i].as_ref().map_or(-1, |fd| fd.as_raw_fd()));
    let mut prepared = prepared;
    // Closed once the child has its copy (right after `clone`).
    let ruleset = prepared.ruleset.take();
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let slot = free_slot(&mut pool)?;
    // The previous child of this slot is done with it: its `Prepared` goes (after the lock).
    let previous = slot.prepared.replace(prepared);
    slot.args = ChildArgs {
        prepared: slot
            .prepared
            .as_ref()
            .map_or(std::ptr::null(), |p| p as *const Prepared),
        stdio,
    };
    slot.busy.store(1, Ordering::Release);
    let started = start(slot);
    if started.is_err() {
        // No child: nothing uses the slot.
        slot.busy.store(0, Ordering::Release);
    }
    drop(pool);
    drop(previous);
    drop(ruleset);
    drop(child_ends);
    let (pid, pidfd) = started?;
    // SAFETY: setpgid on our own child; fails harmlessly (EACCES) once it has exec'd, by which
    // time it made the group itself.
    unsafe {
        libc::setpgid(pid, pid);
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

/// The `clone` of the child of `slot` (marked busy): its pid and pidfd (-1 without one).
fn start(slot: &Slot) -> io::Result<(libc::pid_t, c_int)> {
    // SAFETY: sigset and mask calls on this thread, restored below.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let clone = |flags: c_int, pidfd: &mut c_int| {
        // SAFETY: `child_main` runs on the slot's stack and only reads the slot's `args` and
        // `prepared`, which stay as they are until Linux clears `busy` (CLONE_CHILD_CLEARTID),
        // the moment the child no longer uses this memory.
        unsafe {
            libc::clone(
                child_main,
                slot.stack.top(),
                flags,
                &slot.args as *const ChildArgs as *mut c_void,
                pidfd as *mut c_int,
                std::ptr::null_mut::<c_void>(),
                slot.busy.as_ptr() as *mut c_void,
            )
        }
    };
    let wait = if sys::ERRNO_FREE {
        0
    } else {
        libc::CLONE_VFORK
    };
    let base = libc::CLONE_VM | libc::CLONE_CHILD_CLEARTID | wait | libc::SIGCHLD;
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
    if pid < 0 {
        return Err(err);
    }
    Ok((pid, pidfd))
}
