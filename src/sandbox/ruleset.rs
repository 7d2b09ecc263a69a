//! A module's Landlock ruleset, built in the kernel before the module's process starts: the rules
//! of [`rules::module_rules_unprobed`] turned into a ruleset file descriptor that the new process
//! only has to enforce (`landlock_restrict_self`, see [`super::child`]).
//!
//! Filesystem rights are those of ABI 5 (up to `IOCTL_DEV`), scopes those of ABI 6 (the module can
//! neither signal processes nor connect to abstract Unix sockets outside its sandbox); the
//! landlock crate's best-effort mode drops what the running Linux lacks. The system paths'
//! descriptors are kept across spawns ([`super::system_fds`]: still the same file, or opened
//! anew); every other rule's path is opened (`O_PATH`) while the ruleset is built and closed right
//! after. System paths that cannot be opened are skipped silently, paths of the module's policy
//! with a note.

use std::os::fd::OwnedFd;
use std::path::Path;

use landlock::{
    Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    Scope, ABI,
};
use pons_reconciler::desired::SandboxPolicy;

use super::rules::{module_rules_unprobed, Grant, Origin, SYSTEM_READ, SYSTEM_READ_WRITE};
use super::system_fds;

/// A ruleset ready to be enforced.
#[derive(Debug)]
pub struct Built {
    /// The ruleset (close-on-exec, as `landlock_create_ruleset` always makes it); `None` when the
    /// running Linux has no Landlock, so nothing can be enforced.
    pub fd: Option<OwnedFd>,
    /// One sentence per policy path that does not exist (its permission is skipped).
    pub notes: Vec<String>,
}

/// Filesystem rights pons handles: those of ABI 5 (up to `IOCTL_DEV`).
fn handled_fs() -> BitFlags<AccessFs> {
    AccessFs::from_all(ABI::V5)
}

/// The rights of `grant` on a directory (`dir`) or a file.
pub(crate) fn rights(grant: Grant, dir: bool) -> BitFlags<AccessFs> {
    let all = handled_fs();
    let r = match grant {
        Grant::Read => AccessFs::ReadFile | AccessFs::ReadDir,
        Grant::Exec => AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::Execute,
        // Device nodes are never created: MAKE_CHAR / MAKE_BLOCK are handled and granted nowhere.
        Grant::ReadWrite => all & !(AccessFs::Execute | AccessFs::MakeChar | AccessFs::MakeBlock),
    };
    if dir {
        r
    } else {
        r & AccessFs::from_file(ABI::V5)
    }
}

/// Builds the ruleset of a module running `program` (absolute) under `policy`; relative paths of
/// the policy are taken from `cwd`, the module's working directory.
pub fn build(
    policy: &SandboxPolicy,
    program: &Path,
    cwd: &Path,
) -> Result<Built, landlock::RulesetError> {
    let mut ruleset = Ruleset::default()
        .handle_access(handled_fs())?
        .scope(Scope::from_all(ABI::V6))?
        .create()?;
    let system = SYSTEM_READ
        .iter()
        .map(|p| (*p, Grant::Read))
        .chain(SYSTEM_READ_WRITE.iter().map(|p| (*p, Grant::ReadWrite)));
    for (path, grant) in system {
        if let Some(kept) = system_fds::open(path) {
            ruleset = ruleset.add_rule(PathBeneath::new(kept.fd(), rights(grant, kept.dir)))?;
        }
    }
    let mut notes = Vec::new();
    for rule in module_rules_unprobed(policy, Some(program)) {
        if rule.origin == Origin::System {
            continue;
        }
        let path = cwd.join(&rule.path);
        let fd = match PathFd::new(&path) {
            Ok(fd) => fd,
            Err(_) => {
                if rule.origin == Origin::Policy {
                    notes.push(format!(
                        "{} does not exist; its permission is skipped",
                        rule.path.display()
                    ));
                }
                continue;
            }
        };
        let dir = rustix::fs::fstat(&fd)
            .map(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
            })
            .unwrap_or(false);
        ruleset = ruleset.add_rule(PathBeneath::new(fd, rights(rule.grant, dir)))?;
    }
    Ok(Built {
        fd: ruleset.into(),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_rights_are_a_subset_of_dir_rights() {
        for g in [Grant::Read, Grant::ReadWrite, Grant::Exec] {
            assert!(rights(g, true).contains(rights(g, false)));
            assert!(!rights(g, false).contains(AccessFs::ReadDir));
        }
        assert!(!rights(Grant::ReadWrite, true).contains(AccessFs::Execute));
        for g in [Grant::Read, Grant::ReadWrite, Grant::Exec] {
            assert!(!rights(g, true).intersects(AccessFs::MakeChar | AccessFs::MakeBlock));
        }
        assert!(handled_fs().contains(AccessFs::MakeChar | AccessFs::MakeBlock));
        assert!(rights(Grant::ReadWrite, true).contains(AccessFs::MakeFifo));
        assert!(rights(Grant::ReadWrite, false).contains(AccessFs::Truncate));
        assert!(rights(Grant::Exec, false).contains(AccessFs::Execute));
    }

    #[test]
    fn the_ruleset_is_close_on_exec_and_missing_policy_paths_are_noted() {
        let policy = SandboxPolicy {
            read: vec!["/nonexistent/pons-ruleset-test".into()],
            ..SandboxPolicy::default()
        };
        let built = build(&policy, Path::new("/bin/sh"), Path::new("/")).unwrap();
        assert_eq!(
            built.notes,
            vec!["/nonexistent/pons-ruleset-test does not exist; its permission is skipped"]
        );
        if let Some(fd) = &built.fd {
            let flags = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        }
    }
}
