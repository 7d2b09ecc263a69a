//! The cluster: kernels on several hosts share exported services and topics through an existing
//! NATS server (specs/cluster.md). Nothing here runs, connects or allocates unless config.yaml
//! has a `cluster` section.
//!
//! - [`apply`] is the reconcile pass's `cluster` action: it replaces the router's [`Attached`]
//!   link (the old one says goodbye to its peers and closes) and starts the connection task.
//! - [`link::Link`]: what the router calls under its lock (export a topic, send a request,
//!   answer a remote caller), never waiting; [`directory::Directory`]: the other nodes and their
//!   ready exported services, consulted by the router after local providers (local wins).
//! - [`connection`]: the task that connects (with backoff), subscribes, sends heartbeats and
//!   sweeps silent peers; [`inbound`]: its subscriptions' tasks; [`writer`]: what waits in the
//!   link's queue, sent in order; [`subjects`] and [`wire`]: what crosses.
//! - [`status`]: the `cluster` block of `pons status --json`; [`tls`]: the `cluster.tls` files,
//!   the TLS options they give, failed handshakes explained.

pub mod connection;
pub mod directory;
pub mod inbound;
pub mod link;
pub mod status;
pub mod subjects;
pub mod tls;
pub mod wire;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use pons_reconciler::cluster::DesiredCluster;
use pons_reconciler::ObservedCluster;
use tokio::sync::watch;

use crate::kernel::router::Core;
use crate::kernel::Kernel;
pub use link::Link;

/// The link the router holds while a `cluster` section is applied.
pub struct Attached {
    pub link: Arc<Link>,
    pub dir: directory::Directory,
    /// What was applied (the plan's observed input).
    pub applied: ObservedCluster,
    /// Dropped (or set) to end the connection task, which then says goodbye and closes.
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Attached {
    /// Whether a peer has a ready provider of `service` and this node imports it.
    #[inline]
    pub fn provides(&self, service: &str) -> bool {
        self.link.imports_service(service) && self.link.is_connected() && self.dir.provides(service)
    }
}

/// Applies the pass's `cluster` action: the old link (if any) is closed, a new one started for
/// `desired` (if any). Restarts no module.
pub fn apply(kernel: &Arc<Kernel>, desired: Option<&DesiredCluster>) {
    let old = kernel.core.lock().detach_cluster();
    if let Some(old) = old {
        tracing::info!(node = %old.link.config.node, "cluster: disconnecting (the cluster section changed or went)");
        let _ = old.stop.send(true);
    }
    let Some(d) = desired else {
        return;
    };
    let link = Link::new(d.config.clone());
    let (stop, stop_rx) = watch::channel(false);
    tracing::info!(
        node = %d.config.node,
        cluster = %d.config.name,
        url = %d.config.urls.join(", "),
        exports = ?d.config.export.services,
        imports = ?d.config.import.services,
        "cluster: connecting"
    );
    let task = tokio::spawn(connection::run(kernel.clone(), link.clone(), stop_rx));
    kernel.core.lock().cluster = Some(Attached {
        link,
        dir: Default::default(),
        applied: ObservedCluster::applied(d),
        stop,
        task: Some(task),
    });
}

/// Kernel shutdown: the link says goodbye (peers drop this node's services at once) and closes,
/// waited for at most a second.
pub async fn shutdown(kernel: &Kernel) {
    let old = kernel.core.lock().detach_cluster();
    if let Some(mut old) = old {
        let _ = old.stop.send(true);
        if let Some(t) = old.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
    }
}

/// The applied cluster section, for the planner.
pub fn observed(core: &Core) -> Option<ObservedCluster> {
    core.cluster.as_ref().map(|a| a.applied.clone())
}
