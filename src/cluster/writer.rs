//! The link's writer task: sends what waits in the link's queue (what could not go straight
//! to the NATS client) in order. While the connection is down, records are dropped and counted.
//! Each record's subject and body are carved out of the task's own [`Arena`] (no allocation per
//! message), and a record the client takes at once costs no timer.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures_util::FutureExt;

use super::link::{to_subject, Arena, Link};
use super::wire::{self, Kind};

/// Writes the link's queue to NATS. While the connection is down, records are dropped and
/// counted: nothing waits for a server that is gone.
pub(super) async fn run(client: Client, link: Arc<Link>) {
    let max = Duration::from_millis(link.config.stale_ms);
    let mut batch: Vec<u8> = Vec::with_capacity(8 << 10);
    let mut arena = Arena::default();
    loop {
        link.outbox.swap_queued(&mut batch);
        if batch.is_empty() {
            if link.outbox.is_closed() {
                return;
            }
            // A push that made the queue non-empty since the swap left a permit: no lost wake.
            link.outbox.writer_wake().await;
            continue;
        }
        let n = batch.len();
        for r in wire::records(&batch) {
            if !link.is_connected() {
                link.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let subject = arena.carve(r.subject.len(), |b| {
                b.extend_from_slice(r.subject.as_bytes())
            });
            let subject = to_subject(subject);
            let body = arena.carve(r.body.len(), |b| b.extend_from_slice(r.body));
            let sent = match r.kind {
                Kind::Request => {
                    let reply =
                        arena.carve(r.reply.len(), |b| b.extend_from_slice(r.reply.as_bytes()));
                    send(
                        max,
                        client.publish_with_reply(subject, to_subject(reply), body),
                    )
                    .await
                }
                Kind::Publish | Kind::Reply => send(max, client.publish(subject, body)).await,
            };
            if sent {
                link.counters.sent.fetch_add(1, Ordering::Relaxed);
            } else {
                link.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        batch.clear();
        if batch.capacity() > (4 << 20) {
            batch.shrink_to(64 << 10);
        }
        link.outbox.written(n);
    }
}

/// Hands one message to the client: at once when its channel has room, else waiting for room
/// at most `max`. True when the client took it.
async fn send<E>(max: Duration, publish: impl Future<Output = Result<(), E>>) -> bool {
    let mut publish = std::pin::pin!(publish);
    if let Some(done) = publish.as_mut().now_or_never() {
        return done.is_ok();
    }
    matches!(tokio::time::timeout(max, publish).await, Ok(Ok(())))
}
