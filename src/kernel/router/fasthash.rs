//! The router's maps (module ids, topics, services, RPC ids) use rustc-hash's Fx hasher instead
//! of the standard SipHash.
//!
//! Every routed message costs several map lookups (the sender, its capabilities, the topic's
//! subscribers, each subscriber, the ack); with SipHash they were about a sixth of the routing
//! instructions (benches/RESULTS.md). The keys of these maps come from manifests and
//! permissions.yaml (operator-approved), never from module output, so collision flooding is not
//! a concern: a module can only *look up* a key it chooses, not insert one.

/// `HashMap` with the Fx hasher.
pub type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;
/// `HashSet` with the Fx hasher.
pub type FastSet<T> = rustc_hash::FxHashSet<T>;
