//! `build_desired`: one [`Snapshot`] (plus the previous desired state) → [`Desired`].
//!
//! Steps: parse permissions.yaml and config.yaml (keeping the previous value of a file that
//! fails to parse), discover modules,
//! resolve each runnable module (approval, hash, entry, runtime, environment, sandbox — a
//! required sandbox blocks the module where Landlock is unavailable —, capabilities, config
//! section, fingerprints), set aside those listed in `kernel.disabled` (`BlockReason::Disabled`;
//! a module blocked for another reason keeps that reason), then check the service graph across
//! the runnable modules (duplicate providers, cycles, missing providers) and order them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config;
use crate::deno;
use crate::desired::{
    BlockReason, BlockedModule, Desired, DesiredModule, HashSide, InputError, ManifestWarnings,
};
use crate::digest::{sha256_hex, Hasher};
use crate::graph::{self, Node};
use crate::manifest::{self, Manifest, ManifestError};
use crate::permissions::{self, PermissionsFile};
use crate::snapshot::{FileRead, ModuleDir, Snapshot};
use crate::spawn::{self, normalize, DenoConfig, SpawnInputs};

/// Builds the desired state from one snapshot; `previous` supplies the last good values of inputs
/// that fail to parse (see the module docs of [`crate::desired`]).
pub fn build_desired(snapshot: &Snapshot, previous: Option<&Desired>) -> Desired {
    let mut d = Desired {
        home: snapshot.home.clone(),
        ..Desired::default()
    };
    (d.permissions, d.digests.permissions) = load_permissions(snapshot, previous, &mut d.errors);
    (d.config_raw, d.digests.config) = load_config(snapshot, previous, &mut d.errors);
    let prev_kernel = previous.map(|p| p.kernel.clone()).unwrap_or_default();
    let (kernel, kerrs) = config::kernel_config(&d.config_raw, &prev_kernel);
    d.kernel = kernel;
    let config_file = snapshot.home.join("config.yaml");
    for e in kerrs {
        d.errors.push(InputError {
            file: config_file.clone(),
            error: e,
        });
    }
    // The cluster section: an invalid one keeps the last good one.
    match crate::cluster::parse(&d.config_raw, &snapshot.env, &snapshot.host_name) {
        Ok(c) => d.cluster = c,
        Err(errs) => {
            d.cluster = previous.and_then(|p| p.cluster.clone());
            let kept = if d.cluster.is_some() {
                "the last good cluster section is kept"
            } else {
                "no cluster connection until it is fixed"
            };
            for e in errs {
                d.errors.push(InputError {
                    file: config_file.clone(),
                    error: format!("{e}; {kept}"),
                });
            }
        }
    }

    let prev_by_dir: BTreeMap<&str, &DesiredModule> = previous
        .map(|p| {
            p.modules
                .values()
                .map(|m| (m.dir_name.as_str(), m))
                .collect()
        })
        .unwrap_or_default();
    let mut runnable: Vec<DesiredModule> = Vec::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    // What the home's deno configuration lets deno reach, computed once per pass.
    let mut home_reach: BTreeMap<PathBuf, deno::Reach> = BTreeMap::new();
    let mut warnings: Vec<ManifestWarnings> = Vec::new();
    let mut dirs: Vec<&ModuleDir> = snapshot.modules.iter().collect();
    dirs.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
    for md in dirs {
        if !md.is_dir || md.dir_name.starts_with('.') {
            continue;
        }
        let prev = Prev {
            module: prev_by_dir.get(md.dir_name.as_str()).copied(),
            blocked: previous.and_then(|p| {
                p.blocked
                    .iter()
                    .find(|b| b.dir_name == md.dir_name)
                    .map(|b| &b.reason)
            }),
        };
        match discover(snapshot, md, &d, prev, &mut home_reach, &mut warnings) {
            Found::Runnable(m) => {
                if let Some(other) = claimed.get(&m.id) {
                    d.blocked.push(duplicate(&m.id, md, other));
                } else {
                    claimed.insert(m.id.clone(), md.dir_name.clone());
                    runnable.push(*m);
                }
            }
            Found::Kept(m, err) => {
                d.errors.push(err);
                // The running module keeps its manifest, and that manifest's warnings.
                if !warnings.iter().any(|w| w.dir_name == md.dir_name) {
                    note_warnings(&mut warnings, &m.manifest, md, &m.manifest_hash);
                }
                if let Some(other) = claimed.get(&m.id) {
                    d.blocked.push(duplicate(&m.id, md, other));
                } else {
                    claimed.insert(m.id.clone(), md.dir_name.clone());
                    runnable.push(*m);
                }
            }
            Found::Blocked(b, has_id) => {
                if has_id {
                    if let Some(other) = claimed.get(&b.id) {
                        d.blocked.push(duplicate(&b.id, md, other));
                        continue;
                    }
                    claimed.insert(b.id.clone(), md.dir_name.clone());
                }
                d.blocked.push(b);
            }
        }
    }

    d.manifest_warnings = warnings;
    // Disabled modules hold no services: their dependents are blocked as missing a provider.
    if !d.kernel.disabled.is_empty() {
        let (off, on): (Vec<_>, Vec<_>) = runnable
            .into_iter()
            .partition(|m| d.kernel.disabled.binary_search(&m.id).is_ok());
        runnable = on;
        d.blocked.extend(off.into_iter().map(|m| BlockedModule {
            id: m.id,
            dir_name: m.dir_name,
            reason: BlockReason::Disabled,
        }));
    }
    let incumbents: BTreeSet<&str> = prev_by_dir.values().map(|m| m.id.as_str()).collect();
    let no_imports = Vec::new();
    let claims = Claims {
        incumbents: &incumbents,
        down: &snapshot.down,
        pinned: &d.permissions.service_providers,
        imported: d
            .cluster
            .as_ref()
            .map_or(&no_imports, |c| &c.config.import.services),
    };
    let (kept, blocked) = check_graph(runnable, &claims);
    d.blocked.extend(blocked);
    let nodes: Vec<Node> = kept
        .iter()
        .map(|m| Node::from_manifest(&m.manifest))
        .collect();
    d.order = graph::order(&nodes);
    d.modules = kept.into_iter().map(|m| (m.id.clone(), m)).collect();
    d.blocked
        .sort_by(|a, b| a.id.cmp(&b.id).then(a.dir_name.cmp(&b.dir_name)));
    d
}

fn duplicate(id: &str, md: &ModuleDir, other: &str) -> BlockedModule {
    BlockedModule {
        id: id.to_string(),
        dir_name: md.dir_name.clone(),
        reason: BlockReason::DuplicateId {
            id: id.to_string(),
            dir: md.dir_name.clone(),
            other_dir: other.to_string(),
        },
    }
}

/// The previous value of an input file when its bytes are the ones it was parsed from, with
/// their digest: parsing depends on the bytes alone, so the value is the same.
fn reuse<'a, T>(
    bytes: &[u8],
    previous: Option<&'a Desired>,
    pick: impl Fn(&'a Desired) -> (&'a T, &'a Option<String>),
) -> (String, Option<&'a T>) {
    let digest = sha256_hex(bytes);
    let same = previous
        .map(&pick)
        .filter(|(_, d)| d.as_deref() == Some(digest.as_str()))
        .map(|(v, _)| v);
    (digest, same)
}

fn load_permissions(
    snapshot: &Snapshot,
    previous: Option<&Desired>,
    errors: &mut Vec<InputError>,
) -> (PermissionsFile, Option<String>) {
    let file = snapshot.home.join("permissions.yaml");
    let fallback = || match previous {
        Some(p) => (p.permissions.clone(), p.digests.permissions.clone()),
        None => (PermissionsFile::default(), None),
    };
    match &snapshot.permissions_yaml {
        FileRead::Missing => (PermissionsFile::default(), None),
        FileRead::Bytes(b) => {
            let (digest, same) = reuse(b, previous, |p| (&p.permissions, &p.digests.permissions));
            if let Some(v) = same {
                return (v.clone(), Some(digest));
            }
            match permissions::parse(b) {
                Ok(p) => (p, Some(digest)),
                Err(e) => {
                    errors.push(InputError {
                        file,
                        error: format!("{e}; the last good permissions are kept"),
                    });
                    fallback()
                }
            }
        }
        FileRead::Error(e) => {
            errors.push(InputError {
                file,
                error: format!("cannot be read ({e}); the last good permissions are kept"),
            });
            fallback()
        }
    }
}

fn load_config(
    snapshot: &Snapshot,
    previous: Option<&Desired>,
    errors: &mut Vec<InputError>,
) -> (Value, Option<String>) {
    let file = snapshot.home.join("config.yaml");
    let fallback = || match previous {
        Some(p) => (p.config_raw.clone(), p.digests.config.clone()),
        None => (Value::Object(Default::default()), None),
    };
    match &snapshot.config_yaml {
        FileRead::Missing => (Value::Object(Default::default()), None),
        FileRead::Bytes(b) => {
            let (digest, same) = reuse(b, previous, |p| (&p.config_raw, &p.digests.config));
            if let Some(v) = same {
                return (v.clone(), Some(digest));
            }
            match config::parse(b) {
                Ok(v) => (v, Some(digest)),
                Err(e) => {
                    errors.push(InputError {
                        file,
                        error: format!("{e}; the last good config is kept"),
                    });
                    fallback()
                }
            }
        }
        FileRead::Error(e) => {
            errors.push(InputError {
                file,
                error: format!("cannot be read ({e}); the last good config is kept"),
            });
            fallback()
        }
    }
}

enum Found {
    Runnable(Box<DesiredModule>),
    /// The manifest broke, the previous module is kept (with the error to report).
    Kept(Box<DesiredModule>, InputError),
    /// Blocked; the bool says whether the manifest's id is known (for duplicate detection).
    Blocked(BlockedModule, bool),
}

fn blocked(id: &str, md: &ModuleDir, reason: BlockReason, has_id: bool) -> Found {
    Found::Blocked(
        BlockedModule {
            id: id.to_string(),
            dir_name: md.dir_name.clone(),
            reason,
        },
        has_id,
    )
}

/// What the previous pass made of one module directory.
#[derive(Clone, Copy)]
struct Prev<'a> {
    module: Option<&'a DesiredModule>,
    blocked: Option<&'a BlockReason>,
}

/// Which side of an approval changed (see [`HashSide`]).
fn hash_side(prev: Prev, hash: &str, stored: &str) -> HashSide {
    if let Some(m) = prev.module {
        return if m.manifest_hash == hash {
            HashSide::StoredHash
        } else {
            HashSide::ModuleJson
        };
    }
    if let Some(BlockReason::HashMismatch { side, .. }) = prev.blocked {
        return *side;
    }
    let sha256 = stored.len() == 64
        && stored
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if sha256 {
        HashSide::Unknown
    } else {
        HashSide::MalformedHash
    }
}

/// Records the warnings of a parsed manifest, if it has any.
fn note_warnings(out: &mut Vec<ManifestWarnings>, m: &Manifest, md: &ModuleDir, hash: &str) {
    if !m.warnings.is_empty() {
        out.push(ManifestWarnings {
            module: m.id.clone(),
            dir_name: md.dir_name.clone(),
            manifest_hash: hash.to_string(),
            warnings: m.warnings.clone(),
        });
    }
}

fn discover(
    snapshot: &Snapshot,
    md: &ModuleDir,
    d: &Desired,
    prev: Prev,
    home_reach: &mut BTreeMap<PathBuf, deno::Reach>,
    warnings: &mut Vec<ManifestWarnings>,
) -> Found {
    let prev_module = prev.module;
    let file = md.path.join("module.json");
    if md.dir_name.contains(char::REPLACEMENT_CHARACTER) {
        // Read lossily by the shell: paths and commands built from it would not be the real ones.
        return blocked(
            &md.dir_name,
            md,
            BlockReason::InvalidManifest {
                file,
                error: "the module directory's name is not valid UTF-8: rename the directory"
                    .into(),
            },
            false,
        );
    }
    let broken = |error: String| -> Found {
        match prev_module {
            Some(m) => Found::Kept(
                Box::new(m.clone()),
                InputError {
                    file: file.clone(),
                    error: format!("{error}; the running module `{}` is kept as it was", m.id),
                },
            ),
            None => blocked(
                &md.dir_name,
                md,
                BlockReason::InvalidManifest {
                    file: file.clone(),
                    error,
                },
                false,
            ),
        }
    };
    let bytes = match &md.manifest {
        FileRead::Missing => {
            return blocked(
                &md.dir_name,
                md,
                BlockReason::InvalidManifest {
                    file: file.clone(),
                    error: "module.json not found in the module directory".into(),
                },
                false,
            )
        }
        FileRead::Error(e) => return broken(format!("module.json cannot be read: {e}")),
        FileRead::Bytes(b) => b,
    };
    let hash = manifest::hash(bytes);
    // A manifest is parsed from its bytes alone: the previous module's is reused when the bytes
    // are the same (for valid UTF-8, `hash` is the exact digest of the bytes after the BOM).
    let reused = prev_module
        .filter(|p| p.manifest_hash == hash && std::str::from_utf8(bytes).is_ok())
        .map(|p| p.manifest.clone());
    let parsed = match reused {
        Some(m) => Ok(m),
        None => manifest::parse(bytes),
    };
    let m = match parsed {
        Ok(m) => m,
        Err(ManifestError::ProtocolVersion { id, version }) => {
            return blocked(
                &id.clone(),
                md,
                BlockReason::ProtocolVersion { id, version },
                true,
            )
        }
        Err(e) => return broken(e.to_string()),
    };
    note_warnings(warnings, &m, md, &hash);
    let id = m.id.clone();

    // Approval and tamper check.
    let Some(entry) = d.permissions.modules.get(&id) else {
        let reason = match d.permissions.unrecognized.get(&id) {
            Some(raw) => BlockReason::UnreadableApproval {
                id: id.clone(),
                dir: md.dir_name.clone(),
                error: permissions::unrecognized_reason(raw),
            },
            None => BlockReason::NotApproved {
                id: id.clone(),
                dir: md.dir_name.clone(),
            },
        };
        return blocked(&id, md, reason, true);
    };
    if !entry.base_manifest_hash.is_empty() && entry.base_manifest_hash != hash {
        return blocked(
            &id,
            md,
            BlockReason::HashMismatch {
                id: id.clone(),
                dir: md.dir_name.clone(),
                side: hash_side(prev, &hash, &entry.base_manifest_hash),
            },
            true,
        );
    }

    // Entry point.
    let module_real = md.real_path.clone().unwrap_or_else(|| md.path.clone());
    let entry_path = match resolve_entry(&m, md, &module_real) {
        Ok(p) => p,
        Err(r) => return blocked(&id, md, r, true),
    };

    let effective = d.permissions.effective(&id).unwrap_or_default();
    // deno's configuration file (an unknown runtime starts as deno too).
    let runs_deno = m.runtime() == "deno" || !manifest::RUNTIMES.contains(&m.runtime());
    let deno_file = runs_deno
        .then(|| deno::choose_config(snapshot, md, &module_real))
        .flatten();
    let mut homes = vec![snapshot.home.as_path()];
    homes.extend(snapshot.home_real.as_deref());
    let module_reach;
    let reach: Option<&deno::Reach> = match &deno_file {
        Some(f) if f.module_level => {
            module_reach = deno::reach(f, &homes, &module_real);
            Some(&module_reach)
        }
        Some(f) => Some(
            home_reach
                .entry(f.path.clone())
                .or_insert_with(|| deno::reach(f, &homes, &module_real)),
        ),
        None => None,
    };
    let inputs = SpawnInputs {
        home: &snapshot.home,
        env: &snapshot.env,
        which: &snapshot.which,
        kernel: &d.kernel,
        module_real: &module_real,
        entry: &entry_path,
        deno: deno_file.as_ref().zip(reach).map(|(f, reach)| DenoConfig {
            path: &f.path,
            reach,
        }),
        effective: &effective,
    };
    let (spec, mut notes) = match spawn::spawn_spec(&m, &inputs) {
        Ok(x) => x,
        Err(r) => return blocked(&id, md, r, true),
    };
    if let Some(r) = reach {
        notes.extend(r.notes.iter().cloned());
    }
    if spec.sandbox.required && snapshot.landlock_abi.is_none() {
        return blocked(&id, md, sandbox_required(&md.dir_name), true);
    }

    let capabilities = d
        .permissions
        .stored_capabilities(&id)
        .cloned()
        .or_else(|| m.capabilities.clone())
        .unwrap_or_else(|| manifest::derived_capabilities(&m));

    // Config section.
    let prev_same = prev_module.filter(|p| p.id == id && p.manifest.config_key == m.config_key);
    let section = match config_section(snapshot, md, &m, &module_real, &d.config_raw, &mut notes) {
        Ok(s) => s,
        Err((section, errors)) => match prev_same {
            Some(p) => {
                // keep the last good section; the problem is reported as an input error
                let mut kept = p.clone();
                return Found::Kept(
                    Box::new({
                        kept.notes = notes;
                        kept
                    }),
                    InputError {
                        file: snapshot.home.join("config.yaml"),
                        error: format!(
                            "config section `{section}` of module `{id}` is invalid: {}; the module keeps its last good section",
                            errors.join("; ")
                        ),
                    },
                );
            }
            None => {
                return blocked(
                    &id,
                    md,
                    BlockReason::InvalidConfig { section, errors },
                    true,
                )
            }
        },
    };

    let mut config_text = BTreeMap::new();
    if let Some(k) = &m.config_key {
        config_text.insert(k.clone(), text_of(d.config_raw.get(k)));
    }
    for dep in &m.config_dependencies {
        config_text.insert(dep.clone(), text_of(d.config_raw.get(dep)));
    }

    let deno_json_hash = match &md.deno_json {
        FileRead::Bytes(b) => Some(sha256_hex(b)),
        _ => None,
    };
    let version = match &md.deno_json {
        FileRead::Bytes(b) => manifest::deno_json_version(b).or_else(|| m.version.clone()),
        _ => m.version.clone(),
    };

    // Fingerprints.
    let mut h = Hasher::new();
    h.part("manifest", bytes);
    h.part("permissions", &json_bytes(&effective));
    h.part("program", spec.program.to_string_lossy().as_bytes());
    h.part("args", &json_bytes(&spec.args));
    h.part("env", &json_bytes(&spec.env));
    h.part("cwd", spec.cwd.to_string_lossy().as_bytes());
    h.part("sandbox", &json_bytes(&spec.sandbox));
    if let Some(p) = &spec.prepare {
        h.part("prepare", &json_bytes(p));
    }
    h.part(
        "deno.json",
        deno_json_hash.as_deref().unwrap_or("").as_bytes(),
    );
    for dep in &m.config_dependencies {
        let raw = d.config_raw.get(dep).cloned().unwrap_or(Value::Null);
        let value = config::interpolate(&raw, &snapshot.env).unwrap_or(raw);
        h.part(dep, &json_bytes(&config::canonical(&value)));
    }
    let spawn_fingerprint = h.finish();
    let config_fingerprint = fingerprint_section(section.as_ref());
    let capabilities_fingerprint = sha256_hex(&json_bytes(&capabilities));

    Found::Runnable(Box::new(DesiredModule {
        id: id.clone(),
        dir_name: md.dir_name.clone(),
        module_dir: md.path.clone(),
        version,
        spawn: spec,
        spawn_fingerprint,
        config_section: section,
        config_text,
        config_fingerprint,
        capabilities,
        capabilities_fingerprint,
        effective_permissions: effective,
        installed: entry.first_spawn_at.is_some(),
        manifest_hash: hash,
        deno_json_hash,
        notes,
        manifest: m,
    }))
}

/// Why a module with `"sandbox": "required"` cannot run on a Linux without Landlock.
fn sandbox_required(dir: &str) -> BlockReason {
    BlockReason::SandboxRequired {
        reason: format!(
            "Landlock is unavailable on this Linux (it needs Linux 5.13 or later with `landlock` \
             in the `lsm=` boot list): run pons on such a kernel or remove `\"sandbox\": \"required\"` \
             from modules/{dir}/module.json and approve it again"
        ),
    }
}

/// Fingerprint of the config a module is sent (canonical JSON, `null` when none).
pub fn fingerprint_section(section: Option<&Value>) -> String {
    let v = section.map(config::canonical).unwrap_or(Value::Null);
    sha256_hex(&json_bytes(&v))
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(v) => config::section_text(v),
        None => String::new(),
    }
}

fn json_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Entry containment and the `.js` sibling preference.
fn resolve_entry(m: &Manifest, md: &ModuleDir, module_real: &Path) -> Result<PathBuf, BlockReason> {
    let requested = manifest::entry_request(m);
    let probe = md.entry.clone().unwrap_or_default();
    let unresolved = normalize(&module_real.join(&requested));
    let ts = probe.real.clone().unwrap_or(unresolved);
    let inside = |p: &Path| p.starts_with(module_real) && p != module_real;
    if !inside(&ts) {
        return Err(BlockReason::EntryEscapes { entry: requested });
    }
    if requested.ends_with(".ts") {
        if let Some(js) = &probe.js_sibling {
            if !inside(js) {
                return Err(BlockReason::EntryEscapes {
                    entry: format!("{}.js", requested.trim_end_matches(".ts")),
                });
            }
            return Ok(js.clone());
        }
    }
    probe
        .real
        .ok_or(BlockReason::EntryNotFound { entry: requested })
}

/// The section a module is sent: interpolated, then validated with its JSON Schema (defaults
/// filled in). Err: (section name, errors).
fn config_section(
    snapshot: &Snapshot,
    md: &ModuleDir,
    m: &Manifest,
    module_real: &Path,
    config_raw: &Value,
    notes: &mut Vec<String>,
) -> Result<Option<Value>, (String, Vec<String>)> {
    let Some(key) = &m.config_key else {
        if m.config_schema.is_some() {
            notes.push("`configSchema` is ignored without `configKey`".into());
        }
        return Ok(None);
    };
    if config::KERNEL_SECTIONS.contains(&key.as_str()) {
        return Err((
            key.clone(),
            vec![format!(
                "`{key}` is a kernel section; a module's `configKey` must name a section of its own"
            )],
        ));
    }
    let raw = config_raw.get(key).cloned();
    let interpolated = match &raw {
        Some(v) => Some(config::interpolate(v, &snapshot.env).map_err(|e| (key.clone(), e))?),
        None => None,
    };
    let Some(schema) = load_module_schema(md, m, module_real, notes) else {
        return Ok(interpolated);
    };
    let input = interpolated.unwrap_or_else(|| Value::Object(Default::default()));
    schema.apply(&input).map(Some).map_err(|e| (key.clone(), e))
}

fn load_module_schema(
    md: &ModuleDir,
    m: &Manifest,
    module_real: &Path,
    notes: &mut Vec<String>,
) -> Option<config::Schema> {
    let requested = m.config_schema.as_ref()?;
    let probe = md.schema.as_ref()?;
    let Some(real) = &probe.real else {
        notes.push(format!(
            "config schema `{requested}` not found; the section is not validated"
        ));
        return None;
    };
    if !real.starts_with(module_real) {
        notes.push(format!(
            "config schema `{requested}` escapes the module directory; the section is not validated"
        ));
        return None;
    }
    let ext = real.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext != "json" {
        notes.push(format!(
            "config schema `{requested}` is not a .json JSON Schema (.ts/.js schemas are unsupported); the section is not validated"
        ));
        return None;
    }
    match &probe.bytes {
        FileRead::Bytes(b) => match config::load_schema(b) {
            Ok(s) => Some(s),
            Err(e) => {
                notes.push(format!(
                    "config schema `{requested}`: {e}; the section is not validated"
                ));
                None
            }
        },
        FileRead::Error(e) => {
            notes.push(format!(
                "config schema `{requested}` cannot be read ({e}); the section is not validated"
            ));
            None
        }
        FileRead::Missing => {
            notes.push(format!(
                "config schema `{requested}` not found; the section is not validated"
            ));
            None
        }
    }
}

/// What decides which of two providers of one service keeps it.
struct Claims<'a> {
    /// Runnable in the previous pass.
    incumbents: &'a BTreeSet<&'a str>,
    /// Crashed or stopped: holds nothing.
    down: &'a BTreeSet<String>,
    /// `serviceProviders` of permissions.yaml: service → module.
    pinned: &'a BTreeMap<String, String>,
    /// `cluster.import.services` (sorted): other nodes may provide them, so a module requiring
    /// one is runnable without a local provider; it waits (`waiting`) until one is ready.
    imported: &'a Vec<String>,
}

impl Claims<'_> {
    /// Sort key, smallest first: able to run (not `demoted`), not down, running before, pinned
    /// for one of its services, then priority and id.
    ///
    /// A pin ranks below "running before": it chooses among the providers when none of them
    /// runs (a boot, or the one that ran is down or gone), but never displaces a provider that
    /// runs. Ranked above it, a pinned provider that crashed would lose its services to another,
    /// be forgotten by the supervisor (no longer down), and take them back in the next pass:
    /// revived without `pons apply`, crashing again, and so on.
    fn rank(&self, m: &DesiredModule, demoted: &BTreeSet<&str>) -> (bool, bool, bool, bool) {
        let down = self.down.contains(&m.id);
        let pinned = m
            .manifest
            .provides
            .iter()
            .any(|s| self.pinned.get(s) == Some(&m.id));
        let incumbent = self.incumbents.contains(m.id.as_str());
        (demoted.contains(m.id.as_str()), down, !incumbent, !pinned)
    }
}

/// Service-graph checks across the runnable modules: duplicate providers, dependency cycles,
/// missing required providers (to a fixpoint). Returns (still runnable, blocked).
///
/// Of two providers of one service the first by (not crashed or stopped, runnable in the
/// previous pass, pinned in `serviceProviders`, priority, id) keeps it: a newly added module
/// never displaces a provider that runs, and a provider that is down gives its services up to
/// another. A provider that keeps a service but cannot run itself (it is on a cycle or
/// misses a provider) gives it up too: it is demoted behind every other provider and the checks
/// run again, until no provider that kept a contested service is blocked (each round demotes one
/// more module, so this ends); else the other provider would be blocked as the duplicate of a
/// module that does not run, the service provided by none.
fn check_graph(
    mods: Vec<DesiredModule>,
    claims: &Claims,
) -> (Vec<DesiredModule>, Vec<BlockedModule>) {
    let mut demoted: BTreeSet<&str> = BTreeSet::new();
    let verdicts = loop {
        let verdicts = graph_verdicts(&mods, claims, &demoted);
        let contested: BTreeSet<&str> = verdicts
            .iter()
            .filter_map(|v| match v {
                Some(BlockReason::DuplicateProvider { other, .. }) => Some(other.as_str()),
                _ => None,
            })
            .collect();
        let stuck: Vec<&str> = mods
            .iter()
            .zip(&verdicts)
            .filter(|(m, v)| {
                v.is_some() && contested.contains(m.id.as_str()) && !demoted.contains(m.id.as_str())
            })
            .map(|(m, _)| m.id.as_str())
            .collect();
        if stuck.is_empty() {
            break verdicts;
        }
        demoted.extend(stuck);
    };
    let mut kept = Vec::new();
    let mut blocked = Vec::new();
    for (m, v) in mods.into_iter().zip(verdicts) {
        match v {
            Some(reason) => blocked.push(BlockedModule {
                id: m.id.clone(),
                dir_name: m.dir_name.clone(),
                reason,
            }),
            None => kept.push(m),
        }
    }
    (kept, blocked)
}

/// One round of the service-graph checks: for each module (same order as `mods`), why it is
/// blocked, `None` when it can run.
fn graph_verdicts(
    mods: &[DesiredModule],
    claims: &Claims,
    demoted: &BTreeSet<&str>,
) -> Vec<Option<BlockReason>> {
    let mut verdicts: Vec<Option<BlockReason>> = vec![None; mods.len()];
    // Sorted through indices: a `DesiredModule` is large, moving it around in a sort is not free.
    // Each rank is computed once (set and map look-ups), not twice in every comparison.
    let ranks: Vec<_> = mods.iter().map(|m| claims.rank(m, demoted)).collect();
    let mut idx: Vec<usize> = (0..mods.len()).collect();
    idx.sort_by(|&i, &j| {
        let (a, b) = (&mods[i], &mods[j]);
        ranks[i]
            .cmp(&ranks[j])
            .then(a.manifest.priority().total_cmp(&b.manifest.priority()))
            .then(a.id.cmp(&b.id))
    });

    // Duplicate providers: the first by rank keeps the service.
    let mut provided: BTreeMap<&str, &str> = BTreeMap::new();
    let mut keep = Vec::new();
    for i in idx {
        let m = &mods[i];
        let dup = m
            .manifest
            .provides
            .iter()
            .find_map(|s| provided.get(s.as_str()).map(|o| (s.clone(), o.to_string())));
        match dup {
            Some((service, other)) => {
                verdicts[i] = Some(BlockReason::DuplicateProvider { service, other })
            }
            None => {
                for s in &m.manifest.provides {
                    provided.insert(s, &m.id);
                }
                keep.push(i);
            }
        }
    }

    // Cycles.
    let nodes: Vec<Node> = keep
        .iter()
        .map(|&i| Node::from_manifest(&mods[i].manifest))
        .collect();
    let mut on_cycle: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (members, path) in graph::cycles(&nodes) {
        for id in members {
            on_cycle.insert(id, path.clone());
        }
    }
    let mut rest = Vec::new();
    for i in keep {
        match on_cycle.get(&mods[i].id) {
            Some(path) => verdicts[i] = Some(BlockReason::DependencyCycle { path: path.clone() }),
            None => rest.push(i),
        }
    }

    // Missing providers, to a fixpoint.
    loop {
        let provided: BTreeSet<&str> = rest
            .iter()
            .flat_map(|&i| mods[i].manifest.provides.iter().map(String::as_str))
            .collect();
        let mut stay = Vec::new();
        for &i in &rest {
            let missing = manifest::dedup(
                mods[i]
                    .manifest
                    .requires
                    .iter()
                    .filter(|s| !provided.contains(s.as_str()))
                    .filter(|s| claims.imported.binary_search(s).is_err()),
            );
            if missing.is_empty() {
                stay.push(i);
            } else {
                verdicts[i] = Some(BlockReason::MissingProvider { services: missing });
            }
        }
        if stay.len() == rest.len() {
            break;
        }
        rest = stay;
    }
    verdicts
}
