//! Scale: 1,000 trivial modules (`pons-test-module` without flags) on one kernel started with the
//! usual soft limit of 1,024 descriptors — they all start and get ready, `pons status` lists each
//! ready, once started, with its process alive; modules keep the soft limit the kernel was given
//! while the kernel raised its own; and stopping the kernel leaves no module process, no watchdog
//! and nothing of the kernel's in `run/` behind. And an idle kernel sleeps: with no health ping
//! due, its threads are woken a handful of times in seconds, not per tick and module; once
//! settled, it no longer holds the code its start-up ran.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const MODULES: usize = 1000;
/// The soft RLIMIT_NOFILE the kernel is started with (a common default): far below what 1,000
/// modules need (three pipes each), so the kernel must raise its own.
const SOFT_NOFILE: u64 = 1024;

/// Writes `n` trivial modules (no arguments: no record file, no control file to poll) and a
/// permissions.yaml approving them, in one go, as already installed (no `install`, and no
/// rewrite of permissions.yaml — with the pass it triggers — once they start).
fn trivial_modules(home: &TestHome, n: usize) {
    let bin = test_module_bin();
    let mut perms = String::from("modules:\n");
    for i in 0..n {
        let id = format!("m{i:04}");
        let dir = home.path().join("modules").join(&id);
        std::fs::create_dir_all(&dir).expect("module dir");
        let entry = dir.join("test-module");
        if std::fs::hard_link(&bin, &entry).is_err() {
            std::fs::copy(&bin, &entry).expect("copy test module");
        }
        std::fs::write(dir.join("test-module.args"), "[]").expect("args");
        let manifest = serde_json::to_vec_pretty(&json!({
            "id": id,
            "name": format!("trivial module {id}"),
            "version": "0.0.1",
            "runtime": "binary",
            "entrypoint": "test-module",
            "permissions": {},
        }))
        .expect("manifest json");
        std::fs::write(dir.join("module.json"), &manifest).expect("module.json");
        let hash = pons_reconciler::manifest::hash(&manifest);
        perms.push_str(&format!(
            "  {id}:\n    base:\n      net: []\n      read: []\n      write: []\n      env: []\n      \
             run: []\n      sys: []\n    baseManifestHash: {hash}\n    \
             baseGrantedAt: 2026-01-01T00:00:00.000Z\n    dynamic: []\n    pending: []\n    \
             denied: []\n    capabilities: {{\"topics\":[],\"services\":[]}}\n    \
             firstSpawnAt: 2026-01-01T00:00:00.000Z\n"
        ));
    }
    write_atomic(&home.path().join("permissions.yaml"), perms.as_bytes());
}

/// Starts the kernel with its soft RLIMIT_NOFILE lowered to [`SOFT_NOFILE`].
fn start_with_low_nofile(home: &TestHome) -> KernelProc {
    let log = std::fs::File::create(home.path().join("kernel.stderr")).expect("log file");
    let mut cmd = Command::new(pons_bin());
    cmd.args(["kernel", "start", "--home"])
        .arg(home.path())
        .env_remove("PONS_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: getrlimit/setrlimit are async-signal-safe and touch only the child.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim.rlim_cur = lim.rlim_cur.min(SOFT_NOFILE);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start kernel");
    let k = KernelProc {
        child: Some(child),
        home: home.path().to_path_buf(),
    };
    wait_for("kernel control socket", Duration::from_secs(20), || {
        home.path().join("run/kernel.sock").exists().then_some(())
    });
    k
}

/// `Max open files` of a process: (soft, hard), from /proc/<pid>/limits.
fn nofile(pid: i64) -> Option<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line["Max open files".len()..].split_whitespace();
    Some((f.next()?.to_string(), f.next()?.to_string()))
}

/// Pids of the live processes whose parent is `ppid`.
fn children_of(ppid: i64) -> Vec<i64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i64>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let parent = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i64>().ok());
        if parent == Some(ppid) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_thousand_modules_start_run_and_stop_cleanly() {
    let home = TestHome::new();
    // Shutdown: the modules exit on `shutdown` at once; the grace only bounds a stuck one.
    home.write_config("lifecycle:\n  shutdownGraceMs: 5000\n  readyTimeoutMs: 120000\n");
    trivial_modules(&home, MODULES);
    let t0 = Instant::now();
    let mut k = start_with_low_nofile(&home);
    let kernel = k.pid() as i64;

    // `pons status` of 1,000 modules is not free: asked twice a second, not in a tight loop.
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        let st = home.status();
        let mods = st["modules"].as_array().cloned().unwrap_or_default();
        if let Some(bad) = mods
            .iter()
            .find(|m| !matches!(m["status"].as_str(), Some("ready" | "starting")))
        {
            panic!("a module is neither starting nor ready: {bad}");
        }
        let ready = mods.iter().filter(|m| m["status"] == "ready").count();
        if mods.len() == MODULES && ready == MODULES {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} of {MODULES} modules ready after 180 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "{MODULES} modules ready {:.1} s after the kernel started",
        t0.elapsed().as_secs_f64()
    );

    let (k_soft, k_hard) = nofile(kernel).expect("kernel limits");
    assert_eq!(
        k_soft, k_hard,
        "the kernel raised its soft descriptor limit"
    );
    let mut pids = Vec::with_capacity(MODULES);
    for m in status["modules"].as_array().expect("modules") {
        assert_eq!(m["restarts"].as_u64(), Some(0), "{m}");
        let pid = m["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {m}"));
        assert!(alive(pid), "{m}");
        pids.push(pid);
    }
    // Modules start with the soft limit the kernel was given, not the one it raised.
    for &pid in pids.iter().step_by(97) {
        let (soft, hard) = nofile(pid).expect("module limits");
        assert_eq!(soft, SOFT_NOFILE.to_string(), "module {pid}");
        assert_eq!(hard, k_hard, "module {pid}");
    }
    let watchdogs: Vec<i64> = children_of(kernel)
        .into_iter()
        .filter(|p| !pids.contains(p))
        .collect();
    assert_eq!(watchdogs.len(), 1, "one watchdog beside the modules");
    assert!(
        !home.kernel_log().contains("exited unexpectedly"),
        "a module failed"
    );

    let t1 = Instant::now();
    let exit = k.stop();
    assert!(exit.success(), "kernel exit: {exit:?}");
    eprintln!(
        "{MODULES} modules stopped in {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    let survivors: Vec<i64> = pids
        .iter()
        .copied()
        .chain(watchdogs)
        .filter(|&p| alive(p))
        .collect();
    assert!(survivors.is_empty(), "still alive: {survivors:?}");
    for left in ["run/kernel.sock", ".runtime/kernel.pid"] {
        assert!(!home.path().join(left).exists(), "{left} left behind");
    }
    let log = std::fs::read_to_string(home.path().join("kernel.stderr")).unwrap_or_default();
    assert_eq!(
        log.matches("module.killed").count(),
        MODULES,
        "every module stopped once"
    );
    assert!(log.contains("kernel stopped"), "{log}");
}

/// Context switches of every thread of `pid` (voluntary and not), by thread id.
fn switches(pid: i64) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        let n: u64 = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        out.insert(t.file_name().to_string_lossy().into_owned(), n);
    }
    out
}

#[test]
fn an_idle_kernel_sleeps() {
    const N: usize = 50;
    let home = TestHome::new();
    // No health ping falls in the window measured; everything else is what runs by default.
    home.write_config("lifecycle:\n  healthIntervalMs: 600000\n");
    trivial_modules(&home, N);
    let k = home.start();
    let kernel = k.pid() as i64;
    wait_for("50 modules ready", Duration::from_secs(60), || {
        let st = home.status();
        let mods = st["modules"].as_array()?.clone();
        (mods.len() == N && mods.iter().all(|m| m["status"] == "ready")).then_some(())
    });
    // Wait for the boot to settle (the first spawns recorded, the pass's blocking threads idle):
    // half a second in which no thread of the kernel was switched in.
    wait_for("the kernel idle for 0.5 s", Duration::from_secs(30), || {
        let a = switches(kernel);
        std::thread::sleep(Duration::from_millis(500));
        (switches(kernel) == a).then_some(())
    });
    let before = switches(kernel);
    std::thread::sleep(Duration::from_secs(5));
    let after = switches(kernel);
    let woken: u64 = after
        .iter()
        .map(|(t, n)| n - before.get(t).copied().unwrap_or(0).min(*n))
        .sum();
    eprintln!("idle kernel with {N} modules: {woken} context switches in 5 s");
    // A tick anywhere (25 ms watcher, 50 ms RPC timeouts, a check per module each second) is
    // hundreds here; what remains is the watcher's rescan (every 3 s) and stray wake-ups.
    assert!(
        woken <= 20,
        "an idle kernel woke {woken} times in 5 s: {before:?} → {after:?}"
    );
}

/// Resident KiB of the code mappings (`r-xp`) of `pid`'s executable.
fn resident_code_kib(pid: i64) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?.ino();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (mut in_code, mut kib) = (false, 0);
    for line in smaps.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        match f.as_slice() {
            ["Rss:", n, ..] if in_code => kib += n.parse::<u64>().ok()?,
            [range, perms, _, _, inode, ..] if range.contains('-') && !range.ends_with(':') => {
                in_code = *perms == "r-xp" && inode.parse::<u64>().ok() == Some(ino);
            }
            _ => {}
        }
    }
    Some(kib)
}

#[test]
fn a_settled_kernel_releases_its_start_up_code() {
    let home = TestHome::new();
    trivial_modules(&home, 10);
    let k = home.start();
    let kernel = k.pid() as i64;
    // The code the start-up ran stays mapped until the kernel has been quiet for a second:
    // watched from the start, its peak is seen.
    let mut peak = 0;
    wait_for("10 modules ready", Duration::from_secs(60), || {
        peak = peak.max(resident_code_kib(kernel).unwrap_or(0));
        let st = home.status();
        let mods = st["modules"].as_array()?.clone();
        (mods.len() == 10 && mods.iter().all(|m| m["status"] == "ready")).then_some(())
    });
    assert!(peak > 0, "the kernel's code mappings were read");
    let settled = wait_for(
        "the start-up code released",
        Duration::from_secs(30),
        || {
            let now = resident_code_kib(kernel)?;
            (now < peak / 2).then_some(now)
        },
    );
    eprintln!("kernel's resident code: {peak} KiB at start-up, {settled} KiB settled");
    // It still runs what it needs.
    assert_eq!(home.status()["modules"].as_array().map(Vec::len), Some(10));
}
