//! Issue 5 acceptance: config.yaml and permissions.yaml are first-class — schema-validated
//! sections with defaults, `${VAR}` interpolation that never leaks, `config.set`, runtime
//! permission requests, the approval workflow and the CLI, all against the real binary.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

const PORT_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "host": {"type": "string", "default": "localhost"},
    "port": {"type": "integer", "minimum": 1, "default": 8080},
    "token": {"type": "string"},
    "n": {"type": "integer"}
  }
}"#;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pid_of(home: &TestHome, id: &str) -> u64 {
    home.module_status(id)
        .and_then(|m| m["pid"].as_u64())
        .unwrap_or_else(|| panic!("{id} has a pid"))
}

fn received_of(home: &TestHome, id: &str, ty: &str) -> Vec<Value> {
    home.received(id)
        .into_iter()
        .filter(|m| m["type"] == ty)
        .collect()
}

/// A module with `configKey: k` and the port schema.
fn schema_module(home: &mut TestHome, id: &str) {
    home.add(
        ModuleSpec::new(id).manifest(json!({"configKey": "k", "configSchema": "schema.json"})),
    );
    std::fs::write(
        home.path().join("modules").join(id).join("schema.json"),
        PORT_SCHEMA,
    )
    .unwrap();
}

/// Makes a kernel call through the module's control file and waits for its result (calls are
/// made one at a time, so the next `call_result` from the control file is this one's).
fn call(home: &TestHome, id: &str, method: &str, params: Value) -> Value {
    let results = |h: &TestHome| -> Vec<Value> {
        h.events(id)
            .into_iter()
            .filter(|e| e["event"] == "call_result" && e["source"] == "control")
            .collect()
    };
    let before = results(home).len();
    home.command(id, json!({"call": {"method": method, "params": params}}));
    wait_for(&format!("{id}: result of {method}"), T, || {
        results(home).get(before).cloned()
    })
}

fn permissions_yaml(home: &TestHome) -> String {
    std::fs::read_to_string(home.path().join("permissions.yaml")).unwrap()
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn schema_defaults_are_filled_into_init() {
    let mut home = TestHome::new();
    home.write_config(&format!(
        "{FAST_LIFECYCLE}k:\n  host: example.org\n  n: \"7\"\n"
    ));
    schema_module(&mut home, "m");
    let _k = home.start();
    let init = home.wait_received("m", "init", T);
    // Defaults filled, "7" coerced to the integer the schema names (compat §10 item 111).
    assert_eq!(
        init["config"],
        json!({"k": {"host": "example.org", "port": 8080, "n": 7}})
    );
    home.wait_status("m", "ready", T);
}

#[test]
fn invalid_section_keeps_the_running_module_and_is_reported() {
    let mut home = TestHome::new();
    home.write_config(&format!("{FAST_LIFECYCLE}k:\n  port: 9000\n"));
    schema_module(&mut home, "m");
    let _k = home.start();
    home.wait_status("m", "ready", T);
    let pid = pid_of(&home, "m");
    home.write_config(&format!("{FAST_LIFECYCLE}k:\n  port: abc\n"));
    let plan = wait_for("plan to report the schema error", T, || {
        let out = home.pons(&["plan"]);
        let t = text(&out);
        t.contains("expected integer").then_some(t)
    });
    assert!(plan.contains("/port"), "the JSON pointer is shown: {plan}");
    assert!(plan.contains("\"abc\""), "what was found is shown: {plan}");
    let status = home.status();
    assert!(
        status["errors"].to_string().contains("expected integer"),
        "status reports it too: {status}"
    );
    assert_eq!(pid_of(&home, "m"), pid, "the module keeps running");
    assert_eq!(home.module_status("m").unwrap()["status"], "ready");
    assert!(
        received_of(&home, "m", "config:update").is_empty(),
        "nothing pushed"
    );
    // Fixing the section pushes the good value.
    home.write_config(&format!("{FAST_LIFECYCLE}k:\n  port: 9001\n"));
    let upd = wait_for("config:update", T, || {
        received_of(&home, "m", "config:update").pop()
    });
    assert_eq!(upd["config"]["k"]["port"], 9001);
    assert_eq!(pid_of(&home, "m"), pid);
}

#[test]
fn invalid_section_blocks_a_module_before_its_first_start() {
    let mut home = TestHome::new();
    home.write_config("k:\n  port: 0\n");
    schema_module(&mut home, "m");
    let out = home.pons(&["status", "--json"]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = s["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "m")
        .cloned()
        .unwrap();
    assert_eq!(m["status"], "blocked", "{s}");
    assert!(
        m["reason"]
            .as_str()
            .unwrap()
            .contains("/port: expected at least 1, found 0"),
        "{m}"
    );
}

#[test]
fn interpolated_values_reach_the_module_but_are_never_printed() {
    let mut home = TestHome::new();
    home.write_config(&format!(
        "{FAST_LIFECYCLE}k:\n  token: ${{CP_SECRET}}\n  host: ${{CP_UNSET:-fallback}}\n  n: 1\n"
    ));
    schema_module(&mut home, "m");
    let secret = "s3cr3t-value-42";
    let _k = home.start_with(&["--manual"], &[("CP_SECRET", secret)]);
    let init = home.wait_received("m", "init", T);
    assert_eq!(init["config"]["k"]["token"], secret);
    assert_eq!(init["config"]["k"]["host"], "fallback");
    home.wait_status("m", "ready", T);
    home.write_config(&format!(
        "{FAST_LIFECYCLE}k:\n  token: ${{CP_SECRET}}\n  host: ${{CP_UNSET:-fallback}}\n  n: 2\n"
    ));
    let plan = wait_for("plan to show the pending change", T, || {
        let out = home.pons(&["plan", "--detailed-exitcode"]);
        (out.status.code() == Some(2)).then(|| text(&out))
    });
    assert!(
        plan.contains("${CP_SECRET}"),
        "the diff shows the text as written: {plan}"
    );
    assert!(!plan.contains(secret), "the value never appears: {plan}");
    let json_plan = text(&home.pons(&["plan", "--json"]));
    assert!(
        json_plan.contains("${CP_SECRET}") && !json_plan.contains(secret),
        "{json_plan}"
    );
    assert!(!home.status().to_string().contains(secret));
    let out = home.pons(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let upd = wait_for("config:update", T, || {
        received_of(&home, "m", "config:update").pop()
    });
    assert_eq!(upd["config"]["k"]["token"], secret);
    assert_eq!(upd["config"]["k"]["n"], 2);
    assert!(
        !home.kernel_log().contains(secret),
        "the kernel log never holds the value"
    );
    // `config get` prints the file as written.
    let out = home.pons(&["config", "get", "k.token"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "${CP_SECRET}");
}

#[test]
fn unset_variable_blocks_the_module_with_its_name() {
    let mut home = TestHome::new();
    home.write_config("k:\n  token: ${CP_NOT_SET_ANYWHERE}\n");
    schema_module(&mut home, "m");
    let out = home.pons(&["plan"]);
    let t = text(&out);
    assert!(t.contains("`${CP_NOT_SET_ANYWHERE}` is not set"), "{t}");
    let out = home.pons(&["config", "validate", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["pointer"], "/token", "{v}");
}

#[test]
fn duplicate_yaml_keys_are_rejected_with_line_and_column() {
    let mut home = TestHome::new();
    home.write_config(&format!("{FAST_LIFECYCLE}k:\n  port: 1\n"));
    schema_module(&mut home, "m");
    let _k = home.start();
    home.wait_status("m", "ready", T);
    let pid = pid_of(&home, "m");
    // Line 6, column 3 is the second `port` (FAST_LIFECYCLE has three lines).
    home.write_config(&format!("{FAST_LIFECYCLE}k:\n  port: 1\n  port: 2\n"));
    let status = wait_for("status to report the duplicate key", T, || {
        let s = home.status();
        s["errors"].to_string().contains("duplicate").then_some(s)
    });
    assert!(
        status["errors"].to_string().contains("line 6, column 3"),
        "{status}"
    );
    let plan = text(&home.pons(&["plan"]));
    assert!(plan.contains("line 6, column 3"), "{plan}");
    let out = home.pons(&["config", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("line 6, column 3"), "{}", text(&out));
    // permissions.yaml too: the module keeps its last good approval.
    let perms = permissions_yaml(&home);
    std::fs::write(
        home.path().join("permissions.yaml"),
        format!("{perms}  m:\n    base: {{}}\n"),
    )
    .unwrap();
    wait_for("status to report the permissions.yaml duplicate", T, || {
        let s = home.status();
        let e = s["errors"].to_string();
        (e.contains("permissions.yaml") && e.contains("duplicate")).then_some(())
    });
    assert_eq!(pid_of(&home, "m"), pid, "nothing restarted");
}

#[test]
fn config_set_call_validates_persists_and_notifies_once() {
    let mut home = TestHome::new();
    home.write_config(&format!(
        "# operator comment\n{FAST_LIFECYCLE}k:\n  port: 9000 # the port\nother:\n  x: 1\n"
    ));
    schema_module(&mut home, "m");
    let _k = home.start();
    home.wait_status("m", "ready", T);
    let pid = pid_of(&home, "m");
    let r = call(
        &home,
        "m",
        "config.set",
        json!({"key": "k.port", "value": "9100"}),
    );
    assert_eq!(
        r["result"],
        json!({"success": true, "coerced": 9100}),
        "{r}"
    );
    let cfg = home.path().join("config.yaml");
    let written = std::fs::read_to_string(&cfg).unwrap();
    assert!(written.starts_with("# operator comment\n"), "{written}");
    assert!(written.contains("port: 9100"), "{written}");
    assert!(written.contains("other:\n  x: 1\n"), "{written}");
    assert_eq!(mode(&cfg), 0o600);
    let upd = wait_for("config:update", T, || {
        received_of(&home, "m", "config:update").pop()
    });
    assert_eq!(
        upd["config"],
        json!({"k": {"port": 9100, "host": "localhost"}})
    );
    assert_eq!(upd["changedSections"], json!(["k"]));
    // A value the schema refuses: a result (not an error), the file unchanged.
    let r = call(
        &home,
        "m",
        "config.set",
        json!({"key": "k.port", "value": "abc"}),
    );
    assert_eq!(
        r["result"],
        json!({"success": false, "error": "Validation failed at k/port: expected integer, found \"abc\""}),
        "{r}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), written);
    let r = call(&home, "m", "config.get", json!({"key": "k.port"}));
    assert_eq!(r["result"], 9100);
    // The pass after the watcher saw the file sends nothing more: the owner was notified once.
    let out = home.pons(&["apply", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(received_of(&home, "m", "config:update").len(), 1);
    assert_eq!(pid_of(&home, "m"), pid);
}

#[test]
fn permission_check_request_pending_and_deny() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("m").manifest(json!({"permissions": {"net": ["a.example"]}})));
    home.add(ModuleSpec::new("op").manifest(json!({"subscribes": ["kernel.permissions.pending"]})));
    let _k = home.start();
    home.wait_status("m", "ready", T);
    home.wait_status("op", "ready", T);
    // The kernel records both first spawns in permissions.yaml; only then is the file quiet
    // enough to compare before and after a request.
    wait_for("firstSpawnAt of m and op", T, || {
        (permissions_yaml(&home).matches("firstSpawnAt").count() >= 2).then_some(())
    });

    // Item 70.
    let r = call(
        &home,
        "m",
        "permissions.check",
        json!({"permissions": {"net": ["a.example"]}}),
    );
    assert_eq!(r["result"], json!({"granted": true, "missing": {}}), "{r}");
    // Item 71.
    let before = permissions_yaml(&home);
    let r = call(
        &home,
        "m",
        "permissions.request",
        json!({"permissions": {"net": ["a.example"]}}),
    );
    assert_eq!(r["result"], json!({"granted": true}), "{r}");
    assert_eq!(permissions_yaml(&home), before, "nothing written");
    // Item 72.
    let ask = json!({"permissions": {"net": ["b.example"]}, "reason": "fetch docs"});
    let r = call(&home, "m", "permissions.request", ask.clone());
    assert_eq!(r["result"]["granted"], false, "{r}");
    assert_eq!(r["result"]["pending"], true, "{r}");
    let req = r["result"]["requestId"].as_str().unwrap().to_string();
    assert_eq!(
        uuid::Uuid::parse_str(&req).map(|u| u.get_version_num()),
        Ok(4)
    );
    let on_disk = permissions_yaml(&home);
    assert!(on_disk.contains(&format!("id: {req}")), "{on_disk}");
    assert!(on_disk.contains("reason: fetch docs"), "{on_disk}");
    let r = call(&home, "m", "permissions.request", ask.clone());
    assert_eq!(
        r["result"]["requestId"],
        req.as_str(),
        "the same request: {r}"
    );
    // Item 74.
    let d = wait_for("op to get the announcement", T, || {
        received_of(&home, "op", "deliver")
            .into_iter()
            .find(|d| d["topic"] == "kernel.permissions.pending")
    });
    assert_eq!(
        d["payload"],
        json!({"moduleId": "m", "requestId": req, "permissions": {"net": ["b.example"]}, "reason": "fetch docs"})
    );
    assert_eq!(
        received_of(&home, "op", "deliver").len(),
        1,
        "announced once, not for the repeat"
    );
    home.wait_log("Pending permission request", T);
    // Only the caller's own pending requests.
    let r = call(&home, "m", "permissions.pending", json!({}));
    assert_eq!(r["result"]["m"][0]["id"], req.as_str(), "{r}");
    let r = call(&home, "op", "permissions.pending", json!({}));
    assert_eq!(r["result"], json!({}), "{r}");
    let r = call(&home, "op", "monitor.snapshot", json!({}));
    assert_eq!(r["result"]["pending"], json!({}), "{r}");
    let r = call(
        &home,
        "m",
        "permissions.check",
        json!({"permissions": {"net": ["a.example", "b.example"], "env": ["X"]}}),
    );
    assert_eq!(
        r["result"],
        json!({"granted": false, "missing": {"net": ["b.example"], "env": ["X"]}})
    );
    let r = call(
        &home,
        "m",
        "permissions.check",
        json!({"permissions": {"ffi": []}}),
    );
    assert!(r["error"].as_str().unwrap().contains("ffi"), "{r}");
    // The CLI shows it and denies it by a prefix of its id.
    let out = home.pons(&["permissions", "pending", "--json"]);
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["modules"]["m"][0]["id"], req.as_str());
    let out = home.pons(&["permissions", "deny", "m", &req[..8]]);
    assert!(out.status.success(), "{}", text(&out));
    // Item 73: any denied value is answered without asking again.
    let r = call(
        &home,
        "m",
        "permissions.request",
        json!({"permissions": {"net": ["b.example", "c.example"]}}),
    );
    assert_eq!(
        r["result"],
        json!({"granted": false, "denied": true}),
        "{r}"
    );
    let on_disk = permissions_yaml(&home);
    assert!(!on_disk.contains("c.example"), "no new request: {on_disk}");
    assert!(on_disk.contains("deniedAt"), "{on_disk}");
}

#[test]
fn granted_request_restarts_the_module_with_the_new_environment() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("m"));
    let _k = home.start_with(&[], &[("CP_GRANTED", "hello")]);
    home.wait_status("m", "ready", T);
    let first = home.starts("m");
    assert_eq!(first.len(), 1);
    assert!(
        first[0]["env"].get("CP_GRANTED").is_none(),
        "not granted yet"
    );
    let r = call(
        &home,
        "m",
        "permissions.request",
        json!({"permissions": {"env": ["CP_GRANTED"]}}),
    );
    assert_eq!(r["result"]["pending"], true, "{r}");
    let out = home.pons(&["permissions", "grant", "m"]);
    assert!(out.status.success(), "{}", text(&out));
    let second = wait_for("m restarted", T, || home.starts("m").get(1).cloned());
    assert_eq!(second["env"]["CP_GRANTED"], "hello", "{second}");
    home.wait_status("m", "ready", T);
    let out = home.pons(&["permissions", "list", "m", "--json"]);
    let l: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(l["effective"]["env"], json!(["CP_GRANTED"]), "{l}");
    assert_eq!(l["pending"], json!([]));
    // Asking again is answered at once.
    let r = call(
        &home,
        "m",
        "permissions.request",
        json!({"permissions": {"env": ["CP_GRANTED"]}}),
    );
    assert_eq!(r["result"], json!({"granted": true}));
}

#[test]
fn operator_edits_and_kernel_requests_never_lose_each_other() {
    const N: usize = 12;
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("m"));
    // An approval of a module not installed (yet) for the operator to edit.
    let hosts: Vec<String> = (0..N).map(|i| format!("h{i}.example")).collect();
    let mut perms = permissions_yaml(&home);
    perms.push_str(&format!(
        "  other:\n    base:\n      net: {}\n    baseManifestHash: ''\n",
        serde_json::to_string(&hosts).unwrap()
    ));
    std::fs::write(home.path().join("permissions.yaml"), perms).unwrap();
    let _k = home.start();
    home.wait_status("m", "ready", T);
    // The module fires N requests at once (each call on its own thread) while the operator
    // removes N values, one command each.
    for i in 0..N {
        home.command(
            "m",
            json!({"call": {"method": "permissions.request", "params": {"permissions": {"env": [format!("CP_VAR_{i}")]}}}}),
        );
    }
    for h in &hosts {
        let out = home.pons(&[
            "permissions",
            "revoke",
            "other",
            "--type",
            "net",
            "--value",
            h,
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let results = wait_for("every request answered", T, || {
        let r: Vec<Value> = home
            .events("m")
            .into_iter()
            .filter(|e| e["event"] == "call_result")
            .collect();
        (r.len() == N).then_some(r)
    });
    let mut ids: Vec<String> = results
        .iter()
        .map(|r| {
            r["result"]["requestId"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"))
                .to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N);
    let out = home.pons(&["permissions", "list", "--json"]);
    let l: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pending = l["modules"]["m"]["pending"].as_array().unwrap();
    assert_eq!(pending.len(), N, "every kernel write survived: {l}");
    assert_eq!(
        l["modules"]["other"]["base"].get("net"),
        None,
        "every operator edit survived: {l}"
    );
    // The file keeps the compat layout: base with all six keys.
    let on_disk = permissions_yaml(&home);
    assert!(
        on_disk.contains("      net: []\n") || on_disk.contains("      net: []\r\n"),
        "{on_disk}"
    );
    assert_eq!(mode(&home.path().join("permissions.yaml")), 0o600);
}

/// A module directory outside `modules/` (what `pons modules install` takes).
fn outside_module(home: &mut TestHome, id: &str) -> std::path::PathBuf {
    home.add(ModuleSpec::new(id).unapproved());
    let dest = home.path().join("src").join(id);
    std::fs::create_dir_all(home.path().join("src")).unwrap();
    std::fs::rename(home.path().join("modules").join(id), &dest).unwrap();
    dest
}

#[test]
fn install_approve_list_uninstall_drive_the_running_kernel() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("late").unapproved());
    let src = outside_module(&mut home, "ext");
    std::fs::write(src.join("helper.ts"), "import fs from \"node:fs\";\n").unwrap();
    let _k = home.start();
    let s = home.wait_status("late", "blocked", T);
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("pons modules approve late"),
        "{s}"
    );

    // approve: no signal, the watcher sees the file.
    let out = home.pons(&["modules", "approve", "late", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    home.wait_status("late", "ready", T);
    let on_disk = permissions_yaml(&home);
    let entry: Value = serde_json::to_value(
        pons_reconciler::permissions::parse(on_disk.as_bytes())
            .unwrap()
            .modules["late"]
            .clone(),
    )
    .unwrap();
    assert_eq!(entry["baseManifestHash"].as_str().unwrap().len(), 64);
    assert!(
        on_disk.contains("  late:\n    base:\n      net: []\n      read:"),
        "{on_disk}"
    );
    for key in ["write:", "env: []", "run: []", "sys: []"] {
        assert!(on_disk.contains(key), "{key} in {on_disk}");
    }
    let out = home.pons(&["modules", "approve", "late", "--yes"]);
    assert!(
        text(&out).contains("already approved and up to date"),
        "{}",
        text(&out)
    );

    // install: link, audit, permissions and capabilities printed, approved, spawned.
    let out = home.pons(&["modules", "install", src.to_str().unwrap(), "--yes"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("⚠ Sandbox notice") && t.contains("node:fs"),
        "{t}"
    );
    assert!(
        t.contains("Permissions requested:") && t.contains("Capabilities:"),
        "{t}"
    );
    let link = home.path().join("modules/ext");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    home.wait_status("ext", "ready", T);

    // list: approved, hash ok, what it may touch.
    let out = home.pons(&["modules", "list", "--json"]);
    let l: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ext = l["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "ext")
        .unwrap();
    assert_eq!(ext["approved"], true);
    assert_eq!(ext["hashOk"], true);
    assert_eq!(ext["linked"], true);
    assert_eq!(ext["blocked"], Value::Null);
    let rec = home.path().join("rec").to_string_lossy().into_owned();
    assert!(ext["sandbox"]["write"].to_string().contains(&rec), "{ext}");
    assert!(ext["sandbox"]["env"].as_array().is_some(), "{ext}");
    let human = text(&home.pons(&["modules", "list"]));
    assert!(human.contains("Module `ext` may"), "{human}");

    // A tampered manifest is blocked with the way out.
    let mj = src.join("module.json");
    let mut bytes = std::fs::read(&mj).unwrap();
    bytes.push(b' ');
    std::fs::write(&mj, bytes).unwrap();
    let s = home.wait_status("ext", "blocked", T);
    assert!(
        s["reason"].as_str().unwrap().contains("approve again"),
        "{s}"
    );
    let out = home.pons(&["modules", "list", "--json"]);
    let l: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ext = l["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "ext")
        .unwrap();
    assert_eq!(ext["hashOk"], false, "{ext}");
    assert!(ext["blocked"].as_str().unwrap().contains("hash"), "{ext}");
    let out = home.pons(&["modules", "approve", "ext", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    home.wait_status("ext", "ready", T);

    // uninstall: the link goes, the source stays, the kernel stops it.
    let pid = pid_of(&home, "ext") as i64;
    let out = home.pons(&["modules", "uninstall", "ext"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(mj.exists(), "a linked source is never deleted");
    wait_for("ext stopped", T, || {
        (home.module_status("ext").is_none() && !alive(pid)).then_some(())
    });
    assert!(!permissions_yaml(&home).contains("  ext:"));
}

#[test]
fn cli_errors_are_one_sentence_and_exit_1() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("m"));
    for (args, needle) in [
        (
            vec!["permissions", "grant", "nosuch"],
            "pons modules approve nosuch",
        ),
        (
            vec!["permissions", "deny", "m", "zz"],
            "no pending permission request",
        ),
        (
            vec!["permissions", "revoke", "m", "--type", "ffi"],
            "unknown permission type `ffi`",
        ),
        (
            vec!["modules", "approve", "nosuch", "--yes"],
            "no module with id or directory `nosuch`",
        ),
        (
            vec!["config", "get", "k.missing"],
            "Key \"k.missing\" not found",
        ),
        (
            vec!["config", "set", "k.__proto__.x", "1"],
            "unsafe segment",
        ),
    ] {
        let out = home.pons(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    }
}

#[test]
fn config_cli_works_without_a_kernel() {
    let mut home = TestHome::new();
    home.write_config("# keep this comment\nk:\n  port: 9000 # and this one\nother: {a: 1}\n");
    schema_module(&mut home, "m");
    let cfg = home.path().join("config.yaml");

    let out = home.pons(&["config", "set", "k.port", "9100"]);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&cfg).unwrap();
    assert_eq!(
        written,
        "# keep this comment\nk:\n  port: 9100 # and this one\nother: {a: 1}\n"
    );
    assert_eq!(mode(&cfg), 0o600);
    let out = home.pons(&["config", "get", "k.port"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "9100");
    let out = home.pons(&["config", "get", "k", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"port": 9100}));
    // A kernel key that is not in the file has its default (compat §10 item 108).
    let out = home.pons(&["config", "get", "lifecycle.rpcTimeoutMs"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30000");
    // Refused by the module's schema: nothing written.
    let out = home.pons(&["config", "set", "k.port", "abc"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/port: expected integer, found \"abc\""),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    // Refused kernel value.
    let out = home.pons(&["config", "set", "lifecycle.pingTimeoutMs", "5"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), written);
    // JSON values are coerced.
    let out = home.pons(&["config", "set", "other.list", "[1,2]", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["value"], json!([1, 2]));
    let out = home.pons(&["config", "list", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["other"], json!({"a": 1, "list": [1, 2]}));

    let out = home.pons(&["config", "validate"]);
    assert!(out.status.success(), "{}", text(&out));
    // An operator edit that breaks the section is reported with pointer, expected, found.
    std::fs::write(&cfg, "k:\n  port: -3\n").unwrap();
    let out = home.pons(&["config", "validate", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &v["errors"][0];
    assert_eq!(e["section"], "k");
    assert_eq!(e["module"], "m");
    assert_eq!(e["pointer"], "/port");
    assert_eq!(e["expected"], "at least 1");
    assert_eq!(e["found"], "-3");
}

#[test]
fn unsupported_or_escaping_schemas_leave_the_section_unvalidated() {
    let mut home = TestHome::new();
    home.write_config(&format!(
        "{FAST_LIFECYCLE}ts:\n  port: abc\nesc:\n  port: abc\n"
    ));
    home.add(
        ModuleSpec::new("ts").manifest(json!({"configKey": "ts", "configSchema": "schema.ts"})),
    );
    std::fs::write(
        home.path().join("modules/ts/schema.ts"),
        "export default fetch('x');\n",
    )
    .unwrap();
    home.add(
        ModuleSpec::new("esc")
            .manifest(json!({"configKey": "esc", "configSchema": "../schema.json"})),
    );
    std::fs::write(home.path().join("modules/schema.json"), PORT_SCHEMA).unwrap();
    let _k = home.start();
    // Items 110 and 112: both still spawn, with their sections as written.
    let init = home.wait_received("ts", "init", T);
    assert_eq!(init["config"], json!({"ts": {"port": "abc"}}));
    home.wait_status("esc", "ready", T);
    let plan = text(&home.pons(&["plan"]));
    assert!(plan.contains("unsupported"), "{plan}");
    assert!(plan.contains("escapes the module directory"), "{plan}");
}

#[test]
fn config_calls_keep_to_the_callers_section_and_coerce_strings() {
    let mut home = TestHome::new();
    home.write_config(&format!("{FAST_LIFECYCLE}k:\n  port: 1\n"));
    home.add(ModuleSpec::new("m").manifest(json!({"configKey": "k"})));
    // Each violator makes its call at init (a restarted process makes it again).
    home.add(
        ModuleSpec::new("proto")
            .manifest(json!({"configKey": "k2"}))
            .args(&["--call", r#"config.get:{"key":"k2.__proto__.x"}"#]),
    );
    home.add(
        ModuleSpec::new("sec")
            .manifest(json!({"configKey": "k3"}))
            .args(&[
                "--call",
                r#"config.set:{"key":"security.enforcementMode","value":"off"}"#,
            ]),
    );
    let _k = home.start();
    home.wait_status("m", "ready", T);
    // Item 62.
    for (raw, want) in [
        ("true", json!(true)),
        ("false", json!(false)),
        ("null", Value::Null),
        ("[1,2]", json!([1, 2])),
        ("{\"a\":1}", json!({"a": 1})),
        ("[oops", json!("[oops")),
        ("0x10", json!(16)),
    ] {
        let r = call(
            &home,
            "m",
            "config.set",
            json!({"key": "k.v", "value": raw}),
        );
        assert_eq!(
            r["result"],
            json!({"success": true, "coerced": want}),
            "{raw}: {r}"
        );
        let r = call(&home, "m", "config.get", json!({"key": "k.v"}));
        assert_eq!(
            r.get("result").cloned().unwrap_or(Value::Null),
            want,
            "{raw}: {r}"
        );
    }
    // Item 60: an unsafe segment is a violation even inside the caller's own section.
    let r = home.wait_event("proto", "call result", T, |e| e["event"] == "call_result");
    assert!(
        r["error"].as_str().unwrap_or_default().starts_with(
            "Error: Security violation: not permitted to read config key \"k2.__proto__.x\""
        ),
        "{r}"
    );
    // A violation stops the module for good (no restart), with the reference's token.
    let st = home.wait_status("proto", "stopped", T);
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("security-violation: config:"),
        "{st}"
    );
    assert_eq!(home.starts("proto").len(), 1);
    // Item 64: kernel sections are protected.
    let r = home.wait_event("sec", "call result", T, |e| e["event"] == "call_result");
    assert_eq!(
        r["error"],
        "Error: Security violation: section \"security\" is protected and cannot be modified by modules",
        "{r}"
    );
    // A violation stops the module for good (no restart), with the reference's token.
    let st = home.wait_status("sec", "stopped", T);
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("security-violation: config:"),
        "{st}"
    );
    assert_eq!(home.starts("sec").len(), 1);
    home.wait_log("security.violation", T);
    let cfg = std::fs::read_to_string(home.path().join("config.yaml")).unwrap();
    assert!(!cfg.contains("enforcementMode"), "{cfg}");
}

#[test]
fn recording_first_spawn_restarts_nothing() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("m"));
    let _k = home.start();
    home.wait_status("m", "ready", T);
    wait_for("firstSpawnAt in permissions.yaml", T, || {
        permissions_yaml(&home)
            .contains("firstSpawnAt")
            .then_some(())
    });
    // The pass after the write has run when `apply` answers.
    let out = home.pons(&["apply", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(home.starts("m").len(), 1, "one process only");
}

#[test]
fn log_levels_change_live_per_module() {
    let mut home = TestHome::new();
    home.write_config("logging:\n  level: info\n  levels:\n    quiet: error\n");
    home.add(ModuleSpec::new("quiet"));
    home.add(ModuleSpec::new("loud"));
    let _k = home.start();
    home.wait_status("quiet", "ready", T);
    home.wait_status("loud", "ready", T);
    home.command(
        "quiet",
        json!({"log": {"level": "info", "msg": "quiet-info-1"}}),
    );
    home.command(
        "loud",
        json!({"log": {"level": "info", "msg": "loud-info-1"}}),
    );
    home.wait_log("loud-info-1", T);
    // quiet's error line passes its filter and comes after its info line on the same stdout:
    // once it is in the log, the info line was read and filtered (no sleep-and-hope).
    home.command(
        "quiet",
        json!({"log": {"level": "error", "msg": "quiet-error-1"}}),
    );
    home.wait_log("quiet-error-1", T);
    assert!(
        !home.kernel_log().contains("quiet-info-1"),
        "filtered by logging.levels"
    );
    home.write_config("logging:\n  level: info\n  levels:\n    quiet: debug\n");
    // The new level takes effect with the pass the edit triggers; no restart.
    wait_for("quiet's info lines logged after the edit", T, || {
        home.command(
            "quiet",
            json!({"log": {"level": "info", "msg": "quiet-info-2"}}),
        );
        std::thread::sleep(Duration::from_millis(150));
        home.kernel_log().contains("quiet-info-2").then_some(())
    });
    assert_eq!(home.starts("quiet").len(), 1);
}
