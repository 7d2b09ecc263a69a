//! A batch's direct write against bytes already queued: it never overtakes them, and a pipe that
//! takes only part of a write leaves the rest queued, in order, for the writer task.

use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use super::*;

/// Bytes of one line, `\n` included: not a divisor of the pipe's page size, so a write that meets
/// a nearly full pipe is cut in the middle of a line.
const LINE: usize = 100;
/// Lines a batch queues: 10,000 bytes, within what a batch writes itself ([`DIRECT_MAX`]) and
/// more than `PIPE_BUF`, so the kernel may take part of it.
const PER_BATCH: usize = 100;

fn line(seq: usize) -> Vec<u8> {
    let mut l = format!("{seq:08}").into_bytes();
    l.resize(LINE - 1, b'.');
    l.push(b'\n');
    l
}

/// Pushes `PER_BATCH` numbered lines from `*seq` inside one batch (flushed when it ends).
fn push_batch(outbox: &Outbox, seq: &mut usize) {
    let _batch = Batch::open();
    for _ in 0..PER_BATCH {
        assert!(outbox.push_with(|b| b.extend_from_slice(&line(*seq))));
        *seq += 1;
    }
}

/// Stops or continues process `pid` (`SIGSTOP` / `SIGCONT`); on `SIGSTOP`, waits until it is
/// stopped (it can no longer read what is written from then on).
fn signal(pid: u32, sig: rustix::process::Signal) {
    let p = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    rustix::process::kill_process(p, sig).expect("signal cat");
    if sig != rustix::process::Signal::STOP {
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat of cat");
        // `pid (comm) S ...`: the state follows the last `)`.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.trim_start().chars().next());
        if state == Some('T') {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cat never stopped: {stat}"
        );
        std::thread::yield_now();
    }
}

/// The module (`cat`, stopped) takes no bytes: once the writer task is idle, batches are
/// written straight to its stdin until the pipe is full and a write is cut short, inside a
/// line. The bytes the pipe refused stay queued in front of what later batches queue, and no
/// batch's end writes past them. Once the module reads again, the writer task delivers every
/// line exactly once, in order.
#[tokio::test(flavor = "current_thread")]
async fn a_direct_write_never_overtakes_queued_bytes() {
    let mut child = tokio::process::Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cat");
    let pid = child.id().expect("cat's pid");
    signal(pid, rustix::process::Signal::STOP);
    let outbox = Outbox::new();
    // Attached now; the task runs only while this test awaits (one-thread runtime).
    let writer = tokio::spawn(writer_task(
        outbox.clone(),
        child.stdin.take().expect("stdin"),
    ));
    let written = || outbox.written_total.load(Ordering::Acquire);
    // A line pushed outside a batch (a health ping, say) wakes the writer task; a batch that
    // follows before the task ran leaves its lines to it too, and writes nothing itself.
    assert!(outbox.push_with(|b| b.extend_from_slice(&line(0))));
    let mut seq = 1;
    push_batch(&outbox, &mut seq);
    assert_eq!(written(), 0, "the batch left the queue to the writer task");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while outbox.queued() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer task never wrote"
        );
        tokio::task::yield_now().await;
    }
    // The writer is idle (it found the queue empty): from here on batches write themselves.
    while outbox.queue.lock().writing {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer task never went idle"
        );
        tokio::task::yield_now().await;
    }
    let by_writer = written();
    let cut = loop {
        push_batch(&outbox, &mut seq);
        let left = outbox.queued();
        if left > 0 {
            break left;
        }
        // A pipe holds 64 KiB by default, 1 MiB at most for an unprivileged user.
        assert!(seq < 200 * PER_BATCH, "the pipe never filled up");
    };
    assert!(
        seq > 1 + 2 * PER_BATCH,
        "the batches before the pipe filled were written by the batches themselves"
    );
    assert!(
        cut < PER_BATCH * LINE && cut % LINE != 0,
        "the pipe took part of the last batch, up to inside a line ({cut} bytes left)"
    );
    assert_eq!(written() as usize + cut, seq * LINE);
    assert!(written() > by_writer);
    // Later batches while the pipe is full: queued behind the rest, nothing written past it.
    let before = written();
    for _ in 0..3 {
        push_batch(&outbox, &mut seq);
    }
    assert_eq!(written(), before, "no batch wrote while older bytes waited");
    assert_eq!(outbox.queued(), cut + 3 * PER_BATCH * LINE);

    // The module reads again: every line once, in order, whoever wrote it.
    signal(pid, rustix::process::Signal::CONT);
    let stdout = child.stdout.take().expect("stdout");
    let total = seq;
    let read_all = async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        for want in 0..total {
            let got = lines.next_line().await.expect("read").expect("a line");
            assert_eq!(
                got.as_bytes(),
                &line(want)[..LINE - 1],
                "line {want} of {total}"
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .expect("every line read in time");
    assert_eq!(outbox.queued(), 0);
    assert_eq!(written() as usize, total * LINE);
    outbox.close();
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the writer ends once closed")
        .expect("writer");
}
