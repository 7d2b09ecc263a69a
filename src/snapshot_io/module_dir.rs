//! The entries of `<home>/modules` and what a pass probes in each: kind, real path, module.json,
//! `deno.json`/`deno.jsonc`, entry point and config schema.
//!
//! The real paths are `realpath(3)`'s, with fewer system calls than one `canonicalize` each (which
//! reads every component of the path as a link): `modules/` is resolved once, a plain directory
//! in it (not a symlink) is `<real modules/>/<name>`, and a file named by one plain file name in a
//! real directory is `<real dir>/<name>` when `lstat` says it is no symlink. Anything else (a
//! symlink, a path with `/`, `.` or `..`) is resolved by `canonicalize` as before.

use std::collections::BTreeSet;
use std::fs::FileType;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use pons_reconciler::manifest;
use pons_reconciler::snapshot::{EntryProbe, FileRead, ModuleDir, SchemaProbe};

use super::Reader;

/// Every entry of `dir` (`<home>/modules`), sorted by name; the `run` names of their manifests go
/// to `names`. No entries when `dir` cannot be read.
pub(super) fn read_all(
    r: &mut Reader<'_>,
    dir: &Path,
    names: &mut BTreeSet<String>,
) -> Vec<ModuleDir> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut entries: Vec<(String, PathBuf, Option<FileType>)> = rd
        .flatten()
        .map(|e| {
            // The type readdir reported (an `lstat` where the file system does not say).
            let kind = e.file_type().ok();
            (e.file_name().to_string_lossy().into_owned(), e.path(), kind)
        })
        .collect();
    entries.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let real_dir = std::fs::canonicalize(dir).ok();
    entries
        .into_iter()
        .map(|(name, path, kind)| read_module_dir(r, name, path, kind, real_dir.as_deref(), names))
        .collect()
}

/// A deno configuration file (`deno.json`, `deno.jsonc`): like [`super::read_file`], but a
/// directory of that name is no configuration file (deno would not take it either), and a missing
/// one is not opened.
pub(super) fn read_deno_config(r: &mut Reader<'_>, path: &Path) -> FileRead {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => FileRead::Missing,
        Err(e) if e.kind() == ErrorKind::NotFound => FileRead::Missing,
        _ => r.cached_file(path),
    }
}

/// One entry of `modules/` (`kind`: its type, not following a symlink; `real_dir`: the real path
/// of `modules/`); the `run` names of its manifest go to `names`.
fn read_module_dir(
    r: &mut Reader<'_>,
    dir_name: String,
    path: PathBuf,
    kind: Option<FileType>,
    real_dir: Option<&Path>,
    names: &mut BTreeSet<String>,
) -> ModuleDir {
    let is_symlink = kind.is_some_and(|k| k.is_symlink());
    let is_dir = match kind {
        Some(k) if !k.is_symlink() => k.is_dir(),
        _ => std::fs::metadata(&path).is_ok_and(|m| m.is_dir()),
    };
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
    md.real_path = match (real_dir, path.file_name()) {
        (Some(real_dir), Some(name)) if !is_symlink && kind.is_some() => Some(real_dir.join(name)),
        _ => std::fs::canonicalize(&path).ok(),
    };
    md.manifest = r.file(&path.join("module.json"));
    md.deno_json = read_deno_config(r, &path.join("deno.json"));
    md.deno_jsonc = read_deno_config(r, &path.join("deno.jsonc"));
    let FileRead::Bytes(bytes) = &md.manifest else {
        return md;
    };
    let Some(m) = r.manifest(bytes) else {
        return md;
    };
    names.extend(m.permissions.run.iter().cloned());
    let base_is_real = md.real_path.is_some();
    let base = md.real_path.clone().unwrap_or_else(|| path.clone());
    let requested = manifest::entry_request(&m);
    let real_file = |rel: &str| -> Option<PathBuf> {
        let (p, is_file) = resolve(&base, base_is_real, rel)?;
        is_file.unwrap_or_else(|| p.is_file()).then_some(p)
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
        let resolved = resolve(&base, base_is_real, schema);
        let readable = resolved.as_ref().is_some_and(|(r, is_file)| {
            r.starts_with(&base)
                && r.extension().is_some_and(|e| e == "json")
                && is_file.unwrap_or_else(|| r.is_file())
        });
        let real = resolved.map(|(r, _)| r);
        md.schema = Some(SchemaProbe {
            requested: schema.clone(),
            bytes: match (&real, readable) {
                (Some(real), true) => r.cached_file(real),
                _ => FileRead::Missing,
            },
            real,
        });
    }
    md
}

/// `realpath(base/rel)` (`None` where it cannot be resolved) and, when known without one more
/// `stat`, whether it is a regular file (following symlinks). `base_is_real`: `base` is its own
/// real path.
fn resolve(base: &Path, base_is_real: bool, rel: &str) -> Option<(PathBuf, Option<bool>)> {
    let plain_name = !rel.is_empty() && !rel.contains('/') && rel != "." && rel != "..";
    if base_is_real && plain_name {
        let p = base.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if !m.file_type().is_symlink() => return Some((p, Some(m.is_file()))),
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            _ => {}
        }
    }
    let p = std::fs::canonicalize(base.join(rel)).ok()?;
    Some((p, None))
}
