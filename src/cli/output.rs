//! Formatting shared by the commands: plain-text tables, durations, JSON printing and the
//! yes/no prompt.

use std::io::{BufRead, IsTerminal, Write};

/// Renders rows as a left-aligned table with a header, columns separated by two spaces; the last
/// column is not padded. Widths count characters, not bytes.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1d 2h 3m 4s`: zero days, hours and minutes are left out; seconds are always shown.
pub fn format_uptime_ms(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    if d > 0 {
        out.push_str(&format!("{d}d "));
    }
    if h > 0 {
        out.push_str(&format!("{h}h "));
    }
    if m > 0 {
        out.push_str(&format!("{m}m "));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// A list as `a, b`, or `-` when empty.
pub fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    println!("{text}");
    Ok(())
}

/// Whether stdin is an interactive terminal.
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks `question [y/N]` on stderr and reads the answer from stdin (which must be a TTY).
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_formatting() {
        assert_eq!(format_uptime_ms(0), "0s");
        assert_eq!(format_uptime_ms(59_999), "59s");
        assert_eq!(format_uptime_ms(61_000), "1m 1s");
        assert_eq!(format_uptime_ms(3_600_000), "1h 0s");
        assert_eq!(format_uptime_ms(93_784_000), "1d 2h 3m 4s");
    }

    #[test]
    fn table_aligns_columns_by_characters() {
        let t = table(
            &["ID", "STATUS", "REASON"],
            &[
                vec!["gateway".into(), "ready".into(), "-".into()],
                vec!["ü".into(), "blocked".into(), "not approved".into()],
            ],
        );
        assert_eq!(
            t,
            "ID       STATUS   REASON\ngateway  ready    -\nü        blocked  not approved\n"
        );
    }
}
