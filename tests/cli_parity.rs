//! Issue 9, point 9: the reference's `modules update`, `config doctor`, `config edit` and
//! `config reset`, against the real binary (no kernel needed): exit codes, what is printed and
//! what is left in the files. `modules update` pulls from a real local git repository cloned
//! into the home's modules/; `config edit` runs small shell scripts as the editor.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{json, Value};

/// Runs `pons <args> --home <home>` with stdin closed (never a terminal), no editor variables
/// inherited, and `env` set.
fn pons(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(pons_bin())
        .args(args)
        .arg("--home")
        .arg(home)
        .env_remove("PONS_HOME")
        .env_remove("VISUAL")
        .env_remove("EDITOR")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run pons")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", stdout(o), stderr(o)))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs git in `dir` with a fixed identity; panics with git's output on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=pons test",
            "-c",
            "user.email=test@pons.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        stderr(&out)
    );
    stdout(&out).trim().to_string()
}

fn write_manifest(dir: &Path, manifest: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("module.json"),
        serde_json::to_vec_pretty(manifest).unwrap(),
    )
    .unwrap();
}

fn manifest(id: &str, net: &[&str]) -> Value {
    json!({"id": id, "name": id, "runtime": "binary", "entrypoint": "run",
           "permissions": {"net": net}})
}

/// The `modules list --json` row of `id`.
fn listed(home: &Path, id: &str) -> Value {
    let out = pons(home, &["modules", "list", "--json"], &[]);
    json_of(&out)["modules"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["id"] == id).cloned())
        .unwrap_or_else(|| panic!("{id} not listed: {}", stdout(&out)))
}

fn outcome<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["updated"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["id"] == id))
        .unwrap_or_else(|| panic!("no outcome for {id}: {v}"))
}

#[test]
fn modules_update_pulls_git_checkouts_skips_the_others_and_asks_for_reapproval() {
    let home = TestHome::new();
    let h = home.path();
    let src = h
        .join("../")
        .join(format!("{}-src", h.file_name().unwrap().to_string_lossy()));
    let _cleanup = RemoveOnDrop(src.clone());
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "."]);
    write_manifest(&src, &manifest("gm", &[]));
    std::fs::write(src.join("run"), "v1\n").unwrap();
    git(&src, &["add", "."]);
    git(&src, &["commit", "-qm", "one"]);
    git(
        &h.join("modules"),
        &["clone", "-q", src.to_str().unwrap(), "gm"],
    );
    // A linked module and a plain copied one.
    let linked_src = src.join("linked-src");
    write_manifest(&linked_src, &manifest("linked", &[]));
    std::os::unix::fs::symlink(&linked_src, h.join("modules/linked")).unwrap();
    write_manifest(&h.join("modules/plain"), &manifest("plain", &[]));
    let out = pons(h, &["modules", "approve", "gm", "--yes"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let perms_before = read(&h.join("permissions.yaml"));

    // Nothing new upstream.
    let out = pons(h, &["modules", "update", "gm", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json_of(&out);
    let o = outcome(&v, "gm");
    assert_eq!(o["status"], "upToDate");
    assert_eq!(o["updated"], false);
    assert_eq!(o["from"], o["to"]);

    // A code change: pulled, approval untouched.
    std::fs::write(src.join("run"), "v2\n").unwrap();
    git(&src, &["commit", "-qam", "two"]);
    let head = git(&src, &["rev-parse", "HEAD"]);
    let out = pons(h, &["modules", "update", "gm", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json_of(&out);
    let o = outcome(&v, "gm");
    assert_eq!(o["status"], "updated");
    assert_eq!(o["updated"], true);
    assert_eq!(o["to"], head.as_str());
    assert_ne!(o["from"], o["to"]);
    assert_eq!(o["approval"], "unchanged");
    assert_eq!(read(&h.join("modules/gm/run")), "v2\n");
    assert_eq!(read(&h.join("permissions.yaml")), perms_before);

    // module.json changes: without --yes and without a terminal the module needs approving
    // again and stays blocked; linked and copied modules are skipped with a word.
    write_manifest(&src, &manifest("gm", &["example.com"]));
    git(&src, &["commit", "-qam", "three"]);
    let out = pons(h, &["modules", "update", "--all"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Updated `gm` ("), "{text}");
    assert!(
        text.contains("module.json changed: the module is blocked until you approve it again with `pons modules approve gm`"),
        "{text}"
    );
    assert!(text.contains("Skipped `linked`: symlinked"), "{text}");
    assert!(
        text.contains("Skipped `plain`: not git-installed"),
        "{text}"
    );
    assert_eq!(read(&h.join("permissions.yaml")), perms_before);
    assert_eq!(listed(h, "gm")["manifestOk"], false);

    let out = pons(h, &["modules", "update", "--all", "--json"], &[]);
    let v = json_of(&out);
    assert_eq!(outcome(&v, "gm")["approval"], "required");
    assert_eq!(outcome(&v, "linked")["status"], "skipped");
    assert!(outcome(&v, "linked")["error"]
        .as_str()
        .unwrap()
        .starts_with("symlinked"));
    assert_eq!(outcome(&v, "plain")["status"], "skipped");
    assert!(outcome(&v, "plain")["error"]
        .as_str()
        .unwrap()
        .starts_with("not git-installed"));

    // --yes approves the changed manifest.
    let out = pons(h, &["modules", "update", "gm", "--yes", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(outcome(&json_of(&out), "gm")["approval"], "approved");
    assert_eq!(listed(h, "gm")["manifestOk"], true);
    assert!(read(&h.join("permissions.yaml")).contains("example.com"));

    // Diverged histories: the pull fails, named, and exits 1.
    std::fs::write(h.join("modules/gm/run"), "local\n").unwrap();
    git(&h.join("modules/gm"), &["commit", "-qam", "local"]);
    std::fs::write(src.join("run"), "v3\n").unwrap();
    git(&src, &["commit", "-qam", "four"]);
    let out = pons(h, &["modules", "update", "gm"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: module `gm`: `git pull --ff-only` failed in ")
            && err.contains("modules/gm")
            && err.contains("resolve it there with git"),
        "{err}"
    );
    assert_eq!(read(&h.join("modules/gm/run")), "local\n");

    // Refusals.
    let out = pons(h, &["modules", "update", "nope"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no module with id or directory `nope`"));
    let out = pons(h, &["modules", "update"], &[]);
    assert_eq!(out.status.code(), Some(1));
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PORT_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "port": {"type": "integer", "minimum": 1, "default": 8080},
    "token": {"type": "string"}
  }
}"#;

/// A module `m` with `configKey: k` and a schema (not approved: the config commands check the
/// section of every module present).
fn schema_module(home: &Path, schema: &str) {
    let dir = home.join("modules/m");
    write_manifest(
        &dir,
        &json!({"id": "m", "name": "m", "runtime": "binary", "entrypoint": "run",
                "permissions": {}, "configKey": "k", "configSchema": "schema.json"}),
    );
    std::fs::write(dir.join("schema.json"), schema).unwrap();
}

#[test]
fn config_doctor_reports_and_fixes_only_what_is_safe() {
    let home = TestHome::new();
    let h = home.path();
    schema_module(h, PORT_SCHEMA);
    let cfg = h.join("config.yaml");
    let original = "\
# operator notes
logging:
  level: info
lifecycle:
  pingTimeoutMs: 5 # too small
  bogus: 1
security:
  enforcementMode: strict
kernel:
  reconcile: auto
cluster:
  url: nats://127.0.0.1:4222
k:
  port: abc # wrong type
old:
  x: 1
";
    std::fs::write(&cfg, original).unwrap();

    let out = pons(h, &["config", "doctor", "--json"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["valid"], false);
    let issue = |path: &str| -> Value {
        v["issues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no issue at {path}: {v}"))
    };
    let i = issue("lifecycle.pingTimeoutMs");
    assert_eq!(
        (&i["type"], &i["fixable"], &i["suggestedValue"]),
        (&json!("invalid"), &json!(true), &json!(10000))
    );
    let i = issue("lifecycle.bogus");
    assert_eq!(
        (&i["type"], &i["fixable"]),
        (&json!("unknownKey"), &json!(false))
    );
    let i = issue("k.port");
    assert_eq!(
        (&i["type"], &i["module"], &i["suggestedValue"]),
        (&json!("schema"), &json!("m"), &json!(8080))
    );
    let i = issue("old");
    assert_eq!(
        (&i["type"], &i["severity"], &i["fixable"]),
        (&json!("unknownSection"), &json!("warning"), &json!(false))
    );
    // Kernel sections (and the reserved `cluster`) are never unknown.
    for s in ["logging", "security", "kernel", "cluster"] {
        assert!(
            !v["issues"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["path"] == s),
            "{s}: {v}"
        );
    }
    assert_eq!(read(&cfg), original, "diagnosing writes nothing");

    let out = pons(h, &["config", "doctor"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("2 can be fixed with `pons config doctor --fix`"),
        "{}",
        stdout(&out)
    );

    // --fix: defaults replace the invalid values, in place; nothing is deleted.
    let out = pons(h, &["config", "doctor", "--fix"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "bogus remains: {}",
        stdout(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("✓ fixed lifecycle.pingTimeoutMs: 5 → 10000 (the default)"),
        "{text}"
    );
    assert!(text.contains("✓ fixed k.port: \"abc\" → 8080"), "{text}");
    assert_eq!(
        read(&cfg),
        original
            .replace("pingTimeoutMs: 5 #", "pingTimeoutMs: 10000 #")
            .replace("port: abc #", "port: 8080 #")
    );
    assert_eq!(mode(&cfg), 0o600);

    // The unknown key goes only when the operator says so; then the file is valid.
    let out = pons(h, &["config", "reset", "lifecycle.bogus"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pons(h, &["config", "doctor"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("✓ Configuration is valid (1 warning)"),
        "{}",
        stdout(&out)
    );

    // An invalid cluster section is the kernel's error too: named by key, no credential quoted,
    // nothing --fix could write.
    let before = read(&cfg);
    let with_cluster = "cluster:\n  url: ws://x:4222\n  credentials: {token: s3cret}\n";
    std::fs::write(&cfg, with_cluster).unwrap();
    let out = pons(h, &["config", "doctor", "--fix", "--json"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let v = json_of(&out);
    assert_eq!(v["issues"][0]["path"], "cluster.url", "{v}");
    assert!(!stdout(&out).contains("s3cret"), "{v}");
    assert_eq!(read(&cfg), with_cluster);
    // A listing redacts the cluster's secrets; asking for one by its key prints it.
    let out = pons(h, &["config", "list"], &[]);
    assert!(
        stdout(&out).contains("token: <redacted>"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("s3cret"), "{}", stdout(&out));
    let out = pons(h, &["config", "get", "cluster.credentials.token"], &[]);
    assert_eq!(stdout(&out).trim(), "s3cret");
    std::fs::write(&cfg, &before).unwrap();

    // A YAML error is one unfixable issue with line and column; --fix writes nothing.
    std::fs::write(&cfg, "a: 1\na: 2\n").unwrap();
    let out = pons(h, &["config", "doctor", "--fix", "--json"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["issues"][0]["type"], "yaml");
    assert!(
        v["issues"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{v}"
    );
    assert_eq!(read(&cfg), "a: 1\na: 2\n");

    let out = pons(&h.join("missing"), &["config", "doctor"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The draft path named in an error that kept it.
fn kept_draft(err: &str) -> PathBuf {
    let at = err.find("your edit is kept in ").expect("draft named") + 21;
    let rest = &err[at..];
    PathBuf::from(&rest[..rest.find(',').unwrap()])
}

#[test]
fn config_edit_applies_only_valid_edits() {
    let home = TestHome::new();
    let h = home.path();
    schema_module(h, PORT_SCHEMA);
    let cfg = h.join("config.yaml");
    let original = "# my notes\nk:\n  port: 9000 # the port\n";
    std::fs::write(&cfg, original).unwrap();
    let tools = h.join("rec");
    let new_file = tools.join("new.yaml");
    let copy_in = script(&tools, "copy-in.sh", "cp \"$PONS_TEST_NEW\" \"$1\"");
    let editor = format!("sh {}", copy_in.display());
    let new = new_file.to_str().unwrap();
    let edit = |env: &[(&str, &str)]| pons(h, &["config", "edit"], env);

    // A valid edit is written as edited (comments included), 0600.
    let edited = "# my notes\nk:\n  port: 9100 # the new port\n";
    std::fs::write(&new_file, edited).unwrap();
    let out = edit(&[("EDITOR", &editor), ("PONS_TEST_NEW", new)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("updated"), "{}", stdout(&out));
    assert_eq!(read(&cfg), edited);
    assert_eq!(mode(&cfg), 0o600);

    // Invalid YAML: file, line and column; nothing applied; the draft is kept.
    std::fs::write(&new_file, "k:\n  port: 1\nk: 2\n").unwrap();
    let out = edit(&[("EDITOR", &editor), ("PONS_TEST_NEW", new)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("config.yaml: line 3, column 1: duplicate mapping key")
            && err.contains("nothing was applied"),
        "{err}"
    );
    let draft = kept_draft(&err);
    assert_eq!(read(&draft), "k:\n  port: 1\nk: 2\n");
    std::fs::remove_dir_all(draft.parent().unwrap()).unwrap();
    assert_eq!(read(&cfg), edited);

    // A value the module's schema refuses: where it is and what is wrong.
    std::fs::write(&new_file, "k:\n  port: -1\n").unwrap();
    let out = edit(&[("EDITOR", &editor), ("PONS_TEST_NEW", new)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "line 2, column 3: section `k` (module `m`) at /port: expected at least 1, found -1"
        ),
        "{err}"
    );
    std::fs::remove_dir_all(kept_draft(&err).parent().unwrap()).unwrap();
    assert_eq!(read(&cfg), edited);

    // The editor fails, or changes nothing: nothing is written.
    let out = edit(&[("EDITOR", "false")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the editor `false` ($EDITOR) exited with code 1"),
        "{}",
        stderr(&out)
    );
    let out = edit(&[("EDITOR", "true")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("No changes"), "{}", stdout(&out));
    assert_eq!(read(&cfg), edited);

    // $VISUAL comes before $EDITOR.
    let visual_edit = "k:\n  port: 9200\n";
    std::fs::write(&new_file, visual_edit).unwrap();
    let out = edit(&[
        ("VISUAL", &editor),
        ("EDITOR", "false"),
        ("PONS_TEST_NEW", new),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(read(&cfg), visual_edit);

    // config.yaml written by someone else while the editor is open: that write is kept.
    let racing = script(
        &tools,
        "racing.sh",
        "printf 'k:\\n  port: 7000\\n' > \"$PONS_TEST_CFG\"\ncp \"$PONS_TEST_NEW\" \"$1\"",
    );
    std::fs::write(&new_file, "k:\n  port: 9300\n").unwrap();
    let out = edit(&[
        ("EDITOR", racing.to_str().unwrap()),
        ("PONS_TEST_NEW", new),
        ("PONS_TEST_CFG", cfg.to_str().unwrap()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("changed while the editor was open"), "{err}");
    assert_eq!(read(&kept_draft(&err)), "k:\n  port: 9300\n");
    std::fs::remove_dir_all(kept_draft(&err).parent().unwrap()).unwrap();
    assert_eq!(read(&cfg), "k:\n  port: 7000\n");
}

#[test]
fn config_reset_removes_keys_and_resets_all_with_a_backup() {
    let home = TestHome::new();
    let h = home.path();
    let required = PORT_SCHEMA.replace(
        "\"properties\"",
        "\"required\": [\"token\"],\n  \"properties\"",
    );
    schema_module(h, &required);
    let cfg = h.join("config.yaml");
    let original = "# notes\nlifecycle:\n  rpcTimeoutMs: 60000 # slow peers\nk:\n  port: 9000 # the port\n  token: t\n";
    std::fs::write(&cfg, original).unwrap();

    // One key: its lines go, the default applies.
    let out = pons(h, &["config", "reset", "k.port"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Reset k.port: removed from")
            && stdout(&out).contains("its default 8080 applies now"),
        "{}",
        stdout(&out)
    );
    let after = original.replace("  port: 9000 # the port\n", "");
    assert_eq!(read(&cfg), after);
    let out = pons(
        h,
        &["config", "reset", "lifecycle.rpcTimeoutMs", "--json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(
        (&v["removed"], &v["was"], &v["default"]),
        (&json!(true), &json!(60000), &json!(30000))
    );
    let after = after.replace(
        "lifecycle:\n  rpcTimeoutMs: 60000 # slow peers\n",
        "lifecycle: {}\n",
    );
    assert_eq!(read(&cfg), after);
    // Not set: nothing to do.
    let out = pons(h, &["config", "reset", "k.port"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("k.port is not set"),
        "{}",
        stdout(&out)
    );
    // A key the schema requires (no default): refused, nothing written.
    let out = pons(h, &["config", "reset", "k.token"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("removing `k.token` would make")
            && err.contains("/token")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(read(&cfg), after);
    let out = pons(h, &["config", "reset"], &[]);
    assert_eq!(out.status.code(), Some(1));

    // Everything: refused without --yes when no terminal asks.
    let out = pons(h, &["config", "reset", "--all"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs --yes"), "{}", stderr(&out));
    assert_eq!(read(&cfg), after);
    let out = pons(h, &["config", "reset", "--all", "--yes", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["changed"], true);
    let backup = PathBuf::from(v["backup"].as_str().unwrap());
    assert_eq!(backup.parent(), Some(h));
    assert_eq!(read(&backup), after);
    assert_eq!(mode(&backup), 0o600);
    let now = read(&cfg);
    assert!(
        now.lines().all(|l| l.starts_with('#')),
        "only a comment is left: {now}"
    );
    // The required token has no default: said, not hidden.
    assert!(v["problems"].to_string().contains("/token"), "{v}");
    let out = pons(h, &["config", "list", "--json"], &[]);
    assert_eq!(json_of(&out), json!({}));
    // Again: nothing to reset, no second backup.
    let out = pons(h, &["config", "reset", "--all", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("holds no settings"),
        "{}",
        stdout(&out)
    );
    let backups = std::fs::read_dir(h)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".bak"))
        })
        .count();
    assert_eq!(backups, 1);
}
