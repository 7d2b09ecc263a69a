//! The router: the in-memory state every module message is routed against.
//!
//! [`Core`] holds the module entries (status, capabilities, outbox of the current process), the
//! bus, the service directory and the RPCs in flight. It lives behind one mutex in
//! [`crate::kernel::Kernel`]; each module's stdout reader routes its lines under that lock, so a
//! publish or an RPC costs one envelope parse, a hash lookup and an append to the target's outbox.
//! Nothing here blocks or awaits.

pub mod bus;
pub mod entry;
pub mod fasthash;
pub mod lifecycle;
pub mod operator;
pub mod remote;
pub mod rpc;
pub mod topics;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use pons_reconciler::config::EnforcementMode;
use pons_reconciler::reason::{self, Reason};
use pons_reconciler::Status;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::kernel::outbox::Outbox;
use crate::protocol::inbound::{decode, DecodeError, Inbound};
use crate::protocol::outbound;

pub use entry::Entry;
pub use fasthash::{FastMap, FastSet};
pub use rpc::PendingRpcs;

/// Settings the router needs, taken from config.yaml on every pass.
#[derive(Debug, Clone)]
pub struct Settings {
    pub enforcement: EnforcementMode,
    pub rpc_timeout: std::time::Duration,
    /// `lifecycle.maxPendingRpcs`: RPCs in flight per caller.
    pub max_pending_rpcs: usize,
    /// `PONS_HOME`, sent in `init`.
    pub home: String,
}

/// A request the router cannot answer itself (it needs files or the reconcile loop).
#[derive(Debug)]
pub enum RouterEvent {
    /// A module→kernel `call`.
    Call {
        module: Arc<str>,
        gen: u64,
        id: String,
        method: String,
        params: Option<Box<RawValue>>,
        /// Held until the call is answered: counts it against the caller's cap.
        slot: CallSlot,
    },
    /// The module must go through the restart path (strict-mode violation, …).
    Fail {
        module: Arc<str>,
        gen: u64,
        reason: Reason,
    },
}

/// Kernel calls (module → kernel `call`) in flight per module; past this the excess is answered
/// at once with an error: each call runs as a task of its own.
pub const MAX_CALLS_IN_FLIGHT: usize = 64;

/// A module's kernel calls in flight, and whether a refusal was logged since it last had none in
/// flight (one warning per flood, not one per refused call).
#[derive(Debug, Default)]
pub struct CallSlots {
    in_flight: AtomicUsize,
    refusing: AtomicBool,
}

/// One kernel call in flight; dropping it (the call answered, or dropped) frees its slot.
#[derive(Debug)]
pub struct CallSlot(Arc<CallSlots>);

impl CallSlot {
    /// Takes a slot if fewer than `max` calls are in flight.
    pub fn take(slots: &Arc<CallSlots>, max: usize) -> Option<CallSlot> {
        slots
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(CallSlot(slots.clone()))
    }
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.refusing.store(false, Ordering::Release);
        }
    }
}

/// Topics of the kernel's own events (`system:module:ready`, `system:rpc`, …): modules may
/// subscribe to them, never publish.
pub const SYSTEM_PREFIX: &str = "system:";

/// Router state. See the module docs.
pub struct Core {
    pub modules: FastMap<Arc<str>, Entry>,
    pub bus: bus::Bus,
    /// service → the runnable module that declares it (from the desired state).
    pub declared: FastMap<String, Arc<str>>,
    /// service → provider, for providers that are ready (the service directory).
    pub registered: BTreeMap<String, Arc<str>>,
    pub rpcs: PendingRpcs,
    pub settings: Settings,
    pub events: mpsc::UnboundedSender<RouterEvent>,
    /// Bumped on every status change (apply waits on it).
    pub changed: Arc<tokio::sync::Notify>,
    /// Modules a pass stopped for good (removed, blocked): `module.list` still shows them as
    /// `stopped`, as the reference's registry does, until they are spawned again.
    pub departed: BTreeMap<Arc<str>, Departed>,
    /// The cluster link and the remote-service directory (`None` without a `cluster` section):
    /// see [`remote`].
    pub cluster: Option<crate::cluster::Attached>,
}

/// A module a pass stopped and forgot.
#[derive(Debug, Clone)]
pub struct Departed {
    pub provides: Vec<String>,
}

impl Core {
    pub fn new(
        settings: Settings,
        events: mpsc::UnboundedSender<RouterEvent>,
        changed: Arc<tokio::sync::Notify>,
    ) -> Core {
        Core {
            modules: FastMap::default(),
            bus: bus::Bus::default(),
            declared: FastMap::default(),
            registered: BTreeMap::new(),
            rpcs: PendingRpcs::default(),
            settings,
            events,
            changed,
            departed: BTreeMap::new(),
            cluster: None,
        }
    }

    /// Routes one line read from a module's stdout. Outboxes that became congested are pushed to
    /// `congested` so the caller can wait for them outside the lock.
    pub fn handle_line(
        &mut self,
        module: &Arc<str>,
        gen: u64,
        line: &[u8],
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        // One lookup serves the liveness check and the counters (acks are half of all lines).
        // A stopping module is still heard: its answers to RPCs in flight, its acks and its
        // shutdown logs are routed; new publishes and requests are refused below.
        let entry = match self.modules.get_mut(module) {
            Some(e) if e.gen == gen && (e.status.is_live() || e.status == Status::Stopping) => e,
            _ => return,
        };
        entry.msgs_in += 1;
        let msg = match decode(line) {
            Ok(m) => m,
            Err(DecodeError::InvalidJson { .. }) => {
                let text = String::from_utf8_lossy(line);
                let cut: String = text.chars().take(512).collect();
                tracing::warn!(module = %module, source = "stdout", "{cut}");
                entry.invalid_lines += 1;
                return;
            }
            Err(e) => {
                tracing::warn!(module = %module, reason = %e, "Invalid IPC message — ignoring");
                entry.invalid_lines += 1;
                return;
            }
        };
        match msg {
            Inbound::Ack { .. } => {
                entry.acks += 1;
                return;
            }
            Inbound::Nack { .. } => {
                entry.nacks += 1;
                return;
            }
            Inbound::Pong => {
                entry.pongs += 1;
                return;
            }
            _ => {}
        }
        match msg {
            Inbound::Publish { topic, payload } => self.publish(module, &topic, payload, congested),
            Inbound::RpcRequest {
                id,
                service,
                method,
                params,
            } => self.rpc_request(module, &id, &service, &method, params, congested),
            Inbound::RpcResponse { id, result, error } => {
                self.rpc_response(module, &id, result, error, congested)
            }
            Inbound::Ready => self.on_ready(module),
            // Counted above.
            Inbound::Pong | Inbound::Ack { .. } | Inbound::Nack { .. } => {}
            Inbound::Call { id, method, params } => {
                self.kernel_call(module, gen, &id, &method, params)
            }
            Inbound::CallResponse { .. } => {
                tracing::debug!(module = %module, "call:response without a pending kernel call — ignoring");
            }
            Inbound::Log {
                level,
                msg,
                data,
                topic,
            } => crate::logging::log_module_line(
                module,
                level.as_deref().unwrap_or("info"),
                msg.as_deref().unwrap_or(""),
                data,
                topic.as_deref(),
            ),
            // Bounded: the items are scanned once and at most the capped ones are logged.
            Inbound::LogGroup {
                level,
                msg,
                data: _,
                items,
            } => crate::logging::log_module_group(
                module,
                level.as_deref().unwrap_or("info"),
                msg.as_deref().unwrap_or(""),
                items,
            ),
        }
    }

    /// Hands a module→kernel `call` to its handler task, or answers it at once with an error when
    /// [`MAX_CALLS_IN_FLIGHT`] calls of the module are in flight.
    fn kernel_call(
        &mut self,
        module: &Arc<str>,
        gen: u64,
        id: &str,
        method: &str,
        params: Option<&RawValue>,
    ) {
        let Some(e) = self.modules.get(module) else {
            return;
        };
        let Some(slot) = CallSlot::take(&e.calls, MAX_CALLS_IN_FLIGHT) else {
            if !e.calls.refusing.swap(true, Ordering::AcqRel) {
                tracing::warn!(moduleId = %module, limit = MAX_CALLS_IN_FLIGHT, method = %method, "call.too_many_pending: further kernel calls are refused until answers go out");
            }
            let error =
                format!("Error: too_many_pending: {MAX_CALLS_IN_FLIGHT} kernel calls in flight");
            // Not a back-pressure point: the module's own reader must never wait on the module
            // reading (both sides blocked on a full pipe). Its outbox is capped like any other.
            self.send(module, |b| outbound::call_response_err(b, id, &error));
            return;
        };
        let _ = self.events.send(RouterEvent::Call {
            module: module.clone(),
            gen,
            id: id.to_owned(),
            method: method.to_owned(),
            params: params.map(|p| p.to_owned()),
            slot,
        });
    }

    /// Logs a refused action and tells whether to go on with it (warn / off mode).
    fn violation(&self, module: &Arc<str>, target: &str) -> bool {
        match self.settings.enforcement {
            EnforcementMode::Strict => {
                tracing::error!(moduleId = %module, action = "deny", target = %target, "security.violation");
                false
            }
            EnforcementMode::Warn => {
                tracing::warn!(moduleId = %module, action = "warn", target = %target, "security.violation");
                true
            }
            EnforcementMode::Off => true,
        }
    }

    /// Sends `module` through the restart path.
    pub fn fail(&self, module: &Arc<str>, reason: Reason) {
        if let Some(e) = self.modules.get(module) {
            let _ = self.events.send(RouterEvent::Fail {
                module: module.clone(),
                gen: e.gen,
                reason,
            });
        }
    }

    /// Stops `module` for a refused action under strict enforcement (`target`: what it tried).
    pub fn fail_violation(&self, module: &Arc<str>, target: impl Into<String>) {
        self.fail(module, Reason::new(reason::SECURITY_VIOLATION, target));
    }

    fn publish(
        &mut self,
        module: &Arc<str>,
        topic: &str,
        payload: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        let Some(sender) = self.modules.get(module) else {
            return;
        };
        if sender.status != Status::Ready {
            tracing::warn!(module = %module, topic = %topic, status = sender.status.as_str(), "Rejected message from module not in ready state");
            return;
        }
        if topic.starts_with(SYSTEM_PREFIX) {
            // Kernel topics: no capability lets a module speak with the kernel's voice.
            let target = format!("publish:{topic}");
            tracing::error!(moduleId = %module, action = "deny", target = %target, "security.violation");
            if self.settings.enforcement == EnforcementMode::Strict {
                self.fail_violation(module, target);
            }
            return;
        }
        if self.settings.enforcement != EnforcementMode::Off && !sender.topics.matches(topic) {
            let target = format!("publish:{topic}");
            if !self.violation(module, &target) {
                self.fail_violation(module, target);
                return;
            }
        }
        let modules = &self.modules;
        self.bus.for_each_subscriber(topic, |sub| {
            if sub == module {
                return;
            }
            if let Some(e) = modules.get(sub) {
                if e.status == Status::Ready {
                    if let Some(ob) = &e.outbox {
                        deliver_to(ob, topic, payload, congested);
                    }
                }
            }
        });
        if let Some(c) = &self.cluster {
            c.link.export_topic(topic, payload, congested);
        }
    }

    /// Delivers a kernel event to every ready subscriber whose capabilities allow the topic
    /// (lifecycle events, `system:rpc`, `kernel.permissions.pending`). The source is not excluded.
    pub fn emit(&self, topic: &str, payload: &serde_json::Value) {
        let raw = match serde_json::value::to_raw_value(payload) {
            Ok(r) => r,
            Err(_) => return,
        };
        let modules = &self.modules;
        let check = self.settings.enforcement != EnforcementMode::Off;
        self.bus.for_each_subscriber(topic, |sub| {
            if let Some(e) = modules.get(sub) {
                if e.status == Status::Ready && (!check || e.topics.matches(topic)) {
                    if let Some(ob) = &e.outbox {
                        let id = uuid::Uuid::new_v4();
                        let mut idbuf = [0u8; 36];
                        let id = id.hyphenated().encode_lower(&mut idbuf);
                        ob.push_with(|b| outbound::deliver(b, id, topic, Some(&raw)));
                    }
                }
            }
        });
    }

    /// Appends a message to one module's current process, if it has one.
    pub fn send(&self, module: &str, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        match self.modules.get(module).and_then(|e| e.outbox.as_ref()) {
            Some(ob) => ob.push_with(encode),
            None => false,
        }
    }

    pub fn set_status(&mut self, module: &str, status: Status) {
        if let Some(e) = self.modules.get_mut(module) {
            if e.status != status {
                e.status = status;
                // Its supervisor's timed checks (ready, requires, health) depend on the status.
                let _ = e.sup.send(crate::kernel::supervisor::SupCmd::Recheck);
                self.changed.notify_waiters();
            }
        }
    }
}

/// Queues one `deliver` of `payload` on `topic` (with a fresh message id) for a subscriber, and
/// notes its outbox if that made it congested.
fn deliver_to(
    ob: &Arc<Outbox>,
    topic: &str,
    payload: Option<&RawValue>,
    congested: &mut Vec<Arc<Outbox>>,
) {
    let id = uuid::Uuid::new_v4();
    let mut idbuf = [0u8; 36];
    let id = id.hyphenated().encode_lower(&mut idbuf);
    ob.push_with(|b| outbound::deliver(b, id, topic, payload));
    if ob.is_congested() && !congested.iter().any(|c| Arc::ptr_eq(c, ob)) {
        congested.push(ob.clone());
    }
}

/// Milliseconds since the Unix epoch, for the `ts` of `system:rpc` events.
fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_slots_cap_and_free() {
        let slots = Arc::new(CallSlots::default());
        let mut held: Vec<CallSlot> = (0..3).filter_map(|_| CallSlot::take(&slots, 3)).collect();
        assert_eq!(held.len(), 3);
        assert!(CallSlot::take(&slots, 3).is_none());
        slots.refusing.store(true, Ordering::Release);
        held.pop();
        assert!(slots.refusing.load(Ordering::Acquire), "still in a flood");
        drop(held);
        assert!(!slots.refusing.load(Ordering::Acquire));
        assert!(CallSlot::take(&slots, 3).is_some());
    }
}
