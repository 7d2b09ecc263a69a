//! Hot config latency, to the `config:update` the module reads (it stamps the receive time,
//! `--bench-out`):
//! - config.yaml saved (temp file + rename, as editors do) with the kernel in auto mode: the
//!   watcher's debounce included; latency = stamp − the instant before the rename;
//! - config.yaml rewritten in place, then at once SIGUSR1 to the kernel (manual mode, so only
//!   the signal can deliver it); latency = stamp − the instant before the rewrite;
//! - the same with `pons apply` (the real CLI) instead of the signal.
//!
//! Between signalled samples the bench waits for the watcher to have seen the previous rewrite
//! (its quiet window), so each sample starts from a settled kernel.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::harness::{now_us, records, wait_for, BenchHome, Spec};
use crate::placement::BOTH;
use crate::procs::time_cli;
use crate::report::{quantile, Figure, Pick, Placed, Target};
use crate::Opts;

/// Longer than the watcher's debounce: a rewrite is seen and handled within it.
const QUIET: Duration = Duration::from_millis(200);

fn config_yaml(v: u64) -> String {
    format!("lifecycle:\n  shutdownGraceMs: 1000\nbenchcfg:\n  v: {v}\n  name: bench\n")
}

fn home() -> BenchHome {
    let mut home = BenchHome::new();
    home.write_config(&config_yaml(0));
    home.add_all(&[Spec::new(
        "cfg",
        json!({"configKey": "benchcfg"}),
        &["--bench-out", "{bench}/cfg.jsonl"],
    )]);
    home
}

/// Waits for the `config:update` carrying `v`; returns its receive stamp.
fn received(out: &Path, v: u64) -> u64 {
    wait_for(
        &format!("config:update with v = {v}"),
        Duration::from_secs(10),
        Duration::from_micros(500),
        || {
            records(out, "config")
                .iter()
                .find(|r| r["config"]["benchcfg"]["v"] == v)
                .and_then(|r| r["t_us"].as_u64())
        },
    )
}

/// How a change reaches the kernel.
#[derive(Clone, Copy)]
enum Push {
    /// Saved by rename; the watcher (auto mode).
    Saved,
    /// Rewritten in place, then SIGUSR1 (manual mode).
    Signal,
    /// Rewritten in place, then `pons apply` (manual mode).
    Apply,
}

fn samples(push: Push, k: u64) -> Vec<f64> {
    let home = home();
    let manual: &[&str] = match push {
        Push::Saved => &[],
        Push::Signal | Push::Apply => &["--manual"],
    };
    let kernel = home.start_kernel(manual);
    kernel.wait_ready(&["cfg"], Duration::from_secs(30));
    let out = home.file("cfg.jsonl");
    let mut lat = Vec::new();
    for v in 1..=k {
        let t0 = now_us();
        match push {
            Push::Saved => home.save_config_by_rename(&config_yaml(v)),
            Push::Signal => {
                home.write_config(&config_yaml(v));
                kernel.signal(libc::SIGUSR1);
            }
            Push::Apply => {
                home.write_config(&config_yaml(v));
                time_cli(home.path(), &["apply"], 1);
            }
        }
        let t1 = received(&out, v);
        lat.push(t1.saturating_sub(t0) as f64 / 1000.0);
        if !matches!(push, Push::Saved) {
            std::thread::sleep(QUIET);
        }
    }
    lat
}

pub fn run(opts: &Opts) -> Vec<Figure> {
    let (k_file, k_sig, k_apply) = if opts.quick { (3, 3, 3) } else { (10, 15, 10) };
    let cases = [
        (
            Push::Saved,
            k_file,
            "config.yaml saved → config:update (p50)",
            150.0,
        ),
        (
            Push::Signal,
            k_sig,
            "rewrite + SIGUSR1 at once → config:update (p50)",
            5.0,
        ),
        (
            Push::Apply,
            k_apply,
            "rewrite + pons apply → config:update (p50)",
            5.0,
        ),
    ];
    let mut figs = Vec::new();
    for (push, k, metric, target) in cases {
        let mut p50 = [f64::NAN; 2];
        let mut details = serde_json::Map::new();
        for (i, p) in BOTH.iter().enumerate() {
            let _placed = p.enter();
            let mut v = samples(push, k);
            details.insert(p.name().into(), json!({"samplesMs": v.clone()}));
            p50[i] = quantile(&mut v, 0.5);
        }
        figs.push(Figure::placed(
            "config",
            metric,
            "ms",
            Pick::Min,
            Placed::new(p50[0], p50[1]),
            None,
            Some(Target::AtMost(target)),
            details.into(),
        ));
    }
    figs
}
