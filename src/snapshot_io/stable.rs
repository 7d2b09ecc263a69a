//! Reading one input file whole, never half-written, without waiting for a quiet window: a pass
//! reads its inputs at once (an edit followed by a signal is read right away), and this is what
//! keeps a file that is still being written out of it (specs/files.md "When the kernel reads the
//! files").
//!
//! - **Changed under the read.** The file's identity and version (device, inode, size, mtime,
//!   ctime) are taken before and after the read, and from the path at the end; if they differ, or
//!   the read returned another size than the file has, it is read again (at most [`ATTEMPTS`]
//!   times; a file that changes under every read is being written).
//! - **Open for writing.** After the read, a read lease is tried on the file (`fcntl(2)`
//!   `F_SETLEASE`): Linux refuses one exactly while some process has the file open for writing —
//!   an editor between the chunks of an in-place save. Such a file, last modified less than
//!   [`WRITER_RECENT`] ago, is *being written*: the caller keeps its last good value, and the
//!   writer's `close` (an inotify event of its own) triggers the pass that reads it complete. A
//!   process that keeps a file open but stopped writing it that long ago holds nothing back.
//!
//! Leases need the file's owner (or `CAP_LEASE`) and a file system that has them; where they
//! cannot tell, only the before/after check applies. The lease is held for the two `fcntl` calls
//! only: a writer opening the file in those microseconds waits for them (one opening it with
//! `O_NONBLOCK` gets `EWOULDBLOCK`).

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use pons_reconciler::snapshot::FileRead;

/// Files larger than this are not read (reported as an error instead).
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Reads of a file that changes under each of them, before it counts as being written.
const ATTEMPTS: usize = 3;

/// A file open for writing counts as being written only if it was modified this recently.
pub const WRITER_RECENT: Duration = Duration::from_secs(1);

/// `fcntl(2)` `F_SETSIG` (10 on every Linux architecture; the `libc` crate lacks it for glibc).
const F_SETSIG: libc::c_int = 10;

/// One file as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// What was read (when `being_written`, possibly a part of what is coming).
    pub file: FileRead,
    /// Another process is writing the file: `file` must not be taken for its content.
    pub being_written: bool,
}

/// Reads `path`: missing → [`FileRead::Missing`], a directory, a file over [`MAX_FILE_BYTES`] or
/// one that cannot be read → [`FileRead::Error`].
pub fn read(path: &Path) -> Read {
    let mut last = FileRead::Missing;
    for _ in 0..ATTEMPTS {
        match attempt(path) {
            Attempt::Done(file) => {
                return Read {
                    file,
                    being_written: false,
                }
            }
            Attempt::Writer(file) => {
                return Read {
                    file,
                    being_written: true,
                }
            }
            Attempt::Changed(file) => last = file,
        }
    }
    Read {
        file: last,
        being_written: true,
    }
}

enum Attempt {
    /// A consistent read, no writer.
    Done(FileRead),
    /// A consistent read of a file another process is writing.
    Writer(FileRead),
    /// The file changed under the read.
    Changed(FileRead),
}

fn attempt(path: &Path) -> Attempt {
    // O_NONBLOCK: never wait on a FIFO, or on a process holding a write lease on the file.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Attempt::Done(FileRead::Missing)
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            return Attempt::Changed(FileRead::Error(e.to_string()))
        }
        Err(e) => return Attempt::Done(FileRead::Error(e.to_string())),
    };
    let before = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Attempt::Done(FileRead::Error(e.to_string())),
    };
    if before.is_dir() {
        return Attempt::Done(FileRead::Error("it is a directory".into()));
    }
    if before.len() > MAX_FILE_BYTES {
        return Attempt::Done(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(before.len()).unwrap_or(0));
    if let Err(e) = (&file).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        return Attempt::Done(FileRead::Error(e.to_string()));
    }
    let writer = open_for_writing(&file);
    let unchanged = file.metadata().is_ok_and(|after| {
        same_version(&before, &after) && (!after.is_file() || after.len() == bytes.len() as u64)
    }) && std::fs::metadata(path)
        .is_ok_and(|now| (now.dev(), now.ino()) == (before.dev(), before.ino()));
    let read = if bytes.len() as u64 > MAX_FILE_BYTES {
        too_large()
    } else {
        FileRead::Bytes(bytes)
    };
    if !unchanged {
        Attempt::Changed(read)
    } else if writer == Some(true) && recently_modified(&before) {
        Attempt::Writer(read)
    } else {
        Attempt::Done(read)
    }
}

fn too_large() -> FileRead {
    FileRead::Error(format!(
        "it is larger than {} MiB",
        MAX_FILE_BYTES / 1024 / 1024
    ))
}

/// Same file, same content version (any write changes size, mtime or ctime).
fn same_version(a: &Metadata, b: &Metadata) -> bool {
    (
        a.dev(),
        a.ino(),
        a.len(),
        a.mtime(),
        a.mtime_nsec(),
        a.ctime(),
        a.ctime_nsec(),
    ) == (
        b.dev(),
        b.ino(),
        b.len(),
        b.mtime(),
        b.mtime_nsec(),
        b.ctime(),
        b.ctime_nsec(),
    )
}

/// Modified less than [`WRITER_RECENT`] ago (a modification time in the future is not recent).
fn recently_modified(m: &Metadata) -> bool {
    m.modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < WRITER_RECENT)
}

/// Whether some process has `file` open for writing: Linux grants a read lease exactly when none
/// has (`fcntl(2)` `F_SETLEASE`). `None` when leases cannot tell (not the file's owner and no
/// `CAP_LEASE`, a file system or file type without leases, leases disabled).
fn open_for_writing(file: &File) -> Option<bool> {
    let fd = file.as_raw_fd();
    // A writer that opens the file while the lease is held breaks it, and Linux signals the
    // holder: with SIGIO unless told otherwise, whose default action would end the kernel. SIGURG
    // is ignored by default. The lease is given up right away (a blocked opener waits for that
    // only).
    // SAFETY: fcntl on a descriptor `file` owns, with integer arguments only.
    unsafe {
        if libc::fcntl(fd, F_SETSIG, libc::SIGURG) == -1 {
            return None;
        }
        if libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) == 0 {
            libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK);
            return Some(false);
        }
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Whether leases work for files in `dir` (they need the owner and a file system with them).
    fn leases_work(dir: &Path) -> bool {
        let p = dir.join("probe");
        std::fs::write(&p, "x").unwrap();
        let f = File::open(&p).unwrap();
        open_for_writing(&f).is_some()
    }

    #[test]
    fn reads_whole_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.yaml");
        assert_eq!(read(&p).file, FileRead::Missing);
        std::fs::write(&p, "a: 1\n").unwrap();
        let r = read(&p);
        assert_eq!(r.file, FileRead::Bytes(b"a: 1\n".to_vec()));
        assert!(!r.being_written, "written and closed: complete");
        std::fs::create_dir(t.path().join("dir")).unwrap();
        assert_eq!(
            read(&t.path().join("dir")).file,
            FileRead::Error("it is a directory".into())
        );
    }

    #[test]
    fn a_file_open_for_writing_is_being_written_until_closed() {
        let t = tempfile::tempdir().unwrap();
        if !leases_work(t.path()) {
            eprintln!("SKIP: no file leases in {}", t.path().display());
            return;
        }
        let p = t.path().join("config.yaml");
        std::fs::write(&p, "a: 1\nb: 2\n").unwrap();
        // An in-place save: truncate, first chunk, (pass), second chunk, close.
        let mut w = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        w.write_all(b"a: 1\n").unwrap();
        let r = read(&p);
        assert!(r.being_written, "{r:?}");
        w.write_all(b"b: 3\n").unwrap();
        assert!(read(&p).being_written);
        drop(w);
        let r = read(&p);
        assert_eq!(r.file, FileRead::Bytes(b"a: 1\nb: 3\n".to_vec()));
        assert!(!r.being_written);
        // Open for writing but not modified for a while: nothing to wait for.
        let _idle = OpenOptions::new().append(true).open(&p).unwrap();
        let old = SystemTime::now() - 2 * WRITER_RECENT;
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(!read(&p).being_written);
    }

    #[test]
    fn a_reader_does_not_count_as_a_writer() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("permissions.yaml");
        std::fs::write(&p, "modules: {}\n").unwrap();
        let _reader = File::open(&p).unwrap();
        assert!(!read(&p).being_written);
    }
}
