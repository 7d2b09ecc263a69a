//! 100 trivial modules from the instant `pons kernel start` is executed to the last
//! `module.ready` line of the kernel's JSON log, against the bench spawning the same 100
//! executables (same directories, same `test-module.args`) and completing the init → ready
//! handshake with each directly (to when it has read the last `ready`).
//!
//! The first start of the home is reported apart (it also persists `firstSpawnAt`); then, in
//! each placement (free, pinned to one CPU), rounds alternate direct and kernel starts and the
//! medians are compared, best placement with best placement.

use std::time::Duration;

use serde_json::json;

use crate::fleet::{direct_boot, home, kernel_boot};
use crate::placement::BOTH;
use crate::report::{quantile, Figure, Pick, Placed, Target};
use crate::Opts;

const MODULES: usize = 100;

pub fn run(opts: &Opts) -> Vec<Figure> {
    let rounds = if opts.quick { 1 } else { 3 };
    let home = home(MODULES, true);
    let timeout = Duration::from_secs(60);
    let (mut k, first_ms) = kernel_boot(&home, MODULES, timeout);
    k.stop();
    let mut boot = [f64::NAN; 2];
    let mut direct = [f64::NAN; 2];
    let mut details = serde_json::Map::new();
    for (i, p) in BOTH.iter().enumerate() {
        let _placed = p.enter();
        let (mut kernel_ms, mut direct_ms) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            direct_ms.push(direct_boot(&home, MODULES));
            let (mut k, ms) = kernel_boot(&home, MODULES, timeout);
            k.stop();
            kernel_ms.push(ms.unwrap_or(f64::NAN));
        }
        details.insert(
            p.name().into(),
            json!({"ponsMs": kernel_ms.clone(), "directMs": direct_ms.clone()}),
        );
        boot[i] = quantile(&mut kernel_ms, 0.5);
        direct[i] = quantile(&mut direct_ms, 0.5);
    }
    let direct_best = Pick::Min.best(direct[0], direct[1]);
    details.insert("modules".into(), json!(MODULES));
    details.insert("rounds".into(), json!(rounds));
    vec![
        Figure {
            baseline: Some(direct_best),
            baseline_name: "direct spawn+handshake",
            ..Figure::single(
                "startup",
                format!("{MODULES} modules first start (install) → last module.ready"),
                "ms",
                first_ms.unwrap_or(f64::NAN),
                None,
                json!({"placement": "free"}),
            )
        },
        Figure::placed(
            "startup",
            format!("{MODULES} modules: exec → last module.ready (median)"),
            "ms",
            Pick::Min,
            Placed::new(boot[0], boot[1]),
            Some(("direct spawn+handshake", Placed::new(direct[0], direct[1]))),
            Some(Target::RatioAtMost(1.5)),
            details.into(),
        ),
    ]
}
