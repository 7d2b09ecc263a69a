//! The filesystem rules of one module: its approved paths plus the system paths every program
//! needs (libraries, locale and time zone data, name resolution files, `/proc`, a few devices).
//!
//! Both the start of a module ([`super::ruleset`] turns them into a Landlock ruleset) and the
//! status report use this list, so what `pons status` shows is what is enforced. Execute rights go only to the program,
//! the executables in `policy.exec`, their script interpreters (`#!`) and their ELF loaders
//! (`PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`): shared libraries are opened and mapped,
//! which Landlock governs with the read right, so library directories are read-only.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use pons_reconciler::desired::SandboxPolicy;

/// What a rule grants beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grant {
    /// Read files and list directories.
    Read,
    /// Read, write, create, remove, rename, truncate (no execute).
    ReadWrite,
    /// Read and execute.
    Exec,
}

/// Where a rule comes from (only `Policy` rules get a note when their path does not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The module's approved `read` / `write` / `run` permissions.
    Policy,
    /// The runtime's configuration file (deno's `--config`: import-map targets, lock file,
    /// `node_modules/`), no approved permission; skipped silently where the path does not exist.
    Runtime,
    /// The program being started, its interpreter, loader and install prefix.
    Program,
    /// The system defaults of every module.
    System,
}

/// One filesystem rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathBuf,
    pub grant: Grant,
    pub origin: Origin,
}

/// Read-only system paths granted to every module (those that exist).
pub const SYSTEM_READ: &[&str] = &[
    // Shared libraries and the loader's configuration.
    "/lib",
    "/lib32",
    "/lib64",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    // Locale, time zone, certificates, MIME and terminfo data.
    "/usr/share",
    "/usr/local/share",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/mime.types",
    "/etc/os-release",
    // Name and user resolution.
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/passwd",
    "/etc/group",
    "/run/systemd/resolve",
    "/run/resolvconf",
    // Process and CPU information (other processes' memory, fds and environment stay out of
    // reach: Landlock denies ptrace-class access to processes outside the sandbox).
    "/proc",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/sys/kernel/mm/transparent_hugepage",
];

/// Device files every module may read and write.
pub const SYSTEM_READ_WRITE: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Subdirectories of an executable's install prefix (`<prefix>/bin/<exe>`) made readable, so an
/// interpreter outside `/usr` (pyenv, nvm, a deno install) finds its standard library.
const PREFIX_DIRS: &[&str] = &["lib", "lib64", "share", "libexec"];

/// All rules for a module running `program` under `policy`, in a stable order. System and
/// program-derived rules that do not exist are left out, and so are program-derived rules a
/// system rule already covers (e.g. `/usr/lib` for `/usr/bin/python3`); policy rules are kept
/// (the caller notes and skips the missing ones).
pub fn module_rules(policy: &SandboxPolicy, program: Option<&Path>) -> Vec<Rule> {
    build_rules(policy, program, true)
}

/// [`module_rules`] without probing the system paths: every system rule is listed, and the caller
/// skips those whose path cannot be opened (building the ruleset opens each path anyway, so a separate
/// existence check would only cost a second path walk). A program-derived rule beneath a
/// system path that does not exist does not exist either, so both lists enforce the same.
pub fn module_rules_unprobed(policy: &SandboxPolicy, program: Option<&Path>) -> Vec<Rule> {
    build_rules(policy, program, false)
}

fn build_rules(policy: &SandboxPolicy, program: Option<&Path>, probe: bool) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::with_capacity(SYSTEM_READ.len() + SYSTEM_READ_WRITE.len() + 8);
    // The system rules are distinct constants: no duplicate check.
    let system = SYSTEM_READ
        .iter()
        .map(|p| (p, Grant::Read))
        .chain(SYSTEM_READ_WRITE.iter().map(|p| (p, Grant::ReadWrite)));
    for (p, grant) in system {
        if !probe || Path::new(p).exists() {
            rules.push(Rule {
                path: PathBuf::from(p),
                grant,
                origin: Origin::System,
            });
        }
    }
    let system_count = rules.len();
    let mut push = |path: PathBuf, grant: Grant, origin: Origin| {
        let covered = origin == Origin::Program
            && rules[..system_count]
                .iter()
                .any(|r| path.starts_with(&r.path) && covers(r.grant, grant));
        if covered {
            return;
        }
        let rule = Rule {
            path,
            grant,
            origin,
        };
        // Same as `rules.contains(&rule)`, but the cheap fields first: a path comparison walks
        // components, and a system rule (another origin) can never be a duplicate.
        let dup = rules[system_count..]
            .iter()
            .any(|r| r.grant == rule.grant && r.origin == rule.origin && r.path == rule.path);
        if !dup {
            rules.push(rule);
        }
    };
    for p in &policy.read {
        push(p.clone(), Grant::Read, Origin::Policy);
    }
    for p in &policy.write {
        push(p.clone(), Grant::ReadWrite, Origin::Policy);
    }
    for p in &policy.runtime_read {
        push(p.clone(), Grant::Read, Origin::Runtime);
    }
    for p in &policy.runtime_write {
        push(p.clone(), Grant::ReadWrite, Origin::Runtime);
    }
    for p in &policy.exec {
        push(p.clone(), Grant::Exec, Origin::Policy);
        for (q, g) in executable_support(p) {
            push(q, g, Origin::Program);
        }
    }
    if let Some(program) = program {
        push(program.to_path_buf(), Grant::Exec, Origin::Program);
        // An approved executable's support is listed already.
        if !policy.exec.iter().any(|p| p == program) {
            for (q, g) in executable_support(program) {
                push(q, g, Origin::Program);
            }
        }
    }
    rules
}

/// Whether a rule granting `have` beneath a path also grants `want` beneath it.
fn covers(have: Grant, want: Grant) -> bool {
    have == want || want == Grant::Read
}

/// What running `exe` needs besides itself: its `#!` interpreter or ELF loader (execute) and the
/// library directories of its install prefix (read). Empty for directories and unreadable files.
pub fn executable_support(exe: &Path) -> Vec<(PathBuf, Grant)> {
    let mut out = Vec::new();
    let mut current = exe.to_path_buf();
    // A script's interpreter may itself be a script: follow at most a few levels.
    for _ in 0..4 {
        for dir in prefix_dirs(&current) {
            out.push((dir, Grant::Read));
        }
        match interpreter_of(&current) {
            Some(Interp::Loader(l)) => {
                out.push((l, Grant::Exec));
                break;
            }
            Some(Interp::Script(i)) => {
                out.push((i.clone(), Grant::Exec));
                current = i;
            }
            None => break,
        }
    }
    out
}

/// `<prefix>/{lib,lib64,share,libexec}` for `<prefix>/bin/<exe>` (symlinks resolved), existing
/// ones only, never for `/`, `/usr` and `/usr/local`, whose library and data directories are
/// system defaults.
fn prefix_dirs(exe: &Path) -> Vec<PathBuf> {
    let Some(real) = real_path(exe) else {
        return Vec::new();
    };
    let Some(bin) = real.parent() else {
        return Vec::new();
    };
    if !matches!(
        bin.file_name().and_then(|n| n.to_str()),
        Some("bin" | "sbin")
    ) {
        return Vec::new();
    }
    match bin.parent() {
        Some(prefix)
            if !["/", "/usr", "/usr/local"]
                .iter()
                .any(|p| prefix == Path::new(p)) =>
        {
            PREFIX_DIRS
                .iter()
                .map(|d| prefix.join(d))
                .filter(|d| d.is_dir())
                .collect()
        }
        _ => Vec::new(),
    }
}

/// `path` with every symlink resolved: one path walk (an `O_PATH` open) and the descriptor's
/// name in `/proc/self/fd`, where a `realpath` reads every prefix as a possible link; the
/// `realpath` where `/proc` is not mounted.
fn real_path(path: &Path) -> Option<PathBuf> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    match std::fs::read_link(link) {
        // The name of an unlinked file ends in " (deleted)": not a path to use.
        Ok(p) if p.is_absolute() && !p.as_os_str().as_encoded_bytes().ends_with(b" (deleted)") => {
            Some(p)
        }
        _ => std::fs::canonicalize(path).ok(),
    }
}

enum Interp {
    /// ELF `PT_INTERP`: the dynamic loader.
    Loader(PathBuf),
    /// `#!` line: the script interpreter.
    Script(PathBuf),
}

/// The loader or interpreter `exe` needs, read from its first bytes.
fn interpreter_of(exe: &Path) -> Option<Interp> {
    let file = File::open(exe).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = [0u8; 256];
    let n = (&file).take(256).read(&mut head).ok()?;
    let head = &head[..n];
    if head.starts_with(b"#!") {
        let line = head[2..].split(|b| *b == b'\n').next()?;
        let line = std::str::from_utf8(line).ok()?;
        let interp = line.split_whitespace().next()?;
        return interp
            .starts_with('/')
            .then(|| Interp::Script(PathBuf::from(interp)));
    }
    elf_interp(&file, head).map(Interp::Loader)
}

/// Reads the `PT_INTERP` path of an ELF file (32 or 64 bit, either byte order).
fn elf_interp(file: &File, head: &[u8]) -> Option<PathBuf> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let is64 = match head[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match head[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |b: &[u8], o: usize| -> Option<u64> {
        let a: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(u64::from(if le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }))
    };
    let u32_at = |b: &[u8], o: usize| -> Option<u64> {
        let a: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(u64::from(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }))
    };
    let u64_at = |b: &[u8], o: usize| -> Option<u64> {
        let a: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        })
    };
    let (phoff, phentsize, phnum) = if is64 {
        (
            u64_at(head, 0x20)?,
            u16_at(head, 0x36)?,
            u16_at(head, 0x38)?,
        )
    } else {
        (
            u32_at(head, 0x1C)?,
            u16_at(head, 0x2A)?,
            u16_at(head, 0x2C)?,
        )
    };
    let min_entsize = if is64 { 56 } else { 32 };
    if phentsize < min_entsize || phnum > 512 {
        return None;
    }
    let mut table = vec![0u8; usize::try_from(phentsize * phnum).ok()?];
    file.read_exact_at(&mut table, phoff).ok()?;
    for entry in table.chunks_exact(usize::try_from(phentsize).ok()?) {
        if u32_at(entry, 0)? != 3 {
            continue; // not PT_INTERP
        }
        let (offset, size) = if is64 {
            (u64_at(entry, 0x08)?, u64_at(entry, 0x20)?)
        } else {
            (u32_at(entry, 0x04)?, u32_at(entry, 0x10)?)
        };
        if size == 0 || size > 4096 {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(size).ok()?];
        file.read_exact_at(&mut buf, offset).ok()?;
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        let s = std::str::from_utf8(&buf[..end]).ok()?;
        return s.starts_with('/').then(|| PathBuf::from(s));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn finds_the_loader_of_a_dynamic_executable() {
        let support = executable_support(Path::new("/bin/sh"));
        let loader = support
            .iter()
            .find(|(_, g)| *g == Grant::Exec)
            .map(|(p, _)| p.clone());
        let loader = loader.expect("/bin/sh has a PT_INTERP");
        assert!(
            loader.to_string_lossy().contains("ld-"),
            "unexpected loader {loader:?}"
        );
        assert!(loader.exists());
        // /bin/sh lives in /usr/bin: /usr's library directories are system defaults.
        assert!(support.iter().all(|(p, _)| !p.starts_with("/usr/lib")));
    }

    #[test]
    fn follows_a_shebang_to_its_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        let mut f = File::create(&script).unwrap();
        writeln!(f, "#!/bin/sh -e\necho hi").unwrap();
        let support = executable_support(&script);
        assert!(support.contains(&(PathBuf::from("/bin/sh"), Grant::Exec)));
        assert!(support
            .iter()
            .any(|(p, g)| *g == Grant::Exec && p.to_string_lossy().contains("ld-")));
    }

    #[test]
    fn a_private_install_prefix_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("opt/tool");
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        std::fs::create_dir_all(prefix.join("lib")).unwrap();
        let exe = prefix.join("bin/tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let support = executable_support(&exe);
        let lib = std::fs::canonicalize(prefix.join("lib")).unwrap();
        assert!(support.contains(&(lib.clone(), Grant::Read)), "{support:?}");
        assert!(support.contains(&(PathBuf::from("/bin/sh"), Grant::Exec)));
        // Reached through a symlink elsewhere: the real prefix.
        let link = dir.path().join("tool-link");
        std::os::unix::fs::symlink(&exe, &link).unwrap();
        assert!(executable_support(&link).contains(&(lib, Grant::Read)));
        assert_eq!(real_path(&link), Some(std::fs::canonicalize(&exe).unwrap()));
        assert_eq!(real_path(&dir.path().join("missing")), None);
    }

    #[test]
    fn garbage_and_directories_have_no_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        assert!(executable_support(dir.path()).is_empty());
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"\x7fELF\x02\x01garbage").unwrap();
        assert!(executable_support(&junk).is_empty());
        let mut big = vec![0u8; 64];
        big[..4].copy_from_slice(b"\x7fELF");
        big[4] = 2;
        big[5] = 1;
        big[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        big[0x36] = 56;
        big[0x38] = 1;
        std::fs::write(&junk, &big).unwrap();
        assert!(executable_support(&junk).is_empty());
    }

    #[test]
    fn module_rules_put_policy_and_program_after_system_defaults() {
        let policy = SandboxPolicy {
            read: vec!["/nonexistent/r".into()],
            write: vec!["/tmp".into()],
            exec: vec!["/usr/bin/env".into()],
            runtime_read: vec!["/etc/hostname".into()],
            runtime_write: vec!["/var/tmp".into()],
            ..SandboxPolicy::default()
        };
        let rules = module_rules(&policy, Some(Path::new("/bin/sh")));
        let find = |p: &str| rules.iter().find(|r| r.path == Path::new(p)).cloned();
        assert_eq!(find("/proc").unwrap().origin, Origin::System);
        assert_eq!(find("/dev/null").unwrap().grant, Grant::ReadWrite);
        assert_eq!(find("/nonexistent/r").unwrap().origin, Origin::Policy);
        assert_eq!(find("/tmp").unwrap().grant, Grant::ReadWrite);
        let hostname = find("/etc/hostname").unwrap();
        assert_eq!(
            (hostname.grant, hostname.origin),
            (Grant::Read, Origin::Runtime)
        );
        let var_tmp = find("/var/tmp").unwrap();
        assert_eq!(
            (var_tmp.grant, var_tmp.origin),
            (Grant::ReadWrite, Origin::Runtime)
        );
        assert_eq!(find("/usr/bin/env").unwrap().grant, Grant::Exec);
        assert_eq!(find("/bin/sh").unwrap().origin, Origin::Program);
        assert!(rules
            .iter()
            .all(|r| r.origin != Origin::System || r.grant != Grant::Exec));
        // /bin/sh's prefix dir /usr/lib is a system default already: not repeated.
        assert!(!rules
            .iter()
            .any(|r| r.origin == Origin::Program && r.path == Path::new("/usr/lib")));
    }
}
