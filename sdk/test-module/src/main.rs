//! pons-test-module: a pons module scripted by its command-line flags, for the kernel's
//! integration tests and benchmarks. It records what it sees and does as JSON lines in the
//! `--record` file (see `--help` and sdk/test-module/README.md).

mod actions;
mod args;
mod behaviour;
mod bench;
mod control;
mod probes;
mod record;
mod relay;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pons_sdk::Module;
use serde_json::{json, Map, Value};

use crate::actions::Actions;
use crate::behaviour::TestModule;
use crate::bench::{BenchOut, Expect};
use crate::record::Recorder;

fn main() {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        // Started by a kernel (runtime `binary` passes no arguments): read them from
        // `test-module.args` (a JSON array of strings) beside the executable.
        argv = args::from_file_beside_exe();
    }
    let opts = match args::parse(&argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pons-test-module: {e}");
            std::process::exit(2);
        }
    };
    if opts.help {
        print!("{}", args::USAGE);
        return;
    }
    let rec = match Recorder::open(opts.record.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pons-test-module: {e}");
            std::process::exit(2);
        }
    };
    let bench_out = match BenchOut::open(opts.bench_out.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pons-test-module: {e}");
            std::process::exit(2);
        }
    };
    rec.event(&start_event(&argv));

    if opts.ignore_shutdown {
        // SAFETY: setting a signal disposition to SIG_IGN has no handler to race with.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
    }
    if let Some(ms) = opts.crash_after_ms {
        crash_timer(ms, opts.exit_code, opts.stderr.clone(), rec.clone());
    }
    for p in &opts.probes {
        probes::run(p, &rec);
    }
    if opts.grandchild {
        probes::grandchild(&rec);
    }
    if opts.setsid_grandchild {
        probes::setsid_grandchild(&rec);
    }
    if opts.daemon_grandchild {
        probes::daemon_grandchild(&rec);
    }

    let delivered = Arc::new(AtomicU64::new(0));
    let manifest = opts.manifest.clone().unwrap_or_else(|| json!({}));
    let mut actions = None;
    let module = Module::new_with(|ctx| {
        let a = Actions::new(ctx.clone(), rec.clone(), manifest, bench_out.clone());
        actions = Some(a.clone());
        TestModule {
            opts: opts.clone(),
            actions: a,
            delivered: delivered.clone(),
            expect: Expect::new(opts.bench_expect),
            held: Vec::new(),
        }
    });
    let Some(actions) = actions else {
        unreachable!("new_with calls the builder")
    };
    if let Some(ms) = opts.rpc_timeout_ms {
        actions.ctx.set_rpc_timeout(Duration::from_millis(ms));
        actions.ctx.set_call_timeout(Duration::from_millis(ms));
    }
    if opts.garbage {
        probes::garbage(&actions.ctx, &rec);
    }
    if let Some(path) = &opts.control {
        control::start(path.clone(), actions.clone());
    }
    if opts.count_only {
        count_reporter(delivered, rec.clone());
    }
    if let (Some(spec), true) = (&opts.bench_rpc, opts.bench_now) {
        // Direct mode (no kernel): the peer answers without init, so start at once.
        let (ctx, spec, out) = (actions.ctx.clone(), spec.clone(), bench_out.clone());
        std::thread::spawn(move || bench::run_rpc(&ctx, &spec, &out));
    }

    let tap_rec = rec.clone();
    let count_only = opts.count_only;
    let no_recv = opts.no_recv;
    let code = module
        .auto_ready(false)
        .auto_pong(!opts.ignore_ping)
        .acks(!opts.no_ack)
        .exit_on_shutdown(!opts.ignore_shutdown)
        .tap(move |ty, line| match ty {
            "" => tap_rec.event(&json!({"event": "recv_invalid", "line": line})),
            "deliver" if count_only => {}
            _ if no_recv => {}
            _ => tap_rec.recv(line),
        })
        .run();
    actions.settle(Duration::from_millis(300));
    rec.event(&json!({"event": "exit", "code": code}));
    std::process::exit(code);
}

/// `{"event":"start","pid","ppid","env":{…},"args":[…]}`
fn start_event(argv: &[String]) -> Value {
    let env: Map<String, Value> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                Value::String(v.to_string_lossy().into_owned()),
            )
        })
        .collect();
    json!({
        "event": "start",
        "pid": std::process::id(),
        "ppid": std::os::unix::process::parent_id(),
        "env": env,
        "args": argv,
    })
}

/// Exits with `code` `ms` after start, printing `stderr` first.
fn crash_timer(ms: u64, code: i32, stderr: Option<String>, rec: Recorder) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        if let Some(text) = stderr {
            eprintln!("{text}");
        }
        rec.event(&json!({"event": "crash", "code": code}));
        std::process::exit(code);
    });
}

/// Records `{"event":"count","n"}` at most every 100 ms while the count changes.
fn count_reporter(delivered: Arc<AtomicU64>, rec: Recorder) {
    std::thread::spawn(move || {
        let mut last = 0;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let n = delivered.load(Ordering::Relaxed);
            if n != last {
                last = n;
                rec.event(&json!({"event": "count", "n": n}));
            }
        }
    });
}
