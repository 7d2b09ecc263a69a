//! The kernel's memory: two malloc arenas, freed memory and code run once go back to the system
//! after every pass.
//!
//! glibc gives each thread that allocates while another holds the arena an arena of its own (up
//! to eight per core) and keeps what is freed in it; the kernel's heap grows in bursts that it
//! then frees — the boot pass reading every module, a pass's snapshot and plan, a large
//! `pons status` reply — so megabytes stay resident though nothing uses them, spread over
//! arenas. [`configure`] caps the arenas at two (the per-thread caches still serve most small
//! allocations without a lock); after each pass [`trim`] hands every whole free page of every
//! arena back (`malloc_trim(0)`, on a blocking thread: it walks the free lists).

/// Caps the malloc arenas; call before any thread starts (glibc; elsewhere a no-op).
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns the free pages of every malloc arena to the system (glibc; elsewhere a no-op).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and madvises the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long after the last pass the executable's code is released.
pub const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

/// Passes so far: a release waits for the count to stay the same for [`QUIET`].
static PASSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Called after every pass: [`release_code`] (and [`trim`]) once no other pass has run for
/// [`QUIET`].
pub fn release_code_when_quiet() {
    use std::sync::atomic::Ordering;
    let me = PASSES.fetch_add(1, Ordering::AcqRel) + 1;
    drop(tokio::spawn(async move {
        tokio::time::sleep(QUIET).await;
        if PASSES.load(Ordering::Acquire) == me {
            drop(tokio::task::spawn_blocking(|| {
                trim();
                release_code();
            }));
        }
    }));
}

/// Unmaps this executable's code pages (`MADV_DONTNEED` on its private, read-and-execute
/// mappings, which are never written: nothing is lost, a later access maps the page again from
/// the file). A mapping holding a page of its own (`Anonymous` in smaps: a debugger's breakpoint
/// or a uprobe was written into the code) is left as it is, so no breakpoint is lost. Linux only;
/// errors are ignored (memory stays as it was).
pub fn release_code() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(maps), Ok(exe)) = (
            std::fs::read_to_string("/proc/self/smaps"),
            std::fs::metadata("/proc/self/exe"),
        ) else {
            return;
        };
        for (start, len) in code_ranges(&maps, exe.ino()) {
            // SAFETY: the range is one of this process's own mappings of its executable, private
            // and not writable: dropping its pages loses nothing (they are read again from the
            // file on the next access), and no Rust reference points into code.
            unsafe {
                libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
            }
        }
    }
}

/// The `(start, length)` of each read-and-execute private mapping of the file with inode `ino`
/// in a `/proc/<pid>/smaps` text (a `maps` text, without the per-mapping fields, reads the same)
/// that holds no page of its own (`Anonymous:` other than 0). Matched by inode, not path: the
/// path gains ` (deleted)` when the executable is replaced while the kernel runs.
fn code_ranges(smaps: &str, ino: u64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The current mapping, while it is one of the executable's code mappings.
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(first) = f.next() else {
            continue;
        };
        if first == "Anonymous:" {
            if f.next() != Some("0") {
                current = None;
            }
            continue;
        }
        if first.ends_with(':') {
            // Another per-mapping field (`Rss:`, `VmFlags:`, …).
            continue;
        }
        out.extend(current.take());
        current = code_mapping(first, &mut f, ino);
    }
    out.extend(current);
    out
}

/// A mapping's header line (`first` is its range) when it is a code mapping of inode `ino`.
fn code_mapping<'a>(
    first: &str,
    f: &mut impl Iterator<Item = &'a str>,
    ino: u64,
) -> Option<(usize, usize)> {
    let (perms, _offset, _dev, inode) = (f.next()?, f.next()?, f.next()?, f.next()?);
    if perms != "r-xp" || ino == 0 || inode.parse::<u64>().ok()? != ino {
        return None;
    }
    let (a, b) = first.split_once('-')?;
    let (a, b) = (
        usize::from_str_radix(a, 16).ok()?,
        usize::from_str_radix(b, 16).ok()?,
    );
    (b > a).then_some((a, b - a))
}

/// [`trim`] on a blocking thread, so no worker waits for it.
pub fn trim_soon() {
    drop(tokio::task::spawn_blocking(trim));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_ranges_are_the_executables_read_execute_mappings_only() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 4242 /opt/pons/bin/pons
55d0a0100000-55d0a0900000 r-xp 00100000 fd:01 4242 /opt/pons/bin/pons (deleted)
55d0a0900000-55d0a0a00000 rw-p 00900000 fd:01 4242 /opt/pons/bin/pons
7f0000000000-7f0000200000 r-xp 00028000 fd:01 777 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000300000-7f0000301000 r-xp 00000000 00:00 0 
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
";
        assert_eq!(code_ranges(maps, 4242), vec![(0x55d0a0100000, 0x800000)]);
        assert_eq!(
            code_ranges(maps, 0),
            vec![],
            "anonymous code is never touched"
        );
        assert_eq!(code_ranges("garbage\n\n", 4242), vec![]);
    }

    #[test]
    fn code_with_pages_of_its_own_is_kept() {
        let smaps = "55d0a0100000-55d0a0900000 r-xp 00100000 fd:01 4242 /opt/pons/bin/pons
Rss:                6000 kB
Anonymous:             4 kB
VmFlags: rd ex mr mw me
55d0a1100000-55d0a1200000 r-xp 00200000 fd:01 4242 /opt/pons/bin/pons
Rss:                 100 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
7f0000000000-7f0000200000 r-xp 00028000 fd:01 777 /usr/lib/libc.so.6
Anonymous:             0 kB
";
        // The first holds a breakpoint's page: kept, breakpoint and all.
        assert_eq!(code_ranges(smaps, 4242), vec![(0x55d0a1100000, 0x100000)]);
    }
}
