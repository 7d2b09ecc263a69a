//! Desired state: what should run, built from one [`Snapshot`].
//!
//! CONTRACT (filled in by the implementation): `build_desired(snapshot, previous)` parses the three
//! inputs, validates every module, resolves its spawn command, environment, sandbox policy,
//! capabilities and config section, and computes the fingerprints. Invalid input never breaks what
//! runs: when `config.yaml` or `permissions.yaml` cannot be parsed, or a manifest cannot be parsed,
//! the value from `previous` is kept and the error is reported in [`Desired::errors`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::KernelConfig;
use crate::manifest::Manifest;
use crate::permissions::{Capabilities, PermissionSet, PermissionsFile};
use crate::snapshot::Snapshot;

/// Why a module does not run. Rendered as one plain sentence by `Display`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum BlockReason {
    InvalidManifest {
        file: PathBuf,
        error: String,
    },
    NotApproved {
        id: String,
    },
    HashMismatch {
        id: String,
    },
    ProtocolVersion {
        id: String,
        version: String,
    },
    EntryEscapes {
        entry: String,
    },
    EntryNotFound {
        entry: String,
    },
    DuplicateId {
        id: String,
        other_dir: String,
    },
    DuplicateProvider {
        service: String,
        other: String,
    },
    DependencyCycle {
        path: Vec<String>,
    },
    MissingProvider {
        services: Vec<String>,
    },
    InvalidConfig {
        section: String,
        errors: Vec<String>,
    },
    RuntimeNotFound {
        runtime: String,
        program: String,
    },
    SandboxRequired {
        reason: String,
    },
}

/// One module that can run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredModule {
    pub id: String,
    pub dir_name: String,
    /// `<home>/modules/<dir_name>` (unresolved).
    pub module_dir: PathBuf,
    pub manifest: Manifest,
    /// Version to report in `system:module:ready` (`deno.json` version overrides the manifest).
    pub version: Option<String>,
    pub spawn: SpawnSpec,
    /// Hex SHA-256 over everything that needs a new process to take effect.
    pub spawn_fingerprint: String,
    /// The module's config section after defaults and interpolation (`None`: no `configKey`, or
    /// no such section).
    pub config_section: Option<serde_json::Value>,
    /// Canonical rendering of each config section the module depends on, *as written* (never
    /// interpolated), keyed by section name. Used for diffs.
    pub config_text: BTreeMap<String, String>,
    /// Hex SHA-256 over the config the module would be sent.
    pub config_fingerprint: String,
    pub capabilities: Capabilities,
    pub capabilities_fingerprint: String,
    /// Base + dynamic grants.
    pub effective_permissions: PermissionSet,
    /// `permissions.yaml` has a `firstSpawnAt` for it (no `install` message needed).
    pub installed: bool,
}

/// The resolved way to start a module's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpawnSpec {
    /// Absolute path of the program (interpreter or the entry itself).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The complete environment of the child (allowlist + approved `env`), sorted by name.
    pub env: Vec<(String, String)>,
    /// Working directory of the child.
    pub cwd: PathBuf,
    /// What the sandbox lets the module touch.
    pub sandbox: SandboxPolicy,
    /// The runtime name (`deno`, `python`, `binary`, …).
    pub runtime: String,
    /// Absolute real path of the entry file.
    pub entry: PathBuf,
}

/// Filesystem and resource policy applied by the exec trampoline.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPolicy {
    /// Paths readable (and, for directories, listable).
    pub read: Vec<PathBuf>,
    /// Paths readable and writable.
    pub write: Vec<PathBuf>,
    /// Executables that may be run.
    pub exec: Vec<PathBuf>,
    pub limits: Limits,
    /// The manifest says `"sandbox": "required"`.
    pub required: bool,
}

/// Optional rlimits from the manifest's `limits` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    pub open_files: Option<u64>,
    pub processes: Option<u64>,
    pub cpu_seconds: Option<u64>,
}

/// A module that was found but does not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockedModule {
    /// The manifest's id, or the directory name when the manifest has none.
    pub id: String,
    pub dir_name: String,
    pub reason: BlockReason,
}

/// A problem with one of the input files (the last good value was kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputError {
    pub file: PathBuf,
    /// e.g. "line 3 column 5: duplicate key `a`".
    pub error: String,
}

/// The whole desired state.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    /// Runnable modules by id.
    pub modules: BTreeMap<String, DesiredModule>,
    /// Blocked modules, sorted by id.
    pub blocked: Vec<BlockedModule>,
    /// Spawn order of the runnable modules: providers first, then `priority`, then id.
    pub order: Vec<String>,
    /// Kernel sections of config.yaml after defaults.
    pub kernel: KernelConfig,
    /// The parsed permissions file (for the shell's kernel calls and CLI).
    pub permissions: PermissionsFile,
    /// Whole config as parsed (after defaults; module sections *not* interpolated).
    pub config_raw: serde_json::Value,
    pub errors: Vec<InputError>,
}

/// Builds the desired state from one snapshot; `previous` supplies the last good values of inputs
/// that fail to parse.
pub fn build_desired(snapshot: &Snapshot, previous: Option<&Desired>) -> Desired {
    let _ = (snapshot, previous);
    todo!("implemented by the reconciler work")
}
