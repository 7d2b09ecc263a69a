//! Timing loop for planning 1,000 synthetic modules in memory (the inputs of
//! `benches/pons/plan.rs`, without the file system). Ignored by default; run with
//! `cargo test --release -p pons-reconciler --test perf -- --ignored --nocapture`.
//! The other tests check that reusing the parsed inputs of the previous desired state gives the
//! same result as building from scratch, and that invalid input still keeps the last good value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use pons_reconciler::snapshot::{EntryProbe, FileRead, ModuleDir, Snapshot};
use pons_reconciler::{build_desired, plan, Observed, ObservedModule, PlanOptions, Status};
use serde_json::json;

fn snapshot(n: usize) -> Snapshot {
    let home = PathBuf::from("/tmp/pons-perf-home");
    let mut perms = String::from("modules:\n");
    let mut config = String::from("lifecycle:\n  shutdownGraceMs: 1000\n");
    let mut modules = Vec::new();
    for i in 0..n {
        let id = format!("mod{i:04}");
        let dir = home.join("modules").join(&id);
        let mut manifest = json!({
            "id": id, "name": format!("synthetic {id}"), "version": "1.0.0",
            "runtime": "binary", "entrypoint": "run", "priority": i % 7,
            "configKey": id, "provides": [format!("svc{i}")],
            "subscribes": ["bench:*"], "publishes": [format!("bench:{id}")],
            "permissions": {"read": [dir.to_string_lossy()], "env": ["LANG"]},
        });
        if i % 10 != 0 {
            manifest["requires"] = json!([format!("svc{}", i - 1)]);
        }
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        let hash = pons_reconciler::manifest::hash(&bytes);
        let caps = json!({"topics": manifest["subscribes"].as_array().into_iter().flatten()
                              .chain(manifest["publishes"].as_array().into_iter().flatten())
                              .collect::<Vec<_>>(),
                          "services": manifest.get("requires").cloned().unwrap_or(json!([]))});
        perms.push_str(&format!(
            "  {id}:\n    base:\n      net: []\n      read: [{:?}]\n      write: []\n      env: [LANG]\n      run: []\n      sys: []\n    baseManifestHash: {hash}\n    baseGrantedAt: 2026-01-01T00:00:00.000Z\n    dynamic: []\n    pending: []\n    denied: []\n    capabilities: {caps}\n",
            dir.to_string_lossy()
        ));
        config.push_str(&format!(
            "{id}:\n  port: {}\n  name: \"{id}\"\n  tags: [a, b]\n",
            8000 + i
        ));
        modules.push(ModuleDir {
            dir_name: id.clone(),
            path: dir.clone(),
            real_path: Some(dir.clone()),
            is_symlink: false,
            is_dir: true,
            manifest: FileRead::Bytes(bytes),
            entry: Some(EntryProbe {
                requested: "run".into(),
                real: Some(dir.join("run")),
                js_sibling: None,
            }),
            deno_json: FileRead::Missing,
            deno_jsonc: FileRead::Missing,
            schema: None,
        });
    }
    let env: BTreeMap<String, String> = [("HOME", "/root"), ("PATH", "/usr/bin"), ("LANG", "C")]
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect();
    Snapshot {
        home,
        home_real: None,
        env,
        config_yaml: FileRead::Bytes(config.into_bytes()),
        permissions_yaml: FileRead::Bytes(perms.into_bytes()),
        home_deno_json: FileRead::Missing,
        home_deno_jsonc: FileRead::Missing,
        modules,
        which: BTreeMap::new(),
        landlock_abi: Some(4),
        down: Default::default(),
        host_name: String::new(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn reuse_gives_the_same_desired_state() {
    let snap = snapshot(50);
    let fresh = build_desired(&snap, None);
    assert_eq!(fresh.modules.len(), 50, "{:?}", fresh.blocked.first());
    let again = build_desired(&snap, Some(&fresh));
    assert_eq!(again, fresh);
    let third = build_desired(&snap, Some(&again));
    assert_eq!(third, fresh);
}

#[test]
fn broken_inputs_keep_the_last_good_value_across_reuse() {
    let good = snapshot(20);
    let first = build_desired(&good, None);
    let mut broken = good.clone();
    broken.permissions_yaml = FileRead::Bytes(b"modules: [\n".to_vec());
    broken.config_yaml = FileRead::Bytes(b"a: 1\na: 2\n".to_vec());
    let kept = build_desired(&broken, Some(&first));
    assert_eq!(kept.errors.len(), 2, "{:?}", kept.errors);
    assert_eq!(kept.permissions, first.permissions);
    assert_eq!(kept.config_raw, first.config_raw);
    assert_eq!(kept.modules, first.modules);
    // Broken again: still reported (never taken from the cache), still the last good values.
    let again = build_desired(&broken, Some(&kept));
    assert_eq!(again.errors, kept.errors);
    assert_eq!(again.modules, first.modules);
    // Good bytes again: the same state as from scratch, without errors.
    assert_eq!(build_desired(&good, Some(&again)), first);
}

#[test]
fn changed_bytes_are_parsed_again() {
    let snap = snapshot(20);
    let first = build_desired(&snap, None);
    let mut changed = snap.clone();
    let FileRead::Bytes(cfg) = &mut changed.config_yaml else {
        unreachable!()
    };
    cfg.extend_from_slice(b"mod0003:\n  port: 1\n".as_slice());
    let cfg = String::from_utf8(cfg.clone()).unwrap().replacen(
        "mod0003:\n  port: 8003\n  name: \"mod0003\"\n  tags: [a, b]\n",
        "",
        1,
    );
    changed.config_yaml = FileRead::Bytes(cfg.into_bytes());
    changed.modules[4].manifest = FileRead::Bytes(b"{not json".to_vec());
    let next = build_desired(&changed, Some(&first));
    assert_eq!(next.modules["mod0004"], first.modules["mod0004"]);
    assert_eq!(
        next.modules["mod0003"].config_section,
        Some(json!({"port": 1}))
    );
    assert!(next
        .errors
        .iter()
        .any(|e| e.file.ends_with("mod0004/module.json")));
    assert_ne!(next.digests.config, first.digests.config);
    assert_eq!(next.digests.permissions, first.digests.permissions);
}

#[test]
#[ignore]
fn plan_1000_modules() {
    let snap = snapshot(1000);
    let desired = build_desired(&snap, None);
    assert_eq!(desired.modules.len(), 1000, "{:?}", desired.blocked.first());
    let converged = Observed {
        kernel_running: true,
        modules: desired
            .modules
            .iter()
            .map(|(id, m)| (id.clone(), ObservedModule::applied(m, Status::Ready)))
            .collect(),
        ..Observed::default()
    };
    let empty = Observed {
        kernel_running: true,
        ..Observed::default()
    };
    let (mut scratch, mut cold, mut steady) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..20 {
        let t = Instant::now();
        let d = build_desired(&snap, None);
        let p = plan(&d, &empty, PlanOptions::default());
        scratch.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(p.summary().spawn, 1000);

        let t = Instant::now();
        let d = build_desired(&snap, Some(&desired));
        let p = plan(&d, &empty, PlanOptions::default());
        cold.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(p.summary().spawn, 1000);

        let t = Instant::now();
        let d = build_desired(&snap, Some(&desired));
        let p = plan(&d, &converged, PlanOptions::default());
        steady.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(p.actions.len(), 0);
    }
    println!(
        "from scratch {:.2} ms, all to spawn (with previous) {:.2} ms, converged {:.2} ms",
        median(scratch),
        median(cold),
        median(steady)
    );
}
