//! Locked read-modify-write of `config.yaml` and `permissions.yaml`: a lock file, the current
//! bytes read under the lock, the change applied, a temp file written with mode 0600 and renamed
//! over the original. Neither file is ever half-written and no concurrent edit is lost.

use std::path::Path;

use pons_reconciler::permissions::PermissionsFile;

use crate::home::Home;

/// Writes `bytes` to `path` atomically (temp file in the same directory, mode 0600, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let _ = (path, bytes);
    anyhow::bail!("not implemented yet")
}

/// Read-modify-write of `permissions.yaml` under its lock. `f` gets the file as currently on disk
/// (empty when missing); when it returns `Ok`, the result is rendered and written atomically.
/// A file that cannot be parsed is an error naming the file (nothing is written).
pub fn update_permissions<T>(
    home: &Home,
    f: impl FnOnce(&mut PermissionsFile) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let _ = (home, f);
    anyhow::bail!("not implemented yet")
}

/// Read-modify-write of `config.yaml` under its lock, at the text level: `f` gets the current text
/// (empty when missing) and returns the new text, which is validated as YAML before it is written.
pub fn update_config_text(
    home: &Home,
    f: impl FnOnce(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let _ = (home, f);
    anyhow::bail!("not implemented yet")
}
