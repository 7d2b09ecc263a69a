//! Hot config latency: config.yaml saved (temp file + rename, as editors do) → `config:update`
//! read by the module, with the kernel in auto mode (watcher debounce included); and, with the
//! kernel in manual mode, config.yaml saved and SIGUSR1 sent at once (the original kernel's
//! workflow, no settle time) → `config:update`. The module stamps the receive time
//! (`--bench-out`); latency = stamp − the moment just before the save.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::harness::{now_us, records, wait_for, BenchHome, Spec};
use crate::report::{quantile, Figure, Target};
use crate::Opts;

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
        Duration::from_millis(1),
        || {
            records(out, "config")
                .iter()
                .find(|r| r["config"]["benchcfg"]["v"] == v)
                .and_then(|r| r["t_us"].as_u64())
        },
    )
}

pub fn run(opts: &Opts) -> Vec<Figure> {
    let (k_file, k_sig) = if opts.quick { (4, 5) } else { (15, 30) };
    let file = file_saved(k_file);
    let sig = signal(k_sig);
    let fig = |metric: &str, mut v: Vec<f64>, target: f64| Figure {
        bench: "config",
        metric: metric.into(),
        unit: "ms",
        pons: quantile(&mut v.clone(), 0.5),
        baseline: None,
        baseline_name: "",
        target: Some(Target::AtMost(target)),
        details: json!({"samplesMs": v.clone(), "max": quantile(&mut v, 1.0)}),
    };
    vec![
        fig("config.yaml saved → config:update (p50)", file, 150.0),
        fig(
            "config.yaml saved + SIGUSR1 at once → config:update (p50)",
            sig,
            5.0,
        ),
    ]
}

fn file_saved(k: u64) -> Vec<f64> {
    let home = home();
    let kernel = home.start_kernel(&[]);
    kernel.wait_ready(&["cfg"], Duration::from_secs(30));
    let out = home.file("cfg.jsonl");
    let mut lat = Vec::new();
    for v in 1..=k {
        let t0 = now_us();
        home.save_config_by_rename(&config_yaml(v));
        let t1 = received(&out, v);
        lat.push(t1.saturating_sub(t0) as f64 / 1000.0);
    }
    lat
}

fn signal(k: u64) -> Vec<f64> {
    let home = home();
    let kernel = home.start_kernel(&["--manual"]);
    kernel.wait_ready(&["cfg"], Duration::from_secs(30));
    let out = home.file("cfg.jsonl");
    let mut lat = Vec::new();
    for v in 1..=k {
        let t0 = now_us();
        home.save_config_by_rename(&config_yaml(v));
        kernel.signal(libc::SIGUSR1);
        let t1 = received(&out, v);
        lat.push(t1.saturating_sub(t0) as f64 / 1000.0);
        // Between samples (not between save and signal): the watcher's own pass of this save,
        // which in manual mode only detects it, is over (debounce 100 ms).
        std::thread::sleep(Duration::from_millis(250));
    }
    lat
}
