//! An exclusive advisory lock (`flock`) on `<file>.lock`, taken with a deadline. The lock file is
//! never removed: removing it would let two writers lock two different inodes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};

/// How long a writer waits for the lock by default.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
const STEP: Duration = Duration::from_millis(10);

/// A held lock; released when dropped (closing the descriptor releases the `flock`).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<file>.lock` beside `file`.
pub fn lock_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    file.with_file_name(name)
}

/// Takes the exclusive lock guarding `file` (on `<file>.lock`, created with mode 0600), retrying
/// every 10 ms until `timeout`.
pub fn lock(file: &Path, timeout: Duration) -> anyhow::Result<FileLock> {
    let path = lock_path(file);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open the lock file {}: {e}; check the directory's permissions",
                path.display()
            )
        })?;
    let deadline = Instant::now() + timeout;
    loop {
        match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(FileLock { _file: f, path }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                if Instant::now() >= deadline {
                    anyhow::bail!(
                        "timed out after {} ms waiting for the lock {}: another pons process is \
                         writing it; try again",
                        timeout.as_millis(),
                        path.display()
                    );
                }
                std::thread::sleep(STEP);
            }
            Err(e) => anyhow::bail!("cannot lock {}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_locker_times_out_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("config.yaml");
        let held = lock(&file, LOCK_TIMEOUT).unwrap();
        assert_eq!(held.path(), tmp.path().join("config.yaml.lock"));
        let err = lock(&file, Duration::from_millis(50))
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.yaml.lock"), "{err}");
        drop(held);
        lock(&file, Duration::from_millis(50)).unwrap();
    }
}
