//! `pons logs [ID…]` and `pons kernel logs [--module ID,…]`: the daily JSON log files
//! `.runtime/logs/kernel-YYYY-MM-DD.log`, filtered by module, level and time, as human lines (the
//! kernel's own formatter, `logging/format.rs`, with the reader's local time) or as the JSON lines
//! they are; `-f` follows them. Behaviour: specs/cli.md.

mod files;
mod filter;
mod since;

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::args::LogFlags;
use super::colour;
use crate::home::Home;
use crate::logging::format::human_lines;
use crate::logging::{parse_level, LocalTime};
use crate::safe_text::terminal_safe;
use files::{Follower, Position};
use filter::{Filter, Selected, KERNEL};

/// How often `-f` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Lines shown first without `-n`: without and with `-f` (as journalctl).
const DEFAULT_LINES: usize = 100;
const DEFAULT_FOLLOW_LINES: usize = 10;

pub fn run(home: &Home, ids: &[String], flags: &LogFlags) -> anyhow::Result<ExitCode> {
    let min_level = match flags.level.as_deref() {
        None => None,
        Some(l) => Some(parse_level(l).ok_or_else(|| {
            anyhow::anyhow!(
                "--level `{l}` is not a level: use trace, debug, info, warn (or warning) or error (or fatal)"
            )
        })?),
    };
    let since_ms = match flags.since.as_deref() {
        None => None,
        Some(t) => {
            Some(since::parse(t, LocalTime::now().unix_millis()).map_err(anyhow::Error::msg)?)
        }
    };
    let dir = home.logs_dir();
    let files = files::daily_files(&dir)?;
    let mut wanted: Vec<String> = Vec::new();
    for id in ids {
        if !wanted.contains(id) {
            wanted.push(id.clone());
        }
    }
    check_ids(home, &wanted, &files)?;
    let filter = Filter {
        ids: wanted,
        min_level,
        since_ms,
        keep_text: !flags.json,
    };
    let lines = match (flags.lines, since_ms, flags.follow) {
        (Some(n), _, _) => Some(n),
        (None, Some(_), _) => None,
        (None, None, true) => Some(DEFAULT_FOLLOW_LINES),
        (None, None, false) => Some(DEFAULT_LINES),
    };
    if files.is_empty() && !flags.follow {
        eprintln!(
            "No log in {} yet: start the kernel (`pons kernel start`), or wait for it with `pons logs -f`.",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // A closed pipe is an EPIPE error here (ending the command quietly), not a signal.
    // SAFETY: SIG_IGN is a valid action; this command runs no other thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    if flags.follow {
        stop_on_signals();
    }
    let mut out = Output {
        w: BufWriter::new(io::stdout()),
        json: flags.json,
        colour: !flags.json && colour::enabled(),
    };
    match print(&dir, &files, &filter, lines, flags.follow, &mut out) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

/// The history (the last `lines` matching lines, or all of them), then, with `follow`, new lines
/// until a signal or a closed output.
fn print(
    dir: &std::path::Path,
    files: &[std::path::PathBuf],
    filter: &Filter,
    lines: Option<usize>,
    follow: bool,
    out: &mut Output,
) -> io::Result<()> {
    let newest = files.last().map(|f| Position::at_end(f)).transpose()?;
    let history = files::from(files, filter.since_ms);
    match lines {
        Some(0) => {}
        Some(n) => {
            for s in files::last_matching(&history, n, filter, newest.as_ref())? {
                out.emit(s)?;
            }
        }
        None => files::all_matching(&history, filter, newest.as_ref(), &mut |s| out.emit(s))?,
    }
    out.w.flush()?;
    if !follow {
        return Ok(());
    }
    let mut follower = Follower::new(dir, newest);
    while !STOP.load(Ordering::SeqCst) {
        follower.poll(filter, &mut |s| out.emit(s))?;
        out.w.flush()?;
        if stdout_closed_within(FOLLOW_POLL) {
            return Ok(());
        }
    }
    Ok(())
}

/// Refuses ids that name no module: not in `modules/` and never in the log.
fn check_ids(home: &Home, ids: &[String], files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let installed = filter::installed_ids(&home.modules_dir());
    let mut unknown: Vec<&String> = ids
        .iter()
        .filter(|id| *id != KERNEL && !installed.contains(*id))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    // Only the lines that contain one of the ids are parsed first; all of them for the error.
    let about_unknown = Filter {
        ids: unknown.iter().map(|id| id.to_string()).collect(),
        ..Filter::default()
    };
    let named = ids_in_log(files, &about_unknown)?;
    unknown.retain(|id| !named.contains(*id));
    if unknown.is_empty() {
        return Ok(());
    }
    let logged = ids_in_log(files, &Filter::default())?;
    let mut known: Vec<&str> = installed
        .iter()
        .chain(&logged)
        .map(String::as_str)
        .chain([KERNEL])
        .collect();
    known.sort_unstable();
    known.dedup();
    let names: Vec<String> = unknown.iter().map(|id| format!("`{id}`")).collect();
    anyhow::bail!(
        "unknown module id{} {}: no module in {} has it and the log never names it; known ids: {}",
        if names.len() > 1 { "s" } else { "" },
        names.join(", "),
        home.modules_dir().display(),
        known.join(", ")
    )
}

/// The module ids (`module`, `moduleId`) of the records of the log files that `filter` keeps.
fn ids_in_log(
    files: &[std::path::PathBuf],
    filter: &Filter,
) -> io::Result<std::collections::BTreeSet<String>> {
    let mut ids = std::collections::BTreeSet::new();
    files::all_matching(files, filter, None, &mut |s| {
        if let Selected::Record { record, .. } = s {
            for id in filter::ids_named(&record) {
                if !ids.contains(id) {
                    ids.insert(id.to_string());
                }
            }
        }
        Ok(())
    })?;
    Ok(ids)
}

/// Where the selected lines go.
struct Output {
    w: BufWriter<io::Stdout>,
    json: bool,
    colour: bool,
}

impl Output {
    fn emit(&mut self, s: Selected) -> io::Result<()> {
        match s {
            Selected::Record { raw, .. } if self.json => writeln!(self.w, "{raw}"),
            Selected::Record { mut record, .. } => {
                // The reader's local time, as the console shows the kernel's.
                record.time = LocalTime::from_unix_millis(record.time.unix_millis());
                for line in human_lines(&record, self.colour) {
                    writeln!(self.w, "{line}")?;
                }
                Ok(())
            }
            Selected::Text(_) if self.json => Ok(()),
            Selected::Text(t) => writeln!(self.w, "{}", terminal_safe(&t)),
        }
    }
}

/// Set by SIGINT / SIGTERM while following.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM end `-f` with exit 0 (without `SA_RESTART`, so the wait returns at once).
fn stop_on_signals() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe); `sa` is zeroed plain old
    // data, filled before use, and outlives the calls.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// Waits up to `timeout` (less when a signal arrives); true when stdout's reader is gone (a closed
/// pipe, a hung-up terminal).
fn stdout_closed_within(timeout: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as libc::c_int) };
    n > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
}
