//! `pons top` and what it reads: the message counters and the summary `status` of the control
//! socket, and the real binary in a terminal (tmux): it waits for a kernel, shows the modules,
//! opens a log pane and quits on `q` with the terminal given back.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// One control request on a connection of its own.
fn ask(home: &TestHome, req: Value) -> Value {
    let mut s = UnixStream::connect(home.path().join("run/kernel.sock")).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    writeln!(s, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("answer");
    let v: Value = serde_json::from_str(&line).expect("JSON answer");
    assert_eq!(v["ok"], true, "{req}: {v}");
    v["data"].clone()
}

fn module<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["modules"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == id))
        .unwrap_or_else(|| panic!("{id} not in {report}"))
}

fn counter(report: &Value, id: &str, key: &str) -> u64 {
    module(report, id)[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{id}.{key} missing: {report}"))
}

#[test]
fn status_counts_messages_and_its_summary_leaves_out_the_sandbox() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("pub").manifest(json!({"publishes": ["news:a"]})));
    home.add(ModuleSpec::new("sub").manifest(json!({"subscribes": ["news:a"]})));
    let _k = home.start();
    home.wait_status("pub", "ready", T);
    home.wait_status("sub", "ready", T);

    let full = ask(&home, json!({"cmd": "status"}));
    assert!(module(&full, "sub")["sandbox"].is_object(), "{full}");
    let summary = ask(&home, json!({"cmd": "status", "summary": true}));
    for id in ["pub", "sub"] {
        let m = module(&summary, id);
        assert!(m.get("sandbox").is_none(), "{summary}");
        assert_eq!(m["status"], "ready");
        assert!(m["msgsIn"].is_u64() && m["msgsOut"].is_u64(), "{summary}");
    }

    let pub_in = counter(&summary, "pub", "msgsIn");
    let sub_in = counter(&summary, "sub", "msgsIn");
    for n in 0..5 {
        home.command(
            "pub",
            json!({"publish": {"topic": "news:a", "payload": {"n": n}}}),
        );
    }
    wait_for("5 deliveries", T, || {
        let got = home
            .received("sub")
            .iter()
            .filter(|m| m["type"] == "deliver")
            .count();
        (got == 5).then_some(())
    });
    // msgsOut counts what the kernel queued for the module: everything it received, once the
    // queue is written. msgsIn counts the lines it sent: the 5 publishes, the 5 acks.
    let (report, received) = wait_for("msgsOut to match what sub received", T, || {
        let r = ask(&home, json!({"cmd": "status", "summary": true}));
        let received = home.received("sub").len() as u64;
        (counter(&r, "sub", "msgsOut") == received).then_some((r, received))
    });
    assert!(received >= 6, "init and 5 deliveries at least: {received}");
    assert!(counter(&report, "pub", "msgsIn") >= pub_in + 5, "{report}");
    assert!(counter(&report, "sub", "msgsIn") >= sub_in + 5, "{report}");

    // The counters are the module's, not its process's: a restart keeps them.
    let before = counter(&report, "sub", "msgsOut");
    ask(&home, json!({"cmd": "module.restart", "moduleId": "sub"}));
    home.wait_status("sub", "ready", T);
    wait_for("msgsOut to count both processes", T, || {
        let r = ask(&home, json!({"cmd": "status", "summary": true}));
        (counter(&r, "sub", "msgsOut") > before).then_some(())
    });
}

#[test]
fn top_without_a_terminal_says_what_to_use() {
    let home = TestHome::new();
    let out = home.pons(&["top"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`pons top` needs a terminal") && err.contains("pons status --json"),
        "{err}"
    );
    let out = home.pons(&["top", "--interval", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval 0 is out of range"));
}

/// A tmux server of the test's own (its own socket), killed when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "top"]).stdout).into()
    }

    fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + T;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn has_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// SIGKILL for a process a failed test would leave behind.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0 as i64) {
            // SAFETY: a plain kill(2) of the pid this test started.
            unsafe {
                libc::kill(self.0, libc::SIGKILL);
            }
        }
    }
}

/// A child process of `parent` (from /proc).
fn child_of(parent: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
        (ppid == parent).then_some(pid)
    })
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn top_in_tmux_waits_for_the_kernel_shows_modules_and_quits_on_q() {
    if !has_tmux() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is missing under CI: .ci/run installs it"
        );
        eprintln!("SKIP top_in_tmux_waits_for_the_kernel_shows_modules_and_quits_on_q: no tmux");
        return;
    }
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("alpha"));
    home.add(ModuleSpec::new("beta"));
    let tmux = Tmux {
        socket: home.path().join("tmux.sock"),
    };
    // `pons top` twice: the first is quit with `q`, the second with SIGTERM. After each the shell
    // notes the exit code and whether the terminal is back in canonical (cooked) mode.
    let out_file = home.path().join("top.out");
    let top = format!(
        "{} top --interval 0.3 --home {}",
        shell_quote(&pons_bin()),
        shell_quote(home.path())
    );
    let note = format!(
        "echo \"exit $? $(stty -a | grep -oE -- '-?icanon')\" >> {}",
        shell_quote(&out_file)
    );
    // The third runs in a session of its own: when the terminal goes, no SIGHUP reaches it.
    let line = format!("{top}; {note}; {top}; {note}; setsid {top}; sleep 60");
    let notes = || {
        std::fs::read_to_string(&out_file)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "30",
        &line,
    ]);
    assert!(out.status.success(), "tmux new-session: {out:?}");

    // No kernel yet: said, and asked again.
    tmux.wait_screen("`kernel not running`", |s| s.contains("kernel not running"));
    let _k = home.start();
    let kernel_pid = _k.pid();
    let screen = tmux.wait_screen("both modules ready", |s| {
        let ready = |id: &str| {
            s.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.first() == Some(&id) && w.get(1) == Some(&"ready")
            })
        };
        ready("alpha") && ready("beta")
    });
    assert!(
        screen.contains(&format!("kernel pid {kernel_pid}")),
        "{screen}"
    );
    for col in ["STATUS", "RESTARTS", "IN/S", "OUT/S", "LAST ERROR"] {
        assert!(screen.contains(col), "{screen}");
    }
    assert!(screen.contains("q quit"), "{screen}");

    // `s` stops the selected (first) module the declarative way, `S` starts it again.
    let row = |s: &str, id: &str, status: &str| {
        s.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&id) && w.get(1) == Some(&status)
        })
    };
    tmux.cmd(&["send-keys", "-t", "top", "s"]);
    tmux.wait_screen("alpha stopped", |s| row(s, "alpha", "stopped"));
    let config = std::fs::read_to_string(home.path().join("config.yaml")).unwrap_or_default();
    assert!(config.contains("alpha"), "{config}");
    tmux.cmd(&["send-keys", "-t", "top", "S"]);
    tmux.wait_screen("alpha ready again", |s| row(s, "alpha", "ready"));

    // `l` opens the log pane of the selected (first) module.
    tmux.cmd(&["send-keys", "-t", "top", "l"]);
    tmux.wait_screen("the log pane", |s| s.contains("logs of alpha"));

    tmux.cmd(&["send-keys", "-t", "top", "q"]);
    wait_for("the first top to exit", T, || {
        (notes().len() == 1).then_some(())
    });
    assert_eq!(notes(), ["exit 0 icanon"], "exit code, terminal mode");

    // The second one shows the table again; SIGTERM ends it with the terminal restored.
    tmux.wait_screen("the second top", |s| s.contains("RESTARTS"));
    let shell = String::from_utf8_lossy(
        &tmux
            .cmd(&["display", "-p", "-t", "top", "#{pane_pid}"])
            .stdout,
    )
    .trim()
    .to_string();
    let top_pid = wait_for("the pid of the second top", T, || child_of(&shell));
    unsafe {
        libc::kill(top_pid, libc::SIGTERM);
    }
    wait_for("the second top to exit", T, || {
        (notes().len() == 2).then_some(())
    });
    assert_eq!(notes()[1], "exit 0 icanon", "exit code, terminal mode");
    // The third one: its terminal hangs up (the tmux server goes) and it ends by itself.
    tmux.wait_screen("the third top", |s| s.contains("RESTARTS"));
    let third = wait_for("the pid of the third top", T, || {
        child_of(&shell).filter(|p| *p != top_pid)
    });
    let cmdline = std::fs::read(format!("/proc/{third}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("top"),
        "{cmdline:?}"
    );
    let _reap = KillOnDrop(third);
    tmux.cmd(&["kill-server"]);
    wait_for("top to end when its terminal hung up", T, || {
        (!alive(third as i64)).then_some(())
    });
}
