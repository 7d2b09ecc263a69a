//! The `cluster` block of `pons status --json`, and the remote services listed in `services`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Attached;

/// `"cluster":{"node","name","connected","url","peers":[…],…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub node: String,
    pub name: String,
    pub connected: bool,
    /// The NATS server URL(s), comma-separated (no credentials: they are never part of it).
    pub url: String,
    /// Whether the link is encrypted: TLS required by the section (`cluster.tls`, `tls://`), or
    /// by the server for the current connection.
    #[serde(default)]
    pub tls: bool,
    pub peers: Vec<PeerStatus>,
    /// Why the last connection attempt failed or the connection was lost (never a secret).
    #[serde(default)]
    pub last_error: Option<String>,
    /// The kind of credentials in use (`token`, `user and password`, `creds file`), never
    /// their values.
    #[serde(default)]
    pub credentials: Option<String>,
    /// Messages sent to and received from other nodes, and those dropped on the way
    /// (cross-node delivery is at-most-once).
    #[serde(default)]
    pub sent: u64,
    #[serde(default)]
    pub received: u64,
    #[serde(default)]
    pub dropped: u64,
}

/// One other node as this one hears it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    pub node: String,
    /// Its exported services with a ready provider.
    pub services: Vec<String>,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms: u64,
}

pub fn report(a: &Attached) -> ClusterStatus {
    let now = Instant::now();
    let link = &a.link;
    let c = &link.config;
    ClusterStatus {
        node: c.node.clone(),
        name: c.name.clone(),
        connected: link.is_connected(),
        url: c.urls.join(", "),
        tls: link.is_tls(),
        peers: a
            .dir
            .peers
            .iter()
            .map(|(node, p)| PeerStatus {
                node: node.clone(),
                services: p.services.iter().map(|s| s.service.clone()).collect(),
                last_seen_ms: now.saturating_duration_since(p.last_seen).as_millis() as u64,
            })
            .collect(),
        last_error: link.state.lock().last_error.clone(),
        credentials: c.credentials.as_ref().map(|k| k.kind().to_string()),
        sent: link.counters.sent.load(Ordering::Relaxed),
        received: link.counters.received.load(Ordering::Relaxed),
        dropped: link.dropped_out() + link.counters.dropped_in.load(Ordering::Relaxed),
    }
}

/// Remote services the node takes (imported, with a ready provider on a peer): (service,
/// module, node), sorted.
pub fn remote_services(a: &Attached) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = a
        .dir
        .peers
        .iter()
        .flat_map(|(node, p)| {
            p.services
                .iter()
                .filter(|s| a.link.imports_service(&s.service))
                .map(move |s| (s.service.clone(), s.module.clone(), node.clone()))
        })
        .collect();
    out.sort();
    out
}
