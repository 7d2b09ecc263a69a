//! Things the test module does on request of its flags or its control file, each recorded:
//! RPCs, kernel calls, publish bursts, `ready`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pons_sdk::Ctx;
use serde_json::{json, Value};

use crate::args::Burst;
use crate::bench::BenchOut;
use crate::record::Recorder;

/// Shared by the handler, the worker threads and the control thread.
#[derive(Clone)]
pub struct Actions {
    pub ctx: Ctx,
    pub rec: Recorder,
    pub manifest: Value,
    pub bench: BenchOut,
    rpc_ids: Arc<AtomicU64>,
    call_ids: Arc<AtomicU64>,
    /// Actions running on their own threads (control RPCs, calls, bursts, the deps_ready work).
    inflight: Arc<AtomicUsize>,
    /// A pause of reading armed by the control file: `(deliveries still to handle, ms)`.
    pause_after: Arc<Mutex<Option<(u64, u64)>>>,
    pause_armed: Arc<AtomicBool>,
}

impl Actions {
    pub fn new(ctx: Ctx, rec: Recorder, manifest: Value, bench: BenchOut) -> Actions {
        Actions {
            ctx,
            rec,
            manifest,
            bench,
            rpc_ids: Arc::new(AtomicU64::new(1)),
            call_ids: Arc::new(AtomicU64::new(1)),
            inflight: Arc::new(AtomicUsize::new(0)),
            pause_after: Arc::new(Mutex::new(None)),
            pause_armed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stops reading stdin for `ms` once `after` more deliveries were handled (at once for 0);
    /// records `{"event":"pause_armed","after","ms"}` (when not at once) and
    /// `{"event":"paused_reading","ms"}` when the pause begins.
    pub fn pause_reading(&self, ms: u64, after: u64) {
        if after == 0 {
            self.begin_pause(ms);
            return;
        }
        *self.pause_after.lock().unwrap_or_else(|e| e.into_inner()) = Some((after, ms));
        self.pause_armed.store(true, Ordering::Release);
        self.rec
            .event(&json!({"event": "pause_armed", "after": after, "ms": ms}));
    }

    /// Counts one delivery against an armed pause.
    pub fn on_deliver(&self) {
        if !self.pause_armed.load(Ordering::Acquire) {
            return;
        }
        let mut armed = self.pause_after.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((left, ms)) = armed.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                let ms = *ms;
                *armed = None;
                self.pause_armed.store(false, Ordering::Release);
                self.begin_pause(ms);
            }
        }
    }

    fn begin_pause(&self, ms: u64) {
        self.ctx.pause_reading(Duration::from_millis(ms));
        self.rec
            .event(&json!({"event": "paused_reading", "ms": ms}));
    }

    /// Runs `f` on its own thread, counted as in flight until it returns.
    pub fn spawn(&self, f: impl FnOnce(&Actions) + Send + 'static) {
        let a = self.clone();
        a.inflight.fetch_add(1, Ordering::AcqRel);
        std::thread::spawn(move || {
            f(&a);
            a.inflight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Before exiting: lets actions whose answer already arrived record it (a reply and the
    /// `shutdown` that follows it are read together), waiting at most `max`.
    pub fn settle(&self, max: Duration) {
        let deadline = Instant::now() + max;
        while self.inflight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Makes an RPC with id `tm-rpc-<n>`; records
    /// `{"event":"rpc_result","id","service","method","source","result"|"error"}`.
    pub fn rpc(&self, service: &str, method: &str, params: &Value, source: &str) {
        let id = format!("tm-rpc-{}", self.rpc_ids.fetch_add(1, Ordering::Relaxed));
        let r = self
            .ctx
            .rpc_with_id(&id, service, method, Some(params), None);
        let mut ev = json!({"event": "rpc_result", "id": id, "service": service,
                            "method": method, "source": source});
        outcome(&mut ev, r);
        self.rec.event(&ev);
    }

    /// Makes a kernel call with id `tm-call-<n>`; records
    /// `{"event":"call_result","id","method","source","result"|"error"}`.
    pub fn call(&self, method: &str, params: &Value, source: &str) {
        let id = format!("tm-call-{}", self.call_ids.fetch_add(1, Ordering::Relaxed));
        let r = self.ctx.call_with_id(&id, method, Some(params), None);
        let mut ev = json!({"event": "call_result", "id": id, "method": method, "source": source});
        outcome(&mut ev, r);
        self.rec.event(&ev);
    }

    /// Publishes `{"seq":i,"pad":"xx…"}` `count` times as fast as possible; records
    /// `{"event":"publish_done","topic","count","ms"}` (or `"error"`).
    pub fn burst(&self, b: &Burst) {
        let start = Instant::now();
        let prefix = format!(
            "{{\"type\":\"publish\",\"topic\":{},\"payload\":{{\"seq\":",
            Value::String(b.topic.clone())
        );
        let suffix = format!(",\"pad\":\"{}\"}}}}", "x".repeat(b.pad));
        let mut line = String::with_capacity(prefix.len() + suffix.len() + 20);
        let r = self.ctx.batch(|batch| {
            for i in 0..b.count {
                line.clear();
                line.push_str(&prefix);
                let _ = write!(line, "{i}");
                line.push_str(&suffix);
                batch.send_line(&line)?;
            }
            Ok::<(), String>(())
        });
        let mut ev = json!({"event": "publish_done", "topic": b.topic, "count": b.count,
                            "ms": start.elapsed().as_millis() as u64});
        if let Err(e) = r.and_then(|r| r) {
            ev["error"] = json!(e);
        }
        self.rec.event(&ev);
    }

    /// Sends `ready` with the manifest; records `{"event":"ready_sent"}` (and
    /// `{"bench":"ready"}` under `--bench-out`).
    pub fn ready(&self) {
        let mut ev = json!({"event": "ready_sent"});
        if let Err(e) = self.ctx.ready(&self.manifest) {
            ev["error"] = json!(e);
        }
        self.bench.record("ready", json!({}));
        self.rec.event(&ev);
    }
}

fn outcome(ev: &mut Value, r: Result<Value, String>) {
    match r {
        Ok(v) => ev["result"] = v,
        Err(e) => ev["error"] = json!(e),
    }
}
