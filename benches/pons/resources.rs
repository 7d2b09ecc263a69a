//! What a kernel with idle modules costs, at 100 and 500 trivial modules: its memory with its
//! helper processes (`pons __watchdog`), the wall time of the real `pons status --json`, and (at
//! 100) its CPU while nothing happens. The homes are installed (every module has a
//! `firstSpawnAt`, as after its first start) and started once per placement.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fleet::{home, idle_cpu, kernel_boot, specs};
use crate::harness::BenchHome;
use crate::placement::{Placement, BOTH};
use crate::procs::{time_cli, Memory};
use crate::report::{quantile, Figure, Pick, Placed, Target};
use crate::Opts;

const SMALL: usize = 100;
const LARGE: usize = 500;

/// One kernel run on an idle home.
struct Run {
    memory: Memory,
    status_ms: Vec<f64>,
    idle: Option<crate::fleet::Idle>,
    boot_ms: Option<f64>,
}

impl Run {
    fn status_median(&self) -> f64 {
        quantile(&mut self.status_ms.clone(), 0.5)
    }

    fn status_best(&self) -> f64 {
        quantile(&mut self.status_ms.clone(), 0.0)
    }

    fn json(&self, version_ms: &[f64]) -> Value {
        json!({
            "bootMs": self.boot_ms,
            "memory": self.memory.json(),
            "statusMs": {"median": self.status_median(),
                         "best": self.status_best(),
                         "runs": self.status_ms.len(),
                         "ponsVersionMedian": quantile(&mut version_ms.to_vec(), 0.5)},
            "idle": self.idle.map(crate::fleet::Idle::json),
        })
    }
}

fn measure(home: &BenchHome, n: usize, opts: &Opts, idle: bool) -> Run {
    let (mut kernel, boot_ms) = kernel_boot(home, n, Duration::from_secs(120));
    // Idle first (it also lets the start-up settle: the kernel releases its start-up code 1 s
    // after its last pass), then memory, then the CLI runs.
    let idle = idle.then(|| {
        let (settle, window) = if opts.quick {
            (Duration::from_millis(1200), Duration::from_secs(1))
        } else {
            (Duration::from_millis(1200), Duration::from_secs(8))
        };
        idle_cpu(&kernel, settle, window)
    });
    if idle.is_none() {
        // The kernel releases start-up code 1 s after its last pass.
        std::thread::sleep(Duration::from_millis(1500));
    }
    let memory = Memory::of_kernel(kernel.pid());
    let runs = if opts.quick { 10 } else { 30 };
    let status_ms = time_cli(home.path(), &["status", "--json"], runs);
    kernel.stop();
    Run {
        memory,
        status_ms,
        idle,
        boot_ms,
    }
}

pub fn run(opts: &Opts) -> Vec<Figure> {
    // Installed homes: no start sends `install` or rewrites permissions.yaml.
    let mut home = home(SMALL, false);
    let version_ms = time_cli(home.path(), &["--version"], 10);
    let small: Vec<Run> = BOTH
        .iter()
        .map(|p| {
            let _placed = p.enter();
            measure(&home, SMALL, opts, true)
        })
        .collect();

    home.add_all(&specs(SMALL..LARGE));
    // Quick: the large home in free placement only.
    let large: Vec<Option<Run>> = BOTH
        .iter()
        .map(|p| {
            (!opts.quick || *p == Placement::Free).then(|| {
                let _placed = p.enter();
                measure(&home, LARGE, opts, false)
            })
        })
        .collect();

    let of = |runs: &[Run], f: &dyn Fn(&Run) -> f64| Placed::new(f(&runs[0]), f(&runs[1]));
    let of_large = |f: &dyn Fn(&Run) -> f64| {
        let v = |r: &Option<Run>| r.as_ref().map_or(f64::NAN, f);
        Placed::new(v(&large[0]), v(&large[1]))
    };
    let per_module = |i: usize| {
        large[i].as_ref().map_or(f64::NAN, |l| {
            (l.memory.total_kib as f64 - small[i].memory.total_kib as f64) / (LARGE - SMALL) as f64
        })
    };
    let mut details = serde_json::Map::new();
    for (i, p) in BOTH.iter().enumerate() {
        details.insert(
            p.name().into(),
            json!({"at100": small[i].json(&version_ms),
                   "at500": large[i].as_ref().map(|r| r.json(&version_ms))}),
        );
    }
    let details = Value::Object(details);
    vec![
        Figure::placed(
            "rss",
            format!("kernel + helpers VmRSS, {SMALL} idle modules"),
            "MiB",
            Pick::Min,
            of(&small, &|r| r.memory.mib()),
            None,
            Some(Target::AtMost(12.0)),
            details.clone(),
        ),
        Figure::placed(
            "rss",
            format!("kernel + helpers VmRSS per module, {SMALL} → {LARGE}"),
            "KiB",
            Pick::Min,
            Placed::new(per_module(0), per_module(1)),
            None,
            Some(Target::AtMost(30.0)),
            Value::Null,
        ),
        Figure::placed(
            "status",
            format!("pons status --json, {SMALL} modules (median)"),
            "ms",
            Pick::Min,
            of(&small, &|r| r.status_median()),
            None,
            Some(Target::AtMost(5.0)),
            json!({"ponsVersionMs": quantile(&mut version_ms.clone(), 0.5)}),
        ),
        Figure::placed(
            "status",
            format!("pons status --json, {SMALL} modules (best)"),
            "ms",
            Pick::Min,
            of(&small, &|r| r.status_best()),
            None,
            None,
            Value::Null,
        ),
        Figure::placed(
            "status",
            format!("pons status --json, {LARGE} modules (median)"),
            "ms",
            Pick::Min,
            of_large(&|r| r.status_median()),
            None,
            Some(Target::AtMost(10.0)),
            Value::Null,
        ),
        Figure::placed(
            "status",
            format!("pons status --json, {LARGE} modules (best)"),
            "ms",
            Pick::Min,
            of_large(&|r| r.status_best()),
            None,
            None,
            Value::Null,
        ),
        Figure::placed(
            "idle",
            format!("idle kernel CPU, {SMALL} modules"),
            "%",
            Pick::Min,
            of(&small, &|r| r.idle.map_or(f64::NAN, |i| i.pct)),
            None,
            Some(Target::AtMost(0.1)),
            Value::Null,
        ),
    ]
}
