//! `.runtime/kernel.pid` and process probes, for the kernel and the CLI: is the kernel process
//! alive, signal it, wait for it to be gone.

use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::home::Home;

/// The pid written in the pid file, if any (decimal text, surrounding whitespace allowed).
pub fn read_pid(home: &Home) -> Option<i32> {
    let text = std::fs::read_to_string(home.pid_file()).ok()?;
    text.trim().parse::<i32>().ok().filter(|p| *p > 0)
}

/// Whether `pid` names a process that is alive (a zombie counts as gone).
pub fn is_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Some(p) = Pid::from_raw(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => !is_zombie(pid),
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: `pid (comm) S ...`; comm may contain spaces and parentheses.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// The pid of the running kernel according to the pid file; a stale file is removed.
pub fn live_pid(home: &Home) -> Option<i32> {
    let pid = read_pid(home)?;
    if is_alive(pid) {
        Some(pid)
    } else {
        remove_stale(home);
        None
    }
}

/// Writes our pid to the pid file: temp file (0600) + rename, so a reader sees the old file or
/// the whole new one. Not synced to disk: the file means nothing after a reboot (a pid file naming
/// a dead process is stale, [`live_pid`]), and the two fsyncs cost the boot milliseconds.
pub fn write(home: &Home) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = home.pid_file();
    let tmp = crate::store::temp_path(&path);
    let res = (|| -> std::io::Result<()> {
        // A stale temp file of an earlier process with the same pid may have another mode.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(std::process::id().to_string().as_bytes())?;
        drop(f);
        std::fs::rename(&tmp, &path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!(
            "cannot write {}: {e}; check the permissions of {}",
            path.display(),
            home.runtime_dir().display()
        )
    })
}

/// Removes the pid file (when it exists).
pub fn remove_stale(home: &Home) {
    let _ = std::fs::remove_file(home.pid_file());
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub fn signal(pid: i32, signal: Signal) -> anyhow::Result<()> {
    if pid <= 0 {
        return Ok(());
    }
    let Some(p) = Pid::from_raw(pid) else {
        return Ok(());
    };
    match rustix::process::kill_process(p, signal) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot signal the kernel (PID {pid}): {e}")),
    }
}

/// Polls until `pid` is gone; false when it still lives after `timeout`.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    wait_until(timeout, || !is_alive(pid))
}

/// Polls `done` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_live_and_dead_processes() {
        assert!(is_alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Exited but not reaped: a zombie counts as gone.
        assert!(wait_gone(pid, Duration::from_secs(10)));
        child.wait().unwrap();
        assert!(!is_alive(pid));
        assert!(!is_alive(0) && !is_alive(-1));
    }

    #[test]
    fn pid_file_round_trip_and_stale_removal() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        assert_eq!(read_pid(&home), None);
        std::fs::create_dir_all(home.runtime_dir()).unwrap();
        write(&home).unwrap();
        let mode = std::fs::metadata(home.pid_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(live_pid(&home), Some(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(home.pid_file(), format!("{dead}\n")).unwrap();
        assert_eq!(live_pid(&home), None);
        assert!(!home.pid_file().exists(), "stale pid file removed");
    }
}
