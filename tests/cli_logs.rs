//! `pons logs` and `pons kernel logs` as an operator uses them: module ids (`kernel` included),
//! unknown ids, `--level`, `--since` (relative and ISO 8601), `-n`, `--json`, and `-f` started
//! before the kernel, ended by SIGTERM or a closed pipe.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use time::OffsetDateTime;

const T: Duration = Duration::from_secs(20);

/// `2026-01-15T10:30:00.123Z`.
fn iso(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).expect("format time")
}

/// One line of the daily file, as the kernel writes it.
fn record(ts: &str, level: &str, msg: &str, module: Option<&str>, fields: Value) -> String {
    let mut v = json!({"timestamp": ts, "level": level, "message": msg});
    if let Some(m) = module {
        v["module"] = json!(m);
    }
    if let Value::Object(f) = fields {
        for (k, x) in f {
            v[k] = x;
        }
    }
    v.to_string()
}

/// A home with modules `a` and `b` installed (module `gone` appears only in the log), an old
/// daily file at fixed times (+01:00) and today's with records 10, 2 and 1 minutes old.
fn home_with_logs() -> TestHome {
    let home = TestHome::new();
    for id in ["a", "b"] {
        let dir = home.path().join("modules").join(format!("dir-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("module.json"), json!({"id": id}).to_string()).unwrap();
    }
    let logs = home.path().join(".runtime/logs");
    std::fs::create_dir_all(&logs).unwrap();
    let day = "2020-01-15T10:30";
    let old = [
        record(
            &format!("{day}:00.123+01:00"),
            "info",
            "kernel.boot",
            None,
            json!({"version": "0.1.0"}),
        ),
        record(
            &format!("{day}:01.000+01:00"),
            "info",
            "module.spawn",
            None,
            json!({"moduleId": "a", "pid": 42}),
        ),
        record(
            &format!("{day}:02.000+01:00"),
            "debug",
            "detail",
            Some("a"),
            json!({}),
        ),
        record(
            &format!("{day}:03.000+01:00"),
            "warn",
            "careful",
            Some("a"),
            json!({"stack": "Error: x\n    at f", "name": "n", "topic": "t"}),
        ),
        record(
            &format!("{day}:04.000+01:00"),
            "error",
            "broken",
            Some("b"),
            json!({"error": "e"}),
        ),
        record(
            &format!("{day}:05.000+01:00"),
            "info",
            "bye",
            Some("gone"),
            json!({}),
        ),
    ];
    std::fs::write(logs.join("kernel-2020-01-15.log"), old.join("\n") + "\n").unwrap();
    let now = OffsetDateTime::now_utc();
    let ago = |m: i64| iso(now - time::Duration::minutes(m));
    let recent = [
        record(&ago(10), "info", "ten minutes", Some("a"), json!({})),
        record(&ago(2), "warn", "two minutes", Some("b"), json!({})),
        record(&ago(1), "info", "one minute", None, json!({})),
    ];
    let today = iso(now)[..10].to_string();
    std::fs::write(
        logs.join(format!("kernel-{today}.log")),
        recent.join("\n") + "\n",
    )
    .unwrap();
    home
}

/// `pons <args> --home <home>` in UTC: stdout, stderr, exit code.
fn logs(home: &TestHome, args: &[&str]) -> (String, String, Option<i32>) {
    let out = Command::new(pons_bin())
        .args(args)
        .arg("--home")
        .arg(home.path())
        .env_remove("PONS_HOME")
        .env("TZ", "UTC")
        .env("NO_COLOR", "1")
        .output()
        .expect("run pons");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

/// The messages of human lines (the word after the padded module column).
fn messages(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| {
            l.get(56..)
                .unwrap_or_else(|| panic!("short line {l:?}"))
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn ok(home: &TestHome, args: &[&str]) -> String {
    let (out, err, code) = logs(home, args);
    assert_eq!(code, Some(0), "pons {args:?}: {err}");
    out
}

#[test]
fn several_ids_select_their_lines_and_the_kernel_lines_about_them() {
    let home = home_with_logs();
    let out = ok(&home, &["logs", "a", "b"]);
    assert_eq!(
        messages(&out),
        ["module.spawn", "detail", "careful", "broken", "ten", "two"],
        "{out}"
    );
    // ISO 8601 stamps with milliseconds in the reader's zone, every data key shown.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "2020-01-15T09:30:01.000+00:00 INFO  kernel              module.spawn moduleId=a pid=42"
    );
    assert_eq!(
        lines[2],
        "2020-01-15T09:30:03.000+00:00 WARN  a                   careful topic=t stack=Error: x name=n"
    );
    // `pons kernel logs --module` is the same command: a comma list, or repeated; `pons logs`
    // takes a comma list too.
    assert_eq!(ok(&home, &["kernel", "logs", "--module", "a,b"]), out);
    assert_eq!(ok(&home, &["logs", "b,a"]), out);
    assert_eq!(
        ok(&home, &["kernel", "logs", "--module", "b", "--module", "a"]),
        out
    );
    // An id known only from the log; the kernel's own lines.
    assert_eq!(messages(&ok(&home, &["logs", "gone"])), ["bye"]);
    assert_eq!(
        messages(&ok(&home, &["logs", "kernel"])),
        ["kernel.boot", "module.spawn", "one"]
    );
    // Everything, and the last N.
    assert_eq!(ok(&home, &["logs"]).lines().count(), 9);
    assert_eq!(messages(&ok(&home, &["logs", "-n", "2"])), ["two", "one"]);
    assert_eq!(messages(&ok(&home, &["logs", "a", "-n", "1"])), ["ten"]);
}

#[test]
fn an_unknown_id_is_an_error_naming_the_known_ones() {
    let home = home_with_logs();
    for args in [
        &["logs", "nope", "a"][..],
        &["kernel", "logs", "--module", "a,nope"][..],
    ] {
        let (out, err, code) = logs(&home, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.contains("unknown module id `nope`")
                && err.contains("known ids: a, b, gone, kernel"),
            "{args:?}: {err}"
        );
    }
    let (_, err, code) = logs(&home, &["logs", "x", "y"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown module ids `x`, `y`"), "{err}");
}

#[test]
fn level_keeps_that_level_and_more_severe() {
    let home = home_with_logs();
    let warn = ok(&home, &["logs", "--level", "warn"]);
    assert_eq!(messages(&warn), ["careful", "broken", "two"], "{warn}");
    assert_eq!(ok(&home, &["logs", "--level", "WARNING"]), warn);
    assert_eq!(
        messages(&ok(&home, &["logs", "--level", "fatal"])),
        ["broken"]
    );
    assert_eq!(
        messages(&ok(&home, &["logs", "a", "--level", "debug"])),
        ["module.spawn", "detail", "careful", "ten"]
    );
    let (out, err, code) = logs(&home, &["logs", "--level", "loud"]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert!(err.contains("--level `loud` is not a level"), "{err}");
}

#[test]
fn since_takes_a_time_ago_or_an_iso_8601_time() {
    let home = home_with_logs();
    assert_eq!(
        messages(&ok(&home, &["logs", "--since", "5m"])),
        ["two", "one"]
    );
    assert_eq!(
        messages(&ok(&home, &["logs", "--since", "1h", "b"])),
        ["two"]
    );
    // From that instant on (the same instant in another zone; the records are at +01:00).
    let from_careful = ok(&home, &["logs", "--since", "2020-01-15T10:30:03+01:00"]);
    assert_eq!(
        messages(&from_careful),
        ["careful", "broken", "bye", "ten", "two", "one"]
    );
    assert_eq!(
        ok(&home, &["logs", "--since", "2020-01-15T09:30:03.000Z"]),
        from_careful
    );
    // Local time without an offset (the reader runs in UTC here).
    assert_eq!(
        ok(&home, &["logs", "--since", "2020-01-15 09:30:03"]),
        from_careful
    );
    assert_eq!(
        messages(&ok(&home, &["logs", "--since", "2020-01-15T09:30:03.001Z"]))[0],
        "broken"
    );
    // With --since, every matching line unless -n says otherwise.
    assert_eq!(
        ok(&home, &["logs", "--since", "2020-01-15"])
            .lines()
            .count(),
        9
    );
    assert_eq!(
        messages(&ok(&home, &["logs", "--since", "2020-01-15", "-n", "1"])),
        ["one"]
    );
    let (out, err, code) = logs(&home, &["logs", "--since", "tomorrow"]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert!(
        err.contains("--since `tomorrow` is not a time: use an ISO 8601 time")
            && err.contains("30s, 5m, 2h, 1d")
            && err.contains("today or yesterday"),
        "{err}"
    );
}

#[test]
fn json_prints_the_matching_lines_as_written() {
    let home = home_with_logs();
    let file =
        std::fs::read_to_string(home.path().join(".runtime/logs/kernel-2020-01-15.log")).unwrap();
    let out = ok(
        &home,
        &[
            "logs",
            "a",
            "--json",
            "--since",
            "2020-01-15",
            "--level",
            "info",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
        assert!(v.is_object());
    }
    assert!(file.contains(&format!("{}\n", lines[0])));
    assert!(file.contains(&format!("{}\n", lines[1])));
    assert_eq!(
        serde_json::from_str::<Value>(lines[2]).unwrap()["message"],
        "ten minutes"
    );
}

#[test]
fn no_log_yet_is_said_and_exits_0() {
    let home = TestHome::new();
    let (out, err, code) = logs(&home, &["logs"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("No log in") && err.contains("pons logs -f"),
        "{err}"
    );
}

/// A `pons logs -f` child whose stdout lines arrive on a channel; killed if the test fails.
struct Follower {
    child: Child,
    lines: Receiver<String>,
}

impl Follower {
    fn start(home: &Path, args: &[&str]) -> Follower {
        let mut child = Command::new(pons_bin())
            .args(args)
            .arg("--home")
            .arg(home)
            .env_remove("PONS_HOME")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start pons logs -f");
        let stdout = child.stdout.take().expect("stdout");
        Follower {
            child,
            lines: forward(stdout),
        }
    }

    /// The first line containing every needle (lines before it are consumed).
    fn wait_line(&self, needles: &[&str], seen: &mut Vec<String>) -> String {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    seen.push(l.clone());
                    if needles.iter().all(|n| l.contains(n)) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line with {needles:?} within {T:?}; got:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait_for("pons logs -f to exit", T, || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of `stdout` on a channel; the channel closes with the pipe (dropping the receiver
/// closes nothing: the thread holds the pipe until its next line).
fn forward(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn follow_started_before_the_kernel_prints_its_lines_and_ends_cleanly() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("hello"));
    home.add(ModuleSpec::new("other"));
    // Before the kernel: no log directory at all.
    assert!(!home.path().join(".runtime/logs").exists());
    let mut human = Follower::start(home.path(), &["logs", "-f", "hello"]);
    let mut json = Command::new(pons_bin())
        .args(["logs", "-f", "-n", "0", "--json", "--home"])
        .arg(home.path())
        .env_remove("PONS_HOME")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start pons logs -f --json");
    // Give both followers time to find no file, so the kernel's file really appears under them.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        human.child.try_wait().unwrap().is_none(),
        "-f exited without a log"
    );

    let _k = home.start();
    let mut seen = Vec::new();
    let ready = human.wait_line(&["module.ready", "moduleId=hello"], &mut seen);
    assert!(ready.contains(" INFO  kernel "), "{ready}");
    home.wait_status("hello", "ready", T);
    home.command(
        "hello",
        json!({"log": {"level": "warn", "msg": "marker", "data": {"k": "v", "name": "n"}}}),
    );
    let marker = human.wait_line(&["marker"], &mut seen);
    assert!(
        marker.ends_with(" WARN  hello               marker k=v name=n"),
        "{marker}"
    );
    let (stamp, _) = marker.split_once(' ').unwrap();
    assert_eq!(
        stamp.len(),
        "2026-01-15T10:30:00.123+01:00".len(),
        "{marker}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("other")),
        "another module's lines:\n{}",
        seen.join("\n")
    );
    // SIGTERM ends -f with exit 0.
    unsafe {
        libc::kill(human.child.id() as i32, libc::SIGTERM);
    }
    assert!(human.wait_exit().success());

    // The JSON follower printed JSON objects; closing its pipe ends it with exit 0.
    let mut reader = BufReader::new(json.stdout.take().expect("stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("a JSON line");
    let v: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first:?}: {e}"));
    assert!(
        v["timestamp"].is_string() && v["message"].is_string(),
        "{v}"
    );
    drop(reader);
    let status = wait_for("pons logs -f --json to exit on a closed pipe", T, || {
        json.try_wait().ok().flatten()
    });
    assert!(status.success(), "{status:?}");
}
