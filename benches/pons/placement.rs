//! Where the measured processes run: free (the scheduler places them on any CPU) or pinned (all
//! of them on one CPU). On a VM a pipe ping-pong across two CPUs costs a cross-CPU wake-up
//! (tens of µs) while on one CPU it costs a couple of µs, so every latency and throughput figure
//! and its baseline are measured both ways and compared best with best.
//!
//! Pinning sets the CPU affinity of the calling bench thread; everything it then starts — the
//! kernel, the kernel's modules and helpers, the CLI runs, the direct baselines' processes and
//! the bench's own worker threads — inherits it. The bench's own polling (a small file read
//! every few ms) runs on the same CPU, in both placements alike.

use std::sync::OnceLock;

/// A placement of the measured processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Any CPU the bench may use.
    Free,
    /// One CPU (the first the bench may use).
    Pinned,
}

/// Both placements, in the order they are measured.
pub const BOTH: [Placement; 2] = [Placement::Free, Placement::Pinned];

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Free => "free",
            Placement::Pinned => "pinned",
        }
    }

    /// Applies the placement to the calling thread until the guard is dropped.
    pub fn enter(self) -> Guard {
        let all = original();
        let set = match self {
            Placement::Free => all,
            Placement::Pinned => first_cpu(&all),
        };
        set_affinity(&set);
        Guard { restore: all }
    }
}

/// Restores the bench thread's original affinity when dropped.
pub struct Guard {
    restore: libc::cpu_set_t,
}

impl Drop for Guard {
    fn drop(&mut self) {
        set_affinity(&self.restore);
    }
}

/// The affinity the bench started with (captured on first use, before any placement).
fn original() -> libc::cpu_set_t {
    static ORIGINAL: OnceLock<libc::cpu_set_t> = OnceLock::new();
    *ORIGINAL.get_or_init(|| {
        // SAFETY: cpu_set_t is plain old data; sched_getaffinity fills it for the calling thread.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let r =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        assert_eq!(
            r,
            0,
            "sched_getaffinity failed: {}",
            std::io::Error::last_os_error()
        );
        set
    })
}

/// Captures the original affinity now (call before any placement is entered).
pub fn init() {
    original();
}

/// Number of CPUs the bench may use.
pub fn cpus() -> usize {
    let set = original();
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads a bit of a valid set.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .count()
}

fn first_cpu(all: &libc::cpu_set_t) -> libc::cpu_set_t {
    // SAFETY: plain-old-data set manipulated with the libc macros.
    unsafe {
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut one);
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, all))
            .unwrap_or(0);
        libc::CPU_SET(cpu, &mut one);
        one
    }
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: sched_setaffinity on the calling thread (pid 0) with a valid set.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    assert_eq!(
        r,
        0,
        "sched_setaffinity failed: {}",
        std::io::Error::last_os_error()
    );
}
