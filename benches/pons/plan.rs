//! Planning 1,000 synthetic modules (and any number, for the `scale` benchmark): the pure part of a pass (`build_desired` + `plan`) on a
//! snapshot held in memory. The snapshot is read once from a generated home (so every probe is
//! what the kernel would see); only the pure calls are timed. In process, one thread: no
//! placement to vary.
//!
//! Two figures: from nothing running (1,000 spawns) and converged (observed == desired, the
//! plan of every periodic pass). The 1,000 modules have a config section each, and every tenth
//! starts a chain of nine providers/requirers, so the graph is not trivial.

use std::collections::BTreeMap;
use std::time::Instant;

use pons::home::Home;
use pons_reconciler::{build_desired, plan, Observed, ObservedModule, PlanOptions, Status};
use serde_json::json;

use crate::report::{quantile, Figure, Target};
use crate::Opts;

const MODULES: usize = 1_000;

/// Plan times of one home: from nothing running and converged, ms per iteration.
pub struct PlanTimes {
    pub cold_ms: Vec<f64>,
    pub converged_ms: Vec<f64>,
    pub spawn_actions: usize,
    pub converged_actions: usize,
}

/// Generates a home of `modules` synthetic modules and times `iters` plans of each kind.
pub fn measure(modules: usize, iters: usize) -> PlanTimes {
    let home = tempfile::Builder::new()
        .prefix("pons-bench-plan-")
        .tempdir()
        .expect("temporary home");
    write_home(home.path(), modules);
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let snap = pons::snapshot_io::read_snapshot(&Home::new(home.path()), &env);

    let desired = build_desired(&snap, None);
    assert_eq!(
        desired.modules.len(),
        modules,
        "every synthetic module is runnable: {:?}",
        desired.blocked.first()
    );
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

    let mut t = PlanTimes {
        cold_ms: Vec::new(),
        converged_ms: Vec::new(),
        spawn_actions: 0,
        converged_actions: 0,
    };
    for _ in 0..iters {
        let start = Instant::now();
        let d = build_desired(&snap, Some(&desired));
        let p = plan(&d, &empty, PlanOptions::default());
        t.cold_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        t.spawn_actions = p.summary().spawn;

        let start = Instant::now();
        let d = build_desired(&snap, Some(&desired));
        let p = plan(&d, &converged, PlanOptions::default());
        t.converged_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        t.converged_actions = p.actions.len();
    }
    t
}

pub fn run(opts: &Opts) -> Vec<Figure> {
    let iters = if opts.quick { 5 } else { 20 };
    let mut t = measure(MODULES, iters);
    let details = json!({"modules": MODULES, "iterations": iters,
                         "spawnActions": t.spawn_actions,
                         "convergedActions": t.converged_actions,
                         "minMs": {"cold": quantile(&mut t.cold_ms.clone(), 0.0),
                                   "converged": quantile(&mut t.converged_ms.clone(), 0.0)}});
    vec![
        Figure::single(
            "plan",
            format!("build_desired + plan, {MODULES} modules, all to spawn (p50)"),
            "ms",
            quantile(&mut t.cold_ms, 0.5),
            Some(Target::AtMost(20.0)),
            details,
        ),
        Figure::single(
            "plan",
            format!("build_desired + plan, {MODULES} modules, converged (p50)"),
            "ms",
            quantile(&mut t.converged_ms, 0.5),
            Some(Target::AtMost(20.0)),
            serde_json::Value::Null,
        ),
    ]
}

/// `modules` approved modules with an entry file, a config section each, and provider chains.
fn write_home(root: &std::path::Path, modules: usize) {
    let mut perms = String::from("modules:\n");
    let mut config = String::from("lifecycle:\n  shutdownGraceMs: 1000\n");
    for i in 0..modules {
        let id = format!("mod{i:04}");
        let dir = root.join("modules").join(&id);
        std::fs::create_dir_all(&dir).expect("module dir");
        let entry = dir.join("run");
        std::fs::write(&entry, "#!/bin/sh\n").expect("entry");
        let exec = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
        std::fs::set_permissions(&entry, exec).expect("chmod entry");
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
        let bytes = serde_json::to_vec_pretty(&manifest).expect("json");
        std::fs::write(dir.join("module.json"), &bytes).expect("module.json");
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
    }
    std::fs::write(root.join("permissions.yaml"), perms).expect("permissions.yaml");
    std::fs::write(root.join("config.yaml"), config).expect("config.yaml");
}
