//! `pons top`: a live terminal view of the modules (ratatui + crossterm).
//!
//! A fetcher thread asks the kernel for a *summary* `status` (no sandbox blocks) every interval
//! and sends the answers to the UI loop, which turns them into a [`model::Model`] (rates from two
//! samples) and draws it with [`view::render`]. Keys restart (`module.restart`), stop / start
//! (`kernel.disabled` in config.yaml) and follow the logs of the selected module; the slow ones
//! run on threads of their own so the screen never freezes. Without a kernel the view says so and
//! keeps asking. The terminal is restored on every way out (quit, error, panic, SIGTERM / SIGHUP /
//! SIGINT) and the view ends by itself when its terminal hangs up ([`tty`]).

mod log_tail;
mod model;
mod tty;
mod view;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event};

use self::log_tail::LogTail;
use self::model::{Action, Fetch, KernelView, LogPane, Model, Report, Sample};
use super::args::TopArgs;
use super::remote;
use crate::control::api::Request;
use crate::control::client::{self, ClientError};
use crate::home::Home;

/// How long the loop waits for a key before it looks at the fetcher and the log pane again.
const TICK: Duration = Duration::from_millis(200);

/// What the helper threads tell the loop.
enum Msg {
    Fetch(Fetch),
    Notice(String),
}

pub fn run(home: &Home, args: &TopArgs) -> anyhow::Result<ExitCode> {
    if !(0.2..=3600.0).contains(&args.interval) {
        anyhow::bail!(
            "--interval {} is out of range: give seconds between 0.2 and 3600",
            args.interval
        );
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "`pons top` needs a terminal; in scripts use `pons status` (or `pons status --json`)"
        );
    }
    let interval = Duration::from_secs_f64(args.interval);
    tty::install()?;
    let (tx, rx) = mpsc::channel::<Msg>();
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    {
        let socket = home.socket();
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("top-fetch".into())
            .spawn(move || fetcher(&socket, interval, &tx, &wake_rx))?;
    }
    let restore = tty::RestoreOnDrop;
    let terminal =
        ratatui::try_init().map_err(|e| anyhow::anyhow!("cannot take over the terminal: {e}"))?;
    let mut terminal = std::mem::ManuallyDrop::new(terminal);
    let result = ui_loop(&mut terminal, home, interval, &rx, &tx, &wake_tx);
    if tty::gone() {
        // Nothing can be written to a hung-up terminal (and ratatui would report its failure to
        // show the cursor on that same terminal): leave quietly, whatever the loop returned.
        return Ok(ExitCode::FAILURE);
    }
    drop(std::mem::ManuallyDrop::into_inner(terminal));
    drop(restore);
    result
}

/// Draws, reads keys and takes in the helper threads' messages until quit, a signal or a
/// hung-up terminal.
fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    home: &Home,
    interval: Duration,
    rx: &mpsc::Receiver<Msg>,
    tx: &mpsc::Sender<Msg>,
    wake_tx: &mpsc::Sender<()>,
) -> anyhow::Result<ExitCode> {
    let mut model = Model::new(home.root.display().to_string(), interval);
    let mut tail: Option<LogTail> = None;
    let mut size = terminal.size()?;
    let mut dirty = true;
    loop {
        tty::beat();
        if tty::signalled() {
            return Ok(ExitCode::SUCCESS);
        }
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Fetch(f) => model.apply(f),
                Msg::Notice(n) => model.set_notice(n),
            }
            dirty = true;
        }
        if let Some(t) = &mut tail {
            let lines = t.poll();
            if !lines.is_empty() {
                model.push_log_lines(lines);
                dirty = true;
            }
        }
        // Resizes are seen here (crossterm's resize events only come with input).
        let now = terminal.size()?;
        if now != size {
            size = now;
            dirty = true;
        }
        if dirty {
            terminal.draw(|f| view::render(f, &model))?;
            dirty = false;
        }
        match tty::wait(TICK) {
            tty::Input::Gone => return Ok(ExitCode::FAILURE),
            tty::Input::Idle => continue,
            tty::Input::Ready => {}
        }
        // Every event crossterm has now (a burst of keys is read at once).
        while event::poll(Duration::ZERO)? {
            let Event::Key(key) = event::read()? else {
                dirty = true;
                continue;
            };
            dirty = true;
            let Some(action) = model.on_key(key) else {
                continue;
            };
            match action {
                Action::Quit => return Ok(ExitCode::SUCCESS),
                Action::FollowLogs(id) => {
                    let (t, lines) = LogTail::open(&home.logs_dir(), &id);
                    model.logs = Some(LogPane {
                        module: id,
                        lines: Default::default(),
                    });
                    model.push_log_lines(lines);
                    tail = Some(t);
                }
                Action::CloseLogs => {
                    model.logs = None;
                    tail = None;
                }
                other => {
                    model.set_notice(match &other {
                        Action::Restart(id) => format!("restarting {id}…"),
                        Action::Stop(id) => format!("stopping {id}…"),
                        Action::Start(id) => format!("starting {id}…"),
                        _ => String::new(),
                    });
                    act(home, other, is_manual(&model), tx, wake_tx);
                }
            }
        }
    }
}

fn is_manual(model: &Model) -> bool {
    matches!(&model.kernel, KernelView::Up { mode: Some(m), .. } if m == "manual")
}

/// Asks for a summary `status` every `interval` (or as soon as `wake` says) until the loop is gone.
fn fetcher(
    socket: &std::path::Path,
    interval: Duration,
    tx: &mpsc::Sender<Msg>,
    wake: &mpsc::Receiver<()>,
) {
    let req = Request {
        cmd: "status".into(),
        summary: Some(true),
        ..Request::default()
    };
    loop {
        let fetch = match client::request(socket, &req, |_| {}) {
            Ok(resp) if resp.ok => {
                let text = resp.data.as_ref().map_or("null", |d| d.get());
                match serde_json::from_str::<Report>(text) {
                    Ok(report) => Fetch::Report(Sample {
                        at: Instant::now(),
                        report,
                    }),
                    Err(e) => {
                        Fetch::Failed(format!("the kernel's `status` answer does not read: {e}"))
                    }
                }
            }
            Ok(resp) => Fetch::Failed(format!(
                "the kernel refused `status`: {}",
                resp.error.unwrap_or_else(|| "no reason given".into())
            )),
            Err(ClientError::NotRunning(path)) => {
                Fetch::Down(format!("no control socket answers at {}", path.display()))
            }
            Err(e) => Fetch::Failed(e.to_string()),
        };
        if tx.send(Msg::Fetch(fetch)).is_err() {
            return;
        }
        match wake.recv_timeout(interval) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Runs a key's action on a thread of its own; its outcome becomes the notice and the view is
/// refreshed at once.
fn act(home: &Home, action: Action, manual: bool, tx: &mpsc::Sender<Msg>, wake: &mpsc::Sender<()>) {
    let (home, tx, wake) = (home.clone(), tx.clone(), wake.clone());
    std::thread::spawn(move || {
        let notice = outcome(&home, &action, manual);
        let _ = tx.send(Msg::Notice(notice));
        let _ = wake.send(());
    });
}

/// What an action did, as one sentence.
fn outcome(home: &Home, action: &Action, manual: bool) -> String {
    let applies = if manual {
        "apply it with `pons apply` (the kernel reconciles manually)"
    } else {
        "the kernel applies it"
    };
    match action {
        Action::Restart(id) => {
            let req = Request {
                cmd: "module.restart".into(),
                module_id: Some(id.clone()),
                ..Request::default()
            };
            match remote::call(home, &req, |_| {}) {
                Ok(Some(_)) => format!("restarted {id}"),
                Ok(None) => format!("cannot restart {id}: {}", remote::not_running()),
                Err(e) => format!("cannot restart {id}: {e:#}"),
            }
        }
        Action::Stop(id) => {
            match super::modules::set_disabled(home, std::slice::from_ref(id), true) {
                Ok(changed) if !changed.is_empty() => {
                    format!("{id} added to kernel.disabled in config.yaml: {applies}")
                }
                Ok(_) => format!("{id} is already in kernel.disabled (config.yaml)"),
                Err(e) => format!("cannot stop {id}: {e:#}"),
            }
        }
        Action::Start(id) => {
            match super::modules::set_disabled(home, std::slice::from_ref(id), false) {
                Ok(changed) if !changed.is_empty() => {
                    format!("{id} removed from kernel.disabled in config.yaml: {applies}")
                }
                Ok(_) => format!(
                "{id} is not in kernel.disabled (config.yaml); a crashed module restarts with r"
            ),
                Err(e) => format!("cannot start {id}: {e:#}"),
            }
        }
        Action::Quit | Action::FollowLogs(_) | Action::CloseLogs => String::new(),
    }
}
