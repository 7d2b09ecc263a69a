//! What the supervisor reports about the running system: the other input of [`crate::plan`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Status of a module as `pons status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Waiting,
    Ready,
    Restarting,
    Stopping,
    Stopped,
    Crashed,
    Blocked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Waiting => "waiting",
            Status::Ready => "ready",
            Status::Restarting => "restarting",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Crashed => "crashed",
            Status::Blocked => "blocked",
        }
    }

    /// A process exists (or is about to be respawned by the supervisor's backoff).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Status::Starting | Status::Waiting | Status::Ready | Status::Restarting
        )
    }
}

/// The supervisor's view of one module it manages.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedModule {
    pub status: Option<Status>,
    /// The spawn fingerprint of the process that runs (or last ran).
    pub spawn_fingerprint: String,
    /// The config fingerprint of the section the module was last sent (in `init` or
    /// `config:update`).
    pub config_fingerprint: String,
    /// The canonical text rendering of that section as written (for diffs), per section name.
    pub config_text: BTreeMap<String, String>,
    /// Fingerprint of the capabilities the router enforces for it.
    pub capabilities_fingerprint: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// Why it is not running, as the supervisor reports it (crashed, stopped by a security
    /// violation, …); for a `blocked` module, the token of its block reason
    /// ([`crate::desired::BlockReason::token`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the supervisor last applied to this module (spawned with, or pushed config from):
    /// lets the plan say *what* changed. `None` gives generic reasons.
    #[serde(skip)]
    pub applied: Option<crate::desired::DesiredModule>,
}

impl ObservedModule {
    /// The observed state of a module the supervisor has just applied `m` to.
    pub fn applied(m: &crate::desired::DesiredModule, status: Status) -> ObservedModule {
        ObservedModule {
            status: Some(status),
            spawn_fingerprint: m.spawn_fingerprint.clone(),
            config_fingerprint: m.config_fingerprint.clone(),
            config_text: m.config_text.clone(),
            capabilities_fingerprint: m.capabilities_fingerprint.clone(),
            pid: None,
            restarts: 0,
            reason: None,
            applied: Some(m.clone()),
        }
    }
}

impl ObservedModule {
    /// A module the last pass blocked (no process): only its status and token.
    pub fn blocked(reason: &crate::desired::BlockReason) -> ObservedModule {
        ObservedModule {
            status: Some(Status::Blocked),
            reason: Some(reason.token().to_string()),
            ..ObservedModule::default()
        }
    }
}

/// Everything the supervisor manages (and the modules its last pass blocked), by module id.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    pub kernel_running: bool,
    pub modules: BTreeMap<String, ObservedModule>,
    /// The cluster connection the kernel runs, as last applied (`None`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ObservedCluster>,
}

/// The `cluster` section the kernel's connection was started with.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedCluster {
    /// [`crate::cluster::ClusterConfig::fingerprint`] (never shown).
    #[serde(skip)]
    pub fingerprint: String,
    /// The section's redacted text (for diffs).
    pub text: String,
    pub config: crate::cluster::ClusterConfig,
}

impl ObservedCluster {
    /// What the kernel observes once it applied `c`.
    pub fn applied(c: &crate::cluster::DesiredCluster) -> ObservedCluster {
        ObservedCluster {
            fingerprint: c.fingerprint.clone(),
            text: c.text.clone(),
            config: c.config.clone(),
        }
    }
}
