//! The `pons-exec` executable: the exec trampoline alone, started by the kernel as
//! `pons-exec __exec` for every module (see `pons::sandbox::trampoline`).
//!
//! It runs the same code as `pons __exec`, in a binary that holds nothing else, so a module start
//! does not load, relocate and fault in the whole kernel binary. The kernel uses it when it lies
//! next to the `pons` binary and answers `__identity` like the kernel's own build, and falls back to
//! `pons __exec` otherwise (`pons::sandbox::locate`).
//!
//! `no_main`: the C `main` below skips the Rust runtime's start-up (reading `/proc/self/maps` for
//! the main thread's stack guard, an alternate signal stack, SIGPIPE handling), none of which the
//! trampoline needs before it `execve`s the module. Arguments still come from `std::env` (glibc
//! passes them to std's `.init_array` hook).

#![no_main]

use std::os::raw::{c_char, c_int};

#[no_mangle]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(mode) if mode == "__exec" => {
            // Executed as /proc/self/fd/N, the process would be named "N" until the module's
            // own exec; name it for `ps` (best effort).
            let _ = rustix::thread::set_name(c"pons-exec");
            pons::sandbox::trampoline::trampoline_main(args.collect())
        }
        Some(mode) if mode == pons::sandbox::locate::IDENTITY_ARG => {
            println!("{}", pons::sandbox::locate::identity());
            0
        }
        _ => {
            eprintln!(
                "pons-exec: this is the exec trampoline the pons kernel starts modules through; \
                 run `pons` instead"
            );
            pons::sandbox::trampoline::EXIT_CANNOT_EXEC
        }
    }
}
