//! The control socket server: a Unix stream socket (mode 0600, same-uid peers only, never a
//! module process: see [`super::peer`]) speaking NDJSON. Each request line is handed to the kernel as a [`ControlCommand`]; progress strings
//! are streamed back as `{"progress":…}` lines, then the final [`Response`] line. Requests on one
//! connection are answered in order.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::api::{ControlCommand, Progress, Request, Response, COMMANDS};

/// Longest request line accepted (newline excluded); a longer line gets an error and the
/// connection is closed.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// A running control server. [`ServerHandle::shutdown`] (or dropping it) stops accepting and
/// removes the socket file.
pub struct ServerHandle {
    socket: PathBuf,
    /// (dev, ino) of the socket we bound, so that we never delete another kernel's socket.
    identity: Option<(u64, u64)>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.socket
    }

    /// Stops accepting connections, asks open connections to finish after their current request
    /// and deletes the socket file (when it is still the one we created). Idempotent.
    pub fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.accept.take() {
            task.abort();
            if let Some((dev, ino)) = self.identity {
                if let Ok(meta) = std::fs::symlink_metadata(&self.socket) {
                    if meta.dev() == dev && meta.ino() == ino {
                        let _ = std::fs::remove_file(&self.socket);
                    }
                }
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `socket` and serves it until [`ServerHandle::shutdown`]. Must be called within a tokio
/// runtime. Fails with `AddrInUse` when another process answers on the socket already.
pub async fn serve(socket: PathBuf, tx: mpsc::Sender<ControlCommand>) -> io::Result<ServerHandle> {
    prepare_path(&socket)?;
    let listener = UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    let identity = std::fs::symlink_metadata(&socket)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let (stop, stop_rx) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(listener, tx, stop_rx));
    Ok(ServerHandle {
        socket,
        identity,
        stop,
        accept: Some(accept),
    })
}

/// Creates the parent directory (0700) and removes a stale socket left by a dead kernel.
fn prepare_path(socket: &Path) -> io::Result<()> {
    if let Some(parent) = socket.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    match std::fs::symlink_metadata(socket) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "another kernel is listening on {}; stop it with `pons kernel stop`",
                        socket.display()
                    ),
                ));
            }
            std::fs::remove_file(socket)
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; move it away so the kernel can create its control socket",
                socket.display()
            ),
        )),
    }
}

async fn accept_loop(
    listener: UnixListener,
    tx: mpsc::Sender<ControlCommand>,
    stop: watch::Receiver<bool>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle_connection(stream, tx.clone(), stop.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Our own uid.
fn own_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

async fn handle_connection(
    stream: UnixStream,
    tx: mpsc::Sender<ControlCommand>,
    mut stop: watch::Receiver<bool>,
) {
    let uid = own_uid();
    let cred = stream.peer_cred();
    let refused = match &cred {
        Ok(c) if c.uid() == uid => super::peer::check(stream.as_fd(), c.pid()).err(),
        Ok(c) => Some(format!(
            "permission denied: the control socket only accepts uid {uid}, not uid {}",
            c.uid()
        )),
        Err(e) => Some(format!(
            "permission denied: the control socket only accepts uid {uid}, not an unidentifiable peer ({e})"
        )),
    };
    let (read, mut write) = stream.into_split();
    if let Some(error) = refused {
        let pid = cred.ok().and_then(|c| c.pid());
        tracing::warn!(pid = pid, error = %error, "control.refused");
        let _ = write_line(&mut write, &Response::err(error)).await;
        return;
    }
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = (MAX_REQUEST_BYTES + 1) as u64;
        let mut bounded = (&mut reader).take(limit);
        let read = tokio::select! {
            r = bounded.read_until(b'\n', &mut line) => r,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let Ok(n) = read else { return };
        if n == 0 {
            return;
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_REQUEST_BYTES {
            let resp = Response::err(format!(
                "request line longer than {MAX_REQUEST_BYTES} bytes; closing the connection"
            ));
            let _ = write_line(&mut write, &resp).await;
            return;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let keep_going = match parse_request(text) {
            Ok(request) => run_request(request, &tx, &mut write).await,
            Err(resp) => write_line(&mut write, &resp).await.is_ok(),
        };
        if !keep_going {
            return;
        }
    }
}

/// Parses one request line; the error is the response to send.
fn parse_request(text: &[u8]) -> Result<Request, Response> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|_| Response::err("Invalid JSON"))?;
    let request: Request = serde_json::from_value(value)
        .map_err(|e| Response::err(format!("invalid request: {e}")))?;
    if !COMMANDS.contains(&request.cmd.as_str()) {
        return Err(Response::err(format!("Unknown command: {}", request.cmd)));
    }
    Ok(request)
}

/// Hands one request to the kernel and streams progress and the answer back. Returns false when
/// the connection is gone.
async fn run_request(
    request: Request,
    tx: &mpsc::Sender<ControlCommand>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> bool {
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let (reply_tx, mut reply_rx) = oneshot::channel();
    let cmd = ControlCommand {
        request,
        progress: progress_tx,
        reply: reply_tx,
    };
    if tx.send(cmd).await.is_err() {
        let resp = Response::err("the kernel is shutting down and no longer takes commands");
        return write_line(write, &resp).await.is_ok();
    }
    let response = loop {
        tokio::select! {
            biased;
            Some(p) = progress_rx.recv() => {
                if write_line(write, &Progress { progress: p }).await.is_err() {
                    return false;
                }
            }
            r = &mut reply_rx => {
                while let Ok(p) = progress_rx.try_recv() {
                    if write_line(write, &Progress { progress: p }).await.is_err() {
                        return false;
                    }
                }
                break r.unwrap_or_else(|_| {
                    Response::err("the kernel dropped the request without answering (is it shutting down?)")
                });
            }
        }
    };
    let capacity = 64 + response.data.as_ref().map_or(0, |d| d.get().len());
    write_line_sized(write, &response, capacity).await.is_ok()
}

async fn write_line(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    value: &impl serde::Serialize,
) -> io::Result<()> {
    write_line_sized(write, value, 128).await
}

/// [`write_line`] into a buffer of `capacity` bytes to begin with: a large answer (a `status` of
/// hundreds of modules) is copied once, not at every doubling of the buffer.
async fn write_line_sized(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    value: &impl serde::Serialize,
    capacity: usize,
) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut bytes, value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.flush().await
}
