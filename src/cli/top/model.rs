//! The state `pons top` shows, built from the kernel's `status` answers: the last two samples give
//! the message rates, the selection follows a module by id across refreshes, and keys map to
//! [`Action`]s. No IO and no terminal here, so the whole of it is tested in memory.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde::Deserialize;

/// Lines kept in the log pane.
pub const LOG_LINES: usize = 500;

/// The part of the `status` answer that `top` reads. Every field but the module id and status
/// has a default, so an older or newer kernel's answer still reads (`lastError`, `msgsIn`,
/// `msgsOut` are additive fields).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(default)]
    pub kernel: KernelInfo,
    #[serde(default)]
    pub modules: Vec<ModuleInfo>,
    #[serde(default)]
    pub converged: bool,
    #[serde(default)]
    pub pending: Option<usize>,
    #[serde(default)]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelInfo {
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub uptime_ms: Option<u64>,
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleInfo {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub restarts: u32,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub uptime_ms: Option<u64>,
    #[serde(default)]
    pub msgs_in: Option<u64>,
    #[serde(default)]
    pub msgs_out: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// One `status` answer and when it arrived.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub report: Report,
}

/// What the fetcher saw on one refresh.
#[derive(Debug, Clone)]
pub enum Fetch {
    Report(Sample),
    /// No kernel answers on the control socket (the sentence says where).
    Down(String),
    /// The kernel answered with an error, or the answer did not read.
    Failed(String),
}

/// The kernel line of the header.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelView {
    /// Before the first answer.
    Connecting,
    /// No kernel runs; `top` keeps asking.
    Down(String),
    Up {
        pid: Option<u32>,
        uptime_ms: Option<u64>,
        mode: Option<String>,
        converged: bool,
        pending: Option<usize>,
        errors: usize,
    },
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub status: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub uptime_ms: Option<u64>,
    /// Messages per second from / to the module over the last refresh (`None`: not known yet).
    pub in_rate: Option<f64>,
    pub out_rate: Option<f64>,
    /// `lastError` when the kernel reports it, else `reason`.
    pub error: Option<String>,
}

/// The log pane: the followed module and its last formatted lines.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPane {
    pub module: String,
    pub lines: VecDeque<String>,
}

/// What a key asks the loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    Restart(String),
    /// Disable (`pons stop`): add the id to `kernel.disabled`.
    Stop(String),
    /// Enable (`pons start`): remove the id from `kernel.disabled`.
    Start(String),
    /// Open the log pane on this module.
    FollowLogs(String),
    CloseLogs,
}

/// Everything the view draws.
#[derive(Debug, Clone)]
pub struct Model {
    pub home: String,
    pub interval: Duration,
    pub kernel: KernelView,
    pub rows: Vec<Row>,
    /// Index into `rows` (meaningless when `rows` is empty).
    pub selected: usize,
    /// The id of the selected row: kept selected when rows move.
    selected_id: Option<String>,
    /// The last answer to a key (or a failed refresh), shown above the key line.
    pub notice: Option<String>,
    pub logs: Option<LogPane>,
    last: Option<Sample>,
    /// The notice is a failed refresh's: the next good one clears it.
    fetch_failed: bool,
}

impl Model {
    pub fn new(home: impl Into<String>, interval: Duration) -> Model {
        Model {
            home: home.into(),
            interval,
            kernel: KernelView::Connecting,
            rows: Vec::new(),
            selected: 0,
            selected_id: None,
            notice: None,
            logs: None,
            last: None,
            fetch_failed: false,
        }
    }

    /// Takes in one refresh.
    pub fn apply(&mut self, fetch: Fetch) {
        match fetch {
            Fetch::Report(sample) => {
                if std::mem::take(&mut self.fetch_failed) {
                    self.notice = None;
                }
                self.update(sample)
            }
            Fetch::Down(why) => {
                self.kernel = KernelView::Down(why);
                self.rows.clear();
                self.last = None;
            }
            Fetch::Failed(why) => {
                self.notice = Some(why);
                self.fetch_failed = true;
            }
        }
    }

    /// A new sample: rows with rates against the previous sample.
    pub fn update(&mut self, sample: Sample) {
        let r = &sample.report;
        self.kernel = KernelView::Up {
            pid: r.kernel.pid,
            uptime_ms: r.kernel.uptime_ms,
            mode: r.kernel.mode.clone(),
            converged: r.converged,
            pending: r.pending,
            errors: r.errors.len(),
        };
        let prev = self.last.as_ref();
        let secs = prev.map(|p| sample.at.saturating_duration_since(p.at).as_secs_f64());
        self.rows = r
            .modules
            .iter()
            .map(|m| {
                let before = prev.and_then(|p| p.report.modules.iter().find(|o| o.id == m.id));
                let rate = |f: fn(&ModuleInfo) -> Option<u64>| {
                    let (now, then, secs) = (f(m)?, f(before?)?, secs?);
                    // A counter that went back belongs to a module that was removed and added
                    // again: no rate until the next sample.
                    let n = now.checked_sub(then)?;
                    (secs > 0.0).then(|| n as f64 / secs)
                };
                Row {
                    id: m.id.clone(),
                    status: m.status.clone(),
                    pid: m.pid,
                    restarts: m.restarts,
                    uptime_ms: m.uptime_ms,
                    in_rate: rate(|m| m.msgs_in),
                    out_rate: rate(|m| m.msgs_out),
                    error: m.last_error.clone().or_else(|| m.reason.clone()),
                }
            })
            .collect();
        self.last = Some(sample);
        self.reselect();
    }

    /// Keeps the selected id selected; when it is gone, the row at the same place.
    fn reselect(&mut self) {
        if let Some(pos) = self
            .selected_id
            .as_ref()
            .and_then(|id| self.rows.iter().position(|r| &r.id == id))
        {
            self.selected = pos;
        }
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
        self.selected_id = self.rows.get(self.selected).map(|r| r.id.clone());
    }

    pub fn selected_row(&self) -> Option<&Row> {
        self.rows.get(self.selected)
    }

    fn select(&mut self, index: usize) {
        self.selected = index.min(self.rows.len().saturating_sub(1));
        self.selected_id = self.rows.get(self.selected).map(|r| r.id.clone());
    }

    /// The answer to a key, shown until the next one.
    pub fn set_notice(&mut self, notice: String) {
        self.notice = Some(notice);
        self.fetch_failed = false;
    }

    /// Lines appended to the followed module's log.
    pub fn push_log_lines(&mut self, lines: impl IntoIterator<Item = String>) {
        if let Some(pane) = &mut self.logs {
            for line in lines {
                if pane.lines.len() == LOG_LINES {
                    pane.lines.pop_front();
                }
                pane.lines.push_back(line);
            }
        }
    }

    /// Maps a key to what it does; selection keys act here and return `None`.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let selected = || self.selected_row().map(|r| r.id.clone());
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                Some(Action::Quit)
            }
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Esc if self.logs.is_some() => Some(Action::CloseLogs),
            KeyCode::Esc => Some(Action::Quit),
            KeyCode::Up | KeyCode::Char('k') => {
                self.select(self.selected.saturating_sub(1));
                None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.select(self.selected.saturating_add(1));
                None
            }
            KeyCode::Home | KeyCode::Char('g') => {
                self.select(0);
                None
            }
            KeyCode::End | KeyCode::Char('G') => {
                self.select(usize::MAX);
                None
            }
            KeyCode::Char('r') => selected().map(Action::Restart),
            KeyCode::Char('s') => selected().map(Action::Stop),
            KeyCode::Char('S') => selected().map(Action::Start),
            KeyCode::Char('l') if self.logs.is_some() => Some(Action::CloseLogs),
            KeyCode::Char('l') => selected().map(Action::FollowLogs),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(id: &str, status: &str, msgs: Option<(u64, u64)>) -> ModuleInfo {
        ModuleInfo {
            id: id.into(),
            status: status.into(),
            msgs_in: msgs.map(|m| m.0),
            msgs_out: msgs.map(|m| m.1),
            ..ModuleInfo::default()
        }
    }

    fn sample(at: Instant, modules: Vec<ModuleInfo>) -> Sample {
        Sample {
            at,
            report: Report {
                modules,
                ..Report::default()
            },
        }
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn rates_come_from_two_samples() {
        let t0 = Instant::now();
        let mut m = Model::new("/h", Duration::from_secs(1));
        m.update(sample(t0, vec![module("a", "ready", Some((10, 100)))]));
        assert_eq!(m.rows[0].in_rate, None, "one sample has no rate");
        m.update(sample(
            t0 + Duration::from_secs(2),
            vec![
                module("a", "ready", Some((30, 160))),
                module("b", "ready", Some((5, 5))),
            ],
        ));
        assert_eq!(m.rows[0].in_rate, Some(10.0));
        assert_eq!(m.rows[0].out_rate, Some(30.0));
        assert_eq!(m.rows[1].in_rate, None, "new module: no rate yet");
        // A counter that went back (module removed and added again): no rate.
        m.update(sample(
            t0 + Duration::from_secs(3),
            vec![module("a", "ready", Some((1, 200)))],
        ));
        assert_eq!(m.rows[0].in_rate, None);
        assert_eq!(m.rows[0].out_rate, Some(40.0));
        // A kernel without the counters: no rates, no panic.
        m.update(sample(
            t0 + Duration::from_secs(4),
            vec![module("a", "ready", None)],
        ));
        assert_eq!((m.rows[0].in_rate, m.rows[0].out_rate), (None, None));
    }

    #[test]
    fn last_error_wins_over_reason_and_reads_when_absent() {
        let v = serde_json::json!({
            "kernel": {"running": true, "pid": 7, "uptimeMs": 1000, "home": "/h", "mode": "auto"},
            "modules": [
                {"id": "a", "status": "crashed", "pid": null, "restarts": 3, "provides": [],
                 "reason": "crashed", "lastError": "exit code 1: boom"},
                {"id": "b", "status": "blocked", "pid": null, "restarts": 0, "provides": [],
                 "reason": "not approved", "sandbox": {"x": 1}}
            ],
            "services": [], "converged": false
        });
        let report: Report = serde_json::from_value(v).unwrap();
        let mut m = Model::new("/h", Duration::from_secs(1));
        m.update(Sample {
            at: Instant::now(),
            report,
        });
        assert_eq!(m.rows[0].error.as_deref(), Some("exit code 1: boom"));
        assert_eq!(m.rows[1].error.as_deref(), Some("not approved"));
        assert_eq!(
            m.kernel,
            KernelView::Up {
                pid: Some(7),
                uptime_ms: Some(1000),
                mode: Some("auto".into()),
                converged: false,
                pending: None,
                errors: 0
            }
        );
    }

    #[test]
    fn selection_follows_the_module_and_keys_act_on_it() {
        let t0 = Instant::now();
        let mut m = Model::new("/h", Duration::from_secs(1));
        assert_eq!(m.on_key(key(KeyCode::Char('r'))), None, "nothing selected");
        m.update(sample(
            t0,
            vec![
                module("a", "ready", None),
                module("b", "ready", None),
                module("c", "ready", None),
            ],
        ));
        assert_eq!(m.on_key(key(KeyCode::Down)), None);
        assert_eq!(m.on_key(key(KeyCode::Char('j'))), None);
        assert_eq!(m.on_key(key(KeyCode::Char('j'))), None, "stays on the last");
        assert_eq!(m.selected, 2);
        assert_eq!(m.on_key(key(KeyCode::Char('k'))), None);
        assert_eq!(
            m.on_key(key(KeyCode::Char('r'))),
            Some(Action::Restart("b".into()))
        );
        // `a` leaves: `b` stays selected at its new place.
        m.update(sample(
            t0,
            vec![module("b", "ready", None), module("c", "ready", None)],
        ));
        assert_eq!(m.selected_row().unwrap().id, "b");
        // `b` leaves too: the row at the same place.
        m.update(sample(t0, vec![module("c", "ready", None)]));
        assert_eq!(m.selected_row().unwrap().id, "c");
        assert_eq!(
            m.on_key(key(KeyCode::Char('s'))),
            Some(Action::Stop("c".into()))
        );
        assert_eq!(
            m.on_key(KeyEvent::new(KeyCode::Char('S'), KeyModifiers::SHIFT)),
            Some(Action::Start("c".into()))
        );
        assert_eq!(
            m.on_key(key(KeyCode::Char('l'))),
            Some(Action::FollowLogs("c".into()))
        );
        m.logs = Some(LogPane {
            module: "c".into(),
            lines: VecDeque::new(),
        });
        assert_eq!(m.on_key(key(KeyCode::Esc)), Some(Action::CloseLogs));
        assert_eq!(m.on_key(key(KeyCode::Char('l'))), Some(Action::CloseLogs));
        m.logs = None;
        assert_eq!(m.on_key(key(KeyCode::Esc)), Some(Action::Quit));
        assert_eq!(m.on_key(key(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(
            m.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
    }

    #[test]
    fn a_kernel_going_away_clears_the_rows_and_rates() {
        let t0 = Instant::now();
        let mut m = Model::new("/h", Duration::from_secs(1));
        m.update(sample(t0, vec![module("a", "ready", Some((1, 1)))]));
        m.apply(Fetch::Down("no kernel".into()));
        assert!(m.rows.is_empty());
        assert_eq!(m.kernel, KernelView::Down("no kernel".into()));
        m.update(sample(
            t0 + Duration::from_secs(1),
            vec![module("a", "ready", Some((5, 5)))],
        ));
        assert_eq!(m.rows[0].in_rate, None, "no rate across a kernel restart");
    }

    #[test]
    fn a_failed_refresh_is_said_until_the_next_good_one() {
        let mut m = Model::new("/h", Duration::from_secs(1));
        m.apply(Fetch::Failed("the kernel did not answer".into()));
        assert_eq!(m.notice.as_deref(), Some("the kernel did not answer"));
        m.apply(Fetch::Report(sample(Instant::now(), vec![])));
        assert_eq!(m.notice, None);
        m.set_notice("restarted a".into());
        m.apply(Fetch::Report(sample(Instant::now(), vec![])));
        assert_eq!(
            m.notice.as_deref(),
            Some("restarted a"),
            "a key's answer stays"
        );
    }

    #[test]
    fn the_log_pane_keeps_the_last_lines() {
        let mut m = Model::new("/h", Duration::from_secs(1));
        m.push_log_lines(["ignored without a pane".to_string()]);
        m.logs = Some(LogPane {
            module: "a".into(),
            lines: VecDeque::new(),
        });
        m.push_log_lines((0..LOG_LINES + 3).map(|i| i.to_string()));
        let pane = m.logs.as_ref().unwrap();
        assert_eq!(pane.lines.len(), LOG_LINES);
        assert_eq!(pane.lines.front().map(String::as_str), Some("3"));
    }
}
