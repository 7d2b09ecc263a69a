//! The remote-service directory: the other nodes heard from and the exported services each has
//! a ready provider for. A node that has not been heard from for `cluster.staleMs` (or says
//! `bye`), and every node when the connection to NATS is lost, leave it: their services are no
//! longer found. Plain data, no clock of its own: times are passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::wire::RemoteService;

/// One other node.
#[derive(Debug, Clone)]
pub struct Peer {
    pub services: Vec<RemoteService>,
    pub last_seen: Instant,
    /// How long it may stay silent: this node's `staleMs`, or three of the peer's heartbeat
    /// intervals if that is longer (nodes may be configured differently).
    pub stale: Duration,
}

#[derive(Debug, Default)]
pub struct Directory {
    pub peers: BTreeMap<String, Peer>,
}

/// What a heartbeat changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// The node was not in the directory.
    pub joined: bool,
    /// Services of the node that were not listed before.
    pub appeared: Vec<String>,
}

impl Directory {
    /// A heartbeat from `node` listing `services` at `now`; `stale`: how long it may stay
    /// silent.
    pub fn seen(
        &mut self,
        node: &str,
        mut services: Vec<RemoteService>,
        now: Instant,
        stale: Duration,
    ) -> Seen {
        services.sort();
        services.dedup();
        let mut out = Seen::default();
        match self.peers.get_mut(node) {
            Some(p) => {
                out.appeared = services
                    .iter()
                    .filter(|s| !p.services.iter().any(|o| o.service == s.service))
                    .map(|s| s.service.clone())
                    .collect();
                p.services = services;
                p.last_seen = now;
                p.stale = stale;
            }
            None => {
                out.joined = true;
                out.appeared = services.iter().map(|s| s.service.clone()).collect();
                self.peers.insert(
                    node.to_string(),
                    Peer {
                        services,
                        last_seen: now,
                        stale,
                    },
                );
            }
        }
        out.appeared.dedup();
        out
    }

    /// Drops `node` (it said `bye`); true when it was there.
    pub fn leave(&mut self, node: &str) -> bool {
        self.peers.remove(node).is_some()
    }

    /// Drops the nodes silent for longer than they may be at `now`; returns them.
    pub fn sweep(&mut self, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_seen) >= p.stale)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &gone {
            self.peers.remove(n);
        }
        gone
    }

    /// Drops every node (the connection is lost); returns them.
    pub fn clear(&mut self) -> Vec<String> {
        std::mem::take(&mut self.peers).into_keys().collect()
    }

    /// Whether some node has a ready provider of `service`.
    pub fn provides(&self, service: &str) -> bool {
        self.peers
            .values()
            .any(|p| p.services.iter().any(|s| s.service == service))
    }

    /// The earliest time a node would become stale.
    pub fn next_stale(&self) -> Option<Instant> {
        self.peers.values().map(|p| p.last_seen + p.stale).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(s: &str) -> RemoteService {
        RemoteService {
            service: s.into(),
            module: "m".into(),
        }
    }

    #[test]
    fn join_appear_sweep_and_clear() {
        let t0 = Instant::now();
        let stale = Duration::from_millis(1000);
        let mut d = Directory::default();
        let s = d.seen("a", vec![svc("echo")], t0, stale);
        assert!(s.joined);
        assert_eq!(s.appeared, ["echo"]);
        assert!(d.provides("echo") && !d.provides("db"));
        let s = d.seen(
            "a",
            vec![svc("echo"), svc("db")],
            t0 + Duration::from_millis(500),
            stale,
        );
        assert!(!s.joined);
        assert_eq!(s.appeared, ["db"]);
        d.seen("b", vec![], t0 + Duration::from_millis(900), stale);
        assert!(d.sweep(t0 + Duration::from_millis(1400)).is_empty());
        assert_eq!(d.sweep(t0 + Duration::from_millis(1500)), ["a"]);
        assert!(!d.provides("echo"));
        assert_eq!(d.next_stale(), Some(t0 + Duration::from_millis(1900)));
        assert_eq!(d.clear(), ["b"]);
        assert!(d.peers.is_empty());
        d.seen("c", vec![svc("x")], t0, stale);
        assert!(d.leave("c") && !d.leave("c"));
    }
}
