//! The link's writer task: sends what waits in the link's queue (what could not go straight
//! to the NATS client) in order. While the connection is down, records are dropped and counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;

use super::link::Link;
use super::wire::{self, Kind};

/// Writes the link's queue to NATS. While the connection is down, records are dropped and
/// counted: nothing waits for a server that is gone.
pub(super) async fn run(client: Client, link: Arc<Link>) {
    let origin = link.origin().clone();
    let max = Duration::from_millis(link.config.stale_ms);
    let mut batch: Vec<u8> = Vec::with_capacity(8 << 10);
    loop {
        link.outbox.swap_queued(&mut batch);
        if batch.is_empty() {
            if link.outbox.is_closed() {
                return;
            }
            link.wake.notified().await;
            continue;
        }
        let n = batch.len();
        for r in wire::records(&batch) {
            if !link.is_connected() {
                link.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let body = Bytes::copy_from_slice(r.body);
            let subject = r.subject.to_string();
            let sent = match r.kind {
                Kind::Publish => {
                    tokio::time::timeout(
                        max,
                        client.publish_with_headers(subject, origin.clone(), body),
                    )
                    .await
                }
                Kind::Request => {
                    tokio::time::timeout(
                        max,
                        client.publish_with_reply(subject, r.reply.to_string(), body),
                    )
                    .await
                }
                Kind::Reply => tokio::time::timeout(max, client.publish(subject, body)).await,
            };
            match sent {
                Ok(Ok(())) => {
                    link.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    link.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        batch.clear();
        if batch.capacity() > (4 << 20) {
            batch.shrink_to(64 << 10);
        }
        link.outbox.written(n);
    }
}
