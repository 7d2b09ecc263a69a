//! `pons service install | uninstall | status`: the kernel of a home as a systemd service
//!. The unit's text is [`unit`]'s; this file finds the scope, talks to
//! `systemctl`, and says what it did. Where systemd is not the init system, nothing is written:
//! the unit is printed with the path it would go to.
//!
//! `PONS_SYSTEMCTL`, when set, is the `systemctl` to run and makes pons take systemd as running
//! (tests use a recording stand-in; it also serves an unusual layout).

mod unit;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use serde_json::json;

use super::args::{ServiceCmd, ServiceInstallArgs, ServiceScopeArgs, ServiceStatusArgs};
use super::{offline, output, remote};
use crate::home::Home;
use unit::Scope;

pub fn run(home: &Home, cmd: ServiceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ServiceCmd::Install(a) => install(home, &a),
        ServiceCmd::Uninstall(a) => uninstall(home, &a),
        ServiceCmd::Status(a) => status(home, &a),
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// `--user` / `--system`, else the system for root and the user's manager for anyone else.
fn scope(a: &ServiceScopeArgs) -> Scope {
    if a.system {
        Scope::System
    } else if a.user || !rustix::process::geteuid().is_root() {
        Scope::User
    } else {
        Scope::System
    }
}

/// The systemctl to run, or why systemd cannot be asked here.
fn systemctl() -> Result<PathBuf, String> {
    if let Some(s) = env("PONS_SYSTEMCTL") {
        return Ok(PathBuf::from(s));
    }
    let booted = Path::new("/run/systemd/system").is_dir();
    let pid1 = std::fs::read_to_string("/proc/1/comm")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if booted || pid1 == "systemd" {
        Ok(PathBuf::from("systemctl"))
    } else if pid1.is_empty() {
        Err("systemd is not the init system here (no /run/systemd/system)".into())
    } else {
        Err(format!(
            "systemd is not the init system here (PID 1 is `{pid1}`, and there is no /run/systemd/system)"
        ))
    }
}

/// Runs `systemctl [--user] <args>`; its stdout, or an error with its stderr.
fn systemctl_run(bin: &Path, scope: Scope, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(scope.systemctl_args())
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", bin.display()))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut msg = format!(
        "`{} {}` failed ({}): {}",
        scope.systemctl(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    if scope == Scope::User {
        msg.push_str(
            "; the user's systemd instance must be running (log in, or `loginctl enable-linger \
             <user>` as root), or use --system as root",
        );
    }
    Err(anyhow::anyhow!(msg))
}

/// The home as the unit names it (real path).
fn home_path(home: &Home) -> PathBuf {
    std::fs::canonicalize(&home.root).unwrap_or_else(|_| home.root.clone())
}

/// Whether `home` is the default one (`~/.pons`): its unit is then plain `pons.service`.
fn is_default_home(home: &Path) -> bool {
    let Some(h) = env("HOME") else {
        return false;
    };
    let default = Path::new(&h).join(".pons");
    std::fs::canonicalize(&default).unwrap_or(default) == home
}

/// The unit file of `home` in `dir`: an installed unit (a file, not an alias) whose
/// `PONS_HOME` is `home`, else the name it gets.
fn locate(dir: &Path, home: &Path, name: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(n) = name {
        return Ok(dir.join(unit::checked_name(n).map_err(anyhow::Error::msg)?));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut found: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "service")
                    && std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
            })
            .filter(|p| {
                std::fs::read_to_string(p)
                    .ok()
                    .and_then(|t| unit::home_of_unit(&t))
                    .is_some_and(|h| h == home)
            })
            .collect();
        found.sort();
        if let Some(p) = found.into_iter().next() {
            return Ok(p);
        }
    }
    Ok(dir.join(unit::unit_name(home, is_default_home(home))))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn unit_dir(scope: Scope) -> anyhow::Result<PathBuf> {
    scope.unit_dir(env).map_err(anyhow::Error::msg)
}

/// `TimeoutStopSec=` from config.yaml's shutdown grace and the home's shutdown tiers.
fn stop_timeout(home: &Home) -> u64 {
    let desired = offline::desired(home);
    let tiers = pons_reconciler::graph::desired_tiers(&desired).len().max(1);
    unit::timeout_stop_sec(
        desired.kernel.lifecycle.shutdown_grace_ms,
        crate::kernel::supervisor::TERM_GRACE.as_millis() as u64,
        tiers,
    )
}

fn install(home: &Home, a: &ServiceInstallArgs) -> anyhow::Result<ExitCode> {
    let scope = scope(&a.scope);
    let home_abs = home_path(home);
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| anyhow::anyhow!("cannot find the pons executable for ExecStart=: {e}"))?;
    let run_as = match scope {
        Scope::System => {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&home_abs)
                .ok()
                .filter(|m| m.uid() != 0)
                .map(|m| (m.uid(), m.gid()))
        }
        Scope::User => None,
    };
    // The installing shell's PATH (absolute entries, once each): interpreters of modules are
    // found where the operator finds them, not only on systemd's short default PATH.
    let path_env = std::env::var("PATH").ok().map(|p| {
        let mut seen = std::collections::HashSet::new();
        p.split(':')
            .filter(|d| Path::new(d).is_absolute() && seen.insert(*d))
            .collect::<Vec<_>>()
            .join(":")
    });
    let spec = unit::UnitSpec {
        scope,
        exe: exe.clone(),
        home: home_abs.clone(),
        path_env,
        run_as,
        timeout_stop_sec: stop_timeout(home),
        watchdog_sec: a.watchdog_sec,
    };
    let text = unit::render(&spec).map_err(anyhow::Error::msg)?;
    let dir = unit_dir(scope)?;
    let path = locate(&dir, &home_abs, a.name.as_deref())?;
    let name = file_name(&path);
    if a.print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let bin = match systemctl() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!(
                "{why}: nothing installed. The {} unit for {} is below; where systemd runs, write \
                 it to {} and run `{} daemon-reload && {} enable --now {name}`.",
                scope.as_str(),
                home_abs.display(),
                path.display(),
                scope.systemctl(),
                scope.systemctl()
            );
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let existing = std::fs::read_to_string(&path).ok();
    if let Some(other) = existing.as_deref().map(unit::home_of_unit) {
        match other {
            Some(h) if h == home_abs => {}
            Some(h) => anyhow::bail!(
                "{} already runs the kernel of the home {}; pass --name to install this home under another unit name",
                path.display(),
                h.display()
            ),
            None => anyhow::bail!(
                "{} exists and was not written by `pons service install`; remove it or pass --name",
                path.display()
            ),
        }
    }
    if let Some(pid) = running_kernel_pid(home) {
        let main_pid = show(&bin, scope, &name)
            .ok()
            .and_then(|p| p.get("MainPID").and_then(|v| v.parse::<i32>().ok()));
        if main_pid != Some(pid) {
            anyhow::bail!(
                "a kernel already runs for {} (PID {pid}) outside {name}; stop it with `pons kernel stop`, then install again (systemd starts it)",
                home_abs.display()
            );
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}{}", dir.display(), root_hint(scope)))?;
    let changed = existing.as_deref() != Some(text.as_str());
    if changed {
        crate::store::write_atomic(&path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e:#}{}", root_hint(scope)))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| anyhow::anyhow!("cannot make {} readable: {e}", path.display()))?;
    }
    println!(
        "{} {} ({} scope, home {}).",
        if changed { "Wrote" } else { "Unchanged:" },
        path.display(),
        scope.as_str(),
        home_abs.display()
    );
    let was_active = existing.is_some()
        && show(&bin, scope, &name)
            .ok()
            .is_some_and(|p| p.get("ActiveState").is_some_and(|s| s == "active"));
    systemctl_run(&bin, scope, &["daemon-reload"])?;
    systemctl_run(&bin, scope, &["enable", "--now", &name])?;
    let sc = scope.systemctl();
    println!(
        "Enabled and started {name}: `{sc} status {name}`, `journalctl {}-u {name}`.",
        if scope == Scope::User { "--user " } else { "" }
    );
    if was_active && changed {
        println!(
            "It was already running with the old unit: `{sc} restart {name}` uses the new one."
        );
    }
    notes(scope, &exe);
    Ok(ExitCode::SUCCESS)
}

/// The pid of the home's running kernel: from its pid file, else from its control socket (a
/// kernel that is starting answers before it writes the pid file).
fn running_kernel_pid(home: &Home) -> Option<i32> {
    crate::pidfile::live_pid(home).or_else(|| {
        let data = remote::call(home, &remote::cmd("status"), |_| {}).ok()??;
        data.pointer("/kernel/pid")
            .and_then(|p| p.as_i64())
            .and_then(|p| i32::try_from(p).ok())
    })
}

fn root_hint(scope: Scope) -> &'static str {
    if scope == Scope::System && !rustix::process::geteuid().is_root() {
        " (a system unit needs root: `sudo pons service install --system`, or use --user)"
    } else {
        ""
    }
}

/// Things worth knowing after an install.
fn notes(scope: Scope, exe: &Path) {
    let s = exe.to_string_lossy();
    if s.contains("/target/debug/") || s.contains("/target/release/") {
        println!(
            "note: the unit runs {s} from a build directory; after `cargo install`, run `pons service install` again"
        );
    }
    if scope == Scope::User {
        if let Some(user) = env("USER").or_else(|| env("LOGNAME")) {
            if !Path::new("/var/lib/systemd/linger").join(&user).exists() {
                println!(
                    "note: a user service runs while {user} is logged in; `loginctl enable-linger {user}` starts it at boot"
                );
            }
        }
    }
}

fn uninstall(home: &Home, a: &ServiceScopeArgs) -> anyhow::Result<ExitCode> {
    let scope = scope(a);
    let home_abs = home_path(home);
    let dir = unit_dir(scope)?;
    let path = locate(&dir, &home_abs, None)?;
    let name = file_name(&path);
    let exists = path.exists();
    let wants = dir.join(format!("{}.wants", scope.wanted_by())).join(&name);
    match systemctl() {
        Ok(bin) => {
            if !exists {
                println!(
                    "No unit installed for the home {} (it would be {}).",
                    home_abs.display(),
                    path.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            systemctl_run(&bin, scope, &["disable", "--now", &name])?;
            remove(&path)?;
            systemctl_run(&bin, scope, &["daemon-reload"])?;
            println!("Stopped, disabled and removed {name} ({}).", path.display());
        }
        Err(why) => {
            if !exists {
                println!(
                    "No unit installed for the home {}: it would be {} ({why}).",
                    home_abs.display(),
                    path.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            remove(&path)?;
            if std::fs::read_link(&wants).is_ok() {
                remove(&wants)?;
            }
            println!(
                "Removed {} ({why}: nothing was running to stop).",
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(path).map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))
}

/// `systemctl show` of the properties `status` reports.
fn show(
    bin: &Path,
    scope: Scope,
    name: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let out = systemctl_run(
        bin,
        scope,
        &[
            "show",
            name,
            "--property=LoadState,UnitFileState,ActiveState,SubState,MainPID,StatusText",
        ],
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn status(home: &Home, a: &ServiceStatusArgs) -> anyhow::Result<ExitCode> {
    let scope = scope(&a.scope);
    let home_abs = home_path(home);
    let dir = unit_dir(scope)?;
    let path = locate(&dir, &home_abs, None)?;
    let name = file_name(&path);
    let installed = path.exists();
    let (systemd, why) = match systemctl() {
        Ok(bin) => match show(&bin, scope, &name) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        },
        Err(why) => (None, Some(why)),
    };
    if a.json {
        let kernel = match remote::call(home, &remote::cmd("status"), |_| {}) {
            Ok(Some(data)) => json!({"running": true, "pid": data.pointer("/kernel/pid")}),
            _ => json!({"running": false, "pid": crate::pidfile::live_pid(home)}),
        };
        let prop = |k: &str| systemd.as_ref().and_then(|p| p.get(k)).cloned();
        output::print_json(&json!({
            "unit": name,
            "path": path.display().to_string(),
            "scope": scope.as_str(),
            "home": home_abs.display().to_string(),
            "installed": installed,
            "systemd": systemd.as_ref().map(|_| json!({
                "loadState": prop("LoadState"),
                "enabled": prop("UnitFileState"),
                "active": prop("ActiveState"),
                "subState": prop("SubState"),
                "mainPid": prop("MainPID").and_then(|p| p.parse::<u64>().ok()).filter(|p| *p > 0),
                "statusText": prop("StatusText").filter(|s| !s.is_empty()),
            })),
            "systemdUnavailable": why,
            "kernel": kernel,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if installed {
        println!("Unit:     {} ({} scope)", path.display(), scope.as_str());
    } else {
        println!(
            "Unit:     not installed ({} scope; it would be {})",
            scope.as_str(),
            path.display()
        );
    }
    match (&systemd, &why) {
        (Some(p), _) => {
            let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
            let mut facts = vec![
                non_empty(get("UnitFileState"), "not enabled"),
                format!(
                    "{} ({})",
                    non_empty(get("ActiveState"), "unknown"),
                    non_empty(get("SubState"), "-")
                ),
            ];
            if let Some(pid) = get("MainPID").parse::<u64>().ok().filter(|p| *p > 0) {
                facts.push(format!("main PID {pid}"));
            }
            println!("Systemd:  {}", facts.join(", "));
            if !get("StatusText").is_empty() {
                println!("Status:   {}", get("StatusText"));
            }
        }
        (None, Some(why)) => println!("Systemd:  {why}"),
        (None, None) => {}
    }
    super::kernel::status(home, false)
}

fn non_empty(s: &str, default: &str) -> String {
    if s.is_empty() {
        default.to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::args::{Cli, Command};
    use super::*;
    use clap::Parser;

    #[test]
    fn service_verbs_parse() {
        let cli = Cli::try_parse_from([
            "pons",
            "service",
            "install",
            "--user",
            "--print",
            "--watchdog-sec",
            "30",
        ])
        .unwrap();
        let Command::Service(ServiceCmd::Install(a)) = cli.command else {
            panic!("install")
        };
        assert!(a.scope.user && !a.scope.system && a.print);
        assert_eq!(a.watchdog_sec, Some(30));
        assert!(Cli::try_parse_from(["pons", "service", "install", "--user", "--system"]).is_err());
        let cli = Cli::try_parse_from(["pons", "service", "status", "--json", "--system"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Service(ServiceCmd::Status(ServiceStatusArgs { json: true, .. }))
        ));
        let cli = Cli::try_parse_from(["pons", "service", "uninstall"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Service(ServiceCmd::Uninstall(_))
        ));
    }
}
