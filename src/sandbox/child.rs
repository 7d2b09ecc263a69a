//! The code a module's process runs between its start ([`super::clone_vm`]) and `exec`: it confines
//! itself from a [`Prepared`] and `execve`s the module.
//!
//! It runs in the kernel's memory, while the kernel's other threads go on (one of them may hold
//! any lock, the allocator's among them, and the thread that started it is one of them): only
//! system calls here, made without libc ([`super::sys`], `rustix`) so that no `errno` is written —
//! no allocation, no lock, no `std::io` printing, no write to memory but its own stack. Every
//! value and message text was prepared before.
//!
//! Steps, in order (any failure writes one `pons sandbox: …` line on stderr and exits):
//! 1. a program that is no absolute path: exit 127;
//! 2. `PR_SET_PDEATHSIG(SIGKILL)`, then check that the parent is still the kernel (`getppid()` ==
//!    `kernel_pid`, else exit 1: the kernel died before the signal was armed). The death signal
//!    fires when the parent *thread* exits; the kernel spawns from long-lived tokio worker threads,
//!    so it must never spawn modules from `spawn_blocking` threads, which exit when idle;
//! 3. `PR_SET_NO_NEW_PRIVS`;
//! 4. `chdir` to the module's working directory;
//! 5. Landlock: the notes about policy paths that do not exist, then `landlock_restrict_self`
//!    with the ruleset the kernel built ([`super::ruleset`]; with `"sandbox": "required"` and no
//!    Landlock: exit 126; without Landlock otherwise a note);
//! 6. rlimits ([`super::prepared::Rlimits`]), and the module's tag ([`super::tag`]:
//!    `RLIMIT_LOCKS`, which every descendant inherits; a note when it cannot be set);
//! 7. every capability dropped ([`super::caps`]), last, once nothing left needs one;
//! 8. every descriptor above 2 marked close-on-exec (the ruleset's among them);
//! 9. `execve(program, args, env)` with exactly the spec's environment (exit 127 when the program
//!    does not exist, 126 when it cannot be executed).
//!
//! Exit codes: 126 for a failure to set up the sandbox or to execute the program, 127 when the
//! program does not exist, 1 when the kernel died before the module could start.

use rustix::io::Errno;
use rustix::process::{Resource, Rlimit, Signal};

use super::prepared::{LandlockStep, Prepared};
use super::sys;

/// Exit code for a failure to set up the sandbox or to execute the program.
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// Exit code when the program does not exist.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code when the kernel died before the module could start.
pub const EXIT_ORPHANED: i32 = 1;

const PREFIX: &[u8] = b"pons sandbox: ";

/// Writes `parts` as one line to stderr (one `writev`; best effort).
fn say(parts: &[&[u8]]) {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 12];
    let n = parts.len().min(iov.len());
    for (slot, part) in iov.iter_mut().zip(&parts[..n]) {
        slot.iov_base = part.as_ptr() as *mut libc::c_void;
        slot.iov_len = part.len();
    }
    sys::write_stderr(&iov[..n]);
}

/// Ends the process without running anything of the kernel's: no atexit handler, no buffered
/// output.
fn exit(code: i32) -> ! {
    sys::exit(code)
}

/// `<what>: <error> (os error N)`, as `std::io::Error` would print it, then exit with `code`.
pub(super) fn fail(code: i32, what: &[&[u8]], e: Errno) -> ! {
    let mut num = [0u8; 20];
    let raw = e.raw_os_error();
    let mut parts: [&[u8]; 12] = [b""; 12];
    parts[0] = PREFIX;
    let mut n = 1;
    for w in what.iter().take(6) {
        parts[n] = w;
        n += 1;
    }
    parts[n] = b": ";
    parts[n + 1] = errno_text(raw).as_bytes();
    parts[n + 2] = b" (os error ";
    parts[n + 3] = decimal(u64::from(raw.unsigned_abs()), &mut num);
    parts[n + 4] = b")\n";
    say(&parts[..n + 5]);
    exit(code)
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The description of the errors the steps can meet (glibc's wording; `strerror` itself may
/// take locks for its translations).
fn errno_text(raw: i32) -> &'static str {
    match raw {
        libc::EPERM => "Operation not permitted",
        libc::ENOENT => "No such file or directory",
        libc::EIO => "Input/output error",
        libc::E2BIG => "Argument list too long",
        libc::ENOEXEC => "Exec format error",
        libc::EBADF => "Bad file descriptor",
        libc::EAGAIN => "Resource temporarily unavailable",
        libc::ENOMEM => "Cannot allocate memory",
        libc::EACCES => "Permission denied",
        libc::EFAULT => "Bad address",
        libc::ENOTDIR => "Not a directory",
        libc::EISDIR => "Is a directory",
        libc::EINVAL => "Invalid argument",
        libc::ENFILE => "Too many open files in system",
        libc::EMFILE => "Too many open files",
        libc::ETXTBSY => "Text file busy",
        libc::ENAMETOOLONG => "File name too long",
        libc::ENOSYS => "Function not implemented",
        libc::ELOOP => "Too many levels of symbolic links",
        libc::EOPNOTSUPP => "Operation not supported",
        libc::ELIBBAD => "Accessing a corrupted shared library",
        _ => "error",
    }
}

impl Prepared {
    /// Runs the steps of the module docs in the new process and `execve`s the module; never
    /// returns. Async-signal-safe.
    pub(super) fn exec_in_child(&self) -> ! {
        let program: &[u8] = &self.program_text;
        if let Some((code, msg)) = &self.refused {
            say(&[msg]);
            exit(*code);
        }

        if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::KILL)) {
            fail(
                EXIT_CANNOT_EXEC,
                &[b"cannot set the parent-death signal for `", program, b"`"],
                e,
            );
        }
        let ppid = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
        if ppid.and_then(|p| u32::try_from(p).ok()) != Some(self.kernel_pid) {
            let mut num = [0u8; 20];
            say(&[
                PREFIX,
                b"the kernel (pid ",
                decimal(u64::from(self.kernel_pid), &mut num),
                b") exited before `",
                program,
                b"` could start; not starting it\n",
            ]);
            exit(EXIT_ORPHANED);
        }

        if let Err(e) = rustix::thread::set_no_new_privs(true) {
            fail(
                EXIT_CANNOT_EXEC,
                &[b"cannot set no_new_privs for `", program, b"`"],
                e,
            );
        }

        if let Err(e) = sys::chdir(&self.cwd) {
            fail(
                EXIT_CANNOT_EXEC,
                &[
                    b"cannot enter the working directory ",
                    &self.cwd_text,
                    b" of `",
                    program,
                    b"`",
                ],
                e,
            );
        }

        if !self.notes.is_empty() {
            say(&[&self.notes]);
        }
        match &self.landlock {
            LandlockStep::Off => {}
            LandlockStep::Restrict(fd) => {
                if let Err(e) = sys::landlock_restrict_self(*fd) {
                    fail(
                        EXIT_CANNOT_EXEC,
                        &[b"cannot apply the Landlock ruleset for `", program, b"`"],
                        e,
                    );
                }
            }
            LandlockStep::Unavailable { required: true } => {
                say(&[
                    PREFIX,
                    b"`",
                    program,
                    "` requires Landlock (\"sandbox\": \"required\") but this kernel does not \
                     enforce it; use Linux ≥ 5.13 with Landlock enabled or drop the requirement\n"
                        .as_bytes(),
                ]);
                exit(EXIT_CANNOT_EXEC);
            }
            LandlockStep::Unavailable { required: false } => say(&[
                PREFIX,
                b"note: Landlock is unavailable on this kernel; `",
                program,
                b"` runs without filesystem confinement\n",
            ]),
            LandlockStep::Failed(msg) => {
                say(&[msg]);
                exit(EXIT_CANNOT_EXEC);
            }
        }

        for (resource, limit) in self.rlimits.each() {
            if let Some(limit) = limit {
                if let Err(e) = rustix::process::setrlimit(resource, limit) {
                    fail(
                        EXIT_CANNOT_EXEC,
                        &[b"cannot set the limits of `", program, b"`"],
                        e,
                    );
                }
            }
        }

        if let Some(tag) = self.tag {
            let lim = Rlimit {
                current: Some(tag),
                maximum: Some(tag),
            };
            if let Err(e) = rustix::process::setrlimit(Resource::Locks, lim) {
                let mut num = [0u8; 20];
                say(&[
                    PREFIX,
                    b"note: cannot tag `",
                    program,
                    b"` (RLIMIT_LOCKS: ",
                    errno_text(e.raw_os_error()).as_bytes(),
                    b" (os error ",
                    decimal(u64::from(e.raw_os_error().unsigned_abs()), &mut num),
                    b")); descendants that leave its process group are not found when it stops\n",
                ]);
            }
        }

        if let Err(e) = self.caps.apply() {
            fail(
                EXIT_CANNOT_EXEC,
                &[b"cannot drop the capabilities of `", program, b"`"],
                e,
            );
        }

        // Nothing the kernel holds reaches the module (best effort: `close_range` needs Linux ≥
        // 5.11; the kernel opens its own descriptors close-on-exec anyway).
        let _ = sys::cloexec_from_3();

        if let Some(msg) = &self.unexecutable {
            say(&[msg]);
            exit(EXIT_CANNOT_EXEC);
        }
        // SAFETY: NUL-terminated strings and null-terminated pointer arrays owned by `self`.
        let e = unsafe { sys::execve(&self.program, self.argv.as_ptr(), self.envp.as_ptr()) };
        let code = if e == Errno::NOENT {
            EXIT_NOT_FOUND
        } else {
            EXIT_CANNOT_EXEC
        };
        fail(code, &[b"cannot execute `", program, b"`"], e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_errors_read_like_std() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(4_194_303, &mut b), b"4194303");
        assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
        for e in [
            libc::ENOENT,
            libc::EACCES,
            libc::EPERM,
            libc::ENOEXEC,
            libc::EINVAL,
        ] {
            let std = std::io::Error::from_raw_os_error(e).to_string();
            assert_eq!(std, format!("{} (os error {e})", errno_text(e)));
        }
    }
}
