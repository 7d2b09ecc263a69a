//! `pons permissions list | pending | grant | deny | revoke`: permissions.yaml through the locked
//! read-modify-write of `store`; a running kernel sees the change through its watcher.

use std::process::ExitCode;

use pons_reconciler::permissions::{
    ModuleEntry, PendingRequest, PermError, PermissionSet, PermissionsFile,
};
use serde_json::{json, Value};

use super::args::PermissionsCmd;
use super::{offline, output};
use crate::home::Home;

pub fn run(home: &Home, cmd: PermissionsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PermissionsCmd::List { module, json } => list(home, module.as_deref(), json),
        PermissionsCmd::Pending(f) => pending(home, f.json),
        PermissionsCmd::Grant {
            module,
            request,
            json,
        } => decide(home, &module, request.as_deref(), Decision::Grant, json),
        PermissionsCmd::Deny {
            module,
            request,
            json,
        } => decide(home, &module, request.as_deref(), Decision::Deny, json),
        PermissionsCmd::Revoke {
            module,
            kind,
            value,
            json,
        } => revoke(home, &module, kind.as_deref(), value.as_deref(), json),
    }
}

fn entry<'a>(file: &'a PermissionsFile, home: &Home, id: &str) -> anyhow::Result<&'a ModuleEntry> {
    file.modules.get(id).ok_or_else(|| {
        anyhow::anyhow!(
            "module `{id}` has no entry in {}; approve it with `pons modules approve {id}`",
            home.permissions_yaml().display()
        )
    })
}

fn list(home: &Home, module: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let file = offline::read_permissions(home)?;
    if let Some(id) = module {
        let e = entry(&file, home, id)?;
        let effective = file.effective(id).unwrap_or_default();
        if json {
            output::print_json(&json!({
                "moduleId": id, "base": e.base, "effective": effective, "pending": e.pending,
            }))?;
        } else {
            println!("Module `{id}`\n\nBase (approved with the manifest):");
            print!("{}", perm_lines(&e.base));
            println!("\nEffective (base + granted requests):");
            print!("{}", perm_lines(&effective));
            println!();
            print!("{}", pending_table(&e.pending));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        let modules: serde_json::Map<String, Value> = file
            .modules
            .iter()
            .map(|(id, e)| {
                (
                    id.clone(),
                    json!({"base": e.base, "effective": file.effective(id).unwrap_or_default(), "pending": e.pending}),
                )
            })
            .collect();
        output::print_json(&json!({ "modules": modules }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if file.modules.is_empty() {
        println!(
            "No module permissions in {}.",
            home.permissions_yaml().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = file
        .modules
        .iter()
        .map(|(id, e)| {
            let p = file.effective(id).unwrap_or_default();
            let mut row = vec![id.clone()];
            row.extend(
                [&p.net, &p.read, &p.write, &p.env, &p.run, &p.sys]
                    .map(|v| output::list_or_dash(v)),
            );
            row.push(e.pending.len().to_string());
            row
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["MODULE", "NET", "READ", "WRITE", "ENV", "RUN", "SYS", "PENDING"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

fn perm_lines(p: &PermissionSet) -> String {
    let fields = p.fields();
    let mut out = String::new();
    for (name, v) in fields.iter().filter(|(_, v)| !v.is_empty()) {
        out.push_str(&format!("    {name:<6} {}\n", v.join(", ")));
    }
    if out.is_empty() {
        out.push_str("    none\n");
    }
    out
}

/// Compact `net: a, b; env: X` rendering of a permission set.
fn perm_summary(p: &PermissionSet) -> String {
    let fields = p.fields();
    let parts: Vec<String> = fields
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| format!("{n}: {}", v.join(", ")))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

fn pending_table(pending: &[PendingRequest]) -> String {
    if pending.is_empty() {
        return "No pending requests.\n".into();
    }
    let rows: Vec<Vec<String>> = pending
        .iter()
        .map(|p| {
            vec![
                p.id.chars().take(8).collect(),
                perm_summary(&p.permissions),
                p.reason.clone().unwrap_or_else(|| "-".into()),
                p.requested_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    output::table(&["ID", "PERMISSIONS", "REASON", "REQUESTED"], &rows)
}

fn pending(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    let file = offline::read_permissions(home)?;
    let with: Vec<(&String, &ModuleEntry)> = file
        .modules
        .iter()
        .filter(|(_, e)| !e.pending.is_empty())
        .collect();
    if json {
        let modules: serde_json::Map<String, Value> = with
            .iter()
            .map(|(id, e)| ((*id).clone(), json!(e.pending)))
            .collect();
        output::print_json(&json!({ "modules": modules }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if with.is_empty() {
        println!("No pending permission requests.");
    }
    for (i, (id, e)) in with.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("Module `{id}`:");
        print!("{}", pending_table(&e.pending));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Decision {
    Grant,
    Deny,
}

/// The full ids of the pending requests of `entry` chosen by `prefix` (all when `None`); a
/// prefix must match exactly one request (an exact id always wins).
fn select_requests(
    file: &PermissionsFile,
    id: &str,
    prefix: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let Some(entry) = file.modules.get(id) else {
        return Err(PermError::NotApproved(id.to_string()).into());
    };
    match prefix {
        None => Ok(entry.pending.iter().map(|p| p.id.clone()).collect()),
        Some(prefix) => {
            let i = file.resolve_request(id, Some(prefix))?;
            Ok(vec![entry.pending[i].id.clone()])
        }
    }
}

fn decide(
    home: &Home,
    id: &str,
    prefix: Option<&str>,
    d: Decision,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let now = offline::now_iso();
    let done = crate::store::update_permissions(home, |file| {
        entry(file, home, id)?;
        let chosen = select_requests(file, id, prefix)?;
        for req in &chosen {
            match d {
                Decision::Grant => file.grant(id, Some(req), &now)?,
                Decision::Deny => file.deny(id, Some(req), &now)?,
            };
        }
        Ok(chosen)
    })?;
    let verb = if d == Decision::Grant {
        "grant"
    } else {
        "deny"
    };
    if json {
        output::print_json(&json!({"module": id, "decision": verb, "requests": done}))?;
    } else if done.is_empty() {
        println!("No pending requests for module `{id}`.");
    } else {
        let past = if d == Decision::Grant {
            "Granted"
        } else {
            "Denied"
        };
        for r in &done {
            println!(
                "{past} request {} for module `{id}`.",
                r.chars().take(8).collect::<String>()
            );
        }
        if d == Decision::Grant {
            println!("A running kernel restarts `{id}` with the new permissions by itself.");
        } else {
            println!("Later requests for these values are denied without asking again.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(
    home: &Home,
    id: &str,
    kind: Option<&str>,
    value: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    crate::store::update_permissions(home, |file| {
        entry(file, home, id)?;
        match kind {
            None => {
                file.revoke(id);
            }
            Some(k) => {
                if !file.revoke_value(id, k, value) {
                    anyhow::bail!(
                        "unknown permission type `{k}`; use one of net, read, write, env, run, sys"
                    );
                }
            }
        }
        Ok(())
    })?;
    let what = match (kind, value) {
        (Some(k), Some(v)) => format!("{k}:{v}"),
        (Some(k), None) => k.to_string(),
        _ => "all permissions".into(),
    };
    if json {
        output::print_json(&json!({"module": id, "revoked": what}))?;
    } else {
        println!("Revoked {what} for module `{id}`.");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(ids: &[&str]) -> PermissionsFile {
        let mut f = PermissionsFile::default();
        f.modules.insert(
            "m".into(),
            ModuleEntry {
                pending: ids
                    .iter()
                    .map(|i| PendingRequest {
                        id: i.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        );
        f
    }

    #[test]
    fn request_prefixes() {
        let f = file_with(&["0b9d2c4e-1", "0b9d2c4e-2", "abcd"]);
        assert_eq!(select_requests(&f, "m", Some("ab")).unwrap(), vec!["abcd"]);
        assert_eq!(select_requests(&f, "m", None).unwrap().len(), 3);
        let err = select_requests(&f, "m", Some("0b9d"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("matches 2 requests"), "{err}");
        assert!(select_requests(&f, "m", Some("zz")).is_err());
        assert!(select_requests(&f, "x", None)
            .unwrap_err()
            .to_string()
            .contains("pons modules approve x"));
        assert_eq!(
            select_requests(&f, "m", Some("0b9d2c4e-2")).unwrap(),
            vec!["0b9d2c4e-2"]
        );
    }

    #[test]
    fn renderings() {
        let p = PermissionSet {
            net: vec!["a".into(), "b".into()],
            env: vec!["X".into()],
            ..Default::default()
        };
        assert_eq!(perm_summary(&p), "net: a, b; env: X");
        assert_eq!(perm_lines(&PermissionSet::default()), "    none\n");
        let t = pending_table(&[PendingRequest {
            id: "0123456789".into(),
            permissions: p,
            reason: Some("why".into()),
            requested_at: None,
        }]);
        assert!(t.contains("01234567  net: a, b; env: X  why     -"), "{t}");
    }
}
