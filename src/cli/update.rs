//! `pons modules update <ID> | --all [--yes] [--json]`: brings git-installed modules up to date
//! with `git pull --ff-only`, run as a child process in the module directory (no shell, stdin
//! closed, no credential prompt from git itself). Linked modules are skipped (their developer
//! manages the source), and so are modules whose directory is not a git checkout.
//!
//! After a pull, a module.json that no longer matches its approval in permissions.yaml needs
//! approving again (the kernel blocks the module until then): with `--yes` it is approved, on a
//! terminal the operator is shown the request and asked (as `pons modules approve` does),
//! otherwise the output says so and names the command. A pull that changed only code leaves the
//! approval alone; the running module keeps the old code until `pons modules restart`.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use serde::Serialize;
use serde_json::json;

use super::approve::{self, Decision};
use super::modules::{find, scan, Found};
use super::{offline, output};
use crate::home::Home;

/// What happened to one module.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    id: String,
    dir: String,
    /// `updated`, `upToDate`, `skipped` or `failed`.
    status: &'static str,
    /// Whether the pull brought new commits.
    updated: bool,
    /// HEAD before and after the pull.
    from: Option<String>,
    to: Option<String>,
    /// Why it was skipped, or what failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// After a pull: `unchanged`, `approved`, `required`, `declined`, `notApproved` or
    /// `invalid` (module.json unreadable or invalid after the pull).
    approval: Option<&'static str>,
}

impl Outcome {
    fn failed(&self) -> bool {
        self.status == "failed" || self.approval == Some("invalid")
    }
}

pub(super) fn run(
    home: &Home,
    id: Option<&str>,
    all: bool,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let dir = home.modules_dir();
    if !dir.is_dir() {
        anyhow::bail!(
            "no modules directory at {}; nothing to update (install a module with `pons modules install <path>`)",
            dir.display()
        );
    }
    let targets = match (all, id) {
        (false, Some(id)) => vec![find(home, id)?],
        _ => scan(home)?,
    };
    let outcomes: Vec<Outcome> = targets
        .iter()
        .map(|f| update_one(home, f, yes, !json && output::stdin_is_tty()))
        .collect();
    if json {
        output::print_json(&json!({ "updated": outcomes }))?;
    } else if outcomes.is_empty() {
        println!("No modules in {}; nothing to update.", dir.display());
    } else {
        let running = crate::pidfile::live_pid(home).is_some();
        for o in &outcomes {
            report(o, running);
        }
    }
    Ok(if outcomes.iter().any(Outcome::failed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn update_one(home: &Home, f: &Found, yes: bool, interactive: bool) -> Outcome {
    let mut o = Outcome {
        id: f.id(),
        dir: f.dir_name.clone(),
        status: "skipped",
        updated: false,
        from: None,
        to: None,
        error: None,
        approval: None,
    };
    if f.linked {
        o.error = Some(format!(
            "symlinked: modules/{} links to a directory its developer manages; update it there",
            f.dir_name
        ));
        return o;
    }
    if std::fs::symlink_metadata(f.path.join(".git")).is_err() {
        o.error = Some(format!(
            "not git-installed: {} is not a git checkout; reinstall it to update it",
            f.path.display()
        ));
        return o;
    }
    o.from = git(&f.path, &["rev-parse", "HEAD"]).ok();
    if let Err(e) = git(&f.path, &["pull", "--ff-only"]) {
        o.status = "failed";
        o.error = Some(format!(
            "`git pull --ff-only` failed in {}: {e}; resolve it there with git, then update again",
            f.path.display()
        ));
        return o;
    }
    o.to = git(&f.path, &["rev-parse", "HEAD"]).ok();
    o.updated = o.from != o.to;
    o.status = if o.updated { "updated" } else { "upToDate" };
    let (approval, error) = reapprove(home, f, yes, interactive);
    o.approval = Some(approval);
    o.error = error;
    o
}

/// Checks module.json against its approval after a pull, approving it again when allowed.
fn reapprove(
    home: &Home,
    f: &Found,
    yes: bool,
    interactive: bool,
) -> (&'static str, Option<String>) {
    let file = f.path.join("module.json");
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) => {
            return (
                "invalid",
                Some(format!(
                "{} cannot be read after the update ({e}); the module is blocked until it is fixed",
                file.display()
            )),
            )
        }
    };
    let manifest = match offline::parse_manifest(&bytes) {
        Ok(m) => m,
        Err(e) => {
            return (
                "invalid",
                Some(format!(
                    "{} is invalid after the update ({e}); the module is blocked until it is fixed",
                    file.display()
                )),
            )
        }
    };
    let perms = match offline::read_permissions(home) {
        Ok(p) => p,
        Err(e) => return ("invalid", Some(format!("{e:#}"))),
    };
    let Some(entry) = perms.modules.get(&manifest.id) else {
        return ("notApproved", None);
    };
    let hash = offline::manifest_hash(&bytes);
    if entry.base_manifest_hash.is_empty() || entry.base_manifest_hash.eq_ignore_ascii_case(&hash) {
        return ("unchanged", None);
    }
    let caps = offline::default_capabilities(&manifest);
    let decision = if yes {
        Decision::Approve
    } else if !interactive {
        Decision::NotAsked
    } else {
        println!(
            "{} of module `{}` changed with the update; it needs approving again.",
            file.display(),
            manifest.id
        );
        print!(
            "{}",
            approve::describe_request(&manifest.permissions, &caps)
        );
        match approve::decide(false, &manifest.id) {
            Ok(d) => d,
            Err(e) => return ("required", Some(format!("{e:#}"))),
        }
    };
    match decision {
        Decision::Approve => match approve::store_approval(home, &manifest, caps, &hash) {
            Ok(()) => ("approved", None),
            Err(e) => (
                "required",
                Some(format!("approving it again failed: {e:#}")),
            ),
        },
        Decision::Declined => ("declined", None),
        Decision::NotAsked => ("required", None),
    }
}

/// Runs `git -C <dir> <args>`; the trimmed stdout, or git's message (its `fatal:`/`error:`
/// lines when there are any; hints left out).
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git ({e}); install git"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .collect();
    // git's verdict, without the progress lines before it.
    let verdict: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("fatal:") || l.starts_with("error:"))
        .collect();
    let msg = if verdict.is_empty() { lines } else { verdict }.join(" ");
    Err(if msg.is_empty() {
        format!("git exited with {}", out.status)
    } else {
        msg.trim_end_matches('.').to_string()
    })
}

fn short(sha: &Option<String>) -> String {
    sha.as_deref()
        .map_or_else(|| "?".into(), |s| s.chars().take(7).collect())
}

/// The human lines for one module (failures on stderr).
fn report(o: &Outcome, kernel_running: bool) {
    let id = &o.id;
    let dir = &o.dir;
    match o.status {
        "skipped" => println!(
            "Skipped `{id}`: {}.",
            o.error.as_deref().unwrap_or("nothing to do")
        ),
        "failed" => eprintln!(
            "error: module `{id}`: {}",
            o.error.as_deref().unwrap_or("the update failed")
        ),
        "updated" => println!("Updated `{id}` ({} -> {}).", short(&o.from), short(&o.to)),
        _ => println!("`{id}` is already up to date ({}).", short(&o.to)),
    }
    let line = match o.approval {
        Some("unchanged") if o.updated && kernel_running => format!(
            "  module.json is unchanged; restart it with `pons modules restart {id}` to run the new code."
        ),
        Some("approved") => {
            "  module.json changed and was approved again; a running kernel restarts it by itself."
                .into()
        }
        Some("required") => format!(
            "  module.json changed: the module is blocked until you approve it again with `pons modules approve {dir}`{}.",
            o.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        ),
        Some("declined") => format!(
            "  module.json changed and approval was declined: the module is blocked until `pons modules approve {dir}`."
        ),
        Some("notApproved") => {
            format!("  it is not approved; approve it with `pons modules approve {dir}`.")
        }
        Some("invalid") => {
            eprintln!(
                "error: module `{id}`: {}",
                o.error.as_deref().unwrap_or("module.json is invalid")
            );
            return;
        }
        _ => return,
    };
    println!("{line}");
}
