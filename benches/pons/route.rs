//! The routing core alone, in process: the CPU cost of one message through
//! `Core::handle_line` (decode, checks, lookups, encode into the target's outbox), with the
//! outboxes drained the way the writer task does. No processes, no pipes, no scheduler: this is
//! the figure to watch when changing the hot path (the end-to-end benchmarks are dominated by
//! the modules and the pipes).
//!
//! Measured: a publish to 1 and to 10 subscribers (plus the subscribers' acks, since every
//! delivery comes back as one), and an RPC (request in, response back).

use std::sync::Arc;
use std::time::Instant;

use pons::kernel::outbox::Outbox;
use pons::kernel::router::{Core, Entry, Settings};
use pons_reconciler::config::EnforcementMode;
use pons_reconciler::{build_desired, DesiredModule};
use serde_json::json;

use crate::harness::{BenchHome, Spec};
use crate::report::{quantile, Figure};
use crate::Opts;

const TOPIC: &str = "bench:t";

pub fn run(opts: &Opts) -> Vec<Figure> {
    let rounds = if opts.quick { 3 } else { 7 };
    let n = if opts.quick { 100_000 } else { 300_000 };
    let mut figs = Vec::new();
    for subs in [1usize, 10] {
        let mut r = Router::new(subs);
        let ns: Vec<f64> = (0..rounds)
            .map(|_| r.publish_round(n / subs as u64))
            .collect();
        figs.push(figure(
            &format!("route publish→{subs} + acks (per delivery)"),
            ns,
        ));
    }
    let mut r = Router::new(1);
    let ns: Vec<f64> = (0..rounds).map(|_| r.rpc_round(n / 2)).collect();
    figs.push(figure("route RPC request + response", ns));
    figs
}

fn figure(metric: &str, mut ns: Vec<f64>) -> Figure {
    Figure::single(
        "route",
        metric,
        "ns",
        quantile(&mut ns.clone(), 0.5),
        None,
        json!({"roundsNs": ns.clone(), "min": quantile(&mut ns, 0.0)}),
    )
}

/// A `Core` with `pub` (publishes `bench:t`, calls service `svc`), `prov` (provides `svc`) and
/// `subs` subscribers, all ready, each with an outbox.
struct Router {
    core: Core,
    ids: Vec<Arc<str>>,
    outboxes: Vec<Arc<Outbox>>,
    batch: Vec<u8>,
    _home: BenchHome,
}

impl Router {
    fn new(subs: usize) -> Router {
        let mut home = BenchHome::new();
        let mut specs = vec![
            Spec::new(
                "pub",
                json!({"publishes": [TOPIC], "requires": ["svc"]}),
                &[],
            ),
            Spec::new("prov", json!({"provides": ["svc"]}), &[]),
        ];
        for i in 0..subs {
            specs.push(Spec::new(
                &format!("sub{i}"),
                json!({"subscribes": [TOPIC]}),
                &[],
            ));
        }
        home.add_all(&specs);
        let env = std::env::vars().collect();
        let snap = pons::snapshot_io::read_snapshot(&pons::home::Home::new(home.path()), &env);
        let desired = build_desired(&snap, None);
        assert_eq!(
            desired.modules.len(),
            subs + 2,
            "{:?}",
            desired.blocked.first()
        );

        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        let mut core = Core::new(
            Settings {
                enforcement: EnforcementMode::Strict,
                rpc_timeout: std::time::Duration::from_secs(30),
                max_pending_rpcs: 1024,
                home: home.path().to_string_lossy().into_owned(),
            },
            events,
            Arc::new(tokio::sync::Notify::new()),
        );
        // Providers first, as the kernel would have them ready.
        let mut ids = Vec::new();
        let mut outboxes = Vec::new();
        for id in desired.order.iter() {
            let d: Arc<DesiredModule> = Arc::new(desired.modules[id].clone());
            let (sup, _) = tokio::sync::mpsc::unbounded_channel();
            let mut e = Entry::new(d, sup);
            let ob = Outbox::new();
            e.outbox = Some(ob.clone());
            let key: Arc<str> = Arc::from(id.as_str());
            core.modules.insert(key.clone(), e);
            core.declared.extend(
                desired.modules[id]
                    .manifest
                    .provides
                    .iter()
                    .map(|s| (s.clone(), key.clone())),
            );
            let mut congested = Vec::new();
            core.handle_line(&key, 0, br#"{"type":"ready"}"#, &mut congested);
            ids.push(key);
            outboxes.push(ob);
        }
        let mut r = Router {
            core,
            ids,
            outboxes,
            batch: Vec::new(),
            _home: home,
        };
        r.drain();
        r
    }

    fn id(&self, name: &str) -> Arc<str> {
        self.ids
            .iter()
            .find(|i| &***i == name)
            .cloned()
            .expect("module")
    }

    /// Empties every outbox like the writer task; returns the deliver ids found (for acks).
    fn drain(&mut self) -> usize {
        let mut bytes = 0;
        for ob in &self.outboxes {
            ob.swap_queued(&mut self.batch);
            let n = self.batch.len();
            bytes += n;
            self.batch.clear();
            ob.written(n);
        }
        bytes
    }

    /// `n` publishes (each followed by every subscriber's ack); ns per delivery.
    fn publish_round(&mut self, n: u64) -> f64 {
        let publisher = self.id("pub");
        let subs: Vec<Arc<str>> = self
            .ids
            .iter()
            .filter(|i| i.starts_with("sub"))
            .cloned()
            .collect();
        let pad = "x".repeat(104);
        let lines: Vec<Vec<u8>> = (0..256)
            .map(|i| format!(r#"{{"type":"publish","topic":"{TOPIC}","payload":{{"seq":{i},"pad":"{pad}"}}}}"#).into_bytes())
            .collect();
        let ack = br#"{"type":"ack","id":"6c1f0a52-8f5e-4a57-9d0b-2f1f6e9b3c11"}"#;
        let mut congested = Vec::new();
        let t = Instant::now();
        for i in 0..n {
            self.core
                .handle_line(&publisher, 0, &lines[(i % 256) as usize], &mut congested);
            for s in &subs {
                self.core.handle_line(s, 0, ack, &mut congested);
            }
            if i % 64 == 63 {
                self.drain();
            }
        }
        self.drain();
        assert!(congested.is_empty(), "outboxes never congest here");
        t.elapsed().as_nanos() as f64 / (n * subs.len() as u64) as f64
    }

    /// `n` RPCs: request from `pub`, response from `prov`; ns per RPC.
    fn rpc_round(&mut self, n: u64) -> f64 {
        let caller = self.id("pub");
        let prov = self.id("prov");
        let mut congested = Vec::new();
        let mut req = Vec::new();
        let mut resp = Vec::new();
        // The kernel numbers its ids `k-1`, `k-2`, …: read the id from the forwarded request.
        let t = Instant::now();
        for i in 0..n {
            req.clear();
            req.extend_from_slice(br#"{"type":"rpc_request","id":"c-"#);
            req.extend_from_slice(i.to_string().as_bytes());
            req.extend_from_slice(
                br#"","service":"svc","method":"echo","params":{"pad":"xxxxxxxxxxxxxxxx"}}"#,
            );
            self.core.handle_line(&caller, 0, &req, &mut congested);
            let ob = &self.outboxes[self.ids.iter().position(|x| *x == prov).expect("prov")];
            ob.swap_queued(&mut self.batch);
            let kid = kernel_id(&self.batch);
            let len = self.batch.len();
            self.batch.clear();
            ob.written(len);
            resp.clear();
            resp.extend_from_slice(br#"{"type":"rpc_response","id":""#);
            resp.extend_from_slice(kid.as_bytes());
            resp.extend_from_slice(
                br#"","result":{"echo":{"pad":"xxxxxxxxxxxxxxxx"},"method":"echo","from":"pub"}}"#,
            );
            self.core.handle_line(&prov, 0, &resp, &mut congested);
            self.drain();
        }
        t.elapsed().as_nanos() as f64 / n as f64
    }
}

/// The `id` of the (single) rpc_request line in `batch`.
fn kernel_id(batch: &[u8]) -> String {
    let text = std::str::from_utf8(batch).unwrap_or("");
    let start = text.find(r#""id":""#).map_or(0, |i| i + 6);
    let end = text[start..].find('"').map_or(start, |i| start + i);
    text[start..end].to_string()
}
