//! Start-up actions that test the module's surroundings: sandbox probes (`--try-*`,
//! `--report-caps`), the grandchild processes (`--grandchild`, `--setsid-grandchild`,
//! `--daemon-grandchild`) and the garbage burst on stdout (`--garbage`).

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pons_sdk::Ctx;
use serde_json::{json, Map, Value};

use crate::args::Probe;
use crate::record::Recorder;

/// Runs one probe and records its outcome.
pub fn run(probe: &Probe, rec: &Recorder) {
    let event = match probe {
        Probe::Read(path) => {
            let mut ev = json!({"event": "try_read", "path": path});
            match read(path) {
                Ok(n) => merge(&mut ev, json!({"ok": true, "bytes": n})),
                Err(e) => merge(&mut ev, failure(&e)),
            }
            ev
        }
        Probe::Write(path) => {
            let mut ev = json!({"event": "try_write", "path": path});
            let r = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(b"pons-test-module\n"));
            match r {
                Ok(()) => merge(&mut ev, json!({"ok": true})),
                Err(e) => merge(&mut ev, failure(&e)),
            }
            ev
        }
        Probe::Env(var) => {
            let value = std::env::var_os(var).map(|v| v.to_string_lossy().into_owned());
            json!({"event": "try_env", "var": var, "ok": value.is_some(), "value": value})
        }
        Probe::OpenFiles(n) => {
            let mut files = Vec::new();
            let mut ev = json!({"event": "try_open_files", "requested": n});
            let mut error = None;
            for _ in 0..*n {
                match std::fs::File::open("/dev/null") {
                    Ok(f) => files.push(f),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            merge(
                &mut ev,
                json!({"opened": files.len(), "ok": files.len() as u64 == *n}),
            );
            if let Some(e) = error {
                merge(&mut ev, failure(&e));
                ev["ok"] = json!(false);
            }
            ev
        }
        Probe::Open(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut ev = json!({"event": "try_open", "path": path});
            let r = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path);
            match r {
                Ok(_) => merge(&mut ev, json!({"ok": true})),
                Err(e) => merge(&mut ev, failure(&e)),
            }
            ev
        }
        Probe::Mknod(path) => {
            let mut ev = json!({"event": "try_mknod", "path": path});
            match mknod_char(path) {
                Ok(()) => merge(&mut ev, json!({"ok": true})),
                Err(e) => merge(&mut ev, failure(&e)),
            }
            ev
        }
        Probe::Caps => {
            let mut ev = json!({"event": "caps"});
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            for line in status.lines() {
                if let Some((k, v)) = line.split_once(':') {
                    if k.starts_with("Cap") || k == "NoNewPrivs" || k == "Uid" {
                        ev[k] = json!(v.trim());
                    }
                }
            }
            ev
        }
        Probe::Exec(path) => {
            let mut ev = json!({"event": "try_exec", "path": path});
            let status = Command::new(path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            match status {
                Ok(s) => merge(&mut ev, json!({"ok": true, "code": s.code()})),
                Err(e) => merge(&mut ev, failure(&e)),
            }
            ev
        }
    };
    rec.event(&event);
}

/// Reads a file (its byte count) or lists a directory (its entry count).
fn read(path: &str) -> std::io::Result<usize> {
    if std::fs::metadata(path)?.is_dir() {
        return Ok(std::fs::read_dir(path)?.count());
    }
    let mut buf = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf.len())
}

fn failure(e: &std::io::Error) -> Value {
    json!({"ok": false, "error": e.to_string(), "errno": e.raw_os_error()})
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        let b: Map<String, Value> = b;
        a.extend(b);
    }
}

/// Spawns `sleep 1000` in this process group (stdio detached) and records its pid.
pub fn grandchild(rec: &Recorder) {
    let child = Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(c) => rec.event(&json!({"event": "grandchild", "pid": c.id()})),
        Err(e) => rec.event(&json!({"event": "grandchild", "error": e.to_string()})),
    }
}

/// Creates a character device node 1:3 (the null device) at `path`.
fn mknod_char(path: &str) -> std::io::Result<()> {
    let c = CString::new(path)?;
    // SAFETY: mknod reads a NUL-terminated path and writes no memory.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Spawns `sleep 1000` in a session of its own (it leaves this process group), stdio detached,
/// and records its pid.
pub fn setsid_grandchild(rec: &Recorder) {
    let mut cmd = Command::new("sleep");
    cmd.arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(c) => rec.event(&json!({"event": "setsid_grandchild", "pid": c.id()})),
        Err(e) => rec.event(&json!({"event": "setsid_grandchild", "error": e.to_string()})),
    }
}

/// Double-forks a daemon the classic way — fork, `setsid()`, fork again, the middle process
/// exits — that runs `sleep 1000` with stdio on /dev/null, and records its pid.
pub fn daemon_grandchild(rec: &Recorder) {
    match daemon() {
        Ok(pid) => rec.event(&json!({"event": "daemon_grandchild", "pid": pid})),
        Err(e) => rec.event(&json!({"event": "daemon_grandchild", "error": e.to_string()})),
    }
}

fn daemon() -> std::io::Result<i32> {
    let sleep = on_path("sleep")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "sleep not on PATH"))?;
    // Everything the forked processes use is prepared before forking (only async-signal-safe
    // calls happen after it).
    let prog = CString::new(sleep.as_os_str().as_bytes())?;
    let arg1 = CString::new("1000")?;
    let argv = [prog.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let nullfd = std::os::fd::AsRawFd::as_raw_fd(&null);
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the child and grandchild call only async-signal-safe functions (setsid, fork,
    // dup2, execv, write, _exit) on memory prepared before the fork.
    let middle = unsafe { libc::fork() };
    if middle == 0 {
        unsafe {
            libc::setsid();
            let pid = libc::fork();
            if pid == 0 {
                libc::dup2(nullfd, 0);
                libc::dup2(nullfd, 1);
                libc::dup2(nullfd, 2);
                libc::execv(prog.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
            libc::write(fds[1], (&pid as *const i32).cast(), 4);
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end; reading 4 bytes into a local; reaping the
    // middle process, our own child.
    unsafe {
        libc::close(fds[1]);
        if middle < 0 {
            libc::close(fds[0]);
            return Err(std::io::Error::last_os_error());
        }
        let mut pid = 0i32;
        let n = libc::read(fds[0], (&mut pid as *mut i32).cast(), 4);
        libc::close(fds[0]);
        libc::waitpid(middle, std::ptr::null_mut(), 0);
        if n != 4 || pid <= 0 {
            return Err(std::io::Error::other(
                "the middle process reported no daemon",
            ));
        }
        Ok(pid)
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Size of the oversize line written by `--garbage` (over the kernel's 10 MiB default cap).
pub const BIG_LINE: usize = 11 * 1024 * 1024;

/// Writes the garbage burst to stdout: plain text, binary bytes, `42`, `[1,2]`, an unknown
/// type, a publish with a 300-char topic, then an 11 MiB publish line.
pub fn garbage(ctx: &Ctx, rec: &Recorder) {
    let topic = "t".repeat(300);
    let mut bytes = Vec::with_capacity(BIG_LINE + 4096);
    bytes.extend_from_slice(b"this is not json {\n");
    bytes.extend_from_slice(b"\xff\xfe\x00\x01binary\n");
    bytes.extend_from_slice(b"42\n[1,2]\n{\"type\":\"bogus\"}\n");
    bytes.extend_from_slice(
        format!("{{\"type\":\"publish\",\"topic\":\"{topic}\",\"payload\":1}}\n").as_bytes(),
    );
    let head = b"{\"type\":\"publish\",\"topic\":\"garbage.big\",\"payload\":\"";
    let tail = b"\"}\n";
    bytes.extend_from_slice(head);
    bytes.resize(bytes.len() + BIG_LINE - head.len() - tail.len() + 1, b'x');
    bytes.extend_from_slice(tail);
    match ctx.send_bytes(&bytes) {
        Ok(()) => rec.event(&json!({"event": "garbage_sent", "bigLineBytes": BIG_LINE})),
        Err(e) => rec.event(&json!({"event": "garbage_sent", "error": e})),
    }
}
