//! Golden reconcile cases from `specs/reconcile/<case>/` (see specs/reconcile/README.md):
//! `before/` (optional home: every runnable module of it is observed running, ready, as
//! applied), `after/` (the home to plan), optional `observed.json` (status, restarts and reason overrides),
//! `options.json` (`retryCrashed`) and `env.json` (environment / `which` / Landlock overrides); the plan
//! must equal `expected.txt` and `expected.json`. `UPDATE_GOLDEN=1` rewrites the expectations
//! (never when `CI` is set). Each case also checks that applying its plan converges: planning
//! again after a simulated apply has no changes, and neither has the kernel's next pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pons_reconciler::build_desired;
use pons_reconciler::desired::Desired;
use pons_reconciler::manifest;
use pons_reconciler::observed::{Observed, ObservedCluster, ObservedModule, Status};
use pons_reconciler::plan::{plan, ActionKind, Plan, PlanOptions};
use pons_reconciler::render::{plan_json, plan_text};
use pons_reconciler::snapshot::{EntryProbe, FileRead, ModuleDir, SchemaProbe, Snapshot};
use pons_reconciler::spawn::normalize;

/// The home every fixture pretends to live in.
const VHOME: &str = "/pons-home";

fn read(p: &Path) -> FileRead {
    match std::fs::read(p) {
        Ok(b) => FileRead::Bytes(b),
        Err(_) => FileRead::Missing,
    }
}

fn default_env() -> BTreeMap<String, String> {
    [
        ("HOME", "/home/op"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("TERM", "xterm"),
        ("API_TOKEN", "s3cret-token"),
        ("AWS_SECRET", "never-passed"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn default_which() -> BTreeMap<String, Option<PathBuf>> {
    [
        ("deno", Some("/usr/local/bin/deno")),
        ("node", Some("/usr/bin/node")),
        ("bun", None),
        ("python", None),
        ("python3", Some("/usr/bin/python3")),
        ("php", None),
        ("git", Some("/usr/bin/git")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.map(PathBuf::from)))
    .collect()
}

/// Replaces `HASH(dir)` with the real hash of `modules/<dir>/module.json` of the same tree, and
/// `HASH(before:dir)` with the hash of that file in the case's `before/` tree.
fn substitute_hashes(text: &str, tree: &Path) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("HASH(") {
        out.push_str(&rest[..i]);
        let t = &rest[i + 5..];
        let end = t.find(')').expect("HASH( without )");
        let (tree, dir) = match t[..end].strip_prefix("before:") {
            Some(d) => (tree.parent().expect("case dir").join("before"), d),
            None => (tree.to_path_buf(), &t[..end]),
        };
        let bytes = std::fs::read(tree.join("modules").join(dir).join("module.json"))
            .unwrap_or_else(|_| panic!("HASH({dir}): no module.json in {}", tree.display()));
        out.push_str(&manifest::hash(&bytes));
        rest = &t[end + 1..];
    }
    out.push_str(rest);
    out
}

fn snapshot_of(tree: &Path, case: &Path) -> Snapshot {
    let home = PathBuf::from(VHOME);
    let mut env = default_env();
    let mut which = default_which();
    let mut landlock_abi = Some(7);
    if let Ok(text) = std::fs::read_to_string(case.join("env.json")) {
        let v: serde_json::Value = serde_json::from_str(&text).expect("env.json");
        if let Some(abi) = v.get("landlockAbi") {
            landlock_abi = abi.as_u64().map(|a| a as u32);
        }
        for (k, val) in v["env"].as_object().into_iter().flatten() {
            match val.as_str() {
                Some(s) => env.insert(k.clone(), s.to_string()),
                None => env.remove(k),
            };
        }
        for (k, val) in v["which"].as_object().into_iter().flatten() {
            which.insert(k.clone(), val.as_str().map(PathBuf::from));
        }
    }
    let permissions_yaml = match std::fs::read_to_string(tree.join("permissions.yaml")) {
        Ok(t) => FileRead::Bytes(substitute_hashes(&t, tree).into_bytes()),
        Err(_) => FileRead::Missing,
    };
    let mut modules = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(tree.join("modules"))
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let fixture = e.path();
        let vpath = home.join("modules").join(&name);
        let is_dir = fixture.is_dir();
        let manifest_read = if is_dir {
            read(&fixture.join("module.json"))
        } else {
            FileRead::Missing
        };
        let mut entry = None;
        let mut schema = None;
        if let FileRead::Bytes(b) = &manifest_read {
            if let Ok(m) = manifest::parse(b) {
                let requested = manifest::entry_request(&m);
                let exists = |rel: &str| fixture.join(rel).is_file();
                let real = exists(&requested).then(|| normalize(&vpath.join(&requested)));
                let js_rel = requested.strip_suffix(".ts").map(|s| format!("{s}.js"));
                let js_sibling = js_rel
                    .filter(|js| exists(js))
                    .map(|js| normalize(&vpath.join(js)));
                entry = Some(EntryProbe {
                    requested,
                    real,
                    js_sibling,
                });
                if let Some(s) = &m.config_schema {
                    let f = fixture.join(s);
                    schema = Some(SchemaProbe {
                        requested: s.clone(),
                        real: f.is_file().then(|| normalize(&vpath.join(s))),
                        bytes: if s.ends_with(".json") {
                            read(&f)
                        } else {
                            FileRead::Missing
                        },
                    });
                }
            }
        }
        modules.push(ModuleDir {
            dir_name: name,
            path: vpath.clone(),
            real_path: Some(vpath),
            is_symlink: false,
            is_dir,
            manifest: manifest_read,
            entry,
            deno_json: if is_dir {
                read(&fixture.join("deno.json"))
            } else {
                FileRead::Missing
            },
            deno_jsonc: if is_dir {
                read(&fixture.join("deno.jsonc"))
            } else {
                FileRead::Missing
            },
            schema,
        });
    }
    Snapshot {
        home,
        home_real: None,
        env,
        config_yaml: read(&tree.join("config.yaml")),
        permissions_yaml,
        home_deno_json: read(&tree.join("deno.json")),
        home_deno_jsonc: read(&tree.join("deno.jsonc")),
        modules,
        which,
        landlock_abi,
        down: Default::default(),
        host_name: String::new(),
    }
}

fn observed_of(before: Option<&Desired>, case: &Path) -> Observed {
    let mut obs = Observed::default();
    if let Some(d) = before {
        obs.kernel_running = true;
        obs.cluster = d.cluster.as_ref().map(ObservedCluster::applied);
        for (i, id) in d.order.iter().enumerate() {
            let mut o = ObservedModule::applied(&d.modules[id], Status::Ready);
            o.pid = Some(1000 + i as u32);
            obs.modules.insert(id.clone(), o);
        }
        // As the kernel: the modules its last pass blocked, with their token.
        for b in &d.blocked {
            if !obs.modules.contains_key(&b.id) {
                obs.modules
                    .insert(b.id.clone(), ObservedModule::blocked(&b.reason));
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(case.join("observed.json")) {
        let v: serde_json::Value = serde_json::from_str(&text).expect("observed.json");
        if let Some(k) = v["kernelRunning"].as_bool() {
            obs.kernel_running = k;
        }
        for (id, o) in v["modules"].as_object().into_iter().flatten() {
            if o["remove"].as_bool() == Some(true) {
                obs.modules.remove(id);
                continue;
            }
            let m = obs.modules.entry(id.clone()).or_default();
            if let Some(s) = o.get("status") {
                m.status = serde_json::from_value(s.clone()).expect("status");
            }
            if let Some(r) = o["restarts"].as_u64() {
                m.restarts = r as u32;
            }
            if let Some(r) = o["reason"].as_str() {
                m.reason = Some(r.to_string());
            }
        }
    }
    obs
}

/// What the supervisor would observe after applying `p` successfully.
fn simulate_apply(desired: &Desired, observed: &Observed, p: &Plan) -> Observed {
    let mut next = observed.clone();
    next.kernel_running = true;
    for a in &p.actions {
        match a.action {
            ActionKind::Stop => {
                next.modules.remove(&a.module);
            }
            ActionKind::Spawn | ActionKind::Restart | ActionKind::Config => {
                let m = &desired.modules[&a.module];
                next.modules
                    .insert(a.module.clone(), ObservedModule::applied(m, Status::Ready));
            }
            ActionKind::Cluster => {
                next.cluster = desired.cluster.as_ref().map(ObservedCluster::applied);
            }
            ActionKind::Blocked => {}
        }
    }
    next
}

fn run_case(case: &Path) -> Result<(), String> {
    let before = case.join("before");
    let before_desired = before
        .is_dir()
        .then(|| build_desired(&snapshot_of(&before, case), None));
    let observed = observed_of(before_desired.as_ref(), case);
    let mut after_snapshot = snapshot_of(&case.join("after"), case);
    after_snapshot.down = observed
        .modules
        .iter()
        .filter(|(_, o)| matches!(o.status, Some(Status::Crashed | Status::Stopped)))
        .map(|(id, _)| id.clone())
        .collect();
    let after = build_desired(&after_snapshot, before_desired.as_ref());
    let mut opts = PlanOptions::default();
    if let Ok(text) = std::fs::read_to_string(case.join("options.json")) {
        let v: serde_json::Value = serde_json::from_str(&text).expect("options.json");
        opts.retry_crashed = v["retryCrashed"].as_bool().unwrap_or(false);
    }
    let p = plan(&after, &observed, opts);
    let text = plan_text(&p, &after, observed.kernel_running);
    let json =
        serde_json::to_string_pretty(&plan_json(&p, observed.kernel_running)).expect("json") + "\n";

    // Applying the plan converges.
    let applied = simulate_apply(&after, &observed, &p);
    let again = plan(&after, &applied, PlanOptions::default());
    if again.has_changes() {
        return Err(format!(
            "{}: the plan does not converge; after applying it the next plan is:\n{:#?}",
            case.display(),
            again.actions
        ));
    }
    // …and the kernel's next pass over the same files is idle (this desired state as the
    // previous one, the modules the apply left down as `down`).
    let mut next_snapshot = after_snapshot.clone();
    next_snapshot.down = applied
        .modules
        .iter()
        .filter(|(_, o)| matches!(o.status, Some(Status::Crashed | Status::Stopped)))
        .map(|(id, _)| id.clone())
        .collect();
    let next = build_desired(&next_snapshot, Some(&after));
    let next_plan = plan(&next, &applied, PlanOptions::default());
    if next_plan.has_changes() {
        return Err(format!(
            "{}: the next pass after applying the plan is not idle:\n{:#?}",
            case.display(),
            next_plan.actions
        ));
    }

    let update = std::env::var_os("UPDATE_GOLDEN").is_some() && std::env::var_os("CI").is_none();
    let mut problems = Vec::new();
    for (file, got) in [("expected.txt", &text), ("expected.json", &json)] {
        let path = case.join(file);
        if update {
            std::fs::write(&path, got).map_err(|e| e.to_string())?;
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if &want != got {
            problems.push(format!(
                "{}:\n--- expected\n{want}\n+++ got\n{got}",
                path.display()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn golden_reconcile_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/reconcile");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("specs/reconcile")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("after").is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "only {} golden cases", cases.len());
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed (UPDATE_GOLDEN=1 rewrites them):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
