//! [`Module`]: runs a [`Handler`] against the kernel connection.
//!
//! Two threads: a reader thread reads stdin, answers `ping`, settles replies to pending RPCs
//! and kernel calls, and queues every other message; the calling thread runs the handler on
//! that queue. Output written while handling (acks, replies) is buffered and flushed when the
//! queue is empty, after 64 messages, or before anything blocks, so bursts cost few writes and
//! a lone request is answered at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::ctx::{self, Ctx, RequestKind};
use crate::handler::{Handler, Reply, Request};
use crate::wire::{self, Envelope};

/// Called on the reader thread for every non-empty line from the kernel, before it is handled:
/// `(type, line)`, with type `""` for a line that is not a JSON message.
pub type Tap = Box<dyn FnMut(&str, &str) + Send>;

/// Flush at least every this many handled messages while input keeps coming.
const FLUSH_EVERY: u32 = 64;

/// A module: a handler, its connection, and a few switches.
pub struct Module<H: Handler> {
    handler: H,
    ctx: Ctx,
    input: Option<Box<dyn Read + Send>>,
    tap: Option<Tap>,
    auto_pong: bool,
    auto_ready: bool,
    exit_on_shutdown: bool,
    acks: bool,
}

/// What the reader thread hands to the dispatcher.
enum Incoming {
    Install,
    Init {
        config: Value,
        workspace: Option<String>,
        root: Option<String>,
    },
    DepsReady,
    ServiceAvailable(String),
    Shutdown,
    Deliver {
        id: String,
        topic: String,
        payload: Option<Box<RawValue>>,
    },
    ConfigUpdate {
        config: Value,
        changed: Vec<String>,
    },
    Request {
        kind: RequestKind,
        id: String,
        method: String,
        params: Option<Box<RawValue>>,
        from: Option<String>,
        service: Option<String>,
    },
    Unknown(String),
    Closed,
}

impl<H: Handler> Module<H> {
    /// A module on this process's stdin/stdout.
    pub fn new(handler: H) -> Module<H> {
        Module::new_with(|_| handler)
    }

    /// A module on this process's stdin/stdout whose handler is built with the connection
    /// handle (for handlers that keep a [`Ctx`] to use from their own threads).
    pub fn new_with(make: impl FnOnce(&Ctx) -> H) -> Module<H> {
        let out: Box<dyn Write + Send> = match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Box::new(std::fs::File::from(fd)),
            Err(_) => Box::new(std::io::stdout()),
        };
        let input: Box<dyn Read + Send> = match std::io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => Box::new(std::fs::File::from(fd)),
            Err(_) => Box::new(std::io::stdin()),
        };
        Module::build(make, input, out)
    }

    /// A module on any byte streams (for tests).
    pub fn with_io(
        handler: H,
        input: impl Read + Send + 'static,
        output: impl Write + Send + 'static,
    ) -> Module<H> {
        Module::build(|_| handler, Box::new(input), Box::new(output))
    }

    fn build(
        make: impl FnOnce(&Ctx) -> H,
        input: Box<dyn Read + Send>,
        output: Box<dyn Write + Send>,
    ) -> Module<H> {
        let ctx = Ctx::new(output);
        Module {
            handler: make(&ctx),
            ctx,
            input: Some(input),
            tap: None,
            auto_pong: true,
            auto_ready: true,
            exit_on_shutdown: true,
            acks: true,
        }
    }

    /// The connection handle, usable before and during [`Module::run`].
    pub fn ctx(&self) -> Ctx {
        self.ctx.clone()
    }

    /// Answer `ping` with `pong` on the reader thread (default on; off = ignore pings).
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }

    /// Send `ready` with [`Handler::manifest`] after a successful `on_init` (default on).
    pub fn auto_ready(mut self, on: bool) -> Self {
        self.auto_ready = on;
        self
    }

    /// Return from [`Module::run`] after `shutdown` or when stdin closes (default on). Off:
    /// `on_shutdown` still runs, but the module keeps running until killed.
    pub fn exit_on_shutdown(mut self, on: bool) -> Self {
        self.exit_on_shutdown = on;
        self
    }

    /// Answer each `deliver` with `ack`/`nack` (default on, like the reference client).
    pub fn acks(mut self, on: bool) -> Self {
        self.acks = on;
        self
    }

    /// Observe every line from the kernel (see [`Tap`]).
    pub fn tap(mut self, tap: impl FnMut(&str, &str) + Send + 'static) -> Self {
        self.tap = Some(Box::new(tap));
        self
    }

    /// Runs until `shutdown` or end of stdin; returns the process exit code to use (0, or 1
    /// when `on_init` failed or writing to the kernel failed).
    pub fn run(mut self) -> i32 {
        let (tx, rx) = mpsc::channel();
        if let Some(input) = self.input.take() {
            let reader = Reader {
                ctx: self.ctx.clone(),
                tx,
                tap: self.tap.take(),
                auto_pong: self.auto_pong,
            };
            let spawned = std::thread::Builder::new()
                .name("pons-sdk-reader".into())
                .spawn(move || reader.run(input));
            if let Err(e) = spawned {
                eprintln!("[sdk] cannot start the stdin reader thread: {e}");
                return 1;
            }
        }
        self.dispatch(rx)
    }

    /// [`Module::run`], then exits the process with its code.
    pub fn run_and_exit(self) -> ! {
        let code = self.run();
        std::process::exit(code)
    }

    fn dispatch(&mut self, rx: Receiver<Incoming>) -> i32 {
        let ctx = self.ctx.clone();
        let mut initialized = false;
        let mut shut_down = false;
        let mut since_flush = 0;
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    let _ = ctx.flush();
                    since_flush = 0;
                    rx.recv().unwrap_or(Incoming::Closed)
                }
                Err(TryRecvError::Disconnected) => Incoming::Closed,
            };
            match msg {
                Incoming::Install => self.handler.on_install(&ctx),
                Incoming::Init {
                    config,
                    workspace,
                    root,
                } => {
                    if initialized {
                        continue;
                    }
                    initialized = true;
                    *ctx::write(&ctx.inner.config) = config.clone();
                    *ctx::write(&ctx.inner.workspace) = workspace;
                    *ctx::write(&ctx.inner.project_root) = root;
                    if let Err(e) = self.handler.on_init(&ctx, &config) {
                        eprintln!("[sdk] onInit failed: {e}");
                        let _ = ctx.send_line(&wire::nack("init", &e));
                        return 1;
                    }
                    if self.auto_ready {
                        let _ = ctx.ready(&self.handler.manifest());
                    }
                }
                Incoming::DepsReady => self.handler.on_deps_ready(&ctx),
                Incoming::ServiceAvailable(s) => self.handler.on_service_available(&ctx, &s),
                Incoming::Deliver { id, topic, payload } => {
                    let r = self.handler.on_message(&ctx, &topic, payload.as_deref());
                    if self.acks {
                        let line = match r {
                            Ok(()) => wire::ack(&id),
                            Err(e) => wire::nack(&id, &e),
                        };
                        let _ = ctx.write_line(line.as_bytes(), false);
                    }
                }
                Incoming::Request {
                    kind,
                    id,
                    method,
                    params,
                    from,
                    service,
                } => {
                    let req = Request {
                        kind,
                        id: &id,
                        method: &method,
                        params: params.as_deref(),
                        from: from.as_deref(),
                        service: service.as_deref(),
                    };
                    let reply = match self.handler.on_request(&ctx, &req) {
                        Reply::Ok(v) => Ok(v),
                        Reply::Err(e) => Err(e),
                        Reply::Later => continue,
                    };
                    let _ = ctx.write_reply(kind, &id, reply, false);
                }
                Incoming::ConfigUpdate { config, changed } => {
                    let old =
                        std::mem::replace(&mut *ctx::write(&ctx.inner.config), config.clone());
                    if let Err(e) = self.handler.on_config_update(&ctx, &config, &changed) {
                        eprintln!("[sdk] onConfigUpdate failed, config rolled back: {e}");
                        *ctx::write(&ctx.inner.config) = old;
                    }
                }
                Incoming::Unknown(ty) => self.handler.on_unknown(&ctx, &ty),
                Incoming::Shutdown | Incoming::Closed => {
                    if !shut_down {
                        shut_down = true;
                        self.handler.on_shutdown(&ctx);
                    }
                    let _ = ctx.flush();
                    if self.exit_on_shutdown {
                        ctx.reject_all();
                        return 0;
                    }
                    if matches!(msg, Incoming::Closed) {
                        // Input is gone and exiting is off: stay alive until killed.
                        loop {
                            std::thread::park();
                        }
                    }
                }
            }
            if ctx.is_closed() {
                eprintln!("[sdk] writing to the kernel failed; exiting");
                return 1;
            }
            since_flush += 1;
            if since_flush >= FLUSH_EVERY {
                let _ = ctx.flush();
                since_flush = 0;
            }
        }
    }
}

/// The stdin side: runs on its own thread.
struct Reader {
    ctx: Ctx,
    tx: Sender<Incoming>,
    tap: Option<Tap>,
    auto_pong: bool,
}

impl Reader {
    fn run(mut self, input: Box<dyn Read + Send>) {
        let mut input = BufReader::with_capacity(64 * 1024, input);
        let mut line = Vec::new();
        loop {
            if self.ctx.inner.stop_reading.load(Ordering::Acquire) {
                loop {
                    std::thread::park_timeout(Duration::from_secs(3600));
                }
            }
            self.ctx.sleep_if_paused();
            line.clear();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            if self.ctx.inner.stop_reading.load(Ordering::Acquire) {
                // Asked to stop while this read was blocked: drop the line, read no more.
                continue;
            }
            let text = line.trim_ascii();
            if !text.is_empty() && !self.handle(text) {
                return;
            }
        }
        let _ = self.tx.send(Incoming::Closed);
    }

    /// Handles one line; false when the dispatcher is gone.
    fn handle(&mut self, text: &[u8]) -> bool {
        let env = match serde_json::from_slice::<Envelope<'_>>(text) {
            Ok(env) => env,
            Err(_) => {
                if let Some(tap) = &mut self.tap {
                    tap("", &String::from_utf8_lossy(text));
                }
                eprintln!("[sdk] Malformed JSON on stdin — skipping line");
                return true;
            }
        };
        if let Some(tap) = &mut self.tap {
            // The line parsed as JSON, so it is UTF-8.
            tap(&env.ty, std::str::from_utf8(text).unwrap_or_default());
        }
        let boxed = |raw: Option<&RawValue>| raw.map(|r| r.to_owned());
        let msg = match env.ty.as_ref() {
            "ping" => {
                if self.auto_pong {
                    let _ = self.ctx.send_line(&wire::pong());
                }
                return true;
            }
            "rpc_response" | "call:response" => {
                let id = env.id.unwrap_or_default();
                let outcome = wire::outcome(env.result, env.error);
                self.ctx.settle(env.ty == "call:response", &id, outcome);
                return true;
            }
            "install" => Incoming::Install,
            "init" => Incoming::Init {
                config: env
                    .config
                    .unwrap_or_else(|| Value::Object(Default::default())),
                workspace: env.workspace_path,
                root: env.project_root,
            },
            "deps_ready" => Incoming::DepsReady,
            "service_available" => Incoming::ServiceAvailable(env.service.unwrap_or_default()),
            "shutdown" => Incoming::Shutdown,
            "deliver" => Incoming::Deliver {
                id: env.id.unwrap_or_default(),
                topic: env.topic.unwrap_or_default(),
                payload: boxed(env.payload),
            },
            "config:update" => Incoming::ConfigUpdate {
                config: env
                    .config
                    .unwrap_or_else(|| Value::Object(Default::default())),
                changed: env.changed_sections.unwrap_or_default(),
            },
            "call" => Incoming::Request {
                kind: RequestKind::Call,
                id: env.id.unwrap_or_default(),
                method: env.method.unwrap_or_default(),
                params: boxed(env.params),
                from: None,
                service: None,
            },
            "rpc_request" => Incoming::Request {
                kind: RequestKind::Rpc,
                id: env.id.unwrap_or_default(),
                method: env.method.unwrap_or_default(),
                params: boxed(env.params),
                from: env.from,
                service: env.service,
            },
            other => Incoming::Unknown(other.to_owned()),
        };
        self.tx.send(msg).is_ok()
    }
}
