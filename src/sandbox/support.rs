//! What the running Linux offers for sandboxing, detected once per process.
//!
//! The Landlock ABI version comes from `landlock_create_ruleset(NULL, 0, VERSION)`, the same probe
//! the landlock crate makes internally (the crate keeps its probe private). pons asks for the
//! filesystem rights of ABI 5 (up to `IOCTL_DEV`) and the scopes of ABI 6 (signals, abstract
//! Unix sockets): a kernel with
//! ABI ≥ 6 enforces the whole ruleset, ABI 1–5 a part of it (the crate's best-effort mode drops
//! what the kernel lacks), and without Landlock nothing.

use std::sync::OnceLock;

use serde::Serialize;

/// The Landlock ABI whose rights pons requests in full.
pub const TARGET_ABI: i32 = 6;

/// How much of the requested Landlock ruleset the running kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    /// Every requested right is enforced.
    Enforced,
    /// Landlock works, but the kernel lacks some requested rights (older ABI).
    Partial,
    /// No Landlock: only environment, rlimits, no_new_privs and process hygiene apply.
    Unavailable,
}

impl SandboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Enforced => "enforced",
            SandboxState::Partial => "partial",
            SandboxState::Unavailable => "unavailable",
        }
    }
}

/// Landlock support of the running kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSupport {
    /// The kernel's Landlock ABI version, `None` without Landlock.
    pub landlock_abi: Option<i32>,
    pub state: SandboxState,
    /// Why Landlock is unavailable (`None` when it is available).
    pub reason: Option<&'static str>,
}

impl SandboxSupport {
    /// `{"landlock":"enforced","abi":7}`, or `{"landlock":"unavailable","abi":null,"reason":…}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "landlock": self.state.as_str(),
            "abi": self.landlock_abi,
        });
        if let (Some(reason), Some(map)) = (self.reason, v.as_object_mut()) {
            map.insert("reason".into(), reason.into());
        }
        v
    }

    /// Classifies a raw probe result: the ABI version, or the errno of the failed probe.
    pub fn from_probe(probe: Result<i32, i32>) -> SandboxSupport {
        match probe {
            Ok(abi) if abi >= TARGET_ABI => SandboxSupport {
                landlock_abi: Some(abi),
                state: SandboxState::Enforced,
                reason: None,
            },
            Ok(abi) if abi >= 1 => SandboxSupport {
                landlock_abi: Some(abi),
                state: SandboxState::Partial,
                reason: None,
            },
            Ok(_) => SandboxSupport::unavailable("the kernel reported no Landlock ABI"),
            Err(libc::EOPNOTSUPP) => SandboxSupport::unavailable(
                "Landlock is built into the kernel but not enabled at boot (add landlock to lsm=)",
            ),
            Err(libc::ENOSYS) => {
                SandboxSupport::unavailable("the kernel does not implement Landlock (Linux < 5.13)")
            }
            Err(_) => SandboxSupport::unavailable("the Landlock probe failed"),
        }
    }

    fn unavailable(reason: &'static str) -> SandboxSupport {
        SandboxSupport {
            landlock_abi: None,
            state: SandboxState::Unavailable,
            reason: Some(reason),
        }
    }
}

/// Landlock support of this machine, probed on first use.
pub fn support() -> &'static SandboxSupport {
    static SUPPORT: OnceLock<SandboxSupport> = OnceLock::new();
    SUPPORT.get_or_init(|| SandboxSupport::from_probe(probe_abi()))
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
fn probe_abi() -> Result<i32, i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer and size 0 this syscall only returns the ABI version
    // (or an error); it reads and writes no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::ENOSYS))
    } else {
        Ok(i32::try_from(v).unwrap_or(i32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_results_map_to_states() {
        assert_eq!(
            SandboxSupport::from_probe(Ok(7)).state,
            SandboxState::Enforced
        );
        assert_eq!(
            SandboxSupport::from_probe(Ok(3)).state,
            SandboxState::Partial
        );
        let s = SandboxSupport::from_probe(Err(libc::ENOSYS));
        assert_eq!(s.state, SandboxState::Unavailable);
        assert_eq!(s.to_json()["landlock"], "unavailable");
        assert!(s.to_json()["abi"].is_null());
        assert!(s.to_json()["reason"].as_str().unwrap().contains("5.13"));
        let e = SandboxSupport::from_probe(Ok(6)).to_json();
        assert_eq!(e, serde_json::json!({"landlock":"enforced","abi":6}));
    }

    #[test]
    fn support_is_detected_once_and_printed() {
        let s = support();
        println!("landlock support on this machine: {}", s.to_json());
        assert!(std::ptr::eq(s, support()));
    }
}
