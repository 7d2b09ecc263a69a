//! The pons benchmarks: each runs the real release `pons` binary on a temporary
//! home with modules built on the Rust SDK (`pons-test-module`), measures its baseline in the
//! same run, and prints the absolute figures, the ratio and the target; then a summary table.
//! Every figure between processes is measured twice, with free placement and with every
//! process pinned to one CPU, and compared best with best (see `placement.rs`).
//!
//! ```text
//! cargo bench --bench pons                      # everything (a few minutes on 2 cores)
//! cargo bench --bench pons -- --quick           # smaller counts (< 30 s)
//! cargo bench --bench pons -- rpc throughput    # only benchmarks whose name contains a word
//! cargo bench --bench pons -- --json            # JSON on stdout, human output on stderr
//! ```
//!
//! Benchmarks: `route`, `rpc`, `throughput`, `burst`, `startup`, `resources` (`rss`, `status`,
//! `idle`), `restart`, `config`, `plan`, `scale`, `cluster`.
//! Results of a full run are kept in benches/RESULTS.md.

#[path = "pons/cluster.rs"]
mod cluster;
#[path = "pons/config.rs"]
mod config;
#[path = "pons/fleet.rs"]
mod fleet;
#[path = "pons/harness.rs"]
mod harness;
#[path = "pons/kernel_log.rs"]
mod kernel_log;
#[path = "pons/placement.rs"]
mod placement;
#[path = "pons/plan.rs"]
mod plan;
#[path = "pons/procs.rs"]
mod procs;
#[path = "pons/relay.rs"]
mod relay;
#[path = "pons/report.rs"]
mod report;
#[path = "pons/resources.rs"]
mod resources;
#[path = "pons/restart.rs"]
mod restart;
#[path = "pons/route.rs"]
mod route;
#[path = "pons/rpc.rs"]
mod rpc;
#[path = "pons/scale.rs"]
mod scale;
#[path = "pons/startup.rs"]
mod startup;
#[path = "pons/throughput.rs"]
mod throughput;

use std::time::Instant;

use report::Figure;
use serde_json::json;

/// Command-line options.
pub struct Opts {
    pub quick: bool,
    pub json: bool,
    pub filters: Vec<String>,
}

type BenchFn = fn(&Opts) -> Vec<Figure>;

/// name, other names that select it, what it measures, the function.
const BENCHES: &[(&str, &[&str], &str, BenchFn)] = &[
    (
        "route",
        &["router"],
        "the routing core in process: CPU per routed message",
        route::run,
    ),
    (
        "rpc",
        &[],
        "RPC round trip through the kernel vs a direct pipe ping-pong",
        rpc::run,
    ),
    (
        "throughput",
        &["publish", "deliver"],
        "publish → deliver 1→1 / 1→10, 128 B / 4 KiB vs a direct pipe stream",
        throughput::run,
    ),
    (
        "burst",
        &[],
        "200,000-message burst: delivered without loss, and time",
        throughput::burst,
    ),
    (
        "startup",
        &["boot"],
        "100 modules: exec of `pons kernel start` → last module.ready in its log vs direct spawn + handshake",
        startup::run,
    ),
    (
        "resources",
        &["rss", "memory", "status", "idle"],
        "kernel + helpers RSS at 100 / 500 idle modules, `pons status --json` at 100 / 500, idle CPU at 100",
        resources::run,
    ),
    (
        "restart",
        &["crash", "kill"],
        "kill -9 of a module → ready again, lowest settings and defaults",
        restart::run,
    ),
    (
        "config",
        &["signal", "apply"],
        "config.yaml saved / rewritten + SIGUSR1 / rewritten + pons apply → config:update",
        config::run,
    ),
    (
        "plan",
        &[],
        "build_desired + plan for 1,000 modules (pure)",
        plan::run,
    ),
    (
        "scale",
        &[],
        "10 / 100 / 1,000 modules: all ready, RSS, status, idle CPU, plan; growth vs linear",
        scale::run,
    ),
    (
        "cluster",
        &["nats"],
        "two kernels through nats-server: RPC p50 and pub/sub vs plain NATS clients",
        cluster::run,
    ),
];

const USAGE: &str = "usage: cargo bench --bench pons -- [--quick] [--json] [NAME…]
  NAME      run only benchmarks whose name contains NAME: route rpc throughput burst startup
            resources (rss status idle) restart config plan scale cluster
  --quick   smaller counts (whole run under 30 s)
  --json    print the results as JSON on stdout (human output goes to stderr)
";

fn main() {
    // The cluster bench's relay processes (`relay.rs`): this binary re-executed.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(relay::ARG) {
        relay::main(&args[2..]);
    }
    let mut opts = Opts {
        quick: false,
        json: false,
        filters: Vec::new(),
    };
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--json" => opts.json = true,
            // Passed by `cargo bench`.
            "--bench" => {}
            "-h" | "--help" => {
                print!("{USAGE}");
                return;
            }
            s if s.starts_with('-') => {
                eprintln!("unknown option {s}\n{USAGE}");
                std::process::exit(2);
            }
            s => opts.filters.push(s.to_string()),
        }
    }
    let selected: Vec<_> = BENCHES
        .iter()
        .filter(|(name, aliases, _, _)| {
            opts.filters.is_empty()
                || opts.filters.iter().any(|f| {
                    name.contains(f.as_str()) || aliases.iter().any(|a| a.contains(f.as_str()))
                })
        })
        .collect();
    if selected.is_empty() {
        eprintln!("no benchmark matches {:?}\n{USAGE}", opts.filters);
        std::process::exit(2);
    }

    placement::init();
    let (nofile_before, nofile) = procs::raise_nofile();

    // Human output: stdout, or stderr when stdout carries JSON.
    let say = |s: &str| {
        if opts.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    let machine = report::machine();
    say(&format!(
        "pons benchmarks{} — {} × {}, Linux {}",
        if opts.quick { " (quick)" } else { "" },
        machine["cpus"],
        machine["cpuModel"].as_str().unwrap_or("?"),
        machine["linux"].as_str().unwrap_or("?")
    ));
    say(&format!(
        "binaries: {} and {}",
        harness::pons_bin().display(),
        harness::test_module_bin().display()
    ));
    say(&format!(
        "placements: free ({} CPUs) and pinned to one CPU, best with best; RLIMIT_NOFILE {nofile_before} → {nofile}",
        placement::cpus()
    ));

    let started = Instant::now();
    let mut figures: Vec<Figure> = Vec::new();
    let mut timings = serde_json::Map::new();
    for (name, _, what, run) in selected {
        say(&format!("\n== {name}: {what}"));
        let t = Instant::now();
        let figs = run(&opts);
        for f in &figs {
            say(&f.line());
        }
        let secs = t.elapsed().as_secs_f64();
        timings.insert(name.to_string(), json!((secs * 10.0).round() / 10.0));
        say(&format!("   ({secs:.1} s)"));
        figures.extend(figs);
    }
    let total = started.elapsed().as_secs_f64();
    say(&format!("\nSummary ({total:.0} s):\n"));
    say(&report::table(&figures));
    let missed = figures.iter().filter(|f| f.ok() == Some(false)).count();
    if missed > 0 {
        say(&format!("{missed} target(s) missed"));
    }
    if opts.json {
        let doc = json!({
            "machine": machine,
            "quick": opts.quick,
            "rlimitNofile": nofile,
            "seconds": total,
            "benchSeconds": timings,
            "figures": figures.iter().map(Figure::json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    }
}
