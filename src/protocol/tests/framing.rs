//! Tests of [`LineReader`]: trimming, blank lines, EOF tails, oversize lines, odd chunkings.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};

use crate::protocol::LineReader;

/// Yields the given chunks, one (or the part that fits) per read.
struct Chunks {
    chunks: VecDeque<Vec<u8>>,
    reads: usize,
}

impl Chunks {
    fn new(chunks: Vec<Vec<u8>>) -> Self {
        Chunks {
            chunks: chunks.into(),
            reads: 0,
        }
    }
}

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.reads += 1;
        if let Some(mut chunk) = self.chunks.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                chunk.drain(..n);
                self.chunks.push_front(chunk);
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Reads everything; returns the lines and the number of dropped oversize lines.
fn collect<R: AsyncRead + Unpin>(reader: R, max: usize) -> (Vec<Vec<u8>>, u64) {
    rt().block_on(async {
        let mut lr = LineReader::new(reader, max);
        let mut lines = Vec::new();
        while lr.read_batch(|l| lines.push(l.to_vec())).await.unwrap() {}
        // Reading again after EOF stays at EOF and yields nothing.
        assert!(!lr.read_batch(|_| panic!("line after EOF")).await.unwrap());
        (lines, lr.oversize_dropped())
    })
}

fn strs(lines: &[Vec<u8>]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect()
}

#[test]
fn trims_and_skips_blank_lines() {
    let input = b"a\r\n\n  \r\n\t{\"x\":1}  \nb\n\r\n".to_vec();
    let (lines, dropped) = collect(Chunks::new(vec![input]), 100);
    assert_eq!(strs(&lines), ["a", "{\"x\":1}", "b"]);
    assert_eq!(dropped, 0);
}

#[test]
fn final_line_without_newline_is_emitted_at_eof() {
    let (lines, _) = collect(Chunks::new(vec![b"one\ntwo".to_vec()]), 100);
    assert_eq!(strs(&lines), ["one", "two"]);
    let (lines, _) = collect(Chunks::new(vec![b"  \r".to_vec()]), 100);
    assert!(lines.is_empty());
}

#[test]
fn line_split_across_many_reads() {
    let line = b"{\"type\":\"publish\",\"topic\":\"t\",\"payload\":\"0123456789\"}\n";
    let chunks: Vec<Vec<u8>> = line
        .iter()
        .chain(b"x\r\n".iter())
        .map(|&b| vec![b])
        .collect();
    let reader = Chunks::new(chunks);
    let (lines, _) = collect(reader, 1000);
    assert_eq!(
        strs(&lines),
        [std::str::from_utf8(&line[..line.len() - 1]).unwrap(), "x"]
    );
}

#[test]
fn one_read_per_batch() {
    rt().block_on(async {
        let mut lr = LineReader::new(
            Chunks::new(vec![b"a\nb".to_vec(), b"c\nd\n".to_vec(), b"e".to_vec()]),
            100,
        );
        let mut got = Vec::new();
        assert!(lr.read_batch(|l| got.push(l.to_vec())).await.unwrap());
        assert_eq!(strs(&got), ["a"]);
        assert!(lr.read_batch(|l| got.push(l.to_vec())).await.unwrap());
        assert_eq!(strs(&got), ["a", "bc", "d"]);
        assert!(lr.read_batch(|l| got.push(l.to_vec())).await.unwrap());
        assert!(!lr.read_batch(|l| got.push(l.to_vec())).await.unwrap());
        assert_eq!(strs(&got), ["a", "bc", "d", "e"]);
        assert_eq!(lr.get_ref().reads, 4);
    });
}

#[test]
fn oversize_line_dropped_and_next_line_read() {
    const MAX: usize = 10 * 1024 * 1024;
    let mut input = b"{\"type\":\"pong\"}\n".to_vec();
    input.extend(std::iter::repeat_n(b'a', 11 * 1024 * 1024));
    input.extend_from_slice(b"\n{\"type\":\"ready\"}\n");
    let (lines, dropped) = collect(&input[..], MAX);
    assert_eq!(
        strs(&lines),
        ["{\"type\":\"pong\"}", "{\"type\":\"ready\"}"]
    );
    assert_eq!(dropped, 1);
    // The buffer never holds much more than the limit while skipping the long line.
    rt().block_on(async {
        let mut lr = LineReader::new(&input[..], MAX);
        let mut peak = 0;
        let mut n = 0;
        while lr.read_batch(|_| n += 1).await.unwrap() {
            peak = peak.max(lr.buffer_capacity());
        }
        assert_eq!(n, 2);
        assert!(peak <= MAX + 64 * 1024, "peak buffer {peak}");
        assert!(lr.buffer_capacity() <= 256 * 1024);
    });
}

#[test]
fn oversize_line_inside_one_read_and_at_eof() {
    let (lines, dropped) = collect(Chunks::new(vec![b"abcdefghij\nok\nxyz".to_vec()]), 5);
    assert_eq!(strs(&lines), ["ok", "xyz"]);
    assert_eq!(dropped, 1);
    // An oversize unterminated tail at EOF is dropped once.
    let (lines, dropped) = collect(Chunks::new(vec![b"ok\n".to_vec(), b"abcdefgh".to_vec()]), 5);
    assert_eq!(strs(&lines), ["ok"]);
    assert_eq!(dropped, 1);
    // Exactly the limit passes.
    let (lines, dropped) = collect(Chunks::new(vec![b"abcde\n".to_vec()]), 5);
    assert_eq!(strs(&lines), ["abcde"]);
    assert_eq!(dropped, 0);
}

#[test]
fn set_max_line_applies_to_later_data() {
    rt().block_on(async {
        let mut lr = LineReader::new(
            Chunks::new(vec![b"abcdef\n".to_vec(), b"abcdef\n".to_vec()]),
            10,
        );
        let mut got = Vec::new();
        lr.read_batch(|l| got.push(l.to_vec())).await.unwrap();
        lr.set_max_line(3);
        while lr.read_batch(|l| got.push(l.to_vec())).await.unwrap() {}
        assert_eq!(strs(&got), ["abcdef"]);
        assert_eq!(lr.oversize_dropped(), 1);
    });
}

/// The lines a reference splitter would produce, with oversize ones removed.
fn expected(input: &[u8], max: usize) -> (Vec<Vec<u8>>, u64) {
    let mut lines = Vec::new();
    let mut dropped = 0;
    for raw in input.split(|&b| b == b'\n') {
        if raw.len() > max {
            dropped += 1;
            continue;
        }
        let t = raw.trim_ascii();
        if !t.is_empty() {
            lines.push(t.to_vec());
        }
    }
    (lines, dropped)
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_lines(
        input in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'a'), any::<u8>()], 0..600),
        cuts in proptest::collection::vec(1usize..80, 0..40),
        max in 1usize..40,
    ) {
        let mut chunks = Vec::new();
        let mut rest = &input[..];
        for c in cuts {
            if rest.is_empty() { break; }
            let n = c.min(rest.len());
            chunks.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        if !rest.is_empty() { chunks.push(rest.to_vec()); }
        let (lines, dropped) = collect(Chunks::new(chunks), max);
        for l in &lines {
            prop_assert!(l.len() <= max);
        }
        let (want, want_dropped) = expected(&input, max);
        prop_assert_eq!(lines, want);
        prop_assert_eq!(dropped, want_dropped);
    }
}

#[test]
fn fill_then_drain_is_read_batch_in_two_steps() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let data: &[u8] = b"one\ntwo\nthr";
        let mut lr = LineReader::new(data, 100);
        let mut got: Vec<Vec<u8>> = Vec::new();
        // Two fills before a drain lose nothing; end of stream then emits the tail.
        assert!(lr.fill().await.unwrap());
        assert!(!lr.fill().await.unwrap());
        lr.drain(|l| got.push(l.to_vec()));
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"thr".to_vec()]);
        lr.drain(|_| panic!("nothing left"));
        assert!(!lr.fill().await.unwrap());
    });
}
