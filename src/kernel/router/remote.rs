//! The router's side of the cluster (src/cluster): other nodes' providers are consulted after
//! local ones (local wins), RPCs go to and come from other nodes with the same error semantics
//! (the caller's capabilities are checked here before anything leaves; the provider's kernel
//! checks its export), and messages of imported topics reach local subscribers. Nothing here
//! runs without a `cluster` section ([`Core::cluster`] is `None`).

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use pons_reconciler::config::EnforcementMode;
use pons_reconciler::Status;
use serde_json::value::RawValue;

use super::rpc::{Caller, PendingRpc};
use super::{Core, SYSTEM_PREFIX};
use crate::cluster::{Attached, Link};
use crate::kernel::outbox::Outbox;
use crate::protocol::outbound;

/// The `target` of an RPC in flight to another node (no module id starts with `@`).
pub const REMOTE_TARGET: &str = "@cluster";
static REMOTE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(REMOTE_TARGET));

impl Core {
    /// Whether another node has a ready provider of `service` and this node imports it.
    #[inline]
    pub fn remote_provides(&self, service: &str) -> bool {
        self.cluster.as_ref().is_some_and(|a| a.provides(service))
    }

    /// Sends an RPC to whichever node NATS picks among those that export `service`; its answer
    /// (or `timeout`, from the same table as local RPCs) reaches `caller` as a local one would.
    pub(super) fn forward_remote(
        &mut self,
        caller: Caller,
        from: &str,
        (service, method, params): (&str, &str, Option<&RawValue>),
        deadline: Instant,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        let Some(link) = self.cluster.as_ref().map(|a| a.link.clone()) else {
            self.answer_error(caller, "service_not_found");
            return;
        };
        let kid = self.rpcs.insert(
            PendingRpc {
                caller,
                target: REMOTE.clone(),
                service: service.to_string(),
                method: method.to_string(),
            },
            deadline,
        );
        if self.bus_has_rpc_monitors() {
            let ts = super::epoch_ms();
            self.emit(
                "system:rpc",
                &serde_json::json!({"from": from, "service": service, "method": method, "ts": ts, "node": link.config.node}),
            );
        }
        if !link.request(kid, (service, method, from), params, congested) {
            if let Some(p) = self.rpcs.take(kid) {
                self.answer_error(p.caller, "cluster link congested: try again");
            }
        }
    }

    /// Another node answered RPC `kid`.
    pub fn remote_answer(
        &mut self,
        kid: u64,
        result: Option<&RawValue>,
        error: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        if let Some(p) = self.take_remote(kid) {
            self.answer(p.caller, result, error, congested);
        }
    }

    /// RPC `kid` to another node ends with a kernel error (`service_not_found` when nobody
    /// serves it any more).
    pub fn remote_answer_error(&mut self, kid: u64, error: &str) {
        if let Some(p) = self.take_remote(kid) {
            self.answer_error(p.caller, error);
        }
    }

    fn take_remote(&mut self, kid: u64) -> Option<PendingRpc> {
        let p = self.rpcs.live.get(&kid)?;
        if *p.target != *REMOTE_TARGET {
            return None;
        }
        self.rpcs.take(kid)
    }

    /// A request from another node to an exported service: forwarded to the local provider
    /// (`from` is `<module>@<node>`); errors go back as they would to a local caller.
    #[allow(clippy::too_many_arguments)]
    pub fn remote_request(
        &mut self,
        link: &Arc<Link>,
        reply: async_nats::Subject,
        service: &str,
        method: &str,
        from: &str,
        params: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        if !link.exports_service(service) {
            link.reply_error(&reply, "service_not_found");
            return;
        }
        let target = match self.provider_for(service) {
            Ok(t) => t,
            Err(e) => {
                link.reply_error(&reply, e);
                return;
            }
        };
        let max = self.settings.max_pending_rpcs;
        if link.in_flight() >= max {
            link.reply_error(&reply, &format!("too_many_pending: {max} RPCs in flight"));
            return;
        }
        link.started();
        let deadline = Instant::now() + self.settings.rpc_timeout;
        let caller = Caller::Remote {
            link: link.clone(),
            reply,
        };
        let outbox = self.forward(caller, from, target, (service, method, params), deadline);
        if outbox.is_congested() && !congested.iter().any(|c| Arc::ptr_eq(c, &outbox)) {
            congested.push(outbox);
        }
    }

    /// A message of an imported topic from another node: delivered to every ready local
    /// subscriber whose capabilities allow the topic. `system:` topics stay the kernel's.
    pub fn remote_deliver(
        &mut self,
        topic: &str,
        payload: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        if topic.starts_with(SYSTEM_PREFIX) {
            return;
        }
        let check = self.settings.enforcement != EnforcementMode::Off;
        let modules = &self.modules;
        self.bus.for_each_subscriber(topic, |sub| {
            let Some(e) = modules.get(sub) else {
                return;
            };
            if e.status != Status::Ready || (check && !e.topics.matches(topic)) {
                return;
            }
            if let Some(ob) = &e.outbox {
                super::deliver_to(ob, topic, payload, congested);
            }
        });
    }

    /// Services that a peer now provides: modules waiting for them become ready; ready modules
    /// that list one (required or optional) without a local provider get `service_available`.
    pub fn remote_services_appeared(&mut self, services: &[String]) {
        let services: Vec<&String> = services
            .iter()
            .filter(|s| self.remote_provides(s) && !self.registered.contains_key(s.as_str()))
            .collect();
        if services.is_empty() {
            return;
        }
        for m in self.modules.values() {
            if m.status != Status::Ready {
                continue;
            }
            let man = &m.desired.manifest;
            for s in &services {
                if man.optional_requires.contains(s) || man.requires.contains(s) {
                    self.send(&m.id, |b| outbound::service_available(b, s));
                }
            }
        }
        for w in self.waiting_with_requires_met() {
            tracing::info!(module = %w, "All required services available (another node provides one) — activating");
            self.activate(&w);
        }
    }

    /// Takes the cluster link out (the section changed or went, or the kernel stops): RPCs in
    /// flight to other nodes are answered with an error at once.
    pub fn detach_cluster(&mut self) -> Option<Attached> {
        let a = self.cluster.take()?;
        let kids: Vec<u64> = self
            .rpcs
            .live
            .iter()
            .filter(|(_, p)| *p.target == *REMOTE_TARGET)
            .map(|(k, _)| *k)
            .collect();
        for kid in kids {
            if let Some(p) = self.rpcs.take(kid) {
                self.answer_error(p.caller, "cluster connection closed");
            }
        }
        Some(a)
    }
}
