//! The tasks that read a module's stdout (routing every line under the router lock, then waiting
//! for congested consumers outside it, the module marked held back meanwhile) and its stderr
//! (logged terminal-safe, last line kept for crash reports).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{ChildStderr, ChildStdout};

use crate::kernel::outbox::Batch;
use crate::kernel::supervisor::SupCmd;
use crate::kernel::Kernel;
use crate::protocol::framing::LineReader;

/// Lines routed per hold of the router lock before a waiting thread gets its turn.
const LINES_PER_TURN: u32 = 64;

/// Reads and routes stdout of process `gen` of `module` until end of file.
pub async fn stdout_task(
    kernel: Arc<Kernel>,
    module: Arc<str>,
    gen: u64,
    stdout: ChildStdout,
    max_line: usize,
) {
    let mut reader = LineReader::new(stdout, max_line.max(1024));
    let mut congested = Vec::new();
    let mut dropped_seen = 0;
    loop {
        let more = reader.fill().await;
        {
            // What the lines queue for other modules is written when the batch ends, after the
            // router lock is released: one write per target per read, from this thread.
            let batch = Batch::open();
            // One lock per batch rather than per line: the readers of a publisher and of its
            // subscribers' acks would otherwise contend on every line. Waiting readers get a
            // turn every `LINES_PER_TURN` lines, so a burst never holds the router for long.
            let mut core = kernel.core.lock();
            let mut n = 0u32;
            reader.drain(|line| {
                core.handle_line(&module, gen, line, &mut congested);
                n += 1;
                if n.is_multiple_of(LINES_PER_TURN) {
                    parking_lot::MutexGuard::bump(&mut core);
                }
            });
            drop(core);
            drop(batch);
        }
        let dropped = reader.oversize_dropped();
        if dropped > dropped_seen {
            tracing::warn!(module = %module, dropped = dropped - dropped_seen, maxBytes = max_line, "oversize line dropped");
            if let Some(e) = kernel.core.lock().modules.get_mut(&module) {
                e.invalid_lines += dropped - dropped_seen;
            }
            dropped_seen = dropped;
        }
        if !congested.is_empty() {
            // Back-pressure: stop reading this publisher until its consumers caught up. A hung
            // consumer is restarted by its supervisor after `slowConsumerMs`, which closes its
            // outbox and releases us. Meanwhile the publisher is marked held back: its pongs wait
            // unread in the pipe, and its supervisor must not count that against it.
            let wait = Duration::from_millis(kernel.lifecycle().slow_consumer_ms + 1000);
            let since = Instant::now();
            hold(&kernel, &module, gen, Some(since));
            for ob in congested.drain(..) {
                ob.wait_drained(wait).await;
            }
            hold(&kernel, &module, gen, None);
        }
        match more {
            Ok(true) => continue,
            Ok(false) | Err(_) => break,
        }
    }
    kernel.tell(&module, SupCmd::StdoutClosed { gen });
}

/// Marks process `gen` of `module` held back since `since`, or (`None`) ends the hold.
fn hold(kernel: &Kernel, module: &str, gen: u64, since: Option<Instant>) {
    let mut core = kernel.core.lock();
    let Some(e) = core.modules.get_mut(module).filter(|e| e.gen == gen) else {
        return;
    };
    match since {
        Some(t) => e.held_back_since = Some(t),
        None => {
            if let Some(t) = e.held_back_since.take() {
                e.held_back_total += t.elapsed();
                e.held_back_until = Some(Instant::now());
            }
        }
    }
}

/// Logs every stderr line of `module` (terminal-safe) and keeps the last one; `hint` explains
/// import failures the sandbox may have caused ([`crate::kernel::hints`]).
pub async fn stderr_task(
    module: Arc<str>,
    stderr: ChildStderr,
    last: Arc<parking_lot::Mutex<Option<String>>>,
    hint: crate::kernel::hints::StderrHint,
) {
    let mut reader = LineReader::new(stderr, 64 << 10);
    loop {
        let more = reader
            .read_batch(|line| {
                // Colours stripped, other control characters escaped, in the log and in the
                // crash reason `pons status` shows alike.
                let raw = String::from_utf8_lossy(line);
                let text = crate::safe_text::terminal_safe(&raw);
                tracing::warn!(module = %module, source = "stderr", "{text}");
                hint.observe(&text);
                *last.lock() = Some(text.into_owned());
            })
            .await;
        if !matches!(more, Ok(true)) {
            break;
        }
    }
}
