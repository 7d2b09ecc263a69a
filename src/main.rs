//! The `pons` executable: the CLI, the kernel daemon and (hidden) the watchdog.
//!
//! The hidden mode is dispatched before anything else (no clap, no runtime, no thread):
//! `pons __watchdog` is the process that kills the modules of a kernel that died.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(mode) if mode == "__watchdog" => pons::sandbox::watchdog_main(),
        _ => pons::cli::main(),
    }
}
