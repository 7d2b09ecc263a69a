//! Command-line flags of the test module. Every flag takes `--flag value` or `--flag=value`;
//! an unknown flag or a bad value is an error (exit code 2).

use serde_json::Value;

use crate::bench::BenchRpc;

pub const USAGE: &str = "\
usage: pons-test-module [FLAGS]
  --record FILE                 append one JSON line per event to FILE
  --never-ready                 never send ready
  --ready-delay-ms N            send ready N ms after init
  --manifest JSON               manifest sent in ready (default {})
  --crash-after-ms N            exit N ms after start (with --exit-code C, default 1,
                                and --stderr TEXT printed first)
  --exit-code C
  --stderr TEXT
  --ignore-ping                 never answer ping
  --ignore-shutdown             do not exit on shutdown / stdin close; ignore SIGTERM
  --echo                        answer rpc_request and call with {echo,method,from}
  --slow-rpc-ms N               answer requests after N ms
  --no-reply                    never answer requests
  --answer-on-shutdown          hold requests; answer them (as --echo) from the shutdown handler
  --shutdown-log TEXT           log TEXT (info) from the shutdown handler
  --no-ack                      do not ack deliveries
  --rpc-timeout-ms N            timeout of the module's own RPCs and calls
  --publish TOPIC:COUNT[:BYTES] after deps_ready publish COUNT {seq,pad} messages (repeatable)
  --rpc SERVICE:METHOD:JSON     after deps_ready make this RPC (repeatable)
  --call METHOD:JSON            after init, before ready, make this kernel call (repeatable)
  --call-after-ready METHOD:JSON  the same after deps_ready (repeatable)
  --garbage                     write invalid lines and an 11 MiB line to stdout first
  --grandchild                  spawn `sleep 1000` and record its pid
  --setsid-grandchild           spawn `sleep 1000` in a session of its own (setsid) and record
                                its pid
  --daemon-grandchild           double-fork a daemon (`sleep 1000`: setsid, fork, the middle
                                process exits) and record its pid
  --try-read PATH | --try-write PATH | --try-env VAR | --try-open-files N | --try-exec PATH
  | --try-mknod PATH | --try-open PATH
                                probe at start and record the outcome (repeatable)
  --report-caps                 record the Cap*, NoNewPrivs and Uid lines of /proc/self/status
  --stop-reading                after deps_ready stop reading stdin, stay alive
  --control FILE                poll FILE every 10 ms for JSON command lines
  --count-only                  count deliveries instead of recording each one
  --no-recv                     record no `recv` events (floods of replies)
  --bench-out FILE              append timing records (JSON lines with t_us) to FILE:
                                ready sent, config:update received, bench results
  --bench-rpc SERVICE:N[:BYTES] after deps_ready make N timed sequential RPCs (method echo,
                                params {pad}) and record latency percentiles
  --bench-now                   start --bench-rpc at once instead of after deps_ready
  --bench-expect N              record the receive times of every group of N deliveries
  --relay PATH                  after deps_ready copy raw lines from the Unix socket PATH to
                                stdout (reconnecting when it closes): the wire fuzzer's door
";

/// A burst to publish after `deps_ready`.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    pub topic: String,
    pub count: u64,
    pub pad: usize,
}

/// An RPC to make after `deps_ready`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rpc {
    pub service: String,
    pub method: String,
    pub params: Value,
}

/// A kernel call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    pub params: Value,
}

/// A start-up probe for sandbox tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Read(String),
    Write(String),
    Env(String),
    OpenFiles(u64),
    Exec(String),
    /// Open (read-only, non-blocking) and close, without reading.
    Open(String),
    /// Create a character device node (1:3, what /dev/null is) at the path.
    Mknod(String),
    /// Record the capability sets of the process.
    Caps,
}

/// Everything the flags ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Opts {
    pub record: Option<String>,
    pub never_ready: bool,
    pub ready_delay_ms: u64,
    pub manifest: Option<Value>,
    pub crash_after_ms: Option<u64>,
    pub exit_code: i32,
    pub stderr: Option<String>,
    pub ignore_ping: bool,
    pub ignore_shutdown: bool,
    pub echo: bool,
    pub slow_rpc_ms: u64,
    pub no_reply: bool,
    pub answer_on_shutdown: bool,
    pub shutdown_log: Option<String>,
    pub no_ack: bool,
    pub rpc_timeout_ms: Option<u64>,
    pub publish: Vec<Burst>,
    pub rpc: Vec<Rpc>,
    pub call: Vec<Call>,
    pub call_after_ready: Vec<Call>,
    pub garbage: bool,
    pub grandchild: bool,
    pub setsid_grandchild: bool,
    pub daemon_grandchild: bool,
    pub probes: Vec<Probe>,
    pub stop_reading: bool,
    pub control: Option<String>,
    pub count_only: bool,
    pub no_recv: bool,
    pub bench_out: Option<String>,
    pub bench_rpc: Option<BenchRpc>,
    pub bench_now: bool,
    pub bench_expect: u64,
    pub relay: Option<String>,
    pub help: bool,
}

/// Parses the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        exit_code: 1,
        ..Opts::default()
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag {flag} needs a value")),
            }
        };
        match flag {
            "--record" => o.record = Some(value()?),
            "--never-ready" => o.never_ready = true,
            "--ready-delay-ms" => o.ready_delay_ms = number(flag, &value()?)?,
            "--manifest" => o.manifest = Some(json(flag, &value()?)?),
            "--crash-after-ms" => o.crash_after_ms = Some(number(flag, &value()?)?),
            "--exit-code" => o.exit_code = number(flag, &value()?)?,
            "--stderr" => o.stderr = Some(value()?),
            "--ignore-ping" => o.ignore_ping = true,
            "--ignore-shutdown" => o.ignore_shutdown = true,
            "--echo" => o.echo = true,
            "--slow-rpc-ms" => o.slow_rpc_ms = number(flag, &value()?)?,
            "--no-reply" => o.no_reply = true,
            "--answer-on-shutdown" => o.answer_on_shutdown = true,
            "--shutdown-log" => o.shutdown_log = Some(value()?),
            "--no-ack" => o.no_ack = true,
            "--rpc-timeout-ms" => o.rpc_timeout_ms = Some(number(flag, &value()?)?),
            "--publish" => o.publish.push(burst(&value()?)?),
            "--rpc" => o.rpc.push(rpc(&value()?)?),
            "--call" => o.call.push(call(flag, &value()?)?),
            "--call-after-ready" => o.call_after_ready.push(call(flag, &value()?)?),
            "--garbage" => o.garbage = true,
            "--grandchild" => o.grandchild = true,
            "--setsid-grandchild" => o.setsid_grandchild = true,
            "--daemon-grandchild" => o.daemon_grandchild = true,
            "--try-mknod" => o.probes.push(Probe::Mknod(value()?)),
            "--try-open" => o.probes.push(Probe::Open(value()?)),
            "--report-caps" => o.probes.push(Probe::Caps),
            "--try-read" => o.probes.push(Probe::Read(value()?)),
            "--try-write" => o.probes.push(Probe::Write(value()?)),
            "--try-env" => o.probes.push(Probe::Env(value()?)),
            "--try-open-files" => o.probes.push(Probe::OpenFiles(number(flag, &value()?)?)),
            "--try-exec" => o.probes.push(Probe::Exec(value()?)),
            "--stop-reading" => o.stop_reading = true,
            "--control" => o.control = Some(value()?),
            "--count-only" => o.count_only = true,
            "--no-recv" => o.no_recv = true,
            "--bench-out" => o.bench_out = Some(value()?),
            "--bench-rpc" => o.bench_rpc = Some(bench_rpc(&value()?)?),
            "--bench-now" => o.bench_now = true,
            "--bench-expect" => o.bench_expect = number(flag, &value()?)?,
            "--relay" => o.relay = Some(value()?),
            "--help" | "-h" => o.help = true,
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    Ok(o)
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("flag {flag} needs a number, got {v:?}"))
}

fn json(flag: &str, v: &str) -> Result<Value, String> {
    serde_json::from_str(v).map_err(|e| format!("flag {flag} needs JSON, got {v:?}: {e}"))
}

fn burst(v: &str) -> Result<Burst, String> {
    let mut parts = v.splitn(3, ':');
    let (Some(topic), Some(count)) = (parts.next(), parts.next()) else {
        return Err(format!("--publish needs TOPIC:COUNT[:BYTES], got {v:?}"));
    };
    Ok(Burst {
        topic: topic.to_owned(),
        count: number("--publish", count)?,
        pad: match parts.next() {
            Some(b) => number("--publish", b)?,
            None => 0,
        },
    })
}

fn bench_rpc(v: &str) -> Result<BenchRpc, String> {
    let mut parts = v.splitn(3, ':');
    let (Some(service), Some(count)) = (parts.next(), parts.next()) else {
        return Err(format!("--bench-rpc needs SERVICE:N[:BYTES], got {v:?}"));
    };
    Ok(BenchRpc {
        service: service.to_owned(),
        count: number("--bench-rpc", count)?,
        pad: match parts.next() {
            Some(b) => number("--bench-rpc", b)?,
            None => 0,
        },
    })
}

fn rpc(v: &str) -> Result<Rpc, String> {
    let mut parts = v.splitn(3, ':');
    let (Some(service), Some(method), Some(params)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("--rpc needs SERVICE:METHOD:JSON, got {v:?}"));
    };
    Ok(Rpc {
        service: service.to_owned(),
        method: method.to_owned(),
        params: json("--rpc", params)?,
    })
}

fn call(flag: &str, v: &str) -> Result<Call, String> {
    let Some((method, params)) = v.split_once(':') else {
        return Err(format!("{flag} needs METHOD:JSON, got {v:?}"));
    };
    Ok(Call {
        method: method.to_owned(),
        params: json(flag, params)?,
    })
}

/// Arguments from `test-module.args` (a JSON array of strings) in the executable's directory;
/// empty when there is no such file.
pub fn from_file_beside_exe() -> Vec<String> {
    let Ok(exe) = std::env::current_exe() else {
        return Vec::new();
    };
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    match std::fs::read(dir.join("test-module.args")) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_values_and_repeats() {
        let o = parse(&args(&[
            "--record",
            "/tmp/r",
            "--publish=t:10:128",
            "--publish",
            "u:2",
            "--rpc",
            "svc:m:{\"a\":\"x:y\"}",
            "--call",
            "config.get:{\"key\":\"k\"}",
            "--try-open-files",
            "5",
            "--try-mknod=/tmp/n",
            "--try-open",
            "/proc/1/fd/0",
            "--report-caps",
            "--setsid-grandchild",
            "--daemon-grandchild",
            "--exit-code=3",
        ]))
        .unwrap();
        assert!(o.setsid_grandchild && o.daemon_grandchild && !o.grandchild);
        assert_eq!(o.record.as_deref(), Some("/tmp/r"));
        assert_eq!(
            o.publish[0],
            Burst {
                topic: "t".into(),
                count: 10,
                pad: 128
            }
        );
        assert_eq!(o.publish[1].pad, 0);
        assert_eq!(o.rpc[0].params, json!({"a":"x:y"}));
        assert_eq!(o.call[0].method, "config.get");
        assert_eq!(
            o.probes,
            [
                Probe::OpenFiles(5),
                Probe::Mknod("/tmp/n".into()),
                Probe::Open("/proc/1/fd/0".into()),
                Probe::Caps
            ]
        );
        assert_eq!(o.exit_code, 3);
    }

    #[test]
    fn parses_bench_flags() {
        let o = parse(&args(&[
            "--bench-out",
            "/tmp/b",
            "--bench-rpc=svc:100:16",
            "--bench-now",
            "--bench-expect",
            "5",
        ]))
        .unwrap();
        assert_eq!(o.bench_out.as_deref(), Some("/tmp/b"));
        assert_eq!(
            o.bench_rpc,
            Some(BenchRpc {
                service: "svc".into(),
                count: 100,
                pad: 16
            })
        );
        assert!(o.bench_now);
        assert_eq!(o.bench_expect, 5);
        let o = parse(&args(&["--relay=/tmp/fuzz.sock"])).unwrap();
        assert_eq!(o.relay.as_deref(), Some("/tmp/fuzz.sock"));
        assert!(parse(&args(&["--bench-rpc", "svc"])).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(&args(&["--bogus"]))
            .unwrap_err()
            .contains("unknown flag --bogus"));
        assert!(parse(&args(&["--record"])).is_err());
        assert!(parse(&args(&["--slow-rpc-ms", "x"])).is_err());
        assert!(parse(&args(&["--rpc", "svc:m"])).is_err());
        assert!(parse(&args(&["--call", "m:{bad"])).is_err());
        assert_eq!(parse(&[]).unwrap().exit_code, 1);
    }
}
