//! The CLI as an operator meets it day to day: homes that do not exist, exit codes, messages.

mod common;

use common::*;

#[test]
fn a_home_that_does_not_exist_is_an_error_named_absolutely() {
    let home = TestHome::new();
    let cwd = home.path();
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["plan", "--detailed-exitcode"],
        vec!["modules", "list"],
        vec!["config", "list"],
    ] {
        let out = std::process::Command::new(pons_bin())
            .current_dir(cwd)
            .env("PONS_HOME", "no/such/home")
            .args(&args)
            .output()
            .expect("run pons");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        let abs = cwd.join("no/such/home");
        assert!(
            err.contains(&format!("the pons home {} does not exist", abs.display())),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn plan_exits_1_when_an_input_is_invalid() {
    let home = TestHome::new();
    home.write_config("lifecycle:\n  maxRestarts: [\n");
    for extra in [&[][..], &["--detailed-exitcode"][..], &["--json"][..]] {
        let mut args = vec!["plan"];
        args.extend_from_slice(extra);
        let out = home.pons(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("config.yaml"), "{args:?}: {all}");
    }
}

#[test]
fn a_config_key_no_module_uses_is_warned_about() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("counter").manifest(serde_json::json!({"configKey": "counter"})));
    let out = home.pons(&["config", "set", "countr.start", "3"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: section `countr` is used by no module"),
        "{err}"
    );
    let out = home.pons(&["config", "validate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`countr`"), "{err}");
    // The module's own section is no warning.
    let out = home.pons(&["config", "set", "counter.start", "3"]);
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn a_module_directory_with_a_non_utf8_name_is_blocked_with_a_clear_reason() {
    use std::os::unix::ffi::OsStrExt;
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("odd").unapproved());
    let bad = std::ffi::OsStr::from_bytes(b"odd-\xff");
    std::fs::rename(
        home.path().join("modules/odd"),
        home.path().join("modules").join(bad),
    )
    .unwrap();
    let out = home.pons(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let action = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["module"].as_str().unwrap_or_default().starts_with("odd-"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(action["action"], "blocked", "{plan}");
    assert!(
        action["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("name is not valid UTF-8: rename the directory"),
        "{plan}"
    );
    // Approving it by its manifest's id succeeds (the approval is kept for when the directory is
    // renamed) but says at once that it will not start, and why; so does approving it again.
    for _ in 0..2 {
        let out = home.pons(&["modules", "approve", "odd", "--yes"]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("warning: module `odd` is approved but will not start: the module directory's name is not valid UTF-8: rename the directory"),
            "{err}"
        );
    }
}

#[test]
fn config_set_says_who_applies_the_change() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("counter").manifest(serde_json::json!({"configKey": "counter"})));
    let out = home.pons(&["config", "set", "counter.start", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the kernel is not running"), "{text}");
    let _k = home.start_with(&["--manual"], &[]);
    let out = home.pons(&["config", "set", "counter.start", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("manual mode: `pons apply` applies it"),
        "{text}"
    );
}

#[test]
fn apply_says_once_that_it_converged() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("m"));
    let _k = home.start();
    home.wait_status("m", "ready", std::time::Duration::from_secs(15));
    let out = home.pons(&["apply"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Nothing to do: converged.\n"
    );
}

#[test]
fn plan_is_coloured_only_when_asked_or_on_a_terminal() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("m"));
    let run = |env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(pons_bin());
        c.args(["plan", "--home"]).arg(home.path());
        c.env_remove("NO_COLOR").env_remove("PONS_COLOR");
        for (k, v) in env {
            c.env(k, v);
        }
        String::from_utf8_lossy(&c.output().expect("pons plan").stdout).into_owned()
    };
    assert!(!run(&[]).contains('\x1b'), "piped: no colour");
    let forced = run(&[("PONS_COLOR", "always")]);
    assert!(forced.contains("\x1b[32m+\x1b[0m m"), "{forced:?}");
    assert!(!run(&[("PONS_COLOR", "always"), ("NO_COLOR", "1")]).contains('\x1b'));
}

#[test]
fn approving_a_module_that_cannot_start_says_why() {
    let mut home = TestHome::new();
    home.add(
        ModuleSpec::new("a")
            .manifest(serde_json::json!({"provides": ["x"], "requires": ["y"]}))
            .unapproved(),
    );
    home.add(
        ModuleSpec::new("b")
            .manifest(serde_json::json!({"provides": ["y"], "requires": ["x"]}))
            .unapproved(),
    );
    home.add(
        ModuleSpec::new("lost")
            .manifest(serde_json::json!({"entrypoint": "missing-binary"}))
            .unapproved(),
    );
    let out = home.pons(&["modules", "approve", "lost", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: module `lost` is approved but will not start: entry point `missing-binary` not found"),
        "{err}"
    );
    home.pons(&["modules", "approve", "a", "--yes"]);
    let out = home.pons(&["modules", "approve", "b", "--yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dependency cycle"), "{err}");
}

#[test]
fn status_is_coloured_only_when_asked() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("m"));
    let _k = home.start();
    home.wait_status("m", "ready", std::time::Duration::from_secs(15));
    let run = |env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(pons_bin());
        c.args(["status", "--home"]).arg(home.path());
        c.env_remove("NO_COLOR").env_remove("PONS_COLOR");
        for (k, v) in env {
            c.env(k, v);
        }
        String::from_utf8_lossy(&c.output().expect("pons status").stdout).into_owned()
    };
    assert!(!run(&[]).contains('\x1b'));
    let forced = run(&[("PONS_COLOR", "always")]);
    assert!(forced.contains("\x1b[32mready\x1b[0m"), "{forced:?}");
}

/// `2026-12-02T03:48:14.693+00:00 ` (the console's stamp: ISO 8601, milliseconds, offset).
fn starts_with_iso_stamp(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
    b.len() > 30
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && (b[23] == b'+' || b[23] == b'-')
        && digits(24..26)
        && b[26] == b':'
        && digits(27..29)
        && b[29] == b' '
}

#[test]
fn the_console_stamps_iso_8601_with_milliseconds_and_shows_every_data_key() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("m"));
    let _k = home.start();
    home.wait_status("m", "ready", std::time::Duration::from_secs(15));
    home.command(
        "m",
        serde_json::json!({"log": {"level": "warn", "msg": "disk nearly full",
            "data": {"path": "/var", "freePct": 3}}}),
    );
    let console = || std::fs::read_to_string(home.path().join("kernel.stderr")).unwrap_or_default();
    let line = wait_for(
        "the module's line on the console",
        std::time::Duration::from_secs(15),
        || {
            console()
                .lines()
                .find(|l| l.contains("disk nearly full"))
                .map(str::to_string)
        },
    );
    assert!(starts_with_iso_stamp(&line), "{line}");
    assert!(
        line.contains("WARN") && line.contains("path=/var") && line.contains("freePct=3"),
        "{line}"
    );
    // The kernel's own lines too, with their data keys (moduleId=…).
    let text = console();
    assert!(
        text.lines()
            .any(|l| l.contains("module.spawn") && l.contains("moduleId=m")),
        "{text}"
    );
    for l in text.lines().filter(|l| !l.is_empty()) {
        assert!(starts_with_iso_stamp(l), "{l:?}\n{text}");
    }
}
