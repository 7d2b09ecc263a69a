//! The common case of [`super::decode`] without serde: one pass over a line that is a JSON
//! object whose keys need no unescaping, validating every value on the way and keeping the
//! envelope's fields as slices of the line.
//!
//! Whatever this does not handle itself goes to the general parser ([`envelope`] returns `None`):
//! another top-level value, a key with an escape or a control character, nesting deeper than
//! [`MAX_DEPTH`], and every syntax error. So a line it accepts is valid JSON and gives the same
//! fields, byte for byte, as serde_json would; the general parser gives the errors. The grammar
//! checked is serde_json's: whitespace is space, tab, CR and LF; strings may not hold control
//! characters, and their escapes are `\" \\ \/ \b \f \n \r \t` and `\u` with four hex digits;
//! numbers are `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.

use serde::de::value::{BorrowedStrDeserializer, Error, MapDeserializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::Envelope;

/// Nesting (the top-level object is 1) past which the general parser decides (serde_json
/// refuses past 128).
const MAX_DEPTH: u32 = 64;

/// The fields of the object `text` (valid UTF-8, trimmed), or `None` when the general parser
/// must decide.
pub(super) fn envelope(text: &str) -> Option<Envelope<'_>> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
    };
    let mut env = Envelope::default();
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        s.i += 1;
    } else {
        loop {
            let key = s.plain_key()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let start = s.i;
            s.value(1)?;
            // Last one wins, as with JSON.parse and the general parser.
            let value = text.get(start..s.i)?;
            match key {
                b"type" => env.ty = Some(value),
                b"id" => env.id = Some(value),
                b"topic" => env.topic = Some(value),
                b"service" => env.service = Some(value),
                b"method" => env.method = Some(value),
                b"level" => env.level = Some(value),
                b"msg" => env.msg = Some(value),
                b"params" => env.params = Some(raw(value)?),
                b"payload" => env.payload = Some(raw(value)?),
                b"result" => env.result = Some(raw(value)?),
                b"error" => env.error = Some(raw(value)?),
                b"data" => env.data = Some(raw(value)?),
                b"items" => env.items = Some(raw(value)?),
                _ => {}
            }
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(env)
}

/// `json` (one complete JSON value, validated by the scanner) as a borrowed [`RawValue`].
///
/// serde_json has no public way to lend validated text as a `RawValue` without reading it again
/// (`from_str` on it costs ≈ 8 instructions per byte: +1,100 for a 128-byte payload, +7,000 for
/// 4 KiB, three times what scanning it did). So the first choice is how serde_json's own parser
/// hands raw values over: a map holding its private marker key and the text. That is a private
/// detail a serde_json update may change; then the marker yields nothing and the public
/// `from_str` does the work, correct and slower, and `raw_values_are_lent_without_a_second_read`
/// fails to say so.
fn raw(json: &str) -> Option<&RawValue> {
    marker_raw(json).or_else(|| serde_json::from_str(json).ok())
}

/// The private way of [`raw`]; `None` if serde_json no longer accepts it.
pub(super) fn marker_raw(json: &str) -> Option<&RawValue> {
    const MARKER: &str = "$serde_json::private::RawValue";
    let map = MapDeserializer::<_, Error>::new(std::iter::once((
        BorrowedStrDeserializer::new(MARKER),
        BorrowedStrDeserializer::new(json),
    )));
    <&RawValue>::deserialize(map)
        .ok()
        .filter(|r| std::ptr::eq(r.get(), json))
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A top-level key without escapes or control characters: its bytes between the quotes.
    fn plain_key(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let b = self.b;
        let start = self.i;
        let len = stop(b.get(start..)?)?;
        if b.get(start + len) != Some(&b'"') {
            return None;
        }
        self.i = start + len + 1;
        Some(&b[start..start + len])
    }

    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(),
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.value(depth)?;
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.b.get(self.i..)?.starts_with(word) {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    /// A string (the scanner is on its opening quote), escapes checked.
    fn string(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            self.i += stop(self.b.get(self.i..)?)?;
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.b.get(self.i..self.i + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 4;
                    }
                    _ => return None,
                },
                // A control character.
                _ => return None,
            }
        }
    }
}

/// Where string content `s` stops: the index of its first `"`, `\\` or control character.
/// `None` when there is none (the string is unterminated).
#[inline]
fn stop(s: &[u8]) -> Option<usize> {
    // Ids, names and keys end within a few bytes: look at the first sixteen a word at a time.
    for at in [0, 8] {
        let Some(chunk) = s.get(at..at + 8) else {
            return s
                .get(at..)?
                .iter()
                .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
                .map(|k| at + k);
        };
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let hit = stops_in(u64::from_le_bytes(w));
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
    }
    // Longer text: find the quote or backslash, then check what lies before for control
    // characters, each in one vectorised pass.
    let end = 16 + memchr::memchr2(b'"', b'\\', &s[16..])?;
    let body = &s[16..end];
    if body.iter().fold(false, |any, &c| any | (c < 0x20)) {
        return Some(16 + body.iter().position(|&c| c < 0x20)?);
    }
    Some(end)
}

/// The high bit of every byte of `w` (little-endian) that is a control character, `"` or `\\`,
/// and possibly of bytes after the first such: the lowest one set is exact (a borrow only
/// carries upwards, and bytes ≥ 0x80 are masked out by `!w`).
#[inline]
fn stops_in(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let q = w ^ (b'"' as u64 * ONES);
    let bs = w ^ (b'\\' as u64 * ONES);
    ((w.wrapping_sub(0x20 * ONES) & !w)
        | (q.wrapping_sub(ONES) & !q)
        | (bs.wrapping_sub(ONES) & !bs))
        & HIGH
}

#[cfg(test)]
mod tests;
