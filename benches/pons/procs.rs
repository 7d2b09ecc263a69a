//! What the bench reads about processes from /proc: the memory of the kernel and its helper
//! processes, the CPU time of the kernel, and timed runs of the real `pons` CLI. Also the bench's
//! own file-descriptor limit (1,000 modules need more than the usual 1,024).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};

use crate::harness::{pons_bin, proc_rss_kib as rss_kib};

/// Raises the bench's soft RLIMIT_NOFILE to its hard limit; the processes it starts (the kernel
/// among them) inherit it. Returns (soft before, soft after).
pub fn raise_nofile() -> (u64, u64) {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        let before = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return (before, before);
            }
        }
        (before, lim.rlim_cur)
    }
}

/// Pss of `pid` in KiB (shared pages divided among their users), 0 when unreadable.
fn pss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The parent pid of `pid` (field 4 of /proc/<pid>/stat).
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The kernel's helper processes: its children that run a pons executable (`pons __watchdog`,
/// a `pons-exec` trampoline not yet replaced by its module), as (pid, executable name).
pub fn helpers(kernel: i32) -> Vec<(i32, String)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| ppid(pid) == Some(kernel))
        .filter_map(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            let name = exe.file_name()?.to_string_lossy().into_owned();
            name.starts_with("pons").then_some((pid, name))
        })
        .collect()
}

/// Memory of the kernel with its helpers.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    /// VmRSS of the kernel plus its helpers, KiB (what the figures use).
    pub total_kib: u64,
    pub kernel_kib: u64,
    pub kernel_hwm_kib: u64,
    /// (executable name, VmRSS KiB) of each helper.
    pub helpers: Vec<(String, u64)>,
    /// Pss of the kernel plus its helpers (their shared pages counted once), KiB.
    pub pss_kib: u64,
}

impl Memory {
    pub fn of_kernel(kernel: i32) -> Memory {
        let (rss, hwm) = rss_kib(kernel);
        let helpers: Vec<(i32, String)> = helpers(kernel);
        let helper_rss: Vec<(String, u64)> = helpers
            .iter()
            .map(|(pid, name)| (name.clone(), rss_kib(*pid).0))
            .collect();
        let pss = pss_kib(kernel) + helpers.iter().map(|(p, _)| pss_kib(*p)).sum::<u64>();
        Memory {
            total_kib: rss + helper_rss.iter().map(|(_, k)| k).sum::<u64>(),
            kernel_kib: rss,
            kernel_hwm_kib: hwm,
            helpers: helper_rss,
            pss_kib: pss,
        }
    }

    pub fn mib(&self) -> f64 {
        self.total_kib as f64 / 1024.0
    }

    pub fn json(&self) -> Value {
        json!({"totalKiB": self.total_kib, "kernelKiB": self.kernel_kib,
               "kernelHwmKiB": self.kernel_hwm_kib, "pssKiB": self.pss_kib,
               "helpers": self.helpers.iter().map(|(n, k)| json!({"exe": n, "rssKiB": k}))
                   .collect::<Vec<_>>()})
    }
}

/// CPU time of a process at one instant: per thread (schedstat, ns) and utime+stime of the
/// whole process (clock ticks, threads that ended included).
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    threads_ns: BTreeMap<u32, u64>,
    ticks: u64,
}

impl CpuSample {
    pub fn of(pid: i32) -> CpuSample {
        let mut threads_ns = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in rd.flatten() {
                let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let ns = std::fs::read_to_string(t.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok());
                if let Some(ns) = ns {
                    threads_ns.insert(tid, ns);
                }
            }
        }
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s[s.rfind(')')? + 1..].to_string();
                let f: Vec<&str> = rest.split_whitespace().collect();
                // After ')': state is field 3, utime field 14, stime field 15.
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        CpuSample { threads_ns, ticks }
    }

    /// CPU used since `earlier`: (ns from the threads' schedstat — precise, but a thread that
    /// ended in between loses what it ran after `earlier` —, ns from utime+stime — everything,
    /// in clock ticks of 1/CLK_TCK s).
    pub fn since(&self, earlier: &CpuSample) -> (u64, u64) {
        let sched = self
            .threads_ns
            .iter()
            .map(|(tid, ns)| ns.saturating_sub(earlier.threads_ns.get(tid).copied().unwrap_or(0)))
            .sum();
        let ticks = self.ticks.saturating_sub(earlier.ticks);
        (sched, ticks * 1_000_000_000 / clock_ticks())
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Wall time in ms of each of `n` runs of `pons --home <home> <args…>` (output discarded). Panics
/// when a run fails: a figure of a failing command would mean nothing.
pub fn time_cli(home: &Path, args: &[&str], n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(pons_bin())
                .arg("--home")
                .arg(home)
                .args(args)
                .env_remove("PONS_HOME")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .expect("run the pons CLI");
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            assert!(
                out.status.success(),
                "`pons {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            ms
        })
        .collect()
}
