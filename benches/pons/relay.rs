//! The cluster bench's second RPC baseline, "relayed NATS request-reply": the plain async-nats
//! requester and echoing responder of the direct baseline, each talking to NATS through a relay
//! process of its own over a pair of pipes, so a round trip wakes as many processes as one through
//! pons (caller → relay → nats-server → relay → responder and back: 8 wake-ups, as caller module →
//! kernel B → server → kernel A → provider module and back; the direct baseline wakes 4).
//!
//! A relay is this bench binary re-executed as `<exe> __nats-relay requester|responder URL
//! SUBJECT`, a NATS client on a 2-worker tokio runtime (like a kernel) reading and writing its
//! pipes without blocking threads (epoll, like a kernel's module pipes):
//! - `requester`: each line on stdin is a request body; the answer's body comes back as a line
//!   (`!` when the request failed, e.g. no responder yet).
//! - `responder`: subscribes to SUBJECT (queue group of the same name) and writes each request as
//!   `reply-subject TAB body` on stdout; each such line on stdin is published (body on
//!   reply-subject).
//!
//! Bodies are single-line JSON (no TAB, no newline).

use std::io::Write as _;
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;

/// The first argument that makes the bench binary a relay.
pub const ARG: &str = "__nats-relay";

const SUBJECT: &str = "relayed.svc.bench";

/// A relay process: `args` are `requester|responder URL SUBJECT`. Exits when stdin closes.
pub fn main(args: &[String]) -> ! {
    let code = match args {
        [role, url, subject] => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            match rt.block_on(relay(role, url, subject)) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "nats relay {role}: {e}");
                    1
                }
            }
        }
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "usage: {ARG} requester|responder URL SUBJECT"
            );
            2
        }
    };
    std::process::exit(code)
}

/// stdin and stdout as non-blocking pipe ends on the runtime's reactor.
fn stdio() -> std::io::Result<(BufReader<pipe::Receiver>, pipe::Sender)> {
    let input = std::io::stdin().as_fd().try_clone_to_owned()?;
    let output = std::io::stdout().as_fd().try_clone_to_owned()?;
    Ok((
        BufReader::new(pipe::Receiver::from_file(input.into())?),
        pipe::Sender::from_file(output.into())?,
    ))
}

async fn relay(role: &str, url: &str, subject: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = async_nats::connect(url).await?;
    let (mut input, mut output) = stdio()?;
    let mut line = Vec::with_capacity(256);
    match role {
        "requester" => loop {
            line.clear();
            if input.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            line.pop();
            let body = Bytes::copy_from_slice(&line);
            line.clear();
            match client.request(subject.to_string(), body).await {
                Ok(m) => line.extend_from_slice(&m.payload),
                Err(_) => line.push(b'!'),
            }
            line.push(b'\n');
            output.write_all(&line).await?;
        },
        "responder" => {
            let mut sub = client
                .queue_subscribe(subject.to_string(), subject.to_string())
                .await?;
            client.flush().await?;
            // Requests out, on a task of their own; answers in, here.
            let requests = tokio::spawn(async move {
                let mut out = Vec::with_capacity(256);
                while let Some(m) = sub.next().await {
                    let Some(reply) = m.reply else { continue };
                    out.clear();
                    out.extend_from_slice(reply.as_bytes());
                    out.push(b'\t');
                    out.extend_from_slice(&m.payload);
                    out.push(b'\n');
                    if output.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
            loop {
                line.clear();
                if input.read_until(b'\n', &mut line).await? == 0 {
                    requests.abort();
                    return Ok(());
                }
                line.pop();
                let Some(tab) = line.iter().position(|&b| b == b'\t') else {
                    continue;
                };
                let reply = String::from_utf8_lossy(&line[..tab]).into_owned();
                let body = Bytes::copy_from_slice(&line[tab + 1..]);
                client.publish(reply, body).await?;
            }
        }
        other => Err(format!("unknown role {other}").into()),
    }
}

/// One relay process of this binary in `role`, its pipes as async ends.
fn spawn(
    role: &str,
    url: &str,
) -> (
    tokio::process::Child,
    tokio::process::ChildStdin,
    BufReader<tokio::process::ChildStdout>,
) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let mut child = tokio::process::Command::new(exe)
        .args([ARG, role, url, SUBJECT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start a nats relay");
    let stdin = child.stdin.take().expect("relay stdin");
    let stdout = child.stdout.take().expect("relay stdout");
    (child, stdin, BufReader::new(stdout))
}

/// `n` sequential request-replies of `body` through two relays (see the module doc); the
/// percentiles of their round trips as the requester sees them (write to its relay → answer
/// read back).
pub async fn relayed_rpc(url: &str, n: u64, body: &[u8]) -> Value {
    let (_responder, mut to_responder, mut from_responder) = spawn("responder", url);
    // The echoing responder: each request line goes back as its answer.
    let echo = tokio::spawn(async move {
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            match from_responder.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if to_responder.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    let (_requester, mut to_requester, mut from_requester) = spawn("requester", url);
    let mut request = body.to_vec();
    request.push(b'\n');
    let mut answer = Vec::with_capacity(256);
    // Until the responder's subscription has reached the server (`!`: no responders yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        round_trip(
            &mut to_requester,
            &mut from_requester,
            &request,
            &mut answer,
        )
        .await;
        if answer != b"!\n" {
            break;
        }
        assert!(Instant::now() < deadline, "no relayed responder after 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(answer[..answer.len() - 1], *body, "the echo");
    let warm = (n / 10).clamp(10, 1000);
    let mut us = Vec::with_capacity(n as usize);
    for i in 0..warm + n {
        let t = Instant::now();
        round_trip(
            &mut to_requester,
            &mut from_requester,
            &request,
            &mut answer,
        )
        .await;
        if i >= warm {
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    echo.abort();
    super::cluster::percentiles(us)
}

/// One request line to the requester's relay and its answer line back.
async fn round_trip(
    to: &mut tokio::process::ChildStdin,
    from: &mut BufReader<tokio::process::ChildStdout>,
    request: &[u8],
    answer: &mut Vec<u8>,
) {
    answer.clear();
    to.write_all(request)
        .await
        .expect("write to the requester's relay");
    let got = from
        .read_until(b'\n', answer)
        .await
        .expect("read from the requester's relay");
    assert!(got > 0, "the requester's relay closed its stdout");
}
