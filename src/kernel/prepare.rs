//! A module's prepare step, run to completion before the module starts: deno's lock file
//! ([`Prepare`]; why the module never writes it itself is in `pons_reconciler::deno`).
//!
//! 1. One step per lock file at a time ([`PrepareLocks`]), so modules sharing a configuration
//!    file never overwrite each other's additions to its lock.
//! 2. The directories the configuration asks deno to create (`node_modules/`, `vendor/`) are made.
//! 3. The lock file beside the configuration is copied to the kernel's private copy (the copy is
//!    removed when there is none, so deno starts afresh as it would).
//! 4. `deno cache <entry>` runs confined like the module (`crate::sandbox::command`), within
//!    `lifecycle.readyTimeoutMs`; its output is logged with the module's id (debug when it
//!    succeeds, warn when it fails).
//! 5. When deno changed the copy, it is written back beside the configuration (temp file +
//!    rename; the old file's mode, else 0644 as deno would).
//!
//! A step that fails is logged and the module starts anyway: its own deno then reports the
//! cause (an import that does not resolve, an unreachable registry) the way operators know.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pons_reconciler::desired::Prepare;

use crate::kernel::Kernel;

/// The per-lock-file locks of [`run`].
#[derive(Default)]
pub struct PrepareLocks(parking_lot::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>);

impl PrepareLocks {
    fn get(&self, lock: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.0.lock().entry(lock.to_path_buf()).or_default().clone()
    }
}

/// Kills the step's process group if the step is abandoned (module stopped meanwhile, deadline).
struct GroupGuard<'a> {
    kernel: &'a Kernel,
    pgid: Option<i32>,
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        if let Some(pg) = self.pgid {
            let _ = crate::sandbox::kill::kill_group(pg);
            self.kernel.watchdog_remove(pg);
        }
    }
}

/// Runs `prep` for `module` (see the module docs). Cancel-safe: dropping the future kills the step.
pub async fn run(kernel: &Kernel, module: &str, prep: &Prepare, timeout: Duration) {
    let lock = kernel.prepare_locks.get(&prep.lock);
    let _held = lock.lock().await;
    let started = std::time::Instant::now();
    match run_locked(kernel, module, prep, timeout).await {
        Ok(wrote) => tracing::debug!(
            moduleId = %module,
            lock = %prep.lock.display(),
            written = wrote,
            ms = started.elapsed().as_millis() as u64,
            "deno lock file prepared"
        ),
        Err(e) => tracing::warn!(
            moduleId = %module,
            lock = %prep.lock.display(),
            "deno could not prepare the lock file: {e}; starting the module anyway"
        ),
    }
}

/// Steps 2–5; `Ok(true)` when the lock file beside the configuration was written.
async fn run_locked(
    kernel: &Kernel,
    module: &str,
    prep: &Prepare,
    timeout: Duration,
) -> Result<bool, String> {
    for dir in &prep.create_dirs {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!(moduleId = %module, dir = %dir.display(), error = %e, "cannot create a directory deno's configuration asks for");
        }
    }
    seed(&prep.lock, &prep.staged_lock)?;

    // Tagged like a module, so what deno leaves behind dies with the kernel too.
    let mut child = crate::sandbox::command(&prep.spec, crate::sandbox::tag::next())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", prep.spec.program.display()))?;
    let pgid = child.id().map(|p| p as i32);
    if let Some(pg) = pgid {
        kernel.watchdog_add(pg);
    }
    let _guard = GroupGuard { kernel, pgid };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // `deno cache` reads nothing from stdin: closing it keeps it from waiting for input.
    drop(child.stdin.take());
    let collect = async move {
        let (out, err) = tokio::join!(read_all(stdout), read_all(stderr));
        let status = child.wait().await;
        (status, out, err)
    };
    let (status, out, err) = tokio::time::timeout(timeout, collect).await.map_err(|_| {
        format!(
            "`deno cache` did not finish within {} ms (lifecycle.readyTimeoutMs)",
            timeout.as_millis()
        )
    })?;
    let ok = status.as_ref().is_ok_and(|s| s.success());
    let text = format!("{out}{err}");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if ok {
            tracing::debug!(moduleId = %module, source = "deno cache", "{line}");
        } else {
            tracing::warn!(moduleId = %module, source = "deno cache", "{line}");
        }
    }
    if !ok {
        let last = text
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(match status {
            Ok(s) => format!("`deno cache` failed ({s}): {last}"),
            Err(e) => format!("`deno cache` could not be waited for: {e}"),
        });
    }
    write_back(&prep.staged_lock, &prep.lock)
}

/// Everything a pipe delivers until end of file (at most 1 MiB kept), as text.
async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> String {
    use tokio::io::AsyncReadExt;
    let Some(r) = r else {
        return String::new();
    };
    let mut buf = Vec::new();
    let _ = r.take(1 << 20).read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Step 3: the kernel's copy := the lock file beside the configuration (none: no copy).
fn seed(lock: &Path, staged: &Path) -> Result<(), String> {
    let dir = staged.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    match std::fs::read(lock) {
        Ok(bytes) => {
            if std::fs::read(staged).ok().as_deref() != Some(&bytes[..]) {
                write_atomic(staged, &bytes, 0o600)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::remove_file(staged) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", staged.display())),
        },
        Err(e) => Err(format!("cannot read {}: {e}", lock.display())),
    }
}

/// Step 5: the lock file beside the configuration := the kernel's copy, when they differ.
fn write_back(staged: &Path, lock: &Path) -> Result<bool, String> {
    let bytes = match std::fs::read(staged) {
        Ok(b) => b,
        // deno keeps no lock file for a configuration without remote dependencies.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("cannot read {}: {e}", staged.display())),
    };
    let old = std::fs::metadata(lock).ok();
    if old.is_some() && std::fs::read(lock).ok().as_deref() == Some(&bytes[..]) {
        return Ok(false);
    }
    let mode = old.map_or(0o644, |m| m.permissions().mode() & 0o7777);
    write_atomic(lock, &bytes, mode)?;
    Ok(true)
}

/// Temp file beside `path` + rename, with `mode`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.pons-{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_and_write_back_mirror_the_lock_file() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("deno.lock");
        let staged = t.path().join(".runtime/deno/k/deno.lock");
        // No lock file: no copy, nothing written back.
        seed(&lock, &staged).unwrap();
        assert!(!staged.exists());
        assert!(!write_back(&staged, &lock).unwrap());
        assert!(!lock.exists());
        // deno created one: written back, 0644.
        std::fs::write(&staged, "{\"version\":\"5\"}").unwrap();
        assert!(write_back(&staged, &lock).unwrap());
        assert_eq!(
            std::fs::read_to_string(&lock).unwrap(),
            "{\"version\":\"5\"}"
        );
        let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(
            !write_back(&staged, &lock).unwrap(),
            "unchanged: not rewritten"
        );
        // The operator's edit is what deno starts from; the operator's mode is kept.
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&lock, "{\"version\":\"5\",\"x\":1}").unwrap();
        seed(&lock, &staged).unwrap();
        assert_eq!(
            std::fs::read_to_string(&staged).unwrap(),
            "{\"version\":\"5\",\"x\":1}"
        );
        std::fs::write(&staged, "{\"version\":\"5\",\"y\":2}").unwrap();
        assert!(write_back(&staged, &lock).unwrap());
        let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The operator removed the lock file: the copy goes too.
        std::fs::remove_file(&lock).unwrap();
        seed(&lock, &staged).unwrap();
        assert!(!staged.exists());
        let leftovers: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
