//! `pons modules install` and `pons modules approve`: linking or copying a module directory into
//! `modules/`, the static audit, and storing the approval (base permissions, capabilities,
//! manifest hash) in permissions.yaml under its lock.

use std::path::Path;
use std::process::ExitCode;

use pons_reconciler::manifest::Manifest;
use pons_reconciler::permissions::{Capabilities, PermissionSet, PermissionsFile};
use serde_json::json;

use super::modules::find;
use super::{audit, offline, output};
use crate::home::Home;

pub(super) fn install(
    home: &Home,
    path: &Path,
    copy: bool,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let src = std::fs::canonicalize(path)
        .map_err(|e| anyhow::anyhow!("module directory {} not found: {e}", path.display()))?;
    let manifest_path = src.join("module.json");
    let bytes = std::fs::read(&manifest_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e}; a module directory needs a module.json",
            manifest_path.display()
        )
    })?;
    let manifest = offline::parse_manifest(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is invalid: {e}", manifest_path.display()))?;
    let id = manifest.id.clone();
    if id.contains('/') || id == "." || id == ".." || id.contains('\0') {
        anyhow::bail!(
            "module id `{id}` in {} cannot be used as a directory name under modules/; change the id",
            manifest_path.display()
        );
    }
    let target = home.modules_dir().join(&id);
    let mut created = false;
    match std::fs::symlink_metadata(&target) {
        Ok(_) if std::fs::canonicalize(&target).ok().as_deref() == Some(src.as_path()) => {}
        Ok(_) => anyhow::bail!(
            "{} already exists; uninstall it first with `pons modules uninstall {id}`",
            target.display()
        ),
        Err(_) => {
            std::fs::create_dir_all(home.modules_dir()).map_err(|e| {
                anyhow::anyhow!("cannot create {}: {e}", home.modules_dir().display())
            })?;
            if copy {
                copy_dir(&src, &target).map_err(|e| {
                    let _ = std::fs::remove_dir_all(&target);
                    anyhow::anyhow!("cannot copy {} to {}: {e}", src.display(), target.display())
                })?;
            } else {
                std::os::unix::fs::symlink(&src, &target).map_err(|e| {
                    anyhow::anyhow!("cannot link {} to {}: {e}", target.display(), src.display())
                })?;
            }
            created = true;
        }
    }
    let audit = audit::scan(&src);
    let caps = offline::default_capabilities(&manifest);
    let hash = offline::manifest_hash(&bytes);
    if !json {
        if created {
            let how = if copy { "copied" } else { "linked" };
            println!("Installed module `{id}` at {} ({how}).", target.display());
        } else {
            println!(
                "Module `{id}` is already installed at {}.",
                target.display()
            );
        }
        print!("{}", audit::render(&audit));
        print!("{}", describe_request(&manifest.permissions, &caps));
    }
    let decision = decide(yes, &id)?;
    let approved = match decision {
        Decision::Approve => {
            store_approval(home, &manifest, caps.clone(), &hash).map_err(|e| {
                anyhow::anyhow!(
                    "module `{id}` is installed at {} but approving it failed: {e:#}",
                    target.display()
                )
            })?;
            true
        }
        Decision::Declined => {
            if created {
                remove_installed(&target)?;
            }
            anyhow::bail!("approval of module `{id}` declined; it was not installed");
        }
        Decision::NotAsked => false,
    };
    if json {
        output::print_json(&json!({
            "module": id,
            "dir": target,
            "linked": !copy,
            "installed": true,
            "approved": approved,
            "manifestHash": hash,
            "permissions": manifest.permissions,
            "capabilities": caps,
            "audit": audit,
        }))?;
    } else if approved {
        println!("Module `{id}` approved; a running kernel starts it by itself.");
        warn_if_it_will_not_start(home, &id, &id);
    } else {
        println!("Module `{id}` is installed but not approved; approve it with `pons modules approve {id} --yes`.");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn approve(home: &Home, key: &str, yes: bool, json: bool) -> anyhow::Result<ExitCode> {
    let found = find(home, key)?;
    let manifest = found.manifest()?.clone();
    let id = manifest.id.clone();
    let hash = offline::manifest_hash(&found.bytes);
    let caps = offline::default_capabilities(&manifest);
    let perms = offline::read_permissions(home)?;
    let current = perms.modules.get(&id);
    let up_to_date = current.is_some_and(|e| {
        e.base_manifest_hash.eq_ignore_ascii_case(&hash) && e.base == manifest.permissions
    });
    if up_to_date {
        if json {
            output::print_json(
                &json!({"module": id, "approved": true, "changed": false, "manifestHash": hash}),
            )?;
        } else {
            println!("Module `{id}` is already approved and up to date.");
        }
        warn_if_it_will_not_start(home, &id, &found.dir_name);
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        if current.is_some() {
            println!(
                "{} changed since module `{id}` was approved; approving it again resets its runtime grants.",
                found.manifest_file().display()
            );
        }
        print!("{}", describe_request(&manifest.permissions, &caps));
    }
    match decide(yes, &id)? {
        Decision::Approve => {}
        Decision::Declined => anyhow::bail!("approval of module `{id}` cancelled"),
        Decision::NotAsked => anyhow::bail!(
            "stdin is not a terminal, so module `{id}` cannot be approved interactively; pass --yes to approve it"
        ),
    }
    store_approval(home, &manifest, caps, &hash)?;
    if json {
        output::print_json(
            &json!({"module": id, "approved": true, "changed": true, "manifestHash": hash}),
        )?;
    } else {
        println!("Module `{id}` approved; a running kernel picks it up by itself.");
    }
    warn_if_it_will_not_start(home, &id, &found.dir_name);
    Ok(ExitCode::SUCCESS)
}

/// An approval is no promise that the module runs: a missing entry point, a dependency cycle, a
/// missing runtime still block it. Say so at once rather than leave it to `pons status`. A module
/// blocked before its manifest was read (a directory name that is not UTF-8) is found by its
/// directory.
fn warn_if_it_will_not_start(home: &Home, id: &str, dir_name: &str) {
    let desired = offline::desired(home);
    if let Some(b) = desired
        .blocked
        .iter()
        .find(|b| b.id == id || b.dir_name == dir_name)
    {
        eprintln!(
            "warning: module `{id}` is approved but will not start: {}",
            b.reason
        );
    }
}

pub(super) enum Decision {
    Approve,
    Declined,
    /// Not a TTY and no --yes.
    NotAsked,
}

pub(super) fn decide(yes: bool, id: &str) -> anyhow::Result<Decision> {
    if yes {
        return Ok(Decision::Approve);
    }
    if !output::stdin_is_tty() {
        return Ok(Decision::NotAsked);
    }
    Ok(
        if output::confirm(&format!("Grant these permissions to module `{id}`?"))? {
            Decision::Approve
        } else {
            Decision::Declined
        },
    )
}

/// Stores the approval under the permissions.yaml lock: the entry is replaced (base permissions
/// with all six keys, capabilities, bare-hex hash, `baseGrantedAt`; runtime grants and
/// `firstSpawnAt` reset) and the services it provides are claimed where unclaimed.
pub(super) fn store_approval(
    home: &Home,
    m: &Manifest,
    caps: Capabilities,
    hash: &str,
) -> anyhow::Result<()> {
    let now = offline::now_iso();
    crate::store::update_permissions(home, |pf| {
        approve_entry(pf, m, caps.clone(), hash, &now);
        Ok(())
    })
}

/// The approval as a change of the parsed file (see [`store_approval`]).
pub(super) fn approve_entry(
    pf: &mut PermissionsFile,
    m: &Manifest,
    caps: Capabilities,
    hash: &str,
    now: &str,
) {
    pf.approve(&m.id, m.permissions.clone(), caps, hash, now);
    for service in &m.provides {
        if !pf.register_service_provider(service, &m.id) {
            eprintln!(
                "warning: service `{service}` is already claimed by module `{}` in permissions.yaml; module `{}` was approved without the claim.",
                pf.service_providers.get(service).map(String::as_str).unwrap_or("?"),
                m.id
            );
        }
    }
}

/// The permissions and capabilities to approve, as printed before asking.
pub(super) fn describe_request(p: &PermissionSet, caps: &Capabilities) -> String {
    let mut out = String::from("Permissions requested:\n");
    let fields = p.fields();
    if fields.iter().all(|(_, v)| v.is_empty()) {
        out.push_str("    none (no network, files, extra environment, processes or system info)\n");
    }
    for (name, values) in fields.iter().filter(|(_, v)| !v.is_empty()) {
        out.push_str(&format!("    {name:<6} {}\n", values.join(", ")));
    }
    out.push_str("Capabilities:\n");
    out.push_str(&format!(
        "    topics   {}\n",
        output::list_or_dash(&caps.topics)
    ));
    out.push_str(&format!(
        "    services {}\n",
        output::list_or_dash(&caps.services)
    ));
    out
}

/// Copies a directory tree; symlinks are copied as symlinks, `.git` is left out.
fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        if entry.file_name() == ".git" {
            continue;
        }
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if kind.is_dir() {
            copy_dir(&from, &to)?;
        } else {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Removes an installed module: only the link for a symlink, the tree for a copy.
pub(super) fn remove_installed(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot inspect {}: {e}", path.display()))?;
    let r = if meta.file_type().is_symlink() {
        std::fs::remove_file(path)
    } else {
        std::fs::remove_dir_all(path)
    };
    r.map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_module(dir: &Path, manifest: &serde_json::Value) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("module.json"),
            serde_json::to_vec_pretty(manifest).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn copy_and_remove_installed() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write_module(&src.join("sub"), &json!({"x":1}));
        std::fs::create_dir_all(src.join(".git")).unwrap();
        std::os::unix::fs::symlink("sub/module.json", src.join("link")).unwrap();
        let dst = tmp.path().join("dst");
        copy_dir(&src, &dst).unwrap();
        assert!(dst.join("sub/module.json").is_file());
        assert!(!dst.join(".git").exists());
        assert!(std::fs::symlink_metadata(dst.join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&src, &link).unwrap();
        remove_installed(&link).unwrap();
        assert!(
            src.join("sub/module.json").exists(),
            "a linked source is never deleted"
        );
        remove_installed(&dst).unwrap();
        assert!(!dst.exists());
    }

    #[test]
    fn request_description() {
        let p = PermissionSet {
            net: vec!["a.com".into()],
            env: vec!["K".into()],
            ..Default::default()
        };
        let caps = Capabilities {
            topics: vec!["t".into()],
            services: vec![],
        };
        assert_eq!(
            describe_request(&p, &caps),
            "Permissions requested:\n    net    a.com\n    env    K\nCapabilities:\n    topics   t\n    services -\n"
        );
    }
}
