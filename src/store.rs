//! Locked read-modify-write of `config.yaml` and `permissions.yaml`: a lock file, the current
//! bytes read under the lock, the change applied, a temp file written with mode 0600 and renamed
//! over the original. Neither file is ever half-written and no concurrent edit is lost.
//!
//! The lock is an exclusive `flock` on `<file>.lock` (see [`lock`]); every writer of these two files
//! — the kernel, `pons config set`, `pons permissions grant`, … — goes through this module, so an
//! operator edit made with pons while the kernel writes is never lost. (A plain text editor does
//! not take the lock; its save is atomic, and a locked writer compares the file with what it read
//! right before its rename and starts over from the editor's version when it changed.)

pub mod lock;
pub mod yaml_edit;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pons_reconciler::permissions::PermissionsFile;

use crate::home::Home;

pub use lock::{lock, lock_path, FileLock, LOCK_TIMEOUT};
pub use yaml_edit::{
    locate_key, parse_yaml, remove_config_key, render_document, set_config_key, set_path,
};

/// The temp file used by [`write_atomic`] for `path`: `.<name>.tmp.<pid>` in the same directory.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically (temp file in the same directory, mode 0600, fsync, rename,
/// fsync of the directory). If `path` is a symlink, its target is replaced and the link kept.
/// Callers writing the same file concurrently must hold its [`lock`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_unless_changed(path, bytes, None).map(|_| ())
}

/// [`write_atomic`], but when `read` is given (what the caller read: `None` inner for a missing
/// file), the file is compared with it right before the rename and left alone if it changed
/// meanwhile: an editor's save that does not take the lock is never overwritten by a change
/// computed from the file before it. Returns whether it wrote.
pub fn write_atomic_unless_changed(
    path: &Path,
    bytes: &[u8],
    read: Option<&Option<Vec<u8>>>,
) -> anyhow::Result<bool> {
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot resolve the symlink {}: {e}; fix or remove the link",
                path.display()
            )
        })?,
        _ => path.to_path_buf(),
    };
    let tmp = temp_path(&target);
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let result = (|| -> std::io::Result<bool> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A stale temp file from an earlier process with the same pid may have another mode.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        if let Some(read) = read {
            let now = match std::fs::read(&target) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            if &now != read {
                std::fs::remove_file(&tmp)?;
                return Ok(false);
            }
        }
        std::fs::rename(&tmp, &target)?;
        // Make the rename durable; some file systems refuse fsync on directories: best effort.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(true)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!(
            "cannot write {}: {e}; check the directory's permissions and free space",
            path.display()
        )
    })
}

/// Reads a file that may be missing (missing → `None`).
fn read_optional(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => anyhow::bail!("cannot read {}: {e}; check its permissions", path.display()),
    }
}

/// Parses permissions.yaml bytes with the reconciler's parser (strict YAML, the old SPEC layout
/// migrated, entries of neither layout kept as read); an empty or comment-only file is an empty
/// [`PermissionsFile`].
pub fn parse_permissions(bytes: &[u8]) -> Result<PermissionsFile, String> {
    pons_reconciler::permissions::parse(bytes).map_err(|e| e.to_string())
}

/// Renders a [`PermissionsFile`] in the compat layout (`base` with all six keys, `dynamic`,
/// `pending`, `denied`, `capabilities`, `firstSpawnAt`; then `serviceProviders`).
pub fn render_permissions(file: &PermissionsFile) -> String {
    pons_reconciler::permissions::render(file)
}

/// permissions.yaml as on disk, read without the lock (a missing file is an empty one). A file
/// that cannot be parsed is an error naming it.
pub fn read_permissions(home: &Home) -> anyhow::Result<PermissionsFile> {
    let path = home.permissions_yaml();
    match read_optional(&path)? {
        None => Ok(PermissionsFile::default()),
        Some(bytes) => parse_permissions(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} cannot be parsed ({e}); fix the file or remove it",
                path.display()
            )
        }),
    }
}

/// Read-modify-write of `permissions.yaml` under its lock. `f` gets the file as currently on disk
/// (empty when missing); when it returns `Ok`, the result is rendered and written atomically —
/// unless it is unchanged, then nothing is written. A file that cannot be parsed is an error naming
/// the file (nothing is written); so is an error from `f`.
pub fn update_permissions<T>(
    home: &Home,
    mut f: impl FnMut(&mut PermissionsFile) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let path = home.permissions_yaml();
    let _lock = lock(&path, LOCK_TIMEOUT)?;
    // `f` runs again on the new content when an editor saved the file while it ran (see
    // [`write_atomic_unless_changed`]).
    for _ in 0..EDIT_RETRIES {
        let read = read_optional(&path)?;
        let mut file = match &read {
            None => PermissionsFile::default(),
            Some(bytes) => parse_permissions(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} cannot be parsed ({e}); fix or remove it, nothing was written",
                    path.display()
                )
            })?,
        };
        let before = file.clone();
        let out = f(&mut file)?;
        if file == before
            || write_atomic_unless_changed(
                &path,
                render_permissions(&file).as_bytes(),
                Some(&read),
            )?
        {
            return Ok(out);
        }
    }
    anyhow::bail!(
        "{} kept changing while it was being updated; nothing was written, try again",
        path.display()
    )
}

/// How often a locked read-modify-write starts over when the file changed under it.
const EDIT_RETRIES: usize = 20;

/// Read-modify-write of `config.yaml` under its lock, at the text level: `f` gets the current text
/// (empty when missing) and returns the new text, which is validated as YAML (strict: duplicate
/// keys are errors; the top level must be a mapping) before it is written. Unchanged text is not
/// written.
pub fn update_config_text(
    home: &Home,
    f: impl FnOnce(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let path = home.config_yaml();
    let _lock = lock(&path, LOCK_TIMEOUT)?;
    let read = read_optional(&path)?;
    let text = String::from_utf8(read.clone().unwrap_or_default())
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text; fix the file first", path.display()))?;
    let new = f(&text)?;
    if new == text {
        return Ok(());
    }
    match parse_yaml(&new) {
        Ok(serde_json::Value::Null | serde_json::Value::Object(_)) => {}
        Ok(_) => anyhow::bail!(
            "the new {} would not be a mapping of sections; nothing was written",
            path.display()
        ),
        Err(e) => anyhow::bail!(
            "the new {} would not be valid YAML ({e}); nothing was written",
            path.display()
        ),
    }
    if write_atomic_unless_changed(&path, new.as_bytes(), Some(&read))? {
        Ok(())
    } else {
        anyhow::bail!(
            "{} was saved by someone else while it was being updated; nothing was written, try again",
            path.display()
        )
    }
}

/// `update_config_text` + [`set_config_key`]: sets one dotted key in config.yaml with a minimal
/// edit, under the lock.
pub fn set_config_value(
    home: &Home,
    key_path: &str,
    value: &serde_json::Value,
) -> anyhow::Result<()> {
    update_config_text(home, |text| set_config_key(text, key_path, value))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use pons_reconciler::permissions::ModuleEntry;
    use serde_json::json;

    use super::*;

    #[test]
    fn an_editor_save_during_an_update_is_kept() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path());
        let path = home.permissions_yaml();
        std::fs::write(&path, "modules:\n  a:\n    base: {}\n").unwrap();
        let mut calls = 0;
        update_permissions(&home, |pf| {
            calls += 1;
            if calls == 1 {
                // An editor (no lock) saves by rename while the kernel computes its change.
                let tmp = t.path().join("edit.tmp");
                std::fs::write(&tmp, "modules:\n  a:\n    base: {}\n  b:\n    base: {}\n").unwrap();
                std::fs::rename(&tmp, &path).unwrap();
            }
            pf.set_first_spawn("a", "2026-01-01T00:00:00.000Z");
            Ok(())
        })
        .unwrap();
        assert_eq!(
            calls, 2,
            "the change was computed again from the saved file"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("  b:"), "the editor's module is kept: {text}");
        assert!(
            text.contains("firstSpawnAt"),
            "the kernel's change is made: {text}"
        );
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn write_atomic_mode_and_no_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("config.yaml");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"new: 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new: 1\n");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(
            names(tmp.path()),
            BTreeSet::from(["config.yaml".to_string()])
        );
    }

    #[test]
    fn write_atomic_through_a_symlink_keeps_the_link() {
        let tmp = tempfile::tempdir().unwrap();
        let real_dir = tmp.path().join("dotfiles");
        std::fs::create_dir(&real_dir).unwrap();
        let real = real_dir.join("config.yaml");
        std::fs::write(&real, "a: 1\n").unwrap();
        let link = tmp.path().join("config.yaml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"a: 2\n").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "a: 2\n");
    }

    #[test]
    fn write_atomic_error_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("missing-dir/config.yaml");
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.contains("missing-dir/config.yaml"), "{e}");
    }

    #[test]
    fn concurrent_config_writers_lose_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        std::fs::write(home.config_yaml(), "# counter\ncount: 0 # keep me\n").unwrap();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let home = home.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        update_config_text(&home, |text| {
                            let n = parse_yaml(text).unwrap()["count"].as_u64().unwrap();
                            set_config_key(text, "count", &json!(n + 1))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(home.config_yaml()).unwrap(),
            "# counter\ncount: 400 # keep me\n"
        );
        assert_eq!(mode(&home.config_yaml()), 0o600);
        assert_eq!(
            names(tmp.path()),
            BTreeSet::from(["config.yaml".to_string(), "config.yaml.lock".to_string()])
        );
    }

    #[test]
    fn config_update_validates_and_skips_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        // Unchanged (missing stays missing).
        update_config_text(&home, |t| Ok(t.to_string())).unwrap();
        assert!(!home.config_yaml().exists());
        set_config_value(&home, "gateway.port", &json!(80)).unwrap();
        assert_eq!(
            std::fs::read_to_string(home.config_yaml()).unwrap(),
            "gateway:\n  port: 80\n"
        );
        for bad in ["a: 1\na: 2\n", "a: [\n", "- 1\n"] {
            let e = update_config_text(&home, |_| Ok(bad.to_string()))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("config.yaml") && e.contains("nothing was written"),
                "{e}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(home.config_yaml()).unwrap(),
            "gateway:\n  port: 80\n"
        );
        // An error from the closure writes nothing either.
        assert!(update_config_text(&home, |_| anyhow::bail!("no")).is_err());
    }

    #[test]
    fn permissions_read_modify_write() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        // Missing file and no change: nothing written.
        let n = update_permissions(&home, |p| Ok(p.modules.len())).unwrap();
        assert_eq!(n, 0);
        assert!(!home.permissions_yaml().exists());
        update_permissions(&home, |p| {
            p.modules.insert(
                "echo".into(),
                ModuleEntry {
                    base_manifest_hash: "ab".repeat(32),
                    ..Default::default()
                },
            );
            p.service_providers.insert("echo".into(), "echo".into());
            Ok(())
        })
        .unwrap();
        assert_eq!(mode(&home.permissions_yaml()), 0o600);
        let before = std::fs::metadata(home.permissions_yaml())
            .unwrap()
            .modified()
            .unwrap();
        // Same content again: not rewritten.
        update_permissions(&home, |p| {
            p.service_providers.insert("echo".into(), "echo".into());
            Ok(())
        })
        .unwrap();
        let after = std::fs::metadata(home.permissions_yaml())
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after);
        let read_back = update_permissions(&home, |p| Ok(p.clone())).unwrap();
        assert_eq!(
            read_back.modules["echo"].base_manifest_hash,
            "ab".repeat(32)
        );
    }

    #[test]
    fn permissions_are_written_in_the_compat_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        // An old SPEC-layout entry, and one of neither layout (kept as read).
        std::fs::write(
            home.permissions_yaml(),
            "modules:\n  old:\n    permissions:\n      net: [a.example]\n    manifestHash: abc\n  odd:\n    foo: 1\n",
        )
        .unwrap();
        update_permissions(&home, |p| {
            p.set_first_spawn("old", "2026-01-01T00:00:00.000Z");
            Ok(())
        })
        .unwrap();
        let text = std::fs::read_to_string(home.permissions_yaml()).unwrap();
        assert!(
            text.contains(
                "  old:\n    base:\n      net:\n      - a.example\n      read: []\n      write: []\n      env: []\n      run: []\n      sys: []\n    baseManifestHash: abc\n"
            ),
            "{text}"
        );
        assert!(text.contains("firstSpawnAt:"), "{text}");
        assert!(text.contains("  odd:\n    foo: 1\n"), "{text}");
        assert!(text.contains("serviceProviders:"), "{text}");
        let back = read_permissions(&home).unwrap();
        assert!(back.is_approved("old") && !back.is_approved("odd"));
    }

    #[test]
    fn unparseable_permissions_are_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        std::fs::write(home.permissions_yaml(), "modules: [oops\n").unwrap();
        let e = update_permissions(&home, |p| {
            p.service_providers.insert("x".into(), "y".into());
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("permissions.yaml") && e.contains("nothing was written"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(home.permissions_yaml()).unwrap(),
            "modules: [oops\n"
        );
        // A blank file is an empty one.
        std::fs::write(home.permissions_yaml(), "# nothing yet\n").unwrap();
        assert!(update_permissions(&home, |p| Ok(p.modules.is_empty())).unwrap());
    }
}
