//! RPC between modules: capability check, provider lookup, kernel-owned ids
//! towards the provider, the caller's id restored on the way back, timeouts, cleanup when either
//! side leaves. The operator (`pons call`, see [`super::operator`]) is the one caller that is not
//! a module: its answer goes to a oneshot channel instead of an outbox.
//!
//! In-flight RPCs are capped per caller (`lifecycle.maxPendingRpcs`, the design): past the cap
//! a request is answered at once with `too_many_pending: …`, never queued, so a module firing
//! requests at a provider that never answers costs the kernel a bounded amount of memory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pons_reconciler::config::EnforcementMode;
use pons_reconciler::Status;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::Core;
use crate::kernel::outbox::Outbox;
use crate::protocol::outbound;

/// An RPC forwarded to a provider and not answered yet.
#[derive(Debug)]
pub struct PendingRpc {
    pub caller: Caller,
    pub target: Arc<str>,
    pub service: String,
    pub method: String,
}

/// Who waits for an RPC's answer.
#[derive(Debug)]
pub enum Caller {
    /// A module's process: the answer goes to its outbox under the id it chose.
    Module {
        id: Arc<str>,
        gen: u64,
        original_id: String,
    },
    /// The operator on the control socket (`pons call`).
    Operator {
        reply: oneshot::Sender<OperatorAnswer>,
        timeout: Duration,
    },
    /// A module on another node (src/cluster): the answer goes back over NATS to `reply`.
    Remote {
        link: Arc<crate::cluster::Link>,
        reply: async_nats::Subject,
    },
}

/// The operator's answer: the provider's `result` (`None` when it sent none), or the error text
/// (a kernel error such as `timeout`, or the provider's own `error`).
pub type OperatorAnswer = Result<Option<Box<RawValue>>, String>;

impl Caller {
    /// The caller's name as logged and as sent in `from`.
    pub fn name(&self) -> &str {
        match self {
            Caller::Module { id, .. } => id,
            Caller::Operator { .. } => super::operator::OPERATOR,
            Caller::Remote { .. } => "a remote caller",
        }
    }

    fn is_module(&self, module: &str) -> bool {
        matches!(self, Caller::Module { id, .. } if &**id == module)
    }
}

/// The RPCs in flight, keyed by the kernel's own id. Timeouts are kept in a queue ordered by
/// deadline (module RPCs share one timeout, so they are appended at the back; only an operator's
/// own `--timeout` is inserted further in).
///
/// The timeout task sleeps until the deadline it was armed with ([`PendingRpcs::timer`]); an RPC
/// whose deadline comes earlier than that (or any, while it is unarmed) wakes it. A stream of
/// RPCs answered in time wakes it about once per timeout, never per RPC.
#[derive(Debug, Default)]
pub struct PendingRpcs {
    next: u64,
    pub(super) live: super::fasthash::FastMap<u64, PendingRpc>,
    deadlines: VecDeque<(Instant, u64)>,
    /// The deadline the timeout task sleeps until; `None`: it waits for an RPC.
    armed: Option<Instant>,
    /// Wakes the timeout task (an earlier deadline than the one it sleeps until).
    pub timer: Arc<tokio::sync::Notify>,
    /// RPCs in flight per caller, and whether a refusal was logged since it last had none in
    /// flight (one warning per flood, not one per refused request).
    per_caller: super::fasthash::FastMap<Arc<str>, (usize, bool)>,
}

const ID_PREFIX: &str = "k-";
/// `k-` and the 20 digits of the largest u64.
const KERNEL_ID_MAX: usize = 22;

/// `k-<n>`, written into `buf` (no allocation or formatting machinery per RPC).
fn kernel_id(mut n: u64, buf: &mut [u8; KERNEL_ID_MAX]) -> &str {
    let mut i = KERNEL_ID_MAX;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    i -= ID_PREFIX.len();
    buf[i..i + ID_PREFIX.len()].copy_from_slice(ID_PREFIX.as_bytes());
    // Only ASCII was written.
    std::str::from_utf8(&buf[i..]).unwrap_or(ID_PREFIX)
}

impl PendingRpcs {
    pub(super) fn insert(&mut self, rpc: PendingRpc, deadline: Instant) -> u64 {
        self.next += 1;
        let id = self.next;
        if let Caller::Module { id, .. } = &rpc.caller {
            self.per_caller.entry(id.clone()).or_default().0 += 1;
        }
        self.live.insert(id, rpc);
        // A shorter timeout set later could break the ordering; keep the queue sorted.
        let pos = self
            .deadlines
            .iter()
            .rposition(|(d, _)| *d <= deadline)
            .map_or(0, |p| p + 1);
        self.deadlines.insert(pos, (deadline, id));
        if self.armed.is_none_or(|a| deadline < a) {
            self.armed = Some(deadline);
            self.timer.notify_one();
        }
        if self.deadlines.len() > 1024 && self.deadlines.len() > 2 * self.live.len() {
            let live = &self.live;
            self.deadlines.retain(|(_, id)| live.contains_key(id));
        }
        id
    }

    /// Removes an RPC from the table (answered, timed out, a side left).
    pub(super) fn take(&mut self, kid: u64) -> Option<PendingRpc> {
        let p = self.live.remove(&kid)?;
        if let Caller::Module { id, .. } = &p.caller {
            if let Some(n) = self.per_caller.get_mut(id) {
                n.0 -= 1;
                if n.0 == 0 {
                    self.per_caller.remove(id);
                }
            }
        }
        Some(p)
    }

    /// RPCs of `caller` in flight.
    pub fn in_flight(&self, caller: &str) -> usize {
        self.per_caller.get(caller).map_or(0, |n| n.0)
    }

    /// Whether a refusal of `caller` at the cap is the first since it reached it (to log once).
    fn first_refusal(&mut self, caller: &str) -> bool {
        match self.per_caller.get_mut(caller) {
            Some(n) if !n.1 => {
                n.1 = true;
                true
            }
            _ => false,
        }
    }

    fn parse_id(id: &str) -> Option<u64> {
        id.strip_prefix(ID_PREFIX)?.parse().ok()
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The earliest deadline of an RPC still in flight (answered ones are dropped from the queue
    /// on the way).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, kid)) = self.deadlines.front() {
            if self.live.contains_key(&kid) {
                return Some(deadline);
            }
            self.deadlines.pop_front();
        }
        None
    }
}

impl Core {
    pub(super) fn rpc_request(
        &mut self,
        caller: &Arc<str>,
        id: &str,
        service: &str,
        method: &str,
        params: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        let Some(c) = self.modules.get(caller) else {
            return;
        };
        if c.status != Status::Ready {
            let error = if c.status == Status::Stopping {
                "Module is stopping: no new RPCs"
            } else {
                "Module not ready"
            };
            tracing::warn!(module = %caller, service = %service, status = c.status.as_str(), "Rejected RPC from module not in ready state");
            self.send(caller, |b| outbound::rpc_error(b, id, error));
            return;
        }
        let caller_gen = c.gen;
        if self.settings.enforcement != EnforcementMode::Off && !c.services.contains(service) {
            let target = format!("rpc:{service}");
            if !self.violation(caller, &target) {
                self.send(caller, |b| outbound::rpc_error(b, id, "forbidden"));
                self.fail_violation(caller, target);
                return;
            }
        }
        let max = self.settings.max_pending_rpcs;
        if self.rpcs.in_flight(caller) >= max {
            if self.rpcs.first_refusal(caller) {
                tracing::warn!(moduleId = %caller, limit = max, service = %service, "rpc.too_many_pending: further RPCs are refused until replies arrive (lifecycle.maxPendingRpcs)");
            }
            // Short: a flooding caller may get many of these before it reads them.
            let error = format!("too_many_pending: {max} RPCs in flight");
            self.send(caller, |b| outbound::rpc_error(b, id, &error));
            return;
        }
        let deadline = Instant::now() + self.settings.rpc_timeout;
        let caller_kind = Caller::Module {
            id: caller.clone(),
            gen: caller_gen,
            original_id: id.to_string(),
        };
        let (provider, outbox) = match self.provider_for(service) {
            Ok(p) => p,
            // No local provider: another node's, if one is there (local wins).
            Err(_) if self.remote_provides(service) => {
                let call = (service, method, params);
                self.forward_remote(caller_kind, caller, call, deadline, congested);
                return;
            }
            Err(error) => {
                self.send(caller, |b| outbound::rpc_error(b, id, error));
                return;
            }
        };
        let outbox = self.forward(
            caller_kind,
            caller,
            (provider, outbox),
            (service, method, params),
            deadline,
        );
        if outbox.is_congested() {
            congested.push(outbox);
        }
    }

    /// The ready provider of `service` and its outbox, or the RPC error to answer with.
    #[inline]
    pub(super) fn provider_for(
        &self,
        service: &str,
    ) -> Result<(Arc<str>, Arc<Outbox>), &'static str> {
        let Some(provider) = self.declared.get(service) else {
            return Err("service_not_found");
        };
        match self.modules.get(provider) {
            Some(p) if p.status == Status::Ready => match &p.outbox {
                Some(ob) => Ok((provider.clone(), ob.clone())),
                None => Err("module_not_ready"),
            },
            // Down for good: it owns no service (another provider may take it over).
            Some(p) if matches!(p.status, Status::Crashed | Status::Stopped) => {
                Err("service_not_found")
            }
            _ => Err("module_not_ready"),
        }
    }

    /// Records an RPC in flight and sends it to the provider (with `from` as the caller's name);
    /// returns the provider's outbox.
    #[inline]
    pub(super) fn forward(
        &mut self,
        caller: Caller,
        from: &str,
        (provider, outbox): (Arc<str>, Arc<Outbox>),
        (service, method, params): (&str, &str, Option<&RawValue>),
        deadline: Instant,
    ) -> Arc<Outbox> {
        let kid = self.rpcs.insert(
            PendingRpc {
                caller,
                target: provider,
                service: service.to_string(),
                method: method.to_string(),
            },
            deadline,
        );
        let mut kid_buf = [0u8; KERNEL_ID_MAX];
        let kid_str = kernel_id(kid, &mut kid_buf);
        if self.bus_has_rpc_monitors() {
            let ts = super::epoch_ms();
            self.emit(
                "system:rpc",
                &serde_json::json!({"from": from, "service": service, "method": method, "ts": ts}),
            );
        }
        outbox.push_with(|b| outbound::rpc_request(b, kid_str, from, service, method, params));
        outbox
    }

    pub(super) fn bus_has_rpc_monitors(&self) -> bool {
        let mut any = false;
        self.bus.for_each_subscriber("system:rpc", |_| any = true);
        any
    }

    pub(super) fn rpc_response(
        &mut self,
        from: &Arc<str>,
        id: &str,
        result: Option<&RawValue>,
        error: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        let Some(kid) = PendingRpcs::parse_id(id) else {
            return;
        };
        let Some(p) = self.rpcs.live.get(&kid) else {
            return;
        };
        if p.target != *from {
            tracing::warn!(module = %from, id = %id, "RPC response from unexpected module — ignoring");
            return;
        }
        let Some(p) = self.rpcs.take(kid) else {
            return;
        };
        self.answer(p.caller, result, error, congested);
    }

    /// Gives a provider's answer (`result` / `error` as it sent them) to the caller.
    pub(super) fn answer(
        &mut self,
        caller: Caller,
        result: Option<&RawValue>,
        error: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        match caller {
            Caller::Module {
                id: caller,
                gen,
                original_id,
            } => {
                if let Some(c) = self.modules.get(&caller) {
                    if c.gen == gen {
                        if let Some(ob) = &c.outbox {
                            ob.push_with(|b| {
                                outbound::rpc_response(b, &original_id, result, error)
                            });
                            if ob.is_congested() {
                                congested.push(ob.clone());
                            }
                        }
                    }
                }
            }
            Caller::Operator { reply, .. } => {
                let answer = match error.filter(|e| e.get() != "null") {
                    Some(e) => Err(error_text(e)),
                    None => Ok(result.map(|r| r.to_owned())),
                };
                let _ = reply.send(answer);
            }
            Caller::Remote { link, reply } => {
                link.answer(&reply, result, error);
                if link.outbox.is_congested() {
                    congested.push(link.outbox.clone());
                }
            }
        }
    }

    /// Answers every RPC whose deadline passed with `timeout`. Returns the next deadline, which
    /// the timeout task is now armed with (an earlier one wakes it, see [`PendingRpcs`]).
    pub fn expire_rpcs(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&(deadline, kid)) = self.rpcs.deadlines.front() {
            if deadline > now {
                break;
            }
            self.rpcs.deadlines.pop_front();
            if let Some(p) = self.rpcs.take(kid) {
                let timeout = match &p.caller {
                    Caller::Operator { timeout, .. } => *timeout,
                    Caller::Module { .. } | Caller::Remote { .. } => self.settings.rpc_timeout,
                };
                tracing::warn!(
                    callerId = %p.caller.name(),
                    targetService = %p.service,
                    method = %p.method,
                    timeoutMs = timeout.as_millis() as u64,
                    "rpc.timeout"
                );
                self.answer_error(p.caller, "timeout");
            }
        }
        let next = self.rpcs.next_deadline();
        self.rpcs.armed = next;
        next
    }

    /// A module's process left: callers waiting on it get an error, its own calls are dropped.
    pub(super) fn rpcs_module_left(&mut self, module: &str) {
        let ids: Vec<u64> = self
            .rpcs
            .live
            .iter()
            .filter(|(_, p)| &*p.target == module || p.caller.is_module(module))
            .map(|(id, _)| *id)
            .collect();
        for kid in ids {
            let Some(p) = self.rpcs.take(kid) else {
                continue;
            };
            if &*p.target == module && !p.caller.is_module(module) {
                let msg = format!("Module {module} stopped while processing RPC");
                self.answer_error(p.caller, &msg);
            }
        }
    }

    /// Answers a caller with a kernel-generated error (a module only if its process is the one
    /// that asked).
    pub(super) fn answer_error(&self, caller: Caller, error: &str) {
        match caller {
            Caller::Module {
                id,
                gen,
                original_id,
            } => {
                if self.modules.get(&id).is_some_and(|c| c.gen == gen) {
                    self.send(&id, |b| outbound::rpc_error(b, &original_id, error));
                }
            }
            Caller::Operator { reply, .. } => {
                let _ = reply.send(Err(error.to_string()));
            }
            Caller::Remote { link, reply } => link.answer_error(&reply, error),
        }
    }
}

/// A provider's `error` as one line of text: a JSON string as its content, anything else as
/// compact JSON.
fn error_text(e: &RawValue) -> String {
    match serde_json::from_str::<String>(e.get()) {
        Ok(s) => s,
        Err(_) => e.get().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            assert_eq!(PendingRpcs::parse_id(&format!("{ID_PREFIX}{n}")), Some(n));
            let mut buf = [0u8; KERNEL_ID_MAX];
            assert_eq!(kernel_id(n, &mut buf), format!("{ID_PREFIX}{n}"));
        }
        assert_eq!(PendingRpcs::parse_id("x-1"), None);
    }

    #[test]
    fn provider_errors_as_text() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        assert_eq!(
            error_text(&raw(r#""Error: boom \"x\"""#)),
            r#"Error: boom "x""#
        );
        assert_eq!(
            error_text(&raw(r#"{"code":4,"message":"no"}"#)),
            r#"{"code":4,"message":"no"}"#
        );
    }
}
