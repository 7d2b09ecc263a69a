//! Tests of the SDK against a fake kernel on in-process pipes.

use std::io::{BufRead, BufReader, PipeReader, PipeWriter, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::{Ctx, Handler, Module, RawValue, Reply, Request};

/// The kernel end of a running module.
struct Kernel {
    to_module: Option<PipeWriter>,
    lines: mpsc::Receiver<Value>,
    module: Option<JoinHandle<i32>>,
}

impl Kernel {
    fn start<H: Handler + Send + 'static>(h: H, cfg: impl FnOnce(Module<H>) -> Module<H>) -> Self {
        let (in_r, in_w) = std::io::pipe().unwrap();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let module = cfg(Module::with_io(h, in_r, out_w));
        let handle = std::thread::spawn(move || module.run());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || read_lines(out_r, tx));
        Kernel {
            to_module: Some(in_w),
            lines: rx,
            module: Some(handle),
        }
    }

    fn send(&mut self, v: Value) {
        let w = self.to_module.as_mut().unwrap();
        writeln!(w, "{v}").unwrap();
    }

    fn send_raw(&mut self, s: &str) {
        let w = self.to_module.as_mut().unwrap();
        w.write_all(s.as_bytes()).unwrap();
    }

    fn next(&self) -> Value {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("no line from the module within 10 s")
    }

    fn close_stdin(&mut self) {
        self.to_module = None;
    }

    fn exit_code(&mut self) -> i32 {
        let h = self.module.take().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !h.is_finished() {
            assert!(std::time::Instant::now() < deadline, "module did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        h.join().unwrap()
    }
}

fn read_lines(r: PipeReader, tx: mpsc::Sender<Value>) {
    for line in BufReader::new(r).lines() {
        let Ok(line) = line else { return };
        let v: Value = serde_json::from_str(&line).expect("module wrote invalid JSON");
        assert_eq!(v.to_string(), line, "not compact");
        if tx.send(v).is_err() {
            return;
        }
    }
}

#[derive(Default)]
struct Echo {
    events: Vec<String>,
}

impl Handler for Echo {
    fn manifest(&self) -> Value {
        json!({"id": "echo"})
    }
    fn on_install(&mut self, _ctx: &Ctx) {
        self.events.push("install".into());
    }
    fn on_init(&mut self, ctx: &Ctx, config: &Value) -> Result<(), String> {
        assert_eq!(ctx.workspace_path().as_deref(), Some("/home"));
        if config.get("fail").is_some() {
            return Err("bad config".into());
        }
        Ok(())
    }
    fn on_deps_ready(&mut self, ctx: &Ctx) {
        ctx.publish("events", &json!({"seen": self.events}))
            .unwrap();
    }
    fn on_service_available(&mut self, _ctx: &Ctx, service: &str) {
        self.events.push(format!("svc:{service}"));
    }
    fn on_message(&mut self, _: &Ctx, topic: &str, p: Option<&RawValue>) -> Result<(), String> {
        match p.map(|p| p.get()) {
            Some("\"fail\"") => Err(format!("Error: cannot take {topic}")),
            _ => Ok(()),
        }
    }
    fn on_request(&mut self, ctx: &Ctx, req: &Request<'_>) -> Reply {
        match req.method {
            "fail" => Reply::Err("Error: nope".into()),
            "later" => {
                let r = req.responder();
                let ctx = ctx.clone();
                std::thread::spawn(move || ctx.respond(&r, Ok(json!("late"))).unwrap());
                Reply::Later
            }
            "ask" => {
                // Blocking RPC from inside a handler: the reader thread routes the reply.
                Reply::from(ctx.rpc("other", "q", &req.params_value()))
            }
            m => Reply::Ok(json!({"m": m, "p": req.params_value(), "from": req.from})),
        }
    }
    fn on_config_update(&mut self, ctx: &Ctx, cfg: &Value, ch: &[String]) -> Result<(), String> {
        assert_eq!(&ctx.config(), cfg);
        self.events.push(format!("cfg:{}", ch.join(",")));
        Ok(())
    }
    fn on_shutdown(&mut self, ctx: &Ctx) {
        ctx.log("info", "bye", Some(&json!({"n": self.events.len()})))
            .unwrap();
    }
}

fn init() -> Value {
    json!({"type":"init","protocolVersion":"1.0","config":{"k":1},"workspacePath":"/home","projectRoot":"/home"})
}

#[test]
fn full_session() {
    let mut k = Kernel::start(Echo::default(), |m| m);
    k.send(json!({"type":"install"}));
    k.send(init());
    k.send(init()); // duplicate: ignored
    assert_eq!(k.next(), json!({"type":"ready","manifest":{"id":"echo"}}));
    k.send(json!({"type":"deps_ready"}));
    assert_eq!(
        k.next(),
        json!({"type":"publish","topic":"events","payload":{"seen":["install"]}})
    );
    k.send(json!({"type":"ping"}));
    assert_eq!(k.next(), json!({"type":"pong"}));
    k.send(json!({"type":"deliver","id":"d1","topic":"t","payload":{"a":1}}));
    assert_eq!(k.next(), json!({"type":"ack","id":"d1"}));
    k.send(json!({"type":"deliver","id":"d2","topic":"t","payload":"fail"}));
    assert_eq!(
        k.next(),
        json!({"type":"nack","id":"d2","error":"Error: cannot take t"})
    );
    k.send(
        json!({"type":"rpc_request","id":"u1","from":"a","service":"s","method":"m","params":[1]}),
    );
    assert_eq!(
        k.next(),
        json!({"type":"rpc_response","id":"u1","result":{"m":"m","p":[1],"from":"a"}})
    );
    k.send(json!({"type":"rpc_request","id":"u2","from":"a","service":"s","method":"fail"}));
    assert_eq!(
        k.next(),
        json!({"type":"rpc_response","id":"u2","error":"Error: nope"})
    );
    k.send(json!({"type":"call","id":"k1","method":"health"}));
    assert_eq!(
        k.next(),
        json!({"type":"call:response","id":"k1","result":{"m":"health","p":null,"from":null}})
    );
    k.send(json!({"type":"call","id":"k2","method":"later"}));
    assert_eq!(
        k.next(),
        json!({"type":"call:response","id":"k2","result":"late"})
    );
    k.send_raw("not json\n\n  \r\n{\"type\":\"mystery\"}\n");
    k.send(json!({"type":"service_available","service":"x"}));
    k.send(json!({"type":"config:update","config":{"k":2},"changedSections":["k"]}));
    k.send(json!({"type":"shutdown"}));
    assert_eq!(
        k.next(),
        json!({"type":"log","level":"info","msg":"bye","data":{"n":3}})
    );
    assert_eq!(k.exit_code(), 0);
}

#[test]
fn rpc_from_a_handler_is_routed_back() {
    let mut k = Kernel::start(Echo::default(), |m| m);
    k.send(init());
    k.next(); // ready
    k.send(json!({"type":"rpc_request","id":"u1","from":"a","service":"s","method":"ask","params":{"q":1}}));
    let req = k.next();
    assert_eq!(req["type"], "rpc_request");
    assert_eq!(req["service"], "other");
    assert_eq!(req["params"], json!({"q":1}));
    // A reply with an unknown id is ignored; the right one settles the call.
    k.send(json!({"type":"rpc_response","id":"nobody","result":0}));
    k.send(json!({"type":"rpc_response","id":req["id"],"result":{"answer":42}}));
    assert_eq!(
        k.next(),
        json!({"type":"rpc_response","id":"u1","result":{"answer":42}})
    );
    k.send(json!({"type":"rpc_request","id":"u2","from":"a","service":"s","method":"ask"}));
    let req = k.next();
    k.send(json!({"type":"rpc_response","id":req["id"],"error":"service_not_found"}));
    assert_eq!(
        k.next(),
        json!({"type":"rpc_response","id":"u2","error":"service_not_found"})
    );
    k.close_stdin();
    assert_eq!(k.next()["msg"], "bye");
    assert_eq!(k.exit_code(), 0);
}

#[test]
fn init_failure_nacks_and_exits_1() {
    let mut k = Kernel::start(Echo::default(), |m| m);
    k.send(json!({"type":"init","config":{"fail":true},"workspacePath":"/home"}));
    assert_eq!(
        k.next(),
        json!({"type":"nack","id":"init","error":"bad config"})
    );
    assert_eq!(k.exit_code(), 1);
}

#[test]
fn switches_off() {
    let mut k = Kernel::start(Echo::default(), |m| {
        m.auto_ready(false).auto_pong(false).acks(false)
    });
    k.send(init());
    k.send(json!({"type":"ping"}));
    k.send(json!({"type":"deliver","id":"d1","topic":"t"}));
    k.send(json!({"type":"call","id":"k1","method":"x"}));
    // Nothing but the call's answer comes out.
    assert_eq!(k.next()["id"], "k1");
    k.send(json!({"type":"shutdown"}));
    assert_eq!(k.next()["msg"], "bye");
    assert_eq!(k.exit_code(), 0);
}

#[test]
fn rpc_times_out() {
    struct Asker;
    impl Handler for Asker {
        fn on_deps_ready(&mut self, ctx: &Ctx) {
            let r = ctx.rpc_with_id("x1", "svc", "m", None, Some(Duration::from_millis(50)));
            ctx.publish("result", &json!(r.unwrap_err())).unwrap();
        }
    }
    let mut k = Kernel::start(Asker, |m| m);
    k.send(init());
    k.next();
    k.send(json!({"type":"deps_ready"}));
    assert_eq!(
        k.next(),
        json!({"type":"rpc_request","id":"x1","service":"svc","method":"m"})
    );
    assert_eq!(k.next()["payload"], "RPC svc.m timed out");
    // The late reply is ignored.
    k.send(json!({"type":"rpc_response","id":"x1","result":1}));
    k.close_stdin();
    assert_eq!(k.exit_code(), 0);
}

#[test]
fn burst_of_deliveries_all_acked() {
    let mut k = Kernel::start(Echo::default(), |m| m);
    k.send(init());
    k.next();
    let mut batch = String::new();
    for i in 0..5000 {
        batch.push_str(&format!(
            "{{\"type\":\"deliver\",\"id\":\"d{i}\",\"topic\":\"t\",\"payload\":{i}}}\n"
        ));
    }
    k.send_raw(&batch);
    for i in 0..5000 {
        assert_eq!(k.next(), json!({"type":"ack","id":format!("d{i}")}));
    }
    k.close_stdin();
    k.next();
    assert_eq!(k.exit_code(), 0);
}

#[test]
fn batch_publishes_and_wire_builders() {
    let (out_r, out_w) = std::io::pipe().unwrap();
    let (in_r, _in_w) = std::io::pipe().unwrap();
    let m = Module::with_io(Echo::default(), in_r, out_w);
    let ctx = m.ctx();
    ctx.batch(|b| {
        for i in 0..3 {
            b.publish("t", &json!(i)).unwrap();
        }
        b.publish_raw("t", None).unwrap();
        b.send_line(&crate::wire::rpc_request("r", "s", "m", None))
            .unwrap();
    })
    .unwrap();
    let mut lines = BufReader::new(out_r).lines();
    let mut next = || serde_json::from_str::<Value>(&lines.next().unwrap().unwrap()).unwrap();
    for i in 0..3 {
        assert_eq!(next(), json!({"type":"publish","topic":"t","payload":i}));
    }
    assert_eq!(next(), json!({"type":"publish","topic":"t"}));
    assert_eq!(
        next(),
        json!({"type":"rpc_request","id":"r","service":"s","method":"m"})
    );
    assert_ne!(ctx.next_id(), ctx.next_id());
    drop(m);
}
