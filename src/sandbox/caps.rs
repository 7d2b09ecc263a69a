//! Capabilities: every one is dropped in a module's process before it `exec`s the module
//! ([`super::child`]), so a module of a root kernel is uid 0 without any privilege (it cannot
//! reboot the host, create device nodes, bypass file permissions, or read the
//! `/proc/<pid>/environ`, `mem` or `fd` of a process that holds capabilities — such as the kernel).
//!
//! Dropped: the bounding set (so an `exec` of any binary, setuid or with file capabilities, or as
//! root, can never give one back), the ambient set, and the effective, permitted and inheritable
//! sets. The bounding set needs `CAP_SETPCAP` to change; a process without it has nothing to drop
//! there (an unprivileged exec gains nothing under `no_new_privs`).

use rustix::io::Errno;
use rustix::thread::{CapabilitySet, CapabilitySets};

/// What [`CapDrop::apply`] does, decided in the kernel before the start (capabilities are per
/// thread: the new process has those of the thread that starts it, which prepares it just
/// before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapDrop {
    /// Whether the bounding set can be (and so is) emptied (`CAP_SETPCAP` is effective); the
    /// error of reading the capabilities otherwise, reported by the child.
    bounding: Result<bool, Errno>,
}

impl CapDrop {
    /// Reads the calling thread's capabilities.
    pub fn prepare() -> CapDrop {
        CapDrop {
            bounding: rustix::thread::capabilities(None)
                .map(|now| now.effective.contains(CapabilitySet::SETPCAP)),
        }
    }

    /// Drops every capability of the calling (single-threaded) process; afterwards its effective,
    /// permitted, inheritable and ambient sets are empty and, if it could change it, so is its
    /// bounding set. Async-signal-safe: system calls only, no allocation.
    pub fn apply(self) -> Result<(), Errno> {
        if self.bounding? {
            // Dropping a capability already gone succeeds; bits past the last capability this
            // Linux knows answer EINVAL: stop there.
            for bit in 0..64u32 {
                let cap = CapabilitySet::from_bits_retain(1 << bit);
                match rustix::thread::remove_capability_from_bounding_set(cap) {
                    Ok(()) => {}
                    Err(Errno::INVAL) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        // Linux < 4.3 has no ambient set (EINVAL): nothing to clear.
        match rustix::thread::clear_ambient_capability_set() {
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => return Err(e),
        }
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: CapabilitySet::empty(),
                permitted: CapabilitySet::empty(),
                inheritable: CapabilitySet::empty(),
            },
        )
    }
}

/// What modules of this process get, for the sandbox report: `"dropped"` when this process holds
/// capabilities (modules get none of them), `"none"` when it has none to hand out.
pub fn report() -> &'static str {
    match rustix::thread::capabilities(None) {
        Ok(c) if c.permitted.is_empty() && c.effective.is_empty() && c.inheritable.is_empty() => {
            "none"
        }
        _ => "dropped",
    }
}
