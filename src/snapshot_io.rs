//! Reads one [`Snapshot`] of a home directory: the only place that turns the file system into the
//! reconciler's input (realpaths, entry probes, schema files, `which` lookups).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pons_reconciler::snapshot::{EntryProbe, FileRead, ModuleDir, SchemaProbe};
use pons_reconciler::Snapshot;

use crate::home::Home;

/// Interpreters the runtimes may need.
const INTERPRETERS: &[&str] = &["deno", "node", "bun", "python", "python3", "php"];

/// Reads the home directory; `env` is the kernel's environment (usually `std::env::vars()`).
pub fn read_snapshot(home: &Home, env: &BTreeMap<String, String>) -> Snapshot {
    let mut snap = Snapshot {
        home: home.root.clone(),
        env: env.clone(),
        config_yaml: read(&home.config_yaml()),
        permissions_yaml: read(&home.permissions_yaml()),
        home_deno_json: home.root.join("deno.json").is_file(),
        modules: Vec::new(),
        which: BTreeMap::new(),
    };
    let mut names: Vec<String> = INTERPRETERS.iter().map(|s| s.to_string()).collect();
    if let Ok(rd) = std::fs::read_dir(home.modules_dir()) {
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let md = read_module(&e.path(), &e.file_name().to_string_lossy());
            if let FileRead::Bytes(b) = &md.manifest {
                if let Ok(m) = pons_reconciler::manifest::parse(b) {
                    names.extend(m.permissions.run.iter().cloned());
                }
            }
            snap.modules.push(md);
        }
    }
    // Interpreter overrides in config.yaml (`kernel.runtimes`) name programs to look up too.
    if let FileRead::Bytes(b) = &snap.config_yaml {
        if let Ok(v) = pons_reconciler::config::parse(b) {
            if let Some(rt) = v.pointer("/kernel/runtimes").and_then(|r| r.as_object()) {
                names.extend(rt.values().filter_map(|p| p.as_str().map(String::from)));
            }
        }
    }
    let path_var = env.get("PATH").cloned().unwrap_or_default();
    for n in names {
        if !snap.which.contains_key(&n) {
            let found = which(&n, &path_var);
            snap.which.insert(n, found);
        }
    }
    snap
}

fn read(path: &Path) -> FileRead {
    match std::fs::read(path) {
        Ok(b) => FileRead::Bytes(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileRead::Missing,
        Err(e) => FileRead::Error(e.to_string()),
    }
}

fn read_module(path: &Path, dir_name: &str) -> ModuleDir {
    let is_symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let is_dir = path.is_dir();
    let real_path = std::fs::canonicalize(path).ok();
    let mut md = ModuleDir {
        dir_name: dir_name.to_string(),
        path: path.to_path_buf(),
        real_path: real_path.clone(),
        is_symlink,
        is_dir,
        ..Default::default()
    };
    if !is_dir {
        return md;
    }
    md.manifest = read(&path.join("module.json"));
    md.deno_json = read(&path.join("deno.json"));
    let FileRead::Bytes(bytes) = &md.manifest else {
        return md;
    };
    let Ok(manifest) = pons_reconciler::manifest::parse(bytes) else {
        return md;
    };
    let base = real_path.unwrap_or_else(|| path.to_path_buf());
    let requested = pons_reconciler::manifest::entry_request(&manifest);
    let entry_path = base.join(&requested);
    let js_sibling = requested
        .strip_suffix(".ts")
        .map(|stem| base.join(format!("{stem}.js")))
        .and_then(|p| std::fs::canonicalize(p).ok())
        .filter(|p| p.is_file());
    md.entry = Some(EntryProbe {
        requested,
        real: std::fs::canonicalize(&entry_path).ok().filter(|p| p.is_file()),
        js_sibling,
    });
    if let Some(schema) = &manifest.config_schema {
        let real = std::fs::canonicalize(base.join(schema)).ok();
        let inside = real.as_ref().is_some_and(|r| r.starts_with(&base));
        let bytes = match &real {
            Some(r) if inside && schema.ends_with(".json") => read(r),
            _ => FileRead::Missing,
        };
        md.schema = Some(SchemaProbe {
            requested: schema.clone(),
            real,
            bytes,
        });
    }
    md
}

/// Looks `name` up on `path_var` (an absolute or relative path with a `/` is taken as is).
/// Version-manager shims (`…/shims/…`, e.g. pyenv) are skipped: they are shell scripts that
/// re-dispatch at run time and would defeat the sandbox's exec rules. The result is the real
/// path of the executable.
pub fn which(name: &str, path_var: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then(|| std::fs::canonicalize(&p).unwrap_or(p));
    }
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        if dir.split('/').any(|seg| seg == "shims") {
            continue;
        }
        let cand = Path::new(dir).join(name);
        if is_exec(&cand) {
            return Some(std::fs::canonicalize(&cand).unwrap_or(cand));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_skips_shims_and_resolves() {
        let tmp = tempfile::tempdir().unwrap();
        let shims = tmp.path().join("shims");
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&shims).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        for d in [&shims, &bin] {
            let p = d.join("tool");
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!("{}:{}", shims.display(), bin.display());
        let found = which("tool", &path).unwrap();
        assert_eq!(found, std::fs::canonicalize(bin.join("tool")).unwrap());
        assert_eq!(which("nope", &path), None);
    }

    #[test]
    fn reads_modules_with_entry_probes() {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("modules/a");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(
            m.join("module.json"),
            r#"{"id":"a","name":"A","entrypoint":"main.ts","permissions":{}}"#,
        )
        .unwrap();
        std::fs::write(m.join("main.ts"), "").unwrap();
        std::fs::write(m.join("main.js"), "").unwrap();
        std::fs::write(tmp.path().join("modules/not-a-dir"), "").unwrap();
        let snap = read_snapshot(&Home::new(tmp.path()), &BTreeMap::new());
        assert_eq!(snap.modules.len(), 2);
        let a = &snap.modules[0];
        let probe = a.entry.as_ref().unwrap();
        assert_eq!(probe.requested, "main.ts");
        assert!(probe.real.is_some() && probe.js_sibling.is_some());
        assert!(!snap.modules[1].is_dir);
        assert_eq!(snap.config_yaml, FileRead::Missing);
    }
}
