//! deno's configuration file as operator configuration: which `--config` a deno module runs with, what that file lets deno reach beyond
//! the module's approved permissions, and where its lock file is kept.
//!
//! The file is the module directory's `deno.json`, else `<home>/deno.json` (the reference's
//! rule), else — where the reference left deno to find one itself — the module directory's
//! `deno.jsonc`, else `<home>/deno.jsonc`. From its bytes (JSON with comments and trailing commas,
//! as deno reads it):
//! - **read**: the file itself, every local path of its import map (`imports` and `scopes`
//!   values, resolved against the file's directory like deno does; a directory target as is, a
//!   file target with its directory, where the file's siblings live), `links` / `patch` /
//!   `workspace` members, a local `importMap` file and a `package.json` beside it;
//! - **write**: `node_modules/` and `vendor/` beside it (created by the kernel before the module
//!   starts when the file asks for them: `nodeModulesDir: "auto"`, `vendor: true`);
//! - **the lock file**: `deno.lock` beside it unless `"lock"` says otherwise (`false`, a path, or
//!   `{"path": …}`).
//!
//! Nothing derived from the file reaches the kernel's own files: a path that is the home or holds
//! it, `config.yaml`, `permissions.yaml`, `.runtime/` or `run/` is left out (with a note), and a
//! file target whose directory is the home or `modules/` makes only that file readable.
//!
//! deno writes its lock file by temp file + rename in the lock's directory, which Landlock can
//! only allow by letting the module create and delete every file there (the home). So the module
//! never writes it: deno runs with `--lock=<home>/.runtime/deno/<key>/deno.lock`, a private copy in
//! a directory it may only read, and before the module starts the kernel runs `deno cache` for the
//! entry point (the [`Prepare`](crate::desired::Prepare) step, confined like the module, the
//! copy's directory writable), then writes the copy back beside the configuration file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::digest::sha256_hex;
use crate::snapshot::{FileRead, ModuleDir, Snapshot};
use crate::spawn::normalize;

/// Name of deno's lock file beside its configuration file.
pub const LOCK_FILE: &str = "deno.lock";

/// Kernel environment variables a `deno cache` step gets besides the module's environment: how
/// this machine reaches the npm registry and other hosts (proxies, certificate authorities,
/// registry, registry tokens). They go to the kernel's `deno cache` step only, never to the module.
pub const PREPARE_ENV: [&str; 16] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "DENO_CERT",
    "DENO_TLS_CA_STORE",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NPM_CONFIG_REGISTRY",
    "npm_config_registry",
    "DENO_AUTH_TOKENS",
];

/// Of [`PREPARE_ENV`], the variables that name a file or directory `deno cache` reads.
pub const PREPARE_ENV_PATHS: [&str; 4] = [
    "DENO_CERT",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The configuration file a deno module runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile<'a> {
    /// Its path (what `--config=` says).
    pub path: PathBuf,
    /// Its bytes; `None` when it exists but could not be read (deno will say why).
    pub bytes: Option<&'a [u8]>,
    /// It lives in the module directory (not the home).
    pub module_level: bool,
}

fn present(f: &FileRead) -> Option<Option<&[u8]>> {
    match f {
        FileRead::Missing => None,
        FileRead::Bytes(b) => Some(Some(b)),
        FileRead::Error(_) => Some(None),
    }
}

/// The configuration file of a deno module in `md` (real directory `module_real`), if any.
pub fn choose_config<'a>(
    snapshot: &'a Snapshot,
    md: &'a ModuleDir,
    module_real: &Path,
) -> Option<ConfigFile<'a>> {
    let candidates = [
        (&md.deno_json, module_real.join("deno.json"), true),
        (
            &snapshot.home_deno_json,
            snapshot.home.join("deno.json"),
            false,
        ),
        (&md.deno_jsonc, module_real.join("deno.jsonc"), true),
        (
            &snapshot.home_deno_jsonc,
            snapshot.home.join("deno.jsonc"),
            false,
        ),
    ];
    candidates
        .into_iter()
        .find_map(|(read, path, module_level)| {
            present(read).map(|bytes| ConfigFile {
                path,
                bytes,
                module_level,
            })
        })
}

/// What a configuration file lets deno reach (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// Readable: the file, import-map targets, linked packages, `package.json`.
    pub read: Vec<PathBuf>,
    /// Readable and writable: `node_modules/` and `vendor/` beside the file.
    pub write: Vec<PathBuf>,
    /// Of `write`, the directories the file asks deno to create.
    pub create: Vec<PathBuf>,
    /// The lock file deno keeps for it (`None`: `"lock": false`, or refused).
    pub lock: Option<PathBuf>,
    /// Problems worth a line in `pons plan` (unparseable file, refused paths).
    pub notes: Vec<String>,
}

/// Whether `p` (lexically normalised) is, holds, or lies in one of the kernel's own files of the
/// home: the home itself or a directory above it, `config.yaml`, `permissions.yaml`, `.runtime/`,
/// `run/`.
pub fn reaches_kernel_files(home: &Path, p: &Path) -> bool {
    home.starts_with(p)
        || p == home.join("config.yaml")
        || p == home.join("permissions.yaml")
        || p.starts_with(home.join(".runtime"))
        || p.starts_with(home.join("run"))
}

/// Computes [`Reach`] of the configuration file `config` (see the module docs). `homes`: the
/// home's path and, when it differs, its real path.
pub fn reach(config: &ConfigFile<'_>, homes: &[&Path], module_real: &Path) -> Reach {
    let kernel_files = |p: &Path| homes.iter().any(|h| reaches_kernel_files(h, p));
    // A directory too wide to open for a file target's siblings.
    let too_wide = |d: &Path| {
        kernel_files(d)
            || homes
                .iter()
                .any(|h| h.starts_with(d) || d == h.join("modules"))
    };
    let dir = config.path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = config.path.display().to_string();
    let mut r = Reach {
        read: vec![config.path.clone(), dir.join("package.json")],
        write: vec![dir.join("node_modules"), dir.join("vendor")],
        lock: Some(dir.join(LOCK_FILE)),
        ..Reach::default()
    };
    let Some(bytes) = config.bytes else {
        return r;
    };
    let v = match parse_jsonc(bytes) {
        Ok(Value::Object(o)) => Value::Object(o),
        Ok(_) => {
            r.notes
                .push(format!("{name} is not a JSON object; deno will refuse it"));
            return r;
        }
        Err(e) => {
            r.notes.push(format!(
                "{name} cannot be parsed ({e}); deno will refuse it"
            ));
            return r;
        }
    };
    let refused = |what: &str, p: &Path, notes: &mut Vec<String>| {
        notes.push(format!(
            "{name}: {what} {} reaches the kernel's files in the home; modules may not read it",
            p.display()
        ));
    };

    // Import map targets.
    let mut targets: Vec<&str> = Vec::new();
    if let Some(imports) = v.get("imports").and_then(Value::as_object) {
        targets.extend(imports.values().filter_map(Value::as_str));
    }
    if let Some(scopes) = v.get("scopes").and_then(Value::as_object) {
        for scope in scopes.values().filter_map(Value::as_object) {
            targets.extend(scope.values().filter_map(Value::as_str));
        }
    }
    for t in targets {
        let Some(p) = local_path(t, &dir) else {
            continue;
        };
        if kernel_files(&p) {
            refused("import map target", &p, &mut r.notes);
            continue;
        }
        let is_dir = t.ends_with('/');
        let grant = match p.parent() {
            Some(parent) if !is_dir && !too_wide(parent) => parent.to_path_buf(),
            _ => p,
        };
        push_unique(&mut r.read, grant);
    }

    // Local packages and workspace members (directories) and an external import map (a file).
    let mut dirs: Vec<&str> = Vec::new();
    for key in ["links", "patch", "workspace"] {
        match v.get(key) {
            Some(Value::Array(a)) => dirs.extend(a.iter().filter_map(Value::as_str)),
            Some(Value::Object(o)) if key == "workspace" => {
                if let Some(Value::Array(a)) = o.get("members") {
                    dirs.extend(a.iter().filter_map(Value::as_str));
                }
            }
            _ => {}
        }
    }
    let relative = |s: &str| -> Option<PathBuf> {
        local_path(s, &dir).or_else(|| {
            (!s.contains(':') && !s.is_empty()).then(|| normalize(&dir.join(percent_decode(s))))
        })
    };
    for d in dirs {
        if let Some(p) = relative(d) {
            if kernel_files(&p) {
                refused("linked directory", &p, &mut r.notes);
            } else {
                push_unique(&mut r.read, p);
            }
        }
    }
    if let Some(p) = v
        .get("importMap")
        .and_then(Value::as_str)
        .and_then(relative)
    {
        if kernel_files(&p) {
            refused("import map", &p, &mut r.notes);
        } else {
            push_unique(&mut r.read, p);
        }
    }

    // node_modules/ and vendor/.
    let node_modules = dir.join("node_modules");
    let vendor = dir.join("vendor");
    let auto = match v.get("nodeModulesDir") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "auto",
        _ => false,
    };
    if v.get("vendor") == Some(&Value::Bool(true)) {
        r.create.push(node_modules.clone());
        r.create.push(vendor);
    } else if auto {
        r.create.push(node_modules);
    }

    // The lock file.
    let lock_path = match v.get("lock") {
        Some(Value::Bool(false)) => None,
        Some(Value::String(s)) => relative(s),
        Some(Value::Object(o)) => match o.get("path").and_then(Value::as_str) {
            Some(s) => relative(s),
            None => Some(dir.join(LOCK_FILE)),
        },
        _ => Some(dir.join(LOCK_FILE)),
    };
    r.lock = match lock_path {
        Some(p) if kernel_files(&p) => {
            refused("lock file", &p, &mut r.notes);
            None
        }
        Some(p) if config.module_level && !p.starts_with(module_real) => {
            r.notes.push(format!(
                "{name}: lock file {} lies outside the module directory; the kernel does not write it",
                p.display()
            ));
            None
        }
        other => other,
    };
    r
}

/// Where the kernel keeps its copy of `lock` (the directory deno's `--lock` file lives in):
/// `<home>/.runtime/deno/<first 16 hex digits of SHA-256 of the lock path>`.
pub fn staging_dir(home: &Path, lock: &Path) -> PathBuf {
    let digest = sha256_hex(lock.to_string_lossy().as_bytes());
    home.join(".runtime/deno").join(&digest[..16])
}

/// A local path an import-map value points at: `./x`, `../x` (against `base`), `/x` or
/// `file:///x`, percent-decoded, query and fragment dropped, lexically normalised. `None` for
/// URLs of other schemes (`npm:`, `jsr:`, `https:`, …) and bare names.
pub fn local_path(value: &str, base: &Path) -> Option<PathBuf> {
    let v = value.split(['?', '#']).next().unwrap_or("");
    if let Some(rest) = v.strip_prefix("file://") {
        return rest
            .starts_with('/')
            .then(|| normalize(Path::new(&percent_decode(rest))));
    }
    if v.starts_with('/') {
        return Some(normalize(Path::new(&percent_decode(v))));
    }
    let relative = v == "." || v == ".." || v.starts_with("./") || v.starts_with("../");
    relative.then(|| normalize(&base.join(percent_decode(v))))
}

/// `%XX` escapes decoded (invalid escapes kept as written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn push_unique(v: &mut Vec<PathBuf>, p: PathBuf) {
    if !v.contains(&p) {
        v.push(p);
    }
}

/// Parses JSON with comments (`//`, `/* */`) and trailing commas, as deno reads `deno.json` and
/// `deno.jsonc`. A UTF-8 byte order mark is skipped.
pub fn parse_jsonc(bytes: &[u8]) -> Result<Value, String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    serde_json::from_str(&strip_jsonc(text)).map_err(|e| e.to_string())
}

/// Removes comments (keeping line breaks, so error positions stay right) and trailing commas
/// outside strings.
fn strip_jsonc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '/' if chars.peek() == Some(&'/') => {
                while chars.peek().is_some_and(|n| *n != '\n') {
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = '\0';
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                    }
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    // Trailing commas: a `,` whose next non-blank character closes an object or array.
    let mut cleaned = String::with_capacity(out.len());
    let chars: Vec<char> = out.chars().collect();
    let mut in_str = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_str {
            cleaned.push(c);
            if c == '\\' {
                if let Some(n) = chars.get(i + 1) {
                    cleaned.push(*n);
                    i += 1;
                }
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            cleaned.push(c);
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|n| !n.is_whitespace());
            if !matches!(next, Some('}') | Some(']')) {
                cleaned.push(c);
            }
        } else {
            cleaned.push(c);
        }
        i += 1;
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(path: &str, text: &str, module_level: bool) -> (PathBuf, Vec<u8>, bool) {
        (PathBuf::from(path), text.as_bytes().to_vec(), module_level)
    }

    fn reach_of(c: &(PathBuf, Vec<u8>, bool)) -> Reach {
        let file = ConfigFile {
            path: c.0.clone(),
            bytes: Some(&c.1),
            module_level: c.2,
        };
        reach(&file, &[Path::new("/h")], Path::new("/h/modules/m"))
    }

    fn strs(v: &[PathBuf]) -> Vec<String> {
        v.iter().map(|p| p.display().to_string()).collect()
    }

    #[test]
    fn jsonc_comments_and_trailing_commas() {
        let v = parse_jsonc(
            b"\xef\xbb\xbf// top\n{ \"a\": \"x // not a comment\", /* b */ \"b\": [1, 2,],\n \"c\": \"\\\"/*\\\"\", }",
        )
        .unwrap();
        assert_eq!(v["a"], "x // not a comment");
        assert_eq!(v["b"], serde_json::json!([1, 2]));
        assert_eq!(v["c"], "\"/*\"");
        let e = parse_jsonc(b"{\n/* x\n */ \"a\": }").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn local_paths_of_import_map_values() {
        let b = Path::new("/h");
        assert_eq!(local_path("./lib/", b), Some(PathBuf::from("/h/lib")));
        assert_eq!(
            local_path("../sdk/src/index.ts", b),
            Some(PathBuf::from("/sdk/src/index.ts"))
        );
        assert_eq!(
            local_path("file:///opt/a%20b/mod.ts?x#y", b),
            Some(PathBuf::from("/opt/a b/mod.ts"))
        );
        assert_eq!(local_path("/abs/x.ts", b), Some(PathBuf::from("/abs/x.ts")));
        for other in [
            "npm:ms@2",
            "jsr:@std/path",
            "https://x/y.ts",
            "node:fs",
            "bare",
            "",
        ] {
            assert_eq!(local_path(other, b), None, "{other}");
        }
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn home_config_reach() {
        let r = reach_of(&cfg(
            "/h/deno.json",
            r#"{
              "imports": {
                "@pons/sdk": "../sdk/src/index.ts",
                "@pons/sdk/": "../sdk/src/",
                "lib/": "./lib/",
                "top": "./top.ts",
                "m": "./modules/shared.ts",
                "ms": "npm:ms@2.1.3",
                "std/": "jsr:@std/",
                "cfg": "./config.yaml",
                "up": "../"
              },
              "scopes": {"https://x/": {"a": "/opt/vendor/a.ts"}},
              "links": ["../pkgs/one"],
              "nodeModulesDir": "auto"
            }"#,
            false,
        ));
        assert_eq!(
            strs(&r.read),
            [
                "/h/deno.json",
                "/h/package.json",
                "/sdk/src",
                "/h/lib",
                "/h/top.ts",
                "/h/modules/shared.ts",
                "/opt/vendor",
                "/pkgs/one",
            ]
        );
        assert_eq!(strs(&r.write), ["/h/node_modules", "/h/vendor"]);
        assert_eq!(strs(&r.create), ["/h/node_modules"]);
        assert_eq!(r.lock, Some(PathBuf::from("/h/deno.lock")));
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        assert!(r.notes[0].contains("/h/config.yaml"), "{:?}", r.notes);
        assert!(r.notes[1].contains("target / reaches"), "{:?}", r.notes);
    }

    #[test]
    fn lock_settings() {
        let lock = |text: &str, module_level: bool| {
            let path = if module_level {
                "/h/modules/m/deno.json"
            } else {
                "/h/deno.json"
            };
            reach_of(&cfg(path, text, module_level)).lock
        };
        assert_eq!(lock(r#"{"lock": false}"#, false), None);
        assert_eq!(
            lock(r#"{"lock": "locks/x.lock"}"#, false),
            Some(PathBuf::from("/h/locks/x.lock"))
        );
        assert_eq!(
            lock(r#"{"lock": {"path": "./y.lock", "frozen": true}}"#, false),
            Some(PathBuf::from("/h/y.lock"))
        );
        assert_eq!(
            lock(r#"{"lock": {"frozen": true}}"#, false),
            Some(PathBuf::from("/h/deno.lock"))
        );
        assert_eq!(lock(r#"{"lock": "permissions.yaml"}"#, false), None);
        assert_eq!(
            lock("{}", true),
            Some(PathBuf::from("/h/modules/m/deno.lock"))
        );
        // A module's own deno.json cannot make the kernel write outside the module.
        assert_eq!(lock(r#"{"lock": "../other/deno.lock"}"#, true), None);
    }

    #[test]
    fn vendor_and_node_modules_dir() {
        let create = |text: &str| strs(&reach_of(&cfg("/h/deno.json", text, false)).create);
        assert_eq!(
            create(r#"{"vendor": true}"#),
            ["/h/node_modules", "/h/vendor"]
        );
        assert_eq!(create(r#"{"nodeModulesDir": true}"#), ["/h/node_modules"]);
        assert!(create(r#"{"nodeModulesDir": "manual"}"#).is_empty());
        assert!(create(r#"{"nodeModulesDir": "none"}"#).is_empty());
        assert!(create("{}").is_empty());
    }

    #[test]
    fn unparseable_or_unreadable_config() {
        let r = reach_of(&cfg("/h/deno.json", "{ nope", false));
        assert_eq!(strs(&r.read), ["/h/deno.json", "/h/package.json"]);
        assert_eq!(r.lock, Some(PathBuf::from("/h/deno.lock")));
        assert!(r.notes[0].contains("cannot be parsed"), "{:?}", r.notes);
        let file = ConfigFile {
            path: "/h/deno.json".into(),
            bytes: None,
            module_level: false,
        };
        let r = reach(&file, &[Path::new("/h")], Path::new("/h/modules/m"));
        assert!(r.notes.is_empty());
        assert_eq!(r.lock, Some(PathBuf::from("/h/deno.lock")));
    }

    #[test]
    fn config_choice_order() {
        let mut s = Snapshot {
            home: "/h".into(),
            ..Snapshot::default()
        };
        let mut md = ModuleDir::default();
        let real = Path::new("/r/m");
        assert_eq!(choose_config(&s, &md, real), None);
        s.home_deno_jsonc = FileRead::Bytes(b"{}".to_vec());
        assert_eq!(
            choose_config(&s, &md, real).unwrap().path,
            PathBuf::from("/h/deno.jsonc")
        );
        md.deno_jsonc = FileRead::Bytes(b"{}".to_vec());
        assert!(choose_config(&s, &md, real).unwrap().module_level);
        s.home_deno_json = FileRead::Error("denied".into());
        let c = choose_config(&s, &md, real).unwrap();
        assert_eq!((c.path.to_str(), c.bytes), (Some("/h/deno.json"), None));
        md.deno_json = FileRead::Bytes(b"{}".to_vec());
        assert_eq!(
            choose_config(&s, &md, real).unwrap().path,
            PathBuf::from("/r/m/deno.json")
        );
    }

    /// A home reached through a symlink: a module's real directory resolves `../../config.yaml` to
    /// the real home, which is the home all the same.
    #[test]
    fn the_real_home_is_the_home() {
        let text =
            br#"{"imports": {"a": "../../config.yaml", "b": "../../x.ts", "c": "../../lib/y.ts"}}"#;
        let file = ConfigFile {
            path: "/real/h/modules/m/deno.json".into(),
            bytes: Some(text),
            module_level: true,
        };
        let homes = [Path::new("/link/h"), Path::new("/real/h")];
        let r = reach(&file, &homes, Path::new("/real/h/modules/m"));
        assert_eq!(
            strs(&r.read),
            [
                "/real/h/modules/m/deno.json",
                "/real/h/modules/m/package.json",
                "/real/h/x.ts",
                "/real/h/lib"
            ]
        );
        assert!(r.notes[0].contains("/real/h/config.yaml"), "{:?}", r.notes);
        let r = reach(&file, &homes[..1], Path::new("/real/h/modules/m"));
        assert!(r.notes.is_empty(), "the lexical home alone does not see it");
    }

    #[test]
    fn staging_dir_is_per_lock_file() {
        let a = staging_dir(Path::new("/h"), Path::new("/h/deno.lock"));
        let b = staging_dir(Path::new("/h"), Path::new("/h/modules/m/deno.lock"));
        assert!(a.starts_with("/h/.runtime/deno") && a != b);
        assert_eq!(a.file_name().unwrap().len(), 16);
    }
}
