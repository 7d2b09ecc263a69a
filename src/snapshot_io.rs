//! Reads one [`Snapshot`] of a home directory: the only place that turns the file system into the
//! reconciler's input (realpaths, entry probes, schema files, `which` lookups, the Landlock ABI).
//! Never panics: every odd file becomes a [`FileRead::Error`] or a missing probe that the
//! reconciler reports. Every file is read whole and unchanged under the read ([`stable`]); the
//! kernel's passes ([`read_inputs`]) also keep a file that another process is still writing out.

mod module_dir;
mod stable;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use pons_reconciler::digest::sha256_hex;
use pons_reconciler::manifest::Manifest;
use pons_reconciler::permissions::PermissionsFile;
use pons_reconciler::snapshot::FileRead;
use pons_reconciler::{config, manifest, permissions, Desired, Snapshot};
use serde_json::Value;

use crate::home::Home;

/// Interpreters looked up for every snapshot.
const INTERPRETERS: [&str; 6] = ["deno", "node", "bun", "python", "python3", "php"];

/// What [`FileRead::Error`] says for a file another process is writing: config.yaml,
/// permissions.yaml and module.json keep their last good value (the reconciler's rule for a file
/// that cannot be read).
pub const BEING_WRITTEN: &str =
    "it is being written: another process has it open for writing; read again once closed";

/// What a pass read.
#[derive(Debug, Default)]
pub struct Inputs {
    pub snapshot: Snapshot,
    /// Files another process was writing. config.yaml, permissions.yaml and a module.json are in
    /// `snapshot` as [`FileRead::Error`] ([`BEING_WRITTEN`]), so they keep their last good value;
    /// a config schema or a `deno.json`/`deno.jsonc` keeps the bytes the [`ReadCache`] holds.
    pub being_written: Vec<PathBuf>,
    /// Without a previous state (the first pass): a state holding nothing but permissions.yaml
    /// and config.yaml as this read parsed them (and their digests). Given to `build_desired` as
    /// `previous`, it is reused exactly as a previous state's files are, and reads as no previous
    /// state otherwise (no modules, default kernel sections), so the boot pass parses them once.
    pub seed: Option<Desired>,
}

/// The last complete read of the inputs the reconciler keeps no last good value of (config
/// schemas, `deno.json`, `deno.jsonc`): what a pass uses while one of them is being written. Holds
/// only those files (most homes have none or a few).
#[derive(Debug, Default)]
pub struct ReadCache {
    files: HashMap<PathBuf, FileRead>,
}

/// Reads the home directory for a pass: like [`read_snapshot`], but a file that another process
/// is writing is not taken ([`Inputs::being_written`]). The files `previous` was built from are
/// not parsed again (what the snapshot needs of them: entry points, schemas, `run` names).
pub fn read_inputs(
    home: &Home,
    env: &BTreeMap<String, String>,
    cache: &mut ReadCache,
    previous: Option<&Desired>,
) -> Inputs {
    let mut reader = Reader {
        keep: Some(Keep {
            cache,
            seen: HashMap::new(),
        }),
        being_written: Vec::new(),
        seed: previous.is_none().then(|| Desired {
            config_raw: Value::Object(Default::default()),
            ..Default::default()
        }),
        previous,
        manifests: previous
            .map(|p| {
                p.modules
                    .values()
                    .map(|m| (m.manifest_hash.as_str(), &m.manifest))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let snapshot = read_home(&mut reader, home, env);
    if let Some(keep) = reader.keep {
        keep.cache.files = keep.seen;
    }
    Inputs {
        snapshot,
        being_written: reader.being_written,
        seed: reader.seed,
    }
}

/// Reads the home directory; `env` is the kernel's environment (usually `std::env::vars()`). A
/// file that another process is writing is read as it is (the CLI has no last good value).
pub fn read_snapshot(home: &Home, env: &BTreeMap<String, String>) -> Snapshot {
    let mut reader = Reader {
        keep: None,
        being_written: Vec::new(),
        seed: None,
        previous: None,
        manifests: HashMap::new(),
    };
    read_home(&mut reader, home, env)
}

struct Keep<'c> {
    cache: &'c mut ReadCache,
    /// The cache's next contents.
    seen: HashMap<PathBuf, FileRead>,
}

struct Reader<'c> {
    /// `None`: take files being written as they are.
    keep: Option<Keep<'c>>,
    being_written: Vec<PathBuf>,
    /// [`Inputs::seed`], filled as the files are parsed.
    seed: Option<Desired>,
    /// The previous pass's state: its parsed files are reused when the bytes are the same (as
    /// `build_desired` does), so a routine pass parses nothing twice.
    previous: Option<&'c Desired>,
    /// The manifests of `previous`'s modules by hash.
    manifests: HashMap<&'c str, &'c Manifest>,
}

impl<'c> Reader<'c> {
    /// config.yaml, permissions.yaml, module.json: the reconciler keeps their last good value
    /// when they read as an error.
    fn file(&mut self, path: &Path) -> FileRead {
        let r = stable::read(path);
        if r.being_written && self.keep.is_some() {
            self.being_written.push(path.to_path_buf());
            return FileRead::Error(BEING_WRITTEN.into());
        }
        r.file
    }

    fn manifest(&self, bytes: &[u8]) -> Option<Cow<'c, Manifest>> {
        // `manifest::hash` is the exact digest of the bytes only for valid UTF-8.
        if !self.manifests.is_empty() && std::str::from_utf8(bytes).is_ok() {
            if let Some(m) = self.manifests.get(manifest::hash(bytes).as_str()) {
                return Some(Cow::Borrowed(*m));
            }
        }
        manifest::parse(bytes).ok().map(Cow::Owned)
    }

    /// A config schema or a deno configuration file: while it is being written, its last complete
    /// read stands in for it.
    fn cached_file(&mut self, path: &Path) -> FileRead {
        let r = stable::read(path);
        let Some(keep) = &mut self.keep else {
            return r.file;
        };
        let file = if r.being_written {
            self.being_written.push(path.to_path_buf());
            keep.cache
                .files
                .get(path)
                .cloned()
                .unwrap_or_else(|| FileRead::Error(BEING_WRITTEN.into()))
        } else {
            r.file
        };
        if file != FileRead::Missing {
            keep.seen.insert(path.to_path_buf(), file.clone());
        }
        file
    }
}

/// permissions.yaml and config.yaml as a pass takes them; `None` for a file that is missing,
/// unreadable or does not parse.
struct Parsed<'c> {
    permissions: Option<Cow<'c, PermissionsFile>>,
    config: Option<Cow<'c, Value>>,
}

/// One of permissions.yaml and config.yaml as read: its bytes, and the previous pass's value
/// when it was parsed from the same bytes (then it is not parsed again, as `build_desired` does).
struct ToParse<'a, 'c, T> {
    bytes: &'a [u8],
    /// The bytes' digest, when there was a previous value to compare.
    digest: Option<String>,
    reused: Option<&'c T>,
}

impl<'a, 'c, T: Clone> ToParse<'a, 'c, T> {
    /// `None` when `file` has no bytes; `field`: the value and its digest in a previous state.
    fn new(
        file: &'a FileRead,
        previous: Option<&'c Desired>,
        field: impl Fn(&'c Desired) -> (&'c T, &'c Option<String>),
    ) -> Option<Self> {
        let FileRead::Bytes(bytes) = file else {
            return None;
        };
        let digest = previous.map(|_| sha256_hex(bytes));
        let reused = previous
            .map(field)
            .filter(|(_, d)| d.is_some() && *d == &digest)
            .map(|(v, _)| v);
        Some(ToParse {
            bytes,
            digest,
            reused,
        })
    }

    /// Whether `file` has bytes that were not parsed before.
    fn unparsed(file: &Option<Self>) -> bool {
        file.as_ref().is_some_and(|f| f.reused.is_none())
    }

    /// The previous value, or `parse` of the bytes.
    fn parsed(&self, parse: impl FnOnce(&[u8]) -> Option<T>) -> Option<Cow<'c, T>> {
        match self.reused {
            Some(v) => Some(Cow::Borrowed(v)),
            None => parse(self.bytes).map(Cow::Owned),
        }
    }

    /// The bytes' digest.
    fn digest(&self) -> String {
        self.digest
            .clone()
            .unwrap_or_else(|| sha256_hex(self.bytes))
    }
}

fn read_home(r: &mut Reader<'_>, home: &Home, env: &BTreeMap<String, String>) -> Snapshot {
    let config_yaml = r.file(&home.config_yaml());
    let permissions_yaml = r.file(&home.permissions_yaml());
    let previous = r.previous;
    let permissions = ToParse::new(&permissions_yaml, previous, |p| {
        (&p.permissions, &p.digests.permissions)
    });
    let config = ToParse::new(&config_yaml, previous, |p| {
        (&p.config_raw, &p.digests.config)
    });
    let parse = || Parsed {
        permissions: permissions
            .as_ref()
            .and_then(|f| f.parsed(|b| permissions::parse(b).ok())),
        config: config
            .as_ref()
            .and_then(|f| f.parsed(|b| config::parse(b).ok())),
    };
    let mut names: BTreeSet<String> = INTERPRETERS.iter().map(|s| s.to_string()).collect();
    let path_var = env.get("PATH").cloned().unwrap_or_default();
    let lookup = |names: BTreeSet<String>, which_map: &mut BTreeMap<String, Option<PathBuf>>| {
        for n in names {
            if let std::collections::btree_map::Entry::Vacant(v) = which_map.entry(n) {
                let found = which(v.key(), &path_var);
                v.insert(found);
            }
        }
    };
    // A file to parse (the boot pass's, or one that changed) is parsed on a thread of its own
    // while the directories are read: everything up to the join needs nothing of it.
    let (modules, home_deno_json, home_deno_jsonc, mut which_map, parsed) =
        std::thread::scope(|s| {
            let parsing = (ToParse::unparsed(&permissions) || ToParse::unparsed(&config))
                .then(|| {
                    std::thread::Builder::new()
                        .name("pons-parse".into())
                        .spawn_scoped(s, parse)
                        .ok()
                })
                .flatten();
            let modules = module_dir::read_all(r, &home.modules_dir(), &mut names);
            let home_deno_json = module_dir::read_deno_config(r, &home.root.join("deno.json"));
            let home_deno_jsonc = module_dir::read_deno_config(r, &home.root.join("deno.jsonc"));
            let mut which_map = BTreeMap::new();
            lookup(std::mem::take(&mut names), &mut which_map);
            let parsed = match parsing {
                Some(h) => h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                None => parse(),
            };
            (modules, home_deno_json, home_deno_jsonc, which_map, parsed)
        });

    // `run` names of every approval (base and dynamic grants) and runtime overrides.
    if let Some(p) = parsed.permissions {
        for id in p.modules.keys() {
            if let Some(eff) = p.effective(id) {
                names.extend(eff.run);
            }
        }
        if let (Some(seed), Cow::Owned(p), Some(f)) = (&mut r.seed, p, &permissions) {
            seed.permissions = p;
            seed.digests.permissions = Some(f.digest());
        }
    }
    if let Some(v) = parsed.config {
        if let Some(rt) = v.pointer("/kernel/runtimes").and_then(|r| r.as_object()) {
            // Absolute paths too: `which` checks that they name an executable file.
            for p in rt.values().filter_map(|p| p.as_str()) {
                if !p.is_empty() {
                    names.insert(p.to_string());
                }
            }
        }
        if let (Some(seed), Cow::Owned(v), Some(f)) = (&mut r.seed, v, &config) {
            seed.config_raw = v;
            seed.digests.config = Some(f.digest());
        }
    }
    lookup(names, &mut which_map);

    Snapshot {
        home: home.root.clone(),
        home_real: std::fs::canonicalize(&home.root)
            .ok()
            .filter(|r| *r != home.root),
        env: env.clone(),
        config_yaml,
        permissions_yaml,
        home_deno_json,
        home_deno_jsonc,
        modules,
        which: which_map,
        landlock_abi: crate::sandbox::support()
            .landlock_abi
            .and_then(|abi| u32::try_from(abi).ok()),
        down: Default::default(),
        host_name: host_name(),
    }
}

/// The machine's host name (`uname` nodename; empty when it cannot be had): the default
/// `cluster.node`.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Reads a whole file, unchanged under the read: missing → `Missing`, too large or unreadable →
/// `Error`. A file another process is writing is read as it is.
pub fn read_file(path: &Path) -> FileRead {
    stable::read(path).file
}

/// Looks `name` up like `which`: a name with a `/` is checked as a path, anything else in each
/// directory of `path_var`. Only executable regular files count.
pub fn which(name: &str, path_var: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then(|| std::fs::canonicalize(&p).unwrap_or(p));
    }
    // Version-manager shims (`…/shims/…`, e.g. pyenv) are skipped: they are shell scripts that
    // re-dispatch at run time and would defeat the sandbox's exec rules.
    path_var
        .split(':')
        .filter(|d| !d.is_empty() && !d.split('/').any(|seg| seg == "shims"))
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_a_home() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path());
        let m = home.modules_dir();
        write(
            &m.join("a/module.json"),
            r#"{"id":"a","name":"A","permissions":{"run":["sh"]},"configKey":"a","configSchema":"s.json"}"#,
        );
        write(&m.join("a/runner.ts"), "");
        write(&m.join("a/runner.js"), "");
        write(&m.join("a/s.json"), "{}");
        write(&m.join("b/module.json"), "not json");
        write(&m.join("file.txt"), "x");
        std::os::unix::fs::symlink(m.join("a"), m.join("link")).unwrap();
        write(&home.config_yaml(), "a: {x: 1}\n");
        write(&home.root.join("deno.jsonc"), "{} // c\n");
        write(&m.join("a/deno.json"), r#"{"imports":{}}"#);
        std::fs::create_dir_all(home.root.join("deno.json")).unwrap();
        let env: BTreeMap<String, String> =
            [("PATH".to_string(), "/usr/bin:/bin".to_string())].into();
        let s = read_snapshot(&home, &env);
        let names: Vec<&str> = s.modules.iter().map(|m| m.dir_name.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "file.txt", "link"]);
        let a = &s.modules[0];
        assert!(a.is_dir && !a.is_symlink);
        let e = a.entry.as_ref().unwrap();
        assert_eq!(e.requested, "runner.ts");
        assert!(e.real.as_ref().unwrap().ends_with("a/runner.ts"));
        assert!(e.js_sibling.as_ref().unwrap().ends_with("a/runner.js"));
        assert!(matches!(
            a.schema.as_ref().unwrap().bytes,
            FileRead::Bytes(_)
        ));
        assert!(s.modules[1].entry.is_none());
        assert!(!s.modules[2].is_dir);
        assert!(s.modules[3].is_symlink && s.modules[3].is_dir);
        assert_eq!(s.modules[3].real_path, a.real_path);
        assert!(matches!(s.config_yaml, FileRead::Bytes(_)));
        assert_eq!(s.home_deno_json, FileRead::Missing, "a directory");
        assert_eq!(s.home_deno_jsonc, FileRead::Bytes(b"{} // c\n".to_vec()));
        assert_eq!(a.deno_json, FileRead::Bytes(br#"{"imports":{}}"#.to_vec()));
        assert_eq!(a.deno_jsonc, FileRead::Missing);
        assert_eq!(s.permissions_yaml, FileRead::Missing);
        assert!(s.which.contains_key("sh") && s.which.contains_key("deno"));
        assert!(s.which["sh"].is_some());
        let abi = crate::sandbox::support().landlock_abi;
        assert_eq!(s.landlock_abi.map(|a| a as i32), abi);
    }

    #[test]
    fn a_pass_reuses_the_previous_parse_and_reads_the_same() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path());
        let m = home.modules_dir();
        write(
            &m.join("a/module.json"),
            r#"{"id":"a","name":"A","runtime":"binary","entrypoint":"run","permissions":{"run":["sh"]}}"#,
        );
        write(&m.join("a/run"), "");
        write(
            &home.config_yaml(),
            "kernel:\n  runtimes:\n    python: python3\n",
        );
        write(
            &home.permissions_yaml(),
            "modules:\n  a:\n    base: {run: [env]}\n    baseManifestHash: ''\n",
        );
        let env: BTreeMap<String, String> =
            [("PATH".to_string(), "/usr/bin:/bin".to_string())].into();
        let plain = read_snapshot(&home, &env);
        assert!(["sh", "env", "python3"]
            .iter()
            .all(|n| plain.which.contains_key(*n)));
        let previous = pons_reconciler::build_desired(&plain, None);
        assert!(previous.modules.contains_key("a"), "{:?}", previous.blocked);
        let mut cache = ReadCache::default();
        let again = read_inputs(&home, &env, &mut cache, Some(&previous));
        assert_eq!(again.snapshot, plain);
        assert!(again.being_written.is_empty());
        assert!(again.seed.is_none(), "a previous state is there to reuse");
        // The first pass's seed holds the parsed files and reads as no previous state otherwise.
        let first = read_inputs(&home, &env, &mut cache, None);
        let seed = first.seed.expect("a seed without a previous state");
        assert!(seed.digests.permissions.is_some() && seed.digests.config.is_some());
        assert_eq!(
            pons_reconciler::build_desired(&first.snapshot, Some(&seed)),
            previous
        );
        // Files that do not parse seed nothing.
        write(&home.config_yaml(), "a: [\n");
        write(&home.permissions_yaml(), "modules: [\n");
        let broken = read_inputs(&home, &env, &mut cache, None);
        let seed = broken.seed.expect("a seed");
        assert_eq!(
            pons_reconciler::build_desired(&broken.snapshot, Some(&seed)),
            pons_reconciler::build_desired(&broken.snapshot, None)
        );
    }

    #[test]
    fn a_file_being_written_keeps_its_last_good_value() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path());
        let m = home.modules_dir();
        write(
            &m.join("a/module.json"),
            r#"{"id":"a","name":"A","permissions":{},"configSchema":"s.json"}"#,
        );
        write(&m.join("a/s.json"), r#"{"type":"object"}"#);
        write(&home.config_yaml(), "a: {x: 1}\n");
        let env = BTreeMap::new();
        let mut cache = ReadCache::default();
        let first = read_inputs(&home, &env, &mut cache, None);
        assert!(first.being_written.is_empty());
        // Both files halfway through an in-place save.
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(p)
                .unwrap()
        };
        let mut cfg = open(&home.config_yaml());
        cfg.write_all(b"a: {x:").unwrap();
        let mut schema = open(&m.join("a/s.json"));
        schema.write_all(b"{\"type\":").unwrap();
        let during = read_inputs(&home, &env, &mut cache, None);
        if during.being_written.is_empty() {
            eprintln!("SKIP: no file leases in {}", t.path().display());
            return;
        }
        assert_eq!(
            during.snapshot.config_yaml,
            FileRead::Error(BEING_WRITTEN.into())
        );
        let schema_read = |i: &Inputs| i.snapshot.modules[0].schema.clone().unwrap().bytes;
        assert_eq!(
            schema_read(&during),
            schema_read(&first),
            "the last complete read"
        );
        assert_eq!(during.being_written.len(), 2, "{:?}", during.being_written);
        // The CLI has no last good value: it reads what is there.
        assert_eq!(
            read_snapshot(&home, &env).config_yaml,
            FileRead::Bytes(b"a: {x:".to_vec())
        );
        cfg.write_all(b" 2}\n").unwrap();
        schema.write_all(b"\"object\",\"title\":\"s\"}").unwrap();
        drop((cfg, schema));
        let after = read_inputs(&home, &env, &mut cache, None);
        assert!(after.being_written.is_empty());
        assert_eq!(
            after.snapshot.config_yaml,
            FileRead::Bytes(b"a: {x: 2}\n".to_vec())
        );
        assert_eq!(
            schema_read(&after),
            FileRead::Bytes(br#"{"type":"object","title":"s"}"#.to_vec())
        );
    }

    /// Real paths and entry/schema probes are what `canonicalize` (+ `is_file`) says, whether the
    /// shortcut for plain names applies or not: a home reached through a symlink, a module dir
    /// that is a symlink, entries and schemas that are symlinks, directories, dangling, missing,
    /// or written with `./` or a subdirectory.
    #[test]
    fn probes_are_what_canonicalize_says() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let real_home = t.path().join("real");
        symlink(&real_home, t.path().join("home")).unwrap();
        let home = Home::new(t.path().join("home"));
        let m = real_home.join("modules");
        let manifest = |entry: &str, schema: &str| {
            format!(
                r#"{{"id":"x","name":"X","entrypoint":"{entry}","configSchema":"{schema}","permissions":{{}}}}"#
            )
        };
        let cases = [
            ("plain", "run", "s.json"),
            ("entry-link", "run", "link.json"),
            ("entry-dir", "run", "dir.json"),
            ("entry-missing", "run", "missing.json"),
            ("entry-dangling", "run", "dangling.json"),
            ("dotted", "./run", "./s.json"),
            ("nested", "sub/run", "sub/s.json"),
            ("up", "../plain/run", "../plain/s.json"),
            ("ts", "runner.ts", "s.json"),
            ("ts-link", "runner.ts", "s.json"),
        ];
        for (dir, entry, schema) in cases {
            write(&m.join(dir).join("module.json"), &manifest(entry, schema));
        }
        for dir in ["plain", "dotted", "up", "ts", "ts-link"] {
            write(&m.join(dir).join("run"), "");
            write(&m.join(dir).join("s.json"), "{}");
        }
        write(&m.join("nested/sub/run"), "");
        write(&m.join("nested/sub/s.json"), "{}");
        write(&m.join("entry-link/bin/real-run"), "");
        write(&t.path().join("outside.json"), "{}");
        symlink("bin/real-run", m.join("entry-link/run")).unwrap();
        symlink(
            t.path().join("outside.json"),
            m.join("entry-link/link.json"),
        )
        .unwrap();
        std::fs::create_dir_all(m.join("entry-dir/run")).unwrap();
        std::fs::create_dir_all(m.join("entry-dir/dir.json")).unwrap();
        symlink("nowhere", m.join("entry-dangling/run")).unwrap();
        symlink("nowhere.json", m.join("entry-dangling/dangling.json")).unwrap();
        write(&m.join("ts/runner.ts"), "");
        write(&m.join("ts/runner.js"), "");
        write(&m.join("ts-link/runner.ts"), "");
        symlink("../ts/runner.js", m.join("ts-link/runner.js")).unwrap();
        // A module directory that is a symlink to a directory outside the home, and one that
        // dangles; deno configuration files that dangle or are directories.
        write(
            &t.path().join("elsewhere/mod/module.json"),
            &manifest("run", "s.json"),
        );
        write(&t.path().join("elsewhere/mod/run"), "");
        symlink(t.path().join("elsewhere/mod"), m.join("linked")).unwrap();
        symlink("gone", m.join("dangling")).unwrap();
        symlink("nowhere.json", m.join("plain/deno.json")).unwrap();
        std::fs::create_dir_all(m.join("plain/deno.jsonc")).unwrap();

        let s = read_snapshot(&home, &BTreeMap::new());
        assert_eq!(s.modules.len(), cases.len() + 2);
        let real_file = |p: PathBuf| std::fs::canonicalize(p).ok().filter(|p| p.is_file());
        for md in &s.modules {
            let name = &md.dir_name;
            assert!(md.path.starts_with(home.modules_dir()), "{name}");
            assert_eq!(md.real_path, std::fs::canonicalize(&md.path).ok(), "{name}");
            if name == "dangling" {
                assert!(md.is_symlink && !md.is_dir && md.entry.is_none());
                continue;
            }
            assert!(md.is_dir, "{name}");
            assert_eq!(md.is_symlink, name == "linked", "{name}");
            let base = md.real_path.clone().unwrap();
            let e = md.entry.as_ref().unwrap();
            assert_eq!(e.real, real_file(base.join(&e.requested)), "{name}");
            let sibling = e
                .requested
                .strip_suffix(".ts")
                .and_then(|stem| real_file(base.join(format!("{stem}.js"))));
            assert_eq!(e.js_sibling, sibling, "{name}");
            let schema = md.schema.as_ref().unwrap();
            let real = std::fs::canonicalize(base.join(&schema.requested)).ok();
            assert_eq!(schema.real, real, "{name}");
            let inside = real
                .as_ref()
                .is_some_and(|r| r.starts_with(&base) && r.is_file());
            assert_eq!(matches!(schema.bytes, FileRead::Bytes(_)), inside, "{name}");
            assert_eq!(md.deno_json, FileRead::Missing, "{name}");
            assert_eq!(md.deno_jsonc, FileRead::Missing, "{name}");
        }
        let by_name = |n: &str| s.modules.iter().find(|m| m.dir_name == n).unwrap();
        // The cases are what they say.
        assert!(by_name("plain").entry.as_ref().unwrap().real.is_some());
        assert!(by_name("entry-link")
            .entry
            .as_ref()
            .unwrap()
            .real
            .as_ref()
            .unwrap()
            .ends_with("bin/real-run"));
        assert!(by_name("entry-dir").entry.as_ref().unwrap().real.is_none());
        assert!(by_name("entry-dir").schema.as_ref().unwrap().real.is_some());
        assert!(by_name("ts-link")
            .entry
            .as_ref()
            .unwrap()
            .js_sibling
            .as_ref()
            .unwrap()
            .ends_with("ts/runner.js"));
        assert!(by_name("linked")
            .real_path
            .as_ref()
            .unwrap()
            .ends_with("elsewhere/mod"));
        assert!(by_name("plain")
            .real_path
            .as_ref()
            .unwrap()
            .starts_with(std::fs::canonicalize(&real_home).unwrap()));
    }

    #[test]
    fn missing_home_is_empty() {
        let s = read_snapshot(&Home::new("/nonexistent/pons"), &BTreeMap::new());
        assert!(s.modules.is_empty());
        assert_eq!(s.config_yaml, FileRead::Missing);
    }
}
