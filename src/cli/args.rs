//! The clap command tree of `pons`. Parsing only; the work is done by the
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
    /// The log of the kernel and its modules (all, or the given module ids), optionally followed.
    Logs(LogsArgs),
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
    /// Restart modules in the running kernel, one after the other, each waited for until ready.
    Restart(LifecycleArgs),
    /// Stop modules: list them in `kernel.disabled` of config.yaml (they stay stopped until
    /// `pons start`), then wait until the kernel has stopped them.
    Stop(LifecycleArgs),
    /// Start modules stopped with `pons stop`: remove them from `kernel.disabled`, then wait until
    /// they are ready.
    Start(LifecycleArgs),
    /// Run the kernel as a systemd service: install, uninstall, status.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Make an RPC as the operator (the provider sees `from: "operator"`); print the answer as JSON.
    Call(CallArgs),
    /// Publish a message as the operator (logged by the kernel); print how many subscribers got it.
    Publish(PublishArgs),
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

/// `pons restart | stop | start`, `pons modules disable | enable`: module ids and how to wait.
#[derive(Debug, Clone, Args)]
pub struct LifecycleArgs {
    /// Module ids (or directory names).
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Machine-readable output (stable; see specs/cli.md).
    #[arg(long)]
    pub json: bool,
}

/// Whether (and how long) a lifecycle command waits for the kernel to get there.
#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArgs {
    /// Return once the change is made or asked for, without waiting for the outcome.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait (`restart`: for each module, one after the other).
    #[arg(long, value_name = "S", default_value_t = 30)]
    pub timeout: u64,
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
    /// The log (as `pons logs`), of the modules given with --module.
    Logs(KernelLogsArgs),
}

/// `pons logs [ID…]`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Only lines of (or about) these modules (separate arguments or a comma list, as
    /// `kernel logs --module`); `kernel` is the kernel's own lines. Default: all.
    #[arg(value_name = "ID", value_delimiter = ',')]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub flags: LogFlags,
}

/// `pons kernel logs [--module ID,…]`.
#[derive(Debug, Clone, Args)]
pub struct KernelLogsArgs {
    /// Only lines of (or about) these modules (a comma list, or repeated); `kernel` is the
    /// kernel's own lines. Default: all.
    #[arg(long = "module", value_name = "ID", value_delimiter = ',')]
    pub modules: Vec<String>,
    #[command(flatten)]
    pub flags: LogFlags,
}

/// What `pons logs` and `pons kernel logs` share.
#[derive(Debug, Clone, Args)]
pub struct LogFlags {
    /// Keep printing new lines as they are written (waits for a kernel not started yet, follows
    /// the daily files); ends on Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,
    /// Print the last N matching lines first [default: 100; 10 with -f; all with --since].
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,
    /// Only this level and more severe: trace, debug, info, warn, error.
    #[arg(long, value_name = "L")]
    pub level: Option<String>,
    /// Only lines from T on: an ISO 8601 time (2026-01-15T10:30:00, 2026-01-15), a time ago
    /// (30s, 5m, 2h, 1d), today or yesterday.
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// The matching lines as the JSON objects of the log file, one per line.
    #[arg(long)]
    pub json: bool,
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

#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// The service (as in a module's `provides`).
    pub service: String,
    /// The method.
    pub method: String,
    /// The params, as one JSON argument (e.g. '{"text":"hi"}'); none when left out.
    #[arg(value_name = "JSON")]
    pub params: Option<String>,
    /// Seconds to wait for the answer (default: the kernel's lifecycle.rpcTimeoutMs).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The topic (`system:` topics are the kernel's and are refused).
    pub topic: String,
    /// The payload, as one JSON argument; none when left out.
    #[arg(value_name = "JSON")]
    pub payload: Option<String>,
    /// Machine-readable output (stable; see specs/cli.md).
    #[arg(long)]
    pub json: bool,
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
        /// Development loop: keep running and approve the module again whenever its module.json
        /// changes (a change that widens its permissions is asked about, or needs --yes).
        #[arg(long, conflicts_with = "json")]
        watch: bool,
    },
    /// Remove a module from modules/ and revoke its permissions.
    Uninstall {
        id: String,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Restart a module in the running kernel (also retries a crashed one) and wait until it is
    /// ready again.
    Restart {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
        /// Machine-readable output (stable; see specs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Stop modules and keep them stopped: `kernel.disabled` in config.yaml (as `pons stop`).
    Disable(LifecycleArgs),
    /// Let disabled modules run again (as `pons start`).
    Enable(LifecycleArgs),
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

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Write a systemd unit for this home and enable it (prints it where systemd does not run).
    Install(ServiceInstallArgs),
    /// Stop, disable and remove this home's unit.
    Uninstall(ServiceScopeArgs),
    /// Whether the unit is installed, enabled and active, and the kernel's status.
    Status(ServiceStatusArgs),
}

/// `--user` or `--system` (default: system for root, else user).
#[derive(Debug, Clone, Copy, Args)]
#[group(multiple = false)]
pub struct ServiceScopeArgs {
    /// The user's systemd instance (~/.config/systemd/user); the default unless root.
    #[arg(long)]
    pub user: bool,
    /// The system instance (/etc/systemd/system); the default for root.
    #[arg(long)]
    pub system: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServiceInstallArgs {
    #[command(flatten)]
    pub scope: ServiceScopeArgs,
    /// Print the unit and change nothing.
    #[arg(long)]
    pub print: bool,
    /// Unit name (default: pons.service for ~/.pons, else pons-<home dir name>.service).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Let systemd restart a kernel that stops answering for this long (WatchdogSec=; off by
    /// default).
    #[arg(long, value_name = "S")]
    pub watchdog_sec: Option<u64>,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct ServiceStatusArgs {
    #[command(flatten)]
    pub scope: ServiceScopeArgs,
    /// Machine-readable output (stable; see specs/cli.md).
    #[arg(long)]
    pub json: bool,
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
        let cli = parse(&[
            "kernel", "logs", "-f", "-n", "10", "--module", "gw,db", "--module", "x",
        ]);
        let Command::Kernel(KernelCmd::Logs(l)) = cli.command else {
            panic!()
        };
        assert!(l.flags.follow && !l.flags.json);
        assert_eq!(l.flags.lines, Some(10));
        assert_eq!(l.modules, ["gw", "db", "x"]);
        let cli = parse(&[
            "logs", "a", "b", "--level", "warn", "--since", "5m", "--json",
        ]);
        let Command::Logs(l) = cli.command else {
            panic!()
        };
        assert_eq!(l.ids, ["a", "b"]);
        assert_eq!(l.flags.level.as_deref(), Some("warn"));
        assert_eq!(l.flags.since.as_deref(), Some("5m"));
        assert!(l.flags.json && !l.flags.follow);
        assert_eq!(l.flags.lines, None);
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
        let cli = parse(&["modules", "restart", "gw", "--no-wait"]);
        assert!(matches!(
            cli.command,
            Command::Modules(ModulesCmd::Restart {
                wait: WaitArgs {
                    no_wait: true,
                    timeout: 30
                },
                ..
            })
        ));
        let cli = parse(&["modules", "disable", "gw", "--timeout", "5"]);
        let Command::Modules(ModulesCmd::Disable(a)) = cli.command else {
            panic!()
        };
        assert_eq!((a.ids, a.wait.timeout), (vec!["gw".to_string()], 5));
        let cli = parse(&["completions", "bash"]);
        assert!(matches!(cli.command, Command::Completions { .. }));
        assert!(Cli::try_parse_from(["pons", "plan", "--bogus"]).is_err());
    }

    #[test]
    fn lifecycle_verbs_at_the_top_level() {
        let cli = parse(&["restart", "a", "b", "--no-wait", "--json"]);
        let Command::Restart(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.ids, vec!["a", "b"]);
        assert!(a.wait.no_wait && a.json);
        let cli = parse(&["stop", "a"]);
        assert!(matches!(
            cli.command,
            Command::Stop(LifecycleArgs {
                wait: WaitArgs {
                    no_wait: false,
                    timeout: 30
                },
                ..
            })
        ));
        assert!(matches!(parse(&["start", "a"]).command, Command::Start(_)));
        for verb in ["restart", "stop", "start"] {
            assert!(
                Cli::try_parse_from(["pons", verb]).is_err(),
                "{verb} needs an id"
            );
        }
    }
}
