//! The clap command tree of `pons` (DESIGN.md §4). Parsing only; the work is done by the
//! per-group files next to this one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// pons: a declarative, reconciling microkernel for modular applications.
#[derive(Debug, Parser)]
#[command(name = "pons", version, about, propagate_version = true)]
pub struct Cli {
    /// Home directory (default: $PONS_HOME, else ~/.pons).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run, stop and inspect the kernel daemon.
    #[command(subcommand)]
    Kernel(KernelCmd),
    /// The kernel and every module: status, pid, restarts, uptime, services, reason.
    Status(JsonFlag),
    /// Show what the next reconcile pass would do (exit 0 converged, 2 with
    /// --detailed-exitcode when changes are pending, 1 on error).
    Plan(PlanArgs),
    /// Run a reconcile pass now (retrying crashed modules) and wait for convergence.
    Apply(ApplyArgs),
    /// Install, approve, list, update, uninstall and restart modules.
    #[command(subcommand)]
    Modules(ModulesCmd),
    /// Approved OS permissions and runtime permission requests (permissions.yaml).
    #[command(subcommand)]
    Permissions(PermissionsCmd),
    /// Read and edit config.yaml (works without a running kernel).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Live terminal view of the modules: status, restarts, uptime, messages/s, last error;
    /// keys restart, stop / start and follow the logs of the selected module.
    Top(TopArgs),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// `--json` alone.
#[derive(Debug, Clone, Copy, Args)]
pub struct JsonFlag {
    /// Machine-readable output (stable; see specs/cli.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Run in the background (new session, output appended to .runtime/logs/kernel-stdout.log).
    #[arg(short, long)]
    pub detach: bool,
    /// Log level: trace, debug, info, warn, error (default: config.yaml logging.level, else info).
    #[arg(long, value_name = "L")]
    pub log_level: Option<String>,
    /// Reconcile only on `pons apply` or a signal, not on every file change.
    #[arg(long)]
    pub manual: bool,
    /// Stop a kernel that is already running first.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum KernelCmd {
    /// Run the kernel (in the foreground unless --detach).
    Start(StartArgs),
    /// Stop the running kernel (ordered shutdown; waits up to 60 s).
    Stop,
    /// Stop the running kernel (if any), then start it again.
    Restart(StartArgs),
    /// Whether the kernel runs, its pid and uptime, and pending permission requests.
    Status(JsonFlag),
    /// Print the kernel log (human-readable), optionally following it.
    Logs(LogsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
    /// How many lines to print first.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Only lines of (or about) this module.
    #[arg(long, value_name = "ID")]
    pub module: Option<String>,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct PlanArgs {
    /// Machine-readable output (stable; see specs/cli.md).
    #[arg(long)]
    pub json: bool,
    /// Exit 2 when changes are pending (0 when converged, 1 on error).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct ApplyArgs {
    /// Machine-readable output (stable; see specs/cli.md).
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for convergence.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct TopArgs {
    /// Seconds between refreshes (0.2 to 3600).
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub interval: f64,
}

#[derive(Debug, Subcommand)]
pub enum ModulesCmd {
    /// Every module directory with its approval state and blocked reason.
    List(JsonFlag),
    /// Install a module directory into modules/ (symlink by default) and approve it.
    Install {
        /// The module directory (containing module.json).
        path: PathBuf,
        /// Copy the directory instead of linking it.
        #[arg(long)]
        copy: bool,
        /// Approve its permissions without asking.
        #[arg(short, long)]
        yes: bool,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Approve a module's permissions and capabilities (by module id or directory name).
    Approve {
        id: String,
        /// Approve without asking.
        #[arg(short, long)]
        yes: bool,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Remove a module from modules/ and revoke its permissions.
    Uninstall {
        id: String,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Restart a module in the running kernel (also retries a crashed one).
    Restart {
        id: String,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// `git pull --ff-only` a git-installed module (or all of them); linked modules are skipped.
    /// A changed module.json needs approving again.
    #[command(group = clap::ArgGroup::new("which").required(true).args(["id", "all"]))]
    Update {
        /// Module id or directory name.
        id: Option<String>,
        /// Every module in modules/.
        #[arg(long)]
        all: bool,
        /// Approve a changed module.json without asking.
        #[arg(short, long)]
        yes: bool,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PermissionsCmd {
    /// Base, effective permissions and pending requests of every module (or one).
    List {
        module: Option<String>,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Runtime permission requests awaiting a decision.
    Pending(JsonFlag),
    /// Grant a pending request (a unique prefix of its id), or all of the module's.
    Grant {
        module: String,
        request: Option<String>,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Deny a pending request (a unique prefix of its id), or all of the module's.
    Deny {
        module: String,
        request: Option<String>,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Revoke a module's approval entirely, or one permission kind / value.
    Revoke {
        module: String,
        /// Only this kind: net, read, write, env, run, sys.
        #[arg(long = "type", value_name = "T")]
        kind: Option<String>,
        /// Only this value of --type.
        #[arg(long, value_name = "V", requires = "kind")]
        value: Option<String>,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the value at a dotted key path.
    Get {
        key: String,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Set the value at a dotted key path (strings coerced: JSON, true/false/null, numbers).
    Set {
        key: String,
        value: String,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Print config.yaml (or one section).
    List {
        #[arg(long, value_name = "KEY")]
        section: Option<String>,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Check config.yaml: YAML syntax, kernel sections, module sections against their schemas.
    Validate(JsonFlag),
    /// Diagnose config.yaml against the modules present; --fix repairs what is safe to repair.
    Doctor {
        /// Replace invalid values that have a default with that default (nothing is deleted).
        #[arg(long)]
        fix: bool,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Edit config.yaml in $VISUAL / $EDITOR (else vi); applied only when valid.
    Edit,
    /// Remove a key from config.yaml so its default applies, or reset the whole file (--all).
    #[command(group = clap::ArgGroup::new("what").required(true).args(["key", "all"]))]
    Reset {
        /// Dotted key path.
        key: Option<String>,
        /// Reset the whole file to defaults (the old file is kept as a backup).
        #[arg(long)]
        all: bool,
        /// Reset everything without asking (needed for --all without a terminal).
        #[arg(short, long)]
        yes: bool,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("pons").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn global_home_is_accepted_anywhere() {
        let cli = parse(&[
            "kernel",
            "start",
            "--home",
            "/h",
            "--detach",
            "--log-level",
            "debug",
        ]);
        assert_eq!(cli.home.as_deref(), Some(std::path::Path::new("/h")));
        let Command::Kernel(KernelCmd::Start(a)) = cli.command else {
            panic!()
        };
        assert!(a.detach && !a.manual && !a.force);
        assert_eq!(a.log_level.as_deref(), Some("debug"));
        let cli = parse(&["--home", "/x", "status", "--json"]);
        assert_eq!(cli.home.as_deref(), Some(std::path::Path::new("/x")));
        assert!(matches!(
            cli.command,
            Command::Status(JsonFlag { json: true })
        ));
    }

    #[test]
    fn plan_apply_and_logs_flags() {
        let cli = parse(&["plan", "--detailed-exitcode"]);
        assert!(matches!(
            cli.command,
            Command::Plan(PlanArgs {
                json: false,
                detailed_exitcode: true
            })
        ));
        let cli = parse(&["apply", "--timeout", "5", "--json"]);
        assert!(matches!(
            cli.command,
            Command::Apply(ApplyArgs {
                json: true,
                timeout: 5
            })
        ));
        let cli = parse(&["apply"]);
        assert!(matches!(
            cli.command,
            Command::Apply(ApplyArgs { timeout: 60, .. })
        ));
        let cli = parse(&["kernel", "logs", "-f", "-n", "10", "--module", "gw"]);
        let Command::Kernel(KernelCmd::Logs(l)) = cli.command else {
            panic!()
        };
        assert!(l.follow);
        assert_eq!(l.lines, 10);
        assert_eq!(l.module.as_deref(), Some("gw"));
    }

    #[test]
    fn modules_permissions_config_subcommands() {
        let cli = parse(&["modules", "install", "./m", "--copy", "--yes"]);
        assert!(matches!(
            cli.command,
            Command::Modules(ModulesCmd::Install {
                copy: true,
                yes: true,
                json: false,
                ..
            })
        ));
        let cli = parse(&["modules", "approve", "gw", "-y"]);
        assert!(matches!(
            cli.command,
            Command::Modules(ModulesCmd::Approve { yes: true, .. })
        ));
        let cli = parse(&["permissions", "grant", "gw", "0b9d"]);
        let Command::Permissions(PermissionsCmd::Grant {
            module, request, ..
        }) = cli.command
        else {
            panic!()
        };
        assert_eq!((module.as_str(), request.as_deref()), ("gw", Some("0b9d")));
        assert!(
            Cli::try_parse_from(["pons", "permissions", "revoke", "gw", "--value", "x"]).is_err()
        );
        let cli = parse(&["config", "set", "gateway.port", "8080"]);
        assert!(matches!(
            cli.command,
            Command::Config(ConfigCmd::Set { .. })
        ));
        let cli = parse(&["modules", "update", "--all", "--yes"]);
        assert!(matches!(
            cli.command,
            Command::Modules(ModulesCmd::Update {
                id: None,
                all: true,
                yes: true,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["pons", "modules", "update"]).is_err());
        assert!(Cli::try_parse_from(["pons", "modules", "update", "m", "--all"]).is_err());
        let cli = parse(&["config", "doctor", "--fix"]);
        assert!(matches!(
            cli.command,
            Command::Config(ConfigCmd::Doctor {
                fix: true,
                json: false
            })
        ));
        let cli = parse(&["config", "reset", "k.port"]);
        assert!(matches!(
            cli.command,
            Command::Config(ConfigCmd::Reset { all: false, .. })
        ));
        assert!(Cli::try_parse_from(["pons", "config", "reset"]).is_err());
        assert!(Cli::try_parse_from(["pons", "config", "reset", "k", "--all"]).is_err());
        let cli = parse(&["top", "--interval", "0.5"]);
        assert!(matches!(cli.command, Command::Top(TopArgs { interval }) if interval == 0.5));
        let cli = parse(&["top"]);
        assert!(matches!(cli.command, Command::Top(TopArgs { interval }) if interval == 1.0));
        let cli = parse(&["completions", "bash"]);
        assert!(matches!(cli.command, Command::Completions { .. }));
        assert!(Cli::try_parse_from(["pons", "plan", "--bogus"]).is_err());
    }
}
