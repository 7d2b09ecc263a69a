//! The systemd unit `pons service install` writes: its text, its name, where it goes, and the
//! home it serves read back from an installed file. No IO here except the directory lookup.
//!
//! Quoting follows systemd.syntax / systemd.service "Command lines": a value is wrapped in double
//! quotes with `\` and `"` escaped; `%` is doubled everywhere (specifiers expand in every
//! setting); `$` is doubled in command lines (variable expansion), not in `Environment=`.

use std::path::{Path, PathBuf};

/// Which systemd instance manages the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The user's manager (`systemctl --user`).
    User,
    /// The system manager.
    System,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::System => "system",
        }
    }

    /// `systemctl` arguments before the verb.
    pub fn systemctl_args(self) -> &'static [&'static str] {
        match self {
            Scope::User => &["--user"],
            Scope::System => &[],
        }
    }

    /// `systemctl --user ` or `systemctl ` (for the hints we print).
    pub fn systemctl(self) -> &'static str {
        match self {
            Scope::User => "systemctl --user",
            Scope::System => "systemctl",
        }
    }

    /// The target that pulls the unit in at boot (or at login, for a user).
    pub fn wanted_by(self) -> &'static str {
        match self {
            Scope::User => "default.target",
            Scope::System => "multi-user.target",
        }
    }

    /// Where units of this scope go: `$XDG_CONFIG_HOME/systemd/user` (else
    /// `~/.config/systemd/user`), or `/etc/systemd/system`.
    pub fn unit_dir(self, env: impl Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
        match self {
            Scope::System => Ok(PathBuf::from("/etc/systemd/system")),
            Scope::User => {
                if let Some(x) = env("XDG_CONFIG_HOME").filter(|x| Path::new(x).is_absolute()) {
                    return Ok(Path::new(&x).join("systemd/user"));
                }
                match env("HOME").filter(|h| Path::new(h).is_absolute()) {
                    Some(h) => Ok(Path::new(&h).join(".config/systemd/user")),
                    None => Err(
                        "neither XDG_CONFIG_HOME nor HOME is set to an absolute path, so \
                         there is no user unit directory; set HOME or use --system"
                            .into(),
                    ),
                }
            }
        }
    }
}

/// What goes into the unit.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    pub scope: Scope,
    /// Absolute path of the pons binary.
    pub exe: PathBuf,
    /// Absolute path of the home.
    pub home: PathBuf,
    /// `PATH` for the kernel (and so for finding module interpreters), if any.
    pub path_env: Option<String>,
    /// `User=` / `Group=` (numeric) for a system unit serving a home that is not root's.
    pub run_as: Option<(u32, u32)>,
    pub timeout_stop_sec: u64,
    /// `WatchdogSec=`; `None` leaves the watchdog off.
    pub watchdog_sec: Option<u64>,
}

/// systemd's start timeout, stated in the unit: the kernel sends READY=1 well before it.
pub const TIMEOUT_START_SEC: u64 = 90;
/// The least `TimeoutStopSec=` the unit gets.
pub const MIN_TIMEOUT_STOP_SEC: u64 = 90;

/// `TimeoutStopSec=` for an ordered shutdown of `tiers` tiers: each tier takes at most the
/// shutdown grace, then `term_grace` between SIGTERM and SIGKILL; plus 10 s for the kernel
/// itself. Never below [`MIN_TIMEOUT_STOP_SEC`], so modules added later fit too.
pub fn timeout_stop_sec(shutdown_grace_ms: u64, term_grace_ms: u64, tiers: usize) -> u64 {
    let per_tier = shutdown_grace_ms.saturating_add(term_grace_ms);
    let ms = per_tier.saturating_mul(tiers as u64).saturating_add(10_000);
    ms.div_ceil(1000).max(MIN_TIMEOUT_STOP_SEC)
}

/// The unit's text. Fails on a path systemd cannot take (a newline in it).
pub fn render(spec: &UnitSpec) -> Result<String, String> {
    for (what, p) in [("the pons binary", &spec.exe), ("the home", &spec.home)] {
        let s = p.to_string_lossy();
        if s.contains('\n') || s.contains('\r') {
            return Err(format!(
                "{what} {s:?} has a line break in its path, which a systemd unit cannot hold"
            ));
        }
        if !p.is_absolute() {
            return Err(format!("{what} {s:?} is not an absolute path"));
        }
    }
    let home = spec.home.to_string_lossy();
    let exe = spec.exe.to_string_lossy();
    let sc = spec.scope;
    let mut u = String::new();
    let mut line = |s: &str| {
        u.push_str(s);
        u.push('\n');
    };
    line(&format!(
        "# The pons kernel of the home {}, written by `pons service install`.",
        comment(&home)
    ));
    line(&format!(
        "# `pons service uninstall --{}` removes it; `{} edit <unit>` adds settings (an",
        sc.as_str(),
        sc.systemctl()
    ));
    line("# EnvironmentFile= for the ${VAR}s of config.yaml, say) that survive a reinstall.");
    line("[Unit]");
    line(&format!(
        "Description={}",
        specifiers(&format!("pons kernel (home {home})"))
    ));
    if sc == Scope::System {
        line("Wants=network-online.target");
        line("After=network-online.target");
    }
    line("");
    line("[Service]");
    line("Type=notify");
    line("NotifyAccess=main");
    line(&format!("ExecStart={} kernel start", exec_arg(&exe)));
    line("ExecReload=/bin/kill -HUP $MAINPID");
    line(&format!(
        "Environment={}",
        env_assignment("PONS_HOME", &home)
    ));
    if let Some(path) = spec.path_env.as_deref().filter(|p| !p.is_empty()) {
        line(&format!("Environment={}", env_assignment("PATH", path)));
    }
    if let Some((uid, gid)) = spec.run_as {
        line(&format!("User={uid}"));
        line(&format!("Group={gid}"));
    }
    line("# SIGTERM to the kernel alone: it stops the modules in order (dependents first),");
    line("# then whatever is left in the cgroup gets SIGKILL.");
    line("KillMode=mixed");
    line(&format!("TimeoutStartSec={TIMEOUT_START_SEC}"));
    line(&format!("TimeoutStopSec={}", spec.timeout_stop_sec));
    line("Restart=on-failure");
    line("RestartSec=2");
    if let Some(w) = spec.watchdog_sec.filter(|w| *w > 0) {
        line(&format!("WatchdogSec={w}"));
    }
    line("");
    line("[Install]");
    line(&format!("WantedBy={}", sc.wanted_by()));
    Ok(u)
}

/// `pons.service` for the default home (`~/.pons`), else `pons-<name>.service` with `<name>`
/// taken from the home's directory name (its parent's when that is `pons` / `.pons`).
pub fn unit_name(home: &Path, is_default: bool) -> String {
    if is_default {
        return "pons.service".into();
    }
    let clean = |p: Option<&std::ffi::OsStr>| -> String {
        let s = p.map(|s| s.to_string_lossy()).unwrap_or_default();
        let s: String = s
            .trim_start_matches('.')
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        s.trim_matches('-').to_string()
    };
    let mut name = clean(home.file_name());
    if name.is_empty() || name.eq_ignore_ascii_case("pons") {
        name = clean(home.parent().and_then(|p| p.file_name()));
    }
    if name.is_empty() {
        "pons-home.service".into()
    } else {
        format!("pons-{name}.service")
    }
}

/// Checks a unit name given with `--name` and adds `.service` when it has no suffix.
pub fn checked_name(name: &str) -> Result<String, String> {
    let base = name.strip_suffix(".service").unwrap_or(name);
    let valid = !base.is_empty()
        && base.len() <= 200
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if valid {
        Ok(format!("{base}.service"))
    } else {
        Err(format!(
            "--name {name:?} is not a systemd unit name: use letters, digits and `_-.:` only"
        ))
    }
}

/// The home an installed unit serves (its `Environment="PONS_HOME=…"`), if it is one of ours.
pub fn home_of_unit(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|l| {
        let value = l.trim().strip_prefix("Environment=")?;
        let assignment = unquote(value).unwrap_or_else(|| value.to_string());
        assignment
            .strip_prefix("PONS_HOME=")
            .map(|h| PathBuf::from(h.replace("%%", "%")))
    })
}

/// `"PONS_HOME=/a b"` with systemd's escapes.
fn env_assignment(key: &str, value: &str) -> String {
    quote(&specifiers(&format!("{key}={value}")))
}

/// One command-line word: quoted, `%` and `$` doubled.
fn exec_arg(s: &str) -> String {
    let s = specifiers(s).replace('$', "$$");
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        quote(&s)
    } else {
        s
    }
}

fn specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The inverse of [`quote`] for one whole value (`None` when it is not one quoted word).
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// A path in a `#` comment (one line).
fn comment(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scope: Scope) -> UnitSpec {
        UnitSpec {
            scope,
            exe: "/usr/local/bin/pons".into(),
            home: "/srv/my home/100%".into(),
            path_env: Some("/usr/bin:/bin".into()),
            run_as: None,
            timeout_stop_sec: 90,
            watchdog_sec: None,
        }
    }

    #[test]
    fn user_unit_text() {
        let u = render(&spec(Scope::User)).unwrap();
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "ExecStart=/usr/local/bin/pons kernel start",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Environment=\"PONS_HOME=/srv/my home/100%%\"",
            "Environment=\"PATH=/usr/bin:/bin\"",
            "KillMode=mixed",
            "TimeoutStopSec=90",
            "Restart=on-failure",
            "WantedBy=default.target",
            "Description=pons kernel (home /srv/my home/100%%)",
        ] {
            assert!(u.lines().any(|l| l == line), "{line:?} missing in\n{u}");
        }
        assert!(!u.contains("WatchdogSec"), "{u}");
        assert!(!u.contains("network-online"), "{u}");
        assert_eq!(
            home_of_unit(&u).as_deref(),
            Some(Path::new("/srv/my home/100%"))
        );
    }

    #[test]
    fn system_unit_with_user_and_watchdog() {
        let mut s = spec(Scope::System);
        s.run_as = Some((1000, 1001));
        s.watchdog_sec = Some(30);
        s.exe = "/opt/my pons/$bin/pons".into();
        let u = render(&s).unwrap();
        for line in [
            "User=1000",
            "Group=1001",
            "WatchdogSec=30",
            "WantedBy=multi-user.target",
            "After=network-online.target",
            "ExecStart=\"/opt/my pons/$$bin/pons\" kernel start",
        ] {
            assert!(u.lines().any(|l| l == line), "{line:?} missing in\n{u}");
        }
        s.home = "/a\nb".into();
        assert!(render(&s).unwrap_err().contains("line break"));
        s.home = "rel".into();
        assert!(render(&s).unwrap_err().contains("not an absolute path"));
    }

    #[test]
    fn names() {
        assert_eq!(unit_name(Path::new("/root/.pons"), true), "pons.service");
        assert_eq!(
            unit_name(Path::new("/srv/demo"), false),
            "pons-demo.service"
        );
        assert_eq!(
            unit_name(Path::new("/home/bob/.pons"), false),
            "pons-bob.service"
        );
        assert_eq!(
            unit_name(Path::new("/srv/my app"), false),
            "pons-my-app.service"
        );
        assert_eq!(unit_name(Path::new("/pons"), false), "pons-home.service");
        assert_eq!(checked_name("edge").unwrap(), "edge.service");
        assert_eq!(checked_name("edge.service").unwrap(), "edge.service");
        assert!(checked_name("a/b").is_err());
        assert!(checked_name("").is_err());
    }

    #[test]
    fn stop_timeout_covers_the_tiers() {
        assert_eq!(timeout_stop_sec(5000, 2000, 1), 90);
        assert_eq!(timeout_stop_sec(5000, 2000, 20), 150);
        assert_eq!(timeout_stop_sec(60_000, 2000, 2), 134);
    }

    #[test]
    fn unit_dirs() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            Scope::User.unit_dir(env).unwrap(),
            Path::new("/home/u/.config/systemd/user")
        );
        let xdg = |k: &str| match k {
            "XDG_CONFIG_HOME" => Some("/x".to_string()),
            _ => None,
        };
        assert_eq!(
            Scope::User.unit_dir(xdg).unwrap(),
            Path::new("/x/systemd/user")
        );
        assert!(Scope::User.unit_dir(|_| None).is_err());
        assert_eq!(
            Scope::System.unit_dir(|_| None).unwrap(),
            Path::new("/etc/systemd/system")
        );
    }

    #[test]
    fn foreign_units_have_no_home() {
        assert_eq!(home_of_unit("[Service]\nEnvironment=FOO=1\n"), None);
        assert_eq!(
            home_of_unit("Environment=\"PONS_HOME=/a\\\"b\"\n").as_deref(),
            Some(Path::new("/a\"b"))
        );
    }
}
