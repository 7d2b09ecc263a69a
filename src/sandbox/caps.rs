//! Capabilities: the trampoline drops every one before it `exec`s a module, so a module of a root
//! kernel is uid 0 without any privilege (it cannot reboot the host, create device nodes, bypass
//! file permissions, or read the `/proc/<pid>/environ`, `mem` or `fd` of a process that holds
//! capabilities — such as the kernel).
//!
//! Dropped: the bounding set (so an `exec` of any binary, setuid or with file capabilities, or as
//! root, can never give one back), the ambient set, and the effective, permitted and inheritable
//! sets. The bounding set needs `CAP_SETPCAP` to change; a process without it has nothing to drop
//! there (an unprivileged exec gains nothing under `no_new_privs`).

use std::io;

use rustix::thread::{CapabilitySet, CapabilitySets};

/// Drops every capability of the calling (single-threaded) process; afterwards its effective,
/// permitted, inheritable and ambient sets are empty and, if it could change it, so is its
/// bounding set.
pub fn drop_all() -> io::Result<()> {
    let now = rustix::thread::capabilities(None)?;
    if now.effective.contains(CapabilitySet::SETPCAP) {
        // Dropping a capability already gone succeeds; bits past the last capability this Linux
        // knows answer EINVAL: stop there.
        for bit in 0..64u32 {
            let cap = CapabilitySet::from_bits_retain(1 << bit);
            match rustix::thread::remove_capability_from_bounding_set(cap) {
                Ok(()) => {}
                Err(rustix::io::Errno::INVAL) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    // Linux < 4.3 has no ambient set (EINVAL): nothing to clear.
    match rustix::thread::clear_ambient_capability_set() {
        Ok(()) | Err(rustix::io::Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )?;
    Ok(())
}

/// What modules of this process get, for the sandbox report: `"dropped"` when this process holds
/// capabilities (the trampoline drops them all), `"none"` when it has none to hand out.
pub fn report() -> &'static str {
    match rustix::thread::capabilities(None) {
        Ok(c) if c.permitted.is_empty() && c.effective.is_empty() && c.inheritable.is_empty() => {
            "none"
        }
        _ => "dropped",
    }
}
