//! Colour on a terminal: plan signs and statuses, only when stdout is a TTY and `NO_COLOR` is
//! unset (never when piped; `PONS_COLOR=always` forces it, for tests and `less -R`).

use std::io::IsTerminal;

/// Whether output to stdout is coloured.
pub fn enabled() -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if std::env::var("PONS_COLOR").is_ok_and(|v| v == "always") {
        return true;
    }
    std::io::stdout().is_terminal()
}

const RESET: &str = "\x1b[0m";

/// The SGR colour of a plan sign or a module status.
fn code(word: &str) -> Option<&'static str> {
    Some(match word {
        "+" | "ready" | "spawn" => "\x1b[32m",
        "-" | "crashed" | "stop" => "\x1b[31m",
        "~" | "restarting" | "starting" | "waiting" | "stopping" | "restart" | "config" => {
            "\x1b[33m"
        }
        "!" | "blocked" | "stopped" => "\x1b[35m",
        _ => return None,
    })
}

/// `word` in its colour (unchanged when it has none).
pub fn paint(word: &str) -> String {
    match code(word) {
        Some(c) => format!("{c}{word}{RESET}"),
        None => word.to_string(),
    }
}

/// A rendered plan with the sign and action of each action line coloured
/// (`  + web  spawn  reason`).
pub fn plan(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let body = line.trim_start_matches(' ');
        let indent = &line[..line.len() - body.len()];
        let mut words = body.splitn(2, ' ');
        match (words.next(), words.next()) {
            (Some(sign), Some(rest))
                if indent == "  " && code(sign).is_some() && sign.len() == 1 =>
            {
                out.push_str(indent);
                out.push_str(&paint(sign));
                out.push(' ');
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// A rendered status table with each module's status word coloured: the second column of the
/// rows under the `ID  STATUS` header, up to the first blank line.
pub fn status(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut in_table = false;
    for line in text.split_inclusive('\n') {
        if line.starts_with("ID ") && line.contains(" STATUS ") {
            in_table = true;
            out.push_str(line);
            continue;
        }
        if line.trim().is_empty() {
            in_table = false;
        }
        match in_table.then(|| status_span(line)).flatten() {
            Some((start, end)) => {
                out.push_str(&line[..start]);
                out.push_str(&paint(&line[start..end]));
                out.push_str(&line[end..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Byte range of the second column of a table row (columns are separated by two spaces or more).
fn status_span(line: &str) -> Option<(usize, usize)> {
    let id_end = line.find("  ")?;
    let start = id_end + line[id_end..].find(|c: char| c != ' ')?;
    let end = start + line[start..].find(' ').unwrap_or(line.len() - start);
    code(&line[start..end]).map(|_| (start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_are_painted_in_the_table_only() {
        let text = "Kernel: running\n\nID   STATUS   PID\nweb  ready    12\ndb   crashed  -\n\nConverged: no (ready)\n";
        let out = status(text);
        assert!(out.contains("web  \x1b[32mready\x1b[0m    12\n"), "{out:?}");
        assert!(out.contains("db   \x1b[31mcrashed\x1b[0m  -\n"), "{out:?}");
        assert!(out.ends_with("\nConverged: no (ready)\n"), "{out:?}");
    }

    #[test]
    fn plan_signs_are_painted_and_nothing_else() {
        let text =
            "The kernel is not running.\n\n  + web  spawn  new\n  ! db   blocked  x\n\nPlan: 1\n";
        let out = plan(text);
        assert!(
            out.contains("  \x1b[32m+\x1b[0m web  spawn  new\n"),
            "{out:?}"
        );
        assert!(
            out.contains("  \x1b[35m!\x1b[0m db   blocked  x\n"),
            "{out:?}"
        );
        assert!(out.starts_with("The kernel is not running.\n\n"));
        assert!(out.ends_with("\nPlan: 1\n"));
    }
}
