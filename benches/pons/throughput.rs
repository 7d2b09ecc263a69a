//! Publish → deliver throughput (1 → 1 and 1 → 10 subscribers, 128 B and 4 KiB payloads) and the
//! 200,000-message burst. Through the kernel a publisher module bursts `publish` lines; the
//! baseline streams the same `deliver` lines the kernel would write straight into the same
//! subscriber binary over a pipe (one writer thread per subscriber). Subscribers stamp the
//! receive times of their first and N-th delivery (`--bench-expect N`).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{records, test_module_bin, wait_records, BenchHome, Spec};
use crate::report::{Figure, Target};
use crate::Opts;

const TOPIC: &str = "bench:t";
const INIT: &str = r#"{"type":"init","protocolVersion":"1.0","config":{},"workspacePath":"/tmp","projectRoot":"/tmp"}"#;

/// Pad length that makes `{"seq":i,"pad":"…"}` about `bytes` long.
fn pad_for(bytes: usize) -> usize {
    bytes.saturating_sub(24)
}

/// One measured stream: deliveries, span from the first to the last receive, rate.
#[derive(Debug, Clone, Copy)]
struct Stream {
    deliveries: u64,
    span_us: u64,
}

impl Stream {
    fn rate(self) -> f64 {
        self.deliveries as f64 / (self.span_us.max(1) as f64 / 1e6)
    }

    fn json(self) -> Value {
        json!({"deliveries": self.deliveries, "spanMs": self.span_us as f64 / 1000.0,
               "msgsPerSec": self.rate()})
    }
}

/// From `k` expect records (one group of `n` each): total deliveries and the overall span.
fn stream_of(recs: &[Value]) -> Stream {
    let first = recs
        .iter()
        .filter_map(|r| r["first_us"].as_u64())
        .min()
        .unwrap_or(0);
    let last = recs
        .iter()
        .filter_map(|r| r["last_us"].as_u64())
        .max()
        .unwrap_or(0);
    let deliveries = recs.iter().filter_map(|r| r["n"].as_u64()).sum();
    Stream {
        deliveries,
        span_us: last.saturating_sub(first),
    }
}

pub fn run(opts: &Opts) -> Vec<Figure> {
    let q = opts.quick;
    let cases: [(usize, usize, u64); 4] = [
        (1, 128, if q { 50_000 } else { 200_000 }),
        (1, 4096, if q { 10_000 } else { 40_000 }),
        (10, 128, if q { 10_000 } else { 40_000 }),
        (10, 4096, if q { 2_000 } else { 8_000 }),
    ];
    let mut figs = Vec::new();
    for (subs, bytes, n) in cases {
        let direct = direct(subs, bytes, n);
        let run = through_kernel(subs, bytes, n, Duration::from_secs(120));
        let kernel = run.stream;
        let size = if bytes >= 1024 {
            format!("{} KiB", bytes / 1024)
        } else {
            format!("{bytes} B")
        };
        let target = (subs == 1 && bytes == 128).then_some(Target::RatioAtLeast(0.3));
        let fig = Figure {
            bench: "throughput",
            metric: format!("publish→deliver 1→{subs}, {size}"),
            unit: "msg/s",
            pons: kernel.map_or(0.0, Stream::rate),
            baseline: Some(direct.rate()),
            baseline_name: "direct pipe",
            target,
            details: json!({"subscribers": subs, "payloadBytes": bytes, "perSubscriber": n,
                            "pons": kernel.map(Stream::json), "direct": direct.json(),
                            "delivered": run.delivered}),
        };
        figs.push(fig);
        if bytes == 128 {
            figs.push(Figure {
                bench: "throughput",
                metric: format!("kernel CPU per delivery 1→{subs}, {size}"),
                unit: "ns",
                pons: run.cpu_ns_per_delivery,
                baseline: None,
                baseline_name: "",
                target: None,
                details: json!({"note": "kernel process CPU (all threads, /proc/<pid>/task/*/schedstat) from the burst command to the last ack, divided by deliveries"}),
            });
        }
    }
    figs
}

/// The 200,000-message burst: delivered count (must be all of them) and time, with the direct
/// stream of the same lines as the baseline for the time.
pub fn burst(_opts: &Opts) -> Vec<Figure> {
    const N: u64 = 200_000;
    let direct = direct(1, 128, N);
    let run = through_kernel(1, 128, N, Duration::from_secs(60));
    let (kernel, total) = (run.stream, run.delivered);
    let details = json!({"messages": N, "payloadBytes": 128, "pons": kernel.map(Stream::json),
                         "direct": direct.json()});
    vec![
        Figure {
            bench: "burst",
            metric: "200,000-message burst: delivered".into(),
            unit: "msgs",
            pons: total as f64,
            baseline: None,
            baseline_name: "",
            target: Some(Target::Exactly(N as f64)),
            details: details.clone(),
        },
        Figure {
            bench: "burst",
            metric: "200,000-message burst: time".into(),
            unit: "ms",
            pons: kernel.map_or(f64::NAN, |s| s.span_us as f64 / 1000.0),
            baseline: Some(direct.span_us as f64 / 1000.0),
            baseline_name: "direct pipe",
            target: None,
            details: Value::Null,
        },
    ]
}

/// Publisher `pub` (bursts on a control command) and `subs` subscribers through the kernel.
/// Returns the stream (`None` if not every delivery arrived within `timeout`) and the total
/// deliveries the subscribers counted.
/// One run through the kernel.
struct KernelRun {
    /// `None` if not every delivery arrived in time.
    stream: Option<Stream>,
    /// Deliveries the subscribers counted.
    delivered: u64,
    /// CPU the kernel process used from the burst command until everything (acks included) was
    /// handled, per delivery.
    cpu_ns_per_delivery: f64,
}

fn through_kernel(subs: usize, bytes: usize, n: u64, timeout: Duration) -> KernelRun {
    let mut home = BenchHome::new();
    let expect = n.to_string();
    let mut specs = vec![Spec::new(
        "pub",
        json!({"publishes": [TOPIC]}),
        &["--control", "{bench}/pub.control"],
    )];
    for i in 0..subs {
        specs.push(Spec::new(
            &format!("sub{i}"),
            json!({"subscribes": [TOPIC]}),
            &["--bench-expect", &expect, "--bench-out", "{bench}/tp.jsonl"],
        ));
    }
    home.add_all(&specs);
    let mut kernel = home.start_kernel(&[]);
    let ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    kernel.wait_ready(&ids, Duration::from_secs(30));
    let cpu0 = kernel.cpu_ns();
    home.command(
        "pub.control",
        json!({"burst": {"topic": TOPIC, "count": n, "bytes": pad_for(bytes)}}),
    );
    let out = home.file("tp.jsonl");
    let got = std::panic::catch_unwind(|| {
        wait_records(&out, "expect", subs, timeout, Duration::from_millis(20))
    });
    // Let the kernel read the last acks.
    std::thread::sleep(Duration::from_millis(100));
    let cpu = kernel.cpu_ns().saturating_sub(cpu0);
    kernel.stop();
    let delivered = records(&out, "delivered")
        .iter()
        .filter_map(|r| r["n"].as_u64())
        .sum();
    KernelRun {
        stream: got.ok().map(|r| stream_of(&r)),
        delivered,
        cpu_ns_per_delivery: cpu as f64 / (n * subs as u64).max(1) as f64,
    }
}

/// The baseline: the deliver lines the kernel would write, streamed into `subs` subscriber
/// processes directly.
fn direct(subs: usize, bytes: usize, n: u64) -> Stream {
    let home = BenchHome::new();
    let out = home.file("direct.jsonl");
    let lines = Arc::new(deliver_lines(n, pad_for(bytes)));
    let mut children: Vec<Child> = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..subs {
        let mut child = Command::new(test_module_bin())
            .args(["--bench-expect", &n.to_string(), "--bench-out"])
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a subscriber");
        let mut stdin = child.stdin.take().expect("stdin");
        // The same state as under the kernel: initialised and ready before the stream starts.
        let _ = writeln!(stdin, "{INIT}");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        while matches!(stdout.read_line(&mut line), Ok(n) if n > 0) && !line.contains("\"ready\"") {
            line.clear();
        }
        std::thread::spawn(move || {
            // Drain the acks.
            let mut buf = vec![0u8; 64 << 10];
            while matches!(stdout.read(&mut buf), Ok(n) if n > 0) {}
        });
        let lines = lines.clone();
        writers.push(std::thread::spawn(move || {
            let _ = stdin.write_all(&lines);
            stdin
        }));
        children.push(child);
    }
    let recs = wait_records(
        &out,
        "expect",
        subs,
        Duration::from_secs(120),
        Duration::from_millis(20),
    );
    for w in writers {
        drop(w.join());
    }
    for mut c in children {
        let _ = c.wait();
    }
    stream_of(&recs)
}

/// `n` deliver lines exactly as the kernel writes them (fresh UUID per delivery).
fn deliver_lines(n: u64, pad: usize) -> Vec<u8> {
    let padding = "x".repeat(pad);
    let mut buf = Vec::with_capacity(n as usize * (pad + 110));
    for i in 0..n {
        let id = uuid::Uuid::new_v4();
        let _ = writeln!(
            buf,
            "{{\"type\":\"deliver\",\"id\":\"{}\",\"topic\":\"{TOPIC}\",\"payload\":{{\"seq\":{i},\"pad\":\"{padding}\"}}}}",
            id.hyphenated()
        );
    }
    buf
}
