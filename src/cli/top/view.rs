//! Drawing `pons top` from a [`Model`]: a header (kernel pid, uptime, mode, convergence), the
//! module table, the log pane when one is open, a notice line and the keys. Pure: the same model
//! draws the same screen, which the tests read back from ratatui's `TestBackend`.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row as TableRow, Table, TableState};
use ratatui::Frame;

use super::model::{KernelView, Model, Row};
use crate::cli::output::format_uptime_ms;

/// The key line.
pub const KEYS: &str = "↑/↓ select  r restart  s stop  S start  l logs  q quit";

/// Draws the whole screen.
pub fn render(frame: &mut Frame, model: &Model) {
    let [header, body, notice, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_lines(model)), header);
    match &model.logs {
        Some(_) => {
            let [table, logs] =
                Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(body);
            render_body(frame, model, table);
            render_logs(frame, model, logs);
        }
        None => render_body(frame, model, body),
    }
    if let Some(n) = &model.notice {
        frame.render_widget(
            Paragraph::new(clean(n)).style(Style::default().fg(Color::Yellow)),
            notice,
        );
    }
    frame.render_widget(
        Paragraph::new(KEYS).style(Style::default().add_modifier(Modifier::DIM)),
        keys,
    );
}

fn header_lines(model: &Model) -> Vec<Line<'static>> {
    let every = format!("{}s", trim_float(model.interval.as_secs_f64()));
    let bold = Style::default().add_modifier(Modifier::BOLD);
    match &model.kernel {
        KernelView::Connecting => vec![
            Line::from(vec![
                Span::styled("pons top", bold),
                Span::raw("  connecting…"),
            ]),
            Line::from(format!("home {}", model.home)),
        ],
        KernelView::Down(why) => vec![
            Line::from(vec![
                Span::styled("pons top", bold),
                Span::raw("  "),
                Span::styled("kernel not running", Style::default().fg(Color::Red)),
                Span::raw(format!(" ({})", clean(why))),
            ]),
            Line::from(format!(
                "retrying every {every}; start it with `pons kernel start` (home {})",
                model.home
            )),
        ],
        KernelView::Up {
            pid,
            uptime_ms,
            mode,
            converged,
            pending,
            errors,
        } => {
            let mut facts = vec![format!(
                "kernel pid {}",
                pid.map_or("-".into(), |p| p.to_string())
            )];
            if let Some(ms) = uptime_ms {
                facts.push(format!("up {}", format_uptime_ms(*ms)));
            }
            if let Some(mode) = mode {
                facts.push(format!("mode {mode}"));
            }
            let conv = match (converged, pending) {
                (true, _) => Span::styled("converged", Style::default().fg(Color::Green)),
                (false, Some(n)) if *n > 0 => Span::styled(
                    format!("not converged ({n} pending: `pons apply`)"),
                    Style::default().fg(Color::Yellow),
                ),
                (false, _) => Span::styled("not converged", Style::default().fg(Color::Yellow)),
            };
            let mut second = vec![Span::raw(format!(
                "{}; refresh {every}; home {}",
                counts(&model.rows),
                model.home
            ))];
            if *errors > 0 {
                second.push(Span::styled(
                    format!("; {errors} input error(s): see `pons status`"),
                    Style::default().fg(Color::Red),
                ));
            }
            vec![
                Line::from(vec![
                    Span::styled("pons top", bold),
                    Span::raw(format!("  {} · ", facts.join(" · "))),
                    conv,
                ]),
                Line::from(second),
            ]
        }
    }
}

/// `3 modules: 2 ready, 1 crashed`.
fn counts(rows: &[Row]) -> String {
    let mut by: Vec<(&str, usize)> = Vec::new();
    for r in rows {
        match by.iter_mut().find(|(s, _)| *s == r.status) {
            Some((_, n)) => *n += 1,
            None => by.push((&r.status, 1)),
        }
    }
    by.sort_by_key(|(s, _)| status_rank(s));
    let parts: Vec<String> = by.iter().map(|(s, n)| format!("{n} {s}")).collect();
    match rows.len() {
        0 => "no modules".into(),
        1 => format!("1 module: {}", parts.join(", ")),
        n => format!("{n} modules: {}", parts.join(", ")),
    }
}

fn status_rank(s: &str) -> u8 {
    match s {
        "ready" => 0,
        "starting" => 1,
        "waiting" => 2,
        "restarting" => 3,
        "stopping" => 4,
        "stopped" => 5,
        "crashed" => 6,
        "blocked" => 7,
        _ => 8,
    }
}

/// The colour of a status.
pub fn status_style(status: &str) -> Style {
    let fg = match status {
        "ready" => Color::Green,
        "starting" | "waiting" | "restarting" => Color::Yellow,
        "stopping" | "stopped" => Color::Blue,
        "crashed" => Color::Red,
        "blocked" => Color::Magenta,
        _ => Color::Reset,
    };
    Style::default().fg(fg)
}

fn render_body(frame: &mut Frame, model: &Model, area: Rect) {
    let empty = match &model.kernel {
        KernelView::Connecting => Some("Asking the kernel…"),
        KernelView::Down(_) => Some("No kernel: nothing to show until one answers."),
        KernelView::Up { .. } if model.rows.is_empty() => Some("No modules."),
        KernelView::Up { .. } => None,
    };
    if let Some(text) = empty {
        frame.render_widget(Paragraph::new(text), area);
        return;
    }
    let id_width = model
        .rows
        .iter()
        .map(|r| r.id.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(2, 32) as u16;
    let header = TableRow::new([
        "ID",
        "STATUS",
        "PID",
        "RESTARTS",
        "UPTIME",
        "IN/S",
        "OUT/S",
        "LAST ERROR",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = model.rows.iter().map(|r| {
        TableRow::new(vec![
            ratatui::widgets::Cell::from(clean(&r.id)),
            ratatui::widgets::Cell::from(r.status.clone()).style(status_style(&r.status)),
            ratatui::widgets::Cell::from(r.pid.map_or("-".into(), |p| p.to_string())),
            ratatui::widgets::Cell::from(r.restarts.to_string()),
            ratatui::widgets::Cell::from(r.uptime_ms.map_or("-".into(), format_uptime_ms)),
            ratatui::widgets::Cell::from(rate(r.in_rate)),
            ratatui::widgets::Cell::from(rate(r.out_rate)),
            ratatui::widgets::Cell::from(r.error.as_deref().map_or("-".into(), clean)),
        ])
    });
    let widths = [
        Constraint::Length(id_width),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Min(10),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(Some(model.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_logs(frame: &mut Frame, model: &Model, area: Rect) {
    let Some(pane) = &model.logs else { return };
    let block = Block::default().borders(Borders::TOP).title(format!(
        " logs of {} (l or Esc closes) ",
        clean(&pane.module)
    ));
    let height = block.inner(area).height as usize;
    let skip = pane.lines.len().saturating_sub(height);
    let lines: Vec<Line> = if pane.lines.is_empty() {
        vec![Line::from("(no lines yet)")]
    } else {
        pane.lines
            .iter()
            .skip(skip)
            .map(|l| Line::from(clean(l)))
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// Messages per second: `-` unknown, one decimal below 10.
fn rate(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(v) if v < 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    }
}

/// `1`, `0.5`: seconds without a useless fraction.
fn trim_float(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// Text from modules and files drawn safely: control characters (escape sequences, newlines)
/// become spaces, so nothing a module wrote can drive the terminal.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::{Duration, Instant};

    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::Terminal;

    use super::super::model::{Fetch, KernelInfo, LogPane, ModuleInfo, Report, Sample};
    use super::*;

    fn draw(model: &Model, w: u16, h: u16) -> Buffer {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| render(f, model)).unwrap();
        t.backend().buffer().clone()
    }

    /// The buffer as text, one string per row, trailing spaces cut.
    fn lines(b: &Buffer) -> Vec<String> {
        (0..b.area.height)
            .map(|y| {
                (0..b.area.width)
                    .map(|x| b[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    /// The first cell of `text` on the screen, below the header.
    fn find(b: &Buffer, text: &str) -> (u16, u16) {
        let rows = lines(b);
        for (y, row) in rows.iter().enumerate().skip(2) {
            if let Some(byte) = row.find(text) {
                let x = row[..byte].chars().count();
                return (x as u16, y as u16);
            }
        }
        panic!("{text:?} not on screen:\n{}", rows.join("\n"));
    }

    fn running(modules: Vec<ModuleInfo>) -> Model {
        let mut m = Model::new("/srv/pons", Duration::from_secs(1));
        let report = |modules: Vec<ModuleInfo>| Report {
            kernel: KernelInfo {
                pid: Some(4242),
                uptime_ms: Some(125_000),
                mode: Some("auto".into()),
            },
            modules,
            converged: false,
            pending: Some(2),
            errors: vec![],
        };
        let t0 = Instant::now();
        let first: Vec<ModuleInfo> = modules
            .iter()
            .map(|m| ModuleInfo {
                msgs_in: m.msgs_in.map(|_| 0),
                msgs_out: m.msgs_out.map(|_| 0),
                ..m.clone()
            })
            .collect();
        m.apply(Fetch::Report(Sample {
            at: t0,
            report: report(first),
        }));
        m.apply(Fetch::Report(Sample {
            at: t0 + Duration::from_secs(2),
            report: report(modules),
        }));
        m
    }

    fn modules() -> Vec<ModuleInfo> {
        vec![
            ModuleInfo {
                id: "gateway".into(),
                status: "ready".into(),
                pid: Some(1001),
                restarts: 0,
                uptime_ms: Some(61_000),
                msgs_in: Some(40),
                msgs_out: Some(7),
                ..ModuleInfo::default()
            },
            ModuleInfo {
                id: "worker".into(),
                status: "crashed".into(),
                restarts: 5,
                reason: Some("crashed".into()),
                last_error: Some("exit code 3: \x1b[31mno database\x1b[0m".into()),
                ..ModuleInfo::default()
            },
        ]
    }

    #[test]
    fn the_table_shows_every_column_with_colours() {
        let m = running(modules());
        let b = draw(&m, 110, 12);
        let text = lines(&b);
        assert_eq!(
            text[0],
            "pons top  kernel pid 4242 · up 2m 5s · mode auto · not converged (2 pending: `pons apply`)"
        );
        assert_eq!(
            text[1],
            "2 modules: 1 ready, 1 crashed; refresh 1s; home /srv/pons"
        );
        let header = &text[2];
        for col in [
            "ID",
            "STATUS",
            "PID",
            "RESTARTS",
            "UPTIME",
            "IN/S",
            "OUT/S",
            "LAST ERROR",
        ] {
            assert!(header.contains(col), "{header}");
        }
        let words = |row: &str| row.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            words(&text[3]),
            ["gateway", "ready", "1001", "0", "1m", "1s", "20", "3.5", "-"]
        );
        // The escape sequence of the module's text is not drawn as such.
        assert_eq!(
            words(&text[4]),
            [
                "worker", "crashed", "-", "5", "-", "-", "-", "exit", "code", "3:", "[31mno",
                "database", "[0m"
            ]
        );
        assert!(!text.concat().contains('\x1b'));
        assert_eq!(b[find(&b, "ready")].fg, Color::Green);
        assert_eq!(b[find(&b, "crashed")].fg, Color::Red);
        // The selected (first) row is drawn reversed, the other not.
        assert!(b[find(&b, "gateway")].modifier.contains(Modifier::REVERSED));
        assert!(!b[find(&b, "worker")].modifier.contains(Modifier::REVERSED));
        assert_eq!(text[11], KEYS);
    }

    #[test]
    fn selection_moves_the_highlight() {
        let mut m = running(modules());
        m.on_key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::Down,
        ));
        let b = draw(&m, 110, 12);
        assert!(!b[find(&b, "gateway")].modifier.contains(Modifier::REVERSED));
        assert!(b[find(&b, "worker")].modifier.contains(Modifier::REVERSED));
    }

    #[test]
    fn no_kernel_is_said_and_retried() {
        let mut m = Model::new("/srv/pons", Duration::from_millis(500));
        let b = draw(&m, 100, 8);
        assert!(lines(&b)[0].contains("connecting"));
        m.apply(Fetch::Down(
            "no control socket answers at /srv/pons/run/kernel.sock".into(),
        ));
        let b = draw(&m, 100, 8);
        let text = lines(&b);
        assert!(
            text[0].starts_with("pons top  kernel not running (no control socket answers at"),
            "{text:?}"
        );
        let x = text[0].find("kernel not running").unwrap() as u16;
        assert_eq!(b[(x, 0)].fg, Color::Red);
        assert_eq!(
            text[1],
            "retrying every 0.5s; start it with `pons kernel start` (home /srv/pons)"
        );
        assert_eq!(text[2], "No kernel: nothing to show until one answers.");
    }

    #[test]
    fn the_log_pane_shows_the_last_lines_and_the_notice() {
        let mut m = running(modules());
        m.logs = Some(LogPane {
            module: "gateway".into(),
            lines: (1..=30)
                .map(|i| format!("line {i}"))
                .collect::<VecDeque<_>>(),
        });
        m.notice = Some("restarted gateway".into());
        let b = draw(&m, 100, 16);
        let text = lines(&b);
        // 16 rows: header 2, table 6 (header, 2 modules), pane 6 (title, 5 lines), notice, keys.
        assert!(text[3].starts_with("gateway"), "the table stays: {text:?}");
        assert_eq!(
            find(&b, "logs of gateway (l or Esc closes)").1,
            8,
            "{text:?}"
        );
        let pane: Vec<&str> = text[9..14].iter().map(String::as_str).collect();
        assert_eq!(
            pane,
            ["line 26", "line 27", "line 28", "line 29", "line 30"]
        );
        assert_eq!(text[14], "restarted gateway");
        assert_eq!(b[find(&b, "restarted gateway")].fg, Color::Yellow);
    }

    #[test]
    fn an_empty_home_says_so() {
        let m = running(vec![]);
        let text = lines(&draw(&m, 80, 6));
        assert!(text[1].starts_with("no modules;"), "{text:?}");
        assert_eq!(text[2], "No modules.");
    }
}
