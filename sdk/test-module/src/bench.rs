//! Benchmark modes (`--bench-out`, `--bench-rpc`, `--bench-now`, `--bench-expect`): timing
//! records for `benches/pons.rs`, one JSON object per line with a `t_us` wall-clock stamp
//! (microseconds since the Unix epoch), each written with one `write` on an `O_APPEND` file so
//! several modules can share one file.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pons_sdk::Ctx;
use serde_json::{json, Value};

/// Appends benchmark records; does nothing without `--bench-out`. Cheap to clone.
#[derive(Clone, Default)]
pub struct BenchOut {
    file: Option<Arc<Mutex<File>>>,
}

impl BenchOut {
    /// Opens (creating) `path` for appending.
    pub fn open(path: Option<&str>) -> Result<BenchOut, String> {
        let Some(path) = path else {
            return Ok(BenchOut::default());
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the bench output file {path}: {e}"))?;
        Ok(BenchOut {
            file: Some(Arc::new(Mutex::new(file))),
        })
    }

    /// Writes `{"bench":kind,"pid":…,"t_us":…, …fields}`.
    pub fn record(&self, kind: &str, fields: Value) {
        let Some(file) = &self.file else {
            return;
        };
        let mut v = json!({"bench": kind, "pid": std::process::id(), "t_us": now_us()});
        if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), fields) {
            obj.extend(extra);
        }
        let mut bytes = v.to_string().into_bytes();
        bytes.push(b'\n');
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&bytes) {
            eprintln!("pons-test-module: writing the bench output file failed: {e}");
        }
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `--bench-rpc SERVICE:N[:BYTES]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRpc {
    pub service: String,
    pub count: u64,
    pub pad: usize,
}

/// Makes `min(count/10, 1000)` warm-up RPCs, then `count` timed sequential RPCs of method `echo`
/// with params `{"pad":"x…"}`; records `{"bench":"rpc","n","errors","p50_us","p90_us","p99_us",
/// "min_us","max_us","mean_us","total_us"}`.
pub fn run_rpc(ctx: &Ctx, spec: &BenchRpc, out: &BenchOut) {
    let params = json!({"pad": "x".repeat(spec.pad)});
    let warmup = (spec.count / 10).min(1000);
    let mut errors = 0u64;
    let mut first_error = None;
    for _ in 0..warmup {
        if let Err(e) = ctx.rpc(&spec.service, "echo", &params) {
            errors += 1;
            first_error.get_or_insert(e);
        }
    }
    let mut lat_ns: Vec<u64> = Vec::with_capacity(spec.count as usize);
    let start = Instant::now();
    for _ in 0..spec.count {
        let t = Instant::now();
        let r = ctx.rpc(&spec.service, "echo", &params);
        lat_ns.push(t.elapsed().as_nanos() as u64);
        if let Err(e) = r {
            errors += 1;
            first_error.get_or_insert(e);
        }
    }
    let total = start.elapsed();
    lat_ns.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat_ns.is_empty() {
            return 0.0;
        }
        let i = ((lat_ns.len() as f64 - 1.0) * p).round() as usize;
        lat_ns[i.min(lat_ns.len() - 1)] as f64 / 1000.0
    };
    let mean = if lat_ns.is_empty() {
        0.0
    } else {
        lat_ns.iter().sum::<u64>() as f64 / lat_ns.len() as f64 / 1000.0
    };
    out.record(
        "rpc",
        json!({
            "n": spec.count, "errors": errors, "first_error": first_error,
            "p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99),
            "min_us": pct(0.0), "max_us": pct(1.0), "mean_us": mean,
            "total_us": total.as_micros() as u64,
        }),
    );
}

/// `--bench-expect N`: counts deliveries in groups of N and records each completed group as
/// `{"bench":"expect","n":N,"group":g,"first_us","last_us"}` (receive times of its first and
/// last delivery); at shutdown records the total as `{"bench":"delivered","n":total}`.
#[derive(Debug, Default)]
pub struct Expect {
    pub every: u64,
    total: u64,
    seen: u64,
    group: u64,
    first_us: u64,
}

impl Expect {
    pub fn new(every: u64) -> Expect {
        Expect {
            every,
            ..Expect::default()
        }
    }

    /// Counts one delivery.
    pub fn on_deliver(&mut self, out: &BenchOut) {
        if self.every == 0 {
            return;
        }
        if self.seen == 0 {
            self.first_us = now_us();
        }
        self.seen += 1;
        self.total += 1;
        if self.seen == self.every {
            self.group += 1;
            out.record(
                "expect",
                json!({"n": self.every, "group": self.group,
                       "first_us": self.first_us, "last_us": now_us()}),
            );
            self.seen = 0;
        }
    }

    /// Records the total at shutdown.
    pub fn on_shutdown(&self, out: &BenchOut) {
        if self.every > 0 {
            out.record("delivered", json!({"n": self.total}));
        }
    }
}
