//! Where a dotted key is written in a YAML text (1-based line and column), so that a message can
//! point the operator at the line to fix. Follows block mappings; where the path leaves them (a
//! flow mapping, a sequence, a scalar) the deepest key found is given.

use super::{
    entry_end, first_content, is_block_mapping, parse_key_line, split_lines, Kind, ValueKind,
};

/// The line and column of the deepest key of `key_path` found in `text`; `None` when not even its
/// first segment is written in block style.
pub fn locate_key(text: &str, key_path: &str) -> Option<(usize, usize)> {
    let lines = split_lines(text)?;
    let (mut start, mut end) = (0usize, lines.len());
    let mut best = None;
    for seg in key_path.split('.') {
        let Some(fc) = first_content(&lines, start, end) else {
            break;
        };
        let child_indent = lines[fc].indent;
        let found = (fc..end).find_map(|j| {
            let l = &lines[j];
            if l.kind != Kind::Content || l.indent != child_indent {
                return None;
            }
            parse_key_line(l.text, l.indent)
                .filter(|k| k.key == seg)
                .map(|k| (j, k))
        });
        let Some((line, key)) = found else { break };
        best = Some((line + 1, lines[line].indent + 1));
        let e_end = entry_end(&lines, line, key.value == ValueKind::Empty);
        if key.value != ValueKind::Empty
            || !is_block_mapping(&lines, line + 1, e_end, Some(lines[line].indent))
        {
            break;
        }
        (start, end) = (line + 1, e_end);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_deepest_written_key() {
        let text = "# c\nk:\n  a: 1\n  b:\n    c: 2\nf: {x: 1}\n";
        assert_eq!(locate_key(text, "k"), Some((2, 1)));
        assert_eq!(locate_key(text, "k.b.c"), Some((5, 5)));
        assert_eq!(locate_key(text, "k.b.nope"), Some((4, 3)));
        assert_eq!(locate_key(text, "f.x"), Some((6, 1)));
        assert_eq!(locate_key(text, "nope"), None);
        assert_eq!(locate_key("", "a"), None);
    }
}
