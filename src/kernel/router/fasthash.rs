//! A fast non-cryptographic hasher for the router's maps (module ids, topics, services, RPC ids).
//!
//! Every routed message costs several map lookups (the sender, its capabilities, the topic's
//! subscribers, each subscriber, the ack); with the standard SipHash they were about a tenth of
//! the kernel's CPU per delivery. The keys of these maps come from manifests and permissions.yaml
//! (operator-approved), never from module output, so collision flooding is not a concern: a
//! module can only *look up* a key it chooses, not insert one.
//!
//! The mixing is that of rustc-hash 2 (multiply-add per 8-byte word, a final rotate so the high
//! bits hashbrown uses for its control bytes carry entropy).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// `HashSet` with [`FastHasher`].
pub type FastSet<T> = HashSet<T, BuildHasherDefault<FastHasher>>;

const K: u64 = 0xf135_7aea_2e62_a9c5;

/// See the module docs.
#[derive(Default, Clone, Copy)]
pub struct FastHasher {
    h: u64,
}

impl FastHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.h = self.h.wrapping_add(w).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
        self.add(bytes.len() as u64);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.h.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn h(s: &str) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(s)
    }

    #[test]
    fn distinct_keys_hash_apart() {
        let keys = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "sub0",
            "sub1",
            "system:module:ready",
            "system:module:readz",
            "12345678",
            "123456789",
        ];
        let mut seen = HashSet::new();
        for k in keys {
            assert!(seen.insert(h(k)), "collision for {k:?}");
        }
        assert_eq!(h("same"), h("same"));
    }

    #[test]
    fn maps_work() {
        let mut m: FastMap<String, u32> = FastMap::default();
        for i in 0..1000 {
            m.insert(format!("module-{i}"), i);
        }
        assert_eq!(m.get("module-777"), Some(&777));
        assert_eq!(m.len(), 1000);
    }
}
