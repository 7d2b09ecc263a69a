//! The bytes of the inputs, as read by the shell in one pass over the home directory.
//!
//! The shell (`src/snapshot_io.rs` in the `pons` crate) fills this in; it resolves symlinks and
//! probes files, so that everything below can be decided without touching the file system.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The outcome of reading one file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FileRead {
    /// The file does not exist.
    #[default]
    Missing,
    /// The file's bytes.
    Bytes(Vec<u8>),
    /// The file exists but could not be read (the OS error, as text).
    Error(String),
}

/// One consistent snapshot of a pons home directory plus the bits of the environment that the
/// desired state depends on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Absolute path of the home directory (`PONS_HOME`).
    pub home: PathBuf,
    /// `realpath(home)` when it differs from `home` (a home reached through a symlink), so that
    /// paths resolved from real module directories are recognised as the home's too.
    pub home_real: Option<PathBuf>,
    /// The kernel's environment variables (for the module environment allowlist, `~`
    /// resolution through `HOME`, and `${VAR}` interpolation in config sections).
    pub env: BTreeMap<String, String>,
    /// `<home>/config.yaml`.
    pub config_yaml: FileRead,
    /// `<home>/permissions.yaml`.
    pub permissions_yaml: FileRead,
    /// `<home>/deno.json` (deno's `--config` fallback; see [`crate::deno`]).
    pub home_deno_json: FileRead,
    /// `<home>/deno.jsonc`.
    pub home_deno_jsonc: FileRead,
    /// One entry per directory entry of `<home>/modules`, sorted by `dir_name`.
    pub modules: Vec<ModuleDir>,
    /// Executables looked up on `PATH` (or as configured in `kernel.runtimes`): the name as
    /// asked (`deno`, `python`, `git`, …) → its absolute path, or `None` when not found.
    /// The shell fills this for every runtime interpreter and every name in a `run` permission.
    pub which: BTreeMap<String, Option<PathBuf>>,
    /// The running Linux's Landlock ABI version, `None` where Landlock is unavailable (the
    /// default: a module whose manifest says `"sandbox": "required"` is then blocked).
    pub landlock_abi: Option<u32>,
    /// Modules the supervisor reports `crashed` or `stopped`: they hold no services, so another
    /// approved provider of one of their services may take it over (the service directory
    /// follows the processes).
    pub down: std::collections::BTreeSet<String>,
    /// The machine's host name (the default `cluster.node`).
    pub host_name: String,
}

/// One entry of `<home>/modules`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModuleDir {
    /// The directory entry's name.
    pub dir_name: String,
    /// `<home>/modules/<dir_name>` (not resolved).
    pub path: PathBuf,
    /// `realpath(path)`, `None` when it cannot be resolved.
    pub real_path: Option<PathBuf>,
    /// Whether the entry is a symlink.
    pub is_symlink: bool,
    /// Whether the entry (after following symlinks) is a directory. Non-directories are ignored.
    pub is_dir: bool,
    /// `module.json`.
    pub manifest: FileRead,
    /// Resolution of the entry point named by the manifest (see [`crate::manifest::entry_request`]).
    pub entry: Option<EntryProbe>,
    /// `deno.json` of the module directory, if present.
    pub deno_json: FileRead,
    /// `deno.jsonc` of the module directory, if present.
    pub deno_jsonc: FileRead,
    /// The config schema named by the manifest's `configSchema`, if any.
    pub schema: Option<SchemaProbe>,
}

/// What the shell found for the manifest's entry point.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryProbe {
    /// The entry as written in the manifest (after the `entry` → `entrypoint` fallback and the
    /// `runner.ts` default).
    pub requested: String,
    /// `realpath(<module dir>/<requested>)` when the file exists.
    pub real: Option<PathBuf>,
    /// When `requested` ends in `.ts`: `realpath` of the `.js` sibling when it exists.
    pub js_sibling: Option<PathBuf>,
}

/// What the shell found for the manifest's `configSchema`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchemaProbe {
    /// The path as written in the manifest.
    pub requested: String,
    /// `realpath` of the schema file, when it exists.
    pub real: Option<PathBuf>,
    /// The schema file's bytes (read only when it is a `.json` file inside the module directory).
    pub bytes: FileRead,
}
