//! The cluster (issue 13): two kernels joined through a real `nats-server` on this machine.
//! - RPC: a client module on node B makes N sequential RPCs to an echo module on node A
//!   (module → kernel B → NATS → kernel A → module and back); baseline: N sequential
//!   request-replies between two plain async-nats clients (a requester and an echoing
//!   responder) through the same server, in the same run. A second baseline, "relayed NATS
//!   request-reply" (`relay.rs`), puts a relay process between each plain client and NATS so a
//!   round trip wakes as many processes as one through pons (8, the direct one 4): an extra
//!   figure without target, to tell the structural cost of the extra hops from the kernels' own.
//! - Pub/sub: a publisher module on A bursts N messages of an exported topic to a subscriber
//!   module on B; baseline: a plain async-nats publisher → subscriber of N messages of the same
//!   size. Rates are measured on the receiving side, first to last receive.
//!
//! As the other benches: free and pinned to one CPU (the server, both kernels, their modules and
//! the baseline's clients alike; a server per placement), a few trials in each, the best trial
//! of each side per placement, then best with best (`Figure::placed`). Skipped (no figures)
//! without `nats-server` (`apt-get install nats-server`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::{records, wait_for, wait_records, BenchHome, Spec};
use crate::placement::BOTH;
use crate::report::{quantile, Figure, Pick, Placed, Target};
use crate::Opts;

const TOPIC: &str = "bench.t";
/// Bytes of `pad` in each RPC's params.
const PAD: usize = 16;
/// Payload size of the pub/sub figures.
const BYTES: usize = 128;

/// One trial's records: RPC percentiles and pub/sub streams, through the kernels and direct.
struct Trial {
    pons_rpc: Value,
    direct_rpc: Value,
    relayed_rpc: Value,
    pons_tp: Value,
    direct_tp: Value,
}

impl Trial {
    fn json(&self) -> Value {
        json!({"pons": {"rpc": self.pons_rpc, "pubsub": self.pons_tp},
               "direct": {"rpc": self.direct_rpc, "pubsub": self.direct_tp},
               "relayed": {"rpc": self.relayed_rpc}})
    }
}

pub fn run(opts: &Opts) -> Vec<Figure> {
    let Some(bin) = nats_server() else {
        eprintln!("   cluster: skipped: no nats-server (apt-get install nats-server)");
        return Vec::new();
    };
    let (n_rpc, n_msgs, trials) = if opts.quick {
        (2_000u64, 20_000u64, 2)
    } else {
        (20_000, 100_000, 3)
    };
    // [placement][trial]
    let runs: Vec<Vec<Trial>> = BOTH
        .iter()
        .map(|p| {
            let _placed = p.enter();
            // Started under the placement: the server and the runtime's worker threads inherit it.
            let server = Server::start(&bin);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            (0..trials)
                .map(|_| {
                    let direct_rpc = rt.block_on(direct_rpc(&server.url, n_rpc));
                    let relayed_rpc = rt.block_on(crate::relay::relayed_rpc(
                        &server.url,
                        n_rpc,
                        rpc_body().as_bytes(),
                    ));
                    let direct_tp = rt.block_on(direct_pubsub(&server.url, n_msgs));
                    let (pons_rpc, pons_tp) = through_kernels(&server.url, n_rpc, n_msgs);
                    Trial {
                        pons_rpc,
                        direct_rpc,
                        relayed_rpc,
                        pons_tp,
                        direct_tp,
                    }
                })
                .collect()
        })
        .collect();

    // The best trial of one side in each placement.
    let placed = |pick: Pick, get: &dyn Fn(&Trial) -> &Value, key: &str| {
        let best = |trials: &[Trial]| {
            trials
                .iter()
                .map(|t| get(t)[key].as_f64().unwrap_or(f64::NAN))
                .fold(f64::NAN, |a, b| pick.best(a, b))
        };
        Placed::new(best(&runs[0]), best(&runs[1]))
    };
    let mut details = serde_json::Map::new();
    details.insert("calls".into(), json!(n_rpc));
    details.insert("paramsPadBytes".into(), json!(PAD));
    details.insert("messages".into(), json!(n_msgs));
    details.insert("payloadBytes".into(), json!(BYTES));
    details.insert("trials".into(), json!(trials));
    for (p, ts) in BOTH.iter().zip(&runs) {
        details.insert(
            p.name().into(),
            Value::Array(ts.iter().map(Trial::json).collect()),
        );
    }
    let rpc = |metric: &str, key: &str, target: Option<Target>, details: Value| {
        Figure::placed(
            "cluster",
            metric,
            "µs",
            Pick::Min,
            placed(Pick::Min, &|t| &t.pons_rpc, key),
            Some((
                "NATS request-reply",
                placed(Pick::Min, &|t| &t.direct_rpc, key),
            )),
            target,
            details,
        )
    };
    let tp = |metric: String, unit: &'static str, pick: Pick, key: &str, target| {
        Figure::placed(
            "cluster",
            metric,
            unit,
            pick,
            placed(pick, &|t| &t.pons_tp, key),
            Some(("NATS pub→sub", placed(pick, &|t| &t.direct_tp, key))),
            target,
            Value::Null,
        )
    };
    vec![
        rpc(
            "cross-node RPC round trip p50",
            "p50_us",
            Some(Target::RatioAtMost(1.5)),
            details.into(),
        ),
        rpc("cross-node RPC round trip p99", "p99_us", None, Value::Null),
        // The same round trip against plain clients that wake as many processes: no target.
        Figure::placed(
            "cluster",
            "cross-node RPC round trip p50 vs relayed",
            "µs",
            Pick::Min,
            placed(Pick::Min, &|t| &t.pons_rpc, "p50_us"),
            Some((
                "relayed NATS request-reply",
                placed(Pick::Min, &|t| &t.relayed_rpc, "p50_us"),
            )),
            None,
            Value::Null,
        ),
        tp(
            format!("cross-node publish→deliver 1→1, {BYTES} B"),
            "msg/s",
            Pick::Max,
            "msgsPerSec",
            Some(Target::RatioAtLeast(0.5)),
        ),
        // At-most-once: the fewest delivered in any trial (a loss is never hidden by a
        // complete trial).
        tp(
            format!("cross-node publish→deliver 1→1, {BYTES} B: delivered"),
            "msgs",
            Pick::Min,
            "delivered",
            None,
        ),
    ]
}

fn nats_server() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin"])
        .map(|d| PathBuf::from(d).join("nats-server"))
        .find(|p| p.is_file());
    found
}

/// A nats-server on a free loopback port; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(bin: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        wait_for(
            "nats-server to listen",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        Server {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percentiles of round trips in microseconds, in the shape the test module records.
pub fn percentiles(mut us: Vec<f64>) -> Value {
    let n = us.len();
    let mean = us.iter().sum::<f64>() / n.max(1) as f64;
    json!({"n": n, "p50_us": quantile(&mut us, 0.5), "p90_us": quantile(&mut us, 0.9),
           "p99_us": quantile(&mut us, 0.99), "mean_us": mean})
}

/// Two plain clients: a responder echoing each request, a requester timing `n` sequential
/// request-replies of a body like the one pons sends.
async fn direct_rpc(url: &str, n: u64) -> Value {
    let responder = async_nats::connect(url).await.expect("connect responder");
    let requester = async_nats::connect(url).await.expect("connect requester");
    let mut sub = responder
        .queue_subscribe("direct.svc.bench".to_string(), "direct.svc.bench".into())
        .await
        .expect("subscribe");
    let echo = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = echo.publish(reply, m.payload).await;
            }
        }
    });
    responder.flush().await.expect("flush");
    let body = bytes::Bytes::from(rpc_body());
    // async-nats' flush only writes the responder's SUB: the server may not know it yet when
    // the first request comes (`no responders` on a busy machine). Wait until one is answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = requester
        .request("direct.svc.bench".to_string(), body.clone())
        .await
    {
        assert!(Instant::now() < deadline, "no responder after 10 s: {e}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let warm = (n / 10).clamp(10, 1000);
    let mut us = Vec::with_capacity(n as usize);
    for i in 0..warm + n {
        let t = Instant::now();
        requester
            .request("direct.svc.bench".to_string(), body.clone())
            .await
            .expect("request");
        if i >= warm {
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    task.abort();
    percentiles(us)
}

/// A request body like the one pons sends (`{"m","f","p"}`, [`PAD`] bytes of padding).
fn rpc_body() -> String {
    format!(
        "{{\"m\":\"echo\",\"f\":\"client@b\",\"p\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(PAD)
    )
}

/// A plain publisher → subscriber of `n` messages of [`BYTES`] bytes.
async fn direct_pubsub(url: &str, n: u64) -> Value {
    let publisher = async_nats::connect(url).await.expect("connect publisher");
    let subscriber = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(url)
        .await
        .expect("connect subscriber");
    let mut sub = subscriber
        .subscribe("direct.topic.bench.t".to_string())
        .await
        .expect("subscribe");
    subscriber.flush().await.expect("flush");
    let count = tokio::spawn(async move {
        let mut got = 0u64;
        let (mut first, mut last) = (None, Instant::now());
        while got < n {
            match tokio::time::timeout(Duration::from_secs(3), sub.next()).await {
                Ok(Some(_)) => {
                    got += 1;
                    last = Instant::now();
                    first.get_or_insert(last);
                }
                _ => break,
            }
        }
        (got, first.map(|f| last.duration_since(f)))
    });
    let pad = "x".repeat(BYTES.saturating_sub(24));
    for i in 0..n {
        let body = format!("{{\"seq\":{i},\"pad\":\"{pad}\"}}");
        publisher
            .publish("direct.topic.bench.t".to_string(), body.into())
            .await
            .expect("publish");
    }
    publisher.flush().await.expect("flush");
    let (got, span) = count.await.expect("subscriber task");
    let secs = span.map_or(f64::NAN, |d| d.as_secs_f64().max(1e-6));
    json!({"delivered": got, "spanMs": secs * 1000.0, "msgsPerSec": got as f64 / secs})
}

fn cluster_yaml(url: &str, node: &str, section: &str) -> String {
    format!("cluster:\n  url: {url}\n  node: {node}\n{section}")
}

/// Node A: an echo provider and a publisher (exported); node B: the RPC client and a
/// subscriber (imported). Returns the client's RPC record and the subscriber's stream.
fn through_kernels(url: &str, n_rpc: u64, n_msgs: u64) -> (Value, Value) {
    let mut a = BenchHome::new();
    a.write_config(&cluster_yaml(
        url,
        "a",
        &format!("  export: {{services: [bench], topics: ['{TOPIC}']}}\n"),
    ));
    a.add_all(&[
        Spec::new("prov", json!({"provides": ["bench"]}), &["--echo"]),
        Spec::new(
            "pub",
            json!({"publishes": [TOPIC]}),
            &["--control", "{bench}/pub.control"],
        ),
    ]);
    let mut b = BenchHome::new();
    b.write_config(&cluster_yaml(
        url,
        "b",
        &format!("  import: {{services: [bench], topics: ['{TOPIC}']}}\n"),
    ));
    let group = (n_msgs / 20).max(1);
    let rpc = format!("bench:{n_rpc}:{PAD}");
    b.add_all(&[
        Spec::new(
            "client",
            json!({"requires": ["bench"]}),
            &["--bench-rpc", &rpc, "--bench-out", "{bench}/rpc.jsonl"],
        ),
        Spec::new(
            "sub",
            json!({"subscribes": [TOPIC]}),
            &[
                "--bench-expect",
                &group.to_string(),
                "--bench-out",
                "{bench}/tp.jsonl",
            ],
        ),
    ]);
    let ka = a.start_kernel(&[]);
    ka.wait_ready(&["prov", "pub"], Duration::from_secs(30));
    let kb = b.start_kernel(&[]);
    kb.wait_ready(&["sub"], Duration::from_secs(30));
    let rec = wait_records(
        &b.file("rpc.jsonl"),
        "rpc",
        1,
        Duration::from_secs(300),
        Duration::from_millis(50),
    );
    let rpc = rec[0].clone();

    // The subscriber's import is in place once A lists B as a peer (B subscribes first).
    wait_for(
        "node a to hear node b",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let st = ka.request("status")?;
            st["cluster"]["peers"]
                .as_array()?
                .iter()
                .any(|p| p["node"] == "b")
                .then_some(())
        },
    );
    a.command(
        "pub.control",
        json!({"burst": {"topic": TOPIC, "count": n_msgs, "bytes": BYTES.saturating_sub(24)}}),
    );
    // At-most-once: wait for every group, or until none completes for 3 s.
    let out = b.file("tp.jsonl");
    let (mut seen, mut since) = (0, Instant::now());
    while seen < 20 && since.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
        let now = records(&out, "expect").len();
        if now > seen {
            (seen, since) = (now, Instant::now());
        }
    }
    let recs = records(&out, "expect");
    let first = recs.iter().filter_map(|r| r["first_us"].as_u64()).min();
    let last = recs.iter().filter_map(|r| r["last_us"].as_u64()).max();
    let delivered: u64 = recs.iter().filter_map(|r| r["n"].as_u64()).sum();
    let secs = match (first, last) {
        (Some(f), Some(l)) => (l.saturating_sub(f) as f64 / 1e6).max(1e-6),
        _ => f64::NAN,
    };
    let (sa, sb) = (
        ka.request("status").unwrap_or(Value::Null),
        kb.request("status").unwrap_or(Value::Null),
    );
    let tp = json!({"delivered": delivered, "spanMs": secs * 1000.0, "msgsPerSec": delivered as f64 / secs,
                    "droppedOnA": sa["cluster"]["dropped"], "droppedOnB": sb["cluster"]["dropped"],
                    "receivedOnB": sb["cluster"]["received"]});
    (rpc, tp)
}
