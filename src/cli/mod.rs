//! Command-line interface (clap). One file per command group; [`args`] holds the command tree,
//! `offline` is the single door to the reconciler, `remote` to a running kernel.
//!
//! Every command returns an exit code or an error; an error is printed as one sentence on stderr
//! and exits 1. The JSON outputs are specified in specs/cli.md.

pub mod args;

mod apply;
mod approve;
mod approve_watch;
mod audit;
mod call;
mod colour;
mod config;
mod doctor;
mod edit;
mod json_text;
mod kernel;
mod lifecycle;
mod logs;
mod modules;
mod offline;
mod output;
mod permissions;
mod plan;
mod remote;
mod reset;
mod service;
mod status;
mod top;
mod update;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

pub use args::Cli;
use args::{Command, KernelCmd};

use crate::home::Home;

/// Entry point of the `pons` executable.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 1 (not clap's 2, which `plan --detailed-exitcode` uses).
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(cli.home.as_deref());
    let runs_kernel = matches!(
        cli.command,
        Command::Kernel(KernelCmd::Start(_) | KernelCmd::Restart(_))
    );
    let needs_home = !runs_kernel
        && !matches!(
            cli.command,
            Command::Completions { .. }
                | Command::Service(args::ServiceCmd::Uninstall(_) | args::ServiceCmd::Status(_))
        );
    if needs_home && !home.root.is_dir() {
        anyhow::bail!(
            "the pons home {} does not exist: check --home or PONS_HOME, or create it with `pons kernel start --home {}`",
            home.root.display(),
            home.root.display()
        );
    }
    if !runs_kernel {
        // Short-lived commands die quietly on a closed pipe (`pons status | head`) instead of
        // panicking in println!. The kernel keeps Rust's default (ignored, EPIPE as an error).
        // SAFETY: called before this command starts any thread; SIG_DFL is a valid action.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command {
        Command::Kernel(k) => match k {
            KernelCmd::Start(a) => kernel::start(&home, &a),
            KernelCmd::Stop => kernel::stop(&home),
            KernelCmd::Restart(a) => kernel::restart(&home, &a),
            KernelCmd::Status(f) => kernel::status(&home, f.json),
            KernelCmd::Logs(a) => logs::run(&home, &a.modules, &a.flags),
        },
        Command::Logs(a) => logs::run(&home, &a.ids, &a.flags),
        Command::Status(f) => status::run(&home, f.json),
        Command::Plan(a) => plan::run(&home, a),
        Command::Apply(a) => apply::run(&home, a),
        Command::Modules(m) => modules::run(&home, m),
        Command::Permissions(p) => permissions::run(&home, p),
        Command::Config(c) => config::run(&home, c),
        Command::Top(a) => top::run(&home, &a),
        Command::Restart(a) => lifecycle::restart(&home, &a),
        Command::Stop(a) => lifecycle::stop(&home, &a),
        Command::Start(a) => lifecycle::start(&home, &a),
        Command::Service(s) => service::run(&home, s),
        Command::Call(a) => call::call(&home, &a),
        Command::Publish(a) => call::publish(&home, &a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pons", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}
