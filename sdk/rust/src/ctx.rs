//! [`Ctx`]: the cloneable handle a module uses to talk to the kernel from any thread —
//! publish, RPC, kernel calls, logs, `ready`, raw lines — plus the shared output writer and
//! the table of requests waiting for their reply.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::wire;

/// Output buffer size: a burst of small messages becomes few large writes.
const OUT_BUFFER: usize = 64 * 1024;

type Waiter = SyncSender<Result<Value, String>>;

/// Handle to the kernel connection. Cheap to clone; usable from any thread. Methods that send
/// flush the output before returning, except inside [`Ctx::batch`].
#[derive(Clone)]
pub struct Ctx {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    out: Mutex<BufWriter<Box<dyn Write + Send>>>,
    closed: AtomicBool,
    rpcs: Mutex<HashMap<String, Waiter>>,
    calls: Mutex<HashMap<String, Waiter>>,
    counter: AtomicU64,
    id_prefix: String,
    pub(crate) config: RwLock<Value>,
    pub(crate) workspace: RwLock<Option<String>>,
    pub(crate) project_root: RwLock<Option<String>>,
    pub(crate) stop_reading: AtomicBool,
    /// While set, the reader thread sleeps until this instant before its next line.
    pub(crate) pause_until: Mutex<Option<std::time::Instant>>,
    /// Whether `pause_until` is set (checked per line without the lock).
    paused: AtomicBool,
    rpc_timeout_ms: AtomicU64,
    call_timeout_ms: AtomicU64,
}

/// Which kind of request a [`Responder`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// An `rpc_request` from another module, answered with `rpc_response`.
    Rpc,
    /// A `call` from the kernel, answered with `call:response`.
    Call,
}

/// What is needed to answer a request later, from any thread, with [`Ctx::respond`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    pub kind: RequestKind,
    pub id: String,
}

/// Writes inside [`Ctx::batch`]: buffered, flushed once when the batch ends.
pub struct Batch<'a> {
    ctx: &'a Ctx,
}

impl Batch<'_> {
    /// Publishes without flushing.
    pub fn publish(&self, topic: &str, payload: &Value) -> Result<(), String> {
        self.ctx.write_publish(topic, Some(payload), false)
    }

    /// Publishes a raw JSON payload without flushing.
    pub fn publish_raw(&self, topic: &str, payload: Option<&RawValue>) -> Result<(), String> {
        self.ctx.write_publish(topic, payload, false)
    }

    /// Writes one raw line (a `\n` is added) without flushing.
    pub fn send_line(&self, line: &str) -> Result<(), String> {
        self.ctx.write_line(line.as_bytes(), false)
    }
}

impl Ctx {
    pub(crate) fn new(out: Box<dyn Write + Send>) -> Ctx {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Ctx {
            inner: Arc::new(Inner {
                out: Mutex::new(BufWriter::with_capacity(OUT_BUFFER, out)),
                closed: AtomicBool::new(false),
                rpcs: Mutex::new(HashMap::new()),
                calls: Mutex::new(HashMap::new()),
                counter: AtomicU64::new(1),
                id_prefix: format!("{:x}-{:x}-", std::process::id(), nanos),
                config: RwLock::new(Value::Object(Default::default())),
                workspace: RwLock::new(None),
                project_root: RwLock::new(None),
                stop_reading: AtomicBool::new(false),
                pause_until: Mutex::new(None),
                paused: AtomicBool::new(false),
                rpc_timeout_ms: AtomicU64::new(30_000),
                call_timeout_ms: AtomicU64::new(10_000),
            }),
        }
    }

    // ----- identity and state -----

    /// The config received in `init` (or the last `config:update`): `{"<configKey>": …}`.
    pub fn config(&self) -> Value {
        read(&self.inner.config).clone()
    }

    /// `workspacePath` from `init` (the kernel's home directory).
    pub fn workspace_path(&self) -> Option<String> {
        read(&self.inner.workspace).clone()
    }

    /// `projectRoot` from `init`.
    pub fn project_root(&self) -> Option<String> {
        read(&self.inner.project_root).clone()
    }

    /// A fresh correlation id, unique within this process and unlikely to collide across.
    pub fn next_id(&self) -> String {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{n}", self.inner.id_prefix)
    }

    /// True once writing to the kernel failed (stdout closed).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Timeout of [`Ctx::rpc`] (default 30 s).
    pub fn set_rpc_timeout(&self, t: Duration) {
        self.inner
            .rpc_timeout_ms
            .store(t.as_millis() as u64, Ordering::Relaxed);
    }

    /// Timeout of [`Ctx::call`] (default 10 s).
    pub fn set_call_timeout(&self, t: Duration) {
        self.inner
            .call_timeout_ms
            .store(t.as_millis() as u64, Ordering::Relaxed);
    }

    /// Stops reading stdin for good (the reader thread parks before its next line): the module
    /// looks hung to the kernel but stays alive. For tests of slow-consumer handling.
    pub fn stop_reading(&self) {
        self.inner.stop_reading.store(true, Ordering::Release);
    }

    /// Stops reading stdin for `d` (the reader thread sleeps before its next line), then reads
    /// on: a module paused under back-pressure. For tests of back-pressure handling.
    pub fn pause_reading(&self, d: Duration) {
        let until = std::time::Instant::now() + d;
        *self
            .inner
            .pause_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(until);
        self.inner.paused.store(true, Ordering::Release);
    }

    /// Sleeps out a pause asked by [`Ctx::pause_reading`] (reader thread).
    pub(crate) fn sleep_if_paused(&self) {
        if !self.inner.paused.load(Ordering::Acquire)
            || !self.inner.paused.swap(false, Ordering::AcqRel)
        {
            return;
        }
        let until = self
            .inner
            .pause_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(until) = until {
            std::thread::sleep(until.saturating_duration_since(std::time::Instant::now()));
        }
    }

    // ----- sending -----

    /// Sends `{"type":"ready","manifest":…}`.
    pub fn ready(&self, manifest: &Value) -> Result<(), String> {
        self.send_line(&wire::ready(manifest))
    }

    /// Publishes `payload` on `topic`.
    pub fn publish(&self, topic: &str, payload: &Value) -> Result<(), String> {
        self.write_publish(topic, Some(payload), true)
    }

    /// Publishes a raw JSON payload (`None`: no `payload` key).
    pub fn publish_raw(&self, topic: &str, payload: Option<&RawValue>) -> Result<(), String> {
        self.write_publish(topic, payload, true)
    }

    /// Sends a `log` message to the kernel log.
    pub fn log(&self, level: &str, msg: &str, data: Option<&Value>) -> Result<(), String> {
        self.send_line(&wire::log(level, msg, data))
    }

    /// Writes one raw line to the kernel (a `\n` is added) and flushes. Anything goes: this is
    /// how tests send malformed input.
    pub fn send_line(&self, line: &str) -> Result<(), String> {
        self.write_line(line.as_bytes(), true)
    }

    /// Writes raw bytes as they are (no newline added) and flushes.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), String> {
        let mut out = self.lock_out()?;
        let r = out.write_all(bytes).and_then(|()| out.flush());
        self.check(r)
    }

    /// Serializes `value` as one line and sends it.
    pub fn send_value(&self, value: &Value) -> Result<(), String> {
        self.send_line(&wire::line(value))
    }

    /// Runs `f` with writes buffered, then flushes once: for bursts.
    pub fn batch<T>(&self, f: impl FnOnce(&Batch<'_>) -> T) -> Result<T, String> {
        let t = f(&Batch { ctx: self });
        self.flush()?;
        Ok(t)
    }

    /// Flushes buffered output.
    pub fn flush(&self) -> Result<(), String> {
        let mut out = self.lock_out()?;
        let r = out.flush();
        self.check(r)
    }

    /// Answers a request whose handler returned [`crate::Reply::Later`].
    pub fn respond(&self, to: &Responder, reply: Result<Value, String>) -> Result<(), String> {
        self.write_reply(to.kind, &to.id, reply, true)
    }

    // ----- requests -----

    /// Calls `method` on the provider of `service` and waits for the reply (RPC timeout).
    pub fn rpc(&self, service: &str, method: &str, params: &Value) -> Result<Value, String> {
        let id = self.next_id();
        self.rpc_with_id(&id, service, method, Some(params), None)
    }

    /// [`Ctx::rpc`] with a chosen correlation id, optional params and timeout.
    pub fn rpc_with_id(
        &self,
        id: &str,
        service: &str,
        method: &str,
        params: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, String> {
        let timeout = timeout.unwrap_or(Duration::from_millis(
            self.inner.rpc_timeout_ms.load(Ordering::Relaxed),
        ));
        let line = wire::rpc_request(id, service, method, params);
        self.request(&self.inner.rpcs, id, &line, timeout)
            .map_err(|e| e.unwrap_or_else(|| format!("RPC {service}.{method} timed out")))
    }

    /// Calls the kernel API method `method` (e.g. `config.get`) and waits for the
    /// `call:response` (call timeout).
    pub fn call(&self, method: &str, params: &Value) -> Result<Value, String> {
        let id = self.next_id();
        self.call_with_id(&id, method, Some(params), None)
    }

    /// [`Ctx::call`] with a chosen correlation id, optional params and timeout.
    pub fn call_with_id(
        &self,
        id: &str,
        method: &str,
        params: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, String> {
        let timeout = timeout.unwrap_or(Duration::from_millis(
            self.inner.call_timeout_ms.load(Ordering::Relaxed),
        ));
        let line = wire::call(id, method, params);
        self.request(&self.inner.calls, id, &line, timeout)
            .map_err(|e| e.unwrap_or_else(|| format!("Kernel call {method} timed out")))
    }

    /// Sends `line` and waits for the reply routed to `id`; `Err(None)` is a timeout.
    fn request(
        &self,
        table: &Mutex<HashMap<String, Waiter>>,
        id: &str,
        line: &str,
        timeout: Duration,
    ) -> Result<Value, Option<String>> {
        let (tx, rx) = mpsc::sync_channel(1);
        lock(table).insert(id.to_owned(), tx);
        if let Err(e) = self.send_line(line) {
            lock(table).remove(id);
            return Err(Some(e));
        }
        match rx.recv_timeout(timeout) {
            Ok(outcome) => outcome.map_err(Some),
            Err(RecvTimeoutError::Timeout) => {
                lock(table).remove(id);
                Err(None)
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(Some("connection to the kernel closed".to_owned()))
            }
        }
    }

    // ----- internals used by the reader and the dispatcher -----

    /// Routes an `rpc_response` (`call == false`) or `call:response` to its waiter; unknown
    /// ids are ignored.
    pub(crate) fn settle(&self, call: bool, id: &str, outcome: Result<Value, String>) {
        let table = if call {
            &self.inner.calls
        } else {
            &self.inner.rpcs
        };
        if let Some(tx) = lock(table).remove(id) {
            let _ = tx.try_send(outcome);
        }
    }

    /// Fails every waiting request (their senders are dropped).
    pub(crate) fn reject_all(&self) {
        lock(&self.inner.rpcs).clear();
        lock(&self.inner.calls).clear();
    }

    pub(crate) fn write_reply(
        &self,
        kind: RequestKind,
        id: &str,
        reply: Result<Value, String>,
        flush: bool,
    ) -> Result<(), String> {
        let line = match (kind, reply) {
            (RequestKind::Rpc, Ok(v)) => wire::rpc_response_ok(id, &v),
            (RequestKind::Rpc, Err(e)) => wire::rpc_response_err(id, &e),
            (RequestKind::Call, Ok(v)) => wire::call_response_ok(id, &v),
            (RequestKind::Call, Err(e)) => wire::call_response_err(id, &e),
        };
        self.write_line(line.as_bytes(), flush)
    }

    pub(crate) fn write_line(&self, line: &[u8], flush: bool) -> Result<(), String> {
        let mut out = self.lock_out()?;
        let mut r = out.write_all(line).and_then(|()| out.write_all(b"\n"));
        if flush && r.is_ok() {
            r = out.flush();
        }
        self.check(r)
    }

    fn write_publish(
        &self,
        topic: &str,
        payload: Option<&(impl Serialize + ?Sized)>,
        flush: bool,
    ) -> Result<(), String> {
        let mut out = self.lock_out()?;
        let w: &mut BufWriter<Box<dyn Write + Send>> = &mut out;
        let mut r = w
            .write_all(b"{\"type\":\"publish\",\"topic\":")
            .and_then(|()| serde_json::to_writer(&mut *w, topic).map_err(std::io::Error::other));
        if let Some(p) = payload {
            r = r
                .and_then(|()| w.write_all(b",\"payload\":"))
                .and_then(|()| serde_json::to_writer(&mut *w, p).map_err(std::io::Error::other));
        }
        r = r.and_then(|()| w.write_all(b"}\n"));
        if flush && r.is_ok() {
            r = w.flush();
        }
        self.check(r)
    }

    fn lock_out(&self) -> Result<MutexGuard<'_, BufWriter<Box<dyn Write + Send>>>, String> {
        if self.is_closed() {
            return Err("connection to the kernel closed".to_owned());
        }
        Ok(lock(&self.inner.out))
    }

    fn check(&self, r: std::io::Result<()>) -> Result<(), String> {
        r.map_err(|e| {
            self.inner.closed.store(true, Ordering::Release);
            self.reject_all();
            format!("writing to the kernel failed: {e}")
        })
    }
}

/// Locks a mutex, ignoring poisoning (a panicking handler thread must not wedge the others).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
