//! Homes of N trivial modules and what is measured on them from outside: the start-up of the
//! kernel (from the instant `pons kernel start` is executed to the last `module.ready` line of
//! its JSON log) and of the same modules spawned directly by the bench (init → ready handshake
//! with each), the idle kernel's CPU, and its memory with its helpers.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{now_us, BenchHome, Kernel, Spec};
use crate::kernel_log::LogWatch;
use crate::procs::CpuSample;

/// Id of trivial module `i` (sorted like the numbers up to 9,999).
pub fn id(i: usize) -> String {
    format!("m{i:04}")
}

/// Trivial modules `range` (no arguments: init, ready, then only pongs).
pub fn specs(range: std::ops::Range<usize>) -> Vec<Spec> {
    range.map(|i| Spec::new(&id(i), json!({}), &[])).collect()
}

/// A home of `n` trivial modules, installed (started once before: no `install`, no
/// `firstSpawnAt` to persist) unless `fresh`.
pub fn home(n: usize, fresh: bool) -> BenchHome {
    let mut home = if fresh {
        BenchHome::new()
    } else {
        BenchHome::installed()
    };
    home.add_all(&specs(0..n));
    home
}

/// Starts the kernel on `home` and waits for `n` `module.ready` lines in its JSON log. Returns
/// the kernel and the milliseconds from its exec to the last of them (`None` if they did not
/// all come within `timeout`; the log times have millisecond resolution).
pub fn kernel_boot(home: &BenchHome, n: usize, timeout: Duration) -> (Kernel, Option<f64>) {
    let mut log = LogWatch::new(home.path());
    let kernel = home.start_kernel(&[]);
    let last = log.wait_ready(n, timeout);
    if last.is_none() {
        eprintln!(
            "warning: {} of {n} modules logged `module.ready` within {timeout:?} (see {})",
            log.ready.len(),
            home.kernel_stderr().display()
        );
    }
    let ms = last.map(|t| (t as f64 * 1000.0 - kernel.started_us as f64) / 1000.0);
    (kernel, ms)
}

/// Spawns the `n` module executables of `home` directly (no arguments, in their directories,
/// as under the kernel), writes `init` to each, and reads each `ready`; milliseconds from just
/// before the first spawn to when the last `ready` was read.
pub fn direct_boot(home: &BenchHome, n: usize) -> f64 {
    let init = json!({"type": "init", "protocolVersion": "1.0", "config": {},
                      "workspacePath": home.path(), "projectRoot": home.path()})
    .to_string();
    let t0 = now_us();
    let mut children: Vec<Child> = Vec::with_capacity(n);
    for i in 0..n {
        let dir = home.module_dir(&id(i));
        let mut child = Command::new(dir.join("test-module"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a module");
        if let Some(stdin) = child.stdin.as_mut() {
            let _ = writeln!(stdin, "{init}");
        }
        children.push(child);
    }
    for c in &mut children {
        let mut r = BufReader::new(c.stdout.as_mut().expect("stdout"));
        let mut line = String::new();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            if line.contains("\"ready\"") {
                break;
            }
            line.clear();
        }
    }
    let t1 = now_us();
    // Closing stdin ends them.
    for c in &mut children {
        drop(c.stdin.take());
    }
    for mut c in children {
        let _ = c.wait();
    }
    (t1 - t0) as f64 / 1000.0
}

/// The idle kernel's CPU over a window.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// Percent of one CPU, from the threads' schedstat run times (ns).
    pub pct: f64,
    /// The same from utime+stime (clock ticks: ±1 tick over the window).
    pub pct_ticks: f64,
    pub window_s: f64,
}

impl Idle {
    pub fn json(self) -> Value {
        json!({"pct": self.pct, "pctUtimeStime": self.pct_ticks, "windowS": self.window_s})
    }
}

/// Waits `settle`, then measures the kernel's CPU over `window` while nothing is asked of it.
pub fn idle_cpu(kernel: &Kernel, settle: Duration, window: Duration) -> Idle {
    std::thread::sleep(settle);
    let a = CpuSample::of(kernel.pid());
    let t = std::time::Instant::now();
    std::thread::sleep(window);
    let b = CpuSample::of(kernel.pid());
    let secs = t.elapsed().as_secs_f64();
    let (sched_ns, ticks_ns) = b.since(&a);
    Idle {
        pct: sched_ns as f64 / 1e9 / secs * 100.0,
        pct_ticks: ticks_ns as f64 / 1e9 / secs * 100.0,
        window_s: secs,
    }
}
