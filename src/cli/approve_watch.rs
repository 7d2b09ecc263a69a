//! `pons modules approve <id> --watch`: the development loop of a module being edited. It runs in
//! the foreground and approves that one module's module.json again each time it changes, so a
//! running kernel restarts the module with the new manifest instead of keeping it blocked
//! ("manifest hash mismatch"). Nothing changes in what homes enforce: the approval is the one
//! `pons modules approve` stores, made only while the command runs, only for that module.
//!
//! Every change prints what it does to the module's permissions, capabilities and provided
//! services. A change that only narrows them (or leaves them alone) is approved at once; one
//! that widens them is asked about on a terminal, approved with `--yes`, and otherwise refused
//! (the module stays blocked until the next change or an explicit approval). SIGINT or SIGTERM
//! ends the loop (exit 0).

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pons_reconciler::manifest::Manifest;
use pons_reconciler::permissions::{Capabilities, PermissionSet, PermissionsFile};

use super::approve::{describe_request, store_approval};
use super::modules::find;
use super::{offline, output};
use crate::home::Home;

/// How often module.json is read (a small file: comparing its bytes is the whole check).
const POLL: Duration = Duration::from_millis(200);

/// Set by SIGINT / SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);
/// A yes/no question is waiting on the terminal: a signal then exits at once (the blocking read
/// would otherwise wait for Enter), leaving permissions.yaml as it was.
static PROMPTING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    if PROMPTING.load(Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> anyhow::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only touches atomics and `_exit`.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            anyhow::bail!(
                "cannot handle signal {sig}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Sleeps `d` unless a stop signal arrives first; true when stopping.
fn wait(d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if STOP.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    STOP.load(Ordering::SeqCst)
}

pub(super) fn watch(home: &Home, key: &str, yes: bool) -> anyhow::Result<ExitCode> {
    install_signal_handlers()?;
    let found = find(home, key)?;
    let file = found.manifest_file();
    let id = found.id();
    println!(
        "Watching {} to approve module `{id}` again whenever it changes (Ctrl-C stops).",
        file.display()
    );
    if !yes {
        println!("A change that widens its permissions is asked about{}; pass --yes to approve those too.",
            if output::stdin_is_tty() { "" } else { " (stdin is no terminal: such changes are refused)" });
    }
    let mut last: Option<Vec<u8>> = None;
    let mut unreadable = false;
    loop {
        match std::fs::read(&file) {
            Ok(bytes) => {
                unreadable = false;
                if last.as_ref() != Some(&bytes) {
                    step(home, &file, &id, &bytes, yes)?;
                    last = Some(bytes);
                }
            }
            Err(e) if !unreadable => {
                unreadable = true;
                last = None;
                println!(
                    "cannot read {}: {e}; waiting for it to come back",
                    file.display()
                );
            }
            Err(_) => {}
        }
        if wait(POLL) {
            break;
        }
    }
    println!("Stopped watching module `{id}`.");
    Ok(ExitCode::SUCCESS)
}

/// One version of module.json: report it, and approve it unless it widens what the module may
/// do and nobody said yes.
fn step(home: &Home, file: &Path, id: &str, bytes: &[u8], yes: bool) -> anyhow::Result<()> {
    let manifest = match offline::parse_manifest(bytes) {
        Ok(m) => m,
        Err(e) => {
            println!(
                "{} is invalid: {e}; not approved, waiting for the next change",
                file.display()
            );
            return Ok(());
        }
    };
    if manifest.id != id {
        println!(
            "{} now says id `{}`; this command approves only module `{id}`: not approved, waiting for the next change (or run `pons modules approve {}`)",
            file.display(),
            manifest.id,
            manifest.id
        );
        return Ok(());
    }
    let hash = offline::manifest_hash(bytes);
    let caps = offline::default_capabilities(&manifest);
    let perms = offline::read_permissions(home)?;
    let current = perms.modules.get(id);
    if current.is_some_and(|e| {
        e.base_manifest_hash.eq_ignore_ascii_case(&hash) && e.base == manifest.permissions
    }) {
        println!("Module `{id}` is approved and up to date.");
        return Ok(());
    }
    let changes = match current {
        Some(entry) => diff(
            &entry.base,
            entry.capabilities.as_ref(),
            &provided_by(&perms, id),
            &manifest,
            &caps,
        ),
        None => Vec::new(),
    };
    let widens = current.is_none() || changes.iter().any(|c| c.added);
    match current {
        None => {
            println!("Module `{id}` is not approved yet.");
            print!("{}", describe_request(&manifest.permissions, &caps));
        }
        Some(_) if changes.is_empty() => println!(
            "{} changed; permissions, capabilities and provided services did not.",
            file.display()
        ),
        Some(_) => {
            println!("{} changed:", file.display());
            print!("{}", render(&changes));
        }
    }
    if current.is_some_and(|e| !e.dynamic.is_empty()) {
        println!("Approving it again drops the permissions granted to it at run time.");
    }
    if widens && !yes {
        let approved = if output::stdin_is_tty() {
            PROMPTING.store(true, Ordering::SeqCst);
            let answer = output::confirm(&format!("Grant this to module `{id}`?"));
            PROMPTING.store(false, Ordering::SeqCst);
            answer?
        } else {
            false
        };
        if !approved {
            println!(
                "Not approved: this would widen what module `{id}` may do, and a running kernel keeps it blocked until it is approved; answer on a terminal, run with --yes, or change module.json again."
            );
            return Ok(());
        }
    }
    store_approval(home, &manifest, caps, &hash)?;
    println!(
        "Module `{id}` approved again (manifest {}); a running kernel restarts it with this manifest.",
        hash.get(..12).unwrap_or(&hash)
    );
    Ok(())
}

/// The services permissions.yaml lists as provided by module `id`.
fn provided_by(perms: &PermissionsFile, id: &str) -> Vec<String> {
    perms
        .service_providers
        .iter()
        .filter(|(_, m)| m.as_str() == id)
        .map(|(s, _)| s.clone())
        .collect()
}

/// One value that a new manifest adds to, or removes from, what is approved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    /// `permissions.net`, `capabilities.topics`, `provides`, …
    field: String,
    value: String,
    added: bool,
}

/// What `manifest` (with its capabilities `caps`) changes against the approved permissions,
/// capabilities and provided services, field by field, removals first.
fn diff(
    base: &PermissionSet,
    approved_caps: Option<&Capabilities>,
    provided: &[String],
    manifest: &Manifest,
    caps: &Capabilities,
) -> Vec<Change> {
    let mut out = Vec::new();
    let mut compare = |field: &str, old: &[String], new: &[String]| {
        for v in old.iter().filter(|v| !new.contains(v)) {
            out.push(Change {
                field: field.to_string(),
                value: v.clone(),
                added: false,
            });
        }
        for v in new.iter().filter(|v| !old.contains(v)) {
            out.push(Change {
                field: field.to_string(),
                value: v.clone(),
                added: true,
            });
        }
    };
    for ((name, old), (_, new)) in base.fields().iter().zip(manifest.permissions.fields()) {
        compare(&format!("permissions.{name}"), old, new);
    }
    let empty = Capabilities::default();
    let old_caps = approved_caps.unwrap_or(&empty);
    compare("capabilities.topics", &old_caps.topics, &caps.topics);
    compare("capabilities.services", &old_caps.services, &caps.services);
    // A service another module holds shows as added too: the approval tries to claim it.
    compare("provides", provided, &manifest.provides);
    out
}

/// `  + permissions.read  ../../lib` lines.
fn render(changes: &[Change]) -> String {
    let width = changes.iter().map(|c| c.field.len()).max().unwrap_or(0);
    changes
        .iter()
        .map(|c| {
            format!(
                "  {} {:<width$}  {}\n",
                if c.added { '+' } else { '-' },
                c.field,
                c.value
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(json: &str) -> Manifest {
        offline::parse_manifest(json.as_bytes()).unwrap()
    }

    #[test]
    fn diff_lists_removals_and_additions_per_field() {
        let base = PermissionSet {
            read: vec![".".into()],
            net: vec!["a.com".into()],
            ..Default::default()
        };
        let approved = Capabilities {
            topics: vec!["t:a".into()],
            services: vec![],
        };
        let m = manifest(
            r#"{"id":"m","name":"M","provides":["svc"],"permissions":{"read":[".","../../lib"]}}"#,
        );
        let caps = Capabilities {
            topics: vec!["t:a".into(), "t:b".into()],
            services: vec![],
        };
        let changes = diff(&base, Some(&approved), &[], &m, &caps);
        let text = render(&changes);
        assert_eq!(
            text,
            "  - permissions.net      a.com\n  + permissions.read     ../../lib\n  + capabilities.topics  t:b\n  + provides             svc\n"
        );
        assert!(changes.iter().any(|c| c.added));
    }

    #[test]
    fn narrowing_and_reordering_add_nothing() {
        let base = PermissionSet {
            read: vec![".".into(), "/srv".into()],
            env: vec!["A".into(), "B".into()],
            ..Default::default()
        };
        let m = manifest(r#"{"id":"m","name":"M","permissions":{"read":["."],"env":["B","A"]}}"#);
        let caps = Capabilities::default();
        let changes = diff(&base, Some(&caps), &[], &m, &caps);
        assert_eq!(
            changes,
            [Change {
                field: "permissions.read".into(),
                value: "/srv".into(),
                added: false
            }]
        );
        assert!(diff(
            &base,
            Some(&caps),
            &[],
            &manifest(
                r#"{"id":"m","name":"M","permissions":{"read":["/srv","."],"env":["A","B"]}}"#
            ),
            &caps
        )
        .is_empty());
    }
}
