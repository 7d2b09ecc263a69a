//! How a module is started: the command line per runtime, deno's
//! permission flags, the child environment and the sandbox policy; for deno with
//! a configuration file also what that file lets deno reach and the lock file step
//! ([`crate::deno`]).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::config::KernelConfig;
use crate::deno::{self, Reach, LOCK_FILE, PREPARE_ENV, PREPARE_ENV_PATHS};
use crate::desired::{BlockReason, Prepare, SandboxPolicy, SpawnSpec};
use crate::manifest::{Manifest, RUNTIMES};
use crate::permissions::PermissionSet;

/// Environment variables passed through from the kernel (when set), besides the module's
/// approved `env` names and `PONS_HOME`.
pub const ENV_ALLOWLIST: [&str; 15] = [
    "PATH",
    "HOME",
    "TERM",
    "LANG",
    "SHELL",
    "USER",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "DENO_DIR",
    "DEBUG",
    "USERPROFILE",
    "NODE_ENV",
    "TZ",
];

/// deno's `--allow-env` base list.
pub const DENO_ENV_ALLOWLIST: [&str; 8] = [
    "DEBUG",
    "HOME",
    "USERPROFILE",
    "PONS_HOME",
    "NODE_ENV",
    "LANG",
    "TERM",
    "TZ",
];

/// Everything [`spawn_spec`] needs besides the manifest.
pub struct SpawnInputs<'a> {
    pub home: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub which: &'a BTreeMap<String, Option<PathBuf>>,
    pub kernel: &'a KernelConfig,
    /// The module's real directory.
    pub module_real: &'a Path,
    /// Real path of the entry file.
    pub entry: &'a Path,
    /// deno's configuration file (the `--config` file) and what it lets deno reach; `None`
    /// when there is none (or the runtime is not deno).
    pub deno: Option<DenoConfig<'a>>,
    pub effective: &'a PermissionSet,
}

/// The configuration file of a deno module and what it lets deno reach.
#[derive(Debug, Clone, Copy)]
pub struct DenoConfig<'a> {
    pub path: &'a Path,
    pub reach: &'a Reach,
}

/// `$HOME`, else `$USERPROFILE`, else empty.
pub fn user_home(env: &BTreeMap<String, String>) -> String {
    env.get("HOME")
        .or_else(|| env.get("USERPROFILE"))
        .cloned()
        .unwrap_or_default()
}

/// Lexical normalisation: `.` removed, `..` pops a component, a trailing slash kept.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !path.is_absolute() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// the reference kernel's behaviour path rule: `~/x` → `<home>/x`; absolute → verbatim; else joined to `base`
/// and normalised (trailing slash kept). Relative paths are not confined to `base`.
pub fn resolve_perm_path(value: &str, user_home: &str, base: &Path) -> String {
    let v = match value.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", user_home.trim_end_matches('/')),
        None => value.to_string(),
    };
    if v.starts_with('/') {
        return v;
    }
    let mut joined = normalize(&base.join(&v)).to_string_lossy().into_owned();
    if v.ends_with('/') && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

/// deno permission flags from the effective permissions, in the order of the reference kernel's behaviour
/// `module_dir` is the directory of the real entry file; `run` keeps only names `which` found.
pub fn deno_flags(
    perms: &PermissionSet,
    module_dir: &Path,
    user_home: &str,
    which: &BTreeMap<String, Option<PathBuf>>,
) -> Vec<String> {
    let mut flags = Vec::new();
    let list = |name: &str, values: &[String]| -> String {
        if values.is_empty() {
            format!("--deny-{name}")
        } else {
            format!("--allow-{name}={}", values.join(","))
        }
    };
    flags.push(list("net", &perms.net));
    let resolve = |vals: &[String]| -> Vec<String> {
        vals.iter()
            .map(|v| resolve_perm_path(v, user_home, module_dir))
            .collect()
    };
    flags.push(list("read", &resolve(&perms.read)));
    flags.push(list("write", &resolve(&perms.write)));
    let mut env: Vec<String> = DENO_ENV_ALLOWLIST.iter().map(|s| s.to_string()).collect();
    for e in &perms.env {
        if !env.contains(e) {
            env.push(e.clone());
        }
    }
    flags.push(format!("--allow-env={}", env.join(",")));
    let run: Vec<String> = perms
        .run
        .iter()
        .filter(|r| which.get(*r).is_some_and(Option::is_some))
        .cloned()
        .collect();
    flags.push(list("run", &run));
    flags.push(list("sys", &perms.sys));
    flags
}

/// The interpreter a runtime needs (`None` for runtimes that execute the entry itself).
fn interpreter(runtime: &str) -> Option<&'static str> {
    match runtime {
        "deno" => Some("deno"),
        "node" => Some("node"),
        "bun" => Some("bun"),
        "python" => Some("python"),
        "php" => Some("php"),
        _ => None,
    }
}

/// Finds the program of an interpreter runtime: `kernel.runtimes` override (absolute: as
/// written, unless the snapshot probed it and found no executable file there; a bare name:
/// looked up in `which`), else `which` (python falls back to python3).
fn find_program(
    runtime: &str,
    name: &str,
    kernel: &KernelConfig,
    which: &BTreeMap<String, Option<PathBuf>>,
) -> Result<PathBuf, BlockReason> {
    let lookup = |n: &str| which.get(n).cloned().flatten();
    if let Some(p) = kernel.runtimes.get(runtime) {
        if p.starts_with('/') {
            return match which.get(p.as_str()) {
                Some(None) => Err(BlockReason::RuntimeNotFound {
                    runtime: runtime.into(),
                    program: p.clone(),
                }),
                _ => Ok(PathBuf::from(p)),
            };
        }
        return lookup(p).ok_or_else(|| BlockReason::RuntimeNotFound {
            runtime: runtime.into(),
            program: p.clone(),
        });
    }
    let found = lookup(name).or_else(|| {
        if name == "python" {
            lookup("python3")
        } else {
            None
        }
    });
    found.ok_or_else(|| BlockReason::RuntimeNotFound {
        runtime: runtime.into(),
        program: name.into(),
    })
}

fn push_unique(v: &mut Vec<PathBuf>, p: PathBuf) {
    if !v.contains(&p) {
        v.push(p);
    }
}

/// Builds the spawn spec of a module, or the reason it cannot run. Also returns notes (e.g. an
/// unknown runtime started as deno).
pub fn spawn_spec(
    manifest: &Manifest,
    inp: &SpawnInputs<'_>,
) -> Result<(SpawnSpec, Vec<String>), BlockReason> {
    let mut notes = Vec::new();
    let asked = manifest.runtime();
    let runtime = if RUNTIMES.contains(&asked) {
        asked.to_string()
    } else {
        notes.push(format!(
            "unknown runtime `{asked}`: started as deno (known: {})",
            RUNTIMES.join(", ")
        ));
        "deno".to_string()
    };
    let user_home = user_home(inp.env);
    let entry_dir = inp.entry.parent().unwrap_or(inp.module_real).to_path_buf();
    let entry_str = inp.entry.to_string_lossy().into_owned();
    let deno_config = inp.deno.filter(|_| runtime == "deno");
    let staged_lock = deno_config.and_then(|c| {
        c.reach
            .lock
            .as_ref()
            .map(|l| deno::staging_dir(inp.home, l).join(LOCK_FILE))
    });
    let (program, args) = match interpreter(&runtime) {
        Some(name) => {
            let program =
                find_program(&runtime, name, inp.kernel, inp.which).map_err(|e| match e {
                    // Name what the operator wrote, not the fallback.
                    BlockReason::RuntimeNotFound { program, .. } if runtime != asked => {
                        BlockReason::RuntimeNotFound {
                            runtime: asked.to_string(),
                            program,
                        }
                    }
                    other => other,
                })?;
            let args = match runtime.as_str() {
                "deno" => {
                    let mut a = vec!["run".to_string()];
                    a.extend(deno_flags(inp.effective, &entry_dir, &user_home, inp.which));
                    a.push("--unstable-sloppy-imports".into());
                    if let Some(c) = &deno_config {
                        a.push(format!("--config={}", c.path.to_string_lossy()));
                    }
                    if let Some(l) = &staged_lock {
                        a.push(format!("--lock={}", l.to_string_lossy()));
                    }
                    a.push(entry_str.clone());
                    a
                }
                "bun" => vec!["run".into(), entry_str.clone()],
                _ => vec![entry_str.clone()],
            };
            (program, args)
        }
        None => (inp.entry.to_path_buf(), Vec::new()),
    };

    // Environment: allowlist + approved env names (when set in the kernel) + PONS_HOME.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for name in ENV_ALLOWLIST
        .iter()
        .map(|s| s.to_string())
        .chain(inp.effective.env.iter().cloned())
    {
        if let Some(v) = inp.env.get(&name) {
            env.insert(name, v.clone());
        }
    }
    env.insert("PONS_HOME".into(), inp.home.to_string_lossy().into_owned());

    // Sandbox: only what is specific to this module. The kernel's sandbox adds the system
    // defaults every program needs (shared libraries, locale and certificate data, `/proc`, a
    // few devices) and what the program and the `run` executables need to start (their loader,
    // `#!` interpreter and install-prefix library directories), see `pons::sandbox::rules`.
    let mut sb = SandboxPolicy::default();
    for r in &inp.effective.read {
        push_unique(
            &mut sb.read,
            PathBuf::from(resolve_perm_path(r, &user_home, &entry_dir)),
        );
    }
    push_unique(&mut sb.read, inp.module_real.to_path_buf());
    for w in &inp.effective.write {
        push_unique(
            &mut sb.write,
            PathBuf::from(resolve_perm_path(w, &user_home, &entry_dir)),
        );
    }
    let deno_cache = (runtime == "deno")
        .then(|| {
            inp.env
                .get("DENO_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    inp.env
                        .get("XDG_CACHE_HOME")
                        .map(|x| Path::new(x).join("deno"))
                })
                .or_else(|| {
                    (!user_home.is_empty()).then(|| Path::new(&user_home).join(".cache/deno"))
                })
        })
        .flatten();
    if let Some(c) = &deno_cache {
        push_unique(&mut sb.write, c.clone());
    }
    if let Some(c) = &deno_config {
        for p in &c.reach.read {
            push_unique(&mut sb.runtime_read, p.clone());
        }
        if let Some(dir) = staged_lock.as_ref().and_then(|l| l.parent()) {
            push_unique(&mut sb.runtime_read, dir.to_path_buf());
        }
        for p in &c.reach.write {
            push_unique(&mut sb.runtime_write, p.clone());
        }
    }
    // The program only: for an interpreter runtime the entry is read, never executed (its `#!`
    // line would otherwise grant e.g. `/usr/bin/env`); for the others it is the program.
    push_unique(&mut sb.exec, program.clone());
    for r in &inp.effective.run {
        if let Some(Some(p)) = inp.which.get(r) {
            push_unique(&mut sb.exec, p.clone());
        }
    }
    sb.limits = manifest.limits.unwrap_or_default();
    sb.required = manifest.sandbox.as_deref() == Some("required");

    let prepare = match (deno_config, &staged_lock) {
        (Some(c), Some(staged)) => Some(prepare_step(PrepareInputs {
            config: c,
            staged: staged.clone(),
            program: &program,
            entry: inp.entry,
            cwd: inp.module_real,
            env: &env,
            kernel_env: inp.env,
            user_home: &user_home,
            module: &sb,
            deno_cache: deno_cache.as_deref(),
        })),
        _ => None,
    };
    Ok((
        SpawnSpec {
            program,
            args,
            env: env.into_iter().collect(),
            cwd: inp.module_real.to_path_buf(),
            sandbox: sb,
            runtime,
            entry: inp.entry.to_path_buf(),
            deno_config: deno_config.map(|c| c.path.to_path_buf()),
            prepare,
        },
        notes,
    ))
}

struct PrepareInputs<'a> {
    config: DenoConfig<'a>,
    staged: PathBuf,
    program: &'a Path,
    entry: &'a Path,
    cwd: &'a Path,
    /// The module's environment.
    env: &'a BTreeMap<String, String>,
    /// The kernel's environment.
    kernel_env: &'a BTreeMap<String, String>,
    user_home: &'a str,
    /// The module's sandbox policy.
    module: &'a SandboxPolicy,
    deno_cache: Option<&'a Path>,
}

/// The `deno cache` step of a deno module with a lock file (see [`Prepare`]): the module's
/// environment plus the kernel's network settings ([`PREPARE_ENV`]); what the module may read,
/// plus the files those settings and npm's `.npmrc` name; writable: deno's cache, the directory
/// of the staged lock, `node_modules/` and `vendor/`. No limits: the step is the kernel's.
fn prepare_step(p: PrepareInputs<'_>) -> Prepare {
    let staging = p.staged.parent().unwrap_or(Path::new("/")).to_path_buf();
    let config_dir = p.config.path.parent().unwrap_or(Path::new("/"));
    let mut env = p.env.clone();
    for name in PREPARE_ENV {
        if let Some(v) = p.kernel_env.get(name) {
            env.insert(name.to_string(), v.clone());
        }
    }
    let mut sb = SandboxPolicy {
        read: p.module.read.clone(),
        exec: vec![p.program.to_path_buf()],
        runtime_write: p.module.runtime_write.clone(),
        required: p.module.required,
        ..SandboxPolicy::default()
    };
    for r in p.module.runtime_read.iter().filter(|r| **r != staging) {
        push_unique(&mut sb.runtime_read, r.clone());
    }
    for name in PREPARE_ENV_PATHS {
        if let Some(v) = p.kernel_env.get(name).filter(|v| v.starts_with('/')) {
            push_unique(&mut sb.runtime_read, PathBuf::from(v));
        }
    }
    if !p.user_home.is_empty() {
        push_unique(&mut sb.runtime_read, Path::new(p.user_home).join(".npmrc"));
    }
    push_unique(&mut sb.runtime_read, config_dir.join(".npmrc"));
    if let Some(c) = p.deno_cache {
        push_unique(&mut sb.write, c.to_path_buf());
    }
    push_unique(&mut sb.write, staging);
    let args = vec![
        "cache".to_string(),
        "--unstable-sloppy-imports".to_string(),
        format!("--config={}", p.config.path.to_string_lossy()),
        format!("--lock={}", p.staged.to_string_lossy()),
        p.entry.to_string_lossy().into_owned(),
    ];
    Prepare {
        lock: p.config.reach.lock.clone().unwrap_or_default(),
        staged_lock: p.staged,
        create_dirs: p.config.reach.create.clone(),
        spec: Box::new(SpawnSpec {
            program: p.program.to_path_buf(),
            args,
            env: env.into_iter().collect(),
            cwd: p.cwd.to_path_buf(),
            sandbox: sb,
            runtime: "deno".into(),
            entry: p.entry.to_path_buf(),
            deno_config: Some(p.config.path.to_path_buf()),
            prepare: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_permissions_flags() {
        let f = deno_flags(
            &PermissionSet::default(),
            Path::new("/m"),
            "/home/u",
            &BTreeMap::new(),
        );
        assert_eq!(
            f.join(" "),
            "--deny-net --deny-read --deny-write --allow-env=DEBUG,HOME,USERPROFILE,PONS_HOME,NODE_ENV,LANG,TERM,TZ --deny-run --deny-sys"
        );
    }

    #[test]
    fn gateway_worked_example() {
        let p = PermissionSet {
            net: strs(&["0.0.0.0", "127.0.0.1"]),
            read: strs(&[".", "~/.pons/"]),
            env: strs(&["HOME", "PONS_HOME"]),
            sys: strs(&["hostname"]),
            ..Default::default()
        };
        let f = deno_flags(&p, Path::new("/r/gateway"), "/home/u", &BTreeMap::new());
        assert_eq!(
            f.join(" "),
            "--allow-net=0.0.0.0,127.0.0.1 --allow-read=/r/gateway,/home/u/.pons/ --deny-write --allow-env=DEBUG,HOME,USERPROFILE,PONS_HOME,NODE_ENV,LANG,TERM,TZ --deny-run --allow-sys=hostname"
        );
    }

    #[test]
    fn run_and_env_flags() {
        let which: BTreeMap<String, Option<PathBuf>> = [
            ("git".to_string(), Some(PathBuf::from("/usr/bin/git"))),
            ("definitely-not-installed".to_string(), None),
        ]
        .into();
        let p = PermissionSet {
            run: strs(&["definitely-not-installed"]),
            env: strs(&["HOME", "API_KEY"]),
            ..Default::default()
        };
        let f = deno_flags(&p, Path::new("/m"), "/h", &which);
        assert!(f.contains(&"--deny-run".to_string()));
        assert!(f.contains(
            &"--allow-env=DEBUG,HOME,USERPROFILE,PONS_HOME,NODE_ENV,LANG,TERM,TZ,API_KEY"
                .to_string()
        ));
        let p = PermissionSet {
            run: strs(&["git"]),
            ..Default::default()
        };
        assert!(deno_flags(&p, Path::new("/m"), "/h", &which).contains(&"--allow-run=git".into()));
    }

    /// the reference kernel's behaviour variant A for an entry in a subdirectory: relative permission paths
    /// resolve against the entry's directory, flags in the reference order, no `--config` without
    /// a deno.json, and a sandbox policy with module-specific paths only.
    #[test]
    fn deno_spawn_spec_is_variant_a() {
        let manifest = crate::manifest::parse(
            br#"{"id":"w","name":"W","entrypoint":"src/runner.ts","sandbox":"required","limits":{"openFiles":64},"permissions":{"read":["."],"write":["../cache/"],"run":["git","nope"],"sys":["hostname"]}}"#,
        )
        .unwrap();
        let effective = manifest.permissions.clone();
        let env: BTreeMap<String, String> = [
            ("HOME", "/home/u"),
            ("PATH", "/usr/bin"),
            ("SECRET", "x"),
            ("XDG_CACHE_HOME", "/xdg"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let which: BTreeMap<String, Option<PathBuf>> = [
            (
                "deno".to_string(),
                Some(PathBuf::from("/opt/deno/bin/deno")),
            ),
            ("git".to_string(), Some(PathBuf::from("/usr/bin/git"))),
            ("nope".to_string(), None),
        ]
        .into();
        let kernel = KernelConfig::default();
        let inp = SpawnInputs {
            home: Path::new("/h"),
            env: &env,
            which: &which,
            kernel: &kernel,
            module_real: Path::new("/r/w"),
            entry: Path::new("/r/w/src/runner.ts"),
            deno: None,
            effective: &effective,
        };
        let (spec, notes) = spawn_spec(&manifest, &inp).unwrap();
        assert!(notes.is_empty());
        assert_eq!(spec.program, PathBuf::from("/opt/deno/bin/deno"));
        assert_eq!(
            spec.args.join(" "),
            "run --deny-net --allow-read=/r/w/src --allow-write=/r/w/cache/ \
             --allow-env=DEBUG,HOME,USERPROFILE,PONS_HOME,NODE_ENV,LANG,TERM,TZ --allow-run=git \
             --allow-sys=hostname --unstable-sloppy-imports /r/w/src/runner.ts"
        );
        let env_names: Vec<&str> = spec.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(env_names, ["HOME", "PATH", "PONS_HOME", "XDG_CACHE_HOME"]);
        let sb = &spec.sandbox;
        assert_eq!(sb.read, [PathBuf::from("/r/w/src"), PathBuf::from("/r/w")]);
        assert_eq!(
            sb.write,
            [PathBuf::from("/r/w/cache/"), PathBuf::from("/xdg/deno")]
        );
        assert_eq!(
            sb.exec,
            [
                PathBuf::from("/opt/deno/bin/deno"),
                PathBuf::from("/usr/bin/git")
            ]
        );
        assert_eq!(sb.limits.open_files, Some(64));
        assert!(sb.required);
    }

    #[test]
    fn path_rules() {
        let b = Path::new("/r/m/src");
        assert_eq!(resolve_perm_path(".", "/h", b), "/r/m/src");
        assert_eq!(resolve_perm_path("./data/", "/h", b), "/r/m/src/data/");
        assert_eq!(resolve_perm_path("~/.pons/", "/h", b), "/h/.pons/");
        assert_eq!(resolve_perm_path("/tmp", "/h", b), "/tmp");
        assert_eq!(resolve_perm_path("../x", "/h", b), "/r/m/x");
        assert_eq!(resolve_perm_path("~", "/h", b), "/r/m/src/~");
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalize(Path::new("/a/../../x")), PathBuf::from("/x"));
    }
}
