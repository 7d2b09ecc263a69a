//! Scale: 10, 100 and 1,000 trivial modules. At each size: time from `pons kernel start`'s
//! exec to the last `module.ready` of its JSON log (with the direct spawn + handshake of the
//! same modules as the baseline), kernel + helpers VmRSS, `pons status --json` wall time, idle
//! kernel CPU, and the plan of that many synthetic modules. Then, for each figure, the value
//! at 1,000 against the straight line through 10 and 100, with the per-module growth of each
//! step: more than 1.5 × the line is flagged as growing faster than linearly.
//!
//! 1,000 modules need more file descriptors than the usual 1,024: the bench raises its soft
//! limit to the hard limit at start, and the kernel inherits it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fleet::{direct_boot, home, idle_cpu, kernel_boot};
use crate::placement::{Placement, BOTH};
use crate::procs::{time_cli, Memory};
use crate::report::{count, num, quantile, Figure, Pick, Placed, Target};
use crate::Opts;

const SIZES: [usize; 3] = [10, 100, 1_000];

/// One size, measured in each placement (NaN where not measured).
struct Size {
    n: usize,
    boot: Placed,
    direct: Placed,
    rss_mib: Placed,
    status_ms: Placed,
    idle_pct: Placed,
    plan_ms: f64,
    details: Value,
}

fn measure(n: usize, opts: &Opts) -> Size {
    // Installed: no start sends `install` or rewrites permissions.yaml.
    let home = home(n, false);
    let timeout = Duration::from_secs(180);
    let placements: &[Placement] = if opts.quick {
        &[Placement::Free]
    } else {
        &BOTH
    };
    let mut v = [[f64::NAN; 2]; 5];
    let mut details = serde_json::Map::new();
    for p in placements {
        let i = BOTH.iter().position(|b| b == p).unwrap_or(0);
        let _placed = p.enter();
        let direct = direct_boot(&home, n);
        let (mut kernel, boot) = kernel_boot(&home, n, timeout);
        // The settle grows with the modules: the end of a start-up is not idle yet (and the
        // kernel releases its start-up code 1 s after its last pass).
        let (settle, window) = if opts.quick {
            (
                Duration::from_millis(1200 + n as u64 / 2),
                Duration::from_secs(1),
            )
        } else {
            (
                Duration::from_millis(1200 + 2 * n as u64),
                Duration::from_secs(3),
            )
        };
        let idle = idle_cpu(&kernel, settle, window);
        let memory = Memory::of_kernel(kernel.pid());
        let mut status = time_cli(
            home.path(),
            &["status", "--json"],
            if opts.quick { 5 } else { 10 },
        );
        kernel.stop();
        details.insert(
            p.name().into(),
            json!({"bootMs": boot, "directMs": direct, "memory": memory.json(),
                   "idle": idle.json(), "statusMs": status.clone()}),
        );
        v[0][i] = boot.unwrap_or(f64::NAN);
        v[1][i] = direct;
        v[2][i] = memory.mib();
        v[3][i] = quantile(&mut status, 0.5);
        v[4][i] = idle.pct;
    }
    let mut plan = crate::plan::measure(n, if opts.quick { 3 } else { 10 });
    let placed = |a: [f64; 2]| Placed::new(a[0], a[1]);
    Size {
        n,
        boot: placed(v[0]),
        direct: placed(v[1]),
        rss_mib: placed(v[2]),
        status_ms: placed(v[3]),
        idle_pct: placed(v[4]),
        plan_ms: quantile(&mut plan.converged_ms, 0.5),
        details: Value::Object(details),
    }
}

pub fn run(opts: &Opts) -> Vec<Figure> {
    let sizes: Vec<Size> = SIZES.iter().map(|&n| measure(n, opts)).collect();
    let mut figs = Vec::new();
    for s in &sizes {
        let n = count(s.n);
        figs.push(Figure::placed(
            "scale",
            format!("{n} modules: exec → last module.ready"),
            "ms",
            Pick::Min,
            s.boot,
            Some(("direct spawn+handshake", s.direct)),
            None,
            s.details.clone(),
        ));
        for (metric, unit, value) in [
            ("kernel + helpers VmRSS", "MiB", s.rss_mib),
            ("pons status --json (median)", "ms", s.status_ms),
            ("idle kernel CPU", "%", s.idle_pct),
        ] {
            figs.push(Figure::placed(
                "scale",
                format!("{n} modules: {metric}"),
                unit,
                Pick::Min,
                value,
                None,
                None,
                Value::Null,
            ));
        }
        figs.push(Figure::single(
            "scale",
            format!("{n} modules: plan, converged (p50)"),
            "ms",
            s.plan_ms,
            None,
            Value::Null,
        ));
    }
    let best = |p: Placed| Pick::Min.best(p.free, p.pinned);
    let series: [(&str, &'static str, Vec<f64>); 5] = [
        (
            "all ready",
            "ms",
            sizes.iter().map(|s| best(s.boot)).collect(),
        ),
        (
            "VmRSS",
            "MiB",
            sizes.iter().map(|s| best(s.rss_mib)).collect(),
        ),
        (
            "status",
            "ms",
            sizes.iter().map(|s| best(s.status_ms)).collect(),
        ),
        (
            "idle CPU",
            "%",
            sizes.iter().map(|s| best(s.idle_pct)).collect(),
        ),
        ("plan", "ms", sizes.iter().map(|s| s.plan_ms).collect()),
    ];
    for (what, unit, v) in series {
        figs.push(growth(what, unit, &v));
    }
    figs
}

/// The value at 1,000 against the line through the values at 10 and 100 (a line that does not
/// go down): pons = the value at 1,000, baseline = the line's value there.
fn growth(what: &str, unit: &'static str, v: &[f64]) -> Figure {
    let (n0, n1, n2) = (SIZES[0] as f64, SIZES[1] as f64, SIZES[2] as f64);
    let slope1 = (v[1] - v[0]) / (n1 - n0);
    let slope2 = (v[2] - v[1]) / (n2 - n1);
    let line = v[1] + slope1.max(0.0) * (n2 - n1);
    let per = |x: f64| {
        if x.is_nan() {
            "–".to_string()
        } else {
            num(x)
        }
    };
    Figure {
        baseline: Some(line),
        baseline_name: "linear from 10/100",
        ..Figure::single(
            "scale",
            format!(
                "growth of {what}: {} → {} {unit}/module",
                per(slope1),
                per(slope2)
            ),
            unit,
            v[2],
            Some(Target::RatioAtMost(1.5)),
            json!({"values": v, "sizes": SIZES, "perModule": {"10→100": slope1, "100→1000": slope2}}),
        )
    }
}
