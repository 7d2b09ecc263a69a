//! Signals to whole module process groups (every module is the leader of its own group, so a
//! group signal reaches its grandchildren too).
//!
//! A group that is already gone (`ESRCH`) counts as success. Process group ids ≤ 1 and the
//! caller's own group are refused: `kill(0, …)` or `kill(-1, …)` would hit the kernel itself or
//! every process of the user.

use std::io;

use rustix::process::{getpgrp, kill_process_group, test_kill_process_group, Pid};

pub use rustix::process::Signal;

/// Sends `sig` to every process of group `pgid`; `Ok` when the group no longer exists.
pub fn signal_group(pgid: i32, sig: Signal) -> io::Result<()> {
    let pid = checked_group(pgid)?;
    match kill_process_group(pid, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// SIGTERM to the group.
pub fn terminate_group(pgid: i32) -> io::Result<()> {
    signal_group(pgid, Signal::TERM)
}

/// SIGKILL to the group.
pub fn kill_group(pgid: i32) -> io::Result<()> {
    signal_group(pgid, Signal::KILL)
}

/// Whether any process of group `pgid` still exists (zombies included: they still hold the id).
pub fn group_exists(pgid: i32) -> bool {
    match checked_group(pgid) {
        Ok(pid) => !matches!(test_kill_process_group(pid), Err(rustix::io::Errno::SRCH)),
        Err(_) => false,
    }
}

fn checked_group(pgid: i32) -> io::Result<Pid> {
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}: {why}"),
        ))
    };
    if pgid <= 1 {
        return refuse("not a module process group");
    }
    let Some(pid) = Pid::from_raw(pgid) else {
        return refuse("not a module process group");
    };
    if pid == getpgrp() {
        return refuse("it is the caller's own group");
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    #[test]
    fn kills_a_group_and_ignores_a_gone_one() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = i32::try_from(child.id()).unwrap();
        assert!(group_exists(pgid));
        terminate_group(pgid).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(!group_exists(pgid));
        kill_group(pgid).unwrap();
    }

    #[test]
    fn refuses_dangerous_ids() {
        for bad in [-5, 0, 1] {
            assert!(signal_group(bad, Signal::KILL).is_err());
            assert!(!group_exists(bad));
        }
        let own = getpgrp().as_raw_nonzero().get();
        assert!(kill_group(own).is_err());
    }
}
