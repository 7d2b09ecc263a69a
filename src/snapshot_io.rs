//! Reads one [`Snapshot`] of a home directory: the only place that turns the file system into the
//! reconciler's input (realpaths, entry probes, schema files, `which` lookups, the Landlock ABI).
//! Never panics: every odd file becomes a [`FileRead::Error`] or a missing probe that the
//! reconciler reports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pons_reconciler::snapshot::{EntryProbe, FileRead, ModuleDir, SchemaProbe};
use pons_reconciler::{config, manifest, permissions, Snapshot};

use crate::home::Home;

/// Files larger than this are not read (reported as an error instead).
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Interpreters looked up for every snapshot.
const INTERPRETERS: [&str; 6] = ["deno", "node", "bun", "python", "python3", "php"];

/// Reads the home directory; `env` is the kernel's environment (usually `std::env::vars()`).
pub fn read_snapshot(home: &Home, env: &BTreeMap<String, String>) -> Snapshot {
    let config_yaml = read_file(&home.config_yaml());
    let permissions_yaml = read_file(&home.permissions_yaml());
    let mut names: BTreeSet<String> = INTERPRETERS.iter().map(|s| s.to_string()).collect();

    let mut modules = Vec::new();
    if let Ok(rd) = std::fs::read_dir(home.modules_dir()) {
        let mut entries: Vec<(String, PathBuf)> = rd
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        entries.sort();
        for (name, path) in entries {
            let md = read_module_dir(name, path);
            if let FileRead::Bytes(b) = &md.manifest {
                if let Ok(m) = manifest::parse(b) {
                    names.extend(m.permissions.run.iter().cloned());
                }
            }
            modules.push(md);
        }
    }

    // `run` names of every approval (base and dynamic grants) and bare runtime overrides.
    if let FileRead::Bytes(b) = &permissions_yaml {
        if let Ok(p) = permissions::parse(b) {
            for id in p.modules.keys() {
                if let Some(eff) = p.effective(id) {
                    names.extend(eff.run);
                }
            }
        }
    }
    if let FileRead::Bytes(b) = &config_yaml {
        if let Ok(v) = config::parse(b) {
            if let Some(rt) = v.pointer("/kernel/runtimes").and_then(|r| r.as_object()) {
                for p in rt.values().filter_map(|p| p.as_str()) {
                    if !p.starts_with('/') && !p.is_empty() {
                        names.insert(p.to_string());
                    }
                }
            }
        }
    }
    let path_var = env.get("PATH").cloned().unwrap_or_default();
    let which = names
        .into_iter()
        .map(|n| {
            let found = which(&n, &path_var);
            (n, found)
        })
        .collect();

    Snapshot {
        home: home.root.clone(),
        home_real: std::fs::canonicalize(&home.root)
            .ok()
            .filter(|r| *r != home.root),
        env: env.clone(),
        config_yaml,
        permissions_yaml,
        home_deno_json: read_deno_config(&home.root.join("deno.json")),
        home_deno_jsonc: read_deno_config(&home.root.join("deno.jsonc")),
        modules,
        which,
        landlock_abi: crate::sandbox::support()
            .landlock_abi
            .and_then(|abi| u32::try_from(abi).ok()),
        down: Default::default(),
        host_name: host_name(),
    }
}

/// Reads a whole file: missing → `Missing`, too large or unreadable → `Error`.
/// The machine's host name (`uname` nodename; empty when it cannot be had): the default
/// `cluster.node`.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

pub fn read_file(path: &Path) -> FileRead {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileRead::Missing,
        Err(e) => return FileRead::Error(e.to_string()),
        Ok(m) if m.is_dir() => return FileRead::Error("it is a directory".into()),
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return FileRead::Error(format!(
                "it is larger than {} MiB",
                MAX_FILE_BYTES / 1024 / 1024
            ))
        }
        Ok(_) => {}
    }
    match std::fs::read(path) {
        Ok(b) => FileRead::Bytes(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileRead::Missing,
        Err(e) => FileRead::Error(e.to_string()),
    }
}

/// A deno configuration file (`deno.json`, `deno.jsonc`): like [`read_file`], but a directory of
/// that name is no configuration file (deno would not take it either).
fn read_deno_config(path: &Path) -> FileRead {
    if path.is_dir() {
        return FileRead::Missing;
    }
    read_file(path)
}

fn read_module_dir(dir_name: String, path: PathBuf) -> ModuleDir {
    let is_symlink = std::fs::symlink_metadata(&path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    let is_dir = std::fs::metadata(&path)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    let mut md = ModuleDir {
        dir_name,
        path: path.clone(),
        real_path: None,
        is_symlink,
        is_dir,
        manifest: FileRead::Missing,
        entry: None,
        deno_json: FileRead::Missing,
        deno_jsonc: FileRead::Missing,
        schema: None,
    };
    if !is_dir {
        return md;
    }
    md.real_path = std::fs::canonicalize(&path).ok();
    md.manifest = read_file(&path.join("module.json"));
    md.deno_json = read_deno_config(&path.join("deno.json"));
    md.deno_jsonc = read_deno_config(&path.join("deno.jsonc"));
    let FileRead::Bytes(bytes) = &md.manifest else {
        return md;
    };
    let Ok(m) = manifest::parse(bytes) else {
        return md;
    };
    let base = md.real_path.clone().unwrap_or_else(|| path.clone());
    let requested = manifest::entry_request(&m);
    let real_file = |rel: &str| -> Option<PathBuf> {
        let p = std::fs::canonicalize(base.join(rel)).ok()?;
        p.is_file().then_some(p)
    };
    let js_sibling = requested
        .strip_suffix(".ts")
        .and_then(|stem| real_file(&format!("{stem}.js")));
    md.entry = Some(EntryProbe {
        real: real_file(&requested),
        js_sibling,
        requested,
    });
    if let Some(schema) = &m.config_schema {
        let real = std::fs::canonicalize(base.join(schema)).ok();
        let readable = real.as_ref().is_some_and(|r| {
            r.starts_with(&base) && r.extension().is_some_and(|e| e == "json") && r.is_file()
        });
        md.schema = Some(SchemaProbe {
            requested: schema.clone(),
            bytes: match (&real, readable) {
                (Some(r), true) => read_file(r),
                _ => FileRead::Missing,
            },
            real,
        });
    }
    md
}

/// Looks `name` up like `which`: a name with a `/` is checked as a path, anything else in each
/// directory of `path_var`. Only executable regular files count.
pub fn which(name: &str, path_var: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then(|| std::fs::canonicalize(&p).unwrap_or(p));
    }
    // Version-manager shims (`…/shims/…`, e.g. pyenv) are skipped: they are shell scripts that
    // re-dispatch at run time and would defeat the sandbox's exec rules.
    path_var
        .split(':')
        .filter(|d| !d.is_empty() && !d.split('/').any(|seg| seg == "shims"))
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// How long ago the most recently modified input file (config.yaml, permissions.yaml, a
/// module.json, a deno.json or deno.jsonc of the home or a module) was written; `None` when none
/// exists. A pass that reads a file an editor is
/// still writing in place would see it truncated, so the reconcile loop waits until the inputs
/// have been quiet for a moment.
pub fn inputs_quiet_for(home: &Home) -> Option<std::time::Duration> {
    let mut newest: Option<std::time::SystemTime> = None;
    let mut consider = |p: &Path| {
        if let Ok(t) = std::fs::metadata(p).and_then(|m| m.modified()) {
            newest = Some(newest.map_or(t, |n| n.max(t)));
        }
    };
    consider(&home.config_yaml());
    consider(&home.permissions_yaml());
    consider(&home.root.join("deno.json"));
    consider(&home.root.join("deno.jsonc"));
    if let Ok(rd) = std::fs::read_dir(home.modules_dir()) {
        for e in rd.flatten() {
            let dir = e.path();
            for name in ["module.json", "deno.json", "deno.jsonc"] {
                consider(&dir.join(name));
            }
        }
    }
    newest.map(|t| t.elapsed().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_a_home() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path());
        let m = home.modules_dir();
        write(
            &m.join("a/module.json"),
            r#"{"id":"a","name":"A","permissions":{"run":["sh"]},"configKey":"a","configSchema":"s.json"}"#,
        );
        write(&m.join("a/runner.ts"), "");
        write(&m.join("a/runner.js"), "");
        write(&m.join("a/s.json"), "{}");
        write(&m.join("b/module.json"), "not json");
        write(&m.join("file.txt"), "x");
        std::os::unix::fs::symlink(m.join("a"), m.join("link")).unwrap();
        write(&home.config_yaml(), "a: {x: 1}\n");
        write(&home.root.join("deno.jsonc"), "{} // c\n");
        write(&m.join("a/deno.json"), r#"{"imports":{}}"#);
        std::fs::create_dir_all(home.root.join("deno.json")).unwrap();
        let env: BTreeMap<String, String> =
            [("PATH".to_string(), "/usr/bin:/bin".to_string())].into();
        let s = read_snapshot(&home, &env);
        let names: Vec<&str> = s.modules.iter().map(|m| m.dir_name.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "file.txt", "link"]);
        let a = &s.modules[0];
        assert!(a.is_dir && !a.is_symlink);
        let e = a.entry.as_ref().unwrap();
        assert_eq!(e.requested, "runner.ts");
        assert!(e.real.as_ref().unwrap().ends_with("a/runner.ts"));
        assert!(e.js_sibling.as_ref().unwrap().ends_with("a/runner.js"));
        assert!(matches!(
            a.schema.as_ref().unwrap().bytes,
            FileRead::Bytes(_)
        ));
        assert!(s.modules[1].entry.is_none());
        assert!(!s.modules[2].is_dir);
        assert!(s.modules[3].is_symlink && s.modules[3].is_dir);
        assert_eq!(s.modules[3].real_path, a.real_path);
        assert!(matches!(s.config_yaml, FileRead::Bytes(_)));
        assert_eq!(s.home_deno_json, FileRead::Missing, "a directory");
        assert_eq!(s.home_deno_jsonc, FileRead::Bytes(b"{} // c\n".to_vec()));
        assert_eq!(a.deno_json, FileRead::Bytes(br#"{"imports":{}}"#.to_vec()));
        assert_eq!(a.deno_jsonc, FileRead::Missing);
        assert_eq!(s.permissions_yaml, FileRead::Missing);
        assert!(s.which.contains_key("sh") && s.which.contains_key("deno"));
        assert!(s.which["sh"].is_some());
        let abi = crate::sandbox::support().landlock_abi;
        assert_eq!(s.landlock_abi.map(|a| a as i32), abi);
    }

    #[test]
    fn missing_home_is_empty() {
        let s = read_snapshot(&Home::new("/nonexistent/pons"), &BTreeMap::new());
        assert!(s.modules.is_empty());
        assert_eq!(s.config_yaml, FileRead::Missing);
    }
}
