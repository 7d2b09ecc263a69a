//! 100 trivial modules from `pons kernel start` to all ready, against spawning the same 100
//! executables (same directories, same `test-module.args`) and doing the init → ready handshake
//! with each directly; then the kernel's RSS with the 100 modules idle.
//!
//! The first start of the home is reported apart (it also persists `firstSpawnAt`); then
//! rounds alternate direct and kernel starts and the medians are compared. Both sides are timed
//! the same way: from just before the first spawn (of the kernel, or of the
//! first module) to the latest `ready` stamp the modules wrote (`--bench-out`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{now_us, wait_records, BenchHome, Spec};
use crate::report::{quantile, Figure, Target};
use crate::Opts;

const MODULES: usize = 100;

pub fn run(opts: &Opts) -> Vec<Figure> {
    let rounds = if opts.quick { 1 } else { 5 };
    let mut home = BenchHome::new();
    let specs: Vec<Spec> = (0..MODULES)
        .map(|i| {
            Spec::new(
                &format!("m{i:03}"),
                json!({}),
                &["--bench-out", "{bench}/ready.jsonl"],
            )
        })
        .collect();
    home.add_all(&specs);
    // The very first start also records `firstSpawnAt` for every module and sends `install`:
    // shown on its own; the measured rounds are ordinary restarts of an installed home.
    let (first_ms, first_rss) = through_kernel(&home, true);
    let (mut kernel_ms, mut direct_ms) = (Vec::new(), Vec::new());
    let mut rss = Rss::default();
    for round in 0..rounds {
        direct_ms.push(direct(&home));
        let last = round + 1 == rounds;
        let (ms, r) = through_kernel(&home, last);
        kernel_ms.push(ms);
        if last {
            rss = r;
        }
    }
    let details = json!({"modules": MODULES, "rounds": rounds,
                         "ponsMs": kernel_ms.clone(), "directMs": direct_ms.clone()});
    let k = quantile(&mut kernel_ms, 0.5);
    let d = quantile(&mut direct_ms, 0.5);
    vec![
        Figure {
            bench: "startup",
            metric: format!("{MODULES} modules first start (install) → all ready"),
            unit: "ms",
            pons: first_ms,
            baseline: Some(d),
            baseline_name: "direct spawn+handshake",
            target: None,
            details: json!({"vmRssKiB": first_rss.idle.0}),
        },
        Figure {
            bench: "startup",
            metric: format!("{MODULES} modules start → all ready"),
            unit: "ms",
            pons: k,
            baseline: Some(d),
            baseline_name: "direct spawn+handshake",
            target: Some(Target::RatioAtMost(2.0)),
            details,
        },
        Figure {
            bench: "rss",
            metric: format!("kernel VmRSS, {MODULES} idle modules"),
            unit: "MiB",
            pons: rss.idle.0 as f64 / 1024.0,
            baseline: None,
            baseline_name: "",
            target: Some(Target::AtMost(20.0)),
            details: json!({"vmRssKiB": rss.idle.0, "vmHwmKiB": rss.idle.1}),
        },
        Figure {
            bench: "rss",
            metric: format!("kernel VmRSS, {MODULES} modules, after status"),
            unit: "MiB",
            pons: rss.after_status.0 as f64 / 1024.0,
            baseline: None,
            baseline_name: "",
            target: Some(Target::AtMost(20.0)),
            details: json!({"vmRssKiB": rss.after_status.0, "vmHwmKiB": rss.after_status.1}),
        },
    ]
}

/// VmRSS/VmHWM of the kernel in KiB: idle (a second after the modules came up, before any
/// control request) and after `status` requests.
#[derive(Debug, Default, Clone, Copy)]
struct Rss {
    idle: (u64, u64),
    after_status: (u64, u64),
}

/// One kernel run: milliseconds to all ready, and (when `measure_rss`) its [`Rss`].
fn through_kernel(home: &BenchHome, measure_rss: bool) -> (f64, Rss) {
    let out = home.file("ready.jsonl");
    let _ = std::fs::remove_file(&out);
    let t0 = now_us();
    let mut kernel = home.start_kernel(&[]);
    let recs = wait_records(
        &out,
        "ready",
        MODULES,
        Duration::from_secs(60),
        Duration::from_millis(10),
    );
    let t1 = recs
        .iter()
        .filter_map(|r| r["t_us"].as_u64())
        .max()
        .unwrap_or(t0);
    let mut rss = Rss::default();
    if measure_rss {
        // Idle: nothing asked of the kernel since the modules came up.
        std::thread::sleep(Duration::from_secs(1));
        rss.idle = kernel.rss_kib();
    }
    kernel.wait_ready_count(MODULES, Duration::from_secs(30));
    if measure_rss {
        // After `status` requests (one per 50 ms until all were reported ready).
        std::thread::sleep(Duration::from_millis(200));
        rss.after_status = kernel.rss_kib();
    }
    kernel.stop();
    ((t1 - t0) as f64 / 1000.0, rss)
}

/// Spawns every module executable directly (no arguments: it reads `test-module.args` beside
/// itself, as under the kernel), sends `init` to each, reads each `ready`.
fn direct(home: &BenchHome) -> f64 {
    let out = home.file("ready.jsonl");
    let _ = std::fs::remove_file(&out);
    let init = json!({"type": "init", "protocolVersion": "1.0", "config": {},
                      "workspacePath": home.path(), "projectRoot": home.path()})
    .to_string();
    let t0 = now_us();
    let mut children: Vec<Child> = Vec::with_capacity(MODULES);
    for i in 0..MODULES {
        let dir = home.module_dir(&format!("m{i:03}"));
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
    // A module writes its stamp right after its `ready` line.
    let recs = wait_records(
        &out,
        "ready",
        MODULES,
        Duration::from_secs(10),
        Duration::from_millis(1),
    );
    let t1 = recs
        .iter()
        .filter_map(|r| r["t_us"].as_u64())
        .max()
        .unwrap_or(t0);
    for c in &mut children {
        drop(c.stdin.take());
    }
    for mut c in children {
        let _ = c.wait();
    }
    (t1 - t0) as f64 / 1000.0
}
