//! `--control FILE`: a thread polls FILE every 10 ms for newly appended JSON lines and runs
//! each as a command, recording the result. RPCs and calls run on their own threads so a slow
//! one does not hold up later commands.
//!
//! Commands: `{"publish":{"topic","payload"}}`, `{"rpc":{"service","method","params"}}`,
//! `{"call":{"method","params"}}`, `{"exit":code}`, `{"raw":"<line>","repeat"?:N}`,
//! `{"ready":true}`, `{"log":{"level","msg","data"}}`, `{"stop_reading":true}`,
//! `{"pause_reading_ms":N,"after_deliveries"?:K}`,
//! `{"burst":{"topic","count","bytes"}}` (like `--publish`, on its own thread).

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use serde_json::{json, Value};

use crate::actions::Actions;
use crate::args::Burst;

/// Starts the polling thread.
pub fn start(path: String, actions: Actions) {
    let spawned = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || poll(&path, &actions));
    if let Err(e) = spawned {
        eprintln!("pons-test-module: cannot start the control thread: {e}");
    }
}

fn poll(path: &str, actions: &Actions) {
    // Commands run at most once across restarts of the module: the consumed offset is kept in
    // `<FILE>.pos`, so a restarted process does not replay what its predecessor already ran.
    let pos_path = format!("{path}.pos");
    let mut offset: u64 = std::fs::read_to_string(&pos_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mut pending = Vec::new();
    loop {
        if let Ok(mut f) = std::fs::File::open(path) {
            if f.seek(SeekFrom::Start(offset)).is_ok() {
                let mut fresh = Vec::new();
                if let Ok(n) = f.read_to_end(&mut fresh) {
                    // Only whole lines count as consumed.
                    let whole = fresh.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                    fresh.truncate(whole);
                    offset += whole as u64;
                    if n > 0 && whole > 0 {
                        let _ = std::fs::write(&pos_path, offset.to_string());
                    }
                    pending.extend_from_slice(&fresh);
                }
            }
        }
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if !text.is_empty() {
                run(text, actions);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run(line: &str, a: &Actions) {
    let cmd: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return bad(a, line, &format!("not JSON: {e}")),
    };
    if let Some(p) = cmd.get("publish") {
        let Some(topic) = p["topic"].as_str() else {
            return bad(a, line, "publish needs a string topic");
        };
        let r = match p.get("payload") {
            Some(payload) => a.ctx.publish(topic, payload),
            None => a.ctx.publish_raw(topic, None),
        };
        let mut ev = json!({"event": "control_publish", "topic": topic, "ok": r.is_ok()});
        if let Err(e) = r {
            ev["error"] = json!(e);
        }
        a.rec.event(&ev);
    } else if let Some(r) = cmd.get("rpc") {
        let (Some(service), Some(method)) = (r["service"].as_str(), r["method"].as_str()) else {
            return bad(a, line, "rpc needs string service and method");
        };
        let (service, method, params) =
            (service.to_owned(), method.to_owned(), r["params"].clone());
        a.spawn(move |a| a.rpc(&service, &method, &params, "control"));
    } else if let Some(c) = cmd.get("call") {
        let Some(method) = c["method"].as_str() else {
            return bad(a, line, "call needs a string method");
        };
        let (method, params) = (method.to_owned(), c["params"].clone());
        a.spawn(move |a| a.call(&method, &params, "control"));
    } else if let Some(code) = cmd.get("exit") {
        let code = code.as_i64().unwrap_or(0) as i32;
        let _ = a.ctx.flush();
        a.rec.event(&json!({"event": "exit", "code": code}));
        std::process::exit(code);
    } else if let Some(raw) = cmd.get("raw") {
        let Some(text) = raw.as_str() else {
            return bad(a, line, "raw needs a string");
        };
        let repeat = cmd.get("repeat").and_then(Value::as_u64).unwrap_or(1);
        let r = a.ctx.batch(|batch| {
            for _ in 0..repeat {
                batch.send_line(text)?;
            }
            Ok::<(), String>(())
        });
        let r = r.and_then(|r| r);
        a.rec
            .event(&json!({"event": "raw_sent", "ok": r.is_ok(), "count": repeat}));
    } else if cmd.get("ready").is_some() {
        a.ready();
    } else if let Some(l) = cmd.get("log") {
        let level = l["level"].as_str().unwrap_or("info");
        let msg = l["msg"].as_str().unwrap_or("");
        let r = a.ctx.log(level, msg, l.get("data"));
        a.rec.event(&json!({"event": "log_sent", "ok": r.is_ok()}));
    } else if let Some(b) = cmd.get("burst") {
        let (Some(topic), Some(count)) = (b["topic"].as_str(), b["count"].as_u64()) else {
            return bad(a, line, "burst needs a string topic and a number count");
        };
        let burst = Burst {
            topic: topic.to_owned(),
            count,
            pad: b["bytes"].as_u64().unwrap_or(0) as usize,
        };
        a.spawn(move |a| a.burst(&burst));
    } else if let Some(ms) = cmd.get("pause_reading_ms") {
        let Some(ms) = ms.as_u64() else {
            return bad(a, line, "pause_reading_ms needs a number");
        };
        let after = cmd
            .get("after_deliveries")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        a.pause_reading(ms, after);
    } else if cmd.get("stop_reading").is_some() {
        a.ctx.stop_reading();
        a.rec.event(&json!({"event": "stopped_reading"}));
    } else {
        bad(a, line, "unknown command");
    }
}

fn bad(a: &Actions, line: &str, error: &str) {
    a.rec
        .event(&json!({"event": "control_error", "line": line, "error": error}));
}
