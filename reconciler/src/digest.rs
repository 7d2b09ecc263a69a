//! SHA-256 as 64 lowercase hex characters (sha2 0.10; hex-encoded explicitly).

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Incremental hashing of labelled parts (each part is length-prefixed, so `("ab","c")` and
/// `("a","bc")` differ).
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher(Sha256::new())
    }
    pub fn part(&mut self, label: &str, bytes: &[u8]) -> &mut Hasher {
        for chunk in [label.as_bytes(), bytes] {
            self.0.update((chunk.len() as u64).to_le_bytes());
            self.0.update(chunk);
        }
        self
    }
    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(
            sha256_hex(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn parts_are_delimited() {
        let mut a = Hasher::new();
        a.part("x", b"ab").part("y", b"c");
        let mut b = Hasher::new();
        b.part("x", b"a").part("y", b"bc");
        assert_ne!(a.finish(), b.finish());
    }
}
