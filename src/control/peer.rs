//! Who may use the control socket: a process of the kernel's own uid that is not a module.
//!
//! The socket's mode (0600) and the uid check keep other users out, but a sandboxed module runs
//! as the kernel's user and Landlock below ABI 9 cannot stop it from connecting to a named Unix
//! socket. Every module runs with `no_new_privs` (set before its `exec`, inherited by
//! everything it starts, never cleared) while the CLI does not, so a peer with `NoNewPrivs: 1`
//! in `/proc/<pid>/status` is refused — unless the kernel itself runs with `no_new_privs` (e.g.
//! under systemd's `NoNewPrivileges=yes`), where that mark tells nothing. Independently, a peer
//! descending from the kernel (a module or a child it kept) is refused.
//!
//! The check is free of pid-reuse races where the kernel offers a pidfd for the peer
//! (`SO_PEERPIDFD`, Linux 6.5; else `pidfd_open`): `/proc/<pid>` is read only while the pidfd
//! shows the connecting process is still alive afterwards.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `SO_PEERPIDFD` (asm-generic value; the architectures pons builds for use it).
const SO_PEERPIDFD: libc::c_int = 77;

/// How far up the parent chain a peer is followed looking for the kernel.
const MAX_ANCESTORS: usize = 64;

/// `Err(message)` when the peer with process id `pid` (from `SO_PEERCRED`) may not use the
/// control socket; `sock` is the accepted connection.
pub fn check(sock: BorrowedFd<'_>, pid: Option<i32>) -> Result<(), String> {
    let pid = match pid {
        Some(p) if p > 0 => p,
        _ => {
            return Err(
                "permission denied: the control socket cannot identify the connecting \
                        process (is it in another pid namespace?); run `pons` on the kernel's host"
                    .into(),
            )
        }
    };
    let pidfd = peer_pidfd(sock, pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| {
        format!("permission denied: the control socket cannot inspect the connecting process {pid} ({e})")
    })?;
    let is_module = |why: &str| {
        Err(format!(
            "permission denied: the control socket does not accept module processes (pid {pid} {why}); run `pons` from a shell instead"
        ))
    };
    let own_nnp = rustix::thread::no_new_privs().unwrap_or(false);
    if !own_nnp && no_new_privs(&status) != Some(false) {
        return is_module("runs with no_new_privs, as every module does");
    }
    if descends_from(pid, std::process::id()) {
        return is_module("was started by the kernel");
    }
    if let Some(fd) = &pidfd {
        if exited(fd.as_fd()) {
            return Err(format!(
                "permission denied: the connecting process {pid} exited before it could be checked"
            ));
        }
    }
    Ok(())
}

/// A pidfd of the peer: `SO_PEERPIDFD`, else `pidfd_open(pid)`; `None` on kernels without either.
fn peer_pidfd(sock: BorrowedFd<'_>, pid: i32) -> Option<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `fd`, an int we own.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 && fd >= 0 {
        // SAFETY: the kernel just gave us this new descriptor; nobody else owns it.
        return Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Whether the process behind `pidfd` has exited (a pidfd polls readable then).
fn exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// The `NoNewPrivs:` field of a `/proc/<pid>/status` text.
pub fn no_new_privs(status: &str) -> Option<bool> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NoNewPrivs:"))
        .and_then(|v| match v.trim() {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        })
}

/// The parent pid in a `/proc/<pid>/stat` text (the command name may hold spaces and `)`).
fn parent_of_stat(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `ancestor` is a parent, grandparent, … of `pid`.
fn descends_from(pid: i32, ancestor: u32) -> bool {
    let mut current = u32::try_from(pid).unwrap_or(0);
    for _ in 0..MAX_ANCESTORS {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{current}/stat")) else {
            return false;
        };
        match parent_of_stat(&stat) {
            Some(p) if p == ancestor => return true,
            Some(p) if p > 1 => current = p,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tpons\nUmask:\t0022\nNoNewPrivs:\t1\nSeccomp:\t0\n";
        assert_eq!(no_new_privs(status), Some(true));
        assert_eq!(no_new_privs("NoNewPrivs:\t0\n"), Some(false));
        assert_eq!(no_new_privs("Name:\tx\n"), None);
        assert_eq!(parent_of_stat("42 (a) b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of_stat("garbage"), None);
    }

    #[test]
    fn this_process_passes_and_its_children_do_not() {
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(
            no_new_privs(&own),
            Some(false),
            "tests run without no_new_privs"
        );
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(descends_from(pid, std::process::id()));
        assert!(!descends_from(std::process::id() as i32, pid as u32));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
