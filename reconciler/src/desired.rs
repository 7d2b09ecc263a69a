//! Desired state: what should run, built from one [`crate::Snapshot`] (the types; the builder is
//! in [`crate::build`]).
//!
//! CONTRACT: `build_desired(snapshot, previous)` parses the three inputs, validates every module,
//! resolves its spawn command, environment, sandbox policy, capabilities and config section, and
//! computes the fingerprints. Invalid input never breaks what runs:
//! - `config.yaml` / `permissions.yaml` that cannot be read or parsed: `previous`'s value is kept
//!   (without a previous, an empty config / no approvals: fail closed), error in [`Desired::errors`];
//! - a kernel key with a bad value keeps its previous value (error naming the key);
//! - a manifest that cannot be read or parsed while `previous` ran a module from that directory:
//!   the previous module is kept (error reported); else the directory is blocked. A manifest that
//!   parses but whose hash differs from the approval is blocked (a tampered module is stopped);
//! - a module section that fails interpolation or its schema: a module of `previous` keeps its
//!   last good section (error reported); a new module is blocked (`InvalidConfig`).
//! - Directories whose name starts with `.` and non-directories in `modules/` are skipped silently;
//!   a directory without `module.json` is blocked.
//! - Two directories with one id: the first by directory name keeps it (`DuplicateId`). Two
//!   providers of one service: the first by (not down, ran in `previous`, pinned in
//!   `serviceProviders`, priority, id) keeps it, unless it cannot run itself (cycle, missing
//!   provider): then the other one does.
//! - A manifest with `"sandbox": "required"` is blocked (`SandboxRequired`) when the snapshot says
//!   the running Linux has no Landlock ([`crate::Snapshot::landlock_abi`]).
//! - A module whose id is listed in `kernel.disabled` and would otherwise run is blocked as
//!   [`BlockReason::Disabled`] (it holds none of its services, so its dependents are blocked as
//!   missing a provider); a module blocked for another reason keeps that reason.
//! - A service listed in `cluster.import.services` counts as provided for `requires`: another
//!   node may provide it (the kernel waits for a ready provider at run time). An invalid
//!   `cluster` section keeps the previous one (error naming the key).
//! - A manifest field of another JSON type that the reference accepts is read as it reads it and
//!   does not block: its warning is in [`Desired::manifest_warnings`] (runnable or not).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::config::KernelConfig;
use crate::manifest::Manifest;
use crate::permissions::{Capabilities, PermissionSet, PermissionsFile};

/// Why a module does not run. Rendered as one plain sentence by `Display`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum BlockReason {
    InvalidManifest {
        file: PathBuf,
        error: String,
    },
    /// `dir` is the directory name the approve command takes.
    NotApproved {
        id: String,
        dir: String,
    },
    HashMismatch {
        id: String,
        dir: String,
        /// Which side changed since the approval, as far as the kernel saw it happen.
        side: HashSide,
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
    /// `dir` declares an id that `other_dir` (earlier by name) already uses.
    DuplicateId {
        id: String,
        dir: String,
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
    /// The module's entry in permissions.yaml has neither layout (or does not fit it).
    UnreadableApproval {
        id: String,
        dir: String,
        error: String,
    },
    /// Listed in `kernel.disabled` of config.yaml: shown as `stopped`, not as blocked.
    Disabled,
}

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockReason::InvalidManifest { error, .. } => f.write_str(error),
            BlockReason::NotApproved { dir, .. } => {
                write!(f, "not approved: run `pons modules approve {dir}`")
            }
            BlockReason::HashMismatch { dir, side, .. } => write!(
                f,
                "manifest hash mismatch ({}): approve again with `pons modules approve {dir}`",
                side.as_str()
            ),
            BlockReason::ProtocolVersion { version, .. } => write!(
                f,
                "needs protocol version {version}, but this kernel speaks 1.0"
            ),
            BlockReason::EntryEscapes { entry } => {
                write!(f, "entry point `{entry}` escapes the module directory")
            }
            BlockReason::EntryNotFound { entry } => {
                write!(f, "entry point `{entry}` not found in the module directory")
            }
            BlockReason::DuplicateId { id, dir, other_dir } => write!(
                f,
                "directory `{dir}` declares module id `{id}`, which directory `{other_dir}` already uses: give one of them another id"
            ),
            BlockReason::DuplicateProvider { service, other } => write!(
                f,
                "service `{service}` is already provided by module `{other}`"
            ),
            BlockReason::DependencyCycle { path } => {
                write!(f, "dependency cycle: {}", path.join(" -> "))
            }
            BlockReason::MissingProvider { services } => {
                let list: Vec<String> = services.iter().map(|s| format!("`{s}`")).collect();
                write!(
                    f,
                    "required service {} has no provider; blocked until one appears",
                    list.join(", ")
                )
            }
            BlockReason::InvalidConfig { section, errors } => write!(
                f,
                "config section `{section}` is invalid: {}",
                errors.join("; ")
            ),
            BlockReason::RuntimeNotFound { runtime, program }
                if !crate::manifest::RUNTIMES.contains(&runtime.as_str()) =>
            {
                write!(
                    f,
                    "unknown runtime `{runtime}` (such modules are started with `{program}`, which {}): set `runtime` in module.json to one of {}",
                    missing_program(program),
                    crate::manifest::RUNTIMES.join(", ")
                )
            }
            BlockReason::RuntimeNotFound { runtime, program } if program.starts_with('/') => write!(
                f,
                "runtime `{runtime}` needs `{program}`, which {}: fix `kernel.runtimes` in config.yaml",
                missing_program(program)
            ),
            BlockReason::RuntimeNotFound { runtime, program } => write!(
                f,
                "runtime `{runtime}` needs `{program}`, which is not on PATH: install it or set `kernel.runtimes.{runtime}` in config.yaml"
            ),
            BlockReason::SandboxRequired { reason } => {
                write!(f, "the manifest requires a sandbox, but {reason}")
            }
            BlockReason::UnreadableApproval { dir, error, .. } => write!(
                f,
                "its entry in permissions.yaml cannot be read ({error}): approve it again with `pons modules approve {dir}`"
            ),
            BlockReason::Disabled => f.write_str("disabled in config.yaml"),
        }
    }
}

/// What is wrong with an interpreter that was not found: a path (`kernel.runtimes`) names no
/// executable file, a name is not on PATH.
fn missing_program(program: &str) -> &'static str {
    if program.starts_with('/') {
        "is no executable file"
    } else {
        "is not on PATH"
    }
}

/// Which side of an approval changed: the manifest, or the hash stored in permissions.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HashSide {
    /// module.json changed while the stored hash stayed.
    ModuleJson,
    /// `baseManifestHash` in permissions.yaml was edited while module.json stayed.
    StoredHash,
    /// `baseManifestHash` is not a SHA-256 (64 lowercase hex digits).
    MalformedHash,
    /// Both were as they are when the kernel first read them.
    Unknown,
}

impl HashSide {
    pub fn as_str(self) -> &'static str {
        match self {
            HashSide::ModuleJson => "module.json changed after approval",
            HashSide::StoredHash => {
                "baseManifestHash in permissions.yaml was edited; module.json is unchanged"
            }
            HashSide::MalformedHash => {
                "baseManifestHash in permissions.yaml is not a SHA-256 of 64 lowercase hex digits"
            }
            HashSide::Unknown => {
                "module.json does not match the baseManifestHash approved in permissions.yaml"
            }
        }
    }
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
    /// [`crate::manifest::hash`] of the manifest bytes.
    pub manifest_hash: String,
    /// SHA-256 of the module's `deno.json`, when it has one (part of the spawn fingerprint).
    pub deno_json_hash: Option<String>,
    /// Warnings that do not block the module (unknown runtime, unsupported schema, …).
    pub notes: Vec<String>,
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
    /// deno: the configuration file `--config` names (see [`crate::deno`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deno_config: Option<PathBuf>,
    /// A step the kernel runs to completion before it starts the module.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepare: Option<Prepare>,
}

/// deno's lock file step (see [`crate::deno`]): before the module starts, the kernel copies the
/// lock file beside the configuration into `staged_lock`, runs `spec` (`deno cache` for the entry
/// point, confined like the module, `staged_lock`'s directory writable), and writes
/// `staged_lock` back to `lock` when deno changed it. The module itself runs with
/// `--lock=<staged_lock>` and may only read it. Steps with the same `lock` never run at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prepare {
    /// The lock file beside the configuration file (the operator's, written by the kernel).
    pub lock: PathBuf,
    /// The kernel's copy deno reads and writes (`<home>/.runtime/deno/<key>/deno.lock`).
    pub staged_lock: PathBuf,
    /// Directories the configuration asks deno to create (`node_modules/`, `vendor/`), which the
    /// module cannot create itself; the kernel makes them first.
    pub create_dirs: Vec<PathBuf>,
    /// The `deno cache` command.
    pub spec: Box<SpawnSpec>,
}

/// Filesystem and resource policy applied before the module's `exec`: only what is specific to
/// the module; the kernel's sandbox adds the system defaults every program needs and what the program and
/// its `exec` entries need to start (`pons::sandbox::rules`).
///
/// `read` holds the resolved `read` permissions and the module's real directory. `write` holds
/// the resolved `write` permissions and, for deno, its cache directory (`DENO_DIR`, else
/// `$XDG_CACHE_HOME/deno`, else `$HOME/.cache/deno`). `exec` holds the program (the interpreter,
/// or the entry itself for go, rust and binary) and the resolved `run` names. `runtime_read` and
/// `runtime_write` hold what deno's configuration file lets deno reach ([`crate::deno`]): they
/// are no approved permission, and those that do not exist are skipped without a note.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPolicy {
    /// Paths readable (and, for directories, listable).
    pub read: Vec<PathBuf>,
    /// Paths readable and writable.
    pub write: Vec<PathBuf>,
    /// Executables that may be run.
    pub exec: Vec<PathBuf>,
    /// Readable because the runtime's configuration points there (deno's `--config` file, its
    /// import-map targets, the lock file).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runtime_read: Vec<PathBuf>,
    /// Readable and writable because the runtime's configuration uses them (`node_modules/`,
    /// `vendor/` beside deno's `--config` file).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runtime_write: Vec<PathBuf>,
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
    /// The home directory the snapshot was read from.
    pub home: PathBuf,
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
    /// The warnings of every parsed manifest that has some, by directory name.
    pub manifest_warnings: Vec<ManifestWarnings>,
    /// The `cluster` section (`None`: no cluster; on an invalid section, the last good one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::DesiredCluster>,
    /// Digests of the bytes `permissions` and `config_raw` were parsed from: a pass given this
    /// state as `previous` reuses a value whose file did not change instead of parsing it again.
    #[serde(skip)]
    pub digests: InputDigests,
}

/// The warnings of one `module.json` (see [`Manifest::warnings`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestWarnings {
    /// The manifest's id.
    pub module: String,
    pub dir_name: String,
    /// [`crate::manifest::hash`] of the manifest the warnings are about: the kernel logs them
    /// once per hash.
    pub manifest_hash: String,
    pub warnings: Vec<String>,
}

/// One warning of `pons plan`: about a module, it does not block it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub module: String,
    pub message: String,
}

impl Desired {
    /// Every warning, for `pons plan`: runnable modules in spawn order (the manifest's warnings,
    /// as `module.json: …`, then the module's notes), then the manifest warnings of modules that
    /// do not run, by directory name.
    pub fn warnings(&self) -> Vec<Warning> {
        let by_dir: BTreeMap<&str, &ManifestWarnings> = self
            .manifest_warnings
            .iter()
            .map(|w| (w.dir_name.as_str(), w))
            .collect();
        let manifest = |w: &ManifestWarnings| -> Vec<Warning> {
            w.warnings
                .iter()
                .map(|m| Warning {
                    module: w.module.clone(),
                    message: format!("module.json: {m}"),
                })
                .collect()
        };
        let mut out = Vec::new();
        let mut shown = BTreeSet::new();
        for m in self.order.iter().filter_map(|id| self.modules.get(id)) {
            if let Some(w) = by_dir.get(m.dir_name.as_str()) {
                out.extend(manifest(w));
                shown.insert(m.dir_name.as_str());
            }
            out.extend(m.notes.iter().map(|n| Warning {
                module: m.id.clone(),
                message: n.clone(),
            }));
        }
        for w in &self.manifest_warnings {
            if !shown.contains(w.dir_name.as_str()) {
                out.extend(manifest(w));
            }
        }
        out
    }
}

/// SHA-256 (hex) of the bytes of permissions.yaml / config.yaml behind the parsed values of a
/// [`Desired`]; `None` when the value did not come from parsing bytes (missing file, nothing good
/// yet).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputDigests {
    pub permissions: Option<String>,
    pub config: Option<String>,
}

pub use crate::build::build_desired;
