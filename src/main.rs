//! The `pons` executable: the CLI, the kernel daemon and (hidden) the exec trampoline.

fn main() -> std::process::ExitCode {
    pons::cli::main()
}
