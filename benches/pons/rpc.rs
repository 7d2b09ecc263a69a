//! RPC round trip: a client module makes N sequential RPCs to an echo module, through the kernel
//! (module → kernel → module → kernel → module) and, as the baseline, straight over two pipes
//! (the same two test-module binaries, the client's stdout wired to the echo's stdin and back).
//! Both free and pinned to one CPU; best with best.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{test_module_bin, wait_records, BenchHome, Spec};
use crate::placement::BOTH;
use crate::report::{Figure, Pick, Placed, Target};
use crate::Opts;

/// Bytes of `pad` in the params of each call.
const PAD: usize = 16;

pub fn run(opts: &Opts) -> Vec<Figure> {
    let n = if opts.quick { 3_000 } else { 30_000 };
    // [placement] → (kernel record, direct record)
    let runs: Vec<(Value, Value)> = BOTH
        .iter()
        .map(|p| {
            let _placed = p.enter();
            (through_kernel(n), direct(n))
        })
        .collect();
    let placed = |key: &str, kernel: bool| {
        let v = |r: &(Value, Value)| {
            let rec = if kernel { &r.0 } else { &r.1 };
            rec[key].as_f64().unwrap_or(f64::NAN)
        };
        Placed::new(v(&runs[0]), v(&runs[1]))
    };
    let mut details = serde_json::Map::new();
    details.insert("calls".into(), json!(n));
    details.insert("paramsPadBytes".into(), json!(PAD));
    for (p, (k, d)) in BOTH.iter().zip(&runs) {
        details.insert(p.name().into(), json!({"pons": k, "direct": d}));
    }
    let fig = |metric: &str, key: &str, target: Option<Target>, details: Value| {
        Figure::placed(
            "rpc",
            metric,
            "µs",
            Pick::Min,
            placed(key, true),
            Some(("direct pipe", placed(key, false))),
            target,
            details,
        )
    };
    vec![
        fig(
            "RPC round trip p50",
            "p50_us",
            Some(Target::RatioAtMost(2.5)),
            details.into(),
        ),
        fig("RPC round trip p99", "p99_us", None, Value::Null),
    ]
}

/// Through the kernel: `prov` (provides `bench`, `--echo`) and `client` (requires `bench`).
fn through_kernel(n: u64) -> Value {
    let mut home = BenchHome::new();
    let rpc = format!("bench:{n}:{PAD}");
    home.add_all(&[
        Spec::new("prov", json!({"provides": ["bench"]}), &["--echo"]),
        Spec::new(
            "client",
            json!({"requires": ["bench"]}),
            &["--bench-rpc", &rpc, "--bench-out", "{bench}/rpc.jsonl"],
        ),
    ]);
    let _kernel = home.start_kernel(&[]);
    let out = home.file("rpc.jsonl");
    let rec = wait_records(
        &out,
        "rpc",
        1,
        Duration::from_secs(180),
        Duration::from_millis(50),
    );
    check(&rec[0], "through the kernel");
    rec[0].clone()
}

/// Direct: the client's stdout is the echo's stdin and the echo's stdout the client's stdin.
fn direct(n: u64) -> Value {
    let home = BenchHome::new();
    let out = home.file("rpc-direct.jsonl");
    let (to_echo_r, to_echo_w) = std::io::pipe().expect("pipe");
    let (to_client_r, to_client_w) = std::io::pipe().expect("pipe");
    let bin = test_module_bin();
    let mut echo = Command::new(&bin)
        .arg("--echo")
        .stdin(Stdio::from(to_echo_r))
        .stdout(Stdio::from(to_client_w))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the echo module");
    let mut client = Command::new(&bin)
        .args([
            "--bench-rpc",
            &format!("bench:{n}:{PAD}"),
            "--bench-now",
            "--bench-out",
        ])
        .arg(&out)
        .stdin(Stdio::from(to_client_r))
        .stdout(Stdio::from(to_echo_w))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the client module");
    // The Commands (and with them our copies of the pipe ends) are gone: EOF works both ways.
    let rec = wait_records(
        &out,
        "rpc",
        1,
        Duration::from_secs(180),
        Duration::from_millis(50),
    );
    let _ = client.kill();
    let _ = client.wait();
    let _ = echo.kill();
    let _ = echo.wait();
    check(&rec[0], "direct");
    rec[0].clone()
}

fn check(rec: &Value, what: &str) {
    if rec["errors"].as_u64().unwrap_or(0) > 0 {
        eprintln!(
            "warning: {} RPC errors {what}: {}",
            rec["errors"], rec["first_error"]
        );
    }
}
