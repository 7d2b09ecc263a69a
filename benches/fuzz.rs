//! The wire fuzzer: throws random and mutated wire lines at a real kernel for N seconds.
//!
//! ```text
//! cargo bench --bench fuzz -- [--seconds N] [--seed S] [--strict] [--keep] [--json]
//! ```
//!
//! It starts the release `pons` binary on a temporary home with four modules built on the Rust
//! SDK (`pons-test-module`): `fuzz`, whose stdout the fuzzer controls (`--relay`: every line the
//! fuzzer writes to a Unix socket goes to the kernel verbatim, between the module's own pongs
//! and acks), `echo` (provides the `echo` service, subscribes to `fuzz.*`, so fuzzed publishes and
//! RPCs are routed), and a canary pair that keeps publishing (`canary-pub` → `canary-sub`) and
//! calling `echo` during the attack, to count what the attack made the kernel lose. The inputs
//! (`fuzz/gen.rs`) are random bytes, random JSON, and valid and mutated messages of every type.
//! Security enforcement is `warn` (so a fuzzed publish outside the capabilities does not stop the
//! `fuzz` module; `--strict` keeps the default, and the fuzzer then restarts it whenever it is
//! stopped).
//!
//! Reported: inputs tried, kernel panics (lines `thread '…' panicked` in its stderr), whether it
//! is alive and answering `status` (every 500 ms during the run, and `pons status` at the end),
//! module restarts, canary messages lost and RPCs failed, kernel RSS before / peak (VmHWM) /
//! after. Exit code 1 when the kernel panicked, died or stopped answering.

#[allow(dead_code)] // the fuzzer uses part of the benchmark harness
#[path = "pons/harness.rs"]
mod harness;

#[path = "fuzz/gen.rs"]
mod gen;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{BenchHome, Kernel, Spec};
use serde_json::{json, Value};

const USAGE: &str = "usage: cargo bench --bench fuzz -- [--seconds N] [--seed S] [--only LIST] [--strict] [--keep] [--json]
  --seconds N   how long to fuzz (default 30)
  --seed S      seed of the input generator (default: from the clock; printed)
  --only LIST   only these inputs (comma-separated): bytes, json, valid, mutated, and message
                types (publish, rpc_request, rpc_response, log, log-group, ready, pong, ack,
                nack, call, call:response, unknown)
  --strict      keep `security.enforcementMode: strict` (the fuzz module is then stopped by
                every refused action and restarted by the fuzzer)
  --keep        keep the temporary home (kernel log, module records) and print its path
  --json        print the report as JSON on stdout (human output goes to stderr)
";

struct Opts {
    seconds: u64,
    seed: u64,
    mix: gen::Mix,
    only: Option<String>,
    strict: bool,
    keep: bool,
    json: bool,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        seconds: 30,
        seed: harness::now_us(),
        mix: gen::Mix::default(),
        only: None,
        strict: false,
        keep: false,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |name: &str| -> u64 {
            match args.next().map(|v| v.parse::<u64>()) {
                Some(Ok(n)) => n,
                _ => {
                    eprintln!("{name} needs a number\n{USAGE}");
                    std::process::exit(2);
                }
            }
        };
        match a.as_str() {
            "--seconds" => o.seconds = number("--seconds"),
            "--seed" => o.seed = number("--seed"),
            "--only" => {
                let list = args.next().unwrap_or_default();
                let names: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
                match gen::Mix::only(&names) {
                    Ok(m) => o.mix = m,
                    Err(e) => {
                        eprintln!("{e}\n{USAGE}");
                        std::process::exit(2);
                    }
                }
                o.only = Some(list);
            }
            "--strict" => o.strict = true,
            "--keep" => o.keep = true,
            "--json" => o.json = true,
            // Passed by `cargo bench`.
            "--bench" => {}
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown option {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    o
}

const MODULES: [&str; 4] = ["fuzz", "echo", "canary-pub", "canary-sub"];

fn specs() -> Vec<Spec> {
    vec![
        Spec::new(
            "fuzz",
            json!({"provides": ["fuzzsvc"], "subscribes": ["fuzz.back"],
                   "publishes": ["fuzz.*", "events"], "optionalRequires": ["echo"]}),
            &["--relay", "{bench}/fuzz.sock", "--echo"],
        ),
        Spec::new(
            "echo",
            json!({"provides": ["echo"], "subscribes": ["fuzz.*", "events"]}),
            &["--echo"],
        ),
        Spec::new(
            "canary-pub",
            json!({"publishes": ["canary"], "requires": ["echo"]}),
            &[
                "--control",
                "{bench}/canary.ctl",
                "--record",
                "{bench}/canary-pub.jsonl",
            ],
        ),
        Spec::new(
            "canary-sub",
            json!({"subscribes": ["canary"]}),
            &["--count-only", "--record", "{bench}/canary-sub.jsonl"],
        ),
    ]
}

/// What the monitor thread sees while the fuzzer writes.
#[derive(Default)]
struct Watch {
    stop: AtomicBool,
    status_ok: AtomicU64,
    status_failed: AtomicU64,
    status_max_ms: AtomicU64,
    rss_max_kib: AtomicU64,
    threads_max: AtomicU64,
    dead: AtomicBool,
}

/// Messages per canary burst, and the pause between bursts and RPCs.
const CANARY_BURST: u64 = 2_000;
const CANARY_EVERY: Duration = Duration::from_millis(500);

fn main() {
    let opts = parse_opts();
    let say = |s: &str| {
        if opts.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    say(&format!(
        "pons wire fuzz — {} s, seed {}, enforcement {}{}",
        opts.seconds,
        opts.seed,
        if opts.strict { "strict" } else { "warn" },
        opts.only
            .as_ref()
            .map(|o| format!(", only {o}"))
            .unwrap_or_default()
    ));

    let mut home = BenchHome::new();
    home.write_config(&format!(
        "security:\n  enforcementMode: {}\nlifecycle:\n  healthIntervalMs: 1000\n",
        if opts.strict { "strict" } else { "warn" }
    ));
    home.add_all(&specs());
    let listener = UnixListener::bind(home.file("fuzz.sock")).expect("bind the relay socket");
    listener
        .set_nonblocking(true)
        .expect("non-blocking relay socket");
    let mut kernel = home.start_kernel(&[]);
    if let Err(why) = wait_ready(
        &home.path().join("run/kernel.sock"),
        Duration::from_secs(60),
    ) {
        kernel.stop();
        let kept = home.dir.keep();
        eprintln!(
            "the modules did not all become ready: {why}\nhome kept: {}",
            kept.display()
        );
        std::process::exit(1);
    }
    let pid = kernel.pid();
    std::thread::sleep(Duration::from_millis(300));
    let (rss_before, _) = harness::proc_rss_kib(pid);
    let threads_before = threads(pid);
    say(&format!(
        "kernel pid {pid}, {} modules ready, VmRSS {:.1} MiB",
        MODULES.len(),
        mib(rss_before)
    ));

    let watch = Arc::new(Watch::default());
    let monitor = {
        let (watch, home_dir, socket) = (
            watch.clone(),
            home.path().to_path_buf(),
            home.path().join("run/kernel.sock"),
        );
        std::thread::spawn(move || monitor(pid, &socket, &home_dir, &watch))
    };

    let fuzz = run_fuzz(&opts, &listener, &home, &watch);
    watch.stop.store(true, Ordering::Release);
    let _ = monitor.join();
    say(&format!(
        "fuzzing done: {} inputs in {:.1} s",
        fuzz.inputs, fuzz.seconds
    ));

    let before = (rss_before, threads_before);
    let report = finish(&opts, &home, &kernel, &fuzz, &watch, before);
    drop(kernel);
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json).expect("json")
        );
    }
    for line in &report.lines {
        say(line);
    }
    if !report.ok {
        let dump: Vec<u8> = fuzz
            .recent
            .iter()
            .flat_map(|l| l.iter().chain(b"\n"))
            .copied()
            .collect();
        let _ = std::fs::write(home.file("fuzz-last-inputs.txt"), dump);
    }
    if opts.keep || !report.ok {
        let kept = home.dir.keep();
        say(&format!("home kept: {}", kept.display()));
    }
    if !report.ok {
        std::process::exit(1);
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What the writer did.
#[derive(Default)]
struct Fuzzed {
    /// How long it fuzzed (shorter than asked when the kernel died).
    seconds: f64,
    inputs: u64,
    bytes: u64,
    by_kind: BTreeMap<gen::Kind, u64>,
    /// Connections the relay made (1 + the fuzz module's restarts, as far as they reconnected).
    connections: u64,
    /// Writes that did not finish within the write timeout (the kernel stopped reading).
    stalls: u64,
    /// Times the fuzzer restarted the fuzz module (stopped or crashed for good).
    revived: u64,
    /// The last inputs written (for a post-mortem when the kernel failed).
    recent: Vec<Vec<u8>>,
}

/// Writes batches of inputs to the relay for `opts.seconds`.
fn run_fuzz(opts: &Opts, listener: &UnixListener, home: &BenchHome, watch: &Watch) -> Fuzzed {
    let mut rng = gen::Rng::new(opts.seed);
    let mut out = Fuzzed::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.seconds);
    let socket = home.path().join("run/kernel.sock");
    let mut conn: Option<UnixStream> = None;
    let mut waiting_since = Instant::now();
    // The last inputs written, kept for a post-mortem when the kernel dies.
    let mut recent: std::collections::VecDeque<Vec<u8>> = Default::default();
    let mut batch = Vec::with_capacity(1 << 20);
    let mut kinds = Vec::new();
    while Instant::now() < deadline && !watch.dead.load(Ordering::Acquire) {
        let Some(c) = conn.as_mut() else {
            match listener.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                    conn = Some(s);
                    out.connections += 1;
                }
                Err(_) => {
                    if waiting_since.elapsed() > Duration::from_millis(500) {
                        // Stopped (a refused action under strict) or crashed for good: revive.
                        let st =
                            control(&socket, json!({"cmd": "module.status", "moduleId": "fuzz"}));
                        let status = st.as_ref().and_then(|d| d["status"].as_str()).unwrap_or("");
                        if matches!(status, "stopped" | "crashed") {
                            let _ = control(
                                &socket,
                                json!({"cmd": "module.restart", "moduleId": "fuzz"}),
                            );
                            out.revived += 1;
                        }
                        waiting_since = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            continue;
        };
        batch.clear();
        kinds.clear();
        while batch.len() < 64 << 10 && kinds.len() < 64 {
            let (kind, line) = gen::input(&mut rng, &opts.mix);
            batch.extend_from_slice(&line);
            batch.push(b'\n');
            kinds.push(kind);
            if recent.len() == 64 {
                recent.pop_front();
            }
            recent.push_back(line);
        }
        match c.write_all(&batch) {
            Ok(()) => {
                out.inputs += kinds.len() as u64;
                out.bytes += batch.len() as u64;
                for k in &kinds {
                    *out.by_kind.entry(*k).or_default() += 1;
                }
            }
            Err(e) => {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    out.stalls += 1;
                }
                conn = None;
                waiting_since = Instant::now();
            }
        }
    }
    out.recent = recent.into();
    out.seconds = started.elapsed().as_secs_f64();
    out
}

/// Every 500 ms: kernel alive, `status` answered (and how fast), RSS; canary traffic.
fn monitor(pid: i32, socket: &Path, home: &Path, w: &Watch) {
    let ctl = home.join("bench/canary.ctl");
    let mut n = 0u64;
    while !w.stop.load(Ordering::Acquire) {
        if !alive(pid) {
            w.dead.store(true, Ordering::Release);
            return;
        }
        let (rss, _) = harness::proc_rss_kib(pid);
        w.rss_max_kib.fetch_max(rss, Ordering::Relaxed);
        w.threads_max.fetch_max(threads(pid), Ordering::Relaxed);
        let t = Instant::now();
        match control(socket, json!({"cmd": "status"})) {
            Some(_) => {
                w.status_ok.fetch_add(1, Ordering::Relaxed);
                w.status_max_ms
                    .fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            None => {
                w.status_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        n += 1;
        let cmds = [
            json!({"burst": {"topic": "canary", "count": CANARY_BURST, "bytes": 64}}),
            json!({"rpc": {"service": "echo", "method": "canary", "params": {"n": n}}}),
        ];
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ctl)
        {
            let text: String = cmds.iter().map(|c| format!("{c}\n")).collect();
            let _ = f.write_all(text.as_bytes());
        }
        std::thread::sleep(CANARY_EVERY.saturating_sub(t.elapsed()));
    }
}

/// Waits until every module of [`MODULES`] is ready; else the last statuses seen.
fn wait_ready(socket: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer from the control socket");
    while Instant::now() < deadline {
        if let Some(st) = control(socket, json!({"cmd": "status"})) {
            let mods = st["modules"].as_array().cloned().unwrap_or_default();
            let ready = |id: &str| mods.iter().any(|m| m["id"] == id && m["status"] == "ready");
            if MODULES.iter().all(|id| ready(id)) {
                return Ok(());
            }
            last = mods
                .iter()
                .map(|m| format!("{} {} {}", m["id"], m["status"], m["reason"]))
                .collect::<Vec<_>>()
                .join("; ");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(last)
}

/// Number of threads of `pid` (0 when unreadable).
fn threads(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("State:"))
                .is_some_and(|st| !st.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// One control-socket request (`{"cmd":…}` plus fields); its `data` when `ok`, `None` on any
/// failure (10 s timeout).
fn control(socket: &Path, req: Value) -> Option<Value> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(10))).ok()?;
    writeln!(s, "{req}").ok()?;
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let v: Value = serde_json::from_str(&line).ok()?;
        match v.get("ok").and_then(Value::as_bool) {
            Some(true) => return Some(v.get("data").cloned().unwrap_or(Value::Null)),
            Some(false) => return None,
            None => continue, // progress lines
        }
    }
}

/// The JSON lines of a record file.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// (published, delivered, RPCs answered, RPCs failed) of the canary pair.
fn canary(home: &BenchHome) -> (u64, u64, u64, u64) {
    let pub_rec = records(&home.file("canary-pub.jsonl"));
    let published = pub_rec
        .iter()
        .filter(|e| e["event"] == "publish_done" && e.get("error").is_none())
        .filter_map(|e| e["count"].as_u64())
        .sum();
    let rpc = |ok: bool| {
        pub_rec
            .iter()
            .filter(|e| e["event"] == "rpc_result" && e.get("result").is_some() == ok)
            .count() as u64
    };
    let delivered = records(&home.file("canary-sub.jsonl"))
        .iter()
        .filter(|e| e["event"] == "count")
        .filter_map(|e| e["n"].as_u64())
        .max()
        .unwrap_or(0);
    (published, delivered, rpc(true), rpc(false))
}

/// Lines of the kernel's stderr that are a panic of the kernel (the panic hook's
/// `thread '…' panicked at …`), and other lines mentioning `panicked` (a module's stderr, logged
/// by the kernel).
fn panics(stderr: &Path) -> (Vec<String>, u64) {
    let Ok(f) = std::fs::File::open(stderr) else {
        return (Vec::new(), 0);
    };
    let mut kernel = Vec::new();
    let mut other = 0;
    let mut r = BufReader::new(f);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !line.windows(8).any(|w| w == b"panicked") {
            continue;
        }
        if line.starts_with(b"thread '") {
            kernel.push(String::from_utf8_lossy(&line).trim_end().to_string());
        } else {
            other += 1;
        }
    }
    (kernel, other)
}

/// `pons status --json --home H`: the CLI's answer (exit status 0, JSON, and from a running
/// kernel: without one the CLI answers from the files).
fn cli_status(home: &Path) -> Option<Value> {
    let out = std::process::Command::new(harness::pons_bin())
        .args(["status", "--json", "--home"])
        .arg(home)
        .env_remove("PONS_HOME")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    (v["kernel"]["running"] == true).then_some(v)
}

struct Report {
    ok: bool,
    lines: Vec<String>,
    json: Value,
}

fn finish(
    opts: &Opts,
    home: &BenchHome,
    kernel: &Kernel,
    fuzz: &Fuzzed,
    w: &Watch,
    (rss_before, threads_before): (u64, u64),
) -> Report {
    let pid = kernel.pid();
    // Let the canary drain: everything published must arrive.
    let drain = Instant::now() + Duration::from_secs(30);
    let mut c = canary(home);
    while c.1 < c.0 && Instant::now() < drain && alive(pid) {
        std::thread::sleep(Duration::from_millis(100));
        c = canary(home);
    }
    // Then until the kernel is idle again: work queued by the attack done, the extra threads
    // it started (tokio's blocking pool keeps idle threads for 10 s) gone.
    let idle = Instant::now() + Duration::from_secs(20);
    while threads(pid) > threads_before + 2 && Instant::now() < idle && alive(pid) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (rss_after, hwm) = harness::proc_rss_kib(pid);
    let threads_after = threads(pid);
    let alive_now = alive(pid);
    let status = cli_status(home.path());
    let (kernel_panics, module_panics) = panics(&home.kernel_stderr());
    let restarts: BTreeMap<String, u64> = status
        .as_ref()
        .and_then(|s| s["modules"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| Some((m["id"].as_str()?.to_string(), m["restarts"].as_u64()?)))
        .collect();
    let statuses: BTreeMap<String, String> = status
        .as_ref()
        .and_then(|s| s["modules"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            Some((
                m["id"].as_str()?.to_string(),
                m["status"].as_str()?.to_string(),
            ))
        })
        .collect();
    let (published, delivered, rpc_ok, rpc_failed) = c;
    let lost = published.saturating_sub(delivered);
    let status_failed = w.status_failed.load(Ordering::Relaxed);
    let faults = kernel_panics.len() as u64
        + u64::from(!alive_now || w.dead.load(Ordering::Relaxed))
        + u64::from(status.is_none())
        + status_failed;
    let ok = kernel_panics.is_empty() && alive_now && status.is_some();
    let peak = hwm.max(w.rss_max_kib.load(Ordering::Relaxed));

    let kinds: Vec<String> = gen::Kind::ALL
        .iter()
        .map(|k| format!("{} {}", fuzz.by_kind.get(k).copied().unwrap_or(0), k.name()))
        .collect();
    let mut lines = vec![
        String::new(),
        format!(
            "inputs tried: {} in {:.1} s ({:.0}/s; {}), {:.1} MiB",
            fuzz.inputs,
            fuzz.seconds,
            fuzz.inputs as f64 / fuzz.seconds.max(0.001),
            kinds.join(", "),
            fuzz.bytes as f64 / (1 << 20) as f64
        ),
        format!(
            "kernel panics: {}{}",
            kernel_panics.len(),
            kernel_panics
                .first()
                .map(|p| format!(" (first: {p})"))
                .unwrap_or_default()
        ),
        format!(
            "kernel alive: {}; `status` answered {} of {} checks during the run (slowest {} ms); `pons status` at the end: {}",
            if alive_now { "yes" } else { "NO" },
            w.status_ok.load(Ordering::Relaxed),
            w.status_ok.load(Ordering::Relaxed) + status_failed,
            w.status_max_ms.load(Ordering::Relaxed),
            if status.is_some() { "answered" } else { "NO ANSWER" }
        ),
        format!(
            "module restarts: {}; statuses: {}; fuzz relay connections {}, writes stalled {}, fuzz module revived {}",
            restarts
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            statuses
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            fuzz.connections,
            fuzz.stalls,
            fuzz.revived
        ),
        format!(
            "canary: {published} published, {delivered} delivered, {lost} lost; RPCs {rpc_ok} answered, {rpc_failed} failed"
        ),
        format!(
            "kernel RSS: before {:.1} MiB, peak (VmHWM) {:.1} MiB, after {} (once idle); threads before {threads_before}, peak {}, after {}",
            mib(rss_before),
            mib(peak),
            if alive_now { format!("{:.1} MiB", mib(rss_after)) } else { "— (dead)".into() },
            w.threads_max.load(Ordering::Relaxed),
            if alive_now { threads_after.to_string() } else { "—".into() },
        ),
    ];
    if module_panics > 0 {
        lines.push(format!(
            "note: {module_panics} line(s) of module stderr mention `panicked`"
        ));
    }
    lines.push(if ok {
        format!("faults: {faults}")
    } else {
        format!("FAILED: faults {faults}; the last inputs are in bench/fuzz-last-inputs.txt")
    });
    let json = json!({
        "seconds": fuzz.seconds,
        "seed": opts.seed,
        "strict": opts.strict,
        "only": opts.only,
        "inputs": fuzz.inputs,
        "bytes": fuzz.bytes,
        "byKind": gen::Kind::ALL.iter().map(|k| (k.name().to_string(), json!(fuzz.by_kind.get(k).copied().unwrap_or(0)))).collect::<serde_json::Map<_, _>>(),
        "kernelPanics": kernel_panics,
        "kernelAlive": alive_now,
        "statusChecks": {"answered": w.status_ok.load(Ordering::Relaxed), "failed": status_failed,
                          "slowestMs": w.status_max_ms.load(Ordering::Relaxed)},
        "ponsStatus": status.is_some(),
        "restarts": restarts,
        "statuses": statuses,
        "relayConnections": fuzz.connections,
        "writesStalled": fuzz.stalls,
        "fuzzRevived": fuzz.revived,
        "canary": {"published": published, "delivered": delivered, "lost": lost,
                   "rpcAnswered": rpc_ok, "rpcFailed": rpc_failed},
        "rssKiB": {"before": rss_before, "peak": peak, "after": rss_after},
        "threads": {"before": threads_before, "peak": w.threads_max.load(Ordering::Relaxed),
                    "after": threads_after},
        "faults": faults,
        "ok": ok,
    });
    Report { ok, lines, json }
}
