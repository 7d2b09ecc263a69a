//! Tests of the control server and client against a fake kernel task.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::api::{ControlCommand, Request, Response};
use super::client::{self, ClientError};
use super::server::{self, MAX_REQUEST_BYTES};

/// A fake kernel: `status` → `{"n":<count>}`, `apply` → two progress lines then
/// `{"converged":true}`, `plan` → dropped without an answer, others → an error naming them.
fn fake_kernel() -> mpsc::Sender<ControlCommand> {
    let (tx, mut rx) = mpsc::channel::<ControlCommand>(8);
    tokio::spawn(async move {
        let mut count = 0;
        while let Some(cmd) = rx.recv().await {
            count += 1;
            match cmd.request.cmd.as_str() {
                "status" => {
                    let _ = cmd
                        .reply
                        .send(Response::ok(serde_json::json!({ "n": count })));
                }
                "apply" => {
                    let _ = cmd.progress.send("spawned a".into());
                    let _ = cmd.progress.send("spawned b".into());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _ = cmd
                        .reply
                        .send(Response::ok(serde_json::json!({ "converged": true })));
                }
                "plan" => drop(cmd),
                "module.status" => {
                    let id = cmd.request.module_id.clone();
                    let _ = cmd
                        .reply
                        .send(Response::ok(serde_json::json!({ "id": id })));
                }
                other => {
                    let _ = cmd.reply.send(Response::err(format!("no {other}")));
                }
            }
        }
    });
    tx
}

fn socket_in(dir: &Path) -> PathBuf {
    dir.join("run").join("kernel.sock")
}

async fn read_json_line(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> serde_json::Value {
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("reply in time")
        .expect("read");
    assert!(n > 0, "connection closed early");
    serde_json::from_str(&line).expect("reply is JSON")
}

#[tokio::test]
async fn socket_and_dir_modes() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_in(dir.path());
    let handle = server::serve(sock.clone(), fake_kernel()).await.unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dmode = std::fs::metadata(sock.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dmode, 0o700);
    drop(handle);
    assert!(!sock.exists(), "socket removed at shutdown");
}

#[tokio::test]
async fn several_requests_on_one_connection_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_in(dir.path());
    let _handle = server::serve(sock.clone(), fake_kernel()).await.unwrap();
    let stream = UnixStream::connect(&sock).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write
        .write_all(
            b"{\"cmd\":\"status\"}\n\n  {\"cmd\":\"apply\",\"timeoutMs\":100}\nnot json\n{\"cmd\":\"nope\"}\n{\"cmd\":\"plan\"}\n{\"cmd\":\"stop\"}\n{\"nocmd\":1}\n{\"cmd\":\"status\"}\n",
        )
        .await
        .unwrap();
    assert_eq!(
        read_json_line(&mut reader).await,
        serde_json::json!({"ok":true,"data":{"n":1}})
    );
    assert_eq!(
        read_json_line(&mut reader).await,
        serde_json::json!({"progress":"spawned a"})
    );
    assert_eq!(
        read_json_line(&mut reader).await,
        serde_json::json!({"progress":"spawned b"})
    );
    assert_eq!(
        read_json_line(&mut reader).await,
        serde_json::json!({"ok":true,"data":{"converged":true}})
    );
    assert_eq!(
        read_json_line(&mut reader).await,
        serde_json::json!({"ok":false,"error":"Invalid JSON"})
    );
    assert_eq!(
        read_json_line(&mut reader).await,
        serde_json::json!({"ok":false,"error":"Unknown command: nope"})
    );
    let dropped = read_json_line(&mut reader).await;
    assert_eq!(dropped["ok"], false);
    assert!(dropped["error"]
        .as_str()
        .unwrap()
        .contains("without answering"));
    assert_eq!(
        read_json_line(&mut reader).await,
        serde_json::json!({"ok":false,"error":"no stop"})
    );
    let invalid = read_json_line(&mut reader).await;
    assert_eq!(invalid["ok"], false);
    assert!(invalid["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid request"));
    assert_eq!(
        read_json_line(&mut reader).await,
        serde_json::json!({"ok":true,"data":{"n":5}})
    );
}

#[tokio::test]
async fn oversize_line_gets_an_error_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_in(dir.path());
    let _handle = server::serve(sock.clone(), fake_kernel()).await.unwrap();
    let stream = UnixStream::connect(&sock).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let writer = tokio::spawn(async move {
        let big = vec![b'x'; MAX_REQUEST_BYTES + 10];
        let _ = write.write_all(&big).await;
        write
    });
    let reply = read_json_line(&mut reader).await;
    assert_eq!(reply["ok"], false);
    assert!(reply["error"].as_str().unwrap().contains("longer than"));
    let mut rest = String::new();
    let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "connection closed after the oversize line");
    let _ = writer.await;
}

#[tokio::test]
async fn a_line_of_exactly_the_limit_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_in(dir.path());
    let _handle = server::serve(sock.clone(), fake_kernel()).await.unwrap();
    let stream = UnixStream::connect(&sock).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let head = b"{\"cmd\":\"status\",\"pad\":\"";
    let tail = b"\"}";
    let mut line = head.to_vec();
    line.resize(MAX_REQUEST_BYTES - tail.len(), b'p');
    line.extend_from_slice(tail);
    assert_eq!(line.len(), MAX_REQUEST_BYTES);
    line.push(b'\n');
    let writer = tokio::spawn(async move {
        write.write_all(&line).await.unwrap();
        write
    });
    assert_eq!(read_json_line(&mut reader).await["ok"], true);
    let _ = writer.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gets_progress_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_in(dir.path());
    let mut handle = server::serve(sock.clone(), fake_kernel()).await.unwrap();
    let s = sock.clone();
    let (resp, progress) = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let req = Request {
            cmd: "apply".into(),
            timeout_ms: Some(1000),
            ..Request::default()
        };
        let resp = client::request(&s, &req, |p| seen.push(p.to_string()));
        (resp, seen)
    })
    .await
    .unwrap();
    assert_eq!(progress, vec!["spawned a", "spawned b"]);
    assert_eq!(
        resp.unwrap(),
        Response::ok(serde_json::json!({"converged":true}))
    );

    // A reply bigger than 4096 bytes is read whole.
    let s = sock.clone();
    let resp = tokio::task::spawn_blocking(move || {
        let req = Request {
            cmd: "module.status".into(),
            module_id: Some("m".repeat(10_000)),
            ..Request::default()
        };
        client::request(&s, &req, |_| {})
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.data_value()["id"].as_str().unwrap().len(), 10_000);

    handle.shutdown();
    assert!(!sock.exists());
    let s = sock.clone();
    let err = tokio::task::spawn_blocking(move || {
        client::request(
            &s,
            &Request {
                cmd: "status".into(),
                ..Request::default()
            },
            |_| {},
        )
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, ClientError::NotRunning(_)), "{err}");
}

#[test]
fn client_reports_not_running_for_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("kernel.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let err = client::request(&sock, &Request::default(), |_| {}).unwrap_err();
    assert!(err.is_not_running(), "{err}");
}

#[tokio::test]
async fn stale_socket_is_replaced_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_in(dir.path());
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let handle = server::serve(sock.clone(), fake_kernel()).await.unwrap();
    let err = match server::serve(sock.clone(), fake_kernel()).await {
        Ok(_) => panic!("a second server must not steal a live socket"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(sock.exists(), "the live socket is kept");
    drop(handle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_another_uid_are_refused() {
    if rustix::process::getuid().as_raw() != 0 {
        return; // needs root to connect as another uid
    }
    let Ok(python) = which_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = socket_in(dir.path());
    let _handle = server::serve(sock.clone(), fake_kernel()).await.unwrap();
    // Let the other uid reach the socket so that the peer check (not the file mode) refuses it.
    std::fs::set_permissions(
        sock.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ntry:\n  s.sendall(b'{\"cmd\":\"status\"}\\n')\nexcept OSError:\n  pass\nprint(s.makefile().readline(),end='')";
    let out = tokio::task::spawn_blocking(move || {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .arg(&sock)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let reply: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "reply {text:?}, stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(reply["ok"], false);
    assert!(reply["error"]
        .as_str()
        .unwrap()
        .starts_with("permission denied"));
}

fn which_python() -> Result<PathBuf, ()> {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join("python3");
        if p.exists() {
            return Ok(p);
        }
    }
    Err(())
}

/// Runs a python client that sends `status` and prints the first reply line. `nnp`: with
/// `no_new_privs`, as every module runs; `detached`: started through a shell that exits at once,
/// so the client is no longer a descendant of this process (the "kernel") when it connects.
async fn python_client_reply(python: PathBuf, sock: PathBuf, nnp: bool, detached: bool) -> String {
    // argv[2]: the pid of the shell whose exit the client waits for ("0": none).
    let script = "import os,socket,sys,time\nd=time.time()+10\nwhile os.getppid()==int(sys.argv[2]) and time.time()<d:\n  time.sleep(0.005)\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ntry:\n  s.sendall(b'{\"cmd\":\"status\"}\\n')\nexcept OSError:\n  pass\nprint(s.makefile().readline(),end='')";
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("reply");
    let mut cmd = if detached {
        let mut c = std::process::Command::new("/bin/sh");
        c.arg("-c")
            .arg("\"$0\" -c \"$1\" \"$2\" $$ >\"$3\" 2>&1 &")
            .arg(&python)
            .arg(script)
            .arg(&sock)
            .arg(&out_file);
        c
    } else {
        let mut c = std::process::Command::new(&python);
        c.arg("-c").arg(script).arg(&sock).arg("0");
        c
    };
    if nnp {
        use std::os::unix::process::CommandExt;
        // SAFETY: one prctl system call between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    if !detached {
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&out_file).unwrap_or_default();
        if text.ends_with("}\n") {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reply from the detached client: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_processes_are_refused() {
    let Ok(python) = which_python() else {
        eprintln!("SKIP module_processes_are_refused: python3 not found");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sock = socket_in(dir.path());
    let _handle = server::serve(sock.clone(), fake_kernel()).await.unwrap();
    let reply = |text: String| -> serde_json::Value {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("reply {text:?}"))
    };

    // Not started by us, no no_new_privs: a CLI.
    let ok = reply(python_client_reply(python.clone(), sock.clone(), false, true).await);
    assert_eq!(ok["ok"], true, "{ok}");

    // Not started by us, but with no_new_privs: a module's escaped grandchild.
    let nnp = reply(python_client_reply(python.clone(), sock.clone(), true, true).await);
    assert_eq!(nnp["ok"], false, "{nnp}");
    let e = nnp["error"].as_str().unwrap();
    assert!(
        e.starts_with("permission denied: the control socket does not accept module processes"),
        "{e}"
    );
    assert!(e.contains("no_new_privs"), "{e}");

    // Started by us ("the kernel"), without no_new_privs.
    let child = reply(python_client_reply(python, sock, false, false).await);
    assert_eq!(child["ok"], false, "{child}");
    assert!(
        child["error"]
            .as_str()
            .unwrap()
            .contains("was started by the kernel"),
        "{child}"
    );
}
