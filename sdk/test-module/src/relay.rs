//! `--relay PATH`: once the module is activated (`deps_ready`), a thread connects to the Unix
//! socket PATH (retrying every 20 ms) and copies what it reads to stdout as it is: raw bytes, in
//! whole lines, each batch written under the SDK's writer lock so it never interleaves with the
//! module's own messages (pongs, acks). When the peer goes away it connects again. The wire
//! fuzzer (`benches/fuzz.rs`) drives the kernel through it.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use pons_sdk::Ctx;

/// A line without `\n` is passed on in pieces beyond this size (pieces of one line may then
/// interleave with the module's own messages, which only garbles that line further).
const MAX_PENDING: usize = 32 << 20;

/// Starts the relay thread.
pub fn start(path: String, ctx: Ctx) {
    let spawned = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || loop {
            match UnixStream::connect(&path) {
                Ok(s) => {
                    if copy(s, &ctx).is_err() {
                        return; // stdout is gone: the module is exiting
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        });
    if let Err(e) = spawned {
        eprintln!("pons-test-module: cannot start the relay thread: {e}");
    }
}

/// Copies whole lines from `s` to stdout until the peer closes; `Err` when stdout fails.
fn copy(mut s: UnixStream, ctx: &Ctx) -> Result<(), String> {
    let mut buf = vec![0u8; 64 << 10];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        if let Some(last) = pending.iter().rposition(|&b| b == b'\n') {
            ctx.send_bytes(&pending[..=last])?;
            pending.drain(..=last);
        } else if pending.len() > MAX_PENDING {
            ctx.send_bytes(&pending)?;
            pending.clear();
        }
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        ctx.send_bytes(&pending)?;
    }
    Ok(())
}
