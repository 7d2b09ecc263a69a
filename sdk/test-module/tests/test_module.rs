//! Runs the real pons-test-module binary behind a fake kernel (pipes) and checks its stdout
//! and its record file.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Vec<u8>>,
    dir: tempfile::TempDir,
}

impl Proc {
    /// Starts the module with `args`; `{dir}` in an argument is replaced by the test's
    /// temporary directory (which also holds `record.jsonl`).
    fn start(args: &[&str]) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record.jsonl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pons-test-module"))
            .arg("--record")
            .arg(&record)
            .args(
                args.iter()
                    .map(|a| a.replace("{dir}", dir.path().to_str().unwrap())),
            )
            .env("PONS_TEST_MARKER", "m1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        line.pop();
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines: rx,
            dir,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn send(&mut self, v: Value) {
        let w = self.stdin.as_mut().unwrap();
        writeln!(w, "{v}").unwrap();
        w.flush().unwrap();
    }

    fn line(&self) -> Vec<u8> {
        self.lines
            .recv_timeout(WAIT)
            .expect("no stdout line within 10 s")
    }

    fn next(&self) -> Value {
        let l = self.line();
        serde_json::from_slice(&l)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&l)))
    }

    /// Skips lines until one of type `ty`.
    fn next_of(&self, ty: &str) -> Value {
        loop {
            let v = self.next();
            if v["type"] == ty {
                return v;
            }
        }
    }

    fn init(&mut self) {
        self.send(json!({"type":"init","protocolVersion":"1.0","config":{},
                         "workspacePath":"/h","projectRoot":"/h"}));
    }

    fn record(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.path("record.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until the record holds an event matching `pred`; returns it.
    fn wait_event(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.record().into_iter().find(&pred) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "event not recorded: {:#?}",
                self.record()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "module did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    fn control(&self, cmd: Value) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("control.jsonl"))
            .unwrap();
        writeln!(f, "{cmd}").unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn event<'a>(name: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e| e["event"] == name
}

#[test]
fn handshake_echo_and_shutdown() {
    let mut p = Proc::start(&["--echo"]);
    p.init();
    assert_eq!(p.next(), json!({"type":"ready","manifest":{}}));
    p.send(json!({"type":"deps_ready"}));
    p.send(json!({"type":"rpc_request","id":"k-1","from":"caller","service":"s","method":"m","params":{"x":[1]}}));
    assert_eq!(
        p.next(),
        json!({"type":"rpc_response","id":"k-1","result":{"echo":{"x":[1]},"method":"m","from":"caller"}})
    );
    p.send(json!({"type":"call","id":"c-1","method":"health"}));
    assert_eq!(
        p.next(),
        json!({"type":"call:response","id":"c-1","result":{"echo":null,"method":"health","from":null}})
    );
    p.send(json!({"type":"ping"}));
    assert_eq!(p.next(), json!({"type":"pong"}));
    p.send(json!({"type":"deliver","id":"d1","topic":"t","payload":{"a":1}}));
    assert_eq!(p.next(), json!({"type":"ack","id":"d1"}));
    p.send(json!({"type":"shutdown"}));
    assert_eq!(p.wait_exit().code(), Some(0));

    let rec = p.record();
    let start = &rec[0];
    assert_eq!(start["event"], "start");
    assert_eq!(start["pid"], p.child.id());
    assert_eq!(start["env"]["PONS_TEST_MARKER"], "m1");
    assert_eq!(start["args"][2], "--echo");
    let received: Vec<&Value> = rec
        .iter()
        .filter(|e| e["event"] == "recv")
        .map(|e| &e["msg"]["type"])
        .collect();
    assert_eq!(
        received,
        [
            "init",
            "deps_ready",
            "rpc_request",
            "call",
            "ping",
            "deliver",
            "shutdown"
        ]
    );
    let deliver = rec.iter().find(|e| e["msg"]["type"] == "deliver").unwrap();
    assert_eq!(deliver["msg"]["payload"], json!({"a":1}));
    assert!(rec.iter().any(|e| e["event"] == "ready_sent"));
    assert!(rec.iter().any(|e| e["event"] == "shutdown"));
}

#[test]
fn rpc_and_publish_after_deps_ready() {
    let mut p = Proc::start(&["--rpc", "svc:do:{\"n\":1}", "--publish", "news:3:5"]);
    p.init();
    p.next_of("ready");
    p.send(json!({"type":"deps_ready"}));
    let req = p.next();
    assert_eq!(
        req,
        json!({"type":"rpc_request","id":"tm-rpc-1","service":"svc","method":"do","params":{"n":1}})
    );
    p.send(json!({"type":"rpc_response","id":"tm-rpc-1","result":{"ok":true}}));
    for i in 0..3 {
        assert_eq!(
            p.next(),
            json!({"type":"publish","topic":"news","payload":{"seq":i,"pad":"xxxxx"}})
        );
    }
    let r = p.wait_event(event("rpc_result"));
    assert_eq!(r["result"], json!({"ok":true}));
    assert_eq!(r["id"], "tm-rpc-1");
    let done = p.wait_event(event("publish_done"));
    assert_eq!(done["count"], 3);
    assert_eq!(done["topic"], "news");
}

#[test]
fn kernel_call_before_ready_and_never_ready() {
    let mut p = Proc::start(&["--call", "config.get:{\"key\":\"k\"}", "--never-ready"]);
    p.init();
    let call = p.next();
    assert_eq!(
        call,
        json!({"type":"call","id":"tm-call-1","method":"config.get","params":{"key":"k"}})
    );
    p.send(json!({"type":"call:response","id":"tm-call-1","error":"Error: nope"}));
    let r = p.wait_event(event("call_result"));
    assert_eq!(r["error"], "Error: nope");
    assert_eq!(r["source"], "init");
    // Closing stdin ends the module; it never said ready.
    p.stdin = None;
    assert_eq!(p.wait_exit().code(), Some(0));
    while let Ok(line) = p.lines.recv_timeout(Duration::from_secs(5)) {
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_ne!(v["type"], "ready");
    }
    assert!(!p.record().iter().any(|e| e["event"] == "ready_sent"));
}

#[test]
fn call_after_ready_and_ready_delay() {
    let mut p = Proc::start(&[
        "--ready-delay-ms",
        "30",
        "--call-after-ready",
        "module.list:{}",
    ]);
    p.init();
    assert_eq!(p.next()["type"], "ready");
    p.send(json!({"type":"deps_ready"}));
    let call = p.next();
    assert_eq!(call["method"], "module.list");
    p.send(json!({"type":"call:response","id":call["id"],"result":[{"id":"a"}]}));
    let r = p.wait_event(event("call_result"));
    assert_eq!(r["result"], json!([{"id":"a"}]));
    assert_eq!(r["source"], "deps_ready");
}

#[test]
fn unknown_flag_exits_2() {
    let mut p = Proc::start(&["--frobnicate"]);
    assert_eq!(p.wait_exit().code(), Some(2));
    assert!(p.stderr().contains("unknown flag --frobnicate"));
}

#[test]
fn crash_after_with_code_and_stderr() {
    let mut p = Proc::start(&[
        "--crash-after-ms",
        "20",
        "--exit-code",
        "3",
        "--stderr",
        "boom!",
    ]);
    assert_eq!(p.wait_exit().code(), Some(3));
    assert!(p.stderr().contains("boom!"));
    assert!(p
        .record()
        .iter()
        .any(|e| e["event"] == "crash" && e["code"] == 3));
}

#[test]
fn garbage_then_normal() {
    let mut p = Proc::start(&["--garbage"]);
    let mut lines = Vec::new();
    for _ in 0..7 {
        lines.push(p.line());
    }
    assert_eq!(lines[0], b"this is not json {");
    assert!(std::str::from_utf8(&lines[1]).is_err());
    assert_eq!(lines[2], b"42");
    assert_eq!(lines[3], b"[1,2]");
    assert_eq!(lines[4], br#"{"type":"bogus"}"#);
    let publish: Value = serde_json::from_slice(&lines[5]).unwrap();
    assert_eq!(publish["topic"].as_str().unwrap().len(), 300);
    assert_eq!(lines[6].len(), 11 * 1024 * 1024);
    let big: Value = serde_json::from_slice(&lines[6]).unwrap();
    assert_eq!(big["topic"], "garbage.big");
    p.init();
    assert_eq!(p.next()["type"], "ready");
}

#[test]
fn control_file_commands() {
    let mut p = Proc::start(&["--control", "{dir}/control.jsonl"]);
    p.init();
    assert_eq!(p.next()["type"], "ready");
    p.control(json!({"publish":{"topic":"t","payload":{"k":"v"}}}));
    assert_eq!(
        p.next(),
        json!({"type":"publish","topic":"t","payload":{"k":"v"}})
    );
    p.control(json!({"raw":"{\"type\":\"pong\"} raw"}));
    assert_eq!(p.line(), br#"{"type":"pong"} raw"#);
    p.control(json!({"rpc":{"service":"s","method":"m","params":[1]}}));
    let req = p.next();
    assert_eq!(req["type"], "rpc_request");
    p.send(json!({"type":"rpc_response","id":req["id"],"error":"forbidden"}));
    assert_eq!(p.wait_event(event("rpc_result"))["error"], "forbidden");
    p.control(json!({"call":{"method":"module.list"}}));
    let call = p.next();
    assert_eq!(call["method"], "module.list");
    p.send(json!({"type":"call:response","id":call["id"],"result":7}));
    assert_eq!(p.wait_event(event("call_result"))["result"], 7);
    p.control(json!({"ready":true}));
    assert_eq!(p.next()["type"], "ready");
    p.control(json!({"bogus":1}));
    p.wait_event(event("control_error"));
    p.control(json!({"exit":4}));
    assert_eq!(p.wait_exit().code(), Some(4));
    assert_eq!(p.wait_event(event("exit"))["code"], 4);
}

#[test]
fn count_only_counts_deliveries() {
    let mut p = Proc::start(&["--count-only"]);
    p.init();
    p.next_of("ready");
    let mut burst = String::new();
    for i in 0..1000 {
        burst.push_str(&format!(
            "{{\"type\":\"deliver\",\"id\":\"d{i}\",\"topic\":\"t\",\"payload\":{{\"seq\":{i}}}}}\n"
        ));
    }
    p.stdin
        .as_mut()
        .unwrap()
        .write_all(burst.as_bytes())
        .unwrap();
    for i in 0..1000 {
        assert_eq!(p.next(), json!({"type":"ack","id":format!("d{i}")}));
    }
    p.send(json!({"type":"shutdown"}));
    assert_eq!(p.wait_exit().code(), Some(0));
    let rec = p.record();
    assert!(!rec.iter().any(|e| e["msg"]["type"] == "deliver"));
    let last = rec.iter().rev().find(|e| e["event"] == "count").unwrap();
    assert_eq!(last["n"], 1000);
}

#[test]
fn ignore_shutdown_and_sigterm() {
    let mut p = Proc::start(&["--ignore-shutdown", "--control", "{dir}/control.jsonl"]);
    p.init();
    p.next_of("ready");
    p.send(json!({"type":"shutdown"}));
    p.wait_event(event("shutdown"));
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(p.child.id() as i32, libc::SIGTERM);
    }
    p.stdin = None;
    p.control(json!({"raw":"still here"}));
    assert_eq!(p.line(), b"still here");
    assert!(p.child.try_wait().unwrap().is_none());
}

#[test]
fn ignore_ping_no_reply_slow_rpc() {
    let mut p = Proc::start(&[
        "--ignore-ping",
        "--no-reply",
        "--control",
        "{dir}/control.jsonl",
    ]);
    p.init();
    p.next_of("ready");
    p.send(json!({"type":"ping"}));
    p.send(json!({"type":"rpc_request","id":"r1","from":"a","service":"s","method":"m"}));
    p.wait_event(|e| e["msg"]["type"] == "rpc_request");
    p.control(json!({"raw":"marker"}));
    // Neither a pong nor an rpc_response came before the marker.
    assert_eq!(p.line(), b"marker");

    let mut p = Proc::start(&["--echo", "--slow-rpc-ms", "50"]);
    p.init();
    p.next_of("ready");
    let t = Instant::now();
    p.send(json!({"type":"rpc_request","id":"r1","from":"a","service":"s","method":"m"}));
    p.send(json!({"type":"rpc_request","id":"r2","from":"a","service":"s","method":"m"}));
    let mut ids = vec![p.next()["id"].clone(), p.next()["id"].clone()];
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(ids, [json!("r1"), json!("r2")]);
    assert!(t.elapsed() >= Duration::from_millis(50));
}

#[test]
fn stop_reading_after_deps_ready() {
    let mut p = Proc::start(&["--stop-reading", "--control", "{dir}/control.jsonl"]);
    p.init();
    p.next_of("ready");
    p.send(json!({"type":"deps_ready"}));
    p.wait_event(event("stopped_reading"));
    p.send(json!({"type":"ping"}));
    p.control(json!({"raw":"marker"}));
    assert_eq!(p.line(), b"marker");
    // Input keeps piling up unread and the process stays alive.
    let big = vec![b' '; 256 * 1024];
    let mut stdin = p.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = stdin.write_all(&big);
        let _ = tx.send(r.is_ok());
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "stdin was drained"
    );
    assert!(p.child.try_wait().unwrap().is_none());
    assert!(!p.record().iter().any(|e| e["msg"]["type"] == "ping"));
}

#[test]
fn probes_and_grandchild() {
    let mut p = Proc::start(&[
        "--try-read",
        "{dir}/record.jsonl",
        "--try-read",
        "{dir}/missing",
        "--try-write",
        "{dir}/written",
        "--try-env",
        "PONS_TEST_MARKER",
        "--try-env",
        "PONS_NOT_SET_ANYWHERE",
        "--try-open-files",
        "5",
        "--try-exec",
        "/bin/true",
        "--try-exec",
        "{dir}/missing",
        "--grandchild",
    ]);
    let g = p.wait_event(event("grandchild"));
    let rec = p.record();
    let find = |name: &str, n: usize| {
        rec.iter()
            .filter(|e| e["event"] == name)
            .nth(n)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} #{n}: {rec:#?}"))
    };
    assert_eq!(find("try_read", 0)["ok"], true);
    assert_eq!(find("try_read", 1)["ok"], false);
    assert_eq!(find("try_read", 1)["errno"], 2);
    assert_eq!(find("try_write", 0)["ok"], true);
    assert!(p.path("written").exists());
    assert_eq!(find("try_env", 0)["value"], "m1");
    assert_eq!(find("try_env", 1)["ok"], false);
    assert_eq!(find("try_open_files", 0)["opened"], 5);
    assert_eq!(find("try_exec", 0)["code"], 0);
    assert_eq!(find("try_exec", 1)["ok"], false);
    let pid = g["pid"].as_i64().unwrap() as i32;
    // The grandchild is alive and in the module's process group.
    // SAFETY: plain syscalls on pids we own.
    unsafe {
        assert_eq!(libc::kill(pid, 0), 0);
        assert_eq!(libc::getpgid(pid), libc::getpgid(p.child.id() as i32));
        libc::kill(pid, libc::SIGKILL);
    }
    p.init();
    p.next_of("ready");
}

#[test]
fn relay_copies_raw_lines_from_its_socket_after_deps_ready() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("relay.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut p = Proc::start(&["--relay", sock.to_str().unwrap()]);
    p.init();
    assert_eq!(p.next()["type"], "ready");
    p.send(json!({"type":"deps_ready"}));
    for round in 0..2 {
        // The relay connects (again, after the first peer left) and copies bytes verbatim.
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"not json \xff\x00 {\n{\"type\":\"publish\",\"topic\":\"t\"}\npartial")
            .unwrap();
        drop(s);
        assert_eq!(p.line(), b"not json \xff\x00 {", "round {round}");
        assert_eq!(p.line(), br#"{"type":"publish","topic":"t"}"#);
        assert_eq!(p.line(), b"partial");
    }
    // Its own messages still go out whole.
    p.send(json!({"type":"ping"}));
    assert_eq!(p.next(), json!({"type":"pong"}));
}
