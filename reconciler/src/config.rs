//! `config.yaml`: parsing (serde-saphyr, strict), kernel sections with defaults (compat.md §3.4),
//! `${VAR}` interpolation of module sections, JSON-Schema validation of module sections.

use serde::{Deserialize, Serialize};

/// `lifecycle` section, all in milliseconds / counts (compat.md §3.4 defaults), plus pons' own
/// `maxMessageBytes` (10 MiB) and `slowConsumerMs` (10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    pub health_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub health_max_failures: u32,
    pub ready_timeout_ms: u64,
    pub requires_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub max_restarts: u32,
    pub max_restart_backoff_ms: u64,
    pub rpc_timeout_ms: u64,
    pub max_message_bytes: u64,
    pub slow_consumer_ms: u64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            health_interval_ms: 30_000,
            ping_timeout_ms: 10_000,
            health_max_failures: 3,
            ready_timeout_ms: 30_000,
            requires_timeout_ms: 30_000,
            shutdown_grace_ms: 5_000,
            max_restarts: 5,
            max_restart_backoff_ms: 60_000,
            rpc_timeout_ms: 30_000,
            max_message_bytes: 10 * 1024 * 1024,
            slow_consumer_ms: 10_000,
        }
    }
}

/// `security.enforcementMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementMode {
    #[default]
    Strict,
    Warn,
    Off,
}

/// `kernel.reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconcileMode {
    #[default]
    Auto,
    Manual,
}

/// `logging` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    pub level: String,
    #[serde(default)]
    pub levels: std::collections::BTreeMap<String, String>,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: "info".into(),
            levels: Default::default(),
        }
    }
}

/// The kernel's own sections of config.yaml, after defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelConfig {
    pub lifecycle: Lifecycle,
    pub enforcement_mode: EnforcementMode,
    pub reconcile: ReconcileMode,
    pub logging: Logging,
    /// `kernel.runtimes`: runtime name → interpreter path override.
    pub runtimes: std::collections::BTreeMap<String, String>,
}
