//! `pons kernel start | stop | restart | status`: running the daemon in the foreground or
//! detached, stopping it through the control socket (SIGTERM as fallback), and a short status.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::args::StartArgs;
use super::{offline, output, remote};
use crate::control::client;
use crate::home::Home;
use crate::kernel::StartOptions;
use crate::pidfile;

/// How long `kernel stop` waits for an ordered drain before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `kernel start --detach` waits for the control socket to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub fn start(home: &Home, args: &StartArgs) -> anyhow::Result<ExitCode> {
    if let Some(pid) = running_kernel(home)? {
        if !args.force {
            anyhow::bail!(
                "the kernel is already running (PID {pid}); stop it with `pons kernel stop` or pass --force to replace it"
            );
        }
        stop_running(home)?;
    }
    if args.detach {
        start_detached(home, args)
    } else {
        crate::kernel::run(StartOptions {
            home: home.clone(),
            log_level: args.log_level.clone(),
            manual: args.manual,
        })?;
        Ok(ExitCode::SUCCESS)
    }
}

pub fn stop(home: &Home) -> anyhow::Result<ExitCode> {
    if !stop_running(home)? {
        println!("Kernel is not running.");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restart(home: &Home, args: &StartArgs) -> anyhow::Result<ExitCode> {
    stop_running(home)?;
    let args = StartArgs {
        force: false,
        ..args.clone()
    };
    start(home, &args)
}

/// The pid of a running kernel: from a live pid file, else from a control socket that answers.
/// `Some(0)` when a kernel answers but its pid is unknown.
fn running_kernel(home: &Home) -> anyhow::Result<Option<i32>> {
    if let Some(pid) = pidfile::live_pid(home) {
        return Ok(Some(pid));
    }
    let answer = match remote::call(home, &super::status::request(true), |_| {}) {
        Ok(answer) => answer,
        Err(e) => {
            // A socket that is there but does not answer properly: a new kernel refuses to bind
            // over a live one anyway, so go on.
            eprintln!("warning: {e:#}");
            None
        }
    };
    Ok(answer.map(|data| {
        data.pointer("/kernel/pid")
            .and_then(|p| p.as_i64())
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0)
    }))
}

/// Stops the running kernel and waits until it is gone. False when none was running.
fn stop_running(home: &Home) -> anyhow::Result<bool> {
    let pid = pidfile::live_pid(home);
    let answered = match remote::call(home, &remote::cmd("stop"), |_| {}) {
        Ok(Some(data)) => Some(data),
        Ok(None) => None,
        Err(e) if pid.is_some() => {
            eprintln!("warning: {e:#}; sending SIGTERM instead");
            None
        }
        Err(e) => return Err(e),
    };
    let pid = pid.or_else(|| {
        answered
            .as_ref()
            .and_then(|d| d.get("pid"))
            .and_then(|p| p.as_i64())
            .and_then(|p| i32::try_from(p).ok())
    });
    match (pid, answered.is_some()) {
        (None, false) => Ok(false),
        (None, true) => {
            println!("Stopping kernel...");
            let socket = home.socket();
            if !pidfile::wait_until(STOP_TIMEOUT, || !socket.exists()) {
                anyhow::bail!(
                    "the kernel accepted `stop` but still serves {} after {} s; check `pons kernel logs`",
                    socket.display(),
                    STOP_TIMEOUT.as_secs()
                );
            }
            println!("Kernel stopped.");
            Ok(true)
        }
        (Some(pid), via_socket) => {
            println!("Stopping kernel (PID {pid})...");
            if !via_socket {
                pidfile::signal(pid, Signal::TERM)?;
            }
            if pidfile::wait_gone(pid, STOP_TIMEOUT) {
                println!("Kernel stopped.");
            } else {
                eprintln!(
                    "Kernel (PID {pid}) did not exit within {} s, sending SIGKILL...",
                    STOP_TIMEOUT.as_secs()
                );
                pidfile::signal(pid, Signal::KILL)?;
                if !pidfile::wait_gone(pid, Duration::from_secs(5)) {
                    anyhow::bail!(
                        "the kernel (PID {pid}) survived SIGKILL; check the process by hand"
                    );
                }
                println!("Kernel killed.");
            }
            pidfile::remove_stale(home);
            Ok(true)
        }
    }
}

/// Re-executes `pons kernel start` (without --detach) in a new session and waits until its
/// control socket answers.
fn start_detached(home: &Home, args: &StartArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the pons executable to start the kernel: {e}"))?;
    let logs = home.logs_dir();
    std::fs::create_dir_all(&logs)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", logs.display()))?;
    let log_path = logs.join("kernel-stdout.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home").arg(&home.root).args(["kernel", "start"]);
    if let Some(level) = &args.log_level {
        cmd.args(["--log-level", level]);
    }
    if args.manual {
        cmd.arg("--manual");
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(|_| ()).map_err(Into::into));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start the kernel process: {e}"))?;
    let pid = child.id();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "the kernel exited during start ({status}); see {}",
                log_path.display()
            );
        }
        if let Ok(resp) = client::request(&home.socket(), &super::status::request(true), |_| {}) {
            if resp.ok {
                break;
            }
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the kernel (PID {pid}) did not answer on {} within {} s; see {}",
                home.socket().display(),
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("Kernel started in background (PID {pid}).");
    Ok(ExitCode::SUCCESS)
}

/// `pons kernel status [--json]`.
pub fn status(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    let report = match super::status::fetch(home, true) {
        Ok(Some(raw)) => Some(super::status::decode(&raw)?),
        Ok(None) => None,
        Err(e) => {
            eprintln!("warning: {e:#}");
            None
        }
    };
    let file_pid = pidfile::read_pid(home);
    let live_pid = pidfile::live_pid(home);
    let pending = offline::read_permissions(home)
        .map(|p| p.modules.values().map(|m| m.pending.len()).sum::<usize>())
        .unwrap_or(0);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(r) = &report {
        for m in &r.modules {
            *counts.entry(m.status.clone()).or_default() += 1;
        }
    }
    if json {
        let k = report.as_ref().map(|r| &r.kernel);
        output::print_json(&serde_json::json!({
            "running": report.is_some() || live_pid.is_some(),
            "pid": k.and_then(|k| k.pid).or(live_pid.map(|p| p as u32)),
            "uptimeMs": k.and_then(|k| k.uptime_ms),
            "home": home.root.display().to_string(),
            "mode": k.and_then(|k| k.mode.clone()),
            "modules": counts,
            "pendingPermissions": pending,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    match (&report, live_pid, file_pid) {
        (Some(r), _, _) => {
            let mut facts = Vec::new();
            if let Some(pid) = r.kernel.pid {
                facts.push(format!("PID {pid}"));
            }
            if let Some(ms) = r.kernel.uptime_ms {
                facts.push(format!("up {}", output::format_uptime_ms(ms)));
            }
            if let Some(mode) = &r.kernel.mode {
                facts.push(format!("mode {mode}"));
            }
            println!("Kernel:   running ({})", facts.join(", "));
            let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
            let summary = if summary.is_empty() {
                "none".to_string()
            } else {
                summary.join(", ")
            };
            println!("Modules:  {summary}");
        }
        (None, Some(pid), _) => {
            println!("Kernel:   process running (PID {pid}) but its control socket does not answer")
        }
        (None, None, Some(_)) => println!("Kernel:   not running (stale PID file removed)"),
        (None, None, None) => println!("Kernel:   not running"),
    }
    println!("Home:     {}", home.root.display());
    if pending > 0 {
        println!("Pending permissions: {pending} request(s) (run `pons permissions pending`)");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{ControlCommand, Response};
    use crate::control::server;

    /// A stand-in kernel process (`sleep`), its pid written to the pid file.
    fn fake_kernel_process(home: &Home) -> std::process::Child {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        std::fs::create_dir_all(home.runtime_dir()).unwrap();
        std::fs::write(home.pid_file(), child.id().to_string()).unwrap();
        child
    }

    /// A control server whose `stop` answers and then terminates `pid` after a short drain.
    fn serve_fake(rt: &tokio::runtime::Runtime, home: &Home, pid: i32) -> server::ServerHandle {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ControlCommand>(4);
        rt.spawn(async move {
            while let Some(cmd) = rx.recv().await {
                match cmd.request.cmd.as_str() {
                    "stop" => {
                        let _ = cmd
                            .reply
                            .send(Response::ok(serde_json::json!({ "pid": pid })));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let _ = pidfile::signal(pid, Signal::TERM);
                    }
                    "status" => {
                        let _ = cmd.reply.send(Response::ok(serde_json::json!({
                            "kernel": {"running": true, "pid": pid, "uptimeMs": 5, "home": "/h"},
                            "modules": [], "services": [], "converged": true
                        })));
                    }
                    _ => {
                        let _ = cmd.reply.send(Response::err("unexpected"));
                    }
                }
            }
        });
        rt.block_on(server::serve(home.socket(), tx)).unwrap()
    }

    #[test]
    fn stop_through_the_control_socket_waits_for_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut child = fake_kernel_process(&home);
        let pid = child.id() as i32;
        let _server = serve_fake(&rt, &home, pid);
        assert_eq!(running_kernel(&home).unwrap(), Some(pid));
        let refused = start(
            &home,
            &StartArgs {
                detach: false,
                log_level: None,
                manual: false,
                force: false,
            },
        );
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("already running (PID"));
        assert!(stop_running(&home).unwrap());
        assert!(!pidfile::is_alive(pid));
        assert!(!home.pid_file().exists());
        child.wait().unwrap();
    }

    #[test]
    fn stop_falls_back_to_sigterm_and_reports_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        assert!(!stop_running(&home).unwrap());
        let mut child = fake_kernel_process(&home);
        let pid = child.id() as i32;
        assert!(stop_running(&home).unwrap());
        assert!(!pidfile::is_alive(pid));
        child.wait().unwrap();
        assert!(!stop_running(&home).unwrap(), "nothing left to stop");
    }
}
