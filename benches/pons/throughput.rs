//! Publish → deliver throughput (1 → 1 and 1 → 10 subscribers, 128 B and 4 KiB payloads) and the
//! 200,000-message burst. Through the kernel a publisher module bursts `publish` lines; the
//! baseline streams the same `deliver` lines the kernel would write straight into the same
//! subscriber binary over a pipe (one writer thread per subscriber). Subscribers stamp the
//! receive times of their first and N-th delivery (`--bench-expect N`). Every case runs free and
//! pinned to one CPU; best with best.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{records, test_module_bin, wait_records, BenchHome, Spec};
use crate::placement::BOTH;
use crate::report::{Figure, Pick, Placed, Target};
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
    let cases: &[(usize, usize, u64)] = if q {
        &[(1, 128, 50_000), (10, 128, 10_000)]
    } else {
        &[
            (1, 128, 200_000),
            (1, 4096, 40_000),
            (10, 128, 40_000),
            (10, 4096, 8_000),
        ]
    };
    let mut figs = Vec::new();
    for &(subs, bytes, n) in cases {
        // [placement] → (direct, through the kernel)
        let runs: Vec<(Stream, KernelRun)> = BOTH
            .iter()
            .map(|p| {
                let _placed = p.enter();
                (
                    direct(subs, bytes, n),
                    through_kernel(subs, bytes, n, Duration::from_secs(120)),
                )
            })
            .collect();
        let size = if bytes >= 1024 {
            format!("{} KiB", bytes / 1024)
        } else {
            format!("{bytes} B")
        };
        let target = (subs == 1 && bytes == 128).then_some(Target::RatioAtLeast(0.5));
        let rate = |r: &(Stream, KernelRun)| r.1.stream.map_or(0.0, Stream::rate);
        let mut details = serde_json::Map::new();
        details.insert(
            "case".into(),
            json!({"subscribers": subs, "payloadBytes": bytes, "perSubscriber": n}),
        );
        for (p, r) in BOTH.iter().zip(&runs) {
            details.insert(
                p.name().into(),
                json!({"pons": r.1.stream.map(Stream::json), "direct": r.0.json(),
                       "delivered": r.1.delivered,
                       "kernelCpuNsPerDelivery": r.1.cpu_ns_per_delivery}),
            );
        }
        figs.push(Figure::placed(
            "throughput",
            format!("publish→deliver 1→{subs}, {size} (lossless)"),
            "msg/s",
            Pick::Max,
            Placed::new(rate(&runs[0]), rate(&runs[1])),
            Some((
                "direct pipe",
                Placed::new(runs[0].0.rate(), runs[1].0.rate()),
            )),
            target,
            details.into(),
        ));
        if bytes == 128 {
            figs.push(Figure::placed(
                "throughput",
                format!("kernel CPU per delivery 1→{subs}, {size}"),
                "ns",
                Pick::Min,
                Placed::new(runs[0].1.cpu_ns_per_delivery, runs[1].1.cpu_ns_per_delivery),
                None,
                None,
                json!({"note": "kernel process CPU (all threads, /proc/<pid>/task/*/schedstat) from the burst command to the last ack, divided by deliveries"}),
            ));
        }
    }
    figs
}

/// The 200,000-message burst: delivered count (must be all of them, in both placements) and
/// time, with the direct stream of the same lines as the baseline for the time.
pub fn burst(_opts: &Opts) -> Vec<Figure> {
    const N: u64 = 200_000;
    let runs: Vec<(Stream, KernelRun)> = BOTH
        .iter()
        .map(|p| {
            let _placed = p.enter();
            (
                direct(1, 128, N),
                through_kernel(1, 128, N, Duration::from_secs(60)),
            )
        })
        .collect();
    let mut details = serde_json::Map::new();
    details.insert("messages".into(), json!(N));
    details.insert("payloadBytes".into(), json!(128));
    for (p, r) in BOTH.iter().zip(&runs) {
        details.insert(
            p.name().into(),
            json!({"pons": r.1.stream.map(Stream::json), "direct": r.0.json(),
                   "delivered": r.1.delivered}),
        );
    }
    let ms = |s: Stream| s.span_us as f64 / 1000.0;
    let span = |r: &(Stream, KernelRun)| r.1.stream.map_or(f64::NAN, ms);
    vec![
        Figure::placed(
            "burst",
            "200,000-message burst: delivered",
            "msgs",
            Pick::Min,
            Placed::new(runs[0].1.delivered as f64, runs[1].1.delivered as f64),
            None,
            Some(Target::Exactly(N as f64)),
            details.into(),
        ),
        Figure::placed(
            "burst",
            "200,000-message burst: time",
            "ms",
            Pick::Min,
            Placed::new(span(&runs[0]), span(&runs[1])),
            Some(("direct pipe", Placed::new(ms(runs[0].0), ms(runs[1].0)))),
            None,
            Value::Null,
        ),
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
