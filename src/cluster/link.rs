//! [`Link`]: the side of the cluster connection the router sees, called under the router lock
//! and never waiting. Outbound messages go straight to the NATS client when it takes them at
//! once, else to the link's queue (an [`Outbox`], so a publisher whose messages NATS does not
//! take fast enough is held back like one whose subscriber is slow, and the queue is capped);
//! the connection task's writer sends them. While the connection is down exported topic
//! messages are dropped (and counted), not buffered: cross-node delivery is at-most-once.
//!
//! A message costs no allocation of its own on the way out: its body and its subject are
//! written into the link's [`Arena`] and handed to async-nats as shared [`Bytes`] (which it
//! clones by reference count), and the subjects of imported services are built once.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::Subject;
use bytes::{Bytes, BytesMut};
use pons_reconciler::cluster::ClusterConfig;
use serde_json::value::RawValue;

use super::subjects;
use super::wire::{self, Kind};
use crate::kernel::outbox::Outbox;
use crate::kernel::router::topics::{Pattern, PatternSet};

/// Counters of `pons status` (`cluster.sent`, `received`, `dropped`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages handed to NATS (topic messages, requests, answers).
    pub sent: AtomicU64,
    /// Topic messages and requests received from other nodes.
    pub received: AtomicU64,
    /// Outbound messages not sent: the connection was down, the queue over its cap, the topic
    /// not a valid subject, NATS refused them.
    pub dropped_out: AtomicU64,
    /// Inbound messages not delivered: not one line of JSON, or NATS dropped them for a slow
    /// subscription.
    pub dropped_in: AtomicU64,
}

/// The connection's state as `pons status` shows it.
#[derive(Debug, Default, Clone)]
pub struct LinkState {
    /// Why the last connection attempt failed, or why the connection was lost.
    pub last_error: Option<String>,
}

pub struct Link {
    pub config: ClusterConfig,
    export_topics: PatternSet,
    /// Import patterns in the order of the section: a message arriving through several of
    /// them is delivered through the first only.
    pub import_topics: Vec<Pattern>,
    pub outbox: Arc<Outbox>,
    connected: AtomicBool,
    /// This link's reply prefix (`<inbox>.<kid>`).
    pub inbox: String,
    pub counters: Counters,
    pub state: parking_lot::Mutex<LinkState>,
    /// Requests from other nodes forwarded to local providers and not answered yet (capped at
    /// `lifecycle.maxPendingRpcs`, like a local caller's).
    in_flight: std::sync::atomic::AtomicUsize,
    client: std::sync::OnceLock<async_nats::Client>,
    /// `<name>.svc.<service>` of each imported service, in the (sorted) order of
    /// `config.import.services`.
    service_subjects: Vec<Subject>,
    /// `<name>.topic.<node>.`: this node's topic messages name it as their origin.
    topic_prefix: String,
    arena: parking_lot::Mutex<Arena>,
}

/// Where outbound bodies and subjects are written: one buffer that each message is split off
/// as shared [`Bytes`] (a reference count, no allocation of its own; the buffer is reused once
/// every message split off it is gone). A message larger than [`Arena::LARGE`] gets a buffer of
/// its own, so the arena stays small.
#[derive(Default)]
pub(super) struct Arena(BytesMut);

impl Arena {
    const BLOCK: usize = 16 << 10;
    const LARGE: usize = 4 << 10;

    /// `write`'s output (about `hint` bytes) as shared bytes.
    pub(super) fn carve(&mut self, hint: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
        if hint > Self::LARGE {
            let mut own = BytesMut::with_capacity(hint);
            write(&mut own);
            return own.freeze();
        }
        if self.0.capacity() < hint + 64 {
            self.0.reserve(Self::BLOCK);
        }
        write(&mut self.0);
        self.0.split().freeze()
    }
}

/// `bytes` as a subject (written from `str`s, so always UTF-8).
pub(super) fn to_subject(bytes: Bytes) -> Subject {
    Subject::from_utf8(bytes).unwrap_or_else(|_| Subject::from_static(""))
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("node", &self.config.node)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Link {
    pub fn new(config: ClusterConfig) -> Arc<Link> {
        let service_subjects = config
            .import
            .services
            .iter()
            .map(|s| {
                let s = Subject::from(subjects::service(&config.name, s));
                // Made shared now: every later clone is a reference count.
                drop(s.clone());
                s
            })
            .collect();
        Arc::new(Link {
            service_subjects,
            topic_prefix: subjects::origin_prefix(&config.name, &config.node),
            arena: Default::default(),
            export_topics: PatternSet::new(config.export.topics.iter()),
            import_topics: config
                .import
                .topics
                .iter()
                .map(|p| Pattern::parse(p))
                .collect(),
            inbox: subjects::inbox(&config.name, &config.node),
            config,
            outbox: Outbox::new(),
            connected: AtomicBool::new(false),
            counters: Counters::default(),
            state: Default::default(),
            in_flight: Default::default(),
            client: Default::default(),
        })
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(super) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
    }

    /// Whether the link is encrypted: the section requires TLS, or the server required it for
    /// the current connection (a `nats://` URL to a TLS server is upgraded, as by every NATS
    /// client).
    pub fn is_tls(&self) -> bool {
        self.config.requires_tls()
            || (self.is_connected()
                && self
                    .client
                    .get()
                    .is_some_and(|c| c.server_info().tls_required))
    }

    /// Outbound messages not sent, the queue's drops included.
    pub fn dropped_out(&self) -> u64 {
        self.counters.dropped_out.load(Ordering::Relaxed) + self.outbox.dropped()
    }

    /// Whether `service` is taken from other nodes.
    pub fn imports_service(&self, service: &str) -> bool {
        self.config.imports_service(service)
    }

    /// Whether `service` is offered to other nodes.
    pub fn exports_service(&self, service: &str) -> bool {
        self.config
            .export
            .services
            .binary_search_by(|s| s.as_str().cmp(service))
            .is_ok()
    }

    /// The index of the first import pattern matching `topic`.
    pub fn import_index(&self, topic: &str) -> Option<usize> {
        self.import_topics.iter().position(|p| p.matches(topic))
    }

    /// Sends one message: straight to the NATS client when nothing waits in the queue and the
    /// client takes it at once (its channel has room), else queued for the writer (order is
    /// kept: nothing overtakes a queued message). The queue itself wakes the writer when this
    /// push makes it non-empty ([`Outbox::push_with`] decides that under its lock: a decision
    /// taken from `queued()` read before the push could miss the writer finishing its batch in
    /// between, and leave the record, and every later one, unsent).
    fn push(&self, kind: Kind, subject: &Subject, reply: Option<&Subject>, body: Bytes) -> bool {
        let was_empty = self.outbox.queued() == 0;
        if was_empty && self.send_now(kind, subject, reply, &body) {
            return true;
        }
        let reply = reply.map_or("", |r| r.as_str());
        self.outbox
            .push_with(|b| wire::push_record(b, kind, subject.as_str(), reply, &body))
    }

    /// Hands one message to the NATS client if it takes it without waiting. True when the
    /// message is dealt with (sent, or refused by the client and counted as dropped). Nothing
    /// carries a header: a topic message names its origin node in its subject, a request its
    /// caller's node in its body.
    fn send_now(
        &self,
        kind: Kind,
        subject: &Subject,
        reply: Option<&Subject>,
        body: &Bytes,
    ) -> bool {
        use futures_util::FutureExt;
        let Some(client) = self.client.get().filter(|_| self.is_connected()) else {
            return false;
        };
        let (subject, body) = (subject.clone(), body.clone());
        let done = match (kind, reply) {
            (Kind::Request, Some(reply)) => client
                .publish_with_reply(subject, reply.clone(), body)
                .now_or_never(),
            (Kind::Publish, _) | (Kind::Request, None) | (Kind::Reply, _) => {
                client.publish(subject, body).now_or_never()
            }
        };
        match done {
            Some(Ok(())) => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(Err(_)) => {
                self.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The connected client (set once by the connection task).
    pub(super) fn set_client(&self, client: async_nats::Client) {
        let _ = self.client.set(client);
    }

    fn note_congested(&self, congested: &mut Vec<Arc<Outbox>>) {
        if self.outbox.is_congested() && !congested.iter().any(|c| Arc::ptr_eq(c, &self.outbox)) {
            congested.push(self.outbox.clone());
        }
    }

    /// A message published locally: sent to the other nodes when its topic is exported.
    pub fn export_topic(
        &self,
        topic: &str,
        payload: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        if !self.export_topics.matches(topic) {
            return;
        }
        if !self.is_connected() || !subjects::topic_safe(topic) {
            self.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let body = payload.map_or(&[][..], |p| p.get().as_bytes());
        let (subject, body) = {
            let mut arena = self.arena.lock();
            let subject = arena.carve(self.topic_prefix.len() + topic.len(), |b| {
                b.extend_from_slice(self.topic_prefix.as_bytes());
                b.extend_from_slice(topic.as_bytes());
            });
            (
                subject,
                arena.carve(body.len(), |b| b.extend_from_slice(body)),
            )
        };
        self.push(Kind::Publish, &to_subject(subject), None, body);
        self.note_congested(congested);
    }

    /// An RPC to another node; its answer arrives on `<inbox>.<kid>`. False when it could not
    /// be queued.
    pub fn request(
        &self,
        kid: u64,
        (service, method, from): (&str, &str, &str),
        params: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) -> bool {
        let subject = match self
            .config
            .import
            .services
            .binary_search_by(|s| s.as_str().cmp(service))
        {
            Ok(i) => self.service_subjects[i].clone(),
            Err(_) => Subject::from(subjects::service(&self.config.name, service)),
        };
        let (reply, body) = {
            let mut arena = self.arena.lock();
            let reply = arena.carve(self.inbox.len() + 21, |b| {
                let _ = write!(b, "{}.{kid}", self.inbox);
            });
            let hint = 32 + method.len() + from.len() + params.map_or(0, |p| p.get().len());
            let body = arena.carve(hint, |b| {
                wire::request_body(b, method, (from, &self.config.node), params)
            });
            (reply, body)
        };
        let ok = self.push(Kind::Request, &subject, Some(&to_subject(reply)), body);
        self.note_congested(congested);
        ok
    }

    /// Requests from other nodes in flight here.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// A request from another node was forwarded to a local provider.
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// The answer to a request counted by [`Link::started`].
    pub fn answer(&self, reply: &Subject, result: Option<&RawValue>, error: Option<&RawValue>) {
        self.finished();
        self.reply(reply, result, error);
    }

    /// A kernel-made error answer (`timeout`, the provider stopped) to a request counted by
    /// [`Link::started`].
    pub fn answer_error(&self, reply: &Subject, error: &str) {
        self.finished();
        self.reply_error(reply, error);
    }

    fn finished(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// The answer to a remote caller.
    pub fn reply(&self, reply: &Subject, result: Option<&RawValue>, error: Option<&RawValue>) {
        let hint = 24 + result.map_or(0, |r| r.get().len()) + error.map_or(0, |e| e.get().len());
        let body = self
            .arena
            .lock()
            .carve(hint, |b| wire::reply_body(b, result, error));
        if !self.push(Kind::Reply, reply, None, body) {
            self.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A kernel-made error answer to a remote caller (`timeout`, `service_not_found`, …).
    pub fn reply_error(&self, reply: &Subject, error: &str) {
        let body = self
            .arena
            .lock()
            .carve(16 + error.len(), |b| wire::error_body(b, error));
        if !self.push(Kind::Reply, reply, None, body) {
            self.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The kernel id of an answer's subject (`<inbox>.<kid>`).
    pub fn kid_of(&self, subject: &str) -> Option<u64> {
        subject
            .strip_prefix(self.inbox.as_str())?
            .strip_prefix('.')?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(yaml: &str) -> Arc<Link> {
        let root = pons_reconciler::config::parse(yaml.as_bytes()).unwrap();
        let c = pons_reconciler::cluster::parse(&root, &Default::default(), "h")
            .unwrap()
            .unwrap();
        Link::new(c.config)
    }

    #[test]
    fn exports_only_what_is_exported_and_only_while_connected() {
        let l = link("cluster: {url: nats://x, name: p, node: a, export: {topics: ['m.*'], services: [e]}, import: {topics: ['x.*', 'x.y']}}\n");
        let mut congested = Vec::new();
        l.export_topic("m.cpu", None, &mut congested);
        assert_eq!(l.dropped_out(), 1, "not connected: dropped, not buffered");
        assert_eq!(l.outbox.queued(), 0);
        l.set_connected(true);
        let p = RawValue::from_string("1".into()).unwrap();
        l.export_topic("m.cpu", Some(&p), &mut congested);
        l.export_topic("other", Some(&p), &mut congested);
        let mut batch = Vec::new();
        l.outbox.swap_queued(&mut batch);
        let recs: Vec<_> = wire::records(&batch).collect();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].subject, "p.topic.a.m.cpu", "named after its origin");
        assert_eq!(recs[0].body, b"1");
        assert!(l.exports_service("e") && !l.exports_service("f"));
        assert_eq!(l.import_index("x.y"), Some(0));
        assert_eq!(l.import_index("z"), None);
        assert_eq!(l.kid_of(&format!("{}.42", l.inbox)), Some(42));
        assert_eq!(l.kid_of("_INBOX.other.42"), None);
    }

    #[test]
    fn a_request_waiting_for_the_writer_names_its_caller_in_the_body() {
        let l = link("cluster: {url: nats://x, name: p, node: b, import: {services: [e]}}\n");
        let mut congested = Vec::new();
        let p = RawValue::from_string("{\"a\":1}".into()).unwrap();
        for (kid, service) in [(7, "e"), (8, "other")] {
            assert!(l.request(kid, (service, "get", "cons"), Some(&p), &mut congested));
        }
        let mut batch = Vec::new();
        l.outbox.swap_queued(&mut batch);
        let recs: Vec<_> = wire::records(&batch).collect();
        assert_eq!(recs.len(), 2, "not connected: queued for the writer");
        assert_eq!(recs[0].kind, Kind::Request);
        assert_eq!(recs[0].subject, "p.svc.e");
        assert_eq!(recs[0].reply, format!("{}.7", l.inbox));
        assert_eq!(recs[0].body, br#"{"m":"get","f":"cons@b","p":{"a":1}}"#);
        assert_eq!(recs[1].subject, "p.svc.other");
        assert_eq!(l.kid_of(recs[1].reply), Some(8));
    }

    #[test]
    fn the_writer_is_woken_by_the_push_that_makes_the_queue_non_empty() {
        use futures_util::FutureExt;
        let l = link("cluster: {url: nats://x, name: p, node: b, import: {services: [e]}}\n");
        let mut congested = Vec::new();
        let p = RawValue::from_string("1".into()).unwrap();
        let mut req = |kid| assert!(l.request(kid, ("e", "get", "c"), Some(&p), &mut congested));
        let woken = |l: &Link| l.outbox.writer_wake().now_or_never().is_some();
        assert!(!woken(&l), "nothing queued yet");
        req(1);
        assert!(woken(&l), "not connected: queued, and the writer woken");
        // The writer takes the batch; what is pushed while it writes waits for its next swap.
        let mut batch = Vec::new();
        l.outbox.swap_queued(&mut batch);
        req(2);
        assert!(!woken(&l));
        l.outbox.written(batch.len());
        batch.clear();
        l.outbox.swap_queued(&mut batch);
        assert_eq!(
            wire::records(&batch).count(),
            1,
            "request 2, on the next swap"
        );
        l.outbox.written(batch.len());
        batch.clear();
        l.outbox.swap_queued(&mut batch);
        assert!(batch.is_empty());
        // Written out: the next push makes the queue non-empty again and wakes the writer.
        req(3);
        assert!(woken(&l));
    }

    #[test]
    fn the_arena_hands_out_independent_shared_bytes() {
        let mut a = Arena::default();
        let one = a.carve(3, |b| b.extend_from_slice(b"one"));
        let two = a.carve(3, |b| b.extend_from_slice(b"two"));
        assert_eq!((&one[..], &two[..]), (&b"one"[..], &b"two"[..]));
        // Many more than a block holds: every message keeps its bytes.
        let all: Vec<Bytes> = (0..2_000)
            .map(|i| a.carve(8, |b| b.extend_from_slice(format!("m{i:06}").as_bytes())))
            .collect();
        assert!(all
            .iter()
            .enumerate()
            .all(|(i, m)| m[..] == *format!("m{i:06}").as_bytes()));
        assert_eq!(&one[..], b"one");
        // A large message gets a buffer of its own; the arena stays small.
        let big = a.carve(Arena::LARGE + 1, |b| {
            b.extend_from_slice(&[b'x'; Arena::LARGE + 1])
        });
        assert_eq!(big.len(), Arena::LARGE + 1);
        assert!(a.0.capacity() <= Arena::BLOCK + Arena::LARGE);
        assert_eq!(
            to_subject(a.carve(3, |b| b.extend_from_slice(b"a.b"))).as_str(),
            "a.b"
        );
    }
}
