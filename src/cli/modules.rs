//! `pons modules list | uninstall`, the `kernel.disabled` edit behind `modules disable | enable`
//! (whose waiting, like `modules restart`'s, is in `lifecycle.rs`), and the scan of `modules/`
//! shared with `approve.rs` (install, approve), `update.rs` and `lifecycle.rs`. Everything but
//! `restart` works on the files only; a running kernel sees the changes through its watcher (no
//! signal is sent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pons_reconciler::manifest::Manifest;
use pons_reconciler::permissions::PermissionsFile;
use serde_json::{json, Value};

use super::args::ModulesCmd;
use super::{approve, approve_watch, lifecycle, offline, output, update};
use crate::home::Home;

pub fn run(home: &Home, cmd: ModulesCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ModulesCmd::List(f) => list(home, f.json),
        ModulesCmd::Install {
            path,
            copy,
            yes,
            json,
        } => approve::install(home, &path, copy, yes, json),
        ModulesCmd::Approve {
            id,
            yes,
            watch: true,
            ..
        } => approve_watch::watch(home, &id, yes),
        ModulesCmd::Approve { id, yes, json, .. } => approve::approve(home, &id, yes, json),
        ModulesCmd::Uninstall { id, json } => uninstall(home, &id, json),
        ModulesCmd::Restart { id, wait, json } => lifecycle::restart_module(home, &id, wait, json),
        ModulesCmd::Disable(a) => lifecycle::stop(home, &a),
        ModulesCmd::Enable(a) => lifecycle::start(home, &a),
        ModulesCmd::Update { id, all, yes, json } => {
            update::run(home, id.as_deref(), all, yes, json)
        }
    }
}

/// One directory of `modules/` that holds a `module.json`.
pub(super) struct Found {
    pub(super) dir_name: String,
    /// `<home>/modules/<dir_name>` (unresolved).
    pub(super) path: PathBuf,
    pub(super) linked: bool,
    pub(super) bytes: Vec<u8>,
    /// The manifest as plain JSON (when it parses as JSON).
    pub(super) json: Option<Value>,
    pub(super) manifest: Result<Manifest, String>,
}

impl Found {
    /// The manifest's id, else the directory name.
    pub(super) fn id(&self) -> String {
        self.json
            .as_ref()
            .and_then(|j| j.get("id"))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map_or_else(|| self.dir_name.clone(), str::to_string)
    }

    pub(super) fn manifest_file(&self) -> PathBuf {
        self.path.join("module.json")
    }

    pub(super) fn manifest(&self) -> anyhow::Result<&Manifest> {
        self.manifest.as_ref().map_err(|e| {
            anyhow::anyhow!(
                "{} is invalid: {e}; fix it first",
                self.manifest_file().display()
            )
        })
    }
}

/// Every module directory (symlinks followed) with a module.json, sorted by directory name.
pub(super) fn scan(home: &Home) -> anyhow::Result<Vec<Found>> {
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
pub(super) fn find(home: &Home, key: &str) -> anyhow::Result<Found> {
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
    let desired = if found.is_empty() {
        pons_reconciler::Desired::default()
    } else {
        offline::desired(home)
    };
    let blocked: BTreeMap<String, String> = desired
        .blocked
        .iter()
        .map(|b| (b.dir_name.clone(), offline::block_reason(&b.reason)))
        .collect();
    let sandboxes: BTreeMap<String, Value> = desired
        .modules
        .values()
        .map(|m| {
            (
                m.dir_name.clone(),
                crate::sandbox::module_sandbox_report(&m.spawn.sandbox, &m.spawn.env),
            )
        })
        .collect();
    let rows: Vec<Value> = found
        .iter()
        .map(|f| row(f, &perms, &blocked, sandboxes.get(&f.dir_name)))
        .collect();
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
    for r in &rows {
        if let Some(text) = sandbox_lines(r) {
            print!("\n{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a runnable module may touch, for the human output of `modules list`.
fn sandbox_lines(r: &Value) -> Option<String> {
    let sb = r.get("sandbox").filter(|s| s.is_object())?;
    let list = |k: &str| -> String {
        let items: Vec<String> = sb[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        output::list_or_dash(&items)
    };
    let landlock = sb["landlock"].as_str().unwrap_or("unknown");
    Some(format!(
        "Module `{}` may (Landlock {landlock}; system defaults not shown, see --json):\n    read   {}\n    write  {}\n    exec   {}\n    env    {}\n",
        r["id"].as_str().unwrap_or("?"),
        list("read"),
        list("write"),
        list("exec"),
        list("env"),
    ))
}

/// The `modules list --json` entry of one module.
fn row(
    f: &Found,
    perms: &PermissionsFile,
    blocked: &BTreeMap<String, String>,
    sandbox: Option<&Value>,
) -> Value {
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
    let hash_ok = entry.map(|e| {
        e.base_manifest_hash.is_empty() || e.base_manifest_hash.eq_ignore_ascii_case(&hash)
    });
    json!({
        "id": id,
        "dir": f.dir_name,
        "version": version,
        "provides": strings("provides"),
        "requires": strings("requires"),
        "linked": f.linked,
        "approved": entry.is_some(),
        "manifestOk": hash_ok,
        "hashOk": hash_ok,
        "permsValid": f.json.as_ref().is_some_and(offline::permissions_block_valid),
        "hasCaps": entry
            .and_then(|e| e.capabilities.as_ref())
            .is_some_and(|c| !c.topics.is_empty() || !c.services.is_empty()),
        "blocked": blocked.get(&f.dir_name),
        "sandbox": sandbox,
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
// uninstall

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
    let revoked = crate::store::update_permissions(home, |pf| Ok(pf.revoke(&id))).map_err(|e| {
        anyhow::anyhow!("cannot revoke the permissions of `{id}` ({e:#}); nothing was removed")
    })?;
    approve::remove_installed(&found.path)?;
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

// ---------------------------------------------------------------------------------------------
// disable / enable: `kernel.disabled` in config.yaml

const DISABLED_KEY: &str = "kernel.disabled";

/// The ids listed in `kernel.disabled` of a parsed config.yaml (none when the key is missing or
/// `null`); an error naming the file when the value is not a list of ids.
pub(super) fn disabled_ids(home: &Home, config: &Value) -> anyhow::Result<Vec<String>> {
    let invalid = |found: String| {
        anyhow::anyhow!(
            "`{DISABLED_KEY}` in {} must be a list of module ids, found {found}; fix it first (`pons config doctor` shows it)",
            home.config_yaml().display()
        )
    };
    match offline::get_path(config, DISABLED_KEY) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| invalid(format!("the item {}", describe(v))))
            })
            .collect(),
        Some(other) => Err(invalid(describe(other))),
    }
}

fn describe(v: &Value) -> String {
    pons_reconciler::config::describe(v)
}

/// Adds `ids` to `kernel.disabled` of config.yaml (`disable`), or removes them, with a minimal
/// edit under the file's lock: the list keeps its order, new ids go last; an emptied list is
/// removed (with a `kernel` section it leaves empty). Returns the ids whose state changed.
pub(super) fn set_disabled(
    home: &Home,
    ids: &[String],
    disable: bool,
) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    crate::store::update_config_text(home, |text| {
        let config = match crate::store::parse_yaml(text) {
            Ok(Value::Null) => json!({}),
            Ok(v) => v,
            Err(e) => anyhow::bail!(
                "{} is not valid YAML ({e}); fix the file first",
                home.config_yaml().display()
            ),
        };
        let mut list = disabled_ids(home, &config)?;
        for id in ids {
            let pos = list.iter().position(|d| d == id);
            match (disable, pos) {
                (true, None) => list.push(id.clone()),
                (false, Some(i)) => {
                    list.remove(i);
                }
                _ => continue,
            }
            if !changed.contains(id) {
                changed.push(id.clone());
            }
        }
        if changed.is_empty() {
            return Ok(text.to_string());
        }
        if !list.is_empty() {
            return crate::store::set_config_key(text, DISABLED_KEY, &json!(list));
        }
        let only_key = config
            .get("kernel")
            .and_then(Value::as_object)
            .is_some_and(|k| k.len() == 1);
        crate::store::remove_config_key(text, if only_key { "kernel" } else { DISABLED_KEY })
    })?;
    Ok(changed)
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
    fn disable_and_enable_edit_only_the_list() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        let read = || std::fs::read_to_string(home.config_yaml()).unwrap();
        std::fs::write(
            home.config_yaml(),
            "# my settings\nlifecycle:\n  maxRestarts: 3 # few\n",
        )
        .unwrap();
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            set_disabled(&home, &ids(&["b", "a", "b"]), true).unwrap(),
            ids(&["b", "a"])
        );
        let text = read();
        assert!(
            text.starts_with("# my settings\nlifecycle:\n  maxRestarts: 3 # few\n"),
            "{text}"
        );
        let config = offline::read_config(&home).unwrap();
        assert_eq!(disabled_ids(&home, &config).unwrap(), ids(&["b", "a"]));
        assert!(set_disabled(&home, &ids(&["a"]), true).unwrap().is_empty());
        assert_eq!(
            set_disabled(&home, &ids(&["b"]), false).unwrap(),
            ids(&["b"])
        );
        let config = offline::read_config(&home).unwrap();
        assert_eq!(disabled_ids(&home, &config).unwrap(), ids(&["a"]));
        assert_eq!(
            set_disabled(&home, &ids(&["a", "x"]), false).unwrap(),
            ids(&["a"])
        );
        assert_eq!(
            read(),
            "# my settings\nlifecycle:\n  maxRestarts: 3 # few\n",
            "the emptied list goes, with the kernel section it alone made"
        );

        std::fs::write(
            home.config_yaml(),
            "kernel:\n  reconcile: auto\n  disabled: [a]\n",
        )
        .unwrap();
        set_disabled(&home, &ids(&["a"]), false).unwrap();
        assert_eq!(read(), "kernel:\n  reconcile: auto\n");

        std::fs::write(home.config_yaml(), "kernel:\n  disabled: a\n").unwrap();
        let e = set_disabled(&home, &ids(&["b"]), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`kernel.disabled` in ")
                && e.contains("must be a list of module ids, found \"a\""),
            "{e}"
        );
        assert_eq!(read(), "kernel:\n  disabled: a\n", "nothing was written");
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
        approve::approve_entry(
            &mut perms,
            &m,
            offline::default_capabilities(&m),
            &hash,
            "t",
        );
        let blocked = BTreeMap::from([("broken".to_string(), "invalid".to_string())]);
        let r = row(&gw, &perms, &blocked, None);
        assert_eq!(
            r,
            json!({"id":"gateway","dir":"gw-link","version":"1.2.0","provides":["http"],"requires":[],
                   "linked":true,"approved":true,"manifestOk":true,"hashOk":true,"permsValid":true,
                   "hasCaps":true,"blocked":null,"sandbox":null})
        );
        assert!(sandbox_lines(&r).is_none());
        let b = find(&home, "broken").unwrap();
        let r = row(&b, &perms, &blocked, None);
        assert_eq!(r["approved"], false);
        assert_eq!(r["manifestOk"], Value::Null);
        assert_eq!(r["permsValid"], false);
        assert_eq!(r["blocked"], "invalid");
        assert_eq!(table_row(&r)[4], "copied");
    }
}
