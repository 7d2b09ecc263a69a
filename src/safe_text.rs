//! Text written by modules made safe for an operator's terminal: what a module
//! prints must not forge a line of the human log nor paint or clear the screen.
//!
//! [`terminal_safe`] removes SGR sequences (`ESC [ … m`: colours and styles, as in a Deno stack
//! trace) and escapes every other control character — `\n`, `\r`, `\t` as such, the rest as
//! `\u{..}` (C0, DEL, C1; so `ESC [2J` becomes `\u{1b}[2J`). Text without control characters is
//! returned as it is, without copying. The human log formatter applies it to everything a
//! record shows; the kernel applies it to module stderr lines and to the reasons `pons status`
//! shows.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with SGR sequences removed and other control characters escaped. See the module docs.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !has_controls(s.as_bytes()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '\x1b' {
            if let Some(len) = sgr_len(rest) {
                rest = &rest[len..];
                continue;
            }
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// Whether `b` (UTF-8) holds a C0 control, DEL or a C1 control (U+0080–U+009F: `C2 80`–`C2 9F`).
fn has_controls(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &c)| {
        c < 0x20
            || c == 0x7f
            || (c == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    })
}

/// Length of the SGR sequence `ESC [ <parameters> m` at the start of `s`, if there is one.
fn sgr_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.get(1) != Some(&b'[') {
        return None;
    }
    let params = b[2..]
        .iter()
        .take_while(|&&c| c.is_ascii_digit() || c == b';' || c == b':')
        .count();
    (b.get(2 + params) == Some(&b'm')).then_some(3 + params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(terminal_safe("hello é ° wörld"), Cow::Borrowed(_)));
        assert_eq!(terminal_safe("hello é ° wörld"), "hello é ° wörld");
    }

    #[test]
    fn colours_go_other_controls_are_escaped() {
        let deno =
            "    at \x1b[0m\x1b[36mfile:///m/main.ts\x1b[0m:\x1b[33m3\x1b[0m:\x1b[33m9\x1b[0m";
        assert_eq!(terminal_safe(deno), "    at file:///m/main.ts:3:9");
        assert_eq!(
            terminal_safe("a\nb\rc\td\x1b[2Je\x07f\x7fg\u{9b}h\x1b"),
            "a\\nb\\rc\\td\\u{1b}[2Je\\u{7}f\\u{7f}g\\u{9b}h\\u{1b}"
        );
        assert_eq!(terminal_safe("\x1b[38;5;196mred\x1b[m"), "red");
        assert_eq!(terminal_safe("\x1b[1"), "\\u{1b}[1");
    }

    #[test]
    fn idempotent() {
        let once = terminal_safe("x\n\x1b[2J\x1b[31my");
        assert_eq!(terminal_safe(&once), once);
    }
}
