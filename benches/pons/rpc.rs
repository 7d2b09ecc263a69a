//! RPC round trip: a client module makes N sequential RPCs to an echo module, through the kernel
//! (module → kernel → module → kernel → module) and, as the baseline, straight over two pipes
//! (the same two test-module binaries, the client's stdout wired to the echo's stdin and back).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{test_module_bin, wait_records, BenchHome, Spec};
use crate::report::{Figure, Target};
use crate::Opts;

/// Bytes of `pad` in the params of each call.
const PAD: usize = 16;

pub fn run(opts: &Opts) -> Vec<Figure> {
    let n = if opts.quick { 3_000 } else { 30_000 };
    let direct = direct(n);
    let kernel = through_kernel(n);
    let f = |key: &str| {
        (
            kernel[key].as_f64().unwrap_or(0.0),
            direct[key].as_f64().unwrap_or(0.0),
        )
    };
    let details = json!({"calls": n, "paramsPadBytes": PAD, "pons": kernel, "direct": direct});
    let (k50, d50) = f("p50_us");
    let (k99, d99) = f("p99_us");
    let (kmean, dmean) = f("mean_us");
    vec![
        Figure {
            bench: "rpc",
            metric: "RPC round trip p50".into(),
            unit: "µs",
            pons: k50,
            baseline: Some(d50),
            baseline_name: "direct pipe",
            target: Some(Target::RatioAtMost(2.5)),
            details: details.clone(),
        },
        Figure {
            bench: "rpc",
            metric: "RPC round trip p99".into(),
            unit: "µs",
            pons: k99,
            baseline: Some(d99),
            baseline_name: "direct pipe",
            target: None,
            details: Value::Null,
        },
        Figure {
            bench: "rpc",
            metric: "RPC round trip mean".into(),
            unit: "µs",
            pons: kmean,
            baseline: Some(dmean),
            baseline_name: "direct pipe",
            target: None,
            details: Value::Null,
        },
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
