//! Per-module outbound queue and its writer task.
//!
//! The router appends encoded lines (one JSON object + `\n` each) to a module's [`Outbox`].
//! A stdout reader routes a whole read's worth of lines inside a [`Batch`]; when it ends, every
//! outbox the batch made non-empty is *flushed*: if no write is in progress and the bytes are few
//! (an RPC, a small burst) they go straight into the module's (non-blocking) stdin from the
//! reader's own thread, so a message costs no task hop and no wake-up of another task. What the
//! pipe does not take at once (it is full, a write is in progress, or a burst queued more) is left
//! to the outbox's writer task, which swaps the whole buffer out and writes it in one call, so a
//! burst of messages becomes a few large writes (batching per module). Bytes reach the pipe in
//! the order they were queued: a flush writes from the head of the buffer and only when the
//! writer holds no batch, and the writer only takes what is in the buffer.
//!
//! Back-pressure: an outbox above [`HIGH_WATER`] bytes is *congested*: the reader of
//! a publisher that filled it waits (up to `slowConsumerMs`) until it drains below [`LOW_WATER`],
//! so nothing is lost while consumers keep up. Above [`HARD_CAP`] bytes messages are dropped and
//! counted, so memory per module stays bounded. A consumer that makes no progress for
//! `slowConsumerMs` while bytes wait is hung; the supervisor restarts it. It times that only while
//! bytes wait: a write that has to wait for the module wakes it ([`Outbox::write_waited`]) unless
//! it is timing a stall already ([`Outbox::watch_stall`]), so an idle module costs no wake-up.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
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
/// At most this many bytes are written by a [`Batch`]'s end itself, under the outbox's lock
/// (other readers pushing to the outbox wait meanwhile, holding the router): more is the
/// writer task's job, which writes outside the lock.
const DIRECT_MAX: usize = 16 << 10;

/// The outbound queue of one module process.
pub struct Outbox {
    /// This outbox, for a [`Batch`] to keep until it flushes.
    me: std::sync::Weak<Outbox>,
    queue: Mutex<Queue>,
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

/// What the buffer lock guards.
struct Queue {
    /// Encoded lines not handed to the pipe or the writer yet.
    buf: Vec<u8>,
    /// The writer task holds bytes it swapped out and has not completely written: a flush must
    /// not write past them.
    writing: bool,
    /// The module's stdin (non-blocking), while the writer task owns it: flushes write here.
    /// Cleared under this lock before the writer closes it, so a flush never writes to a closed
    /// (or reused) descriptor.
    pipe: Option<RawFd>,
}

impl Outbox {
    pub fn new() -> Arc<Outbox> {
        Arc::new_cyclic(|me| Outbox {
            me: me.clone(),
            queue: Mutex::new(Queue {
                buf: Vec::new(),
                writing: false,
                pipe: None,
            }),
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
    /// message was dropped (outbox closed or over the hard cap). Inside a [`Batch`] the write is
    /// left to the batch's end; otherwise the writer task is woken.
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
            let mut q = self.queue.lock();
            let buf = &mut q.buf;
            let before = buf.len();
            if self.queued.load(Ordering::Acquire) == 0 {
                // Nothing was waiting: stalls are measured from now, not from the last write.
                self.touch();
            }
            encode(buf);
            // Counted before the lock is released: the writer may swap these bytes out the
            // moment it is, and `written` must never subtract bytes not yet counted.
            self.queued.fetch_add(buf.len() - before, Ordering::AcqRel)
        };
        // Whoever makes the queue non-empty sees that it is written: the batch it routes in, at
        // its end, or the writer task now. Later pushes find it non-empty and leave it be.
        if prev == 0 && !Batch::defer(self) {
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

    /// Resolves once a push makes the queue non-empty (or at once if one did since the last
    /// wait), or the outbox closes: for a writer task of its own (the cluster link's queue).
    pub fn writer_wake(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake_writer.notified()
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
    /// The bytes stay counted as queued until [`Outbox::written`]; until the writer swaps again
    /// (and finds nothing), flushes leave the pipe to it.
    #[inline]
    pub fn swap_queued(&self, batch: &mut Vec<u8>) {
        let mut q = self.queue.lock();
        std::mem::swap(&mut q.buf, batch);
        q.writing = !batch.is_empty();
    }

    /// Writes what is queued straight into the module's stdin if no write is in progress and it
    /// is at most [`DIRECT_MAX`] bytes, as much as the pipe takes without blocking; whatever
    /// remains is left to the writer task.
    pub fn flush(&self) {
        let mut q = self.queue.lock();
        if q.buf.is_empty() {
            return;
        }
        let fd = match q.pipe {
            Some(fd) if !q.writing && q.buf.len() <= DIRECT_MAX && !self.is_closed() => fd,
            _ => {
                drop(q);
                self.wake_writer.notify_one();
                return;
            }
        };
        // SAFETY: `pipe` is only set while the writer task owns the open descriptor, and the
        // writer clears it under this lock (held here) before the descriptor is closed.
        let pipe = unsafe { BorrowedFd::borrow_raw(fd) };
        let n = rustix::io::write(pipe, &q.buf).unwrap_or(0);
        if n == q.buf.len() {
            q.buf.clear();
            if q.buf.capacity() > (4 << 20) {
                q.buf.shrink_to(64 << 10);
            }
        } else {
            // The pipe is full (or failed: the writer finds out and closes the outbox).
            q.buf.drain(..n);
        }
        if n > 0 {
            self.written(n);
        }
        let rest = !q.buf.is_empty();
        drop(q);
        if rest {
            self.wake_writer.notify_one();
        }
    }

    /// `n` bytes taken by [`Outbox::swap_queued`] reached the module: progress for the hung
    /// consumer check, and waiting publishers are released once the queue is below the low-water
    /// mark.
    #[inline]
    pub fn written(&self, n: usize) {
        self.touch();
        let before = self.queued.fetch_sub(n, Ordering::AcqRel);
        self.written_total.fetch_add(n as u64, Ordering::AcqRel);
        // Only a waiter that saw the queue above the low-water mark waits, and the write that
        // takes it there or below is the one to wake it (its `notified()` was created before it
        // looked, so it cannot miss this).
        if before > LOW_WATER && before.saturating_sub(n) <= LOW_WATER {
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

/// Writes everything pushed to `outbox` that flushes left behind into the module's stdin until
/// the outbox is closed or the pipe breaks. Closing stdin at the end lets SDK-based modules
/// notice. From the call on (before the future first runs), flushes may write to `stdin`
/// directly.
pub fn writer_task(outbox: Arc<Outbox>, stdin: ChildStdin) -> impl Future<Output = ()> + Send {
    let mut stdin = Attached::new(outbox.clone(), stdin);
    async move {
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
                let mut write = std::pin::pin!(stdin.stdin.write_all(&batch));
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
        stdin.detach();
        let _ = stdin.stdin.shutdown().await;
        drop(stdin);
        outbox.drained.notify_waiters();
    }
}

/// The module's stdin while flushes may write to it: detached (under the buffer lock) before it
/// is closed, however the writer task ends (runtime shutdown drops it mid-write).
struct Attached {
    outbox: Arc<Outbox>,
    stdin: ChildStdin,
}

impl Attached {
    fn new(outbox: Arc<Outbox>, stdin: ChildStdin) -> Attached {
        let fd = stdin.as_raw_fd();
        // Only a non-blocking pipe may be written from a routing thread (tokio makes child pipes
        // non-blocking; checked rather than assumed).
        // SAFETY: `stdin` owns `fd` for the duration of this call.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let nonblocking = rustix::fs::fcntl_getfl(borrowed)
            .is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK));
        if nonblocking {
            outbox.queue.lock().pipe = Some(fd);
        }
        Attached { outbox, stdin }
    }

    fn detach(&self) {
        let mut q = self.outbox.queue.lock();
        q.pipe = None;
        q.writing = false;
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Routing of a read's worth of lines on this thread: pushes that make an outbox non-empty
/// record it instead of waking its writer, and when the batch ends (dropped) each is flushed
/// ([`Outbox::flush`]), so a module gets one write per batch. Not `Send`: a batch never spans an
/// `.await`. Opening a batch inside an open one is a no-op (the outer one flushes).
pub struct Batch {
    outer: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

thread_local! {
    static BATCH_OPEN: Cell<bool> = const { Cell::new(false) };
    static BATCH_PENDING: RefCell<Vec<Arc<Outbox>>> = const { RefCell::new(Vec::new()) };
}

impl Batch {
    pub fn open() -> Batch {
        let outer = !BATCH_OPEN.with(|o| o.replace(true));
        Batch {
            outer,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Records `outbox` for the open batch of this thread; false when none is open.
    fn defer(outbox: &Outbox) -> bool {
        if !BATCH_OPEN.with(Cell::get) {
            return false;
        }
        BATCH_PENDING.with(|p| {
            let mut p = p.borrow_mut();
            if p.iter().any(|o| std::ptr::eq(&**o, outbox)) {
                return true;
            }
            match outbox.me.upgrade() {
                Some(me) => {
                    p.push(me);
                    true
                }
                None => false,
            }
        })
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        BATCH_OPEN.with(|o| o.set(false));
        let mut pending = BATCH_PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
        for ob in pending.drain(..) {
            ob.flush();
        }
        // Keep the allocation for the next batch.
        BATCH_PENDING.with(|p| {
            let mut p = p.borrow_mut();
            if p.is_empty() {
                *p = pending;
            }
        });
    }
}

#[cfg(test)]
mod order_tests;

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

    /// A child that copies its stdin to its stdout, read back line by line.
    fn cat() -> tokio::process::Child {
        tokio::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn cat")
    }

    /// Lines pushed in batches (written straight to the pipe while it takes them, by the
    /// writer task when it is full) reach the module complete and in order, and the counts end
    /// where they should.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_pushes_arrive_in_order_whoever_writes_them() {
        use tokio::io::AsyncBufReadExt;
        const N: usize = 200_000;
        let mut child = cat();
        let outbox = Outbox::new();
        let writer = tokio::spawn(writer_task(
            outbox.clone(),
            child.stdin.take().expect("stdin"),
        ));
        let stdout = child.stdout.take().expect("stdout");
        let reader = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            for want in 0..N {
                let line = lines.next_line().await.expect("read").expect("a line");
                assert_eq!(line, format!("{{\"seq\":{want}}}"), "line {want}");
                if want % 2_000 == 0 {
                    // Let the pipe fill up now and then, so the writer task takes over.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });
        let pusher = {
            let outbox = outbox.clone();
            std::thread::spawn(move || {
                let mut seq = 0;
                while seq < N {
                    let _batch = Batch::open();
                    for _ in 0..(1 + seq % 300).min(N - seq) {
                        let line = format!("{{\"seq\":{seq}}}\n");
                        assert!(outbox.push_with(|b| b.extend_from_slice(line.as_bytes())));
                        seq += 1;
                    }
                }
            })
        };
        pusher.join().expect("pusher");
        tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("every line read in time")
            .expect("reader");
        assert_eq!(outbox.pushed(), N as u64);
        assert_eq!(outbox.queued(), 0);
        assert!(outbox.reached(outbox.mark()));
        outbox.close();
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("the writer ends once closed")
            .expect("writer");
        assert!(
            outbox.queue.lock().pipe.is_none(),
            "detached before stdin closed"
        );
    }

    /// Whether the writer task has been woken (a permit is waiting for it).
    fn writer_woken(outbox: &Outbox) -> bool {
        use std::future::Future;
        let mut notified = std::pin::pin!(outbox.wake_writer.notified());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        notified.as_mut().poll(&mut cx).is_ready()
    }

    /// Inside a batch a push wakes no writer; the batch's end does, when it cannot write itself.
    #[test]
    fn a_batch_wakes_the_writer_only_at_its_end() {
        let outbox = Outbox::new();
        outbox.push_with(|b| b.extend_from_slice(b"{}\n"));
        assert!(
            writer_woken(&outbox),
            "outside a batch the push wakes the writer"
        );
        outbox.swap_queued(&mut Vec::new());
        outbox.written(3);
        let batch = Batch::open();
        outbox.push_with(|b| b.extend_from_slice(b"{}\n"));
        assert!(!writer_woken(&outbox), "deferred to the batch's end");
        drop(batch);
        assert!(
            writer_woken(&outbox),
            "no pipe to write to: the writer's job"
        );
        assert_eq!(outbox.queued(), 3);
    }

    /// The end of a batch writes to the pipe itself, on its own thread, while it owns one.
    #[tokio::test]
    async fn a_batch_writes_to_the_pipe_when_it_ends() {
        use tokio::io::AsyncReadExt;
        let mut child = cat();
        let outbox = Outbox::new();
        // The pipe as the writer task holds it, without the task.
        let attached = Attached::new(outbox.clone(), child.stdin.take().expect("stdin"));
        let batch = Batch::open();
        outbox.push_with(|b| b.extend_from_slice(b"{\"a\":1}\n"));
        outbox.push_with(|b| b.extend_from_slice(b"{\"b\":2}\n"));
        assert_eq!(outbox.queued(), 16, "held until the batch ends");
        drop(batch);
        assert_eq!(outbox.queued(), 0, "written when the batch ended");
        assert!(!writer_woken(&outbox), "without the writer");
        let mut got = [0u8; 16];
        let mut stdout = child.stdout.take().expect("stdout");
        tokio::time::timeout(Duration::from_secs(10), stdout.read_exact(&mut got))
            .await
            .expect("read in time")
            .expect("read");
        assert_eq!(&got, b"{\"a\":1}\n{\"b\":2}\n");
        // Detached (the writer ended): nothing is written to a descriptor it no longer owns.
        drop(attached);
        let batch = Batch::open();
        outbox.push_with(|b| b.extend_from_slice(b"{}\n"));
        drop(batch);
        assert_eq!(outbox.queued(), 3);
    }

    /// While the writer holds bytes it has not written, the end of a batch leaves the pipe to it:
    /// what was pushed later is written later.
    #[tokio::test]
    async fn a_batch_never_writes_ahead_of_the_writer() {
        use tokio::io::AsyncReadExt;
        let mut child = cat();
        let outbox = Outbox::new();
        let mut attached = Attached::new(outbox.clone(), child.stdin.take().expect("stdin"));
        let batch = Batch::open();
        outbox.push_with(|b| b.extend_from_slice(b"A\n"));
        // The writer's part, by hand: it takes "A" before the batch ends and has not written it
        // yet when "B" comes and the batch ends.
        let mut held = Vec::new();
        outbox.swap_queued(&mut held);
        outbox.push_with(|b| b.extend_from_slice(b"B\n"));
        drop(batch);
        assert_eq!(outbox.queued(), 4, "B waits for the writer");
        assert!(writer_woken(&outbox));
        for _ in 0..2 {
            attached.stdin.write_all(&held).await.expect("write");
            outbox.written(held.len());
            held.clear();
            outbox.swap_queued(&mut held);
        }
        assert_eq!(outbox.queued(), 0);
        let mut got = [0u8; 4];
        let mut stdout = child.stdout.take().expect("stdout");
        tokio::time::timeout(Duration::from_secs(10), stdout.read_exact(&mut got))
            .await
            .expect("read in time")
            .expect("read");
        assert_eq!(&got, b"A\nB\n");
    }

    /// A batch that queued more than [`DIRECT_MAX`] leaves the writing to the writer task (which
    /// writes outside the lock pushers need).
    #[tokio::test]
    async fn a_large_batch_is_the_writers_job() {
        let mut child = cat();
        let outbox = Outbox::new();
        let _attached = Attached::new(outbox.clone(), child.stdin.take().expect("stdin"));
        let line = [b'x'; 1023];
        let batch = Batch::open();
        for _ in 0..=DIRECT_MAX / 1024 {
            outbox.push_with(|b| {
                b.extend_from_slice(&line);
                b.push(b'\n');
            });
        }
        drop(batch);
        assert_eq!(
            outbox.queued(),
            DIRECT_MAX + 1024,
            "nothing written by the batch"
        );
        assert!(writer_woken(&outbox));
    }
}
