//! Crash recovery: `kill -9` of a module → the module running again, i.e. its new process has
//! sent `ready` (the module stamps it, `--bench-out`); latency = that stamp − the instant just
//! before the kill. With the lowest settings (`lifecycle.restartBaseMs: 0`,
//! `maxRestartBackoffMs: 0`, `maxRestarts` high enough for every kill) many kills in a row, and
//! with the defaults one kill per kernel (the first restart of the default schedule: 1 s ± 10 %).

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::harness::{now_us, records, wait_for, BenchHome, Spec};
use crate::placement::{Placement, BOTH};
use crate::report::{quantile, Figure, Pick, Placed, Target};
use crate::Opts;

const LOWEST: &str =
    "lifecycle:\n  restartBaseMs: 0\n  maxRestartBackoffMs: 0\n  maxRestarts: 1000000\n";

fn home(config: Option<&str>) -> BenchHome {
    let mut home = BenchHome::new();
    if let Some(c) = config {
        home.write_config(c);
    }
    home.add_all(&[Spec::new(
        "victim",
        json!({}),
        &["--bench-out", "{bench}/ready.jsonl"],
    )]);
    home
}

/// The `ready` stamps in the order written: (pid, t_us).
fn readies(out: &Path) -> Vec<(i64, u64)> {
    records(out, "ready")
        .iter()
        .filter_map(|r| Some((r["pid"].as_i64()?, r["t_us"].as_u64()?)))
        .collect()
}

/// Kills the module `kills` times (each after its previous restart is ready); ms per restart.
fn kill_and_wait(home: &BenchHome, kills: usize, timeout: Duration) -> Vec<f64> {
    let out = home.file("ready.jsonl");
    let mut lat = Vec::new();
    for _ in 0..kills {
        let before = readies(&out);
        let Some(&(pid, _)) = before.last() else {
            panic!("the module never sent ready");
        };
        let t0 = now_us();
        // SAFETY: kill(2) on the module process we read from its own record.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        let t1 = wait_for(
            "the killed module to be ready again",
            timeout,
            Duration::from_micros(500),
            || {
                let now = readies(&out);
                (now.len() > before.len())
                    .then(|| now.last().map(|&(_, t)| t))
                    .flatten()
            },
        );
        lat.push(t1.saturating_sub(t0) as f64 / 1000.0);
        // Let the kernel finish its bookkeeping of the restart.
        std::thread::sleep(Duration::from_millis(20));
    }
    lat
}

fn first_ready(home: &BenchHome) {
    let out = home.file("ready.jsonl");
    wait_for(
        "the module to be ready",
        Duration::from_secs(30),
        Duration::from_millis(5),
        || (!readies(&out).is_empty()).then_some(()),
    );
}

pub fn run(opts: &Opts) -> Vec<Figure> {
    let kills = if opts.quick { 5 } else { 20 };
    let mut lowest = [f64::NAN; 2];
    let mut default = [f64::NAN; 2];
    let mut details = serde_json::Map::new();
    details.insert("lowestConfig".into(), json!(LOWEST));
    for (i, p) in BOTH.iter().enumerate() {
        let _placed = p.enter();
        let h = home(Some(LOWEST));
        let kernel = h.start_kernel(&[]);
        first_ready(&h);
        let mut low = kill_and_wait(&h, kills, Duration::from_secs(10));
        drop(kernel);

        // Quick: the default schedule in free placement only (each sample waits 1 s).
        let def = if opts.quick && *p != Placement::Free {
            vec![f64::NAN]
        } else {
            let h = home(None);
            let kernel = h.start_kernel(&[]);
            first_ready(&h);
            let def = kill_and_wait(&h, 1, Duration::from_secs(10));
            drop(kernel);
            def
        };

        details.insert(
            p.name().into(),
            json!({"lowestMs": low.clone(), "defaultMs": def.clone()}),
        );
        lowest[i] = quantile(&mut low, 0.5);
        default[i] = def[0];
    }
    vec![
        Figure::placed(
            "restart",
            "kill -9 → ready again, lowest settings (p50)",
            "ms",
            Pick::Min,
            Placed::new(lowest[0], lowest[1]),
            None,
            Some(Target::AtMost(20.0)),
            serde_json::Value::Object(details),
        ),
        Figure::placed(
            "restart",
            "kill -9 → ready again, default settings",
            "ms",
            Pick::Min,
            Placed::new(default[0], default[1]),
            None,
            Some(Target::Within(900.0, 1200.0)),
            serde_json::Value::Null,
        ),
    ]
}
