//! Desired-state details that the golden plans do not show: command lines, environment,
//! sandbox policy, capabilities, config sections and fingerprints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pons_reconciler::build_desired;
use pons_reconciler::desired::{BlockReason, Desired};
use pons_reconciler::graph;
use pons_reconciler::manifest;
use pons_reconciler::snapshot::{EntryProbe, FileRead, ModuleDir, SchemaProbe, Snapshot};

const HOME: &str = "/h";

struct Mod {
    dir: &'static str,
    json: String,
    entry: Option<&'static str>,
    js: Option<&'static str>,
    deno_json: bool,
    schema: Option<(&'static str, &'static str)>,
}

fn module(dir: &'static str, json: &str) -> Mod {
    Mod {
        dir,
        json: json.to_string(),
        entry: Some("runner.ts"),
        js: None,
        deno_json: false,
        schema: None,
    }
}

fn approve_all(mods: &[Mod], extra: &str) -> String {
    let mut s = String::from("modules:\n");
    for m in mods {
        let parsed = manifest::parse(m.json.as_bytes()).unwrap();
        let perms = serde_json::to_string(&parsed.permissions).unwrap();
        s += &format!(
            "  {}:\n    base: {perms}\n    baseManifestHash: {}\n",
            parsed.id,
            manifest::hash(m.json.as_bytes())
        );
    }
    s + extra
}

fn snapshot(mods: &[Mod], permissions: &str, config: &str) -> Snapshot {
    let env: BTreeMap<String, String> = [
        ("HOME", "/home/u"),
        ("PATH", "/usr/bin"),
        ("LANG", "C"),
        ("API_KEY", "k"),
        ("AWS_SECRET", "no"),
    ]
    .into_iter()
    .map(|(a, b)| (a.into(), b.into()))
    .collect();
    let which: BTreeMap<String, Option<PathBuf>> = [
        ("deno", Some("/opt/deno/bin/deno")),
        ("python", None),
        ("python3", Some("/usr/bin/python3")),
        ("node", None),
        ("git", Some("/usr/bin/git")),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.map(PathBuf::from)))
    .collect();
    Snapshot {
        home: HOME.into(),
        home_real: None,
        env,
        config_yaml: FileRead::Bytes(config.as_bytes().to_vec()),
        permissions_yaml: FileRead::Bytes(permissions.as_bytes().to_vec()),
        home_deno_json: FileRead::Bytes(b"{}".to_vec()),
        home_deno_jsonc: FileRead::Missing,
        modules: mods
            .iter()
            .map(|m| {
                let path = PathBuf::from(format!("{HOME}/modules/{}", m.dir));
                let real = PathBuf::from(format!("/real/{}", m.dir));
                let requested = manifest::parse(m.json.as_bytes())
                    .map(|x| manifest::entry_request(&x))
                    .unwrap_or_default();
                ModuleDir {
                    dir_name: m.dir.into(),
                    path,
                    real_path: Some(real.clone()),
                    is_symlink: false,
                    is_dir: true,
                    manifest: FileRead::Bytes(m.json.as_bytes().to_vec()),
                    entry: Some(EntryProbe {
                        requested,
                        real: m.entry.map(|e| {
                            if e.starts_with('/') {
                                PathBuf::from(e)
                            } else {
                                real.join(e)
                            }
                        }),
                        js_sibling: m.js.map(|j| real.join(j)),
                    }),
                    deno_json: if m.deno_json {
                        FileRead::Bytes(br#"{"version":"2.5.0"}"#.to_vec())
                    } else {
                        FileRead::Missing
                    },
                    deno_jsonc: FileRead::Missing,
                    schema: m.schema.map(|(name, text)| SchemaProbe {
                        requested: name.into(),
                        real: Some(real.join(name)),
                        bytes: FileRead::Bytes(text.as_bytes().to_vec()),
                    }),
                }
            })
            .collect(),
        which,
        landlock_abi: Some(7),
        down: Default::default(),
        host_name: String::new(),
    }
}

fn build(mods: &[Mod], extra_perms: &str, config: &str) -> Desired {
    build_desired(
        &snapshot(mods, &approve_all(mods, extra_perms), config),
        None,
    )
}

#[test]
fn deno_command_line_env_and_sandbox() {
    let mut m = module(
        "gw",
        r#"{"id":"gw","name":"G","permissions":{"net":["api.example.com"],"read":[".","~/.pons/"],"write":["./data/"],"env":["API_KEY","MISSING"],"run":["git","nope"]}}"#,
    );
    m.js = Some("runner.js");
    m.deno_json = true;
    let d = build(&[m], "", "");
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    let gw = &d.modules["gw"];
    assert_eq!(gw.version.as_deref(), Some("2.5.0"));
    let s = &gw.spawn;
    assert_eq!(s.program, PathBuf::from("/opt/deno/bin/deno"));
    assert_eq!(
        s.args.join(" "),
        "run --allow-net=api.example.com --allow-read=/real/gw,/home/u/.pons/ --allow-write=/real/gw/data/ --allow-env=DEBUG,HOME,USERPROFILE,PONS_HOME,NODE_ENV,LANG,TERM,TZ,API_KEY,MISSING --allow-run=git --deny-sys --unstable-sloppy-imports --config=/real/gw/deno.json --lock=/h/.runtime/deno/64a9d82e66eecae4/deno.lock /real/gw/runner.js"
    );
    let env: Vec<&str> = s.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(env, vec!["API_KEY", "HOME", "LANG", "PATH", "PONS_HOME"]);
    assert!(s.env.contains(&("PONS_HOME".into(), HOME.into())));
    assert_eq!(s.cwd, PathBuf::from("/real/gw"));
    assert_eq!(s.entry, PathBuf::from("/real/gw/runner.js"));
    // Only module-specific paths: the exec trampoline adds the system defaults.
    let sb = &s.sandbox;
    let paths = |v: &[PathBuf]| -> Vec<String> {
        v.iter().map(|p| p.to_string_lossy().into_owned()).collect()
    };
    assert_eq!(paths(&sb.read), ["/real/gw", "/home/u/.pons/"]);
    assert_eq!(paths(&sb.write), ["/real/gw/data/", "/home/u/.cache/deno"]);
    assert_eq!(paths(&sb.exec), ["/opt/deno/bin/deno", "/usr/bin/git"]);
    // deno's configuration: readable, its lock read from the kernel's copy, no approval needed.
    assert_eq!(
        paths(&sb.runtime_read),
        [
            "/real/gw/deno.json",
            "/real/gw/package.json",
            "/h/.runtime/deno/64a9d82e66eecae4"
        ]
    );
    assert_eq!(
        paths(&sb.runtime_write),
        ["/real/gw/node_modules", "/real/gw/vendor"]
    );
    assert_eq!(s.deno_config, Some(PathBuf::from("/real/gw/deno.json")));
    // The lock step: `deno cache` with the kernel's copy writable, nothing of the module's
    // approved writes, the network settings of the kernel.
    let p = s.prepare.as_ref().expect("a lock step");
    assert_eq!(p.lock, PathBuf::from("/real/gw/deno.lock"));
    assert_eq!(
        p.staged_lock,
        PathBuf::from("/h/.runtime/deno/64a9d82e66eecae4/deno.lock")
    );
    assert!(p.create_dirs.is_empty());
    assert_eq!(
        p.spec.args.join(" "),
        "cache --unstable-sloppy-imports --config=/real/gw/deno.json \
         --lock=/h/.runtime/deno/64a9d82e66eecae4/deno.lock /real/gw/runner.js"
    );
    assert_eq!(p.spec.program, s.program);
    assert_eq!(p.spec.cwd, s.cwd);
    let psb = &p.spec.sandbox;
    assert_eq!(paths(&psb.read), paths(&sb.read));
    assert_eq!(
        paths(&psb.write),
        ["/home/u/.cache/deno", "/h/.runtime/deno/64a9d82e66eecae4"]
    );
    assert_eq!(paths(&psb.exec), ["/opt/deno/bin/deno"]);
    assert_eq!(
        paths(&psb.runtime_read),
        [
            "/real/gw/deno.json",
            "/real/gw/package.json",
            "/home/u/.npmrc",
            "/real/gw/.npmrc"
        ]
    );
    assert_eq!(psb.runtime_write, sb.runtime_write);
    assert!(p.spec.prepare.is_none());
}

#[test]
fn home_deno_json_fallback_and_runtimes() {
    let py = module(
        "py",
        r#"{"id":"py","name":"P","runtime":"python","entrypoint":"main.py","permissions":{}}"#,
    );
    let mut py = py;
    py.entry = Some("main.py");
    let mut bin = module(
        "bin",
        r#"{"id":"bin","name":"B","runtime":"binary","entrypoint":"app","permissions":{}}"#,
    );
    bin.entry = Some("app");
    let dn = module("dn", r#"{"id":"dn","name":"D","permissions":{}}"#);
    let node = module(
        "nd",
        r#"{"id":"nd","name":"N","runtime":"node","entrypoint":"i.js","permissions":{}}"#,
    );
    let d = build(&[py, bin, dn, node], "", "");
    assert_eq!(
        d.modules["py"].spawn.program,
        PathBuf::from("/usr/bin/python3")
    );
    assert_eq!(d.modules["py"].spawn.args, vec!["/real/py/main.py"]);
    assert_eq!(
        d.modules["bin"].spawn.program,
        PathBuf::from("/real/bin/app")
    );
    assert!(d.modules["bin"].spawn.args.is_empty());
    assert!(d.modules["dn"]
        .spawn
        .args
        .contains(&"--config=/h/deno.json".to_string()));
    let b = d.blocked.iter().find(|b| b.id == "nd").unwrap();
    assert!(matches!(b.reason, BlockReason::RuntimeNotFound { .. }));

    // kernel.runtimes override
    let node = module(
        "nd",
        r#"{"id":"nd","name":"N","runtime":"node","entrypoint":"i.js","permissions":{}}"#,
    );
    let d = build(
        &[node],
        "",
        "kernel:\n  runtimes:\n    node: /opt/node/bin/node\n",
    );
    assert_eq!(
        d.modules["nd"].spawn.program,
        PathBuf::from("/opt/node/bin/node")
    );
}

#[test]
fn symlinked_entry_outside_escapes() {
    let mut m = module("x", r#"{"id":"x","name":"X","permissions":{}}"#);
    m.entry = Some("/elsewhere/runner.ts");
    let d = build(&[m], "", "");
    assert!(matches!(
        d.blocked[0].reason,
        BlockReason::EntryEscapes { .. }
    ));
}

#[test]
fn capabilities_precedence_and_installed() {
    let a = module(
        "a",
        r#"{"id":"a","name":"A","permissions":{},"subscribes":["t"],"publishes":["p"],"requires":[],"optionalRequires":["o"]}"#,
    );
    let b = module(
        "b",
        r#"{"id":"b","name":"B","permissions":{},"capabilities":{"topics":["x"]}}"#,
    );
    let c = module(
        "c",
        r#"{"id":"c","name":"C","permissions":{},"capabilities":{"topics":["x"]}}"#,
    );
    let mods = [a, b, c];
    let mut perms = approve_all(&mods, "");
    perms = perms.replace(
        "  c:\n",
        "  c:\n    capabilities: {topics: [stored]}\n    firstSpawnAt: t0\n",
    );
    let d = build_desired(&snapshot(&mods, &perms, ""), None);
    assert_eq!(d.modules["a"].capabilities.topics, vec!["t", "p"]);
    assert_eq!(d.modules["a"].capabilities.services, vec!["o"]);
    assert_eq!(d.modules["b"].capabilities.topics, vec!["x"]);
    assert_eq!(d.modules["c"].capabilities.topics, vec!["stored"]);
    assert!(d.modules["c"].installed && !d.modules["a"].installed);
}

#[test]
fn config_sections_interpolation_schema_and_fingerprints() {
    let schema = r#"{"type":"object","properties":{"port":{"type":"integer","default":80},"key":{"type":"string"}}}"#;
    let mk = || {
        let mut m = module(
            "web",
            r#"{"id":"web","name":"W","permissions":{},"configKey":"web","configSchema":"s.json","configDependencies":["shared"]}"#,
        );
        m.schema = Some(("s.json", schema));
        m
    };
    let cfg = "web:\n  key: ${API_KEY}\nshared:\n  a: 1\n";
    let d1 = build(&[mk()], "", cfg);
    let web = &d1.modules["web"];
    assert_eq!(
        web.config_section,
        Some(serde_json::json!({"key": "k", "port": 80}))
    );
    assert_eq!(web.config_text["web"], "key: ${API_KEY}\n");
    assert_eq!(web.config_text["shared"], "a: 1\n");
    assert!(web.notes.is_empty(), "{:?}", web.notes);

    // same input → same fingerprints
    let again = build(&[mk()], "", cfg);
    assert_eq!(
        again.modules["web"].spawn_fingerprint,
        web.spawn_fingerprint
    );
    // own section changed → config fingerprint only
    let d2 = build(&[mk()], "", "web:\n  key: x\nshared:\n  a: 1\n");
    assert_eq!(d2.modules["web"].spawn_fingerprint, web.spawn_fingerprint);
    assert_ne!(d2.modules["web"].config_fingerprint, web.config_fingerprint);
    // dependency section changed → spawn fingerprint
    let d3 = build(&[mk()], "", "web:\n  key: ${API_KEY}\nshared:\n  a: 2\n");
    assert_ne!(d3.modules["web"].spawn_fingerprint, web.spawn_fingerprint);
    assert_eq!(d3.modules["web"].config_fingerprint, web.config_fingerprint);
    // key order does not matter
    let d4 = build(&[mk()], "", "shared:\n  a: 1\nweb:\n  key: ${API_KEY}\n");
    assert_eq!(d4.modules["web"].spawn_fingerprint, web.spawn_fingerprint);
    assert_eq!(d4.modules["web"].config_fingerprint, web.config_fingerprint);

    // invalid section with a previous module: kept; without: blocked
    let bad = "web:\n  port: nope\n";
    let snap = snapshot(&[mk()], &approve_all(&[mk()], ""), bad);
    let kept = build_desired(&snap, Some(&d1));
    assert_eq!(
        kept.modules["web"].config_fingerprint,
        web.config_fingerprint
    );
    assert_eq!(kept.errors.len(), 1);
    let fresh = build_desired(&snap, None);
    assert!(matches!(
        fresh.blocked[0].reason,
        BlockReason::InvalidConfig { .. }
    ));
}

#[test]
fn ts_schema_is_a_note_and_kernel_section_key_blocks() {
    let mut m = module(
        "a",
        r#"{"id":"a","name":"A","permissions":{},"configKey":"a","configSchema":"s.ts"}"#,
    );
    m.schema = Some(("s.ts", "export default {}"));
    let k = module(
        "k",
        r#"{"id":"k","name":"K","permissions":{},"configKey":"security"}"#,
    );
    let d = build(&[m, k], "", "a: {x: 1}\n");
    assert!(d.modules["a"].notes[0].contains("unsupported"));
    assert_eq!(
        d.modules["a"].config_section,
        Some(serde_json::json!({"x": 1}))
    );
    assert!(matches!(
        d.blocked[0].reason,
        BlockReason::InvalidConfig { .. }
    ));
}

#[test]
fn unparseable_permissions_fail_closed_without_previous() {
    let m = module("a", r#"{"id":"a","name":"A","permissions":{}}"#);
    let snap = snapshot(&[m], "modules: [\n", "");
    let d = build_desired(&snap, None);
    assert!(d.modules.is_empty());
    assert_eq!(d.errors.len(), 1);
    assert!(d.errors[0].file.ends_with("permissions.yaml"));
    assert!(matches!(
        d.blocked[0].reason,
        BlockReason::NotApproved { .. }
    ));
}

#[test]
fn unreadable_approval_entry() {
    let m = module("a", r#"{"id":"a","name":"A","permissions":{}}"#);
    let snap = snapshot(&[m], "modules:\n  a:\n    base: {ffi: []}\n", "");
    let d = build_desired(&snap, None);
    let r = d.blocked[0].reason.to_string();
    assert!(r.contains("cannot be read") && r.contains("ffi"), "{r}");
}

#[test]
fn shutdown_tiers_of_desired() {
    let db = module(
        "db",
        r#"{"id":"db","name":"D","permissions":{},"provides":["db"]}"#,
    );
    let api = module(
        "api",
        r#"{"id":"api","name":"A","permissions":{},"provides":["api"],"requires":["db"]}"#,
    );
    let ui = module(
        "ui",
        r#"{"id":"ui","name":"U","permissions":{},"requires":["api"]}"#,
    );
    let d = build(&[db, api, ui], "", "");
    assert_eq!(d.order, vec!["db", "api", "ui"]);
    assert_eq!(
        graph::desired_tiers(&d),
        vec![
            vec!["ui".to_string()],
            vec!["api".to_string()],
            vec!["db".to_string()]
        ]
    );
}

#[test]
fn disabled_modules_hold_no_services_and_keep_other_reasons() {
    let mods = [
        module(
            "kv",
            r#"{"id":"kv","name":"K","provides":["kv"],"permissions":{}}"#,
        ),
        module(
            "web",
            r#"{"id":"web","name":"W","requires":["kv"],"permissions":{}}"#,
        ),
        module(
            "alt",
            r#"{"id":"alt","name":"A","provides":["kv"],"permissions":{}}"#,
        ),
    ];
    // `alt` is disabled too: a disabled module does not take over a service either.
    let d = build(&mods, "", "kernel:\n  disabled: [kv, alt, gone]\n");
    assert!(d.modules.is_empty(), "{:?}", d.modules.keys());
    let reasons: Vec<(&str, &BlockReason)> = d
        .blocked
        .iter()
        .map(|b| (b.id.as_str(), &b.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("alt", &BlockReason::Disabled),
            ("kv", &BlockReason::Disabled),
            (
                "web",
                &BlockReason::MissingProvider {
                    services: vec!["kv".into()]
                }
            ),
        ]
    );
    assert_eq!(d.blocked[0].reason.to_string(), "disabled in config.yaml");
    assert!(
        d.errors.is_empty(),
        "an unknown id is no error: {:?}",
        d.errors
    );

    // Only `kv` disabled: `alt` provides the service and `web` runs.
    let d = build(&mods, "", "kernel:\n  disabled: [kv]\n");
    assert_eq!(d.order, vec!["alt", "web"]);

    // A module that is not approved stays blocked for that reason when disabled.
    let snap = snapshot(&mods[..1], "modules: {}\n", "kernel:\n  disabled: [kv]\n");
    let d = build_desired(&snap, None);
    assert!(matches!(
        d.blocked[0].reason,
        BlockReason::NotApproved { .. }
    ));
}
