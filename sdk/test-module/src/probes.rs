//! Start-up actions that test the module's surroundings: sandbox probes (`--try-*`), the
//! grandchild process (`--grandchild`) and the garbage burst on stdout (`--garbage`).

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use pons_sdk::Ctx;
use serde_json::{json, Map, Value};

use crate::args::Probe;
use crate::record::Recorder;

/// Runs one probe and records its outcome.
pub fn run(probe: &Probe, rec: &Recorder) {
    let event = match probe {
        Probe::Read(path) => {
            let mut ev = json!({"event": "try_read", "path": path});
            match read(path) {
                Ok(n) => merge(&mut ev, json!({"ok": true, "bytes": n})),
                Err(e) => merge(&mut ev, failure(&e)),
            }
            ev
        }
        Probe::Write(path) => {
            let mut ev = json!({"event": "try_write", "path": path});
            let r = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(b"pons-test-module\n"));
            match r {
                Ok(()) => merge(&mut ev, json!({"ok": true})),
                Err(e) => merge(&mut ev, failure(&e)),
            }
            ev
        }
        Probe::Env(var) => {
            let value = std::env::var_os(var).map(|v| v.to_string_lossy().into_owned());
            json!({"event": "try_env", "var": var, "ok": value.is_some(), "value": value})
        }
        Probe::OpenFiles(n) => {
            let mut files = Vec::new();
            let mut ev = json!({"event": "try_open_files", "requested": n});
            let mut error = None;
            for _ in 0..*n {
                match std::fs::File::open("/dev/null") {
                    Ok(f) => files.push(f),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            merge(
                &mut ev,
                json!({"opened": files.len(), "ok": files.len() as u64 == *n}),
            );
            if let Some(e) = error {
                merge(&mut ev, failure(&e));
                ev["ok"] = json!(false);
            }
            ev
        }
        Probe::Exec(path) => {
            let mut ev = json!({"event": "try_exec", "path": path});
            let status = Command::new(path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            match status {
                Ok(s) => merge(&mut ev, json!({"ok": true, "code": s.code()})),
                Err(e) => merge(&mut ev, failure(&e)),
            }
            ev
        }
    };
    rec.event(&event);
}

/// Reads a file (its byte count) or lists a directory (its entry count).
fn read(path: &str) -> std::io::Result<usize> {
    if std::fs::metadata(path)?.is_dir() {
        return Ok(std::fs::read_dir(path)?.count());
    }
    let mut buf = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf.len())
}

fn failure(e: &std::io::Error) -> Value {
    json!({"ok": false, "error": e.to_string(), "errno": e.raw_os_error()})
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        let b: Map<String, Value> = b;
        a.extend(b);
    }
}

/// Spawns `sleep 1000` in this process group (stdio detached) and records its pid.
pub fn grandchild(rec: &Recorder) {
    let child = Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(c) => rec.event(&json!({"event": "grandchild", "pid": c.id()})),
        Err(e) => rec.event(&json!({"event": "grandchild", "error": e.to_string()})),
    }
}

/// Size of the oversize line written by `--garbage` (over the kernel's 10 MiB default cap).
pub const BIG_LINE: usize = 11 * 1024 * 1024;

/// Writes the garbage burst to stdout: plain text, binary bytes, `42`, `[1,2]`, an unknown
/// type, a publish with a 300-char topic, then an 11 MiB publish line.
pub fn garbage(ctx: &Ctx, rec: &Recorder) {
    let topic = "t".repeat(300);
    let mut bytes = Vec::with_capacity(BIG_LINE + 4096);
    bytes.extend_from_slice(b"this is not json {\n");
    bytes.extend_from_slice(b"\xff\xfe\x00\x01binary\n");
    bytes.extend_from_slice(b"42\n[1,2]\n{\"type\":\"bogus\"}\n");
    bytes.extend_from_slice(
        format!("{{\"type\":\"publish\",\"topic\":\"{topic}\",\"payload\":1}}\n").as_bytes(),
    );
    let head = b"{\"type\":\"publish\",\"topic\":\"garbage.big\",\"payload\":\"";
    let tail = b"\"}\n";
    bytes.extend_from_slice(head);
    bytes.resize(bytes.len() + BIG_LINE - head.len() - tail.len() + 1, b'x');
    bytes.extend_from_slice(tail);
    match ctx.send_bytes(&bytes) {
        Ok(()) => rec.event(&json!({"event": "garbage_sent", "bigLineBytes": BIG_LINE})),
        Err(e) => rec.event(&json!({"event": "garbage_sent", "error": e})),
    }
}
