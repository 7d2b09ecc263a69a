//! Newline framing of a module's stdout (and stderr): [`LineReader`] splits a byte stream into
//! lines with a bounded buffer.
//!
//! Each [`LineReader::read_batch`] does one read of up to 64 KiB and hands every complete line
//! to a callback (reads start at 256 bytes and double while they come back full, so a quiet module's
//! reader holds a small buffer and a busy one reads 64 KiB at a time), trimmed of surrounding ASCII whitespace (so a `\r` goes), skipping empty
//! ones. An unterminated tail waits for the next read; at end of stream it is emitted as a final
//! line. A line longer than the limit is dropped and counted: once the buffered
//! tail passes the limit it is thrown away and everything up to the next `\n` is skipped as it
//! arrives, so memory stays bounded by the limit plus one read.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes asked for per read, at most.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes asked for by the first read; each read that comes back full doubles the next.
const FIRST_READ: usize = 256;
/// Capacity kept after a long line has been handled; more is given back.
const KEEP_CAPACITY: usize = 4 * READ_CHUNK;

/// Splits an [`AsyncRead`] into trimmed, non-empty lines of at most `max_line` bytes.
pub struct LineReader<R> {
    inner: R,
    max_line: usize,
    /// Unterminated tail of the stream (no `\n` in it), then freshly read bytes.
    buf: Vec<u8>,
    /// Skipping the rest of an oversize line until its `\n`.
    discarding: bool,
    eof: bool,
    dropped: u64,
    /// What the last [`LineReader::fill`] left for [`LineReader::drain`].
    filled: Filled,
    /// Bytes the next read asks for ([`FIRST_READ`] up to [`READ_CHUNK`]).
    next_read: usize,
}

/// The state between [`LineReader::fill`] and [`LineReader::drain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filled {
    /// Nothing new.
    Nothing,
    /// New bytes; the first `scanned` bytes of the buffer hold no `\n`.
    Bytes { scanned: usize },
    /// End of stream reached: the unterminated tail (if any) is the last line; `scanned` as in
    /// `Bytes` when an earlier fill was not drained yet.
    Eof { scanned: Option<usize> },
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader that drops lines longer than `max_line` bytes (newline excluded).
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            max_line,
            buf: Vec::new(),
            discarding: false,
            eof: false,
            dropped: 0,
            filled: Filled::Nothing,
            next_read: FIRST_READ,
        }
    }

    /// Changes the line limit; applies to data read from now on.
    pub fn set_max_line(&mut self, n: usize) {
        self.max_line = n;
    }

    /// Number of lines dropped for being longer than the limit.
    pub fn oversize_dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes of buffer currently allocated (bounded by the line limit plus one read).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Does one read and calls `on_line` for every complete line it finishes. Returns
    /// `Ok(false)` at end of stream (after emitting a final unterminated line), `Ok(true)`
    /// otherwise. Read errors other than `Interrupted` are returned as is.
    ///
    /// Cancel-safe (usable in `tokio::select!`): dropping the future before it completes loses
    /// no data, since bytes are only consumed after the read returns.
    pub async fn read_batch(&mut self, on_line: impl FnMut(&[u8])) -> std::io::Result<bool> {
        let more = self.fill().await?;
        self.drain(on_line);
        Ok(more)
    }

    /// The first half of [`LineReader::read_batch`]: does one read (nothing after end of
    /// stream). Returns `Ok(false)` once the stream has ended. The lines it completed are handed
    /// out by [`LineReader::drain`], so a caller can take a lock once for a whole batch.
    /// Cancel-safe like `read_batch`.
    pub async fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let scanned = match self.filled {
            // A previous fill was not drained: drain it first (no bytes are lost either way).
            Filled::Bytes { scanned } => scanned,
            _ => self.buf.len(),
        };
        let want = self.next_read;
        if self.buf.capacity() - self.buf.len() < want {
            // Grow by doubling (amortised copies for long lines) but never past what the
            // longest acceptable line plus one read needs.
            let len = self.buf.len();
            let cap = self.buf.capacity();
            let target = (cap * 2)
                .min(self.max_line.saturating_add(READ_CHUNK))
                .max(len + want);
            self.buf.reserve_exact(target - len);
        }
        let n = loop {
            let mut limited = (&mut self.inner).take(want as u64);
            match limited.read_buf(&mut self.buf).await {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.eof = true;
            let pending = matches!(self.filled, Filled::Bytes { .. }).then_some(scanned);
            self.filled = Filled::Eof { scanned: pending };
            return Ok(false);
        }
        if n == want {
            self.next_read = (want * 2).min(READ_CHUNK);
        }
        self.filled = Filled::Bytes { scanned };
        Ok(true)
    }

    /// The second half of [`LineReader::read_batch`]: calls `on_line` for every line the last
    /// [`LineReader::fill`] completed (and, at end of stream, for the unterminated tail).
    pub fn drain(&mut self, mut on_line: impl FnMut(&[u8])) {
        match std::mem::replace(&mut self.filled, Filled::Nothing) {
            Filled::Nothing => {}
            Filled::Bytes { scanned } => self.split(scanned, &mut on_line),
            Filled::Eof { scanned } => {
                if let Some(scanned) = scanned {
                    self.split(scanned, &mut on_line);
                }
                if self.discarding {
                    // The oversize line was already counted.
                } else if self.buf.len() > self.max_line {
                    self.dropped += 1;
                } else {
                    emit(&self.buf, &mut on_line);
                }
                self.buf.clear();
                self.shrink();
            }
        }
    }

    /// Emits the complete lines in `buf` (the first `scanned` bytes hold no `\n`) and keeps the
    /// tail.
    fn split(&mut self, scanned: usize, on_line: &mut impl FnMut(&[u8])) {
        let mut start = 0;
        let mut search = scanned;
        if self.discarding {
            match memchr::memchr(b'\n', &self.buf[search..]) {
                Some(i) => {
                    self.discarding = false;
                    start = search + i + 1;
                    search = start;
                }
                None => {
                    self.buf.clear();
                    return;
                }
            }
        }
        for i in memchr::memchr_iter(b'\n', &self.buf[search..]) {
            let end = search + i;
            let line = &self.buf[start..end];
            if line.len() > self.max_line {
                self.dropped += 1;
            } else {
                emit(line, on_line);
            }
            start = end + 1;
        }
        let tail = self.buf.len() - start;
        if tail > self.max_line {
            self.dropped += 1;
            self.discarding = true;
            self.buf.clear();
            self.shrink();
        } else if start > 0 {
            self.buf.copy_within(start.., 0);
            self.buf.truncate(tail);
            if tail == 0 {
                self.shrink();
            }
        }
    }

    fn shrink(&mut self) {
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf.shrink_to(READ_CHUNK);
        }
    }
}

fn emit(line: &[u8], on_line: &mut impl FnMut(&[u8])) {
    let line = line.trim_ascii();
    if !line.is_empty() {
        on_line(line);
    }
}
