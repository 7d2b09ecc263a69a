//! The connection task of one [`Link`]: connect to NATS (retried with backoff; a refused
//! credential is logged once and shown in `pons status`), subscribe (heartbeats, this link's
//! answers, imported topics, and — while a local provider is ready — each exported service in
//! its queue group; their tasks are in [`super::inbound`]), send heartbeats every `staleMs / 3`,
//! drop peers that went silent, start the [`super::writer`], and say goodbye when the link is
//! replaced or the kernel stops.
//! async-nats reconnects by itself after a lost connection (with the backoff given here); the
//! task follows its events: a lost connection empties the directory at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event};
use bytes::Bytes;
use pons_reconciler::cluster::{ClusterConfig, Credentials};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::inbound;
use super::link::Link;
use super::subjects;
use super::wire::{Heartbeat, RemoteService};
use crate::kernel::router::Core;
use crate::kernel::Kernel;

/// Tasks of the link, aborted when it ends.
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Runs the link until `stop` changes or its sender is dropped.
pub async fn run(kernel: Arc<Kernel>, link: Arc<Link>, mut stop: watch::Receiver<bool>) {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let Some(client) = connect(&link, &kernel.home.root, ev_tx, &mut stop).await else {
        link.outbox.close();
        return;
    };
    let c = &link.config;
    link.set_client(client.clone());
    link.set_connected(true);
    link.state.lock().last_error = None;
    tracing::info!(node = %c.node, cluster = %c.name, url = %c.urls.join(", "), "cluster: connected");

    let mut tasks = Tasks::default();
    let hb_now = Arc::new(Notify::new());
    tasks.0.push(tokio::spawn(super::writer::run(
        client.clone(),
        link.clone(),
    )));
    if let Err(e) = subscribe_all(&kernel, &link, &client, &hb_now, &mut tasks).await {
        tracing::error!(node = %c.node, error = %e, "cluster: cannot subscribe; the link stays down until the cluster section changes");
        link.state.lock().last_error = Some(format!("cannot subscribe: {e}"));
        link.set_connected(false);
        link.outbox.close();
        return;
    }

    let mut hb_tick = tokio::time::interval(heartbeat_every(c));
    hb_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut services: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
    let mut advertised: Option<Vec<RemoteService>> = None;
    let mut hello = true;
    loop {
        // What this node offers now: exported services whose local provider is ready.
        let ready = sync_services(&kernel, &link, &client, &mut services).await;
        if hello || advertised.as_ref() != Some(&ready) {
            heartbeat(&client, &link, &ready, hello, false).await;
            advertised = Some(ready);
            hello = false;
        }
        let next_stale = with_attached(&kernel, &link, |a| a.dir.next_stale()).flatten();
        let changed = kernel.changed.notified();
        tokio::select! {
            _ = stop.changed() => break,
            ev = ev_rx.recv() => match ev {
                Some(ev) => hello |= on_event(&kernel, &link, ev),
                None => break,
            },
            _ = hb_tick.tick() => {
                if let Some(ready) = &advertised {
                    heartbeat(&client, &link, ready, false, false).await;
                }
            }
            _ = hb_now.notified() => {
                if let Some(ready) = &advertised {
                    heartbeat(&client, &link, ready, false, false).await;
                }
            }
            _ = sleep_until(next_stale) => sweep(&kernel, &link),
            _ = changed => {}
        }
    }
    // Goodbye: peers drop this node at once instead of waiting for `staleMs`.
    if link.is_connected() {
        heartbeat(&client, &link, &[], false, true).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), client.flush()).await;
    }
    link.set_connected(false);
    link.outbox.close();
    drop(services);
    drop(tasks);
    tracing::info!(node = %link.config.node, "cluster: disconnected");
}

/// How often this node sends a heartbeat: a third of `staleMs`.
fn heartbeat_every(c: &ClusterConfig) -> Duration {
    Duration::from_millis((c.stale_ms / 3).max(100))
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Connects, retrying with backoff (100 ms doubling to 5 s) until connected or stopped. Every
/// new failure is logged once and kept as the link's `lastError`. `home`: the home directory,
/// which relative `cluster.tls` paths are taken from.
async fn connect(
    link: &Link,
    home: &Path,
    events: mpsc::UnboundedSender<Event>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Client> {
    let c = &link.config;
    let addrs: Vec<async_nats::ServerAddr> = c.urls.iter().filter_map(|u| u.parse().ok()).collect();
    let mut delay = Duration::from_millis(100);
    let mut logged: Option<String> = None;
    loop {
        let attempt = async {
            let opts = options(c, home, events.clone()).await?;
            opts.connect(addrs.clone())
                .await
                .map_err(|e| connect_error(c, home, &e))
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = stop.changed() => return None,
        };
        match result {
            Ok(client) => return Some(client),
            Err(msg) => {
                if logged.as_deref() != Some(msg.as_str()) {
                    tracing::error!(node = %c.node, url = %c.urls.join(", "), "cluster: {msg}");
                    logged = Some(msg.clone());
                }
                link.state.lock().last_error = Some(msg);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// One sentence for a failed connection attempt (never a secret: URLs hold no credentials).
fn connect_error(c: &ClusterConfig, home: &Path, e: &async_nats::ConnectError) -> String {
    use async_nats::ConnectErrorKind as K;
    if let Some(tls) = super::tls::explain(c, home, &e.to_string()) {
        return tls;
    }
    match (e.kind(), &c.credentials) {
        (K::AuthorizationViolation | K::Authentication, Some(cr)) => format!(
            "the NATS server refused node `{}`'s credentials ({}): authorization violation; check `cluster.credentials` in config.yaml",
            c.node,
            cr.kind()
        ),
        (K::AuthorizationViolation | K::Authentication, None) => format!(
            "the NATS server requires credentials (authorization violation) and node `{}` has none: set `cluster.credentials` in config.yaml",
            c.node
        ),
        _ => format!(
            "cannot connect to the NATS server at {}: {e}; retrying with backoff",
            c.urls.join(", ")
        ),
    }
}

/// The connection options: credentials, TLS (`cluster.tls`, `tls://` URLs), no echo of our own
/// messages, pings at half `staleMs` (a hung server is noticed), reconnect backoff 100 ms
/// doubling to 2 s, bounded client and subscription buffers.
async fn options(
    c: &ClusterConfig,
    home: &Path,
    events: mpsc::UnboundedSender<Event>,
) -> Result<ConnectOptions, String> {
    let mut o = ConnectOptions::new()
        .name(format!("pons node {} (cluster {})", c.node, c.name))
        .no_echo()
        .ping_interval(Duration::from_millis((c.stale_ms / 2).max(500)))
        .connection_timeout(Duration::from_secs(2))
        .client_capacity(4096)
        // NATS' own default: a burst waits here while local subscribers catch up.
        .subscription_capacity(65_536)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((50u64 << attempts.min(6)).min(2_000))
        })
        .event_callback(move |ev| {
            let tx = events.clone();
            async move {
                let _ = tx.send(ev);
            }
        });
    match &c.credentials {
        None => {}
        Some(Credentials::File { path }) => {
            o = o.credentials_file(path).await.map_err(|e| {
                format!(
                    "cannot read the creds file {path} (`cluster.credentials` in config.yaml): {e}"
                )
            })?;
        }
        Some(Credentials::Token { token }) => o = o.token(token.expose().to_string()),
        Some(Credentials::UserPassword { user, password }) => {
            o = o.user_and_password(user.clone(), password.expose().to_string())
        }
    }
    super::tls::options(o, c, home)
}

/// A connection event; true when a hello heartbeat should go out (reconnected).
fn on_event(kernel: &Kernel, link: &Link, ev: Event) -> bool {
    let node = &link.config.node;
    match ev {
        Event::Connected => {
            link.set_connected(true);
            link.state.lock().last_error = None;
            tracing::info!(node = %node, "cluster: reconnected to NATS");
            true
        }
        Event::Disconnected => {
            link.set_connected(false);
            link.state.lock().last_error =
                Some("connection to the NATS server lost; reconnecting".into());
            tracing::warn!(node = %node, "cluster: connection to NATS lost: remote services are unavailable until it is back");
            let mut core = kernel.core.lock();
            let gone = match core
                .cluster
                .as_mut()
                .filter(|a| std::ptr::eq(&*a.link, link))
            {
                Some(a) => a.dir.clear(),
                None => Vec::new(),
            };
            for n in gone {
                peer_event(&core, "left", &n);
            }
            false
        }
        Event::SlowConsumer(sid) => {
            link.counters.dropped_in.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %node, subscription = sid, "cluster: NATS dropped messages for a slow subscription");
            false
        }
        Event::ServerError(e) => {
            let msg = format!("NATS server error: {e}");
            tracing::warn!(node = %node, "cluster: {msg}");
            link.state.lock().last_error = Some(msg);
            false
        }
        Event::ClientError(e) => {
            tracing::warn!(node = %node, "cluster: NATS client error: {e}");
            false
        }
        Event::LameDuckMode | Event::Draining | Event::Closed => false,
    }
}

/// Runs `f` on the router's attached link if it is still `link`.
fn with_attached<T>(
    kernel: &Kernel,
    link: &Link,
    f: impl FnOnce(&mut super::Attached) -> T,
) -> Option<T> {
    let mut core = kernel.core.lock();
    core.cluster
        .as_mut()
        .filter(|a| std::ptr::eq(&*a.link, link))
        .map(f)
}

pub(super) fn peer_event(core: &Core, what: &str, node: &str) {
    core.emit(
        &format!("system:cluster:peer:{what}"),
        &serde_json::json!({ "node": node }),
    );
}

/// Drops the peers silent for too long.
fn sweep(kernel: &Kernel, link: &Link) {
    let mut core = kernel.core.lock();
    let Some(a) = core
        .cluster
        .as_mut()
        .filter(|a| std::ptr::eq(&*a.link, link))
    else {
        return;
    };
    let gone = a.dir.sweep(Instant::now());
    for n in gone {
        tracing::warn!(node = %link.config.node, peer = %n, "cluster: a node went silent: its services leave the directory");
        peer_event(&core, "left", &n);
    }
}

async fn heartbeat(
    client: &Client,
    link: &Link,
    services: &[RemoteService],
    hello: bool,
    bye: bool,
) {
    let hb = Heartbeat {
        node: link.config.node.clone(),
        services: services.to_vec(),
        hello,
        bye,
        every_ms: heartbeat_every(&link.config).as_millis() as u64,
    };
    let Ok(body) = serde_json::to_vec(&hb) else {
        return;
    };
    let subject = subjects::heartbeat(&link.config.name);
    let _ = tokio::time::timeout(
        Duration::from_millis(link.config.stale_ms / 3),
        client.publish(subject, Bytes::from(body)),
    )
    .await;
}

/// Subscribes to what the link always listens to: heartbeats, its answers, imported topics.
async fn subscribe_all(
    kernel: &Arc<Kernel>,
    link: &Arc<Link>,
    client: &Client,
    hb_now: &Arc<Notify>,
    tasks: &mut Tasks,
) -> Result<(), async_nats::SubscribeError> {
    let name = &link.config.name;
    let sub = client.subscribe(subjects::heartbeat(name)).await?;
    tasks.0.push(tokio::spawn(inbound::heartbeats(
        kernel.clone(),
        link.clone(),
        sub,
        hb_now.clone(),
    )));
    let sub = client.subscribe(format!("{}.*", link.inbox)).await?;
    tasks.0.push(tokio::spawn(inbound::answers(
        kernel.clone(),
        link.clone(),
        sub,
    )));
    for (i, pattern) in link.config.import.topics.iter().enumerate() {
        let sub = client
            .subscribe(subjects::import_subscription(name, pattern))
            .await?;
        tasks.0.push(tokio::spawn(inbound::topics(
            kernel.clone(),
            link.clone(),
            sub,
            i,
        )));
    }
    Ok(())
}

/// Subscribes (queue group per service) to the exported services whose local provider is
/// ready, unsubscribes from the others: a node never draws calls it cannot serve. Returns what
/// the heartbeat advertises.
async fn sync_services(
    kernel: &Arc<Kernel>,
    link: &Arc<Link>,
    client: &Client,
    subs: &mut BTreeMap<String, JoinHandle<()>>,
) -> Vec<RemoteService> {
    let ready: Vec<RemoteService> = {
        let core = kernel.core.lock();
        link.config
            .export
            .services
            .iter()
            .filter_map(|s| {
                core.registered.get(s).map(|m| RemoteService {
                    service: s.clone(),
                    module: m.to_string(),
                })
            })
            .collect()
    };
    subs.retain(|s, task| {
        let keep = ready.iter().any(|r| &r.service == s);
        if !keep {
            task.abort();
        }
        keep
    });
    for r in &ready {
        if subs.contains_key(&r.service) {
            continue;
        }
        let subject = subjects::service(&link.config.name, &r.service);
        match client.queue_subscribe(subject.clone(), subject).await {
            Ok(sub) => {
                let task = tokio::spawn(inbound::requests(
                    kernel.clone(),
                    link.clone(),
                    sub,
                    r.service.clone(),
                ));
                subs.insert(r.service.clone(), task);
            }
            Err(e) => {
                tracing::warn!(node = %link.config.node, service = %r.service, error = %e, "cluster: cannot offer an exported service");
            }
        }
    }
    ready
        .into_iter()
        .filter(|r| subs.contains_key(&r.service))
        .collect()
}
