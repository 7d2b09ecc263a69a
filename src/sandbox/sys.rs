//! The system calls a module's process makes before `exec` ([`super::child`],
//! [`super::clone_vm`]), without libc.
//!
//! That process shares the kernel's memory while the kernel's threads — the one that started it
//! among them — go on. libc's wrappers write `errno` on failure, and `errno` is a variable of the
//! thread that started the child (the child runs with its thread pointer): a failing call in the
//! child would change it under that thread. These calls go to Linux directly and return its
//! result (`-errno` on failure) in a register. `rustix` (its raw backend, the one built here) is
//! errno-free too and is used where it has the call.
//!
//! Only x86-64 and AArch64 have the raw calls; elsewhere they go through `libc::syscall` and the
//! thread that starts a child waits until it `exec`s ([`ERRNO_FREE`]).

use std::ffi::{c_char, c_int, CStr};

use rustix::io::Errno;

/// Whether the calls here leave `errno` alone, so the thread that starts a child may go on while
/// the child prepares its `exec`.
pub const ERRNO_FREE: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// One system call with six arguments; the raw result.
///
/// # Safety
/// The arguments must be valid for system call `nr` (pointers to live memory of the sizes it
/// reads or writes).
#[cfg(target_arch = "x86_64")]
unsafe fn raw(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller's promise; `syscall` clobbers rcx and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn raw(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller's promise.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn raw(nr: libc::c_long, a: [usize; 6]) -> isize {
    // SAFETY: the caller's promise. Writes errno: see ERRNO_FREE.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r == -1 {
        // SAFETY: reading the calling thread's errno.
        -(unsafe { *libc::__errno_location() } as isize)
    } else {
        r as isize
    }
}

/// [`raw`] with the result as `Ok(value)` or the error.
///
/// # Safety
/// As for [`raw`].
unsafe fn call(nr: libc::c_long, a: [usize; 6]) -> Result<usize, Errno> {
    // SAFETY: the caller's promise.
    let r = unsafe { raw(nr, a) };
    if (-4095..0).contains(&r) {
        Err(Errno::from_raw_os_error(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// `fcntl(fd, F_SETFD, 0)`: `fd` stays open across `exec`.
pub fn keep_on_exec(fd: c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    unsafe {
        call(
            libc::SYS_fcntl,
            [fd as usize, libc::F_SETFD as usize, 0, 0, 0, 0],
        )
    }
    .map(drop)
}

/// `dup3(fd, target, 0)` (`fd` ≠ `target`).
pub fn dup_to(fd: c_int, target: c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    unsafe { call(libc::SYS_dup3, [fd as usize, target as usize, 0, 0, 0, 0]) }.map(drop)
}

/// `setpgid(0, 0)`: a process group of its own.
pub fn own_process_group() -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    unsafe { call(libc::SYS_setpgid, [0; 6]) }.map(drop)
}

/// Linux's `struct sigaction` fits in this (32 bytes on x86-64 and AArch64); all zeros is
/// `SIG_DFL` with no flags and an empty mask on either layout, and the handler comes first.
type KernelSigaction = [usize; 8];

/// The signal's handler as Linux has it (`SIG_DFL` 0, `SIG_IGN` 1, else a function).
pub fn handler_of(sig: c_int) -> Result<usize, Errno> {
    let mut old: KernelSigaction = [0; 8];
    // SAFETY: rt_sigaction writes at most sizeof(struct sigaction) ≤ 64 bytes into `old`.
    unsafe {
        call(
            libc::SYS_rt_sigaction,
            [sig as usize, 0, old.as_mut_ptr() as usize, 8, 0, 0],
        )
    }?;
    Ok(old[0])
}

/// The signal back to its default action.
pub fn default_action(sig: c_int) -> Result<(), Errno> {
    let dfl: KernelSigaction = [0; 8];
    // SAFETY: rt_sigaction reads sizeof(struct sigaction) ≤ 64 bytes from `dfl`.
    unsafe {
        call(
            libc::SYS_rt_sigaction,
            [sig as usize, dfl.as_ptr() as usize, 0, 8, 0, 0],
        )
    }
    .map(drop)
}

/// An empty signal mask.
pub fn unblock_all_signals() -> Result<(), Errno> {
    let empty: u64 = 0;
    // SAFETY: rt_sigprocmask reads the 8-byte set.
    unsafe {
        call(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_SETMASK as usize,
                &empty as *const u64 as usize,
                0,
                8,
                0,
                0,
            ],
        )
    }
    .map(drop)
}

/// `chdir(path)`.
pub fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: a NUL-terminated string.
    unsafe { call(libc::SYS_chdir, [path.as_ptr() as usize, 0, 0, 0, 0, 0]) }.map(drop)
}

/// `landlock_restrict_self(ruleset, 0)`.
pub fn landlock_restrict_self(ruleset: c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    unsafe {
        call(
            libc::SYS_landlock_restrict_self,
            [ruleset as usize, 0, 0, 0, 0, 0],
        )
    }
    .map(drop)
}

/// Every descriptor from 3 up marked close-on-exec (`close_range`, Linux ≥ 5.11).
pub fn cloexec_from_3() -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    unsafe {
        call(
            libc::SYS_close_range,
            [
                3,
                u32::MAX as usize,
                libc::CLOSE_RANGE_CLOEXEC as usize,
                0,
                0,
                0,
            ],
        )
    }
    .map(drop)
}

/// `execve(program, argv, envp)`; returns only on failure.
///
/// # Safety
/// `argv` and `envp` must be null-terminated arrays of NUL-terminated strings.
pub unsafe fn execve(
    program: &CStr,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> Errno {
    // SAFETY: the caller's promise.
    match unsafe {
        call(
            libc::SYS_execve,
            [
                program.as_ptr() as usize,
                argv as usize,
                envp as usize,
                0,
                0,
                0,
            ],
        )
    } {
        Err(e) => e,
        Ok(_) => Errno::INVAL,
    }
}

/// `writev(2, parts)`: best effort.
pub fn write_stderr(iov: &[libc::iovec]) {
    // SAFETY: `iov` describes live memory; writev only reads it.
    let _ = unsafe {
        call(
            libc::SYS_writev,
            [2, iov.as_ptr() as usize, iov.len(), 0, 0, 0],
        )
    };
}

/// Ends the process at once.
pub fn exit(code: c_int) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        let _ = unsafe { raw(libc::SYS_exit_group, [code as usize, 0, 0, 0, 0, 0]) };
    }
}
