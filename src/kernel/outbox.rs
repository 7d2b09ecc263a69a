//! Per-module outbound queue and its writer task.
//!
//! The router appends encoded lines (one JSON object + `\n` each) to a module's [`Outbox`]; the
//! writer task swaps the whole buffer out and writes it to the module's stdin in one call, so a
//! burst of messages becomes a few large writes (batching per module).
//!
//! Back-pressure: an outbox above [`HIGH_WATER`] bytes is *congested*: the reader of
//! a publisher that filled it waits (up to `slowConsumerMs`) until it drains below [`LOW_WATER`],
//! so nothing is lost while consumers keep up. Above [`HARD_CAP`] bytes messages are dropped and
//! counted, so memory per module stays bounded. A consumer that makes no progress for
//! `slowConsumerMs` while bytes wait is hung; the supervisor restarts it. It times that only while
//! bytes wait: a write that has to wait for the module wakes it ([`Outbox::write_waited`]) unless
//! it is timing a stall already ([`Outbox::watch_stall`]), so an idle module costs no wake-up.

use std::future::Future;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::Notify;

/// Above this many queued bytes a publisher waits for the consumer.
pub const HIGH_WATER: usize = 1 << 20;
/// A waiting publisher resumes once the queue is below this.
pub const LOW_WATER: usize = 256 << 10;
/// Above this many queued bytes new messages are dropped (and counted).
pub const HARD_CAP: usize = 64 << 20;

/// The outbound queue of one module process.
pub struct Outbox {
    buf: Mutex<Vec<u8>>,
    queued: AtomicUsize,
    closed: AtomicBool,
    dropped: AtomicU64,
    /// Messages queued for the module (`msgsOut` of `pons status`).
    pushed: AtomicU64,
    /// Bytes written to the module since the outbox was created.
    written_total: AtomicU64,
    /// Milliseconds since `epoch` of the last completed write (or of creation).
    last_progress_ms: AtomicU64,
    epoch: Instant,
    wake_writer: Notify,
    drained: Notify,
    /// The supervisor times a stall (it saw bytes waiting); else a waiting write wakes it.
    stall_timed: AtomicBool,
    /// A write had to wait for the module while no stall was timed.
    write_waited: Notify,
}

impl Outbox {
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox {
            buf: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            written_total: AtomicU64::new(0),
            last_progress_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            wake_writer: Notify::new(),
            drained: Notify::new(),
            stall_timed: AtomicBool::new(false),
            write_waited: Notify::new(),
        })
    }

    /// Appends one encoded message by letting `encode` write into the queue. Returns false when the
    /// message was dropped (outbox closed or over the hard cap).
    #[inline]
    pub fn push_with(&self, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        if self.queued.load(Ordering::Relaxed) > HARD_CAP {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let prev = {
            let mut buf = self.buf.lock();
            let before = buf.len();
            if self.queued.load(Ordering::Acquire) == 0 {
                // Nothing was waiting: stalls are measured from now, not from the last write.
                self.touch();
            }
            encode(&mut buf);
            // Counted before the lock is released: the writer may swap these bytes out the
            // moment it is, and `written` must never subtract bytes not yet counted.
            self.queued.fetch_add(buf.len() - before, Ordering::AcqRel)
        };
        if prev == 0 {
            self.wake_writer.notify_one();
        }
        self.pushed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Messages queued for the module since the outbox was created (dropped ones excluded).
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    /// Bytes waiting to be written (including a batch being written now).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub fn is_congested(&self) -> bool {
        self.queued() > HIGH_WATER
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How long bytes have been waiting without the consumer reading any (zero when empty).
    pub fn stalled_for(&self) -> Duration {
        if self.queued() == 0 {
            return Duration::ZERO;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_progress_ms.load(Ordering::Relaxed)))
    }

    /// The supervisor's side of the hung-consumer check: whether bytes wait now. While they do
    /// it times the stall itself; once they do not, the next write that has to wait for the
    /// module wakes it ([`Outbox::write_waited`]).
    pub fn watch_stall(&self) -> bool {
        self.stall_timed.store(false, Ordering::SeqCst);
        // Pairs with the fence in `wait_for_module`: either this load sees the bytes of a write
        // that waits, or that write sees the flag cleared and wakes the supervisor.
        fence(Ordering::SeqCst);
        let waiting = self.queued() > 0;
        if waiting {
            self.stall_timed.store(true, Ordering::SeqCst);
        }
        waiting
    }

    /// Completes when a write had to wait for the module while no stall was timed (or had, since
    /// the last call).
    pub async fn write_waited(&self) {
        self.write_waited.notified().await;
    }

    /// The writer's write could not complete at once (the module's stdin pipe is full).
    fn wait_for_module(&self) {
        fence(Ordering::SeqCst);
        if !self.stall_timed.load(Ordering::SeqCst) {
            self.write_waited.notify_one();
        }
    }

    /// A mark of everything pushed so far: once [`Outbox::reached`] says so, all of it (a health
    /// ping just pushed, say) has been written to the module. Never above the true count, so a
    /// mark is always reached once the queue drains.
    pub fn mark(&self) -> u64 {
        // `written` lowers `queued` before it raises `written_total`: read in this order, a
        // concurrent write can only make the sum smaller, never count a byte twice.
        let written = self.written_total.load(Ordering::Acquire);
        written + self.queued() as u64
    }

    /// Whether everything pushed before [`Outbox::mark`] returned `mark` reached the module.
    pub fn reached(&self, mark: u64) -> bool {
        self.written_total.load(Ordering::Acquire) >= mark
    }

    fn touch(&self) {
        self.last_progress_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Waits until the queue is below [`LOW_WATER`] or the outbox is closed, at most `max`.
    /// Returns false on timeout.
    pub async fn wait_drained(&self, max: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let notified = self.drained.notified();
            if self.queued() <= LOW_WATER || self.closed.load(Ordering::Acquire) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.queued() <= LOW_WATER;
            }
        }
    }

    /// The writer's half of the queue: swaps everything queued into `batch` (empty on entry).
    /// The bytes stay counted as queued until [`Outbox::written`].
    #[inline]
    pub fn swap_queued(&self, batch: &mut Vec<u8>) {
        std::mem::swap(&mut *self.buf.lock(), batch);
    }

    /// `n` bytes taken by [`Outbox::swap_queued`] reached the module: progress for the hung
    /// consumer check, and waiting publishers are released once the queue is below the low-water
    /// mark.
    #[inline]
    pub fn written(&self, n: usize) {
        self.touch();
        let left = self.queued.fetch_sub(n, Ordering::AcqRel).saturating_sub(n);
        self.written_total.fetch_add(n as u64, Ordering::AcqRel);
        if left <= LOW_WATER {
            self.drained.notify_waiters();
        }
    }

    /// Closes the outbox: queued and later messages are discarded; the writer task ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_writer.notify_one();
        self.drained.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Writes everything pushed to `outbox` into the module's stdin until the outbox is closed or
/// the pipe breaks. Closing stdin at the end lets SDK-based modules notice.
pub async fn writer_task(outbox: Arc<Outbox>, mut stdin: ChildStdin) {
    let mut batch: Vec<u8> = Vec::new();
    loop {
        if outbox.is_closed() {
            break;
        }
        let notified = outbox.wake_writer.notified();
        outbox.swap_queued(&mut batch);
        if batch.is_empty() {
            notified.await;
            continue;
        }
        let n = batch.len();
        let written = {
            let mut write = std::pin::pin!(stdin.write_all(&batch));
            match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                Poll::Ready(r) => r,
                Poll::Pending => {
                    outbox.wait_for_module();
                    write.await
                }
            }
        };
        if written.is_err() {
            outbox.close();
            break;
        }
        batch.clear();
        if batch.capacity() > (4 << 20) {
            batch.shrink_to(64 << 10);
        }
        outbox.written(n);
    }
    let _ = stdin.shutdown().await;
    drop(stdin);
    outbox.drained.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushers and a writer racing on one outbox: the writer may take bytes the instant a pusher
    /// releases the buffer, and the count of queued bytes must never go below zero (a debug
    /// build panics on the subtraction) nor lose a byte.
    #[test]
    fn a_writer_racing_pushers_never_counts_a_byte_it_was_not_given() {
        let outbox = Outbox::new();
        let pushers: Vec<_> = (0..4)
            .map(|_| {
                let outbox = outbox.clone();
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        outbox.push_with(|buf| buf.extend_from_slice(b"{\"type\":\"x\"}\n"));
                    }
                })
            })
            .collect();
        let writer = {
            let outbox = outbox.clone();
            std::thread::spawn(move || {
                let mut batch = Vec::new();
                let mut total = 0u64;
                while total < 4 * 50_000 * 13 {
                    outbox.swap_queued(&mut batch);
                    let n = batch.len();
                    batch.clear();
                    outbox.written(n);
                    total += n as u64;
                }
                total
            })
        };
        for p in pushers {
            p.join().expect("pusher");
        }
        let total = writer.join().expect("writer");
        assert_eq!(total, 4 * 50_000 * 13);
        assert_eq!(outbox.queued(), 0);
        assert!(outbox.reached(total));
    }
}
