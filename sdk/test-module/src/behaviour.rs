//! The test module's [`Handler`]: what it does on each kernel message, as the flags say.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pons_sdk::{Ctx, Handler, RawValue, Reply, Request};
use serde_json::{json, Value};

use crate::actions::Actions;
use crate::args::Opts;
use crate::bench::{self, Expect};

pub struct TestModule {
    pub opts: Opts,
    pub actions: Actions,
    /// Deliveries seen (for `--count-only`).
    pub delivered: Arc<AtomicU64>,
    /// `--bench-expect` groups.
    pub expect: Expect,
    /// `--answer-on-shutdown`: requests held until the shutdown handler answers them.
    pub held: Vec<(pons_sdk::Responder, Result<Value, String>)>,
}

impl TestModule {
    fn record_count(&self) {
        if self.opts.count_only {
            let n = self.delivered.load(Ordering::Relaxed);
            self.actions.rec.event(&json!({"event": "count", "n": n}));
        }
    }
}

impl Handler for TestModule {
    fn manifest(&self) -> Value {
        self.actions.manifest.clone()
    }

    fn on_init(&mut self, _ctx: &Ctx, _config: &Value) -> Result<(), String> {
        for c in &self.opts.call {
            self.actions.call(&c.method, &c.params, "init");
        }
        if self.opts.never_ready {
            return Ok(());
        }
        if self.opts.ready_delay_ms == 0 {
            self.actions.ready();
        } else {
            let a = self.actions.clone();
            let delay = Duration::from_millis(self.opts.ready_delay_ms);
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                a.ready();
            });
        }
        Ok(())
    }

    fn on_deps_ready(&mut self, ctx: &Ctx) {
        if let Some(path) = self.opts.relay.take() {
            crate::relay::start(path, ctx.clone());
        }
        if self.opts.stop_reading {
            ctx.stop_reading();
            self.actions.rec.event(&json!({"event": "stopped_reading"}));
        }
        if let (Some(spec), false) = (&self.opts.bench_rpc, self.opts.bench_now) {
            let (ctx, spec, out) = (ctx.clone(), spec.clone(), self.actions.bench.clone());
            std::thread::spawn(move || bench::run_rpc(&ctx, &spec, &out));
        }
        let work = (
            self.opts.call_after_ready.clone(),
            self.opts.rpc.clone(),
            self.opts.publish.clone(),
        );
        if work.0.is_empty() && work.1.is_empty() && work.2.is_empty() {
            return;
        }
        self.actions.spawn(move |a| {
            for c in &work.0 {
                a.call(&c.method, &c.params, "deps_ready");
            }
            for r in &work.1 {
                a.rpc(&r.service, &r.method, &r.params, "deps_ready");
            }
            for b in &work.2 {
                a.burst(b);
            }
        });
    }

    fn on_message(&mut self, _: &Ctx, _: &str, _: Option<&RawValue>) -> Result<(), String> {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.expect.on_deliver(&self.actions.bench);
        self.actions.on_deliver();
        Ok(())
    }

    fn on_request(&mut self, ctx: &Ctx, req: &Request<'_>) -> Reply {
        if self.opts.no_reply {
            return Reply::Later;
        }
        let reply = if self.opts.echo || self.opts.answer_on_shutdown {
            Ok(json!({"echo": req.params_value(), "method": req.method, "from": req.from}))
        } else {
            Err(format!("Error: Unknown method: {}", req.method))
        };
        if self.opts.answer_on_shutdown {
            self.held.push((req.responder(), reply));
            return Reply::Later;
        }
        if self.opts.slow_rpc_ms == 0 {
            return Reply::from(reply);
        }
        let (ctx, to) = (ctx.clone(), req.responder());
        let delay = Duration::from_millis(self.opts.slow_rpc_ms);
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = ctx.respond(&to, reply);
        });
        Reply::Later
    }

    fn on_config_update(
        &mut self,
        _ctx: &Ctx,
        config: &Value,
        changed: &[String],
    ) -> Result<(), String> {
        self.actions
            .bench
            .record("config", json!({"config": config, "changed": changed}));
        Ok(())
    }

    fn on_shutdown(&mut self, ctx: &Ctx) {
        for (to, reply) in self.held.drain(..) {
            let _ = ctx.respond(&to, reply);
        }
        if let Some(text) = &self.opts.shutdown_log {
            let _ = ctx.log("info", text, None);
        }
        self.record_count();
        self.expect.on_shutdown(&self.actions.bench);
        self.actions.rec.event(&json!({"event": "shutdown"}));
    }

    fn on_unknown(&mut self, _ctx: &Ctx, ty: &str) {
        self.actions
            .rec
            .event(&json!({"event": "unknown_type", "type": ty}));
    }
}
