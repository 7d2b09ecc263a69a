//! Lifecycle reason tokens: the `reason` of the `system:module:stopping|stopped` payloads.
//!
//! Modules written for the reference kernel match on these tokens, so they are the reference's
//! wherever it has one; the human sentence travels beside the token as `detail`. Every stop,
//! restart and failure carries one [`Reason`].

use crate::desired::BlockReason;

/// Removed from disk, or no longer discoverable (invalid or tampered manifest, id changed, …).
pub const UNINSTALLED: &str = "uninstalled";
/// Its approval is gone or unreadable.
pub const PERMISSIONS_REVOKED: &str = "permissions-revoked";
/// Restarted because its effective permissions changed.
pub const PERMISSION_UPDATE: &str = "permission-update";
/// Restarted because its manifest, command line, environment or a `configDependencies` section
/// changed.
pub const HOT_SWAP: &str = "hot-swap";
/// Stopped or restarted on the operator's request (`pons apply`, `pons modules restart`).
pub const REQUESTED: &str = "requested";
/// The kernel shuts down.
pub const SHUTDOWN: &str = "shutdown";
/// A refused action under strict enforcement.
pub const SECURITY_VIOLATION: &str = "security-violation";
/// Another module provides one of its services.
pub const DUPLICATE_SERVICE: &str = "duplicate-service";
/// Its requirements form a cycle.
pub const CIRCULAR_DEPENDENCY: &str = "circular-dependency";
/// No `ready` within `readyTimeoutMs`.
pub const READY_TIMEOUT: &str = "ready-timeout";
/// Required services not ready within `requiresTimeoutMs`.
pub const REQUIRES_TIMEOUT: &str = "requires-timeout";
/// `healthMaxFailures` pings unanswered.
pub const HEALTH_CHECK_FAILED: &str = "health-check-failed";
/// pons: messages waited unread for longer than `slowConsumerMs`.
pub const SLOW_CONSUMER: &str = "slow-consumer";
/// pons: its stdout closed while the process lived on.
pub const STDOUT_CLOSED: &str = "stdout-closed";
/// pons: a required provider left the desired state (removed, blocked, disabled).
pub const PROVIDER_UNAVAILABLE: &str = "provider-unavailable";
/// pons: its config section is invalid under strict validation.
pub const CONFIG_INVALID: &str = "config-invalid";
/// pons: its runtime's interpreter is missing or the runtime is unknown.
pub const RUNTIME_NOT_FOUND: &str = "runtime-not-found";
/// pons: its manifest requires a sandbox this host cannot give.
pub const SANDBOX_UNAVAILABLE: &str = "sandbox-unavailable";
/// pons: disabled in config.yaml (`kernel.disabled`).
pub const DISABLED: &str = "disabled";

/// A token and the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub token: &'static str,
    pub detail: String,
}

impl Reason {
    pub fn new(token: &'static str, detail: impl Into<String>) -> Reason {
        Reason {
            token,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.token.is_empty(), self.detail.is_empty()) {
            (_, true) => f.write_str(self.token),
            (true, false) => f.write_str(&self.detail),
            (false, false) => write!(f, "{}: {}", self.token, self.detail),
        }
    }
}

impl BlockReason {
    /// The token a running module that becomes blocked this way is stopped with.
    pub fn token(&self) -> &'static str {
        match self {
            BlockReason::NotApproved { .. } | BlockReason::UnreadableApproval { .. } => {
                PERMISSIONS_REVOKED
            }
            BlockReason::InvalidManifest { .. }
            | BlockReason::HashMismatch { .. }
            | BlockReason::ProtocolVersion { .. }
            | BlockReason::EntryEscapes { .. }
            | BlockReason::EntryNotFound { .. }
            | BlockReason::DuplicateId { .. } => UNINSTALLED,
            BlockReason::DuplicateProvider { .. } => DUPLICATE_SERVICE,
            BlockReason::DependencyCycle { .. } => CIRCULAR_DEPENDENCY,
            BlockReason::MissingProvider { .. } => PROVIDER_UNAVAILABLE,
            BlockReason::InvalidConfig { .. } => CONFIG_INVALID,
            BlockReason::RuntimeNotFound { .. } => RUNTIME_NOT_FOUND,
            BlockReason::SandboxRequired { .. } => SANDBOX_UNAVAILABLE,
            BlockReason::Disabled => DISABLED,
        }
    }
}
