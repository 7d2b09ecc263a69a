//! `pons status` against a real kernel: the sandbox block the kernel keeps per spawn follows a
//! module that is spawned again with other permissions, `--json` is laid out as pretty JSON, and
//! the table (made from the summary answer) still lists every module.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

fn read_paths(m: &Value) -> Vec<String> {
    m["sandbox"]["read"]
        .as_array()
        .unwrap_or_else(|| panic!("no sandbox.read: {m}"))
        .iter()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_sandbox_block_follows_a_respawn_with_new_permissions() {
    let mut home = TestHome::new();
    let (a, b) = (home.path().join("a"), home.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let spec = |dir: &std::path::Path| {
        ModuleSpec::new("m").manifest(json!({"permissions": {"read": [dir.to_string_lossy()]}}))
    };
    home.add(spec(&a));
    home.add(ModuleSpec::new("other"));
    let _k = home.start();
    let first = home.wait_status("m", "ready", T);
    home.wait_status("other", "ready", T);
    let (a, b) = (a.to_string_lossy(), b.to_string_lossy());
    assert!(read_paths(&first).iter().any(|p| *p == a), "{first}");
    assert!(!read_paths(&first).iter().any(|p| *p == b), "{first}");
    // Asked again: the same block (kept, not made anew) for the same process.
    assert_eq!(
        home.module_status("m").unwrap()["sandbox"],
        first["sandbox"]
    );

    // module.json changes and is approved again: the kernel spawns `m` anew.
    home.add(spec(std::path::Path::new(&*b)));
    let again = wait_for("m to run again with read access to b", T, || {
        home.module_status("m").filter(|m| {
            m["status"] == "ready" && m["pid"] != first["pid"] && m["sandbox"].is_object()
        })
    });
    let paths = read_paths(&again);
    assert!(paths.iter().any(|p| *p == b), "{again}");
    assert!(!paths.iter().any(|p| *p == a), "{again}");
    let other = home.module_status("other").unwrap();
    assert!(other["sandbox"].is_object(), "{other}");
}

#[test]
fn json_is_pretty_and_the_table_lists_every_module() {
    let mut home = TestHome::new();
    for id in ["alpha", "beta", "gamma"] {
        home.add(ModuleSpec::new(id).manifest(json!({"provides": [format!("{id}-svc")]})));
    }
    let _k = home.start();
    for id in ["alpha", "beta", "gamma"] {
        home.wait_status(id, "ready", T);
    }
    let out = home.pons(&["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(text, serde_json::to_string_pretty(&v).unwrap() + "\n");
    let modules = v["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 3, "{v}");
    assert!(
        modules.iter().all(|m| m["sandbox"]["read"].is_array()),
        "{v}"
    );

    let out = home.pons(&["status"]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    for id in ["alpha", "beta", "gamma"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
        assert!(
            row.contains(" ready ") && row.contains(&format!("{id}-svc")),
            "{row}"
        );
    }
    assert!(table.contains("SERVICE"), "{table}");
    assert!(table.ends_with("Converged: yes.\n"), "{table}");
}
