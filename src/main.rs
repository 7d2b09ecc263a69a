//! The `pons` executable: the CLI, the kernel daemon and (hidden) the exec trampoline and the
//! watchdog.
//!
//! The hidden modes are dispatched before anything else (no clap, no runtime, no thread):
//! `pons __exec` is the exec trampoline (the fallback when no usable `pons-exec` lies next to this
//! binary, see `pons::sandbox::locate`), `pons __watchdog` the process that kills the modules of a
//! kernel that died.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(mode) if mode == "__exec" => {
            pons::sandbox::trampoline::trampoline_main(args.collect())
        }
        Some(mode) if mode == "__watchdog" => pons::sandbox::watchdog_main(),
        _ => pons::cli::main(),
    }
}
