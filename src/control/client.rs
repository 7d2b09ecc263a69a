//! The control socket client used by the CLI: blocking, one request per connection. Sends one
//! NDJSON request, hands every `{"progress":…}` line to a callback and returns the first line
//! that carries `ok`. Lines are read whole (no fixed-size chunk, unlike the reference client).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::api::{RawJson, Request, Response};

/// How long connecting may take before the kernel is declared unresponsive.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reply (or the next progress line) may take, on top of an `apply` timeout.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest reply line accepted.
const MAX_REPLY_BYTES: u64 = 256 * 1024 * 1024;

/// Why a request failed before the kernel could answer it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket, or nobody listening on it.
    #[error("the kernel is not running (no control socket answers at {0})")]
    NotRunning(PathBuf),
    /// Connecting or waiting for the reply took too long.
    #[error("the kernel did not answer on {0} in time; check `pons kernel logs`")]
    Timeout(PathBuf),
    /// Another IO failure.
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The kernel sent something that is not a reply, or hung up before replying.
    #[error("the kernel sent an invalid reply on {path}: {detail}")]
    Protocol { path: PathBuf, detail: String },
}

impl ClientError {
    /// Whether this means that no kernel runs.
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::NotRunning(_))
    }
}

/// Sends `req` to the kernel listening on `socket` and waits for its final response; progress
/// lines are passed to `on_progress` as they arrive.
pub fn request(
    socket: &Path,
    req: &Request,
    on_progress: impl FnMut(&str),
) -> Result<Response, ClientError> {
    let wait = REPLY_TIMEOUT + Duration::from_millis(req.timeout_ms.unwrap_or(0));
    request_within(socket, req, wait, on_progress)
}

/// Like [`request`], waiting at most `wait` for each line of the reply.
pub fn request_within(
    socket: &Path,
    req: &Request,
    wait: Duration,
    mut on_progress: impl FnMut(&str),
) -> Result<Response, ClientError> {
    let io_err = |source: io::Error| classify(socket, source);
    let mut stream = connect(socket, CONNECT_TIMEOUT).map_err(io_err)?;
    stream.set_read_timeout(Some(wait)).map_err(io_err)?;
    stream
        .set_write_timeout(Some(REPLY_TIMEOUT))
        .map_err(io_err)?;
    let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Protocol {
        path: socket.into(),
        detail: e.to_string(),
    })?;
    line.push(b'\n');
    // A server that refuses us (another uid) answers and closes at once: keep the write error
    // and read the refusal first.
    let mut write_err = stream.write_all(&line).err();
    // A `status` of hundreds of modules is hundreds of KiB: read in large chunks.
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_REPLY_BYTES)
            .read_until(b'\n', &mut buf);
        let n = match (n, &write_err) {
            (Ok(n), _) => n,
            (Err(_), Some(_)) => 0,
            (Err(e), None) => return Err(io_err(e)),
        };
        if n == 0 {
            if let Some(e) = write_err.take() {
                return Err(io_err(e));
            }
            return Err(ClientError::Protocol {
                path: socket.into(),
                detail: "the connection closed before the answer".into(),
            });
        }
        let text = buf.trim_ascii();
        if text.is_empty() {
            continue;
        }
        // Decoded in one go, `data` kept as text: no `serde_json::Value` is built for it.
        let line: Line = serde_json::from_slice(text).map_err(|e| ClientError::Protocol {
            path: socket.into(),
            detail: format!("not a reply line ({e})"),
        })?;
        if let Some(ok) = line.ok {
            return Ok(Response {
                ok,
                data: line.data,
                error: line.error,
            });
        }
        if let Some(p) = &line.progress {
            on_progress(p);
        }
    }
}

/// One line from the kernel: the final [`Response`] (it has `ok`) or `{"progress": …}`.
#[derive(serde::Deserialize)]
struct Line {
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    data: Option<RawJson>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    progress: Option<String>,
}

/// Maps an IO error to the client error it means.
fn classify(socket: &Path, e: io::Error) -> ClientError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(socket.into())
        }
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout(socket.into()),
        _ => ClientError::Io {
            path: socket.into(),
            source: e,
        },
    }
}

/// Connects with a deadline: Linux honours `SO_SNDTIMEO` in a blocking `connect` on a Unix
/// socket, so a kernel with a full backlog yields `EAGAIN` instead of hanging.
fn connect(socket: &Path, timeout: Duration) -> io::Result<UnixStream> {
    use rustix::net::{sockopt, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, Some(timeout))?;
    let addr = SocketAddrUnix::new(socket)?;
    rustix::net::connect(&fd, &addr)?;
    Ok(UnixStream::from(fd))
}
