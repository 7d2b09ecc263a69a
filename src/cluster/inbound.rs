//! The link's subscriptions, each a task: heartbeats (the directory), answers to this node's
//! RPCs, messages of imported topics, requests to exported services. Each takes the messages
//! already waiting (at most [`BATCH`]) under one hold of the router lock inside a [`Batch`] (what
//! they queue for local modules is written straight to their stdin when the batch ends, from
//! this task: no wake-up of each module's writer task), then waits — bounded — for local
//! outboxes those made congested, as a module's stdout reader does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Message, StatusCode, Subscriber};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Notify;

use super::connection::peer_event;
use super::link::Link;
use super::subjects;
use super::wire::{self, Heartbeat, RemoteService};
use crate::kernel::outbox::{Batch, Outbox};
use crate::kernel::Kernel;

/// Messages routed per hold of the router lock.
const BATCH: usize = 64;
/// At most this many services in a peer's heartbeat are kept.
const MAX_PEER_SERVICES: usize = 1024;

/// The next message and those already waiting behind it (at most [`BATCH`]).
async fn batch(sub: &mut Subscriber, out: &mut Vec<Message>) -> bool {
    let Some(first) = sub.next().await else {
        return false;
    };
    out.push(first);
    while out.len() < BATCH {
        match sub.next().now_or_never() {
            Some(Some(m)) => out.push(m),
            _ => break,
        }
    }
    true
}

/// Waits (bounded) for local outboxes a remote message made congested: lossless while the
/// local consumers keep up; meanwhile NATS buffers (bounded) for this subscription.
async fn wait_congested(kernel: &Kernel, congested: &mut Vec<Arc<Outbox>>) {
    let wait = Duration::from_millis(kernel.lifecycle().slow_consumer_ms + 1000);
    for ob in congested.drain(..) {
        ob.wait_drained(wait).await;
    }
}

pub(super) async fn heartbeats(
    kernel: Arc<Kernel>,
    link: Arc<Link>,
    mut sub: Subscriber,
    hb_now: Arc<Notify>,
) {
    let stale = Duration::from_millis(link.config.stale_ms);
    let mut warned_twin = false;
    while let Some(msg) = sub.next().await {
        let Ok(mut hb) = serde_json::from_slice::<Heartbeat>(&msg.payload) else {
            continue;
        };
        if !wire::sane_node(&hb.node) {
            continue;
        }
        if hb.node == link.config.node {
            if !warned_twin {
                tracing::warn!(node = %hb.node, "cluster: another kernel uses this node name: give each node its own `cluster.node`");
                warned_twin = true;
            }
            continue;
        }
        if hb.hello {
            hb_now.notify_one();
        }
        hb.services.retain(RemoteService::is_sane);
        hb.services.truncate(MAX_PEER_SERVICES);
        let grace = stale.max(Duration::from_millis(hb.every_ms.min(600_000) * 3));
        let mut core = kernel.core.lock();
        let Some(a) = core
            .cluster
            .as_mut()
            .filter(|a| Arc::ptr_eq(&a.link, &link))
        else {
            return;
        };
        if hb.bye {
            if a.dir.leave(&hb.node) {
                tracing::info!(node = %link.config.node, peer = %hb.node, "cluster: a node left");
                peer_event(&core, "left", &hb.node);
            }
            continue;
        }
        let seen = a.dir.seen(&hb.node, hb.services, Instant::now(), grace);
        if seen.joined {
            tracing::info!(node = %link.config.node, peer = %hb.node, services = ?seen.appeared, "cluster: a node joined");
            peer_event(&core, "joined", &hb.node);
        }
        if !seen.appeared.is_empty() {
            core.remote_services_appeared(&seen.appeared);
        }
    }
}

/// Answers to this node's RPCs.
pub(super) async fn answers(kernel: Arc<Kernel>, link: Arc<Link>, mut sub: Subscriber) {
    let mut msgs = Vec::new();
    let mut congested = Vec::new();
    while batch(&mut sub, &mut msgs).await {
        {
            // Written to the modules when it ends, after the router lock is released.
            let batch = Batch::open();
            let mut core = kernel.core.lock();
            for msg in msgs.drain(..) {
                let Some(kid) = link.kid_of(msg.subject.as_str()) else {
                    continue;
                };
                if msg.status == Some(StatusCode::NO_RESPONDERS) {
                    // Nobody serves it (any more): as for a local service without a provider.
                    core.remote_answer_error(kid, "service_not_found");
                    continue;
                }
                let body = wire::one_line(&msg.payload)
                    .then(|| serde_json::from_slice::<wire::ReplyBody>(&msg.payload).ok())
                    .flatten();
                match body {
                    Some(b) => core.remote_answer(kid, b.result, b.error, &mut congested),
                    None => {
                        link.counters.dropped_in.fetch_add(1, Ordering::Relaxed);
                        core.remote_answer_error(kid, "invalid answer from another node");
                    }
                }
            }
            drop(core);
            drop(batch);
        }
        wait_congested(&kernel, &mut congested).await;
    }
}

/// Messages of imported topics, delivered to local subscribers (never those this node sent).
pub(super) async fn topics(
    kernel: Arc<Kernel>,
    link: Arc<Link>,
    mut sub: Subscriber,
    index: usize,
) {
    let prefix = subjects::topic_prefix(&link.config.name);
    let mut msgs = Vec::new();
    let mut congested = Vec::new();
    while batch(&mut sub, &mut msgs).await {
        {
            // Written to the modules when it ends, after the router lock is released.
            let batch = Batch::open();
            let mut core = kernel.core.lock();
            for msg in msgs.drain(..) {
                let Some(topic) = imported_topic(&msg, &prefix, &link.config.node) else {
                    continue;
                };
                // Several import patterns may match: delivered through the first only.
                if link.import_index(topic) != Some(index) {
                    continue;
                }
                let Some(payload) = wire::payload(&msg.payload) else {
                    link.counters.dropped_in.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                link.counters.received.fetch_add(1, Ordering::Relaxed);
                core.remote_deliver(topic, payload, &mut congested);
            }
            drop(core);
            drop(batch);
        }
        wait_congested(&kernel, &mut congested).await;
    }
}

/// The topic of a message from another node: its subject is `<prefix><origin>.<topic>`, and
/// `None` when the origin is `node` (this node never delivers its own messages) or the subject
/// is not a topic message's.
fn imported_topic<'m>(msg: &'m Message, prefix: &str, node: &str) -> Option<&'m str> {
    let rest = msg.subject.as_str().strip_prefix(prefix)?;
    let (origin, topic) = subjects::origin_and_topic(rest)?;
    (origin != node).then_some(topic)
}

/// Requests to an exported service, forwarded to the local provider.
pub(super) async fn requests(
    kernel: Arc<Kernel>,
    link: Arc<Link>,
    mut sub: Subscriber,
    service: String,
) {
    let mut msgs = Vec::new();
    let mut congested = Vec::new();
    while batch(&mut sub, &mut msgs).await {
        {
            // Written to the modules when it ends, after the router lock is released.
            let batch = Batch::open();
            let mut core = kernel.core.lock();
            for msg in msgs.drain(..) {
                let Some(reply) = msg.reply else {
                    continue;
                };
                link.counters.received.fetch_add(1, Ordering::Relaxed);
                let body = wire::one_line(&msg.payload)
                    .then(|| serde_json::from_slice::<wire::RequestBody>(&msg.payload).ok())
                    .flatten()
                    .filter(|b| !b.f.contains(char::is_control) && b.f.len() <= 256);
                match body {
                    Some(b) => {
                        core.remote_request(&link, reply, &service, &b.m, &b.f, b.p, &mut congested)
                    }
                    None => {
                        link.counters.dropped_in.fetch_add(1, Ordering::Relaxed);
                        link.reply_error(&reply, "invalid request from another node");
                    }
                }
            }
            drop(core);
            drop(batch);
        }
        wait_congested(&kernel, &mut congested).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(subject: &str) -> Message {
        Message {
            subject: subject.into(),
            reply: None,
            payload: bytes::Bytes::from_static(b"1"),
            headers: None,
            status: None,
            description: None,
            length: 1,
        }
    }

    #[test]
    fn a_node_takes_the_topic_of_other_nodes_messages_only() {
        let m = message("p.topic.a.metrics.cpu");
        assert_eq!(imported_topic(&m, "p.topic.", "b"), Some("metrics.cpu"));
        assert_eq!(imported_topic(&m, "p.topic.", "a"), None, "its own");
        assert_eq!(
            imported_topic(&m, "p.topic.", "a-1"),
            Some("metrics.cpu"),
            "names are compared whole"
        );
        assert_eq!(imported_topic(&m, "q.topic.", "b"), None);
        assert_eq!(
            imported_topic(&message("p.topic.metrics"), "p.topic.", "b"),
            None,
            "no node token"
        );
    }
}
