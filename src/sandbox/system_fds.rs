//! The system paths of every module's ruleset ([`super::rules::SYSTEM_READ`], …), opened once
//! and kept open (`O_PATH`) across spawns, so starting a module costs one path walk per system
//! rule instead of an open, two stats and a close.
//!
//! A kept descriptor is used only while the path still names the same file: a spawn looks the
//! path up again (`stat`, following symlinks, as the open does) and compares device and inode; a
//! path replaced since (an editor's or a package manager's rename, `/etc/resolv.conf` rewritten
//! by a network manager, a runtime directory recreated by its service) is opened anew, and a
//! path that no longer exists is skipped, as when nothing was kept. The kept descriptor holds its
//! inode, so an inode number cannot be reused while it is kept.
//!
//! Within a burst of spawns (the boot, a pass starting many modules) what was looked up less than
//! [`FRESH`] ago is used as it is, absent paths included: a module then holds the rules of the
//! files as they were at most that long before its start — as any running module holds them as
//! they were at its start (Landlock rules name inodes, not paths).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a lookup stands for the next spawns.
const FRESH: Duration = Duration::from_millis(250);

/// A system path's kept descriptor.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    fd: Arc<OwnedFd>,
    dev: u64,
    ino: u64,
    /// A directory (else a file, whose rules hold only file rights).
    pub dir: bool,
}

impl Kept {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What the last lookup of a path found, and when.
#[derive(Debug)]
struct Entry {
    kept: Option<Kept>,
    checked: Instant,
}

static KEPT: Mutex<Option<HashMap<&'static str, Entry>>> = Mutex::new(None);

/// The descriptor of system path `path` as it is now (`None` when it does not exist or cannot be
/// opened): the kept one when the path still names its file, else a new one (then kept).
pub(super) fn open(path: &'static str) -> Option<Kept> {
    open_within(path, FRESH)
}

fn open_within(path: &'static str, fresh: Duration) -> Option<Kept> {
    let now = Instant::now();
    if let Some(e) = lock()
        .as_ref()
        .and_then(|m| m.get(path))
        .filter(|e| now.duration_since(e.checked) < fresh)
    {
        return e.kept.clone();
    }
    let found = lookup(path);
    lock().get_or_insert_with(HashMap::new).insert(
        path,
        Entry {
            kept: found.clone(),
            checked: now,
        },
    );
    found
}

/// The kept descriptor while `path` names its file, else a new one.
fn lookup(path: &'static str) -> Option<Kept> {
    let now = rustix::fs::stat(path).ok()?;
    let same = |k: &Kept| k.dev == now.st_dev as u64 && k.ino == now.st_ino as u64;
    if let Some(k) = lock()
        .as_ref()
        .and_then(|m| m.get(path))
        .and_then(|e| e.kept.as_ref())
        .filter(|k| same(k))
    {
        return Some(k.clone());
    }
    let fd = rustix::fs::open(
        Path::new(path),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    // The descriptor's own identity (the path may have changed again since the stat).
    let st = rustix::fs::fstat(&fd).ok()?;
    Some(Kept {
        fd: Arc::new(fd),
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        dir: rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory,
    })
}

fn lock() -> std::sync::MutexGuard<'static, Option<HashMap<&'static str, Entry>>> {
    KEPT.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `path` as the `'static` string the system lists are made of.
    fn leaked(path: &Path) -> &'static str {
        Box::leak(path.to_string_lossy().into_owned().into_boxed_str())
    }

    #[test]
    fn a_kept_path_is_reopened_once_it_names_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = leaked(&dir.path().join("f"));
        let open = |p| open_within(p, Duration::ZERO);
        assert!(open(path).is_none(), "a missing path is skipped");
        std::fs::write(path, "one").unwrap();
        let a = open(path).unwrap();
        assert!(!a.dir);
        let b = open(path).unwrap();
        assert!(Arc::ptr_eq(&a.fd, &b.fd), "unchanged: the kept descriptor");
        // Replaced by rename, as editors and package managers do.
        let tmp = dir.path().join("f.new");
        std::fs::write(&tmp, "two").unwrap();
        std::fs::rename(&tmp, path).unwrap();
        let c = open(path).unwrap();
        assert!(!Arc::ptr_eq(&a.fd, &c.fd), "replaced: opened anew");
        assert_ne!(a.ino, c.ino);
        std::fs::remove_file(path).unwrap();
        assert!(
            open(path).is_none(),
            "gone: skipped, though a descriptor is kept"
        );
        assert!(open(leaked(dir.path())).is_some_and(|k| k.dir));
    }

    #[test]
    fn a_fresh_lookup_stands_for_the_next_spawns_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = leaked(&dir.path().join("g"));
        let hour = Duration::from_secs(3600);
        assert!(open_within(path, hour).is_none());
        std::fs::write(path, "x").unwrap();
        assert!(open_within(path, hour).is_none(), "absent a moment ago");
        assert!(
            open_within(path, Duration::ZERO).is_some(),
            "looked up again"
        );
        std::fs::remove_file(path).unwrap();
        assert!(open_within(path, hour).is_some(), "present a moment ago");
        assert!(open_within(path, Duration::ZERO).is_none());
    }
}
