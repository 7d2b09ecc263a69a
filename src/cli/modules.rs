//! `pons modules list | install | approve | uninstall | restart`. Everything but `restart` works
//! on the files only; a running kernel sees the changes through its watcher (no signal is sent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pons_reconciler::manifest::Manifest;
use pons_reconciler::permissions::{Capabilities, PermissionSet, PermissionsFile};
use serde_json::{json, Value};

use super::args::ModulesCmd;
use super::{audit, offline, output, remote};
use crate::control::api::Request;
use crate::home::Home;

pub fn run(home: &Home, cmd: ModulesCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ModulesCmd::List(f) => list(home, f.json),
        ModulesCmd::Install {
            path,
            copy,
            yes,
            json,
        } => install(home, &path, copy, yes, json),
        ModulesCmd::Approve { id, yes, json } => approve(home, &id, yes, json),
        ModulesCmd::Uninstall { id, json } => uninstall(home, &id, json),
        ModulesCmd::Restart { id, json } => restart(home, &id, json),
    }
}

/// One directory of `modules/` that holds a `module.json`.
struct Found {
    dir_name: String,
    /// `<home>/modules/<dir_name>` (unresolved).
    path: PathBuf,
    linked: bool,
    bytes: Vec<u8>,
    /// The manifest as plain JSON (when it parses as JSON).
    json: Option<Value>,
    manifest: Result<Manifest, String>,
}

impl Found {
    /// The manifest's id, else the directory name.
    fn id(&self) -> String {
        self.json
            .as_ref()
            .and_then(|j| j.get("id"))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map_or_else(|| self.dir_name.clone(), str::to_string)
    }

    fn manifest_file(&self) -> PathBuf {
        self.path.join("module.json")
    }

    fn manifest(&self) -> anyhow::Result<&Manifest> {
        self.manifest.as_ref().map_err(|e| {
            anyhow::anyhow!(
                "{} is invalid: {e}; fix it first",
                self.manifest_file().display()
            )
        })
    }
}

/// Every module directory (symlinks followed) with a module.json, sorted by directory name.
fn scan(home: &Home) -> anyhow::Result<Vec<Found>> {
    let dir = home.modules_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", dir.display()),
    };
    let mut found = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let linked = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        if !path.is_dir() {
            continue;
        }
        let Ok(bytes) = std::fs::read(path.join("module.json")) else {
            continue;
        };
        let json = serde_json::from_slice::<Value>(&bytes).ok();
        let manifest = offline::parse_manifest(&bytes);
        found.push(Found {
            dir_name: entry.file_name().to_string_lossy().to_string(),
            path,
            linked,
            bytes,
            json,
            manifest,
        });
    }
    found.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
    Ok(found)
}

/// The module whose directory name or manifest id is `key` (directory names win).
fn find(home: &Home, key: &str) -> anyhow::Result<Found> {
    let mut all = scan(home)?;
    let pos = all
        .iter()
        .position(|f| f.dir_name == key)
        .or_else(|| all.iter().position(|f| f.id() == key));
    match pos {
        Some(i) => Ok(all.swap_remove(i)),
        None => anyhow::bail!(
            "no module with id or directory `{key}` in {}; see `pons modules list`",
            home.modules_dir().display()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// list

fn list(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    let found = scan(home)?;
    let perms = offline::read_permissions(home)?;
    let blocked: BTreeMap<String, String> = if found.is_empty() {
        BTreeMap::new()
    } else {
        offline::desired(home)
            .blocked
            .iter()
            .map(|b| (b.dir_name.clone(), offline::block_reason(&b.reason)))
            .collect()
    };
    let rows: Vec<Value> = found.iter().map(|f| row(f, &perms, &blocked)).collect();
    if json {
        output::print_json(&json!({ "modules": rows }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "No modules in {}; add one with `pons modules install <path>`.",
            home.modules_dir().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let cells: Vec<Vec<String>> = rows.iter().map(table_row).collect();
    print!(
        "{}",
        output::table(
            &[
                "ID", "DIR", "VERSION", "PROVIDES", "TYPE", "APPROVED", "MANIFEST", "PERMS",
                "CAPS", "BLOCKED"
            ],
            &cells
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// The `modules list --json` entry of one module.
fn row(f: &Found, perms: &PermissionsFile, blocked: &BTreeMap<String, String>) -> Value {
    let id = f.id();
    let strings = |key: &str| -> Vec<String> {
        f.json
            .as_ref()
            .and_then(|j| j.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let version = f
        .json
        .as_ref()
        .and_then(|j| j.get("version"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| deno_json_version(&f.path));
    let entry = perms.modules.get(&id);
    let hash = offline::manifest_hash(&f.bytes);
    json!({
        "id": id,
        "dir": f.dir_name,
        "version": version,
        "provides": strings("provides"),
        "requires": strings("requires"),
        "linked": f.linked,
        "approved": entry.is_some(),
        "manifestOk": entry.map(|e| e.base_manifest_hash.eq_ignore_ascii_case(&hash)),
        "permsValid": f.json.as_ref().is_some_and(offline::permissions_block_valid),
        "hasCaps": entry
            .and_then(|e| e.capabilities.as_ref())
            .is_some_and(|c| !c.topics.is_empty() || !c.services.is_empty()),
        "blocked": blocked.get(&f.dir_name),
    })
}

fn table_row(r: &Value) -> Vec<String> {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let b = |k: &str| r.get(k).and_then(Value::as_bool);
    let provides: Vec<String> = r["provides"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    vec![
        s("id"),
        s("dir"),
        s("version"),
        output::list_or_dash(&provides),
        if b("linked") == Some(true) {
            "linked"
        } else {
            "copied"
        }
        .into(),
        if b("approved") == Some(true) {
            "yes"
        } else {
            "no"
        }
        .into(),
        match b("manifestOk") {
            Some(true) => "ok",
            Some(false) => "changed",
            None => "-",
        }
        .into(),
        if b("permsValid") == Some(true) {
            "ok"
        } else {
            "invalid"
        }
        .into(),
        if b("hasCaps") == Some(true) {
            "yes"
        } else {
            "empty"
        }
        .into(),
        s("blocked"),
    ]
}

fn deno_json_version(dir: &Path) -> Option<String> {
    let bytes = std::fs::read(dir.join("deno.json")).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("version")?.as_str().map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// install / approve

fn install(
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
    } else {
        println!("Module `{id}` is installed but not approved; approve it with `pons modules approve {id} --yes`.");
    }
    Ok(ExitCode::SUCCESS)
}

fn approve(home: &Home, key: &str, yes: bool, json: bool) -> anyhow::Result<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
}

enum Decision {
    Approve,
    Declined,
    /// Not a TTY and no --yes.
    NotAsked,
}

fn decide(yes: bool, id: &str) -> anyhow::Result<Decision> {
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

fn store_approval(home: &Home, m: &Manifest, caps: Capabilities, hash: &str) -> anyhow::Result<()> {
    let now = offline::now_iso();
    crate::store::update_permissions(home, |pf| {
        offline::approve(
            pf,
            &m.id,
            m.permissions.clone(),
            caps,
            hash,
            &m.provides,
            &now,
        );
        Ok(())
    })
}

/// The permissions and capabilities to approve, as printed before asking.
fn describe_request(p: &PermissionSet, caps: &Capabilities) -> String {
    let mut out = String::from("Permissions requested:\n");
    let fields = [
        ("net", &p.net),
        ("read", &p.read),
        ("write", &p.write),
        ("env", &p.env),
        ("run", &p.run),
        ("sys", &p.sys),
    ];
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
fn remove_installed(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot inspect {}: {e}", path.display()))?;
    let r = if meta.file_type().is_symlink() {
        std::fs::remove_file(path)
    } else {
        std::fs::remove_dir_all(path)
    };
    r.map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// uninstall / restart

fn uninstall(home: &Home, key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let found = find(home, key)?;
    let id = found.id();
    let provides = found
        .manifest
        .as_ref()
        .map(|m| m.provides.clone())
        .unwrap_or_default();
    let dependents: Vec<String> = scan(home)?
        .iter()
        .filter(|f| f.dir_name != found.dir_name)
        .filter(|f| {
            f.manifest
                .as_ref()
                .is_ok_and(|m| m.requires.iter().any(|r| provides.contains(r)))
        })
        .map(Found::id)
        .collect();
    if !dependents.is_empty() && !json {
        eprintln!(
            "warning: module(s) {} require a service that `{id}` provides; they will wait for another provider.",
            dependents.join(", ")
        );
    }
    // Revoke first: a module left on disk without approval is merely blocked.
    let revoked = crate::store::update_permissions(home, |pf| Ok(offline::revoke(pf, &id)))
        .map_err(|e| {
            anyhow::anyhow!("cannot revoke the permissions of `{id}` ({e:#}); nothing was removed")
        })?;
    remove_installed(&found.path)?;
    if json {
        output::print_json(&json!({"module": id, "uninstalled": true, "revoked": revoked}))?;
    } else {
        println!(
            "Uninstalled module `{id}` ({} removed); a running kernel stops it by itself.",
            found.path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn restart(home: &Home, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let req = Request {
        cmd: "module.restart".into(),
        module_id: Some(id.to_string()),
        ..Request::default()
    };
    remote::call_running(home, &req, |p| eprintln!("{p}"))?;
    if json {
        output::print_json(&json!({"module": id, "restarted": true}))?;
    } else {
        println!("Module `{id}` restarted.");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_module(dir: &Path, manifest: &Value) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("module.json"),
            serde_json::to_vec_pretty(manifest).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn scan_find_and_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("home"));
        let src = tmp.path().join("src-gw");
        write_module(
            &src,
            &json!({"id":"gateway","name":"Gateway","version":"1.2.0","provides":["http"],
                    "subscribes":["a"],"permissions":{"net":["x"]}}),
        );
        std::fs::create_dir_all(home.modules_dir()).unwrap();
        std::os::unix::fs::symlink(&src, home.modules_dir().join("gw-link")).unwrap();
        write_module(
            &home.modules_dir().join("broken"),
            &json!({"id":"b","name":"B","permissions":{"bogus":[]}}),
        );
        std::fs::create_dir_all(home.modules_dir().join("empty")).unwrap();

        let all = scan(&home).unwrap();
        let dirs: Vec<&str> = all.iter().map(|f| f.dir_name.as_str()).collect();
        assert_eq!(dirs, vec!["broken", "gw-link"]);
        assert_eq!(find(&home, "gateway").unwrap().dir_name, "gw-link");
        assert_eq!(find(&home, "gw-link").unwrap().id(), "gateway");
        assert!(find(&home, "b").unwrap().manifest().is_err());
        assert!(find(&home, "nope").is_err());

        let mut perms = PermissionsFile::default();
        let gw = find(&home, "gateway").unwrap();
        let hash = offline::manifest_hash(&gw.bytes);
        let m = gw.manifest().unwrap().clone();
        offline::approve(
            &mut perms,
            "gateway",
            m.permissions.clone(),
            offline::default_capabilities(&m),
            &hash,
            &m.provides,
            "t",
        );
        let blocked = BTreeMap::from([("broken".to_string(), "invalid".to_string())]);
        let r = row(&gw, &perms, &blocked);
        assert_eq!(
            r,
            json!({"id":"gateway","dir":"gw-link","version":"1.2.0","provides":["http"],"requires":[],
                   "linked":true,"approved":true,"manifestOk":true,"permsValid":true,"hasCaps":true,
                   "blocked":null})
        );
        let b = find(&home, "broken").unwrap();
        let r = row(&b, &perms, &blocked);
        assert_eq!(r["approved"], false);
        assert_eq!(r["manifestOk"], Value::Null);
        assert_eq!(r["permsValid"], false);
        assert_eq!(r["blocked"], "invalid");
        assert_eq!(table_row(&r)[4], "copied");
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
